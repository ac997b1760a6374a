#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "common/host_pool.h"
#include "context_hooks.h"
#include "context_impl.h"
#include "context_options.h"
#include "device.h"
#include "error.h"
#include "m2pt/m2pt.h"
#include "m2pt/opencl.h"
#include "program.h"

unsigned m2pt_version_number(void)
{
  return M2PT_VERSION_NUMBER;
}

const char *m2pt_version_string(void)
{
  return M2PT_VERSION_STRING;
}

/* Everything common to created and wrapped contexts, once the OpenCL handles
 * are retained by ctx. Frees ctx on failure. */
static m2pt_status finish_setup(m2pt_context *ctx, const m2pt_context_options *options,
                                const m2pt_context_hooks *hooks, m2pt_context **out)
{
  ctx->flags = options->flags;
  ctx->error = calloc(1, M2PT_ERROR_CAPACITY);
  if (!ctx->error) {
    m2pt_context_destroy(ctx);
    return m2pt_fail(NULL, M2PT_ERR_OUT_OF_MEMORY, "out of host memory creating a context");
  }
  m2pt_status status = m2pt_quirks_init(ctx);
  if (status != M2PT_OK) {
    m2pt_context_destroy(ctx);
    return status;
  }
  m2pt_base_build_options_set(ctx);
  ctx->max_work_group = 1;
  clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof ctx->max_work_group,
                  &ctx->max_work_group, NULL);
  /* The tuning store lives in the cache directory whether or not program
   * binaries are cached there. */
  char *dir = m2pt_cache_dir_resolve(options->cache_dir);
  status = hooks ? hooks->attach(ctx, dir) : M2PT_OK;
  if (status != M2PT_OK) {
    free(dir);
    m2pt_context_destroy(ctx);
    return status;
  }
  ctx->hooks = hooks;
  if (m2pt_binary_cache_wanted(options, &ctx->quirks))
    ctx->cache_dir = dir;
  else
    free(dir);
  *out = ctx;
  return M2PT_OK;
}

m2pt_status m2pt_context_create_with(const m2pt_context_options *options,
                                     const m2pt_context_hooks *hooks, m2pt_context **out)
{
  M2PT_REQUIRE(NULL, out != NULL, "m2pt_context_create: ctx is NULL");
  *out = NULL;
  m2pt_context_options o;
  M2PT_TRY(m2pt_context_options_read(options, "m2pt_context_create", &o));
  options = &o;
  m2pt_context *ctx = calloc(1, sizeof *ctx);
  if (!ctx)
    return m2pt_fail(NULL, M2PT_ERR_OUT_OF_MEMORY, "out of host memory creating a context");
  m2pt_status status = m2pt_device_resolve(options->device, &ctx->platform,
                                           &ctx->device, &ctx->info);
  if (status != M2PT_OK) {
    free(ctx);
    return status;
  }
  const cl_context_properties props[] = {CL_CONTEXT_PLATFORM,
                                         (cl_context_properties)ctx->platform, 0};
  cl_int err = CL_SUCCESS;
  ctx->cl = clCreateContext(props, 1, &ctx->device, NULL, NULL, &err);
  if (err != CL_SUCCESS) {
    free(ctx);
    return m2pt_fail_cl(NULL, err, "clCreateContext");
  }
  const cl_command_queue_properties qprops =
      options && (options->flags & M2PT_CONTEXT_PROFILING) ? CL_QUEUE_PROFILING_ENABLE : 0;
  /* clCreateCommandQueue is deprecated in 2.0 but is the call every 1.2
   * driver has. */
  ctx->queue = clCreateCommandQueue(ctx->cl, ctx->device, qprops, &err);
  if (err != CL_SUCCESS) {
    clReleaseContext(ctx->cl);
    free(ctx);
    return m2pt_fail_cl(NULL, err, "clCreateCommandQueue");
  }
  return finish_setup(ctx, options, hooks, out);
}

