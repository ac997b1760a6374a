/* m2pt-bench: the gemm suite (m2pt_gemm, with OpenBLAS as the CPU reference)
 * and the linear suite (a re-parameterized layer unmerged, then merged). */
#include <stdlib.h>
#include <string.h>

#ifdef M2PT_BENCH_HAVE_OPENBLAS
#  include <cblas.h>
#endif

#include "bench.h"

#define LINEAR_SCALE 0.5f /* λ */

/* A shape's input and output on the device, and host arrays for uploads and
 * for the CPU reference. */
typedef struct workload {
  bench_shape shape;
  float *x_host; /* [rows][in] */
  float *w_host; /* [out][in]: weights (and biases) are drawn into it */
  float *y_host; /* [rows][out] */
  m2pt_tensor *x, *y;
} workload;

static void workload_destroy(workload *w)
{
  m2pt_tensor_destroy(w->x);
  m2pt_tensor_destroy(w->y);
  free(w->x_host);
  free(w->w_host);
  free(w->y_host);
  memset(w, 0, sizeof *w);
}

static m2pt_status workload_create(m2pt_context *ctx, bench_shape shape, workload *w)
{
  memset(w, 0, sizeof *w);
  w->shape = shape;
  w->x_host = malloc(shape.rows * shape.in * sizeof(float));
  w->w_host = malloc(shape.out * shape.in * sizeof(float));
  w->y_host = malloc(shape.rows * shape.out * sizeof(float));
  if (!w->x_host || !w->w_host || !w->y_host) {
    workload_destroy(w);
    return bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  }
  bench_fill_random(w->x_host, shape.rows * shape.in, 1);
  const size_t x_shape[2] = {shape.rows, shape.in}, y_shape[2] = {shape.rows, shape.out};
  m2pt_status s = BENCH_CALL(ctx, m2pt_tensor_create(ctx, 2, x_shape, &w->x));
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_tensor_create(ctx, 2, y_shape, &w->y));
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_tensor_write(w->x, w->x_host, shape.rows * shape.in));
  if (s != M2PT_OK)
    workload_destroy(w);
  return s;
}

/* ---- gemm ---- */

/* OpenBLAS runs in the gemm suite of the first CPU device only (it is host
 * code; its records would repeat with a second CPU device). */
static int with_openblas;

m2pt_status bench_run_gemm(void *state)
{
  bench_gemm_state *g = state;
  return bench_finish(g->ctx, BENCH_CALL(g->ctx, m2pt_gemm(g->ctx, M2PT_NO_TRANS, M2PT_TRANS,
                                                           1.0f, g->x, g->w, 0.0f, g->y)));
}

#ifdef M2PT_BENCH_HAVE_OPENBLAS
static m2pt_status run_openblas(void *state)
{
  workload *w = state;
  const bench_shape sh = w->shape;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)sh.rows, (blasint)sh.out,
              (blasint)sh.in, 1.0f, w->x_host, (blasint)sh.in, w->w_host, (blasint)sh.in, 0.0f,
              w->y_host, (blasint)sh.out);
  return M2PT_OK;
}

/* The same product by OpenBLAS on the host, and CLBlast's time relative to it. */
static m2pt_status openblas_reference(workload *w, const bench_options *o, double clblast_ms)
{
  bench_timing t;
  const bench_case c = {run_openblas, w, NULL};
  const m2pt_status s = bench_measure(&c, 1, o, "gemm: openblas", &t);
  if (s == M2PT_OK) {
    char shape[64];
    bench_shape_string(w->shape, shape, sizeof shape);
    const bench_row r = {.suite = "gemm", .name = "gemm", .shape = shape, .t = &t,
                         .flops = bench_flops(w->shape), .ratio = clblast_ms / t.median_ms,
                         .ratio_label = "device/openblas", .openblas = 1};
    bench_report(&r);
  }
  return s;
}
#else
static m2pt_status openblas_reference(workload *w, const bench_options *o, double clblast_ms)
{
  return M2PT_OK;
}
#endif

static m2pt_status gemm_shape(m2pt_context *ctx, const m2pt_device_info *info,
                              const bench_options *o, bench_shape shape)
{
  workload w;
  m2pt_tensor *weight = NULL;
  const size_t w_shape[2] = {shape.out, shape.in};
  m2pt_status s = workload_create(ctx, shape, &w);
  if (s != M2PT_OK)
    return s;
  bench_fill_random(w.w_host, shape.out * shape.in, 2);
  s = BENCH_CALL(ctx, m2pt_tensor_create(ctx, 2, w_shape, &weight));
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_tensor_write(weight, w.w_host, shape.out * shape.in));

  bench_timing t;
  bench_gemm_state g = {ctx, w.x, weight, w.y};
  const bench_case c = {bench_run_gemm, &g, ctx};
  char label[96];
  bench_shape_string(shape, label + 5, sizeof label - 5);
  memcpy(label, "gemm ", 5);
  if (s == M2PT_OK)
    s = bench_measure(&c, 1, o, label, &t);
  if (s == M2PT_OK)
    bench_print_timing("gemm", "gemm", shape, &t, 0.0, NULL);
  if (s == M2PT_OK && with_openblas)
    s = openblas_reference(&w, o, t.median_ms);
  m2pt_tensor_destroy(weight);
  workload_destroy(&w);
  return s;
}

