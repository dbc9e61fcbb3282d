/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared detector machinery: tail probabilities, score calibration, the
 * robust location/scale estimator, reason sentences, persistence, and the
 * three simple numeric detectors (threshold, zscore, quantile).
 */
#include "rarewatch/detect.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "detect_internal.h"

static const char *const type_names[] = {
    [DET_THRESHOLD] = "threshold",
    [DET_ZSCORE] = "zscore",
    [DET_QUANTILE] = "quantile",
    [DET_RATE] = "rate",
    [DET_RARE_CATEGORY] = "rare_category",
    [DET_AUTO] = "auto",
};

const char *det_type_name(enum det_type t)
{
    if ((unsigned)t < ELEMENTSOF(type_names) && type_names[t])
        return type_names[t];
    return NULL;
}

int det_type_from_name(const char *name)
{
    for (unsigned i = 0; i < ELEMENTSOF(type_names); i++)
        if (type_names[i] && streq_ptr(type_names[i], name))
            return (int)i;
    return -EINVAL;
}

/* ---- tail probabilities ---------------------------------------------- */

double det_normal_surprise(double z)
{
    z = fabs(z);
    if (isnan(z))
        return 0;
    if (z < 30)
        return det_clamp_surprise(-det_log10(erfc(z / M_SQRT2)));
    if (!isfinite(z))
        return DET_SURPRISE_MAX;
    /* Mills-ratio asymptotics: 2Q(z) ~ 2 phi(z)/z (1 - 1/z^2 + 3/z^4). */
    double z2 = z * z;
    double ln_p = M_LN2 - 0.5 * z2 - 0.5 * log(2 * M_PI) - log(z) + log1p(-1 / z2 + 3 / (z2 * z2));
    return det_clamp_surprise(-ln_p / M_LN10);
}

double det_laplace_surprise(double z)
{
    /* Laplace with the robust scale: MAD = b ln 2 and scale = 1.4826 MAD,
     * so |x - m| / b = 1.0277 |z| and P(|X - m| >= d) = exp(-d / b). */
    if (isnan(z))
        return 0;
    return det_clamp_surprise(fabs(z) * (1.4826 * M_LN2) / M_LN10);
}

/* ln Gamma(a) for the integer a that Poisson counts give (most counts are
 * small whole numbers): a table filled once by lgamma_r itself, so the
 * tails are bit-identical to calling it, at a load instead of ~100 cycles
 * per call. */
#define LGAMMA_INT_MAX 256
static double lgamma_int[LGAMMA_INT_MAX + 1];

__attribute__((constructor)) static void lgamma_int_init(void)
{
    int sign;
    for (int a = 1; a <= LGAMMA_INT_MAX; a++)
        lgamma_int[a] = lgamma_r(a, &sign);
}

static inline double ln_gamma(double a)
{
    int sign;
    if (a <= LGAMMA_INT_MAX && a == (double)(int)a && a >= 1)
        return lgamma_int[(int)a];
    return lgamma_r(a, &sign);
}

/* ln of the regularized lower (lower=true) or upper incomplete gamma
 * function, a > 0, x >= 0. Series below a+1, Lentz continued fraction
 * above (Numerical Recipes 6.2); computed in logs so tails of 1e-300 and
 * beyond stay finite. */
static double ln_gamma_reg(double a, double x, bool lower)
{
    if (x <= 0)
        return lower ? -INFINITY : 0;
    if (x < a + 1) {
        /* Terms t_n = t_(n-1) x / (a + n), four per step: their ratios
         * come from two divisions (x/(b(b+1)) gives x/b and x/(b+1)) that
         * do not wait for the running term, so a step carries one multiply
         * to the next instead of a division per term (the series was half
         * of a sparse rate key's tail, perf). */
        double ap = a, sum = 1 / a, del = sum;
        for (int i = 0; i < 125; i++) {
            double b1 = ap + 1, b2 = ap + 2, b3 = ap + 3, b4 = ap + 4;
            double x12 = x / (b1 * b2), x34 = x / (b3 * b4);
            double r1 = x12 * b2, r2 = x12 * b1, r3 = x34 * b4, r4 = x34 * b3;
            double p2 = r1 * r2, p3 = p2 * r3, p4 = p2 * (r3 * r4);
            double d4 = del * p4;
            sum += (del * r1 + del * p2) + (del * p3 + d4);
            del = d4;
            ap = b4;
            if (fabs(del) < fabs(sum) * 1e-15)
                break;
        }
        double ln_p = log(sum) - x + a * log(x) - ln_gamma(a);
        if (lower)
            return ln_p;
        return ln_p > -1e-300 ? -INFINITY : log1p(-exp(ln_p));
    }
    const double tiny = 1e-300;
    double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
    for (int i = 1; i < 500; i++) {
        double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (fabs(d) < tiny)
            d = tiny;
        c = b + an / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-15)
            break;
    }
    double ln_q = log(h) - x + a * log(x) - ln_gamma(a);
    if (!lower)
        return ln_q;
    return ln_q > -1e-300 ? -INFINITY : log1p(-exp(ln_q));
}

