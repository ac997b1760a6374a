/* LayerNorm, GELU, add and softmax against the double reference, and
 * multi-head attention on both paths. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/host_math.h"
#include "reference.h"
#include "test_util.h"

static double *widen(const float *x, size_t n)
{
  double *d = test_alloc(n * sizeof *d);
  for (size_t i = 0; i < n; i++)
    d[i] = x[i];
  return d;
}

static float *read_all(m2pt_context *ctx, const m2pt_tensor *t)
{
  const size_t n = m2pt_tensor_numel(t);
  float *h = test_alloc(n * sizeof *h);
  assert_ok(ctx, m2pt_tensor_read(t, h, n));
  return h;
}

/* Awkward row lengths (DESIGN.md §4); the reductions use up to 256 items. */
static const size_t dims[] = {1, 7, 17, 197, 768};

static void layer_norm(void **state)
{
  m2pt_context *ctx = *state;
  const size_t ndims = test_small() ? 3 : sizeof dims / sizeof *dims;
  for (size_t di = 0; di < ndims; di++)
    for (int with_bias = 0; with_bias < 2; with_bias++) {
      const size_t rows = 5, dim = dims[di], n = rows * dim;
      float *x = test_alloc(n * sizeof *x), *w = test_alloc(dim * sizeof *w),
            *b = test_alloc(dim * sizeof *b);
      test_fill(x, n, 1 + di);
      test_fill(w, dim, 2);
      test_fill(b, dim, 3);
      for (size_t i = 0; i < n; i++)
        x[i] = 3.0f + 10.0f * x[i]; /* an offset that naive E[x²]−E[x]² would lose */
      const size_t shape[2] = {rows, dim}, vshape[1] = {dim};
      m2pt_tensor *tx = test_tensor(ctx, 2, shape, x), *ty = test_tensor(ctx, 2, shape, NULL);
      m2pt_tensor *tw = test_tensor(ctx, 1, vshape, w), *tb = test_tensor(ctx, 1, vshape, b);
      assert_ok(ctx, m2pt_layer_norm(ctx, tx, tw, with_bias ? tb : NULL, 1e-6f, ty));
      float *y = read_all(ctx, ty);
      double *xd = widen(x, n), *ref = test_alloc(n * sizeof *ref);
      ref_layer_norm(xd, rows, dim, w, with_bias ? b : NULL, 1e-6f, ref);
      test_assert_close(y, ref, n, 1e-4, "layer_norm");
      /* In place gives the same bits. */
      assert_ok(ctx, m2pt_layer_norm(ctx, tx, tw, with_bias ? tb : NULL, 1e-6f, tx));
      float *y2 = read_all(ctx, tx);
      assert_memory_equal(y, y2, n * sizeof *y);
      free(y2);
      free(y);
      free(xd);
      free(ref);
      free(x);
      free(w);
      free(b);
      m2pt_tensor_destroy(tx);
      m2pt_tensor_destroy(ty);
      m2pt_tensor_destroy(tw);
      m2pt_tensor_destroy(tb);
    }
}

