/* SPDX-License-Identifier: Apache-2.0 */
/* Payload decoding per [input] format, event time, provenance splicing and
 * dead letters of the shared record stage (daemon and replay). */
#include "rarewatch/record_stage.h"

#include <math.h>

#include "rarewatch/conf_schema.h"
#include "rarewatch/detect_stage.h"
#include "rarewatch/transform.h"
#include "tap.h"

static struct rs_worker *worker(const char *conf, const struct rs_options *o)
{
    struct conf_diag d = { 0 };
    struct rw_config *c = NULL;
    if (conf_load_string(&rw_schema, "t.conf", conf, &d, &c) < 0) {
        conf_diag_clear(&d);
        return NULL;
    }
    struct rs_worker *w = rs_worker_new(c, o);
    conf_unref(c);
    conf_diag_clear(&d);
    return w;
}

static const struct rw_provenance prov = {
    .stream = { "s", 1 }, .shard_id = { "shardId-1", 9 }, .sequence_number = { "42", 2 },
    .partition_key = { "k", 1 }, .arrival_time = 1795842600.5,
};

static struct rw_output run(struct rs_worker *w, const char *payload, const struct rw_provenance *p)
{
    struct rw_output out = { 0 };
    CHECK_INT(rs_process(w, NULL, NULL, 7, payload, strlen(payload), p, &out), 0);
    return out;
}

TEST(json_object_keeps_its_bytes_and_gains_provenance)
{
    struct rs_worker *w = worker("[input]\ntimestamp_field = ts\n", NULL);
    struct rw_output o = run(w, "{\"ts\":\"2026-11-28T05:10:00Z\", \"a\" : [1, 2]}", &prov);
    CHECK_UINT(o.n, 1);
    CHECK_STR(o.lines.data, "{\"ts\":\"2026-11-28T05:10:00Z\", \"a\" : [1, 2],\"_kinesis\":{\"stream\":\"s\","
              "\"shard_id\":\"shardId-1\",\"sequence_number\":\"42\",\"sub_sequence_number\":0,"
              "\"partition_key\":\"k\",\"arrival_time\":\"2026-11-28T05:10:00.500Z\"}}\n");
    CHECK_NEAR(o.meta[0].event_time, 1795842600, 0);
    CHECK_INT(o.meta[0].input, 7);
    rw_output_free(&o);
    /* Without a timestamp field the arrival time is the event time. */
    o = run(w, "{}", &prov);
    CHECK(o.lines.data && strncmp(o.lines.data, "{\"_kinesis\":", 12) == 0);
    CHECK_NEAR(o.meta[0].event_time, prov.arrival_time, 0);
    rw_output_free(&o);
    /* The stream and shard part is written once and copied: another shard
     * (same length, other bytes) and another stream must show. */
    struct rw_provenance p2 = prov;
    p2.shard_id = (struct rw_str){ "shardId-2", 9 };
    o = run(w, "{}", &p2);
    CHECK_CONTAINS(o.lines.data, "\"shard_id\":\"shardId-2\"");
    rw_output_free(&o);
    p2.stream = (struct rw_str){ "t\"", 2 };
    o = run(w, "{}", &p2);
    CHECK_CONTAINS(o.lines.data, "{\"_kinesis\":{\"stream\":\"t\\\"\",\"shard_id\":\"shardId-2\",");
    rw_output_free(&o);
    o = run(w, "{}", &prov);
    CHECK_CONTAINS(o.lines.data, "{\"_kinesis\":{\"stream\":\"s\",\"shard_id\":\"shardId-1\",");
    rw_output_free(&o);
    /* Not an object: a dead letter naming the stage and the position. */
    o = run(w, "[1,2]", &prov);
    CHECK_UINT(o.n, 0);
    CHECK_UINT(o.n_dl, 1);
    CHECK_INT(o.dl[0].stage, RW_STAGE_PARSE);
    CHECK_INT(o.dl[0].input, 7);
    rw_output_free(&o);
    o = run(w, "{\"a\":", NULL);
    CHECK_UINT(o.n_dl, 1);
    CHECK_CONTAINS(o.dl[0].reason, "not a JSON object");
    CHECK_UINT(rs_worker_counts(w).failed, 2);
    rw_output_free(&o);
    rs_worker_free(w);
}

