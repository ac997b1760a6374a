/* Backward passes of LayerNorm, GELU, the residual/bias adds and the masked
 * softmax (issue 12): against the double reference, the reference against
 * central finite differences in double (L = Σ dY ⊙ Y through the double
 * forward), twice bit for bit, and every rejected input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/context_impl.h"
#include "ops/block_ops.h"
#include "reference.h"
#include "test_util.h"

/* Awkward shapes (DESIGN.md §4): rows and widths around the tree sizes. */
static const size_t row_counts[] = {1, 3, 17, 197};
static const size_t widths[] = {1, 5, 8, 17, 768};
static const double eps_values[] = {1e-5, 1e-6, 1e-12};

/* Finite differences agree with the analytic double reference to this
 * (central, h = 1e-5: truncation ~h², rounding ~1e-16/h). */
#define FD_TOL 1e-6

static size_t n_rows(void)
{
  return test_small() ? 2 : sizeof row_counts / sizeof *row_counts;
}

static size_t n_widths(void)
{
  return test_small() ? 3 : sizeof widths / sizeof *widths;
}

/* ---- LayerNorm ---- */

/* L = Σ dY ⊙ LayerNorm(x; w, b) in double, every parameter double. */
static double ln_loss(const double *x, const double *w, const double *b, const double *dy,
                      size_t rows, size_t dim, double eps)
{
  double loss = 0.0;
  for (size_t r = 0; r < rows; r++) {
    const double *xr = x + r * dim;
    double mean = 0.0, var = 0.0;
    for (size_t i = 0; i < dim; i++)
      mean += xr[i] / (double)dim;
    for (size_t i = 0; i < dim; i++)
      var += (xr[i] - mean) * (xr[i] - mean) / (double)dim;
    for (size_t i = 0; i < dim; i++)
      loss += dy[r * dim + i] * ((xr[i] - mean) / sqrt(var + eps) * w[i] + b[i]);
  }
  return loss;
}

/* Central difference of ln_loss in v[i] (v one of its arguments). */
static double ln_fd(double *v, size_t i, const double *x, const double *w, const double *b,
                    const double *dy, size_t rows, size_t dim, double eps)
{
  const double h = 1e-5, saved = v[i];
  v[i] = saved + h;
  const double up = ln_loss(x, w, b, dy, rows, dim, eps);
  v[i] = saved - h;
  const double down = ln_loss(x, w, b, dy, rows, dim, eps);
  v[i] = saved;
  return (up - down) / (2.0 * h);
}

static void layer_norm_finite_differences(void **state)
{
  m2pt_context *ctx = *state;
  enum { ROWS = 3, DIM = 5 };
  for (size_t e = 0; e < 2; e++) {
    const double eps = e ? 1e-1 : 1e-5; /* a large eps keeps its term in the derivative */
    float *xf = test_random_floats(ROWS * DIM, 11, 2.0f), *wf = test_random_floats(DIM, 12, 1.0f);
    float *bf = test_random_floats(DIM, 13, 1.0f), *dyf = test_random_floats(ROWS * DIM, 14, 1.0f);
    double *x = test_widen(xf, ROWS * DIM), *w = test_widen(wf, DIM), *b = test_widen(bf, DIM);
    double *dy = test_widen(dyf, ROWS * DIM);
    double fdx[ROWS * DIM], fdw[DIM], fdb[DIM], dx[ROWS * DIM], dw[DIM], db[DIM];
    for (size_t i = 0; i < ROWS * DIM; i++)
      fdx[i] = ln_fd(x, i, x, w, b, dy, ROWS, DIM, eps);
    for (size_t i = 0; i < DIM; i++) {
      fdw[i] = ln_fd(w, i, x, w, b, dy, ROWS, DIM, eps);
      fdb[i] = ln_fd(b, i, x, w, b, dy, ROWS, DIM, eps);
    }
    ref_layer_norm_backward(dy, x, ROWS, DIM, wf, eps, dx, dw, db);
    test_assert_fd(dx, fdx, ROWS * DIM, FD_TOL, "layer_norm dx");
    test_assert_fd(dw, fdw, DIM, FD_TOL, "layer_norm dweight");
    test_assert_fd(db, fdb, DIM, FD_TOL, "layer_norm dbias");

    /* The device against the finite differences directly. */
    const size_t shape[2] = {ROWS, DIM}, vshape[1] = {DIM}, sshape[1] = {ROWS};
    m2pt_tensor *tx = test_tensor(ctx, 2, shape, xf), *ty = test_tensor(ctx, 2, shape, NULL);
    m2pt_tensor *tw = test_tensor(ctx, 1, vshape, wf), *tb = test_tensor(ctx, 1, vshape, bf);
    m2pt_tensor *tdy = test_tensor(ctx, 2, shape, dyf), *tdx = test_tensor(ctx, 2, shape, NULL);
    m2pt_tensor *tdw = test_tensor(ctx, 1, vshape, NULL), *tdb = test_tensor(ctx, 1, vshape, NULL);
    m2pt_tensor *tm = test_tensor(ctx, 1, sshape, NULL), *tr = test_tensor(ctx, 1, sshape, NULL);
    assert_ok(ctx, m2pt_layer_norm_train(ctx, tx, tw, tb, (float)eps, ty, tm, tr));
    assert_ok(ctx, m2pt_layer_norm_backward(ctx, tdy, tx, tw, tm, tr, tdx, tdw, tdb));
    float *gx = test_read(ctx, tdx), *gw = test_read(ctx, tdw), *gb = test_read(ctx, tdb);
    test_assert_close(gx, fdx, ROWS * DIM, 1e-4, "layer_norm dx vs fd");
    test_assert_close(gw, fdw, DIM, 1e-4, "layer_norm dweight vs fd");
    test_assert_close(gb, fdb, DIM, 1e-4, "layer_norm dbias vs fd");
    m2pt_tensor *all[] = {tx, ty, tw, tb, tdy, tdx, tdw, tdb, tm, tr};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
      m2pt_tensor_destroy(all[i]);
    void *host[] = {xf, wf, bf, dyf, x, w, b, dy, gx, gw, gb};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++)
      free(host[i]);
  }
}

