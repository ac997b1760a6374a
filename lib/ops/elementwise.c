#include <stdio.h>

#include "block_ops.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "core/program.h"
#include "core/workspace.h"
#include "tensor_checks.h"

/* GELU's elements per work-item: the quirk's vector width (16 on CPUs with
 * 16 float lanes, 8 elsewhere, 1 on Oclgrind) where a row holds whole
 * vectors of it, else 8 where it does, else 1. The forward and its backward
 * take the same, so the backward's GELU has the forward's bits. */
static int gelu_width(const m2pt_context *ctx, size_t cols)
{
  const unsigned vec = ctx->quirks.gelu_vec;
  if (vec >= 16 && cols % 16 == 0)
    return 16;
  return vec >= 8 && cols % 8 == 0 ? 8 : 1;
}

m2pt_status m2pt_op_gelu(m2pt_context *ctx, cl_mem x, cl_mem bias, m2pt_gelu_kind kind,
                         size_t n, size_t cols, cl_mem y)
{
  const int vec = gelu_width(ctx, cols);
  char options[80];
  snprintf(options, sizeof options, "-DHAS_BIAS=%d -DGELU_TANH=%d -DBROADCAST=0 -DVEC=%d",
           bias != NULL, kind == M2PT_GELU_TANH, vec);
  const cl_ulong r = n / cols, c = cols;
  const m2pt_kernel_arg args[] = {M2PT_ARG(x), M2PT_ARG(bias), M2PT_ARG(y), M2PT_ARG(r),
                                  M2PT_ARG(c)};
  const size_t global[2] = {cols / (size_t)vec, n / cols};
  return m2pt_run_kernel(ctx, &m2pt_cl_elementwise, options, "m2pt_gelu", args, 5, 2, global,
                         NULL);
}

m2pt_status m2pt_op_gelu_backward(m2pt_context *ctx, cl_mem dy, cl_mem x, cl_mem bias,
                                  m2pt_gelu_kind kind, size_t n, size_t cols, cl_mem dx,
                                  cl_mem act)
{
  const int vec = gelu_width(ctx, cols);
  char options[96];
  snprintf(options, sizeof options,
           "-DHAS_BIAS=%d -DGELU_TANH=%d -DBROADCAST=0 -DVEC=%d -DHAS_ACT=%d", bias != NULL,
           kind == M2PT_GELU_TANH, vec, act != NULL);
  const cl_ulong r = n / cols, c = cols;
  const m2pt_kernel_arg args[] = {M2PT_ARG(dy),  M2PT_ARG(x), M2PT_ARG(bias), M2PT_ARG(dx),
                                  M2PT_ARG(act), M2PT_ARG(r), M2PT_ARG(c)};
  const size_t global[2] = {cols / (size_t)vec, n / cols};
  return m2pt_run_kernel(ctx, &m2pt_cl_elementwise, options, "m2pt_gelu_backward", args, 7, 2,
                         global, NULL);
}

/* The most rows m2pt_column_sums_vec8 sums in one running sum: B = 64
 * sequences of 512 tokens, more than any training batch here. */
#define COLUMN_SUM_ROWS_MAX ((size_t)1 << 15)

m2pt_status m2pt_op_column_sums(m2pt_context *ctx, cl_mem a, cl_mem x, cl_mem mean, cl_mem rstd,
                                size_t rows, size_t cols, cl_mem plain, cl_mem xhat)
{
  /* 16 adjacent columns (a row segment a GPU reads in one transaction) by
   * up to 16 rows; the shape depends on the device's limit only, so a
   * device gives the same bits every run. */
  size_t tc = 1, tr = 1;
  while (tc < 16 && tc * 2 <= ctx->max_work_group)
    tc *= 2;
  while (tr < 16 && tc * tr * 2 <= ctx->max_work_group)
    tr *= 2;
  char options[96];
  snprintf(options, sizeof options,
           "-DHAS_BIAS=0 -DGELU_TANH=0 -DBROADCAST=0 -DVEC=1 -DTC=%zu -DTR=%zu -DPLAIN=%d "
           "-DXHAT=%d",
           tc, tr, plain != NULL, xhat != NULL);
  const cl_ulong r = rows, c = cols;
  const m2pt_kernel_arg args[] = {M2PT_ARG(a),     M2PT_ARG(x),    M2PT_ARG(mean),
                                  M2PT_ARG(rstd),  M2PT_ARG(plain), M2PT_ARG(xhat),
                                  M2PT_ARG(r),     M2PT_ARG(c)};
  /* Where LayerNorm runs a row per work-item (CPU devices), 8 columns per
   * work-item, down the rows: where that gives a work-item per core or
   * more, and sums short enough that one running sum stays accurate
   * (error ~rows·ε; the tree's splits it 16 ways). */
  if (ctx->quirks.layer_norm == M2PT_LAYER_NORM_ROWS && cols % 8 == 0 &&
      cols / 8 >= ctx->info.compute_units && rows <= COLUMN_SUM_ROWS_MAX) {
    const size_t global[1] = {cols / 8};
    return m2pt_run_kernel(ctx, &m2pt_cl_elementwise, options, "m2pt_column_sums_vec8", args, 8,
                           1, global, NULL);
  }
  const size_t global[2] = {(cols + tc - 1) / tc * tc, tr}, local[2] = {tc, tr};
  return m2pt_run_kernel(ctx, &m2pt_cl_elementwise, options, "m2pt_column_sums", args, 8, 2,
                         global, local);
}

