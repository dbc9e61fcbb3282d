/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * HTTP over libcurl. One struct http_client per thread, never shared: it
 * owns one curl easy handle, so connections (and TLS sessions) are reused
 * across calls of that thread. Response bodies are capped so a hostile or
 * broken endpoint cannot exhaust memory. Proxies come from the usual
 * environment variables (https_proxy, no_proxy, ...), which libcurl reads.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rarewatch/aws_error.h"
#include "rarewatch/buf.h"

struct http_options {
    uint64_t connect_timeout_usec; /* default 5 s */
    uint64_t timeout_usec;         /* whole request; default 30 s */
    uint64_t low_speed_time_usec;  /* abort when below low_speed_limit this long; default 10 s */
    long low_speed_limit;          /* bytes/s; default 1 */
    bool verify_tls;               /* default true */
    const char *ca_file;           /* NULL: the system store */
    bool http2;                    /* default false: HTTP/1.1 */
    size_t max_response_bytes;     /* default 64 MiB */
    const char *user_agent;
};
void http_options_init(struct http_options *o);

struct http_header {
    const char *name;
    const char *value;
};

struct http_response {
    int status;
    struct buf body;
    char content_type[128];
    char request_id[96]; /* x-amzn-RequestId / x-amz-request-id */
    long long date;      /* Date header, seconds since the epoch; 0 absent */
    char content_encoding[32];
};
void http_response_reset(struct http_response *r);
void http_response_free(struct http_response *r);

struct http_client;

/* Caller owns; NULL on allocation failure. The options are copied. */
struct http_client *http_client_new(const struct http_options *o);
struct http_client *http_client_free(struct http_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct http_client *, http_client_free)

/* Perform one request. Returns 0 when a response arrived (any status; see
 * resp->status), or a negative errno with err filled (AWS_ERR_TRANSPORT:
 * -ETIMEDOUT, -ECONNRESET, -ECONNREFUSED, -EFBIG for an oversized body,
 * -EPROTO for TLS or protocol failures, ...). timeout_usec overrides the
 * client's total timeout when non-zero (IMDS wants a short one). */
int http_request(struct http_client *c, const char *method, const char *url,
                 const struct http_header *headers, size_t n_headers, const void *body,
                 size_t body_len, uint64_t timeout_usec, struct http_response *resp,
                 struct aws_error *err);

/* Process-wide libcurl initialisation; call once from main before threads. */
int http_global_init(void);
