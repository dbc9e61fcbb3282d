/* SPDX-License-Identifier: Apache-2.0 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "rarewatch/json_scan.h"
#include "tap.h"

static int scan(struct json_doc *d, const char *s) { return json_scan(d, s, strlen(s)); }

static bool valid(const char *s)
{
    struct json_doc d;
    json_doc_init(&d, NULL);
    int r = scan(&d, s);
    json_doc_free(&d);
    return r == 0;
}

/* Look `path` up in `json` and render it as type:value for compact checks. */
static const char *lookup(const char *json, const char *path)
{
    static char out[512];
    struct json_doc d;
    struct json_path *p = NULL;
    json_doc_init(&d, NULL);
    if (scan(&d, json) < 0) {
        snprintf(out, sizeof(out), "scan-error");
        goto done;
    }
    if (json_path_compile(path, &p) < 0) {
        snprintf(out, sizeof(out), "path-error");
        goto done;
    }
    struct rw_value v;
    if (json_lookup(&d, p, &v) < 0) {
        snprintf(out, sizeof(out), "lookup-error");
        goto done;
    }
    switch (v.type) {
    case RW_NUM: snprintf(out, sizeof(out), "number:%.17g", v.num); break;
    case RW_BOOL: snprintf(out, sizeof(out), "bool:%d", v.b); break;
    default:
        snprintf(out, sizeof(out), "%s:%.*s", rw_type_name(v.type), (int)v.s.len, v.s.p ? v.s.p : "");
    }
done:
    json_path_free(p);
    json_doc_free(&d);
    return out;
}

TEST(accepts_valid_documents)
{
    const char *ok[] = {
        "{}", "[]", "0", "-0", "1.5e+10", "-0.0E-3", "\"\"", "true", "false", "null",
        " \t\r\n{ \"a\" : [ 1 , 2 , { } , [ ] ] } \n",
        "{\"a\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}",
        "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", /* é € 😀 raw */
        "\"\\ud800\"",                             /* lone surrogate escape: grammatical */
        "[1e5,1E5,1e-5,0.5,123456789012345678901234567890]",
        "{\"a\":{\"a\":{\"a\":{}}}}",
    };
    for (size_t i = 0; i < ELEMENTSOF(ok); i++)
        if (!valid(ok[i]))
            TAP_FAIL_("rejected valid document %zu: %s", i, ok[i]);
}

TEST(rejects_invalid_documents)
{
    const char *bad[] = {
        "", " ", "{", "}", "[", "[1,]", "[,1]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}",
        "{a:1}", "{'a':1}", "[1 2]", "01", "-", "1.", ".5", "1e", "1e+", "+1", "0x10",
        "NaN", "Infinity", "tru", "nul", "truex", "[true false]", "\"abc", "\"\\x\"",
        "\"\\u12g4\"", "\"\\u123\"", "\"a\tb\"", "\"a\nb\"", "{}{}", "{} x", "[1]]", "[}",
        "{\"a\":1]", "\"\xc0\xaf\"", /* overlong */ "\"\xed\xa0\x80\"", /* encoded surrogate */
        "\"\xf4\x90\x80\x80\"", /* > U+10FFFF */ "\"\xe2\x82\"", "\"\x80\"", "\"\xff\"",
        "[\"\xc3\"]",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++)
        if (valid(bad[i]))
            TAP_FAIL_("accepted invalid document %zu: %s", i, bad[i]);
}

TEST(embedded_nul_is_not_end_of_input)
{
    struct json_doc d;
    json_doc_init(&d, NULL);
    CHECK_INT(json_scan(&d, "{}\0 ", 4), -EINVAL);
    CHECK_INT(json_scan(&d, "\"a\0b\"", 5), -EINVAL);
    CHECK_INT(json_scan(&d, "[1]", 3), 0);
    json_doc_free(&d);
}

