/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The systemd lifecycle of rarewatchd, in one place: signals through a
 * signalfd (no async handlers), sd_notify READY/STATUS/RELOADING/STOPPING,
 * the watchdog gated on worker progress, and configuration reloads that
 * publish a new immutable snapshot atomically or keep the old one.
 *
 * The pipeline plugs in through struct daemon_ops.
 */
#include <stdbool.h>
#include <stdint.h>

#include "rarewatch/buf.h"
#include "rarewatch/conf.h"

struct daemon_ops {
    /* Start with cfg (borrowed: conf_ref() it to keep it). < 0 aborts. */
    int (*start)(void *ud, struct rw_config *cfg);
    /* Check that new_cfg can replace old and prepare for it; on < 0 the old
     * configuration stays and the reasons are in diag. Runs on the main
     * thread before the new snapshot is published. */
    int (*reload)(void *ud, struct rw_config *old, struct rw_config *new_cfg, struct conf_diag *diag);
    /* The new snapshot is published; apply what needs an explicit push. */
    void (*reloaded)(void *ud, struct rw_config *cfg);
    /* Stop taking new work, drain in-flight work until deadline (monotonic
     * usec), flush. Returns 0 when everything drained, < 0 otherwise. */
    int (*stop)(void *ud, uint64_t deadline_usec);
    /* One human line for STATUS=. */
    void (*status)(void *ud, struct buf *out);
};

#define EXIT_CONFIG 78 /* EX_CONFIG */

/* Runs until SIGTERM/SIGINT. Returns the process exit code: 0 after a clean
 * stop, EXIT_CONFIG when the configuration is invalid at start, 1 on other
 * failures. */
int daemon_main(const char *config_path, const struct daemon_ops *ops, void *ud);

/* The current snapshot (a new reference; conf_unref() it). Workers compare
 * daemon_config_generation() with the one they hold at each step and fetch
 * the new snapshot only when it changed. */
struct rw_config *daemon_config(void);
uint64_t daemon_config_generation(void);
/* Publish (used by daemon_main and by tests). Takes a reference. */
void daemon_config_publish(struct rw_config *cfg);
/* Apply [log] settings from a snapshot. */
void daemon_apply_log_config(const struct rw_config *cfg);
