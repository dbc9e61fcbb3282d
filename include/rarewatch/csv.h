/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* RFC 4180 CSV reading: quoted fields with "" escapes and embedded
 * newlines, CRLF or LF line ends. Used by `rarewatch put/replay --format
 * csv` and by lookup tables. */
#include <stddef.h>
#include <stdio.h>

#include "rarewatch/macro.h"

struct csv_reader;

struct csv_reader *csv_reader_new(FILE *in);
struct csv_reader *csv_reader_free(struct csv_reader *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct csv_reader *, csv_reader_free)

/* Next row: 1 with *fields and *n valid until the next call, 0 at end of
 * input, -EBADMSG for an unterminated quote (the rest is unusable),
 * -ENOMEM. Blank lines are skipped. */
int csv_read_row(struct csv_reader *r, char ***fields, size_t *n);
/* Line number (1-based) where the last row started. */
unsigned long long csv_reader_line(const struct csv_reader *r);

struct buf;
/* Append the row as a JSON object keyed by names (fields past the last name
 * are ignored, missing ones omitted). Cells in JSON number grammar become
 * numbers (so detectors can use them); everything else, "0123" included,
 * stays a string. */
int csv_row_to_json(struct buf *b, char *const *names, size_t n_names, char *const *fields,
                    size_t n_fields);

/* Parse one complete CSV text held in memory (fuzzing, tests). Calls fn
 * per row; stops at the first error. */
int csv_parse_buffer(const char *text, size_t len,
                     int (*fn)(char **fields, size_t n, void *ud), void *ud);
