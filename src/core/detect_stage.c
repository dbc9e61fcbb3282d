/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/detect_stage.h"
#include "rarewatch/json_out.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/conf_schema.h"
#include "rarewatch/detect.h"
#include "rarewatch/fsutil.h"
#include "rarewatch/keytab.h"
#include "rarewatch/log.h"
#include "rarewatch/rcf.h"
#include "rarewatch/strutil.h"

#define STRIPES 16
#define RCF_MAX_DIMS 16
#define KEY_MAX 256

enum kind { K_THRESHOLD, K_ZSCORE, K_QUANTILE, K_RATE, K_CATEGORY, K_RCF, K_AUTO };

/* The per-key slot of an rcf detector: the forest lives outside the table. */
struct rcf_slot {
    struct rcf *forest;
    struct det_calib calib;
    uint32_t n;
};

struct stripe {
    pthread_mutex_t lock;
    struct keytab *tab;
    /* Records scored with this stripe's keys, counted under the lock: an
     * atomic add per record on a counter every shard worker shares cost
     * more than the lookup. */
    uint64_t scored;
};

struct detector {
    char *name;
    enum kind kind;
    enum det_type dtype;
    uint64_t signature; /* of the definition, for reloads and state files */
    struct json_path *field;
    struct json_path *fields[RCF_MAX_DIMS];
    char *field_names[RCF_MAX_DIMS];
    unsigned dims;
    char *field_name;
    struct json_path *key;
    char *key_name;         /* the key's path as configured */
    int pf;                 /* its look-ahead key (stage->pf), -1: none */
    double alert_threshold; /* NAN: the type's rule */
    double rate_idle;       /* rate: [detector] idle_timeout, seconds (0: never) */
    bool expires;           /* keyed, with an idle_expiry: ticks forget idle keys */
    union {
        struct det_threshold_params th;
        struct det_zscore_params z;
        struct det_quantile_params q;
        struct det_rate_params rate;
        struct det_category_params cat;
        struct det_auto_params au;
    } p;
    struct rcf_params rcfp;
    struct det_calib_params calibp;
    uint32_t rcf_min_samples;
    struct stripe stripes[STRIPES];
    /* Its tables have outgrown the cache (note_created): the record stage
     * looks ahead (detect_stage_lookahead). Never cleared: tables do not
     * shrink. */
    _Atomic bool big;
    size_t value_size;
    /* scored: the stateless (threshold) records and those counted before a
     * reload; the keyed ones are counted per stripe. */
    _Atomic uint64_t scored, anomalies, skipped;
};

/* Look-ahead (detect_stage_prefetch): a top-level key field, found in a
 * record's raw JSON text as "name". */
#define PF_KEYS 4
#define PF_NAME_MAX 62
struct pf_key {
    char needle[PF_NAME_MAX + 3];
    size_t len;
};

struct detect_stage {
    struct detector *d;
    size_t n;
    bool has_rate;
    bool has_expiry;  /* a keyed table with an idle_expiry: ticks expire keys */
    double rate_idle; /* seconds: the smallest rate idle_timeout > 0; 0: none */
    struct pf_key pf[PF_KEYS];
    unsigned n_pf;
};

/* The stripe of a key hash. Not from the low bits: the keytab's index
 * position is the hash's low bits, and a stripe chosen by them would use
 * one index position in STRIPES (every key of stripe k has h % 16 == k),
 * so runs of probes grew STRIPES times longer. Nor from the high half,
 * which is the index's tag. */
static inline struct stripe *stripe_of(struct detector *d, uint64_t h)
{
    return &d->stripes[(h >> 28) % STRIPES];
}

/* Where lookups of a detector's keys touch more than this, hinting them
 * ahead pays: bench_detect's daemon rows (zscore, learning keys) gave
 * about -24 ns per record at 1,000 keys (the look-ahead's own text search
 * and hash), +-0 at 10,000 (2 MiB), +43 at 30,000 and +116 at 100,000. */
#define LOOKAHEAD_MIN_BYTES (4u << 20)

/* A key was created in stripe st (its lock held). */
static inline void note_created(struct detector *d, const struct stripe *st)
{
    if (!atomic_load_explicit(&d->big, memory_order_relaxed) &&
        keytab_working_set(st->tab) * STRIPES > LOOKAHEAD_MIN_BYTES)
        atomic_store_explicit(&d->big, true, memory_order_relaxed);
}

static const char *const kind_names[] = { "threshold", "zscore", "quantile", "rate", "rare_category", "rcf", "auto" };

static void rcf_slot_remove(void *value, void *ud)
{
    struct rcf_slot *s = value;
    s->forest = rcf_free(s->forest);
}

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return (h ^ 0xff) * 0x100000001b3ULL;
}

static void detector_free(struct detector *d)
{
    free(d->name);
    free(d->field_name);
    free(d->key_name);
    json_path_free(d->field);
    json_path_free(d->key);
    for (unsigned i = 0; i < d->dims; i++) {
        json_path_free(d->fields[i]);
        free(d->field_names[i]);
    }
    for (int i = 0; i < STRIPES; i++) {
        keytab_free(d->stripes[i].tab);
        pthread_mutex_destroy(&d->stripes[i].lock);
    }
}

struct detect_stage *detect_stage_free(struct detect_stage *s)
{
    if (s) {
        for (size_t i = 0; i < s->n; i++)
            detector_free(&s->d[i]);
        free(s->d);
        free(s);
    }
    return NULL;
}

size_t detect_stage_count(const struct detect_stage *s) { return s ? s->n : 0; }

bool detect_stage_needs_tick(const struct detect_stage *s) { return s && (s->has_rate || s->has_expiry); }

double detect_stage_rate_idle(const struct detect_stage *s) { return s ? s->rate_idle : 0; }

