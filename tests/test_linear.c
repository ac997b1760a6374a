/* The cross-modal re-parameterized linear against the reference: λ = 0,
 * λ ≠ 0, aux bias, merge, changing λ, and every rejected input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "m2pt/opencl.h"
#include "nn/linear_internal.h"
#include "reference.h"
#include "test_util.h"

typedef test_linear_params params;

/* Runs the layer on x [rows][in] and returns y [rows][out] (caller frees). */
static float *run(m2pt_context *ctx, m2pt_linear *l, const float *x, size_t rows, size_t in,
                  size_t out)
{
  const size_t sx[2] = {rows, in}, sy[2] = {rows, out};
  m2pt_tensor *tx = test_tensor(ctx, 2, sx, x), *ty = test_tensor(ctx, 2, sy, NULL);
  float *y = test_alloc(rows * out * sizeof *y);
  assert_ok(ctx, m2pt_linear_forward(l, tx, ty));
  assert_ok(ctx, m2pt_tensor_read(ty, y, rows * out));
  m2pt_tensor_destroy(tx);
  m2pt_tensor_destroy(ty);
  return y;
}

typedef struct layer_shape {
  size_t rows, in, out;
} layer_shape;

static const layer_shape full_shapes[] = {{1, 1, 1}, {3, 17, 5}, {17, 3, 197}, {197, 768, 17},
                                          {7, 197, 768}};
static const layer_shape small_shapes[] = {{1, 1, 1}, {3, 17, 5}, {7, 3, 9}};

static const layer_shape *shapes(size_t *count)
{
  *count = test_small() ? sizeof small_shapes / sizeof *small_shapes
                        : sizeof full_shapes / sizeof *full_shapes;
  return test_small() ? small_shapes : full_shapes;
}

/* Every flag combination and λ against the reference, before and after merge. */
static void linear_against_reference(void **state)
{
  m2pt_context *ctx = *state;
  const unsigned flag_sets[] = {0, M2PT_LINEAR_BIAS, M2PT_LINEAR_PATHWAY,
                                M2PT_LINEAR_PATHWAY | M2PT_LINEAR_BIAS,
                                M2PT_LINEAR_PATHWAY | M2PT_LINEAR_PATHWAY_BIAS};
  const float scales[] = {0.0f, 0.75f, -1.5f};
  size_t nshapes;
  const layer_shape *list = shapes(&nshapes);
  for (size_t si = 0; si < nshapes; si++) {
    const layer_shape s = list[si];
    params p = test_linear_params_make(s.in, s.out, 100 + si);
    float *x = test_alloc(s.rows * s.in * sizeof *x);
    double *ref = test_alloc(s.rows * s.out * sizeof *ref);
    test_fill(x, s.rows * s.in, 7 + si);
    for (size_t fi = 0; fi < sizeof flag_sets / sizeof *flag_sets; fi++) {
      const unsigned f = flag_sets[fi];
      for (size_t li = 0; li < ((f & M2PT_LINEAR_PATHWAY) ? 3u : 1u); li++) {
        const float scale = scales[li];
        m2pt_linear *l = test_linear_layer(ctx, &p, f, scale);
        ref_linear(x, s.rows, s.in, s.out, p.w, (f & M2PT_LINEAR_PATHWAY) ? p.w_aux : NULL, scale,
                   (f & (M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY_BIAS)) ? p.b : NULL,
                   (f & M2PT_LINEAR_PATHWAY_BIAS) ? p.b_aux : NULL, ref);
        float *before = run(ctx, l, x, s.rows, s.in, s.out);
        test_assert_close(before, ref, s.rows * s.out, 1e-4, "linear unmerged");
        assert_ok(ctx, m2pt_linear_merge(l));
        float *after = run(ctx, l, x, s.rows, s.in, s.out);
        test_assert_close(after, ref, s.rows * s.out, 1e-4, "linear merged");
        /* The merged weight is the unmerged effective weight, bit for bit,
         * and the GEMM is the same call: the outputs are identical. */
        assert_memory_equal(before, after, s.rows * s.out * sizeof *before);
        free(before);
        free(after);
        m2pt_linear_destroy(l);
      }
    }
    free(x);
    free(ref);
    test_linear_params_free(&p);
  }
}

