/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/consumer.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rarewatch/conf_schema.h"
#include "rarewatch/daemon.h"
#include "rarewatch/kinesis_records.h"
#include "rarewatch/kpl.h"
#include "rarewatch/log.h"
#include "rarewatch/strutil.h"
#include "rarewatch/worker.h"

/* Kinesis per-shard read limits: 5 GetRecords calls/s and 2 MiB/s. */
#define MIN_CALL_INTERVAL_USEC (200 * USEC_PER_MSEC)
#define SHARD_READ_BYTES_PER_SEC (2.0 * 1024 * 1024)
#define MAX_PARENTS 2

struct shard {
    struct consumer *c;
    char id[64];
    char parents[MAX_PARENTS][64];
    unsigned n_parents;
    bool closed; /* ListShards gave an EndingSequenceNumber */
    pthread_t thread;
    bool thread_started;
    _Atomic bool exited;      /* the thread is done (join it) */
    _Atomic bool ended;       /* read to SHARD_END and checkpointed */
    _Atomic int64_t millis_behind;
    _Atomic uint64_t records;
    _Atomic uint64_t deadlettered;
    struct rw_ack_queue acks;
    struct rw_batch *fifo_head, *fifo_tail;
    unsigned inflight;
    struct shard *next;
};

struct consumer {
    struct consumer_options o;
    char *stream;
    char stream_name[256];
    bool is_arn;
    pthread_t coord;
    bool coord_started;
    pthread_mutex_t lock; /* shards list, wakeups */
    pthread_cond_t cond;
    bool wake;
    _Atomic bool stopping;
    _Atomic uint64_t deadline;
    struct shard *shards;
    struct rw_worker coord_worker;
    struct log_fields log_ctx;
    /* stats */
    _Atomic uint64_t records_in, lines_out, deadlettered, calls, throttled;
};

/* ---- helpers ---- */

static void timespec_after(struct timespec *ts, uint64_t usec)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    uint64_t ns = (uint64_t)ts->tv_nsec + (usec % USEC_PER_SEC) * 1000;
    ts->tv_sec += (time_t)(usec / USEC_PER_SEC + ns / NSEC_PER_SEC);
    ts->tv_nsec = (long)(ns % NSEC_PER_SEC);
}

static int put_stream(struct consumer *c, struct buf *b)
{
    int r = buf_puts(b, c->is_arn ? "\"StreamARN\":" : "\"StreamName\":");
    return r ?: buf_put_json_string(b, c->stream, strlen(c->stream));
}

