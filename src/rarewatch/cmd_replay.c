/* SPDX-License-Identifier: Apache-2.0 */
/* rarewatch replay: run history through the configured stages, offline. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "rarewatch/conf_schema.h"
#include "rarewatch/csv.h"
#include "rarewatch/detect_stage.h"
#include "rarewatch/json_scan.h"
#include "rarewatch/strutil.h"
#include "rarewatch/transform.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: rarewatch replay -c CONFIG [--format ndjson|csv] [--state FILE] [--all] [FILE]\n"
            "\n"
            "Run records from FILE (or standard input) through the configured detectors\n"
            "exactly as rarewatchd does, and write one NDJSON line per output record to\n"
            "standard output, in input order. Event time comes from [input] timestamp_field.\n"
            "No AWS access. A summary goes to standard error.\n"
            "\n"
            "  -c, --config PATH     configuration file (required)\n"
            "  -f, --format F        ndjson (default) or csv (with a header line)\n"
            "  -s, --state FILE      load detector state from FILE if it exists, save it at the end\n"
            "  -a, --all             also emit records that no detector scored or a filter dropped\n"
            "  -q, --quiet           no summary\n");
}

struct replay {
    struct detect_stage *det;
    struct xf_stage *xf;
    struct xf_worker *xw;
    struct json_path *ts_path;
    struct json_doc doc;
    struct buf line;
    struct rw_output derived;
    uint64_t records, emitted, bad, anomalies, dropped, failed;
    double last_tick;
    bool all;
};

static void tick(struct replay *rp, double t)
{
    /* Rate detectors close idle keys' intervals as event time moves on. */
    if (!(t > rp->last_tick + 1.0))
        return;
    rw_output_reset(&rp->derived);
    detect_stage_tick(rp->det, t, &rp->derived);
    if (rp->derived.lines.len)
        fwrite(rp->derived.lines.data, 1, rp->derived.lines.len, stdout);
    rp->emitted += rp->derived.n;
    rp->last_tick = t;
}

static int one(struct replay *rp, const char *text, size_t len, const char *name, unsigned long long lineno)
{
    rp->records++;
    if (json_scan(&rp->doc, text, len) < 0 || rp->doc.nodes[0].type != JSON_T_OBJECT) {
        fprintf(stderr, "%s:%llu: not a JSON object (%s); skipped\n", name, lineno,
                rp->doc.err_msg ? rp->doc.err_msg : "wrong type");
        rp->bad++;
        return 0;
    }
    double t = NAN;
    struct rw_value tv;
    if (rp->ts_path && json_lookup(&rp->doc, rp->ts_path, &tv) == 0) {
        if (tv.type == RW_NUM)
            t = tv.num > 1e11 ? tv.num / 1000 : tv.num;
        else if (tv.type == RW_STR && parse_timestamp(tv.s.p, tv.s.len, &t) < 0)
            t = NAN;
    }
    /* The transforms, as the daemon runs them; `doc` is their result. */
    struct json_doc *doc = &rp->doc;
    bool xf = xf_stage_count(rp->xf) || xf_stage_has_where(rp->xf);
    if (xf) {
        struct xf_record xr = { .doc = &rp->doc, .event_time = t, .arrival_time = NAN };
        int xr_r = xf_apply(rp->xf, rp->xw, &xr, &doc);
        if (xr_r < 0)
            return xr_r;
        if (xr_r == XF_FAIL) {
            fprintf(stderr, "%s:%llu: transform %s: %s; the daemon dead-letters this record\n", name,
                    lineno, xr.failed_transform, xr.reason);
            rp->failed++;
        } else if (xr_r == XF_DROP) {
            rp->dropped++;
            if (rp->all) {
                const struct json_node *root = &doc->nodes[0];
                fwrite(doc->text + root->start, 1, root->end - root->start, stdout);
                fputc('\n', stdout);
                rp->emitted++;
            }
        }
        if (xr_r != XF_KEEP) {
            if (isfinite(t))
                tick(rp, t);
            return 0;
        }
    }
    struct detect_record dr = { .doc = doc, .event_time = t, .where = xf ? xf_detector_where : NULL,
                                .ud = rp->xw };
    struct detect_verdict v;
    buf_reset(&rp->line);
    const struct json_node *root = &doc->nodes[0];
    buf_append(&rp->line, doc->text + root->start, root->end - 1 - root->start);
    size_t before = rp->line.len;
    int r = detect_stage_eval(rp->det, &dr, &rp->line, &v);
    if (r < 0)
        return r;
    if (json_first_child(doc, 0) == JSON_NONE && rp->line.len > before)
        rp->line.data[before] = ' '; /* "{" then ',"anomaly_score"...': drop the comma */
    if (v.is_anomaly)
        rp->anomalies++;
    if (v.scored || rp->all) {
        buf_puts(&rp->line, "}\n");
        fwrite(rp->line.data, 1, rp->line.len, stdout);
        rp->emitted++;
    }
    if (isfinite(t))
        tick(rp, t);
    return 0;
}

