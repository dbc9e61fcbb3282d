/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GetRecords bodies come from the network: the envelope scanner must never
 * crash or over-read, and what it accepts must be self-consistent: every
 * Data decodes to bytes whose canonical encoding is the original text, and
 * the counts match the arrays in the document, and a partition key or
 * sequence number flagged as needing no escape needs none. The one-pass
 * reading of the common shape (kinesis_records_parse) must give exactly
 * what the general parse gives. The raw input is also fed
 * to the base64 decoder and compared with an obvious reference decoder, and
 * every SIMD implementation with the scalar one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/base64.h"
#include "rarewatch/buf.h"
#include "rarewatch/kinesis_records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct kinesis_records kr, kr_fast;
static struct arena arena, arena_fast;
static bool ready;

/* The obvious decoder, for comparing verdicts and bytes with the fast one:
 * strict RFC 4648 with canonical padding bits. Returns -1 when invalid. */
static long ref_base64(const uint8_t *in, size_t n, uint8_t *out)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (n % 4)
        return -1;
    size_t pad = 0;
    if (n && in[n - 1] == '=')
        pad = (n >= 2 && in[n - 2] == '=') ? 2 : 1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        for (size_t j = 0; j < 4; j++) {
            bool padpos = i + j >= n - pad;
            const char *c = in[i + j] ? strchr(A, in[i + j]) : NULL;
            if (padpos ? in[i + j] != '=' : !c)
                return -1;
            v = v << 6 | (padpos ? 0 : (uint32_t)(c - A));
        }
        uint8_t b[3] = { (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
        size_t keep = i + 4 == n ? 3 - pad : 3;
        if (i + 4 == n && pad && (v & (pad == 1 ? 0xFF : 0xFFFF)))
            return -1;
        memcpy(out + o, b, keep);
        o += keep;
    }
    return (long)o;
}

/* Every implementation (scalar, AVX2 where the CPU has it) must give
 * the reference's verdict and bytes. */
static void check_decode(const uint8_t *in, size_t size)
{
    size_t room = size / 4 * 3 + 1;
    uint8_t *a = malloc(room), *b = malloc(room);
    if (!a || !b)
        abort();
    long blen = ref_base64(in, size, b);
    for (int impl = BASE64_SCALAR; impl <= BASE64_IMPL_LAST; impl++) {
        if (!(base64_impls() >> impl & 1))
            continue;
        size_t alen = 0;
        int r = base64_decode_impl((enum base64_impl)impl, (const char *)in, size, a, &alen);
        if ((r == 0) != (blen >= 0) || (r == 0 && ((size_t)blen != alen || memcmp(a, b, alen) != 0)))
            abort();
    }
    size_t alen = 0;
    int r = base64_decode((const char *)in, size, a, &alen);
    if ((r == 0) != (blen >= 0) || (r == 0 && ((size_t)blen != alen || memcmp(a, b, alen) != 0)))
        abort();
    free(a);
    free(b);
}

static void check_base64(const uint8_t *data, size_t size)
{
    /* The raw input is rarely valid base64 past the first block, so the
     * input is also encoded (every implementation must write the scalar
     * one's text), and that text decoded as is and with one byte replaced
     * (where and by what: the input's first bytes). */
    check_decode(data, size);
    size_t n = base64_encoded_len(size);
    char *ref = malloc(n + 1), *enc = malloc(n + 1);
    if (!ref || !enc)
        abort();
    if (base64_encode_impl(BASE64_SCALAR, data, size, ref) != n)
        abort();
    for (int impl = BASE64_AVX2; impl <= BASE64_IMPL_LAST; impl++)
        if ((base64_impls() >> impl & 1) &&
            (base64_encode_impl((enum base64_impl)impl, data, size, enc) != n || memcmp(enc, ref, n) != 0))
            abort();
    check_decode((const uint8_t *)ref, n);
    if (size >= 4 && n) {
        size_t pos = ((size_t)data[0] << 8 | data[1]) % n;
        ref[pos] = (char)data[2];
        check_decode((const uint8_t *)ref, n);
    }
    free(ref);
    free(enc);
}

static size_t count(const struct json_doc *d, uint32_t c)
{
    size_t n = 0;
    for (uint32_t i = json_first_child(d, c); i != JSON_NONE; i = json_next_sibling(d, c, i))
        n++;
    return n;
}

