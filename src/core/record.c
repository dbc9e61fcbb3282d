/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/record.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/json_out.h"
#include "rarewatch/strutil.h"

const char *rw_stage_name(enum rw_stage s)
{
    switch (s) {
    case RW_STAGE_DECODE: return "decode";
    case RW_STAGE_PARSE: return "parse";
    case RW_STAGE_TRANSFORM: return "transform";
    case RW_STAGE_DETECT: return "detect";
    case RW_STAGE_SINK: return "sink";
    case RW_STAGE_OVERSIZE: return "oversize";
    }
    return "?";
}

void rw_output_reset(struct rw_output *o)
{
    buf_reset(&o->lines);
    o->n = 0;
    o->n_dl = 0;
}

void rw_output_free(struct rw_output *o)
{
    buf_free(&o->lines);
    free(o->meta);
    free(o->dl);
    memset(o, 0, sizeof(*o));
}

int rw_output_deadletter(struct rw_output *o, int32_t input, enum rw_stage stage,
                         const char *component, const char *fmt, ...)
{
    if (o->n_dl == o->cap_dl) {
        size_t cap = o->cap_dl ? o->cap_dl * 2 : 16;
        struct rw_deadletter_entry *n = realloc(o->dl, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        o->dl = n;
        o->cap_dl = cap;
    }
    struct rw_deadletter_entry *e = &o->dl[o->n_dl++];
    e->input = input;
    e->stage = stage;
    snprintf(e->component, sizeof(e->component), "%s", component ? component : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->reason, sizeof(e->reason), fmt, ap);
    va_end(ap);
    return 0;
}

struct rw_line_meta *rw_output_begin_line(struct rw_output *o, int32_t input)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        struct rw_line_meta *n = realloc(o->meta, cap * sizeof(*n));
        if (!n)
            return NULL;
        o->meta = n;
        o->cap = cap;
    }
    struct rw_line_meta *m = &o->meta[o->n++];
    *m = (struct rw_line_meta){ .off = o->lines.len, .input = input, .event_time = NAN };
    return m;
}

void rw_output_end_line(struct rw_output *o, struct rw_line_meta *m)
{
    m->len = o->lines.len - m->off;
}

int rw_provenance_append_json(struct buf *b, const struct rw_provenance *p)
{
    int r = rw_provenance_append_head_json(b, p);
    return r ?: rw_provenance_append_tail_json(b, p);
}

int rw_provenance_append_head_json(struct buf *b, const struct rw_provenance *p)
{
    int r = buf_puts(b, "\"_kinesis\":{\"stream\":");
    r = r ?: buf_put_json_string(b, p->stream.p ? p->stream.p : "", p->stream.len);
    r = r ?: buf_puts(b, ",\"shard_id\":");
    return r ?: buf_put_json_string(b, p->shard_id.p ? p->shard_id.p : "", p->shard_id.len);
}

/* plain: known to need no escape (kinesis_records_parse checked it). */
static inline int put_str(struct buf *b, const struct rw_str *s, bool plain)
{
    if (plain)
        return buf_put_json_plain(b, s->p, s->len);
    return buf_put_json_string(b, s->p ? s->p : "", s->len);
}

/* The tail's member names, for both ways of writing it. */
#define K_SEQ ",\"sequence_number\":"
#define K_SUB ",\"sub_sequence_number\":"
#define K_PK ",\"partition_key\":"
#define K_AT ",\"arrival_time\":"

int rw_provenance_append_tail_json(struct buf *b, const struct rw_provenance *p)
{
    /* Rounded to the microsecond, half away from zero, as llround. */
    double y = p->arrival_time > 0 ? p->arrival_time * 1e6 : 0;
    uint64_t usec = y > 0 ? (y < 0x1p63 ? (uint64_t)round_nonneg_i64(y) : UINT64_MAX) : 0;
    /* Every output line ends with this: plain fields, a one-digit
     * sub-sequence number and a four-digit year (the common case) are
     * written under one room check instead of one per piece. */
    if (_likely_(p->sequence_number_plain && p->partition_key_plain && p->sub_sequence_number < 10 &&
                 usec < UINT64_C(253402300800000000))) {
        size_t sl = p->sequence_number.len, pl = p->partition_key.len;
        /* The names, five quotes, one digit, 24 characters of time, "}. */
        size_t n = sizeof(K_SEQ K_SUB K_PK K_AT) - 1 + sl + pl + 5 + 1 + 24 + 2;
        int r = buf_reserve(b, n);
        if (r < 0)
            return r;
        char *o = b->data + b->len;
#define PUT(src, len) (memcpy(o, (src), (len)), o += (len))
        PUT(K_SEQ "\"", sizeof(K_SEQ));
        PUT(p->sequence_number.p, sl);
        PUT("\"" K_SUB, sizeof(K_SUB));
        *o++ = (char)('0' + p->sub_sequence_number);
        PUT(K_PK "\"", sizeof(K_PK));
        PUT(p->partition_key.p, pl);
        PUT("\"" K_AT "\"", sizeof(K_AT) + 1);
#undef PUT
        /* 24 characters and its NUL, overwritten below. */
        format_iso8601_ms(o, 25, usec);
        o += 24;
        *o++ = '"';
        *o++ = '}';
        assert((size_t)(o - b->data) - b->len == n);
        *o = 0;
        b->len = (size_t)(o - b->data);
        return 0;
    }
    char ts[40];
    format_iso8601_ms(ts, sizeof(ts), usec);
    int r = buf_puts(b, K_SEQ);
    r = r ?: put_str(b, &p->sequence_number, p->sequence_number_plain);
    r = r ?: buf_puts(b, K_SUB);
    r = r ?: buf_put_u64(b, p->sub_sequence_number);
    r = r ?: buf_puts(b, K_PK);
    r = r ?: put_str(b, &p->partition_key, p->partition_key_plain);
    r = r ?: buf_puts(b, K_AT "\"");
    r = r ?: buf_puts(b, ts);
    r = r ?: buf_puts(b, "\"}");
    return r;
}

int rw_value_timestamp(const struct rw_value *v, double *epoch)
{
    if (v->type == RW_NUM && isfinite(v->num)) {
        *epoch = fabs(v->num) > 1e11 ? v->num / 1000 : v->num;
        return 0;
    }
    if (v->type == RW_STR)
        return parse_timestamp(v->s.p, v->s.len, epoch);
    return -EINVAL;
}
