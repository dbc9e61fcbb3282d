/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Random Cut Forest, streaming (Guha, Mishra, Roy, Schrijvers, ICML 2016),
 * scored as AWS's randomcutforest-java does: walking from the leaf where the
 * point would fall up to the root, score = p * unseen(depth, mass) +
 * (1 - p) * score_below, where p is the chance a random cut of the node's box
 * (grown to hold the point) separates the point; seen(depth, mass) =
 * 1 / (depth + log2(mass + 1)) damped by 1 - leaf_mass / (2 * tree_mass),
 * unseen(depth) = 1 / (depth + 1), normalised by log2(tree_mass + 1) and
 * averaged over the trees: about 1 for typical points, 3+ for anomalies.
 * Attribution splits each p by the dimension the separating cut would use.
 *
 * Layout for speed: every tree keeps its nodes in flat arrays indexed by
 * int32 (no pointers), internal nodes carry their bounding box in one
 * contiguous double array updated incrementally on insert and on delete, and
 * points live once in a ring shared by all trees (a tree refers to points by
 * index; a point's slot is reused only once no tree holds it). Each tree
 * samples with a time-decayed reservoir (weight log(-log(u)) - decay * t;
 * the sample keeps the lowest weights), so nothing allocates per update.
 *
 * Serialisation (rcf_save): "RCF1", then the parameters, the RNG, the
 * shingle, the point ring with reference counts, and every tree's sampler and
 * nodes, all little-endian fixed-width; rcf_load checks every length and
 * index, so hostile data is rejected instead of trusted.
 */
#include "rarewatch/rcf.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/macro.h"

#define NIL (-1)

/* One node in one cache-friendly 32-byte record: a walk down a tree touches
 * one line per level instead of one per field. */
struct node {
    double cut;
    int32_t cut_dim; /* -1: a leaf */
    int32_t left, right, parent;
    int32_t point;   /* leaves: index in the point ring */
    int32_t mass;
};

struct tree {
    /* nodes: 0..cap-1 */
    struct node *nd;
    double *box; /* 2*D doubles per node: min[D], max[D] (leaves: unused) */
    int32_t root, free_head, cap;
    /* sampler: heap of (weight, point index, leaf node) with the largest weight on top */
    double *w;
    int32_t *sp, *sleaf;
    int32_t n;
};

struct rcf {
    struct rcf_params p;
    unsigned D; /* dims * shingle */
    uint64_t rng[4];
    double *shingle; /* last shingle_size raw points */
    unsigned shingle_fill;
    uint64_t seen;
    /* point ring */
    double *pts;
    int32_t *refs;
    int32_t npts, next_free;
    struct tree *trees;
    double *cur; /* the current shingled point */
    int32_t *path; /* scratch: a root-to-leaf path (depth <= sample_size) */
};

/* ---- RNG: xoshiro256** ---- */

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(struct rcf *f)
{
    uint64_t *s = f->rng;
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

static double uniform(struct rcf *f) { return (double)(next_u64(f) >> 11) * 0x1.0p-53; }

/* ---- allocation ---- */

static int tree_init(struct tree *t, unsigned D, unsigned S)
{
    int32_t cap = (int32_t)(2 * S + 2);
    t->cap = cap;
    t->nd = calloc((size_t)cap, sizeof(struct node));
    t->box = malloc((size_t)cap * 2 * D * sizeof(double));
    t->w = malloc(S * sizeof(double));
    t->sp = malloc(S * sizeof(int32_t));
    t->sleaf = malloc(S * sizeof(int32_t));
    if (!t->nd || !t->box || !t->w || !t->sp || !t->sleaf)
        return -ENOMEM;
    t->root = NIL;
    /* Defined contents everywhere, so a saved forest is reproducible and a
     * loaded one can be checked index by index. */
    for (int32_t i = 0; i < cap; i++) {
        t->nd[i].left = i + 1 < cap ? i + 1 : NIL; /* free list through left */
        t->nd[i].right = t->nd[i].parent = t->nd[i].point = NIL;
        t->nd[i].cut_dim = -1;
        t->nd[i].mass = 0;
        t->nd[i].cut = 0;
    }
    memset(t->box, 0, (size_t)cap * 2 * D * sizeof(double));
    memset(t->w, 0, S * sizeof(double));
    memset(t->sp, 0, S * sizeof(int32_t));
    memset(t->sleaf, 0, S * sizeof(int32_t));
    t->free_head = 0;
    t->n = 0;
    return 0;
}

static void tree_free(struct tree *t)
{
    free(t->nd);
    free(t->box);
    free(t->w);
    free(t->sp);
    free(t->sleaf);
}

struct rcf *rcf_free(struct rcf *f)
{
    if (!f)
        return NULL;
    if (f->trees)
        for (unsigned i = 0; i < f->p.trees; i++)
            tree_free(&f->trees[i]);
    free(f->trees);
    free(f->pts);
    free(f->refs);
    free(f->shingle);
    free(f->cur);
    free(f->path);
    free(f);
    return NULL;
}

static int32_t ring_size(const struct rcf_params *p) { return (int32_t)(p->trees * p->sample_size + 1); }

struct rcf *rcf_new(const struct rcf_params *pin)
{
    struct rcf_params p = *pin;
    if (!p.trees)
        p.trees = 50;
    if (!p.sample_size)
        p.sample_size = 256;
    if (!p.shingle_size)
        p.shingle_size = 1;
    if (p.dims == 0 || p.dims > 64 || p.shingle_size > 64 || p.trees > 1000 || p.sample_size < 2 ||
        p.sample_size > 65536 || p.trees * p.sample_size > (1u << 26) || !(p.time_decay >= 0) || p.time_decay > 1)
        return NULL;
    struct rcf *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->p = p;
    f->D = p.dims * p.shingle_size;
    uint64_t z = p.seed ^ 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 4; i++) {
        z += 0x9e3779b97f4a7c15ULL;
        uint64_t x = z;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        f->rng[i] = x ^ (x >> 31);
    }
    f->npts = ring_size(&p);
    f->pts = calloc((size_t)f->npts * f->D, sizeof(double));
    f->refs = calloc((size_t)f->npts, sizeof(int32_t));
    f->shingle = calloc(f->D, sizeof(double));
    f->cur = calloc(f->D, sizeof(double));
    f->trees = calloc(p.trees, sizeof(struct tree));
    f->path = calloc(p.sample_size + 2, sizeof(int32_t));
    if (!f->pts || !f->refs || !f->shingle || !f->cur || !f->trees || !f->path)
        return rcf_free(f);
    for (unsigned i = 0; i < p.trees; i++)
        if (tree_init(&f->trees[i], f->D, p.sample_size) < 0)
            return rcf_free(f);
    return f;
}

/* ---- point store ---- */

static int32_t point_alloc(struct rcf *f, const double *x)
{
    /* A ring slot is free when no tree refers to it; there is always one,
     * since the trees hold at most trees*sample_size points. */
    for (int32_t k = 0; k < f->npts; k++) {
        int32_t i = (f->next_free + k) % f->npts;
        if (f->refs[i] == 0) {
            memcpy(&f->pts[(size_t)i * f->D], x, f->D * sizeof(double));
            f->next_free = (i + 1) % f->npts;
            return i;
        }
    }
    return NIL;
}

static inline const double *P(const struct rcf *f, int32_t i) { return &f->pts[(size_t)i * f->D]; }

/* ---- tree operations ---- */

static int32_t node_new(struct tree *t)
{
    int32_t i = t->free_head;
    if (i != NIL)
        t->free_head = t->nd[i].left;
    return i;
}

static void node_release(struct tree *t, int32_t i)
{
    t->nd[i].left = t->free_head;
    t->free_head = i;
}

static inline double *BMIN(struct tree *t, unsigned D, int32_t i) { return &t->box[(size_t)i * 2 * D]; }
static inline double *BMAX(struct tree *t, unsigned D, int32_t i) { return &t->box[(size_t)i * 2 * D + D]; }

/* The box of node i, whether a leaf (its point) or internal. */
static void box_of(const struct rcf *f, struct tree *t, int32_t i, const double **mn, const double **mx)
{
    if (t->nd[i].cut_dim < 0) {
        *mn = *mx = P(f, t->nd[i].point);
    } else {
        *mn = BMIN(t, f->D, i);
        *mx = BMAX(t, f->D, i);
    }
}

static void recompute_box(const struct rcf *f, struct tree *t, int32_t i)
{
    unsigned D = f->D;
    const double *lmn, *lmx, *rmn, *rmx;
    box_of(f, t, t->nd[i].left, &lmn, &lmx);
    box_of(f, t, t->nd[i].right, &rmn, &rmx);
    double *mn = BMIN(t, D, i), *mx = BMAX(t, D, i);
    for (unsigned d = 0; d < D; d++) {
        mn[d] = MIN(lmn[d], rmn[d]);
        mx[d] = MAX(lmx[d], rmx[d]);
    }
}

/* Insert point index pi; returns the leaf holding it (an existing leaf when
 * the same point is already there: its mass grows). */
static int32_t tree_insert(struct rcf *f, struct tree *t, int32_t pi)
{
    unsigned D = f->D;
    const double *x = P(f, pi);
    if (t->root == NIL) {
        int32_t l = node_new(t);
        t->nd[l].cut_dim = -1;
        t->nd[l].point = pi;
        t->nd[l].mass = 1;
        t->nd[l].parent = NIL;
        t->root = l;
        return l;
    }
    int32_t node = t->root;
    for (;;) {
        const double *mn, *mx;
        box_of(f, t, node, &mn, &mx);
        /* A random cut of the box grown to hold x: if it separates x, x
         * becomes a sibling of this subtree. */
        double total = 0;
        for (unsigned d = 0; d < D; d++)
            total += MAX(mx[d], x[d]) - MIN(mn[d], x[d]);
        if (t->nd[node].cut_dim < 0 && total == 0) {
            t->nd[node].mass++;
            for (int32_t a = t->nd[node].parent; a != NIL; a = t->nd[a].parent)
                t->nd[a].mass++;
            return node;
        }
        /* The dimension with probability proportional to its range; float
         * rounding never lands on a zero-range dimension. */
        double r = uniform(f) * total;
        int cd = -1, last = -1;
        double lo = 0, hi = 0;
        for (unsigned d = 0; d < D; d++) {
            double l = MIN(mn[d], x[d]), h = MAX(mx[d], x[d]);
            if (h - l <= 0)
                continue;
            last = (int)d;
            if (r < h - l) {
                cd = (int)d;
                lo = l;
                hi = h;
                break;
            }
            r -= h - l;
        }
        if (cd < 0) {
            cd = last;
            lo = MIN(mn[cd], x[cd]);
            hi = MAX(mx[cd], x[cd]);
            r = (hi - lo) / 2;
        }
        double cut = lo + r;
        if (cut >= hi)
            cut = nextafter(hi, -INFINITY);
        bool sep = (x[cd] <= cut && cut < mn[cd]) || (x[cd] > cut && cut >= mx[cd]) ||
                   t->nd[node].cut_dim < 0; /* a leaf's box is its point: any cut in range separates */
        if (sep) {
            int32_t leaf = node_new(t), in = node_new(t);
            t->nd[leaf].cut_dim = -1;
            t->nd[leaf].point = pi;
            t->nd[leaf].mass = 1;
            int32_t par = t->nd[node].parent;
            t->nd[in].cut_dim = (int32_t)cd;
            t->nd[in].cut = cut;
            if (x[cd] <= cut) {
                t->nd[in].left = leaf;
                t->nd[in].right = node;
            } else {
                t->nd[in].left = node;
                t->nd[in].right = leaf;
            }
            t->nd[in].parent = par;
            t->nd[leaf].parent = in;
            t->nd[node].parent = in;
            t->nd[in].mass = t->nd[node].mass + 1;
            double *bmn = BMIN(t, D, in), *bmx = BMAX(t, D, in);
            for (unsigned d = 0; d < D; d++) {
                bmn[d] = MIN(mn[d], x[d]);
                bmx[d] = MAX(mx[d], x[d]);
            }
            if (par == NIL)
                t->root = in;
            else if (t->nd[par].left == node)
                t->nd[par].left = in;
            else
                t->nd[par].right = in;
            /* Ancestors: one more point, boxes grown to hold x. */
            for (int32_t a = par; a != NIL; a = t->nd[a].parent) {
                t->nd[a].mass++;
                double *amn = BMIN(t, D, a), *amx = BMAX(t, D, a);
                for (unsigned d = 0; d < D; d++) {
                    amn[d] = MIN(amn[d], x[d]);
                    amx[d] = MAX(amx[d], x[d]);
                }
            }
            return leaf;
        }
        /* Not separated: the cut lies inside the box, so this is an internal
         * node; follow x down. */
        node = x[t->nd[node].cut_dim] <= t->nd[node].cut ? t->nd[node].left : t->nd[node].right;
    }
}

static void tree_delete(struct rcf *f, struct tree *t, int32_t leaf)
{
    if (--t->nd[leaf].mass > 0) {
        for (int32_t a = t->nd[leaf].parent; a != NIL; a = t->nd[a].parent)
            t->nd[a].mass--;
        return;
    }
    int32_t par = t->nd[leaf].parent;
    node_release(t, leaf);
    if (par == NIL) {
        t->root = NIL;
        return;
    }
    int32_t sib = t->nd[par].left == leaf ? t->nd[par].right : t->nd[par].left;
    int32_t gp = t->nd[par].parent;
    t->nd[sib].parent = gp;
    if (gp == NIL)
        t->root = sib;
    else if (t->nd[gp].left == par)
        t->nd[gp].left = sib;
    else
        t->nd[gp].right = sib;
    node_release(t, par);
    for (int32_t a = gp; a != NIL; a = t->nd[a].parent) {
        t->nd[a].mass--;
        recompute_box(f, t, a);
    }
}

/* ---- sampler: a max-heap on weight; keep the sample_size lowest ---- */

static void heap_swap(struct tree *t, int32_t a, int32_t b)
{
    double w = t->w[a];
    t->w[a] = t->w[b];
    t->w[b] = w;
    int32_t p = t->sp[a];
    t->sp[a] = t->sp[b];
    t->sp[b] = p;
    p = t->sleaf[a];
    t->sleaf[a] = t->sleaf[b];
    t->sleaf[b] = p;
}

static void sift_down(struct tree *t, int32_t i)
{
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < t->n && t->w[l] > t->w[m])
            m = l;
        if (r < t->n && t->w[r] > t->w[m])
            m = r;
        if (m == i)
            return;
        heap_swap(t, i, m);
        i = m;
    }
}

