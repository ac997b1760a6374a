/* The block's element-wise and row ops on host memory, for CPU devices
 * whose GEMMs run on the host (gemm/backend.h, m2pt_gemm_sgemm_host):
 * there they run on a GEMM's mapped operands right before or after it,
 * saving a kernel launch, a queue hand-off and often a pass over memory.
 * Each computes what its kernel computes (cl/elementwise.cl,
 * cl/layer_norm.cl) within DESIGN.md's tolerance, each row on one thread
 * and in a fixed order, so the same input gives the same bits on every run
 * and on any number of threads; the
 * x86-64 AVX2 and the portable paths give the same bits too (neither
 * uses fma). No OpenCL here. */
#ifndef M2PT_OPS_HOST_MATH_H
#define M2PT_OPS_HOST_MATH_H

#include <stddef.h>

#include "host_pool.h"

/* y[r][c] = residual[r][c] + bias[c] over rows × cols; either of residual
 * and bias may be NULL (left out; both NULL: zeros). y is not residual. */
void m2pt_host_rows_init(float *y, const float *residual, const float *bias, size_t rows,
                         size_t cols);

/* y = GELU(y + bias[c]) in place over rows × cols (bias may be NULL): the
 * exact (erf) form, erf through a rational approximation (within 1.4e-6
 * of the exact GELU over [−8, 8], 2.5e-7 relative), or with tanh_form the
 * tanh form (M2PT_GELU_ERF and M2PT_GELU_TANH of m2pt/ops.h). */
void m2pt_host_gelu(float *y, const float *bias, int tanh_form, size_t rows, size_t cols);

/* y = LayerNorm(x) over rows of dim with weight and bias (bias may be
 * NULL): PyTorch's biased variance, two passes (mean, then the mean of the
 * squared deviations). y may be x. The rows are shared out among pool's
 * workers (NULL: the caller's thread alone; under 2^19 elements too, where
 * waking the workers costs more than they save). */
void m2pt_host_layer_norm(m2pt_host_pool *pool, const float *x, const float *weight,
                          const float *bias, float eps, size_t rows, size_t dim, float *y);

#endif
