/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Random Cut Forest updates per second per core (score + insert + evict),
 * 50 trees x 256 samples, at 1, 4 and 8 dimensions, after warm-up; median
 * of 5 runs. Reference in the same run: the z-score detector's update on the
 * same values (the cheapest per-key model), so the table shows what the
 * forest costs relative to it. Memory per forest from rcf_memory().
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "rarewatch/detect.h"
#include "rarewatch/rcf.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100000;
    unsigned dims[] = { 1, 4, 8 };
    printf("%-6s %16s %14s %18s %12s\n", "dims", "rcf updates/s", "rcf us/update", "zscore updates/s", "forest KiB");
    for (size_t k = 0; k < 3; k++) {
        unsigned D = dims[k];
        double *pts = malloc(sizeof(double) * (size_t)n * D);
        unsigned seed = 1;
        for (size_t i = 0; i < (size_t)n * D; i++)
            pts[i] = sin((double)i * 0.01) + (rand_r(&seed) / (double)RAND_MAX) * 0.1;
        double rates[5], zr[5];
        size_t mem = 0;
        for (int run = 0; run < 5; run++) {
            struct rcf *f = rcf_new(&(struct rcf_params){ .trees = 50, .sample_size = 256, .dims = D, .seed = 7 });
            /* Warm-up: fill the samples so every update also evicts. */
            for (int i = 0; i < 2000; i++)
                rcf_update(f, &pts[(size_t)(i % n) * D], NULL);
            double t0 = now(), sink = 0;
            for (int i = 0; i < n; i++)
                sink += rcf_update(f, &pts[(size_t)i * D], NULL);
            double dt = now() - t0;
            rates[run] = n / dt;
            mem = rcf_memory(f);
            rcf_free(f);
            struct det_zscore_params zp;
            det_zscore_params_default(&zp);
            struct det_zscore_state zs = { 0 };
            struct det_result r;
            t0 = now();
            for (int i = 0; i < n; i++) {
                det_zscore_update(&zp, &zs, pts[(size_t)i * D], 0, &r);
                sink += r.score;
            }
            zr[run] = n / (now() - t0);
            if (sink == 1234.5)
                printf(" ");
        }
        qsort(rates, 5, sizeof(double), cmp);
        qsort(zr, 5, sizeof(double), cmp);
        printf("%-6u %16.0f %14.2f %18.0f %12zu\n", D, rates[2], 1e6 / rates[2], zr[2], mem / 1024);
        free(pts);
    }
    return 0;
}