static void sift_up(struct tree *t, int32_t i)
{
    while (i > 0) {
        int32_t p = (i - 1) / 2;
        if (t->w[p] >= t->w[i])
            return;
        heap_swap(t, i, p);
        i = p;
    }
}

/* ---- scoring ---- */

static double score_tree(const struct rcf *f, struct tree *t, const double *x, double *attr)
{
    unsigned D = f->D;
    if (t->root == NIL)
        return 0;
    /* Down to where x would fall. */
    int32_t *path = f->path;
    int depth = 0;
    int32_t node = t->root;
    while (t->nd[node].cut_dim >= 0) {
        path[depth++] = node;
        node = x[t->nd[node].cut_dim] <= t->nd[node].cut ? t->nd[node].left : t->nd[node].right;
    }
    double tree_mass = t->nd[t->root].mass;
    const double *lp = P(f, t->nd[node].point);
    bool same = memcmp(lp, x, D * sizeof(double)) == 0;
    double score;
    double a[128];
    unsigned AD = MIN(D, 128u);
    if (same) {
        double damp = 1.0 - t->nd[node].mass / (2.0 * tree_mass);
        score = damp / (depth + log2(t->nd[node].mass + 1.0));
        for (unsigned d = 0; attr && d < AD; d++)
            a[d] = score / D;
    } else {
        score = 1.0 / (depth + 1.0);
        if (attr) {
            double dist = 0;
            for (unsigned d = 0; d < D; d++)
                dist += fabs(x[d] - lp[d]);
            for (unsigned d = 0; d < AD; d++)
                a[d] = dist > 0 ? score * fabs(x[d] - lp[d]) / dist : score / D;
        }
    }
    /* Up the path: the chance a cut of each grown box separates x. */
    for (int i = depth - 1; i >= 0; i--) {
        int32_t n = path[i];
        const double *mn = BMIN(t, D, n), *mx = BMAX(t, D, n);
        /* Most boxes on the path already hold x: then no cut separates it
         * and nothing changes; find out before summing the ranges. */
        double gap = 0;
        for (unsigned d = 0; d < D; d++)
            gap += MAX(mn[d] - x[d], 0.0) + MAX(x[d] - mx[d], 0.0);
        if (gap == 0)
            continue;
        double range = gap;
        for (unsigned d = 0; d < D; d++)
            range += mx[d] - mn[d];
        double prob = gap / range;
        double unseen = 1.0 / (i + 1.0);
        score = prob * unseen + (1 - prob) * score;
        for (unsigned d = 0; attr && d < AD; d++) {
            double g = (x[d] < mn[d] ? mn[d] - x[d] : 0) + (x[d] > mx[d] ? x[d] - mx[d] : 0);
            a[d] = (range > 0 ? g / range : 0) * unseen + (1 - prob) * a[d];
        }
    }
    double norm = log2(tree_mass + 1.0);
    if (attr)
        for (unsigned d = 0; d < AD; d++)
            attr[d] += a[d] * norm;
    return score * norm;
}

