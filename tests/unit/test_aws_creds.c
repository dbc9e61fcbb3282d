/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "rarewatch/aws_creds.h"
#include "rarewatch/log.h"
#include "rarewatch/strutil.h"
#include "tap.h"

static char tmpdir[64];
static char cfg_path[256], cred_path[256];

static void setup_dir(void)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/rw-creds-XXXXXX");
        if (!mkdtemp(tmpdir))
            abort();
        snprintf(cfg_path, sizeof(cfg_path), "%s/config", tmpdir);
        snprintf(cred_path, sizeof(cred_path), "%s/credentials", tmpdir);
    }
}

static void write_path(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fputs(text, f);
    fclose(f);
}

/* A clean slate: nothing from the caller's environment may leak into the
 * chain, and IMDS must not be probed on the test machine. */
static void reset_env(const char *config, const char *credentials)
{
    static const char *const vars[] = {
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
        "AWS_CREDENTIAL_EXPIRATION", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME", "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS",
    };
    setup_dir();
    for (size_t i = 0; i < ELEMENTSOF(vars); i++)
        unsetenv(vars[i]);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    write_path(cfg_path, config);
    write_path(cred_path, credentials);
    chmod(cred_path, 0600);
    setenv("AWS_CONFIG_FILE", cfg_path, 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", cred_path, 1);
}

static int chain_get(const struct aws_creds_options *o, struct aws_credentials **c,
                     struct aws_error *err)
{
    struct aws_creds_provider *p = aws_creds_chain_new(o);
    if (!p)
        return -ENOMEM;
    aws_error_clear(err);
    int r = aws_creds_get(p, c, err);
    aws_creds_provider_free(p);
    return r;
}

/* ---------------------------------------------------------------- parsers */

TEST(iso8601)
{
    long long t;
    CHECK_INT(aws_parse_iso8601("1970-01-01T00:00:00Z", &t), 0);
    CHECK_INT(t, 0);
    CHECK_INT(aws_parse_iso8601("2026-11-28T05:10:00Z", &t), 0);
    CHECK_INT(t, 1795842600);
    CHECK_INT(aws_parse_iso8601("2026-11-28T05:10:00.123456Z", &t), 0);
    CHECK_INT(t, 1795842600);
    CHECK_INT(aws_parse_iso8601("2026-11-28T06:10:00+01:00", &t), 0);
    CHECK_INT(t, 1795842600);
    CHECK_INT(aws_parse_iso8601("2026-11-28T04:40:00-0030", &t), 0);
    CHECK_INT(t, 1795842600);
    CHECK_INT(aws_parse_iso8601("2024-02-29T00:00:00Z", &t), 0);
    CHECK_INT(t, 1709164800);
    static const char *const bad[] = {
        "", "2026-11-28", "2026-11-28T05:10:00", "2026-13-01T00:00:00Z", "2023-02-29T00:00:00Z",
        "2026-11-28T24:00:00Z", "2026-11-28T05:10:00ZZ", "2026-11-28T05:10:00.Z",
        "2026-11-28T05:10:00+1", "20261128T051000Z", "2026-11-28T05:10:00+25:00", "-026-11-28T00:00:00Z",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++)
        CHECK_INT(aws_parse_iso8601(bad[i], &t), -EINVAL);
}

static int parse(const char *json, enum aws_creds_json_kind kind, struct aws_credentials **c,
                 struct aws_error *err)
{
    aws_error_clear(err);
    return aws_creds_parse_json(json, strlen(json), kind, "process", c, err);
}

TEST(process_json)
{
    struct aws_credentials *c = NULL;
    struct aws_error err;
    CHECK_INT(parse("{\"Version\": 1, \"AccessKeyId\": \"AKID\", \"SecretAccessKey\": \"SECRETX\","
                    " \"SessionToken\": \"TOK\", \"Expiration\": \"2030-01-01T00:00:00Z\"}\n",
                    AWS_CREDS_JSON_PROCESS, &c, &err),
              0);
    CHECK_STR(c ? c->access_key_id : NULL, "AKID");
    CHECK_STR(c ? c->secret_access_key : NULL, "SECRETX");
    CHECK_STR(c ? c->session_token : NULL, "TOK");
    CHECK_INT(c ? c->expiration : 0, 1893456000);
    CHECK_STR(c ? c->provider : NULL, "process");
    c = aws_credentials_unref(c);

    CHECK_INT(parse("{\"Version\": 1, \"AccessKeyId\": \"AKID\", \"SecretAccessKey\": \"S\"}",
                    AWS_CREDS_JSON_PROCESS, &c, &err),
              0);
    CHECK(c && c->session_token == NULL && c->expiration == 0);
    c = aws_credentials_unref(c);

    static const char *const bad[] = {
        "{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"SECRETX\"}",                    /* no Version */
        "{\"Version\": 2, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"SECRETX\"}",
        "{\"Version\": \"1\", \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"SECRETX\"}",
        "{\"Version\": 1, \"AccessKeyId\": \"A\"}",
        "{\"Version\": 1, \"AccessKeyId\": 5, \"SecretAccessKey\": \"SECRETX\"}",
        "{\"Version\": 1, \"AccessKeyId\": \"A B\", \"SecretAccessKey\": \"SECRETX\"}",
        "{\"Version\": 1, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"SECRETX\", \"Expiration\": \"soon\"}",
        "{\"Version\": 1, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"SECRETX\"} trailing",
        "[1]",
        "not json at all",
        "",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        CHECK_INT(parse(bad[i], AWS_CREDS_JSON_PROCESS, &c, &err), -EINVAL);
        CHECK_INT(err.kind, AWS_ERR_CREDENTIALS);
        CHECK_CONTAINS(err.message, "process");
        CHECK(!strstr(err.message, "SECRETX"));
    }
}

TEST(imds_and_container_json)
{
    struct aws_credentials *c = NULL;
    struct aws_error err;
    CHECK_INT(parse("{\"Code\": \"Success\", \"Type\": \"AWS-HMAC\", \"AccessKeyId\": \"ASIA1\","
                    " \"SecretAccessKey\": \"S\", \"Token\": \"T\", \"Expiration\": \"2030-01-01T00:00:00Z\"}",
                    AWS_CREDS_JSON_IMDS, &c, &err),
              0);
    CHECK_STR(c ? c->session_token : NULL, "T");
    c = aws_credentials_unref(c);
    CHECK_INT(parse("{\"Code\": \"AssumeRoleUnauthorizedAccess\", \"AccessKeyId\": \"A\", "
                    "\"SecretAccessKey\": \"S\"}",
                    AWS_CREDS_JSON_IMDS, &c, &err),
              -EINVAL);
    CHECK_CONTAINS(err.message, "AssumeRoleUnauthorizedAccess");
    CHECK_INT(parse("{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"S\", \"Token\": \"T\"}",
                    AWS_CREDS_JSON_CONTAINER, &c, &err),
              0);
    CHECK_STR(c ? c->session_token : NULL, "T");
    c = aws_credentials_unref(c);
}

TEST(sts_xml)
{
    static const char ok[] =
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
        "<AccessKeyId>ASIAX</AccessKeyId><SecretAccessKey>s&amp;k</SecretAccessKey>"
        "<SessionToken>t</SessionToken><Expiration>2030-01-01T00:00:00.000Z</Expiration>"
        "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
    struct aws_credentials *c = NULL;
    struct aws_error err = { 0 };
    CHECK_INT(aws_creds_parse_sts_xml(ok, strlen(ok), "web-identity", &c, &err), 0);
    CHECK_STR(c ? c->secret_access_key : NULL, "s&k");
    CHECK_INT(c ? c->expiration : 0, 1893456000);
    c = aws_credentials_unref(c);
    /* Truncated: well-formed up to the credentials, but not a document. */
    CHECK_INT(aws_creds_parse_sts_xml(ok, strlen(ok) - 10, "web-identity", &c, &err), -EINVAL);
    CHECK_INT(err.kind, AWS_ERR_CREDENTIALS);
    static const char no_token[] = "<R><Credentials><AccessKeyId>A</AccessKeyId>"
                                   "<SecretAccessKey>S</SecretAccessKey></Credentials></R>";
    CHECK_INT(aws_creds_parse_sts_xml(no_token, strlen(no_token), "sts-assume-role", &c, &err), -EINVAL);
}

TEST(refcount)
{
    struct aws_credentials *c = aws_credentials_new("A", "S", "", 0, "x");
    CHECK(c && c->session_token == NULL);
    CHECK(aws_credentials_ref(c) == c);
    CHECK_INT(c->refcount, 2);
    CHECK(aws_credentials_unref(c) == NULL);
    CHECK_INT(c->refcount, 1);
    aws_credentials_unref(c);
    CHECK(aws_credentials_new(NULL, "S", NULL, 0, "x") == NULL);
}

/* ---------------------------------------------------------------- chain */

TEST(env_beats_profile)
{
    reset_env("[default]\nregion = eu-west-1\n", "[default]\naws_access_key_id = PROFILEKEY\n"
                                                 "aws_secret_access_key = profilesecret\n");
    struct aws_credentials *c = NULL;
    struct aws_error err;
    CHECK_INT(chain_get(NULL, &c, &err), 0);
    CHECK_STR(c ? c->access_key_id : NULL, "PROFILEKEY");
    CHECK_STR(c ? c->provider : NULL, "profile:default");
    c = aws_credentials_unref(c);

    setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    setenv("AWS_SESSION_TOKEN", "envtoken", 1);
    CHECK_INT(chain_get(NULL, &c, &err), 0);
    CHECK_STR(c ? c->access_key_id : NULL, "ENVKEY");
    CHECK_STR(c ? c->session_token : NULL, "envtoken");
    CHECK_STR(c ? c->provider : NULL, "environment");
    c = aws_credentials_unref(c);

    /* Half-configured environment is an error, not a fall-through. */
    unsetenv("AWS_SECRET_ACCESS_KEY");
    CHECK_INT(chain_get(NULL, &c, &err), -EINVAL);
    CHECK_CONTAINS(err.message, "AWS_SECRET_ACCESS_KEY");
    CHECK_INT(err.kind, AWS_ERR_CREDENTIALS);
}

TEST(web_identity_env_beats_profile_and_fails_loudly)
{
    reset_env("", "[default]\naws_access_key_id = PROFILEKEY\naws_secret_access_key = s\n");
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/rw/token", 1);
    setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/r", 1);
    struct aws_credentials *c = NULL;
    struct aws_error err;
    CHECK_INT(chain_get(NULL, &c, &err), -ENOENT);
    CHECK_CONTAINS(err.message, "web-identity");
    CHECK_CONTAINS(err.message, "/nonexistent/rw/token");
    /* Only one of the two variables: not configured, the profile answers. */
    unsetenv("AWS_ROLE_ARN");
    CHECK_INT(chain_get(NULL, &c, &err), 0);
    CHECK_STR(c ? c->access_key_id : NULL, "PROFILEKEY");
    aws_credentials_unref(c);
}

TEST(profile_selection)
{
    reset_env("[profile dev]\nregion = x\n",
              "[default]\naws_access_key_id = D\naws_secret_access_key = s\n"
              "[dev]\naws_access_key_id = DEV\naws_secret_access_key = s\n");
    struct aws_credentials *c = NULL;
    struct aws_error err;
    setenv("AWS_PROFILE", "dev", 1);
    CHECK_INT(chain_get(NULL, &c, &err), 0);
    CHECK_STR(c ? c->access_key_id : NULL, "DEV");
    CHECK_STR(c ? c->provider : NULL, "profile:dev");
    c = aws_credentials_unref(c);
    /* The option beats AWS_PROFILE. */
    struct aws_creds_options o = { .profile = "default" };
    CHECK_INT(chain_get(&o, &c, &err), 0);
    CHECK_STR(c ? c->access_key_id : NULL, "D");
    c = aws_credentials_unref(c);
    /* A profile that was asked for by name must exist. */
    setenv("AWS_PROFILE", "missing", 1);
    CHECK_INT(chain_get(NULL, &c, &err), -ENOENT);
    CHECK_CONTAINS(err.message, "'missing'");
    unsetenv("AWS_PROFILE");
}

TEST(nothing_found)
{
    reset_env("", "");
    struct aws_credentials *c = NULL;
    struct aws_error err;
    CHECK_INT(chain_get(NULL, &c, &err), -ENOKEY);
    CHECK(c == NULL);
    CHECK_INT(err.kind, AWS_ERR_CREDENTIALS);
    CHECK_STR(err.code, "NoCredentials");
    CHECK_CONTAINS(err.message, "AWS_EC2_METADATA_DISABLED");
    CHECK_CONTAINS(err.message, "environment");
}

TEST(partial_profile_and_bad_roles)
{
    struct aws_credentials *c = NULL;
    struct aws_error err;
    reset_env("", "[default]\naws_access_key_id = ONLYID\n");
    CHECK_INT(chain_get(NULL, &c, &err), -EINVAL);
    CHECK_CONTAINS(err.message, "profile 'default'");

    reset_env("[default]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = a\n"
              "[profile a]\nrole_arn = arn:aws:iam::1:role/a\nsource_profile = b\n"
              "[profile b]\nrole_arn = arn:aws:iam::1:role/b\nsource_profile = a\n", "");
    CHECK_INT(chain_get(NULL, &c, &err), -ELOOP);
    CHECK_CONTAINS(err.message, "loops");

    reset_env("[default]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = ghost\n", "");
    CHECK_INT(chain_get(NULL, &c, &err), -ENOENT);
    CHECK_CONTAINS(err.message, "'ghost'");

    reset_env("[default]\nrole_arn = arn:aws:iam::1:role/r\n", "");
    CHECK_INT(chain_get(NULL, &c, &err), -EINVAL);
    CHECK_CONTAINS(err.message, "source_profile");

    reset_env("[default]\nrole_arn = arn:aws:iam::1:role/r\ncredential_source = Nowhere\n", "");
    CHECK_INT(chain_get(NULL, &c, &err), -EINVAL);
    CHECK_CONTAINS(err.message, "credential_source");

    reset_env("[default]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = default\n"
              "mfa_serial = arn:aws:iam::1:mfa/u\n", "");
    CHECK_INT(chain_get(NULL, &c, &err), -EOPNOTSUPP);
}

TEST(unreadable_credentials_file)
{
    struct aws_credentials *c = NULL;
    struct aws_error err;
    reset_env("", "");
    /* A directory cannot be read as a file, even by root. */
    setenv("AWS_SHARED_CREDENTIALS_FILE", tmpdir, 1);
    CHECK_INT(chain_get(NULL, &c, &err), -EINVAL);
    CHECK_INT(err.kind, AWS_ERR_CREDENTIALS);
    CHECK_CONTAINS(err.message, "shared credentials file");
    CHECK_CONTAINS(err.message, tmpdir);
    if (geteuid() != 0) {
        reset_env("", "[default]\naws_access_key_id = A\naws_secret_access_key = SECRETX\n");
        chmod(cred_path, 0);
        CHECK_INT(chain_get(NULL, &c, &err), -EACCES);
        CHECK_CONTAINS(err.message, cred_path);
        CHECK(!strstr(err.message, "SECRETX"));
    }
}

TEST(container_full_uri_must_be_local)
{
    struct aws_credentials *c = NULL;
    struct aws_error err;
    reset_env("", "");
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://192.0.2.1/creds", 1);
    CHECK_INT(chain_get(NULL, &c, &err), -EINVAL);
    CHECK_CONTAINS(err.message, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
    unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
}

/* ---------------------------------------------------------------- credential_process */

static int process_creds(const char *command, uint64_t timeout, struct aws_credentials **c,
                         struct aws_error *err)
{
    char creds[4096];
    snprintf(creds, sizeof(creds), "[default]\ncredential_process = %s\n", command);
    reset_env("", creds);
    struct aws_creds_options o = { .process_timeout_usec = timeout };
    return chain_get(&o, c, err);
}

TEST(process_good)
{
    struct aws_credentials *c = NULL;
    struct aws_error err;
    CHECK_INT(process_creds("printf '{\"Version\":1,\"AccessKeyId\":\"PROC\",\"SecretAccessKey\":"
                            "\"s\",\"SessionToken\":\"t\",\"Expiration\":\"2099-01-01T00:00:00Z\"}'",
                            0, &c, &err),
              0);
    CHECK_STR(c ? c->access_key_id : NULL, "PROC");
    CHECK_STR(c ? c->provider : NULL, "process");
    CHECK_INT(c ? c->expiration : 0, 4070908800);
    aws_credentials_unref(c);
}

TEST(static_keys_beat_credential_process)
{
    struct aws_credentials *c = NULL;
    struct aws_error err;
    reset_env("[default]\ncredential_process = exit 1\n",
              "[default]\naws_access_key_id = STATIC\naws_secret_access_key = s\n");
    CHECK_INT(chain_get(NULL, &c, &err), 0);
    CHECK_STR(c ? c->access_key_id : NULL, "STATIC");
    aws_credentials_unref(c);
}

TEST(process_failures)
{
    struct aws_credentials *c = NULL;
    struct aws_error err;
    CHECK_INT(process_creds("echo SECRETX garbage", 0, &c, &err), -EINVAL);
    CHECK_CONTAINS(err.message, "JSON");
    CHECK(!strstr(err.message, "SECRETX"));

    CHECK_INT(process_creds("echo '{\"Version\":1}'; exit 3", 0, &c, &err), -EIO);
    CHECK_CONTAINS(err.message, "exited with status 3");
    CHECK_CONTAINS(err.message, "profile 'default'");

    CHECK_INT(process_creds("kill -9 $$", 0, &c, &err), -EIO);
    CHECK_CONTAINS(err.message, "signal 9");

    /* More than the cap: killed as soon as it is exceeded. */
    CHECK_INT(process_creds("exec yes SECRETX", 0, &c, &err), -EFBIG);
    CHECK_CONTAINS(err.message, "more than");
}

TEST(process_hang_is_killed_at_the_timeout)
{
    struct aws_credentials *c = NULL;
    struct aws_error err;
    uint64_t t0 = now_monotonic_usec();
    /* The grandchild keeps the pipe open: the whole group must die. */
    CHECK_INT(process_creds("sleep 1000 & sleep 1000", 200 * USEC_PER_MSEC, &c, &err), -ETIMEDOUT);
    CHECK_CONTAINS(err.message, "did not finish within 200ms");
    CHECK(err.timeout);
    /* Closed stdout, still running: the exit wait has the same deadline. */
    CHECK_INT(process_creds("exec >&-; sleep 1000", 200 * USEC_PER_MSEC, &c, &err), -ETIMEDOUT);
    /* Not a time limit on the test: proof that neither wait ran to the sleep's end. */
    CHECK(now_monotonic_usec() - t0 < 900 * USEC_PER_SEC);
}

/* ---------------------------------------------------------------- refresh */

struct fake {
    pthread_mutex_t lock;
    unsigned calls;
    long long lifetime;  /* seconds from now */
    bool fail;
    unsigned serial;
};

static int fake_fetch(void *userdata, struct aws_credentials **out, struct aws_error *err)
{
    struct fake *f = userdata;
    char id[32], secret[32];
    pthread_mutex_lock(&f->lock);
    f->calls++;
    bool fail = f->fail;
    unsigned n = ++f->serial;
    long long life = f->lifetime;
    pthread_mutex_unlock(&f->lock);
    if (fail) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "Fake", "fake: refused");
        return -EIO;
    }
    snprintf(id, sizeof(id), "AK%u", n);
    snprintf(secret, sizeof(secret), "SK%u", n);
    *out = aws_credentials_new(id, secret, NULL, life ? (long long)time(NULL) + life : 0, "fake");
    return *out ? 0 : -ENOMEM;
}

