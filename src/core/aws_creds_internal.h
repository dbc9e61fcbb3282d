/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Shared between aws_creds.c (object, refresh, chain) and
 * aws_creds_sources.c (the providers that do I/O). */
#include <stdbool.h>

#include "rarewatch/aws_creds.h"
#include "rarewatch/aws_endpoint.h"
#include "rarewatch/http.h"

/* A provider answered "not configured here": the chain moves on. Never
 * returned to callers of aws_creds_get(). */
#define CREDS_NONE (-ENODATA)

/* The chain's own configuration, read only after construction, plus state
 * that only the (single) refreshing thread touches. */
struct creds_chain {
    char *profile;
    char *region;
    char *service_url_sts;
    char *url;
    char *profile_url;
    struct aws_endpoint_config ep;
    struct http_options http;
    char *ca_file;
    char *user_agent;
    uint64_t process_timeout_usec;
    /* Refresher-only: the IMDSv2 session token and when to fetch another. */
    char *imds_token;
    long long imds_token_expires;
    /* Refresher-only: why each provider found nothing, for the final error. */
    char why_none[400];
};

void creds_note_none(struct creds_chain *ch, const char *fmt, ...) _printf_(2, 3);
/* Re-label err as a credentials error, prefixing its message. */
void creds_wrap_error(struct aws_error *err, const char *fmt, ...) _printf_(2, 3);

/* Region for STS calls: the options', else the profile's (may be NULL),
 * else AWS_REGION / AWS_DEFAULT_REGION, else us-east-1. */
const char *creds_sts_region(const struct creds_chain *ch, const char *profile_region);

int creds_from_process(struct creds_chain *ch, const char *profile, const char *command,
                       struct aws_credentials **out, struct aws_error *err);
int creds_from_container(struct creds_chain *ch, struct aws_credentials **out,
                         struct aws_error *err);
int creds_from_imds(struct creds_chain *ch, struct aws_credentials **out, struct aws_error *err);

struct sts_role {
    const char *role_arn;
    const char *session_name; /* NULL: generated */
    const char *external_id;  /* AssumeRole only */
    const char *duration;     /* DurationSeconds as given; NULL: STS's default */
    const char *region;
};
/* AssumeRole signed with source. */
int creds_assume_role(struct creds_chain *ch, const struct sts_role *role,
                      const struct aws_credentials *source, struct aws_credentials **out,
                      struct aws_error *err);
/* AssumeRoleWithWebIdentity with the token read from token_file (re-read on
 * every call: the platform rotates it). */
int creds_assume_role_web_identity(struct creds_chain *ch, const struct sts_role *role,
                                   const char *token_file, struct aws_credentials **out,
                                   struct aws_error *err);

/* Read a small secret file (a token), trailing whitespace trimmed. */
int creds_read_token_file(const char *path, size_t max, char **out);
