#include <math.h>
#include <stdio.h>

#include "block_ops.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "core/program.h"
#include "core/queue.h"
#include "tensor_checks.h"

/* Work-items per row: one where the quirks ask for a row per work-item,
 * else a work-group sized to the row. */
static size_t softmax_work_group(const m2pt_context *ctx, size_t cols)
{
  return ctx->quirks.softmax_rows ? 1 : m2pt_row_work_group(ctx, cols);
}

/* The program's options: work-group size (wg; 1 for the kernels that do
 * not reduce over a row, so that each N builds no program of its own),
 * mask, and whether m2pt_softmax saves the log-sum-exp. */
static void softmax_options(size_t wg, cl_mem mask, int save_lse, char *buf, size_t size)
{
  snprintf(buf, size, "-DWG=%zu -DHAS_MASK=%d -DSAVE_LSE=%d", wg, mask != NULL, save_lse);
}

m2pt_status m2pt_op_softmax(m2pt_context *ctx, cl_mem x, size_t rows, size_t cols, float scale,
                            cl_mem mask, size_t mask_offset, size_t rows_per_group, cl_mem y,
                            cl_mem lse, size_t lse_offset)
{
  const size_t wg = softmax_work_group(ctx, cols);
  char options[80];
  softmax_options(wg, mask, lse != NULL, options, sizeof options);
  const cl_uint c = (cl_uint)cols;
  const cl_ulong offset = mask_offset, group = rows_per_group ? rows_per_group : 1;
  const cl_ulong at = lse_offset;
  const m2pt_kernel_arg args[] = {M2PT_ARG(x),    M2PT_ARG(y),      M2PT_ARG(c),
                                  M2PT_ARG(scale), M2PT_ARG(mask), M2PT_ARG(offset),
                                  M2PT_ARG(group), M2PT_ARG(lse),  M2PT_ARG(at)};
  const size_t global[1] = {rows * wg}, local[1] = {wg};
  return m2pt_run_kernel(ctx, &m2pt_cl_softmax, options, "m2pt_softmax", args, lse ? 9 : 7, 1,
                         global, local);
}

m2pt_status m2pt_op_softmax_from_lse(m2pt_context *ctx, cl_mem x, size_t rows, size_t cols,
                                     float scale, cl_mem mask, size_t mask_offset,
                                     size_t rows_per_group, cl_mem lse, size_t lse_offset,
                                     cl_mem y)
{
  char options[80];
  softmax_options(1, mask, 0, options, sizeof options);
  const cl_uint c = (cl_uint)cols;
  const cl_ulong offset = mask_offset, group = rows_per_group ? rows_per_group : 1;
  const cl_ulong at = lse_offset, n = rows;
  const m2pt_kernel_arg args[] = {M2PT_ARG(x),     M2PT_ARG(y),    M2PT_ARG(c),
                                  M2PT_ARG(scale), M2PT_ARG(mask), M2PT_ARG(offset),
                                  M2PT_ARG(group), M2PT_ARG(lse),  M2PT_ARG(at),
                                  M2PT_ARG(n)};
  const size_t global[2] = {(cols + 7) / 8, rows};
  return m2pt_run_kernel(ctx, &m2pt_cl_softmax, options, "m2pt_softmax_from_lse", args, 10, 2,
                         global, NULL);
}

m2pt_status m2pt_op_softmax_backward(m2pt_context *ctx, cl_mem dy, cl_mem y, size_t rows,
                                     size_t cols, float scale, cl_mem mask, size_t mask_offset,
                                     size_t rows_per_group, cl_mem dx)
{
  const size_t wg = softmax_work_group(ctx, cols);
  char options[80];
  softmax_options(wg, mask, 0, options, sizeof options);
  const cl_uint c = (cl_uint)cols;
  const cl_ulong offset = mask_offset, group = rows_per_group ? rows_per_group : 1;
  const m2pt_kernel_arg args[] = {M2PT_ARG(dy),   M2PT_ARG(y),      M2PT_ARG(dx),
                                  M2PT_ARG(c),    M2PT_ARG(scale),  M2PT_ARG(mask),
                                  M2PT_ARG(offset), M2PT_ARG(group)};
  const size_t global[1] = {rows * wg}, local[1] = {wg};
  return m2pt_run_kernel(ctx, &m2pt_cl_softmax, options, "m2pt_softmax_backward", args, 8, 1,
                         global, local);
}

m2pt_status m2pt_op_softmax_backward_dot(m2pt_context *ctx, cl_mem dy, cl_mem y, size_t rows,
                                         size_t cols, float scale, cl_mem dot, size_t dot_offset,
                                         cl_mem dx)
{
  char options[80];
  softmax_options(1, NULL, 0, options, sizeof options);
  const cl_uint c = (cl_uint)cols;
  const cl_ulong at = dot_offset, n = rows;
  const m2pt_kernel_arg args[] = {M2PT_ARG(dy),    M2PT_ARG(y),   M2PT_ARG(dx), M2PT_ARG(c),
                                  M2PT_ARG(scale), M2PT_ARG(dot), M2PT_ARG(at), M2PT_ARG(n)};
  const size_t global[2] = {(cols + 7) / 8, rows};
  return m2pt_run_kernel(ctx, &m2pt_cl_softmax, options, "m2pt_softmax_backward_dot", args, 8, 2,
                         global, NULL);
}