/* One shape: the training forward (y as the plain forward's, bit for bit;
 * mean and rstd), the backward against the reference, each output alone,
 * in place, and twice bit for bit. */
static void check_layer_norm(m2pt_context *ctx, size_t rows, size_t dim, double eps, int bias)
{
  const size_t n = rows * dim;
  float *x = test_random_floats(n, 20 + dim, 10.0f), *w = test_random_floats(dim, 21, 1.0f);
  float *b = test_random_floats(dim, 22, 1.0f), *dy = test_random_floats(n, 23 + rows, 1.0f);
  for (size_t i = 0; i < n; i++)
    x[i] += 3.0f; /* an offset, as the forward's test */
  const size_t shape[2] = {rows, dim}, vshape[1] = {dim}, sshape[1] = {rows};
  m2pt_tensor *tx = test_tensor(ctx, 2, shape, x), *ty = test_tensor(ctx, 2, shape, NULL);
  m2pt_tensor *ty0 = test_tensor(ctx, 2, shape, NULL), *tw = test_tensor(ctx, 1, vshape, w);
  m2pt_tensor *tb = bias ? test_tensor(ctx, 1, vshape, b) : NULL;
  m2pt_tensor *tm = test_tensor(ctx, 1, sshape, NULL), *tr = test_tensor(ctx, 1, sshape, NULL);
  m2pt_tensor *tdy = test_tensor(ctx, 2, shape, dy), *tdx = test_tensor(ctx, 2, shape, NULL);
  m2pt_tensor *tdx2 = test_tensor(ctx, 2, shape, NULL);
  m2pt_tensor *tdw = test_tensor(ctx, 1, vshape, NULL), *tdb = test_tensor(ctx, 1, vshape, NULL);
  m2pt_tensor *tdw2 = test_tensor(ctx, 1, vshape, NULL);
  m2pt_tensor *tdb2 = test_tensor(ctx, 1, vshape, NULL);

  assert_ok(ctx, m2pt_layer_norm(ctx, tx, tw, tb, (float)eps, ty0));
  assert_ok(ctx, m2pt_layer_norm_train(ctx, tx, tw, tb, (float)eps, ty, tm, tr));
  test_assert_same_bits(ctx, ty, ty0);

  double *xd = test_widen(x, n), *dyd = test_widen(dy, n), *mean = test_alloc(rows * sizeof *mean);
  double *rstd = test_alloc(rows * sizeof *rstd), *dx = test_alloc(n * sizeof *dx);
  double *dw = test_alloc(dim * sizeof *dw), *db = test_alloc(dim * sizeof *db);
  for (size_t r = 0; r < rows; r++) {
    double m = 0.0, v = 0.0;
    for (size_t i = 0; i < dim; i++)
      m += xd[r * dim + i] / (double)dim;
    for (size_t i = 0; i < dim; i++)
      v += (xd[r * dim + i] - m) * (xd[r * dim + i] - m) / (double)dim;
    mean[r] = m;
    rstd[r] = 1.0 / sqrt(v + (float)eps);
  }
  float *gm = test_read(ctx, tm), *gr = test_read(ctx, tr);
  test_assert_close(gm, mean, rows, 1e-5, "layer_norm_train mean");
  for (size_t r = 0; r < rows; r++) /* relative: rstd reaches 1/sqrt(eps) */
    assert_true(fabs(gr[r] - rstd[r]) <= 1e-4 * rstd[r]);

  ref_layer_norm_backward(dyd, xd, rows, dim, w, (float)eps, dx, dw, db);
  assert_ok(ctx, m2pt_layer_norm_backward(ctx, tdy, tx, tw, tm, tr, tdx, tdw, tdb));
  float *gx = test_read(ctx, tdx), *gw = test_read(ctx, tdw), *gb = test_read(ctx, tdb);
  test_assert_close(gx, dx, n, 1e-4, "layer_norm dx");
  test_assert_close(gw, dw, dim, 1e-4, "layer_norm dweight");
  test_assert_close(gb, db, dim, 1e-4, "layer_norm dbias");

  /* Each output alone gives the same bits; the others stay untouched. */
  assert_ok(ctx, m2pt_tensor_write(tdx2, dy, n));
  assert_ok(ctx, m2pt_layer_norm_backward(ctx, tdy, tx, tw, tm, tr, NULL, tdw2, NULL));
  test_assert_same_bits(ctx, tdw2, tdw);
  test_assert_same_bits(ctx, tdx2, tdy);
  assert_ok(ctx, m2pt_layer_norm_backward(ctx, tdy, tx, tw, tm, tr, NULL, NULL, tdb2));
  test_assert_same_bits(ctx, tdb2, tdb);
  /* Twice, then in place (dx = dy): the same bits. */
  assert_ok(ctx, m2pt_layer_norm_backward(ctx, tdy, tx, tw, tm, tr, tdx2, tdw2, tdb2));
  test_assert_same_bits(ctx, tdx2, tdx);
  test_assert_same_bits(ctx, tdw2, tdw);
  test_assert_same_bits(ctx, tdb2, tdb);
  assert_ok(ctx, m2pt_layer_norm_backward(ctx, tdx2, tx, tw, tm, tr, tdx2, NULL, NULL));
  assert_ok(ctx, m2pt_layer_norm_backward(ctx, tdy, tx, tw, tm, tr, tdx2, NULL, NULL));
  test_assert_same_bits(ctx, tdx2, tdx);

  m2pt_tensor *all[] = {tx, ty, ty0, tw, tb, tm, tr, tdy, tdx, tdx2, tdw, tdb, tdw2, tdb2};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    m2pt_tensor_destroy(all[i]);
  void *host[] = {x, w, b, dy, xd, dyd, mean, rstd, dx, dw, db, gm, gr, gx, gw, gb};
  for (size_t i = 0; i < sizeof host / sizeof *host; i++)
    free(host[i]);
}

