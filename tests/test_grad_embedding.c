/* Backward passes of the front and back ends (issue 12): BERT's embedding
 * gather (a scatter-add by id), the patch embedding and pooling, against
 * the double reference; the reference against central finite differences
 * in double (L = Σ dY ⊙ Y through the double forward); twice bit for bit;
 * frozen outputs; rejected inputs. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"
#include "test_util.h"

/* Analytic vs central differences (h = 1e-5 on double inputs: truncation
 * ~h², rounding ~1e-16/h; the gather and patch embedding are linear, so
 * only rounding remains). */
#define FD_TOL 1e-6
#define FD_H 1e-5

static void assert_fd(double ref, double fd, const char *what, size_t i)
{
  if (fabs(ref - fd) > FD_TOL * fmax(1.0, fabs(fd))) {
    print_error("%s[%zu]: analytic %g vs finite differences %g\n", what, i, ref, fd);
    fail();
  }
}

static double dot(const double *a, const double *b, size_t n)
{
  double s = 0.0;
  for (size_t i = 0; i < n; i++)
    s += a[i] * b[i];
  return s;
}

static void assert_same_bits(m2pt_context *ctx, const m2pt_tensor *t, const float *before)
{
  float *now = test_read(ctx, t);
  assert_memory_equal(now, before, m2pt_tensor_numel(t) * sizeof *now);
  free(now);
}

/* ---- BERT embeddings gather ---- */

/* L = Σ dY ⊙ gather(tables) with the tables in double (the gather is
 * linear: central differences are exact up to rounding). */
static double gather_loss(const int *ids, const int *types, size_t rows, size_t tokens,
                          size_t dim, const double *word, const double *pos, const double *type,
                          const double *dy)
{
  double l = 0.0;
  for (size_t r = 0; r < rows; r++)
    for (size_t d = 0; d < dim; d++)
      l += dy[r * dim + d] * (word[(size_t)ids[r] * dim + d] + pos[(r % tokens) * dim + d] +
                              type[(size_t)(types ? types[r] : 0) * dim + d]);
  return l;
}

static void gather_fd_table(const int *ids, const int *types, size_t rows, size_t tokens,
                            size_t dim, double *tables[3], double *table, size_t n,
                            const double *dy, const double *ref, const char *what)
{
  for (size_t i = 0; i < n; i++) {
    const double keep = table[i];
    table[i] = keep + FD_H;
    const double lp = gather_loss(ids, types, rows, tokens, dim, tables[0], tables[1],
                                  tables[2], dy);
    table[i] = keep - FD_H;
    const double lm = gather_loss(ids, types, rows, tokens, dim, tables[0], tables[1],
                                  tables[2], dy);
    table[i] = keep;
    assert_fd(ref[i], (lp - lm) / (2 * FD_H), what, i);
  }
}

