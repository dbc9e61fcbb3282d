/* SPDX-License-Identifier: Apache-2.0 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "rarewatch/conf_schema.h"
#include "rarewatch/transform.h"
#include "tap.h"

static char tmpdir[] = "/tmp/rw-test-transform-XXXXXX";

static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "we");
    if (!f)
        TAP_FAIL_("cannot write %s", path);
    else {
        fputs(text, f);
        fclose(f);
    }
}

static struct xf_stage *stage_of(const char *conf, struct conf_diag *d)
{
    struct rw_config *cfg = NULL;
    struct xf_stage *s = NULL;
    if (conf_load_string(&rw_schema, "t.conf", conf, d, &cfg) < 0)
        return NULL;
    if (xf_stage_new(cfg, d, &s) < 0)
        s = NULL;
    conf_unref(cfg);
    return s;
}

/* Canonical form of a JSON text for comparison: members of objects are
 * compared in order, whitespace dropped outside strings. */
static void canon(const char *in, char *out, size_t n)
{
    size_t o = 0;
    bool str = false;
    for (const char *p = in; *p && o + 1 < n; p++) {
        if (str) {
            out[o++] = *p;
            if (*p == '\\' && p[1])
                out[o++] = *++p;
            else if (*p == '"')
                str = false;
        } else if (*p != ' ' && *p != '\n' && *p != '\t') {
            out[o++] = *p;
            str = *p == '"';
        }
    }
    out[o] = 0;
}

/* Run the stage on json: "DROP", "FAIL name: reason", or the record. The
 * output must be valid JSON (it is scanned again as the view). */
static const char *run(struct xf_stage *s, struct xf_worker *w, const char *json)
{
    static char res[4096];
    struct json_doc d;
    json_doc_init(&d, NULL);
    if (json_scan(&d, json, strlen(json)) < 0)
        TAP_FAIL_("bad input %s", json);
    struct xf_record rec = { .doc = &d, .event_time = 1764311400, .arrival_time = 1764311401 };
    struct json_doc *view = NULL;
    int r = xf_apply(s, w, &rec, &view);
    if (r == XF_DROP)
        snprintf(res, sizeof(res), "DROP");
    else if (r == XF_FAIL)
        snprintf(res, sizeof(res), "FAIL %s: %s", rec.failed_transform, rec.reason);
    else if (r < 0)
        snprintf(res, sizeof(res), "ERR %d", r);
    else {
        struct json_doc chk;
        json_doc_init(&chk, NULL);
        const struct json_node *root = &view->nodes[0];
        char tmp[4096];
        size_t len = root->end - root->start;
        memcpy(tmp, view->text + root->start, len);
        tmp[len] = 0;
        if (json_scan(&chk, tmp, len) < 0)
            TAP_FAIL_("output is not valid JSON: %s", tmp);
        json_doc_free(&chk);
        canon(tmp, res, sizeof(res));
    }
    json_doc_free(&d);
    return res;
}