/* λ = 0 is exactly the plain linear (the paper's initialisation). */
static void zero_scale_is_plain_linear(void **state)
{
  m2pt_context *ctx = *state;
  const layer_shape s = {5, 17, 9};
  params p = test_linear_params_make(s.in, s.out, 3);
  float *x = test_alloc(s.rows * s.in * sizeof *x);
  test_fill(x, s.rows * s.in, 4);
  m2pt_linear *plain = test_linear_layer(ctx, &p, M2PT_LINEAR_BIAS, 0.0f);
  m2pt_linear *reparam = test_linear_layer(ctx, &p, M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY, 0.0f);
  assert_true(m2pt_linear_has_pathway(reparam));
  assert_false(m2pt_linear_has_pathway(plain));
  float *y0 = run(ctx, plain, x, s.rows, s.in, s.out);
  float *y1 = run(ctx, reparam, x, s.rows, s.in, s.out);
  assert_memory_equal(y0, y1, s.rows * s.out * sizeof *y0);
  free(y0);
  free(y1);
  free(x);
  test_linear_params_free(&p);
  m2pt_linear_destroy(plain);
  m2pt_linear_destroy(reparam);
}

/* run() three times, returning the last output: on oneDNN the second
 * forward with unchanged parameters packs the weight and the third reuses
 * the packed copy (gemm/backend.h, m2pt_gemm_packed). */
static float *run_repeated(m2pt_context *ctx, m2pt_linear *l, const float *x, size_t rows,
                           size_t in, size_t out)
{
  free(run(ctx, l, x, rows, in, out));
  free(run(ctx, l, x, rows, in, out));
  return run(ctx, l, x, rows, in, out);
}

/* Forwards of one layer over different row counts, in turn and repeated:
 * the primitive oneDNN keeps with a packed weight is made again for each new
 * call and reused only for the same one. */
static void row_counts_in_turn(void **state)
{
  m2pt_context *ctx = *state;
  const size_t in = 6, out = 5, order[] = {3, 3, 3, 7, 3, 7, 7, 1, 3};
  params p = test_linear_params_make(in, out, 21);
  float *x = test_alloc(7 * in * sizeof *x);
  double *ref = test_alloc(7 * out * sizeof *ref);
  test_fill(x, 7 * in, 22);
  m2pt_linear *l = test_linear_layer(ctx, &p, M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY, 0.25f);
  for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
    float *y = run(ctx, l, x, order[i], in, out);
    ref_linear(x, order[i], in, out, p.w, p.w_aux, 0.25, p.b, NULL, ref);
    char what[32];
    snprintf(what, sizeof what, "forward %zu (%zu rows)", i, order[i]);
    test_assert_close(y, ref, order[i] * out, 1e-4, what);
    free(y);
  }
  m2pt_linear_destroy(l);
  test_linear_params_free(&p);
  free(x);
  free(ref);
}

/* One layer's fused forwards (m2pt_linear_apply_fused) with different
 * epilogues in turn, twice over: none, GELU (erf), GELU (tanh), a residual.
 * Where the GEMM keeps its primitive with the packed weight, each must get
 * its own. Inputs up to ±3 put GELU's outputs where its two forms differ
 * by more than the tolerance. */
