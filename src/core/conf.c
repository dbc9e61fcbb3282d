/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/conf.h"
#include "rarewatch/fsutil.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <ini.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/buf.h"
#include "rarewatch/strutil.h"
#include "rw-build-config.h"

/* ---- diagnostics ---- */

void conf_diag_add(struct conf_diag *d, const char *file, unsigned line, const char *fmt, ...)
{
    _cleanup_buf_ struct buf b = BUF_INIT;
    if (file && line)
        buf_printf(&b, "%s:%u: ", file, line);
    else if (file)
        buf_printf(&b, "%s: ", file);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (!b.data)
        return;
    if (d->echo)
        fprintf(d->echo, "%s\n", b.data);
    char **nm = realloc(d->msgs, (d->n + 1) * sizeof(char *));
    if (!nm)
        return;
    d->msgs = nm;
    d->msgs[d->n++] = buf_steal(&b);
}

void conf_diag_clear(struct conf_diag *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->msgs[i]);
    free(d->msgs);
    d->msgs = NULL;
    d->n = 0;
}

/* ---- schema lookups ---- */

static bool key_matches(const struct conf_key *k, const char *name)
{
    if (k->flags & CF_PREFIX)
        return startswith(name, k->name) && strlen(name) > strlen(k->name);
    return streq(k->name, name);
}

ssize_t conf_find_key(const struct conf_schema *s, const char *section, const char *name)
{
    for (size_t i = 0; i < s->n_keys; i++)
        if (streq(s->keys[i].section, section) && key_matches(&s->keys[i], name))
            return (ssize_t)i;
    return -ENOENT;
}

ssize_t conf_find_section(const struct conf_schema *s, const char *name)
{
    for (size_t i = 0; i < s->n_sections; i++)
        if (streq(s->sections[i].name, name))
            return (ssize_t)i;
    return -ENOENT;
}

const char *conf_type_name(enum conf_type t)
{
    switch (t) {
    case CT_BOOL: return "boolean";
    case CT_INT: return "integer";
    case CT_DOUBLE: return "number";
    case CT_DURATION: return "duration";
    case CT_SIZE: return "size";
    case CT_ENUM: return "enum";
    case CT_STRING: return "string";
    case CT_LIST: return "list";
    case CT_EXPR: return "expression";
    }
    return "?";
}

