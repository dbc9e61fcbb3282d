/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Checkpoints and leases in DynamoDB, in the Kinesis Client Library's row
 * format, so a stream can move between a KCL 2.x application and rarewatch
 * without reprocessing:
 *
 *   leaseKey (S, hash key)            the shard id
 *   leaseOwner (S)                    the worker holding it (absent: free)
 *   leaseCounter (N)                  bumped by every write of the owner
 *   checkpoint (S)                    a sequence number, TRIM_HORIZON,
 *                                     LATEST, AT_TIMESTAMP or SHARD_END
 *   checkpointSubSequenceNumber (N)
 *   ownerSwitchesSinceCheckpoint (N)
 *   parentShardIds (SS)
 *
 * Every write is conditional on the counter (and owner) this instance last
 * saw, so two instances can never both believe they own a shard: the loser
 * of a race gets ConditionalCheckFailedException and stops the shard at
 * once, without checkpointing. Expiry needs no clock sync: a lease is
 * expired when its counter has not changed for failover_time as observed
 * here.
 */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rarewatch/aws.h"
#include "rarewatch/ckpt.h"
#include "rarewatch/log.h"
#include "rarewatch/strutil.h"

struct lease {
    char key[64];
    pthread_mutex_t lock;   /* serialises this instance's writes to the row */
    /* as last read or written */
    char owner[160];
    uint64_t counter;
    char checkpoint[CKPT_SEQ_MAX + 1];
    uint64_t sub;
    char parents[2][64];
    unsigned n_parents;
    /* local observation for expiry */
    uint64_t seen_counter;
    uint64_t seen_changed_usec;
    bool owned;             /* we hold it (and have not lost it) */
    bool present;           /* the row exists */
};

struct dyn_store {
    struct ckpt_dynamodb_options o;
    char *table, *worker, *initial;
    pthread_mutex_t lock;   /* the lease list */
    struct lease **leases;
    size_t n, cap;
    pthread_mutex_t pool_lock;
    struct aws_client **pool;
    size_t pool_n, pool_cap;
    uint64_t last_renew, last_take;
    _Atomic uint64_t reads, writes, taken, stolen, lost, released;
};

/* ---- a small pool of clients: a client belongs to one thread at a time ---- */

static struct aws_client *client_get(struct dyn_store *d)
{
    pthread_mutex_lock(&d->pool_lock);
    struct aws_client *c = d->pool_n ? d->pool[--d->pool_n] : NULL;
    pthread_mutex_unlock(&d->pool_lock);
    return c ? c : aws_client_new(d->o.aws);
}

static void client_put(struct dyn_store *d, struct aws_client *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&d->pool_lock);
    if (d->pool_n == d->pool_cap) {
        size_t cap = d->pool_cap ? d->pool_cap * 2 : 8;
        struct aws_client **p = realloc(d->pool, cap * sizeof(*p));
        if (!p) {
            pthread_mutex_unlock(&d->pool_lock);
            aws_client_free(c);
            return;
        }
        d->pool = p;
        d->pool_cap = cap;
    }
    d->pool[d->pool_n++] = c;
    pthread_mutex_unlock(&d->pool_lock);
}

/* One DynamoDB call; the parsed response object (caller puts) or NULL with
 * err filled. */
static int ddb(struct dyn_store *d, const char *op, const char *body, json_object **out,
               struct aws_error *err)
{
    struct aws_client *c = client_get(d);
    if (!c) {
        aws_error_set(err, AWS_ERR_CONFIG, "OutOfMemory", "out of memory");
        return -ENOMEM;
    }
    struct http_response resp = { 0 };
    bool write = strcmp(op, "Scan") != 0 && strcmp(op, "GetItem") != 0 && strcmp(op, "DescribeTable") != 0;
    atomic_fetch_add(write ? &d->writes : &d->reads, 1);
    int r = aws_json_call(c, AWS_SVC_DYNAMODB, op, body, strlen(body), &resp, err);
    if (r == 0 && out) {
        *out = json_tokener_parse(resp.body.data ? resp.body.data : "");
        if (!*out) {
            aws_error_set(err, AWS_ERR_RESPONSE, "MalformedResponse", "%s: unreadable response", op);
            r = -EPROTO;
        }
    }
    http_response_free(&resp);
    client_put(d, c);
    return r;
}

