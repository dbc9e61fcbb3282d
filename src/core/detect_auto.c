/* SPDX-License-Identifier: Apache-2.0 */
/*
 * auto: the no-tuning default for "tell me when this number is unusual".
 *
 * Two views of one numeric series, each a model surprise (-log10 of a
 * two-sided normal tail):
 *   level  x against an EW mean and variance (half_life samples);
 *   daily  x minus a 96-bin time-of-day profile, against the EW mean and
 *          variance of those residuals, once a day has been seen: a value
 *          normal for the day but not for the hour (the nightly job that
 *          did not run, the peak that came at 3 am).
 * No min/max is needed: everything is in units of the series' own spread.
 * The spread is deliberately NOT robust: after a burst it widens, so the
 * burst's echoes score lower and a later, larger event still ranks above
 * the earlier one; median/MAD (tried, with normal and t3 tails) made every
 * spike of a spiky series look equally "impossible" and did worse.
 *
 * Each view is calibrated against its own history first (det_calib), so a
 * view that fits this series badly (a daily profile where there is no
 * daily rhythm) is discounted on its own instead of drowning the other.
 * The calibrated views are combined by Fisher's method (the chi-square
 * tail of -2 sum ln p), which rewards both views agreeing over either one
 * alone, and the result is calibrated once more, so the score is a tail
 * probability for this series.
 *
 * Volatility: beside the level, the recent size of the steps between
 * samples (an EW mean of |x - previous x| over ~DET_AUTO_VOL_HALF_LIFE
 * samples) against the long-run EW mean and variance of that same
 * quantity, upper tail only, calibrated on its own history. It sees what
 * a level view cannot: a series that starts to oscillate or to jitter
 * around an unchanged mean (an autoscaling group flapping, a load
 * balancer's spikes coming denser). It is not folded into Fisher's
 * combination (there it added its noise to every sample's score and lost
 * more than it found): the score is the larger of the point score and the
 * volatility score, each a calibrated tail probability of its own.
 *
 * Calibration tails: past the levels a view's history can vouch for, the
 * calibrated surprise grows at most 0.7 times as fast as the model's
 * (calib.max_slope). The normal tail of an EW model is too bold far out
 * on real data (CPU, disk and request series are heavy-tailed), and
 * extrapolating the data's own slope there (often steeper than 1 on
 * quantised series) called routine daily spikes 1-in-10^200.
 *
 * Dedup: after a reported surprise, the following samples only score when
 * they are ten times rarer than that peak (decayed with dedup_half_life;
 * the margin once the peak was at least 1-in-10): one incident gives one
 * high score, not one per sample, and a much bigger event still gets
 * through. Without the margin, an incident whose evidence builds up over
 * a few samples (the volatility view's EW does) scored once per sample,
 * each a little rarer than the last. The peak fades only on samples under
 * 1-in-100 (surprise 2): while an incident goes on, it does not count as a
 * new one every dedup_half_life samples.
 *
 * The measurements behind these choices are in tests/quality/README.md.
 */
#include <math.h>

#include "detect_internal.h"

#define DAY_USEC ((int64_t)86400 * 1000000)

enum { VIEW_LEVEL, VIEW_DAILY };

void det_auto_params_default(struct det_auto_params *p)
{
    *p = (struct det_auto_params){ .half_life = 3000, .dedup_half_life = 30, .min_samples = 50,
                                   .min_score = 0.9999 };
    det_calib_params_default(&p->calib);
    p->calib.half_life = 2000;
    det_calib_params_prepare(&p->calib);
    p->calib.max_slope = 0.7;
}

int det_auto_params_check(const struct det_auto_params *p)
{
    if (!(p->half_life >= 16) || !(p->dedup_half_life >= 0) || p->min_samples < 2 ||
        !(p->min_score >= 0 && p->min_score <= 1))
        return -EINVAL;
    return det_calib_params_check(&p->calib);
}

static bool day_bin_set(const struct det_auto_state *s, int bin)
{
    return s->day_set[bin >> 6] >> (bin & 63) & 1;
}

/* Fisher's method: -log10 P(chi2 with 2k dof >= 2 ln(10) sum s_i); for
 * even degrees of freedom that is the Poisson sum e^-L sum_{j<k} L^j / j!,
 * L = ln(10) sum s_i. */
static double fisher_surprise(const double *s, int k)
{
    double sum = 0;
    for (int i = 0; i < k; i++)
        sum += s[i];
    double lam = sum * M_LN10, term = 1, acc = 1;
    for (int j = 1; j < k; j++) {
        term *= lam / j;
        acc += term;
    }
    return det_clamp_surprise(sum - det_log10(acc));
}