m2pt_status m2pt_op_attention_delta(m2pt_context *ctx, cl_mem dout, cl_mem out,
                                    const m2pt_attention_shape *s, cl_mem delta)
{
  char options[80];
  softmax_options(1, NULL, 0, options, sizeof options);
  const cl_uint tokens = (cl_uint)s->tokens, heads = (cl_uint)s->heads,
                dim_head = (cl_uint)s->dim_head;
  const m2pt_kernel_arg args[] = {M2PT_ARG(dout),   M2PT_ARG(out),   M2PT_ARG(delta),
                                  M2PT_ARG(tokens), M2PT_ARG(heads), M2PT_ARG(dim_head)};
  const size_t global[3] = {s->tokens, s->heads, s->batch};
  return m2pt_run_kernel(ctx, &m2pt_cl_softmax, options, "m2pt_attention_delta", args, 6, 3,
                         global, NULL);
}

/* The checks shared by m2pt_softmax and its backward: x (or y) against
 * out, scale, and the mask's shape. *rows_out, *cols_out and *per_group
 * describe the rows and their mask rows. */
static m2pt_status check_softmax(m2pt_context *ctx, const char *fn, const m2pt_tensor *x,
                                 const char *xn, float scale, const m2pt_tensor *mask,
                                 const m2pt_tensor *out, const char *outn, size_t *rows_out,
                                 size_t *cols_out, size_t *per_group)
{
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  char name[64];
  snprintf(name, sizeof name, "%s: %s", fn, xn);
  M2PT_TRY(m2pt_check_tensor(ctx, x, name));
  snprintf(name, sizeof name, "%s: %s", fn, outn);
  M2PT_TRY(m2pt_check_tensor(ctx, out, name));
  snprintf(name, sizeof name, "%s: mask", fn);
  if (mask)
    M2PT_TRY(m2pt_check_tensor(ctx, mask, name));
  M2PT_REQUIRE(ctx, isfinite(scale), "%s: scale = %g is not finite", fn, (double)scale);
  M2PT_TRY(m2pt_check_same_shape(ctx, x, out, fn, xn, outn));
  const size_t cols = m2pt_last_dim(x), rows = x->numel / cols;
  M2PT_REQUIRE(ctx, cols <= UINT32_MAX, "%s: rows of %zu elements are too long", fn, cols);
  *per_group = rows;
  if (mask) {
    const size_t groups = mask->ndim == 2 ? mask->shape[0] : 0;
    if (mask->ndim != 2 || mask->shape[1] != cols || rows % groups != 0) {
      char sm[96], sx[96];
      return m2pt_fail(ctx, M2PT_ERR_SHAPE,
                       "%s: mask %s must be [B][%zu] with B dividing the %zu rows of %s %s", fn,
                       m2pt_shape_string(mask, sm, sizeof sm), cols, rows, xn,
                       m2pt_shape_string(x, sx, sizeof sx));
    }
    *per_group = rows / groups;
  }
  *rows_out = rows;
  *cols_out = cols;
  return M2PT_OK;
}

m2pt_status m2pt_softmax(m2pt_context *ctx, const m2pt_tensor *x, float scale,
                         const m2pt_tensor *mask, m2pt_tensor *y)
{
  size_t rows = 0, cols = 0, per_group = 0;
  M2PT_TRY(check_softmax(ctx, "m2pt_softmax", x, "x", scale, mask, y, "y", &rows, &cols,
                         &per_group));
  return m2pt_op_softmax(ctx, x->buffer, rows, cols, scale, mask ? mask->buffer : NULL, 0,
                         per_group, y->buffer, NULL, 0);
}

m2pt_status m2pt_softmax_backward(m2pt_context *ctx, const m2pt_tensor *dy, const m2pt_tensor *y,
                                  float scale, const m2pt_tensor *mask, m2pt_tensor *dx)
{
  static const char fn[] = "m2pt_softmax_backward";
  size_t rows = 0, cols = 0, per_group = 0;
  M2PT_TRY(check_softmax(ctx, fn, y, "y", scale, mask, dx, "dx", &rows, &cols, &per_group));
  M2PT_TRY(m2pt_check_tensor(ctx, dy, "m2pt_softmax_backward: dy"));
  M2PT_TRY(m2pt_check_same_shape(ctx, y, dy, fn, "y", "dy"));
  return m2pt_op_softmax_backward(ctx, dy->buffer, y->buffer, rows, cols, scale,
                                  mask ? mask->buffer : NULL, 0, per_group, dx->buffer);
}
