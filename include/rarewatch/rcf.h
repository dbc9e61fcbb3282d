/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Random Cut Forest (Guha et al., ICML 2016), streaming, as Kinesis Data
 * Analytics' RANDOM_CUT_FOREST and randomcutforest-java: a forest of random
 * cut trees, each over its own time-decayed reservoir sample of (shingled)
 * points. Pure code: no I/O, no locks; one forest is used by one thread at a
 * time. After warm-up an update allocates nothing.
 *
 * Scores follow the AWS anomaly score: per tree, the expected 1/(depth+1)
 * at which a random cut would isolate the point, scaled by log2(mass+1) so
 * ~1 is typical and > ~3 is anomalous; averaged over non-empty trees.
 */
#include <stddef.h>
#include <stdint.h>

#include "rarewatch/buf.h"

struct rcf_params {
    unsigned trees;        /* 0 = 50 */
    unsigned sample_size;  /* 0 = 256; >= 2 */
    unsigned dims;         /* fields per input point, >= 1 */
    unsigned shingle_size; /* consecutive points concatenated, 0 = 1 */
    /* lambda of the sampler weights: a point of age a is kept with weight
     * ~exp(-lambda a). 0 = plain reservoir over the whole stream; AWS's
     * default is 1/(10 * sample_size); KDA's "timeDecay window" W is 1/W. */
    double time_decay;
    /* Samplers accept every point until this fraction is full, then less
     * often, so trees do not all hold the same first points. 0 = 0.125. */
    double initial_accept_fraction;
    uint64_t seed;
};

struct rcf;

/* NULL on bad parameters or -ENOMEM. */
struct rcf *rcf_new(const struct rcf_params *p);
struct rcf *rcf_free(struct rcf *f);

/* Score the point against the forest, then insert it. Returns the anomaly
 * score (0 while the forest is empty or the shingle is not yet full; NAN,
 * and nothing changes, for a non-finite input). attribution, when not NULL,
 * receives `dims` values: each field's share of the score, summed over
 * shingle positions and both directions; they add up to the score. */
double rcf_update(struct rcf *f, const double *point, double *attribution);
/* Score without inserting (the shingle is not advanced either: the point is
 * scored as if it were the next one). */
double rcf_score(const struct rcf *f, const double *point, double *attribution);
/* Insert without scoring (after rcf_score() of the same point). */
void rcf_insert(struct rcf *f, const double *point);
/* As rcf_update, with DiVector-like directional attribution: high[j] is the
 * part due to field j being above what the trees hold, low[j] below. */
double rcf_update_di(struct rcf *f, const double *point, double *high, double *low);

/* How many trees rcf_score/rcf_update descend in lockstep: 1 = one tree at
 * a time (the reference loop), 2..8 interleaved, 0 = the default (4).
 * Scores are bit-identical for every value; for tests and the benchmark. */
void rcf_set_lanes(struct rcf *f, unsigned lanes);

/* Points seen so far (not capped by the sample size). */
uint64_t rcf_points_seen(const struct rcf *f);
/* Bytes of memory the forest holds. */
size_t rcf_memory(const struct rcf *f);
/* Check every invariant (sample counts == leaf masses, boxes == union of
 * their points, cuts route every point to its leaf, point refcounts);
 * 0 or -EUCLEAN. For tests and after rcf_load. */
int rcf_check(const struct rcf *f);

/* Serialise the whole state (samples, trees, shingle, RNG) so a restored
 * forest gives bit-identical scores to one that never stopped. */
int rcf_save(const struct rcf *f, struct buf *out);
/* Returns a new forest, or NULL with *err set to a negative errno
 * (-EBADMSG for malformed data, -ENOMEM). */
struct rcf *rcf_load(const void *data, size_t len, int *err);