TEST(refresh_ahead_of_expiry)
{
    struct fake f = { .lock = PTHREAD_MUTEX_INITIALIZER, .lifetime = 3600 };
    struct aws_creds_options o = { .refresh_ahead_usec = 300 * USEC_PER_SEC };
    struct aws_creds_provider *p = aws_creds_provider_new(&o, fake_fetch, &f);
    struct aws_credentials *a = NULL, *b = NULL;
    struct aws_error err;
    CHECK_STR(aws_creds_source(p), "none");
    CHECK_INT(aws_creds_get(p, &a, &err), 0);
    CHECK_INT(aws_creds_get(p, &b, &err), 0);
    CHECK(a == b);
    CHECK_INT(f.calls, 1);
    CHECK_STR(aws_creds_source(p), "fake");
    a = aws_credentials_unref(a);
    b = aws_credentials_unref(b);

    /* Next ones live 100 s: inside the 300 s window, so every get refreshes. */
    f.lifetime = 100;
    aws_creds_invalidate(p);
    CHECK_INT(aws_creds_get(p, &a, &err), 0);
    CHECK_STR(a ? a->access_key_id : NULL, "AK2");
    CHECK_INT(aws_creds_get(p, &b, &err), 0);
    CHECK_STR(b ? b->access_key_id : NULL, "AK3");
    CHECK_INT(f.calls, 3);
    /* The old ones stay intact for whoever still holds them. */
    CHECK_STR(a ? a->secret_access_key : NULL, "SK2");
    aws_credentials_unref(a);
    aws_credentials_unref(b);
    aws_creds_provider_free(p);
}

