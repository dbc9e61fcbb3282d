/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The whole record path on one core, ours against a json-c DOM pipeline:
 *
 *  input   a GetRecords response of 10,000 records, each Data a ~300-byte
 *          JSON payload, base64-encoded;
 *  ours    the shard worker's code: kinesis_records_parse (base64 decode)
 *          -> the KPL check and input records as consumer.c builds them ->
 *          rs_process_batch (record_stage.c, as app.c's stage_process calls it:
 *          json_scan -> transforms filter, set, lookup in a 50-row table ->
 *          one zscore detector keyed per card -> the NDJSON line spliced
 *          with the detector fields and "_kinesis") -> fh_packer and the
 *          PutRecordBatch bodies with base64 Data, as sink_firehose.c builds
 *          them (500 records per request);
 *  json-c  tokener parse of the response, base64_decode (ours: the row
 *          compares the JSON work, not the decoders), tokener parse of each
 *          payload, the same filter/set/lookup on the DOM, the same
 *          exponentially weighted z-score per card (inline, in a plain hash
 *          table: no stripes, no locks, no calibration, so the baseline is
 *          if anything favoured), json_object_to_json_string_ext + snprintf
 *          for the added fields and the same "_kinesis" object (gmtime_r for
 *          its arrival time), base64.
 *
 * A third row runs ours without the transforms, to attribute their cost.
 * RW_BENCH_OUT=FILE writes the last response's PutRecordBatch bodies of the
 * full path (to compare two builds' output byte for byte); RW_BENCH_PROFILE=N
 * runs only the full path over N responses and prints ns/record per phase
 * (for perf; callgrind has --toggle-collect=ours).
 * Both write byte-comparable work: the same records pass the filter (checked).
 * Each row: median of 5 runs over the whole response, records/s per core,
 * and the bytes (and calls) allocated per record over those runs, after two
 * warm-up runs: malloc, calloc and realloc are interposed in this binary and
 * counted while a row is measured. Ours allocates only the batch struct, one
 * per response as the consumer makes it; its output buffers are those of
 * the previous, delivered batch (rw_batch_keep_output/use_output), and
 * everything per record is reused.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdatomic.h>

#include <json-c/json.h>

#include "rarewatch/firehose_pack.h"
#include "rarewatch/kpl.h"
#include "rarewatch/record_stage.h"
#include "rarewatch/sink.h"

#include "rarewatch/base64.h"
#include "rarewatch/conf_schema.h"
#include "rarewatch/detect_stage.h"
#include "rarewatch/kinesis_records.h"
#include "rarewatch/transform.h"

#define N 10000
#define RUNS 5
#define NCOUNTRY 50

static struct buf envelope, out;
/* "Sending" a PutRecordBatch body: its bytes are counted (and, with
 * RW_BENCH_OUT, kept in `dump`); the sink then builds the next request in
 * the same buffer (sink_firehose.c build_request), so a body, ~370 KB for
 * 500 records, stays in the cache instead of a response's ~7.5 MB of them. */
static struct buf dump;
static bool dumping;
static size_t sent;
static void send_body(void)
{
    sent += out.len;
    if (dumping && buf_append(&dump, out.data, out.len) < 0)
        abort();
    buf_reset(&out);
}
static char table_path[] = "/tmp/rw-bench-pipeline-XXXXXX";
static char countries[NCOUNTRY][3];
static const char *regions[] = { "eu", "na", "sa", "af", "as" };
static uint64_t kept_ours, kept_base;

/* ---- allocation counting: this binary's malloc, calloc and realloc
 * forward to glibc's and count while `counting` is set ---- */

void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t m);
void *__libc_realloc(void *p, size_t n);
static atomic_bool counting;
static atomic_ulong alloc_bytes, alloc_calls;

static void count(size_t n)
{
    if (atomic_load_explicit(&counting, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&alloc_bytes, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&alloc_calls, 1, memory_order_relaxed);
    }
}

