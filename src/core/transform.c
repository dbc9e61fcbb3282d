/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/transform.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#include "rarewatch/conf_schema.h"
#include "rarewatch/csv.h"
#include "rarewatch/expr.h"
#include "rarewatch/json_out.h"
#include "rarewatch/record.h"
#include "rarewatch/strutil.h"

enum xf_type { T_FILTER, T_SET, T_RENAME, T_REMOVE, T_KEEP, T_CAST, T_DEFAULT, T_LOOKUP };
static const char *const type_names[] = { "filter", "set", "rename", "remove", "keep", "cast", "default", "lookup" };
enum cast_to { C_NUMBER, C_BOOL, C_STRING, C_TIMESTAMP };

/* A lookup table: key -> one value per requested field. Read-only once
 * loaded, shared by the workers. */
struct table {
    size_t nfields, nrows, nslots;
    char **keys;               /* per row */
    uint32_t *keylen;
    struct rw_value *vals;     /* nrows * nfields; strings point into pool */
    uint32_t *slots;           /* open addressing: row + 1, 0 = empty */
    char **pool;
    size_t npool;
    struct rw_value *defaults; /* per field; RW_MISSING: none */
};

struct xf {
    char *name;
    enum xf_type type;
    bool strict;
    struct expr *expr;          /* filter where, set/default value */
    struct json_path *field;    /* set/cast/default field, rename to, lookup on */
    struct json_path *from;     /* rename */
    struct json_path **fields;  /* remove: paths; lookup: targets */
    char **names;               /* keep: top-level names */
    size_t nfields;
    enum cast_to cast;
    struct table *table;
};

struct counters {
    _Atomic uint64_t n[3]; /* by enum xf_result: applied, dropped, failed */
};

/* The per-transform counters, kept per worker: each worker counts into a
 * block of its own (one writer: a relaxed load and store, no locked
 * instruction per record), and xf_stage_stats() sums the blocks. A worker
 * adds its block to the stage on its first record there; blocks stay until
 * the stage is freed, so a worker's counts outlive it. Pushed lock-free:
 * readers walk a list that only grows. */
struct counter_block {
    struct counter_block *next;
    struct counters c[];
};

struct stage_counters {
    _Atomic(struct counter_block *) blocks;
};

struct xf_stage {
    struct xf *x;
    size_t n;
    uint64_t id; /* unique per stage, never reused */
    struct stage_counters *c;
    struct expr **where; /* per detector section, NULL = none */
    size_t nwhere;
};

#define OVERLAY_MAX JSON_SPLICE_MAX_EDITS

struct xf_worker {
    struct arena scratch;
    struct json_edit ed[OVERLAY_MAX];
    size_t ned;
    struct buf out[2];
    struct json_doc doc[2];
    int cur;              /* which doc[] is current, -1: the input */
    struct json_doc *in;  /* the input record of xf_apply */
    struct json_doc *view;
    void *md;
    const struct xf_stage *stage;
    struct xf_record *rec; /* during xf_apply */
    double event_time, arrival_time;
    /* This worker's counters in the stage with id cnt_stage (an id, not
     * the pointer: a new stage may reuse a freed one's address). */
    uint64_t cnt_stage;
    struct counters *cnt;
};

/* ---- lookup tables ---- */

static uint64_t hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static void table_free(struct table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->npool; i++)
        free(t->pool[i]);
    free(t->pool);
    free(t->keys);
    free(t->keylen);
    free(t->vals);
    free(t->slots);
    free(t->defaults);
    free(t);
}

static char *pool_dup(struct table *t, const char *s, size_t n)
{
    char **np = realloc(t->pool, (t->npool + 1) * sizeof(char *));
    if (!np)
        return NULL;
    t->pool = np;
    char *d = strndup(s, n);
    if (!d)
        return NULL;
    t->pool[t->npool++] = d;
    return d;
}

static int table_add_row(struct table *t, const char *key, size_t keylen, struct rw_value **row)
{
    if (t->nrows % 64 == 0) {
        size_t nc = t->nrows + 64;
        char **k = realloc(t->keys, nc * sizeof(*k));
        if (!k)
            return -ENOMEM;
        t->keys = k;
        uint32_t *kl = realloc(t->keylen, nc * sizeof(*kl));
        if (!kl)
            return -ENOMEM;
        t->keylen = kl;
        struct rw_value *v = realloc(t->vals, nc * (t->nfields ? t->nfields : 1) * sizeof(*v));
        if (!v)
            return -ENOMEM;
        t->vals = v;
    }
    if (!(t->keys[t->nrows] = pool_dup(t, key, keylen)))
        return -ENOMEM;
    t->keylen[t->nrows] = (uint32_t)keylen;
    *row = &t->vals[t->nrows * t->nfields];
    for (size_t f = 0; f < t->nfields; f++)
        (*row)[f] = RW_VALUE_MISSING;
    t->nrows++;
    return 0;
}

