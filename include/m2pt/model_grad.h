/* Whole-model training (issue 12): a training forward from token ids,
 * pixels or hidden states through the embeddings, the blocks, the final
 * norm, the pooling, fc_norm or BERT's pooler, the head and a loss, then the
 * backward into one gradient tensor per trainable parameter, addressed by
 * the parameter's checkpoint name as the model loaded it (and saves it).
 *
 * Activation memory, rows = B·N, hd = heads·dim_head, hidden = ff_mult·dim,
 * in floats: every block's input, rows·dim·(depth + 1), plus
 *   saved (default)  depth · rows·(4·dim + 4·hd + hidden + 4 + heads): each block's
 *                    training forward kept in model-owned buffers;
 *   recompute        one such set: the backward re-runs each block's training
 *                    forward from its saved input just before its backward
 *                    (activation checkpointing: one more block forward each).
 * Both give the same bits. Plus the ends' rows·(2·dim + 2) and the block
 * backward's scratch (block.h). The buffers belong to the model, grow to
 * the largest batch seen and are freed with it. */
#ifndef M2PT_MODEL_GRAD_H
#define M2PT_MODEL_GRAD_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Freeze categories (m2pt-train's --freeze): a frozen parameter gets no
 * gradient tensor and costs nothing in the backward. A parameter is frozen
 * when any of its categories is.
 *   TARGET      the "weight" of every re-parameterizable linear of the blocks
 *               and of BERT's pooler (the target model's weights W)
 *   AUX         every "aux_weight" and "aux_bias" (the pathways' W_aux)
 *   SCALE       every "cross_modal_scale" (λ)
 *   BIAS        the linears' "bias" (blocks, pooler)
 *   NORM        the LayerNorms' weights and biases: blocks, final norm, fc_norm
 *   EMBEDDINGS  word, position and token-type tables and their LayerNorm,
 *               patch_embed.*, cls_token, pos_embed
 *   HEAD        every parameter of the head / classifier (its aux_weight and
 *               λ are also AUX and SCALE) */
#define M2PT_FREEZE_TARGET     0x01u
#define M2PT_FREEZE_AUX        0x02u
#define M2PT_FREEZE_SCALE      0x04u
#define M2PT_FREEZE_BIAS       0x08u
#define M2PT_FREEZE_NORM       0x10u
#define M2PT_FREEZE_EMBEDDINGS 0x20u
#define M2PT_FREEZE_HEAD       0x40u

/* Parses a comma-separated list of the category names above in lower case
 * ("target,aux,scale,bias,norm,embeddings,head"; "" or NULL: none) into
 * *flags. Errors: M2PT_ERR_INVALID_ARGUMENT (flags NULL, an unknown name:
 * the message names it; no context, see m2pt_last_error(NULL)). */
M2PT_API m2pt_status m2pt_freeze_parse(const char *list, unsigned *flags);

/* The gradients of a model's trainable parameters. */
typedef struct m2pt_model_grads m2pt_model_grads;

/* Creates zeroed gradient tensors for every parameter of `model` that is
 * not frozen by `freeze` (M2PT_FREEZE_* flags), in the model's order:
 * embeddings, blocks (norms and linears by checkpoint name; a linear's
 * aux_weight and cross_modal_scale while it carries an unmerged pathway),
 * the final norm, fc_norm, the pooler, the head. In BERT and HF ViT
 * naming, q, k and v are one linear of the model: each has its own
 * weight, bias and aux_weight gradient (row slices of the qkv gradient),
 * and their shared λ has one gradient, under the query's name
 * ("….attention.self.query.cross_modal_scale"), the sum of the three
 * parts' (the gradient of the tied parameter). The model must outlive the
 * object and keep its parameters' set (no merge, no new pathway) while it
 * is used. The caller owns *out (m2pt_model_grads_destroy).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, unknown flags),
 * M2PT_ERR_OUT_OF_MEMORY, M2PT_ERR_DEVICE_OUT_OF_MEMORY, M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_model_grads_create(m2pt_model *model, unsigned freeze,
                                             m2pt_model_grads **out);

/* Frees the tensors. Accepts NULL. */
M2PT_API void m2pt_model_grads_destroy(m2pt_model_grads *grads);

/* The number of gradient tensors (0 for NULL). */
M2PT_API size_t m2pt_model_grads_count(const m2pt_model_grads *grads);

/* The checkpoint name of gradient `index` (owned by grads), NULL when out
 * of range. */
M2PT_API const char *m2pt_model_grads_name(const m2pt_model_grads *grads, size_t index);

/* The k-th other checkpoint name of gradient `index` when the parameter is
 * tied across names (owned by grads), NULL after the last: in BERT and HF
 * ViT naming q, k and v share one λ, whose gradient (the sum of the three
 * parts') is named by the query and has the key's and value's names as
 * aliases. m2pt-grad writes the tensor under every name, as PyTorch shows a
 * tied parameter's one .grad under each. */
M2PT_API const char *m2pt_model_grads_alias(const m2pt_model_grads *grads, size_t index,
                                            size_t k);

/* The device tensor of gradient `index` (owned by grads, valid until it is
 * destroyed; its ndim and shape are the parameter's PyTorch shape), NULL
 * when out of range. Asynchronous like every tensor: reading it waits. */
M2PT_API m2pt_tensor *m2pt_model_grads_tensor(const m2pt_model_grads *grads, size_t index);

/* The index of gradient `name`. Errors: M2PT_ERR_INVALID_ARGUMENT (NULL),
 * M2PT_ERR_NOT_FOUND (no such trainable parameter: unknown or frozen). */
M2PT_API m2pt_status m2pt_model_grads_find(const m2pt_model_grads *grads, const char *name,
                                           size_t *index);

/* Reads gradient `index` into data (count: its number of elements).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, index out of range),
 * M2PT_ERR_SHAPE (count), M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_model_grads_read(const m2pt_model_grads *grads, size_t index,
                                           float *data, size_t count);

/* Sets every gradient to zero (before accumulating micro-batches).
 * Errors: M2PT_ERR_INVALID_ARGUMENT, M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_model_grads_zero(m2pt_model_grads *grads);

typedef enum m2pt_loss_kind {
  M2PT_LOSS_CROSS_ENTROPY = 0, /* the head's logits against class indices */
  M2PT_LOSS_MSE = 1,           /* the head's output, or the pooled feature when the
                                  model has no head, against f32 targets [B][k] */
} m2pt_loss_kind;

