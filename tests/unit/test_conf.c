/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "rarewatch/conf_schema.h"
#include "rarewatch/strutil.h"
#include "tap.h"

/* A test schema with every type, a named section kind with per-type keys,
 * a required key and a prefix key. */
static const struct conf_section_def sections[] = {
    { .name = "main", .doc = "main" },
    { .name = "detector", .named = true, .type_key = "type", .doc = "detectors" },
};
enum { K_FLAG, K_COUNT, K_RATIO, K_WAIT, K_CAP, K_MODE, K_NAME, K_TAGS, K_SECRET, K_STATIC,
       D_TYPE, D_FIELD, D_HALF, D_ABOVE, D_WHEN, D_DEFAULT };
static const struct conf_key keys[] = {
    [K_FLAG] = { "main", "flag", CT_BOOL, "false", 0, 0, NULL, NULL, CF_RELOAD, "a flag" },
    [K_COUNT] = { "main", "count", CT_INT, "10", 1, 100, NULL, NULL, CF_RELOAD, "a count" },
    [K_RATIO] = { "main", "ratio", CT_DOUBLE, "0.5", 0, 1, NULL, NULL, CF_RELOAD, "a ratio" },
    [K_WAIT] = { "main", "wait", CT_DURATION, "200ms", 1000, 86400e6, NULL, NULL, CF_RELOAD, "a wait" },
    [K_CAP] = { "main", "cap", CT_SIZE, "4MiB", 0, 0, NULL, NULL, CF_RELOAD, "a cap" },
    [K_MODE] = { "main", "mode", CT_ENUM, "json", 0, 0, "json|csv|text", NULL, CF_RELOAD, "a mode" },
    [K_NAME] = { "main", "name", CT_STRING, NULL, 0, 0, NULL, NULL, CF_RELOAD, "a name" },
    [K_TAGS] = { "main", "tags", CT_LIST, "a, b", 0, 0, NULL, NULL, CF_RELOAD, "tags" },
    [K_SECRET] = { "main", "secret", CT_STRING, NULL, 0, 0, NULL, NULL, CF_RELOAD | CF_SECRET, "a secret" },
    [K_STATIC] = { "main", "static", CT_STRING, "x", 0, 0, NULL, NULL, 0, "needs a restart" },
    [D_TYPE] = { "detector", "type", CT_ENUM, NULL, 0, 0, "zscore|threshold", NULL, CF_REQUIRED | CF_RELOAD, "detector type" },
    [D_FIELD] = { "detector", "field", CT_STRING, NULL, 0, 0, NULL, NULL, CF_REQUIRED | CF_RELOAD, "field watched" },
    [D_HALF] = { "detector", "half_life", CT_DURATION, "1h", 0, 0, NULL, "zscore", CF_RELOAD, "memory" },
    [D_ABOVE] = { "detector", "above", CT_DOUBLE, NULL, 0, 0, NULL, "threshold", CF_RELOAD, "upper bound" },
    [D_WHEN] = { "detector", "when", CT_EXPR, NULL, 0, 0, NULL, "threshold", CF_RELOAD, "predicate" },
    [D_DEFAULT] = { "detector", "default_", CT_STRING, NULL, 0, 0, NULL, NULL, CF_RELOAD | CF_PREFIX, "fill" },
};
static const struct conf_schema schema = { sections, ELEMENTSOF(sections), keys, ELEMENTSOF(keys) };

static struct rw_config *load(const char *text, struct conf_diag *d)
{
    struct rw_config *c = NULL;
    int r = conf_load_string(&schema, "test.conf", text, d, &c);
    return r < 0 ? NULL : c;
}

static bool diag_has(const struct conf_diag *d, const char *needle)
{
    for (size_t i = 0; i < d->n; i++)
        if (strstr(d->msgs[i], needle))
            return true;
    return false;
}

