/* The host backend on oneDNN's matmul: the first choice on CPU devices.
 * Its JIT kernels (brgemm) run ViT-B's linear shapes at 200-210 GFLOP/s on
 * 2 cores of an AMD EPYC (AVX-512) where OpenBLAS 0.3.21 reaches 150-170
 * (README, Performance), and it takes strided batches in one call.
 *
 * One CPU engine serves the process: created with the first context that
 * uses this backend, destroyed with the last context (teardown). Primitives
 * are made per call (oneDNN's primitive cache keeps the JIT code per shape,
 * so after the first call of a shape this costs microseconds), except where
 * B is kept packed (a linear's weight): there the primitive is kept with it
 * and reused while the calls ask the same. */
#include <stdint.h>
#include <stdlib.h>

#include "common/host_pages.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "core/global.h"
#include "host_mapped.h"

#ifdef M2PT_HAVE_ONEDNN
#  include "onednn_api.h"

/* oneDNN's functions (onednn_api.h: loaded, not linked) and the engine,
 * written under the process lock by the first attach since the last
 * teardown only: a context's GEMMs read them after its own attach, and no
 * other attach writes them meanwhile (nor teardown, which waits for the
 * last context). A failed engine creation is not retried before then; its
 * status is kept for the GEMMs' message. */
static const m2pt_onednn_api *onednn;
static dnnl_engine_t engine;
static dnnl_status_t engine_status;
static int engine_tried;

static m2pt_status fail(m2pt_context *ctx, dnnl_status_t s, const char *what)
{
  return m2pt_fail(ctx, s == dnnl_out_of_memory ? M2PT_ERR_OUT_OF_MEMORY : M2PT_ERR_BLAS,
                   "oneDNN: %s failed (%s)", what, onednn->dnnl_status2str(s));
}

/* An operand's descriptor: op(X), rows × cols, of a row-major X with
 * leading dimension ld (stored cols × rows where `trans`), `batch` of them
 * stride apart (2-D when batch is 1). */
static dnnl_status_t describe(dnnl_memory_desc_t *md, size_t batch, size_t rows, size_t cols,
                              int trans, size_t ld, size_t stride)
{
  dnnl_dims_t dims = {(dnnl_dim_t)rows, (dnnl_dim_t)cols};
  dnnl_dims_t strides = {trans ? 1 : (dnnl_dim_t)ld, trans ? (dnnl_dim_t)ld : 1};
  if (batch == 1)
    return onednn->dnnl_memory_desc_init_by_strides(md, 2, dims, dnnl_f32, strides);
  const dnnl_dims_t dims3 = {(dnnl_dim_t)batch, dims[0], dims[1]};
  const dnnl_dims_t strides3 = {(dnnl_dim_t)stride, strides[0], strides[1]};
  return onednn->dnnl_memory_desc_init_by_strides(md, 3, dims3, dnnl_f32, strides3);
}

/* alpha as an output scale, beta as a sum post-op (oneDNN computes
 * C = alpha·op(A)·op(B) + beta·C, reading C only when beta ≠ 0), the
 * epilogue's GELU as an eltwise post-op and its residual as a binary add
 * post-op reading `residual` (the bias is the matmul's own operand). The
 * post-ops run on each block of C while it is in registers. */
static dnnl_status_t make_attr(dnnl_primitive_attr_t attr, const m2pt_host_gemm *g,
                               const dnnl_memory_desc_t *residual)
{
  dnnl_status_t s = dnnl_success;
  if (g->alpha != 1.0f)
    s = onednn->dnnl_primitive_attr_set_output_scales(attr, 1, 0, &g->alpha);
  const m2pt_host_epilogue *e = &g->epilogue;
  if (s != dnnl_success || (g->beta == 0.0f && !e->gelu && !e->residual))
    return s;
  dnnl_post_ops_t ops = NULL;
  s = onednn->dnnl_post_ops_create(&ops);
  if (s == dnnl_success && g->beta != 0.0f)
    s = onednn->dnnl_post_ops_append_sum(ops, g->beta);
  if (s == dnnl_success && e->gelu)
    s = onednn->dnnl_post_ops_append_eltwise(
        ops, 1.0f, e->gelu_tanh ? dnnl_eltwise_gelu_tanh : dnnl_eltwise_gelu_erf, 0.0f, 0.0f);
  if (s == dnnl_success && e->residual)
    s = onednn->dnnl_post_ops_append_binary(ops, dnnl_binary_add, residual);
  if (s == dnnl_success)
    s = onednn->dnnl_primitive_attr_set_post_ops(attr, ops);
  onednn->dnnl_post_ops_destroy(ops);
  return s;
}

