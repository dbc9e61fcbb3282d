/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * AWS Signature Version 4 (header signing, non-S3 rules).
 *
 * Pure: no I/O, no locks, no logging. One struct sigv4_key_cache per thread
 * carries the OpenSSL contexts and the derived signing keys, so a signature
 * costs no fetch and no key derivation once the cache is warm (the key only
 * changes with the UTC day, the secret, the region or the service).
 *
 *   struct sigv4_key_cache *kc = sigv4_key_cache_new();      // per thread
 *   struct sigv4_result res = SIGV4_RESULT_INIT;             // reused
 *   struct sigv4_header hdrs[] = {{"Host", "kinesis.eu-west-1.amazonaws.com"},
 *                                 {"X-Amz-Target", "Kinesis_20131202.GetRecords"}};
 *   struct sigv4_request rq = { .method = "POST", .path = "/", .headers = hdrs,
 *       .n_headers = 2, .payload = body, .payload_len = n, .region = "eu-west-1",
 *       .service = "kinesis", .time = time(NULL) };
 *   r = sigv4_sign(kc, &creds, &rq, &res);
 *   for (size_t i = 0; i < res.n_headers; i++) add res.headers[i] to the request
 *
 * Canonicalisation (what the caller may rely on):
 *  - path: the path exactly as sent on the wire (it may already hold %XX
 *    escapes). Dot segments and empty segments are removed unless
 *    keep_path_unnormalized, then every byte but A-Z a-z 0-9 - _ . ~ and '/'
 *    is percent-encoded, which encodes wire escapes a second time as AWS
 *    requires for every service but S3. NULL or "" means "/".
 *  - query: without the '?'. Pairs split on '&', key and value on the first
 *    '='; %XX escapes are decoded and the bytes re-encoded with the
 *    unreserved set, so raw and pre-encoded input sign the same. '+' is a
 *    literal plus, not a space. Pairs are sorted by encoded key, then value.
 *  - headers: names are matched case-insensitively and lowercased; values
 *    are trimmed and inner runs of ASCII whitespace (including folded line
 *    breaks) collapse to one space; repeated names join with ',' in the
 *    order given. Hop-by-hop and proxy-rewritten headers (Connection,
 *    Expect, Keep-Alive, Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade,
 *    User-Agent, X-Amzn-Trace-Id) are left unsigned, as botocore does. Host
 *    is required. Authorization, X-Amz-Date and X-Amz-Security-Token belong
 *    to the signer and are rejected in the input.
 *
 * Errors: -EINVAL malformed input (bad percent escape, missing Host, a
 * reserved header, a control byte in a name, a region/service longer than
 * SIGV4_MAX_SCOPE_PART, a year outside 0000..9999), -E2BIG more than
 * SIGV4_MAX_HEADERS headers or SIGV4_MAX_QUERY_PARAMS query pairs, -ENOMEM,
 * -EIO when OpenSSL fails.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "rarewatch/buf.h"
#include "rarewatch/macro.h"

#define SIGV4_MAX_HEADERS 64
#define SIGV4_MAX_QUERY_PARAMS 128
#define SIGV4_MAX_SCOPE_PART 63     /* region, service */
#define SIGV4_MAX_SECRET_LEN 256
#define SIGV4_AMZ_DATE_LEN 16       /* 20150830T123600Z */
#define SIGV4_HEX_LEN 64            /* hex SHA-256 / signature */
#define SIGV4_KEY_LEN 32

struct sigv4_credentials {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token;      /* NULL or "" when not temporary credentials */
};

struct sigv4_header {
    const char *name;
    const char *value;
};

struct sigv4_request {
    const char *method;             /* as sent: "GET", "POST" */
    const char *path;               /* see above; NULL means "/" */
    const char *query;              /* without '?'; NULL or "" for none */
    const struct sigv4_header *headers;
    size_t n_headers;
    /* The body is hashed unless payload_hash is set: a hex SHA-256 computed
     * elsewhere (or "UNSIGNED-PAYLOAD"), used verbatim. */
    const void *payload;
    size_t payload_len;
    const char *payload_hash;
    const char *region;
    const char *service;
    time_t time;                    /* seconds since the epoch; formatted in UTC */
    bool keep_path_unnormalized;
};

/*
 * Output, reused across calls so the steady state allocates nothing in this
 * module. headers[] lists what to add to the HTTP request: X-Amz-Date,
 * X-Amz-Security-Token when the credentials carry one, and Authorization.
 * Its pointers refer into this struct and the credentials, valid until the
 * next sigv4_sign() on it or sigv4_result_free(). The canonical request and
 * string to sign are kept because they are what AWS echoes back in a
 * SignatureDoesNotMatch error, so a caller can compare when that happens.
 */
struct sigv4_result {
    char amz_date[SIGV4_AMZ_DATE_LEN + 1];
    char signature[SIGV4_HEX_LEN + 1];
    struct sigv4_header headers[3];
    size_t n_headers;
    struct buf authorization;
    struct buf canonical_request;
    struct buf string_to_sign;
    struct buf scratch;
};

#define SIGV4_RESULT_INIT { .n_headers = 0 }

/* Releases the buffers (not r itself). */
void sigv4_result_free(struct sigv4_result *r);

struct sigv4_key_cache;

struct sigv4_key_cache_stats {
    uint64_t hits;
    uint64_t derivations;
};

/* NULL when OpenSSL cannot provide HMAC-SHA256. Caller owns. */
struct sigv4_key_cache *sigv4_key_cache_new(void);
/* Wipes the cached keys with OPENSSL_cleanse; NULL is a no-op. Returns NULL. */
struct sigv4_key_cache *sigv4_key_cache_free(struct sigv4_key_cache *kc);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct sigv4_key_cache *, sigv4_key_cache_free);
/* Forget (and wipe) every cached key, e.g. when credentials are revoked. */
void sigv4_key_cache_clear(struct sigv4_key_cache *kc);
struct sigv4_key_cache_stats sigv4_key_cache_get_stats(const struct sigv4_key_cache *kc);

int sigv4_sign(struct sigv4_key_cache *kc, const struct sigv4_credentials *creds,
               const struct sigv4_request *req, struct sigv4_result *out)
    _nonnull_(1, 2, 3, 4) _warn_unused_result_;

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
 * "aws4_request"), date as YYYYMMDD. Exposed for tests and tools; signing
 * goes through the cache. */
int sigv4_derive_signing_key(const char *secret, const char *date, const char *region,
                             const char *service, uint8_t out[SIGV4_KEY_LEN])
    _nonnull_(1, 2, 3, 4, 5) _warn_unused_result_;

/* Lowercase hex of n bytes into out (2n + 1 bytes with the NUL). */
void sigv4_hex(const uint8_t *in, size_t n, char *out);
