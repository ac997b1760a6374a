/* The model's gradients object, shared by model_grads.c (making, naming,
 * reading) and model_train.c (the backward writes it). */
#ifndef M2PT_NN_MODEL_GRADS_INTERNAL_H
#define M2PT_NN_MODEL_GRADS_INTERNAL_H

#include "block_internal.h"
#include "m2pt/model_grad.h"
#include "model_internal.h"

/* One named gradient. src: NULL when the backward writes t itself, else the
 * whole (BERT's qkv) whose elements from `offset` t copies afterwards. */
typedef struct m2pt_grad_entry {
  char *name;
  m2pt_tensor *t;
  m2pt_tensor *src;
  size_t offset;
} m2pt_grad_entry;

struct m2pt_model_grads {
  m2pt_model *model;
  size_t pathways;           /* the model's, when made: a change refuses the backward */
  int has_head;              /* likewise */
  m2pt_grad_entry *e;
  size_t count, cap;
  m2pt_tensor **hidden;      /* wholes that no name addresses */
  size_t nhidden;
  m2pt_block_grads *blocks;  /* [depth], tensors borrowed from e and hidden; NULL: frozen */
  m2pt_tensor *ends[M2PT_END_TENSORS]; /* embeddings, fc_norm (borrowed) */
  m2pt_tensor *final_w, *final_b;
  m2pt_linear_grads linears[M2PT_MODEL_ENDS]; /* pooler, head (no dx) */
};

/* The model's number of unmerged pathways now. */
size_t m2pt_model_grads_pathways(const m2pt_model *model);

/* Copies each part's rows out of its whole (after a backward). */
m2pt_status m2pt_model_grads_copy_parts(const m2pt_model_grads *grads);

#endif