TEST(defaults_apply)
{
    struct conf_diag d = { 0 };
    struct rw_config *c = load("", &d);
    CHECK(c != NULL);
    if (!c)
        return;
    CHECK(!conf_bool(c, K_FLAG));
    CHECK_INT(conf_int(c, K_COUNT), 10);
    CHECK_NEAR(conf_double(c, K_RATIO), 0.5, 0);
    CHECK_UINT(conf_usec(c, K_WAIT), 200000);
    CHECK_UINT(conf_size(c, K_CAP), 4 * 1024 * 1024);
    CHECK_INT(conf_enum(c, K_MODE), 0);
    CHECK(conf_str(c, K_NAME) == NULL);
    CHECK_UINT(strv_length(conf_list(c, K_TAGS)), 2);
    CHECK(!conf_get(c, K_COUNT)->set);
    conf_unref(c);
    conf_diag_clear(&d);
}

TEST(typed_values_and_positions)
{
    struct conf_diag d = { 0 };
    struct rw_config *c = load("# comment\n[main]\nflag = yes\ncount = 42\n  ratio=0.25\nwait = 1h30m\n"
                               "cap = 512KiB\nmode = csv\nname = has # and ; inside\ntags = x y,z\n", &d);
    CHECK(c != NULL);
    if (!c)
        return;
    CHECK(conf_bool(c, K_FLAG));
    CHECK_INT(conf_int(c, K_COUNT), 42);
    CHECK_NEAR(conf_double(c, K_RATIO), 0.25, 0);
    CHECK_UINT(conf_usec(c, K_WAIT), 5400ULL * 1000000);
    CHECK_UINT(conf_size(c, K_CAP), 512 * 1024);
    CHECK_INT(conf_enum(c, K_MODE), 1);
    CHECK_STR(conf_str(c, K_NAME), "has # and ; inside");
    CHECK_UINT(strv_length(conf_list(c, K_TAGS)), 3);
    CHECK_UINT(conf_get(c, K_COUNT)->line, 4);
    CHECK_UINT(conf_get(c, K_RATIO)->line, 5);
    CHECK_UINT(conf_get(c, K_RATIO)->column, 9);
    CHECK_STR(conf_get(c, K_COUNT)->file, "test.conf");
    CHECK(conf_get(c, K_COUNT)->set);
    conf_unref(c);
    conf_diag_clear(&d);
}

TEST(errors_name_file_line_key_and_expectation)
{
    struct conf_diag d = { 0 };
    struct rw_config *c = load("[main]\ncount = 1000\nwait = soon\nmode = xml\nflag = maybe\n"
                               "cout = 3\n[mian]\nx = 1\n[nosuch]\n[main\nnot a pair\n", &d);
    CHECK(c == NULL);
    CHECK(diag_has(&d, "test.conf:2: [main] count = 1000: expected an integer between 1 and 100"));
    CHECK(diag_has(&d, "test.conf:3: [main] wait = soon: expected a duration"));
    CHECK(diag_has(&d, "test.conf:4: [main] mode = xml: expected one of json|csv|text"));
    CHECK(diag_has(&d, "test.conf:5: [main] flag = maybe: expected a boolean"));
    CHECK(diag_has(&d, "test.conf:6: unknown key 'cout' in section [main]; did you mean 'count'?"));
    CHECK(diag_has(&d, "test.conf:7: unknown section [mian]; did you mean [main]?"));
    CHECK(diag_has(&d, "test.conf:9: unknown section [nosuch]"));
    CHECK(diag_has(&d, "test.conf:10: malformed section header"));
    CHECK(diag_has(&d, "test.conf:11: expected 'key = value'"));
    /* Keys inside an unknown section are not reported a second time. */
    CHECK(!diag_has(&d, "test.conf:8:"));
    conf_diag_clear(&d);
}

