/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Random Cut Forest updates per second (score, then insert) at 50 trees x
 * 256 samples for 1, 4 and 8 dimensions: as rcf_update runs (trees scored
 * 4 at a time in lockstep), with the one-tree-at-a-time scoring loop
 * (rcf_set_lanes(f, 1), bit-identical scores) on the same data, and against
 * a naive baseline: the obvious first version, with pointer nodes, a copy of
 * every point per tree and bounding boxes recomputed from the leaves on
 * every score and insert (same sampler and scoring rule, so the work
 * compared is the same algorithm).
 *
 *   bench_rcf [updates-per-run] [runs] [naive: 0 to skip, slow]
 *
 * Rates are per CPU second of this process (CLOCK_PROCESS_CPUTIME_ID: on a
 * shared machine wall time also counts other jobs' turns), median over the
 * runs; bytes of memory per forest.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rarewatch/rcf.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t g = 0x9e3779b97f4a7c15ULL;
static double unif(void)
{
    g ^= g << 13;
    g ^= g >> 7;
    g ^= g << 17;
    return ((double)(g >> 11) + 0.5) * 0x1p-53;
}
static double gauss(void) { return sqrt(-2 * log(unif())) * cos(2 * M_PI * unif()); }

/* ---- naive baseline ------------------------------------------------------ */

#define NT 50
#define NS 256

struct nnode {
    struct nnode *l, *r, *parent;
    int dim;
    double cut;
    double *pt; /* leaf: own copy */
    int mass;
};

struct ntree {
    struct nnode *root;
    double key[NS];
    double *pts[NS]; /* per-tree point copies, by heap slot */
    int size;
};

struct naive {
    struct ntree t[NT];
    int D;
    uint64_t rng;
    double lambda;
    long seq;
};

static double nrand(struct naive *n)
{
    n->rng ^= n->rng << 13;
    n->rng ^= n->rng >> 7;
    n->rng ^= n->rng << 17;
    return ((double)(n->rng >> 11) + 0.5) * 0x1p-53;
}

static void nbox(const struct nnode *x, int D, double *lo, double *hi)
{
    if (!x->l) {
        memcpy(lo, x->pt, D * sizeof(double));
        memcpy(hi, x->pt, D * sizeof(double));
        return;
    }
    double l2[16], h2[16];
    nbox(x->l, D, lo, hi);
    nbox(x->r, D, l2, h2);
    for (int i = 0; i < D; i++) {
        lo[i] = fmin(lo[i], l2[i]);
        hi[i] = fmax(hi[i], h2[i]);
    }
}

static double nscore_tree(const struct ntree *t, int D, const double *q)
{
    if (!t->root)
        return -1;
    const struct nnode *path[NS + 1];
    int d = 0;
    const struct nnode *x = t->root;
    while (x->l) {
        path[d++] = x;
        x = q[x->dim] <= x->cut ? x->l : x->r;
    }
    double s;
    if (!memcmp(x->pt, q, D * sizeof(double)))
        s = (1 - x->mass / (2.0 * t->size)) / (d + log2(x->mass + 1.0));
    else
        s = 1.0 / (d + 1);
    for (int k = d - 1; k >= 0; k--) {
        double lo[16], hi[16], nr = 0, df = 0;
        nbox(path[k], D, lo, hi);
        for (int i = 0; i < D; i++) {
            double nl = fmin(lo[i], q[i]), nh = fmax(hi[i], q[i]);
            nr += nh - nl;
            df += (nh - nl) - (hi[i] - lo[i]);
        }
        if (df <= 0)
            break;
        double p = df / nr;
        s = p / (k + 1) + (1 - p) * s;
    }
    return s * log2(t->size + 1.0);
}

static void ndelete(struct ntree *t, int D, const double *a)
{
    struct nnode *x = t->root;
    while (x->l)
        x = a[x->dim] <= x->cut ? x->l : x->r;
    for (struct nnode *y = x; y; y = y->parent)
        y->mass--;
    if (x->mass > 0)
        return;
    struct nnode *p = x->parent;
    free(x->pt);
    free(x);
    if (!p) {
        t->root = NULL;
        return;
    }
    struct nnode *sib = p->l == x ? p->r : p->l;
    sib->parent = p->parent;
    if (!p->parent)
        t->root = sib;
    else if (p->parent->l == p)
        p->parent->l = sib;
    else
        p->parent->r = sib;
    free(p);
}

static void ninsert(struct naive *n, struct ntree *t, const double *q)
{
    int D = n->D;
    struct nnode *leaf = calloc(1, sizeof(*leaf));
    leaf->pt = malloc(D * sizeof(double));
    memcpy(leaf->pt, q, D * sizeof(double));
    leaf->mass = 1;
    if (!t->root) {
        t->root = leaf;
        return;
    }
    struct nnode *x = t->root;
    for (;;) {
        double lo[16], hi[16], mlo[16], mhi[16], R = 0;
        nbox(x, D, lo, hi);
        for (int i = 0; i < D; i++) {
            mlo[i] = fmin(lo[i], q[i]);
            mhi[i] = fmax(hi[i], q[i]);
            R += mhi[i] - mlo[i];
        }
        if (!x->l && R == 0) {
            free(leaf->pt);
            free(leaf);
            for (struct nnode *y = x; y; y = y->parent)
                y->mass++;
            return;
        }
        if (R > 0) {
            double r = nrand(n) * R;
            int d = 0;
            for (; d < D - 1 && r >= mhi[d] - mlo[d]; d++)
                r -= mhi[d] - mlo[d];
            double c = fmin(mlo[d] + r, nextafter(mhi[d], -INFINITY));
            if ((q[d] <= c && lo[d] > c) || (q[d] > c && hi[d] <= c)) {
                struct nnode *w = calloc(1, sizeof(*w));
                w->dim = d;
                w->cut = c;
                w->parent = x->parent;
                w->mass = x->mass + 1;
                if (!x->parent)
                    t->root = w;
                else if (x->parent->l == x)
                    x->parent->l = w;
                else
                    x->parent->r = w;
                x->parent = w;
                leaf->parent = w;
                w->l = q[d] <= c ? leaf : x;
                w->r = q[d] <= c ? x : leaf;
                return;
            }
        }
        x->mass++;
        x = q[x->dim] <= x->cut ? x->l : x->r;
    }
}

static double naive_update(struct naive *n, const double *q)
{
    double sum = 0;
    int used = 0;
    for (int i = 0; i < NT; i++) {
        double s = nscore_tree(&n->t[i], n->D, q);
        if (s >= 0) {
            sum += s;
            used++;
        }
    }
    n->seq++;
    for (int i = 0; i < NT; i++) {
        struct ntree *t = &n->t[i];
        double k = log(-log(nrand(n))) - n->lambda * n->seq;
        int slot = -1;
        if (t->size < NS) {
            slot = t->size++;
        } else {
            int m = 0; /* linear scan for the max: the first version */
            for (int j = 1; j < NS; j++)
                if (t->key[j] > t->key[m])
                    m = j;
            if (k >= t->key[m])
                continue;
            ndelete(t, n->D, t->pts[m]);
            free(t->pts[m]);
            slot = m;
        }
        t->key[slot] = k;
        t->pts[slot] = malloc(n->D * sizeof(double));
        memcpy(t->pts[slot], q, n->D * sizeof(double));
        ninsert(n, t, q);
    }
    return used ? sum / used : 0;
}

static void nfree_node(struct nnode *x)
{
    if (!x)
        return;
    nfree_node(x->l);
    nfree_node(x->r);
    free(x->pt);
    free(x);
}

static void naive_free(struct naive *n)
{
    for (int i = 0; i < NT; i++) {
        nfree_node(n->t[i].root);
        for (int j = 0; j < n->t[i].size; j++)
            free(n->t[i].pts[j]);
    }
    free(n);
}

/* ---- driver -------------------------------------------------------------- */

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, n, sizeof(double), cmp);
    return v[n / 2];
}

