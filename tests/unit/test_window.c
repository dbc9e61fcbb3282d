/* SPDX-License-Identifier: Apache-2.0 */
/* [window.NAME]: boundaries of tumbling and sliding windows, every aggregate
 * (the approximate ones within their error bounds), lateness, time going
 * backwards, eviction, idle ticks, empty windows, many keys, config errors,
 * and the record stage's derived lines. */
#include "rarewatch/window.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/conf_schema.h"
#include "rarewatch/detect_stage.h"
#include "rarewatch/record_stage.h"
#include "rarewatch/transform.h"
#include "tap.h"

/* A round epoch second (a multiple of 3600) so window starts are easy. */
#define T0 1795003200.0

static struct rw_config *config(const char *text, struct conf_diag *d)
{
    struct rw_config *c = NULL;
    if (conf_load_string(&rw_schema, "t.conf", text, d, &c) < 0)
        return NULL;
    return c;
}

static struct win_set *wset(const char *text)
{
    struct conf_diag d = { 0 };
    struct rw_config *c = config(text, &d);
    struct win_set *s = NULL;
    if (!c || win_set_new(c, &d, &s) < 0) {
        for (size_t i = 0; i < d.n; i++)
            printf("# %s\n", d.msgs[i]);
        s = NULL;
    }
    conf_unref(c);
    conf_diag_clear(&d);
    return s;
}

/* Emitted windows, one per line. */
struct sink {
    struct buf all;
    size_t n;
    double last_end;
};

static int collect(void *ud, const char *json, size_t len, double end)
{
    struct sink *k = ud;
    k->n++;
    k->last_end = end;
    int r = buf_append(&k->all, json, len);
    return r ?: buf_putc(&k->all, '\n');
}

static struct json_doc doc;
static struct buf rec_text;

static int feed(struct win_set *s, struct sink *k, double t, const char *fmt, ...) _printf_(4, 5);
static int feed(struct win_set *s, struct sink *k, double t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_reset(&rec_text);
    (void)buf_vprintf(&rec_text, fmt, ap);
    va_end(ap);
    if (json_scan(&doc, rec_text.data, rec_text.len) < 0)
        return -EINVAL;
    return win_observe(s, &doc, t, NAN, 0, collect, k);
}

/* Numeric member `col` of the n-th (0-based) emitted window; NaN if absent
 * or null. */
/* A column of the line that starts at p (lines end with '\n'). */
static double line_col(const char *p, const char *name)
{
    const char *e = p; /* not strchr: under strict_string_checks it reads to the buffer's end */
    while (*e != '\n')
        e++;
    struct json_doc d;
    json_doc_init(&d, NULL);
    char *line = strndup(p, (size_t)(e - p));
    double x = NAN;
    struct json_path *path = NULL;
    struct rw_value v;
    if (json_scan(&d, line, strlen(line)) == 0 && json_path_compile(name, &path) == 0 &&
        json_lookup(&d, path, &v) == 0 && v.type == RW_NUM)
        x = v.num;
    json_path_free(path);
    json_doc_free(&d);
    free(line);
    return x;
}

static double col(struct sink *k, size_t n, const char *name)
{
    const char *p = k->all.data;
    for (size_t i = 0; p && i < n; i++)
        p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL;
    return p ? line_col(p, name) : NAN;
}

static struct win_stats stats(struct win_set *s, size_t i)
{
    struct win_stats st;
    win_set_stats(s, i, &st);
    return st;
}

