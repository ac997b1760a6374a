/* Helpers shared by the cmocka suites: contexts, random data, tolerances. */
#ifndef M2PT_TESTS_TEST_UTIL_H
#define M2PT_TESTS_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <m2pt/m2pt.h>

/* Asserts a status, printing the context's message when it differs. */
#define assert_status(ctx, expr, expected) \
  test_assert_status((ctx), (expr), (expected), #expr, __FILE__, __LINE__)
#define assert_ok(ctx, expr) assert_status((ctx), (expr), M2PT_OK)

void test_assert_status(const m2pt_context *ctx, m2pt_status got, m2pt_status expected,
                        const char *expr, const char *file, int line);

/* A context on the default device ($M2PT_DEVICE), or the test fails: CI has
 * PoCL, so a missing device is a failure, not a skip. */
m2pt_context *test_context(void);

/* 1 when ctx's GEMMs run on the host (oneDNN or OpenBLAS on a CPU device), 0
 * when they run as CLBlast kernels. */
int test_gemm_on_host(const m2pt_context *ctx);

/* cmocka group setup and teardown: *state is a context from test_context(). */
int test_setup_context(void **state);
int test_teardown_context(void **state);

/* ---- The test matrix (README "Testing") ----
 * Axes: the quirk keys (lib/core/quirks.h) whose variants change the code a
 * suite's tests run. A suite names the axes its results depend on that its
 * tests do not already pick themselves (ops passes every attention path
 * explicitly, so it leaves attention out); only those are varied for it. */
typedef enum test_axis {
  TEST_AXIS_GEMM = 1u << 0,             /* gemm=onednn|host_blas|clblast */
  TEST_AXIS_HOST_ACCESS = 1u << 1,      /* host_access=svm|map: host GEMMs' operands */
  TEST_AXIS_ATTENTION = 1u << 2,        /* attention=auto|gemm: what M2PT_ATTENTION_AUTO runs */
  TEST_AXIS_ATTENTION_VEC = 1u << 3,    /* attention_vec=16|8|4|1 */
  TEST_AXIS_LAYER_NORM = 1u << 4,       /* layer_norm=rows|workgroup */
  TEST_AXIS_GELU = 1u << 5,             /* gelu=float8|scalar */
  TEST_AXIS_ATTENTION_KERNEL = 1u << 6, /* attention_kernel=rows|tiles: the fused forward's */
  TEST_AXIS_LINEAR_GRAD = 1u << 7,      /* linear_grad=vector|scalar */
  TEST_AXIS_SOFTMAX = 1u << 8,          /* softmax=rows|workgroup */
  TEST_AXES_ALL = (1u << 9) - 1,
} test_axis;

/* Runs `tests` once per configuration of `axes` valid on the device ($M2PT_DEVICE), each as
 * one cmocka group named "<suite> [key=value,...]": the values every axis takes there, which
 * is also the M2PT_QUIRKS that runs that configuration alone. First the device's own quirks,
 * then every other valid value of every axis once, dealt round-robin over at most three more
 * configurations. Valid: onednn and host_blas where the build has them and the device's
 * quirks put GEMMs on the host (CPU devices but Oclgrind); the vector variants
 * (layer_norm=rows, gelu=float8, linear_grad=vector, attention_vec up to the device's own)
 * only where the device's own quirks use vectors (not on Oclgrind); softmax=rows where the
 * device's own is rows; host_access=svm where it is the device's own; attention=fused
 * never: it makes M2PT_ATTENTION_AUTO fail where the fused kernel cannot run, which tests
 * expect to fall back.
 * Every context the thread creates during a group (the setup's and any a test makes) gets
 * the group's configuration (m2pt_quirks_override). With $M2PT_QUIRKS set, one group runs,
 * under it, named with both ("<suite> [gemm=clblast,...; M2PT_QUIRKS=gelu=scalar]"). With no
 * axes, one group on the device's own quirks, named "<suite> [default]".
 * setup and teardown are the group's fixture, NULL for test_setup_context and
 * test_teardown_context. Returns the number of tests that failed, over all groups. */
int test_run_matrix_n(const char *suite, unsigned axes, const struct CMUnitTest *tests,
                      size_t count, CMFixtureFunction setup, CMFixtureFunction teardown);
#define test_run_matrix(suite, axes, tests, setup, teardown)                                 \
  test_run_matrix_n((suite), (axes), (tests), sizeof(tests) / sizeof((tests)[0]), (setup), \
                    (teardown))

/* A group's scratch directory and context: test_tmp_dir_make (below) and
 * test_setup_context; the teardown removes the directory with everything in
 * it and destroys the context. */
int test_setup_tmpdir_context(void **state);
int test_teardown_tmpdir_context(void **state);

/* 1 when the suite runs under the oclgrind setup, where only tiny shapes fit. */
int test_small(void);

/* Deterministic uniform values in [-1, 1) (xorshift, seeded per call site). */
void test_fill(float *dst, size_t n, uint64_t seed);

/* Host allocation that fails the test instead of returning NULL. */
void *test_alloc(size_t bytes);

/* A double copy of n floats, freed by the caller. */
double *test_widen(const float *x, size_t n);

/* A tensor's values read back into a new host array, freed by the caller. */
float *test_read(m2pt_context *ctx, const m2pt_tensor *t);

/* max|got − ref| ≤ tol · max(1, max|ref|) (DESIGN.md §4); prints the worst. */
void test_assert_close(const float *got, const double *ref, size_t n, double tol,
                       const char *what);

/* A tensor filled from host data (or zeros when data is NULL). */
m2pt_tensor *test_tensor(m2pt_context *ctx, size_t ndim, const size_t *shape, const float *data);

/* The same, its buffer made as a fine-grained SVM buffer (svm = 1) or a
 * plain one (0) whatever ctx's host_access quirk says (core/svm.h); svm = 1
 * only where the context offers SVM buffers. */
m2pt_tensor *test_tensor_as(m2pt_context *ctx, size_t ndim, const size_t *shape,
                            const float *data, int svm);

/* Enters a suite's data directory: argv[1] when given (meson passes the source
 * tree's, so a tree copied elsewhere, as tools/device-check.sh does, reads its
 * own files), else `compiled_in`. Returns 0, or -1 after printing why. */
int test_enter_data_dir(int argc, char **argv, const char *compiled_in);

/* Host copies of a linear's parameters, filled deterministically from `seed`
 * (w, w_aux [out][in], b, b_aux [out]); free with test_linear_params_free. */
typedef struct test_linear_params {
  size_t in, out;
  float *w, *w_aux, *b, *b_aux;
} test_linear_params;

test_linear_params test_linear_params_make(size_t in, size_t out, uint64_t seed);
void test_linear_params_free(test_linear_params *p);

/* A layer with `flags`, its parameters set from p and λ = scale. */
m2pt_linear *test_linear_layer(m2pt_context *ctx, const test_linear_params *p, unsigned flags,
                               float scale);

/* n deterministic values in [-scale, scale) (test_fill's, scaled); free(). */
float *test_random_floats(size_t n, uint64_t seed, float scale);

/* Fails unless tensors a and b hold the same bits (a run repeated). */
void test_assert_same_bits(m2pt_context *ctx, const m2pt_tensor *a, const m2pt_tensor *b);

/* Fails unless an analytic gradient `ref` agrees with finite differences
 * `fd` (n values): max|ref − fd| ≤ tol · max(1, max|fd|), the worst printed
 * with `what`. */
void test_assert_fd(const double *ref, const double *fd, size_t n, double tol, const char *what);

/* ---- Files in a private temporary directory ---- */

/* Makes "$TMPDIR/<prefix>.XXXXXX" (/tmp without TMPDIR), the directory the
 * calls below work in; a cmocka group setup (0 or -1). One at a time. */
int test_tmp_dir_make(const char *prefix);

/* Removes that directory and everything in it (0 or -1). */
int test_tmp_dir_remove(void);

/* The directory's path (static). */
const char *test_tmp_dir(void);

/* A path in it (static buffer, one of four in turn: valid until the fourth
 * call after). */
const char *test_tmp_path(const char *name);

/* Writes `size` bytes to path, or fails the test. */
void test_write_file(const char *path, const void *data, size_t size);

/* The whole file at path in a new buffer (free()), its size into *size, or
 * fails the test. */
unsigned char *test_read_file(const char *path, size_t *size);

#endif