double detect_watermark(const struct det_clock *c, size_t n, double now, double idle)
{
    double wm = NAN;
    for (size_t i = 0; i < n; i++) {
        /* A worker that has seen no record yet feeds no key: it holds
         * nothing back. */
        if (!isfinite(c[i].event_time))
            continue;
        double t = c[i].event_time;
        double quiet = now - c[i].arrival;
        /* Quiet for idle_timeout: as win_tick(), the shard's time moves on
         * as if its stream had kept pace with the wall clock. */
        if (idle > 0 && quiet >= idle)
            t += quiet;
        if (isnan(wm) || t < wm)
            wm = t;
    }
    return wm;
}

static const struct conf_value *V(const struct conf_section *sec, enum rw_key k) { return conf_sget(sec, k); }

static int compile_path(const struct conf_section *sec, enum rw_key k, struct json_path **out,
                        struct conf_diag *diag, unsigned *errors)
{
    const struct conf_value *v = V(sec, k);
    if (!v->has_value || !v->raw || !*v->raw)
        return 0;
    int r = json_path_compile(v->raw, out);
    if (r < 0) {
        conf_diag_add(diag, v->file, v->line, "[detector.%s] %s = %s: not a field path (use a.b or items[0].sku)",
                      sec->name, rw_schema.keys[k].name, v->raw);
        (*errors)++;
    }
    return r;
}

static int setup(struct detector *d, const struct rw_config *cfg, const struct conf_section *sec,
                 struct conf_diag *diag, unsigned *errors)
{
    const char *type = conf_stype(cfg, sec);
    for (size_t i = 0; i < ELEMENTSOF(kind_names); i++)
        if (type && streq(type, kind_names[i]))
            d->kind = (enum kind)i;
    static const enum det_type dt[] = { DET_THRESHOLD, DET_ZSCORE, DET_QUANTILE, DET_RATE,
                                        DET_RARE_CATEGORY, 0, DET_AUTO };
    d->dtype = dt[d->kind];
    d->name = strdup(sec->name);
    uint64_t sig = fnv(0xcbf29ce484222325ULL, type);
    for (size_t k = 0; k < rw_schema.n_keys; k++)
        if (streq(rw_schema.keys[k].section, "detector") && sec->values[k].has_value) {
            sig = fnv(sig, rw_schema.keys[k].name);
            sig = fnv(sig, sec->values[k].raw);
        }
    d->signature = sig;
    const struct conf_value *ft = V(sec, RWK_detector_field);
    bool needs_field = d->kind != K_RATE && d->kind != K_RCF;
    if (needs_field && !ft->has_value) {
        conf_diag_add(diag, sec->file, sec->line, "[detector.%s] needs 'field' (the field to watch)", sec->name);
        (*errors)++;
    }
    compile_path(sec, RWK_detector_field, &d->field, diag, errors);
    if (ft->has_value)
        d->field_name = strdup(ft->raw);
    compile_path(sec, RWK_detector_key, &d->key, diag, errors);
    d->pf = -1;
    if (d->key && !(d->key_name = strdup(V(sec, RWK_detector_key)->raw)))
        return -ENOMEM;
    const struct conf_value *at = V(sec, RWK_detector_alert_threshold);
    d->alert_threshold = at->has_value ? at->d : NAN;
    det_calib_params_default(&d->calibp);

