/* Device quirks (lib/core/quirks.h): the override syntax and its errors,
 * a forced GEMM backend, and every kernel variant the device's own quirks
 * allow giving the reference's results. Vector variants run only where the
 * device's quirks already use vectors (not on Oclgrind, whose checker
 * crashes on them). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/context_impl.h"
#include "core/quirks.h"
#include "core/svm.h"
#include "reference.h"
#include "test_util.h"

static m2pt_quirks defaults(void)
{
  m2pt_context *ctx = test_context();
  const m2pt_quirks q = ctx->quirks;
  m2pt_context_destroy(ctx);
  return q;
}

static void parse_accepts_and_rejects(void **state)
{
  m2pt_quirks q = defaults(), before;
  char why[256];
  assert_int_equal(m2pt_quirks_parse("layer_norm=rows,gelu=scalar,attention=gemm,"
                                     "attention_vec=4,gemm=clblast,fill=host,"
                                     "new_buffers=host_written,linear_grad=scalar,softmax=rows",
                                     &q, why, sizeof why),
                   0);
  assert_int_equal(q.layer_norm, M2PT_LAYER_NORM_ROWS);
  assert_int_equal(q.gelu_vec, 1);
  assert_int_equal(q.attention, M2PT_ATTENTION_GEMM);
  assert_int_equal(q.attention_vec, 4);
  assert_string_equal(q.gemm, "clblast");
  assert_int_equal(q.fill_via_host, 1);
  assert_int_equal(q.host_writes_new_buffers, 1);
  assert_int_equal(q.linear_grad_vec, 0);
  assert_int_equal(m2pt_quirks_parse("linear_grad=vector", &q, why, sizeof why), 0);
  assert_int_equal(q.linear_grad_vec, 1);
  assert_int_equal(q.softmax_rows, 1);
  assert_int_equal(m2pt_quirks_parse("gelu=float16", &q, why, sizeof why), 0);
  assert_int_equal(q.gelu_vec, 16);
  assert_int_equal(m2pt_quirks_parse("gelu=float8", &q, why, sizeof why), 0);
  assert_int_equal(q.gelu_vec, 8);
  assert_int_equal(m2pt_quirks_parse("host_access=map", &q, why, sizeof why), 0);
  assert_int_equal(q.host_svm, 0);
  assert_int_equal(m2pt_quirks_parse("host_access=svm", &q, why, sizeof why), 0);
  assert_int_equal(q.host_svm, 1);
  assert_int_equal(m2pt_quirks_parse("", &q, why, sizeof why), 0);
  assert_int_equal(m2pt_quirks_parse(NULL, &q, why, sizeof why), 0);
  static const char *const bad[][2] = {
      {"colour=blue", "unknown key"},
      {"layer_norm=diagonal", "workgroup|rows"},
      {"gelu=float8,gelu=scalar", "twice"},
      {"gelu=float8,", "trailing comma"},
      {"gelu=float4", "scalar|float8|float16"},
      {"attention", "key=value"},
      {"attention_vec=2", "1|4|8|16"},
      {"linear_grad=float4", "vector|scalar"},
      {"softmax=columns", "workgroup|rows"},
      {"host_access=copy", "map|svm"},
      {"gemm=", "backend name"},
      {"layer_norm = rows", "unknown key"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    before = q;
    assert_int_equal(m2pt_quirks_parse(bad[i][0], &q, why, sizeof why), -1);
    if (!strstr(why, bad[i][1]))
      fail_msg("%s: \"%s\" does not say \"%s\"", bad[i][0], why, bad[i][1]);
    assert_memory_equal(&q, &before, sizeof q);
  }
}

/* A bad override fails the context's creation, from the environment or the
 * thread's override, and says what is wrong. */