void *malloc(size_t n)
{
    count(n);
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    count(n * m);
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    count(n);
    return __libc_realloc(p, n);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static void build_input(void)
{
    struct buf p = BUF_INIT;
    int fd = mkstemp(table_path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f)
        abort();
    fputs("code,region\n", f);
    for (int c = 0; c < NCOUNTRY; c++) {
        countries[c][0] = (char)('A' + c / 26);
        countries[c][1] = (char)('A' + c % 26);
        fprintf(f, "%s,%s\n", countries[c], regions[c % 5]);
    }
    fclose(f);
    srand(7);
    (void)buf_puts(&envelope, "{\"Records\":[");
    for (int i = 0; i < N; i++) {
        buf_reset(&p);
        (void)buf_printf(&p,
                         "{\"ts\":%d,\"card_id\":\"card-%05d\",\"amount\":%d.%02d,\"currency\":\"EUR\","
                         "\"status\":%d,\"country\":\"%s\",\"merchant\":{\"id\":\"m-%04d\",\"mcc\":5411,"
                         "\"name\":\"Corner Shop %d\"},\"items\":[{\"sku\":\"SKU-%06d\",\"qty\":%d}],"
                         "\"channel\":\"%s\",\"device\":{\"os\":\"android\",\"ver\":\"14.2\"},"
                         "\"note\":\"",
                         1795847400 + i, rand() % 500, 5 + rand() % 200, rand() % 100,
                         rand() % 20 ? 200 : 404, countries[rand() % NCOUNTRY], rand() % 1000, i % 97,
                         rand() % 1000000, 1 + rand() % 4, i % 3 ? "web" : "pos");
        while (p.len < 290)
            (void)buf_putc(&p, 'x');
        (void)buf_puts(&p, "\"}");
        if (i)
            (void)buf_putc(&envelope, ',');
        (void)buf_printf(&envelope,
                         "{\"SequenceNumber\":\"4959%046d\",\"ApproximateArrivalTimestamp\":1795847400.%03d,"
                         "\"PartitionKey\":\"pk-%d\",\"Data\":\"",
                         i, i % 1000, i % 64);
        (void)buf_put_base64(&envelope, p.data, p.len);
        (void)buf_puts(&envelope, "\"}");
    }
    (void)buf_puts(&envelope, "],\"NextShardIterator\":\"AAAA\",\"MillisBehindLatest\":0}");
    buf_free(&p);
}

/* ---- ours ---- */

static struct xf_stage *xf;
static struct detect_stage *det, *det_plain;
static struct rs_worker *rs, *rs_plain;
static bool with_transforms = true;
static struct kinesis_records kr;
static struct arena batch;
static struct rw_input_record *in;
static struct rw_ack_queue acks;
static struct rw_output spare;
static struct fh_packer packer;
static const char stream[] = "bench-stream", shard[] = "shardId-000000000000", fh_stream[] = "bench-delivery";

/* Per-phase time in RW_BENCH_PROFILE mode: GetRecords parse + decode,
 * the record stage, Firehose packing + encoding. */
static uint64_t phase_ns[3];

static void ours(void)
{
    uint64_t t0 = now_ns();
    /* consumer.c: one response into input records (no KPL aggregates here,
     * but the check is made as there). */
    arena_reset(&batch);
    if (kinesis_records_parse(&kr, envelope.data, envelope.len, &batch) < 0)
        abort();
    uint64_t t1 = now_ns();
    struct rw_provenance base = {
        .stream = { stream, (uint32_t)strlen(stream) },
        .shard_id = { shard, (uint32_t)strlen(shard) },
    };
    size_t n_in = 0;
    for (size_t i = 0; i < kr.n_records; i++) {
        const struct kinesis_record *r = &kr.records[i];
        if (kpl_is_aggregated((const uint8_t *)r->data, r->data_len))
            abort();
        struct rw_input_record *ir = &in[n_in++];
        ir->data = r->data;
        ir->len = r->data_len;
        ir->prov = base;
        ir->prov.sequence_number = r->sequence_number;
        ir->prov.partition_key = r->partition_key;
        ir->prov.sequence_number_plain = r->sequence_number_plain;
        ir->prov.partition_key_plain = r->partition_key_plain;
        ir->prov.arrival_time = isnan(r->arrival) ? 0 : r->arrival;
    }
    /* app.c stage_process, into a new batch per response as consumer.c
     * makes it (with the output buffers of a delivered one). */
    struct rw_batch *b = rw_batch_new(&acks);
    if (!b)
        abort();
    rw_batch_use_output(b, &spare);
    struct rw_output *rout = &b->out;
    if (rs_process_batch(with_transforms ? rs : rs_plain, with_transforms ? xf : NULL,
                         with_transforms ? det : det_plain, in, n_in, rout) < 0)
        abort();
    kept_ours = rout->n;
    uint64_t t2 = now_ns();
    /* sink_firehose.c send_pending + build_request: pack, then one
     * PutRecordBatch body per request (the bodies of one response end to
     * end in `out`, so its size is comparable with the baseline's). */
    fh_packer_reset(&packer);
    for (size_t j = 0; j < rout->n; j++)
        if (fh_packer_add(&packer, rout->lines.data + rout->meta[j].off, rout->meta[j].len, 0) < 0)
            abort();
    buf_reset(&out);
    buf_reset(&dump);
    sent = 0;
    for (size_t first = 0; first < packer.n_recs;) {
        size_t n = fh_packer_next_request(&packer, first, NULL);
        int r = buf_puts(&out, "{\"DeliveryStreamName\":");
        r = r ?: buf_put_json_string(&out, fh_stream, strlen(fh_stream));
        r = r ?: buf_puts(&out, ",\"Records\":[");
        for (size_t i = first; i < first + n && r >= 0; i++) {
            const struct fh_record *rec = &packer.recs[i];
            r = buf_puts(&out, i > first ? ",{\"Data\":\"" : "{\"Data\":\"");
            r = r ?: buf_put_base64(&out, packer.lines[rec->first].p, packer.lines[rec->first].len);
            r = r ?: buf_puts(&out, "\"}");
        }
        if ((r = r ?: buf_puts(&out, "]}")) < 0)
            abort();
        send_body();
        first += n;
    }
    /* Delivered: the last reference is dropped where the consumer drops it
     * (reap), which keeps the output buffers for the next response. */
    rw_batch_keep_output(b, &spare);
    rw_batch_unref(b);
    uint64_t t3 = now_ns();
    phase_ns[0] += t1 - t0;
    phase_ns[1] += t2 - t1;
    phase_ns[2] += t3 - t2;
}

/* ---- json-c ---- */

struct ew {
    char key[16];
    bool used;
    double n, mean, var;
};
static struct ew ews[1024];
static struct json_tokener *tok;
static uint8_t *decoded;
static char *linebuf;

static const char *region_of(const char *c)
{
    /* The same table, in a plain array: 50 two-letter codes. */
    for (int i = 0; i < NCOUNTRY; i++)
        if (streq(countries[i], c))
            return regions[i % 5];
    return NULL;
}

static double zscore(const char *key, double x)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    struct ew *e;
    for (size_t i = h & 1023;; i = (i + 1) & 1023) {
        e = &ews[i];
        if (!e->used || streq(e->key, key))
            break;
    }
    if (!e->used) {
        e->used = true;
        snprintf(e->key, sizeof(e->key), "%s", key);
    }
    double a = 1.0 / 200, d = x - e->mean;
    double z = e->n > 30 && e->var > 0 ? fabs(d) / sqrt(e->var) : 0;
    e->mean += a * d;
    e->var = (1 - a) * (e->var + a * d * d);
    e->n++;
    return z;
}

