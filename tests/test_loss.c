/* Losses (issue 12): softmax cross-entropy with label smoothing and MSE,
 * fused with their gradients, against the double reference, the reference
 * against central finite differences in double, extreme logits, twice bit
 * for bit, and every rejected input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"
#include "test_util.h"

/* Awkward shapes (DESIGN.md §4): a single row, odd rows, one class. */
static const size_t batches[] = {1, 3, 17};
static const size_t class_counts[] = {1, 2, 10, 1000};
static const double smoothings[] = {0.0, 0.1};

/* Central differences (h = 1e-5) agree with the analytic reference to this. */
#define FD_TOL 1e-6
/* The device's float loss and B·dlogits against double (O(1) values). */
#define TOL 1e-5

static size_t n_classes(void)
{
  return test_small() ? 3 : sizeof class_counts / sizeof *class_counts;
}

/* Labels in [0, classes), deterministic. */
static int64_t *random_labels(size_t n, size_t classes, uint64_t seed)
{
  int64_t *v = test_alloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    v[i] = (int64_t)((seed >> 33) % classes);
  }
  return v;
}

static float read_scalar(m2pt_context *ctx, const m2pt_tensor *t)
{
  float v = NAN;
  assert_ok(ctx, m2pt_tensor_read(t, &v, 1));
  return v;
}

static void assert_loss(float got, double ref, const char *what)
{
  if (!(fabs((double)got - ref) <= TOL * fmax(1.0, fabs(ref)))) {
    print_error("%s: loss %.9g, reference %.9g\n", what, (double)got, ref);
    fail();
  }
}

/* Runs the device cross-entropy on logits [B][C] and checks loss and
 * dlogits against the reference; labels go down as int32 or int64. */
static void check_cross_entropy(m2pt_context *ctx, const float *xf, const int64_t *labels,
                                size_t batch, size_t classes, double eps, int as_int32)
{
  const size_t n = batch * classes, shape[2] = {batch, classes}, one[1] = {1};
  double *x = test_widen(xf, n), *ref = test_alloc(n * sizeof *ref);
  const double loss_ref = ref_cross_entropy(x, labels, batch, classes, eps, ref);
  int32_t *l32 = test_alloc(batch * sizeof *l32);
  for (size_t b = 0; b < batch; b++)
    l32[b] = (int32_t)labels[b];
  const void *lab = as_int32 ? (const void *)l32 : (const void *)labels;
  const m2pt_dtype dt = as_int32 ? M2PT_DTYPE_I32 : M2PT_DTYPE_I64;

  m2pt_tensor *tx = test_tensor(ctx, 2, shape, xf), *tg = test_tensor(ctx, 2, shape, NULL);
  m2pt_tensor *tl = test_tensor(ctx, 1, one, NULL);
  assert_ok(ctx, m2pt_cross_entropy(ctx, tx, lab, dt, (float)eps, tl, tg));
  char what[96];
  snprintf(what, sizeof what, "cross_entropy B %zu C %zu eps %g", batch, classes, eps);
  const float loss = read_scalar(ctx, tl);
  assert_true(isfinite(loss));
  assert_loss(loss, loss_ref, what);
  float *g = test_read(ctx, tg);
  for (size_t i = 0; i < n; i++) {
    assert_true(isfinite(g[i]));
    g[i] *= (float)batch; /* O(1) values: softmax − target */
    ref[i] *= (double)batch;
  }
  test_assert_close(g, ref, n, TOL, what);

  /* Loss alone and dlogits alone give the same bits; dlogits may be logits. */
  m2pt_tensor *tl2 = test_tensor(ctx, 1, one, NULL), *tg2 = test_tensor(ctx, 2, shape, NULL);
  assert_ok(ctx, m2pt_cross_entropy(ctx, tx, lab, dt, (float)eps, tl2, NULL));
  assert_ok(ctx, m2pt_cross_entropy(ctx, tx, lab, dt, (float)eps, NULL, tg2));
  const float loss2 = read_scalar(ctx, tl2);
  assert_memory_equal(&loss, &loss2, sizeof loss);
  float *g2 = test_read(ctx, tg2), *g3 = NULL;
  assert_ok(ctx, m2pt_cross_entropy(ctx, tx, lab, dt, (float)eps, NULL, tx));
  g3 = test_read(ctx, tx);
  assert_memory_equal(g2, g3, n * sizeof *g2);
  for (size_t i = 0; i < n; i++)
    g2[i] *= (float)batch;
  assert_memory_equal(g, g2, n * sizeof *g);

  m2pt_tensor *all[] = {tx, tg, tl, tl2, tg2};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    m2pt_tensor_destroy(all[i]);
  void *host[] = {x, ref, l32, g, g2, g3};
  for (size_t i = 0; i < sizeof host / sizeof *host; i++)
    free(host[i]);
}