TEST(secrets_are_not_echoed)
{
    struct conf_diag d = { 0 };
    struct rw_config *c = load("[main]\nsecret = hunter2\n", &d);
    CHECK(c != NULL);
    struct rw_config *c2 = load("[main]\nsecret = correcthorse\n", &d);
    CHECK(c2 != NULL);
    if (c && c2) {
        conf_diff(c, c2, &d);
        CHECK(diag_has(&d, "secret: (secret) -> (secret)"));
        for (size_t i = 0; i < d.n; i++)
            CHECK(!strstr(d.msgs[i], "hunter2") && !strstr(d.msgs[i], "correcthorse"));
    }
    conf_unref(c);
    conf_unref(c2);
    conf_diag_clear(&d);
}

TEST(named_sections_per_type_keys)
{
    struct conf_diag d = { 0 };
    struct rw_config *c = load("[detector.fraud]\ntype = zscore\nfield = amount\nhalf_life = 10m\n"
                               "default_country = XX\n"
                               "[detector.big]\nfield = amount\ntype = threshold\nabove = 1000\n"
                               "when = amount > 5 and x\n", &d);
    CHECK(c != NULL);
    if (!c)
        return;
    CHECK_UINT(conf_named_count(c, "detector"), 2);
    const struct conf_section *s0 = conf_named_nth(c, "detector", 0);
    const struct conf_section *s1 = conf_named_nth(c, "detector", 1);
    CHECK_STR(s0->name, "fraud");
    CHECK_STR(s1->name, "big");
    CHECK_STR(conf_stype(c, s0), "zscore");
    CHECK_UINT(conf_sget(s0, D_HALF)->u, 600000000ULL);
    /* A key of another type is not defaulted in. */
    CHECK(!conf_sget(s1, D_HALF)->has_value);
    CHECK_NEAR(conf_sget(s1, D_ABOVE)->d, 1000, 0);
    CHECK_UINT(conf_sget(s1, D_WHEN)->column, 8);
    CHECK_UINT(s0->n_extras, 1);
    CHECK_STR(s0->extras[0].name, "default_country");
    CHECK_STR(s0->extras[0].v.raw, "XX");
    conf_unref(c);

    c = load("[detector.x]\ntype = threshold\nfield = a\nhalf_life = 5m\n[detector.y]\nfield = b\n"
             "[detector.z]\ntype = zscore\n[detector]\nfield=c\n[detector.bad name]\n", &d);
    CHECK(c == NULL);
    CHECK(diag_has(&d, "test.conf:4: key 'half_life' does not apply to [detector.x] of type 'threshold' (it applies to: zscore)"));
    CHECK(diag_has(&d, "test.conf:5: [detector.y] needs 'type'"));
    CHECK(diag_has(&d, "test.conf:7: [detector.z] needs 'field'"));
    CHECK(diag_has(&d, "test.conf:9: section [detector] needs a name"));
    CHECK(diag_has(&d, "test.conf:11: invalid name 'bad name'"));
    conf_diag_clear(&d);
}

