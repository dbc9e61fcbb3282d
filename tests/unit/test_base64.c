/* SPDX-License-Identifier: Apache-2.0 */
#include <stdlib.h>

#include "rarewatch/base64.h"
#include "tap.h"

static const char *dec(const char *in, int *r)
{
    static char out[256];
    size_t n = 0;
    *r = base64_decode(in, strlen(in), (uint8_t *)out, &n);
    out[*r == 0 ? n : 0] = 0;
    return out;
}

TEST(rfc4648_vectors)
{
    const char *plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    const char *enc[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
    for (size_t i = 0; i < ELEMENTSOF(plain); i++) {
        char out[16];
        size_t n = base64_encode(plain[i], strlen(plain[i]), out);
        out[n] = 0;
        CHECK_STR(out, enc[i]);
        CHECK_UINT(n, base64_encoded_len(strlen(plain[i])));
        int r;
        CHECK_STR(dec(enc[i], &r), plain[i]);
        CHECK_INT(r, 0);
    }
}

TEST(rejects_malformed)
{
    const char *bad[] = {
        "Zg=", "Zg", "Z", "Zm9", "Zg===", "====", "Z===", "=Zg=", "Zg=a", "Zm=v", "Zm9v=Zg=",
        "Zm9v Zg==", "Zm9v\nZg==", "Zm9-", "Zm9_", "Zm9v\xff\xff\xff\xff",
        "Zh==", /* non-zero pad bits: canonical is Zg== */
        "Zm9=", /* canonical is Zm8= */
        "Zm9vYmFyZm9vYmFyZm9vYmFy!m9v", /* bad char inside the 8-char fast loop */
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        int r;
        dec(bad[i], &r);
        if (r != -EINVAL)
            TAP_FAIL_("accepted %s", bad[i]);
    }
}

TEST(roundtrip_all_lengths_and_bytes)
{
    uint8_t in[300], back[300];
    char enc[404];
    uint32_t x = 12345;
    for (size_t len = 0; len <= sizeof(in); len++) {
        for (size_t i = 0; i < len; i++) {
            x = x * 1103515245 + 12345;
            in[i] = (uint8_t)(x >> 16);
        }
        size_t n = base64_encode(in, len, enc);
        size_t m = 0;
        CHECK_INT(base64_decode(enc, n, back, &m), 0);
        CHECK_UINT(m, len);
        if (memcmp(in, back, len) != 0)
            TAP_FAIL_("roundtrip of %zu bytes differs", len);
        CHECK(base64_decoded_max(n) >= len);
    }
}

/* The pair-table fast loop (6 bytes at a time) against the definition, one
 * sextet at a time, for every length around the loop's boundaries, and no
 * byte written past base64_encoded_len. */
TEST(encode_matches_reference_and_stays_in_bounds)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t in[200];
    char ref[280], enc[280 + 8];
    uint32_t x = 777;
    for (size_t len = 0; len <= sizeof(in); len++) {
        for (size_t i = 0; i < len; i++) {
            x = x * 1103515245 + 12345;
            in[i] = (uint8_t)(x >> 16);
        }
        size_t k = 0;
        for (size_t bit = 0; bit < len * 8; bit += 6) {
            unsigned v = 0;
            for (size_t b = bit; b < bit + 6; b++)
                v = v << 1 | (b < len * 8 ? (in[b / 8] >> (7 - b % 8)) & 1u : 0u);
            ref[k++] = abc[v];
        }
        while (k % 4)
            ref[k++] = '=';
        memset(enc, '#', sizeof(enc));
        size_t n = base64_encode(in, len, enc);
        CHECK_UINT(n, k);
        if (memcmp(enc, ref, k) != 0)
            TAP_FAIL_("encoding of %zu bytes differs from the reference", len);
        for (size_t i = n; i < n + 8; i++)
            if (enc[i] != '#')
                TAP_FAIL_("len %zu: byte %zu past the output was written", len, i);
    }
}

TEST(decode_writes_nothing_past_its_output)
{
    /* The 8-byte stores of the fast loop must stay inside decoded_max. */
    for (size_t len = 1; len <= 64; len++) {
        uint8_t in[64];
        char enc[100];
        memset(in, 0xA5, len);
        size_t n = base64_encode(in, len, enc);
        size_t room = base64_decoded_max(n);
        uint8_t *out = malloc(room + 8);
        memset(out, 0x5A, room + 8);
        size_t m;
        CHECK_INT(base64_decode(enc, n, out, &m), 0);
        for (size_t i = room; i < room + 8; i++)
            if (out[i] != 0x5A)
                TAP_FAIL_("len %zu: byte %zu past the room was written", len, i);
        free(out);
    }
}

