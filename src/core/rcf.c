/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming Random Cut Forest.
 *
 * Layout, chosen for the update path: every tree keeps its internal nodes in
 * one flat array (header + bounding box inline, so a descent touches one
 * cache region per level), its leaves in another, and refers to children by
 * int32 (>= 0 internal node, < 0 leaf ~ref). Points live once in a shared,
 * reference-counted point store; trees and samplers hold indices. Boxes are
 * kept exact (min/max only), so they are always the union of their points
 * and a reload can recompute them bit for bit.
 *
 * Sampling: as randomcutforest-java's compact sampler, a point at sequence
 * t gets key log(E) - lambda t with E ~ Exp(1) and each tree keeps the
 * sample_size smallest keys (max-heap). Once a heap is full we draw the
 * number of points until the next acceptance directly (the cumulative
 * hazard of "key < heap max" is a geometric sum) and the accepted key from
 * the truncated exponential, so a tree that does not take the point costs
 * one integer compare rather than two logarithms.
 *
 * Scoring walks root to leaf once and unrolls the AWS leaf-to-root
 * recursion s = p u + (1 - p) s into a running product, so no path stack.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "rarewatch/rcf.h"

#define REF_NONE INT32_MIN
#define MAX_TREES 10000u
#define MAX_SAMPLE (1u << 20)
#define MAX_DIMS 4096u
#define RCF_LANES 4u

struct rnode {
    double cut;
    int32_t child[2]; /* left (<= cut), right; indexed by the comparison, no branch */
    uint32_t dim, mass;
    /* followed by double min[D], max[D] */
};

struct rleaf {
    int32_t point; /* free list: next free leaf */
    uint32_t mass;
};

struct rtree {
    uint64_t rng[4];
    uint64_t next_accept; /* sequence of the next accepted point once full */
    int32_t root, free_node, free_leaf;
    uint32_t size; /* points in the sampler == sum of leaf masses */
    unsigned char *nodes;
    struct rleaf *leaves;
    double *key;   /* max-heap */
    int32_t *hpt;  /* point of each heap entry */
};

struct rcf {
    struct rcf_params p;
    unsigned D;           /* dims * shingle */
    size_t node_bytes;
    uint64_t seen, seq;   /* input points; shingled points offered */
    double *shingle;      /* last shingle_size points, oldest first */
    unsigned shingle_fill;
    /* point store */
    double *pts;
    uint32_t *refs;
    int32_t *pfree;       /* stack of free slots */
    uint32_t pcap, pmax, npfree;
    /* forest */
    struct rtree *t;
    unsigned char *node_mem;
    struct rleaf *leaf_mem;
    double *key_mem;
    int32_t *hpt_mem;
    double *inv_depth;    /* 1/(d+1) */
    double *tscore;       /* per-tree scores of one forest_score */
    double expm1_decay;   /* expm1(time_decay), for schedule_next */
    unsigned lanes;       /* trees descended in lockstep; 1 = one at a time */
    double *norm;         /* log2(m+1) */
    /* scratch */
    double *q, *hi, *lo, *thi, *tlo;
    int32_t **path;
};

/* ---- RNG: xoshiro256** seeded by splitmix64 ------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in (0, 1): never 0 or 1, so logs stay finite. */
static inline double rng_open01(uint64_t *s)
{
    return ((double)(rng_next(s) >> 12) + 0.5) * 0x1p-52;
}

/* ---- accessors ----------------------------------------------------------- */

static inline struct rnode *node_at(const struct rcf *f, const struct rtree *t, int32_t i)
{
    return (struct rnode *)(void *)(t->nodes + (size_t)i * f->node_bytes);
}
static inline double *node_box(struct rnode *n) { return (double *)(void *)(n + 1); }
static inline const double *point_at(const struct rcf *f, int32_t i)
{
    return f->pts + (size_t)i * f->D;
}

/* ---- construction -------------------------------------------------------- */

static int params_fix(struct rcf_params *p)
{
    if (!p->trees)
        p->trees = 50;
    if (!p->sample_size)
        p->sample_size = 256;
    if (!p->shingle_size)
        p->shingle_size = 1;
    if (p->initial_accept_fraction == 0)
        p->initial_accept_fraction = 0.125;
    if (p->trees > MAX_TREES || p->sample_size < 2 || p->sample_size > MAX_SAMPLE || p->dims < 1 ||
        p->dims > MAX_DIMS || p->shingle_size > MAX_DIMS || p->dims * p->shingle_size > MAX_DIMS)
        return -EINVAL;
    if (!(p->time_decay >= 0 && p->time_decay < 1) ||
        !(p->initial_accept_fraction > 0 && p->initial_accept_fraction <= 1))
        return -EINVAL;
    return 0;
}

struct rcf *rcf_free(struct rcf *f)
{
    if (!f)
        return NULL;
    free(f->shingle);
    free(f->pts);
    free(f->refs);
    free(f->pfree);
    free(f->t);
    free(f->node_mem);
    free(f->leaf_mem);
    free(f->key_mem);
    free(f->hpt_mem);
    free(f->inv_depth);
    free(f->tscore);
    free(f->norm);
    free(f->q);
    free(f->path);
    free(f);
    return NULL;
}

static void tree_reset(struct rcf *f, struct rtree *t)
{
    unsigned S = f->p.sample_size;
    t->root = REF_NONE;
    t->size = 0;
    t->next_accept = 0;
    for (unsigned i = 0; i + 1 < S - 1; i++)
        node_at(f, t, (int32_t)i)->child[0] = (int32_t)i + 1;
    node_at(f, t, (int32_t)S - 2)->child[0] = -1;
    t->free_node = 0;
    for (unsigned i = 0; i < S; i++)
        t->leaves[i] = (struct rleaf){ (int32_t)i + 1, 0 };
    t->leaves[S - 1].point = -1;
    t->free_leaf = 0;
}

