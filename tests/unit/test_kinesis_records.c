/* SPDX-License-Identifier: Apache-2.0 */
#include <math.h>
#include <stdlib.h>

#include "rarewatch/base64.h"
#include "rarewatch/kinesis_records.h"
#include "rarewatch/record.h"
#include "tap.h"

static bool str_is(struct rw_str s, const char *want)
{
    return s.p && s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

static int parse(struct kinesis_records *kr, struct arena *a, const char *body)
{
    return kinesis_records_parse(kr, body, strlen(body), a);
}

TEST(full_response)
{
    struct kinesis_records kr;
    struct arena a = ARENA_INIT;
    kinesis_records_init(&kr);
    const char *body =
        "{\"Records\":[{\"SequenceNumber\":\"4959033827149025660855969253836157109592157598913658\","
        "\"ApproximateArrivalTimestamp\":1.700000000123E9,\"Data\":\"eyJhIjoxfQ==\","
        "\"PartitionKey\":\"pk-1\",\"EncryptionType\":\"NONE\",\"Future\":{\"x\":[1]}},"
        "{\"SequenceNumber\":\"2\",\"ApproximateArrivalTimestamp\":1700000001.5,\"Data\":\"\","
        "\"PartitionKey\":\"p\\u00e9\",\"EncryptionType\":\"KMS\",\"ExplicitHashKey\":\"123\"}],"
        "\"NextShardIterator\":\"AAAA+/==\",\"MillisBehindLatest\":2500}";
    CHECK_INT(parse(&kr, &a, body), 0);
    CHECK_UINT(kr.n_records, 2);
    CHECK(str_is(kr.next_shard_iterator, "AAAA+/=="));
    CHECK_INT(kr.millis_behind_latest, 2500);
    CHECK_UINT(kr.n_child_shards, 0);
    const struct kinesis_record *r0 = &kr.records[0], *r1 = &kr.records[1];
    CHECK_UINT(r0->data_len, 7);
    CHECK_STR(r0->data, "{\"a\":1}");
    CHECK(str_is(r0->partition_key, "pk-1"));
    CHECK(str_is(r0->sequence_number, "4959033827149025660855969253836157109592157598913658"));
    CHECK(str_is(r0->encryption_type, "NONE"));
    CHECK(r0->explicit_hash_key.p == NULL);
    CHECK(r0->arrival == 1700000000.123);
    CHECK_UINT(r1->data_len, 0);
    CHECK_STR(r1->data, "");
    CHECK(str_is(r1->partition_key, "p\xc3\xa9"));
    CHECK(str_is(r1->explicit_hash_key, "123"));
    CHECK(r1->arrival == 1700000001.5);

    /* Escapes inside Data are JSON's business, not base64's. */
    CHECK_INT(parse(&kr, &a, "{\"Records\":[{\"Data\":\"\\u0051UJD\\/w==\",\"PartitionKey\":\"a\","
                             "\"SequenceNumber\":\"1\"}]}"), 0);
    CHECK_UINT(kr.records[0].data_len, 4);
    CHECK(memcmp(kr.records[0].data, "ABC\xff", 4) == 0);
    kinesis_records_free(&kr);
    arena_free(&a);
}

/* The envelope's partition key and sequence number are copied into the
 * output's _kinesis unchecked when the parser found them plain: every key
 * that needs an escape (a quote, a backslash, a control character, any
 * non-ASCII byte; written escaped or raw in the envelope) must be flagged,
 * at every length the check handles differently, and still come out
 * escaped; a KPL sub-record's key (the consumer clears the flag) too. */
TEST(plain_flags_and_escaped_output)
{
    static const struct {
        const char *json; /* as in the envelope */
        bool plain;
        const char *out;   /* as in the output line */
    } keys[] = {
        { "", true, "\"\"" },
        { "a", true, "\"a\"" },
        { "abc", true, "\"abc\"" },
        { "pk-12", true, "\"pk-12\"" },
        { "0123456789abcdef0123", true, "\"0123456789abcdef0123\"" },
        { "a\\\"b", false, "\"a\\\"b\"" },
        { "\\\\", false, "\"\\\\\"" },
        { "key\\u0001", false, "\"key\\u0001\"" },
        { "k\\n", false, "\"k\\n\"" },
        { "\xc3\xa9", false, "\"\xc3\xa9\"" },
        { "p\\u00e9", false, "\"p\xc3\xa9\"" },
        { "abcdefg\xc3\xa9", false, "\"abcdefg\xc3\xa9\"" },
        { "0123456789abcdef01234\xe2\x82\xac", false, "\"0123456789abcdef01234\xe2\x82\xac\"" },
        { "0123456789abcdef0123456\\\"", false, "\"0123456789abcdef0123456\\\"\"" },
    };
    struct kinesis_records kr;
    struct arena a = ARENA_INIT;
    kinesis_records_init(&kr);
    for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"%s\",\"SequenceNumber\":\"%s\"}]}",
                 keys[i].json, keys[i].json);
        CHECK_INT(parse(&kr, &a, body), 0);
        const struct kinesis_record *r = &kr.records[0];
        CHECK(r->partition_key_plain == keys[i].plain);
        CHECK(r->sequence_number_plain == keys[i].plain);
        for (int kpl = 0; kpl < 2; kpl++) {
            struct rw_provenance p = {
                .sequence_number = r->sequence_number, .partition_key = r->partition_key,
                .sequence_number_plain = r->sequence_number_plain,
                .partition_key_plain = kpl ? false : r->partition_key_plain,
            };
            if (kpl) { /* as consumer.c: the sub-record's key, flag cleared */
                p.aggregated = true;
                p.partition_key = (struct rw_str){ r->partition_key.p, r->partition_key.len };
            }
            _cleanup_(buf_freep) struct buf b = BUF_INIT;
            CHECK_INT(rw_provenance_append_tail_json(&b, &p), 0);
            char want[512], got[512];
            snprintf(want, sizeof(want), ",\"sequence_number\":%s,\"sub_sequence_number\":0,\"partition_key\":%s,",
                     keys[i].out, keys[i].out);
            snprintf(got, sizeof(got), "%.*s", (int)strlen(want), b.data ? b.data : "");
            CHECK_STR(got, want);
        }
    }
    /* A duplicate member: the first counts, its flag too. */
    CHECK_INT(parse(&kr, &a, "{\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"a\\\"b\",\"PartitionKey\":\"c\","
                             "\"SequenceNumber\":\"1\",\"SequenceNumber\":\"\\u00e9\"}]}"), 0);
    CHECK(str_is(kr.records[0].partition_key, "a\"b"));
    CHECK(!kr.records[0].partition_key_plain);
    CHECK(str_is(kr.records[0].sequence_number, "1"));
    CHECK(kr.records[0].sequence_number_plain);
    kinesis_records_free(&kr);
    arena_free(&a);
}

