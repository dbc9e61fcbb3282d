/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The expression language against arbitrary text: the compiler reads config
 * values an operator typed (check-config must report, never crash), and the
 * evaluator runs compiled expressions on hostile records at line rate.
 *
 * Input: the expression, then a newline, then a JSON record. The expression
 * is compiled; a rejected one must come with an error offset inside it (the
 * column check-config prints). An accepted one is evaluated against the
 * record, twice, and must give the same answer both times: evaluation keeps
 * no state between records, and a difference would mean it read memory the
 * first run left behind in the scratch arena.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/buf.h"
#include "rarewatch/expr.h"
#include "rarewatch/json_scan.h"
#include "rarewatch/value.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct json_doc doc;
static struct arena doc_arena, scratch;
static void *md;

static bool same(const struct rw_value *a, const struct rw_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case RW_NUM: return (isnan(a->num) && isnan(b->num)) || a->num == b->num;
    case RW_BOOL: return a->b == b->b;
    case RW_STR: return a->s.len == b->s.len && (a->s.len == 0 || memcmp(a->s.p, b->s.p, a->s.len) == 0);
    default: return true;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!md) {
        json_doc_init(&doc, &doc_arena);
        md = expr_match_data_new();
        if (!md)
            abort();
    }
    const uint8_t *nl = memchr(data, '\n', size);
    size_t elen = nl ? (size_t)(nl - data) : size;
    /* The config parser hands over NUL-terminated values; a NUL inside one
     * cannot reach the compiler. */
    if (memchr(data, 0, elen))
        return 0;
    char *src = malloc(elen + 1);
    if (!src)
        return 0;
    memcpy(src, data, elen);
    src[elen] = 0;

    struct expr *e = NULL;
    char msg[256];
    size_t off = (size_t)-1;
    int r = expr_compile(src, &e, &off, msg, sizeof(msg));
    if (r < 0) {
        /* The column must point into the value (or just past its end). */
        if (off > elen || !msg[0])
            abort();
        free(src);
        return 0;
    }

    size_t jlen = nl ? size - elen - 1 : 0;
    char *json = malloc(jlen + 1);
    if (!json)
        abort();
    if (jlen)
        memcpy(json, nl + 1, jlen);
    json[jlen] = 0;
    if (json_scan(&doc, json, jlen) >= 0) {
        struct rw_value v1, v2;
        struct expr_env env = { .doc = &doc, .scratch = &scratch, .event_time = 1700000000.5,
                                .arrival_time = 1700000001.25, .match_data = md };
        int r1 = expr_eval(e, &env, &v1);
        /* Keep the first result's strings alive: only reset after comparing. */
        int r2 = expr_eval(e, &env, &v2);
        /* now() is the one input that changes between the two runs. */
        if (!strstr(src, "now") && (r1 != r2 || (r1 == 0 && !same(&v1, &v2))))
            abort();
        (void)expr_test(e, &env);
        arena_reset(&scratch);
    }
    free(json);
    expr_free(e);
    free(src);
    return 0;
}
