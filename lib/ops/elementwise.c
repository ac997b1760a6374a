#include <stdio.h>

#include "block_ops.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "core/program.h"
#include "tensor_checks.h"

m2pt_status m2pt_op_gelu(m2pt_context *ctx, cl_mem x, cl_mem bias, m2pt_gelu_kind kind,
                         size_t n, size_t cols, cl_mem y)
{
  /* float8 where the quirks allow it (not on Oclgrind) and rows do. */
  const int vec = cols % 8 == 0 && ctx->quirks.gelu_vec == 8 ? 8 : 1;
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
