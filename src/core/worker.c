/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/worker.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "rarewatch/strutil.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct rw_worker *head;

void worker_register(struct rw_worker *w, const char *name)
{
    snprintf(w->name, sizeof(w->name), "%s", name);
    atomic_store(&w->last_progress_usec, now_monotonic_usec());
    pthread_mutex_lock(&lock);
    w->next = head;
    head = w;
    pthread_mutex_unlock(&lock);
}

void worker_unregister(struct rw_worker *w)
{
    pthread_mutex_lock(&lock);
    for (struct rw_worker **p = &head; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    pthread_mutex_unlock(&lock);
}

void worker_progress(struct rw_worker *w)
{
    atomic_store_explicit(&w->last_progress_usec, now_monotonic_usec(), memory_order_relaxed);
}

bool worker_all_alive(uint64_t now, uint64_t period, char *stalled, size_t n, uint64_t *silent)
{
    bool ok = true;
    pthread_mutex_lock(&lock);
    for (struct rw_worker *w = head; w; w = w->next) {
        uint64_t last = atomic_load_explicit(&w->last_progress_usec, memory_order_relaxed);
        if (now > last && now - last > period) {
            if (stalled)
                snprintf(stalled, n, "%s", w->name);
            if (silent)
                *silent = now - last;
            ok = false;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return ok;
}

size_t worker_count(void)
{
    size_t n = 0;
    pthread_mutex_lock(&lock);
    for (struct rw_worker *w = head; w; w = w->next)
        n++;
    pthread_mutex_unlock(&lock);
    return n;
}