static void bert_gather_backward(void **state)
{
  m2pt_context *ctx = *state;
  static const size_t dims[] = {1, 7, 17, 197};
  const size_t ndims = test_small() ? 2 : 4;
  const size_t b = 3, n = 5, rows = 15, vocab = 11, npos = 9, ntypes = 3;
  /* Repeated ids (the scatter-add), both ends of the table, unused rows. */
  static const int ids[15] = {0, 10, 3, 3, 0, 10, 10, 5, 3, 0, 7, 3, 3, 3, 10};
  static const int types[15] = {0, 1, 2, 2, 1, 0, 0, 0, 2, 1, 1, 1, 0, 2, 2};
  for (size_t di = 0; di < ndims; di++)
    for (int with_types = 0; with_types < 2; with_types++) {
      const size_t dim = dims[di];
      const int *ty = with_types ? types : NULL;
      float *dsum = test_alloc(rows * dim * sizeof *dsum);
      test_fill(dsum, rows * dim, 40 + di);
      double *dsum_d = test_widen(dsum, rows * dim);
      double *rw = test_alloc(vocab * dim * 8), *rp = test_alloc(npos * dim * 8),
             *rt = test_alloc(ntypes * dim * 8);
      ref_bert_gather_backward(ids, ty, b, n, dim, dsum_d, vocab, npos, ntypes, rw, rp, rt);
      if (di == 0) {
        double *tw = test_alloc(vocab * dim * 8), *tp = test_alloc(npos * dim * 8),
               *tt = test_alloc(ntypes * dim * 8);
        for (size_t i = 0; i < vocab * dim; i++)
          tw[i] = 0.1 * (double)i;
        for (size_t i = 0; i < npos * dim; i++)
          tp[i] = -0.2 * (double)i;
        for (size_t i = 0; i < ntypes * dim; i++)
          tt[i] = 0.3 * (double)i;
        double *tables[3] = {tw, tp, tt};
        gather_fd_table(ids, ty, rows, n, dim, tables, tw, vocab * dim, dsum_d, rw, "dword");
        gather_fd_table(ids, ty, rows, n, dim, tables, tp, npos * dim, dsum_d, rp, "dpos");
        gather_fd_table(ids, ty, rows, n, dim, tables, tt, ntypes * dim, dsum_d, rt, "dtype");
        free(tw);
        free(tp);
        free(tt);
      }
      const size_t ds[3] = {b, n, dim}, ws[2] = {vocab, dim}, ps[2] = {npos, dim},
                   ts[2] = {ntypes, dim};
      m2pt_tensor *tdsum = test_tensor(ctx, 3, ds, dsum), *gw = test_tensor(ctx, 2, ws, NULL),
                  *gp = test_tensor(ctx, 2, ps, NULL), *gt = test_tensor(ctx, 2, ts, NULL);
      int64_t ids64[15];
      for (size_t i = 0; i < rows; i++)
        ids64[i] = ids[i];
      const m2pt_host_matrix hid = {with_types ? (const void *)ids64 : (const void *)ids,
                                    with_types ? M2PT_DTYPE_I64 : M2PT_DTYPE_I32, b, n};
      const m2pt_host_matrix hty = {types, M2PT_DTYPE_I32, b, n};
      const m2pt_host_matrix *pty = with_types ? &hty : NULL;
      assert_ok(ctx, m2pt_bert_embeddings_backward(ctx, &hid, pty, tdsum, gw, gp, gt));
      float *w1 = test_read(ctx, gw), *p1 = test_read(ctx, gp), *t1 = test_read(ctx, gt);
      test_assert_close(w1, rw, vocab * dim, 1e-5, "dword");
      test_assert_close(p1, rp, npos * dim, 1e-5, "dposition");
      test_assert_close(t1, rt, ntypes * dim, 1e-5, "dtoken_type");

      /* Twice, and each table alone (the others frozen): the same bits. */
      assert_ok(ctx, m2pt_bert_embeddings_backward(ctx, &hid, pty, tdsum, gw, gp, gt));
      assert_same_bits(ctx, gw, w1);
      assert_same_bits(ctx, gp, p1);
      assert_same_bits(ctx, gt, t1);
      assert_ok(ctx, m2pt_bert_embeddings_backward(ctx, &hid, pty, tdsum, NULL, gp, NULL));
      assert_ok(ctx, m2pt_bert_embeddings_backward(ctx, &hid, pty, tdsum, NULL, NULL, gt));
      assert_ok(ctx, m2pt_bert_embeddings_backward(ctx, &hid, pty, tdsum, gw, NULL, NULL));
      assert_ok(ctx, m2pt_bert_embeddings_backward(ctx, &hid, pty, tdsum, NULL, NULL, NULL));
      assert_same_bits(ctx, gw, w1);
      assert_same_bits(ctx, gp, p1);
      assert_same_bits(ctx, gt, t1);

      /* Rejected: an id past dword, a type past dtoken_type, a position
       * table shorter than the tokens, dsum's shape, float ids; nothing
       * written. */
      int bad[15];
      memcpy(bad, ids, sizeof bad);
      bad[4] = (int)vocab;
      const m2pt_host_matrix hbad = {bad, M2PT_DTYPE_I32, b, n};
      assert_status(ctx, m2pt_bert_embeddings_backward(ctx, &hbad, pty, tdsum, gw, gp, gt),
                    M2PT_ERR_INVALID_ARGUMENT);
      assert_non_null(strstr(m2pt_last_error(ctx), "ids[0][4] = 11"));
      bad[4] = (int)ntypes;
      const m2pt_host_matrix hbt = {bad, M2PT_DTYPE_I32, b, n};
      assert_status(ctx, m2pt_bert_embeddings_backward(ctx, &hid, &hbt, tdsum, NULL, NULL, gt),
                    M2PT_ERR_INVALID_ARGUMENT);
      const size_t short_pos[2] = {n - 1, dim}, wrong[3] = {b, n + 1, dim};
      m2pt_tensor *gshort = test_tensor(ctx, 2, short_pos, NULL),
                  *twrong = test_tensor(ctx, 3, wrong, NULL);
      assert_status(ctx, m2pt_bert_embeddings_backward(ctx, &hid, pty, tdsum, NULL, gshort, NULL),
                    M2PT_ERR_SHAPE);
      assert_status(ctx, m2pt_bert_embeddings_backward(ctx, &hid, pty, twrong, gw, NULL, NULL),
                    M2PT_ERR_SHAPE);
      const m2pt_host_matrix hf = {dsum, M2PT_DTYPE_F32, b, n};
      assert_status(ctx, m2pt_bert_embeddings_backward(ctx, &hf, NULL, tdsum, gw, NULL, NULL),
                    M2PT_ERR_INVALID_ARGUMENT);
      assert_status(ctx, m2pt_bert_embeddings_backward(ctx, &hid, pty, tdsum, gw, gp, NULL),
                    M2PT_OK);
      assert_status(ctx, m2pt_bert_embeddings_backward(NULL, &hid, pty, tdsum, gw, gp, gt),
                    M2PT_ERR_INVALID_ARGUMENT);
      assert_status(ctx, m2pt_bert_embeddings_backward(ctx, NULL, pty, tdsum, gw, gp, gt),
                    M2PT_ERR_INVALID_ARGUMENT);
      assert_same_bits(ctx, gw, w1);
      assert_same_bits(ctx, gt, t1);
      m2pt_tensor_destroy(gshort);
      m2pt_tensor_destroy(twrong);
      free(w1);
      free(p1);
      free(t1);
      free(rw);
      free(rp);
      free(rt);
      free(dsum);
      free(dsum_d);
      m2pt_tensor_destroy(tdsum);
      m2pt_tensor_destroy(gw);
      m2pt_tensor_destroy(gp);
      m2pt_tensor_destroy(gt);
    }
}

