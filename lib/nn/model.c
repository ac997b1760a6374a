/* An M2PT model: what it is, merge and forward. Loading is model_load.c,
 * pathways model_pathway.c, saving model_save.c. */
#include <string.h>

#include "core/buffer.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "linear_internal.h"
#include "model_internal.h"
#include "ops/block_ops.h"
#include "ops/tensor_checks.h"

void m2pt_model_linear_shape(const m2pt_model *m, int index, size_t *out, size_t *in)
{
  const size_t dim = m->cfg.dim, hd = m->cfg.heads * m->cfg.dim_head;
  const size_t hidden = m->cfg.ff_mult * dim;
  static const int qkv = M2PT_BLOCK_QKV, proj = M2PT_BLOCK_PROJ, fc1 = M2PT_BLOCK_FC1;
  *in = index == qkv || index == fc1 ? dim : index == proj ? hd : hidden;
  *out = index == qkv ? 3 * hd : index == proj ? dim : index == fc1 ? hidden : dim;
}

m2pt_status m2pt_model_get_info(const m2pt_model *m, m2pt_model_info *info)
{
  M2PT_REQUIRE(NULL, m != NULL, "m2pt_model_get_info: model is NULL");
  M2PT_REQUIRE(m->ctx, info != NULL, "m2pt_model_get_info: info is NULL");
  memset(info, 0, sizeof *info);
  info->naming = m->scheme->naming;
  info->prefix = m->prefix;
  info->depth = m->depth;
  info->final_norm = m->norm_w != NULL;
  info->block = m->cfg;
  if (!m->heads)
    info->block.heads = info->block.dim_head = 0; /* not known */
  for (size_t b = 0; b < m->depth; b++)
    for (size_t li = 0; li < M2PT_BLOCK_LINEARS; li++)
      info->pathways += (size_t)m2pt_linear_has_pathway(m2pt_block_linear(m->blocks[b], li));
  for (size_t e = 0; e < M2PT_MODEL_ENDS; e++)
    info->pathways += (size_t)(m->ends[e].linear && m2pt_linear_has_pathway(m->ends[e].linear));
  return M2PT_OK;
}

m2pt_block *m2pt_model_block(m2pt_model *m, size_t index)
{
  return m && index < m->depth ? m->blocks[index] : NULL;
}

m2pt_status m2pt_model_merge(m2pt_model *m)
{
  M2PT_REQUIRE(NULL, m != NULL, "m2pt_model_merge: model is NULL");
  /* Every effective weight and bias (the ends' too: the pooler and the head
   * carry pathways) is formed before any is swapped in, so a failure merges
   * nothing. */
  for (size_t b = 0; b < m->depth; b++)
    M2PT_TRY(m2pt_block_merge_prepare(m->blocks[b]));
  for (size_t e = 0; e < M2PT_MODEL_ENDS; e++) {
    cl_mem unused;
    if (m->ends[e].linear)
      M2PT_TRY(m2pt_linear_effective_bias(m->ends[e].linear, &unused));
  }
  for (size_t b = 0; b < m->depth; b++)
    M2PT_TRY(m2pt_block_merge(m->blocks[b]));
  for (size_t e = 0; e < M2PT_MODEL_ENDS; e++)
    if (m->ends[e].linear)
      M2PT_TRY(m2pt_linear_merge(m->ends[e].linear));
  return M2PT_OK;
}

/* t seen as [batch][tokens][cols] (a 2-D tensor as one batch row). */
static m2pt_tensor view3(const m2pt_tensor *t)
{
  m2pt_tensor v = *t;
  if (t->ndim == 2) {
    v.ndim = 3;
    v.shape[0] = 1;
    v.shape[1] = t->shape[0];
    v.shape[2] = t->shape[1];
  }
  return v;
}

m2pt_status m2pt_model_forward(m2pt_model *m, const m2pt_tensor *x, const m2pt_tensor *mask,
                               m2pt_tensor *y)
{
  static const char fn[] = "m2pt_model_forward";
  M2PT_REQUIRE(NULL, m != NULL, "%s: model is NULL", fn);
  m2pt_context *ctx = m->ctx;
  if (!m->heads)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE,
                     "%s: the number of heads was not given when %s was loaded", fn, m->path);
  M2PT_TRY(m2pt_check_tensor(ctx, x, "m2pt_model_forward: x"));
  M2PT_TRY(m2pt_check_tensor(ctx, y, "m2pt_model_forward: y"));
  M2PT_REQUIRE(ctx, x != y, "%s: y must not be x", fn);
  char sx[96], sy[96];
  if ((x->ndim != 2 && x->ndim != 3) || x->shape[x->ndim - 1] != m->cfg.dim)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: x %s must be [B][N][%zu] or [N][%zu]", fn,
                     m2pt_shape_string(x, sx, sizeof sx), m->cfg.dim, m->cfg.dim);
  int same = x->ndim == y->ndim;
  for (size_t i = 0; same && i < x->ndim; i++)
    same = x->shape[i] == y->shape[i];
  if (!same)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: y %s must have x's shape %s", fn,
                     m2pt_shape_string(y, sy, sizeof sy), m2pt_shape_string(x, sx, sizeof sx));
  const m2pt_tensor xv = view3(x);
  m2pt_tensor yv = view3(y), mv;
  M2PT_TRY(m2pt_check_mask(ctx, mask, x, fn));
  if (mask) {
    mv = *mask;
    mv.ndim = 2;
    mv.shape[0] = xv.shape[0];
    mv.shape[1] = xv.shape[1];
  }
  const size_t rows = xv.shape[0] * xv.shape[1];
  m2pt_tensor tv = yv;
  if (m->depth > 1)
    M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_STACK, x->numel * sizeof(float), &tv.buffer));
  /* Outputs alternate between y and the scratch so the last block writes y. */
  const m2pt_tensor *in = &xv;
  for (size_t b = 0; b < m->depth; b++) {
    m2pt_tensor *out = (m->depth - 1 - b) % 2 == 0 ? &yv : &tv;
    M2PT_TRY(m2pt_block_forward(m->blocks[b], in, mask ? &mv : NULL, out));
    in = out;
  }
  if (m->norm_w)
    M2PT_TRY(m2pt_op_layer_norm(ctx, yv.buffer, m->norm_w, m->norm_b, m->cfg.eps, rows,
                                m->cfg.dim, yv.buffer));
  return M2PT_OK;
}
