/* SPDX-License-Identifier: Apache-2.0 */
/*
 * auto: the no-tuning default for "tell me when this number is unusual".
 *
 * Three views of one numeric series, each a model surprise (-log10 p):
 *   level    x against a streaming median/MAD: outliers and spikes, with
 *            no min/max known in advance (everything is in robust sigmas);
 *   daily    x against a 96-bin time-of-day profile, once a day is seen:
 *            a value normal for the day but not for the hour (the nightly
 *            job that did not run, the peak that came at 3 am);
 *   pattern  the value's robust z rounded to one of 8 symbols, scored by
 *            how often this symbol followed the previous two (Dirichlet-
 *            smoothed towards the symbol's overall frequency): a sequence
 *            never seen, where every single value is ordinary.
 * Each view is calibrated against its own history first (det_calib), so a
 * view that fits this series badly (a daily profile on a series with no
 * daily rhythm) is discounted on its own instead of drowning the others.
 * The largest calibrated view, Bonferroni-corrected for taking a maximum
 * of three, is calibrated once more, so the score is a tail probability.
 *
 * Dedup: after a reported surprise, the following samples only score when
 * they exceed that peak (decayed with dedup_half_life): one incident gives
 * one high score, not one per sample, and a bigger event still gets through.
 *
 * Tried and dropped on NAB (they added false alarms faster than hits): the
 * robust z of the first difference, a short EW mean against the level, and
 * the short mean |difference| against the usual one (volatility); also an
 * HTM-style smoothing of surprises (it delays the first detection, which
 * NAB and operators both pay for).
 */
#include <math.h>

#include "detect_internal.h"

#define DAY_USEC ((int64_t)86400 * 1000000)

enum { VIEW_LEVEL, VIEW_DAILY, VIEW_PATTERN };

void det_auto_params_default(struct det_auto_params *p)
{
    *p = (struct det_auto_params){ .half_life = 3000, .dedup_half_life = 30, .min_samples = 50,
                                   .min_score = 0.9999 };
    det_calib_params_default(&p->calib);
    p->calib.half_life = 2000;
}

int det_auto_params_check(const struct det_auto_params *p)
{
    if (!(p->half_life >= 16) || !(p->dedup_half_life >= 0) ||
        p->min_samples < DET_ROBUST_BOOT || !(p->min_score >= 0 && p->min_score <= 1))
        return -EINVAL;
    return det_calib_params_check(&p->calib);
}

static bool day_bin_set(const struct det_auto_state *s, int bin)
{
    return s->day_set[bin >> 6] >> (bin & 63) & 1;
}

/* -log10 P(sym | previous two), or 0 before there is a context. */
static double pattern_surprise(const struct det_auto_state *s, int sym)
{
    if (s->n < DET_ROBUST_BOOT + 2)
        return 0;
    const float *row = s->trans[s->sym2 * DET_AUTO_SYMS + s->sym1];
    double in_ctx = 0, all = 0;
    for (int j = 0; j < DET_AUTO_SYMS; j++) {
        in_ctx += row[j];
        all += s->marg[j];
    }
    /* Prior: the symbol's own frequency (add-half smoothed), weight 1. */
    double prior = (s->marg[sym] / s->unit + 0.5) / (all / s->unit + 0.5 * DET_AUTO_SYMS);
    double pr = (row[sym] / s->unit + prior) / (in_ctx / s->unit + 1);
    return det_clamp_surprise(-log10(pr));
}

static void pattern_learn(const struct det_auto_params *p, struct det_auto_state *s, int sym)
{
    if (s->unit <= 0)
        s->unit = 1;
    s->unit /= det_decay(p->half_life);
    if (s->unit > 1e30) {
        for (int i = 0; i < DET_AUTO_SYMS * DET_AUTO_SYMS; i++)
            for (int j = 0; j < DET_AUTO_SYMS; j++)
                s->trans[i][j] = (float)(s->trans[i][j] / s->unit);
        for (int j = 0; j < DET_AUTO_SYMS; j++)
            s->marg[j] = (float)(s->marg[j] / s->unit);
        s->unit = 1;
    }
    if (s->n >= DET_ROBUST_BOOT + 2)
        s->trans[s->sym2 * DET_AUTO_SYMS + s->sym1][sym] += (float)s->unit;
    s->marg[sym] += (float)s->unit;
    s->sym2 = s->sym1;
    s->sym1 = (uint8_t)sym;
}

