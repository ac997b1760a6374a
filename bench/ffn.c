/* m2pt-bench: the ffn suite. m2pt_ffn_forward (the seed's cross_modal_ffn,
 * fc2(GELU(fc1(x)))) at ViT-B/16's shapes, re-parameterized and unmerged,
 * merged, and plain (no pathway), timed together. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

#define FFN_SCALE 0.5f /* λ of both linears */

typedef struct ffn_size {
  size_t batch, tokens, dim, hidden;
} ffn_size;

static const ffn_size vit_sizes[] = {{1, 197, 768, 3072}, {8, 197, 768, 3072}};
#define QUICK_SIZES 1 /* --quick: B = 1 */
static const ffn_size smoke_size = {2, 3, 8, 32};

static size_t ffn_sizes(const bench_options *o, const ffn_size **sizes)
{
  if (o->smoke) {
    *sizes = &smoke_size;
    return 1;
  }
  *sizes = vit_sizes;
  return o->quick ? QUICK_SIZES : sizeof vit_sizes / sizeof vit_sizes[0];
}

enum { F_UNMERGED, F_MERGED, F_PLAIN, FFNS };

typedef struct ffn_state {
  m2pt_context *ctx;
  m2pt_ffn *ffn;
  const m2pt_tensor *x;
  m2pt_tensor *y;
} ffn_state;

static m2pt_status run_ffn(void *state)
{
  ffn_state *f = state;
  return bench_finish(f->ctx, BENCH_CALL(f->ctx, m2pt_ffn_forward(f->ffn, f->x, f->y)));
}

/* W (and W_aux) of magnitude 1/√in, biases, λ; the same W for every FFN. */
static m2pt_status set_linear(m2pt_context *ctx, m2pt_linear *l, size_t in, size_t out, int aux,
                              unsigned seed, float *host)
{
  const size_t n = in * out;
  const float scale = 1.0f / sqrtf((float)in);
  bench_fill_random(host, n, seed);
  for (size_t i = 0; i < n; i++)
    host[i] *= scale;
  m2pt_status s = BENCH_CALL(ctx, m2pt_linear_set_weight(l, host, n));
  bench_fill_random(host, out, seed + 1);
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_linear_set_bias(l, host, out));
  if (aux) {
    bench_fill_random(host, n, seed + 2);
    for (size_t i = 0; i < n; i++)
      host[i] *= scale;
    if (s == M2PT_OK)
      s = BENCH_CALL(ctx, m2pt_linear_set_aux_weight(l, host, n));
    if (s == M2PT_OK)
      s = BENCH_CALL(ctx, m2pt_linear_set_scale(l, FFN_SCALE));
  }
  return s;
}

static m2pt_status ffn_make(m2pt_context *ctx, const ffn_size *sz, int which, m2pt_ffn **out)
{
  const int aux = which != F_PLAIN;
  float *host = malloc(sz->dim * sz->hidden * sizeof *host);
  m2pt_status s = host ? BENCH_CALL(ctx, m2pt_ffn_create(ctx, sz->dim, sz->hidden,
                                                         aux ? M2PT_LINEAR_PATHWAY : 0u,
                                                         M2PT_GELU_ERF, out))
                       : bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  if (s == M2PT_OK)
    s = set_linear(ctx, m2pt_ffn_fc1(*out), sz->dim, sz->hidden, aux, 40, host);
  if (s == M2PT_OK)
    s = set_linear(ctx, m2pt_ffn_fc2(*out), sz->hidden, sz->dim, aux, 50, host);
  if (s == M2PT_OK && which == F_MERGED)
    s = BENCH_CALL(ctx, m2pt_ffn_merge(*out));
  free(host);
  return s;
}

static m2pt_status ffn_size_run(m2pt_context *ctx, const bench_options *o, const ffn_size *sz)
{
  const size_t shape[3] = {sz->batch, sz->tokens, sz->dim};
  m2pt_tensor *x = NULL, *y = NULL;
  m2pt_ffn *ffn[FFNS] = {NULL};
  m2pt_status s = bench_random_tensor(ctx, 3, shape, 60, &x);
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_tensor_create(ctx, 3, shape, &y));
  for (int i = 0; s == M2PT_OK && i < FFNS; i++)
    s = ffn_make(ctx, sz, i, &ffn[i]);
  ffn_state st[FFNS];
  bench_case cases[FFNS];
  for (int i = 0; i < FFNS; i++) {
    st[i] = (ffn_state){ctx, ffn[i], x, y};
    cases[i] = (bench_case){run_ffn, &st[i], ctx};
  }
  char shp[48];
  bench_dims_string(shape, 3, shp, sizeof shp);
  char label[96];
  snprintf(label, sizeof label, "ffn %s", shp);
  bench_timing t[FFNS];
  if (s == M2PT_OK)
    s = bench_measure(cases, FFNS, o, label, t);
  if (s == M2PT_OK) {
    static const char *const names[FFNS] = {"ffn-unmerged", "ffn-merged", "ffn-plain"};
    const double flops = 4.0 * (double)(sz->batch * sz->tokens) * (double)sz->dim *
                         (double)sz->hidden;
    const double ratios[FFNS] = {0.0, t[F_UNMERGED].median_ms / t[F_MERGED].median_ms,
                                 t[F_MERGED].median_ms / t[F_PLAIN].median_ms};
    const char *const labels[FFNS] = {NULL, "unmerged/merged (target <= 1.10)",
                                      "merged/plain"};
    for (int i = 0; i < FFNS; i++)
      bench_print_row("ffn", names[i], shp, &t[i], flops, ratios[i], labels[i], NULL);
  }
  for (int i = 0; i < FFNS; i++)
    m2pt_ffn_destroy(ffn[i]);
  m2pt_tensor_destroy(x);
  m2pt_tensor_destroy(y);
  return s;
}

m2pt_status bench_suite_ffn(m2pt_context *ctx, const bench_options *o)
{
  const ffn_size *sizes;
  const size_t n = ffn_sizes(o, &sizes);
  m2pt_status s = M2PT_OK;
  for (size_t i = 0; s == M2PT_OK && i < n; i++)
    s = ffn_size_run(ctx, o, &sizes[i]);
  return s;
}
