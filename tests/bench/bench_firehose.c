/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Firehose sink's throughput: batches of NDJSON lines through the real
 * sink (packing, base64, JSON request, SigV4, libcurl, response parsing,
 * acknowledgement) against a local stub that answers every PutRecordBatch
 * with one success per record. Reports lines/s, bytes/s and both per
 * CPU-second of the whole process (the stub's thread included, so the
 * per-core figure is a lower bound). Baseline in the same run: the packed
 * mode (5,000-byte records), which sends 20x fewer Firehose records.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "rarewatch/aws.h"
#include "rarewatch/conf_schema.h"
#include "rarewatch/sink_cloudwatch.h"
#include "rarewatch/sink_firehose.h"
#include "rarewatch/strutil.h"
#include "http_stub.h"

static void on_request(const char *body, size_t len, struct buf *resp, void *ud)
{
    http_stub_firehose_ok(body, len, resp);
}

static double cpu_sec(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static struct rw_batch *make_batch(struct rw_ack_queue *q, size_t lines, size_t len)
{
    struct rw_batch *b = rw_batch_new(q);
    char *pad = malloc(len);
    memset(pad, 'x', len);
    for (size_t i = 0; i < lines; i++) {
        struct rw_line_meta *m = rw_output_begin_line(&b->out, (int32_t)i);
        size_t start = b->out.lines.len;
        buf_printf(&b->out.lines, "{\"id\":\"bench-%zu\",\"pad\":\"", i);
        size_t used = b->out.lines.len - start;
        buf_append(&b->out.lines, pad, len > used + 4 ? len - used - 4 : 1);
        buf_puts(&b->out.lines, "\"}\n");
        rw_output_end_line(&b->out, m);
    }
    free(pad);
    return b;
}

static void run(struct aws_settings *s, bool pack, size_t line_len, size_t seconds)
{
    struct rw_ack_queue q;
    rw_ack_queue_init(&q);
    struct sink_firehose_options o = {
        .aws = s, .delivery_stream = "bench", .forward = FH_FORWARD_ALL, .pack = pack,
        .pack_size = 5000, .flush_interval_usec = 10 * USEC_PER_MSEC, .max_retries = 3,
    };
    struct rw_sink *sink;
    if (sink_firehose_new(&o, &sink) < 0)
        exit(1);
    const size_t per_batch = 1000, inflight = 8;
    struct rw_batch *win[8] = { 0 };
    uint64_t lines = 0, bytes = 0;
    double c0 = cpu_sec();
    uint64_t t0 = now_monotonic_usec();
    size_t k = 0;
    while (now_monotonic_usec() - t0 < seconds * USEC_PER_SEC) {
        struct rw_batch *b = win[k % inflight];
        if (b) {
            pthread_mutex_lock(&q.lock);
            while (!atomic_load(&b->done))
                pthread_cond_wait(&q.cond, &q.lock);
            pthread_mutex_unlock(&q.lock);
            lines += b->out.n;
            bytes += b->out.lines.len;
            rw_batch_unref(b);
        }
        win[k % inflight] = b = make_batch(&q, per_batch, line_len);
        rw_sinks_submit(&sink, 1, b);
        k++;
    }
    double secs = (double)(now_monotonic_usec() - t0) / 1e6, cpu = cpu_sec() - c0;
    sink->ops->stop(sink, now_monotonic_usec() + 10 * USEC_PER_SEC);
    for (size_t i = 0; i < inflight; i++)
        rw_batch_unref(win[i]);
    if (atomic_load(&sink->stats.retries) || atomic_load(&sink->stats.errors))
        fprintf(stderr, "retries %llu errors %llu\n", (unsigned long long)atomic_load(&sink->stats.retries),
                (unsigned long long)atomic_load(&sink->stats.errors));
    printf("%-10s %6zu B %12.0f %12.2f %6.2f %14.0f %14.2f\n", pack ? "packed" : "per-line", line_len,
           (double)lines / secs, (double)bytes / secs / 1e6, cpu / secs, (double)lines / cpu,
           (double)bytes / cpu / 1e6);
    rw_sink_free(sink);
    rw_ack_queue_destroy(&q);
}

/* CloudWatch at 1,000 anomalies/s from 3 detectors over 4 shards, 1 s
 * intervals: requests and datums per interval (the design makes both
 * independent of the anomaly rate). */
static void run_cloudwatch(struct aws_settings *s, size_t seconds)
{
    struct rw_ack_queue q;
    rw_ack_queue_init(&q);
    struct sink_cloudwatch_options o = { .aws = s, .namespace_ = "Bench",
                                         .flush_interval_usec = USEC_PER_SEC, .key_field = "user",
                                         .key_dimension_max = 100 };
    struct rw_sink *sink;
    if (sink_cloudwatch_new(&o, &sink) < 0)
        exit(1);
    static const char *det[] = { "amount_z", "rate", "category" };
    uint64_t t0 = now_monotonic_usec(), sent = 0;
    double c0 = cpu_sec();
    for (size_t tick = 0; now_monotonic_usec() - t0 < seconds * USEC_PER_SEC; tick++) {
        struct rw_batch *b = rw_batch_new(&q);
        snprintf(b->shard_id, sizeof(b->shard_id), "shardId-%012zu", tick % 4);
        for (int i = 0; i < 100; i++) {
            struct rw_line_meta *m = rw_output_begin_line(&b->out, i);
            buf_printf(&b->out.lines, "{\"user\":\"u%llu\",\"anomalies\":[{\"detector\":\"%s\",\"score\":%d}]}\n",
                       (unsigned long long)(sent % 500), det[sent % 3], (int)(sent % 97));
            rw_output_end_line(&b->out, m);
            m->is_anomaly = true;
            m->anomaly_score = 1;
            sent++;
        }
        rw_sinks_submit(&sink, 1, b);
        rw_batch_unref(b);
        uint64_t next = t0 + (tick + 1) * 100 * USEC_PER_MSEC, now = now_monotonic_usec();
        if (next > now)
            usleep((useconds_t)(next - now));
    }
    double secs = (double)(now_monotonic_usec() - t0) / 1e6, cpu = cpu_sec() - c0;
    sink->ops->stop(sink, now_monotonic_usec() + 10 * USEC_PER_SEC);
    struct sink_cloudwatch_stats st = sink_cloudwatch_get_stats(sink);
    printf("CloudWatch: %.0f anomalies/s for %.1f s, %llu intervals of 1 s: %llu PutMetricData requests, "
           "%llu datums (%.1f datums and %.2f requests per interval), %.3f cores\n",
           (double)sent / secs, secs, (unsigned long long)st.intervals, (unsigned long long)st.requests,
           (unsigned long long)st.datums, (double)st.datums / (double)st.intervals,
           (double)st.requests / (double)st.intervals, cpu / secs);
    printf("  -> at flush_interval 60 s: %.0f requests/minute; at 10 s (high_resolution): %.0f\n",
           (double)st.requests / (double)st.intervals, 6.0 * (double)st.requests / (double)st.intervals);
    rw_sink_free(sink);
    rw_ack_queue_destroy(&q);
}

int main(int argc, char **argv)
{
    size_t seconds = argc > 1 ? strtoul(argv[1], NULL, 10) : 3;
    int port = http_stub_start(on_request, NULL);
    if (port < 0)
        return 1;
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", 1);
    setenv("AWS_REGION", "eu-west-1", 1);
    setenv("AWS_ENDPOINT_URL_FIREHOSE", url, 1);
    setenv("AWS_ENDPOINT_URL_CLOUDWATCH", url, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    http_global_init();
    struct conf_diag d = { 0 };
    struct rw_config *cfg = NULL;
    struct aws_settings *s = NULL;
    struct aws_error err;
    if (conf_load_string(&rw_schema, "bench", "", &d, &cfg) < 0 || aws_settings_new(cfg, &s, &err) < 0)
        return 1;
    printf("%-10s %8s %12s %12s %6s %14s %14s\n", "mode", "line", "lines/s", "MB/s", "cores",
           "lines/cpu-s", "MB/cpu-s");
    run(s, false, 250, seconds);
    run(s, false, 1000, seconds);
    run(s, true, 250, seconds);
    run(s, true, 1000, seconds);
    printf("(stub server in-process: its CPU is included in cores and the per-CPU-second columns)\n");
    run_cloudwatch(s, seconds + 2);
    aws_settings_free(s);
    conf_unref(cfg);
    return 0;
}
