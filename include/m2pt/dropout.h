/* Dropout and stochastic depth (drop-path) for fine-tuning (issue 12),
 * driven by a counter-based generator, Philox-4x32-10 (Salmon et al.,
 * "Parallel Random Numbers: As Easy as 1, 2, 3", SC 2011). A mask is a pure
 * function of its key and the element's index, never stored: the backward
 * regenerates the forward's mask from the same key, and one key gives the
 * same mask on every device (integer arithmetic only). Asynchronous; every
 * argument is validated first, so a rejected call changes no tensor. */
#ifndef M2PT_DROPOUT_H
#define M2PT_DROPOUT_H

#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What selects a mask: the run's seed, the training step and the layer (any
 * numbering the caller keeps stable, e.g. 2·block + which dropout). Philox's
 * key is (seed mod 2^32, seed / 2^32); its counter is (i mod 2^32, i / 2^32,
 * step, layer) for the i-th group of four elements (dropout) or (b mod 2^32,
 * 2^31 + b / 2^32, step, layer) for sample b (drop-path), so the two never
 * share a draw. */
typedef struct m2pt_rng_key {
  uint64_t seed;
  uint32_t step, layer;
} m2pt_rng_key;

/* y = x ⊙ m / (1 − p) with m[i] = 0 with probability p, else 1 (PyTorch's
 * F.dropout in training mode; p = 1 gives zeros). Element i is dropped when
 * word i mod 4 of Philox(counter (i/4, …), key) is below p·2^32. x and y have
 * one shape; y may be x. p in [0, 1].
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, p), M2PT_ERR_SHAPE,
 * M2PT_ERR_CONTEXT_MISMATCH, M2PT_ERR_OPENCL, M2PT_ERR_KERNEL_BUILD. */
M2PT_API m2pt_status m2pt_dropout(m2pt_context *ctx, const m2pt_tensor *x, float p,
                                  m2pt_rng_key key, m2pt_tensor *y);

/* The backward of m2pt_dropout with the same p and key: dx = dy ⊙ m / (1 − p),
 * the forward's mask regenerated. dx may be dy. Errors as m2pt_dropout. */
M2PT_API m2pt_status m2pt_dropout_backward(m2pt_context *ctx, const m2pt_tensor *dy, float p,
                                           m2pt_rng_key key, m2pt_tensor *dx);

/* Stochastic depth per sample (timm's drop_path, scale_by_keep): x is
 * [B][…]; y[b] = x[b] / (1 − p) when sample b is kept, else 0; sample b is
 * dropped when word 0 of Philox(counter (b, 2^31, step, layer), key) is
 * below p·2^32. y may be x. Errors as m2pt_dropout. */
M2PT_API m2pt_status m2pt_drop_path(m2pt_context *ctx, const m2pt_tensor *x, float p,
                                    m2pt_rng_key key, m2pt_tensor *y);

/* The backward of m2pt_drop_path with the same p and key: dx[b] = dy[b]
 * scaled and dropped as the forward's sample b. dx may be dy. */
M2PT_API m2pt_status m2pt_drop_path_backward(m2pt_context *ctx, const m2pt_tensor *dy, float p,
                                             m2pt_rng_key key, m2pt_tensor *dx);

#ifdef __cplusplus
}
#endif

#endif
