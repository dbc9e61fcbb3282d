/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-update cost of the keyed detectors with 100,000 keys.
 *
 * First table, "daemon": what a record costs the daemon's shard worker for
 * one detector, measured on the daemon's own path: JSON records in
 * GetRecords-sized batches through the record stage (the loop of
 * app.c's stage_process) with the detector configured, minus the same
 * batches through a configuration without detectors, the two runs
 * interleaved. That covers what the detector adds per record: the key and
 * field lookups, the stripe lock, the keytab lookup, the update, the
 * output fields.
 *
 * Second table: the lookup plus the detector update alone, each update's
 * key read from the update stream as the daemon reads it from the record
 * (keytab as the daemon looks keys up, one at a time; keytab+pf: a batch
 * consumer hashing ahead and prefetching), against a baseline measured in
 * the same run (a chained hash with one malloc per key, the obvious first
 * version), and the detector alone on a flat array (no lookup) for
 * reference.
 *
 *   bench_detect [updates-per-run] [runs] [keys] [type]
 *   BENCH_DETECT_STEP_US=N: event time per update in the second table
 *   (default 1000; see step_us)
 *   BENCH_DETECT_STEADY=1: both tables warm up until every key is past
 *   its learning period (warm_runs); without it they measure a key's
 *   10th-40th updates, mostly learning ones for all but rate
 *   BENCH_DETECT_DAEMON_ONLY=1: the first table only
 *   BENCH_DETECT_PF_ONLY=1: the second table's keytab+pf column only (the
 *   others print 0): for perf and A/B comparisons of the lookup + update
 *
 * Prints the median ns/update over the runs and bytes per key. keys
 * (default 100,000) smaller than the cache shows the detectors' compute
 * cost without the memory misses.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rarewatch/conf_schema.h"
#include "rarewatch/detect.h"
#include "rarewatch/detect_stage.h"
#include "rarewatch/keytab.h"
#include "rarewatch/record_stage.h"

#define MAX_KEYS 100000u
static unsigned nkeys = MAX_KEYS;

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static char keys[MAX_KEYS][24];
static uint8_t keylen[MAX_KEYS];

/* An update's key as its record carries it: in the daemon the key bytes
 * are in the record the worker has just parsed, in cache. Read instead from
 * keys[] by a random index, each key cost an L2 miss of the benchmark's own
 * (2.4 MB of key strings; perf: 65% of keytab_hash's samples on its first
 * load, ~30 ns per update), which no daemon pays. */
struct wkey {
    char s[15];
    uint8_t len;
};

struct workload {
    uint32_t *key;
    struct wkey *kstr; /* the key of each update, in update order */
    uint64_t *hash; /* filled ahead by the pipelined run */
    double *x;
    uint8_t *cat;
    size_t n;
};

static const char *const cats[] = { "US", "DE", "FR", "GB", "NL", "SE", "JP", "BR", "RU", "NG" };

/* ---- the baseline store: chained hash, malloc per key -------------------- */

struct node {
    struct node *next;
    char *key;
    unsigned char state[]; /* detector state */
};

struct chained {
    struct node **b;
    size_t nb, state_size;
};

static void *chained_get(struct chained *c, const char *k, size_t len)
{
    size_t i = keytab_hash(k, len) % c->nb;
    for (struct node *n = c->b[i]; n; n = n->next)
        if (strlen(n->key) == len && memcmp(n->key, k, len) == 0)
            return n->state;
    struct node *n = calloc(1, sizeof(*n) + c->state_size);
    if (!n)
        abort();
    n->key = strndup(k, len);
    n->next = c->b[i];
    c->b[i] = n;
    return n->state;
}

static void chained_free(struct chained *c)
{
    for (size_t i = 0; i < c->nb; i++)
        for (struct node *n = c->b[i], *nx; n; n = nx) {
            nx = n->next;
            free(n->key);
            free(n);
        }
    free(c->b);
}

/* ---- one update of detector type t on state st ------------------------ */