/* Does buf_put_json_string write s as it is, between quotes? Into an empty
 * buffer: with no room reserved it skips its plain-copy shortcut and takes
 * the byte-wise escaping path, so this is not the flag's own check. */
static bool escapes_to_itself(const struct rw_str *s)
{
    struct buf b = BUF_INIT;
    bool same = buf_put_json_string(&b, s->p, s->len) == 0 && b.len == s->len + 2 &&
                memcmp(b.data + 1, s->p, s->len) == 0;
    buf_free(&b);
    return same;
}

static bool same_str(struct rw_str a, struct rw_str b)
{
    return !a.p == !b.p && a.len == b.len && (!a.len || memcmp(a.p, b.p, a.len) == 0);
}

/* kinesis_records_parse reads the common shape in one pass and leaves the
 * rest to the general parse: whatever it returns must be exactly what the
 * general parse returns. */
static void check_same(int r_fast, int r)
{
    if (r_fast != r)
        abort();
    if (r != 0)
        return;
    if (kr_fast.n_records != kr.n_records || kr_fast.n_child_shards != kr.n_child_shards ||
        !same_str(kr_fast.next_shard_iterator, kr.next_shard_iterator) ||
        kr_fast.millis_behind_latest != kr.millis_behind_latest)
        abort();
    for (size_t i = 0; i < kr.n_records; i++) {
        const struct kinesis_record *a = &kr_fast.records[i], *b = &kr.records[i];
        if (a->data_len != b->data_len || memcmp(a->data, b->data, a->data_len + 1) != 0 ||
            !same_str(a->partition_key, b->partition_key) || !same_str(a->sequence_number, b->sequence_number) ||
            a->partition_key_plain != b->partition_key_plain ||
            a->sequence_number_plain != b->sequence_number_plain ||
            !same_str(a->encryption_type, b->encryption_type) ||
            !same_str(a->explicit_hash_key, b->explicit_hash_key) ||
            !(a->arrival == b->arrival || (isnan(a->arrival) && isnan(b->arrival))))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready) {
        kinesis_records_init(&kr);
        kinesis_records_init(&kr_fast);
        ready = true;
    }
    check_base64(data, size);
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = 0;
    int r_fast = kinesis_records_parse(&kr_fast, s, size, &arena_fast);
    int r = kinesis_records_parse_general(&kr, s, size, &arena);
    if (r != 0 && r != -EINVAL && r != -EBADMSG)
        abort();
    check_same(r_fast, r);
    if (r == 0) {
        struct json_doc *d = &kr.doc;
        uint32_t recs = json_obj_get(d, 0, "Records", 7);
        if (recs == JSON_NONE || count(d, recs) != kr.n_records)
            abort();
        struct buf b = BUF_INIT;
        size_t i = 0;
        for (uint32_t e = json_first_child(d, recs); e != JSON_NONE; e = json_next_sibling(d, recs, e), i++) {
            const struct kinesis_record *rec = &kr.records[i];
            if (rec->data[rec->data_len] != 0 || !rec->partition_key.p || !rec->sequence_number.p)
                abort();
            /* A field flagged plain is copied to the output unescaped: the
             * escaping writer must leave it unchanged too. */
            if ((rec->partition_key_plain && !escapes_to_itself(&rec->partition_key)) ||
                (rec->sequence_number_plain && !escapes_to_itself(&rec->sequence_number)))
                abort();
            uint32_t dn = json_obj_get(d, e, "Data", 4);
            if (dn == JSON_NONE)
                abort();
            buf_reset(&b);
            if (buf_put_base64(&b, rec->data, rec->data_len) < 0)
                abort();
            struct rw_str text;
            if (json_get_string(&kr.doc, dn, &text) < 0 || b.len != text.len || memcmp(b.data, text.p, b.len) != 0)
                abort();
        }
        buf_free(&b);
        for (size_t c = 0; c < kr.n_child_shards; c++)
            for (uint32_t p = 0; p < kr.child_shards[c].n_parent_shards; p++)
                if (!kr.child_shards[c].parent_shards[p].p)
                    abort();
    }
    arena_reset(&arena);
    arena_reset(&arena_fast);
    free(s);
    return 0;
}
