/* An M2PT model: a stack of transformer blocks (m2pt_block) and an optional
 * final LayerNorm, loaded from a safetensors checkpoint, and the paper's
 * model-level operations: add pathways from an auxiliary-modality
 * checkpoint (the paper's reparameterize_aux_into_target_model), set λ
 * (the "scale") per layer, merge, run, save.
 *
 * Checkpoint naming (the paper's code, timm and Hugging Face BERT):
 *   timm  "<prefix>.{i}.norm1.weight", "<prefix>.{i}.attn.qkv.weight", …,
 *         prefix "blocks" by default (the seed's main_body_name), final norm
 *         "norm.weight"/"norm.bias" beside the prefix ("model.blocks" →
 *         "model.norm.weight"); pre-norm unless the options say post-norm.
 *   BERT  "<prefix>.{i}.attention.self.query|key|value.*",
 *         "attention.output.dense.*", "attention.output.LayerNorm.*",
 *         "intermediate.dense.*", "output.dense.*", "output.LayerNorm.*",
 *         prefix "encoder.layer" (or "bert.encoder.layer", …); always
 *         post-norm, no final norm. q, k and v are concatenated into one qkv
 *         linear at load time (rows [q; k; v]) and split again on save.
 * The paper's code saves a re-parameterized linear as "<layer>.weight",
 * "<layer>.bias", "<layer>.aux_weight" and "<layer>.cross_modal_scale" (one
 * element); such checkpoints load with their pathways. In BERT naming q, k
 * and v share the qkv pathway, so their three λ must be equal.
 *
 * Layers are named as in the block ("attn.qkv", "attn.proj", "mlp.fc1",
 * "mlp.fc2"); in BERT naming "attention.self" (or any of its query, key,
 * value), "attention.output.dense", "intermediate.dense" and "output.dense"
 * name the same four. */
#ifndef M2PT_MODEL_H
#define M2PT_MODEL_H

#include <stddef.h>

#include "block.h"
#include "embedding.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct m2pt_model m2pt_model;

typedef enum m2pt_naming {
  M2PT_NAMING_AUTO = 0, /* whichever of the two the checkpoint uses */
  M2PT_NAMING_TIMM = 1,
  M2PT_NAMING_BERT = 2,
  M2PT_NAMING_HF_VIT = 3, /* HF ViTModel / ViTForImageClassification */
} m2pt_naming;

/* Options of m2pt_model_load (a NULL pointer is the default). Start from
 * m2pt_model_options_default() and change the fields you need: it sets
 * struct_size to the size this header gives the struct, so a later m2pt that
 * appends fields still reads an older caller's options (the fields it lacks
 * take their defaults), and options whose struct_size was never set
 * (smaller than the struct as m2pt 0.2 first released it) are refused. */
typedef struct m2pt_model_options {
  size_t struct_size; /* sizeof(m2pt_model_options), as compiled */
  size_t heads;       /* attention heads. 0: not known; load, λ, merge and save
                         work, forward fails with M2PT_ERR_INVALID_STATE */
  float eps;          /* LayerNorm eps; negative: 1e-6 pre-norm, 1e-12 post-norm */
  m2pt_naming naming;
  const char *prefix; /* the blocks' name prefix; NULL: found in the checkpoint
                         (it must then be unambiguous). Copied by load. */
  m2pt_block_layout layout; /* timm naming; BERT naming is always post-norm */
  int final_norm;     /* 1: apply the final norm when the checkpoint has one */
  m2pt_gelu_kind gelu;
  m2pt_attention_impl attention;
} m2pt_model_options;

/* heads 0, eps −1 (by layout), naming AUTO, prefix NULL, pre-norm, final
 * norm on, exact GELU, attention picked by the library. Inline, so
 * struct_size is the caller's sizeof. */
static inline m2pt_model_options m2pt_model_options_default(void)
{
  const m2pt_model_options o = {sizeof(m2pt_model_options), 0, -1.0f, M2PT_NAMING_AUTO, NULL,
                                M2PT_PRE_NORM, 1, M2PT_GELU_ERF, M2PT_ATTENTION_AUTO};
  return o;
}

/* What a loaded model is. */
typedef struct m2pt_model_info {
  m2pt_naming naming;      /* TIMM or BERT, as found */
  const char *prefix;      /* as found; lives as long as the model */
  size_t depth;            /* number of blocks */
  int final_norm;          /* 1 when forward applies a final norm */
  size_t pathways;         /* linears that carry an unmerged pathway */
  m2pt_block_config block; /* every block's configuration (pathway 0: the
                              pathways are per linear, counted above) */
} m2pt_model_info;