TEST(filter_set_default)
{
    struct conf_diag d = { .echo = stderr };
    struct xf_stage *s = stage_of("[transform.errors]\ntype = filter\nwhere = status >= 500\n"
                                  "[transform.total]\ntype = set\nfield = total\nvalue = price * qty\n"
                                  "[transform.big]\ntype = set\nfield = flags.big\nvalue = total > 100\n"
                                  "[transform.cur]\ntype = default\nfield = currency\nvalue = \"EUR\"\n", &d);
    CHECK(s);
    if (!s)
        return;
    CHECK_UINT(xf_stage_count(s), 4);
    struct xf_worker *w = xf_worker_new();
    CHECK_STR(run(s, w, "{\"status\":200}"), "DROP");
    CHECK_STR(run(s, w, "{\"status\":\"x\"}"), "DROP");
    CHECK_STR(run(s, w, "{\"status\": 503, \"price\": 60, \"qty\": 2}"),
              "{\"status\":503,\"price\":60,\"qty\":2,\"total\":120,\"flags\":{\"big\":true},\"currency\":\"EUR\"}");
    CHECK_STR(run(s, w, "{\"status\": 503, \"price\": 1, \"qty\": 2, \"currency\": \"USD\", \"flags\": {\"a\": 1}}"),
              "{\"status\":503,\"price\":1,\"qty\":2,\"currency\":\"USD\",\"flags\":{\"a\":1,\"big\":false},\"total\":2}");
    CHECK_STR(run(s, w, "{\"status\": 503, \"currency\": null}"),
              "{\"status\":503,\"currency\":\"EUR\",\"total\":null,\"flags\":{\"big\":false}}");
    struct xf_stats st;
    xf_stage_stats(s, 0, &st);
    CHECK_STR(st.name, "errors");
    CHECK_STR(st.type, "filter");
    CHECK_UINT(st.dropped, 2);
    CHECK_UINT(st.applied, 3);
    xf_worker_free(w);
    xf_stage_free(s);
}

/* The counters are kept per worker and summed by xf_stage_stats(): two
 * workers on two threads, read while they run, a worker's counts kept after
 * it is freed, and a new stage (the reload) counting from zero. */
struct count_job {
    struct xf_stage *s;
    unsigned n;
    int errors;
};

static void *count_thread(void *ud)
{
    struct count_job *j = ud;
    struct xf_worker *w = xf_worker_new();
    if (!w) {
        j->errors++;
        return NULL;
    }
    for (unsigned i = 0; i < j->n; i++) {
        char rec[64];
        snprintf(rec, sizeof(rec), "{\"status\": %u}", i % 2 ? 503 : 200);
        struct json_doc d;
        json_doc_init(&d, NULL);
        struct xf_record xr = { .doc = &d, .event_time = NAN, .arrival_time = 0 };
        struct json_doc *view;
        if (json_scan(&d, rec, strlen(rec)) < 0 || xf_apply(j->s, w, &xr, &view) < 0)
            j->errors++;
        json_doc_free(&d);
    }
    xf_worker_free(w);
    return NULL;
}

TEST(counters_per_worker)
{
    struct conf_diag d = { .echo = stderr };
    const char *conf = "[transform.errors]\ntype = filter\nwhere = status >= 500\n"
                       "[transform.n]\ntype = cast\nfield = status\nto = bool\n";
    struct xf_stage *s = stage_of(conf, &d);
    CHECK(s);
    if (!s)
        return;
    struct count_job a = { .s = s, .n = 20000 }, b = { .s = s, .n = 10000 };
    pthread_t ta, tb;
    CHECK_INT(pthread_create(&ta, NULL, count_thread, &a), 0);
    CHECK_INT(pthread_create(&tb, NULL, count_thread, &b), 0);
    struct xf_stats st;
    uint64_t last = 0;
    for (int i = 0; i < 100; i++) { /* read while they count: never going back */
        xf_stage_stats(s, 0, &st);
        CHECK(st.applied + st.dropped >= last);
        last = st.applied + st.dropped;
    }
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK_INT(a.errors + b.errors, 0);
    xf_stage_stats(s, 0, &st);
    CHECK_UINT(st.applied, 15000);
    CHECK_UINT(st.dropped, 15000);
    CHECK_UINT(st.failed, 0);
    xf_stage_stats(s, 1, &st);
    CHECK_STR(st.name, "n");
    CHECK_UINT(st.applied, 15000);
    /* One worker across a stage swap: its counts go to the stage it ran on. */
    struct xf_stage *s2 = stage_of(conf, &d);
    CHECK(s2);
    struct xf_worker *w = xf_worker_new();
    CHECK_STR(run(s, w, "{\"status\": 500}"), "{\"status\":true}");
    CHECK_STR(run(s2, w, "{\"status\": 200}"), "DROP");
    CHECK_STR(run(s2, w, "{\"status\": 200}"), "DROP");
    xf_stage_stats(s, 0, &st);
    CHECK_UINT(st.applied, 15001);
    CHECK_UINT(st.dropped, 15000);
    xf_stage_free(s);
    xf_stage_stats(s2, 0, &st);
    CHECK_UINT(st.applied, 0);
    CHECK_UINT(st.dropped, 2);
    CHECK_STR(run(s2, w, "{\"status\": 501}"), "{\"status\":true}");
    xf_stage_stats(s2, 1, &st);
    CHECK_UINT(st.applied, 1);
    xf_worker_free(w);
    xf_stage_free(s2);
}

