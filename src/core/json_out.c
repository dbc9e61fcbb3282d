/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/json_out.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static char *put_u64(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

int buf_put_json_number(struct buf *b, double x)
{
    static const double pow10[] = { 1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,
                                    1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17 };
    const double two53 = 9007199254740992.0;
    if (!isfinite(x))
        return buf_append(b, "null", 4);
    int r = buf_reserve(b, 40);
    if (r < 0)
        return r;
    char tmp[48], *end = tmp + sizeof(tmp), *p;
    bool neg = signbit(x);
    double ax = fabs(x);
    if (ax < two53 && ax == (double)(uint64_t)ax) {
        p = put_u64(end, (uint64_t)ax);
        if (neg)
            *--p = '-';
        return buf_append(b, p, (size_t)(end - p));
    }
    /* Find the fewest decimals k such that the integer m = round(x * 10^k)
     * gives back exactly x as m / 10^k. With m < 2^53 and 10^k exact, that
     * division is one correctly rounded IEEE operation, i.e. exactly what a
     * correct parser computes for the printed text, so the round trip is
     * guaranteed, and it costs a few multiplies instead of snprintf's
     * ~200 ns. */
    if (ax >= 1e-5) {
        for (int k = 1; k <= 17; k++) {
            double sc = ax * pow10[k];
            if (sc >= two53)
                break;
            uint64_t m = (uint64_t)(sc + 0.5);
            if ((double)m / pow10[k] != ax)
                continue;
            p = put_u64(end, m);
            /* Pad so there is a digit before the point. */
            while (end - p <= k)
                *--p = '0';
            char *dot = end - k;
            memmove(p - 1, p, (size_t)(dot - p));
            p--;
            dot[-1] = '.';
            if (neg)
                *--p = '-';
            return buf_append(b, p, (size_t)(end - p));
        }
    }
    int n = snprintf(tmp, sizeof(tmp), "%.17g", x);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -EINVAL;
    /* printf follows LC_NUMERIC; JSON needs '.' whatever the locale. */
    for (char *c = tmp; *c; c++)
        if (*c == ',')
            *c = '.';
    return buf_append(b, tmp, (size_t)n);
}

int buf_put_json_value(struct buf *b, const struct rw_value *v)
{
    switch (v->type) {
    case RW_MISSING:
    case RW_NULL: return buf_append(b, "null", 4);
    case RW_BOOL: return v->b ? buf_append(b, "true", 4) : buf_append(b, "false", 5);
    case RW_NUM: return buf_put_json_number(b, v->num);
    case RW_STR: return buf_put_json_string(b, v->s.p, v->s.len);
    case RW_OBJECT:
    case RW_ARRAY: return buf_append(b, v->s.p, v->s.len);
    }
    return -EINVAL;
}

struct splice {
    struct buf *out;
    const struct json_doc *d;
    const struct json_edit *edits;
};

static inline bool edit_terminal(const struct splice *c, unsigned j, unsigned lvl)
{
    return c->edits[j].path->n == lvl + 1;
}

static inline const struct json_step *edit_step(const struct splice *c, unsigned j, unsigned lvl)
{
    return &c->edits[j].path->steps[lvl];
}

static inline bool same_key(const struct json_step *a, const struct json_step *b)
{
    return a->keylen == b->keylen && memcmp(a->key, b->key, a->keylen) == 0;
}

/* Does any edit in E (those whose step lvl is the same key) create anything? */
static bool group_sets(const struct splice *c, const uint8_t *E, unsigned ne)
{
    for (unsigned i = 0; i < ne; i++)
        if (!c->edits[E[i]].remove && c->edits[E[i]].value.type != RW_MISSING)
            return true;
    return false;
}

static int splice_obj(const struct splice *c, uint32_t obj, const uint8_t *E, unsigned ne, unsigned lvl);

/* Write one member whose key is either an existing key node (key != JSON_NONE)
 * or the step key; G are the edits addressed to it. *first tracks commas.
 * dup: this existing member repeats a key already handled. */
static int emit_member(const struct splice *c, uint32_t key, const struct json_step *st,
                       const uint8_t *G, unsigned ng, unsigned lvl, bool *first, bool dup)
{
    struct buf *out = c->out;
    const struct json_doc *d = c->d;
    int r;
    int last_term = -1;
    for (unsigned i = 0; i < ng; i++)
        if (edit_terminal(c, G[i], lvl))
            last_term = G[i];

#define SEP_AND_KEY()                                                                    \
    do {                                                                                 \
        if (!*first && (r = buf_putc(out, ',')) < 0)                                     \
            return r;                                                                    \
        *first = false;                                                                  \
        if (key != JSON_NONE)                                                            \
            r = buf_append(out, d->text + d->nodes[key].start,                           \
                           d->nodes[key].end - d->nodes[key].start);                      \
        else                                                                             \
            r = buf_put_json_string(out, st->key, st->keylen);                           \
        if (r < 0 || (r = buf_putc(out, ':')) < 0)                                       \
            return r;                                                                    \
    } while (0)

    if (last_term >= 0) {
        const struct json_edit *e = &c->edits[last_term];
        if (dup || e->remove || e->value.type == RW_MISSING)
            return 0;
        SEP_AND_KEY();
        return buf_put_json_value(out, &e->value);
    }
    bool sets = group_sets(c, G, ng);
    uint32_t val = key != JSON_NONE ? key + 1 : JSON_NONE;
    if (dup || (!sets && (val == JSON_NONE || d->nodes[val].type != JSON_T_OBJECT))) {
        /* Nothing to create and nothing below to remove: keep as is. */
        if (val == JSON_NONE)
            return 0;
        if (!*first && (r = buf_putc(out, ',')) < 0)
            return r;
        *first = false;
        return buf_append(out, d->text + d->nodes[key].start, d->nodes[val].end - d->nodes[key].start);
    }
    SEP_AND_KEY();
    if (val != JSON_NONE && d->nodes[val].type == JSON_T_OBJECT)
        return splice_obj(c, val, G, ng, lvl + 1);
    return splice_obj(c, JSON_NONE, G, ng, lvl + 1);
#undef SEP_AND_KEY
}

static int splice_obj(const struct splice *c, uint32_t obj, const uint8_t *E, unsigned ne, unsigned lvl)
{
    struct buf *out = c->out;
    const struct json_doc *d = c->d;
    const struct json_node *nodes = d->nodes;
    bool first = true;
    uint8_t matched[JSON_SPLICE_MAX_EDITS] = { 0 };
    uint8_t G[JSON_SPLICE_MAX_EDITS];
    int r;

    if ((r = buf_putc(out, '{')) < 0)
        return r;
    if (obj != JSON_NONE) {
        uint32_t run_start = JSON_NONE, run_end = 0;
        uint32_t end = nodes[obj].next;
        for (uint32_t k = obj + 1; k < end; k = nodes[k + 1].next) {
            unsigned ng = 0;
            const struct json_node *kn = &nodes[k];
            size_t klen = kn->end - kn->start - 2;
            bool dup = false;
            for (unsigned i = 0; i < ne; i++) {
                const struct json_step *st = edit_step(c, E[i], lvl);
                if (st->keylen > klen)
                    continue;
                if (!(kn->flags & JSON_F_ESCAPED)
                        ? st->keylen == klen && memcmp(d->text + kn->start + 1, st->key, klen) == 0
                        : json_str_eq(d, k, st->key, st->keylen)) {
                    G[ng++] = E[i];
                    dup |= matched[i];
                    matched[i] = 1;
                }
            }
            if (!ng) {
                if (run_start == JSON_NONE)
                    run_start = kn->start;
                run_end = nodes[k + 1].end;
                continue;
            }
            if (run_start != JSON_NONE) {
                if (!first && (r = buf_putc(out, ',')) < 0)
                    return r;
                if ((r = buf_append(out, d->text + run_start, run_end - run_start)) < 0)
                    return r;
                first = false;
                run_start = JSON_NONE;
            }
            if ((r = emit_member(c, k, NULL, G, ng, lvl, &first, dup)) < 0)
                return r;
        }
        if (run_start != JSON_NONE) {
            if (!first && (r = buf_putc(out, ',')) < 0)
                return r;
            if ((r = buf_append(out, d->text + run_start, run_end - run_start)) < 0)
                return r;
            first = false;
        }
    }
    /* Edits addressed to members that do not exist yet, grouped by key in
     * the order they were given. */
    for (unsigned i = 0; i < ne; i++) {
        if (matched[i])
            continue;
        const struct json_step *st = edit_step(c, E[i], lvl);
        unsigned ng = 0;
        for (unsigned j = i; j < ne; j++)
            if (!matched[j] && same_key(st, edit_step(c, E[j], lvl))) {
                G[ng++] = E[j];
                matched[j] = 1;
            }
        if ((r = emit_member(c, JSON_NONE, st, G, ng, lvl, &first, false)) < 0)
            return r;
    }
    return buf_putc(out, '}');
}

int json_splice(struct buf *out, const struct json_doc *d, const struct json_edit *edits, size_t n)
{
    if (!d->n || d->nodes[0].type != JSON_T_OBJECT || n > JSON_SPLICE_MAX_EDITS)
        return -EINVAL;
    uint8_t E[JSON_SPLICE_MAX_EDITS];
    for (size_t i = 0; i < n; i++) {
        const struct json_path *p = edits[i].path;
        if (!p || p->n == 0 || p->n > JSON_MAX_DEPTH)
            return -EINVAL;
        for (uint32_t k = 0; k < p->n; k++)
            if (p->steps[k].kind != JSON_STEP_KEY)
                return -EINVAL;
        E[i] = (uint8_t)i;
    }
    size_t saved = out->len;
    struct splice c = { out, d, edits };
    int r;
    if (n == 0)
        r = buf_append(out, d->text + d->nodes[0].start, d->nodes[0].end - d->nodes[0].start);
    else
        r = splice_obj(&c, 0, E, (unsigned)n, 0);
    if (r < 0) {
        out->len = saved;
        if (out->data)
            out->data[saved] = 0;
    }
    return r;
}
