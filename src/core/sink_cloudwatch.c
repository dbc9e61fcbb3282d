/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/sink_cloudwatch.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rarewatch/consumer.h"
#include "rarewatch/json_scan.h"
#include "rarewatch/log.h"
#include "rarewatch/strutil.h"
#include "rarewatch/worker.h"

#define MAX_TRACKED_SINKS 8

struct shard_prev {
    char id[64];
    uint64_t records, deadlettered;
};

struct sink_prev {
    const struct rw_sink *s;
    uint64_t retries, errors, deadlettered;
};

struct cw_sink {
    struct rw_sink sink; /* first */
    struct sink_cloudwatch_options o;
    char *ns, *key_field;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stopping, started;
    pthread_t thread;
    /* under lock */
    struct cw_agg agg;
    struct cw_keycap keycap;
    struct json_doc doc;
    struct buf scratch;
    struct consumer *consumer;
    struct rw_sink **sinks;
    size_t n_sinks;
    /* publisher thread only */
    struct cw_agg spare;
    struct aws_client *client;
    struct shard_prev *sp;
    size_t n_sp;
    struct sink_prev skp[MAX_TRACKED_SINKS];
    struct buf body;
    struct http_response resp;
    char **queue;
    size_t qn;
    unsigned fail_streak;
    uint64_t next_retry;
    uint64_t rng;
    /* stats */
    _Atomic uint64_t intervals, requests, datums, failed_requests, dropped_requests;
};

/* ---- aggregation (shard workers, under lock) ---- */

static void count_anomaly(struct cw_sink *cs, const char *detector, double score, const char *key)
{
    struct cw_dim d[2] = { { "Detector", detector }, { "Key", key } };
    cw_agg_count(&cs->agg, "AnomalyCount", d, 1, 1);
    if (isfinite(score))
        cw_agg_observe(&cs->agg, "MaxAnomalyScore", "None", d, 1, score);
    if (key)
        cw_agg_count(&cs->agg, "AnomalyCount", d, 2, 1);
}

static void aggregate_anomaly(struct cw_sink *cs, const char *p, size_t len, const struct rw_line_meta *m)
{
    struct json_doc *doc = &cs->doc;
    buf_reset(&cs->scratch);
    bool ok = buf_append(&cs->scratch, p, len) >= 0 && json_scan(doc, cs->scratch.data, len) >= 0 &&
              doc->nodes[0].type == JSON_T_OBJECT;
    const char *key = NULL;
    if (ok && cs->key_field) {
        uint32_t k = json_obj_get(doc, 0, cs->key_field, strlen(cs->key_field));
        struct rw_str s = { NULL, 0 };
        if (k != JSON_NONE && doc->nodes[k].type == JSON_T_STRING)
            json_get_string(doc, k, &s);
        else if (k != JSON_NONE && doc->nodes[k].type != JSON_T_OBJECT && doc->nodes[k].type != JSON_T_ARRAY)
            s = (struct rw_str){ cs->scratch.data + doc->nodes[k].start,
                                 doc->nodes[k].end - doc->nodes[k].start };
        if (s.p && s.len)
            key = cw_keycap_map(&cs->keycap, s.p, s.len);
    }
    uint32_t arr = ok ? json_obj_get(doc, 0, "anomalies", 9) : JSON_NONE;
    unsigned counted = 0;
    if (arr != JSON_NONE && doc->nodes[arr].type == JSON_T_ARRAY) {
        for (uint32_t e = json_first_child(doc, arr); e != JSON_NONE; e = json_next_sibling(doc, arr, e)) {
            if (doc->nodes[e].type != JSON_T_OBJECT)
                continue;
            uint32_t dn = json_obj_get(doc, e, "detector", 8);
            struct rw_str s;
            if (dn == JSON_NONE || doc->nodes[dn].type != JSON_T_STRING || json_get_string(doc, dn, &s) < 0)
                continue;
            char name[256];
            snprintf(name, sizeof(name), "%.*s", (int)MIN(s.len, 255u), s.p);
            double score = m->anomaly_score;
            uint32_t sc = json_obj_get(doc, e, "score", 5);
            if (sc != JSON_NONE)
                json_get_number(doc, sc, &score);
            count_anomaly(cs, name, score, key);
            counted++;
        }
    }
    if (!counted)
        count_anomaly(cs, "unknown", m->anomaly_score, key);
}

