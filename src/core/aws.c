/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/aws.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <zlib.h>

#include "rarewatch/aws_profile.h"
#include "rarewatch/conf_schema.h"
#include "rarewatch/log.h"
#include "rarewatch/strutil.h"

#define QUOTA_MAX 500
#define RETRY_COST 5
#define TIMEOUT_COST 10
#define NO_RETRY_INCREMENT 1

/* ---- settings ---- */

static const char *first_env(const char *a, const char *b)
{
    const char *v = getenv(a);
    if (v && *v)
        return v;
    v = b ? getenv(b) : NULL;
    return v && *v ? v : NULL;
}

int aws_settings_new(const struct rw_config *cfg, struct aws_settings **out, struct aws_error *err)
{
    _cleanup_(aws_settings_freep) struct aws_settings *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    const char *profile = conf_str(cfg, RWK_aws_profile);
    if (!profile)
        profile = first_env("AWS_PROFILE", NULL);
    if (!profile)
        profile = "default";

    const char *region = conf_str(cfg, RWK_aws_region);
    _cleanup_free_ char *profile_region = NULL;
    if (!region)
        region = first_env("AWS_REGION", "AWS_DEFAULT_REGION");
    if (!region && (profile_region = aws_profile_region(profile)))
        region = profile_region;
    if (!region) {
        aws_error_set(err, AWS_ERR_CONFIG, "NoRegion",
                      "no AWS region: set [aws] region, AWS_REGION, or region in the "
                      "shared-config profile '%s'", profile);
        return -EINVAL;
    }
    snprintf(s->region, sizeof(s->region), "%s", region);

    _cleanup_free_ char *profile_url = aws_profile_endpoint_url(profile);
    struct aws_endpoint_config ec = {
        .service_url = {
            [AWS_SVC_KINESIS] = conf_str(cfg, RWK_aws_kinesis_endpoint_url),
            [AWS_SVC_FIREHOSE] = conf_str(cfg, RWK_aws_firehose_endpoint_url),
            [AWS_SVC_CLOUDWATCH] = conf_str(cfg, RWK_aws_cloudwatch_endpoint_url),
            [AWS_SVC_DYNAMODB] = conf_str(cfg, RWK_aws_dynamodb_endpoint_url),
            [AWS_SVC_STS] = conf_str(cfg, RWK_aws_sts_endpoint_url),
        },
        .url = conf_str(cfg, RWK_aws_endpoint_url),
        .profile_url = profile_url,
    };
    for (int i = 0; i < AWS_SVC__COUNT; i++) {
        if (aws_endpoint_resolve((enum aws_service)i, s->region, &ec, s->endpoint[i],
                                 sizeof(s->endpoint[i]), &s->endpoint_source[i]) < 0) {
            aws_error_set(err, AWS_ERR_CONFIG, "BadEndpoint",
                          "no usable endpoint for %s (region '%s'): endpoint URLs must start "
                          "with http:// or https://",
                          aws_service_info((enum aws_service)i)->name, s->region);
            return -EINVAL;
        }
        aws_retry_quota_init(&s->quota[i]);
    }

    http_options_init(&s->http);
    s->http.connect_timeout_usec = conf_usec(cfg, RWK_aws_connect_timeout);
    s->http.timeout_usec = conf_usec(cfg, RWK_aws_request_timeout);
    s->http.low_speed_time_usec = conf_usec(cfg, RWK_aws_low_speed_time);
    s->http.verify_tls = conf_bool(cfg, RWK_aws_verify_tls);
    s->http.http2 = conf_bool(cfg, RWK_aws_http2);
    s->http.max_response_bytes = conf_size(cfg, RWK_aws_max_response_size);
    if (conf_str(cfg, RWK_aws_ca_file) && !(s->ca_file = strdup(conf_str(cfg, RWK_aws_ca_file))))
        return -ENOMEM;
    s->http.ca_file = s->ca_file;
    s->max_attempts = (unsigned)conf_int(cfg, RWK_aws_max_attempts);
    s->max_backoff_usec = 20 * USEC_PER_SEC;

    struct aws_endpoint_config sts_ec = { .url = s->endpoint[AWS_SVC_STS] };
    struct aws_creds_options co = {
        .profile = conf_str(cfg, RWK_aws_profile),
        .region = s->region,
        .endpoints = &sts_ec,
        .http = &s->http,
        .refresh_ahead_usec = conf_usec(cfg, RWK_aws_credentials_refresh_ahead),
        .process_timeout_usec = conf_usec(cfg, RWK_aws_credential_process_timeout),
    };
    s->creds = aws_creds_chain_new(&co);
    if (!s->creds)
        return -ENOMEM;
    *out = TAKE_PTR(s);
    return 0;
}

