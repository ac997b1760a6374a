#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/context_impl.h"
#include "core/quirks.h"
#include "gemm/backend.h"

void test_assert_status(const m2pt_context *ctx, m2pt_status got, m2pt_status expected,
                        const char *expr, const char *file, int line)
{
  if (got == expected)
    return;
  print_error("%s:%d: %s returned %s, expected %s\n  message: %s\n", file, line, expr,
              m2pt_status_string(got), m2pt_status_string(expected), m2pt_last_error(ctx));
  fail();
}

m2pt_context *test_context(void)
{
  m2pt_context *ctx = NULL;
  const m2pt_status s = m2pt_context_create(NULL, &ctx);
  if (s != M2PT_OK) {
    print_error("no OpenCL context: %s: %s\n", m2pt_status_string(s), m2pt_last_error(NULL));
    fail();
  }
  return ctx;
}

int test_setup_context(void **state)
{
  *state = test_context();
  return 0;
}

int test_teardown_context(void **state)
{
  m2pt_context_destroy(*state);
  return 0;
}

int test_setup_tmpdir_context(void **state)
{
  if (test_tmp_dir_make("m2pt-test") != 0)
    return -1;
  return test_setup_context(state);
}

int test_teardown_tmpdir_context(void **state)
{
  const int removed = test_tmp_dir_remove();
  return test_teardown_context(state) != 0 || removed != 0 ? -1 : 0;
}

int test_gemm_on_host(const m2pt_context *ctx)
{
  return strcmp(m2pt_context_gemm_backend(ctx), "CLBlast") != 0;
}

int test_small(void)
{
  const char *v = getenv("M2PT_TEST_SMALL");
  return v && v[0] && v[0] != '0';
}

