/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/daemon.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <systemd/sd-daemon.h>

#include "rarewatch/conf_schema.h"
#include "rarewatch/log.h"
#include "rarewatch/strutil.h"
#include "rarewatch/worker.h"
#include "rw-build-config.h"

static pthread_mutex_t cfg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rw_config *cfg_current;
static _Atomic uint64_t cfg_generation;

struct rw_config *daemon_config(void)
{
    pthread_mutex_lock(&cfg_lock);
    struct rw_config *c = conf_ref(cfg_current);
    pthread_mutex_unlock(&cfg_lock);
    return c;
}

uint64_t daemon_config_generation(void) { return atomic_load(&cfg_generation); }

void daemon_config_publish(struct rw_config *cfg)
{
    conf_ref(cfg);
    pthread_mutex_lock(&cfg_lock);
    struct rw_config *old = cfg_current;
    cfg->generation = atomic_load(&cfg_generation) + 1;
    cfg_current = cfg;
    atomic_store(&cfg_generation, cfg->generation);
    pthread_mutex_unlock(&cfg_lock);
    conf_unref(old);
}

void daemon_apply_log_config(const struct rw_config *cfg)
{
    log_set_level(log_level_from_string(conf_get(cfg, RWK_log_level)->raw));
    log_set_rate_limit(conf_usec(cfg, RWK_log_rate_limit_interval),
                       (unsigned)conf_int(cfg, RWK_log_rate_limit_burst));
}

/* Every problem is logged, whatever the rate limit, at the caller's line. */
#define log_diag(level, prefix, d)                                                   \
    do {                                                                             \
        for (size_t i_ = 0; i_ < (d)->n; i_++)                                       \
            log_full((level) | LOG_F_NOLIMIT, "%s%s", (prefix), (d)->msgs[i_]);      \
    } while (0)

static void notify_status(const struct daemon_ops *ops, void *ud, const char *extra)
{
    _cleanup_buf_ struct buf b = BUF_INIT;
    if (extra)
        buf_puts(&b, extra);
    buf_puts(&b, "STATUS=");
    if (ops->status)
        ops->status(ud, &b);
    sd_notify(false, b.data);
}

/* The reload sequence systemd expects of Type=notify-reload style services:
 * RELOADING=1 with MONOTONIC_USEC, then READY=1 whatever the outcome. */
static void do_reload(const char *path, const struct daemon_ops *ops, void *ud)
{
    sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=Reloading configuration...",
               (unsigned long long)now_monotonic_usec());
    log_info("reloading configuration from %s", path);

    struct conf_diag d = { 0 };
    _cleanup_(conf_unrefp) struct rw_config *nc = NULL;
    _cleanup_(conf_unrefp) struct rw_config *old = daemon_config();
    int r = rw_config_load(path, &d, &nc);
    if (r < 0) {
        log_diag(LOG_ERR, "reload rejected, keeping the running configuration: ", &d);
        goto done;
    }
    if (conf_diff_restart_required(old, nc, &d) > 0) {
        log_diag(LOG_ERR, "reload rejected, keeping the running configuration: ", &d);
        goto done;
    }
    if (ops->reload && ops->reload(ud, old, nc, &d) < 0) {
        log_diag(LOG_ERR, "reload rejected, keeping the running configuration: ", &d);
        goto done;
    }
    conf_diag_clear(&d);
    unsigned changes = conf_diff(old, nc, &d);
    daemon_config_publish(nc);
    daemon_apply_log_config(nc);
    if (ops->reloaded)
        ops->reloaded(ud, nc);
    log_info("configuration reloaded (generation %llu, %u change%s)",
             (unsigned long long)nc->generation, changes, changes == 1 ? "" : "s");
    log_diag(LOG_INFO, "changed: ", &d);
done:
    conf_diag_clear(&d);
    notify_status(ops, ud, "READY=1\n");
}