static void cross_entropy_finite_differences(void **state)
{
  m2pt_context *ctx = *state;
  enum { B = 3, C = 5 };
  for (size_t e = 0; e < 2; e++) {
    const double eps = smoothings[e];
    float *xf = test_random_floats(B * C, 21 + e, 3.0f);
    int64_t *labels = random_labels(B, C, 22);
    double *x = test_widen(xf, B * C), grad[B * C], fd[B * C];
    ref_cross_entropy(x, labels, B, C, eps, grad);
    for (size_t i = 0; i < B * C; i++) {
      const double h = 1e-5, saved = x[i];
      x[i] = saved + h;
      const double up = ref_cross_entropy(x, labels, B, C, eps, NULL);
      x[i] = saved - h;
      const double down = ref_cross_entropy(x, labels, B, C, eps, NULL);
      x[i] = saved;
      fd[i] = (up - down) / (2.0 * h);
    }
    test_assert_fd(grad, fd, B * C, FD_TOL, "cross_entropy dlogits");
    check_cross_entropy(ctx, xf, labels, B, C, eps, (int)e);
    free(xf);
    free(labels);
    free(x);
  }
}

static void cross_entropy_shapes(void **state)
{
  m2pt_context *ctx = *state;
  for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++)
    for (size_t ci = 0; ci < n_classes(); ci++)
      for (size_t e = 0; e < 2; e++) {
        const size_t b = batches[bi], c = class_counts[ci];
        float *xf = test_random_floats(b * c, 100 + bi * 10 + ci, 4.0f);
        int64_t *labels = random_labels(b, c, 200 + bi + ci);
        check_cross_entropy(ctx, xf, labels, b, c, smoothings[e], (int)((bi + ci + e) % 2));
        free(xf);
        free(labels);
      }
}

/* Logits of ±1e4 (and rows of one repeated value): max-subtracted, so no
 * exp overflows and nothing is NaN; the loss is ~2e4 where the label loses. */
static void cross_entropy_extreme(void **state)
{
  m2pt_context *ctx = *state;
  enum { B = 4, C = 10 };
  float xf[B * C];
  test_fill(xf, B * C, 31);
  for (size_t i = 0; i < B * C; i++)
    xf[i] = xf[i] < 0.0f ? -1e4f : 1e4f;
  for (size_t c = 0; c < C; c++)
    xf[3 * C + c] = -1e4f; /* a row of one value: uniform softmax */
  int64_t *labels = random_labels(B, C, 32);
  for (size_t e = 0; e < 2; e++)
    check_cross_entropy(ctx, xf, labels, B, C, smoothings[e], 0);
  free(labels);
}