    const struct conf_value *hl = V(sec, RWK_detector_half_life_samples);
    const struct conf_value *ms = V(sec, RWK_detector_min_samples);
    const struct conf_value *th = V(sec, RWK_detector_threshold);
    int pr = 0;
    switch (d->kind) {
    case K_THRESHOLD:
        det_threshold_params_default(&d->p.th);
        if (V(sec, RWK_detector_above)->has_value)
            d->p.th.above = V(sec, RWK_detector_above)->d;
        if (V(sec, RWK_detector_below)->has_value)
            d->p.th.below = V(sec, RWK_detector_below)->d;
        if (!V(sec, RWK_detector_above)->has_value && !V(sec, RWK_detector_below)->has_value) {
            conf_diag_add(diag, sec->file, sec->line, "[detector.%s] threshold needs 'above' and/or 'below'", sec->name);
            (*errors)++;
        }
        pr = det_threshold_params_check(&d->p.th);
        break;
    case K_ZSCORE:
        det_zscore_params_default(&d->p.z);
        if (hl->has_value)
            d->p.z.half_life = hl->d;
        if (V(sec, RWK_detector_half_life)->has_value)
            d->p.z.half_life_usec = (int64_t)V(sec, RWK_detector_half_life)->u;
        if (th->has_value)
            d->p.z.threshold = th->d;
        if (ms->has_value)
            d->p.z.min_samples = (uint32_t)ms->i;
        pr = det_zscore_params_check(&d->p.z);
        break;
    case K_QUANTILE:
        det_quantile_params_default(&d->p.q);
        if (hl->has_value)
            d->p.q.half_life = hl->d;
        if (th->has_value)
            d->p.q.threshold = th->d;
        if (ms->has_value)
            d->p.q.min_samples = (uint32_t)ms->i;
        pr = det_quantile_params_check(&d->p.q);
        break;
    case K_RATE:
        det_rate_params_default(&d->p.rate);
        d->p.rate.interval_usec = (int64_t)V(sec, RWK_detector_interval)->u;
        d->p.rate.daily = V(sec, RWK_detector_daily)->b;
        d->p.rate.min_expected = V(sec, RWK_detector_min_expected)->d;
        d->rate_idle = (double)V(sec, RWK_detector_idle_timeout)->u / 1e6;
        if (hl->has_value)
            d->p.rate.half_life = hl->d;
        if (at->has_value)
            d->p.rate.min_score = at->d;
        det_rate_params_prepare(&d->p.rate);
        pr = det_rate_params_check(&d->p.rate);
        break;
    case K_CATEGORY:
        det_category_params_default(&d->p.cat);
        d->p.cat.alpha = V(sec, RWK_detector_alpha)->d;
        if (hl->has_value)
            d->p.cat.half_life = hl->d;
        if (ms->has_value)
            d->p.cat.min_samples = (uint32_t)ms->i;
        if (at->has_value)
            d->p.cat.min_score = at->d;
        pr = det_category_params_check(&d->p.cat);
        break;
    case K_AUTO:
        det_auto_params_default(&d->p.au);
        if (hl->has_value)
            d->p.au.half_life = hl->d;
        if (ms->has_value)
            d->p.au.min_samples = (uint32_t)ms->i;
        if (at->has_value)
            d->p.au.min_score = at->d;
        pr = det_auto_params_check(&d->p.au);
        break;
    case K_RCF: {
        char *const *fl = V(sec, RWK_detector_fields)->list;
        size_t nf = strv_length(fl);
        if (nf == 0 || nf > RCF_MAX_DIMS) {
            conf_diag_add(diag, sec->file, sec->line, "[detector.%s] rcf needs 'fields' (1 to %d numeric fields)",
                          sec->name, RCF_MAX_DIMS);
            (*errors)++;
            break;
        }
        for (size_t i = 0; i < nf; i++) {
            if (json_path_compile(fl[i], &d->fields[i]) < 0) {
                conf_diag_add(diag, V(sec, RWK_detector_fields)->file, V(sec, RWK_detector_fields)->line,
                              "[detector.%s] fields: '%s' is not a field path", sec->name, fl[i]);
                (*errors)++;
            }
            d->field_names[i] = strdup(fl[i]);
            d->dims++;
        }
        d->rcfp = (struct rcf_params){
            .trees = (unsigned)V(sec, RWK_detector_trees)->i,
            .sample_size = (unsigned)V(sec, RWK_detector_sample_size)->i,
            .dims = d->dims,
            .shingle_size = (unsigned)V(sec, RWK_detector_shingle_size)->i,
            .time_decay = V(sec, RWK_detector_time_decay)->d,
            .seed = d->signature,
        };
        d->rcf_min_samples = ms->has_value ? (uint32_t)ms->i : d->rcfp.sample_size;
        break;
    }
    }
    if (pr < 0) {
        conf_diag_add(diag, sec->file, sec->line, "[detector.%s] parameters out of range for type %s",
                      sec->name, kind_names[d->kind]);
        (*errors)++;
    }
    d->value_size = d->kind == K_RCF ? sizeof(struct rcf_slot)
                    : d->kind == K_THRESHOLD ? 8
                                             : det_state_size(d->dtype);
    int64_t max_keys = V(sec, RWK_detector_max_keys)->i;
    struct keytab_params kp = {
        .max_keys = (uint32_t)MAX(1, (max_keys + STRIPES - 1) / STRIPES),
        .value_size = (uint32_t)d->value_size,
        .value_hot = d->kind == K_RATE ? (uint32_t)det_rate_state_hot(&d->p.rate) : 0,
        .key_max = KEY_MAX,
        .idle_usec = (int64_t)V(sec, RWK_detector_idle_expiry)->u,
        .on_remove = d->kind == K_RCF ? rcf_slot_remove : NULL,
    };
    d->expires = d->kind != K_THRESHOLD && kp.idle_usec > 0;
    for (int i = 0; i < STRIPES; i++) {
        pthread_mutex_init(&d->stripes[i].lock, NULL);
        d->stripes[i].tab = keytab_new(&kp);
        if (!d->stripes[i].tab)
            return -ENOMEM;
    }
    return d->name ? 0 : -ENOMEM;
}

/* A keyed detector whose key is a plain top-level member can be looked
 * ahead; detectors sharing the key share its look-ahead. */
static void pf_setup(struct detect_stage *s, struct detector *d)
{
    const char *k = d->key_name;
    if (!k || d->kind == K_THRESHOLD)
        return;
    size_t len = strlen(k);
    if (len == 0 || len > PF_NAME_MAX || strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                   "0123456789_-") != len)
        return;
    char needle[PF_NAME_MAX + 3];
    snprintf(needle, sizeof(needle), "\"%s\"", k);
    for (unsigned i = 0; i < s->n_pf; i++)
        if (streq(s->pf[i].needle, needle)) {
            d->pf = (int)i;
            return;
        }
    if (s->n_pf == PF_KEYS)
        return;
    memcpy(s->pf[s->n_pf].needle, needle, len + 3);
    s->pf[s->n_pf].len = len + 2;
    d->pf = (int)s->n_pf++;
}

int detect_stage_new(const struct rw_config *cfg, struct conf_diag *diag, struct detect_stage **out)
{
    _cleanup_(detect_stage_freep) struct detect_stage *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    size_t n = conf_named_count(cfg, "detector");
    s->d = calloc(n ? n : 1, sizeof(*s->d));
    if (!s->d)
        return -ENOMEM;
    unsigned errors = 0;
    for (size_t i = 0; i < n; i++) {
        s->n++;
        int r = setup(&s->d[i], cfg, conf_named_nth(cfg, "detector", i), diag, &errors);
        if (r == -ENOMEM)
            return r;
    }
    if (errors)
        return -EINVAL;
    for (size_t i = 0; i < s->n; i++)
        pf_setup(s, &s->d[i]);
    for (size_t i = 0; i < s->n; i++) {
        const struct detector *d = &s->d[i];
        s->has_expiry |= d->expires;
        if (d->kind != K_RATE)
            continue;
        s->has_rate = true;
        if (d->rate_idle > 0 && (s->rate_idle == 0 || d->rate_idle < s->rate_idle))
            s->rate_idle = d->rate_idle;
    }
    *out = TAKE_PTR(s);
    return 0;
}

/* ---- evaluation ---- */

