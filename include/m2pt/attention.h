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
 * per device (quirk attention_kernel), the tiled kernel (GPUs), one shaped
 * for CPUs (query rows per work-item, keys in vectors), or on CPU devices
 * whose GEMMs run on the host and whose CPU has AVX-512, for dim_head 64,
 * the same in C on the host, on the context's host workers (oneDNN's
 * OpenMP threads where it runs on libgomp, else threads of the context's
 * own, one per compute unit, each pinned to a CPU; made on first use,
 * released by m2pt_context_trim). Scratch memory comes from the context's workspace:
 * the GEMM path's [heads][N][N] scores; the CPU-shaped fused kernel's
 * copies of K (transposed) and V and a key bias, O(N); the host's, O(N)
 * per thread, from the heap (M2PT_ERR_OUT_OF_MEMORY where it fails).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, zero heads or dim_head, out is
 * qkv, unknown impl), M2PT_ERR_SHAPE, M2PT_ERR_CONTEXT_MISMATCH,
 * M2PT_ERR_DEVICE_OUT_OF_MEMORY (the GEMM path's scores do not fit),
 * M2PT_ERR_UNSUPPORTED (FUSED forced where it cannot run: dim_head > 256,
 * tiles beyond the device's local memory, or a work-group limit below 32),
 * M2PT_ERR_BLAS, M2PT_ERR_OPENCL, M2PT_ERR_KERNEL_BUILD. */
M2PT_API m2pt_status m2pt_attention(m2pt_context *ctx, const m2pt_tensor *qkv, size_t heads,
                                    size_t dim_head, const m2pt_tensor *mask,
                                    m2pt_attention_impl impl, m2pt_tensor *out);

/* The fused forward in training mode: out exactly as m2pt_attention(...,
 * M2PT_ATTENTION_FUSED, out) writes it (the same bits), and lse
 * ([B][heads][N]) = each query row's log-sum-exp of its scores,
 * log Σ_j e^(s·q·k_j) over its kept keys (-inf for a row whose keys are
 * all padding), for m2pt_attention_backward_saved. O(N) memory, as the
 * forward. Errors: as m2pt_attention; M2PT_ERR_SHAPE for lse;
 * M2PT_ERR_INVALID_ARGUMENT when lse is qkv or out; M2PT_ERR_UNSUPPORTED
 * where the fused backward cannot run (see below). */
M2PT_API m2pt_status m2pt_attention_train(m2pt_context *ctx, const m2pt_tensor *qkv,
                                          size_t heads, size_t dim_head,
                                          const m2pt_tensor *mask, m2pt_tensor *out,
                                          m2pt_tensor *lse);

/* The backward of out = m2pt_attention(qkv, heads, dim_head, mask): from
 * the upstream dout = ∂L/∂out ([B][N][heads·dim_head]) it writes
 * dqkv = ∂L/∂qkv, every element, in qkv's layout ([B][N][3·heads·dim_head],
 * dQ, dK, dV side by side as q, k, v are). Per batch row and head, with
 * s = dim_head^-0.5 and the forward's P = softmax(s·Q·Kᵀ + mask):
 *   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − D),  D = rowsum(dP ⊙ P)
 *   = rowsum(dO ⊙ O),  dQ = s·dS·K,  dK = s·dSᵀ·Q.
 * Masked keys get dK = dV = 0; a batch row whose keys are all padding (the
 * forward gave zeros) gets zeros everywhere, never NaN. Deterministic (no
 * atomics): the same inputs give the same bits twice on one context. Two
 * implementations, agreeing within f32 rounding:
 * - GEMM: P recomputed as e^(s·Q·Kᵀ − lse) from the forward's log-sum-exp
 *   (one GEMM and one elementwise pass), dS elementwise from D = rowsum(dO
 *   ⊙ O) of the forward's output, and four strided-batched GEMMs over the
 *   heads. Scratch: two [heads][N][N] score buffers and D ([B][heads][N])
 *   from the workspace.
 * - FUSED, FlashAttention-2's O(N)-memory backward: P recomputed tile by
 *   tile from the forward's log-sum-exp, never an N×N buffer; one kernel
 *   per query tile writes dQ and D, one per key tile writes dK and dV.
 * Nothing is saved here, so either path first runs the training forward
 * that impl picks into the workspace, keeping its log-sum-exp
 * ([B][N][heads·dim_head] + [B][heads][N] floats of scratch more);
 * m2pt_attention_backward_saved skips that.
 * Which runs: GEMM and FUSED as asked (FUSED fails with
 * M2PT_ERR_UNSUPPORTED where it cannot run: dim_head > 256, tiles beyond
 * local memory, or a compiled kernel's work-group limit below 32). AUTO
 * chooses by the same switch as the forward (M2PT_QUIRKS
 * attention=auto|fused|gemm): on CPU devices the GEMM path while its
 * 2·heads·N² floats of scratch stay within 256 MiB (N ≤ 1182 at 12 heads),
 * where it was the faster one on PoCL with host BLAS GEMMs (12.7 against
 * 21.9 ms at N = 197, 214 against 334 ms at 1024, 12 heads of 64), else,
 * and on other devices, the fused backward wherever it can run, else the
 * GEMM path. A training loop that wants O(N) memory at any N asks for
 * FUSED, or runs m2pt_attention_train and m2pt_attention_backward_saved.
 * dqkv must not be qkv or dout. Errors: as m2pt_attention, and
 * M2PT_ERR_SHAPE when dout is not out's shape or dqkv not qkv's. */
M2PT_API m2pt_status m2pt_attention_backward(m2pt_context *ctx, const m2pt_tensor *qkv,
                                             size_t heads, size_t dim_head,
                                             const m2pt_tensor *mask, const m2pt_tensor *dout,
                                             m2pt_attention_impl impl, m2pt_tensor *dqkv);

/* The fused backward (above) from what m2pt_attention_train saved: qkv,
 * mask, out and lse must be that call's. Scratch: [B][heads][N] floats.
 * dqkv must not be qkv, out, lse or dout. Errors: as
 * m2pt_attention_backward with FUSED, and M2PT_ERR_SHAPE for out or lse. */
M2PT_API m2pt_status m2pt_attention_backward_saved(m2pt_context *ctx, const m2pt_tensor *qkv,
                                                   size_t heads, size_t dim_head,
                                                   const m2pt_tensor *mask,
                                                   const m2pt_tensor *out,
                                                   const m2pt_tensor *lse,
                                                   const m2pt_tensor *dout, m2pt_tensor *dqkv);

#ifdef __cplusplus
}
#endif

#endif