static bool enum_lookup(const char *values, const char *s, int *idx)
{
    int i = 0;
    const char *p = values;
    size_t l = strlen(s);
    while (*p) {
        const char *e = strchr(p, '|');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == l && strneq(p, s, n)) {
            *idx = i;
            return true;
        }
        i++;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

static void value_clear(const struct conf_key *k, struct conf_value *v)
{
    if (k->type == CT_LIST)
        strv_free(v->list);
    free(v->raw);
    memset(v, 0, sizeof(*v));
}

static void describe_range(const struct conf_key *k, char *buf, size_t n)
{
    char a[32], b[32];
    buf[0] = 0;
    if (k->min == 0 && k->max == 0)
        return;
    switch (k->type) {
    case CT_DURATION:
        snprintf(buf, n, " between %s and %s", format_duration(a, sizeof(a), (uint64_t)k->min),
                 format_duration(b, sizeof(b), (uint64_t)k->max));
        break;
    case CT_SIZE:
        snprintf(buf, n, " between %s and %s", format_size(a, sizeof(a), (uint64_t)k->min),
                 format_size(b, sizeof(b), (uint64_t)k->max));
        break;
    default: snprintf(buf, n, " between %.15g and %.15g", k->min, k->max);
    }
}

static bool in_range(const struct conf_key *k, double v)
{
    return (k->min == 0 && k->max == 0) || (v >= k->min && v <= k->max);
}

/* Parse raw into v according to k; on failure writes what was expected to
 * err and returns -EINVAL/-ERANGE. */
static int parse_value(const struct conf_key *k, const char *raw, struct conf_value *v, char *err,
                       size_t errlen)
{
    char range[160];
    describe_range(k, range, sizeof(range));
    int r = 0;
    v->has_value = true;
    switch (k->type) {
    case CT_BOOL:
        r = parse_bool(raw, &v->b);
        if (r < 0)
            snprintf(err, errlen, "expected a boolean (true/false, yes/no, on/off, 1/0)");
        break;
    case CT_INT: {
        int64_t x;
        r = parse_int64(raw, INT64_MIN, INT64_MAX, &x);
        if (r == 0 && !in_range(k, (double)x))
            r = -ERANGE;
        if (r < 0)
            snprintf(err, errlen, "expected an integer%s", range);
        else
            v->i = x;
        break;
    }
    case CT_DOUBLE:
        r = parse_double(raw, &v->d);
        if (r == 0 && !in_range(k, v->d))
            r = -ERANGE;
        if (r < 0)
            snprintf(err, errlen, "expected a number%s", range);
        break;
    case CT_DURATION:
        r = parse_duration_usec(raw, &v->u);
        if (r == 0 && !in_range(k, (double)v->u))
            r = -ERANGE;
        if (r < 0)
            snprintf(err, errlen, "expected a duration such as 200ms, 5s, 1m, 1h%s", range);
        break;
    case CT_SIZE:
        r = parse_size(raw, &v->u);
        if (r == 0 && !in_range(k, (double)v->u))
            r = -ERANGE;
        if (r < 0)
            snprintf(err, errlen, "expected a size such as 512KiB, 4MiB, 1GiB%s", range);
        break;
    case CT_ENUM:
        if (!enum_lookup(k->enum_values, raw, &v->e)) {
            r = -EINVAL;
            snprintf(err, errlen, "expected one of %s", k->enum_values);
        }
        break;
    case CT_STRING:
    case CT_EXPR:
        break;
    case CT_LIST:
        v->list = strv_split(raw);
        if (!v->list)
            r = -ENOMEM;
        break;
    }
    if (r < 0) {
        v->has_value = false;
        return r;
    }
    v->raw = strdup(raw);
    if (!v->raw) {
        if (k->type == CT_LIST)
            v->list = strv_free(v->list);
        return -ENOMEM;
    }
    if (k->type == CT_STRING || k->type == CT_EXPR)
        v->s = v->raw;
    return 0;
}

/* ---- loading ---- */

struct load_ctx {
    const struct conf_schema *schema;
    struct rw_config *cfg;
    struct conf_diag *diag;
    const char *file; /* owned by cfg->files */
    /* reader state */
    const char *text;
    size_t pos;
    unsigned lineno;
    char *raw_line;
    /* current section */
    ssize_t sec_def;          /* -1: none / unknown */
    struct conf_section *sec; /* named instance or NULL for global */
    bool sec_bad;
    unsigned errors;
};

static void diag(struct load_ctx *c, unsigned line, const char *fmt, ...) _printf_(3, 4);
static void diag(struct load_ctx *c, unsigned line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *m = NULL;
    if (vasprintf(&m, fmt, ap) < 0)
        m = NULL;
    va_end(ap);
    conf_diag_add(c->diag, c->file, line, "%s", m ? m : "out of memory");
    c->errors++;
}

static const char *suggest(const char *const *cands, size_t n, const char *word)
{
    const char *best = NULL;
    unsigned bestd = 3;
    for (size_t i = 0; i < n; i++) {
        unsigned d = levenshtein(word, cands[i]);
        if (d < bestd || (d == bestd && best == NULL && d <= strlen(word) / 3)) {
            if (d < bestd) {
                bestd = d;
                best = cands[i];
            }
        }
    }
    return best;
}

static void suggest_section(struct load_ctx *c, const char *name, char *hint, size_t n)
{
    const char *cands[64];
    size_t m = 0;
    for (size_t i = 0; i < c->schema->n_sections && m < ELEMENTSOF(cands); i++)
        cands[m++] = c->schema->sections[i].name;
    const char *best = suggest(cands, m, name);
    hint[0] = 0;
    if (best)
        snprintf(hint, n, "; did you mean [%s%s]?", best,
                 c->schema->sections[conf_find_section(c->schema, best)].named ? ".NAME" : "");
}

static struct conf_value *alloc_values(const struct conf_schema *s)
{
    return calloc(s->n_keys ? s->n_keys : 1, sizeof(struct conf_value));
}

static struct conf_section *find_or_add_named(struct load_ctx *c, size_t def, const char *name)
{
    struct rw_config *cfg = c->cfg;
    for (size_t i = 0; i < cfg->n_named; i++)
        if (cfg->named[i].def == def && streq(cfg->named[i].name, name))
            return &cfg->named[i];
    struct conf_section *n = realloc(cfg->named, (cfg->n_named + 1) * sizeof(*n));
    if (!n)
        return NULL;
    cfg->named = n;
    struct conf_section *s = &cfg->named[cfg->n_named];
    *s = (struct conf_section){ .def = def, .name = strdup(name), .file = strdup(c->file),
                                .line = c->lineno, .values = alloc_values(c->schema) };
    if (!s->name || !s->file || !s->values) {
        free(s->name);
        free(s->file);
        free(s->values);
        return NULL;
    }
    cfg->n_named++;
    return s;
}

static bool valid_instance_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return false;
    return true;
}

