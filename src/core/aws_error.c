/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/aws_error.h"
#include "rarewatch/xml_extract.h"

#include <ctype.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

void aws_error_clear(struct aws_error *e) { memset(e, 0, sizeof(*e)); }

void aws_error_set(struct aws_error *e, enum aws_error_kind kind, const char *code,
                   const char *fmt, ...)
{
    if (!e)
        return;
    aws_error_clear(e);
    e->kind = kind;
    snprintf(e->code, sizeof(e->code), "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

/* The error codes the AWS SDKs' standard retry mode treats as throttling. */
static const char *const throttling_codes[] = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
};

/* Transient service-side errors that are retried whatever the status. */
static const char *const transient_codes[] = {
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "KMSThrottlingException",
    "IDPCommunicationError",
};

static bool in_list(const char *const *l, size_t n, const char *code)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(l[i], code) == 0)
            return true;
    return false;
}

bool aws_error_code_is_throttling(const char *code)
{
    return in_list(throttling_codes, ELEMENTSOF(throttling_codes), code);
}

void aws_error_classify(struct aws_error *e)
{
    e->throttling = aws_error_code_is_throttling(e->code);
    e->timeout = e->kind == AWS_ERR_TRANSPORT && strcmp(e->code, "RequestTimeout") == 0;
    e->clock_skew = strcmp(e->code, "RequestTimeTooSkewed") == 0 ||
                    strcmp(e->code, "RequestExpired") == 0 ||
                    strcmp(e->code, "RequestInTheFuture") == 0 ||
                    (strcmp(e->code, "InvalidSignatureException") == 0 &&
                     strstr(e->message, "Signature expired")) ||
                    (strcmp(e->code, "AuthFailure") == 0 && strstr(e->message, "time"));
    switch (e->kind) {
    case AWS_ERR_TRANSPORT:
        /* Resets, refused connections, timeouts: retry. TLS verification
         * failures and oversized responses will not get better. */
        e->retryable = strcmp(e->code, "ResponseTooLarge") != 0 &&
                       !strstr(e->message, "certificate") && !strstr(e->message, "SSL");
        break;
    case AWS_ERR_SERVICE:
        e->retryable = e->throttling || e->clock_skew ||
                       in_list(transient_codes, ELEMENTSOF(transient_codes), e->code) ||
                       e->http_status == 500 || e->http_status == 502 ||
                       e->http_status == 503 || e->http_status == 504 || e->http_status == 429;
        break;
    default: e->retryable = false;
    }
}

static void sanitize(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20)
            *s = ' ';
}

void aws_error_from_response(struct aws_error *e, int status, const char *content_type,
                             const char *body, size_t len, const char *request_id)
{
    aws_error_clear(e);
    e->kind = AWS_ERR_SERVICE;
    e->http_status = status;
    snprintf(e->request_id, sizeof(e->request_id), "%s", request_id ? request_id : "");
    bool parsed = false;
    if (len && body && (body[0] == '{' || (content_type && strstr(content_type, "json")))) {
        json_tokener *tok = json_tokener_new_ex(32);
        json_object *o = tok ? json_tokener_parse_ex(tok, body, (int)MIN(len, (size_t)INT32_MAX)) : NULL;
        if (tok)
            json_tokener_free(tok);
        if (o && json_object_is_type(o, json_type_object)) {
            json_object *t = NULL, *m = NULL;
            if (!json_object_object_get_ex(o, "__type", &t))
                json_object_object_get_ex(o, "code", &t);
            if (!json_object_object_get_ex(o, "message", &m))
                json_object_object_get_ex(o, "Message", &m);
            if (t && json_object_is_type(t, json_type_string)) {
                /* "com.amazonaws.kinesis#ProvisionedThroughputExceededException"
                 * or "...Exception:http://internal..." */
                const char *ts = json_object_get_string(t);
                const char *hash = strrchr(ts, '#');
                if (hash)
                    ts = hash + 1;
                size_t l = strcspn(ts, ":");
                snprintf(e->code, sizeof(e->code), "%.*s", (int)MIN(l, sizeof(e->code) - 1), ts);
                parsed = true;
            }
            if (m && json_object_is_type(m, json_type_string))
                snprintf(e->message, sizeof(e->message), "%s", json_object_get_string(m));
        }
        json_object_put(o);
    } else if (len && body && memmem(body, len, "<Code>", 6)) {
        parsed = xml_extract_to(body, len, "Error/Code", e->code, sizeof(e->code)) >= 0;
        if (parsed)
            xml_extract_to(body, len, "Error/Message", e->message, sizeof(e->message));
        if (parsed && !e->request_id[0])
            xml_extract_to(body, len, "RequestId", e->request_id, sizeof(e->request_id));
    }
    if (!parsed) {
        /* Not an AWS error document: a proxy's HTML page, an empty or
         * truncated body. Name it by the status, quote the start. */
        if (status == 429)
            snprintf(e->code, sizeof(e->code), "TooManyRequestsException");
        else if (status >= 500)
            snprintf(e->code, sizeof(e->code), "HTTP%d", status);
        else
            snprintf(e->code, sizeof(e->code), "HTTP%d", status);
        size_t show = MIN(len, (size_t)160);
        snprintf(e->message, sizeof(e->message), "unexpected %s response%s%.*s",
                 content_type && *content_type ? content_type : "untyped",
                 show ? ": " : " with an empty body", (int)show, body ? body : "");
    }
    sanitize(e->message);
    sanitize(e->code);
    aws_error_classify(e);
}

const char *aws_error_str(const struct aws_error *e, char *buf, size_t n)
{
    int off = snprintf(buf, n, "%s", e->code[0] ? e->code : "error");
    if (off < 0 || (size_t)off >= n)
        return buf;
    if (e->http_status || e->request_id[0]) {
        off += snprintf(buf + off, n - (size_t)off, " (");
        if (e->http_status && (size_t)off < n)
            off += snprintf(buf + off, n - (size_t)off, "HTTP %d%s", e->http_status,
                            e->request_id[0] ? ", " : "");
        if (e->request_id[0] && (size_t)off < n)
            off += snprintf(buf + off, n - (size_t)off, "request %s", e->request_id);
        if ((size_t)off < n)
            off += snprintf(buf + off, n - (size_t)off, ")");
    }
    if (e->message[0] && (size_t)off < n)
        snprintf(buf + off, n - (size_t)off, ": %s", e->message);
    return buf;
}
