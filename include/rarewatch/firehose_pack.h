/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Firehose batch packing, pure: NDJSON lines -> Firehose records ->
 * PutRecordBatch requests within the service limits (500 records and
 * 4 MiB of data per request, 1,000 KiB per record, sizes before base64).
 *
 * Every Firehose record holds whole lines (each newline-terminated, so a
 * reader such as Athena counts one row per line). Without packing a record
 * is one line. With packing, consecutive lines share a record up to
 * pack_size bytes (Firehose bills each record rounded up to 5 KB, so many
 * small lines in one record cost less); a packed record never exceeds the
 * per-record limit, so packed lines are split over several records rather
 * than rejected. A single line over the per-record limit cannot be sent:
 * fh_packer_add() says so and the caller dead-letters it.
 *
 * The packer keeps slices (pointer + length + an owner tag), never copies:
 * the bytes must stay valid until the records are sent. Its arrays grow and
 * are reused (fh_packer_reset keeps them): no allocation in steady state.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rarewatch/macro.h"
#include "rarewatch/record.h"

#define FH_MAX_BATCH_RECORDS 500
#define FH_MAX_BATCH_BYTES (4u << 20)
#define FH_MAX_RECORD_BYTES (1000u * 1024)

enum fh_forward {
    FH_FORWARD_ALL,       /* every line */
    FH_FORWARD_ANOMALIES, /* lines with is_anomaly */
    FH_FORWARD_NONE,      /* nothing to the main stream (anomalies stream only) */
};

/* Does a line with this meta go to the main stream under mode f? */
static inline bool fh_forward_line(enum fh_forward f, const struct rw_line_meta *m)
{
    return f == FH_FORWARD_ALL || (f == FH_FORWARD_ANOMALIES && m->is_anomaly);
}

struct fh_limits {
    size_t max_batch_records; /* <= FH_MAX_BATCH_RECORDS */
    size_t max_batch_bytes;   /* <= FH_MAX_BATCH_BYTES */
    size_t max_record_bytes;  /* <= FH_MAX_RECORD_BYTES */
    bool pack;
    size_t pack_size;         /* clamped to max_record_bytes */
};
/* The service limits, no packing. */
void fh_limits_default(struct fh_limits *l);

struct fh_line {
    const char *p;
    size_t len;   /* newline included */
    uint32_t owner; /* the caller's tag (e.g. the batch index) */
};

struct fh_record {
    size_t first, n; /* lines[first .. first+n) */
    size_t bytes;    /* sum of their lengths */
};

struct fh_packer {
    struct fh_limits lim;
    struct fh_line *lines;
    size_t n_lines, cap_lines;
    struct fh_record *recs;
    size_t n_recs, cap_recs;
    size_t bytes; /* all records */
};

void fh_packer_init(struct fh_packer *p, const struct fh_limits *lim);
void fh_packer_reset(struct fh_packer *p);
void fh_packer_free(struct fh_packer *p);

/* Append a line. 0 when added, -E2BIG when the line alone exceeds the
 * per-record limit (not added: dead-letter it), -ENOMEM. */
int fh_packer_add(struct fh_packer *p, const char *line, size_t len, uint32_t owner);

/* How many records starting at recs[first] fit one PutRecordBatch request
 * (at least 1 while first < n_recs); *bytes gets their data size. */
size_t fh_packer_next_request(const struct fh_packer *p, size_t first, size_t *bytes);
/* Same over an arbitrary list of record indexes (for re-sending only the
 * failed ones): how many of idx[0..n) fit one request. */
size_t fh_request_fit(const struct fh_packer *p, const size_t *idx, size_t n, size_t *bytes);
