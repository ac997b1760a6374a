/* Enqueueing m2pt's kernels: launch geometry and, on profiling contexts, the
 * events that time them. */
#include "queue.h"

#include <stdlib.h>

#include "context_impl.h"
#include "error.h"

/* Adds the device time of the kept events to ctx->profiled_ns, waiting for
 * them, and releases them. */
static m2pt_status collect_events(m2pt_context *ctx)
{
  cl_int err = ctx->event_count ? clWaitForEvents((cl_uint)ctx->event_count, ctx->events)
                                : CL_SUCCESS;
  for (size_t i = 0; i < ctx->event_count; i++) {
    cl_ulong start = 0, end = 0;
    if (err == CL_SUCCESS)
      err = clGetEventProfilingInfo(ctx->events[i], CL_PROFILING_COMMAND_START, sizeof start,
                                    &start, NULL);
    if (err == CL_SUCCESS)
      err = clGetEventProfilingInfo(ctx->events[i], CL_PROFILING_COMMAND_END, sizeof end, &end,
                                    NULL);
    if (err == CL_SUCCESS && end > start)
      ctx->profiled_ns += (double)(end - start);
    clReleaseEvent(ctx->events[i]);
  }
  ctx->event_count = 0;
  if (err != CL_SUCCESS)
    return m2pt_fail_cl(ctx, err, "collecting profiling events");
  return M2PT_OK;
}

m2pt_status m2pt_context_kernel_time(m2pt_context *ctx, double *ms)
{
  M2PT_REQUIRE(NULL, ctx != NULL, "m2pt_context_kernel_time: ctx is NULL");
  M2PT_REQUIRE(ctx, ms != NULL, "m2pt_context_kernel_time: ms is NULL");
  if (!(ctx->flags & M2PT_CONTEXT_PROFILING))
    return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE,
                     "m2pt_context_kernel_time: the context was created without "
                     "M2PT_CONTEXT_PROFILING");
  M2PT_TRY_CL(ctx, clFinish(ctx->queue), "clFinish");
  const m2pt_status status = collect_events(ctx);
  *ms = ctx->profiled_ns * 1e-6;
  ctx->profiled_ns = 0.0;
  return status;
}

m2pt_status m2pt_enqueue_kernel(m2pt_context *ctx, cl_kernel kernel, cl_uint dims,
                                const size_t *global, const size_t *local, const char *what)
{
  const int profiling = (ctx->flags & M2PT_CONTEXT_PROFILING) != 0;
  /* Bounded: past M2PT_MAX_PENDING_EVENTS the kept events are summed up and
   * released, so a profiling context that is never asked does not grow. */
  if (profiling && ctx->event_count == M2PT_MAX_PENDING_EVENTS)
    M2PT_TRY(collect_events(ctx));
  if (profiling && ctx->events == NULL) {
    ctx->events = malloc(M2PT_MAX_PENDING_EVENTS * sizeof *ctx->events);
    if (!ctx->events)
      return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for profiling events");
  }
  cl_event event = NULL;
  const cl_int err = clEnqueueNDRangeKernel(ctx->queue, kernel, dims, NULL, global, local, 0,
                                            NULL, profiling ? &event : NULL);
  if (err != CL_SUCCESS)
    return m2pt_fail_cl(ctx, err, what);
  if (profiling)
    ctx->events[ctx->event_count++] = event;
  return M2PT_OK;
}

size_t m2pt_row_work_group(const m2pt_context *ctx, size_t cols)
{
  size_t wg = 1;
  while (wg < 256 && wg < cols && wg * 2 <= ctx->max_work_group)
    wg *= 2;
  return wg;
}
