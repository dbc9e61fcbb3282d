/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>

#include "rarewatch/keytab.h"
#include "tap.h"

static int key(char *b, unsigned i) { return snprintf(b, 32, "user-%u", i); }

TEST(insert_find_and_values_are_zeroed)
{
    struct keytab *t = keytab_new(&(struct keytab_params){ .max_keys = 100, .value_size = 24 });
    CHECK(t);
    char k[32];
    bool created;
    for (unsigned i = 0; i < 100; i++) {
        uint64_t *v = keytab_get(t, k, (size_t)key(k, i), i, &created);
        CHECK(created);
        CHECK(((uintptr_t)v & 15) == 0);
        CHECK(v[0] == 0 && v[1] == 0 && v[2] == 0);
        v[0] = i;
    }
    for (unsigned i = 0; i < 100; i++) {
        uint64_t *v = keytab_get(t, k, (size_t)key(k, i), 100, &created);
        CHECK(!created);
        CHECK(v && v[0] == i);
    }
    CHECK(!keytab_find(t, "user-100", 8));
    struct keytab_stats st;
    keytab_stats(t, &st);
    CHECK_UINT(st.count, 100);
    CHECK_UINT(st.inserts, 100);
    CHECK_UINT(st.evictions, 0);
    keytab_free(t);
}

TEST(full_table_evicts_least_recently_used)
{
    struct keytab *t = keytab_new(&(struct keytab_params){ .max_keys = 64, .value_size = 8 });
    char k[32];
    for (unsigned i = 0; i < 64; i++)
        keytab_get(t, k, (size_t)key(k, i), 0, NULL);
    /* One pass of the hand clears every reference bit; then touch the
     * even keys so only odd ones are eviction candidates. */
    keytab_get(t, "x", 1, 1, NULL);
    for (unsigned i = 0; i < 64; i += 2)
        keytab_get(t, k, (size_t)key(k, i), 2, NULL);
    for (unsigned i = 100; i < 110; i++)
        keytab_get(t, k, (size_t)key(k, i), 3, NULL);
    unsigned even_left = 0;
    for (unsigned i = 0; i < 64; i += 2)
        even_left += keytab_find(t, k, (size_t)key(k, i)) != NULL;
    CHECK_UINT(even_left, 32);
    for (unsigned i = 100; i < 110; i++)
        CHECK(keytab_find(t, k, (size_t)key(k, i)));
    struct keytab_stats st;
    keytab_stats(t, &st);
    CHECK_UINT(st.count, 64);
    /* "x" evicted user-0 (its sweep cleared every bit first), user-0
     * coming back evicted user-1, the ten new keys ten more odd ones. */
    CHECK_UINT(st.evictions, 12);
    CHECK(!keytab_find(t, "user-1", 6));
    keytab_free(t);
}

static unsigned removed_calls;
static void on_remove(void *v, void *ud)
{
    removed_calls++;
    CHECK(ud == &removed_calls);
    CHECK(*(uint32_t *)v >= 1000);
}

TEST(idle_entries_expire_in_slices)
{
    struct keytab *t = keytab_new(&(struct keytab_params){ .max_keys = 1000, .value_size = 4,
                                                           .idle_usec = 60, .on_remove = on_remove,
                                                           .userdata = &removed_calls });
    char k[32];
    for (unsigned i = 0; i < 1000; i++)
        *(uint32_t *)keytab_get(t, k, (size_t)key(k, i), i < 500 ? 0 : 100, NULL) = 1000 + i;
    removed_calls = 0;
    size_t n = 0;
    for (int pass = 0; pass < 10; pass++)
        n += keytab_expire(t, 150, 100);
    CHECK_UINT(n, 500);
    CHECK_UINT(removed_calls, 500);
    for (unsigned i = 0; i < 1000; i++)
        CHECK((keytab_find(t, k, (size_t)key(k, i)) != NULL) == (i >= 500));
    struct keytab_stats st;
    keytab_stats(t, &st);
    CHECK_UINT(st.expirations, 500);
    CHECK_UINT(st.count, 500);
    keytab_free(t);
}

static unsigned evicted_calls;
static void count_evicted(void *v, void *ud)
{
    evicted_calls++;
    CHECK(*(uint32_t *)v == 7);
}

/* A table sized for many keys that holds a few: the walk and the expiry
 * sweep cover the slots ever used, every key once, removed slots reused. */
