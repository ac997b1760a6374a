/* The model's state, shared by loading/running (model.c) and saving
 * (model_save.c). */
#ifndef M2PT_NN_MODEL_INTERNAL_H
#define M2PT_NN_MODEL_INTERNAL_H

#include "checkpoint_naming.h"
#include "core/cl.h"
#include "m2pt/model.h"

/* A linear outside the blocks: the pooler's dense or the head. */
enum { M2PT_END_POOLER, M2PT_END_HEAD, M2PT_MODEL_ENDS };
typedef struct m2pt_model_end {
  char *name;          /* its checkpoint name ("bert.pooler.dense", "classifier"), NULL: none */
  m2pt_linear *linear;
  size_t in, out;
} m2pt_model_end;

struct m2pt_model {
  m2pt_context *ctx;
  char *path;                /* the loaded file, for messages */
  m2pt_safetensors *st;      /* kept open: save copies what the model does not hold */
  const m2pt_naming_scheme *scheme;
  char *prefix;
  char *final_prefix;        /* what precedes "norm.weight"; NULL: no final norm name */
  size_t depth;
  size_t heads;              /* as given; 0: forward refused */
  m2pt_block_config cfg;
  m2pt_block **blocks;
  cl_mem norm_w, norm_b;     /* the final norm, or NULL */
  char *root;                /* what precedes the model's own names ("", "bert.", "vit.") */
  /* The ends (model_ends.c); NULL where the checkpoint has none. */
  m2pt_tensor *word, *position, *token_type, *emb_ln_w, *emb_ln_b; /* BERT embeddings */
  m2pt_tensor *patch_w, *patch_b, *cls, *pos;                      /* ViT embeddings */
  m2pt_tensor *fc_norm_w, *fc_norm_b;                              /* timm's fc_norm */
  m2pt_model_end ends[M2PT_MODEL_ENDS];                            /* pooler, head */
  struct m2pt_model_train *train; /* saved activations of the training passes, or NULL */
};

/* Rows and columns of block linear `index` (out, in). */
void m2pt_model_linear_shape(const m2pt_model *model, int index, size_t *out, size_t *in);

/* The largest parameter of a block, in floats (the size of a read buffer). */
size_t m2pt_model_largest_param(const m2pt_model *model);

/* ---- reading checkpoints (model_load.c), for loading and for pathways ---- */

/* One open checkpoint and where its block stack is. */
typedef struct m2pt_model_source {
  m2pt_context *ctx;
  const char *file;
  const m2pt_safetensors *st;
  const m2pt_naming_scheme *scheme;
  const char *prefix;
} m2pt_model_source;

/* Passes a checkpoint reader's failure (reported on the thread) to ctx. */
m2pt_status m2pt_model_io_fail(const m2pt_context *ctx, m2pt_status s);

/* "[3][4]", or "[] (a scalar)" for ndim 0. */
void m2pt_model_shape_text(char *buf, size_t size, size_t ndim, const size_t *shape);

/* Finds `name` (its index into *found when that is not NULL); a missing
 * tensor is M2PT_ERR_FORMAT naming it. */
m2pt_status m2pt_model_find_tensor(const m2pt_model_source *src, const char *name,
                                   m2pt_safetensors_info *info, size_t *found);

/* Reads `field` (M2PT_FIELD_WEIGHT, _BIAS or _AUX_WEIGHT) of block linear
 * `li` of block `block` as f32: the parts' rows concatenated. */
m2pt_status m2pt_model_read_linear(const m2pt_model_source *src, const m2pt_model *model,
                                   size_t block, int li, int field, float *dst);

/* ---- the ends (model_ends.c) ---- */

/* Sets model->root from the prefix and the scheme's stack name. */
m2pt_status m2pt_model_find_root(m2pt_model *model);

/* Loads embeddings, fc_norm, pooler and head where the checkpoint has them
 * (each checked against dim; stored pathways of the linears loaded). */
m2pt_status m2pt_model_load_ends(m2pt_model *model, const m2pt_model_source *src);

/* Frees what m2pt_model_load_ends made and root. */
void m2pt_model_free_ends(m2pt_model *model);

/* The end whose checkpoint tensor `name` is "<end>.<field>", with *field
 * set to the field (M2PT_FIELD_* or M2PT_FIELDS for "aux_bias"); -1 when none. */
int m2pt_model_end_of(const m2pt_model *model, const char *name, int *field);

/* The end a user's layer name means ("head", "classifier", "pooler.dense",
 * or its full checkpoint name), -1 when none. */
int m2pt_model_end_index(const m2pt_model *model, const char *layer);

/* The pooling `asked` means for this model (AUTO: the checkpoint's). */
m2pt_pool_kind m2pt_model_pool_of(const m2pt_model *model, m2pt_pool_kind asked);

/* The ends' tensors, in this order (NULL where the checkpoint has none). */
enum { M2PT_END_WORD, M2PT_END_POSITION, M2PT_END_TOKEN_TYPE, M2PT_END_EMB_LN_W,
       M2PT_END_EMB_LN_B, M2PT_END_PATCH_W, M2PT_END_PATCH_B, M2PT_END_CLS, M2PT_END_POS,
       M2PT_END_FC_NORM_W, M2PT_END_FC_NORM_B, M2PT_END_TENSORS };
m2pt_tensor *m2pt_model_end_tensor(const m2pt_model *model, int which);

/* The checkpoint name of end tensor `which` into buf; 0 when the model has
 * no such tensor. */
int m2pt_model_end_tensor_name(const m2pt_model *model, int which, char *buf, size_t size);

/* Training state (model_train.c): freed with the model. */
struct m2pt_model_train;
void m2pt_model_train_free(m2pt_model *model);

#endif
