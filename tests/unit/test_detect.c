/* SPDX-License-Identifier: Apache-2.0 */
#include <math.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rarewatch/detect.h"
#include "rarewatch/conf_schema.h"
#include "rarewatch/detect_stage.h"
#include "rarewatch/fsutil.h"
#include "rarewatch/json_scan.h"
#include "rarewatch/record_stage.h"
#include "rarewatch/keytab.h"
#include "tap.h"

/* Deterministic noise: the tests must not depend on libc's rand(). */
static uint64_t rng_state;
static double uniform(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(void) { return sqrt(-2 * log(uniform())) * cos(2 * M_PI * uniform()); }

TEST(normal_surprise_matches_known_tails)
{
    CHECK_NEAR(det_normal_surprise(0), 0, 1e-12);
    CHECK_NEAR(det_normal_surprise(1.959963985), -log10(0.05), 1e-6);
    CHECK_NEAR(det_normal_surprise(-3.290526731), -log10(0.001), 1e-6);
    /* The asymptotic branch joins the erfc branch without a step. */
    double below = det_normal_surprise(29.999), above = det_normal_surprise(30.001);
    CHECK(above > below);
    CHECK_NEAR(above - below, 0.002 * 30 / M_LN10, 0.001);
    CHECK(det_normal_surprise(INFINITY) >= 300);
    CHECK(det_normal_surprise(NAN) == 0);
}

TEST(poisson_tails_match_direct_sums)
{
    /* P(X >= 1 | 1) = 1 - e^-1 */
    CHECK_NEAR(det_poisson_upper_surprise(1, 1), -log10(1 - exp(-1)), 1e-9);
    /* P(X <= 0 | 5) = e^-5 */
    CHECK_NEAR(det_poisson_lower_surprise(0, 5), 5 / M_LN10, 1e-9);
    for (double lambda = 0.5; lambda < 200; lambda *= 3) {
        double pmf = exp(-lambda), cdf = 0;
        for (int k = 0; k < 400; k++) {
            cdf += pmf;
            double upper = 1 - cdf + pmf; /* P(X >= k) */
            if (cdf > 1e-12 && cdf < 0.999)
                CHECK_NEAR(det_poisson_lower_surprise(k, lambda), -log10(cdf), 1e-6);
            if (upper > 1e-6 && upper < 0.999)
                CHECK_NEAR(det_poisson_upper_surprise(k, lambda), -log10(upper), 1e-6);
            pmf *= lambda / (k + 1);
        }
    }
    /* k = 1 is taken in closed form (-expm1): it meets the series just
     * beside it, for tiny and large lambda alike. */
    for (double lambda = 1e-9; lambda < 60; lambda *= 1.7) {
        double closed = det_poisson_upper_surprise(1, lambda), series = det_poisson_upper_surprise(1 + 1e-12, lambda);
        CHECK_NEAR(closed, series, 1e-9 * (1 + closed));
        CHECK_NEAR(closed, -log10(-expm1(-lambda)), 1e-12 * (1 + closed));
    }
    /* Far tails stay finite and ordered. */
    double s1 = det_poisson_upper_surprise(50, 2), s2 = det_poisson_upper_surprise(60, 2);
    CHECK(s1 > 40 && s2 > s1);
    CHECK(det_poisson_upper_surprise(5000, 2) == 300);
}

/* The series, four terms a step, against P(X >= k) summed in long double
 * from the far end (no cancellation), at integer k and at the fractional
 * k an overdispersed key gives (P(k, lambda) then, compared with the sum of
 * its two integer neighbours' bracket). */
TEST(poisson_upper_tail_series_is_accurate)
{
    for (double lambda = 0.01; lambda < 80; lambda *= 1.37) {
        long double pmf[700];
        pmf[0] = expl(-(long double)lambda);
        for (int j = 1; j < 700; j++)
            pmf[j] = pmf[j - 1] * (long double)lambda / j;
        long double upper = 0;
        for (int k = 699; k >= 2; k--) {
            upper += pmf[k];
            if (upper < 1e-280L || upper > 0.999L)
                continue;
            double want = -log10((double)upper), got = det_poisson_upper_surprise(k, lambda);
            CHECK_NEAR(got, want, 1e-12 * (1 + want));
        }
    }
    /* Fractional k: between its integer neighbours, and continuous. */
    for (double k = 1.05; k < 30; k += 0.7) {
        double lo = det_poisson_upper_surprise(floor(k), 2.5), hi = det_poisson_upper_surprise(ceil(k), 2.5);
        double mid = det_poisson_upper_surprise(k, 2.5);
        CHECK(mid > lo && mid < hi);
        CHECK_NEAR(det_poisson_upper_surprise(k + 1e-9, 2.5), mid, 1e-7 * (1 + mid));
    }
}

TEST(calibration_is_model_until_history_then_empirical)
{
    struct det_calib_params p;
    det_calib_params_default(&p);
    struct det_calib c = { 0 };
    CHECK_NEAR(det_calib_surprise(&p, &c, 2.5), 2.5, 0);
    /* A model that says "1e-3" on every tenth sample is 10x too confident. */
    for (int i = 0; i < 5000; i++)
        det_calib_learn(&p, &c, i % 10 == 0 ? 3.0 : 0.1);
    CHECK_NEAR(det_calib_surprise(&p, &c, 3.0), 1.0, 0.15);
    CHECK(det_calib_surprise(&p, &c, 0.0) < 0.01);
    /* Beyond the history it keeps rising, monotonically. */
    double prev = 0;
    for (double s = 0; s < 50; s += 0.25) {
        double cs = det_calib_surprise(&p, &c, s);
        CHECK(cs >= prev);
        prev = cs;
    }
    CHECK(det_calib_surprise(&p, &c, 20) > 3);
}

TEST(calibration_caps_recurring_extremes)
{
    struct det_calib_params p;
    det_calib_params_default(&p);
    struct det_calib c = { 0 };
    /* A daily spike the model calls 1e-50, five days of 5-minute data:
     * too few to trust a level (min_mass 10), enough to say it recurs. */
    for (int i = 0; i < 5 * 288; i++)
        det_calib_learn(&p, &c, i % 288 == 100 ? 50 : 0.2);
    CHECK_NEAR(det_calib_surprise(&p, &c, 50), log10(288), 0.2);
    /* Something beyond anything seen still extrapolates. */
    CHECK(det_calib_surprise(&p, &c, 100) > 10);
    /* A single earlier extreme does not mute the next one. */
    struct det_calib once = { 0 };
    for (int i = 0; i < 1000; i++)
        det_calib_learn(&p, &once, i == 500 ? 50 : 0.2);
    CHECK(det_calib_surprise(&p, &once, 50) > 10);
}

TEST(threshold_bounds)
{
    struct det_threshold_params p;
    det_threshold_params_default(&p);
    p.above = 100;
    CHECK_INT(det_threshold_params_check(&p), 0);
    struct det_result r;
    det_threshold_eval(&p, 50, &r);
    CHECK(!r.alert && r.score == 0);
    det_threshold_eval(&p, 150, &r);
    CHECK(r.alert && r.score == 1 && r.why == DET_WHY_ABOVE);
    CHECK_NEAR(r.raw, 50, 0);
    p.below = 200;
    CHECK_INT(det_threshold_params_check(&p), -EINVAL);
}

TEST(zscore_alerts_on_outlier_not_on_noise)
{
    struct det_zscore_params p;
    det_zscore_params_default(&p);
    struct det_zscore_state s = { 0 };
    struct det_result r;
    rng_state = 1;
    unsigned alerts = 0;
    for (int i = 0; i < 2000; i++) {
        det_zscore_update(&p, &s, 50 + 2 * gauss(), 0, &r);
        if (i < 29)
            CHECK(r.why == DET_WHY_LEARNING && r.score == 0);
        alerts += r.alert;
    }
    CHECK(alerts <= 2);
    det_zscore_update(&p, &s, 50 + 2 * 9, 0, &r);
    CHECK(r.alert);
    CHECK(r.score > 0.999);
    CHECK_NEAR(r.expected, 50, 0.5);
    CHECK_NEAR(r.scale, 2, 0.3);
    CHECK_NEAR(r.raw, 9, 1.5);
    CHECK(r.why == DET_WHY_ABOVE);
}

TEST(zscore_time_half_life_forgets_by_event_time)
{
    struct det_zscore_params p;
    det_zscore_params_default(&p);
    p.half_life_usec = 60 * 1000000LL;
    struct det_zscore_state s = { 0 };
    struct det_result r;
    int64_t ts = 0;
    for (int i = 0; i < 100; i++, ts += 1000000)
        det_zscore_update(&p, &s, 10, ts, &r);
    CHECK_NEAR(s.ew.mean, 10, 1e-9);
    /* Twenty half-lives later the old level weighs ~1e-6 of what it did. */
    ts += 1200 * 1000000LL;
    det_zscore_update(&p, &s, 20, ts, &r);
    CHECK(s.ew.mean > 19.9);
    /* Same timestamp: no decay, a plain average of the two. */
    double w = s.ew.weight;
    det_zscore_update(&p, &s, 20, ts, &r);
    CHECK_NEAR(s.ew.weight, w + 1, 1e-12);
}

TEST(quantile_is_robust_to_heavy_tails)
{
    struct det_quantile_params p;
    det_quantile_params_default(&p);
    struct det_quantile_state s = { 0 };
    struct det_result r;
    rng_state = 7;
    unsigned alerts = 0;
    for (int i = 0; i < 5000; i++) {
        double x = 100 + 5 * gauss();
        if (i % 50 == 0)
            x = 1e6; /* wild values that would wreck a mean */
        det_quantile_update(&p, &s, x, &r);
        if (i > 1000 && i % 50)
            alerts += r.alert;
    }
    CHECK_NEAR(s.r.median, 100, 1.0);
    CHECK_NEAR(1.4826 * s.r.mad, 5, 1.0);
    CHECK(alerts <= 3);
    /* The wild values leave the model where it was: 160 and 40 are ~10
     * robust sigma out. But the calibrated score judges them against the
     * key's history, where values at least that surprising came 1 in 50:
     * not an alert there. */
    det_quantile_update(&p, &s, 160, &r);
    CHECK(r.raw > 8 && r.why == DET_WHY_ABOVE && !r.alert);
    det_quantile_update(&p, &s, 40, &r);
    CHECK(r.raw < -8 && r.why == DET_WHY_BELOW && !r.alert);
    /* The same values on a key without the wild ones alert. */
    struct det_quantile_state q = { 0 };
    for (int i = 0; i < 5000; i++)
        det_quantile_update(&p, &q, 100 + 5 * gauss(), &r);
    det_quantile_update(&p, &q, 160, &r);
    CHECK(r.alert && r.why == DET_WHY_ABOVE);
    det_quantile_update(&p, &q, 40, &r);
    CHECK(r.alert && r.why == DET_WHY_BELOW);
}

#define MIN_US (60 * 1000000LL)

TEST(rate_spike_drop_and_silence)
{
    struct det_rate_params p;
    det_rate_params_default(&p);
    struct det_rate_state s = { 0 };
    struct det_result closed, running;
    rng_state = 3;
    int64_t t0 = 1700000000LL * 1000000;
    unsigned alerts = 0;
    for (int m = 0; m < 200; m++) {
        int n = 8 + (int)(5 * uniform());
        for (int e = 0; e < n; e++) {
            int k = det_rate_add(&p, &s, t0 + m * MIN_US + e * 1000, 1, &closed, &running);
            if (k && m > 20)
                alerts += closed.alert;
        }
    }
    CHECK(alerts == 0);
    CHECK_NEAR(s.mean, 10, 1.5);
    /* A burst: the running score alerts before the minute is over. */
    int64_t t = t0 + 200 * MIN_US;
    bool early = false;
    for (int e = 0; e < 40; e++) {
        det_rate_add(&p, &s, t + e * 1000, 1, &closed, &running);
        early |= running.alert;
    }
    CHECK(early);
    CHECK(running.why == DET_WHY_RATE_HIGH);
    /* Then silence: ticking closes the burst minute and the empty one. */
    CHECK_INT(det_rate_tick(&p, &s, t + 2 * MIN_US, &closed), 2);
    CHECK(closed.alert);
    CHECK(closed.why == DET_WHY_RATE_HIGH);
    CHECK_NEAR(closed.value, 40, 0);
    CHECK_INT(det_rate_tick(&p, &s, t + 3 * MIN_US, &closed), 1);
    CHECK(closed.alert);
    CHECK(closed.why == DET_WHY_RATE_LOW);
    CHECK_NEAR(closed.value, 0, 0);
    _cleanup_buf_ struct buf b = BUF_INIT;
    CHECK_INT(det_reason(&b, DET_RATE, &closed, "shop-7", "orders", NULL), 0);
    CHECK_CONTAINS(b.data, "orders: 0 events in 1m vs ");
    CHECK_CONTAINS(b.data, "expected for key \"shop-7\"");
    /* A year of silence costs a bounded number of steps. */
    CHECK_INT(det_rate_tick(&p, &s, t + 365 * 24 * 60 * MIN_US, &closed), 64);
    CHECK_INT(det_rate_tick(&p, &s, t + 365 * 24 * 60 * MIN_US, &closed), 0);
}

/* A burst that starts in an interval's last seconds: the quiet interval it
 * starts in must not dilute the run it is judged on, and where a drop is
 * not testable (fewer than min_expected events expected) the test is
 * one-sided, its surprise the upper tail as is. */
TEST(rate_judges_each_run_a_burst_ends)
{
    struct det_rate_params p;
    det_rate_params_default(&p);
    p.min_score = 1; /* no alert, so no run is cut short by one */
    struct det_rate_state s = { 0 };
    struct det_result closed;
    int64_t t0 = 1700000000LL * 1000000;
    for (int m = 0; m < 300; m++)
        det_rate_add(&p, &s, t0 + m * MIN_US, (uint32_t)(1 + m % 2), &closed, NULL);
    det_rate_add(&p, &s, t0 + 300 * MIN_US, 2, &closed, NULL);
    det_rate_add(&p, &s, t0 + 301 * MIN_US, 9, &closed, NULL);
    CHECK_INT(det_rate_add(&p, &s, t0 + 302 * MIN_US, 9, &closed, NULL), 1);
    CHECK_NEAR(closed.value, 9, 0); /* the interval alone beat 2 + 9 */
    double phi = MAX(1.0, s.disp);
    CHECK_INT(det_rate_tick(&p, &s, t0 + 303 * MIN_US, &closed), 1);
    /* 9 + 9 against ~3 (10^-8.4) is rarer than 2 + 9 + 9 against ~4.5
     * (10^-7.2) or 9 alone (10^-4.6): the verdict is that run's. */
    CHECK_NEAR(closed.value, 18, 0);
    CHECK_NEAR(closed.interval, 120, 0);
    CHECK_NEAR(closed.expected, 3, 0.3);
    CHECK(closed.why == DET_WHY_RATE_HIGH);
    CHECK_NEAR(closed.raw, det_poisson_upper_surprise(18 / phi, closed.expected / phi), 1e-12);
    _cleanup_buf_ struct buf b = BUF_INIT;
    CHECK_INT(det_reason(&b, DET_RATE, &closed, "#tag5", "posts", NULL), 0);
    CHECK_CONTAINS(b.data, "posts: 18 events in 2m vs ");
}

static int rate_run_days(const struct det_rate_params *p, struct det_rate_state *s, int days,
                         int64_t t0)
{
    struct det_result closed;
    int alerts = 0;
    for (int m = 0; m < days * 288; m++) {
        int hour = m % 288 / 12;
        int n = hour >= 8 && hour < 20 ? 30 : 3;
        int64_t t = t0 + (int64_t)m * 5 * MIN_US;
        if (det_rate_add(p, s, t, (uint32_t)n, &closed, NULL) && m > 2 * 288)
            alerts += closed.alert;
    }
    return alerts;
}

TEST(rate_daily_profile_knows_the_hour)
{
    struct det_rate_params p;
    det_rate_params_default(&p);
    p.interval_usec = 5 * MIN_US;
    p.daily = true;
    CHECK_INT(det_rate_params_check(&p), 0);
    struct det_rate_state s = { 0 };
    int64_t t0 = 1700006400LL * 1000000; /* midnight UTC */
    CHECK(rate_run_days(&p, &s, 7, t0) <= 2);
    /* 3 am with daytime traffic: a spike for the hour. */
    struct det_result closed;
    int64_t t = t0 + (7 * 288 + 36) * 5 * MIN_US;
    det_rate_add(&p, &s, t, 30, &closed, NULL);
    CHECK_INT(det_rate_tick(&p, &s, t + 5 * MIN_US, &closed), 1);
    CHECK(closed.alert && closed.why == DET_WHY_RATE_HIGH);
    CHECK_NEAR(closed.expected, 3, 1);

    /* Without the profile the day/night mix makes 30 at 3 am ordinary. */
    p.daily = false;
    struct det_rate_state flat = { 0 };
    rate_run_days(&p, &flat, 7, t0);
    det_rate_add(&p, &flat, t, 30, &closed, NULL);
    det_rate_tick(&p, &flat, t + 5 * MIN_US, &closed);
    CHECK(!closed.alert);

    p.daily = true;
    p.interval_usec = 2 * 3600 * 1000000LL;
    CHECK_INT(det_rate_params_check(&p), -EINVAL);
}

/* A daily key's first day is its profile's learning day: what the model
 * calls surprising then (the 8 am rise against an hour it has not seen) is
 * its own inexperience, and a calibrator that learned it would call the
 * next month's bursts "seen before". */
TEST(rate_daily_calibrator_skips_the_learning_day)
{
    struct det_rate_params p;
    det_rate_params_default(&p);
    p.interval_usec = 5 * MIN_US;
    p.daily = true;
    struct det_rate_state s = { 0 };
    int64_t t0 = 1700006400LL * 1000000; /* midnight UTC */
    rate_run_days(&p, &s, 1, t0);
    CHECK(s.n < 288);
    CHECK(s.calib.tail[0] == 0);
    /* Past the day it learns. */
    rate_run_days(&p, &s, 1, t0 + 288 * 5 * MIN_US);
    CHECK(s.n >= 288);
    CHECK(s.calib.tail[0] > 0);
}

/* The learning rates come from a decay worked out once per half-life
 * (det_rate_params_prepare); a half-life set after it must still be the
 * one used: the same events give the same state with and without the
 * prepare call, and a different state than the default half-life. */
static void rate_feed(const struct det_rate_params *p, struct det_rate_state *s)
{
    struct det_result closed;
    rng_state = 11;
    int64_t t0 = 1700000000LL * 1000000;
    for (int m = 0; m < 300; m++) {
        int n = (m % 50 == 49 ? 30 : 4) + (int)(4 * uniform());
        for (int e = 0; e < n; e++)
            det_rate_add(p, s, t0 + m * MIN_US + e * 1000, 1, &closed, NULL);
    }
}

TEST(rate_decay_memo_follows_the_half_life)
{
    struct det_rate_params stale, prepared, dflt;
    det_rate_params_default(&stale);
    det_rate_params_default(&dflt);
    stale.half_life = 7;
    stale.calib.half_life = 500;
    prepared = stale;
    det_rate_params_prepare(&prepared);
    CHECK(stale.decay.half_life != stale.half_life);
    CHECK(prepared.decay.half_life == prepared.half_life);
    struct det_rate_state a = { 0 }, b = { 0 }, c = { 0 };
    rate_feed(&stale, &a);
    rate_feed(&prepared, &b);
    rate_feed(&dflt, &c);
    CHECK(memcmp(&a, &b, sizeof(a)) == 0);
    CHECK(a.mean != c.mean);
    CHECK(memcmp(&a.calib, &c.calib, sizeof(a.calib)) != 0);
}

/* Close a rate key's intervals before t one call each, asking for the
 * result: each close is then the first of its call, the one that builds
 * its result (fill), never a quiet one. */
static void rate_close_one_by_one(const struct det_rate_params *p, struct det_rate_state *s,
                                  int64_t t)
{
    struct det_result closed;
    while (s->started && s->cur < t / p->interval_usec)
        CHECK(det_rate_tick(p, s, (s->cur + 1) * p->interval_usec, &closed) == 1);
}

/* A rate close is scored in probabilities (the calibrator's model-tail
 * mode, and 1 - e^-lambda as is for one event): the same score, to
 * rounding, as the surprise path det_calib_surprise takes with the state
 * the close saw. Every close here is one interval with one event or more,
 * one-sided (fewer than min_expected expected), against a calibrator past
 * its trusted levels on some closes and inside them on others. */
TEST(rate_scores_in_probabilities_as_in_surprises)
{
    struct det_rate_params p;
    det_rate_params_default(&p);
    p.min_intervals = 5;
    struct det_rate_state s = { 0 };
    rng_state = 11;
    int64_t t = 1700000000LL * 1000000;
    unsigned checked = 0, past_top = 0, one_event = 0;
    for (int i = 0; i < 6000; i++) {
        /* 1 + Poisson(0.6) events, the burst of 9 now and then */
        unsigned n = 1;
        for (double u = uniform(); u < 0.6 / (n + 0.6) && n < 6; u = uniform())
            n++;
        if (i % 500 == 499)
            n = 9;
        struct det_calib before = s.calib;
        double closing_count = s.count; /* the open interval's, closed by this add */
        struct det_result r;
        int closed = det_rate_add(&p, &s, t + (int64_t)i * p.interval_usec, n, &r, NULL);
        if (closed != 1 || r.why == DET_WHY_LEARNING)
            continue;
        double cal = det_calib_surprise(&p.calib, &before, r.raw), want = 1 - pow(10, -cal);
        CHECK_NEAR(1 - r.score, 1 - want, 1e-13 * (1 - want) + 1e-300);
        checked++;
        one_event += closing_count == 1;
        /* past the top trusted level with the model's surprise kept as is
         * (not the interpolated history's, nor the top level's floor) */
        past_top += cal == r.raw;
    }
    CHECK(checked > 5000);
    CHECK(one_event > 1000 && past_top > 50 && past_top < checked);
}

/* An empty interval that cannot be news is closed without building its
 * result (close_quiet) where none is asked for or one is already there:
 * the state must move exactly as a scored close moves it. The same events
 * and ticks given to three keys, asking for every result (a), for none
 * (b: every empty one-sided close quiet) and for every result one interval
 * per call (c: no close quiet), leave the same state bit for bit after
 * every call: through learning, sparse stretches (quiet closes), bursts on
 * them (far-tail runs that a quiet close ends), a busy stretch (drops
 * tested: not quiet) and its silence, with the default min_score, with 0
 * (every close alerts) and with daily. */
TEST(rate_quiet_closes_move_the_state_as_scored_ones_do)
{
    for (int variant = 0; variant < 3; variant++) {
        struct det_rate_params p;
        det_rate_params_default(&p);
        if (variant == 1)
            p.min_score = 0;
        if (variant == 2) {
            p.daily = true;
            p.interval_usec = 3600 * USEC_PER_SEC / 4;
            det_rate_params_prepare(&p);
        }
        struct det_rate_state a = { 0 }, b = { 0 }, c = { 0 };
        struct det_result closed;
        rng_state = 5;
        int64_t t = 1700000000LL * 1000000;
        unsigned quiet_possible = 0, far_runs = 0;
        for (int i = 0; i < 4000; i++) {
            /* Sparse (an event every ~2 intervals), then busy (~8 per
             * interval) for a while, then silent ticks. */
            bool busy = i % 1000 >= 700 && i % 1000 < 900;
            double gap = busy ? p.interval_usec / 8.0 : 2.0 * p.interval_usec;
            /* Now and then two bursts on the sparse key an empty interval
             * apart, rare enough to be far in the calibrator's tail: the
             * quiet close between them ends the first one's far-tail run. */
            bool burst = i % 1000 == 300 || i % 1000 == 301;
            t += i % 1000 == 301 ? 2 * p.interval_usec : (int64_t)(gap * 2 * uniform()) + 1;
            rate_close_one_by_one(&p, &c, t);
            if (i % 1000 >= 900) {
                det_rate_tick(&p, &a, t, &closed);
                det_rate_tick(&p, &b, t, NULL);
            } else {
                uint32_t n = burst ? 20 : 1;
                det_rate_add(&p, &a, t, n, &closed, NULL);
                det_rate_add(&p, &b, t, n, NULL, NULL);
                CHECK(det_rate_add(&p, &c, t, n, &closed, NULL) == 0);
            }
            quiet_possible += a.count == 0 && a.mean < p.min_expected;
            far_runs += a.far_run > 0;
            CHECK(memcmp(&a, &c, sizeof(a)) == 0);
            CHECK(memcmp(&b, &c, sizeof(b)) == 0);
        }
        CHECK(quiet_possible > 0);
        CHECK(far_runs > 0);
        CHECK(a.n > 100);
    }
}

TEST(rare_category_first_seen_and_rare)
{
    struct det_category_params p;
    det_category_params_default(&p);
    struct det_category_state s = { 0 };
    struct det_result r;
    static const char *const usual[] = { "US", "DE", "FR", "GB" };
    unsigned alerts = 0;
    rng_state = 11;
    for (int i = 0; i < 3000; i++) {
        const char *v = usual[(int)(uniform() * 4)];
        det_category_update(&p, &s, v, strlen(v), &r);
        if (i < 100)
            CHECK(r.why == DET_WHY_LEARNING);
        alerts += r.alert;
    }
    CHECK(alerts == 0);
    det_category_update(&p, &s, "RU", 2, &r);
    CHECK(r.alert);
    CHECK(r.why == DET_WHY_NEW_CATEGORY);
    _cleanup_buf_ struct buf b = BUF_INIT;
    CHECK_INT(det_reason(&b, DET_RARE_CATEGORY, &r, "", "country", "RU"), 0);
    CHECK_STR(b.data, "country \"RU\" first seen");
    /* Seen once: no longer new, still rare, but less surprising. */
    double first = det_result_surprise(&r);
    det_category_update(&p, &s, "RU", 2, &r);
    CHECK(r.why == DET_WHY_RARE_CATEGORY);
    CHECK(det_result_surprise(&r) < first);
    det_category_update(&p, &s, "US", 2, &r);
    CHECK(!r.alert);
    CHECK(r.value > 0.2);
}

TEST(rare_category_remembers_values_evicted_from_its_slots)
{
    struct det_category_params p;
    det_category_params_default(&p);
    struct det_category_state s = { 0 };
    struct det_result r;
    char v[32];
    /* 20 values through 16 slots: some are evicted, none is forgotten. */
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(v, sizeof(v), "plan-%d", i % 20);
        det_category_update(&p, &s, v, (size_t)n, &r);
    }
    unsigned evicted = 0;
    for (int k = 0; k < 20; k++) {
        int n = snprintf(v, sizeof(v), "plan-%d", k);
        /* The detector's slot tag: the value's keytab_hash, low 32 bits, bit 0 set. */
        uint32_t tag = (uint32_t)(keytab_hash(v, (size_t)n) | 1);
        bool tracked = false;
        for (int j = 0; j < DET_CATEGORY_SLOTS; j++)
            tracked |= s.tag[j] == tag;
        struct det_category_state copy = s;
        det_category_update(&p, &copy, v, (size_t)n, &r);
        CHECK(r.why != DET_WHY_NEW_CATEGORY);
        evicted += !tracked;
    }
    CHECK(evicted >= 4);
    det_category_update(&p, &s, "plan-enterprise", 15, &r);
    CHECK(r.why == DET_WHY_NEW_CATEGORY);
}

