/* Element-wise and row-wise ops of the transformer block, on device tensors,
 * and their backward passes (each beside its forward; issue 12). All are
 * asynchronous (enqueued on the context's queue) and validate their
 * arguments first: a rejected call changes no tensor. Every tensor is the
 * caller's; no call keeps a reference. Backward passes compute only the
 * gradients whose output is not NULL (all NULL: nothing to do, M2PT_OK),
 * overwrite them (no accumulation) and are deterministic: reductions run in
 * a fixed order without atomics, so the same inputs give the same bits on
 * one device. Gradient outputs must not alias the inputs unless said. */
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

/* The training forward of LayerNorm: y exactly as m2pt_layer_norm, and each
 * row's mean and rstd = 1/sqrt(var + eps) (the values y was computed with,
 * as PyTorch's native_layer_norm returns them) into mean and rstd, tensors
 * of one element per row (any shape, e.g. [rows]) for
 * m2pt_layer_norm_backward. m2pt_layer_norm saves nothing.
 * Errors: as m2pt_layer_norm; M2PT_ERR_INVALID_ARGUMENT for a NULL mean or
 * rstd, M2PT_ERR_SHAPE when they do not hold one value per row. */
M2PT_API m2pt_status m2pt_layer_norm_train(m2pt_context *ctx, const m2pt_tensor *x,
                                           const m2pt_tensor *weight, const m2pt_tensor *bias,
                                           float eps, m2pt_tensor *y, m2pt_tensor *mean,
                                           m2pt_tensor *rstd);

/* The backward of LayerNorm (PyTorch's layer_norm_backward) from the
 * upstream gradient dy (x's shape), the forward's x and weight, and the
 * mean and rstd m2pt_layer_norm_train saved: with x̂ = (x − mean)·rstd and
 * g = dy·weight, dx = rstd·(g − mean_row(g) − x̂·mean_row(g·x̂)) (dx: x's
 * shape; may be dy or x), dweight = Σ_rows dy·x̂ and dbias = Σ_rows dy
 * ([dim] each). Any of dx, dweight, dbias may be NULL. The bias itself is
 * not needed.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL input), M2PT_ERR_SHAPE,
 * M2PT_ERR_CONTEXT_MISMATCH, M2PT_ERR_OPENCL, M2PT_ERR_KERNEL_BUILD. */
M2PT_API m2pt_status m2pt_layer_norm_backward(m2pt_context *ctx, const m2pt_tensor *dy,
                                              const m2pt_tensor *x, const m2pt_tensor *weight,
                                              const m2pt_tensor *mean, const m2pt_tensor *rstd,
                                              m2pt_tensor *dx, m2pt_tensor *dweight,
                                              m2pt_tensor *dbias);

typedef enum m2pt_gelu_kind {
  M2PT_GELU_ERF = 0,  /* exact: x·Φ(x) = x/2·(1 + erf(x/√2)) (PyTorch's default) */
  M2PT_GELU_TANH = 1, /* x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³))) */
} m2pt_gelu_kind;

/* y = GELU(x + bias), bias [last dim of x] broadcast over the rows, or no
 * bias when NULL (the fused bias + activation after a bias-free GEMM).
 * x and y have the same shape; y may be x. Errors as m2pt_layer_norm. */
M2PT_API m2pt_status m2pt_gelu(m2pt_context *ctx, const m2pt_tensor *x,
                               const m2pt_tensor *bias, m2pt_gelu_kind kind, m2pt_tensor *y);

/* The backward of y = GELU(x + bias) (m2pt_gelu with the same x, bias and
 * kind): dx = dy·GELU'(x + bias), evaluated with the forward's own erfc
 * approximation or tanh form (PyTorch's GeluBackward), and dbias =
 * Σ_rows dx ([last dim]). x is the forward's input before the bias; bias
 * NULL when the forward had none. dx (x's shape; may be dy or x) or dbias
 * may be NULL; dbias alone uses the context's workspace for dx.
 * Errors: as m2pt_layer_norm_backward, M2PT_ERR_INVALID_ARGUMENT for an
 * unknown kind. */
M2PT_API m2pt_status m2pt_gelu_backward(m2pt_context *ctx, const m2pt_tensor *dy,
                                        const m2pt_tensor *x, const m2pt_tensor *bias,
                                        m2pt_gelu_kind kind, m2pt_tensor *dx,
                                        m2pt_tensor *dbias);

/* y = a + b. b has a's shape, or is a vector of a's last dimension that is
 * broadcast over the rows (a residual plus a bias). y has a's shape and may
 * be a or b. Errors as m2pt_layer_norm. */
M2PT_API m2pt_status m2pt_add(m2pt_context *ctx, const m2pt_tensor *a, const m2pt_tensor *b,
                              m2pt_tensor *y);

/* y[c] = Σ_rows x[r][c] over x's last dimension c (y: a vector of that
 * many elements; not x): the gradient of whatever a row-broadcast add
 * (m2pt_add with a vector b, a bias) added. The backward of a residual
 * y = a + b is the identity, da = db = dy; where gradients of two paths
 * meet, m2pt_add(ctx, dx, dy, dx) sums them (dx += dy, element by element,
 * deterministic). Errors: as m2pt_layer_norm_backward. */
M2PT_API m2pt_status m2pt_sum_rows(m2pt_context *ctx, const m2pt_tensor *x, m2pt_tensor *y);

/* y = softmax(scale·x) over the last dimension (N), computed stably (max
 * subtracted). mask, when not NULL, is [B][N] with 1 for keys to keep and 0
 * for padding: the R rows of x are B equal groups, and group b uses mask row
 * b (attention scores [B][heads][N_q][N]). A row whose keys are all masked
 * gives zeros, not NaN. y may be x.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, scale not finite),
 * M2PT_ERR_SHAPE (mask not [B][N] with B dividing the rows), as above. */
M2PT_API m2pt_status m2pt_softmax(m2pt_context *ctx, const m2pt_tensor *x, float scale,
                                  const m2pt_tensor *mask, m2pt_tensor *y);

/* The backward of y = m2pt_softmax(x, scale, mask) from its output y and
 * the upstream dy (y's shape): dx = scale·y ⊙ (dy − Σ_row dy⊙y) (PyTorch's
 * _softmax_backward_data, times the scale); masked keys get 0, so a row
 * whose keys are all masked (the forward gave zeros there, a constant) gets
 * zeros, never NaN. mask as in the forward. dx has y's shape; may be dy or
 * y. Errors: as m2pt_softmax. */
M2PT_API m2pt_status m2pt_softmax_backward(m2pt_context *ctx, const m2pt_tensor *dy,
                                           const m2pt_tensor *y, float scale,
                                           const m2pt_tensor *mask, m2pt_tensor *dx);

#ifdef __cplusplus
}
#endif

#endif