static const struct rw_value *table_find(const struct table *t, const char *key, size_t n)
{
    if (!t->nslots)
        return NULL;
    for (size_t i = hash(key, n) & (t->nslots - 1);; i = (i + 1) & (t->nslots - 1)) {
        uint32_t r = t->slots[i];
        if (!r)
            return NULL;
        if (t->keylen[r - 1] == n && mem_eq(t->keys[r - 1], key, n))
            return &t->vals[(r - 1) * t->nfields];
    }
}

static int table_index(struct table *t)
{
    size_t ns = 16;
    while (ns < t->nrows * 2)
        ns *= 2;
    t->slots = calloc(ns, sizeof(uint32_t));
    if (!t->slots)
        return -ENOMEM;
    t->nslots = ns;
    for (size_t r = 0; r < t->nrows; r++) {
        if (table_find(t, t->keys[r], t->keylen[r]))
            continue; /* duplicate key: the first row wins, like JSON members */
        size_t i = hash(t->keys[r], t->keylen[r]) & (ns - 1);
        while (t->slots[i])
            i = (i + 1) & (ns - 1);
        t->slots[i] = (uint32_t)(r + 1);
    }
    return 0;
}

/* A CSV cell or default_ value: JSON numbers and true/false/null as such. */
static int scalar_from_text(struct table *t, const char *s, struct rw_value *out)
{
    double d;
    if (streq(s, "true") || streq(s, "false"))
        *out = RW_VALUE_BOOL(s[0] == 't');
    else if (streq(s, "null"))
        *out = RW_VALUE_NULL;
    else if (is_json_number(s) && parse_double(s, &d) == 0 && isfinite(d))
        *out = RW_VALUE_NUM(d);
    else {
        char *c = pool_dup(t, s, strlen(s));
        if (!c)
            return -ENOMEM;
        *out = RW_VALUE_STR(c, strlen(c));
    }
    return 0;
}

static int load_csv(struct table *t, FILE *in, const char *keycol, char *const *fields, char *err, size_t errlen)
{
    _cleanup_(csv_reader_freep) struct csv_reader *cr = csv_reader_new(in);
    if (!cr)
        return -ENOMEM;
    char **row;
    size_t n;
    int r = csv_read_row(cr, &row, &n);
    if (r <= 0) {
        snprintf(err, errlen, "no header line");
        return -EINVAL;
    }
    ssize_t kc = -1;
    size_t col[64];
    for (size_t f = 0; f < t->nfields; f++)
        col[f] = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        if (streq(row[i], keycol))
            kc = (ssize_t)i;
        for (size_t f = 0; f < t->nfields; f++)
            if (streq(row[i], fields[f]))
                col[f] = i;
    }
    if (kc < 0) {
        snprintf(err, errlen, "no column '%s' in the header", keycol);
        return -EINVAL;
    }
    for (size_t f = 0; f < t->nfields; f++)
        if (col[f] == SIZE_MAX) {
            snprintf(err, errlen, "no column '%s' in the header", fields[f]);
            return -EINVAL;
        }
    while ((r = csv_read_row(cr, &row, &n)) > 0) {
        if ((size_t)kc >= n)
            continue;
        struct rw_value *vals;
        if ((r = table_add_row(t, row[kc], strlen(row[kc]), &vals)) < 0)
            return r;
        for (size_t f = 0; f < t->nfields; f++)
            if (col[f] < n && (r = scalar_from_text(t, row[col[f]], &vals[f])) < 0)
                return r;
    }
    if (r < 0) {
        snprintf(err, errlen, "line %llu: bad CSV", csv_reader_line(cr));
        return -EINVAL;
    }
    return 0;
}

static int load_ndjson(struct table *t, FILE *in, const char *keycol, char *const *fields, char *err, size_t errlen)
{
    struct json_doc doc;
    json_doc_init(&doc, NULL);
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t n;
    int r = 0;
    while ((n = getline(&line, &cap, in)) > 0) {
        lineno++;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        if (!n)
            continue;
        if (json_scan(&doc, line, (size_t)n) < 0 || doc.nodes[0].type != JSON_T_OBJECT) {
            snprintf(err, errlen, "line %zu: not a JSON object", lineno);
            r = -EINVAL;
            break;
        }
        uint32_t k = json_obj_get(&doc, 0, keycol, strlen(keycol));
        struct rw_value kv;
        if (k == JSON_NONE || json_get_value(&doc, k, &kv) < 0)
            continue;
        char num[32];
        if (kv.type == RW_NUM) {
            snprintf(num, sizeof(num), "%.15g", kv.num);
            kv = RW_VALUE_STR(num, strlen(num));
        } else if (kv.type != RW_STR) {
            continue;
        }
        struct rw_value *vals;
        if ((r = table_add_row(t, kv.s.p, kv.s.len, &vals)) < 0)
            break;
        for (size_t fi = 0; fi < t->nfields; fi++) {
            uint32_t v = json_obj_get(&doc, 0, fields[fi], strlen(fields[fi]));
            if (v == JSON_NONE)
                continue;
            if ((r = json_get_value(&doc, v, &vals[fi])) < 0)
                break;
            if (vals[fi].type == RW_STR || vals[fi].type == RW_OBJECT || vals[fi].type == RW_ARRAY) {
                char *c = pool_dup(t, vals[fi].s.p, vals[fi].s.len);
                if (!c) {
                    r = -ENOMEM;
                    break;
                }
                vals[fi].s.p = c;
            }
        }
        if (r < 0)
            break;
    }
    free(line);
    json_doc_free(&doc);
    return r;
}