TEST(rare_category_many_equally_rare_values_do_not_alert)
{
    struct det_category_params p;
    det_category_params_default(&p);
    struct det_category_state s = { 0 };
    struct det_result r;
    unsigned alerts = 0;
    char v[32];
    /* Session ids: every value is new, so new values are not news. */
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(v, sizeof(v), "session-%d", i);
        det_category_update(&p, &s, v, (size_t)n, &r);
        if (i > 500)
            alerts += r.alert;
    }
    CHECK(alerts < 10);
}

/* n samples of mean + sd * N(0,1) without timestamps; returns the alerts. */
static unsigned auto_feed_noise(const struct det_auto_params *p, struct det_auto_state *s, int n,
                                double mean, double sd, struct det_result *r)
{
    unsigned alerts = 0;
    for (int i = 0; i < n; i++) {
        det_auto_update(p, s, mean + sd * gauss(), 0, r);
        alerts += r->alert;
    }
    return alerts;
}

TEST(auto_catches_spike_and_level_shift)
{
    struct det_auto_params p;
    det_auto_params_default(&p);
    struct det_auto_state s = { 0 };
    struct det_result r;
    rng_state = 5;
    CHECK(auto_feed_noise(&p, &s, 3000, 1000, 30, &r) <= 2);
    det_auto_update(&p, &s, 1400, 0, &r);
    CHECK(r.alert);
    _cleanup_buf_ struct buf b = BUF_INIT;
    CHECK_INT(det_reason(&b, DET_AUTO, &r, "i-123", "latency_ms", NULL), 0);
    CHECK_CONTAINS(b.data, "latency_ms 1400.00 ");
    for (int i = 0; i < 300; i++)
        det_auto_update(&p, &s, 1000 + 30 * gauss(), 0, &r);
    /* A step of 5 sigma is caught within a few samples. */
    bool caught = false;
    for (int i = 0; i < 10; i++) {
        det_auto_update(&p, &s, 1150 + 30 * gauss(), 0, &r);
        caught |= r.alert;
    }
    CHECK(caught);
}

