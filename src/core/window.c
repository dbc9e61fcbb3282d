/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/window.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/buf.h"
#include "rarewatch/conf_schema.h"
#include "rarewatch/expr.h"
#include "rarewatch/json_out.h"
#include "rarewatch/keytab.h"
#include "rarewatch/record.h"
#include "rarewatch/strutil.h"

/* HyperLogLog with 2^8 registers: standard error 1.04/16 = 6.5 %, exact
 * enough for small counts through linear counting. */
#define HLL_P 8
#define HLL_M (1u << HLL_P)
/* Log-bucket quantile sketch (DDSketch-like): relative accuracy 2 %
 * (gamma = 1.02/0.98), 256 buckets cover a factor of about 27,000 (4.4
 * decades) between the smallest and the largest value; beyond that the
 * lowest buckets collapse into one, which keeps the quantiles above the
 * collapsed values within 2 %. */
#define DD_ALPHA 0.02
#define DD_BUCKETS 256
#define DD_MIN_VALUE 1e-9
#define KEY_MAX 128
#define MAX_FIELDS 32
#define NO_TIME INT64_MIN

enum agg_fn { A_COUNT, A_SUM, A_AVG, A_MIN, A_MAX, A_DISTINCT, A_P50, A_P95, A_P99 };
static const char *const agg_names[] = { "count", "sum", "avg", "min", "max", "distinct_count", "p50", "p95", "p99" };

struct num_blk {
    uint64_t n;
    double sum, min, max;
};

struct dd_blk {
    int32_t base;  /* bucket i holds values with index base + i */
    uint32_t low;  /* values <= DD_MIN_VALUE (zero, negative) */
    uint64_t n;    /* in buckets */
    uint32_t b[DD_BUCKETS];
};

/* One window of one key; field blocks follow at the offsets in wfield. */
struct win_blk {
    int64_t start; /* usec since the epoch; NO_TIME: free */
    uint64_t count;
};

/* Per key: the ring of windows that can be open at once. */
struct key_hdr {
    uint32_t nopen;
    uint32_t pad_[3];
};

struct wfield {
    char *spec;
    char *col; /* spec with non-alphanumerics as '_' */
    struct json_path *path;
    bool num, hll, dd;
    uint32_t off_num, off_hll, off_dd;
};

struct wagg {
    enum agg_fn fn;
    int field; /* -1 for count */
    char *col;
};

struct wdef {
    char *name;
    int64_t size, slide, lateness, idle; /* usec */
    bool arrival;
    struct json_path *time_path;
    struct expr *key, *where;
    struct wfield f[MAX_FIELDS];
    size_t nf;
    struct wagg *a;
    size_t na;
    uint32_t n_open;
    size_t blk_size;
    struct keytab *kt;
    int64_t maxt, wm, next_close;
    double last_wall; /* wall clock of the last record, NaN: none yet */
    bool seen;        /* a record came without a wall clock: the next tick's is it */
    struct win_stats st;
};

struct win_set {
    struct wdef *d;
    size_t n;
    struct arena scratch;
    void *md;
    struct buf out;
    struct buf key;
};

/* Per record and field: what the windows add. */
struct fval {
    bool has_num, has_hash;
    double x;
    uint64_t hash;
};

size_t win_set_count(const struct win_set *s) { return s ? s->n : 0; }

static void def_free(struct wdef *d)
{
    free(d->name);
    json_path_free(d->time_path);
    expr_free(d->key);
    expr_free(d->where);
    for (size_t i = 0; i < d->nf; i++) {
        free(d->f[i].spec);
        free(d->f[i].col);
        json_path_free(d->f[i].path);
    }
    for (size_t i = 0; i < d->na; i++)
        free(d->a[i].col);
    free(d->a);
    keytab_free(d->kt);
}

