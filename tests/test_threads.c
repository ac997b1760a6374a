/* Separate contexts in separate threads (include/m2pt/context.h): threads that
 * share nothing create contexts, run a linear forward (CLBlast's GEMMs in
 * some), list and select devices and destroy their contexts, all at once; and
 * fresh processes whose threads race on the very first context creation.
 * Worker threads never call cmocka (its failures longjmp out of the caller's
 * thread): each records its first failure, and the main thread asserts. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h" /* M2PT_PRINTF */
#include "reference.h"
#include "test_util.h"

enum { THREADS = 4 };

typedef struct worker {
  pthread_t thread;
  int id;
  int cycles;
  pthread_barrier_t *start;
  char failure[512]; /* empty while all went well */
} worker;

/* Keeps the worker's first failure. */
static void record(worker *w, const char *fmt, ...) M2PT_PRINTF(2, 3);
static void record(worker *w, const char *fmt, ...)
{
  if (w->failure[0])
    return;
  const int n = snprintf(w->failure, sizeof w->failure, "thread %d: ", w->id);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->failure + n, sizeof w->failure - (size_t)n, fmt, ap);
  va_end(ap);
}

static void fail_with(worker *w, const m2pt_context *ctx, m2pt_status s, const char *what)
{
  record(w, "%s: %s: %s", what, m2pt_status_string(s), m2pt_last_error(ctx));
}

#define TRY(w, ctx, call)                 \
  do {                                    \
    const m2pt_status s_ = (call);        \
    if (s_ != M2PT_OK) {                  \
      fail_with((w), (ctx), s_, #call);   \
      goto done;                          \
    }                                     \
  } while (0)

/* Deterministic values in [-1, 1) without test_util's asserting helpers. */
static void fill(float *dst, size_t n, unsigned seed)
{
  unsigned s = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    dst[i] = (float)(s >> 8) / (float)(1u << 23) - 1.0f;
  }
}

/* One re-parameterized linear forward on ctx against the reference. */
static void linear_forward(worker *w, m2pt_context *ctx, unsigned seed)
{
  enum { ROWS = 5, IN = 17, OUT = 9 };
  float x[ROWS * IN], wt[OUT * IN], wa[OUT * IN], b[OUT], y[ROWS * OUT];
  double ref[ROWS * OUT];
  fill(x, ROWS * IN, seed);
  fill(wt, OUT * IN, seed + 1);
  fill(wa, OUT * IN, seed + 2);
  fill(b, OUT, seed + 3);
  m2pt_linear *layer = NULL;
  m2pt_tensor *tx = NULL, *ty = NULL;
  const size_t xs[2] = {ROWS, IN}, ys[2] = {ROWS, OUT};
  TRY(w, ctx, m2pt_linear_create(ctx, IN, OUT, M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY, &layer));
  TRY(w, ctx, m2pt_linear_set_weight(layer, wt, OUT * IN));
  TRY(w, ctx, m2pt_linear_set_aux_weight(layer, wa, OUT * IN));
  TRY(w, ctx, m2pt_linear_set_bias(layer, b, OUT));
  TRY(w, ctx, m2pt_linear_set_scale(layer, 0.25f));
  TRY(w, ctx, m2pt_tensor_create(ctx, 2, xs, &tx));
  TRY(w, ctx, m2pt_tensor_create(ctx, 2, ys, &ty));
  TRY(w, ctx, m2pt_tensor_write(tx, x, ROWS * IN));
  TRY(w, ctx, m2pt_linear_forward(layer, tx, ty));
  TRY(w, ctx, m2pt_tensor_read(ty, y, ROWS * OUT));
  ref_linear(x, ROWS, IN, OUT, wt, wa, 0.25, b, NULL, ref);
  for (size_t i = 0; i < ROWS * OUT; i++)
    if (!(fabs(y[i] - ref[i]) <= 1e-4 * (1.0 + fabs(ref[i])))) {
      record(w, "linear output %zu is %g, reference %g (%s)", i, y[i], ref[i],
             m2pt_context_gemm_backend(ctx));
      break;
    }
done:
  m2pt_tensor_destroy(tx);
  m2pt_tensor_destroy(ty);
  m2pt_linear_destroy(layer);
}

/* Device listing and selection, and this thread's own message for a call
 * without a context (m2pt_last_error(NULL) is per thread). */
static void devices(worker *w)
{
  size_t count = 0, index = 0;
  m2pt_device_info infos[8];
  TRY(w, NULL, m2pt_device_list(infos, 8, &count));
  TRY(w, NULL, m2pt_device_select(NULL, &index));
  if (count == 0 || index >= count) {
    record(w, "%zu devices, default %zu", count, index);
    return;
  }
  char selector[64];
  snprintf(selector, sizeof selector, "no-such-device-%d", w->id);
  const m2pt_status s = m2pt_device_select(selector, &index);
  if (s != M2PT_ERR_DEVICE_NOT_FOUND || !strstr(m2pt_last_error(NULL), selector))
    record(w, "selecting %s gave %s: %s", selector, m2pt_status_string(s),
           m2pt_last_error(NULL));
done:;
}