static double rcf_rate(const double *data, long n, unsigned D, double decay, uint64_t seed, unsigned lanes,
                       double *sink, size_t *mem)
{
    struct rcf_params p = { .dims = D, .time_decay = decay, .seed = seed };
    struct rcf *f = rcf_new(&p);
    if (!f)
        abort();
    rcf_set_lanes(f, lanes);
    for (long i = 0; i < 4096; i++) /* warm-up: fill the samples */
        *sink += rcf_update(f, data + (size_t)i * D, NULL);
    double t0 = now();
    for (long i = 0; i < n; i++)
        *sink += rcf_update(f, data + (size_t)(4096 + i) * D, NULL);
    double r = n / (now() - t0);
    *mem = rcf_memory(f);
    rcf_free(f);
    return r;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    bool naive = argc > 3 ? atoi(argv[3]) != 0 : true;
    long nb = n / 10; /* the baseline is slow */
    const unsigned dims[] = { 1, 4, 8 };
    const double decays[] = { 1.0 / (10 * 256), 0 };
    double sink = 0, sink1 = 0, nsink = 0;
    if (runs < 1 || runs > 16 || n < 1)
        return 2;
    printf("%-5s %-12s %12s %12s %8s %12s %9s %13s\n", "dims", "time_decay", "rcf upd/s", "1-tree upd/s",
           "lanes", "naive upd/s", "speedup", "bytes/forest");
    for (size_t di = 0; di < 3; di++)
        for (size_t ki = 0; ki < 2; ki++) {
            unsigned D = dims[di];
            double *data = malloc((size_t)(n + 4096) * D * sizeof(double));
            if (!data)
                return 1;
            for (size_t i = 0; i < (size_t)(n + 4096) * D; i++)
                data[i] = gauss() + (unif() < 0.001 ? 10 : 0);
            double fast[16], one[16], slow[16];
            size_t mem = 0;
            for (int r = 0; r < runs; r++) {
                /* alternate so both see the same machine load */
                fast[r] = rcf_rate(data, n, D, decays[ki], (uint64_t)r + 1, 0, &sink, &mem);
                one[r] = rcf_rate(data, n, D, decays[ki], (uint64_t)r + 1, 1, &sink1, &mem);
                slow[r] = 0;
                if (naive) {
                    struct naive *nv = calloc(1, sizeof(*nv));
                    nv->D = (int)D;
                    nv->rng = 0x1234567ULL + (uint64_t)r;
                    nv->lambda = decays[ki];
                    for (long i = 0; i < 4096; i++)
                        nsink += naive_update(nv, data + (size_t)i * D);
                    double t0 = now();
                    for (long i = 0; i < nb; i++)
                        nsink += naive_update(nv, data + (size_t)(4096 + i) * D);
                    slow[r] = nb / (now() - t0);
                    naive_free(nv);
                }
            }
            double mf = median(fast, runs), m1 = median(one, runs), ms = median(slow, runs);
            printf("%-5u %-12.6g %12.0f %12.0f %7.2fx %12.0f %8.1fx %13zu\n", D, decays[ki], mf, m1, mf / m1, ms,
                   ms > 0 ? mf / ms : 0.0, mem);
            fflush(stdout);
            free(data);
        }
    printf("# 50 trees x 256 samples, score + insert per update, per CPU second, median of %d runs%s\n", runs,
           naive ? "" : " (naive baseline skipped)");
    /* the same forests scored both ways: the sums must be equal to the bit */
    if (memcmp(&sink, &sink1, sizeof sink) != 0) {
        printf("# lanes and one-tree scores differ: %.17g %.17g\n", sink, sink1);
        return 1;
    }
    printf("# sink %g %g\n", sink, nsink);
    return 0;
}
