/* m2pt-bench: shapes, random inputs, timing, statistics, the result table,
 * error reports. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

/* ViT-B/16: 197 tokens; qkv, attention output, MLP up, MLP down. */
static const bench_shape vit_shapes[] = {
  {197, 768, 2304},
  {197, 768, 768},
  {197, 768, 3072},
  {197, 3072, 768},
};
static const bench_shape smoke_shape = {3, 17, 5};

size_t bench_shapes(const bench_options *o, const bench_shape **shapes)
{
  if (o->smoke) {
    *shapes = &smoke_shape;
    return 1;
  }
  *shapes = vit_shapes;
  return sizeof vit_shapes / sizeof vit_shapes[0];
}

bench_shape bench_startup_shape(const bench_options *o)
{
  return o->smoke ? smoke_shape : vit_shapes[1];
}

double bench_flops(bench_shape shape)
{
  return 2.0 * (double)shape.rows * (double)shape.in * (double)shape.out;
}

double bench_attention_flops(size_t batch, size_t tokens, size_t heads, size_t dim_head)
{
  return 4.0 * (double)batch * (double)heads * (double)tokens * (double)tokens * (double)dim_head;
}

void bench_fill_random(float *dst, size_t n, unsigned seed)
{
  uint32_t state = 2463534242u ^ seed; /* xorshift32; never 0 for small seeds */
  for (size_t i = 0; i < n; i++) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    dst[i] = (float)(state >> 8) * (2.0f / 16777216.0f) - 1.0f;
  }
}

m2pt_status bench_random_tensor(m2pt_context *ctx, size_t ndim, const size_t *shape, unsigned seed,
                                m2pt_tensor **out)
{
  size_t n = 1;
  for (size_t i = 0; i < ndim; i++)
    n *= shape[i];
  float *host = malloc(n * sizeof *host);
  if (!host)
    return bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  bench_fill_random(host, n, seed);
  m2pt_status s = BENCH_CALL(ctx, m2pt_tensor_create(ctx, ndim, shape, out));
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_tensor_write(*out, host, n));
  if (s != M2PT_OK) {
    m2pt_tensor_destroy(*out);
    *out = NULL;
  }
  free(host);
  return s;
}

void bench_dims_string(const size_t *dims, size_t n, char *buf, size_t size)
{
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n && used < size; i++) {
    const int w = snprintf(buf + used, size - used, i ? "x%zu" : "%zu", dims[i]);
    if (w < 0)
      break;
    used += (size_t)w;
  }
}

double bench_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

m2pt_status bench_finish(m2pt_context *ctx, m2pt_status s)
{
  return s == M2PT_OK ? BENCH_CALL(ctx, m2pt_context_finish(ctx)) : s;
}

m2pt_status bench_check(const m2pt_context *ctx, m2pt_status s, const char *call)
{
  if (s != M2PT_OK) {
    const int name_len = (int)strcspn(call, "(");
    fprintf(stderr, "m2pt-bench: %.*s: %s: %s\n", name_len, call, m2pt_status_string(s),
            m2pt_last_error(ctx));
  }
  return s;
}