static json_object *parse_json(const struct http_response *resp)
{
    if (!resp->body.data)
        return NULL;
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return NULL;
    json_object *o = json_tokener_parse_ex(tok, resp->body.data, (int)MIN(resp->body.len, (size_t)INT32_MAX));
    if (json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    if (o && !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        o = NULL;
    }
    return o;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* ---- shard discovery ---- */

struct shard_info {
    char id[64];
    char parents[MAX_PARENTS][64];
    unsigned n_parents;
    bool closed;
};

static int list_shards(struct consumer *c, struct aws_client *cl, struct shard_info **out,
                       size_t *n_out)
{
    _cleanup_buf_ struct buf req = BUF_INIT;
    struct http_response resp = { 0 };
    struct aws_error err;
    _cleanup_free_ char *token = NULL;
    struct shard_info *v = NULL;
    size_t n = 0, cap = 0;
    int r = 0;
    for (int restarts = 0;;) {
        buf_reset(&req);
        buf_putc(&req, '{');
        if (token) {
            buf_puts(&req, "\"NextToken\":");
            buf_put_json_string(&req, token, strlen(token));
        } else
            put_stream(c, &req);
        buf_putc(&req, '}');
        r = aws_json_call(cl, AWS_SVC_KINESIS, "ListShards", req.data, req.len, &resp, &err);
        if (r < 0) {
            /* A NextToken lives 300 s; when it expired, list again from the
             * start rather than fail. */
            if (token && streq(err.code, "ExpiredNextTokenException") && restarts++ < 3) {
                free(TAKE_PTR(token));
                n = 0;
                continue;
            }
            char eb[512];
            log_fields(LOG_WARNING, 0, (&(struct log_fields){ .aws_error = err.code }),
                       "ListShards failed: %s", aws_error_str(&err, eb, sizeof(eb)));
            break;
        }
        json_object *o = parse_json(&resp), *shards = NULL;
        if (!o || !json_object_object_get_ex(o, "Shards", &shards) ||
            !json_object_is_type(shards, json_type_array)) {
            json_object_put(o);
            log_warning("ListShards: malformed response");
            r = -EPROTO;
            break;
        }
        for (size_t i = 0; i < json_object_array_length(shards); i++) {
            json_object *s = json_object_array_get_idx(shards, i), *range = NULL;
            const char *id = jstr(s, "ShardId");
            if (!id || strlen(id) >= 64)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                struct shard_info *nv = realloc(v, cap * sizeof(*nv));
                if (!nv) {
                    json_object_put(o);
                    free(v);
                    return -ENOMEM;
                }
                v = nv;
            }
            struct shard_info *si = &v[n++];
            memset(si, 0, sizeof(*si));
            snprintf(si->id, sizeof(si->id), "%s", id);
            const char *p1 = jstr(s, "ParentShardId"), *p2 = jstr(s, "AdjacentParentShardId");
            if (p1 && strlen(p1) < 64)
                snprintf(si->parents[si->n_parents++], 64, "%s", p1);
            if (p2 && strlen(p2) < 64)
                snprintf(si->parents[si->n_parents++], 64, "%s", p2);
            if (json_object_object_get_ex(s, "SequenceNumberRange", &range))
                si->closed = jstr(range, "EndingSequenceNumber") != NULL;
        }
        const char *next = jstr(o, "NextToken");
        free(TAKE_PTR(token));
        if (next)
            token = strdup(next);
        json_object_put(o);
        if (!token)
            break;
    }
    http_response_free(&resp);
    if (r < 0) {
        free(v);
        return r;
    }
    *out = v;
    *n_out = n;
    return 0;
}

/* ---- the shard worker ---- */

struct wstate {
    struct shard *s;
    struct consumer *c;
    struct aws_client *cl;
    void *stage;
    struct rw_worker w;
    struct log_fields ctx;
    char *iterator;
    struct checkpoint resume;   /* where we started (skip sub-records <= it) */
    char last_read[CKPT_SEQ_MAX + 1];
    struct checkpoint acked;    /* highest fully acknowledged position */
    bool acked_dirty;
    uint64_t last_ckpt;
    uint64_t next_call;
    uint64_t batch_id;
    unsigned errors;
    struct kinesis_records kr;
    struct arena arena;
    struct rw_input_record *in;
    size_t in_cap;
    struct rw_output spare; /* a delivered batch's output buffers, for the next */
    struct buf req;
    struct http_response resp;
    struct rw_config *cfg;
    uint64_t cfg_gen;
};

static void refresh_config(struct wstate *ws)
{
    uint64_t g = daemon_config_generation();
    if (ws->cfg && g == ws->cfg_gen)
        return;
    struct rw_config *n = daemon_config();
    if (!n)
        return;
    conf_unref(ws->cfg);
    ws->cfg = n;
    ws->cfg_gen = g;
}

/* Wait on the shard's ack queue up to usec (or until woken). */
static void wait_acks(struct wstate *ws, uint64_t usec)
{
    struct timespec ts;
    timespec_after(&ts, usec);
    pthread_mutex_lock(&ws->s->acks.lock);
    bool any_done = ws->s->fifo_head && atomic_load(&ws->s->fifo_head->done);
    if (!any_done && !atomic_load(&ws->c->stopping))
        pthread_cond_timedwait(&ws->s->acks.cond, &ws->s->acks.lock, &ts);
    pthread_mutex_unlock(&ws->s->acks.lock);
}

static int save_checkpoint(struct wstate *ws, const struct checkpoint *cp)
{
    char *parents[MAX_PARENTS + 1] = { 0 };
    for (unsigned i = 0; i < ws->s->n_parents; i++)
        parents[i] = ws->s->parents[i];
    int r = ws->c->o.store->ops->save(ws->c->o.store->impl, ws->s->id, cp, parents);
    if (r < 0)
        log_error_errno(r, "cannot save the checkpoint (%s %s): %m", ckpt_state_name(cp->state),
                        cp->sequence);
    else
        log_debug("checkpoint %s %s", ckpt_state_name(cp->state), cp->sequence);
    return r;
}

/* Pop acknowledged batches in order; checkpoint when due (or force). */
static int reap(struct wstate *ws, bool force)
{
    struct shard *s = ws->s;
    pthread_mutex_lock(&s->acks.lock);
    while (s->fifo_head && atomic_load(&s->fifo_head->done)) {
        struct rw_batch *b = s->fifo_head;
        s->fifo_head = b->next;
        if (!s->fifo_head)
            s->fifo_tail = NULL;
        s->inflight--;
        if (b->has_position) {
            ws->acked = b->position;
            ws->acked_dirty = true;
        }
        pthread_mutex_unlock(&s->acks.lock);
        rw_batch_keep_output(b, &ws->spare);
        rw_batch_unref(b);
        pthread_mutex_lock(&s->acks.lock);
    }
    pthread_mutex_unlock(&s->acks.lock);
    uint64_t now = now_monotonic_usec();
    if (ws->acked_dirty &&
        (force || now - ws->last_ckpt >= conf_usec(ws->cfg, RWK_checkpoint_interval))) {
        int r = save_checkpoint(ws, &ws->acked);
        if (r == -ENOLCK)
            return r;
        if (r == 0) {
            ws->acked_dirty = false;
            ws->last_ckpt = now;
        }
    }
    return 0;
}

static int get_iterator(struct wstate *ws, const struct checkpoint *after, const char *after_seq)
{
    struct consumer *c = ws->c;
    struct buf *b = &ws->req;
    buf_reset(b);
    buf_putc(b, '{');
    put_stream(c, b);
    buf_puts(b, ",\"ShardId\":");
    buf_put_json_string(b, ws->s->id, strlen(ws->s->id));
    if (after_seq) {
        buf_printf(b, ",\"ShardIteratorType\":\"AFTER_SEQUENCE_NUMBER\",\"StartingSequenceNumber\":\"%s\"",
                   after_seq);
    } else if (after && after->state == CKPT_SEQUENCE) {
        /* A KCL checkpoint inside an aggregate resumes at the record and
         * skips the sub-records already done. */
        if (after->sub_sequence > 0)
            buf_printf(b, ",\"ShardIteratorType\":\"AT_SEQUENCE_NUMBER\",\"StartingSequenceNumber\":\"%s\"",
                       after->sequence);
        else
            buf_printf(b, ",\"ShardIteratorType\":\"AFTER_SEQUENCE_NUMBER\",\"StartingSequenceNumber\":\"%s\"",
                       after->sequence);
    } else {
        int pos = (after && after->state == CKPT_LATEST) ? 1
                  : (after && after->state == CKPT_TRIM_HORIZON) ? 0
                  : conf_enum(ws->cfg, RWK_kinesis_initial_position);
        static const char *const names[] = { "TRIM_HORIZON", "LATEST", "AT_TIMESTAMP" };
        buf_printf(b, ",\"ShardIteratorType\":\"%s\"", names[pos]);
        if (pos == 2) {
            const char *ts = conf_str(ws->cfg, RWK_kinesis_initial_timestamp);
            double t = 0;
            if (ts && parse_double(ts, &t) < 0) {
                struct tm tm = { 0 };
                char *end = strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm);
                t = end ? (double)timegm(&tm) : 0;
            }
            buf_printf(b, ",\"Timestamp\":%.3f", t);
        }
    }
    buf_putc(b, '}');
    struct aws_error err;
    int r = aws_json_call(ws->cl, AWS_SVC_KINESIS, "GetShardIterator", b->data, b->len, &ws->resp, &err);
    if (r < 0) {
        char eb[512];
        log_fields(LOG_WARNING, 0, (&(struct log_fields){ .aws_error = err.code, .aws_request_id = err.request_id }),
                   "GetShardIterator failed: %s", aws_error_str(&err, eb, sizeof(eb)));
        return r;
    }
    json_object *o = parse_json(&ws->resp);
    const char *it = jstr(o, "ShardIterator");
    free(ws->iterator);
    ws->iterator = it ? strdup(it) : NULL;
    json_object_put(o);
    if (!ws->iterator) {
        log_warning("GetShardIterator: no iterator in the response");
        return -EPROTO;
    }
    return 0;
}