static int table_load(const char *path, const char *keycol, char *const *fields, size_t nfields,
                      struct table **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        int r = negative_errno();
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(-r));
        return r;
    }
    struct table *t = calloc(1, sizeof(*t));
    if (!t) {
        fclose(f);
        return -ENOMEM;
    }
    t->nfields = nfields;
    size_t pl = strlen(path);
    bool nd = (pl > 5 && streq(path + pl - 5, ".json")) || (pl > 7 && streq(path + pl - 7, ".ndjson")) ||
              (pl > 6 && streq(path + pl - 6, ".jsonl"));
    int r = nd ? load_ndjson(t, f, keycol, fields, err, errlen) : load_csv(t, f, keycol, fields, err, errlen);
    fclose(f);
    if (r == 0) {
        t->defaults = calloc(nfields ? nfields : 1, sizeof(struct rw_value));
        r = t->defaults ? table_index(t) : -ENOMEM;
    }
    if (r < 0) {
        table_free(t);
        return r;
    }
    *out = t;
    return 0;
}

/* ---- compile ---- */

static void xf_clear(struct xf *x)
{
    free(x->name);
    expr_free(x->expr);
    json_path_free(x->field);
    json_path_free(x->from);
    for (size_t i = 0; i < x->nfields; i++)
        if (x->fields)
            json_path_free(x->fields[i]);
    free(x->fields);
    strv_free(x->names);
    table_free(x->table);
}

struct xf_stage *xf_stage_free(struct xf_stage *s)
{
    if (!s)
        return NULL;
    for (size_t i = 0; i < s->n; i++)
        xf_clear(&s->x[i]);
    free(s->x);
    if (s->c) {
        for (struct counter_block *b = atomic_load(&s->c->blocks), *next; b; b = next) {
            next = b->next;
            free(b);
        }
        free(s->c);
    }
    for (size_t i = 0; i < s->nwhere; i++)
        expr_free(s->where[i]);
    free(s->where);
    free(s);
    return NULL;
}

size_t xf_stage_count(const struct xf_stage *s) { return s ? s->n : 0; }
bool xf_stage_has_where(const struct xf_stage *s)
{
    for (size_t i = 0; s && i < s->nwhere; i++)
        if (s->where[i])
            return true;
    return false;
}

_printf_(5, 6) static void err_at(struct conf_diag *d, const struct conf_section *sec,
                                  const struct conf_value *v, unsigned *errors, const char *fmt, ...)
{
    struct buf b = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    (void)buf_vprintf(&b, fmt, ap);
    va_end(ap);
    conf_diag_add(d, v && v->set ? v->file : sec->file, v && v->set ? v->line : sec->line, "%s",
                  b.data ? b.data : "out of memory");
    buf_free(&b);
    (*errors)++;
}

/* A key-only path (json_splice cannot edit through array indices). */
static int edit_path(const char *spec, struct json_path **out)
{
    struct json_path *p = NULL;
    int r = json_path_compile(spec, &p);
    if (r < 0)
        return r;
    for (uint32_t i = 0; i < p->n; i++)
        if (p->steps[i].kind != JSON_STEP_KEY) {
            json_path_free(p);
            return -EINVAL;
        }
    *out = p;
    return 0;
}

static int compile_one(const struct rw_config *cfg, const struct conf_section *sec, struct xf *x,
                       struct conf_diag *d, unsigned *errors)
{
    const char *type = conf_stype(cfg, sec);
    for (size_t t = 0; t < ELEMENTSOF(type_names); t++)
        if (type && streq(type, type_names[t]))
            x->type = (enum xf_type)t;
    if (!(x->name = strdup(sec->name)))
        return -ENOMEM;
    x->strict = conf_sget(sec, RWK_transform_strict)->b;
    const struct conf_value *where = conf_sget(sec, RWK_transform_where);
    const struct conf_value *field = conf_sget(sec, RWK_transform_field);
    const struct conf_value *value = conf_sget(sec, RWK_transform_value);
    const struct conf_value *from = conf_sget(sec, RWK_transform_from);
    const struct conf_value *to = conf_sget(sec, RWK_transform_to);
    const struct conf_value *fields = conf_sget(sec, RWK_transform_fields);
    const struct conf_value *file = conf_sget(sec, RWK_transform_file);
    const struct conf_value *key = conf_sget(sec, RWK_transform_key);
    const struct conf_value *on = conf_sget(sec, RWK_transform_on);
    unsigned before = *errors;
    char what[160];
    snprintf(what, sizeof(what), "[transform.%s]", sec->name);
    int r;

#define NEED(v, k) \
    if (!(v)->has_value) err_at(d, sec, NULL, errors, "[transform.%s] type = %s needs " k, sec->name, type)
#define PATH(v, dst, k) \
    if ((v)->has_value && edit_path((v)->s, (dst)) < 0) \
        err_at(d, sec, (v), errors, "[transform.%s] " k " is not a field path of names: '%s'", sec->name, (v)->s)

