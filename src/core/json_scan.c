/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Why a hand-written scanner instead of json-c on the record path: the daemon
 * must sustain >= 1M records/s per core end to end, i.e. < 1 us per record for
 * everything. json-c builds a heap DOM (one malloc per value plus a hash table
 * per object) and measured here ~3 us to parse a 300-byte payload and ~2 us
 * per record to parse a GetRecords envelope - several times the whole budget.
 * This scanner validates in one pass without allocating per value, writes a
 * flat 16-byte-per-value tape into a reused array, and defers all decoding
 * (escapes, numbers) to the few fields a pipeline actually reads.
 *
 * Measured with tests/bench/bench_json.c (release build, same inputs for
 * both, 2-vCPU VM shared with other builds, so absolute numbers are noisy
 * while the ratios held across runs): a 326-byte card transaction scanned
 * plus 3 lookups 350-410 ns vs json-c 4.5-5.2 us (12.5-13.9x; the scan alone
 * ~240 ns, the 3 lookups ~80 ns); a 10,000-record GetRecords envelope with
 * base64 decode 270-420 ns/record vs 2.4-4.5 us (7.4-10.9x); scan + splice
 * of 3 added fields 540-710 ns vs 7.3-14.7 us (10-27x).
 *
 * The text is required to be followed by a '\0' (see json_scan.h): that byte
 * is not whitespace, not a digit, not a valid value start and not allowed in
 * a string, so every loop stops on it without a separate bounds check. The
 * only loads that look further ahead are 16-byte SIMD loads, which are taken
 * only while 16 bytes remain before the end.
 */
#include "rarewatch/json_scan.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Character classes. */
#define C_STR 0x02    /* ends the fast part of a string: '"', '\\', < 0x20, >= 0x80 */
#define C_DIGIT 0x04
#define C_ESC 0x08    /* valid single-char escape after a backslash */

static const uint8_t cclass[256] = {
    /* 0x00..0x1f: control characters stop a string scan (whitespace: json_skip_ws) */
    [0x00] = C_STR, [0x01] = C_STR, [0x02] = C_STR, [0x03] = C_STR, [0x04] = C_STR,
    [0x05] = C_STR, [0x06] = C_STR, [0x07] = C_STR, [0x08] = C_STR, [0x09] = C_STR,
    [0x0a] = C_STR, [0x0b] = C_STR, [0x0c] = C_STR, [0x0d] = C_STR,
    [0x0e] = C_STR, [0x0f] = C_STR, [0x10] = C_STR, [0x11] = C_STR, [0x12] = C_STR,
    [0x13] = C_STR, [0x14] = C_STR, [0x15] = C_STR, [0x16] = C_STR, [0x17] = C_STR,
    [0x18] = C_STR, [0x19] = C_STR, [0x1a] = C_STR, [0x1b] = C_STR, [0x1c] = C_STR,
    [0x1d] = C_STR, [0x1e] = C_STR, [0x1f] = C_STR,
    ['"'] = C_STR | C_ESC, ['\\'] = C_STR | C_ESC, ['/'] = C_ESC,
    ['b'] = C_ESC, ['f'] = C_ESC, ['n'] = C_ESC, ['r'] = C_ESC, ['t'] = C_ESC,
    ['0'] = C_DIGIT, ['1'] = C_DIGIT, ['2'] = C_DIGIT, ['3'] = C_DIGIT, ['4'] = C_DIGIT,
    ['5'] = C_DIGIT, ['6'] = C_DIGIT, ['7'] = C_DIGIT, ['8'] = C_DIGIT, ['9'] = C_DIGIT,
#define R16(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
    [0x80] = R16(C_STR), R16(C_STR), R16(C_STR), R16(C_STR),
    R16(C_STR), R16(C_STR), R16(C_STR), R16(C_STR),
#undef R16
};

static inline bool is_digit(char c) { return cclass[(uint8_t)c] & C_DIGIT; }

static inline int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Code unit of the four hex digits at p, or -1. Stops at the first non-hex
 * byte, so the sentinel '\0' keeps it inside the text. */
static inline int32_t hex4(const char *p)
{
    int32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = (v << 4) | h;
    }
    return v;
}

