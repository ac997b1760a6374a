/* Multi-head self-attention forward: the GEMM path (two strided-batched
 * GEMMs around the softmax kernel, O(N²) scores in the workspace) and the
 * fused flash-style kernel of cl/attention.cl (O(N) memory), its training
 * variant that saves the log-sum-exp, and which of them runs when. The
 * backward is in attention_backward.c. */
#include <math.h>
#include <stdio.h>

#include "attention_ops.h"
#include "block_ops.h"
#include "common/host_attention.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "core/host_map.h"
#include "core/program.h"
#include "gemm/backend.h"
#include "tensor_checks.h"

/* The fused kernel keeps a query row, its output row and a tile of scores
 * in private memory; past this head size they no longer fit any device's
 * registers sensibly. */
#define FUSED_MAX_DIM_HEAD 256
#define FUSED_QUERIES 32 /* BQ: queries (work-items) per work-group */

static size_t fused_key_tile(size_t dim_head)
{
  return dim_head <= 64 ? 32 : dim_head <= 128 ? 16 : 8;
}

/* Lanes of the explicit vectors the kernel works in (VEC): the widest the
 * quirks allow that divides dim_head. 8 measured 4.3× faster than scalar
 * code on PoCL (AVX2) at N = 1024, dim_head 64; GPUs split vectors into
 * scalars at no cost. */
static int fused_vector_width(const m2pt_context *ctx, size_t dim_head)
{
  const unsigned most = ctx->quirks.attention_vec;
  return most >= 8 && dim_head % 8 == 0 ? 8 : most >= 4 && dim_head % 4 == 0 ? 4 : 1;
}

/* Local memory of the fused program's tiles: the forward's key and value
 * tiles and their kept flags; the training program's backward also holds
 * query and dO tiles with their lse and D. */
static size_t fused_local_bytes(size_t dim_head, int backward)
{
  const size_t bk = fused_key_tile(dim_head);
  return (2 * bk * dim_head + (backward ? 2 : 1) * bk) * sizeof(float);
}

size_t m2pt_attention_fused_group(const m2pt_context *ctx)
{
  return ctx->max_work_group < FUSED_QUERIES ? ctx->max_work_group : FUSED_QUERIES;
}

void m2pt_attention_fused_options(const m2pt_context *ctx, size_t dim_head, int has_mask,
                                  int backward, char *buf, size_t size)
{
  snprintf(buf, size, "-DDH=%zu -DBQ=%zu -DBK=%zu -DHAS_MASK=%d -DVEC=%d%s", dim_head,
           m2pt_attention_fused_group(ctx), fused_key_tile(dim_head), has_mask,
           fused_vector_width(ctx, dim_head), backward ? " -DBACKWARD=1" : "");
}

static const char *const fused_kernels[] = {"m2pt_attention_fused"};
static const char *const fused_train_kernels[] = {
    "m2pt_attention_fused_train", "m2pt_attention_backward_dq", "m2pt_attention_backward_dkdv"};

/* Why the fused kernels (backward: the training program's) cannot run
 * here, or NULL when they can: the head size, the tiles in local memory,
 * and the work-group size each compiled kernel allows (private arrays can
 * lower it below BQ on GPUs). */
static m2pt_status fused_obstacle(m2pt_context *ctx, size_t dim_head, int has_mask,
                                  int backward, const char **why)
{
  *why = NULL;
  if (dim_head > FUSED_MAX_DIM_HEAD) {
    *why = "dim_head is above 256";
    return M2PT_OK;
  }
  if (!backward && ctx->quirks.attention_kernel != M2PT_ATTENTION_KERNEL_TILES)
    return M2PT_OK; /* the host or the row kernel: no local memory; its groups fit
                     * whatever the kernel allows */
  if (fused_local_bytes(dim_head, backward) > ctx->info.local_mem_bytes) {
    *why = "its tiles do not fit the device's local memory";
    return M2PT_OK;
  }
  char options[128];
  m2pt_attention_fused_options(ctx, dim_head, has_mask, backward, options, sizeof options);
  const char *const *names = backward ? fused_train_kernels : fused_kernels;
  const size_t count = backward ? 3 : 1;
  for (size_t i = 0; i < count && !*why; i++) {
    size_t limit;
    M2PT_TRY(m2pt_kernel_group_limit(ctx, &m2pt_cl_attention, options, names[i], &limit));
    if (limit < m2pt_attention_fused_group(ctx))
      *why = "the compiled kernel allows fewer work-items per group than it needs";
  }
  return M2PT_OK;
}

