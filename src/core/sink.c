/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/sink.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rarewatch/log.h"
#include "rarewatch/strutil.h"
#include "rarewatch/worker.h"

void rw_ack_queue_init(struct rw_ack_queue *q)
{
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cond, &a);
    pthread_condattr_destroy(&a);
}

void rw_ack_queue_destroy(struct rw_ack_queue *q)
{
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
}

struct rw_batch *rw_batch_new(struct rw_ack_queue *acks)
{
    struct rw_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->acks = acks;
    return b;
}

struct rw_batch *rw_batch_ref(struct rw_batch *b)
{
    atomic_fetch_add(&b->refs, 1);
    return b;
}

struct rw_batch *rw_batch_unref(struct rw_batch *b)
{
    if (b && atomic_fetch_sub(&b->refs, 1) == 1) {
        rw_output_free(&b->out);
        free(b);
    }
    return NULL;
}

void rw_batch_keep_output(struct rw_batch *b, struct rw_output *spare)
{
    if (!b || spare->lines.data || atomic_load(&b->refs) != 1)
        return;
    *spare = b->out;
    b->out = (struct rw_output){ 0 };
}

void rw_batch_use_output(struct rw_batch *b, struct rw_output *spare)
{
    if (!spare->lines.data)
        return;
    rw_output_free(&b->out);
    b->out = *spare;
    *spare = (struct rw_output){ 0 };
    rw_output_reset(&b->out);
}

void rw_batch_ack(struct rw_batch *b)
{
    if (atomic_fetch_sub(&b->pending, 1) != 1)
        return;
    pthread_mutex_lock(&b->acks->lock);
    atomic_store(&b->done, true);
    pthread_cond_broadcast(&b->acks->cond);
    pthread_mutex_unlock(&b->acks->lock);
}

int rw_sinks_submit(struct rw_sink **sinks, size_t n, struct rw_batch *b)
{
    if (n == 0) {
        atomic_store(&b->done, true);
        return 0;
    }
    atomic_store(&b->pending, (int)n);
    for (size_t i = 0; i < n; i++) {
        rw_batch_ref(b);
        int r = sinks[i]->ops->submit(sinks[i], b);
        if (r < 0) {
            /* A sink that cannot even queue is a bug or out of memory: the
             * batch never completes, so nothing past it is checkpointed. */
            rw_batch_unref(b);
            return r;
        }
    }
    return 0;
}

struct rw_sink *rw_sink_free(struct rw_sink *s)
{
    if (s && s->ops->free)
        s->ops->free(s);
    return NULL;
}

static void *queued_main(void *arg)
{
    struct rw_queued_sink *qs = arg;
    struct rw_worker w;
    char wname[64];
    snprintf(wname, sizeof(wname), "sink %s", qs->sink.name);
    worker_register(&w, wname);
    struct log_fields ctx = { .sink = qs->sink.name };
    log_context_set(&ctx);
    struct rw_batch **take = NULL;
    size_t take_cap = 0;
    pthread_mutex_lock(&qs->lock);
    for (;;) {
        worker_progress(&w);
        if (qs->qn == 0) {
            if (qs->stopping)
                break;
            uint64_t iv = qs->idle_interval_usec ? qs->idle_interval_usec : USEC_PER_SEC;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + (iv % USEC_PER_SEC) * 1000;
            ts.tv_sec += (time_t)(iv / USEC_PER_SEC + ns / NSEC_PER_SEC);
            ts.tv_nsec = (long)(ns % NSEC_PER_SEC);
            int r = pthread_cond_timedwait(&qs->cond, &qs->lock, &ts);
            if (r == ETIMEDOUT && qs->idle) {
                pthread_mutex_unlock(&qs->lock);
                qs->idle(qs);
                pthread_mutex_lock(&qs->lock);
            }
            continue;
        }
        if (take_cap < qs->qn) {
            struct rw_batch **t = realloc(take, qs->qn * sizeof(*t));
            if (!t) {
                pthread_mutex_unlock(&qs->lock);
                struct timespec d = { 0, 100000000 };
                nanosleep(&d, NULL);
                pthread_mutex_lock(&qs->lock);
                continue;
            }
            take = t;
            take_cap = qs->qn;
        }
        size_t n = qs->qn;
        memcpy(take, qs->q, n * sizeof(*take));
        qs->qn = 0;
        pthread_mutex_unlock(&qs->lock);
        qs->flush(qs, take, n);
        for (size_t i = 0; i < n; i++)
            rw_batch_unref(take[i]);
        pthread_mutex_lock(&qs->lock);
    }
    pthread_mutex_unlock(&qs->lock);
    free(take);
    log_context_set(NULL);
    worker_unregister(&w);
    return NULL;
}

int rw_queued_sink_start(struct rw_queued_sink *qs, const char *name,
                         int (*flush)(struct rw_queued_sink *, struct rw_batch **, size_t))
{
    snprintf(qs->sink.name, sizeof(qs->sink.name), "%s", name);
    qs->flush = flush;
    pthread_mutex_init(&qs->lock, NULL);
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&qs->cond, &a);
    pthread_condattr_destroy(&a);
    int r = pthread_create(&qs->thread, NULL, queued_main, qs);
    if (r)
        return -r;
    qs->started = true;
    return 0;
}

int rw_queued_sink_submit(struct rw_sink *s, struct rw_batch *b)
{
    struct rw_queued_sink *qs = (struct rw_queued_sink *)s;
    pthread_mutex_lock(&qs->lock);
    if (qs->qn == qs->qcap) {
        size_t cap = qs->qcap ? qs->qcap * 2 : 64;
        struct rw_batch **q = realloc(qs->q, cap * sizeof(*q));
        if (!q) {
            pthread_mutex_unlock(&qs->lock);
            return -ENOMEM;
        }
        qs->q = q;
        qs->qcap = cap;
    }
    qs->q[qs->qn++] = b;
    pthread_cond_signal(&qs->cond);
    pthread_mutex_unlock(&qs->lock);
    return 0;
}

bool rw_queued_sink_stopping(struct rw_queued_sink *qs)
{
    pthread_mutex_lock(&qs->lock);
    bool s = qs->stopping;
    pthread_mutex_unlock(&qs->lock);
    return s;
}

int rw_queued_sink_stop(struct rw_sink *s, uint64_t deadline)
{
    struct rw_queued_sink *qs = (struct rw_queued_sink *)s;
    if (!qs->started)
        return 0;
    pthread_mutex_lock(&qs->lock);
    qs->stopping = true;
    pthread_cond_signal(&qs->cond);
    pthread_mutex_unlock(&qs->lock);
    uint64_t now = now_monotonic_usec();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t left = deadline > now ? deadline - now : 0;
    uint64_t ns = (uint64_t)ts.tv_nsec + (left % USEC_PER_SEC) * 1000;
    ts.tv_sec += (time_t)(left / USEC_PER_SEC + ns / NSEC_PER_SEC);
    ts.tv_nsec = (long)(ns % NSEC_PER_SEC);
    int r = pthread_timedjoin_np(qs->thread, NULL, &ts);
    if (r) {
        log_error("sink %s did not finish by the stop deadline", s->name);
        return -ETIMEDOUT;
    }
    qs->started = false;
    return 0;
}
