/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * A bounded table of per-key state: string keys, fixed-size value slots,
 * at most max_keys entries. When full, inserting evicts the least recently
 * used entry (approximated by CLOCK / second chance: each lookup sets a
 * reference bit, the eviction hand clears bits until it finds an entry not
 * used since its last pass, so a lookup costs no list relinking and no
 * extra cache misses). Entries idle longer than idle_usec are removed by
 * keytab_expire(), which the owner calls on a timer. Evictions and
 * expirations are counted.
 *
 * Layout: one index of (slot, hash tag) pairs, open addressing with linear
 * probing and backward-shift deletion (no tombstones), at most half full;
 * one slab of max_keys slots, each a header and the key's first 40 bytes in
 * one cache line, then the value; keys longer than that (up to key_max)
 * whole in a side area reserved in keytab_new() and committed by the kernel
 * page by page as long keys use it. All memory is allocated in
 * keytab_new(): nothing is allocated after that.
 *
 * Not thread-safe: one owner thread per table (or a lock around it), except
 * keytab_prefetch_index() and keytab_prefetch_slot(), which any thread may
 * call at any time: they read at most one index entry and only hint.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rarewatch/macro.h"

struct keytab_params {
    uint32_t max_keys;   /* >= 1 */
    uint32_t value_size; /* bytes per value slot (zeroed on insert) */
    /* Bytes at the value's start that a lookup's user touches, the part
     * keytab_prefetch_slot() hints (with the header); 0 = all of it. */
    uint32_t value_hot;
    uint32_t key_max;    /* longest key accepted, default (0) 64 bytes */
    int64_t idle_usec;   /* keytab_expire() removes entries idle this long; 0 = never */
    /* Called with the value of an entry about to be evicted or expired,
     * and of every entry left when the table is freed (e.g. to free what
     * it points to); may be NULL. */
    void (*on_remove)(void *value, void *userdata);
    void *userdata;
};

struct keytab_stats {
    uint64_t inserts;
    uint64_t evictions;   /* removed to make room */
    uint64_t expirations; /* removed by keytab_expire() */
    uint32_t count;       /* entries now */
};

struct keytab;

/* 64-bit hash of bytes (also used by detectors for categorical values). */
uint64_t keytab_hash(const void *p, size_t n) _pure_;

/* NULL on bad params (errno EINVAL) or out of memory. */
struct keytab *keytab_new(const struct keytab_params *p);
struct keytab *keytab_free(struct keytab *t);

/* The value of key, inserted (zeroed, *created = true) if absent, evicting
 * if the table is full; marks it used at now_usec. NULL only when the key
 * is longer than key_max. The pointer is valid until the next keytab_get()
 * that inserts, keytab_remove() or keytab_expire(). Values are 16-byte
 * aligned. */
void *keytab_get(struct keytab *t, const char *key, size_t len, int64_t now_usec, bool *created);
/* keytab_get() with the key's keytab_hash() already computed. */
void *keytab_get_hashed(struct keytab *t, uint64_t hash, const char *key, size_t len,
                        int64_t now_usec, bool *created);
/* Batch pipelining: a lookup costs two or three cache misses (index, slot,
 * value) when the table is larger than the cache. A caller holding a batch
 * of keys hints them ahead: keytab_prefetch_index() some 16 keys ahead,
 * keytab_prefetch_slot() (which reads the then-cached index) some 8 keys
 * ahead, so the misses overlap with the work on earlier keys. Hints only:
 * they change nothing and are always safe, also without the table's lock
 * while another thread changes it. */
void keytab_prefetch_index(const struct keytab *t, uint64_t hash);
void keytab_prefetch_slot(const struct keytab *t, uint64_t hash);
/* The slot keytab_prefetch_slot() hints for hash (its header; the value
 * starts keytab_value_offset() bytes in), or NULL: the key's index entry,
 * found in the index line keytab_prefetch_index() hinted. A hint: under a
 * concurrent writer it may name another key's slot. */
const void *keytab_slot_hint(const struct keytab *t, uint64_t hash);
size_t keytab_value_offset(const struct keytab *t);
/* Lookup only: no insert, no change of recency. */
void *keytab_find(const struct keytab *t, const char *key, size_t len);
/* Returns 1 if removed, 0 if absent. on_remove is not called. */
int keytab_remove(struct keytab *t, const char *key, size_t len);
/* Remove entries idle for more than idle_usec at now_usec. Examines at most
 * `budget` entries (0 = all) from where the last call stopped, so a large
 * table can be swept a slice per tick. Returns the number removed. */
size_t keytab_expire(struct keytab *t, int64_t now_usec, uint32_t budget);

/* Iterate: start with *pos = 0; returns false at the end. For save. */
bool keytab_next(const struct keytab *t, uint32_t *pos, const char **key, size_t *len,
                 void **value, int64_t *last_used_usec);

void keytab_stats(const struct keytab *t, struct keytab_stats *out);
/* Bytes the table holds, and bytes per key slot (index share included;
 * the side area counted for the long keys present). */
size_t keytab_memory(const struct keytab *t);
size_t keytab_bytes_per_key(const struct keytab *t);
/* What lookups of the keys it holds can touch: an index line and the slot
 * of every slot ever used (the slots stay below the peak count). Where
 * that fits in the cache, hinting lookups ahead costs more than it saves. */
size_t keytab_working_set(const struct keytab *t);