TEST(string_flags)
{
    /* ESCAPED for a backslash in the text, NONASCII for a raw byte >= 0x80
     * (an escaped one does not count): kinesis_records derives "needs no
     * JSON escape" from these without another pass. */
    static const struct {
        const char *doc;
        uint8_t flags;
    } cases[] = {
        { "[\"plain 0123456789abcdef0123456789abcdef\"]", 0 },
        { "[\"caf\xc3\xa9\"]", JSON_F_NONASCII },
        { "[\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\xe2\x82\xac\"]", JSON_F_NONASCII },
        { "[\"caf\\u00e9\"]", JSON_F_ESCAPED },
        { "[\"\\n\xc3\xa9\"]", JSON_F_ESCAPED | JSON_F_NONASCII },
        { "{\"\xc3\xa9\":1}", JSON_F_KEY | JSON_F_NONASCII },
    };
    struct json_doc d;
    json_doc_init(&d, NULL);
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        CHECK_INT(json_scan(&d, cases[i].doc, strlen(cases[i].doc)), 0);
        CHECK_INT(d.nodes[1].flags, cases[i].flags);
    }
    json_doc_free(&d);
}

TEST(depth_limit)
{
    char s[2 * JSON_MAX_DEPTH + 4];
    for (int depth = JSON_MAX_DEPTH; depth <= JSON_MAX_DEPTH + 1; depth++) {
        memset(s, '[', (size_t)depth);
        memset(s + depth, ']', (size_t)depth);
        s[2 * depth] = 0;
        CHECK_INT(valid(s), depth <= JSON_MAX_DEPTH);
    }
}

TEST(error_position_and_message)
{
    struct json_doc d;
    json_doc_init(&d, NULL);
    CHECK_INT(scan(&d, "{\"a\":1,\"b\":tru}"), -EINVAL);
    CHECK_INT(d.err_off, 11);
    CHECK_STR(d.err_msg, "invalid literal");
    CHECK_INT(scan(&d, "[\"ab\\q\"]"), -EINVAL);
    CHECK_INT(d.err_off, 4);
    CHECK_STR(d.err_msg, "invalid escape");
    json_doc_free(&d);
}

TEST(tape_shape_and_spans)
{
    struct json_doc d;
    json_doc_init(&d, NULL);
    const char *s = "{\"a\": [1, \"x\"], \"b\":null}";
    CHECK_INT(scan(&d, s), 0);
    /* obj, key a, array, 1, "x", key b, null */
    CHECK_UINT(d.n, 7);
    CHECK_INT(d.nodes[0].type, JSON_T_OBJECT);
    CHECK_UINT(d.nodes[0].next, 7);
    CHECK_INT(d.nodes[1].flags & JSON_F_KEY, JSON_F_KEY);
    CHECK_INT(d.nodes[2].type, JSON_T_ARRAY);
    CHECK_UINT(d.nodes[2].next, 5);
    CHECK_UINT(d.nodes[2].start, 6);
    CHECK_UINT(d.nodes[2].end, 14);
    CHECK_UINT(d.nodes[4].start, 10);
    CHECK_UINT(d.nodes[4].end, 13);
    CHECK_UINT(json_arr_get(&d, 2, 1), 4);
    CHECK_UINT(json_arr_get(&d, 2, 2), JSON_NONE);
    CHECK_UINT(json_obj_get(&d, 0, "b", 1), 6);
    CHECK_UINT(json_obj_get(&d, 2, "b", 1), JSON_NONE);
    json_doc_free(&d);
}

