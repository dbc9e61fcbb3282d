/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/sink_firehose.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rarewatch/base64.h"
#include "rarewatch/json_scan.h"
#include "rarewatch/log.h"
#include "rarewatch/sink_cloudwatch.h"
#include "rarewatch/strutil.h"

#define BACKOFF_MIN_USEC (100 * USEC_PER_MSEC)
#define BACKOFF_MAX_USEC (20 * USEC_PER_SEC)
#define PACE_MAX_USEC (1 * USEC_PER_SEC)
/* Dead-letter forwarding: beyond this many queued entries, drop (counted). */
#define TAP_MAX_QUEUED 256

struct fh_stream {
    char *name;
    struct fh_packer pk;
};

struct fh_sink {
    struct rw_queued_sink qs; /* first: the rw_sink pointer is this struct */
    struct sink_firehose_options o;
    char *main_name, *anom_name;
    struct aws_client *client;
    struct fh_stream main, anom;
    struct rw_batch **pending;
    size_t n_pending, cap_pending;
    uint64_t pending_since; /* monotonic usec of the oldest pending batch */
    size_t pending_lines, pending_bytes;
    uint64_t deadline;      /* set by stop(): give up retrying after it */
    struct buf req, rec;
    struct http_response resp;
    size_t *idx, *failed;   /* FH_MAX_BATCH_RECORDS each */
    uint64_t rng, pace;
    /* dead-letter items of the current flush */
    struct deadletter_item *dl;
    struct rw_provenance *dl_prov;
    size_t n_dl, cap_dl;
    struct json_doc doc;
    struct arena arena;
    /* the dead-letter tap */
    struct rw_ack_queue tap_acks;
    _Atomic size_t tap_queued;
    bool tap_acks_init;
};

static uint64_t rnd(struct fh_sink *fs)
{
    fs->rng ^= fs->rng << 13;
    fs->rng ^= fs->rng >> 7;
    fs->rng ^= fs->rng << 17;
    return fs->rng;
}

static bool giving_up(struct fh_sink *fs)
{
    return fs->deadline && now_monotonic_usec() >= fs->deadline;
}

/* Sleep, in short steps so a stop is noticed. */
static void nap(struct fh_sink *fs, uint64_t usec)
{
    uint64_t until = now_monotonic_usec() + usec;
    for (;;) {
        uint64_t now = now_monotonic_usec();
        if (now >= until || giving_up(fs))
            return;
        uint64_t d = MIN(until - now, 100 * USEC_PER_MSEC);
        struct timespec ts = { (time_t)(d / USEC_PER_SEC), (long)(d % USEC_PER_SEC) * 1000 };
        nanosleep(&ts, NULL);
    }
}

static uint64_t backoff(struct fh_sink *fs, unsigned attempt)
{
    uint64_t cap = MIN(BACKOFF_MAX_USEC, BACKOFF_MIN_USEC << MIN(attempt, 16u));
    return cap / 2 + rnd(fs) % (cap / 2 + 1);
}

static void pace_up(struct fh_sink *fs)
{
    fs->pace = MIN(PACE_MAX_USEC, fs->pace ? fs->pace * 2 : 20 * USEC_PER_MSEC);
}

static void pace_down(struct fh_sink *fs)
{
    fs->pace = fs->pace < 10 * USEC_PER_MSEC ? 0 : fs->pace / 2;
}

/* ---- dead-lettering what cannot be delivered ---- */

/* The line's "_kinesis" object as provenance (pointing into the line or
 * the arena), so a dead-lettered line keeps where it came from. */