static bool conditional_failed(const struct aws_error *e)
{
    return strcmp(e->code, "ConditionalCheckFailedException") == 0;
}

static void put_str(struct buf *b, const char *s) { buf_put_json_string(b, s, strlen(s)); }

/* ---- row parsing ---- */

static const char *attr_s(json_object *item, const char *name)
{
    json_object *a = NULL, *v = NULL;
    if (!json_object_object_get_ex(item, name, &a) || !json_object_object_get_ex(a, "S", &v))
        return NULL;
    return json_object_get_string(v);
}

static bool attr_n(json_object *item, const char *name, uint64_t *out)
{
    json_object *a = NULL, *v = NULL;
    if (!json_object_object_get_ex(item, name, &a) || !json_object_object_get_ex(a, "N", &v))
        return false;
    const char *s = json_object_get_string(v);
    char *end;
    double x = strtod(s, &end);
    if (*end || x < 0)
        return false;
    *out = (uint64_t)x;
    return true;
}

static struct lease *find_locked(struct dyn_store *d, const char *key)
{
    for (size_t i = 0; i < d->n; i++)
        if (streq(d->leases[i]->key, key))
            return d->leases[i];
    return NULL;
}

static struct lease *find_or_add_locked(struct dyn_store *d, const char *key)
{
    struct lease *l = find_locked(d, key);
    if (l)
        return l;
    if (strlen(key) >= sizeof(l->key))
        return NULL;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        struct lease **n = realloc(d->leases, cap * sizeof(*n));
        if (!n)
            return NULL;
        d->leases = n;
        d->cap = cap;
    }
    l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    snprintf(l->key, sizeof(l->key), "%s", key);
    pthread_mutex_init(&l->lock, NULL);
    d->leases[d->n++] = l;
    return l;
}

/* Fold one scanned row into our view (under d->lock). */
static void observe(struct dyn_store *d, json_object *item, uint64_t now)
{
    const char *key = attr_s(item, "leaseKey");
    if (!key)
        return;
    struct lease *l = find_or_add_locked(d, key);
    if (!l)
        return;
    uint64_t counter = 0;
    attr_n(item, "leaseCounter", &counter);
    const char *owner = attr_s(item, "leaseOwner");
    const char *cp = attr_s(item, "checkpoint");
    if (!l->present || counter != l->seen_counter) {
        l->seen_counter = counter;
        l->seen_changed_usec = now;
    }
    l->present = true;
    /* Our own rows change under our writes; keep what we wrote unless the
     * row says someone else owns it now. */
    if (!l->owned) {
        l->counter = counter;
        snprintf(l->owner, sizeof(l->owner), "%s", owner ? owner : "");
        snprintf(l->checkpoint, sizeof(l->checkpoint), "%s", cp ? cp : "");
        attr_n(item, "checkpointSubSequenceNumber", &l->sub);
    } else if (counter != l->counter || !owner || !streq(owner, d->worker)) {
        /* Someone took it (we missed the moment): stop using it. */
        l->owned = false;
        l->counter = counter;
        snprintf(l->owner, sizeof(l->owner), "%s", owner ? owner : "");
        atomic_fetch_add(&d->lost, 1);
        log_warning("lease %s: now owned by %s; giving it up", l->key, owner ? owner : "nobody");
    }
}

