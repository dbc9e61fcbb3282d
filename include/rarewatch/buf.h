/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Growable byte buffers and bump arenas.
 *
 * struct buf is the one growable byte string of the project: request and
 * response bodies, encoded output records, log lines. It is always kept
 * NUL-terminated (data[len] == 0) so it can be handed to C string APIs, and
 * buf_reset() keeps the allocation, so a buffer reused per batch costs no
 * malloc in steady state.
 *
 * struct arena is a bump allocator for per-batch scratch (decoded payloads,
 * unescaped strings): arena_reset() frees nothing and keeps the largest
 * block, so after warm-up a batch allocates nothing.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rarewatch/macro.h"

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

#define BUF_INIT { NULL, 0, 0 }

/* The growing path of buf_reserve. */
int buf_reserve_grow(struct buf *b, size_t extra);
/* Room for extra more bytes and the NUL. Inline: on the record path the
 * room is there on almost every call, and that is one compare. */
static inline int buf_reserve(struct buf *b, size_t extra)
{
    if (_likely_(extra < b->cap - b->len)) /* len + extra + 1 <= cap; cap == 0: never taken */
        return 0;
    return buf_reserve_grow(b, extra);
}
/* The growing path of buf_append. */
int buf_append_grow(struct buf *b, const void *p, size_t n);

/* Inline: the output lines are built from many short appends (a dozen per
 * record on the shard workers), where a call, a capacity check in
 * buf_reserve and, for buf_puts, strlen of a literal cost more than the
 * copy. Here the room check is one compare and a literal's length is a
 * constant. */
static inline int buf_append(struct buf *b, const void *p, size_t n)
{
    if (_likely_(n && n < b->cap - b->len)) { /* cap == 0 (no data yet): never taken */
        __builtin_memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = 0;
        return 0;
    }
    return buf_append_grow(b, p, n);
}
static inline int buf_puts(struct buf *b, const char *s) { return buf_append(b, s, __builtin_strlen(s)); }
static inline int buf_putc(struct buf *b, char c) { return buf_append(b, &c, 1); }
int buf_printf(struct buf *b, const char *fmt, ...) _printf_(2, 3);
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) _printf_(2, 0);
/* Append s as a JSON string literal, quotes included, escaping as RFC 8259
 * requires; invalid UTF-8 bytes are replaced by U+FFFD so output is always
 * valid JSON. */
int buf_put_json_string(struct buf *b, const char *s, size_t n);
/* Are the eight bytes of w all ones buf_put_json_string copies unchanged
 * (not '"', '\\', a control byte or non-ASCII)? SWAR: a control byte borrows
 * into, and a non-ASCII byte has, its top bit; '"' and '\\' become zero bytes
 * under the XOR, which the (x - 1) & ~x test finds. Exact: a borrow only
 * starts at a byte that is itself special. */
static inline bool buf_json_plain8(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');
    return !(((w - ones * 0x20) | w | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & highs);
}
/* Are all of s[0..n) bytes buf_put_json_string copies unchanged? */
bool buf_json_plain(const char *s, size_t n);
/* buf_put_json_string for a string known to be buf_json_plain: quoted and
 * copied. Inline: the fast path of both. */
static inline int buf_put_json_plain(struct buf *b, const char *s, size_t n)
{
    int r = buf_reserve(b, n + 2);
    if (r < 0)
        return r;
    char *o = b->data + b->len;
    o[0] = '"';
    memcpy(o + 1, s, n);
    o[n + 1] = '"';
    b->len += n + 2;
    b->data[b->len] = 0;
    return 0;
}
static inline void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}
void buf_free(struct buf *b);
/* Hand the bytes to the caller (who frees them) and reset the buffer. */
char *buf_steal(struct buf *b);
static inline void buf_freep(struct buf *b) { buf_free(b); }
#define _cleanup_buf_ _cleanup_(buf_freep)

/* Visible for the inline fast paths below; only buf.c touches the fields. */
struct arena_block {
    struct arena_block *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};
struct arena {
    struct arena_block *head;
    size_t block_size;
};

#define ARENA_INIT { NULL, 0 }

/* The paths that allocate or free blocks. */
void *arena_alloc_grow(struct arena *a, size_t n);
void arena_reset_blocks(struct arena *a);

/* 16-byte aligned. Inline, as arena_reset: the record path allocates and
 * resets per record, and in steady state one block has the room. */
static inline void *arena_alloc(struct arena *a, size_t n)
{
    struct arena_block *blk = a->head;
    size_t r = (n + 15) & ~(size_t)15;
    if (_likely_(blk && r >= n && blk->size - blk->used >= r)) {
        void *p = blk->data + blk->used;
        blk->used += r;
        return p;
    }
    return arena_alloc_grow(a, n);
}
char *arena_strndup(struct arena *a, const char *s, size_t n);
/* Frees nothing in steady state: keeps one block, sized to the high-water
 * mark (see arena_reset_blocks). */
static inline void arena_reset(struct arena *a)
{
    if (_likely_(!a->head || !a->head->next)) {
        if (a->head)
            a->head->used = 0;
        return;
    }
    arena_reset_blocks(a);
}
void arena_free(struct arena *a);
