/* Multi-head self-attention on timm's fused qkv layout. */
#ifndef M2PT_ATTENTION_H
#define M2PT_ATTENTION_H

#include <stddef.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum m2pt_attention_impl {
  M2PT_ATTENTION_AUTO = 0, /* the library picks by shape and device */
  M2PT_ATTENTION_GEMM,     /* CLBlast batched GEMMs and a softmax kernel; O(N²) memory */
  M2PT_ATTENTION_FUSED,    /* one flash-style kernel, online softmax; O(N) memory */
} m2pt_attention_impl;

/* out = softmax(q·kᵀ·dim_head^-0.5 + mask)·v for each batch row and head.
 * qkv is [B][N][3·heads·dim_head], each token's row split as
 * [3][heads][dim_head] (timm's reshape order); out is [B][N][heads·dim_head]
 * with heads side by side. mask is NULL or [B][N]: 1 for real tokens, 0 for
 * padding keys; a query whose keys are all masked gets zeros. Both
 * implementations give the same results within f32 rounding. FUSED runs,
 * per device (quirk attention_kernel), the tiled kernel (GPUs) or one shaped
 * for CPUs (query rows per work-item, keys in vectors). Scratch memory comes
 * from the context's workspace: the GEMM path's [heads][N][N] scores; the
 * CPU-shaped fused kernel's copies of K (transposed) and V and a key bias,
 * O(N).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, zero heads or dim_head, out is
 * qkv, unknown impl), M2PT_ERR_SHAPE, M2PT_ERR_CONTEXT_MISMATCH,
 * M2PT_ERR_DEVICE_OUT_OF_MEMORY (the GEMM path's scores do not fit),
 * M2PT_ERR_UNSUPPORTED (FUSED forced where it cannot run: dim_head > 256,
 * tiles beyond the device's local memory, or a work-group limit below 32),
 * M2PT_ERR_BLAS, M2PT_ERR_OPENCL, M2PT_ERR_KERNEL_BUILD. */
M2PT_API m2pt_status m2pt_attention(m2pt_context *ctx, const m2pt_tensor *qkv, size_t heads,
                                    size_t dim_head, const m2pt_tensor *mask,
                                    m2pt_attention_impl impl, m2pt_tensor *out);

/* The backward of out = m2pt_attention(qkv, heads, dim_head, mask): from
 * the upstream dout = ∂L/∂out ([B][N][heads·dim_head]) it writes
 * dqkv = ∂L/∂qkv, every element, in qkv's layout ([B][N][3·heads·dim_head],
 * dQ, dK, dV side by side as q, k, v are). Per batch row and head, with
 * s = dim_head^-0.5 and the forward's P = softmax(s·Q·Kᵀ + mask)
 * recomputed (nothing is saved by the forward; the recompute is one GEMM
 * and the softmax kernel, the forward's own, so P has the forward's bits):
 *   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P))
 *   (m2pt_softmax_backward),  dQ = s·dS·K,  dK = s·dSᵀ·Q,
 * each product a strided-batched GEMM over the heads. Masked keys get
 * dK = dV = 0; a batch row whose keys are all padding (the forward gave
 * zeros) gets zeros everywhere, never NaN. Deterministic: the same inputs
 * give the same bits twice on one context. Scratch: two [heads][N][N]
 * score buffers from the context's workspace.
 * impl: AUTO and GEMM run this GEMM path (O(N²) scratch). FUSED, the
 * O(N)-memory backward of the fused kernel (FlashAttention-2's: P
 * recomputed tile by tile from a saved log-sum-exp, no N×N buffer), is a
 * later step and fails with M2PT_ERR_UNSUPPORTED for now; AUTO will then
 * choose as the forward does.
 * dqkv must not be qkv or dout. Errors: as m2pt_attention, and
 * M2PT_ERR_SHAPE when dout is not out's shape or dqkv not qkv's. */
M2PT_API m2pt_status m2pt_attention_backward(m2pt_context *ctx, const m2pt_tensor *qkv,
                                             size_t heads, size_t dim_head,
                                             const m2pt_tensor *mask, const m2pt_tensor *dout,
                                             m2pt_attention_impl impl, m2pt_tensor *dqkv);

#ifdef __cplusplus
}
#endif

#endif