static const struct rw_provenance *line_provenance(struct fh_sink *fs, const char *p, size_t len,
                                                   struct rw_provenance *out)
{
    memset(out, 0, sizeof(*out));
    char *copy = arena_strndup(&fs->arena, p, len);
    if (!copy || json_scan(&fs->doc, copy, len) < 0)
        return NULL;
    uint32_t k = json_obj_get(&fs->doc, 0, "_kinesis", 8);
    if (k == JSON_NONE || fs->doc.nodes[k].type != JSON_T_OBJECT)
        return NULL;
    static const struct {
        const char *key;
        size_t off;
    } f[] = {
        { "stream", offsetof(struct rw_provenance, stream) },
        { "shard_id", offsetof(struct rw_provenance, shard_id) },
        { "sequence_number", offsetof(struct rw_provenance, sequence_number) },
        { "partition_key", offsetof(struct rw_provenance, partition_key) },
    };
    for (size_t i = 0; i < ELEMENTSOF(f); i++) {
        uint32_t v = json_obj_get(&fs->doc, k, f[i].key, strlen(f[i].key));
        struct rw_str s = { "", 0 };
        if (v != JSON_NONE && fs->doc.nodes[v].type == JSON_T_STRING)
            json_get_string(&fs->doc, v, &s);
        /* The doc may decode escapes into its own arena, reset by the next
         * scan: keep a copy that lives until the write. */
        char *c = arena_strndup(&fs->arena, s.p, s.len);
        /* memcpy, not a cast: clang's -Wcast-align rejects char * -> struct * */
        struct rw_str val = { c ? c : "", c ? s.len : 0 };
        memcpy((char *)out + f[i].off, &val, sizeof(val));
    }
    uint32_t t = json_obj_get(&fs->doc, k, "arrival_time", 12);
    struct rw_str ts;
    long long secs;
    char tb[64];
    if (t != JSON_NONE && fs->doc.nodes[t].type == JSON_T_STRING && json_get_string(&fs->doc, t, &ts) == 0 &&
        ts.len < sizeof(tb)) {
        memcpy(tb, ts.p, ts.len);
        tb[ts.len] = 0;
        if (aws_parse_iso8601(tb, &secs) == 0 && secs > 0)
            out->arrival_time = (double)secs;
    }
    uint32_t v = json_obj_get(&fs->doc, k, "sub_sequence_number", 19);
    double d;
    if (v != JSON_NONE && json_get_number(&fs->doc, v, &d) == 0 && d >= 0)
        out->sub_sequence_number = (uint64_t)d, out->aggregated = d > 0;
    return out;
}

static int dl_add(struct fh_sink *fs, const char *p, size_t len, enum rw_stage stage, const char *reason)
{
    if (fs->n_dl == fs->cap_dl) {
        size_t nc = fs->cap_dl ? fs->cap_dl * 2 : 64;
        struct deadletter_item *d = realloc(fs->dl, nc * sizeof(*d));
        if (!d)
            return -ENOMEM;
        fs->dl = d;
        struct rw_provenance *pv = realloc(fs->dl_prov, nc * sizeof(*pv));
        if (!pv)
            return -ENOMEM;
        /* Items point at provenances: re-point after the move. */
        for (size_t i = 0; i < fs->n_dl; i++)
            if (fs->dl[i].prov)
                fs->dl[i].prov = &pv[fs->dl[i].prov - fs->dl_prov];
        fs->dl_prov = pv;
        fs->cap_dl = nc;
    }
    size_t dlen = len && p[len - 1] == '\n' ? len - 1 : len; /* the line, not its newline */
    const char *r = arena_strndup(&fs->arena, reason, strlen(reason));
    fs->dl[fs->n_dl] = (struct deadletter_item){
        .data = p, .len = dlen,
        .prov = line_provenance(fs, p, dlen, &fs->dl_prov[fs->n_dl]),
        .stage = stage, .component = fs->qs.sink.name, .reason = r ? r : "",
    };
    fs->n_dl++;
    return 0;
}

static int dl_add_record(struct fh_sink *fs, struct fh_stream *st, size_t rec, const char *reason)
{
    const struct fh_record *r = &st->pk.recs[rec];
    for (size_t i = r->first; i < r->first + r->n; i++) {
        int e = dl_add(fs, st->pk.lines[i].p, st->pk.lines[i].len, RW_STAGE_SINK, reason);
        if (e < 0)
            return e;
    }
    return 0;
}

