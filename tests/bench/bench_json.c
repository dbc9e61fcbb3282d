/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The record path's JSON work, ours against json-c on the same inputs:
 *
 *  payload    scan a ~300-byte record and look up 3 fields (one nested, one
 *             in an array); json-c: tokener parse (tokener reused) + the same
 *             3 lookups + free.
 *  envelope   a GetRecords body of 10,000 records: scan it, base64-decode
 *             every Data, read PartitionKey/SequenceNumber/arrival; json-c:
 *             parse + walk + the same base64 decoder (so the row compares the
 *             JSON work, not the decoders).
 *  splice     scan a record and write it with 3 added fields (a number, a
 *             string, and a nested "_kinesis":{"seq":...}); json-c: parse,
 *             add the 3 objects, serialise (PLAIN) into the output buffer.
 *  splice only / number: the output side alone, for attribution.
 *
 * Each row: median of 9 runs of >= 20 ms each, ns per record.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "rarewatch/base64.h"
#include "rarewatch/json_out.h"
#include "rarewatch/json_scan.h"
#include "rarewatch/kinesis_records.h"

#define RUNS 9
#define RUN_NS (20 * 1000 * 1000)
#define NPAYLOADS 1024
#define NENVELOPE 10000

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median over RUNS of ns per record; fn processes `per_call` records. */
static double measure(void (*fn)(void), size_t per_call)
{
    double r[RUNS];
    fn(); /* warm caches and grow buffers */
    for (int i = 0; i < RUNS; i++) {
        uint64_t t0 = now_ns(), t;
        size_t calls = 0;
        do {
            fn();
            calls++;
        } while ((t = now_ns()) - t0 < RUN_NS);
        r[i] = (double)(t - t0) / (double)(calls * per_call);
    }
    qsort(r, RUNS, sizeof(r[0]), cmp_double);
    return r[RUNS / 2];
}

static struct buf payloads[NPAYLOADS];
static struct buf envelope;
static volatile double sink_d;
static volatile size_t sink_n;

static void make_inputs(void)
{
    static const char *countries[] = { "DE", "FR", "US", "GB", "NL", "ES", "IT", "PL" };
    static const char *mcc[] = { "5411", "5812", "5999", "4111", "7011" };
    uint32_t x = 2463534242u;
    for (int i = 0; i < NPAYLOADS; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        struct buf *b = &payloads[i];
        int r = buf_printf(b,
            "{\"txn_id\":\"tx-%08x-%04x\",\"ts\":\"2026-11-28T05:%02u:%02u.%03uZ\",\"amount\":%u.%02u,"
            "\"currency\":\"EUR\",\"card\":{\"bin\":\"4%05u\",\"last4\":\"%04u\"},"
            "\"merchant\":{\"id\":\"m-%u\",\"mcc\":\"%s\",\"country\":\"%s\",\"city\":\"Bonn\"},"
            "\"channel\":\"ecom\",\"items\":[{\"sku\":\"SKU-%u\",\"qty\":%u},{\"sku\":\"SKU-%u\",\"qty\":1}],"
            "\"3ds\":%s,\"risk\":null,\"ip\":\"10.%u.%u.%u\"}",
            x, x & 0xffff, x % 60, (x >> 8) % 60, x % 1000, x % 5000, (x >> 3) % 100,
            x % 100000, (x >> 5) % 10000, x % 977, mcc[x % 5], countries[(x >> 9) % 8],
            x % 9973, 1 + x % 3, (x >> 4) % 9973, (x & 1) ? "true" : "false",
            x & 255, (x >> 8) & 255, (x >> 16) & 255);
        if (r < 0)
            abort();
    }
    if (buf_puts(&envelope, "{\"Records\":[") < 0)
        abort();
    for (int i = 0; i < NENVELOPE; i++) {
        const struct buf *p = &payloads[i % NPAYLOADS];
        if (buf_printf(&envelope, "%s{\"SequenceNumber\":\"4959033827149025660855969253836157109592157598913%05d\","
                                  "\"ApproximateArrivalTimestamp\":1764306600.%03d,\"Data\":\"",
                       i ? "," : "", i, i % 1000) < 0 ||
            buf_put_base64(&envelope, p->data, p->len) < 0 ||
            buf_printf(&envelope, "\",\"PartitionKey\":\"user-%d\",\"EncryptionType\":\"NONE\"}", i % 5000) < 0)
            abort();
    }
    if (buf_puts(&envelope, "],\"NextShardIterator\":\"AAAAAAAAAAHsW8zCWf9164uy8Epue6WS3w6wmj4a4USt+"
                            "CNvMd6uXQ+HL5vAJMznqqC0DLKsIjuoiTi1BpT6nW0LN2M2D56zM5H8anHm30Gbri9ua+qaGgj\","
                            "\"MillisBehindLatest\":0}") < 0)
        abort();
}