static void layer_norm_bad_inputs(void **state)
{
  m2pt_context *ctx = *state;
  const size_t s23[2] = {2, 3}, s32[2] = {3, 2}, v3[1] = {3}, v4[1] = {4};
  m2pt_tensor *x = test_tensor(ctx, 2, s23, NULL), *y = test_tensor(ctx, 2, s23, NULL);
  m2pt_tensor *yt = test_tensor(ctx, 2, s32, NULL), *w = test_tensor(ctx, 1, v3, NULL);
  m2pt_tensor *w4 = test_tensor(ctx, 1, v4, NULL);
  assert_ok(ctx, m2pt_layer_norm(ctx, x, w, w, 1e-6f, y));
  assert_status(ctx, m2pt_layer_norm(ctx, x, w, NULL, NAN, y), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_layer_norm(ctx, x, w, NULL, -1.0f, y), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_layer_norm(ctx, x, w4, NULL, 1e-6f, y), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_layer_norm(ctx, x, w, w4, 1e-6f, y), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_layer_norm(ctx, x, w, NULL, 1e-6f, yt), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_layer_norm(ctx, x, NULL, NULL, 1e-6f, y), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_layer_norm(NULL, x, w, NULL, 1e-6f, y), M2PT_ERR_INVALID_ARGUMENT);
  m2pt_context *other = test_context();
  m2pt_tensor *foreign = test_tensor(other, 1, v3, NULL);
  assert_status(ctx, m2pt_layer_norm(ctx, x, foreign, NULL, 1e-6f, y),
                M2PT_ERR_CONTEXT_MISMATCH);
  m2pt_tensor_destroy(foreign);
  m2pt_context_destroy(other);
  m2pt_tensor *all[] = {x, y, yt, w, w4};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    m2pt_tensor_destroy(all[i]);
}

/* GELU on rows of `cols`, with and without bias, both forms, against the
 * double reference (cols a multiple of 8 takes the float8 kernel). */
static void check_gelu(m2pt_context *ctx, size_t cols)
{
  const size_t rows = 3, n = rows * cols;
  float x[96], b[32], y[96];
  double ref[96];
  assert_true(n <= 96 && cols <= 32);
  test_fill(x, n, 4);
  test_fill(b, cols, 5);
  for (size_t i = 0; i < n; i++)
    x[i] *= 4.0f;
  const size_t shape[2] = {rows, cols}, vshape[1] = {cols};
  m2pt_tensor *tx = test_tensor(ctx, 2, shape, x), *ty = test_tensor(ctx, 2, shape, NULL);
  m2pt_tensor *tb = test_tensor(ctx, 1, vshape, b);
  for (int tanh_form = 0; tanh_form < 2; tanh_form++)
    for (int with_bias = 0; with_bias < 2; with_bias++) {
      assert_ok(ctx, m2pt_gelu(ctx, tx, with_bias ? tb : NULL,
                               tanh_form ? M2PT_GELU_TANH : M2PT_GELU_ERF, ty));
      assert_ok(ctx, m2pt_tensor_read(ty, y, n));
      for (size_t i = 0; i < n; i++)
        ref[i] = ref_gelu((double)x[i] + (with_bias ? b[i % cols] : 0.0), tanh_form);
      test_assert_close(y, ref, n, 1e-5, tanh_form ? "gelu tanh" : "gelu erf");
    }
  m2pt_tensor_destroy(tx);
  m2pt_tensor_destroy(ty);
  m2pt_tensor_destroy(tb);
}