m2pt_status m2pt_op_add(m2pt_context *ctx, cl_mem a, cl_mem b, size_t n, size_t period,
                        cl_mem y)
{
  char options[64];
  snprintf(options, sizeof options, "-DHAS_BIAS=0 -DGELU_TANH=0 -DBROADCAST=%d -DVEC=1",
           period != 0);
  /* Rows of `period` when broadcasting; any row length will do otherwise. */
  const size_t cols = period ? period : n;
  const cl_ulong r = n / cols, c = cols;
  const m2pt_kernel_arg args[] = {M2PT_ARG(a), M2PT_ARG(b), M2PT_ARG(y), M2PT_ARG(r),
                                  M2PT_ARG(c)};
  const size_t global[2] = {cols, n / cols};
  return m2pt_run_kernel(ctx, &m2pt_cl_elementwise, options, "m2pt_add", args, 5, 2, global,
                         NULL);
}

m2pt_status m2pt_gelu(m2pt_context *ctx, const m2pt_tensor *x, const m2pt_tensor *bias,
                      m2pt_gelu_kind kind, m2pt_tensor *y)
{
  static const char fn[] = "m2pt_gelu";
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, x, "m2pt_gelu: x"));
  M2PT_TRY(m2pt_check_tensor(ctx, y, "m2pt_gelu: y"));
  if (bias)
    M2PT_TRY(m2pt_check_tensor(ctx, bias, "m2pt_gelu: bias"));
  M2PT_TRY(m2pt_check_enum(ctx, (int)kind, M2PT_GELU_TANH, fn, "GELU kind"));
  M2PT_TRY(m2pt_check_same_shape(ctx, x, y, fn, "x", "y"));
  const size_t cols = m2pt_last_dim(x);
  if (bias)
    M2PT_TRY(m2pt_check_vector(ctx, bias, cols, fn, "bias"));
  return m2pt_op_gelu(ctx, x->buffer, bias ? bias->buffer : NULL, kind, x->numel, cols,
                      y->buffer);
}

m2pt_status m2pt_add(m2pt_context *ctx, const m2pt_tensor *a, const m2pt_tensor *b,
                     m2pt_tensor *y)
{
  static const char fn[] = "m2pt_add";
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, a, "m2pt_add: a"));
  M2PT_TRY(m2pt_check_tensor(ctx, b, "m2pt_add: b"));
  M2PT_TRY(m2pt_check_tensor(ctx, y, "m2pt_add: y"));
  M2PT_TRY(m2pt_check_same_shape(ctx, a, y, fn, "a", "y"));
  size_t period = 0;
  if (b->numel != a->numel || b->ndim != a->ndim) {
    period = m2pt_last_dim(a);
    M2PT_TRY(m2pt_check_vector(ctx, b, period, fn, "b (broadcast over a's rows)"));
  } else {
    M2PT_TRY(m2pt_check_same_shape(ctx, a, b, fn, "a", "b"));
  }
  return m2pt_op_add(ctx, a->buffer, b->buffer, a->numel, period, y->buffer);
}

m2pt_status m2pt_gelu_backward(m2pt_context *ctx, const m2pt_tensor *dy, const m2pt_tensor *x,
                               const m2pt_tensor *bias, m2pt_gelu_kind kind, m2pt_tensor *dx,
                               m2pt_tensor *dbias)
{
  static const char fn[] = "m2pt_gelu_backward";
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, dy, "m2pt_gelu_backward: dy"));
  M2PT_TRY(m2pt_check_tensor(ctx, x, "m2pt_gelu_backward: x"));
  M2PT_TRY(m2pt_check_enum(ctx, (int)kind, M2PT_GELU_TANH, fn, "GELU kind"));
  M2PT_TRY(m2pt_check_same_shape(ctx, x, dy, fn, "x", "dy"));
  const size_t cols = m2pt_last_dim(x), rows = x->numel / cols;
  if (bias) {
    M2PT_TRY(m2pt_check_tensor(ctx, bias, "m2pt_gelu_backward: bias"));
    M2PT_TRY(m2pt_check_vector(ctx, bias, cols, fn, "bias"));
  }
  if (dx) {
    M2PT_TRY(m2pt_check_tensor(ctx, dx, "m2pt_gelu_backward: dx"));
    M2PT_TRY(m2pt_check_same_shape(ctx, x, dx, fn, "x", "dx"));
  }
  if (dbias) {
    M2PT_TRY(m2pt_check_tensor(ctx, dbias, "m2pt_gelu_backward: dbias"));
    M2PT_TRY(m2pt_check_vector(ctx, dbias, cols, fn, "dbias"));
  }
  if (!dx && !dbias)
    return M2PT_OK;
  /* db = Σ_rows dx needs dx: the caller's, or scratch when only db is asked. */
  cl_mem out = dx ? dx->buffer : NULL;
  if (!out)
    M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_GRAD, x->numel * sizeof(float), &out));
  M2PT_TRY(m2pt_op_gelu_backward(ctx, dy->buffer, x->buffer, bias ? bias->buffer : NULL, kind,
                                 x->numel, cols, out, NULL));
  if (!dbias)
    return M2PT_OK;
  return m2pt_op_column_sums(ctx, out, NULL, NULL, NULL, rows, cols, dbias->buffer, NULL);
}

m2pt_status m2pt_sum_rows(m2pt_context *ctx, const m2pt_tensor *x, m2pt_tensor *y)
{
  static const char fn[] = "m2pt_sum_rows";
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, x, "m2pt_sum_rows: x"));
  M2PT_TRY(m2pt_check_tensor(ctx, y, "m2pt_sum_rows: y"));
  const size_t cols = m2pt_last_dim(x);
  M2PT_TRY(m2pt_check_vector(ctx, y, cols, fn, "y (x's last dimension)"));
  M2PT_REQUIRE(ctx, y->buffer != x->buffer, "%s: y must not be x", fn);
  return m2pt_op_column_sums(ctx, x->buffer, NULL, NULL, NULL, x->numel / cols, cols, y->buffer,
                             NULL);
}