void det_auto_update(const struct det_auto_params *p, struct det_auto_state *s, double x,
                     int64_t ts_usec, struct det_result *r)
{
    *r = (struct det_result){ .value = x };
    if (!isfinite(x))
        return;
    double sv[DET_AUTO_VIEWS] = { 0 };
    bool active[DET_AUTO_VIEWS] = { true, false, true };

    double z = det_robust_z(&s->level, x);
    sv[VIEW_LEVEL] = det_normal_surprise(z);

    int bin = -1;
    double resid = 0, profile = 0;
    bool have_day = ts_usec > 0 && s->n && ts_usec - s->first_ts >= DAY_USEC;
    if (ts_usec > 0) {
        bin = (int)(ts_usec % DAY_USEC * DET_AUTO_DAY_BINS / DAY_USEC);
        if (day_bin_set(s, bin)) {
            profile = s->day[bin];
            resid = x - profile;
            if (have_day && s->resid.n >= DET_ROBUST_BOOT) {
                sv[VIEW_DAILY] = det_normal_surprise(det_robust_z(&s->resid, resid));
                active[VIEW_DAILY] = true;
            }
        }
    }

    /* Symbols: robust z rounded, -3..+4 sigma (the ends open). */
    int sym = -1;
    if (s->level.n >= DET_ROBUST_BOOT) {
        long k = isfinite(z) ? lround(z) : (z > 0 ? 4 : -3);
        sym = (int)CLAMP(k, -3L, 4L) + 3;
        sv[VIEW_PATTERN] = pattern_surprise(s, sym);
    }

    bool learning = s->n < p->min_samples;
    double best = 0;
    int which = VIEW_LEVEL, nactive = 0;
    for (int i = 0; i < DET_AUTO_VIEWS; i++) {
        if (!active[i])
            continue;
        nactive++;
        double c = det_calib_surprise(&p->calib, &s->view[i], sv[i]);
        if (!learning)
            det_calib_learn(&p->calib, &s->view[i], sv[i]);
        if (c > best) {
            best = c;
            which = i;
        }
    }
    r->raw = det_clamp_surprise(best - log10((double)nactive));
    det_finish(r, &p->calib, &s->calib, r->raw, learning);
    if (!learning) {
        if (p->dedup_half_life > 0) {
            double recent = s->peak * det_decay(p->dedup_half_life);
            s->peak = MAX(recent, r->surprise);
            if (r->surprise <= recent) {
                r->surprise = 0;
                r->score = 0;
            }
        }
        r->alert = r->score >= p->min_score;
        r->expected = s->level.median;
        r->scale = det_robust_scale(&s->level);
        if (which == VIEW_DAILY) {
            r->why = DET_WHY_DAILY;
            r->expected = profile;
            r->scale = det_robust_scale(&s->resid);
        } else if (which == VIEW_PATTERN) {
            r->why = DET_WHY_PATTERN;
        } else {
            r->why = z >= 0 ? DET_WHY_ABOVE : DET_WHY_BELOW;
        }
    }

    det_robust_learn(&s->level, x, p->half_life);
    if (bin >= 0) {
        if (day_bin_set(s, bin)) {
            if (have_day)
                det_robust_learn(&s->resid, resid, p->half_life);
            /* A few samples per bin per day: the profile follows within days. */
            s->day[bin] = (float)(s->day[bin] + 0.3 * (x - s->day[bin]));
        } else {
            s->day[bin] = (float)x;
            s->day_set[bin >> 6] |= UINT64_C(1) << (bin & 63);
        }
        if (!s->n)
            s->first_ts = ts_usec;
    }
    if (sym >= 0)
        pattern_learn(p, s, sym);
    s->n++;
}