/* The residual's post-op index: after the sum and the GELU when present. */
static int residual_index(const m2pt_host_gemm *g)
{
  return (g->beta != 0.0f) + (g->epilogue.gelu != 0);
}

/* What a kept B holds (m2pt_gemm_packed.impl): B in the matmul's layout,
 * and the last primitive made for it with the call it was made for. The
 * descriptors, attribute and primitive of a call took 18 µs of host time a
 * GEMM in the ViT-B/16 forward at B = 1, 48 of them a forward (README,
 * Performance). A layer used from another thread with another OpenMP
 * thread count gets a new primitive. */
typedef struct kept_b {
  dnnl_memory_t weights; /* NULL until packed */
  void *weights_data;    /* its memory: m2pt_host_pages_alloc's, 2 MiB pages */
  dnnl_primitive_desc_t pd;
  dnnl_primitive_t prim; /* NULL until made */
  m2pt_host_gemm call;   /* what prim computes; its pointers are not compared */
  int threads;           /* the OpenMP thread count prim was made for (0: unknown) */
} kept_b;

/* The thread count a primitive made now would split its work for. */
static int max_threads(void)
{
  return onednn->omp_get_max_threads ? onednn->omp_get_max_threads() : 0;
}

static void release_kept(void *impl)
{
  kept_b *k = impl;
  onednn->dnnl_memory_destroy(k->weights);
  m2pt_host_pages_free(k->weights_data);
  onednn->dnnl_primitive_destroy(k->prim);
  onednn->dnnl_primitive_desc_destroy(k->pd);
  free(k);
}

/* Whether a primitive made for x computes y too: every size, stride, scale
 * and transpose, and which epilogue operands there are. */
static int same_call(const m2pt_host_gemm *x, const m2pt_host_gemm *y)
{
  const m2pt_host_epilogue *ex = &x->epilogue, *ey = &y->epilogue;
  return x->trans_a == y->trans_a && x->trans_b == y->trans_b && x->m == y->m && x->n == y->n &&
         x->k == y->k && x->batch == y->batch && x->alpha == y->alpha && x->beta == y->beta &&
         x->lda == y->lda && x->ldb == y->ldb && x->ldc == y->ldc &&
         x->stride_a == y->stride_a && x->stride_b == y->stride_b &&
         x->stride_c == y->stride_c && !ex->bias == !ey->bias &&
         !ex->residual == !ey->residual && ex->gelu == ey->gelu &&
         ex->gelu_tanh == ey->gelu_tanh;
}

/* p's record, made empty where it has none. */
static kept_b *kept_of(m2pt_gemm_packed *p)
{
  if (!p->impl) {
    kept_b *k = calloc(1, sizeof *k);
    if (!k)
      return NULL;
    p->impl = k;
    p->release = release_kept;
  }
  return p->impl;
}

/* k's copy of B in the layout `want` (the matmul's choice), made now by a
 * reorder from B's plain `plain` layout where k holds none or another. */
static dnnl_status_t packed_weights(kept_b *k, dnnl_stream_t stream,
                                    const dnnl_memory_desc_t *plain, const float *b,
                                    const dnnl_memory_desc_t *want, dnnl_memory_t *out)
{
  const dnnl_memory_desc_t *have = NULL;
  if (k->weights && onednn->dnnl_memory_get_memory_desc(k->weights, &have) == dnnl_success &&
      onednn->dnnl_memory_desc_equal(have, want)) {
    *out = k->weights;
    return dnnl_success;
  }
  onednn->dnnl_memory_destroy(k->weights);
  m2pt_host_pages_free(k->weights_data);
  k->weights = NULL;
  k->weights_data = NULL;
  dnnl_memory_t src = NULL, dst = NULL;
  dnnl_primitive_desc_t rpd = NULL;
  dnnl_primitive_t reorder = NULL;
  /* On huge pages (common/host_pages.h): the matmul sweeps it many times. */
  void *data = m2pt_host_pages_alloc(onednn->dnnl_memory_desc_get_size(want));
  dnnl_status_t s = data ? dnnl_success : dnnl_out_of_memory;
  if (s == dnnl_success)
    s = onednn->dnnl_memory_create(&src, plain, engine, (void *)(uintptr_t)b);
  if (s == dnnl_success)
    s = onednn->dnnl_memory_create(&dst, want, engine, data);
  if (s == dnnl_success)
    s = onednn->dnnl_reorder_primitive_desc_create(&rpd, plain, engine, want, engine, NULL);
  if (s == dnnl_success)
    s = onednn->dnnl_primitive_create(&reorder, rpd);
  if (s == dnnl_success) {
    const dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
    s = onednn->dnnl_primitive_execute(reorder, stream, 2, args);
  }
  if (s == dnnl_success)
    s = onednn->dnnl_stream_wait(stream);
  onednn->dnnl_primitive_destroy(reorder);
  onednn->dnnl_primitive_desc_destroy(rpd);
  onednn->dnnl_memory_destroy(src);
  if (s != dnnl_success) {
    onednn->dnnl_memory_destroy(dst);
    m2pt_host_pages_free(data);
    return s;
  }
  k->weights = dst;
  k->weights_data = data;
  *out = dst;
  return dnnl_success;
}

