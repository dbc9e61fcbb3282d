/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/strutil.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "rarewatch/macro.h"

int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "1", "yes", "true", "on" };
    static const char *const no[] = { "0", "no", "false", "off" };
    for (size_t i = 0; i < ELEMENTSOF(yes); i++)
        if (strcasecmp(s, yes[i]) == 0)
            return *out = true, 0;
    for (size_t i = 0; i < ELEMENTSOF(no); i++)
        if (strcasecmp(s, no[i]) == 0)
            return *out = false, 0;
    return -EINVAL;
}

int parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!*s || isspace((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end)
        return -EINVAL;
    if (errno == ERANGE || v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

int parse_double(const char *s, double *out)
{
    if (!*s || isspace((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v))
        return -EINVAL;
    if (errno == ERANGE)
        return -ERANGE;
    *out = v;
    return 0;
}

struct unit {
    const char *name;
    uint64_t mult;
};

/* Parse "<number><unit>" terms; longest unit names first so "ms" is not
 * read as "m" + garbage. */
static int parse_with_units(const char *s, const struct unit *units, size_t nunits,
                            uint64_t default_mult, bool allow_multiple_terms, uint64_t *out)
{
    uint64_t total = 0;
    const char *p = s;
    bool any = false;
    while (*p) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        if (!isdigit((unsigned char)*p) && *p != '.')
            return -EINVAL;
        errno = 0;
        char *end;
        double v = strtod(p, &end);
        if (end == p || errno == ERANGE || v < 0 || !isfinite(v))
            return -EINVAL;
        p = end;
        while (isspace((unsigned char)*p))
            p++;
        const struct unit *u = NULL;
        size_t ulen = 0;
        for (size_t i = 0; i < nunits; i++) {
            size_t l = strlen(units[i].name);
            if (l > ulen && strncasecmp(p, units[i].name, l) == 0 &&
                !isalpha((unsigned char)p[l])) {
                u = &units[i];
                ulen = l;
            }
        }
        uint64_t mult;
        if (u) {
            mult = u->mult;
            p += ulen;
        } else if (!*p && !any) {
            mult = default_mult;
        } else
            return -EINVAL;
        double term = v * (double)mult;
        if (term >= 1.8e19 || total + (uint64_t)term < total)
            return -ERANGE;
        total += (uint64_t)llround(term);
        any = true;
        if (!allow_multiple_terms) {
            while (isspace((unsigned char)*p))
                p++;
            if (*p)
                return -EINVAL;
        }
    }
    if (!any)
        return -EINVAL;
    *out = total;
    return 0;
}

int parse_duration_usec(const char *s, uint64_t *out)
{
    static const struct unit units[] = {
        { "us", 1 },
        { "usec", 1 },
        { "ms", USEC_PER_MSEC },
        { "msec", USEC_PER_MSEC },
        { "s", USEC_PER_SEC },
        { "sec", USEC_PER_SEC },
        { "m", 60 * USEC_PER_SEC },
        { "min", 60 * USEC_PER_SEC },
        { "h", 3600 * USEC_PER_SEC },
        { "hr", 3600 * USEC_PER_SEC },
        { "d", 86400 * USEC_PER_SEC },
    };
    return parse_with_units(s, units, ELEMENTSOF(units), USEC_PER_SEC, true, out);
}

int parse_size(const char *s, uint64_t *out)
{
    static const struct unit units[] = {
        { "B", 1 },
        { "K", 1024 },
        { "KiB", 1024 },
        { "M", 1024 * 1024 },
        { "MiB", 1024 * 1024 },
        { "G", UINT64_C(1024) * 1024 * 1024 },
        { "GiB", UINT64_C(1024) * 1024 * 1024 },
        { "KB", 1000 },
        { "MB", 1000 * 1000 },
        { "GB", UINT64_C(1000) * 1000 * 1000 },
    };
    return parse_with_units(s, units, ELEMENTSOF(units), 1, false, out);
}

const char *format_duration(char *buf, size_t n, uint64_t usec)
{
    static const struct unit units[] = {
        { "d", 86400 * USEC_PER_SEC }, { "h", 3600 * USEC_PER_SEC }, { "m", 60 * USEC_PER_SEC },
        { "s", USEC_PER_SEC },         { "ms", USEC_PER_MSEC },      { "us", 1 },
    };
    if (usec == 0) {
        snprintf(buf, n, "0");
        return buf;
    }
    for (size_t i = 0; i < ELEMENTSOF(units); i++)
        if (usec % units[i].mult == 0) {
            snprintf(buf, n, "%llu%s", (unsigned long long)(usec / units[i].mult), units[i].name);
            return buf;
        }
    return buf;
}

const char *format_size(char *buf, size_t n, uint64_t bytes)
{
    static const struct unit units[] = {
        { "GiB", UINT64_C(1024) * 1024 * 1024 }, { "MiB", 1024 * 1024 }, { "KiB", 1024 }
    };
    for (size_t i = 0; i < ELEMENTSOF(units); i++)
        if (bytes && bytes % units[i].mult == 0) {
            snprintf(buf, n, "%llu%s", (unsigned long long)(bytes / units[i].mult), units[i].name);
            return buf;
        }
    snprintf(buf, n, "%llu", (unsigned long long)bytes);
    return buf;
}

char **strv_split(const char *s)
{
    size_t n = 0, cap = 4;
    char **v = calloc(cap, sizeof(char *));
    if (!v)
        return NULL;
    const char *p = s;
    while (*p) {
        while (*p && (isspace((unsigned char)*p) || *p == ','))
            p++;
        if (!*p)
            break;
        const char *start = p;
        while (*p && !isspace((unsigned char)*p) && *p != ',')
            p++;
        if (n + 2 > cap) {
            char **nv = realloc(v, (cap *= 2) * sizeof(char *));
            if (!nv)
                return strv_free(v);
            v = nv;
        }
        v[n] = strndup(start, (size_t)(p - start));
        if (!v[n])
            return strv_free(v);
        v[++n] = NULL;
    }
    return v;
}

char **strv_free(char **v)
{
    if (v) {
        for (char **p = v; *p; p++)
            free(*p);
        free(v);
    }
    return NULL;
}

size_t strv_length(char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

bool strv_contains(char *const *v, const char *s)
{
    for (size_t i = 0; v && v[i]; i++)
        if (streq(v[i], s))
            return true;
    return false;
}

char **strv_copy(char *const *v)
{
    size_t n = strv_length(v);
    char **c = calloc(n + 1, sizeof(char *));
    if (!c)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!(c[i] = strdup(v[i])))
            return strv_free(c);
    return c;
}

bool strv_equal(char *const *a, char *const *b)
{
    size_t na = strv_length(a), nb = strv_length(b);
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (!streq(a[i], b[i]))
            return false;
    return true;
}

char *strstrip(char *s)
{
    char *p = s;
    while (isspace((unsigned char)*p))
        p++;
    size_t l = strlen(p);
    while (l && isspace((unsigned char)p[l - 1]))
        l--;
    memmove(s, p, l);
    s[l] = 0;
    return s;
}

bool startswith(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

bool endswith(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

unsigned levenshtein(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 255;
    unsigned row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (unsigned)j;
    for (size_t i = 1; i <= la; i++) {
        unsigned prev = row[0];
        row[0] = (unsigned)i;
        for (size_t j = 1; j <= lb; j++) {
            unsigned cur = row[j];
            unsigned cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
            row[j] = MIN(MIN(row[j] + 1, row[j - 1] + 1), prev + cost);
            prev = cur;
        }
    }
    return MIN(row[lb], 255u);
}

static uint64_t clock_usec(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / NSEC_PER_USEC;
}

uint64_t now_realtime_usec(void) { return clock_usec(CLOCK_REALTIME); }
uint64_t now_monotonic_usec(void) { return clock_usec(CLOCK_MONOTONIC); }

const char *format_iso8601_ms(char *buf, size_t n, uint64_t usec)
{
    /* Every output line carries one (the "_kinesis" arrival time): the
     * civil date by arithmetic (H. Hinnant's days_from_civil inverse)
     * instead of gmtime_r + snprintf, several times cheaper; the same text.
     * Consecutive records mostly arrived within the same second, so the
     * text up to the seconds is also kept per thread and copied while the
     * second repeats (a quarter of the cost of computing it). */
    static _Thread_local uint64_t last_secs = UINT64_MAX;
    static _Thread_local char last_text[19];
    uint64_t secs = usec / USEC_PER_SEC;
    unsigned ms = (unsigned)(usec % USEC_PER_SEC / USEC_PER_MSEC);
    char *o = buf;
#define D2(v) (*o++ = (char)('0' + (v) / 10), *o++ = (char)('0' + (v) % 10))
    if (secs == last_secs && n >= 25) {
        memcpy(o, last_text, sizeof(last_text));
        o += sizeof(last_text);
        goto millis;
    }
    uint64_t days = secs / 86400, sod = secs % 86400;
    uint64_t z = days + 719468, era = z / 146097, doe = z - era * 146097;
    uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    unsigned day = (unsigned)(doy - (153 * mp + 2) / 5 + 1), mon = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    uint64_t year = yoe + era * 400 + (mon <= 2);
    if (year > 9999 || n < 25) {
        time_t t = (time_t)secs;
        struct tm tm;
        gmtime_r(&t, &tm);
        snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
        return buf;
    }
    unsigned y = (unsigned)year, hh = (unsigned)(sod / 3600), mi = (unsigned)(sod / 60 % 60), ss = (unsigned)(sod % 60);
    D2(y / 100);
    D2(y % 100);
    *o++ = '-';
    D2(mon);
    *o++ = '-';
    D2(day);
    *o++ = 'T';
    D2(hh);
    *o++ = ':';
    D2(mi);
    *o++ = ':';
    D2(ss);
    memcpy(last_text, buf, sizeof(last_text));
    last_secs = secs;
millis:
    *o++ = '.';
    *o++ = (char)('0' + ms / 100);
    D2(ms % 100);
#undef D2
    *o++ = 'Z';
    *o = 0;
    return buf;
}

static int digits(const char *p, const char *end, int n, int *out)
{
    if (end - p < n)
        return -1;
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 0;
}

int parse_timestamp(const char *s, size_t n, double *epoch)
{
    const char *p = s, *end = s + n;
    while (p < end && isspace((unsigned char)*p))
        p++;
    while (end > p && isspace((unsigned char)end[-1]))
        end--;
    if (p == end)
        return -EINVAL;
    int y, mo, d, h = 0, mi = 0, sec = 0;
    if (end - p >= 10 && p[4] == '-' && p[7] == '-' && digits(p, end, 4, &y) == 0 &&
        digits(p + 5, end, 2, &mo) == 0 && digits(p + 8, end, 2, &d) == 0) {
        p += 10;
        double frac = 0;
        int off = 0;
        if (p < end && (*p == 'T' || *p == 't' || *p == ' ')) {
            p++;
            if (digits(p, end, 2, &h) < 0 || end - p < 5 || p[2] != ':' || digits(p + 3, end, 2, &mi) < 0)
                return -EINVAL;
            p += 5;
            if (p < end && *p == ':') {
                if (digits(p + 1, end, 2, &sec) < 0)
                    return -EINVAL;
                p += 3;
                if (p < end && (*p == '.' || *p == ',')) {
                    double scale = 0.1;
                    p++;
                    if (p >= end || !isdigit((unsigned char)*p))
                        return -EINVAL;
                    while (p < end && isdigit((unsigned char)*p)) {
                        frac += (*p - '0') * scale;
                        scale /= 10;
                        p++;
                    }
                }
            }
            if (p < end && (*p == 'Z' || *p == 'z'))
                p++;
            else if (p < end && (*p == '+' || *p == '-')) {
                int sign = *p == '-' ? -1 : 1, oh, om = 0;
                p++;
                if (digits(p, end, 2, &oh) < 0)
                    return -EINVAL;
                p += 2;
                if (p < end && *p == ':')
                    p++;
                if (p < end && digits(p, end, 2, &om) == 0)
                    p += 2;
                off = sign * (oh * 3600 + om * 60);
            }
        }
        if (p != end || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
            return -EINVAL;
        struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
                         .tm_hour = h, .tm_min = mi, .tm_sec = sec };
        time_t t = timegm(&tm);
        *epoch = (double)t - off + frac;
        return 0;
    }
    char buf[64];
    size_t l = (size_t)(end - p);
    if (l >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, p, l);
    buf[l] = 0;
    double v;
    if (parse_double(buf, &v) < 0)
        return -EINVAL;
    *epoch = v > 1e11 ? v / 1000.0 : v;
    return 0;
}

bool is_json_number(const char *s)
{
    if (*s == '-')
        s++;
    if (*s == '0')
        s++;
    else if (*s >= '1' && *s <= '9')
        while (*s >= '0' && *s <= '9')
            s++;
    else
        return false;
    if (*s == '.') {
        s++;
        if (!(*s >= '0' && *s <= '9'))
            return false;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (!(*s >= '0' && *s <= '9'))
            return false;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == 0;
}
