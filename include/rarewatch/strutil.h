/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Parsing and formatting of the typed values that appear in configuration
 * and on command lines. Pure functions; negative errno on bad input. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "true/false/yes/no/on/off/1/0" (case-insensitive). */
int parse_bool(const char *s, bool *out);
/* Decimal integer, optional sign, whole string; -ERANGE outside [min,max]. */
int parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);
/* Finite decimal number, whole string. */
int parse_double(const char *s, double *out);
/* Durations: "200ms", "5s", "1h30m", "2d", "750us"; a bare number is
 * seconds. Result in microseconds. */
int parse_duration_usec(const char *s, uint64_t *out);
/* Sizes: "4MiB", "512KiB", "1GiB", "10MB", "4096" (bytes). IEC units are
 * powers of 1024, SI units powers of 1000. */
int parse_size(const char *s, uint64_t *out);
/* Formats into buf (>= 32 bytes) in the shortest exact unit form. */
const char *format_duration(char *buf, size_t n, uint64_t usec);
const char *format_size(char *buf, size_t n, uint64_t bytes);

/* Split "a, b  c" on commas and/or whitespace into a NULL-terminated array
 * of newly allocated strings (caller owns; free with strv_free). Empty
 * items are dropped. */
char **strv_split(const char *s);
char **strv_free(char **v);
size_t strv_length(char *const *v);
bool strv_contains(char *const *v, const char *s);
char **strv_copy(char *const *v);
bool strv_equal(char *const *a, char *const *b);

/* Strip leading/trailing whitespace in place; returns s. */
char *strstrip(char *s);
bool startswith(const char *s, const char *prefix);
bool endswith(const char *s, const char *suffix);
/* Edit distance, capped at 255; for "did you mean" hints. */
unsigned levenshtein(const char *a, const char *b);
/* Wall clock / monotonic clock in microseconds. */
uint64_t now_realtime_usec(void);
uint64_t now_monotonic_usec(void);
/* ISO 8601 UTC with milliseconds: "2026-11-28T05:10:00.123Z" (buf >= 32). */
const char *format_iso8601_ms(char *buf, size_t n, uint64_t usec_since_epoch);
/* Exactly the JSON number grammar: "01234" (a postcode), "+1", "1." and
 * "inf" are not numbers and stay strings when text becomes JSON. */
bool is_json_number(const char *s);

/* A timestamp as records carry it: ISO 8601 / RFC 3339 ("2026-11-28T05:10:00Z",
 * "2026-11-28 05:10:00.25+01:00", a date alone) or epoch seconds or
 * milliseconds (numbers above 1e11 are taken as milliseconds). Result in
 * epoch seconds (UTC; no zone = UTC). -EINVAL when it is neither. */
int parse_timestamp(const char *s, size_t n, double *epoch);
