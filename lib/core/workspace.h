/* The per-context workspace: scratch buffers that are reused across calls
 * and only ever grow, so repeated forwards of one shape allocate no device
 * memory after the first (DESIGN.md §3). Each slot holds one kind of
 * intermediate; a caller owns a slot's contents only until it returns. */
#ifndef M2PT_CORE_WORKSPACE_H
#define M2PT_CORE_WORKSPACE_H

#include <stddef.h>

#include "cl.h"
#include "m2pt/status.h"

typedef enum m2pt_workspace_slot {
  M2PT_WS_NORM,     /* LayerNorm output [rows][dim] */
  M2PT_WS_QKV,      /* qkv projection [rows][3·heads·dim_head] */
  M2PT_WS_ATTN,     /* attention output [rows][heads·dim_head] */
  M2PT_WS_RESIDUAL, /* the block's h [rows][dim] */
  M2PT_WS_HIDDEN,   /* FFN activations [rows][hidden] */
  M2PT_WS_SCORES,   /* attention scores of the GEMM path [heads][N][N] */
  M2PT_WS_KEYS_T,   /* the CPU-shaped fused attention's key bias [B][Np], Kᵀ and
                     * V [B][heads][Np·dim_head] (Np: N padded) */
  M2PT_WS_BLAS,     /* CLBlast's GEMM temporary buffer */
  M2PT_WS_STACK,    /* a model's activations between blocks [rows][dim] */
  M2PT_WS_IDS,      /* token ids and types from the host [2][rows], or the embeddings
                     * backward's rows-by-id index (int) */
  M2PT_WS_PATCHES,  /* im2col of the patch embedding [B·G][C·P·P] */
  M2PT_WS_PATCH_OUT, /* the patch embedding's GEMM output [B·G][dim] */
  M2PT_WS_EMBED,    /* a whole model's embeddings [B][N][dim] */
  M2PT_WS_FINAL,    /* a whole model's last hidden state [B][N][dim] */
  M2PT_WS_POOL,     /* pooled features and the head's input [B][dim] */
  M2PT_WS_HEAD,     /* BERT's pooler output, the head's input [B][dim] */
  M2PT_WS_MASK,     /* an attention mask uploaded from the host [B][N] (float) */
  M2PT_WS_GRAD_G,   /* a linear's weight gradient dYᵀ·X [out][in] (linear backward) */
  M2PT_WS_GRAD_SUMS, /* the linear backward's partial sums and Σ_rows dY; gradient
                      * clipping's partial sums of squares */
  M2PT_WS_GRAD,     /* an op backward's own intermediate (GELU's dx when only db is
                     * asked, the pooling's normalized gradient); clipping's Σ g² */
  M2PT_WS_GRAD_SCORES, /* the attention backward's dP, then dS [heads][N][N] (GEMM path) */
  M2PT_WS_ATTN_LSE,    /* the attention backward's log-sum-exp [B][heads][N] when it
                        * recomputes the forward (which then writes M2PT_WS_ATTN) */
  M2PT_WS_ATTN_DELTA,  /* the attention backward's D = rowsum(dO ⊙ O) [B][heads][N] */
  /* A block's training forward's saves (m2pt_block_forward_train), kept
   * until the next one: */
  M2PT_WS_TRAIN_IN1,   /* LN1's output (pre-norm) or input x + attention (post) [rows][dim] */
  M2PT_WS_TRAIN_MEAN1, /* LN1's mean [rows] */
  M2PT_WS_TRAIN_RSTD1, /* LN1's rstd [rows] */
  M2PT_WS_TRAIN_QKV,   /* qkv [rows][3·heads·dim_head] */
  M2PT_WS_TRAIN_ATTN,  /* attention output [rows][heads·dim_head] */
  M2PT_WS_TRAIN_H,     /* h [rows][dim] */
  M2PT_WS_TRAIN_IN2,   /* LN2's output (pre-norm) or input h + FFN (post) [rows][dim] */
  M2PT_WS_TRAIN_MEAN2, /* LN2's mean [rows] */
  M2PT_WS_TRAIN_RSTD2, /* LN2's rstd [rows] */
  M2PT_WS_TRAIN_FC1,   /* fc1's output before bias and GELU [rows][hidden] */
  M2PT_WS_TRAIN_LSE,   /* the attention's log-sum-exp [B][heads][N] */
  /* The block backward's own gradients in flight: */
  M2PT_WS_BACK_D1,     /* [rows][dim] (∂L/∂h) */
  M2PT_WS_BACK_D2,     /* [rows][dim] */
  M2PT_WS_BACK_HIDDEN, /* ∂L/∂(fc1's output) [rows][hidden] */
  M2PT_WS_BACK_ATTN,   /* ∂L/∂(attention output) [rows][heads·dim_head] */
  M2PT_WS_BACK_QKV,    /* ∂L/∂qkv [rows][3·heads·dim_head] */
  /* A model's gradient accumulation: a LayerNorm's or an embedding table's
   * gradients before they are added to the accumulated ones. */
  M2PT_WS_GRAD_ACC,
  M2PT_WS_GRAD_ACC2,
  M2PT_WS_SLOTS
} m2pt_workspace_slot;

struct m2pt_context;

/* A buffer of at least `bytes` for `slot`, reallocated only when it grows.
 * Its contents are undefined. */
m2pt_status m2pt_workspace_get(struct m2pt_context *ctx, m2pt_workspace_slot slot, size_t bytes,
                               cl_mem *out);

/* m2pt_workspace_get, then `bytes` of `host` written into the slot's buffer,
 * blocking: host arrays (ids, labels, masks) are the caller's only for the
 * call. `what` names the upload in an OpenCL error's message. */
m2pt_status m2pt_workspace_upload(struct m2pt_context *ctx, m2pt_workspace_slot slot,
                                  const void *host, size_t bytes, const char *what, cl_mem *out);

/* Frees every slot (m2pt_context_trim, context destruction); a block's
 * saved training forward goes with them. */
void m2pt_workspace_release(struct m2pt_context *ctx);

#endif
