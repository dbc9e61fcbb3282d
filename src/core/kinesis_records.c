/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Two readers of one format. The general one scans the body into the
 * generic scanner's tape and walks it: every shape the API allows, every
 * error with its message. The one-pass reader (parse_fast, below) takes the
 * shape every response actually has and builds no tape, using the scanner's
 * own token functions for strings and numbers, so validation is the same
 * code; whatever it does not recognise it leaves to the general one. No
 * scanner of its own: the fuzz target holds the two readers' results equal
 * on every input.
 */
#include "rarewatch/kinesis_records.h"

#include <math.h>
#include <string.h>

#include "rarewatch/base64.h"

void kinesis_records_init(struct kinesis_records *kr)
{
    *kr = (struct kinesis_records){ 0 };
    /* The doc decodes escaped strings into the arena passed to each parse. */
    json_doc_init(&kr->doc, NULL);
    kr->millis_behind_latest = -1;
}

void kinesis_records_free(struct kinesis_records *kr)
{
    free(kr->records);
    free(kr->child_shards);
    json_doc_free(&kr->doc);
    *kr = (struct kinesis_records){ 0 };
    kr->millis_behind_latest = -1;
}

static int grow_array(void **arr, size_t *cap, size_t need, size_t elsize)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    if (c > SIZE_MAX / elsize)
        return -ENOMEM;
    void *p = realloc(*arr, c * elsize);
    if (!p)
        return -ENOMEM;
    *arr = p;
    *cap = c;
    return 0;
}

/* Shape errors say what was wrong, for the one log line the caller writes
 * (kr->doc.err_msg, as for syntax errors). */
static int bad(struct json_doc *d, const char *msg)
{
    d->err_msg = msg;
    d->err_off = 0;
    return -EBADMSG;
}

static size_t count_children(const struct json_doc *d, uint32_t c)
{
    size_t n = 0;
    for (uint32_t i = json_first_child(d, c); i != JSON_NONE; i = json_next_sibling(d, c, i))
        n++;
    return n;
}

static inline bool key_is(const struct json_doc *d, uint32_t k, const char *lit, size_t n)
{
    const struct json_node *kn = &d->nodes[k];
    /* Member names AWS sends never need escapes, but json_str_eq keeps an
     * escaped spelling of the same name equal. */
    if (_likely_(!(kn->flags & JSON_F_ESCAPED)))
        return kn->end - kn->start - 2 == n && memcmp(d->text + kn->start + 1, lit, n) == 0;
    return json_str_eq(d, k, lit, n);
}
#define KEY_IS(d, k, lit) key_is((d), (k), (lit), sizeof(lit) - 1)

static int get_str(struct json_doc *d, uint32_t v, struct rw_str *out)
{
    if (d->nodes[v].type != JSON_T_STRING)
        return bad(d, "expected a string");
    return json_get_string(d, v, out);
}

/* Needs the decoded string s of node vn no JSON escape? Without escapes in
 * the text, the scanner has answered already: the text held no quote,
 * backslash or control byte, so only a raw non-ASCII byte would need one
 * (buf_json_plain's rule), and the scanner flags those. */
static inline bool plain_str(const struct json_node *vn, const struct rw_str *s)
{
    if (vn->flags & JSON_F_ESCAPED)
        return buf_json_plain(s->p, s->len);
    return !(vn->flags & JSON_F_NONASCII);
}

/* Data's base64 text b64 decoded into the arena as rec's bytes, NUL
 * terminated (a record's payload is handed on as a C string too): 0,
 * -EBADMSG (not base64) or -ENOMEM. For both readers. */
static int decode_data(struct kinesis_record *rec, struct rw_str b64, struct arena *arena)
{
    char *out = arena_alloc(arena, base64_decoded_max(b64.len) + 1);
    if (!out)
        return -ENOMEM;
    size_t outlen;
    if (base64_decode(b64.p, b64.len, (uint8_t *)out, &outlen) < 0)
        return -EBADMSG;
    out[outlen] = 0;
    rec->data = out;
    rec->data_len = outlen;
    return 0;
}