static int submit(struct rw_sink *s, struct rw_batch *b)
{
    struct cw_sink *cs = (struct cw_sink *)s;
    pthread_mutex_lock(&cs->lock);
    struct cw_dim shard = { "ShardId", b->shard_id };
    cw_agg_count(&cs->agg, "RecordsOut", &shard, 1, (double)b->out.n);
    for (size_t i = 0; i < b->out.n; i++) {
        const struct rw_line_meta *m = &b->out.meta[i];
        if (m->is_anomaly)
            aggregate_anomaly(cs, b->out.lines.data + m->off, m->len, m);
    }
    pthread_mutex_unlock(&cs->lock);
    atomic_fetch_add(&s->stats.batches, 1);
    atomic_fetch_add(&s->stats.lines, b->out.n);
    /* Aggregated: that is all a metrics sink promises. */
    rw_batch_ack(b);
    rw_batch_unref(b);
    return 0;
}

void sink_cloudwatch_observe(struct rw_sink *s, const char *name, const char *unit,
                             const struct cw_dim *dims, unsigned n_dims, double value)
{
    if (!s)
        return;
    struct cw_sink *cs = (struct cw_sink *)s;
    pthread_mutex_lock(&cs->lock);
    cw_agg_observe(&cs->agg, name, unit, dims, n_dims, value);
    pthread_mutex_unlock(&cs->lock);
}

void sink_cloudwatch_set_sources(struct rw_sink *s, struct consumer *c, struct rw_sink **sinks,
                                 size_t n_sinks)
{
    struct cw_sink *cs = (struct cw_sink *)s;
    pthread_mutex_lock(&cs->lock);
    cs->consumer = c;
    cs->sinks = sinks;
    cs->n_sinks = MIN(n_sinks, (size_t)MAX_TRACKED_SINKS);
    pthread_mutex_unlock(&cs->lock);
}

struct sink_cloudwatch_stats sink_cloudwatch_get_stats(struct rw_sink *s)
{
    struct cw_sink *cs = (struct cw_sink *)s;
    return (struct sink_cloudwatch_stats){
        .intervals = atomic_load(&cs->intervals),
        .requests = atomic_load(&cs->requests),
        .datums = atomic_load(&cs->datums),
        .failed_requests = atomic_load(&cs->failed_requests),
        .dropped_requests = atomic_load(&cs->dropped_requests),
    };
}

/* ---- health metrics (publisher thread, under lock) ---- */

static void shard_health(void *ud, const struct consumer_shard_stats *st)
{
    struct cw_sink *cs = ud;
    struct shard_prev *p = NULL;
    for (size_t i = 0; i < cs->n_sp; i++)
        if (streq(cs->sp[i].id, st->shard_id))
            p = &cs->sp[i];
    if (!p) {
        struct shard_prev *n = realloc(cs->sp, (cs->n_sp + 1) * sizeof(*n));
        if (!n)
            return;
        cs->sp = n;
        p = &cs->sp[cs->n_sp++];
        memset(p, 0, sizeof(*p));
        snprintf(p->id, sizeof(p->id), "%s", st->shard_id);
    }
    struct cw_dim d = { "ShardId", p->id };
    uint64_t in = st->records_in - p->records, dl = st->deadlettered - p->deadlettered;
    if (st->running || in)
        cw_agg_count(&cs->agg, "RecordsIn", &d, 1, (double)in);
    if (st->running || dl)
        cw_agg_count(&cs->agg, "RecordsDeadLettered", &d, 1, (double)dl);
    if (st->running && st->millis_behind >= 0)
        cw_agg_observe(&cs->agg, "MillisBehindLatest", "Milliseconds", &d, 1, (double)st->millis_behind);
    p->records = st->records_in;
    p->deadlettered = st->deadlettered;
}

static void collect_health(struct cw_sink *cs)
{
    if (cs->consumer)
        consumer_foreach_shard(cs->consumer, shard_health, cs);
    for (size_t i = 0; i < cs->n_sinks; i++) {
        struct rw_sink *s = cs->sinks[i];
        struct sink_prev *p = &cs->skp[i];
        if (p->s != s)
            *p = (struct sink_prev){ .s = s };
        uint64_t r = atomic_load(&s->stats.retries), e = atomic_load(&s->stats.errors),
                 d = atomic_load(&s->stats.deadlettered);
        struct cw_dim dim = { "Sink", s->name };
        cw_agg_count(&cs->agg, "Retries", &dim, 1, (double)(r - p->retries));
        cw_agg_count(&cs->agg, "Errors", &dim, 1, (double)(e - p->errors));
        cw_agg_count(&cs->agg, "RecordsDeadLettered", &dim, 1, (double)(d - p->deadlettered));
        p->retries = r, p->errors = e, p->deadlettered = d;
    }
}

