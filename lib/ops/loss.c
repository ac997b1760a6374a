/* Cross-entropy and MSE losses with their gradients (cl/loss.cl): host
 * checks of labels and shapes, then one per-row kernel and one fixed-order
 * sum over the rows. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/context_impl.h"
#include "core/error.h"
#include "core/program.h"
#include "core/queue.h"
#include "core/workspace.h"
#include "m2pt/loss.h"
#include "tensor_checks.h"

/* The per-row losses [rows] live in the backward's own workspace slot; the
 * mean kernel reads them before any later call can enqueue over them (one
 * in-order queue). */
static m2pt_status loss_mean(m2pt_context *ctx, cl_mem row_loss, size_t rows, float divisor,
                             cl_mem loss)
{
  const size_t wg = m2pt_row_work_group(ctx, rows);
  char options[64];
  snprintf(options, sizeof options, "-DWG=%zu -DHAS_GRAD=0", wg);
  const cl_uint r = (cl_uint)rows;
  const m2pt_kernel_arg args[] = {M2PT_ARG(row_loss), M2PT_ARG(r), M2PT_ARG(divisor),
                                  M2PT_ARG(loss)};
  const size_t global[1] = {wg}, local[1] = {wg};
  return m2pt_run_kernel(ctx, &m2pt_cl_loss, options, "m2pt_loss_mean", args, 4, 1, global,
                         local);
}

/* ctx non-NULL, loss a 1-element tensor of ctx or NULL, grad (of `like`'s
 * shape) a tensor of ctx or NULL, not both NULL. */
static m2pt_status check_outputs(m2pt_context *ctx, const char *fn, const m2pt_tensor *like,
                                 const char *liken, const m2pt_tensor *loss,
                                 const m2pt_tensor *grad, const char *gradn)
{
  char name[64];
  M2PT_REQUIRE(ctx, loss != NULL || grad != NULL, "%s: loss and %s are both NULL", fn, gradn);
  if (loss) {
    snprintf(name, sizeof name, "%s: loss", fn);
    M2PT_TRY(m2pt_check_tensor(ctx, loss, name));
    M2PT_TRY(m2pt_check_vector(ctx, loss, 1, fn, "loss"));
  }
  if (grad) {
    snprintf(name, sizeof name, "%s: %s", fn, gradn);
    M2PT_TRY(m2pt_check_tensor(ctx, grad, name));
    M2PT_TRY(m2pt_check_same_shape(ctx, like, grad, fn, liken, gradn));
  }
  return M2PT_OK;
}

/* Checks the B labels (I32 or I64) against [0, classes) and narrows them to
 * int32 into dst. Compared as int64, so 2^32 + 1 is not taken for 1. */
static m2pt_status check_labels(m2pt_context *ctx, const char *fn, const void *labels,
                                m2pt_dtype dtype, size_t batch, size_t classes, int32_t *dst)
{
  M2PT_REQUIRE(ctx, dtype == M2PT_DTYPE_I32 || dtype == M2PT_DTYPE_I64,
               "%s: labels must be int32 or int64 (dtype %d)", fn, (int)dtype);
  for (size_t b = 0; b < batch; b++) {
    const int64_t v = dtype == M2PT_DTYPE_I32 ? ((const int32_t *)labels)[b]
                                              : ((const int64_t *)labels)[b];
    if (v < 0 || (uint64_t)v >= (uint64_t)classes)
      return m2pt_fail(ctx, M2PT_ERR_INVALID_ARGUMENT,
                       "%s: labels[%zu] = %lld is out of range [0, %zu) (the number of classes)",
                       fn, b, (long long)v, classes);
    dst[b] = (int32_t)v;
  }
  return M2PT_OK;
}