static int parse_record(struct json_doc *d, uint32_t obj, struct kinesis_record *rec,
                        struct arena *arena)
{
    if (d->nodes[obj].type != JSON_T_OBJECT)
        return bad(d, "a record is not an object");
    *rec = (struct kinesis_record){ .arrival = NAN };
    uint32_t data = JSON_NONE;
    unsigned seen = 0;
    int r;
    /* With duplicate members the first one counts, as in json_obj_get. */
#define FIRST(bit) (!(seen & (bit)) && (seen |= (bit)))
    for (uint32_t k = json_first_child(d, obj); k != JSON_NONE;
         k = json_next_sibling(d, obj, k + 1)) {
        uint32_t v = k + 1;
        const struct json_node *vn = &d->nodes[v];
        if (KEY_IS(d, k, "Data")) {
            if (!FIRST(1))
                continue;
            if (vn->type != JSON_T_STRING)
                return bad(d, "Data is not a string");
            data = v;
        } else if (KEY_IS(d, k, "PartitionKey")) {
            if (FIRST(2)) {
                if ((r = get_str(d, v, &rec->partition_key)) < 0)
                    return r;
                rec->partition_key_plain = plain_str(vn, &rec->partition_key);
            }
        } else if (KEY_IS(d, k, "SequenceNumber")) {
            if (FIRST(4)) {
                if ((r = get_str(d, v, &rec->sequence_number)) < 0)
                    return r;
                rec->sequence_number_plain = plain_str(vn, &rec->sequence_number);
            }
        } else if (KEY_IS(d, k, "ApproximateArrivalTimestamp")) {
            if (vn->type != JSON_T_NUMBER)
                return bad(d, "ApproximateArrivalTimestamp is not a number");
            if (FIRST(8))
                rec->arrival = json_parse_number(d->text + vn->start, vn->end - vn->start);
        } else if (KEY_IS(d, k, "EncryptionType")) {
            if (FIRST(16) && vn->type != JSON_T_NULL && (r = get_str(d, v, &rec->encryption_type)) < 0)
                return r;
        } else if (KEY_IS(d, k, "ExplicitHashKey")) {
            if (FIRST(32) && vn->type != JSON_T_NULL && (r = get_str(d, v, &rec->explicit_hash_key)) < 0)
                return r;
        }
    }
#undef FIRST
    if (data == JSON_NONE || !rec->partition_key.p || !rec->sequence_number.p)
        return bad(d, "a record lacks Data, PartitionKey or SequenceNumber");
    /* The alphabet needs no escapes, but an encoder may still write '/' as
     * "\/"; json_get_string borrows the text unless it has to decode. */
    struct rw_str b64s;
    if ((r = json_get_string(d, data, &b64s)) < 0)
        return r;
    r = decode_data(rec, b64s, arena);
    return r == -EBADMSG ? bad(d, "invalid base64 in Data") : r;
}

static int parse_child_shard(struct json_doc *d, uint32_t obj, struct kinesis_child_shard *cs,
                             struct arena *arena)
{
    if (d->nodes[obj].type != JSON_T_OBJECT)
        return bad(d, "a child shard is not an object");
    *cs = (struct kinesis_child_shard){ 0 };
    int r;
    for (uint32_t k = json_first_child(d, obj); k != JSON_NONE;
         k = json_next_sibling(d, obj, k + 1)) {
        uint32_t v = k + 1;
        if (KEY_IS(d, k, "ShardId")) {
            if ((r = get_str(d, v, &cs->shard_id)) < 0)
                return r;
        } else if (KEY_IS(d, k, "ParentShards")) {
            if (d->nodes[v].type != JSON_T_ARRAY)
                return bad(d, "ParentShards is not an array");
            size_t n = count_children(d, v);
            if (n > UINT32_MAX)
                return bad(d, "too many ParentShards");
            cs->parent_shards = n ? arena_alloc(arena, n * sizeof(struct rw_str)) : NULL;
            if (n && !cs->parent_shards)
                return -ENOMEM;
            cs->n_parent_shards = (uint32_t)n;
            size_t j = 0;
            for (uint32_t e = json_first_child(d, v); e != JSON_NONE; e = json_next_sibling(d, v, e))
                if ((r = get_str(d, e, &cs->parent_shards[j++])) < 0)
                    return r;
        } else if (KEY_IS(d, k, "HashKeyRange")) {
            if (d->nodes[v].type != JSON_T_OBJECT)
                return bad(d, "HashKeyRange is not an object");
            uint32_t s = json_obj_get(d, v, "StartingHashKey", 15);
            uint32_t e = json_obj_get(d, v, "EndingHashKey", 13);
            if (s == JSON_NONE || e == JSON_NONE)
                return bad(d, "HashKeyRange lacks a key");
            if ((r = get_str(d, s, &cs->starting_hash_key)) < 0 ||
                (r = get_str(d, e, &cs->ending_hash_key)) < 0)
                return r;
        }
    }
    if (!cs->shard_id.p)
        return bad(d, "a child shard lacks ShardId");
    return 0;
}