/* Options of the training passes. Start from m2pt_train_options_default();
 * struct_size as in m2pt_model_options. */
typedef struct m2pt_train_options {
  size_t struct_size;
  m2pt_pool_kind pool;   /* as m2pt_forward_options (AUTO: the checkpoint's) */
  m2pt_loss_kind loss;
  float label_smoothing; /* cross-entropy, in [0, 1] */
  int recompute;         /* 1: activation checkpointing (header comment) */
  int accumulate;        /* 1: add to the gradients' contents instead of overwriting */
  float dropout;         /* in [0, 1): dropout on the embeddings' output and on the
                            head's input (timm's pos_drop and head_drop, BERT's
                            hidden dropout there); 0: off */
  uint64_t seed;         /* the Philox key of dropout and drop-path (dropout.h), */
  uint32_t step;         /* with the layers numbered as below */
  /* Added after 0.2 (an older caller's struct_size ends before it; a double
   * so that it starts past 0.2's struct, tail padding included). */
  double drop_path;      /* in [0, 1): stochastic depth, timm's drop_path_rate */
} m2pt_train_options;

/* Stochastic depth (drop_path > 0): as timm's VisionTransformer, block i of
 * `depth` drops each of its two residual branches per sample with
 *   p_i = linspace(0, drop_path, depth)[i]
 * (torch.linspace in float32: s = drop_path/(depth − 1), p_i = s·i for
 * i < depth/2, else drop_path − s·(depth − 1 − i); one block: p_0 = 0), kept
 * samples scaled by 1/(1 − p_i) (timm's DropPath, scale_by_keep):
 *   pre-norm (ViT)    x = x + dp(attn(norm1(x)));  x = x + dp(mlp(norm2(x)))
 *   post-norm (BERT)  the branch dropped before its residual add, inside the
 *                     LayerNorm: h = LN1(x + dp(attn(x))), y = LN2(h + dp(mlp(h)))
 *                     (stochastic depth's ResNet form; BERT itself uses hidden
 *                     dropout there, which m2pt does not apply per block)
 * The masks come from m2pt_drop_path with key (seed, step, layer); the
 * layers of one step are numbered
 *   0          dropout on the embeddings' output
 *   1          dropout on the head's input
 *   2 + 2·i    drop-path of block i's attention branch
 *   3 + 2·i    drop-path of block i's MLP (FFN) branch
 * so the backward (and a recomputed block forward) regenerates each mask
 * instead of storing it; the same seed and step give the same masks on
 * every device. drop_path 0 gives the bits of a pass without it. */

