/* Enqueueing m2pt's own kernels on a context's queue. */
#ifndef M2PT_CORE_QUEUE_H
#define M2PT_CORE_QUEUE_H

#include <stddef.h>

#include "cl.h"
#include "m2pt/context.h"

/* Enqueues an m2pt kernel and keeps its event while profiling. `local` may
 * be NULL (the driver picks). `what` names the kernel in error messages. */
m2pt_status m2pt_enqueue_kernel(m2pt_context *ctx, cl_kernel kernel, cl_uint dims,
                                const size_t *global, const size_t *local, const char *what);

/* Work-group size for kernels that reduce a row of `cols` elements: a power
 * of two, at most 256 and the device's limit, no larger than cols needs. It
 * depends on cols alone wherever the device allows 256, so reductions sum in
 * the same order on every such device. */
size_t m2pt_row_work_group(const m2pt_context *ctx, size_t cols);

#endif
