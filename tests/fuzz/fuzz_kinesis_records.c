/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GetRecords bodies come from the network: the envelope scanner must never
 * crash or over-read, and what it accepts must be self-consistent: every
 * Data decodes to bytes whose canonical encoding is the original text, and
 * the counts match the arrays in the document.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/base64.h"
#include "rarewatch/buf.h"
#include "rarewatch/kinesis_records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct kinesis_records kr;
static struct arena arena;
static bool ready;

static size_t count(const struct json_doc *d, uint32_t c)
{
    size_t n = 0;
    for (uint32_t i = json_first_child(d, c); i != JSON_NONE; i = json_next_sibling(d, c, i))
        n++;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready) {
        kinesis_records_init(&kr);
        ready = true;
    }
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = 0;
    int r = kinesis_records_parse(&kr, s, size, &arena);
    if (r != 0 && r != -EINVAL && r != -EBADMSG)
        abort();
    if (r == 0) {
        const struct json_doc *d = &kr.doc;
        uint32_t recs = json_obj_get(d, 0, "Records", 7);
        if (recs == JSON_NONE || count(d, recs) != kr.n_records)
            abort();
        struct buf b = BUF_INIT;
        size_t i = 0;
        for (uint32_t e = json_first_child(d, recs); e != JSON_NONE; e = json_next_sibling(d, recs, e), i++) {
            const struct kinesis_record *rec = &kr.records[i];
            if (rec->data[rec->data_len] != 0 || !rec->partition_key.p || !rec->sequence_number.p)
                abort();
            uint32_t dn = json_obj_get(d, e, "Data", 4);
            if (dn == JSON_NONE)
                abort();
            buf_reset(&b);
            if (buf_put_base64(&b, rec->data, rec->data_len) < 0)
                abort();
            const struct json_node *nd = &d->nodes[dn];
            if (b.len != nd->end - nd->start - 2 || memcmp(b.data, d->text + nd->start + 1, b.len) != 0)
                abort();
        }
        buf_free(&b);
        for (size_t c = 0; c < kr.n_child_shards; c++)
            for (uint32_t p = 0; p < kr.child_shards[c].n_parent_shards; p++)
                if (!kr.child_shards[c].parent_shards[p].p)
                    abort();
    }
    arena_reset(&arena);
    free(s);
    return 0;
}
