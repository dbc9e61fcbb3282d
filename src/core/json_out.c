/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/json_out.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Two decimal digits per lookup. */
static const char digit_pairs[200] = {
#define DP(t) t, '0', t, '1', t, '2', t, '3', t, '4', t, '5', t, '6', t, '7', t, '8', t, '9'
    DP('0'), DP('1'), DP('2'), DP('3'), DP('4'), DP('5'), DP('6'), DP('7'), DP('8'), DP('9'),
#undef DP
};

/* The decimal digits of v, ending at end; returns where they start. Two
 * digits a step (every line's amount and sub-sequence number). */
static char *put_u64(char *end, uint64_t v)
{
    while (v >= 100) {
        end -= 2;
        memcpy(end, digit_pairs + 2 * (v % 100), 2);
        v /= 100;
    }
    if (v >= 10) {
        end -= 2;
        memcpy(end, digit_pairs + 2 * v, 2);
    } else
        *--end = (char)('0' + v);
    return end;
}

int json_append_root_open(struct buf *out, const struct json_doc *d, bool *empty)
{
    const struct json_node *root = &d->nodes[0];
    *empty = json_first_child(d, 0) == JSON_NONE;
    return buf_append(out, d->text + root->start, root->end - 1 - root->start);
}

int buf_put_u64(struct buf *b, uint64_t v)
{
    char tmp[24], *end = tmp + sizeof(tmp), *p = put_u64(end, v);
    return buf_append(b, p, (size_t)(end - p));
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
            /* The k decimals (zero-padded), the point, then the integer
             * part ("0" at least), written from the end: no move. */
            uint64_t ip = m / (uint64_t)pow10[k], fp = m - ip * (uint64_t)pow10[k];
            p = put_u64(end, fp);
            while (end - p < k)
                *--p = '0';
            *--p = '.';
            p = put_u64(p, ip);
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

/* 10^k, k <= 21 (the multipliers g17 needs), as 128-bit integers. */
#define U128_E19 ((unsigned __int128)10000000000000000000ull)
static const unsigned __int128 pow10_u128[22] = {
    1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull, 100000000ull,
    1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull, 10000000000000ull,
    100000000000000ull, 1000000000000000ull, 10000000000000000ull, 100000000000000000ull,
    1000000000000000000ull, 10000000000000000000ull, U128_E19 * 10, U128_E19 * 100,
};

/* The 8 decimal digits of v < 10^8 into out[0..8). */
static inline void put8(char *out, uint32_t v)
{
    uint32_t hi = v / 10000, lo = v % 10000;
    memcpy(out, digit_pairs + 2 * (hi / 100), 2);
    memcpy(out + 2, digit_pairs + 2 * (hi % 100), 2);
    memcpy(out + 4, digit_pairs + 2 * (lo / 100), 2);
    memcpy(out + 6, digit_pairs + 2 * (lo % 100), 2);
}

/* "%.17g" of a finite x into out (at least 48 bytes: the digit runs are
 * copied in fixed 17-byte moves, which may write past the text's end); the
 * length, or -1 where the caller should ask printf. */
static int g17(double x, char *out)
{
    char *o = out;
    double ax = fabs(x);
    if (signbit(x))
        *o++ = '-';
    /* Integral (below 2^53 the int64 round trip says so without a call
     * to floor; from there to 1e17 every double is an integer). */
    if (ax < 1e17 && (ax >= 9007199254740992.0 || (double)(int64_t)ax == ax)) {
        /* At most 17 digits: %.17g prints the integer itself. */
        char t[24], *e = t + sizeof(t), *p = put_u64(e, (uint64_t)ax);
        memcpy(o, p, (size_t)(e - p));
        return (int)(o - out + (e - p));
    }
    if (!(ax >= 1e-4 && ax < 1e17))
        return -1;
    /* ax = m / 2^sh exactly; not an integer, so ax < 2^52 and sh >= 1, and
     * ax >= 1e-4 bounds sh by 66. */
    /* frexp and ldexp from the bits: ax >= 1e-4 is normal, so ax =
     * (2^52 + fraction) * 2^(exponent - 1075), i.e. f = m / 2^53 with
     * e2 = exponent - 1022. */
    uint64_t bits;
    memcpy(&bits, &ax, sizeof(bits));
    int e2 = (int)(bits >> 52) - 1022;
    uint64_t m = (bits & ((1ull << 52) - 1)) | (1ull << 52);
    int sh = 53 - e2;
    /* Seventeen significant digits: N = round(ax * 10^(16 - E)) in
     * [10^16, 10^17), rounded half to even on the exact value as glibc
     * does. m * 10^k < 2^53 * 10^21 < 2^123 fits; log10 gives E to within
     * one, corrected by the range check. */
    const uint64_t lo = 10000000000000000ull, hi = 100000000000000000ull;
    /* floor(log10(2^(e2-1))), i.e. E or E - 1 since 2^(e2-1) <= ax < 2^e2
     * (78913 / 2^18 is log10(2) to 6 digits, exact enough far beyond the
     * exponents here); a low guess costs one more round below. */
    int E = ((e2 - 1) * 78913) >> 18;
    uint64_t N = 0;
    for (int tries = 0;; tries++) {
        int k = 16 - E;
        if (tries == 3 || k < 0 || k > 21)
            return -1;
        unsigned __int128 num = (unsigned __int128)m * pow10_u128[k];
        unsigned __int128 q = num >> sh, rem = num & (((unsigned __int128)1 << sh) - 1);
        unsigned __int128 half = (unsigned __int128)1 << (sh - 1);
        if (q >= hi) {
            E++;
            continue;
        }
        if (q < lo) {
            E--;
            continue;
        }
        N = (uint64_t)q;
        if (rem > half || (rem == half && (N & 1)))
            N++;
        if (N == hi) {
            N = lo;
            E++;
        }
        break;
    }
    char dg[40]; /* 17 digits; the fixed-size moves below read past them */
    uint64_t top = N / 100000000;        /* 9 digits */
    put8(dg + 9, (uint32_t)(N % 100000000));
    put8(dg + 1, (uint32_t)(top % 100000000));
    dg[0] = (char)('0' + top / 100000000);
    int nd = 17;
    while (nd > 1 && dg[nd - 1] == '0')
        nd--; /* %g drops trailing zeros (and then a bare point) */
    /* The digit runs below are copied 16 or 17 bytes at a time (constant
     * sizes: inline moves, not calls) and the position advanced by what
     * belongs to the text. */
    if (E < -4 || E >= 17) {
        *o++ = dg[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, dg + 1, 16);
            o += nd - 1;
        }
        int ae = E < 0 ? -E : E;
        *o++ = 'e';
        *o++ = E < 0 ? '-' : '+';
        if (ae >= 100)
            *o++ = (char)('0' + ae / 100);
        *o++ = (char)('0' + ae / 10 % 10);
        *o++ = (char)('0' + ae % 10);
    } else if (E >= 0) {
        memcpy(o, dg, 17);
        o += E + 1;
        if (nd > E + 1) {
            /* The decimals, one place right for the point. */
            memcpy(o + 1, dg + E + 1, 16);
            *o++ = '.';
            o += nd - E - 1;
        }
    } else {
        *o++ = '0';
        *o++ = '.';
        memcpy(o, "0000", 4);
        o += -E - 1;
        memcpy(o, dg, 17);
        o += nd;
    }
    return (int)(o - out);
}