static int ensure_inputs(struct wstate *ws, size_t n)
{
    if (n <= ws->in_cap)
        return 0;
    size_t cap = MAX(n, ws->in_cap * 2);
    struct rw_input_record *v = realloc(ws->in, cap * sizeof(*v));
    if (!v)
        return -ENOMEM;
    ws->in = v;
    ws->in_cap = cap;
    return 0;
}

/* Turn one GetRecords response into a batch for the sinks. */
static int process_response(struct wstate *ws)
{
    struct consumer *c = ws->c;
    struct kinesis_records *kr = &ws->kr;
    size_t n_in = 0;
    struct deadletter_item *dl = NULL;
    size_t n_dl = 0;
    _cleanup_(rw_batch_unrefp) struct rw_batch *b = rw_batch_new(&ws->s->acks);
    if (!b)
        return -ENOMEM;
    rw_batch_use_output(b, &ws->spare);
    struct rw_provenance base = {
        .stream = { c->stream_name, (uint32_t)strlen(c->stream_name) },
        .shard_id = { ws->s->id, (uint32_t)strlen(ws->s->id) },
    };
    double min_arrival = INFINITY;
    for (size_t i = 0; i < kr->n_records; i++) {
        const struct kinesis_record *kr_r = &kr->records[i];
        struct rw_provenance p = base;
        p.sequence_number = kr_r->sequence_number;
        p.partition_key = kr_r->partition_key;
        p.sequence_number_plain = kr_r->sequence_number_plain;
        p.partition_key_plain = kr_r->partition_key_plain;
        p.arrival_time = isnan(kr_r->arrival) ? 0 : kr_r->arrival;
        if (p.arrival_time > 0 && p.arrival_time < min_arrival)
            min_arrival = p.arrival_time;
        bool resume_here = ws->resume.state == CKPT_SEQUENCE && ws->resume.sub_sequence > 0 &&
                           kr_r->sequence_number.len == strlen(ws->resume.sequence) &&
                           memcmp(kr_r->sequence_number.p, ws->resume.sequence,
                                  kr_r->sequence_number.len) == 0;
        if (kpl_is_aggregated((const uint8_t *)kr_r->data, kr_r->data_len)) {
            struct kpl_aggregate agg;
            struct kpl_error kerr;
            int r = kpl_deaggregate((const uint8_t *)kr_r->data, kr_r->data_len, &ws->arena, &agg, &kerr);
            if (r < 0) {
                struct deadletter_item *nd = realloc(dl, (n_dl + 1) * sizeof(*nd));
                if (!nd) {
                    free(dl);
                    return -ENOMEM;
                }
                dl = nd;
                struct rw_provenance *pp = arena_alloc(&ws->arena, sizeof(*pp));
                if (!pp) {
                    free(dl);
                    return -ENOMEM;
                }
                *pp = p;
                char *reason = arena_strndup(&ws->arena, kerr.reason, strlen(kerr.reason));
                dl[n_dl++] = (struct deadletter_item){ kr_r->data, kr_r->data_len, pp, RW_STAGE_DECODE,
                                                       "kpl", reason };
                continue;
            }
            if (ensure_inputs(ws, n_in + agg.n + kr->n_records) < 0) {
                free(dl);
                return -ENOMEM;
            }
            for (size_t j = 0; j < agg.n; j++) {
                const struct kpl_record *sr = &agg.records[j];
                if (resume_here && sr->index <= ws->resume.sub_sequence)
                    continue;
                struct rw_input_record *in = &ws->in[n_in++];
                in->data = arena_strndup(&ws->arena, (const char *)sr->data.ptr, sr->data.len);
                in->len = sr->data.len;
                in->prov = p;
                in->prov.aggregated = true;
                in->prov.sub_sequence_number = sr->index;
                in->prov.partition_key = (struct rw_str){ (const char *)sr->partition_key.ptr,
                                                          (uint32_t)sr->partition_key.len };
                in->prov.partition_key_plain = false; /* the aggregate's bytes: checked */
                if (!in->data) {
                    free(dl);
                    return -ENOMEM;
                }
            }
        } else {
            if (resume_here)
                continue;
            if (ensure_inputs(ws, n_in + 1) < 0) {
                free(dl);
                return -ENOMEM;
            }
            struct rw_input_record *in = &ws->in[n_in++];
            in->data = kr_r->data;
            in->len = kr_r->data_len;
            in->prov = p;
        }
    }
    /* Only the first response with records after a resume holds the partly
     * done record. Until one came, a new iterator must still start from the
     * checkpoint (last_read is empty), not from initial_position. */
    if (kr->n_records)
        ws->resume.state = CKPT_NONE;

    int r = c->o.stage.process(ws->stage, ws->in, n_in, &b->out);
    if (r < 0) {
        free(dl);
        return r;
    }
    /* Dead letters from the analytics stage refer to input records. */
    for (size_t i = 0; i < b->out.n_dl; i++) {
        const struct rw_deadletter_entry *e = &b->out.dl[i];
        struct deadletter_item *nd = realloc(dl, (n_dl + 1) * sizeof(*nd));
        if (!nd) {
            free(dl);
            return -ENOMEM;
        }
        dl = nd;
        const struct rw_input_record *in = e->input >= 0 && (size_t)e->input < n_in ? &ws->in[e->input] : NULL;
        dl[n_dl++] = (struct deadletter_item){ in ? in->data : "", in ? in->len : 0,
                                               in ? &in->prov : NULL, e->stage, e->component, e->reason };
    }
    if (n_dl) {
        /* Durable before the batch can be acknowledged; when the directory
         * is full, wait (and say so) rather than drop. */
        bool said = false;
        while ((r = deadletter_write(c->o.deadletter, dl, n_dl)) == -ENOSPC) {
            if (!said) {
                log_error("dead-letter directory %s is full ([deadletter] max_size): consumption "
                          "of this shard stops until space is freed",
                          deadletter_dir(c->o.deadletter));
                said = true;
            }
            worker_progress(&ws->w);
            if (atomic_load(&c->stopping)) {
                free(dl);
                return -ENOSPC;
            }
            wait_acks(ws, USEC_PER_SEC);
        }
        if (r < 0) {
            log_error_errno(r, "cannot write %zu dead-letter entries: %m", n_dl);
            free(dl);
            return r;
        }
        atomic_fetch_add(&c->deadlettered, n_dl);
        atomic_fetch_add(&ws->s->deadlettered, n_dl);
        log_warning("%zu record%s dead-lettered (first: %s: %s)", n_dl, n_dl == 1 ? "" : "s",
                    rw_stage_name(dl[0].stage), dl[0].reason);
    }
    free(dl);

    atomic_fetch_add(&c->records_in, n_in);
    atomic_fetch_add(&ws->s->records, n_in);
    atomic_fetch_add(&c->lines_out, b->out.n);
    b->id = ++ws->batch_id;
    b->records_in = n_in;
    b->min_arrival = isfinite(min_arrival) ? min_arrival : 0;
    snprintf(b->shard_id, sizeof(b->shard_id), "%s", ws->s->id);
    if (kr->n_records) {
        const struct rw_str *last = &kr->records[kr->n_records - 1].sequence_number;
        b->has_position = last->len <= CKPT_SEQ_MAX;
        b->position.state = CKPT_SEQUENCE;
        snprintf(b->position.sequence, sizeof(b->position.sequence), "%.*s", (int)last->len, last->p);
        b->position.sub_sequence = 0;
        snprintf(ws->last_read, sizeof(ws->last_read), "%s", b->position.sequence);
    }
    /* Enqueue in the FIFO before the sinks can complete it. */
    pthread_mutex_lock(&ws->s->acks.lock);
    rw_batch_ref(b);
    if (ws->s->fifo_tail)
        ws->s->fifo_tail->next = b;
    else
        ws->s->fifo_head = b;
    ws->s->fifo_tail = b;
    ws->s->inflight++;
    pthread_mutex_unlock(&ws->s->acks.lock);
    if (b->out.n == 0) {
        pthread_mutex_lock(&ws->s->acks.lock);
        atomic_store(&b->done, true);
        pthread_mutex_unlock(&ws->s->acks.lock);
        return 0;
    }
    return rw_sinks_submit(c->o.sinks, c->o.n_sinks, b);
}