/* Called by the reader for each "[...]" line, before inih sees it. */
static void begin_section(struct load_ctx *c, const char *line)
{
    c->sec_def = -1;
    c->sec = NULL;
    c->sec_bad = true;
    const char *close = strchr(line, ']');
    if (line[0] != '[' || !close) {
        diag(c, c->lineno, "malformed section header (expected [name] or [kind.NAME])");
        return;
    }
    _cleanup_free_ char *full = strndup(line + 1, (size_t)(close - line - 1));
    if (!full)
        return;
    strstrip(full);
    char *dot = strchr(full, '.');
    if (dot)
        *dot = 0;
    ssize_t def = conf_find_section(c->schema, full);
    if (def < 0) {
        char hint[128];
        suggest_section(c, full, hint, sizeof(hint));
        diag(c, c->lineno, "unknown section [%s%s%s]%s", full, dot ? "." : "", dot ? dot + 1 : "", hint);
        return;
    }
    const struct conf_section_def *sd = &c->schema->sections[def];
    if (sd->named && !dot) {
        diag(c, c->lineno, "section [%s] needs a name: [%s.NAME]", full, full);
        return;
    }
    if (!sd->named && dot) {
        diag(c, c->lineno, "section [%s] takes no name (found [%s.%s])", full, full, dot + 1);
        return;
    }
    if (sd->named) {
        if (!valid_instance_name(dot + 1)) {
            diag(c, c->lineno, "invalid name '%s' in [%s.%s]: use letters, digits, '_' and '-'",
                 dot + 1, full, dot + 1);
            return;
        }
        c->sec = find_or_add_named(c, (size_t)def, dot + 1);
        if (!c->sec) {
            diag(c, c->lineno, "out of memory");
            return;
        }
    }
    c->sec_def = def;
    c->sec_bad = false;
}

static char *reader(char *str, int num, void *stream)
{
    struct load_ctx *c = stream;
    if (!c->text[c->pos])
        return NULL;
    const char *start = c->text + c->pos;
    const char *nl = strchr(start, '\n');
    size_t len = nl ? (size_t)(nl - start + 1) : strlen(start);
    c->pos += len;
    c->lineno++;
    size_t copy = MIN(len, (size_t)num - 1);
    memcpy(str, start, copy);
    str[copy] = 0;
    free(c->raw_line);
    c->raw_line = strndup(start, len);

    /* Look at the line ourselves: inih does not report empty sections (so an
     * unknown section without keys would pass) nor say what was wrong. */
    _cleanup_free_ char *t = strndup(start, len);
    if (t) {
        strstrip(t);
        if (t[0] == '[')
            begin_section(c, t);
        else if (t[0] && t[0] != '#' && t[0] != ';' && !strchr(t, '='))
            diag(c, c->lineno, "expected 'key = value', '[section]' or a comment");
    }
    return str;
}

static void suggest_key(struct load_ctx *c, const char *section, const char *name, char *hint,
                        size_t n)
{
    const char *cands[256];
    size_t m = 0;
    for (size_t i = 0; i < c->schema->n_keys && m < ELEMENTSOF(cands); i++)
        if (streq(c->schema->keys[i].section, section))
            cands[m++] = c->schema->keys[i].name;
    const char *best = suggest(cands, m, name);
    hint[0] = 0;
    if (best)
        snprintf(hint, n, "; did you mean '%s'?", best);
}

static unsigned value_column(struct load_ctx *c)
{
    if (!c->raw_line)
        return 1;
    const char *eq = strchr(c->raw_line, '=');
    if (!eq)
        return 1;
    const char *p = eq + 1;
    while (*p == ' ' || *p == '\t')
        p++;
    return (unsigned)(p - c->raw_line) + 1;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *c = user;
    if (c->sec_bad)
        return 1; /* the section header was already reported */
    if (c->sec_def < 0) {
        diag(c, c->lineno, "key '%s' outside of any section", name);
        return 1;
    }
    const struct conf_section_def *sd = &c->schema->sections[c->sec_def];
    ssize_t k = conf_find_key(c->schema, sd->name, name);
    char secname[256];
    if (c->sec)
        snprintf(secname, sizeof(secname), "%s.%s", sd->name, c->sec->name);
    else
        snprintf(secname, sizeof(secname), "%s", sd->name);
    if (k < 0) {
        char hint[128];
        suggest_key(c, sd->name, name, hint, sizeof(hint));
        diag(c, c->lineno, "unknown key '%s' in section [%s]%s", name, secname, hint);
        return 1;
    }
    const struct conf_key *key = &c->schema->keys[k];
    struct conf_value nv = { 0 };
    char err[256];
    int r;
    if (!*value && key->type != CT_STRING && key->type != CT_LIST && key->type != CT_EXPR) {
        /* "key =" resets to the default (systemd's convention). */
        r = 0;
    } else {
        r = parse_value(key, value, &nv, err, sizeof(err));
        if (r == -ENOMEM) {
            diag(c, c->lineno, "out of memory");
            return 1;
        }
        if (r < 0) {
            diag(c, c->lineno, "[%s] %s = %s: %s", secname, name,
                 (key->flags & CF_SECRET) ? "(secret)" : value, err);
            return 1;
        }
    }
    nv.set = true;
    nv.file = c->file;
    nv.line = c->lineno;
    nv.column = value_column(c);

    struct conf_value *slot;
    if (key->flags & CF_PREFIX) {
        if (!c->sec) {
            value_clear(key, &nv);
            return 1;
        }
        slot = NULL;
        for (size_t i = 0; i < c->sec->n_extras; i++)
            if (streq(c->sec->extras[i].name, name))
                slot = &c->sec->extras[i].v;
        if (!slot) {
            struct conf_extra *ne = realloc(c->sec->extras, (c->sec->n_extras + 1) * sizeof(*ne));
            if (!ne) {
                value_clear(key, &nv);
                return 1;
            }
            c->sec->extras = ne;
            ne[c->sec->n_extras] = (struct conf_extra){ .key = (size_t)k, .name = strdup(name) };
            slot = &ne[c->sec->n_extras++].v;
        }
    } else
        slot = c->sec ? &c->sec->values[k] : &c->cfg->values[k];
    value_clear(key, slot);
    *slot = nv;
    return 1;
}

