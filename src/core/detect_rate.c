/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rate: events per key per interval against a learned baseline.
 *
 * Counts are modelled as quasi-Poisson: an EW mean (optionally times an
 * hour-of-day factor) and an EW Pearson dispersion phi, the mean of
 * (count - expected)^2 / expected; when the counts are overdispersed
 * (phi > 1) both count and expected are divided by phi
 * before the Poisson tail is taken, which is the usual quasi-likelihood
 * treatment and keeps bursty keys from alerting on every burst.
 */
#include <assert.h>
#include <math.h>
#include <stddef.h>

#include "detect_internal.h"

/* Closing more empty intervals than this one by one would let an idle key
 * cost O(idle time); past it the remaining empty intervals are folded in
 * closed form (their drop alerts were already given by the first ones). */
#define RATE_MAX_CLOSE 64
/* Model surprise (-log10 p) from which a far-tail interval opens an
 * incident whose first DET_RATE_RUN_MAX intervals the dispersion does not
 * learn (learn). */
#define RATE_INCIDENT_SURPRISE 4.0
/* Model surprise (-log10 p) of a closing interval from which the runs it
 * ends are tested too (rate_surprise). */
#define RATE_RUN_MIN_SURPRISE 1.0

void det_rate_params_default(struct det_rate_params *p)
{
    *p = (struct det_rate_params){ .interval_usec = 60 * USEC_PER_SEC, .half_life = 60,
                                   .min_score = 0.9999, .min_intervals = 10, .min_expected = 3 };
    det_calib_params_default(&p->calib);
    /* Counts are discrete: with a few events expected, the surprises sit on
     * a handful of atoms, and the empirical tail at a bin edge between two
     * atoms is that of the next atom up, so the data's slope there (up to
     * 2x for an expectation of 0.5) says "sharpen" where the model is
     * merely coarse; the tempering it says elsewhere comes from the same
     * coarseness (and from earlier bursts) and muted the second burst on a
     * hashtag. Past the trusted levels the Poisson tail is taken as is. */
    p->calib.max_slope = 1;
    p->calib.tail = DET_TAIL_MODEL;
    det_rate_params_prepare(p);
}

static double level_half_life(const struct det_rate_params *p);

void det_rate_params_prepare(struct det_rate_params *p)
{
    det_decay_memo_set(&p->decay, p->half_life);
    det_decay_memo_set(&p->level_decay, level_half_life(p));
    det_calib_params_prepare(&p->calib);
}

int det_rate_params_check(const struct det_rate_params *p)
{
    if (p->interval_usec < (int64_t)USEC_PER_MSEC || !(p->half_life >= 1) ||
        (p->daily && p->interval_usec > (int64_t)(3600 * USEC_PER_SEC)) ||
        !(p->min_score >= 0 && p->min_score <= 1) || !(p->min_expected >= 0))
        return -EINVAL;
    return det_calib_params_check(&p->calib);
}

static_assert(offsetof(struct det_rate_state, hour) == 128,
              "a non-daily update's fields fill two cache lines, the hour factors follow");

size_t det_rate_state_hot(const struct det_rate_params *p)
{
    return p->daily ? sizeof(struct det_rate_state) : offsetof(struct det_rate_state, hour);
}

static int64_t interval_of(const struct det_rate_params *p, int64_t ts)
{
    /* Floor division: timestamps before 1970 still land in whole intervals. */
    int64_t q = ts / p->interval_usec;
    return (ts % p->interval_usec < 0) ? q - 1 : q;
}

static double hour_factor(const struct det_rate_params *p, const struct det_rate_state *s,
                          int64_t idx, unsigned *hour)
{
    if (!p->daily)
        return 1;
    /* In 128 bits: idx comes from a snapshot too, and a damaged one must
     * not overflow here (for every idx an event time gives, the same). */
    __int128 sec = (__int128)idx * p->interval_usec / (int64_t)USEC_PER_SEC;
    int64_t h = (int64_t)(sec / 3600 % 24);
    *hour = (unsigned)(h < 0 ? h + 24 : h);
    return s->hour[*hour] > 0 ? s->hour[*hour] : 1;
}