void det_auto_update(const struct det_auto_params *p, struct det_auto_state *s, double x,
                     int64_t ts_usec, struct det_result *r)
{
    *r = (struct det_result){ .value = x };
    if (!isfinite(x))
        return;
    double decay = det_decay(p->half_life);
    double sv[DET_AUTO_VIEWS] = { 0 }, sd_level, sd_resid = 0;
    bool active[DET_AUTO_VIEWS] = { true, false };

    double z = det_ew_z(&s->level, x, &sd_level);
    sv[VIEW_LEVEL] = det_normal_surprise(z);

    int bin = -1;
    double resid = 0, profile = 0;
    bool have_day = ts_usec > 0 && s->n && ts_usec - s->first_ts >= DAY_USEC;
    if (ts_usec > 0) {
        bin = (int)(ts_usec % DAY_USEC * DET_AUTO_DAY_BINS / DAY_USEC);
        if (day_bin_set(s, bin)) {
            profile = s->day[bin];
            resid = x - profile;
            if (have_day && s->resid.weight >= p->min_samples) {
                sv[VIEW_DAILY] = det_normal_surprise(det_ew_z(&s->resid, resid, &sd_resid));
                active[VIEW_DAILY] = true;
            }
        }
    }

    bool learning = s->n < p->min_samples;
    double cal[DET_AUTO_VIEWS];
    int k = 0, which = VIEW_LEVEL;
    for (int i = 0; i < DET_AUTO_VIEWS; i++) {
        if (!active[i])
            continue;
        cal[k] = det_calib_surprise(&p->calib, &s->view[i], sv[i]);
        if (!learning)
            det_calib_learn(&p->calib, &s->view[i], sv[i]);
        if (k && cal[k] > cal[0])
            which = i;
        k++;
    }
    r->raw = fisher_surprise(cal, k);

    /* Volatility: the first sample has no step (0). */
    double step = s->n ? fabs(x - s->prev_x) : 0;
    s->prev_x = x;
    s->vol_short += (1 - det_decay(DET_AUTO_VOL_HALF_LIFE)) * (step - s->vol_short);
    double sd_vol, z_vol = det_ew_z(&s->vol, s->vol_short, &sd_vol);
    double s_vol = z_vol > 0 && s->vol.weight > 10 ? det_normal_surprise(z_vol) : 0;
    double cal_vol = det_calib_surprise(&p->calib, &s->vol_calib, s_vol);
    if (!learning)
        det_calib_learn(&p->calib, &s->vol_calib, s_vol);
    double vol_usual = s->vol.mean; /* what z_vol was measured against */
    det_ew_learn(&s->vol, s->vol_short, decay);

    det_finish(r, &p->calib, &s->calib, r->raw, learning);
    bool by_vol = !learning && cal_vol > r->surprise;
    if (by_vol) {
        r->surprise = cal_vol;
        r->score = det_surprise_to_score(cal_vol);
    }
    if (!learning) {
        if (p->dedup_half_life > 0) {
            /* The peak fades only while the series is calm: an incident
             * whose samples stay 1-in-100 rare is one incident however long
             * it lasts. */
            double recent = r->surprise >= 2 ? s->peak : s->peak * det_decay(p->dedup_half_life);
            s->peak = MAX(recent, r->surprise);
            if (r->surprise <= recent + (recent >= 1 ? 1 : 0)) {
                r->surprise = 0;
                r->score = 0;
            }
        }
        r->alert = r->score >= p->min_score;
        if (by_vol) {
            /* The reason says what decided the score: the steps, not the
             * value (which may sit in its usual range). */
            r->why = DET_WHY_VOLATILITY;
            r->value = s->vol_short;
            r->expected = vol_usual;
            r->scale = sd_vol;
        } else if (which == VIEW_DAILY) {
            r->why = DET_WHY_DAILY;
            r->expected = profile;
            r->scale = sd_resid;
        } else {
            r->why = z >= 0 ? DET_WHY_ABOVE : DET_WHY_BELOW;
            r->expected = s->level.mean;
            r->scale = sd_level;
        }
    }

    det_ew_learn(&s->level, x, decay);
    if (bin >= 0) {
        if (day_bin_set(s, bin)) {
            if (have_day)
                det_ew_learn(&s->resid, resid, decay);
            /* Each bin averages its samples over the last day or so
             * (half-life one day), however many samples a bin gets a day. */
            double per_bin = s->dt > 0 ? (double)(DAY_USEC / DET_AUTO_DAY_BINS) / s->dt : 1;
            double a = 1 - exp2(-1.0 / MAX(per_bin, 1.0));
            s->day[bin] = (float)(s->day[bin] + a * (x - s->day[bin]));
        } else {
            s->day[bin] = (float)x;
            s->day_set[bin >> 6] |= UINT64_C(1) << (bin & 63);
        }
        if (!s->n)
            s->first_ts = ts_usec;
        else if (ts_usec > s->last_ts)
            s->dt += (s->dt > 0 ? 0.05 : 1) * ((double)(ts_usec - s->last_ts) - s->dt);
        if (ts_usec > s->last_ts)
            s->last_ts = ts_usec;
    }
    s->n++;
}
