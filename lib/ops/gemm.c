/* Public GEMM entry points: argument checks at the API boundary, then CLBlast. */
#include <math.h>

#include "core/context_impl.h"
#include "core/error.h"
#include "gemm/backend.h"

static int valid_transpose(m2pt_transpose t)
{
  return t == M2PT_NO_TRANS || t == M2PT_TRANS;
}

static const char *operand_name[3] = {"A", "B", "C"};

/* Checks that `batch` matrices of rows × cols at (offset, ld, stride) lie
 * inside a tensor of `numel` elements. */
static m2pt_status check_extent(const m2pt_context *ctx, int which, size_t rows, size_t cols,
                                const m2pt_matrix_batch *mb, size_t batch)
{
  const char *name = operand_name[which];
  if (mb->ld < cols)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_ARGUMENT,
                     "m2pt_gemm_batched: ld of %s is %zu, below its row length %zu", name, mb->ld,
                     cols);
  /* end = offset + (batch−1)·stride + (rows−1)·ld + cols, each step checked. */
  size_t last_row, last_batch, end;
  if (!m2pt_mul_size(rows - 1, mb->ld, &last_row) ||
      !m2pt_mul_size(batch - 1, mb->batch_stride, &last_batch) ||
      !m2pt_add_size(last_row, last_batch, &end) || !m2pt_add_size(end, cols, &end) ||
      !m2pt_add_size(end, mb->offset, &end))
    return m2pt_fail(ctx, M2PT_ERR_INVALID_ARGUMENT,
                     "m2pt_gemm_batched: the extent of %s overflows", name);
  if (end > mb->tensor->numel)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE,
                     "m2pt_gemm_batched: %s needs %zu elements (offset %zu, ld %zu, stride %zu, "
                     "%zu × %zu × %zu) but its tensor has %zu",
                     name, end, mb->offset, mb->ld, mb->batch_stride, batch, rows, cols,
                     mb->tensor->numel);
  return M2PT_OK;
}

/* alpha and beta finite; C, written while A and B are read, is neither. */
static m2pt_status check_scalars_and_aliasing(const m2pt_context *ctx, float alpha, float beta,
                                              const m2pt_tensor *a, const m2pt_tensor *b,
                                              const m2pt_tensor *c, const char *fn)
{
  M2PT_REQUIRE(ctx, isfinite(alpha) && isfinite(beta), "%s: alpha and beta must be finite", fn);
  M2PT_REQUIRE(ctx, c != a && c != b, "%s: C must not be the tensor of A or B", fn);
  return M2PT_OK;
}

