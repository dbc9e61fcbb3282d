/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The dead-letter path: records that could not be processed or delivered
 * (malformed payloads, corrupt KPL aggregates, transform failures, records
 * a sink gave up on) are kept as NDJSON in [deadletter] directory, one line
 * per record: {"time", "stage", "component", "reason", "_kinesis": {...},
 * "data_base64": "<original bytes>"}. Written and fsynced before the batch
 * that produced them is acknowledged, so a dead-lettered record counts as
 * delivered and the checkpoint moves on.
 *
 * Bounded by [deadletter] max_size: when full, writes fail with -ENOSPC and
 * the caller stops consuming (and says so) rather than dropping anything.
 * Thread-safe: shard workers and sinks share one writer.
 */
#include <stdint.h>

#include "rarewatch/record.h"

struct deadletter;

int deadletter_new(const char *dir, uint64_t max_size, struct deadletter **out);
struct deadletter *deadletter_free(struct deadletter *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct deadletter *, deadletter_free)
void deadletter_set_max_size(struct deadletter *d, uint64_t max_size);

struct deadletter_item {
    const void *data; /* original bytes */
    size_t len;
    const struct rw_provenance *prov; /* may be NULL (derived records) */
    enum rw_stage stage;
    const char *component;
    const char *reason;
};

/* Append the items and fsync. 0, -ENOSPC when the directory is full (none
 * written), or another negative errno. */
int deadletter_write(struct deadletter *d, const struct deadletter_item *items, size_t n);
uint64_t deadletter_count(const struct deadletter *d);
/* Called (under the writer's lock, so keep it short) with the NDJSON lines
 * of every successful deadletter_write(): [deadletter] delivery_stream
 * forwards them to Firehose. fn NULL removes the tap. */
void deadletter_set_tap(struct deadletter *d, void (*fn)(void *ud, const char *lines, size_t len),
                        void *ud);
const char *deadletter_dir(const struct deadletter *d);