TEST(auto_daily_view_catches_value_wrong_for_the_hour)
{
    struct det_auto_params p;
    det_auto_params_default(&p);
    struct det_auto_state s = { 0 };
    struct det_result r;
    rng_state = 9;
    const int64_t step = 300 * 1000000LL; /* 5-minute samples */
    int64_t ts = 1700006400LL * 1000000;  /* midnight UTC */
    unsigned alerts = 0;
    /* Busy by day (~100), quiet at night (~10), for a week. */
    for (int i = 0; i < 7 * 288; i++, ts += step) {
        double hour = (double)(i % 288) / 12;
        double x = (hour >= 8 && hour < 20 ? 100 : 10) + 2 * gauss();
        det_auto_update(&p, &s, x, ts, &r);
        if (i > 2 * 288)
            alerts += r.alert;
    }
    CHECK(alerts <= 3);
    /* 3 am, daytime traffic: ordinary for the day, not for the hour. */
    ts += 3 * 12 * step;
    det_auto_update(&p, &s, 100, ts, &r);
    CHECK(r.alert);
    CHECK(r.why == DET_WHY_DAILY);
    CHECK_NEAR(r.expected, 10, 3);
    /* Without timestamps the same value is unremarkable. */
    struct det_auto_state u = { 0 };
    rng_state = 9;
    for (int i = 0; i < 7 * 288; i++) {
        double hour = (double)(i % 288) / 12;
        det_auto_update(&p, &u, (hour >= 8 && hour < 20 ? 100 : 10) + 2 * gauss(), 0, &r);
    }
    det_auto_update(&p, &u, 100, 0, &r);
    CHECK(!r.alert);
}