static double score_forest(const struct rcf *f, const double *x, double *attribution)
{
    double attr[128] = { 0 };
    double s = 0;
    unsigned used = 0;
    for (unsigned i = 0; i < f->p.trees; i++)
        if (f->trees[i].root != NIL) {
            s += score_tree(f, &f->trees[i], x, attribution ? attr : NULL);
            used++;
        }
    if (attribution) {
        /* Per input field: summed over shingle positions. */
        for (unsigned k = 0; k < f->p.dims; k++)
            attribution[k] = 0;
        for (unsigned d = 0; d < MIN(f->D, 128u); d++)
            attribution[d % f->p.dims] += used ? attr[d] / used : 0;
    }
    return used ? s / used : 0;
}

static bool make_shingle(struct rcf *f, const double *point)
{
    unsigned dims = f->p.dims, S = f->p.shingle_size;
    memmove(f->shingle, f->shingle + dims, (size_t)(S - 1) * dims * sizeof(double));
    memcpy(f->shingle + (size_t)(S - 1) * dims, point, dims * sizeof(double));
    if (f->shingle_fill < S)
        f->shingle_fill++;
    memcpy(f->cur, f->shingle, f->D * sizeof(double));
    return f->shingle_fill == S;
}

double rcf_score(const struct rcf *f, const double *point, double *attribution)
{
    /* Score what the next shingle would be, without changing anything. */
    double tmp[64 * 64];
    unsigned dims = f->p.dims, S = f->p.shingle_size;
    if (f->D > ELEMENTSOF(tmp))
        return 0;
    memcpy(tmp, f->shingle + dims, (size_t)(S - 1) * dims * sizeof(double));
    memcpy(tmp + (size_t)(S - 1) * dims, point, dims * sizeof(double));
    return score_forest(f, tmp, attribution);
}