static double expected_count(const struct det_rate_params *p, const struct det_rate_state *s,
                             int64_t idx)
{
    unsigned h = 0;
    return s->mean * hour_factor(p, s, idx, &h);
}

static double dispersion(const struct det_rate_state *s)
{
    return MAX(1.0, s->disp);
}

/* Model surprise of `count` in one interval; *high says which tail, *tail
 * is 10^-surprise where that came without a power (NAN otherwise). */
static double tails(const struct det_rate_params *p, const struct det_rate_state *s,
                    double count, double expected, bool upper_only, bool *high, double *tail);

/* What a closing interval is judged on: itself alone or one of the runs
 * of intervals it ends, whichever is the most surprising. */
struct rate_test {
    double surprise, tail, count, expected; /* tail: see tails() */
    unsigned len; /* intervals */
    bool high;
};

/* Model surprise of `count` in one interval, or of a run it closes. The
 * runs are every suffix of the last DET_RATE_RUN_MAX intervals that ends
 * here: a burst that starts in the middle of an interval, or whose first
 * interval was only mildly high, is tested on its own intervals and not
 * diluted by the quiet one before it (a fixed run that started on the
 * side of the burst and broke after DET_RATE_RUN_MAX intervals missed 15
 * minute bursts of 10, 7 and 8 events against 1.5 each). Only runs on the
 * closing interval's side are news now: a run whose last interval went
 * back to normal was judged when it ended. */
static struct rate_test rate_surprise(const struct det_rate_params *p,
                                      const struct det_rate_state *s, double count,
                                      double expected, bool upper_only)
{
    struct rate_test t = { .count = count, .expected = expected, .len = 1 };
    t.surprise = tails(p, s, count, expected, upper_only, &t.high, &t.tail);
    /* A run is judged where an interval adds evidence to it: one that is
     * itself at least 1-in-10 on the run's side. A burst's or an outage's
     * intervals are (4 events against 0.5 is 1-in-500), and the runs of
     * ordinary intervals, which cannot reach an alert, cost nothing: each
     * run is a Poisson tail, and a key closes an interval every few
     * events (bench_detect: +115 ns per record untested, 1.6 closes each). */
    if (upper_only || count == expected || t.surprise < RATE_RUN_MIN_SURPRISE)
        return t;
    bool up = count > expected;
    /* A drop is only news where this interval expected enough events to
     * miss them (min_expected), however many the run expected in all. */
    bool lower = expected >= p->min_expected;
    if (!up && !lower)
        return t;
    double c = count, e = expected;
    for (unsigned i = 0; i < s->hist_len; i++) {
        c += s->hist_count[i];
        e += s->hist_expected[i];
        if ((c > e) != up)
            continue;
        bool high;
        double tail, sr = tails(p, s, c, e, !lower, &high, &tail);
        if (sr > t.surprise)
            t = (struct rate_test){ .surprise = sr, .tail = tail, .count = c, .expected = e,
                                    .len = i + 2, .high = high };
    }
    return t;
}

/* The closed interval joins the history the next ones are judged with. */
static void hist_push(struct det_rate_state *s, double count, double expected)
{
    for (unsigned i = DET_RATE_RUN_MAX - 2; i > 0; i--) {
        s->hist_count[i] = s->hist_count[i - 1];
        s->hist_expected[i] = s->hist_expected[i - 1];
    }
    s->hist_count[0] = (float)count;
    s->hist_expected[0] = (float)expected;
    if (s->hist_len < DET_RATE_RUN_MAX - 1)
        s->hist_len++;
}

