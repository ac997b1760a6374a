/* The CLBlast backend: GEMMs through CLBlast's routines, with the tuning
 * m2pt applies to the device at context creation (tuning_apply.c), and
 * CLBlast's program cache cleared when the last context goes. */
#include "clblast.h"

#include "core/context_impl.h" /* before clblast_c.h: fixes the OpenCL API level */
#include <clblast_c.h>

#include "backend.h"
#include "clblast_lock.h"
#include "core/error.h"
#include "tuning.h"

const char *m2pt_clblast_status_name(int status)
{
  switch ((CLBlastStatusCode)status) {
#define NAME(e) case e: return #e
  NAME(CLBlastSuccess);
  NAME(CLBlastOpenCLCompilerNotAvailable);
  NAME(CLBlastTempBufferAllocFailure);
  NAME(CLBlastOpenCLOutOfResources);
  NAME(CLBlastOpenCLOutOfHostMemory);
  NAME(CLBlastOpenCLBuildProgramFailure);
  NAME(CLBlastInvalidValue);
  NAME(CLBlastInvalidCommandQueue);
  NAME(CLBlastInvalidMemObject);
  NAME(CLBlastInvalidBinary);
  NAME(CLBlastInvalidBuildOptions);
  NAME(CLBlastInvalidProgram);
  NAME(CLBlastInvalidProgramExecutable);
  NAME(CLBlastInvalidKernelName);
  NAME(CLBlastInvalidKernelDefinition);
  NAME(CLBlastInvalidKernel);
  NAME(CLBlastInvalidArgIndex);
  NAME(CLBlastInvalidArgValue);
  NAME(CLBlastInvalidArgSize);
  NAME(CLBlastInvalidKernelArgs);
  NAME(CLBlastInvalidLocalNumDimensions);
  NAME(CLBlastInvalidLocalThreadsTotal);
  NAME(CLBlastInvalidLocalThreadsDim);
  NAME(CLBlastInvalidGlobalOffset);
  NAME(CLBlastInvalidEventWaitList);
  NAME(CLBlastInvalidEvent);
  NAME(CLBlastInvalidOperation);
  NAME(CLBlastInvalidBufferSize);
  NAME(CLBlastInvalidGlobalWorkSize);
  NAME(CLBlastNotImplemented);
  NAME(CLBlastInvalidMatrixA);
  NAME(CLBlastInvalidMatrixB);
  NAME(CLBlastInvalidMatrixC);
  NAME(CLBlastInvalidVectorX);
  NAME(CLBlastInvalidVectorY);
  NAME(CLBlastInvalidDimension);
  NAME(CLBlastInvalidLeadDimA);
  NAME(CLBlastInvalidLeadDimB);
  NAME(CLBlastInvalidLeadDimC);
  NAME(CLBlastInvalidIncrementX);
  NAME(CLBlastInvalidIncrementY);
  NAME(CLBlastInsufficientMemoryA);
  NAME(CLBlastInsufficientMemoryB);
  NAME(CLBlastInsufficientMemoryC);
  NAME(CLBlastInsufficientMemoryX);
  NAME(CLBlastInsufficientMemoryY);
  NAME(CLBlastInsufficientMemoryTemp);
  NAME(CLBlastInvalidBatchCount);
  NAME(CLBlastInvalidOverrideKernel);
  NAME(CLBlastMissingOverrideParameter);
  NAME(CLBlastInvalidLocalMemUsage);
  NAME(CLBlastNoHalfPrecision);
  NAME(CLBlastNoDoublePrecision);
  NAME(CLBlastInvalidVectorScalar);
  NAME(CLBlastInsufficientMemoryScalar);
  NAME(CLBlastDatabaseError);
  NAME(CLBlastUnknownError);
  NAME(CLBlastUnexpectedError);
#undef NAME
  }
  return "CLBlastUnknownStatus";
}

static CLBlastTranspose to_clblast(m2pt_transpose t)
{
  return t == M2PT_TRANS ? CLBlastTransposeYes : CLBlastTransposeNo;
}

