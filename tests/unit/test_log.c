/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/log.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tap.h"

/* Run fn with stderr captured into a temporary file; returns the text. */
static char *capture_stderr(void (*fn)(void))
{
    char path[] = "/tmp/rw-log-test-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return NULL;
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    char *buf = calloc(1, 65536);
    ssize_t n = read(fd, buf, 65535);
    (void)n;
    close(fd);
    unlink(path);
    return buf;
}

static unsigned count(const char *hay, const char *needle)
{
    unsigned n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static void log_many(void)
{
    for (int i = 0; i < 10; i++)
        log_warning("repeated %d", i);
}

TEST(rate_limited_per_source_line)
{
    log_setup(LOG_TARGET_STDERR);
    log_set_level(LOG_DEBUG);
    log_set_rate_limit(3600ULL * 1000000, 3);
    uint64_t before = log_suppressed_total();
    char *out = capture_stderr(log_many);
    CHECK(out != NULL);
    if (out) {
        CHECK_UINT(count(out, "repeated"), 3);
        CHECK_CONTAINS(out, "warning: repeated 0");
        free(out);
    }
    CHECK_UINT(log_suppressed_total() - before, 7);
}

static void log_levels(void)
{
    log_set_level(LOG_NOTICE);
    log_info("hidden info");
    log_notice("shown notice");
    log_set_level(LOG_DEBUG);
    log_debug("shown debug");
}

TEST(level_filters)
{
    log_set_rate_limit(0, 0);
    char *out = capture_stderr(log_levels);
    CHECK(out && !strstr(out, "hidden info"));
    CHECK_CONTAINS(out, "notice: shown notice");
    CHECK_CONTAINS(out, "debug: shown debug");
    free(out);
}

static void log_with_fields(void)
{
    struct log_fields ctx = { .shard_id = "shardId-000000000001", .stream = "orders" };
    log_context_set(&ctx);
    log_fields(LOG_ERR, 0, (&(struct log_fields){ .aws_error = "ThrottlingException",
                                                   .aws_request_id = "req-1" }),
               "put failed");
    int r = log_error_errno(-EACCES, "open: %m");
    CHECK_INT(r, -EACCES);
    log_context_set(NULL);
    log_info("no context");
}

TEST(structured_fields_on_stderr)
{
    log_set_level(LOG_INFO);
    char *out = capture_stderr(log_with_fields);
    CHECK_CONTAINS(out, "err [shard=shardId-000000000001 stream=orders aws_error=ThrottlingException request_id=req-1]: put failed");
    CHECK_CONTAINS(out, "open: Permission denied");
    CHECK_CONTAINS(out, "info: no context");
    free(out);
}

TEST(level_names)
{
    CHECK_INT(log_level_from_string("debug"), LOG_DEBUG);
    CHECK_INT(log_level_from_string("warning"), LOG_WARNING);
    CHECK_INT(log_level_from_string("error"), LOG_ERR);
    CHECK_INT(log_level_from_string("loud"), -EINVAL);
    CHECK_STR(log_level_to_string(LOG_INFO), "info");
}

TAP_MAIN