static void layer_norm_backward(void **state)
{
  m2pt_context *ctx = *state;
  size_t k = 0;
  for (size_t ri = 0; ri < n_rows(); ri++)
    for (size_t wi = 0; wi < n_widths(); wi++, k++)
      check_layer_norm(ctx, row_counts[ri], widths[wi], eps_values[k % 3], (int)(k % 2));
}

/* The work-group and row-per-work-item dx kernels agree on a ViT-B shape
 * (the matrix runs each against the reference; this compares them
 * directly). The rows variant is float8: only where the device's own quirks
 * use vectors (not on Oclgrind). */
static void layer_norm_backward_variants(void **state)
{
  m2pt_context *ctx = *state;
  m2pt_quirks own;
  m2pt_quirks_of_device(ctx->device, &ctx->info, &own);
  if (own.layer_norm != M2PT_LAYER_NORM_ROWS)
    skip();
  enum { ROWS = 197, DIM = 768 };
  const size_t n = ROWS * DIM, shape[2] = {ROWS, DIM}, vshape[1] = {DIM}, sshape[1] = {ROWS};
  float *x = test_random_floats(n, 41, 10.0f), *w = test_random_floats(DIM, 42, 1.0f);
  float *dy = test_random_floats(n, 43, 1.0f);
  m2pt_tensor *tx = test_tensor(ctx, 2, shape, x), *ty = test_tensor(ctx, 2, shape, NULL);
  m2pt_tensor *tw = test_tensor(ctx, 1, vshape, w), *tdy = test_tensor(ctx, 2, shape, dy);
  m2pt_tensor *tm = test_tensor(ctx, 1, sshape, NULL), *tr = test_tensor(ctx, 1, sshape, NULL);
  m2pt_tensor *tdx = test_tensor(ctx, 2, shape, NULL);
  const m2pt_layer_norm_variant was = ctx->quirks.layer_norm;
  assert_ok(ctx, m2pt_layer_norm_train(ctx, tx, tw, NULL, 1e-6f, ty, tm, tr));
  float *dx[2];
  for (int v = 0; v < 2; v++) {
    ctx->quirks.layer_norm = v ? M2PT_LAYER_NORM_ROWS : M2PT_LAYER_NORM_WORKGROUP;
    assert_ok(ctx, m2pt_layer_norm_backward(ctx, tdy, tx, tw, tm, tr, tdx, NULL, NULL));
    dx[v] = test_read(ctx, tdx);
  }
  ctx->quirks.layer_norm = was;
  double scale = 0.0; /* relative to the largest |dx|: single elements cancel */
  for (size_t i = 0; i < n; i++)
    scale = fmax(scale, fabs(dx[0][i]));
  for (size_t i = 0; i < n; i++)
    if (fabs(dx[1][i] - dx[0][i]) > 1e-6 * scale)
      fail_msg("layer_norm dx: rows %g vs workgroup %g at %zu", (double)dx[1][i],
               (double)dx[0][i], i);
  m2pt_tensor *all[] = {tx, ty, tw, tdy, tm, tr, tdx};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    m2pt_tensor_destroy(all[i]);
  void *host[] = {x, w, dy, dx[0], dx[1]};
  for (size_t i = 0; i < sizeof host / sizeof *host; i++)
    free(host[i]);
}

