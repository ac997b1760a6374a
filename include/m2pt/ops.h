/* Element-wise and row-wise ops of the transformer block, on device tensors.
 * All are asynchronous (enqueued on the context's queue) and validate their
 * arguments first: a rejected call changes no tensor. */
#ifndef M2PT_OPS_H
#define M2PT_OPS_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y = (x − mean) / sqrt(var + eps) · weight + bias over the last dimension
 * (biased variance, as PyTorch's LayerNorm). x and y have the same shape
 * [..][dim]; weight and bias are [dim]; bias may be NULL; y may be x.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, eps not finite or < 0),
 * M2PT_ERR_SHAPE, M2PT_ERR_CONTEXT_MISMATCH, M2PT_ERR_OPENCL,
 * M2PT_ERR_KERNEL_BUILD. */
M2PT_API m2pt_status m2pt_layer_norm(m2pt_context *ctx, const m2pt_tensor *x,
                                     const m2pt_tensor *weight, const m2pt_tensor *bias,
                                     float eps, m2pt_tensor *y);

typedef enum m2pt_gelu_kind {
  M2PT_GELU_ERF = 0,  /* exact: x·Φ(x) = x/2·(1 + erf(x/√2)) (PyTorch's default) */
  M2PT_GELU_TANH = 1, /* x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³))) */
} m2pt_gelu_kind;

/* y = GELU(x + bias), bias [last dim of x] broadcast over the rows, or no
 * bias when NULL (the fused bias + activation after a bias-free GEMM).
 * x and y have the same shape; y may be x. Errors as m2pt_layer_norm. */
M2PT_API m2pt_status m2pt_gelu(m2pt_context *ctx, const m2pt_tensor *x,
                               const m2pt_tensor *bias, m2pt_gelu_kind kind, m2pt_tensor *y);

/* y = a + b. b has a's shape, or is a vector of a's last dimension that is
 * broadcast over the rows (a residual plus a bias). y has a's shape and may
 * be a or b. Errors as m2pt_layer_norm. */
M2PT_API m2pt_status m2pt_add(m2pt_context *ctx, const m2pt_tensor *a, const m2pt_tensor *b,
                              m2pt_tensor *y);

/* y = softmax(scale·x) over the last dimension (N), computed stably (max
 * subtracted). mask, when not NULL, is [B][N] with 1 for keys to keep and 0
 * for padding: the R rows of x are B equal groups, and group b uses mask row
 * b (attention scores [B][heads][N_q][N]). A row whose keys are all masked
 * gives zeros, not NaN. y may be x.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, scale not finite),
 * M2PT_ERR_SHAPE (mask not [B][N] with B dividing the rows), as above. */
M2PT_API m2pt_status m2pt_softmax(m2pt_context *ctx, const m2pt_tensor *x, float scale,
                                  const m2pt_tensor *mask, m2pt_tensor *y);

#ifdef __cplusplus
}
#endif

#endif
