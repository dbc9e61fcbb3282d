/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/deadletter.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rarewatch/base64.h"
#include "rarewatch/fsutil.h"
#include "rarewatch/log.h"
#include "rarewatch/strutil.h"

#define DL_FILE_MAX (64u << 20)

struct deadletter {
    pthread_mutex_t lock;
    char *dir;
    uint64_t max_size;
    int fd;
    uint64_t file_size;
    uint64_t used; /* bytes in the directory, tracked after one scan */
    _Atomic uint64_t count;
    unsigned file_seq;
    struct buf line;
    void (*tap)(void *ud, const char *lines, size_t len);
    void *tap_ud;
};

int deadletter_new(const char *dir, uint64_t max_size, struct deadletter **out)
{
    int r = mkdir_p(dir, 0750);
    if (r < 0)
        return r;
    struct deadletter *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    pthread_mutex_init(&d->lock, NULL);
    d->dir = strdup(dir);
    d->max_size = max_size;
    d->fd = -1;
    long long used = dir_size(dir);
    d->used = used > 0 ? (uint64_t)used : 0;
    if (!d->dir) {
        deadletter_free(d);
        return -ENOMEM;
    }
    *out = d;
    return 0;
}

struct deadletter *deadletter_free(struct deadletter *d)
{
    if (d) {
        if (d->fd >= 0)
            close(d->fd);
        buf_free(&d->line);
        free(d->dir);
        pthread_mutex_destroy(&d->lock);
        free(d);
    }
    return NULL;
}

void deadletter_set_max_size(struct deadletter *d, uint64_t max_size)
{
    pthread_mutex_lock(&d->lock);
    d->max_size = max_size;
    pthread_mutex_unlock(&d->lock);
}

uint64_t deadletter_count(const struct deadletter *d) { return atomic_load(&d->count); }
const char *deadletter_dir(const struct deadletter *d) { return d->dir; }

void deadletter_set_tap(struct deadletter *d, void (*fn)(void *ud, const char *lines, size_t len),
                        void *ud)
{
    pthread_mutex_lock(&d->lock);
    d->tap = fn;
    d->tap_ud = ud;
    pthread_mutex_unlock(&d->lock);
}

static int open_file(struct deadletter *d)
{
    char ts[40], name[96];
    format_iso8601_ms(ts, sizeof(ts), now_realtime_usec());
    /* 2026-11-28T05:10:00.123Z -> 20261128T051000Z */
    snprintf(name, sizeof(name), "deadletter-%.4s%.2s%.2sT%.2s%.2s%.2sZ-%d-%u.ndjson", ts, ts + 5,
             ts + 8, ts + 11, ts + 14, ts + 17, (int)getpid(), d->file_seq++);
    _cleanup_free_ char *path = NULL;
    if (asprintf(&path, "%s/%s", d->dir, name) < 0)
        return -ENOMEM;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    int r = fsync_dir(d->dir);
    if (r < 0) {
        close(fd);
        return r;
    }
    d->fd = fd;
    d->file_size = 0;
    return 0;
}

int deadletter_write(struct deadletter *d, const struct deadletter_item *items, size_t n)
{
    if (n == 0)
        return 0;
    pthread_mutex_lock(&d->lock);
    struct buf *b = &d->line;
    buf_reset(b);
    char ts[40];
    format_iso8601_ms(ts, sizeof(ts), now_realtime_usec());
    int r = 0;
    for (size_t i = 0; i < n && r >= 0; i++) {
        const struct deadletter_item *it = &items[i];
        r = buf_printf(b, "{\"time\":\"%s\",\"stage\":\"%s\",\"component\":", ts, rw_stage_name(it->stage));
        r = r ?: buf_put_json_string(b, it->component ? it->component : "", it->component ? strlen(it->component) : 0);
        r = r ?: buf_puts(b, ",\"reason\":");
        r = r ?: buf_put_json_string(b, it->reason ? it->reason : "", it->reason ? strlen(it->reason) : 0);
        if (it->prov) {
            r = r ?: buf_putc(b, ',');
            r = r ?: rw_provenance_append_json(b, it->prov);
        }
        r = r ?: buf_puts(b, ",\"data_base64\":\"");
        r = r ?: buf_put_base64(b, it->data, it->len);
        r = r ?: buf_puts(b, "\"}\n");
    }
    if (r < 0)
        goto out;
    if (d->used + b->len > d->max_size) {
        r = -ENOSPC;
        goto out;
    }
    if (d->fd >= 0 && d->file_size + b->len > DL_FILE_MAX) {
        close(d->fd);
        d->fd = -1;
    }
    if (d->fd < 0 && (r = open_file(d)) < 0)
        goto out;
    r = write_all(d->fd, b->data, b->len);
    if (r == 0 && fdatasync(d->fd) < 0)
        r = -errno;
    if (r == 0) {
        d->file_size += b->len;
        d->used += b->len;
        atomic_fetch_add(&d->count, n);
        if (d->tap)
            d->tap(d->tap_ud, b->data, b->len);
    }
out:
    pthread_mutex_unlock(&d->lock);
    return r;
}