TEST(provenance_tail_fast_path_matches_general)
{
    /* The one-reservation path (plain strings, sub-sequence < 10, a year
     * of four digits) writes what the piecewise path writes: compared by
     * running the same provenance with the plain flags cleared. */
    static const double arrivals[] = { 0, -5, 1795847400, 1795847400.123, 1795847400.0005, 1795847400.0004999,
                                       1795847400.9995, 1795847400.9999996, 1e-7, 253402300799.999,
                                       253402300800.5, 4e12 };
    static const uint64_t subs[] = { 0, 9, 10, 123456 };
    for (size_t i = 0; i < ELEMENTSOF(arrivals); i++)
        for (size_t j = 0; j < ELEMENTSOF(subs); j++) {
            struct rw_provenance p = {
                .sequence_number = { "49590000000000000000000000000000000000000000000000", 50 },
                .partition_key = { "pk-1", 4 },
                .sequence_number_plain = true,
                .partition_key_plain = true,
                .sub_sequence_number = subs[j],
                .arrival_time = arrivals[i],
            };
            _cleanup_(buf_freep) struct buf fast = BUF_INIT, slow = BUF_INIT;
            CHECK_INT(buf_puts(&fast, "{"), 0);
            CHECK_INT(buf_puts(&slow, "{"), 0);
            CHECK_INT(rw_provenance_append_tail_json(&fast, &p), 0);
            p.sequence_number_plain = p.partition_key_plain = false;
            CHECK_INT(rw_provenance_append_tail_json(&slow, &p), 0);
            CHECK_STR(fast.data, slow.data);
            CHECK(fast.len == strlen(fast.data));
        }
    /* Rounding to the microsecond before the milliseconds are cut. */
    struct rw_provenance p = { .sequence_number = { "1", 1 }, .partition_key = { "k", 1 },
                               .sequence_number_plain = true, .partition_key_plain = true,
                               .arrival_time = 1795847400.9999996 };
    _cleanup_(buf_freep) struct buf b = BUF_INIT;
    CHECK_INT(rw_provenance_append_tail_json(&b, &p), 0);
    CHECK_STR(b.data, ",\"sequence_number\":\"1\",\"sub_sequence_number\":0,\"partition_key\":\"k\","
                      "\"arrival_time\":\"2026-11-28T06:30:01.000Z\"}");
}