/* Length of the well-formed UTF-8 sequence at p (first byte >= 0x80), or 0.
 * Follows the Unicode "well-formed byte sequences" table, so overlongs,
 * encoded surrogates and code points past U+10FFFF are rejected. A '\0'
 * (the sentinel) is never a continuation byte, so this never reads past it. */
static inline size_t utf8_seq_len(const unsigned char *p)
{
    unsigned char c = p[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

#if defined(__SSE2__) && defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SCAN_AVX2 1
/* The long strings of the record path (base64 Data of every Kinesis record,
 * ~400 characters; free-text fields) at 64 bytes a step instead of 16. Only
 * taken once a string has gone 16 bytes without a special byte, so short
 * strings never pay the call; the CPU is asked per call (a load and a test
 * of what libgcc detected at startup). Returns the first '"', '\\', control
 * or non-ASCII byte, or where fewer than 32 bytes are left. */
__attribute__((target("avx2"))) static const char *skip_plain_avx2(const char *p, const char *end)
{
    const __m256i quote = _mm256_set1_epi8('"'), bslash = _mm256_set1_epi8('\\');
    const __m256i space = _mm256_set1_epi8(0x20);
#define SPECIAL(v) \
    _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi8(v, quote), _mm256_cmpeq_epi8(v, bslash)), \
                    _mm256_cmpgt_epi8(space, v))
    while (end - p >= 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)p);
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(p + 32));
        __m256i ma = SPECIAL(a), mb = SPECIAL(b);
        if (!_mm256_testz_si256(_mm256_or_si256(ma, mb), _mm256_or_si256(ma, mb))) {
            uint64_t mask = (uint32_t)_mm256_movemask_epi8(ma) | (uint64_t)(uint32_t)_mm256_movemask_epi8(mb) << 32;
            return p + __builtin_ctzll(mask);
        }
        p += 64;
    }
    while (end - p >= 32) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)p);
        unsigned mask = (unsigned)_mm256_movemask_epi8(SPECIAL(a));
        if (mask)
            return p + __builtin_ctz(mask);
        p += 32;
    }
#undef SPECIAL
    return p;
}
#endif

#ifdef SCAN_AVX2
/* skip_plain_avx2 with AVX-512 (BW): one load and three compares into mask
 * registers per 64 bytes, about half the instructions, where the CPU has
 * it (the base64 Data of every Kinesis record goes through here). */
__attribute__((target("avx2,avx512f,avx512bw"))) static const char *skip_plain_avx512(const char *p, const char *end)
{
    const __m512i quote = _mm512_set1_epi8('"'), bslash = _mm512_set1_epi8('\\');
    const __m512i space = _mm512_set1_epi8(0x20);
    while (end - p >= 64) {
        __m512i v = _mm512_loadu_si512((const void *)p);
        /* Signed: below 0x20 or >= 0x80. */
        __mmask64 m = _mm512_cmpeq_epi8_mask(v, quote) | _mm512_cmpeq_epi8_mask(v, bslash) |
                      _mm512_cmplt_epi8_mask(v, space);
        if (m) {
            _mm256_zeroupper();
            return p + __builtin_ctzll(m);
        }
        p += 64;
    }
    _mm256_zeroupper();
    return p;
}

/* Only where VBMI is there too, i.e. Ice Lake and later: on the first
 * AVX-512 Xeons (Skylake-SP) 512-bit instructions lower the core's clock
 * for a while, which would cost the rest of the record path more than
 * this saves. */
static bool have_avx512bw;
__attribute__((constructor)) static void detect_avx512bw(void)
{
    __builtin_cpu_init();
    have_avx512bw = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512vbmi");
}
#endif

/* p is just after the opening quote. Returns the closing quote, or NULL with
 * *err set and *where at the offending byte. */
static inline __attribute__((always_inline)) const char *
scan_string(const char *p, const char *end, uint8_t *flags, const char **err,
                               const char **where)
{
    for (;;) {
#ifdef __SSE2__
        const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
        const __m128i space = _mm_set1_epi8(0x20);
        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
            /* Signed compare: bytes >= 0x80 are negative, so one compare
             * catches both control characters and non-ASCII. */
            __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                                     _mm_cmplt_epi8(v, space));
            unsigned mask = (unsigned)_mm_movemask_epi8(m);
            if (mask) {
                p += __builtin_ctz(mask);
                goto special;
            }
            p += 16;
#ifdef SCAN_AVX2
            if (end - p >= 64 && __builtin_cpu_supports("avx2"))
                p = have_avx512bw ? skip_plain_avx512(p, end) : skip_plain_avx2(p, end);
#endif
        }
