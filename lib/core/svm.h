/* Device buffers that the host reads and writes in place: OpenCL 2.0's
 * fine-grained SVM, wrapped as ordinary cl_mem buffers. On CPU devices whose
 * GEMMs run on the host (quirks.h: host_svm), a host GEMM then touches its
 * operands after one wait for the queue, where mapping them took a map and
 * an unmap command per operand, each handed to the device's threads: on
 * PoCL 3.1 about 0.15 ms of a ViT-B layer's 14.5 at B = 1 (README,
 * Performance). The only file that uses OpenCL 2.0's API; it is called
 * only for devices that report fine-grained SVM buffers. */
#ifndef M2PT_CORE_SVM_H
#define M2PT_CORE_SVM_H

#include <stddef.h>

#include "cl.h"
#include "m2pt/context.h"

/* Whether the device, whose CL_DEVICE_VERSION is `version`, offers
 * fine-grained SVM buffers (0 for OpenCL 1.x). */
int m2pt_svm_fine_grained(cl_device_id device, const char *version);

/* Creates a read-write buffer of `bytes` on a fine-grained SVM allocation,
 * which is freed when the buffer is (clReleaseMemObject: the last reference,
 * whoever holds it). M2PT_ERR_DEVICE_OUT_OF_MEMORY when the allocation
 * fails, M2PT_ERR_OPENCL otherwise; nothing is left allocated then. */
m2pt_status m2pt_svm_buffer_create(m2pt_context *ctx, size_t bytes, cl_mem *out);

/* The host address of a buffer on an SVM pointer (m2pt makes them only with
 * m2pt_svm_buffer_create), to use while no command that uses the buffer is
 * running; NULL for any other buffer (those need mapping). */
float *m2pt_svm_host(cl_mem buffer);

#endif