/* ---- patch embedding ---- */

typedef struct patch_case {
  size_t batch, channels, height, width, patch, dim;
} patch_case;

/* L = Σ dY ⊙ patch_embed(...) with every input in double. */
static double patch_loss(const patch_case *c, int has_cls, const double *pix, const double *w,
                         const double *bias, const double *cls, const double *pos,
                         const double *dy)
{
  const size_t p = c->patch, gw = c->width / p, grid = (c->height / p) * gw;
  const size_t pre = has_cls ? 1 : 0, n = pre + grid;
  double l = 0.0;
  for (size_t b = 0; b < c->batch; b++)
    for (size_t t = 0; t < n; t++)
      for (size_t d = 0; d < c->dim; d++) {
        double v = pos[t * c->dim + d];
        if (t < pre) {
          v += cls[d];
        } else {
          const size_t q = t - pre, gy = q / gw, gx = q % gw;
          v += bias[d];
          for (size_t ch = 0; ch < c->channels; ch++)
            for (size_t py = 0; py < p; py++)
              for (size_t px = 0; px < p; px++)
                v += w[((d * c->channels + ch) * p + py) * p + px] *
                     pix[((b * c->channels + ch) * c->height + gy * p + py) * c->width +
                         gx * p + px];
        }
        l += dy[(b * n + t) * c->dim + d] * v;
      }
  return l;
}

static void patch_fd(const patch_case *c, int has_cls, double *in[5], const size_t sizes[5],
                     const double *dy, double *ref[5])
{
  static const char *const names[5] = {"dpixels", "dweight", "dbias", "dcls", "dpos"};
  for (int k = 0; k < 5; k++) {
    if (k == 3 && !has_cls)
      continue;
    for (size_t i = 0; i < sizes[k]; i++) {
      const double keep = in[k][i];
      in[k][i] = keep + FD_H;
      const double lp = patch_loss(c, has_cls, in[0], in[1], in[2], in[3], in[4], dy);
      in[k][i] = keep - FD_H;
      const double lm = patch_loss(c, has_cls, in[0], in[1], in[2], in[3], in[4], dy);
      in[k][i] = keep;
      assert_fd(ref[k][i], (lp - lm) / (2 * FD_H), names[k], i);
    }
  }
}