static void bad_override_fails_creation(void **state)
{
  m2pt_context *ctx = NULL;
  setenv("M2PT_QUIRKS", "gelu=float4", 1);
  assert_int_equal(m2pt_context_create(NULL, &ctx), M2PT_ERR_INVALID_ARGUMENT);
  assert_null(ctx);
  assert_non_null(strstr(m2pt_last_error(NULL), "M2PT_QUIRKS=gelu=float4"));
  unsetenv("M2PT_QUIRKS");
  m2pt_quirks_override("gemm=abacus");
  assert_int_equal(m2pt_context_create(NULL, &ctx), M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(NULL), "no such GEMM backend"));
  assert_non_null(strstr(m2pt_last_error(NULL), "clblast"));
  /* Even where the application's flag picks CLBlast anyway. */
  m2pt_context_options opts = m2pt_context_options_default();
  opts.flags = M2PT_CONTEXT_CLBLAST;
  assert_int_equal(m2pt_context_create(&opts, &ctx), M2PT_ERR_INVALID_ARGUMENT);
  assert_null(ctx);
  m2pt_quirks_override(NULL);
  /* SVM buffers where the device offers them (PoCL), a clear refusal where
   * not (Oclgrind's OpenCL 1.2). */
  ctx = test_context();
  const int offers = ctx->svm_offered;
  m2pt_context_destroy(ctx);
  m2pt_quirks_override("host_access=svm");
  const m2pt_status s = m2pt_context_create(NULL, &ctx);
  m2pt_quirks_override(NULL);
  if (offers) {
    assert_int_equal(s, M2PT_OK);
    assert_int_equal(ctx->quirks.host_svm, 1);
    m2pt_context_destroy(ctx);
  } else {
    assert_int_equal(s, M2PT_ERR_UNSUPPORTED);
    assert_null(ctx);
    assert_non_null(strstr(m2pt_last_error(NULL), "fine-grained SVM"));
  }
  ctx = test_context();
  m2pt_context_destroy(ctx);
}

static void gemm_backend_forced(void **state)
{
  m2pt_context *ctx = NULL;
  m2pt_quirks_override("gemm=clblast");
  assert_ok(NULL, m2pt_context_create(NULL, &ctx));
  assert_string_equal(m2pt_context_gemm_backend(ctx), "CLBlast");
  m2pt_context_destroy(ctx);
  static const char *const host[][2] = {{"gemm=onednn", "oneDNN"}, {"gemm=host_blas", "OpenBLAS"}};
  for (size_t i = 0; i < 2; i++) {
    m2pt_quirks_override(host[i][0]);
    const m2pt_status s = m2pt_context_create(NULL, &ctx);
    m2pt_quirks_override(NULL);
    if (s == M2PT_ERR_UNSUPPORTED) /* a build without that library */
      continue;
    assert_int_equal(s, M2PT_OK);
    assert_string_equal(m2pt_context_gemm_backend(ctx), host[i][1]);
    m2pt_context_destroy(ctx);
  }
}

static float *read_all(m2pt_context *ctx, const m2pt_tensor *t)
{
  const size_t n = m2pt_tensor_numel(t);
  float *h = test_alloc(n * sizeof *h);
  assert_ok(ctx, m2pt_tensor_read(t, h, n));
  return h;
}

static double *widen(const float *x, size_t n)
{
  double *d = test_alloc(n * sizeof *d);
  for (size_t i = 0; i < n; i++)
    d[i] = x[i];
  return d;
}

