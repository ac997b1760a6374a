/* The cross-modal re-parameterized linear layer of M2PT (arXiv 2401.14405,
 * the paper's CrossModalReparamLinear), and the plain linear it merges into:
 *
 *     y = x · (W + λ·W_aux)ᵀ + b [+ λ·b_aux]
 *
 * W and W_aux are [out][in] (PyTorch nn.Linear.weight layout), b and b_aux
 * are [out], λ is a scalar. Words used throughout the API: the *pathway* is
 * what the auxiliary modality adds to a layer (W_aux, b_aux if any, and λ);
 * λ is the *scale* (the checkpoint's "cross_modal_scale"); aux_weight and
 * aux_bias are W_aux and b_aux, named as in the paper's checkpoints. */
#ifndef M2PT_LINEAR_H
#define M2PT_LINEAR_H

#include <stddef.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct m2pt_linear m2pt_linear;

/* Layer flags for m2pt_linear_create. */
#define M2PT_LINEAR_BIAS         1u /* has a bias b */
#define M2PT_LINEAR_PATHWAY      2u /* has a pathway: W_aux and λ */
#define M2PT_LINEAR_PATHWAY_BIAS 4u /* the pathway has b_aux too, folded as
                                       λ·b_aux; needs PATHWAY, implies BIAS */

/* Creates a layer mapping `in` features to `out`. All weights start at zero
 * and λ at 0 (the paper's initialisation), so set them before use.
 * The caller owns *out_layer and frees it with m2pt_linear_destroy.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, zero or overflowing sizes,
 * unknown flags, PATHWAY_BIAS without PATHWAY), M2PT_ERR_DEVICE_OUT_OF_MEMORY,
 * M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_linear_create(m2pt_context *ctx, size_t in, size_t out,
                                        unsigned flags, m2pt_linear **out_layer);

/* Frees the layer. Accepts NULL. */
M2PT_API void m2pt_linear_destroy(m2pt_linear *layer);

/* Setters copy `count` floats from host memory; count must be out·in for
 * weights and out for biases. Getters copy back the same way. A setter that
 * fails leaves the layer as it was.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL), M2PT_ERR_SHAPE (count mismatch),
 * M2PT_ERR_INVALID_STATE (the layer has no such parameter: no bias, no
 * pathway, or the pathway was merged away), M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_linear_set_weight(m2pt_linear *layer, const float *w, size_t count);
M2PT_API m2pt_status m2pt_linear_set_bias(m2pt_linear *layer, const float *b, size_t count);
M2PT_API m2pt_status m2pt_linear_set_aux_weight(m2pt_linear *layer, const float *w, size_t count);
M2PT_API m2pt_status m2pt_linear_set_aux_bias(m2pt_linear *layer, const float *b, size_t count);
M2PT_API m2pt_status m2pt_linear_get_weight(const m2pt_linear *layer, float *w, size_t count);
M2PT_API m2pt_status m2pt_linear_get_bias(const m2pt_linear *layer, float *b, size_t count);
M2PT_API m2pt_status m2pt_linear_get_aux_weight(const m2pt_linear *layer, float *w, size_t count);
M2PT_API m2pt_status m2pt_linear_get_aux_bias(const m2pt_linear *layer, float *b, size_t count);

/* Sets λ. Errors: M2PT_ERR_INVALID_ARGUMENT (NULL layer, non-finite λ),
 * M2PT_ERR_INVALID_STATE (no pathway, or merged). */
M2PT_API m2pt_status m2pt_linear_set_scale(m2pt_linear *layer, float scale);
M2PT_API m2pt_status m2pt_linear_get_scale(const m2pt_linear *layer, float *scale);

/* y = layer(x). x has any shape whose last dimension is `in`; y has the same
 * leading dimensions and last dimension `out`. Unmerged, W + λ·W_aux is formed
 * on the device once and reused until W, W_aux or λ change, so a forward is
 * one GEMM. Asynchronous: read y (or finish the context) to wait.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, y is x), M2PT_ERR_SHAPE,
 * M2PT_ERR_CONTEXT_MISMATCH, M2PT_ERR_BLAS, M2PT_ERR_OPENCL,
 * M2PT_ERR_KERNEL_BUILD. */
M2PT_API m2pt_status m2pt_linear_forward(m2pt_linear *layer, const m2pt_tensor *x,
                                         m2pt_tensor *y);

