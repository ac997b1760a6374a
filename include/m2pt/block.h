/* The M2PT transformer block (the seed's MPTransformerBlock, with the
 * semantics of the paper's code and timm's Block): multi-head self-attention
 * and an FFN whose four linears (attn.qkv, attn.proj, mlp.fc1, mlp.fc2) are
 * cross-modal re-parameterized, each with its own λ.
 *   pre-norm (ViT):   h = x + proj(MHSA(qkv(LN1(x))));  y = h + fc2(GELU(fc1(LN2(h))))
 *   post-norm (BERT): h = LN1(x + proj(MHSA(qkv(x))));  y = LN2(h + fc2(GELU(fc1(h)))) */
#ifndef M2PT_BLOCK_H
#define M2PT_BLOCK_H

#include <stddef.h>

#include "attention.h"
#include "ops.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct m2pt_block m2pt_block;

typedef enum m2pt_block_layout {
  M2PT_PRE_NORM = 0,  /* timm ViT */
  M2PT_POST_NORM = 1, /* BERT */
} m2pt_block_layout;

typedef struct m2pt_block_config {
  size_t dim;            /* model width */
  size_t heads;
  size_t dim_head;       /* heads·dim_head may differ from dim */
  size_t ff_mult;        /* fc1 maps dim → ff_mult·dim */
  float eps;             /* LayerNorm eps: 1e-6 for timm ViT, 1e-12 for BERT */
  int qkv_bias;          /* attn.qkv has a bias */
  int reparam;           /* the four linears carry W_aux and λ (M2PT) */
  m2pt_block_layout layout;
  m2pt_gelu_kind gelu;
  m2pt_attention_impl attention;
} m2pt_block_config;

/* A ViT configuration: dim_head = dim / heads (rounded down: set dim_head
 * yourself when heads does not divide dim), ff_mult 4, eps 1e-6, qkv bias,
 * re-parameterized, pre-norm, exact GELU, attention picked by the library. */
M2PT_API m2pt_block_config m2pt_block_config_vit(size_t dim, size_t heads);

/* Creates a block with every parameter zero, LayerNorm weights one and every
 * λ zero. The caller owns *out and frees it with m2pt_block_destroy.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, a zero or overflowing size, eps
 * not finite or < 0, unknown layout, gelu or attention value),
 * M2PT_ERR_UNSUPPORTED (attention forced to FUSED where it cannot run, see
 * m2pt_attention), M2PT_ERR_DEVICE_OUT_OF_MEMORY, M2PT_ERR_OPENCL,
 * M2PT_ERR_KERNEL_BUILD. */
M2PT_API m2pt_status m2pt_block_create(m2pt_context *ctx, const m2pt_block_config *config,
                                       m2pt_block **out);

/* Frees the block. Accepts NULL. */
M2PT_API void m2pt_block_destroy(m2pt_block *block);

/* Sets or reads one parameter by its checkpoint name (DESIGN.md §1, without
 * the "blocks.{i}." prefix), in PyTorch layout: "norm1.weight",
 * "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.qkv.aux_weight",
 * "attn.qkv.cross_modal_scale" (count 1), likewise "attn.proj.*",
 * "norm2.*", "mlp.fc1.*", "mlp.fc2.*". `count` must be the parameter's size.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, unknown name, non-finite λ),
 * M2PT_ERR_SHAPE (count), M2PT_ERR_INVALID_STATE (no such parameter in this
 * configuration: qkv bias off, a plain block, or merged), M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_block_set(m2pt_block *block, const char *name, const float *data,
                                    size_t count);
M2PT_API m2pt_status m2pt_block_get(const m2pt_block *block, const char *name, float *data,
                                    size_t count);

/* y = block(x) for x [B][N][dim] (B, N ≥ 1), y of the same shape (y ≠ x).
 * mask is NULL or [B][N], 1 for tokens and 0 for padding keys. Scratch
 * memory comes from the context's workspace: repeated forwards of one shape
 * allocate no device memory after the first.
 * Errors: M2PT_ERR_INVALID_ARGUMENT, M2PT_ERR_SHAPE,
 * M2PT_ERR_CONTEXT_MISMATCH, M2PT_ERR_DEVICE_OUT_OF_MEMORY, M2PT_ERR_BLAS,
 * M2PT_ERR_OPENCL, M2PT_ERR_KERNEL_BUILD. A failure part way leaves y
 * undefined and the block unchanged. */
M2PT_API m2pt_status m2pt_block_forward(m2pt_block *block, const m2pt_tensor *x,
                                        const m2pt_tensor *mask, m2pt_tensor *y);

/* Merges the four linears (m2pt_linear_merge): the block is then a plain
 * block computing the same function. A second merge, or merging a block
 * made with reparam = 0, changes nothing. On failure (forming a merged
 * weight failed: M2PT_ERR_DEVICE_OUT_OF_MEMORY, M2PT_ERR_OPENCL,
 * M2PT_ERR_KERNEL_BUILD) the block stays unmerged. */
M2PT_API m2pt_status m2pt_block_merge(m2pt_block *block);

/* 1 once the block was merged, else 0. */
M2PT_API int m2pt_block_is_merged(const m2pt_block *block);

/* The block's configuration (as created). Errors: M2PT_ERR_INVALID_ARGUMENT. */
M2PT_API m2pt_status m2pt_block_get_config(const m2pt_block *block, m2pt_block_config *config);

#ifdef __cplusplus
}
#endif

#endif