/* The matmul primitive (and its descriptor, which the caller destroys with
 * it) computing g from operands described by ad, bd, cd and the epilogue's
 * biasd and rd; B in a layout of the matmul's choice where `pack`. On
 * failure *what says which step failed and nothing is left made. */
static dnnl_status_t make_matmul(const m2pt_host_gemm *g, int pack, const dnnl_memory_desc_t *ad,
                                 const dnnl_memory_desc_t *bd, const dnnl_memory_desc_t *cd,
                                 const dnnl_memory_desc_t *biasd, const dnnl_memory_desc_t *rd,
                                 dnnl_primitive_desc_t *pd, dnnl_primitive_t *prim,
                                 const char **what)
{
  dnnl_memory_desc_t bany;
  dnnl_matmul_desc_t desc;
  dnnl_primitive_attr_t attr = NULL;
  *pd = NULL;
  *prim = NULL;
  dnnl_status_t s = dnnl_success;
  if (pack && (*what = "describing the packed weights")) {
    const dnnl_dims_t dims = {(dnnl_dim_t)g->k, (dnnl_dim_t)g->n};
    s = onednn->dnnl_memory_desc_init_by_tag(&bany, 2, dims, dnnl_f32, dnnl_format_tag_any);
  }
  if (s == dnnl_success && (*what = "initialising a matmul descriptor"))
    s = onednn->dnnl_matmul_desc_init(&desc, ad, pack ? &bany : bd,
                                      g->epilogue.bias ? biasd : NULL, cd);
  if (s == dnnl_success && (*what = "setting the output scale and post-ops"))
    s = onednn->dnnl_primitive_attr_create(&attr);
  if (s == dnnl_success)
    s = make_attr(attr, g, rd);
  if (s == dnnl_success && (*what = "creating a matmul primitive"))
    s = onednn->dnnl_primitive_desc_create(pd, &desc, attr, engine, NULL);
  if (s == dnnl_success)
    s = onednn->dnnl_primitive_create(prim, *pd);
  onednn->dnnl_primitive_attr_destroy(attr);
  if (s != dnnl_success) {
    onednn->dnnl_primitive_desc_destroy(*pd);
    *pd = NULL;
  }
  return s;
}

