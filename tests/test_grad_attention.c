/* The multi-head attention backward (issue 12), both paths: the GEMM path
 * and the fused O(N)-memory one (from m2pt_attention_train's saved
 * log-sum-exp, or recomputing it), each against the double reference and
 * against each other, the reference and the fused path against central
 * finite differences (L = Σ dO ⊙ O through the double forward), with and
 * without the key-padding mask (an all-padding batch row included), twice
 * bit for bit; the training forward's output and log-sum-exp; the fused
 * path's memory; and every rejected input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"
#include "test_util.h"

/* Awkward shapes (DESIGN.md §4): tokens around nothing (1), a few, primes,
 * one past the fused kernels' tile of 32, ViT-B/16's 197; head sizes from
 * a scalar to ViT-B's, through each vector width of the fused kernels
 * (1, 3: scalar; 4, 12: float4; 16, 64: float8). */
static const size_t token_counts[] = {1, 3, 7, 17, 33, 197};
static const size_t head_sizes[] = {1, 3, 4, 12, 16, 64};

/* Finite differences agree with the analytic double reference to this
 * (central, h = 1e-5: truncation ~h², rounding ~1e-16/h). */
#define FD_TOL 1e-6
/* f32 against double, relative to max(1, max|ref|), as the forward's
 * attention test: each gradient is two chained GEMMs of length ≤ N around
 * the softmax backward (or, fused, the same sums tile by tile). */
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

static void destroy_tensors(m2pt_tensor **t, size_t n)
{
  for (size_t i = 0; i < n; i++)
    m2pt_tensor_destroy(t[i]);
}

static void free_all(void **p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(p[i]);
}

/* One attention problem on the device: qkv, dout, mask (NULL when
 * unmasked) and dqkv tensors filled with 7s (every element must be
 * written). */
typedef struct problem {
  size_t batch, tokens, heads, dim_head, nq, no;
  float *qkv, *dout, *mask;
  m2pt_tensor *tq, *tg, *tm;
} problem;