TEST(reload_rules)
{
    struct conf_diag d = { 0 };
    struct rw_config *a = load("[main]\ncount = 5\n[detector.f]\ntype = zscore\nfield = x\n", &d);
    struct rw_config *b = load("[main]\ncount = 6\n[detector.f]\ntype = zscore\nfield = x\n", &d);
    struct rw_config *c = load("[main]\nstatic = y\n[detector.f]\ntype = zscore\nfield = y\n", &d);
    CHECK(a && b && c);
    if (a && b && c) {
        CHECK_UINT(conf_diff_restart_required(a, b, &d), 0);
        CHECK_UINT(conf_diff_restart_required(a, c, &d), 1);
        CHECK(diag_has(&d, "test.conf:2: [main] static changed from x to y, which needs a restart"));
        CHECK(conf_section_equal(a, conf_named_nth(a, "detector", 0), b, conf_named_nth(b, "detector", 0)));
        CHECK(!conf_section_equal(a, conf_named_nth(a, "detector", 0), c, conf_named_nth(c, "detector", 0)));
        conf_diag_clear(&d);
        CHECK_UINT(conf_diff(a, c, &d), 3); /* count back to default, static, detector.f */
    }
    conf_unref(a);
    conf_unref(b);
    conf_unref(c);
    conf_diag_clear(&d);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

TEST(drop_ins_in_lexical_order_later_wins)
{
    char dir[] = "/tmp/rw-conf-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char p[256], q[256];
    snprintf(p, sizeof(p), "%s/conf.d", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/main.conf", dir);
    write_file(p, "[main]\ncount = 1\nname = main\n");
    snprintf(q, sizeof(q), "%s/conf.d/20-b.conf", dir);
    write_file(q, "[main]\ncount = 3\n");
    snprintf(q, sizeof(q), "%s/conf.d/10-a.conf", dir);
    write_file(q, "[main]\ncount = 2\nflag = on\n");
    snprintf(q, sizeof(q), "%s/conf.d/30-ignored.conf.disabled", dir);
    write_file(q, "[main]\ncount = 99\n");
    struct conf_diag d = { 0 };
    struct rw_config *c = NULL;
    CHECK_INT(conf_load(&schema, p, &d, &c), 0);
    if (c) {
        CHECK_INT(conf_int(c, K_COUNT), 3);
        CHECK(conf_bool(c, K_FLAG));
        CHECK_STR(conf_str(c, K_NAME), "main");
        CHECK(endswith(conf_get(c, K_COUNT)->file, "conf.d/20-b.conf"));
        CHECK_UINT(strv_length(c->files), 3);
        conf_unref(c);
    }
    /* An error in a drop-in names the drop-in. */
    snprintf(q, sizeof(q), "%s/conf.d/40-bad.conf", dir);
    write_file(q, "\n[main]\nwait = forever\n");
    c = NULL;
    CHECK_INT(conf_load(&schema, p, &d, &c), -EINVAL);
    CHECK(d.n == 1 && strstr(d.msgs[0], "conf.d/40-bad.conf:3: [main] wait = forever"));
    conf_diag_clear(&d);
    CHECK_INT(conf_load(&schema, "/nonexistent/rw.conf", &d, &c), -ENOENT);
    CHECK(diag_has(&d, "/nonexistent/rw.conf: cannot read configuration"));
    conf_diag_clear(&d);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
}

/* The shipped etc/rarewatch/rarewatch.conf documents every key of the
 * production table with its default, and is itself valid. */
TEST(shipped_config_documents_every_key)
{
    const char *root = getenv("RW_SOURCE_ROOT");
    CHECK(root != NULL);
    if (!root)
        return;
    char path[512];
    snprintf(path, sizeof(path), "%s/etc/rarewatch/rarewatch.conf", root);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f)
        return;
    char *text = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&text, &cap, 0, f);
    fclose(f);
    CHECK(n > 0);
    for (size_t i = 0; i < rw_schema.n_keys; i++) {
        const struct conf_key *k = &rw_schema.keys[i];
        char want[256], section[128];
        snprintf(want, sizeof(want), "\n#%s = %s\n", k->name, k->def ? k->def : "");
        const struct conf_section_def *sd = &rw_schema.sections[conf_find_section(&rw_schema, k->section)];
        snprintf(section, sizeof(section), "\n%s[%s%s]\n", sd->named ? "#" : "", sd->name,
                 sd->named ? ".example" : "");
        const char *sec = strstr(text, section);
        const char *at = sec ? strstr(sec, want) : NULL;
        if (!sec || !at)
            TAP_FAIL_("etc/rarewatch/rarewatch.conf lacks '%s' under %s", want + 1, section + 1);
    }
    free(text);
    struct conf_diag d = { 0 };
    struct rw_config *c = NULL;
    CHECK_INT(rw_config_load(path, &d, &c), 0);
    conf_unref(c);
    conf_diag_clear(&d);
}

TAP_MAIN
