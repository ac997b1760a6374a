/* Device buffers: creation with the context's accounting, release, fills. */
#include "buffer.h"

#include "context_impl.h"
#include "error.h"
#include "svm.h"

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
  cl_mem buf = NULL;
  if (ctx->quirks.host_svm) {
    M2PT_TRY(m2pt_svm_buffer_create(ctx, bytes, &buf));
  } else {
    cl_int err = CL_SUCCESS;
    buf = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS)
      return m2pt_fail_cl(ctx, err, "clCreateBuffer");
  }
  if (zero || ctx->quirks.host_writes_new_buffers) {
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

/* Fills from a host block of the value (quirks.h: fill_via_host). */
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
  if (ctx->quirks.fill_via_host)
    return fill_from_host(ctx, buffer, value, count);
  M2PT_TRY_CL(ctx,
              clEnqueueFillBuffer(ctx->queue, buffer, &value, sizeof value, 0,
                                  count * sizeof(float), 0, NULL, NULL),
              "clEnqueueFillBuffer");
  return M2PT_OK;
}