    switch (x->type) {
    case T_FILTER:
        NEED(where, "where");
        else if ((r = expr_compile_conf(where, what, d, &x->expr)) == -EINVAL)
            (*errors)++;
        else if (r < 0)
            return r;
        break;
    case T_SET:
    case T_DEFAULT:
        NEED(field, "field");
        NEED(value, "value");
        PATH(field, &x->field, "field");
        if (value->has_value) {
            if ((r = expr_compile_conf(value, what, d, &x->expr)) == -EINVAL)
                (*errors)++;
            else if (r < 0)
                return r;
        }
        break;
    case T_RENAME:
        NEED(from, "from");
        NEED(to, "to");
        PATH(from, &x->from, "from");
        PATH(to, &x->field, "to");
        break;
    case T_CAST: {
        NEED(field, "field");
        NEED(to, "to (number|bool|string|timestamp)");
        PATH(field, &x->field, "field");
        static const char *const casts[] = { "number", "bool", "string", "timestamp" };
        if (to->has_value) {
            size_t c;
            for (c = 0; c < ELEMENTSOF(casts) && !streq(to->s, casts[c]); c++)
                ;
            if (c == ELEMENTSOF(casts))
                err_at(d, sec, to, errors, "[transform.%s] cast: to must be number, bool, string or timestamp, not '%s'", sec->name, to->s);
            x->cast = (enum cast_to)c;
        }
        break;
    }
    case T_REMOVE:
    case T_KEEP:
    case T_LOOKUP: {
        char *const *l = fields->has_value ? fields->list : NULL;
        size_t n = l ? strv_length(l) : 0;
        if (!n)
            err_at(d, sec, NULL, errors, "[transform.%s] type = %s needs fields", sec->name, type ? type : "?");
        if (n > 64)
            err_at(d, sec, fields, errors, "[transform.%s] at most 64 fields", sec->name);
        if (x->type == T_KEEP) {
            if (!(x->names = strv_copy(l ? l : (char *[]){ NULL })))
                return -ENOMEM;
            break;
        }
        if (!(x->fields = calloc(n ? n : 1, sizeof(*x->fields))))
            return -ENOMEM;
        x->nfields = n;
        for (size_t i = 0; i < n; i++)
            if (edit_path(l[i], &x->fields[i]) < 0)
                err_at(d, sec, fields, errors, "[transform.%s] fields: '%s' is not a field path of names", sec->name, l[i]);
        if (x->type != T_LOOKUP)
            break;
        NEED(file, "file");
        NEED(key, "key");
        NEED(on, "on");
        if (on->has_value && json_path_compile(on->s, &x->field) < 0)
            err_at(d, sec, on, errors, "[transform.%s] on is not a field path: '%s'", sec->name, on->s);
        if (*errors != before || n > 64)
            break;
        char msg[256];
        if ((r = table_load(file->s, key->s, l, n, &x->table, msg, sizeof(msg))) < 0) {
            if (r == -ENOMEM)
                return r;
            err_at(d, sec, file, errors, "[transform.%s] lookup table: %s", sec->name, msg);
            break;
        }
        for (size_t e = 0; e < sec->n_extras; e++) {
            const char *fname = sec->extras[e].name + strlen("default_");
            size_t i;
            for (i = 0; i < n && !streq(l[i], fname); i++)
                ;
            if (i == n) {
                err_at(d, sec, &sec->extras[e].v, errors, "[transform.%s] %s names no field in fields", sec->name, sec->extras[e].name);
                continue;
            }
            if (sec->extras[e].v.has_value &&
                (r = scalar_from_text(x->table, sec->extras[e].v.raw, &x->table->defaults[i])) < 0)
                return r;
        }
        break;
    }
    }
#undef NEED
#undef PATH
    return 0;
}

int xf_stage_new(const struct rw_config *cfg, struct conf_diag *diag, struct xf_stage **out)
{
    _cleanup_(xf_stage_freep) struct xf_stage *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    size_t n = conf_named_count(cfg, "transform");
    s->x = calloc(n ? n : 1, sizeof(*s->x));
    s->c = calloc(1, sizeof(*s->c));
    if (!s->x || !s->c)
        return -ENOMEM;
    static _Atomic uint64_t stage_ids;
    s->id = atomic_fetch_add(&stage_ids, 1) + 1;
    unsigned errors = 0;
    for (size_t i = 0; i < n; i++) {
        s->n = i + 1;
        int r = compile_one(cfg, conf_named_nth(cfg, "transform", i), &s->x[i], diag, &errors);
        if (r < 0)
            return r;
    }
    size_t nd = conf_named_count(cfg, "detector");
    s->where = calloc(nd ? nd : 1, sizeof(*s->where));
    if (!s->where)
        return -ENOMEM;
    s->nwhere = nd;
    for (size_t i = 0; i < nd; i++) {
        const struct conf_section *sec = conf_named_nth(cfg, "detector", i);
        const struct conf_value *w = conf_sget(sec, RWK_detector_where);
        if (!w->has_value)
            continue;
        char what[160];
        snprintf(what, sizeof(what), "[detector.%s] where", sec->name);
        int r = expr_compile_conf(w, what, diag, &s->where[i]);
        if (r == -EINVAL)
            errors++;
        else if (r < 0)
            return r;
    }
    if (errors)
        return -EINVAL;
    *out = TAKE_PTR(s);
    return 0;
}

