/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/app.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rarewatch/aws.h"
#include "rarewatch/ckpt.h"
#include "rarewatch/conf_schema.h"
#include "rarewatch/consumer.h"
#include "rarewatch/deadletter.h"
#include "rarewatch/detect_stage.h"
#include "rarewatch/fsutil.h"
#include "rarewatch/record_stage.h"
#include "rarewatch/log.h"
#include "rarewatch/sink_cloudwatch.h"
#include "rarewatch/sink_file.h"
#include "rarewatch/sink_firehose.h"
#include "rarewatch/strutil.h"
#include "rarewatch/transform.h"
#include "rarewatch/worker.h"

#define MAX_SINKS 4

struct app {
    struct rw_config *cfg;
    /* The detectors: workers hold the read lock while scoring a batch; a
     * reload swaps in a new stage (keeping unchanged detectors' state)
     * under the write lock. */
    pthread_rwlock_t det_lock;
    struct detect_stage *det;
    struct detect_stage *det_next; /* compiled by reload(), installed by reloaded() */
    /* The transforms and detector `where`s: swapped with det, under det_lock. */
    struct xf_stage *xf, *xf_next;
    char *det_state_path;
    uint64_t last_state_save;
    struct aws_settings *aws;
    struct ckpt_store *store;
    struct deadletter *dl;
    struct rw_sink *sinks[MAX_SINKS];
    size_t n_sinks;
    struct rw_sink *cloudwatch;  /* also in sinks[] */
    struct rw_sink *dl_forward;  /* [deadletter] delivery_stream; not a record sink */
    struct consumer *consumer;
    /* [window.NAME] counters summed over the shard workers (each adds what
     * its windows counted since its last batch). */
    _Atomic uint64_t win_emitted, win_late, win_evicted;
    /* Detector ticks (det_tick()): the clock of every active shard worker
     * (clk[i] belongs to clk_owner[i]), and the wall clock of the last tick. */
    pthread_mutex_t clk_lock;
    struct det_clock *clk;
    struct stage_worker **clk_owner;
    size_t n_clk, cap_clk;
    _Atomic int64_t tick_usec;
    uint64_t last_status, last_records;
    double rate;
};

struct app *app_new(void)
{
    struct app *a = calloc(1, sizeof(struct app));
    if (a) {
        pthread_rwlock_init(&a->det_lock, NULL);
        pthread_mutex_init(&a->clk_lock, NULL);
    }
    return a;
}

static void teardown(struct app *a)
{
    if (a->cloudwatch)
        sink_cloudwatch_set_sources(a->cloudwatch, NULL, NULL, 0);
    a->consumer = consumer_free(a->consumer);
    for (size_t i = 0; i < a->n_sinks; i++)
        a->sinks[i] = rw_sink_free(a->sinks[i]);
    a->n_sinks = 0;
    a->cloudwatch = NULL;
    if (a->dl)
        deadletter_set_tap(a->dl, NULL, NULL);
    a->dl_forward = rw_sink_free(a->dl_forward);
    a->dl = deadletter_free(a->dl);
    a->store = ckpt_store_free(a->store);
    a->aws = aws_settings_free(a->aws);
    a->det = detect_stage_free(a->det);
    a->det_next = detect_stage_free(a->det_next);
    a->xf = xf_stage_free(a->xf);
    a->xf_next = xf_stage_free(a->xf_next);
}

struct app *app_free(struct app *a)
{
    if (a) {
        teardown(a);
        conf_unref(a->cfg);
        free(a->det_state_path);
        pthread_rwlock_destroy(&a->det_lock);
        pthread_mutex_destroy(&a->clk_lock);
        free(a->clk);
        free(a->clk_owner);
        free(a);
    }
    return NULL;
}

/* ---- the record stage on the shard workers (record_stage.c, shared with
 * `rarewatch replay`) ---- */

struct stage_worker {
    struct app *app;
    struct rs_worker *rs;
    uint64_t win_emitted, win_late, win_evicted; /* already added to app's */
    size_t clk_slot; /* in app->clk[] */
};

/* A shard worker's clock joins the app's while the worker lives; one that
 * ended (shard closed, lease lost) leaves, so it cannot hold the rate
 * detectors' time back. */
