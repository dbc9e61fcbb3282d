/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/aws_creds.h"

#include <json-c/json.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include "aws_creds_internal.h"
#include "rarewatch/aws_profile.h"
#include "rarewatch/buf.h"
#include "rarewatch/log.h"
#include "rarewatch/strutil.h"
#include "rarewatch/xml_extract.h"

/* ------------------------------------------------------------------ credentials */

static void free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

struct aws_credentials *aws_credentials_new(const char *access_key_id, const char *secret,
                                            const char *session_token, long long expiration,
                                            const char *provider)
{
    if (!access_key_id || !secret || !provider)
        return NULL;
    struct aws_credentials *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->refcount = 1;
    c->expiration = expiration;
    c->access_key_id = strdup(access_key_id);
    c->secret_access_key = strdup(secret);
    c->provider = strdup(provider);
    if (session_token && *session_token)
        c->session_token = strdup(session_token);
    if (!c->access_key_id || !c->secret_access_key || !c->provider ||
        (session_token && *session_token && !c->session_token))
        return aws_credentials_unref(c);
    return c;
}

struct aws_credentials *aws_credentials_ref(struct aws_credentials *c)
{
    if (c)
        __atomic_add_fetch(&c->refcount, 1, __ATOMIC_RELAXED);
    return c;
}

struct aws_credentials *aws_credentials_unref(struct aws_credentials *c)
{
    if (!c || __atomic_sub_fetch(&c->refcount, 1, __ATOMIC_ACQ_REL) > 0)
        return NULL;
    free(c->access_key_id);
    free_secret(c->secret_access_key);
    free_secret(c->session_token);
    free(c->provider);
    free(c);
    return NULL;
}

/* ------------------------------------------------------------------ parsers */

static long long days_from_civil(long long y, unsigned m, unsigned d)
{
    /* Howard Hinnant's algorithm: exact for the proleptic Gregorian calendar,
     * no timegm() and no dependence on TZ. */
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

static int digits(const char **s, unsigned n, unsigned *out)
{
    unsigned v = 0;
    for (unsigned i = 0; i < n; i++) {
        char c = (*s)[i];
        if (c < '0' || c > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(c - '0');
    }
    *s += n;
    *out = v;
    return 0;
}

static bool is_leap(unsigned y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int aws_parse_iso8601(const char *s, long long *out)
{
    static const unsigned mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    unsigned Y, M, D, h, m, sec, oh = 0, om = 0;
    int sign = 0;

    if (!s || !out)
        return -EINVAL;
    if (digits(&s, 4, &Y) < 0 || *s++ != '-' || digits(&s, 2, &M) < 0 || *s++ != '-' ||
        digits(&s, 2, &D) < 0)
        return -EINVAL;
    if (*s != 'T' && *s != 't' && *s != ' ')
        return -EINVAL;
    s++;
    if (digits(&s, 2, &h) < 0 || *s++ != ':' || digits(&s, 2, &m) < 0 || *s++ != ':' ||
        digits(&s, 2, &sec) < 0)
        return -EINVAL;
    if (*s == '.' || *s == ',') {
        s++;
        if (*s < '0' || *s > '9')
            return -EINVAL;
        /* Sub-second precision does not matter for an expiry. */
        for (unsigned n = 0; *s >= '0' && *s <= '9'; s++)
            if (++n > 12)
                return -EINVAL;
    }
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        sign = *s++ == '+' ? 1 : -1;
        if (digits(&s, 2, &oh) < 0)
            return -EINVAL;
        if (*s == ':')
            s++;
        if (digits(&s, 2, &om) < 0 || oh > 23 || om > 59)
            return -EINVAL;
    } else {
        return -EINVAL; /* a local time would be ambiguous */
    }
    if (*s)
        return -EINVAL;
    if (M < 1 || M > 12 || D < 1 || h > 23 || m > 59 || sec > 60)
        return -EINVAL;
    if (D > mdays[M - 1] + (M == 2 && is_leap(Y)))
        return -EINVAL;
    long long t = days_from_civil(Y, M, D) * 86400 + h * 3600 + m * 60 + MIN(sec, 59u);
    t -= sign * (long long)(oh * 3600 + om * 60);
    *out = t;
    return 0;
}

/* Keys and tokens go into HTTP headers: reject what would break one. */
static bool valid_field(const char *s, size_t max)
{
    size_t n = 0;
    if (!s || !*s)
        return false;
    for (; *s; s++, n++)
        if ((unsigned char)*s < 0x21 || *s == 0x7f || n >= max)
            return false;
    return true;
}

#define MAX_KEY_ID_LEN 128
#define MAX_SECRET_LEN 256
#define MAX_TOKEN_LEN 16384

static int make_credentials(const char *provider, const char *key_id, const char *secret,
                            const char *token, const char *expiration,
                            struct aws_credentials **out, struct aws_error *err)
{
    long long exp = 0;
    if (!valid_field(key_id, MAX_KEY_ID_LEN) || !valid_field(secret, MAX_SECRET_LEN)) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidCredentials",
                      "%s: the access key id or secret access key is missing or malformed",
                      provider);
        return -EINVAL;
    }
    if (token && *token && !valid_field(token, MAX_TOKEN_LEN)) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidCredentials",
                      "%s: the session token is malformed", provider);
        return -EINVAL;
    }
    if (expiration && aws_parse_iso8601(expiration, &exp) < 0) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidCredentials",
                      "%s: Expiration is not an ISO 8601 date-time", provider);
        return -EINVAL;
    }
    if (expiration && exp <= 0) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidCredentials",
                      "%s: Expiration is before 1970", provider);
        return -EINVAL;
    }
    *out = aws_credentials_new(key_id, secret, token, exp, provider);
    return *out ? 0 : -ENOMEM;
}