TEST(walk_and_expiry_cover_a_sparse_table)
{
    struct keytab *t = keytab_new(&(struct keytab_params){ .max_keys = 100000, .value_size = 4,
                                                           .idle_usec = 10 });
    char k[32];
    for (unsigned i = 0; i < 50; i++)
        *(uint32_t *)keytab_get(t, k, (size_t)key(k, i), 0, NULL) = i;
    for (unsigned i = 10; i < 30; i++)
        CHECK_INT(keytab_remove(t, k, (size_t)key(k, i)), 1);
    for (unsigned i = 50; i < 80; i++)
        *(uint32_t *)keytab_get(t, k, (size_t)key(k, i), 0, NULL) = i;
    unsigned seen[80] = { 0 }, n = 0;
    uint32_t pos = 0;
    void *v;
    while (keytab_next(t, &pos, NULL, NULL, &v, NULL)) {
        CHECK(*(uint32_t *)v < 80);
        seen[*(uint32_t *)v]++;
        n++;
    }
    CHECK_UINT(n, 60);
    for (unsigned i = 0; i < 80; i++)
        CHECK_UINT(seen[i], i >= 10 && i < 30 ? 0 : 1);
    /* 60 slots in use, the last at index 59 (20 of the 30 new keys took
     * the freed slots): the sweep goes round those, so after 100 slots
     * swept while nothing was idle, six slices of 10 see them all. */
    size_t gone = 0;
    for (int pass = 0; pass < 10; pass++)
        gone += keytab_expire(t, 5, 10);
    CHECK_UINT(gone, 0);
    for (int pass = 0; pass < 6; pass++)
        gone += keytab_expire(t, 100, 10);
    CHECK_UINT(gone, 60);
    pos = 0;
    CHECK(!keytab_next(t, &pos, NULL, NULL, NULL, NULL));
    keytab_free(t);
}

TEST(eviction_hands_the_value_to_on_remove)
{
    struct keytab *t = keytab_new(&(struct keytab_params){ .max_keys = 8, .value_size = 4,
                                                           .on_remove = count_evicted });
    char k[32];
    evicted_calls = 0;
    for (unsigned i = 0; i < 20; i++) {
        bool created;
        uint32_t *v = keytab_get(t, k, (size_t)key(k, i), i, &created);
        CHECK(created);
        CHECK(*v == 0);
        *v = 7;
    }
    CHECK_UINT(evicted_calls, 12);
    struct keytab_stats st;
    keytab_stats(t, &st);
    CHECK_UINT(st.evictions, 12);
    CHECK_UINT(st.count, 8);
    keytab_free(t);
    CHECK_UINT(evicted_calls, 20); /* the 8 left are handed over on free */
}

TEST(removal_keeps_probe_runs_intact)
{
    struct keytab *t = keytab_new(&(struct keytab_params){ .max_keys = 5000, .value_size = 4 });
    char k[32];
    for (unsigned i = 0; i < 5000; i++)
        *(uint32_t *)keytab_get(t, k, (size_t)key(k, i), 0, NULL) = i;
    for (unsigned i = 0; i < 5000; i += 3)
        CHECK_INT(keytab_remove(t, k, (size_t)key(k, i)), 1);
    CHECK_INT(keytab_remove(t, "user-0", 6), 0);
    unsigned bad = 0;
    for (unsigned i = 0; i < 5000; i++) {
        uint32_t *v = keytab_find(t, k, (size_t)key(k, i));
        bad += i % 3 == 0 ? v != NULL : (!v || *v != i);
    }
    CHECK_UINT(bad, 0);
    /* Iteration sees exactly the live entries. */
    uint32_t pos = 0;
    unsigned seen = 0;
    const char *kp;
    size_t len;
    while (keytab_next(t, &pos, &kp, &len, NULL, NULL))
        seen++;
    CHECK_UINT(seen, 5000 - 1667);
    keytab_free(t);
}

/* The slot hint (what keytab_prefetch_slot fetches) must find keys that
 * sit past their home index position, not only those at it: at the
 * index's load about a fifth of the keys are displaced, and each unhinted
 * one costs its lookup a cache miss. Only a key whose run leaves its home
 * index line may go unhinted. */
TEST(slot_hint_follows_the_probe_run)
{
    enum { N = 50000 };
    struct keytab *t = keytab_new(&(struct keytab_params){ .max_keys = N, .value_size = 32 });
    CHECK(t);
    char k[32];
    bool created;
    for (unsigned i = 0; i < N; i++)
        CHECK(keytab_get(t, k, (size_t)key(k, i), i, &created));
    unsigned hinted = 0, wrong = 0;
    for (unsigned i = 0; i < N; i++) {
        size_t len = (size_t)key(k, i);
        const unsigned char *v = keytab_find(t, k, len);
        const unsigned char *h = keytab_slot_hint(t, keytab_hash(k, len));
        if (!h)
            continue;
        if (h + keytab_value_offset(t) == v)
            hinted++;
        else
            wrong++;
    }
    printf("# %u of %u keys hinted, %u wrongly\n", hinted, (unsigned)N, wrong);
    CHECK_UINT(wrong, 0);
    /* Home positions only: 81 %; the home line: 96 %. */
    CHECK(hinted >= N * 95 / 100);
    keytab_free(t);
}