struct aws_settings *aws_settings_free(struct aws_settings *s)
{
    if (s) {
        aws_creds_provider_free(s->creds);
        free(s->ca_file);
        free(s);
    }
    return NULL;
}

/* ---- client ---- */

struct aws_client {
    struct aws_settings *s;
    struct http_client *http;
    struct sigv4_key_cache *kc;
    struct sigv4_result sig;
    struct buf gz;
    struct aws_client_stats stats;
    uint64_t rng;
};

struct aws_client *aws_client_new(struct aws_settings *s)
{
    struct aws_client *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->s = s;
    c->http = http_client_new(&s->http);
    c->kc = sigv4_key_cache_new();
    if (!c->http || !c->kc)
        return aws_client_free(c);
    if (getrandom(&c->rng, sizeof(c->rng), 0) != sizeof(c->rng))
        c->rng = (uint64_t)now_monotonic_usec() ^ (uint64_t)(uintptr_t)c;
    c->rng |= 1;
    return c;
}

struct aws_client *aws_client_free(struct aws_client *c)
{
    if (c) {
        http_client_free(c->http);
        sigv4_key_cache_free(c->kc);
        sigv4_result_free(&c->sig);
        buf_free(&c->gz);
        free(c);
    }
    return NULL;
}

struct aws_client_stats aws_client_get_stats(const struct aws_client *c) { return c->stats; }
struct http_client *aws_client_http(struct aws_client *c) { return c->http; }

static double rand01(struct aws_client *c)
{
    /* xorshift64*: jitter only, no cryptographic need. */
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return (double)((c->rng * UINT64_C(2685821657736338717)) >> 11) / (double)(UINT64_C(1) << 53);
}

/* "http://host:port/path" -> host header "host:port", path "/path". */
static int split_url(const char *url, char *host, size_t hn, const char **path)
{
    const char *p = strstr(url, "://");
    if (!p)
        return -EINVAL;
    p += 3;
    size_t l = strcspn(p, "/?");
    if (l == 0 || l >= hn)
        return -EINVAL;
    memcpy(host, p, l);
    host[l] = 0;
    /* The default port is not part of the Host header curl sends. */
    size_t hl = strlen(host);
    if (startswith(url, "https://") && endswith(host, ":443"))
        host[hl - 4] = 0;
    else if (startswith(url, "http://") && endswith(host, ":80"))
        host[hl - 3] = 0;
    *path = p[l] == '/' ? p + l : "/";
    return 0;
}

