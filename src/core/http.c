/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "rarewatch/strutil.h"
#include "rw-build-config.h"

struct http_client {
    CURL *curl;
    struct http_options opt;
    char *ca_file;
    char *user_agent;
    struct http_response *resp; /* the response being filled */
    bool too_large;
};

void http_options_init(struct http_options *o)
{
    *o = (struct http_options){
        .connect_timeout_usec = 5 * USEC_PER_SEC,
        .timeout_usec = 30 * USEC_PER_SEC,
        .low_speed_time_usec = 10 * USEC_PER_SEC,
        .low_speed_limit = 1,
        .verify_tls = true,
        .max_response_bytes = 64u << 20,
    };
}

void http_response_reset(struct http_response *r)
{
    r->status = 0;
    buf_reset(&r->body);
    r->content_type[0] = r->request_id[0] = r->content_encoding[0] = 0;
    r->date = 0;
}

void http_response_free(struct http_response *r)
{
    buf_free(&r->body);
    http_response_reset(r);
}

int http_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct http_client *c = ud;
    size_t len = size * n;
    if (c->resp->body.len + len > c->opt.max_response_bytes) {
        c->too_large = true;
        return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
    }
    if (buf_append(&c->resp->body, p, len) < 0)
        return 0;
    return len;
}

static void copy_header_value(char *dst, size_t n, const char *v, size_t len)
{
    while (len && isspace((unsigned char)*v))
        v++, len--;
    while (len && isspace((unsigned char)v[len - 1]))
        len--;
    len = MIN(len, n - 1);
    memcpy(dst, v, len);
    dst[len] = 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct http_client *c = ud;
    size_t len = size * n;
    const char *colon = memchr(p, ':', len);
    if (!colon)
        return len;
    size_t nl = (size_t)(colon - p);
    const char *v = colon + 1;
    size_t vl = len - nl - 1;
    struct http_response *r = c->resp;
#define IS(name) (nl == strlen(name) && strncasecmp(p, name, nl) == 0)
    if (IS("x-amzn-requestid") || IS("x-amz-request-id"))
        copy_header_value(r->request_id, sizeof(r->request_id), v, vl);
    else if (IS("content-type"))
        copy_header_value(r->content_type, sizeof(r->content_type), v, vl);
    else if (IS("content-encoding"))
        copy_header_value(r->content_encoding, sizeof(r->content_encoding), v, vl);
    else if (IS("date")) {
        char d[64];
        copy_header_value(d, sizeof(d), v, vl);
        r->date = curl_getdate(d, NULL);
        if (r->date < 0)
            r->date = 0;
    }
#undef IS
    return len;
}

struct http_client *http_client_new(const struct http_options *o)
{
    struct http_client *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->opt = *o;
    if (o->ca_file && !(c->ca_file = strdup(o->ca_file)))
        return http_client_free(c);
    if (!(c->user_agent = strdup(o->user_agent ? o->user_agent : "rarewatch/" RW_VERSION)))
        return http_client_free(c);
    c->opt.ca_file = c->ca_file;
    c->opt.user_agent = c->user_agent;
    c->curl = curl_easy_init();
    if (!c->curl)
        return http_client_free(c);
    CURL *h = c->curl;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(o->connect_timeout_usec / 1000));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, o->low_speed_limit);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)MAX(1, o->low_speed_time_usec / USEC_PER_SEC));
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, o->verify_tls ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, o->verify_tls ? 2L : 0L);
    if (c->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION,
                     o->http2 ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    /* Only http(s); never follow redirects: AWS APIs do not redirect, and a
     * redirect would carry a signature to another host. */
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    /* The body is decoded by us when we asked for it; accept identity. */
    return c;
}

struct http_client *http_client_free(struct http_client *c)
{
    if (c) {
        if (c->curl)
            curl_easy_cleanup(c->curl);
        free(c->ca_file);
        free(c->user_agent);
        free(c);
    }
    return NULL;
}

static int map_curl_error(CURLcode cc, bool too_large, struct aws_error *err, size_t cap)
{
    int r;
    const char *code = curl_easy_strerror(cc);
    if (too_large) {
        aws_error_set(err, AWS_ERR_TRANSPORT, "ResponseTooLarge",
                      "response body larger than %zu bytes; refused", cap);
        err->retryable = false;
        return -EFBIG;
    }
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT: r = -ETIMEDOUT; break;
    case CURLE_COULDNT_CONNECT: r = -ECONNREFUSED; break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: r = -EHOSTUNREACH; break;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE: r = -ECONNRESET; break;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE: r = -EPROTO; break;
    case CURLE_OUT_OF_MEMORY: r = -ENOMEM; break;
    default: r = -EIO;
    }
    aws_error_set(err, AWS_ERR_TRANSPORT, r == -ETIMEDOUT ? "RequestTimeout" : "TransportError",
                  "%s", code);
    aws_error_classify(err);
    return r;
}

int http_request(struct http_client *c, const char *method, const char *url,
                 const struct http_header *headers, size_t n_headers, const void *body,
                 size_t body_len, uint64_t timeout_usec, struct http_response *resp,
                 struct aws_error *err)
{
    CURL *h = c->curl;
    struct curl_slist *hl = NULL;
    char line[8192];
    for (size_t i = 0; i < n_headers; i++) {
        snprintf(line, sizeof(line), "%s: %s", headers[i].name, headers[i].value);
        struct curl_slist *n = curl_slist_append(hl, line);
        if (!n) {
            curl_slist_free_all(hl);
            aws_error_set(err, AWS_ERR_TRANSPORT, "OutOfMemory", "out of memory");
            return -ENOMEM;
        }
        hl = n;
    }
    /* Content-Type: curl adds a form type for POSTFIELDS unless told. An
     * empty "Expect:" must NOT be added: curl 7.88 would sign/send it
     * differently; we sign headers ourselves and curl only sends Expect for
     * bodies over 1 MiB, which AWS endpoints handle. */
    http_response_reset(resp);
    c->resp = resp;
    c->too_large = false;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
                     (long)((timeout_usec ? timeout_usec : c->opt.timeout_usec) / 1000));
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
    } else {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, strcmp(method, "POST") == 0 ? NULL : method);
    }
    CURLcode cc = curl_easy_perform(h);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hl);
    c->resp = NULL;
    if (cc != CURLE_OK)
        return map_curl_error(cc, c->too_large, err, c->opt.max_response_bytes);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    resp->status = (int)status;
    return 0;
}