#endif
        while (!(cclass[(uint8_t)*p] & C_STR))
            p++;
#ifdef __SSE2__
    special:
#endif
        ;
        unsigned char c = (unsigned char)*p;
        if (_likely_(c == '"'))
            return p;
        if (c == '\\') {
            *flags |= JSON_F_ESCAPED;
            char e = p[1];
            if (e == 'u') {
                if (hex4(p + 2) < 0) {
                    *err = "invalid \\u escape";
                    *where = p;
                    return NULL;
                }
                p += 6;
            } else if (cclass[(uint8_t)e] & C_ESC) {
                p += 2;
            } else {
                *err = "invalid escape";
                *where = p;
                return NULL;
            }
            continue;
        }
        if (c >= 0x80) {
            *flags |= JSON_F_NONASCII;
            size_t n = utf8_seq_len((const unsigned char *)p);
            if (!n) {
                *err = "invalid UTF-8 in string";
                *where = p;
                return NULL;
            }
            p += n;
            continue;
        }
        *err = p >= end ? "unterminated string" : "unescaped control character in string";
        *where = p;
        return NULL;
    }
}

/* The number token at p (a '-' or a digit): the position after it, or NULL
 * with *where at the offending byte. *flags gets JSON_F_FLOAT for a
 * fraction or an exponent. Reads up to the first byte that cannot continue
 * it (the text's terminating NUL at the latest). */
static inline __attribute__((always_inline)) const char *scan_number(const char *p, uint8_t *flags,
                                                                     const char **where)
{
    const char *q = p;
    if (*q == '-')
        q++;
    if (*q == '0')
        q++;
    else if (*q >= '1' && *q <= '9') {
        do
            q++;
        while (is_digit(*q));
    } else {
        *where = q;
        return NULL;
    }
    if (*q == '.') {
        q++;
        if (!is_digit(*q)) {
            *where = q;
            return NULL;
        }
        do
            q++;
        while (is_digit(*q));
        *flags = JSON_F_FLOAT;
    }
    if ((*q | 0x20) == 'e') {
        q++;
        if (*q == '+' || *q == '-')
            q++;
        if (!is_digit(*q)) {
            *where = q;
            return NULL;
        }
        do
            q++;
        while (is_digit(*q));
        *flags = JSON_F_FLOAT;
    }
    return q;
}

const char *json_scan_string_token(const char *p, const char *end, uint8_t *flags)
{
    const char *err, *where;
    const char *q = scan_string(p + 1, end, flags, &err, &where);
    return q ? q + 1 : NULL;
}

const char *json_scan_number_token(const char *p, uint8_t *flags)
{
    const char *where;
    return scan_number(p, flags, &where);
}

void json_doc_init(struct json_doc *d, struct arena *arena)
{
    *d = (struct json_doc){ 0 };
    d->own_arena = (struct arena)ARENA_INIT;
    if (arena)
        d->arena = arena;
    else {
        d->arena = &d->own_arena;
        d->owns_arena = true;
    }
}

void json_doc_free(struct json_doc *d)
{
    free(d->nodes);
    arena_free(&d->own_arena);
    d->nodes = NULL;
    d->n = d->cap = 0;
}

static int grow(struct json_doc *d)
{
    uint32_t cap = d->cap ? d->cap : 64;
    if (cap > UINT32_MAX / 4)
        return -ENOMEM;
    cap *= 2;
    struct json_node *n = realloc(d->nodes, (size_t)cap * sizeof(*n));
    if (!n)
        return -ENOMEM;
    d->nodes = n;
    d->cap = cap;
    return 0;
}