static int key_of(struct detector *d, struct json_doc *doc, char *buf, size_t n, size_t *len)
{
    if (!d->key) {
        *len = 0;
        buf[0] = 0;
        return 0;
    }
    struct rw_value v;
    if (json_lookup(doc, d->key, &v) < 0)
        return -ENOENT;
    if (v.type == RW_STR) {
        if (v.s.len >= n)
            return -E2BIG;
        memcpy(buf, v.s.p, v.s.len);
        buf[v.s.len] = 0;
        *len = v.s.len;
        return 0;
    }
    if (v.type == RW_NUM) {
        int l = snprintf(buf, n, "%.17g", v.num);
        *len = (size_t)MAX(l, 0);
        return 0;
    }
    if (v.type == RW_BOOL) {
        *len = (size_t)snprintf(buf, n, "%s", v.b ? "true" : "false");
        return 0;
    }
    return -ENOENT;
}

static bool number_of(struct json_doc *doc, const struct json_path *p, double *x)
{
    struct rw_value v;
    if (!p || json_lookup(doc, p, &v) < 0)
        return false;
    if (v.type == RW_NUM && isfinite(v.num)) {
        *x = v.num;
        return true;
    }
    if (v.type == RW_STR && v.s.len && v.s.len < 64) {
        char b[64];
        memcpy(b, v.s.p, v.s.len);
        b[v.s.len] = 0;
        return parse_double(b, x) == 0;
    }
    return false;
}

static double score_from_surprise(double s) { return s > 0 ? 1.0 - exp10(-s) : 0.0; }

/* Run detector d on the record; 1 when it scored, 0 when not applicable. */
static int run_one(struct detector *d, const struct detect_record *rec, const char *key, size_t klen,
                   struct det_result *res, char *category, size_t catn, double *attrib)
{
    double x = 0;
    const char *cat = NULL;
    size_t catlen = 0;
    struct rw_value cv;
    memset(res, 0, sizeof(*res));
    switch (d->kind) {
    case K_THRESHOLD:
    case K_ZSCORE:
    case K_QUANTILE:
    case K_AUTO:
        if (!number_of(rec->doc, d->field, &x))
            return 0;
        break;
    case K_CATEGORY:
        if (json_lookup(rec->doc, d->field, &cv) < 0)
            return 0;
        if (cv.type == RW_STR) {
            cat = cv.s.p;
            catlen = cv.s.len;
        } else if (cv.type == RW_NUM) {
            snprintf(category, catn, "%.17g", cv.num);
            cat = category;
            catlen = strlen(category);
        } else if (cv.type == RW_BOOL) {
            cat = cv.b ? "true" : "false";
            catlen = strlen(cat);
        } else
            return 0;
        if (cat != category) {
            size_t l = MIN(catlen, catn - 1);
            memcpy(category, cat, l);
            category[l] = 0;
        }
        break;
    case K_RCF:
        for (unsigned i = 0; i < d->dims; i++)
            if (!number_of(rec->doc, d->fields[i], &attrib[RCF_MAX_DIMS + i]))
                return 0;
        break;
    case K_RATE:
        break;
    }
    if (d->kind == K_THRESHOLD) {
        det_threshold_eval(&d->p.th, x, res);
        return 1;
    }
    /* Microseconds; an event time past the year 287,000 saturates. */
    double et = rec->event_time;
    int64_t ts = isfinite(et) && et > 0 ? (et < 9e12 ? round_nonneg_i64(et * 1e6) : INT64_MAX) : 0;
    uint64_t h = keytab_hash(key, klen);
    struct stripe *st = stripe_of(d, h);
    pthread_mutex_lock(&st->lock);
    bool created;
    void *state = keytab_get_hashed(st->tab, h, key, klen, ts ? ts : (int64_t)now_realtime_usec(), &created);
    if (!state) {
        pthread_mutex_unlock(&st->lock);
        return -ENOMEM;
    }
    if (created)
        note_created(d, st);
    int ret = 1;
    switch (d->kind) {
    case K_ZSCORE: det_zscore_update(&d->p.z, state, x, ts, res); break;
    case K_QUANTILE: det_quantile_update(&d->p.q, state, x, res); break;
    case K_AUTO: det_auto_update(&d->p.au, state, x, ts, res); break;
    case K_CATEGORY: det_category_update(&d->p.cat, state, category, strlen(category), res); break;
    case K_RATE: {
        struct det_result closed;
        memset(&closed, 0, sizeof(closed));
        /* A closed interval is one test; scoring the open one at every
         * event would test it again and again and multiply false alarms.
         * The record that closes an interval carries its verdict; the
         * others score 0, so the open interval is not scored at all (a
         * Poisson tail per event, thrown away). */
        int nc = det_rate_add(&d->p.rate, state, ts ? ts : (int64_t)now_realtime_usec(), 1, &closed, NULL);
        if (nc > 0)
            *res = closed;
        else
            *res = (struct det_result){ .value = ((struct det_rate_state *)state)->count,
                                        .why = DET_WHY_NONE };
        break;
    }
    case K_RCF: {
        struct rcf_slot *slot = state;
        if (!slot->forest && !(slot->forest = rcf_new(&d->rcfp))) {
            ret = -ENOMEM;
            break;
        }
        /* Attribution costs a pass per dimension in every node: only for
         * the records that turn out to be alerts. */
        double raw = rcf_score(slot->forest, attrib + RCF_MAX_DIMS, NULL);
        double s = det_calib_surprise(&d->calibp, &slot->calib, raw);
        if (slot->n + 1 > d->rcf_min_samples && 1.0 - exp10(-s) >= (isnan(d->alert_threshold) ? 0.999 : d->alert_threshold))
            rcf_score(slot->forest, attrib + RCF_MAX_DIMS, attrib);
        rcf_insert(slot->forest, attrib + RCF_MAX_DIMS);
        det_calib_learn(&d->calibp, &slot->calib, raw);
        slot->n++;
        res->raw = raw;
        res->surprise = slot->n > d->rcf_min_samples ? s : 0;
        res->score = score_from_surprise(res->surprise);
        res->why = slot->n > d->rcf_min_samples ? DET_WHY_ABOVE : DET_WHY_LEARNING;
        res->alert = slot->n > d->rcf_min_samples && res->score >= 0.999;
        break;
    }
    case K_THRESHOLD: break;
    }
    st->scored += ret == 1;
    pthread_mutex_unlock(&st->lock);
    return ret;
}

