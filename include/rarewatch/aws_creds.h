/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * AWS credentials and the default credential chain, in the SDKs' order:
 *   1. environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
 *   2. web identity: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN
 *      (+ AWS_ROLE_SESSION_NAME) -> STS AssumeRoleWithWebIdentity
 *   3. shared files (AWS_SHARED_CREDENTIALS_FILE / ~/.aws/credentials,
 *      AWS_CONFIG_FILE / ~/.aws/config; see aws_profile.h; profile from
 *      [aws] profile, then AWS_PROFILE, then "default"). Within a profile:
 *      role_arn -> STS AssumeRole signed with the credentials of
 *      source_profile (followed recursively, loops and chains longer than
 *      AWS_CREDS_MAX_SOURCE_DEPTH refused; a source profile with its own
 *      keys ends the chain) or of credential_source (Environment,
 *      Ec2InstanceMetadata, EcsContainer), or AssumeRoleWithWebIdentity
 *      with web_identity_token_file; else static keys; else
 *      credential_process. A profile named explicitly must exist; mfa_serial is refused.
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
 * A provider that is configured but fails (a half-set environment, a
 * credential_process that exits non-zero, STS refusing AssumeRole) ends
 * the search with its error, as in the SDKs; only "not configured here"
 * moves on. IMDS that cannot be reached counts as not configured.
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
    int refcount;         /* atomic; only aws_credentials_ref/unref touch it */
    char *access_key_id;
    char *secret_access_key;
    char *session_token;  /* NULL for long-term keys */
    long long expiration; /* seconds since the epoch; 0 = does not expire */
    /* Which provider produced them: "environment", "web-identity",
     * "profile:NAME" (static keys), "process", "sts-assume-role",
     * "container", "imds", or a custom provider's name. Owned. */
    char *provider;
};

/* Copies the strings (session_token may be NULL or "": none). NULL on
 * allocation failure or when a key or the provider is NULL. */
struct aws_credentials *aws_credentials_new(const char *access_key_id, const char *secret,
                                            const char *session_token, long long expiration,
                                            const char *provider);
struct aws_credentials *aws_credentials_ref(struct aws_credentials *c);
/* Wipes the secret and token when the last reference goes. Returns NULL. */
struct aws_credentials *aws_credentials_unref(struct aws_credentials *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct aws_credentials *, aws_credentials_unref)

struct aws_creds_options {
    const char *profile;          /* NULL: AWS_PROFILE, then "default" */
    const char *region;           /* for STS; NULL: the profile's, AWS_REGION, us-east-1 */
    const struct aws_endpoint_config *endpoints; /* for STS; may be NULL; copied */
    const struct http_options *http;             /* for STS, IMDS, container; may be NULL; copied */
    uint64_t refresh_ahead_usec;  /* refresh this long before expiry; default 5 min */
    uint64_t process_timeout_usec; /* credential_process time limit; default 60 s */
    /* After a failed refresh while the current credentials are still valid,
     * wait this long before trying again; default 10 s (at most
     * refresh_ahead / 4), so a dead IMDS is not asked on every call. */
    uint64_t refresh_retry_usec;
};

#define AWS_CREDS_DEFAULT_REFRESH_AHEAD_USEC (300 * USEC_PER_SEC)
#define AWS_CREDS_DEFAULT_PROCESS_TIMEOUT_USEC (60 * USEC_PER_SEC)
#define AWS_CREDS_PROCESS_MAX_OUTPUT (64 * 1024)
#define AWS_CREDS_IMDS_TIMEOUT_USEC (1 * USEC_PER_SEC)
#define AWS_CREDS_MAX_SOURCE_DEPTH 8 /* source_profile hops */

struct aws_creds_provider;

/* The default chain. Fails only on allocation; a chain that finds nothing
 * reports AWS_ERR_CREDENTIALS (-ENOKEY) from aws_creds_get(). Every refresh
 * walks the chain again from the top and re-reads the files and token
 * files, so rotated files and tokens are picked up. */
struct aws_creds_provider *aws_creds_chain_new(const struct aws_creds_options *o);

/* A provider around one custom source (static keys from the daemon's
 * configuration, tests). fetch is called by one thread at a time, outside
 * the provider's locks; it returns 0 with *out set (a reference it hands
 * over) or a negative errno with err filled. Only refresh_ahead_usec and
 * refresh_retry_usec of o are used (o may be NULL). */
typedef int (*aws_creds_fetch_fn)(void *userdata, struct aws_credentials **out,
                                  struct aws_error *err);
struct aws_creds_provider *aws_creds_provider_new(const struct aws_creds_options *o,
                                                  aws_creds_fetch_fn fetch, void *userdata);
struct aws_creds_provider *aws_creds_provider_free(struct aws_creds_provider *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct aws_creds_provider *, aws_creds_provider_free)

/* Current credentials (a new reference, caller unrefs). Thread-safe. While
 * they are valid and not within refresh_ahead of expiry this is a lock, a
 * reference and an unlock. Within refresh_ahead, the first caller refreshes
 * (outside the data lock) and the others return the current ones; when
 * there are none, they are expired or invalidated, callers wait for the
 * refresh and share its outcome. A failed refresh keeps the old credentials
 * until they expire and logs one warning. 0 or negative errno with err
 * filled (kind AWS_ERR_CREDENTIALS). */
int aws_creds_get(struct aws_creds_provider *p, struct aws_credentials **out,
                  struct aws_error *err);
/* The service rejected the credentials as expired: force a refresh on the
 * next get. */
void aws_creds_invalidate(struct aws_creds_provider *p);
/* Which provider of the chain answered last ("environment", ...), or
 * "none". The string stays valid until the provider is freed. */
const char *aws_creds_source(struct aws_creds_provider *p);

/* Parsers of outside input, exposed for tests and fuzzing. */

/* ISO 8601 / RFC 3339 date-time as AWS sends it: "2026-11-28T05:10:00Z",
 * with optional fraction and a "Z" or "+HH:MM" / "+HHMM" offset. 0 with
 * seconds since the epoch, or -EINVAL. */
int aws_parse_iso8601(const char *s, long long *out);

enum aws_creds_json_kind {
    AWS_CREDS_JSON_PROCESS,   /* credential_process: Version 1, SessionToken */
    AWS_CREDS_JSON_CONTAINER, /* container endpoint: Token */
    AWS_CREDS_JSON_IMDS,      /* IMDS: Code "Success", Token */
};
/* Credentials from a provider's JSON document. provider names them and the
 * errors. 0, or -EINVAL (err filled, kind AWS_ERR_CREDENTIALS) / -ENOMEM. */
int aws_creds_parse_json(const char *json, size_t len, enum aws_creds_json_kind kind,
                         const char *provider, struct aws_credentials **out,
                         struct aws_error *err);
/* Credentials from an STS AssumeRole / AssumeRoleWithWebIdentity response
 * body (<Credentials><AccessKeyId>...). Same returns. */
int aws_creds_parse_sts_xml(const char *xml, size_t len, const char *provider,
                            struct aws_credentials **out, struct aws_error *err);