TEST(failed_refresh_keeps_valid_credentials)
{
    struct fake f = { .lock = PTHREAD_MUTEX_INITIALIZER, .lifetime = 100 };
    struct aws_creds_options o = { .refresh_ahead_usec = 300 * USEC_PER_SEC,
                                   .refresh_retry_usec = 3600 * USEC_PER_SEC };
    struct aws_creds_provider *p = aws_creds_provider_new(&o, fake_fetch, &f);
    struct aws_credentials *a = NULL, *b = NULL;
    struct aws_error err;
    CHECK_INT(aws_creds_get(p, &a, &err), 0);
    f.fail = true;
    CHECK_INT(aws_creds_get(p, &b, &err), 0);
    CHECK(a == b);
    CHECK_INT(f.calls, 2);
    b = aws_credentials_unref(b);
    /* Within the retry pause nobody asks the failing source again. */
    CHECK_INT(aws_creds_get(p, &b, &err), 0);
    CHECK_INT(f.calls, 2);
    b = aws_credentials_unref(b);
    a = aws_credentials_unref(a);
    /* Invalidated (the service said expired): no valid credentials, the error shows. */
    aws_creds_invalidate(p);
    CHECK_INT(aws_creds_get(p, &b, &err), -EIO);
    CHECK(b == NULL);
    CHECK_STR(err.code, "Fake");
    CHECK_INT(err.kind, AWS_ERR_CREDENTIALS);
    f.fail = false;
    CHECK_INT(aws_creds_get(p, &b, &err), 0);
    CHECK_STR(b ? b->access_key_id : NULL, "AK4");
    aws_credentials_unref(b);
    aws_creds_provider_free(p);
}

