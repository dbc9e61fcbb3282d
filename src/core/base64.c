/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/base64.h"

#include <string.h>

/* Sextet value of each byte; invalid bytes map to all ones, so that after
 * shifting and OR-ing a quad any invalid character sets bits 24..31 and one
 * test per quad (or per two quads) catches it. */
#define X 0xFFFFFFFFu
static const uint32_t dec[256] = {
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  62, X,  X,  X,  63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, X,  X,  X,  X,  X,  X,
    X,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, X,  X,  X,  X,  X,
    X,  26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
};
#undef X

static inline uint32_t quad(const unsigned char *s)
{
    return dec[s[0]] << 18 | dec[s[1]] << 12 | dec[s[2]] << 6 | dec[s[3]];
}

int base64_decode(const char *in, size_t n, uint8_t *out, size_t *outlen)
{
    if (n % 4)
        return -EINVAL;
    if (n == 0) {
        *outlen = 0;
        return 0;
    }
    const unsigned char *s = (const unsigned char *)in;
    /* All quads but the last carry no padding. */
    size_t full = n / 4 - 1;
    uint8_t *o = out;
    size_t i = 0;
    /* Two quads per step, stored as one 8-byte write (6 bytes are output,
     * 2 are overwritten by the next step), while 8 bytes of room remain. */
    for (; i + 2 <= full && (size_t)(o - out) + 8 <= full * 3; i += 2, s += 8, o += 6) {
        uint32_t a = quad(s), b = quad(s + 4);
        if (_unlikely_((a | b) >> 24))
            return -EINVAL;
        uint64_t v = (uint64_t)a << 40 | (uint64_t)b << 16;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        v = __builtin_bswap64(v);
#endif
        memcpy(o, &v, 8);
    }
    for (; i < full; i++, s += 4, o += 3) {
        uint32_t a = quad(s);
        if (_unlikely_(a >> 24))
            return -EINVAL;
        o[0] = (uint8_t)(a >> 16);
        o[1] = (uint8_t)(a >> 8);
        o[2] = (uint8_t)a;
    }
    /* The last quad: "abcd", "abc=" or "ab==". */
    uint32_t c0 = dec[s[0]], c1 = dec[s[1]];
    if ((c0 | c1) >> 24)
        return -EINVAL;
    if (s[3] == '=') {
        if (s[2] == '=') {
            if (c1 & 0x0F)
                return -EINVAL;
            *o++ = (uint8_t)(c0 << 2 | c1 >> 4);
        } else {
            uint32_t c2 = dec[s[2]];
            if ((c2 >> 24) || (c2 & 0x03))
                return -EINVAL;
            *o++ = (uint8_t)(c0 << 2 | c1 >> 4);
            *o++ = (uint8_t)(c1 << 4 | c2 >> 2);
        }
    } else {
        uint32_t a = quad(s);
        if (a >> 24)
            return -EINVAL;
        o[0] = (uint8_t)(a >> 16);
        o[1] = (uint8_t)(a >> 8);
        o[2] = (uint8_t)a;
        o += 3;
    }
    *outlen = (size_t)(o - out);
    return 0;
}

size_t base64_encode(const void *in, size_t n, char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = in;
    char *o = out;
    size_t i = 0;
    for (; i + 3 <= n; i += 3, s += 3, o += 4) {
        uint32_t v = (uint32_t)s[0] << 16 | (uint32_t)s[1] << 8 | s[2];
        o[0] = alphabet[v >> 18];
        o[1] = alphabet[(v >> 12) & 63];
        o[2] = alphabet[(v >> 6) & 63];
        o[3] = alphabet[v & 63];
    }
    if (n - i == 1) {
        o[0] = alphabet[s[0] >> 2];
        o[1] = alphabet[(s[0] & 3) << 4];
        o[2] = '=';
        o[3] = '=';
        o += 4;
    } else if (n - i == 2) {
        o[0] = alphabet[s[0] >> 2];
        o[1] = alphabet[((s[0] & 3) << 4) | (s[1] >> 4)];
        o[2] = alphabet[(s[1] & 15) << 2];
        o[3] = '=';
        o += 4;
    }
    return (size_t)(o - out);
}

int buf_put_base64(struct buf *b, const void *in, size_t n)
{
    size_t need = base64_encoded_len(n);
    if (need < n)
        return -ENOMEM;
    int r = buf_reserve(b, need);
    if (r < 0)
        return r;
    b->len += base64_encode(in, n, b->data + b->len);
    b->data[b->len] = 0;
    return 0;
}