static void json_putp(json_object **o)
{
    if (*o)
        json_object_put(*o);
}

/* A string member, or NULL when absent; -EINVAL when present and not a string. */
static int json_str(json_object *o, const char *key, const char **out)
{
    json_object *v;
    *out = NULL;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return -EINVAL;
    *out = json_object_get_string(v);
    return 0;
}

int aws_creds_parse_json(const char *json, size_t len, enum aws_creds_json_kind kind,
                         const char *provider, struct aws_credentials **out,
                         struct aws_error *err)
{
    _cleanup_(json_putp) json_object *root = NULL;
    const char *key_id, *secret, *token, *exp, *code;
    const char *token_key = kind == AWS_CREDS_JSON_PROCESS ? "SessionToken" : "Token";

    if (!json || !provider || !out || len > INT32_MAX)
        return -EINVAL;
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return -ENOMEM;
    root = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = jerr == json_tokener_success ? json_tokener_get_parse_end(tok) : 0;
    json_tokener_free(tok);
    /* Only whitespace may follow the document: "{}garbage" is garbage. */
    for (size_t i = used; root && i < len; i++)
        if (!strchr(" \t\r\n", json[i]) || !json[i]) {
            json_object_put(TAKE_PTR(root));
            break;
        }
    if (!root || !json_object_is_type(root, json_type_object)) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidCredentialsDocument",
                      "%s: the response is not a JSON object", provider);
        return -EINVAL;
    }
    if (kind == AWS_CREDS_JSON_PROCESS) {
        json_object *v;
        if (!json_object_object_get_ex(root, "Version", &v) ||
            !json_object_is_type(v, json_type_int) || json_object_get_int64(v) != 1) {
            aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidCredentialsDocument",
                          "%s: the output must have \"Version\": 1", provider);
            return -EINVAL;
        }
    }
    if (json_str(root, "AccessKeyId", &key_id) < 0 || json_str(root, "SecretAccessKey", &secret) < 0 ||
        json_str(root, token_key, &token) < 0 || json_str(root, "Expiration", &exp) < 0 ||
        json_str(root, "Code", &code) < 0) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidCredentialsDocument",
                      "%s: a credentials field is not a string", provider);
        return -EINVAL;
    }
    if (kind == AWS_CREDS_JSON_IMDS && code && !streq(code, "Success")) {
        char safe[64];
        size_t i;
        /* The code is outside text going to the log: keep it printable. */
        for (i = 0; code[i] && i < sizeof(safe) - 1; i++)
            safe[i] = (code[i] >= 0x20 && code[i] < 0x7f) ? code[i] : '?';
        safe[i] = 0;
        aws_error_set(err, AWS_ERR_CREDENTIALS, "InstanceProfileError",
                      "%s: the instance metadata service answered Code \"%s\"", provider, safe);
        return -EINVAL;
    }
    return make_credentials(provider, key_id, secret, token, exp, out, err);
}

