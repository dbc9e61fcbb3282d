/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/sigv4.h"

#include <assert.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

/* Kinesis, Firehose and CloudWatch from one thread, with room for a region
 * change, without evicting each other every call. */
#define KEY_SLOTS 4

#define ALGORITHM "AWS4-HMAC-SHA256"
#define TERMINATOR "aws4_request"

struct key_slot {
    EVP_MAC_CTX *mac; /* keyed with kSigning while used */
    bool used;
    uint64_t last_use;
    uint8_t secret_fp[SIGV4_KEY_LEN];
    char date[8];
    uint8_t region_len, service_len;
    char region[SIGV4_MAX_SCOPE_PART];
    char service[SIGV4_MAX_SCOPE_PART];
};

struct sigv4_key_cache {
    EVP_MD *sha256;
    EVP_MAC *hmac;
    EVP_MD_CTX *md;
    EVP_MAC_CTX *derive;
    uint64_t clock;
    struct sigv4_key_cache_stats stats;
    struct key_slot slot[KEY_SLOTS];
};

/* ---- small helpers ---------------------------------------------------- */

static const char hexdigits[] = "0123456789abcdef";
static const char HEXDIGITS[] = "0123456789ABCDEF";

void sigv4_hex(const uint8_t *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdigits[in[i] >> 4];
        out[2 * i + 1] = hexdigits[in[i] & 15];
    }
    out[2 * n] = 0;
}

static inline char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
}

static inline bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

/* The whitespace an HTTP value may carry, folded continuation lines included
 * (get-header-value-multiline). Non-ASCII is never whitespace here. */
static inline bool is_value_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static inline bool is_visible_ascii(char c)
{
    return c > 0x20 && c < 0x7f;
}

static inline int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = ascii_lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static inline char *put(char *p, const void *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static inline char *put_encoded_byte(char *p, unsigned char c)
{
    if (is_unreserved(c)) {
        *p++ = (char)c;
    } else {
        *p++ = '%';
        *p++ = HEXDIGITS[c >> 4];
        *p++ = HEXDIGITS[c & 15];
    }
    return p;
}

static bool ascii_eq_lower(const char *s, size_t n, const char *lower)
{
    size_t i = 0;
    for (; i < n; i++)
        if (lower[i] == 0 || ascii_lower(s[i]) != lower[i])
            return false;
    return lower[i] == 0;
}

/* Anything that is not a plain token would corrupt the credential scope or
 * the Authorization header, which are '/'- and ','-delimited. */
static bool valid_scope_part(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!is_visible_ascii(s[n]) || s[n] == '/' || s[n] == ',' || n >= max)
            return false;
    return n > 0;
}

static int crypto_failed(void)
{
    /* Leaving our failure on the thread's error queue would be reported
     * later by curl's TLS code as the cause of an unrelated error. */
    ERR_clear_error();
    return -EIO;
}

/* ---- date ------------------------------------------------------------- */

/* Civil date from a day count (H. Hinnant's algorithm): gmtime_r() takes
 * glibc's timezone lock on every call, and signing must not. */
static int format_amz_date(time_t t, char out[SIGV4_AMZ_DATE_LEN + 1])
{
    int64_t secs = (int64_t)t;
    int64_t days = secs / 86400, sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days--;
    }
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    if (y < 0 || y > 9999)
        return -EINVAL;

    int64_t hh = sod / 3600, mm = sod / 60 % 60, ss = sod % 60;
    int64_t v[] = {y / 1000, y / 100 % 10, y / 10 % 10, y % 10, m / 10, m % 10, d / 10, d % 10};
    for (size_t i = 0; i < 8; i++)
        out[i] = (char)('0' + v[i]);
    out[8] = 'T';
    int64_t w[] = {hh / 10, hh % 10, mm / 10, mm % 10, ss / 10, ss % 10};
    for (size_t i = 0; i < 6; i++)
        out[9 + i] = (char)('0' + w[i]);
    out[15] = 'Z';
    out[16] = 0;
    return 0;
}

/* ---- OpenSSL primitives --------------------------------------------- */

