/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kpl_deaggregate() takes whatever a producer put into a Kinesis record.
 *
 * Besides "does not crash", each input checks the contract the shard worker
 * relies on: the return value is one of the documented ones, a failure always
 * carries a reason and an empty result, and every slice of a success lies in
 * memory that can be read in full (ASan reports it if not).
 *
 * A mutated input almost never keeps a valid MD5, so on its own the fuzzer
 * would stop at the digest check. Every aggregate-looking input is therefore
 * run twice: as is, and with its digest recomputed, which lets mutations reach
 * the protobuf decoding behind it.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>

#include "rarewatch/buf.h"
#include "rarewatch/kpl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

static void touch(struct kpl_slice s)
{
    uint8_t x = 0;
    for (size_t i = 0; i < s.len; i++)
        x ^= s.ptr[i];
    sink = x;
}

static void check(const uint8_t *data, size_t size, struct arena *scratch)
{
    struct kpl_aggregate agg;
    struct kpl_error err;

    int r = kpl_deaggregate(data, size, scratch, &agg, &err);
    switch (r) {
    case 0:
        if (kpl_is_aggregated(data, size) || agg.n || agg.records)
            abort();
        break;
    case 1:
        if (!kpl_is_aggregated(data, size) || (agg.n && !agg.records) || agg.n > KPL_MAX_RECORDS)
            abort();
        for (size_t i = 0; i < agg.n; i++) {
            const struct kpl_record *rec = &agg.records[i];
            if (rec->index != i || !rec->partition_key.ptr || !rec->data.ptr)
                abort();
            touch(rec->partition_key);
            touch(rec->explicit_hash_key);
            touch(rec->data);
            for (size_t j = 0; j < rec->n_tags; j++) {
                if (!rec->tags[j].key.ptr)
                    abort();
                touch(rec->tags[j].key);
                touch(rec->tags[j].value);
            }
        }
        break;
    case -EBADMSG:
    case -E2BIG:
    case -ENOMEM:
    case -EIO:
        if (!err.reason[0] || agg.n || agg.records ||
            memchr(err.reason, 0, sizeof(err.reason)) == NULL)
            abort();
        break;
    default:
        fprintf(stderr, "unexpected return %d\n", r);
        abort();
    }
    /* Reset per input, as a shard worker does per batch: a pointer kept
     * across inputs would read reused memory. */
    arena_reset(scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct arena scratch = ARENA_INIT;

    check(data, size, &scratch);
    if (!kpl_is_aggregated(data, size))
        return 0;

    /* Exact size, so ASan still sees any read past the end. */
    uint8_t *fixed = malloc(size);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    if (!fixed)
        abort();
    memcpy(fixed, data, size);
    size_t msg_len = size - KPL_MAGIC_LEN - KPL_DIGEST_LEN;
    if (EVP_Digest(fixed + KPL_MAGIC_LEN, msg_len, md, &md_len, EVP_md5(), NULL) != 1 ||
        md_len != KPL_DIGEST_LEN)
        abort();
    memcpy(fixed + KPL_MAGIC_LEN + msg_len, md, KPL_DIGEST_LEN);
    check(fixed, size, &scratch);
    free(fixed);
    return 0;
}