static problem problem_make(m2pt_context *ctx, size_t batch, size_t tokens, size_t heads,
                            size_t dim_head, int masking, uint64_t seed)
{
  problem p = {batch, tokens, heads, dim_head, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
  const size_t hd = heads * dim_head;
  p.nq = batch * tokens * 3 * hd;
  p.no = batch * tokens * hd;
  p.qkv = test_random_floats(p.nq, seed, 2.0f);
  p.dout = test_random_floats(p.no, seed + 1, 1.0f);
  p.mask = make_mask(batch, tokens, masking);
  const size_t sq[3] = {batch, tokens, 3 * hd}, so[3] = {batch, tokens, hd};
  const size_t sm[2] = {batch, tokens};
  p.tq = test_tensor(ctx, 3, sq, p.qkv);
  p.tg = test_tensor(ctx, 3, so, p.dout);
  p.tm = masking ? test_tensor(ctx, 2, sm, p.mask) : NULL;
  return p;
}

static void problem_free(problem *p)
{
  m2pt_tensor *t[] = {p->tq, p->tg, p->tm};
  destroy_tensors(t, 3);
  void *h[] = {p->qkv, p->dout, p->mask};
  free_all(h, 3);
}

/* A [B][N][3·heads·dim_head] tensor of 7s. */
static m2pt_tensor *sevens_like(m2pt_context *ctx, const problem *p)
{
  float *sevens = test_alloc(p->nq * sizeof *sevens);
  for (size_t i = 0; i < p->nq; i++)
    sevens[i] = 7.0f;
  const size_t sq[3] = {p->batch, p->tokens, 3 * p->heads * p->dim_head};
  m2pt_tensor *t = test_tensor(ctx, 3, sq, sevens);
  free(sevens);
  return t;
}

/* The backward by impl into a fresh tensor. */
static m2pt_tensor *run_backward(m2pt_context *ctx, const problem *p, m2pt_attention_impl impl)
{
  m2pt_tensor *td = sevens_like(ctx, p);
  assert_ok(ctx, m2pt_attention_backward(ctx, p->tq, p->heads, p->dim_head, p->tm, p->tg, impl,
                                         td));
  return td;
}

/* ---- The reference and the fused path against finite differences ---- */

static void check_fd(m2pt_context *ctx, size_t batch, size_t tokens, size_t heads,
                     size_t dim_head, int masking)
{
  problem p = problem_make(ctx, batch, tokens, heads, dim_head, masking, 70 + tokens + heads);
  const size_t nq = p.nq, no = p.no;
  const double h = 1e-5;
  const float *m = masking ? p.mask : NULL;
  double *qkv = test_widen(p.qkv, nq), *dout = test_widen(p.dout, no);
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
  /* The fused kernels' f32 gradient against the same differences. */
  m2pt_tensor *td = run_backward(ctx, &p, M2PT_ATTENTION_FUSED);
  float *got = test_read(ctx, td);
  snprintf(what, sizeof what, "fused dqkv vs finite differences (N %zu, dim_head %zu, mask %d)",
           tokens, dim_head, masking);
  test_assert_close(got, fd, nq, TOL, what);
  m2pt_tensor_destroy(td);
  problem_free(&p);
  void *host[] = {qkv, dout, up, down, fd, ref, got};
  free_all(host, sizeof host / sizeof *host);
}

static void attention_finite_differences(void **state)
{
  m2pt_context *ctx = *state;
  for (int masking = 0; masking < 3; masking++) {
    check_fd(ctx, 2, 1, 1, 1, masking);
    check_fd(ctx, 2, 3, 2, 4, masking);
    check_fd(ctx, 1, 5, 3, 2, masking);
    check_fd(ctx, 2, 7, 1, 3, masking);
  }
}

/* ---- The device against the reference ---- */

/* One path's dqkv against the reference; padding keys get no gradient in
 * their k or v (P's column is 0), an all-padding batch row none at all. */
static void check_grad(const problem *p, const float *got, const double *ref, int masking,
                       const char *path)
{
  const size_t hd = p->heads * p->dim_head, row = 3 * hd;
  char what[128];
  snprintf(what, sizeof what, "%s dqkv (B %zu, N %zu, heads %zu, dim_head %zu, mask %d)", path,
           p->batch, p->tokens, p->heads, p->dim_head, masking);
  test_assert_close(got, ref, p->nq, TOL, what);
  for (size_t i = 0; i < p->nq; i++) {
    assert_true(isfinite(got[i]));
    const size_t token = i / row, part = i % row / hd;
    if (masking && p->mask[token] == 0.0f && part > 0)
      assert_true(got[i] == 0.0f);
    if (masking == 2 && token / p->tokens == p->batch - 1)
      assert_true(got[i] == 0.0f);
  }
}

/* The log-sum-exp of each query row's scaled scores over its kept keys,
 * [B][heads][N]; -inf where every key is padding. */
static double *ref_lse(const problem *p)
{
  const size_t n = p->tokens, d = p->dim_head, hd = p->heads * d, row = 3 * hd;
  const double scale = 1.0 / sqrt((double)d);
  double *lse = test_alloc(p->batch * p->heads * n * sizeof *lse);
  double *s = test_alloc(n * sizeof *s);
  for (size_t b = 0; b < p->batch; b++)
    for (size_t h = 0; h < p->heads; h++)
      for (size_t i = 0; i < n; i++) {
        double most = -INFINITY, sum = 0.0;
        for (size_t j = 0; j < n; j++) {
          s[j] = -INFINITY;
          if (p->tm && p->mask[b * n + j] == 0.0f)
            continue;
          double dot = 0.0;
          for (size_t e = 0; e < d; e++)
            dot += (double)p->qkv[(b * n + i) * row + h * d + e] *
                   p->qkv[(b * n + j) * row + hd + h * d + e];
          s[j] = scale * dot;
          most = fmax(most, s[j]);
        }
        for (size_t j = 0; j < n; j++)
          sum += s[j] > -INFINITY ? exp(s[j] - most) : 0.0;
        lse[(b * p->heads + h) * n + i] = sum > 0.0 ? most + log(sum) : -INFINITY;
      }
  free(s);
  return lse;
}

/* m2pt_attention_train: the inference forward's bits, and the lse. */
static void check_train_forward(m2pt_context *ctx, const problem *p, m2pt_tensor *out,
                                m2pt_tensor *lse)
{
  const size_t so[3] = {p->batch, p->tokens, p->heads * p->dim_head};
  m2pt_tensor *plain = test_tensor(ctx, 3, so, NULL);
  assert_ok(ctx, m2pt_attention(ctx, p->tq, p->heads, p->dim_head, p->tm, M2PT_ATTENTION_FUSED,
                                plain));
  assert_ok(ctx, m2pt_attention_train(ctx, p->tq, p->heads, p->dim_head, p->tm, out, lse));
  test_assert_same_bits(ctx, out, plain);
  const size_t n = p->batch * p->heads * p->tokens;
  float *got = test_read(ctx, lse);
  double *ref = ref_lse(p);
  for (size_t i = 0; i < n; i++) {
    /* A row with no key: exactly -inf; compare the rest. */
    assert_true((ref[i] == -INFINITY) == (got[i] == -INFINITY));
    if (ref[i] == -INFINITY)
      ref[i] = got[i] = 0.0f;
  }
  test_assert_close(got, ref, n, 1e-5, "attention log-sum-exp");
  m2pt_tensor_destroy(plain);
  free(got);
  free(ref);
}

static void check_backward(m2pt_context *ctx, size_t batch, size_t tokens, size_t heads,
                           size_t dim_head, int masking)
{
  problem p = problem_make(ctx, batch, tokens, heads, dim_head, masking,
                           tokens * 7 + heads + dim_head);
  double *qd = test_widen(p.qkv, p.nq), *gd = test_widen(p.dout, p.no);
  double *ref = test_alloc(p.nq * sizeof *ref);
  ref_attention_backward(qd, gd, batch, tokens, heads, dim_head, masking ? p.mask : NULL, ref);

  m2pt_tensor *gemm = run_backward(ctx, &p, M2PT_ATTENTION_GEMM);
  m2pt_tensor *fused = run_backward(ctx, &p, M2PT_ATTENTION_FUSED);
  float *got_gemm = test_read(ctx, gemm), *got_fused = test_read(ctx, fused);
  check_grad(&p, got_gemm, ref, masking, "gemm");
  check_grad(&p, got_fused, ref, masking, "fused");
  /* The two paths against each other. */
  double *wide_gemm = test_widen(got_gemm, p.nq);
  test_assert_close(got_fused, wide_gemm, p.nq, TOL, "fused against gemm dqkv");

  /* Each twice: the same bits. */
  m2pt_tensor *again = run_backward(ctx, &p, M2PT_ATTENTION_GEMM);
  test_assert_same_bits(ctx, again, gemm);
  m2pt_tensor_destroy(again);
  again = run_backward(ctx, &p, M2PT_ATTENTION_FUSED);
  test_assert_same_bits(ctx, again, fused);
  m2pt_tensor_destroy(again);
  /* AUTO runs one of the two backward paths (which one: test_quirks) after
   * the forward AUTO picks, whose lse the GEMM path may take from the fused
   * kernel (CPU devices): then neither forced pair's bits, so against the
   * reference, and twice. */
  again = run_backward(ctx, &p, M2PT_ATTENTION_AUTO);
  float *got_auto = test_read(ctx, again);
  check_grad(&p, got_auto, ref, masking, "auto");
  m2pt_tensor *auto_again = run_backward(ctx, &p, M2PT_ATTENTION_AUTO);
  test_assert_same_bits(ctx, auto_again, again);
  m2pt_tensor_destroy(auto_again);
  m2pt_tensor_destroy(again);

  /* From what the training forward saved: the recomputing path's bits. */
  const size_t so[3] = {batch, tokens, heads * dim_head}, sl[3] = {batch, heads, tokens};
  m2pt_tensor *out = test_tensor(ctx, 3, so, NULL), *lse = test_tensor(ctx, 3, sl, NULL);
  check_train_forward(ctx, &p, out, lse);
  again = sevens_like(ctx, &p);
  assert_ok(ctx, m2pt_attention_backward_saved(ctx, p.tq, heads, dim_head, p.tm, out, lse, p.tg,
                                               again));
  test_assert_same_bits(ctx, again, fused);

  m2pt_tensor *all[] = {gemm, fused, again, out, lse};
  destroy_tensors(all, sizeof all / sizeof *all);
  problem_free(&p);
  void *host[] = {qd, gd, ref, got_gemm, got_fused, wide_gemm, got_auto};
  free_all(host, sizeof host / sizeof *host);
}

static void attention_backward(void **state)
{
  m2pt_context *ctx = *state;
  /* Oclgrind: N up to 7 and head sizes up to 12 (tiny shapes fit it). */
  const size_t ntok = test_small() ? 3 : 6, nhead = test_small() ? 4 : 6;
  size_t k = 0;
  for (size_t ti = 0; ti < ntok; ti++)
    for (size_t di = 0; di < nhead; di++)
      for (int masking = 0; masking < 3; masking++, k++)
        check_backward(ctx, 2, token_counts[ti], 1 + k % 3, head_sizes[di], masking);
}

/* The fused kernels' other tilings: key tiles of 16 (dim_head ≤ 128) and 8
 * (≤ 256), and ViT-B's twelve heads; past 256 the fused path cannot run and
 * AUTO falls back to the GEMM path. */
static void attention_backward_large_heads(void **state)
{
  m2pt_context *ctx = *state;
  if (test_small())
    return;
  check_backward(ctx, 1, 40, 12, 64, 1);
  check_backward(ctx, 2, 37, 2, 96, 2);
  check_backward(ctx, 1, 20, 1, 160, 1);
  check_backward(ctx, 1, 9, 1, 256, 1);
  problem p = problem_make(ctx, 1, 5, 1, 300, 1, 300);
  m2pt_tensor *gemm = run_backward(ctx, &p, M2PT_ATTENTION_GEMM);
  m2pt_tensor *autod = run_backward(ctx, &p, M2PT_ATTENTION_AUTO);
  test_assert_same_bits(ctx, autod, gemm);
  m2pt_tensor *td = sevens_like(ctx, &p);
  assert_status(ctx, m2pt_attention_backward(ctx, p.tq, 1, 300, p.tm, p.tg,
                                             M2PT_ATTENTION_FUSED, td),
                M2PT_ERR_UNSUPPORTED);
  m2pt_tensor *all[] = {gemm, autod, td};
  destroy_tensors(all, 3);
  problem_free(&p);
}

/* The fused backward's memory is O(N): at N = 2048 its scratch is D (and,
 * recomputing, the output and lse), far below the GEMM path's two
 * heads·N² buffers. A fresh context, so that the workspace starts empty. */
static void fused_backward_memory(void **state)
{
  (void)state;
  m2pt_context *ctx = test_context();
  const size_t tokens = test_small() ? 64 : 2048, heads = 2, dim_head = 16;
  problem p = problem_make(ctx, 1, tokens, heads, dim_head, 0, 5);
  const size_t so[3] = {1, tokens, heads * dim_head}, sl[3] = {1, heads, tokens};
  m2pt_tensor *out = test_tensor(ctx, 3, so, NULL), *lse = test_tensor(ctx, 3, sl, NULL);
  m2pt_tensor *td = sevens_like(ctx, &p);
  const uint64_t stats = heads * tokens * sizeof(float), output = p.no * sizeof(float);
  assert_ok(ctx, m2pt_attention_train(ctx, p.tq, heads, dim_head, NULL, out, lse));
  m2pt_stats s;
  m2pt_context_stats_reset(ctx);
  assert_ok(ctx, m2pt_attention_backward_saved(ctx, p.tq, heads, dim_head, NULL, out, lse, p.tg,
                                               td));
  assert_ok(ctx, m2pt_context_finish(ctx));
  assert_ok(ctx, m2pt_context_stats(ctx, &s));
  assert_true(s.device_bytes_allocated <= stats);
  m2pt_context_stats_reset(ctx);
  assert_ok(ctx, m2pt_attention_backward(ctx, p.tq, heads, dim_head, NULL, p.tg,
                                         M2PT_ATTENTION_FUSED, td));
  assert_ok(ctx, m2pt_context_stats(ctx, &s));
  assert_true(s.device_bytes_allocated <= output + stats);
  m2pt_context_stats_reset(ctx);
  assert_ok(ctx, m2pt_attention_backward(ctx, p.tq, heads, dim_head, NULL, p.tg,
                                         M2PT_ATTENTION_GEMM, td));
  assert_ok(ctx, m2pt_context_stats(ctx, &s));
  assert_true(s.device_bytes_allocated >= 2 * heads * tokens * tokens * sizeof(float));
  m2pt_tensor *all[] = {out, lse, td};
  destroy_tensors(all, 3);
  problem_free(&p);
  m2pt_context_destroy(ctx);
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

  /* The training forward: lse [2][2][3]; out and lse of the wrong shape,
   * aliased, missing or foreign. */
  const size_t sl[3] = {2, 2, 3}, slb[3] = {2, 3, 3};
  m2pt_tensor *o = test_tensor(ctx, 3, so, sevens), *l = test_tensor(ctx, 3, sl, sevens);
  m2pt_tensor *lb = test_tensor(ctx, 3, slb, sevens);
  m2pt_tensor *foreign_l = test_tensor(other, 3, sl, NULL);
  assert_status(NULL, m2pt_attention_train(NULL, q, 2, 4, m, o, l), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention_train(ctx, q, 2, 4, m, o, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention_train(ctx, q, 2, 4, m, NULL, l), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention_train(ctx, q, 2, 4, m, o, lb), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_attention_train(ctx, q, 2, 4, m, gb, l), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_attention_train(ctx, q, 2, 4, mb, o, l), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_attention_train(ctx, q, 2, 4, m, o, foreign_l),
                M2PT_ERR_CONTEXT_MISMATCH);
  /* The saved backward: each of out, lse, dout and dqkv checked. */
  assert_status(NULL, m2pt_attention_backward_saved(NULL, q, 2, 4, m, o, l, g, d),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention_backward_saved(ctx, q, 2, 4, m, NULL, l, g, d),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention_backward_saved(ctx, q, 2, 4, m, o, NULL, g, d),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention_backward_saved(ctx, q, 2, 4, m, o, l, NULL, d),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention_backward_saved(ctx, q, 2, 4, m, o, l, g, NULL),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention_backward_saved(ctx, q, 2, 4, m, o, l, g, q),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_attention_backward_saved(ctx, q, 2, 4, m, gb, l, g, d),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_attention_backward_saved(ctx, q, 2, 4, m, o, lb, g, d),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_attention_backward_saved(ctx, q, 2, 4, m, o, l, gb, d),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_attention_backward_saved(ctx, q, 2, 4, m, o, l, g, db),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_attention_backward_saved(ctx, q, 2, 4, mb, o, l, g, d),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_attention_backward_saved(ctx, q, 2, 4, m, o, foreign_l, g, d),
                M2PT_ERR_CONTEXT_MISMATCH);
  /* Past the fused kernels' head size: neither runs. */
  const size_t sqh[3] = {1, 2, 900}, soh[3] = {1, 2, 300}, slh[3] = {1, 1, 2};
  m2pt_tensor *qh = test_tensor(ctx, 3, sqh, NULL), *gh = test_tensor(ctx, 3, soh, NULL);
  m2pt_tensor *lh = test_tensor(ctx, 3, slh, NULL), *dh = test_tensor(ctx, 3, sqh, NULL);
  m2pt_tensor *oh = test_tensor(ctx, 3, soh, NULL);
  assert_status(ctx, m2pt_attention_train(ctx, qh, 1, 300, NULL, oh, lh), M2PT_ERR_UNSUPPORTED);
  assert_status(ctx, m2pt_attention_backward_saved(ctx, qh, 1, 300, NULL, oh, lh, gh, dh),
                M2PT_ERR_UNSUPPORTED);

  /* Nothing was written, and the context still works. */
  assert_untouched(ctx, d, 7.0f);
  assert_untouched(ctx, db, 7.0f);
  assert_untouched(ctx, o, 7.0f);
  assert_untouched(ctx, l, 7.0f);
  assert_ok(ctx, m2pt_attention_backward(ctx, q, 2, 4, m, g, gemm, d));
  assert_ok(ctx, m2pt_attention_train(ctx, q, 2, 4, m, o, l));
  assert_ok(ctx, m2pt_attention_backward_saved(ctx, q, 2, 4, m, o, l, g, d));

  m2pt_tensor_destroy(foreign);
  m2pt_tensor_destroy(foreign_l);
  m2pt_context_destroy(other);
  m2pt_tensor *all[] = {q, g, m, mb, d, db, gb, o, l, lb, qh, gh, lh, dh, oh};
  destroy_tensors(all, sizeof all / sizeof *all);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(attention_finite_differences),
      cmocka_unit_test(attention_backward),
      cmocka_unit_test(attention_backward_large_heads),
      cmocka_unit_test(fused_backward_memory),
      cmocka_unit_test(bad_inputs),
  };
  /* AUTO's choice follows the attention quirk; the fused kernels' vector
   * widths are picked by the head sizes above. */
  return test_run_matrix("grad_attention", TEST_AXIS_GEMM | TEST_AXIS_ATTENTION | TEST_AXIS_SOFTMAX,
                         tests, NULL,
                         NULL);
}