/* Where m2pt_linear_backward puts each gradient. A NULL member is a
 * gradient not wanted (a frozen parameter, or an input needing none): it is
 * not computed and costs nothing; all NULL does nothing. The caller owns
 * every tensor; each must belong to the layer's context and be distinct
 * from the others and from x and dy. Start from {0} (all NULL, overwrite).
 *   dx          like x, [..][in]:  dY·W_eff        (W_eff = W + λ·W_aux)
 *   dweight     [out][in]:         G = dYᵀ·X       (rows of x and dy summed)
 *   dbias       out elements:      db = Σ_rows dY
 *   daux_weight [out][in]:         λ·G             (pathway only)
 *   daux_bias   out elements:      λ·db            (aux-bias pathway only)
 *   dscale      1 element:         dλ = Σ G ⊙ W_aux + Σ db ⊙ b_aux (pathway only)
 * accumulate = 0 overwrites each wanted tensor; 1 adds the gradient to what
 * it holds (PyTorch's `.grad +=`, for micro-batches: zero the tensors
 * once, then accumulate). dx accumulates too, which sums a residual
 * branch's input gradient in place. */
typedef struct m2pt_linear_grads {
  m2pt_tensor *dx;
  m2pt_tensor *dweight;
  m2pt_tensor *dbias;
  m2pt_tensor *daux_weight;
  m2pt_tensor *daux_bias;
  m2pt_tensor *dscale;
  int accumulate;
} m2pt_linear_grads;

/* The gradients of a scalar loss L with respect to the layer's input and
 * parameters, given x (the forward's input, [..][in]) and dy = ∂L/∂y
 * ([..][out], the same leading dimensions), for the layer as it is now
 * (unmerged: W, W_aux, λ, b, b_aux; merged or plain: W and b). The
 * formulas are in m2pt_linear_grads; G is one GEMM, run only when dweight,
 * daux_weight or dscale is wanted, dx another. The sums are deterministic:
 * G and dx are GEMMs (a fixed order for given shapes and backend), db sums
 * rows in order, dλ sums in a fixed blocking (partials of 16 elements of
 * G ⊙ W_aux, each four runs of four summed in order and then pairwise; 64
 * lanes each summing every 64th partial in order, then a pairwise tree over
 * the lanes; the b_aux term likewise, added last), with no atomics: two runs give the same bits on a device, and
 * asking for more or fewer gradients does not change the bits of the
 * others. Asynchronous: read an output (or finish the context) to wait.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL layer, grads, x or dy; two
 * arguments that are one tensor; accumulate not 0 or 1),
 * M2PT_ERR_SHAPE, M2PT_ERR_CONTEXT_MISMATCH, M2PT_ERR_INVALID_STATE (a
 * gradient of a parameter the layer lacks: no bias, no pathway or merged,
 * no aux bias), M2PT_ERR_UNSUPPORTED (dscale on a device whose
 * work-groups hold fewer than 64 work-items), M2PT_ERR_BLAS, M2PT_ERR_OPENCL,
 * M2PT_ERR_KERNEL_BUILD. A rejected call writes no tensor. */
M2PT_API m2pt_status m2pt_linear_backward(m2pt_linear *layer, const m2pt_tensor *x,
                                          const m2pt_tensor *dy, const m2pt_linear_grads *grads);

/* Folds the pathway into the layer: W ← W + λ·W_aux (and b ← b + λ·b_aux),
 * computed by the same kernel as the unmerged forward's effective weight, so
 * forward gives the same numbers before and after. W_aux (and b_aux) are
 * freed; the layer is then a plain linear. Merging a merged layer, or a layer
 * without a pathway, changes nothing and returns M2PT_OK.
 * Errors: M2PT_ERR_INVALID_ARGUMENT, M2PT_ERR_OPENCL, M2PT_ERR_KERNEL_BUILD
 * (the layer is unchanged then). */
M2PT_API m2pt_status m2pt_linear_merge(m2pt_linear *layer);

/* 1 once m2pt_linear_merge folded a pathway into the layer, else 0. */
M2PT_API int m2pt_linear_is_merged(const m2pt_linear *layer);

/* The context the layer belongs to (NULL for NULL), e.g. for m2pt_last_error. */
M2PT_API m2pt_context *m2pt_linear_context(const m2pt_linear *layer);

/* 1 while the layer has a pathway (W_aux and λ) that is not merged, else 0. */
M2PT_API int m2pt_linear_has_pathway(const m2pt_linear *layer);

#ifdef __cplusplus
}
#endif

#endif
