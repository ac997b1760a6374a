/* Device-level ops of the transformer block on raw buffers, arguments
 * already validated (the public wrappers in the same files check tensors).
 * Kernels: cl/layer_norm.cl, cl/elementwise.cl, cl/softmax.cl,
 * cl/attention.cl. */
#ifndef M2PT_OPS_BLOCK_OPS_H
#define M2PT_OPS_BLOCK_OPS_H

#include <stddef.h>

#include "core/cl.h"
#include "m2pt/attention.h"
#include "m2pt/ops.h"

/* LayerNorm of `rows` rows of `dim`; bias may be NULL; y may be x. */
m2pt_status m2pt_op_layer_norm(m2pt_context *ctx, cl_mem x, cl_mem weight, cl_mem bias,
                               float eps, size_t rows, size_t dim, cl_mem y);

/* The same, also storing each row's mean and rstd ([rows] floats each)
 * when both are not NULL (a training forward). */
m2pt_status m2pt_op_layer_norm_train(m2pt_context *ctx, cl_mem x, cl_mem weight, cl_mem bias,
                                     float eps, size_t rows, size_t dim, cl_mem y, cl_mem mean,
                                     cl_mem rstd);

/* LayerNorm backward from the saved mean and rstd; each of dx, dweight,
 * dbias may be NULL (not computed). */
m2pt_status m2pt_op_layer_norm_backward(m2pt_context *ctx, cl_mem dy, cl_mem x, cl_mem weight,
                                        cl_mem mean, cl_mem rstd, size_t rows, size_t dim,
                                        cl_mem dx, cl_mem dweight, cl_mem dbias);

/* Column sums of a [rows][cols]: plain[c] = Σ_r a[r][c] and, when xhat is
 * not NULL, xhat[c] = Σ_r a[r][c]·(x[r][c] − mean[r])·rstd[r]; plain may
 * be NULL. Deterministic (fixed-order tree, cl/elementwise.cl). */
m2pt_status m2pt_op_column_sums(m2pt_context *ctx, cl_mem a, cl_mem x, cl_mem mean, cl_mem rstd,
                                size_t rows, size_t cols, cl_mem plain, cl_mem xhat);

/* y = GELU(x + bias[i % cols]) for n elements (a multiple of cols); bias
 * may be NULL. */
m2pt_status m2pt_op_gelu(m2pt_context *ctx, cl_mem x, cl_mem bias, m2pt_gelu_kind kind,
                         size_t n, size_t cols, cl_mem y);

/* dx = dy·GELU'(x + bias[i % cols]) for n elements; bias may be NULL. act
 * NULL, or it also gets GELU(x + bias) as m2pt_op_gelu writes it (the same
 * bits, for one pass where a backward needs both). */
m2pt_status m2pt_op_gelu_backward(m2pt_context *ctx, cl_mem dy, cl_mem x, cl_mem bias,
                                  m2pt_gelu_kind kind, size_t n, size_t cols, cl_mem dx,
                                  cl_mem act);

/* y = a + b[i % period] (period 0: b has n elements; else n is a multiple
 * of period). */
m2pt_status m2pt_op_add(m2pt_context *ctx, cl_mem a, cl_mem b, size_t n, size_t period,
                        cl_mem y);

/* Row softmax of scale·x over `cols`; mask may be NULL, else row r uses the
 * mask row at mask_offset + (r / rows_per_group)·cols. lse NULL, or row r's
 * log-sum-exp (natural log, over the kept keys; -inf when none is kept) is
 * stored at lse[lse_offset + r]. */
m2pt_status m2pt_op_softmax(m2pt_context *ctx, cl_mem x, size_t rows, size_t cols, float scale,
                            cl_mem mask, size_t mask_offset, size_t rows_per_group, cl_mem y,
                            cl_mem lse, size_t lse_offset);

/* The same softmax recomputed from its log-sum-exp (as m2pt_op_softmax
 * stores it): y = e^(scale·x − lse[lse_offset + r]) on kept keys, 0 on
 * masked ones and on rows whose lse is -inf. One elementwise pass. */
m2pt_status m2pt_op_softmax_from_lse(m2pt_context *ctx, cl_mem x, size_t rows, size_t cols,
                                     float scale, cl_mem mask, size_t mask_offset,
                                     size_t rows_per_group, cl_mem lse, size_t lse_offset,
                                     cl_mem y);

/* The backward of m2pt_op_softmax from its output y (mask as there). */
m2pt_status m2pt_op_softmax_backward(m2pt_context *ctx, cl_mem dy, cl_mem y, size_t rows,
                                     size_t cols, float scale, cl_mem mask, size_t mask_offset,
                                     size_t rows_per_group, cl_mem dx);

