/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The checkpoint/lease store: where each shard's position lives, and (for
 * stores that coordinate several instances) who owns which shard.
 *
 * At-least-once rule: a worker saves a position only after every sink
 * accepted (or dead-lettered) everything derived from records up to it.
 * After a crash, records past the saved position are read again: the
 * duplicates are bounded by the unacknowledged window.
 *
 * Backends: file (one JSON file per shard, written atomically: temp file,
 * fsync, rename, fsync of the directory) and DynamoDB (KCL-compatible lease
 * rows, where ownership is a conditional write).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rarewatch/macro.h"

enum ckpt_state {
    CKPT_NONE = 0,      /* nothing saved: start from [kinesis] initial_position */
    CKPT_SEQUENCE,      /* resume after sequence/sub_sequence */
    CKPT_SHARD_END,     /* the shard was read to its end */
    CKPT_TRIM_HORIZON,  /* KCL sentinels, as found in lease rows */
    CKPT_LATEST,
    CKPT_AT_TIMESTAMP,
};

#define CKPT_SEQ_MAX 128

struct checkpoint {
    enum ckpt_state state;
    char sequence[CKPT_SEQ_MAX + 1];
    uint64_t sub_sequence;
};

/* A shard as ListShards describes it, for stores that keep a row per shard. */
struct ckpt_shard {
    const char *id;
    const char *parents[2];
    unsigned n_parents;
};

struct ckpt_store_ops {
    const char *name;
    /* Called by the coordinator about once a second with the current shard
     * list: create missing rows, renew held leases when due, take expired
     * ones and balance when due. May be NULL (nothing to coordinate). */
    int (*sync)(void *impl, const struct ckpt_shard *shards, size_t n);
    /* 0 with *cp filled, or -ENOENT when nothing is stored. */
    int (*load)(void *impl, const char *shard_id, struct checkpoint *cp);
    /* Durable when it returns 0. -ENOLCK: the lease was lost (do not retry;
     * stop the shard). parents may be NULL. */
    int (*save)(void *impl, const char *shard_id, const struct checkpoint *cp,
                char *const *parents);
    /* Does this instance own the shard now? (file store: always.) */
    bool (*owns)(void *impl, const char *shard_id);
    /* Give up ownership after the final checkpoint (graceful stop); a
     * no-op where this instance does not own the shard. */
    void (*release)(void *impl, const char *shard_id);
    void (*free)(void *impl);
};

struct ckpt_store {
    const struct ckpt_store_ops *ops;
    void *impl;
};

/* File backend in dir (created if missing). Caller owns the store. */
int ckpt_file_store_new(const char *dir, const char *stream, struct ckpt_store **out);

struct aws_settings;
struct ckpt_dynamodb_options {
    struct aws_settings *aws;      /* borrowed; outlives the store */
    const char *table;
    bool create_table;
    const char *worker_id;
    uint64_t renew_interval_usec;
    uint64_t failover_time_usec;
    uint64_t take_interval_usec;
    const char *initial_position;  /* "TRIM_HORIZON" | "LATEST" | "AT_TIMESTAMP" for new rows */
};

struct ckpt_dynamodb_stats {
    uint64_t reads, writes;        /* DynamoDB requests (Scan/GetItem, Put/UpdateItem) */
    uint64_t taken, stolen, lost, released;
    unsigned held;
};

/* DynamoDB backend: KCL-compatible lease rows. Creates (when asked) and
 * checks the table. */
int ckpt_dynamodb_store_new(const struct ckpt_dynamodb_options *o, struct ckpt_store **out);
struct ckpt_dynamodb_stats ckpt_dynamodb_get_stats(struct ckpt_store *s);
struct ckpt_store *ckpt_store_free(struct ckpt_store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct ckpt_store *, ckpt_store_free)

const char *ckpt_state_name(enum ckpt_state s);
/* Parse the JSON of a checkpoint file (also used by the fuzzer). */
int ckpt_parse(const char *text, size_t len, struct checkpoint *cp);