/* The choice of m2pt_attention_choose (backward 0) and of
 * m2pt_attention_backward_choose (backward 1). */
static m2pt_status choose(m2pt_context *ctx, size_t dim_head, int has_mask, int backward,
                          m2pt_attention_impl requested, m2pt_attention_impl *chosen)
{
  /* The device's quirks say what AUTO means (M2PT_QUIRKS attention=). */
  const int forced =
      requested == M2PT_ATTENTION_AUTO && ctx->quirks.attention != M2PT_ATTENTION_AUTO;
  if (requested == M2PT_ATTENTION_AUTO)
    requested = ctx->quirks.attention;
  *chosen = requested;
  if (requested == M2PT_ATTENTION_GEMM)
    return M2PT_OK;
  const char *why;
  M2PT_TRY(fused_obstacle(ctx, dim_head, has_mask, backward, &why));
  if (requested == M2PT_ATTENTION_FUSED && why)
    return m2pt_fail(ctx, M2PT_ERR_UNSUPPORTED, "fused attention%s with dim_head %zu%s: %s",
                     backward ? " backward" : "", dim_head,
                     forced ? " (forced by M2PT_QUIRKS attention=fused)" : "", why);
  if (requested == M2PT_ATTENTION_AUTO)
    *chosen = why ? M2PT_ATTENTION_GEMM : M2PT_ATTENTION_FUSED;
  return M2PT_OK;
}

m2pt_status m2pt_attention_choose(m2pt_context *ctx, size_t dim_head, int has_mask,
                                  m2pt_attention_impl requested, m2pt_attention_impl *chosen)
{
  return choose(ctx, dim_head, has_mask, 0, requested, chosen);
}

/* On CPU devices AUTO's backward is the GEMM path while its two
 * [heads][N][N] buffers of one batch row stay within this: on PoCL with the
 * host BLAS (2 cores of an AMD EPYC, 12 heads of 64, one quiet run of
 * m2pt-bench --suite attention) it took 12.7 ms at N = 197 against the fused
 * backward's 21.9, and 214 against 334 ms at N = 1024 (96 MiB of scores);
 * beyond the budget the O(N) fused backward keeps memory flat. GPUs keep
 * the fused backward (not yet measured there). */
#define CPU_GEMM_BACKWARD_BYTES ((size_t)256 << 20)

m2pt_status m2pt_attention_backward_choose(m2pt_context *ctx, const m2pt_attention_shape *shape,
                                           int has_mask, m2pt_attention_impl requested,
                                           m2pt_attention_impl *chosen)
{
  if (requested == M2PT_ATTENTION_AUTO && ctx->quirks.attention == M2PT_ATTENTION_AUTO &&
      ctx->info.is_cpu) {
    const size_t n = shape->tokens, per_head = n && n <= SIZE_MAX / n ? n * n : SIZE_MAX;
    if (per_head <= CPU_GEMM_BACKWARD_BYTES / (2 * sizeof(float) * shape->heads)) {
      *chosen = M2PT_ATTENTION_GEMM;
      return M2PT_OK;
    }
  }
  return choose(ctx, shape->dim_head, has_mask, 1, requested, chosen);
}

/* The host attention (common/host_attention.h) on the buffers in host
 * memory, on the context's host threads, as many as the device has compute
 * units: what the kernel it replaces would have had (PoCL's
 * POCL_MAX_PTHREAD_COUNT). */
