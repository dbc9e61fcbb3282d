/* SPDX-License-Identifier: Apache-2.0 */
#include <math.h>
#include <stdlib.h>

#include <zlib.h>

#include "rarewatch/rcf.h"
#include "tap.h"

/* Rewrite the trailing CRC so a corruption reaches the structural checks. */
static void crc_fix(unsigned char *m, size_t len)
{
    uint32_t c = (uint32_t)crc32(0, m, (uInt)(len - 4));
    for (int k = 0; k < 4; k++)
        m[len - 4 + k] = (unsigned char)(c >> (8 * k));
}

static uint64_t g_rng;
static double unif(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return ((double)(g_rng >> 11) + 0.5) * 0x1p-53;
}
static double gauss(void) { return sqrt(-2 * log(unif())) * cos(2 * M_PI * unif()); }

static struct rcf *mk(unsigned dims, unsigned shingle, double decay, uint64_t seed)
{
    struct rcf_params p = { .dims = dims, .shingle_size = shingle, .time_decay = decay, .seed = seed };
    return rcf_new(&p);
}

TEST(rejects_bad_params)
{
    struct rcf_params p = { .dims = 0 };
    CHECK(rcf_new(&p) == NULL);
    p = (struct rcf_params){ .dims = 1, .sample_size = 1 };
    CHECK(rcf_new(&p) == NULL);
    p = (struct rcf_params){ .dims = 1, .time_decay = -1 };
    CHECK(rcf_new(&p) == NULL);
    CHECK(rcf_free(NULL) == NULL);
}

TEST(deterministic_with_seed)
{
    struct rcf *a = mk(2, 1, 1e-3, 42), *b = mk(2, 1, 1e-3, 42), *c = mk(2, 1, 1e-3, 43);
    bool same = true, differs = false;
    g_rng = 7;
    for (int i = 0; i < 3000; i++) {
        double x[2] = { gauss(), gauss() };
        double sa = rcf_update(a, x, NULL), sb = rcf_update(b, x, NULL), sc = rcf_update(c, x, NULL);
        same &= memcmp(&sa, &sb, sizeof sa) == 0;
        differs |= sa != sc;
    }
    CHECK(same);
    CHECK(differs);
    CHECK_INT(rcf_check(a), 0);
    rcf_free(a);
    rcf_free(b);
    rcf_free(c);
}

static void outlier_case(unsigned dims)
{
    struct rcf *f = mk(dims, 1, 1.0 / 2560, 1);
    double x[3], sum = 0, mx = 0;
    int n = 0;
    g_rng = 99;
    for (int i = 0; i < 4000; i++) {
        for (unsigned d = 0; d < dims; d++)
            x[d] = gauss();
        double s = rcf_update(f, x, NULL);
        if (i >= 2000) {
            sum += s;
            n++;
            mx = s > mx ? s : mx;
        }
    }
    double mean = sum / n;
    for (unsigned d = 0; d < dims; d++)
        x[d] = 0;
    x[dims - 1] = 8;
    double attr[3], so = rcf_score(f, x, attr);
    printf("# dims %u: inlier mean %.3f max %.3f, outlier %.3f\n", dims, mean, mx, so);
    CHECK(mean > 0.5 && mean < 1.6);
    CHECK(so > 3 * mean);
    CHECK(so > mx);
    double asum = 0;
    for (unsigned d = 0; d < dims; d++)
        asum += attr[d];
    CHECK_NEAR(asum, so, 1e-9 * so);
    for (unsigned d = 0; d + 1 < dims; d++)
        CHECK(attr[dims - 1] > 5 * attr[d]);
    CHECK_INT(rcf_check(f), 0);
    rcf_free(f);
}

TEST(outlier_1d) { outlier_case(1); }
TEST(outlier_3d_and_attribution) { outlier_case(3); }

TEST(directional_attribution)
{
    struct rcf *f = mk(2, 1, 0, 5);
    double x[2], hi[2], lo[2];
    g_rng = 3;
    for (int i = 0; i < 2000; i++) {
        x[0] = gauss();
        x[1] = gauss();
        rcf_update(f, x, NULL);
    }
    x[0] = 0;
    x[1] = -9;
    double s = rcf_update_di(f, x, hi, lo);
    CHECK(lo[1] > 0.8 * s);
    CHECK(hi[1] < 0.05 * s);
    CHECK_NEAR(hi[0] + hi[1] + lo[0] + lo[1], s, 1e-9 * s);
    rcf_free(f);
}

