/* Where a naming scheme (timm, HF BERT) keeps a block's parameters in a
 * checkpoint, and finding the block stack in a file (DESIGN.md §1). */
#ifndef M2PT_NN_CHECKPOINT_NAMING_H
#define M2PT_NN_CHECKPOINT_NAMING_H

#include <stddef.h>

#include "block_internal.h"
#include "m2pt/io.h"
#include "m2pt/model.h"

/* Block LayerNorm parameters, in this order. */
enum { M2PT_NORM1_WEIGHT, M2PT_NORM1_BIAS, M2PT_NORM2_WEIGHT, M2PT_NORM2_BIAS, M2PT_BLOCK_NORMS };
extern const char *const m2pt_block_norm_names[M2PT_BLOCK_NORMS]; /* "norm1.weight", … */

/* A linear's tensors: "<layer>.<field>". */
enum { M2PT_FIELD_WEIGHT, M2PT_FIELD_BIAS, M2PT_FIELD_AUX_WEIGHT, M2PT_FIELD_SCALE,
       M2PT_FIELDS };
extern const char *const m2pt_field_names[M2PT_FIELDS]; /* "weight", …, "cross_modal_scale" */

#define M2PT_MAX_PARTS 3

typedef struct m2pt_naming_scheme {
  m2pt_naming naming;
  const char *norms[M2PT_BLOCK_NORMS];
  /* The checkpoint layers whose rows, concatenated, form each block linear
   * (BERT's query, key, value form qkv). */
  const char *linears[M2PT_BLOCK_LINEARS][M2PT_MAX_PARTS];
  size_t parts[M2PT_BLOCK_LINEARS];
  int final_norm; /* the stack may be followed by a final norm: 1 timm's
                     "<parent>norm.*", 2 HF ViT's "<root>layernorm.*" */
  const char *stack; /* the prefix's usual last part ("blocks", "encoder.layer"),
                        what is left before it is the model's root */
  int post_norm;   /* the naming fixes the layout: 1 post-norm, 0 pre-norm,
                      -1 as the options say */
  float eps;       /* the naming's LayerNorm eps, negative: by layout */
} m2pt_naming_scheme;

/* The scheme of TIMM or BERT (NULL for AUTO or another value). */
const m2pt_naming_scheme *m2pt_naming_scheme_of(m2pt_naming naming);

/* The block stack of a checkpoint: its scheme, the prefix before ".{i}."
 * and the depth (blocks 0 … depth−1 each have their first linear's weight).
 * With `prefix` NULL the prefix is the one every "….0.<qkv weight>" name
 * shares; `naming` AUTO tries timm, then BERT. Messages (on ctx) name `file`.
 * *found_prefix is malloc'd. Errors: M2PT_ERR_NOT_FOUND (no stack, or more
 * than one prefix), M2PT_ERR_OUT_OF_MEMORY. */
m2pt_status m2pt_find_block_stack(const m2pt_context *ctx, const m2pt_safetensors *st,
                                  const char *file, m2pt_naming naming, const char *prefix,
                                  const m2pt_naming_scheme **scheme, char **found_prefix,
                                  size_t *depth);

/* The block linear (M2PT_BLOCK_QKV …) a user's layer name means in this
 * scheme: the block's names always, and the scheme's own layer names;
 * -1 for an unknown name. */
int m2pt_naming_linear_index(const m2pt_naming_scheme *scheme, const char *layer);

/* What a checkpoint name is in a stack with this prefix. */
typedef enum m2pt_name_kind {
  M2PT_NAME_OUTSIDE,    /* not under "<prefix>.{i}." and not the final norm */
  M2PT_NAME_NORM,       /* block LayerNorm parameter `norm` */
  M2PT_NAME_LINEAR,     /* `field` of part `part` of block linear `linear` */
  M2PT_NAME_FINAL_NORM, /* `norm` 0 weight, 1 bias */
  M2PT_NAME_UNKNOWN,    /* under a block, but nothing the block models */
} m2pt_name_kind;

typedef struct m2pt_name_ref {
  m2pt_name_kind kind;
  size_t block;
  int norm, linear, part, field;
} m2pt_name_ref;

/* Classifies `name`. `final_norm_prefix` is what precedes "norm.weight" (the
 * prefix's parent with its dot), NULL when the scheme has no final norm. */
m2pt_name_ref m2pt_classify_name(const m2pt_naming_scheme *scheme, const char *prefix,
                                 const char *final_norm_prefix, const char *name);

/* "<prefix>.<block>.<layer>.<field>" (or "….<norm>" for field NULL) into buf.
 * 0 when it does not fit. */
int m2pt_param_name(char *buf, size_t size, const char *prefix, size_t block, const char *layer,
                    const char *field);

#endif
