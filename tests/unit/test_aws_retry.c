/* SPDX-License-Identifier: Apache-2.0 */
/* The standard retry mode's arithmetic: the quota that stops retry storms
 * and the capped, jittered backoff. */
#include "rarewatch/aws.h"

#include "tap.h"

TEST(quota_stops_a_retry_storm)
{
    struct aws_retry_quota q;
    aws_retry_quota_init(&q);
    /* 500 tokens, 5 per retry: 100 retries, then none, however many fail. */
    int retries = 0;
    for (int i = 0; i < 1000; i++)
        if (aws_retry_quota_take(&q, 5))
            retries++;
    CHECK_INT(retries, 100);
    CHECK(!aws_retry_quota_take(&q, 5));
    /* A timeout costs 10. */
    aws_retry_quota_init(&q);
    retries = 0;
    while (aws_retry_quota_take(&q, 10))
        retries++;
    CHECK_INT(retries, 50);
    /* Successes refund: a successful retry returns its cost, a first-attempt
     * success one token, never above 500. */
    aws_retry_quota_refund(&q, 5);
    CHECK(aws_retry_quota_take(&q, 5));
    CHECK(!aws_retry_quota_take(&q, 1));
    for (int i = 0; i < 10000; i++)
        aws_retry_quota_refund(&q, 1);
    CHECK_INT(atomic_load(&q.tokens), 500);
}

TEST(backoff_is_capped_full_jitter)
{
    uint64_t max = 20 * USEC_PER_SEC;
    CHECK_UINT(aws_retry_backoff(0, max, 0.0), 0);
    CHECK_UINT(aws_retry_backoff(0, max, 0.5), 500000);       /* rand * 2^0 s */
    CHECK_UINT(aws_retry_backoff(1, max, 0.5), 1000000);      /* rand * 2^1 s */
    CHECK_UINT(aws_retry_backoff(3, max, 0.999999), 7999992); /* just under 8 s */
    CHECK_UINT(aws_retry_backoff(5, max, 0.5), 10000000);     /* 32 s capped at 20 s */
    CHECK_UINT(aws_retry_backoff(40, max, 1.0), 20000000);    /* no overflow */
}

TEST(form_encoding)
{
    struct buf b = BUF_INIT;
    CHECK_INT(aws_form_append(&b, "Action", "PutMetricData"), 0);
    CHECK_INT(aws_form_append(&b, "MetricData.member.1.Dimensions.member.1.Value", "a b/é&=~"), 0);
    CHECK_STR(b.data, "Action=PutMetricData&MetricData.member.1.Dimensions.member.1.Value=a%20b%2F%C3%A9%26%3D~");
    buf_free(&b);
}

TAP_MAIN
