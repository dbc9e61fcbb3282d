/* SPDX-License-Identifier: Apache-2.0 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "rarewatch/expr.h"
#include "rarewatch/json_out.h"
#include "tap.h"

#define REC "{\"amount\": 12.5, \"n\": 3, \"s\": \"Hello\", \"e\": \"\", \"z\": null, \"t\": true, " \
            "\"user\": {\"country\": \"DE\", \"name\": \"J\\u00fcrgen\"}, \"items\": [{\"sku\": \"A1\"}, {\"sku\": \"B2\"}], " \
            "\"u\": \"h\\u00e9llo w\\u00f6rld \\ud83d\\ude00\", \"when\": \"2026-11-28 06:30:00\", " \
            "\"status\": 503, \"path\": \"/api/v1/orders\", \"ts\": 1795847400}"

/* Evaluate src against REC (event time 2026-11-28T06:30:00Z, a Saturday)
 * and render the result: JSON for values, "missing", "ERR: why", or
 * "COMPILE@OFF: message". */
static const char *ev_on(const char *src, const char *json)
{
    static struct buf out;
    static struct arena scratch;
    buf_reset(&out);
    arena_reset(&scratch);
    char msg[256];
    size_t off = 0;
    struct expr *e = NULL;
    int r = expr_compile(src, &e, &off, msg, sizeof(msg));
    if (r < 0) {
        (void)buf_printf(&out, "COMPILE@%zu: %s", off, msg);
        return out.data;
    }
    struct json_doc d;
    json_doc_init(&d, &scratch);
    if (json_scan(&d, json, strlen(json)) < 0)
        TAP_FAIL_("bad test record");
    struct expr_env env = { .doc = &d, .scratch = &scratch, .event_time = 1795847400, .arrival_time = 1795847401.5 };
    struct rw_value v;
    r = expr_eval(e, &env, &v);
    if (r < 0)
        (void)buf_printf(&out, "ERR: %s", env.err ? env.err : "?");
    else if (v.type == RW_MISSING)
        (void)buf_puts(&out, "missing");
    else
        (void)buf_put_json_value(&out, &v);
    json_doc_free(&d);
    expr_free(e);
    return out.data;
}
static const char *ev(const char *src) { return ev_on(src, REC); }

TEST(literals_and_precedence)
{
    CHECK_STR(ev("1 + 2 * 3"), "7");
    CHECK_STR(ev("(1 + 2) * 3"), "9");
    CHECK_STR(ev("10 - 4 - 3"), "3");
    CHECK_STR(ev("2 * 3 % 4"), "2");
    CHECK_STR(ev("-2 * -3"), "6");
    CHECK_STR(ev("7 / 2"), "3.5");
    CHECK_STR(ev("7 % 3"), "1");
    CHECK_STR(ev("1.5e3"), "1500");
    CHECK_STR(ev("\"a\\\"b\\n\\u00e9\""), "\"a\\\"b\\né\"");
    CHECK_STR(ev("true"), "true");
    CHECK_STR(ev("null"), "null");
    CHECK_STR(ev("1 < 2 and 2 < 3 or false"), "true");
    /* and binds tighter than or */
    CHECK_STR(ev("true or false and false"), "true");
    CHECK_STR(ev("not 1 == 2"), "true");
    CHECK_STR(ev("not not t"), "true");
    CHECK_STR(ev("1 + 1 == 2"), "true");
}

TEST(paths_and_types)
{
    CHECK_STR(ev("amount * 2"), "25");
    CHECK_STR(ev("user.country"), "\"DE\"");
    CHECK_STR(ev("items[1].sku"), "\"B2\"");
    CHECK_STR(ev("[\"user\"].country"), "\"DE\"");
    CHECK_STR(ev("nope.nothing"), "missing");
    CHECK_STR(ev("s + \" \" + user.country"), "\"Hello DE\"");
    CHECK_STR(ev("s + 1"), "ERR: + needs two numbers or two strings");
    CHECK_STR(ev("s * 2"), "ERR: arithmetic on a non-number");
    CHECK_STR(ev("-s"), "ERR: unary minus of a non-number");
    CHECK_STR(ev("1 / 0"), "null");
    CHECK_STR(ev("5 % 0"), "null");
    CHECK_STR(ev("\"b\" > \"a\""), "true");
    CHECK_STR(ev("\"ab\" < \"abc\""), "true");
    CHECK_STR(ev("n == \"3\""), "false");
    CHECK_STR(ev("n < \"4\""), "false");
    CHECK_STR(ev("user == user"), "true");
}

