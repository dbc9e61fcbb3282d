/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/sink_file.h"

#include <dirent.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>

#include "rarewatch/deadletter.h"
#include "rarewatch/strutil.h"
#include "tap.h"

static struct rw_batch *make_batch(struct rw_ack_queue *q, int first, int n)
{
    struct rw_batch *b = rw_batch_new(q);
    for (int i = 0; i < n; i++) {
        struct rw_line_meta *m = rw_output_begin_line(&b->out, i);
        buf_printf(&b->out.lines, "{\"n\":%d}\n", first + i);
        rw_output_end_line(&b->out, m);
    }
    return b;
}

static size_t count_lines(const char *pattern)
{
    glob_t g;
    size_t lines = 0;
    if (glob(pattern, 0, NULL, &g) != 0)
        return 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        FILE *f = fopen(g.gl_pathv[i], "r");
        int c;
        while (f && (c = getc(f)) != EOF)
            lines += c == '\n';
        if (f)
            fclose(f);
    }
    globfree(&g);
    return lines;
}

TEST(batches_are_written_then_acknowledged_in_s3_layout)
{
    char dir[] = "/tmp/rw-sink-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    struct sink_file_options o = { .directory = dir, .rotate_interval_usec = 3600 * USEC_PER_SEC,
                                   .rotate_size = 200 };
    struct rw_sink *s = NULL;
    CHECK_INT(sink_file_new(&o, &s), 0);
    if (!s)
        return;
    struct rw_ack_queue q;
    rw_ack_queue_init(&q);
    struct rw_batch *b[10];
    for (int i = 0; i < 10; i++) {
        b[i] = make_batch(&q, i * 10, 10);
        CHECK_INT(rw_sinks_submit(&s, 1, b[i]), 0);
    }
    /* Wait on the ack queue for the last batch (acks come in order). */
    pthread_mutex_lock(&q.lock);
    while (!atomic_load(&b[9]->done))
        pthread_cond_wait(&q.cond, &q.lock);
    pthread_mutex_unlock(&q.lock);
    for (int i = 0; i < 10; i++) {
        CHECK(atomic_load(&b[i]->done));
        rw_batch_unref(b[i]);
    }
    CHECK_INT(s->ops->stop(s, now_monotonic_usec() + 10 * USEC_PER_SEC), 0);
    char pat[256];
    snprintf(pat, sizeof(pat), "%s/[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/[0-9][0-9]/rarewatch-*.ndjson", dir);
    CHECK_UINT(count_lines(pat), 100);
    CHECK_UINT(atomic_load(&s->stats.lines), 100);
    /* rotate_size = 200 bytes: several files. */
    glob_t g;
    CHECK_INT(glob(pat, 0, NULL, &g), 0);
    CHECK(g.gl_pathc > 1);
    globfree(&g);
    rw_sink_free(s);
    rw_ack_queue_destroy(&q);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
}

TEST(deadletter_bounded_never_drops_silently)
{
    char dir[] = "/tmp/rw-dl-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    struct deadletter *d = NULL;
    CHECK_INT(deadletter_new(dir, 600, &d), 0);
    if (!d)
        return;
    struct rw_provenance p = { .stream = { "s", 1 }, .shard_id = { "shardId-1", 9 },
                               .sequence_number = { "42", 2 }, .partition_key = { "k", 1 } };
    struct deadletter_item it = { "\xff\x00raw", 5, &p, RW_STAGE_DECODE, "kpl", "md5 mismatch" };
    CHECK_INT(deadletter_write(d, &it, 1), 0);
    CHECK_UINT(deadletter_count(d), 1);
    /* Fill it: a write that does not fit is refused whole. */
    int r = 0, n = 0;
    while ((r = deadletter_write(d, &it, 1)) == 0 && n < 100)
        n++;
    CHECK_INT(r, -ENOSPC);
    char pat[128];
    snprintf(pat, sizeof(pat), "%s/deadletter-*.ndjson", dir);
    CHECK_UINT(count_lines(pat), deadletter_count(d));
    glob_t g;
    CHECK_INT(glob(pat, 0, NULL, &g), 0);
    FILE *f = fopen(g.gl_pathv[0], "r");
    char line[1024] = "";
    CHECK(f && fgets(line, sizeof(line), f));
    if (f)
        fclose(f);
    globfree(&g);
    CHECK_CONTAINS(line, "\"stage\":\"decode\",\"component\":\"kpl\",\"reason\":\"md5 mismatch\"");
    CHECK_CONTAINS(line, "\"sequence_number\":\"42\"");
    CHECK_CONTAINS(line, "\"data_base64\":\"/wByYXc=\"");
    deadletter_set_max_size(d, 1 << 20);
    CHECK_INT(deadletter_write(d, &it, 1), 0);
    deadletter_free(d);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
}

/* The owner's spare: kept only from a batch nobody else references, handed
 * to the next batch empty, with its allocations. */
TEST(batch_output_recycled_only_when_last_reference)
{
    struct rw_ack_queue q;
    rw_ack_queue_init(&q);
    struct rw_output spare = { 0 };
    struct rw_batch *b = rw_batch_new(&q);
    CHECK(b != NULL);
    struct rw_line_meta *m = rw_output_begin_line(&b->out, 0);
    CHECK(m != NULL);
    CHECK_INT(buf_puts(&b->out.lines, "{\"a\":1}\n"), 0);
    rw_output_end_line(&b->out, m);
    char *lines = b->out.lines.data;
    rw_batch_ref(b); /* a sink still holds it */
    rw_batch_keep_output(b, &spare);
    CHECK(spare.lines.data == NULL);
    CHECK(b->out.lines.data == lines);
    rw_batch_unref(b);
    rw_batch_keep_output(b, &spare); /* the owner's is the last reference */
    CHECK(spare.lines.data == lines);
    CHECK(b->out.lines.data == NULL);
    rw_batch_unref(b);
    struct rw_batch *c = rw_batch_new(&q);
    CHECK(c != NULL);
    rw_batch_use_output(c, &spare);
    CHECK(c->out.lines.data == lines);
    CHECK_UINT(c->out.lines.len, 0);
    CHECK_UINT(c->out.n, 0);
    CHECK(spare.lines.data == NULL);
    rw_batch_use_output(c, &spare); /* no spare: unchanged */
    CHECK(c->out.lines.data == lines);
    rw_batch_unref(c);
    rw_output_free(&spare);
    rw_ack_queue_destroy(&q);
}

TAP_MAIN