int json_scan(struct json_doc *d, const char *text, size_t len)
{
    if (len >= UINT32_MAX)
        return -E2BIG;
    d->text = text;
    d->len = len;
    d->n = 0;
    d->err_msg = NULL;
    d->err_off = 0;
    d->overlay = NULL;
    if (d->owns_arena)
        arena_reset(&d->own_arena);
    if (!d->cap && grow(d) < 0)
        return -ENOMEM;

    const char *const s = text, *const end = text + len;
    const char *p = s;
    const char *err = NULL;
    uint32_t stack[JSON_MAX_DEPTH];
    unsigned depth = 0;
    bool in_obj = false; /* the innermost open container is an object */
    struct json_node *nodes = d->nodes;
    uint32_t n = 0, cap = d->cap;
    uint32_t idx;
    uint8_t flags;

/* Start a node at p; leaves its index in idx. */
#define PUSH(t, fl)                                   \
    do {                                              \
        if (_unlikely_(n == cap)) {                   \
            d->n = n;                                 \
            if (grow(d) < 0)                          \
                return -ENOMEM;                       \
            nodes = d->nodes;                         \
            cap = d->cap;                             \
        }                                             \
        idx = n++;                                    \
        nodes[idx] = (struct json_node){              \
            .start = (uint32_t)(p - s),               \
            .next = n,                                \
            .type = (t),                              \
            .flags = (fl),                            \
        };                                            \
    } while (0)
#define FAIL(msg)      \
    do {               \
        err = (msg);   \
        goto fail;     \
    } while (0)

value:
    p = json_skip_ws(p);
    switch (*p) {
    case '{':
        if (_unlikely_(depth == JSON_MAX_DEPTH))
            FAIL("nesting too deep");
        PUSH(JSON_T_OBJECT, 0);
        stack[depth++] = idx;
        in_obj = true;
        p = json_skip_ws(p + 1);
        if (*p == '}')
            goto close;
        goto key;
    case '[':
        if (_unlikely_(depth == JSON_MAX_DEPTH))
            FAIL("nesting too deep");
        PUSH(JSON_T_ARRAY, 0);
        stack[depth++] = idx;
        in_obj = false;
        p = json_skip_ws(p + 1);
        if (*p == ']')
            goto close;
        goto value;
    case '"': {
        flags = 0;
        const char *q = scan_string(p + 1, end, &flags, &err, &p);
        if (!q)
            goto fail;
        PUSH(JSON_T_STRING, flags);
        p = q + 1;
        nodes[idx].end = (uint32_t)(p - s);
        goto after;
    }
    case 't':
        if (p[1] != 'r' || p[2] != 'u' || p[3] != 'e')
            FAIL("invalid literal");
        PUSH(JSON_T_TRUE, 0);
        p += 4;
        nodes[idx].end = (uint32_t)(p - s);
        goto after;
    case 'f':
        if (p[1] != 'a' || p[2] != 'l' || p[3] != 's' || p[4] != 'e')
            FAIL("invalid literal");
        PUSH(JSON_T_FALSE, 0);
        p += 5;
        nodes[idx].end = (uint32_t)(p - s);
        goto after;
    case 'n':
        if (p[1] != 'u' || p[2] != 'l' || p[3] != 'l')
            FAIL("invalid literal");
        PUSH(JSON_T_NULL, 0);
        p += 4;
        nodes[idx].end = (uint32_t)(p - s);
        goto after;
    case '-':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9': {
        flags = 0;
        const char *q = scan_number(p, &flags, &p);
        if (!q)
            FAIL("invalid number");
        PUSH(JSON_T_NUMBER, flags);
        p = q;
        nodes[idx].end = (uint32_t)(p - s);
        goto after;
    }
    default:
        FAIL(p >= end ? "unexpected end of input" : "expected a value");
    }

key:
    if (_unlikely_(*p != '"'))
        FAIL(p >= end ? "unexpected end of input" : "expected a member name");
    {
        flags = JSON_F_KEY;
        const char *q = scan_string(p + 1, end, &flags, &err, &p);
        if (!q)
            goto fail;
        PUSH(JSON_T_STRING, flags);
        p = q + 1;
        nodes[idx].end = (uint32_t)(p - s);
    }
    p = json_skip_ws(p);
    if (_unlikely_(*p != ':'))
        FAIL("expected ':'");
    p++;
    goto value;