int cmd_replay(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "format", required_argument, NULL, 'f' },
        { "state", required_argument, NULL, 's' },
        { "all", no_argument, NULL, 'a' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        {},
    };
    const char *config = NULL, *format = "ndjson", *state = NULL;
    bool quiet = false;
    struct replay rp = { .last_tick = -INFINITY };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:f:s:aqh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'f': format = optarg; break;
        case 's': state = optarg; break;
        case 'a': rp.all = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 64;
        }
    }
    if (!config || (!streq(format, "ndjson") && !streq(format, "csv")) || argc - optind > 1) {
        usage(stderr);
        return 64;
    }
    struct conf_diag d = { .echo = stderr };
    _cleanup_(conf_unrefp) struct rw_config *cfg = NULL;
    if (rw_config_load(config, &d, &cfg) < 0) {
        conf_diag_clear(&d);
        return 78;
    }
    if (detect_stage_new(cfg, &d, &rp.det) < 0 || xf_stage_new(cfg, &d, &rp.xf) < 0) {
        conf_diag_clear(&d);
        detect_stage_free(rp.det);
        return 78;
    }
    if (!(rp.xw = xf_worker_new())) {
        fprintf(stderr, "rarewatch replay: out of memory\n");
        return 1;
    }
    conf_diag_clear(&d);
    const char *tsf = conf_str(cfg, RWK_input_timestamp_field);
    if (tsf && json_path_compile(tsf, &rp.ts_path) < 0) {
        fprintf(stderr, "%s: [input] timestamp_field is not a field path\n", config);
        return 78;
    }
    if (state) {
        int r = detect_stage_load(rp.det, state);
        if (r < 0 && r != -ENOENT) {
            fprintf(stderr, "rarewatch replay: cannot load state %s: %s\n", state, strerror(-r));
            return 1;
        }
    }
    json_doc_init(&rp.doc, NULL);
    const char *file = optind < argc ? argv[optind] : "-";
    FILE *in = streq(file, "-") ? stdin : fopen(file, "re");
    if (!in) {
        fprintf(stderr, "rarewatch replay: %s: %s\n", file, strerror(errno));
        return 1;
    }
    uint64_t start = now_monotonic_usec();
    int r = 0;
    if (streq(format, "csv")) {
        struct csv_reader *cr = csv_reader_new(in);
        char **f, **hdr = NULL;
        size_t nf, nh = 0;
        struct buf obj = BUF_INIT;
        while (cr && (r = csv_read_row(cr, &f, &nf)) > 0) {
            if (!hdr) {
                hdr = strv_copy(f);
                nh = nf;
                continue;
            }
            buf_reset(&obj);
            buf_putc(&obj, '{');
            for (size_t i = 0; i < nf && i < nh; i++) {
                double x;
                if (i)
                    buf_putc(&obj, ',');
                buf_put_json_string(&obj, hdr[i], strlen(hdr[i]));
                buf_putc(&obj, ':');
                if (f[i][0] && parse_double(f[i], &x) == 0)
                    buf_puts(&obj, f[i]);
                else
                    buf_put_json_string(&obj, f[i], strlen(f[i]));
            }
            buf_putc(&obj, '}');
            if ((r = one(&rp, obj.data, obj.len, file, csv_reader_line(cr))) < 0)
                break;
        }
        buf_free(&obj);
        strv_free(hdr);
        csv_reader_free(cr);
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        unsigned long long lineno = 0;
        while ((n = getline(&line, &cap, in)) > 0) {
            lineno++;
            while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = 0;
            if (n == 0)
                continue;
            if ((r = one(&rp, line, (size_t)n, file, lineno)) < 0)
                break;
        }
        free(line);
    }
    if (in != stdin)
        fclose(in);
    fflush(stdout);
    double secs = (double)(now_monotonic_usec() - start) / 1e6;
    if (state && r >= 0) {
        int rs = detect_stage_save(rp.det, state);
        if (rs < 0) {
            fprintf(stderr, "rarewatch replay: cannot save state %s: %s\n", state, strerror(-rs));
            r = rs;
        }
    }
    if (!quiet) {
        fprintf(stderr, "replay: %llu records, %llu emitted, %llu anomalies, %llu invalid, %.0f records/s\n",
                (unsigned long long)rp.records, (unsigned long long)rp.emitted,
                (unsigned long long)rp.anomalies, (unsigned long long)rp.bad,
                secs > 0 ? (double)rp.records / secs : 0);
        for (size_t i = 0; i < xf_stage_count(rp.xf); i++) {
            struct xf_stats st;
            xf_stage_stats(rp.xf, i, &st);
            fprintf(stderr, "  transform %-19s %-14s applied %llu, dropped %llu, failed %llu\n", st.name,
                    st.type, (unsigned long long)st.applied, (unsigned long long)st.dropped,
                    (unsigned long long)st.failed);
        }
        for (size_t i = 0; i < detect_stage_count(rp.det); i++) {
            struct detect_stats st;
            detect_stage_stats(rp.det, i, &st);
            fprintf(stderr, "  detector %-20s %-14s scored %llu, anomalies %llu, keys %u, evicted %llu\n",
                    st.name, st.type, (unsigned long long)st.scored, (unsigned long long)st.anomalies,
                    st.keys, (unsigned long long)st.evictions);
        }
    }
    json_doc_free(&rp.doc);
    buf_free(&rp.line);
    rw_output_free(&rp.derived);
    json_path_free(rp.ts_path);
    detect_stage_free(rp.det);
    xf_stage_free(rp.xf);
    xf_worker_free(rp.xw);
    return r < 0 ? 1 : (rp.bad ? 1 : 0);
}
