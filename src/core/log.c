/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "rarewatch/strutil.h"

static _Atomic int log_level = LOG_INFO;
static bool journal;
static _Thread_local const struct log_fields *thread_ctx;

/* Rate limiting per source line: a burst of messages per interval, then
 * silence, then one line saying how many were dropped. A small fixed table
 * keyed by (file, line): a collision only means two sources share a budget. */
#define RL_SLOTS 512
struct rl_slot {
    const char *file;
    int line;
    uint64_t window_start;
    unsigned count;
    unsigned suppressed;
};
static struct rl_slot rl_table[RL_SLOTS];
static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t rl_interval = 10 * USEC_PER_SEC;
static unsigned rl_burst = 20;
static _Atomic uint64_t rl_suppressed_total;

static const char *const level_names[] = { "emerg", "alert", "crit", "err",
                                           "warning", "notice", "info", "debug" };

int log_level_from_string(const char *s)
{
    for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
        if (streq(s, level_names[i]))
            return (int)i;
    if (streq(s, "error"))
        return LOG_ERR;
    if (streq(s, "warn"))
        return LOG_WARNING;
    return -EINVAL;
}

const char *log_level_to_string(int level)
{
    if (level < 0 || (size_t)level >= ELEMENTSOF(level_names))
        return "?";
    return level_names[level];
}