static void epilogues_in_turn(void **state)
{
  m2pt_context *ctx = *state;
  const size_t rows = 4, in = 6, out = 5;
  params p = test_linear_params_make(in, out, 31);
  float *x = test_alloc(rows * in * sizeof *x), *r = test_alloc(rows * out * sizeof *r);
  float *y = test_alloc(rows * out * sizeof *y);
  double *ref = test_alloc(rows * out * sizeof *ref);
  test_fill(x, rows * in, 32);
  test_fill(r, rows * out, 33);
  for (size_t i = 0; i < rows * in; i++)
    x[i] *= 3.0f;
  const size_t sx[2] = {rows, in}, sy[2] = {rows, out};
  m2pt_tensor *tx = test_tensor(ctx, 2, sx, x), *tr = test_tensor(ctx, 2, sy, r);
  m2pt_tensor *ty = test_tensor(ctx, 2, sy, NULL);
  m2pt_linear *l = test_linear_layer(ctx, &p, M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY, 0.5f);
  static const char *const name[] = {"none", "GELU (erf)", "GELU (tanh)", "residual"};
  for (int round = 0; round < 2; round++)
    for (int kind = 0; kind < 4; kind++) {
      m2pt_linear_fusion f = {0};
      f.gelu = kind == 1 || kind == 2;
      f.gelu_kind = kind == 2 ? M2PT_GELU_TANH : M2PT_GELU_ERF;
      f.residual = kind == 3 ? m2pt_tensor_buffer(tr) : NULL;
      assert_ok(ctx, m2pt_linear_apply_fused(l, m2pt_tensor_buffer(tx), rows, &f,
                                             m2pt_tensor_buffer(ty)));
      assert_ok(ctx, m2pt_tensor_read(ty, y, rows * out));
      ref_linear(x, rows, in, out, p.w, p.w_aux, 0.5, p.b, NULL, ref);
      for (size_t i = 0; i < rows * out; i++)
        ref[i] = f.gelu ? ref_gelu(ref[i], kind == 2) : kind == 3 ? ref[i] + r[i] : ref[i];
      test_assert_close(y, ref, rows * out, 1e-4, name[kind]);
    }
  m2pt_linear_destroy(l);
  m2pt_tensor_destroy(tx);
  m2pt_tensor_destroy(tr);
  m2pt_tensor_destroy(ty);
  test_linear_params_free(&p);
  free(x);
  free(r);
  free(y);
  free(ref);
}

/* A new λ, W or W_aux after a forward is honoured by the next forward, also
 * after forwards that packed the weight. */
static void changes_after_forward(void **state)
{
  m2pt_context *ctx = *state;
  const layer_shape s = {4, 6, 5};
  params p = test_linear_params_make(s.in, s.out, 9);
  float *x = test_alloc(s.rows * s.in * sizeof *x);
  double *ref = test_alloc(s.rows * s.out * sizeof *ref);
  test_fill(x, s.rows * s.in, 10);
  m2pt_linear *l = test_linear_layer(ctx, &p, M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY, 0.5f);
  float *y = run_repeated(ctx, l, x, s.rows, s.in, s.out);
  ref_linear(x, s.rows, s.in, s.out, p.w, p.w_aux, 0.5, p.b, NULL, ref);
  test_assert_close(y, ref, s.rows * s.out, 1e-4, "λ = 0.5");
  free(y);

  assert_ok(ctx, m2pt_linear_set_scale(l, -2.0f));
  float got;
  assert_ok(ctx, m2pt_linear_get_scale(l, &got));
  assert_true(got == -2.0f);
  y = run_repeated(ctx, l, x, s.rows, s.in, s.out);
  ref_linear(x, s.rows, s.in, s.out, p.w, p.w_aux, -2.0, p.b, NULL, ref);
  test_assert_close(y, ref, s.rows * s.out, 1e-4, "λ changed to -2");
  free(y);

  test_fill(p.w_aux, s.in * s.out, 77);
  assert_ok(ctx, m2pt_linear_set_aux_weight(l, p.w_aux, s.in * s.out));
  y = run_repeated(ctx, l, x, s.rows, s.in, s.out);
  ref_linear(x, s.rows, s.in, s.out, p.w, p.w_aux, -2.0, p.b, NULL, ref);
  test_assert_close(y, ref, s.rows * s.out, 1e-4, "W_aux changed");
  free(y);

  test_fill(p.w, s.in * s.out, 78);
  assert_ok(ctx, m2pt_linear_set_weight(l, p.w, s.in * s.out));
  y = run_repeated(ctx, l, x, s.rows, s.in, s.out);
  ref_linear(x, s.rows, s.in, s.out, p.w, p.w_aux, -2.0, p.b, NULL, ref);
  test_assert_close(y, ref, s.rows * s.out, 1e-4, "W changed");
  free(y);

  /* Getters return what was set. */
  float *back = test_alloc(s.in * s.out * sizeof *back);
  assert_ok(ctx, m2pt_linear_get_weight(l, back, s.in * s.out));
  assert_memory_equal(back, p.w, s.in * s.out * sizeof *back);
  assert_ok(ctx, m2pt_linear_get_aux_weight(l, back, s.in * s.out));
  assert_memory_equal(back, p.w_aux, s.in * s.out * sizeof *back);
  assert_ok(ctx, m2pt_linear_get_bias(l, back, s.out));
  assert_memory_equal(back, p.b, s.out * sizeof *back);
  free(back);
  free(x);
  free(ref);
  test_linear_params_free(&p);
  m2pt_linear_destroy(l);
}