static int sha256(EVP_MD_CTX *md, const EVP_MD *alg, const void *p, size_t n,
                  uint8_t out[SIGV4_KEY_LEN])
{
    unsigned len = 0;
    if (!EVP_DigestInit_ex2(md, alg, NULL) || !EVP_DigestUpdate(md, p, n) ||
        !EVP_DigestFinal_ex(md, out, &len) || len != SIGV4_KEY_LEN)
        return crypto_failed();
    return 0;
}

/* key == NULL re-runs the MAC with the key it already holds, which skips
 * the ipad/opad set-up that dominates an HMAC of a short message. */
static int hmac(EVP_MAC_CTX *c, const void *key, size_t keylen, const void *msg, size_t n,
                uint8_t out[SIGV4_KEY_LEN])
{
    size_t len = 0;
    if (!EVP_MAC_init(c, key, keylen, NULL) || !EVP_MAC_update(c, msg, n) ||
        !EVP_MAC_final(c, out, &len, SIGV4_KEY_LEN) || len != SIGV4_KEY_LEN)
        return crypto_failed();
    return 0;
}

static EVP_MAC_CTX *hmac_sha256_new(EVP_MAC *alg)
{
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC_CTX *c = EVP_MAC_CTX_new(alg);
    if (c && !EVP_MAC_CTX_set_params(c, params)) {
        EVP_MAC_CTX_free(c);
        c = NULL;
    }
    return c;
}

static int derive_key(EVP_MAC_CTX *c, const char *secret, size_t secret_len, const char date[8],
                      const char *region, size_t region_len, const char *service,
                      size_t service_len, uint8_t out[SIGV4_KEY_LEN])
{
    uint8_t k0[4 + SIGV4_MAX_SECRET_LEN];
    uint8_t a[SIGV4_KEY_LEN], b[SIGV4_KEY_LEN];
    int r;

    if (secret_len > SIGV4_MAX_SECRET_LEN)
        return -EINVAL;
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, secret_len);
    r = hmac(c, k0, 4 + secret_len, date, 8, a);
    if (r >= 0)
        r = hmac(c, a, sizeof(a), region, region_len, b);
    if (r >= 0)
        r = hmac(c, b, sizeof(b), service, service_len, a);
    if (r >= 0)
        r = hmac(c, a, sizeof(a), TERMINATOR, strlen(TERMINATOR), out);
    OPENSSL_cleanse(k0, sizeof(k0));
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    return r;
}

int sigv4_derive_signing_key(const char *secret, const char *date, const char *region,
                             const char *service, uint8_t out[SIGV4_KEY_LEN])
{
    if (strlen(date) != 8 || !valid_scope_part(region, SIGV4_MAX_SCOPE_PART) ||
        !valid_scope_part(service, SIGV4_MAX_SCOPE_PART))
        return -EINVAL;
    EVP_MAC *alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (!alg)
        return crypto_failed();
    EVP_MAC_CTX *c = hmac_sha256_new(alg);
    int r = c ? derive_key(c, secret, strlen(secret), date, region, strlen(region), service,
                           strlen(service), out)
              : crypto_failed();
    EVP_MAC_CTX_free(c);
    EVP_MAC_free(alg);
    return r;
}

/* ---- key cache -------------------------------------------------------- */

/* Re-keying with zeros overwrites the HMAC key schedule in place (OpenSSL
 * cleanses the digest state it replaces) without giving up the context,
 * whose creation would cost a locked digest fetch on the next miss. */
static int mac_wipe(EVP_MAC_CTX *c)
{
    static const uint8_t zero[SIGV4_KEY_LEN];
    uint8_t scratch[SIGV4_KEY_LEN];
    size_t len;
    if (!EVP_MAC_init(c, zero, sizeof(zero), NULL) || !EVP_MAC_final(c, scratch, &len, sizeof(scratch)))
        return crypto_failed();
    return 0;
}

static void slot_clear(struct key_slot *s)
{
    EVP_MAC_CTX *mac = s->mac;
    if (mac && s->used && mac_wipe(mac) < 0) {
        /* Could not overwrite: free instead, OpenSSL cleanses on free. */
        EVP_MAC_CTX_free(mac);
        mac = NULL;
    }
    OPENSSL_cleanse(s, sizeof(*s));
    s->mac = mac;
}

