/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Windows: the [window.NAME] sections. Per key, records are aggregated over
 * tumbling (slide = size) or sliding windows aligned to the epoch (a 1m
 * window starts at :00), on event time or arrival time. A window that
 * closes becomes a derived record
 *   {"_window":{"name","key","start","end"},"count":N,"sum_amount":...}
 * handed to an emit callback (the record stage runs it through the
 * detectors and adds it to the batch's output as a line with input -1).
 *
 * Time: each window set keeps, per definition, the maximum time seen; the
 * watermark is that minus allowed_lateness and never goes back. A record
 * older than the watermark is late (counted, not aggregated); a window
 * closes when the watermark reaches its end, so a closed window is never
 * reopened and time going backwards only makes records late. Once no
 * record arrived for idle_timeout (wall clock), win_tick() moves the
 * watermark on by the quiet time (max time - lateness + quiet), so a quiet
 * stream still closes its windows; this holds for arrival-time windows
 * too (Kinesis arrival times lag the wall clock when the consumer is
 * behind, so they are not compared with it directly).
 *
 * Memory: per definition one keytab (max_keys keys, LRU eviction), each key
 * a fixed slot holding a ring of the windows that can be open at once
 * (size/slide + allowed_lateness/slide + 1, at most WIN_MAX_OPEN), each
 * window a fixed block of aggregate state (HyperLogLog registers for
 * distinct_count, a bounded log-bucket sketch for p50/p95/p99). Everything
 * is allocated by win_set_new(): observing records allocates nothing
 * (strings computed by `key` use a scratch arena reset per record). An
 * evicted key's open windows are discarded (counted), not emitted: a
 * partial window would look like a drop to a detector.
 *
 * One win_set per shard worker (per thread); nothing is shared.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rarewatch/conf.h"
#include "rarewatch/json_scan.h"

#define WIN_MAX_OPEN 64

struct win_set;

/* Called for each closed window: json is one object (no newline), valid
 * during the call; event_time is the window's end (epoch seconds). */
typedef int (*win_emit_fn)(void *ud, const char *json, size_t len, double event_time);

/* Compile cfg's windows with empty state. Problems go to diag as FILE:LINE: or FILE:LINE:COL: (expressions, aggregates);
 * -EINVAL when there was any. *out has win_set_count() == 0 without
 * windows. */
int win_set_new(const struct rw_config *cfg, struct conf_diag *diag, struct win_set **out);
struct win_set *win_set_free(struct win_set *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct win_set *, win_set_free)
size_t win_set_count(const struct win_set *s);

/* One record, after the transforms. event_time: the record stage's event
 * time (NaN unknown); arrival_time: Kinesis arrival (NaN: none, then the
 * wall clock is used); now: the wall clock, or NaN to spare the clock read
 * per record (then the next win_tick()'s time counts as the record's for
 * idle_timeout). Closed windows are emitted through fn. */
int win_observe(struct win_set *s, struct json_doc *doc, double event_time, double arrival_time,
                double now, win_emit_fn fn, void *ud);
/* The periodic tick (wall clock now, epoch seconds): idle and arrival-time
 * watermarks move on, windows they pass are emitted. */
int win_tick(struct win_set *s, double now, win_emit_fn fn, void *ud);
/* Emit every open window, in key slot order, then start over (replay at
 * end of input). Later records older than the flushed windows' ends are
 * late. */
int win_flush(struct win_set *s, win_emit_fn fn, void *ud);

struct win_stats {
    const char *name;
    uint64_t records;         /* aggregated */
    uint64_t late;            /* older than the watermark: not aggregated */
    uint64_t skipped;         /* no time, key null/missing/too long */
    uint64_t emitted;         /* windows emitted */
    uint64_t evicted;         /* keys evicted to make room (max_keys) */
    uint64_t evicted_windows; /* open windows discarded with them */
    uint32_t keys;
    size_t bytes_per_key;     /* keytab slot, index share included */
};
void win_set_stats(const struct win_set *s, size_t i, struct win_stats *out);

/* Window sections differ between two configurations (added, removed,
 * changed, reordered): each is added to diag. The daemon rejects such a
 * reload: the shard workers build their windows once. */
unsigned win_config_changes(const struct rw_config *old, const struct rw_config *nc, struct conf_diag *diag);
