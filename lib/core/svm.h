/* Device buffers that the host reads and writes in place: OpenCL 2.0's
 * fine-grained SVM, wrapped as ordinary cl_mem buffers. On CPU devices whose
 * GEMMs run on the host (quirks.h: host_svm), a host GEMM then touches its
 * operands after one wait for the queue, where mapping them took a map and
 * an unmap command per operand, each handed to the device's threads: on
 * PoCL 3.1 about 0.15 ms of a ViT-B layer's 14.5 at B = 1 (README,
 * Performance). The only file that uses OpenCL 2.0's API; it queries and
 * allocates only where the context's devices report fine-grained SVM
 * buffers (linking needs an OpenCL 2.0 ICD loader, as ocl-icd is). */
#ifndef M2PT_CORE_SVM_H
#define M2PT_CORE_SVM_H

#include <stddef.h>

#include "cl.h"
#include "m2pt/context.h"

/* Whether every device of the OpenCL context offers fine-grained SVM
 * buffers (clSVMAlloc's fine-grained buffers need all of them to; 0 where
 * one is OpenCL 1.x, which does not know the query). */
int m2pt_svm_offered(cl_context cl);

/* Creates a read-write buffer of `bytes` on a fine-grained SVM allocation,
 * which is freed when the buffer is (clReleaseMemObject: the last reference,
 * whoever holds it). M2PT_ERR_DEVICE_OUT_OF_MEMORY when the allocation
 * fails, M2PT_ERR_OUT_OF_MEMORY without host memory for its record,
 * M2PT_ERR_OPENCL otherwise; nothing is left allocated then. */
m2pt_status m2pt_svm_buffer_create(m2pt_context *ctx, size_t bytes, cl_mem *out);

/* The host address of a buffer m2pt_svm_buffer_create made, to use while
 * no command that uses the buffer is running; NULL for any other buffer
 * (those need mapping, an application's own SVM-backed ones too), for a
 * handle whose buffer is gone, and where ctx's context offers no SVM
 * buffers. No OpenCL call: a look-up in m2pt's record of the buffers it
 * made that still exist (thread-safe). */
float *m2pt_svm_host(const m2pt_context *ctx, cl_mem buffer);

#endif