static void layer_norm_and_gelu_variants(void **state)
{
  m2pt_context *ctx = *state;
  const m2pt_quirks own = ctx->quirks;
  enum { ROWS = 3, DIM = 48 }; /* whole float8 and float16 vectors */
  const size_t shape[2] = {ROWS, DIM}, vshape[1] = {DIM}, n = ROWS * DIM;
  float x[ROWS * DIM], w[DIM], b[DIM];
  test_fill(x, n, 11);
  test_fill(w, DIM, 12);
  test_fill(b, DIM, 13);
  m2pt_tensor *tx = test_tensor(ctx, 2, shape, x), *ty = test_tensor(ctx, 2, shape, NULL);
  m2pt_tensor *tw = test_tensor(ctx, 1, vshape, w), *tb = test_tensor(ctx, 1, vshape, b);
  double *xd = widen(x, n), *ref = test_alloc(n * sizeof *ref);
  ref_layer_norm(xd, ROWS, DIM, w, b, 1e-6, ref);
  for (int v = M2PT_LAYER_NORM_WORKGROUP; v <= M2PT_LAYER_NORM_ROWS; v++) {
    if (v == M2PT_LAYER_NORM_ROWS && own.gelu_vec == 1)
      continue; /* float8: not on this device */
    ctx->quirks.layer_norm = (m2pt_layer_norm_variant)v;
    assert_ok(ctx, m2pt_layer_norm(ctx, tx, tw, tb, 1e-6f, ty));
    float *y = read_all(ctx, ty);
    test_assert_close(y, ref, n, 1e-4, v ? "layer_norm rows" : "layer_norm workgroup");
    free(y);
  }
  for (size_t i = 0; i < n; i++)
    ref[i] = ref_gelu(xd[i] + b[i % DIM], 0);
  /* Every width up to the device's own (vectors only where it uses them). */
  static const unsigned widths[] = {1, 8, 16};
  static const char *const names[] = {"gelu scalar", "gelu float8", "gelu float16"};
  for (size_t k = 0; k < 3 && widths[k] <= own.gelu_vec; k++) {
    ctx->quirks.gelu_vec = widths[k];
    assert_ok(ctx, m2pt_gelu(ctx, tx, tb, M2PT_GELU_ERF, ty));
    float *y = read_all(ctx, ty);
    test_assert_close(y, ref, n, 1e-4, names[k]);
    free(y);
  }
  ctx->quirks = own;
  free(xd);
  free(ref);
  m2pt_tensor_destroy(tx);
  m2pt_tensor_destroy(ty);
  m2pt_tensor_destroy(tw);
  m2pt_tensor_destroy(tb);
}

static void attention_variants(void **state)
{
  m2pt_context *ctx = *state;
  const m2pt_quirks own = ctx->quirks;
  enum { B = 1, N = 9, H = 2, D = 8 };
  const size_t qshape[3] = {B, N, 3 * H * D}, oshape[3] = {B, N, H * D};
  const size_t nq = B * N * 3 * H * D, no = B * N * H * D;
  float qkv[B * N * 3 * H * D];
  test_fill(qkv, nq, 21);
  m2pt_tensor *tq = test_tensor(ctx, 3, qshape, qkv), *to = test_tensor(ctx, 3, oshape, NULL);
  double *qd = widen(qkv, nq), *ref = test_alloc(no * sizeof *ref);
  ref_attention(qd, B, N, H, D, NULL, ref);
  static const m2pt_attention_impl impls[] = {M2PT_ATTENTION_GEMM, M2PT_ATTENTION_FUSED};
  static const unsigned vecs[] = {1, 4, 8, 16};
  static const m2pt_attention_kernel kernels[] = {
      M2PT_ATTENTION_KERNEL_TILES, M2PT_ATTENTION_KERNEL_ROWS, M2PT_ATTENTION_KERNEL_HOST};
  for (size_t i = 0; i < 2; i++)
    for (size_t v = 0; v < 4; v++)
      for (size_t k = 0; k < 3; k++) {
        if (vecs[v] > own.attention_vec || (impls[i] == M2PT_ATTENTION_GEMM && (v || k)))
          continue;
        ctx->quirks.attention = impls[i];
        ctx->quirks.attention_vec = vecs[v];
        ctx->quirks.attention_kernel = kernels[k];
        assert_ok(ctx, m2pt_attention(ctx, tq, H, D, NULL, M2PT_ATTENTION_AUTO, to));
        float *y = read_all(ctx, to);
        test_assert_close(y, ref, no, 1e-4, i ? "attention fused" : "attention gemm");
        free(y);
      }
  /* The backward's AUTO follows the same quirk: the bits of the path it
   * names (the two paths round differently). */
  float dout[B * N * H * D];
  test_fill(dout, no, 22);
  m2pt_tensor *tg = test_tensor(ctx, 3, oshape, dout), *auto_d = test_tensor(ctx, 3, qshape, NULL);
  m2pt_tensor *forced = test_tensor(ctx, 3, qshape, NULL);
  for (size_t i = 0; i < 2; i++) {
    ctx->quirks.attention = own.attention;
    assert_ok(ctx, m2pt_attention_backward(ctx, tq, H, D, NULL, tg, impls[i], forced));
    ctx->quirks.attention = impls[i];
    assert_ok(ctx, m2pt_attention_backward(ctx, tq, H, D, NULL, tg, M2PT_ATTENTION_AUTO, auto_d));
    test_assert_same_bits(ctx, auto_d, forced);
  }
  ctx->quirks = own;
  free(qd);
  free(ref);
  m2pt_tensor_destroy(tq);
  m2pt_tensor_destroy(to);
  m2pt_tensor_destroy(tg);
  m2pt_tensor_destroy(auto_d);
  m2pt_tensor_destroy(forced);
}