void xf_stage_stats(const struct xf_stage *s, size_t i, struct xf_stats *o)
{
    o->name = s->x[i].name;
    o->type = type_names[s->x[i].type];
    o->applied = o->dropped = o->failed = 0;
    for (const struct counter_block *b = atomic_load(&s->c->blocks); b; b = b->next) {
        o->applied += atomic_load_explicit(&b->c[i].n[XF_KEEP], memory_order_relaxed);
        o->dropped += atomic_load_explicit(&b->c[i].n[XF_DROP], memory_order_relaxed);
        o->failed += atomic_load_explicit(&b->c[i].n[XF_FAIL], memory_order_relaxed);
    }
}

/* Once per worker and stage: the worker's own counter block. */
static int counters_attach(const struct xf_stage *s, struct xf_worker *w)
{
    struct counter_block *b = calloc(1, sizeof(*b) + (s->n ? s->n : 1) * sizeof(b->c[0]));
    if (!b)
        return -ENOMEM; /* the record fails like any other allocation; the next one tries again */
    b->next = atomic_load(&s->c->blocks);
    while (!atomic_compare_exchange_weak(&s->c->blocks, &b->next, b))
        ;
    w->cnt = b->c;
    w->cnt_stage = s->id;
    return 0;
}

/* Only this worker writes its block. */
static inline void count(_Atomic uint64_t *p)
{
    atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + 1, memory_order_relaxed);
}

/* ---- per record ---- */

struct xf_worker *xf_worker_new(void)
{
    struct xf_worker *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->md = expr_match_data_new();
    if (!w->md) {
        free(w);
        return NULL;
    }
    /* Escaped strings of the spliced texts decode into the per-record
     * arena, so they outlive the next scan of the same doc. */
    json_doc_init(&w->doc[0], &w->scratch);
    json_doc_init(&w->doc[1], &w->scratch);
    return w;
}

struct xf_worker *xf_worker_free(struct xf_worker *w)
{
    if (!w)
        return NULL;
    arena_free(&w->scratch);
    buf_free(&w->out[0]);
    buf_free(&w->out[1]);
    json_doc_free(&w->doc[0]);
    json_doc_free(&w->doc[1]);
    expr_match_data_free(w->md);
    free(w);
    return NULL;
}

/* Inline: asked for every edit on every read through the overlay. */
static inline bool path_eq(const struct json_path *a, const struct json_path *b, uint32_t n)
{
    if (a == b)
        return true;
    for (uint32_t i = 0; i < n; i++) {
        const struct json_step *x = &a->steps[i], *y = &b->steps[i];
        if (x->kind != y->kind || (x->kind == JSON_STEP_INDEX ? x->index != y->index
                                   : x->keylen != y->keylen || !mem_eq(x->key, y->key, x->keylen)))
            return false;
    }
    return true;
}

/* w->in, not the record's doc: also read after xf_apply returned, for
 * deferred edits. */
static struct json_doc *cur_doc(struct xf_worker *w)
{
    return w->cur < 0 ? w->in : &w->doc[w->cur];
}

static int materialize(struct xf_worker *w, struct xf_record *rec);

/* Reads for expressions and transforms: the latest edit of the path or of
 * an ancestor decides; when that cannot be answered from the overlay alone
 * (reading inside an object that was set, or an object some of whose
 * members were edited) the overlay is spliced first and the result read.
 * Always answers (returns 1), so a flush in the middle of an expression
 * never leaves later reads on the old document. */
static __attribute__((noinline)) int overlay_get_edited(struct xf_worker *w, const struct json_path *p,
                                                       struct rw_value *out);

static int overlay_get(void *ud, const struct json_path *p, struct rw_value *out)
{
    struct xf_worker *w = ud;
    /* No edit pending (the reads of the first transforms of a record): the
     * text answers, without the frame of the walk over the edits. */
    if (!w->ned) {
        int r = json_lookup_text(cur_doc(w), p, out);
        return r < 0 ? r : 1;
    }
    return overlay_get_edited(w, p, out);
}

