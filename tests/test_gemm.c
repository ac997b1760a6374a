/* GEMM on every backend the device runs against the double-precision reference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <clblast_c.h>

#include "core/context_impl.h"
#include "core/svm.h"
#include "m2pt/opencl.h"
#include "reference.h"
#include "test_util.h"

typedef struct shape3 {
  size_t m, n, k;
} shape3;

/* Awkward sizes (DESIGN.md §4): 1, 3, 17, 197, 768; tiny ones under oclgrind. */
static const shape3 full_shapes[] = {
    {1, 1, 1}, {3, 17, 5}, {17, 3, 197}, {197, 17, 3}, {197, 768, 17}, {17, 197, 768}, {1, 768, 197},
};
static const shape3 small_shapes[] = {{1, 1, 1}, {3, 17, 5}, {17, 3, 7}};

/* A's, B's and C's buffers each made as SVM (1) or plain (0) when `svm`
 * is given (host_access, core/svm.h), else as the context makes them. */
static m2pt_tensor *operand(m2pt_context *ctx, const size_t shape[2], const float *data,
                            const int *svm, int which)
{
  if (!svm)
    return test_tensor(ctx, 2, shape, data);
  m2pt_tensor *t = test_tensor_as(ctx, 2, shape, data, svm[which]);
  assert_int_equal(m2pt_svm_host(ctx, m2pt_tensor_buffer(t)) != NULL, svm[which]);
  return t;
}

static void check_gemm_access(m2pt_context *ctx, shape3 s, int ta, int tb, float alpha,
                              float beta, const int *svm)
{
  const size_t ar = ta ? s.k : s.m, ac = ta ? s.m : s.k;
  const size_t br = tb ? s.n : s.k, bc = tb ? s.k : s.n;
  float *a = test_alloc(ar * ac * sizeof *a), *b = test_alloc(br * bc * sizeof *b);
  float *c = test_alloc(s.m * s.n * sizeof *c);
  double *ref = test_alloc(s.m * s.n * sizeof *ref);
  test_fill(a, ar * ac, s.m * 31 + s.k);
  test_fill(b, br * bc, s.n * 17 + s.k);
  test_fill(c, s.m * s.n, 5);
  for (size_t i = 0; i < s.m * s.n; i++)
    ref[i] = c[i];
  const size_t sa[2] = {ar, ac}, sb[2] = {br, bc}, sc[2] = {s.m, s.n};
  m2pt_tensor *ta_ = operand(ctx, sa, a, svm, 0), *tb_ = operand(ctx, sb, b, svm, 1);
  m2pt_tensor *tc = operand(ctx, sc, c, svm, 2);
  if (svm) {
    /* Kernels scale A and C by 2^8 (exactly, doubling 8 times) right before
     * the GEMM, nothing read back in between: the host must wait for all
     * of them, SVM operands or mapped. */
    for (int i = 0; i < 8; i++) {
      assert_ok(ctx, m2pt_add(ctx, ta_, ta_, ta_));
      assert_ok(ctx, m2pt_add(ctx, tc, tc, tc));
    }
    for (size_t i = 0; i < ar * ac; i++)
      a[i] *= 256.0f;
    for (size_t i = 0; i < s.m * s.n; i++)
      ref[i] = 256.0 * c[i];
  }
  assert_ok(ctx, m2pt_gemm(ctx, ta ? M2PT_TRANS : M2PT_NO_TRANS, tb ? M2PT_TRANS : M2PT_NO_TRANS,
                           alpha, ta_, tb_, beta, tc));
  assert_ok(ctx, m2pt_tensor_read(tc, c, s.m * s.n));
  ref_gemm(ta, tb, s.m, s.n, s.k, alpha, a, ac, b, bc, beta, ref, s.n);
  test_assert_close(c, ref, s.m * s.n, 1e-4, "gemm");
  m2pt_tensor_destroy(ta_);
  m2pt_tensor_destroy(tb_);
  m2pt_tensor_destroy(tc);
  free(a);
  free(b);
  free(c);
  free(ref);
}