int aws_creds_parse_sts_xml(const char *xml, size_t len, const char *provider,
                            struct aws_credentials **out, struct aws_error *err)
{
    static const char *const paths[] = { "Credentials/AccessKeyId", "Credentials/SecretAccessKey",
                                         "Credentials/SessionToken", "Credentials/Expiration" };
    char *v[ELEMENTSOF(paths)] = { NULL };
    int r = 0;

    if (!xml || !provider || !out)
        return -EINVAL;
    for (size_t i = 0; i < ELEMENTSOF(paths) && r >= 0; i++)
        r = xml_extract(xml, len, paths[i], &v[i], NULL);
    if (r == -ENOMEM)
        goto out;
    if (r < 0) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidStsResponse",
                      "%s: the STS response has no complete <Credentials> element", provider);
        r = -EINVAL;
        goto out;
    }
    r = make_credentials(provider, v[0], v[1], v[2], v[3], out, err);
out:
    for (size_t i = 0; i < ELEMENTSOF(v); i++)
        free_secret(v[i]);
    return r;
}

/* ------------------------------------------------------------------ provider */

struct source_name {
    struct source_name *next;
    char name[];
};

struct aws_creds_provider {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* Under lock: */
    struct aws_credentials *cur;
    bool refreshing;
    bool invalidated;
    bool warned;
    uint64_t generation;      /* refresh attempts finished */
    uint64_t retry_after;     /* realtime usec */
    int last_r;
    struct aws_error last_err;
    const char *source;       /* interned, never freed before the provider */
    struct source_name *names;

    uint64_t refresh_ahead_usec;
    uint64_t refresh_retry_usec;
    aws_creds_fetch_fn fetch;
    void *userdata;
    struct creds_chain *chain; /* NULL for custom providers */
};

static struct creds_chain *creds_chain_free(struct creds_chain *ch);

struct aws_creds_provider *aws_creds_provider_new(const struct aws_creds_options *o,
                                                  aws_creds_fetch_fn fetch, void *userdata)
{
    if (!fetch)
        return NULL;
    struct aws_creds_provider *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->fetch = fetch;
    p->userdata = userdata;
    p->source = "none";
    p->refresh_ahead_usec = o && o->refresh_ahead_usec ? o->refresh_ahead_usec
                                                       : AWS_CREDS_DEFAULT_REFRESH_AHEAD_USEC;
    p->refresh_retry_usec = o && o->refresh_retry_usec ? o->refresh_retry_usec : 10 * USEC_PER_SEC;
    p->refresh_retry_usec = MIN(p->refresh_retry_usec, MAX(p->refresh_ahead_usec / 4, 1));
    return p;
}

struct aws_creds_provider *aws_creds_provider_free(struct aws_creds_provider *p)
{
    if (!p)
        return NULL;
    aws_credentials_unref(p->cur);
    for (struct source_name *n = p->names, *next; n; n = next) {
        next = n->next;
        free(n);
    }
    creds_chain_free(p->chain);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
    return NULL;
}

/* Under lock. Interning keeps aws_creds_source()'s answer valid for the
 * provider's life although the credentials it came from are replaced. */