static void gelu_and_add(void **state)
{
  m2pt_context *ctx = *state;
  check_gelu(ctx, 24); /* float8 where the quirk says 8 or 16 */
  check_gelu(ctx, 32); /* float16 where it says 16 */
  const size_t rows = 3, cols = 17, n = rows * cols;
  float x[51], b[17], y[51];
  double ref[51];
  test_fill(x, n, 4);
  test_fill(b, cols, 5);
  for (size_t i = 0; i < n; i++)
    x[i] *= 4.0f;
  const size_t shape[2] = {rows, cols}, vshape[1] = {cols};
  m2pt_tensor *tx = test_tensor(ctx, 2, shape, x), *ty = test_tensor(ctx, 2, shape, NULL);
  m2pt_tensor *tb = test_tensor(ctx, 1, vshape, b);
  check_gelu(ctx, 17);
  /* Exact GELU over a dense range, tails included (the kernel evaluates erf
   * through its own erfc approximation): as one row (scalar kernel), and the
   * first 20000 again as rows of 8 and of 16 (the vector kernels the quirk
   * allows; not bit for bit with the scalar one: a compiler may vectorise
   * the reciprocal and the polynomials differently). */
  {
    const size_t m = 20001;
    const size_t widths[3][2] = {{1, m}, {(m - 1) / 8, 8}, {(m - 1) / 16, 16}};
    float *xs = test_alloc(m * sizeof *xs), *ys = test_alloc(m * sizeof *ys);
    for (size_t i = 0; i < m; i++)
      xs[i] = -10.0f + 0.001f * (float)i;
    for (size_t w = 0; w < 3; w++) {
      const size_t count = widths[w][0] * widths[w][1];
      m2pt_tensor *tr = test_tensor(ctx, 2, widths[w], xs);
      assert_ok(ctx, m2pt_gelu(ctx, tr, NULL, M2PT_GELU_ERF, tr));
      assert_ok(ctx, m2pt_tensor_read(tr, ys, count));
      double worst = 0.0;
      for (size_t i = 0; i < count; i++) {
        /* Relative to max(|x|, 1): a few f32 ulps of the result. */
        const double scale = fabs(xs[i]) > 1.0 ? fabs(xs[i]) : 1.0;
        const double err = fabs(ys[i] - ref_gelu(xs[i], 0)) / scale;
        worst = err > worst ? err : worst;
      }
      if (worst > 1e-6) {
        print_error("gelu over [-10, 10], rows of %zu: relative error %g\n", widths[w][1],
                    worst);
        fail();
      }
      m2pt_tensor_destroy(tr);
    }
    free(xs);
    free(ys);
  }

  /* Residual plus broadcast bias, and same-shape add in place. */
  assert_ok(ctx, m2pt_add(ctx, tx, tb, ty));
  assert_ok(ctx, m2pt_tensor_read(ty, y, n));
  for (size_t i = 0; i < n; i++)
    ref[i] = (double)x[i] + b[i % cols];
  test_assert_close(y, ref, n, 1e-6, "add broadcast");
  assert_ok(ctx, m2pt_add(ctx, ty, tx, ty));
  assert_ok(ctx, m2pt_tensor_read(ty, y, n));
  for (size_t i = 0; i < n; i++)
    ref[i] += x[i];
  test_assert_close(y, ref, n, 1e-6, "add in place");

  /* Bad inputs. */
  const size_t other[2] = {cols, rows}, vwrong[1] = {5};
  m2pt_tensor *tt = test_tensor(ctx, 2, other, NULL), *tv = test_tensor(ctx, 1, vwrong, NULL);
  assert_status(ctx, m2pt_gelu(ctx, tx, NULL, M2PT_GELU_ERF, tt), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_gelu(ctx, tx, tv, M2PT_GELU_ERF, ty), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_gelu(ctx, tx, NULL, (m2pt_gelu_kind)9, ty), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_add(ctx, tx, tv, ty), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_add(ctx, tx, tt, ty), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_add(ctx, NULL, tb, ty), M2PT_ERR_INVALID_ARGUMENT);
  m2pt_tensor_destroy(tt);
  m2pt_tensor_destroy(tv);
  m2pt_tensor_destroy(tx);
  m2pt_tensor_destroy(ty);
  m2pt_tensor_destroy(tb);
}