TEST(tumbling_boundaries)
{
    struct win_set *s = wset("[window.m]\nsize = 1m\nkey = k\n");
    CHECK(s);
    struct sink k = { 0 };
    CHECK_INT(feed(s, &k, T0, "{\"k\":\"a\"}"), 0);
    CHECK_INT(feed(s, &k, T0 + 59.999, "{\"k\":\"a\"}"), 0);
    CHECK_UINT(k.n, 0);
    /* The first record at the end closes the window: end is exclusive. */
    CHECK_INT(feed(s, &k, T0 + 60, "{\"k\":\"a\"}"), 0);
    CHECK_UINT(k.n, 1);
    CHECK_STR(k.all.data, "{\"_window\":{\"name\":\"m\",\"key\":\"a\",\"start\":\"2026-11-18T12:00:00.000Z\","
                          "\"end\":\"2026-11-18T12:01:00.000Z\"},\"count\":2}\n");
    CHECK_NEAR(k.last_end, T0 + 60, 0);
    CHECK_INT(win_flush(s, collect, &k), 0);
    CHECK_UINT(k.n, 2);
    CHECK_NEAR(col(&k, 1, "count"), 1, 0);
    CHECK_UINT(stats(s, 0).emitted, 2);
    CHECK_UINT(stats(s, 0).keys, 0); /* keys without open windows are removed */
    buf_free(&k.all);
    win_set_free(s);
}

TEST(sliding_windows_overlap)
{
    struct win_set *s = wset("[window.m]\nsize = 1m\nslide = 20s\n");
    CHECK(s);
    struct sink k = { 0 };
    /* T0+45 is in [T0-0:20, T0+0:40)? no: in [T0, T0+60), [T0+20, T0+80), [T0+40, T0+100). */
    CHECK_INT(feed(s, &k, T0 + 45, "{}"), 0);
    CHECK_INT(feed(s, &k, T0 + 65, "{}"), 0); /* closes [T0, T0+60) */
    CHECK_UINT(k.n, 1);
    CHECK_CONTAINS(k.all.data, "\"start\":\"2026-11-18T12:00:00.000Z\",\"end\":\"2026-11-18T12:01:00.000Z\"},\"count\":1");
    CHECK_INT(win_flush(s, collect, &k), 0);
    /* Then [T0+20, T0+80) holds both, [T0+40, T0+100) both, [T0+60, T0+120) one. */
    CHECK_UINT(k.n, 4);
    CHECK_CONTAINS(k.all.data, "\"key\":null,\"start\":\"2026-11-18T12:00:20.000Z\",\"end\":\"2026-11-18T12:01:20.000Z\"},\"count\":2");
    CHECK_CONTAINS(k.all.data, "\"start\":\"2026-11-18T12:00:40.000Z\",\"end\":\"2026-11-18T12:01:40.000Z\"},\"count\":2");
    CHECK_CONTAINS(k.all.data, "\"start\":\"2026-11-18T12:01:00.000Z\",\"end\":\"2026-11-18T12:02:00.000Z\"},\"count\":1");
    buf_free(&k.all);
    win_set_free(s);
}

TEST(exact_aggregates_and_nulls)
{
    struct win_set *s = wset("[window.m]\nsize = 10s\naggregates = count sum(x) avg(x) min(x) max(x) "
                             "sum(u.v)\n");
    CHECK(s);
    struct sink k = { 0 };
    feed(s, &k, T0, "{\"x\":3}");
    feed(s, &k, T0 + 1, "{\"x\":-1.5}");
    feed(s, &k, T0 + 2, "{\"x\":\"7\"}"); /* not a number: counted, not summed */
    feed(s, &k, T0 + 3, "{\"x\":10.5}");
    feed(s, &k, T0 + 4, "{}");
    CHECK_INT(win_flush(s, collect, &k), 0);
    CHECK_UINT(k.n, 1);
    CHECK_NEAR(col(&k, 0, "count"), 5, 0);
    CHECK_NEAR(col(&k, 0, "sum_x"), 12, 0);
    CHECK_NEAR(col(&k, 0, "avg_x"), 4, 0);
    CHECK_NEAR(col(&k, 0, "min_x"), -1.5, 0);
    CHECK_NEAR(col(&k, 0, "max_x"), 10.5, 0);
    /* No value at all: null, not 0. */
    CHECK_CONTAINS(k.all.data, "\"sum_u_v\":null}");
    buf_free(&k.all);
    win_set_free(s);
}