static void baseline(void)
{
    buf_reset(&out);
    sent = 0;
    json_tokener_reset(tok);
    struct json_object *env = json_tokener_parse_ex(tok, envelope.data, (int)envelope.len), *recs;
    if (!env || !json_object_object_get_ex(env, "Records", &recs))
        abort();
    kept_base = 0;
    size_t n = json_object_array_length(recs);
    for (size_t i = 0; i < n; i++) {
        struct json_object *r = json_object_array_get_idx(recs, i), *d, *sq, *pk, *at;
        if (!json_object_object_get_ex(r, "Data", &d) || !json_object_object_get_ex(r, "SequenceNumber", &sq) ||
            !json_object_object_get_ex(r, "PartitionKey", &pk) ||
            !json_object_object_get_ex(r, "ApproximateArrivalTimestamp", &at))
            abort();
        size_t dl = 0;
        if (base64_decode(json_object_get_string(d), (size_t)json_object_get_string_len(d), decoded, &dl) < 0)
            abort();
        json_tokener_reset(tok);
        struct json_object *o = json_tokener_parse_ex(tok, (const char *)decoded, (int)dl), *st, *am, *cc, *card;
        if (!o)
            abort();
        if (!json_object_object_get_ex(o, "status", &st) || json_object_get_int(st) == 404) {
            json_object_put(o);
            continue;
        }
        kept_base++;
        json_object_object_get_ex(o, "amount", &am);
        json_object_object_get_ex(o, "country", &cc);
        json_object_object_get_ex(o, "card_id", &card);
        double amount_eur = round(json_object_get_double(am) * 1.1 * 100) / 100;
        json_object_object_add(o, "amount_eur", json_object_new_double(amount_eur));
        const char *reg = region_of(json_object_get_string(cc));
        json_object_object_add(o, "region", json_object_new_string(reg ? reg : "unknown"));
        double z = zscore(json_object_get_string(card), amount_eur);
        double arr = json_object_get_double(at);
        time_t t = (time_t)arr;
        struct tm tm;
        gmtime_r(&t, &tm);
        int len = snprintf(linebuf, 8192,
                           ",\"anomaly_score\":%.17g,\"is_anomaly\":%s,\"anomalies\":[],\"_kinesis\":{\"stream\":\"%s\","
                           "\"shard_id\":\"%s\",\"sequence_number\":\"%s\",\"sub_sequence_number\":0,"
                           "\"partition_key\":\"%s\",\"arrival_time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"}}\n",
                           z / 10, z > 4 ? "true" : "false", stream, shard, json_object_get_string(sq),
                           json_object_get_string(pk), tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                           tm.tm_min, tm.tm_sec, (int)((arr - (double)t) * 1000 + 0.5) % 1000);
        const char *js = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        size_t jl = strlen(js);
        /* The object's text without its closing brace, then the added fields. */
        char full[8192];
        if (jl + (size_t)len >= sizeof(full))
            abort();
        memcpy(full, js, jl - 1);
        memcpy(full + jl - 1, linebuf, (size_t)len);
        (void)buf_put_base64(&out, full, jl - 1 + (size_t)len);
        json_object_put(o);
        if (kept_base % 500 == 0)
            send_body(); /* a request's worth, as ours */
    }
    send_body();
    json_object_put(env);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct row {
    double rate;            /* records/s per core, median */
    double bytes, calls;    /* allocated per record, steady state */
};

