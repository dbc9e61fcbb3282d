/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/kpl.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <protobuf-c/protobuf-c.h>

#include "kpl.pb-c.h"

const uint8_t kpl_magic[KPL_MAGIC_LEN] = { 0xF3, 0x89, 0x9A, 0xC2 };

/* Present-but-empty fields point here, so that ptr == NULL can only mean
 * "absent" (protobuf-c leaves data NULL for zero-length bytes). */
static const uint8_t empty_bytes[1];

bool kpl_is_aggregated(const uint8_t *data, size_t len)
{
    /* Strictly longer, as the reference de-aggregators have it: an empty
     * protobuf carries no records and the KPL never emits one. */
    return data && len > KPL_MAGIC_LEN + KPL_DIGEST_LEN &&
           memcmp(data, kpl_magic, KPL_MAGIC_LEN) == 0;
}

static int fail(struct kpl_error *err, int r, const char *fmt, ...) _printf_(3, 4);
static int fail(struct kpl_error *err, int r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(err->reason, sizeof(err->reason), fmt, ap);
    va_end(ap);
    return r;
}

/* ---- arena-backed allocator for protobuf-c -------------------------------- */

/* protobuf-c frees its temporaries (and, on failure, the partial message)
 * through the allocator; with an arena those frees are no-ops, so the budget
 * counts them too. That is the price of zero malloc, and KPL_SCRATCH_FACTOR
 * accounts for it. */
struct scratch {
    struct arena *arena;
    size_t budget;
    size_t used;
    bool over_budget;
    bool oom;
};

static void *scratch_alloc(struct scratch *s, size_t n)
{
    /* arena_alloc rounds to 16; count what it really takes. */
    size_t need = n > SIZE_MAX - 15 ? SIZE_MAX : (n + 15) & ~(size_t)15;
    if (need > s->budget - s->used) {
        s->over_budget = true;
        return NULL;
    }
    void *p = arena_alloc(s->arena, n);
    if (!p) {
        s->oom = true;
        return NULL;
    }
    s->used += need;
    return p;
}

static void *pbc_alloc(void *data, size_t n) { return scratch_alloc(data, n); }
static void pbc_free(void *data, void *p) {}

/* ---- wire-format pre-scan ------------------------------------------------- */

/*
 * protobuf-c says only "NULL" when it fails and allocates as it goes. This
 * scan walks the three message levels first, without allocating, so that
 * (1) the dead-letter entry can say what is wrong and where, and
 * (2) the record, key and tag caps hold before protobuf-c sizes any array.
 * It is deliberately at least as strict as protobuf-c: anything it accepts,
 * protobuf-c decodes, so a later unpack failure can only be memory.
 */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

enum scan_err {
    SCAN_OK = 0,
    SCAN_TRUNCATED,
    SCAN_BAD_VARINT,
    SCAN_BAD_TAG,
    SCAN_BAD_WIRE_TYPE,
};

static const char *const scan_err_str[] = {
    [SCAN_OK] = "ok",
    [SCAN_TRUNCATED] = "truncated protobuf",
    [SCAN_BAD_VARINT] = "malformed varint",
    [SCAN_BAD_TAG] = "invalid field number",
    [SCAN_BAD_WIRE_TYPE] = "unsupported wire type",
};

struct wire {
    const uint8_t *p, *end;
};

struct field {
    uint32_t number;
    unsigned wire_type;
    uint64_t varint;     /* WT_VARINT */
    const uint8_t *ptr;  /* WT_LEN */
    size_t len;          /* WT_LEN */
};

static enum scan_err read_varint(struct wire *w, unsigned max_bytes, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < max_bytes; i++) {
        if (w->p == w->end)
            return SCAN_TRUNCATED;
        uint8_t b = *w->p++;
        /* The 10th byte of a 64-bit varint may only contribute its low bit. */
        if (i == 9 && b > 1)
            return SCAN_BAD_VARINT;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return SCAN_OK;
        }
    }
    return SCAN_BAD_VARINT;
}

/* Returns SCAN_OK with *more = false at the end of the buffer. */
static enum scan_err next_field(struct wire *w, struct field *f, bool *more)
{
    enum scan_err e;
    uint64_t key, len;