/* Merge folds λ·W_aux into W, frees the aux weights, and is idempotent. */
static void merge_semantics(void **state)
{
  m2pt_context *ctx = *state;
  const layer_shape s = {3, 4, 6};
  params p = test_linear_params_make(s.in, s.out, 20);
  float *x = test_alloc(s.rows * s.in * sizeof *x);
  test_fill(x, s.rows * s.in, 21);
  m2pt_linear *l = test_linear_layer(ctx, &p, M2PT_LINEAR_PATHWAY | M2PT_LINEAR_PATHWAY_BIAS, 0.25f);
  m2pt_stats before, after;
  assert_ok(ctx, m2pt_context_stats(ctx, &before));
  /* Merge without any forward first: it forms the weight itself. */
  assert_false(m2pt_linear_is_merged(l));
  assert_ok(ctx, m2pt_linear_merge(l));
  assert_true(m2pt_linear_is_merged(l));
  assert_false(m2pt_linear_has_pathway(l));
  assert_ok(ctx, m2pt_context_stats(ctx, &after));
  /* W_aux and b_aux are gone; W and b were replaced in place. */
  assert_int_equal(before.device_bytes_live - after.device_bytes_live,
                   (s.in * s.out + s.out) * sizeof(float));

  float *w = test_alloc(s.in * s.out * sizeof *w);
  float b[6];
  assert_ok(ctx, m2pt_linear_get_weight(l, w, s.in * s.out));
  assert_ok(ctx, m2pt_linear_get_bias(l, b, s.out));
  for (size_t i = 0; i < s.in * s.out; i++)
    assert_true(w[i] == fmaf(0.25f, p.w_aux[i], p.w[i]));
  for (size_t i = 0; i < s.out; i++)
    assert_true(b[i] == fmaf(0.25f, p.b_aux[i], p.b[i]));

  float *y1 = run(ctx, l, x, s.rows, s.in, s.out);
  /* A second merge changes nothing. */
  assert_ok(ctx, m2pt_linear_merge(l));
  assert_true(m2pt_linear_is_merged(l));
  float *y2 = run(ctx, l, x, s.rows, s.in, s.out);
  assert_memory_equal(y1, y2, s.rows * s.out * sizeof *y1);

  /* The pathway is gone: its parameters are refused with a clear status. */
  float scale;
  assert_status(ctx, m2pt_linear_set_scale(l, 1.0f), M2PT_ERR_INVALID_STATE);
  assert_status(ctx, m2pt_linear_get_scale(l, &scale), M2PT_ERR_INVALID_STATE);
  assert_status(ctx, m2pt_linear_set_aux_weight(l, p.w_aux, s.in * s.out),
                M2PT_ERR_INVALID_STATE);
  assert_non_null(strstr(m2pt_last_error(ctx), "merged"));
  assert_status(ctx, m2pt_linear_get_aux_bias(l, b, s.out), M2PT_ERR_INVALID_STATE);
  /* ... and the layer still works. */
  float *y3 = run(ctx, l, x, s.rows, s.in, s.out);
  assert_memory_equal(y1, y3, s.rows * s.out * sizeof *y1);

  /* Merging a plain layer is a no-op too. */
  m2pt_linear *plain = test_linear_layer(ctx, &p, 0, 0.0f);
  assert_ok(ctx, m2pt_linear_merge(plain));
  assert_false(m2pt_linear_is_merged(plain));
  m2pt_linear_destroy(plain);

  free(y1);
  free(y2);
  free(y3);
  free(w);
  free(x);
  test_linear_params_free(&p);
  m2pt_linear_destroy(l);
}

