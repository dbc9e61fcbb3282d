/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rarewatch deadletter list|replay: inspect the dead-letter files and
 * re-inject their original bytes into a Kinesis stream.
 *
 * Replayed entries are marked in a sidecar FILE.replayed (one byte offset
 * per line, appended and fsynced after Kinesis accepted the record), never
 * by rewriting FILE: the daemon may still be appending to it. list and
 * replay skip marked entries, so nothing is replayed twice (a crash between
 * the accept and the mark can replay one record again: at least once).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "rarewatch/aws.h"
#include "rarewatch/base64.h"
#include "rarewatch/conf_schema.h"
#include "rarewatch/fsutil.h"
#include "rarewatch/kinesis_producer.h"
#include "rarewatch/log.h"
#include "rarewatch/strutil.h"
#include "rw-build-config.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: rarewatch deadletter list [-c CONFIG] [--json] [--all] [FILE...]\n"
            "       rarewatch deadletter replay [-c CONFIG] [--stream S] FILE...\n"
            "\n"
            "list    show dead-letter entries (time, stage, component, reason, provenance) of\n"
            "        FILE... or of every file in [deadletter] directory; entries already\n"
            "        replayed are hidden unless --all.\n"
            "replay  send each entry's original bytes to a Kinesis stream (--stream, else\n"
            "        [kinesis] stream, else the entry's own stream) with its partition key.\n"
            "        Entries Kinesis accepted are marked in FILE.replayed and never sent again.\n"
            "        Entries of the sink/oversize stages hold the delivered line: the\n"
            "        \"_kinesis\" member the daemon added is removed before sending.\n"
            "\n"
            "  -c, --config PATH   configuration (default " RW_DEFAULT_CONFIG " when present)\n"
            "  -s, --stream NAME   replay target stream (name or ARN)\n"
            "  -j, --json          list: one JSON object per entry (with file, offset, replayed)\n"
            "  -a, --all           list: include replayed entries\n"
            "      --max-retries N replay: re-sends of failed entries (default 10)\n"
            "\n"
            "Exit status: 0 success, 1 some entries failed, 64 usage, 66 no input, 78 bad config.\n");
}

/* ---- reading files ---- */

struct offsets {
    uint64_t *v;
    size_t n, cap;
};

static int offsets_add(struct offsets *o, uint64_t v)
{
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 64;
        uint64_t *n = realloc(o->v, nc * sizeof(*n));
        if (!n)
            return -ENOMEM;
        o->v = n;
        o->cap = nc;
    }
    o->v[o->n++] = v;
    return 0;
}

static bool offsets_has(const struct offsets *o, uint64_t v)
{
    for (size_t i = 0; i < o->n; i++)
        if (o->v[i] == v)
            return true;
    return false;
}

static void load_replayed(const char *file, struct offsets *o)
{
    _cleanup_free_ char *side = NULL;
    if (asprintf(&side, "%s.replayed", file) < 0)
        return;
    FILE *f = fopen(side, "re");
    if (!f)
        return;
    char line[64];
    while (fgets(line, sizeof(line), f)) {
        char *end;
        unsigned long long v = strtoull(line, &end, 10);
        if (end != line)
            offsets_add(o, v);
    }
    fclose(f);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every deadletter-*.ndjson in dir, sorted (names start with the time). */
static int dir_files(const char *dir, char ***out, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    struct dirent *e;
    char **v = NULL;
    size_t k = 0;
    while ((e = readdir(d))) {
        if (!startswith(e->d_name, "deadletter-") || !endswith(e->d_name, ".ndjson"))
            continue;
        char **nv = realloc(v, (k + 1) * sizeof(*nv));
        if (!nv)
            break;
        v = nv;
        if (asprintf(&v[k], "%s/%s", dir, e->d_name) < 0)
            break;
        k++;
    }
    closedir(d);
    qsort(v, k, sizeof(*v), cmp_str);
    *out = v;
    *n = k;
    return 0;
}

/* Call fn for every entry of file: (parsed object, raw line, offset, replayed). */
static int each_entry(const char *file, int (*fn)(void *ud, const char *file, json_object *o,
                                                  const char *line, uint64_t off, bool replayed),
                      void *ud)
{
    FILE *f = fopen(file, "re");
    if (!f)
        return -errno;
    struct offsets rep = { 0 };
    load_replayed(file, &rep);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    uint64_t off = 0;
    int r = 0;
    unsigned lineno = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        uint64_t this_off = off;
        off += (uint64_t)len;
        if (line[len - 1] != '\n')
            break; /* a partial last line the daemon is still writing */
        json_object *o = json_tokener_parse(line);
        if (!o || !json_object_is_type(o, json_type_object)) {
            fprintf(stderr, "%s:%u: not a dead-letter entry (invalid JSON); skipped\n", file, lineno);
            json_object_put(o);
            continue;
        }
        r = fn(ud, file, o, line, this_off, offsets_has(&rep, this_off));
        json_object_put(o);
        if (r < 0)
            break;
    }
    free(line);
    free(rep.v);
    fclose(f);
    return r;
}

