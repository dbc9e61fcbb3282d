/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * CloudWatch metric aggregation and PutMetricData encoding, pure (no I/O,
 * no locks; the CloudWatch sink serialises access).
 *
 * Values are aggregated in memory per flush interval: a counter keeps a
 * sum and is sent as one Value; an observed metric keeps SampleCount, Sum,
 * Minimum and Maximum and is sent as StatisticValues (or a plain Value when
 * it saw one sample). One datum per distinct (name, dimensions), whatever
 * the record rate: at 1,000 anomalies/s from 3 detectors, a 60 s interval
 * sends 6 alert datums, not 60,000.
 *
 * cw_encode() writes Query-protocol bodies of at most CW_MAX_DATUMS datums
 * and CW_MAX_REQUEST_BYTES bytes (before gzip); call it until every datum
 * is encoded.
 *
 * cw_keycap bounds a per-key dimension's cardinality (every distinct
 * dimension value is a separate, billed custom metric): the first `max`
 * keys seen keep their value, any other maps to CW_OTHER_KEY.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rarewatch/buf.h"

#define CW_MAX_DATUMS 1000
#define CW_MAX_REQUEST_BYTES (1000u * 1000)
#define CW_MAX_DIMS 3
#define CW_OTHER_KEY "__other__"

struct cw_dim {
    const char *name;
    const char *value;
};

enum cw_kind { CW_COUNTER, CW_STAT };

struct cw_metric {
    char name[64];
    char unit[24];
    enum cw_kind kind;
    unsigned n_dims;
    char dim_name[CW_MAX_DIMS][32];
    char dim_value[CW_MAX_DIMS][256];
    double count, sum, min, max;
    uint64_t hash;
};

struct cw_agg {
    struct cw_metric *m;
    size_t n, cap;
    uint32_t *ht; /* index + 1; 0 = empty */
    size_t ht_cap;
};

void cw_agg_init(struct cw_agg *a);
void cw_agg_reset(struct cw_agg *a); /* keeps the allocations */
void cw_agg_free(struct cw_agg *a);
/* Add delta to a counter (unit Count). */
int cw_agg_count(struct cw_agg *a, const char *name, const struct cw_dim *dims, unsigned n_dims,
                 double delta);
/* Observe one sample. */
int cw_agg_observe(struct cw_agg *a, const char *name, const char *unit, const struct cw_dim *dims,
                   unsigned n_dims, double value);
/* Find a metric (tests, the status line); NULL when absent. */
const struct cw_metric *cw_agg_find(const struct cw_agg *a, const char *name,
                                    const struct cw_dim *dims, unsigned n_dims);

struct cw_encode_options {
    const char *namespace_;
    uint64_t timestamp_usec;  /* the interval's time */
    bool high_resolution;     /* StorageResolution=1 */
    size_t max_datums;        /* 0: CW_MAX_DATUMS */
    size_t max_bytes;         /* 0: CW_MAX_REQUEST_BYTES */
};

/* Encode a->m[first...] into out (reset first) as one PutMetricData body.
 * Returns how many datums went in (0 when first >= a->n), or a negative
 * errno (-E2BIG when one datum alone exceeds max_bytes). */
int cw_encode(const struct cw_agg *a, size_t first, const struct cw_encode_options *o,
              struct buf *out);

struct cw_keycap {
    char **keys;
    size_t n, max;
    uint64_t overflowed; /* lookups mapped to CW_OTHER_KEY */
};
void cw_keycap_init(struct cw_keycap *c, size_t max);
void cw_keycap_free(struct cw_keycap *c);
/* The dimension value for key[0..len): the key itself (NUL-terminated
 * copy owned by c) while fewer than max distinct keys were seen, else
 * CW_OTHER_KEY. Keys longer than 255 bytes are cut. */
const char *cw_keycap_map(struct cw_keycap *c, const char *key, size_t len);
