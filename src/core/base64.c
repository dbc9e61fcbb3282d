/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/base64.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define B64_X86 1
#endif

/*
 * Four lookup tables, one per position in a quad, holding the sextet already
 * shifted to where it lands in the 3 output bytes (byte 0 in bits 0..7, as a
 * little-endian 32-bit store wants them). A quad then costs four loads and
 * three ORs. Invalid characters map to BAD, which sets bit 24, so one compare
 * per quad (or per two quads) catches any of them. The tables are constant
 * expressions, so there is no init step and no thread-safety question.
 */
#define B64V(c)                                              \
    ((c) >= 'A' && (c) <= 'Z'   ? (c) - 'A'                  \
     : (c) >= 'a' && (c) <= 'z' ? (c) - 'a' + 26            \
     : (c) >= '0' && (c) <= '9' ? (c) - '0' + 52            \
     : (c) == '+'               ? 62                        \
     : (c) == '/'               ? 63                        \
                                : -1)
#define BAD 0x01FFFFFFu
#define U(c) ((uint32_t)B64V(c))
#define D0(c) (B64V(c) < 0 ? BAD : U(c) << 2)
#define D1(c) (B64V(c) < 0 ? BAD : (U(c) >> 4) | ((U(c) & 0x0F) << 12))
#define D2(c) (B64V(c) < 0 ? BAD : ((U(c) >> 2) << 8) | ((U(c) & 0x03) << 22))
#define D3(c) (B64V(c) < 0 ? BAD : U(c) << 16)
#define T4(F, b) F(b), F((b) + 1), F((b) + 2), F((b) + 3)
#define T16(F, b) T4(F, b), T4(F, (b) + 4), T4(F, (b) + 8), T4(F, (b) + 12)
#define T64(F, b) T16(F, b), T16(F, (b) + 16), T16(F, (b) + 32), T16(F, (b) + 48)
#define T256(F) T64(F, 0), T64(F, 64), T64(F, 128), T64(F, 192)
static const uint32_t d0[256] = { T256(D0) };
static const uint32_t d1[256] = { T256(D1) };
static const uint32_t d2[256] = { T256(D2) };
static const uint32_t d3[256] = { T256(D3) };

static inline uint32_t quad(const unsigned char *s)
{
    return d0[s[0]] | d1[s[1]] | d2[s[2]] | d3[s[3]];
}

static inline void put3(uint8_t *o, uint32_t x)
{
    o[0] = (uint8_t)x;
    o[1] = (uint8_t)(x >> 8);
    o[2] = (uint8_t)(x >> 16);
}

/* Store the 3 bytes of x plus one byte of garbage that the next store (or
 * the tail) overwrites; the caller guarantees the room. */
static inline void put4(uint8_t *o, uint32_t x)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(o, &x, 4);
#else
    put3(o, x);
#endif
}

static int dec_scalar(const char *in, size_t n, uint8_t *out, size_t *outlen)
{
    if (n % 4)
        return -EINVAL;
    if (n == 0) {
        *outlen = 0;
        return 0;
    }
    const unsigned char *s = (const unsigned char *)in;
    /* All quads but the last carry no padding. Quad i of those writes bytes
     * [3i, 3i + 4), inside the n / 4 * 3 bytes of room, so put4 is safe. */
    size_t full = n / 4 - 1, i = 0;
    uint8_t *o = out;
    for (; i + 2 <= full; i += 2, s += 8, o += 6) {
        uint32_t a = quad(s), b = quad(s + 4);
        if (_unlikely_((a | b) >= 0x01000000u))
            return -EINVAL;
        put4(o, a);
        put4(o + 3, b);
    }
    if (i < full) {
        uint32_t a = quad(s);
        if (a >= 0x01000000u)
            return -EINVAL;
        put4(o, a);
        s += 4;
        o += 3;
    }
    /* The last quad: "abcd", "abc=" or "ab==". The canonical-encoding checks
     * look at the bits the padding leaves unused. */
    if (s[3] != '=') {
        uint32_t a = quad(s);
        if (a >= 0x01000000u)
            return -EINVAL;
        put3(o, a);
        o += 3;
    } else if (s[2] != '=') {
        uint32_t a = d0[s[0]] | d1[s[1]] | d2[s[2]];
        if (a >= 0x01000000u || (a & 0xFF0000u))
            return -EINVAL;
        o[0] = (uint8_t)a;
        o[1] = (uint8_t)(a >> 8);
        o += 2;
    } else {
        uint32_t a = d0[s[0]] | d1[s[1]];
        if (a >= 0x01000000u || (a & 0xFFFF00u))
            return -EINVAL;
        o[0] = (uint8_t)a;
        o += 1;
    }
    *outlen = (size_t)(o - out);
    return 0;
}

