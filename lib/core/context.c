#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context_impl.h"
#include "device.h"
#include "error.h"
#include "global.h"
#include "options.h"
#include "m2pt/m2pt.h"
#include "m2pt/opencl.h"
#include "ops/host_blas.h"
#include "program.h"
#include "tuning.h"

/* Live contexts in the process, under the process lock (global.h). CLBlast
 * keeps its compiled programs in a process-wide cache that is otherwise
 * released by a static destructor at exit, after our OpenCL contexts are
 * gone; oclgrind (and drivers unloaded before CLBlast) crash there. So the
 * last context to go clears it; the count and the clearing happen under one
 * lock, so a context created meanwhile either counts (no clearing) or comes
 * after it. CLBlastClearCache drops programs and binaries only: parameters
 * given with CLBlastOverrideParameters (the tuning, tuning.c) live on in
 * CLBlast's database cache; each context applies its tuning again anyway. */
static unsigned long live_contexts;

unsigned m2pt_version_number(void)
{
  return M2PT_VERSION_NUMBER;
}

const char *m2pt_version_string(void)
{
  return M2PT_VERSION_STRING;
}

/* Whether the disk binary cache pays off on this platform when the caller
 * left it to us. PoCL keeps its own kernel cache (~/.cache/pocl) and asking
 * it for CL_PROGRAM_BINARIES can compile again (pyopencl #731); see the
 * README's measurements for the choice made here. */
/* Measured on PoCL 3.1 (README, "Program caches"). */
#define M2PT_POCL_BINARY_CACHE_DEFAULT 1

static int binary_cache_default(const m2pt_device_info *info)
{
  if (strstr(info->platform_name, "Portable Computing Language"))
    return M2PT_POCL_BINARY_CACHE_DEFAULT;
  return 1;
}

static char *dup_string(const char *s)
{
  char *d = malloc(strlen(s) + 1);
  if (d)
    strcpy(d, s);
  return d;
}

char *m2pt_cache_dir_resolve(const char *option)
{
  const char *dir = option ? option : getenv("M2PT_CACHE_DIR");
  if (dir && dir[0])
    return strcmp(dir, "off") == 0 ? NULL : dup_string(dir);
  char buf[4096];
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (xdg && xdg[0])
    snprintf(buf, sizeof buf, "%s/m2pt", xdg);
  else if (home && home[0])
    snprintf(buf, sizeof buf, "%s/.cache/m2pt", home);
  else
    return NULL;
  return dup_string(buf);
}

/* Whether program binaries are cached on disk for these options. */
static int binary_cache_wanted(const m2pt_context_options *opts, const m2pt_device_info *info)
{
  const m2pt_binary_cache mode = opts ? opts->binary_cache : M2PT_BINARY_CACHE_AUTO;
  return mode == M2PT_BINARY_CACHE_ON ||
         (mode == M2PT_BINARY_CACHE_AUTO && binary_cache_default(info));
}

static void set_base_build_options(m2pt_context *ctx)
{
  char *opt = ctx->base_build_options;
  const size_t cap = sizeof ctx->base_build_options;
  opt[0] = '\0';
  /* OpenCL C 1.2 is what our kernels are written in; 1.0/1.1 devices build
   * them with their own default. */
  if (strncmp(ctx->info.opencl_c_version, "OpenCL C 1.0", 12) != 0 &&
      strncmp(ctx->info.opencl_c_version, "OpenCL C 1.1", 12) != 0)
    strncat(opt, "-cl-std=CL1.2", cap - strlen(opt) - 1);
  /* Vendors differ in divide/sqrt accuracy unless asked for correct rounding,
   * which is only allowed where the device reports it. */
  cl_device_fp_config fp = 0;
  clGetDeviceInfo(ctx->device, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL);
  if (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT)
    strncat(opt, " -cl-fp32-correctly-rounded-divide-sqrt", cap - strlen(opt) - 1);
}

/* Everything common to created and wrapped contexts, once the OpenCL handles
 * are retained by ctx. Frees ctx on failure. */
