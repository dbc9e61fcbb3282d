/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * AWS credentials and the default credential chain, in the SDKs' order:
 *   1. environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
 *   2. web identity: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN
 *      (+ AWS_ROLE_SESSION_NAME) -> STS AssumeRoleWithWebIdentity
 *   3. shared files (AWS_SHARED_CREDENTIALS_FILE / ~/.aws/credentials,
 *      AWS_CONFIG_FILE / ~/.aws/config; profile from [aws] profile, then
 *      AWS_PROFILE, then "default"): static keys, credential_process,
 *      role_arn + source_profile -> STS AssumeRole, web_identity_token_file
 *   4. container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (169.254.170.2) or
 *      AWS_CONTAINER_CREDENTIALS_FULL_URI, with AWS_CONTAINER_AUTHORIZATION_TOKEN
 *      or AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
 *   5. EC2 IMDSv2 (token PUT, then the role's credentials), unless
 *      AWS_EC2_METADATA_DISABLED=true; AWS_EC2_METADATA_SERVICE_ENDPOINT
 *      overrides the address.
 *
 * Lifetime: credentials are immutable and reference counted. A signer takes
 * a reference for the duration of one signature, so a refresh never frees
 * credentials another thread is signing with. Temporary credentials are
 * refreshed ahead of expiry by one thread while the others keep using the
 * current (still valid) ones; only when there are no valid credentials at
 * all does a caller wait for the refresh.
 *
 * Secrets never reach the log: error messages name files, providers and
 * HTTP statuses, never key material.
 */
#include <stdint.h>

#include "rarewatch/aws_endpoint.h"
#include "rarewatch/aws_error.h"
#include "rarewatch/http.h"
#include "rarewatch/macro.h"

struct aws_credentials {
    int refcount;
    char *access_key_id;
    char *secret_access_key;
    char *session_token;  /* NULL for long-term keys */
    long long expiration; /* seconds since the epoch; 0 = does not expire */
    const char *provider; /* "environment", "web-identity", "profile:NAME", "process", "container", "imds", "sts-assume-role" */
};

/* Copies the strings. NULL on allocation failure. */
struct aws_credentials *aws_credentials_new(const char *access_key_id, const char *secret,
                                            const char *session_token, long long expiration,
                                            const char *provider);
struct aws_credentials *aws_credentials_ref(struct aws_credentials *c);
/* Wipes the secret and token when the last reference goes. Returns NULL. */
struct aws_credentials *aws_credentials_unref(struct aws_credentials *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct aws_credentials *, aws_credentials_unref)

struct aws_creds_options {
    const char *profile;          /* NULL: AWS_PROFILE, then "default" */
    const char *region;           /* for STS */
    const struct aws_endpoint_config *endpoints; /* for STS; may be NULL */
    const struct http_options *http;             /* for STS, IMDS, container; may be NULL */
    uint64_t refresh_ahead_usec;  /* refresh this long before expiry; default 5 min */
    uint64_t process_timeout_usec; /* credential_process time limit; default 60 s */
};

struct aws_creds_provider;

/* The default chain. Fails only on allocation; a chain that finds nothing
 * reports AWS_ERR_CREDENTIALS from aws_creds_get(). */
struct aws_creds_provider *aws_creds_chain_new(const struct aws_creds_options *o);
struct aws_creds_provider *aws_creds_provider_free(struct aws_creds_provider *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct aws_creds_provider *, aws_creds_provider_free)

/* Current credentials (a new reference, caller unrefs). Thread-safe. Fast
 * while valid; starts a refresh ahead of expiry (one thread does it, the
 * others return the current ones). 0 or negative errno with err filled. */
int aws_creds_get(struct aws_creds_provider *p, struct aws_credentials **out,
                  struct aws_error *err);
/* The service rejected the credentials as expired: force a refresh on the
 * next get. */
void aws_creds_invalidate(struct aws_creds_provider *p);
/* Which provider of the chain answered last ("environment", ...). */
const char *aws_creds_source(struct aws_creds_provider *p);
