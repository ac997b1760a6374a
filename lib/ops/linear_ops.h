/* Device ops of the re-parameterized linear (kernels in cl/linear.cl). */
#ifndef M2PT_OPS_LINEAR_OPS_H
#define M2PT_OPS_LINEAR_OPS_H

#include <stddef.h>

#include "core/cl.h"
#include "m2pt/context.h"

/* dst[i] = w[i] + scale·aux[i] for i < n, as one fma (dst may be w). */
m2pt_status m2pt_op_fold_pathway(m2pt_context *ctx, cl_mem dst, cl_mem w, cl_mem aux,
                                 float scale, size_t n);

/* y[r][c] = b[c] for a rows × cols matrix y. */
m2pt_status m2pt_op_broadcast_rows(m2pt_context *ctx, cl_mem y, cl_mem b, size_t rows,
                                   size_t cols);

#endif
