/* SPDX-License-Identifier: Apache-2.0 */
#include <math.h>
#include <stdlib.h>

#include "rarewatch/json_out.h"
#include "tap.h"

struct ed {
    const char *path;
    bool remove;
    struct rw_value v;
};

/* Apply edits to json, return the output (or "ERR n"), and check that the
 * output is itself valid JSON. */
static const char *splice(const char *json, const struct ed *eds, size_t n)
{
    static struct buf out;
    struct json_doc d, d2;
    struct json_path *paths[16] = { 0 };
    struct json_edit edits[16];
    json_doc_init(&d, NULL);
    json_doc_init(&d2, NULL);
    buf_reset(&out);
    int r = json_scan(&d, json, strlen(json));
    for (size_t i = 0; r >= 0 && i < n; i++) {
        r = json_path_compile(eds[i].path, &paths[i]);
        edits[i] = eds[i].remove ? JSON_EDIT_REMOVE(paths[i]) : JSON_EDIT_SET(paths[i], eds[i].v);
    }
    if (r >= 0)
        r = json_splice(&out, &d, edits, n);
    if (r < 0) {
        buf_reset(&out);
        (void)buf_printf(&out, "ERR %d", r);
    } else if (json_scan(&d2, out.data, out.len) < 0)
        TAP_FAIL_("output is not valid JSON: %s", out.data);
    for (size_t i = 0; i < n; i++)
        json_path_free(paths[i]);
    json_doc_free(&d);
    json_doc_free(&d2);
    return out.data ? out.data : "";
}

#define SPLICE(json, ...)                                            \
    ({                                                               \
        const struct ed e_[] = { __VA_ARGS__ };                      \
        splice((json), e_, ELEMENTSOF(e_));                          \
    })

static const char *number(double x)
{
    static struct buf b;
    buf_reset(&b);
    if (buf_put_json_number(&b, x) < 0)
        return "ERR";
    return b.data;
}

TEST(add_top_level_fields)
{
    const char *rec = "{\"id\": 7, \"user\": {\"country\":\"DE\"} }";
    CHECK_STR(SPLICE(rec, { "anomaly_score", false, RW_VALUE_NUM(0.93) },
                     { "flag", false, RW_VALUE_BOOL(true) }, { "why", false, RW_VALUE_STR("a\"b", 3) }),
              "{\"id\": 7, \"user\": {\"country\":\"DE\"},\"anomaly_score\":0.93,\"flag\":true,\"why\":\"a\\\"b\"}");
    CHECK_STR(SPLICE("{}", { "a", false, RW_VALUE_NULL }), "{\"a\":null}");
    CHECK_STR(SPLICE(" { } ", { "a", false, RW_VALUE_NUM(1) }), "{\"a\":1}");
    /* Only new members (copied as one run): the whitespace inside is kept,
     * the whitespace after the last member is not, as when members are
     * walked; likewise one level down. */
    CHECK_STR(SPLICE("{\n\t\"a\" : 1 ,\r\n \"b\":[2] \t\r\n}", { "c", false, RW_VALUE_NUM(3) }),
              "{\"a\" : 1 ,\r\n \"b\":[2],\"c\":3}");
    CHECK_STR(SPLICE("{\"o\":{ \"x\":1 \n},\"y\":2}", { "o.z", false, RW_VALUE_NUM(5) }),
              "{\"o\":{\"x\":1,\"z\":5},\"y\":2}");
    /* One of the names present (escaped): the walk. */
    CHECK_STR(SPLICE("{\"\\u0062\":1 }", { "a", false, RW_VALUE_NUM(2) }, { "b", false, RW_VALUE_NUM(3) }),
              "{\"\\u0062\":3,\"a\":2}");
}

TEST(add_nested_object)
{
    CHECK_STR(SPLICE("{\"id\":1}", { "_kinesis.seq", false, RW_VALUE_STR("49", 2) },
                     { "_kinesis.shard", false, RW_VALUE_STR("s-1", 3) },
                     { "_kinesis.at.ms", false, RW_VALUE_NUM(5) }),
              "{\"id\":1,\"_kinesis\":{\"seq\":\"49\",\"shard\":\"s-1\",\"at\":{\"ms\":5}}}");
    /* Into an existing object, keeping its bytes. */
    CHECK_STR(SPLICE("{\"_kinesis\":{ \"x\" : 1 },\"id\":1}", { "_kinesis.seq", false, RW_VALUE_NUM(2) }),
              "{\"_kinesis\":{\"x\" : 1,\"seq\":2},\"id\":1}");
    /* A parent that is not an object is replaced by one. */
    CHECK_STR(SPLICE("{\"_kinesis\":5}", { "_kinesis.seq", false, RW_VALUE_NUM(2) }),
              "{\"_kinesis\":{\"seq\":2}}");
    /* Raw object values go in verbatim. */
    struct rw_value obj = { .type = RW_OBJECT, .s = { "{\"k\":[1,2]}", 11 } };
    CHECK_STR(SPLICE("{\"a\":1}", { "o", false, obj }), "{\"a\":1,\"o\":{\"k\":[1,2]}}");
}

