/* m2pt-bench: shapes, random inputs, the bench's contexts, timing by
 * profiling events, statistics, progress and error reports. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

m2pt_status bench_check(const m2pt_context *ctx, m2pt_status s, const char *call)
{
  if (s != M2PT_OK) {
    const int name_len = (int)strcspn(call, "(");
    fprintf(stderr, "m2pt-bench: %.*s: %s: %s\n", name_len, call, m2pt_status_string(s),
            m2pt_last_error(ctx));
  }
  return s;
}

/* ---- progress ---- */

static int progress_tty = -1; /* stderr is a terminal; -1: not asked yet */
static int progress_shown;    /* a progress line stands on the terminal */
static char progress_line[512];

static int is_tty(void)
{
  if (progress_tty < 0)
    progress_tty = isatty(STDERR_FILENO);
  return progress_tty;
}

void bench_progress_clear(void)
{
  if (progress_shown) {
    fputs("\r\033[K", stderr);
    fflush(stderr);
    progress_shown = 0;
  }
}

/* Shows progress_line: in place on a terminal, as a line otherwise. */
static void progress_show(void)
{
  if (is_tty()) {
    fprintf(stderr, "\r\033[K%.*s", 200, progress_line);
    progress_shown = 1;
  } else {
    fprintf(stderr, "m2pt-bench: %s\n", progress_line);
  }
  fflush(stderr);
}

void bench_progress(const char *fmt, ...)
{
  const int w = snprintf(progress_line, sizeof progress_line, "[%s] ", bench_device_label());
  va_list ap;
  va_start(ap, fmt);
  if (w > 0 && (size_t)w < sizeof progress_line)
    vsnprintf(progress_line + w, sizeof progress_line - (size_t)w, fmt, ap);
  va_end(ap);
  progress_show();
}

/* The ETA of a measurement after `done` of `total` rounds took `elapsed`
 * seconds: updated in place on a terminal; once, after the warm-up,
 * otherwise. */
static void progress_eta(const char *label, int done, int total, double elapsed)
{
  if (!is_tty() && done != 1)
    return;
  char eta[32] = "?"; /* unknown before the first round */
  if (done > 0)
    snprintf(eta, sizeof eta, "%.0f s", elapsed / done * (total - done));
  bench_progress("%s: round %d of %d, ETA %s", label, done + 1 > total ? total : done + 1,
                 total, eta);
}

static void vreport(const char *fmt, va_list ap)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 1, 0)))
#endif
    ;