/* attention_kernel=host at heads of 64 (the size it takes): the reference
 * with a mask that drops some keys of batch row 0 and every key of row 1
 * (zeros), and the training forward's out in the same bits and its lse
 * within tolerance of the row kernel's. Other head sizes fall back to the
 * row kernel (attention_variants). */
static void attention_on_host(void **state)
{
  m2pt_context *ctx = *state;
  const m2pt_quirks own = ctx->quirks;
  enum { B = 2, N = 21, H = 2, D = 64 };
  const size_t qshape[3] = {B, N, 3 * H * D}, oshape[3] = {B, N, H * D};
  const size_t mshape[2] = {B, N}, lshape[3] = {B, H, N};
  const size_t nq = B * N * 3 * H * D, no = B * N * H * D, nl = B * H * N;
  float *qkv = test_random_floats(nq, 31, 2.0f), mask[B * N];
  for (size_t t = 0; t < N; t++) {
    mask[t] = t % 5 != 3;
    mask[N + t] = 0.0f;
  }
  m2pt_tensor *tq = test_tensor(ctx, 3, qshape, qkv), *tm = test_tensor(ctx, 2, mshape, mask);
  m2pt_tensor *to = test_tensor(ctx, 3, oshape, NULL), *tt = test_tensor(ctx, 3, oshape, NULL);
  m2pt_tensor *tl = test_tensor(ctx, 3, lshape, NULL), *rl = test_tensor(ctx, 3, lshape, NULL);
  double *qd = widen(qkv, nq), *ref = test_alloc(no * sizeof *ref);
  ref_attention(qd, B, N, H, D, mask, ref);
  ctx->quirks.attention_kernel = M2PT_ATTENTION_KERNEL_ROWS;
  assert_ok(ctx, m2pt_attention_train(ctx, tq, H, D, tm, tt, rl));
  ctx->quirks.attention_kernel = M2PT_ATTENTION_KERNEL_HOST;
  assert_ok(ctx, m2pt_attention(ctx, tq, H, D, tm, M2PT_ATTENTION_FUSED, to));
  float *y = read_all(ctx, to);
  test_assert_close(y, ref, no, 1e-4, "attention on the host");
  for (size_t i = N * H * D; i < no; i++)
    assert_true(y[i] == 0.0f);
  free(y);
  assert_ok(ctx, m2pt_attention_train(ctx, tq, H, D, tm, tt, tl));
  test_assert_same_bits(ctx, tt, to);
  float *lse = read_all(ctx, tl), *lse_rows = read_all(ctx, rl);
  double *want = test_widen(lse_rows, nl);
  for (size_t i = 0; i < nl; i++)
    if (isinf(want[i]))
      assert_true(isinf(lse[i]) && lse[i] < 0.0f && i >= H * N);
    else
      assert_true(fabs(lse[i] - want[i]) <= 1e-4 * fmax(1.0, fabs(want[i])));
  ctx->quirks = own;
  free(lse);
  free(lse_rows);
  free(want);
  free(qd);
  free(ref);
  free(qkv);
  m2pt_tensor_destroy(tq);
  m2pt_tensor_destroy(tm);
  m2pt_tensor_destroy(to);
  m2pt_tensor_destroy(tt);
  m2pt_tensor_destroy(tl);
  m2pt_tensor_destroy(rl);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(parse_accepts_and_rejects),
      cmocka_unit_test(bad_override_fails_creation),
      cmocka_unit_test(gemm_backend_forced),
      cmocka_unit_test_setup_teardown(layer_norm_and_gelu_variants, test_setup_context,
                                      test_teardown_context),
      cmocka_unit_test_setup_teardown(attention_variants, test_setup_context,
                                      test_teardown_context),
      cmocka_unit_test_setup_teardown(attention_on_host, test_setup_context,
                                      test_teardown_context),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