static m2pt_status finish_setup(m2pt_context *ctx, const m2pt_context_options *options,
                                m2pt_context **out)
{
  ctx->flags = options ? options->flags : 0;
  ctx->error = calloc(1, M2PT_ERROR_CAPACITY);
  if (!ctx->error) {
    m2pt_context_destroy(ctx);
    return m2pt_fail(NULL, M2PT_ERR_OUT_OF_MEMORY, "out of host memory creating a context");
  }
  set_base_build_options(ctx);
  ctx->oclgrind = strstr(ctx->info.platform_name, "Oclgrind") != NULL;
  const char *host_blas = getenv("M2PT_HOST_BLAS");
  ctx->host_blas = m2pt_host_blas_available() && ctx->info.is_cpu && !ctx->oclgrind &&
                   !(ctx->flags & M2PT_CONTEXT_CLBLAST) &&
                   !(host_blas && strcmp(host_blas, "off") == 0);
  ctx->max_work_group = 1;
  clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof ctx->max_work_group,
                  &ctx->max_work_group, NULL);
  /* The tuning store lives in the cache directory whether or not program
   * binaries are cached there. */
  char *dir = m2pt_cache_dir_resolve(options ? options->cache_dir : NULL);
  if (!ctx->host_blas)
    m2pt_clblast_prime(ctx->device);
  m2pt_tuning_context_init(ctx, dir);
  if (binary_cache_wanted(options, &ctx->info))
    ctx->cache_dir = dir;
  else
    free(dir);
  m2pt_process_lock();
  live_contexts++;
  m2pt_process_unlock();
  ctx->counted = 1;
  *out = ctx;
  return M2PT_OK;
}

/* The caller's options (NULL: the defaults) into *o, rejecting values the
 * header does not define. */
static m2pt_status read_options(const m2pt_context_options *options, const char *fn,
                                m2pt_context_options *o)
{
  *o = m2pt_context_options_default();
  M2PT_TRY(m2pt_options_read(NULL, o, sizeof *o, options, "m2pt_context_options", fn));
  M2PT_REQUIRE(NULL,
               o->binary_cache == M2PT_BINARY_CACHE_AUTO || o->binary_cache == M2PT_BINARY_CACHE_ON ||
                   o->binary_cache == M2PT_BINARY_CACHE_OFF,
               "%s: unknown binary_cache value %d", fn, (int)o->binary_cache);
  const unsigned known = M2PT_CONTEXT_PROFILING | M2PT_CONTEXT_CLBLAST;
  M2PT_REQUIRE(NULL, (o->flags & ~known) == 0, "%s: unknown flags 0x%x", fn, o->flags & ~known);
  return M2PT_OK;
}