static void softmax_with_masks(void **state)
{
  m2pt_context *ctx = *state;
  const size_t col_list[] = {1, 7, 197, 300};
  const size_t ncols = test_small() ? 2 : 4;
  for (size_t ci = 0; ci < ncols; ci++) {
    const size_t groups = 2, per_group = 3, rows = groups * per_group, cols = col_list[ci];
    const size_t n = rows * cols;
    float *x = test_alloc(n * sizeof *x), *mask = test_alloc(groups * cols * sizeof *mask);
    test_fill(x, n, 6 + ci);
    for (size_t i = 0; i < n; i++)
      x[i] *= 30.0f; /* large logits: exp overflows without the max subtracted */
    /* Group 0 keeps every other key; group 1 masks every key. */
    for (size_t j = 0; j < cols; j++) {
      mask[j] = (j % 2 == 0) ? 1.0f : 0.0f;
      mask[cols + j] = 0.0f;
    }
    const size_t shape[3] = {groups, per_group, cols}, mshape[2] = {groups, cols};
    m2pt_tensor *tx = test_tensor(ctx, 3, shape, x), *ty = test_tensor(ctx, 3, shape, NULL);
    m2pt_tensor *tm = test_tensor(ctx, 2, mshape, mask);
    double *xd = widen(x, n), *ref = test_alloc(n * sizeof *ref);
    for (int masked = 0; masked < 2; masked++) {
      assert_ok(ctx, m2pt_softmax(ctx, tx, 0.125f, masked ? tm : NULL, ty));
      float *y = read_all(ctx, ty);
      ref_softmax(xd, rows, cols, 0.125f, masked ? mask : NULL, per_group, ref);
      test_assert_close(y, ref, n, 1e-5, masked ? "masked softmax" : "softmax");
      if (masked)
        for (size_t i = per_group * cols; i < n; i++)
          assert_true(y[i] == 0.0f); /* fully masked rows: zeros, not NaN */
      free(y);
    }
    const size_t bad[2] = {4, cols};
    m2pt_tensor *tbad = test_tensor(ctx, 2, bad, NULL);
    assert_status(ctx, m2pt_softmax(ctx, tx, 1.0f, tbad, ty), M2PT_ERR_SHAPE);
    assert_status(ctx, m2pt_softmax(ctx, tx, INFINITY, NULL, ty), M2PT_ERR_INVALID_ARGUMENT);
    m2pt_tensor_destroy(tbad);
    free(xd);
    free(ref);
    free(x);
    free(mask);
    m2pt_tensor_destroy(tx);
    m2pt_tensor_destroy(ty);
    m2pt_tensor_destroy(tm);
  }
}

/* Both attention paths against the reference. */
static void check_attention(m2pt_context *ctx, size_t batch, size_t tokens, size_t heads,
                            size_t dim_head, int masked)
{
  const size_t hd = heads * dim_head, n_qkv = batch * tokens * 3 * hd, n_out = batch * tokens * hd;
  float *qkv = test_alloc(n_qkv * sizeof *qkv), *mask = test_alloc(batch * tokens * sizeof *mask);
  test_fill(qkv, n_qkv, tokens * 7 + heads);
  for (size_t i = 0; i < n_qkv; i++)
    qkv[i] *= 2.0f;
  /* Batch row b pads its last b·2 tokens (row 0 none); with one token,
   * batch row 1 is fully padded and must give zeros. */
  for (size_t b = 0; b < batch; b++)
    for (size_t t = 0; t < tokens; t++)
      mask[b * tokens + t] = (t + 2 * b < tokens) ? 1.0f : 0.0f;
  const size_t sq[3] = {batch, tokens, 3 * hd}, so[3] = {batch, tokens, hd};
  const size_t sm[2] = {batch, tokens};
  m2pt_tensor *tq = test_tensor(ctx, 3, sq, qkv), *to = test_tensor(ctx, 3, so, NULL);
  m2pt_tensor *tm = test_tensor(ctx, 2, sm, mask);
  double *qd = widen(qkv, n_qkv), *ref = test_alloc(n_out * sizeof *ref);
  ref_attention(qd, batch, tokens, heads, dim_head, masked ? mask : NULL, ref);
  const m2pt_attention_impl impls[3] = {M2PT_ATTENTION_GEMM, M2PT_ATTENTION_FUSED,
                                        M2PT_ATTENTION_AUTO};
  static const char *const names[3] = {"gemm attention", "fused attention", "auto attention"};
  for (int i = 0; i < 3; i++) {
    assert_ok(ctx, m2pt_attention(ctx, tq, heads, dim_head, masked ? tm : NULL, impls[i], to));
    float *out = read_all(ctx, to);
    test_assert_close(out, ref, n_out, 1e-4, names[i]);
    free(out);
  }
  free(qd);
  free(ref);
  free(qkv);
  free(mask);
  m2pt_tensor_destroy(tq);
  m2pt_tensor_destroy(to);
  m2pt_tensor_destroy(tm);
}