TEST(expired_credentials_are_never_returned)
{
    struct fake f = { .lock = PTHREAD_MUTEX_INITIALIZER, .lifetime = -10 };
    struct aws_creds_provider *p = aws_creds_provider_new(NULL, fake_fetch, &f);
    struct aws_credentials *a = NULL;
    struct aws_error err;
    /* The source hands out already-expired credentials: an error naming it,
     * not a loop and not credentials every service would refuse. */
    CHECK_INT(aws_creds_get(p, &a, &err), -EKEYEXPIRED);
    CHECK(a == NULL);
    CHECK_CONTAINS(err.message, "fake");
    CHECK_INT(aws_creds_get(p, &a, &err), -EKEYEXPIRED);
    CHECK_INT(f.calls, 2);
    f.fail = true;
    CHECK_INT(aws_creds_get(p, &a, &err), -EIO);
    CHECK_STR(err.code, "Fake");
    aws_creds_provider_free(p);
}

struct hammer {
    struct aws_creds_provider *p;
    unsigned iterations;
    unsigned bad;
};

static void *hammer_thread(void *arg)
{
    struct hammer *h = arg;
    for (unsigned i = 0; i < h->iterations; i++) {
        struct aws_credentials *c = NULL;
        struct aws_error err;
        if (aws_creds_get(h->p, &c, &err) < 0 || !c) {
            h->bad++;
            continue;
        }
        /* Read every byte as a signer would; ASan flags any freed memory. */
        if (strcmp(c->access_key_id + 2, c->secret_access_key + 2) != 0)
            h->bad++;
        aws_credentials_unref(c);
    }
    return NULL;
}

