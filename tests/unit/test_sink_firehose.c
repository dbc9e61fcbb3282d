/* SPDX-License-Identifier: Apache-2.0 */
/* The Firehose sink against an in-process loopback stub: forward modes,
 * the anomalies stream, oversize lines dead-lettered, each batch
 * acknowledged exactly once. (Faults: tests/integration/test_sinks.py.) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rarewatch/conf_schema.h"
#include "rarewatch/deadletter.h"
#include "rarewatch/sink_firehose.h"
#include "rarewatch/strutil.h"
#include "http_stub.h"
#include "tap.h"

static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t recs_main, recs_anom, requests;

/* Count what each delivery stream received. */
static void on_request(const char *body, size_t len, struct buf *resp, void *ud)
{
    size_t recs = http_stub_firehose_ok(body, len, resp);
    pthread_mutex_lock(&seen_lock);
    requests++;
    if (memmem(body, len, "\"anom\"", 6))
        recs_anom += recs;
    else
        recs_main += recs;
    pthread_mutex_unlock(&seen_lock);
}

static struct aws_settings *settings;
static struct rw_config *cfg;

static void setup(void)
{
    int port = http_stub_start(on_request, NULL);
    if (port < 0)
        abort();
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
    setenv("AWS_REGION", "eu-west-1", 1);
    setenv("AWS_ENDPOINT_URL_FIREHOSE", url, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    setenv("AWS_CONFIG_FILE", "/nonexistent", 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent", 1);
    http_global_init();
    struct conf_diag d = { 0 };
    struct aws_error err;
    if (conf_load_string(&rw_schema, "t", "", &d, &cfg) < 0 || aws_settings_new(cfg, &settings, &err) < 0)
        abort();
}

static struct rw_batch *batch(struct rw_ack_queue *q, size_t n, size_t every_anomaly, size_t big_at)
{
    struct rw_batch *b = rw_batch_new(q);
    for (size_t i = 0; i < n; i++) {
        struct rw_line_meta *m = rw_output_begin_line(&b->out, (int32_t)i);
        if (i == big_at) {
            buf_puts(&b->out.lines, "{\"big\":\"");
            for (size_t k = 0; k < FH_MAX_RECORD_BYTES; k += 64)
                buf_puts(&b->out.lines, "0123456789012345678901234567890123456789012345678901234567890123");
            buf_puts(&b->out.lines, "\",\"_kinesis\":{\"stream\":\"s\",\"shard_id\":\"sh\",\"sequence_number\":\"7\","
                                    "\"sub_sequence_number\":0,\"partition_key\":\"pk\",\"arrival_time\":\"2026-11-28T05:00:00.000Z\"}}\n");
        } else
            buf_printf(&b->out.lines, "{\"i\":%zu}\n", i);
        rw_output_end_line(&b->out, m);
        m->is_anomaly = every_anomaly && i % every_anomaly == 0;
    }
    return b;
}

static void wait_done(struct rw_ack_queue *q, struct rw_batch *b)
{
    pthread_mutex_lock(&q->lock);
    while (!atomic_load(&b->done))
        pthread_cond_wait(&q->cond, &q->lock);
    pthread_mutex_unlock(&q->lock);
}

TEST(forward_anomalies_and_second_stream)
{
    struct rw_ack_queue q;
    rw_ack_queue_init(&q);
    struct sink_firehose_options o = { .aws = settings, .delivery_stream = "main", .anomalies_stream = "anom",
                                       .forward = FH_FORWARD_ANOMALIES, .flush_interval_usec = 10000,
                                       .max_retries = 3 };
    struct rw_sink *s;
    CHECK_INT(sink_firehose_new(&o, &s), 0);
    recs_main = recs_anom = requests = 0;
    struct rw_batch *b1 = batch(&q, 1200, 4, SIZE_MAX), *b2 = batch(&q, 10, 0, SIZE_MAX);
    CHECK_INT(rw_sinks_submit(&s, 1, b1), 0);
    CHECK_INT(rw_sinks_submit(&s, 1, b2), 0);
    wait_done(&q, b1);
    wait_done(&q, b2);
    CHECK_INT(atomic_load(&b1->pending), 0);
    CHECK_INT(atomic_load(&b2->pending), 0);
    CHECK_INT(s->ops->stop(s, now_monotonic_usec() + 5 * USEC_PER_SEC), 0);
    CHECK_UINT(recs_main, 300); /* every 4th line of b1, none of b2 */
    CHECK_UINT(recs_anom, 300);
    CHECK(requests >= 2);        /* 300 + 300 in one request per stream */
    CHECK_UINT(atomic_load(&s->stats.lines), 600);
    CHECK_UINT(atomic_load(&s->stats.batches), 2);
    rw_sink_free(s);
    rw_batch_unref(b1);
    rw_batch_unref(b2);
    rw_ack_queue_destroy(&q);
}

TEST(all_packed_and_oversize_dead_lettered)
{
    char dir[] = "/tmp/rw-test-fh-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    struct deadletter *dl;
    CHECK_INT(deadletter_new(dir, 64u << 20, &dl), 0);
    struct rw_ack_queue q;
    rw_ack_queue_init(&q);
    struct sink_firehose_options o = { .aws = settings, .delivery_stream = "main", .forward = FH_FORWARD_ALL,
                                       .pack = true, .pack_size = 5000, .flush_interval_usec = 10000,
                                       .max_retries = 3, .deadletter = dl };
    struct rw_sink *s;
    CHECK_INT(sink_firehose_new(&o, &s), 0);
    recs_main = recs_anom = requests = 0;
    struct rw_batch *b = batch(&q, 2001, 0, 1000);
    CHECK_INT(rw_sinks_submit(&s, 1, b), 0);
    wait_done(&q, b);
    CHECK_INT(atomic_load(&b->pending), 0);
    CHECK_INT(s->ops->stop(s, now_monotonic_usec() + 5 * USEC_PER_SEC), 0);
    CHECK_UINT(atomic_load(&s->stats.lines), 2000);
    CHECK_UINT(atomic_load(&s->stats.deadlettered), 1);
    CHECK_UINT(deadletter_count(dl), 1);
    CHECK(recs_main > 0 && recs_main < 2000 / 10); /* ~11-byte lines: hundreds per record */
    rw_sink_free(s);
    rw_batch_unref(b);
    rw_ack_queue_destroy(&q);
    deadletter_free(dl);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
}

int main(void)
{
    setup();
    int r = tap_run();
    aws_settings_free(settings);
    conf_unref(cfg);
    return r;
}