static const char *jget(json_object *o, const char *k)
{
    json_object *v = NULL;
    if (!o || !json_object_object_get_ex(o, k, &v) || !v)
        return NULL;
    return json_object_get_string(v);
}

static json_object *jobj(json_object *o, const char *k)
{
    json_object *v = NULL;
    return o && json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_object) ? v : NULL;
}

/* ---- list ---- */

struct list_ctx {
    bool json, all;
    size_t shown, hidden;
};

static int list_one(void *ud, const char *file, json_object *o, const char *line, uint64_t off, bool replayed)
{
    struct list_ctx *c = ud;
    if (replayed && !c->all) {
        c->hidden++;
        return 0;
    }
    c->shown++;
    if (c->json) {
        json_object *out = json_object_new_object();
        json_object_object_add(out, "file", json_object_new_string(file));
        json_object_object_add(out, "offset", json_object_new_int64((int64_t)off));
        json_object_object_add(out, "replayed", json_object_new_boolean(replayed));
        json_object_object_add(out, "entry", json_object_get(o));
        puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(out);
        return 0;
    }
    json_object *k = jobj(o, "_kinesis");
    const char *data = jget(o, "data_base64");
    size_t bytes = data ? base64_decoded_max(strlen(data)) : 0;
    const char *comp = jget(o, "component");
    printf("%-24s %-9s %-12s %s%s\n", jget(o, "time") ?: "?", jget(o, "stage") ?: "?",
           comp && comp[0] ? comp : "-",
           jget(o, "reason") ?: "", replayed ? " [replayed]" : "");
    if (k)
        printf("    %s/%s seq %s sub %s key %s arrived %s, ~%zu bytes\n", jget(k, "stream") ?: "?",
               jget(k, "shard_id") ?: "?", jget(k, "sequence_number") ?: "?",
               jget(k, "sub_sequence_number") ?: "0", jget(k, "partition_key") ?: "?",
               jget(k, "arrival_time") ?: "?", bytes);
    else
        printf("    (no provenance), ~%zu bytes\n", bytes);
    return 0;
}

/* ---- replay ---- */

struct target {
    char *stream;
    struct kinesis_producer *prod;
};

struct replay_ctx {
    struct aws_client *client;
    const char *stream; /* --stream or [kinesis] stream; NULL: the entry's */
    unsigned max_retries;
    struct target t[8];
    size_t n_t;
    int side_fd;        /* current file's sidecar */
    struct buf marks;   /* offsets accepted, not yet written */
    size_t ok, failed, skipped, bad;
    struct buf data;
    struct aws_error err;
};

static void on_result(void *ud, uint64_t tag, bool ok)
{
    struct replay_ctx *c = ud;
    if (ok) {
        buf_printf(&c->marks, "%llu\n", (unsigned long long)tag);
        c->ok++;
    } else
        c->failed++;
}

static int write_marks(struct replay_ctx *c)
{
    if (!c->marks.len || c->side_fd < 0)
        return 0;
    int r = write_all(c->side_fd, c->marks.data, c->marks.len);
    if (r == 0 && fsync(c->side_fd) < 0)
        r = -errno;
    buf_reset(&c->marks);
    return r;
}