TEST(auto_volatility_view_catches_oscillation)
{
    struct det_auto_params p;
    det_auto_params_default(&p);
    struct det_auto_state s = { 0 };
    struct det_result r;
    rng_state = 11;
    CHECK(auto_feed_noise(&p, &s, 3000, 100, 1, &r) <= 2);
    /* The series starts to flap between 97.5 and 102.5: no single value is
     * rare for the level (2.5 sigma), the size of its steps is. */
    int first = -1;
    for (int i = 0; i < 40; i++) {
        det_auto_update(&p, &s, 100 + (i & 1 ? 2.5 : -2.5) + 0.2 * gauss(), 0, &r);
        if (r.alert && first < 0) {
            first = i;
            /* The reason is about the steps (noise of sd 1 steps ~1.13 on
             * average; the flapping's steps are ~5 and pull the recent mean
             * up), not about a value in its usual range. */
            CHECK(r.why == DET_WHY_VOLATILITY);
            CHECK_NEAR(r.expected, 2 / sqrt(M_PI), 0.1);
            CHECK(r.value > r.expected + 3 * r.scale);
            _cleanup_buf_ struct buf b = BUF_INIT;
            CHECK_INT(det_reason(&b, DET_AUTO, &r, "asg-1", "instances", NULL), 0);
            CHECK_CONTAINS(b.data, "instances: the steps between values average ");
            CHECK_CONTAINS(b.data, "σ above their usual ");
        }
    }
    CHECK(first >= 0 && first < 20);
}