double det_poisson_upper_surprise_tail(double k, double lambda, double *tail)
{
    *tail = NAN;
    if (k <= 0)
        return 0;
    /* One event or more: 1 - e^-lambda exactly, without the series (a
     * rate key closes an interval every few events, most with 0 or 1). */
    if (k == 1) {
        if (!(lambda > 0))
            return DET_SURPRISE_MAX;
        double q = -expm1(-lambda), sm = det_clamp_surprise(-det_log10(q));
        if (sm < DET_SURPRISE_MAX)
            *tail = q;
        return sm;
    }
    /* P(X >= k) = P(k, lambda), the regularized lower gamma. */
    return det_clamp_surprise(-ln_gamma_reg(k, MAX(lambda, 0.0), true) / M_LN10);
}

double det_poisson_upper_surprise(double k, double lambda)
{
    double tail;
    return det_poisson_upper_surprise_tail(k, lambda, &tail);
}

double det_poisson_lower_surprise(double k, double lambda)
{
    if (k < 0)
        return DET_SURPRISE_MAX;
    /* P(X <= k) = Q(k + 1, lambda), the regularized upper gamma. */
    return det_clamp_surprise(-ln_gamma_reg(k + 1, MAX(lambda, 0.0), false) / M_LN10);
}

/* ---- calibration ------------------------------------------------------ */

double det_decay(double half_life)
{
    /* A detector instance asks for the same one or two half-lives on every
     * update; remembering them saves an exp2() per call. Thread-local, so
     * shard workers need no lock. */
    static _Thread_local double memo_h[2], memo_d[2];
    static _Thread_local unsigned memo_next;
    for (unsigned i = 0; i < 2; i++)
        if (memo_h[i] == half_life)
            return memo_d[i];
    double d = exp2(-1.0 / half_life);
    memo_h[memo_next] = half_life;
    memo_d[memo_next] = d;
    memo_next ^= 1;
    return d;
}

void det_decay_memo_set(struct det_decay_memo *m, double half_life)
{
    *m = (struct det_decay_memo){ .half_life = half_life, .decay = det_decay(half_life) };
}

void det_calib_params_default(struct det_calib_params *p)
{
    *p = (struct det_calib_params){ .half_life = 10000, .min_mass = 10, .max_slope = INFINITY };
    det_calib_params_prepare(p);
}

void det_calib_params_prepare(struct det_calib_params *p)
{
    det_decay_memo_set(&p->decay, p->half_life);
}

int det_calib_params_check(const struct det_calib_params *p)
{
    if (!(p->half_life >= 10) || !(p->min_mass >= 1) || !isfinite(p->min_mass) ||
        !(p->max_slope > 0))
        return -EINVAL;
    return 0;
}

/* Bins are uniform in u = log2(1 + s): fine where most surprises fall
 * (s < 1), and still covering the s of 100+ that a badly fitting model
 * (a constant series, a quantised one) produces every few samples. */
/* Decayed count of at-least-as-surprising values that makes a surprise
 * "recurring": the calibrated tail is then the plain empirical one. */
#define CALIB_RECURRING 3.0
/* Consecutive far-tail values longer than the history's mass over this are
 * a new normal, not one incident (det_finish_score). */
#define CALIB_STRETCH 256.0
/* A run counter past this has had its stretch learned (fits the rate
 * detector's 16-bit counter). */
#define CALIB_STRETCH_LEARNED 0x7fffu

static double calib_u(double s)
{
    /* s = 0 (no surprise at all: an empty rate interval, a value equal to
     * the mean) is bin 0 at its start, exactly what log2(1) gives. */
    return s == 0 ? 0 : log2(1 + s) / DET_CALIB_BIN_WIDTH;
}
/* Bin edges in s: 2^(j * DET_CALIB_BIN_WIDTH) - 1. */
static const double calib_edge[DET_CALIB_BINS] = {
    0, 0.41421356237309515, 1, 1.8284271247461903, 3, 4.6568542494923806, 7, 10.313708498984763,
    15, 21.627416997969519, 31, 44.254833995939045, 63, 89.509667991878089, 127, 180.01933598375618,
};

/* The least float >= min_mass: a float tail compared with it answers as
 * compared with min_mass in double, and 16 floats compare in a few vector
 * instructions (compared in double, bin by bin, the count of trusted
 * levels was ~60 instructions of every calibrated update, callgrind). */