    *more = w->p < w->end;
    if (!*more)
        return SCAN_OK;
    /* protobuf-c reads at most 5 tag bytes; field numbers stop at 2^29-1. */
    e = read_varint(w, 5, &key);
    if (e)
        return e;
    if (key > UINT32_MAX || (key >> 3) == 0)
        return SCAN_BAD_TAG;
    f->number = (uint32_t)(key >> 3);
    f->wire_type = key & 7;
    switch (f->wire_type) {
    case WT_VARINT:
        return read_varint(w, 10, &f->varint);
    case WT_I64:
    case WT_I32: {
        size_t n = f->wire_type == WT_I64 ? 8 : 4;
        if ((size_t)(w->end - w->p) < n)
            return SCAN_TRUNCATED;
        w->p += n;
        return SCAN_OK;
    }
    case WT_LEN:
        /* protobuf-c takes lengths as at most 5 varint bytes into a uint32. */
        e = read_varint(w, 5, &len);
        if (e)
            return e;
        if (len > UINT32_MAX)
            return SCAN_BAD_VARINT;
        if (len > (uint64_t)(w->end - w->p))
            return SCAN_TRUNCATED;
        f->ptr = w->p;
        f->len = (size_t)len;
        w->p += len;
        return SCAN_OK;
    default:
        /* Groups (3, 4) are proto1 relics protobuf-c does not parse. */
        return SCAN_BAD_WIRE_TYPE;
    }
}

struct scan_totals {
    size_t n_pk, n_ehk, n_records, n_tags;
};

static int scan_tag(const uint8_t *p, size_t len, size_t rec, size_t tag, struct kpl_error *err)
{
    struct wire w = { p, p + len };
    struct field f;
    bool more, has_key = false;

    for (;;) {
        enum scan_err e = next_field(&w, &f, &more);
        if (e)
            return fail(err, -EBADMSG, "%s in record %zu tag %zu", scan_err_str[e], rec, tag);
        if (!more)
            break;
        if (f.number == 1 || f.number == 2) {
            if (f.wire_type != WT_LEN)
                return fail(err, -EBADMSG, "record %zu tag %zu: field %" PRIu32 " has wire type %u",
                            rec, tag, f.number, f.wire_type);
            if (f.number == 1)
                has_key = true;
        }
    }
    if (!has_key)
        return fail(err, -EBADMSG, "record %zu tag %zu: missing key", rec, tag);
    return 0;
}

static int scan_record(const uint8_t *p, size_t len, size_t rec, struct scan_totals *t,
                       struct kpl_error *err)
{
    struct wire w = { p, p + len };
    struct field f;
    bool more, has_pk = false, has_data = false;
    size_t n_tags = 0;

    for (;;) {
        enum scan_err e = next_field(&w, &f, &more);
        if (e)
            return fail(err, -EBADMSG, "%s in record %zu", scan_err_str[e], rec);
        if (!more)
            break;
        unsigned want = f.number <= 2 ? WT_VARINT : WT_LEN;
        if (f.number >= 1 && f.number <= 4 && f.wire_type != want)
            return fail(err, -EBADMSG, "record %zu: field %" PRIu32 " has wire type %u",
                        rec, f.number, f.wire_type);
        switch (f.number) {
        case 1:
            has_pk = true;
            break;
        case 3:
            has_data = true;
            break;
        case 4: {
            int r = scan_tag(f.ptr, f.len, rec, n_tags, err);
            if (r < 0)
                return r;
            n_tags++;
            if (++t->n_tags > KPL_MAX_TAGS)
                return fail(err, -E2BIG, "more than %" PRIu32 " tags", KPL_MAX_TAGS);
            break;
        }
        default:
            break;
        }
    }
    if (!has_pk)
        return fail(err, -EBADMSG, "record %zu: missing partition_key_index", rec);
    if (!has_data)
        return fail(err, -EBADMSG, "record %zu: missing data", rec);
    return 0;
}

static int scan_aggregate(const uint8_t *p, size_t len, struct scan_totals *t,
                          struct kpl_error *err)
{
    struct wire w = { p, p + len };
    struct field f;
    bool more;

