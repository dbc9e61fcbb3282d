/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/keytab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define ALIGN16(n) (((n) + 15) & ~(size_t)15)
#define ALIGN64(n) (((n) + 63) & ~(size_t)63)

/* A slot is [header | key, inline up to KEY_INLINE bytes | value]. The
 * header and a short key share the first cache line and the value follows
 * it, so a lookup touches the index line and then adjacent lines of one
 * slot (the hardware pairs them), not a header line, a key line and a
 * value line 300 bytes apart. Keys longer than KEY_INLINE (the daemon
 * accepts 256 bytes, most keys are card numbers, endpoints, hashtags) are
 * kept whole in a side area indexed by slot, reserved in keytab_new() but
 * committed by the kernel only where a long key is written: short keys
 * cost no memory for the long ones they might have been. */
struct slot_hdr {
    uint64_t hash;
    int64_t last_used;
    uint16_t klen;
    uint8_t used;
    uint8_t ref;
    uint32_t pad_;
    /* key bytes (the first KEY_INLINE of them) follow, then the value */
};
#define KEY_INLINE (64 - sizeof(struct slot_hdr))

struct ix {
    uint32_t slot1; /* slot index + 1; 0 = empty */
    uint32_t tag;   /* high hash bits: most mismatches never touch the slot */
};

struct keytab {
    struct keytab_params p;
    size_t slot_size, value_off;
    size_t prefetch_end; /* keytab_prefetch_slot hints [0, this) of a slot */
    uint32_t mask;   /* index capacity - 1 */
    uint32_t count;
    uint32_t nfree;
    uint32_t hand;   /* CLOCK hand */
    uint32_t sweep;  /* keytab_expire cursor */
    /* Slots at or past this were never used: the free stack hands out
     * slot 0 first and takes freed slots back on top, so the used slots
     * stay below the peak count and a walk (keytab_next: the rate
     * detectors' tick, snapshots) need not read a table sized for
     * max_keys that holds a few keys. */
    uint32_t hwm;
    struct ix *index;
    uint32_t *free_slots;
    unsigned char *slab;
    char *long_keys;     /* max_keys * key_max, mapped lazily; NULL if key_max <= KEY_INLINE */
    size_t long_size;
    uint32_t nlong;      /* live keys longer than KEY_INLINE */
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

/* The 1-7 bytes at s as a little-endian word, zero above: what
 * memcpy(&w, s, n) into a zeroed w gives on this (little-endian) host,
 * from two overlapping loads instead of a byte loop whose stores the
 * word load then waits for. */
static inline uint64_t tail_word(const unsigned char *s, size_t n)
{
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    uint64_t w = 0;
    memcpy(&w, s, n);
    return w;
#endif
    if (n >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, s, 4);
        memcpy(&hi, s + n - 4, 4);
        return (uint64_t)lo | (uint64_t)hi << (8 * (n - 4));
    }
    return (uint64_t)s[0] | (uint64_t)s[n / 2] << (8 * (n / 2)) | (uint64_t)s[n - 1] << (8 * (n - 1));
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
        uint64_t w = tail_word(s, n);
        h = (h ^ mix64(w ^ n)) * UINT64_C(0x9e3779b97f4a7c15);
    }
    return mix64(h);
}

static inline struct slot_hdr *slot_at(const struct keytab *t, uint32_t i)
{
    return (struct slot_hdr *)(void *)(t->slab + (size_t)i * t->slot_size);
}

static inline uint32_t slot_index(const struct keytab *t, const struct slot_hdr *h)
{
    return (uint32_t)(((const unsigned char *)h - t->slab) / t->slot_size);
}

/* The key's bytes: inline, or (long) whole in the side area. */
static inline char *slot_key(const struct keytab *t, struct slot_hdr *h)
{
    if (h->klen <= KEY_INLINE)
        return (char *)(h + 1);
    return t->long_keys + (size_t)slot_index(t, h) * t->p.key_max;
}

static inline bool slot_key_eq(const struct keytab *t, struct slot_hdr *h, const char *key, size_t len)
{
    if (h->klen != len)
        return false;
    if (len <= KEY_INLINE)
        return mem_eq(h + 1, key, len);
    /* The inline part holds a long key's first bytes: most mismatches end
     * there, in the line already read. */
    return memcmp(h + 1, key, KEY_INLINE) == 0 && memcmp(slot_key(t, h), key, len) == 0;
}

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
    size_t inline_max = t->p.key_max < KEY_INLINE ? t->p.key_max : KEY_INLINE;
    t->value_off = ALIGN16(sizeof(struct slot_hdr) + inline_max);
    t->slot_size = t->value_off + ALIGN16(t->p.value_size);
    /* Slots of more than a line start on a line: a value never straddles
     * one more line than its size needs. */
    if (t->slot_size > 64)
        t->slot_size = ALIGN64(t->slot_size);
    /* Header, key and value: adjacent lines, all of them up to 768 bytes
     * (fewer lines than the user touches measured slower: the hardware's
     * adjacent-line fetch does not cover a 320-byte state), but none it
     * does not touch: at 100,000 keys the prefetches wait for free miss
     * buffers (perf: ~90% of keytab_prefetch_slot's samples on its
     * prefetch), so a line hinted for nothing costs about as much as one
     * used. */
    size_t hot = p->value_hot && p->value_hot < p->value_size ? p->value_hot : p->value_size;
    t->prefetch_end = MIN(t->value_off + hot, (size_t)768);
    uint32_t cap = 16;
    while (cap < 2 * p->max_keys)
        cap <<= 1;
    t->mask = cap - 1;
    t->index = calloc(cap, sizeof(*t->index));
    t->free_slots = malloc(sizeof(uint32_t) * p->max_keys);
    size_t slab = t->slot_size * p->max_keys;
    if (posix_memalign((void **)&t->slab, 64, slab) != 0)
        t->slab = NULL;
    if (t->p.key_max > KEY_INLINE) {
        /* Anonymous pages: the kernel commits only those a long key touches. */
        t->long_size = (size_t)t->p.key_max * p->max_keys;
        t->long_keys = mmap(NULL, t->long_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (t->long_keys == MAP_FAILED)
            t->long_keys = NULL;
    }
    if (!t->index || !t->free_slots || !t->slab || (t->long_size && !t->long_keys))
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
    if (t->long_keys)
        munmap(t->long_keys, t->long_size);
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
        if (s->hash == h && slot_key_eq(t, s, key, len)) {
            *hit = true;
            return i;
        }
    }
}

