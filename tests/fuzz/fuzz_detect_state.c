/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Detector state snapshots against arbitrary bytes. The daemon restores its
 * detectors' per-key state at start from the state directory, where a full
 * disk, a crash during a copy or a hand may have damaged the file: loading
 * must refuse it cleanly, or leave states the detectors can run on.
 *
 * Input: a snapshot as detect_stage_save() writes it, for the stage
 * configured below (one detector of every type, keyed by "k"; the seed in
 * corpus/detect_state/ is one such snapshot after a few hundred records).
 * After the load, a record for each of the keys the seed holds is scored
 * and the rate keys are ticked, so a loaded state that breaks an update's
 * invariants (an index past its array, a time whose difference overflows,
 * a forest whose nodes point outside it) shows under the sanitizers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/buf.h"
#include "rarewatch/conf.h"
#include "rarewatch/conf_schema.h"
#include "rarewatch/detect_stage.h"
#include "rarewatch/json_scan.h"
#include "rarewatch/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small tables and forests: the target loads and scores, it does not
 * measure. A change here makes the seed a foreign snapshot: write a new
 * one (see seed_write). */
static const char conf[] =
    "[input]\ntimestamp_field = ts\n"
    "[detector.th]\ntype = threshold\nfield = x\nabove = 100\n"
    "[detector.z]\ntype = zscore\nfield = x\nkey = k\nmax_keys = 8\nmin_samples = 5\n"
    "[detector.zt]\ntype = zscore\nfield = x\nkey = k\nmax_keys = 8\nhalf_life = 1h\n"
    "[detector.q]\ntype = quantile\nfield = x\nkey = k\nmax_keys = 8\n"
    "[detector.r]\ntype = rate\nkey = k\nmax_keys = 8\ninterval = 10s\n"
    "[detector.rd]\ntype = rate\nkey = k\nmax_keys = 8\ninterval = 5m\ndaily = true\n"
    "[detector.c]\ntype = rare_category\nfield = c\nkey = k\nmax_keys = 8\nmin_samples = 5\n"
    "[detector.a]\ntype = auto\nfield = x\nkey = k\nmax_keys = 8\nmin_samples = 5\n"
    "[detector.f]\ntype = rcf\nfields = x, y\nkey = k\nmax_keys = 4\ntrees = 4\n"
    "sample_size = 16\nshingle_size = 2\nmin_samples = 5\n";

static struct rw_config *cfg;
static struct json_doc doc;
static struct arena arena;

/* One record through the stage: key k, event time ts, fields x, y and c. */
static void score(struct detect_stage *det, const char *key, double ts, double x, double y,
                  const char *c)
{
    char rec[160];
    int n = snprintf(rec, sizeof(rec), "{\"k\":\"%s\",\"ts\":%.3f,\"x\":%g,\"y\":%g,\"c\":\"%s\"}",
                     key, ts, x, y, c);
    arena_reset(&arena);
    if (n < 0 || (size_t)n >= sizeof(rec) || json_scan(&doc, rec, (size_t)n) < 0)
        abort();
    struct detect_record r = { .doc = &doc, .event_time = ts };
    _cleanup_buf_ struct buf out = BUF_INIT;
    struct detect_verdict v;
    if (detect_stage_eval(det, &r, &out, &v) < 0)
        abort();
}

/* RW_FUZZ_SEED_OUT=FILE: write the seed snapshot there (how
 * corpus/detect_state/seed was made): 600 records over ~100 minutes for
 * keys a, b and c, values with a daily-free drift and a few outliers. */
static void seed_write(const char *path)
{
    struct conf_diag diag = { 0 };
    struct detect_stage *det = NULL;
    if (detect_stage_new(cfg, &diag, &det) < 0)
        abort();
    static const char *const keys[] = { "a", "b", "c" };
    for (int i = 0; i < 600; i++)
        score(det, keys[i % 3], 1700000000.0 + i * 10.0, 50 + (i % 7) + (i % 97 == 0 ? 400 : 0),
              (double)(i % 5), i % 50 == 0 ? "rare" : "usual");
    if (detect_stage_save(det, path) < 0)
        abort();
    detect_stage_free(det);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cfg) {
        struct conf_diag diag = { .echo = stderr };
        if (conf_load_string(&rw_schema, "fuzz.conf", conf, &diag, &cfg) < 0)
            abort();
        conf_diag_clear(&diag);
        json_doc_init(&doc, &arena);
        if (getenv("RW_FUZZ_SEED_OUT"))
            seed_write(getenv("RW_FUZZ_SEED_OUT"));
    }
    struct conf_diag diag = { 0 };
    struct detect_stage *det = NULL;
    if (detect_stage_new(cfg, &diag, &det) < 0)
        abort();
    conf_diag_clear(&diag);
    if (detect_stage_load_buffer(det, data, size) >= 0) {
        /* The seed's keys, a new one, and times before, at and far past
         * the seed's (1,700,000,000 s onwards). */
        static const char *const keys[] = { "a", "b", "c", "new" };
        static const double at[] = { 1700000000.0, 1700000500.0, 1600000000.0, 4e9 };
        for (size_t t = 0; t < sizeof(at) / sizeof(at[0]); t++)
            for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
                score(det, keys[k], at[t], 50.0 + (at[t] - 1700000000.0) / 10, 3.0, keys[k]);
        struct rw_output out = { 0 };
        detect_stage_tick(det, 4e9 + 86400, &out);
        rw_output_free(&out);
    }
    detect_stage_free(det);
    return 0;
}