static m2pt_status attention_host(m2pt_context *ctx, cl_mem qkv, cl_mem mask,
                                  const m2pt_attention_shape *s, cl_mem out, cl_mem lse)
{
  /* The tensors' sizes were checked to fit when they were made. */
  const size_t rows = s->batch * s->tokens, hd = s->heads * s->dim_head;
  m2pt_host_map m = {0};
  m2pt_host_map_add(&m, qkv, 0, rows * 3 * hd, CL_MAP_READ);
  if (mask)
    m2pt_host_map_add(&m, mask, 0, rows, CL_MAP_READ);
  m2pt_host_map_add(&m, out, 0, rows * hd, CL_MAP_WRITE);
  if (lse)
    m2pt_host_map_add(&m, lse, 0, rows * s->heads, CL_MAP_WRITE);
  m2pt_status st = m2pt_host_map_all(ctx, &m);
  if (st == M2PT_OK) {
    const m2pt_host_attention_shape hs = {s->batch, s->tokens, s->heads, s->dim_head};
    st = m2pt_host_attention(m2pt_host_map_at(&m, qkv, 0),
                             mask ? m2pt_host_map_at(&m, mask, 0) : NULL, &hs,
                             m2pt_host_isa_best(), m2pt_context_host_pool(ctx),
                             m2pt_host_map_at(&m, out, 0),
                             lse ? m2pt_host_map_at(&m, lse, 0) : NULL);
    if (st != M2PT_OK)
      st = m2pt_fail(ctx, st, "attention on the host (%zu × %zu tokens, %zu heads): %s",
                     s->batch, s->tokens, s->heads,
                     st == M2PT_ERR_OUT_OF_MEMORY ? "no memory for its scratch"
                                                  : "arguments refused");
  }
  return m2pt_host_map_release(ctx, &m, st);
}

/* The fused forward: the inference kernel, or with lse the training
 * program's, which also stores each row's log-sum-exp; on CPU devices the
 * host attention or the row kernel (attention_cpu.c), which save the same
 * log-sum-exp. */
static m2pt_status attention_fused(m2pt_context *ctx, cl_mem qkv, cl_mem mask,
                                   const m2pt_attention_shape *s, cl_mem out, cl_mem lse)
{
  if (ctx->quirks.attention_kernel == M2PT_ATTENTION_KERNEL_HOST &&
      s->dim_head == M2PT_HOST_ATTENTION_DIM_HEAD)
    return attention_host(ctx, qkv, mask, s, out, lse);
  if (ctx->quirks.attention_kernel != M2PT_ATTENTION_KERNEL_TILES)
    return m2pt_attention_rows(ctx, qkv, mask, s, out, lse);
  const size_t bq = m2pt_attention_fused_group(ctx);
  char options[128];
  m2pt_attention_fused_options(ctx, s->dim_head, mask != NULL, lse != NULL, options,
                               sizeof options);
  const cl_uint tokens = (cl_uint)s->tokens, heads = (cl_uint)s->heads;
  const float scale = (float)(1.0 / sqrt((double)s->dim_head));
  const m2pt_kernel_arg args[] = {M2PT_ARG(qkv),    M2PT_ARG(mask),  M2PT_ARG(out),
                                  M2PT_ARG(tokens), M2PT_ARG(heads), M2PT_ARG(scale),
                                  M2PT_ARG(lse)};
  const size_t global[3] = {(s->tokens + bq - 1) / bq * bq, s->heads, s->batch};
  const size_t local[3] = {bq, 1, 1};
  return m2pt_run_kernel(ctx, &m2pt_cl_attention, options,
                         lse ? "m2pt_attention_fused_train" : "m2pt_attention_fused", args,
                         lse ? 7 : 6, 3, global, local);
}

m2pt_status m2pt_attention_scores(m2pt_context *ctx, m2pt_workspace_slot slot,
                                  const m2pt_attention_shape *s, cl_mem *out)
{
  size_t bytes;
  if (!m2pt_mul_size(s->heads * s->tokens, s->tokens, &bytes) ||
      !m2pt_mul_size(bytes, sizeof(float), &bytes))
    return m2pt_fail(ctx, M2PT_ERR_DEVICE_OUT_OF_MEMORY,
                     "attention scores of %zu heads × %zu² overflow", s->heads, s->tokens);
  return m2pt_workspace_get(ctx, slot, bytes, out);
}

void m2pt_attention_heads(cl_mem qkv, const m2pt_attention_shape *s, size_t b,
                          m2pt_gemm_matrix m[3])
{
  const size_t d = s->dim_head, hd = s->heads * d, row = 3 * hd, base = b * s->tokens * row;
  for (size_t i = 0; i < 3; i++)
    m[i] = (m2pt_gemm_matrix){qkv, base + i * hd, row, d};
}

/* Per batch row b: S_h = q_h·k_hᵀ·scale for every head at once (one
 * strided-batched GEMM; heads are dim_head apart inside each token's row),
 * S = softmax(S) with b's mask row (its log-sum-exp into lse unless NULL),
 * out_h = S_h·v_h. */
