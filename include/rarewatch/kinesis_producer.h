/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * PutRecords batching: records are packed into requests of at most 500
 * records and 5 MiB (data + partition keys), each record at most 1 MiB.
 * When a response reports partial failure, only the failed entries are
 * sent again, in their original order, with jittered backoff; records that
 * still fail after max_retries are counted as failed (never silently lost).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rarewatch/aws.h"

#define KINESIS_MAX_BATCH_RECORDS 500
#define KINESIS_MAX_BATCH_BYTES (5u << 20)
#define KINESIS_MAX_RECORD_BYTES (1u << 20)

struct kinesis_producer_stats {
    uint64_t sent;      /* accepted by Kinesis */
    uint64_t retried;   /* entry re-sends after partial failures */
    uint64_t failed;    /* given up on */
    uint64_t requests;
    uint64_t bytes;
};

struct kinesis_producer;

/* stream: a name or an ARN ("arn:aws:kinesis:...:stream/NAME"). */
struct kinesis_producer *kinesis_producer_new(struct aws_client *c, const char *stream,
                                              unsigned max_retries);
struct kinesis_producer *kinesis_producer_free(struct kinesis_producer *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct kinesis_producer *, kinesis_producer_free)

/* Queue one record; sends a batch when full. -E2BIG for a record over the
 * 1 MiB limit (counted as failed); -EBUSY when some records of the batch
 * still failed after max_retries (counted as failed); other negative errno:
 * the request failed as a whole in a way retrying cannot fix (err filled;
 * e.g. bad credentials, a missing stream; the batch is counted as failed). */
int kinesis_producer_add(struct kinesis_producer *p, const void *data, size_t len,
                         const char *partition_key, struct aws_error *err);
/* Send what is queued; returns as kinesis_producer_add(). */
int kinesis_producer_flush(struct kinesis_producer *p, struct aws_error *err);
struct kinesis_producer_stats kinesis_producer_get_stats(const struct kinesis_producer *p);

/* Per-record outcome, for callers that must know which records landed
 * (dead-letter replay marks exactly those): cb(ud, tag, ok) once per record
 * added with kinesis_producer_add_tagged(), from inside add/flush, when
 * Kinesis accepted it (ok) or it was given up on. */
void kinesis_producer_set_result_cb(struct kinesis_producer *p,
                                    void (*cb)(void *ud, uint64_t tag, bool ok), void *ud);
int kinesis_producer_add_tagged(struct kinesis_producer *p, const void *data, size_t len,
                                const char *partition_key, uint64_t tag, struct aws_error *err);
