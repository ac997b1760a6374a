/* What the model uses of a block beyond the public API. */
#ifndef M2PT_NN_BLOCK_INTERNAL_H
#define M2PT_NN_BLOCK_INTERNAL_H

#include <stddef.h>

#include "m2pt/block.h"
#include "m2pt/linear.h"

/* The block's linears, in this order, by their checkpoint names. */
enum { M2PT_BLOCK_QKV, M2PT_BLOCK_PROJ, M2PT_BLOCK_FC1, M2PT_BLOCK_FC2, M2PT_BLOCK_LINEARS };
extern const char *const m2pt_block_linear_names[M2PT_BLOCK_LINEARS]; /* "attn.qkv", … */

/* Linear `index` (M2PT_BLOCK_QKV …) of the block. */
m2pt_linear *m2pt_block_linear(const m2pt_block *block, size_t index);

/* The step of a merge that can fail: forming every linear's merged weight
 * (W + λ·W_aux, kept until the weights change). After it m2pt_block_merge
 * only swaps buffers, so a caller that prepares everything it will merge
 * first (the block's four linears, the model's blocks) never leaves a
 * merge half done. */
m2pt_status m2pt_block_merge_prepare(m2pt_block *block);

#endif
