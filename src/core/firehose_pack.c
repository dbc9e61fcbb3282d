/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/firehose_pack.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void fh_limits_default(struct fh_limits *l)
{
    *l = (struct fh_limits){
        .max_batch_records = FH_MAX_BATCH_RECORDS,
        .max_batch_bytes = FH_MAX_BATCH_BYTES,
        .max_record_bytes = FH_MAX_RECORD_BYTES,
        .pack = false,
        .pack_size = FH_MAX_RECORD_BYTES,
    };
}

void fh_packer_init(struct fh_packer *p, const struct fh_limits *lim)
{
    memset(p, 0, sizeof(*p));
    p->lim = *lim;
    if (!p->lim.max_batch_records || p->lim.max_batch_records > FH_MAX_BATCH_RECORDS)
        p->lim.max_batch_records = FH_MAX_BATCH_RECORDS;
    if (!p->lim.max_batch_bytes || p->lim.max_batch_bytes > FH_MAX_BATCH_BYTES)
        p->lim.max_batch_bytes = FH_MAX_BATCH_BYTES;
    if (!p->lim.max_record_bytes || p->lim.max_record_bytes > FH_MAX_RECORD_BYTES)
        p->lim.max_record_bytes = FH_MAX_RECORD_BYTES;
    /* A record must also fit a request on its own. */
    p->lim.max_record_bytes = MIN(p->lim.max_record_bytes, p->lim.max_batch_bytes);
    if (!p->lim.pack_size || p->lim.pack_size > p->lim.max_record_bytes)
        p->lim.pack_size = p->lim.max_record_bytes;
}

void fh_packer_reset(struct fh_packer *p)
{
    p->n_lines = 0;
    p->n_recs = 0;
    p->bytes = 0;
}

void fh_packer_free(struct fh_packer *p)
{
    free(p->lines);
    free(p->recs);
    p->lines = NULL;
    p->recs = NULL;
    p->cap_lines = p->cap_recs = 0;
    fh_packer_reset(p);
}

static int grow(void **v, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t nc = MAX(need, *cap ? *cap * 2 : 256);
    void *n = realloc(*v, nc * size);
    if (!n)
        return -ENOMEM;
    *v = n;
    *cap = nc;
    return 0;
}

int fh_packer_add(struct fh_packer *p, const char *line, size_t len, uint32_t owner)
{
    if (len > p->lim.max_record_bytes)
        return -E2BIG;
    if (grow((void **)&p->lines, &p->cap_lines, p->n_lines + 1, sizeof(*p->lines)) < 0 ||
        grow((void **)&p->recs, &p->cap_recs, p->n_recs + 1, sizeof(*p->recs)) < 0)
        return -ENOMEM;
    p->lines[p->n_lines] = (struct fh_line){ line, len, owner };
    struct fh_record *last = p->n_recs ? &p->recs[p->n_recs - 1] : NULL;
    /* Join the open record only if the lines are adjacent in the packer
     * (always, the packer appends) and the record stays within pack_size. */
    if (p->lim.pack && last && last->bytes + len <= p->lim.pack_size)
        last->n++, last->bytes += len;
    else
        p->recs[p->n_recs++] = (struct fh_record){ p->n_lines, 1, len };
    p->n_lines++;
    p->bytes += len;
    return 0;
}

size_t fh_packer_next_request(const struct fh_packer *p, size_t first, size_t *bytes)
{
    size_t n = 0, b = 0;
    for (size_t i = first; i < p->n_recs && n < p->lim.max_batch_records; i++) {
        if (n && b + p->recs[i].bytes > p->lim.max_batch_bytes)
            break;
        b += p->recs[i].bytes;
        n++;
    }
    if (bytes)
        *bytes = b;
    return n;
}

size_t fh_request_fit(const struct fh_packer *p, const size_t *idx, size_t count, size_t *bytes)
{
    size_t n = 0, b = 0;
    for (size_t i = 0; i < count && n < p->lim.max_batch_records; i++) {
        size_t rb = p->recs[idx[i]].bytes;
        if (n && b + rb > p->lim.max_batch_bytes)
            break;
        b += rb;
        n++;
    }
    if (bytes)
        *bytes = b;
    return n;
}
