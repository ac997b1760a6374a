/* The trainable parameters of a model as device tensors, one per gradient
 * of an m2pt_model_grads and in its order (issue 13): what an optimizer
 * updates in place (m2pt_optimizer_add_param(opt, group, param i, grad i)).
 * Most tensors alias the model's own storage; λ (a host value in the
 * model) and BERT's q, k, v rows (parts of one qkv buffer) are device
 * copies that m2pt_model_params_sync writes back. */
#ifndef M2PT_MODEL_PARAMS_H
#define M2PT_MODEL_PARAMS_H

#include <stddef.h>

#include "model_grad.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct m2pt_model_params m2pt_model_params;

/* The parameters of `model` that `grads` has gradients for (the same count,
 * names and shapes; index i is gradient i's parameter). The model and
 * grads must outlive the object, and the model keep its parameter set (no
 * merge, no new pathway) while it is used. The caller owns *out.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, grads of another model),
 * M2PT_ERR_NOT_FOUND (a gradient whose parameter the model lacks),
 * M2PT_ERR_OUT_OF_MEMORY, M2PT_ERR_DEVICE_OUT_OF_MEMORY, M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_model_params_create(m2pt_model *model, const m2pt_model_grads *grads,
                                              m2pt_model_params **out);

/* Frees the object (never the model's storage). Accepts NULL. */
M2PT_API void m2pt_model_params_destroy(m2pt_model_params *params);

/* The number of parameters (0 for NULL). */
M2PT_API size_t m2pt_model_params_count(const m2pt_model_params *params);

/* Parameter `index`'s device tensor (owned by params), NULL when out of
 * range. Its checkpoint name is m2pt_model_grads_name(grads, index). */
M2PT_API m2pt_tensor *m2pt_model_params_tensor(const m2pt_model_params *params, size_t index);

/* After the tensors were changed in place (an optimizer step): makes the
 * model compute with them: each λ read back (blocking), each q, k, v part
 * copied into its qkv, each W + λ·W_aux re-formed at its next use.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL), M2PT_ERR_FORMAT (a λ that is
 * no longer finite: the model keeps the previous λ, while the parameters
 * changed in place take effect), M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_model_params_sync(m2pt_model_params *params);

#ifdef __cplusplus
}
#endif

#endif
