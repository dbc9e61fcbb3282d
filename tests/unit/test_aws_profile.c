/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "rarewatch/aws_profile.h"
#include "tap.h"

static struct aws_shared_config *parse2(const char *config, const char *creds, int *r,
                                        struct aws_error *err)
{
    struct aws_shared_config *c = aws_shared_config_new();
    *r = aws_shared_config_parse(c, AWS_PROFILE_FILE_CONFIG, config, strlen(config), "config", err);
    if (*r >= 0 && creds)
        *r = aws_shared_config_parse(c, AWS_PROFILE_FILE_CREDENTIALS, creds, strlen(creds),
                                     "credentials", err);
    return c;
}

TEST(config_sections_and_values)
{
    static const char cfg[] =
        "# comment\n"
        "; another\n"
        "[default]\n"
        "region = eu-west-1\n"
        "output=json   # trailing comment\n"
        "\n"
        "[profile dev]   ; comment after the header\n"
        "region=us-east-2\n"
        "role_arn = arn:aws:iam::123456789012:role/dev\n"
        "source_profile = default\n"
        "endpoint_url = http://localhost:4566\n"
        "credential_process = /usr/bin/tool --arg=a#b ; c\n"
        "[profile   spaced  ]\n"
        "region = ap-south-1\n"
        "[sso-session corp]\n"
        "sso_region = us-east-1\n"
        "[services local]\n"
        "kinesis =\n"
        "  endpoint_url = http://127.0.0.1:4567\n"
        "\tregion = us-west-2\n"
        "dynamodb =\n"
        "  endpoint_url = http://127.0.0.1:8000\n"
        "[notaprofile]\n"
        "region = nowhere\n";
    struct aws_error err = { 0 };
    int r;
    struct aws_shared_config *c = parse2(cfg, NULL, &r, &err);
    CHECK_INT(r, 0);
    CHECK_STR(aws_shared_config_get(c, "default", "region"), "eu-west-1");
    CHECK_STR(aws_shared_config_get(c, "default", "output"), "json");
    CHECK_STR(aws_shared_config_get(c, "dev", "REGION"), "us-east-2");
    CHECK_STR(aws_shared_config_get(c, "dev", "source_profile"), "default");
    CHECK_STR(aws_shared_config_get(c, "dev", "endpoint_url"), "http://localhost:4566");
    /* '#' without whitespace before it is part of the value. */
    CHECK_STR(aws_shared_config_get(c, "dev", "credential_process"), "/usr/bin/tool --arg=a#b");
    CHECK_STR(aws_shared_config_get(c, "spaced", "region"), "ap-south-1");
    CHECK_STR(aws_shared_config_get_section(c, AWS_SECTION_SSO_SESSION, "corp", "sso_region"),
              "us-east-1");
    CHECK_STR(aws_shared_config_get_section(c, AWS_SECTION_SERVICES, "local", "kinesis.endpoint_url"),
              "http://127.0.0.1:4567");
    CHECK_STR(aws_shared_config_get_section(c, AWS_SECTION_SERVICES, "local", "kinesis.region"),
              "us-west-2");
    CHECK_STR(aws_shared_config_get_section(c, AWS_SECTION_SERVICES, "local", "dynamodb.endpoint_url"),
              "http://127.0.0.1:8000");
    /* Neither a profile section nor a profile named like the service section. */
    CHECK(aws_shared_config_get(c, "local", "kinesis.endpoint_url") == NULL);
    CHECK(!aws_shared_config_has_profile(c, "notaprofile"));
    CHECK(!aws_shared_config_has_profile(c, "corp"));
    CHECK(aws_shared_config_has_profile(c, "dev"));
    aws_shared_config_free(c);
}

