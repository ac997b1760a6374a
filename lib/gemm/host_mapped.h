/* What the host backends (host_onednn.c, host_openblas.c) share: their
 * GEMMs run on the device's buffers mapped into host memory
 * (host_mapped.c), each through its own m2pt_gemm_backend.host_sgemm. */
#ifndef M2PT_GEMM_HOST_MAPPED_H
#define M2PT_GEMM_HOST_MAPPED_H

#include "backend.h"

/* m2pt_gemm_backend.sgemm and .sgemm_batched of a host backend: maps the
 * operands, runs ctx's backend's host_sgemm on them, unmaps. A GEMM whose
 * sizes, leading dimensions or strides exceed an int goes to CLBlast. */
m2pt_status m2pt_gemm_mapped_sgemm(m2pt_context *ctx, m2pt_transpose ta, m2pt_transpose tb,
                                   size_t m, size_t n, size_t k, float alpha,
                                   const m2pt_gemm_matrix *a, const m2pt_gemm_matrix *b,
                                   float beta, const m2pt_gemm_matrix *c);
m2pt_status m2pt_gemm_mapped_sgemm_batched(m2pt_context *ctx, m2pt_transpose ta,
                                          m2pt_transpose tb, size_t m, size_t n, size_t k,
                                          float alpha, const m2pt_gemm_matrix *a,
                                          const m2pt_gemm_matrix *b, float beta,
                                          const m2pt_gemm_matrix *c, size_t batch);

/* m2pt_gemm_backend.attach of a host backend: no CLBlast tuning, said in g
 * with g->backend's label. */
void m2pt_gemm_mapped_attach(m2pt_context *ctx, struct m2pt_gemm_context *g,
                             const char *cache_dir);

#endif