TEST(path_lookup)
{
    const char *j = "{\"id\":42,\"user\":{\"name\":\"ann\",\"country\":\"DE\"},"
                    "\"items\":[{\"sku\":\"A1\",\"qty\":2},{\"sku\":\"B2\"}],"
                    "\"a.b\":true,\"\":1,\"t\\u00e9st\":\"es\\u0063aped\\n\"}";
    CHECK_STR(lookup(j, "id"), "number:42");
    CHECK_STR(lookup(j, "user.country"), "string:DE");
    CHECK_STR(lookup(j, "items[0].sku"), "string:A1");
    CHECK_STR(lookup(j, "items[1].sku"), "string:B2");
    CHECK_STR(lookup(j, "items[1].qty"), "missing:");
    CHECK_STR(lookup(j, "items[2].sku"), "missing:");
    CHECK_STR(lookup(j, "items[0]"), "object:{\"sku\":\"A1\",\"qty\":2}");
    CHECK_STR(lookup(j, "items"), "array:[{\"sku\":\"A1\",\"qty\":2},{\"sku\":\"B2\"}]");
    CHECK_STR(lookup(j, "id.x"), "missing:");
    CHECK_STR(lookup(j, "user[0]"), "missing:");
    CHECK_STR(lookup(j, "[\"a.b\"]"), "bool:1");
    CHECK_STR(lookup(j, "[\"\"]"), "number:1");
    CHECK_STR(lookup(j, "t\xc3\xa9st"), "string:escaped\n");
    CHECK_STR(lookup(j, "[\"t\\u00e9st\"]"), "string:escaped\n");
    CHECK_STR(lookup("[[1,[2,3]]]", "[0][1][1]"), "number:3");
    CHECK_STR(lookup("{\"a\":1,\"a\":2}", "a"), "number:1");
}

TEST(escaped_keys_compare_decoded)
{
    struct json_doc d;
    json_doc_init(&d, NULL);
    CHECK_INT(scan(&d, "{\"\\u0061\\/b\":1,\"\\ud83d\\ude00\":2,\"x\\\"\":3}"), 0);
    CHECK_UINT(json_obj_get(&d, 0, "a/b", 3), 2);
    CHECK_UINT(json_obj_get(&d, 0, "a/", 2), JSON_NONE);
    CHECK_UINT(json_obj_get(&d, 0, "a/bc", 4), JSON_NONE);
    CHECK_UINT(json_obj_get(&d, 0, "\xf0\x9f\x98\x80", 4), 4);
    CHECK_UINT(json_obj_get(&d, 0, "x\"", 2), 6);
    json_doc_free(&d);
}

TEST(string_decoding)
{
    CHECK_STR(lookup("[\"\\ud83d\\ude00\"]", "[0]"), "string:\xf0\x9f\x98\x80");
    CHECK_STR(lookup("[\"\\ud800x\"]", "[0]"), "string:\xef\xbf\xbdx");
    CHECK_STR(lookup("[\"\\udc00\\ud800\\u0041\"]", "[0]"), "string:\xef\xbf\xbd\xef\xbf\xbd" "A");
    CHECK_STR(lookup("[\"\\u0000\"]", "[0]"), "string:"); /* decoded NUL, length 1 */
    CHECK_STR(lookup("[\"a\\tb\\u20ac\"]", "[0]"), "string:a\tb\xe2\x82\xac");
}

TEST(escaped_strings_go_to_caller_arena)
{
    struct arena a = ARENA_INIT;
    struct json_doc d;
    json_doc_init(&d, &a);
    const char *s = "[\"plain\",\"esc\\n\"]";
    CHECK_INT(scan(&d, s), 0);
    struct rw_str v0, v1;
    CHECK_INT(json_get_string(&d, 1, &v0), 0);
    CHECK_INT(json_get_string(&d, 2, &v1), 0);
    CHECK(v0.p == s + 2); /* borrowed from the text */
    CHECK(v1.p < s || v1.p > s + strlen(s));
    CHECK_INT(v1.len, 4);
    /* Still valid after the doc moves on to another record. */
    CHECK_INT(scan(&d, "[]"), 0);
    CHECK(memcmp(v1.p, "esc\n", 4) == 0);
    json_doc_free(&d);
    arena_free(&a);
}