/* ---- payload: scan + 3 lookups ---- */
static struct json_doc doc;
static struct json_path *p_amount, *p_country, *p_sku;

static void ours_payload(void)
{
    double acc = 0;
    size_t n = 0;
    for (int i = 0; i < NPAYLOADS; i++) {
        struct rw_value a, c, s;
        if (json_scan(&doc, payloads[i].data, payloads[i].len) < 0 || json_lookup(&doc, p_amount, &a) < 0 ||
            json_lookup(&doc, p_country, &c) < 0 || json_lookup(&doc, p_sku, &s) < 0)
            abort();
        acc += a.num;
        n += c.s.len + s.s.len;
    }
    sink_d = acc;
    sink_n = n;
}

static struct json_tokener *tok;

static void jsonc_payload(void)
{
    double acc = 0;
    size_t n = 0;
    for (int i = 0; i < NPAYLOADS; i++) {
        json_tokener_reset(tok);
        struct json_object *o = json_tokener_parse_ex(tok, payloads[i].data, (int)payloads[i].len), *a, *m, *c, *it,
                           *s;
        if (!o || !json_object_object_get_ex(o, "amount", &a) || !json_object_object_get_ex(o, "merchant", &m) ||
            !json_object_object_get_ex(m, "country", &c) || !json_object_object_get_ex(o, "items", &it) ||
            !json_object_object_get_ex(json_object_array_get_idx(it, 0), "sku", &s))
            abort();
        acc += json_object_get_double(a);
        n += strlen(json_object_get_string(c)) + strlen(json_object_get_string(s));
        json_object_put(o);
    }
    sink_d = acc;
    sink_n = n;
}

/* ---- envelope + base64 ---- */
static struct kinesis_records kr;
static struct arena arena;

static void ours_envelope(void)
{
    arena_reset(&arena);
    if (kinesis_records_parse(&kr, envelope.data, envelope.len, &arena) < 0 || kr.n_records != NENVELOPE)
        abort();
    sink_n = kr.records[NENVELOPE - 1].data_len;
}

static uint8_t decoded[4096];

static void jsonc_envelope(void)
{
    json_tokener_reset(tok);
    struct json_object *o = json_tokener_parse_ex(tok, envelope.data, (int)envelope.len), *recs;
    if (!o || !json_object_object_get_ex(o, "Records", &recs))
        abort();
    size_t n = json_object_array_length(recs), total = 0;
    double acc = 0;
    for (size_t i = 0; i < n; i++) {
        struct json_object *r = json_object_array_get_idx(recs, i), *d, *pk, *sq, *ts;
        if (!json_object_object_get_ex(r, "Data", &d) || !json_object_object_get_ex(r, "PartitionKey", &pk) ||
            !json_object_object_get_ex(r, "SequenceNumber", &sq) ||
            !json_object_object_get_ex(r, "ApproximateArrivalTimestamp", &ts))
            abort();
        size_t outlen;
        if (base64_decode(json_object_get_string(d), (size_t)json_object_get_string_len(d), decoded, &outlen) < 0)
            abort();
        total += outlen + (size_t)json_object_get_string_len(pk) + (size_t)json_object_get_string_len(sq);
        acc += json_object_get_double(ts);
    }
    json_object_put(o);
    sink_n = total;
    sink_d = acc;
}

/* ---- splice 3 added fields ---- */
static struct buf out;
static struct json_path *p_score, *p_det, *p_seq;

static void splice_one(int i)
{
    struct json_edit ed[3] = {
        JSON_EDIT_SET(p_score, RW_VALUE_NUM(0.93)),
        JSON_EDIT_SET(p_det, RW_VALUE_STR("rate", 4)),
        JSON_EDIT_SET(p_seq, RW_VALUE_STR("49590338271490256608559692538361571095921575989136588898", 56)),
    };
    if (json_splice(&out, &doc, ed, 3) < 0 || buf_putc(&out, '\n') < 0)
        abort();
    (void)i;
}

static void ours_splice(void)
{
    buf_reset(&out);
    for (int i = 0; i < NPAYLOADS; i++) {
        if (json_scan(&doc, payloads[i].data, payloads[i].len) < 0)
            abort();
        splice_one(i);
    }
    sink_n = out.len;
}

static void ours_splice_only(void)
{
    /* doc holds the last payload from a previous scan. */
    buf_reset(&out);
    for (int i = 0; i < NPAYLOADS; i++)
        splice_one(i);
    sink_n = out.len;
}