TEST(null_and_missing)
{
    CHECK_STR(ev("missing_field + 1"), "null");
    CHECK_STR(ev("z + 1"), "null");
    CHECK_STR(ev("missing_field == null"), "true");
    CHECK_STR(ev("z == null"), "true");
    CHECK_STR(ev("missing_field != null"), "false");
    CHECK_STR(ev("z != null"), "false");
    CHECK_STR(ev("n != null"), "true");
    CHECK_STR(ev("missing_field == 1"), "false");
    CHECK_STR(ev("missing_field != 1"), "false");
    CHECK_STR(ev("missing_field < 1"), "false");
    CHECK_STR(ev("missing_field >= 1"), "false");
    CHECK_STR(ev("z != 1"), "true");
    CHECK_STR(ev("not missing_field"), "true");
    CHECK_STR(ev("e or 0 or z"), "false");
    CHECK_STR(ev("missing_field in [null, 1]"), "false");
    CHECK_STR(ev("z in [null, 1]"), "true");
}

TEST(short_circuit)
{
    /* The right side would be a type error; it must not be evaluated. */
    CHECK_STR(ev("false and s * 2"), "false");
    CHECK_STR(ev("true or s * 2"), "true");
    CHECK_STR(ev("true and s * 2"), "ERR: arithmetic on a non-number");
    CHECK(expr_test == expr_test);
}

TEST(in_and_regex)
{
    CHECK_STR(ev("user.country in [\"DE\", \"AT\"]"), "true");
    CHECK_STR(ev("user.country in [\"FR\"]"), "false");
    CHECK_STR(ev("status in [500, 502, 503]"), "true");
    CHECK_STR(ev("status in []"), "false");
    CHECK_STR(ev("path =~ \"^/api/v[0-9]+/\""), "true");
    CHECK_STR(ev("path =~ \"^/web\""), "false");
    CHECK_STR(ev("n =~ \"3\""), "false");
    CHECK_STR(ev("user.name =~ \"^J.rgen$\""), "true"); /* UTF mode: . is one code point */
    CHECK_STR(ev("u =~ \"\\\\x{1F600}\""), "true");
}

TEST(unicode_strings)
{
    CHECK_STR(ev("len(u)"), "13");
    CHECK_STR(ev("len(user.name)"), "6");
    CHECK_STR(ev("substr(u, 0, 5)"), "\"héllo\"");
    CHECK_STR(ev("substr(u, -1)"), "\"😀\"");
    CHECK_STR(ev("substr(u, 6, 5)"), "\"wörld\"");
    CHECK_STR(ev("upper(user.name)"), "\"JüRGEN\"");
    CHECK_STR(ev("\"ü\" == user.name"), "false");
    CHECK_STR(ev("user.name == \"J\\u00fcrgen\""), "true");
}

TEST(functions)
{
    CHECK_STR(ev("exists(user.country)"), "true");
    CHECK_STR(ev("exists(z)"), "true");
    CHECK_STR(ev("exists(user.city)"), "false");
    CHECK_STR(ev("lower(s)"), "\"hello\"");
    CHECK_STR(ev("upper(s)"), "\"HELLO\"");
    CHECK_STR(ev("lower(z)"), "null");
    CHECK_STR(ev("lower(n)"), "ERR: lower() of a non-string");
    CHECK_STR(ev("len(s)"), "5");
    CHECK_STR(ev("len(items)"), "2");
    CHECK_STR(ev("len(user)"), "2");
    CHECK_STR(ev_on("len(a)", "{\"a\":[]}"), "0");
    CHECK_STR(ev_on("len(a)", "{\"a\":[[1,2],\"x,y\",{\"b\":[3]}]}"), "3");
    CHECK_STR(ev("len(n)"), "ERR: len() of a number or bool");
    CHECK_STR(ev("substr(s, 1, 3)"), "\"ell\"");
    CHECK_STR(ev("substr(s, 3)"), "\"lo\"");
    CHECK_STR(ev("substr(s, 10)"), "\"\"");
    CHECK_STR(ev("substr(s, 2, 100)"), "\"llo\"");
    CHECK_STR(ev("coalesce(missing_field, z, n, 1)"), "3");
    CHECK_STR(ev("coalesce(missing_field, z)"), "null");
    CHECK_STR(ev("abs(-2.5)"), "2.5");
    CHECK_STR(ev("abs(z)"), "null");
    CHECK_STR(ev("round(2.5)"), "3");
    CHECK_STR(ev("round(-2.5)"), "-3");
    CHECK_STR(ev("round(3.14159, 2)"), "3.14");
    CHECK_STR(ev("round(1234, -2)"), "1200");
    CHECK_STR(ev("min(3, amount, z, 7)"), "3");
    CHECK_STR(ev("max(3, amount, missing_field, 7)"), "12.5");
    CHECK_STR(ev("max(z)"), "null");
    CHECK_STR(ev("arrival_time()"), "1795847401.5");
    CHECK_STR(ev("now() > 1700000000"), "true");
    CHECK_STR(ev("parse_time(when, \"%Y-%m-%d %H:%M:%S\")"), "1795847400");
    CHECK_STR(ev("parse_time(\"2026-11-28T07:30:00+0100\", \"%Y-%m-%dT%H:%M:%S%z\")"), "1795847400");
    CHECK_STR(ev("parse_time(s, \"%Y\")"), "null");
    CHECK_STR(ev("hour_of_day()"), "6");
    CHECK_STR(ev("day_of_week()"), "6"); /* 2026-11-28 is a Saturday; 0 = Sunday */
    CHECK_STR(ev("hour_of_day(ts + 3600 * 20)"), "2");
    CHECK_STR(ev("day_of_week(ts + 86400)"), "0");
    CHECK_STR(ev("hour_of_day(s)"), "null");
}

