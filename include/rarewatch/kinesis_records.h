/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The GetRecords response body, scanned in place:
 *
 *   { "Records": [ { "Data": "<base64>", "PartitionKey": "...",
 *                    "SequenceNumber": "...", "ApproximateArrivalTimestamp": 1.7e9,
 *                    "EncryptionType": "KMS"|"NONE", "ExplicitHashKey": "..." }, ... ],
 *     "NextShardIterator": "..." | null | absent (shard closed),
 *     "MillisBehindLatest": 0,
 *     "ChildShards": [ { "ShardId": "...", "ParentShards": ["..."],
 *                        "HashKeyRange": { "StartingHashKey": "...",
 *                                          "EndingHashKey": "..." } } ] }
 *
 * Unknown members are ignored (AWS adds fields). Records is required; every
 * record needs Data, PartitionKey and SequenceNumber.
 *
 * Storage: the arrays in struct kinesis_records are grow-only and reused by
 * the next parse; decoded Data and any escaped strings go into the caller's
 * per-batch arena. Strings that need no decoding point into the body. So
 * everything returned is valid until the caller resets the arena or frees
 * the body, and the next parse overwrites the arrays. Steady state: no
 * malloc per batch once the arrays and the arena have reached the batch
 * size.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rarewatch/buf.h"
#include "rarewatch/json_scan.h"
#include "rarewatch/value.h"

struct kinesis_record {
    /* Decoded payload; data[data_len] is '\0', so it can go to json_scan. */
    const char *data;
    size_t data_len;
    struct rw_str partition_key;
    struct rw_str sequence_number;
    /* The two above need no JSON escape (plain ASCII, no quote or backslash) */
    bool partition_key_plain, sequence_number_plain;
    struct rw_str encryption_type;   /* p == NULL when absent */
    struct rw_str explicit_hash_key; /* p == NULL when absent */
    double arrival;                  /* epoch seconds; NAN when absent */
};

struct kinesis_child_shard {
    struct rw_str shard_id;
    struct rw_str *parent_shards; /* in the arena */
    uint32_t n_parent_shards;
    struct rw_str starting_hash_key, ending_hash_key;
};

struct kinesis_records {
    struct kinesis_record *records;
    size_t n_records, records_cap;
    struct kinesis_child_shard *child_shards;
    size_t n_child_shards, child_shards_cap;
    /* p == NULL when absent or null: the shard is closed. */
    struct rw_str next_shard_iterator;
    int64_t millis_behind_latest; /* -1 when absent */
    /* The general parse's reused tape (not filled when the one-pass reader
     * took the body); err_msg / err_off after a failed parse. */
    struct json_doc doc;
};

void kinesis_records_init(struct kinesis_records *kr);
void kinesis_records_free(struct kinesis_records *kr);

/* Parse body[0..len) (body[len] must be '\0', as in struct buf) into kr,
 * decoding into arena (required; the caller resets it per batch). 0, or
 * -EINVAL (not JSON), -EBADMSG (JSON, but not a GetRecords response: wrong
 * types, a missing required member, bad base64), -ENOMEM, -E2BIG. On
 * -EINVAL/-EBADMSG kr->doc.err_msg says what (and, for -EINVAL, err_off
 * where); on any error kr holds no records. */
int kinesis_records_parse(struct kinesis_records *kr, const char *body, size_t len,
                          struct arena *arena);
/* The same without the one-pass reading of the common shape: every body
 * through the scanner's tape. For the tests, which hold the two equal. */
int kinesis_records_parse_general(struct kinesis_records *kr, const char *body, size_t len,
                                  struct arena *arena);
