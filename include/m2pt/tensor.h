/* Device tensors: dense, row-major f32 arrays of 1 to 4 dimensions.
 *
 * Non-finite values: the library computes IEEE single-precision arithmetic
 * and never scans tensor contents for them (one more pass over every input
 * of every call). NaN and ±Inf in an input propagate as they do in
 * PyTorch (one NaN in a token of a model's input makes every token of its
 * sequence NaN, through attention), except where a header says otherwise (a
 * softmax row whose keys are all masked gives zeros). Callers that want such
 * inputs refused check them before m2pt_tensor_write; the tools do. */
#ifndef M2PT_TENSOR_H
#define M2PT_TENSOR_H

#include <stddef.h>

#include "context.h"

#ifdef __cplusplus
extern "C" {
#endif

#define M2PT_MAX_DIMS 4

typedef struct m2pt_tensor m2pt_tensor;

/* Creates a zero-filled tensor of `ndim` (1..4) dimensions on ctx's device.
 * The caller owns *out and frees it with m2pt_tensor_destroy before the context.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, ndim out of range, a zero
 * dimension, an element count or byte size that overflows),
 * M2PT_ERR_DEVICE_OUT_OF_MEMORY (larger than the device allows, or the
 * allocation failed), M2PT_ERR_OPENCL. On error *out is NULL. */
M2PT_API m2pt_status m2pt_tensor_create(m2pt_context *ctx, size_t ndim,
                                        const size_t *shape, m2pt_tensor **out);

/* Frees the tensor's device memory. Accepts NULL. */
M2PT_API void m2pt_tensor_destroy(m2pt_tensor *t);

/* Copies `count` floats from host memory into the tensor; count must equal
 * the element count. Blocks until the copy is done.
 * Errors: M2PT_ERR_INVALID_ARGUMENT, M2PT_ERR_SHAPE (count mismatch),
 * M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_tensor_write(m2pt_tensor *t, const float *src, size_t count);

/* Copies the tensor into `count` host floats (count = element count), after
 * all work enqueued before it. Errors as m2pt_tensor_write. */
M2PT_API m2pt_status m2pt_tensor_read(const m2pt_tensor *t, float *dst, size_t count);

/* Number of dimensions (0 for NULL). */
M2PT_API size_t m2pt_tensor_ndim(const m2pt_tensor *t);

/* Size of dimension `axis` (0 for NULL or an axis out of range). */
M2PT_API size_t m2pt_tensor_dim(const m2pt_tensor *t, size_t axis);

/* Total number of elements (0 for NULL). */
M2PT_API size_t m2pt_tensor_numel(const m2pt_tensor *t);

/* The context the tensor belongs to (NULL for NULL). */
M2PT_API m2pt_context *m2pt_tensor_context(const m2pt_tensor *t);

#ifdef __cplusplus
}
#endif

#endif
