/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CSV reader against arbitrary text: `rarewatch replay --format csv`
 * and `rarewatch put --format csv` read files an operator hands them, and
 * lookup tables are CSV too. Every input either parses or stops with an
 * error; each row parsed is turned into a JSON object as replay does (the
 * first row naming the columns), and that object must scan as JSON.
 */
#include <stdlib.h>
#include <string.h>

#include "rarewatch/buf.h"
#include "rarewatch/csv.h"
#include "rarewatch/json_scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ctx {
    char **names;
    size_t n_names;
    struct json_doc doc;
    struct arena arena;
};

static char **copy_row(char **fields, size_t n)
{
    char **c = calloc(n + 1, sizeof(char *));
    if (!c)
        abort();
    for (size_t i = 0; i < n; i++)
        if (!(c[i] = strdup(fields[i])))
            abort();
    return c;
}

static int on_row(char **fields, size_t n, void *ud)
{
    struct ctx *c = ud;
    if (!c->names) {
        c->names = copy_row(fields, n);
        c->n_names = n;
        return 0;
    }
    _cleanup_buf_ struct buf b = BUF_INIT;
    if (csv_row_to_json(&b, c->names, c->n_names, fields, n) < 0)
        abort();
    arena_reset(&c->arena);
    /* What replay hands the pipeline must be a JSON object. */
    if (json_scan(&c->doc, b.data, b.len) < 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ctx c;
    static bool init;
    if (!init) {
        json_doc_init(&c.doc, &c.arena);
        init = true;
    }
    int r = csv_parse_buffer((const char *)data, size, on_row, &c);
    (void)r;
    for (size_t i = 0; c.names && i < c.n_names; i++)
        free(c.names[i]);
    free(c.names);
    c.names = NULL;
    c.n_names = 0;
    return 0;
}