static m2pt_status run(m2pt_context *ctx, const m2pt_host_gemm *g)
{
  if (!engine)
    return fail(ctx, engine_status, "creating the CPU engine");
  const m2pt_host_epilogue *e = &g->epilogue;
  /* A kept B: the matmul picks its layout ("any"), B is packed into it. */
  const int pack = g->packed_b && g->batch == 1 && ++g->packed_b->uses >= 2;
  kept_b *kept = pack ? kept_of(g->packed_b) : NULL;
  if (pack && !kept)
    return fail(ctx, dnnl_out_of_memory, "keeping a packed B");
  /* Its primitive again where this call is the one it was made for. */
  const int threads = kept ? max_threads() : 0;
  const int reuse = kept && kept->prim && same_call(&kept->call, g) && kept->threads == threads;
  dnnl_memory_desc_t ad, bd, cd, biasd, rd;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_t prim = NULL;
  dnnl_memory_t am = NULL, bm = NULL, cm = NULL, biasm = NULL, rm = NULL, weights = NULL;
  dnnl_stream_t stream = NULL;
  const char *what = "describing the operands";
  dnnl_status_t s = describe(&ad, g->batch, g->m, g->k, g->trans_a, g->lda, g->stride_a);
  if (s == dnnl_success)
    s = describe(&bd, g->batch, g->k, g->n, g->trans_b, g->ldb, g->stride_b);
  if (s == dnnl_success)
    s = describe(&cd, g->batch, g->m, g->n, 0, g->ldc, g->stride_c);
  /* The epilogue's operands are of one matrix (batch 1): the bias a row. */
  if (s == dnnl_success && e->bias)
    s = describe(&biasd, 1, 1, g->n, 0, g->n, 0);
  if (s == dnnl_success && e->residual)
    s = describe(&rd, 1, g->m, g->n, 0, g->ldc, 0);
  if (reuse) {
    pd = kept->pd;
    prim = kept->prim;
  } else if (s == dnnl_success) {
    s = make_matmul(g, pack, &ad, &bd, &cd, &biasd, &rd, &pd, &prim, &what);
  }
  /* A kept B's new primitive replaces the one kept with it; otherwise the
   * primitive is this call's alone. */
  int ours = !reuse;
  if (s == dnnl_success && kept && !reuse) {
    onednn->dnnl_primitive_destroy(kept->prim);
    onednn->dnnl_primitive_desc_destroy(kept->pd);
    kept->pd = pd;
    kept->prim = prim;
    kept->call = *g;
    kept->threads = threads;
    ours = 0;
  }
  if (s == dnnl_success && (what = "creating a stream"))
    s = onednn->dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
  /* oneDNN's handles are not const; the matmul only reads A, B and the
   * epilogue's operands. */
  if (s == dnnl_success && (what = "wrapping the operands"))
    s = onednn->dnnl_memory_create(&am, &ad, engine, (void *)(uintptr_t)g->a);
  if (s == dnnl_success && !pack)
    s = onednn->dnnl_memory_create(&bm, &bd, engine, (void *)(uintptr_t)g->b);
  if (s == dnnl_success)
    s = onednn->dnnl_memory_create(&cm, &cd, engine, g->c);
  if (s == dnnl_success && e->bias)
    s = onednn->dnnl_memory_create(&biasm, &biasd, engine, (void *)(uintptr_t)e->bias);
  if (s == dnnl_success && e->residual)
    s = onednn->dnnl_memory_create(&rm, &rd, engine, (void *)(uintptr_t)e->residual);
  if (s == dnnl_success && pack && (what = "packing B into the matmul's weights layout"))
    s = packed_weights(kept, stream, &bd, g->b,
                       onednn->dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0),
                       &weights);
  if (s == dnnl_success && (what = "running a matmul")) {
    dnnl_exec_arg_t args[5] = {
        {DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, pack ? weights : bm}, {DNNL_ARG_DST, cm}};
    int nargs = 3;
    if (biasm)
      args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, biasm};
    if (rm)
      args[nargs++] = (dnnl_exec_arg_t){
          DNNL_ARG_ATTR_MULTIPLE_POST_OP(residual_index(g)) | DNNL_ARG_SRC_1, rm};
    s = onednn->dnnl_primitive_execute(prim, stream, nargs, args);
    if (s == dnnl_success)
      s = onednn->dnnl_stream_wait(stream);
  }
  onednn->dnnl_stream_destroy(stream);
  onednn->dnnl_memory_destroy(rm);
  onednn->dnnl_memory_destroy(biasm);
  onednn->dnnl_memory_destroy(cm);
  onednn->dnnl_memory_destroy(bm);
  onednn->dnnl_memory_destroy(am);
  if (ours) {
    onednn->dnnl_primitive_destroy(prim);
    onednn->dnnl_primitive_desc_destroy(pd);
  }
  return s == dnnl_success ? M2PT_OK : fail(ctx, s, what);
}

/* Only chosen where unavailable() found oneDNN, so loading succeeds. */
static void attach(m2pt_context *ctx, struct m2pt_gemm_context *g, const char *cache_dir)
{
  m2pt_process_lock();
  if (!engine_tried) {
    const char *why;
    onednn = m2pt_onednn_load(&why);
    engine_status = onednn->dnnl_engine_create(&engine, dnnl_cpu, 0);
    if (engine_status != dnnl_success)
      engine = NULL;
    engine_tried = 1;
  }
  m2pt_process_unlock();
  m2pt_gemm_mapped_attach(ctx, g, cache_dir);
}

/* With the process lock held (the chooser's release). */
static void teardown(void)
{
  if (engine)
    onednn->dnnl_engine_destroy(engine);
  engine = NULL;
  engine_tried = 0;
}

/* Loads oneDNN (once per process) but leaves `onednn` to attach: the
 * chooser asks this from any thread, unlocked. */
static const char *unavailable(void)
{
  const char *why;
  m2pt_onednn_load(&why);
  return why;
}
#  define RUN run
#  define ATTACH attach
#  define TEARDOWN teardown
#else
static const char *unavailable(void)
{
  return "m2pt was built without oneDNN";
}
#  define RUN NULL
#  define ATTACH m2pt_gemm_mapped_attach
#  define TEARDOWN NULL
#endif

/* Only CPU devices load oneDNN. */
static int preferred(const m2pt_context *ctx)
{
  return ctx->quirks.gemm_on_host && !unavailable();
}

const m2pt_gemm_backend m2pt_gemm_onednn = {
    .name = "onednn",
    .label = "oneDNN",
    .unavailable = unavailable,
    .preferred = preferred,
    .attach = ATTACH,
    .detach = NULL,
    .teardown = TEARDOWN,
    .sgemm = m2pt_gemm_mapped_sgemm,
    .sgemm_batched = m2pt_gemm_mapped_sgemm_batched,
    .host_sgemm = RUN,
};