TEST(auto_constant_series_then_change)
{
    struct det_auto_params p;
    det_auto_params_default(&p);
    struct det_auto_state s = { 0 };
    struct det_result r;
    for (int i = 0; i < 500; i++) {
        det_auto_update(&p, &s, 42, 0, &r);
        CHECK(!r.alert);
        CHECK(isfinite(r.score));
    }
    det_auto_update(&p, &s, 43, 0, &r);
    CHECK(r.alert);
    CHECK(r.score <= 1 && r.score >= 0);
}

TEST(reason_sentences)
{
    _cleanup_buf_ struct buf b = BUF_INIT;
    struct det_result r = { .value = 4812.5, .expected = 52.1, .scale = 755.6, .why = DET_WHY_ABOVE };
    CHECK_INT(det_reason(&b, DET_ZSCORE, &r, NULL, "amount", NULL), 0);
    CHECK_STR(b.data, "amount 4812.50 is 6.3σ above the mean 52.10");
    buf_reset(&b);
    r = (struct det_result){ .value = 12, .expected = 2.1, .interval = 60, .why = DET_WHY_RATE_HIGH };
    CHECK_INT(det_reason(&b, DET_RATE, &r, NULL, "", NULL), 0);
    CHECK_STR(b.data, "12 events in 1m vs 2.1 expected");
    buf_reset(&b);
    r = (struct det_result){ .value = 3, .expected = 10, .scale = 0.5, .why = DET_WHY_DAILY };
    CHECK_INT(det_reason(&b, DET_AUTO, &r, "k", "temp", NULL), 0);
    CHECK_STR(b.data, "temp 3.00 is 14.0σ below the usual value for this time of day 10.00 for key \"k\"");
    buf_reset(&b);
    r = (struct det_result){ .value = 4.8, .expected = 0.25, .scale = 0.5, .why = DET_WHY_VOLATILITY };
    CHECK_INT(det_reason(&b, DET_AUTO, &r, "asg-1", "instances", NULL), 0);
    CHECK_STR(b.data, "instances: the steps between values average 4.80, 9.1σ above their usual 0.25 for key \"asg-1\"");
    buf_reset(&b);
    r = (struct det_result){ .value = 0.0025, .expected = 0.4, .why = DET_WHY_RARE_CATEGORY };
    CHECK_INT(det_reason(&b, DET_RARE_CATEGORY, &r, NULL, "ua", "curl/7"), 0);
    CHECK_STR(b.data, "ua \"curl/7\" is rare (0.25% of recent values)");
}

/* Feed the first half, save, load into a fresh state, feed the rest: the
 * scores must equal an uninterrupted run's bit for bit. */
#define RESUME_N 4000
static double series(int i)
{
    return 100 + 10 * sin(i / 50.0) + (i % 97 == 0 ? 80 : 0) + ((i * 7919) % 13) * 0.37;
}

static void run_one(enum det_type t, void *st, int i, struct det_result *r)
{
    static struct det_zscore_params zp;
    static struct det_quantile_params qp;
    static struct det_rate_params rp;
    static struct det_category_params cp;
    static struct det_auto_params ap;
    det_zscore_params_default(&zp);
    zp.half_life_usec = 30 * 1000000LL;
    det_quantile_params_default(&qp);
    det_rate_params_default(&rp);
    rp.daily = true;
    det_category_params_default(&cp);
    det_auto_params_default(&ap);
    double x = series(i);
    int64_t ts = 1700000000LL * 1000000 + (int64_t)i * 7000000;
    char v[8];
    switch (t) {
    case DET_ZSCORE: det_zscore_update(&zp, st, x, ts, r); break;
    case DET_QUANTILE: det_quantile_update(&qp, st, x, r); break;
    case DET_AUTO: det_auto_update(&ap, st, x, ts, r); break;
    case DET_RATE:
        *r = (struct det_result){ 0 };
        /* One call per minute: a daily rate alerts only after a day. */
        det_rate_add(&rp, st, 1700000000LL * 1000000 + (int64_t)i * 60000000,
                     (uint32_t)(i % 5 + (i % 700 == 0 ? 100 : 0)), r, NULL);
        break;
    case DET_RARE_CATEGORY: {
        int n = snprintf(v, sizeof(v), "c%d", i % 500 == 499 ? 100 + i / 500 : (i * i) % 23 % 19);
        det_category_update(&cp, st, v, (size_t)n, r);
        break;
    }
    default: abort();
    }
}

TEST(save_load_resumes_bit_identically)
{
    static const enum det_type types[] = { DET_ZSCORE, DET_QUANTILE, DET_RATE, DET_RARE_CATEGORY,
                                           DET_AUTO };
    for (unsigned k = 0; k < ELEMENTSOF(types); k++) {
        enum det_type t = types[k];
        size_t sz = det_state_size(t);
        CHECK(sz > 0 && sz <= 4096);
        void *a = calloc(1, sz), *b = calloc(1, sz);
        double *ref = calloc(RESUME_N, sizeof(double));
        struct det_result r;
        for (int i = 0; i < RESUME_N; i++) {
            run_one(t, a, i, &r);
            ref[i] = r.score;
        }
        memset(a, 0, sz);
        for (int i = 0; i < RESUME_N / 2; i++)
            run_one(t, a, i, &r);
        _cleanup_buf_ struct buf saved = BUF_INIT;
        CHECK_INT(det_state_save(t, a, &saved), 0);
        CHECK_INT(det_state_load(t, b, saved.data, saved.len), (long long)saved.len);
        unsigned mismatches = 0, alerts = 0;
        for (int i = RESUME_N / 2; i < RESUME_N; i++) {
            run_one(t, b, i, &r);
            mismatches += memcmp(&r.score, &ref[i], sizeof(double)) != 0;
            alerts += r.score > 0.99;
        }
        printf("# %s: %u mismatches, %u scores > 0.99\n", det_type_name(t), mismatches, alerts);
        CHECK_INT(mismatches, 0);
        /* The comparison is only worth something if the scores move. */
        CHECK(alerts > 0);
        free(a);
        free(b);
        free(ref);
    }
}

TEST(load_rejects_bad_records)
{
    struct det_zscore_state s = { .ew.mean = 1 }, out;
    _cleanup_buf_ struct buf b = BUF_INIT;
    CHECK_INT(det_state_save(DET_ZSCORE, &s, &b), 0);
    CHECK_INT(det_state_load(DET_QUANTILE, &out, b.data, b.len), -EINVAL);
    CHECK_INT(det_state_load(DET_ZSCORE, &out, b.data, b.len - 1), -EINVAL);
    b.data[4] = 99; /* version from the future */
    CHECK_INT(det_state_load(DET_ZSCORE, &out, b.data, b.len), -EPROTO);
    b.data[0] ^= 1;
    CHECK_INT(det_state_load(DET_ZSCORE, &out, b.data, b.len), -EINVAL);
}

/* A snapshot from disk may hold values no update leaves (a damaged file):
 * an index past its array, a time before 1970, a count that is not one.
 * They are refused, so no detector runs on them. */
/* A rate state saved by version 1 (hour factors in the middle, 232
 * bytes) loads into today's layout field for field, and goes on as the
 * key it was: an upgrade does not make rate keys relearn. */
struct rate_state_v1 {
    int64_t cur;
    double count, mean, disp;
    float hour[24];
    uint32_t n, started;
    struct det_calib calib;
    float hist_count[DET_RATE_RUN_MAX - 1], hist_expected[DET_RATE_RUN_MAX - 1];
    uint16_t hist_len, far_run;
};

/* A state record as version 1 wrote it: today's header for type t (taken
 * from det_state_save of the current state cur), made version 1's
 * (version byte 4, size at byte 8: magic u32, version u8, type u8,
 * reserved u16, size u32), then the old layout's bytes. Returns the
 * header's length. */
