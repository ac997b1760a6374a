/* Shape checks shared by the public op wrappers. */
#ifndef M2PT_OPS_TENSOR_CHECKS_H
#define M2PT_OPS_TENSOR_CHECKS_H

#include "core/context_impl.h"

/* The size of a tensor's last dimension. */
static inline size_t m2pt_last_dim(const m2pt_tensor *t)
{
  return t->shape[t->ndim - 1];
}

/* M2PT_OK when a and b have the same shape, else M2PT_ERR_SHAPE naming both. */
m2pt_status m2pt_check_same_shape(const m2pt_context *ctx, const m2pt_tensor *a,
                                  const m2pt_tensor *b, const char *fn, const char *an,
                                  const char *bn);

/* M2PT_OK when `value` is one the header defines for an enum whose values
 * run from 0 to `last`, else M2PT_ERR_INVALID_ARGUMENT: "<fn>: unknown
 * <what> <value>". */
m2pt_status m2pt_check_enum(const m2pt_context *ctx, int value, int last, const char *fn,
                            const char *what);

/* M2PT_OK when mask is NULL or a tensor of ctx shaped like x without its
 * last dimension ([B][N] for x [B][N][..], [N] for x [N][..]: one value a
 * token), else the status and message of the first failure. */
m2pt_status m2pt_check_mask(const m2pt_context *ctx, const m2pt_tensor *mask,
                            const m2pt_tensor *x, const char *fn);

/* M2PT_OK when v is a vector (any shape) of n elements, else M2PT_ERR_SHAPE. */
m2pt_status m2pt_check_vector(const m2pt_context *ctx, const m2pt_tensor *v, size_t n,
                              const char *fn, const char *name);

#endif
