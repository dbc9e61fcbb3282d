/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/record_stage.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/base64.h"
#include "rarewatch/conf_schema.h"
#include "rarewatch/csv.h"
#include "rarewatch/json_out.h"
#include "rarewatch/json_scan.h"
#include "rarewatch/strutil.h"
#include "rarewatch/window.h"

enum format { F_JSON, F_CSV, F_TEXT, F_BINARY };

struct rs_worker {
    enum format format;
    bool ndjson;
    char **columns;
    size_t n_columns;
    struct rs_options o;
    struct json_doc doc;
    struct json_path *ts_path;
    struct xf_worker *xw;
    struct buf conv; /* a payload turned into a JSON object */
    struct rs_counts c;
    double last_t;
    struct win_set *win; /* [window.NAME]s: see the end of this file */
    struct json_doc wdoc;
    /* The provenance's first part, the same for every record of the shard:
     * written once, copied per record (see append_provenance). */
    struct buf prov_head;
    struct buf prov_key; /* the stream and the shard id it was written for */
};

static int windows_observe(struct rs_worker *w, const struct xf_stage *xf, struct detect_stage *det,
                           struct json_doc *doc, double t, double arrival, struct rw_output *out);

struct rs_worker *rs_worker_new(const struct rw_config *cfg, const struct rs_options *o)
{
    struct rs_worker *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->format = (enum format)conf_enum(cfg, RWK_input_format);
    w->ndjson = conf_bool(cfg, RWK_input_ndjson);
    w->columns = strv_copy(conf_list(cfg, RWK_input_csv_columns));
    w->n_columns = strv_length(w->columns);
    if (o)
        w->o = *o;
    if (w->o.json_objects) {
        w->format = F_JSON;
        w->ndjson = false;
    }
    w->last_t = NAN;
    json_doc_init(&w->doc, NULL);
    json_doc_init(&w->wdoc, NULL);
    struct conf_diag d = { 0 };
    int rw = win_set_new(cfg, &d, &w->win);
    conf_diag_clear(&d); /* rw_config_validate reported them */
    if (rw < 0)
        return rs_worker_free(w);
    const char *tsf = conf_str(cfg, RWK_input_timestamp_field);
    if (!w->columns || (tsf && json_path_compile(tsf, &w->ts_path) < 0) || !(w->xw = xf_worker_new()))
        return rs_worker_free(w);
    return w;
}

struct rs_worker *rs_worker_free(struct rs_worker *w)
{
    if (w) {
        strv_free(w->columns);
        json_doc_free(&w->doc);
        json_path_free(w->ts_path);
        xf_worker_free(w->xw);
        buf_free(&w->conv);
        buf_free(&w->prov_head);
        buf_free(&w->prov_key);
        win_set_free(w->win);
        json_doc_free(&w->wdoc);
        free(w);
    }
    return NULL;
}

struct rs_counts rs_worker_counts(const struct rs_worker *w) { return w->c; }
double rs_last_event_time(const struct rs_worker *w) { return w->last_t; }

/* Finish a line begun with rw_output_begin_line() whose bytes so far are
 * the object without its closing brace (r: how appending them went). */
static int end_line(struct rs_worker *w, struct rw_output *out, struct rw_line_meta *m, int r, double t,
                    const struct detect_verdict *v)
{
    r = r ?: buf_puts(&out->lines, "}\n");
    if (r < 0)
        return r;
    w->c.anomalies += v->is_anomaly;
    m->event_time = t;
    m->is_anomaly = v->is_anomaly;
    m->anomaly_score = v->score;
    rw_output_end_line(out, m);
    return 0;
}

/* rw_provenance_append_json(), with its head copied from the last record's
 * when the stream and the shard are the same bytes (compared, not just the
 * pointers: those could be reused for other names). */
static int append_provenance(struct rs_worker *w, struct buf *b, const struct rw_provenance *p)
{
    size_t sl = p->stream.len, hl = p->shard_id.len;
    struct buf *k = &w->prov_key;
    if (!w->prov_head.len || k->len != sl + hl + 1 || !mem_eq(k->data, p->stream.p, sl) ||
        k->data[sl] != 0 || !mem_eq(k->data + sl + 1, p->shard_id.p, hl)) {
        buf_reset(&w->prov_head);
        buf_reset(k);
        int r = rw_provenance_append_head_json(&w->prov_head, p);
        r = r ?: buf_append(k, p->stream.p ? p->stream.p : "", sl);
        r = r ?: buf_putc(k, 0);
        r = r ?: buf_append(k, p->shard_id.p ? p->shard_id.p : "", hl);
        if (r < 0) {
            buf_reset(&w->prov_head);
            return r;
        }
    }
    int r = buf_append(b, w->prov_head.data, w->prov_head.len);
    return r ?: rw_provenance_append_tail_json(b, p);
}