static double update(struct rcf *f, const double *point, double *attribution, bool score)
{
    f->seen++;
    if (!make_shingle(f, point)) {
        if (attribution)
            memset(attribution, 0, f->p.dims * sizeof(double));
        return 0;
    }
    double s = score ? score_forest(f, f->cur, attribution) : 0;
    int32_t pi = point_alloc(f, f->cur);
    if (pi == NIL)
        return s;
    double tdecay = f->p.time_decay * (double)f->seen;
    for (unsigned i = 0; i < f->p.trees; i++) {
        struct tree *t = &f->trees[i];
        double u = uniform(f);
        if (u <= 0)
            u = 0x1.0p-53;
        double w = log(-log(u)) - tdecay;
        if (t->n == (int32_t)f->p.sample_size) {
            if (w >= t->w[0])
                continue;
            /* Evict the highest weight. */
            tree_delete(f, t, t->sleaf[0]);
            f->refs[t->sp[0]]--;
            t->w[0] = t->w[t->n - 1];
            t->sp[0] = t->sp[t->n - 1];
            t->sleaf[0] = t->sleaf[t->n - 1];
            t->n--;
            sift_down(t, 0);
        }
        int32_t leaf = tree_insert(f, t, pi);
        /* A duplicate lands on an existing leaf holding another copy of the
         * point: the sampler entry then refers to that copy, so the slot a
         * leaf points at stays referenced as long as the leaf lives. */
        int32_t held = t->nd[leaf].point;
        f->refs[held]++;
        t->w[t->n] = w;
        t->sp[t->n] = held;
        t->sleaf[t->n] = leaf;
        t->n++;
        sift_up(t, t->n - 1);
    }
    return s;
}