    *t = (struct scan_totals){ 0 };
    for (;;) {
        enum scan_err e = next_field(&w, &f, &more);
        if (e)
            return fail(err, -EBADMSG, "%s", scan_err_str[e]);
        if (!more)
            return 0;
        if (f.number >= 1 && f.number <= 3 && f.wire_type != WT_LEN)
            return fail(err, -EBADMSG, "field %" PRIu32 " has wire type %u", f.number, f.wire_type);
        switch (f.number) {
        case 1:
            if (++t->n_pk > KPL_MAX_KEYS)
                return fail(err, -E2BIG, "more than %" PRIu32 " partition keys", KPL_MAX_KEYS);
            break;
        case 2:
            if (++t->n_ehk > KPL_MAX_KEYS)
                return fail(err, -E2BIG, "more than %" PRIu32 " explicit hash keys", KPL_MAX_KEYS);
            break;
        case 3: {
            if (t->n_records >= KPL_MAX_RECORDS)
                return fail(err, -E2BIG, "more than %" PRIu32 " records", KPL_MAX_RECORDS);
            int r = scan_record(f.ptr, f.len, t->n_records, t, err);
            if (r < 0)
                return r;
            t->n_records++;
            break;
        }
        default:
            break;
        }
    }
}

/* ---- MD5 ------------------------------------------------------------------- */

/*
 * EVP_Digest(..., EVP_md5(), ...) does an implicit fetch (a lookup under the
 * global method-store lock) and three mallocs per call. MD5 is fetched once
 * here and each thread keeps its own EVP_MD_CTX, which leaves one malloc per
 * aggregate: OpenSSL 3.0 rebuilds the provider's MD5 state on every init, and
 * there is no EVP call that resets it in place. The key's destructor frees
 * the context when a worker thread exits.
 */
static pthread_once_t md5_once = PTHREAD_ONCE_INIT;
static pthread_key_t md5_ctx_key;
static EVP_MD *md5_md;
static bool md5_key_ok;

static void md5_ctx_destroy(void *ctx) { EVP_MD_CTX_free(ctx); }

static void md5_setup(void)
{
    md5_md = EVP_MD_fetch(NULL, "MD5", NULL);
    md5_key_ok = pthread_key_create(&md5_ctx_key, md5_ctx_destroy) == 0;
}

static int md5(const uint8_t *p, size_t n, unsigned char out[static KPL_DIGEST_LEN])
{
    unsigned int len = 0;

    if (pthread_once(&md5_once, md5_setup) != 0 || !md5_md || !md5_key_ok)
        return -EIO;
    EVP_MD_CTX *ctx = pthread_getspecific(md5_ctx_key);
    if (!ctx) {
        ctx = EVP_MD_CTX_new();
        if (!ctx)
            return -ENOMEM;
        if (pthread_setspecific(md5_ctx_key, ctx) != 0) {
            EVP_MD_CTX_free(ctx);
            return -ENOMEM;
        }
    }
    if (EVP_DigestInit_ex2(ctx, md5_md, NULL) != 1 || EVP_DigestUpdate(ctx, p, n) != 1 ||
        EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != KPL_DIGEST_LEN)
        return -EIO;
    return 0;
}

/* ---- de-aggregation ------------------------------------------------------- */

static struct kpl_slice slice_of(const ProtobufCBinaryData *b)
{
    return (struct kpl_slice){ b->len ? b->data : empty_bytes, b->len };
}

int kpl_deaggregate(const uint8_t *data, size_t len, struct arena *scratch,
                    struct kpl_aggregate *out, struct kpl_error *err)
{
    *out = (struct kpl_aggregate){ NULL, 0 };
    err->reason[0] = 0;

    if (!kpl_is_aggregated(data, len))
        return 0;

    const uint8_t *msg = data + KPL_MAGIC_LEN;
    size_t msg_len = len - KPL_MAGIC_LEN - KPL_DIGEST_LEN;
    const uint8_t *digest = msg + msg_len;

    unsigned char md[KPL_DIGEST_LEN];
    int r = md5(msg, msg_len, md);
    if (r < 0)
        return fail(err, r, r == -ENOMEM ? "out of memory computing md5" : "md5 unavailable");
    if (memcmp(md, digest, KPL_DIGEST_LEN) != 0)
        return fail(err, -EBADMSG, "md5 mismatch");

