/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The record scanner against arbitrary bytes: it must never crash, read out
 * of bounds or hang; its verdict must match json-c's strict tokener where the
 * two implement the same rules; everything it indexes must decode; and
 * splicing edits into any accepted object must yield JSON that both parsers
 * accept and that reads back the edited values.
 */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/buf.h"
#include "rarewatch/json_out.h"
#include "rarewatch/json_scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct json_doc doc, doc2;
static struct arena arena;
static struct buf out;
static struct json_path *p_add, *p_nested, *p_deep;

static void setup(void)
{
    if (p_add)
        return;
    json_doc_init(&doc, &arena);
    json_doc_init(&doc2, NULL);
    if (json_path_compile("fz_added", &p_add) < 0 || json_path_compile("fz.nested.v", &p_nested) < 0 ||
        json_path_compile("fz.nested", &p_deep) < 0)
        abort();
}

/* Are the differences between us and json-c in this input ones we chose? */
static bool comparable(const uint8_t *data, size_t size)
{
    int depth = 0, maxdepth = 0;
    for (size_t i = 0; i < size; i++) {
        /* json-c stops at NUL; lone-surrogate escapes are a grammar question
         * json-c answers differently (we accept, RFC 8259 section 8.2). */
        if (data[i] == 0 || (data[i] == '\\' && i + 1 < size && data[i + 1] == 'u'))
            return false;
        /* json-c accepts raw control characters inside strings; RFC 8259
         * (and we) do not. They cannot be told apart from whitespace between
         * tokens without a tokenizer, so any control byte opts out. */
        if (data[i] < 0x20)
            return false;
        /* json-c's UTF-8 check is structural only: it lets overlongs,
         * encoded surrogates and > U+10FFFF through. Those need these
         * lead bytes. */
        if (data[i] == 0xC0 || data[i] == 0xC1 || data[i] == 0xE0 || data[i] == 0xED ||
            data[i] == 0xF0 || data[i] >= 0xF4)
            return false;
        /* json-c accepts "1." and "1.e5" even when strict. */
        if (data[i] == '.' && i > 0 && data[i - 1] >= '0' && data[i - 1] <= '9' &&
            (i + 1 == size || data[i + 1] < '0' || data[i + 1] > '9'))
            return false;
        /* json-c also takes some leading zeros ("05.5", "-01", "00"). */
        if (data[i] == '0' && i + 1 < size && data[i + 1] >= '0' && data[i + 1] <= '9' &&
            (i == 0 || !strchr("0123456789.eE+", data[i - 1])))
            return false;
        if (data[i] == '[' || data[i] == '{')
            maxdepth = MAX(maxdepth, ++depth);
        else if (data[i] == ']' || data[i] == '}')
            depth--;
    }
    /* json-c takes NaN, Infinity, "-.5" and single-quoted strings even
     * when strict. */
    if (memmem(data, size, "NaN", 3) || memmem(data, size, "Infinity", 8) ||
        memmem(data, size, "-.", 2) || memchr(data, '\'', size))
        return false;
    return maxdepth < 30; /* json-c's depth accounting differs near its limit */
}

static bool jsonc_accepts(const char *s, size_t n)
{
    struct json_tokener *tok = json_tokener_new_ex(64);
    if (!tok)
        abort();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    struct json_object *o = json_tokener_parse_ex(tok, s, (int)n);
    bool ok = json_tokener_get_error(tok) == json_tokener_success;
    if (ok) {
        /* Whitespace after the value is allowed, nothing else. */
        size_t end = json_tokener_get_parse_end(tok);
        for (; end < n; end++)
            if (!strchr(" \t\r\n", s[end]))
                ok = false;
    } else if (json_tokener_get_error(tok) == json_tokener_continue) {
        /* A bare number at the end of input is complete for us; json-c waits
         * for more. Feeding the terminator settles it. */
        json_object_put(o);
        o = json_tokener_parse_ex(tok, "", 1);
        ok = json_tokener_get_error(tok) == json_tokener_success;
    }
    json_object_put(o);
    json_tokener_free(tok);
    return ok;
}