m2pt_status m2pt_clblast_sgemm(m2pt_context *ctx, m2pt_transpose ta, m2pt_transpose tb,
                               size_t m, size_t n, size_t k, float alpha,
                               const m2pt_gemm_matrix *a, const m2pt_gemm_matrix *b, float beta,
                               const m2pt_gemm_matrix *c, size_t batch)
{
  CLBlastStatusCode s;
  /* Other contexts' threads may be in CLBlast too (clblast_lock.h). One hold
   * covers the size query and the call that relies on it: an override in
   * between (another context's creation) could change the tiles and so the
   * size. */
  const int token = m2pt_clblast_begin();
  if (batch == 1) {
    /* CLBlast's indirect GEMM pads and transposes its operands into a
     * temporary buffer it allocates per call unless given one: hand it the
     * workspace (CLBlastSGemmTempBufferSize says how much, 0 for the direct
     * kernels). */
    size_t temp_bytes = 0;
    cl_mem temp = NULL;
    s = CLBlastSGemmTempBufferSize(CLBlastLayoutRowMajor, to_clblast(ta), to_clblast(tb), m, n,
                                   k, a->offset, a->ld, b->offset, b->ld, c->offset, c->ld,
                                   &ctx->queue, &temp_bytes);
    if (s == CLBlastSuccess && temp_bytes > 0) {
      const m2pt_status ws = m2pt_workspace_get(ctx, M2PT_WS_BLAS, temp_bytes, &temp);
      if (ws != M2PT_OK) {
        m2pt_clblast_end(token, 1);
        return ws;
      }
    }
    if (s == CLBlastSuccess && temp)
      s = CLBlastSgemmWithTempBuffer(CLBlastLayoutRowMajor, to_clblast(ta), to_clblast(tb), m, n,
                                     k, alpha, a->buffer, a->offset, a->ld, b->buffer, b->offset,
                                     b->ld, beta, c->buffer, c->offset, c->ld, &ctx->queue, NULL,
                                     temp);
    else if (s == CLBlastSuccess)
      s = CLBlastSgemm(CLBlastLayoutRowMajor, to_clblast(ta), to_clblast(tb), m, n, k, alpha,
                       a->buffer, a->offset, a->ld, b->buffer, b->offset, b->ld, beta, c->buffer,
                       c->offset, c->ld, &ctx->queue, NULL);
  } else
    s = CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, to_clblast(ta), to_clblast(tb), m, n,
                                   k, alpha, a->buffer, a->offset, a->ld, a->stride, b->buffer,
                                   b->offset, b->ld, b->stride, beta, c->buffer, c->offset,
                                   c->ld, c->stride, batch, &ctx->queue, NULL);
  m2pt_clblast_end(token, s == CLBlastSuccess);
  if (s == CLBlastSuccess)
    return M2PT_OK;
  m2pt_status status = M2PT_ERR_BLAS;
  if (s == CLBlastTempBufferAllocFailure || s == CLBlastOpenCLOutOfResources)
    status = M2PT_ERR_DEVICE_OUT_OF_MEMORY;
  else if (s == CLBlastOpenCLOutOfHostMemory)
    status = M2PT_ERR_OUT_OF_MEMORY;
  return m2pt_fail(ctx, status, "CLBlast SGEMM (m=%zu n=%zu k=%zu batch=%zu) failed: %s (%d)",
                   m, n, k, batch, m2pt_clblast_status_name(s), (int)s);
}

static m2pt_status sgemm(m2pt_context *ctx, m2pt_transpose ta, m2pt_transpose tb, size_t m,
                         size_t n, size_t k, float alpha, const m2pt_gemm_matrix *a,
                         const m2pt_gemm_matrix *b, float beta, const m2pt_gemm_matrix *c)
{
  return m2pt_clblast_sgemm(ctx, ta, tb, m, n, k, alpha, a, b, beta, c, 1);
}

static const char *unavailable(void)
{
  return NULL; /* m2pt does not build without CLBlast */
}

/* CLBlast runs anywhere OpenCL does: the fallback, last in the chooser's
 * order. */
static int preferred(const m2pt_context *ctx)
{
  return 1;
}

static void attach(m2pt_context *ctx, struct m2pt_gemm_context *g, const char *cache_dir)
{
  m2pt_clblast_prime(ctx->device);
  m2pt_tuning_context_init(ctx, cache_dir, g);
}

const m2pt_gemm_backend m2pt_gemm_clblast = {
    .name = "clblast",
    .label = "CLBlast",
    .unavailable = unavailable,
    .preferred = preferred,
    .attach = attach,
    .detach = NULL,
    .teardown = m2pt_clblast_release_programs,
    .sgemm = sgemm,
    .sgemm_batched = m2pt_clblast_sgemm,
};