struct sigv4_key_cache *sigv4_key_cache_new(void)
{
    struct sigv4_key_cache *kc = calloc(1, sizeof(*kc));
    if (!kc)
        return NULL;
    /* Fetching is a locked lookup in OpenSSL's method store; doing it once
     * here keeps sigv4_sign() free of it. */
    kc->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    kc->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    kc->md = EVP_MD_CTX_new();
    kc->derive = kc->hmac ? hmac_sha256_new(kc->hmac) : NULL;
    bool slots_ok = true;
    for (size_t i = 0; i < KEY_SLOTS && kc->hmac; i++)
        slots_ok = (kc->slot[i].mac = hmac_sha256_new(kc->hmac)) && slots_ok;
    if (!kc->sha256 || !kc->hmac || !kc->md || !kc->derive || !slots_ok) {
        ERR_clear_error();
        return sigv4_key_cache_free(kc);
    }
    return kc;
}

void sigv4_key_cache_clear(struct sigv4_key_cache *kc)
{
    for (size_t i = 0; i < KEY_SLOTS; i++)
        slot_clear(&kc->slot[i]);
}

struct sigv4_key_cache *sigv4_key_cache_free(struct sigv4_key_cache *kc)
{
    if (!kc)
        return NULL;
    for (size_t i = 0; i < KEY_SLOTS; i++)
        EVP_MAC_CTX_free(kc->slot[i].mac);
    EVP_MAC_CTX_free(kc->derive);
    EVP_MD_CTX_free(kc->md);
    EVP_MAC_free(kc->hmac);
    EVP_MD_free(kc->sha256);
    OPENSSL_cleanse(kc, sizeof(*kc));
    free(kc);
    return NULL;
}

struct sigv4_key_cache_stats sigv4_key_cache_get_stats(const struct sigv4_key_cache *kc)
{
    return kc->stats;
}

/* The MAC context keyed with kSigning for this scope, derived on a miss. */
static int signing_mac(struct sigv4_key_cache *kc, const char *secret, const char date[8],
                       const char *region, const char *service, EVP_MAC_CTX **ret)
{
    size_t secret_len = strlen(secret), region_len = strlen(region),
           service_len = strlen(service);
    uint8_t fp[SIGV4_KEY_LEN];
    struct key_slot *victim = &kc->slot[0];
    int r;

    /* The cache must notice a rotated secret, yet holding the secret itself
     * would put a long-lived credential in one more place in memory. */
    r = sha256(kc->md, kc->sha256, secret, secret_len, fp);
    if (r < 0)
        return r;

    kc->clock++;
    for (size_t i = 0; i < KEY_SLOTS; i++) {
        struct key_slot *s = &kc->slot[i];
        if (!s->used) {
            victim = s;
            continue;
        }
        if (memcmp(s->date, date, 8) == 0 && s->region_len == region_len &&
            s->service_len == service_len && memcmp(s->region, region, region_len) == 0 &&
            memcmp(s->service, service, service_len) == 0 &&
            CRYPTO_memcmp(s->secret_fp, fp, sizeof(fp)) == 0) {
            s->last_use = kc->clock;
            kc->stats.hits++;
            *ret = s->mac;
            return 0;
        }
        if (victim->used && s->last_use < victim->last_use)
            victim = s;
    }

    uint8_t key[SIGV4_KEY_LEN];
    slot_clear(victim);
    if (!victim->mac) {
        victim->mac = hmac_sha256_new(kc->hmac);
        if (!victim->mac)
            return crypto_failed();
    }
    r = derive_key(kc->derive, secret, secret_len, date, region, region_len, service,
                   service_len, key);
    if (r >= 0) {
        /* Keying runs the MAC once; its output is discarded. */
        uint8_t scratch[SIGV4_KEY_LEN];
        r = hmac(victim->mac, key, sizeof(key), "", 0, scratch);
    }
    /* The derivation context still holds kService (or, after a failure,
     * whatever step it reached); none of it may outlive this call. */
    int w = mac_wipe(kc->derive);
    if (r >= 0)
        r = w;
    OPENSSL_cleanse(key, sizeof(key));
    if (r < 0) {
        victim->used = true; /* so that slot_clear() overwrites a half-set key */
        slot_clear(victim);
        return r;
    }
    victim->used = true;
    memcpy(victim->secret_fp, fp, sizeof(fp));
    memcpy(victim->date, date, 8);
    victim->region_len = (uint8_t)region_len;
    victim->service_len = (uint8_t)service_len;
    memcpy(victim->region, region, region_len);
    memcpy(victim->service, service, service_len);
    victim->last_use = kc->clock;
    kc->stats.derivations++;
    *ret = victim->mac;
    return 0;
}

