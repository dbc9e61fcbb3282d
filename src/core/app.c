/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/app.h"

#include <stdlib.h>

#include "rarewatch/conf_schema.h"
#include "rarewatch/log.h"
#include "rarewatch/worker.h"

struct app {
    struct rw_config *cfg;
};

struct app *app_new(void) { return calloc(1, sizeof(struct app)); }

struct app *app_free(struct app *a)
{
    if (a) {
        conf_unref(a->cfg);
        free(a);
    }
    return NULL;
}

static int app_start(void *ud, struct rw_config *cfg)
{
    struct app *a = ud;
    a->cfg = conf_ref(cfg);
    return 0;
}

static int app_reload(void *ud, struct rw_config *old, struct rw_config *nc, struct conf_diag *d)
{
    return 0;
}

static void app_reloaded(void *ud, struct rw_config *cfg)
{
    struct app *a = ud;
    conf_unref(a->cfg);
    a->cfg = conf_ref(cfg);
    log_debug("pipeline now on configuration generation %llu", (unsigned long long)cfg->generation);
}

static int app_stop(void *ud, uint64_t deadline) { return 0; }

static void app_status(void *ud, struct buf *out)
{
    struct app *a = ud;
    buf_printf(out, "idle: no stream configured (config generation %llu, %zu workers)",
               (unsigned long long)(a->cfg ? a->cfg->generation : 0), worker_count());
}

const struct daemon_ops app_daemon_ops = {
    .start = app_start,
    .reload = app_reload,
    .reloaded = app_reloaded,
    .stop = app_stop,
    .status = app_status,
};
