/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/aws_profile.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "rarewatch/buf.h"
#include "rarewatch/log.h"

struct entry {
    enum aws_profile_file file;
    enum aws_profile_section kind;
    const char *section; /* arena */
    const char *key;     /* arena; "parent.sub" for sub-properties */
    struct buf value;    /* a buf because continuation lines append to it */
};

struct aws_shared_config {
    struct entry *entries;
    size_t n, cap;
    struct arena arena;
};

struct aws_shared_config *aws_shared_config_new(void)
{
    return calloc(1, sizeof(struct aws_shared_config));
}

struct aws_shared_config *aws_shared_config_free(struct aws_shared_config *c)
{
    if (!c)
        return NULL;
    for (size_t i = 0; i < c->n; i++) {
        /* Values include secret keys: do not leave them in freed memory. */
        if (c->entries[i].value.data)
            explicit_bzero(c->entries[i].value.data, c->entries[i].value.cap);
        buf_free(&c->entries[i].value);
    }
    free(c->entries);
    arena_free(&c->arena);
    free(c);
    return NULL;
}

static bool is_blank(char ch) { return ch == ' ' || ch == '\t'; }

static void trim(const char **s, const char **e)
{
    while (*s < *e && is_blank(**s))
        (*s)++;
    while (*e > *s && (is_blank((*e)[-1]) || (*e)[-1] == '\r'))
        (*e)--;
}

/* A '#' or ';' preceded by whitespace starts a comment inside a value. */
static const char *strip_inline_comment(const char *s, const char *e)
{
    for (const char *p = s; p < e; p++)
        if ((*p == '#' || *p == ';') && p > s && is_blank(p[-1]))
            return p;
    return e;
}

static bool has_blank(const char *s, const char *e)
{
    for (; s < e; s++)
        if (is_blank(*s))
            return true;
    return false;
}

static struct entry *add_entry(struct aws_shared_config *c)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 32;
        struct entry *n = reallocarray(c->entries, cap, sizeof(*n));
        if (!n)
            return NULL;
        c->entries = n;
        c->cap = cap;
    }
    struct entry *en = &c->entries[c->n++];
    *en = (struct entry){ .value = BUF_INIT };
    return en;
}

struct parse_state {
    bool in_section;  /* inside a section we keep */
    bool skipping;    /* inside a section we ignore */
    enum aws_profile_section kind;
    const char *section;
    struct entry *last;  /* the property continuation lines extend */
    const char *parent;  /* the key sub-properties nest under, or NULL */
};

static int parse_section(struct aws_shared_config *c, enum aws_profile_file file,
                         struct parse_state *st, const char *s, const char *e)
{
    /* s points at '['. */
    const char *close = memchr(s, ']', (size_t)(e - s));
    if (!close)
        return -EINVAL;
    const char *rest = close + 1;
    while (rest < e && is_blank(*rest))
        rest++;
    if (rest < e && *rest != '#' && *rest != ';')
        return -EINVAL;

    const char *ns = s + 1, *ne = close;
    trim(&ns, &ne);
    st->last = NULL;
    st->parent = NULL;
    st->in_section = false;
    st->skipping = true;

    enum aws_profile_section kind = AWS_SECTION_PROFILE;
    if (file == AWS_PROFILE_FILE_CONFIG) {
        static const struct {
            const char *prefix;
            enum aws_profile_section kind;
        } prefixes[] = {
            { "profile", AWS_SECTION_PROFILE },
            { "sso-session", AWS_SECTION_SSO_SESSION },
            { "services", AWS_SECTION_SERVICES },
        };
        size_t len = (size_t)(ne - ns);
        if (len == 7 && memcmp(ns, "default", 7) == 0) {
            /* [default] */
        } else {
            size_t i;
            for (i = 0; i < ELEMENTSOF(prefixes); i++) {
                size_t pl = strlen(prefixes[i].prefix);
                if (len > pl && memcmp(ns, prefixes[i].prefix, pl) == 0 && is_blank(ns[pl]))
                    break;
            }
            if (i == ELEMENTSOF(prefixes))
                return 0; /* not ours: the SDKs ignore it too */
            kind = prefixes[i].kind;
            ns += strlen(prefixes[i].prefix);
            while (ns < ne && is_blank(*ns))
                ns++;
        }
    }
    /* The SDKs ignore sections whose names are empty or hold blanks. */
    if (ns == ne || has_blank(ns, ne))
        return 0;
    st->section = arena_strndup(&c->arena, ns, (size_t)(ne - ns));
    if (!st->section)
        return -ENOMEM;
    st->kind = kind;
    st->in_section = true;
    st->skipping = false;
    /* A keyless marker, so that a section with nothing under it still
     * exists for aws_shared_config_has_profile(). */
    struct entry *en = add_entry(c);
    if (!en)
        return -ENOMEM;
    en->file = file;
    en->kind = kind;
    en->section = st->section;
    en->key = "";
    return 0;
}