static int overlay_get_edited(struct xf_worker *w, const struct json_path *p, struct rw_value *out)
{
    bool flush = false;
    for (size_t i = w->ned; i-- > 0;) {
        const struct json_edit *e = &w->ed[i];
        uint32_t n = MIN(e->path->n, p->n);
        if (!path_eq(e->path, p, n))
            continue;
        if (e->path->n == p->n) {
            *out = e->remove ? RW_VALUE_MISSING : e->value;
            return 1;
        }
        if (e->path->n < p->n && (e->remove || e->value.type != RW_OBJECT)) {
            *out = RW_VALUE_MISSING; /* an ancestor is gone or no longer an object */
            return 1;
        }
        flush = true;
        break;
    }
    if (flush) {
        int r = materialize(w, w->rec);
        if (r < 0)
            return r;
    }
    int r = json_lookup_text(cur_doc(w), p, out);
    return r < 0 ? r : 1;
}

static void env_of(struct xf_worker *w, struct xf_record *rec, struct expr_env *env)
{
    *env = (struct expr_env){
        .doc = cur_doc(w),
        .overlay = overlay_get,
        .overlay_ud = w,
        .scratch = &w->scratch,
        .event_time = rec->event_time,
        .arrival_time = rec->arrival_time,
        .match_data = w->md,
    };
}

/* Splice the overlay onto the current document into the other buffer and
 * scan it: later reads see one plain document again. */
static int materialize(struct xf_worker *w, struct xf_record *rec)
{
    if (!w->ned)
        return 0;
    int next = w->cur == 0 ? 1 : 0;
    struct buf *b = &w->out[next];
    buf_reset(b);
    int r = json_splice(b, cur_doc(w), w->ed, w->ned);
    if (r < 0)
        return r;
    if ((r = json_scan(&w->doc[next], b->data, b->len)) < 0)
        return r;
    w->cur = next;
    w->ned = 0;
    /* Values the overlay held may live in the scratch arena; they are now
     * in the text, but expression results of this record may still be in
     * use by the caller, so the arena is only reset per record. */
    return 0;
}

/* Add an edit. The overlay is spliced first when it is full, and when an
 * earlier edit touched an ancestor of p (the splicer lets an ancestor's edit
 * win, which is right only when it came later). *v is updated when it has
 * to be moved out of the buffer the splice will overwrite. */
static int edit(struct xf_worker *w, struct xf_record *rec, const struct json_path *p, bool remove,
                struct rw_value *v)
{
    bool flush = w->ned == OVERLAY_MAX;
    for (size_t i = 0; i < w->ned && !flush; i++)
        flush = w->ed[i].path->n < p->n && path_eq(w->ed[i].path, p, w->ed[i].path->n);
    /* The spliced texts alternate between two buffers: a value read before
     * a flush may point into the one the next flush rewrites (the other one
     * also becomes that after a flush now). Such a value moves to the
     * per-record arena; decoded strings already live there. */
    int next = w->cur == 0 ? 1 : 0;
    if (v->type == RW_STR || v->type == RW_OBJECT || v->type == RW_ARRAY) {
        bool at_risk = false;
        for (int b = 0; b < 2; b++)
            if ((flush || b == next) && w->out[b].data && v->s.p >= w->out[b].data &&
                v->s.p < w->out[b].data + w->out[b].cap)
                at_risk = true;
        if (at_risk) {
            char *c = arena_strndup(&w->scratch, v->s.p, v->s.len);
            if (!c)
                return -ENOMEM;
            v->s.p = c;
        }
    }
    if (flush) {
        int r = materialize(w, rec);
        if (r < 0)
            return r;
    }
    w->ed[w->ned++] = (struct json_edit){ .path = p, .remove = remove || v->type == RW_MISSING, .value = *v };
    return 0;
}

static int lookup(struct xf_worker *w, const struct json_path *p, struct rw_value *v)
{
    int r = overlay_get(w, p, v);
    return r < 0 ? r : 0;
}

/* keep: copy the kept top-level members into a new object. */
static int keep(struct xf_worker *w, struct xf_record *rec, const struct xf *x)
{
    int r = materialize(w, rec);
    if (r < 0)
        return r;
    struct json_doc *d = cur_doc(w);
    int next = w->cur == 0 ? 1 : 0;
    struct buf *b = &w->out[next];
    buf_reset(b);
    bool first = true;
    r = buf_putc(b, '{');
    for (uint32_t k = json_first_child(d, 0); r == 0 && k != JSON_NONE; k = json_next_sibling(d, 0, k + 1)) {
        bool kept = false;
        for (char **n = x->names; *n && !kept; n++)
            kept = json_str_eq(d, k, *n, strlen(*n));
        if (!kept)
            continue;
        if (!first)
            r = buf_putc(b, ',');
        first = false;
        const struct json_node *kn = json_node(d, k), *vn = json_node(d, k + 1);
        r = r ?: buf_append(b, d->text + kn->start, kn->end - kn->start);
        r = r ?: buf_putc(b, ':');
        r = r ?: buf_append(b, d->text + vn->start, vn->end - vn->start);
    }
    r = r ?: buf_putc(b, '}');
    if (r < 0)
        return r;
    if ((r = json_scan(&w->doc[next], b->data, b->len)) < 0)
        return r;
    w->cur = next;
    return 0;
}