/* Durable before the acks; a full directory waits (as the consumer does). */
static int dl_flush(struct fh_sink *fs)
{
    if (fs->n_dl == 0)
        return 0;
    int r;
    if (!fs->o.deadletter) {
        log_warning("%s: dropping %zu dead-letter entries that could not be forwarded (first: %s)",
                    fs->qs.sink.name, fs->n_dl, fs->dl[0].reason);
        atomic_fetch_add(&fs->qs.sink.stats.errors, fs->n_dl);
        r = 0;
    } else {
        bool said = false;
        while ((r = deadletter_write(fs->o.deadletter, fs->dl, fs->n_dl)) < 0) {
            if (!said)
                log_error_errno(r, "%s: cannot write %zu dead-letter entries: %m; retrying",
                                fs->qs.sink.name, fs->n_dl);
            said = true;
            if (giving_up(fs))
                return r;
            nap(fs, USEC_PER_SEC);
        }
        atomic_fetch_add(&fs->qs.sink.stats.deadlettered, fs->n_dl);
        log_warning("%s: %zu line%s dead-lettered (first: %s: %s)", fs->qs.sink.name, fs->n_dl,
                    fs->n_dl == 1 ? "" : "s", rw_stage_name(fs->dl[0].stage), fs->dl[0].reason);
    }
    fs->n_dl = 0;
    return r;
}

/* ---- sending ---- */

static int build_request(struct fh_sink *fs, struct fh_stream *st, const size_t *idx, size_t n)
{
    struct buf *b = &fs->req;
    buf_reset(b);
    int r = buf_puts(b, "{\"DeliveryStreamName\":");
    r = r ?: buf_put_json_string(b, st->name, strlen(st->name));
    r = r ?: buf_puts(b, ",\"Records\":[");
    for (size_t i = 0; i < n && r >= 0; i++) {
        const struct fh_record *rec = &st->pk.recs[idx[i]];
        r = buf_puts(b, i ? ",{\"Data\":\"" : "{\"Data\":\"");
        if (rec->n == 1)
            r = r ?: buf_put_base64(b, st->pk.lines[rec->first].p, st->pk.lines[rec->first].len);
        else {
            buf_reset(&fs->rec);
            for (size_t j = rec->first; j < rec->first + rec->n && r >= 0; j++)
                r = buf_append(&fs->rec, st->pk.lines[j].p, st->pk.lines[j].len);
            r = r ?: buf_put_base64(b, fs->rec.data, fs->rec.len);
        }
        r = r ?: buf_puts(b, "\"}");
    }
    return r ?: buf_puts(b, "]}");
}

/* Which of idx[0..n) the response says failed (in order). -EPROTO when the
 * response does not list one result per record. */
static int parse_failed(struct fh_sink *fs, const size_t *idx, size_t n, size_t *nf, char *first,
                        size_t first_len, bool *throttled)
{
    json_object *o = json_tokener_parse(fs->resp.body.data ? fs->resp.body.data : "");
    json_object *arr = NULL;
    if (!o || !json_object_object_get_ex(o, "RequestResponses", &arr) ||
        !json_object_is_type(arr, json_type_array) || json_object_array_length(arr) != n) {
        json_object_put(o);
        return -EPROTO;
    }
    *nf = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(arr, i), *code = NULL;
        if (json_object_object_get_ex(e, "ErrorCode", &code) && code &&
            !json_object_is_type(code, json_type_null)) {
            const char *c = json_object_get_string(code);
            if (!*first) {
                json_object *m = NULL;
                json_object_object_get_ex(e, "ErrorMessage", &m);
                snprintf(first, first_len, "%s: %s", c, m ? json_object_get_string(m) : "");
            }
            /* Firehose reports per-record throttling as ServiceUnavailable. */
            if (streq(c, "ServiceUnavailableException") || aws_error_code_is_throttling(c))
                *throttled = true;
            fs->failed[(*nf)++] = idx[i];
        }
    }
    json_object_put(o);
    return 0;
}

/* Send records idx[0..n) (one request's worth) until each is accepted or
 * given up (dead-lettered). -ECANCELED when stopping cut it short. */