TEST(concurrent_gets_while_refreshing)
{
    /* Every credential is inside the refresh window, so refreshes run
     * continuously while eight threads get and read. */
    struct fake f = { .lock = PTHREAD_MUTEX_INITIALIZER, .lifetime = 60 };
    struct aws_creds_options o = { .refresh_ahead_usec = 300 * USEC_PER_SEC };
    struct aws_creds_provider *p = aws_creds_provider_new(&o, fake_fetch, &f);
    pthread_t t[8];
    struct hammer h[8];
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        h[i] = (struct hammer){ .p = p, .iterations = 20000 };
        CHECK_INT(pthread_create(&t[i], NULL, hammer_thread, &h[i]), 0);
    }
    /* Invalidations in the middle force waiters as well. */
    for (unsigned i = 0; i < 200; i++)
        aws_creds_invalidate(p);
    unsigned bad = 0;
    for (size_t i = 0; i < ELEMENTSOF(t); i++) {
        pthread_join(t[i], NULL);
        bad += h[i].bad;
    }
    CHECK_INT(bad, 0);
    CHECK(f.calls > 1);
    /* One refresh per get at most: refreshers never pile up. */
    CHECK(f.calls <= 8 * 20000);
    aws_creds_provider_free(p);
}

int main(void)
{
    log_set_level(LOG_ERR);
    int r = tap_run();
    if (tmpdir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            r = 1;
    }
    return r;
}