int aws_send_once(struct http_client *http, struct sigv4_key_cache *kc,
                  const struct aws_credentials *creds, const char *region, enum aws_service svc,
                  const char *url, const struct http_header *headers, size_t n_headers,
                  const void *body, size_t len, long long clock_offset,
                  struct http_response *resp, struct aws_error *err)
{
    char host[256];
    const char *path;
    if (split_url(url, host, sizeof(host), &path) < 0) {
        aws_error_set(err, AWS_ERR_CONFIG, "BadEndpoint", "malformed endpoint URL");
        return -EINVAL;
    }
    struct http_header all[SIGV4_MAX_HEADERS + 4];
    if (n_headers + 5 > ELEMENTSOF(all))
        return -E2BIG;
    size_t n = 0;
    all[n++] = (struct http_header){ "Host", host };
    for (size_t i = 0; i < n_headers; i++)
        all[n++] = headers[i];
    struct sigv4_result sig = SIGV4_RESULT_INIT;
    if (creds) {
        struct sigv4_credentials sc = { creds->access_key_id, creds->secret_access_key,
                                        creds->session_token };
        struct sigv4_request rq = {
            .method = "POST",
            .path = path,
            .headers = (const struct sigv4_header *)all,
            .n_headers = n,
            .payload = body,
            .payload_len = len,
            .region = region,
            .service = aws_service_info(svc)->signing_name,
            .time = time(NULL) + clock_offset,
        };
        int r = sigv4_sign(kc, &sc, &rq, &sig);
        if (r < 0) {
            sigv4_result_free(&sig);
            aws_error_set(err, AWS_ERR_CONFIG, "SigningFailed", "cannot sign the request: %s",
                          strerror(-r));
            return r;
        }
        for (size_t i = 0; i < sig.n_headers; i++)
            all[n++] = (struct http_header){ sig.headers[i].name, sig.headers[i].value };
    }
    int r = http_request(http, "POST", url, all, n, body, len, 0, resp, err);
    sigv4_result_free(&sig);
    if (r < 0)
        return r;
    if (resp->status >= 300) {
        aws_error_from_response(err, resp->status, resp->content_type, resp->body.data,
                                resp->body.len, resp->request_id);
        err->server_time = resp->date;
        return -EIO;
    }
    return 0;
}

static int gzip_into(struct buf *out, const void *in, size_t len)
{
    buf_reset(out);
    uLong bound = compressBound((uLong)len) + 32;
    int r = buf_reserve(out, bound);
    if (r < 0)
        return r;
    z_stream zs = { 0 };
    if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = (Bytef *)out->data;
    zs.avail_out = (uInt)bound;
    int zr = deflate(&zs, Z_FINISH);
    out->len = zs.total_out;
    deflateEnd(&zs);
    return zr == Z_STREAM_END ? 0 : -EIO;
}