/* ---- canonical request ----------------------------------------------- */

struct hdr {
    const char *name;
    const char *value;
    size_t name_len;
};

struct qpair {
    uint32_t key_off, key_len, val_off, val_len;
};

static const char *const unsigned_headers[] = {
    "connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id",
};

static int hdr_cmp(const struct hdr *a, const struct hdr *b)
{
    size_t n = MIN(a->name_len, b->name_len);
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)ascii_lower(a->name[i]);
        unsigned char y = (unsigned char)ascii_lower(b->name[i]);
        if (x != y)
            return x < y ? -1 : 1;
    }
    return (a->name_len > b->name_len) - (a->name_len < b->name_len);
}

static int bytes_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, MIN(an, bn));
    if (c)
        return c;
    return (an > bn) - (an < bn);
}

static int qpair_cmp(const char *base, const struct qpair *a, const struct qpair *b)
{
    int c = bytes_cmp(base + a->key_off, a->key_len, base + b->key_off, b->key_len);
    if (c)
        return c;
    return bytes_cmp(base + a->val_off, a->val_len, base + b->val_off, b->val_len);
}

/* Encode one query component (decoding %XX first) into p. */
static int put_query_component(char **pp, const char *s, size_t n)
{
    char *p = *pp;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (n - i < 3)
                return -EINVAL;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0)
                return -EINVAL;
            c = (unsigned char)(h << 4 | l);
            i += 2;
        }
        p = put_encoded_byte(p, c);
    }
    *pp = p;
    return 0;
}

/* Encoded pairs go to scratch, sorted, then into the canonical request. */
static int put_canonical_query(struct buf *scratch, char **pp, const char *q)
{
    struct qpair pairs[SIGV4_MAX_QUERY_PARAMS];
    size_t n = 0, qlen = strlen(q);
    int r;

    /* Offsets into scratch are 32-bit to keep pairs[] small on the stack. */
    if (qlen > UINT32_MAX / 4)
        return -E2BIG;
    buf_reset(scratch);
    r = buf_reserve(scratch, 3 * qlen);
    if (r < 0)
        return r;

    char *base = scratch->data, *w = base;
    for (const char *s = q; *s;) {
        const char *amp = strchr(s, '&');
        size_t len = amp ? (size_t)(amp - s) : strlen(s);
        if (len > 0) {
            if (n == SIGV4_MAX_QUERY_PARAMS)
                return -E2BIG;
            const char *eq = memchr(s, '=', len);
            size_t klen = eq ? (size_t)(eq - s) : len;
            struct qpair *pr = &pairs[n++];
            pr->key_off = (uint32_t)(w - base);
            r = put_query_component(&w, s, klen);
            if (r < 0)
                return r;
            pr->key_len = (uint32_t)(w - base) - pr->key_off;
            pr->val_off = (uint32_t)(w - base);
            if (eq) {
                r = put_query_component(&w, eq + 1, len - klen - 1);
                if (r < 0)
                    return r;
            }
            pr->val_len = (uint32_t)(w - base) - pr->val_off;
        }
        s += len;
        if (*s == '&')
            s++;
    }
    scratch->len = (size_t)(w - base);
    scratch->data[scratch->len] = 0;

    /* Insertion sort: a handful of pairs, no allocation, no callback. */
    for (size_t i = 1; i < n; i++) {
        struct qpair t = pairs[i];
        size_t j = i;
        for (; j > 0 && qpair_cmp(base, &pairs[j - 1], &t) > 0; j--)
            pairs[j] = pairs[j - 1];
        pairs[j] = t;
    }

    char *p = *pp;
    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = '&';
        p = put(p, base + pairs[i].key_off, pairs[i].key_len);
        *p++ = '=';
        p = put(p, base + pairs[i].val_off, pairs[i].val_len);
    }
    *pp = p;
    return 0;
}

