/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/macro.h"
#include "rarewatch/strutil.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "tap.h"

TEST(mem_eq_every_length_and_position)
{
    /* Equal ranges at every length, and a difference at every position of
     * every length (the two-word and four-byte paths overlap). */
    char a[80], b[80];
    for (size_t i = 0; i < sizeof(a); i++)
        a[i] = b[i] = (char)('a' + i % 26);
    for (size_t n = 0; n <= 70; n++) {
        CHECK(mem_eq(a, b, n));
        CHECK(mem_eq(a + 3, b + 3, n));
        for (size_t k = 0; k < n; k++) {
            b[k] ^= 0x20;
            CHECK(!mem_eq(a, b, n));
            b[k] ^= 0x20;
        }
        /* Bytes past n do not count. */
        b[n] ^= 0x20;
        CHECK(mem_eq(a, b, n));
        b[n] ^= 0x20;
    }
}

TEST(durations)
{
    uint64_t u;
    CHECK_INT(parse_duration_usec("200ms", &u), 0);
    CHECK_UINT(u, 200000);
    CHECK_INT(parse_duration_usec("5s", &u), 0);
    CHECK_UINT(u, 5000000);
    CHECK_INT(parse_duration_usec("1h", &u), 0);
    CHECK_UINT(u, 3600000000ULL);
    CHECK_INT(parse_duration_usec("1h30m", &u), 0);
    CHECK_UINT(u, 5400000000ULL);
    CHECK_INT(parse_duration_usec("1.5s", &u), 0);
    CHECK_UINT(u, 1500000);
    CHECK_INT(parse_duration_usec("2d", &u), 0);
    CHECK_UINT(u, 172800000000ULL);
    CHECK_INT(parse_duration_usec("750us", &u), 0);
    CHECK_UINT(u, 750);
    CHECK_INT(parse_duration_usec("7", &u), 0); /* bare number = seconds */
    CHECK_UINT(u, 7000000);
    CHECK_INT(parse_duration_usec("5 min", &u), 0);
    CHECK_UINT(u, 300000000);
    CHECK_INT(parse_duration_usec("", &u), -EINVAL);
    CHECK_INT(parse_duration_usec("5 parsecs", &u), -EINVAL);
    CHECK_INT(parse_duration_usec("-5s", &u), -EINVAL);
    CHECK_INT(parse_duration_usec("5s banana", &u), -EINVAL);
    CHECK_INT(parse_duration_usec("ms", &u), -EINVAL);
    CHECK_INT(parse_duration_usec("1 2", &u), -EINVAL); /* a unitless term only alone */
}

TEST(sizes)
{
    uint64_t u;
    CHECK_INT(parse_size("4MiB", &u), 0);
    CHECK_UINT(u, 4 * 1024 * 1024);
    CHECK_INT(parse_size("512KiB", &u), 0);
    CHECK_UINT(u, 512 * 1024);
    CHECK_INT(parse_size("10MB", &u), 0);
    CHECK_UINT(u, 10000000);
    CHECK_INT(parse_size("4096", &u), 0);
    CHECK_UINT(u, 4096);
    CHECK_INT(parse_size("1G", &u), 0);
    CHECK_UINT(u, 1073741824ULL);
    CHECK_INT(parse_size("4 MiB", &u), 0);
    CHECK_INT(parse_size("4XB", &u), -EINVAL);
    CHECK_INT(parse_size("4MiB 2KiB", &u), -EINVAL);
}

TEST(formatting_round_trips)
{
    char b[32];
    CHECK_STR(format_duration(b, sizeof(b), 200000), "200ms");
    CHECK_STR(format_duration(b, sizeof(b), 3600000000ULL), "1h");
    CHECK_STR(format_duration(b, sizeof(b), 1500000), "1500ms");
    CHECK_STR(format_duration(b, sizeof(b), 0), "0");
    CHECK_STR(format_size(b, sizeof(b), 4 * 1024 * 1024), "4MiB");
    CHECK_STR(format_size(b, sizeof(b), 1000), "1000");
    CHECK_STR(format_iso8601_ms(b, sizeof(b), 1764306600123456ULL), "2025-11-28T05:10:00.123Z");
}

