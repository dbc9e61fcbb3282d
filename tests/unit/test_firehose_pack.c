/* SPDX-License-Identifier: Apache-2.0 */
/* Firehose packing: lines -> records -> PutRecordBatch requests within the
 * service limits, forward modes, packing and oversize handling. */
#include <stdlib.h>
#include <string.h>

#include "rarewatch/firehose_pack.h"
#include "tap.h"

static char *line_of(size_t len, char c)
{
    char *p = malloc(len + 1);
    memset(p, c, len);
    p[len - 1] = '\n';
    p[len] = 0;
    return p;
}

/* Every request of the packer, as record counts; checks the limits. */
static size_t requests(const struct fh_packer *p, size_t *counts, size_t max)
{
    size_t n = 0;
    for (size_t first = 0; first < p->n_recs && n < max;) {
        size_t bytes;
        size_t k = fh_packer_next_request(p, first, &bytes);
        CHECK(k >= 1);
        CHECK(k <= FH_MAX_BATCH_RECORDS);
        CHECK(bytes <= FH_MAX_BATCH_BYTES || k == 1);
        counts[n++] = k;
        first += k;
    }
    return n;
}

TEST(defaults)
{
    struct fh_limits l;
    fh_limits_default(&l);
    CHECK_UINT(l.max_batch_records, 500);
    CHECK_UINT(l.max_batch_bytes, 4u << 20);
    CHECK_UINT(l.max_record_bytes, 1000u * 1024);
    CHECK(!l.pack);
}

TEST(one_line_one_record_500_per_request)
{
    struct fh_limits l;
    fh_limits_default(&l);
    struct fh_packer p;
    fh_packer_init(&p, &l);
    static const char line[] = "{\"a\":1}\n";
    for (int i = 0; i < 1201; i++)
        CHECK_INT(fh_packer_add(&p, line, sizeof(line) - 1, (uint32_t)i), 0);
    CHECK_UINT(p.n_recs, 1201);
    CHECK_UINT(p.recs[7].n, 1);
    size_t c[8];
    size_t n = requests(&p, c, 8);
    CHECK_UINT(n, 3);
    CHECK_UINT(c[0], 500);
    CHECK_UINT(c[1], 500);
    CHECK_UINT(c[2], 201);
    CHECK_UINT(p.lines[1200].owner, 1200);
    fh_packer_free(&p);
}

TEST(four_mib_per_request)
{
    struct fh_limits l;
    fh_limits_default(&l);
    struct fh_packer p;
    fh_packer_init(&p, &l);
    char *big = line_of(900 * 1024, 'x'); /* under the record limit */
    for (int i = 0; i < 10; i++)
        CHECK_INT(fh_packer_add(&p, big, 900 * 1024, 0), 0);
    size_t c[8];
    size_t n = requests(&p, c, 8);
    /* 4 MiB / 900 KiB = 4.55: four records per request. */
    CHECK_UINT(n, 3);
    CHECK_UINT(c[0], 4);
    CHECK_UINT(c[1], 4);
    CHECK_UINT(c[2], 2);
    free(big);
    fh_packer_free(&p);
}

TEST(record_limit_exact_and_over)
{
    struct fh_limits l;
    fh_limits_default(&l);
    struct fh_packer p;
    fh_packer_init(&p, &l);
    char *at = line_of(FH_MAX_RECORD_BYTES, 'y');
    char *over = line_of(FH_MAX_RECORD_BYTES + 1, 'z');
    CHECK_INT(fh_packer_add(&p, at, FH_MAX_RECORD_BYTES, 0), 0);
    CHECK_INT(fh_packer_add(&p, over, FH_MAX_RECORD_BYTES + 1, 1), -E2BIG);
    CHECK_UINT(p.n_recs, 1);
    CHECK_UINT(p.n_lines, 1);
    free(at);
    free(over);
    fh_packer_free(&p);
}