/* Loads the block stack of the safetensors checkpoint at `path`: depth, dim,
 * heads·dim_head, ff_mult and whether qkv has a bias come from the tensor
 * shapes; heads and eps from `options` (NULL: the defaults). Every block
 * tensor is checked against the shapes those imply. Linears stored with
 * aux_weight and cross_modal_scale get their pathways (unmerged). Tensors
 * for the embeddings, fc_norm, the pooler and the head or classifier are
 * loaded where the file has them (m2pt_model_forward_ids and _pixels); any
 * other tensor is not, and the model keeps the file open so that
 * m2pt_model_save copies it verbatim.
 * The caller owns *model (m2pt_model_destroy). Messages name the file and
 * the tensor.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, struct_size not set, bad option,
 * heads not dividing heads·dim_head), M2PT_ERR_IO, M2PT_ERR_FORMAT (malformed file, a missing
 * tensor, a wrong shape, a non-finite λ, q/k/v with different λ),
 * M2PT_ERR_NOT_FOUND (no blocks in the naming asked for, or an ambiguous
 * prefix), M2PT_ERR_UNSUPPORTED (a block tensor the block does not model,
 * such as timm's LayerScale "ls1.gamma"; a dtype that is not F32, F16, BF16;
 * hidden width not a multiple of dim; options from a newer m2pt), M2PT_ERR_OUT_OF_MEMORY,
 * M2PT_ERR_DEVICE_OUT_OF_MEMORY, M2PT_ERR_OPENCL. A failed load builds
 * nothing and leaks nothing. */
M2PT_API m2pt_status m2pt_model_load(m2pt_context *ctx, const char *path,
                                     const m2pt_model_options *options, m2pt_model **model);

/* Frees the model and unmaps its file. Accepts NULL. */
M2PT_API void m2pt_model_destroy(m2pt_model *model);

/* Fills *info. Errors: M2PT_ERR_INVALID_ARGUMENT (NULL). */
M2PT_API m2pt_status m2pt_model_get_info(const m2pt_model *model, m2pt_model_info *info);

/* Block `index` (owned by the model; valid until it is destroyed), NULL when
 * out of range. Its parameters can be read and set by name (m2pt_block_get). */
M2PT_API m2pt_block *m2pt_model_block(m2pt_model *model, size_t index);

/* Gives layers a pathway, the paper's reparameterize_aux_into_target_model:
 * for every block and each of the `count` layers named (NULL/0: attn.qkv,
 * attn.proj, mlp.fc1, mlp.fc2) W_aux becomes the same layer's weight in the
 * auxiliary checkpoint at `aux_path` (same naming rules; its blocks must
 * match in depth and shapes) and λ = `scale`. Only the aux weights are read;
 * its biases and norms are not used.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, non-finite scale),
 * M2PT_ERR_NOT_FOUND (an unknown layer name), M2PT_ERR_INVALID_STATE (a named layer has a pathway already),
 * M2PT_ERR_SHAPE (depth or a weight's shape differs: the message names the
 * layer and both shapes), the load errors for the aux file. On failure the
 * model is unchanged. */
M2PT_API m2pt_status m2pt_model_add_pathways(m2pt_model *model, const char *aux_path,
                                             const char *const *layers, size_t count,
                                             float scale);

/* As m2pt_model_add_pathways; with aux_bias 1 the pathway also takes the
 * aux checkpoint's bias (the seed's variant: y = x(W + λW_aux)ᵀ + b + λb_aux,
 * merged as b ← b + λb_aux), for the pooler and the head only.
 * Errors: as m2pt_model_add_pathways; M2PT_ERR_UNSUPPORTED when aux_bias
 * names a block layer. */
M2PT_API m2pt_status m2pt_model_add_pathways_aux_bias(m2pt_model *model, const char *aux_path,
                                                      const char *const *layers, size_t count,
                                                      float scale, int aux_bias);

/* λ of one layer of block `block`.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, block out of range, non-finite
 * λ), M2PT_ERR_NOT_FOUND (an unknown layer name), M2PT_ERR_INVALID_STATE
 * (the layer has no unmerged pathway). */
M2PT_API m2pt_status m2pt_model_set_scale(m2pt_model *model, size_t block, const char *layer,
                                          float scale);