/* The arithmetic civil date against gmtime_r + snprintf: days across
 * leap years and centuries (1970..2400), every millisecond digit; every
 * other call in the same second as the one before (the per-thread copy of
 * the text up to the seconds), with another millisecond. */
TEST(iso8601_is_gmtime)
{
    uint64_t x = 88172645463325252ull, prev = 0;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t usec = i < 1000 ? (uint64_t)i * 86400 * 1000000ull * 146 + (uint64_t)i * 999
                                 : x % (13569465600ull * 1000000ull);
        if (i % 2)
            usec = prev - prev % 1000000 + x % 1000000;
        prev = usec;
        time_t t = (time_t)(usec / 1000000);
        struct tm tm;
        gmtime_r(&t, &tm);
        char want[96], got[40];
        snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(usec % 1000000 / 1000));
        format_iso8601_ms(got, sizeof(got), usec);
        if (strcmp(got, want) != 0) {
            TAP_FAIL_("%s formatted as %s", want, got);
            break;
        }
    }
}

TEST(bools_and_ints)
{
    bool v;
    CHECK_INT(parse_bool("yes", &v), 0);
    CHECK(v);
    CHECK_INT(parse_bool("OFF", &v), 0);
    CHECK(!v);
    CHECK_INT(parse_bool("maybe", &v), -EINVAL);
    int64_t i;
    CHECK_INT(parse_int64("42", 0, 100, &i), 0);
    CHECK_INT(i, 42);
    CHECK_INT(parse_int64("101", 0, 100, &i), -ERANGE);
    CHECK_INT(parse_int64("4x", 0, 100, &i), -EINVAL);
    CHECK_INT(parse_int64(" 4", 0, 100, &i), -EINVAL);
    CHECK_INT(parse_int64("99999999999999999999", INT64_MIN, INT64_MAX, &i), -ERANGE);
    double d;
    CHECK_INT(parse_double("1e3", &d), 0);
    CHECK_NEAR(d, 1000, 0);
    CHECK_INT(parse_double("nan", &d), -EINVAL);
}

TEST(lists)
{
    char **v = strv_split(" a, b  c,,d ");
    CHECK_UINT(strv_length(v), 4);
    CHECK_STR(v[0], "a");
    CHECK_STR(v[3], "d");
    CHECK(strv_contains(v, "c"));
    CHECK(!strv_contains(v, "e"));
    char **c = strv_copy(v);
    CHECK(strv_equal(v, c));
    strv_free(c);
    strv_free(v);
    v = strv_split("   ");
    CHECK_UINT(strv_length(v), 0);
    strv_free(v);
}

TEST(edit_distance)
{
    CHECK_UINT(levenshtein("level", "levl"), 1);
    CHECK_UINT(levenshtein("kinesis", "kinesys"), 1);
    CHECK_UINT(levenshtein("", "abc"), 3);
    CHECK_UINT(levenshtein("same", "same"), 0);
}

TEST(timestamps)
{
    double t;
    CHECK_INT(parse_timestamp("2026-11-28T05:10:00Z", 20, &t), 0);
    CHECK_NEAR(t, 1795842600, 0);
    CHECK_INT(parse_timestamp("2026-11-28 05:10:00.25+01:00", 28, &t), 0);
    CHECK_NEAR(t, 1795842600 - 3600 + 0.25, 1e-6);
    CHECK_INT(parse_timestamp("2014-04-01 00:00:00", 19, &t), 0);
    CHECK_NEAR(t, 1396310400, 0);
    CHECK_INT(parse_timestamp("2026-11-28", 10, &t), 0);
    CHECK_NEAR(t, 1795824000, 0);
    CHECK_INT(parse_timestamp("1795842600", 10, &t), 0);
    CHECK_NEAR(t, 1795842600, 0);
    CHECK_INT(parse_timestamp("1795842600123", 13, &t), 0);
    CHECK_NEAR(t, 1795842600.123, 1e-3);
    CHECK_INT(parse_timestamp("yesterday", 9, &t), -EINVAL);
    CHECK_INT(parse_timestamp("2026-13-01", 10, &t), -EINVAL);
    CHECK_INT(parse_timestamp("2026-11-28T25:00", 16, &t), -EINVAL);
    CHECK_INT(parse_timestamp("", 0, &t), -EINVAL);
}

TAP_MAIN