static const char *intern_source(struct aws_creds_provider *p, const char *name)
{
    for (struct source_name *n = p->names; n; n = n->next)
        if (streq(n->name, name))
            return n->name;
    size_t len = strlen(name);
    struct source_name *n = malloc(sizeof(*n) + len + 1);
    if (!n)
        return p->source;
    memcpy(n->name, name, len + 1);
    n->next = p->names;
    p->names = n;
    return n->name;
}

static uint64_t expiry_usec(const struct aws_credentials *c)
{
    return c->expiration <= 0 ? UINT64_MAX : (uint64_t)c->expiration * USEC_PER_SEC;
}

static bool usable(const struct aws_creds_provider *p, uint64_t now)
{
    return p->cur && !p->invalidated && now < expiry_usec(p->cur);
}

static bool fresh(const struct aws_creds_provider *p, uint64_t now)
{
    if (!usable(p, now))
        return false;
    uint64_t exp = expiry_usec(p->cur);
    return exp == UINT64_MAX || now + p->refresh_ahead_usec < exp;
}

static void fail_from_last(const struct aws_creds_provider *p, struct aws_error *err)
{
    if (err) {
        *err = p->last_err;
        if (err->kind == AWS_ERR_NONE)
            aws_error_set(err, AWS_ERR_CREDENTIALS, "NoCredentials", "no AWS credentials");
    }
}

/* Called and returns with p->lock held; drops it around the fetch. */
static int refresh_locked(struct aws_creds_provider *p, struct aws_error *err)
{
    struct aws_credentials *n = NULL, *old = NULL;
    struct aws_error e = { 0 };

    p->refreshing = true;
    pthread_mutex_unlock(&p->lock);
    int r = p->fetch(p->userdata, &n, &e);
    if (r >= 0 && !n)
        r = -EIO;
    if (r < 0 && e.kind == AWS_ERR_NONE)
        aws_error_set(&e, AWS_ERR_CREDENTIALS, "CredentialsError",
                      "fetching AWS credentials failed: %s", strerror(-r));
    pthread_mutex_lock(&p->lock);

    uint64_t now = now_realtime_usec();
    if (r >= 0) {
        const char *src = intern_source(p, n->provider);
        if (src != p->source)
            log_info("Using AWS credentials from %s", src);
        old = p->cur;
        p->cur = n;
        p->source = src;
        p->invalidated = false;
        p->warned = false;
        p->last_r = 0;
        aws_error_clear(&p->last_err);
    } else {
        if (e.kind != AWS_ERR_CREDENTIALS)
            e.kind = AWS_ERR_CREDENTIALS;
        p->last_r = r;
        p->last_err = e;
        if (usable(p, now)) {
            p->retry_after = now + p->refresh_retry_usec;
            if (!p->warned) {
                char when[32];
                log_warning("Refreshing AWS credentials failed; using the current ones from %s "
                            "until they expire at %s: %s",
                            p->source, format_iso8601_ms(when, sizeof(when), expiry_usec(p->cur)),
                            e.message);
                p->warned = true;
            }
        } else if (err) {
            *err = e;
        }
    }
    p->refreshing = false;
    p->generation++;
    pthread_cond_broadcast(&p->cond);
    if (old) {
        /* Signers holding a reference keep theirs alive; this only drops ours. */
        pthread_mutex_unlock(&p->lock);
        aws_credentials_unref(old);
        pthread_mutex_lock(&p->lock);
    }
    return r;
}