double rcf_update(struct rcf *f, const double *point, double *attribution)
{
    return update(f, point, attribution, true);
}

void rcf_insert(struct rcf *f, const double *point) { update(f, point, NULL, false); }

uint64_t rcf_points_seen(const struct rcf *f) { return f->seen; }

size_t rcf_memory(const struct rcf *f)
{
    size_t per_tree = (size_t)f->trees[0].cap * (6 * sizeof(int32_t) + sizeof(double) + 2 * f->D * sizeof(double)) +
                      f->p.sample_size * (sizeof(double) + 2 * sizeof(int32_t));
    return sizeof(*f) + f->p.trees * (sizeof(struct tree) + per_tree) +
           (size_t)f->npts * (f->D * sizeof(double) + sizeof(int32_t)) + 2 * f->D * sizeof(double);
}

/* ---- serialisation ---- */

#define PUT(v) r = r ?: buf_append(out, &(v), sizeof(v))
#define PUTA(p, n) r = r ?: buf_append(out, (p), (n))

int rcf_save(const struct rcf *f, struct buf *out)
{
    int r = buf_append(out, "RCF1", 4);
    uint32_t u32[5] = { f->p.trees, f->p.sample_size, f->p.dims, f->p.shingle_size, f->shingle_fill };
    r = r ?: 0;
    PUTA(u32, sizeof(u32));
    PUT(f->p.time_decay);
    PUT(f->p.seed);
    PUTA(f->rng, sizeof(f->rng));
    PUT(f->seen);
    PUTA(f->shingle, f->D * sizeof(double));
    PUT(f->next_free);
    PUTA(f->pts, (size_t)f->npts * f->D * sizeof(double));
    PUTA(f->refs, (size_t)f->npts * sizeof(int32_t));
    for (unsigned i = 0; i < f->p.trees; i++) {
        const struct tree *t = &f->trees[i];
        size_t c = (size_t)t->cap;
        PUT(t->root);
        PUT(t->free_head);
        PUT(t->n);
        for (size_t k = 0; k < c && r >= 0; k++) {
            const struct node *nd = &t->nd[k];
            int32_t v[6] = { nd->cut_dim, nd->left, nd->right, nd->parent, nd->point, nd->mass };
            PUTA(v, sizeof(v));
            PUT(nd->cut);
        }
        PUTA(t->box, c * 2 * f->D * 8);
        PUTA(t->w, f->p.sample_size * 8);
        PUTA(t->sp, f->p.sample_size * 4);
        PUTA(t->sleaf, f->p.sample_size * 4);
    }
    return r;
}

