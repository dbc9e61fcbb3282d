/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

int buf_reserve_grow(struct buf *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->len)
        return -ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_append_grow(struct buf *b, const void *p, size_t n)
{
    int r = buf_reserve(b, n);
    if (r < 0)
        return r;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}


int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    size_t room = b->cap > b->len ? b->cap - b->len : 0;
    int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n >= room) {
        int r = buf_reserve(b, (size_t)n);
        if (r < 0)
            return r;
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    }
    b->len += (size_t)n;
    return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t utf8_valid_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0) {
        len = 2;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        cp = c & 0x07;
    } else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* Reject overlong forms, surrogates and values past U+10FFFF. */
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return 0;
    return len;
}

bool buf_json_plain(const char *s, size_t n)
{
    size_t i = 0;
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
    /* The strings asked about are short and almost always plain: one test
     * after the loop, not a branch per 16 bytes. */
    __m128i bad = _mm_setzero_si128();
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        /* Signed compare: bytes >= 0x80 count as < 0x20. */
        bad = _mm_or_si128(bad, _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                                             _mm_cmplt_epi8(v, space)));
    }
    if (_mm_movemask_epi8(bad))
        return false;
#endif
    /* The rest (the whole of a short key or value) in one or two words,
     * the two loads overlapping where fewer than 8 or 16 bytes are left:
     * a byte checked twice changes nothing. */
    size_t left = n - i;
    const char *t = s + i;
    uint64_t w, w2;
    if (left >= 8) {
        memcpy(&w, t, 8);
        memcpy(&w2, t + left - 8, 8);
        return buf_json_plain8(w) && buf_json_plain8(w2);
    }
    if (left >= 4) {
        uint32_t a, b;
        memcpy(&a, t, 4);
        memcpy(&b, t + left - 4, 4);
        return buf_json_plain8(a | (uint64_t)b << 32);
    }
    /* 0-3 bytes: padded with plain 'A's. */
    w = 0x4141414141414141ull;
    for (size_t j = 0; j < left; j++)
        w = w << 8 | (uint8_t)t[j];
    return buf_json_plain8(w);
}

int buf_put_json_string(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    /* Most strings need no escape (every output line's sequence number and
     * partition key): checked a word or 16 bytes at a time, then copied. */
    if (_likely_(n + 2 < b->cap - b->len) && buf_json_plain(s, n))
        return buf_put_json_plain(b, s, n);
    /* Worst case: every byte becomes \u00XX (6) or U+FFFD (3). */
    int r = buf_reserve(b, n * 6 + 2);
    if (r < 0)
        return r;
    char *o = b->data + b->len;
    *o++ = '"';
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    /* Eight bytes at a time while none needs care; a word with one special
     * byte sends one byte down the exact path below. */
    while (p < end) {
        if (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if (buf_json_plain8(w)) {
                memcpy(o, p, 8);
                o += 8;
                p += 8;
                continue;
            }
        }
        unsigned char c = *p;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *o++ = (char)c;
            p++;
            continue;
        }
        if (c < 0x80) {
            *o++ = '\\';
            switch (c) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            case '\b': *o++ = 'b'; break;
            case '\f': *o++ = 'f'; break;
            default:
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 15];
            }
            p++;
            continue;
        }
        size_t l = utf8_valid_len(p, (size_t)(end - p));
        if (l) {
            memcpy(o, p, l);
            o += l;
            p += l;
        } else {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3;
            p++;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = 0;
    return 0;
}

void buf_free(struct buf *b)
{
    free(b->data);
    *b = (struct buf)BUF_INIT;
}

char *buf_steal(struct buf *b)
{
    char *p = b->data;
    if (!p)
        p = strdup("");
    *b = (struct buf)BUF_INIT;
    return p;
}

void *arena_alloc_grow(struct arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct arena_block *blk = a->head;
    if (!blk || blk->size - blk->used < n) {
        size_t bs = a->block_size ? a->block_size : 64 * 1024;
        while (bs < n)
            bs *= 2;
        blk = malloc(sizeof(*blk) + bs);
        if (!blk)
            return NULL;
        blk->size = bs;
        blk->used = 0;
        blk->next = a->head;
        a->head = blk;
        if (bs > a->block_size)
            a->block_size = bs;
    }
    void *p = blk->data + blk->used;
    blk->used += n;
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void arena_reset_blocks(struct arena *a)
{
    /* Keep one block, sized to the high-water mark, so the next batch fits
     * without allocating. */
    size_t total = 0;
    struct arena_block *keep = NULL;
    for (struct arena_block *b = a->head, *next; b; b = next) {
        next = b->next;
        total += b->used;
        if (!keep || b->size > keep->size) {
            if (keep)
                free(keep);
            keep = b;
        } else
            free(b);
    }
    if (keep && keep->size < total) {
        free(keep);
        keep = NULL;
        a->block_size = total * 2;
    }
    if (keep) {
        keep->used = 0;
        keep->next = NULL;
    }
    a->head = keep;
}

void arena_free(struct arena *a)
{
    for (struct arena_block *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
}