static double num(const char *s)
{
    struct json_doc d;
    json_doc_init(&d, NULL);
    double v = NAN;
    if (json_scan(&d, s, strlen(s)) == 0)
        json_get_number(&d, 0, &v);
    json_doc_free(&d);
    return v;
}

TEST(numbers_correctly_rounded)
{
    const char *cases[] = {
        "0", "-0", "1", "-1", "0.1", "0.3", "1.7976931348623157e308", "4.9e-324", "2.2250738585072014e-308",
        "9007199254740993", "9007199254740992", "123456789012345678901234567890",
        "0.1000000000000000055511151231257827", "1e23", "8.98846567431158e307", "1e400", "-1e400",
        "1e-400", "3.14159265358979323846", "1700000000.123", "0.93", "12345.6789e-3",
        "0.000000000000000000000000000000001", "100000000000000000000000", "2.5E+2", "7e22", "7e-22",
        "18446744073709551615", "18446744073709551616", "99999999999999999999",
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        double want = strtod(cases[i], NULL), got = num(cases[i]);
        if (memcmp(&want, &got, sizeof(double)) != 0)
            TAP_FAIL_("%s: got %.17g, want %.17g", cases[i], got, want);
    }
}

TEST(numbers_random_against_strtod)
{
    /* Mantissas and exponents around the fast-path edges (2^53, 10^22). */
    uint64_t x = 88172645463325252ULL;
    char s[64];
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t m = x >> (x % 40);
        int e = (int)(x >> 40) % 50 - 25;
        int frac = (int)((x >> 20) % 6);
        if (i % 3 == 2)
            /* Long digit runs on both sides of the point (read eight at a
             * time), with and without an exponent after them. */
            snprintf(s, sizeof(s), "%llu.%0*llu%s%d", (unsigned long long)(x >> (x % 64)), 1 + (int)(m % 22),
                     (unsigned long long)(m >> 7) % 10000000000000000000ull, e & 1 ? "e" : "", e & 1 ? e : 0);
        else if (frac)
            snprintf(s, sizeof(s), "%llu.%0*llue%d", (unsigned long long)(m / 1000000),
                     frac, (unsigned long long)(m % 1000000) % 100000, e);
        else
            snprintf(s, sizeof(s), "%llue%d", (unsigned long long)m, e);
        double want = strtod(s, NULL), got = json_parse_number(s, strlen(s));
        if (memcmp(&want, &got, sizeof(double)) != 0) {
            TAP_FAIL_("%s: got %.17g, want %.17g", s, got, want);
            break;
        }
    }
}

/* Long strings are skipped 16 and (with AVX2) 64 or 32 bytes at a time:
 * a special byte at every position of strings up to 300 bytes must be
 * found where it is, whichever block it falls in, and the string must end
 * exactly at its quote. */
