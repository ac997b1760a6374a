/* Enqueueing m2pt's kernels: launch geometry and, on profiling contexts, the
 * events that time them. */
#include "queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context_impl.h"
#include "error.h"

_Static_assert(M2PT_KERNEL_TALLIES <= 256, "a tally's index fits event_tally's unsigned char");

/* The tally slot of kernel `name`, added where it is new; the last slot,
 * "(other)", once the others are taken. */
static unsigned char tally_of(m2pt_context *ctx, const char *name)
{
  for (size_t i = 0; i < ctx->tally_count; i++)
    if (strncmp(ctx->tallies[i].name, name, M2PT_KERNEL_NAME_MAX - 1) == 0)
      return (unsigned char)i;
  if (ctx->tally_count == M2PT_KERNEL_TALLIES)
    return M2PT_KERNEL_TALLIES - 1;
  const size_t i = ctx->tally_count++;
  m2pt_kernel_tally *t = &ctx->tallies[i];
  snprintf(t->name, sizeof t->name, "%s", i + 1 < M2PT_KERNEL_TALLIES ? name : "(other)");
  t->ns = 0.0;
  t->launches = 0;
  return (unsigned char)i;
}

/* Adds the device time of the kept events to ctx->profiled_ns and their
 * kernels' tallies, waiting for them, and releases them. */
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
    if (err == CL_SUCCESS && end > start) {
      ctx->profiled_ns += (double)(end - start);
      ctx->tallies[ctx->event_tally[i]].ns += (double)(end - start);
    }
    ctx->tallies[ctx->event_tally[i]].launches++;
    clReleaseEvent(ctx->events[i]);
  }
  ctx->event_count = 0;
  if (err != CL_SUCCESS)
    return m2pt_fail_cl(ctx, err, "collecting profiling events");
  return M2PT_OK;
}

/* Both readers below need a profiling context. */
static m2pt_status check_profiling(m2pt_context *ctx, const char *fn)
{
  if (!(ctx->flags & M2PT_CONTEXT_PROFILING))
    return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE,
                     "%s: the context was created without M2PT_CONTEXT_PROFILING", fn);
  return M2PT_OK;
}

/* Restarts the count both readers share. */
static void restart_count(m2pt_context *ctx)
{
  ctx->profiled_ns = 0.0;
  ctx->tally_count = 0;
}

m2pt_status m2pt_context_kernel_time(m2pt_context *ctx, double *ms)
{
  M2PT_REQUIRE(NULL, ctx != NULL, "m2pt_context_kernel_time: ctx is NULL");
  M2PT_REQUIRE(ctx, ms != NULL, "m2pt_context_kernel_time: ms is NULL");
  M2PT_TRY(check_profiling(ctx, "m2pt_context_kernel_time"));
  M2PT_TRY_CL(ctx, clFinish(ctx->queue), "clFinish");
  const m2pt_status status = collect_events(ctx);
  *ms = ctx->profiled_ns * 1e-6;
  restart_count(ctx);
  return status;
}

static int longer_first(const void *a, const void *b)
{
  const double x = ((const m2pt_kernel_tally *)a)->ns, y = ((const m2pt_kernel_tally *)b)->ns;
  return x > y ? -1 : x < y;
}

m2pt_status m2pt_context_kernel_times(m2pt_context *ctx, m2pt_kernel_time *out,
                                      size_t capacity, size_t *count)
{
  static const char fn[] = "m2pt_context_kernel_times";
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  M2PT_REQUIRE(ctx, count != NULL, "%s: count is NULL", fn);
  M2PT_REQUIRE(ctx, out != NULL || capacity == 0, "%s: out is NULL, capacity %zu", fn,
               capacity);
  M2PT_TRY(check_profiling(ctx, fn));
  M2PT_TRY_CL(ctx, clFinish(ctx->queue), "clFinish");
  const m2pt_status status = collect_events(ctx);
  if (ctx->tally_count) /* tallies is NULL until the first kernel */
    qsort(ctx->tallies, ctx->tally_count, sizeof *ctx->tallies, longer_first);
  for (size_t i = 0; i < ctx->tally_count && i < capacity; i++) {
    const m2pt_kernel_tally *t = &ctx->tallies[i];
    memcpy(out[i].name, t->name, sizeof out[i].name);
    out[i].ms = t->ns * 1e-6;
    out[i].launches = t->launches;
  }
  *count = ctx->tally_count;
  restart_count(ctx);
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
    ctx->event_tally = malloc(M2PT_MAX_PENDING_EVENTS * sizeof *ctx->event_tally);
    ctx->tallies = malloc(M2PT_KERNEL_TALLIES * sizeof *ctx->tallies);
    if (!ctx->events || !ctx->event_tally || !ctx->tallies) {
      free(ctx->events);
      free(ctx->event_tally);
      free(ctx->tallies);
      ctx->events = NULL;
      ctx->event_tally = NULL;
      ctx->tallies = NULL;
      return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for profiling events");
    }
  }
  cl_event event = NULL;
  const cl_int err = clEnqueueNDRangeKernel(ctx->queue, kernel, dims, NULL, global, local, 0,
                                            NULL, profiling ? &event : NULL);
  if (err != CL_SUCCESS)
    return m2pt_fail_cl(ctx, err, what);
  if (profiling) {
    ctx->event_tally[ctx->event_count] = tally_of(ctx, what);
    ctx->events[ctx->event_count++] = event;
  }
  return M2PT_OK;
}

size_t m2pt_row_work_group(const m2pt_context *ctx, size_t cols)
{
  size_t wg = 1;
  while (wg < 256 && wg < cols && wg * 2 <= ctx->max_work_group)
    wg *= 2;
  return wg;
}
