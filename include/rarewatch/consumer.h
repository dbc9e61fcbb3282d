/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The Kinesis consumer: a coordinator thread discovers shards (ListShards,
 * re-run every [kinesis] shard_discovery_interval and whenever a shard
 * ends) and runs one worker thread per owned shard. A worker polls
 * GetRecords within the per-shard limits, de-aggregates KPL records, runs
 * the analytics stage, hands each response's output to the sinks as one
 * batch, and checkpoints the highest position below which every batch was
 * acknowledged. Closed shards are read to their end and marked SHARD_END;
 * with parent_first a child starts only after all its parents ended.
 */
#include <stdint.h>

#include "rarewatch/aws.h"
#include "rarewatch/ckpt.h"
#include "rarewatch/deadletter.h"
#include "rarewatch/record.h"
#include "rarewatch/sink.h"

/* The analytics stage as the consumer sees it: one context per worker. */
struct consumer_stage {
    void *(*worker_new)(void *ud);
    void (*worker_free)(void *wctx);
    /* Turn n input records into output lines and dead-letter entries. */
    int (*process)(void *wctx, const struct rw_input_record *in, size_t n, struct rw_output *out);
    void *ud;
};

struct consumer_options {
    const char *stream; /* name or ARN */
    struct aws_settings *aws;
    struct ckpt_store *store;
    struct rw_sink **sinks;
    size_t n_sinks;
    struct deadletter *deadletter;
    struct consumer_stage stage;
};

struct consumer_stats {
    unsigned shards_running;
    uint64_t records_in;        /* Kinesis records (after de-aggregation) */
    uint64_t lines_out;
    uint64_t deadlettered;
    uint64_t get_records_calls;
    uint64_t throttled;
    int64_t max_millis_behind;  /* over running shards; -1 unknown */
};

struct consumer;

int consumer_new(const struct consumer_options *o, struct consumer **out);
int consumer_start(struct consumer *c);
/* Stop polling, let the batches in flight drain until deadline, write the
 * final checkpoints, join the threads. 0 when everything drained. */
int consumer_stop(struct consumer *c, uint64_t deadline_usec);
struct consumer *consumer_free(struct consumer *c);
struct consumer_stats consumer_get_stats(struct consumer *c);
/* "shardId-000000000001: 12 ms behind, ..." one line per running shard. */
void consumer_describe(struct consumer *c, struct buf *out);

/* Per-shard counters for the metrics sink; fn is called for every shard
 * that ran (records_in and deadlettered are totals since start). */
struct consumer_shard_stats {
    const char *shard_id;
    bool running;
    uint64_t records_in, deadlettered;
    int64_t millis_behind; /* -1 unknown */
};
void consumer_foreach_shard(struct consumer *c, void (*fn)(void *ud, const struct consumer_shard_stats *st),
                            void *ud);