static double tails(const struct det_rate_params *p, const struct det_rate_state *s,
                    double count, double expected, bool upper_only, bool *high, double *tail)
{
    *tail = NAN;
    bool want_down = !upper_only && expected >= p->min_expected;
    /* An empty interval where only the upper tail is tested (a sparse
     * key's most common close): no surprise, without the divisions. */
    if (count <= 0 && !want_down) {
        *high = true;
        return 0;
    }
    double phi = dispersion(s);
    /* A key that was never active expects a little, not nothing: one event
     * on a silent key is news, but not infinitely so. */
    double lam = MAX(expected, 0.05) / phi, k = count / phi;
    if (!want_down) {
        /* Where a drop cannot be news (too few events expected): one-sided,
         * the upper tail as is, and its probability with it where that
         * came free (one event in an interval at phi 1). */
        *high = true;
        return det_poisson_upper_surprise_tail(k, lam, tail);
    }
    /* Far from the mean only one tail can be the larger: the Poisson
     * median lies in [lam - ln 2, lam + 1/3], so past lam + 2 the lower
     * tail P(X <= k) is above 1/2 (surprise below log10 2) and the upper
     * below it, and the mirror image under lam - 2; the sqrt(lam) margin
     * keeps the two well apart where both are near 1/2, so the max is
     * the same number. One incomplete gamma instead of two. */
    double margin = 2 + sqrt(lam);
    double up = k <= lam - margin ? 0 : det_poisson_upper_surprise(k, lam);
    double down = k >= lam + margin ? 0 : det_poisson_lower_surprise(k, lam);
    *high = up >= down;
    /* Two-sided: the larger surprise, less a factor 2. */
    return det_clamp_surprise(MAX(up, down) - det_log10(2.0));
}

static int64_t intervals_per_day(const struct det_rate_params *p)
{
    return (int64_t)(86400 * USEC_PER_SEC) / p->interval_usec;
}

/* A daily baseline has not seen the day before it has seen a day. */
static uint32_t min_intervals(const struct det_rate_params *p)
{
    if (!p->daily)
        return p->min_intervals;
    return (uint32_t)MAX((int64_t)p->min_intervals, intervals_per_day(p));
}

/* The result's spread and its interval in seconds (fill left the length in
 * intervals): only for the results that are reported, not for every
 * interval closed (a square root and a division each), and before learn()
 * moves the dispersion on. */
static void describe(const struct det_rate_params *p, const struct det_rate_state *s,
                     struct det_result *r)
{
    r->scale = sqrt(dispersion(s) * MAX(r->expected, 0.0));
    r->interval = r->interval * (double)p->interval_usec / (double)USEC_PER_SEC;
}

static void fill(const struct det_rate_params *p, struct det_rate_state *s, double count,
                 double expected, bool closing, struct det_result *r)
{
    struct rate_test t = rate_surprise(p, s, count, expected, !closing);
    double sm = t.surprise;
    /* A run is reported as what was tested: its events against its
     * expectation over its length (the spread: describe). */
    *r = (struct det_result){ .value = t.count, .expected = t.expected, .raw = sm,
                              .interval = (double)t.len };
    bool high = t.high;
    bool learning = s->n < min_intervals(p);
    if (closing) {
        uint32_t far = s->far_run;
        /* The calibrator learns from the end of the whole learning period,
         * a day with daily: before the hour factors have seen each hour,
         * the model's surprises (the first morning's rise against a night
         * it took for the level) are its own inexperience, and learned
         * they stayed in the history for its half-life, a month: a key
         * with three of them called every later burst "recurring" (social
         * seed 2: 20 events against 3.3, model 10^-8.6, scored 0.9968). */
        det_finish_score(r, &p->calib, &s->calib, sm, t.tail, learning, &far);
        s->far_run = (uint16_t)MIN(far, (uint32_t)UINT16_MAX);
        if (learning) {
            r->why = DET_WHY_LEARNING;
            r->score = 0;
            r->surprise = 0;
        }
    } else if (learning) {
        r->why = DET_WHY_LEARNING;
    } else {
        /* The open interval is judged but not learned: it is learned once,
         * when it closes. */
        r->surprise = det_calib_surprise(&p->calib, &s->calib, sm);
        r->score = det_surprise_to_score(r->surprise);
    }
    if (!learning) {
        r->why = high ? DET_WHY_RATE_HIGH : DET_WHY_RATE_LOW;
        r->alert = r->score >= p->min_score;
    }
}