/* {"field":value,...} over an rcf detector's fields. */
static void put_field_map(struct buf *b, const struct detector *d, const double *v)
{
    buf_putc(b, '{');
    for (unsigned k = 0; k < d->dims; k++) {
        if (k)
            buf_putc(b, ',');
        buf_put_json_string(b, d->field_names[k], strlen(d->field_names[k]));
        buf_putc(b, ':');
        buf_put_json_g17(b, v[k]);
    }
    buf_putc(b, '}');
}

/* The "reason" sentence of an anomaly (key: NUL-terminated). */
static void anomaly_reason(struct buf *reason, const struct detector *d, const char *key,
                           const struct det_result *r, const char *category, const double *attrib)
{
    if (d->kind == K_RCF) {
        double total = 0;
        unsigned top = 0;
        for (unsigned k = 0; k < d->dims; k++) {
            total += attrib[k];
            if (attrib[k] > attrib[top])
                top = k;
        }
        buf_printf(reason, "random cut forest score %.2f is rarer than %.4g%% of this key's history; "
                   "%s contributed most (%.0f%%)", r->raw, 100.0 * r->score, d->field_names[top],
                   total > 0 ? 100.0 * attrib[top] / total : 100.0);
        if (d->key)
            buf_printf(reason, " for %s", key);
    } else
        det_reason(reason, d->dtype, r, d->key ? key : NULL, d->field_name, category);
}

/* One element of "anomalies": {"detector","key","score","value",
 * "expected","reason"} (+ "attribution" for rcf). category: the value of a
 * rare_category detector; attrib: rcf's attribution (dims values) followed,
 * at RCF_MAX_DIMS, by the point. */
static void put_anomaly(struct buf *b, const struct detector *d, const char *key, size_t klen,
                        const struct det_result *r, const char *category, const double *attrib)
{
    buf_puts(b, "{\"detector\":");
    buf_put_json_string(b, d->name, strlen(d->name));
    buf_puts(b, ",\"key\":");
    if (d->key)
        buf_put_json_string(b, key, klen);
    else
        buf_puts(b, "null");
    buf_puts(b, ",\"score\":");
    buf_put_json_g17(b, r->score);
    buf_puts(b, ",\"value\":");
    if (d->kind == K_CATEGORY)
        buf_put_json_string(b, category, strlen(category));
    else if (d->kind == K_RCF)
        put_field_map(b, d, attrib + RCF_MAX_DIMS);
    else
        buf_put_json_g17(b, r->value);
    buf_puts(b, ",\"expected\":");
    if (d->kind == K_RCF || d->kind == K_CATEGORY)
        buf_puts(b, "null");
    else
        buf_put_json_g17(b, r->expected);
    buf_puts(b, ",\"reason\":");
    struct buf reason = BUF_INIT;
    anomaly_reason(&reason, d, key, r, category, attrib);
    buf_put_json_string(b, reason.data ? reason.data : "", reason.len);
    buf_free(&reason);
    if (d->kind == K_RCF) {
        buf_puts(b, ",\"attribution\":");
        put_field_map(b, d, attrib);
    }
    buf_putc(b, '}');
}

/* The hash of a string member "name": "value" in raw JSON text, as
 * key_of() would produce it for the parsed record (escaped strings are
 * left alone: their key is the unescaped text). */
static bool pf_raw_key(const char *text, size_t len, const struct pf_key *k, uint32_t *last_off,
                       uint64_t *h)
{
    /* The records of a stream mostly share a layout: try where the member
     * was in the last record before searching. */
    const char *end = text + len, *p = text + *last_off;
    if (!(*last_off + k->len <= len && memcmp(p, k->needle, k->len) == 0)) {
        if (!(p = memmem(text, len, k->needle, k->len)))
            return false;
        *last_off = (uint32_t)MIN((size_t)(p - text), (size_t)UINT32_MAX);
    }
    p += k->len;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    if (p == end || *p++ != ':')
        return false;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    if (p == end || *p++ != '"')
        return false;
    const char *q = memchr(p, '"', (size_t)(end - p));
    if (!q || q - p > KEY_MAX || memchr(p, '\\', (size_t)(q - p)))
        return false;
    *h = keytab_hash(p, (size_t)(q - p));
    return true;
}

/* Two stages, so that neither waits on the other's miss: a record's index
 * lines are hinted when it is looked ahead at, its slots PF_RING calls
 * later, when those index lines have arrived. One ring per thread: each
 * shard worker looks ahead in its own batches. */
#define PF_RING 2
struct pf_ring {
    const struct detect_stage *s;
    unsigned pos;
    uint8_t found[PF_RING]; /* bit k: pf key k was found */
    uint64_t h[PF_RING][PF_KEYS];
    uint32_t last_off[PF_KEYS]; /* where pf key k was in the last record */
    uint32_t misses[PF_KEYS];   /* records in a row without pf key k */
};
/* A key not in the raw text (made by a transform, a CSV column) would cost
 * a search of every record: after this many misses in a row it is only
 * looked for in one record in 64. */
#define PF_GIVE_UP 32
static _Thread_local struct pf_ring pf_ring;

