/*
 * A minimal test harness for the C and C++ tests of libgreenlet.
 *
 * A program runs cases with RUN(fn); each case passes if none of its CHECKs failed and it
 * left this thread's handle count as it found it (greenlet_handle_count). It prints one
 * line per case and ends with "N passed, M failed", which `cargo xtask native-tests` sums;
 * check_summary() is the exit status (non-zero on failure).
 */
#ifndef GREENLET_TEST_CHECK_H
#define GREENLET_TEST_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <greenlet.h>

static int check_cases_passed, check_cases_failed, check_case_failures;

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            check_case_failures++;                                                          \
            printf("  check failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);             \
        }                                                                                   \
    } while (0)

#define CHECK_STATUS(expr, want)                                                            \
    do {                                                                                    \
        int check_got_ = (int)(expr);                                                       \
        if (check_got_ != (int)(want)) {                                                    \
            check_case_failures++;                                                          \
            printf("  %s:%d: %s returned %s, expected %s (last error: %s)\n", __FILE__,     \
                   __LINE__, #expr, greenlet_status_name(check_got_),                       \
                   greenlet_status_name((int)(want)), greenlet_last_error());               \
        }                                                                                   \
    } while (0)

/* A small integer as a switch value, and back. */
#define INT2PTR(i) ((void *)(intptr_t)(i))
#define PTR2INT(p) ((long)(intptr_t)(p))

static void check_run(const char *name, void (*test)(void)) {
    size_t handles = greenlet_handle_count();
    check_case_failures = 0;
    test();
    if (greenlet_handle_count() != handles) {
        check_case_failures++;
        printf("  %s leaked handles: %zu before, %zu after\n", name, handles,
               greenlet_handle_count());
    }
    if (check_case_failures == 0) {
        check_cases_passed++;
        printf("ok - %s\n", name);
    } else {
        check_cases_failed++;
        printf("FAILED - %s\n", name);
    }
    fflush(stdout);
}

#define RUN(test) check_run(#test, test)

static int check_summary(void) {
    printf("%d passed, %d failed\n", check_cases_passed, check_cases_failed);
    fflush(stdout);
    return check_cases_failed == 0 ? 0 : 1;
}

#endif
