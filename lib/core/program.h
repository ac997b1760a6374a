/* JIT compilation of embedded OpenCL C with two caches: programs in memory,
 * keyed by (source, options), and program binaries on disk (binary_cache.h). */
#ifndef M2PT_CORE_PROGRAM_H
#define M2PT_CORE_PROGRAM_H

#include "cl.h"
#include "m2pt/context.h"
#include "m2pt_cl_sources.h"

/* The built program of `source` with `options` (-D specialisations) for ctx's
 * device: from memory, else from the disk cache, else compiled (and then
 * stored). The context owns the program. A build failure is
 * M2PT_ERR_KERNEL_BUILD with the build log in the message. */
m2pt_status m2pt_program_get(m2pt_context *ctx, const m2pt_cl_source *source,
                             const char *options, cl_program *out);

/* A kernel of that program, created once and owned by the context. Kernels
 * are shared, so set every argument before each enqueue. */
m2pt_status m2pt_kernel_get(m2pt_context *ctx, const m2pt_cl_source *source,
                            const char *options, const char *name, cl_kernel *out);

/* Releases every cached program and kernel of ctx. */
void m2pt_program_cache_clear(m2pt_context *ctx);

#endif