/* Leading dimensions pass through: [B][N][in] → [B][N][out]. */
static void batched_input(void **state)
{
  m2pt_context *ctx = *state;
  params p = test_linear_params_make(5, 3, 30);
  m2pt_linear *l = test_linear_layer(ctx, &p, M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY, 1.0f);
  const size_t sx[3] = {2, 4, 5}, sy[3] = {2, 4, 3};
  float x[40], y[24];
  double ref[24];
  test_fill(x, 40, 31);
  m2pt_tensor *tx = test_tensor(ctx, 3, sx, x), *ty = test_tensor(ctx, 3, sy, NULL);
  assert_ok(ctx, m2pt_linear_forward(l, tx, ty));
  assert_ok(ctx, m2pt_tensor_read(ty, y, 24));
  ref_linear(x, 8, 5, 3, p.w, p.w_aux, 1.0, p.b, NULL, ref);
  test_assert_close(y, ref, 24, 1e-4, "3-D input");
  m2pt_tensor_destroy(tx);
  m2pt_tensor_destroy(ty);
  m2pt_linear_destroy(l);
  test_linear_params_free(&p);
}

static void bad_inputs(void **state)
{
  m2pt_context *ctx = *state;
  params p = test_linear_params_make(4, 3, 40);
  m2pt_linear *l = NULL;
  assert_status(ctx, m2pt_linear_create(ctx, 0, 3, 0, &l), M2PT_ERR_INVALID_ARGUMENT);
  assert_null(l);
  assert_status(ctx, m2pt_linear_create(ctx, SIZE_MAX / 2, 3, 0, &l), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_linear_create(ctx, 4, 3, 64u, &l), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_linear_create(ctx, 4, 3, M2PT_LINEAR_PATHWAY_BIAS, &l),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_linear_create(ctx, 4, 3, 0, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_linear_create(NULL, 4, 3, 0, &l), M2PT_ERR_INVALID_ARGUMENT);
  /* Larger than the device allows. */
  m2pt_device_info info;
  assert_ok(ctx, m2pt_context_device_info(ctx, &info));
  assert_status(ctx,
                m2pt_linear_create(ctx, (size_t)(info.max_alloc_bytes / sizeof(float)) + 1, 1, 0,
                                   &l),
                M2PT_ERR_DEVICE_OUT_OF_MEMORY);
  assert_null(l);

  l = test_linear_layer(ctx, &p, M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY, 0.5f);
  float x[8], y_ok[6];
  double ref[6];
  test_fill(x, 8, 41);
  ref_linear(x, 2, 4, 3, p.w, p.w_aux, 0.5, p.b, NULL, ref);

  /* Aux shape ≠ weight shape, wrong bias length, NULLs, non-finite λ. */
  assert_status(ctx, m2pt_linear_set_aux_weight(l, p.w_aux, 11), M2PT_ERR_SHAPE);
  assert_non_null(strstr(m2pt_last_error(ctx), "aux_weight"));
  assert_status(ctx, m2pt_linear_set_weight(l, p.w, 13), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_linear_set_bias(l, p.b, 4), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_linear_set_weight(l, NULL, 12), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_linear_set_weight(NULL, p.w, 12), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_linear_set_aux_bias(l, p.b_aux, 3), M2PT_ERR_INVALID_STATE);
  assert_status(ctx, m2pt_linear_set_scale(l, NAN), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_linear_set_scale(l, INFINITY), M2PT_ERR_INVALID_ARGUMENT);
  float scale = 0;
  assert_ok(ctx, m2pt_linear_get_scale(l, &scale));
  assert_true(scale == 0.5f);

  /* Wrong input or output shapes, y = x, tensors of another context. */
  const size_t s24[2] = {2, 4}, s25[2] = {2, 5}, s23[2] = {2, 3}, s33[2] = {3, 3};
  const size_t s123[3] = {1, 2, 3};
  m2pt_tensor *x_ok = test_tensor(ctx, 2, s24, x), *x_bad = test_tensor(ctx, 2, s25, NULL);
  m2pt_tensor *y = test_tensor(ctx, 2, s23, NULL), *y_rows = test_tensor(ctx, 2, s33, NULL);
  m2pt_tensor *y_rank = test_tensor(ctx, 3, s123, NULL);
  assert_status(ctx, m2pt_linear_forward(l, x_bad, y), M2PT_ERR_SHAPE);
  assert_non_null(strstr(m2pt_last_error(ctx), "[2][5]"));
  assert_status(ctx, m2pt_linear_forward(l, x_ok, y_rows), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_linear_forward(l, x_ok, y_rank), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_linear_forward(l, x_ok, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_linear_forward(l, y, y), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_linear_forward(NULL, x_ok, y), M2PT_ERR_INVALID_ARGUMENT);
  m2pt_context *other = test_context();
  m2pt_tensor *foreign = test_tensor(other, 2, s24, x);
  assert_status(ctx, m2pt_linear_forward(l, foreign, y), M2PT_ERR_CONTEXT_MISMATCH);
  m2pt_tensor_destroy(foreign);
  m2pt_context_destroy(other);

  /* After all that, the layer computes what it did before. */
  assert_ok(ctx, m2pt_linear_forward(l, x_ok, y));
  assert_ok(ctx, m2pt_tensor_read(y, y_ok, 6));
  test_assert_close(y_ok, ref, 6, 1e-4, "layer after rejected calls");

  /* A plain layer has no pathway to set. */
  m2pt_linear *plain = test_linear_layer(ctx, &p, 0, 0.0f);
  assert_status(ctx, m2pt_linear_set_scale(plain, 1.0f), M2PT_ERR_INVALID_STATE);
  assert_status(ctx, m2pt_linear_set_bias(plain, p.b, 3), M2PT_ERR_INVALID_STATE);
  assert_status(ctx, m2pt_linear_get_aux_weight(plain, p.w_aux, 12), M2PT_ERR_INVALID_STATE);
  m2pt_linear_destroy(plain);
  m2pt_linear_destroy(NULL);

  m2pt_tensor_destroy(x_ok);
  m2pt_tensor_destroy(x_bad);
  m2pt_tensor_destroy(y);
  m2pt_tensor_destroy(y_rows);
  m2pt_tensor_destroy(y_rank);
  m2pt_linear_destroy(l);
  test_linear_params_free(&p);
  /* Everything the suite made is gone. */
  m2pt_stats stats;
  assert_ok(ctx, m2pt_context_stats(ctx, &stats));
  assert_int_equal(stats.device_bytes_live, 0);
}

/* A context on the default device that times its kernels. */
static m2pt_context *profiling_context(void)
{
  m2pt_context_options opts = m2pt_context_options_default();
  opts.flags = M2PT_CONTEXT_PROFILING;
  m2pt_context *ctx = NULL;
  assert_ok(NULL, m2pt_context_create(&opts, &ctx));
  return ctx;
}

/* Profiling contexts time our own kernels (used by m2pt-bench). */
static void kernel_time(void **state)
{
  (void)state;
  m2pt_context *ctx = profiling_context();
  params p = test_linear_params_make(8, 4, 50);
  m2pt_linear *l = test_linear_layer(ctx, &p, M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY, 0.5f);
  float x[16];
  test_fill(x, 16, 51);
  free(run(ctx, l, x, 2, 8, 4));
  double ms = -1.0;
  assert_ok(ctx, m2pt_context_kernel_time(ctx, &ms));
  assert_true(ms >= 0.0);
  assert_ok(ctx, m2pt_context_kernel_time(ctx, &ms));
  assert_true(ms == 0.0); /* nothing enqueued since */
  /* More kernels than the context keeps events for: they are summed as
   * they go, not lost. */
  const size_t shape[1] = {16};
  m2pt_tensor *t = test_tensor(ctx, 1, shape, NULL);
  for (int i = 0; i < 300; i++)
    assert_ok(ctx, m2pt_gelu(ctx, t, NULL, M2PT_GELU_ERF, t));
  m2pt_tensor_destroy(t);
  assert_ok(ctx, m2pt_context_kernel_time(ctx, &ms));
  assert_true(ms > 0.0);
  assert_ptr_equal(m2pt_linear_context(l), ctx);
  assert_null(m2pt_linear_context(NULL));
  m2pt_linear_destroy(l);
  test_linear_params_free(&p);
  m2pt_context_destroy(ctx);
}

/* The same count split by kernel name, the longest first. */
static void kernel_times(void **state)
{
  (void)state;
  m2pt_context *ctx = profiling_context();
  m2pt_kernel_time k[4];
  size_t count = 1;
  /* Nothing run yet: no kernels. */
  assert_ok(ctx, m2pt_context_kernel_times(ctx, k, 4, &count));
  assert_int_equal(count, 0);
  const size_t shape[1] = {64};
  m2pt_tensor *t = test_tensor(ctx, 1, shape, NULL);
  for (int i = 0; i < 3; i++)
    assert_ok(ctx, m2pt_gelu(ctx, t, NULL, M2PT_GELU_ERF, t));
  for (int i = 0; i < 2; i++)
    assert_ok(ctx, m2pt_add(ctx, t, t, t));
  assert_ok(ctx, m2pt_context_kernel_times(ctx, k, 4, &count));
  assert_int_equal(count, 2);
  assert_true(k[0].ms >= k[1].ms && k[1].ms >= 0.0);
  const int gelu_first = strcmp(k[0].name, "m2pt_gelu") == 0;
  assert_string_equal(k[gelu_first ? 0 : 1].name, "m2pt_gelu");
  assert_string_equal(k[gelu_first ? 1 : 0].name, "m2pt_add");
  assert_int_equal(k[gelu_first ? 0 : 1].launches, 3);
  assert_int_equal(k[gelu_first ? 1 : 0].launches, 2);
  /* Read and restarted: nothing since. */
  assert_ok(ctx, m2pt_context_kernel_times(ctx, k, 4, &count));
  assert_int_equal(count, 0);
  /* Fewer slots than kernels: the count says how many there were. */
  assert_ok(ctx, m2pt_gelu(ctx, t, NULL, M2PT_GELU_ERF, t));
  assert_ok(ctx, m2pt_add(ctx, t, t, t));
  k[1].launches = 99;
  assert_ok(ctx, m2pt_context_kernel_times(ctx, k, 1, &count));
  assert_int_equal(count, 2);
  assert_int_equal(k[0].launches, 1);
  assert_int_equal(k[1].launches, 99);
  /* Counting only: capacity 0 with no array. */
  assert_ok(ctx, m2pt_gelu(ctx, t, NULL, M2PT_GELU_ERF, t));
  assert_ok(ctx, m2pt_context_kernel_times(ctx, NULL, 0, &count));
  assert_int_equal(count, 1);
  assert_status(NULL, m2pt_context_kernel_times(NULL, k, 4, &count), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_context_kernel_times(ctx, k, 4, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_context_kernel_times(ctx, NULL, 4, &count),
                M2PT_ERR_INVALID_ARGUMENT);
  m2pt_tensor_destroy(t);
  m2pt_context_destroy(ctx);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(linear_against_reference),
      cmocka_unit_test(zero_scale_is_plain_linear),
      cmocka_unit_test(changes_after_forward),
      cmocka_unit_test(row_counts_in_turn),
      cmocka_unit_test(epilogues_in_turn),
      cmocka_unit_test(merge_semantics),
      cmocka_unit_test(batched_input),
      cmocka_unit_test(bad_inputs),
      cmocka_unit_test(kernel_time),
      cmocka_unit_test(kernel_times),
  };
  /* Linear's own kernels (bias, merge) have no variants: only its GEMMs do. */
  return test_run_matrix("linear", TEST_AXIS_GEMM | TEST_AXIS_HOST_ACCESS, tests, NULL, NULL) != 0;
}
