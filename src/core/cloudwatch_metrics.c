/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/cloudwatch_metrics.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/aws.h"
#include "rarewatch/strutil.h"

void cw_agg_init(struct cw_agg *a) { memset(a, 0, sizeof(*a)); }

void cw_agg_reset(struct cw_agg *a)
{
    a->n = 0;
    if (a->ht)
        memset(a->ht, 0, a->ht_cap * sizeof(*a->ht));
}

void cw_agg_free(struct cw_agg *a)
{
    free(a->m);
    free(a->ht);
    cw_agg_init(a);
}

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return (h ^ 0xff) * 0x100000001b3ULL; /* separator */
}

static uint64_t key_hash(const char *name, const struct cw_dim *dims, unsigned n)
{
    uint64_t h = fnv(0xcbf29ce484222325ULL, name);
    for (unsigned i = 0; i < n; i++)
        h = fnv(fnv(h, dims[i].name), dims[i].value);
    return h;
}

static bool same(const struct cw_metric *m, const char *name, const struct cw_dim *dims, unsigned n)
{
    if (m->n_dims != n || strcmp(m->name, name) != 0)
        return false;
    for (unsigned i = 0; i < n; i++)
        if (strncmp(m->dim_name[i], dims[i].name, sizeof(m->dim_name[i]) - 1) != 0 ||
            strncmp(m->dim_value[i], dims[i].value, sizeof(m->dim_value[i]) - 1) != 0)
            return false;
    return true;
}

static size_t slot_of(const struct cw_agg *a, uint64_t h, const char *name, const struct cw_dim *dims,
                      unsigned n)
{
    size_t mask = a->ht_cap - 1;
    for (size_t s = h & mask;; s = (s + 1) & mask) {
        uint32_t v = a->ht[s];
        if (!v)
            return s;
        const struct cw_metric *m = &a->m[v - 1];
        if (m->hash == h && same(m, name, dims, n))
            return s;
    }
}

static int rehash(struct cw_agg *a, size_t cap)
{
    uint32_t *ht = calloc(cap, sizeof(*ht));
    if (!ht)
        return -ENOMEM;
    free(a->ht);
    a->ht = ht;
    a->ht_cap = cap;
    for (size_t i = 0; i < a->n; i++) {
        size_t s = a->m[i].hash & (cap - 1);
        while (a->ht[s])
            s = (s + 1) & (cap - 1);
        a->ht[s] = (uint32_t)(i + 1);
    }
    return 0;
}

static struct cw_metric *get(struct cw_agg *a, const char *name, const char *unit, enum cw_kind kind,
                             const struct cw_dim *dims, unsigned n)
{
    if (n > CW_MAX_DIMS)
        return NULL;
    if ((a->n + 1) * 2 > a->ht_cap && rehash(a, a->ht_cap ? a->ht_cap * 2 : 64) < 0)
        return NULL;
    uint64_t h = key_hash(name, dims, n);
    size_t s = slot_of(a, h, name, dims, n);
    if (a->ht[s])
        return &a->m[a->ht[s] - 1];
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 32;
        struct cw_metric *m = realloc(a->m, nc * sizeof(*m));
        if (!m)
            return NULL;
        a->m = m;
        a->cap = nc;
    }
    struct cw_metric *m = &a->m[a->n];
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), "%s", name);
    snprintf(m->unit, sizeof(m->unit), "%s", unit);
    m->kind = kind;
    m->n_dims = n;
    for (unsigned i = 0; i < n; i++) {
        snprintf(m->dim_name[i], sizeof(m->dim_name[i]), "%s", dims[i].name);
        snprintf(m->dim_value[i], sizeof(m->dim_value[i]), "%s", dims[i].value);
    }
    m->min = INFINITY;
    m->max = -INFINITY;
    m->hash = h;
    a->ht[s] = (uint32_t)(++a->n);
    return m;
}

int cw_agg_count(struct cw_agg *a, const char *name, const struct cw_dim *dims, unsigned n_dims,
                 double delta)
{
    struct cw_metric *m = get(a, name, "Count", CW_COUNTER, dims, n_dims);
    if (!m)
        return n_dims > CW_MAX_DIMS ? -EINVAL : -ENOMEM;
    m->sum += delta;
    m->count = 1;
    return 0;
}

int cw_agg_observe(struct cw_agg *a, const char *name, const char *unit, const struct cw_dim *dims,
                   unsigned n_dims, double value)
{
    if (!isfinite(value))
        return -EINVAL;
    struct cw_metric *m = get(a, name, unit, CW_STAT, dims, n_dims);
    if (!m)
        return n_dims > CW_MAX_DIMS ? -EINVAL : -ENOMEM;
    m->count++;
    m->sum += value;
    m->min = MIN(m->min, value);
    m->max = MAX(m->max, value);
    return 0;
}

