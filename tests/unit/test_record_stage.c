/* SPDX-License-Identifier: Apache-2.0 */
/* Payload decoding per [input] format, event time, provenance splicing and
 * dead letters of the shared record stage (daemon and replay). */
#include "rarewatch/record_stage.h"

#include <math.h>

#include "rarewatch/conf_schema.h"
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

TAP_MAIN