m2pt_status m2pt_cross_entropy(m2pt_context *ctx, const m2pt_tensor *logits, const void *labels,
                               m2pt_dtype label_dtype, float label_smoothing, m2pt_tensor *loss,
                               m2pt_tensor *dlogits)
{
  static const char fn[] = "m2pt_cross_entropy";
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, logits, "m2pt_cross_entropy: logits"));
  M2PT_TRY(check_outputs(ctx, fn, logits, "logits", loss, dlogits, "dlogits"));
  if (logits->ndim != 2) {
    char s[96];
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: logits %s must be [B][C]", fn,
                     m2pt_shape_string(logits, s, sizeof s));
  }
  M2PT_REQUIRE(ctx, labels != NULL, "%s: labels is NULL", fn);
  /* PyTorch accepts label_smoothing in [0, 1] and rejects the rest. */
  M2PT_REQUIRE(ctx, label_smoothing >= 0.0f && label_smoothing <= 1.0f,
               "%s: label_smoothing = %g is not in [0, 1]", fn, (double)label_smoothing);
  const size_t batch = logits->shape[0], classes = logits->shape[1];
  M2PT_REQUIRE(ctx, classes <= INT32_MAX && batch <= UINT32_MAX,
               "%s: logits [%zu][%zu] are too large", fn, batch, classes);

  int32_t *host = malloc(batch * sizeof *host);
  if (!host)
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  m2pt_status s = check_labels(ctx, fn, labels, label_dtype, batch, classes, host);
  cl_mem ids = NULL, rows = NULL;
  if (s == M2PT_OK)
    s = m2pt_workspace_upload(ctx, M2PT_WS_IDS, host, batch * sizeof *host,
                              "m2pt_cross_entropy: uploading the labels", &ids);
  if (s == M2PT_OK)
    s = m2pt_workspace_get(ctx, M2PT_WS_GRAD, batch * sizeof(float), &rows);
  free(host);
  M2PT_TRY(s);

  const size_t wg = m2pt_row_work_group(ctx, classes);
  char options[64];
  snprintf(options, sizeof options, "-DWG=%zu -DHAS_GRAD=%d", wg, dlogits != NULL);
  const cl_uint c = (cl_uint)classes;
  const float inv_batch = 1.0f / (float)batch;
  cl_mem grad = dlogits ? dlogits->buffer : NULL;
  const m2pt_kernel_arg args[] = {M2PT_ARG(logits->buffer), M2PT_ARG(ids),
                                  M2PT_ARG(c),              M2PT_ARG(label_smoothing),
                                  M2PT_ARG(inv_batch),      M2PT_ARG(rows),
                                  M2PT_ARG(grad)};
  const size_t global[1] = {batch * wg}, local[1] = {wg};
  M2PT_TRY(m2pt_run_kernel(ctx, &m2pt_cl_loss, options, "m2pt_cross_entropy_rows", args, 7, 1,
                           global, local));
  return loss ? loss_mean(ctx, rows, batch, (float)batch, loss->buffer) : M2PT_OK;
}

m2pt_status m2pt_mse(m2pt_context *ctx, const m2pt_tensor *y, const m2pt_tensor *target,
                     m2pt_tensor *loss, m2pt_tensor *dy)
{
  static const char fn[] = "m2pt_mse";
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, y, "m2pt_mse: y"));
  M2PT_TRY(m2pt_check_tensor(ctx, target, "m2pt_mse: target"));
  M2PT_TRY(m2pt_check_same_shape(ctx, y, target, fn, "y", "target"));
  M2PT_TRY(check_outputs(ctx, fn, y, "y", loss, dy, "dy"));
  const size_t cols = m2pt_last_dim(y), nrows = y->numel / cols;
  M2PT_REQUIRE(ctx, cols <= UINT32_MAX && nrows <= UINT32_MAX, "%s: y is too large", fn);

  cl_mem rows = NULL;
  M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_GRAD, nrows * sizeof(float), &rows));
  const size_t wg = m2pt_row_work_group(ctx, cols);
  char options[64];
  snprintf(options, sizeof options, "-DWG=%zu -DHAS_GRAD=%d", wg, dy != NULL);
  const cl_uint c = (cl_uint)cols;
  /* 2/(B·k) in float: exact enough (one rounding), the same as PyTorch's
   * grad_output·2/numel for reduction 'mean'. */
  const float divisor = (float)y->numel, scale = 2.0f / divisor;
  cl_mem grad = dy ? dy->buffer : NULL;
  const m2pt_kernel_arg args[] = {M2PT_ARG(y->buffer), M2PT_ARG(target->buffer), M2PT_ARG(c),
                                  M2PT_ARG(scale),     M2PT_ARG(rows),           M2PT_ARG(grad)};
  const size_t global[1] = {nrows * wg}, local[1] = {wg};
  M2PT_TRY(m2pt_run_kernel(ctx, &m2pt_cl_loss, options, "m2pt_mse_rows", args, 6, 1, global,
                           local));
  return loss ? loss_mean(ctx, rows, nrows, divisor, loss->buffer) : M2PT_OK;
}
