/* The cross-modal FFN (the seed's cross_modal_ffn): fc2(GELU(fc1(x))). */
#include <stdlib.h>

#include "core/context_impl.h"
#include "core/error.h"
#include "ffn_internal.h"
#include "linear_internal.h"
#include "ops/block_ops.h"
#include "ops/tensor_checks.h"
#include "ops/linear_ops.h"

struct m2pt_ffn {
  m2pt_context *ctx;
  size_t dim, hidden;
  m2pt_gelu_kind gelu;
  m2pt_linear *fc1, *fc2;
};

m2pt_status m2pt_ffn_create(m2pt_context *ctx, size_t dim, size_t hidden, unsigned linear_flags,
                            m2pt_gelu_kind gelu, m2pt_ffn **out)
{
  M2PT_REQUIRE(NULL, ctx != NULL, "m2pt_ffn_create: ctx is NULL");
  M2PT_REQUIRE(ctx, out != NULL, "m2pt_ffn_create: out is NULL");
  *out = NULL;
  M2PT_TRY(m2pt_check_enum(ctx, (int)gelu, M2PT_GELU_TANH, "m2pt_ffn_create", "GELU kind"));
  m2pt_ffn *f = calloc(1, sizeof *f);
  if (!f)
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for an FFN");
  f->ctx = ctx;
  f->dim = dim;
  f->hidden = hidden;
  f->gelu = gelu;
  m2pt_status s = m2pt_linear_create(ctx, dim, hidden, linear_flags | M2PT_LINEAR_BIAS, &f->fc1);
  if (s == M2PT_OK)
    s = m2pt_linear_create(ctx, hidden, dim, linear_flags | M2PT_LINEAR_BIAS, &f->fc2);
  if (s != M2PT_OK) {
    m2pt_ffn_destroy(f);
    return s;
  }
  *out = f;
  return M2PT_OK;
}

void m2pt_ffn_destroy(m2pt_ffn *f)
{
  if (!f)
    return;
  m2pt_linear_destroy(f->fc1);
  m2pt_linear_destroy(f->fc2);
  free(f);
}

m2pt_linear *m2pt_ffn_fc1(m2pt_ffn *f)
{
  return f ? f->fc1 : NULL;
}

m2pt_linear *m2pt_ffn_fc2(m2pt_ffn *f)
{
  return f ? f->fc2 : NULL;
}

m2pt_status m2pt_ffn_apply(m2pt_ffn *f, cl_mem x, size_t rows, cl_mem residual,
                           const m2pt_linear_norm *post, cl_mem y)
{
  size_t bytes;
  if (!m2pt_mul_size(rows, f->hidden, &bytes) || !m2pt_mul_size(bytes, sizeof(float), &bytes))
    return m2pt_fail(f->ctx, M2PT_ERR_INVALID_ARGUMENT, "FFN activations of %zu × %zu overflow",
                     rows, f->hidden);
  cl_mem hidden;
  M2PT_TRY(m2pt_workspace_get(f->ctx, M2PT_WS_HIDDEN, bytes, &hidden));
  /* fc1 with its bias and GELU; then fc2 onto residual + b2 (beta = 1), so
   * the residual add costs no pass of its own. */
  const m2pt_linear_fusion f1 = {.gelu = 1, .gelu_kind = f->gelu};
  M2PT_TRY(m2pt_linear_apply_fused(f->fc1, x, rows, &f1, hidden));
  m2pt_linear_fusion f2 = {.residual = residual};
  if (post) {
    f2.post_out = y;
    f2.post = *post;
  }
  return m2pt_linear_apply_fused(f->fc2, hidden, rows, &f2, y);
}

m2pt_status m2pt_ffn_forward(m2pt_ffn *f, const m2pt_tensor *x, m2pt_tensor *y)
{
  M2PT_REQUIRE(NULL, f != NULL, "m2pt_ffn_forward: ffn is NULL");
  M2PT_TRY(m2pt_linear_check_io(f->ctx, x, y, f->dim, f->dim, "m2pt_ffn_forward"));
  return m2pt_ffn_apply(f, x->buffer, x->numel / f->dim, NULL, NULL, y->buffer);
}

m2pt_status m2pt_ffn_merge(m2pt_ffn *f)
{
  M2PT_REQUIRE(NULL, f != NULL, "m2pt_ffn_merge: ffn is NULL");
  M2PT_TRY(m2pt_linear_merge(f->fc1));
  return m2pt_linear_merge(f->fc2);
}