static void check_gemm(m2pt_context *ctx, shape3 s, int ta, int tb, float alpha, float beta)
{
  check_gemm_access(ctx, s, ta, tb, alpha, beta, NULL);
}

/* A host GEMM whose operands are partly SVM buffers, used in place, and
 * partly plain ones, mapped: every mix, each operand last to be mapped,
 * each right after kernels that wrote A and C. */
static void gemm_mixed_host_access(void **state)
{
  m2pt_context *ctx = *state;
  if (!ctx->quirks.host_svm)
    skip(); /* the device offers no SVM buffers, or the matrix's map group */
  const shape3 s = {17, 5, 197};
  for (int mix = 0; mix < 8; mix++) {
    const int svm[3] = {mix & 1, (mix >> 1) & 1, (mix >> 2) & 1};
    check_gemm_access(ctx, s, 0, 1, 0.5f, 0.75f, svm);
  }
}

static void gemm_shapes_and_transposes(void **state)
{
  m2pt_context *ctx = *state;
  const shape3 *shapes = test_small() ? small_shapes : full_shapes;
  const size_t count = test_small() ? sizeof small_shapes / sizeof *small_shapes
                                    : sizeof full_shapes / sizeof *full_shapes;
  for (size_t i = 0; i < count; i++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++)
        check_gemm(ctx, shapes[i], ta, tb, 1.0f, 0.0f);
}

/* Where CLBlast runs its indirect GEMM, which pads its operands into a
 * temporary buffer, the library hands it one from the workspace. Which
 * shapes go indirect depends on the device's CLBlast parameters
 * (XGEMM_MIN_INDIRECT_SIZE: 1030·1020·1010 is indirect on PoCL, direct on an
 * NVIDIA H200), so the test asks CLBlast as the library does. */
static void gemm_indirect_with_temp_buffer(void **state)
{
  m2pt_context *ctx = *state;
  if (test_small())
    skip(); /* far too slow for oclgrind */
  if (strcmp(m2pt_context_gemm_backend(ctx), "CLBlast") != 0)
    skip(); /* the host BLAS needs no temporary buffer */
  const shape3 s = {1030, 1020, 1010};
  size_t temp_bytes = 0;
  assert_int_equal(CLBlastSGemmTempBufferSize(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                                              CLBlastTransposeYes, s.m, s.n, s.k, 0, s.k, 0,
                                              s.k, 0, s.n, &ctx->queue, &temp_bytes),
                   CLBlastSuccess);
  if (temp_bytes == 0)
    skip(); /* the direct kernel on this device: nothing to hand over */
  m2pt_context_stats_reset(ctx);
  check_gemm(ctx, s, 0, 1, 1.0f, 0.0f);
  m2pt_stats st;
  assert_ok(ctx, m2pt_context_stats(ctx, &st));
  /* Beyond the three operands, the workspace's temporary buffer. */
  const size_t operands = (s.m * s.k + s.n * s.k + s.m * s.n) * sizeof(float);
  assert_true(st.device_bytes_allocated >= operands + temp_bytes);
}

static void gemm_alpha_beta(void **state)
{
  m2pt_context *ctx = *state;
  const shape3 s = {17, 5, 3};
  check_gemm(ctx, s, 0, 1, 0.5f, 1.0f);
  check_gemm(ctx, s, 1, 0, -2.0f, 0.25f);
  check_gemm(ctx, s, 0, 0, 0.0f, 1.0f);
}

/* BLAS semantics: with beta = 0, C is not read, so NaN in C does not leak. */
static void gemm_beta_zero_ignores_c(void **state)
{
  m2pt_context *ctx = *state;
  const size_t sa[2] = {3, 4}, sb[2] = {4, 5}, sc[2] = {3, 5};
  float a[12], b[20], c[15];
  double ref[15];
  test_fill(a, 12, 1);
  test_fill(b, 20, 2);
  for (size_t i = 0; i < 15; i++)
    c[i] = NAN;
  m2pt_tensor *ta = test_tensor(ctx, 2, sa, a), *tb = test_tensor(ctx, 2, sb, b);
  m2pt_tensor *tc = test_tensor(ctx, 2, sc, c);
  assert_ok(ctx, m2pt_gemm(ctx, M2PT_NO_TRANS, M2PT_NO_TRANS, 1.0f, ta, tb, 0.0f, tc));
  assert_ok(ctx, m2pt_tensor_read(tc, c, 15));
  ref_gemm(0, 0, 3, 5, 4, 1.0, a, 4, b, 5, 0.0, ref, 5);
  test_assert_close(c, ref, 15, 1e-4, "gemm beta=0 over NaN");
  m2pt_tensor_destroy(ta);
  m2pt_tensor_destroy(tb);
  m2pt_tensor_destroy(tc);
}

