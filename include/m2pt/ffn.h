/* The cross-modal feed-forward network (the seed's cross_modal_ffn):
 * y = fc2(GELU(fc1(x))), both linears re-parameterized or plain. */
#ifndef M2PT_FFN_H
#define M2PT_FFN_H

#include <stddef.h>

#include "linear.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct m2pt_ffn m2pt_ffn;

/* Creates fc1 (dim → hidden) and fc2 (hidden → dim), each with a bias and
 * `linear_flags` (M2PT_LINEAR_PATHWAY for the M2PT pathway). The caller owns
 * *out and frees it with m2pt_ffn_destroy.
 * Errors: as m2pt_linear_create, and M2PT_ERR_INVALID_ARGUMENT for an
 * unknown gelu kind. */
M2PT_API m2pt_status m2pt_ffn_create(m2pt_context *ctx, size_t dim, size_t hidden,
                                     unsigned linear_flags, m2pt_gelu_kind gelu,
                                     m2pt_ffn **out);

/* Frees the FFN and its two linears. Accepts NULL. */
M2PT_API void m2pt_ffn_destroy(m2pt_ffn *ffn);

/* The FFN's layers, owned by it, to set and read their parameters
 * (NULL for NULL). */
M2PT_API m2pt_linear *m2pt_ffn_fc1(m2pt_ffn *ffn);
M2PT_API m2pt_linear *m2pt_ffn_fc2(m2pt_ffn *ffn);

/* y = fc2(GELU(fc1(x))) for x [..][dim] and y of the same shape (y ≠ x).
 * The hidden activations live in the context's workspace.
 * Errors: as m2pt_linear_forward. */
M2PT_API m2pt_status m2pt_ffn_forward(m2pt_ffn *ffn, const m2pt_tensor *x, m2pt_tensor *y);

/* Merges both linears (m2pt_linear_merge). */
M2PT_API m2pt_status m2pt_ffn_merge(m2pt_ffn *ffn);

#ifdef __cplusplus
}
#endif

#endif
