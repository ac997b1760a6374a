#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "block_ops.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "core/program.h"
#include "core/queue.h"
#include "tensor_checks.h"

m2pt_status m2pt_op_layer_norm_train(m2pt_context *ctx, cl_mem x, cl_mem weight, cl_mem bias,
                                     float eps, size_t rows, size_t dim, cl_mem y, cl_mem mean,
                                     cl_mem rstd)
{
  const size_t wg = m2pt_row_work_group(ctx, dim);
  const int save = mean != NULL && rstd != NULL;
  char options[80];
  snprintf(options, sizeof options, "-DWG=%zu -DHAS_BIAS=%d -DSAVE_STATS=%d", wg, bias != NULL,
           save);
  const cl_uint d = (cl_uint)dim;
  /* A row per work-item in float8 (see the kernel) where the quirks say so
   * (CPU devices) and the rows allow. */
  if (ctx->quirks.layer_norm == M2PT_LAYER_NORM_ROWS && dim % 8 == 0 && rows <= UINT32_MAX) {
    const cl_uint r = (cl_uint)rows;
    const m2pt_kernel_arg args[] = {M2PT_ARG(x), M2PT_ARG(weight), M2PT_ARG(bias),
                                    M2PT_ARG(y), M2PT_ARG(d),      M2PT_ARG(eps),
                                    M2PT_ARG(r), M2PT_ARG(mean),   M2PT_ARG(rstd)};
    const size_t global[1] = {rows};
    return m2pt_run_kernel(ctx, &m2pt_cl_layer_norm, options, "m2pt_layer_norm_rows", args, 9,
                           1, global, NULL);
  }
  const m2pt_kernel_arg args[] = {M2PT_ARG(x), M2PT_ARG(weight), M2PT_ARG(bias), M2PT_ARG(y),
                                  M2PT_ARG(d), M2PT_ARG(eps),    M2PT_ARG(mean), M2PT_ARG(rstd)};
  const size_t global[1] = {rows * wg}, local[1] = {wg};
  return m2pt_run_kernel(ctx, &m2pt_cl_layer_norm, options, "m2pt_layer_norm", args, 8, 1,
                         global, local);
}

m2pt_status m2pt_op_layer_norm(m2pt_context *ctx, cl_mem x, cl_mem weight, cl_mem bias,
                               float eps, size_t rows, size_t dim, cl_mem y)
{
  return m2pt_op_layer_norm_train(ctx, x, weight, bias, eps, rows, dim, y, NULL, NULL);
}

m2pt_status m2pt_op_layer_norm_backward(m2pt_context *ctx, cl_mem dy, cl_mem x, cl_mem weight,
                                        cl_mem mean, cl_mem rstd, size_t rows, size_t dim,
                                        cl_mem dx, cl_mem dweight, cl_mem dbias)
{
  /* dγ and dβ first: dx may overwrite dy or x, which they read. */
  if (dweight || dbias)
    M2PT_TRY(m2pt_op_column_sums(ctx, dy, x, mean, rstd, rows, dim, dbias, dweight));
  if (!dx)
    return M2PT_OK;
  const size_t wg = m2pt_row_work_group(ctx, dim);
  char options[64];
  snprintf(options, sizeof options, "-DWG=%zu -DHAS_BIAS=0 -DSAVE_STATS=0", wg);
  const cl_uint d = (cl_uint)dim;
  /* A row per work-item in float8 under the same quirk and condition as the
   * forward's (see m2pt_op_layer_norm_train). */
  if (ctx->quirks.layer_norm == M2PT_LAYER_NORM_ROWS && dim % 8 == 0 && rows <= UINT32_MAX) {
    const cl_uint r = (cl_uint)rows;
    const m2pt_kernel_arg args[] = {M2PT_ARG(dy),   M2PT_ARG(x),    M2PT_ARG(weight),
                                    M2PT_ARG(mean), M2PT_ARG(rstd), M2PT_ARG(dx),
                                    M2PT_ARG(d),    M2PT_ARG(r)};
    const size_t global[1] = {rows};
    return m2pt_run_kernel(ctx, &m2pt_cl_layer_norm, options, "m2pt_layer_norm_backward_rows",
                           args, 8, 1, global, NULL);
  }
  const m2pt_kernel_arg args[] = {M2PT_ARG(dy),   M2PT_ARG(x),  M2PT_ARG(weight), M2PT_ARG(mean),
                                  M2PT_ARG(rstd), M2PT_ARG(dx), M2PT_ARG(d)};
  const size_t global[1] = {rows * wg}, local[1] = {wg};
  return m2pt_run_kernel(ctx, &m2pt_cl_layer_norm, options, "m2pt_layer_norm_backward", args, 7,
                         1, global, local);
}

/* The checks of m2pt_layer_norm and m2pt_layer_norm_train; *dim_out is the
 * row length. */