TEST(pack_to_pack_size_whole_lines)
{
    struct fh_limits l;
    fh_limits_default(&l);
    l.pack = true;
    l.pack_size = 5000;
    struct fh_packer p;
    fh_packer_init(&p, &l);
    char *ln = line_of(300, 'a');
    for (int i = 0; i < 100; i++)
        CHECK_INT(fh_packer_add(&p, ln, 300, 0), 0);
    /* 16 lines of 300 = 4800 <= 5000; the 17th would make 5100. */
    CHECK_UINT(p.recs[0].n, 16);
    CHECK_UINT(p.recs[0].bytes, 4800);
    CHECK_UINT(p.n_recs, 7); /* 6 * 16 + 4 */
    CHECK_UINT(p.recs[6].n, 4);
    size_t total = 0;
    for (size_t i = 0; i < p.n_recs; i++) {
        CHECK(p.recs[i].bytes <= 5000);
        total += p.recs[i].n;
        /* Records are consecutive ranges of lines. */
        if (i)
            CHECK_UINT(p.recs[i].first, p.recs[i - 1].first + p.recs[i - 1].n);
    }
    CHECK_UINT(total, 100);
    free(ln);
    fh_packer_free(&p);
}

TEST(pack_larger_line_than_pack_size_gets_own_record)
{
    struct fh_limits l;
    fh_limits_default(&l);
    l.pack = true;
    l.pack_size = 2000;
    struct fh_packer p;
    fh_packer_init(&p, &l);
    char *small = line_of(100, 's'), *mid = line_of(3000, 'm');
    CHECK_INT(fh_packer_add(&p, small, 100, 0), 0);
    CHECK_INT(fh_packer_add(&p, mid, 3000, 0), 0); /* over pack_size, under the record limit */
    CHECK_INT(fh_packer_add(&p, small, 100, 0), 0);
    CHECK_UINT(p.n_recs, 3);
    CHECK_UINT(p.recs[1].bytes, 3000);
    free(small);
    free(mid);
    fh_packer_free(&p);
}

TEST(packed_lines_split_at_record_limit)
{
    /* pack_size beyond the record limit is clamped: packed lines that
     * would exceed 1,000 KiB go to the next record instead. */
    struct fh_limits l;
    fh_limits_default(&l);
    l.pack = true;
    l.pack_size = 4u << 20;
    struct fh_packer p;
    fh_packer_init(&p, &l);
    CHECK_UINT(p.lim.pack_size, FH_MAX_RECORD_BYTES);
    char *ln = line_of(400 * 1024, 'q');
    for (int i = 0; i < 5; i++)
        CHECK_INT(fh_packer_add(&p, ln, 400 * 1024, 0), 0);
    CHECK_UINT(p.n_recs, 3);
    CHECK_UINT(p.recs[0].n, 2);
    CHECK_UINT(p.recs[1].n, 2);
    CHECK_UINT(p.recs[2].n, 1);
    for (size_t i = 0; i < p.n_recs; i++)
        CHECK(p.recs[i].bytes <= FH_MAX_RECORD_BYTES);
    free(ln);
    fh_packer_free(&p);
}

TEST(lower_limits_and_refit_failed)
{
    struct fh_limits l = { .max_batch_records = 3, .max_batch_bytes = 100, .max_record_bytes = 60 };
    struct fh_packer p;
    fh_packer_init(&p, &l);
    char *a = line_of(40, 'a');
    for (int i = 0; i < 7; i++)
        CHECK_INT(fh_packer_add(&p, a, 40, 0), 0);
    size_t c[8];
    size_t n = requests(&p, c, 8);
    CHECK_UINT(n, 4); /* 100 bytes: two 40-byte records per request */
    CHECK_UINT(c[0], 2);
    /* Re-sending failed entries: only the listed ones, within limits. */
    size_t idx[] = { 1, 4, 6 };
    size_t bytes;
    CHECK_UINT(fh_request_fit(&p, idx, 3, &bytes), 2);
    CHECK_UINT(bytes, 80);
    char *b = line_of(61, 'b');
    CHECK_INT(fh_packer_add(&p, b, 61, 0), -E2BIG);
    free(b);
    fh_packer_reset(&p);
    CHECK_UINT(p.n_recs, 0);
    CHECK(p.cap_recs > 0); /* reset keeps the arrays */
    free(a);
    fh_packer_free(&p);
}

TEST(forward_modes)
{
    struct rw_line_meta plain = { .is_anomaly = false }, anom = { .is_anomaly = true };
    CHECK(fh_forward_line(FH_FORWARD_ALL, &plain));
    CHECK(fh_forward_line(FH_FORWARD_ALL, &anom));
    CHECK(!fh_forward_line(FH_FORWARD_ANOMALIES, &plain));
    CHECK(fh_forward_line(FH_FORWARD_ANOMALIES, &anom));
    CHECK(!fh_forward_line(FH_FORWARD_NONE, &plain));
    CHECK(!fh_forward_line(FH_FORWARD_NONE, &anom));
}

TAP_MAIN
