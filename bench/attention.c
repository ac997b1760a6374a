/* m2pt-bench: the attention suite. m2pt_attention's GEMM path (batched
 * GEMMs, CLBlast's or the host library's, around a softmax kernel, O(N²)
 * scores) against the fused flash-style kernel (O(N) memory) on ViT-B's
 * heads at growing sequence lengths, forward and backward: their times,
 * speed ratio (issue 14's target: fused ≥ 3× the GEMM path at N = 4096) and
 * peak device memory. */
#include <stdio.h>

#include "bench.h"

typedef struct attention_size {
  size_t tokens, heads, dim_head;
  int max_warmup, max_reps; /* caps on the runs, where one takes seconds; 0: none */
} attention_size;

/* ViT-B (12 heads of 64) at its 197 tokens and at longer sequences. */
static const attention_size vit_sizes[] = {
  {197, 12, 64, 0, 0},
  {1024, 12, 64, 0, 0},
  {4096, 12, 64, 1, 3},
};
#define QUICK_SIZES 2 /* --quick leaves out N = 4096 */
static const attention_size smoke_size = {5, 2, 4, 0, 0};

enum { PATH_GEMM, PATH_FUSED, PATHS };

static size_t attention_sizes(const bench_options *o, const attention_size **sizes)
{
  if (o->smoke) {
    *sizes = &smoke_size;
    return 1;
  }
  *sizes = vit_sizes;
  return o->quick ? QUICK_SIZES : sizeof vit_sizes / sizeof vit_sizes[0];
}

m2pt_status bench_run_attention(void *state)
{
  bench_attention_state *a = state;
  return bench_finish(a->ctx, BENCH_CALL(a->ctx, m2pt_attention(a->ctx, a->qkv, a->heads,
                                                                a->dim_head, NULL, a->impl,
                                                                a->out)));
}

static int cap(int value, int max)
{
  return max > 0 && value > max ? max : value;
}

/* Each path's memory in a single run (the fused path first: it takes no
 * N×N scratch, and the GEMM path's then starts from none), then their
 * times, printed as rows "gemm" and "fused" (with " backward" after). */
static m2pt_status measure_paths(m2pt_context *ctx, const bench_options *o,
                                 const attention_size *sz, const bench_case cases[PATHS],
                                 int backward)
{
  bench_peak_memory mem[PATHS];
  m2pt_status s = bench_measure_peak(ctx, &cases[PATH_FUSED], &mem[PATH_FUSED]);
  if (s == M2PT_OK)
    s = bench_measure_peak(ctx, &cases[PATH_GEMM], &mem[PATH_GEMM]);
  char shape[64], label[128], name[32], note[96];
  const size_t dims[4] = {1, sz->tokens, sz->heads, sz->dim_head};
  bench_dims_string(dims, 4, shape, sizeof shape);
  const char *const what = backward ? " backward" : "";
  snprintf(label, sizeof label, "attention%s %s, gemm and fused", what, shape);
  bench_options runs = *o;
  runs.warmup = cap(o->warmup, sz->max_warmup);
  runs.reps = cap(o->reps, sz->max_reps);
  bench_timing t[PATHS];
  if (s == M2PT_OK)
    s = bench_measure(cases, PATHS, &runs, label, t);
  if (s != M2PT_OK)
    return s;
  /* The backward: the GEMM path's five products (P recomputed, dV, dP, dQ,
   * dK) against the forward's two. */
  const double flops =
      (backward ? 2.5 : 1.0) * bench_attention_flops(1, sz->tokens, sz->heads, sz->dim_head);
  static const char *const names[PATHS] = {"gemm", "fused"};
  for (int p = 0; p < PATHS; p++) {
    snprintf(name, sizeof name, "%s%s", names[p], what);
    snprintf(note, sizeof note, "peak +%.1f MiB, total %.1f MiB", mem[p].scratch_mib,
             mem[p].total_mib);
    const int last = p == PATH_FUSED;
    bench_print_row("attention", name, shape, &t[p], flops,
                    last ? t[PATH_GEMM].median_ms / t[PATH_FUSED].median_ms : 0.0,
                    backward ? "gemm/fused backward" : "gemm/fused (target >= 3 at N=4096)",
                    note);
  }
  return M2PT_OK;
}

