/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The record-path JSON scanner: validates a whole document and builds a flat
 * index ("tape") of its values, then answers precompiled path lookups.
 *
 *   struct json_doc doc;  json_doc_init(&doc, &batch_arena);   // once
 *   struct json_path *p;  json_path_compile("items[0].sku", &p); // config load
 *   per record:
 *     r = json_scan(&doc, text, len);     // text[len] must be '\0'
 *     r = json_lookup(&doc, p, &v);       // v.type == RW_MISSING if absent
 *
 * Input contract: text[len] must be a readable '\0' (struct buf and the
 * kinesis_records Data decoder both guarantee this). The scanner uses it as a
 * sentinel instead of bounds-checking every byte. Documents must be shorter
 * than 4 GiB (offsets are 32-bit).
 *
 * Validation is RFC 8259 strict: one value, optional surrounding whitespace,
 * nothing after it; nesting deeper than JSON_MAX_DEPTH is rejected; raw bytes
 * in strings must be valid UTF-8 (no overlongs, no encoded surrogates);
 * control characters must be escaped. An escaped lone surrogate ("\ud800") is
 * grammatical JSON and is accepted; it decodes to U+FFFD so decoded strings
 * are always valid UTF-8.
 *
 * The tape: node 0 is the root. An object's children are alternating key and
 * value nodes; an array's children are its elements. Every node has `next`,
 * the index just after its subtree, so siblings are skipped in O(1). Spans
 * are byte offsets [start, end) into the text; a string's span includes its
 * quotes. Between any two tokens there is only whitespace, so scanning
 * backwards from a key's start finds the ',' or '{' before it.
 *
 * Lifetime: the tape lives in the doc and is reused (grow-only) by the next
 * json_scan. Strings returned by lookups point into the text, or - when they
 * contain escapes - into the doc's arena: the caller's arena (valid until the
 * caller resets it) or, if none was given, an internal one that the next
 * json_scan resets.
 *
 * Not thread-safe per doc; use one doc per thread. Compiled paths are
 * read-only and may be shared.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rarewatch/buf.h"
#include "rarewatch/value.h"

#define JSON_MAX_DEPTH 64
#define JSON_NONE UINT32_MAX

enum json_node_type {
    JSON_T_NULL = 1,
    JSON_T_FALSE,
    JSON_T_TRUE,
    JSON_T_NUMBER,
    JSON_T_STRING,
    JSON_T_OBJECT,
    JSON_T_ARRAY,
};

/* Node flags. */
#define JSON_F_ESCAPED 0x01 /* string contains at least one backslash escape */
#define JSON_F_KEY 0x02     /* string is an object member name */
#define JSON_F_FLOAT 0x04   /* number has a fraction or an exponent */
#define JSON_F_NONASCII 0x08 /* string has a byte >= 0x80 in its text (a raw
                              * UTF-8 sequence; escapes do not count) */

struct json_node {
    uint32_t start, end; /* byte span of the value in the text */
    uint32_t next;       /* index of the node after this subtree */
    uint8_t type;        /* enum json_node_type */
    uint8_t flags;
    uint16_t reserved;
};

struct json_path;
struct json_doc {
    const char *text;
    size_t len;
    struct json_node *nodes;
    uint32_t n, cap;
    struct arena *arena; /* where escaped strings are decoded */
    struct arena own_arena;
    bool owns_arena;
    /* After a failed json_scan: what and where, for the one log line. */
    const char *err_msg;
    size_t err_off;
    /* Edits not yet spliced into text (the transforms' overlay, see
     * transform.h): when set, json_lookup() asks it instead of the nodes, so
     * the detectors read the transformed record without a second scan. It
     * answers every path (0 or a negative errno). json_scan() clears it. */
    int (*overlay)(void *ud, const struct json_path *p, struct rw_value *out);
    void *overlay_ud;
};

/* arena may be NULL: the doc then decodes escaped strings into an internal
 * arena that each json_scan resets. */
void json_doc_init(struct json_doc *d, struct arena *arena);
void json_doc_free(struct json_doc *d);

/* Validate text[0..len) and index it. text[len] must be '\0'.
 * 0, or -EINVAL (not valid JSON / too deep; see err_msg, err_off),
 * -E2BIG (>= 4 GiB), -ENOMEM. */
int json_scan(struct json_doc *d, const char *text, size_t len);