static uint64_t backoff_usec(struct wstate *ws)
{
    uint64_t cap = conf_usec(ws->cfg, RWK_kinesis_error_backoff_max);
    uint64_t base = MIN(cap, (uint64_t)100000 << MIN(ws->errors, 16u));
    return base / 2 + (uint64_t)rand() % (base / 2 + 1);
}

/* Sleep until usec passed, the stop flag, or an ack wakes us; heartbeat. */
static void nap(struct wstate *ws, uint64_t usec)
{
    uint64_t until = now_monotonic_usec() + usec;
    for (;;) {
        worker_progress(&ws->w);
        reap(ws, false);
        uint64_t now = now_monotonic_usec();
        if (now >= until || atomic_load(&ws->c->stopping))
            return;
        wait_acks(ws, MIN(until - now, USEC_PER_SEC));
    }
}

/* [daemon] test_stall_workers, the fault switch of the watchdog test: this
 * worker neither reads nor reports progress (so the daemon withholds the
 * watchdog ping) until the switch is reloaded off or the daemon stops. */
static void stall(struct wstate *ws)
{
    log_warning("[daemon] test_stall_workers is set: this shard worker stops making progress");
    while (!atomic_load(&ws->c->stopping)) {
        refresh_config(ws);
        if (!conf_bool(ws->cfg, RWK_daemon_test_stall_workers))
            return;
        /* Not wait_acks(): without reaping, a completed batch would make it
         * return at once and this loop spin. */
        nanosleep(&(struct timespec){ .tv_nsec = 100 * 1000 * 1000 }, NULL);
    }
}