static int send_request(struct fh_sink *fs, struct fh_stream *st, size_t n)
{
    struct rw_sink_stats *stats = &fs->qs.sink.stats;
    uint64_t start = now_monotonic_usec();
    unsigned attempt = 0, failures = 0;
    char eb[768];
    while (n > 0) {
        if (fs->pace)
            nap(fs, fs->pace);
        if (giving_up(fs))
            return -ECANCELED;
        int r = build_request(fs, st, fs->idx, n);
        if (r < 0)
            return r;
        struct aws_error err = { 0 };
        r = aws_json_call(fs->client, AWS_SVC_FIREHOSE, "PutRecordBatch", fs->req.data, fs->req.len,
                          &fs->resp, &err);
        bool timed_out = fs->o.retry_timeout_usec &&
                         now_monotonic_usec() - start >= fs->o.retry_timeout_usec;
        if (r < 0) {
            /* Failed as a whole after the client's own retries: an outage,
             * throttling, or a configuration problem. Keep the batches
             * unacknowledged (back-pressure) until retry_timeout. */
            atomic_fetch_add(&stats->errors, 1);
            if (err.throttling)
                pace_up(fs);
            if (timed_out) {
                log_error("%s: PutRecordBatch to %s failing for longer than retry_timeout (%s); "
                          "dead-lettering %zu records", fs->qs.sink.name, st->name,
                          aws_error_str(&err, eb, sizeof(eb)), n);
                for (size_t i = 0; i < n; i++)
                    if ((r = dl_add_record(fs, st, fs->idx[i], "PutRecordBatch kept failing")) < 0)
                        return r;
                return 0;
            }
            if (failures++ == 0 || failures % 10 == 0)
                log_warning("%s: PutRecordBatch to %s failed (%s); retrying (%u)", fs->qs.sink.name,
                            st->name, aws_error_str(&err, eb, sizeof(eb)), failures);
            atomic_fetch_add(&stats->retries, 1);
            nap(fs, backoff(fs, failures));
            continue;
        }
        if (failures)
            log_notice("%s: PutRecordBatch to %s succeeded again after %u failures", fs->qs.sink.name,
                       st->name, failures);
        failures = 0;
        size_t nf = 0;
        char first[256] = "";
        bool throttled = false;
        if (parse_failed(fs, fs->idx, n, &nf, first, sizeof(first), &throttled) < 0) {
            /* A 2xx we cannot read (cut off): which entries landed is
             * unknown. Send them all again: at least once. */
            memcpy(fs->failed, fs->idx, n * sizeof(*fs->failed));
            nf = n;
            snprintf(first, sizeof(first), "unreadable PutRecordBatch response");
        }
        for (size_t i = 0, j = 0; i < n; i++) {
            if (j < nf && fs->failed[j] == fs->idx[i]) {
                j++;
                continue;
            }
            const struct fh_record *rec = &st->pk.recs[fs->idx[i]];
            atomic_fetch_add(&stats->lines, rec->n);
            atomic_fetch_add(&stats->bytes, rec->bytes);
        }
        if (nf == 0) {
            pace_down(fs);
            return 0;
        }
        /* Rejected entries wait for their own backoff below; the pace
         * (between requests) only grows when whole requests are throttled. */
        (void)throttled;
        attempt++;
        if (attempt > fs->o.max_retries || timed_out) {
            log_error("%s: %zu records to %s still failing after %u re-sends (%s); dead-lettering them",
                      fs->qs.sink.name, nf, st->name, attempt - 1, first);
            for (size_t i = 0; i < nf; i++)
                if ((r = dl_add_record(fs, st, fs->failed[i], first)) < 0)
                    return r;
            return 0;
        }
        log_debug("%s: %zu of %zu records failed (%s); re-sending only those", fs->qs.sink.name, nf, n,
                  first);
        atomic_fetch_add(&stats->retries, nf);
        memcpy(fs->idx, fs->failed, nf * sizeof(*fs->idx));
        n = nf;
        nap(fs, backoff(fs, attempt));
    }
    return 0;
}