static void vreport(const char *fmt, va_list ap)
{
  bench_progress_clear();
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

/* ---- the bench's contexts and their queues ---- */

#define MAX_CONTEXTS 16

static struct {
  m2pt_context *ctx;
  cl_command_queue queue; /* not retained: the m2pt context holds it */
} contexts[MAX_CONTEXTS];

cl_command_queue bench_context_queue(const m2pt_context *ctx)
{
  for (size_t i = 0; ctx && i < MAX_CONTEXTS; i++)
    if (contexts[i].ctx == ctx)
      return contexts[i].queue;
  return NULL;
}

static void register_context(m2pt_context *ctx, cl_command_queue queue)
{
  for (size_t i = 0; i < MAX_CONTEXTS; i++)
    if (!contexts[i].ctx) {
      contexts[i].ctx = ctx;
      contexts[i].queue = queue;
      return;
    }
}

void bench_context_destroy(m2pt_context *ctx)
{
  for (size_t i = 0; ctx && i < MAX_CONTEXTS; i++)
    if (contexts[i].ctx == ctx)
      contexts[i].ctx = NULL;
  m2pt_context_destroy(ctx);
}

/* The OpenCL device of m2pt_device_list's entry `info` (its platform and
 * device indices, as m2pt lists them). */
static m2pt_status find_cl_device(const m2pt_device_info *info, cl_device_id *out)
{
  cl_uint nplat = 0, ndev = 0;
  cl_platform_id plats[64];
  cl_device_id devs[64];
  cl_int err = clGetPlatformIDs(64, plats, &nplat);
  if (err == CL_SUCCESS && info->platform_index < nplat && info->platform_index < 64)
    err = clGetDeviceIDs(plats[info->platform_index], CL_DEVICE_TYPE_ALL, 64, devs, &ndev);
  if (err != CL_SUCCESS || info->platform_index >= nplat || info->device_index >= ndev ||
      info->device_index >= 64)
    return bench_fail(M2PT_ERR_OPENCL, "device %u:%u (%s) not found (OpenCL error %d)",
                      info->platform_index, info->device_index, info->name, (int)err);
  *out = devs[info->device_index];
  return M2PT_OK;
}

m2pt_status bench_context_create(const m2pt_device_info *info, m2pt_context **ctx)
{
  *ctx = NULL;
  cl_device_id device;
  m2pt_status s = find_cl_device(info, &device);
  if (s != M2PT_OK)
    return s;
  cl_int err;
  cl_context cl = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
  if (!cl)
    return bench_fail(M2PT_ERR_OPENCL, "clCreateContext on %s: OpenCL error %d", info->name,
                      (int)err);
  /* clCreateCommandQueue: the OpenCL 1.2 call, as the library makes its own. */
  cl_command_queue queue = clCreateCommandQueue(cl, device, CL_QUEUE_PROFILING_ENABLE, &err);
  if (!queue) {
    clReleaseContext(cl);
    return bench_fail(M2PT_ERR_OPENCL, "clCreateCommandQueue on %s: OpenCL error %d",
                      info->name, (int)err);
  }
  m2pt_context_options opts = m2pt_context_options_default();
  opts.flags = M2PT_CONTEXT_PROFILING;
  s = BENCH_CALL(NULL, m2pt_context_wrap(cl, device, queue, &opts, ctx));
  if (s == M2PT_OK)
    register_context(*ctx, queue);
  /* The m2pt context retains both for as long as it lives. */
  clReleaseCommandQueue(queue);
  clReleaseContext(cl);
  return s;
}

/* ---- timing ---- */

/* The run being timed on the device: bench_finish enqueues `end` on `queue`
 * (the single thread of the bench runs one case at a time). */
static struct {
  cl_command_queue queue;
  cl_event end;
} timer;

m2pt_status bench_finish(m2pt_context *ctx, m2pt_status s)
{
  if (s != M2PT_OK)
    return s;
  if (timer.queue && !timer.end && bench_context_queue(ctx) == timer.queue &&
      clEnqueueMarkerWithWaitList(timer.queue, 0, NULL, &timer.end) != CL_SUCCESS)
    timer.end = NULL;
  return BENCH_CALL(ctx, m2pt_context_finish(ctx));
}

/* Milliseconds from the end of `start` to the end of `end`; < 0 on failure. */
static double event_ms(cl_event start, cl_event end)
{
  cl_ulong t0 = 0, t1 = 0;
  if (!start || !end || clWaitForEvents(1, &end) != CL_SUCCESS ||
      clGetEventProfilingInfo(start, CL_PROFILING_COMMAND_END, sizeof t0, &t0, NULL) !=
          CL_SUCCESS ||
      clGetEventProfilingInfo(end, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) !=
          CL_SUCCESS ||
      t1 < t0)
    return -1.0;
  return (double)(t1 - t0) * 1e-6;
}

/* A case's kernel time by kernel name, summed over its timed runs
 * (--kernels). */
typedef struct kernel_tally {
  size_t count;
  m2pt_kernel_time k[M2PT_KERNEL_TIMES_MAX];
} kernel_tally;

/* m2pt's kernel time of the run just done on c's context into *kernel_ms,
 * added by kernel to `tally` where there is one. */
static m2pt_status collect_kernel_time(const bench_case *c, double *kernel_ms,
                                       kernel_tally *tally)
{
  if (!tally)
    return BENCH_CALL(c->profiled, m2pt_context_kernel_time(c->profiled, kernel_ms));
  m2pt_kernel_time run[M2PT_KERNEL_TIMES_MAX];
  size_t count = 0;
  const m2pt_status s = BENCH_CALL(
      c->profiled, m2pt_context_kernel_times(c->profiled, run, M2PT_KERNEL_TIMES_MAX, &count));
  *kernel_ms = 0.0;
  for (size_t i = 0; s == M2PT_OK && i < count && i < M2PT_KERNEL_TIMES_MAX; i++) {
    *kernel_ms += run[i].ms;
    size_t j = 0;
    while (j < tally->count && strcmp(tally->k[j].name, run[i].name))
      j++;
    if (j == M2PT_KERNEL_TIMES_MAX) { /* a name more than fit: the last slot takes it */
      j--;
      snprintf(tally->k[j].name, sizeof tally->k[j].name, "(other)");
    }
    else if (j == tally->count) {
      tally->k[tally->count++] = run[i];
      tally->k[j].ms = 0.0;
      tally->k[j].launches = 0;
    }
    tally->k[j].ms += run[i].ms;
    tally->k[j].launches += run[i].launches;
  }
  return s;
}

/* One timed run: between two markers on the context's queue where it has
 * one (wall clock as the fallback), then m2pt's kernel time. */
static m2pt_status timed_run(const bench_case *c, double *ms, double *kernel_ms, int *events,
                             kernel_tally *tally)
{
  cl_command_queue queue = bench_context_queue(c->profiled);
  cl_event start = NULL;
  if (queue && clEnqueueMarkerWithWaitList(queue, 0, NULL, &start) == CL_SUCCESS) {
    timer.queue = queue;
    timer.end = NULL;
  }
  const double t0 = bench_now();
  m2pt_status s = c->run(c->state);
  const double wall_ms = (bench_now() - t0) * 1e3;
  const double device_ms = s == M2PT_OK ? event_ms(start, timer.end) : -1.0;
  if (start)
    clReleaseEvent(start);
  if (timer.end)
    clReleaseEvent(timer.end);
  timer.queue = NULL;
  timer.end = NULL;
  *events = device_ms >= 0.0;
  *ms = *events ? device_ms : wall_ms;
  if (s == M2PT_OK && c->profiled)
    s = collect_kernel_time(c, kernel_ms, tally);
  return s;
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

/* Warm-up rounds, then forgets the kernel time they left on the contexts. */
static m2pt_status warm_up(const bench_case *cases, size_t n, int rounds, const char *label,
                           int total)
{
  m2pt_status s = M2PT_OK;
  const double t0 = bench_now();
  for (int r = 0; s == M2PT_OK && r < rounds; r++) {
    progress_eta(label, r, total, bench_now() - t0);
    for (size_t c = 0; s == M2PT_OK && c < n; c++)
      s = cases[c].run(cases[c].state);
  }
  double drained;
  for (size_t c = 0; s == M2PT_OK && c < n; c++)
    if (cases[c].profiled)
      s = BENCH_CALL(cases[c].profiled, m2pt_context_kernel_time(cases[c].profiled, &drained));
  return s;
}

static int longer_kernel_first(const void *a, const void *b)
{
  const double x = ((const m2pt_kernel_time *)a)->ms, y = ((const m2pt_kernel_time *)b)->ms;
  return (x < y) - (x > y);
}

/* The tally's longest kernels into t, per run. */
static void keep_kernels(kernel_tally *tally, size_t reps, bench_timing *t)
{
  qsort(tally->k, tally->count, sizeof tally->k[0], longer_kernel_first);
  for (size_t i = 0; i < tally->count; i++) {
    const double ms = tally->k[i].ms / (double)reps;
    if (i < BENCH_KERNELS_KEPT) {
      bench_kernel_share *k = &t->kernels[t->n_kernels++];
      memcpy(k->name, tally->k[i].name, sizeof k->name);
      k->ms = ms;
      k->launches = (double)tally->k[i].launches / (double)reps;
    } else {
      t->rest_ms += ms;
      t->rest_kernels++;
    }
  }
}

/* Sorts one case's samples and sums them up. */
static void summarize(const bench_case *c, double *ms, double *kernel, size_t reps, int events,
                      kernel_tally *tally, bench_timing *t)
{
  memset(t, 0, sizeof *t);
  t->median_ms = sorted_median(ms, reps);
  t->min_ms = ms[0];
  t->max_ms = ms[reps - 1];
  t->kernel_ms = c->profiled ? sorted_median(kernel, reps) : -1.0;
  t->events = events;
  if (tally && c->profiled)
    keep_kernels(tally, reps, t);
}

m2pt_status bench_measure(const bench_case *cases, size_t n, const bench_options *o,
                          const char *label, bench_timing *t)
{
  const int total = o->warmup + o->reps;
  const double t0 = bench_now();
  m2pt_status s = warm_up(cases, n, o->warmup, label, total);
  if (s != M2PT_OK)
    return s;
  const size_t reps = (size_t)o->reps;
  double *ms = calloc(2 * n * reps, sizeof *ms); /* [case][rep], then kernel's */
  int *events = calloc(n, sizeof *events);
  kernel_tally *tallies = o->kernels ? calloc(n, sizeof *tallies) : NULL;
  if (!ms || !events || (o->kernels && !tallies)) {
    free(ms);
    free(events);
    free(tallies);
    return bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  }
  double *kernel = ms + n * reps;
  for (size_t c = 0; c < n; c++)
    events[c] = 1;
  for (size_t r = 0; s == M2PT_OK && r < reps; r++) {
    progress_eta(label, o->warmup + (int)r, total, bench_now() - t0);
    for (size_t c = 0; s == M2PT_OK && c < n; c++) {
      int ev = 0;
      s = timed_run(&cases[c], &ms[c * reps + r], &kernel[c * reps + r], &ev,
                    tallies ? &tallies[c] : NULL);
      events[c] &= ev; /* one sample by wall clock: the case is by wall clock */
    }
  }
  for (size_t c = 0; s == M2PT_OK && c < n; c++)
    summarize(&cases[c], &ms[c * reps], &kernel[c * reps], reps, events[c],
              tallies ? &tallies[c] : NULL, &t[c]);
  free(ms);
  free(events);
  free(tallies);
  return s;
}

m2pt_status bench_measure_peak(m2pt_context *ctx, const bench_case *c, bench_peak_memory *m)
{
  const double mib = 1024.0 * 1024.0;
  m2pt_stats before, after;
  m2pt_status s = BENCH_CALL(ctx, m2pt_context_stats(ctx, &before));
  m2pt_context_stats_reset(ctx);
  if (s == M2PT_OK)
    s = c->run(c->state);
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_context_stats(ctx, &after));
  if (s == M2PT_OK) {
    m->scratch_mib = (double)(after.device_bytes_peak - before.device_bytes_live) / mib;
    m->total_mib = (double)after.device_bytes_peak / mib;
  }
  return s;
}

void bench_shape_string(bench_shape shape, char *buf, size_t size)
{
  snprintf(buf, size, "%zux%zu->%zu", shape.rows, shape.in, shape.out);
}