static void drain_and_finish(struct wstate *ws, bool shard_end)
{
    struct consumer *c = ws->c;
    uint64_t deadline = atomic_load(&c->deadline);
    for (;;) {
        worker_progress(&ws->w);
        if (reap(ws, false) == -ENOLCK)
            return;
        pthread_mutex_lock(&ws->s->acks.lock);
        bool empty = ws->s->fifo_head == NULL;
        pthread_mutex_unlock(&ws->s->acks.lock);
        if (empty)
            break;
        uint64_t now = now_monotonic_usec();
        if (atomic_load(&c->stopping)) {
            deadline = atomic_load(&c->deadline);
            if (deadline && now >= deadline) {
                log_warning("stop deadline reached with %u batches unacknowledged; they will be "
                            "read again after the restart", ws->s->inflight);
                break;
            }
        }
        wait_acks(ws, 200 * USEC_PER_MSEC);
    }
    reap(ws, true);
    pthread_mutex_lock(&ws->s->acks.lock);
    bool empty = ws->s->fifo_head == NULL;
    pthread_mutex_unlock(&ws->s->acks.lock);
    if (shard_end && empty) {
        struct checkpoint end = { .state = CKPT_SHARD_END };
        if (save_checkpoint(ws, &end) == 0) {
            atomic_store(&ws->s->ended, true);
            log_info("shard read to its end; checkpoint SHARD_END");
        }
    }
    /* The lease is released by consumer_stop, not here. */
}