/* Index entries are written with relaxed atomic stores: keytab_prefetch_slot
 * reads them without the owner's lock (plain code for the compiler, a
 * defined race for the language). */
static inline void ix_set(struct ix *e, uint32_t slot1, uint32_t tag)
{
    __atomic_store_n(&e->slot1, slot1, __ATOMIC_RELAXED);
    __atomic_store_n(&e->tag, tag, __ATOMIC_RELAXED);
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
            ix_set(&t->index[hole], e->slot1, e->tag);
            hole = i;
        }
    }
    ix_set(&t->index[hole], 0, 0);
}

static void remove_slot(struct keytab *t, uint32_t si)
{
    struct slot_hdr *s = slot_at(t, si);
    bool hit;
    uint32_t pos = probe(t, s->hash, slot_key(t, s), s->klen, &hit);
    if (hit)
        index_delete(t, pos);
    t->nlong -= s->klen > KEY_INLINE;
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

const void *keytab_slot_hint(const struct keytab *t, uint64_t hash)
{
    /* The caller may hold no lock: another thread may be rewriting these
     * entries. What is read is only an address to hint, checked to lie in
     * the slab, each word read once, relaxed, so it is never torn. */
    uint32_t want = (uint32_t)(hash >> 32);
    /* At the index's load (at most one half) about one key in five sits
     * past its home position (linear probing): follow its run, but only
     * within the line keytab_prefetch_index hinted, which is in cache
     * (following it into the next line, hinted too where home is near the
     * end of its line, hinted 3 % more keys and was no faster). */
    for (uint32_t i = (uint32_t)hash & t->mask;; i++) {
        const struct ix *e = &t->index[i];
        uint32_t slot1 = __atomic_load_n(&e->slot1, __ATOMIC_RELAXED);
        if (!slot1 || slot1 > t->p.max_keys)
            return NULL;
        if (__atomic_load_n(&e->tag, __ATOMIC_RELAXED) == want)
            return slot_at(t, slot1 - 1);
        if (i == t->mask || ((uintptr_t)(e + 1) & 63) == 0)
            return NULL;
    }
}

void keytab_prefetch_slot(const struct keytab *t, uint64_t hash)
{
    const unsigned char *s = keytab_slot_hint(t, hash);
    if (s)
        for (size_t off = 0; off < t->prefetch_end; off += 64)
            __builtin_prefetch(s + off, 1, 3);
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
    if (si >= t->hwm)
        t->hwm = si + 1;
    struct slot_hdr *s = slot_at(t, si);
    s->hash = h;
    s->last_used = now_usec;
    s->klen = (uint16_t)len;
    s->used = 1;
    s->ref = 1;
    if (len <= KEY_INLINE) {
        memcpy(s + 1, key, len);
    } else {
        memcpy(s + 1, key, KEY_INLINE);
        memcpy(slot_key(t, s), key, len);
        t->nlong++;
    }
    void *v = slot_value(t, s);
    memset(v, 0, t->p.value_size);
    ix_set(&t->index[pos], si + 1, (uint32_t)(h >> 32));
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
    /* count > 0, so hwm > 0; the slots past it were never used. */
    if (budget == 0 || budget > t->hwm)
        budget = t->hwm;
    size_t removed = 0;
    for (uint32_t k = 0; k < budget; k++) {
        uint32_t si = t->sweep < t->hwm ? t->sweep : 0;
        t->sweep = (si + 1) % t->hwm;
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
    while (*pos < t->hwm) {
        struct slot_hdr *s = slot_at(t, (*pos)++);
        if (!s->used)
            continue;
        if (key)
            *key = slot_key(t, s);
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
    /* The long-key area counts for the keys that use it (the pages they
     * touched may hold a few more bytes). */
    return sizeof(*t) + (size_t)(t->mask + 1) * sizeof(struct ix) +
           (size_t)t->p.max_keys * (sizeof(uint32_t) + t->slot_size) + (size_t)t->nlong * t->p.key_max;
}

size_t keytab_value_offset(const struct keytab *t) { return t->value_off; }

size_t keytab_working_set(const struct keytab *t)
{
    return (size_t)t->hwm * (64 + t->slot_size);
}

size_t keytab_bytes_per_key(const struct keytab *t)
{
    return (keytab_memory(t) + t->p.max_keys - 1) / t->p.max_keys;
}