static void attention_paths(void **state)
{
  m2pt_context *ctx = *state;
  const size_t tokens_list[] = {1, 7, 197};
  const size_t ntok = test_small() ? 2 : 3;
  for (size_t i = 0; i < ntok; i++)
    for (int masked = 0; masked < 2; masked++) {
      check_attention(ctx, 2, tokens_list[i], 3, 16, masked);
      check_attention(ctx, 1, tokens_list[i], 2, 5, masked);  /* scalar fused kernel */
      check_attention(ctx, 2, tokens_list[i], 2, 12, masked); /* float4 fused kernel */
    }
  if (!test_small()) {
    check_attention(ctx, 1, 40, 12, 64, 1); /* ViT-B heads */
    check_attention(ctx, 2, 37, 2, 96, 1);  /* key tiles of 16 */
    check_attention(ctx, 1, 20, 1, 160, 1); /* key tiles of 8 */
  }
}

/* The fused path's memory is O(N): no N×N buffer at N = 2048 (the rows
 * kernel's Kᵀ and key bias take less than qkv's size). */
static void fused_attention_memory(void **state)
{
  m2pt_context *ctx = *state;
  const size_t tokens = test_small() ? 64 : 2048, heads = 2, dim_head = 16;
  const size_t hd = heads * dim_head;
  const size_t sq[3] = {1, tokens, 3 * hd}, so[3] = {1, tokens, hd};
  float *qkv = test_alloc(tokens * 3 * hd * sizeof *qkv);
  test_fill(qkv, tokens * 3 * hd, 99);
  m2pt_tensor *tq = test_tensor(ctx, 3, sq, qkv), *to = test_tensor(ctx, 3, so, NULL);
  m2pt_stats s;
  assert_ok(ctx, m2pt_context_stats(ctx, &s));
  const size_t before = s.device_bytes_live;
  m2pt_context_stats_reset(ctx);
  assert_ok(ctx, m2pt_attention(ctx, tq, heads, dim_head, NULL, M2PT_ATTENTION_FUSED, to));
  assert_ok(ctx, m2pt_context_finish(ctx));
  assert_ok(ctx, m2pt_context_stats(ctx, &s));
  assert_true(s.device_allocations <= 1);
  assert_true(s.device_bytes_peak - before <= tokens * 3 * hd * sizeof(float));
  /* The GEMM path needs heads·N² scores from the workspace. */
  assert_ok(ctx, m2pt_attention(ctx, tq, heads, dim_head, NULL, M2PT_ATTENTION_GEMM, to));
  assert_ok(ctx, m2pt_context_stats(ctx, &s));
  assert_true(s.device_bytes_allocated >= heads * tokens * tokens * sizeof(float));
  free(qkv);
  m2pt_tensor_destroy(tq);
  m2pt_tensor_destroy(to);
}

