/* Which GEMM backend a context gets, and the calls through it.
 *
 * The list below is the whole registry, in order of preference: a context
 * takes the backend its quirks force (gemm= in $M2PT_QUIRKS), else CLBlast
 * with M2PT_CONTEXT_CLBLAST, else the first whose `preferred` says yes
 * (CLBlast, last, always does). A new backend is its own file defining
 * m2pt_gemm_<name> and one line here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "core/global.h"

#define M2PT_GEMM_BACKENDS(X) \
  X(onednn)                   \
  X(host_blas)                \
  X(clblast)

#define DECLARE(name) extern const m2pt_gemm_backend m2pt_gemm_##name;
M2PT_GEMM_BACKENDS(DECLARE)
#undef DECLARE

#define ENTRY(name) &m2pt_gemm_##name,
static const m2pt_gemm_backend *const backends[] = {M2PT_GEMM_BACKENDS(ENTRY)};
#undef ENTRY

#define BACKEND_COUNT (sizeof backends / sizeof backends[0])

/* Contexts attached in the process, under the process lock (core/global.h).
 * CLBlast keeps its compiled programs in a process-wide cache that is
 * otherwise released by a static destructor at exit, after our OpenCL
 * contexts are gone; oclgrind (and drivers unloaded before CLBlast) crash
 * there. So the last context to go tears the backends down; the count and
 * the teardown happen under one lock, so a context created meanwhile either
 * counts (no teardown) or comes after it. CLBlastClearCache drops programs
 * and binaries only: parameters given with CLBlastOverrideParameters (the
 * tuning) live on in CLBlast's database cache; each context applies its
 * tuning again anyway. */
static unsigned long live_contexts;

/* The backend named `name`, or a failure (message in m2pt_last_error(NULL)). */
static m2pt_status find(const char *name, const m2pt_gemm_backend **out)
{
  char names[128] = "";
  for (size_t i = 0; i < BACKEND_COUNT; i++) {
    if (strcmp(backends[i]->name, name) == 0) {
      const char *why = backends[i]->unavailable();
      if (why)
        return m2pt_fail(NULL, M2PT_ERR_UNSUPPORTED, "M2PT_QUIRKS gemm=%s: %s", name, why);
      *out = backends[i];
      return M2PT_OK;
    }
    snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
             backends[i]->name);
  }
  return m2pt_fail(NULL, M2PT_ERR_INVALID_ARGUMENT,
                   "M2PT_QUIRKS gemm=%s: no such GEMM backend (known: %s)", name, names);
}

/* ctx's backend, or a failure (message in m2pt_last_error(NULL)). */
static m2pt_status choose(const m2pt_context *ctx, const m2pt_gemm_backend **out)
{
  *out = NULL;
  /* A forced name is checked even where the application's flag outranks it,
   * so a typo in the environment never passes silently. */
  if (ctx->quirks.gemm[0])
    M2PT_TRY(find(ctx->quirks.gemm, out));
  if (ctx->flags & M2PT_CONTEXT_CLBLAST)
    *out = &m2pt_gemm_clblast;
  for (size_t i = 0; !*out && i < BACKEND_COUNT; i++)
    if (backends[i]->preferred(ctx))
      *out = backends[i];
  return *out ? M2PT_OK
              : m2pt_fail(NULL, M2PT_ERR_UNSUPPORTED, "no GEMM backend runs on this device");
}

static m2pt_status attach(m2pt_context *ctx, const char *cache_dir)
{
  const m2pt_gemm_backend *backend = NULL;
  M2PT_TRY(choose(ctx, &backend));
  struct m2pt_gemm_context *g = calloc(1, sizeof *g);
  if (!g)
    return m2pt_fail(NULL, M2PT_ERR_OUT_OF_MEMORY, "out of host memory creating a context");
  g->backend = backend;
  /* Counted before the backend attaches (primes CLBlast, applies a tuning),
   * so that the last other context going meanwhile does not tear down what
   * this one is setting up. */
  m2pt_process_lock();
  live_contexts++;
  m2pt_process_unlock();
  backend->attach(ctx, g, cache_dir);
  ctx->gemm = g;
  return M2PT_OK;
}

static void release(m2pt_context *ctx)
{
  if (ctx->gemm->backend->detach)
    ctx->gemm->backend->detach(ctx);
  free(ctx->gemm);
  ctx->gemm = NULL;
  m2pt_process_lock();
  if (--live_contexts == 0)
    for (size_t i = 0; i < BACKEND_COUNT; i++)
      if (backends[i]->teardown)
        backends[i]->teardown();
  m2pt_process_unlock();
}

const m2pt_context_hooks m2pt_gemm_hooks = {attach, release};

m2pt_status m2pt_gemm_sgemm(m2pt_context *ctx, m2pt_transpose ta, m2pt_transpose tb, size_t m,
                            size_t n, size_t k, float alpha, const m2pt_gemm_matrix *a,
                            const m2pt_gemm_matrix *b, float beta, const m2pt_gemm_matrix *c,
                            size_t batch)
{
  const m2pt_gemm_backend *backend = ctx->gemm->backend;
  ctx->gemm->calls++;
  return batch == 1 ? backend->sgemm(ctx, ta, tb, m, n, k, alpha, a, b, beta, c)
                    : backend->sgemm_batched(ctx, ta, tb, m, n, k, alpha, a, b, beta, c, batch);
}
