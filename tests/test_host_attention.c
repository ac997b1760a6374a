/* The host attention (lib/common/host_attention.h) against the double
 * reference: every instruction-set copy this CPU runs, token counts around
 * its blocks of 16 keys and 4 query rows, masks that drop some or all of a
 * batch row's keys, the log-sum-exp, NaN, and refused arguments. Host
 * only: no device. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/host_attention.h"
#include "reference.h"
#include "test_util.h"

#define DH 64

/* log Σ_j e^(s_j) of row i of (b, h), in double, -inf with every key masked. */
static double ref_lse(const double *qkv, const float *mask, size_t tokens, size_t heads,
                      size_t b, size_t h, size_t i)
{
  const size_t hd = heads * DH, row = 3 * hd;
  const double *q = qkv + (b * tokens + i) * row + h * DH;
  double top = -INFINITY, *s = test_alloc(tokens * sizeof *s);
  for (size_t j = 0; j < tokens; j++) {
    const double *k = qkv + (b * tokens + j) * row + hd + h * DH;
    double dot = 0.0;
    for (size_t d = 0; d < DH; d++)
      dot += q[d] * k[d];
    s[j] = mask && mask[b * tokens + j] == 0.0f ? -INFINITY : dot / 8.0;
    top = s[j] > top ? s[j] : top;
  }
  double sum = 0.0;
  for (size_t j = 0; j < tokens && top > -INFINITY; j++)
    sum += exp(s[j] - top);
  free(s);
  return top == -INFINITY ? -INFINITY : top + log(sum);
}

/* Batch row b masks its last 3b keys (row 0 none, all of them once 3b ≥ N). */
static float *make_mask(size_t batch, size_t tokens)
{
  float *mask = test_alloc(batch * tokens * sizeof *mask);
  for (size_t b = 0; b < batch; b++)
    for (size_t t = 0; t < tokens; t++)
      mask[b * tokens + t] = t + 3 * b < tokens ? 1.0f : 0.0f;
  return mask;
}

static void check_shape(m2pt_host_isa isa, size_t batch, size_t tokens, size_t heads,
                        int masked, unsigned threads)
{
  const size_t hd = heads * DH, n_qkv = batch * tokens * 3 * hd, n_out = batch * tokens * hd;
  const size_t n_lse = batch * heads * tokens;
  float *qkv = test_random_floats(n_qkv, tokens * 131 + heads * 7 + batch, 2.0f);
  float *mask = masked ? make_mask(batch, tokens) : NULL;
  float *out = test_alloc(n_out * sizeof *out), *lse = test_alloc(n_lse * sizeof *lse);
  double *qd = test_widen(qkv, n_qkv), *ref = test_alloc(n_out * sizeof *ref);
  double *ref_l = test_alloc(n_lse * sizeof *ref_l);
  ref_attention(qd, batch, tokens, heads, DH, mask, ref);
  for (size_t b = 0; b < batch; b++)
    for (size_t h = 0; h < heads; h++)
      for (size_t i = 0; i < tokens; i++)
        ref_l[(b * heads + h) * tokens + i] = ref_lse(qd, mask, tokens, heads, b, h, i);
  const m2pt_host_attention_shape s = {batch, tokens, heads, DH};
  m2pt_host_pool *pool = m2pt_host_pool_create(threads);
  assert_non_null(pool);
  assert_int_equal(m2pt_host_attention(qkv, mask, &s, isa, pool, out, lse), M2PT_OK);
  m2pt_host_pool_destroy(pool);
  char what[96];
  snprintf(what, sizeof what, "host attention isa %d, B %zu N %zu H %zu%s, %u threads", (int)isa,
           batch, tokens, heads, masked ? " masked" : "", threads);
  test_assert_close(out, ref, n_out, 1e-4, what);
  /* A fully masked row's log-sum-exp is -inf, which closeness cannot take. */
  for (size_t i = 0; i < n_lse; i++)
    if (isinf(ref_l[i]))
      assert_true(isinf(lse[i]) && lse[i] < 0.0f);
    else if (fabs(lse[i] - ref_l[i]) > 1e-4 * fmax(1.0, fabs(ref_l[i])))
      fail_msg("%s: lse[%zu] = %.7g, reference %.7g", what, i, (double)lse[i], ref_l[i]);
  free(qkv);
  free(mask);
  free(out);
  free(lse);
  free(qd);
  free(ref);
  free(ref_l);
}