struct rcf *rcf_new(const struct rcf_params *params)
{
    struct rcf_params p = *params;
    if (params_fix(&p) < 0)
        return NULL;
    struct rcf *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->p = p;
    unsigned S = p.sample_size, T = p.trees, D = p.dims * p.shingle_size;
    f->D = D;
    f->node_bytes = sizeof(struct rnode) + 2 * D * sizeof(double);
    f->shingle = calloc(D, sizeof(double));
    f->t = calloc(T, sizeof(*f->t));
    f->node_mem = malloc((size_t)T * (S - 1) * f->node_bytes);
    f->leaf_mem = malloc((size_t)T * S * sizeof(struct rleaf));
    f->key_mem = malloc((size_t)T * S * sizeof(double));
    f->hpt_mem = malloc((size_t)T * S * sizeof(int32_t));
    f->inv_depth = malloc((S + 1) * sizeof(double));
    f->norm = malloc((S + 1) * sizeof(double));
    f->tscore = malloc((size_t)T * sizeof(double));
    f->lanes = RCF_LANES;
    f->expm1_decay = expm1(p.time_decay);
    f->q = malloc(5 * (size_t)D * sizeof(double));
    f->path = malloc((S + 1) * sizeof(int32_t *));
    f->pmax = T * S + 1;
    if (!f->shingle || !f->t || !f->node_mem || !f->leaf_mem || !f->key_mem || !f->hpt_mem ||
        !f->inv_depth || !f->norm || !f->tscore || !f->q || !f->path)
        return rcf_free(f);
    f->hi = f->q + D;
    f->lo = f->hi + D;
    f->thi = f->lo + D;
    f->tlo = f->thi + D;
    for (unsigned d = 0; d <= S; d++) {
        f->inv_depth[d] = 1.0 / (d + 1.0);
        f->norm[d] = log2(d + 1.0);
    }
    uint64_t sm = p.seed;
    for (unsigned i = 0; i < T; i++) {
        struct rtree *t = &f->t[i];
        t->nodes = f->node_mem + (size_t)i * (S - 1) * f->node_bytes;
        t->leaves = f->leaf_mem + (size_t)i * S;
        t->key = f->key_mem + (size_t)i * S;
        t->hpt = f->hpt_mem + (size_t)i * S;
        for (int k = 0; k < 4; k++)
            t->rng[k] = splitmix64(&sm);
        tree_reset(f, t);
    }
    return f;
}

uint64_t rcf_points_seen(const struct rcf *f) { return f->seen; }

void rcf_set_lanes(struct rcf *f, unsigned lanes) { f->lanes = lanes ? lanes : RCF_LANES; }

size_t rcf_memory(const struct rcf *f)
{
    size_t T = f->p.trees, S = f->p.sample_size;
    return sizeof(*f) + f->D * sizeof(double) + T * (sizeof(struct rtree) + sizeof(double)) +
           T * (S - 1) * f->node_bytes +
           T * S * (sizeof(struct rleaf) + sizeof(double) + sizeof(int32_t)) + 2 * (S + 1) * sizeof(double) +
           5 * f->D * sizeof(double) + (S + 1) * sizeof(int32_t *) +
           (size_t)f->pcap * (f->D * sizeof(double) + sizeof(uint32_t) + sizeof(int32_t));
}

/* ---- point store ---------------------------------------------------------- */

static int store_grow(struct rcf *f)
{
    uint32_t ncap = f->pcap ? f->pcap * 2 : 2 * f->p.sample_size;
    if (ncap > f->pmax)
        ncap = f->pmax;
    if (ncap <= f->pcap)
        return -ENOMEM;
    double *pts = realloc(f->pts, (size_t)ncap * f->D * sizeof(double));
    if (!pts)
        return -ENOMEM;
    f->pts = pts;
    uint32_t *refs = realloc(f->refs, ncap * sizeof(uint32_t));
    if (!refs)
        return -ENOMEM;
    f->refs = refs;
    int32_t *pf = realloc(f->pfree, ncap * sizeof(int32_t));
    if (!pf)
        return -ENOMEM;
    f->pfree = pf;
    /* highest first so slots are handed out in ascending order */
    for (uint32_t i = ncap; i > f->pcap; i--) {
        f->refs[i - 1] = 0;
        f->pfree[f->npfree++] = (int32_t)(i - 1);
    }
    f->pcap = ncap;
    return 0;
}

static int store_add(struct rcf *f, const double *q)
{
    if (!f->npfree && store_grow(f) < 0)
        return -ENOMEM;
    int32_t i = f->pfree[--f->npfree];
    memcpy(f->pts + (size_t)i * f->D, q, f->D * sizeof(double));
    f->refs[i] = 0;
    return i;
}

static void store_unref(struct rcf *f, int32_t i)
{
    if (--f->refs[i] == 0)
        f->pfree[f->npfree++] = i;
}

/* ---- tree ---------------------------------------------------------------- */

static int32_t leaf_alloc(struct rtree *t, int32_t point)
{
    int32_t l = t->free_leaf;
    t->free_leaf = t->leaves[l].point;
    t->leaves[l] = (struct rleaf){ point, 1 };
    return l;
}

static void leaf_release(struct rtree *t, int32_t l)
{
    t->leaves[l].point = t->free_leaf;
    t->leaves[l].mass = 0;
    t->free_leaf = l;
}

static int32_t node_alloc(const struct rcf *f, struct rtree *t)
{
    int32_t n = t->free_node;
    t->free_node = node_at(f, t, n)->child[0];
    return n;
}

static void node_release(const struct rcf *f, struct rtree *t, int32_t n)
{
    node_at(f, t, n)->child[0] = t->free_node;
    t->free_node = n;
}