TEST(distinct_count_within_error_bound)
{
    struct win_set *s = wset("[window.m]\nsize = 1h\naggregates = distinct_count(user)\n");
    CHECK(s);
    struct sink k = { 0 };
    /* Small sets are nearly exact; large ones within 3 standard errors
     * (6.5 % each for 256 registers). Every value comes twice. */
    static const unsigned sizes[] = { 1, 10, 100, 1000, 50000 };
    for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
        double t = T0 + 3600.0 * (double)i;
        for (unsigned rep = 0; rep < 2; rep++)
            for (unsigned u = 0; u < sizes[i]; u++)
                feed(s, &k, t, "{\"user\":\"user-%u-%u\"}", (unsigned)i, u);
    }
    CHECK_INT(win_flush(s, collect, &k), 0);
    CHECK_UINT(k.n, ELEMENTSOF(sizes));
    for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
        double est = col(&k, i, "distinct_count_user"), n = sizes[i];
        /* Linear counting (small n) has about 5 % standard error at 100. */
        double tol = MAX(1.0, 0.2 * n);
        CHECK_NEAR(est, n, tol);
        printf("# distinct %u: estimate %.0f (%.1f %%)\n", sizes[i], est, 100 * (est - n) / n);
    }
    /* Numbers and strings are different values; -0 is 0. */
    feed(s, &k, T0 + 86400, "{\"user\":1}");
    feed(s, &k, T0 + 86400, "{\"user\":\"1\"}");
    feed(s, &k, T0 + 86400, "{\"user\":0}");
    feed(s, &k, T0 + 86400, "{\"user\":-0}");
    feed(s, &k, T0 + 86400, "{\"user\":null}");
    win_flush(s, collect, &k);
    CHECK_NEAR(col(&k, ELEMENTSOF(sizes), "distinct_count_user"), 3, 0);
    buf_free(&k.all);
    win_set_free(s);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

TEST(percentiles_within_error_bound)
{
    struct win_set *s = wset("[window.m]\nsize = 1h\naggregates = p50(v) p95(v) p99(v) min(v) max(v)\n");
    CHECK(s);
    struct sink k = { 0 };
    /* Three distributions: uniform, log-normal over about five decades
     * (more than the sketch's range: the lowest buckets collapse), and one
     * with zeros and negatives. */
    enum { N = 20000 };
    static double v[3][N];
    srand(7);
    for (int i = 0; i < N; i++) {
        double u1 = (rand() + 1.0) / (RAND_MAX + 2.0), u2 = (rand() + 1.0) / (RAND_MAX + 2.0);
        v[0][i] = 1 + 999.0 * u1;
        v[1][i] = exp(2 + 1.5 * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
        v[2][i] = i % 10 == 0 ? -5 : i % 10 == 1 ? 0 : 100 * u1;
    }
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < N; i++)
            feed(s, &k, T0 + 3600.0 * d, "{\"v\":%.17g}", v[d][i]);
    CHECK_INT(win_flush(s, collect, &k), 0);
    CHECK_UINT(k.n, 3);
    static const struct { const char *c; double q; } qs[] = { { "p50_v", 0.5 }, { "p95_v", 0.95 }, { "p99_v", 0.99 } };
    for (int d = 0; d < 3; d++) {
        qsort(v[d], N, sizeof(double), cmp_double);
        for (size_t j = 0; j < ELEMENTSOF(qs); j++) {
            double truth = v[d][(size_t)(qs[j].q * (N - 1))], est = col(&k, (size_t)d, qs[j].c);
            /* 2 % relative from the buckets, plus rank slack. */
            CHECK_NEAR(est, truth, 0.03 * fabs(truth) + 1e-9);
            printf("# dist %d %s: %.4f, true %.4f\n", d, qs[j].c, est, truth);
        }
        CHECK_NEAR(col(&k, (size_t)d, "min_v"), v[d][0], 0);
        CHECK_NEAR(col(&k, (size_t)d, "max_v"), v[d][N - 1], 0);
    }
    buf_free(&k.all);
    win_set_free(s);
}