/*
 * Encoding, two characters per lookup: pair[v] for a 12-bit group v holds
 * both characters, the first in the low byte (a little-endian 16-bit store
 * puts it first). 6 input bytes, read as one big-endian 64-bit word, become
 * 8 characters with four lookups and one 8-byte store: about a third of the
 * instructions of a character at a time, and the table (8 KiB) stays in L1
 * on the record path. Also a constant expression, like the decode tables.
 */
#define B64C(v) ((v) < 26 ? 'A' + (v) : (v) < 52 ? 'a' + (v) - 26 : (v) < 62 ? '0' + (v) - 52 : (v) == 62 ? '+' : '/')
#define PAIR(v) ((uint16_t)(B64C(((v) >> 6) & 63) | B64C((v) & 63) << 8))
#define P4(b) PAIR(b), PAIR((b) + 1), PAIR((b) + 2), PAIR((b) + 3)
#define P16(b) P4(b), P4((b) + 4), P4((b) + 8), P4((b) + 12)
#define P64(b) P16(b), P16((b) + 16), P16((b) + 32), P16((b) + 48)
#define P256(b) P64(b), P64((b) + 64), P64((b) + 128), P64((b) + 192)
#define P1024(b) P256(b), P256((b) + 256), P256((b) + 512), P256((b) + 768)
static const uint16_t pair[4096] = { P1024(0), P1024(1024), P1024(2048), P1024(3072) };

static size_t enc_scalar(const void *in, size_t n, char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = in;
    char *o = out;
    size_t i = 0;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* The 8-byte load reads 2 bytes past the 6 it encodes: only while they
     * are inside the input. */
    for (; i + 8 <= n; i += 6, s += 6, o += 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        v = __builtin_bswap64(v);
        uint64_t w = (uint64_t)pair[v >> 52] | (uint64_t)pair[(v >> 40) & 0xFFF] << 16 |
                     (uint64_t)pair[(v >> 28) & 0xFFF] << 32 | (uint64_t)pair[(v >> 16) & 0xFFF] << 48;
        memcpy(o, &w, 8);
    }
#endif
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

/*
 * The AVX2 path (x86-64). Debian packages no SIMD base64 library for C (libb64
 * and libbaseencode are byte-at-a-time), and the two passes per record
 * (Kinesis Data in, Firehose Data out) were a quarter of the record path's
 * instructions, so they are written here. The method is the published one
 * (W. Mula, D. Lemire, "Faster Base64 Encoding and Decoding Using AVX2
 * Instructions", 2018): encoding spreads each 3 bytes over 4 lanes with a
 * byte shuffle and two multiplies, then turns sextets into characters with
 * a 16-entry pshufb table of offsets; decoding classifies each character by
 * its two nibbles (two pshufb tables whose AND is non-zero exactly for bytes
 * outside the alphabet), adds a per-class offset and packs 4 sextets into 3
 * bytes with two multiply-adds and a shuffle: 24 bytes <-> 32 characters
 * per step. The CPU is asked at run time (__builtin_cpu_supports reads what
 * libgcc detected at startup). The scalar code above stays: it does the
 * tails, the last (padded) quad and CPUs without AVX2, and the unit test
 * and the fuzz target check the AVX2 path against it byte for byte. No
 * SSSE3 copy of the kernels at half the width: x86-64 server CPUs have had
 * AVX2 since 2013, and a second copy would be more code to keep equal.
 */
#ifdef B64_X86
#define TGT_AVX2 __attribute__((target("avx2")))

TGT_AVX2 static inline __m256i enc_reshuffle256(__m256i in)
{
    in = _mm256_shuffle_epi8(in, _mm256_set_epi8(10, 11, 9, 10, 7, 8, 6, 7, 4, 5, 3, 4, 1, 2, 0, 1, 10, 11, 9,
                                                 10, 7, 8, 6, 7, 4, 5, 3, 4, 1, 2, 0, 1));
    __m256i t0 = _mm256_and_si256(in, _mm256_set1_epi32(0x0fc0fc00));
    __m256i t1 = _mm256_mulhi_epu16(t0, _mm256_set1_epi32(0x04000040));
    __m256i t2 = _mm256_and_si256(in, _mm256_set1_epi32(0x003f03f0));
    __m256i t3 = _mm256_mullo_epi16(t2, _mm256_set1_epi32(0x01000010));
    return _mm256_or_si256(t1, t3);
}

TGT_AVX2 static inline __m256i enc_translate256(__m256i v)
{
    const __m256i shift = _mm256_setr_epi8(
        'a' - 26, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
        '0' - 52, '+' - 62, '/' - 63, 'A', 0, 0, 'a' - 26, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
        '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '+' - 62, '/' - 63, 'A', 0, 0);
    __m256i c = _mm256_subs_epu8(v, _mm256_set1_epi8(51));
    __m256i less = _mm256_cmpgt_epi8(_mm256_set1_epi8(26), v);
    c = _mm256_or_si256(c, _mm256_and_si256(less, _mm256_set1_epi8(13)));
    return _mm256_add_epi8(_mm256_shuffle_epi8(shift, c), v);
}

/* 24 bytes -> 32 characters: each 128-bit lane loads its own 12 bytes (the
 * second load reads up to byte 28). */
TGT_AVX2 static size_t enc_avx2(const void *in, size_t n, char *out)
{
    const uint8_t *s = in;
    char *o = out;
    for (; n >= 28; s += 24, n -= 24, o += 32) {
        __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)s)),
                                            _mm_loadu_si128((const __m128i *)(const void *)(s + 12)), 1);
        _mm256_storeu_si256((__m256i *)(void *)o, enc_translate256(enc_reshuffle256(v)));
    }
    /* GCC 12 leaves the upper halves dirty on this path (no vzeroupper
     * before the call or the return), and every legacy-SSE instruction
     * after that pays for it: the rest of the program ran a third slower. */
    _mm256_zeroupper();
    return (size_t)(o - out) + enc_scalar(s, n, o);
}