int aws_creds_get(struct aws_creds_provider *p, struct aws_credentials **out,
                  struct aws_error *err)
{
    if (!p || !out)
        return -EINVAL;
    *out = NULL;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        uint64_t now = now_realtime_usec();
        if (fresh(p, now) ||
            (usable(p, now) && (p->refreshing || now < p->retry_after))) {
            *out = aws_credentials_ref(p->cur);
            pthread_mutex_unlock(&p->lock);
            return 0;
        }
        if (!p->refreshing) {
            int r = refresh_locked(p, err);
            now = now_realtime_usec();
            /* After a successful fetch, an invalidation that raced in
             * concerns older credentials than these: expiry alone decides. */
            if (usable(p, now) || (r >= 0 && p->cur && now < expiry_usec(p->cur))) {
                /* Fresh, or the old ones after a failure: either is what
                 * this caller gets; looping would refresh again. */
                *out = aws_credentials_ref(p->cur);
                pthread_mutex_unlock(&p->lock);
                return 0;
            }
            if (r >= 0) {
                /* The source handed out credentials that are already past
                 * their expiry (a skewed clock, a stale cache). */
                r = -EKEYEXPIRED;
                aws_error_set(&p->last_err, AWS_ERR_CREDENTIALS, "ExpiredCredentials",
                              "%s: the credentials it returned expired already", p->source);
                p->last_r = r;
            }
            /* From p->last_err, not from what refresh_locked() filled: the
             * old credentials may have expired since it looked. */
            fail_from_last(p, err);
            pthread_mutex_unlock(&p->lock);
            return r;
        }
        /* Nothing valid to hand out: wait for the refresher, and share its
         * outcome rather than starting another refresh at once. */
        uint64_t gen = p->generation;
        while (p->refreshing && p->generation == gen)
            pthread_cond_wait(&p->cond, &p->lock);
        if (p->last_r < 0 && !usable(p, now_realtime_usec())) {
            int r = p->last_r;
            fail_from_last(p, err);
            pthread_mutex_unlock(&p->lock);
            return r;
        }
    }
}

void aws_creds_invalidate(struct aws_creds_provider *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->invalidated = true;
    p->retry_after = 0;
    pthread_mutex_unlock(&p->lock);
}

const char *aws_creds_source(struct aws_creds_provider *p)
{
    if (!p)
        return "none";
    pthread_mutex_lock(&p->lock);
    const char *s = p->source;
    pthread_mutex_unlock(&p->lock);
    return s;
}

/* ------------------------------------------------------------------ chain helpers */

void creds_note_none(struct creds_chain *ch, const char *fmt, ...)
{
    size_t len = strlen(ch->why_none);
    if (len + 3 >= sizeof(ch->why_none))
        return;
    if (len)
        len += (size_t)snprintf(ch->why_none + len, sizeof(ch->why_none) - len, "; ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ch->why_none + len, sizeof(ch->why_none) - len, fmt, ap);
    va_end(ap);
}

void creds_wrap_error(struct aws_error *err, const char *fmt, ...)
{
    char prefix[256], orig[sizeof(err->message)];
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    /* The code, status and request id stay in their fields, where
     * aws_error_str() shows them; only the message gets the context. */
    memcpy(orig, err->message, sizeof(orig));
    err->kind = AWS_ERR_CREDENTIALS;
    /* Truncation is fine here; assembled by hand because the compiler cannot
     * prove two bounded strings fit. */
    struct buf b = BUF_INIT;
    if (buf_printf(&b, "%s: %s", prefix, orig) >= 0) {
        size_t n = MIN(b.len, sizeof(err->message) - 1);
        memcpy(err->message, b.data, n);
        err->message[n] = 0;
    }
    buf_free(&b);
}

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

const char *creds_sts_region(const struct creds_chain *ch, const char *profile_region)
{
    if (ch->region)
        return ch->region;
    if (profile_region && *profile_region)
        return profile_region;
    const char *r = env_nonempty("AWS_REGION");
    if (!r)
        r = env_nonempty("AWS_DEFAULT_REGION");
    return r ? r : "us-east-1";
}

/* ------------------------------------------------------------------ providers */

static int from_env(struct creds_chain *ch, struct aws_credentials **out, struct aws_error *err)
{
    const char *id = env_nonempty("AWS_ACCESS_KEY_ID");
    const char *secret = env_nonempty("AWS_SECRET_ACCESS_KEY");
    const char *token = env_nonempty("AWS_SESSION_TOKEN");
    const char *exp = env_nonempty("AWS_CREDENTIAL_EXPIRATION");

    if (!token)
        token = env_nonempty("AWS_SECURITY_TOKEN"); /* the older name, still honoured by the SDKs */
    if (!id && !secret) {
        creds_note_none(ch, "environment: AWS_ACCESS_KEY_ID not set");
        return CREDS_NONE;
    }
    if (!id || !secret) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "PartialCredentials",
                      "environment: %s is set but %s is not",
                      id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                      id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
        return -EINVAL;
    }
    return make_credentials("environment", id, secret, token, exp, out, err);
}