/* Strided batches inside larger tensors, as attention uses them: batch 3
 * of 5 × 4 × 3 at offsets, leading dimensions wider than the rows and batch
 * strides, a transposed operand stored [cols][rows]. Each transpose makes
 * the backend see other strides (oneDNN: a 3-D strided matrix). */
typedef struct strided_batch {
  int trans_a, trans_b;
  size_t nc;
  float *a, *b, *c; /* whole tensors; c as read back after the GEMM */
  m2pt_tensor *ta, *tb, *tc;
  m2pt_matrix_batch ma, mb, mc;
} strided_batch;

enum { SB_BATCH = 3, SB_M = 5, SB_N = 4, SB_K = 3 };

static strided_batch strided_batch_make(m2pt_context *ctx, int trans_a, int trans_b)
{
  const size_t m = SB_M, n = SB_N, k = SB_K, oa = 3, ob = 1, oc = 2;
  const size_t ar = trans_a ? k : m, ac = trans_a ? m : k;
  const size_t br = trans_b ? n : k, bc = trans_b ? k : n;
  const size_t lda = ac + 4, ldb = bc + 3, ldc = n + 5;
  const size_t sta = ar * lda + 2, stb = br * ldb, stc = m * ldc + 1;
  const size_t na = oa + SB_BATCH * sta, nb = ob + SB_BATCH * stb, nc = oc + SB_BATCH * stc;
  strided_batch sb = {.trans_a = trans_a,
                      .trans_b = trans_b,
                      .nc = nc,
                      .a = test_alloc(na * sizeof(float)),
                      .b = test_alloc(nb * sizeof(float)),
                      .c = test_alloc(nc * sizeof(float))};
  test_fill(sb.a, na, 11);
  test_fill(sb.b, nb, 12);
  test_fill(sb.c, nc, 13);
  const size_t sa[1] = {na}, sbs[1] = {nb}, sc[1] = {nc};
  sb.ta = test_tensor(ctx, 1, sa, sb.a);
  sb.tb = test_tensor(ctx, 1, sbs, sb.b);
  sb.tc = test_tensor(ctx, 1, sc, sb.c);
  sb.ma = (m2pt_matrix_batch){sb.ta, oa, lda, sta};
  sb.mb = (m2pt_matrix_batch){sb.tb, ob, ldb, stb};
  sb.mc = (m2pt_matrix_batch){sb.tc, oc, ldc, stc};
  return sb;
}

/* C = alpha·op(A)·op(B) + beta·C on every member, checked against the
 * reference over all of C's tensor: elements between the matrices stay. */
static void strided_batch_check(m2pt_context *ctx, strided_batch *sb, float alpha, float beta)
{
  double *ref = test_widen(sb->c, sb->nc);
  assert_ok(ctx, m2pt_gemm_batched(ctx, sb->trans_a ? M2PT_TRANS : M2PT_NO_TRANS,
                                   sb->trans_b ? M2PT_TRANS : M2PT_NO_TRANS, SB_M, SB_N, SB_K,
                                   alpha, &sb->ma, &sb->mb, beta, &sb->mc, SB_BATCH));
  assert_ok(ctx, m2pt_tensor_read(sb->tc, sb->c, sb->nc));
  for (size_t i = 0; i < SB_BATCH; i++)
    ref_gemm(sb->trans_a, sb->trans_b, SB_M, SB_N, SB_K, alpha,
             sb->a + sb->ma.offset + i * sb->ma.batch_stride, sb->ma.ld,
             sb->b + sb->mb.offset + i * sb->mb.batch_stride, sb->mb.ld, beta,
             ref + sb->mc.offset + i * sb->mc.batch_stride, sb->mc.ld);
  test_assert_close(sb->c, ref, sb->nc, 1e-4, "strided batched gemm");
  free(ref);
}