/* How many of the n intervals before idx (consecutive, as a key's closed
 * intervals are) fell in idx's hour of the day. */
static uint64_t hour_seen(const struct det_rate_params *p, uint64_t n, int64_t idx)
{
    int64_t per_hour = MAX((int64_t)1, (int64_t)(3600 * USEC_PER_SEC) / p->interval_usec);
    int64_t per_day = 24 * per_hour;
    int64_t pos = idx % per_day;
    if (pos < 0)
        pos += per_day;
    int64_t first = pos - pos % per_hour; /* the hour's first interval in the day */
    int64_t r = (int64_t)(n % (uint64_t)per_day);
    int64_t seen = pos - MAX(first, pos - r);
    if (pos - r < 0) /* the rest of the partial day reaches into yesterday */
        seen += MAX((int64_t)0, first + per_hour - (per_day + pos - r));
    return n / (uint64_t)per_day * (uint64_t)per_hour + (uint64_t)seen;
}

/* The level's half-life in intervals: with daily, at least a day. */
static double level_half_life(const struct det_rate_params *p)
{
    if (!p->daily)
        return p->half_life;
    return MAX(p->half_life, (double)intervals_per_day(p));
}

/* The learning rate after n samples of an EW mean with this half-life:
 * the plain average while that weighs more, MAX(1 / (n + 1), 1 - decay),
 * without the division once n is past it (divisions are the latency of
 * an interval close: bench_detect's daemon rate row 480/483/471 ns with
 * them, 462/457/449 without, alternating). */
static inline double ew_rate(uint32_t n, const struct det_decay_memo *m, double half_life)
{
    double c = 1 - det_decay_of(m, half_life);
    return c * (n + 1.0) < 1 ? 1.0 / (n + 1.0) : c;
}

/* Inlined: it runs on every close, from two places in advance(). */
static inline __attribute__((always_inline)) void
learn(const struct det_rate_params *p, struct det_rate_state *s, double count, int64_t idx,
      bool incident)
{
    unsigned h = 0;
    double f = hour_factor(p, s, idx, &h);
    double eta = ew_rate(s->n, &p->decay, p->half_life);
    double e = s->mean * f;
    /* Pearson residual, winsorised at 4 sd: one burst must not inflate the
     * dispersion (nor the mean) so much that the drop after it (a burst
     * then an outage) goes unnoticed. Measured on the count scale, against
     * the hour's expectation, so a daily rhythm is not mistaken for noise.
     * Compared squared: the square root only for a residual past it. */
    double var = MAX(e, 0.05) * dispersion(s);
    double d = count - e;
    if (s->n && d * d > 16 * var)
        d = copysign(4 * sqrt(var), d);
    /* Nor the first intervals of an incident (advance): a burst learned
     * into the dispersion as it happens hides its own next interval. */
    if (s->n && !incident)
        s->disp += eta * (d * d / MAX(e, 0.05) - s->disp);
    /* With daily, the level averages at least a day: a level that follows
     * the day itself takes the daily cycle away from the hour factors
     * (a ratio to a level that rose with the peak is ~1), and the
     * factors, flattened, then call every trough a drop and every peak a
     * burst. */
    double eta_level = p->daily ? ew_rate(s->n, &p->level_decay, level_half_life(p)) : eta;
    s->mean += p->daily ? eta_level * d / f : eta_level * d; /* f is 1 without daily */
    if (p->daily && s->mean > 0) {
        /* Each hour's factor averages that hour over about two days,
         * however many intervals an hour holds. */
        double per_hour = MAX(1.0, (double)(3600 * USEC_PER_SEC) / (double)p->interval_usec);
        double beta = 1 - exp2(-1.0 / (2 * per_hour));
        /* While young, each hour's factor is the average of the intervals
         * that hour has seen, with one more at 1 (no cycle) so the first
         * quiet interval does not set it to zero: the two-day EW alone is
         * 30% of the way there after a day, and a day-two expectation that
         * still half ignores the daily cycle calls every evening peak a
         * burst. Counted per hour: the first hour of the first day must not
         * be set by its first interval alone. */
        beta = MAX(beta, 1.0 / (2.0 + (double)hour_seen(p, s->n, idx)));
        double ratio = count / s->mean;
        float cur = s->hour[h] > 0 ? s->hour[h] : 1.0f;
        s->hour[h] = (float)MAX(0.01, cur + beta * (ratio - cur));
    }
    s->n++;
}

