/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rarewatch/buf.h"
#include "rarewatch/ckpt.h"
#include "rarewatch/fsutil.h"
#include "rarewatch/strutil.h"

struct file_store {
    char *dir; /* <directory>/checkpoints/<stream> */
};

const char *ckpt_state_name(enum ckpt_state s)
{
    switch (s) {
    case CKPT_NONE: return "NONE";
    case CKPT_SEQUENCE: return "SEQUENCE";
    case CKPT_SHARD_END: return "SHARD_END";
    case CKPT_TRIM_HORIZON: return "TRIM_HORIZON";
    case CKPT_LATEST: return "LATEST";
    case CKPT_AT_TIMESTAMP: return "AT_TIMESTAMP";
    }
    return "?";
}

/* Shard ids and stream names become file names: keep them harmless. */
static bool safe_name(const char *s)
{
    if (!*s || strlen(s) > 200 || streq(s, ".") || streq(s, ".."))
        return false;
    for (; *s; s++)
        if (*s == '/' || (unsigned char)*s < 0x20)
            return false;
    return true;
}

int ckpt_parse(const char *text, size_t len, struct checkpoint *cp)
{
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return -ENOMEM;
    json_object *o = json_tokener_parse_ex(tok, text, (int)MIN(len, (size_t)INT32_MAX));
    bool ok = o && json_tokener_get_error(tok) == json_tokener_success;
    json_tokener_free(tok);
    json_object *st = NULL, *seq = NULL, *sub = NULL;
    if (!ok || !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, "state", &st) || !json_object_is_type(st, json_type_string)) {
        json_object_put(o);
        return -EBADMSG;
    }
    memset(cp, 0, sizeof(*cp));
    const char *s = json_object_get_string(st);
    if (streq(s, "SHARD_END"))
        cp->state = CKPT_SHARD_END;
    else if (streq(s, "SEQUENCE")) {
        cp->state = CKPT_SEQUENCE;
        if (!json_object_object_get_ex(o, "sequence_number", &seq) ||
            !json_object_is_type(seq, json_type_string) ||
            json_object_get_string_len(seq) == 0 ||
            json_object_get_string_len(seq) > CKPT_SEQ_MAX) {
            json_object_put(o);
            return -EBADMSG;
        }
        snprintf(cp->sequence, sizeof(cp->sequence), "%s", json_object_get_string(seq));
        for (const char *p = cp->sequence; *p; p++)
            if (*p < '0' || *p > '9') {
                json_object_put(o);
                return -EBADMSG;
            }
        if (json_object_object_get_ex(o, "sub_sequence_number", &sub))
            cp->sub_sequence = (uint64_t)json_object_get_int64(sub);
    } else {
        json_object_put(o);
        return -EBADMSG;
    }
    json_object_put(o);
    return 0;
}

static int file_load(void *impl, const char *shard_id, struct checkpoint *cp)
{
    struct file_store *fs = impl;
    if (!safe_name(shard_id))
        return -EINVAL;
    _cleanup_free_ char *path = NULL;
    if (asprintf(&path, "%s/%s.json", fs->dir, shard_id) < 0)
        return -ENOMEM;
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n < 0)
        return -errno;
    buf[n] = 0;
    return ckpt_parse(buf, (size_t)n, cp);
}

static int file_save(void *impl, const char *shard_id, const struct checkpoint *cp,
                     char *const *parents)
{
    struct file_store *fs = impl;
    if (!safe_name(shard_id))
        return -EINVAL;
    _cleanup_buf_ struct buf b = BUF_INIT;
    char ts[40];
    buf_puts(&b, "{\"shard_id\":");
    buf_put_json_string(&b, shard_id, strlen(shard_id));
    buf_printf(&b, ",\"state\":\"%s\"", ckpt_state_name(cp->state));
    if (cp->state == CKPT_SEQUENCE)
        buf_printf(&b, ",\"sequence_number\":\"%s\",\"sub_sequence_number\":%llu", cp->sequence,
                   (unsigned long long)cp->sub_sequence);
    buf_puts(&b, ",\"parent_shard_ids\":[");
    for (size_t i = 0; parents && parents[i]; i++) {
        if (i)
            buf_putc(&b, ',');
        buf_put_json_string(&b, parents[i], strlen(parents[i]));
    }
    buf_printf(&b, "],\"updated\":\"%s\"}\n", format_iso8601_ms(ts, sizeof(ts), now_realtime_usec()));
    if (!b.data)
        return -ENOMEM;

    _cleanup_free_ char *path = NULL;
    if (asprintf(&path, "%s/%s.json", fs->dir, shard_id) < 0)
        return -ENOMEM;
    return write_file_atomic(path, b.data, b.len, 0640);
}

static bool file_owns(void *impl, const char *shard_id) { return true; }
static void file_release(void *impl, const char *shard_id) {}

static void file_free(void *impl)
{
    struct file_store *fs = impl;
    if (fs) {
        free(fs->dir);
        free(fs);
    }
}

static const struct ckpt_store_ops file_ops = {
    .name = "file",
    .load = file_load,
    .save = file_save,
    .owns = file_owns,
    .release = file_release,
    .free = file_free,
};

int ckpt_file_store_new(const char *dir, const char *stream, struct ckpt_store **out)
{
    /* An ARN holds '/' and ':'; name the folder after the stream name. */
    const char *name = strrchr(stream, '/');
    name = name ? name + 1 : stream;
    if (!safe_name(name))
        return -EINVAL;
    struct file_store *fs = calloc(1, sizeof(*fs));
    if (!fs)
        return -ENOMEM;
    if (asprintf(&fs->dir, "%s/checkpoints/%s", dir, name) < 0) {
        free(fs);
        return -ENOMEM;
    }
    int r = mkdir_p(fs->dir, 0750);
    if (r < 0) {
        file_free(fs);
        return r;
    }
    struct ckpt_store *s = calloc(1, sizeof(*s));
    if (!s) {
        file_free(fs);
        return -ENOMEM;
    }
    s->ops = &file_ops;
    s->impl = fs;
    *out = s;
    return 0;
}

struct ckpt_store *ckpt_store_free(struct ckpt_store *s)
{
    if (s) {
        if (s->ops && s->ops->free)
            s->ops->free(s->impl);
        free(s);
    }
    return NULL;
}