static int clock_register(struct stage_worker *w)
{
    struct app *a = w->app;
    int r = 0;
    pthread_mutex_lock(&a->clk_lock);
    if (a->n_clk == a->cap_clk) {
        size_t cap = a->cap_clk ? 2 * a->cap_clk : 8;
        struct det_clock *c = reallocarray(a->clk, cap, sizeof(*c));
        if (c)
            a->clk = c;
        struct stage_worker **o = c ? reallocarray(a->clk_owner, cap, sizeof(*o)) : NULL;
        if (o) {
            a->clk_owner = o;
            a->cap_clk = cap;
        } else
            r = -ENOMEM;
    }
    if (r == 0) {
        w->clk_slot = a->n_clk++;
        a->clk[w->clk_slot] = (struct det_clock){ .event_time = NAN, .arrival = NAN };
        a->clk_owner[w->clk_slot] = w;
    }
    pthread_mutex_unlock(&a->clk_lock);
    return r;
}

static void clock_unregister(struct stage_worker *w)
{
    struct app *a = w->app;
    pthread_mutex_lock(&a->clk_lock);
    size_t last = --a->n_clk;
    if (w->clk_slot != last) {
        a->clk[w->clk_slot] = a->clk[last];
        a->clk_owner[w->clk_slot] = a->clk_owner[last];
        a->clk_owner[w->clk_slot]->clk_slot = w->clk_slot;
    }
    pthread_mutex_unlock(&a->clk_lock);
}

/* Close the intervals of idle rate keys and forget keys past their
 * idle_expiry (detect_stage_tick()), as replay does as event time moves
 * on. The tick time is the minimum over the shard workers' clocks
 * (detect_watermark()): the detectors' per-key state is shared by every
 * worker, and a tick at a fast shard's time would close the intervals of
 * keys a lagging shard still feeds, counting its records in the wrong
 * interval (or forget keys it is about to update). A walk over every key is not needed per response:
 * one tick per second per app (whichever worker gets there first) keeps
 * alerts within a second of their interval's end. The alert lines ride in
 * this worker's batch, as window lines do, so they reach the sinks and the
 * checkpoint rules hold. Caller holds det_lock (read). */
static int det_tick(struct stage_worker *w, size_t n, double now, struct rw_output *out)
{
    struct app *a = w->app;
    double t = rs_last_event_time(w->rs);
    int64_t now_usec = (int64_t)(now * 1e6);
    pthread_mutex_lock(&a->clk_lock);
    if (n && isfinite(t))
        a->clk[w->clk_slot] = (struct det_clock){ .event_time = t, .arrival = now };
    pthread_mutex_unlock(&a->clk_lock);
    int64_t last = atomic_load(&a->tick_usec);
    if (now_usec - last < (int64_t)USEC_PER_SEC ||
        !atomic_compare_exchange_strong(&a->tick_usec, &last, now_usec))
        return 0;
    pthread_mutex_lock(&a->clk_lock);
    double wm = detect_watermark(a->clk, a->n_clk, now, detect_stage_rate_idle(a->det));
    pthread_mutex_unlock(&a->clk_lock);
    if (isnan(wm))
        return 0;
    /* Ticks may still overlap (one walking many keys for over a second):
     * an interval closes once, as det_rate_tick() moves the key's interval
     * under its stripe lock and a second tick finds it moved. */
    return detect_stage_tick(a->det, wm, out);
}

static void window_counters(struct stage_worker *w)
{
    const struct win_set *ws = rs_windows(w->rs);
    uint64_t emitted = 0, late = 0, evicted = 0;
    for (size_t i = 0; i < win_set_count(ws); i++) {
        struct win_stats st;
        win_set_stats(ws, i, &st);
        emitted += st.emitted;
        late += st.late;
        evicted += st.evicted;
    }
    atomic_fetch_add(&w->app->win_emitted, emitted - w->win_emitted);
    atomic_fetch_add(&w->app->win_late, late - w->win_late);
    atomic_fetch_add(&w->app->win_evicted, evicted - w->win_evicted);
    w->win_emitted = emitted;
    w->win_late = late;
    w->win_evicted = evicted;
}