static int from_web_identity_env(struct creds_chain *ch, struct aws_credentials **out,
                                 struct aws_error *err)
{
    const char *file = env_nonempty("AWS_WEB_IDENTITY_TOKEN_FILE");
    const char *arn = env_nonempty("AWS_ROLE_ARN");
    if (!file || !arn) {
        creds_note_none(ch, "web identity: AWS_WEB_IDENTITY_TOKEN_FILE/AWS_ROLE_ARN not set");
        return CREDS_NONE;
    }
    struct sts_role role = {
        .role_arn = arn,
        .session_name = env_nonempty("AWS_ROLE_SESSION_NAME"),
        .region = creds_sts_region(ch, NULL),
    };
    return creds_assume_role_web_identity(ch, &role, file, out, err);
}

static int profile_static(const struct aws_shared_config *cfg, const char *name,
                          struct aws_credentials **out, struct aws_error *err)
{
    const char *id = aws_shared_config_get(cfg, name, "aws_access_key_id");
    const char *secret = aws_shared_config_get(cfg, name, "aws_secret_access_key");
    const char *token = aws_shared_config_get(cfg, name, "aws_session_token");
    char label[160];

    snprintf(label, sizeof(label), "profile:%s", name);
    if (!id || !*id || !secret || !*secret) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "PartialCredentials",
                      "profile '%s': aws_access_key_id and aws_secret_access_key must both be set",
                      name);
        return -EINVAL;
    }
    return make_credentials(label, id, secret, token,
                            aws_shared_config_get(cfg, name, "aws_credential_expiration"), out, err);
}

static bool has_static_keys(const struct aws_shared_config *cfg, const char *name)
{
    return aws_shared_config_get(cfg, name, "aws_access_key_id") ||
           aws_shared_config_get(cfg, name, "aws_secret_access_key");
}

static int profile_resolve(struct creds_chain *ch, const struct aws_shared_config *cfg,
                           const char *name, const char **visited, size_t depth,
                           struct aws_credentials **out, struct aws_error *err);

static int credential_source(struct creds_chain *ch, const char *profile, const char *src,
                             struct aws_credentials **out, struct aws_error *err)
{
    int r;
    if (streq(src, "Environment"))
        r = from_env(ch, out, err);
    else if (streq(src, "Ec2InstanceMetadata"))
        r = creds_from_imds(ch, out, err);
    else if (streq(src, "EcsContainer"))
        r = creds_from_container(ch, out, err);
    else {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidProfile",
                      "profile '%s': credential_source must be Environment, Ec2InstanceMetadata "
                      "or EcsContainer",
                      profile);
        return -EINVAL;
    }
    if (r == CREDS_NONE) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "NoCredentials",
                      "profile '%s': credential_source %s provided no credentials", profile, src);
        return -ENOKEY;
    }
    return r;
}

static int profile_assume_role(struct creds_chain *ch, const struct aws_shared_config *cfg,
                               const char *name, const char **visited, size_t depth,
                               struct aws_credentials **out, struct aws_error *err)
{
    const char *src_profile = aws_shared_config_get(cfg, name, "source_profile");
    const char *cred_src = aws_shared_config_get(cfg, name, "credential_source");
    const char *token_file = aws_shared_config_get(cfg, name, "web_identity_token_file");
    struct sts_role role = {
        .role_arn = aws_shared_config_get(cfg, name, "role_arn"),
        .session_name = aws_shared_config_get(cfg, name, "role_session_name"),
        .external_id = aws_shared_config_get(cfg, name, "external_id"),
        .duration = aws_shared_config_get(cfg, name, "duration_seconds"),
        .region = creds_sts_region(ch, aws_shared_config_get(cfg, name, "region")),
    };
    _cleanup_(aws_credentials_unrefp) struct aws_credentials *base = NULL;
    int r;