TEST(rename_remove_keep)
{
    struct conf_diag d = { .echo = stderr };
    struct xf_stage *s = stage_of("[transform.mv]\ntype = rename\nfrom = user.cc\nto = country\n"
                                  "[transform.rm]\ntype = remove\nfields = secret, user.pw\n"
                                  "[transform.k]\ntype = keep\nfields = id, user, country, odd_key\n", &d);
    CHECK(s);
    if (!s)
        return;
    struct xf_worker *w = xf_worker_new();
    CHECK_STR(run(s, w, "{\"id\": 1, \"secret\": \"x\", \"user\": {\"cc\": \"DE\", \"pw\": \"p\", \"n\": \"a\"}, \"junk\": [1,2]}"),
              "{\"id\":1,\"user\":{\"n\":\"a\"},\"country\":\"DE\"}");
    /* rename of a missing field is a no-op; escaped keys survive keep */
    CHECK_STR(run(s, w, "{\"id\": 2, \"odd\\u005fkey\": 3}"), "{\"id\":2,\"odd\\u005fkey\":3}");
    CHECK_STR(run(s, w, "{}"), "{}");
    xf_worker_free(w);
    xf_stage_free(s);
}

TEST(cast)
{
    struct conf_diag d = { .echo = stderr };
    struct xf_stage *s = stage_of("[transform.a]\ntype = cast\nfield = a\nto = number\n"
                                  "[transform.b]\ntype = cast\nfield = b\nto = bool\n"
                                  "[transform.c]\ntype = cast\nfield = c\nto = string\n"
                                  "[transform.t]\ntype = cast\nfield = t\nto = timestamp\n", &d);
    CHECK(s);
    if (!s)
        return;
    struct xf_worker *w = xf_worker_new();
    CHECK_STR(run(s, w, "{\"a\":\"12.5\",\"b\":\"yes\",\"c\":0.1,\"t\":\"2026-11-28T06:30:00Z\"}"),
              "{\"a\":12.5,\"b\":true,\"c\":\"0.1\",\"t\":1795847400}");
    CHECK_STR(run(s, w, "{\"a\":true,\"b\":0,\"c\":false,\"t\":1764311400123}"),
              "{\"a\":1,\"b\":false,\"c\":\"false\",\"t\":1764311400.123}");
    /* not strict: failures become null and are counted */
    CHECK_STR(run(s, w, "{\"a\":\"abc\",\"b\":\"maybe\",\"c\":[1, 2],\"t\":\"soon\"}"),
              "{\"a\":null,\"b\":null,\"c\":\"[1, 2]\",\"t\":null}");
    struct xf_stats st;
    xf_stage_stats(s, 0, &st);
    CHECK_UINT(st.failed, 1);
    xf_worker_free(w);
    xf_stage_free(s);

    s = stage_of("[transform.num]\ntype = cast\nfield = a\nto = number\nstrict = true\n", &d);
    CHECK(s);
    if (!s)
        return;
    w = xf_worker_new();
    CHECK_STR(run(s, w, "{\"a\":\"abc\"}"), "FAIL num: cannot cast a string to number");
    CHECK_STR(run(s, w, "{\"a\":\"7\"}"), "{\"a\":7}");
    CHECK_STR(run(s, w, "{\"b\":1}"), "{\"b\":1}");
    xf_stage_stats(s, 0, &st);
    CHECK_UINT(st.failed, 1);
    xf_worker_free(w);
    xf_stage_free(s);
}

