/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/kinesis_producer.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rarewatch/base64.h"
#include "rarewatch/log.h"
#include "rarewatch/strutil.h"

struct entry {
    size_t off, len; /* base64 data within p->data */
    size_t key_off, key_len;
    size_t raw_len;
    uint64_t tag;
};

struct kinesis_producer {
    struct aws_client *c;
    char *stream;
    bool is_arn;
    unsigned max_retries;
    struct buf data; /* base64 payloads and partition keys, back to back */
    struct entry *e;
    size_t n, cap;
    size_t batch_bytes;
    struct buf req;
    struct http_response resp;
    struct kinesis_producer_stats st;
    uint64_t rng;
    void (*result_cb)(void *ud, uint64_t tag, bool ok);
    void *result_ud;
};

struct kinesis_producer *kinesis_producer_new(struct aws_client *c, const char *stream,
                                              unsigned max_retries)
{
    struct kinesis_producer *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->c = c;
    p->stream = strdup(stream);
    p->is_arn = startswith(stream, "arn:");
    p->max_retries = max_retries;
    p->cap = KINESIS_MAX_BATCH_RECORDS;
    p->e = calloc(p->cap, sizeof(*p->e));
    p->rng = now_monotonic_usec() | 1;
    if (!p->stream || !p->e)
        return kinesis_producer_free(p);
    return p;
}

struct kinesis_producer *kinesis_producer_free(struct kinesis_producer *p)
{
    if (p) {
        free(p->stream);
        free(p->e);
        buf_free(&p->data);
        buf_free(&p->req);
        http_response_free(&p->resp);
        free(p);
    }
    return NULL;
}

struct kinesis_producer_stats kinesis_producer_get_stats(const struct kinesis_producer *p)
{
    return p->st;
}

void kinesis_producer_set_result_cb(struct kinesis_producer *p,
                                    void (*cb)(void *ud, uint64_t tag, bool ok), void *ud)
{
    p->result_cb = cb;
    p->result_ud = ud;
}

static void report(struct kinesis_producer *p, const size_t *idx, size_t n, const size_t *failed,
                   size_t nf, bool ok)
{
    if (!p->result_cb)
        return;
    for (size_t i = 0, j = 0; i < n; i++) {
        if (j < nf && failed[j] == idx[i]) {
            j++;
            continue;
        }
        p->result_cb(p->result_ud, p->e[idx[i]].tag, ok);
    }
}

static int build_request(struct kinesis_producer *p, const size_t *idx, size_t n)
{
    struct buf *b = &p->req;
    buf_reset(b);
    int r = buf_puts(b, p->is_arn ? "{\"StreamARN\":" : "{\"StreamName\":");
    r = r ?: buf_put_json_string(b, p->stream, strlen(p->stream));
    r = r ?: buf_puts(b, ",\"Records\":[");
    for (size_t i = 0; i < n && r >= 0; i++) {
        const struct entry *e = &p->e[idx[i]];
        r = buf_puts(b, i ? ",{\"Data\":\"" : "{\"Data\":\"");
        r = r ?: buf_append(b, p->data.data + e->off, e->len);
        r = r ?: buf_puts(b, "\",\"PartitionKey\":");
        r = r ?: buf_put_json_string(b, p->data.data + e->key_off, e->key_len);
        r = r ?: buf_putc(b, '}');
    }
    return r ?: buf_puts(b, "]}");
}

/* Indices of the entries the response says failed, in order; -EPROTO when
 * the response does not match the request. */
static int failed_entries(struct kinesis_producer *p, const size_t *idx, size_t n, size_t *out,
                          size_t *nout, char *first_error, size_t fe_len, struct aws_error *err)
{
    json_object *o = json_tokener_parse(p->resp.body.data ? p->resp.body.data : "");
    json_object *recs = NULL;
    if (!o || !json_object_object_get_ex(o, "Records", &recs) ||
        !json_object_is_type(recs, json_type_array) || json_object_array_length(recs) != n) {
        json_object_put(o);
        aws_error_set(err, AWS_ERR_RESPONSE, "MalformedResponse",
                      "PutRecords response does not list one result per record");
        return -EPROTO;
    }
    *nout = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *r = json_object_array_get_idx(recs, i), *code = NULL;
        if (json_object_object_get_ex(r, "ErrorCode", &code) && code &&
            !json_object_is_type(code, json_type_null)) {
            if (!*first_error) {
                json_object *m = NULL;
                json_object_object_get_ex(r, "ErrorMessage", &m);
                snprintf(first_error, fe_len, "%s: %s", json_object_get_string(code),
                         m ? json_object_get_string(m) : "");
            }
            out[(*nout)++] = idx[i];
        }
    }
    json_object_put(o);
    return 0;
}

