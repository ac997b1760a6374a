/* Fine-grained SVM buffers (svm.h). */
#define CL_TARGET_OPENCL_VERSION 200
#include "svm.h"

#include <pthread.h>
#include <stdint.h>
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

/* The buffers m2pt_svm_buffer_create made that still exist, sorted by
 * handle, each with its host address: what m2pt_svm_host answers from
 * instead of asking CL_MEM_USES_SVM_POINTER, which PoCL 3.1 answers by
 * walking a list of every SVM allocation of the context (161 for a merged
 * ViT-B/16), on caches the GEMMs have just flushed: asked for each operand
 * of each host GEMM, ~2 ms of the 176 ms B = 1 forward, on the thread that
 * starts the next GEMM (README, Performance). A buffer leaves in its
 * destructor callback, before its handle can name another object; the
 * callback may run on any thread, hence the lock (its own: the callback
 * runs inside clReleaseMemObject, which callers may make while holding
 * m2pt's process lock). */
typedef struct svm_entry {
  cl_mem buffer;
  void *host;
} svm_entry;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static svm_entry *registry;
static size_t registry_count, registry_capacity;

/* Where buffer is, or would go, in the registry (under the lock). */
static size_t registry_find(cl_mem buffer)
{
  size_t lo = 0, hi = registry_count;
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if ((uintptr_t)registry[mid].buffer < (uintptr_t)buffer)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static int registry_add(cl_mem buffer, void *host)
{
  pthread_mutex_lock(&registry_lock);
  int ok = 1;
  if (registry_count == registry_capacity) {
    const size_t capacity = registry_capacity ? 2 * registry_capacity : 64;
    svm_entry *grown = realloc(registry, capacity * sizeof *grown);
    if (grown) {
      registry = grown;
      registry_capacity = capacity;
    }
    else {
      ok = 0;
    }
  }
  if (ok) {
    const size_t at = registry_find(buffer);
    memmove(registry + at + 1, registry + at, (registry_count - at) * sizeof *registry);
    registry[at] = (svm_entry){buffer, host};
    registry_count++;
  }
  pthread_mutex_unlock(&registry_lock);
  return ok;
}

static void registry_remove(cl_mem buffer)
{
  pthread_mutex_lock(&registry_lock);
  const size_t at = registry_find(buffer);
  if (at < registry_count && registry[at].buffer == buffer) {
    registry_count--;
    memmove(registry + at, registry + at + 1, (registry_count - at) * sizeof *registry);
  }
  if (registry_count == 0) {
    free(registry);
    registry = NULL;
    registry_capacity = 0;
  }
  pthread_mutex_unlock(&registry_lock);
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
  registry_remove(buffer);
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
  if (!registry_add(buffer, block->host)) {
    clReleaseMemObject(buffer); /* the callback frees the allocation */
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "no host memory to record an SVM buffer");
  }
  *out = buffer;
  return M2PT_OK;
}

float *m2pt_svm_host(const m2pt_context *ctx, cl_mem buffer)
{
  if (!ctx->svm_offered)
    return NULL;
  pthread_mutex_lock(&registry_lock);
  const size_t at = registry_find(buffer);
  void *host = at < registry_count && registry[at].buffer == buffer ? registry[at].host : NULL;
  pthread_mutex_unlock(&registry_lock);
  return host;
}