static char *read_file(const char *path, int *err)
{
    _cleanup_buf_ struct buf b = BUF_INIT;
    *err = read_whole_file(path, &b);
    return *err < 0 ? NULL : buf_steal(&b);
}

static int parse_text(struct load_ctx *c, const char *name, const char *text)
{
    char **nf = realloc(c->cfg->files, (strv_length(c->cfg->files) + 2) * sizeof(char *));
    if (!nf)
        return -ENOMEM;
    c->cfg->files = nf;
    size_t n = strv_length(nf);
    nf[n] = strdup(name);
    nf[n + 1] = NULL;
    if (!nf[n])
        return -ENOMEM;
    c->file = nf[n];
    c->text = text;
    c->pos = 0;
    c->lineno = 0;
    c->sec_def = -1;
    c->sec = NULL;
    c->sec_bad = false;
    /* Values may hold long expressions; '#' and ';' inside values are data. */
    ini_allow_multiline = false;
    ini_allow_inline_comments = false;
    ini_use_stack = false;
    ini_allow_realloc = true;
    ini_max_line = 64 * 1024;
    ini_stop_on_first_error = false;
    ini_parse_stream(reader, c, handler, c);
    free(c->raw_line);
    c->raw_line = NULL;
    return 0;
}

static int filter_conf(const struct dirent *d)
{
    return d->d_name[0] != '.' && endswith(d->d_name, ".conf");
}

static void finalize_values(struct load_ctx *c, struct conf_value *values, const char *kind,
                            const struct conf_section *sec)
{
    const struct conf_schema *s = c->schema;
    const char *type = NULL;
    const struct conf_section_def *sd = &s->sections[conf_find_section(s, kind)];
    if (sec && sd->type_key) {
        ssize_t tk = conf_find_key(s, kind, sd->type_key);
        if (tk >= 0 && values[tk].has_value)
            type = values[tk].raw;
    }
    for (size_t i = 0; i < s->n_keys; i++) {
        const struct conf_key *k = &s->keys[i];
        if (!streq(k->section, kind) || (k->flags & CF_PREFIX))
            continue;
        struct conf_value *v = &values[i];
        bool applies = !sec || !k->types || !type || enum_lookup(k->types, type, &(int){ 0 });
        if (v->set && v->has_value && !applies) {
            conf_diag_add(c->diag, v->file, v->line,
                          "key '%s' does not apply to [%s.%s] of %s '%s' (it applies to: %s)",
                          k->name, kind, sec->name, sd->type_key, type, k->types);
            c->errors++;
            continue;
        }
        if (!v->has_value && applies && k->def) {
            char err[256];
            bool was_set = v->set;
            const char *file = v->file;
            unsigned line = v->line, col = v->column;
            value_clear(k, v);
            if (parse_value(k, k->def, v, err, sizeof(err)) < 0) {
                conf_diag_add(c->diag, NULL, 0, "BUG: default of %s.%s: %s", kind, k->name, err);
                c->errors++;
            }
            v->set = was_set;
            v->file = file;
            v->line = line;
            v->column = col;
        }
        if (sec && applies && (k->flags & CF_REQUIRED) && !v->has_value) {
            if (!type && sd->type_key && !streq(k->name, sd->type_key))
                continue; /* the missing type is reported once, below */
            conf_diag_add(c->diag, sec->file, sec->line, "[%s.%s] needs '%s' (%s)", kind,
                          sec->name, k->name, k->doc);
            c->errors++;
        }
    }
}

static int finish(struct load_ctx *c)
{
    struct rw_config *cfg = c->cfg;
    for (size_t i = 0; i < c->schema->n_sections; i++)
        if (!c->schema->sections[i].named)
            finalize_values(c, cfg->values, c->schema->sections[i].name, NULL);
    for (size_t i = 0; i < cfg->n_named; i++)
        finalize_values(c, cfg->named[i].values, c->schema->sections[cfg->named[i].def].name,
                        &cfg->named[i]);
    return c->errors ? -EINVAL : 0;
}

static struct rw_config *config_new(const struct conf_schema *schema, const char *path)
{
    struct rw_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return NULL;
    cfg->refcount = 1;
    cfg->schema = schema;
    cfg->path = strdup(path);
    cfg->values = alloc_values(schema);
    cfg->files = calloc(1, sizeof(char *));
    if (!cfg->path || !cfg->values || !cfg->files)
        return conf_unref(cfg);
    return cfg;
}

