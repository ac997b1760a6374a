/* The multi-head attention backward on the GEMM path (issue 12): against
 * the double reference, the reference against central finite differences
 * in double (L = Σ dO ⊙ O through the double forward), with and without
 * the key-padding mask (an all-padding batch row included), twice bit for
 * bit, and every rejected input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"
#include "test_util.h"

/* Awkward shapes (DESIGN.md §4): tokens around nothing (1), a few, a
 * prime, ViT-B/16's 197; head sizes from a scalar to ViT-B's. */
static const size_t token_counts[] = {1, 3, 17, 197};
static const size_t head_sizes[] = {1, 4, 16, 64};

/* Finite differences agree with the analytic double reference to this
 * (central, h = 1e-5: truncation ~h², rounding ~1e-16/h). */
#define FD_TOL 1e-6
/* f32 against double, relative to max(1, max|ref|), as the forward's
 * attention test: each gradient is two chained GEMMs of length ≤ N around
 * the softmax backward. */
#define TOL 2e-4

/* mask [batch][tokens]. masking 0: none (all ones); 1: batch row b pads
 * scattered keys (never token 0); 2: as 1, but the last batch row is all
 * padding. */
static float *make_mask(size_t batch, size_t tokens, int masking)
{
  float *m = test_alloc(batch * tokens * sizeof *m);
  for (size_t b = 0; b < batch; b++)
    for (size_t t = 0; t < tokens; t++) {
      const int pad = masking && (t > 0 && (t * 3 + b) % 4 == 1);
      m[b * tokens + t] = (masking == 2 && b + 1 == batch) || pad ? 0.0f : 1.0f;
    }
  return m;
}

/* ---- The reference against finite differences ---- */

static void check_fd(size_t batch, size_t tokens, size_t heads, size_t dim_head, int masking)
{
  const size_t hd = heads * dim_head, nq = batch * tokens * 3 * hd, no = batch * tokens * hd;
  const double h = 1e-5;
  float *qf = test_random_floats(nq, 70 + tokens, 2.0f);
  float *gf = test_random_floats(no, 71 + heads, 1.0f);
  float *mask = make_mask(batch, tokens, masking);
  const float *m = masking ? mask : NULL;
  double *qkv = test_widen(qf, nq), *dout = test_widen(gf, no);
  double *up = test_alloc(no * sizeof *up), *down = test_alloc(no * sizeof *down);
  double *fd = test_alloc(nq * sizeof *fd), *ref = test_alloc(nq * sizeof *ref);
  for (size_t i = 0; i < nq; i++) {
    const double saved = qkv[i];
    double lu = 0.0, ld = 0.0;
    qkv[i] = saved + h;
    ref_attention(qkv, batch, tokens, heads, dim_head, m, up);
    qkv[i] = saved - h;
    ref_attention(qkv, batch, tokens, heads, dim_head, m, down);
    qkv[i] = saved;
    for (size_t j = 0; j < no; j++) {
      lu += dout[j] * up[j];
      ld += dout[j] * down[j];
    }
    fd[i] = (lu - ld) / (2.0 * h);
  }
  ref_attention_backward(qkv, dout, batch, tokens, heads, dim_head, m, ref);
  char what[96];
  snprintf(what, sizeof what, "attention dqkv (N %zu, heads %zu, dim_head %zu, mask %d)", tokens,
           heads, dim_head, masking);
  test_assert_fd(ref, fd, nq, FD_TOL, what);
  void *host[] = {qf, gf, mask, qkv, dout, up, down, fd, ref};
  for (size_t i = 0; i < sizeof host / sizeof *host; i++)
    free(host[i]);
}

static void attention_finite_differences(void **state)
{
  (void)state;
  for (int masking = 0; masking < 3; masking++) {
    check_fd(2, 1, 1, 1, masking);
    check_fd(2, 3, 2, 4, masking);
    check_fd(1, 5, 3, 2, masking);
  }
}

/* ---- The device against the reference ---- */