TEST(shingle_detects_pattern_change)
{
    /* every value stays within the sine's range; only the shape changes */
    struct rcf *f = mk(1, 8, 1.0 / 2560, 11);
    double mx = 0, s;
    for (int i = 0; i < 6000; i++) {
        double x = sin(2 * M_PI * i / 32.0);
        s = rcf_update(f, &x, NULL);
        if (i > 3000)
            mx = s > mx ? s : mx;
    }
    double peak = 0;
    for (int i = 6000; i < 6016; i++) {
        double x = sin(2 * M_PI * i / 8.0); /* four times the frequency */
        s = rcf_update(f, &x, NULL);
        peak = s > peak ? s : peak;
    }
    printf("# sine: normal max %.3f, changed %.3f\n", mx, peak);
    CHECK(peak > 1.5 * mx);
    CHECK_INT(rcf_check(f), 0);
    rcf_free(f);
}

TEST(duplicates_are_not_anomalous)
{
    struct rcf *f = mk(1, 1, 1.0 / 2560, 2);
    double x = 5, s = 0;
    for (int i = 0; i < 3000; i++)
        s = rcf_update(f, &x, NULL);
    CHECK(s < 1);
    CHECK_INT(rcf_check(f), 0);
    x = 6;
    CHECK(rcf_score(f, &x, NULL) > 3);
    rcf_free(f);
}

TEST(non_finite_input_is_ignored)
{
    struct rcf *f = mk(2, 1, 0, 2);
    double x[2] = { 1, NAN };
    CHECK(isnan(rcf_update(f, x, NULL)));
    CHECK_UINT(rcf_points_seen(f), 0);
    rcf_free(f);
}

/* Interleaved descents (2..8 trees in lockstep) give the same bits as one
 * tree at a time, from an empty forest (empty and one-leaf trees) to full
 * samples, with duplicates (leaf seen), outliers and tree counts that are
 * not multiples of the lane count; and the same as the attribution path. */
TEST(lanes_match_one_tree_descent)
{
    static const struct {
        unsigned trees, sample, dims, shingle;
    } cs[] = { { 50, 256, 1, 1 }, { 7, 16, 1, 1 }, { 1, 8, 1, 1 },  { 13, 64, 2, 1 },
               { 50, 32, 3, 2 },  { 20, 64, 1, 4 }, { 5, 128, 8, 1 } };
    static const unsigned lanes[] = { 2, 3, 4, 5, 8, 9 };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        struct rcf_params p = { .trees = cs[c].trees, .sample_size = cs[c].sample, .dims = cs[c].dims,
                                .shingle_size = cs[c].shingle, .time_decay = 1.0 / 300, .seed = 11 + c };
        struct rcf *f = rcf_new(&p);
        CHECK(f != NULL);
        if (!f)
            continue;
        bool same = true, nonzero = false;
        g_rng = 3 + c;
        for (int i = 0; i < 1500; i++) {
            double x[8];
            for (unsigned d = 0; d < cs[c].dims; d++)
                x[d] = i % 7 == 0 ? 1.0 : i % 97 == 0 ? gauss() * 50 : i % 3 ? gauss() : floor(gauss() * 4);
            rcf_set_lanes(f, 1);
            double ref = rcf_score(f, x, NULL);
            nonzero |= ref > 0;
            for (size_t k = 0; k < sizeof lanes / sizeof lanes[0]; k++) {
                rcf_set_lanes(f, lanes[k]);
                double s = rcf_score(f, x, NULL);
                same &= memcmp(&s, &ref, sizeof s) == 0;
            }
            rcf_set_lanes(f, 0);
            double hi[8], lo[8], s = rcf_update_di(f, x, hi, lo);
            same &= memcmp(&s, &ref, sizeof s) == 0;
        }
        CHECK(same);
        CHECK(nonzero);
        CHECK_INT(rcf_check(f), 0);
        rcf_free(f);
    }
}

