/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/conf_schema.h"

#include <errno.h>
#include <time.h>

#include "rarewatch/detect_stage.h"
#include "rarewatch/strutil.h"
#include "rarewatch/transform.h"
#include "rarewatch/window.h"

static const struct conf_section_def sections[] = {
#define SECTION(n, named_, tk, d) { .name = #n, .named = named_, .type_key = tk, .doc = d },
#include "rarewatch/conf_keys.def"
};

static const struct conf_key keys[] = {
#define KEY(sec, n, t, d, mn, mx, ev, ty, fl, doc_) \
    { .section = #sec, .name = #n, .type = t, .def = d, .min = mn, .max = mx, \
      .enum_values = ev, .types = ty, .flags = fl, .doc = doc_ },
#include "rarewatch/conf_keys.def"
};

const struct conf_schema rw_schema = {
    .sections = sections,
    .n_sections = ELEMENTSOF(sections),
    .keys = keys,
    .n_keys = ELEMENTSOF(keys),
};

static void need(struct conf_diag *d, const struct conf_value *at, const char *path, unsigned *errors,
                 const char *msg)
{
    conf_diag_add(d, at->file ? at->file : path, at->line, "%s", msg);
    (*errors)++;
}

/* Checks across keys that the key table cannot express. */
int rw_config_validate(struct rw_config *cfg, struct conf_diag *diag)
{
    unsigned errors = 0;
    const struct conf_value *stream = conf_get(cfg, RWK_kinesis_stream);
    /* Metrics are not records: CloudWatch alone is no sink. */
    bool firehose = conf_str(cfg, RWK_firehose_anomalies_delivery_stream) ||
                    (conf_str(cfg, RWK_firehose_delivery_stream) && conf_enum(cfg, RWK_firehose_forward) != 2);
    if (conf_str(cfg, RWK_kinesis_stream) && !conf_str(cfg, RWK_output_directory) && !firehose)
        need(diag, stream, cfg->path, &errors,
             "[kinesis] stream is set but no sink is: set [output] directory or [firehose] delivery_stream");
    if (conf_enum(cfg, RWK_input_format) == 1 && strv_length(conf_list(cfg, RWK_input_csv_columns)) == 0)
        need(diag, conf_get(cfg, RWK_input_format), cfg->path, &errors,
             "[input] format = csv needs csv_columns (CSV payloads carry no header)");
    if (conf_enum(cfg, RWK_kinesis_initial_position) == 2) {
        const char *ts = conf_str(cfg, RWK_kinesis_initial_timestamp);
        double d;
        struct tm tm = { 0 };
        if (!ts || (parse_double(ts, &d) < 0 && !strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm)))
            need(diag, conf_get(cfg, RWK_kinesis_initial_position), cfg->path, &errors,
                 "[kinesis] initial_position = AT_TIMESTAMP needs initial_timestamp "
                 "(ISO 8601 such as 2026-11-28T05:00:00Z, or epoch seconds)");
    }
    struct detect_stage *det = NULL;
    if (detect_stage_new(cfg, diag, &det) < 0)
        errors++;
    detect_stage_free(det);
    /* Transforms and detector `where`s: expressions as FILE:LINE:COL. */
    struct xf_stage *xf = NULL;
    if (xf_stage_new(cfg, diag, &xf) < 0)
        errors++;
    xf_stage_free(xf);
    struct win_set *win = NULL;
    if (win_set_new(cfg, diag, &win) < 0)
        errors++;
    win_set_free(win);
    return errors ? -EINVAL : 0;
}

int rw_config_load(const char *path, struct conf_diag *diag, struct rw_config **out)
{
    struct rw_config *cfg = NULL;
    int r = conf_load(&rw_schema, path, diag, &cfg);
    if (r < 0)
        return r;
    r = rw_config_validate(cfg, diag);
    if (r < 0) {
        conf_unref(cfg);
        return r;
    }
    *out = cfg;
    return 0;
}