static struct row measure(void (*fn)(void))
{
    double r[RUNS];
    /* Warm-up: buffers and tables reach their steady size. Two runs: an
     * arena that needed several blocks in the first is replaced by one
     * block of twice the high-water mark at the start of the second. */
    fn();
    fn();
    atomic_store(&alloc_bytes, 0);
    atomic_store(&alloc_calls, 0);
    atomic_store(&counting, true);
    for (int i = 0; i < RUNS; i++) {
        uint64_t t0 = now_ns();
        fn();
        r[i] = (double)N / ((double)(now_ns() - t0) / 1e9);
    }
    atomic_store(&counting, false);
    qsort(r, RUNS, sizeof(double), cmp_double);
    return (struct row){ r[RUNS / 2], (double)atomic_load(&alloc_bytes) / (RUNS * N),
                         (double)atomic_load(&alloc_calls) / (RUNS * N) };
}

int main(void)
{
    build_input();
    char conf[1024];
    snprintf(conf, sizeof(conf),
             "[transform.not_found]\ntype = filter\nwhere = status != 404\n"
             "[transform.amount_eur]\ntype = set\nfield = amount_eur\nvalue = round(amount * 1.1, 2)\n"
             "[transform.region]\ntype = lookup\nfile = %s\nkey = code\non = country\nfields = region\n"
             "default_region = unknown\n"
             "[detector.amount]\ntype = zscore\nfield = amount_eur\nkey = card_id\n",
             table_path);
    struct conf_diag d = { .echo = stderr };
    struct rw_config *cfg = NULL;
    if (conf_load_string(&rw_schema, "bench.conf", conf, &d, &cfg) < 0 || xf_stage_new(cfg, &d, &xf) < 0 ||
        detect_stage_new(cfg, &d, &det) < 0)
        return 1;
    conf_diag_clear(&d);
    struct rw_config *cfg_plain = NULL;
    if (conf_load_string(&rw_schema, "plain.conf", "[detector.amount]\ntype = zscore\nfield = amount\nkey = card_id\n",
                         &d, &cfg_plain) < 0 ||
        detect_stage_new(cfg_plain, &d, &det_plain) < 0)
        return 1;
    conf_diag_clear(&d);
    rs = rs_worker_new(cfg, NULL);
    rs_plain = rs_worker_new(cfg_plain, NULL);
    kinesis_records_init(&kr);
    rw_ack_queue_init(&acks);
    struct fh_limits lim;
    fh_limits_default(&lim);
    fh_packer_init(&packer, &lim);
    in = calloc(N, sizeof(*in));
    tok = json_tokener_new();
    decoded = malloc(4096);
    linebuf = malloc(8192);
    if (!rs || !rs_plain || !in || !tok || !decoded || !linebuf)
        return 1;

    /* RW_BENCH_PROFILE=N: only the full path, N responses, nothing printed
     * (for perf record; callgrind has --toggle-collect=ours). */
    const char *prof = getenv("RW_BENCH_PROFILE");
    if (prof) {
        long runs = strtol(prof, NULL, 10);
        for (long i = 0; i < runs; i++)
            ours();
        double per = runs > 0 ? 1.0 / ((double)runs * N) : 0;
        printf("ns/record: parse+decode %.0f, record stage %.0f, pack+encode %.0f\n", phase_ns[0] * per,
               phase_ns[1] * per, phase_ns[2] * per);
        return 0;
    }
    with_transforms = false;
    struct row plain = measure(ours);
    with_transforms = true;
    /* RW_BENCH_OUT=FILE: the PutRecordBatch bodies of the last response, to
     * compare the output of two builds byte for byte (kept aside as they
     * are sent: a copy more per body in that mode). */
    const char *dump_path = getenv("RW_BENCH_OUT");
    dumping = dump_path != NULL;
    struct row a = measure(ours);
    size_t out_ours = sent;
    if (dump_path) {
        FILE *f = fopen(dump_path, "we");
        if (!f || fwrite(dump.data, 1, dump.len, f) != dump.len || fclose(f) != 0)
            return 1;
    }
    dumping = false;
    struct row b = measure(baseline);
    if (kept_ours != kept_base) {
        fprintf(stderr, "filter mismatch: %llu vs %llu\n", (unsigned long long)kept_ours,
                (unsigned long long)kept_base);
        return 1;
    }
    printf("pipeline: %d records of ~300 bytes per GetRecords response, %llu pass the filter\n", N,
           (unsigned long long)kept_ours);
    printf("  %-50s %10s %8s %16s\n", "", "records/s", "ratio", "alloc/record");
    printf("  %-50s %10.0f %7.2fx %7.1f B %6.4f\n", "ours: the shard worker's path (rs_process_batch, Firehose)",
           a.rate, a.rate / b.rate, a.bytes, a.calls);
    printf("  %-50s %10.0f %7.2fx %7.1f B %6.4f\n", "json-c DOM + snprintf (baseline)", b.rate, 1.0, b.bytes,
           b.calls);
    printf("  %-50s %10.0f %7.2fx %7.1f B %6.4f\n", "ours without the transforms (detector on amount)",
           plain.rate, plain.rate / b.rate, plain.bytes, plain.calls);
    printf("  (alloc/record: bytes and malloc calls per record in steady state; out: %zu bytes ours, %zu json-c;\n"
           "   the transforms cost %.0f ns/record)\n",
           out_ours, sent, 1e9 / a.rate - 1e9 / plain.rate);
    printf("  ratio ours/json-c: %.2fx\n", a.rate / b.rate);

    unlink(table_path);
    free(decoded);
    free(linebuf);
    free(in);
    json_tokener_free(tok);
    kinesis_records_free(&kr);
    rs_worker_free(rs);
    rs_worker_free(rs_plain);
    rw_output_free(&spare);
    rw_ack_queue_destroy(&acks);
    fh_packer_free(&packer);
    xf_stage_free(xf);
    detect_stage_free(det);
    detect_stage_free(det_plain);
    conf_unref(cfg);
    conf_unref(cfg_plain);
    arena_free(&batch);
    buf_free(&envelope);
    buf_free(&out);
    buf_free(&dump);
    return 0;
}