static bool stderr_is_journal(void)
{
    const char *e = getenv("JOURNAL_STREAM");
    if (!e)
        return false;
    unsigned long long dev, ino;
    if (sscanf(e, "%llu:%llu", &dev, &ino) != 2)
        return false;
    struct stat st;
    if (fstat(STDERR_FILENO, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_setup(enum log_target target)
{
    switch (target) {
    case LOG_TARGET_JOURNAL: journal = true; break;
    case LOG_TARGET_STDERR: journal = false; break;
    case LOG_TARGET_AUTO: journal = stderr_is_journal(); break;
    }
}

bool log_to_journal(void) { return journal; }
void log_set_level(int level) { atomic_store_explicit(&log_level, level, memory_order_relaxed); }
int log_get_level(void) { return atomic_load_explicit(&log_level, memory_order_relaxed); }

void log_set_rate_limit(uint64_t interval_usec, unsigned burst)
{
    pthread_mutex_lock(&rl_lock);
    rl_interval = interval_usec;
    rl_burst = burst;
    pthread_mutex_unlock(&rl_lock);
}

uint64_t log_suppressed_total(void) { return atomic_load(&rl_suppressed_total); }

void log_context_set(const struct log_fields *ctx) { thread_ctx = ctx; }
const struct log_fields *log_context_get(void) { return thread_ctx; }

/* Returns false when the message must be dropped; *report receives the
 * number dropped in the previous window (to be mentioned once). */
static bool rate_limit_pass(const char *file, int line, unsigned *report)
{
    *report = 0;
    if (rl_burst == 0 || rl_interval == 0)
        return true;
    uintptr_t h = ((uintptr_t)file >> 3) * 31u + (unsigned)line;
    struct rl_slot *s = &rl_table[h % RL_SLOTS];
    uint64_t now = now_monotonic_usec();
    bool pass;
    pthread_mutex_lock(&rl_lock);
    if (s->file != file || s->line != line || now - s->window_start >= rl_interval) {
        if (s->file == file && s->line == line)
            *report = s->suppressed;
        s->file = file;
        s->line = line;
        s->window_start = now;
        s->count = 0;
        s->suppressed = 0;
    }
    if (s->count < rl_burst) {
        s->count++;
        pass = true;
    } else {
        s->suppressed++;
        pass = false;
    }
    pthread_mutex_unlock(&rl_lock);
    if (!pass)
        atomic_fetch_add(&rl_suppressed_total, 1);
    return pass;
}

#define MAX_IOV 16

static void emit_journal(int level, int error, const struct log_fields *f, const char *file,
                         int line, const char *func, const char *msg)
{
    char prio[32], cfile[256], cline[32], cfunc[128], errno_field[32];
    char fields[6][192];
    struct iovec iov[MAX_IOV];
    size_t n = 0;
    _cleanup_free_ char *message = NULL;
    if (asprintf(&message, "MESSAGE=%s", msg) < 0)
        return;
#define ADD(str) iov[n++] = (struct iovec){ .iov_base = (void *)(str), .iov_len = strlen(str) }
    ADD(message);
    snprintf(prio, sizeof(prio), "PRIORITY=%d", level);
    ADD(prio);
    snprintf(cfile, sizeof(cfile), "CODE_FILE=%s", file);
    ADD(cfile);
    snprintf(cline, sizeof(cline), "CODE_LINE=%d", line);
    ADD(cline);
    snprintf(cfunc, sizeof(cfunc), "CODE_FUNC=%s", func);
    ADD(cfunc);
    if (error) {
        snprintf(errno_field, sizeof(errno_field), "ERRNO=%d", error < 0 ? -error : error);
        ADD(errno_field);
    }
    const char *names[6] = { "SHARD_ID", "STREAM", "SINK", "DETECTOR", "AWS_ERROR", "AWS_REQUEST_ID" };
    const char *vals[6] = { f->shard_id, f->stream, f->sink, f->detector, f->aws_error, f->aws_request_id };
    for (int i = 0; i < 6; i++)
        if (vals[i]) {
            snprintf(fields[i], sizeof(fields[i]), "%s=%s", names[i], vals[i]);
            ADD(fields[i]);
        }
    ADD("SYSLOG_IDENTIFIER=rarewatchd");
#undef ADD
    sd_journal_sendv(iov, (int)n);
}

static void emit_stderr(int level, const struct log_fields *f, const char *msg)
{
    char ts[40];
    format_iso8601_ms(ts, sizeof(ts), now_realtime_usec());
    char ctx[512] = "";
    size_t off = 0;
    const char *names[6] = { "shard", "stream", "sink", "detector", "aws_error", "request_id" };
    const char *vals[6] = { f->shard_id, f->stream, f->sink, f->detector, f->aws_error, f->aws_request_id };
    for (int i = 0; i < 6; i++)
        if (vals[i] && off < sizeof(ctx)) {
            int w = snprintf(ctx + off, sizeof(ctx) - off, "%s%s=%s", off ? " " : " [", names[i], vals[i]);
            if (w > 0)
                off += (size_t)w;
        }
    if (off && off < sizeof(ctx) - 1)
        strcat(ctx, "]");
    /* One write per line so concurrent threads do not interleave. */
    fprintf(stderr, "%s %s%s: %s\n", ts, log_level_to_string(level), ctx, msg);
}

int log_internal(int level, int error, const struct log_fields *fields, const char *file,
                 int line, const char *func, const char *fmt, ...)
{
    int ret = error > 0 ? -error : error;
    bool nolimit = level & LOG_F_NOLIMIT;
    level &= 0xff;
    if (level > log_get_level())
        return ret;
    unsigned dropped = 0;
    if (!nolimit && !rate_limit_pass(file, line, &dropped))
        return ret;

    struct log_fields f = { 0 };
    const struct log_fields *c = thread_ctx;
    if (c)
        f = *c;
    if (fields) {
#define MERGE(x) if (fields->x) f.x = fields->x
        MERGE(shard_id);
        MERGE(stream);
        MERGE(sink);
        MERGE(detector);
        MERGE(aws_error);
        MERGE(aws_request_id);
#undef MERGE
    }

    char msg[4096];
    int saved = errno;
    if (error)
        errno = error < 0 ? -error : error;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    errno = saved;
    if (n < 0)
        return ret;
    if (dropped) {
        size_t l = strlen(msg);
        snprintf(msg + l, sizeof(msg) - l, " (%u similar messages suppressed)", dropped);
    }
    if (journal)
        emit_journal(level, error, &f, file, line, func, msg);
    else
        emit_stderr(level, &f, msg);
    return ret;
}