TEST(lateness_and_time_going_backwards)
{
    struct win_set *s = wset("[window.m]\nsize = 1m\nallowed_lateness = 10s\n");
    CHECK(s);
    struct sink k = { 0 };
    feed(s, &k, T0 + 50, "{}");
    feed(s, &k, T0 + 65, "{}");   /* watermark T0+55: [T0, T0+60) stays open */
    CHECK_UINT(k.n, 0);
    feed(s, &k, T0 + 56, "{}");   /* late by 9 s: within lateness, counted */
    feed(s, &k, T0 + 54, "{}");   /* older than the watermark: late */
    CHECK_UINT(stats(s, 0).late, 1);
    feed(s, &k, T0 + 70, "{}");   /* watermark T0+60: the window closes */
    CHECK_UINT(k.n, 1);
    CHECK_NEAR(col(&k, 0, "count"), 2, 0);
    /* Far back in time: late, no crash, nothing reopened. */
    feed(s, &k, T0 - 86400, "{}");
    feed(s, &k, T0 + 30, "{}");
    feed(s, &k, -1e300, "{}");    /* out of range: skipped */
    feed(s, &k, NAN, "{}");       /* no time: skipped */
    CHECK_UINT(stats(s, 0).late, 3);
    CHECK_UINT(stats(s, 0).skipped, 2);
    CHECK_UINT(k.n, 1);
    CHECK_INT(win_flush(s, collect, &k), 0);
    CHECK_UINT(k.n, 2);
    CHECK_NEAR(col(&k, 1, "count"), 2, 0); /* T0+65, T0+70 */
    /* After the flush the flushed window is closed for good. */
    feed(s, &k, T0 + 75, "{}");
    CHECK_UINT(stats(s, 0).late, 4);
    CHECK_UINT(stats(s, 0).records, 4);
    buf_free(&k.all);
    win_set_free(s);
}

TEST(empty_windows_are_not_emitted)
{
    struct win_set *s = wset("[window.m]\nsize = 1m\n");
    struct sink k = { 0 };
    feed(s, &k, T0 + 1, "{}");
    feed(s, &k, T0 + 301, "{}"); /* four empty minutes in between */
    CHECK_UINT(k.n, 1);
    win_flush(s, collect, &k);
    CHECK_UINT(k.n, 2);
    CHECK_CONTAINS(k.all.data, "\"start\":\"2026-11-18T12:05:00.000Z\"");
    buf_free(&k.all);
    win_set_free(s);
}

