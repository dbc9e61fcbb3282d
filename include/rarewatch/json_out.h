/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Output records by splicing: the scanned record's original bytes are copied
 * in ranges, and only the members an edit touches are rewritten. No DOM is
 * built and untouched values (including their whitespace and number
 * spellings) go out byte for byte.
 *
 *   struct json_path *score, *seq, *ctry;   // compiled once:
 *   json_path_compile("anomaly_score", &score);
 *   json_path_compile("_kinesis.seq", &seq);     // creates "_kinesis":{...}
 *   json_path_compile("user.country", &ctry);
 *   struct json_edit ed[] = {
 *       JSON_EDIT_SET(score, RW_VALUE_NUM(0.93)),
 *       JSON_EDIT_SET(seq, RW_VALUE_STR(rec->sequence_number.p, rec->sequence_number.len)),
 *       JSON_EDIT_REMOVE(ctry),
 *   };
 *   r = json_splice(&out, &doc, ed, ELEMENTSOF(ed));   // appends to out
 *
 * Semantics, per edit path (key steps only; an index step is -EINVAL):
 * - set: the member is replaced in place (same position) or, if absent,
 *   appended to its object; missing parent objects are created; a parent that
 *   exists but is not an object is replaced by an object. Later edits of the
 *   same path win. Duplicate keys in the input are collapsed to the first
 *   position.
 * - remove (or set to RW_MISSING): every member with that key is dropped;
 *   removing what does not exist is a no-op.
 * - a set/remove of a path takes precedence over edits below it (set "a" and
 *   set "a.b" in one call: "a" is written as given).
 * - RW_OBJECT / RW_ARRAY values are inserted verbatim from value.s, which
 *   must be valid JSON (e.g. a value looked up from a scanned record).
 * - strings are escaped (invalid UTF-8 -> U+FFFD); numbers are written in the
 *   shortest form that reads back to the same double when a fixed-point form
 *   with <= 17 decimals exists, else %.17g; non-finite numbers as null.
 * The root of the record must be an object (-EINVAL otherwise).
 */
#include <stdbool.h>
#include <stddef.h>

#include "rarewatch/buf.h"
#include "rarewatch/json_scan.h"
#include "rarewatch/value.h"

#define JSON_SPLICE_MAX_EDITS 64

struct json_edit {
    const struct json_path *path;
    bool remove;
    struct rw_value value;
};

#define JSON_EDIT_SET(p, v) ((struct json_edit){ .path = (p), .remove = false, .value = (v) })
#define JSON_EDIT_REMOVE(p) ((struct json_edit){ .path = (p), .remove = true })

/* Append the scanned record d with edits applied to out. 0, -EINVAL (root
 * not an object, an index step, more than JSON_SPLICE_MAX_EDITS edits, a
 * path deeper than JSON_MAX_DEPTH), -ENOMEM. On error out->len is restored. */
int json_splice(struct buf *out, const struct json_doc *d, const struct json_edit *edits, size_t n);

/* Encoders for single values, also used for building NDJSON by hand. */
int buf_put_json_number(struct buf *b, double x);
/* The scanned root object's text without its closing brace, so that
 * fields can be appended to it; *empty: it has no members (the first
 * appended field then needs no comma). */
int json_append_root_open(struct buf *out, const struct json_doc *d, bool *empty);
/* The decimal digits of v (every uint64_t, where a double would round). */
int buf_put_u64(struct buf *b, uint64_t v);
int buf_put_json_value(struct buf *b, const struct rw_value *v);
/* Exactly the text of printf("%.17g", x) in the C locale (non-finite: null),
 * without printf's cost on the common range (integers below 1e17 and
 * 1e-4 <= |x| < 1e17: exact 128-bit arithmetic); printf elsewhere. For
 * output whose established format is %.17g (the detectors' scores). */
int buf_put_json_g17(struct buf *b, double x);