static inline bool same_point(const double *a, const double *b, unsigned D)
{
    for (unsigned i = 0; i < D; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

/* Draw a cut uniformly over the box [lo, hi] (total range R > 0). */
static inline unsigned draw_cut(uint64_t *rng, const double *lo, const double *hi, unsigned D, double R, double *cut)
{
    double r = rng_open01(rng) * R;
    unsigned last = 0;
    for (unsigned i = 0; i < D; i++) {
        double w = hi[i] - lo[i];
        if (w <= 0)
            continue;
        last = i;
        if (r < w) {
            double c = lo[i] + r;
            *cut = c < hi[i] ? c : nextafter(hi[i], -INFINITY);
            return i;
        }
        r -= w;
    }
    /* rounding ran past the end: the last dimension with a range */
    *cut = nextafter(hi[last], -INFINITY);
    return last;
}

/* Insert point pid (coords q). Returns the point index the tree keeps for
 * it: pid, or the index already at an equal leaf (then that leaf's mass
 * grows), which is what the sampler must reference. */
static inline __attribute__((always_inline)) int32_t tree_insert_d(struct rcf *f, struct rtree *t, const double *q,
                                                                    int32_t pid, unsigned D)
{
    double *mlo = f->thi, *mhi = f->tlo; /* merged box scratch */
    if (t->root == REF_NONE) {
        t->root = ~leaf_alloc(t, pid);
        return pid;
    }
    int32_t *slot = &t->root;
    for (;;) {
        int32_t ref = *slot;
        const double *blo, *bhi;
        struct rnode *n = NULL;
        if (ref < 0) {
            struct rleaf *l = &t->leaves[~ref];
            const double *a = point_at(f, l->point);
            if (same_point(a, q, D)) {
                l->mass++;
                return l->point;
            }
            blo = bhi = a;
        } else {
            n = node_at(f, t, ref);
            blo = node_box(n);
            bhi = blo + D;
        }
        double R = 0;
        bool inside = true;
        for (unsigned i = 0; i < D; i++) {
            mlo[i] = q[i] < blo[i] ? q[i] : blo[i];
            mhi[i] = q[i] > bhi[i] ? q[i] : bhi[i];
            inside &= mlo[i] == blo[i] && mhi[i] == bhi[i];
            R += mhi[i] - mlo[i];
        }
        if (!inside) {
            double cut;
            unsigned d = draw_cut(t->rng, mlo, mhi, D, R, &cut);
            bool sep = (q[d] <= cut && blo[d] > cut) || (q[d] > cut && bhi[d] <= cut);
            if (sep) {
                int32_t w = node_alloc(f, t);
                struct rnode *wn = node_at(f, t, w);
                int32_t leaf = ~leaf_alloc(t, pid);
                wn->cut = cut;
                wn->dim = d;
                wn->mass = (n ? n->mass : t->leaves[~ref].mass) + 1;
                if (q[d] <= cut) {
                    wn->child[0] = leaf;
                    wn->child[1] = ref;
                } else {
                    wn->child[0] = ref;
                    wn->child[1] = leaf;
                }
                memcpy(node_box(wn), mlo, D * sizeof(double));
                memcpy(node_box(wn) + D, mhi, D * sizeof(double));
                *slot = w;
                return pid;
            }
            memcpy(node_box(n), mlo, D * sizeof(double));
            memcpy(node_box(n) + D, mhi, D * sizeof(double));
        }
        /* a leaf is never inside-but-different, and differs → separated */
        n->mass++;
        slot = &n->child[q[n->dim] > n->cut]; /* no branch: left/right is a coin flip */
    }
}

static void child_box(const struct rcf *f, const struct rtree *t, int32_t ref, const double **lo,
                      const double **hi)
{
    if (ref < 0) {
        *lo = *hi = point_at(f, t->leaves[~ref].point);
    } else {
        *lo = node_box(node_at(f, t, ref));
        *hi = *lo + f->D;
    }
}

static inline __attribute__((always_inline)) int tree_delete_d(struct rcf *f, struct rtree *t, int32_t pid,
                                                               unsigned D)
{
    unsigned depth = 0;
    const double *a = point_at(f, pid);
    int32_t **path = f->path;
    int32_t *slot = &t->root;
    while (*slot >= 0) {
        struct rnode *n = node_at(f, t, *slot);
        path[depth++] = slot;
        slot = &n->child[a[n->dim] > n->cut];
    }
    if (*slot == REF_NONE || t->leaves[~*slot].point != pid)
        return -EUCLEAN;
    for (unsigned k = 0; k < depth; k++)
        node_at(f, t, *path[k])->mass--;
    struct rleaf *l = &t->leaves[~*slot];
    if (--l->mass > 0)
        return 0;
    leaf_release(t, ~*slot);
    if (depth == 0) {
        t->root = REF_NONE;
        return 0;
    }
    int32_t *pslot = path[--depth];
    int32_t parent = *pslot;
    struct rnode *pn = node_at(f, t, parent);
    *pslot = slot == &pn->child[0] ? pn->child[1] : pn->child[0];
    node_release(f, t, parent);
    /* Ancestors shrink only where the removed point was on their boundary. */
    while (depth > 0) {
        struct rnode *g = node_at(f, t, *path[--depth]);
        double *lo = node_box(g), *hi = lo + D;
        bool strictly = true, changed = false;
        for (unsigned i = 0; i < D; i++)
            strictly &= lo[i] < a[i] && a[i] < hi[i];
        if (strictly)
            break;
        const double *l1, *h1, *l2, *h2;
        child_box(f, t, g->child[0], &l1, &h1);
        child_box(f, t, g->child[1], &l2, &h2);
        for (unsigned i = 0; i < D; i++) {
            double nl = l1[i] < l2[i] ? l1[i] : l2[i], nh = h1[i] > h2[i] ? h1[i] : h2[i];
            changed |= nl != lo[i] || nh != hi[i];
            lo[i] = nl;
            hi[i] = nh;
        }
        if (!changed)
            break;
    }
    return 0;
}

/* One dimension (the common case) with the box loops and copies unrolled. */
static __attribute__((noinline)) int32_t tree_insert_1(struct rcf *f, struct rtree *t, const double *q, int32_t pid)
{
    return tree_insert_d(f, t, q, pid, 1);
}
static __attribute__((noinline)) int32_t tree_insert_n(struct rcf *f, struct rtree *t, const double *q, int32_t pid)
{
    return tree_insert_d(f, t, q, pid, f->D);
}
static int32_t tree_insert(struct rcf *f, struct rtree *t, const double *q, int32_t pid)
{
    return f->D == 1 ? tree_insert_1(f, t, q, pid) : tree_insert_n(f, t, q, pid);
}
static __attribute__((noinline)) int tree_delete_1(struct rcf *f, struct rtree *t, int32_t pid)
{
    return tree_delete_d(f, t, pid, 1);
}
static __attribute__((noinline)) int tree_delete_n(struct rcf *f, struct rtree *t, int32_t pid)
{
    return tree_delete_d(f, t, pid, f->D);
}
static int tree_delete(struct rcf *f, struct rtree *t, int32_t pid)
{
    return f->D == 1 ? tree_delete_1(f, t, pid) : tree_delete_n(f, t, pid);
}

/* ---- scoring ------------------------------------------------------------- */

static inline double leaf_seen(const struct rcf *f, unsigned depth, uint32_t m, uint32_t M)
{
    /* AWS: damp(m, M) * scoreSeen(depth, m) */
    return (1.0 - m / (2.0 * M)) / (depth + f->norm[m]);
}

/* The box [lo, hi] grown to hold q: returns how much its range sum grew,
 * *nr the grown range sum. The order of the sums is the score's (bits). */
static inline __attribute__((always_inline)) double box_grow(const double *q, const double *lo, const double *hi,
                                                             unsigned D, double *nr)
{
    /* The sums start from the first terms rather than 0 + them: the same
     * bits, since nh - nl and (nh - nl) - (h - l) are never -0. */
    double x = q[0], l = lo[0], h = hi[0];
    double nl = x < l ? x : l, nh = x > h ? x : h;
    double r = nh - nl, diff = (nh - nl) - (h - l);
#pragma GCC unroll 8
    for (unsigned i = 1; i < D; i++) {
        x = q[i], l = lo[i], h = hi[i];
        nl = x < l ? x : l, nh = x > h ? x : h;
        r += nh - nl;
        diff += (nh - nl) - (h - l);
    }
    *nr = r;
    return diff;
}

/* Score of the tree at its leaf: ref is the leaf reached at `depth`, acc and
 * P the running sum and product of the descent (as tree_score). */
static inline double tree_finish(const struct rcf *f, const struct rtree *t, const double *q, unsigned D, int32_t ref,
                                 unsigned depth, double acc, double P)
{
    const struct rleaf *l = &t->leaves[~ref];
    double sl = P == 1 && same_point(point_at(f, l->point), q, D) ? leaf_seen(f, depth, l->mass, t->size)
                                                                   : f->inv_depth[depth];
    return (acc + P * sl) * f->norm[t->size];
}

static double tree_score(const struct rcf *f, const struct rtree *t, const double *q)
{
    unsigned D = f->D, depth = 0;
    double acc = 0, P = 1;
    int32_t ref = t->root;
    while (ref >= 0) {
        struct rnode *n = node_at(f, t, ref);
        const double *lo = node_box(n), *hi = lo + D;
        double nr, diff = box_grow(q, lo, hi, D, &nr);
        if (diff > 0) {
            double p = diff / nr;
            acc += P * p * f->inv_depth[depth];
            P *= 1 - p;
        }
        ref = q[n->dim] <= n->cut ? n->child[0] : n->child[1];
        depth++;
    }
    return tree_finish(f, t, q, D, ref, depth, acc, P);
}

/*
 * tree_score over K trees in lockstep. One descent is a chain of dependent
 * loads (node -> child index -> node); on its own the core waits on each
 * load and on a mispredicted left/right branch per level. Here K chains are
 * in flight, the child is picked by an index (no branch), and a lane that
 * reaches its leaf takes the next tree, so lanes never idle while trees of
 * different depths remain. The arithmetic per tree is tree_score's, in the
 * same order: skipping a level where the point is inside the box and adding
 * P * 0 * w there give the same bits (acc + +0 == acc, P * 1 == P), so the
 * scores are bit-identical. Writes each non-empty tree's score to out[] in
 * tree order and returns how many.
 */
/* x if c > 0 else +0 (c NaN included), without a branch: compilers turn
 * `c > 0 ? x : 0` into one, and c > 0 is a coin flip per level. A vector
 * compare gives the mask directly (cmpltpd/pand on x86-64, 2 instructions
 * where a scalar bool mask took 5); bit-exact. */
typedef double v2d __attribute__((vector_size(16)));
typedef int64_t v2i __attribute__((vector_size(16)));
static inline double keep_if_pos(double x, double c)
{
    v2i m = (v2i)((v2d){ c, 0 } > (v2d){ 0, 0 });
    return ((v2d)((v2i)(v2d){ x, 0 } & m))[0];
}

struct lane {
    const unsigned char *nodes;
    const struct rtree *t; /* NULL: no tree left for this lane */
    int32_t ref;
    unsigned depth, slot;
    double acc, P;
};

/* Give the lane the next non-empty tree from *next, or retire it. */
static inline __attribute__((always_inline)) void lane_start(const struct rcf *f, struct lane *ln,
                                                             unsigned *next, unsigned *used)
{
    unsigned T = f->p.trees, i = *next;
    while (i < T && f->t[i].root == REF_NONE)
        i++;
    if (i < T) {
        ln->t = &f->t[i++];
        ln->nodes = ln->t->nodes;
        ln->ref = ln->t->root;
        ln->slot = (*used)++;
    } else {
        ln->t = NULL;
        ln->nodes = NULL;
        ln->ref = REF_NONE;
        ln->slot = 0;
    }
    *next = i;
    ln->depth = 0;
    ln->acc = 0;
    ln->P = 1;
}

static inline __attribute__((always_inline)) unsigned
forest_lanes(const struct rcf *f, const double *q, unsigned D, unsigned K, double *out)
{
    enum { KMAX = 8 };
    struct lane ln[KMAX];
    unsigned next = 0, used = 0;
    /* node_bytes, a constant when D is */
    size_t nb = sizeof(struct rnode) + 2 * (size_t)D * sizeof(double);
    const double *inv = f->inv_depth;
#pragma GCC unroll 8
    for (unsigned k = 0; k < K; k++)
        lane_start(f, &ln[k], &next, &used);
    for (;;) {
        bool any = false;
#pragma GCC unroll 8
        for (unsigned k = 0; k < K; k++) {
            struct lane *L = &ln[k];
            if (L->ref >= 0) {
                const struct rnode *n = (const struct rnode *)(const void *)(L->nodes + (size_t)L->ref * nb);
                const double *lo = (const double *)(const void *)(n + 1), *hi = lo + D;
                double nr, diff = box_grow(q, lo, hi, D, &nr);
                /* nr > 0: an internal node's box holds two distinct points */
                double p = keep_if_pos(diff / nr, diff);
                L->acc += L->P * p * inv[L->depth];
                L->P *= 1 - p;
                unsigned dim = D == 1 ? 0 : n->dim;
                L->ref = n->child[q[dim] > n->cut];
                L->depth++;
                any = true;
            } else if (L->t) {
                out[L->slot] = tree_finish(f, L->t, q, D, L->ref, L->depth, L->acc, L->P);
                lane_start(f, L, &next, &used);
                any = true;
            }
        }
        if (!any)
            return used;
    }
}

/* The same score split by dimension and direction, added into f->hi/lo. */
static double tree_score_di(const struct rcf *f, const struct rtree *t, const double *q)
{
    unsigned D = f->D, depth = 0;
    double acc = 0, P = 1, *th = f->thi, *tl = f->tlo;
    memset(th, 0, D * sizeof(double));
    memset(tl, 0, D * sizeof(double));
    int32_t ref = t->root;
    while (ref >= 0) {
        struct rnode *n = node_at(f, t, ref);
        const double *lo = node_box(n), *hi = lo + D;
        double nr, diff = box_grow(q, lo, hi, D, &nr);
        if (diff > 0) {
            double p = diff / nr, w = P * f->inv_depth[depth] / nr;
            for (unsigned i = 0; i < D; i++) {
                th[i] += w * (q[i] > hi[i] ? q[i] - hi[i] : 0);
                tl[i] += w * (q[i] < lo[i] ? lo[i] - q[i] : 0);
            }
            acc += P * p * f->inv_depth[depth];
            P *= 1 - p;
        }
        ref = q[n->dim] <= n->cut ? n->child[0] : n->child[1];
        depth++;
    }
    const struct rleaf *l = &t->leaves[~ref];
    const double *a = point_at(f, l->point);
    if (P == 1 && same_point(a, q, D)) {
        double sl = leaf_seen(f, depth, l->mass, t->size);
        for (unsigned i = 0; i < D; i++) {
            th[i] += sl / (2.0 * D);
            tl[i] += sl / (2.0 * D);
        }
        acc += sl;
    } else {
        double sl = P * f->inv_depth[depth], nr = 0;
        for (unsigned i = 0; i < D; i++)
            nr += fabs(q[i] - a[i]);
        for (unsigned i = 0; i < D; i++) {
            th[i] += sl * (q[i] > a[i] ? q[i] - a[i] : 0) / nr;
            tl[i] += sl * (q[i] < a[i] ? a[i] - q[i] : 0) / nr;
        }
        acc += sl;
    }
    double norm = f->norm[t->size];
    for (unsigned i = 0; i < D; i++) {
        f->hi[i] += th[i] * norm;
        f->lo[i] += tl[i] * norm;
    }
    return acc * norm;
}

/* Instances: 4 lanes (the fastest here at 1, 4 and 8 dimensions) with the
 * dimension a constant for the common sizes (the box loop unrolled), and
 * 2/4/8 lanes for any dimension. */
#define LANES_FN(name, d, k)                                                                   \
    static __attribute__((noinline)) unsigned name(const struct rcf *f, const double *q, double *out) \
    {                                                                                          \
        return forest_lanes(f, q, (d) ? (d) : f->D, k, out);                                   \
    }
LANES_FN(lanes_d1, 1, 4)
LANES_FN(lanes_d2, 2, 4)
LANES_FN(lanes_d4, 4, 4)
LANES_FN(lanes_d8, 8, 4)
LANES_FN(lanes_2, 0, 2)
LANES_FN(lanes_4, 0, 4)
LANES_FN(lanes_8, 0, 8)
#undef LANES_FN

/* Each non-empty tree's score into ts[], in tree order; returns how many. */
static unsigned score_lanes(const struct rcf *f, const double *q, double *ts)
{
    unsigned K = f->lanes;
    if (K == 4 && f->D == 1)
        return lanes_d1(f, q, ts);
    if (K == 4 && f->D == 2)
        return lanes_d2(f, q, ts);
    if (K == 4 && f->D == 4)
        return lanes_d4(f, q, ts);
    if (K == 4 && f->D == 8)
        return lanes_d8(f, q, ts);
    return K >= 8 ? lanes_8(f, q, ts) : K >= 4 ? lanes_4(f, q, ts) : lanes_2(f, q, ts);
}

static double forest_score(const struct rcf *f, const double *q, double *attr, double *high, double *low)
{
    double sum = 0;
    unsigned used = 0, D = f->D, dims = f->p.dims;
    bool di = attr || high || low;
    if (!di && f->lanes > 1) {
        /* summed in tree order as below: the same bits */
        used = score_lanes(f, q, f->tscore);
        for (unsigned i = 0; i < used; i++)
            sum += f->tscore[i];
        return used ? sum * (1.0 / used) : 0;
    }
    if (di) {
        memset(f->hi, 0, D * sizeof(double));
        memset(f->lo, 0, D * sizeof(double));
    }
    for (unsigned i = 0; i < f->p.trees; i++) {
        const struct rtree *t = &f->t[i];
        if (t->root == REF_NONE)
            continue;
        used++;
        sum += di ? tree_score_di(f, t, q) : tree_score(f, t, q);
    }
    double inv = used ? 1.0 / used : 0;
    if (di) {
        for (unsigned j = 0; j < dims; j++) {
            double h = 0, l = 0;
            for (unsigned s = 0; s < f->p.shingle_size; s++) {
                h += f->hi[s * dims + j];
                l += f->lo[s * dims + j];
            }
            if (attr)
                attr[j] = (h + l) * inv;
            if (high)
                high[j] = h * inv;
            if (low)
                low[j] = l * inv;
        }
    }
    return sum * inv;
}

/* ---- sampling ------------------------------------------------------------ */

static void heap_push(struct rtree *t, double k, int32_t pt)
{
    uint32_t c = t->size++;
    while (c > 0) {
        uint32_t up = (c - 1) / 2;
        if (!(t->key[up] < k))
            break;
        t->key[c] = t->key[up];
        t->hpt[c] = t->hpt[up];
        c = up;
    }
    t->key[c] = k;
    t->hpt[c] = pt;
}

/* Remove the max entry, return its point. */
static int32_t heap_pop(struct rtree *t)
{
    int32_t top = t->hpt[0];
    uint32_t n = --t->size, c = 0;
    double k = t->key[n];
    int32_t pt = t->hpt[n];
    for (;;) {
        uint32_t m = 2 * c + 1;
        if (m >= n)
            break;
        if (m + 1 < n && t->key[m + 1] > t->key[m])
            m++;
        if (!(t->key[m] > k))
            break;
        t->key[c] = t->key[m];
        t->hpt[c] = t->hpt[m];
        c = m;
    }
    if (n > 0) {
        t->key[c] = k;
        t->hpt[c] = pt;
    }
    return top;
}

/* With a full heap of max key M after sequence `seq`, a point at s > seq is
 * accepted with probability 1 - exp(-exp(M + lambda s)); invert the
 * cumulative hazard e^A (e^{lambda n} - 1)/(e^lambda - 1) at an Exp(1). */
static void schedule_next(const struct rcf *f, struct rtree *t, uint64_t seq)
{
    double lambda = f->p.time_decay, M = t->key[0];
    double A = M + lambda * (double)(seq + 1), V = -log(rng_open01(t->rng)), n;
    if (lambda == 0)
        n = ceil(V * exp(-A));
    else
        n = ceil(log1p(V * f->expm1_decay * exp(-A)) / lambda);
    if (!(n >= 1))
        n = 1;
    if (n > 0x1p62)
        n = 0x1p62;
    t->next_accept = seq + (uint64_t)n;
}

/* Decide whether tree t takes the point at f->seq. Returns 1 with *key set
 * and *evict the point to drop (or -1), 0 to skip. */
static int sampler_offer(struct rcf *f, struct rtree *t, double *key, int32_t *evict)
{
    unsigned S = f->p.sample_size;
    double lambda = f->p.time_decay, ts = lambda * (double)f->seq;
    *evict = -1;
    if (t->size == S) {
        if (f->seq != t->next_accept)
            return 0;
        /* E ~ Exp(1) conditioned on E < thr */
        double thr = exp(t->key[0] + ts), acc = -expm1(-thr);
        double E = -log1p(-rng_open01(t->rng) * acc);
        double k = log(E) - ts;
        if (!(k < t->key[0]))
            k = nextafter(t->key[0], -INFINITY);
        *key = k;
        *evict = heap_pop(t);
        return 1;
    }
    double k = log(-log(rng_open01(t->rng))) - ts;
    double frac = f->p.initial_accept_fraction, c;
    if (t->size < frac * S)
        c = 1;
    else if (frac >= 1)
        c = 0;
    else
        c = 1 - ((double)t->size / S - frac) / (1 - frac);
    bool initial = rng_open01(t->rng) < c;
    if (initial || (t->size > 0 && k < t->key[0])) {
        *key = k;
        if (!initial)
            *evict = heap_pop(t);
        return 1;
    }
    return 0;
}

/* ---- update -------------------------------------------------------------- */

static bool finite_point(const double *x, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

/* The shingled point the forest would see next, in f->q. */
static void next_shingle(const struct rcf *f, const double *point)
{
    unsigned D = f->D, d = f->p.dims;
    memcpy(f->q, f->shingle + d, (D - d) * sizeof(double));
    memcpy(f->q + D - d, point, d * sizeof(double));
}

static double update(struct rcf *f, const double *point, double *attr, double *high, double *low,
                     bool scored)
{
    if (!finite_point(point, f->p.dims))
        return NAN;
    next_shingle(f, point);
    memcpy(f->shingle, f->q, f->D * sizeof(double));
    f->seen++;
    if (f->shingle_fill < f->p.shingle_size)
        f->shingle_fill++;
    if (f->shingle_fill < f->p.shingle_size) {
        if (attr)
            memset(attr, 0, f->p.dims * sizeof(double));
        if (high)
            memset(high, 0, f->p.dims * sizeof(double));
        if (low)
            memset(low, 0, f->p.dims * sizeof(double));
        return 0;
    }
    const double *q = f->q;
    double score = scored ? forest_score(f, q, attr, high, low) : 0;
    f->seq++;
    int32_t pid = -1;
    for (unsigned i = 0; i < f->p.trees; i++) {
        struct rtree *t = &f->t[i];
        double key;
        int32_t ev;
        if (t->size == f->p.sample_size && t->next_accept != f->seq)
            continue;
        if (!sampler_offer(f, t, &key, &ev))
            continue;
        if (pid < 0) {
            pid = store_add(f, q);
            if (pid < 0)
                abort(); /* the store is preallocated up to its bound; only a failed realloc gets here */
            q = point_at(f, pid);
        }
        if (ev >= 0) {
            if (tree_delete(f, t, ev) < 0)
                abort(); /* an internal inconsistency: nothing sensible to continue with */
            store_unref(f, ev);
        }
        int32_t kept = tree_insert(f, t, q, pid);
        f->refs[kept]++;
        heap_push(t, key, kept);
        if (t->size == f->p.sample_size)
            schedule_next(f, t, f->seq);
    }
    if (pid >= 0 && f->refs[pid] == 0)
        f->pfree[f->npfree++] = pid;
    return score;
}

double rcf_update(struct rcf *f, const double *point, double *attribution)
{
    return update(f, point, attribution, NULL, NULL, true);
}

void rcf_insert(struct rcf *f, const double *point)
{
    (void)update(f, point, NULL, NULL, NULL, false);
}

double rcf_update_di(struct rcf *f, const double *point, double *high, double *low)
{
    return update(f, point, NULL, high, low, true);
}

double rcf_score(const struct rcf *f, const double *point, double *attribution)
{
    if (!finite_point(point, f->p.dims))
        return NAN;
    if (f->shingle_fill + 1 < f->p.shingle_size) {
        if (attribution)
            memset(attribution, 0, f->p.dims * sizeof(double));
        return 0;
    }
    next_shingle(f, point);
    return forest_score(f, f->q, attribution, NULL, NULL);
}

/* ---- invariants ------------------------------------------------------------ */

static int check_tree(const struct rcf *f, const struct rtree *t, uint32_t *refs, uint32_t *cnt,
                      int32_t *stack, unsigned char *seen)
{
    unsigned S = f->p.sample_size, D = f->D, nn = 0, nl = 0, sp = 0;
    uint64_t mass = 0;
    memset(seen, 0, 2 * (size_t)S);
    memset(cnt, 0, S * sizeof(uint32_t));
    if (t->root != REF_NONE)
        stack[sp++] = t->root;
    while (sp) {
        int32_t r = stack[--sp];
        if (r < 0) {
            int32_t l = ~r;
            if ((uint32_t)l >= S || seen[S + l]++)
                return -EUCLEAN;
            const struct rleaf *lf = &t->leaves[l];
            if (lf->mass == 0 || lf->point < 0 || (uint32_t)lf->point >= f->pcap || f->refs[lf->point] == 0)
                return -EUCLEAN;
            mass += lf->mass;
            nl++;
            continue;
        }
        if ((uint32_t)r >= S - 1 || seen[r]++ || sp + 2 > 2 * S)
            return -EUCLEAN;
        nn++;
        struct rnode *n = node_at(f, t, r);
        if (n->dim >= D || !isfinite(n->cut) || n->child[0] == REF_NONE || n->child[1] == REF_NONE)
            return -EUCLEAN;
        stack[sp++] = n->child[0];
        stack[sp++] = n->child[1];
    }
    if (mass != t->size || t->size > S || (t->root != REF_NONE && nn + 1 != nl))
        return -EUCLEAN;
    /* local checks suffice once the shape is a tree: by induction every box
     * is the union of its points and every point routes to its leaf */
    for (unsigned r = 0; r + 1 < S; r++) {
        if (!seen[r])
            continue;
        struct rnode *n = node_at(f, t, (int32_t)r);
        const double *l1, *h1, *l2, *h2, *lo = node_box(n), *hi = lo + D;
        child_box(f, t, n->child[0], &l1, &h1);
        child_box(f, t, n->child[1], &l2, &h2);
        uint32_t m1 = n->child[0] < 0 ? t->leaves[~n->child[0]].mass : node_at(f, t, n->child[0])->mass;
        uint32_t m2 = n->child[1] < 0 ? t->leaves[~n->child[1]].mass : node_at(f, t, n->child[1])->mass;
        if (n->mass != m1 + m2 || !(h1[n->dim] <= n->cut && n->cut < l2[n->dim]))
            return -EUCLEAN;
        for (unsigned i = 0; i < D; i++)
            if (lo[i] != (l1[i] < l2[i] ? l1[i] : l2[i]) || hi[i] != (h1[i] > h2[i] ? h1[i] : h2[i]))
                return -EUCLEAN;
    }
    /* free lists hold exactly the unused slots */
    unsigned fn = 0, fl = 0;
    for (int32_t r = t->free_node; r >= 0; r = node_at(f, t, r)->child[0]) {
        if ((uint32_t)r >= S - 1 || seen[r]++ || ++fn > S)
            return -EUCLEAN;
    }
    for (int32_t l = t->free_leaf; l >= 0; l = t->leaves[l].point) {
        if ((uint32_t)l >= S || seen[S + l]++ || ++fl > S)
            return -EUCLEAN;
    }
    if (nn + fn != S - 1 || nl + fl != S)
        return -EUCLEAN;
    /* the sampler: a heap whose entries are exactly the leaves' masses */
    for (uint32_t i = 0; i < t->size; i++) {
        if (!isfinite(t->key[i]) || (i > 0 && t->key[(i - 1) / 2] < t->key[i]))
            return -EUCLEAN;
        int32_t p = t->hpt[i];
        if (p < 0 || (uint32_t)p >= f->pcap)
            return -EUCLEAN;
        const double *a = point_at(f, p);
        int32_t r = t->root;
        while (r >= 0) {
            struct rnode *n = node_at(f, t, r);
            r = a[n->dim] <= n->cut ? n->child[0] : n->child[1];
        }
        if (r == REF_NONE || t->leaves[~r].point != p)
            return -EUCLEAN;
        cnt[~r]++;
        refs[p]++;
    }
    for (unsigned l = 0; l < S; l++)
        if (seen[S + l] && t->leaves[l].mass && cnt[l] != t->leaves[l].mass)
            return -EUCLEAN;
    if (t->size == S && t->next_accept <= f->seq)
        return -EUCLEAN;
    return 0;
}

int rcf_check(const struct rcf *f)
{
    unsigned S = f->p.sample_size;
    uint32_t *refs = calloc(f->pcap ? f->pcap : 1, sizeof(uint32_t));
    uint32_t *cnt = malloc(S * sizeof(uint32_t));
    int32_t *stack = malloc(2 * (size_t)S * sizeof(int32_t));
    unsigned char *seen = malloc(2 * (size_t)S);
    int r = -ENOMEM;
    if (!refs || !cnt || !stack || !seen)
        goto out;
    for (unsigned i = 0; i < f->p.trees; i++)
        if ((r = check_tree(f, &f->t[i], refs, cnt, stack, seen)) < 0)
            goto out;
    r = -EUCLEAN;
    uint32_t live = 0;
    for (uint32_t i = 0; i < f->pcap; i++) {
        if (refs[i] != f->refs[i] || (refs[i] && !finite_point(point_at(f, (int32_t)i), f->D)))
            goto out;
        live += refs[i] > 0;
    }
    if (live + f->npfree != f->pcap)
        goto out;
    r = 0;
out:
    free(refs);
    free(cnt);
    free(stack);
    free(seen);
    return r;
}

/* ---- serialisation ---------------------------------------------------------
 *
 * Version 1, all integers and doubles little-endian (doubles as their IEEE
 * bit pattern), no padding:
 *
 *   "RWRCF\n" u16 version=1
 *   u32 trees, sample_size, dims, shingle_size; f64 time_decay,
 *   initial_accept_fraction; u64 seed
 *   u64 points_seen, sequence; u32 shingle_fill; f64 shingle[D]
 *   u32 npoints; f64 point[npoints][D]        (live points, renumbered)
 *   per tree: u64 rng[4]; u64 next_accept; u32 size;
 *             size x (f64 key, u32 point)     (heap order)
 *             u32 nodes; nodes in preorder, each a u32 w:
 *               w & 0x80000000: leaf of point w & 0x7fffffff, then u32 mass
 *               else internal node cutting dimension w, then f64 cut
 *   u32 crc32 (zlib) of everything before it
 *
 * Boxes and subtree masses are not stored: they are exact unions and sums,
 * so the loader recomputes them bit for bit. The loader bounds every count
 * by the remaining bytes before allocating and rcf_check()s the result.
 */

#define RCF_MAGIC "RWRCF\n"
#define RCF_VERSION 1

static int put_u32(struct buf *b, uint32_t v)
{
    unsigned char x[4] = { (unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 24) };
    return buf_append(b, x, 4);
}
static int put_u64(struct buf *b, uint64_t v)
{
    int r = put_u32(b, (uint32_t)v);
    return r < 0 ? r : put_u32(b, (uint32_t)(v >> 32));
}
static int put_f64(struct buf *b, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    return put_u64(b, v);
}

int rcf_save(const struct rcf *f, struct buf *out)
{
    size_t start = out->len;
    unsigned D = f->D;
    int r = 0;
    int32_t *map = malloc((f->pcap ? f->pcap : 1) * sizeof(int32_t));
    int32_t *stack = malloc(2 * (size_t)f->p.sample_size * sizeof(int32_t));
    if (!map || !stack) {
        r = -ENOMEM;
        goto out;
    }
#define PUT(x)                 \
    do {                       \
        if ((r = (x)) < 0)     \
            goto fail;         \
    } while (0)
    PUT(buf_append(out, RCF_MAGIC, 6));
    PUT(buf_append(out, (unsigned char[]){ RCF_VERSION & 0xff, RCF_VERSION >> 8 }, 2));
    PUT(put_u32(out, f->p.trees));
    PUT(put_u32(out, f->p.sample_size));
    PUT(put_u32(out, f->p.dims));
    PUT(put_u32(out, f->p.shingle_size));
    PUT(put_f64(out, f->p.time_decay));
    PUT(put_f64(out, f->p.initial_accept_fraction));
    PUT(put_u64(out, f->p.seed));
    PUT(put_u64(out, f->seen));
    PUT(put_u64(out, f->seq));
    PUT(put_u32(out, f->shingle_fill));
    for (unsigned i = 0; i < D; i++)
        PUT(put_f64(out, f->shingle[i]));
    uint32_t np = 0;
    for (uint32_t i = 0; i < f->pcap; i++)
        map[i] = f->refs[i] ? (int32_t)np++ : -1;
    PUT(put_u32(out, np));
    for (uint32_t i = 0; i < f->pcap; i++)
        if (f->refs[i])
            for (unsigned k = 0; k < D; k++)
                PUT(put_f64(out, point_at(f, (int32_t)i)[k]));
    for (unsigned ti = 0; ti < f->p.trees; ti++) {
        const struct rtree *t = &f->t[ti];
        for (int k = 0; k < 4; k++)
            PUT(put_u64(out, t->rng[k]));
        PUT(put_u64(out, t->next_accept));
        PUT(put_u32(out, t->size));
        for (uint32_t i = 0; i < t->size; i++) {
            PUT(put_f64(out, t->key[i]));
            PUT(put_u32(out, (uint32_t)map[t->hpt[i]]));
        }
        uint32_t nodes;
        size_t count_at = out->len;
        PUT(put_u32(out, 0));
        unsigned sp = 0;
        nodes = 0;
        if (t->root != REF_NONE)
            stack[sp++] = t->root;
        while (sp) {
            int32_t ref = stack[--sp];
            nodes++;
            if (ref < 0) {
                PUT(put_u32(out, 0x80000000u | (uint32_t)map[t->leaves[~ref].point]));
                PUT(put_u32(out, t->leaves[~ref].mass));
            } else {
                struct rnode *n = node_at(f, t, ref);
                PUT(put_u32(out, n->dim));
                PUT(put_f64(out, n->cut));
                stack[sp++] = n->child[1];
                stack[sp++] = n->child[0];
            }
        }
        for (int k = 0; k < 4; k++)
            out->data[count_at + k] = (char)(nodes >> (8 * k));
    }
    PUT(put_u32(out, (uint32_t)crc32(0, (const Bytef *)out->data + start, (uInt)(out->len - start))));
#undef PUT
    goto out;
fail:
    out->len = start;
    if (out->data)
        out->data[start] = 0;
out:
    free(map);
    free(stack);
    return r;
}

struct reader {
    const unsigned char *p;
    size_t left;
    bool bad;
};

static uint64_t get_le(struct reader *rd, unsigned n)
{
    if (rd->bad || rd->left < n) {
        rd->bad = true;
        return 0;
    }
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)rd->p[i] << (8 * i);
    rd->p += n;
    rd->left -= n;
    return v;
}
static uint32_t get_u32(struct reader *rd) { return (uint32_t)get_le(rd, 4); }
static uint64_t get_u64(struct reader *rd) { return get_le(rd, 8); }
static double get_f64(struct reader *rd)
{
    uint64_t v = get_u64(rd);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

static int load_tree(struct rcf *f, struct rtree *t, struct reader *rd, uint32_t np, int32_t **stack)
{
    unsigned S = f->p.sample_size, D = f->D;
    for (int k = 0; k < 4; k++)
        t->rng[k] = get_u64(rd);
    t->next_accept = get_u64(rd);
    uint32_t size = get_u32(rd);
    if (rd->bad || size > S || (size_t)size * 12 > rd->left)
        return -EBADMSG;
    for (uint32_t i = 0; i < size; i++) {
        t->key[i] = get_f64(rd);
        uint32_t p = get_u32(rd);
        if (p >= np)
            return -EBADMSG;
        t->hpt[i] = (int32_t)p;
    }
    t->size = size;
    uint32_t nodes = get_u32(rd);
    if (rd->bad || nodes > 2 * S - 1 || (size == 0) != (nodes == 0))
        return -EBADMSG;
    unsigned sp = 0, ninternal = 0;
    if (nodes)
        stack[sp++] = &t->root;
    for (uint32_t i = 0; i < nodes; i++) {
        if (!sp)
            return -EBADMSG;
        int32_t *slot = stack[--sp];
        uint32_t w = get_u32(rd);
        if (w & 0x80000000u) {
            uint32_t p = w & 0x7fffffffu, m = get_u32(rd);
            if (rd->bad || p >= np || m == 0 || m > S || t->free_leaf < 0)
                return -EBADMSG;
            int32_t l = leaf_alloc(t, (int32_t)p);
            t->leaves[l].mass = m;
            *slot = ~l;
        } else {
            double cut = get_f64(rd);
            if (rd->bad || w >= D || !isfinite(cut) || t->free_node < 0)
                return -EBADMSG;
            int32_t n = node_alloc(f, t);
            struct rnode *nd = node_at(f, t, n);
            ninternal++;
            nd->dim = w;
            nd->cut = cut;
            nd->child[0] = nd->child[1] = REF_NONE;
            *slot = n;
            stack[sp++] = &nd->child[1];
            stack[sp++] = &nd->child[0];
        }
    }
    if (sp || rd->bad)
        return -EBADMSG;
    /* preorder allocation from a fresh free list numbers nodes 0, 1, ...
     * with children after parents: fill boxes and masses backwards */
    for (int32_t n = (int32_t)ninternal - 1; n >= 0; n--) {
        struct rnode *nd = node_at(f, t, n);
        const double *l1, *h1, *l2, *h2;
        child_box(f, t, nd->child[0], &l1, &h1);
        child_box(f, t, nd->child[1], &l2, &h2);
        double *lo = node_box(nd), *hi = lo + D;
        for (unsigned i = 0; i < D; i++) {
            lo[i] = l1[i] < l2[i] ? l1[i] : l2[i];
            hi[i] = h1[i] > h2[i] ? h1[i] : h2[i];
        }
        uint32_t m1 = nd->child[0] < 0 ? t->leaves[~nd->child[0]].mass : node_at(f, t, nd->child[0])->mass;
        uint32_t m2 = nd->child[1] < 0 ? t->leaves[~nd->child[1]].mass : node_at(f, t, nd->child[1])->mass;
        nd->mass = m1 + m2;
    }
    return 0;
}

struct rcf *rcf_load(const void *data, size_t len, int *err)
{
    int dummy;
    if (!err)
        err = &dummy;
    *err = -EBADMSG;
    if (!data || len < 12 || memcmp(data, RCF_MAGIC, 6) != 0)
        return NULL;
    const unsigned char *u = data;
    uint32_t crc = (uint32_t)u[len - 4] | (uint32_t)u[len - 3] << 8 | (uint32_t)u[len - 2] << 16 |
                   (uint32_t)u[len - 1] << 24;
    if (crc32(0, u, (uInt)(len - 4)) != crc)
        return NULL;
    struct reader rd = { u + 6, len - 10, false };
    if (get_le(&rd, 2) != RCF_VERSION)
        return NULL;
    struct rcf_params p = { 0 };
    p.trees = get_u32(&rd);
    p.sample_size = get_u32(&rd);
    p.dims = get_u32(&rd);
    p.shingle_size = get_u32(&rd);
    p.time_decay = get_f64(&rd);
    p.initial_accept_fraction = get_f64(&rd);
    p.seed = get_u64(&rd);
    if (rd.bad || !p.trees || !p.sample_size || !p.shingle_size || !p.initial_accept_fraction)
        return NULL;
    struct rcf_params fixed = p;
    if (params_fix(&fixed) < 0)
        return NULL;
    /* an empty forest of these parameters is larger than the input allows? */
    if ((double)p.trees * p.sample_size > 64.0 * (double)len + 1e6)
        return NULL;
    struct rcf *f = rcf_new(&p);
    int32_t **stack = NULL;
    if (!f) {
        *err = -ENOMEM;
        return NULL;
    }
    unsigned D = f->D;
    f->seen = get_u64(&rd);
    f->seq = get_u64(&rd);
    f->shingle_fill = get_u32(&rd);
    for (unsigned i = 0; i < D; i++)
        f->shingle[i] = get_f64(&rd);
    uint32_t np = get_u32(&rd);
    if (rd.bad || f->shingle_fill > p.shingle_size || f->seq > f->seen || !finite_point(f->shingle, D) ||
        np > f->pmax || (uint64_t)np * D * 8 > rd.left)
        goto bad;
    while (f->pcap < np)
        if (store_grow(f) < 0)
            goto nomem;
    /* points take slots 0 .. np-1, the rest are free */
    f->npfree = 0;
    for (uint32_t i = f->pcap; i > np; i--)
        f->pfree[f->npfree++] = (int32_t)(i - 1);
    for (size_t i = 0; i < (size_t)np * D; i++)
        f->pts[i] = get_f64(&rd);
    if (rd.bad)
        goto bad;
    stack = malloc(2 * (size_t)p.sample_size * sizeof(int32_t *));
    if (!stack)
        goto nomem;
    for (unsigned i = 0; i < p.trees; i++) {
        struct rtree *t = &f->t[i];
        if (load_tree(f, t, &rd, np, stack) < 0)
            goto bad;
        if (!(t->rng[0] | t->rng[1] | t->rng[2] | t->rng[3]))
            goto bad;
        for (uint32_t k = 0; k < t->size; k++)
            f->refs[t->hpt[k]]++;
    }
    if (rd.left != 0)
        goto bad;
    /* points nobody references were never saved by rcf_save */
    for (uint32_t i = 0; i < np; i++)
        if (!f->refs[i])
            goto bad;
    if (rcf_check(f) < 0)
        goto bad;
    free(stack);
    *err = 0;
    return f;
nomem:
    *err = -ENOMEM;
    free(stack);
    return rcf_free(f);
bad:
    *err = -EBADMSG;
    free(stack);
    return rcf_free(f);
}
