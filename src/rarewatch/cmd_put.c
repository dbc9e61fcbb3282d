/* SPDX-License-Identifier: Apache-2.0 */
/* rarewatch put: produce NDJSON or CSV records into a Kinesis stream. */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "rarewatch/aws.h"
#include "rarewatch/conf_schema.h"
#include "rarewatch/csv.h"
#include "rarewatch/kinesis_producer.h"
#include "rarewatch/log.h"
#include "rarewatch/strutil.h"

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) { interrupted = 1; }

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: rarewatch put --stream NAME|ARN [OPTIONS] [FILE]\n"
            "\n"
            "Send records to a Kinesis data stream with PutRecords (batches of at most 500\n"
            "records / 5 MiB). Reads NDJSON (one JSON record per line) or CSV with a header\n"
            "(each row sent as a JSON object) from FILE or standard input.\n"
            "\n"
            "  -s, --stream NAME|ARN    the stream\n"
            "  -f, --format ndjson|csv  input format (default ndjson)\n"
            "  -k, --partition-key FIELD  partition key from this field (random when absent)\n"
            "  -r, --rate N             at most N records per second\n"
            "  -l, --loop               replay FILE forever (until Ctrl-C)\n"
            "  -c, --config PATH        take [aws] settings from this configuration file\n"
            "      --max-retries N      re-sends of failed entries (default 10)\n"
            "  -q, --quiet              no progress line\n"
            "\n"
            "Exit status: 0 when every record was accepted, 1 otherwise, 78 bad config.\n");
}

struct put_state {
    struct kinesis_producer *prod;
    const char *pk_field;
    uint64_t start, last_progress, lines, bad, limit_per_sec;
    bool progress;
    double next_at; /* pacing: monotonic usec when the next record may go */
    struct aws_error err;
    int fatal;
};

static void random_key(char out[33])
{
    uint8_t b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (uint8_t)rand();
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void show_progress(struct put_state *s, bool final)
{
    struct kinesis_producer_stats st = kinesis_producer_get_stats(s->prod);
    double secs = (double)(now_monotonic_usec() - s->start) / 1e6;
    double rate = secs > 0 ? (double)st.sent / secs : 0;
    if (final)
        fprintf(stderr, "%ssent %llu records in %.1f s (%.0f records/s), retried %llu, failed %llu%s%llu invalid input lines\n",
                s->progress ? "\r\033[K" : "", (unsigned long long)st.sent, secs, rate,
                (unsigned long long)st.retried, (unsigned long long)(st.failed),
                ", ", (unsigned long long)s->bad);
    else
        fprintf(stderr, "\r\033[Ksent %llu, retried %llu, failed %llu, %.0f records/s",
                (unsigned long long)st.sent, (unsigned long long)st.retried,
                (unsigned long long)st.failed, rate);
}

static void pace(struct put_state *s)
{
    if (!s->limit_per_sec)
        return;
    double now = (double)now_monotonic_usec();
    if (s->next_at < now - 1e6)
        s->next_at = now; /* do not burst to catch up after a stall */
    if (s->next_at > now) {
        uint64_t d = (uint64_t)(s->next_at - now);
        struct timespec ts = { (time_t)(d / USEC_PER_SEC), (long)(d % USEC_PER_SEC) * 1000 };
        nanosleep(&ts, NULL);
    }
    s->next_at += 1e6 / (double)s->limit_per_sec;
}

/* Send one JSON text; the partition key comes from the parsed object. */
static int send_json(struct put_state *s, const char *text, size_t len, json_object *obj)
{
    char key[300];
    json_object *v = NULL;
    if (s->pk_field && obj && json_object_object_get_ex(obj, s->pk_field, &v) && v &&
        !json_object_is_type(v, json_type_null) && !json_object_is_type(v, json_type_object) &&
        !json_object_is_type(v, json_type_array)) {
        snprintf(key, sizeof(key), "%s", json_object_get_string(v));
        if (!key[0] || strlen(key) > 256)
            random_key(key);
    } else
        random_key(key);
    pace(s);
    int r = kinesis_producer_add(s->prod, text, len, key, &s->err);
    if (r < 0 && r != -E2BIG && r != -EBUSY) {
        s->fatal = r;
        return r;
    }
    if (r == -E2BIG)
        fprintf(stderr, "rarewatch put: record skipped: %s\n", s->err.message);
    if (s->progress) {
        uint64_t now = now_monotonic_usec();
        if (now - s->last_progress > 500000) {
            show_progress(s, false);
            s->last_progress = now;
        }
    }
    return 0;
}

static int put_ndjson(struct put_state *s, FILE *in, const char *name)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    json_tokener *tok = json_tokener_new();
    while (!interrupted && (n = getline(&line, &cap, in)) > 0) {
        s->lines++;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        if (n == 0)
            continue;
        json_tokener_reset(tok);
        json_object *o = json_tokener_parse_ex(tok, line, (int)n);
        if (!o || json_tokener_get_error(tok) != json_tokener_success ||
            tok->char_offset != (int)n) {
            fprintf(stderr, "%s:%llu: invalid JSON (%s); line skipped\n", name,
                    (unsigned long long)s->lines,
                    json_tokener_error_desc(json_tokener_get_error(tok) == json_tokener_success
                                                ? json_tokener_error_parse_unexpected
                                                : json_tokener_get_error(tok)));
            json_object_put(o);
            s->bad++;
            continue;
        }
        int r = send_json(s, line, (size_t)n, o);
        json_object_put(o);
        if (r < 0)
            break;
    }
    json_tokener_free(tok);
    free(line);
    return s->fatal;
}

