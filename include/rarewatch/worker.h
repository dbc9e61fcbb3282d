/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Registry of long-running threads and their progress, for the systemd
 * watchdog: the daemon pings WATCHDOG=1 only while every registered worker
 * has shown progress within the watchdog period, so a hung worker gets the
 * daemon restarted instead of silently stalling a shard.
 *
 * A worker calls worker_progress() whenever it completes a step, including
 * an idle step (a bounded wait that timed out): being idle is progress,
 * being stuck in a call is not.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rw_worker {
    char name[64];
    _Atomic uint64_t last_progress_usec; /* CLOCK_MONOTONIC */
    struct rw_worker *next;
};

void worker_register(struct rw_worker *w, const char *name);
void worker_unregister(struct rw_worker *w);
void worker_progress(struct rw_worker *w);
/* True when every registered worker progressed within `period` before
 * `now`; otherwise copies the first stalled worker's name into `stalled`
 * and its silence into *silent_usec. */
bool worker_all_alive(uint64_t now, uint64_t period, char *stalled, size_t n,
                      uint64_t *silent_usec);
size_t worker_count(void);