static m2pt_status check_layer_norm(m2pt_context *ctx, const char *fn, const m2pt_tensor *x,
                                    const m2pt_tensor *weight, const m2pt_tensor *bias,
                                    float eps, const m2pt_tensor *y, size_t *dim_out)
{
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, x, "m2pt_layer_norm: x"));
  M2PT_TRY(m2pt_check_tensor(ctx, weight, "m2pt_layer_norm: weight"));
  M2PT_TRY(m2pt_check_tensor(ctx, y, "m2pt_layer_norm: y"));
  if (bias)
    M2PT_TRY(m2pt_check_tensor(ctx, bias, "m2pt_layer_norm: bias"));
  M2PT_REQUIRE(ctx, isfinite(eps) && eps >= 0.0f, "%s: eps = %g must be finite and >= 0", fn,
               (double)eps);
  M2PT_TRY(m2pt_check_same_shape(ctx, x, y, fn, "x", "y"));
  const size_t dim = m2pt_last_dim(x);
  M2PT_REQUIRE(ctx, dim <= UINT32_MAX, "%s: rows of %zu elements are too long", fn, dim);
  M2PT_TRY(m2pt_check_vector(ctx, weight, dim, fn, "weight"));
  if (bias)
    M2PT_TRY(m2pt_check_vector(ctx, bias, dim, fn, "bias"));
  *dim_out = dim;
  return M2PT_OK;
}

/* mean and rstd: tensors of ctx with one value per row. */
static m2pt_status check_stats(m2pt_context *ctx, const char *fn, const m2pt_tensor *mean,
                               const m2pt_tensor *rstd, size_t rows)
{
  M2PT_TRY(m2pt_check_tensor(ctx, mean, "LayerNorm's mean"));
  M2PT_TRY(m2pt_check_tensor(ctx, rstd, "LayerNorm's rstd"));
  M2PT_TRY(m2pt_check_vector(ctx, mean, rows, fn, "mean (one value per row)"));
  return m2pt_check_vector(ctx, rstd, rows, fn, "rstd (one value per row)");
}

m2pt_status m2pt_layer_norm(m2pt_context *ctx, const m2pt_tensor *x, const m2pt_tensor *weight,
                            const m2pt_tensor *bias, float eps, m2pt_tensor *y)
{
  size_t dim = 0;
  M2PT_TRY(check_layer_norm(ctx, "m2pt_layer_norm", x, weight, bias, eps, y, &dim));
  return m2pt_op_layer_norm(ctx, x->buffer, weight->buffer, bias ? bias->buffer : NULL, eps,
                            x->numel / dim, dim, y->buffer);
}

m2pt_status m2pt_layer_norm_train(m2pt_context *ctx, const m2pt_tensor *x,
                                  const m2pt_tensor *weight, const m2pt_tensor *bias, float eps,
                                  m2pt_tensor *y, m2pt_tensor *mean, m2pt_tensor *rstd)
{
  static const char fn[] = "m2pt_layer_norm_train";
  size_t dim = 0;
  M2PT_TRY(check_layer_norm(ctx, fn, x, weight, bias, eps, y, &dim));
  const size_t rows = x->numel / dim;
  M2PT_TRY(check_stats(ctx, fn, mean, rstd, rows));
  return m2pt_op_layer_norm_train(ctx, x->buffer, weight->buffer, bias ? bias->buffer : NULL,
                                  eps, rows, dim, y->buffer, mean->buffer, rstd->buffer);
}

m2pt_status m2pt_layer_norm_backward(m2pt_context *ctx, const m2pt_tensor *dy,
                                     const m2pt_tensor *x, const m2pt_tensor *weight,
                                     const m2pt_tensor *mean, const m2pt_tensor *rstd,
                                     m2pt_tensor *dx, m2pt_tensor *dweight, m2pt_tensor *dbias)
{
  static const char fn[] = "m2pt_layer_norm_backward";
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, dy, "m2pt_layer_norm_backward: dy"));
  M2PT_TRY(m2pt_check_tensor(ctx, x, "m2pt_layer_norm_backward: x"));
  M2PT_TRY(m2pt_check_tensor(ctx, weight, "m2pt_layer_norm_backward: weight"));
  M2PT_TRY(m2pt_check_same_shape(ctx, x, dy, fn, "x", "dy"));
  const size_t dim = m2pt_last_dim(x), rows = x->numel / dim;
  M2PT_REQUIRE(ctx, dim <= UINT32_MAX, "%s: rows of %zu elements are too long", fn, dim);
  M2PT_TRY(m2pt_check_vector(ctx, weight, dim, fn, "weight"));
  M2PT_TRY(check_stats(ctx, fn, mean, rstd, rows));
  if (dx) {
    M2PT_TRY(m2pt_check_tensor(ctx, dx, "m2pt_layer_norm_backward: dx"));
    M2PT_TRY(m2pt_check_same_shape(ctx, x, dx, fn, "x", "dx"));
  }
  if (dweight) {
    M2PT_TRY(m2pt_check_tensor(ctx, dweight, "m2pt_layer_norm_backward: dweight"));
    M2PT_TRY(m2pt_check_vector(ctx, dweight, dim, fn, "dweight"));
  }
  if (dbias) {
    M2PT_TRY(m2pt_check_tensor(ctx, dbias, "m2pt_layer_norm_backward: dbias"));
    M2PT_TRY(m2pt_check_vector(ctx, dbias, dim, fn, "dbias"));
  }
  return m2pt_op_layer_norm_backward(ctx, dy->buffer, x->buffer, weight->buffer, mean->buffer,
                                     rstd->buffer, rows, dim, dx ? dx->buffer : NULL,
                                     dweight ? dweight->buffer : NULL,
                                     dbias ? dbias->buffer : NULL);
}