struct win_set *win_set_free(struct win_set *s)
{
    if (s) {
        for (size_t i = 0; i < s->n; i++)
            def_free(&s->d[i]);
        free(s->d);
        arena_free(&s->scratch);
        expr_match_data_free(s->md);
        buf_free(&s->out);
        buf_free(&s->key);
        free(s);
    }
    return NULL;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static void on_evict(void *value, void *ud)
{
    struct wdef *d = ud;
    const struct key_hdr *h = value;
    d->st.evicted_windows += h->nopen;
}

/* ---- compile ---- */

_printf_(4, 5) static void bad(struct conf_diag *diag, const struct conf_value *v, size_t col, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (col)
        conf_diag_add(diag, NULL, 0, "%s:%u:%zu: %s", v->file ? v->file : "(config)", v->line, col, msg);
    else
        conf_diag_add(diag, v->file, v->line, "%s", msg);
}

static int add_field(struct wdef *d, const char *spec, size_t len, int *out)
{
    for (size_t i = 0; i < d->nf; i++)
        if (strlen(d->f[i].spec) == len && memcmp(d->f[i].spec, spec, len) == 0) {
            *out = (int)i;
            return 0;
        }
    if (d->nf == MAX_FIELDS)
        return -E2BIG;
    struct wfield *f = &d->f[d->nf];
    /* Counted in nf (and freed with the set) from the first allocation. */
    d->nf++;
    if (!(f->spec = strndup(spec, len)) || !(f->col = strdup(f->spec)))
        return -ENOMEM;
    int r = json_path_compile(f->spec, &f->path);
    if (r < 0)
        return r;
    for (char *c = f->col; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
            *c = '_';
    *out = (int)d->nf - 1;
    return 0;
}

/* "sum(amount)" → fn, field. Column within the raw value for errors. */
static int parse_aggregates(struct wdef *d, const struct conf_section *sec, const struct conf_value *v,
                            struct conf_diag *diag)
{
    size_t n = strv_length(v->list);
    if (n == 0) {
        bad(diag, v, 0, "[window.%s] aggregates: at least one is needed (e.g. count)", sec->name);
        return -EINVAL;
    }
    if (!(d->a = calloc(n, sizeof(*d->a))))
        return -ENOMEM;
    int errors = 0;
    const char *raw = v->raw ? v->raw : "";
    const char *from = raw;
    for (size_t i = 0; i < n; i++) {
        const char *item = v->list[i];
        const char *at = strstr(from, item);
        size_t col = v->set ? (size_t)(v->column ? v->column : 1) + (size_t)(at ? at - raw : 0) : 0;
        if (at)
            from = at + strlen(item);
        struct wagg *a = &d->a[d->na];
        const char *lp = strchr(item, '(');
        size_t fl = lp ? (size_t)(lp - item) : strlen(item);
        int fn = -1;
        for (size_t k = 0; k < ELEMENTSOF(agg_names); k++)
            if (strlen(agg_names[k]) == fl && memcmp(agg_names[k], item, fl) == 0)
                fn = (int)k;
        if (fn < 0) {
            bad(diag, v, col, "[window.%s] aggregates: unknown aggregate '%.*s' (count, sum, avg, min, max, "
                "distinct_count, p50, p95, p99)", sec->name, (int)fl, item);
            errors++;
            continue;
        }
        a->fn = (enum agg_fn)fn;
        a->field = -1;
        size_t il = strlen(item);
        if (fn == A_COUNT) {
            if (lp && !streq(lp, "()")) {
                bad(diag, v, col, "[window.%s] aggregates: count takes no field", sec->name);
                errors++;
                continue;
            }
            if (!(a->col = strdup("count")))
                return -ENOMEM;
        } else {
            if (!lp || item[il - 1] != ')' || il - 1 <= fl + 1) {
                bad(diag, v, col, "[window.%s] aggregates: %s needs a field: %s(FIELD)", sec->name,
                    agg_names[fn], agg_names[fn]);
                errors++;
                continue;
            }
            int r = add_field(d, lp + 1, il - fl - 2, &a->field);
            if (r == -ENOMEM)
                return r;
            if (r < 0) {
                bad(diag, v, col + fl + 1, "[window.%s] aggregates: %s", sec->name,
                    r == -E2BIG ? "too many fields (at most 32)" : "not a field path");
                errors++;
                continue;
            }
            struct wfield *f = &d->f[a->field];
            f->num |= fn != A_DISTINCT;
            f->hll |= fn == A_DISTINCT;
            f->dd |= fn >= A_P50;
            if (asprintf(&a->col, "%s_%s", agg_names[fn], f->col) < 0)
                return -ENOMEM;
        }
        for (size_t k = 0; k < d->na; k++)
            if (streq(d->a[k].col, a->col)) {
                bad(diag, v, col, "[window.%s] aggregates: column '%s' twice", sec->name, a->col);
                errors++;
                break;
            }
        d->na++;
    }
    return errors ? -EINVAL : 0;
}

static int compile_def(struct wdef *d, const struct rw_config *cfg, const struct conf_section *sec,
                       struct conf_diag *diag)
{
    int errors = 0, r;
    if (!(d->name = strdup(sec->name)))
        return -ENOMEM;
    const struct conf_value *size = conf_sget(sec, RWK_window_size), *slide = conf_sget(sec, RWK_window_slide);
    d->size = size->has_value ? (int64_t)size->u : 60 * (int64_t)USEC_PER_SEC;
    d->slide = slide->has_value ? (int64_t)slide->u : d->size;
    d->lateness = (int64_t)conf_sget(sec, RWK_window_allowed_lateness)->u;
    d->idle = (int64_t)conf_sget(sec, RWK_window_idle_timeout)->u;
    d->arrival = conf_sget(sec, RWK_window_time)->e == 1;
    if (d->slide > d->size) {
        bad(diag, slide, 0, "[window.%s] slide must not be longer than size (records between windows "
            "would be lost)", sec->name);
        errors++;
    }
    int64_t n_open = (d->size + d->lateness + d->slide - 1) / d->slide + 1;
    if (n_open > WIN_MAX_OPEN) {
        bad(diag, slide->set ? slide : size, 0, "[window.%s] (size + allowed_lateness) / slide allows %lld "
            "open windows per key (at most %d): use a longer slide or less lateness", sec->name,
            (long long)n_open, WIN_MAX_OPEN);
        errors++;
        n_open = WIN_MAX_OPEN;
    }
    d->n_open = (uint32_t)n_open;
    const struct conf_value *tf = conf_sget(sec, RWK_window_time_field);
    const char *tfs = tf->has_value ? tf->s : NULL;
    if (d->arrival && tfs) {
        bad(diag, tf, 0, "[window.%s] time_field applies to time = event only", sec->name);
        errors++;
    } else if (tfs && json_path_compile(tfs, &d->time_path) < 0) {
        bad(diag, tf, 0, "[window.%s] time_field: not a field path: %s", sec->name, tfs);
        errors++;
    }
    char what[160];
    const struct conf_value *kv = conf_sget(sec, RWK_window_key), *wv = conf_sget(sec, RWK_window_where);
    if (kv->has_value) {
        snprintf(what, sizeof(what), "[window.%s] key", sec->name);
        if ((r = expr_compile_conf(kv, what, diag, &d->key)) == -ENOMEM)
            return r;
        errors += r < 0;
    }
    if (wv->has_value) {
        snprintf(what, sizeof(what), "[window.%s] where", sec->name);
        if ((r = expr_compile_conf(wv, what, diag, &d->where)) == -ENOMEM)
            return r;
        errors += r < 0;
    }
    if ((r = parse_aggregates(d, sec, conf_sget(sec, RWK_window_aggregates), diag)) == -ENOMEM)
        return r;
    errors += r < 0;
    (void)cfg;
    if (errors)
        return -EINVAL;
    /* The window block: header, then per field its aggregate state. */
    size_t off = sizeof(struct win_blk);
    for (size_t i = 0; i < d->nf; i++) {
        struct wfield *f = &d->f[i];
        if (f->num) {
            f->off_num = (uint32_t)off;
            off += sizeof(struct num_blk);
        }
        if (f->dd) {
            f->off_dd = (uint32_t)off;
            off += sizeof(struct dd_blk);
        }
        if (f->hll) {
            f->off_hll = (uint32_t)off;
            off += HLL_M;
        }
    }
    d->blk_size = (off + 15) & ~(size_t)15;
    size_t vsize = sizeof(struct key_hdr) + d->n_open * d->blk_size;
    const struct conf_value *mk = conf_sget(sec, RWK_window_max_keys);
    if ((double)vsize * (double)mk->i > 4.0 * 1024 * 1024 * 1024) {
        bad(diag, mk->set ? mk : size, 0, "[window.%s] max_keys = %lld at %zu bytes per key (%u open "
            "windows of %zu bytes) would need more than 4 GiB per shard worker", sec->name,
            (long long)mk->i, vsize, d->n_open, d->blk_size);
        return -EINVAL;
    }
    d->kt = keytab_new(&(struct keytab_params){
        .max_keys = (uint32_t)mk->i,
        .value_size = (uint32_t)vsize,
        .key_max = KEY_MAX,
        .on_remove = on_evict,
        .userdata = d,
    });
    if (!d->kt)
        return -ENOMEM;
    d->maxt = d->wm = NO_TIME;
    d->next_close = INT64_MAX;
    d->last_wall = NAN;
    d->st.name = d->name;
    return 0;
}

int win_set_new(const struct rw_config *cfg, struct conf_diag *diag, struct win_set **out)
{
    _cleanup_(win_set_freep) struct win_set *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    size_t n = conf_named_count(cfg, "window");
    if (!(s->d = calloc(n ? n : 1, sizeof(*s->d))))
        return -ENOMEM;
    int errors = 0;
    for (size_t i = 0; i < n; i++) {
        s->n = i + 1;
        int r = compile_def(&s->d[i], cfg, conf_named_nth(cfg, "window", i), diag);
        if (r == -ENOMEM)
            return r;
        errors += r < 0;
    }
    if (errors)
        return -EINVAL;
    if (n && !(s->md = expr_match_data_new()))
        return -ENOMEM;
    *out = TAKE_PTR(s);
    return 0;
}

/* ---- the sketches ---- */

static double dd_lngamma(void) { return log((1 + DD_ALPHA) / (1 - DD_ALPHA)); }

static void dd_add(struct dd_blk *s, double x)
{
    if (!(x > DD_MIN_VALUE)) {
        s->low++;
        return;
    }
    int32_t idx = (int32_t)ceil(log(x) / dd_lngamma());
    if (s->n == 0) {
        s->base = idx - DD_BUCKETS / 2;
    } else if (idx >= s->base + DD_BUCKETS) {
        /* Larger than the range: move it up, the lowest buckets collapse
         * into the new lowest. */
        int64_t shift = (int64_t)idx - (s->base + DD_BUCKETS - 1);
        uint32_t sum = 0;
        for (int64_t i = 0; i <= MIN(shift, DD_BUCKETS - 1); i++)
            sum += s->b[i];
        if (shift >= DD_BUCKETS) {
            memset(s->b, 0, sizeof(s->b));
        } else {
            memmove(s->b, s->b + shift, (size_t)(DD_BUCKETS - shift) * sizeof(s->b[0]));
            memset(s->b + DD_BUCKETS - shift, 0, (size_t)shift * sizeof(s->b[0]));
        }
        s->b[0] = sum;
        s->base += (int32_t)shift;
    } else if (idx < s->base) {
        /* Smaller: move the range down as far as the top is empty. */
        int32_t top = DD_BUCKETS - 1;
        while (top > 0 && s->b[top] == 0)
            top--;
        int32_t room = DD_BUCKETS - 1 - top, shift = MIN(room, s->base - idx);
        if (shift > 0) {
            memmove(s->b + shift, s->b, (size_t)(DD_BUCKETS - shift) * sizeof(s->b[0]));
            memset(s->b, 0, (size_t)shift * sizeof(s->b[0]));
            s->base -= shift;
        }
    }
    int32_t i = idx - s->base;
    s->b[i < 0 ? 0 : i]++;
    s->n++;
}

static double dd_quantile(const struct dd_blk *s, const struct num_blk *nb, double q)
{
    uint64_t total = s->n + s->low;
    if (total == 0)
        return NAN;
    double rank = q * (double)(total - 1);
    if (rank < (double)s->low)
        return nb->min;
    double seen = (double)s->low, g = (1 + DD_ALPHA) / (1 - DD_ALPHA), v = nb->max;
    for (int i = 0; i < DD_BUCKETS; i++) {
        seen += s->b[i];
        if (seen > rank) {
            v = 2 * pow(g, s->base + i) / (g + 1);
            break;
        }
    }
    return v < nb->min ? nb->min : v > nb->max ? nb->max : v;
}

static void hll_add(uint8_t *reg, uint64_t h)
{
    uint32_t idx = (uint32_t)(h >> (64 - HLL_P));
    uint64_t w = h << HLL_P;
    uint8_t rho = w ? (uint8_t)(__builtin_clzll(w) + 1) : (uint8_t)(64 - HLL_P + 1);
    if (rho > reg[idx])
        reg[idx] = rho;
}

static double hll_estimate(const uint8_t *reg)
{
    double sum = 0;
    unsigned zeros = 0;
    for (unsigned i = 0; i < HLL_M; i++) {
        /* 2^-r by its exponent bits (r <= 57): no libm call per register. */
        uint64_t bits = (uint64_t)(1023 - reg[i]) << 52;
        double p;
        memcpy(&p, &bits, sizeof(p));
        sum += p;
        zeros += reg[i] == 0;
    }
    double m = HLL_M, e = 0.7213 / (1 + 1.079 / m) * m * m / sum;
    if (e <= 2.5 * m && zeros)
        e = m * log(m / zeros); /* linear counting: small cardinalities */
    return e;
}

static uint64_t value_hash(const struct rw_value *v)
{
    switch (v->type) {
    case RW_STR:
    case RW_OBJECT:
    case RW_ARRAY:
        return keytab_hash(v->s.p, v->s.len) ^ (uint64_t)v->type;
    case RW_NUM: {
        double x = v->num == 0 ? 0 : v->num; /* -0 == 0 */
        return keytab_hash(&x, sizeof(x)) ^ (uint64_t)RW_NUM;
    }
    case RW_BOOL:
        return keytab_hash(&v->b, 1) ^ (uint64_t)RW_BOOL;
    default:
        return 0;
    }
}

/* ---- windows ---- */

static inline struct win_blk *blk_at(const struct wdef *d, struct key_hdr *h, uint32_t i)
{
    return (struct win_blk *)(void *)((unsigned char *)(h + 1) + (size_t)i * d->blk_size);
}

static int put_time(struct buf *b, int64_t usec)
{
    char ts[40];
    const char *iso = format_iso8601_ms(ts, sizeof(ts), (uint64_t)usec);
    return buf_put_json_string(b, iso, strlen(iso));
}

static int emit(struct win_set *s, struct wdef *d, const char *key, size_t klen, struct win_blk *w,
                win_emit_fn fn, void *ud)
{
    struct buf *b = &s->out;
    buf_reset(b);
    int r = buf_puts(b, "{\"_window\":{\"name\":");
    r = r ?: buf_put_json_string(b, d->name, strlen(d->name));
    r = r ?: buf_puts(b, ",\"key\":");
    r = r ?: (d->key ? buf_put_json_string(b, key, klen) : buf_puts(b, "null"));
    r = r ?: buf_puts(b, ",\"start\":");
    r = r ?: put_time(b, w->start);
    r = r ?: buf_puts(b, ",\"end\":");
    r = r ?: put_time(b, w->start + d->size);
    r = r ?: buf_putc(b, '}');
    for (size_t i = 0; i < d->na && r == 0; i++) {
        const struct wagg *a = &d->a[i];
        r = buf_puts(b, ",\"");
        r = r ?: buf_puts(b, a->col);
        r = r ?: buf_puts(b, "\":");
        if (r < 0)
            break;
        if (a->fn == A_COUNT) {
            r = buf_put_json_number(b, (double)w->count);
            continue;
        }
        const struct wfield *f = &d->f[a->field];
        const unsigned char *base = (const unsigned char *)w;
        if (a->fn == A_DISTINCT) {
            r = buf_printf(b, "%.0f", hll_estimate(base + f->off_hll));
            continue;
        }
        const struct num_blk *nb = (const void *)(base + f->off_num);
        double x = NAN;
        if (nb->n) {
            switch (a->fn) {
            case A_SUM: x = nb->sum; break;
            case A_AVG: x = nb->sum / (double)nb->n; break;
            case A_MIN: x = nb->min; break;
            case A_MAX: x = nb->max; break;
            case A_P50: x = dd_quantile((const void *)(base + f->off_dd), nb, 0.50); break;
            case A_P95: x = dd_quantile((const void *)(base + f->off_dd), nb, 0.95); break;
            case A_P99: x = dd_quantile((const void *)(base + f->off_dd), nb, 0.99); break;
            default: break;
            }
        }
        r = buf_put_json_number(b, x); /* NaN (no numeric value): null */
    }
    r = r ?: buf_putc(b, '}');
    if (r < 0)
        return r;
    d->st.emitted++;
    return fn ? fn(ud, b->data, b->len, (double)(w->start + d->size) / 1e6) : 0;
}

/* Emit the key's windows that end at or before `upto`, oldest first;
 * *next is lowered to the earliest end still open. */
static int close_key(struct win_set *s, struct wdef *d, const char *key, size_t klen, struct key_hdr *h,
                     int64_t upto, int64_t *next, win_emit_fn fn, void *ud)
{
    for (;;) {
        struct win_blk *oldest = NULL;
        for (uint32_t i = 0; i < d->n_open; i++) {
            struct win_blk *w = blk_at(d, h, i);
            if (w->start != NO_TIME && w->start + d->size <= upto && (!oldest || w->start < oldest->start))
                oldest = w;
        }
        if (!oldest)
            break;
        int r = emit(s, d, key, klen, oldest, fn, ud);
        oldest->start = NO_TIME;
        h->nopen--;
        if (r < 0)
            return r;
    }
    for (uint32_t i = 0; i < d->n_open; i++) {
        struct win_blk *w = blk_at(d, h, i);
        if (w->start != NO_TIME && w->start + d->size < *next)
            *next = w->start + d->size;
    }
    return 0;
}

/* Close what the watermark passed; keys left without windows are removed
 * (the table holds only keys with open windows). */
static int sweep(struct win_set *s, struct wdef *d, int64_t upto, win_emit_fn fn, void *ud)
{
    if (upto < d->next_close)
        return 0;
    int64_t next = INT64_MAX;
    uint32_t pos = 0;
    const char *key;
    size_t klen;
    void *v;
    int r = 0;
    struct keytab_stats ks;
    keytab_stats(d->kt, &ks);
    /* Stop at the last key rather than at the end of the slab. */
    for (uint32_t left = ks.count; left && keytab_next(d->kt, &pos, &key, &klen, &v, NULL); left--) {
        struct key_hdr *h = v;
        if ((r = close_key(s, d, key, klen, h, upto, &next, fn, ud)) < 0)
            break;
        if (h->nopen == 0)
            keytab_remove(d->kt, key, klen);
    }
    d->next_close = r < 0 ? MIN(next, d->next_close) : next;
    return r;
}

static void advance(struct wdef *d, int64_t wm)
{
    if (wm > d->wm)
        d->wm = wm;
}

static int key_of(struct win_set *s, const struct wdef *d, struct expr_env *env, const char **key, size_t *len)
{
    *key = "";
    *len = 0;
    if (!d->key)
        return 0;
    struct rw_value v;
    if (expr_eval(d->key, env, &v) < 0)
        return -EINVAL;
    /* Copied: an emit may reuse the memory a string result lives in. */
    buf_reset(&s->key);
    int r;
    switch (v.type) {
    case RW_STR:
    case RW_OBJECT:
    case RW_ARRAY:
        if (v.s.len > KEY_MAX)
            return -EINVAL;
        r = buf_append(&s->key, v.s.p, v.s.len);
        break;
    case RW_NUM:
    case RW_BOOL:
        r = buf_put_json_value(&s->key, &v);
        break;
    default:
        return -EINVAL;
    }
    if (r < 0)
        return -ENOMEM;
    *key = s->key.data;
    *len = s->key.len;
    return *len > KEY_MAX ? -EINVAL : 0;
}

static void add_to(const struct wdef *d, struct win_blk *w, const struct fval *fv)
{
    w->count++;
    unsigned char *base = (unsigned char *)w;
    for (size_t i = 0; i < d->nf; i++) {
        const struct wfield *f = &d->f[i];
        if (f->hll && fv[i].has_hash)
            hll_add(base + f->off_hll, fv[i].hash);
        if (!f->num || !fv[i].has_num)
            continue;
        struct num_blk *nb = (void *)(base + f->off_num);
        double x = fv[i].x;
        if (nb->n == 0 || x < nb->min)
            nb->min = x;
        if (nb->n == 0 || x > nb->max)
            nb->max = x;
        nb->sum += x;
        nb->n++;
        if (f->dd)
            dd_add((void *)(base + f->off_dd), x);
    }
}

static int observe_one(struct win_set *s, struct wdef *d, struct expr_env *env, double event_time,
                       double arrival_time, double now, win_emit_fn fn, void *ud)
{
    arena_reset(&s->scratch);
    if (d->where && !expr_test(d->where, env))
        return 0;
    double t = event_time;
    if (d->arrival)
        t = !isnan(arrival_time) ? arrival_time : !isnan(now) ? now : (double)now_realtime_usec() / 1e6;
    if (d->time_path) {
        struct rw_value tv;
        t = NAN;
        if (json_lookup(env->doc, d->time_path, &tv) < 0)
            return -ENOMEM;
        if (rw_value_timestamp(&tv, &t) < 0)
            t = NAN;
    }
    if (!(fabs(t) < 1e11)) { /* unknown, or beyond what usec in int64 hold */
        d->st.skipped++;
        return 0;
    }
    int64_t tu = (int64_t)floor(t * 1e6);
    if (isnan(now))
        d->seen = true;
    else
        d->last_wall = now;
    if (tu < d->wm) {
        d->st.late++;
        return 0;
    }
    if (tu > d->maxt) {
        d->maxt = tu;
        advance(d, tu - d->lateness);
    }
    int r = sweep(s, d, d->wm, fn, ud);
    if (r < 0)
        return r;
    const char *key;
    size_t klen;
    if ((r = key_of(s, d, env, &key, &klen)) < 0) {
        if (r == -ENOMEM)
            return r;
        d->st.skipped++;
        return 0;
    }
    struct fval fv[MAX_FIELDS];
    for (size_t i = 0; i < d->nf; i++) {
        struct rw_value v;
        if (json_lookup(env->doc, d->f[i].path, &v) < 0)
            return -ENOMEM;
        fv[i].has_num = v.type == RW_NUM && isfinite(v.num);
        fv[i].x = v.num;
        fv[i].has_hash = v.type != RW_MISSING && v.type != RW_NULL;
        fv[i].hash = fv[i].has_hash && d->f[i].hll ? value_hash(&v) : 0;
    }
    bool created;
    struct key_hdr *h = keytab_get(d->kt, key, klen, tu, &created);
    if (!h) {
        d->st.skipped++;
        return 0;
    }
    if (created)
        for (uint32_t i = 0; i < d->n_open; i++)
            blk_at(d, h, i)->start = NO_TIME;
    d->st.records++;
    for (int64_t k = floor_div(tu - d->size, d->slide) + 1, hi = floor_div(tu, d->slide); k <= hi; k++) {
        int64_t start = k * d->slide;
        struct win_blk *w = blk_at(d, h, (uint32_t)(((k % d->n_open) + d->n_open) % d->n_open));
        if (w->start != start) {
            if (w->start != NO_TIME) {
                /* An older window in the slot: the ring covers every window
                 * that can be open, so that one is past the watermark. */
                int64_t next = d->next_close;
                if ((r = close_key(s, d, key, klen, h, start, &next, fn, ud)) < 0)
                    return r;
            }
            memset(w, 0, d->blk_size);
            w->start = start;
            h->nopen++;
            if (start + d->size < d->next_close)
                d->next_close = start + d->size;
        }
        add_to(d, w, fv);
    }
    return 0;
}

int win_observe(struct win_set *s, struct json_doc *doc, double event_time, double arrival_time,
                double now, win_emit_fn fn, void *ud)
{
    if (!s)
        return 0;
    struct expr_env env = {
        .doc = doc,
        .scratch = &s->scratch,
        .event_time = event_time,
        .arrival_time = arrival_time,
        .match_data = s->md,
    };
    for (size_t i = 0; i < s->n; i++) {
        int r = observe_one(s, &s->d[i], &env, event_time, arrival_time, now, fn, ud);
        if (r < 0)
            return r;
    }
    return 0;
}

int win_tick(struct win_set *s, double now, win_emit_fn fn, void *ud)
{
    for (size_t i = 0; s && i < s->n; i++) {
        struct wdef *d = &s->d[i];
        if (d->seen) {
            d->seen = false;
            d->last_wall = now;
            continue;
        }
        if (d->idle <= 0 || isnan(d->last_wall) || d->maxt == NO_TIME)
            continue;
        double quiet = (now - d->last_wall) * 1e6;
        if (!(quiet >= (double)d->idle))
            continue;
        /* Quiet for idle_timeout: the watermark moves on as if the stream's
         * time had kept pace with the wall clock. */
        advance(d, d->maxt - d->lateness + (int64_t)quiet);
        int r = sweep(s, d, d->wm, fn, ud);
        if (r < 0)
            return r;
    }
    return 0;
}

int win_flush(struct win_set *s, win_emit_fn fn, void *ud)
{
    for (size_t i = 0; s && i < s->n; i++) {
        struct wdef *d = &s->d[i];
        d->next_close = INT64_MIN;
        int r = sweep(s, d, INT64_MAX, fn, ud);
        if (r < 0)
            return r;
        /* Nothing is open now; what was flushed must not be reopened. */
        if (d->maxt != NO_TIME)
            advance(d, (floor_div(d->maxt, d->slide) * d->slide) + d->size);
    }
    return 0;
}

void win_set_stats(const struct win_set *s, size_t i, struct win_stats *out)
{
    const struct wdef *d = &s->d[i];
    *out = d->st;
    struct keytab_stats ks;
    keytab_stats(d->kt, &ks);
    out->evicted = ks.evictions;
    out->keys = ks.count;
    out->bytes_per_key = keytab_bytes_per_key(d->kt);
}

unsigned win_config_changes(const struct rw_config *old, const struct rw_config *nc, struct conf_diag *diag)
{
    unsigned n = 0;
    size_t no = conf_named_count(old, "window"), nn = conf_named_count(nc, "window");
    for (size_t i = 0; i < MAX(no, nn); i++) {
        const struct conf_section *a = i < no ? conf_named_nth(old, "window", i) : NULL;
        const struct conf_section *b = i < nn ? conf_named_nth(nc, "window", i) : NULL;
        if (a && b && streq(a->name, b->name) && conf_section_equal(old, a, nc, b))
            continue;
        const struct conf_section *at = b ? b : a;
        if (!at)
            continue;
        conf_diag_add(diag, at->file, at->line, "[window.%s] %s, which needs a restart (systemctl restart "
                      "rarewatch): window state lives in the shard workers", at->name,
                      !a ? "was added" : !b ? "was removed" : "changed (or moved)");
        n++;
    }
    return n;
}
