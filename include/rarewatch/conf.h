/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Configuration: a declarative key table (schema) drives parsing, defaults,
 * validation, reload rules and the reference documentation.
 *
 * A loaded configuration is an immutable, reference-counted snapshot. The
 * daemon publishes a new snapshot on reload; workers pick it up at their
 * next step (see conf_current()). Nothing in a snapshot changes after
 * conf_load() returns, so readers need no locks.
 *
 * Sources: the main file, then drop-ins `conf.d/ *.conf` beside it in
 * lexical order; later values win. Named sections `[detector.NAME]`,
 * `[transform.NAME]`, `[window.NAME]` keep the order in which they first
 * appear; their keys may be restricted to some values of the section's
 * `type` key (per-type key sets).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "rarewatch/macro.h"

enum conf_type {
    CT_BOOL,
    CT_INT,      /* int64 within [min, max] */
    CT_DOUBLE,   /* within [min, max] */
    CT_DURATION, /* microseconds within [min, max] */
    CT_SIZE,     /* bytes within [min, max] */
    CT_ENUM,     /* one of enum_values ("a|b|c") */
    CT_STRING,
    CT_LIST,     /* comma/space separated strings */
    CT_EXPR,     /* a string compiled by the analytics stage; column kept */
};

enum conf_flags {
    CF_RELOAD = 1 << 0,   /* may change on SIGHUP */
    CF_REQUIRED = 1 << 1, /* named sections: must be set */
    CF_PREFIX = 1 << 2,   /* name is a prefix: "default_" matches default_X */
    CF_SECRET = 1 << 3,   /* never printed by dumps or diffs */
};

struct conf_key {
    const char *section; /* "daemon", or the kind of a named section: "detector" */
    const char *name;
    enum conf_type type;
    const char *def; /* default, in config syntax; NULL = unset */
    double min, max; /* for INT, DOUBLE, DURATION (usec), SIZE (bytes); 0,0 = no range */
    const char *enum_values; /* "a|b|c" for CT_ENUM */
    const char *types;       /* named sections: "zscore|rate" this key applies to; NULL = all */
    unsigned flags;
    const char *doc;
};

struct conf_section_def {
    const char *name;     /* "daemon" or "detector" */
    bool named;           /* [detector.NAME] */
    const char *type_key; /* named sections: the key choosing the per-type key set */
    const char *doc;
};

struct conf_schema {
    const struct conf_section_def *sections;
    size_t n_sections;
    const struct conf_key *keys;
    size_t n_keys;
};

struct conf_value {
    bool set; /* set by a file (false: default or unset) */
    bool has_value;
    const char *file; /* owned by the snapshot */
    unsigned line, column;
    char *raw; /* the text as written (or the default) */
    union {
        bool b;
        int64_t i;
        double d;
        uint64_t u; /* duration usec, size bytes */
        int e;      /* enum index */
        char *s;    /* == raw for STRING/EXPR */
        char **list;
    };
};

/* A pattern key's concrete instance ("default_category"). */
struct conf_extra {
    size_t key; /* index of the CF_PREFIX key */
    char *name;
    struct conf_value v;
};

struct conf_section {
    size_t def;      /* index into schema->sections */
    char *name;      /* "fraud" of [detector.fraud]; NULL for global sections */
    char *file;
    unsigned line;
    struct conf_value *values; /* indexed by key index, for this section kind */
    struct conf_extra *extras;
    size_t n_extras;
};

struct rw_config {
    int refcount;
    uint64_t generation;
    const struct conf_schema *schema;
    char *path;
    char **files;        /* every file read, in order; values point into these */
    struct conf_value *values; /* global sections, indexed by key index */
    struct conf_section *named;
    size_t n_named;
};

/* Error collection: every message is "FILE:LINE: text". */
struct conf_diag {
    char **msgs;
    size_t n;
    FILE *echo; /* when set, messages are also printed here as they come */
};
void conf_diag_add(struct conf_diag *d, const char *file, unsigned line, const char *fmt, ...)
    _printf_(4, 5);
void conf_diag_clear(struct conf_diag *d);

/* Load the main file and its drop-ins. 0 on success; -EINVAL when any
 * error was found (all of them are in diag); -ENOENT/-EACCES when the main
 * file cannot be read (also in diag). */
int conf_load(const struct conf_schema *schema, const char *path, struct conf_diag *diag,
              struct rw_config **out);
/* Parse from memory (tests, fuzzing). `name` is used in messages. */
int conf_load_string(const struct conf_schema *schema, const char *name, const char *text,
                     struct conf_diag *diag, struct rw_config **out);

struct rw_config *conf_ref(struct rw_config *c);
struct rw_config *conf_unref(struct rw_config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct rw_config *, conf_unref)

/* Keys that differ between two snapshots and cannot change on reload: each
 * one is added to diag (with the new file:line). Returns how many. */
unsigned conf_diff_restart_required(const struct rw_config *old, const struct rw_config *new_cfg,
                                    struct conf_diag *diag);
/* Describe every changed key as "section.key: old -> new" into diag
 * (secrets masked). Returns how many. */
unsigned conf_diff(const struct rw_config *old, const struct rw_config *new_cfg,
                   struct conf_diag *diag);

ssize_t conf_find_key(const struct conf_schema *s, const char *section, const char *name);
ssize_t conf_find_section(const struct conf_schema *s, const char *name);

/* Typed accessors for global sections. Keys are indices into the schema;
 * the production schema names them RWK_section_key (conf_schema.h). */
const struct conf_value *conf_get(const struct rw_config *c, size_t key);
bool conf_bool(const struct rw_config *c, size_t key);
int64_t conf_int(const struct rw_config *c, size_t key);
double conf_double(const struct rw_config *c, size_t key);
uint64_t conf_usec(const struct rw_config *c, size_t key); /* duration */
uint64_t conf_size(const struct rw_config *c, size_t key);
int conf_enum(const struct rw_config *c, size_t key);
const char *conf_str(const struct rw_config *c, size_t key); /* NULL when unset */
char *const *conf_list(const struct rw_config *c, size_t key);  /* never NULL */

/* Named sections. */
size_t conf_named_count(const struct rw_config *c, const char *kind);
const struct conf_section *conf_named_nth(const struct rw_config *c, const char *kind, size_t n);
const struct conf_value *conf_sget(const struct conf_section *s, size_t key);
const char *conf_stype(const struct rw_config *c, const struct conf_section *s);
/* True when two named sections have identical settings (state may be kept
 * across a reload). */
bool conf_section_equal(const struct rw_config *a, const struct conf_section *sa,
                        const struct rw_config *b, const struct conf_section *sb);

/* Printing: the reference (every key with its default: commented, as the
 * shipped file; a Markdown table, docs/configuration.md; or the man page
 * rarewatch.conf(5), generated at build time) and the effective values. */
enum conf_ref_format {
    CONF_REF_CONF,
    CONF_REF_MARKDOWN,
    CONF_REF_MAN,
};
void conf_print_reference(const struct conf_schema *s, FILE *f, enum conf_ref_format fmt);
void conf_print_effective(const struct rw_config *c, FILE *f);
const char *conf_type_name(enum conf_type t);