TEST(overwrite_in_place)
{
    CHECK_STR(SPLICE("{\"a\":1,\"b\":[1,2],\"c\":3}", { "b", false, RW_VALUE_STR("x", 1) }),
              "{\"a\":1,\"b\":\"x\",\"c\":3}");
    CHECK_STR(SPLICE("{\"user\":{\"name\":\"a\",\"country\":\"DE\",\"z\":0},\"n\":1}",
                     { "user.country", false, RW_VALUE_STR("FR", 2) }),
              "{\"user\":{\"name\":\"a\",\"country\":\"FR\",\"z\":0},\"n\":1}");
    /* Escaped spelling of the key in the input still matches. */
    CHECK_STR(SPLICE("{\"\\u0061\":1,\"b\":2}", { "a", false, RW_VALUE_NUM(9) }), "{\"\\u0061\":9,\"b\":2}");
    /* Later edits of the same path win. */
    CHECK_STR(SPLICE("{\"a\":1}", { "a", false, RW_VALUE_NUM(2) }, { "a", false, RW_VALUE_NUM(3) }),
              "{\"a\":3}");
    /* Duplicate keys collapse to the first position. */
    CHECK_STR(SPLICE("{\"a\":1,\"b\":2,\"a\":3}", { "a", false, RW_VALUE_NUM(4) }), "{\"a\":4,\"b\":2}");
}

TEST(remove_members)
{
    CHECK_STR(SPLICE("{\"a\":1,\"b\":2,\"c\":3}", { "a", true, RW_VALUE_MISSING }), "{\"b\":2,\"c\":3}");
    CHECK_STR(SPLICE("{\"a\":1,\"b\":2,\"c\":3}", { "b", true, RW_VALUE_MISSING }), "{\"a\":1,\"c\":3}");
    CHECK_STR(SPLICE("{\"a\":1,\"b\":2,\"c\":3}", { "c", true, RW_VALUE_MISSING }), "{\"a\":1,\"b\":2}");
    CHECK_STR(SPLICE("{\"a\":1}", { "a", true, RW_VALUE_MISSING }), "{}");
    CHECK_STR(SPLICE("{\"a\":1,\"a\":2}", { "a", true, RW_VALUE_MISSING }), "{}");
    CHECK_STR(SPLICE("{\"user\":{\"name\":\"a\",\"country\":\"DE\"}}", { "user.country", true, RW_VALUE_MISSING }),
              "{\"user\":{\"name\":\"a\"}}");
    /* Removing what is not there changes nothing and creates no parents. */
    CHECK_STR(SPLICE("{\"a\":1}", { "x.y", true, RW_VALUE_MISSING }, { "a.b", true, RW_VALUE_MISSING }),
              "{\"a\":1}");
    /* Setting RW_MISSING is a remove. */
    CHECK_STR(SPLICE("{\"a\":1,\"b\":2}", { "a", false, RW_VALUE_MISSING }), "{\"b\":2}");
    /* Mixed: remove, overwrite, add. */
    CHECK_STR(SPLICE("{\"a\":1, \"b\":2, \"c\":3, \"d\":4}", { "b", true, RW_VALUE_MISSING },
                     { "d", false, RW_VALUE_NUM(5) }, { "e", false, RW_VALUE_NUM(6) }),
              "{\"a\":1,\"c\":3,\"d\":5,\"e\":6}");
}

TEST(a_whole_member_edit_beats_edits_below_it)
{
    CHECK_STR(SPLICE("{}", { "a", false, RW_VALUE_NUM(1) }, { "a.b", false, RW_VALUE_NUM(2) }), "{\"a\":1}");
    CHECK_STR(SPLICE("{\"a\":{\"b\":1}}", { "a.b", false, RW_VALUE_NUM(2) }, { "a", true, RW_VALUE_MISSING }),
              "{}");
}

TEST(no_edits_copies_the_record)
{
    const char *rec = "  {\"a\" : [1, 2]}\n";
    CHECK_STR(splice(rec, NULL, 0), "{\"a\" : [1, 2]}");
}

TEST(rejected_edits)
{
    CHECK_STR(SPLICE("[1]", { "a", false, RW_VALUE_NUM(1) }), "ERR -22");
    CHECK_STR(SPLICE("{\"a\":[1]}", { "a[0]", false, RW_VALUE_NUM(1) }), "ERR -22");
}