static int send_stream(struct fh_sink *fs, struct fh_stream *st)
{
    for (size_t first = 0; first < st->pk.n_recs;) {
        size_t n = fh_packer_next_request(&st->pk, first, NULL);
        for (size_t i = 0; i < n; i++)
            fs->idx[i] = first + i;
        int r = send_request(fs, st, n);
        if (r < 0)
            return r;
        first += n;
    }
    return 0;
}

static void observe(struct fh_sink *fs, const char *name, double v)
{
    struct cw_dim d = { "Sink", fs->qs.sink.name };
    sink_cloudwatch_observe(fs->o.metrics, name, "Milliseconds", &d, 1, v);
}

/* Send every pending batch; acknowledge them once all their lines were
 * accepted or dead-lettered. */
static int send_pending(struct fh_sink *fs)
{
    if (fs->n_pending == 0)
        return 0;
    fh_packer_reset(&fs->main.pk);
    fh_packer_reset(&fs->anom.pk);
    fs->n_dl = 0;
    arena_reset(&fs->arena);
    int r = 0;
    for (size_t i = 0; i < fs->n_pending && r >= 0; i++) {
        const struct rw_output *o = &fs->pending[i]->out;
        for (size_t j = 0; j < o->n && r >= 0; j++) {
            const struct rw_line_meta *m = &o->meta[j];
            const char *p = o->lines.data + m->off;
            bool to_main = fs->main.name && fh_forward_line(fs->o.forward, m);
            bool to_anom = fs->anom.name && m->is_anomaly;
            int a = to_main ? fh_packer_add(&fs->main.pk, p, m->len, (uint32_t)i) : 0;
            int b = to_anom && a == 0 ? fh_packer_add(&fs->anom.pk, p, m->len, (uint32_t)i) : 0;
            if (a == -E2BIG || b == -E2BIG) {
                char why[96];
                snprintf(why, sizeof(why), "line of %zu bytes exceeds the Firehose record limit of %u",
                         m->len, FH_MAX_RECORD_BYTES);
                r = dl_add(fs, p, m->len, RW_STAGE_OVERSIZE, why);
            } else if (a < 0 || b < 0)
                r = a < 0 ? a : b;
        }
    }
    if (r >= 0 && fs->main.name)
        r = send_stream(fs, &fs->main);
    if (r >= 0 && fs->anom.name)
        r = send_stream(fs, &fs->anom);
    if (r >= 0)
        r = dl_flush(fs);
    if (r < 0) {
        if (r != -ECANCELED)
            log_error_errno(r, "%s: cannot deliver %zu batches: %m", fs->qs.sink.name, fs->n_pending);
        /* Left unacknowledged: read again after a restart. */
        return r;
    }
    double now = (double)now_realtime_usec() / 1e6;
    for (size_t i = 0; i < fs->n_pending; i++) {
        struct rw_batch *b = fs->pending[i];
        if (fs->o.metrics) {
            if (b->min_arrival > 0)
                observe(fs, "DeliveryLatency", (now - b->min_arrival) * 1e3);
            for (size_t j = 0; j < b->out.n; j++)
                if (b->out.meta[j].is_anomaly && b->out.meta[j].event_time > 0)
                    observe(fs, "DetectionLatency", (now - b->out.meta[j].event_time) * 1e3);
        }
        atomic_fetch_add(&fs->qs.sink.stats.batches, 1);
        rw_batch_ack(b);
        rw_batch_unref(b);
    }
    fs->n_pending = 0;
    fs->pending_lines = fs->pending_bytes = 0;
    return 0;
}

static bool due(struct fh_sink *fs)
{
    return fs->n_pending &&
           (fs->pending_lines >= FH_MAX_BATCH_RECORDS * (fs->o.pack ? 8 : 1) ||
            fs->pending_bytes >= FH_MAX_BATCH_BYTES ||
            now_monotonic_usec() - fs->pending_since >= fs->o.flush_interval_usec ||
            rw_queued_sink_stopping(&fs->qs));
}