static inline float calib_mass_f(double min_mass)
{
    float f = (float)min_mass;
    return (double)f < min_mass ? nextafterf(f, INFINITY) : f;
}

/* History at least as surprising as u (calib_u of s): the bins above u's
 * bin, and the part of its own bin above it (the open last bin counts as
 * one bin wide). finish() computes it once for both of its uses. */
static inline double calib_tail_at(const struct det_calib *c, double u)
{
    const float *tail = c->tail;
    int b = u < DET_CALIB_BINS - 1 ? (int)u : DET_CALIB_BINS - 1;
    double above = b + 1 < DET_CALIB_BINS ? tail[b + 1] : 0;
    return above + (tail[b] - above) * MAX(0.0, b + 1 - u);
}

/* u: calib_u(s) and t: calib_tail_at(u), which det_finish computes once for
 * both calls; q_model: 10^-s where the caller has it (NAN otherwise). Where
 * the answer is a tail q (most updates), *q_out gets it, so the score
 * 1 - q needs no exp2 of the surprise; NAN otherwise. */
static inline __attribute__((always_inline)) double
calib_surprise_u(const struct det_calib_params *p, const struct det_calib *c, double s, double u,
                 double t, double q_model, double *q_out, bool want)
{
    *q_out = NAN;
    const float *tail = c->tail;
    double total = tail[0];
    if (!(total >= p->min_mass))
        return s;
    /* The highest bin edge with enough history above it to trust its tail
     * (tail is non-increasing, so counting is finding). */
    int top = -1; /* tail[0] is total: counted, and not an edge above the first */
    float mass = calib_mass_f(p->min_mass);
    for (int j = 0; j < DET_CALIB_BINS; j++)
        top += tail[j] >= mass;
    double s_top = calib_edge[top];
    if (u < top) {
        *q_out = t / total;
        /* !want: the caller only needs the score, 1 - q (NAN: not computed). */
        return want ? det_clamp_surprise(-det_log10(*q_out)) : NAN;
    }
    /* Past the trusted levels: surprise keeps growing at the rate the data
     * showed up to there (the model's ordering, the data's scale): a model
     * that is too bold (normal tails on heavy-tailed data) is tempered, one
     * that is too timid (heavy tails on normal data) is sharpened. But it
     * is never rarer than a few such values in history say: a spike that
     * comes daily is a 1-in-288, however far out the model puts it. (One
     * or two earlier ones do not cap it: an outage must not mute the next
     * for the whole calibration window.) */
    if (p->tail == DET_TAIL_MODEL && !want) {
        /* The same answer in probabilities, for a caller that wants only
         * the score 1 - q: the larger of the model's surprise and the top
         * level's is the smaller of their tails, and a recurring one's
         * floor is a larger tail. No logarithm of the empirical tails and
         * no division for a slope this mode does not use (callgrind: a
         * log2 and a division on most closes of a sparse rate key). */
        double q = MIN(isnan(q_model) ? det_surprise_to_tail(s) : q_model, tail[top] / total);
        if (t >= CALIB_RECURRING)
            q = MAX(q, t / total);
        *q_out = q;
        return NAN;
    }
    double s_emp = -det_log10(tail[top] / total);
    double slope = MIN(s_top > 0 ? s_emp / s_top : 1.0, p->max_slope);
    double s_cal = s_emp + slope * (s - s_top);
    if (p->tail == DET_TAIL_NO_SHARPER)
        s_cal = MIN(s_cal, MAX(s, s_emp));
    else if (p->tail == DET_TAIL_MODEL)
        s_cal = MAX(s, s_emp);
    if (t >= CALIB_RECURRING)
        s_cal = MIN(s_cal, -det_log10(t / total));
    return det_clamp_surprise(s_cal);
}

/* The far tail: fewer than min_mass values in the history at least as
 * surprising as s (t: calib_tail_at). (Not "at or past the highest trusted
 * edge": while no edge above the first has min_mass, that is every value,
 * and a history that skips all but the first of consecutive far values
 * would then stop learning for good.) */
static bool calib_far_t(const struct det_calib_params *p, const struct det_calib *c, double t)
{
    return c->tail[0] >= p->min_mass && t < p->min_mass;
}