struct all_params {
    struct det_zscore_params z;
    struct det_quantile_params q;
    struct det_rate_params r;
    struct det_category_params c;
    struct det_auto_params a;
};

static double sink;

static inline void update(const struct all_params *p, enum det_type t, void *st,
                          const struct workload *w, size_t i, int64_t ts)
{
    struct det_result r;
    switch (t) {
    case DET_ZSCORE: det_zscore_update(&p->z, st, w->x[i], ts, &r); break;
    case DET_QUANTILE: det_quantile_update(&p->q, st, w->x[i], &r); break;
    case DET_AUTO: det_auto_update(&p->a, st, w->x[i], ts, &r); break;
    case DET_RATE:
        r.score = 0;
        det_rate_add(&p->r, st, ts, 1, &r, NULL);
        break;
    case DET_RARE_CATEGORY: {
        const char *v = cats[w->cat[i]];
        det_category_update(&p->c, st, v, 2, &r);
        break;
    }
    default: abort();
    }
    sink += r.score;
}

static double now_ns(void)
{
    struct timespec t;
    /* CPU time of this process: the build machine is shared, and time spent
     * descheduled is not time spent updating. */
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

enum store { KEYTAB, KEYTAB_PREFETCH, CHAINED, FLAT };

/* Prefetch distances (in updates) for the pipelined keytab run. */
#define AHEAD_INDEX 16
#define AHEAD_SLOT 8

static int64_t clock_us; /* event time */
/* Event time per update (BENCH_DETECT_STEP_US, default 1 ms): with 100,000
 * keys a key sees an event every 100 s of event time, and a rate key
 * closes 1-2 intervals (1 minute) per event, each a Poisson tail and a
 * calibration; at 10 us per update (a stream of 100,000 records/s) it
 * closes one per 600 events. */
static int64_t step_us = 1000;

static double run(const struct all_params *p, enum det_type t, enum store s, void *store,
                  const struct workload *w)
{
    double t0 = now_ns();
    if (s == KEYTAB_PREFETCH) {
        /* As a batch consumer would: hash each key once, hint ahead. */
        for (size_t i = 0; i < w->n; i++) {
            if (i + AHEAD_INDEX < w->n) {
                size_t ia = i + AHEAD_INDEX;
                w->hash[i + AHEAD_INDEX] = keytab_hash(w->kstr[ia].s, w->kstr[ia].len);
                keytab_prefetch_index(store, w->hash[i + AHEAD_INDEX]);
            }
            if (i + AHEAD_SLOT < w->n)
                keytab_prefetch_slot(store, w->hash[i + AHEAD_SLOT]);
            const struct wkey *k = &w->kstr[i];
            clock_us += step_us;
            void *st = keytab_get_hashed(store, i < AHEAD_INDEX ? keytab_hash(k->s, k->len)
                                                                : w->hash[i],
                                         k->s, k->len, clock_us, NULL);
            update(p, t, st, w, i, clock_us);
        }
        return (now_ns() - t0) / (double)w->n;
    }
    for (size_t i = 0; i < w->n; i++) {
        const struct wkey *k = &w->kstr[i];
        void *st;
        clock_us += step_us;
        if (s == KEYTAB)
            st = keytab_get(store, k->s, k->len, clock_us, NULL);
        else if (s == CHAINED)
            st = chained_get(store, k->s, k->len);
        else
            st = (unsigned char *)store + (size_t)w->key[i] * det_state_size(t);
        update(p, t, st, w, i, clock_us);
    }
    return (now_ns() - t0) / (double)w->n;
}

/* Memory per key as the daemon holds it: its tables accept keys of up to
 * 256 bytes, stored inline in every slot (the benchmark's own tables hold
 * 24-byte keys). */
static size_t daemon_bytes_per_key(enum det_type t)
{
    struct keytab *kt = keytab_new(&(struct keytab_params){
        .max_keys = nkeys, .value_size = (uint32_t)det_state_size(t), .key_max = 256 });
    if (!kt)
        abort();
    size_t b = keytab_bytes_per_key(kt);
    keytab_free(kt);
    return b;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Warm-up runs of n updates each. With BENCH_DETECT_STEADY set, until
 * every key is past its learning period (the longest default,
 * rare_category's 100 events, + 10%): at 100,000 keys and 1,000,000
 * updates a run, a key sees 10 a run, so after one warm-up run most timed
 * zscore and quantile updates and all rare_category ones are still
 * learning (no calibration, no alert test: the cheap path). */
static unsigned warm_runs(size_t n)
{
    if (!getenv("BENCH_DETECT_STEADY"))
        return 1;
    return (unsigned)((110 * (uint64_t)nkeys + n - 1) / n);
}

static double measure(const struct all_params *p, enum det_type t, enum store s,
                      const struct workload *w, unsigned runs, size_t *bytes_per_key)
{
    void *store = NULL;
    struct chained ch = { 0 };
    size_t sz = det_state_size(t);
    if (s == KEYTAB || s == KEYTAB_PREFETCH) {
        /* What the update touches prefetched, as the daemon's tables do. */
        uint32_t hot = t == DET_RATE ? (uint32_t)det_rate_state_hot(&p->r) : 0;
        store = keytab_new(&(struct keytab_params){ .max_keys = nkeys, .value_size = (uint32_t)sz,
                                                    .value_hot = hot, .key_max = 24 });
        *bytes_per_key = keytab_bytes_per_key(store);
    } else if (s == CHAINED) {
        ch = (struct chained){ .b = calloc(nkeys, sizeof(void *)), .nb = nkeys, .state_size = sz };
        store = &ch;
        /* malloc'd node + key rounded up to malloc's 16-byte chunks, + bucket */
        *bytes_per_key = ((sizeof(struct node) + sz + 8 + 15) & ~(size_t)15) + 32 + sizeof(void *);
    } else {
        store = calloc(nkeys, sz);
        *bytes_per_key = sz;
    }
    if (!store)
        abort();
    /* Warm-up: every key exists, caches and branch predictors settle; the
     * timed runs measure steady state. A rate key learns for min_intervals
     * intervals of event time (scores 0, calibrator idle): at a small
     * step_us that takes more than one pass. */
    uint64_t span = (uint64_t)w->n * (uint64_t)step_us;
    uint64_t learn_us = (uint64_t)(p->r.min_intervals + 1) * (uint64_t)p->r.interval_usec;
    unsigned warm = t == DET_RATE ? (unsigned)MAX((uint64_t)1, (learn_us + span - 1) / span) : 1;
    warm = MAX(warm, warm_runs(w->n));
    for (unsigned i = 0; i < warm; i++)
        run(p, t, s, store, w);
    double ns[16];
    for (unsigned r = 0; r < runs; r++)
        ns[r] = run(p, t, s, store, w);
    qsort(ns, runs, sizeof(double), cmp_double);
    if (s == KEYTAB || s == KEYTAB_PREFETCH)
        keytab_free(store);
    else if (s == CHAINED)
        chained_free(&ch);
    else
        free(store);
    return ns[runs / 2];
}

/* ---- the daemon's path ------------------------------------------------- */

#define DAEMON_RECORDS_MAX 1000000u
#define DAEMON_BATCH 1000 /* records per GetRecords response */
#define TS_WIDTH 14       /* "ts":1700000000.000, rewritten in place per run */

struct daemon_input {
    char *text;                 /* the records, each NUL-terminated */
    size_t *ts_off;             /* where each record's ts digits are */
    struct rw_input_record *in;
    size_t n;
    uint64_t t0_ms;             /* event time of the next run's first record, ms */
};

/* One GetRecords response through the record stage, as app.c's
 * stage_process does it. */
static int daemon_batch(struct rs_worker *rs, struct detect_stage *det, const struct rw_input_record *in,
                        size_t n, struct rw_output *out)
{
    return rs_process_batch(rs, NULL, det, in, n, out);
}

static double daemon_run(struct rs_worker *rs, struct detect_stage *det, struct daemon_input *d,
                         struct rw_output *out)
{
    /* Event time moves on 1 ms per record, run after run (rate intervals
     * close as in a live stream); rewritten before the clock starts. */
    for (size_t i = 0; i < d->n; i++) {
        /* ddddddddd.ddd, milliseconds written right to left */
        uint64_t ms = d->t0_ms + i;
        char *p = d->text + d->ts_off[i] + TS_WIDTH;
        for (int k = 0; k < TS_WIDTH - 1; k++, ms /= 10) {
            if (k == 3)
                *--p = '.';
            *--p = (char)('0' + ms % 10);
        }
    }
    d->t0_ms += d->n;
    double t0 = now_ns();
    for (size_t i = 0; i < d->n; i += DAEMON_BATCH) {
        rw_output_reset(out);
        if (daemon_batch(rs, det, d->in + i, MIN((size_t)DAEMON_BATCH, d->n - i), out) < 0)
            abort();
    }
    return (now_ns() - t0) / (double)d->n;
}

static struct detect_stage *stage_of(const char *conf, struct rw_config **cfg)
{
    struct conf_diag diag = { .echo = stderr };
    struct detect_stage *det = NULL;
    if (conf_load_string(&rw_schema, "bench.conf", conf, &diag, cfg) < 0 ||
        detect_stage_new(*cfg, &diag, &det) < 0)
        abort();
    conf_diag_clear(&diag);
    return det;
}

/* ns per record the detector adds on the daemon's path (median over the
 * runs of with - without, interleaved), and the with-detector total. */
static void daemon_measure(enum det_type t, struct daemon_input *d, unsigned runs, double *added,
                           double *total, size_t *bytes_per_key, uint64_t *evictions, double *alerts)
{
    static const char base[] = "[input]\ntimestamp_field = ts\n";
    char conf[512];
    const char *field = t == DET_RARE_CATEGORY ? "country" : "amount";
    snprintf(conf, sizeof(conf),
             "%s[detector.d]\ntype = %s\n%s%s\nkey = card\nmax_keys = %u\n", base, det_type_name(t),
             t == DET_RATE ? "" : "field = ", t == DET_RATE ? "" : field,
             /* room for every key in every stripe: steady state, no evictions */
             nkeys + nkeys / 4);
    struct rw_config *cfg_none = NULL, *cfg_det = NULL;
    struct detect_stage *none = stage_of(base, &cfg_none), *det = stage_of(conf, &cfg_det);
    struct rs_worker *rs_none = rs_worker_new(cfg_none, NULL), *rs_det = rs_worker_new(cfg_det, NULL);
    struct rw_output out = { 0 };
    if (!rs_none || !rs_det)
        abort();
    /* Warm-up: every key exists, buffers are at their size, and with
     * BENCH_DETECT_STEADY every key is past its learning period. */
    unsigned warm = warm_runs(d->n);
    for (unsigned i = 0; i < warm; i++)
        daemon_run(rs_det, det, d, &out);
    daemon_run(rs_none, none, d, &out);
    double with[16], diff[16];
    for (unsigned r = 0; r < runs; r++) {
        double a = daemon_run(rs_none, none, d, &out);
        with[r] = daemon_run(rs_det, det, d, &out);
        diff[r] = with[r] - a;
    }
    qsort(with, runs, sizeof(double), cmp_double);
    qsort(diff, runs, sizeof(double), cmp_double);
    *added = diff[runs / 2];
    *total = with[runs / 2];
    struct detect_stats st;
    detect_stage_stats(det, 0, &st);
    *bytes_per_key = st.bytes_per_key;
    *evictions = st.evictions;
    *alerts = (double)st.anomalies / (double)st.scored;
    rw_output_free(&out);
    rs_worker_free(rs_none);
    rs_worker_free(rs_det);
    detect_stage_free(none);
    detect_stage_free(det);
    conf_unref(cfg_none);
    conf_unref(cfg_det);
}

static void daemon_input_init(struct daemon_input *d, size_t n, const struct workload *w)
{
    static const char *const countries[] = { "US", "DE", "FR", "GB", "NL", "SE", "JP", "BR", "RU", "NG" };
    d->n = MIN(n, (size_t)DAEMON_RECORDS_MAX);
    d->text = malloc(d->n * (96 + sizeof(keys[0]))); /* a record and its partition key */
    d->ts_off = malloc(d->n * sizeof(size_t));
    d->in = calloc(d->n, sizeof(*d->in));
    if (!d->text || !d->ts_off || !d->in)
        abort();
    d->t0_ms = UINT64_C(1700000000000);
    size_t off = 0;
    for (size_t i = 0; i < d->n; i++) {
        char *rec = d->text + off;
        int len = snprintf(rec, 96, "{\"ts\":%0*.3f,\"card\":\"%s\",\"amount\":%.1f,\"country\":\"%s\"}",
                           TS_WIDTH, 0.0, keys[w->key[i]], w->x[i], countries[w->cat[i]]);
        d->ts_off[i] = off + 6;
        /* The partition key beside its record, as in the GetRecords
         * response the worker parsed it from: pointing into keys[] by a
         * random index, each record's provenance cost an L3 miss of the
         * benchmark's own, which the detector's tables made a DRAM miss
         * in the timed run only (perf: 23% of the samples on the first
         * load of the key in buf_json_plain, ~80 ns per record). */
        char *pk = rec + len + 1;
        memcpy(pk, keys[w->key[i]], keylen[w->key[i]] + 1u);
        d->in[i] = (struct rw_input_record){
            .data = rec,
            .len = (size_t)len,
            .prov = { .stream = { "bench", 5 }, .shard_id = { "shardId-000000000000", 20 },
                      .sequence_number = { "49590338271490256608559692538361571095921575989136588898", 56 },
                      .partition_key = { pk, keylen[w->key[i]] },
                      .arrival_time = 1700000000 },
        };
        off += (size_t)len + 1 + keylen[w->key[i]] + 1u;
    }
}

static void daemon_table(struct daemon_input *d, unsigned runs, const char *only)
{
    static const enum det_type types[] = { DET_ZSCORE, DET_QUANTILE, DET_RATE, DET_RARE_CATEGORY,
                                           DET_AUTO };
    printf("daemon path: %zu records per run in batches of %d (record stage, as the shard worker), "
           "%u keys, median of %u interleaved runs\n", d->n, DAEMON_BATCH, nkeys, runs);
    printf("%-14s | %12s %12s | %8s %9s %8s\n", "detector", "detector", "record", "B/key", "evictions", "alerts");
    printf("%-14s | %12s %12s | %8s %9s %8s\n", "", "ns/record", "ns (total)", "(daemon)", "", "");
    for (unsigned i = 0; i < ELEMENTSOF(types); i++) {
        if (only && strcmp(only, det_type_name(types[i])) != 0)
            continue;
        double added, total;
        size_t bk;
        uint64_t ev;
        double alerts;
        daemon_measure(types[i], d, runs, &added, &total, &bk, &ev, &alerts);
        printf("%-14s | %12.1f %12.1f | %8zu %9llu %7.3f%%\n", det_type_name(types[i]), added, total, bk,
               (unsigned long long)ev, 100 * alerts);
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000000;
    unsigned runs = argc > 2 ? (unsigned)atoi(argv[2]) : 5;
    nkeys = argc > 3 ? (unsigned)atoi(argv[3]) : MAX_KEYS;
    if (runs < 1 || runs > 16 || n < 1 || nkeys < 1 || nkeys > MAX_KEYS) {
        fprintf(stderr, "usage: %s [updates] [runs (1-16)] [keys (1-100000)]\n", argv[0]);
        return 2;
    }
    for (unsigned i = 0; i < nkeys; i++)
        keylen[i] = (uint8_t)snprintf(keys[i], sizeof(keys[i]), "acct-%08x",
                                      (unsigned)(next_rand() & 0xffffffffu));
    _Static_assert(sizeof("acct-ffffffff") <= sizeof(((struct wkey *)0)->s), "a key fits a wkey");
    struct workload w = { .key = malloc(n * sizeof(uint32_t)), .kstr = malloc(n * sizeof(struct wkey)),
                          .hash = malloc(n * sizeof(uint64_t)), .x = malloc(n * sizeof(double)),
                          .cat = malloc(n), .n = n };
    if (!w.key || !w.kstr || !w.hash || !w.x || !w.cat)
        return 1;
    for (size_t i = 0; i < n; i++) {
        w.key[i] = (uint32_t)(next_rand() % nkeys);
        memcpy(w.kstr[i].s, keys[w.key[i]], keylen[w.key[i]] + 1);
        w.kstr[i].len = keylen[w.key[i]];
        w.x[i] = 100 + (double)(next_rand() % 1000) / 10.0;
        /* skewed categories: US most of the time, the tail rarely */
        uint64_t r = next_rand() % 1000;
        w.cat[i] = r < 600 ? 0 : r < 990 ? (uint8_t)(1 + r % 6) : (uint8_t)(7 + r % 3);
    }
    const char *only = argc > 4 ? argv[4] : NULL;
    if (getenv("BENCH_DETECT_STEP_US"))
        step_us = MAX(1, atoll(getenv("BENCH_DETECT_STEP_US")));
    bool pf_only = getenv("BENCH_DETECT_PF_ONLY") != NULL;
    if (!pf_only) {
        /* the records as text: only the daemon table reads them */
        struct daemon_input din;
        daemon_input_init(&din, n, &w);
        daemon_table(&din, runs, only);
    }
    if (getenv("BENCH_DETECT_DAEMON_ONLY"))
        return 0;

    struct all_params p;
    det_zscore_params_default(&p.z);
    det_quantile_params_default(&p.q);
    det_rate_params_default(&p.r);
    det_category_params_default(&p.c);
    det_auto_params_default(&p.a);

    static const enum det_type types[] = { DET_ZSCORE, DET_QUANTILE, DET_RATE,
                                           DET_RARE_CATEGORY, DET_AUTO };
    printf("detect: %u keys, %zu updates per run, median of %u runs, CPU time (uniform random keys), "
           "event time %lld us per update\n", nkeys, n, runs, (long long)step_us);
    printf("%-14s %6s | %10s %10s %8s | %10s %8s | %10s | %8s\n", "detector", "state", "keytab",
           "keytab+pf", "B/key", "chained", "B/key", "flat array", "daemon");
    printf("%-14s %6s | %10s %10s %8s | %10s %8s | %10s | %8s\n", "", "bytes", "ns/update",
           "ns/update", "", "ns/update", "", "ns/update", "B/key");
    for (unsigned i = 0; i < ELEMENTSOF(types); i++) {
        size_t bk = 0, bc = 0, bf = 0;
        if (only && strcmp(only, det_type_name(types[i])) != 0)
            continue;
        double kt = pf_only ? 0 : measure(&p, types[i], KEYTAB, &w, runs, &bk);
        double kp = measure(&p, types[i], KEYTAB_PREFETCH, &w, runs, &bk);
        double chn = pf_only ? 0 : measure(&p, types[i], CHAINED, &w, runs, &bc);
        double fl = pf_only ? 0 : measure(&p, types[i], FLAT, &w, runs, &bf);
        printf("%-14s %6zu | %10.1f %10.1f %8zu | %10.1f %8zu | %10.1f | %8zu\n", det_type_name(types[i]),
               det_state_size(types[i]), kt, kp, bk, chn, bc, fl, daemon_bytes_per_key(types[i]));
    }
    printf("(sink %g)\n", sink);
    free(w.key);
    free(w.kstr);
    free(w.hash);
    free(w.x);
    free(w.cat);
    return 0;
}