TEST(every_invalid_byte_rejected_at_every_position)
{
    char s[17] = "QUJDREVGR0hJSktM"; /* "ABCDEFGHIJKL" */
    for (int c = 0; c < 256; c++) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/')
            continue;
        for (int pos = 0; pos < 16; pos++) {
            char t[17];
            memcpy(t, s, 17);
            t[pos] = (char)c;
            uint8_t out[12];
            size_t m;
            int r = base64_decode(t, 16, out, &m);
            /* '=' is valid padding only in the last two places, and there
             * only in the accepted shapes; this input is canonical only
             * unpadded. */
            if (r == 0 && !(c == '=' && pos >= 14))
                TAP_FAIL_("accepted byte 0x%02x at %d", c, pos);
        }
    }
}

/* The SIMD path (AVX2, where the CPU has it) against the scalar
 * one byte for byte: encodings of every length up to 600, decodings of
 * those, every invalid byte at every position of a 96-character input (it
 * spans the SIMD blocks and the scalar tail), corrupted padding, and no
 * byte written past the output's room. */
TEST(every_path_agrees_with_scalar)
{
    unsigned have = base64_impls();
    CHECK(have & 1u << BASE64_SCALAR);
#if defined(__x86_64__)
    /* The build machine and CI have AVX2; a path that silently fell back
     * would test nothing. */
    CHECK(have & 1u << BASE64_AVX2);
#endif
    static uint8_t in[600];
    static char ref[808], enc[808 + 40];
    static uint8_t ref_dec[620], dec_out[620 + 40];
    uint32_t x = 4242;
    for (size_t i = 0; i < sizeof(in); i++) {
        x = x * 1103515245 + 12345;
        in[i] = (uint8_t)(x >> 16);
    }
    for (int impl = BASE64_AVX2; impl <= BASE64_IMPL_LAST; impl++) {
        if (!(have & 1u << impl))
            continue;
        for (size_t len = 0; len <= sizeof(in); len++) {
            size_t k = base64_encode_impl(BASE64_SCALAR, in, len, ref);
            memset(enc, '#', sizeof(enc));
            size_t n = base64_encode_impl((enum base64_impl)impl, in, len, enc);
            if (n != k || memcmp(enc, ref, k) != 0)
                TAP_FAIL_("impl %d: encoding of %zu bytes differs", impl, len);
            for (size_t i = n; i < n + 40; i++)
                if (enc[i] != '#')
                    TAP_FAIL_("impl %d, len %zu: byte %zu past the output was written", impl, len, i);
            size_t room = base64_decoded_max(k), m = 0, mr = 0;
            memset(dec_out, 0x5A, sizeof(dec_out));
            CHECK_INT(base64_decode_impl(BASE64_SCALAR, ref, k, ref_dec, &mr), 0);
            int r = base64_decode_impl((enum base64_impl)impl, ref, k, dec_out, &m);
            if (r != 0 || m != mr || m != len || memcmp(dec_out, in, len) != 0)
                TAP_FAIL_("impl %d: decoding of %zu characters differs", impl, k);
            for (size_t i = room; i < room + 40; i++)
                if (dec_out[i] != 0x5A)
                    TAP_FAIL_("impl %d, %zu characters: byte %zu past the room was written", impl, k, i);
        }
        /* 72 bytes -> 96 characters, then one byte replaced. */
        char good[97];
        CHECK_UINT(base64_encode_impl(BASE64_SCALAR, in, 71, good), 96);
        for (int c = 0; c < 256; c++)
            for (int pos = 0; pos < 96; pos++) {
                char t[96];
                memcpy(t, good, 96);
                t[pos] = (char)c;
                size_t m1 = 0, m2 = 0;
                uint8_t o1[72], o2[72 + 32];
                int r1 = base64_decode_impl(BASE64_SCALAR, t, 96, o1, &m1);
                int r2 = base64_decode_impl((enum base64_impl)impl, t, 96, o2, &m2);
                if (r1 != r2 || (r1 == 0 && (m1 != m2 || memcmp(o1, o2, m1) != 0)))
                    TAP_FAIL_("impl %d: byte 0x%02x at %d: %d/%zu vs scalar %d/%zu", impl, c, pos, r2, m2,
                              r1, m1);
            }
    }
}

TEST(buf_put_base64_appends)
{
    struct buf b = BUF_INIT;
    CHECK_INT(buf_puts(&b, "x="), 0);
    CHECK_INT(buf_put_base64(&b, "foobar", 6), 0);
    CHECK_STR(b.data, "x=Zm9vYmFy");
    buf_free(&b);
}

TAP_MAIN