struct rd {
    const unsigned char *p, *end;
};

static bool take(struct rd *d, void *dst, size_t n)
{
    if ((size_t)(d->end - d->p) < n)
        return false;
    memcpy(dst, d->p, n);
    d->p += n;
    return true;
}

static bool take_nodes(struct rd *d, struct node *nd, size_t c)
{
    for (size_t k = 0; k < c; k++) {
        int32_t v[6];
        if (!take(d, v, sizeof(v)) || !take(d, &nd[k].cut, 8))
            return false;
        nd[k].cut_dim = v[0];
        nd[k].left = v[1];
        nd[k].right = v[2];
        nd[k].parent = v[3];
        nd[k].point = v[4];
        nd[k].mass = v[5];
    }
    return true;
}

static bool valid_index(int32_t v, int32_t cap) { return v == NIL || (v >= 0 && v < cap); }

/* Every tree is a tree: from the root each node is reached once, children
 * name their parent, leaves hold a point, masses add up. Loaded data must
 * pass this before it is walked. */
static bool tree_sound(const struct rcf *f, const struct tree *t)
{
    if (t->root == NIL)
        return t->n == 0;
    int32_t *stack = f->path; /* sample_size + 2 entries: enough for a sound tree */
    int32_t cap = (int32_t)f->p.sample_size + 2;
    int32_t sp = 0, seen = 0;
    if (t->nd[t->root].parent != NIL)
        return false;
    stack[sp++] = t->root;
    while (sp) {
        int32_t n = stack[--sp];
        if (++seen > t->cap)
            return false;
        if (t->nd[n].cut_dim < 0) {
            if (t->nd[n].mass < 1 || t->nd[n].point < 0 || f->refs[t->nd[n].point] < 1)
                return false;
            continue;
        }
        int32_t l = t->nd[n].left, r = t->nd[n].right;
        if (l == NIL || r == NIL || t->nd[l].parent != n || t->nd[r].parent != n ||
            t->nd[n].mass != t->nd[l].mass + t->nd[r].mass || sp + 2 > cap)
            return false;
        stack[sp++] = l;
        stack[sp++] = r;
    }
    for (int32_t k = 0; k < t->n; k++)
        if (t->nd[t->sleaf[k]].cut_dim >= 0)
            return false;
    return true;
}