/* ---- GELU ---- */

static void check_gelu(m2pt_context *ctx, size_t rows, size_t cols, int tanh_form, int bias)
{
  const size_t n = rows * cols;
  const m2pt_gelu_kind kind = tanh_form ? M2PT_GELU_TANH : M2PT_GELU_ERF;
  float *x = test_random_floats(n, 30 + cols, 4.0f), *b = test_random_floats(cols, 31, 1.0f);
  float *dy = test_random_floats(n, 32 + rows, 1.0f);
  const size_t shape[2] = {rows, cols}, vshape[1] = {cols};
  m2pt_tensor *tx = test_tensor(ctx, 2, shape, x), *tb = bias ? test_tensor(ctx, 1, vshape, b)
                                                              : NULL;
  m2pt_tensor *tdy = test_tensor(ctx, 2, shape, dy), *tdx = test_tensor(ctx, 2, shape, NULL);
  m2pt_tensor *tdx2 = test_tensor(ctx, 2, shape, NULL);
  m2pt_tensor *tdb = test_tensor(ctx, 1, vshape, NULL), *tdb2 = test_tensor(ctx, 1, vshape, NULL);
  double *dx = test_alloc(n * sizeof *dx), *db = test_alloc(cols * sizeof *db);
  for (size_t c = 0; c < cols; c++)
    db[c] = 0.0;
  for (size_t i = 0; i < n; i++) {
    dx[i] = dy[i] * ref_gelu_grad((double)x[i] + (bias ? b[i % cols] : 0.0), tanh_form);
    db[i % cols] += dx[i];
  }
  assert_ok(ctx, m2pt_gelu_backward(ctx, tdy, tx, tb, kind, tdx, tdb));
  float *gx = test_read(ctx, tdx), *gb = test_read(ctx, tdb);
  test_assert_close(gx, dx, n, 1e-5, tanh_form ? "gelu tanh dx" : "gelu erf dx");
  test_assert_close(gb, db, cols, 1e-4, tanh_form ? "gelu tanh dbias" : "gelu erf dbias");
  /* db alone (dx through the workspace), twice, and dx in place over dy. */
  assert_ok(ctx, m2pt_gelu_backward(ctx, tdy, tx, tb, kind, NULL, tdb2));
  test_assert_same_bits(ctx, tdb2, tdb);
  assert_ok(ctx, m2pt_gelu_backward(ctx, tdy, tx, tb, kind, tdx2, tdb2));
  test_assert_same_bits(ctx, tdx2, tdx);
  test_assert_same_bits(ctx, tdb2, tdb);
  assert_ok(ctx, m2pt_tensor_write(tdx2, dy, n));
  assert_ok(ctx, m2pt_gelu_backward(ctx, tdx2, tx, tb, kind, tdx2, NULL));
  test_assert_same_bits(ctx, tdx2, tdx);
  /* The block's backward asks for GELU(x + b) in the same pass (internal
   * op): m2pt_gelu's bits, and dx's unchanged. */
  m2pt_tensor *act = test_tensor(ctx, 2, shape, NULL), *fwd = test_tensor(ctx, 2, shape, NULL);
  assert_ok(ctx, m2pt_gelu(ctx, tx, tb, kind, fwd));
  assert_ok(ctx, m2pt_tensor_write(tdx2, dy, n));
  assert_ok(ctx, m2pt_op_gelu_backward(ctx, tdx2->buffer, tx->buffer, tb ? tb->buffer : NULL,
                                       kind, n, cols, tdx2->buffer, act->buffer));
  test_assert_same_bits(ctx, act, fwd);
  test_assert_same_bits(ctx, tdx2, tdx);
  m2pt_tensor *all[] = {tx, tb, tdy, tdx, tdx2, tdb, tdb2, act, fwd};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    m2pt_tensor_destroy(all[i]);
  void *host[] = {x, b, dy, dx, db, gx, gb};
  for (size_t i = 0; i < sizeof host / sizeof *host; i++)
    free(host[i]);
}