int conf_load_string(const struct conf_schema *schema, const char *name, const char *text,
                     struct conf_diag *d, struct rw_config **out)
{
    _cleanup_(conf_unrefp) struct rw_config *cfg = config_new(schema, name);
    if (!cfg)
        return -ENOMEM;
    struct load_ctx c = { .schema = schema, .cfg = cfg, .diag = d };
    int r = parse_text(&c, name, text);
    if (r < 0)
        return r;
    r = finish(&c);
    if (r < 0)
        return r;
    *out = TAKE_PTR(cfg);
    return 0;
}

int conf_load(const struct conf_schema *schema, const char *path, struct conf_diag *d,
              struct rw_config **out)
{
    _cleanup_(conf_unrefp) struct rw_config *cfg = config_new(schema, path);
    if (!cfg)
        return -ENOMEM;
    struct load_ctx c = { .schema = schema, .cfg = cfg, .diag = d };
    int err;
    _cleanup_free_ char *text = read_file(path, &err);
    if (!text) {
        conf_diag_add(d, path, 0, "cannot read configuration: %s", strerror(-err));
        return err;
    }
    int r = parse_text(&c, path, text);
    if (r < 0)
        return r;

    _cleanup_free_ char *dircopy = strdup(path);
    if (!dircopy)
        return -ENOMEM;
    _cleanup_free_ char *dropdir = NULL;
    if (asprintf(&dropdir, "%s/conf.d", dirname(dircopy)) < 0)
        return -ENOMEM;
    struct dirent **ents = NULL;
    int n = scandir(dropdir, &ents, filter_conf, alphasort);
    for (int i = 0; i < n; i++) {
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/%s", dropdir, ents[i]->d_name) >= 0) {
            _cleanup_free_ char *t = read_file(p, &err);
            if (!t) {
                conf_diag_add(d, p, 0, "cannot read drop-in: %s", strerror(-err));
                c.errors++;
            } else
                parse_text(&c, p, t);
        }
        free(ents[i]);
    }
    free(ents);
    r = finish(&c);
    if (r < 0)
        return r;
    *out = TAKE_PTR(cfg);
    return 0;
}

struct rw_config *conf_ref(struct rw_config *c)
{
    if (c)
        __atomic_add_fetch(&c->refcount, 1, __ATOMIC_RELAXED);
    return c;
}

static void values_free(const struct conf_schema *s, struct conf_value *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < s->n_keys; i++)
        value_clear(&s->keys[i], &v[i]);
    free(v);
}

struct rw_config *conf_unref(struct rw_config *c)
{
    if (!c || __atomic_sub_fetch(&c->refcount, 1, __ATOMIC_ACQ_REL) > 0)
        return NULL;
    values_free(c->schema, c->values);
    for (size_t i = 0; i < c->n_named; i++) {
        struct conf_section *s = &c->named[i];
        values_free(c->schema, s->values);
        for (size_t j = 0; j < s->n_extras; j++) {
            value_clear(&c->schema->keys[s->extras[j].key], &s->extras[j].v);
            free(s->extras[j].name);
        }
        free(s->extras);
        free(s->name);
        free(s->file);
    }
    free(c->named);
    strv_free(c->files);
    free(c->path);
    free(c);
    return NULL;
}

/* ---- accessors ---- */

const struct conf_value *conf_get(const struct rw_config *c, size_t key) { return &c->values[key]; }
bool conf_bool(const struct rw_config *c, size_t key) { return c->values[key].b; }
int64_t conf_int(const struct rw_config *c, size_t key) { return c->values[key].i; }
double conf_double(const struct rw_config *c, size_t key) { return c->values[key].d; }
uint64_t conf_usec(const struct rw_config *c, size_t key) { return c->values[key].u; }
uint64_t conf_size(const struct rw_config *c, size_t key) { return c->values[key].u; }
int conf_enum(const struct rw_config *c, size_t key) { return c->values[key].e; }

const char *conf_str(const struct rw_config *c, size_t key)
{
    const struct conf_value *v = &c->values[key];
    return v->has_value && v->raw && *v->raw ? v->raw : NULL;
}

char *const *conf_list(const struct rw_config *c, size_t key)
{
    static char *const empty[] = { NULL };
    return c->values[key].list ? c->values[key].list : empty;
}

size_t conf_named_count(const struct rw_config *c, const char *kind)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n_named; i++)
        if (streq(c->schema->sections[c->named[i].def].name, kind))
            n++;
    return n;
}

const struct conf_section *conf_named_nth(const struct rw_config *c, const char *kind, size_t n)
{
    for (size_t i = 0; i < c->n_named; i++)
        if (streq(c->schema->sections[c->named[i].def].name, kind) && n-- == 0)
            return &c->named[i];
    return NULL;
}

const struct conf_value *conf_sget(const struct conf_section *s, size_t key) { return &s->values[key]; }

const char *conf_stype(const struct rw_config *c, const struct conf_section *s)
{
    const struct conf_section_def *sd = &c->schema->sections[s->def];
    if (!sd->type_key)
        return NULL;
    ssize_t k = conf_find_key(c->schema, sd->name, sd->type_key);
    return k >= 0 && s->values[k].has_value ? s->values[k].raw : NULL;
}