static struct target *target_for(struct replay_ctx *c, const char *stream)
{
    for (size_t i = 0; i < c->n_t; i++)
        if (streq(c->t[i].stream, stream))
            return &c->t[i];
    if (c->n_t == ELEMENTSOF(c->t))
        return NULL;
    struct target *t = &c->t[c->n_t];
    t->stream = strdup(stream);
    t->prod = t->stream ? kinesis_producer_new(c->client, stream, c->max_retries) : NULL;
    if (!t->prod) {
        free(t->stream);
        return NULL;
    }
    kinesis_producer_set_result_cb(t->prod, on_result, c);
    c->n_t++;
    return t;
}

/* Remove a top-level "_kinesis" member (the provenance the daemon added to
 * a delivered line) from JSON object text, in place. */
static size_t strip_provenance(char *p, size_t len)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = tok ? json_tokener_parse_ex(tok, p, (int)len) : NULL;
    bool ok = o && json_tokener_get_error(tok) == json_tokener_success &&
              json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, "_kinesis", NULL);
    if (ok) {
        json_object_object_del(o, "_kinesis");
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        size_t n = strlen(s);
        if (n <= len) {
            memcpy(p, s, n);
            len = n;
        }
    }
    json_object_put(o);
    if (tok)
        json_tokener_free(tok);
    return len;
}

static int replay_one(void *ud, const char *file, json_object *o, const char *line, uint64_t off, bool replayed)
{
    struct replay_ctx *c = ud;
    if (replayed) {
        c->skipped++;
        return 0;
    }
    json_object *k = jobj(o, "_kinesis");
    const char *b64 = jget(o, "data_base64");
    const char *stream = c->stream ? c->stream : jget(k, "stream");
    const char *pk = jget(k, "partition_key");
    const char *stage = jget(o, "stage") ?: "";
    if (!b64 || !stream || !*stream) {
        fprintf(stderr, "%s@%llu: %s; not replayed\n", file, (unsigned long long)off,
                !b64 ? "no data_base64" : "no target stream (use --stream)");
        c->bad++;
        return 0;
    }
    buf_reset(&c->data);
    size_t n = strlen(b64), dlen = 0;
    if (buf_reserve(&c->data, base64_decoded_max(n) + 4) < 0)
        return -ENOMEM;
    if (base64_decode(b64, n, (uint8_t *)c->data.data, &dlen) < 0) {
        fprintf(stderr, "%s@%llu: invalid data_base64; not replayed\n", file, (unsigned long long)off);
        c->bad++;
        return 0;
    }
    c->data.len = dlen;
    c->data.data[dlen] = 0;
    if (streq(stage, "sink") || streq(stage, "oversize"))
        c->data.len = strip_provenance(c->data.data, c->data.len);
    struct target *t = target_for(c, stream);
    if (!t)
        return -ENOMEM;
    char key[40];
    if (!pk || !*pk) {
        snprintf(key, sizeof(key), "deadletter-%llu", (unsigned long long)off);
        pk = key;
    }
    int r = kinesis_producer_add_tagged(t->prod, c->data.data, c->data.len, pk, off, &c->err);
    if (r == -E2BIG) {
        fprintf(stderr, "%s@%llu: %zu bytes, over the Kinesis record limit; not replayed\n", file,
                (unsigned long long)off, c->data.len);
        c->bad++;
        r = 0;
    } else if (r == -EBUSY)
        r = 0; /* counted by the callback */
    if (write_marks(c) < 0)
        return -EIO;
    return r;
}

static int flush_all(struct replay_ctx *c)
{
    int ret = 0;
    for (size_t i = 0; i < c->n_t; i++) {
        int r = kinesis_producer_flush(c->t[i].prod, &c->err);
        if (r < 0 && r != -EBUSY)
            ret = r;
    }
    int r = write_marks(c);
    return ret ?: r;
}

/* ---- main ---- */