TEST(eviction_discards_open_windows)
{
    struct win_set *s = wset("[window.m]\nsize = 1m\nkey = k\nmax_keys = 2\n");
    struct sink k = { 0 };
    feed(s, &k, T0, "{\"k\":\"b\"}");
    feed(s, &k, T0, "{\"k\":\"a\"}");
    feed(s, &k, T0, "{\"k\":\"c\"}"); /* full: the least recently used (b) goes */
    struct win_stats st = stats(s, 0);
    CHECK_UINT(st.evicted, 1);
    CHECK_UINT(st.evicted_windows, 1);
    CHECK_UINT(st.keys, 2);
    win_flush(s, collect, &k);
    CHECK_UINT(k.n, 2);
    CHECK_CONTAINS(k.all.data, "\"key\":\"a\"");
    CHECK_CONTAINS(k.all.data, "\"key\":\"c\"");
    CHECK(!strstr(k.all.data, "\"key\":\"b\""));
    /* Keys: numbers as their JSON text, null/missing and over-long skipped. */
    feed(s, &k, T0 + 120, "{\"k\":42}");
    feed(s, &k, T0 + 120, "{\"k\":null}");
    feed(s, &k, T0 + 120, "{}");
    char longkey[200];
    memset(longkey, 'x', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = 0;
    feed(s, &k, T0 + 120, "{\"k\":\"%s\"}", longkey);
    CHECK_UINT(stats(s, 0).skipped, 3);
    win_flush(s, collect, &k);
    CHECK_CONTAINS(k.all.data, "\"key\":\"42\"");
    buf_free(&k.all);
    win_set_free(s);
}

TEST(many_keys)
{
    struct win_set *s = wset("[window.m]\nsize = 10s\nkey = k\nmax_keys = 20000\naggregates = count, sum(x)\n");
    struct sink k = { 0 };
    enum { KEYS = 10000, PER = 3 };
    for (int r = 0; r < PER; r++)
        for (int i = 0; i < KEYS; i++)
            feed(s, &k, T0 + r, "{\"k\":\"key%d\",\"x\":%d}", i, i);
    CHECK_UINT(stats(s, 0).keys, KEYS);
    CHECK(stats(s, 0).bytes_per_key > 0);
    feed(s, &k, T0 + 10, "{\"k\":\"key0\",\"x\":0}"); /* closes all of them */
    CHECK_UINT(k.n, KEYS);
    CHECK_UINT(stats(s, 0).keys, 1);
    double total = 0, sum = 0;
    /* One pass over the lines: col() walks from the start each time, which
     * is quadratic (and ASan's strict_string_checks makes every strchr scan
     * to the end of the buffer: 300 s in CI's sanitizer run). */
    const char *end = k.all.data + k.all.len;
    for (const char *p = k.all.data; p < end;) {
        total += line_col(p, "count");
        sum += line_col(p, "sum_x");
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    CHECK_NEAR(total, KEYS * PER, 0);
    CHECK_NEAR(sum, PER * (KEYS - 1.0) * KEYS / 2, 0);
    CHECK_UINT(stats(s, 0).evicted, 0);
    buf_free(&k.all);
    win_set_free(s);
}

TEST(idle_tick_closes_quiet_windows)
{
    struct win_set *s = wset("[window.m]\nsize = 1m\nidle_timeout = 30s\n");
    struct sink k = { 0 };
    buf_reset(&rec_text);
    buf_puts(&rec_text, "{}");
    json_scan(&doc, rec_text.data, rec_text.len);
    double wall = 5000;
    CHECK_INT(win_observe(s, &doc, T0 + 10, NAN, wall, collect, &k), 0);
    CHECK_INT(win_tick(s, wall + 29, collect, &k), 0);
    CHECK_UINT(k.n, 0);
    /* Quiet for 30 s: the watermark is T0+10+30 — not yet the end. */
    CHECK_INT(win_tick(s, wall + 40, collect, &k), 0);
    CHECK_UINT(k.n, 0);
    CHECK_INT(win_tick(s, wall + 50, collect, &k), 0);
    CHECK_UINT(k.n, 1);
    /* A record of the closed window now is late. */
    CHECK_INT(win_observe(s, &doc, T0 + 20, NAN, wall + 51, collect, &k), 0);
    CHECK_UINT(stats(s, 0).late, 1);
    buf_free(&k.all);
    win_set_free(s);
    /* Without a wall clock per record (the record stage), the next tick's
     * time is the record's. */
    s = wset("[window.m]\nsize = 1m\nidle_timeout = 30s\n");
    k = (struct sink){ 0 };
    CHECK_INT(win_observe(s, &doc, T0 + 10, NAN, NAN, collect, &k), 0);
    CHECK_INT(win_tick(s, wall, collect, &k), 0);
    CHECK_INT(win_tick(s, wall + 45, collect, &k), 0); /* watermark T0+55 */
    CHECK_UINT(k.n, 0);
    CHECK_INT(win_tick(s, wall + 51, collect, &k), 0); /* T0+61 */
    CHECK_UINT(k.n, 1);
    buf_free(&k.all);
    win_set_free(s);
    /* Arrival time: the arrival, or the wall clock without one. */
    k = (struct sink){ 0 };
    s = wset("[window.m]\nsize = 1m\ntime = arrival\n");
    CHECK_INT(win_observe(s, &doc, NAN, T0 + 1, 0, collect, &k), 0);
    CHECK_INT(win_observe(s, &doc, NAN, NAN, T0 + 61, collect, &k), 0);
    CHECK_UINT(k.n, 1);
    CHECK_UINT(stats(s, 0).records, 2);
    buf_free(&k.all);
    win_set_free(s);
}

TEST(where_time_field_and_key_expression)
{
    struct win_set *s = wset("[window.m]\nsize = 1m\ntime_field = at\nkey = lower(tag)\n"
                             "where = status >= 500\n");
    struct sink k = { 0 };
    feed(s, &k, NAN, "{\"at\":\"2026-11-18T12:00:05Z\",\"tag\":\"A\",\"status\":503}");
    feed(s, &k, NAN, "{\"at\":1795003210000,\"tag\":\"a\",\"status\":500}"); /* epoch ms */
    feed(s, &k, NAN, "{\"at\":\"2026-11-18T12:00:07Z\",\"tag\":\"a\",\"status\":200}");
    feed(s, &k, T0, "{\"tag\":\"a\",\"status\":500}"); /* no time field: skipped */
    win_flush(s, collect, &k);
    CHECK_UINT(k.n, 1);
    CHECK_CONTAINS(k.all.data, "\"key\":\"a\",\"start\":\"2026-11-18T12:00:00.000Z\"");
    CHECK_NEAR(col(&k, 0, "count"), 2, 0);
    CHECK_UINT(stats(s, 0).skipped, 1);
    buf_free(&k.all);
    win_set_free(s);
}

static char *diag_of(const char *text)
{
    struct conf_diag d = { 0 };
    struct rw_config *c = config(text, &d);
    struct buf all = BUF_INIT;
    if (c && rw_config_validate(c, &d) == 0)
        buf_puts(&all, "OK");
    for (size_t i = 0; i < d.n; i++)
        buf_printf(&all, "%s\n", d.msgs[i]);
    conf_unref(c);
    conf_diag_clear(&d);
    return buf_steal(&all);
}

TEST(bad_definitions_are_rejected_with_position)
{
    struct { const char *conf, *msg; } cases[] = {
        { "[window.a]\nsize = 1m\naggregates = count, median(x)\n", "t.conf:3:21: [window.a] aggregates: unknown aggregate 'median'" },
        { "[window.a]\nsize = 1m\naggregates = count sum\n", "t.conf:3:20: [window.a] aggregates: sum needs a field" },
        { "[window.a]\nsize = 1m\naggregates = sum(x) sum(x)\n", "column 'sum_x' twice" },
        { "[window.a]\nsize = 1m\naggregates = p95(a[)\n", "t.conf:3:18: [window.a] aggregates: not a field path" },
        { "[window.a]\nsize = 1m\nkey = lower(tag\n", "t.conf:3:" },
        { "[window.a]\nsize = 1m\nwhere = x >\n", "t.conf:3:" },
        { "[window.a]\nsize = 1m\nslide = 2m\n", "t.conf:3: [window.a] slide must not be longer than size" },
        { "[window.a]\nsize = 1h\nslide = 1s\n", "open windows per key (at most 64)" },
        { "[window.a]\nsize = 1m\nmax_keys = 10000000\naggregates = p50(a) p50(b) p50(c) p50(d)\n", "more than 4 GiB" },
        { "[window.a]\nsize = 1m\ntime = arrival\ntime_field = ts\n", "time_field applies to time = event only" },
        { "[window.a]\nslide = 1m\n", "[window.a] needs 'size'" },
        { "[window.a]\nsize = 0\n", "t.conf:2:" },
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        char *m = diag_of(cases[i].conf);
        CHECK_CONTAINS(m, cases[i].msg);
        free(m);
    }
    char *m = diag_of("[window.a]\nsize = 1m\nslide = 15s\nkey = tag\nallowed_lateness = 30s\n"
                      "aggregates = count, sum(x), avg(x), min(x), max(x), distinct_count(u), p50(x), p95(x), p99(x)\n");
    CHECK_STR(m, "OK");
    free(m);
}

/* Window state lives in the shard workers, built once: a change needs a
 * restart, and a reload saying so is rejected. */
TEST(window_changes_need_a_restart)
{
    struct conf_diag d = { 0 };
    struct rw_config *a = config("[window.m]\nsize = 1m\n", &d);
    struct rw_config *b = config("[window.m]\nsize = 2m\n", &d);
    struct rw_config *c = config("[window.m]\nsize = 1m\n[window.n]\nsize = 1m\n", &d);
    CHECK(a && b && c);
    CHECK_UINT(win_config_changes(a, b, &d), 1);
    CHECK_UINT(win_config_changes(a, c, &d), 1);
    CHECK_UINT(win_config_changes(c, a, &d), 1);
    CHECK_UINT(win_config_changes(a, a, &d), 0);
    CHECK(d.n == 3 && strstr(d.msgs[0], "t.conf:1: [window.m] changed (or moved), which needs a restart") &&
          strstr(d.msgs[1], "[window.n] was added") && strstr(d.msgs[2], "[window.n] was removed"));
    conf_unref(a);
    conf_unref(b);
    conf_unref(c);
    conf_diag_clear(&d);
}

/* The record stage: derived lines after the record, input -1, seen by the
 * detectors with a `where` only. */
TEST(record_stage_emits_derived_lines)
{
    const char *conf = "[input]\ntimestamp_field = ts\n"
                       "[window.per_minute]\nsize = 1m\nkey = tag\n"
                       "[detector.volume]\ntype = threshold\nfield = count\nabove = 2\n"
                       "key = _window.key\nwhere = _window.name == \"per_minute\"\n"
                       "[detector.all]\ntype = threshold\nfield = count\nabove = 0\n";
    struct conf_diag d = { 0 };
    struct rw_config *c = config(conf, &d);
    CHECK(c);
    struct rs_worker *w = rs_worker_new(c, NULL);
    struct xf_stage *xf = NULL;
    struct detect_stage *det = NULL;
    CHECK_INT(xf_stage_new(c, &d, &xf), 0);
    CHECK_INT(detect_stage_new(c, &d, &det), 0);
    struct rw_output o = { 0 };
    static const char *recs[] = {
        "{\"ts\":1795003201,\"tag\":\"x\"}", "{\"ts\":1795003202,\"tag\":\"x\"}",
        "{\"ts\":1795003203,\"tag\":\"x\"}", "{\"ts\":1795003204,\"tag\":\"y\"}",
        "{\"ts\":1795003261,\"tag\":\"y\"}",
    };
    for (size_t i = 0; i < ELEMENTSOF(recs); i++)
        CHECK_INT(rs_process(w, xf, det, (int32_t)i, recs[i], strlen(recs[i]), NULL, &o), 0);
    /* Five records, then (after the fifth) the two closed windows. */
    CHECK_UINT(o.n, 7);
    CHECK_INT(o.meta[4].input, 4);
    CHECK_INT(o.meta[5].input, -1);
    CHECK_INT(o.meta[6].input, -1);
    CHECK_NEAR(o.meta[5].event_time, 1795003260, 0);
    CHECK(o.meta[5].is_anomaly != o.meta[6].is_anomaly); /* x: 3 > 2, y: 1 */
    const char *x = strstr(o.lines.data, "{\"_window\":{\"name\":\"per_minute\",\"key\":\"x\"");
    CHECK(x);
    CHECK(x && strstr(x, "\"count\":3,\"anomaly_score\":"));
    CHECK(x && strstr(x, "\"detector\":\"volume\""));
    /* Input records are not seen by `volume`; window records not by `all`. */
    CHECK(!strstr(o.lines.data, "\"detector\":\"all\""));
    rw_output_reset(&o);
    CHECK_INT(rs_flush(w, xf, det, &o), 0);
    CHECK_UINT(o.n, 1);
    CHECK_INT(o.meta[0].input, -1);
    CHECK_UINT(win_set_count(rs_windows(w)), 1);
    rw_output_free(&o);
    rs_worker_free(w);
    xf_stage_free(xf);
    detect_stage_free(det);
    conf_unref(c);
    conf_diag_clear(&d);
}

int main(void)
{
    json_doc_init(&doc, NULL);
    int r = tap_run();
    json_doc_free(&doc);
    buf_free(&rec_text);
    return r;
}