after:
    if (_unlikely_(depth == 0)) {
        p = json_skip_ws(p);
        if (p != end)
            FAIL("trailing characters after the document");
        d->n = n;
        return 0;
    }
    p = json_skip_ws(p);
    if (*p == ',') {
        p = json_skip_ws(p + 1);
        if (in_obj)
            goto key;
        goto value;
    }
    if (*p == (in_obj ? '}' : ']'))
        goto close;
    FAIL(p >= end ? "unexpected end of input" : "expected ',' or a closing bracket");

close:
    /* p is at the closing bracket of the innermost open container (the
     * callers checked which bracket it is). */
    depth--;
    p++;
    nodes[stack[depth]].end = (uint32_t)(p - s);
    nodes[stack[depth]].next = n;
    if (depth)
        in_obj = nodes[stack[depth - 1]].type == JSON_T_OBJECT;
    goto after;

fail:
    d->err_msg = err;
    d->err_off = (size_t)(p - s);
    d->n = 0;
    return -EINVAL;
#undef PUSH
#undef FAIL
}

/* Decode the escape at p (p[0] == '\\', already validated) into out (up to 4
 * bytes); returns the position after it. Lone surrogates become U+FFFD. */
static const char *decode_escape(const char *p, char *out, size_t *outn)
{
    char e = p[1];
    if (e != 'u') {
        char c;
        switch (e) {
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        default: c = e; break; /* '"', '\\', '/' */
        }
        out[0] = c;
        *outn = 1;
        return p + 2;
    }
    uint32_t cp = (uint32_t)hex4(p + 2);
    p += 6;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        int32_t lo = p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
            p += 6;
        } else
            cp = 0xFFFD;
    } else if (cp >= 0xDC00 && cp <= 0xDFFF)
        cp = 0xFFFD;
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        *outn = 1;
    } else if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        *outn = 2;
    } else if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        *outn = 3;
    } else {
        o[0] = (unsigned char)(0xF0 | (cp >> 18));
        o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (unsigned char)(0x80 | (cp & 0x3F));
        *outn = 4;
    }
    return p;
}

bool json_str_eq(const struct json_doc *d, uint32_t i, const char *key, size_t n)
{
    const struct json_node *nd = &d->nodes[i];
    const char *raw = d->text + nd->start + 1, *rend = d->text + nd->end - 1;
    size_t rawlen = (size_t)(rend - raw);
    if (!(nd->flags & JSON_F_ESCAPED))
        return rawlen == n && memcmp(raw, key, n) == 0;
    /* Decoding never lengthens a string. */
    if (n > rawlen)
        return false;
    const char *k = key, *kend = key + n;
    while (raw < rend) {
        if (*raw != '\\') {
            if (k == kend || *k != *raw)
                return false;
            k++;
            raw++;
            continue;
        }
        char tmp[4];
        size_t m;
        raw = decode_escape(raw, tmp, &m);
        if ((size_t)(kend - k) < m || memcmp(k, tmp, m) != 0)
            return false;
        k += m;
    }
    return k == kend;
}

/* Inline in json_path_find, the lookups of every record. */
static inline __attribute__((always_inline)) uint32_t find_key(const struct json_doc *d, uint32_t obj,
                                                               const char *key, size_t keylen)
{
    if (obj >= d->n || d->nodes[obj].type != JSON_T_OBJECT)
        return JSON_NONE;
    const struct json_node *nodes = d->nodes;
    uint32_t end = nodes[obj].next;
    for (uint32_t k = obj + 1; k < end; k = nodes[k + 1].next) {
        const struct json_node *kn = &nodes[k];
        if (_likely_(!(kn->flags & JSON_F_ESCAPED))) {
            if (kn->end - kn->start - 2 == keylen && mem_eq(d->text + kn->start + 1, key, keylen))
                return k;
        } else if (json_str_eq(d, k, key, keylen))
            return k;
    }
    return JSON_NONE;
}

uint32_t json_obj_find_key(const struct json_doc *d, uint32_t obj, const char *key, size_t keylen)
{
    return find_key(d, obj, key, keylen);
}

uint32_t json_obj_get(const struct json_doc *d, uint32_t obj, const char *key, size_t keylen)
{
    uint32_t k = find_key(d, obj, key, keylen);
    return k == JSON_NONE ? JSON_NONE : k + 1;
}