static void gelu_backward(void **state)
{
  m2pt_context *ctx = *state;
  /* The reference's derivative against finite differences of the double
   * forward over [-10, 10], both forms. */
  for (int tanh_form = 0; tanh_form < 2; tanh_form++) {
    double worst = 0.0;
    for (double u = -10.0; u <= 10.0; u += 0.01) {
      const double h = 1e-5;
      const double fd = (ref_gelu(u + h, tanh_form) - ref_gelu(u - h, tanh_form)) / (2.0 * h);
      worst = fmax(worst, fabs(fd - ref_gelu_grad(u, tanh_form)));
    }
    if (worst > FD_TOL) {
      print_error("gelu'(%s) vs finite differences: %g\n", tanh_form ? "tanh" : "erf", worst);
      fail();
    }
  }
  size_t k = 0;
  for (size_t ri = 0; ri < n_rows(); ri++)
    for (size_t wi = 0; wi < n_widths(); wi++, k++)
      for (int tanh_form = 0; tanh_form < 2; tanh_form++)
        check_gelu(ctx, row_counts[ri], widths[wi], tanh_form, (int)((k + tanh_form) % 2));
}

/* ---- Residual and bias adds ---- */

static void add_backward(void **state)
{
  m2pt_context *ctx = *state;
  for (size_t ri = 0; ri < n_rows(); ri++)
    for (size_t wi = 0; wi < n_widths(); wi++) {
      const size_t rows = row_counts[ri], cols = widths[wi], n = rows * cols;
      float *dy = test_random_floats(n, 40 + rows, 1.0f), *acc = test_random_floats(n, 41, 1.0f);
      const size_t shape[2] = {rows, cols}, vshape[1] = {cols};
      m2pt_tensor *tdy = test_tensor(ctx, 2, shape, dy), *tacc = test_tensor(ctx, 2, shape, acc);
      m2pt_tensor *tdb = test_tensor(ctx, 1, vshape, NULL);
      m2pt_tensor *tdb2 = test_tensor(ctx, 1, vshape, NULL);
      double *db = test_alloc(cols * sizeof *db), *sum = test_alloc(n * sizeof *sum);
      for (size_t c = 0; c < cols; c++)
        db[c] = 0.0;
      for (size_t i = 0; i < n; i++) {
        db[i % cols] += dy[i];
        sum[i] = (double)acc[i] + dy[i];
      }
      /* y = a + b (b broadcast): db = Σ_rows dy, deterministic. */
      assert_ok(ctx, m2pt_sum_rows(ctx, tdy, tdb));
      assert_ok(ctx, m2pt_sum_rows(ctx, tdy, tdb2));
      float *gb = test_read(ctx, tdb);
      test_assert_close(gb, db, cols, 1e-5, "sum_rows");
      test_assert_same_bits(ctx, tdb, tdb2);
      /* Two paths meeting: dx += dy. */
      assert_ok(ctx, m2pt_add(ctx, tacc, tdy, tacc));
      float *ga = test_read(ctx, tacc);
      test_assert_close(ga, sum, n, 1e-6, "dx += dy");
      m2pt_tensor_destroy(tdy);
      m2pt_tensor_destroy(tacc);
      m2pt_tensor_destroy(tdb);
      m2pt_tensor_destroy(tdb2);
      void *host[] = {dy, acc, db, sum, gb, ga};
      for (size_t i = 0; i < sizeof host / sizeof *host; i++)
        free(host[i]);
    }
}

