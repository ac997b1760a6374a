/* The M2PT transformer block (the seed's MPTransformerBlock, with the
 * semantics of the paper's code and timm's Block): multi-head self-attention
 * and an FFN whose four linears (attn.qkv, attn.proj, mlp.fc1, mlp.fc2) are
 * cross-modal re-parameterized (each with a pathway: W_aux and its own λ).
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

/* A block's shape and variant. Start from m2pt_block_config_vit() and change
 * the fields you need: it sets struct_size to the size this header gives the
 * struct, so a later m2pt that appends fields still reads an older caller's
 * config (the fields it lacks take their defaults), and a config whose
 * struct_size was never set (smaller than the struct as m2pt 0.2 first
 * released it) is refused. */
typedef struct m2pt_block_config {
  size_t struct_size;    /* sizeof(m2pt_block_config), as compiled */
  size_t dim;            /* model width */
  size_t heads;
  size_t dim_head;       /* heads·dim_head may differ from dim */
  size_t ff_mult;        /* fc1 maps dim → ff_mult·dim */
  float eps;             /* LayerNorm eps: 1e-6 for timm ViT, 1e-12 for BERT */
  int qkv_bias;          /* attn.qkv has a bias */
  int pathway;           /* the four linears carry a pathway: W_aux and λ */
  m2pt_block_layout layout;
  m2pt_gelu_kind gelu;
  m2pt_attention_impl attention;
} m2pt_block_config;

/* A ViT configuration: dim_head = dim / heads (rounded down: set dim_head
 * yourself when heads does not divide dim), ff_mult 4, eps 1e-6, qkv bias,
 * with pathways, pre-norm, exact GELU, attention picked by the library.
 * Inline, so struct_size is the caller's sizeof. */
static inline m2pt_block_config m2pt_block_config_vit(size_t dim, size_t heads)
{
  const m2pt_block_config c = {sizeof(m2pt_block_config), dim, heads, heads ? dim / heads : 0,
                               4, 1e-6f, 1, 1, M2PT_PRE_NORM, M2PT_GELU_ERF,
                               M2PT_ATTENTION_AUTO};
  return c;
}

/* Creates a block with every parameter zero, LayerNorm weights one and every
 * λ zero. The caller owns *out and frees it with m2pt_block_destroy.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, struct_size not set, a zero or
 * overflowing size, eps not finite or < 0, unknown layout, gelu or attention
 * value), M2PT_ERR_UNSUPPORTED (attention forced to FUSED where it cannot
 * run, see m2pt_attention; a config from a newer m2pt, see struct_size),
 * M2PT_ERR_DEVICE_OUT_OF_MEMORY, M2PT_ERR_OPENCL, M2PT_ERR_KERNEL_BUILD. */
M2PT_API m2pt_status m2pt_block_create(m2pt_context *ctx, const m2pt_block_config *config,
                                       m2pt_block **out);

/* Frees the block. Accepts NULL. */
M2PT_API void m2pt_block_destroy(m2pt_block *block);

/* Sets or reads one parameter by its checkpoint name (the paper's code and
 * timm's, without the "blocks.{i}." prefix), in PyTorch layout: "norm1.weight",
 * "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.qkv.aux_weight",
 * "attn.qkv.cross_modal_scale" (count 1), likewise "attn.proj.*",
 * "norm2.*", "mlp.fc1.*", "mlp.fc2.*". `count` must be the parameter's size.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, non-finite λ), M2PT_ERR_NOT_FOUND
 * (no parameter has that name), M2PT_ERR_SHAPE (count),
 * M2PT_ERR_INVALID_STATE (no such parameter in this configuration: qkv bias
 * off, a block without pathways, or merged), M2PT_ERR_OPENCL. */
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

/* ---- Training (issue 12) ----
 * A training forward computes what m2pt_block_forward does and also saves,
 * in the context's workspace, what the backward needs: the LayerNorms'
 * per-row mean and rstd, their outputs (pre-norm) or inputs (post-norm),
 * qkv, the attention output, h and fc1's output before its bias and GELU
 * (the GELU output is recomputed by the backward, one elementwise pass,
 * rather than stored). A context holds one such set: the backward must
 * follow the training forward of the same block on the same x and mask,
 * with no other training forward on the context and no parameter change in
 * between (m2pt_block_set and m2pt_block_merge invalidate what was saved).
 * The attention also keeps its per-row log-sum-exp (B·heads·N floats),
 * from which either attention backward (m2pt_attention_backward's rule for
 * the block's attention setting) recomputes the softmax.
 * Memory: rows·(4·dim + 4·hd + hidden + 4 + heads) floats (rows = B·N,
 * hd = heads·dim_head, hidden = ff_mult·dim), plus the backward's scratch
 * rows·(2·dim + 4·hd + hidden) floats and the attention backward's: B·heads·N
 * floats, and on the GEMM path two [heads][N][N] more. A plain
 * m2pt_block_forward saves nothing and leaves the saved set alone. No
 * stochastic depth here: the model's training passes apply drop-path to the
 * blocks' residual branches (model_grad.h, m2pt_train_options.drop_path).
 * Errors:
 * as m2pt_block_forward, and M2PT_ERR_UNSUPPORTED when the block's
 * attention is forced to FUSED and the fused backward cannot run here. */
