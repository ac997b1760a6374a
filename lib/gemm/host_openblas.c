/* The host backend on OpenBLAS's cblas_sgemm: where oneDNN is missing
 * (host_onednn.c), or forced with M2PT_QUIRKS=gemm=host_blas. */
#include "core/context_impl.h"
#include "core/error.h"
#include "host_mapped.h"

#ifdef M2PT_HAVE_OPENBLAS
#  include <cblas.h>

static m2pt_status run(m2pt_context *ctx, const m2pt_host_gemm *g)
{
  for (size_t i = 0; i < g->batch; i++)
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                g->trans_b ? CblasTrans : CblasNoTrans, (int)g->m, (int)g->n, (int)g->k, g->alpha,
                g->a + i * g->stride_a, (int)g->lda, g->b + i * g->stride_b, (int)g->ldb, g->beta,
                g->c + i * g->stride_c, (int)g->ldc);
  return M2PT_OK;
}
#  define RUN run
#else
#  define RUN NULL
#endif

static const char *unavailable(void)
{
#ifdef M2PT_HAVE_OPENBLAS
  return NULL;
#else
  return "m2pt was built without OpenBLAS";
#endif
}

static int preferred(const m2pt_context *ctx)
{
  return !unavailable() && ctx->quirks.gemm_on_host;
}

const m2pt_gemm_backend m2pt_gemm_host_blas = {
    .name = "host_blas",
    .label = "OpenBLAS",
    .unavailable = unavailable,
    .preferred = preferred,
    .attach = m2pt_gemm_mapped_attach,
    .detach = NULL,
    .teardown = NULL,
    .sgemm = m2pt_gemm_mapped_sgemm,
    .sgemm_batched = m2pt_gemm_mapped_sgemm_batched,
    .host_sgemm = RUN,
};
