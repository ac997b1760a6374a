/* The multi-head attention backward: the GEMM path (P recomputed from the
 * training forward's log-sum-exp into an [heads][N][N] buffer,
 * strided-batched GEMMs) and the fused O(N)-memory
 * one of cl/attention.cl (FlashAttention-2: P recomputed tile by tile from
 * the training forward's log-sum-exp). */
#include <math.h>
#include <stdio.h>

#include "attention_ops.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "core/program.h"
#include "gemm/backend.h"
#include "tensor_checks.h"

/* Per batch row b, every head at once in each strided-batched GEMM (heads
 * are dim_head apart inside each token's row, their score matrices N² apart
 * in the scratch). With S' = s·Q·Kᵀ and P = softmax(S' + mask):
 * ∂L/∂V = Pᵀ·dO; ∂L/∂P = dO·Vᵀ; ∂L/∂S' = P ⊙ (∂L/∂P − D), D =
 * rowsum(∂L/∂P ⊙ P) = rowsum(dO ⊙ O) (softmax's Jacobian diag(p) − p·pᵀ
 * applied to each row; D for the whole batch first, from the forward's
 * output); and since S' = s·Q·Kᵀ, ∂L/∂Q = s·∂L/∂S'·K and
 * ∂L/∂K = s·(∂L/∂S')ᵀ·Q. */
static m2pt_status attention_backward_gemm(m2pt_context *ctx, cl_mem qkv, cl_mem mask,
                                           cl_mem out, cl_mem lse, cl_mem dout,
                                           const m2pt_attention_shape *s, cl_mem dqkv)
{
  const size_t n = s->tokens, d = s->dim_head, hd = s->heads * d;
  cl_mem p_buf, ds_buf, delta;
  M2PT_TRY(m2pt_attention_scores(ctx, M2PT_WS_SCORES, s, &p_buf));
  M2PT_TRY(m2pt_attention_scores(ctx, M2PT_WS_GRAD_SCORES, s, &ds_buf));
  M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_ATTN_DELTA,
                              s->batch * s->heads * s->tokens * sizeof(float), &delta));
  M2PT_TRY(m2pt_op_attention_delta(ctx, dout, out, s, delta));
  const float scale = (float)(1.0 / sqrt((double)d));
  for (size_t b = 0; b < s->batch; b++) {
    m2pt_gemm_matrix m[3], dm[3];
    m2pt_attention_heads(qkv, s, b, m);
    m2pt_attention_heads(dqkv, s, b, dm);
    const m2pt_gemm_matrix q = m[0], k = m[1], v = m[2], dq = dm[0], dk = dm[1], dv = dm[2];
    const m2pt_gemm_matrix p = {p_buf, 0, n, n * n}, ds = {ds_buf, 0, n, n * n};
    const m2pt_gemm_matrix dout_b = {dout, b * n * hd, hd, d};
    /* P = e^(S' − lse): one elementwise pass where a softmax takes three
     * over each row with two exponentials per score (on PoCL, scalar ones:
     * 45 of a ViT-B/16 block backward's 350 ms at B = 8 went there). */
    M2PT_TRY(m2pt_gemm_sgemm(ctx, M2PT_NO_TRANS, M2PT_TRANS, n, n, d, scale, &q, &k, 0.0f, &p,
                             s->heads));
    M2PT_TRY(m2pt_op_softmax_from_lse(ctx, p_buf, s->heads * n, n, 1.0f, mask, b * n,
                                      s->heads * n, lse, b * s->heads * n, p_buf));
    M2PT_TRY(m2pt_gemm_sgemm(ctx, M2PT_TRANS, M2PT_NO_TRANS, n, d, n, 1.0f, &p, &dout_b, 0.0f,
                             &dv, s->heads));
    M2PT_TRY(m2pt_gemm_sgemm(ctx, M2PT_NO_TRANS, M2PT_TRANS, n, n, d, 1.0f, &dout_b, &v, 0.0f,
                             &ds, s->heads));
    /* In place: dS over dP; masked keys and all-padding rows (P = 0 there)
     * come out 0. */
    M2PT_TRY(m2pt_op_softmax_backward_dot(ctx, ds_buf, p_buf, s->heads * n, n, 1.0f, delta,
                                          b * s->heads * n, ds_buf));
    M2PT_TRY(m2pt_gemm_sgemm(ctx, M2PT_NO_TRANS, M2PT_NO_TRANS, n, d, n, scale, &ds, &k, 0.0f,
                             &dq, s->heads));
    M2PT_TRY(m2pt_gemm_sgemm(ctx, M2PT_TRANS, M2PT_NO_TRANS, n, d, n, scale, &ds, &q, 0.0f, &dk,
                             s->heads));
  }
  return M2PT_OK;
}

/* The fused backward from the training forward's out and lse: the dQ
 * kernel (which also writes D = rowsum(dO ⊙ O) into the workspace), then
 * the dK, dV kernel that reads D (the queue is in order). */