TEST(one_pass_reading_equals_the_general_parse)
{
    /* The common shape is read without the tape (kr.doc stays empty: that
     * is how this test knows which path ran); everything else falls back
     * to the general parse. Either way the result is the general parse's. */
    static const struct {
        const char *body;
        bool fast;
    } cases[] = {
        /* AWS, compact */
        { "{\"Records\":[{\"SequenceNumber\":\"4959\",\"ApproximateArrivalTimestamp\":1.7e9,\"Data\":\"aGk=\","
          "\"PartitionKey\":\"pk\"},{\"Data\":\"\",\"PartitionKey\":\"caf\xc3\xa9\",\"SequenceNumber\":\"2\","
          "\"EncryptionType\":\"KMS\",\"ExplicitHashKey\":null}],\"NextShardIterator\":\"AAAA\","
          "\"MillisBehindLatest\":12}", true },
        /* Python's json.dumps (moto): blanks after ':' and ',' */
        { "{\"Records\": [{\"Data\": \"aGk=\", \"PartitionKey\": \"k\", \"SequenceNumber\": \"1\", "
          "\"ApproximateArrivalTimestamp\": 1795847400.123, \"EncryptionType\": \"NONE\"}], "
          "\"NextShardIterator\": null, \"MillisBehindLatest\": 0}\n", true },
        { "{\"Records\":[],\"NextShardIterator\":\"x\"}", true },
        { "{\"Records\":[],\"NextShardIterator\":\"x\",\"ChildShards\":[ ],\"MillisBehindLatest\":5}", true },
        { "{\"ChildShards\":null,\"Records\":[]}", true },
        /* the general parse's cases */
        { "{\"Records\":[],\"NextShardIterator\":null,\"ChildShards\":[{\"ShardId\":\"s-2\",\"ParentShards\":"
          "[\"s-1\"],\"HashKeyRange\":{\"StartingHashKey\":\"0\",\"EndingHashKey\":\"9\"}}]}", false },
        { "{\"Records\":[{\"Data\":\"aGk=\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"1\",\"New\":1}]}", false },
        { "{\"Records\":[{\"\\u0044ata\":\"aGk=\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"1\"}]}", false },
        { "{\"Records\":[{\"Data\":\"aGk\\/\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"1\"}]}", false },
        { "{\"Records\":[{\"Data\":\"aGk=\",\"PartitionKey\":\"a\",\"PartitionKey\":\"b\",\"SequenceNumber\":\"1\"}]}",
          false },
        { "{\"Records\":[{\"Data\":\"aGk=\",\"PartitionKey\":\"k\\n\",\"SequenceNumber\":\"1\"}]}", false },
        /* errors: the general parse's verdict and message */
        { "{\"Records\":[{\"Data\":\"a\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"1\"}]}", false },
        { "{\"Records\":[{\"Data\":\"aGk=\",\"PartitionKey\":\"k\"}]}", false },
        { "{\"Records\":[{\"Data\":\"aGk=\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"1\"}],\"MillisBehindLatest\":1.5}",
          false },
        { "{\"Records\":[{\"Data\":\"aGk=\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"1\",\"ApproximateArrivalTimestamp\":01}]}",
          false },
        { "{\"Records\":[]} x", false },
        { "{\"NextShardIterator\":\"x\"}", false },
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        struct kinesis_records a, b;
        struct arena aa = ARENA_INIT, ab = ARENA_INIT;
        kinesis_records_init(&a);
        kinesis_records_init(&b);
        const char *body = cases[i].body;
        int ra = kinesis_records_parse(&a, body, strlen(body), &aa);
        int rb = kinesis_records_parse_general(&b, body, strlen(body), &ab);
        CHECK_INT(ra, rb);
        /* A parse that failed has an empty tape too: its message says
         * the general parse ran. */
        if (ra < 0)
            CHECK_STR(a.doc.err_msg, b.doc.err_msg);
        else
            CHECK((a.doc.n == 0) == cases[i].fast);
        CHECK(a.n_records == b.n_records && a.n_child_shards == b.n_child_shards);
        CHECK(a.millis_behind_latest == b.millis_behind_latest);
        CHECK(!a.next_shard_iterator.p == !b.next_shard_iterator.p);
        for (size_t j = 0; j < a.n_records && j < b.n_records; j++) {
            const struct kinesis_record *x = &a.records[j], *y = &b.records[j];
            CHECK(x->data_len == y->data_len && memcmp(x->data, y->data, x->data_len + 1) == 0);
            CHECK(x->partition_key.len == y->partition_key.len &&
                  memcmp(x->partition_key.p, y->partition_key.p, x->partition_key.len) == 0);
            CHECK(x->partition_key_plain == y->partition_key_plain);
            CHECK(x->sequence_number_plain == y->sequence_number_plain);
            CHECK(!x->encryption_type.p == !y->encryption_type.p);
            CHECK(!x->explicit_hash_key.p == !y->explicit_hash_key.p);
            CHECK(x->arrival == y->arrival || (isnan(x->arrival) && isnan(y->arrival)));
        }
        kinesis_records_free(&a);
        kinesis_records_free(&b);
        arena_free(&aa);
        arena_free(&ab);
    }
}