static void vreport(const char *fmt, va_list ap)
{
  fputs("m2pt-bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
}

m2pt_status bench_fail(m2pt_status s, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vreport(fmt, ap);
  va_end(ap);
  return s;
}

void bench_progress(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vreport(fmt, ap);
  va_end(ap);
}

static int compare_double(const void *a, const void *b)
{
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Sorts v[0..n) and returns its median. */
static double sorted_median(double *v, size_t n)
{
  qsort(v, n, sizeof *v, compare_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One timed run: wall clock around the run, then m2pt's kernel time. */
static m2pt_status timed_run(const bench_case *c, double *wall_ms, double *kernel_ms)
{
  const double t0 = bench_now();
  m2pt_status s = c->run(c->state);
  *wall_ms = (bench_now() - t0) * 1e3;
  if (s == M2PT_OK && c->profiled)
    s = BENCH_CALL(c->profiled, m2pt_context_kernel_time(c->profiled, kernel_ms));
  return s;
}

/* Warm-up rounds, then forgets the kernel time they left on the contexts. */
static m2pt_status warm_up(const bench_case *cases, size_t n, int rounds)
{
  m2pt_status s = M2PT_OK;
  for (int r = 0; r < rounds; r++)
    for (size_t c = 0; s == M2PT_OK && c < n; c++)
      s = cases[c].run(cases[c].state);
  double drained;
  for (size_t c = 0; s == M2PT_OK && c < n; c++)
    if (cases[c].profiled)
      s = BENCH_CALL(cases[c].profiled, m2pt_context_kernel_time(cases[c].profiled, &drained));
  return s;
}

/* Sorts one case's samples and sums them up. */
static void summarize(const bench_case *c, double *wall, double *kernel, size_t reps,
                      bench_timing *t)
{
  t->median_ms = sorted_median(wall, reps);
  t->min_ms = wall[0];
  t->max_ms = wall[reps - 1];
  t->kernel_ms = c->profiled ? sorted_median(kernel, reps) : -1.0;
}

m2pt_status bench_measure(const bench_case *cases, size_t n, const bench_options *o,
                          bench_timing *t)
{
  m2pt_status s = warm_up(cases, n, o->warmup);
  if (s != M2PT_OK)
    return s;
  const size_t reps = (size_t)o->reps;
  double *wall = calloc(2 * n * reps, sizeof *wall); /* [case][rep], then kernel's */
  if (!wall)
    return bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  double *kernel = wall + n * reps;
  for (size_t r = 0; s == M2PT_OK && r < reps; r++)
    for (size_t c = 0; s == M2PT_OK && c < n; c++)
      s = timed_run(&cases[c], &wall[c * reps + r], &kernel[c * reps + r]);
  for (size_t c = 0; s == M2PT_OK && c < n; c++)
    summarize(&cases[c], &wall[c * reps], &kernel[c * reps], reps, &t[c]);
  free(wall);
  return s;
}

void bench_print_device(const m2pt_device_info *info)
{
  printf("\n== device %u:%u  %s (%s; %s, driver %s) ==\n", info->platform_index,
         info->device_index, info->name, info->is_gpu ? "GPU" : info->is_cpu ? "CPU" : "other",
         info->platform_name, info->driver_version);
}

void bench_print_header(void)
{
  printf("%-9s %-17s %-14s %10s %10s %10s %8s %10s  %s\n", "suite", "case", "shape",
         "median ms", "min ms", "max ms", "GFLOP/s", "m2pt-k ms", "ratio");
}

void bench_shape_string(bench_shape shape, char *buf, size_t size)
{
  snprintf(buf, size, "%zux%zu->%zu", shape.rows, shape.in, shape.out);
}

/* The ratio column and the end of a row. */
static void end_row(double ratio, const char *ratio_label, const char *note)
{
  if (ratio > 0.0)
    printf("  %.2f %s", ratio, ratio_label);
  if (note)
    printf("  (%s)", note);
  putchar('\n');
  fflush(stdout);
}

void bench_print_row(const char *suite, const char *name, const char *shape,
                     const bench_timing *t, double flops, double ratio, const char *ratio_label,
                     const char *note)
{
  char gflops[32] = "-", kernel[32] = "-";
  if (flops > 0.0)
    snprintf(gflops, sizeof gflops, "%.1f", flops / (t->median_ms * 1e6));
  if (t->kernel_ms >= 0.0)
    snprintf(kernel, sizeof kernel, "%.3f", t->kernel_ms);
  printf("%-9s %-17s %-14s %10.3f %10.3f %10.3f %8s %10s", suite, name, shape, t->median_ms,
         t->min_ms, t->max_ms, gflops, kernel);
  end_row(ratio, ratio_label, note);
}

void bench_print_timing(const char *suite, const char *name, bench_shape shape,
                        const bench_timing *t, double ratio, const char *ratio_label)
{
  char shp[64];
  bench_shape_string(shape, shp, sizeof shp);
  bench_print_row(suite, name, shp, t, bench_flops(shape), ratio, ratio_label, NULL);
}

void bench_print_seconds(const char *suite, const char *name, bench_shape shape,
                         double seconds, double ratio, const char *ratio_label,
                         const char *note)
{
  char shp[64];
  bench_shape_string(shape, shp, sizeof shp);
  printf("%-9s %-17s %-14s %10.1f %10s %10s %8s %10s", suite, name, shp, seconds * 1e3, "-",
         "-", "-", "-");
  end_row(ratio, ratio_label, note);
}