static inline const struct json_node *json_node(const struct json_doc *d, uint32_t i)
{
    return &d->nodes[i];
}
/* First child of a container, or JSON_NONE when it is empty. For objects this
 * is the first key; the value is key + 1 and the next key is value's next. */
static inline uint32_t json_first_child(const struct json_doc *d, uint32_t i)
{
    return d->nodes[i].next != i + 1 ? i + 1 : JSON_NONE;
}
/* Sibling after child i inside container c, or JSON_NONE. For an object pass
 * the value node to step to the next key. */
static inline uint32_t json_next_sibling(const struct json_doc *d, uint32_t c, uint32_t i)
{
    uint32_t n = d->nodes[i].next;
    return n < d->nodes[c].next ? n : JSON_NONE;
}

/* Value node of member `key` (decoded bytes) in object obj, or JSON_NONE (also
 * when obj is not an object). With duplicate keys the first one wins. */
uint32_t json_obj_get(const struct json_doc *d, uint32_t obj, const char *key, size_t keylen);
/* Key node of that member, for the splicer; JSON_NONE if absent. */
uint32_t json_obj_find_key(const struct json_doc *d, uint32_t obj, const char *key, size_t keylen);
/* Element idx of array arr, or JSON_NONE. */
uint32_t json_arr_get(const struct json_doc *d, uint32_t arr, uint32_t idx);

/* Does the (possibly escaped) string node i decode to exactly key[0..n)? */
bool json_str_eq(const struct json_doc *d, uint32_t i, const char *key, size_t n);
/* Decoded bytes of string node i (escapes resolved into the arena only if
 * needed). Not NUL-terminated when borrowed from the text. */
int json_get_string(struct json_doc *d, uint32_t i, struct rw_str *out);
/* Number node i as a correctly rounded double. -EINVAL if not a number. */
int json_get_number(const struct json_doc *d, uint32_t i, double *out);
/* Any node as an rw_value (objects/arrays: raw text in s). */
int json_get_value(struct json_doc *d, uint32_t i, struct rw_value *out);

/* JSON whitespace (space, tab, LF, CR) from p on: the first other byte (the
 * text's terminating NUL at the latest). */
static inline const char *json_skip_ws(const char *p)
{
    /* Most tokens follow each other directly in machine-written JSON. */
    if (__builtin_expect((unsigned char)*p > ' ', 1))
        return p;
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
        p++;
    return p;
}

/* Single tokens, validated exactly as json_scan validates them, for the
 * parsers of fixed shapes built on this scanner (kinesis_records.c). The
 * text must end in a NUL at end, as for json_scan.
 * A string whose opening quote is at p (p < end): the position after its
 * closing quote, or NULL if it is not a valid string; *flags (zeroed by the
 * caller) gets JSON_F_ESCAPED and JSON_F_NONASCII as for a node. */
const char *json_scan_string_token(const char *p, const char *end, uint8_t *flags);
/* A number at p: the position after it, or NULL; *flags gets JSON_F_FLOAT. */
const char *json_scan_number_token(const char *p, uint8_t *flags);

/* Decode the JSON number text p[0..n) (grammar already validated) to the
 * correctly rounded double. Exposed for the envelope scanner and tests. */
double json_parse_number(const char *p, size_t n);

/* Precompiled field paths: `a.b`, `items[0].sku`, `["key.with.dots"][2]`
 * (bracketed keys are JSON string literals, escapes allowed). */
enum json_step_kind { JSON_STEP_KEY, JSON_STEP_INDEX };
struct json_step {
    enum json_step_kind kind;
    uint32_t index;
    uint32_t keylen;
    bool plain;      /* key needs no escape in JSON (buf_json_plain): the
                      * splicer writes it as it is */
    const char *key; /* decoded; points into the path's own storage */
};
struct json_path {
    uint32_t n;
    struct json_step steps[];
};

/* Caller owns *out (json_path_free). -EINVAL on a malformed spec. */
int json_path_compile(const char *spec, struct json_path **out);
struct json_path *json_path_free(struct json_path *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct json_path *, json_path_free);

/* Node the path resolves to, or JSON_NONE. */
uint32_t json_path_find(const struct json_doc *d, const struct json_path *p);
/* 0 with *out filled (RW_MISSING when the path does not resolve), or -ENOMEM.
 * Goes through d->overlay when one is set. */
int json_lookup(struct json_doc *d, const struct json_path *p, struct rw_value *out);
/* The same from the scanned text alone, never through d->overlay. */
int json_lookup_text(struct json_doc *d, const struct json_path *p, struct rw_value *out);