M2PT_API m2pt_status m2pt_model_get_scale(const m2pt_model *model, size_t block,
                                          const char *layer, float *scale);

/* Which of the block's four linears a layer name means in this model's
 * naming: 0 attn.qkv (also BERT's attention.self, query, key, value),
 * 1 attn.proj, 2 mlp.fc1, 3 mlp.fc2; −1 for an unknown name or NULL. */
M2PT_API int m2pt_model_layer_index(const m2pt_model *model, const char *layer);

/* 1 when that layer carries an unmerged pathway, 0 otherwise (also for bad
 * arguments). */
M2PT_API int m2pt_model_has_pathway(const m2pt_model *model, size_t block, const char *layer);

/* Folds every pathway into its weight (W ← W + λ·W_aux, the same kernel as
 * the unmerged forward, so forward gives the same numbers before and after).
 * All merged weights are formed before any is swapped in: on failure
 * (M2PT_ERR_DEVICE_OUT_OF_MEMORY, M2PT_ERR_OPENCL, M2PT_ERR_KERNEL_BUILD)
 * nothing is merged. A model without pathways is unchanged. */
M2PT_API m2pt_status m2pt_model_merge(m2pt_model *model);

/* y = model(x): the blocks in order, then the final norm if there is one.
 * x is [B][N][dim] or [N][dim] (one sequence), y the same shape, y ≠ x;
 * mask NULL or [B][N] ([N] for 2-D x), 1 for tokens and 0 for padding keys.
 * Asynchronous like m2pt_block_forward. x is not checked for NaN or ±Inf:
 * they propagate as in PyTorch (tensor.h).
 * Errors: M2PT_ERR_INVALID_ARGUMENT, M2PT_ERR_INVALID_STATE (heads not
 * given at load), M2PT_ERR_SHAPE, M2PT_ERR_CONTEXT_MISMATCH, and the
 * block's errors. */
M2PT_API m2pt_status m2pt_model_forward(m2pt_model *model, const m2pt_tensor *x,
                                        const m2pt_tensor *mask, m2pt_tensor *y);

/* Writes the model as a safetensors checkpoint at `path` in the naming it
 * was loaded in: every tensor of the loaded file that is not a block or
 * final-norm parameter is copied verbatim with its dtype, and the file's
 * metadata too; block and final-norm parameters are read from the device and
 * written in their file's dtype when that holds the value exactly (so an
 * unchanged tensor is copied bit for bit), else as F32 (merged weights of an
 * F16 or BF16 checkpoint). Each linear with an unmerged pathway also gets
 * "<layer>.aux_weight" (F32) and "<layer>.cross_modal_scale" (F32, shape
 * [1]); merged or plain linears get neither, so a merged model saves as a
 * plain checkpoint. Written atomically (see m2pt_safetensors_writer_finish).
 * Errors: M2PT_ERR_INVALID_ARGUMENT, M2PT_ERR_IO, M2PT_ERR_OUT_OF_MEMORY,
 * M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_model_save(const m2pt_model *model, const char *path);

/* ---- whole models: from token ids or pixels to outputs ----
 *
 * Besides the blocks, load keeps the model's ends where the checkpoint has
 * them (names after the root: "", "bert.", "vit.", "model." …):
 *   timm    patch_embed.proj.{weight,bias}, cls_token, pos_embed, fc_norm.*, head.*
 *   HF ViT  embeddings.patch_embeddings.projection.*, embeddings.cls_token,
 *           embeddings.position_embeddings, layernorm.* (the final norm),
 *           pooler.dense.* (ViTModel), classifier.* (at the top level)
 *   BERT    embeddings.{word,position,token_type}_embeddings.weight,
 *           embeddings.LayerNorm.*, pooler.dense.*, classifier.* (at the top
 *           level beside "bert."); sentence-transformers files have no prefix.
 * Other tensors (position_ids and other I64 buffers) are ignored and saved
 * verbatim. The pooler and the head are re-parameterizable linears: their
 * stored pathways load, m2pt_model_add_pathways accepts "head",
 * "classifier", "pooler.dense" (or their full names), and save writes them
 * back under their own names. */

typedef enum m2pt_output_kind {
  M2PT_OUTPUT_HIDDEN = 0, /* [B][N][dim]: the last hidden state, after the final
                             norm when the checkpoint has one */
  M2PT_OUTPUT_POOLED = 1, /* [B][dim]: the pooling's output (pool below; fc_norm
                             after timm's token/avg pooling, tanh(dense) for the pooler) */
  M2PT_OUTPUT_MEAN = 2,   /* [B][dim]: the mask-weighted mean of the last hidden
                             state over every token (sentence-transformers) */
  M2PT_OUTPUT_LOGITS = 3, /* [B][classes]: the head on the pooled features */
} m2pt_output_kind;