/* ---- linear ---- */

typedef struct linear_state {
  m2pt_context *ctx;
  m2pt_linear *layer;
  const m2pt_tensor *x;
  m2pt_tensor *y;
} linear_state;

static m2pt_status run_linear(void *state)
{
  linear_state *l = state;
  return bench_finish(l->ctx, BENCH_CALL(l->ctx, m2pt_linear_forward(l->layer, l->x, l->y)));
}

m2pt_status bench_set_linear_parameters(m2pt_context *ctx, m2pt_linear *layer, bench_shape shape,
                                        float scale, float *host)
{
  const size_t n = shape.out * shape.in;
  bench_fill_random(host, n, 2);
  m2pt_status s = BENCH_CALL(ctx, m2pt_linear_set_weight(layer, host, n));
  if (m2pt_linear_has_pathway(layer)) {
    bench_fill_random(host, n, 3);
    if (s == M2PT_OK)
      s = BENCH_CALL(ctx, m2pt_linear_set_aux_weight(layer, host, n));
    if (s == M2PT_OK)
      s = BENCH_CALL(ctx, m2pt_linear_set_scale(layer, scale));
  }
  bench_fill_random(host, shape.out, 4);
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_linear_set_bias(layer, host, shape.out));
  return s;
}

/* One layer as it comes, one with the same parameters merged, run in turn
 * so that drift in the machine's speed affects both alike. The warm-up's
 * first forward forms the unmerged layer's effective weight. */
static m2pt_status linear_shape(m2pt_context *ctx, const m2pt_device_info *info,
                                const bench_options *o, bench_shape shape)
{
  workload w;
  m2pt_status s = workload_create(ctx, shape, &w);
  if (s != M2PT_OK)
    return s;
  linear_state l[2] = {{ctx, NULL, w.x, w.y}, {ctx, NULL, w.x, w.y}};
  for (int i = 0; s == M2PT_OK && i < 2; i++) {
    s = BENCH_CALL(ctx, m2pt_linear_create(ctx, shape.in, shape.out,
                                           M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY, &l[i].layer));
    if (s == M2PT_OK)
      s = bench_set_linear_parameters(ctx, l[i].layer, shape, LINEAR_SCALE, w.w_host);
  }
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_linear_merge(l[1].layer));

  const bench_case cases[2] = {{run_linear, &l[0], ctx}, {run_linear, &l[1], ctx}};
  bench_timing t[2];
  char label[96];
  bench_shape_string(shape, label + 7, sizeof label - 7);
  memcpy(label, "linear ", 7);
  if (s == M2PT_OK)
    s = bench_measure(cases, 2, o, label, t);
  if (s == M2PT_OK) {
    bench_print_timing("linear", "linear-unmerged", shape, &t[0], 0.0, NULL);
    bench_print_timing("linear", "linear-merged", shape, &t[1], t[0].median_ms / t[1].median_ms,
                       "unmerged/merged (target <= 1.10)");
  }
  m2pt_linear_destroy(l[0].layer);
  m2pt_linear_destroy(l[1].layer);
  workload_destroy(&w);
  return s;
}

/* ---- the suites ---- */

typedef m2pt_status (*shape_fn)(m2pt_context *ctx, const m2pt_device_info *info,
                                const bench_options *o, bench_shape shape);

static m2pt_status for_each_shape(const char *suite, shape_fn fn, m2pt_context *ctx,
                                  const m2pt_device_info *info, const bench_options *o)
{
  const bench_shape *shapes;
  const size_t n = bench_shapes(o, &shapes);
  m2pt_status s = M2PT_OK;
  for (size_t i = 0; s == M2PT_OK && i < n; i++) {
    bench_progress("%s %zux%zu->%zu", suite, shapes[i].rows, shapes[i].in, shapes[i].out);
    s = fn(ctx, info, o, shapes[i]);
  }
  return s;
}

m2pt_status bench_suite_gemm(m2pt_context *ctx, const m2pt_device_info *info,
                             const bench_options *o)
{
  with_openblas = info->is_cpu && !bench_openblas_once();
  return for_each_shape("gemm", gemm_shape, ctx, info, o);
}

m2pt_status bench_suite_linear(m2pt_context *ctx, const m2pt_device_info *info,
                               const bench_options *o)
{
  return for_each_shape("linear", linear_shape, ctx, info, o);
}
