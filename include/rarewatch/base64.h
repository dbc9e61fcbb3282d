/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Standard base64 (RFC 4648 section 4, '+' '/', '=' padding), as Kinesis
 * and Firehose put it in JSON "Data" fields.
 *
 * Decoding is strict: the length must be a multiple of 4, only the alphabet
 * is allowed (no whitespace, no URL-safe characters), '=' only as one or two
 * final padding characters, and the unused bits before padding must be zero
 * (the canonical encoding AWS produces). Anything else is -EINVAL, so a
 * corrupted record is reported instead of silently decoded to other bytes.
 */
#include <stddef.h>
#include <stdint.h>

#include "rarewatch/buf.h"

/* Output room base64_decode needs for n input characters. */
static inline size_t base64_decoded_max(size_t n) { return n / 4 * 3; }
/* Characters base64_encode writes for n input bytes. */
static inline size_t base64_encoded_len(size_t n) { return (n + 2) / 3 * 4; }

/* Decode in[0..n) into out (base64_decoded_max(n) bytes of room; no NUL is
 * written). 0 with *outlen set, or -EINVAL. */
int base64_decode(const char *in, size_t n, uint8_t *out, size_t *outlen);
/* Encode; writes exactly base64_encoded_len(n) characters, no NUL. */
size_t base64_encode(const void *in, size_t n, char *out);
/* The implementations (x86-64: AVX2 and AVX-512 VBMI besides the scalar
 * code, picked at run time; base64_encode/decode use the widest the CPU
 * has). For the tests and the fuzz target, which check that each gives the
 * scalar code's bytes: the bitmask of those this CPU has (1 << impl); one
 * it lacks falls back to scalar. */
enum base64_impl { BASE64_SCALAR, BASE64_AVX2, BASE64_AVX512, BASE64_IMPL_LAST = BASE64_AVX512 };
unsigned base64_impls(void);
int base64_decode_impl(enum base64_impl impl, const char *in, size_t n, uint8_t *out, size_t *outlen);
size_t base64_encode_impl(enum base64_impl impl, const void *in, size_t n, char *out);
/* Append the encoding of in[0..n) to b. */
int buf_put_base64(struct buf *b, const void *in, size_t n);
