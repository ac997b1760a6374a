/* The insides of contexts and tensors, shared by core, ops and nn. */
#ifndef M2PT_CORE_CONTEXT_IMPL_H
#define M2PT_CORE_CONTEXT_IMPL_H

#include <stddef.h>

#include "cl.h"
#include "m2pt/context.h"
#include "size_math.h"
#include "workspace.h"
#include "m2pt/tensor.h"

/* Room for a message with a kernel build log or a device list. */
#define M2PT_ERROR_CAPACITY 16384

/* Room for m2pt_context_tuning's detail (a path and a reason). */
#define M2PT_TUNING_DETAIL 1024

/* Profiling events kept before they are summed up (m2pt_enqueue_kernel). */
#define M2PT_MAX_PENDING_EVENTS 256

struct m2pt_program_entry; /* program.c */

struct m2pt_context {
  cl_platform_id platform;
  cl_device_id device;
  cl_context cl;
  cl_command_queue queue;
  unsigned flags;              /* M2PT_CONTEXT_* */
  size_t max_work_group;       /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
  /* The device is Oclgrind 21.10's simulator (the oclgrind test setup),
   * whose checkers need two work-arounds:
   * - it does not count clEnqueueFillBuffer as initialising memory, and it
   *   recycles the ids of released buffers with their old shadow memory, so
   *   kernel stores past the old size stay "uninitialised": both give false
   *   reports on every later read, so m2pt_fill writes from the host;
   * - its uninitialised-value checker crashes on private arrays of vectors,
   *   so the fused attention kernel runs its scalar instantiation (VEC 1). */
  int oclgrind;

  /* GEMMs go to the host BLAS on mapped buffers (ops/host_blas.c): a CPU
   * device, a build with one, not Oclgrind, not M2PT_CONTEXT_CLBLAST and
   * not $M2PT_HOST_BLAS=off. */
  int host_blas;
  int counted;                 /* included in the live-context count */
  m2pt_device_info info;
  char *error;                 /* M2PT_ERROR_CAPACITY bytes */
  m2pt_stats stats;

  /* Program caches (program.c, binary_cache.c). */
  struct m2pt_program_entry *programs;
  char *cache_dir;             /* NULL: no on-disk binary cache */
  char base_build_options[128];

  /* Scratch buffers reused across calls (workspace.h). */
  cl_mem workspace[M2PT_WS_SLOTS];
  size_t workspace_bytes[M2PT_WS_SLOTS];

  /* Events of our own kernels while profiling (m2pt_context_kernel_time),
   * and the device time of those already collected. */
  cl_event *events;            /* M2PT_MAX_PENDING_EVENTS slots */
  size_t event_count;
  double profiled_ns;

  /* The CLBlast GEMM tuning applied at creation (tuning.c). */
  m2pt_tuning_source tuning_source;
  char tuning_detail[M2PT_TUNING_DETAIL];
};

struct m2pt_tensor {
  m2pt_context *ctx;
  cl_mem buffer;
  size_t ndim;
  size_t shape[M2PT_MAX_DIMS];
  size_t numel;
};

/* Checks that a tensor argument is non-NULL and belongs to ctx. */
m2pt_status m2pt_check_tensor(const m2pt_context *ctx, const m2pt_tensor *t,
                              const char *name);

/* Formats a tensor's shape as "[2][3]" into buf (for messages). */
const char *m2pt_shape_string(const m2pt_tensor *t, char *buf, size_t size);

#endif
