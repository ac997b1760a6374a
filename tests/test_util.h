/* Helpers shared by the cmocka suites: contexts, random data, tolerances. */
#ifndef M2PT_TESTS_TEST_UTIL_H
#define M2PT_TESTS_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <m2pt/m2pt.h>

/* Asserts a status, printing the context's message when it differs. */
#define assert_status(ctx, expr, expected) \
  test_assert_status((ctx), (expr), (expected), #expr, __FILE__, __LINE__)
#define assert_ok(ctx, expr) assert_status((ctx), (expr), M2PT_OK)

void test_assert_status(const m2pt_context *ctx, m2pt_status got, m2pt_status expected,
                        const char *expr, const char *file, int line);

/* A context on the default device ($M2PT_DEVICE), or the test fails: CI has
 * PoCL, so a missing device is a failure, not a skip. */
m2pt_context *test_context(void);

/* cmocka group setup and teardown: *state is a context from test_context(). */
int test_setup_context(void **state);
int test_teardown_context(void **state);

/* 1 when the suite runs under the oclgrind setup, where only tiny shapes fit. */
int test_small(void);

/* Deterministic uniform values in [-1, 1) (xorshift, seeded per call site). */
void test_fill(float *dst, size_t n, uint64_t seed);

/* Host allocation that fails the test instead of returning NULL. */
void *test_alloc(size_t bytes);

/* max|got − ref| ≤ tol · max(1, max|ref|) (DESIGN.md §4); prints the worst. */
void test_assert_close(const float *got, const double *ref, size_t n, double tol,
                       const char *what);

/* A tensor filled from host data (or zeros when data is NULL). */
m2pt_tensor *test_tensor(m2pt_context *ctx, size_t ndim, const size_t *shape, const float *data);

/* Enters a suite's data directory: argv[1] when given (meson passes the source
 * tree's, so a tree copied elsewhere, as tools/device-check.sh does, reads its
 * own files), else `compiled_in`. Returns 0, or -1 after printing why. */
int test_enter_data_dir(int argc, char **argv, const char *compiled_in);

#endif
