/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * One record through the stages, the same way for the daemon and for
 * `rarewatch replay`: decode the payload per [input] format (a JSON object,
 * NDJSON lines with [input] ndjson, a CSV row keyed by csv_columns, text as
 * {"message"}, bytes as {"data_base64"}), take the event time from
 * [input] timestamp_field, apply the transforms, run the detectors, and
 * write the output line: the record's own bytes with the detectors' fields
 * (and the Kinesis provenance) spliced before its closing brace.
 *
 * A worker belongs to one thread; the transform and detector stages are
 * shared (the caller keeps them alive for the call).
 */
#include <stdbool.h>
#include <stdint.h>

#include "rarewatch/conf.h"
#include "rarewatch/detect_stage.h"
#include "rarewatch/record.h"
#include "rarewatch/transform.h"
#include "rarewatch/window.h"

struct rs_worker;

struct rs_options {
    bool keep_dropped; /* emit records a filter dropped, unmarked (replay --all) */
    bool json_objects; /* payloads are JSON objects whatever [input] format says (replay) */
    bool log_anomalies; /* log each anomaly found (the daemon; see struct detect_record) */
};

/* [input] settings from cfg. NULL on -ENOMEM or an invalid timestamp_field
 * (rw_config_validate rejects that earlier). */
struct rs_worker *rs_worker_new(const struct rw_config *cfg, const struct rs_options *o);
struct rs_worker *rs_worker_free(struct rs_worker *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct rs_worker *, rs_worker_free)

/* Process one payload (data[len] == 0) into out: zero or more lines (meta
 * input = `input`), and dead-letter entries for what cannot be processed.
 * prov, when not NULL, is added as "_kinesis" and gives the arrival time. */
int rs_process(struct rs_worker *w, const struct xf_stage *xf, struct detect_stage *det,
               int32_t input, const char *data, size_t len, const struct rw_provenance *prov,
               struct rw_output *out);

/* rs_process() for each record of a batch (a GetRecords response; input
 * = the index in it), looking RS_LOOKAHEAD records ahead so the detectors'
 * per-key state is in the cache when a record reaches them
 * (detect_stage_prefetch). */
#define RS_LOOKAHEAD 4
int rs_process_batch(struct rs_worker *w, const struct xf_stage *xf, struct detect_stage *det,
                     const struct rw_input_record *in, size_t n, struct rw_output *out);

struct rs_counts {
    uint64_t records, dropped, failed, anomalies;
};
struct rs_counts rs_worker_counts(const struct rs_worker *w);
/* Event time of the last record processed (NaN: none known). */
double rs_last_event_time(const struct rs_worker *w);

/* Windows ([window.NAME], window.h). rs_process() aggregates each record
 * it outputs (after the transforms; filtered records are not seen) and
 * appends the windows that close as derived lines (meta input -1, event
 * time = the window's end) after it. A derived record skips the transforms
 * and reaches only the detectors that have a `where`.
 * rs_tick(): the idle tick (wall clock now, epoch seconds): windows of a
 * quiet stream close (window.h, idle_timeout). The daemon calls it after
 * every GetRecords response, empty ones included.
 * rs_flush(): emit every open window (replay at end of input). */
int rs_tick(struct rs_worker *w, const struct xf_stage *xf, struct detect_stage *det, double now,
            struct rw_output *out);
int rs_flush(struct rs_worker *w, const struct xf_stage *xf, struct detect_stage *det, struct rw_output *out);
const struct win_set *rs_windows(const struct rs_worker *w);