static int scan_all(struct dyn_store *d)
{
    _cleanup_buf_ struct buf b = BUF_INIT;
    _cleanup_free_ char *start = NULL;
    uint64_t now = now_monotonic_usec();
    for (;;) {
        buf_reset(&b);
        buf_puts(&b, "{\"TableName\":");
        put_str(&b, d->table);
        buf_puts(&b, ",\"ConsistentRead\":true");
        if (start)
            buf_printf(&b, ",\"ExclusiveStartKey\":%s", start);
        buf_putc(&b, '}');
        json_object *o = NULL, *items = NULL, *last = NULL;
        struct aws_error err;
        int r = ddb(d, "Scan", b.data, &o, &err);
        if (r < 0) {
            char eb[512];
            log_fields(LOG_WARNING, 0, (&(struct log_fields){ .aws_error = err.code }),
                       "lease table scan failed: %s", aws_error_str(&err, eb, sizeof(eb)));
            return r;
        }
        pthread_mutex_lock(&d->lock);
        if (json_object_object_get_ex(o, "Items", &items) && json_object_is_type(items, json_type_array))
            for (size_t i = 0; i < json_object_array_length(items); i++)
                observe(d, json_object_array_get_idx(items, i), now);
        pthread_mutex_unlock(&d->lock);
        free(TAKE_PTR(start));
        if (json_object_object_get_ex(o, "LastEvaluatedKey", &last))
            start = strdup(json_object_to_json_string_ext(last, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
        if (!start)
            return 0;
    }
}

/* ---- conditional writes ---- */

/* SET/REMOVE expression on the row, conditional on the counter we hold
 * (and, unless taking, on us owning it). On success the counter we hold is
 * the new one. Caller holds l->lock. -ENOLCK when the condition failed. */
static int update_locked(struct dyn_store *d, struct lease *l, const char *update,
                         const char *extra_values, bool must_own, const char *expect_owner)
{
    _cleanup_buf_ struct buf b = BUF_INIT;
    buf_puts(&b, "{\"TableName\":");
    put_str(&b, d->table);
    buf_puts(&b, ",\"Key\":{\"leaseKey\":{\"S\":");
    put_str(&b, l->key);
    buf_printf(&b, "}},\"UpdateExpression\":\"%s\"", update);
    buf_puts(&b, ",\"ConditionExpression\":\"leaseCounter = :c");
    if (must_own)
        buf_puts(&b, " AND leaseOwner = :me");
    else if (expect_owner && *expect_owner)
        buf_puts(&b, " AND leaseOwner = :prev");
    else if (expect_owner)
        buf_puts(&b, " AND attribute_not_exists(leaseOwner)");
    buf_printf(&b, "\",\"ExpressionAttributeValues\":{\":c\":{\"N\":\"%llu\"},\":one\":{\"N\":\"1\"},\":me\":{\"S\":",
               (unsigned long long)l->counter);
    put_str(&b, d->worker);
    buf_putc(&b, '}');
    if (!must_own && expect_owner && *expect_owner) {
        buf_puts(&b, ",\":prev\":{\"S\":");
        put_str(&b, expect_owner);
        buf_putc(&b, '}');
    }
    if (extra_values)
        buf_printf(&b, ",%s", extra_values);
    buf_puts(&b, "}}");
    struct aws_error err;
    int r = ddb(d, "UpdateItem", b.data, NULL, &err);
    if (r < 0) {
        if (conditional_failed(&err))
            return -ENOLCK;
        char eb[512];
        log_fields(LOG_WARNING, 0, (&(struct log_fields){ .shard_id = l->key, .aws_error = err.code }),
                   "lease %s: UpdateItem failed: %s", l->key, aws_error_str(&err, eb, sizeof(eb)));
        return r;
    }
    l->counter++;
    l->seen_counter = l->counter;
    l->seen_changed_usec = now_monotonic_usec();
    return 0;
}

static void lose(struct dyn_store *d, struct lease *l, const char *why)
{
    if (l->owned) {
        l->owned = false;
        atomic_fetch_add(&d->lost, 1);
        log_fields(LOG_WARNING, 0, (&(struct log_fields){ .shard_id = l->key }),
                   "lease %s lost (%s): another instance took it", l->key, why);
    }
}

static int create_row(struct dyn_store *d, const struct ckpt_shard *s)
{
    _cleanup_buf_ struct buf b = BUF_INIT;
    buf_puts(&b, "{\"TableName\":");
    put_str(&b, d->table);
    buf_puts(&b, ",\"Item\":{\"leaseKey\":{\"S\":");
    put_str(&b, s->id);
    buf_puts(&b, "},\"leaseCounter\":{\"N\":\"0\"},\"checkpoint\":{\"S\":");
    put_str(&b, d->initial);
    buf_puts(&b, "},\"checkpointSubSequenceNumber\":{\"N\":\"0\"},\"ownerSwitchesSinceCheckpoint\":{\"N\":\"0\"}");
    if (s->n_parents) {
        buf_puts(&b, ",\"parentShardIds\":{\"SS\":[");
        for (unsigned i = 0; i < s->n_parents; i++) {
            if (i)
                buf_putc(&b, ',');
            put_str(&b, s->parents[i]);
        }
        buf_puts(&b, "]}");
    }
    buf_puts(&b, "},\"ConditionExpression\":\"attribute_not_exists(leaseKey)\"}");
    struct aws_error err;
    int r = ddb(d, "PutItem", b.data, NULL, &err);
    if (r < 0 && !conditional_failed(&err)) {
        char eb[512];
        log_warning("lease %s: cannot create the row: %s", s->id, aws_error_str(&err, eb, sizeof(eb)));
        return r;
    }
    return 0;
}

/* ---- the store operations ---- */

static int dyn_load(void *impl, const char *shard_id, struct checkpoint *cp)
{
    struct dyn_store *d = impl;
    _cleanup_buf_ struct buf b = BUF_INIT;
    buf_puts(&b, "{\"TableName\":");
    put_str(&b, d->table);
    buf_puts(&b, ",\"ConsistentRead\":true,\"Key\":{\"leaseKey\":{\"S\":");
    put_str(&b, shard_id);
    buf_puts(&b, "}}}");
    json_object *o = NULL, *item = NULL;
    struct aws_error err;
    int r = ddb(d, "GetItem", b.data, &o, &err);
    if (r < 0)
        return r;
    if (!json_object_object_get_ex(o, "Item", &item)) {
        json_object_put(o);
        return -ENOENT;
    }
    memset(cp, 0, sizeof(*cp));
    const char *c = attr_s(item, "checkpoint");
    attr_n(item, "checkpointSubSequenceNumber", &cp->sub_sequence);
    if (!c || streq(c, "TRIM_HORIZON"))
        cp->state = CKPT_TRIM_HORIZON;
    else if (streq(c, "LATEST"))
        cp->state = CKPT_LATEST;
    else if (streq(c, "AT_TIMESTAMP"))
        cp->state = CKPT_AT_TIMESTAMP;
    else if (streq(c, "SHARD_END"))
        cp->state = CKPT_SHARD_END;
    else if (strlen(c) <= CKPT_SEQ_MAX && strspn(c, "0123456789") == strlen(c) && *c) {
        cp->state = CKPT_SEQUENCE;
        snprintf(cp->sequence, sizeof(cp->sequence), "%s", c);
    } else {
        json_object_put(o);
        return -EBADMSG;
    }
    json_object_put(o);
    return 0;
}

static int dyn_save(void *impl, const char *shard_id, const struct checkpoint *cp, char *const *parents)
{
    struct dyn_store *d = impl;
    pthread_mutex_lock(&d->lock);
    struct lease *l = find_locked(d, shard_id);
    pthread_mutex_unlock(&d->lock);
    if (!l)
        return -ENOLCK;
    pthread_mutex_lock(&l->lock);
    if (!l->owned) {
        pthread_mutex_unlock(&l->lock);
        return -ENOLCK;
    }
    char vals[CKPT_SEQ_MAX + 128];
    const char *c = cp->state == CKPT_SHARD_END ? "SHARD_END" : cp->sequence;
    snprintf(vals, sizeof(vals), "\":cp\":{\"S\":\"%s\"},\":sub\":{\"N\":\"%llu\"},\":zero\":{\"N\":\"0\"}", c,
             (unsigned long long)cp->sub_sequence);
    int r = update_locked(d, l,
                          "SET checkpoint = :cp, checkpointSubSequenceNumber = :sub, "
                          "ownerSwitchesSinceCheckpoint = :zero, leaseCounter = leaseCounter + :one",
                          vals, true, NULL);
    if (r == -ENOLCK)
        lose(d, l, "checkpoint refused");
    else if (r == 0)
        snprintf(l->checkpoint, sizeof(l->checkpoint), "%s", c);
    pthread_mutex_unlock(&l->lock);
    return r;
}

static bool dyn_owns(void *impl, const char *shard_id)
{
    struct dyn_store *d = impl;
    pthread_mutex_lock(&d->lock);
    struct lease *l = find_locked(d, shard_id);
    bool owned = l && l->owned;
    pthread_mutex_unlock(&d->lock);
    return owned;
}

static void dyn_release(void *impl, const char *shard_id)
{
    struct dyn_store *d = impl;
    pthread_mutex_lock(&d->lock);
    struct lease *l = find_locked(d, shard_id);
    pthread_mutex_unlock(&d->lock);
    if (!l)
        return;
    pthread_mutex_lock(&l->lock);
    if (l->owned) {
        /* Graceful stop: the next owner takes it at once instead of waiting
         * failover_time. */
        int r = update_locked(d, l, "REMOVE leaseOwner SET leaseCounter = leaseCounter + :one", NULL,
                              true, NULL);
        l->owned = false;
        if (r == 0) {
            atomic_fetch_add(&d->released, 1);
            log_info("lease %s released", l->key);
        }
    }
    pthread_mutex_unlock(&l->lock);
}

static void renew_all(struct dyn_store *d)
{
    pthread_mutex_lock(&d->lock);
    size_t n = d->n;
    struct lease **v = malloc(n * sizeof(*v) + 1);
    if (v)
        memcpy(v, d->leases, n * sizeof(*v));
    pthread_mutex_unlock(&d->lock);
    if (!v)
        return;
    for (size_t i = 0; i < n; i++) {
        struct lease *l = v[i];
        pthread_mutex_lock(&l->lock);
        if (l->owned) {
            int r = update_locked(d, l, "SET leaseCounter = leaseCounter + :one", NULL, true, NULL);
            if (r == -ENOLCK)
                lose(d, l, "renewal refused");
        }
        pthread_mutex_unlock(&l->lock);
    }
    free(v);
}

static bool expired(const struct dyn_store *d, const struct lease *l, uint64_t now)
{
    return !l->owner[0] || now - l->seen_changed_usec >= d->o.failover_time_usec;
}

static int take(struct dyn_store *d, struct lease *l, bool steal)
{
    pthread_mutex_lock(&l->lock);
    char prev[160];
    snprintf(prev, sizeof(prev), "%s", l->owner);
    int r = update_locked(d, l,
                          "SET leaseOwner = :me, leaseCounter = leaseCounter + :one, "
                          "ownerSwitchesSinceCheckpoint = ownerSwitchesSinceCheckpoint + :one",
                          NULL, false, prev);
    if (r == 0) {
        l->owned = true;
        snprintf(l->owner, sizeof(l->owner), "%s", d->worker);
        atomic_fetch_add(steal ? &d->stolen : &d->taken, 1);
        log_info("lease %s %s%s%s", l->key, steal ? "stolen from " : "taken",
                 steal ? prev : (prev[0] ? " (expired, was " : ""), !steal && prev[0] ? prev : "");
    }
    pthread_mutex_unlock(&l->lock);
    return r;
}

/* Expired leases first, up to our fair share; then, when still under it,
 * steal one from the most loaded worker. */
static void balance(struct dyn_store *d)
{
    uint64_t now = now_monotonic_usec();
    struct {
        char name[160];
        unsigned count;
    } owners[64];
    size_t n_owners = 0;
    unsigned active = 0, mine = 0;
    struct lease *cands[256], *victim_pool[256];
    size_t n_cands = 0, n_victims = 0;
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->n; i++) {
        struct lease *l = d->leases[i];
        if (!l->present || streq(l->checkpoint, "SHARD_END"))
            continue;
        active++;
        if (l->owned) {
            mine++;
            continue;
        }
        if (expired(d, l, now)) {
            if (n_cands < ELEMENTSOF(cands))
                cands[n_cands++] = l;
            continue;
        }
        size_t j;
        for (j = 0; j < n_owners; j++)
            if (streq(owners[j].name, l->owner))
                break;
        if (j == n_owners && n_owners < ELEMENTSOF(owners)) {
            snprintf(owners[j].name, sizeof(owners[j].name), "%s", l->owner);
            owners[j].count = 0;
            n_owners++;
        }
        if (j < n_owners)
            owners[j].count++;
    }
    unsigned workers = (unsigned)n_owners + 1;
    unsigned target = active ? (active + workers - 1) / workers : 0;
    /* The most loaded other worker, if it holds more than its share. */
    size_t busiest = SIZE_MAX;
    for (size_t j = 0; j < n_owners; j++)
        if (busiest == SIZE_MAX || owners[j].count > owners[busiest].count)
            busiest = j;
    if (busiest != SIZE_MAX)
        for (size_t i = 0; i < d->n && n_victims < ELEMENTSOF(victim_pool); i++) {
            struct lease *l = d->leases[i];
            if (l->present && !l->owned && !expired(d, l, now) && streq(l->owner, owners[busiest].name) &&
                !streq(l->checkpoint, "SHARD_END"))
                victim_pool[n_victims++] = l;
        }
    unsigned busiest_count = busiest != SIZE_MAX ? owners[busiest].count : 0;
    pthread_mutex_unlock(&d->lock);

    /* Shuffle so instances starting together do not all race for the same
     * rows. */
    for (size_t i = n_cands; i > 1; i--) {
        size_t j = (size_t)rand() % i;
        struct lease *t = cands[i - 1];
        cands[i - 1] = cands[j];
        cands[j] = t;
    }
    for (size_t i = 0; i < n_cands && mine < target; i++)
        if (take(d, cands[i], false) == 0)
            mine++;
    if (mine < target && n_victims && busiest_count > target) {
        struct lease *v = victim_pool[(size_t)rand() % n_victims];
        take(d, v, true);
    }
}

static int dyn_sync(void *impl, const struct ckpt_shard *shards, size_t n)
{
    struct dyn_store *d = impl;
    uint64_t now = now_monotonic_usec();
    /* Rows for shards we have not seen yet (new children carry parents). */
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&d->lock);
        struct lease *l = find_locked(d, shards[i].id);
        bool known = l && l->present;
        pthread_mutex_unlock(&d->lock);
        if (!known)
            create_row(d, &shards[i]);
    }
    if (now - d->last_renew >= d->o.renew_interval_usec) {
        renew_all(d);
        d->last_renew = now;
    }
    if (now - d->last_take >= d->o.take_interval_usec || d->last_take == 0) {
        if (scan_all(d) == 0)
            balance(d);
        d->last_take = now;
    }
    return 0;
}