static inline __attribute__((always_inline)) void
calib_learn_u(const struct det_calib_params *p, struct det_calib *c, double u)
{
    float d = (float)det_decay_of(&p->decay, p->half_life);
    int b = u >= DET_CALIB_BINS - 1 ? DET_CALIB_BINS - 1 : (int)u;
    /* tail[j] = tail[j] * d + (j <= b), four lanes at a time and unrolled:
     * -O2 vectorised the plain loop but kept it a loop, ~30 of its ~60
     * instructions (callgrind), on every close of every key; told to
     * unroll it, it stopped vectorising. */
    typedef float v4f __attribute__((vector_size(16)));
    typedef int32_t v4i __attribute__((vector_size(16)));
    static_assert(DET_CALIB_BINS % 4 == 0, "whole vectors");
    const v4f dv = { d, d, d, d }, one = { 1, 1, 1, 1 };
    const v4i bv = { b, b, b, b };
    v4i j = { 0, 1, 2, 3 };
#pragma GCC unroll 4
    for (int i = 0; i < DET_CALIB_BINS; i += 4, j += 4) {
        v4f t;
        memcpy(&t, &c->tail[i], sizeof(t));
        /* 1.0f where j <= b, else 0: the compare gives all-ones lanes */
        t = t * dv + (v4f)((v4i)one & (j <= bv));
        memcpy(&c->tail[i], &t, sizeof(t));
    }
}

double det_calib_surprise(const struct det_calib_params *p, const struct det_calib *c, double s)
{
    double q, u = calib_u(s);
    return calib_surprise_u(p, c, s, u, calib_tail_at(c, u), NAN, &q, true);
}

void det_calib_learn(const struct det_calib_params *p, struct det_calib *c, double s)
{
    if (!isnan(s))
        calib_learn_u(p, c, calib_u(MAX(s, 0.0)));
}

/* Inlined into its two callers: eight arguments and the calibrator's
 * helpers, and a call less, on every update of every detector. */
static inline __attribute__((always_inline)) void
finish(struct det_result *r, const struct det_calib_params *cp, struct det_calib *c, double s_model,
       double q_model, bool learning, uint32_t *run, bool want_surprise)
{
    if (learning) {
        r->surprise = 0;
        r->score = 0;
        r->why = DET_WHY_LEARNING;
        return;
    }
    if (!(s_model > 0)) {
        /* No surprise at all (an empty rate interval, a value at the mean,
         * NAN): nothing in the history is less surprising, so the tail is
         * the whole history, the score 0, and the value not far; what the
         * general path below gives, without its bin walks (closing empty
         * intervals is most of what a sparse rate key does). */
        r->surprise = 0;
        r->score = 0;
        if (run)
            *run = 0;
        calib_learn_u(cp, c, 0);
        return;
    }
    double u = calib_u(s_model), q, t = calib_tail_at(c, u);
    double s = calib_surprise_u(cp, c, s_model, u, t, q_model, &q, want_surprise);
    if (isnan(s) && !(q > 1e-300))
        s = det_clamp_surprise(-det_log10(q)); /* at the clamp: the score from it */
    r->surprise = s;
    /* 1 - 10^-surprise is 1 - q when the surprise is -log10 q (unless the
     * clamp at DET_SURPRISE_MAX cut it, where both are 1). Without the
     * surprise (NAN), q > 1e-300 is that condition. */
    r->score = q >= 0 && (isnan(s) || s < DET_SURPRISE_MAX) ? 1 - q : det_surprise_to_score(s);
    if (run) {
        /* An incident is one rare event, not as many as it has samples: a
         * latency shift of 40 samples learned as 40 far-tail surprises
         * would make the next incident on this key "seen before" and mute
         * it. Only the first of consecutive far-tail samples is learned. */
        if (calib_far_t(cp, c, t)) {
            /* But a stretch that is long against the history is no longer
             * an incident: it is what the key does now (a level shift the
             * model has not followed yet), and a history without it would
             * call every sample of it unprecedented. Its skipped samples
             * are learned then, and the rest as they come. */
            uint32_t k = ++*run;
            if (k > 1 && k <= CALIB_STRETCH_LEARNED) {
                if (k < c->tail[0] / CALIB_STRETCH)
                    return;
                for (uint32_t i = 1; i < k; i++)
                    calib_learn_u(cp, c, u);
                *run = CALIB_STRETCH_LEARNED + 1;
            }
        } else {
            *run = 0;
        }
    }
    calib_learn_u(cp, c, u);
}

void det_finish(struct det_result *r, const struct det_calib_params *cp, struct det_calib *c,
                double s_model, bool learning)
{
    finish(r, cp, c, s_model, NAN, learning, NULL, true);
}

void det_finish_score(struct det_result *r, const struct det_calib_params *cp, struct det_calib *c,
                      double s_model, double q_model, bool learning, uint32_t *run)
{
    finish(r, cp, c, s_model, q_model, learning, run, false);
}

double det_result_surprise(const struct det_result *r)
{
    return isnan(r->surprise) ? det_clamp_surprise(-det_log10(1 - r->score)) : r->surprise;
}