/* The standard retry mode's capped full jitter, at a 100 ms base: entries
 * that failed inside an accepted request need no 1 s wait. */
static void jitter_sleep(struct kinesis_producer *p, unsigned attempt)
{
    p->rng ^= p->rng << 13;
    p->rng ^= p->rng >> 7;
    p->rng ^= p->rng << 17;
    uint64_t d = aws_retry_backoff(attempt, 20 * USEC_PER_SEC, (double)(p->rng >> 11) * 0x1.0p-53) / 10;
    struct timespec ts = { (time_t)(d / USEC_PER_SEC), (long)(d % USEC_PER_SEC) * 1000 };
    nanosleep(&ts, NULL);
}

int kinesis_producer_flush(struct kinesis_producer *p, struct aws_error *err)
{
    if (p->n == 0)
        return 0;
    size_t idx[KINESIS_MAX_BATCH_RECORDS], failed[KINESIS_MAX_BATCH_RECORDS];
    size_t n = p->n;
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    int ret = 0;
    for (unsigned attempt = 0; n > 0; attempt++) {
        int r = build_request(p, idx, n);
        if (r < 0)
            return r;
        p->st.requests++;
        r = aws_json_call(p->c, AWS_SVC_KINESIS, "PutRecords", p->req.data, p->req.len, &p->resp, err);
        if (r < 0) {
            /* The call failed as a whole after the client's own retries. */
            p->st.failed += n;
            report(p, idx, n, NULL, 0, false);
            ret = r;
            break;
        }
        size_t nf = 0;
        char first[256] = "";
        r = failed_entries(p, idx, n, failed, &nf, first, sizeof(first), err);
        if (r < 0) {
            /* A 2xx whose body we cannot read (cut off by a proxy): we do not
             * know which entries landed. Send them all again: at least once. */
            memcpy(failed, idx, n * sizeof(size_t));
            nf = n;
            snprintf(first, sizeof(first), "unreadable PutRecords response");
        } else {
            p->st.sent += n - nf;
            report(p, idx, n, failed, nf, true);
        }
        if (nf == 0)
            break;
        if (attempt >= p->max_retries) {
            log_warning("PutRecords: %zu records still failing after %u retries (%s); giving up on them",
                        nf, p->max_retries, first);
            p->st.failed += nf;
            report(p, failed, nf, NULL, 0, false);
            aws_error_set(err, AWS_ERR_SERVICE, "PartialFailure", "%zu records not accepted: %s", nf, first);
            ret = -EBUSY;
            break;
        }
        log_debug("PutRecords: %zu of %zu records failed (%s); retrying only those", nf, n, first);
        p->st.retried += nf;
        memcpy(idx, failed, nf * sizeof(size_t));
        n = nf;
        jitter_sleep(p, attempt);
    }
    p->n = 0;
    p->batch_bytes = 0;
    buf_reset(&p->data);
    return ret;
}

int kinesis_producer_add(struct kinesis_producer *p, const void *data, size_t len,
                         const char *partition_key, struct aws_error *err)
{
    return kinesis_producer_add_tagged(p, data, len, partition_key, 0, err);
}

int kinesis_producer_add_tagged(struct kinesis_producer *p, const void *data, size_t len,
                                const char *partition_key, uint64_t tag, struct aws_error *err)
{
    size_t kl = strlen(partition_key);
    if (len + kl > KINESIS_MAX_RECORD_BYTES || kl == 0 || kl > 256) {
        p->st.failed++;
        aws_error_set(err, AWS_ERR_CONFIG, "RecordTooLarge",
                      kl == 0 || kl > 256 ? "partition key must be 1 to 256 characters"
                                          : "record of %zu bytes exceeds the 1 MiB limit", len + kl);
        return -E2BIG;
    }
    if (p->n == KINESIS_MAX_BATCH_RECORDS || p->batch_bytes + len + kl > KINESIS_MAX_BATCH_BYTES) {
        int r = kinesis_producer_flush(p, err);
        if (r < 0 && r != -EBUSY)
            return r;
    }
    struct entry *e = &p->e[p->n];
    e->off = p->data.len;
    int r = buf_put_base64(&p->data, data, len);
    if (r < 0)
        return r;
    e->len = p->data.len - e->off;
    e->key_off = p->data.len;
    r = buf_append(&p->data, partition_key, kl);
    if (r < 0)
        return r;
    e->key_len = kl;
    e->raw_len = len;
    e->tag = tag;
    p->st.bytes += len;
    p->batch_bytes += len + kl;
    p->n++;
    return 0;
}