static void matches_reference(void **state)
{
  (void)state;
  const size_t tokens[] = {1, 3, 15, 16, 17, 31, 33, 197};
  for (int isa = 0; isa <= (int)m2pt_host_isa_best(); isa++)
    for (size_t t = 0; t < sizeof tokens / sizeof tokens[0]; t++)
      for (int masked = 0; masked < 2; masked++)
        check_shape((m2pt_host_isa)isa, 2, tokens[t], 3, masked, t % 2 ? 3 : 1);
}

/* More workers than tasks, and one task each. */
static void threads_any_count(void **state)
{
  (void)state;
  const m2pt_host_isa isa = m2pt_host_isa_best();
  check_shape(isa, 1, 40, 2, 1, 64);
  check_shape(isa, 3, 20, 4, 1, 12);
}

/* NaN in one query row makes that row's outputs NaN and leaves the others. */
static void nan_stays_in_its_row(void **state)
{
  (void)state;
  const size_t batch = 1, tokens = 9, heads = 2, hd = heads * DH;
  float *qkv = test_random_floats(batch * tokens * 3 * hd, 5, 1.0f);
  qkv[4 * 3 * hd + 3] = NAN; /* token 4's q, head 0 */
  float *out = test_alloc(batch * tokens * hd * sizeof *out);
  const m2pt_host_attention_shape s = {batch, tokens, heads, DH};
  m2pt_host_pool *pool = m2pt_host_pool_create(2);
  assert_int_equal(m2pt_host_attention(qkv, NULL, &s, m2pt_host_isa_best(), pool, out, NULL),
                   M2PT_OK);
  m2pt_host_pool_destroy(pool);
  for (size_t i = 0; i < tokens; i++)
    for (size_t h = 0; h < heads; h++)
      for (size_t d = 0; d < DH; d++) {
        const float v = out[(i * heads + h) * DH + d];
        if (i == 4 && h == 0)
          assert_true(isnan(v));
        else
          assert_false(isnan(v));
      }
  free(qkv);
  free(out);
}

static void refuses_bad_arguments(void **state)
{
  (void)state;
  float qkv[3 * DH] = {0}, out[DH] = {0}, lse[1] = {0};
  const m2pt_host_isa best = m2pt_host_isa_best();
  const m2pt_host_attention_shape ok = {1, 1, 1, DH};
  const m2pt_host_attention_shape bad[] = {
      {1, 1, 1, 32}, {0, 1, 1, DH}, {1, 0, 1, DH}, {1, 1, 0, DH}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(m2pt_host_attention(qkv, NULL, &bad[i], best, NULL, out, lse),
                     M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_host_attention(NULL, NULL, &ok, best, NULL, out, lse),
                   M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_host_attention(qkv, NULL, NULL, best, NULL, out, lse),
                   M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_host_attention(qkv, NULL, &ok, best, NULL, NULL, lse),
                   M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_host_attention(qkv, NULL, &ok, (m2pt_host_isa)(best + 1), NULL, out,
                                       lse),
                   M2PT_ERR_INVALID_ARGUMENT);
  /* Scratch whose size overflows: refused before anything is read. */
  const m2pt_host_attention_shape huge = {1, SIZE_MAX / 16, 1, DH};
  assert_int_equal(m2pt_host_attention(qkv, NULL, &huge, best, NULL, out, lse),
                   M2PT_ERR_OUT_OF_MEMORY);
  for (size_t i = 0; i < DH; i++)
    assert_true(out[i] == 0.0f);
  assert_true(lse[0] == 0.0f);
  assert_int_equal(m2pt_host_attention_fast(32), 0);
  assert_int_equal(m2pt_host_attention_fast(DH), best != M2PT_HOST_ISA_PORTABLE);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(matches_reference),
      cmocka_unit_test(threads_any_count),
      cmocka_unit_test(nan_stays_in_its_row),
      cmocka_unit_test(refuses_bad_arguments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