static bool value_equal(const struct conf_key *k, const struct conf_value *a,
                        const struct conf_value *b)
{
    if (a->has_value != b->has_value)
        return false;
    if (!a->has_value)
        return true;
    switch (k->type) {
    case CT_BOOL: return a->b == b->b;
    case CT_INT: return a->i == b->i;
    case CT_DOUBLE: return a->d == b->d;
    case CT_DURATION:
    case CT_SIZE: return a->u == b->u;
    case CT_ENUM: return a->e == b->e;
    case CT_LIST: return strv_equal(a->list, b->list);
    case CT_STRING:
    case CT_EXPR: return streq_ptr(a->raw, b->raw);
    }
    return false;
}

bool conf_section_equal(const struct rw_config *a, const struct conf_section *sa,
                        const struct rw_config *b, const struct conf_section *sb)
{
    if (sa->def != sb->def || !streq(sa->name, sb->name) || sa->n_extras != sb->n_extras)
        return false;
    for (size_t i = 0; i < a->schema->n_keys; i++)
        if (!value_equal(&a->schema->keys[i], &sa->values[i], &sb->values[i]))
            return false;
    for (size_t i = 0; i < sa->n_extras; i++) {
        bool found = false;
        for (size_t j = 0; j < sb->n_extras; j++)
            if (streq(sa->extras[i].name, sb->extras[j].name) &&
                streq_ptr(sa->extras[i].v.raw, sb->extras[j].v.raw))
                found = true;
        if (!found)
            return false;
    }
    return true;
}

static const char *shown(const struct conf_key *k, const struct conf_value *v)
{
    if (k->flags & CF_SECRET)
        return v->has_value ? "(secret)" : "(unset)";
    return v->has_value ? v->raw : "(unset)";
}

unsigned conf_diff_restart_required(const struct rw_config *old, const struct rw_config *nc,
                                    struct conf_diag *d)
{
    unsigned n = 0;
    for (size_t i = 0; i < nc->schema->n_keys; i++) {
        const struct conf_key *k = &nc->schema->keys[i];
        const struct conf_section_def *sd =
            &nc->schema->sections[conf_find_section(nc->schema, k->section)];
        if (sd->named || (k->flags & CF_RELOAD))
            continue;
        if (!value_equal(k, &old->values[i], &nc->values[i])) {
            conf_diag_add(d, nc->values[i].file ? nc->values[i].file : nc->path,
                          nc->values[i].line,
                          "[%s] %s changed from %s to %s, which needs a restart "
                          "(systemctl restart rarewatch)",
                          k->section, k->name, shown(k, &old->values[i]), shown(k, &nc->values[i]));
            n++;
        }
    }
    return n;
}

unsigned conf_diff(const struct rw_config *old, const struct rw_config *nc, struct conf_diag *d)
{
    unsigned n = 0;
    for (size_t i = 0; i < nc->schema->n_keys; i++) {
        const struct conf_key *k = &nc->schema->keys[i];
        if (nc->schema->sections[conf_find_section(nc->schema, k->section)].named)
            continue;
        if (!value_equal(k, &old->values[i], &nc->values[i])) {
            conf_diag_add(d, NULL, 0, "[%s] %s: %s -> %s", k->section, k->name,
                          shown(k, &old->values[i]), shown(k, &nc->values[i]));
            n++;
        }
    }
    for (size_t i = 0; i < nc->n_named; i++) {
        const struct conf_section *s = &nc->named[i];
        const char *kind = nc->schema->sections[s->def].name;
        const struct conf_section *o = NULL;
        for (size_t j = 0; j < old->n_named; j++)
            if (old->named[j].def == s->def && streq(old->named[j].name, s->name))
                o = &old->named[j];
        if (!o) {
            conf_diag_add(d, NULL, 0, "[%s.%s] added", kind, s->name);
            n++;
        } else if (!conf_section_equal(old, o, nc, s)) {
            conf_diag_add(d, NULL, 0, "[%s.%s] changed", kind, s->name);
            n++;
        }
    }
    for (size_t j = 0; j < old->n_named; j++) {
        bool found = false;
        for (size_t i = 0; i < nc->n_named; i++)
            if (old->named[j].def == nc->named[i].def && streq(old->named[j].name, nc->named[i].name))
                found = true;
        if (!found) {
            conf_diag_add(d, NULL, 0, "[%s.%s] removed",
                          old->schema->sections[old->named[j].def].name, old->named[j].name);
            n++;
        }
    }
    return n;
}

/* ---- printing ---- */

