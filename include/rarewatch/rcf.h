/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Random Cut Forest (Guha et al., ICML 2016), streaming, as Kinesis Data
 * Analytics' RANDOM_CUT_FOREST: a forest of random cut trees over a
 * reservoir sample of (shingled) points. Pure code: no I/O, no locks; one
 * forest is used by one thread at a time.
 */
#include <stddef.h>
#include <stdint.h>

#include "rarewatch/buf.h"

struct rcf_params {
    unsigned trees;        /* default 50 */
    unsigned sample_size;  /* default 256 */
    unsigned dims;         /* fields per input point, >= 1 */
    unsigned shingle_size; /* consecutive points concatenated, default 1 */
    double time_decay;     /* 0 = plain reservoir; else recency bias (KDA: 1/sample_size*... ) */
    uint64_t seed;
};

struct rcf;

struct rcf *rcf_new(const struct rcf_params *p);
struct rcf *rcf_free(struct rcf *f);

/* Score the point against the forest, then insert it. Returns the raw
 * anomaly score (collusive displacement averaged over trees; 0 while the
 * forest is still empty). attribution, when not NULL, receives `dims`
 * values: each field's share of the score (summed over shingle positions). */
double rcf_update(struct rcf *f, const double *point, double *attribution);
/* Score without inserting. */
double rcf_score(const struct rcf *f, const double *point, double *attribution);

/* Points seen so far (not capped by the sample size). */
uint64_t rcf_points_seen(const struct rcf *f);
/* Bytes of memory the forest holds. */
size_t rcf_memory(const struct rcf *f);

/* Serialise the whole state (samples, trees, shingle, RNG) so a restored
 * forest gives bit-identical scores to one that never stopped. */
int rcf_save(const struct rcf *f, struct buf *out);
/* Returns a new forest, or NULL with *err set to a negative errno. */
struct rcf *rcf_load(const void *data, size_t len, int *err);
