#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "context_impl.h"
#include "error.h"
#include "m2pt/opencl.h"

m2pt_status m2pt_tensor_create(m2pt_context *ctx, size_t ndim, const size_t *shape,
                               m2pt_tensor **out)
{
  M2PT_REQUIRE(NULL, ctx != NULL, "m2pt_tensor_create: ctx is NULL");
  M2PT_REQUIRE(ctx, out != NULL, "m2pt_tensor_create: out is NULL");
  *out = NULL;
  M2PT_REQUIRE(ctx, shape != NULL, "m2pt_tensor_create: shape is NULL");
  M2PT_REQUIRE(ctx, ndim >= 1 && ndim <= M2PT_MAX_DIMS,
               "m2pt_tensor_create: %zu dimensions (1 to %d allowed)", ndim, M2PT_MAX_DIMS);
  size_t numel = 1, bytes = 0;
  for (size_t i = 0; i < ndim; i++) {
    M2PT_REQUIRE(ctx, shape[i] != 0, "m2pt_tensor_create: dimension %zu is zero", i);
    M2PT_REQUIRE(ctx, m2pt_mul_size(numel, shape[i], &numel),
                 "m2pt_tensor_create: element count overflows at dimension %zu", i);
  }
  M2PT_REQUIRE(ctx, m2pt_mul_size(numel, sizeof(float), &bytes),
               "m2pt_tensor_create: %zu elements overflow the byte size", numel);
  m2pt_tensor *t = calloc(1, sizeof *t);
  if (!t)
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for a tensor");
  const m2pt_status status = m2pt_buffer_create(ctx, bytes, 1, &t->buffer);
  if (status != M2PT_OK) {
    free(t);
    return status;
  }
  t->ctx = ctx;
  t->ndim = ndim;
  memcpy(t->shape, shape, ndim * sizeof *shape);
  t->numel = numel;
  *out = t;
  return M2PT_OK;
}

void m2pt_tensor_destroy(m2pt_tensor *t)
{
  if (!t)
    return;
  m2pt_buffer_release(t->ctx, t->buffer, t->numel * sizeof(float));
  free(t);
}

static m2pt_status check_copy(const m2pt_tensor *t, const void *host, size_t count,
                              const char *fn)
{
  M2PT_REQUIRE(NULL, t != NULL, "%s: tensor is NULL", fn);
  M2PT_REQUIRE(t->ctx, host != NULL, "%s: host pointer is NULL", fn);
  if (count != t->numel) {
    char shape[96];
    return m2pt_fail(t->ctx, M2PT_ERR_SHAPE, "%s: %zu floats given for a tensor %s of %zu", fn,
                     count, m2pt_shape_string(t, shape, sizeof shape), t->numel);
  }
  return M2PT_OK;
}

m2pt_status m2pt_tensor_write(m2pt_tensor *t, const float *src, size_t count)
{
  M2PT_TRY(check_copy(t, src, count, "m2pt_tensor_write"));
  M2PT_TRY_CL(t->ctx,
              clEnqueueWriteBuffer(t->ctx->queue, t->buffer, CL_TRUE, 0, count * sizeof(float),
                                   src, 0, NULL, NULL),
              "m2pt_tensor_write: clEnqueueWriteBuffer");
  return M2PT_OK;
}

m2pt_status m2pt_tensor_read(const m2pt_tensor *t, float *dst, size_t count)
{
  M2PT_TRY(check_copy(t, dst, count, "m2pt_tensor_read"));
  M2PT_TRY_CL(t->ctx,
              clEnqueueReadBuffer(t->ctx->queue, t->buffer, CL_TRUE, 0, count * sizeof(float),
                                  dst, 0, NULL, NULL),
              "m2pt_tensor_read: clEnqueueReadBuffer");
  return M2PT_OK;
}

size_t m2pt_tensor_ndim(const m2pt_tensor *t)
{
  return t ? t->ndim : 0;
}

size_t m2pt_tensor_dim(const m2pt_tensor *t, size_t axis)
{
  return t && axis < t->ndim ? t->shape[axis] : 0;
}

size_t m2pt_tensor_numel(const m2pt_tensor *t)
{
  return t ? t->numel : 0;
}

m2pt_context *m2pt_tensor_context(const m2pt_tensor *t)
{
  return t ? t->ctx : NULL;
}

cl_mem m2pt_tensor_buffer(const m2pt_tensor *t)
{
  return t ? t->buffer : NULL;
}

m2pt_status m2pt_check_tensor(const m2pt_context *ctx, const m2pt_tensor *t, const char *name)
{
  if (!t)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_ARGUMENT, "%s is NULL", name);
  if (t->ctx != ctx)
    return m2pt_fail(ctx, M2PT_ERR_CONTEXT_MISMATCH, "%s belongs to another context", name);
  return M2PT_OK;
}

const char *m2pt_shape_string(const m2pt_tensor *t, char *buf, size_t size)
{
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < t->ndim && used < size; i++) {
    const int n = snprintf(buf + used, size - used, "[%zu]", t->shape[i]);
    if (n < 0)
      break;
    used += (size_t)n;
  }
  return buf;
}