/* ---- Softmax ---- */

/* mask [rows][cols]: scattered padding, and every fifth row from the
 * third on all padding. */
static float *make_mask(size_t rows, size_t cols)
{
  float *m = test_alloc(rows * cols * sizeof *m);
  for (size_t r = 0; r < rows; r++)
    for (size_t j = 0; j < cols; j++)
      m[r * cols + j] = r % 5 == 2 ? 0.0f : ((r * 7 + j * 3) % 4 != 1 || j == 0) ? 1.0f : 0.0f;
  return m;
}

static void softmax_finite_differences(void **state)
{
  (void)state;
  enum { ROWS = 4, COLS = 5 };
  const double scale = 0.5, h = 1e-5;
  float *xf = test_random_floats(ROWS * COLS, 50, 3.0f);
  float *dyf = test_random_floats(ROWS * COLS, 51, 1.0f);
  float *mask = make_mask(ROWS, COLS);
  double *x = test_widen(xf, ROWS * COLS), *dy = test_widen(dyf, ROWS * COLS);
  double y[ROWS * COLS], up[ROWS * COLS], down[ROWS * COLS], dx[ROWS * COLS], fd[ROWS * COLS];
  for (int masked = 0; masked < 2; masked++) {
    const float *m = masked ? mask : NULL;
    for (size_t i = 0; i < ROWS * COLS; i++) {
      const double saved = x[i];
      double lu = 0.0, ld = 0.0;
      x[i] = saved + h;
      ref_softmax(x, ROWS, COLS, scale, m, 1, up);
      x[i] = saved - h;
      ref_softmax(x, ROWS, COLS, scale, m, 1, down);
      x[i] = saved;
      for (size_t j = 0; j < ROWS * COLS; j++) {
        lu += dy[j] * up[j];
        ld += dy[j] * down[j];
      }
      fd[i] = (lu - ld) / (2.0 * h);
    }
    ref_softmax(x, ROWS, COLS, scale, m, 1, y);
    ref_softmax_backward(dy, y, ROWS, COLS, scale, m, 1, dx);
    test_assert_fd(dx, fd, ROWS * COLS, FD_TOL, masked ? "softmax dx, masked" : "softmax dx");
  }
  free(xf);
  free(dyf);
  free(mask);
  free(x);
  free(dy);
}