static void print_key_comment(const struct conf_key *k, FILE *f)
{
    char range[160];
    describe_range(k, range, sizeof(range));
    fprintf(f, "# %s (%s%s%s%s%s%s)\n", k->doc, conf_type_name(k->type),
            k->type == CT_ENUM ? ": " : "", k->type == CT_ENUM ? k->enum_values : "", range,
            (k->flags & CF_RELOAD) ? ", reloadable" : ", restart to change",
            (k->flags & CF_REQUIRED) ? ", required" : "");
    if (k->types)
        fprintf(f, "#   applies to type: %s\n", k->types);
    fprintf(f, "#%s = %s\n", k->name, k->def ? k->def : "");
}

/* roff text: a backslash is \e, a line never starts with a control
 * character, and in code (key names, values) '-' is \- so it renders and
 * copies as the ASCII hyphen-minus. */
static void man_text(FILE *f, const char *t, bool code, bool line_start)
{
    if (line_start && (*t == '.' || *t == '\''))
        fputs("\\&", f);
    for (; *t; t++) {
        if (*t == '\\')
            fputs("\\e", f);
        else if (*t == '-' && code)
            fputs("\\-", f);
        else if (*t == '|' && code)
            fputs("|\\:", f); /* enum lists may break after a bar */
        else
            fputc(*t, f);
    }
}

static void man_key(const struct conf_key *k, FILE *f)
{
    char range[160];
    describe_range(k, range, sizeof(range));
    fputs(".TP\n\\fB", f);
    man_text(f, k->name, true, false);
    if (k->flags & CF_PREFIX)
        fputs("\\fIFIELD\\fB", f);
    fputs("\\fR = ", f);
    if (k->def) {
        fputs("\\fI", f);
        man_text(f, k->def, true, false);
        fputs("\\fR\n", f);
    } else
        fputs("(unset)\n", f);
    man_text(f, k->doc, false, true);
    size_t n = strlen(k->doc);
    fprintf(f, "%s\n(%s", n && k->doc[n - 1] == '.' ? "" : ".", conf_type_name(k->type));
    if (k->type == CT_ENUM) {
        fputs(": ", f);
        man_text(f, k->enum_values, true, false);
    }
    man_text(f, range, false, false);
    fputs((k->flags & CF_RELOAD) ? "; reloadable" : "; restart to change", f);
    if (k->flags & CF_REQUIRED)
        fputs("; required", f);
    if (k->types) {
        fputs("; applies to type ", f);
        man_text(f, k->types, true, false);
    }
    fputs(")\n", f);
}

static void man_page(const struct conf_schema *s, FILE *f)
{
    fprintf(f, ".\\\" Generated by `rarewatch check-config --reference=man` from\n"
               ".\\\" include/rarewatch/conf_keys.def. Do not edit.\n"
               ".TH RAREWATCH.CONF 5 \"\" \"rarewatch %s\" \"rarewatch\"\n"
               ".SH NAME\n"
               "rarewatch.conf \\- configuration of rarewatchd\n"
               ".SH SYNOPSIS\n"
               ".B /etc/rarewatch/rarewatch.conf\n"
               ".br\n"
               ".B /etc/rarewatch/conf.d/*.conf\n"
               ".SH DESCRIPTION\n"
               "\\fBrarewatchd\\fR(8) and \\fBrarewatch\\fR(1) read one INI file, then every\n"
               "\\fI*.conf\\fR file in the \\fIconf.d\\fR directory beside it in lexical order;\n"
               "a later value wins.\n"
               "Lines are \\fIkey\\fR = \\fIvalue\\fR under a \\fB[section]\\fR header;\n"
               "\\fB#\\fR and \\fB;\\fR start comments.\n"
               "A key set to nothing (\\fIkey\\fR =) takes its default again.\n"
               ".PP\n"
               "Durations: \\fB200ms\\fR, \\fB5s\\fR, \\fB1m\\fR, \\fB1h\\fR, \\fB2d\\fR.\n"
               "Sizes: \\fB512KiB\\fR, \\fB4MiB\\fR (IEC) or \\fB10MB\\fR (SI).\n"
               "Booleans: true/false, yes/no, on/off, 1/0.\n"
               "Sections written \\fB[\\fR\\fIkind\\fR\\fB.\\fR\\fINAME\\fR\\fB]\\fR may appear\n"
               "any number of times, each with its own name.\n"
               ".PP\n"
               "Keys marked \\fIreloadable\\fR take effect on \\fBsystemctl reload rarewatch\\fR\n"
               "(SIGHUP); a changed key marked \\fIrestart to change\\fR makes the daemon keep\n"
               "its running configuration until it is restarted.\n"
               "A configuration with any error is rejected as a whole; check edits with\n"
               "\\fB\\%%rarewatch check\\-config\\fR, which prints \\fIFILE\\fR:\\fILINE\\fR: problems.\n"
               ".PP\n"
               "Every key is listed below with its default, as generated from the key table\n"
               "the programs are built from.\n",
            RW_VERSION);
    for (size_t i = 0; i < s->n_sections; i++) {
        const struct conf_section_def *sd = &s->sections[i];
        fprintf(f, ".SH \"[%s%s]\"\n", sd->name, sd->named ? ".NAME" : "");
        man_text(f, sd->doc, false, true);
        fputc('\n', f);
        for (size_t j = 0; j < s->n_keys; j++)
            if (streq(s->keys[j].section, sd->name))
                man_key(&s->keys[j], f);
    }
    fputs(".SH FILES\n"
          ".TP\n"
          ".I /etc/rarewatch/rarewatch.conf\n"
          "The main file, shipped with every key commented out at its default.\n"
          ".TP\n"
          ".I /etc/rarewatch/conf.d/*.conf\n"
          "Drop-ins, read after the main file in lexical order.\n"
          ".TP\n"
          ".I /usr/share/doc/rarewatch/examples/\n"
          "Example configurations.\n"
          ".SH SEE ALSO\n"
          ".BR rarewatchd (8),\n"
          ".BR rarewatch (1)\n",
          f);
}

