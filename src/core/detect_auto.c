/* SPDX-License-Identifier: Apache-2.0 */
/*
 * auto: the no-tuning default for "tell me when this number is unusual".
 *
 * Three views of one numeric series, each a robust z turned into a
 * Gaussian surprise:
 *   level  x against a streaming median/MAD (outliers, spikes);
 *   change x - previous against the median/MAD of changes (jumps, even
 *          when the new level is inside the usual range);
 *   shift  a short EW mean against the level, scaled by the noise an EW
 *          mean of that length has (a sustained move of a fraction of a
 *          sigma that no single point shows).
 * The largest surprise, Bonferroni-corrected for taking a maximum of three,
 * is calibrated against the key's own history (det_calib), so a series
 * whose "surprises" come every day stops alerting on them. Everything is
 * relative to the series' own robust scale: no min/max known in advance.
 */
#include <math.h>

#include "detect_internal.h"

void det_auto_params_default(struct det_auto_params *p)
{
    *p = (struct det_auto_params){ .half_life = 1000, .fast_half_life = 4, .min_samples = 50,
                                   .min_score = 0.9999 };
    det_calib_params_default(&p->calib);
}

int det_auto_params_check(const struct det_auto_params *p)
{
    if (!(p->half_life >= 16) || !(p->fast_half_life >= 1) || p->fast_half_life > p->half_life ||
        p->min_samples < DET_ROBUST_BOOT || !(p->min_score >= 0 && p->min_score <= 1))
        return -EINVAL;
    return det_calib_params_check(&p->calib);
}

void det_auto_update(const struct det_auto_params *p, struct det_auto_state *s, double x,
                     struct det_result *r)
{
    *r = (struct det_result){ .value = x };
    if (!isfinite(x))
        return;
    double af = 1 - det_decay(p->fast_half_life);
    double fast = s->n ? s->fast + af * (x - s->fast) : x;
    double dx = s->n ? x - s->prev : 0;

    double z_level = det_robust_z(&s->level, x);
    double z_change = s->n > 1 ? det_robust_z(&s->diff, dx) : 0;
    /* An EW mean of iid noise has variance sigma^2 af / (2 - af). */
    double z_shift = det_robust_z(&s->level, s->level.median + (fast - s->level.median) /
                                                  sqrt(af / (2 - af)));
    double s_level = det_normal_surprise(z_level);
    double s_change = det_normal_surprise(z_change);
    double s_shift = det_normal_surprise(z_shift);
    double sm = MAX(s_level, MAX(s_change, s_shift));
    r->raw = det_clamp_surprise(sm - log10(3.0));
    r->expected = s->level.median;
    r->scale = det_robust_scale(&s->level);
    if (sm == s_change && s_change > s_level) {
        r->why = DET_WHY_CHANGE;
        r->expected = s->prev;
        r->scale = det_robust_scale(&s->diff);
    } else if (sm == s_shift && s_shift > s_level) {
        r->why = DET_WHY_SHIFT;
    } else {
        r->why = z_level >= 0 ? DET_WHY_ABOVE : DET_WHY_BELOW;
    }
    enum det_why why = r->why;
    bool learning = s->n < p->min_samples;
    det_finish(r, &p->calib, &s->calib, r->raw, learning);
    if (!learning) {
        r->why = why;
        r->alert = r->score >= p->min_score;
    }

    det_robust_learn(&s->level, x, p->half_life);
    if (s->n)
        det_robust_learn(&s->diff, dx, p->half_life);
    s->fast = fast;
    s->prev = x;
    s->n++;
}