    struct scan_totals t;
    r = scan_aggregate(msg, msg_len, &t, err);
    if (r < 0)
        return r;

    struct scratch s = {
        .arena = scratch,
        .budget = len > (KPL_SCRATCH_MAX - KPL_SCRATCH_BASE) / KPL_SCRATCH_FACTOR
                      ? KPL_SCRATCH_MAX
                      : len * KPL_SCRATCH_FACTOR + KPL_SCRATCH_BASE,
    };
    ProtobufCAllocator allocator = { .alloc = pbc_alloc, .free = pbc_free, .allocator_data = &s };

    Kpl__AggregatedRecord *agg = kpl__aggregated_record__unpack(&allocator, msg_len, msg);
    if (!agg) {
        if (s.oom)
            return fail(err, -ENOMEM, "out of memory decoding aggregate");
        if (s.over_budget)
            return fail(err, -E2BIG, "aggregate needs more than %zu bytes of scratch to decode",
                        s.budget);
        return fail(err, -EBADMSG, "invalid protobuf");
    }

    /* protobuf-c agrees with the scan on counts; trust but verify, since the
     * arrays below are sized from the scan. */
    if (agg->n_records != t.n_records || agg->n_partition_key_table != t.n_pk ||
        agg->n_explicit_hash_key_table != t.n_ehk)
        return fail(err, -EBADMSG, "invalid protobuf");

    if (agg->n_records == 0)
        return 1;

    struct kpl_record *recs = scratch_alloc(&s, agg->n_records * sizeof(*recs));
    struct kpl_tag *tags = t.n_tags ? scratch_alloc(&s, t.n_tags * sizeof(*tags)) : NULL;
    if (!recs || (t.n_tags && !tags))
        return s.oom ? fail(err, -ENOMEM, "out of memory decoding aggregate")
                     : fail(err, -E2BIG, "aggregate needs more than %zu bytes of scratch to decode",
                            s.budget);

    size_t tag_i = 0;
    for (size_t i = 0; i < agg->n_records; i++) {
        const Kpl__Record *pr = agg->records[i];
        struct kpl_record *rec = &recs[i];

        /* Compared as uint64: casting the index to size_t first would let
         * 2^32 + k alias k on 32-bit targets. */
        if (pr->partition_key_index >= (uint64_t)agg->n_partition_key_table)
            return fail(err, -EBADMSG,
                        "record %zu: partition_key_index %" PRIu64 " out of range (table has %zu)",
                        i, pr->partition_key_index, agg->n_partition_key_table);
        rec->index = (uint32_t)i;
        rec->partition_key = slice_of(&agg->partition_key_table[pr->partition_key_index]);

        if (pr->has_explicit_hash_key_index) {
            if (pr->explicit_hash_key_index >= (uint64_t)agg->n_explicit_hash_key_table)
                return fail(err, -EBADMSG,
                            "record %zu: explicit_hash_key_index %" PRIu64
                            " out of range (table has %zu)",
                            i, pr->explicit_hash_key_index, agg->n_explicit_hash_key_table);
            rec->explicit_hash_key =
                slice_of(&agg->explicit_hash_key_table[pr->explicit_hash_key_index]);
        } else
            rec->explicit_hash_key = (struct kpl_slice){ NULL, 0 };

        rec->data = slice_of(&pr->data);

        if (pr->n_tags > t.n_tags - tag_i)
            return fail(err, -EBADMSG, "invalid protobuf");
        rec->tags = pr->n_tags ? &tags[tag_i] : NULL;
        rec->n_tags = pr->n_tags;
        for (size_t j = 0; j < pr->n_tags; j++) {
            const Kpl__Tag *pt = pr->tags[j];
            tags[tag_i].key = slice_of(&pt->key);
            tags[tag_i].value = pt->has_value ? slice_of(&pt->value) : (struct kpl_slice){ NULL, 0 };
            tag_i++;
        }
    }

    *out = (struct kpl_aggregate){ recs, agg->n_records };
    return 1;
}