/* No records, no child shards, no iterator: what a parse starts from and
 * what a failed one leaves (never a half-filled batch). */
static void clear(struct kinesis_records *kr)
{
    kr->n_records = 0;
    kr->n_child_shards = 0;
    kr->next_shard_iterator = (struct rw_str){ NULL, 0 };
    kr->millis_behind_latest = -1;
}

static int parse(struct kinesis_records *kr, const char *body, size_t len, struct arena *arena)
{
    struct json_doc *d = &kr->doc;
    clear(kr);
    d->arena = arena;
    d->owns_arena = false;
    int r = json_scan(d, body, len);
    if (r < 0)
        return r;
    if (d->nodes[0].type != JSON_T_OBJECT)
        return bad(d, "the response is not an object");
    uint32_t records = JSON_NONE;
    unsigned seen = 0;
    /* First of duplicate members counts (and ChildShards is sized once). */
#define FIRST(bit) (!(seen & (bit)) && (seen |= (bit)))
    for (uint32_t k = json_first_child(d, 0); k != JSON_NONE; k = json_next_sibling(d, 0, k + 1)) {
        uint32_t v = k + 1;
        const struct json_node *vn = &d->nodes[v];
        if (KEY_IS(d, k, "Records")) {
            if (!FIRST(1))
                continue;
            if (vn->type != JSON_T_ARRAY)
                return bad(d, "Records is not an array");
            records = v;
        } else if (KEY_IS(d, k, "NextShardIterator")) {
            if (FIRST(2) && vn->type != JSON_T_NULL && (r = get_str(d, v, &kr->next_shard_iterator)) < 0)
                return r;
        } else if (KEY_IS(d, k, "MillisBehindLatest")) {
            if (!FIRST(4))
                continue;
            if (vn->type != JSON_T_NUMBER || (vn->flags & JSON_F_FLOAT))
                return bad(d, "MillisBehindLatest is not an integer");
            double ms = json_parse_number(d->text + vn->start, vn->end - vn->start);
            if (!(ms >= 0 && ms < 9.2e18))
                return bad(d, "MillisBehindLatest out of range");
            kr->millis_behind_latest = (int64_t)ms;
        } else if (KEY_IS(d, k, "ChildShards")) {
            if (!FIRST(8) || vn->type == JSON_T_NULL)
                continue;
            if (vn->type != JSON_T_ARRAY)
                return bad(d, "ChildShards is not an array");
            size_t n = count_children(d, v);
            if ((r = grow_array((void **)&kr->child_shards, &kr->child_shards_cap, n,
                                sizeof(*kr->child_shards))) < 0)
                return r;
            for (uint32_t e = json_first_child(d, v); e != JSON_NONE; e = json_next_sibling(d, v, e))
                if ((r = parse_child_shard(d, e, &kr->child_shards[kr->n_child_shards++], arena)) < 0)
                    return r;
        }
    }
#undef FIRST
    if (records == JSON_NONE)
        return bad(d, "Records is missing");
    size_t n = count_children(d, records);
    if ((r = grow_array((void **)&kr->records, &kr->records_cap, n, sizeof(*kr->records))) < 0)
        return r;
    for (uint32_t e = json_first_child(d, records); e != JSON_NONE;
         e = json_next_sibling(d, records, e)) {
        if ((r = parse_record(d, e, &kr->records[kr->n_records], arena)) < 0)
            return r;
        kr->n_records++;
    }
    return 0;
}

