/* Fine-grained SVM buffers (svm.h). */
#define CL_TARGET_OPENCL_VERSION 200
#include "svm.h"

#include <stdlib.h>
#include <string.h>

#include "context_impl.h"
#include "error.h"

static int fine_grained(cl_device_id device)
{
  char version[256] = "";
  if (clGetDeviceInfo(device, CL_DEVICE_VERSION, sizeof version - 1, version, NULL) !=
      CL_SUCCESS)
    return 0;
  /* "OpenCL <major>.<minor> ...": 1.x devices do not know the query. */
  if (strncmp(version, "OpenCL ", 7) != 0 || version[7] < '2' || version[8] != '.')
    return 0;
  cl_device_svm_capabilities caps = 0;
  if (clGetDeviceInfo(device, CL_DEVICE_SVM_CAPABILITIES, sizeof caps, &caps, NULL) !=
      CL_SUCCESS)
    return 0;
  return (caps & CL_DEVICE_SVM_FINE_GRAIN_BUFFER) != 0;
}

int m2pt_svm_offered(cl_context cl)
{
  cl_device_id devices[16];
  size_t bytes = 0;
  /* More devices than that: not worth the allocation, say no. */
  if (clGetContextInfo(cl, CL_CONTEXT_DEVICES, 0, NULL, &bytes) != CL_SUCCESS || bytes == 0 ||
      bytes > sizeof devices ||
      clGetContextInfo(cl, CL_CONTEXT_DEVICES, bytes, devices, NULL) != CL_SUCCESS)
    return 0;
  for (size_t i = 0; i < bytes / sizeof *devices; i++)
    if (!fine_grained(devices[i]))
      return 0;
  return 1;
}

/* What the buffer's destructor frees. */
typedef struct svm_block {
  cl_context context;
  void *host;
} svm_block;

/* Called by the implementation once the buffer is gone and every command
 * using it has completed. */
static void CL_CALLBACK free_block(cl_mem buffer, void *user)
{
  svm_block *block = user;
  clSVMFree(block->context, block->host);
  free(block);
}

m2pt_status m2pt_svm_buffer_create(m2pt_context *ctx, size_t bytes, cl_mem *out)
{
  *out = NULL;
  svm_block *block = malloc(sizeof *block);
  if (!block)
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "no host memory for an SVM buffer's record");
  block->context = ctx->cl;
  block->host = clSVMAlloc(ctx->cl, CL_MEM_READ_WRITE | CL_MEM_SVM_FINE_GRAIN_BUFFER, bytes, 0);
  if (!block->host) {
    free(block);
    return m2pt_fail(ctx, M2PT_ERR_DEVICE_OUT_OF_MEMORY,
                     "clSVMAlloc of %zu bytes (fine-grained) failed", bytes);
  }
  cl_int err = CL_SUCCESS;
  /* A buffer on an SVM pointer uses that memory as its storage (OpenCL 2.0,
   * clCreateBuffer's CL_MEM_USE_HOST_PTR). */
  cl_mem buffer =
      clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, bytes, block->host, &err);
  if (err != CL_SUCCESS) {
    clSVMFree(ctx->cl, block->host);
    free(block);
    return m2pt_fail_cl(ctx, err, "clCreateBuffer on an SVM allocation");
  }
  err = clSetMemObjectDestructorCallback(buffer, free_block, block);
  if (err != CL_SUCCESS) {
    clReleaseMemObject(buffer);
    clSVMFree(ctx->cl, block->host);
    free(block);
    return m2pt_fail_cl(ctx, err, "clSetMemObjectDestructorCallback");
  }
  *out = buffer;
  return M2PT_OK;
}

float *m2pt_svm_host(const m2pt_context *ctx, cl_mem buffer)
{
  cl_bool svm = CL_FALSE;
  void *host = NULL;
  if (!ctx->svm_offered ||
      clGetMemObjectInfo(buffer, CL_MEM_USES_SVM_POINTER, sizeof svm, &svm, NULL) != CL_SUCCESS ||
      !svm || clGetMemObjectInfo(buffer, CL_MEM_HOST_PTR, sizeof host, &host, NULL) != CL_SUCCESS)
    return NULL;
  return host;
}
