/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The AWS client every call of the daemon goes through: endpoint
 * resolution, SigV4 signing, the "standard" retry mode and typed errors.
 *
 * struct aws_settings is process-wide and immutable once built (from the
 * [aws] section, the environment and the shared config); struct aws_client
 * is per thread (its own curl handle and signing-key cache) and shares the
 * settings, the credential provider and the per-service retry quota.
 *
 * Retries (standard mode): at most max_attempts attempts; before attempt
 * n+1 wait rand(0,1) * min(2^n s, 20 s); each retry takes 5 tokens from a
 * quota of 500 (10 after a timeout), a success returns them (or 1 token
 * when it was a first attempt). Throttling errors, 5xx, resets and timeouts
 * are retried, validation and auth errors never. A clock-skew rejection is
 * corrected from the server's Date header and retried.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "rarewatch/aws_creds.h"
#include "rarewatch/aws_endpoint.h"
#include "rarewatch/aws_error.h"
#include "rarewatch/conf.h"
#include "rarewatch/http.h"
#include "rarewatch/sigv4.h"

struct aws_retry_quota {
    _Atomic int tokens;
};

struct aws_settings {
    char region[64];
    char endpoint[AWS_SVC__COUNT][512];
    const char *endpoint_source[AWS_SVC__COUNT];
    struct http_options http;
    unsigned max_attempts;
    uint64_t max_backoff_usec;            /* 20 s */
    struct aws_creds_provider *creds;     /* owned */
    struct aws_retry_quota quota[AWS_SVC__COUNT];
    _Atomic long long clock_offset;       /* server - local, seconds */
    char *ca_file;                        /* owned copy behind http.ca_file */
};

/* Build from a configuration snapshot ([aws] keys), the environment and
 * the shared config. 0 or negative errno with err (AWS_ERR_CONFIG) filled. */
int aws_settings_new(const struct rw_config *cfg, struct aws_settings **out, struct aws_error *err);
struct aws_settings *aws_settings_free(struct aws_settings *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct aws_settings *, aws_settings_free)

struct aws_client;

struct aws_client_stats {
    uint64_t requests, retries, throttled, errors;
    uint64_t quota_exhausted;
};

/* Per thread. Caller owns; borrows s, which must outlive it. */
struct aws_client *aws_client_new(struct aws_settings *s);
struct aws_client *aws_client_free(struct aws_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct aws_client *, aws_client_free)
struct aws_client_stats aws_client_get_stats(const struct aws_client *c);
struct http_client *aws_client_http(struct aws_client *c);

/* A JSON-protocol call (Kinesis, Firehose, DynamoDB): POST / with
 * X-Amz-Target <prefix>.<operation>, retried per the standard mode.
 * 0 with resp->status 2xx, or negative errno with err filled. */
int aws_json_call(struct aws_client *c, enum aws_service svc, const char *operation,
                  const char *body, size_t len, struct http_response *resp,
                  struct aws_error *err);
/* A Query-protocol call (CloudWatch, STS): POST / form-encoded; params is
 * "Action=...&Version=...&..." already encoded. gzip compresses the body
 * (CloudWatch PutMetricData accepts Content-Encoding: gzip). */
int aws_query_call(struct aws_client *c, enum aws_service svc, const char *params, bool gzip,
                   struct http_response *resp, struct aws_error *err);

/* One attempt, no retries, with explicit credentials (NULL: unsigned, as
 * AssumeRoleWithWebIdentity is). For the credential providers. */
int aws_send_once(struct http_client *http, struct sigv4_key_cache *kc,
                  const struct aws_credentials *creds, const char *region, enum aws_service svc,
                  const char *url, const struct http_header *headers, size_t n_headers,
                  const void *body, size_t len, long long clock_offset,
                  struct http_response *resp, struct aws_error *err);

/* The retry policy's pieces, pure for testing: the quota (500 tokens),
 * and the delay before attempt+2 given a uniform r01 in [0,1). */
void aws_retry_quota_init(struct aws_retry_quota *q);
bool aws_retry_quota_take(struct aws_retry_quota *q, int cost);
void aws_retry_quota_refund(struct aws_retry_quota *q, int n);
uint64_t aws_retry_backoff(unsigned attempt, uint64_t max_usec, double r01);

/* Form-encode s (RFC 3986 unreserved set) and append to b. */
int aws_form_append(struct buf *b, const char *key, const char *value);