/* ---- publishing (publisher thread) ---- */

static int send_body(struct cw_sink *cs, const char *body)
{
    struct aws_error err = { 0 };
    atomic_fetch_add(&cs->requests, 1);
    int r = aws_query_call(cs->client, AWS_SVC_CLOUDWATCH, body, !cs->o.uncompressed, &cs->resp, &err);
    if (r < 0) {
        char eb[768];
        atomic_fetch_add(&cs->failed_requests, 1);
        atomic_fetch_add(&cs->sink.stats.errors, 1);
        if (cs->fail_streak == 0)
            log_warning("PutMetricData failed: %s; keeping the metrics to retry",
                        aws_error_str(&err, eb, sizeof(eb)));
    }
    return r;
}

static void enqueue(struct cw_sink *cs, const char *body)
{
    unsigned max = cs->o.max_queued_requests ? cs->o.max_queued_requests : 100;
    if (cs->qn >= max) {
        /* Bounded: the oldest interval goes first. */
        free(cs->queue[0]);
        memmove(cs->queue, cs->queue + 1, (cs->qn - 1) * sizeof(*cs->queue));
        cs->qn--;
        atomic_fetch_add(&cs->dropped_requests, 1);
    }
    char **q = realloc(cs->queue, (cs->qn + 1) * sizeof(*q));
    char *c = strdup(body);
    if (!q || !c) {
        free(c);
        if (q)
            cs->queue = q;
        atomic_fetch_add(&cs->dropped_requests, 1);
        return;
    }
    cs->queue = q;
    cs->queue[cs->qn++] = c;
}

static void failed(struct cw_sink *cs)
{
    cs->fail_streak++;
    cs->rng ^= cs->rng << 13, cs->rng ^= cs->rng >> 7, cs->rng ^= cs->rng << 17;
    uint64_t cap = MIN(300 * USEC_PER_SEC, USEC_PER_SEC << MIN(cs->fail_streak, 10u));
    cs->next_retry = now_monotonic_usec() + cap / 2 + cs->rng % (cap / 2 + 1);
}

/* Retry what failed before (oldest first), then send the new interval. */
static void publish(struct cw_sink *cs, struct cw_agg *a, bool final)
{
    bool blocked = cs->qn && !final && now_monotonic_usec() < cs->next_retry;
    while (cs->qn && !blocked) {
        atomic_fetch_add(&cs->sink.stats.retries, 1);
        if (send_body(cs, cs->queue[0]) < 0) {
            failed(cs);
            blocked = true;
            break;
        }
        free(cs->queue[0]);
        memmove(cs->queue, cs->queue + 1, (cs->qn - 1) * sizeof(*cs->queue));
        cs->qn--;
        cs->fail_streak = 0;
    }
    struct cw_encode_options eo = {
        .namespace_ = cs->ns,
        .timestamp_usec = now_realtime_usec(),
        .high_resolution = cs->o.high_resolution,
    };
    for (size_t first = 0; first < a->n;) {
        int n = cw_encode(a, first, &eo, &cs->body);
        if (n <= 0) {
            log_error_errno(n, "cannot encode metrics: %m");
            break;
        }
        atomic_fetch_add(&cs->datums, (uint64_t)n);
        if (blocked || send_body(cs, cs->body.data) < 0) {
            if (!blocked)
                failed(cs);
            blocked = true;
            enqueue(cs, cs->body.data);
        } else
            cs->fail_streak = 0;
        first += (size_t)n;
    }
}

