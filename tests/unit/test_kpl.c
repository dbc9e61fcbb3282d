/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The encoder here is written by hand from the format document, not with
 * protobuf-c, so a misreading shared by kpl.c and the generated code would
 * still show up as a failed round trip.
 */
#include <openssl/evp.h>
#include <pthread.h>

#include "rarewatch/buf.h"
#include "rarewatch/kpl.h"
#include "tap.h"

/* ---- encoder -------------------------------------------------------------- */

static void put_varint(struct buf *b, uint64_t v)
{
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        if (v)
            byte |= 0x80;
        CHECK_INT(buf_putc(b, (char)byte), 0);
    } while (v);
}

static void put_key(struct buf *b, uint32_t field, unsigned wire_type)
{
    put_varint(b, (uint64_t)field << 3 | wire_type);
}

static void put_uint(struct buf *b, uint32_t field, uint64_t v)
{
    put_key(b, field, 0);
    put_varint(b, v);
}

static void put_bytes(struct buf *b, uint32_t field, const void *p, size_t n)
{
    put_key(b, field, 2);
    put_varint(b, n);
    CHECK_INT(buf_append(b, p, n), 0);
}

static void put_str(struct buf *b, uint32_t field, const char *s)
{
    put_bytes(b, field, s, strlen(s));
}

/* magic | msg | md5(msg) */
static void wrap(struct buf *out, const void *msg, size_t n)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    buf_reset(out);
    CHECK_INT(buf_append(out, kpl_magic, KPL_MAGIC_LEN), 0);
    CHECK_INT(buf_append(out, msg, n), 0);
    CHECK_INT(EVP_Digest(msg, n, md, &md_len, EVP_md5(), NULL), 1);
    CHECK_INT(md_len, KPL_DIGEST_LEN);
    CHECK_INT(buf_append(out, md, md_len), 0);
}

struct sub {
    const char *pk;
    const char *ehk; /* NULL: none */
    const char *data;
    const char *tag_key; /* NULL: no tag */
    const char *tag_value; /* NULL: tag without value */
};

static size_t intern(const char **table, size_t *n, const char *s)
{
    for (size_t i = 0; i < *n; i++)
        if (streq(table[i], s))
            return i;
    table[*n] = s;
    return (*n)++;
}