static void check_softmax(m2pt_context *ctx, size_t rows, size_t cols, float scale, int masking)
{
  const size_t n = rows * cols;
  float *x = test_random_floats(n, 60 + cols, 3.0f), *dy = test_random_floats(n, 61 + rows, 1.0f);
  /* masking 1: a mask row per row; 2: one mask row for all rows. */
  const size_t groups = masking == 1 ? rows : 1;
  float *mask = make_mask(groups, cols);
  const size_t shape[2] = {rows, cols}, mshape[2] = {groups, cols};
  m2pt_tensor *tx = test_tensor(ctx, 2, shape, x), *ty = test_tensor(ctx, 2, shape, NULL);
  m2pt_tensor *tm = masking ? test_tensor(ctx, 2, mshape, mask) : NULL;
  m2pt_tensor *tdy = test_tensor(ctx, 2, shape, dy), *tdx = test_tensor(ctx, 2, shape, NULL);
  m2pt_tensor *tdx2 = test_tensor(ctx, 2, shape, NULL);
  assert_ok(ctx, m2pt_softmax(ctx, tx, scale, tm, ty));
  float *y = test_read(ctx, ty);
  double *yd = test_widen(y, n), *dyd = test_widen(dy, n), *dx = test_alloc(n * sizeof *dx);
  ref_softmax_backward(dyd, yd, rows, cols, scale, masking ? mask : NULL, rows / groups, dx);
  assert_ok(ctx, m2pt_softmax_backward(ctx, tdy, ty, scale, tm, tdx));
  float *g = test_read(ctx, tdx);
  test_assert_close(g, dx, n, 1e-5, "softmax dx");
  for (size_t i = 0; i < n; i++) {
    assert_true(isfinite(g[i]));
    if (masking && mask[(i / cols / (rows / groups)) * cols + i % cols] == 0.0f)
      assert_true(g[i] == 0.0f); /* masked keys, all-padding rows included */
  }
  /* Twice, and in place over dy: the same bits. */
  assert_ok(ctx, m2pt_softmax_backward(ctx, tdy, ty, scale, tm, tdx2));
  test_assert_same_bits(ctx, tdx2, tdx);
  assert_ok(ctx, m2pt_tensor_write(tdx2, dy, n));
  assert_ok(ctx, m2pt_softmax_backward(ctx, tdx2, ty, scale, tm, tdx2));
  test_assert_same_bits(ctx, tdx2, tdx);
  m2pt_tensor *all[] = {tx, ty, tm, tdy, tdx, tdx2};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    m2pt_tensor_destroy(all[i]);
  void *host[] = {x, dy, mask, y, yd, dyd, dx, g};
  for (size_t i = 0; i < sizeof host / sizeof *host; i++)
    free(host[i]);
}

static void softmax_backward(void **state)
{
  m2pt_context *ctx = *state;
  size_t k = 0;
  for (size_t ri = 0; ri < n_rows(); ri++)
    for (size_t wi = 0; wi < n_widths(); wi++, k++)
      check_softmax(ctx, row_counts[ri], widths[wi], k % 2 ? 0.125f : 1.0f, (int)(k % 3));
  /* A single all-padding row: zeros, no NaN. */
  check_softmax(ctx, 3, 5, 1.0f, 1);
}

/* ---- Rejected inputs: the right status, nothing written ---- */

static void assert_untouched(m2pt_context *ctx, const m2pt_tensor *t, float value)
{
  float *h = test_read(ctx, t);
  for (size_t i = 0; i < m2pt_tensor_numel(t); i++)
    assert_true(h[i] == value);
  free(h);
}

