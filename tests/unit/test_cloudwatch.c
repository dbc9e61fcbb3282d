/* SPDX-License-Identifier: Apache-2.0 */
/* CloudWatch aggregation and PutMetricData encoding: StatisticSets,
 * counters, 1,000 datums / 1 MB per request, StorageResolution, the
 * per-key dimension cap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/cloudwatch_metrics.h"
#include "tap.h"

static size_t count_of(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

TEST(statistic_set)
{
    struct cw_agg a;
    cw_agg_init(&a);
    struct cw_dim d = { "Detector", "amount_z" };
    for (int i = 1; i <= 4; i++)
        CHECK_INT(cw_agg_observe(&a, "MaxAnomalyScore", "None", &d, 1, i * 1.5), 0);
    const struct cw_metric *m = cw_agg_find(&a, "MaxAnomalyScore", &d, 1);
    CHECK(m != NULL);
    CHECK_NEAR(m->count, 4, 0);
    CHECK_NEAR(m->sum, 15, 1e-9);
    CHECK_NEAR(m->min, 1.5, 0);
    CHECK_NEAR(m->max, 6, 0);
    struct cw_dim other = { "Detector", "rate" };
    CHECK(cw_agg_find(&a, "MaxAnomalyScore", &other, 1) == NULL);
    CHECK_INT(cw_agg_observe(&a, "X", "None", &d, 1, 0.0 / 0.0), -EINVAL);

    struct buf b = BUF_INIT;
    struct cw_encode_options o = { .namespace_ = "Rare/Watch", .timestamp_usec = 1764307800123456ULL };
    CHECK_INT(cw_encode(&a, 0, &o, &b), 1);
    CHECK_CONTAINS(b.data, "Action=PutMetricData&Version=2010-08-01&Namespace=Rare%2FWatch");
    CHECK_CONTAINS(b.data, "MetricData.member.1.MetricName=MaxAnomalyScore");
    CHECK_CONTAINS(b.data, "MetricData.member.1.Dimensions.member.1.Name=Detector");
    CHECK_CONTAINS(b.data, "MetricData.member.1.Dimensions.member.1.Value=amount_z");
    CHECK_CONTAINS(b.data, "MetricData.member.1.StatisticValues.SampleCount=4");
    CHECK_CONTAINS(b.data, "MetricData.member.1.StatisticValues.Sum=15");
    CHECK_CONTAINS(b.data, "MetricData.member.1.StatisticValues.Minimum=1.5");
    CHECK_CONTAINS(b.data, "MetricData.member.1.StatisticValues.Maximum=6");
    CHECK_CONTAINS(b.data, "MetricData.member.1.Timestamp=2025-11-28T05%3A30%3A00.000Z");
    CHECK(!strstr(b.data, "StorageResolution"));
    CHECK(!strstr(b.data, ".Value=1.5"));
    buf_free(&b);
    cw_agg_free(&a);
}

TEST(counter_and_single_sample)
{
    struct cw_agg a;
    cw_agg_init(&a);
    struct cw_dim s = { "ShardId", "shardId-000000000001" };
    cw_agg_count(&a, "RecordsIn", &s, 1, 100);
    cw_agg_count(&a, "RecordsIn", &s, 1, 23);
    cw_agg_observe(&a, "MillisBehindLatest", "Milliseconds", &s, 1, 42);
    CHECK_UINT(a.n, 2);
    struct buf b = BUF_INIT;
    struct cw_encode_options o = { .namespace_ = "RW", .timestamp_usec = 1, .high_resolution = true };
    CHECK_INT(cw_encode(&a, 0, &o, &b), 2);
    CHECK_CONTAINS(b.data, "MetricData.member.1.MetricName=RecordsIn");
    CHECK_CONTAINS(b.data, "MetricData.member.1.Value=123&MetricData.member.1.Unit=Count");
    CHECK_CONTAINS(b.data, "MetricData.member.2.Value=42&MetricData.member.2.Unit=Milliseconds");
    CHECK_UINT(count_of(b.data, "StorageResolution=1"), 2);
    buf_free(&b);
    /* Reset keeps the table but forgets the values. */
    cw_agg_reset(&a);
    CHECK_UINT(a.n, 0);
    CHECK(cw_agg_find(&a, "RecordsIn", &s, 1) == NULL);
    cw_agg_count(&a, "RecordsIn", &s, 1, 5);
    CHECK_NEAR(cw_agg_find(&a, "RecordsIn", &s, 1)->sum, 5, 0);
    cw_agg_free(&a);
}

TEST(dimensions_distinguish)
{
    struct cw_agg a;
    cw_agg_init(&a);
    struct cw_dim d2[2] = { { "Detector", "z" }, { "Key", "u1" } };
    cw_agg_count(&a, "AnomalyCount", d2, 1, 1);
    cw_agg_count(&a, "AnomalyCount", d2, 2, 1);
    d2[1].value = "u2";
    cw_agg_count(&a, "AnomalyCount", d2, 2, 1);
    CHECK_UINT(a.n, 3);
    struct cw_dim four[4] = { { "a", "1" }, { "b", "2" }, { "c", "3" }, { "d", "4" } };
    CHECK_INT(cw_agg_count(&a, "Too", four, 4, 1), -EINVAL);
    cw_agg_free(&a);
}