int buf_put_json_g17(struct buf *b, double x)
{
    if (!isfinite(x))
        return buf_append(b, "null", 4);
    /* Straight into the buffer (room for g17's fixed-size moves); printf
     * only for what g17 leaves to it. */
    int r = buf_reserve(b, 48);
    if (r < 0)
        return r;
    int n = g17(x, b->data + b->len);
    if (n >= 0) {
        b->len += (size_t)n;
        b->data[b->len] = 0;
        return 0;
    }
    char tmp[48];
    n = snprintf(tmp, sizeof(tmp), "%.17g", x);
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

/*
 * Splicing writes into space reserved once, up front, for the worst case
 * (see json_splice), so the per-byte helpers below need no capacity checks;
 * the per-call checks of buf_putc/buf_append cost more than the copying.
 */
static inline void w_putc(struct buf *b, char c) { b->data[b->len++] = c; }
static inline void w_mem(struct buf *b, const void *p, size_t n)
{
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static inline int w_string(struct buf *b, const char *s, size_t n)
{
    if (!buf_json_plain(s, n))
        return buf_put_json_string(b, s, n);
    w_putc(b, '"');
    w_mem(b, s, n);
    w_putc(b, '"');
    return 0;
}

static int w_value(struct buf *b, const struct rw_value *v)
{
    switch (v->type) {
    case RW_MISSING:
    case RW_NULL: w_mem(b, "null", 4); return 0;
    case RW_BOOL:
        if (v->b)
            w_mem(b, "true", 4);
        else
            w_mem(b, "false", 5);
        return 0;
    case RW_NUM: return buf_put_json_number(b, v->num);
    case RW_STR: return w_string(b, v->s.p, v->s.len);
    case RW_OBJECT:
    case RW_ARRAY: w_mem(b, v->s.p, v->s.len); return 0;
    }
    return -EINVAL;
}

static size_t value_bound(const struct rw_value *v)
{
    switch (v->type) {
    case RW_NUM: return 48;
    case RW_STR: return (size_t)v->s.len * 6 + 2;
    case RW_OBJECT:
    case RW_ARRAY: return v->s.len;
    default: return 5;
    }
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
    return a->keylen == b->keylen && mem_eq(a->key, b->key, a->keylen);
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
        if (!*first)                                                                     \
            w_putc(out, ',');                                                            \
        *first = false;                                                                  \
        if (key != JSON_NONE)                                                            \
            w_mem(out, d->text + d->nodes[key].start, d->nodes[key].end - d->nodes[key].start); \
        else if (st->plain) {                                                            \
            w_putc(out, '"');                                                            \
            w_mem(out, st->key, st->keylen);                                             \
            w_putc(out, '"');                                                            \
        } else if ((r = w_string(out, st->key, st->keylen)) < 0)                         \
            return r;                                                                    \
        w_putc(out, ':');                                                                \
    } while (0)

    if (last_term >= 0) {
        const struct json_edit *e = &c->edits[last_term];
        if (dup || e->remove || e->value.type == RW_MISSING)
            return 0;
        SEP_AND_KEY();
        return w_value(out, &e->value);
    }
    bool sets = group_sets(c, G, ng);
    uint32_t val = key != JSON_NONE ? key + 1 : JSON_NONE;
    if (dup || (!sets && (val == JSON_NONE || d->nodes[val].type != JSON_T_OBJECT))) {
        /* Nothing to create and nothing below to remove: keep as is. */
        if (val == JSON_NONE)
            return 0;
        if (!*first)
            w_putc(out, ',');
        *first = false;
        w_mem(out, d->text + d->nodes[key].start, d->nodes[val].end - d->nodes[key].start);
        return 0;
    }
    SEP_AND_KEY();
    if (val != JSON_NONE && d->nodes[val].type == JSON_T_OBJECT)
        return splice_obj(c, val, G, ng, lvl + 1);
    return splice_obj(c, JSON_NONE, G, ng, lvl + 1);
#undef SEP_AND_KEY
}

/* Is key node k (klen raw bytes, esc: has escapes) the name key[0..n)? */
static inline bool member_is(const struct json_doc *d, uint32_t k, size_t klen, bool esc, const char *key, size_t n)
{
    /* Decoding never lengthens a name, so a longer edit key cannot match
     * even an escaped one. */
    if (n > klen || (!esc && n != klen))
        return false;
    const char *kp = d->text + d->nodes[k].start + 1;
    return !esc ? mem_eq(kp, key, klen) : json_str_eq(d, k, key, n);
}

/* The bit of a name in the walks' filter: its length and first byte (the
 * closing quote for an empty name, so the byte after the opening quote of
 * a member name is always it). Of the bench's 11 members, 3 share a length
 * with an edit key, none also the first byte. */
static inline unsigned name_bit(size_t len, unsigned char first)
{
    return (unsigned)(len * 7 + first) & 63;
}

/* Is none of this level's edit keys a member of obj? One walk for all of
 * them, with the walk's tests in splice_obj: the length mask first, then
 * the names (escaped ones decoded). */
static bool none_present(const struct splice *c, uint32_t obj, const char *const *keys, const uint32_t *klens,
                         unsigned ne, uint64_t names)
{
    const struct json_doc *d = c->d;
    const struct json_node *nodes = d->nodes;
    uint32_t end = nodes[obj].next;
    for (uint32_t k = obj + 1; k < end; k = nodes[k + 1].next) {
        const struct json_node *kn = &nodes[k];
        size_t klen = kn->end - kn->start - 2;
        bool esc = kn->flags & JSON_F_ESCAPED;
        if (_likely_(!esc && !(names >> name_bit(klen, (unsigned char)d->text[kn->start + 1]) & 1)))
            continue;
        for (unsigned i = 0; i < ne; i++)
            if (member_is(d, k, klen, esc, keys[i], klens[i]))
                return false;
    }
    return true;
}

static int splice_obj(const struct splice *c, uint32_t obj, const uint8_t *E, unsigned ne, unsigned lvl)
{
    struct buf *out = c->out;
    const struct json_doc *d = c->d;
    const struct json_node *nodes = d->nodes;
    bool first = true;
    /* Bit i: edit E[i] found its member. */
    static_assert(JSON_SPLICE_MAX_EDITS <= 64, "matched is a 64-bit set");
    uint64_t matched = 0;
    uint8_t G[JSON_SPLICE_MAX_EDITS];
    /* This level's keys, gathered once instead of chased per member. */
    const char *keys[JSON_SPLICE_MAX_EDITS];
    uint32_t klens[JSON_SPLICE_MAX_EDITS];
    /* The edit keys' name_bit()s: most members match no edit, and this
     * rejects them without the inner loop. */
    uint64_t names = 0;
    int r;

    for (unsigned i = 0; i < ne; i++) {
        const struct json_step *st = edit_step(c, E[i], lvl);
        keys[i] = st->key;
        klens[i] = st->keylen;
        names |= UINT64_C(1) << name_bit(st->keylen, st->keylen ? (unsigned char)st->key[0] : '"');
    }
    w_putc(out, '{');
    if (obj != JSON_NONE && none_present(c, obj, keys, klens, ne, names)) {
        /* Every edit here is to a member the object does not have (the
         * common case: set a new field): the members are all one run, so
         * copy it whole instead of walking them. It starts at the first key
         * and, as only whitespace separates tokens, ends where the
         * whitespace before the closing brace starts, as the walk's run. */
        uint32_t k0 = json_first_child(d, obj);
        if (k0 != JSON_NONE) {
            const char *rs = d->text + nodes[k0].start, *re = d->text + nodes[obj].end - 1;
            while (re[-1] == ' ' || re[-1] == '\t' || re[-1] == '\n' || re[-1] == '\r')
                re--;
            w_mem(out, rs, (size_t)(re - rs));
            first = false;
        }
    } else if (obj != JSON_NONE) {
        uint32_t run_start = JSON_NONE, run_end = 0;
        uint32_t end = nodes[obj].next;
        for (uint32_t k = obj + 1; k < end; k = nodes[k + 1].next) {
            const struct json_node *kn = &nodes[k];
            size_t klen = kn->end - kn->start - 2;
            bool esc = kn->flags & JSON_F_ESCAPED;
            bool maybe = esc || (names >> name_bit(klen, (unsigned char)d->text[kn->start + 1]) & 1);
            if (_likely_(!maybe)) {
                /* No edit key has this length: part of the current run. */
                if (run_start == JSON_NONE)
                    run_start = kn->start;
                run_end = nodes[k + 1].end;
                continue;
            }
            unsigned ng = 0;
            bool dup = false;
            for (unsigned i = 0; i < ne && maybe; i++) {
                if (member_is(d, k, klen, esc, keys[i], klens[i])) {
                    G[ng++] = E[i];
                    dup |= matched >> i & 1;
                    matched |= UINT64_C(1) << i;
                }
            }
            if (_likely_(!ng)) {
                if (run_start == JSON_NONE)
                    run_start = kn->start;
                run_end = nodes[k + 1].end;
                continue;
            }
            if (run_start != JSON_NONE) {
                if (!first)
                    w_putc(out, ',');
                w_mem(out, d->text + run_start, run_end - run_start);
                first = false;
                run_start = JSON_NONE;
            }
            if ((r = emit_member(c, k, NULL, G, ng, lvl, &first, dup)) < 0)
                return r;
        }
        if (run_start != JSON_NONE) {
            if (!first)
                w_putc(out, ',');
            w_mem(out, d->text + run_start, run_end - run_start);
            first = false;
        }
    }
    /* Edits addressed to members that do not exist yet, grouped by key in
     * the order they were given. */
    for (unsigned i = 0; i < ne; i++) {
        if (matched >> i & 1)
            continue;
        const struct json_step *st = edit_step(c, E[i], lvl);
        unsigned ng = 1;
        G[0] = E[i];
        matched |= UINT64_C(1) << i;
        for (unsigned j = i + 1; j < ne; j++)
            if (!(matched >> j & 1) && same_key(st, edit_step(c, E[j], lvl))) {
                G[ng++] = E[j];
                matched |= UINT64_C(1) << j;
            }
        if ((r = emit_member(c, JSON_NONE, st, G, ng, lvl, &first, false)) < 0)
            return r;
    }
    w_putc(out, '}');
    return 0;
}

int json_splice(struct buf *out, const struct json_doc *d, const struct json_edit *edits, size_t n)
{
    if (!d->n || d->nodes[0].type != JSON_T_OBJECT || n > JSON_SPLICE_MAX_EDITS)
        return -EINVAL;
    uint8_t E[JSON_SPLICE_MAX_EDITS];
    /* The edits are checked, and the room the output can need is summed in
     * the same pass: it never exceeds the input record (runs, kept members
     * and rewritten keys are copies of it, and every comma written replaces
     * one dropped) plus, per edit, what it can create: per path step a
     * comma, the escaped key, a colon and a pair of braces, then the value. */
    size_t bound = d->nodes[0].end - d->nodes[0].start + 8;
    for (size_t i = 0; i < n; i++) {
        const struct json_path *p = edits[i].path;
        if (!p || p->n == 0 || p->n > JSON_MAX_DEPTH)
            return -EINVAL;
        for (uint32_t k = 0; k < p->n; k++) {
            if (p->steps[k].kind != JSON_STEP_KEY)
                return -EINVAL;
            bound += (size_t)p->steps[k].keylen * 6 + 6;
        }
        if (edits[i].value.type == RW_STR && edits[i].value.s.len > UINT32_MAX / 8)
            return -EINVAL;
        bound += value_bound(&edits[i].value);
        E[i] = (uint8_t)i;
    }
    size_t saved = out->len;
    int r = buf_reserve(out, bound);
    if (r < 0)
        return r;
    struct splice c = { out, d, edits };
    if (n == 0)
        w_mem(out, d->text + d->nodes[0].start, d->nodes[0].end - d->nodes[0].start);
    else
        r = splice_obj(&c, 0, E, (unsigned)n, 0);
    /* Past the bound, memory after the buffer is already overwritten; the
     * fuzz target runs with assertions to prove the bound. */
    assert(out->len - saved <= bound);
    if (r < 0)
        out->len = saved;
    out->data[out->len] = 0;
    return r;
}