TEST(strict_set)
{
    struct conf_diag d = { .echo = stderr };
    struct xf_stage *s = stage_of("[transform.x]\ntype = set\nfield = y\nvalue = s * 2\nstrict = true\n", &d);
    CHECK(s);
    if (!s)
        return;
    struct xf_worker *w = xf_worker_new();
    CHECK_STR(run(s, w, "{\"s\":\"a\"}"), "FAIL x: value: arithmetic on a non-number");
    CHECK_STR(run(s, w, "{\"s\":2}"), "{\"s\":2,\"y\":4}");
    xf_worker_free(w);
    xf_stage_free(s);
}

TEST(overlay_reads_and_many_edits)
{
    /* Later transforms read what earlier ones wrote, removed and renamed;
     * more edits than one splice takes are flushed in between. */
    struct buf conf = BUF_INIT;
    (void)buf_puts(&conf, "[transform.a]\ntype = set\nfield = a\nvalue = 1\n"
                          "[transform.b]\ntype = set\nfield = b\nvalue = a + 1\n"
                          "[transform.r]\ntype = rename\nfrom = b\nto = c.d\n"
                          "[transform.e]\ntype = set\nfield = e\nvalue = coalesce(b, c.d * 10)\n"
                          "[transform.x]\ntype = remove\nfields = a\n"
                          "[transform.f]\ntype = set\nfield = f\nvalue = exists(a)\n");
    for (int i = 0; i < 70; i++)
        (void)buf_printf(&conf, "[transform.n%d]\ntype = set\nfield = n\nvalue = coalesce(n, 0) + 1\n", i);
    struct conf_diag d = { .echo = stderr };
    struct xf_stage *s = stage_of(conf.data, &d);
    buf_free(&conf);
    CHECK(s);
    if (!s)
        return;
    struct xf_worker *w = xf_worker_new();
    CHECK_STR(run(s, w, "{\"z\":0}"), "{\"z\":0,\"c\":{\"d\":2},\"e\":20,\"f\":false,\"n\":70}");
    xf_worker_free(w);
    xf_stage_free(s);
}

TEST(overlay_order_and_nesting)
{
    /* Edits below an earlier edit of an ancestor, reads inside an object
     * that was set, reads of an object whose members were edited. */
    struct conf_diag d = { .echo = stderr };
    struct xf_stage *s = stage_of("[transform.cp]\ntype = set\nfield = copy\nvalue = user\n"
                                  "[transform.cpx]\ntype = set\nfield = copy.x\nvalue = copy.name + \"!\"\n"
                                  "[transform.rm]\ntype = remove\nfields = gone\n"
                                  "[transform.re]\ntype = set\nfield = gone.b\nvalue = 1\n"
                                  "[transform.nest]\ntype = rename\nfrom = tag\nto = tag.v\n"
                                  "[transform.uz]\ntype = set\nfield = user.z\nvalue = 1\n"
                                  "[transform.n]\ntype = set\nfield = n\nvalue = len(user) * 10 + len(copy)\n", &d);
    CHECK(s);
    if (!s)
        return;
    struct xf_worker *w = xf_worker_new();
    CHECK_STR(run(s, w, "{\"user\": {\"name\": \"J\\u00fc\"}, \"gone\": {\"a\": 1}, \"tag\": \"t\"}"),
              "{\"user\":{\"name\":\"J\\u00fc\",\"z\":1},\"copy\":{\"name\":\"J\\u00fc\",\"x\":\"Jü!\"},"
              "\"gone\":{\"b\":1},\"tag\":{\"v\":\"t\"},\"n\":22}");
    xf_worker_free(w);
    xf_stage_free(s);
}

