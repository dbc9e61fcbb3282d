/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The value type of the record model: what a field path resolves to, what
 * expressions compute, what detectors read. Small and passed by value.
 *
 * Strings are borrowed slices: they point into the record's bytes or into a
 * per-batch arena, are valid until that batch is released, and are always
 * decoded (JSON escapes resolved, valid UTF-8). Objects and arrays carry the
 * raw JSON text of the value in `s` (not decoded), so they can be copied to
 * output without re-encoding.
 */
#include <stdbool.h>
#include <stdint.h>

enum rw_type {
    RW_MISSING = 0, /* the path does not exist in the record */
    RW_NULL,
    RW_BOOL,
    RW_NUM,
    RW_STR,
    RW_OBJECT,
    RW_ARRAY,
};

struct rw_str {
    const char *p;
    uint32_t len;
};

struct rw_value {
    enum rw_type type;
    bool b;
    double num;
    struct rw_str s;
};

#define RW_VALUE_MISSING ((struct rw_value){ .type = RW_MISSING })
#define RW_VALUE_NULL ((struct rw_value){ .type = RW_NULL })
#define RW_VALUE_BOOL(x) ((struct rw_value){ .type = RW_BOOL, .b = (x) })
#define RW_VALUE_NUM(x) ((struct rw_value){ .type = RW_NUM, .num = (x) })
#define RW_VALUE_STR(ptr, n) ((struct rw_value){ .type = RW_STR, .s = { (ptr), (uint32_t)(n) } })

static inline const char *rw_type_name(enum rw_type t)
{
    switch (t) {
    case RW_MISSING: return "missing";
    case RW_NULL: return "null";
    case RW_BOOL: return "bool";
    case RW_NUM: return "number";
    case RW_STR: return "string";
    case RW_OBJECT: return "object";
    case RW_ARRAY: return "array";
    }
    return "?";
}
