/* The FFN on raw buffers, for the block. */
#ifndef M2PT_NN_FFN_INTERNAL_H
#define M2PT_NN_FFN_INTERNAL_H

#include <stddef.h>

#include "core/cl.h"
#include "m2pt/ffn.h"

#include "linear_internal.h"

/* y = residual + fc2(GELU(fc1(x))) for x, y [rows][dim], then y =
 * LayerNorm(y) with `post` when it is not NULL (a post-norm block's LN2);
 * residual may be NULL (none) and may be x, but not y. The ops around the
 * GEMMs are fused into them (m2pt_linear_apply_fused). */
m2pt_status m2pt_ffn_apply(m2pt_ffn *ffn, cl_mem x, size_t rows, cl_mem residual,
                           const m2pt_linear_norm *post, cl_mem y);

#endif
