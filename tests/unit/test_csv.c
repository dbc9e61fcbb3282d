/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/csv.h"

#include <errno.h>

#include "tap.h"

struct rows {
    char out[1024];
    size_t n;
};

static int collect(char **f, size_t n, void *ud)
{
    struct rows *r = ud;
    size_t l = strlen(r->out);
    snprintf(r->out + l, sizeof(r->out) - l, "%s", r->n ? "\n" : "");
    for (size_t i = 0; i < n; i++) {
        l = strlen(r->out);
        snprintf(r->out + l, sizeof(r->out) - l, "%s<%s>", i ? "|" : "", f[i]);
    }
    r->n++;
    return 0;
}

static struct rows parse(const char *s, int *ret)
{
    struct rows r = { "", 0 };
    *ret = csv_parse_buffer(s, strlen(s), collect, &r);
    return r;
}

TEST(rfc4180)
{
    int ret;
    struct rows r = parse("a,b,c\n1,\"two, with comma\",3\r\n\"x\"\"y\",,\"multi\nline\"\n", &ret);
    CHECK_INT(ret, 0);
    CHECK_UINT(r.n, 3);
    CHECK_STR(r.out, "<a>|<b>|<c>\n<1>|<two, with comma>|<3>\n<x\"y>|<>|<multi\nline>");
    r = parse("a\n\n\nb\n", &ret);
    CHECK_STR(r.out, "<a>\n<b>");
    r = parse("last,row,no,newline", &ret);
    CHECK_STR(r.out, "<last>|<row>|<no>|<newline>");
    r = parse(",\n", &ret);
    CHECK_STR(r.out, "<>|<>");
    r = parse("é,ü\n", &ret);
    CHECK_STR(r.out, "<é>|<ü>");
}

TEST(unterminated_quote_is_an_error)
{
    int ret;
    struct rows r = parse("a,b\n\"open,2\n", &ret);
    CHECK_INT(ret, -EBADMSG);
    CHECK_UINT(r.n, 1);
}

TEST(line_numbers)
{
    const char *text = "h1,h2\n\"a\nb\",c\nd,e\n";
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    struct csv_reader *r = csv_reader_new(f);
    char **fl;
    size_t n;
    CHECK_INT(csv_read_row(r, &fl, &n), 1);
    CHECK_UINT(csv_reader_line(r), 1);
    CHECK_INT(csv_read_row(r, &fl, &n), 1);
    CHECK_UINT(csv_reader_line(r), 2);
    CHECK_INT(csv_read_row(r, &fl, &n), 1);
    CHECK_UINT(csv_reader_line(r), 4);
    CHECK_STR(fl[0], "d");
    CHECK_INT(csv_read_row(r, &fl, &n), 0);
    csv_reader_free(r);
    fclose(f);
}

TAP_MAIN