/* ---- the common shape in one pass ----
 *
 * Every GetRecords body from AWS and the emulators has one shape: an object
 * of Records, NextShardIterator and MillisBehindLatest, each record an
 * object of a few known members with plain strings. The general parse above
 * scans the whole body into the tape (~9 nodes per record) and then walks
 * it, comparing member names; here the member names are recognised by
 * their exact spelling where they start, values are validated with the
 * scanner's own token functions and stored directly: about a third of the
 * instructions per record. Anything else (an unknown or repeated member, a
 * name or Data with an escape, ChildShards, any syntax error, bad base64)
 * returns 0 without a verdict, and the general parse decides and reports:
 * one parser owns the error messages. fuzz_kinesis_records compares the
 * two on every input. */

/* The member name lit (quotes included) at p, then the colon: the value's
 * start, or NULL. */
static inline const char *member(const char *p, const char *end, const char *lit, size_t n)
{
    if ((size_t)(end - p) < n || !mem_eq(p, lit, n))
        return NULL;
    p = json_skip_ws(p + n);
    return *p == ':' ? json_skip_ws(p + 1) : NULL;
}
#define MEMBER(p, end, lit) member((p), (end), (lit), sizeof(lit) - 1)

/* A literal null at v: the position after it, or NULL. */
static inline const char *null_at(const char *v, const char *end)
{
    return (size_t)(end - v) >= 4 && memcmp(v, "null", 4) == 0 ? v + 4 : NULL;
}

/* After a member or element ending at q, in a container closed by close:
 * 1 and *pp at the next one, 0 and *pp past the closing bracket, -1 for
 * anything else. */
static inline int next_item(const char **pp, const char *q, char close)
{
    const char *p = json_skip_ws(q);
    if (*p == close) {
        *pp = p + 1;
        return 0;
    }
    if (*p != ',')
        return -1;
    *pp = json_skip_ws(p + 1);
    return 1;
}

/* A plain string value at p into *out (its flags in *fl): the position
 * after it, or NULL (not a string, invalid, or escaped). */
static inline const char *plain_string(const char *p, const char *end, struct rw_str *out, uint8_t *fl)
{
    if (*p != '"')
        return NULL;
    *fl = 0;
    const char *q = json_scan_string_token(p, end, fl);
    if (!q || (*fl & JSON_F_ESCAPED))
        return NULL;
    *out = (struct rw_str){ p + 1, (uint32_t)(q - p - 2) };
    return q;
}

/* One record object at *pp: 1 (stored, *pp after it), 0 (not the common
 * shape) or -ENOMEM. */
static int fast_record(const char **pp, const char *end, struct kinesis_record *rec, struct arena *arena)
{
    const char *p = json_skip_ws(*pp + 1), *q;
    *rec = (struct kinesis_record){ .arrival = NAN };
    struct rw_str data = { 0 };
    unsigned seen = 0, bit;
    uint8_t fl;
    int more;
    do {
        const char *v;
        if ((v = MEMBER(p, end, "\"Data\"")))
            bit = 1;
        else if ((v = MEMBER(p, end, "\"PartitionKey\"")))
            bit = 2;
        else if ((v = MEMBER(p, end, "\"SequenceNumber\"")))
            bit = 4;
        else if ((v = MEMBER(p, end, "\"ApproximateArrivalTimestamp\"")))
            bit = 8;
        else if ((v = MEMBER(p, end, "\"EncryptionType\"")))
            bit = 16;
        else if ((v = MEMBER(p, end, "\"ExplicitHashKey\"")))
            bit = 32;
        else
            return 0;
        if (seen & bit)
            return 0;
        seen |= bit;
        switch (bit) {
        case 1: q = plain_string(v, end, &data, &fl); break;
        case 2:
            q = plain_string(v, end, &rec->partition_key, &fl);
            rec->partition_key_plain = !(fl & JSON_F_NONASCII);
            break;
        case 4:
            q = plain_string(v, end, &rec->sequence_number, &fl);
            rec->sequence_number_plain = !(fl & JSON_F_NONASCII);
            break;
        case 8:
            fl = 0;
            if ((q = json_scan_number_token(v, &fl)))
                rec->arrival = json_parse_number(v, (size_t)(q - v));
            break;
        default:
            if (!(q = null_at(v, end)))
                q = plain_string(v, end, bit == 16 ? &rec->encryption_type : &rec->explicit_hash_key, &fl);
            break;
        }
        if (!q || (more = next_item(&p, q, '}')) < 0)
            return 0;
    } while (more);
    if ((seen & 7) != 7)
        return 0;
    int r = decode_data(rec, data, arena);
    if (r < 0)
        return r == -EBADMSG ? 0 : r; /* bad base64: the general parse says so */
    *pp = p;
    return 1;
}

