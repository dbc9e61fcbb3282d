/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/csv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rarewatch/buf.h"
#include "rarewatch/strutil.h"

struct csv_reader {
    FILE *in;
    const char *mem;
    size_t mem_len, mem_pos;
    struct buf field_data;  /* all fields of the row, NUL-separated */
    size_t *offsets;
    char **fields;
    size_t cap;
    unsigned long long line, row_line;
};

static int next_char(struct csv_reader *r)
{
    if (r->in)
        return getc_unlocked(r->in);
    return r->mem_pos < r->mem_len ? (unsigned char)r->mem[r->mem_pos++] : EOF;
}

struct csv_reader *csv_reader_new(FILE *in)
{
    struct csv_reader *r = calloc(1, sizeof(*r));
    if (r)
        r->in = in;
    return r;
}

struct csv_reader *csv_reader_free(struct csv_reader *r)
{
    if (r) {
        buf_free(&r->field_data);
        free(r->offsets);
        free(r->fields);
        free(r);
    }
    return NULL;
}

unsigned long long csv_reader_line(const struct csv_reader *r) { return r->row_line; }

static int end_field(struct csv_reader *r, size_t *n, size_t start)
{
    if (*n + 1 >= r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        size_t *o = realloc(r->offsets, cap * sizeof(size_t));
        if (!o)
            return -ENOMEM;
        r->offsets = o;
        char **f = realloc(r->fields, (cap + 1) * sizeof(char *));
        if (!f)
            return -ENOMEM;
        r->fields = f;
        r->cap = cap;
    }
    r->offsets[(*n)++] = start;
    return buf_putc(&r->field_data, 0);
}

int csv_read_row(struct csv_reader *r, char ***fields, size_t *n)
{
    for (;;) {
        buf_reset(&r->field_data);
        *n = 0;
        int c = next_char(r);
        if (c == EOF)
            return 0;
        r->line++;
        r->row_line = r->line;
        if (c == '\n')
            continue; /* blank line */
        if (c == '\r') {
            int d = next_char(r);
            if (d == '\n' || d == EOF)
                continue;
            c = d;
        }
        size_t start = 0;
        bool quoted = false, in_quotes = false;
        int rr;
        for (;;) {
            if (in_quotes) {
                if (c == EOF)
                    return -EBADMSG;
                if (c == '"') {
                    int d = next_char(r);
                    if (d == '"') {
                        if ((rr = buf_putc(&r->field_data, '"')) < 0)
                            return rr;
                    } else {
                        in_quotes = false;
                        c = d;
                        continue;
                    }
                } else {
                    if (c == '\n')
                        r->line++;
                    if ((rr = buf_putc(&r->field_data, (char)c)) < 0)
                        return rr;
                }
                c = next_char(r);
                continue;
            }
            if (c == '"' && !quoted && r->field_data.len == start) {
                quoted = in_quotes = true;
            } else if (c == ',') {
                if ((rr = end_field(r, n, start)) < 0)
                    return rr;
                start = r->field_data.len;
                quoted = false;
            } else if (c == '\n' || c == EOF) {
                break;
            } else if (c == '\r') {
                int d = next_char(r);
                if (d == '\n' || d == EOF)
                    break;
                if ((rr = buf_putc(&r->field_data, '\r')) < 0)
                    return rr;
                c = d;
                continue;
            } else if ((rr = buf_putc(&r->field_data, (char)c)) < 0)
                return rr;
            c = next_char(r);
        }
        if ((rr = end_field(r, n, start)) < 0)
            return rr;
        for (size_t i = 0; i < *n; i++)
            r->fields[i] = r->field_data.data + r->offsets[i];
        r->fields[*n] = NULL;
        *fields = r->fields;
        return 1;
    }
}

int csv_parse_buffer(const char *text, size_t len, int (*fn)(char **fields, size_t n, void *ud),
                     void *ud)
{
    struct csv_reader r = { .mem = text, .mem_len = len };
    char **f;
    size_t n;
    int ret;
    while ((ret = csv_read_row(&r, &f, &n)) > 0)
        if ((ret = fn(f, n, ud)) < 0)
            break;
    buf_free(&r.field_data);
    free(r.offsets);
    free(r.fields);
    return ret;
}

int csv_row_to_json(struct buf *b, char *const *names, size_t n_names, char *const *fields,
                    size_t n_fields)
{
    int r = buf_putc(b, '{');
    size_t n = MIN(n_names, n_fields);
    for (size_t i = 0; i < n && r >= 0; i++) {
        if (i)
            r = buf_putc(b, ',');
        r = r ?: buf_put_json_string(b, names[i], strlen(names[i]));
        r = r ?: buf_putc(b, ':');
        if (r >= 0)
            r = is_json_number(fields[i]) ? buf_puts(b, fields[i])
                                          : buf_put_json_string(b, fields[i], strlen(fields[i]));
    }
    return r ?: buf_putc(b, '}');
}
