/* What the model uses of a block beyond the public API. */
#ifndef M2PT_NN_BLOCK_INTERNAL_H
#define M2PT_NN_BLOCK_INTERNAL_H

#include <stddef.h>

#include "core/cl.h"
#include "core/workspace.h"
#include "m2pt/block.h"
#include "m2pt/dropout.h"
#include "m2pt/linear.h"

/* The block's linears, in this order, by their checkpoint names. */
enum { M2PT_BLOCK_QKV, M2PT_BLOCK_PROJ, M2PT_BLOCK_FC1, M2PT_BLOCK_FC2, M2PT_BLOCK_LINEARS };
extern const char *const m2pt_block_linear_names[M2PT_BLOCK_LINEARS]; /* "attn.qkv", … */

/* Linear `index` (M2PT_BLOCK_QKV …) of the block. */
m2pt_linear *m2pt_block_linear(const m2pt_block *block, size_t index);

/* The device buffer of LayerNorm parameter `index` (M2PT_NORM1_WEIGHT …,
 * checkpoint_naming.h), NULL when out of range or absent. */
cl_mem m2pt_block_norm_buffer(const m2pt_block *block, size_t index);

/* After parameters were updated in place: every linear's W + λ·W_aux is
 * re-formed and what a training forward saved is no longer used. */
void m2pt_block_params_changed(m2pt_block *block);

/* The step of a merge that can fail: forming every linear's merged weight
 * (W + λ·W_aux, kept until the weights change). After it m2pt_block_merge
 * only swaps buffers, so a caller that prepares everything it will merge
 * first (the block's four linears, the model's blocks) never leaves a
 * merge half done. */
m2pt_status m2pt_block_merge_prepare(m2pt_block *block);

/* ---- training with the saved activations in caller-owned buffers ----
 * The public training forward keeps one saved set in the context's
 * workspace; a model keeps one per block (or one for all, recomputing). */

/* What a training forward saves for the backward (block.h lists it). */
enum { M2PT_BLOCK_SAVED = 11 };
typedef struct m2pt_block_saved {
  size_t rows; /* rows the buffers hold */
  cl_mem in1, mean1, rstd1, qkv, attn, h, in2, mean2, rstd2, fc1;
  cl_mem lse; /* the attention's per-row log-sum-exp [B][heads][N], written
                 when the fused attention backward will run */
} m2pt_block_saved;

/* Floats of one saved set for `rows` = B·N rows:
 * rows·(4·dim + 4·hd + hidden + 4 + heads). */
size_t m2pt_block_saved_floats(const m2pt_block *block, size_t rows);

/* Device buffers for a saved set of `rows` rows (released with
 * m2pt_block_saved_release; the struct zeroed on failure). */
m2pt_status m2pt_block_saved_create(const m2pt_block *block, size_t rows,
                                    m2pt_block_saved *saved);
void m2pt_block_saved_release(const m2pt_block *block, m2pt_block_saved *saved);

/* Stochastic depth in a training pass (timm's DropPath on each residual
 * branch): the branch's output is dropped per sample with probability p,
 * kept ones scaled by 1/(1 − p) (m2pt_drop_path), before its residual add:
 *   pre-norm   h = x + dp(attn(LN1(x))),      y = h + dp(FFN(LN2(h)))
 *   post-norm  h = LN1(x + dp(attn(x))),      y = LN2(h + dp(FFN(h)))
 * The backward regenerates the forward's masks from the same keys. */
typedef struct m2pt_block_drop {
  float p;             /* in [0, 1); 0: off, the bits of a pass without it */
  m2pt_rng_key key[2]; /* the attention branch's, the FFN branch's */
} m2pt_block_drop;

/* m2pt_block_forward_train into `saved` (which must hold x's rows), the
 * context's saved set left alone, with drop-path when drop is not NULL.
 * Same bits as the public one without drop-path. */
m2pt_status m2pt_block_forward_saved(m2pt_block *block, const m2pt_tensor *x,
                                     const m2pt_tensor *mask, const m2pt_block_drop *drop,
                                     const m2pt_block_saved *saved, m2pt_tensor *y);

/* The gradient tensors of one block by parameter (block.h); a NULL tensor
 * is a frozen parameter: not computed. */
enum { M2PT_GRAD_NORM1_W, M2PT_GRAD_NORM1_B, M2PT_GRAD_NORM2_W, M2PT_GRAD_NORM2_B,
       M2PT_GRAD_NORMS };
struct m2pt_block_grads {
  const m2pt_block *block;
  m2pt_tensor *norm[M2PT_GRAD_NORMS];
  m2pt_tensor *lin[M2PT_BLOCK_LINEARS][4]; /* by field: weight, bias, aux_weight, scale */
};

/* m2pt_block_backward from `saved` (the forward_saved of this block on x,
 * mask and drop, which must be that call's): the gradients of grads'
 * non-NULL tensors, written (accumulate 0) or added to what they hold (1);
 * dx (NULL: not computed) is always written. Checks shapes, not that
 * `saved` is this block's. */
m2pt_status m2pt_block_backward_saved(m2pt_block *block, const m2pt_tensor *x,
                                      const m2pt_tensor *mask, const m2pt_block_drop *drop,
                                      const m2pt_tensor *dy, const m2pt_block_saved *saved,
                                      const m2pt_block_grads *grads, int accumulate,
                                      m2pt_tensor *dx);

/* Where a parameter gradient goes for an op that only overwrites: its
 * tensor (accumulate 0), or the workspace `slot`, whose contents
 * m2pt_grad_finish then adds to it (accumulate 1). NULL for a frozen (NULL)
 * parameter. */
m2pt_status m2pt_grad_target(m2pt_context *ctx, const m2pt_tensor *t, int accumulate,
                             m2pt_workspace_slot slot, cl_mem *out);
m2pt_status m2pt_grad_finish(m2pt_context *ctx, const m2pt_tensor *t, int accumulate,
                             cl_mem buf);

/* LayerNorm's backward (m2pt_op_layer_norm_backward, dx NULL: none) with
 * its parameter gradients dweight and dbias (NULL: frozen) written or
 * accumulated. */
m2pt_status m2pt_norm_backward_grads(m2pt_context *ctx, cl_mem dy, cl_mem x, cl_mem weight,
                                    cl_mem mean, cl_mem rstd, size_t rows, size_t dim,
                                    cl_mem dx, const m2pt_tensor *dweight,
                                    const m2pt_tensor *dbias, int accumulate);

/* A linear's backward in two calls: the parameter gradients of `params`
 * (any NULL; written or accumulated as params->accumulate says; nothing when
 * all are NULL), then dx (NULL: none; written, or added to when dx_add), so
 * that dx and the parameters follow their own accumulation rules. */
m2pt_status m2pt_linear_backward_split(m2pt_linear *layer, const m2pt_linear_grads *params,
                                      const m2pt_tensor *x, const m2pt_tensor *dy,
                                      m2pt_tensor *dx, int dx_add);

#endif