static void mse(void **state)
{
  m2pt_context *ctx = *state;
  /* The reference against finite differences. */
  {
    enum { N = 6 };
    float *yf = test_random_floats(N, 41, 2.0f), *tf = test_random_floats(N, 42, 2.0f);
    double *y = test_widen(yf, N), *t = test_widen(tf, N), grad[N], fd[N];
    ref_mse(y, t, N, grad);
    for (size_t i = 0; i < N; i++) {
      const double h = 1e-5, saved = y[i];
      y[i] = saved + h;
      const double up = ref_mse(y, t, N, NULL);
      y[i] = saved - h;
      const double down = ref_mse(y, t, N, NULL);
      y[i] = saved;
      fd[i] = (up - down) / (2.0 * h);
    }
    test_assert_fd(grad, fd, N, FD_TOL, "mse dy");
    void *host[] = {yf, tf, y, t};
    for (size_t i = 0; i < 4; i++)
      free(host[i]);
  }
  static const size_t widths[] = {1, 2, 10, 1000};
  const size_t n_widths = test_small() ? 3 : 4;
  for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++)
    for (size_t ki = 0; ki < n_widths; ki++) {
      const size_t b = batches[bi], k = widths[ki], n = b * k;
      const size_t shape[2] = {b, k}, one[1] = {1};
      float *yf = test_random_floats(n, 50 + bi, 3.0f), *tf = test_random_floats(n, 60 + ki, 3.0f);
      double *y = test_widen(yf, n), *t = test_widen(tf, n), *ref = test_alloc(n * sizeof *ref);
      const double loss_ref = ref_mse(y, t, n, ref);
      m2pt_tensor *ty = test_tensor(ctx, 2, shape, yf), *tt = test_tensor(ctx, 2, shape, tf);
      m2pt_tensor *tl = test_tensor(ctx, 1, one, NULL), *tg = test_tensor(ctx, 2, shape, NULL);
      m2pt_tensor *tl2 = test_tensor(ctx, 1, one, NULL);
      assert_ok(ctx, m2pt_mse(ctx, ty, tt, tl, tg));
      char what[64];
      snprintf(what, sizeof what, "mse B %zu k %zu", b, k);
      const float loss = read_scalar(ctx, tl);
      assert_loss(loss, loss_ref, what);
      float *g = test_read(ctx, tg);
      for (size_t i = 0; i < n; i++) {
        g[i] *= (float)n / 2.0f; /* y − t: O(1) */
        ref[i] *= (double)n / 2.0;
      }
      test_assert_close(g, ref, n, TOL, what);
      /* Twice, the loss alone, then dy into y itself: the same bits. */
      assert_ok(ctx, m2pt_mse(ctx, ty, tt, tl2, NULL));
      const float loss2 = read_scalar(ctx, tl2);
      assert_memory_equal(&loss, &loss2, sizeof loss);
      float *g1 = test_read(ctx, tg);
      assert_ok(ctx, m2pt_mse(ctx, ty, tt, NULL, ty));
      float *g2 = test_read(ctx, ty);
      assert_memory_equal(g1, g2, n * sizeof *g1);
      m2pt_tensor *all[] = {ty, tt, tl, tg, tl2};
      for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        m2pt_tensor_destroy(all[i]);
      void *host[] = {yf, tf, y, t, ref, g, g1, g2};
      for (size_t i = 0; i < sizeof host / sizeof *host; i++)
        free(host[i]);
    }
}

/* Two runs of one input give the same bits (fixed-order reductions). */
static void deterministic(void **state)
{
  m2pt_context *ctx = *state;
  const size_t b = 17, c = test_small() ? 10 : 1000, shape[2] = {b, c}, one[1] = {1};
  float *xf = test_random_floats(b * c, 71, 5.0f);
  int64_t *labels = random_labels(b, c, 72);
  m2pt_tensor *tx = test_tensor(ctx, 2, shape, xf);
  m2pt_tensor *l[2], *g[2];
  for (size_t r = 0; r < 2; r++) {
    l[r] = test_tensor(ctx, 1, one, NULL);
    g[r] = test_tensor(ctx, 2, shape, NULL);
    assert_ok(ctx, m2pt_cross_entropy(ctx, tx, labels, M2PT_DTYPE_I64, 0.1f, l[r], g[r]));
  }
  float *a = test_read(ctx, g[0]), *bb = test_read(ctx, g[1]);
  assert_memory_equal(a, bb, b * c * sizeof *a);
  const float la = read_scalar(ctx, l[0]), lb = read_scalar(ctx, l[1]);
  assert_memory_equal(&la, &lb, sizeof la);
  for (size_t r = 0; r < 2; r++) {
    m2pt_tensor_destroy(l[r]);
    m2pt_tensor_destroy(g[r]);
  }
  m2pt_tensor_destroy(tx);
  free(a);
  free(bb);
  free(xf);
  free(labels);
}

/* Every output still holds 7 (nothing was written). */
static void assert_untouched(m2pt_context *ctx, const m2pt_tensor *t)
{
  float *v = test_read(ctx, t);
  for (size_t i = 0; i < m2pt_tensor_numel(t); i++)
    assert_true(v[i] == 7.0f);
  free(v);
}