/* Close an empty interval that cannot be news (nothing expected enough
 * to miss: the test is one-sided, its surprise 0), changing the state
 * exactly as fill() and the rest of a close do, without the result no
 * one reads (none is asked for, or one with a score >= 0 is already
 * there, which a score of 0 does not replace). Most closes of
 * a sparse key are these (bench_detect, 1 ms per update: 53%, callgrind). */
static bool close_quiet(const struct det_rate_params *p, struct det_rate_state *s, double e)
{
    if (s->count != 0 || e >= p->min_expected)
        return false;
    /* fill(): tails() is 0, so det_finish_score learns a surprise of 0 and
     * ends any far-tail run, unless the key is learning (then neither). */
    bool learning = s->n < min_intervals(p);
    if (!learning) {
        det_calib_learn(&p->calib, &s->calib, 0);
        s->far_run = 0;
    }
    /* A score of 0 alerts only at a min_score of 0. */
    if (!learning && p->min_score <= 0)
        s->hist_len = 0;
    else
        hist_push(s, 0, e);
    learn(p, s, 0, s->cur, false);
    return true;
}

static int advance(const struct det_rate_params *p, struct det_rate_state *s, int64_t idx,
                   struct det_result *closed)
{
    if (!s->started) {
        s->started = 1;
        s->cur = idx;
        s->count = 0;
        return 0;
    }
    int nclosed = 0;
    struct det_result r;
    while (s->cur < idx && nclosed < RATE_MAX_CLOSE) {
        double e = expected_count(p, s, s->cur);
        if ((nclosed > 0 || !closed) && close_quiet(p, s, e)) {
            s->cur++;
            nclosed++;
            continue;
        }
        fill(p, s, s->count, e, true, &r);
        /* A run that alerted has been told: the next starts afresh, so
         * the intervals after an incident are not judged with it. */
        if (r.alert)
            s->hist_len = 0;
        else
            hist_push(s, s->count, e);
        if (closed && (nclosed == 0 || r.score > closed->score)) {
            *closed = r;
            describe(p, s, closed);
        }
        learn(p, s, s->count, s->cur,
              r.raw >= RATE_INCIDENT_SURPRISE && s->far_run >= 1 && s->far_run <= DET_RATE_RUN_MAX);
        s->count = 0;
        s->cur++;
        nclosed++;
    }
    if (s->cur < idx) {
        /* k more empty intervals: the mean decays geometrically. */
        double k = (double)(idx - s->cur);
        s->mean *= exp2(-k / level_half_life(p));
        s->n += (uint32_t)MIN(k, (double)(UINT32_MAX - s->n));
        s->cur = idx;
        s->hist_len = 0;
    }
    return nclosed;
}

int det_rate_add(const struct det_rate_params *p, struct det_rate_state *s, int64_t ts_usec,
                 uint32_t n, struct det_result *closed, struct det_result *running)
{
    int64_t idx = interval_of(p, ts_usec);
    int nclosed = advance(p, s, idx, closed);
    s->count += n;
    if (running) {
        fill(p, s, s->count, expected_count(p, s, s->cur), false, running);
        describe(p, s, running);
    }
    return nclosed;
}

int det_rate_tick(const struct det_rate_params *p, struct det_rate_state *s, int64_t now_usec,
                  struct det_result *closed)
{
    if (!s->started)
        return 0;
    return advance(p, s, interval_of(p, now_usec), closed);
}