/* One JSON object text (text[len] == 0). */
static int process_object(struct rs_worker *w, const struct xf_stage *xf, struct detect_stage *det,
                          int32_t input, const char *text, size_t len,
                          const struct rw_provenance *prov, struct rw_output *out)
{
    w->c.records++;
    if (json_scan(&w->doc, text, len) < 0 || w->doc.nodes[0].type != JSON_T_OBJECT) {
        w->c.failed++;
        return rw_output_deadletter(out, input, RW_STAGE_PARSE, "input",
                                    "payload is not a JSON object: %s at byte %zu",
                                    w->doc.err_msg ? w->doc.err_msg : "not an object", w->doc.err_off);
    }
    double arrival = prov ? prov->arrival_time : NAN;
    double t = arrival;
    struct rw_value tv;
    double et;
    if (w->ts_path && json_lookup(&w->doc, w->ts_path, &tv) == 0 && rw_value_timestamp(&tv, &et) == 0)
        t = et;
    w->last_t = t;

    /* The transforms; from here on `doc` is the record they made. */
    struct json_doc *doc = &w->doc;
    bool xfs = xf && (xf_stage_count(xf) || xf_stage_has_where(xf));
    if (xfs) {
        /* Windows read the record's nodes, not through the overlay. */
        /* Field by field: an initializer would zero its 200-byte reason
         * per record, which xf_apply sets itself. */
        struct xf_record xr;
        xr.doc = &w->doc;
        xr.event_time = t;
        xr.arrival_time = arrival;
        xr.defer = !win_set_count(w->win);
        int r = xf_apply(xf, w->xw, &xr, &doc);
        if (r < 0)
            return r;
        if (r == XF_FAIL) {
            w->c.failed++;
            return rw_output_deadletter(out, input, RW_STAGE_TRANSFORM, xr.failed_transform, "%s",
                                        xr.reason);
        }
        if (r == XF_DROP) {
            w->c.dropped++;
            if (!w->o.keep_dropped)
                return 0;
            const struct json_node *root = &doc->nodes[0];
            struct rw_line_meta *m = rw_output_begin_line(out, input);
            if (!m)
                return -ENOMEM;
            int rr = buf_append(&out->lines, doc->text + root->start, root->end - root->start);
            rr = rr ?: buf_putc(&out->lines, '\n');
            m->event_time = t;
            rw_output_end_line(out, m);
            return rr;
        }
    }

    struct rw_line_meta *m = rw_output_begin_line(out, input);
    if (!m)
        return -ENOMEM;
    /* Splice the detectors' fields and the provenance before the closing
     * brace: the record's own bytes are copied, not rebuilt. */
    bool empty;
    int r;
    if (xfs)
        r = xf_append_record(w->xw, &out->lines, &empty);
    else
        r = json_append_root_open(&out->lines, doc, &empty);
    struct detect_verdict v = { 0 };
    if (r == 0 && det) {
        size_t mark = out->lines.len;
        struct detect_record dr = { .doc = doc, .event_time = t,
                                    .where = xfs ? xf_detector_where : NULL, .ud = w->xw,
                                    .log = w->o.log_anomalies };
        r = detect_stage_eval(det, &dr, &out->lines, &v);
        if (r == 0 && empty && out->lines.len > mark) {
            out->lines.data[mark] = ' '; /* "{" needs no comma before the first field */
            empty = false;
        }
    }
    if (prov) {
        r = r ?: (empty ? 0 : buf_putc(&out->lines, ','));
        r = r ?: append_provenance(w, &out->lines, prov);
    }
    if ((r = end_line(w, out, m, r, t, &v)) < 0)
        return r;
    return win_set_count(w->win) ? windows_observe(w, xf, det, doc, t, arrival, out) : 0;
}

struct csv_ctx {
    struct rs_worker *w;
    const struct xf_stage *xf;
    struct detect_stage *det;
    int32_t input;
    const struct rw_provenance *prov;
    struct rw_output *out;
};

static int csv_row(char **fields, size_t n, void *ud)
{
    struct csv_ctx *c = ud;
    struct rs_worker *w = c->w;
    buf_reset(&w->conv);
    int r = csv_row_to_json(&w->conv, w->columns, w->n_columns, fields, n);
    if (r < 0)
        return r;
    return process_object(w, c->xf, c->det, c->input, w->conv.data, w->conv.len, c->prov, c->out);
}