TEST(rejects_bad_params_and_long_keys)
{
    CHECK(!keytab_new(&(struct keytab_params){ .max_keys = 0 }));
    struct keytab *t = keytab_new(&(struct keytab_params){ .max_keys = 4, .value_size = 4, .key_max = 8 });
    CHECK(!keytab_get(t, "123456789", 9, 0, NULL));
    CHECK(keytab_get(t, "12345678", 8, 0, NULL));
    CHECK(keytab_bytes_per_key(t) >= 8 + 4);
    keytab_free(t);
    CHECK(!keytab_free(NULL));
}

/* Keys past the inline part (40 bytes) live whole in the side area: they
 * must be found, told apart when they differ only past the inline part,
 * iterated, removed and evicted like short ones, next to short ones. */
TEST(long_keys)
{
    struct keytab *t = keytab_new(&(struct keytab_params){ .max_keys = 64, .value_size = 24, .key_max = 256 });
    CHECK(t);
    size_t base = keytab_memory(t);
    char k[300];
    memset(k, 'x', sizeof(k));
    /* 32 long keys sharing their first 200 bytes, 32 short ones. */
    for (int i = 0; i < 64; i++) {
        size_t len = i < 32 ? 201 : 10;
        k[len - 1] = (char)('A' + i % 32);
        bool created = false;
        uint64_t *v = keytab_get(t, k, len, i, &created);
        CHECK(v && created);
        *v = (uint64_t)i;
        k[len - 1] = 'x';
    }
    CHECK_UINT(keytab_memory(t) - base, 32 * 256);
    for (int i = 0; i < 64; i++) {
        size_t len = i < 32 ? 201 : 10;
        k[len - 1] = (char)('A' + i % 32);
        uint64_t *v = keytab_find(t, k, len);
        CHECK(v && *v == (uint64_t)i);
        k[len - 1] = 'x';
    }
    CHECK(!keytab_get(t, k, 257, 0, NULL));
    CHECK(!keytab_find(t, k, 201)); /* all 'x': never inserted */
    uint32_t pos = 0;
    const char *kp;
    size_t len;
    unsigned longs = 0, seen = 0;
    while (keytab_next(t, &pos, &kp, &len, NULL, NULL)) {
        seen++;
        if (len == 201) {
            longs++;
            CHECK(memcmp(kp, k, 200) == 0 && kp[200] >= 'A' && kp[200] < 'A' + 32);
        }
    }
    CHECK_UINT(seen, 64);
    CHECK_UINT(longs, 32);
    k[200] = 'C';
    CHECK_INT(keytab_remove(t, k, 201), 1);
    CHECK(!keytab_find(t, k, 201));
    k[200] = 'x';
    CHECK_UINT(keytab_memory(t) - base, 31 * 256);
    /* A full table evicts: long keys come and go through the same slots. */
    for (int i = 0; i < 500; i++) {
        snprintf(k, sizeof(k), "%0250d", i);
        uint64_t *v = keytab_get(t, k, 250, 100 + i, NULL);
        CHECK(v);
        *v = (uint64_t)i;
    }
    for (int i = 500 - 64; i < 500; i++) {
        snprintf(k, sizeof(k), "%0250d", i);
        uint64_t *v = keytab_find(t, k, 250);
        CHECK(v && *v == (uint64_t)i);
    }
    CHECK_UINT(keytab_memory(t) - base, 64 * 256);
    keytab_free(t);
}

/* The hash as first written (a byte copy of the tail into a zeroed word):
 * rare_category keeps value hashes in saved state, so the value of
 * keytab_hash() must never change. */
static uint64_t ref_mix(uint64_t x)
{
    for (int i = 0; i < 2; i++) {
        x ^= x >> 32;
        x *= UINT64_C(0xd6e8feb86659fd93);
    }
    return x ^ (x >> 32);
}

static uint64_t ref_hash(const unsigned char *s, size_t n)
{
    uint64_t h = UINT64_C(0x9e3779b97f4a7c15) ^ (n * UINT64_C(0xff51afd7ed558ccd));
    for (; n >= 8; s += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ ref_mix(w)) * UINT64_C(0x9e3779b97f4a7c15);
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, s, n);
        h = (h ^ ref_mix(w ^ n)) * UINT64_C(0x9e3779b97f4a7c15);
    }
    return ref_mix(h);
}

TEST(hash_is_stable)
{
    unsigned char b[64];
    uint64_t x = 88172645463325252ull;
    for (int round = 0; round < 200; round++)
        for (size_t n = 0; n <= 40; n++) {
            for (size_t i = 0; i < sizeof(b); i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b[i] = (unsigned char)x;
            }
            if (keytab_hash(b + round % 8, n) != ref_hash(b + round % 8, n)) {
                TAP_FAIL_("length %zu: hash differs from the reference", n);
                return;
            }
        }
    /* Fixed points: a change of the function shows here too. */
    CHECK(keytab_hash("US", 2) == ref_hash((const unsigned char *)"US", 2));
    CHECK(keytab_hash("", 0) == ref_hash((const unsigned char *)"", 0));
}

TAP_MAIN