TEST(save_load_bit_identical)
{
    struct rcf *a = mk(2, 3, 1.0 / 500, 77);
    struct buf b = BUF_INIT;
    double x[2];
    g_rng = 5;
    for (int i = 0; i < 5000; i++) {
        x[0] = gauss();
        x[1] = gauss() * 3 + (i % 50 == 0 ? 20 : 0);
        rcf_update(a, x, NULL);
    }
    CHECK_INT(rcf_check(a), 0);
    CHECK_INT(rcf_save(a, &b), 0);
    int err = 1;
    struct rcf *c = rcf_load(b.data, b.len, &err);
    CHECK_INT(err, 0);
    CHECK(c != NULL);
    if (c) {
        CHECK_UINT(rcf_points_seen(c), rcf_points_seen(a));
        bool same = true;
        double aa[2], ac[2];
        for (int i = 0; i < 5000; i++) {
            x[0] = gauss();
            x[1] = gauss() * 3 + (i % 70 == 0 ? -15 : 0);
            double sa = rcf_update(a, x, aa), sc = rcf_update(c, x, ac);
            same &= memcmp(&sa, &sc, sizeof sa) == 0 && memcmp(aa, ac, sizeof aa) == 0;
        }
        CHECK(same);
        CHECK_INT(rcf_check(c), 0);
        /* the same state again: point numbering may differ, sizes may not */
        struct buf b1 = BUF_INIT, b2 = BUF_INIT;
        CHECK_INT(rcf_save(a, &b1), 0);
        CHECK_INT(rcf_save(c, &b2), 0);
        CHECK_UINT(b1.len, b2.len);
        buf_free(&b1);
        buf_free(&b2);
    }
    rcf_free(c);
    rcf_free(a);
    buf_free(&b);
}

TEST(hostile_data_rejected)
{
    struct rcf_params p = { .trees = 5, .sample_size = 32, .dims = 2, .time_decay = 0.01, .seed = 3 };
    struct rcf *a = rcf_new(&p);
    struct buf b = BUF_INIT;
    double x[2];
    g_rng = 9;
    for (int i = 0; i < 500; i++) {
        x[0] = gauss();
        x[1] = gauss();
        rcf_update(a, x, NULL);
    }
    CHECK_INT(rcf_save(a, &b), 0);
    int err = 0;
    unsigned rejected = 0, tries = 0;
    for (size_t n = 0; n < b.len; n++) { /* every truncation */
        struct rcf *c = rcf_load(b.data, n, &err);
        tries++;
        rejected += c == NULL && err < 0;
        rcf_free(c);
    }
    CHECK_UINT(rejected, tries);
    /* bit flips: the CRC catches them; with the CRC recomputed, the
     * structural checks must either reject or yield a consistent forest */
    unsigned char *m = malloc(b.len);
    for (int k = 0; k < 3000; k++) {
        memcpy(m, b.data, b.len);
        size_t at = 8 + (size_t)(unif() * (double)(b.len - 12));
        m[at] ^= (unsigned char)(1u << (int)(unif() * 8));
        struct rcf *c = rcf_load(m, b.len, &err);
        CHECK(c == NULL && err == -EBADMSG);
        rcf_free(c);
        crc_fix(m, b.len);
        c = rcf_load(m, b.len, &err);
        if (c) {
            CHECK_INT(rcf_check(c), 0);
            rcf_update(c, x, NULL);
            CHECK_INT(rcf_check(c), 0);
        } else {
            CHECK(err < 0);
        }
        rcf_free(c);
    }
    free(m);
    CHECK(rcf_load(NULL, 0, &err) == NULL && err < 0);
    rcf_free(a);
    buf_free(&b);
}

TEST(memory_accounting)
{
    struct rcf *f1 = mk(1, 1, 0, 1), *f8 = mk(8, 1, 0, 1);
    size_t m1 = rcf_memory(f1), m8 = rcf_memory(f8);
    /* at least the nodes: 50 trees x 255 internal nodes x 2 doubles per dim */
    CHECK(m1 >= 50 * 255 * 16);
    CHECK(m8 > 2 * m1);
    CHECK(m1 < 4u << 20);
    double x[8] = { 0 };
    g_rng = 1;
    for (int i = 0; i < 20000; i++) {
        x[0] = gauss();
        rcf_update(f1, x, NULL);
    }
    size_t grown = rcf_memory(f1);
    CHECK(grown > m1);
    /* the point store is bounded by trees x sample_size points */
    CHECK(grown < m1 + (50 * 256 + 1) * (8 + 4 + 4) + 1);
    rcf_free(f1);
    rcf_free(f8);
}

TEST(decay_forgets_old_regime)
{
    struct rcf *f = mk(1, 1, 1.0 / 256, 4);
    double x;
    g_rng = 8;
    for (int i = 0; i < 3000; i++) {
        x = gauss();
        rcf_update(f, &x, NULL);
    }
    for (int i = 0; i < 5000; i++) {
        x = 100 + gauss();
        rcf_update(f, &x, NULL);
    }
    x = 100;
    double s_new = rcf_score(f, &x, NULL);
    x = 0;
    double s_old = rcf_score(f, &x, NULL);
    CHECK(s_old > 2 * s_new);
    CHECK_INT(rcf_check(f), 0);
    rcf_free(f);
}

TAP_MAIN