    if (aws_shared_config_get(cfg, name, "mfa_serial")) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "UnsupportedProfile",
                      "profile '%s': mfa_serial needs an interactive code; a daemon cannot "
                      "answer it", name);
        return -EOPNOTSUPP;
    }
    if (src_profile && cred_src) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidProfile",
                      "profile '%s': source_profile and credential_source are exclusive", name);
        return -EINVAL;
    }
    if (src_profile) {
        if (streq(src_profile, name)) {
            /* A role profile that is its own source uses its own keys. */
            if ((r = profile_static(cfg, name, &base, err)) < 0)
                return r;
        } else if ((r = profile_resolve(ch, cfg, src_profile, visited, depth + 1, &base, err)) < 0)
            return r;
    } else if (cred_src) {
        if ((r = credential_source(ch, name, cred_src, &base, err)) < 0)
            return r;
    } else if (token_file) {
        return creds_assume_role_web_identity(ch, &role, token_file, out, err);
    } else {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidProfile",
                      "profile '%s': role_arn needs source_profile, credential_source or "
                      "web_identity_token_file", name);
        return -EINVAL;
    }
    return creds_assume_role(ch, &role, base, out, err);
}

static int profile_resolve(struct creds_chain *ch, const struct aws_shared_config *cfg,
                           const char *name, const char **visited, size_t depth,
                           struct aws_credentials **out, struct aws_error *err)
{
    for (size_t i = 0; i < depth; i++)
        if (streq(visited[i], name)) {
            aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidProfile",
                          "profile '%s': source_profile chain loops back to '%s'", visited[0],
                          name);
            return -ELOOP;
        }
    if (depth >= AWS_CREDS_MAX_SOURCE_DEPTH) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidProfile",
                      "profile '%s': source_profile chain longer than %d", visited[0],
                      AWS_CREDS_MAX_SOURCE_DEPTH);
        return -ELOOP;
    }
    visited[depth] = name;
    if (depth > 0 && !aws_shared_config_has_profile(cfg, name)) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "ProfileNotFound",
                      "profile '%s': source_profile '%s' does not exist", visited[0], name);
        return -ENOENT;
    }
    /* A source profile with its own keys is a leaf even when it also names
     * a role: that is how the SDKs end a chain. */
    if (depth > 0 && has_static_keys(cfg, name))
        return profile_static(cfg, name, out, err);
    if (aws_shared_config_get(cfg, name, "role_arn"))
        return profile_assume_role(ch, cfg, name, visited, depth, out, err);
    if (depth == 0 && aws_shared_config_get(cfg, name, "web_identity_token_file")) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "InvalidProfile",
                      "profile '%s': web_identity_token_file needs role_arn", name);
        return -EINVAL;
    }
    /* Static keys before credential_process, as botocore (the CLI) orders
     * its shared-credentials and process providers. */
    if (has_static_keys(cfg, name))
        return profile_static(cfg, name, out, err);
    const char *process = aws_shared_config_get(cfg, name, "credential_process");
    if (process && *process)
        return creds_from_process(ch, name, process, out, err);
    if (depth > 0) {
        aws_error_set(err, AWS_ERR_CREDENTIALS, "NoCredentials",
                      "profile '%s': source_profile '%s' has no credentials", visited[0], name);
        return -ENOKEY;
    }
    return CREDS_NONE;
}

static int from_profile(struct creds_chain *ch, struct aws_credentials **out,
                        struct aws_error *err)
{
    _cleanup_(aws_shared_config_freep) struct aws_shared_config *cfg = NULL;
    const char *visited[AWS_CREDS_MAX_SOURCE_DEPTH];
    bool explicit_profile = ch->profile || env_nonempty("AWS_PROFILE");
    const char *name = aws_profile_name(ch->profile);
    int r;