int daemon_main(const char *path, const struct daemon_ops *ops, void *ud)
{
    log_setup(LOG_TARGET_AUTO);
    struct conf_diag d = { 0 };
    _cleanup_(conf_unrefp) struct rw_config *cfg = NULL;
    int r = rw_config_load(path, &d, &cfg);
    if (r < 0) {
        log_diag(LOG_ERR, "invalid configuration: ", &d);
        conf_diag_clear(&d);
        sd_notifyf(false, "STATUS=Invalid configuration in %s\nERRNO=%d", path, -r);
        return EXIT_CONFIG;
    }
    conf_diag_clear(&d);
    static const enum log_target targets[] = { LOG_TARGET_AUTO, LOG_TARGET_JOURNAL, LOG_TARGET_STDERR };
    log_setup(targets[conf_enum(cfg, RWK_log_target)]);
    daemon_apply_log_config(cfg);
    daemon_config_publish(cfg);

    /* Block the signals before any thread exists so every thread inherits
     * the mask and only the signalfd sees them. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    _cleanup_close_ int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    _cleanup_close_ int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (sfd < 0 || tfd < 0)
        return log_error_errno(errno, "signalfd/timerfd: %m"), 1;

    uint64_t wd_usec = 0;
    if (sd_watchdog_enabled(false, &wd_usec) <= 0)
        wd_usec = 0;

    log_info("rarewatchd %s starting with %s", RW_VERSION, path);
    if (ops->start && (r = ops->start(ud, cfg)) < 0) {
        log_error_errno(r, "startup failed: %m");
        sd_notifyf(false, "STATUS=Startup failed: %s\nERRNO=%d", strerror(-r), -r);
        if (ops->stop)
            ops->stop(ud, now_monotonic_usec() + conf_usec(cfg, RWK_daemon_stop_timeout));
        return r == -EINVAL ? EXIT_CONFIG : 1;
    }
    notify_status(ops, ud, "READY=1\n");
    log_info("ready");

    bool wd_stalled_logged = false;
    uint64_t last_status = now_monotonic_usec();
    for (;;) {
        _cleanup_(conf_unrefp) struct rw_config *cur = daemon_config();
        uint64_t status_iv = conf_usec(cur, RWK_daemon_status_interval);
        uint64_t tick = wd_usec ? MIN(status_iv, wd_usec / 4) : status_iv;
        struct itimerspec its = {
            .it_value = { (time_t)(tick / USEC_PER_SEC), (long)(tick % USEC_PER_SEC) * 1000 },
        };
        timerfd_settime(tfd, 0, &its, NULL);
        struct pollfd pfd[2] = { { .fd = sfd, .events = POLLIN }, { .fd = tfd, .events = POLLIN } };
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return log_error_errno(errno, "poll: %m"), 1;
        }
        if (pfd[1].revents) {
            uint64_t exp;
            (void)!read(tfd, &exp, sizeof(exp));
        }
        uint64_t now = now_monotonic_usec();
        if (wd_usec) {
            char name[64];
            uint64_t silent = 0;
            if (worker_all_alive(now, wd_usec, name, sizeof(name), &silent)) {
                sd_notify(false, "WATCHDOG=1");
                wd_stalled_logged = false;
            } else if (!wd_stalled_logged) {
                char a[32];
                log_error("worker %s has made no progress for %s; withholding the watchdog ping "
                          "so that systemd restarts the daemon",
                          name, format_duration(a, sizeof(a), silent / USEC_PER_MSEC * USEC_PER_MSEC));
                wd_stalled_logged = true;
            }
        }
        if (now - last_status >= status_iv) {
            notify_status(ops, ud, NULL);
            last_status = now;
        }
        if (!pfd[0].revents)
            continue;
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
            if (si.ssi_signo == SIGHUP) {
                do_reload(path, ops, ud);
                continue;
            }
            /* SIGTERM / SIGINT */
            sd_notify(false, "STOPPING=1\nSTATUS=Stopping: draining in-flight work...");
            log_info("received %s, stopping", strsignal((int)si.ssi_signo));
            uint64_t timeout = conf_usec(cur, RWK_daemon_stop_timeout);
            int rs = ops->stop ? ops->stop(ud, now_monotonic_usec() + timeout) : 0;
            if (rs < 0) {
                char a[32];
                log_error_errno(rs, "in-flight work did not drain within %s: %m",
                                format_duration(a, sizeof(a), timeout));
                return 1;
            }
            log_info("stopped cleanly");
            return 0;
        }
    }
}