_printf_(3, 4) static int fail_with(struct xf_record *rec, const struct xf *x, const char *fmt, ...)
{
    rec->failed_transform = x->name;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rec->reason, sizeof(rec->reason), fmt, ap);
    va_end(ap);
    return XF_FAIL;
}

static int cast(struct xf_worker *w, struct xf_record *rec, const struct xf *x)
{
    struct rw_value v, o;
    int r = lookup(w, x->field, &v);
    if (r < 0)
        return r;
    if (v.type == RW_MISSING || v.type == RW_NULL)
        return 0;
    bool ok = true;
    switch (x->cast) {
    case C_NUMBER: {
        char tmp[64];
        double d;
        if (v.type == RW_NUM)
            return 0;
        if (v.type == RW_BOOL)
            o = RW_VALUE_NUM(v.b);
        else if (v.type == RW_STR && v.s.len < sizeof(tmp) && v.s.len &&
                 (memcpy(tmp, v.s.p, v.s.len), tmp[v.s.len] = 0, parse_double(tmp, &d) == 0) && isfinite(d))
            o = RW_VALUE_NUM(d);
        else
            ok = false;
        break;
    }
    case C_BOOL:
        if (v.type == RW_BOOL)
            return 0;
        if (v.type == RW_NUM)
            o = RW_VALUE_BOOL(v.num != 0);
        else if (v.type == RW_STR && ((v.s.len == 4 && !strncasecmp(v.s.p, "true", 4)) ||
                                      (v.s.len == 1 && v.s.p[0] == '1') ||
                                      (v.s.len == 3 && !strncasecmp(v.s.p, "yes", 3))))
            o = RW_VALUE_BOOL(true);
        else if (v.type == RW_STR && ((v.s.len == 5 && !strncasecmp(v.s.p, "false", 5)) ||
                                      (v.s.len == 1 && v.s.p[0] == '0') ||
                                      (v.s.len == 2 && !strncasecmp(v.s.p, "no", 2))))
            o = RW_VALUE_BOOL(false);
        else
            ok = false;
        break;
    case C_STRING:
        if (v.type == RW_STR)
            return 0;
        if (v.type == RW_BOOL) {
            o = v.b ? RW_VALUE_STR("true", 4) : RW_VALUE_STR("false", 5);
        } else if (v.type == RW_NUM) {
            char *s = arena_alloc(&w->scratch, 32);
            if (!s)
                return -ENOMEM;
            /* Shortest of %.15g/%.17g that reads back to the same double. */
            int n = snprintf(s, 32, "%.15g", v.num);
            if (strtod(s, NULL) != v.num)
                n = snprintf(s, 32, "%.17g", v.num);
            o = RW_VALUE_STR(s, (size_t)n);
        } else {
            o = RW_VALUE_STR(v.s.p, v.s.len); /* object/array: its JSON text */
        }
        break;
    case C_TIMESTAMP: {
        double t;
        if (rw_value_timestamp(&v, &t) == 0)
            o = RW_VALUE_NUM(t);
        else
            ok = false;
        break;
    }
    }
    if (!ok) {
        static const char *const casts[] = { "number", "bool", "string", "timestamp" };
        if (x->strict)
            return fail_with(rec, x, "cannot cast a %s to %s", rw_type_name(v.type), casts[x->cast]);
        o = RW_VALUE_NULL;
        count(&w->cnt[x - w->stage->x].n[XF_FAIL]);
    }
    return edit(w, rec, x->field, false, &o);
}

