/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The expression language of the analytics stage (transform `where`/`value`,
 * detector `where`). Compiled once at config load into a flat node array;
 * evaluated per record without malloc: string results (concatenation,
 * lower(), substr(), ...) are allocated from the caller's scratch arena and
 * live as long as it does.
 *
 * Grammar, lowest precedence first:
 *   or        a or b                      short-circuit, result bool
 *   and       a and b                     short-circuit, result bool
 *   not       not a
 *   compare   == != < <= > >=  a in [x, y, ...]  a =~ "regex"
 *   additive  + -                         (+ concatenates two strings)
 *   mult      * / %
 *   unary     -a
 *   primary   number | "string" | true | false | null | (e) | PATH | f(args)
 * PATH is a field path as json_path_compile() reads it (user.country,
 * items[0].sku, ["key.with.dots"]); it must be written without spaces.
 *
 * Null and missing: arithmetic with null/missing gives null; every
 * comparison with a missing field is false, except that `x == null` is true
 * for null and missing (and `x != null` false for both); ordering
 * comparisons between different types are false. Truthiness (filters,
 * and/or/not): false, 0, NaN, "", null and missing are false. Division or
 * modulo by zero gives null. Arithmetic on strings/bools (other than string
 * + string) is a type error: expr_eval() fails and the caller decides (a
 * strict transform dead-letters the record).
 *
 * Compiled expressions are read-only and may be shared by threads.
 */
#include <stdbool.h>
#include <stddef.h>

#include "rarewatch/buf.h"
#include "rarewatch/conf.h"
#include "rarewatch/json_scan.h"
#include "rarewatch/value.h"

struct expr;

/* What a record looks like to an expression. `overlay`, when set, is asked
 * first for a path (fields set/removed by earlier transforms): it returns 1
 * with *out filled when it decides the value (RW_MISSING for a removed
 * field), 0 to fall through to json_lookup() on doc. */
struct expr_env {
    struct json_doc *doc;
    int (*overlay)(void *ud, const struct json_path *p, struct rw_value *out);
    void *overlay_ud;
    struct arena *scratch;   /* string results; required when strings are built */
    double event_time;       /* epoch seconds; default of hour_of_day()/day_of_week() */
    double arrival_time;     /* arrival_time() */
    void *match_data;        /* pcre2_match_data from expr_match_data_new(), per thread */
    const char *err;         /* after a failed expr_eval: why (static text) */
};

/* Compile src. On a syntax/semantic error: -EINVAL, *err_col is the 0-based
 * byte offset of the problem in src and err holds a message. */
int expr_compile(const char *src, struct expr **out, size_t *err_off, char *err, size_t errlen);
struct expr *expr_free(struct expr *e);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct expr *, expr_free)

/* Compile a CT_EXPR (or string) config value; an error is added to diag as
 * FILE:LINE:COL: message, COL being the value's column plus the offset. */
int expr_compile_conf(const struct conf_value *v, const char *what, struct conf_diag *diag,
                      struct expr **out);

/* 0 with *out set, or -EINVAL (type error, env->err says which), -ENOMEM. */
int expr_eval(const struct expr *e, struct expr_env *env, struct rw_value *out);
/* Evaluate as a predicate: errors count as false. */
bool expr_test(const struct expr *e, struct expr_env *env);
bool rw_value_truthy(const struct rw_value *v);

/* Per-thread regex match scratch (one allocation, reused per record). */
void *expr_match_data_new(void);
void expr_match_data_free(void *md);
