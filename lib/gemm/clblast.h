/* The CLBlast backend's own calls, for the other files of lib/gemm (the
 * backend itself is m2pt_gemm_clblast, through backend.h). */
#ifndef M2PT_GEMM_CLBLAST_H
#define M2PT_GEMM_CLBLAST_H

#include "backend.h"

/* Row-major strided-batched SGEMM through CLBlast (batch 1: plain SGEMM,
 * with the context's workspace as CLBlast's temporary buffer), holding
 * CLBlast's lock shared. A CLBlast failure is M2PT_ERR_BLAS (or the fitting
 * memory status) with CLBlast's status name in the message. Any context may
 * call it, whatever its backend (the host BLAS hands it GEMMs beyond its
 * int sizes). */
m2pt_status m2pt_clblast_sgemm(m2pt_context *ctx, m2pt_transpose ta, m2pt_transpose tb,
                               size_t m, size_t n, size_t k, float alpha,
                               const m2pt_gemm_matrix *a, const m2pt_gemm_matrix *b, float beta,
                               const m2pt_gemm_matrix *c, size_t batch);

/* "CLBlastInvalidLeadDimA" etc. */
const char *m2pt_clblast_status_name(int status);

#endif