static void *stage_worker_new(void *ud)
{
    struct app *a = ud;
    struct stage_worker *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->app = a;
    if (!(w->rs = rs_worker_new(a->cfg, &(struct rs_options){ .log_anomalies = true })) ||
        clock_register(w) < 0) {
        rs_worker_free(w->rs);
        free(w);
        return NULL;
    }
    return w;
}

static void stage_worker_free(void *p)
{
    struct stage_worker *w = p;
    clock_unregister(w);
    rs_worker_free(w->rs);
    free(w);
}

static int stage_process(void *p, const struct rw_input_record *in, size_t n, struct rw_output *out)
{
    struct stage_worker *w = p;
    int r = 0;
    double now = (double)now_realtime_usec() / 1e6;
    /* The stages are swapped by a reload under the write lock. */
    pthread_rwlock_rdlock(&w->app->det_lock);
    r = rs_process_batch(w->rs, w->app->xf, w->app->det, in, n, out);
    /* Every GetRecords response, empty ones too: windows of a quiet shard
     * close. Their lines ride in this batch, so the checkpoint never waits
     * for a window (open windows are not state a restart recovers). */
    if (r >= 0)
        r = rs_tick(w->rs, w->app->xf, w->app->det, now, out);
    /* Once per response, not per record; nothing without a rate detector
     * or a keyed detector's idle_expiry. */
    if (r >= 0 && detect_stage_needs_tick(w->app->det))
        r = det_tick(w, n, now, out);
    pthread_rwlock_unlock(&w->app->det_lock);
    if (win_set_count(rs_windows(w->rs)))
        window_counters(w);
    return r;
}

/* ---- lifecycle ---- */

/* [cloudwatch], [firehose] and [deadletter] delivery_stream. The metrics
 * sink comes first so Firehose can report its latencies to it. */
static int start_aws_sinks(struct app *a, struct rw_config *cfg)
{
    int r;
    const char *ns = conf_str(cfg, RWK_cloudwatch_namespace);
    if (ns) {
        struct sink_cloudwatch_options co = {
            .aws = a->aws,
            .namespace_ = ns,
            .flush_interval_usec = conf_usec(cfg, RWK_cloudwatch_flush_interval),
            .high_resolution = conf_bool(cfg, RWK_cloudwatch_high_resolution),
            .uncompressed = !conf_bool(cfg, RWK_cloudwatch_compress),
            .key_field = conf_str(cfg, RWK_cloudwatch_key_field),
            .key_dimension_max = (size_t)conf_int(cfg, RWK_cloudwatch_key_dimension_max),
        };
        if ((r = sink_cloudwatch_new(&co, &a->sinks[a->n_sinks])) < 0)
            return log_error_errno(r, "CloudWatch sink: %m");
        a->cloudwatch = a->sinks[a->n_sinks++];
        log_info("metrics to CloudWatch namespace %s every %llu s", ns,
                 (unsigned long long)(co.flush_interval_usec / USEC_PER_SEC));
    }
    struct sink_firehose_options fo = {
        .aws = a->aws,
        .delivery_stream = conf_str(cfg, RWK_firehose_delivery_stream),
        .anomalies_stream = conf_str(cfg, RWK_firehose_anomalies_delivery_stream),
        .forward = (enum fh_forward)conf_enum(cfg, RWK_firehose_forward),
        .pack = conf_bool(cfg, RWK_firehose_pack),
        .pack_size = conf_size(cfg, RWK_firehose_pack_size),
        .flush_interval_usec = conf_usec(cfg, RWK_firehose_flush_interval),
        .max_retries = (unsigned)conf_int(cfg, RWK_firehose_max_retries),
        .retry_timeout_usec = conf_usec(cfg, RWK_firehose_retry_timeout),
        .deadletter = a->dl,
        .metrics = a->cloudwatch,
    };
    if (fo.anomalies_stream || (fo.delivery_stream && fo.forward != FH_FORWARD_NONE)) {
        if ((r = sink_firehose_new(&fo, &a->sinks[a->n_sinks])) < 0)
            return log_error_errno(r, "Firehose sink: %m");
        a->n_sinks++;
        log_info("output to Firehose %s%s%s", fo.delivery_stream ? fo.delivery_stream : "-",
                 fo.anomalies_stream ? ", anomalies also to " : "",
                 fo.anomalies_stream ? fo.anomalies_stream : "");
    }
    const char *dls = conf_str(cfg, RWK_deadletter_delivery_stream);
    if (dls) {
        struct sink_firehose_options d = fo;
        d.name = "firehose-deadletter";
        d.delivery_stream = dls;
        d.anomalies_stream = NULL;
        d.forward = FH_FORWARD_ALL;
        d.deadletter = NULL; /* never dead-letter the dead letters */
        if ((r = sink_firehose_new(&d, &a->dl_forward)) < 0)
            return log_error_errno(r, "dead-letter Firehose forwarding: %m");
        sink_firehose_tap_deadletter(a->dl_forward, a->dl);
    }
    return 0;
}

