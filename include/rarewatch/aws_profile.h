/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The AWS shared config and credentials files, read the way the AWS SDKs
 * read them.
 *
 * Files: AWS_CONFIG_FILE (default ~/.aws/config) and
 * AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/credentials); "~/" expands to
 * $HOME. A file that does not exist is an empty file; one that exists but
 * cannot be read (permissions, a directory, larger than
 * AWS_PROFILE_MAX_FILE_SIZE) is an error naming the file.
 *
 * Sections: in the config file [default] and [profile NAME] are profiles
 * ([profile default] is "default" too), [sso-session NAME] and
 * [services NAME] are kept under their own kinds, anything else is ignored
 * as the SDKs do. In the credentials file every [NAME] is a profile.
 * Repeated sections merge; a repeated key keeps its last value.
 *
 * Lines: "key = value" with the key and value trimmed. Lines whose first
 * non-blank character is '#' or ';' are comments, and so is the rest of a
 * value from a '#' or ';' that follows whitespace (a section line may end in
 * a comment too). An indented line continues the property above it: if that
 * property's value is empty the indented lines are sub-properties
 * ("kinesis =\n  endpoint_url = X" is stored as key "kinesis.endpoint_url"),
 * otherwise they are appended to its value after a newline. Keys compare
 * case-insensitively, profile and section names exactly. Anything else — a
 * line without '=', an unterminated section header, a NUL byte — is an error
 * naming the file and line, never the line's text (it may hold a secret).
 *
 * Lookup: for profile keys the credentials file wins over the config file,
 * as in the SDKs.
 */
#include <stdbool.h>
#include <stddef.h>

#include "rarewatch/aws_error.h"
#include "rarewatch/macro.h"

#define AWS_PROFILE_MAX_FILE_SIZE (4u << 20)

enum aws_profile_file {
    AWS_PROFILE_FILE_CONFIG,
    AWS_PROFILE_FILE_CREDENTIALS,
};

enum aws_profile_section {
    AWS_SECTION_PROFILE,
    AWS_SECTION_SSO_SESSION,
    AWS_SECTION_SERVICES,
};

struct aws_shared_config;

/* An empty set, to be filled by aws_shared_config_parse(). NULL on ENOMEM. */
struct aws_shared_config *aws_shared_config_new(void);
struct aws_shared_config *aws_shared_config_free(struct aws_shared_config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct aws_shared_config *, aws_shared_config_free)

/* Parse one file's text into c (pure: no I/O). name is used in error
 * messages only. 0, -EINVAL with err (AWS_ERR_CONFIG) naming name:line, or
 * -ENOMEM. On error c keeps what was parsed before the bad line. */
int aws_shared_config_parse(struct aws_shared_config *c, enum aws_profile_file kind,
                            const char *text, size_t len, const char *name,
                            struct aws_error *err);

/* Read both files (the paths; NULL means the environment's or the default
 * path). Caller owns *out. 0, or negative errno with err (AWS_ERR_CONFIG)
 * naming the file. */
int aws_shared_config_load(const char *config_path, const char *credentials_path,
                           struct aws_shared_config **out, struct aws_error *err);

/* A profile's value for key (credentials file first, then config file);
 * NULL when unset. Valid until c is freed. */
const char *aws_shared_config_get(const struct aws_shared_config *c, const char *profile,
                                  const char *key);
/* A value of an [sso-session NAME] or [services NAME] section (or a profile,
 * config file only when kind is not AWS_SECTION_PROFILE). */
const char *aws_shared_config_get_section(const struct aws_shared_config *c,
                                          enum aws_profile_section kind, const char *name,
                                          const char *key);
/* Whether either file has a section for this profile. */
bool aws_shared_config_has_profile(const struct aws_shared_config *c, const char *profile);

/* The profile to use: name if non-empty, else AWS_PROFILE, else "default". */
const char *aws_profile_name(const char *name);

/* One value of a profile from the files named by the environment: 0 with
 * *out newly allocated (caller frees) or NULL when unset, or negative errno
 * with err filled when a file cannot be read or parsed. profile_name NULL
 * means aws_profile_name(NULL). */
int aws_profile_get_value(const char *profile_name, const char *key, char **out,
                          struct aws_error *err);
/* Convenience for settings code: the profile's region / endpoint_url, newly
 * allocated, or NULL when unset or when the files cannot be read (the
 * failure is logged once per call at warning level, naming the file). */
char *aws_profile_region(const char *profile_name);
char *aws_profile_endpoint_url(const char *profile_name);