static void *publisher(void *arg)
{
    struct cw_sink *cs = arg;
    struct rw_worker w;
    worker_register(&w, "sink cloudwatch");
    uint64_t next = now_monotonic_usec() + cs->o.flush_interval_usec;
    pthread_mutex_lock(&cs->lock);
    for (;;) {
        worker_progress(&w);
        uint64_t now = now_monotonic_usec();
        if (!cs->stopping && now < next) {
            /* Wake at least every second for the watchdog. */
            uint64_t d = MIN(next - now, USEC_PER_SEC);
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + (d % USEC_PER_SEC) * 1000;
            ts.tv_sec += (time_t)(d / USEC_PER_SEC + ns / NSEC_PER_SEC);
            ts.tv_nsec = (long)(ns % NSEC_PER_SEC);
            pthread_cond_timedwait(&cs->cond, &cs->lock, &ts);
            continue;
        }
        bool final = cs->stopping;
        next += cs->o.flush_interval_usec;
        if (next < now)
            next = now + cs->o.flush_interval_usec;
        collect_health(cs);
        struct cw_agg t = cs->agg;
        cs->agg = cs->spare;
        cs->spare = t;
        pthread_mutex_unlock(&cs->lock);
        atomic_fetch_add(&cs->intervals, 1);
        publish(cs, &cs->spare, final);
        cw_agg_reset(&cs->spare);
        pthread_mutex_lock(&cs->lock);
        if (final)
            break;
    }
    pthread_mutex_unlock(&cs->lock);
    if (cs->qn)
        log_warning("%zu PutMetricData requests not published by shutdown (metrics are lost, "
                    "records are not)", cs->qn);
    worker_unregister(&w);
    return NULL;
}

static int stop(struct rw_sink *s, uint64_t deadline)
{
    struct cw_sink *cs = (struct cw_sink *)s;
    if (!cs->started)
        return 0;
    pthread_mutex_lock(&cs->lock);
    cs->stopping = true;
    pthread_cond_signal(&cs->cond);
    pthread_mutex_unlock(&cs->lock);
    uint64_t now = now_monotonic_usec(), left = deadline > now ? deadline - now : 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + (left % USEC_PER_SEC) * 1000;
    ts.tv_sec += (time_t)(left / USEC_PER_SEC + ns / NSEC_PER_SEC);
    ts.tv_nsec = (long)(ns % NSEC_PER_SEC);
    if (pthread_timedjoin_np(cs->thread, NULL, &ts)) {
        log_error("sink cloudwatch did not finish by the stop deadline");
        return -ETIMEDOUT;
    }
    cs->started = false;
    return 0;
}

static void sink_free(struct rw_sink *s)
{
    struct cw_sink *cs = (struct cw_sink *)s;
    if (cs->started)
        stop(s, now_monotonic_usec());
    cw_agg_free(&cs->agg);
    cw_agg_free(&cs->spare);
    cw_keycap_free(&cs->keycap);
    json_doc_free(&cs->doc);
    buf_free(&cs->scratch);
    buf_free(&cs->body);
    http_response_free(&cs->resp);
    aws_client_free(cs->client);
    for (size_t i = 0; i < cs->qn; i++)
        free(cs->queue[i]);
    free(cs->queue);
    free(cs->sp);
    free(cs->ns);
    free(cs->key_field);
    pthread_mutex_destroy(&cs->lock);
    pthread_cond_destroy(&cs->cond);
    free(cs);
}

static const struct rw_sink_ops ops = {
    .submit = submit,
    .stop = stop,
    .free = sink_free,
};

int sink_cloudwatch_new(const struct sink_cloudwatch_options *o, struct rw_sink **out)
{
    if (!o->namespace_)
        return -EINVAL;
    struct cw_sink *cs = calloc(1, sizeof(*cs));
    if (!cs)
        return -ENOMEM;
    cs->o = *o;
    if (!cs->o.flush_interval_usec)
        cs->o.flush_interval_usec = 60 * USEC_PER_SEC;
    snprintf(cs->sink.name, sizeof(cs->sink.name), "cloudwatch");
    cs->sink.ops = &ops;
    cs->sink.impl = cs;
    pthread_mutex_init(&cs->lock, NULL);
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&cs->cond, &a);
    pthread_condattr_destroy(&a);
    cw_agg_init(&cs->agg);
    cw_agg_init(&cs->spare);
    cw_keycap_init(&cs->keycap, o->key_dimension_max);
    json_doc_init(&cs->doc, NULL);
    cs->rng = now_monotonic_usec() | 1;
    cs->ns = strdup(o->namespace_);
    cs->key_field = o->key_field ? strdup(o->key_field) : NULL;
    cs->client = aws_client_new(o->aws);
    int r = -ENOMEM;
    if (!cs->ns || (o->key_field && !cs->key_field) || !cs->client ||
        (r = -pthread_create(&cs->thread, NULL, publisher, cs)) < 0) {
        sink_free(&cs->sink);
        return r;
    }
    cs->started = true;
    *out = &cs->sink;
    return 0;
}