static void bad_inputs(void **state)
{
  m2pt_context *ctx = *state;
  const size_t s23[2] = {2, 3}, s32[2] = {3, 2}, v3[1] = {3}, v2[1] = {2}, v4[1] = {4};
  const float sevens[6] = {7, 7, 7, 7, 7, 7};
  m2pt_tensor *x = test_tensor(ctx, 2, s23, NULL), *dy = test_tensor(ctx, 2, s23, NULL);
  m2pt_tensor *dx = test_tensor(ctx, 2, s23, sevens), *xt = test_tensor(ctx, 2, s32, sevens);
  m2pt_tensor *w = test_tensor(ctx, 1, v3, NULL), *stats = test_tensor(ctx, 1, v2, NULL);
  m2pt_tensor *dw = test_tensor(ctx, 1, v3, sevens), *dw4 = test_tensor(ctx, 1, v4, sevens);
  m2pt_tensor *st4 = test_tensor(ctx, 1, v4, NULL), *mask = test_tensor(ctx, 2, s32, NULL);
  m2pt_context *other = test_context();
  m2pt_tensor *foreign = test_tensor(other, 2, s23, NULL);

  /* LayerNorm. */
  assert_status(ctx, m2pt_layer_norm_train(ctx, x, w, NULL, 1e-5f, dx, st4, stats),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_layer_norm_train(ctx, x, w, NULL, 1e-5f, dx, NULL, stats),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_layer_norm_train(ctx, x, w, NULL, -1.0f, dx, stats, stats),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_layer_norm_backward(NULL, dy, x, w, stats, stats, dx, dw, dw),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_layer_norm_backward(ctx, NULL, x, w, stats, stats, dx, dw, dw),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_layer_norm_backward(ctx, dy, x, w, NULL, stats, dx, dw, dw),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_layer_norm_backward(ctx, dy, x, w, stats, st4, dx, dw, dw),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_layer_norm_backward(ctx, xt, x, w, stats, stats, dx, dw, dw),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_layer_norm_backward(ctx, dy, x, w, stats, stats, xt, dw, dw),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_layer_norm_backward(ctx, dy, x, w, stats, stats, dx, dw, dw4),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_layer_norm_backward(ctx, dy, x, dw4, stats, stats, dx, dw, dw),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_layer_norm_backward(ctx, foreign, x, w, stats, stats, dx, dw, dw),
                M2PT_ERR_CONTEXT_MISMATCH);
  assert_status(ctx, m2pt_layer_norm_backward(ctx, dy, x, w, stats, stats, dx, dw, foreign),
                M2PT_ERR_CONTEXT_MISMATCH);
  /* GELU. */
  assert_status(ctx, m2pt_gelu_backward(ctx, dy, x, NULL, (m2pt_gelu_kind)5, dx, dw),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_gelu_backward(ctx, dy, NULL, NULL, M2PT_GELU_ERF, dx, dw),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_gelu_backward(ctx, xt, x, NULL, M2PT_GELU_ERF, dx, dw),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_gelu_backward(ctx, dy, x, dw4, M2PT_GELU_ERF, dx, dw),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_gelu_backward(ctx, dy, x, NULL, M2PT_GELU_TANH, dx, dw4),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_gelu_backward(ctx, dy, x, NULL, M2PT_GELU_TANH, xt, dw),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_gelu_backward(ctx, dy, foreign, NULL, M2PT_GELU_TANH, dx, dw),
                M2PT_ERR_CONTEXT_MISMATCH);
  /* Sums over rows. */
  assert_status(ctx, m2pt_sum_rows(ctx, dy, dw4), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_sum_rows(ctx, dy, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_sum_rows(ctx, foreign, dw), M2PT_ERR_CONTEXT_MISMATCH);
  /* Softmax: a [3][2] mask does not fit rows of 3. */
  assert_status(ctx, m2pt_softmax_backward(ctx, dy, x, 1.0f, mask, dx), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_softmax_backward(ctx, dy, x, NAN, NULL, dx),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_softmax_backward(ctx, xt, x, 1.0f, NULL, dx), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_softmax_backward(ctx, dy, x, 1.0f, NULL, xt), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_softmax_backward(ctx, NULL, x, 1.0f, NULL, dx),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_softmax_backward(ctx, dy, x, 1.0f, NULL, foreign),
                M2PT_ERR_CONTEXT_MISMATCH);
  assert_status(NULL, m2pt_softmax_backward(NULL, dy, x, 1.0f, NULL, dx),
                M2PT_ERR_INVALID_ARGUMENT);

  /* Nothing was written; nothing asked is nothing done. */
  assert_ok(ctx, m2pt_layer_norm_backward(ctx, dy, x, w, stats, stats, NULL, NULL, NULL));
  assert_ok(ctx, m2pt_gelu_backward(ctx, dy, x, NULL, M2PT_GELU_ERF, NULL, NULL));
  assert_untouched(ctx, dx, 7.0f);
  assert_untouched(ctx, xt, 7.0f);
  assert_untouched(ctx, dw, 7.0f);
  assert_untouched(ctx, dw4, 7.0f);
  /* And the context still works. */
  assert_ok(ctx, m2pt_sum_rows(ctx, dy, dw));

  m2pt_tensor_destroy(foreign);
  m2pt_context_destroy(other);
  m2pt_tensor *all[] = {x, dy, dx, xt, w, stats, dw, dw4, st4, mask};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    m2pt_tensor_destroy(all[i]);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(layer_norm_finite_differences),
      cmocka_unit_test(layer_norm_backward),
      cmocka_unit_test(layer_norm_backward_variants),
      cmocka_unit_test(gelu_backward),
      cmocka_unit_test(add_backward),
      cmocka_unit_test(softmax_finite_differences),
      cmocka_unit_test(softmax_backward),
      cmocka_unit_test(bad_inputs),
  };
  return test_run_matrix("grad_ops", TEST_AXIS_LAYER_NORM | TEST_AXIS_GELU | TEST_AXIS_SOFTMAX,
                         tests, NULL, NULL);
}