TEST(values_survive_flushes)
{
    /* A string read from the record is renamed 80 times: with 64 edits per
     * splice it crosses flushes of both alternating buffers. */
    struct buf conf = BUF_INIT;
    for (int i = 0; i < 80; i++)
        (void)buf_printf(&conf, "[transform.r%d]\ntype = rename\nfrom = f%d\nto = f%d\n"
                                "[transform.s%d]\ntype = set\nfield = g%d\nvalue = upper(substr(f%d, 0, 3)) + k\n",
                         i, i, i + 1, i, i % 7, i + 1);
    struct conf_diag d = { .echo = stderr };
    struct xf_stage *s = stage_of(conf.data, &d);
    buf_free(&conf);
    CHECK(s);
    if (!s)
        return;
    struct xf_worker *w = xf_worker_new();
    for (int round = 0; round < 3; round++)
        CHECK_STR(run(s, w, "{\"k\": \"\\\"q\", \"f0\": \"abc\\ndef\"}"),
                  "{\"k\":\"\\\"q\",\"g0\":\"ABC\\\"q\",\"g1\":\"ABC\\\"q\",\"g2\":\"ABC\\\"q\","
                  "\"g3\":\"ABC\\\"q\",\"g4\":\"ABC\\\"q\",\"g5\":\"ABC\\\"q\",\"g6\":\"ABC\\\"q\","
                  "\"f80\":\"abc\\ndef\"}");
    xf_worker_free(w);
    xf_stage_free(s);
}

TEST(lookup_defaults_reload)
{
    write_file("t.csv", "code,name,risk\nDE,Germany,1\nNG,Nigeria,7\n\"X,Y\",\"Comma, Land\",3\nZZ,0123,+1\n");
    char conf[1024];
    snprintf(conf, sizeof(conf),
             "[transform.geo]\ntype = lookup\nfile = %s/t.csv\nkey = code\non = user.cc\n"
             "fields = name, risk\ndefault_risk = 5\n", tmpdir);
    struct conf_diag d = { .echo = stderr };
    struct xf_stage *s = stage_of(conf, &d);
    CHECK(s);
    if (!s)
        return;
    struct xf_worker *w = xf_worker_new();
    CHECK_STR(run(s, w, "{\"user\":{\"cc\":\"NG\"}}"), "{\"user\":{\"cc\":\"NG\"},\"name\":\"Nigeria\",\"risk\":7}");
    CHECK_STR(run(s, w, "{\"user\":{\"cc\":\"X,Y\"}}"), "{\"user\":{\"cc\":\"X,Y\"},\"name\":\"Comma, Land\",\"risk\":3}");
    CHECK_STR(run(s, w, "{\"user\":{\"cc\":\"FR\"}}"), "{\"user\":{\"cc\":\"FR\"},\"risk\":5}");
    CHECK_STR(run(s, w, "{}"), "{\"risk\":5}");
    /* Cells that are not JSON numbers stay strings (a postcode keeps its 0). */
    CHECK_STR(run(s, w, "{\"user\":{\"cc\":\"ZZ\"}}"), "{\"user\":{\"cc\":\"ZZ\"},\"name\":\"0123\",\"risk\":\"+1\"}");
    xf_stage_free(s);

    /* Reload = a new stage over the changed file. */
    write_file("t.csv", "code,name,risk\nFR,France,2\n");
    s = stage_of(conf, &d);
    CHECK(s);
    if (!s)
        return;
    CHECK_STR(run(s, w, "{\"user\":{\"cc\":\"FR\"}}"), "{\"user\":{\"cc\":\"FR\"},\"name\":\"France\",\"risk\":2}");
    CHECK_STR(run(s, w, "{\"user\":{\"cc\":\"NG\"}}"), "{\"user\":{\"cc\":\"NG\"},\"risk\":5}");
    xf_stage_free(s);

    /* NDJSON tables; numbers as keys; objects as values. */
    write_file("t.ndjson", "{\"id\": 42, \"plan\": \"gold\", \"limits\": {\"day\": 500}}\n{\"id\": 7, \"plan\": \"free\"}\n");
    snprintf(conf, sizeof(conf),
             "[transform.acct]\ntype = lookup\nfile = %s/t.ndjson\nkey = id\non = account\n"
             "fields = plan, limits\n", tmpdir);
    s = stage_of(conf, &d);
    CHECK(s);
    if (!s)
        return;
    CHECK_STR(run(s, w, "{\"account\":42}"), "{\"account\":42,\"plan\":\"gold\",\"limits\":{\"day\":500}}");
    CHECK_STR(run(s, w, "{\"account\":\"7\"}"), "{\"account\":\"7\",\"plan\":\"free\"}");
    xf_stage_free(s);
    xf_worker_free(w);
}

