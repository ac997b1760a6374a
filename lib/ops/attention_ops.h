/* What the attention forward (attention.c) and backward
 * (attention_backward.c) share: the fused programs' geometry, the GEMM
 * path's score buffers and the public functions' argument checks. */
#ifndef M2PT_OPS_ATTENTION_OPS_H
#define M2PT_OPS_ATTENTION_OPS_H

#include <stddef.h>

#include "block_ops.h"
#include "core/workspace.h"
#include "gemm/backend.h"

/* Work-items per work-group of every fused kernel (BQ). */
size_t m2pt_attention_fused_group(const m2pt_context *ctx);

/* The -D options of cl/attention.cl for this head size: the inference
 * program (backward 0) or the training one (backward 1: the forward that
 * saves lse, and the backward kernels). */
void m2pt_attention_fused_options(const m2pt_context *ctx, size_t dim_head, int has_mask,
                                  int backward, char *buf, size_t size);

/* [heads][N][N] floats of a workspace slot (the GEMM path's scores), or
 * M2PT_ERR_DEVICE_OUT_OF_MEMORY when the size overflows. */
m2pt_status m2pt_attention_scores(m2pt_context *ctx, m2pt_workspace_slot slot,
                                  const m2pt_attention_shape *s, cl_mem *out);

/* Batch row b's q, k and v of every head (m[0], m[1], m[2]) in a buffer of
 * qkv's layout, as strided-batched GEMM operands: heads are dim_head apart
 * inside each token's row. */
void m2pt_attention_heads(cl_mem qkv, const m2pt_attention_shape *s, size_t b,
                          m2pt_gemm_matrix m[3]);

/* The checks shared by the public attention functions (fn names the
 * caller in messages): qkv, out (the forward's output, or the backward's
 * dout; outn names it) and mask, and impl; *shape describes them. */
m2pt_status m2pt_attention_check(m2pt_context *ctx, const char *fn, const m2pt_tensor *qkv,
                                 size_t heads, size_t dim_head, const m2pt_tensor *mask,
                                 m2pt_attention_impl impl, const m2pt_tensor *out,
                                 const char *outn, m2pt_attention_shape *shape);

/* The checks of the fused training pair m2pt_attention_train writes: qkv,
 * mask and out as m2pt_attention_check, lse ([batch][heads][tokens], not
 * qkv or out), and that the fused backward can run here
 * (M2PT_ERR_UNSUPPORTED otherwise); *shape describes them. */
m2pt_status m2pt_attention_check_saved(m2pt_context *ctx, const char *fn,
                                       const m2pt_tensor *qkv, size_t heads, size_t dim_head,
                                       const m2pt_tensor *mask, const m2pt_tensor *out,
                                       const m2pt_tensor *lse, m2pt_attention_shape *shape);

#endif