static void jsonc_splice(void)
{
    buf_reset(&out);
    for (int i = 0; i < NPAYLOADS; i++) {
        json_tokener_reset(tok);
        struct json_object *o = json_tokener_parse_ex(tok, payloads[i].data, (int)payloads[i].len);
        if (!o)
            abort();
        struct json_object *k = json_object_new_object();
        json_object_object_add(o, "anomaly_score", json_object_new_double(0.93));
        json_object_object_add(o, "detector", json_object_new_string("rate"));
        json_object_object_add(k, "seq", json_object_new_string("49590338271490256608559692538361571095921575989136588898"));
        json_object_object_add(o, "_kinesis", k);
        size_t len;
        const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
        if (buf_append(&out, s, len) < 0 || buf_putc(&out, '\n') < 0)
            abort();
        json_object_put(o);
    }
    sink_n = out.len;
}

static void jsonc_splice_only(void)
{
    /* Parse once outside the loop is not possible with added members being
     * replaced each time, so this re-adds into one parsed object. */
    static struct json_object *o;
    if (!o)
        o = json_tokener_parse(payloads[0].data);
    buf_reset(&out);
    for (int i = 0; i < NPAYLOADS; i++) {
        struct json_object *k = json_object_new_object();
        json_object_object_add(o, "anomaly_score", json_object_new_double(0.93));
        json_object_object_add(o, "detector", json_object_new_string("rate"));
        json_object_object_add(k, "seq", json_object_new_string("49590338271490256608559692538361571095921575989136588898"));
        json_object_object_add(o, "_kinesis", k);
        size_t len;
        const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
        if (buf_append(&out, s, len) < 0 || buf_putc(&out, '\n') < 0)
            abort();
    }
    sink_n = out.len;
}

/* ---- number output ---- */
static const double numbers[8] = { 0.93, 12.5, 1764306600.123, 0.0001234, 3.14159, 42, 99.99, 0.5 };

static void ours_number(void)
{
    buf_reset(&out);
    for (int i = 0; i < NPAYLOADS; i++)
        if (buf_put_json_number(&out, numbers[i & 7]) < 0)
            abort();
    sink_n = out.len;
}

static void snprintf_number(void)
{
    buf_reset(&out);
    for (int i = 0; i < NPAYLOADS; i++)
        if (buf_printf(&out, "%.17g", numbers[i & 7]) < 0)
            abort();
    sink_n = out.len;
}

static void row(const char *name, double ours, double base, const char *base_name)
{
    printf("%-26s %12.1f %14.1f %9.1fx   (%s)\n", name, ours, base, base / ours, base_name);
}

int main(void)
{
    make_inputs();
    json_doc_init(&doc, NULL);
    kinesis_records_init(&kr);
    tok = json_tokener_new_ex(64);
    if (!tok || json_path_compile("amount", &p_amount) < 0 || json_path_compile("merchant.country", &p_country) < 0 ||
        json_path_compile("items[0].sku", &p_sku) < 0 || json_path_compile("anomaly_score", &p_score) < 0 ||
        json_path_compile("detector", &p_det) < 0 || json_path_compile("_kinesis.seq", &p_seq) < 0)
        abort();
    size_t avg = 0;
    for (int i = 0; i < NPAYLOADS; i++)
        avg += payloads[i].len;
    printf("inputs: %d payloads of %zu bytes on average; envelope %zu bytes, %d records\n", NPAYLOADS,
           avg / NPAYLOADS, envelope.len, NENVELOPE);
    printf("%-26s %12s %14s %10s\n", "case", "ns/record", "baseline ns", "speedup");

    double o, b;
    o = measure(ours_payload, NPAYLOADS);
    b = measure(jsonc_payload, NPAYLOADS);
    row("payload scan+3 lookups", o, b, "json-c");
    o = measure(ours_envelope, NENVELOPE);
    b = measure(jsonc_envelope, NENVELOPE);
    row("envelope+base64", o, b, "json-c + same base64");
    o = measure(ours_splice, NPAYLOADS);
    b = measure(jsonc_splice, NPAYLOADS);
    row("scan+splice 3 fields", o, b, "json-c parse+add+print");
    o = measure(ours_splice_only, NPAYLOADS);
    b = measure(jsonc_splice_only, NPAYLOADS);
    row("splice 3 fields only", o, b, "json-c add+print");
    o = measure(ours_number, NPAYLOADS);
    b = measure(snprintf_number, NPAYLOADS);
    row("number out", o, b, "snprintf %.17g");

    json_tokener_free(tok);
    return 0;
}