uint32_t json_arr_get(const struct json_doc *d, uint32_t arr, uint32_t idx)
{
    if (arr >= d->n || d->nodes[arr].type != JSON_T_ARRAY)
        return JSON_NONE;
    uint32_t end = d->nodes[arr].next;
    uint32_t i = arr + 1;
    for (; i < end && idx; idx--)
        i = d->nodes[i].next;
    return i < end ? i : JSON_NONE;
}

/* The escapes of string node nd resolved into the arena. Out of line: the
 * strings a record path reads seldom have escapes, and the plain case is
 * then a leaf function. */
static __attribute__((noinline)) int get_escaped_string(struct json_doc *d, const struct json_node *nd,
                                                        struct rw_str *out)
{
    const char *raw = d->text + nd->start + 1, *rend = d->text + nd->end - 1;
    char *buf = arena_alloc(d->arena, (size_t)(rend - raw) + 1);
    if (!buf)
        return -ENOMEM;
    char *o = buf;
    while (raw < rend) {
        const char *bs = memchr(raw, '\\', (size_t)(rend - raw));
        if (!bs)
            bs = rend;
        memcpy(o, raw, (size_t)(bs - raw));
        o += bs - raw;
        raw = bs;
        if (raw < rend) {
            size_t m;
            raw = decode_escape(raw, o, &m);
            o += m;
        }
    }
    *o = 0;
    *out = (struct rw_str){ buf, (uint32_t)(o - buf) };
    return 0;
}

/* String node nd (the type checked by the caller). Inline in
 * json_get_value, which every field read goes through. */
static inline int get_string(struct json_doc *d, const struct json_node *nd, struct rw_str *out)
{
    if (nd->flags & JSON_F_ESCAPED)
        return get_escaped_string(d, nd, out);
    *out = (struct rw_str){ d->text + nd->start + 1, nd->end - nd->start - 2 };
    return 0;
}

int json_get_string(struct json_doc *d, uint32_t i, struct rw_str *out)
{
    const struct json_node *nd = &d->nodes[i];
    if (nd->type != JSON_T_STRING)
        return -EINVAL;
    return get_string(d, nd, out);
}

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static void c_locale_init(void) { c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0); }

/* strtod in the C locale, whatever the process locale (the daemon may run
 * under a locale whose decimal separator is ','). */
static double strtod_c(const char *s)
{
    pthread_once(&c_locale_once, c_locale_init);
    if (c_locale)
        return strtod_l(s, NULL, c_locale);
    return strtod(s, NULL);
}

/* Numbers the fast path cannot round correctly: strtod on a NUL-terminated
 * copy. Out of line so the fast path has no buffer (and no stack guard). */
static __attribute__((noinline)) double parse_number_slow(const char *p, size_t n)
{
    char small[64];
    char *tmp = n < sizeof(small) ? small : malloc(n + 1);
    if (!tmp)
        return NAN;
    memcpy(tmp, p, n);
    tmp[n] = 0;
    double v = strtod_c(tmp);
    if (tmp != small)
        free(tmp);
    return v;
}

/* Eight ASCII digits at p as one number, or -1 when they are not all
 * digits (SWAR: a byte is a digit when its high nibble is 3 and adding 6
 * leaves it there), with three multiplies instead of a chain of eight
 * dependent multiply-adds: the 13 digits of every record's
 * ApproximateArrivalTimestamp were ~50 cycles of latency. m * 10^8 + this
 * equals m after the eight digits one by one, wrap-around included (both
 * are mod 2^64). */
static inline int64_t digits8(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    if (((v & 0xF0F0F0F0F0F0F0F0ull) | (((v + 0x0606060606060606ull) & 0xF0F0F0F0F0F0F0F0ull) >> 4)) !=
        0x3333333333333333ull)
        return -1;
    v -= 0x3030303030303030ull;
    v = (v * 10) + (v >> 8); /* byte 2k: the two digits 2k, 2k+1 */
    v = (((v & 0x000000FF000000FFull) * (100 + (1000000ull << 32))) +
         (((v >> 16) & 0x000000FF000000FFull) * (1 + (10000ull << 32)))) >> 32;
    return (int64_t)v;
}