static int flush(struct rw_queued_sink *qs, struct rw_batch **batches, size_t n)
{
    struct fh_sink *fs = (struct fh_sink *)qs;
    if (fs->n_pending + n > fs->cap_pending) {
        size_t nc = MAX(fs->n_pending + n, fs->cap_pending * 2);
        struct rw_batch **p = realloc(fs->pending, nc * sizeof(*p));
        if (!p)
            return -ENOMEM; /* not acknowledged: the shards stop, we say so */
        fs->pending = p;
        fs->cap_pending = nc;
    }
    if (fs->n_pending == 0)
        fs->pending_since = now_monotonic_usec();
    for (size_t i = 0; i < n; i++) {
        /* queued_main drops its reference after flush(): keep one. */
        fs->pending[fs->n_pending++] = rw_batch_ref(batches[i]);
        fs->pending_lines += batches[i]->out.n;
        fs->pending_bytes += batches[i]->out.lines.len;
        if (batches[i]->acks == &fs->tap_acks)
            atomic_fetch_sub(&fs->tap_queued, batches[i]->out.n);
    }
    return due(fs) ? send_pending(fs) : 0;
}

static void idle(struct rw_queued_sink *qs)
{
    struct fh_sink *fs = (struct fh_sink *)qs;
    if (due(fs))
        send_pending(fs);
}

static int stop(struct rw_sink *s, uint64_t deadline)
{
    struct fh_sink *fs = (struct fh_sink *)s;
    fs->deadline = deadline;
    int r = rw_queued_sink_stop(s, deadline);
    if (r == 0 && fs->n_pending) {
        /* The thread is gone: send what it held back, by the deadline. */
        r = send_pending(fs);
        if (r < 0)
            log_warning("%s: %zu batches not delivered by the stop deadline; they are read again "
                        "after a restart", s->name, fs->n_pending);
    }
    return r;
}

static void sink_free(struct rw_sink *s)
{
    struct fh_sink *fs = (struct fh_sink *)s;
    if (fs->qs.started) {
        /* Freed without stop() (a failed start): the thread must be gone. */
        fs->deadline = now_monotonic_usec();
        rw_queued_sink_stop(s, now_monotonic_usec() + 5 * USEC_PER_SEC);
    }
    for (size_t i = 0; i < fs->n_pending; i++)
        rw_batch_unref(fs->pending[i]);
    for (size_t i = 0; i < fs->qs.qn; i++)
        rw_batch_unref(fs->qs.q[i]);
    free(fs->pending);
    free(fs->qs.q);
    fh_packer_free(&fs->main.pk);
    fh_packer_free(&fs->anom.pk);
    free(fs->main.name);
    free(fs->anom.name);
    aws_client_free(fs->client);
    buf_free(&fs->req);
    buf_free(&fs->rec);
    http_response_free(&fs->resp);
    free(fs->idx);
    free(fs->failed);
    free(fs->dl);
    free(fs->dl_prov);
    json_doc_free(&fs->doc);
    arena_free(&fs->arena);
    if (fs->tap_acks_init)
        rw_ack_queue_destroy(&fs->tap_acks);
    free(fs);
}

static const struct rw_sink_ops ops = {
    .submit = rw_queued_sink_submit,
    .stop = stop,
    .free = sink_free,
};