static int app_start(void *ud, struct rw_config *cfg)
{
    struct app *a = ud;
    a->cfg = conf_ref(cfg);
    a->last_status = now_monotonic_usec();
    struct conf_diag d = { 0 };
    int r0 = detect_stage_new(cfg, &d, &a->det);
    if (r0 >= 0)
        r0 = xf_stage_new(cfg, &d, &a->xf);
    conf_diag_clear(&d); /* validated already by rw_config_load() */
    if (r0 < 0)
        return r0;
    if (asprintf(&a->det_state_path, "%s/detectors.state", conf_str(cfg, RWK_checkpoint_directory)) < 0)
        return -ENOMEM;
    if (detect_stage_count(a->det)) {
        /* The state file sits beside the file checkpoints; with the DynamoDB
         * store nothing else creates the directory (systemd's StateDirectory=
         * does, a foreground run does not). */
        int rm = mkdir_p(conf_str(cfg, RWK_checkpoint_directory), 0750);
        if (rm < 0)
            log_warning_errno(rm, "cannot create %s for the detector state: %m",
                              conf_str(cfg, RWK_checkpoint_directory));
        int rl = detect_stage_load(a->det, a->det_state_path);
        if (rl == 0)
            log_info("detector state restored from %s", a->det_state_path);
        else if (rl != -ENOENT)
            log_warning_errno(rl, "detector state %s unusable (%m); detectors start fresh", a->det_state_path);
    }
    const char *stream = conf_str(cfg, RWK_kinesis_stream);
    if (!stream) {
        log_notice("no [kinesis] stream configured: idle");
        return 0;
    }
    http_global_init();
    struct aws_error err = { 0 };
    char eb[768];
    int r = aws_settings_new(cfg, &a->aws, &err);
    if (r < 0) {
        log_error("AWS settings: %s", aws_error_str(&err, eb, sizeof(eb)));
        return -EINVAL;
    }
    log_info("AWS region %s, Kinesis endpoint %s (from %s), credentials: standard chain",
             a->aws->region, a->aws->endpoint[AWS_SVC_KINESIS], a->aws->endpoint_source[AWS_SVC_KINESIS]);
    if (conf_enum(cfg, RWK_checkpoint_store) == 1) {
        const char *slash = strrchr(stream, '/');
        char table[300], worker[200], host[128] = "localhost";
        gethostname(host, sizeof(host) - 1);
        snprintf(table, sizeof(table), "%s", conf_str(cfg, RWK_checkpoint_table) ? conf_str(cfg, RWK_checkpoint_table) : "");
        if (!table[0])
            snprintf(table, sizeof(table), "rarewatch-%s", slash ? slash + 1 : stream);
        snprintf(worker, sizeof(worker), "%s", conf_str(cfg, RWK_checkpoint_worker_id) ? conf_str(cfg, RWK_checkpoint_worker_id) : "");
        if (!worker[0])
            snprintf(worker, sizeof(worker), "%s-%d", host, (int)getpid());
        static const char *const positions[] = { "TRIM_HORIZON", "LATEST", "AT_TIMESTAMP" };
        struct ckpt_dynamodb_options dopt = {
            .aws = a->aws,
            .table = table,
            .create_table = conf_bool(cfg, RWK_checkpoint_create_table),
            .worker_id = worker,
            .renew_interval_usec = conf_usec(cfg, RWK_checkpoint_renew_interval),
            .failover_time_usec = conf_usec(cfg, RWK_checkpoint_failover_time),
            .take_interval_usec = conf_usec(cfg, RWK_checkpoint_take_interval),
            .initial_position = positions[conf_enum(cfg, RWK_kinesis_initial_position)],
        };
        if ((r = ckpt_dynamodb_store_new(&dopt, &a->store)) < 0)
            return log_error_errno(r, "DynamoDB lease table %s: %m", table);
        log_info("leases in DynamoDB table %s as worker %s", table, worker);
    } else {
        const char *ckdir = conf_str(cfg, RWK_checkpoint_directory);
        if ((r = ckpt_file_store_new(ckdir, stream, &a->store)) < 0)
            return log_error_errno(r, "checkpoint directory %s: %m", ckdir);
    }
    const char *dldir = conf_str(cfg, RWK_deadletter_directory);
    if ((r = deadletter_new(dldir, conf_size(cfg, RWK_deadletter_max_size), &a->dl)) < 0)
        return log_error_errno(r, "dead-letter directory %s: %m", dldir);
    const char *outdir = conf_str(cfg, RWK_output_directory);
    if (outdir) {
        struct sink_file_options fo = {
            .directory = outdir,
            .rotate_interval_usec = conf_usec(cfg, RWK_output_rotate_interval),
            .rotate_size = conf_size(cfg, RWK_output_rotate_size),
        };
        if ((r = sink_file_new(&fo, &a->sinks[a->n_sinks])) < 0)
            return log_error_errno(r, "output directory %s: %m", outdir);
        a->n_sinks++;
    }
    if ((r = start_aws_sinks(a, cfg)) < 0)
        return r;
    struct consumer_options co = {
        .stream = stream,
        .aws = a->aws,
        .store = a->store,
        .sinks = a->sinks,
        .n_sinks = a->n_sinks,
        .deadletter = a->dl,
        .stage = { .worker_new = stage_worker_new, .worker_free = stage_worker_free, .process = stage_process, .ud = a },
    };
    if ((r = consumer_new(&co, &a->consumer)) < 0 || (r = consumer_start(a->consumer)) < 0)
        return log_error_errno(r, "cannot start the consumer: %m");
    if (a->cloudwatch)
        sink_cloudwatch_set_sources(a->cloudwatch, a->consumer, a->sinks, a->n_sinks);
    return 0;
}

