/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Project-wide conventions, in one place.
 *
 * Errors: functions that can fail return int: >= 0 on success, a negative
 * errno on failure (-EINVAL bad input, -ENOMEM, -EIO, -ETIMEDOUT, ...).
 * AWS calls additionally fill a typed `struct aws_error` (see aws_error.h).
 * A function logs an error only where the decision about it is made; callees
 * return the code and let the caller decide (log once).
 *
 * Ownership: a pointer returned by *_new() or a function documented "caller
 * owns" must be released with the matching *_free(). Locals are declared
 * with _cleanup_(fn) so every early return releases them; a hand-off to
 * another owner is written TAKE_PTR(p), which returns p and clears the local.
 * *_free(NULL) is always a no-op and returns NULL.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _pure_ __attribute__((pure))
#define _const_ __attribute__((const))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _nonnull_(...) __attribute__((nonnull(__VA_ARGS__)))
#define _warn_unused_result_ __attribute__((warn_unused_result))
#define _noreturn_ __attribute__((noreturn))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define CLAMP(x, lo, hi) MIN(MAX((x), (lo)), (hi))

/* Move ownership out of a _cleanup_ variable. */
#define TAKE_PTR(p)                       \
    ({                                    \
        __typeof__(p) _take_tmp_ = (p);   \
        (p) = NULL;                       \
        _take_tmp_;                       \
    })
#define TAKE_FD(fd)                       \
    ({                                    \
        int _take_fd_ = (fd);             \
        (fd) = -1;                        \
        _take_fd_;                        \
    })

static inline void freep(void *p) { free(*(void **)p); }
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        (void)close(*fd);
        errno = saved;
    }
}
#define _cleanup_close_ _cleanup_(closep)

/* Define `static inline void NAMEp(T **p)` calling NAME_free(*p). */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)  \
    static inline void func##p(type *p)          \
    {                                            \
        if (*p)                                  \
            func(*p);                            \
    }

static inline int negative_errno(void) { return errno > 0 ? -errno : -EIO; }

static inline bool streq_ptr(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}
#define streq(a, b) (strcmp((a), (b)) == 0)

/* llround(y) for 0 <= y < 2^63 (half away from zero) without the libm call
 * the record path made per record for its timestamps: below 2^52, y - (int)y
 * is exact; from there on y is an integer. */
static inline int64_t round_nonneg_i64(double y)
{
    int64_t i = (int64_t)y;
    if (y < 0x1p52 && y - (double)i >= 0.5)
        i++;
    return i;
}

/* x's and y's 8 (4) bytes at offset o XORed: 0 when they are the same. */
static inline uint64_t mem_diff8(const unsigned char *x, const unsigned char *y, size_t o)
{
    uint64_t a, b;
    memcpy(&a, x + o, 8);
    memcpy(&b, y + o, 8);
    return a ^ b;
}
static inline uint32_t mem_diff4(const unsigned char *x, const unsigned char *y, size_t o)
{
    uint32_t a, b;
    memcpy(&a, x + o, 4);
    memcpy(&b, y + o, 4);
    return a ^ b;
}

/* a[0..n) == b[0..n), for the short names and keys of the record path
 * (member names, detector keys, lookup keys): up to 32 bytes as two or four
 * words each side, overlapping when shorter (a byte compared twice changes
 * nothing; no load leaves either range), where a call to memcmp costs more
 * than the compare. */
static inline bool mem_eq(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    if (n > 32)
        return memcmp(x, y, n) == 0;
    if (n > 16)
        return !(mem_diff8(x, y, 0) | mem_diff8(x, y, 8) | mem_diff8(x, y, n - 16) | mem_diff8(x, y, n - 8));
    if (n >= 8)
        return !(mem_diff8(x, y, 0) | mem_diff8(x, y, n - 8));
    if (n >= 4)
        return !(mem_diff4(x, y, 0) | mem_diff4(x, y, n - 4));
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return false;
    return true;
}

#define strneq(a, b, n) (strncmp((a), (b), (n)) == 0)

#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MSEC UINT64_C(1000)
#define NSEC_PER_USEC UINT64_C(1000)
#define NSEC_PER_SEC UINT64_C(1000000000)