void conf_print_reference(const struct conf_schema *s, FILE *f, enum conf_ref_format fmt)
{
    bool markdown = fmt == CONF_REF_MARKDOWN;
    if (fmt == CONF_REF_MAN) {
        man_page(s, f);
        return;
    }

    if (markdown)
        fprintf(f, "# Configuration reference\n\n"
                   "Generated by `rarewatch check-config --reference=markdown` from the key table "
                   "(`include/rarewatch/conf_keys.def`). Durations: `200ms`, `5s`, `1m`, `1h`, `2d`; "
                   "sizes: `512KiB`, `4MiB` (IEC) or `10MB` (SI); booleans: true/false, yes/no, "
                   "on/off, 1/0. A key set to nothing (`key =`) takes its default again.\n\n");
    else
        fprintf(f, "# /etc/rarewatch/rarewatch.conf: configuration of rarewatchd.\n"
                   "#\n"
                   "# Every key is shown commented out with its default. Drop-ins in\n"
                   "# /etc/rarewatch/conf.d/*.conf are read after this file in lexical order;\n"
                   "# later values win. Check edits with `rarewatch check-config`, apply them\n"
                   "# with `systemctl reload rarewatch`. Generated by\n"
                   "# `rarewatch check-config --reference`; see docs/configuration.md.\n");
    for (size_t i = 0; i < s->n_sections; i++) {
        const struct conf_section_def *sd = &s->sections[i];
        if (markdown) {
            fprintf(f, "## [%s%s]\n\n%s\n\n", sd->name, sd->named ? ".NAME" : "", sd->doc);
            fprintf(f, "| key | type | default | reload | applies to | description |\n");
            fprintf(f, "| --- | --- | --- | --- | --- | --- |\n");
        } else
            fprintf(f, "\n# %s\n%s[%s%s]\n", sd->doc, sd->named ? "#" : "", sd->name,
                    sd->named ? ".example" : "");
        for (size_t j = 0; j < s->n_keys; j++) {
            const struct conf_key *k = &s->keys[j];
            if (!streq(k->section, sd->name))
                continue;
            if (markdown) {
                char range[160];
                describe_range(k, range, sizeof(range));
                fprintf(f, "| `%s%s` | %s%s%s%s | `%s` | %s | %s | %s |\n", k->name,
                        (k->flags & CF_PREFIX) ? "FIELD" : "", conf_type_name(k->type),
                        k->type == CT_ENUM ? " (" : "", k->type == CT_ENUM ? k->enum_values : "",
                        k->type == CT_ENUM ? ")" : range, k->def ? k->def : "",
                        (k->flags & CF_RELOAD) ? "yes" : "restart", k->types ? k->types : "all",
                        k->doc);
            } else
                print_key_comment(k, f);
        }
        if (markdown)
            fprintf(f, "\n");
    }
}

static void print_values(const struct rw_config *c, const struct conf_value *values,
                         const char *kind, FILE *f)
{
    for (size_t i = 0; i < c->schema->n_keys; i++) {
        const struct conf_key *k = &c->schema->keys[i];
        if (!streq(k->section, kind) || !values[i].has_value)
            continue;
        fprintf(f, "%s = %s", k->name, shown(k, &values[i]));
        if (values[i].set)
            fprintf(f, "    # %s:%u", values[i].file, values[i].line);
        fprintf(f, "\n");
    }
}

void conf_print_effective(const struct rw_config *c, FILE *f)
{
    for (size_t i = 0; i < c->schema->n_sections; i++) {
        const struct conf_section_def *sd = &c->schema->sections[i];
        if (sd->named)
            continue;
        fprintf(f, "[%s]\n", sd->name);
        print_values(c, c->values, sd->name, f);
        fprintf(f, "\n");
    }
    for (size_t i = 0; i < c->n_named; i++) {
        const struct conf_section *s = &c->named[i];
        const char *kind = c->schema->sections[s->def].name;
        fprintf(f, "[%s.%s]\n", kind, s->name);
        print_values(c, s->values, kind, f);
        for (size_t j = 0; j < s->n_extras; j++)
            fprintf(f, "%s = %s\n", s->extras[j].name, s->extras[j].v.raw ? s->extras[j].v.raw : "");
        fprintf(f, "\n");
    }
}