TEST(numbers_shortest_and_exact)
{
    CHECK_STR(number(0.93), "0.93");
    CHECK_STR(number(1), "1");
    CHECK_STR(number(-42), "-42");
    CHECK_STR(number(0), "0");
    CHECK_STR(number(-0.0), "-0");
    CHECK_STR(number(0.1), "0.1");
    CHECK_STR(number(-12.5), "-12.5");
    CHECK_STR(number(1700000000.123), "1700000000.123");
    CHECK_STR(number(0.00012), "0.00012");
    CHECK_STR(number(3.05), "3.05");
    CHECK_STR(number(-0.5), "-0.5");
    CHECK_STR(number(100.007), "100.007");
    CHECK_STR(number(9007199254740992.0), "9007199254740992");
    CHECK_STR(number(NAN), "null");
    CHECK_STR(number(INFINITY), "null");
    CHECK_STR(number(1e300), "1.0000000000000001e+300");
    /* Any double must read back bit-identical. */
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    struct json_doc d;
    json_doc_init(&d, NULL);
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double v;
        if (i % 2) {
            memcpy(&v, &x, sizeof(v));
        } else {
            /* Decimal-looking values exercise the fixed-point path. */
            v = (double)(int64_t)(x % 100000000) / (double)(1 + (x >> 60) * 1000);
        }
        if (!isfinite(v))
            continue;
        const char *s = number(v);
        double back;
        if (json_scan(&d, s, strlen(s)) < 0 || json_get_number(&d, 0, &back) < 0 ||
            memcmp(&back, &v, sizeof(v)) != 0) {
            TAP_FAIL_("%.17g printed as %s", v, s);
            break;
        }
    }
    json_doc_free(&d);
}

/* buf_put_json_g17 is printf's %.17g, byte for byte: random bit patterns
 * (every exponent), decimal-looking values, powers of ten and their
 * neighbours, integers around 1e17, the exponent-form edges. */
TEST(g17_is_printf)
{
    struct buf b = BUF_INIT;
    char want[64];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    unsigned bad = 0;
    for (int i = 0; i < 700000 && bad < 5; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double v;
        switch (i % 7) {
        case 0: memcpy(&v, &x, sizeof(v)); break;
        case 1: v = (double)(int64_t)(x % 100000000) / (double)(1 + (x >> 60) * 1000); break;
        case 2: v = ldexp((double)(x >> 11), (int)(x % 120) - 100); break;
        case 3: v = pow(10, (int)(x % 44) - 22) * (1 + ((int)(x >> 40) % 3 - 1) * 2.220446049250313e-16); break;
        case 5: v = ldexp((double)(x >> 11), -53); break; /* [0, 1): the anomaly scores */
        default: v = 1e17 + (double)((int64_t)(x % 2001) - 1000) * 16; break;
        }
        if (x & (1ull << 33))
            v = -v;
        buf_reset(&b);
        CHECK_INT(buf_put_json_g17(&b, v), 0);
        if (isfinite(v))
            snprintf(want, sizeof(want), "%.17g", v);
        else
            strcpy(want, "null");
        if (strcmp(b.data, want) != 0) {
            TAP_FAIL_("%s printed as %s", want, b.data);
            bad++;
        }
    }
    const double edge[] = { 0.0, -0.0, 1.0, 0.1, 0.5, 1e-4, 9.9999999999999991e-05, 1e-5, 0.3, 2.0 / 3,
                            99999999999999984.0, 1e16 + 2, 4503599627370495.5, 0.99999999999999989, 1e17,
                            123456.789, NAN, INFINITY };
    for (size_t i = 0; i < ELEMENTSOF(edge); i++) {
        buf_reset(&b);
        CHECK_INT(buf_put_json_g17(&b, edge[i]), 0);
        if (isfinite(edge[i]))
            snprintf(want, sizeof(want), "%.17g", edge[i]);
        else
            strcpy(want, "null");
        CHECK_STR(b.data, want);
    }
    buf_free(&b);
}

TEST(values)
{
    struct buf b = BUF_INIT;
    struct rw_value v = RW_VALUE_STR("\x01\xff", 2);
    CHECK_INT(buf_put_json_value(&b, &v), 0);
    CHECK_STR(b.data, "\"\\u0001\xef\xbf\xbd\"");
    buf_reset(&b);
    v = RW_VALUE_MISSING;
    CHECK_INT(buf_put_json_value(&b, &v), 0);
    CHECK_STR(b.data, "null");
    buf_free(&b);
}

TAP_MAIN