static m2pt_status attention_gemm(m2pt_context *ctx, cl_mem qkv, cl_mem mask,
                                  const m2pt_attention_shape *s, cl_mem out, cl_mem lse)
{
  const size_t n = s->tokens, d = s->dim_head, hd = s->heads * d;
  cl_mem scores;
  M2PT_TRY(m2pt_attention_scores(ctx, M2PT_WS_SCORES, s, &scores));
  const float scale = (float)(1.0 / sqrt((double)d));
  for (size_t b = 0; b < s->batch; b++) {
    m2pt_gemm_matrix qkv_b[3];
    m2pt_attention_heads(qkv, s, b, qkv_b);
    const m2pt_gemm_matrix sc = {scores, 0, n, n * n};
    const m2pt_gemm_matrix o = {out, b * n * hd, hd, d};
    M2PT_TRY(m2pt_gemm_sgemm(ctx, M2PT_NO_TRANS, M2PT_TRANS, n, n, d, scale, &qkv_b[0],
                             &qkv_b[1], 0.0f, &sc, s->heads));
    M2PT_TRY(m2pt_op_softmax(ctx, scores, s->heads * n, n, 1.0f, mask, b * n, s->heads * n,
                             scores, lse, b * s->heads * n));
    M2PT_TRY(m2pt_gemm_sgemm(ctx, M2PT_NO_TRANS, M2PT_NO_TRANS, n, d, n, 1.0f, &sc, &qkv_b[2],
                             0.0f, &o, s->heads));
  }
  return M2PT_OK;
}

m2pt_status m2pt_op_attention(m2pt_context *ctx, cl_mem qkv, cl_mem mask,
                              const m2pt_attention_shape *shape, m2pt_attention_impl impl,
                              cl_mem out)
{
  m2pt_attention_impl chosen;
  M2PT_TRY(m2pt_attention_choose(ctx, shape->dim_head, mask != NULL, impl, &chosen));
  return chosen == M2PT_ATTENTION_FUSED ? attention_fused(ctx, qkv, mask, shape, out, NULL)
                                        : attention_gemm(ctx, qkv, mask, shape, out, NULL);
}

m2pt_status m2pt_op_attention_train(m2pt_context *ctx, cl_mem qkv, cl_mem mask,
                                    const m2pt_attention_shape *shape, m2pt_attention_impl impl,
                                    cl_mem out, cl_mem lse)
{
  /* The backward's choice first: it fails here, before anything is
   * written, where FUSED is forced and its backward cannot run. */
  m2pt_attention_impl backward, forward;
  M2PT_TRY(m2pt_attention_backward_choose(ctx, shape, mask != NULL, impl, &backward));
  if (backward == M2PT_ATTENTION_FUSED)
    return attention_fused(ctx, qkv, mask, shape, out, lse);
  /* A GEMM-path backward recomputes P from lse, which every forward can
   * save: the fused one where the inference forward is fused (on CPU
   * devices the row kernel, 4× the GEMM path's speed at N = 197 on PoCL),
   * so that out keeps the inference forward's bits; else the GEMM path's
   * softmax. The tiled kernel saves lse only in the training program, which
   * may not run where the inference one does. */
  M2PT_TRY(m2pt_attention_choose(ctx, shape->dim_head, mask != NULL, impl, &forward));
  if (forward == M2PT_ATTENTION_FUSED) {
    const char *why = NULL;
    if (ctx->quirks.attention_kernel == M2PT_ATTENTION_KERNEL_TILES)
      M2PT_TRY(fused_obstacle(ctx, shape->dim_head, mask != NULL, 1, &why));
    if (!why)
      return attention_fused(ctx, qkv, mask, shape, out, lse);
  }
  return attention_gemm(ctx, qkv, mask, shape, out, lse);
}