/* ---- robust location / scale ------------------------------------------ */

static double median_of(double *v, unsigned n)
{
    /* At most DET_ROBUST_BOOT values: insertion sort beats qsort's calls. */
    for (unsigned i = 1; i < n; i++) {
        double x = v[i];
        unsigned j = i;
        for (; j > 0 && v[j - 1] > x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double det_robust_scale(const struct det_robust *r)
{
    /* 1.4826 MAD and 1.2533 AAD both estimate sigma for normal data; the
     * AAD term only matters when more than half the values tie (MAD 0). */
    return MAX(1.4826 * r->mad, 0.5 * 1.2533 * r->aad);
}

double det_robust_z(const struct det_robust *r, double x)
{
    double d = x - r->median;
    if (d == 0)
        return 0;
    double sc = det_robust_scale(r);
    double floor = 1e-12 * MAX(fabs(r->median), 1e-300);
    if (sc <= floor)
        return d > 0 ? INFINITY : -INFINITY;
    return d / sc;
}

void det_robust_learn(struct det_robust *r, double x, double half_life)
{
    if (!isfinite(x))
        return;
    if (r->n < DET_ROBUST_BOOT) {
        r->boot[r->n++] = x;
        double tmp[DET_ROBUST_BOOT];
        memcpy(tmp, r->boot, r->n * sizeof(double));
        r->median = median_of(tmp, r->n);
        double sum = 0;
        for (unsigned i = 0; i < r->n; i++) {
            tmp[i] = fabs(r->boot[i] - r->median);
            sum += tmp[i];
        }
        r->mad = median_of(tmp, r->n);
        r->aad = sum / r->n;
        return;
    }
    r->n++;
    /* Step size: 1/n while young (a running average), then a fixed
     * forgetting rate so the estimates follow drift. */
    double eta = MAX(1.0 / r->n, 1 - det_decay(half_life));
    double sc = det_robust_scale(r);
    double d = fabs(x - r->median);
    /* Sign steps of 1.25 sigma * eta: the Robbins-Monro gain 1/(2 f(median))
     * for normal data, so the median moves as fast as a mean would but one
     * wild value moves it no more than an ordinary one. */
    if (x > r->median)
        r->median += eta * 1.2533 * sc;
    else if (x < r->median)
        r->median -= eta * 1.2533 * sc;
    /* The MAD in log space: scale-free steps, never negative. */
    if (r->mad > 0) {
        if (d > r->mad)
            r->mad *= exp(0.6 * eta);
        else if (d < r->mad)
            r->mad *= exp(-0.6 * eta);
    } else if (d > 0) {
        r->mad = eta * d;
    }
    /* Winsorised, so the floor stays robust when wild values are common. */
    r->aad += eta * (MIN(d, 4 * sc) - r->aad);
}

/* ---- reasons ---------------------------------------------------------- */

static int put_num(struct buf *b, double v)
{
    double a = fabs(v);
    if (a != 0 && (a < 0.01 || a >= 1e9))
        return buf_printf(b, "%.4g", v);
    return buf_printf(b, "%.2f", v);
}

static int put_duration(struct buf *b, double sec)
{
    if (sec >= 3600 && fmod(sec, 3600) == 0)
        return buf_printf(b, "%.0fh", sec / 3600);
    if (sec >= 60 && fmod(sec, 60) == 0)
        return buf_printf(b, "%.0fm", sec / 60);
    return buf_printf(b, "%gs", sec);
}

static int put_key(struct buf *b, const char *key)
{
    if (!key || !*key)
        return 0;
    int r = buf_puts(b, " for key ");
    return r < 0 ? r : buf_put_json_string(b, key, strlen(key));
}

int det_reason(struct buf *out, enum det_type type, const struct det_result *r,
               const char *key, const char *field, const char *category)
{
    int k = 0;
    const char *f = field && *field ? field : "value";
    switch (r->why) {
    case DET_WHY_NONE:
    case DET_WHY_LEARNING:
        k = buf_printf(out, "%s: %s", f, r->why == DET_WHY_LEARNING ? "still learning" : "as expected");
        break;
    case DET_WHY_ABOVE:
    case DET_WHY_BELOW:
    case DET_WHY_DAILY: {
        bool up = r->value >= r->expected;
        const char *what = r->why == DET_WHY_DAILY ? "usual value for this time of day"
                           : type == DET_QUANTILE  ? "median"
                           : type == DET_THRESHOLD ? "limit"
                                                   : "mean";
        k = buf_printf(out, "%s ", f);
        if (k >= 0)
            k = put_num(out, r->value);
        if (k < 0)
            break;
        if (type == DET_THRESHOLD)
            k = buf_printf(out, " is %s the %s ", up ? "above" : "below", what);
        else if (r->scale > 0 && isfinite(r->scale))
            k = buf_printf(out, " is %.1fσ %s the %s ", fabs(r->value - r->expected) / r->scale,
                           up ? "above" : "below", what);
        else
            k = buf_printf(out, " is %s the constant %s ", up ? "above" : "below", what);
        if (k >= 0)
            k = put_num(out, r->expected);
        break;
    }
    case DET_WHY_RATE_HIGH:
    case DET_WHY_RATE_LOW:
        k = buf_printf(out, "%s%s%.0f event%s in ", field ? field : "", field && *field ? ": " : "", r->value,
                       r->value == 1 ? "" : "s");
        if (k >= 0)
            k = put_duration(out, r->interval);
        if (k >= 0)
            k = buf_printf(out, " vs %.1f expected", r->expected);
        break;
    case DET_WHY_VOLATILITY:
        k = buf_printf(out, "%s: the steps between values average ", f);
        if (k >= 0)
            k = put_num(out, r->value);
        if (k >= 0 && r->scale > 0 && isfinite(r->scale))
            k = buf_printf(out, ", %.1fσ above their usual ", (r->value - r->expected) / r->scale);
        else if (k >= 0)
            k = buf_puts(out, ", above their usual ");
        if (k >= 0)
            k = put_num(out, r->expected);
        break;
    case DET_WHY_NEW_CATEGORY:
    case DET_WHY_RARE_CATEGORY:
        k = buf_printf(out, "%s ", f);
        if (k >= 0)
            k = buf_put_json_string(out, category ? category : "", category ? strlen(category) : 0);
        if (k >= 0) {
            if (r->why == DET_WHY_NEW_CATEGORY)
                k = buf_puts(out, " first seen");
            else
                k = buf_printf(out, " is rare (%.2g%% of recent values)", 100 * r->value);
        }
        break;
    }
    if (k >= 0)
        k = put_key(out, key);
    return k < 0 ? k : 0;
}

/* ---- threshold -------------------------------------------------------- */

void det_threshold_params_default(struct det_threshold_params *p)
{
    *p = (struct det_threshold_params){ .above = INFINITY, .below = -INFINITY };
}

int det_threshold_params_check(const struct det_threshold_params *p)
{
    if (isnan(p->above) || isnan(p->below) || p->below > p->above)
        return -EINVAL;
    return 0;
}

void det_threshold_eval(const struct det_threshold_params *p, double x, struct det_result *r)
{
    *r = (struct det_result){ .value = x, .why = DET_WHY_NONE };
    if (x > p->above) {
        *r = (struct det_result){ .value = x, .expected = p->above, .raw = x - p->above,
                                  .why = DET_WHY_ABOVE };
    } else if (x < p->below) {
        *r = (struct det_result){ .value = x, .expected = p->below, .raw = p->below - x,
                                  .why = DET_WHY_BELOW };
    } else {
        return;
    }
    r->score = 1;
    r->surprise = DET_SURPRISE_MAX;
    r->alert = true;
}

/* ---- zscore ----------------------------------------------------------- */

void det_zscore_params_default(struct det_zscore_params *p)
{
    *p = (struct det_zscore_params){ .half_life = 200, .threshold = 5, .min_samples = 30 };
    det_calib_params_default(&p->calib);
}

int det_zscore_params_check(const struct det_zscore_params *p)
{
    if (!(p->half_life >= 1) || p->half_life_usec < 0 || !(p->threshold > 0) ||
        !(p->min_score >= 0 && p->min_score <= 1))
        return -EINVAL;
    return det_calib_params_check(&p->calib);
}

double det_ew_z(const struct det_ew *e, double x, double *sd_out)
{
    double sd = e->weight > 0 ? sqrt(e->m2 / e->weight) : 0;
    double d = x - e->mean;
    if (sd_out)
        *sd_out = sd;
    if (d == 0)
        return 0;
    /* A constant history: any change is infinitely surprising (capped). */
    return sd > 1e-12 * MAX(fabs(e->mean), 1e-300) ? d / sd : copysign(INFINITY, d);
}

void det_ew_learn(struct det_ew *e, double x, double decay)
{
    double d = x - e->mean;
    e->weight = e->weight * decay + 1;
    e->mean += d / e->weight;
    e->m2 = e->m2 * decay + d * (x - e->mean);
}

void det_zscore_update(const struct det_zscore_params *p, struct det_zscore_state *s,
                       double x, int64_t ts_usec, struct det_result *r)
{
    *r = (struct det_result){ .value = x };
    if (!isfinite(x))
        return;
    double decay;
    if (p->half_life_usec > 0) {
        /* Time-based: history loses half its weight per half_life_usec of
         * event time; out-of-order events decay nothing. */
        int64_t dt = s->n ? ts_usec - s->last_ts : 0;
        decay = dt > 0 ? exp2(-(double)dt / (double)p->half_life_usec) : 1;
        if (!s->n || ts_usec > s->last_ts)
            s->last_ts = ts_usec;
    } else {
        decay = det_decay(p->half_life);
    }
    double z = det_ew_z(&s->ew, x, &r->scale);
    r->raw = z;
    r->expected = s->ew.mean;
    bool learning = s->n < MAX(p->min_samples, 2u);
    /* While learning det_finish_score reads no surprise: no erfc for it. */
    det_finish_score(r, &p->calib, &s->calib, learning ? 0 : det_normal_surprise(z), NAN,
                     learning, NULL);
    if (!learning) {
        r->why = z >= 0 ? DET_WHY_ABOVE : DET_WHY_BELOW;
        r->alert = fabs(z) >= p->threshold && r->score >= p->min_score;
    }
    det_ew_learn(&s->ew, x, decay);
    s->n++;
}

/* ---- quantile --------------------------------------------------------- */

void det_quantile_params_default(struct det_quantile_params *p)
{
    *p = (struct det_quantile_params){ .half_life = 500, .threshold = 5, .min_samples = 30,
                                       .min_score = 0.9999 };
    det_calib_params_default(&p->calib);
    /* The detector for heavy tails: far out, its Laplace tail caps how rare
     * a value is (lognormal latency rises steeply in the body, and that
     * slope extrapolated called a routine 6.7 sigma latency 1-in-20,000). */
    p->calib.tail = DET_TAIL_NO_SHARPER;
}

int det_quantile_params_check(const struct det_quantile_params *p)
{
    if (!(p->half_life >= 8) || !(p->threshold > 0) || p->min_samples < DET_ROBUST_BOOT ||
        !(p->min_score >= 0 && p->min_score <= 1))
        return -EINVAL;
    return det_calib_params_check(&p->calib);
}

void det_quantile_update(const struct det_quantile_params *p, struct det_quantile_state *s,
                         double x, struct det_result *r)
{
    *r = (struct det_result){ .value = x };
    if (!isfinite(x))
        return;
    double z = det_robust_z(&s->r, x);
    r->raw = z;
    r->expected = s->r.median;
    r->scale = det_robust_scale(&s->r);
    bool learning = s->r.n < p->min_samples;
    det_finish_score(r, &p->calib, &s->calib, learning ? 0 : det_laplace_surprise(z), NAN,
                     learning, &s->r.far_run);
    if (!learning) {
        r->why = z >= 0 ? DET_WHY_ABOVE : DET_WHY_BELOW;
        r->alert = fabs(z) >= p->threshold && r->score >= p->min_score;
    }
    det_robust_learn(&s->r, x, p->half_life);
}

/* ---- persistence ------------------------------------------------------ */

#define DET_STATE_MAGIC UINT32_C(0x53445752) /* "RWDS" */
/* 2: the rate state's hour-of-day factors moved last (det_rate_state_hot),
 * its started and hist_len narrowed to bytes; rare_category's value hashes
 * narrowed to 32-bit tags. Version 1 records of those two are converted on
 * load; the other types' are the same bytes. */
#define DET_STATE_VERSION 2

struct det_state_header {
    uint32_t magic;
    uint8_t version;
    uint8_t type;
    uint16_t reserved;
    uint32_t size;
};

size_t det_state_size(enum det_type t)
{
    switch (t) {
    case DET_THRESHOLD: return 0;
    case DET_ZSCORE: return sizeof(struct det_zscore_state);
    case DET_QUANTILE: return sizeof(struct det_quantile_state);
    case DET_RATE: return sizeof(struct det_rate_state);
    case DET_RARE_CATEGORY: return sizeof(struct det_category_state);
    case DET_AUTO: return sizeof(struct det_auto_state);
    }
    return 0;
}

int det_state_save(enum det_type t, const void *state, struct buf *out)
{
    if (!det_type_name(t))
        return -EINVAL;
    size_t n = det_state_size(t);
    struct det_state_header h = { .magic = DET_STATE_MAGIC, .version = DET_STATE_VERSION,
                                  .type = (uint8_t)t, .size = (uint32_t)n };
    int r = buf_append(out, &h, sizeof(h));
    if (r < 0)
        return r;
    return n ? buf_append(out, state, n) : 0;
}

static bool finite_nonneg(double x)
{
    return isfinite(x) && x >= 0;
}

/* The invariants the update code relies on, which a snapshot from disk
 * need not keep (the fuzz target fuzz_detect_state loads arbitrary
 * bytes): indices within their arrays, times from event times (>= 0, so
 * their differences cannot overflow), counts that are counts. Values that
 * merely give odd scores (a NaN mean, a negative variance) are left: the
 * scores come out 0 or NaN-guarded, and the key relearns. */
static bool state_valid(enum det_type t, const void *state)
{
    switch (t) {
    case DET_ZSCORE: {
        const struct det_zscore_state *z = state;
        return z->last_ts >= 0;
    }
    case DET_RATE: {
        const struct det_rate_state *r = state;
        bool ok = r->hist_len <= DET_RATE_RUN_MAX - 1 && r->cur >= 0 &&
                  finite_nonneg(r->count) && finite_nonneg(r->mean) && finite_nonneg(r->disp);
        for (unsigned i = 0; i < DET_RATE_RUN_MAX - 1; i++)
            ok = ok && finite_nonneg(r->hist_count[i]) && finite_nonneg(r->hist_expected[i]);
        for (unsigned i = 0; i < ELEMENTSOF(r->hour); i++)
            ok = ok && finite_nonneg(r->hour[i]);
        return ok;
    }
    case DET_AUTO: {
        const struct det_auto_state *a = state;
        return a->first_ts >= 0 && a->last_ts >= 0;
    }
    default:
        return true;
    }
}

/* The rate state as version 1 laid it out. */
struct det_rate_state_v1 {
    int64_t cur;
    double count, mean, disp;
    float hour[24];
    uint32_t n, started;
    struct det_calib calib;
    float hist_count[DET_RATE_RUN_MAX - 1], hist_expected[DET_RATE_RUN_MAX - 1];
    uint16_t hist_len, far_run;
};

static void rate_state_from_v1(struct det_rate_state *s, const void *data)
{
    struct det_rate_state_v1 o;
    memcpy(&o, data, sizeof(o));
    *s = (struct det_rate_state){ .cur = o.cur, .count = o.count, .mean = o.mean, .disp = o.disp,
                                  .calib = o.calib, .n = o.n, .started = o.started != 0,
                                  /* a damaged one stays past its array: refused below */
                                  .hist_len = (uint8_t)MIN(o.hist_len, (uint16_t)UINT8_MAX),
                                  .far_run = o.far_run };
    memcpy(s->hist_count, o.hist_count, sizeof(s->hist_count));
    memcpy(s->hist_expected, o.hist_expected, sizeof(s->hist_expected));
    memcpy(s->hour, o.hour, sizeof(s->hour));
}

/* The rare_category state as version 1 laid it out. */
struct det_category_state_v1 {
    uint64_t hash[DET_CATEGORY_SLOTS];
    float count[DET_CATEGORY_SLOTS];
    uint64_t seen[2];
    double unit, total;
    uint32_t n, pad_;
    struct det_calib calib;
};

static void category_state_from_v1(struct det_category_state *s, const void *data)
{
    struct det_category_state_v1 o;
    memcpy(&o, data, sizeof(o));
    *s = (struct det_category_state){ .unit = o.unit, .total = o.total, .n = o.n, .calib = o.calib };
    for (int i = 0; i < DET_CATEGORY_SLOTS; i++)
        s->tag[i] = (uint32_t)o.hash[i]; /* the low half, whose bit 0 is set */
    memcpy(s->count, o.count, sizeof(s->count));
    memcpy(s->seen, o.seen, sizeof(s->seen));
}

int det_state_load(enum det_type t, void *state, const void *data, size_t len)
{
    struct det_state_header h;
    size_t n = det_state_size(t);
    if (!det_type_name(t) || len < sizeof(h))
        return -EINVAL;
    memcpy(&h, data, sizeof(h));
    if (h.magic != DET_STATE_MAGIC || h.type != (uint8_t)t)
        return -EINVAL;
    if (h.version > DET_STATE_VERSION)
        return -EPROTO;
    if ((t == DET_RATE || t == DET_RARE_CATEGORY) && h.version < 2) {
        n = t == DET_RATE ? sizeof(struct det_rate_state_v1) : sizeof(struct det_category_state_v1);
        if (h.size != n || len - sizeof(h) < n)
            return -EINVAL;
        if (t == DET_RATE)
            rate_state_from_v1(state, (const char *)data + sizeof(h));
        else
            category_state_from_v1(state, (const char *)data + sizeof(h));
    } else if (h.size != n || len - sizeof(h) < n) {
        return -EINVAL;
    } else if (n) {
        memcpy(state, (const char *)data + sizeof(h), n);
    }
    if (!state_valid(t, state))
        return -ERANGE;
    return (int)(sizeof(h) + n);
}