static size_t state_record_v1(enum det_type t, const void *cur, size_t cur_size, const void *old,
                              size_t old_size, struct buf *out)
{
    _cleanup_buf_ struct buf b = BUF_INIT;
    CHECK_INT(det_state_save(t, cur, &b), 0);
    size_t hdr = b.len - cur_size;
    CHECK_INT(hdr, 12);
    CHECK_INT(buf_append(out, b.data, hdr), 0);
    out->data[4] = 1;
    memcpy(out->data + 8, &(uint32_t){ (uint32_t)old_size }, 4);
    CHECK_INT(buf_append(out, old, old_size), 0);
    return hdr;
}

TEST(rate_state_of_version_1_loads)
{
    struct det_rate_params p;
    det_rate_params_default(&p);
    p.daily = true; /* the hour factors in use too */
    p.interval_usec = 5 * MIN_US;
    struct det_rate_state s = { 0 };
    int64_t t0 = 1700006400LL * 1000000;
    rate_run_days(&p, &s, 2, t0);
    CHECK(s.hist_len > 0 && s.hour[5] > 0 && s.calib.tail[0] > 0);
    s.far_run = 2;
    struct rate_state_v1 o = { .cur = s.cur, .count = s.count, .mean = s.mean, .disp = s.disp,
                               .n = s.n, .started = 1, .calib = s.calib, .hist_len = s.hist_len,
                               .far_run = s.far_run };
    memcpy(o.hour, s.hour, sizeof(o.hour));
    memcpy(o.hist_count, s.hist_count, sizeof(o.hist_count));
    memcpy(o.hist_expected, s.hist_expected, sizeof(o.hist_expected));
    _cleanup_buf_ struct buf v1 = BUF_INIT;
    size_t hdr = state_record_v1(DET_RATE, &s, sizeof(s), &o, sizeof(o), &v1);
    uint32_t size = sizeof(o);
    struct det_rate_state got;
    memset(&got, 0xa5, sizeof(got));
    CHECK_INT(det_state_load(DET_RATE, &got, v1.data, v1.len), (long long)v1.len);
    CHECK(memcmp(&got, &s, sizeof(s)) == 0);
    /* The same record with today's size is not taken for version 1's. */
    memcpy(v1.data + 8, &(uint32_t){ sizeof(s) }, 4);
    CHECK_INT(det_state_load(DET_RATE, &got, v1.data, v1.len), -EINVAL);
    /* A damaged version 1 record is refused as today's are. */
    o.hist_len = 300;
    memcpy(v1.data + 8, &size, 4);
    memcpy(v1.data + hdr, &o, sizeof(o));
    CHECK_INT(det_state_load(DET_RATE, &got, v1.data, v1.len), -ERANGE);
}

/* A rare_category state saved by version 1 (64-bit value hashes) loads
 * with each slot's tag the low half of its hash, the rest as it was. */
struct category_state_v1 {
    uint64_t hash[DET_CATEGORY_SLOTS];
    float count[DET_CATEGORY_SLOTS];
    uint64_t seen[2];
    double unit, total;
    uint32_t n, pad_;
    struct det_calib calib;
};

TEST(rare_category_state_of_version_1_loads)
{
    struct det_category_params p;
    det_category_params_default(&p);
    struct det_category_state s = { 0 };
    struct det_result r;
    char v[32];
    for (int i = 0; i < 300; i++) {
        int n = snprintf(v, sizeof(v), "country-%d", i % 12);
        det_category_update(&p, &s, v, (size_t)n, &r);
    }
    struct category_state_v1 o = { .unit = s.unit, .total = s.total, .n = s.n, .calib = s.calib };
    unsigned used = 0;
    for (int i = 0; i < DET_CATEGORY_SLOTS; i++) {
        /* whatever the high half held: only the low one is kept */
        o.hash[i] = s.tag[i] ? (uint64_t)(0x5eed0000u + i) << 32 | s.tag[i] : 0;
        used += s.tag[i] != 0;
    }
    CHECK_INT(used, 12);
    memcpy(o.count, s.count, sizeof(o.count));
    memcpy(o.seen, s.seen, sizeof(o.seen));
    _cleanup_buf_ struct buf v1 = BUF_INIT;
    state_record_v1(DET_RARE_CATEGORY, &s, sizeof(s), &o, sizeof(o), &v1);
    struct det_category_state got;
    memset(&got, 0xa5, sizeof(got));
    CHECK_INT(det_state_load(DET_RARE_CATEGORY, &got, v1.data, v1.len), (long long)v1.len);
    CHECK(memcmp(&got, &s, sizeof(s)) == 0);
}

TEST(load_refuses_impossible_values)
{
    const struct det_rate_state ok = { .started = 1, .cur = 5, .mean = 2, .disp = 1 };
    struct det_rate_state rout;
    _cleanup_buf_ struct buf b = BUF_INIT;
    CHECK_INT(det_state_save(DET_RATE, &ok, &b), 0);
    CHECK_INT(det_state_load(DET_RATE, &rout, b.data, b.len), (long long)b.len);
    /* The valid state with one value no update leaves. */
    struct det_rate_state bad[6];
    for (size_t i = 0; i < ELEMENTSOF(bad); i++)
        bad[i] = ok;
    bad[0].cur = -1;
    bad[1].count = NAN;
    bad[2].mean = -2;
    bad[3].disp = INFINITY;
    bad[4].hist_len = DET_RATE_RUN_MAX;
    bad[5].hour[3] = -1;
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        _cleanup_buf_ struct buf c = BUF_INIT;
        CHECK_INT(det_state_save(DET_RATE, &bad[i], &c), 0);
        CHECK_INT(det_state_load(DET_RATE, &rout, c.data, c.len), -ERANGE);
    }
    struct det_zscore_state z = { .ew.mean = 1, .last_ts = -5 }, zout;
    _cleanup_buf_ struct buf zb = BUF_INIT;
    CHECK_INT(det_state_save(DET_ZSCORE, &z, &zb), 0);
    CHECK_INT(det_state_load(DET_ZSCORE, &zout, zb.data, zb.len), -ERANGE);
}

TEST(type_names_round_trip)
{
    for (int t = DET_THRESHOLD; t <= DET_AUTO; t++)
        CHECK_INT(det_type_from_name(det_type_name((enum det_type)t)), t);
    CHECK_INT(det_type_from_name("nope"), -EINVAL);
}

/* The daemon's rate tick time (app.c): the slowest active shard worker's
 * event time, a quiet one's extended by its quiet wall-clock time. */
TEST(watermark_lagging_quiet_and_idle_workers)
{
    const double now = 1795003300;
    /* A lagging worker holds the minimum back while it is not quiet. */
    struct det_clock c[3] = {
        { .event_time = 1795003290, .arrival = now - 1 },
        { .event_time = 1795003100, .arrival = now - 2 },
        { .event_time = NAN, .arrival = NAN },
    };
    CHECK_NEAR(detect_watermark(c, 3, now, 60), 1795003100, 0);
    /* A worker with no record yet holds nothing back... */
    CHECK_NEAR(detect_watermark(c, 1, now, 60), 1795003290, 0);
    CHECK(isnan(detect_watermark(&c[2], 1, now, 60)));
    CHECK(isnan(detect_watermark(c, 0, now, 60)));
    /* ...and one that ended is no longer passed (app.c unregisters it):
     * the rest move on. */
    struct det_clock live[2] = { c[0], c[2] };
    CHECK_NEAR(detect_watermark(live, 2, now, 60), 1795003290, 0);
    /* Quiet for less than idle: its last event time; for idle or more:
     * plus the quiet time (the whole of it, as windows' idle_timeout). */
    struct det_clock q = { .event_time = 1795003000, .arrival = now - 59 };
    CHECK_NEAR(detect_watermark(&q, 1, now, 60), 1795003000, 0);
    q.arrival = now - 60;
    CHECK_NEAR(detect_watermark(&q, 1, now, 60), 1795003060, 0);
    q.arrival = now - 300;
    CHECK_NEAR(detect_watermark(&q, 1, now, 60), 1795003300, 0);
    /* idle 0: never extended. */
    CHECK_NEAR(detect_watermark(&q, 1, now, 0), 1795003000, 0);
    /* The quiet lagging worker no longer holds the others back. */
    c[1].arrival = now - 200;
    CHECK_NEAR(detect_watermark(c, 3, now, 60), 1795003290, 0);
}