TEST(compile_errors)
{
    CHECK_STR(ev("1 +"), "COMPILE@3: expected a value at the end");
    CHECK_STR(ev("amount > > 3"), "COMPILE@9: expected a value, found '>'");
    CHECK_STR(ev("(1 + 2"), "COMPILE@6: expected ')'");
    CHECK_STR(ev("frob(1)"), "COMPILE@0: unknown function 'frob'");
    CHECK_STR(ev("x + lower(1, 2)"), "COMPILE@4: lower() takes 1 argument, not 2");
    CHECK_STR(ev("substr(s)"), "COMPILE@0: substr() takes 2 to 3 arguments, not 1");
    CHECK_STR(ev("exists(1)"), "COMPILE@7: exists() takes a field path");
    CHECK_STR(ev("s =~ \"(\""), "COMPILE@7: bad regex: missing closing parenthesis");
    CHECK_STR(ev("s =~ s"), "COMPILE@5: =~ takes a string literal regex");
    CHECK_STR(ev("\"abc"), "COMPILE@0: unterminated string");
    CHECK_STR(ev("\"\\q\""), "COMPILE@1: unknown escape \\q");
    CHECK_STR(ev("a < b < c"), "COMPILE@6: comparisons do not chain (a < b < c); use 'and'");
    CHECK_STR(ev("n in 1"), "COMPILE@5: expected '[' after 'in'");
    CHECK_STR(ev("1 2"), "COMPILE@2: unexpected '2'");
    CHECK_STR(ev("status = 500"), "COMPILE@7: unexpected '=' (comparison is ==)");
    CHECK_STR(ev("a and"), "COMPILE@5: expected a value at the end");
    CHECK_STR(ev("items[x]"), "COMPILE@5: bad field path step");
    CHECK_STR(ev("parse_time(s, s)"), "COMPILE@11: parse_time(): the format must be a string literal");
    char deep[400];
    memset(deep, '(', 300);
    strcpy(deep + 300, "1");
    CHECK_CONTAINS(ev(deep), "nested too deeply");
    /* A flat chain is deep as a tree: 255 additions evaluate, 300 do not compile. */
    struct buf chain = BUF_INIT;
    (void)buf_puts(&chain, "1");
    for (int i = 0; i < 255; i++)
        (void)buf_puts(&chain, " + 1");
    CHECK_STR(ev(chain.data), "256");
    for (int i = 0; i < 45; i++)
        (void)buf_puts(&chain, " + 1");
    CHECK_STR(ev(chain.data), "COMPILE@0: expression too long: more than 256 nested operations");
    buf_free(&chain);
}

TEST(conf_diag_columns)
{
    struct conf_value v = { .has_value = true, .file = "/etc/rw.conf", .line = 12, .column = 9,
                            .raw = (char *)"status >= = 500" };
    struct conf_diag d = { 0 };
    struct expr *e = NULL;
    CHECK_INT(expr_compile_conf(&v, "[detector.web] where", &d, &e), -EINVAL);
    CHECK_UINT(d.n, 1);
    if (d.n)
        CHECK_STR(d.msgs[0], "/etc/rw.conf:12:19: [detector.web] where: expected a value, found '='");
    conf_diag_clear(&d);
    v.raw = (char *)"status >= 500";
    CHECK_INT(expr_compile_conf(&v, "x", &d, &e), 0);
    CHECK_UINT(d.n, 0);
    expr_free(e);
}

TEST(match_data_reuse)
{
    /* The per-thread match data must give the same answers as none. */
    struct expr *e = NULL;
    CHECK_INT(expr_compile("s =~ \"^[A-Z]\"", &e, NULL, NULL, 0), 0);
    struct json_doc d;
    json_doc_init(&d, NULL);
    const char *j = "{\"s\":\"Hello\"}";
    CHECK_INT(json_scan(&d, j, strlen(j)), 0);
    void *md = expr_match_data_new();
    struct expr_env env = { .doc = &d, .match_data = md };
    for (int i = 0; i < 3; i++)
        CHECK(expr_test(e, &env));
    expr_match_data_free(md);
    json_doc_free(&d);
    expr_free(e);
}

TAP_MAIN
