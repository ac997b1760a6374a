/* The public calls that make and describe contexts as the library hands
 * them out: core's context (core/context.c) completed by the GEMM layer's
 * hooks (chooser.c). They live here, above core, so that core never calls
 * up into the layers that use it. */
#include "backend.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "m2pt/opencl.h"

m2pt_status m2pt_context_create(const m2pt_context_options *options, m2pt_context **out)
{
  return m2pt_context_create_with(options, &m2pt_gemm_hooks, out);
}

m2pt_status m2pt_context_wrap(cl_context context, cl_device_id device, cl_command_queue queue,
                              const m2pt_context_options *options, m2pt_context **out)
{
  return m2pt_context_wrap_with(context, device, queue, options, &m2pt_gemm_hooks, out);
}

const char *m2pt_context_gemm_backend(const m2pt_context *ctx)
{
  if (!ctx || !ctx->gemm)
    return NULL;
  return ctx->gemm->backend->label;
}

m2pt_status m2pt_context_tuning(const m2pt_context *ctx, m2pt_tuning_source *source,
                                const char **detail)
{
  M2PT_REQUIRE(ctx, ctx && source, "m2pt_context_tuning: NULL argument");
  M2PT_REQUIRE(ctx, ctx->gemm != NULL, "m2pt_context_tuning: the context has no GEMM backend");
  *source = ctx->gemm->tuning_source;
  if (detail)
    *detail = ctx->gemm->tuning_detail;
  return M2PT_OK;
}