m2pt_status m2pt_context_wrap_with(cl_context context, cl_device_id device,
                                   cl_command_queue queue, const m2pt_context_options *options,
                                   const m2pt_context_hooks *hooks, m2pt_context **out)
{
  M2PT_REQUIRE(NULL, out != NULL, "m2pt_context_wrap: ctx is NULL");
  *out = NULL;
  M2PT_REQUIRE(NULL, context && device && queue,
               "m2pt_context_wrap: context, device and queue must all be given");
  m2pt_context_options o;
  M2PT_TRY(m2pt_context_options_read(options, "m2pt_context_wrap", &o));
  options = &o;
  cl_context qctx = NULL;
  cl_device_id qdev = NULL;
  cl_platform_id platform = NULL;
  M2PT_TRY_CL(NULL, clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof qctx, &qctx, NULL),
              "clGetCommandQueueInfo(CL_QUEUE_CONTEXT)");
  M2PT_TRY_CL(NULL, clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof qdev, &qdev, NULL),
              "clGetCommandQueueInfo(CL_QUEUE_DEVICE)");
  M2PT_REQUIRE(NULL, qctx == context && qdev == device,
               "m2pt_context_wrap: the queue belongs to another context or device");
  M2PT_TRY_CL(NULL, clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL),
              "clGetDeviceInfo(CL_DEVICE_PLATFORM)");
  cl_command_queue_properties qprops = 0;
  M2PT_TRY_CL(NULL, clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof qprops, &qprops, NULL),
              "clGetCommandQueueInfo(CL_QUEUE_PROPERTIES)");
  M2PT_REQUIRE(NULL, !(qprops & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE),
               "m2pt_context_wrap: the queue must be in-order");
  M2PT_REQUIRE(NULL, !(options && (options->flags & M2PT_CONTEXT_PROFILING)) ||
                         (qprops & CL_QUEUE_PROFILING_ENABLE),
               "m2pt_context_wrap: M2PT_CONTEXT_PROFILING needs a queue created with "
               "CL_QUEUE_PROFILING_ENABLE");

  m2pt_context *ctx = calloc(1, sizeof *ctx);
  if (!ctx)
    return m2pt_fail(NULL, M2PT_ERR_OUT_OF_MEMORY, "out of host memory creating a context");
  ctx->platform = platform;
  ctx->device = device;
  ctx->cl = context;
  ctx->queue = queue;
  clRetainContext(context);
  clRetainCommandQueue(queue);
  m2pt_device_query(platform, device, 0, 0, &ctx->info);
  m2pt_device_locate(device, &ctx->info.platform_index, &ctx->info.device_index);
  return finish_setup(ctx, options, hooks, out);
}

void m2pt_context_destroy(m2pt_context *ctx)
{
  if (!ctx)
    return;
  if (ctx->queue)
    clFinish(ctx->queue);
  for (size_t i = 0; i < ctx->event_count; i++)
    clReleaseEvent(ctx->events[i]);
  free(ctx->events);
  free(ctx->event_tally);
  free(ctx->tallies);
  m2pt_workspace_release(ctx);
  m2pt_host_pool_destroy(ctx->host_pool);
  m2pt_program_cache_clear(ctx);
  if (ctx->queue)
    clReleaseCommandQueue(ctx->queue);
  if (ctx->cl)
    clReleaseContext(ctx->cl);
  free(ctx->cache_dir);
  free(ctx->error);
  if (ctx->hooks)
    ctx->hooks->release(ctx);
  free(ctx);
}

m2pt_status m2pt_context_device_info(const m2pt_context *ctx, m2pt_device_info *info)
{
  M2PT_REQUIRE(ctx, ctx && info, "m2pt_context_device_info: NULL argument");
  *info = ctx->info;
  return M2PT_OK;
}

m2pt_status m2pt_context_finish(m2pt_context *ctx)
{
  M2PT_REQUIRE(NULL, ctx != NULL, "m2pt_context_finish: ctx is NULL");
  M2PT_TRY_CL(ctx, clFinish(ctx->queue), "clFinish");
  return M2PT_OK;
}

m2pt_status m2pt_context_trim(m2pt_context *ctx)
{
  M2PT_REQUIRE(NULL, ctx != NULL, "m2pt_context_trim: ctx is NULL");
  M2PT_TRY_CL(ctx, clFinish(ctx->queue), "clFinish");
  m2pt_workspace_release(ctx);
  m2pt_host_pool_destroy(ctx->host_pool);
  ctx->host_pool = NULL;
  return M2PT_OK;
}

struct m2pt_host_pool *m2pt_context_host_pool(m2pt_context *ctx)
{
  const unsigned threads = ctx->info.compute_units ? ctx->info.compute_units : 1;
  /* oneDNN's OpenMP team where it has one (common/host_pool.h says why). */
  if (!ctx->host_pool)
    ctx->host_pool = m2pt_host_pool_create_openmp(threads);
  if (!ctx->host_pool)
    ctx->host_pool = m2pt_host_pool_create(threads);
  return ctx->host_pool;
}

m2pt_status m2pt_context_stats(const m2pt_context *ctx, m2pt_stats *stats)
{
  M2PT_REQUIRE(ctx, ctx && stats, "m2pt_context_stats: NULL argument");
  *stats = ctx->stats;
  return M2PT_OK;
}

void m2pt_context_stats_reset(m2pt_context *ctx)
{
  if (!ctx)
    return;
  const uint64_t live = ctx->stats.device_bytes_live;
  memset(&ctx->stats, 0, sizeof ctx->stats);
  ctx->stats.device_bytes_live = live;
  ctx->stats.device_bytes_peak = live;
}