/* Options of the whole-model forwards (NULL: the defaults). Start from
 * m2pt_forward_options_default(); struct_size as in m2pt_model_options. */
typedef struct m2pt_forward_options {
  size_t struct_size;
  m2pt_output_kind output;
  m2pt_pool_kind pool; /* AUTO: the pooler where the checkpoint has pooler.dense,
                          else MEAN (timm 'avg': tokens after the class token)
                          where it has fc_norm, else TOKEN (the class token) */
  int normalize;       /* 1: L2-normalize POOLED and MEAN outputs (F.normalize) */
} m2pt_forward_options;

/* Hidden output, AUTO pooling, no normalization. */
static inline m2pt_forward_options m2pt_forward_options_default(void)
{
  const m2pt_forward_options o = {sizeof(m2pt_forward_options), M2PT_OUTPUT_HIDDEN,
                                  M2PT_POOL_AUTO, 0};
  return o;
}

/* The shape of `kind`'s output for a batch of `tokens`-token inputs:
 * *ndim 3 or 2 and shape[0 … ndim−1]. Errors: M2PT_ERR_INVALID_ARGUMENT,
 * M2PT_ERR_NOT_FOUND (LOGITS of a checkpoint without a head). */
M2PT_API m2pt_status m2pt_model_output_shape(const m2pt_model *model, m2pt_output_kind kind,
                                             size_t batch, size_t tokens, size_t *ndim,
                                             size_t shape[3]);

/* BERT from token ids: embeddings (m2pt_bert_embeddings, ids and token
 * types [B][N] int32 or int64 checked on the host; token_types NULL: 0),
 * the blocks with the attention mask (NULL: every token; else [B][N] int32,
 * int64 or float32 of 1 for tokens and 0 for padding, checked on the host),
 * then the output options ask for into y (its shape from
 * m2pt_model_output_shape). A MEAN row whose mask is all 0 gives zeros (the
 * attention of such a row is defined too: all its keys masked give zeros).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, an id out of range or negative,
 * a mask value other than 0 or 1, bad options), M2PT_ERR_SHAPE (mask or y
 * of the wrong shape, more tokens than position embeddings),
 * M2PT_ERR_INVALID_STATE (no word embeddings, heads not given),
 * M2PT_ERR_NOT_FOUND (the kind needs a pooler or head the checkpoint lacks),
 * and the block's errors. A refused call enqueues nothing and writes no y. */
M2PT_API m2pt_status m2pt_model_forward_ids(m2pt_model *model, const m2pt_host_matrix *ids,
                                            const m2pt_host_matrix *token_types,
                                            const m2pt_host_matrix *mask,
                                            const m2pt_forward_options *options, m2pt_tensor *y);

/* ViT from pixels [B][C][H][W] (already normalized): patch embedding, class
 * token and positions (m2pt_patch_embed), the blocks (mask as above, over
 * the 1 + G tokens, NULL for none), then the output. The image must give
 * the checkpoint's square patch grid: H = W = P·√(positions − 1).
 * Errors as m2pt_model_forward_ids; M2PT_ERR_SHAPE for pixels of another
 * size or channel count, M2PT_ERR_INVALID_STATE without a patch embedding. */
M2PT_API m2pt_status m2pt_model_forward_pixels(m2pt_model *model, const m2pt_tensor *pixels,
                                               const m2pt_host_matrix *mask,
                                               const m2pt_forward_options *options,
                                               m2pt_tensor *y);

/* From hidden states x [B][N][dim] (the block stack's input, as
 * m2pt_model_forward and m2pt_model_grad_hidden take it): the blocks, then
 * the output options ask for, as m2pt_model_forward_ids does after its
 * embeddings (MEAN pooling skips the first token when the checkpoint has a
 * class token). mask as there. Errors as m2pt_model_forward_ids;
 * M2PT_ERR_SHAPE for x that is not [B][N][dim]. */
M2PT_API m2pt_status m2pt_model_forward_hidden(m2pt_model *model, const m2pt_tensor *x,
                                               const m2pt_host_matrix *mask,
                                               const m2pt_forward_options *options,
                                               m2pt_tensor *y);

#ifdef __cplusplus
}
#endif

#endif
