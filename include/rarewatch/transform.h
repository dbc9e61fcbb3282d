/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The analytics stage: the [transform.NAME] sections (applied in file
 * order) and the detectors' `where` predicates, compiled once per
 * configuration into a shared, read-only struct xf_stage; each shard worker
 * owns a struct xf_worker with its scratch (arena, overlay, output buffers),
 * so applying the stage to a record allocates nothing in steady state.
 *
 * Records are never rebuilt from a DOM. A transform's edits go into an
 * overlay (set/remove of key paths) that later transforms and expressions
 * read through; when the stage is done (or the overlay is full, or `keep`
 * runs), the overlay is spliced onto the original bytes (json_splice: the
 * untouched members are copied byte for byte) and the result is scanned
 * once more so later reads see one document. The record stage asks for the
 * last edits to stay pending (xf_record.defer): the detectors then read
 * through the overlay and the splice goes straight into the output line, so
 * such a record is scanned once. A record no transform changed is not
 * copied at all.
 *
 * Reload: the daemon compiles a new stage on SIGHUP (lookup tables are
 * re-read then) and swaps it in; workers need no change, xf_worker holds no
 * stage state between records.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rarewatch/conf.h"
#include "rarewatch/json_scan.h"

struct xf_stage;
struct xf_worker;

/* Compile cfg's transforms and detector `where` keys; every problem goes to
 * diag (expressions as FILE:LINE:COL: ...). -EINVAL when there was any. */
int xf_stage_new(const struct rw_config *cfg, struct conf_diag *diag, struct xf_stage **out);
struct xf_stage *xf_stage_free(struct xf_stage *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct xf_stage *, xf_stage_free)
size_t xf_stage_count(const struct xf_stage *s);

struct xf_worker *xf_worker_new(void);
struct xf_worker *xf_worker_free(struct xf_worker *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct xf_worker *, xf_worker_free)

enum xf_result {
    XF_KEEP = 0, /* go on to the detectors with *view */
    XF_DROP = 1, /* a filter said no; *view is the record as it was then */
    XF_FAIL = 2, /* a transform failed: dead-letter (failed_transform, reason) */
};

struct xf_record {
    struct json_doc *doc;  /* the scanned input record (root must be an object) */
    double event_time;     /* epoch seconds (NaN: unknown) */
    double arrival_time;
    /* in: on XF_KEEP, leave the last edits unspliced: *view then reads
     * through them (json_doc.overlay) and xf_append_record() writes the
     * record. Saves splicing into a buffer and scanning that again. */
    bool defer;
    /* out, after XF_FAIL */
    const char *failed_transform;
    char reason[200];
};

/* Apply the transforms. Returns enum xf_result or a negative errno. *view is
 * the document to read from now on: rec->doc when nothing changed, else a
 * document over the worker's own buffer, valid until the next xf_apply on w. */
int xf_apply(const struct xf_stage *s, struct xf_worker *w, struct xf_record *rec,
             struct json_doc **view);

/* After xf_apply on w: append the record's JSON text without its closing
 * brace to out (edits still pending are spliced in on the way); *empty:
 * the object has no members. The same bytes the view's text has. */
int xf_append_record(struct xf_worker *w, struct buf *out, bool *empty);

/* detect_record.where with ud = the worker, after xf_apply on the record:
 * does detector i's `where` hold (true when it has none)? */
bool xf_detector_where(void *ud, size_t detector);
bool xf_stage_has_where(const struct xf_stage *s);
/* For a record that did not come through xf_apply (a window's derived
 * record): make doc the worker's view, so xf_detector_where() reads it. */
void xf_set_view(const struct xf_stage *s, struct xf_worker *w, struct json_doc *doc, double event_time);
bool xf_detector_has_where(const struct xf_stage *s, size_t detector);

struct xf_stats {
    const char *name;
    const char *type;
    uint64_t applied, dropped, failed;
};
void xf_stage_stats(const struct xf_stage *s, size_t i, struct xf_stats *out);