TEST(credentials_file_wins_and_names_are_literal)
{
    static const char cfg[] = "[profile a]\n"
                              "aws_access_key_id = FROMCONFIG\n"
                              "region = eu-north-1\n"
                              "[profile profile b]\n"
                              "region = x\n";
    static const char creds[] = "[a]\n"
                                "aws_access_key_id = FROMCREDS\n"
                                "aws_secret_access_key = s1\n"
                                "[profile c]\n"
                                "aws_access_key_id = literal\n"
                                "[empty]\n";
    struct aws_error err = { 0 };
    int r;
    struct aws_shared_config *c = parse2(cfg, creds, &r, &err);
    CHECK_INT(r, 0);
    CHECK_STR(aws_shared_config_get(c, "a", "aws_access_key_id"), "FROMCREDS");
    CHECK_STR(aws_shared_config_get(c, "a", "region"), "eu-north-1");
    /* The credentials file has no "profile " prefix; a name with a blank is
     * invalid there and ignored (as the Java and CRT SDKs do). */
    CHECK(aws_shared_config_get(c, "profile c", "aws_access_key_id") == NULL);
    CHECK(aws_shared_config_get(c, "c", "aws_access_key_id") == NULL);
    /* A name with blanks in the config file is ignored, as the SDKs do. */
    CHECK(!aws_shared_config_has_profile(c, "profile b"));
    CHECK(aws_shared_config_has_profile(c, "empty"));
    aws_shared_config_free(c);
}

TEST(repeats_merge_last_wins_and_continuations)
{
    static const char cfg[] = "[default]\n"
                              "region = a\n"
                              "[profile x]\n"
                              "k = 1\n"
                              "[default]\n"
                              "region = b\n"
                              "multi = first\n"
                              "  second\n"
                              "  third\n"
                              "[profile default]\n"
                              "output = text\n";
    struct aws_error err = { 0 };
    int r;
    struct aws_shared_config *c = parse2(cfg, NULL, &r, &err);
    CHECK_INT(r, 0);
    CHECK_STR(aws_shared_config_get(c, "default", "region"), "b");
    CHECK_STR(aws_shared_config_get(c, "default", "multi"), "first\nsecond\nthird");
    CHECK_STR(aws_shared_config_get(c, "default", "output"), "text");
    CHECK_STR(aws_shared_config_get(c, "x", "k"), "1");
    aws_shared_config_free(c);
}

TEST(errors_name_the_line_never_the_text)
{
    static const char *const bad[] = {
        "[default]\nAKIDSECRETLINE\n",
        "[default]\n= novalue\n",
        "[default\nregion = x\n",
        "[default] junk\n",
        "[default]\n  indented = without parent\n",
    };
    static const unsigned lines[] = { 2, 2, 1, 1, 2 };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        struct aws_error err = { 0 };
        int r;
        struct aws_shared_config *c = parse2(bad[i], NULL, &r, &err);
        char want[64];
        snprintf(want, sizeof(want), "config, line %u:", lines[i]);
        CHECK_INT(r, -EINVAL);
        CHECK_INT(err.kind, AWS_ERR_CONFIG);
        CHECK_CONTAINS(err.message, want);
        CHECK(!strstr(err.message, "AKIDSECRETLINE"));
        aws_shared_config_free(c);
    }
    struct aws_error err = { 0 };
    struct aws_shared_config *c = aws_shared_config_new();
    CHECK_INT(aws_shared_config_parse(c, AWS_PROFILE_FILE_CREDENTIALS, "[a]\nk = v\0x\n", 11, "f", &err),
              -EINVAL);
    CHECK_CONTAINS(err.message, "NUL");
    aws_shared_config_free(c);
}

TEST(lines_outside_sections_and_in_ignored_sections)
{
    static const char cfg[] = "stray = 1\n"
                              "also stray\n"
                              "[unknown thing]\n"
                              "anything goes here\n"
                              "[default]\r\n"
                              "region = crlf \r\n";
    struct aws_error err = { 0 };
    int r;
    struct aws_shared_config *c = parse2(cfg, NULL, &r, &err);
    CHECK_INT(r, 0);
    CHECK_STR(aws_shared_config_get(c, "default", "region"), "crlf");
    aws_shared_config_free(c);
}