static void backoff_sleep(uint64_t usec)
{
    struct timespec ts = { (time_t)(usec / USEC_PER_SEC), (long)(usec % USEC_PER_SEC) * 1000 };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static bool is_expired_token(const struct aws_error *e)
{
    return streq(e->code, "ExpiredTokenException") || streq(e->code, "ExpiredToken") ||
           streq(e->code, "RequestExpired");
}

void aws_retry_quota_init(struct aws_retry_quota *q) { atomic_store(&q->tokens, QUOTA_MAX); }

bool aws_retry_quota_take(struct aws_retry_quota *q, int cost)
{
    int cur = atomic_load(&q->tokens);
    do {
        if (cur < cost)
            return false;
    } while (!atomic_compare_exchange_weak(&q->tokens, &cur, cur - cost));
    return true;
}

void aws_retry_quota_refund(struct aws_retry_quota *q, int n)
{
    int cur = atomic_load(&q->tokens);
    while (cur < QUOTA_MAX && !atomic_compare_exchange_weak(&q->tokens, &cur, MIN(QUOTA_MAX, cur + n)))
        ;
}

uint64_t aws_retry_backoff(unsigned attempt, uint64_t max_usec, double r01)
{
    uint64_t cap = MIN(max_usec, (uint64_t)USEC_PER_SEC << MIN(attempt, 30u));
    return (uint64_t)(r01 * (double)cap);
}

/* The standard retry mode around aws_send_once(). */
static int call(struct aws_client *c, enum aws_service svc, const struct http_header *h,
                size_t nh, const void *body, size_t len, const char *what,
                struct http_response *resp, struct aws_error *err)
{
    struct aws_settings *s = c->s;
    struct aws_retry_quota *q = &s->quota[svc];
    int last_cost = 0;
    bool refreshed_creds = false;
    for (unsigned attempt = 0;; attempt++) {
        _cleanup_(aws_credentials_unrefp) struct aws_credentials *cr = NULL;
        int r = aws_creds_get(s->creds, &cr, err);
        if (r < 0)
            return r;
        c->stats.requests++;
        r = aws_send_once(c->http, c->kc, cr, s->region, svc, s->endpoint[svc], h, nh, body, len,
                          atomic_load(&s->clock_offset), resp, err);
        if (r == 0) {
            aws_retry_quota_refund(q, last_cost ? last_cost : NO_RETRY_INCREMENT);
            return 0;
        }
        c->stats.errors++;
        if (err->throttling)
            c->stats.throttled++;
        if (err->clock_skew && err->server_time) {
            long long off = err->server_time - (long long)time(NULL);
            atomic_store(&s->clock_offset, off);
            log_warning("%s: clock skew: the service's clock is %+llds from ours; "
                        "signing with the corrected time", what, off);
        }
        if (is_expired_token(err) && !refreshed_creds) {
            /* Credentials expired early (revoked, or a clock issue): one
             * retry with freshly fetched ones. */
            aws_creds_invalidate(s->creds);
            refreshed_creds = true;
            err->retryable = true;
        }
        if (!err->retryable || attempt + 1 >= s->max_attempts || r == -EINVAL)
            return r;
        int cost = err->timeout ? TIMEOUT_COST : RETRY_COST;
        if (!aws_retry_quota_take(q, cost)) {
            c->stats.quota_exhausted++;
            char eb[256];
            log_warning("%s: not retrying %s: the retry quota is exhausted (too many "
                        "recent failures)", what, aws_error_str(err, eb, sizeof(eb)));
            return r;
        }
        last_cost = cost;
        uint64_t delay = aws_retry_backoff(attempt, s->max_backoff_usec, rand01(c));
        char eb[256];
        log_fields(LOG_INFO, 0,
                   (&(struct log_fields){ .aws_error = err->code, .aws_request_id = err->request_id[0] ? err->request_id : NULL }),
                   "%s: attempt %u failed (%s); retrying in %llu ms", what, attempt + 1,
                   aws_error_str(err, eb, sizeof(eb)), (unsigned long long)(delay / 1000));
        c->stats.retries++;
        backoff_sleep(delay);
    }
}

int aws_json_call(struct aws_client *c, enum aws_service svc, const char *operation,
                  const char *body, size_t len, struct http_response *resp, struct aws_error *err)
{
    const struct aws_service_info *si = aws_service_info(svc);
    char target[128], ctype[64];
    snprintf(target, sizeof(target), "%s.%s", si->json_target, operation);
    snprintf(ctype, sizeof(ctype), "application/x-amz-json-%s", si->json_version);
    struct http_header h[] = { { "Content-Type", ctype }, { "X-Amz-Target", target } };
    return call(c, svc, h, ELEMENTSOF(h), body, len, target, resp, err);
}

int aws_query_call(struct aws_client *c, enum aws_service svc, const char *params, bool gzip,
                   struct http_response *resp, struct aws_error *err)
{
    const struct aws_service_info *si = aws_service_info(svc);
    struct http_header h[] = {
        { "Content-Type", "application/x-www-form-urlencoded; charset=utf-8" },
        { "Content-Encoding", "gzip" },
    };
    const void *body = params;
    size_t len = strlen(params);
    if (gzip) {
        int r = gzip_into(&c->gz, params, len);
        if (r < 0) {
            aws_error_set(err, AWS_ERR_CONFIG, "CompressionFailed", "gzip failed");
            return r;
        }
        body = c->gz.data;
        len = c->gz.len;
    }
    char what[64];
    const char *a = strstr(params, "Action=");
    snprintf(what, sizeof(what), "%s.%.*s", si->name, a ? (int)strcspn(a + 7, "&") : 0,
             a ? a + 7 : "");
    return call(c, svc, h, gzip ? 2 : 1, body, len, what, resp, err);
}

int aws_form_append(struct buf *b, const char *key, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    int r = 0;
    if (b->len)
        r = buf_putc(b, '&');
    for (int part = 0; part < 2 && r >= 0; part++) {
        const unsigned char *p = (const unsigned char *)(part ? value : key);
        for (; *p && r >= 0; p++) {
            if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                *p == '-' || *p == '_' || *p == '.' || *p == '~')
                r = buf_putc(b, (char)*p);
            else {
                char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
                r = buf_append(b, e, 3);
            }
        }
        if (part == 0 && r >= 0)
            r = buf_putc(b, '=');
    }
    return r;
}