/* Classification tables: lut_lo[low nibble] & lut_hi[high nibble] is zero
 * exactly for 'A'-'Z' 'a'-'z' '0'-'9' '+' '/'; roll[high nibble, or 1 for
 * '/'] is what turns the character into its sextet. */
#define DEC_LUT_LO 0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1A, 0x1B, 0x1B, 0x1B, 0x1A
#define DEC_LUT_HI 0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10
#define DEC_ROLL 0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0
#define DEC_PACK 2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1

/* 32 characters at s into 24 bytes (in the low 24 of *v); false when one
 * is outside the alphabet. */
TGT_AVX2 static inline bool dec32(const char *s, __m256i *out)
{
    const __m256i lut_lo = _mm256_setr_epi8(DEC_LUT_LO, DEC_LUT_LO), lut_hi = _mm256_setr_epi8(DEC_LUT_HI, DEC_LUT_HI);
    const __m256i roll_lut = _mm256_setr_epi8(DEC_ROLL, DEC_ROLL), pack = _mm256_setr_epi8(DEC_PACK, DEC_PACK);
    const __m256i m2f = _mm256_set1_epi8(0x2f);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 7, 7);
    __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)s);
    __m256i hin = _mm256_and_si256(_mm256_srli_epi32(v, 4), m2f);
    __m256i lon = _mm256_and_si256(v, m2f);
    __m256i bad = _mm256_and_si256(_mm256_shuffle_epi8(lut_lo, lon), _mm256_shuffle_epi8(lut_hi, hin));
    if (_unlikely_(!_mm256_testz_si256(bad, bad)))
        return false;
    __m256i roll = _mm256_shuffle_epi8(roll_lut, _mm256_add_epi8(_mm256_cmpeq_epi8(v, m2f), hin));
    v = _mm256_add_epi8(v, roll);
    v = _mm256_maddubs_epi16(v, _mm256_set1_epi32(0x01400140));
    v = _mm256_madd_epi16(v, _mm256_set1_epi32(0x00011000));
    *out = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(v, pack), lanes);
    return true;
}

/* 32 characters -> 24 bytes with a 32-byte store: while at least 44 are
 * left (33 bytes of room). */
