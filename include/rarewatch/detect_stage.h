/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The detector stage: the [detector.NAME] sections compiled into detector
 * instances with per-key state (bounded tables with LRU eviction and idle
 * expiry), run on every record after the transforms. Each record gains the
 * top-level fields
 *   "anomaly_score": the maximum score over the detectors that scored it,
 *   "is_anomaly":    whether any detector's alert rule fired,
 *   "anomalies":     [{"detector","key","score","value","expected","reason"}]
 *                    for the detectors that fired.
 * Scores are calibrated per key (see detect.h), so one threshold means about
 * the same rarity for every type.
 *
 * Thread safety: shard workers call detect_stage_eval() concurrently; each
 * detector's state is split into stripes by key hash, each with its own
 * lock, so different keys rarely contend.
 */
#include <stdbool.h>
#include <stdint.h>

#include "rarewatch/conf.h"
#include "rarewatch/json_scan.h"
#include "rarewatch/record.h"

struct detect_stage;

/* Compile the detectors of cfg; problems into diag as FILE:LINE: ... */
int detect_stage_new(const struct rw_config *cfg, struct conf_diag *diag, struct detect_stage **out);
struct detect_stage *detect_stage_free(struct detect_stage *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct detect_stage *, detect_stage_free)
size_t detect_stage_count(const struct detect_stage *s);

/* One record to score. `where`, when set, decides for detector i whether the
 * record is in its scope (the analytics stage evaluates the predicates). */
struct detect_record {
    struct json_doc *doc;   /* the scanned record; node 0 is the object */
    double event_time;      /* epoch seconds */
    bool (*where)(void *ud, size_t detector);
    void *ud;
    /* Also log each anomaly (NOTICE, rate-limited per source line) with the
     * DETECTOR field, on top of the calling thread's context (a shard
     * worker's SHARD_ID): the daemon sets it, replay does not. */
    bool log;
};

struct detect_verdict {
    bool scored;            /* at least one detector scored the record */
    bool is_anomaly;
    double score;
};

/* Score r with every detector and append the output fields, each preceded
 * by a comma (`,"anomaly_score":...`), to out. Nothing is appended when no
 * detector applies. */
int detect_stage_eval(struct detect_stage *s, const struct detect_record *r, struct buf *out,
                      struct detect_verdict *v);

/* Look-ahead hint for a record that detect_stage_eval() will see a few
 * records from now: its keys are found in its raw JSON text (a string
 * member named by a detector's `key`, top-level), hashed, and the lines of
 * their state are prefetched, so the lookup does not wait on three cache
 * misses when the table is larger than the cache (100,000 keys). Called by
 * the record stage for the record RS_LOOKAHEAD ahead in a batch. A hint
 * only: it changes nothing, a key it gets wrong (a transform rewrites it,
 * a member of the same name nested deeper) costs a wasted prefetch. */
void detect_stage_prefetch(struct detect_stage *s, const char *json, size_t len);
/* Whether looking ahead pays: some detector that can be looked ahead has
 * tables larger than the cache. While they fit, the look-ahead's search
 * and hash cost more than the misses it hides. */
bool detect_stage_lookahead(const struct detect_stage *s);
/* Look ahead whatever the tables' size: for tests and benchmarks that
 * check the look-ahead on tables small enough to build quickly. */
void detect_stage_force_lookahead(struct detect_stage *s);

/* Event time has reached now: close rate intervals of keys that saw no
 * events up to now (sales that stop), each alert a derived line in out;
 * and forget keys idle for longer than their detector's idle_expiry (a
 * slice of each table per call, counted as expirations). */
int detect_stage_tick(struct detect_stage *s, double now, struct rw_output *out);

/* Whether ticking does anything (a rate detector, or a keyed table with an
 * idle_expiry), and the smallest [detector] idle_timeout of the rate
 * detectors (seconds; 0: none, quiet shards never extend their time). */
bool detect_stage_needs_tick(const struct detect_stage *s);
double detect_stage_rate_idle(const struct detect_stage *s);

/* The time to tick at in the daemon: rate intervals are in event time, and
 * the per-key state is shared by every shard worker, so a tick must not pass
 * a shard that still feeds keys at an older time. One entry per active shard
 * worker: the event time of its last record (NaN: none yet; such a worker
 * holds nothing back) and the wall clock when that record arrived. A worker
 * quiet for idle (seconds, > 0) counts as its event time plus the quiet
 * time, as windows' idle_timeout does, so a stream that stops still closes
 * intervals. Returns the minimum (NaN: no worker has a time). */
struct det_clock {
    double event_time, arrival;
};
double detect_watermark(const struct det_clock *c, size_t n, double now, double idle);

/* Keep the state of detectors whose definition did not change (reload). */
void detect_stage_adopt(struct detect_stage *s, struct detect_stage *old);

/* State snapshot: every detector's per-key state, atomically written;
 * loading matches detectors by name and definition, so a changed detector
 * starts fresh. */
int detect_stage_save(struct detect_stage *s, const char *path);
int detect_stage_load(struct detect_stage *s, const char *path);
/* The same from a snapshot in memory (detect_stage_load reads the file into
 * one). -EBADMSG for a truncated or foreign snapshot; a key whose saved
 * state has another layout or impossible values starts fresh (logged). */
int detect_stage_load_buffer(struct detect_stage *s, const void *data, size_t len);

struct detect_stats {
    const char *name;
    const char *type;
    uint64_t scored, anomalies, skipped, evictions, expirations;
    uint32_t keys;
    size_t bytes_per_key;
};
/* Stats of detector i (i < detect_stage_count()). */
void detect_stage_stats(struct detect_stage *s, size_t i, struct detect_stats *out);
/* Their sums over the detectors (name, type and bytes_per_key unset). */
void detect_stage_totals(struct detect_stage *s, struct detect_stats *out);