bool detect_stage_lookahead(const struct detect_stage *s)
{
    for (size_t i = 0; s && i < s->n; i++)
        if (s->d[i].pf >= 0 && atomic_load_explicit(&s->d[i].big, memory_order_relaxed))
            return true;
    return false;
}

void detect_stage_force_lookahead(struct detect_stage *s)
{
    for (size_t i = 0; s && i < s->n; i++)
        atomic_store(&s->d[i].big, true);
}

void detect_stage_prefetch(struct detect_stage *s, const char *json, size_t len)
{
    if (!s || !s->n_pf)
        return;
    struct pf_ring *rg = &pf_ring;
    if (rg->s != s)
        *rg = (struct pf_ring){ .s = s };
    unsigned at = rg->pos;
    rg->pos = (at + 1) % PF_RING;
    /* Stage two for the record looked ahead at PF_RING calls ago. The
     * tables are read without their stripe locks: a hint reads only an
     * address (keytab_prefetch_slot). */
    unsigned found = rg->found[at];
    for (size_t i = 0; found && i < s->n; i++) {
        struct detector *d = &s->d[i];
        if (d->pf >= 0 && (found >> d->pf & 1))
            keytab_prefetch_slot(stripe_of(d, rg->h[at][d->pf])->tab, rg->h[at][d->pf]);
    }
    /* Stage one for this record. */
    found = 0;
    for (unsigned k = 0; k < s->n_pf; k++) {
        if (rg->misses[k] >= PF_GIVE_UP && (rg->misses[k]++ & 63))
            continue;
        if (pf_raw_key(json, len, &s->pf[k], &rg->last_off[k], &rg->h[at][k])) {
            found |= 1u << k;
            rg->misses[k] = 0;
        } else {
            rg->misses[k]++;
        }
    }
    rg->found[at] = (uint8_t)found;
    for (size_t i = 0; found && i < s->n; i++) {
        struct detector *d = &s->d[i];
        if (d->pf >= 0 && (found >> d->pf & 1))
            keytab_prefetch_index(stripe_of(d, rg->h[at][d->pf])->tab, rg->h[at][d->pf]);
    }
}

int detect_stage_eval(struct detect_stage *s, const struct detect_record *rec, struct buf *out,
                      struct detect_verdict *v)
{
    *v = (struct detect_verdict){ 0 };
    if (!s || s->n == 0)
        return 0;
    /* The anomalies array is built aside and spliced after the score. */
    struct buf fired = BUF_INIT;
    unsigned n_fired = 0;
    double best = 0;
    for (size_t i = 0; i < s->n; i++) {
        struct detector *d = &s->d[i];
        if (rec->where && !rec->where(rec->ud, i))
            continue;
        char key[KEY_MAX + 1], category[KEY_MAX + 1];
        size_t klen;
        if (key_of(d, rec->doc, key, sizeof(key), &klen) < 0) {
            atomic_fetch_add(&d->skipped, 1);
            continue;
        }
        struct det_result r;
        /* Only rcf reads or writes it: 256 bytes not zeroed per detector
         * per record for the others. */
        double attrib[2 * RCF_MAX_DIMS];
        if (d->kind == K_RCF)
            memset(attrib, 0, sizeof(attrib));
        int rr = run_one(d, rec, key, klen, &r, category, sizeof(category), attrib);
        if (rr < 0) {
            buf_free(&fired);
            return rr;
        }
        if (rr == 0) {
            atomic_fetch_add(&d->skipped, 1);
            continue;
        }
        if (d->kind == K_THRESHOLD)
            atomic_fetch_add(&d->scored, 1);
        v->scored = true;
        bool alert = isnan(d->alert_threshold) ? r.alert : r.score >= d->alert_threshold;
        if (r.score > best)
            best = r.score;
        if (!alert)
            continue;
        atomic_fetch_add(&d->anomalies, 1);
        v->is_anomaly = true;
        if (n_fired++)
            buf_putc(&fired, ',');
        put_anomaly(&fired, d, key, klen, &r, category, attrib);
        if (rec->log && log_enabled(LOG_NOTICE)) {
            struct buf reason = BUF_INIT;
            anomaly_reason(&reason, d, key, &r, category, attrib);
            log_fields(LOG_NOTICE, 0, (&(struct log_fields){ .detector = d->name }), "anomaly: %s",
                       reason.data ? reason.data : "");
            buf_free(&reason);
        }
    }
    int r = 0;
    if (v->scored) {
        v->score = best;
        r = buf_puts(out, ",\"anomaly_score\":");
        r = r ?: buf_put_json_g17(out, best);
        r = r ?: buf_puts(out, v->is_anomaly ? ",\"is_anomaly\":true,\"anomalies\":[" : ",\"is_anomaly\":false,\"anomalies\":[");
        if (r == 0 && fired.len)
            r = buf_append(out, fired.data, fired.len);
        if (r == 0)
            r = buf_putc(out, ']');
    }
    buf_free(&fired);
    return r;
}

/* A rate detector's part of a tick on one stripe (its lock held): close
 * the intervals of keys that saw no events up to ts, each alert a derived
 * line in out. */
static void rate_tick_stripe(struct detector *d, struct stripe *st, int64_t ts, double now,
                             struct rw_output *out)
{
    uint32_t pos = 0;
    const char *key;
    size_t klen;
    void *state;
    int64_t last;
    while (keytab_next(st->tab, &pos, &key, &klen, &state, &last)) {
        struct det_result r;
        memset(&r, 0, sizeof(r));
        if (det_rate_tick(&d->p.rate, state, ts, &r) <= 0)
            continue;
        bool alert = isnan(d->alert_threshold) ? r.alert : r.score >= d->alert_threshold;
        if (!alert)
            continue;
        atomic_fetch_add(&d->anomalies, 1);
        struct rw_line_meta *m = rw_output_begin_line(out, -1);
        if (!m)
            return;
        char tsb[40];
        format_iso8601_ms(tsb, sizeof(tsb), (uint64_t)ts);
        buf_printf(&out->lines, "{\"_alert\":{\"detector\":");
        buf_put_json_string(&out->lines, d->name, strlen(d->name));
        buf_printf(&out->lines, ",\"time\":\"%s\"},\"anomaly_score\":", tsb);
        buf_put_json_g17(&out->lines, r.score);
        buf_puts(&out->lines, ",\"is_anomaly\":true,\"anomalies\":[");
        put_anomaly(&out->lines, d, key, klen, &r, NULL, NULL);
        buf_puts(&out->lines, "]}\n");
        m->is_anomaly = true;
        m->anomaly_score = r.score;
        m->event_time = now;
        rw_output_end_line(out, m);
    }
}