double json_parse_number(const char *p, size_t n)
{
    static const double pow10[] = { 1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                    1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };
    const char *q = p, *end = p + n;
    bool neg = q < end && *q == '-';
    q += neg;
    uint64_t m = 0;
    int exp10 = 0;
    /* Significant digits: m is exact only while there are at most 19 of
     * them (past that it may have wrapped, and the slow path is taken). The
     * grammar allows no leading zeros in the integer part, so only "0.000ddd"
     * has insignificant ones, skipped below. */
    const char *ds = q;
    for (int64_t d8; end - q >= 8 && (d8 = digits8(q)) >= 0; q += 8)
        m = m * 100000000 + (uint64_t)d8;
    while (q < end && (unsigned)(*q - '0') <= 9)
        m = m * 10 + (uint64_t)(*q++ - '0');
    long sig = (q - ds == 1 && *ds == '0') ? 0 : q - ds;
    if (q < end && *q == '.') {
        q++;
        if (sig == 0)
            while (q < end && *q == '0') {
                q++;
                exp10--;
            }
        const char *fs = q;
        for (int64_t d8; end - q >= 8 && (d8 = digits8(q)) >= 0; q += 8)
            m = m * 100000000 + (uint64_t)d8;
        while (q < end && (unsigned)(*q - '0') <= 9)
            m = m * 10 + (uint64_t)(*q++ - '0');
        sig += q - fs;
        exp10 -= (int)MIN(q - fs, 100000);
    }
    if (q < end && (*q | 0x20) == 'e') {
        q++;
        bool eneg = false;
        if (q < end && (*q == '+' || *q == '-'))
            eneg = *q++ == '-';
        int e = 0;
        while (q < end && (unsigned)(*q - '0') <= 9) {
            if (e < 100000)
                e = e * 10 + (*q - '0');
            q++;
        }
        exp10 += eneg ? -e : e;
    }
    /* Clinger's fast path: with an exact mantissa (<= 2^53, and at most 19
     * significant digits so m did not wrap) and an exactly representable
     * power of ten, one IEEE multiply or divide is correctly rounded. */
    if (sig <= 19 && m <= (UINT64_C(1) << 53)) {
        double v = (double)m;
        if (m == 0)
            return neg ? -0.0 : 0.0;
        if (exp10 >= 0 && exp10 <= 22)
            return neg ? -(v * pow10[exp10]) : v * pow10[exp10];
        if (exp10 < 0 && exp10 >= -22)
            return neg ? -(v / pow10[-exp10]) : v / pow10[-exp10];
    }
    return parse_number_slow(p, n);
}

int json_get_number(const struct json_doc *d, uint32_t i, double *out)
{
    const struct json_node *nd = &d->nodes[i];
    if (nd->type != JSON_T_NUMBER)
        return -EINVAL;
    *out = json_parse_number(d->text + nd->start, nd->end - nd->start);
    return 0;
}

int json_get_value(struct json_doc *d, uint32_t i, struct rw_value *out)
{
    const struct json_node *nd = &d->nodes[i];
    switch (nd->type) {
    case JSON_T_NULL: *out = RW_VALUE_NULL; return 0;
    case JSON_T_FALSE: *out = RW_VALUE_BOOL(false); return 0;
    case JSON_T_TRUE: *out = RW_VALUE_BOOL(true); return 0;
    case JSON_T_NUMBER:
        *out = RW_VALUE_NUM(json_parse_number(d->text + nd->start, nd->end - nd->start));
        return 0;
    case JSON_T_STRING: {
        *out = (struct rw_value){ .type = RW_STR };
        return get_string(d, nd, &out->s);
    }
    case JSON_T_OBJECT:
    case JSON_T_ARRAY:
        *out = (struct rw_value){ .type = nd->type == JSON_T_OBJECT ? RW_OBJECT : RW_ARRAY,
                                  .s = { d->text + nd->start, nd->end - nd->start } };
        return 0;
    }
    *out = RW_VALUE_MISSING;
    return -EINVAL;
}

/* ---- paths ---- */