struct tick_arg {
    struct detect_stage *det;
    double t;
    struct rw_output out;
};

static void *tick_thread(void *p)
{
    struct tick_arg *a = p;
    for (int i = 0; i < 50; i++)
        detect_stage_tick(a->det, a->t + i * 0.1, &a->out);
    return NULL;
}

static size_t count_alerts(const struct rw_output *o)
{
    size_t n = 0;
    for (const char *p = o->lines.data; p && (p = strstr(p, "\"_alert\"")); p++)
        n++;
    return n;
}

/* A detector stage and a record-stage worker from configuration text. */
struct stage_fixture {
    struct rw_config *c;
    struct detect_stage *det;
    struct rs_worker *w;
};

static bool fixture_new(struct stage_fixture *f, const char *conf)
{
    struct conf_diag d = { .echo = stderr };
    *f = (struct stage_fixture){ 0 };
    bool ok = conf_load_string(&rw_schema, "t.conf", conf, &d, &f->c) == 0 &&
              detect_stage_new(f->c, &d, &f->det) == 0 && (f->w = rs_worker_new(f->c, NULL));
    conf_diag_clear(&d);
    return ok;
}

static void fixture_free(struct stage_fixture *f)
{
    rs_worker_free(f->w);
    detect_stage_free(f->det);
    conf_unref(f->c);
}

/* Two shard workers ticking at once close each idle key's interval once:
 * as many drop alerts as one ticking alone. */
TEST(rate_stage_tick_closes_once_under_concurrent_ticks)
{
    static const char conf[] = "[input]\ntimestamp_field = ts\n"
                               "[detector.sales]\ntype = rate\nkey = store\ninterval = 1s\n";
    size_t alerts[2] = { 0, 0 };
    for (int run = 0; run < 2; run++) {
        struct stage_fixture f;
        CHECK(fixture_new(&f, conf));
        struct detect_stage *det = f.det;
        struct rs_worker *w = f.w;
        CHECK(detect_stage_needs_tick(det));
        CHECK_NEAR(detect_stage_rate_idle(det), 60, 0);
        struct rw_output o = { 0 };
        char rec[128];
        const double t0 = 1795003200;
        for (int sec = 0; sec < 30; sec++)
            for (int e = 0; e < 20; e++)
                for (int k = 0; k < 8; k++) {
                    int len = snprintf(rec, sizeof(rec), "{\"store\":\"s%d\",\"ts\":%.3f}", k,
                                       t0 + sec + e * 0.04);
                    CHECK_INT(rs_process(w, NULL, det, 0, rec, (size_t)len, NULL, &o), 0);
                }
        CHECK_UINT(count_alerts(&o), 0);
        struct tick_arg a[2] = { { .det = det, .t = t0 + 32 }, { .det = det, .t = t0 + 32 } };
        if (run == 0) {
            tick_thread(&a[0]);
        } else {
            pthread_t th;
            CHECK_INT(pthread_create(&th, NULL, tick_thread, &a[1]), 0);
            tick_thread(&a[0]);
            pthread_join(th, NULL);
        }
        alerts[run] = count_alerts(&a[0].out) + count_alerts(&a[1].out);
        rw_output_free(&a[0].out);
        rw_output_free(&a[1].out);
        rw_output_free(&o);
        fixture_free(&f);
    }
    /* Every store's silence alerts (once per key at least), and concurrency
     * adds none. */
    CHECK(alerts[0] >= 8);
    CHECK_UINT(alerts[1], alerts[0]);
}

/* idle_expiry forgets the keys of every keyed type, not only rate's: a
 * key last seen more than idle_expiry of event time before a tick is gone
 * (counted); idle_expiry = 0 keeps it. */
TEST(stage_tick_expires_idle_keys_of_every_keyed_type)
{
    static const char *const types[] = {
        "type = zscore\nfield = v", "type = quantile\nfield = v", "type = rare_category\nfield = c",
        "type = auto\nfield = v", "type = rcf\nfields = v\ntrees = 4\nsample_size = 16", "type = rate",
    };
    const double t0 = 1795003200;
    for (size_t ti = 0; ti < sizeof(types) / sizeof(*types); ti++)
        for (int keep = 0; keep < 2; keep++) {
            char conf[256];
            snprintf(conf, sizeof(conf), "[input]\ntimestamp_field = ts\n[detector.d]\n%s\nkey = k\nidle_expiry = %s\n",
                     types[ti], keep ? "0" : "10s");
            struct stage_fixture f;
            if (!fixture_new(&f, conf)) {
                TAP_FAIL_("%s: no stage", conf);
                fixture_free(&f);
                continue;
            }
            /* Without an expiry only rate needs ticks (its intervals). */
            CHECK(detect_stage_needs_tick(f.det) == (!keep || strcmp(types[ti], "type = rate") == 0));
            struct rw_output o = { 0 };
            char rec[128];
            /* a and b until t0 + 5, then b alone until t0 + 30. */
            for (int sec = 0; sec <= 30; sec++)
                for (int k = 0; k < (sec <= 5 ? 2 : 1); k++) {
                    int len = snprintf(rec, sizeof(rec), "{\"k\":\"%s\",\"v\":%d,\"c\":\"x\",\"ts\":%.1f}",
                                       k ? "a" : "b", sec % 3, t0 + sec);
                    CHECK_INT(rs_process(f.w, NULL, f.det, 0, rec, (size_t)len, NULL, &o), 0);
                }
            struct detect_stats st;
            detect_stage_stats(f.det, 0, &st);
            CHECK_UINT(st.keys, 2);
            CHECK_INT(detect_stage_tick(f.det, t0 + 30, &o), 0);
            detect_stage_stats(f.det, 0, &st);
            if (keep) {
                CHECK_UINT(st.keys, 2);
                CHECK_UINT(st.expirations, 0);
            } else {
                CHECK_UINT(st.keys, 1);
                CHECK_UINT(st.expirations, 1);
            }
            struct detect_stats tot;
            detect_stage_totals(f.det, &tot);
            CHECK_UINT(tot.keys, st.keys);
            CHECK_UINT(tot.expirations, st.expirations);
            rw_output_free(&o);
            fixture_free(&f);
        }
    /* A threshold detector keeps no state worth expiring: no tick needed. */
    struct stage_fixture f;
    CHECK(fixture_new(&f, "[detector.t]\ntype = threshold\nfield = v\nabove = 1\n"));
    CHECK(!detect_stage_needs_tick(f.det));
    fixture_free(&f);
}

/* The batch loop's look-ahead (detect_stage_prefetch) is a hint: the same
 * records give the same output, byte for byte, through rs_process_batch as
 * through rs_process one by one, whatever the look-ahead finds in the raw
 * text (escaped keys, spaces, a nested member of the key's name before the
 * real one, a numeric key, no key, not JSON at all), with keys evicted
 * while their hashes wait in the look-ahead ring. */
