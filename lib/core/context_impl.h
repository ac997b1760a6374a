/* The insides of contexts and tensors, shared by core, ops and nn. */
#ifndef M2PT_CORE_CONTEXT_IMPL_H
#define M2PT_CORE_CONTEXT_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "cl.h"
#include "common/error.h"
#include "m2pt/context.h"
#include "quirks.h"
#include "common/size_math.h"
#include "workspace.h"
#include "m2pt/tensor.h"

/* Profiling events kept before they are summed up (m2pt_enqueue_kernel). */
#define M2PT_MAX_PENDING_EVENTS 256
/* Kernel names told apart by m2pt_context_kernel_times; launches of
 * further names are counted under the last slot. */
#define M2PT_KERNEL_TALLIES M2PT_KERNEL_TIMES_MAX

/* One kernel name's device time since the counts were last read. */
typedef struct m2pt_kernel_tally {
  char name[M2PT_KERNEL_NAME_MAX];
  double ns;
  size_t launches;
} m2pt_kernel_tally;

struct m2pt_program_entry; /* program.c */
struct m2pt_context_hooks;  /* context_hooks.h */
struct m2pt_gemm_context;   /* lib/gemm, opaque here */

struct m2pt_context {
  cl_platform_id platform;
  cl_device_id device;
  cl_context cl;
  cl_command_queue queue;
  unsigned flags;              /* M2PT_CONTEXT_* */
  size_t max_work_group;       /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
  /* What this device needs done differently (quirks.h), filled at creation. */
  m2pt_quirks quirks;
  /* Every device of ctx->cl offers fine-grained SVM buffers (core/svm.h):
   * what host_svm may be set to, and whether buffers are worth asking. */
  int svm_offered;
  /* The layer above that completed the context (context_hooks.h), NULL for
   * a bare core context or until it attached; and its GEMM state, which
   * core never looks into (lib/gemm/backend.h). */
  const struct m2pt_context_hooks *hooks;
  struct m2pt_gemm_context *gemm;
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
  /* Counts block training forwards: the block whose number is the latest
   * owns the M2PT_WS_TRAIN_* slots. */
  uint64_t train_serial;

  /* Events of our own kernels while profiling (m2pt_context_kernel_time),
   * each with its kernel's tally, and the device time of those already
   * collected, in all and per kernel name. */
  cl_event *events;            /* M2PT_MAX_PENDING_EVENTS slots */
  unsigned char *event_tally;  /* M2PT_MAX_PENDING_EVENTS slots */
  size_t event_count;
  double profiled_ns;
  m2pt_kernel_tally *tallies;  /* M2PT_KERNEL_TALLIES slots */
  size_t tally_count;

  /* The host paths' workers (common/host_pool.h): NULL until
   * m2pt_context_host_pool makes them, and after m2pt_context_trim. */
  struct m2pt_host_pool *host_pool;
};

struct m2pt_tensor {
  m2pt_context *ctx;
  cl_mem buffer;
  size_t ndim;
  size_t shape[M2PT_MAX_DIMS];
  size_t numel;
};

/* ctx's pool of host workers, one per compute unit of its device (a CPU
 * device: its cores), made on the first call: on the process's OpenMP
 * team where libgomp is loaded (oneDNN's GEMMs run there), else threads of
 * its own; NULL where neither can be, and the caller then works alone. */
struct m2pt_host_pool *m2pt_context_host_pool(m2pt_context *ctx);

/* Checks that a tensor argument is non-NULL and belongs to ctx. */
m2pt_status m2pt_check_tensor(const m2pt_context *ctx, const m2pt_tensor *t,
                              const char *name);

/* Formats a tensor's shape as "[2][3]" into buf (for messages). */
const char *m2pt_shape_string(const m2pt_tensor *t, char *buf, size_t size);

#endif