int detect_stage_tick(struct detect_stage *s, double now, struct rw_output *out)
{
    if (!s)
        return 0;
    int64_t ts = (int64_t)llround(now * 1e6);
    for (size_t i = 0; i < s->n; i++) {
        struct detector *d = &s->d[i];
        if (d->kind != K_RATE && !d->expires)
            continue;
        for (int k = 0; k < STRIPES; k++) {
            struct stripe *st = &d->stripes[k];
            pthread_mutex_lock(&st->lock);
            if (d->kind == K_RATE)
                rate_tick_stripe(d, st, ts, now, out);
            /* A slice of the table per tick (a tick a second sweeps 16,384
             * slots a second): the keys last seen more than idle_expiry of
             * event time ago. rcf's forests are freed by the table's
             * on_remove. */
            keytab_expire(st->tab, ts, 1024);
            pthread_mutex_unlock(&st->lock);
        }
    }
    return 0;
}

/* ---- reload and persistence ---- */

static void swap_state(struct detector *a, struct detector *b)
{
    for (int k = 0; k < STRIPES; k++) {
        struct keytab *t = a->stripes[k].tab;
        a->stripes[k].tab = b->stripes[k].tab;
        b->stripes[k].tab = t;
    }
    bool big = atomic_load(&a->big);
    atomic_store(&a->big, atomic_load(&b->big));
    atomic_store(&b->big, big);
}

static uint64_t scored_total(struct detector *d)
{
    uint64_t n = atomic_load(&d->scored);
    for (int k = 0; k < STRIPES; k++) {
        pthread_mutex_lock(&d->stripes[k].lock);
        n += d->stripes[k].scored;
        pthread_mutex_unlock(&d->stripes[k].lock);
    }
    return n;
}

void detect_stage_adopt(struct detect_stage *s, struct detect_stage *old)
{
    if (!s || !old)
        return;
    for (size_t i = 0; i < s->n; i++) {
        struct detector *d = &s->d[i], *o = NULL;
        for (size_t j = 0; j < old->n && !o; j++)
            if (streq(d->name, old->d[j].name))
                o = &old->d[j];
        if (!o) {
            log_info("detector %s: new, starts fresh", d->name);
            continue;
        }
        if (d->signature != o->signature) {
            log_info("detector %s: definition changed, starts fresh", d->name);
            continue;
        }
        /* The old stage is no longer used by any worker when this runs. */
        swap_state(d, o);
        atomic_store(&d->scored, scored_total(o));
        atomic_store(&d->anomalies, atomic_load(&o->anomalies));
        struct detect_stats st;
        detect_stage_stats(s, i, &st);
        log_info("detector %s: definition unchanged, keeps its state (%" PRIu32 " keys)", d->name, st.keys);
    }
}

#define STATE_MAGIC "RWDETST1"

int detect_stage_save(struct detect_stage *s, const char *path)
{
    _cleanup_buf_ struct buf b = BUF_INIT;
    int r = buf_append(&b, STATE_MAGIC, 8);
    uint32_t n = (uint32_t)s->n;
    r = r ?: buf_append(&b, &n, 4);
    for (size_t i = 0; i < s->n && r >= 0; i++) {
        struct detector *d = &s->d[i];
        uint16_t nl = (uint16_t)strlen(d->name);
        r = buf_append(&b, &nl, 2);
        r = r ?: buf_append(&b, d->name, nl);
        r = r ?: buf_append(&b, &d->signature, 8);
        for (int k = 0; k < STRIPES && r >= 0; k++) {
            struct stripe *st = &d->stripes[k];
            pthread_mutex_lock(&st->lock);
            uint32_t pos = 0;
            const char *key;
            size_t klen;
            void *state;
            int64_t last;
            while (r >= 0 && keytab_next(st->tab, &pos, &key, &klen, &state, &last)) {
                uint16_t kl = (uint16_t)klen;
                size_t mark = b.len;
                uint32_t blen = 0;
                r = buf_putc(&b, 1); /* an entry follows */
                r = r ?: buf_append(&b, &kl, 2);
                r = r ?: buf_append(&b, key, klen);
                r = r ?: buf_append(&b, &last, 8);
                size_t lenpos = b.len;
                r = r ?: buf_append(&b, &blen, 4);
                size_t start = b.len;
                if (r < 0)
                    break;
                if (d->kind == K_RCF) {
                    struct rcf_slot *slot = state;
                    r = buf_append(&b, &slot->calib, sizeof(slot->calib));
                    r = r ?: buf_append(&b, &slot->n, 4);
                    if (r == 0 && slot->forest)
                        r = rcf_save(slot->forest, &b);
                } else if (d->kind == K_THRESHOLD)
                    r = 0;
                else
                    r = det_state_save(d->dtype, state, &b);
                if (r < 0) {
                    b.len = mark;
                    break;
                }
                blen = (uint32_t)(b.len - start);
                memcpy(b.data + lenpos, &blen, 4);
            }
            pthread_mutex_unlock(&st->lock);
        }
        r = r ?: buf_putc(&b, 0); /* end of this detector */
    }
    if (r < 0)
        return r;
    return write_file_atomic(path, b.data, b.len, 0640);
}

