/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared config / credentials parser against arbitrary text. The first
 * byte picks the file kind. Besides no crash or hang: values come back
 * trimmed, an error names a line inside the input and never echoes it, and
 * parsing is deterministic (a second parse answers every lookup the same).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/aws_profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const profiles[] = { "default", "a", "dev", "profile a", "" };
static const char *const keys[] = { "region", "aws_access_key_id", "role_arn", "k", "kinesis.endpoint_url", "" };

static void check_value(const char *v)
{
    size_t n;
    if (!v)
        return;
    n = strlen(v);
    if (n && (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r'))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 20)
        return 0;
    enum aws_profile_file kind = data[0] & 1 ? AWS_PROFILE_FILE_CREDENTIALS : AWS_PROFILE_FILE_CONFIG;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    struct aws_shared_config *a = aws_shared_config_new(), *b = aws_shared_config_new();
    struct aws_error ea = { 0 }, eb = { 0 };
    if (!a || !b)
        abort();
    int ra = aws_shared_config_parse(a, kind, text, len, "fuzz", &ea);
    int rb = aws_shared_config_parse(b, kind, text, len, "fuzz", &eb);
    if (ra != rb || strcmp(ea.message, eb.message) != 0)
        abort();
    if (ra < 0) {
        if (ra != -EINVAL || ea.kind != AWS_ERR_CONFIG || !strstr(ea.message, "fuzz"))
            abort();
    }
    for (size_t i = 0; i < sizeof(profiles) / sizeof(*profiles); i++) {
        if (aws_shared_config_has_profile(a, profiles[i]) != aws_shared_config_has_profile(b, profiles[i]))
            abort();
        for (size_t j = 0; j < sizeof(keys) / sizeof(*keys); j++) {
            const char *va = aws_shared_config_get(a, profiles[i], keys[j]);
            const char *vb = aws_shared_config_get(b, profiles[i], keys[j]);
            if (!va != !vb || (va && strcmp(va, vb) != 0))
                abort();
            check_value(va);
            check_value(aws_shared_config_get_section(a, AWS_SECTION_SERVICES, profiles[i], keys[j]));
        }
    }
    aws_shared_config_free(a);
    aws_shared_config_free(b);
    return 0;
}