static void strided_batch_free(strided_batch *sb)
{
  m2pt_tensor_destroy(sb->ta);
  m2pt_tensor_destroy(sb->tb);
  m2pt_tensor_destroy(sb->tc);
  free(sb->a);
  free(sb->b);
  free(sb->c);
}

static void gemm_strided_batched(void **state)
{
  m2pt_context *ctx = *state;
  const size_t m = SB_M, n = SB_N, k = SB_K, batch = SB_BATCH;
  /* A as stored [m][k], B stored [n][k] and transposed. */
  strided_batch sb = strided_batch_make(ctx, 0, 1);
  strided_batch_check(ctx, &sb, 1.5f, 0.5f);

  /* Every matrix must lie inside its tensor. */
  const m2pt_matrix_batch mc = sb.mc;
  const m2pt_matrix_batch too_far = {sb.tc, mc.offset + mc.batch_stride, mc.ld, mc.batch_stride};
  assert_status(ctx,
                m2pt_gemm_batched(ctx, M2PT_NO_TRANS, M2PT_TRANS, m, n, k, 1.0f, &sb.ma, &sb.mb,
                                  0.0f, &too_far, batch),
                M2PT_ERR_SHAPE);
  const m2pt_matrix_batch narrow = {sb.ta, 0, k - 1, sb.ma.batch_stride};
  assert_status(ctx,
                m2pt_gemm_batched(ctx, M2PT_NO_TRANS, M2PT_TRANS, m, n, k, 1.0f, &narrow, &sb.mb,
                                  0.0f, &sb.mc, batch),
                M2PT_ERR_INVALID_ARGUMENT);
  const m2pt_matrix_batch overlapping = {sb.tc, 0, sb.mc.ld, 1};
  assert_status(ctx,
                m2pt_gemm_batched(ctx, M2PT_NO_TRANS, M2PT_TRANS, m, n, k, 1.0f, &sb.ma, &sb.mb,
                                  0.0f, &overlapping, batch),
                M2PT_ERR_INVALID_ARGUMENT);
  /* Overflowing extents, through the offset or through a batch stride that
   * wraps the end back inside the tensor. */
  const m2pt_matrix_batch wrap_c = {sb.tc, 0, sb.mc.ld, SIZE_MAX - 1};
  assert_status(ctx,
                m2pt_gemm_batched(ctx, M2PT_NO_TRANS, M2PT_TRANS, m, n, k, 1.0f, &sb.ma, &sb.mb,
                                  0.0f, &wrap_c, 2),
                M2PT_ERR_INVALID_ARGUMENT);
  const m2pt_matrix_batch wrap_a = {sb.ta, 0, sb.ma.ld, SIZE_MAX / 2 + 1};
  assert_status(ctx,
                m2pt_gemm_batched(ctx, M2PT_NO_TRANS, M2PT_TRANS, m, n, k, 1.0f, &wrap_a, &sb.mb,
                                  0.0f, &sb.mc, 3),
                M2PT_ERR_INVALID_ARGUMENT);
  const m2pt_matrix_batch huge = {sb.ta, SIZE_MAX - 4, sb.ma.ld, sb.ma.batch_stride};
  assert_status(ctx,
                m2pt_gemm_batched(ctx, M2PT_NO_TRANS, M2PT_TRANS, m, n, k, 1.0f, &huge, &sb.mb,
                                  0.0f, &sb.mc, batch),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx,
                m2pt_gemm_batched(ctx, M2PT_NO_TRANS, M2PT_TRANS, m, n, k, 1.0f, &sb.ma, &sb.mb,
                                  0.0f, &sb.mc, 0),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx,
                m2pt_gemm_batched(ctx, M2PT_NO_TRANS, M2PT_TRANS, m, n, k, 1.0f, NULL, &sb.mb, 0.0f,
                                  &sb.mc, 1),
                M2PT_ERR_INVALID_ARGUMENT);
  /* Nothing was written by the rejected calls. */
  float *after = test_read(ctx, sb.tc);
  assert_memory_equal(sb.c, after, sb.nc * sizeof *after);
  free(after);
  strided_batch_free(&sb);
}