static int add_property(struct aws_shared_config *c, enum aws_profile_file file,
                        struct parse_state *st, const char *s, const char *e, bool sub)
{
    const char *eq = memchr(s, '=', (size_t)(e - s));
    if (!eq)
        return -EINVAL;
    const char *ks = s, *ke = eq, *vs = eq + 1, *ve = e;
    trim(&ks, &ke);
    if (ks == ke)
        return -EINVAL;
    trim(&vs, &ve);
    ve = strip_inline_comment(vs, ve);
    trim(&vs, &ve);

    struct entry *en = add_entry(c);
    if (!en)
        return -ENOMEM;
    en->file = file;
    en->kind = st->kind;
    en->section = st->section;
    if (sub) {
        size_t pl = strlen(st->parent), kl = (size_t)(ke - ks);
        char *k = arena_alloc(&c->arena, pl + 1 + kl + 1);
        if (!k)
            return -ENOMEM;
        memcpy(k, st->parent, pl);
        k[pl] = '.';
        memcpy(k + pl + 1, ks, kl);
        k[pl + 1 + kl] = 0;
        en->key = k;
    } else {
        en->key = arena_strndup(&c->arena, ks, (size_t)(ke - ks));
        if (!en->key)
            return -ENOMEM;
    }
    if (buf_append(&en->value, vs, (size_t)(ve - vs)) < 0)
        return -ENOMEM;
    if (!sub) {
        st->last = en;
        /* An empty value opens a block of sub-properties (e.g. under [services]). */
        st->parent = vs == ve ? en->key : NULL;
    }
    return 0;
}

static const char *file_label(enum aws_profile_file kind)
{
    return kind == AWS_PROFILE_FILE_CONFIG ? "shared config file" : "shared credentials file";
}

int aws_shared_config_parse(struct aws_shared_config *c, enum aws_profile_file kind,
                            const char *text, size_t len, const char *name,
                            struct aws_error *err)
{
    struct parse_state st = { .kind = AWS_SECTION_PROFILE };
    const char *p = text, *end = text + len;
    unsigned line = 0;
    int r;

    if (!c || (!text && len))
        return -EINVAL;
    if (len == 0)
        return 0;
    if (memchr(text, 0, len)) {
        aws_error_set(err, AWS_ERR_CONFIG, "SharedConfigInvalid", "%s %s: contains a NUL byte",
                      file_label(kind), name ? name : "");
        return -EINVAL;
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *s = p, *e = le;
        bool indented = s < e && is_blank(*s);
        line++;
        p = nl ? nl + 1 : end;

        trim(&s, &e);
        if (s == e || *s == '#' || *s == ';')
            continue;
        if (*s == '[' && !indented) {
            r = parse_section(c, kind, &st, s, e);
        } else if (st.skipping || !st.in_section) {
            /* Lines of ignored sections, or before the first section, are
             * ignored as the SDKs do. */
            continue;
        } else if (indented && st.last) {
            if (st.parent)
                r = add_property(c, kind, &st, s, e, true);
            else if (buf_putc(&st.last->value, '\n') < 0 ||
                     buf_append(&st.last->value, s, (size_t)(e - s)) < 0)
                r = -ENOMEM;
            else
                r = 0;
        } else if (indented) {
            r = -EINVAL; /* a continuation with nothing to continue */
        } else {
            r = add_property(c, kind, &st, s, e, false);
        }
        if (r == -ENOMEM)
            return r;
        if (r < 0) {
            /* Name the line, never show it: it may hold a secret key. */
            aws_error_set(err, AWS_ERR_CONFIG, "SharedConfigInvalid",
                          "%s %s, line %u: expected '[section]' or 'key = value'",
                          file_label(kind), name ? name : "", line);
            return r;
        }
    }
    return 0;
}

static const struct entry *find(const struct aws_shared_config *c, int file,
                                enum aws_profile_section kind, const char *section,
                                const char *key)
{
    /* Later lines override earlier ones: search from the end. */
    for (size_t i = c->n; i-- > 0;) {
        const struct entry *en = &c->entries[i];
        if ((file < 0 || (int)en->file == file) && en->kind == kind &&
            streq(en->section, section) && strcasecmp(en->key, key) == 0)
            return en;
    }
    return NULL;
}

const char *aws_shared_config_get(const struct aws_shared_config *c, const char *profile,
                                  const char *key)
{
    if (!c || !profile || !key || !*key)
        return NULL;
    const struct entry *en = find(c, AWS_PROFILE_FILE_CREDENTIALS, AWS_SECTION_PROFILE, profile, key);
    if (!en)
        en = find(c, AWS_PROFILE_FILE_CONFIG, AWS_SECTION_PROFILE, profile, key);
    return en ? (en->value.data ? en->value.data : "") : NULL;
}

const char *aws_shared_config_get_section(const struct aws_shared_config *c,
                                          enum aws_profile_section kind, const char *name,
                                          const char *key)
{
    if (!c || !name || !key || !*key)
        return NULL;
    if (kind == AWS_SECTION_PROFILE)
        return aws_shared_config_get(c, name, key);
    const struct entry *en = find(c, AWS_PROFILE_FILE_CONFIG, kind, name, key);
    return en ? (en->value.data ? en->value.data : "") : NULL;
}

