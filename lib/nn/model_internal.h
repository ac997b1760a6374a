/* The model's state, shared by loading/running (model.c) and saving
 * (model_save.c). */
#ifndef M2PT_NN_MODEL_INTERNAL_H
#define M2PT_NN_MODEL_INTERNAL_H

#include "checkpoint_naming.h"
#include "core/cl.h"
#include "m2pt/model.h"

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
};

/* Rows and columns of block linear `index` (out, in). */
void m2pt_model_linear_shape(const m2pt_model *model, int index, size_t *out, size_t *in);

#endif