static void attention_bad_inputs(void **state)
{
  m2pt_context *ctx = *state;
  const size_t sq[3] = {2, 4, 3 * 8}, so[3] = {2, 4, 8}, sm[2] = {2, 4}, sbad[2] = {2, 5};
  const size_t so_bad[3] = {2, 4, 9};
  m2pt_tensor *q = test_tensor(ctx, 3, sq, NULL), *o = test_tensor(ctx, 3, so, NULL);
  m2pt_tensor *m = test_tensor(ctx, 2, sm, NULL), *mb = test_tensor(ctx, 2, sbad, NULL);
  m2pt_tensor *ob = test_tensor(ctx, 3, so_bad, NULL);
  assert_ok(ctx, m2pt_attention(ctx, q, 2, 4, m, M2PT_ATTENTION_AUTO, o));
  assert_status(ctx, m2pt_attention(ctx, q, 3, 4, NULL, M2PT_ATTENTION_AUTO, o), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_attention(ctx, q, 2, 4, mb, M2PT_ATTENTION_AUTO, o), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_attention(ctx, q, 2, 4, NULL, M2PT_ATTENTION_AUTO, ob), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_attention(ctx, q, 0, 4, NULL, M2PT_ATTENTION_AUTO, o),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention(ctx, q, 2, 4, NULL, (m2pt_attention_impl)7, o),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention(ctx, q, 2, 4, NULL, M2PT_ATTENTION_AUTO, q),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention(ctx, NULL, 2, 4, NULL, M2PT_ATTENTION_AUTO, o),
                M2PT_ERR_INVALID_ARGUMENT);
  /* Heads beyond the fused kernel: forcing it is UNSUPPORTED, AUTO takes
   * the GEMM path. */
  const size_t sq_big[3] = {1, 2, 3 * 300}, so_big[3] = {1, 2, 300};
  m2pt_tensor *qb = test_tensor(ctx, 3, sq_big, NULL), *obig = test_tensor(ctx, 3, so_big, NULL);
  assert_status(ctx, m2pt_attention(ctx, qb, 1, 300, NULL, M2PT_ATTENTION_FUSED, obig),
                M2PT_ERR_UNSUPPORTED);
  assert_non_null(strstr(m2pt_last_error(ctx), "256"));
  assert_ok(ctx, m2pt_attention(ctx, qb, 1, 300, NULL, M2PT_ATTENTION_AUTO, obig));
  m2pt_tensor_destroy(qb);
  m2pt_tensor_destroy(obig);
  m2pt_tensor_destroy(q);
  m2pt_tensor_destroy(o);
  m2pt_tensor_destroy(m);
  m2pt_tensor_destroy(mb);
  m2pt_tensor_destroy(ob);
}

/* The host versions of GELU, LayerNorm and the residual-plus-bias rows
 * (common/host_math.h: run around GEMMs on the host) against the
 * reference, over row lengths that leave vector tails, with |x| up to 24
 * where erfc and exp saturate. */
static void host_math(void **state)
{
  for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
    const size_t rows = 3, cols = dims[di], n = rows * cols;
    float *x = test_alloc(n * sizeof *x), *y = test_alloc(n * sizeof *y);
    float *b = test_alloc(cols * sizeof *b), *w = test_alloc(cols * sizeof *w);
    double *ref = test_alloc(n * sizeof *ref);
    test_fill(x, n, 6 + di);
    test_fill(b, cols, 7);
    test_fill(w, cols, 8);
    for (size_t i = 0; i < n; i++)
      x[i] *= i % 5 ? 4.0f : 24.0f;
    for (int tanh_form = 0; tanh_form < 2; tanh_form++)
      for (int with_bias = 0; with_bias < 2; with_bias++) {
        memcpy(y, x, n * sizeof *y);
        m2pt_host_gelu(y, with_bias ? b : NULL, tanh_form, rows, cols);
        for (size_t i = 0; i < n; i++)
          ref[i] = ref_gelu((double)x[i] + (with_bias ? b[i % cols] : 0.0), tanh_form);
        test_assert_close(y, ref, n, 1e-5, tanh_form ? "host gelu tanh" : "host gelu erf");
      }
    m2pt_host_rows_init(y, x, b, rows, cols);
    for (size_t i = 0; i < n; i++)
      assert_true(y[i] == x[i] + b[i % cols]);
    m2pt_host_rows_init(y, NULL, NULL, rows, cols);
    for (size_t i = 0; i < n; i++)
      assert_true(y[i] == 0.0f);
    for (size_t i = 0; i < n; i++)
      x[i] = 3.0f + x[i]; /* an offset that naive E[x²]−E[x]² would lose */
    for (int with_bias = 0; with_bias < 2; with_bias++) {
      m2pt_host_layer_norm(NULL, x, w, with_bias ? b : NULL, 1e-6f, rows, cols, y);
      double *xd = test_widen(x, n);
      ref_layer_norm(xd, rows, cols, w, with_bias ? b : NULL, 1e-6f, ref);
      test_assert_close(y, ref, n, 1e-4, "host layer_norm");
      /* In place gives the same bits. */
      m2pt_host_layer_norm(NULL, x, w, with_bias ? b : NULL, 1e-6f, rows, cols, x);
      assert_memory_equal(x, y, n * sizeof *y);
      for (size_t i = 0; i < n; i++)
        x[i] = (float)xd[i];
      free(xd);
    }
    free(x);
    free(y);
    free(b);
    free(w);
    free(ref);
  }
}