static void check_backward(m2pt_context *ctx, size_t batch, size_t tokens, size_t heads,
                           size_t dim_head, int masking)
{
  const size_t hd = heads * dim_head, row = 3 * hd;
  const size_t nq = batch * tokens * row, no = batch * tokens * hd;
  float *qkv = test_random_floats(nq, tokens * 7 + heads + dim_head, 2.0f);
  float *dout = test_random_floats(no, tokens + 3 * dim_head, 1.0f);
  float *mask = make_mask(batch, tokens, masking), *sevens = test_alloc(nq * sizeof *sevens);
  for (size_t i = 0; i < nq; i++)
    sevens[i] = 7.0f;
  const size_t sq[3] = {batch, tokens, row}, so[3] = {batch, tokens, hd}, sm[2] = {batch, tokens};
  m2pt_tensor *tq = test_tensor(ctx, 3, sq, qkv), *tg = test_tensor(ctx, 3, so, dout);
  m2pt_tensor *tm = masking ? test_tensor(ctx, 2, sm, mask) : NULL;
  /* Filled with 7s: every element must be written. */
  m2pt_tensor *td = test_tensor(ctx, 3, sq, sevens), *td2 = test_tensor(ctx, 3, sq, sevens);
  double *qd = test_widen(qkv, nq), *gd = test_widen(dout, no);
  double *ref = test_alloc(nq * sizeof *ref);
  ref_attention_backward(qd, gd, batch, tokens, heads, dim_head, masking ? mask : NULL, ref);
  assert_ok(ctx, m2pt_attention_backward(ctx, tq, heads, dim_head, tm, tg, M2PT_ATTENTION_GEMM,
                                         td));
  float *got = test_read(ctx, td);
  char what[96];
  snprintf(what, sizeof what, "dqkv (B %zu, N %zu, heads %zu, dim_head %zu, mask %d)", batch,
           tokens, heads, dim_head, masking);
  test_assert_close(got, ref, nq, TOL, what);
  for (size_t i = 0; i < nq; i++) {
    assert_true(isfinite(got[i]));
    const size_t token = i / row, part = i % row / hd;
    /* Padding keys: no gradient reaches their k or v (P's column is 0);
     * an all-padding batch row gets zeros everywhere. */
    if (masking && mask[token] == 0.0f && part > 0)
      assert_true(got[i] == 0.0f);
    if (masking == 2 && token / tokens == batch - 1)
      assert_true(got[i] == 0.0f);
  }
  /* Twice, and through AUTO (the GEMM path today): the same bits. */
  assert_ok(ctx, m2pt_attention_backward(ctx, tq, heads, dim_head, tm, tg, M2PT_ATTENTION_GEMM,
                                         td2));
  test_assert_same_bits(ctx, td2, td);
  assert_ok(ctx, m2pt_tensor_write(td2, sevens, nq));
  assert_ok(ctx, m2pt_attention_backward(ctx, tq, heads, dim_head, tm, tg, M2PT_ATTENTION_AUTO,
                                         td2));
  test_assert_same_bits(ctx, td2, td);
  m2pt_tensor *all[] = {tq, tg, tm, td, td2};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    m2pt_tensor_destroy(all[i]);
  void *host[] = {qkv, dout, mask, sevens, qd, gd, ref, got};
  for (size_t i = 0; i < sizeof host / sizeof *host; i++)
    free(host[i]);
}

static void attention_backward(void **state)
{
  m2pt_context *ctx = *state;
  /* Oclgrind: N up to 17 and head sizes up to 16 (tiny shapes fit it). */
  const size_t ntok = test_small() ? 3 : 4, nhead = test_small() ? 3 : 4;
  size_t k = 0;
  for (size_t ti = 0; ti < ntok; ti++)
    for (size_t di = 0; di < nhead; di++)
      for (int masking = 0; masking < 3; masking++, k++)
        check_backward(ctx, 2, token_counts[ti], 1 + k % 3, head_sizes[di], masking);
}

/* ---- Rejected inputs: the right status, nothing written ---- */