TEST(special_byte_found_at_every_position_of_long_strings)
{
    static char doc[400];
    struct json_doc d;
    json_doc_init(&d, NULL);
    for (size_t len = 0; len <= 300; len += (len < 80 ? 1 : 7)) {
        /* {"k":"aaa...a"} */
        size_t n = 0;
        n += (size_t)snprintf(doc, sizeof(doc), "{\"k\":\"");
        memset(doc + n, 'a', len);
        n += len;
        memcpy(doc + n, "\"}", 3);
        n += 2;
        CHECK_INT(json_scan(&d, doc, n), 0);
        CHECK_UINT(d.nodes[2].end, 6 + len + 1);
        for (size_t i = 0; i < len; i++) {
            static const char specials[] = { 0x01, 0x1f, '\\' };
            for (size_t k = 0; k < sizeof(specials); k++) {
                char save = doc[6 + i];
                doc[6 + i] = specials[k];
                int r = json_scan(&d, doc, n);
                /* A lone backslash escapes the next 'a' (invalid) or the
                 * closing quote (unterminated): an error either way, at it. */
                size_t want = specials[k] == '\\' && i == len - 1 ? n : 6 + i;
                if (r != -EINVAL || d.err_off != want)
                    TAP_FAIL_("len %zu, byte 0x%02x at %zu: r %d, err_off %zu", len, (unsigned char)specials[k], i,
                              r, d.err_off);
                doc[6 + i] = save;
            }
            /* An escape and a two-byte UTF-8 character are taken in stride. */
            if (i + 1 < len) {
                doc[6 + i] = '\\';
                doc[6 + i + 1] = 'n';
                if (json_scan(&d, doc, n) != 0 || !(d.nodes[2].flags & JSON_F_ESCAPED) ||
                    d.nodes[2].end != 6 + len + 1)
                    TAP_FAIL_("len %zu: escape at %zu not taken", len, i);
                doc[6 + i] = (char)0xC3;
                doc[6 + i + 1] = (char)0xA9;
                if (json_scan(&d, doc, n) != 0 || d.nodes[2].end != 6 + len + 1)
                    TAP_FAIL_("len %zu: UTF-8 at %zu not taken", len, i);
                doc[6 + i] = doc[6 + i + 1] = 'a';
            }
            /* A quote ends the string there (then the document is bad). */
            doc[6 + i] = '"';
            if (json_scan(&d, doc, n) != -EINVAL || d.err_off != 6 + i + 1)
                TAP_FAIL_("len %zu: quote at %zu: err_off %zu", len, i, d.err_off);
            doc[6 + i] = 'a';
        }
    }
    json_doc_free(&d);
}

TEST(path_compile_errors)
{
    const char *bad[] = { "", ".a", "a.", "a..b", "a[", "a[]", "a[x]", "a[1", "a[-1]", "a[\"b]",
                          "a[\"b\"", "a[\"\\q\"]", "a]", "a[0]b", "a[99999999999]" };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        struct json_path *p = NULL;
        if (json_path_compile(bad[i], &p) != -EINVAL)
            TAP_FAIL_("accepted bad path %s", bad[i]);
        json_path_free(p);
    }
    struct json_path *p = NULL;
    CHECK_INT(json_path_compile("a[\"x.y\"].b[3]", &p), 0);
    CHECK_UINT(p->n, 4);
    CHECK_INT(p->steps[1].kind, JSON_STEP_KEY);
    CHECK(p->steps[1].keylen == 3 && memcmp(p->steps[1].key, "x.y", 3) == 0);
    CHECK_INT(p->steps[3].kind, JSON_STEP_INDEX);
    CHECK_UINT(p->steps[3].index, 3);
    /* Keys that need no escape in JSON are marked so (the splicer copies
     * them); one with a quote, a control byte or non-ASCII is not. */
    CHECK(p->steps[0].plain && p->steps[1].plain && p->steps[2].plain && !p->steps[3].plain);
    json_path_free(p);
    p = NULL;
    CHECK_INT(json_path_compile("[\"a\\\"b\"][\"\\u00e9\"][\"\\t\"]", &p), 0);
    CHECK(p && p->n == 3 && !p->steps[0].plain && !p->steps[1].plain && !p->steps[2].plain);
    json_path_free(p);
}

TEST(tape_storage_is_reused)
{
    struct json_doc d;
    json_doc_init(&d, NULL);
    char big[4096];
    size_t n = 0;
    big[n++] = '[';
    for (int i = 0; i < 500; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%s%d", i ? "," : "", i % 10);
    big[n++] = ']';
    big[n] = 0;
    CHECK_INT(json_scan(&d, big, n), 0);
    CHECK_UINT(d.n, 501);
    struct json_node *nodes = d.nodes;
    uint32_t cap = d.cap;
    CHECK_INT(scan(&d, "[1,2,3]"), 0);
    CHECK_INT(json_scan(&d, big, n), 0);
    CHECK(d.nodes == nodes && d.cap == cap);
    json_doc_free(&d);
}

TAP_MAIN
