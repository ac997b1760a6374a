/* The host backend on OpenBLAS's cblas_sgemm: where oneDNN is missing
 * (host_onednn.c), or forced with M2PT_QUIRKS=gemm=host_blas. */
#include "common/host_math.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "host_mapped.h"

#ifdef M2PT_HAVE_OPENBLAS
#  include <cblas.h>

/* The epilogue around cblas_sgemm (one matrix, alpha 1, beta 0): without GELU, C is
 * laid with residual + bias first and the product added onto it (beta 1);
 * with GELU, the bias goes in with it after the product, then the
 * residual. */
static m2pt_status run(m2pt_context *ctx, const m2pt_host_gemm *g)
{
  const m2pt_host_epilogue *e = &g->epilogue;
  float beta = g->beta; /* 0 with an epilogue */
  if (!e->gelu && (e->bias || e->residual)) {
    for (size_t i = 0; i < g->m; i++)
      m2pt_host_rows_init(g->c + i * g->ldc, e->residual ? e->residual + i * g->ldc : NULL,
                          e->bias, 1, g->n);
    beta = 1.0f;
  }
  for (size_t i = 0; i < g->batch; i++)
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                g->trans_b ? CblasTrans : CblasNoTrans, (int)g->m, (int)g->n, (int)g->k, g->alpha,
                g->a + i * g->stride_a, (int)g->lda, g->b + i * g->stride_b, (int)g->ldb, beta,
                g->c + i * g->stride_c, (int)g->ldc);
  for (size_t i = 0; e->gelu && i < g->m; i++) {
    float *row = g->c + i * g->ldc;
    m2pt_host_gelu(row, e->bias, e->gelu_tanh, 1, g->n);
    for (size_t j = 0; e->residual && j < g->n; j++)
      row[j] += e->residual[i * g->ldc + j];
  }
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
