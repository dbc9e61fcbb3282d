/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * What passes between the consumer and the analytics stage.
 *
 * In: raw payloads (after base64 and KPL de-aggregation) with their Kinesis
 * provenance. Out: NDJSON lines ready for the sinks (each the original
 * record, cleaned and enriched, plus "_kinesis" provenance and the
 * detectors' fields), and dead-letter entries for what could not be
 * processed. All storage is reused per batch: no per-record malloc in
 * steady state.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rarewatch/buf.h"
#include "rarewatch/value.h"

struct rw_provenance {
    struct rw_str stream;
    struct rw_str shard_id;
    struct rw_str sequence_number;
    struct rw_str partition_key;
    uint64_t sub_sequence_number; /* KPL sub-record index; 0 for plain records */
    bool aggregated;              /* came from a KPL aggregate */
    /* Known to need no JSON escape (false: not known, checked when
     * written). Whoever replaces a field's text must set or clear its flag. */
    bool sequence_number_plain, partition_key_plain;
    double arrival_time;          /* ApproximateArrivalTimestamp, epoch seconds */
};

struct rw_input_record {
    const char *data; /* the payload bytes; data[len] == 0 */
    size_t len;
    struct rw_provenance prov;
};

/* Stage names for dead-letter entries and counters. */
enum rw_stage {
    RW_STAGE_DECODE,    /* base64, KPL aggregate */
    RW_STAGE_PARSE,     /* payload not valid for [input] format */
    RW_STAGE_TRANSFORM, /* a transform failed (name in the entry) */
    RW_STAGE_DETECT,
    RW_STAGE_SINK,      /* a sink gave up after its retries */
    RW_STAGE_OVERSIZE,  /* too large for a sink */
};
const char *rw_stage_name(enum rw_stage s);

struct rw_line_meta {
    size_t off, len;      /* within rw_output.lines, newline included */
    int32_t input;        /* index into the input records; -1 for derived (window) records */
    bool is_anomaly;
    double anomaly_score;
    double event_time;    /* epoch seconds */
};

struct rw_deadletter_entry {
    int32_t input;        /* index into the input records, or -1 */
    enum rw_stage stage;
    char component[64];   /* transform / detector / sink name, or "" */
    char reason[256];
};

struct rw_output {
    struct buf lines;
    struct rw_line_meta *meta;
    size_t n, cap;
    struct rw_deadletter_entry *dl;
    size_t n_dl, cap_dl;
};

void rw_output_reset(struct rw_output *o);
void rw_output_free(struct rw_output *o);
/* Append a dead-letter entry (reason printf-style). */
int rw_output_deadletter(struct rw_output *o, int32_t input, enum rw_stage stage,
                         const char *component, const char *fmt, ...) _printf_(5, 6);
/* Reserve a line: the caller appends the bytes to o->lines and then calls
 * rw_output_end_line(). */
struct rw_line_meta *rw_output_begin_line(struct rw_output *o, int32_t input);
void rw_output_end_line(struct rw_output *o, struct rw_line_meta *m);

/* A field value as an event time, epoch seconds: numbers are epoch seconds,
 * or milliseconds above 1e11; strings are parsed by parse_timestamp().
 * -EINVAL for anything else. */
int rw_value_timestamp(const struct rw_value *v, double *epoch);

/* Append `"_kinesis":{...}` (no leading comma) for p to b; arrival_time in
 * ISO 8601 UTC with milliseconds. */
int rw_provenance_append_json(struct buf *b, const struct rw_provenance *p);
/* The same in two parts, for a caller that writes the first (the stream and
 * the shard, the same for every record of a shard) once and copies it:
 * `"_kinesis":{"stream":...,"shard_id":...` and `,"sequence_number":...}`. */
int rw_provenance_append_head_json(struct buf *b, const struct rw_provenance *p);
int rw_provenance_append_tail_json(struct buf *b, const struct rw_provenance *p);