int json_path_compile(const char *spec, struct json_path **out)
{
    size_t slen = strlen(spec);
    /* Each step takes at least one spec byte, and decoded keys are never
     * longer than their spelling, so the spec length bounds both. */
    size_t maxsteps = slen + 1;
    if (slen == 0 || slen > UINT32_MAX / 2)
        return -EINVAL;
    struct json_path *p = malloc(sizeof(*p) + maxsteps * sizeof(struct json_step) + slen + 1);
    if (!p)
        return -ENOMEM;
    char *store = (char *)&p->steps[maxsteps];
    uint32_t n = 0;
    const char *s = spec;
    bool first = true;
    while (*s) {
        struct json_step *st = &p->steps[n];
        if (*s == '[') {
            s++;
            if (*s == '"') {
                /* A JSON string literal: reuse the scanner on a copy so the
                 * rules (escapes, UTF-8) are exactly the record's. */
                const char *q = s + 1;
                while (*q && *q != '"')
                    q += (*q == '\\' && q[1]) ? 2 : 1;
                if (*q != '"' || q[1] != ']')
                    goto bad;
                struct json_doc tmp;
                json_doc_init(&tmp, NULL);
                size_t litlen = (size_t)(q + 1 - s);
                char *lit = malloc(litlen + 1);
                if (!lit) {
                    json_doc_free(&tmp);
                    free(p);
                    return -ENOMEM;
                }
                memcpy(lit, s, litlen);
                lit[litlen] = 0;
                struct rw_str k;
                int r = json_scan(&tmp, lit, litlen);
                if (r >= 0)
                    r = json_get_string(&tmp, 0, &k);
                if (r >= 0) {
                    memcpy(store, k.p, k.len);
                    st->kind = JSON_STEP_KEY;
                    st->key = store;
                    st->keylen = k.len;
                    store += k.len;
                }
                free(lit);
                json_doc_free(&tmp);
                if (r < 0)
                    goto bad;
                s = q + 2;
            } else {
                if (!is_digit(*s))
                    goto bad;
                uint64_t v = 0;
                while (is_digit(*s)) {
                    v = v * 10 + (uint64_t)(*s++ - '0');
                    if (v >= UINT32_MAX)
                        goto bad;
                }
                if (*s != ']')
                    goto bad;
                s++;
                st->kind = JSON_STEP_INDEX;
                st->index = (uint32_t)v;
                st->key = NULL;
                st->keylen = 0;
            }
        } else {
            if (!first) {
                if (*s != '.')
                    goto bad;
                s++;
            }
            size_t kl = strcspn(s, ".[]");
            if (kl == 0)
                goto bad;
            memcpy(store, s, kl);
            st->kind = JSON_STEP_KEY;
            st->key = store;
            st->keylen = (uint32_t)kl;
            store += kl;
            s += kl;
        }
        n++;
        first = false;
    }
    p->n = n;
    for (uint32_t k = 0; k < n; k++)
        p->steps[k].plain = p->steps[k].kind == JSON_STEP_KEY && buf_json_plain(p->steps[k].key, p->steps[k].keylen);
    *out = p;
    return 0;
bad:
    free(p);
    return -EINVAL;
}

struct json_path *json_path_free(struct json_path *p)
{
    free(p);
    return NULL;
}

uint32_t json_path_find(const struct json_doc *d, const struct json_path *p)
{
    if (!d->n)
        return JSON_NONE;
    uint32_t i = 0;
    for (uint32_t k = 0; k < p->n && i != JSON_NONE; k++) {
        const struct json_step *st = &p->steps[k];
        if (st->kind == JSON_STEP_KEY) {
            uint32_t key = find_key(d, i, st->key, st->keylen);
            i = key == JSON_NONE ? JSON_NONE : key + 1;
        } else
            i = json_arr_get(d, i, st->index);
    }
    return i;
}

int json_lookup(struct json_doc *d, const struct json_path *p, struct rw_value *out)
{
    if (d->overlay)
        return d->overlay(d->overlay_ud, p, out);
    return json_lookup_text(d, p, out);
}

int json_lookup_text(struct json_doc *d, const struct json_path *p, struct rw_value *out)
{
    uint32_t i = json_path_find(d, p);
    if (i == JSON_NONE) {
        *out = RW_VALUE_MISSING;
        return 0;
    }
    return json_get_value(d, i, out);
}