    if ((r = aws_shared_config_load(NULL, NULL, &cfg, err)) < 0) {
        if (err)
            err->kind = AWS_ERR_CREDENTIALS;
        return r == CREDS_NONE ? -EIO : r;
    }
    if (!aws_shared_config_has_profile(cfg, name)) {
        if (explicit_profile) {
            aws_error_set(err, AWS_ERR_CREDENTIALS, "ProfileNotFound",
                          "profile '%s' is not in the shared config or credentials file", name);
            return -ENOENT;
        }
        creds_note_none(ch, "profile '%s': not in the shared files", name);
        return CREDS_NONE;
    }
    r = profile_resolve(ch, cfg, name, visited, 0, out, err);
    if (r == CREDS_NONE)
        creds_note_none(ch, "profile '%s': no credentials in it", name);
    return r;
}

static int chain_fetch(void *userdata, struct aws_credentials **out, struct aws_error *err)
{
    static int (*const providers[])(struct creds_chain *, struct aws_credentials **,
                                    struct aws_error *) = {
        from_env, from_web_identity_env, from_profile, creds_from_container, creds_from_imds,
    };
    struct creds_chain *ch = userdata;

    ch->why_none[0] = 0;
    for (size_t i = 0; i < ELEMENTSOF(providers); i++) {
        int r = providers[i](ch, out, err);
        if (r == CREDS_NONE)
            continue;
        if (r < 0 && err)
            err->kind = AWS_ERR_CREDENTIALS;
        /* A provider that is configured but fails ends the search, as in
         * the SDKs: falling through to IMDS would silently change identity. */
        return r;
    }
    aws_error_set(err, AWS_ERR_CREDENTIALS, "NoCredentials", "no AWS credentials found (%s)",
                  ch->why_none);
    return -ENOKEY;
}

static struct creds_chain *creds_chain_free(struct creds_chain *ch)
{
    if (!ch)
        return NULL;
    free(ch->profile);
    free(ch->region);
    free(ch->service_url_sts);
    free(ch->url);
    free(ch->profile_url);
    free(ch->ca_file);
    free(ch->user_agent);
    free_secret(ch->imds_token);
    free(ch);
    return NULL;
}

static bool dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    return !src || (*dst = strdup(src));
}

struct aws_creds_provider *aws_creds_chain_new(const struct aws_creds_options *o)
{
    static const struct aws_creds_options none = { 0 };
    struct creds_chain *ch = calloc(1, sizeof(*ch));
    if (!o)
        o = &none;
    if (!ch)
        return NULL;
    const struct aws_endpoint_config *ep = o->endpoints;
    /* Copies: the caller's options may live on its stack. */
    if (!dup_opt(&ch->profile, o->profile && *o->profile ? o->profile : NULL) ||
        !dup_opt(&ch->region, o->region && *o->region ? o->region : NULL) ||
        !dup_opt(&ch->service_url_sts, ep ? ep->service_url[AWS_SVC_STS] : NULL) ||
        !dup_opt(&ch->url, ep ? ep->url : NULL) ||
        !dup_opt(&ch->profile_url, ep ? ep->profile_url : NULL))
        return creds_chain_free(ch), NULL;
    ch->ep.service_url[AWS_SVC_STS] = ch->service_url_sts;
    ch->ep.url = ch->url;
    ch->ep.profile_url = ch->profile_url;
    if (o->http)
        ch->http = *o->http;
    else
        http_options_init(&ch->http);
    if (!dup_opt(&ch->ca_file, ch->http.ca_file) || !dup_opt(&ch->user_agent, ch->http.user_agent))
        return creds_chain_free(ch), NULL;
    ch->http.ca_file = ch->ca_file;
    ch->http.user_agent = ch->user_agent;
    ch->process_timeout_usec = o->process_timeout_usec ? o->process_timeout_usec
                                                       : AWS_CREDS_DEFAULT_PROCESS_TIMEOUT_USEC;

    struct aws_creds_provider *p = aws_creds_provider_new(o, chain_fetch, ch);
    if (!p)
        return creds_chain_free(ch), NULL;
    p->chain = ch;
    return p;
}