/* Attention shape: qkv [batch][tokens][3·heads·dim_head] → out
 * [batch][tokens][heads·dim_head]; mask NULL or [batch][tokens]. */
typedef struct m2pt_attention_shape {
  size_t batch, tokens, heads, dim_head;
} m2pt_attention_shape;

/* dx = scale·y ⊙ (dy − dot[dot_offset + r]) for row r: the softmax backward
 * (y its output, dy ∂L/∂y) when Σ_k dy_k·y_k of each row is known, as
 * attention's D = rowsum(dO ⊙ O) (m2pt_op_attention_delta). Masked keys
 * need no mask: y is 0 there. dx may be dy or y. */
m2pt_status m2pt_op_softmax_backward_dot(m2pt_context *ctx, cl_mem dy, cl_mem y, size_t rows,
                                         size_t cols, float scale, cl_mem dot, size_t dot_offset,
                                         cl_mem dx);

/* delta [batch][heads][tokens] = Σ over each head's dim_head values of
 * dout ⊙ out (both [batch][tokens][heads·dim_head]). */
m2pt_status m2pt_op_attention_delta(m2pt_context *ctx, cl_mem dout, cl_mem out,
                                    const m2pt_attention_shape *s, cl_mem delta);

/* The implementation AUTO resolves to for this head size on ctx's device
 * (the fused kernel wherever it can run), or the forced one;
 * M2PT_ERR_UNSUPPORTED (with the reason) when FUSED cannot run here. May
 * build the fused kernel to ask its work-group limit. */
m2pt_status m2pt_attention_choose(m2pt_context *ctx, size_t dim_head, int has_mask,
                                  m2pt_attention_impl requested, m2pt_attention_impl *chosen);

/* The implementation m2pt_attention_backward runs for `requested` (the
 * rule is <m2pt/attention.h>'s): FUSED where the training program (the
 * forward that saves lse and the backward kernels) can run and AUTO or the
 * quirks ask for it, else GEMM (on CPU devices AUTO takes GEMM while its
 * scores of one batch row fit a budget); M2PT_ERR_UNSUPPORTED when FUSED
 * is forced and cannot run. May build the training program. */
m2pt_status m2pt_attention_backward_choose(m2pt_context *ctx, const m2pt_attention_shape *shape,
                                           int has_mask, m2pt_attention_impl requested,
                                           m2pt_attention_impl *chosen);

m2pt_status m2pt_op_attention(m2pt_context *ctx, cl_mem qkv, cl_mem mask,
                              const m2pt_attention_shape *shape, m2pt_attention_impl impl,
                              cl_mem out);

/* The fused forward's CPU-shaped kernel (cl/attention_cpu.cl; the quirk
 * attention_kernel=rows): the same result as the fused kernel, O(N)
 * memory (Kᵀ and a key bias in the workspace's M2PT_WS_KEYS_T slot, no
 * N×N buffer). With lse not NULL, also each row's log-sum-exp
 * ([batch][heads][tokens], as the tiled training forward's, for the fused
 * backward). Shapes are checked by the caller; dim_head ≤ 256. */
m2pt_status m2pt_attention_rows(m2pt_context *ctx, cl_mem qkv, cl_mem mask,
                                const m2pt_attention_shape *s, cl_mem out, cl_mem lse);

/* A training forward: out as m2pt_op_attention writes it and each row's
 * log-sum-exp into lse ([batch][heads][tokens] floats), from which either
 * backward recomputes P. The same bits as m2pt_op_attention but on a device
 * with the tiled fused kernel whose training program cannot run there:
 * then the GEMM path's. */
m2pt_status m2pt_op_attention_train(m2pt_context *ctx, cl_mem qkv, cl_mem mask,
                                    const m2pt_attention_shape *shape, m2pt_attention_impl impl,
                                    cl_mem out, cl_mem lse);

/* The backward of m2pt_op_attention_train with the same qkv, mask, shape
 * and impl, from its out and lse (both still holding what it wrote): the
 * fused kernels, or the GEMM path (P recomputed from lse, D = rowsum(dO ⊙
 * out)). */
m2pt_status m2pt_op_attention_backward(m2pt_context *ctx, cl_mem qkv, cl_mem mask, cl_mem out,
                                       cl_mem lse, cl_mem dout,
                                       const m2pt_attention_shape *shape,
                                       m2pt_attention_impl impl, cl_mem dqkv);

#endif
