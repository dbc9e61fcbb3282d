/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Logging: native journald entries with structured fields when stderr is
 * connected to the journal (JOURNAL_STREAM matches), readable lines on
 * stderr otherwise. Repeated messages from one source line are rate-limited.
 *
 * Structured fields: SHARD_ID, STREAM, SINK, DETECTOR come from a
 * per-thread context (a shard worker sets its shard once), AWS_ERROR and
 * AWS_REQUEST_ID from the call (log_aws()). Never pass secrets to the log:
 * credentials, signatures and session tokens have no field here on purpose.
 */
#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

#include "rarewatch/macro.h"

struct log_fields {
    const char *shard_id;
    const char *stream;
    const char *sink;
    const char *detector;
    const char *aws_error;
    const char *aws_request_id;
};

enum log_target {
    LOG_TARGET_AUTO,
    LOG_TARGET_JOURNAL,
    LOG_TARGET_STDERR,
};

/* Decide the target (AUTO: journal when JOURNAL_STREAM matches stderr). */
void log_setup(enum log_target target);
void log_set_level(int level);
int log_get_level(void);
void log_set_rate_limit(uint64_t interval_usec, unsigned burst);
bool log_to_journal(void);
/* "info" -> LOG_INFO; -EINVAL for unknown names. */
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);

/* Per-thread context fields (copied pointers: the strings must outlive the
 * thread's use of them). Pass NULL to clear. */
void log_context_set(const struct log_fields *ctx);
const struct log_fields *log_context_get(void);

/* Or'ed into the level: never rate-limited (each of a list of configuration
 * errors must be seen). */
#define LOG_F_NOLIMIT 0x100

/* Returns -abs(error) when error != 0, else 0, so callers can write
 * `return log_error_errno(r, "...: %m");` (%m prints strerror(-error)). */
int log_internal(int level, int error, const struct log_fields *fields, const char *file,
                 int line, const char *func, const char *fmt, ...) _printf_(7, 8);

#define log_full_errno(level, error, ...) \
    log_internal((level), (error), NULL, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_full(level, ...) log_full_errno((level), 0, __VA_ARGS__)
#define log_fields(level, error, fieldsp, ...) \
    log_internal((level), (error), (fieldsp), __FILE__, __LINE__, __func__, __VA_ARGS__)

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)
#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, (e), __VA_ARGS__)

/* Cheap check to skip building expensive debug output. */
static inline bool log_enabled(int level) { return level <= log_get_level(); }

/* For tests: messages suppressed by the rate limiter so far. */
uint64_t log_suppressed_total(void);
