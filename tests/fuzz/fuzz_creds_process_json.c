/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The credentials JSON readers (credential_process, container, IMDS) and the
 * ISO 8601 reader against arbitrary bytes. Accepted credentials must be
 * usable in a signature: keys without blanks or control bytes, a
 * non-negative expiry, and the Expiration string parses alone too.
 */
#include <stdlib.h>
#include <string.h>

#include "rarewatch/aws_creds.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const char *s)
{
    if (!s || !*s)
        abort();
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 20)
        return 0;
    static const enum aws_creds_json_kind kinds[] = { AWS_CREDS_JSON_PROCESS, AWS_CREDS_JSON_CONTAINER,
                                                      AWS_CREDS_JSON_IMDS };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(*kinds); i++) {
        struct aws_credentials *c = NULL;
        struct aws_error err = { 0 };
        int r = aws_creds_parse_json((const char *)data, size, kinds[i], "process", &c, &err);
        if (r < 0) {
            if (c || (r != -ENOMEM && err.kind != AWS_ERR_CREDENTIALS))
                abort();
            continue;
        }
        check_field(c->access_key_id);
        check_field(c->secret_access_key);
        if (c->session_token)
            check_field(c->session_token);
        if (c->expiration < 0 || strcmp(c->provider, "process") != 0)
            abort();
        aws_credentials_unref(c);
    }
    /* The same bytes as a date-time string. */
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = 0;
    long long t;
    if (aws_parse_iso8601(s, &t) == 0 && strlen(s) < 20)
        abort(); /* nothing shorter than "YYYY-MM-DDTHH:MM:SSZ" is a complete date-time */
    free(s);
    return 0;
}