bool aws_shared_config_has_profile(const struct aws_shared_config *c, const char *profile)
{
    if (!c || !profile)
        return false;
    for (size_t i = 0; i < c->n; i++)
        if (c->entries[i].kind == AWS_SECTION_PROFILE && streq(c->entries[i].section, profile))
            return true;
    return false;
}

static char *expand_path(const char *env, const char *def)
{
    const char *v = getenv(env);
    const char *path = v && *v ? v : def;
    if (path[0] == '~' && path[1] == '/') {
        const char *home = getenv("HOME");
        char *out;
        if (!home || !*home)
            return strdup(path);
        return asprintf(&out, "%s%s", home, path + 1) < 0 ? NULL : out;
    }
    return strdup(path);
}

static int read_file(const char *path, enum aws_profile_file kind, struct buf *out,
                     struct aws_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    struct stat st;

    if (fd < 0) {
        int r = negative_errno();
        if (r == -ENOENT || r == -ENOTDIR)
            return -ENOENT;
        aws_error_set(err, AWS_ERR_CONFIG, "SharedConfigUnreadable", "%s %s: cannot open: %s",
                      file_label(kind), path, strerror(-r));
        return r;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        aws_error_set(err, AWS_ERR_CONFIG, "SharedConfigUnreadable", "%s %s: not a regular file",
                      file_label(kind), path);
        return -EINVAL;
    }
    for (;;) {
        if (out->len > AWS_PROFILE_MAX_FILE_SIZE) {
            aws_error_set(err, AWS_ERR_CONFIG, "SharedConfigUnreadable",
                          "%s %s: larger than %u bytes", file_label(kind), path,
                          AWS_PROFILE_MAX_FILE_SIZE);
            return -EFBIG;
        }
        if (buf_reserve(out, 65536) < 0)
            return -ENOMEM;
        ssize_t n = read(fd, out->data + out->len, 65536);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int r = negative_errno();
            aws_error_set(err, AWS_ERR_CONFIG, "SharedConfigUnreadable", "%s %s: cannot read: %s",
                          file_label(kind), path, strerror(-r));
            return r;
        }
        if (n == 0)
            break;
        out->len += (size_t)n;
        out->data[out->len] = 0;
    }
    return 0;
}

static void wipe_buf(struct buf *b)
{
    if (b->data)
        explicit_bzero(b->data, b->cap);
    buf_free(b);
}

static int load_one(struct aws_shared_config *c, enum aws_profile_file kind, const char *path,
                    struct aws_error *err)
{
    _cleanup_(wipe_buf) struct buf text = BUF_INIT;
    int r = read_file(path, kind, &text, err);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    return aws_shared_config_parse(c, kind, text.data, text.len, path, err);
}

int aws_shared_config_load(const char *config_path, const char *credentials_path,
                           struct aws_shared_config **out, struct aws_error *err)
{
    _cleanup_(aws_shared_config_freep) struct aws_shared_config *c = aws_shared_config_new();
    _cleanup_free_ char *cfg = config_path ? strdup(config_path)
                                           : expand_path("AWS_CONFIG_FILE", "~/.aws/config");
    _cleanup_free_ char *cred = credentials_path
                                    ? strdup(credentials_path)
                                    : expand_path("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials");
    int r;

    if (!c || !cfg || !cred)
        return -ENOMEM;
    if ((r = load_one(c, AWS_PROFILE_FILE_CONFIG, cfg, err)) < 0 ||
        (r = load_one(c, AWS_PROFILE_FILE_CREDENTIALS, cred, err)) < 0)
        return r;
    *out = TAKE_PTR(c);
    return 0;
}

const char *aws_profile_name(const char *name)
{
    if (name && *name)
        return name;
    const char *env = getenv("AWS_PROFILE");
    return env && *env ? env : "default";
}

int aws_profile_get_value(const char *profile_name, const char *key, char **out,
                          struct aws_error *err)
{
    _cleanup_(aws_shared_config_freep) struct aws_shared_config *c = NULL;
    int r = aws_shared_config_load(NULL, NULL, &c, err);
    if (r < 0)
        return r;
    const char *v = aws_shared_config_get(c, aws_profile_name(profile_name), key);
    *out = NULL;
    if (v && !(*out = strdup(v)))
        return -ENOMEM;
    return 0;
}

static char *get_or_warn(const char *profile_name, const char *key)
{
    struct aws_error err = { 0 };
    char *v = NULL;
    int r = aws_profile_get_value(profile_name, key, &v, &err);
    if (r < 0) {
        if (r == -ENOMEM)
            log_error("Out of memory reading the AWS shared config");
        else
            log_warning("Ignoring the AWS shared config for %s: %s", key, err.message);
        return NULL;
    }
    return v;
}

char *aws_profile_region(const char *profile_name) { return get_or_warn(profile_name, "region"); }

char *aws_profile_endpoint_url(const char *profile_name)
{
    return get_or_warn(profile_name, "endpoint_url");
}
