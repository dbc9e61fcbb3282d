/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * A tiny TAP producer for unit tests. meson runs every unit test with
 * protocol: 'tap', so each TEST() shows up as its own result.
 *
 *   TEST(parses_durations) { CHECK_INT(parse(...), 0); }
 *   int main(void) { return tap_run(); }   // or TAP_MAIN
 *
 * Assertions record a failure with file:line and carry on within the test,
 * so one run reports every broken expectation.
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct tap_case {
    const char *name;
    void (*fn)(void);
};

#define TAP_MAX_CASES 512
static struct tap_case tap_cases_[TAP_MAX_CASES];
static unsigned tap_ncases_;
static unsigned tap_fail_in_case_;

#define TEST(name)                                                     \
    static void test_##name(void);                                     \
    __attribute__((constructor)) static void tap_register_##name(void) \
    {                                                                  \
        if (tap_ncases_ < TAP_MAX_CASES)                               \
            tap_cases_[tap_ncases_++] = (struct tap_case){#name, test_##name}; \
    }                                                                  \
    static void test_##name(void)

#define TAP_FAIL_(...)                                                 \
    do {                                                               \
        tap_fail_in_case_++;                                           \
        printf("# %s:%d: ", __FILE__, __LINE__);                       \
        printf(__VA_ARGS__);                                           \
        printf("\n");                                                  \
    } while (0)

#define CHECK(cond)                                                    \
    do {                                                               \
        if (!(cond))                                                   \
            TAP_FAIL_("CHECK(%s) failed", #cond);                      \
    } while (0)

#define CHECK_INT(a, b)                                                \
    do {                                                               \
        long long a_ = (long long)(a), b_ = (long long)(b);            \
        if (a_ != b_)                                                  \
            TAP_FAIL_("%s == %lld, expected %s == %lld", #a, a_, #b, b_); \
    } while (0)

#define CHECK_UINT(a, b)                                               \
    do {                                                               \
        unsigned long long a_ = (unsigned long long)(a), b_ = (unsigned long long)(b); \
        if (a_ != b_)                                                  \
            TAP_FAIL_("%s == %llu, expected %s == %llu", #a, a_, #b, b_); \
    } while (0)

#define CHECK_STR(a, b)                                                \
    do {                                                               \
        const char *a_ = (a), *b_ = (b);                               \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                         \
            TAP_FAIL_("%s == \"%s\", expected \"%s\"", #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
    } while (0)

#define CHECK_NEAR(a, b, eps)                                          \
    do {                                                               \
        double a_ = (double)(a), b_ = (double)(b);                     \
        if (!(fabs(a_ - b_) <= (eps)))                                 \
            TAP_FAIL_("%s == %.17g, expected %.17g ± %g", #a, a_, b_, (double)(eps)); \
    } while (0)

#define CHECK_CONTAINS(hay, needle)                                    \
    do {                                                               \
        const char *h_ = (hay), *n_ = (needle);                        \
        if (!h_ || !strstr(h_, n_))                                    \
            TAP_FAIL_("%s == \"%s\" does not contain \"%s\"", #hay, h_ ? h_ : "(null)", n_); \
    } while (0)

static inline int tap_run(void)
{
    unsigned failed = 0;
    printf("1..%u\n", tap_ncases_);
    for (unsigned i = 0; i < tap_ncases_; i++) {
        tap_fail_in_case_ = 0;
        tap_cases_[i].fn();
        if (tap_fail_in_case_)
            failed++;
        printf("%s %u - %s\n", tap_fail_in_case_ ? "not ok" : "ok", i + 1, tap_cases_[i].name);
        fflush(stdout);
    }
    return failed ? 1 : 0;
}

#define TAP_MAIN \
    int main(void) { return tap_run(); }
