#include "test_util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void test_assert_status(const m2pt_context *ctx, m2pt_status got, m2pt_status expected,
                        const char *expr, const char *file, int line)
{
  if (got == expected)
    return;
  print_error("%s:%d: %s returned %s, expected %s\n  message: %s\n", file, line, expr,
              m2pt_status_string(got), m2pt_status_string(expected), m2pt_last_error(ctx));
  fail();
}

m2pt_context *test_context(void)
{
  m2pt_context *ctx = NULL;
  const m2pt_status s = m2pt_context_create(NULL, &ctx);
  if (s != M2PT_OK) {
    print_error("no OpenCL context: %s: %s\n", m2pt_status_string(s), m2pt_last_error(NULL));
    fail();
  }
  return ctx;
}

int test_setup_context(void **state)
{
  *state = test_context();
  return 0;
}

int test_teardown_context(void **state)
{
  m2pt_context_destroy(*state);
  return 0;
}

int test_small(void)
{
  const char *v = getenv("M2PT_TEST_SMALL");
  return v && v[0] && v[0] != '0';
}

void test_fill(float *dst, size_t n, uint64_t seed)
{
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    dst[i] = (float)((double)(s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
  }
}

void *test_alloc(size_t bytes)
{
  void *p = malloc(bytes ? bytes : 1);
  assert_non_null(p);
  return p;
}

void test_assert_close(const float *got, const double *ref, size_t n, double tol,
                       const char *what)
{
  double worst = 0.0, scale = 1.0;
  size_t at = 0;
  for (size_t i = 0; i < n; i++)
    if (fabs(ref[i]) > scale)
      scale = fabs(ref[i]);
  for (size_t i = 0; i < n; i++) {
    const double err = isfinite(got[i]) ? fabs((double)got[i] - ref[i]) : INFINITY;
    if (err > worst) {
      worst = err;
      at = i;
    }
  }
  if (worst > tol * scale) {
    print_error("%s: max error %g at %zu (got %.9g, want %.9g) exceeds %g\n", what, worst, at,
                (double)got[at], ref[at], tol * scale);
    fail();
  }
}

m2pt_tensor *test_tensor(m2pt_context *ctx, size_t ndim, const size_t *shape, const float *data)
{
  m2pt_tensor *t = NULL;
  assert_ok(ctx, m2pt_tensor_create(ctx, ndim, shape, &t));
  if (data)
    assert_ok(ctx, m2pt_tensor_write(t, data, m2pt_tensor_numel(t)));
  return t;
}

int test_enter_data_dir(int argc, char **argv, const char *compiled_in)
{
  const char *dir = argc > 1 ? argv[1] : compiled_in;
  if (chdir(dir) != 0) {
    fprintf(stderr, "%s: cannot enter the data directory %s: %s\n", argv[0], dir,
            strerror(errno));
    return -1;
  }
  return 0;
}