static int app_reload(void *ud, struct rw_config *old, struct rw_config *nc, struct conf_diag *d)
{
    struct app *a = ud;
    if (win_config_changes(old, nc, d))
        return -EINVAL;
    a->det_next = detect_stage_free(a->det_next);
    a->xf_next = xf_stage_free(a->xf_next);
    /* Recompiling the transforms also re-reads their lookup tables. */
    int r = xf_stage_new(nc, d, &a->xf_next);
    return r < 0 ? r : detect_stage_new(nc, d, &a->det_next);
}

static void save_detector_state(struct app *a, bool at_stop)
{
    if (!a->det || !detect_stage_count(a->det) || !a->det_state_path)
        return;
    pthread_rwlock_rdlock(&a->det_lock);
    int r = detect_stage_save(a->det, a->det_state_path);
    pthread_rwlock_unlock(&a->det_lock);
    if (r < 0)
        log_warning_errno(r, "cannot save detector state to %s: %m", a->det_state_path);
    else if (at_stop)
        log_info("detector state saved to %s", a->det_state_path);
    a->last_state_save = now_monotonic_usec();
}

static void app_reloaded(void *ud, struct rw_config *cfg)
{
    struct app *a = ud;
    conf_unref(a->cfg);
    a->cfg = conf_ref(cfg);
    if (a->det_next) {
        /* Unchanged detectors keep their state; changed ones start fresh. */
        pthread_rwlock_wrlock(&a->det_lock);
        detect_stage_adopt(a->det_next, a->det);
        struct detect_stage *old = a->det;
        a->det = TAKE_PTR(a->det_next);
        /* In the same critical section: the where[i] of the transforms'
         * stage index the detectors of this one. */
        struct xf_stage *old_xf = a->xf;
        a->xf = TAKE_PTR(a->xf_next);
        pthread_rwlock_unlock(&a->det_lock);
        detect_stage_free(old);
        xf_stage_free(old_xf);
    }
    if (a->dl)
        deadletter_set_max_size(a->dl, conf_size(cfg, RWK_deadletter_max_size));
    log_debug("pipeline now on configuration generation %llu", (unsigned long long)cfg->generation);
}

