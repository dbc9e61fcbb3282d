/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The sink interface. A shard worker turns one GetRecords response into one
 * batch (NDJSON lines + the position after it) and hands it to every
 * enabled sink. A sink acknowledges the batch once its destination accepted
 * every line (or it dead-lettered what it gave up on): only when all sinks
 * acknowledged may the worker checkpoint past the batch.
 *
 * Ownership: a batch is reference counted. The worker holds one reference;
 * rw_sink_submit() takes one per sink, which the sink drops after
 * rw_batch_ack(). So a worker that stops at its deadline can drop its
 * reference while a slow sink still holds the batch.
 *
 * Queued sinks (rw_queued_sink_*) run one thread that takes every batch
 * queued so far and hands them to the sink's flush function at once, so a
 * file sink pays one fsync for many batches (group commit).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "rarewatch/ckpt.h"
#include "rarewatch/record.h"

/* Where a worker waits for its batches to complete. */
struct rw_ack_queue {
    pthread_mutex_t lock;
    pthread_cond_t cond;
};
void rw_ack_queue_init(struct rw_ack_queue *q);
void rw_ack_queue_destroy(struct rw_ack_queue *q);

struct rw_batch {
    _Atomic int refs;
    _Atomic int pending;     /* sinks that have not acknowledged */
    _Atomic bool done;
    struct rw_ack_queue *acks;
    uint64_t id;             /* order within the shard */
    struct rw_output out;    /* the lines (owned) */
    struct checkpoint position; /* safe to checkpoint once done */
    bool has_position;
    char shard_id[64];
    double min_arrival;      /* epoch seconds; for DeliveryLatency */
    uint64_t records_in;     /* Kinesis records the batch came from */
    struct rw_batch *next;   /* the owner's FIFO */
};

struct rw_batch *rw_batch_new(struct rw_ack_queue *acks);
struct rw_batch *rw_batch_ref(struct rw_batch *b);
struct rw_batch *rw_batch_unref(struct rw_batch *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct rw_batch *, rw_batch_unref)
/* Output buffers recycled by a batch's owner (the shard worker), so that a
 * response allocates only the batch itself in steady state, not its lines
 * grown again from empty (~2 KB per record). The owner holds a spare:
 * rw_batch_keep_output() moves b's output into an empty spare when the
 * caller's reference is the last one (no sink can still read the lines;
 * only the owner adds references), and is a no-op otherwise; call it just
 * before dropping that reference. rw_batch_use_output() gives a new batch
 * the spare, emptied. Free the spare with rw_output_free(). */
void rw_batch_keep_output(struct rw_batch *b, struct rw_output *spare);
void rw_batch_use_output(struct rw_batch *b, struct rw_output *spare);
/* A sink is done with b (delivered or dead-lettered). Wakes the owner when
 * it was the last. Does not drop the sink's reference. */
void rw_batch_ack(struct rw_batch *b);

struct rw_sink_stats {
    _Atomic uint64_t batches, lines, bytes, retries, errors, deadlettered;
};

struct rw_sink;

struct rw_sink_ops {
    /* Take the batch (a reference is already held for the sink). */
    int (*submit)(struct rw_sink *s, struct rw_batch *b);
    /* Flush and stop by the deadline (monotonic usec). < 0 when not drained. */
    int (*stop)(struct rw_sink *s, uint64_t deadline);
    void (*free)(struct rw_sink *s);
};

struct rw_sink {
    char name[32];
    const struct rw_sink_ops *ops;
    void *impl;
    struct rw_sink_stats stats;
};

/* Hand b to every sink: pending = n, one reference each. With no sinks the
 * batch is done at once. */
int rw_sinks_submit(struct rw_sink **sinks, size_t n, struct rw_batch *b);
struct rw_sink *rw_sink_free(struct rw_sink *s);

/* A sink with a queue and one thread. flush() gets every batch queued so
 * far, in order, and acknowledges each (it may retry for as long as it
 * needs; stop() then waits for it up to the deadline). */
struct rw_queued_sink {
    struct rw_sink sink;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct rw_batch **q;
    size_t qn, qcap;
    bool stopping, started;
    int (*flush)(struct rw_queued_sink *qs, struct rw_batch **batches, size_t n);
    void (*idle)(struct rw_queued_sink *qs); /* called when the queue is empty (timers) */
    uint64_t idle_interval_usec;
};
int rw_queued_sink_start(struct rw_queued_sink *qs, const char *name,
                         int (*flush)(struct rw_queued_sink *, struct rw_batch **, size_t));
int rw_queued_sink_submit(struct rw_sink *s, struct rw_batch *b);
int rw_queued_sink_stop(struct rw_sink *s, uint64_t deadline);
/* True once stop() was called (a flush loop that retries should give up
 * by then and dead-letter). */
bool rw_queued_sink_stopping(struct rw_queued_sink *qs);
