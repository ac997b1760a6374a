/* m2pt-bench: the attention suite. m2pt_attention's GEMM path (CLBlast's
 * batched GEMMs around a softmax kernel, O(N²) scores) against the fused
 * flash-style kernel (O(N) memory) on ViT-B's heads at growing sequence
 * lengths: their times, speed ratio and peak device memory. */
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

static void print_paths(const attention_size *sz, const bench_timing t[PATHS],
                        const bench_peak_memory mem[PATHS])
{
  static const char *const names[PATHS] = {"gemm", "fused"};
  const size_t dims[4] = {1, sz->tokens, sz->heads, sz->dim_head};
  char shape[64], note[96];
  bench_dims_string(dims, 4, shape, sizeof shape);
  const double flops = bench_attention_flops(1, sz->tokens, sz->heads, sz->dim_head);
  for (int p = 0; p < PATHS; p++) {
    snprintf(note, sizeof note, "peak +%.1f MiB, total %.1f MiB", mem[p].scratch_mib,
             mem[p].total_mib);
    const int last = p == PATH_FUSED;
    bench_print_row("attention", names[p], shape, &t[p], flops,
                    last ? t[PATH_GEMM].median_ms / t[PATH_FUSED].median_ms : 0.0,
                    "gemm/fused (target >= 2 at N=4096)", note);
  }
}

/* Both paths on qkv [1][N][3·heads·dim_head]: each one's memory in a single
 * run, then their times. */
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
  /* The fused path first: it takes no workspace, and the GEMM path's
   * scratch then starts from none. */
  bench_peak_memory mem[PATHS];
  if (s == M2PT_OK)
    s = bench_measure_peak(ctx, &cases[PATH_FUSED], &mem[PATH_FUSED]);
  if (s == M2PT_OK)
    s = bench_measure_peak(ctx, &cases[PATH_GEMM], &mem[PATH_GEMM]);

  char shape[64], label[96];
  const size_t dims[4] = {1, sz->tokens, sz->heads, sz->dim_head};
  bench_dims_string(dims, 4, shape, sizeof shape);
  snprintf(label, sizeof label, "attention %s, gemm and fused", shape);
  bench_options runs = *o;
  runs.warmup = cap(o->warmup, sz->max_warmup);
  runs.reps = cap(o->reps, sz->max_reps);
  bench_timing t[PATHS];
  if (s == M2PT_OK)
    s = bench_measure(cases, PATHS, &runs, label, t);
  if (s == M2PT_OK)
    print_paths(sz, t, mem);
  m2pt_tensor_destroy(qkv);
  m2pt_tensor_destroy(out);
  return s;
}

m2pt_status bench_suite_attention(const m2pt_device_info *info, const bench_options *o)
{
  const attention_size *sizes;
  const size_t n = attention_sizes(o, &sizes);
  m2pt_status s = M2PT_OK;
  for (size_t i = 0; s == M2PT_OK && i < n; i++) {
    bench_progress("attention N=%zu, %zu heads of %zu (a fresh context)", sizes[i].tokens,
                   sizes[i].heads, sizes[i].dim_head);
    m2pt_context *ctx = NULL;
    s = bench_context_create(info, &ctx);
    if (s == M2PT_OK)
      s = attention_size_run(ctx, o, &sizes[i]);
    bench_context_destroy(ctx);
  }
  return s;
}
