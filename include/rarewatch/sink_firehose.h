/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The Amazon Data Firehose sink ([firehose] delivery_stream): each NDJSON
 * line (or, with pack, several whole lines) is one Firehose record, sent
 * with PutRecordBatch within the service limits (firehose_pack.h).
 *
 * Batches are held until flush_interval passed or a full request (500
 * records or 4 MiB) is ready, then sent in order. A partial failure
 * (FailedPutCount > 0) re-sends only the failed entries, in order, with
 * jittered backoff; throttling also paces the following requests. Batches
 * stay unacknowledged meanwhile, so the shards stop at
 * max_inflight_batches (back-pressure) instead of buffering without bound.
 * Entries still failing after max_retries re-sends, or a request failing
 * as a whole for longer than retry_timeout, are dead-lettered (stage sink;
 * a line over 1,000 KiB: stage oversize) and then count as delivered. A
 * batch is acknowledged exactly once, after every selected line of it was
 * accepted or dead-lettered. On stop, what cannot be sent by the deadline
 * stays unacknowledged (it is read again after a restart).
 *
 * The same sink, without a dead-letter writer, forwards dead-letter
 * entries to [deadletter] delivery_stream (best effort: the local
 * dead-letter file is the durable copy).
 */
#include <stdint.h>

#include "rarewatch/aws.h"
#include "rarewatch/deadletter.h"
#include "rarewatch/firehose_pack.h"
#include "rarewatch/sink.h"

struct sink_firehose_options {
    const char *name;              /* sink name for logs and metrics; default "firehose" */
    struct aws_settings *aws;
    const char *delivery_stream;   /* main stream; NULL: none */
    const char *anomalies_stream;  /* anomalies only; NULL: none */
    enum fh_forward forward;       /* what goes to the main stream */
    bool pack;
    size_t pack_size;
    uint64_t flush_interval_usec;
    unsigned max_retries;          /* re-sends of failed entries */
    uint64_t retry_timeout_usec;   /* how long to retry a failing request; 0: forever */
    struct deadletter *deadletter; /* NULL: given-up records are dropped (counted) */
    struct rw_sink *metrics;       /* a CloudWatch sink for latencies, or NULL */
    struct fh_limits limits;       /* zero: the service limits (tests lower them) */
};

int sink_firehose_new(const struct sink_firehose_options *o, struct rw_sink **out);

/* Install on d so every dead-letter entry written is also sent to the
 * Firehose sink s (built with deadletter = NULL). Bounded: when s is far
 * behind, entries are dropped from the forwarding (counted as errors). */
void sink_firehose_tap_deadletter(struct rw_sink *s, struct deadletter *d);
