/* Host addresses for device buffers (host_map.h). */
#include "host_map.h"

#include "context_impl.h"
#include "error.h"
#include "svm.h"

void m2pt_host_map_add(m2pt_host_map *m, cl_mem buffer, size_t offset, size_t elems,
                       cl_map_flags flags)
{
  for (size_t i = 0; i < m->count; i++) {
    m2pt_host_range *r = &m->range[i];
    if (r->buffer == buffer) {
      if (offset < r->begin)
        r->begin = offset;
      if (offset + elems > r->end)
        r->end = offset + elems;
      r->flags |= flags;
      return;
    }
  }
  m->range[m->count++] = (m2pt_host_range){buffer, offset, offset + elems, flags, NULL, 0};
}

float *m2pt_host_map_at(const m2pt_host_map *m, cl_mem buffer, size_t offset)
{
  for (size_t i = 0; i < m->count; i++)
    if (m->range[i].buffer == buffer)
      return m->range[i].host + (offset - m->range[i].begin);
  return NULL;
}

/* Maps all but the last without waiting: the queue runs in order, so once
 * the last is mapped they all are, and so are SVM buffers' writers; with
 * nothing to map, one clFinish waits for them. */
m2pt_status m2pt_host_map_all(m2pt_context *ctx, m2pt_host_map *m)
{
  size_t last = m->count;
  for (size_t i = 0; i < m->count; i++) {
    m2pt_host_range *r = &m->range[i];
    r->host = m2pt_svm_host(ctx, r->buffer);
    if (r->host)
      r->host += r->begin;
    else
      last = i;
  }
  if (last == m->count)
    M2PT_TRY_CL(ctx, clFinish(ctx->queue), "clFinish (before host work on device buffers)");
  for (size_t i = 0; i < m->count; i++) {
    m2pt_host_range *r = &m->range[i];
    if (r->host)
      continue;
    cl_int err = CL_SUCCESS;
    r->host = clEnqueueMapBuffer(ctx->queue, r->buffer, i == last ? CL_TRUE : CL_FALSE,
                                 r->flags, r->begin * sizeof(float),
                                 (r->end - r->begin) * sizeof(float), 0, NULL, NULL, &err);
    if (err != CL_SUCCESS)
      return m2pt_fail_cl(ctx, err, "mapping a device buffer for the host");
    r->mapped = 1;
  }
  return M2PT_OK;
}

m2pt_status m2pt_host_map_release(m2pt_context *ctx, m2pt_host_map *m, m2pt_status s)
{
  for (size_t i = 0; i < m->count; i++) {
    m2pt_host_range *r = &m->range[i];
    if (!r->mapped)
      continue;
    const cl_int err = clEnqueueUnmapMemObject(ctx->queue, r->buffer, r->host, 0, NULL, NULL);
    if (err != CL_SUCCESS && s == M2PT_OK)
      s = m2pt_fail_cl(ctx, err, "unmapping a device buffer");
    r->mapped = 0;
  }
  return s;
}