static void bad_inputs(void **state)
{
  m2pt_context *ctx = *state;
  const size_t shape[2] = {3, 4}, one[1] = {1}, two[1] = {2}, flat[1] = {12};
  float sevens[12];
  for (size_t i = 0; i < 12; i++)
    sevens[i] = 7.0f;
  m2pt_tensor *x = test_tensor(ctx, 2, shape, NULL), *g = test_tensor(ctx, 2, shape, sevens);
  m2pt_tensor *l = test_tensor(ctx, 1, one, sevens), *l2 = test_tensor(ctx, 1, two, sevens);
  m2pt_tensor *x1 = test_tensor(ctx, 1, flat, NULL);
  m2pt_context *other = test_context();
  m2pt_tensor *foreign = test_tensor(other, 1, one, NULL);
  const int64_t ok[3] = {0, 3, 1}, negative[3] = {0, -1, 1}, past[3] = {0, 1, 4};
  const int64_t huge[3] = {0, 1, ((int64_t)1 << 32) + 1};
  const int32_t ok32[3] = {0, 3, 1}, past32[3] = {4, 0, 0};

  assert_status(ctx, m2pt_cross_entropy(ctx, x, negative, M2PT_DTYPE_I64, 0.0f, l, g),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(ctx), "labels[1] = -1"));
  assert_status(ctx, m2pt_cross_entropy(ctx, x, past, M2PT_DTYPE_I64, 0.0f, l, g),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(ctx), "labels[2] = 4"));
  assert_status(ctx, m2pt_cross_entropy(ctx, x, huge, M2PT_DTYPE_I64, 0.0f, l, g),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(ctx), "labels[2]"));
  assert_status(ctx, m2pt_cross_entropy(ctx, x, past32, M2PT_DTYPE_I32, 0.0f, l, g),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(ctx), "labels[0] = 4"));
  assert_status(ctx, m2pt_cross_entropy(ctx, x, ok32, M2PT_DTYPE_F32, 0.0f, l, g),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_cross_entropy(ctx, x, NULL, M2PT_DTYPE_I64, 0.0f, l, g),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_cross_entropy(ctx, x, ok, M2PT_DTYPE_I64, -0.1f, l, g),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_cross_entropy(ctx, x, ok, M2PT_DTYPE_I64, 1.5f, l, g),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_cross_entropy(ctx, x, ok, M2PT_DTYPE_I64, NAN, l, g),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_cross_entropy(ctx, x, ok, M2PT_DTYPE_I64, 0.0f, NULL, NULL),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_cross_entropy(ctx, x, ok, M2PT_DTYPE_I64, 0.0f, l2, g),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_cross_entropy(ctx, x, ok, M2PT_DTYPE_I64, 0.0f, l, x1),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_cross_entropy(ctx, x1, ok, M2PT_DTYPE_I64, 0.0f, l, NULL),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_cross_entropy(ctx, x, ok, M2PT_DTYPE_I64, 0.0f, foreign, g),
                M2PT_ERR_CONTEXT_MISMATCH);
  assert_status(ctx, m2pt_cross_entropy(ctx, NULL, ok, M2PT_DTYPE_I64, 0.0f, l, g),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_cross_entropy(NULL, x, ok, M2PT_DTYPE_I64, 0.0f, l, g),
                M2PT_ERR_INVALID_ARGUMENT);

  assert_status(ctx, m2pt_mse(ctx, x, x1, l, g), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_mse(ctx, x, x, l2, g), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_mse(ctx, x, x, l, x1), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_mse(ctx, x, x, NULL, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_mse(ctx, x, NULL, l, g), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_mse(ctx, x, x, foreign, g), M2PT_ERR_CONTEXT_MISMATCH);
  assert_status(NULL, m2pt_mse(NULL, x, x, l, g), M2PT_ERR_INVALID_ARGUMENT);

  /* Nothing was written; the context still works. */
  assert_untouched(ctx, g);
  assert_untouched(ctx, l);
  assert_untouched(ctx, l2);
  assert_ok(ctx, m2pt_cross_entropy(ctx, x, ok, M2PT_DTYPE_I64, 0.0f, l, g));

  m2pt_tensor_destroy(foreign);
  m2pt_context_destroy(other);
  m2pt_tensor *all[] = {x, g, l, l2, x1};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    m2pt_tensor_destroy(all[i]);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(cross_entropy_finite_differences),
      cmocka_unit_test(cross_entropy_shapes),
      cmocka_unit_test(cross_entropy_extreme),
      cmocka_unit_test(mse),
      cmocka_unit_test(deterministic),
      cmocka_unit_test(bad_inputs),
  };
  return test_run_matrix("loss", 0, tests, NULL, NULL);
}