TEST(batch_lookahead_changes_nothing)
{
    static const char conf[] = "[input]\ntimestamp_field = ts\n"
                               "[detector.amount]\ntype = zscore\nfield = amount\nkey = card\nmax_keys = 40\n"
                               "[detector.country]\ntype = rare_category\nfield = country\nkey = card\n"
                               "min_samples = 5\nmax_keys = 40\n"
                               "[detector.calls]\ntype = rate\nkey = ep\ninterval = 1s\n"
                               "[detector.user]\ntype = quantile\nfield = amount\nkey = u.id\n";
    static const char *const shapes[] = {
        "{\"ts\":%.3f,\"card\":\"c%d\",\"amount\":%d,\"country\":\"%s\",\"ep\":\"e%d\",\"u\":{\"id\":\"x%d\"}}",
        "{\"ts\":%.3f, \"card\" :  \"c%d\" ,\"amount\":%d,\"country\":\"%s\",\"ep\":\"e%d\",\"u\":{\"id\":%d}}",
        "{\"ts\":%.3f,\"x\":{\"card\":\"zz\"},\"card\":\"c%d\",\"amount\":%d,\"country\":\"%s\",\"ep\":\"e%d\",\"n\":%d}",
        "{\"ts\":%.3f,\"card\":\"c\\u0030%d\",\"amount\":%d,\"country\":\"%s\",\"ep\":\"e\\\\%d\",\"n\":%d}",
        "{\"ts\":%.3f,\"card\":%d,\"amount\":%d,\"country\":\"%s\",\"ep\":\"e%d\",\"n\":%d}",
        "{\"ts\":%.3f,\"n\":%d,\"amount\":%d,\"country\":\"%s\",\"epx\":\"e%d\",\"m\":%d}",
        "not json %.3f %d %d %s %d %d",
    };
    static const char *const countries[] = { "US", "US", "US", "DE", "FR", "NG" };
    enum { N = 3000, BATCH = 50 };
    char *text[N];
    struct rw_input_record in[N];
    uint64_t x = 0x2545F4914F6CDD1Dull;
    for (int i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        char rec[256];
        int k = (int)(x % 97);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        int len = snprintf(rec, sizeof(rec), shapes[(x >> 20) % ELEMENTSOF(shapes)], 1795003200 + i * 0.01,
                           k, 100 + (int)(x >> 40) % 50, countries[(x >> 8) % ELEMENTSOF(countries)],
                           k % 7, k % 13);
#pragma GCC diagnostic pop
        text[i] = strdup(rec);
        in[i] = (struct rw_input_record){ .data = text[i], .len = (size_t)len };
    }
    struct rw_output out[2];
    memset(out, 0, sizeof(out));
    struct detect_stats st[2][4];
    for (int run = 0; run < 2; run++) {
        struct stage_fixture f;
        CHECK(fixture_new(&f, conf));
        struct detect_stage *det = f.det;
        struct rs_worker *w = f.w;
        /* 40 keys would never turn it on by themselves. */
        CHECK(!detect_stage_lookahead(det));
        detect_stage_force_lookahead(det);
        CHECK(detect_stage_lookahead(det));
        for (int i = 0; i < N; i += BATCH) {
            if (run == 0)
                CHECK_INT(rs_process_batch(w, NULL, det, in + i, BATCH, &out[run]), 0);
            else
                for (int j = i; j < i + BATCH; j++)
                    CHECK_INT(rs_process(w, NULL, det, j - i, in[j].data, in[j].len, &in[j].prov, &out[run]), 0);
            /* Hints from another stream in between: nothing to find. */
            detect_stage_prefetch(det, "", 0);
            detect_stage_prefetch(det, "\"card\"", 6);
            detect_stage_prefetch(det, "{\"card\":\"unterminated", 21);
        }
        for (size_t i = 0; i < detect_stage_count(det); i++)
            detect_stage_stats(det, i, &st[run][i]);
        fixture_free(&f);
    }
    CHECK(out[0].lines.len > 100000);
    CHECK_UINT(out[0].n, out[1].n);
    CHECK_UINT(out[0].n_dl, out[1].n_dl);
    CHECK(out[0].lines.len == out[1].lines.len &&
          memcmp(out[0].lines.data, out[1].lines.data, out[0].lines.len) == 0);
    for (size_t i = 0; i < 4; i++) {
        CHECK_UINT(st[0][i].scored, st[1][i].scored);
        CHECK_UINT(st[0][i].anomalies, st[1][i].anomalies);
        CHECK_UINT(st[0][i].evictions, st[1][i].evictions);
    }
    CHECK(st[0][0].evictions > 0);
    CHECK(st[0][0].scored > N / 2);
    for (int i = 0; i < N; i++)
        free(text[i]);
    rw_output_free(&out[0]);
    rw_output_free(&out[1]);
}

/* The record stage looks ahead once a detector's tables outgrow the cache
 * (4 MiB of slots and index lines), not before: a few thousand keys stay
 * below, 40,000 zscore keys (about 200 bytes each) are past it. A detector
 * whose key is not a plain top-level member cannot be looked ahead at. */
TEST(lookahead_turns_on_when_tables_outgrow_the_cache)
{
    static const char conf[] = "[input]\ntimestamp_field = ts\n"
                               "[detector.amount]\ntype = zscore\nfield = amount\nkey = card\nmax_keys = 100000\n";
    static const char nested[] = "[input]\ntimestamp_field = ts\n"
                                 "[detector.amount]\ntype = zscore\nfield = amount\nkey = u.card\nmax_keys = 100000\n";
    for (int c = 0; c < 2; c++) {
        struct stage_fixture f;
        CHECK(fixture_new(&f, c ? nested : conf));
        struct rw_output out = { 0 };
        char rec[128];
        bool on_at_2000 = true;
        for (int i = 0; i < 40000; i++) {
            int len = snprintf(rec, sizeof(rec), c ? "{\"ts\":%d,\"u\":{\"card\":\"c%d\"},\"amount\":1}"
                                                   : "{\"ts\":%d,\"card\":\"c%d\",\"amount\":1}",
                               1795003200 + i, i);
            rw_output_reset(&out);
            CHECK_INT(rs_process(f.w, NULL, f.det, 0, rec, (size_t)len, NULL, &out), 0);
            if (i == 2000)
                on_at_2000 = detect_stage_lookahead(f.det);
        }
        CHECK(!on_at_2000);
        CHECK(detect_stage_lookahead(f.det) == (c == 0));
        rw_output_free(&out);
        fixture_free(&f);
    }
}

TAP_MAIN

/* The stage's loader: a damaged key starts fresh, the others resume, and
 * the load succeeds. */
TEST(stage_load_drops_damaged_keys_only)
{
    static const char conf[] = "[input]\ntimestamp_field = ts\n"
                               "[detector.r]\ntype = rate\nkey = k\ninterval = 10s\n";
    struct stage_fixture f;
    CHECK(fixture_new(&f, conf));
    struct json_doc doc;
    struct arena arena = { 0 };
    json_doc_init(&doc, &arena);
    for (int i = 0; i < 40; i++) {
        char rec[96];
        int n = snprintf(rec, sizeof(rec), "{\"k\":\"%s\",\"ts\":%d}", i % 2 ? "good" : "bad",
                         1700000000 + i * 3);
        arena_reset(&arena);
        CHECK(json_scan(&doc, rec, (size_t)n) >= 0);
        struct detect_record r = { .doc = &doc, .event_time = 1700000000 + i * 3 };
        _cleanup_buf_ struct buf out = BUF_INIT;
        struct detect_verdict v;
        CHECK(detect_stage_eval(f.det, &r, &out, &v) >= 0);
    }
    char path[] = "/tmp/rw-test-state-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_INT(detect_stage_save(f.det, path), 0);
    _cleanup_buf_ struct buf snap = BUF_INIT;
    CHECK_INT(read_whole_file(path, &snap), 0);
    unlink(path);
    /* The "bad" key's saved hist_len: past its array. The key is stored as
     * its 2-byte length, its bytes, then last-use time, state length and
     * the state record. */
    char *k = memmem(snap.data, snap.len, "\x03\x00" "bad", 5);
    CHECK(k != NULL);
    char *state = k + 5 + 8 + 4;
    /* det_state_save's record: a header, then the raw state. */
    struct det_rate_state probe = { 0 };
    _cleanup_buf_ struct buf one = BUF_INIT;
    CHECK_INT(det_state_save(DET_RATE, &probe, &one), 0);
    size_t rec_hdr = one.len - sizeof(probe);
    uint8_t big = DET_RATE_RUN_MAX + 10;
    memcpy(state + rec_hdr + offsetof(struct det_rate_state, hist_len), &big, 1);
    struct stage_fixture g;
    CHECK(fixture_new(&g, conf));
    CHECK_INT(detect_stage_load_buffer(g.det, snap.data, snap.len), 0);
    struct detect_stats st;
    detect_stage_stats(g.det, 0, &st);
    CHECK_INT(st.keys, 1);
    fixture_free(&g);
    fixture_free(&f);
    json_doc_free(&doc);
    arena_free(&arena);
}
