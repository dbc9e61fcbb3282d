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
#include "rarewatch/record_stage.h"
#include "rarewatch/strutil.h"
#include "rarewatch/transform.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: rarewatch replay -c CONFIG [--format ndjson|csv] [--state FILE] [--all] [FILE]\n"
            "\n"
            "Run records from FILE (or standard input) through the configured transforms and\n"
            "detectors exactly as rarewatchd does, and write one NDJSON line per output record to\n"
            "standard output, in input order. Event time comes from [input] timestamp_field.\n"
            "Windows ([window.NAME]) still open at the end of the input are emitted then.\n"
            "No AWS access. A summary goes to standard error.\n"
            "\n"
            "  -c, --config PATH     configuration file (required)\n"
            "  -f, --format F        ndjson (default) or csv (with a header line)\n"
            "  -s, --state FILE      load detector state from FILE if it exists, save it at the end\n"
            "  -a, --all             also emit the records a filter dropped (unmarked)\n"
            "  -q, --quiet           no summary\n");
}

struct replay {
    struct detect_stage *det;
    struct xf_stage *xf;
    struct rs_worker *rs;
    struct rw_output out;
    struct rw_output derived;
    uint64_t emitted, bad;
    double last_tick;
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

/* One record through the same stage code as the daemon's shard workers. */
static int one(struct replay *rp, const char *text, size_t len, const char *name, unsigned long long lineno)
{
    rw_output_reset(&rp->out);
    int r = rs_process(rp->rs, rp->xf, rp->det, 0, text, len, NULL, &rp->out);
    if (r < 0)
        return r;
    if (rp->out.lines.len)
        fwrite(rp->out.lines.data, 1, rp->out.lines.len, stdout);
    rp->emitted += rp->out.n;
    for (size_t i = 0; i < rp->out.n_dl; i++) {
        const struct rw_deadletter_entry *e = &rp->out.dl[i];
        bool parse = e->stage == RW_STAGE_PARSE;
        fprintf(stderr, "%s:%llu: %s%s%s%s; %s\n", name, lineno, parse ? "" : "transform ",
                parse ? "" : e->component, parse ? "" : ": ", e->reason,
                parse ? "skipped" : "the daemon dead-letters this record");
        rp->bad += parse;
    }
    double t = rs_last_event_time(rp->rs);
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
    bool all = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:f:s:aqh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'f': format = optarg; break;
        case 's': state = optarg; break;
        case 'a': all = true; break;
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
    conf_diag_clear(&d);
    if (!(rp.rs = rs_worker_new(cfg, &(struct rs_options){ .keep_dropped = all, .json_objects = true }))) {
        fprintf(stderr, "rarewatch replay: out of memory\n");
        return 1;
    }
    if (state) {
        int r = detect_stage_load(rp.det, state);
        if (r < 0 && r != -ENOENT) {
            fprintf(stderr, "rarewatch replay: cannot load state %s: %s\n", state, strerror(-r));
            return 1;
        }
    }
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
            csv_row_to_json(&obj, hdr, nh, f, nf);
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
    /* The end of the input closes every open window, so the output does
     * not depend on where a window boundary falls. */
    if (r >= 0) {
        rw_output_reset(&rp.out);
        r = rs_flush(rp.rs, rp.xf, rp.det, &rp.out);
        if (rp.out.lines.len)
            fwrite(rp.out.lines.data, 1, rp.out.lines.len, stdout);
        rp.emitted += rp.out.n;
    }
    fflush(stdout);
    double secs = (double)(now_monotonic_usec() - start) / 1e6;
    if (state && r >= 0) {
        int rs = detect_stage_save(rp.det, state);
        if (rs < 0) {
            fprintf(stderr, "rarewatch replay: cannot save state %s: %s\n", state, strerror(-rs));
            r = rs;
        }
    }
    struct rs_counts cnt = rs_worker_counts(rp.rs);
    if (!quiet) {
        fprintf(stderr, "replay: %llu records, %llu emitted, %llu anomalies, %llu invalid, %.0f records/s\n",
                (unsigned long long)cnt.records, (unsigned long long)rp.emitted,
                (unsigned long long)cnt.anomalies, (unsigned long long)rp.bad,
                secs > 0 ? (double)cnt.records / secs : 0);
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
            fprintf(stderr, "  detector %-20s %-14s scored %llu, anomalies %llu, keys %u, evicted %llu, expired %llu\n",
                    st.name, st.type, (unsigned long long)st.scored, (unsigned long long)st.anomalies,
                    st.keys, (unsigned long long)st.evictions, (unsigned long long)st.expirations);
        }
        const struct win_set *ws = rs_windows(rp.rs);
        for (size_t i = 0; i < win_set_count(ws); i++) {
            struct win_stats st;
            win_set_stats(ws, i, &st);
            fprintf(stderr, "  window %-22s emitted %llu, records %llu, late %llu, skipped %llu, "
                    "evicted %llu keys (%llu windows), %zu bytes per key\n", st.name,
                    (unsigned long long)st.emitted, (unsigned long long)st.records,
                    (unsigned long long)st.late, (unsigned long long)st.skipped,
                    (unsigned long long)st.evicted, (unsigned long long)st.evicted_windows,
                    st.bytes_per_key);
        }
    }
    rw_output_free(&rp.out);
    rw_output_free(&rp.derived);
    rs_worker_free(rp.rs);
    detect_stage_free(rp.det);
    xf_stage_free(rp.xf);
    return r < 0 ? 1 : (rp.bad ? 1 : 0);
}