/* An aggregate as the KPL builds it: keys deduplicated into tables. */
static void build(struct buf *out, const struct sub *subs, size_t n)
{
    _cleanup_free_ const char **pks = calloc(n + 1, sizeof(*pks));
    _cleanup_free_ const char **ehks = calloc(n + 1, sizeof(*ehks));
    _cleanup_free_ size_t *pk_idx = calloc(n + 1, sizeof(*pk_idx));
    _cleanup_free_ size_t *ehk_idx = calloc(n + 1, sizeof(*ehk_idx));
    size_t npk = 0, nehk = 0;
    _cleanup_buf_ struct buf msg = BUF_INIT, rec = BUF_INIT, tag = BUF_INIT;

    if (!pks || !ehks || !pk_idx || !ehk_idx) {
        TAP_FAIL_("out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        pk_idx[i] = intern(pks, &npk, subs[i].pk);
        ehk_idx[i] = subs[i].ehk ? intern(ehks, &nehk, subs[i].ehk) : SIZE_MAX;
    }
    for (size_t i = 0; i < npk; i++)
        put_str(&msg, 1, pks[i]);
    for (size_t i = 0; i < nehk; i++)
        put_str(&msg, 2, ehks[i]);
    for (size_t i = 0; i < n; i++) {
        buf_reset(&rec);
        put_uint(&rec, 1, pk_idx[i]);
        if (ehk_idx[i] != SIZE_MAX)
            put_uint(&rec, 2, ehk_idx[i]);
        put_str(&rec, 3, subs[i].data);
        if (subs[i].tag_key) {
            buf_reset(&tag);
            put_str(&tag, 1, subs[i].tag_key);
            if (subs[i].tag_value)
                put_str(&tag, 2, subs[i].tag_value);
            put_bytes(&rec, 4, tag.data, tag.len);
        }
        put_bytes(&msg, 3, rec.data, rec.len);
    }
    wrap(out, msg.data, msg.len);
}

static bool slice_is(struct kpl_slice s, const char *want)
{
    return s.ptr && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static int deagg(const struct buf *in, struct arena *a, struct kpl_aggregate *out,
                 struct kpl_error *err)
{
    return kpl_deaggregate((const uint8_t *)in->data, in->len, a, out, err);
}

static void check_round_trip(const struct sub *subs, size_t n)
{
    _cleanup_buf_ struct buf in = BUF_INIT;
    struct arena a = ARENA_INIT;
    struct kpl_aggregate agg;
    struct kpl_error err;

    build(&in, subs, n);
    CHECK(kpl_is_aggregated((const uint8_t *)in.data, in.len));
    CHECK_INT(deagg(&in, &a, &agg, &err), 1);
    CHECK_STR(err.reason, "");
    CHECK_UINT(agg.n, n);
    for (size_t i = 0; i < agg.n && i < n; i++) {
        const struct kpl_record *r = &agg.records[i];
        CHECK_UINT(r->index, i);
        if (!slice_is(r->partition_key, subs[i].pk))
            TAP_FAIL_("record %zu: partition key differs", i);
        if (!slice_is(r->data, subs[i].data))
            TAP_FAIL_("record %zu: data differs", i);
        if (subs[i].ehk ? !slice_is(r->explicit_hash_key, subs[i].ehk)
                        : r->explicit_hash_key.ptr != NULL)
            TAP_FAIL_("record %zu: explicit hash key differs", i);
        if (subs[i].tag_key) {
            CHECK_UINT(r->n_tags, 1);
            if (r->n_tags == 1) {
                CHECK(slice_is(r->tags[0].key, subs[i].tag_key));
                if (subs[i].tag_value)
                    CHECK(slice_is(r->tags[0].value, subs[i].tag_value));
                else
                    CHECK(r->tags[0].value.ptr == NULL);
            }
        } else
            CHECK_UINT(r->n_tags, 0);
    }
    arena_free(&a);
}

/* Wraps a hand-made protobuf message and expects a failure with `reason`. */
static void check_rejects(const struct buf *msg, int want_r, const char *want_reason)
{
    _cleanup_buf_ struct buf in = BUF_INIT;
    struct arena a = ARENA_INIT;
    struct kpl_aggregate agg = { (struct kpl_record *)1, 99 };
    struct kpl_error err;

    wrap(&in, msg->data, msg->len);
    CHECK_INT(deagg(&in, &a, &agg, &err), want_r);
    CHECK_STR(err.reason, want_reason);
    CHECK(agg.records == NULL);
    CHECK_UINT(agg.n, 0);
    arena_free(&a);
}

/* ---- plain records -------------------------------------------------------- */

TEST(plain_record_without_magic_is_not_aggregated)
{
    static const char plain[] = "{\"event\":\"login\",\"user\":42} padding to exceed twenty bytes";
    struct arena a = ARENA_INIT;
    struct kpl_aggregate agg = { (struct kpl_record *)1, 99 };
    struct kpl_error err;

    CHECK(!kpl_is_aggregated((const uint8_t *)plain, sizeof(plain) - 1));
    CHECK_INT(kpl_deaggregate((const uint8_t *)plain, sizeof(plain) - 1, &a, &agg, &err), 0);
    CHECK(agg.records == NULL);
    CHECK_UINT(agg.n, 0);
    CHECK_INT(kpl_deaggregate(NULL, 0, &a, &agg, &err), 0);
    CHECK(a.head == NULL);
}

TEST(magic_not_longer_than_magic_plus_digest_is_not_aggregated)
{
    uint8_t rec[KPL_MAGIC_LEN + KPL_DIGEST_LEN + 1];
    struct arena a = ARENA_INIT;
    struct kpl_aggregate agg;
    struct kpl_error err;

    memcpy(rec, kpl_magic, KPL_MAGIC_LEN);
    memset(rec + KPL_MAGIC_LEN, 0xAB, sizeof(rec) - KPL_MAGIC_LEN);
    for (size_t len = 0; len < sizeof(rec); len++) {
        CHECK(!kpl_is_aggregated(rec, len));
        CHECK_INT(kpl_deaggregate(rec, len, &a, &agg, &err), 0);
    }
    /* One byte more and it is an aggregate, with a wrong digest. */
    CHECK(kpl_is_aggregated(rec, sizeof(rec)));
    CHECK_INT(kpl_deaggregate(rec, sizeof(rec), &a, &agg, &err), -EBADMSG);
    CHECK_STR(err.reason, "md5 mismatch");
    arena_free(&a);
}

TEST(magic_and_digest_of_the_empty_message_is_a_plain_record)
{
    _cleanup_buf_ struct buf in = BUF_INIT;
    struct arena a = ARENA_INIT;
    struct kpl_aggregate agg;
    struct kpl_error err;

    wrap(&in, "", 0);
    CHECK_UINT(in.len, KPL_MAGIC_LEN + KPL_DIGEST_LEN);
    CHECK_INT(deagg(&in, &a, &agg, &err), 0);
    CHECK(a.head == NULL);
    arena_free(&a);
}

/* ---- round trips ---------------------------------------------------------- */

TEST(round_trip_one_record)
{
    const struct sub subs[] = { { "pk-1", NULL, "hello world", NULL, NULL } };
    check_round_trip(subs, ELEMENTSOF(subs));
}

TEST(round_trip_two_records_distinct_keys_and_explicit_hash_key)
{
    const struct sub subs[] = {
        { "alpha", NULL, "first", NULL, NULL },
        { "beta", "170141183460469231731687303715884105728", "second", "k", "v" },
    };
    check_round_trip(subs, ELEMENTSOF(subs));
}

TEST(round_trip_500_records_shared_keys_hash_keys_and_tags)
{
    enum { N = 500 };
    static char data[N][32];
    static const char *const pks[] = { "p0", "p1", "p2", "p3", "p4", "p5", "p6" };
    static const char *const ehks[] = { "0", "85070591730234615865843651857942052864" };
    struct sub subs[N];

    for (size_t i = 0; i < N; i++) {
        snprintf(data[i], sizeof(data[i]), "payload-%zu", i);
        subs[i] = (struct sub){
            .pk = pks[i % ELEMENTSOF(pks)],
            .ehk = i % 3 == 0 ? ehks[i % 2] : NULL,
            .data = data[i],
            .tag_key = i % 5 == 0 ? "source" : NULL,
            .tag_value = i % 10 == 0 ? "unit" : NULL,
        };
    }
    check_round_trip(subs, N);
}

TEST(round_trip_empty_data_and_empty_partition_key)
{
    const struct sub subs[] = {
        { "", NULL, "", NULL, NULL },
        { "k", "", "x", "", "" },
    };
    _cleanup_buf_ struct buf in = BUF_INIT;
    struct arena a = ARENA_INIT;
    struct kpl_aggregate agg;
    struct kpl_error err;

    check_round_trip(subs, ELEMENTSOF(subs));
    /* Present-but-empty must stay distinguishable from absent. */
    build(&in, subs, ELEMENTSOF(subs));
    CHECK_INT(deagg(&in, &a, &agg, &err), 1);
    CHECK_UINT(agg.n, 2);
    if (agg.n == 2) {
        CHECK(agg.records[0].data.ptr != NULL);
        CHECK_UINT(agg.records[0].data.len, 0);
        CHECK(agg.records[0].partition_key.ptr != NULL);
        CHECK(agg.records[0].explicit_hash_key.ptr == NULL);
        CHECK(agg.records[1].explicit_hash_key.ptr != NULL);
        CHECK_UINT(agg.records[1].explicit_hash_key.len, 0);
        CHECK(agg.records[1].tags[0].value.ptr != NULL);
    }
    arena_free(&a);
}

TEST(empty_records_list_is_an_aggregate_of_zero)
{
    _cleanup_buf_ struct buf msg = BUF_INIT, in = BUF_INIT;
    struct arena a = ARENA_INIT;
    struct kpl_aggregate agg;
    struct kpl_error err;

    put_str(&msg, 1, "unused-key");
    wrap(&in, msg.data, msg.len);
    CHECK_INT(deagg(&in, &a, &agg, &err), 1);
    CHECK_UINT(agg.n, 0);
    CHECK(agg.records == NULL);
    arena_free(&a);
}

TEST(keys_and_data_are_binary_safe)
{
    static const char pk[] = { 'a', 0, 'b' };
    static const uint8_t payload[] = { 0, 0xff, 0, 0x80, 0xF3, 0x89, 0x9A, 0xC2 };
    _cleanup_buf_ struct buf msg = BUF_INIT, rec = BUF_INIT, in = BUF_INIT;
    struct arena a = ARENA_INIT;
    struct kpl_aggregate agg;
    struct kpl_error err;

    put_bytes(&msg, 1, pk, sizeof(pk));
    put_uint(&rec, 1, 0);
    put_bytes(&rec, 3, payload, sizeof(payload));
    put_bytes(&msg, 3, rec.data, rec.len);
    wrap(&in, msg.data, msg.len);
    CHECK_INT(deagg(&in, &a, &agg, &err), 1);
    CHECK_UINT(agg.n, 1);
    if (agg.n == 1) {
        CHECK_UINT(agg.records[0].partition_key.len, sizeof(pk));
        CHECK(memcmp(agg.records[0].partition_key.ptr, pk, sizeof(pk)) == 0);
        CHECK_UINT(agg.records[0].data.len, sizeof(payload));
        CHECK(memcmp(agg.records[0].data.ptr, payload, sizeof(payload)) == 0);
    }
    arena_free(&a);
}

TEST(unknown_fields_are_skipped)
{
    _cleanup_buf_ struct buf msg = BUF_INIT, rec = BUF_INIT, in = BUF_INIT;
    struct arena a = ARENA_INIT;
    struct kpl_aggregate agg;
    struct kpl_error err;

    put_uint(&msg, 15, 12345);
    put_str(&msg, 1, "pk");
    put_key(&msg, 9, 5);
    CHECK_INT(buf_append(&msg, "\1\2\3\4", 4), 0);
    put_uint(&rec, 1, 0);
    put_key(&rec, 7, 1);
    CHECK_INT(buf_append(&rec, "12345678", 8), 0);
    put_str(&rec, 3, "d");
    put_str(&rec, 99, "future");
    put_bytes(&msg, 3, rec.data, rec.len);
    wrap(&in, msg.data, msg.len);
    CHECK_INT(deagg(&in, &a, &agg, &err), 1);
    CHECK_UINT(agg.n, 1);
    if (agg.n == 1) {
        CHECK(slice_is(agg.records[0].partition_key, "pk"));
        CHECK(slice_is(agg.records[0].data, "d"));
    }
    arena_free(&a);
}

/* ---- corruption ----------------------------------------------------------- */

TEST(md5_mismatch_in_digest_or_in_message)
{
    const struct sub subs[] = { { "pk", NULL, "data", NULL, NULL } };
    _cleanup_buf_ struct buf in = BUF_INIT;
    struct arena a = ARENA_INIT;
    struct kpl_aggregate agg;
    struct kpl_error err;

    build(&in, subs, 1);
    in.data[in.len - 1] ^= 1;
    CHECK_INT(deagg(&in, &a, &agg, &err), -EBADMSG);
    CHECK_STR(err.reason, "md5 mismatch");
    CHECK_UINT(agg.n, 0);

    build(&in, subs, 1);
    in.data[KPL_MAGIC_LEN + 3] ^= 0x20;
    CHECK_INT(deagg(&in, &a, &agg, &err), -EBADMSG);
    CHECK_STR(err.reason, "md5 mismatch");
    arena_free(&a);
}

TEST(truncated_record_fails_the_digest)
{
    const struct sub subs[] = { { "pk", NULL, "some data here", NULL, NULL } };
    _cleanup_buf_ struct buf in = BUF_INIT;
    struct arena a = ARENA_INIT;
    struct kpl_aggregate agg;
    struct kpl_error err;

    build(&in, subs, 1);
    CHECK_INT(kpl_deaggregate((const uint8_t *)in.data, in.len - 5, &a, &agg, &err), -EBADMSG);
    CHECK_STR(err.reason, "md5 mismatch");
    arena_free(&a);
}

TEST(truncated_protobuf_with_matching_digest)
{
    const struct sub subs[] = {
        { "pk", "1", "0123456789", "t", "v" },
        { "other", NULL, "abcdefghij", NULL, NULL },
    };
    _cleanup_buf_ struct buf full = BUF_INIT, msg = BUF_INIT;
    struct arena a = ARENA_INIT;

    build(&full, subs, ELEMENTSOF(subs));
    const char *m = full.data + KPL_MAGIC_LEN;
    size_t m_len = full.len - KPL_MAGIC_LEN - KPL_DIGEST_LEN;

    /* Cut in the middle of the last record's data. */
    buf_reset(&msg);
    CHECK_INT(buf_append(&msg, m, m_len - 3), 0);
    check_rejects(&msg, -EBADMSG, "truncated protobuf");

    /* Every prefix either ends on a field boundary (and decodes, or misses a
     * required field) or is reported as corrupt; none may crash or over-read,
     * which the sanitizer build checks. */
    unsigned truncated = 0;
    for (size_t cut = 1; cut < m_len; cut++) {
        _cleanup_buf_ struct buf in = BUF_INIT;
        struct kpl_aggregate agg;
        struct kpl_error err;
        wrap(&in, m, cut);
        int r = deagg(&in, &a, &agg, &err);
        CHECK(r == 1 || r == -EBADMSG);
        if (r == -EBADMSG && strstr(err.reason, "truncated protobuf"))
            truncated++;
        arena_reset(&a);
    }
    CHECK(truncated > m_len / 2);
    arena_free(&a);
}

TEST(partition_key_index_out_of_range)
{
    _cleanup_buf_ struct buf msg = BUF_INIT, rec = BUF_INIT;

    put_str(&msg, 1, "a");
    put_str(&msg, 1, "b");
    put_str(&msg, 1, "c");
    put_uint(&rec, 1, 7);
    put_str(&rec, 3, "x");
    put_bytes(&msg, 3, rec.data, rec.len);
    check_rejects(&msg, -EBADMSG, "record 0: partition_key_index 7 out of range (table has 3)");
}

TEST(partition_key_index_beyond_32_bits_is_not_truncated)
{
    _cleanup_buf_ struct buf msg = BUF_INIT, rec = BUF_INIT;

    put_str(&msg, 1, "a");
    put_uint(&rec, 1, UINT64_C(1) << 32);
    put_str(&rec, 3, "x");
    put_bytes(&msg, 3, rec.data, rec.len);
    check_rejects(&msg, -EBADMSG,
                  "record 0: partition_key_index 4294967296 out of range (table has 1)");
}

TEST(partition_key_index_into_empty_table)
{
    _cleanup_buf_ struct buf msg = BUF_INIT, rec = BUF_INIT;

    put_uint(&rec, 1, 0);
    put_str(&rec, 3, "x");
    put_bytes(&msg, 3, rec.data, rec.len);
    put_bytes(&msg, 3, rec.data, rec.len);
    check_rejects(&msg, -EBADMSG, "record 0: partition_key_index 0 out of range (table has 0)");
}

TEST(explicit_hash_key_index_out_of_range)
{
    _cleanup_buf_ struct buf msg = BUF_INIT, rec = BUF_INIT, ok = BUF_INIT;

    put_str(&msg, 1, "a");
    put_str(&msg, 2, "42");
    put_uint(&ok, 1, 0);
    put_uint(&ok, 2, 0);
    put_str(&ok, 3, "x");
    put_bytes(&msg, 3, ok.data, ok.len);
    put_uint(&rec, 1, 0);
    put_uint(&rec, 2, 1);
    put_str(&rec, 3, "y");
    put_bytes(&msg, 3, rec.data, rec.len);
    check_rejects(&msg, -EBADMSG, "record 1: explicit_hash_key_index 1 out of range (table has 1)");
}

TEST(missing_required_fields)
{
    _cleanup_buf_ struct buf msg = BUF_INIT, rec = BUF_INIT, tag = BUF_INIT;

    put_str(&msg, 1, "a");
    put_str(&rec, 3, "x");
    put_bytes(&msg, 3, rec.data, rec.len);
    check_rejects(&msg, -EBADMSG, "record 0: missing partition_key_index");

    buf_reset(&msg);
    buf_reset(&rec);
    put_str(&msg, 1, "a");
    put_uint(&rec, 1, 0);
    put_bytes(&msg, 3, rec.data, rec.len);
    check_rejects(&msg, -EBADMSG, "record 0: missing data");

    buf_reset(&msg);
    buf_reset(&rec);
    put_str(&msg, 1, "a");
    put_uint(&rec, 1, 0);
    put_str(&rec, 3, "x");
    put_str(&tag, 2, "value-without-key");
    put_bytes(&rec, 4, tag.data, tag.len);
    put_bytes(&msg, 3, rec.data, rec.len);
    check_rejects(&msg, -EBADMSG, "record 0 tag 0: missing key");
}

TEST(wrong_wire_types_and_malformed_varints)
{
    _cleanup_buf_ struct buf msg = BUF_INIT, rec = BUF_INIT;

    put_uint(&msg, 1, 5); /* partition_key_table as a varint */
    check_rejects(&msg, -EBADMSG, "field 1 has wire type 0");

    buf_reset(&msg);
    put_str(&msg, 1, "a");
    put_str(&rec, 1, "0"); /* partition_key_index as bytes */
    put_str(&rec, 3, "x");
    put_bytes(&msg, 3, rec.data, rec.len);
    check_rejects(&msg, -EBADMSG, "record 0: field 1 has wire type 2");

    buf_reset(&msg);
    put_key(&msg, 4, 3); /* start group */
    check_rejects(&msg, -EBADMSG, "unsupported wire type");

    buf_reset(&msg);
    put_key(&msg, 15, 0);
    CHECK_INT(buf_append(&msg, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10), 0);
    check_rejects(&msg, -EBADMSG, "malformed varint");

    buf_reset(&msg);
    CHECK_INT(buf_append(&msg, "\x02\x00", 2), 0); /* field number 0 */
    check_rejects(&msg, -EBADMSG, "invalid field number");

    buf_reset(&msg);
    put_key(&msg, 1, 2);
    CHECK_INT(buf_append(&msg, "\xff\xff\xff\xff\x1f", 5), 0); /* length > 2^32 */
    check_rejects(&msg, -EBADMSG, "malformed varint");
}

TEST(too_many_records)
{
    _cleanup_buf_ struct buf msg = BUF_INIT, rec = BUF_INIT;

    put_str(&msg, 1, "a");
    put_uint(&rec, 1, 0);
    put_str(&rec, 3, "");
    CHECK_INT(buf_reserve(&msg, (KPL_MAX_RECORDS + 1) * (rec.len + 2)), 0);
    for (uint32_t i = 0; i <= KPL_MAX_RECORDS; i++)
        put_bytes(&msg, 3, rec.data, rec.len);
    check_rejects(&msg, -E2BIG, "more than 262144 records");
}

TEST(max_records_and_tags_of_smallest_size_fit_the_scratch_budget)
{
    /* The most protobuf-c structs a legitimate aggregate can ask for. */
    _cleanup_buf_ struct buf msg = BUF_INIT, rec = BUF_INIT, tag = BUF_INIT, in = BUF_INIT;
    struct arena a = ARENA_INIT;
    struct kpl_aggregate agg;
    struct kpl_error err;

    put_str(&msg, 1, "a");
    put_uint(&rec, 1, 0);
    put_str(&rec, 3, "");
    put_str(&tag, 1, "");
    put_bytes(&rec, 4, tag.data, tag.len);
    for (uint32_t i = 0; i < KPL_MAX_RECORDS; i++)
        put_bytes(&msg, 3, rec.data, rec.len);
    wrap(&in, msg.data, msg.len);
    CHECK_INT(deagg(&in, &a, &agg, &err), 1);
    CHECK_STR(err.reason, "");
    CHECK_UINT(agg.n, KPL_MAX_RECORDS);
    if (agg.n == KPL_MAX_RECORDS) {
        CHECK_UINT(agg.records[KPL_MAX_RECORDS - 1].index, KPL_MAX_RECORDS - 1);
        CHECK_UINT(agg.records[KPL_MAX_RECORDS - 1].n_tags, 1);
    }
    arena_free(&a);
}

/* ---- memory --------------------------------------------------------------- */

TEST(hostile_unknown_fields_hit_the_scratch_cap)
{
    /* Well-formed, so the scan lets it through, but each 2-byte unknown field
     * costs protobuf-c ~40 bytes: 4 MB of them would decode into ~160 MiB. */
    _cleanup_buf_ struct buf msg = BUF_INIT, rec = BUF_INIT;

    put_str(&msg, 1, "a");
    CHECK_INT(buf_reserve(&msg, 4000000), 0);
    for (int i = 0; i < 2000000; i++)
        put_uint(&msg, 9, 0);
    put_uint(&rec, 1, 0);
    put_str(&rec, 3, "x");
    put_bytes(&msg, 3, rec.data, rec.len);
    check_rejects(&msg, -E2BIG, "aggregate needs more than 134217728 bytes of scratch to decode");
}

TEST(steady_state_reuses_the_arena_block)
{
    const struct sub subs[] = {
        { "a", NULL, "one", "t", "v" },
        { "b", "7", "two", NULL, NULL },
        { "a", NULL, "three", NULL, NULL },
    };
    _cleanup_buf_ struct buf in = BUF_INIT;
    struct arena a = ARENA_INIT;
    struct kpl_aggregate agg;
    struct kpl_error err;

    build(&in, subs, ELEMENTSOF(subs));
    CHECK_INT(deagg(&in, &a, &agg, &err), 1);
    arena_reset(&a);
    const void *block = a.head;
    size_t block_size = a.block_size;
    for (int round = 0; round < 100; round++) {
        CHECK_INT(deagg(&in, &a, &agg, &err), 1);
        CHECK_UINT(agg.n, 3);
        arena_reset(&a);
        if (a.head != block || a.block_size != block_size) {
            TAP_FAIL_("round %d allocated a new arena block", round);
            break;
        }
    }
    arena_free(&a);
}

struct thread_job {
    const struct buf *in;
    unsigned ok;
};

static void *deagg_thread(void *arg)
{
    struct thread_job *job = arg;
    struct arena a = ARENA_INIT;
    struct kpl_aggregate agg;
    struct kpl_error err;

    for (int i = 0; i < 200; i++) {
        if (deagg(job->in, &a, &agg, &err) == 1 && agg.n == 3 &&
            slice_is(agg.records[2].data, "three"))
            job->ok++;
        arena_reset(&a);
    }
    arena_free(&a);
    return NULL;
}

TEST(concurrent_threads_each_get_their_own_digest_context)
{
    const struct sub subs[] = {
        { "a", NULL, "one", NULL, NULL },
        { "b", NULL, "two", NULL, NULL },
        { "c", NULL, "three", NULL, NULL },
    };
    _cleanup_buf_ struct buf in = BUF_INIT;
    pthread_t th[4];
    struct thread_job jobs[4];

    build(&in, subs, ELEMENTSOF(subs));
    for (size_t i = 0; i < ELEMENTSOF(th); i++) {
        jobs[i] = (struct thread_job){ &in, 0 };
        CHECK_INT(pthread_create(&th[i], NULL, deagg_thread, &jobs[i]), 0);
    }
    for (size_t i = 0; i < ELEMENTSOF(th); i++) {
        CHECK_INT(pthread_join(th[i], NULL), 0);
        CHECK_UINT(jobs[i].ok, 200);
    }
}

TAP_MAIN