static int put_csv(struct put_state *s, FILE *in, const char *name)
{
    _cleanup_(csv_reader_freep) struct csv_reader *cr = csv_reader_new(in);
    if (!cr)
        return -ENOMEM;
    char **hdr = NULL;
    size_t nh = 0;
    int r = csv_read_row(cr, &hdr, &nh);
    if (r <= 0) {
        fprintf(stderr, "%s: no CSV header line\n", name);
        s->bad++;
        return 0;
    }
    char **hcopy = calloc(nh + 1, sizeof(char *));
    for (size_t i = 0; i < nh && hcopy; i++)
        hcopy[i] = strdup(hdr[i]);
    _cleanup_buf_ struct buf b = BUF_INIT;
    char **row;
    size_t nf;
    while (!interrupted && hcopy && (r = csv_read_row(cr, &row, &nf)) > 0) {
        s->lines++;
        if (nf != nh) {
            fprintf(stderr, "%s:%llu: %zu fields, header has %zu; row skipped\n", name,
                    (unsigned long long)csv_reader_line(cr), nf, nh);
            s->bad++;
            continue;
        }
        buf_reset(&b);
        csv_row_to_json(&b, hcopy, nh, row, nf);
        json_object *o = json_tokener_parse(b.data);
        r = send_json(s, b.data, b.len, o);
        json_object_put(o);
        if (r < 0)
            break;
    }
    if (r < 0 && !s->fatal) {
        fprintf(stderr, "%s:%llu: malformed CSV (unterminated quote)\n", name,
                (unsigned long long)csv_reader_line(cr));
        s->bad++;
    }
    strv_free(hcopy);
    return s->fatal;
}

int cmd_put(int argc, char **argv)
{
    static const struct option opts[] = {
        { "stream", required_argument, NULL, 's' },
        { "format", required_argument, NULL, 'f' },
        { "partition-key", required_argument, NULL, 'k' },
        { "rate", required_argument, NULL, 'r' },
        { "loop", no_argument, NULL, 'l' },
        { "config", required_argument, NULL, 'c' },
        { "max-retries", required_argument, NULL, 'R' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        {},
    };
    const char *stream = NULL, *format = "ndjson", *config = NULL;
    struct put_state s = { 0 };
    bool loop = false, quiet = false;
    int64_t max_retries = 10, rate = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:f:k:r:lc:qh", opts, NULL)) != -1) {
        switch (c) {
        case 's': stream = optarg; break;
        case 'f': format = optarg; break;
        case 'k': s.pk_field = optarg; break;
        case 'r':
            if (parse_int64(optarg, 1, 10000000, &rate) < 0) {
                fprintf(stderr, "rarewatch put: --rate needs a number of records per second\n");
                return 64;
            }
            break;
        case 'l': loop = true; break;
        case 'c': config = optarg; break;
        case 'R':
            if (parse_int64(optarg, 0, 1000, &max_retries) < 0) {
                fprintf(stderr, "rarewatch put: --max-retries needs 0..1000\n");
                return 64;
            }
            break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 64;
        }
    }
    if (!stream || (!streq(format, "ndjson") && !streq(format, "csv")) || argc - optind > 1) {
        usage(stderr);
        return 64;
    }
    const char *file = optind < argc ? argv[optind] : "-";
    if (loop && streq(file, "-")) {
        fprintf(stderr, "rarewatch put: --loop needs a FILE (standard input cannot be replayed)\n");
        return 64;
    }

    struct conf_diag d = { .echo = stderr };
    _cleanup_(conf_unrefp) struct rw_config *cfg = NULL;
    int r = config ? rw_config_load(config, &d, &cfg)
                   : conf_load_string(&rw_schema, "(defaults)", "", &d, &cfg);
    conf_diag_clear(&d);
    if (r < 0)
        return 78;
    http_global_init();
    struct aws_error err = { 0 };
    char eb[768];
    _cleanup_(aws_settings_freep) struct aws_settings *as = NULL;
    if ((r = aws_settings_new(cfg, &as, &err)) < 0) {
        fprintf(stderr, "rarewatch put: %s\n", aws_error_str(&err, eb, sizeof(eb)));
        return 78;
    }
    _cleanup_(aws_client_freep) struct aws_client *client = aws_client_new(as);
    if (!client)
        return 1;
    _cleanup_(kinesis_producer_freep) struct kinesis_producer *prod =
        kinesis_producer_new(client, stream, (unsigned)max_retries);
    if (!prod)
        return 1;
    s.prod = prod;
    s.limit_per_sec = (uint64_t)rate;
    s.progress = !quiet && isatty(STDERR_FILENO);
    s.start = s.last_progress = now_monotonic_usec();
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);

    do {
        FILE *in = streq(file, "-") ? stdin : fopen(file, "re");
        if (!in) {
            fprintf(stderr, "rarewatch put: %s: %s\n", file, strerror(errno));
            return 1;
        }
        r = streq(format, "csv") ? put_csv(&s, in, file) : put_ndjson(&s, in, file);
        if (in != stdin)
            fclose(in);
    } while (loop && !interrupted && r >= 0);

    if (r >= 0) {
        r = kinesis_producer_flush(prod, &s.err);
        if (r < 0 && r != -EBUSY)
            s.fatal = r;
    }
    show_progress(&s, true);
    if (s.fatal) {
        fprintf(stderr, "rarewatch put: stopped: %s\n", aws_error_str(&s.err, eb, sizeof(eb)));
        return 1;
    }
    struct kinesis_producer_stats st = kinesis_producer_get_stats(prod);
    return st.failed || s.bad ? 1 : 0;
}
