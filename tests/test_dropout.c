/* Philox-4x32-10, dropout and drop-path (issue 12): Random123's
 * known-answer vectors on the device, every mask bit against a host Philox
 * (the same bits on every device), keep rates within a few σ, the same mask
 * forward and backward, and rejected arguments. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/context_impl.h"
#include "ops/dropout_ops.h"
#include "test_util.h"

/* Philox-4x32-10 on the host, written from the paper (not from the kernel). */
static void host_philox(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[4])
{
  uint32_t c[4] = {ctr_in[0], ctr_in[1], ctr_in[2], ctr_in[3]}, k[2] = {key_in[0], key_in[1]};
  for (int round = 0; round < 10; round++) {
    const uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
    const uint32_t n[4] = {(uint32_t)(p1 >> 32) ^ c[1] ^ k[0], (uint32_t)p1,
                           (uint32_t)(p0 >> 32) ^ c[3] ^ k[1], (uint32_t)p0};
    memcpy(c, n, sizeof c);
    k[0] += 0x9E3779B9u;
    k[1] += 0xBB67AE85u;
  }
  memcpy(out, c, sizeof c);
}

static void philox_known_answers(void **state)
{
  m2pt_context *ctx = *state;
  /* Random123 1.09, tests/kat_vectors: philox4x32 10. */
  static const uint32_t kat[3][10] = {
      {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
      {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
       0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
      {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
       0x94fdcceb, 0x5001e420, 0x24126ea1},
  };
  enum { BLOCKS = 64 };
  const size_t shape[1] = {4 * BLOCKS};
  m2pt_tensor *t = test_tensor(ctx, 1, shape, NULL); /* 4-byte elements: room for uints */
  for (size_t v = 0; v < 3; v++) {
    assert_ok(ctx, m2pt_op_philox_blocks(ctx, kat[v], kat[v] + 4, BLOCKS, t->buffer));
    float *raw = test_read(ctx, t);
    uint32_t got[4 * BLOCKS];
    memcpy(got, raw, sizeof got);
    free(raw);
    assert_memory_equal(got, kat[v] + 6, 4 * sizeof(uint32_t));
    /* The following blocks (the counter's low word wrapping for the second
     * vector) against the host. */
    for (size_t g = 0; g < BLOCKS; g++) {
      const uint32_t ctr[4] = {kat[v][0] + (uint32_t)g, kat[v][1], kat[v][2], kat[v][3]};
      uint32_t want[4];
      host_philox(ctr, kat[v] + 4, want);
      assert_memory_equal(got + 4 * g, want, sizeof want);
    }
  }
  m2pt_tensor_destroy(t);
}

/* The element's keep bit as the header defines it. */
static int host_kept(m2pt_rng_key key, size_t i, float p, int per_sample)
{
  const uint64_t g = per_sample ? i : i / 4;
  const uint32_t ctr[4] = {(uint32_t)g, (uint32_t)(g >> 32) | (per_sample ? 0x80000000u : 0u),
                           key.step, key.layer};
  const uint32_t k[2] = {(uint32_t)key.seed, (uint32_t)(key.seed >> 32)};
  uint32_t r[4];
  host_philox(ctr, k, r);
  const uint64_t threshold = (uint64_t)ceil((double)p * 4294967296.0);
  return (uint64_t)r[per_sample ? 0 : i % 4] >= threshold;
}

/* |kept − n·q| ≤ 5σ with σ = √(n·q·(1 − q)), q = 1 − p. */
static void assert_rate(size_t kept, size_t n, float p)
{
  const double q = 1.0 - p, sigma = sqrt((double)n * q * (1.0 - q));
  if (fabs((double)kept - (double)n * q) > 5.0 * sigma + 1e-9) {
    print_error("kept %zu of %zu at p %g (expected %g ± %g)\n", kept, n, (double)p,
                (double)n * q, 5.0 * sigma);
    fail();
  }
}

static void dropout_masks(void **state)
{
  m2pt_context *ctx = *state;
  const size_t n = test_small() ? 4099 : 100003; /* not a multiple of 4 */
  static const float ps[] = {0.0f, 0.1f, 0.5f, 0.9f, 1.0f};
  const size_t shape[2] = {n, 1};
  float *xf = test_alloc(n * sizeof *xf);
  test_fill(xf, n, 81);
  m2pt_tensor *x = test_tensor(ctx, 2, shape, xf), *y = test_tensor(ctx, 2, shape, NULL);
  m2pt_tensor *dx = test_tensor(ctx, 2, shape, NULL), *y2 = test_tensor(ctx, 2, shape, NULL);
  for (size_t pi = 0; pi < sizeof ps / sizeof *ps; pi++) {
    const float p = ps[pi], scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    const m2pt_rng_key key = {0x0123456789abcdefull + pi, 7, 3};
    assert_ok(ctx, m2pt_dropout(ctx, x, p, key, y));
    float *yv = test_read(ctx, y);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
      const int k = host_kept(key, i, p, 0);
      kept += (size_t)k;
      assert_true(yv[i] == (k ? xf[i] * scale : 0.0f));
    }
    assert_rate(kept, n, p);
    /* The backward regenerates the same mask: dx = dy·m/(1 − p) with dy = x. */
    assert_ok(ctx, m2pt_dropout_backward(ctx, x, p, key, dx));
    float *dv = test_read(ctx, dx);
    assert_memory_equal(yv, dv, n * sizeof *yv);
    /* Twice the same bits; another step or layer another mask. */
    assert_ok(ctx, m2pt_dropout(ctx, x, p, key, y2));
    float *y2v = test_read(ctx, y2);
    assert_memory_equal(yv, y2v, n * sizeof *yv);
    free(y2v);
    if (p > 0.0f && p < 1.0f) {
      m2pt_rng_key other = key;
      other.step++;
      assert_ok(ctx, m2pt_dropout(ctx, x, p, other, y2));
      y2v = test_read(ctx, y2);
      assert_true(memcmp(yv, y2v, n * sizeof *yv) != 0);
      free(y2v);
      other = key;
      other.layer++;
      assert_ok(ctx, m2pt_dropout(ctx, x, p, other, y2));
      y2v = test_read(ctx, y2);
      assert_true(memcmp(yv, y2v, n * sizeof *yv) != 0);
      free(y2v);
    }
    free(yv);
    free(dv);
  }
  /* In place. */
  const m2pt_rng_key key = {42, 1, 2};
  assert_ok(ctx, m2pt_dropout(ctx, x, 0.3f, key, y));
  assert_ok(ctx, m2pt_dropout(ctx, x, 0.3f, key, x));
  float *a = test_read(ctx, y), *b = test_read(ctx, x);
  assert_memory_equal(a, b, n * sizeof *a);
  free(a);
  free(b);
  m2pt_tensor *all[] = {x, y, dx, y2};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    m2pt_tensor_destroy(all[i]);
  free(xf);
}

static void drop_path_masks(void **state)
{
  m2pt_context *ctx = *state;
  const size_t b = test_small() ? 257 : 4001, per = 6, n = b * per;
  const size_t shape[3] = {b, 2, 3};
  float *xf = test_alloc(n * sizeof *xf);
  test_fill(xf, n, 91);
  m2pt_tensor *x = test_tensor(ctx, 3, shape, xf), *y = test_tensor(ctx, 3, shape, NULL);
  m2pt_tensor *dx = test_tensor(ctx, 3, shape, NULL);
  static const float ps[] = {0.0f, 0.25f, 1.0f};
  for (size_t pi = 0; pi < sizeof ps / sizeof *ps; pi++) {
    const float p = ps[pi], scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    const m2pt_rng_key key = {0xfeedull << 32 | pi, 11, 5};
    assert_ok(ctx, m2pt_drop_path(ctx, x, p, key, y));
    assert_ok(ctx, m2pt_drop_path_backward(ctx, x, p, key, dx));
    float *yv = test_read(ctx, y), *dv = test_read(ctx, dx);
    size_t kept = 0;
    for (size_t s = 0; s < b; s++) {
      const int k = host_kept(key, s, p, 1);
      kept += (size_t)k;
      for (size_t j = 0; j < per; j++)
        assert_true(yv[s * per + j] == (k ? xf[s * per + j] * scale : 0.0f));
    }
    assert_rate(kept, b, p);
    assert_memory_equal(yv, dv, n * sizeof *yv);
    free(yv);
    free(dv);
  }
  m2pt_tensor_destroy(x);
  m2pt_tensor_destroy(y);
  m2pt_tensor_destroy(dx);
  free(xf);
}

static void bad_inputs(void **state)
{
  m2pt_context *ctx = *state;
  const size_t shape[2] = {3, 4}, other_shape[2] = {4, 3}, flat[1] = {12};
  float sevens[12];
  for (size_t i = 0; i < 12; i++)
    sevens[i] = 7.0f;
  m2pt_tensor *x = test_tensor(ctx, 2, shape, NULL), *y = test_tensor(ctx, 2, shape, sevens);
  m2pt_tensor *t = test_tensor(ctx, 2, other_shape, sevens), *v = test_tensor(ctx, 1, flat, NULL);
  m2pt_context *other = test_context();
  m2pt_tensor *foreign = test_tensor(other, 2, shape, NULL);
  const m2pt_rng_key key = {1, 2, 3};
  assert_status(ctx, m2pt_dropout(ctx, x, -0.1f, key, y), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_dropout(ctx, x, 1.1f, key, y), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_dropout(ctx, x, NAN, key, y), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_dropout(ctx, x, 0.5f, key, t), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_dropout(ctx, NULL, 0.5f, key, y), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_dropout(ctx, x, 0.5f, key, foreign), M2PT_ERR_CONTEXT_MISMATCH);
  assert_status(NULL, m2pt_dropout(NULL, x, 0.5f, key, y), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_dropout_backward(ctx, x, 2.0f, key, y), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_drop_path(ctx, x, 0.5f, key, t), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_drop_path(ctx, v, 0.5f, key, v), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_drop_path_backward(ctx, x, -1.0f, key, y), M2PT_ERR_INVALID_ARGUMENT);
  float *got = test_read(ctx, y);
  for (size_t i = 0; i < 12; i++)
    assert_true(got[i] == 7.0f);
  free(got);
  m2pt_tensor_destroy(foreign);
  m2pt_context_destroy(other);
  m2pt_tensor *all[] = {x, y, t, v};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    m2pt_tensor_destroy(all[i]);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(philox_known_answers),
      cmocka_unit_test(dropout_masks),
      cmocka_unit_test(drop_path_masks),
      cmocka_unit_test(bad_inputs),
  };
  return test_run_matrix("dropout", 0, tests, NULL, NULL);
}