/* What the context says it applied, read while other threads override. */
static void tuning_report(worker *w, const m2pt_context *ctx)
{
  m2pt_tuning_source source = M2PT_TUNING_DISABLED;
  const char *detail = NULL;
  TRY(w, ctx, m2pt_context_tuning(ctx, &source, &detail));
  if (test_gemm_on_host(ctx) ? source != M2PT_TUNING_NONE : source == M2PT_TUNING_DISABLED)
    record(w, "%s context reports tuning source %d (%s)", m2pt_context_gemm_backend(ctx),
           (int)source, detail);
done:;
}

/* Cycles of create, forward, list, destroy; every other context runs its
 * GEMMs through CLBlast (so CLBlast's routines run in several threads while
 * other threads create contexts and apply the tuning). */
static void *cycle(void *arg)
{
  worker *w = arg;
  pthread_barrier_wait(w->start);
  for (int c = 0; c < w->cycles && !w->failure[0]; c++) {
    m2pt_context_options opts = m2pt_context_options_default();
    opts.flags = (c + w->id) % 2 ? M2PT_CONTEXT_CLBLAST : 0;
    m2pt_context *ctx = NULL;
    const m2pt_status s = m2pt_context_create(&opts, &ctx);
    if (s != M2PT_OK) {
      fail_with(w, NULL, s, "m2pt_context_create");
      break;
    }
    tuning_report(w, ctx);
    linear_forward(w, ctx, (unsigned)(w->id * 100 + c));
    devices(w);
    m2pt_context_destroy(ctx);
  }
  return NULL;
}

/* THREADS workers of `cycles` each, released together (or one after the
 * other when `serial`); 0 when all passed, else the failures are printed. */
static int run_workers(int cycles, int serial)
{
  worker workers[THREADS];
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, serial ? 1 : THREADS);
  int failed = 0;
  for (int i = 0; i < THREADS; i++) {
    workers[i] = (worker){.id = i, .cycles = cycles, .start = &start};
    if (pthread_create(&workers[i].thread, NULL, cycle, &workers[i]) != 0) {
      fprintf(stderr, "pthread_create failed\n");
      exit(1);
    }
    if (serial)
      pthread_join(workers[i].thread, NULL);
  }
  for (int i = 0; i < THREADS; i++) {
    if (!serial)
      pthread_join(workers[i].thread, NULL);
    if (workers[i].failure[0]) {
      fprintf(stderr, "%s\n", workers[i].failure);
      failed = 1;
    }
  }
  pthread_barrier_destroy(&start);
  return failed;
}

/* Oclgrind's OpenCL runtime is not thread-safe (jrprice/Oclgrind#28: buffers
 * and kernels of concurrent contexts corrupt each other's results), so there
 * the threads take turns: the code paths still run from several threads,
 * under oclgrind's checks. */
static int default_device_is_oclgrind(void)
{
  size_t count = 0, index = 0;
  assert_ok(NULL, m2pt_device_list(NULL, 0, &count));
  m2pt_device_info *infos = test_alloc(count * sizeof *infos);
  assert_ok(NULL, m2pt_device_list(infos, count, &count));
  assert_ok(NULL, m2pt_device_select(NULL, &index));
  const int oclgrind = strstr(infos[index].platform_name, "Oclgrind") != NULL;
  free(infos);
  return oclgrind;
}

static void threads_share_nothing(void **state)
{
  (void)state;
  /* The driver's start is cold_start's subject: here it has started, while
   * CLBlast has not run yet in this process. */
  const int serial = default_device_is_oclgrind();
  assert_int_equal(run_workers(test_small() ? 1 : 8, serial), 0);
}

/* The executable itself, run again as a child: a process in which nothing
 * has touched OpenCL yet ("cold": its threads all create their first context
 * at once, racing on the ICD loader's and the driver's start and on CLBlast's
 * first database), or in which only the main thread has listed the devices
 * ("warm": the threads race on CLBlast's first use alone). Each such race
 * happens once per process, hence processes. */
static char self_path[4096];

static void run_children(const char *mode, int runs)
{
  for (int r = 0; r < runs; r++) {
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      execl(self_path, self_path, mode, (char *)NULL);
      _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
      ;
    if (WIFSIGNALED(status))
      fail_msg("%s run %d: killed by signal %d", mode, r, WTERMSIG(status));
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0)
      fail_msg("%s run %d: exit status %d", mode, r, WEXITSTATUS(status));
  }
}

static void first_contexts_race(void **state)
{
  (void)state;
  /* Asking starts the driver here, not in the children. */
  if (default_device_is_oclgrind())
    skip(); /* threads taking turns would not race (see above) */
  const int runs = test_small() ? 2 : 4;
  run_children("--cold", runs);
  run_children("--warm", runs);
}

int main(int argc, char **argv)
{
  /* The tuning is on (children inherit this): its overrides are what race. */
  unsetenv("M2PT_TUNING");
  if (argc == 2 && strcmp(argv[1], "--cold") == 0)
    return run_workers(1, 0);
  if (argc == 2 && strcmp(argv[1], "--warm") == 0) {
    size_t count = 0;
    if (m2pt_device_list(NULL, 0, &count) != M2PT_OK)
      return 1;
    return run_workers(1, 0);
  }
  const ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
  if (n <= 0) {
    fprintf(stderr, "cannot resolve /proc/self/exe\n");
    return 1;
  }
  self_path[n] = '\0';
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(first_contexts_race),
      cmocka_unit_test(threads_share_nothing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
