/* GEMM on CPU devices through a host library (host_onednn.c,
 * host_openblas.c). A CPU device's buffers live in host memory, and CLBlast's
 * kernels, as PoCL compiles them, reach about a tenth of an optimized CPU
 * GEMM even when tuned (README, Performance); so on a CPU device the
 * operands are used in place (SVM buffers) or mapped (no copy on PoCL) and
 * handed to the backend's host_sgemm. */
#include <limits.h>
#include <stdio.h>

#include "backend.h"
#include "clblast.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "core/host_map.h"
#include "host_mapped.h"

/* Elements an operand spans: `batch` matrices of rows × cols, ld apart by
 * row and stride apart by batch member. */
static size_t extent(size_t rows, size_t cols, size_t ld, size_t stride, size_t batch)
{
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

static void add_range(m2pt_host_map *m, const m2pt_gemm_matrix *x, size_t elems,
                      cl_map_flags flags)
{
  m2pt_host_map_add(m, x->buffer, x->offset, elems, flags);
}

static float *host_of(const m2pt_host_map *m, const m2pt_gemm_matrix *x)
{
  return m2pt_host_map_at(m, x->buffer, x->offset);
}

/* ctx's host_sgemm on the operands in place (blocking: m2pt_host_map_all drains the
 * queue), with `work` (may be NULL) before and after it. Sizes and leading
 * dimensions fit an int (sgemm_batched checks). */
static m2pt_status host_sgemm(m2pt_context *ctx, m2pt_transpose ta, m2pt_transpose tb, size_t m,
                              size_t n, size_t k, float alpha, const m2pt_gemm_matrix *a,
                              const m2pt_gemm_matrix *b, float beta, const m2pt_gemm_matrix *c,
                              size_t batch, const m2pt_gemm_host_work *work)
{
  const int at = ta == M2PT_TRANS, bt = tb == M2PT_TRANS;
  _Static_assert(5 + M2PT_GEMM_HOST_EXTRAS <= M2PT_HOST_MAP_MOST,
                 "a host map holds the operands and every extra");
  m2pt_host_map maps = {0};
  add_range(&maps, a, extent(at ? k : m, at ? m : k, a->ld, a->stride, batch),
            CL_MAP_READ);
  add_range(&maps, b, extent(bt ? n : k, bt ? k : n, b->ld, b->stride, batch),
            CL_MAP_READ);
  add_range(&maps, c, extent(m, n, c->ld, c->stride, batch),
            beta == 0.0f && !work ? CL_MAP_WRITE : CL_MAP_READ | CL_MAP_WRITE);
  const m2pt_gemm_matrix bias = {work ? work->bias : NULL, 0, 0, 0};
  const m2pt_gemm_matrix residual = {work ? work->residual : NULL, 0, c->ld, 0};
  if (bias.buffer)
    add_range(&maps, &bias, n, CL_MAP_READ);
  if (residual.buffer)
    add_range(&maps, &residual, extent(m, n, c->ld, 0, 1), CL_MAP_READ);
  for (size_t i = 0; work && i < M2PT_GEMM_HOST_EXTRAS; i++)
    if (work->buffer[i]) {
      const m2pt_gemm_matrix x = {work->buffer[i], 0, 0, 0};
      add_range(&maps, &x, work->elems[i],
                work->write[i] ? CL_MAP_READ | CL_MAP_WRITE : CL_MAP_READ);
    }
  m2pt_status s = m2pt_host_map_all(ctx, &maps);
  if (s == M2PT_OK) {
    const float *ha = host_of(&maps, a), *hb = host_of(&maps, b);
    float *hc = host_of(&maps, c);
    float *extra[M2PT_GEMM_HOST_EXTRAS] = {0};
    for (size_t i = 0; work && i < M2PT_GEMM_HOST_EXTRAS; i++)
      if (work->buffer[i]) {
        const m2pt_gemm_matrix x = {work->buffer[i], 0, 0, 0};
        extra[i] = host_of(&maps, &x);
      }
    if (work && work->before)
      work->before(work->user, hc, extra);
    const m2pt_host_epilogue e = {
        bias.buffer ? host_of(&maps, &bias) : NULL,
        residual.buffer ? host_of(&maps, &residual) : NULL, work && work->gelu,
        work && work->gelu_tanh};
    const m2pt_host_gemm g = {at, bt, m, n, k, batch, alpha, beta, ha, hb, hc,
                              a->ld, b->ld, c->ld, a->stride, b->stride, c->stride, e,
                              work ? work->packed_b : NULL};
    s = ctx->gemm->backend->host_sgemm(ctx, &g);
    if (s == M2PT_OK && work && work->after)
      work->after(work->user, hc, extra);
  }
  return m2pt_host_map_release(ctx, &maps, s);
}

m2pt_status m2pt_gemm_mapped_sgemm_batched(m2pt_context *ctx, m2pt_transpose ta,
                                          m2pt_transpose tb, size_t m, size_t n, size_t k,
                                          float alpha, const m2pt_gemm_matrix *a,
                                          const m2pt_gemm_matrix *b, float beta,
                                          const m2pt_gemm_matrix *c, size_t batch)
{
  /* The host libraries take int sizes; anything larger goes to CLBlast. */
  const size_t most = INT_MAX;
  if (m <= most && n <= most && k <= most && a->ld <= most && b->ld <= most && c->ld <= most &&
      a->stride <= most && b->stride <= most && c->stride <= most)
    return host_sgemm(ctx, ta, tb, m, n, k, alpha, a, b, beta, c, batch, NULL);
  return m2pt_clblast_sgemm(ctx, ta, tb, m, n, k, alpha, a, b, beta, c, batch);
}

m2pt_status m2pt_gemm_mapped_sgemm(m2pt_context *ctx, m2pt_transpose ta, m2pt_transpose tb,
                                   size_t m, size_t n, size_t k, float alpha,
                                   const m2pt_gemm_matrix *a, const m2pt_gemm_matrix *b,
                                   float beta, const m2pt_gemm_matrix *c)
{
  return m2pt_gemm_mapped_sgemm_batched(ctx, ta, tb, m, n, k, alpha, a, b, beta, c, 1);
}

/* CLBlast's parameters are process-wide: a context whose GEMMs never run
 * there has no business changing them, so nothing is applied. */
void m2pt_gemm_mapped_attach(m2pt_context *ctx, struct m2pt_gemm_context *g,
                             const char *cache_dir)
{
  g->tuning_source = M2PT_TUNING_NONE;
  snprintf(g->tuning_detail, sizeof g->tuning_detail,
           "GEMMs run on the host (%s): no CLBlast tuning applied", g->backend->label);
}

int m2pt_gemm_host_takes(const m2pt_context *ctx, size_t m, size_t n, size_t k)
{
  const size_t most = INT_MAX;
  return ctx->gemm->backend->host_sgemm != NULL && m <= most && n <= most && k <= most;
}

m2pt_status m2pt_gemm_sgemm_host(m2pt_context *ctx, m2pt_transpose ta, m2pt_transpose tb,
                                 size_t m, size_t n, size_t k, float alpha,
                                 const m2pt_gemm_matrix *a, const m2pt_gemm_matrix *b,
                                 float beta, const m2pt_gemm_matrix *c,
                                 const m2pt_gemm_host_work *work)
{
  const size_t most = INT_MAX;
  if (!m2pt_gemm_host_takes(ctx, m, n, k) || a->ld > most || b->ld > most || c->ld > most)
    return m2pt_fail(ctx, M2PT_ERR_UNSUPPORTED,
                     "a %zu × %zu × %zu GEMM with host work needs a host GEMM backend", m, n, k);
  if ((alpha != 1.0f || beta != 0.0f) && (work->bias || work->residual || work->gelu))
    return m2pt_fail(ctx, M2PT_ERR_UNSUPPORTED,
                     "a host GEMM's epilogue needs alpha = 1 and beta = 0");
  ctx->gemm->calls++;
  return host_sgemm(ctx, ta, tb, m, n, k, alpha, a, b, beta, c, 1, work);
}

void m2pt_gemm_packed_clear(m2pt_gemm_packed *p)
{
  if (!p)
    return;
  if (p->impl)
    p->release(p->impl);
  *p = (m2pt_gemm_packed){NULL, NULL, 0};
}