static int run(const struct xf_stage *s, struct xf_worker *w, struct xf_record *rec, size_t i)
{
    const struct xf *x = &s->x[i];
    struct expr_env env;
    struct rw_value v;
    int r;
    switch (x->type) {
    case T_FILTER:
        env_of(w, rec, &env);
        r = expr_eval(x->expr, &env, &v);
        if (r == -ENOMEM)
            return r;
        if (r < 0) {
            if (x->strict)
                return fail_with(rec, x, "where: %s", env.err ? env.err : "error");
            count(&w->cnt[i].n[XF_FAIL]);
            return XF_DROP;
        }
        return rw_value_truthy(&v) ? XF_KEEP : XF_DROP;
    case T_SET:
    case T_DEFAULT:
        if (x->type == T_DEFAULT) {
            if ((r = lookup(w, x->field, &v)) < 0)
                return r;
            if (v.type != RW_MISSING && v.type != RW_NULL)
                return XF_KEEP;
        }
        env_of(w, rec, &env);
        r = expr_eval(x->expr, &env, &v);
        if (r == -ENOMEM)
            return r;
        if (r < 0) {
            if (x->strict)
                return fail_with(rec, x, "value: %s", env.err ? env.err : "error");
            count(&w->cnt[i].n[XF_FAIL]);
            v = RW_VALUE_NULL;
        }
        /* A missing result sets null: `set` always leaves the field present. */
        if (v.type == RW_MISSING)
            v = RW_VALUE_NULL;
        return edit(w, rec, x->field, false, &v);
    case T_RENAME:
        if ((r = lookup(w, x->from, &v)) < 0)
            return r;
        if (v.type == RW_MISSING)
            return XF_KEEP;
        /* Remove first: renaming a to a.b then builds {"a":{"b":...}}. */
        struct rw_value none = RW_VALUE_MISSING;
        if ((r = edit(w, rec, x->from, true, &none)) < 0)
            return r;
        return edit(w, rec, x->field, false, &v);
    case T_REMOVE:
        for (size_t f = 0; f < x->nfields; f++) {
            struct rw_value gone = RW_VALUE_MISSING;
            if ((r = edit(w, rec, x->fields[f], true, &gone)) < 0)
                return r;
        }
        return XF_KEEP;
    case T_KEEP:
        return keep(w, rec, x);
    case T_CAST:
        return cast(w, rec, x);
    case T_LOOKUP: {
        if ((r = lookup(w, x->field, &v)) < 0)
            return r;
        char num[32];
        if (v.type == RW_NUM) {
            int n = snprintf(num, sizeof(num), "%.15g", v.num);
            v = RW_VALUE_STR(num, (size_t)n);
        }
        const struct rw_value *row = v.type == RW_STR ? table_find(x->table, v.s.p, v.s.len) : NULL;
        for (size_t f = 0; f < x->nfields; f++) {
            struct rw_value fv = row ? row[f] : x->table->defaults[f];
            if (fv.type == RW_MISSING)
                continue;
            if ((r = edit(w, rec, x->fields[f], false, &fv)) < 0)
                return r;
        }
        return XF_KEEP;
    }
    }
    return XF_KEEP;
}

/* json_doc.overlay of a view whose edits are still pending. */
static int view_overlay(void *ud, const struct json_path *p, struct rw_value *out)
{
    int r = overlay_get(ud, p, out);
    return r < 0 ? r : 0;
}

int xf_apply(const struct xf_stage *s, struct xf_worker *w, struct xf_record *rec, struct json_doc **view)
{
    arena_reset(&w->scratch);
    w->ned = 0;
    w->cur = -1;
    w->in = rec->doc;
    w->doc[0].overlay = w->doc[1].overlay = NULL;
    w->stage = s;
    w->rec = rec;
    w->event_time = rec->event_time;
    w->arrival_time = rec->arrival_time;
    rec->failed_transform = NULL;
    rec->reason[0] = 0;
    int res = XF_KEEP;
    if (s && s->n) {
        if (_unlikely_(w->cnt_stage != s->id) && counters_attach(s, w) < 0)
            return -ENOMEM;
        struct counters *cnt = w->cnt;
        for (size_t i = 0, n = s->n; i < n; i++) {
            int r = run(s, w, rec, i);
            if (r < 0)
                return r;
            count(&cnt[i].n[r]);
            if (r != XF_KEEP) {
                res = r;
                break;
            }
        }
    }
    if (res == XF_KEEP && rec->defer && w->ned) {
        /* Left pending: reads go through the overlay, xf_append_record()
         * splices the edits straight into the output line. */
        w->view = cur_doc(w);
        w->view->overlay = view_overlay;
        w->view->overlay_ud = w;
        w->rec = NULL; /* the caller's; only w->in is read from now on */
        *view = w->view;
        return res;
    }
    if (res != XF_FAIL) {
        int r = materialize(w, rec);
        if (r < 0)
            return r;
    }
    w->view = cur_doc(w);
    *view = w->view;
    return res;
}

int xf_append_record(struct xf_worker *w, struct buf *out, bool *empty)
{
    struct json_doc *d = cur_doc(w);
    if (!w->ned)
        return json_append_root_open(out, d, empty);
    /* What materialize() would write and scan, without the scan: the
     * splice of an edited object is "{" members "}" with no blanks around. */
    size_t mark = out->len;
    int r = json_splice(out, d, w->ed, w->ned);
    if (r < 0)
        return r;
    out->data[--out->len] = 0;
    *empty = out->len - mark == 1;
    return 0;
}

bool xf_detector_where(void *ud, size_t detector)
{
    struct xf_worker *w = ud;
    const struct xf_stage *s = w->stage;
    if (!s || detector >= s->nwhere || !s->where[detector])
        return true;
    struct expr_env env = {
        .doc = w->view,
        .scratch = &w->scratch,
        .event_time = w->event_time,
        .arrival_time = w->arrival_time,
        .match_data = w->md,
    };
    return expr_test(s->where[detector], &env);
}

void xf_set_view(const struct xf_stage *s, struct xf_worker *w, struct json_doc *doc, double event_time)
{
    arena_reset(&w->scratch);
    w->ned = 0;
    w->cur = -1;
    w->stage = s;
    w->rec = NULL;
    w->view = doc;
    w->event_time = event_time;
    w->arrival_time = NAN;
}

bool xf_detector_has_where(const struct xf_stage *s, size_t detector)
{
    return s && detector < s->nwhere && s->where[detector];
}
