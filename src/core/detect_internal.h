/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Helpers shared by the detector files; not part of the public API. */
#include <math.h>

#include "rarewatch/detect.h"

/* Surprises are capped so scores, sums and saved states stay finite. */
#define DET_SURPRISE_MAX 300.0

static inline double det_clamp_surprise(double s)
{
    if (!(s > 0))
        return 0;
    return s < DET_SURPRISE_MAX ? s : DET_SURPRISE_MAX;
}

/* log10 through log2: glibc's log10 costs two logarithms, log2 one, and
 * surprises need no more than a few ulps. */
static inline double det_log10(double x)
{
    /* log2(1) is exactly 0: an empirical tail of 1 (a surprise below all
     * history, every empty rate interval) needs no call. */
    return x == 1 ? 0 : log2(x) * 0.30102999566398119521;
}

/* 10^-s, the tail probability a surprise stands for. */
static inline double det_surprise_to_tail(double s) { return exp2(-s * 3.32192809488736234787); }

/* 1 - 10^-s. exp2 rather than expm1: cheaper, and the digits that matter
 * are those of p = 10^-s when the score is near 1. */
static inline double det_surprise_to_score(double s) { return 1 - det_surprise_to_tail(s); }

/* 2^(-1/half_life): the per-step weight kept by an exponential decay. */
double det_decay(double half_life);
void det_decay_memo_set(struct det_decay_memo *m, double half_life);
/* det_decay(half_life), from m where m was filled for it (a compare instead
 * of a call; callgrind: ~25 Ir per decay on rate's interval closes). */
static inline double det_decay_of(const struct det_decay_memo *m, double half_life)
{
    return m->half_life == half_life ? m->decay : det_decay(half_life);
}
int det_calib_params_check(const struct det_calib_params *p);
/* Calibrate s_model into r->surprise / r->score and learn it; while
 * learning, the score is 0 and the calibrator learns nothing (the model's
 * first surprises are inflated by its own inexperience). For `auto`, which
 * reads the surprise. */
void det_finish(struct det_result *r, const struct det_calib_params *cp, struct det_calib *c,
                double s_model, bool learning);
/* The same for the detectors whose callers read only the score (zscore,
 * quantile, rate, rare_category): r->surprise is left NAN where the score
 * came from a tail q (most updates), which saves a logarithm per update;
 * det_result_surprise() gives it. q_model is 10^-s_model where the caller
 * has it without a power (NAN otherwise). With run (the detector state's
 * count of consecutive far-tail surprises; may be NULL), only the first of
 * those is learned. */
void det_finish_score(struct det_result *r, const struct det_calib_params *cp, struct det_calib *c,
                      double s_model, double q_model, bool learning, uint32_t *run);
/* det_poisson_upper_surprise, and in *tail the probability P(X >= k) it
 * is -log10 of where that came without a power (NAN otherwise): the
 * calibrator then scores with it directly (det_finish_score's q_model). */
double det_poisson_upper_surprise_tail(double k, double lambda, double *tail);

/* z of x against e (sd_out: the sd used, may be NULL); learn x with the
 * given per-sample decay. */
double det_ew_z(const struct det_ew *e, double x, double *sd_out);
void det_ew_learn(struct det_ew *e, double x, double decay);

double det_robust_scale(const struct det_robust *r);
double det_robust_z(const struct det_robust *r, double x);
void det_robust_learn(struct det_robust *r, double x, double half_life);