m2pt_status m2pt_attention_check(m2pt_context *ctx, const char *fn, const m2pt_tensor *qkv,
                                 size_t heads, size_t dim_head, const m2pt_tensor *mask,
                                 m2pt_attention_impl impl, const m2pt_tensor *out,
                                 const char *outn, m2pt_attention_shape *shape)
{
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  char name[64];
  snprintf(name, sizeof name, "%s: qkv", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, qkv, name));
  snprintf(name, sizeof name, "%s: %s", fn, outn);
  M2PT_TRY(m2pt_check_tensor(ctx, out, name));
  M2PT_REQUIRE(ctx, qkv != out, "%s: %s must not be qkv", fn, outn);
  M2PT_REQUIRE(ctx, heads > 0 && dim_head > 0, "%s: heads = %zu, dim_head = %zu", fn, heads,
               dim_head);
  M2PT_TRY(m2pt_check_enum(ctx, (int)impl, M2PT_ATTENTION_FUSED, fn, "implementation"));
  size_t hd;
  M2PT_REQUIRE(ctx, m2pt_mul_size(heads, dim_head, &hd) && hd <= SIZE_MAX / 3,
               "%s: heads·dim_head overflows", fn);
  char sq[96], so[96];
  if (qkv->ndim != 3 || qkv->shape[2] != 3 * hd)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: qkv %s must be [B][N][%zu] (3·%zu heads·%zu)", fn,
                     m2pt_shape_string(qkv, sq, sizeof sq), 3 * hd, heads, dim_head);
  *shape = (m2pt_attention_shape){qkv->shape[0], qkv->shape[1], heads, dim_head};
  if (out->ndim != 3 || out->shape[0] != shape->batch || out->shape[1] != shape->tokens ||
      out->shape[2] != hd)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: %s %s must be [%zu][%zu][%zu] for qkv %s", fn,
                     outn, m2pt_shape_string(out, so, sizeof so), shape->batch, shape->tokens,
                     hd, m2pt_shape_string(qkv, sq, sizeof sq));
  M2PT_REQUIRE(ctx, shape->tokens <= UINT32_MAX && heads <= UINT32_MAX,
               "%s: too many tokens or heads", fn);
  return m2pt_check_mask(ctx, mask, qkv, fn);
}

m2pt_status m2pt_attention(m2pt_context *ctx, const m2pt_tensor *qkv, size_t heads,
                           size_t dim_head, const m2pt_tensor *mask, m2pt_attention_impl impl,
                           m2pt_tensor *out)
{
  m2pt_attention_shape shape;
  M2PT_TRY(m2pt_attention_check(ctx, "m2pt_attention", qkv, heads, dim_head, mask, impl, out,
                                "out", &shape));
  return m2pt_op_attention(ctx, qkv->buffer, mask ? mask->buffer : NULL, &shape, impl,
                           out->buffer);
}

m2pt_status m2pt_attention_check_saved(m2pt_context *ctx, const char *fn,
                                       const m2pt_tensor *qkv, size_t heads, size_t dim_head,
                                       const m2pt_tensor *mask, const m2pt_tensor *out,
                                       const m2pt_tensor *lse, m2pt_attention_shape *shape)
{
  M2PT_TRY(m2pt_attention_check(ctx, fn, qkv, heads, dim_head, mask, M2PT_ATTENTION_FUSED, out,
                                "out", shape));
  char name[64], sl[96];
  snprintf(name, sizeof name, "%s: lse", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, lse, name));
  if (lse->ndim != 3 || lse->shape[0] != shape->batch || lse->shape[1] != heads ||
      lse->shape[2] != shape->tokens)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: lse %s must be [%zu][%zu][%zu] ([B][heads][N])",
                     fn, m2pt_shape_string(lse, sl, sizeof sl), shape->batch, heads,
                     shape->tokens);
  M2PT_REQUIRE(ctx, lse != qkv && lse != out, "%s: lse must not be qkv or out", fn);
  m2pt_attention_impl chosen;
  return m2pt_attention_backward_choose(ctx, shape, mask != NULL, M2PT_ATTENTION_FUSED,
                                        &chosen);
}

m2pt_status m2pt_attention_train(m2pt_context *ctx, const m2pt_tensor *qkv, size_t heads,
                                 size_t dim_head, const m2pt_tensor *mask, m2pt_tensor *out,
                                 m2pt_tensor *lse)
{
  m2pt_attention_shape shape;
  M2PT_TRY(m2pt_attention_check_saved(ctx, "m2pt_attention_train", qkv, heads, dim_head, mask,
                                      out, lse, &shape));
  return attention_fused(ctx, qkv->buffer, mask ? mask->buffer : NULL, &shape, out->buffer,
                         lse->buffer);
}
