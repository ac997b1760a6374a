/* Creating contexts for a layer above core. Core sets up the device, queue,
 * quirks and caches; what the library adds on top (lib/gemm: the context's
 * GEMM backend and its tuning) comes in through these hooks, so that core
 * includes nothing from the layers that use it. The public
 * m2pt_context_create and m2pt_context_wrap (gemm/context_api.c) call the
 * functions below with the library's hooks; m2pt_context_destroy (core)
 * calls the context's release hook. */
#ifndef M2PT_CORE_CONTEXT_HOOKS_H
#define M2PT_CORE_CONTEXT_HOOKS_H

#include "cl.h"
#include "m2pt/context.h"

typedef struct m2pt_context_hooks {
  /* Completes a context once core has set it up (ctx->gemm is NULL before):
   * M2PT_OK, or a failure whose message is left in m2pt_last_error(NULL);
   * the context is then destroyed without `release`. `cache_dir` is the
   * resolved cache directory (NULL: none), whether or not program binaries
   * are cached there. */
  m2pt_status (*attach)(m2pt_context *ctx, const char *cache_dir);
  /* Undoes attach, last in m2pt_context_destroy (the context's OpenCL
   * objects are released by then). */
  void (*release)(m2pt_context *ctx);
} m2pt_context_hooks;

/* m2pt_context_create's work (see its contract), finishing with
 * hooks->attach; `hooks` NULL: a bare core context (no GEMM). */
m2pt_status m2pt_context_create_with(const m2pt_context_options *options,
                                     const m2pt_context_hooks *hooks, m2pt_context **out);

/* m2pt_context_wrap's work, likewise. */
m2pt_status m2pt_context_wrap_with(cl_context context, cl_device_id device,
                                   cl_command_queue queue, const m2pt_context_options *options,
                                   const m2pt_context_hooks *hooks, m2pt_context **out);

#endif
