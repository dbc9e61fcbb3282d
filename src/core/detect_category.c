/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rare_category: how surprising a categorical value is for its key.
 *
 * The key's value distribution is a Dirichlet process: a seen value v has
 * predictive probability c_v / (N + alpha), a new one alpha / (N + alpha),
 * with decayed counts c_v over the last ~half_life events. Only the
 * DET_CATEGORY_SLOTS heaviest values are counted (space-saving: a new value
 * takes over the lightest slot and inherits its count, so counts are upper
 * bounds and no heavy value is ever lost). A 128-bit Bloom filter remembers
 * every value ever seen, so "first seen" survives eviction from the slots
 * (it saturates past ~50 distinct values, where first-seen stops meaning
 * much anyway).
 *
 * The model p is a tail mass, not the point probability: the chance of a
 * value at most as probable as this one. So a key with 1000 equally rare
 * values does not alert on each.
 */
#include <math.h>

#include "detect_internal.h"
#include "rarewatch/keytab.h"

void det_category_params_default(struct det_category_params *p)
{
    *p = (struct det_category_params){ .half_life = 1000, .alpha = 1, .min_samples = 100,
                                       .min_score = 0.999 };
    det_calib_params_default(&p->calib);
}

int det_category_params_check(const struct det_category_params *p)
{
    if (!(p->half_life >= 1) || !(p->alpha > 0) || !isfinite(p->alpha) ||
        !(p->min_score >= 0 && p->min_score <= 1))
        return -EINVAL;
    return det_calib_params_check(&p->calib);
}

/* Bloom bits from the hash's high half: its low bit is forced to 1. */
static bool bloom_test(const struct det_category_state *s, uint64_t h)
{
    unsigned a = (h >> 32) & 127, b = (h >> 39) & 127;
    return (s->seen[a >> 6] >> (a & 63) & 1) && (s->seen[b >> 6] >> (b & 63) & 1);
}

static void bloom_add(struct det_category_state *s, uint64_t h)
{
    unsigned a = (h >> 32) & 127, b = (h >> 39) & 127;
    s->seen[a >> 6] |= UINT64_C(1) << (a & 63);
    s->seen[b >> 6] |= UINT64_C(1) << (b & 63);
}

void det_category_update(const struct det_category_params *p, struct det_category_state *s,
                         const char *value, size_t len, struct det_result *r)
{
    uint64_t h = keytab_hash(value, len) | 1;
    uint32_t tag = (uint32_t)h; /* bit 0 set: 0 marks an empty slot */
    if (s->unit <= 0)
        s->unit = 1;

    /* One pass for what every update needs. The tracked mass is summed in
     * slot order, as before; the lightest slot (a new value's) and the
     * typical probability (reported for alerts only) are found where they
     * are needed: in the common case, a value already tracked, neither is
     * (together ~200 of the ~830 instructions of an update, callgrind). */
    int found = -1;
    double tracked = 0;
    for (int i = 0; i < DET_CATEGORY_SLOTS; i++) {
        if (s->tag[i] == tag)
            found = i;
        tracked += s->count[i];
    }
    double total = s->total / s->unit, alpha = p->alpha;
    bool first = !bloom_test(s, h);
    double pv, tail;
    if (found >= 0) {
        float cv = s->count[found];
        /* Without a branch: which slots are rarer is data, and a
         * mispredicted compare per slot costs more than the adds of 0
         * (x + 0 is x: the sum is the one the branches gave). */
        double rarer = 0;
        for (int i = 0; i < DET_CATEGORY_SLOTS; i++)
            rarer += s->count[i] <= cv ? (double)s->count[i] : 0.0;
        pv = cv / s->unit / (total + alpha);
        /* Untracked values and the new-value mass are all rarer than v. */
        double untracked = MAX(0.0, s->total - tracked) / s->unit;
        tail = (rarer / s->unit + untracked + alpha) / (total + alpha);
    } else if (first) {
        pv = tail = alpha / (total + alpha);
    } else {
        /* Seen before, since evicted: it is somewhere in the untracked mass. */
        double untracked = MAX(0.0, s->total - tracked) / s->unit;
        pv = tail = (untracked + alpha) / (total + alpha);
    }
    *r = (struct det_result){ .value = pv,
                              .raw = det_clamp_surprise(-det_log10(MIN(tail, 1.0))) };
    bool learning = s->n < p->min_samples;
    det_finish_score(r, &p->calib, &s->calib, r->raw, NAN, learning, NULL);
    if (!learning) {
        r->why = first ? DET_WHY_NEW_CATEGORY : DET_WHY_RARE_CATEGORY;
        r->alert = r->score >= p->min_score;
        if (r->alert) {
            /* expected: the probability of a typical value, sum of p_i^2. */
            double sumsq = 0;
            for (int i = 0; i < DET_CATEGORY_SLOTS; i++)
                sumsq += (double)s->count[i] * s->count[i];
            r->expected = s->total > 0 ? sumsq / (s->total * s->unit * (total + alpha)) : 0;
        }
    }

    /* Learn: decay everything lazily by growing the unit of new events. A
     * new value takes the lightest slot, the first of equals, as found
     * before the counts are rescaled (which can make two of them equal). */
    int lightest = 0;
    if (found < 0)
        for (int i = 1; i < DET_CATEGORY_SLOTS; i++)
            if (s->count[i] < s->count[lightest])
                lightest = i;
    s->unit /= det_decay(p->half_life);
    if (s->unit > 1e30) {
        for (int i = 0; i < DET_CATEGORY_SLOTS; i++)
            s->count[i] = (float)(s->count[i] / s->unit);
        s->total /= s->unit;
        s->unit = 1;
    }
    if (found < 0) {
        found = lightest;
        if (s->tag[found] == 0)
            s->count[found] = 0;
        s->tag[found] = tag;
    }
    s->count[found] = (float)(s->count[found] + s->unit);
    s->total += s->unit;
    bloom_add(s, h);
    s->n++;
}
