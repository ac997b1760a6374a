/* Gradient clipping by global norm, and scaling and summing gradient lists
 * (include/m2pt/optim.h). Σ g² of each tensor is the linear backward's dλ
 * reduction (ops/linear_ops.h) with W_aux = G: fixed blocking, no atomics,
 * so the norm has the same bits run to run; the tensors' sums are added one
 * after the other, in list order, into one float on the device. */
#include <math.h>
#include <stdio.h>

#include "core/context_impl.h"
#include "core/error.h"
#include "core/program.h"
#include "m2pt/optim.h"
#include "ops/linear_ops.h"
#include "ops/tensor_checks.h"

/* Every tensor of the list non-NULL, of ctx, and listed once (PyTorch
 * would scale a tensor listed twice twice). */
static m2pt_status check_list(m2pt_context *ctx, m2pt_tensor *const *tensors, size_t count,
                              const char *fn)
{
  M2PT_REQUIRE(ctx, count == 0 || tensors != NULL, "%s: the list is NULL with count %zu", fn,
               count);
  for (size_t i = 0; i < count; i++) {
    M2PT_REQUIRE(ctx, tensors[i] != NULL, "%s: tensor %zu of %zu is NULL", fn, i, count);
    if (tensors[i]->ctx != ctx)
      return m2pt_fail(ctx, M2PT_ERR_CONTEXT_MISMATCH,
                       "%s: tensor %zu belongs to another context", fn, i);
    for (size_t j = 0; j < i; j++)
      M2PT_REQUIRE(ctx, tensors[j] != tensors[i], "%s: tensor %zu is tensor %zu again", fn, i,
                   j);
  }
  return M2PT_OK;
}

static m2pt_status scale_all(m2pt_context *ctx, m2pt_tensor *const *tensors, size_t count,
                             float factor)
{
  for (size_t i = 0; i < count; i++) {
    const cl_ulong n = tensors[i]->numel;
    const m2pt_kernel_arg args[] = {M2PT_ARG(tensors[i]->buffer), M2PT_ARG(n),
                                    M2PT_ARG(factor)};
    const size_t global[1] = {tensors[i]->numel};
    M2PT_TRY(m2pt_run_kernel(ctx, &m2pt_cl_optim, "", "m2pt_scale", args, 3, 1, global, NULL));
  }
  return M2PT_OK;
}

m2pt_status m2pt_scale_grads(m2pt_context *ctx, m2pt_tensor *const *grads, size_t count,
                             float factor)
{
  static const char fn[] = "m2pt_scale_grads";
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  M2PT_TRY(check_list(ctx, grads, count, fn));
  M2PT_REQUIRE(ctx, isfinite(factor), "%s: factor %g is not finite", fn, (double)factor);
  return scale_all(ctx, grads, count, factor);
}

m2pt_status m2pt_accumulate_grads(m2pt_context *ctx, m2pt_tensor *const *dst,
                                  const m2pt_tensor *const *src, size_t count, float factor)
{
  static const char fn[] = "m2pt_accumulate_grads";
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  M2PT_TRY(check_list(ctx, dst, count, fn));
  M2PT_REQUIRE(ctx, count == 0 || src != NULL, "%s: src is NULL with count %zu", fn, count);
  M2PT_REQUIRE(ctx, isfinite(factor), "%s: factor %g is not finite", fn, (double)factor);
  for (size_t i = 0; i < count; i++) {
    char what[64];
    snprintf(what, sizeof what, "%s: src[%zu]", fn, i);
    M2PT_TRY(m2pt_check_tensor(ctx, src[i], what));
    M2PT_TRY(m2pt_check_same_shape(ctx, dst[i], src[i], fn, "dst", "src"));
  }
  for (size_t i = 0; i < count; i++) {
    const cl_ulong n = dst[i]->numel;
    const m2pt_kernel_arg args[] = {M2PT_ARG(dst[i]->buffer), M2PT_ARG(src[i]->buffer),
                                    M2PT_ARG(n), M2PT_ARG(factor)};
    const size_t global[1] = {dst[i]->numel};
    M2PT_TRY(m2pt_run_kernel(ctx, &m2pt_cl_optim, "", "m2pt_axpy", args, 4, 1, global, NULL));
  }
  return M2PT_OK;
}

/* Σ over the tensors of Σ g², into *sum (blocking). */
static m2pt_status sum_of_squares(m2pt_context *ctx, m2pt_tensor *const *grads, size_t count,
                                  float *sum)
{
  size_t most = 0;
  for (size_t i = 0; i < count; i++)
    if (m2pt_grad_partials(grads[i]->numel) > most)
      most = m2pt_grad_partials(grads[i]->numel);
  cl_mem partials = NULL, total = NULL;
  M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_GRAD_SUMS, most * sizeof(float), &partials));
  M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_GRAD, sizeof(float), &total));
  for (size_t i = 0; i < count; i++) {
    const cl_mem g = grads[i]->buffer;
    const size_t n = grads[i]->numel;
    M2PT_TRY(m2pt_op_linear_grad_weight(ctx, g, n, NULL, 0, NULL, M2PT_GRAD_SKIP, g, partials,
                                        0.0f));
    M2PT_TRY(m2pt_op_linear_grad_scale(ctx, partials, m2pt_grad_partials(n), NULL, 0, NULL, 0,
                                       total, i > 0));
  }
  M2PT_TRY_CL(ctx,
              clEnqueueReadBuffer(ctx->queue, total, CL_TRUE, 0, sizeof *sum, sum, 0, NULL, NULL),
              "m2pt_clip_grad_norm: clEnqueueReadBuffer");
  return M2PT_OK;
}

m2pt_status m2pt_clip_grad_norm(m2pt_context *ctx, m2pt_tensor *const *grads, size_t count,
                                float max_norm, float *total_norm)
{
  static const char fn[] = "m2pt_clip_grad_norm";
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  M2PT_TRY(check_list(ctx, grads, count, fn));
  M2PT_REQUIRE(ctx, max_norm > 0.0f, "%s: max_norm %g is not > 0", fn, (double)max_norm);
  float sum = 0.0f;
  if (count > 0)
    M2PT_TRY(sum_of_squares(ctx, grads, count, &sum));
  const float norm = sqrtf(sum);
  if (total_norm != NULL)
    *total_norm = norm;
  if (!isfinite(norm))
    return m2pt_fail(ctx, M2PT_ERR_NOT_FINITE,
                     "%s: the total norm of the %zu gradients is %g; nothing was scaled", fn,
                     count, (double)norm);
  /* PyTorch: clip_coef = max_norm / (total_norm + 1e-6) on a float32 tensor,
   * where a scalar over a tensor is tensor.reciprocal() * scalar; then
   * clamp(max=1). A factor of 1 leaves every bit as it is: no pass. */
  const float coef = (1.0f / (norm + 1e-6f)) * max_norm;
  if (coef < 1.0f)
    M2PT_TRY(scale_all(ctx, grads, count, coef));
  return M2PT_OK;
}
