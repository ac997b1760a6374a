/* Philox-4x32-10 on the device, for tests (cl/dropout.cl). */
#ifndef M2PT_OPS_DROPOUT_OPS_H
#define M2PT_OPS_DROPOUT_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/cl.h"
#include "m2pt/context.h"

/* Writes `blocks` Philox-4x32-10 outputs into out (4·blocks uint32): block g
 * from counter (ctr[0] + g, ctr[1], ctr[2], ctr[3]) and key. Enqueued on
 * ctx's queue. Errors: M2PT_ERR_OPENCL, M2PT_ERR_KERNEL_BUILD. */
m2pt_status m2pt_op_philox_blocks(m2pt_context *ctx, const uint32_t ctr[4],
                                  const uint32_t key[2], size_t blocks, cl_mem out);

#endif