static m2pt_status attention_backward_fused(m2pt_context *ctx, cl_mem qkv, cl_mem mask,
                                            cl_mem out, cl_mem lse, cl_mem dout,
                                            const m2pt_attention_shape *s, cl_mem dqkv)
{
  cl_mem delta;
  M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_ATTN_DELTA,
                              s->batch * s->heads * s->tokens * sizeof(float), &delta));
  char options[128];
  m2pt_attention_fused_options(ctx, s->dim_head, mask != NULL, 1, options, sizeof options);
  const size_t bq = m2pt_attention_fused_group(ctx);
  const cl_uint tokens = (cl_uint)s->tokens, heads = (cl_uint)s->heads;
  const float scale = (float)(1.0 / sqrt((double)s->dim_head));
  const size_t global[3] = {(s->tokens + bq - 1) / bq * bq, s->heads, s->batch};
  const size_t local[3] = {bq, 1, 1};
  const m2pt_kernel_arg dq[] = {M2PT_ARG(qkv),   M2PT_ARG(mask),   M2PT_ARG(out),
                                M2PT_ARG(lse),   M2PT_ARG(dout),   M2PT_ARG(delta),
                                M2PT_ARG(dqkv),  M2PT_ARG(tokens), M2PT_ARG(heads),
                                M2PT_ARG(scale)};
  M2PT_TRY(m2pt_run_kernel(ctx, &m2pt_cl_attention, options, "m2pt_attention_backward_dq", dq,
                           10, 3, global, local));
  const m2pt_kernel_arg dkdv[] = {M2PT_ARG(qkv),    M2PT_ARG(mask),  M2PT_ARG(lse),
                                  M2PT_ARG(dout),   M2PT_ARG(delta), M2PT_ARG(dqkv),
                                  M2PT_ARG(tokens), M2PT_ARG(heads), M2PT_ARG(scale)};
  return m2pt_run_kernel(ctx, &m2pt_cl_attention, options, "m2pt_attention_backward_dkdv", dkdv,
                         9, 3, global, local);
}

m2pt_status m2pt_op_attention_backward(m2pt_context *ctx, cl_mem qkv, cl_mem mask, cl_mem out,
                                       cl_mem lse, cl_mem dout,
                                       const m2pt_attention_shape *shape,
                                       m2pt_attention_impl impl, cl_mem dqkv)
{
  m2pt_attention_impl chosen;
  M2PT_TRY(m2pt_attention_backward_choose(ctx, shape, mask != NULL, impl, &chosen));
  return chosen == M2PT_ATTENTION_FUSED
             ? attention_backward_fused(ctx, qkv, mask, out, lse, dout, shape, dqkv)
             : attention_backward_gemm(ctx, qkv, mask, out, lse, dout, shape, dqkv);
}

/* The checks of both public backward functions but out and lse's. */
static m2pt_status check_backward(m2pt_context *ctx, const char *fn, const m2pt_tensor *qkv,
                                  size_t heads, size_t dim_head, const m2pt_tensor *mask,
                                  const m2pt_tensor *dout, m2pt_attention_impl impl,
                                  const m2pt_tensor *dqkv, m2pt_attention_shape *shape)
{
  M2PT_TRY(m2pt_attention_check(ctx, fn, qkv, heads, dim_head, mask, impl, dout, "dout", shape));
  char name[64];
  snprintf(name, sizeof name, "%s: dqkv", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, dqkv, name));
  M2PT_REQUIRE(ctx, dqkv != qkv && dqkv != dout, "%s: dqkv must not be qkv or dout", fn);
  return m2pt_check_same_shape(ctx, qkv, dqkv, fn, "qkv", "dqkv");
}

m2pt_status m2pt_attention_backward(m2pt_context *ctx, const m2pt_tensor *qkv, size_t heads,
                                    size_t dim_head, const m2pt_tensor *mask,
                                    const m2pt_tensor *dout, m2pt_attention_impl impl,
                                    m2pt_tensor *dqkv)
{
  m2pt_attention_shape s;
  M2PT_TRY(check_backward(ctx, "m2pt_attention_backward", qkv, heads, dim_head, mask, dout, impl,
                          dqkv, &s));
  const cl_mem mask_buf = mask ? mask->buffer : NULL;
  /* Nothing saved: the training forward first, into the workspace (O(N)),
   * for the backward that impl chooses. */
  cl_mem out, lse;
  M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_ATTN, dout->numel * sizeof(float), &out));
  M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_ATTN_LSE, s.batch * s.heads * s.tokens * sizeof(float),
                              &lse));
  M2PT_TRY(m2pt_op_attention_train(ctx, qkv->buffer, mask_buf, &s, impl, out, lse));
  return m2pt_op_attention_backward(ctx, qkv->buffer, mask_buf, out, lse, dout->buffer, &s, impl,
                                    dqkv->buffer);
}

m2pt_status m2pt_attention_backward_saved(m2pt_context *ctx, const m2pt_tensor *qkv,
                                          size_t heads, size_t dim_head,
                                          const m2pt_tensor *mask, const m2pt_tensor *out,
                                          const m2pt_tensor *lse, const m2pt_tensor *dout,
                                          m2pt_tensor *dqkv)
{
  static const char fn[] = "m2pt_attention_backward_saved";
  m2pt_attention_shape s;
  M2PT_TRY(check_backward(ctx, fn, qkv, heads, dim_head, mask, dout, M2PT_ATTENTION_FUSED, dqkv,
                          &s));
  M2PT_TRY(m2pt_attention_check_saved(ctx, fn, qkv, heads, dim_head, mask, out, lse, &s));
  M2PT_REQUIRE(ctx, dqkv != out && dqkv != lse, "%s: dqkv must not be out or lse", fn);
  return attention_backward_fused(ctx, qkv->buffer, mask ? mask->buffer : NULL, out->buffer,
                                  lse->buffer, dout->buffer, &s, dqkv->buffer);
}