int rs_process(struct rs_worker *w, const struct xf_stage *xf, struct detect_stage *det,
               int32_t input, const char *data, size_t len, const struct rw_provenance *prov,
               struct rw_output *out)
{
    int r;
    switch (w->format) {
    case F_JSON:
        if (!w->ndjson)
            return process_object(w, xf, det, input, data, len, prov, out);
        /* Several records in one payload: each line its own (json_scan
         * needs the text NUL-terminated, so each line is copied). */
        for (const char *p = data, *end = data + len; p < end;) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *le = nl ? nl : end;
            const char *s = p;
            while (s < le && (*s == ' ' || *s == '\t' || *s == '\r'))
                s++;
            if (s < le) {
                buf_reset(&w->conv);
                if ((r = buf_append(&w->conv, p, (size_t)(le - p))) < 0 ||
                    (r = process_object(w, xf, det, input, w->conv.data, w->conv.len, prov, out)) < 0)
                    return r;
            }
            p = nl ? nl + 1 : end;
        }
        return 0;
    case F_CSV: {
        struct csv_ctx c = { w, xf, det, input, prov, out };
        r = csv_parse_buffer(data, len, csv_row, &c);
        if (r == -EBADMSG) {
            w->c.failed++;
            return rw_output_deadletter(out, input, RW_STAGE_PARSE, "input",
                                        "payload is not a CSV row (unterminated quote)");
        }
        return r;
    }
    case F_TEXT:
    case F_BINARY:
        buf_reset(&w->conv);
        if (w->format == F_TEXT) {
            r = buf_puts(&w->conv, "{\"message\":");
            r = r ?: buf_put_json_string(&w->conv, data, len);
        } else {
            r = buf_puts(&w->conv, "{\"data_base64\":\"");
            r = r ?: buf_put_base64(&w->conv, data, len);
            r = r ?: buf_putc(&w->conv, '"');
        }
        r = r ?: buf_putc(&w->conv, '}');
        return r ?: process_object(w, xf, det, input, w->conv.data, w->conv.len, prov, out);
    }
    return -EINVAL;
}

int rs_process_batch(struct rs_worker *w, const struct xf_stage *xf, struct detect_stage *det,
                     const struct rw_input_record *in, size_t n, struct rw_output *out)
{
    /* The detectors' state lines of a record are fetched while the ones
     * before it are processed (detect_stage_prefetch), once the tables
     * have outgrown the cache. */
    bool ahead = det && w->format == F_JSON && detect_stage_lookahead(det);
    for (size_t i = 0; ahead && i < RS_LOOKAHEAD && i < n; i++)
        detect_stage_prefetch(det, in[i].data, in[i].len);
    for (size_t i = 0; i < n; i++) {
        if (ahead && i + RS_LOOKAHEAD < n)
            detect_stage_prefetch(det, in[i + RS_LOOKAHEAD].data, in[i + RS_LOOKAHEAD].len);
        int r = rs_process(w, xf, det, (int32_t)i, in[i].data, in[i].len, &in[i].prov, out);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- windows: closed windows become derived lines (input -1) ---- */

struct win_ctx {
    struct rs_worker *w;
    const struct xf_stage *xf;
    struct detect_stage *det;
    struct rw_output *out;
};

/* Derived records reach only the detectors that have a `where`: one
 * written for input records (a rate of events, a field's z-score) must not
 * count window records; a `where` such as `_window.name == "per_minute"`
 * selects them. */
static bool derived_where(void *ud, size_t detector)
{
    struct win_ctx *c = ud;
    return xf_detector_has_where(c->xf, detector) && xf_detector_where(c->w->xw, detector);
}

static int emit_window(void *ud, const char *json, size_t len, double end)
{
    struct win_ctx *c = ud;
    struct rs_worker *w = c->w;
    struct rw_output *out = c->out;
    struct rw_line_meta *m = rw_output_begin_line(out, -1);
    if (!m)
        return -ENOMEM;
    int r = buf_append(&out->lines, json, len - 1);
    struct detect_verdict v = { 0 };
    if (r == 0 && c->det && detect_stage_count(c->det)) {
        if (json_scan(&w->wdoc, json, len) < 0)
            return -EINVAL; /* our own output: cannot happen */
        xf_set_view(c->xf, w->xw, &w->wdoc, end);
        struct detect_record dr = { .doc = &w->wdoc, .event_time = end, .where = derived_where, .ud = c };
        r = detect_stage_eval(c->det, &dr, &out->lines, &v);
    }
    return end_line(w, out, m, r, end, &v);
}

static int windows_observe(struct rs_worker *w, const struct xf_stage *xf, struct detect_stage *det,
                           struct json_doc *doc, double t, double arrival, struct rw_output *out)
{
    struct win_ctx c = { w, xf, det, out };
    /* No clock read per record: idle_timeout counts from the next tick. */
    return win_observe(w->win, doc, t, arrival, NAN, emit_window, &c);
}

int rs_tick(struct rs_worker *w, const struct xf_stage *xf, struct detect_stage *det, double now,
            struct rw_output *out)
{
    if (!win_set_count(w->win))
        return 0;
    struct win_ctx c = { w, xf, det, out };
    return win_tick(w->win, now, emit_window, &c);
}

int rs_flush(struct rs_worker *w, const struct xf_stage *xf, struct detect_stage *det, struct rw_output *out)
{
    if (!win_set_count(w->win))
        return 0;
    struct win_ctx c = { w, xf, det, out };
    return win_flush(w->win, emit_window, &c);
}

const struct win_set *rs_windows(const struct rs_worker *w) { return w->win; }