void test_fill(float *dst, size_t n, uint64_t seed)
{
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    dst[i] = (float)((double)(s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
  }
}

void *test_alloc(size_t bytes)
{
  void *p = malloc(bytes ? bytes : 1);
  assert_non_null(p);
  return p;
}

double *test_widen(const float *x, size_t n)
{
  double *d = test_alloc(n * sizeof *d);
  for (size_t i = 0; i < n; i++)
    d[i] = x[i];
  return d;
}

float *test_read(m2pt_context *ctx, const m2pt_tensor *t)
{
  const size_t n = m2pt_tensor_numel(t);
  float *h = test_alloc(n * sizeof *h);
  assert_ok(ctx, m2pt_tensor_read(t, h, n));
  return h;
}

void test_assert_close(const float *got, const double *ref, size_t n, double tol,
                       const char *what)
{
  double worst = 0.0, scale = 1.0;
  size_t at = 0;
  for (size_t i = 0; i < n; i++)
    if (fabs(ref[i]) > scale)
      scale = fabs(ref[i]);
  for (size_t i = 0; i < n; i++) {
    const double err = isfinite(got[i]) ? fabs((double)got[i] - ref[i]) : INFINITY;
    if (err > worst) {
      worst = err;
      at = i;
    }
  }
  if (worst > tol * scale) {
    print_error("%s: max error %g at %zu (got %.9g, want %.9g) exceeds %g\n", what, worst, at,
                (double)got[at], ref[at], tol * scale);
    fail();
  }
}

m2pt_tensor *test_tensor(m2pt_context *ctx, size_t ndim, const size_t *shape, const float *data)
{
  m2pt_tensor *t = NULL;
  assert_ok(ctx, m2pt_tensor_create(ctx, ndim, shape, &t));
  if (data)
    assert_ok(ctx, m2pt_tensor_write(t, data, m2pt_tensor_numel(t)));
  return t;
}

m2pt_tensor *test_tensor_as(m2pt_context *ctx, size_t ndim, const size_t *shape,
                            const float *data, int svm)
{
  const int own = ctx->quirks.host_svm;
  ctx->quirks.host_svm = svm;
  m2pt_tensor *t = test_tensor(ctx, ndim, shape, data);
  ctx->quirks.host_svm = own;
  return t;
}

int test_enter_data_dir(int argc, char **argv, const char *compiled_in)
{
  const char *dir = argc > 1 ? argv[1] : compiled_in;
  if (chdir(dir) != 0) {
    fprintf(stderr, "%s: cannot enter the data directory %s: %s\n", argv[0], dir,
            strerror(errno));
    return -1;
  }
  return 0;
}

/* ---- The test matrix ---- */

/* An axis: its key in M2PT_QUIRKS and every value it can name, in the order
 * other values are dealt (a configuration holds an index per axis). */
typedef struct axis_values {
  const char *key;
  const char *values[4];
} axis_values;

/* host_access follows gemm: gemm's other values fill the first extra
 * configurations, so host_access=map lands on one with a host backend. */
enum {
  AXIS_GEMM,
  AXIS_HOST_ACCESS,
  AXIS_ATTENTION,
  AXIS_ATTENTION_VEC,
  AXIS_LAYER_NORM,
  AXIS_GELU,
  AXIS_ATTENTION_KERNEL,
  AXIS_LINEAR_GRAD,
  AXIS_SOFTMAX,
  AXIS_COUNT
};

/* A suite's TEST_AXIS_* bits are 1 << these indices. */
_Static_assert(TEST_AXIS_GEMM == 1u << AXIS_GEMM &&
                   TEST_AXIS_HOST_ACCESS == 1u << AXIS_HOST_ACCESS &&
                   TEST_AXIS_ATTENTION == 1u << AXIS_ATTENTION &&
                   TEST_AXIS_ATTENTION_VEC == 1u << AXIS_ATTENTION_VEC &&
                   TEST_AXIS_LAYER_NORM == 1u << AXIS_LAYER_NORM &&
                   TEST_AXIS_GELU == 1u << AXIS_GELU &&
                   TEST_AXIS_ATTENTION_KERNEL == 1u << AXIS_ATTENTION_KERNEL &&
                   TEST_AXIS_LINEAR_GRAD == 1u << AXIS_LINEAR_GRAD &&
                   TEST_AXIS_SOFTMAX == 1u << AXIS_SOFTMAX &&
                   TEST_AXES_ALL == (1u << AXIS_COUNT) - 1,
               "test_util.h's axis bits follow the axes' order");

static const axis_values axis_table[AXIS_COUNT] = {
    [AXIS_GEMM] = {"gemm", {"onednn", "host_blas", "clblast"}},
    [AXIS_HOST_ACCESS] = {"host_access", {"svm", "map"}},
    [AXIS_ATTENTION] = {"attention", {"auto", "gemm", "fused"}},
    [AXIS_ATTENTION_VEC] = {"attention_vec", {"16", "8", "4", "1"}},
    [AXIS_LAYER_NORM] = {"layer_norm", {"rows", "workgroup"}},
    [AXIS_GELU] = {"gelu", {"float16", "float8", "scalar"}},
    [AXIS_ATTENTION_KERNEL] = {"attention_kernel", {"rows", "tiles", "host"}},
    [AXIS_LINEAR_GRAD] = {"linear_grad", {"vector", "scalar"}},
    [AXIS_SOFTMAX] = {"softmax", {"rows", "workgroup"}},
};

/* Configurations beyond the device's own: at most 4 groups per suite. */
#define MATRIX_EXTRA 3

typedef struct matrix_config {
  int value[AXIS_COUNT]; /* index into axis_table[axis].values */
} matrix_config;

/* What the device does with a context's quirks as they are now, and which
 * values it may be given (valid[axis][value]). */
typedef struct matrix_device {
  matrix_config own;
  int valid[AXIS_COUNT][4];
} matrix_device;

static int value_index(int axis, const char *value)
{
  for (int v = 0; v < 4 && axis_table[axis].values[v]; v++)
    if (strcmp(axis_table[axis].values[v], value) == 0)
      return v;
  return 0;
}

/* Fills d from a context created now (under this thread's override, else
 * $M2PT_QUIRKS), and with `enumerate`, which values the device allows. */
static int probe_device(int enumerate, matrix_device *d)
{
  m2pt_context *ctx = NULL;
  if (m2pt_context_create(NULL, &ctx) != M2PT_OK) {
    print_error("no OpenCL context: %s\n", m2pt_last_error(NULL));
    return -1;
  }
  const m2pt_quirks q = ctx->quirks;
  char vec[4];
  snprintf(vec, sizeof vec, "%u", q.attention_vec);
  static const char *const impl[] = {[M2PT_ATTENTION_AUTO] = "auto",
                                     [M2PT_ATTENTION_GEMM] = "gemm",
                                     [M2PT_ATTENTION_FUSED] = "fused"};
  d->own.value[AXIS_GEMM] = value_index(AXIS_GEMM, ctx->gemm->backend->name);
  d->own.value[AXIS_ATTENTION] = value_index(AXIS_ATTENTION, impl[q.attention]);
  d->own.value[AXIS_ATTENTION_VEC] = value_index(AXIS_ATTENTION_VEC, vec);
  d->own.value[AXIS_LAYER_NORM] = q.layer_norm == M2PT_LAYER_NORM_ROWS ? 0 : 1;
  d->own.value[AXIS_GELU] = q.gelu_vec == 16 ? 0 : q.gelu_vec == 8 ? 1 : 2;
  d->own.value[AXIS_ATTENTION_KERNEL] = q.attention_kernel == M2PT_ATTENTION_KERNEL_ROWS   ? 0
                                        : q.attention_kernel == M2PT_ATTENTION_KERNEL_TILES ? 1
                                                                                            : 2;
  d->own.value[AXIS_LINEAR_GRAD] = q.linear_grad_vec ? 0 : 1;
  d->own.value[AXIS_SOFTMAX] = q.softmax_rows ? 0 : 1;
  d->own.value[AXIS_HOST_ACCESS] = q.host_svm ? 0 : 1;
  m2pt_context_destroy(ctx);
  memset(d->valid, 0, sizeof d->valid);
  if (!enumerate)
    return 0;
  /* Oclgrind's checkers crash on vectors (lib/core/quirks.c): a device whose
   * own quirks use none gets none. */
  const int vectors = q.gelu_vec > 1;
  /* A host backend where the device puts GEMMs on the host and the build has
   * the library; CLBlast everywhere. */
  for (int v = 0; v < 2 && q.gemm_on_host; v++) {
    char spec[32];
    snprintf(spec, sizeof spec, "gemm=%s", axis_table[AXIS_GEMM].values[v]);
    m2pt_quirks_override(spec);
    m2pt_context *host = NULL;
    d->valid[AXIS_GEMM][v] = m2pt_context_create(NULL, &host) == M2PT_OK;
    m2pt_quirks_override(NULL);
    m2pt_context_destroy(host);
  }
  d->valid[AXIS_GEMM][2] = 1;
  d->valid[AXIS_ATTENTION][0] = d->valid[AXIS_ATTENTION][1] = 1;
  for (int v = 0; v < 4; v++)
    d->valid[AXIS_ATTENTION_VEC][v] = v >= d->own.value[AXIS_ATTENTION_VEC];
  /* Both fused kernels run anywhere (rows with attention_vec=1 on Oclgrind),
   * and so does the host attention (its portable copy where the CPU has no
   * fast one), on mapped buffers. */
  for (int v = 0; v < 3; v++)
    d->valid[AXIS_ATTENTION_KERNEL][v] = 1;
  d->valid[AXIS_LAYER_NORM][0] = vectors;
  d->valid[AXIS_LAYER_NORM][1] = 1;
  d->valid[AXIS_GELU][0] = d->valid[AXIS_GELU][1] = vectors;
  d->valid[AXIS_GELU][2] = 1;
  d->valid[AXIS_LINEAR_GRAD][0] = vectors;
  d->valid[AXIS_LINEAR_GRAD][1] = 1;
  /* Where the device's own is a work-group per row (GPUs, Oclgrind), the rows
   * variant is the same kernel at WG = 1: one group there, as before. */
  d->valid[AXIS_SOFTMAX][0] = q.softmax_rows;
  d->valid[AXIS_SOFTMAX][1] = 1;
  /* SVM buffers only where the device offers them (its own choice says so). */
  d->valid[AXIS_HOST_ACCESS][0] = q.host_svm;
  d->valid[AXIS_HOST_ACCESS][1] = 1;
  return 0;
}

/* "key=value,..." of the axes in `axes`, as M2PT_QUIRKS takes it. */
static void config_spec(unsigned axes, const matrix_config *c, char *buf, size_t size)
{
  buf[0] = '\0';
  for (int a = 0; a < AXIS_COUNT; a++)
    if (axes & (1u << a))
      snprintf(buf + strlen(buf), size - strlen(buf), "%s%s=%s", buf[0] ? "," : "",
               axis_table[a].key, axis_table[a].values[c->value[a]]);
}

/* The device's own configuration, then every other valid value of each axis
 * in `axes` dealt round-robin into at most MATRIX_EXTRA more, so that one
 * value's failure shows in a configuration with few others changed. */
static size_t matrix_configs(unsigned axes, const matrix_device *d,
                             matrix_config out[1 + MATRIX_EXTRA])
{
  size_t used = 1, next = 0;
  unsigned set[1 + MATRIX_EXTRA] = {0}; /* axes each configuration changes */
  for (size_t i = 0; i <= MATRIX_EXTRA; i++)
    out[i] = d->own;
  for (int a = 0; a < AXIS_COUNT; a++) {
    if (!(axes & (1u << a)))
      continue;
    for (int v = 0; v < 4; v++) {
      if (!d->valid[a][v] || v == d->own.value[a])
        continue;
      size_t bin = 1 + next++ % MATRIX_EXTRA;
      for (size_t tries = 0; set[bin] & (1u << a) && tries < MATRIX_EXTRA; tries++)
        bin = 1 + next++ % MATRIX_EXTRA;
      out[bin].value[a] = v;
      set[bin] |= 1u << a;
      if (bin + 1 > used)
        used = bin + 1;
    }
  }
  return used;
}

int test_run_matrix_n(const char *suite, unsigned axes, const struct CMUnitTest *tests,
                      size_t count, CMFixtureFunction setup, CMFixtureFunction teardown)
{
  const char *by_hand = getenv("M2PT_QUIRKS");
  by_hand = by_hand && by_hand[0] ? by_hand : NULL;
  matrix_device d;
  if (probe_device(!by_hand && axes, &d) != 0)
    return 1;
  matrix_config configs[1 + MATRIX_EXTRA];
  const size_t n = by_hand || !axes ? 1 : matrix_configs(axes, &d, configs);
  if (n == 1)
    configs[0] = d.own;
  int failed = 0;
  for (size_t i = 0; i < n; i++) {
    char spec[256], name[1024];
    config_spec(axes, &configs[i], spec, sizeof spec);
    if (by_hand) /* it may set keys beyond the suite's axes: say so */
      snprintf(name, sizeof name, "%s [%s%sM2PT_QUIRKS=%s]", suite, spec, spec[0] ? "; " : "",
               by_hand);
    else
      snprintf(name, sizeof name, "%s [%s]", suite, spec[0] ? spec : "default");
    /* The first configuration is the device's own: no override, so the chooser's own
     * preference runs rather than a backend forced by name. */
    m2pt_quirks_override(i == 0 ? NULL : spec);
    /* cmocka's standard output does not print the group's name. */
    print_message("[==========] %s\n", name);
    const int f = _cmocka_run_group_tests(name, tests, count, setup ? setup : test_setup_context,
                                          teardown ? teardown : test_teardown_context);
    m2pt_quirks_override(NULL);
    if (f != 0)
      print_error("[  FAILED  ] %s: %d test(s)\n", name, f);
    failed += f != 0 ? (f > 0 ? f : 1) : 0;
  }
  return failed;
}

test_linear_params test_linear_params_make(size_t in, size_t out, uint64_t seed)
{
  test_linear_params p = {in, out, NULL, NULL, NULL, NULL};
  p.w = test_alloc(in * out * sizeof(float));
  p.w_aux = test_alloc(in * out * sizeof(float));
  p.b = test_alloc(out * sizeof(float));
  p.b_aux = test_alloc(out * sizeof(float));
  test_fill(p.w, in * out, seed);
  test_fill(p.w_aux, in * out, seed + 1);
  test_fill(p.b, out, seed + 2);
  test_fill(p.b_aux, out, seed + 3);
  return p;
}

void test_linear_params_free(test_linear_params *p)
{
  free(p->w);
  free(p->w_aux);
  free(p->b);
  free(p->b_aux);
}

m2pt_linear *test_linear_layer(m2pt_context *ctx, const test_linear_params *p, unsigned flags,
                               float scale)
{
  m2pt_linear *l = NULL;
  assert_ok(ctx, m2pt_linear_create(ctx, p->in, p->out, flags, &l));
  assert_ok(ctx, m2pt_linear_set_weight(l, p->w, p->in * p->out));
  if (flags & (M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY_BIAS)) /* PATHWAY_BIAS implies a bias */
    assert_ok(ctx, m2pt_linear_set_bias(l, p->b, p->out));
  if (flags & M2PT_LINEAR_PATHWAY) {
    assert_ok(ctx, m2pt_linear_set_aux_weight(l, p->w_aux, p->in * p->out));
    assert_ok(ctx, m2pt_linear_set_scale(l, scale));
  }
  if (flags & M2PT_LINEAR_PATHWAY_BIAS)
    assert_ok(ctx, m2pt_linear_set_aux_bias(l, p->b_aux, p->out));
  return l;
}

float *test_random_floats(size_t n, uint64_t seed, float scale)
{
  float *v = test_alloc(n * sizeof *v);
  test_fill(v, n, seed);
  for (size_t i = 0; i < n; i++)
    v[i] *= scale;
  return v;
}

void test_assert_same_bits(m2pt_context *ctx, const m2pt_tensor *a, const m2pt_tensor *b)
{
  float *x = test_read(ctx, a), *y = test_read(ctx, b);
  assert_memory_equal(x, y, m2pt_tensor_numel(a) * sizeof *x);
  free(x);
  free(y);
}

void test_assert_fd(const double *ref, const double *fd, size_t n, double tol, const char *what)
{
  double scale = 1.0, worst = 0.0;
  for (size_t i = 0; i < n; i++)
    scale = fmax(scale, fabs(fd[i]));
  for (size_t i = 0; i < n; i++)
    worst = fmax(worst, fabs(ref[i] - fd[i]));
  if (worst > tol * scale) {
    print_error("%s: analytic vs finite differences differ by %g (scale %g)\n", what, worst,
                scale);
    fail();
  }
}

static char tmp_dir[512];

int test_tmp_dir_make(const char *prefix)
{
  const char *base = getenv("TMPDIR");
  snprintf(tmp_dir, sizeof tmp_dir, "%s/%s.XXXXXX", base && base[0] ? base : "/tmp", prefix);
  return mkdtemp(tmp_dir) ? 0 : -1;
}

static int remove_tree(const char *dir)
{
  DIR *d = opendir(dir);
  if (!d)
    return -1;
  struct dirent *e;
  char path[1024];
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      struct stat sb;
      if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        remove_tree(path);
      else
        unlink(path);
    }
  closedir(d);
  return rmdir(dir);
}

int test_tmp_dir_remove(void)
{
  return remove_tree(tmp_dir);
}

const char *test_tmp_dir(void)
{
  return tmp_dir;
}

const char *test_tmp_path(const char *name)
{
  static char paths[4][1024];
  static int next;
  char *p = paths[next++ % 4];
  snprintf(p, sizeof paths[0], "%s/%s", tmp_dir, name);
  return p;
}

void test_write_file(const char *path, const void *data, size_t size)
{
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, size, f), size);
  assert_int_equal(fclose(f), 0);
}

unsigned char *test_read_file(const char *path, size_t *size)
{
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  const long n = ftell(f);
  assert_true(n >= 0);
  rewind(f);
  unsigned char *buf = test_alloc((size_t)n);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *size = (size_t)n;
  return buf;
}
