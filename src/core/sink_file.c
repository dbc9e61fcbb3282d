/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/sink_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rarewatch/fsutil.h"
#include "rarewatch/log.h"
#include "rarewatch/strutil.h"

struct file_sink {
    struct rw_queued_sink qs; /* first: the rw_sink pointer is this struct */
    char *dir;
    uint64_t rotate_interval, rotate_size;
    int fd;
    uint64_t opened_usec, size;
    int hour; /* UTC hour-of-epoch the file belongs to */
    unsigned seq;
    char host[64];
};

static int open_new(struct file_sink *fs)
{
    uint64_t now = now_realtime_usec();
    time_t t = (time_t)(now / USEC_PER_SEC);
    struct tm tm;
    gmtime_r(&t, &tm);
    _cleanup_free_ char *sub = NULL, *path = NULL;
    if (asprintf(&sub, "%s/%04d/%02d/%02d/%02d", fs->dir, tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour) < 0)
        return -ENOMEM;
    int r = mkdir_p(sub, 0750);
    if (r < 0)
        return r;
    if (asprintf(&path, "%s/rarewatch-%s-%d-%04d%02d%02dT%02d%02d%02dZ-%06u.ndjson", sub, fs->host,
                 (int)getpid(), tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, fs->seq++) < 0)
        return -ENOMEM;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    /* The new name must survive a crash as much as its data. */
    if ((r = fsync_dir(sub)) < 0) {
        close(fd);
        return r;
    }
    fs->fd = fd;
    fs->opened_usec = now;
    fs->size = 0;
    fs->hour = (int)(t / 3600);
    log_debug("output file %s", path);
    return 0;
}

static bool needs_rotation(struct file_sink *fs)
{
    uint64_t now = now_realtime_usec();
    return fs->fd >= 0 && (fs->size >= fs->rotate_size ||
                           now - fs->opened_usec >= fs->rotate_interval ||
                           (int)(now / USEC_PER_SEC / 3600) != fs->hour);
}

static void close_file(struct file_sink *fs)
{
    if (fs->fd >= 0) {
        close(fs->fd);
        fs->fd = -1;
    }
}

static int flush(struct rw_queued_sink *qs, struct rw_batch **batches, size_t n)
{
    struct file_sink *fs = (struct file_sink *)qs;
    uint64_t backoff = 100 * USEC_PER_MSEC;
    for (;;) {
        int r = 0;
        uint64_t lines = 0, bytes = 0;
        for (size_t i = 0; i < n && r >= 0; i++) {
            if (needs_rotation(fs)) {
                /* Everything written so far must be durable before the acks. */
                if (fdatasync(fs->fd) < 0) {
                    r = -errno;
                    break;
                }
                close_file(fs);
            }
            if (fs->fd < 0 && (r = open_new(fs)) < 0)
                break;
            struct rw_output *o = &batches[i]->out;
            r = write_all(fs->fd, o->lines.data ? o->lines.data : "", o->lines.len);
            fs->size += o->lines.len;
            lines += o->n;
            bytes += o->lines.len;
        }
        if (r >= 0 && fdatasync(fs->fd) < 0)
            r = -errno;
        if (r >= 0) {
            atomic_fetch_add(&qs->sink.stats.batches, n);
            atomic_fetch_add(&qs->sink.stats.lines, lines);
            atomic_fetch_add(&qs->sink.stats.bytes, bytes);
            for (size_t i = 0; i < n; i++)
                rw_batch_ack(batches[i]);
            return 0;
        }
        /* A full or failing disk: the batches stay unacknowledged, so the
         * shards stop at max_inflight_batches and nothing is checkpointed
         * past them. The file may hold a partial write: start a new one and
         * write the whole group again (at least once). */
        atomic_fetch_add(&qs->sink.stats.errors, 1);
        log_error_errno(r, "cannot write output to %s: %m; retrying", fs->dir);
        close_file(fs);
        if (rw_queued_sink_stopping(qs))
            return r;
        struct timespec ts = { (time_t)(backoff / USEC_PER_SEC), (long)(backoff % USEC_PER_SEC) * 1000 };
        nanosleep(&ts, NULL);
        backoff = MIN(backoff * 2, 10 * USEC_PER_SEC);
        atomic_fetch_add(&qs->sink.stats.retries, 1);
    }
}

static void idle(struct rw_queued_sink *qs)
{
    struct file_sink *fs = (struct file_sink *)qs;
    if (needs_rotation(fs))
        close_file(fs);
}

static int stop(struct rw_sink *s, uint64_t deadline)
{
    int r = rw_queued_sink_stop(s, deadline);
    close_file((struct file_sink *)s);
    return r;
}

static void sink_free(struct rw_sink *s)
{
    struct file_sink *fs = (struct file_sink *)s;
    close_file(fs);
    free(fs->qs.q);
    free(fs->dir);
    free(fs);
}

static const struct rw_sink_ops ops = {
    .submit = rw_queued_sink_submit,
    .stop = stop,
    .free = sink_free,
};

int sink_file_new(const struct sink_file_options *o, struct rw_sink **out)
{
    int r = mkdir_p(o->directory, 0750);
    if (r < 0)
        return r;
    struct file_sink *fs = calloc(1, sizeof(*fs));
    if (!fs)
        return -ENOMEM;
    fs->dir = strdup(o->directory);
    fs->rotate_interval = o->rotate_interval_usec;
    fs->rotate_size = o->rotate_size;
    fs->fd = -1;
    if (gethostname(fs->host, sizeof(fs->host)) < 0 || !fs->host[0])
        snprintf(fs->host, sizeof(fs->host), "localhost");
    for (char *p = fs->host; *p; p++)
        if (*p == '/')
            *p = '_';
    fs->qs.sink.ops = &ops;
    fs->qs.idle = idle;
    fs->qs.idle_interval_usec = USEC_PER_SEC;
    if (!fs->dir || (r = rw_queued_sink_start(&fs->qs, "file", flush)) < 0) {
        free(fs->dir);
        free(fs);
        return r < 0 ? r : -ENOMEM;
    }
    *out = &fs->qs.sink;
    return 0;
}