TEST(split_at_1000_datums)
{
    struct cw_agg a;
    cw_agg_init(&a);
    char v[32];
    for (int i = 0; i < 2500; i++) {
        snprintf(v, sizeof(v), "k%d", i);
        struct cw_dim d = { "Key", v };
        CHECK_INT(cw_agg_count(&a, "AnomalyCount", &d, 1, 1), 0);
    }
    CHECK_UINT(a.n, 2500);
    struct buf b = BUF_INIT;
    struct cw_encode_options o = { .namespace_ = "RW", .timestamp_usec = 1 };
    size_t first = 0, reqs = 0, counts[4] = { 0 };
    for (int n; (n = cw_encode(&a, first, &o, &b)) > 0; first += (size_t)n) {
        CHECK(b.len <= CW_MAX_REQUEST_BYTES);
        counts[reqs++] = (size_t)n;
        CHECK_UINT(count_of(b.data, ".MetricName="), (size_t)n);
    }
    CHECK_UINT(reqs, 3);
    CHECK_UINT(counts[0], 1000);
    CHECK_UINT(counts[1], 1000);
    CHECK_UINT(counts[2], 500);
    CHECK_INT(cw_encode(&a, first, &o, &b), 0);
    buf_free(&b);
    cw_agg_free(&a);
}

TEST(split_at_bytes)
{
    struct cw_agg a;
    cw_agg_init(&a);
    char v[300];
    /* Long dimension values: ~200 KB of datums; a 20 KB limit splits. */
    for (int i = 0; i < 600; i++) {
        snprintf(v, sizeof(v), "%0250d", i);
        struct cw_dim d = { "Key", v };
        cw_agg_count(&a, "AnomalyCount", &d, 1, 1);
    }
    struct buf b = BUF_INIT;
    struct cw_encode_options o = { .namespace_ = "RW", .timestamp_usec = 1, .max_bytes = 20000 };
    size_t first = 0, reqs = 0;
    for (int n; (n = cw_encode(&a, first, &o, &b)) > 0; first += (size_t)n, reqs++) {
        CHECK(b.len <= 20000);
        CHECK(n < 100);
    }
    CHECK_UINT(first, 600);
    CHECK(reqs > 6);
    /* The real limit: 1 MB holds them all in one request (600 < 1000). */
    o.max_bytes = 0;
    CHECK_INT(cw_encode(&a, 0, &o, &b), 600);
    CHECK(b.len <= CW_MAX_REQUEST_BYTES);
    o.max_bytes = 100;
    CHECK_INT(cw_encode(&a, 0, &o, &b), -E2BIG);
    buf_free(&b);
    cw_agg_free(&a);
}

TEST(key_dimension_cap)
{
    struct cw_keycap c;
    cw_keycap_init(&c, 3);
    CHECK_STR(cw_keycap_map(&c, "alice", 5), "alice");
    CHECK_STR(cw_keycap_map(&c, "bob", 3), "bob");
    CHECK_STR(cw_keycap_map(&c, "alice", 5), "alice");
    CHECK_STR(cw_keycap_map(&c, "carol", 5), "carol");
    CHECK_STR(cw_keycap_map(&c, "dave", 4), CW_OTHER_KEY);
    CHECK_STR(cw_keycap_map(&c, "bob", 3), "bob");
    CHECK_STR(cw_keycap_map(&c, "erin", 4), CW_OTHER_KEY);
    CHECK_UINT(c.n, 3);
    CHECK_UINT(c.overflowed, 2);
    /* A key is matched by its bytes, not as a prefix. */
    CHECK_STR(cw_keycap_map(&c, "al", 2), CW_OTHER_KEY);
    cw_keycap_free(&c);
}

TEST(datums_per_interval_independent_of_rate)
{
    /* 60 s of 1,000 anomalies/s from 3 detectors: 6 alert datums. */
    struct cw_agg a;
    cw_agg_init(&a);
    const char *det[] = { "amount_z", "rate", "category" };
    for (int i = 0; i < 60000; i++) {
        struct cw_dim d = { "Detector", det[i % 3] };
        cw_agg_count(&a, "AnomalyCount", &d, 1, 1);
        cw_agg_observe(&a, "MaxAnomalyScore", "None", &d, 1, (double)(i % 97));
    }
    CHECK_UINT(a.n, 6);
    struct cw_dim d = { "Detector", "rate" };
    CHECK_NEAR(cw_agg_find(&a, "AnomalyCount", &d, 1)->sum, 20000, 0);
    CHECK_NEAR(cw_agg_find(&a, "MaxAnomalyScore", &d, 1)->max, 96, 0);
    cw_agg_free(&a);
}

TAP_MAIN