static char *put_canonical_path(char *p, const char *path, bool normalize)
{
    if (!path || !*path) {
        *p++ = '/';
        return p;
    }
    if (!normalize) {
        for (const char *s = path; *s; s++) {
            if (*s == '/')
                *p++ = '/';
            else
                p = put_encoded_byte(p, (unsigned char)*s);
        }
        return p;
    }

    /* RFC 3986 dot-segment removal plus dropping empty segments, as AWS
     * (and botocore) canonicalise. Encoded segments hold no '/', so popping
     * a segment is a scan back to the previous one. */
    *p++ = '/';
    char *start = p;
    size_t depth = 0;
    const char *s = path + 1;
    for (;;) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 0 || (len == 1 && s[0] == '.')) {
            /* skip */
        } else if (len == 2 && s[0] == '.' && s[1] == '.') {
            if (depth > 0) {
                while (p > start && p[-1] != '/')
                    p--;
                if (p > start)
                    p--; /* the separator before the popped segment */
                depth--;
            }
        } else {
            if (depth++ > 0)
                *p++ = '/';
            for (size_t i = 0; i < len; i++)
                p = put_encoded_byte(p, (unsigned char)s[i]);
        }
        if (!e)
            break;
        s = e + 1;
    }
    if (depth > 0 && path[strlen(path) - 1] == '/')
        *p++ = '/';
    return p;
}

static char *put_header_value(char *p, const char *v)
{
    bool pending = false, any = false;
    for (; *v; v++) {
        if (is_value_space(*v)) {
            pending = any;
            continue;
        }
        if (pending)
            *p++ = ' ';
        pending = false;
        any = true;
        *p++ = *v;
    }
    return p;
}

static bool value_is_blank(const char *v)
{
    for (; *v; v++)
        if (!is_value_space(*v))
            return false;
    return true;
}

/* ---- signing ---------------------------------------------------------- */

void sigv4_result_free(struct sigv4_result *r)
{
    buf_free(&r->authorization);
    buf_free(&r->canonical_request);
    buf_free(&r->string_to_sign);
    buf_free(&r->scratch);
    r->n_headers = 0;
}

static bool valid_payload_hash(const char *h)
{
    size_t n = 0;
    for (; h[n]; n++)
        if (!((h[n] >= '0' && h[n] <= '9') || (h[n] >= 'a' && h[n] <= 'z') ||
              (h[n] >= 'A' && h[n] <= 'Z') || h[n] == '-') ||
            n >= 128)
            return false;
    return n > 0;
}