TEST(config_errors)
{
    char conf[1024];
    snprintf(conf, sizeof(conf),
             "[transform.f]\ntype = filter\nwhere = status >= = 1\n"
             "[transform.s]\ntype = set\nfield = items[0]\nvalue = 1\n"
             "[transform.c]\ntype = cast\nfield = a\nto = float\n"
             "[transform.l]\ntype = lookup\nfile = %s/none.csv\nkey = k\non = k\nfields = v\n"
             "[transform.m]\ntype = filter\n"
             "[detector.d]\ntype = threshold\nfield = x\nabove = 1\nwhere = lower(\n", tmpdir);
    struct conf_diag d = { 0 };
    struct xf_stage *s = stage_of(conf, &d);
    CHECK(!s);
    CHECK_UINT(d.n, 6);
    if (d.n == 6) {
        CHECK_STR(d.msgs[0], "t.conf:3:19: [transform.f]: expected a value, found '='");
        CHECK_STR(d.msgs[1], "t.conf:6: [transform.s] field is not a field path of names: 'items[0]'");
        CHECK_STR(d.msgs[2], "t.conf:11: [transform.c] cast: to must be number, bool, string or timestamp, not 'float'");
        CHECK_CONTAINS(d.msgs[3], "[transform.l] lookup table: cannot open");
        CHECK_STR(d.msgs[4], "t.conf:18: [transform.m] type = filter needs where");
        CHECK_STR(d.msgs[5], "t.conf:24:15: [detector.d] where: expected a value at the end");
    }
    conf_diag_clear(&d);
}

TEST(detector_where)
{
    struct conf_diag d = { .echo = stderr };
    struct xf_stage *s = stage_of("[transform.ms]\ntype = set\nfield = ms\nvalue = latency * 1000\n"
                                  "[detector.a]\ntype = threshold\nfield = ms\nabove = 1\n"
                                  "[detector.b]\ntype = threshold\nfield = ms\nabove = 1\nwhere = status >= 500 and ms > 10\n", &d);
    CHECK(s);
    if (!s)
        return;
    CHECK(xf_stage_has_where(s));
    struct xf_worker *w = xf_worker_new();
    CHECK_STR(run(s, w, "{\"status\":503,\"latency\":0.5}"), "{\"status\":503,\"latency\":0.5,\"ms\":500}");
    CHECK(xf_detector_where(w, 0));
    CHECK(xf_detector_where(w, 1)); /* reads the field the transform set */
    CHECK_STR(run(s, w, "{\"status\":200,\"latency\":0.5}"), "{\"status\":200,\"latency\":0.5,\"ms\":500}");
    CHECK(!xf_detector_where(w, 1));
    xf_worker_free(w);
    xf_stage_free(s);
}

static void setup(void) __attribute__((constructor));
static void setup(void)
{
    if (!mkdtemp(tmpdir))
        abort();
}

static void cleanup(void) __attribute__((destructor));
static void cleanup(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmpdir);
}

TAP_MAIN
