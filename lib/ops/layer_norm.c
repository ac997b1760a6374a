#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "block_ops.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "core/program.h"
#include "core/queue.h"
#include "tensor_checks.h"

m2pt_status m2pt_op_layer_norm(m2pt_context *ctx, cl_mem x, cl_mem weight, cl_mem bias,
                               float eps, size_t rows, size_t dim, cl_mem y)
{
  const size_t wg = m2pt_row_work_group(ctx, dim);
  char options[64];
  snprintf(options, sizeof options, "-DWG=%zu -DHAS_BIAS=%d", wg, bias != NULL);
  const cl_uint d = (cl_uint)dim;
  /* A row per work-item in float8 (see the kernel) where the quirks say so
   * (CPU devices) and the rows allow. */
  if (ctx->quirks.layer_norm == M2PT_LAYER_NORM_ROWS && dim % 8 == 0 && rows <= UINT32_MAX) {
    const cl_uint r = (cl_uint)rows;
    const m2pt_kernel_arg args[] = {M2PT_ARG(x), M2PT_ARG(weight), M2PT_ARG(bias), M2PT_ARG(y),
                                    M2PT_ARG(d), M2PT_ARG(eps), M2PT_ARG(r)};
    const size_t global[1] = {rows};
    return m2pt_run_kernel(ctx, &m2pt_cl_layer_norm, options, "m2pt_layer_norm_rows", args, 7,
                           1, global, NULL);
  }
  const m2pt_kernel_arg args[] = {M2PT_ARG(x), M2PT_ARG(weight), M2PT_ARG(bias),
                                  M2PT_ARG(y), M2PT_ARG(d), M2PT_ARG(eps)};
  const size_t global[1] = {rows * wg}, local[1] = {wg};
  return m2pt_run_kernel(ctx, &m2pt_cl_layer_norm, options, "m2pt_layer_norm", args, 6, 1,
                         global, local);
}

m2pt_status m2pt_layer_norm(m2pt_context *ctx, const m2pt_tensor *x, const m2pt_tensor *weight,
                            const m2pt_tensor *bias, float eps, m2pt_tensor *y)
{
  static const char fn[] = "m2pt_layer_norm";
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
  return m2pt_op_layer_norm(ctx, x->buffer, weight->buffer, bias ? bias->buffer : NULL, eps,
                            x->numel / dim, dim, y->buffer);
}
