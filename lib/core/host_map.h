/* Device buffers given host addresses for host code that works on them in
 * place (a GEMM on the host, gemm/host_mapped.c; the host attention,
 * ops/attention.c): an SVM buffer's own address (svm.h), else a map (no
 * copy on CPU devices). Ranges of one buffer are merged into one mapping. */
#ifndef M2PT_CORE_HOST_MAP_H
#define M2PT_CORE_HOST_MAP_H

#include <stddef.h>

#include "cl.h"
#include "m2pt/context.h"

/* Buffers one m2pt_host_map holds: a host GEMM's three operands, bias,
 * residual and its host work's extra buffers (gemm/backend.h). */
#define M2PT_HOST_MAP_MOST 12

typedef struct m2pt_host_range {
  cl_mem buffer;
  size_t begin, end; /* elements */
  cl_map_flags flags;
  float *host; /* element `begin`'s address once mapped */
  int mapped;  /* by clEnqueueMapBuffer: to unmap */
} m2pt_host_range;

/* Zero-initialised: empty. */
typedef struct m2pt_host_map {
  m2pt_host_range range[M2PT_HOST_MAP_MOST];
  size_t count;
} m2pt_host_map;

/* Adds elements [offset, offset + elems) of buffer, for flags (CL_MAP_READ
 * and/or CL_MAP_WRITE), to the ranges to map. At most M2PT_HOST_MAP_MOST
 * distinct buffers (callers size their use by it). */
void m2pt_host_map_add(m2pt_host_map *m, cl_mem buffer, size_t offset, size_t elems,
                       cl_map_flags flags);

/* Gives every range its host address, after everything enqueued before has
 * run (blocking). A failure is reported; ranges mapped by then are left to
 * m2pt_host_map_release. */
m2pt_status m2pt_host_map_all(m2pt_context *ctx, m2pt_host_map *m);

/* The host address of element `offset` of buffer, once mapped (NULL where
 * buffer was not added). */
float *m2pt_host_map_at(const m2pt_host_map *m, cl_mem buffer, size_t offset);

/* Unmaps what was mapped; returns s, or the first unmap's failure (reported)
 * where s is M2PT_OK. */
m2pt_status m2pt_host_map_release(m2pt_context *ctx, m2pt_host_map *m, m2pt_status s);

#endif