int detect_stage_load(struct detect_stage *s, const char *path)
{
    _cleanup_buf_ struct buf b = BUF_INIT;
    int r = read_whole_file(path, &b);
    if (r < 0)
        return r;
    return detect_stage_load_buffer(s, b.data, b.len);
}

/* One pass over a snapshot. Without apply it only checks the framing, so a
 * truncated or foreign file is refused before any state changes (the
 * daemon then starts fresh, as it says, not with half a snapshot); with
 * apply it restores each key whose detector is unchanged. A key whose own
 * record is unusable starts fresh and is counted: another layout (saved by
 * another version), values no update leaves, a forest rcf_load refuses, a
 * key longer than the table takes. */
static int load_pass(struct detect_stage *s, const unsigned char *p, const unsigned char *end,
                     bool apply)
{
#define NEED(k) do { if ((size_t)(end - p) < (size_t)(k)) return -EBADMSG; } while (0)
    NEED(12);
    if (memcmp(p, STATE_MAGIC, 8) != 0)
        return -EBADMSG;
    p += 8;
    uint32_t n;
    memcpy(&n, p, 4);
    p += 4;
    for (uint32_t i = 0; i < n; i++) {
        uint16_t nl;
        NEED(2);
        memcpy(&nl, p, 2);
        p += 2;
        NEED(nl + 8);
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)nl, (const char *)p);
        p += nl;
        uint64_t sig;
        memcpy(&sig, p, 8);
        p += 8;
        struct detector *d = NULL;
        for (size_t j = 0; apply && j < s->n; j++)
            if (streq(s->d[j].name, name) && s->d[j].signature == sig)
                d = &s->d[j];
        uint64_t stale = 0, invalid = 0;
        for (;;) {
            NEED(1);
            if (*p++ == 0)
                break;
            uint16_t kl;
            NEED(2);
            memcpy(&kl, p, 2);
            p += 2;
            NEED(kl + 12);
            const char *key = (const char *)p;
            p += kl;
            int64_t last;
            memcpy(&last, p, 8);
            p += 8;
            uint32_t blen;
            memcpy(&blen, p, 4);
            p += 4;
            NEED(blen);
            if (d) {
                uint64_t h = keytab_hash(key, kl);
                struct stripe *st = stripe_of(d, h);
                pthread_mutex_lock(&st->lock);
                bool created = false; /* not set when the key is refused */
                void *state = keytab_get_hashed(st->tab, h, key, kl, last, &created);
                int c = state ? 0 : -ERANGE; /* NULL: longer than the table's keys */
                if (created)
                    note_created(d, st);
                if (state && d->kind == K_RCF) {
                    struct rcf_slot *slot = state;
                    if (blen < sizeof(slot->calib) + 4) {
                        c = -ERANGE;
                    } else {
                        memcpy(&slot->calib, p, sizeof(slot->calib));
                        memcpy(&slot->n, p + sizeof(slot->calib), 4);
                        size_t fl = blen - sizeof(slot->calib) - 4;
                        int e = 0;
                        rcf_free(slot->forest);
                        slot->forest = fl ? rcf_load(p + sizeof(slot->calib) + 4, fl, &e) : NULL;
                        if (fl && !slot->forest)
                            c = e == -ENOMEM ? -ENOMEM : -ERANGE;
                    }
                } else if (state && d->kind != K_THRESHOLD) {
                    c = det_state_load(d->dtype, state, p, blen);
                    c = c == -EINVAL || c == -EPROTO ? -EPROTO : c < 0 ? -ERANGE : 0;
                }
                if (c < 0 && state)
                    keytab_remove(st->tab, key, kl);
                pthread_mutex_unlock(&st->lock);
                if (c == -ENOMEM)
                    return c;
                stale += c == -EPROTO;
                invalid += c == -ERANGE;
            }
            p += blen;
        }
        if (stale)
            log_warning("detector %s: %" PRIu64 " saved key states have another layout (older version?); they start fresh",
                        name, stale);
        if (invalid)
            log_warning("detector %s: %" PRIu64 " saved key states are damaged (values no update leaves); they start fresh",
                        name, invalid);
    }
#undef NEED
    return 0;
}

int detect_stage_load_buffer(struct detect_stage *s, const void *data, size_t len)
{
    const unsigned char *p = data;
    int r = load_pass(s, p, p + len, false);
    return r < 0 ? r : load_pass(s, p, p + len, true);
}

void detect_stage_totals(struct detect_stage *s, struct detect_stats *out)
{
    *out = (struct detect_stats){ 0 };
    for (size_t i = 0; s && i < s->n; i++) {
        struct detect_stats st;
        detect_stage_stats(s, i, &st);
        out->scored += st.scored;
        out->anomalies += st.anomalies;
        out->skipped += st.skipped;
        out->evictions += st.evictions;
        out->expirations += st.expirations;
        out->keys += st.keys;
    }
}

void detect_stage_stats(struct detect_stage *s, size_t i, struct detect_stats *out)
{
    struct detector *d = &s->d[i];
    *out = (struct detect_stats){
        .name = d->name,
        .type = kind_names[d->kind],
        .scored = scored_total(d),
        .anomalies = atomic_load(&d->anomalies),
        .skipped = atomic_load(&d->skipped),
    };
    for (int k = 0; k < STRIPES; k++) {
        struct keytab_stats ks;
        pthread_mutex_lock(&d->stripes[k].lock);
        keytab_stats(d->stripes[k].tab, &ks);
        if (!out->bytes_per_key)
            out->bytes_per_key = keytab_bytes_per_key(d->stripes[k].tab);
        pthread_mutex_unlock(&d->stripes[k].lock);
        out->keys += ks.count;
        out->evictions += ks.evictions;
        out->expirations += ks.expirations;
    }
}