static int app_stop(void *ud, uint64_t deadline)
{
    struct app *a = ud;
    int r = 0;
    if (a->consumer) {
        r = consumer_stop(a->consumer, deadline);
        /* The workers are done, their last checkpoints written: the state
         * saved now is the state at those positions, so a restart goes on
         * where this run stopped (the periodic saves between checkpoints
         * are only for a crash). If the drain timed out, records past the
         * checkpoints are read again after the restart and learned twice:
         * better than losing all learning since the last periodic save. */
        save_detector_state(a, true);
    }
    for (size_t i = 0; i < a->n_sinks; i++) {
        int rs = a->sinks[i]->ops->stop(a->sinks[i], deadline);
        if (rs < 0)
            r = rs;
    }
    if (a->dl_forward && a->dl_forward->ops->stop(a->dl_forward, deadline) < 0)
        r = -ETIMEDOUT;
    return r;
}

static void app_status(void *ud, struct buf *out)
{
    struct app *a = ud;
    /* The detector state goes to disk about as often as checkpoints are
     * written (at least every 30 s), so a restart does not relearn. */
    uint64_t iv = a->cfg ? MAX(conf_usec(a->cfg, RWK_checkpoint_interval), 30 * USEC_PER_SEC) : 0;
    if (a->consumer && now_monotonic_usec() - a->last_state_save >= iv)
        save_detector_state(a, false);
    if (!a->consumer) {
        buf_printf(out, "idle: no stream configured (config generation %llu, %zu workers)",
                   (unsigned long long)(a->cfg ? a->cfg->generation : 0), worker_count());
        return;
    }
    struct consumer_stats st = consumer_get_stats(a->consumer);
    uint64_t now = now_monotonic_usec();
    if (now > a->last_status) {
        a->rate = (double)(st.records_in - a->last_records) * 1e6 / (double)(now - a->last_status);
        a->last_status = now;
        a->last_records = st.records_in;
    }
    buf_printf(out, "%u shard%s, %.0f rec/s, lag %lld ms, %llu records in, %llu dead-lettered "
               "(config generation %llu)",
               st.shards_running, st.shards_running == 1 ? "" : "s", a->rate,
               (long long)MAX(st.max_millis_behind, 0), (unsigned long long)st.records_in,
               (unsigned long long)st.deadlettered,
               (unsigned long long)(a->cfg ? a->cfg->generation : 0));
    /* Only with transforms configured, so the line of other setups is as it was.
     * The main thread both swaps the stage and runs this: no lock needed. */
    uint64_t filtered = 0;
    for (size_t i = 0; i < xf_stage_count(a->xf); i++) {
        struct xf_stats xs;
        xf_stage_stats(a->xf, i, &xs);
        filtered += xs.dropped;
    }
    if (xf_stage_count(a->xf))
        buf_printf(out, ", %llu filtered since the last reload", (unsigned long long)filtered);
    if (detect_stage_count(a->det)) {
        /* The main thread both swaps the stage and runs this: no lock. */
        struct detect_stats ds;
        detect_stage_totals(a->det, &ds);
        buf_printf(out, ", detectors: %" PRIu32 " keys, %" PRIu64 " anomalies, %" PRIu64 " keys evicted, %" PRIu64
                   " expired",
                   ds.keys, ds.anomalies, ds.evictions, ds.expirations);
    }
    if (a->cfg && conf_named_count(a->cfg, "window"))
        buf_printf(out, ", windows: %llu emitted, %llu late records, %llu keys evicted",
                   (unsigned long long)atomic_load(&a->win_emitted),
                   (unsigned long long)atomic_load(&a->win_late),
                   (unsigned long long)atomic_load(&a->win_evicted));
}

const struct daemon_ops app_daemon_ops = {
    .start = app_start,
    .reload = app_reload,
    .reloaded = app_reloaded,
    .stop = app_stop,
    .status = app_status,
};