int sink_firehose_new(const struct sink_firehose_options *o, struct rw_sink **out)
{
    if (!o->delivery_stream && !o->anomalies_stream)
        return -EINVAL;
    struct fh_sink *fs = calloc(1, sizeof(*fs));
    if (!fs)
        return -ENOMEM;
    fs->o = *o;
    struct fh_limits lim = o->limits;
    if (!lim.max_batch_records)
        fh_limits_default(&lim);
    lim.pack = o->pack;
    lim.pack_size = o->pack_size;
    fh_packer_init(&fs->main.pk, &lim);
    fh_packer_init(&fs->anom.pk, &lim);
    fs->main.name = o->delivery_stream && o->forward != FH_FORWARD_NONE ? strdup(o->delivery_stream) : NULL;
    fs->anom.name = o->anomalies_stream ? strdup(o->anomalies_stream) : NULL;
    fs->client = aws_client_new(o->aws);
    fs->idx = calloc(FH_MAX_BATCH_RECORDS, sizeof(*fs->idx));
    fs->failed = calloc(FH_MAX_BATCH_RECORDS, sizeof(*fs->failed));
    fs->rng = now_monotonic_usec() | 1;
    json_doc_init(&fs->doc, &fs->arena);
    if (!fs->o.flush_interval_usec)
        fs->o.flush_interval_usec = USEC_PER_SEC;
    fs->qs.sink.ops = &ops;
    fs->qs.idle = idle;
    fs->qs.idle_interval_usec = MAX(fs->o.flush_interval_usec / 4, 10 * USEC_PER_MSEC);
    int r = -ENOMEM;
    if ((o->delivery_stream && o->forward != FH_FORWARD_NONE && !fs->main.name) ||
        (o->anomalies_stream && !fs->anom.name) || !fs->client || !fs->idx || !fs->failed ||
        (r = rw_queued_sink_start(&fs->qs, o->name ? o->name : "firehose", flush)) < 0) {
        sink_free(&fs->qs.sink);
        return r;
    }
    *out = &fs->qs.sink;
    return 0;
}

/* ---- dead-letter forwarding ---- */

static void tap(void *ud, const char *lines, size_t len)
{
    struct fh_sink *fs = ud;
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += lines[i] == '\n';
    if (atomic_load(&fs->tap_queued) + n > TAP_MAX_QUEUED) {
        atomic_fetch_add(&fs->qs.sink.stats.errors, n);
        return;
    }
    struct rw_batch *b = rw_batch_new(&fs->tap_acks);
    int r = b ? 0 : -ENOMEM;
    for (size_t off = 0; off < len && r >= 0;) {
        const char *nl = memchr(lines + off, '\n', len - off);
        size_t end = nl ? (size_t)(nl - lines) + 1 : len;
        static const char key[] = ",\"data_base64\":\"";
        const char *k = NULL;
        if (end - off > FH_MAX_RECORD_BYTES)
            for (const char *q = lines + off; (q = memmem(q, lines + end - q, key, sizeof(key) - 1)); q++)
                k = q;
        if (k && end - off > 3) {
            /* An entry over the Firehose record limit is forwarded without
             * its bytes (they stay in the local file). */
            size_t dlen = (size_t)(lines + end - 3 - (k + sizeof(key) - 1));
            r = buf_append(&b->out.lines, lines + off, (size_t)(k - lines - off));
            r = r ?: buf_printf(&b->out.lines, ",\"data_omitted_base64_bytes\":%zu}\n", dlen);
        } else
            r = buf_append(&b->out.lines, lines + off, end - off);
        off = end;
    }
    if (r < 0) {
        rw_batch_unref(b);
        atomic_fetch_add(&fs->qs.sink.stats.errors, n);
        return;
    }
    len = b->out.lines.len;
    for (size_t off = 0; off < len;) {
        const char *nl = memchr(b->out.lines.data + off, '\n', len - off);
        size_t end = nl ? (size_t)(nl - b->out.lines.data) + 1 : len;
        struct rw_line_meta *m = rw_output_begin_line(&b->out, -1);
        if (!m)
            break;
        m->off = off;
        m->len = end - off;
        off = end;
    }
    atomic_fetch_add(&fs->tap_queued, b->out.n);
    struct rw_sink *s = &fs->qs.sink;
    if (rw_sinks_submit(&s, 1, b) < 0)
        atomic_fetch_sub(&fs->tap_queued, b->out.n);
    rw_batch_unref(b);
}

void sink_firehose_tap_deadletter(struct rw_sink *s, struct deadletter *d)
{
    struct fh_sink *fs = (struct fh_sink *)s;
    if (!fs->tap_acks_init) {
        rw_ack_queue_init(&fs->tap_acks);
        fs->tap_acks_init = true;
    }
    deadletter_set_tap(d, tap, fs);
}