static void patch_embed_backward(void **state)
{
  m2pt_context *ctx = *state;
  static const patch_case cases[] = {
      {1, 3, 4, 4, 2, 5}, {2, 1, 6, 9, 3, 17}, {3, 3, 8, 4, 4, 7}, {2, 3, 32, 32, 16, 33}};
  const size_t ncases = test_small() ? 2 : 4;
  for (size_t ci = 0; ci < ncases; ci++)
    for (int has_cls = 0; has_cls < 2; has_cls++) {
      const patch_case *c = &cases[ci];
      const size_t p = c->patch, kdim = c->channels * p * p;
      const size_t n = (c->height / p) * (c->width / p) + (size_t)has_cls;
      const size_t sizes[5] = {c->batch * c->channels * c->height * c->width, c->dim * kdim,
                               c->dim, c->dim, n * c->dim};
      const size_t ny = c->batch * n * c->dim;
      float *pix = test_alloc(sizes[0] * 4), *w = test_alloc(sizes[1] * 4),
            *dy = test_alloc(ny * 4);
      test_fill(pix, sizes[0], 50 + ci);
      test_fill(w, sizes[1], 60 + ci);
      test_fill(dy, ny, 70 + ci);
      double *dyd = test_widen(dy, ny), *ref[5];
      for (int k = 0; k < 5; k++)
        ref[k] = test_alloc(sizes[k] * 8);
      ref_patch_embed_backward(pix, c->batch, c->channels, c->height, c->width, p, c->dim, w,
                               has_cls, dyd, ref[0], ref[1], ref[2], has_cls ? ref[3] : NULL,
                               ref[4]);
      if (ci == 0) {
        double *in[5];
        in[0] = test_widen(pix, sizes[0]);
        in[1] = test_widen(w, sizes[1]);
        for (int k = 2; k < 5; k++) {
          in[k] = test_alloc(sizes[k] * 8);
          for (size_t i = 0; i < sizes[k]; i++)
            in[k][i] = 0.01 * (double)(i + 1);
        }
        patch_fd(c, has_cls, in, sizes, dyd, ref);
        for (int k = 0; k < 5; k++)
          free(in[k]);
      }
      const size_t ps[4] = {c->batch, c->channels, c->height, c->width},
                   wsh[4] = {c->dim, c->channels, p, p}, ys[3] = {c->batch, n, c->dim},
                   vs[1] = {c->dim}, pos_s[2] = {n, c->dim};
      m2pt_tensor *tp = test_tensor(ctx, 4, ps, pix), *tw = test_tensor(ctx, 4, wsh, w),
                  *tdy = test_tensor(ctx, 3, ys, dy);
      m2pt_tensor *g[5] = {test_tensor(ctx, 4, ps, NULL), test_tensor(ctx, 4, wsh, NULL),
                           test_tensor(ctx, 1, vs, NULL), test_tensor(ctx, 1, vs, NULL),
                           test_tensor(ctx, 2, pos_s, NULL)};
      m2pt_tensor *gcls = has_cls ? g[3] : NULL;
      assert_ok(ctx, m2pt_patch_embed_backward(ctx, tp, tw, has_cls, tdy, g[0], g[1], g[2], gcls,
                                               g[4]));
      static const char *const names[5] = {"dpixels", "dweight", "dbias", "dcls", "dpos"};
      float *got[5];
      for (int k = 0; k < 5; k++) {
        got[k] = test_read(ctx, g[k]);
        if (k != 3 || has_cls)
          test_assert_close(got[k], ref[k], sizes[k], 1e-4, names[k]);
      }
      /* Twice, then each output alone: the same bits. */
      assert_ok(ctx, m2pt_patch_embed_backward(ctx, tp, tw, has_cls, tdy, g[0], g[1], g[2], gcls,
                                               g[4]));
      for (int k = 0; k < 5; k++)
        assert_same_bits(ctx, g[k], got[k]);
      assert_ok(ctx, m2pt_patch_embed_backward(ctx, tp, tw, has_cls, tdy, g[0], NULL, NULL, NULL,
                                               NULL));
      assert_ok(ctx, m2pt_patch_embed_backward(ctx, tp, tw, has_cls, tdy, NULL, g[1], NULL, NULL,
                                               NULL));
      assert_ok(ctx, m2pt_patch_embed_backward(ctx, tp, tw, has_cls, tdy, NULL, NULL, g[2], gcls,
                                               g[4]));
      assert_ok(ctx, m2pt_patch_embed_backward(ctx, tp, tw, has_cls, tdy, NULL, NULL, NULL, NULL,
                                               NULL));
      for (int k = 0; k < 5; k++)
        assert_same_bits(ctx, g[k], got[k]);

      /* Rejected: dcls without a class token, dy of the other token
       * count, dweight of another shape, dy as an output. */
      if (!has_cls)
        assert_status(ctx, m2pt_patch_embed_backward(ctx, tp, tw, 0, tdy, NULL, NULL, NULL,
                                                     g[3], NULL),
                      M2PT_ERR_INVALID_ARGUMENT);
      assert_status(ctx, m2pt_patch_embed_backward(ctx, tp, tw, !has_cls, tdy, g[0], NULL, NULL,
                                                   NULL, NULL),
                    M2PT_ERR_SHAPE);
      assert_status(ctx, m2pt_patch_embed_backward(ctx, tp, tw, has_cls, tdy, NULL, g[0], NULL,
                                                   NULL, NULL),
                    M2PT_ERR_SHAPE);
      assert_status(ctx, m2pt_patch_embed_backward(ctx, tp, tw, has_cls, tdy, NULL, NULL, NULL,
                                                   NULL, tdy),
                    M2PT_ERR_INVALID_ARGUMENT);
      assert_status(ctx, m2pt_patch_embed_backward(ctx, tp, NULL, has_cls, tdy, NULL, NULL, NULL,
                                                   NULL, NULL),
                    M2PT_ERR_INVALID_ARGUMENT);
      for (int k = 0; k < 5; k++) {
        assert_same_bits(ctx, g[k], got[k]);
        free(got[k]);
        free(ref[k]);
        m2pt_tensor_destroy(g[k]);
      }
      m2pt_tensor_destroy(tp);
      m2pt_tensor_destroy(tw);
      m2pt_tensor_destroy(tdy);
      free(pix);
      free(w);
      free(dy);
      free(dyd);
    }
}