static void dyn_free(void *impl)
{
    struct dyn_store *d = impl;
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++) {
        pthread_mutex_destroy(&d->leases[i]->lock);
        free(d->leases[i]);
    }
    free(d->leases);
    for (size_t i = 0; i < d->pool_n; i++)
        aws_client_free(d->pool[i]);
    free(d->pool);
    pthread_mutex_destroy(&d->lock);
    pthread_mutex_destroy(&d->pool_lock);
    free(d->table);
    free(d->worker);
    free(d->initial);
    free(d);
}

static const struct ckpt_store_ops dyn_ops = {
    .name = "dynamodb",
    .sync = dyn_sync,
    .load = dyn_load,
    .save = dyn_save,
    .owns = dyn_owns,
    .release = dyn_release,
    .free = dyn_free,
};

static int ensure_table(struct dyn_store *d)
{
    _cleanup_buf_ struct buf b = BUF_INIT;
    buf_puts(&b, "{\"TableName\":");
    put_str(&b, d->table);
    buf_putc(&b, '}');
    json_object *o = NULL;
    struct aws_error err;
    char eb[512];
    int r = ddb(d, "DescribeTable", b.data, &o, &err);
    if (r == 0) {
        json_object_put(o);
    } else if (streq(err.code, "ResourceNotFoundException") && d->o.create_table) {
        buf_reset(&b);
        buf_puts(&b, "{\"TableName\":");
        put_str(&b, d->table);
        buf_puts(&b, ",\"AttributeDefinitions\":[{\"AttributeName\":\"leaseKey\",\"AttributeType\":\"S\"}],"
                     "\"KeySchema\":[{\"AttributeName\":\"leaseKey\",\"KeyType\":\"HASH\"}],"
                     "\"BillingMode\":\"PAY_PER_REQUEST\"}");
        r = ddb(d, "CreateTable", b.data, NULL, &err);
        if (r < 0 && !streq(err.code, "ResourceInUseException")) {
            log_error("cannot create the lease table %s: %s", d->table, aws_error_str(&err, eb, sizeof(eb)));
            return r;
        }
        log_info("lease table %s created (on-demand billing)", d->table);
    } else {
        log_error("lease table %s: %s%s", d->table, aws_error_str(&err, eb, sizeof(eb)),
                  streq(err.code, "ResourceNotFoundException") ? " (set [checkpoint] create_table = true to create it)" : "");
        return r;
    }
    /* Wait for ACTIVE (a new table takes a moment). */
    for (int i = 0; i < 600; i++) {
        buf_reset(&b);
        buf_puts(&b, "{\"TableName\":");
        put_str(&b, d->table);
        buf_putc(&b, '}');
        o = NULL;
        if (ddb(d, "DescribeTable", b.data, &o, &err) == 0) {
            json_object *t = NULL, *st = NULL;
            bool active = json_object_object_get_ex(o, "Table", &t) &&
                          json_object_object_get_ex(t, "TableStatus", &st) &&
                          streq(json_object_get_string(st), "ACTIVE");
            json_object_put(o);
            if (active)
                return 0;
        }
        struct timespec ts = { 0, 100 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    log_error("lease table %s did not become ACTIVE", d->table);
    return -ETIMEDOUT;
}

int ckpt_dynamodb_store_new(const struct ckpt_dynamodb_options *o, struct ckpt_store **out)
{
    struct dyn_store *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->o = *o;
    pthread_mutex_init(&d->lock, NULL);
    pthread_mutex_init(&d->pool_lock, NULL);
    d->table = strdup(o->table);
    d->worker = strdup(o->worker_id);
    d->initial = strdup(o->initial_position ? o->initial_position : "TRIM_HORIZON");
    if (!d->table || !d->worker || !d->initial) {
        dyn_free(d);
        return -ENOMEM;
    }
    int r = ensure_table(d);
    if (r < 0) {
        dyn_free(d);
        return r;
    }
    struct ckpt_store *s = calloc(1, sizeof(*s));
    if (!s) {
        dyn_free(d);
        return -ENOMEM;
    }
    s->ops = &dyn_ops;
    s->impl = d;
    *out = s;
    return 0;
}

struct ckpt_dynamodb_stats ckpt_dynamodb_get_stats(struct ckpt_store *s)
{
    struct ckpt_dynamodb_stats st = { 0 };
    if (!s || s->ops != &dyn_ops)
        return st;
    struct dyn_store *d = s->impl;
    st.reads = atomic_load(&d->reads);
    st.writes = atomic_load(&d->writes);
    st.taken = atomic_load(&d->taken);
    st.stolen = atomic_load(&d->stolen);
    st.lost = atomic_load(&d->lost);
    st.released = atomic_load(&d->released);
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->n; i++)
        st.held += d->leases[i]->owned;
    pthread_mutex_unlock(&d->lock);
    return st;
}
