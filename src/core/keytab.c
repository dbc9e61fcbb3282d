/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/keytab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN16(n) (((n) + 15) & ~(size_t)15)

struct slot_hdr {
    uint64_t hash;
    int64_t last_used;
    uint16_t klen;
    uint8_t used;
    uint8_t ref;
    uint32_t pad_;
    /* key bytes follow, then (16-aligned) the value */
};

struct ix {
    uint32_t slot1; /* slot index + 1; 0 = empty */
    uint32_t tag;   /* high hash bits: most mismatches never touch the slot */
};

struct keytab {
    struct keytab_params p;
    size_t slot_size, value_off;
    uint32_t mask;   /* index capacity - 1 */
    uint32_t count;
    uint32_t nfree;
    uint32_t hand;   /* CLOCK hand */
    uint32_t sweep;  /* keytab_expire cursor */
    struct ix *index;
    uint32_t *free_slots;
    unsigned char *slab;
    struct keytab_stats st;
};

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 32;
    x *= UINT64_C(0xd6e8feb86659fd93);
    x ^= x >> 32;
    x *= UINT64_C(0xd6e8feb86659fd93);
    x ^= x >> 32;
    return x;
}

uint64_t keytab_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = UINT64_C(0x9e3779b97f4a7c15) ^ (n * UINT64_C(0xff51afd7ed558ccd));
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ mix64(w)) * UINT64_C(0x9e3779b97f4a7c15);
        s += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, s, n);
        h = (h ^ mix64(w ^ n)) * UINT64_C(0x9e3779b97f4a7c15);
    }
    return mix64(h);
}

static inline struct slot_hdr *slot_at(const struct keytab *t, uint32_t i)
{
    return (struct slot_hdr *)(void *)(t->slab + (size_t)i * t->slot_size);
}

static inline char *slot_key(struct slot_hdr *h) { return (char *)(h + 1); }

static inline void *slot_value(const struct keytab *t, struct slot_hdr *h)
{
    return (unsigned char *)h + t->value_off;
}

struct keytab *keytab_new(const struct keytab_params *p)
{
    if (!p || p->max_keys == 0 || p->max_keys > (UINT32_MAX >> 2) || p->idle_usec < 0 ||
        p->key_max > UINT16_MAX) {
        errno = EINVAL;
        return NULL;
    }
    struct keytab *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->p = *p;
    if (!t->p.key_max)
        t->p.key_max = 64;
    t->value_off = ALIGN16(sizeof(struct slot_hdr) + t->p.key_max);
    t->slot_size = t->value_off + ALIGN16(t->p.value_size);
    uint32_t cap = 16;
    while (cap < 2 * p->max_keys)
        cap <<= 1;
    t->mask = cap - 1;
    t->index = calloc(cap, sizeof(*t->index));
    t->free_slots = malloc(sizeof(uint32_t) * p->max_keys);
    size_t slab = t->slot_size * p->max_keys;
    if (posix_memalign((void **)&t->slab, 64, slab) != 0)
        t->slab = NULL;
    if (!t->index || !t->free_slots || !t->slab)
        return keytab_free(t);
    memset(t->slab, 0, slab);
    /* Hand out low slots first: a small key set stays in few pages. */
    for (uint32_t i = 0; i < p->max_keys; i++)
        t->free_slots[i] = p->max_keys - 1 - i;
    t->nfree = p->max_keys;
    return t;
}

struct keytab *keytab_free(struct keytab *t)
{
    if (!t)
        return NULL;
    /* Values may own memory (an rcf forest per key): hand over the live ones. */
    if (t->p.on_remove && t->slab)
        for (uint32_t i = 0; i < t->p.max_keys; i++) {
            struct slot_hdr *s = slot_at(t, i);
            if (s->used)
                t->p.on_remove(slot_value(t, s), t->p.userdata);
        }
    free(t->index);
    free(t->free_slots);
    free(t->slab);
    free(t);
    return NULL;
}

/* Index position holding key, or the empty position where it would go. */
static uint32_t probe(const struct keytab *t, uint64_t h, const char *key, size_t len, bool *hit)
{
    uint32_t tag = (uint32_t)(h >> 32);
    for (uint32_t i = (uint32_t)h & t->mask;; i = (i + 1) & t->mask) {
        const struct ix *e = &t->index[i];
        if (!e->slot1) {
            *hit = false;
            return i;
        }
        if (e->tag != tag)
            continue;
        struct slot_hdr *s = slot_at(t, e->slot1 - 1);
        if (s->hash == h && s->klen == len && memcmp(slot_key(s), key, len) == 0) {
            *hit = true;
            return i;
        }
    }
}

/* Backward-shift deletion: pull later members of the probe run into the
 * hole so lookups never need tombstones. */
static void index_delete(struct keytab *t, uint32_t hole)
{
    uint32_t i = hole;
    for (;;) {
        i = (i + 1) & t->mask;
        struct ix *e = &t->index[i];
        if (!e->slot1)
            break;
        uint32_t home = (uint32_t)slot_at(t, e->slot1 - 1)->hash & t->mask;
        /* e may move to the hole only if its home is not in (hole, i]. */
        if (((i - home) & t->mask) >= ((i - hole) & t->mask)) {
            t->index[hole] = *e;
            hole = i;
        }
    }
    t->index[hole] = (struct ix){ 0, 0 };
}