TEST(shard_end_with_child_shards)
{
    struct kinesis_records kr;
    struct arena a = ARENA_INIT;
    kinesis_records_init(&kr);
    const char *body =
        "{\"Records\":[],\"NextShardIterator\":null,\"MillisBehindLatest\":0,\"ChildShards\":["
        "{\"ShardId\":\"shardId-000000000002\",\"ParentShards\":[\"shardId-000000000000\",\"shardId-000000000001\"],"
        "\"HashKeyRange\":{\"StartingHashKey\":\"0\",\"EndingHashKey\":\"340282366920938463463374607431768211455\"}}]}";
    CHECK_INT(parse(&kr, &a, body), 0);
    CHECK_UINT(kr.n_records, 0);
    CHECK(kr.next_shard_iterator.p == NULL);
    CHECK_INT(kr.millis_behind_latest, 0);
    CHECK_UINT(kr.n_child_shards, 1);
    const struct kinesis_child_shard *cs = &kr.child_shards[0];
    CHECK(str_is(cs->shard_id, "shardId-000000000002"));
    CHECK_UINT(cs->n_parent_shards, 2);
    CHECK(str_is(cs->parent_shards[1], "shardId-000000000001"));
    CHECK(str_is(cs->starting_hash_key, "0"));
    CHECK(str_is(cs->ending_hash_key, "340282366920938463463374607431768211455"));

    /* Absent iterator means the same as null. */
    CHECK_INT(parse(&kr, &a, "{\"Records\":[]}"), 0);
    CHECK(kr.next_shard_iterator.p == NULL);
    CHECK_INT(kr.millis_behind_latest, -1);
    CHECK_UINT(kr.n_child_shards, 0);
    kinesis_records_free(&kr);
    arena_free(&a);
}