int sigv4_sign(struct sigv4_key_cache *kc, const struct sigv4_credentials *creds,
               const struct sigv4_request *req, struct sigv4_result *out)
{
    struct hdr hdrs[SIGV4_MAX_HEADERS + 2];
    size_t nh = 0, bound;
    bool have_host = false;
    const char *token = creds->session_token && *creds->session_token ? creds->session_token : NULL;
    const char *path = req->path ? req->path : "";
    const char *query = req->query ? req->query : "";
    char payload_hex[SIGV4_HEX_LEN + 1];
    const char *payload_hash = req->payload_hash;
    uint8_t digest[SIGV4_KEY_LEN];
    int r;

    out->n_headers = 0;
    out->signature[0] = 0;

    if (!req->method || !*req->method || !creds->access_key_id || !creds->secret_access_key ||
        !*creds->secret_access_key || !req->region || !req->service)
        return -EINVAL;
    for (const char *m = req->method; *m; m++)
        if (!is_visible_ascii(*m))
            return -EINVAL;
    if (!valid_scope_part(creds->access_key_id, SIZE_MAX) ||
        !valid_scope_part(req->region, SIGV4_MAX_SCOPE_PART) ||
        !valid_scope_part(req->service, SIGV4_MAX_SCOPE_PART) ||
        strlen(creds->secret_access_key) > SIGV4_MAX_SECRET_LEN)
        return -EINVAL;
    if (*path && *path != '/')
        return -EINVAL;
    if (payload_hash ? !valid_payload_hash(payload_hash) : (!req->payload && req->payload_len))
        return -EINVAL;
    if (req->n_headers > SIGV4_MAX_HEADERS)
        return -E2BIG;
    r = format_amz_date(req->time, out->amz_date);
    if (r < 0)
        return r;

    /* Every length below is of a string already in memory, so only the
     * multiplied terms can approach overflow. */
    size_t path_len = strlen(path), query_len = strlen(query);
    if (path_len > SIZE_MAX / 8 || query_len > SIZE_MAX / 8)
        return -E2BIG;
    bound = strlen(req->method) + 1 + 3 * path_len + 3 + 4 * query_len + 2;

    for (size_t i = 0; i < req->n_headers; i++) {
        const struct sigv4_header *h = &req->headers[i];
        if (!h->name || !h->value)
            return -EINVAL;
        size_t nl = 0;
        for (; h->name[nl]; nl++)
            if (!is_visible_ascii(h->name[nl]) || h->name[nl] == ':')
                return -EINVAL;
        if (nl == 0)
            return -EINVAL;
        if (ascii_eq_lower(h->name, nl, "authorization") ||
            ascii_eq_lower(h->name, nl, "x-amz-date") ||
            ascii_eq_lower(h->name, nl, "x-amz-security-token"))
            return -EINVAL;
        bool skip = false;
        for (size_t k = 0; k < ELEMENTSOF(unsigned_headers) && !skip; k++)
            skip = ascii_eq_lower(h->name, nl, unsigned_headers[k]);
        if (skip)
            continue;
        if (ascii_eq_lower(h->name, nl, "host")) {
            if (value_is_blank(h->value))
                return -EINVAL;
            have_host = true;
        }
        hdrs[nh++] = (struct hdr){h->name, h->value, nl};
        bound += 2 * nl + strlen(h->value) + 3;
    }
    if (!have_host)
        return -EINVAL;
    hdrs[nh++] = (struct hdr){"x-amz-date", out->amz_date, strlen("x-amz-date")};
    bound += 2 * strlen("x-amz-date") + SIGV4_AMZ_DATE_LEN + 3;
    if (token) {
        hdrs[nh++] = (struct hdr){"x-amz-security-token", token, strlen("x-amz-security-token")};
        bound += 2 * strlen("x-amz-security-token") + strlen(token) + 3;
    }

    /* Stable, so repeated names keep the caller's value order. */
    for (size_t i = 1; i < nh; i++) {
        struct hdr t = hdrs[i];
        size_t j = i;
        for (; j > 0 && hdr_cmp(&hdrs[j - 1], &t) > 0; j--)
            hdrs[j] = hdrs[j - 1];
        hdrs[j] = t;
    }

    if (!payload_hash) {
        r = sha256(kc->md, kc->sha256, req->payload ? req->payload : "", req->payload_len,
                   digest);
        if (r < 0)
            return r;
        sigv4_hex(digest, sizeof(digest), payload_hex);
        payload_hash = payload_hex;
    }
    bound += strlen(payload_hash) + 2;

    /* One reservation, then unchecked writes: bound covers every byte. */
    struct buf *cr = &out->canonical_request;
    buf_reset(cr);
    r = buf_reserve(cr, bound);
    if (r < 0)
        return r;
    char *p = cr->data;
    p = put(p, req->method, strlen(req->method));
    *p++ = '\n';
    p = put_canonical_path(p, path, !req->keep_path_unnormalized);
    *p++ = '\n';
    if (*query) {
        r = put_canonical_query(&out->scratch, &p, query);
        if (r < 0)
            return r;
    }
    *p++ = '\n';
    for (size_t i = 0; i < nh; i++) {
        bool first = i == 0 || hdr_cmp(&hdrs[i - 1], &hdrs[i]) != 0;
        bool last = i + 1 == nh || hdr_cmp(&hdrs[i], &hdrs[i + 1]) != 0;
        if (first) {
            for (size_t k = 0; k < hdrs[i].name_len; k++)
                *p++ = ascii_lower(hdrs[i].name[k]);
            *p++ = ':';
        }
        p = put_header_value(p, hdrs[i].value);
        *p++ = last ? '\n' : ',';
    }
    *p++ = '\n';
    size_t signed_off = (size_t)(p - cr->data);
    for (size_t i = 0; i < nh; i++) {
        if (i > 0 && hdr_cmp(&hdrs[i - 1], &hdrs[i]) == 0)
            continue;
        if (i > 0)
            *p++ = ';';
        for (size_t k = 0; k < hdrs[i].name_len; k++)
            *p++ = ascii_lower(hdrs[i].name[k]);
    }
    size_t signed_len = (size_t)(p - cr->data) - signed_off;
    *p++ = '\n';
    p = put(p, payload_hash, strlen(payload_hash));
    cr->len = (size_t)(p - cr->data);
    assert(cr->len <= bound);
    cr->data[cr->len] = 0;

    r = sha256(kc->md, kc->sha256, cr->data, cr->len, digest);
    if (r < 0)
        return r;

    size_t region_len = strlen(req->region), service_len = strlen(req->service);
    size_t scope_len = 8 + 1 + region_len + 1 + service_len + 1 + strlen(TERMINATOR);
    struct buf *sts = &out->string_to_sign;
    buf_reset(sts);
    r = buf_reserve(sts, strlen(ALGORITHM) + 1 + SIGV4_AMZ_DATE_LEN + 1 + scope_len + 1 +
                             SIGV4_HEX_LEN);
    if (r < 0)
        return r;
    p = sts->data;
    p = put(p, ALGORITHM "\n", strlen(ALGORITHM) + 1);
    p = put(p, out->amz_date, SIGV4_AMZ_DATE_LEN);
    *p++ = '\n';
    char *scope = p;
    p = put(p, out->amz_date, 8);
    *p++ = '/';
    p = put(p, req->region, region_len);
    *p++ = '/';
    p = put(p, req->service, service_len);
    p = put(p, "/" TERMINATOR "\n", strlen(TERMINATOR) + 2);
    sigv4_hex(digest, sizeof(digest), p);
    p += SIGV4_HEX_LEN;
    sts->len = (size_t)(p - sts->data);
    sts->data[sts->len] = 0;

    EVP_MAC_CTX *mac;
    r = signing_mac(kc, creds->secret_access_key, out->amz_date, req->region, req->service,
                    &mac);
    if (r < 0)
        return r;
    r = hmac(mac, NULL, 0, sts->data, sts->len, digest);
    if (r < 0)
        return r;
    sigv4_hex(digest, sizeof(digest), out->signature);

    static const char cred_pfx[] = ALGORITHM " Credential=";
    static const char sh_pfx[] = ", SignedHeaders=";
    static const char sig_pfx[] = ", Signature=";
    size_t akid_len = strlen(creds->access_key_id);
    struct buf *az = &out->authorization;
    buf_reset(az);
    r = buf_reserve(az, sizeof(cred_pfx) + akid_len + 1 + scope_len + sizeof(sh_pfx) +
                            signed_len + sizeof(sig_pfx) + SIGV4_HEX_LEN);
    if (r < 0)
        return r;
    p = az->data;
    p = put(p, cred_pfx, sizeof(cred_pfx) - 1);
    p = put(p, creds->access_key_id, akid_len);
    *p++ = '/';
    p = put(p, scope, scope_len);
    p = put(p, sh_pfx, sizeof(sh_pfx) - 1);
    p = put(p, cr->data + signed_off, signed_len);
    p = put(p, sig_pfx, sizeof(sig_pfx) - 1);
    p = put(p, out->signature, SIGV4_HEX_LEN);
    az->len = (size_t)(p - az->data);
    az->data[az->len] = 0;

    out->headers[out->n_headers++] = (struct sigv4_header){"X-Amz-Date", out->amz_date};
    if (token)
        out->headers[out->n_headers++] = (struct sigv4_header){"X-Amz-Security-Token", token};
    out->headers[out->n_headers++] = (struct sigv4_header){"Authorization", az->data};
    return 0;
}
