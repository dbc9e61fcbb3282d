/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * De-aggregation of KPL (Kinesis Producer Library) aggregated records.
 *
 * An aggregated Kinesis record is
 *
 *     F3 89 9A C2 | protobuf AggregatedRecord | MD5(protobuf bytes), 16 bytes
 *
 * and carries many user records ("sub-records"), each with its own partition
 * key (an index into a key table), an optional explicit hash key and data.
 * Sub-record i gets sub-sequence number i.
 *
 * Pure: no I/O, no locks, no malloc of its own. Everything it returns lives
 * in the caller's arena and stays valid until the next arena_reset() or
 * arena_free(), so a shard worker that resets its arena per batch pays no
 * allocation in steady state.
 *
 * The input is hostile: lengths, counts and indices are all checked, record
 * and key counts are capped, and the scratch memory one call may take is
 * bounded by min(KPL_SCRATCH_FACTOR * len + KPL_SCRATCH_BASE, KPL_SCRATCH_MAX).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rarewatch/buf.h"

#define KPL_MAGIC_LEN 4
#define KPL_DIGEST_LEN 16
extern const uint8_t kpl_magic[KPL_MAGIC_LEN];

/* A 1 MiB aggregate of the smallest possible sub-records (6 bytes each) holds
 * about 175000; anything past these caps is not something a KPL produced. */
#define KPL_MAX_RECORDS (UINT32_C(1) << 18)
#define KPL_MAX_KEYS (UINT32_C(1) << 18)
#define KPL_MAX_TAGS (UINT32_C(1) << 18)
/* protobuf-c expands every field into a struct or array slot and its
 * temporaries are never given back to an arena, so decoding takes up to ~41
 * times the wire size for aggregates of tiny fields (measured: empty records,
 * empty tags, unknown fields). The factor leaves room above that; the cap
 * bounds what one hostile record can take whatever its size, and sits above
 * the largest legitimate need (KPL_MAX_RECORDS tiny records plus
 * KPL_MAX_TAGS tags, about 85 MiB). */
#define KPL_SCRATCH_FACTOR 64
#define KPL_SCRATCH_BASE (64 * 1024)
#define KPL_SCRATCH_MAX ((size_t)128 << 20)

/* A byte range. ptr is never NULL for a field that is present, even when len
 * is 0, so ptr == NULL means "absent" (used for explicit_hash_key and tag
 * values). Key tables are bytes on the wire: they are not NUL-terminated and
 * are not checked to be UTF-8. */
struct kpl_slice {
    const uint8_t *ptr;
    size_t len;
};

struct kpl_tag {
    struct kpl_slice key;
    struct kpl_slice value; /* ptr == NULL: no value */
};

struct kpl_record {
    uint32_t index;                   /* sub-sequence number, 0..n-1 */
    struct kpl_slice partition_key;
    struct kpl_slice explicit_hash_key; /* ptr == NULL: none given */
    struct kpl_slice data;
    const struct kpl_tag *tags;
    size_t n_tags;
};

struct kpl_aggregate {
    struct kpl_record *records;
    size_t n; /* may be 0: a valid aggregate with an empty records list */
};

/* Short, human, single-line: it goes into dead-letter entries as is. */
struct kpl_error {
    char reason[128];
};

/* True when data starts with the KPL magic and is longer than the magic and
 * the digest together. Says nothing about whether the rest is valid. */
bool kpl_is_aggregated(const uint8_t *data, size_t len) _pure_;

/*
 * Split one Kinesis record into its sub-records.
 *
 * Returns 0 when data is not an aggregate (no magic, or no longer than magic
 * plus digest): the caller delivers it as a plain record; *out is { NULL, 0 }.
 * Returns 1 when it is: *out holds out->n sub-records, allocated in scratch.
 * Returns a negative errno when it carries the magic but is corrupt, with
 * err->reason saying why ("md5 mismatch", "truncated protobuf",
 * "record 3: partition_key_index 7 out of range (table has 3)", ...):
 *   -EBADMSG  corrupt: digest, protobuf wire format, missing fields, indices
 *   -E2BIG    over the record/key/tag caps or the scratch budget
 *   -ENOMEM   the arena could not grow
 *   -EIO      OpenSSL failed to compute the digest
 * On failure *out is { NULL, 0 }; whatever was taken from scratch is reclaimed
 * by the caller's next arena_reset().
 *
 * Note the MD5 is checked before anything else is parsed: an aggregate with a
 * bad digest is rejected whole, even if its protobuf would decode. (The KCL
 * and the awslabs de-aggregation libraries instead pass such a record on as
 * a plain one; rarewatch dead-letters it so that corruption is visible.)
 */
int kpl_deaggregate(const uint8_t *data, size_t len, struct arena *scratch,
                    struct kpl_aggregate *out, struct kpl_error *err)
    _nonnull_(3, 4, 5) _warn_unused_result_;