int cmd_deadletter(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "stream", required_argument, NULL, 's' },
        { "json", no_argument, NULL, 'j' },
        { "all", no_argument, NULL, 'a' },
        { "max-retries", required_argument, NULL, 'R' },
        { "help", no_argument, NULL, 'h' },
        {},
    };
    if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 64 : 0;
    }
    const char *sub = argv[1];
    if (!streq(sub, "list") && !streq(sub, "replay")) {
        fprintf(stderr, "rarewatch deadletter: unknown action '%s'\n", sub);
        usage(stderr);
        return 64;
    }
    const char *config = NULL, *stream = NULL;
    bool json = false, all = false;
    unsigned max_retries = 10;
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "c:s:jah", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': config = optarg; break;
        case 's': stream = optarg; break;
        case 'j': json = true; break;
        case 'a': all = true; break;
        case 'R': max_retries = (unsigned)atoi(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 64;
        }
    }
    if (!config && access(RW_DEFAULT_CONFIG, R_OK) == 0)
        config = RW_DEFAULT_CONFIG;
    struct conf_diag d = { .echo = stderr };
    _cleanup_(conf_unrefp) struct rw_config *cfg = NULL;
    int r = config ? conf_load(&rw_schema, config, &d, &cfg)
                   : conf_load_string(&rw_schema, "(defaults)", "", &d, &cfg);
    conf_diag_clear(&d);
    if (r < 0)
        return 78;
    char **files = NULL;
    size_t n_files = 0;
    bool own_files = false;
    if (optind < argc) {
        files = argv + optind;
        n_files = (size_t)(argc - optind);
    } else if (streq(sub, "list")) {
        const char *dir = conf_str(cfg, RWK_deadletter_directory);
        if ((r = dir_files(dir, &files, &n_files)) < 0) {
            fprintf(stderr, "rarewatch deadletter: %s: %s\n", dir, strerror(-r));
            return 66;
        }
        own_files = true;
    } else {
        fprintf(stderr, "rarewatch deadletter replay: name the dead-letter FILE(s) to replay\n");
        return 64;
    }

    int ret = 0;
    if (streq(sub, "list")) {
        struct list_ctx c = { .json = json, .all = all };
        for (size_t i = 0; i < n_files; i++)
            if ((r = each_entry(files[i], list_one, &c)) < 0) {
                fprintf(stderr, "rarewatch deadletter: %s: %s\n", files[i], strerror(-r));
                ret = 66;
            }
        if (!json)
            fprintf(stderr, "%zu entr%s in %zu file%s%s", c.shown, c.shown == 1 ? "y" : "ies", n_files,
                    n_files == 1 ? "" : "s", c.hidden ? "" : "\n");
        if (!json && c.hidden)
            fprintf(stderr, " (%zu replayed, not shown; --all shows them)\n", c.hidden);
    } else {
        http_global_init();
        struct aws_error err = { 0 };
        _cleanup_(aws_settings_freep) struct aws_settings *as = NULL;
        if ((r = aws_settings_new(cfg, &as, &err)) < 0) {
            char eb[768];
            fprintf(stderr, "rarewatch deadletter: %s\n", aws_error_str(&err, eb, sizeof(eb)));
            return 78;
        }
        _cleanup_(aws_client_freep) struct aws_client *client = aws_client_new(as);
        struct replay_ctx c = {
            .client = client,
            .stream = stream ? stream : conf_str(cfg, RWK_kinesis_stream),
            .max_retries = max_retries,
            .side_fd = -1,
        };
        for (size_t i = 0; i < n_files && ret == 0; i++) {
            _cleanup_free_ char *side = NULL;
            if (asprintf(&side, "%s.replayed", files[i]) < 0)
                return 70;
            c.side_fd = open(side, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
            if (c.side_fd < 0) {
                fprintf(stderr, "rarewatch deadletter: %s: %m\n", side);
                ret = 73;
                break;
            }
            r = each_entry(files[i], replay_one, &c);
            int rf = flush_all(&c);
            close(c.side_fd);
            c.side_fd = -1;
            if (r < 0 || rf < 0) {
                char eb[768];
                fprintf(stderr, "rarewatch deadletter: %s: %s\n", files[i],
                        r < 0 ? strerror(-r) : aws_error_str(&c.err, eb, sizeof(eb)));
                ret = 1;
            }
        }
        fprintf(stderr, "replayed %zu entries, %zu failed, %zu not replayable, %zu already replayed\n",
                c.ok, c.failed, c.bad, c.skipped);
        if (!ret && (c.failed || c.bad))
            ret = 1;
        for (size_t i = 0; i < c.n_t; i++) {
            kinesis_producer_free(c.t[i].prod);
            free(c.t[i].stream);
        }
        buf_free(&c.marks);
        buf_free(&c.data);
    }
    if (own_files) {
        for (size_t i = 0; i < n_files; i++)
            free(files[i]);
        free(files);
    }
    return ret;
}