static int parse_fast(struct kinesis_records *kr, const char *body, size_t len, struct arena *arena)
{
    if (len >= UINT32_MAX)
        return 0;
    const char *end = body + len, *p = json_skip_ws(body), *v, *q;
    clear(kr);
    if (*p != '{')
        return 0;
    p = json_skip_ws(p + 1);
    unsigned seen = 0;
    uint8_t fl;
    int r, more;
    do {
        if ((v = MEMBER(p, end, "\"Records\"")) && !(seen & 1)) {
            seen |= 1;
            if (*v != '[')
                return 0;
            q = json_skip_ws(v + 1);
            if (*q == ']')
                q++;
            else
                do {
                    if (*q != '{')
                        return 0;
                    if ((r = grow_array((void **)&kr->records, &kr->records_cap, kr->n_records + 1,
                                        sizeof(*kr->records))) < 0)
                        return r;
                    if ((r = fast_record(&q, end, &kr->records[kr->n_records], arena)) <= 0)
                        return r;
                    kr->n_records++;
                    if ((more = next_item(&q, q, ']')) < 0)
                        return 0;
                } while (more);
        } else if ((v = MEMBER(p, end, "\"NextShardIterator\"")) && !(seen & 2)) {
            seen |= 2;
            if (!(q = null_at(v, end)))
                q = plain_string(v, end, &kr->next_shard_iterator, &fl);
        } else if ((v = MEMBER(p, end, "\"MillisBehindLatest\"")) && !(seen & 4)) {
            seen |= 4;
            fl = 0;
            q = json_scan_number_token(v, &fl);
            if (!q || (fl & JSON_F_FLOAT))
                return 0;
            double ms = json_parse_number(v, (size_t)(q - v));
            if (!(ms >= 0 && ms < 9.2e18))
                return 0;
            kr->millis_behind_latest = (int64_t)ms;
        } else if ((v = MEMBER(p, end, "\"ChildShards\"")) && !(seen & 8)) {
            /* Some emulators send it empty on every response; a closing
             * shard's list is the general parse's. */
            seen |= 8;
            if (!(q = null_at(v, end))) {
                if (*v != '[' || *(q = json_skip_ws(v + 1)) != ']')
                    return 0;
                q++;
            }
        } else
            return 0;
        if (!q || (more = next_item(&p, q, '}')) < 0)
            return 0;
    } while (more);
    if (json_skip_ws(p) != end || !(seen & 1))
        return 0;
    return 1;
}

int kinesis_records_parse_general(struct kinesis_records *kr, const char *body, size_t len,
                                  struct arena *arena)
{
    int r = parse(kr, body, len, arena);
    if (r < 0)
        clear(kr);
    return r;
}

int kinesis_records_parse(struct kinesis_records *kr, const char *body, size_t len,
                          struct arena *arena)
{
    int r = parse_fast(kr, body, len, arena);
    if (r > 0) {
        kr->doc.err_msg = NULL;
        return 0;
    }
    if (r < 0) {
        clear(kr);
        return r;
    }
    return kinesis_records_parse_general(kr, body, len, arena);
}