/* Both forward paths on qkv [1][N][3·heads·dim_head]. */
static m2pt_status attention_size_run(m2pt_context *ctx, const bench_options *o,
                                      const attention_size *sz)
{
  const size_t hd = sz->heads * sz->dim_head;
  const size_t qkv_shape[3] = {1, sz->tokens, 3 * hd}, out_shape[3] = {1, sz->tokens, hd};
  m2pt_tensor *qkv = NULL, *out = NULL;
  m2pt_status s = bench_random_tensor(ctx, 3, qkv_shape, 1, &qkv);
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_tensor_create(ctx, 3, out_shape, &out));

  bench_attention_state st[PATHS] = {
    [PATH_GEMM] = {ctx, qkv, out, sz->heads, sz->dim_head, M2PT_ATTENTION_GEMM},
    [PATH_FUSED] = {ctx, qkv, out, sz->heads, sz->dim_head, M2PT_ATTENTION_FUSED},
  };
  const bench_case cases[PATHS] = {{bench_run_attention, &st[PATH_GEMM], ctx},
                                   {bench_run_attention, &st[PATH_FUSED], ctx}};
  if (s == M2PT_OK)
    s = measure_paths(ctx, o, sz, cases, 0);
  m2pt_tensor_destroy(qkv);
  m2pt_tensor_destroy(out);
  return s;
}

/* The backward cases: m2pt_attention_backward on the GEMM path (P
 * recomputed into [heads][N][N]), and the fused one from what
 * m2pt_attention_train saved (a training step's use: no N×N buffer). */
typedef struct backward_state {
  m2pt_context *ctx;
  const m2pt_tensor *qkv, *out, *lse, *dout;
  m2pt_tensor *dqkv;
  size_t heads, dim_head;
  int fused;
} backward_state;

static m2pt_status run_backward(void *state)
{
  backward_state *b = state;
  const m2pt_status s =
      b->fused ? m2pt_attention_backward_saved(b->ctx, b->qkv, b->heads, b->dim_head, NULL,
                                               b->out, b->lse, b->dout, b->dqkv)
               : m2pt_attention_backward(b->ctx, b->qkv, b->heads, b->dim_head, NULL, b->dout,
                                         M2PT_ATTENTION_GEMM, b->dqkv);
  return bench_finish(b->ctx, BENCH_CALL(b->ctx, s));
}

/* Both backward paths on qkv [1][N][3·heads·dim_head] and a random dout,
 * in a context of their own (so the workspace starts empty). */
static m2pt_status attention_backward_run(m2pt_context *ctx, const bench_options *o,
                                          const attention_size *sz)
{
  const size_t hd = sz->heads * sz->dim_head;
  const size_t qkv_shape[3] = {1, sz->tokens, 3 * hd}, out_shape[3] = {1, sz->tokens, hd};
  const size_t lse_shape[3] = {1, sz->heads, sz->tokens};
  m2pt_tensor *qkv = NULL, *out = NULL, *lse = NULL, *dout = NULL, *dqkv = NULL;
  m2pt_status s = bench_random_tensor(ctx, 3, qkv_shape, 1, &qkv);
  if (s == M2PT_OK)
    s = bench_random_tensor(ctx, 3, out_shape, 2, &dout);
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_tensor_create(ctx, 3, out_shape, &out));
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_tensor_create(ctx, 3, lse_shape, &lse));
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_tensor_create(ctx, 3, qkv_shape, &dqkv));
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_attention_train(ctx, qkv, sz->heads, sz->dim_head, NULL, out, lse));

  backward_state st[PATHS] = {
    [PATH_GEMM] = {ctx, qkv, out, lse, dout, dqkv, sz->heads, sz->dim_head, 0},
    [PATH_FUSED] = {ctx, qkv, out, lse, dout, dqkv, sz->heads, sz->dim_head, 1},
  };
  const bench_case cases[PATHS] = {{run_backward, &st[PATH_GEMM], ctx},
                                   {run_backward, &st[PATH_FUSED], ctx}};
  if (s == M2PT_OK)
    s = measure_paths(ctx, o, sz, cases, 1);
  m2pt_tensor *all[] = {qkv, out, lse, dout, dqkv};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    m2pt_tensor_destroy(all[i]);
  return s;
}

m2pt_status bench_suite_attention(const m2pt_device_info *info, const bench_options *o)
{
  const attention_size *sizes;
  const size_t n = attention_sizes(o, &sizes);
  m2pt_status s = M2PT_OK;
  for (size_t i = 0; s == M2PT_OK && i < n; i++) {
    for (int backward = 0; s == M2PT_OK && backward < 2; backward++) {
      bench_progress("attention%s N=%zu, %zu heads of %zu (a fresh context)",
                     backward ? " backward" : "", sizes[i].tokens, sizes[i].heads,
                     sizes[i].dim_head);
      m2pt_context *ctx = NULL;
      s = bench_context_create(info, &ctx);
      if (s == M2PT_OK)
        s = backward ? attention_backward_run(ctx, o, &sizes[i])
                     : attention_size_run(ctx, o, &sizes[i]);
      bench_context_destroy(ctx);
    }
  }
  return s;
}
