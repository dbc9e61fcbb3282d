/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Typed AWS errors. Every AWS call returns a negative errno and fills a
 * struct aws_error saying what happened: the service's error code and
 * message, the request id, the HTTP status, and how the retry policy
 * classifies it. Parsing handles the JSON protocols (__type / code /
 * message), the Query protocol's XML (<Code>, <Message>, <RequestId>), and
 * what proxies return instead (HTML pages, empty or truncated bodies).
 */
#include <stdbool.h>
#include <stddef.h>

#include "rarewatch/macro.h"

enum aws_error_kind {
    AWS_ERR_NONE = 0,
    AWS_ERR_SERVICE,     /* the service answered with an error status */
    AWS_ERR_TRANSPORT,   /* connect failure, reset, timeout, TLS */
    AWS_ERR_RESPONSE,    /* a 2xx whose body is not what the API promises */
    AWS_ERR_CREDENTIALS, /* no credentials, or the provider failed */
    AWS_ERR_CONFIG,      /* no region, bad endpoint, ... */
};

struct aws_error {
    enum aws_error_kind kind;
    int http_status;      /* 0 when no response */
    char code[96];        /* "ThrottlingException", "CURLE_OPERATION_TIMEDOUT", ... */
    char message[512];
    char request_id[96];
    bool retryable;       /* the standard retry mode may retry it */
    bool throttling;      /* a throttling error (slows the caller down) */
    bool timeout;         /* costs more retry quota */
    bool clock_skew;      /* the signature time was rejected; see server_date */
    long long server_time; /* from the Date header, seconds since the epoch; 0 unknown */
};

void aws_error_clear(struct aws_error *e);
void aws_error_set(struct aws_error *e, enum aws_error_kind kind, const char *code,
                   const char *fmt, ...) _printf_(4, 5);
/* Fill e from an error response (status >= 300) and classify it. */
void aws_error_from_response(struct aws_error *e, int status, const char *content_type,
                             const char *body, size_t len, const char *request_id);
/* Set retryable/throttling/timeout/clock_skew from kind, code and status. */
void aws_error_classify(struct aws_error *e);
bool aws_error_code_is_throttling(const char *code);
/* "ThrottlingException (HTTP 400, request 1a2b): Rate exceeded" */
const char *aws_error_str(const struct aws_error *e, char *buf, size_t n);
