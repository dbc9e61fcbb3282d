/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/rcf.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "tap.h"

static double gauss(unsigned *seed)
{
    double u = (rand_r(seed) + 1.0) / ((double)RAND_MAX + 2.0), v = (rand_r(seed) + 1.0) / ((double)RAND_MAX + 2.0);
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

TEST(outlier_scores_far_above_inliers_1d)
{
    struct rcf *f = rcf_new(&(struct rcf_params){ .trees = 50, .sample_size = 256, .dims = 1, .seed = 1 });
    CHECK(f != NULL);
    unsigned seed = 7;
    double sum = 0;
    int n = 0;
    for (int i = 0; i < 3000; i++) {
        double x = 10 + gauss(&seed);
        double s = rcf_update(f, &x, NULL);
        if (i > 1000) {
            sum += s;
            n++;
        }
    }
    double typical = sum / n;
    double out = 30;
    double so = rcf_score(f, &out, NULL);
    CHECK(typical > 0.5 && typical < 2.0);
    CHECK(so > 2.5 * typical);
    CHECK_UINT(rcf_points_seen(f), 3000);
    rcf_free(f);
}

TEST(attribution_points_at_the_dimension_that_moved)
{
    struct rcf *f = rcf_new(&(struct rcf_params){ .trees = 50, .sample_size = 256, .dims = 3, .seed = 2 });
    unsigned seed = 9;
    for (int i = 0; i < 2000; i++) {
        double x[3] = { gauss(&seed), 5 + gauss(&seed), -3 + gauss(&seed) };
        rcf_update(f, x, NULL);
    }
    double q[3] = { 0, 5 + 12, -3 }, a[3];
    double s = rcf_score(f, q, a);
    CHECK(s > 2);
    CHECK(a[1] > a[0] * 3 && a[1] > a[2] * 3);
    CHECK_NEAR(a[0] + a[1] + a[2], s, s * 0.05);
    rcf_free(f);
}

TEST(shingles_see_a_change_of_pattern)
{
    struct rcf *f = rcf_new(&(struct rcf_params){ .trees = 50, .sample_size = 256, .dims = 1, .shingle_size = 8, .seed = 3 });
    double base = 0, n = 0, at_change = 0;
    for (int i = 0; i < 4000; i++) {
        /* A sine; at 3500 its phase jumps: every single value is ordinary,
         * only the sequence is new. */
        double x = sin((i + (i >= 3500 ? 7 : 0)) * 2 * M_PI / 40);
        double s = rcf_update(f, &x, NULL);
        if (i > 2000 && i < 3500) {
            base += s;
            n++;
        }
        if (i >= 3500 && i < 3508 && s > at_change)
            at_change = s;
    }
    CHECK(at_change > 2 * base / n);
    rcf_free(f);
}

TEST(save_load_gives_identical_scores)
{
    struct rcf_params p = { .trees = 20, .sample_size = 64, .dims = 2, .shingle_size = 2, .time_decay = 0.001, .seed = 4 };
    struct rcf *a = rcf_new(&p), *b = rcf_new(&p);
    unsigned s1 = 11, s2 = 11;
    for (int i = 0; i < 500; i++) {
        double x[2] = { gauss(&s1), gauss(&s1) }, y[2] = { gauss(&s2), gauss(&s2) };
        rcf_update(a, x, NULL);
        rcf_update(b, y, NULL);
    }
    struct buf blob = BUF_INIT;
    CHECK_INT(rcf_save(b, &blob), 0);
    rcf_free(b);
    int err = 0;
    b = rcf_load(blob.data, blob.len, &err);
    CHECK(b != NULL);
    CHECK_INT(err, 0);
    bool same = true;
    for (int i = 0; i < 500 && b; i++) {
        double x[2] = { gauss(&s1), gauss(&s1) }, y[2] = { gauss(&s2), gauss(&s2) };
        if (rcf_update(a, x, NULL) != rcf_update(b, y, NULL))
            same = false;
    }
    CHECK(same);
    /* Hostile or truncated data is refused, never trusted. */
    CHECK(rcf_load(blob.data, blob.len - 1, &err) == NULL && err < 0);
    CHECK(rcf_load("RCF2", 4, &err) == NULL);
    for (size_t off = 4; off < blob.len; off += blob.len / 97 + 1) {
        char save = blob.data[off];
        blob.data[off] ^= 0x5a;
        struct rcf *c = rcf_load(blob.data, blob.len, &err);
        if (c) {
            /* A flipped float may still be a sound forest: it must work. */
            double x[2] = { 1, 2 };
            rcf_update(c, x, NULL);
            rcf_free(c);
        }
        blob.data[off] = save;
    }
    buf_free(&blob);
    rcf_free(a);
    rcf_free(b);
}

TEST(duplicates_and_constants)
{
    struct rcf *f = rcf_new(&(struct rcf_params){ .trees = 10, .sample_size = 32, .dims = 1, .seed = 5 });
    for (int i = 0; i < 2000; i++) {
        double x = (i % 3);
        rcf_update(f, &x, NULL);
    }
    double seen = 1, unseen = 50;
    CHECK(rcf_score(f, &unseen, NULL) > rcf_score(f, &seen, NULL));
    CHECK(rcf_memory(f) > 0);
    CHECK(rcf_new(&(struct rcf_params){ .dims = 0 }) == NULL);
    rcf_free(f);
}

TAP_MAIN