static void check_tape(struct json_doc *d)
{
    for (uint32_t i = 0; i < d->n; i++) {
        const struct json_node *nd = &d->nodes[i];
        if (nd->start >= nd->end || nd->end > d->len || nd->next <= i || nd->next > d->n)
            abort();
        struct rw_value v;
        if (json_get_value(d, i, &v) < 0)
            abort();
        if (nd->type == JSON_T_STRING) {
            /* The decoded bytes must be valid UTF-8: re-encoding them must not
             * need any U+FFFD, so encode + rescan + decode is the identity. */
            struct buf b = BUF_INIT;
            if (buf_put_json_string(&b, v.s.p, v.s.len) < 0)
                abort();
            struct rw_str back;
            if (json_scan(&doc2, b.data, b.len) < 0 || json_get_string(&doc2, 0, &back) < 0 ||
                back.len != v.s.len || memcmp(back.p, v.s.p, v.s.len) != 0)
                abort();
            buf_free(&b);
        } else if (nd->type == JSON_T_NUMBER) {
            char tmp[512];
            size_t n = nd->end - nd->start;
            if (n < sizeof(tmp)) {
                memcpy(tmp, d->text + nd->start, n);
                tmp[n] = 0;
                double want = strtod(tmp, NULL);
                if (memcmp(&want, &v.num, sizeof(double)) != 0 && !(isnan(want) && isnan(v.num)))
                    abort();
            }
        }
    }
}

static void check_splice(struct json_doc *d, double x)
{
    if (d->nodes[0].type != JSON_T_OBJECT)
        return;
    /* Edit the first member too, by its decoded name. */
    struct json_path *first = NULL;
    uint32_t k = json_first_child(d, 0);
    if (k != JSON_NONE) {
        struct rw_str name;
        if (json_get_string(d, k, &name) < 0)
            abort();
        /* A name under fz* would be edited twice; that precedence is unit
         * tested, here it would only blur the read-back checks. */
        if (name.len >= 2 && memcmp(name.p, "fz", 2) == 0)
            goto edits;
        struct buf spec = BUF_INIT;
        if (buf_putc(&spec, '[') < 0 || buf_put_json_string(&spec, name.p, name.len) < 0 ||
            buf_putc(&spec, ']') < 0)
            abort();
        if (json_path_compile(spec.data, &first) < 0)
            abort();
        buf_free(&spec);
    }
edits:;
    struct json_edit ed[4];
    size_t n = 0;
    ed[n++] = JSON_EDIT_SET(p_add, RW_VALUE_NUM(x));
    ed[n++] = JSON_EDIT_SET(p_nested, RW_VALUE_STR("v\"\xff", 3));
    if (first)
        ed[n++] = (x > 0) ? JSON_EDIT_REMOVE(first) : JSON_EDIT_SET(first, RW_VALUE_BOOL(true));
    buf_reset(&out);
    if (json_splice(&out, d, ed, n) < 0)
        abort();
    if (json_scan(&doc2, out.data, out.len) < 0 || !jsonc_accepts(out.data, out.len))
        abort();
    struct rw_value v;
    if (json_lookup(&doc2, p_add, &v) < 0 || v.type != (isfinite(x) ? RW_NUM : RW_NULL))
        abort();
    if (isfinite(x) && memcmp(&v.num, &x, sizeof(x)) != 0 && !(x == 0 && v.num == 0))
        abort();
    if (json_lookup(&doc2, p_nested, &v) < 0 || v.type != RW_STR || v.s.len != 5 ||
        memcmp(v.s.p, "v\"\xef\xbf\xbd", 5) != 0)
        abort();
    if (first) {
        if (json_lookup(&doc2, first, &v) < 0)
            abort();
        if (x > 0 ? v.type != RW_MISSING : (v.type != RW_BOOL || !v.b))
            abort();
    }
    json_path_free(first);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    /* An exact-size heap copy plus the required '\0', so ASan sees any read
     * past it. */
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = 0;

    int r = json_scan(&doc, s, size);
    if (r != 0 && r != -EINVAL)
        abort();
    if (comparable(data, size) && (r == 0) != jsonc_accepts(s, size)) {
        fprintf(stderr, "verdict differs: ours %d (%s at %zu)\n", r, doc.err_msg ? doc.err_msg : "",
                doc.err_off);
        abort();
    }
    if (r == 0) {
        check_tape(&doc);
        double x;
        uint64_t bits = 0;
        memcpy(&bits, data, MIN(size, sizeof(bits)));
        memcpy(&x, &bits, sizeof(x));
        check_splice(&doc, x);
    }
    /* The input as a path spec: must compile or be refused, never crash. */
    struct json_path *p = NULL;
    if (json_path_compile(s, &p) == 0) {
        struct rw_value v;
        if (r == 0 && json_lookup(&doc, p, &v) < 0)
            abort();
    }
    json_path_free(p);
    arena_reset(&arena);
    free(s);
    return 0;
}