TEST(ndjson_payload_is_several_records)
{
    struct rs_worker *w = worker("[input]\nndjson = true\n", NULL);
    struct rw_output o = run(w, "{\"n\":1}\n\n{\"n\":2}\r\nbad\n{\"n\":3}", NULL);
    CHECK_UINT(o.n, 3);
    CHECK_STR(o.lines.data, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
    CHECK_UINT(o.n_dl, 1);
    rw_output_free(&o);
    rs_worker_free(w);
}

TEST(csv_text_binary)
{
    struct rs_worker *w = worker("[input]\nformat = csv\ncsv_columns = card, zip, amount\n", NULL);
    struct rw_output o = run(w, "4411,0123,12.50", NULL);
    CHECK_STR(o.lines.data, "{\"card\":4411,\"zip\":\"0123\",\"amount\":12.50}\n");
    rw_output_free(&o);
    o = run(w, "\"a, b\",1", NULL);
    CHECK_STR(o.lines.data, "{\"card\":\"a, b\",\"zip\":1}\n");
    rw_output_free(&o);
    o = run(w, "\"open,1", NULL);
    CHECK_UINT(o.n_dl, 1);
    rw_output_free(&o);
    rs_worker_free(w);

    w = worker("[input]\nformat = text\n", NULL);
    o = run(w, "GET /x \"q\"", NULL);
    CHECK_STR(o.lines.data, "{\"message\":\"GET /x \\\"q\\\"\"}\n");
    rw_output_free(&o);
    rs_worker_free(w);

    w = worker("[input]\nformat = binary\n", NULL);
    o = run(w, "hi", &prov);
    CHECK(o.lines.data && strncmp(o.lines.data, "{\"data_base64\":\"aGk=\",\"_kinesis\":", 33) == 0);
    rw_output_free(&o);
    rs_worker_free(w);

    /* replay reads JSON records whatever the daemon's [input] format is. */
    w = worker("[input]\nformat = csv\ncsv_columns = a\n", &(struct rs_options){ .json_objects = true });
    o = run(w, "{\"a\":1}", NULL);
    CHECK_STR(o.lines.data, "{\"a\":1}\n");
    rw_output_free(&o);
    rs_worker_free(w);
}

/* The record stage leaves the transforms' last edits pending: the detectors
 * read through the overlay and the edits are spliced straight into the
 * line. Each line must be what splicing, scanning the result and reading
 * that (xf_apply without defer) gives, detector fields included. */
static const char *const defer_confs[] = {
    "[transform.eur]\ntype = set\nfield = amount_eur\nvalue = round(amount * 1.1, 2)\n"
    "[detector.z]\ntype = zscore\nfield = amount_eur\nkey = card\nmin_samples = 2\n",
    /* Nested sets, a rename and a remove; the detector's key and where read
     * inside an object with edited members (the overlay splices first). */
    "[transform.n]\ntype = set\nfield = m.score\nvalue = amount * 2\n"
    "[transform.r]\ntype = rename\nfrom = card\nto = who.card\n"
    "[transform.x]\ntype = remove\nfields = note\n"
    "[detector.z]\ntype = zscore\nfield = m.score\nkey = who.card\nmin_samples = 2\nwhere = m.score > 3\n"
    "[detector.c]\ntype = rare_category\nfield = who\nmin_samples = 2\n",
    "[transform.d]\ntype = default\nfield = amount\nvalue = 7\n"
    "[transform.c]\ntype = cast\nfield = status\nto = string\n"
    "[transform.f]\ntype = filter\nwhere = status != \"404\"\n"
    "[detector.t]\ntype = threshold\nfield = amount\nabove = 10\nkey = status\n"
    "[detector.q]\ntype = rare_category\nfield = status\nmin_samples = 2\n",
    /* Everything removed: an empty object before the detector fields. */
    "[transform.x]\ntype = remove\nfields = card, amount, status, note, m, \"we\\\"ird\"\n"
    "[detector.t]\ntype = threshold\nfield = amount\nabove = 10\n",
    "[transform.k]\ntype = keep\nfields = card, amount\n"
    "[transform.s]\ntype = set\nfield = k2\nvalue = card + \"!\"\n"
    "[detector.z]\ntype = zscore\nfield = amount\nkey = k2\nmin_samples = 2\n",
};
static const char *const defer_records[] = {
    "{\"card\":\"c1\",\"amount\":12.5,\"status\":200,\"note\":\"x\"}",
    "  { \"card\" : \"c2\", \"amount\" : 3, \"m\" : {\"a\": 1, \"score\": 0}, \"status\": 404 }  ",
    "{\"amount\":1e2,\"card\":\"c1\",\"m\":[1,2],\"we\\\"ird\":{\"x\":\"\\u00e9\"}}",
    "{\"card\":\"c\\u0031\",\"amount\":-4,\"amount\":5,\"status\":\"404\"}",
    "{}",
    "{\"card\":\"c3\",\"amount\":\"12\",\"who\":{\"card\":\"old\"},\"m\":{\"score\":{\"deep\":1}}}",
    "{\"card\":\"c1\",\"amount\":12.6,\"status\":500,\"note\":null,\"m\":{}}",
};

static struct xf_stage *defer_stage(const char *conf, struct detect_stage **det, struct detect_stage **det2,
                                    struct rw_config **cfg)
{
    struct conf_diag d = { .echo = stderr };
    struct xf_stage *xf = NULL;
    if (conf_load_string(&rw_schema, "t.conf", conf, &d, cfg) < 0 || xf_stage_new(*cfg, &d, &xf) < 0 ||
        detect_stage_new(*cfg, &d, det) < 0 || detect_stage_new(*cfg, &d, det2) < 0)
        xf = xf_stage_free(xf);
    conf_diag_clear(&d);
    return xf;
}

TEST(deferred_edits_write_what_splice_and_rescan_write)
{
    for (size_t c = 0; c < ELEMENTSOF(defer_confs); c++) {
        struct detect_stage *det = NULL, *det2 = NULL;
        struct rw_config *cfg = NULL;
        struct xf_stage *xf = defer_stage(defer_confs[c], &det, &det2, &cfg);
        CHECK(xf != NULL);
        if (!xf)
            continue;
        struct rs_worker *w = rs_worker_new(cfg, NULL);
        struct xf_worker *xw = xf_worker_new();
        struct json_doc doc;
        json_doc_init(&doc, NULL);
        struct buf want = BUF_INIT;
        struct rw_output o = { 0 };
        size_t n_want = 0;
        /* Three rounds, so the detectors have samples and score. */
        for (int round = 0; round < 3; round++)
            for (size_t i = 0; i < ELEMENTSOF(defer_records); i++) {
                const char *t = defer_records[i];
                CHECK_INT(rs_process(w, xf, det, (int32_t)i, t, strlen(t), &prov, &o), 0);
                CHECK_INT(json_scan(&doc, t, strlen(t)), 0);
                struct xf_record xr = { .doc = &doc, .event_time = prov.arrival_time,
                                        .arrival_time = prov.arrival_time };
                struct json_doc *view;
                int r = xf_apply(xf, xw, &xr, &view);
                CHECK(r >= 0);
                if (r != XF_KEEP)
                    continue;
                n_want++;
                const struct json_node *root = &view->nodes[0];
                size_t mark = want.len;
                CHECK_INT(buf_append(&want, view->text + root->start, root->end - 1 - root->start), 0);
                bool empty = json_first_child(view, 0) == JSON_NONE;
                struct detect_record dr = { .doc = view, .event_time = prov.arrival_time,
                                            .where = xf_detector_where, .ud = xw };
                struct detect_verdict v = { 0 };
                size_t dmark = want.len;
                CHECK_INT(detect_stage_eval(det2, &dr, &want, &v), 0);
                if (empty && want.len > dmark) {
                    want.data[dmark] = ' ';
                    empty = false;
                }
                CHECK_INT(buf_puts(&want, empty ? "" : ","), 0);
                CHECK_INT(rw_provenance_append_json(&want, &prov), 0);
                CHECK_INT(buf_puts(&want, "}\n"), 0);
                (void)mark;
            }
        CHECK_UINT(o.n, n_want);
        CHECK_STR(o.lines.data ? o.lines.data : "", want.data ? want.data : "");
        if (c == 1) /* the case that reads inside an edited object scored something */
            CHECK_CONTAINS(o.lines.data ? o.lines.data : "", "anomaly_score");
        rw_output_free(&o);
        buf_free(&want);
        json_doc_free(&doc);
        xf_worker_free(xw);
        rs_worker_free(w);
        detect_stage_free(det);
        detect_stage_free(det2);
        xf_stage_free(xf);
        conf_unref(cfg);
    }
}

TAP_MAIN
