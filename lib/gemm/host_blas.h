/* GEMM through the host's BLAS (OpenBLAS) on mapped buffers, for CPU
 * devices (see host_blas.c for why). */
#ifndef M2PT_OPS_HOST_BLAS_H
#define M2PT_OPS_HOST_BLAS_H

#include "backend.h"

/* 1 when m2pt was built with a host BLAS. */
int m2pt_host_blas_available(void);

/* m2pt_blas_sgemm's contract, computed by cblas_sgemm on the mapped
 * operands (blocking: the queue is drained first). Sizes and leading
 * dimensions must fit an int (m2pt_blas_sgemm checks). */
m2pt_status m2pt_host_sgemm(m2pt_context *ctx, m2pt_transpose ta, m2pt_transpose tb, size_t m,
                            size_t n, size_t k, float alpha, const m2pt_blas_matrix *a,
                            const m2pt_blas_matrix *b, float beta, const m2pt_blas_matrix *c,
                            size_t batch);

#endif