static void wake_coordinator(struct consumer *c)
{
    pthread_mutex_lock(&c->lock);
    c->wake = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void *shard_main(void *arg)
{
    struct shard *s = arg;
    struct consumer *c = s->c;
    struct wstate ws = { .s = s, .c = c };
    ws.ctx = (struct log_fields){ .shard_id = s->id, .stream = c->stream_name };
    log_context_set(&ws.ctx);
    char wname[96];
    snprintf(wname, sizeof(wname), "shard %s", s->id);
    worker_register(&ws.w, wname);
    kinesis_records_init(&ws.kr);
    refresh_config(&ws);
    ws.cl = aws_client_new(c->o.aws);
    ws.stage = c->o.stage.worker_new ? c->o.stage.worker_new(c->o.stage.ud) : NULL;
    bool shard_end = false;
    if (!ws.cl || (c->o.stage.worker_new && !ws.stage)) {
        log_error("shard worker: out of memory");
        goto out;
    }

    int r = c->o.store->ops->load(c->o.store->impl, s->id, &ws.resume);
    if (r == -ENOENT)
        ws.resume.state = CKPT_NONE;
    else if (r < 0) {
        log_error_errno(r, "cannot read the checkpoint: %m; not starting this shard");
        goto out;
    }
    log_info("starting at %s%s%s", ckpt_state_name(ws.resume.state),
             ws.resume.state == CKPT_SEQUENCE ? " " : "",
             ws.resume.state == CKPT_SEQUENCE ? ws.resume.sequence : "");
    if (ws.resume.state == CKPT_SEQUENCE)
        ws.acked = ws.resume;

    while (!atomic_load(&c->stopping)) {
        refresh_config(&ws);
        if (conf_bool(ws.cfg, RWK_daemon_test_stall_workers)) {
            stall(&ws);
            continue;
        }
        worker_progress(&ws.w);
        if (reap(&ws, false) == -ENOLCK || !c->o.store->ops->owns(c->o.store->impl, s->id)) {
            log_warning("lease lost: stopping this shard without checkpointing");
            goto out_noflush;
        }
        if (!ws.iterator) {
            const char *after = ws.last_read[0] ? ws.last_read : NULL;
            if (get_iterator(&ws, &ws.resume, after) < 0) {
                ws.errors++;
                nap(&ws, backoff_usec(&ws));
                continue;
            }
        }
        if (s->inflight >= (unsigned)conf_int(ws.cfg, RWK_kinesis_max_inflight_batches)) {
            /* Back-pressure: a slow sink stops the polling. */
            wait_acks(&ws, 500 * USEC_PER_MSEC);
            continue;
        }
        uint64_t now = now_monotonic_usec();
        if (now < ws.next_call) {
            nap(&ws, ws.next_call - now);
            continue;
        }
        buf_reset(&ws.req);
        buf_puts(&ws.req, "{\"ShardIterator\":");
        buf_put_json_string(&ws.req, ws.iterator, strlen(ws.iterator));
        buf_printf(&ws.req, ",\"Limit\":%lld}", (long long)conf_int(ws.cfg, RWK_kinesis_max_records));
        struct aws_error err;
        atomic_fetch_add(&c->calls, 1);
        ws.next_call = now_monotonic_usec() + MIN_CALL_INTERVAL_USEC;
        r = aws_json_call(ws.cl, AWS_SVC_KINESIS, "GetRecords", ws.req.data, ws.req.len, &ws.resp, &err);
        if (r < 0) {
            char eb[512];
            if (streq(err.code, "ExpiredIteratorException")) {
                log_fields(LOG_INFO, 0, (&(struct log_fields){ .aws_error = err.code }),
                           "shard iterator expired; resuming after %s",
                           ws.last_read[0] ? ws.last_read : "the checkpoint");
                free(ws.iterator);
                ws.iterator = NULL;
                continue;
            }
            if (err.throttling)
                atomic_fetch_add(&c->throttled, 1);
            ws.errors++;
            log_fields(LOG_WARNING, 0,
                       (&(struct log_fields){ .aws_error = err.code, .aws_request_id = err.request_id[0] ? err.request_id : NULL }),
                       "GetRecords failed: %s; backing off", aws_error_str(&err, eb, sizeof(eb)));
            if (streq(err.code, "ResourceNotFoundException") || streq(err.code, "InvalidArgumentException")) {
                free(ws.iterator);
                ws.iterator = NULL;
            }
            nap(&ws, backoff_usec(&ws));
            continue;
        }
        ws.errors = 0;
        arena_reset(&ws.arena);
        r = kinesis_records_parse(&ws.kr, ws.resp.body.data, ws.resp.body.len, &ws.arena);
        if (r < 0) {
            log_warning("GetRecords: malformed response (%s); retrying", ws.kr.doc.err_msg ? ws.kr.doc.err_msg : "parse error");
            ws.errors++;
            nap(&ws, backoff_usec(&ws));
            continue;
        }
        /* 2 MiB/s per shard: a large response delays the next call. */
        uint64_t bytes_wait = (uint64_t)((double)ws.resp.body.len * 0.75 / SHARD_READ_BYTES_PER_SEC * 1e6);
        ws.next_call = MAX(ws.next_call, now_monotonic_usec() + bytes_wait);
        atomic_store(&s->millis_behind, ws.kr.millis_behind_latest);
        r = process_response(&ws);
        if (r < 0) {
            log_error_errno(r, "cannot process a batch: %m; retrying from the last position");
            free(ws.iterator);
            ws.iterator = NULL;
            nap(&ws, backoff_usec(&ws));
            continue;
        }
        if (!ws.kr.next_shard_iterator.p) {
            shard_end = true;
            break;
        }
        free(ws.iterator);
        ws.iterator = strndup(ws.kr.next_shard_iterator.p, ws.kr.next_shard_iterator.len);
        if (ws.kr.n_records == 0 || ws.kr.millis_behind_latest == 0)
            ws.next_call = MAX(ws.next_call, now_monotonic_usec() + conf_usec(ws.cfg, RWK_kinesis_poll_interval));
    }
out:
    drain_and_finish(&ws, shard_end);
out_noflush:
    if (c->o.stage.worker_free && ws.stage)
        c->o.stage.worker_free(ws.stage);
    /* Batches still held by slow sinks keep their own references. */
    pthread_mutex_lock(&s->acks.lock);
    struct rw_batch *b = s->fifo_head;
    s->fifo_head = s->fifo_tail = NULL;
    pthread_mutex_unlock(&s->acks.lock);
    while (b) {
        struct rw_batch *n = b->next;
        rw_batch_unref(b);
        b = n;
    }
    aws_client_free(ws.cl);
    kinesis_records_free(&ws.kr);
    arena_free(&ws.arena);
    rw_output_free(&ws.spare);
    free(ws.in);
    free(ws.iterator);
    buf_free(&ws.req);
    http_response_free(&ws.resp);
    conf_unref(ws.cfg);
    worker_unregister(&ws.w);
    log_context_set(NULL);
    atomic_store(&s->exited, true);
    wake_coordinator(c);
    return NULL;
}

/* ---- coordinator ---- */

static struct shard *find_shard(struct consumer *c, const char *id)
{
    for (struct shard *s = c->shards; s; s = s->next)
        if (streq(s->id, id))
            return s;
    return NULL;
}

static bool parent_done(struct consumer *c, const struct shard_info *all, size_t n, const char *pid)
{
    bool listed = false;
    for (size_t i = 0; i < n; i++)
        if (streq(all[i].id, pid))
            listed = true;
    if (!listed)
        return true; /* past the retention period: nothing left to read */
    struct shard *ps = find_shard(c, pid);
    if (ps && atomic_load(&ps->ended))
        return true;
    struct checkpoint cp;
    return c->o.store->ops->load(c->o.store->impl, pid, &cp) == 0 && cp.state == CKPT_SHARD_END;
}

static void reconcile(struct consumer *c, const struct shard_info *all, size_t n,
                      const struct rw_config *cfg)
{
    bool parent_first = conf_bool(cfg, RWK_kinesis_parent_first);
    for (size_t i = 0; i < n; i++) {
        const struct shard_info *si = &all[i];
        struct shard *s = find_shard(c, si->id);
        if (s && (s->thread_started || atomic_load(&s->ended)))
            continue;
        if (!c->o.store->ops->owns(c->o.store->impl, si->id))
            continue;
        if (!s) {
            struct checkpoint cp;
            if (c->o.store->ops->load(c->o.store->impl, si->id, &cp) == 0 && cp.state == CKPT_SHARD_END) {
                /* Remember finished shards so we do not reload them. */
                s = calloc(1, sizeof(*s));
                if (!s)
                    continue;
                snprintf(s->id, sizeof(s->id), "%s", si->id);
                atomic_store(&s->ended, true);
                s->next = c->shards;
                c->shards = s;
                continue;
            }
        }
        bool ready = true;
        for (unsigned p = 0; parent_first && p < si->n_parents; p++)
            if (!parent_done(c, all, n, si->parents[p])) {
                ready = false;
                log_debug("shard %s waits for its parent %s to end", si->id, si->parents[p]);
            }
        if (!ready)
            continue;
        if (!s) {
            s = calloc(1, sizeof(*s));
            if (!s)
                continue;
            rw_ack_queue_init(&s->acks);
            s->next = c->shards;
            c->shards = s;
        } else
            rw_ack_queue_init(&s->acks);
        s->c = c;
        snprintf(s->id, sizeof(s->id), "%s", si->id);
        s->n_parents = si->n_parents;
        memcpy(s->parents, si->parents, sizeof(s->parents));
        s->closed = si->closed;
        atomic_store(&s->millis_behind, -1);
        atomic_store(&s->exited, false);
        if (pthread_create(&s->thread, NULL, shard_main, s) == 0) {
            s->thread_started = true;
            log_info("shard %s: worker started%s", s->id, si->closed ? " (closed shard)" : "");
        } else {
            rw_ack_queue_destroy(&s->acks);
            log_error("shard %s: cannot start a thread", s->id);
        }
    }
}

static void join_exited(struct consumer *c)
{
    for (struct shard *s = c->shards; s; s = s->next)
        if (s->thread_started && atomic_load(&s->exited)) {
            pthread_join(s->thread, NULL);
            s->thread_started = false;
            rw_ack_queue_destroy(&s->acks);
        }
}

static void sync_store(struct consumer *c, const struct shard_info *all, size_t n)
{
    if (!c->o.store->ops->sync)
        return;
    struct ckpt_shard *v = calloc(n + 1, sizeof(*v));
    if (!v)
        return;
    for (size_t i = 0; i < n; i++) {
        v[i].id = all[i].id;
        v[i].n_parents = all[i].n_parents;
        for (unsigned p = 0; p < all[i].n_parents; p++)
            v[i].parents[p] = all[i].parents[p];
    }
    c->o.store->ops->sync(c->o.store->impl, v, n);
    free(v);
}

static void *coord_main(void *arg)
{
    struct consumer *c = arg;
    log_context_set(&c->log_ctx);
    worker_register(&c->coord_worker, "shard discovery");
    struct aws_client *cl = aws_client_new(c->o.aws);
    uint64_t next = 0;
    struct shard_info *all = NULL;
    size_t n_all = 0;
    bool have_list = false;
    while (!atomic_load(&c->stopping) && cl) {
        worker_progress(&c->coord_worker);
        join_exited(c);
        struct rw_config *cfg = daemon_config();
        uint64_t iv = cfg ? conf_usec(cfg, RWK_kinesis_shard_discovery_interval) : 30 * USEC_PER_SEC;
        uint64_t now = now_monotonic_usec();
        bool woke;
        pthread_mutex_lock(&c->lock);
        woke = c->wake;
        c->wake = false;
        pthread_mutex_unlock(&c->lock);
        if ((now >= next || woke) && cfg) {
            struct shard_info *fresh = NULL;
            size_t n = 0;
            if (list_shards(c, cl, &fresh, &n) == 0) {
                free(all);
                all = fresh;
                n_all = n;
                have_list = true;
                next = now + iv;
            } else
                next = now + MIN(iv, 5 * USEC_PER_SEC);
        }
        if (have_list && cfg && !atomic_load(&c->stopping)) {
            /* Leases (when the store has them) are renewed and balanced on
             * the store's own intervals; shards start as soon as they are
             * ours and their parents are done. */
            sync_store(c, all, n_all);
            reconcile(c, all, n_all, cfg);
        }
        conf_unref(cfg);
        pthread_mutex_lock(&c->lock);
        if (!c->wake && !atomic_load(&c->stopping)) {
            struct timespec ts;
            timespec_after(&ts, MIN(USEC_PER_SEC, next > now ? next - now : 0) + 1000);
            pthread_cond_timedwait(&c->cond, &c->lock, &ts);
        }
        pthread_mutex_unlock(&c->lock);
    }
    free(all);
    aws_client_free(cl);
    worker_unregister(&c->coord_worker);
    return NULL;
}

/* ---- lifecycle ---- */

int consumer_new(const struct consumer_options *o, struct consumer **out)
{
    struct consumer *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->o = *o;
    c->stream = strdup(o->stream);
    if (!c->stream) {
        free(c);
        return -ENOMEM;
    }
    c->is_arn = startswith(o->stream, "arn:");
    const char *slash = strrchr(o->stream, '/');
    snprintf(c->stream_name, sizeof(c->stream_name), "%s", c->is_arn && slash ? slash + 1 : o->stream);
    c->log_ctx.stream = c->stream_name;
    pthread_mutex_init(&c->lock, NULL);
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &a);
    pthread_condattr_destroy(&a);
    *out = c;
    return 0;
}