static void gemm_strided_batched_transposes(void **state)
{
  m2pt_context *ctx = *state;
  for (int t = 0; t < 4; t++) {
    strided_batch sb = strided_batch_make(ctx, t & 1, t >> 1);
    strided_batch_check(ctx, &sb, 0.75f, -0.5f);
    strided_batch_free(&sb);
  }
}

static void gemm_bad_arguments(void **state)
{
  m2pt_context *ctx = *state;
  const size_t s23[2] = {2, 3}, s34[2] = {3, 4}, s24[2] = {2, 4}, s44[2] = {4, 4};
  const size_t s3d[3] = {2, 3, 1};
  m2pt_tensor *a = test_tensor(ctx, 2, s23, NULL), *b = test_tensor(ctx, 2, s34, NULL);
  m2pt_tensor *c = test_tensor(ctx, 2, s24, NULL), *wrong = test_tensor(ctx, 2, s44, NULL);
  m2pt_tensor *cube = test_tensor(ctx, 3, s3d, NULL);
  assert_ok(ctx, m2pt_gemm(ctx, M2PT_NO_TRANS, M2PT_NO_TRANS, 1, a, b, 0, c));
  assert_status(ctx, m2pt_gemm(ctx, M2PT_NO_TRANS, M2PT_NO_TRANS, 1, a, b, 0, wrong),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_gemm(ctx, M2PT_TRANS, M2PT_NO_TRANS, 1, a, b, 0, c), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_gemm(ctx, M2PT_NO_TRANS, M2PT_NO_TRANS, 1, a, b, 0, cube),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_gemm(ctx, M2PT_NO_TRANS, M2PT_NO_TRANS, 1, a, NULL, 0, c),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_gemm(ctx, M2PT_NO_TRANS, M2PT_NO_TRANS, 1, wrong, wrong, 0, wrong),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_gemm(ctx, M2PT_NO_TRANS, M2PT_NO_TRANS, NAN, a, b, 0, c),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_gemm(ctx, (m2pt_transpose)7, M2PT_NO_TRANS, 1, a, b, 0, c),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_gemm(NULL, M2PT_NO_TRANS, M2PT_NO_TRANS, 1, a, b, 0, c),
                M2PT_ERR_INVALID_ARGUMENT);

  /* A tensor of another context. */
  m2pt_context *other = test_context();
  m2pt_tensor *foreign = test_tensor(other, 2, s34, NULL);
  assert_status(ctx, m2pt_gemm(ctx, M2PT_NO_TRANS, M2PT_NO_TRANS, 1, a, foreign, 0, c),
                M2PT_ERR_CONTEXT_MISMATCH);
  m2pt_tensor_destroy(foreign);
  m2pt_context_destroy(other);

  assert_ok(ctx, m2pt_gemm(ctx, M2PT_NO_TRANS, M2PT_NO_TRANS, 1, a, b, 0, c));
  m2pt_tensor_destroy(a);
  m2pt_tensor_destroy(b);
  m2pt_tensor_destroy(c);
  m2pt_tensor_destroy(wrong);
  m2pt_tensor_destroy(cube);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(gemm_mixed_host_access),
      cmocka_unit_test(gemm_shapes_and_transposes),
      cmocka_unit_test(gemm_indirect_with_temp_buffer),
      cmocka_unit_test(gemm_alpha_beta),
      cmocka_unit_test(gemm_beta_zero_ignores_c),
      cmocka_unit_test(gemm_strided_batched),
      cmocka_unit_test(gemm_strided_batched_transposes),
      cmocka_unit_test(gemm_bad_arguments),
  };
  /* The GEMM backend is all that changes what these tests run. */
  return test_run_matrix("gemm", TEST_AXIS_GEMM | TEST_AXIS_HOST_ACCESS, tests, NULL, NULL) != 0;
}
