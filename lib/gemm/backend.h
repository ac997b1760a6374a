/* CLBlast glue: the one place that calls CLBlast and names its statuses. */
#ifndef M2PT_OPS_BLAS_H
#define M2PT_OPS_BLAS_H

#include <stddef.h>

#include "core/cl.h"
#include "m2pt/gemm.h"

/* A matrix operand as CLBlast sees it: buffer, element offset, leading
 * dimension and the element distance between consecutive batch members. */
typedef struct m2pt_blas_matrix {
  cl_mem buffer;
  size_t offset;
  size_t ld;
  size_t stride;
} m2pt_blas_matrix;

/* Row-major strided-batched SGEMM, arguments already validated. batch == 1
 * uses plain SGEMM. A CLBlast failure is M2PT_ERR_BLAS (or the fitting
 * memory status) with CLBlast's status name in the message. */
m2pt_status m2pt_blas_sgemm(m2pt_context *ctx, m2pt_transpose ta, m2pt_transpose tb,
                            size_t m, size_t n, size_t k, float alpha,
                            const m2pt_blas_matrix *a, const m2pt_blas_matrix *b, float beta,
                            const m2pt_blas_matrix *c, size_t batch);

/* "CLBlastInvalidLeadDimA" etc. */
const char *m2pt_clblast_status_name(int status);

#endif