int consumer_start(struct consumer *c)
{
    int r = pthread_create(&c->coord, NULL, coord_main, c);
    if (r)
        return -r;
    c->coord_started = true;
    return 0;
}

int consumer_stop(struct consumer *c, uint64_t deadline)
{
    atomic_store(&c->deadline, deadline);
    atomic_store(&c->stopping, true);
    wake_coordinator(c);
    if (c->coord_started) {
        pthread_join(c->coord, NULL);
        c->coord_started = false;
    }
    /* Wake every worker waiting on its ack queue. */
    int ret = 0;
    for (struct shard *s = c->shards; s; s = s->next)
        if (s->thread_started) {
            pthread_mutex_lock(&s->acks.lock);
            pthread_cond_broadcast(&s->acks.cond);
            pthread_mutex_unlock(&s->acks.lock);
        }
    for (struct shard *s = c->shards; s; s = s->next)
        if (s->thread_started) {
            pthread_join(s->thread, NULL);
            s->thread_started = false;
            rw_ack_queue_destroy(&s->acks);
        }
    /* Nothing takes leases any more: the leases still ours go, so the next
     * owner takes them at once instead of after failover_time (the store
     * releases only what it still owns: not a lease a worker lost). Not
     * from each worker as it finishes draining: the coordinator may still
     * be in its last round then, and took a released lease straight back
     * (test_leases, "SIGTERM: leases released", one run in six under
     * load), leaving a row that named an exited instance until
     * failover_time passed. */
    for (struct shard *s = c->shards; s; s = s->next)
        c->o.store->ops->release(c->o.store->impl, s->id);
    return ret;
}