struct rcf *rcf_load(const void *data, size_t len, int *err)
{
    struct rd d = { data, (const unsigned char *)data + len };
    char magic[4];
    uint32_t u32[5];
    struct rcf_params p = { 0 };
    *err = -EBADMSG;
    if (!take(&d, magic, 4) || memcmp(magic, "RCF1", 4) != 0 || !take(&d, u32, sizeof(u32)) ||
        !take(&d, &p.time_decay, 8) || !take(&d, &p.seed, 8))
        return NULL;
    p.trees = u32[0];
    p.sample_size = u32[1];
    p.dims = u32[2];
    p.shingle_size = u32[3];
    if (p.trees == 0 || p.sample_size < 2 || p.dims == 0 || p.shingle_size == 0 || u32[4] > p.shingle_size)
        return NULL;
    struct rcf *f = rcf_new(&p);
    if (!f) {
        *err = -EINVAL;
        return NULL;
    }
    f->shingle_fill = u32[4];
    bool ok = take(&d, f->rng, sizeof(f->rng)) && take(&d, &f->seen, 8) &&
              take(&d, f->shingle, f->D * sizeof(double)) && take(&d, &f->next_free, 4) &&
              take(&d, f->pts, (size_t)f->npts * f->D * sizeof(double)) &&
              take(&d, f->refs, (size_t)f->npts * sizeof(int32_t)) && f->next_free >= 0 &&
              f->next_free < f->npts;
    for (unsigned i = 0; ok && i < p.trees; i++) {
        struct tree *t = &f->trees[i];
        size_t c = (size_t)t->cap;
        ok = take(&d, &t->root, 4) && take(&d, &t->free_head, 4) && take(&d, &t->n, 4) &&
             take_nodes(&d, t->nd, c) && take(&d, t->box, c * 2 * f->D * 8) &&
             take(&d, t->w, p.sample_size * 8) && take(&d, t->sp, p.sample_size * 4) &&
             take(&d, t->sleaf, p.sample_size * 4);
        ok = ok && valid_index(t->root, t->cap) && valid_index(t->free_head, t->cap) && t->n >= 0 &&
             t->n <= (int32_t)p.sample_size;
        for (size_t k = 0; ok && k < c; k++)
            ok = valid_index(t->nd[k].left, t->cap) && valid_index(t->nd[k].right, t->cap) &&
                 valid_index(t->nd[k].parent, t->cap) && t->nd[k].cut_dim >= -1 &&
                 t->nd[k].cut_dim < (int32_t)f->D && valid_index(t->nd[k].point, f->npts);
        for (int32_t k = 0; ok && k < t->n; k++)
            ok = t->sp[k] >= 0 && t->sp[k] < f->npts && t->sleaf[k] >= 0 && t->sleaf[k] < t->cap;
    }
    for (int32_t k = 0; ok && k < f->npts; k++)
        ok = f->refs[k] >= 0 && f->refs[k] <= (int32_t)p.trees * (int32_t)p.sample_size;
    for (unsigned i = 0; ok && i < p.trees; i++)
        ok = tree_sound(f, &f->trees[i]);
    if (!ok || d.p != d.end)
        return rcf_free(f);
    *err = 0;
    return f;
}
