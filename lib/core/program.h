/* JIT compilation of embedded OpenCL C with two caches: programs in memory,
 * keyed by (source, options), and program binaries on disk (binary_cache.h). */
#ifndef M2PT_CORE_PROGRAM_H
#define M2PT_CORE_PROGRAM_H

#include "cl.h"
#include "m2pt/context.h"
#include "m2pt_cl_sources.h"

/* The built program of `source` with `options` (-D specialisations) for ctx's
 * device: from memory, else from the disk cache, else compiled (and then
 * stored). The context owns the program; m2pt_kernel_get may replace one
 * loaded from the disk cache, so do not keep it across calls. A build failure
 * is M2PT_ERR_KERNEL_BUILD with the build log in the message. */
m2pt_status m2pt_program_get(m2pt_context *ctx, const m2pt_cl_source *source,
                             const char *options, cl_program *out);

/* A kernel of that program, created once and owned by the context. Kernels
 * are shared, so set every argument before each enqueue. When a program from
 * the disk cache lacks the kernel, the program is rebuilt from source (its
 * earlier kernels released) and its entry rewritten before the kernel is
 * reported missing (M2PT_ERR_KERNEL_BUILD). */
m2pt_status m2pt_kernel_get(m2pt_context *ctx, const m2pt_cl_source *source,
                            const char *options, const char *name, cl_kernel *out);

/* The most work-items a group of that kernel may have on ctx's device
 * (CL_KERNEL_WORK_GROUP_SIZE: at most the device's limit, lower where the
 * kernel's resources say so). Errors as m2pt_kernel_get, or M2PT_ERR_OPENCL. */
m2pt_status m2pt_kernel_group_limit(m2pt_context *ctx, const m2pt_cl_source *source,
                                    const char *options, const char *name, size_t *limit);

/* One kernel argument: its size and a pointer to its value. */
typedef struct m2pt_kernel_arg {
  size_t size;
  const void *value;
} m2pt_kernel_arg;
#define M2PT_ARG(v) ((m2pt_kernel_arg){sizeof(v), &(v)})

/* Gets kernel `name` of (source, options), sets its `nargs` arguments and
 * enqueues it over `global` (`local` may be NULL: the driver picks). */
m2pt_status m2pt_run_kernel(m2pt_context *ctx, const m2pt_cl_source *source,
                            const char *options, const char *name,
                            const m2pt_kernel_arg *args, size_t nargs, cl_uint dims,
                            const size_t *global, const size_t *local);

/* Releases every cached program and kernel of ctx. */
void m2pt_program_cache_clear(m2pt_context *ctx);

#endif