struct consumer *consumer_free(struct consumer *c)
{
    if (!c)
        return NULL;
    if (c->coord_started)
        consumer_stop(c, now_monotonic_usec());
    for (struct shard *s = c->shards, *n; s; s = n) {
        n = s->next;
        free(s);
    }
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c->stream);
    free(c);
    return NULL;
}

struct consumer_stats consumer_get_stats(struct consumer *c)
{
    struct consumer_stats st = {
        .records_in = atomic_load(&c->records_in),
        .lines_out = atomic_load(&c->lines_out),
        .deadlettered = atomic_load(&c->deadlettered),
        .get_records_calls = atomic_load(&c->calls),
        .throttled = atomic_load(&c->throttled),
        .max_millis_behind = -1,
    };
    for (struct shard *s = c->shards; s; s = s->next)
        if (s->thread_started && !atomic_load(&s->exited)) {
            st.shards_running++;
            st.max_millis_behind = MAX(st.max_millis_behind, atomic_load(&s->millis_behind));
        }
    return st;
}

void consumer_describe(struct consumer *c, struct buf *out)
{
    for (struct shard *s = c->shards; s; s = s->next)
        if (s->thread_started && !atomic_load(&s->exited))
            buf_printf(out, "%s: %lld ms behind, %llu records\n", s->id,
                       (long long)atomic_load(&s->millis_behind),
                       (unsigned long long)atomic_load(&s->records));
}

void consumer_foreach_shard(struct consumer *c, void (*fn)(void *ud, const struct consumer_shard_stats *st),
                            void *ud)
{
    /* Shards are only ever prepended while running (as in consumer_get_stats). */
    for (struct shard *s = c->shards; s; s = s->next) {
        if (!s->thread_started && !atomic_load(&s->records))
            continue;
        struct consumer_shard_stats st = {
            .shard_id = s->id,
            .running = s->thread_started && !atomic_load(&s->exited),
            .records_in = atomic_load(&s->records),
            .deadlettered = atomic_load(&s->deadlettered),
            .millis_behind = atomic_load(&s->millis_behind),
        };
        fn(ud, &st);
    }
}