/* AUTO pooling, cross-entropy, no smoothing, saved activations, overwrite,
 * no dropout, no drop-path. Inline, so struct_size is the caller's sizeof. */
static inline m2pt_train_options m2pt_train_options_default(void)
{
  const m2pt_train_options o = {sizeof(m2pt_train_options), M2PT_POOL_AUTO,
                                M2PT_LOSS_CROSS_ENTROPY, 0.0f, 0, 0, 0.0f, 0, 0, 0.0};
  return o;
}

/* The loss of a batch and its gradients. labels: for cross-entropy B class
 * indices (I32 or I64, [B][1] or [1][B]) in [0, classes); for MSE an F32
 * [B][k] matrix, k the head's outputs (or dim without a head). The forward
 * is m2pt_model_forward_ids' (the same ops; with dropout 0 the same loss as
 * the inference forward's logits give) with every block's activations
 * saved; the loss's mean over the batch is written to *loss (blocking);
 * then the backward writes (or, with accumulate, adds) the gradient of
 * every tensor of grads. Deterministic: the same inputs give the same bits
 * twice, with or without recompute.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, a label out of range, an id or
 * mask value out of range, bad options, grads of another model, a
 * non-finite loss: the message says so and no gradient is written),
 * M2PT_ERR_SHAPE (labels, mask of the wrong shape), M2PT_ERR_NOT_FOUND
 * (cross-entropy without a head: see m2pt_model_create_head; a pooler the
 * checkpoint lacks), M2PT_ERR_INVALID_STATE (no word embeddings, heads not
 * given, the model's pathways changed since grads were created), and the
 * forward's errors. A refused call changes no gradient. */
M2PT_API m2pt_status m2pt_model_grad_ids(m2pt_model *model, const m2pt_host_matrix *ids,
                                         const m2pt_host_matrix *token_types,
                                         const m2pt_host_matrix *mask,
                                         const m2pt_host_matrix *labels,
                                         const m2pt_train_options *options,
                                         m2pt_model_grads *grads, float *loss);

/* As m2pt_model_grad_ids from pixels [B][C][H][W] (m2pt_model_forward_pixels). */
M2PT_API m2pt_status m2pt_model_grad_pixels(m2pt_model *model, const m2pt_tensor *pixels,
                                            const m2pt_host_matrix *mask,
                                            const m2pt_host_matrix *labels,
                                            const m2pt_train_options *options,
                                            m2pt_model_grads *grads, float *loss);

/* As m2pt_model_grad_ids from hidden states x [B][N][dim] (the block
 * stack's input, as m2pt_model_forward; no embeddings). */
M2PT_API m2pt_status m2pt_model_grad_hidden(m2pt_model *model, const m2pt_tensor *x,
                                            const m2pt_host_matrix *mask,
                                            const m2pt_host_matrix *labels,
                                            const m2pt_train_options *options,
                                            m2pt_model_grads *grads, float *loss);

/* Gives a model without a head one of `classes` outputs on its pooled
 * features, named "head" (timm naming, under the model's root) or
 * "classifier" (BERT, HF ViT: at the top level), as timm's and HF's
 * initialisation does: bias zero, weight [classes][dim] drawn from a normal
 * of std 0.02 truncated to ±2 std. The draws are reproducible: value i
 * (row-major) comes from Philox-4x32-10 with key (seed mod 2^32, seed /
 * 2^32) and counter (i, 0, 0, 0xFFFFFFFF): its words 0 and 1, as
 * u = (w + 0.5)/2^32, give a Box-Muller normal √(−2 ln u0)·cos(2π u1);
 * a draw outside ±2 is redrawn with counter word 1 incremented (1, 2, …).
 * It is an ordinary head afterwards (gradients, save).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, classes 0),
 * M2PT_ERR_INVALID_STATE (the model has a head), M2PT_ERR_OUT_OF_MEMORY,
 * M2PT_ERR_DEVICE_OUT_OF_MEMORY, M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_model_create_head(m2pt_model *model, size_t classes, uint64_t seed);

#ifdef __cplusplus
}
#endif

#endif