TEST(rejects_bad_shapes)
{
    const char *bad[] = {
        "[]", "{}", "{\"Records\":{}}", "{\"Records\":[1]}",
        "{\"Records\":[{\"PartitionKey\":\"a\",\"SequenceNumber\":\"1\"}]}",
        "{\"Records\":[{\"Data\":\"QQ==\",\"SequenceNumber\":\"1\"}]}",
        "{\"Records\":[{\"Data\":\"QQ==\",\"PartitionKey\":\"a\"}]}",
        "{\"Records\":[{\"Data\":\"QQ=\",\"PartitionKey\":\"a\",\"SequenceNumber\":\"1\"}]}",
        "{\"Records\":[{\"Data\":\"Q\\u0051=\",\"PartitionKey\":\"a\",\"SequenceNumber\":\"1\"}]}",
        "{\"Records\":[{\"Data\":5,\"PartitionKey\":\"a\",\"SequenceNumber\":\"1\"}]}",
        "{\"Records\":[{\"Data\":\"\",\"PartitionKey\":1,\"SequenceNumber\":\"1\"}]}",
        "{\"Records\":[{\"Data\":\"\",\"PartitionKey\":\"a\",\"SequenceNumber\":\"1\",\"ApproximateArrivalTimestamp\":\"x\"}]}",
        "{\"Records\":[],\"MillisBehindLatest\":1.5}", "{\"Records\":[],\"MillisBehindLatest\":-1}",
        "{\"Records\":[],\"NextShardIterator\":7}", "{\"Records\":[],\"ChildShards\":[{}]}",
        "{\"Records\":[],\"ChildShards\":[{\"ShardId\":\"a\",\"ParentShards\":[1]}]}",
        "{\"Records\":[],\"ChildShards\":[{\"ShardId\":\"a\",\"HashKeyRange\":{}}]}",
    };
    struct kinesis_records kr;
    struct arena a = ARENA_INIT;
    kinesis_records_init(&kr);
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        int r = parse(&kr, &a, bad[i]);
        CHECK(kr.doc.err_msg != NULL);
        if (r != -EBADMSG)
            TAP_FAIL_("%s: %d, expected -EBADMSG", bad[i], r);
        CHECK_UINT(kr.n_records, 0);
    }
    CHECK_INT(parse(&kr, &a, "{\"Records\":["), -EINVAL);
    CHECK(kr.doc.err_msg != NULL);
    kinesis_records_free(&kr);
    arena_free(&a);
}

TEST(steady_state_reuses_storage)
{
    struct kinesis_records kr;
    struct arena a = ARENA_INIT;
    kinesis_records_init(&kr);
    struct buf body = BUF_INIT;
    CHECK_INT(buf_puts(&body, "{\"Records\":["), 0);
    for (int i = 0; i < 1000; i++) {
        char payload[64];
        int n = snprintf(payload, sizeof(payload), "{\"n\":%d}", i);
        CHECK_INT(buf_printf(&body, "%s{\"Data\":\"", i ? "," : ""), 0);
        CHECK_INT(buf_put_base64(&body, payload, (size_t)n), 0);
        CHECK_INT(buf_printf(&body, "\",\"PartitionKey\":\"k%d\",\"SequenceNumber\":\"%d\","
                                    "\"ApproximateArrivalTimestamp\":1700000000.%03d}", i, i, i), 0);
    }
    CHECK_INT(buf_puts(&body, "],\"NextShardIterator\":\"it\",\"MillisBehindLatest\":0}"), 0);
    for (int round = 0; round < 3; round++) {
        arena_reset(&a);
        CHECK_INT(kinesis_records_parse(&kr, body.data, body.len, &a), 0);
        CHECK_UINT(kr.n_records, 1000);
    }
    struct kinesis_record *recs = kr.records;
    struct json_node *nodes = kr.doc.nodes;
    void *block = a.head;
    arena_reset(&a);
    CHECK_INT(kinesis_records_parse(&kr, body.data, body.len, &a), 0);
    CHECK(kr.records == recs && kr.doc.nodes == nodes && a.head == block);
    CHECK_STR(kr.records[999].data, "{\"n\":999}");
    CHECK(kr.records[7].arrival == 1700000000.007);
    buf_free(&body);
    kinesis_records_free(&kr);
    arena_free(&a);
}

TAP_MAIN