const struct cw_metric *cw_agg_find(const struct cw_agg *a, const char *name,
                                    const struct cw_dim *dims, unsigned n_dims)
{
    if (!a->ht_cap || n_dims > CW_MAX_DIMS)
        return NULL;
    uint64_t h = key_hash(name, dims, n_dims);
    size_t s = slot_of(a, h, name, dims, n_dims);
    return a->ht[s] ? &a->m[a->ht[s] - 1] : NULL;
}

static int put_num(struct buf *b, const char *key, double v)
{
    char num[40];
    /* %.17g round-trips a double; CloudWatch accepts up to 2^360. */
    snprintf(num, sizeof(num), "%.17g", v);
    return aws_form_append(b, key, num);
}

static int encode_datum(struct buf *b, const struct cw_metric *m, size_t k, const char *ts,
                        bool high_res)
{
    char key[96];
    int r;
#define K(fmt, ...) (snprintf(key, sizeof(key), "MetricData.member.%zu." fmt, k, ##__VA_ARGS__), key)
    r = aws_form_append(b, K("MetricName"), m->name);
    for (unsigned d = 0; d < m->n_dims && r >= 0; d++) {
        r = aws_form_append(b, K("Dimensions.member.%u.Name", d + 1), m->dim_name[d]);
        r = r ?: aws_form_append(b, K("Dimensions.member.%u.Value", d + 1), m->dim_value[d]);
    }
    r = r ?: aws_form_append(b, K("Timestamp"), ts);
    if (m->kind == CW_COUNTER || m->count == 1)
        r = r ?: put_num(b, K("Value"), m->sum);
    else {
        r = r ?: put_num(b, K("StatisticValues.SampleCount"), m->count);
        r = r ?: put_num(b, K("StatisticValues.Sum"), m->sum);
        r = r ?: put_num(b, K("StatisticValues.Minimum"), m->min);
        r = r ?: put_num(b, K("StatisticValues.Maximum"), m->max);
    }
    r = r ?: aws_form_append(b, K("Unit"), m->unit);
    if (high_res)
        r = r ?: aws_form_append(b, K("StorageResolution"), "1");
#undef K
    return r;
}

int cw_encode(const struct cw_agg *a, size_t first, const struct cw_encode_options *o,
              struct buf *out)
{
    size_t max_d = o->max_datums ? MIN(o->max_datums, (size_t)CW_MAX_DATUMS) : CW_MAX_DATUMS;
    size_t max_b = o->max_bytes ? o->max_bytes : CW_MAX_REQUEST_BYTES;
    char ts[40];
    /* Whole seconds: CloudWatch keeps 1 s (high resolution) at best. */
    format_iso8601_ms(ts, sizeof(ts), o->timestamp_usec / USEC_PER_SEC * USEC_PER_SEC);
    buf_reset(out);
    int r = buf_puts(out, "Action=PutMetricData&Version=2010-08-01");
    r = r ?: aws_form_append(out, "Namespace", o->namespace_);
    if (r < 0)
        return r;
    size_t n = 0;
    for (size_t i = first; i < a->n && n < max_d; i++) {
        size_t before = out->len;
        r = encode_datum(out, &a->m[i], n + 1, ts, o->high_resolution);
        if (r < 0)
            return r;
        if (out->len > max_b) {
            out->len = before;
            out->data[before] = 0;
            if (n == 0)
                return -E2BIG;
            break;
        }
        n++;
    }
    return (int)n;
}

void cw_keycap_init(struct cw_keycap *c, size_t max)
{
    memset(c, 0, sizeof(*c));
    c->max = max;
}

void cw_keycap_free(struct cw_keycap *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->keys[i]);
    free(c->keys);
    cw_keycap_init(c, c->max);
}

const char *cw_keycap_map(struct cw_keycap *c, const char *key, size_t len)
{
    len = MIN(len, (size_t)255);
    for (size_t i = 0; i < c->n; i++)
        if (strlen(c->keys[i]) == len && memcmp(c->keys[i], key, len) == 0)
            return c->keys[i];
    if (c->n >= c->max)
        goto other;
    char **k = realloc(c->keys, (c->n + 1) * sizeof(*k));
    if (!k)
        goto other;
    c->keys = k;
    if (!(c->keys[c->n] = strndup(key, len)))
        goto other;
    return c->keys[c->n++];
other:
    c->overflowed++;
    return CW_OTHER_KEY;
}