/* ---- pooling ---- */

/* L = Σ dY ⊙ pool(x) in double (ref_pool's math). */
static double pool_loss(const double *x, size_t batch, size_t tokens, size_t dim,
                        const float *mask, int token, size_t first, int normalize,
                        const double *dy)
{
  double l = 0.0, *y = test_alloc(dim * sizeof *y);
  for (size_t b = 0; b < batch; b++) {
    double count = 0.0, ss = 0.0;
    for (size_t n = first; n < tokens; n++)
      count += mask ? mask[b * tokens + n] : 1.0;
    for (size_t d = 0; d < dim; d++) {
      y[d] = 0.0;
      if (token)
        y[d] = x[(b * tokens + first) * dim + d];
      else
        for (size_t n = first; n < tokens; n++)
          y[d] += (mask ? mask[b * tokens + n] : 1.0) * x[(b * tokens + n) * dim + d];
      if (!token)
        y[d] /= count > 1e-9 ? count : 1e-9;
      ss += y[d] * y[d];
    }
    const double norm = normalize ? fmax(sqrt(ss), 1e-12) : 1.0;
    l += dot(y, dy + b * dim, dim) / norm;
  }
  free(y);
  return l;
}

static void pool_backward(void **state)
{
  m2pt_context *ctx = *state;
  static const size_t dims[] = {1, 6, 17, 768};
  const size_t ndims = test_small() ? 2 : 4;
  const size_t b = 3, n = 5;
  /* Row 1 is all padding (zeros, not NaN); row 2 pads only its start. */
  static const float mask[15] = {1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1};
  for (size_t di = 0; di < ndims; di++)
    for (int kind = 0; kind < 3; kind++) /* token, mean, mean with the mask */
      for (size_t first = 0; first < 2; first++)
        for (int normalize = 0; normalize < 2; normalize++) {
          const size_t dim = dims[di], nx = b * n * dim;
          const int token = kind == 0;
          const float *m = kind == 2 ? mask : NULL;
          float *x = test_alloc(nx * 4), *dy = test_alloc(b * dim * 4);
          test_fill(x, nx, 80 + di);
          test_fill(dy, b * dim, 90 + di);
          double *xd = test_widen(x, nx), *dyd = test_widen(dy, b * dim),
                 *ref = test_alloc(nx * 8);
          ref_pool_backward(xd, b, n, dim, m, token, first, normalize, dyd, ref);
          if (dim <= 6)
            for (size_t i = 0; i < nx; i++) {
              const double keep = xd[i];
              xd[i] = keep + FD_H;
              const double lp = pool_loss(xd, b, n, dim, m, token, first, normalize, dyd);
              xd[i] = keep - FD_H;
              const double lm = pool_loss(xd, b, n, dim, m, token, first, normalize, dyd);
              xd[i] = keep;
              assert_fd(ref[i], (lp - lm) / (2 * FD_H), "pool dx", i);
            }
          const size_t xs[3] = {b, n, dim}, ys[2] = {b, dim}, ms[2] = {b, n};
          m2pt_tensor *tx = test_tensor(ctx, 3, xs, x), *tdy = test_tensor(ctx, 2, ys, dy),
                      *tm = m ? test_tensor(ctx, 2, ms, m) : NULL,
                      *tdx = test_tensor(ctx, 3, xs, NULL);
          const m2pt_pool_kind pk = token ? M2PT_POOL_TOKEN : M2PT_POOL_MEAN;
          assert_ok(ctx, m2pt_pool_backward(ctx, tx, tm, pk, first, normalize, tdy, tdx));
          float *got = test_read(ctx, tdx);
          test_assert_close(got, ref, nx, 1e-5, "pool dx");
          for (size_t i = 0; i < nx; i++)
            assert_true(isfinite(got[i]));
          assert_ok(ctx, m2pt_pool_backward(ctx, tx, tm, pk, first, normalize, tdy, tdx));
          assert_same_bits(ctx, tdx, got);
          if (di == 0 && kind == 2 && first == 0 && normalize == 0) {
            assert_status(ctx, m2pt_pool_backward(ctx, tx, tm, M2PT_POOL_AUTO, 0, 0, tdy, tdx),
                          M2PT_ERR_INVALID_ARGUMENT);
            assert_status(ctx, m2pt_pool_backward(ctx, tx, tm, pk, n, 0, tdy, tdx),
                          M2PT_ERR_INVALID_ARGUMENT);
            assert_status(ctx, m2pt_pool_backward(ctx, tx, tm, pk, 0, 0, tdx, tdx),
                          M2PT_ERR_SHAPE);
            assert_status(ctx, m2pt_pool_backward(ctx, tx, tm, pk, 0, 0, tdy, tx),
                          M2PT_OK); /* dx may be x: x is read only to normalize */
            assert_status(ctx, m2pt_pool_backward(ctx, tx, tm, pk, 0, 0, tdy, tdy),
                          M2PT_ERR_SHAPE);
            assert_status(ctx, m2pt_pool_backward(ctx, tx, tm, pk, 0, 0, tdy, NULL),
                          M2PT_ERR_INVALID_ARGUMENT);
            assert_same_bits(ctx, tdx, got);
          }
          free(got);
          free(x);
          free(dy);
          free(xd);
          free(dyd);
          free(ref);
          m2pt_tensor_destroy(tx);
          m2pt_tensor_destroy(tdy);
          m2pt_tensor_destroy(tm);
          m2pt_tensor_destroy(tdx);
        }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(bert_gather_backward),
      cmocka_unit_test(patch_embed_backward),
      cmocka_unit_test(pool_backward),
  };
  return test_run_matrix("grad_embedding", TEST_AXIS_GEMM, tests, NULL, NULL);
}