M2PT_API m2pt_status m2pt_block_forward_train(m2pt_block *block, const m2pt_tensor *x,
                                              const m2pt_tensor *mask, m2pt_tensor *y);

/* The gradients of one block's parameters, one device tensor per trainable
 * parameter, addressed by the parameter's checkpoint name (as
 * m2pt_block_set: "norm1.weight", "attn.qkv.weight", "attn.qkv.bias",
 * "attn.qkv.aux_weight", "attn.qkv.cross_modal_scale", "mlp.fc2.bias", …),
 * each in the parameter's PyTorch shape (λ: one element). */
typedef struct m2pt_block_grads m2pt_block_grads;

/* Creates the gradient tensors of every parameter the block has now
 * (aux_weight and cross_modal_scale only while its linears carry an
 * unmerged pathway; attn.qkv.bias only with qkv_bias), zero until the
 * first backward. The block must outlive the object; the caller owns *out
 * and frees it with m2pt_block_grads_destroy.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL), M2PT_ERR_DEVICE_OUT_OF_MEMORY,
 * M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_block_grads_create(const m2pt_block *block, m2pt_block_grads **out);

/* Frees the gradient tensors. Accepts NULL. */
M2PT_API void m2pt_block_grads_destroy(m2pt_block_grads *grads);

/* Reads the gradient of parameter `name` into data (count: its size;
 * blocks until the backward that wrote it is done).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL), M2PT_ERR_NOT_FOUND (no such
 * name), M2PT_ERR_INVALID_STATE (the block had no such parameter when the
 * object was created), M2PT_ERR_SHAPE (count), M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_block_grads_get(const m2pt_block_grads *grads, const char *name,
                                          float *data, size_t count);

/* The device tensor holding the gradient of `name` (owned by grads, valid
 * until it is destroyed), e.g. for an optimizer. Errors as
 * m2pt_block_grads_get without the count. */
M2PT_API m2pt_status m2pt_block_grads_tensor(m2pt_block_grads *grads, const char *name,
                                             m2pt_tensor **out);

/* The backward of the block's last m2pt_block_forward_train (x and mask
 * must be that call's; x is read, the rest comes from what it saved): from
 * dy = ∂L/∂y it overwrites every tensor of grads with ∂L/∂parameter and,
 * when dx is not NULL (x's shape, distinct from x and dy), writes
 * dx = ∂L/∂x. Attention runs the backward m2pt_attention_backward picks
 * for the block's attention setting (AUTO: on CPU devices the GEMM path up
 * to N = 1182 at 12 heads, elsewhere the fused one wherever it can run),
 * from the attention output and log-sum-exp the training forward saved.
 * Deterministic: every sum runs in a fixed order without atomics (see
 * m2pt_linear_backward and <m2pt/ops.h>), so the same inputs give the same
 * bits twice on one device. Asynchronous: read a gradient to wait.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL block, x, dy or grads; dx aliasing
 * x or dy; grads of another block), M2PT_ERR_SHAPE, M2PT_ERR_CONTEXT_MISMATCH,
 * M2PT_ERR_INVALID_STATE (no training forward of this block saved on the
 * context, or saved for another shape; grads with pathway gradients for a
 * block merged since), M2PT_ERR_DEVICE_OUT_OF_MEMORY, M2PT_ERR_BLAS,
 * M2PT_ERR_OPENCL, M2PT_ERR_KERNEL_BUILD. A rejected call writes nothing. */
M2PT_API m2pt_status m2pt_block_backward(m2pt_block *block, const m2pt_tensor *x,
                                         const m2pt_tensor *mask, const m2pt_tensor *dy,
                                         m2pt_block_grads *grads, m2pt_tensor *dx);

/* Merges the four linears (m2pt_linear_merge): the block is then a plain
 * block computing the same function. A second merge, or merging a block
 * made with pathway = 0, changes nothing. On failure (forming a merged
 * weight failed: M2PT_ERR_DEVICE_OUT_OF_MEMORY, M2PT_ERR_OPENCL,
 * M2PT_ERR_KERNEL_BUILD) the block stays unmerged. */
M2PT_API m2pt_status m2pt_block_merge(m2pt_block *block);

/* 1 once the block was merged, else 0. */
M2PT_API int m2pt_block_is_merged(const m2pt_block *block);

/* The block's configuration (as created). config->struct_size says how much
 * the caller's struct holds (set it with m2pt_block_config_vit() or from a
 * config of the same build); only that much is written.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, struct_size not set). */
M2PT_API m2pt_status m2pt_block_get_config(const m2pt_block *block, m2pt_block_config *config);

#ifdef __cplusplus
}
#endif

#endif