TGT_AVX2 static int dec_avx2(const char *in, size_t n, uint8_t *out, size_t *outlen)
{
    const char *s = in;
    uint8_t *o = out;
    __m256i v;
    for (; n >= 44; s += 32, n -= 32, o += 24) {
        if (!dec32(s, &v))
            return -EINVAL;
        _mm256_storeu_si256((__m256i *)(void *)o, v);
    }
    /* What is left before the last quad (8 to 36 characters: up to nine
     * quads for the scalar code, eight on a 300-byte record) in one or two
     * more steps with the store masked to the 24 bytes decoded, so nothing
     * past them is touched: 32 characters while as many are left, then the
     * last 32 before the last quad, which overlap what was decoded above
     * (the same bytes are written again). The last quad, maybe padded,
     * stays with the scalar code. */
    const __m256i low24 = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
    for (; n >= 36; s += 32, n -= 32, o += 24) {
        if (!dec32(s, &v))
            return -EINVAL;
        _mm256_maskstore_epi32((int *)(void *)o, low24, v);
    }
    size_t done = (size_t)(s - in);
    if (n > 4 && done + (n - 4) >= 32) {
        size_t back = 32 - (n - 4); /* a multiple of 4: n and 32 are */
        if (!dec32(s - back, &v))
            return -EINVAL;
        _mm256_maskstore_epi32((int *)(void *)(o - back / 4 * 3), low24, v);
        s += n - 4;
        o += (n - 4) / 4 * 3;
        n = 4;
    }
    _mm256_zeroupper(); /* as in enc_avx2 */
    size_t tail;
    int r = dec_scalar(s, n, o, &tail);
    if (r == 0)
        *outlen = (size_t)(o - out) + tail;
    return r;
}

/*
 * The AVX-512 VBMI path: 48 bytes <-> 64 characters per step with byte
 * permutes over a whole register (W. Mula, D. Lemire, "Base64 encoding and
 * decoding at almost the speed of a memory copy", 2019). Encoding: one
 * permute spreads each 3 bytes s0 s1 s2 over a 32-bit lane as s1 s0 s2 s1,
 * one multishift picks the four sextets out of each lane (bits 10, 4, 22
 * and 16 of it), one permute looks them up in the alphabet (it reads only
 * the low 6 bits of each index). Decoding: a two-table permute maps each
 * character's low 7 bits to its sextet or to 0x80 outside the alphabet (a
 * byte >= 0x80 is caught by its own high bit), the AVX2 path's two
 * multiply-adds pack the sextets, one permute gathers the bytes. About a
 * fifth of the AVX2 path's instructions per byte, on the CPUs that have it
 * (Ice Lake and later servers); asked at run time like AVX2.
 */
#define TGT_VBMI __attribute__((target("avx2,avx512f,avx512bw,avx512vbmi")))

/* Lane k of the spread: input bytes 3k+1, 3k, 3k+2, 3k+1. */
#define SPREAD(k) 3 * (k) + 1, 3 * (k), 3 * (k) + 2, 3 * (k) + 1
static const uint8_t enc512_spread[64] = { SPREAD(0),  SPREAD(1),  SPREAD(2),  SPREAD(3),
                                           SPREAD(4),  SPREAD(5),  SPREAD(6),  SPREAD(7),
                                           SPREAD(8),  SPREAD(9),  SPREAD(10), SPREAD(11),
                                           SPREAD(12), SPREAD(13), SPREAD(14), SPREAD(15) };
#define ALPHA(v) B64C(v)
static const uint8_t enc512_alphabet[64] = { T64(ALPHA, 0) };
/* Sextet of each 7-bit character, 0x80 outside the alphabet. */
#define DV(c) (B64V(c) < 0 ? 0x80 : B64V(c))
static const uint8_t dec512_sextet[128] = { T64(DV, 0), T64(DV, 64) };
/* Output bytes 3k, 3k+1, 3k+2 are bytes 2, 1, 0 of packed lane k. */
#define GATHER(k) 4 * (k) + 2, 4 * (k) + 1, 4 * (k)
static const uint8_t dec512_gather[64] = { GATHER(0),  GATHER(1),  GATHER(2),  GATHER(3),
                                           GATHER(4),  GATHER(5),  GATHER(6),  GATHER(7),
                                           GATHER(8),  GATHER(9),  GATHER(10), GATHER(11),
                                           GATHER(12), GATHER(13), GATHER(14), GATHER(15) };

/* GCC 12's avx512vbmiintrin.h passes an undefined register as the unused
 * merge source of the unmasked permutes, and -Wmaybe-uninitialized reports
 * it where they are inlined: not our variable. */
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

/* A 64-byte load per 48 bytes: while 64 are left; the AVX2 or scalar code
 * does the rest. */