m2pt_status m2pt_context_create(const m2pt_context_options *options, m2pt_context **out)
{
  M2PT_REQUIRE(NULL, out != NULL, "m2pt_context_create: ctx is NULL");
  *out = NULL;
  m2pt_context_options o;
  M2PT_TRY(read_options(options, "m2pt_context_create", &o));
  options = &o;
  m2pt_context *ctx = calloc(1, sizeof *ctx);
  if (!ctx)
    return m2pt_fail(NULL, M2PT_ERR_OUT_OF_MEMORY, "out of host memory creating a context");
  m2pt_status status = m2pt_device_resolve(options ? options->device : NULL, &ctx->platform,
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
  return finish_setup(ctx, options, out);
}

m2pt_status m2pt_context_wrap(cl_context context, cl_device_id device, cl_command_queue queue,
                              const m2pt_context_options *options, m2pt_context **out)
{
  M2PT_REQUIRE(NULL, out != NULL, "m2pt_context_wrap: ctx is NULL");
  *out = NULL;
  M2PT_REQUIRE(NULL, context && device && queue,
               "m2pt_context_wrap: context, device and queue must all be given");
  m2pt_context_options o;
  M2PT_TRY(read_options(options, "m2pt_context_wrap", &o));
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
  return finish_setup(ctx, options, out);
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
  m2pt_workspace_release(ctx);
  m2pt_program_cache_clear(ctx);
  if (ctx->queue)
    clReleaseCommandQueue(ctx->queue);
  if (ctx->cl)
    clReleaseContext(ctx->cl);
  free(ctx->cache_dir);
  free(ctx->error);
  if (ctx->counted) {
    m2pt_process_lock();
    if (--live_contexts == 0)
      m2pt_clblast_release_programs();
    m2pt_process_unlock();
  }
  free(ctx);
}

m2pt_status m2pt_context_device_info(const m2pt_context *ctx, m2pt_device_info *info)
{
  M2PT_REQUIRE(ctx, ctx && info, "m2pt_context_device_info: NULL argument");
  *info = ctx->info;
  return M2PT_OK;
}

m2pt_status m2pt_context_tuning(const m2pt_context *ctx, m2pt_tuning_source *source,
                                const char **detail)
{
  M2PT_REQUIRE(ctx, ctx && source, "m2pt_context_tuning: NULL argument");
  *source = ctx->tuning_source;
  if (detail)
    *detail = ctx->tuning_detail;
  return M2PT_OK;
}

const char *m2pt_context_gemm_backend(const m2pt_context *ctx)
{
  if (!ctx)
    return NULL;
  return ctx->host_blas ? "host BLAS" : "CLBlast";
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
  return M2PT_OK;
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

/* Fills from a host block of the value: see `oclgrind` in struct
 * m2pt_context. */
static m2pt_status fill_from_host(m2pt_context *ctx, cl_mem buffer, float value, size_t count)
{
  enum { BLOCK = 16384 };
  static _Thread_local float block[BLOCK];
  for (size_t i = 0; i < BLOCK; i++)
    block[i] = value;
  for (size_t done = 0; done < count; done += BLOCK) {
    const size_t n = count - done < BLOCK ? count - done : BLOCK;
    M2PT_TRY_CL(ctx,
                clEnqueueWriteBuffer(ctx->queue, buffer, CL_TRUE, done * sizeof(float),
                                     n * sizeof(float), block, 0, NULL, NULL),
                "clEnqueueWriteBuffer (filling a buffer)");
  }
  return M2PT_OK;
}

m2pt_status m2pt_fill(m2pt_context *ctx, cl_mem buffer, float value, size_t count)
{
  if (ctx->oclgrind)
    return fill_from_host(ctx, buffer, value, count);
  M2PT_TRY_CL(ctx,
              clEnqueueFillBuffer(ctx->queue, buffer, &value, sizeof value, 0,
                                  count * sizeof(float), 0, NULL, NULL),
              "clEnqueueFillBuffer");
  return M2PT_OK;
}

size_t m2pt_row_work_group(const m2pt_context *ctx, size_t cols)
{
  size_t wg = 1;
  while (wg < 256 && wg < cols && wg * 2 <= ctx->max_work_group)
    wg *= 2;
  return wg;
}

m2pt_status m2pt_buffer_create(m2pt_context *ctx, size_t bytes, int zero, cl_mem *out)
{
  *out = NULL;
  if (bytes == 0)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_ARGUMENT, "device buffer of zero bytes");
  if (ctx->info.max_alloc_bytes && bytes > ctx->info.max_alloc_bytes)
    return m2pt_fail(ctx, M2PT_ERR_DEVICE_OUT_OF_MEMORY,
                     "device buffer of %zu bytes exceeds the device's largest allocation "
                     "(CL_DEVICE_MAX_MEM_ALLOC_SIZE = %llu bytes)",
                     bytes, (unsigned long long)ctx->info.max_alloc_bytes);
  cl_int err = CL_SUCCESS;
  cl_mem buf = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
  if (err != CL_SUCCESS)
    return m2pt_fail_cl(ctx, err, "clCreateBuffer");
  /* On Oclgrind every new buffer is written from the host first: it reuses
   * released buffers' shadow memory, and kernel stores past the old size stay
   * "uninitialised" (see README, Design). */
  if (zero || ctx->oclgrind) {
    const m2pt_status status = m2pt_fill(ctx, buf, 0.0f, bytes / sizeof(float));
    if (status != M2PT_OK) {
      clReleaseMemObject(buf);
      return status;
    }
  }
  ctx->stats.device_allocations++;
  ctx->stats.device_bytes_allocated += bytes;
  ctx->stats.device_bytes_live += bytes;
  if (ctx->stats.device_bytes_live > ctx->stats.device_bytes_peak)
    ctx->stats.device_bytes_peak = ctx->stats.device_bytes_live;
  *out = buf;
  return M2PT_OK;
}

void m2pt_buffer_release(m2pt_context *ctx, cl_mem buffer, size_t bytes)
{
  if (!buffer)
    return;
  clReleaseMemObject(buffer);
  ctx->stats.device_bytes_live -= bytes;
}