static char tmpdir[64];

static void write_file(const char *name, const char *text, mode_t mode)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

static void setup_dir(void)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/rw-profile-XXXXXX");
        if (!mkdtemp(tmpdir))
            abort();
    }
}

TEST(load_honours_environment_and_helpers)
{
    char cfg[256], cred[256];
    setup_dir();
    write_file("config", "[default]\nregion = eu-west-3\n[profile p]\nregion = sa-east-1\n"
                         "endpoint_url = http://127.0.0.1:9\n", 0600);
    write_file("credentials", "[p]\naws_access_key_id = K\n", 0600);
    snprintf(cfg, sizeof(cfg), "%s/config", tmpdir);
    snprintf(cred, sizeof(cred), "%s/credentials", tmpdir);
    setenv("AWS_CONFIG_FILE", cfg, 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", cred, 1);
    unsetenv("AWS_PROFILE");

    char *v = aws_profile_region(NULL);
    CHECK_STR(v, "eu-west-3");
    free(v);
    v = aws_profile_region("p");
    CHECK_STR(v, "sa-east-1");
    free(v);
    v = aws_profile_endpoint_url("p");
    CHECK_STR(v, "http://127.0.0.1:9");
    free(v);
    CHECK(aws_profile_endpoint_url(NULL) == NULL);
    setenv("AWS_PROFILE", "p", 1);
    CHECK_STR(aws_profile_name(NULL), "p");
    CHECK_STR(aws_profile_name("explicit"), "explicit");
    v = aws_profile_region(NULL);
    CHECK_STR(v, "sa-east-1");
    free(v);
    unsetenv("AWS_PROFILE");

    struct aws_error err = { 0 };
    struct aws_shared_config *c = NULL;
    CHECK_INT(aws_shared_config_load(NULL, NULL, &c, &err), 0);
    CHECK_STR(aws_shared_config_get(c, "p", "aws_access_key_id"), "K");
    aws_shared_config_free(c);

    /* Missing files are empty files. */
    setenv("AWS_CONFIG_FILE", "/nonexistent/rw/config", 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/rw/credentials", 1);
    c = NULL;
    CHECK_INT(aws_shared_config_load(NULL, NULL, &c, &err), 0);
    CHECK(c && !aws_shared_config_has_profile(c, "default"));
    aws_shared_config_free(c);
    unsetenv("AWS_CONFIG_FILE");
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
}

TEST(unreadable_file_is_a_clear_error)
{
    char cred[256];
    setup_dir();
    snprintf(cred, sizeof(cred), "%s/credentials-unreadable", tmpdir);
    write_file("credentials-unreadable", "[default]\naws_access_key_id = K\n", 0000);
    struct aws_error err = { 0 };
    struct aws_shared_config *c = NULL;
    int r = aws_shared_config_load("/nonexistent/config", cred, &c, &err);
    if (geteuid() == 0) {
        /* root reads mode 0000 files; use a directory instead. */
        CHECK_INT(r, 0);
        aws_shared_config_free(c);
        c = NULL;
        r = aws_shared_config_load("/nonexistent/config", tmpdir, &c, &err);
        CHECK_INT(r, -EINVAL);
        CHECK_CONTAINS(err.message, "not a regular file");
        CHECK_CONTAINS(err.message, tmpdir);
    } else {
        CHECK_INT(r, -EACCES);
        CHECK_CONTAINS(err.message, "shared credentials file");
        CHECK_CONTAINS(err.message, cred);
    }
    CHECK(c == NULL);
    CHECK_INT(err.kind, AWS_ERR_CONFIG);
}

int main(void)
{
    int r = tap_run();
    if (tmpdir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            r = 1;
    }
    return r;
}
