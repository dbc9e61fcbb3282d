/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/worker.h"

#include "rarewatch/strutil.h"
#include "tap.h"

TEST(stalled_worker_is_named)
{
    struct rw_worker a, b;
    worker_register(&a, "shard-a");
    worker_register(&b, "shard-b");
    CHECK_UINT(worker_count(), 2);
    uint64_t now = now_monotonic_usec();
    char name[64] = "";
    uint64_t silent = 0;
    CHECK(worker_all_alive(now, 1000000, name, sizeof(name), &silent));
    /* b last progressed 5 s "ago": a 2 s watchdog period must flag it. */
    atomic_store(&b.last_progress_usec, now - 5000000);
    CHECK(!worker_all_alive(now, 2000000, name, sizeof(name), &silent));
    CHECK_STR(name, "shard-b");
    CHECK_UINT(silent, 5000000);
    worker_progress(&b);
    CHECK(worker_all_alive(now_monotonic_usec(), 2000000, name, sizeof(name), &silent));
    worker_unregister(&b);
    worker_unregister(&a);
    CHECK_UINT(worker_count(), 0);
    CHECK(worker_all_alive(now, 1, NULL, 0, NULL));
}

TAP_MAIN