/* The host LayerNorm with its rows shared out among a pool's workers: the
 * same bits as on the caller's thread alone for 1, 2, 3 and 7 workers (row
 * counts that do not divide evenly, one below the worker count, one too
 * small to share out), in place too, and close to the reference. */
static void host_layer_norm_pooled(void **state)
{
  (void)state;
  const size_t shapes[][2] = {{1576, 768}, {700, 769}, {6, 100000}, {197, 768}};
  for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
    const size_t rows = shapes[si][0], cols = shapes[si][1], n = rows * cols;
    float *x = test_alloc(n * sizeof *x), *y = test_alloc(n * sizeof *y);
    float *one = test_alloc(n * sizeof *one), *z = test_alloc(n * sizeof *z);
    float *b = test_alloc(cols * sizeof *b), *w = test_alloc(cols * sizeof *w);
    double *ref = test_alloc(n * sizeof *ref);
    test_fill(x, n, 11 + si);
    test_fill(b, cols, 12);
    test_fill(w, cols, 13);
    for (size_t i = 0; i < n; i++)
      x[i] = 3.0f + 4.0f * x[i];
    m2pt_host_layer_norm(NULL, x, w, b, 1e-5f, rows, cols, one);
    double *xd = test_widen(x, n);
    ref_layer_norm(xd, rows, cols, w, b, 1e-5f, ref);
    test_assert_close(one, ref, n, 1e-4, "host layer_norm, caller's thread");
    const unsigned threads[] = {1, 2, 3, 7};
    for (size_t ti = 0; ti < sizeof threads / sizeof *threads; ti++) {
      m2pt_host_pool *pool = m2pt_host_pool_create(threads[ti]);
      assert_non_null(pool);
      memset(y, 0xff, n * sizeof *y);
      m2pt_host_layer_norm(pool, x, w, b, 1e-5f, rows, cols, y);
      assert_memory_equal(y, one, n * sizeof *y);
      memcpy(z, x, n * sizeof *z);
      m2pt_host_layer_norm(pool, z, w, b, 1e-5f, rows, cols, z);
      assert_memory_equal(z, one, n * sizeof *z);
      m2pt_host_pool_destroy(pool);
    }
    free(xd);
    free(ref);
    free(x);
    free(y);
    free(one);
    free(z);
    free(b);
    free(w);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(layer_norm),
      cmocka_unit_test(layer_norm_bad_inputs),
      cmocka_unit_test(gelu_and_add),
      cmocka_unit_test(host_math),
      cmocka_unit_test(host_layer_norm_pooled),
      cmocka_unit_test(softmax_with_masks),
      cmocka_unit_test(attention_paths),
      cmocka_unit_test(fused_attention_memory),
      cmocka_unit_test(attention_bad_inputs),
  };
  /* Attention's paths are chosen per call here (explicit implementations) and the widths
   * over dim_head by its shapes (16, 12 and 5); the fused forward's kernel and its widest
   * vector (the rows kernel's keys per vector) are the quirks'. */
  return test_run_matrix("ops",
                         TEST_AXIS_GEMM | TEST_AXIS_LAYER_NORM | TEST_AXIS_GELU |
                             TEST_AXIS_ATTENTION_KERNEL | TEST_AXIS_ATTENTION_VEC |
                             TEST_AXIS_SOFTMAX,
                         tests, NULL, NULL) != 0;
}