m2pt_status m2pt_gemm_batched(m2pt_context *ctx, m2pt_transpose ta, m2pt_transpose tb, size_t m,
                              size_t n, size_t k, float alpha, const m2pt_matrix_batch *a,
                              const m2pt_matrix_batch *b, float beta, const m2pt_matrix_batch *c,
                              size_t batch)
{
  M2PT_REQUIRE(NULL, ctx != NULL, "m2pt_gemm_batched: ctx is NULL");
  M2PT_REQUIRE(ctx, a && b && c, "m2pt_gemm_batched: a, b and c must not be NULL");
  M2PT_TRY(m2pt_check_tensor(ctx, a->tensor, "A"));
  M2PT_TRY(m2pt_check_tensor(ctx, b->tensor, "B"));
  M2PT_TRY(m2pt_check_tensor(ctx, c->tensor, "C"));
  M2PT_REQUIRE(ctx, valid_transpose(ta) && valid_transpose(tb),
               "m2pt_gemm_batched: invalid transpose value");
  M2PT_REQUIRE(ctx, m && n && k && batch,
               "m2pt_gemm_batched: zero size (m=%zu n=%zu k=%zu batch=%zu)", m, n, k, batch);
  M2PT_TRY(check_scalars_and_aliasing(ctx, alpha, beta, a->tensor, b->tensor, c->tensor,
                                      "m2pt_gemm_batched"));
  M2PT_TRY(check_extent(ctx, 0, ta ? k : m, ta ? m : k, a, batch));
  M2PT_TRY(check_extent(ctx, 1, tb ? n : k, tb ? k : n, b, batch));
  M2PT_TRY(check_extent(ctx, 2, m, n, c, batch));
  /* Batch members of C are written in parallel, so they must not overlap:
   * either one after the other, or side by side within each row (the heads
   * of an attention output). */
  const int stacked = c->batch_stride >= (m - 1) * c->ld + n;
  const int side_by_side = c->batch_stride >= n && (batch - 1) * c->batch_stride + n <= c->ld;
  M2PT_REQUIRE(ctx, batch == 1 || stacked || side_by_side,
               "m2pt_gemm_batched: C's batch stride %zu makes its matrices overlap",
               c->batch_stride);
  const m2pt_gemm_matrix ba = {a->tensor->buffer, a->offset, a->ld, a->batch_stride};
  const m2pt_gemm_matrix bb = {b->tensor->buffer, b->offset, b->ld, b->batch_stride};
  const m2pt_gemm_matrix bc = {c->tensor->buffer, c->offset, c->ld, c->batch_stride};
  return m2pt_gemm_sgemm(ctx, ta, tb, m, n, k, alpha, &ba, &bb, beta, &bc, batch);
}

m2pt_status m2pt_gemm(m2pt_context *ctx, m2pt_transpose ta, m2pt_transpose tb, float alpha,
                      const m2pt_tensor *a, const m2pt_tensor *b, float beta, m2pt_tensor *c)
{
  M2PT_REQUIRE(NULL, ctx != NULL, "m2pt_gemm: ctx is NULL");
  M2PT_TRY(m2pt_check_tensor(ctx, a, "A"));
  M2PT_TRY(m2pt_check_tensor(ctx, b, "B"));
  M2PT_TRY(m2pt_check_tensor(ctx, c, "C"));
  M2PT_REQUIRE(ctx, valid_transpose(ta) && valid_transpose(tb), "m2pt_gemm: invalid transpose value");
  M2PT_REQUIRE(ctx, a->ndim == 2 && b->ndim == 2 && c->ndim == 2,
               "m2pt_gemm: A, B and C must be 2-D (got %zu-D, %zu-D, %zu-D)", a->ndim, b->ndim,
               c->ndim);
  const size_t m = ta ? a->shape[1] : a->shape[0], ka = ta ? a->shape[0] : a->shape[1];
  const size_t kb = tb ? b->shape[1] : b->shape[0], n = tb ? b->shape[0] : b->shape[1];
  if (ka != kb || c->shape[0] != m || c->shape[1] != n) {
    char sa[64], sb[64], sc[64];
    return m2pt_fail(ctx, M2PT_ERR_SHAPE,
                     "m2pt_gemm: op(A) %zu×%zu · op(B) %zu×%zu does not fit C %s (A %s%s, B %s%s)",
                     m, ka, kb, n, m2pt_shape_string(c, sc, sizeof sc),
                     m2pt_shape_string(a, sa, sizeof sa), ta ? "ᵀ" : "",
                     m2pt_shape_string(b, sb, sizeof sb), tb ? "ᵀ" : "");
  }
  M2PT_TRY(check_scalars_and_aliasing(ctx, alpha, beta, a, b, c, "m2pt_gemm"));
  /* Whole 2-D tensors need none of m2pt_gemm_batched's extent checks. */
  const m2pt_gemm_matrix ba = {a->buffer, 0, a->shape[1], 0};
  const m2pt_gemm_matrix bb = {b->buffer, 0, b->shape[1], 0};
  const m2pt_gemm_matrix bc = {c->buffer, 0, n, 0};
  return m2pt_gemm_sgemm(ctx, ta, tb, m, n, ka, alpha, &ba, &bb, beta, &bc, 1);
}