TGT_VBMI static size_t enc_avx512(const void *in, size_t n, char *out)
{
    const uint8_t *s = in;
    char *o = out;
    const __m512i spread = _mm512_loadu_si512(enc512_spread), alphabet = _mm512_loadu_si512(enc512_alphabet);
    /* Bit offsets of the sextets in each 64-bit pair of lanes, for output
     * bytes 0..7: 10, 4, 22, 16, then the same + 32. */
    const __m512i shifts = _mm512_set1_epi64(0x3036242a1016040aLL);
    for (; n >= 64; s += 48, n -= 48, o += 64) {
        __m512i v = _mm512_permutexvar_epi8(spread, _mm512_loadu_si512(s));
        _mm512_storeu_si512(o, _mm512_permutexvar_epi8(_mm512_multishift_epi64_epi8(shifts, v), alphabet));
    }
    _mm256_zeroupper(); /* as in enc_avx2 */
    return (size_t)(o - out) + (n >= 28 ? enc_avx2(s, n, o) : enc_scalar(s, n, o));
}

/* 64 characters -> 48 bytes with a 64-byte store: while at least 88 are
 * left (66 bytes of room, and the last quad, maybe padded, not among
 * them); dec_avx2 does the rest. */
TGT_VBMI static int dec_avx512(const char *in, size_t n, uint8_t *out, size_t *outlen)
{
    const char *s = in;
    uint8_t *o = out;
    const __m512i lo = _mm512_loadu_si512(dec512_sextet), hi = _mm512_loadu_si512(dec512_sextet + 64);
    const __m512i gather = _mm512_loadu_si512(dec512_gather);
    for (; n >= 88; s += 64, n -= 64, o += 48) {
        __m512i c = _mm512_loadu_si512(s);
        __m512i v = _mm512_permutex2var_epi8(lo, c, hi);
        if (_unlikely_(_mm512_movepi8_mask(_mm512_or_si512(v, c))))
            return -EINVAL;
        v = _mm512_maddubs_epi16(v, _mm512_set1_epi32(0x01400140));
        v = _mm512_madd_epi16(v, _mm512_set1_epi32(0x00011000));
        _mm512_storeu_si512(o, _mm512_permutexvar_epi8(gather, v));
    }
    _mm256_zeroupper();
    size_t tail;
    int r = dec_avx2(s, n, o, &tail);
    if (r == 0)
        *outlen = (size_t)(o - out) + tail;
    return r;
}

#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif

static bool have_vbmi(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vbmi");
}
#endif

unsigned base64_impls(void)
{
    unsigned m = 1u << BASE64_SCALAR;
#ifdef B64_X86
    if (__builtin_cpu_supports("avx2"))
        m |= 1u << BASE64_AVX2;
    if (__builtin_cpu_supports("avx2") && have_vbmi())
        m |= 1u << BASE64_AVX512;
#endif
    return m;
}

int base64_decode_impl(enum base64_impl impl, const char *in, size_t n, uint8_t *out, size_t *outlen)
{
    if (n % 4)
        return -EINVAL;
#ifdef B64_X86
    if (impl == BASE64_AVX512 && (base64_impls() >> BASE64_AVX512 & 1))
        return dec_avx512(in, n, out, outlen);
    if (impl == BASE64_AVX2 && (base64_impls() >> BASE64_AVX2 & 1))
        return dec_avx2(in, n, out, outlen);
#endif
    (void)impl;
    return dec_scalar(in, n, out, outlen);
}

size_t base64_encode_impl(enum base64_impl impl, const void *in, size_t n, char *out)
{
#ifdef B64_X86
    if (impl == BASE64_AVX512 && (base64_impls() >> BASE64_AVX512 & 1))
        return enc_avx512(in, n, out);
    if (impl == BASE64_AVX2 && (base64_impls() >> BASE64_AVX2 & 1))
        return enc_avx2(in, n, out);
#endif
    (void)impl;
    return enc_scalar(in, n, out);
}

int base64_decode(const char *in, size_t n, uint8_t *out, size_t *outlen)
{
    if (n % 4)
        return -EINVAL;
#ifdef B64_X86
    if (n >= 44 && __builtin_cpu_supports("avx2"))
        return n >= 88 && have_vbmi() ? dec_avx512(in, n, out, outlen) : dec_avx2(in, n, out, outlen);
#endif
    return dec_scalar(in, n, out, outlen);
}

size_t base64_encode(const void *in, size_t n, char *out)
{
#ifdef B64_X86
    if (n >= 28 && __builtin_cpu_supports("avx2"))
        return n >= 64 && have_vbmi() ? enc_avx512(in, n, out) : enc_avx2(in, n, out);
#endif
    return enc_scalar(in, n, out);
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