static void assert_untouched(m2pt_context *ctx, const m2pt_tensor *t, float value)
{
  float *h = test_read(ctx, t);
  for (size_t i = 0; i < m2pt_tensor_numel(t); i++)
    assert_true(h[i] == value);
  free(h);
}

static void bad_inputs(void **state)
{
  m2pt_context *ctx = *state;
  /* heads 2, dim_head 4: qkv [2][3][24], dout [2][3][8]. */
  const size_t sq[3] = {2, 3, 24}, so[3] = {2, 3, 8}, sm[2] = {2, 3}, smb[2] = {2, 4};
  const size_t sqb[3] = {2, 3, 25}, sob[3] = {2, 4, 8};
  float sevens[2 * 3 * 25];
  for (size_t i = 0; i < sizeof sevens / sizeof *sevens; i++)
    sevens[i] = 7.0f;
  m2pt_tensor *q = test_tensor(ctx, 3, sq, NULL), *g = test_tensor(ctx, 3, so, NULL);
  m2pt_tensor *m = test_tensor(ctx, 2, sm, NULL), *mb = test_tensor(ctx, 2, smb, NULL);
  m2pt_tensor *d = test_tensor(ctx, 3, sq, sevens), *db = test_tensor(ctx, 3, sqb, sevens);
  m2pt_tensor *gb = test_tensor(ctx, 3, sob, NULL);
  m2pt_context *other = test_context();
  m2pt_tensor *foreign = test_tensor(other, 3, sq, NULL);
  const m2pt_attention_impl gemm = M2PT_ATTENTION_GEMM;

  assert_status(NULL, m2pt_attention_backward(NULL, q, 2, 4, m, g, gemm, d),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention_backward(ctx, NULL, 2, 4, m, g, gemm, d),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention_backward(ctx, q, 2, 4, m, NULL, gemm, d),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention_backward(ctx, q, 2, 4, m, g, gemm, NULL),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention_backward(ctx, q, 2, 4, m, g, gemm, q),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention_backward(ctx, q, 0, 4, m, g, gemm, d),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention_backward(ctx, q, 2, 0, m, g, gemm, d),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention_backward(ctx, q, 2, 4, m, g, (m2pt_attention_impl)7, d),
                M2PT_ERR_INVALID_ARGUMENT);
  /* Shapes: heads that do not divide qkv, dout of other tokens, dqkv not
   * qkv's, a mask of other tokens. */
  assert_status(ctx, m2pt_attention_backward(ctx, q, 3, 4, m, g, gemm, d), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_attention_backward(ctx, q, 2, 4, m, gb, gemm, d), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_attention_backward(ctx, q, 2, 4, m, g, gemm, db), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_attention_backward(ctx, q, 2, 4, mb, g, gemm, d), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_attention_backward(ctx, foreign, 2, 4, m, g, gemm, d),
                M2PT_ERR_CONTEXT_MISMATCH);
  assert_status(ctx, m2pt_attention_backward(ctx, q, 2, 4, m, g, gemm, foreign),
                M2PT_ERR_CONTEXT_MISMATCH);
  /* The O(N)-memory fused backward is a later step. */
  assert_status(ctx, m2pt_attention_backward(ctx, q, 2, 4, m, g, M2PT_ATTENTION_FUSED, d),
                M2PT_ERR_UNSUPPORTED);

  /* Nothing was written, and the context still works. */
  assert_untouched(ctx, d, 7.0f);
  assert_untouched(ctx, db, 7.0f);
  assert_ok(ctx, m2pt_attention_backward(ctx, q, 2, 4, m, g, gemm, d));

  m2pt_tensor_destroy(foreign);
  m2pt_context_destroy(other);
  m2pt_tensor *all[] = {q, g, m, mb, d, db, gb};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    m2pt_tensor_destroy(all[i]);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(attention_finite_differences),
      cmocka_unit_test(attention_backward),
      cmocka_unit_test(bad_inputs),
  };
  return test_run_matrix("grad_attention", TEST_AXIS_GEMM | TEST_AXIS_SOFTMAX, tests, NULL,
                         NULL);
}