static void remove_slot(struct keytab *t, uint32_t si)
{
    struct slot_hdr *s = slot_at(t, si);
    bool hit;
    uint32_t pos = probe(t, s->hash, slot_key(s), s->klen, &hit);
    if (hit)
        index_delete(t, pos);
    s->used = 0;
    s->ref = 0;
    t->free_slots[t->nfree++] = si;
    t->count--;
}

static void evict_one(struct keytab *t)
{
    for (;;) {
        uint32_t si = t->hand;
        t->hand = (t->hand + 1) % t->p.max_keys;
        struct slot_hdr *s = slot_at(t, si);
        if (!s->used)
            continue;
        if (s->ref) {
            s->ref = 0;
            continue;
        }
        if (t->p.on_remove)
            t->p.on_remove(slot_value(t, s), t->p.userdata);
        remove_slot(t, si);
        t->st.evictions++;
        return;
    }
}

void keytab_prefetch_index(const struct keytab *t, uint64_t hash)
{
    __builtin_prefetch(&t->index[(uint32_t)hash & t->mask], 0, 3);
}

void keytab_prefetch_slot(const struct keytab *t, uint64_t hash)
{
    const struct ix *e = &t->index[(uint32_t)hash & t->mask];
    if (e->slot1 && e->tag == (uint32_t)(hash >> 32)) {
        const unsigned char *s = (const unsigned char *)slot_at(t, e->slot1 - 1);
        /* Header and key, then the value's first lines. */
        __builtin_prefetch(s, 1, 3);
        __builtin_prefetch(s + t->value_off, 1, 3);
        if (t->slot_size - t->value_off > 64)
            __builtin_prefetch(s + t->value_off + 64, 1, 3);
    }
}

void *keytab_get(struct keytab *t, const char *key, size_t len, int64_t now_usec, bool *created)
{
    return keytab_get_hashed(t, keytab_hash(key, len), key, len, now_usec, created);
}

void *keytab_get_hashed(struct keytab *t, uint64_t h, const char *key, size_t len,
                        int64_t now_usec, bool *created)
{
    if (len > t->p.key_max)
        return NULL;
    bool hit;
    uint32_t pos = probe(t, h, key, len, &hit);
    if (hit) {
        struct slot_hdr *s = slot_at(t, t->index[pos].slot1 - 1);
        s->ref = 1;
        s->last_used = now_usec;
        if (created)
            *created = false;
        return slot_value(t, s);
    }
    if (t->count == t->p.max_keys) {
        evict_one(t);
        /* The deletion may have shifted the run we probed. */
        pos = probe(t, h, key, len, &hit);
    }
    uint32_t si = t->free_slots[--t->nfree];
    struct slot_hdr *s = slot_at(t, si);
    s->hash = h;
    s->last_used = now_usec;
    s->klen = (uint16_t)len;
    s->used = 1;
    s->ref = 1;
    memcpy(slot_key(s), key, len);
    void *v = slot_value(t, s);
    memset(v, 0, t->p.value_size);
    t->index[pos] = (struct ix){ si + 1, (uint32_t)(h >> 32) };
    t->count++;
    t->st.inserts++;
    if (created)
        *created = true;
    return v;
}

void *keytab_find(const struct keytab *t, const char *key, size_t len)
{
    if (len > t->p.key_max)
        return NULL;
    bool hit;
    uint32_t pos = probe(t, keytab_hash(key, len), key, len, &hit);
    return hit ? slot_value(t, slot_at(t, t->index[pos].slot1 - 1)) : NULL;
}

int keytab_remove(struct keytab *t, const char *key, size_t len)
{
    if (len > t->p.key_max)
        return 0;
    bool hit;
    uint32_t pos = probe(t, keytab_hash(key, len), key, len, &hit);
    if (!hit)
        return 0;
    remove_slot(t, t->index[pos].slot1 - 1);
    return 1;
}

size_t keytab_expire(struct keytab *t, int64_t now_usec, uint32_t budget)
{
    if (t->p.idle_usec <= 0 || t->count == 0)
        return 0;
    if (budget == 0 || budget > t->p.max_keys)
        budget = t->p.max_keys;
    size_t removed = 0;
    for (uint32_t k = 0; k < budget; k++) {
        uint32_t si = t->sweep;
        t->sweep = (t->sweep + 1) % t->p.max_keys;
        struct slot_hdr *s = slot_at(t, si);
        if (s->used && now_usec - s->last_used > t->p.idle_usec) {
            if (t->p.on_remove)
                t->p.on_remove(slot_value(t, s), t->p.userdata);
            remove_slot(t, si);
            t->st.expirations++;
            removed++;
        }
    }
    return removed;
}

bool keytab_next(const struct keytab *t, uint32_t *pos, const char **key, size_t *len,
                 void **value, int64_t *last_used_usec)
{
    while (*pos < t->p.max_keys) {
        struct slot_hdr *s = slot_at(t, (*pos)++);
        if (!s->used)
            continue;
        if (key)
            *key = slot_key(s);
        if (len)
            *len = s->klen;
        if (value)
            *value = slot_value(t, s);
        if (last_used_usec)
            *last_used_usec = s->last_used;
        return true;
    }
    return false;
}

void keytab_stats(const struct keytab *t, struct keytab_stats *out)
{
    *out = t->st;
    out->count = t->count;
}

size_t keytab_memory(const struct keytab *t)
{
    return sizeof(*t) + (size_t)(t->mask + 1) * sizeof(struct ix) +
           (size_t)t->p.max_keys * (sizeof(uint32_t) + t->slot_size);
}

size_t keytab_bytes_per_key(const struct keytab *t)
{
    return (keytab_memory(t) + t->p.max_keys - 1) / t->p.max_keys;
}
