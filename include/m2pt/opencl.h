/* Interoperability with applications that own their OpenCL objects.
 * Not included by m2pt.h, so that plain users need no OpenCL headers. */
#ifndef M2PT_OPENCL_H
#define M2PT_OPENCL_H

#ifndef CL_TARGET_OPENCL_VERSION
#  define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "context.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates an m2pt context on the application's OpenCL context, device and
 * in-order command queue. m2pt retains them while the m2pt context lives and
 * releases only its own references: the application keeps ownership.
 * `options` may be NULL; its `device` field is ignored. The queue must belong
 * to `context` and `device`; profiling (M2PT_CONTEXT_PROFILING) needs a queue
 * created with CL_QUEUE_PROFILING_ENABLE.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, or the objects do not belong
 * together), M2PT_ERR_OPENCL, M2PT_ERR_OUT_OF_MEMORY. */
M2PT_API m2pt_status m2pt_context_wrap(cl_context context, cl_device_id device,
                                       cl_command_queue queue,
                                       const m2pt_context_options *options,
                                       m2pt_context **ctx);

/* The tensor's OpenCL buffer (owned by the tensor; do not release it). */
M2PT_API cl_mem m2pt_tensor_buffer(const m2pt_tensor *t);

#ifdef __cplusplus
}
#endif

#endif
