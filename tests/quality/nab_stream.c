/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NAB streaming driver: NDJSON {"timestamp": "...", "value": N} rows on
 * stdin, one {"anomaly_score": S} row per input row on stdout, scored by
 * one detector with its default parameters.
 *
 *   nab_stream [-d auto|zscore|quantile] [-p name=value ...] [-T]
 *
 * -T ignores the timestamps (as for a field with no event time): auto
 * loses its time-of-day view.
 * -p overrides a default, for sensitivity runs over the whole corpus (the
 * same value for every series); the published numbers use no -p.
 */
#include <getopt.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rarewatch/detect.h"

static int64_t parse_ts(const char *s)
{
    struct tm tm = { 0 };
    const char *end = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
    if (!end)
        end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    return end ? (int64_t)timegm(&tm) * 1000000 : 0;
}

static int set_param(enum det_type t, void *params, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq)
        return -EINVAL;
    size_t n = (size_t)(eq - kv);
    double v = strtod(eq + 1, NULL);
#define P(type, name, field, conv)                                         \
    if (t == type && n == strlen(name) && strncmp(kv, name, n) == 0) {     \
        field = conv;                                                      \
        return 0;                                                          \
    }
    struct det_auto_params *a = params;
    struct det_zscore_params *z = params;
    struct det_quantile_params *q = params;
    P(DET_AUTO, "half_life", a->half_life, v)
    P(DET_AUTO, "dedup_half_life", a->dedup_half_life, v)
    P(DET_AUTO, "min_samples", a->min_samples, (uint32_t)v)
    P(DET_AUTO, "calib.half_life", a->calib.half_life, v)
    P(DET_AUTO, "calib.min_mass", a->calib.min_mass, v)
    P(DET_ZSCORE, "half_life", z->half_life, v)
    P(DET_ZSCORE, "calib.half_life", z->calib.half_life, v)
    P(DET_ZSCORE, "calib.min_mass", z->calib.min_mass, v)
    P(DET_QUANTILE, "half_life", q->half_life, v)
    P(DET_QUANTILE, "calib.half_life", q->calib.half_life, v)
    P(DET_QUANTILE, "calib.min_mass", q->calib.min_mass, v)
#undef P
    return -EINVAL;
}

int main(int argc, char **argv)
{
    enum det_type type = DET_AUTO;
    union {
        struct det_auto_params a;
        struct det_zscore_params z;
        struct det_quantile_params q;
    } params;
    const char *overrides[32];
    unsigned noverrides = 0;
    int opt;
    bool use_ts = true;
    while ((opt = getopt(argc, argv, "d:p:T")) != -1) {
        if (opt == 'd') {
            int t = det_type_from_name(optarg);
            if (t < 0) {
                fprintf(stderr, "unknown detector %s\n", optarg);
                return 2;
            }
            type = (enum det_type)t;
        } else if (opt == 'T') {
            use_ts = false;
        } else if (opt == 'p' && noverrides < ELEMENTSOF(overrides)) {
            overrides[noverrides++] = optarg;
        } else {
            fprintf(stderr, "usage: %s [-d auto|zscore|quantile] [-p name=value] [-T]\n", argv[0]);
            return 2;
        }
    }
    int r = 0;
    switch (type) {
    case DET_AUTO: det_auto_params_default(&params.a); break;
    case DET_ZSCORE: det_zscore_params_default(&params.z); break;
    case DET_QUANTILE: det_quantile_params_default(&params.q); break;
    default:
        fprintf(stderr, "detector %s is not a single-series numeric detector\n", det_type_name(type));
        return 2;
    }
    for (unsigned i = 0; i < noverrides; i++)
        if (set_param(type, &params, overrides[i]) < 0) {
            fprintf(stderr, "bad parameter %s\n", overrides[i]);
            return 2;
        }
    switch (type) {
    case DET_AUTO: r = det_auto_params_check(&params.a); break;
    case DET_ZSCORE: r = det_zscore_params_check(&params.z); break;
    case DET_QUANTILE: r = det_quantile_params_check(&params.q); break;
    default: break;
    }
    if (r < 0) {
        fprintf(stderr, "parameters out of range\n");
        return 2;
    }

    union {
        struct det_auto_state a;
        struct det_zscore_state z;
        struct det_quantile_state q;
    } state;
    memset(&state, 0, sizeof(state));

    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) > 0) {
        json_object *o = json_tokener_parse(line);
        json_object *jv = NULL, *jt = NULL;
        if (!o || !json_object_object_get_ex(o, "value", &jv)) {
            fprintf(stderr, "bad input line: %s", line);
            json_object_put(o);
            return 1;
        }
        double x = json_object_get_double(jv);
        int64_t ts = use_ts && json_object_object_get_ex(o, "timestamp", &jt)
                         ? parse_ts(json_object_get_string(jt))
                         : 0;
        struct det_result res;
        switch (type) {
        case DET_AUTO: det_auto_update(&params.a, &state.a, x, ts, &res); break;
        case DET_ZSCORE: det_zscore_update(&params.z, &state.z, x, ts, &res); break;
        case DET_QUANTILE: det_quantile_update(&params.q, &state.q, x, &res); break;
        default: abort();
        }
        json_object_put(o);
        printf("{\"anomaly_score\": %.17g}\n", res.score);
    }
    free(line);
    return 0;
}
