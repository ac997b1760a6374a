/* BERT embeddings, ViT patch embedding and pooling against the double
 * reference over awkward shapes, and their rejected inputs. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"
#include "test_util.h"

static float *read_all(m2pt_context *ctx, const m2pt_tensor *t)
{
  const size_t n = m2pt_tensor_numel(t);
  float *h = test_alloc(n * sizeof *h);
  assert_ok(ctx, m2pt_tensor_read(t, h, n));
  return h;
}

static void bert_embeddings(void **state)
{
  m2pt_context *ctx = *state;
  static const size_t dims[] = {1, 7, 17, 197};
  const size_t ndims = test_small() ? 2 : 4;
  for (size_t di = 0; di < ndims; di++)
    for (int with_types = 0; with_types < 2; with_types++) {
      const size_t b = 3, n = 5, dim = dims[di], vocab = 11, npos = 9, ntypes = 2;
      float *word = test_alloc(vocab * dim * 4), *pos = test_alloc(npos * dim * 4),
            *type = test_alloc(ntypes * dim * 4), *w = test_alloc(dim * 4),
            *bias = test_alloc(dim * 4);
      test_fill(word, vocab * dim, 1);
      test_fill(pos, npos * dim, 2);
      test_fill(type, ntypes * dim, 3);
      test_fill(w, dim, 4);
      test_fill(bias, dim, 5);
      int64_t ids64[15];
      int32_t ids[15], types[15];
      for (size_t i = 0; i < b * n; i++) {
        ids[i] = (int32_t)((i * 7 + 3) % vocab);
        ids64[i] = ids[i];
        types[i] = (int32_t)(i % 2);
      }
      const size_t ws[2] = {vocab, dim}, ps[2] = {npos, dim}, ts[2] = {ntypes, dim},
                   vs[1] = {dim}, ys[3] = {b, n, dim};
      m2pt_tensor *tw = test_tensor(ctx, 2, ws, word), *tp = test_tensor(ctx, 2, ps, pos),
                  *tt = test_tensor(ctx, 2, ts, type), *tlw = test_tensor(ctx, 1, vs, w),
                  *tlb = test_tensor(ctx, 1, vs, bias), *ty = test_tensor(ctx, 3, ys, NULL);
      const m2pt_host_matrix hid = {with_types ? (const void *)ids64 : (const void *)ids,
                                    with_types ? M2PT_DTYPE_I64 : M2PT_DTYPE_I32, b, n};
      const m2pt_host_matrix htypes = {types, M2PT_DTYPE_I32, b, n};
      assert_ok(ctx, m2pt_bert_embeddings(ctx, &hid, with_types ? &htypes : NULL, tw, tp, tt,
                                          tlw, tlb, 1e-12f, ty));
      double *sum = test_alloc(b * n * dim * sizeof *sum), *ref = test_alloc(b * n * dim * 8);
      ref_bert_gather(ids, with_types ? types : NULL, b, n, dim, word, pos, type, sum);
      if (!with_types) /* no types given: type 0 everywhere */
        for (size_t r = 0; r < b * n; r++)
          for (size_t d = 0; d < dim; d++)
            sum[r * dim + d] += type[d];
      ref_layer_norm(sum, b * n, dim, w, bias, 1e-12, ref);
      float *y = read_all(ctx, ty);
      test_assert_close(y, ref, b * n * dim, 1e-4, "bert_embeddings");

      /* Hostile ids: out of range, negative, types past the table; y untouched. */
      int32_t bad[15];
      memcpy(bad, ids, sizeof bad);
      bad[7] = (int32_t)vocab;
      const m2pt_host_matrix hbad = {bad, M2PT_DTYPE_I32, b, n};
      assert_status(ctx, m2pt_bert_embeddings(ctx, &hbad, NULL, tw, tp, tt, tlw, tlb, 1e-12f, ty),
                    M2PT_ERR_INVALID_ARGUMENT);
      assert_non_null(strstr(m2pt_last_error(ctx), "ids[1][2] = 11"));
      bad[7] = -1;
      assert_status(ctx, m2pt_bert_embeddings(ctx, &hbad, NULL, tw, tp, tt, tlw, tlb, 1e-12f, ty),
                    M2PT_ERR_INVALID_ARGUMENT);
      int64_t huge[15];
      memcpy(huge, ids64, sizeof huge);
      huge[14] = INT64_C(1) << 40;
      const m2pt_host_matrix hhuge = {huge, M2PT_DTYPE_I64, b, n};
      assert_status(ctx,
                    m2pt_bert_embeddings(ctx, &hhuge, NULL, tw, tp, tt, tlw, tlb, 1e-12f, ty),
                    M2PT_ERR_INVALID_ARGUMENT);
      int32_t bad_types[15] = {0};
      bad_types[3] = 2;
      const m2pt_host_matrix hbt = {bad_types, M2PT_DTYPE_I32, b, n};
      assert_status(ctx, m2pt_bert_embeddings(ctx, &hid, &hbt, tw, tp, tt, tlw, tlb, 1e-12f, ty),
                    M2PT_ERR_INVALID_ARGUMENT);
      const m2pt_host_matrix hf = {word, M2PT_DTYPE_F32, b, n};
      assert_status(ctx, m2pt_bert_embeddings(ctx, &hf, NULL, tw, tp, tt, tlw, tlb, 1e-12f, ty),
                    M2PT_ERR_INVALID_ARGUMENT);
      const m2pt_host_matrix hlong = {ids, M2PT_DTYPE_I32, 1, 10}; /* past 9 positions */
      assert_status(ctx,
                    m2pt_bert_embeddings(ctx, &hlong, NULL, tw, tp, tt, tlw, tlb, 1e-12f, ty),
                    M2PT_ERR_SHAPE);
      float *y2 = read_all(ctx, ty);
      assert_memory_equal(y, y2, b * n * dim * sizeof *y);
      free(y2);
      free(y);
      free(sum);
      free(ref);
      free(word);
      free(pos);
      free(type);
      free(w);
      free(bias);
      m2pt_tensor_destroy(tw);
      m2pt_tensor_destroy(tp);
      m2pt_tensor_destroy(tt);
      m2pt_tensor_destroy(tlw);
      m2pt_tensor_destroy(tlb);
      m2pt_tensor_destroy(ty);
    }
}

static void patch_embed(void **state)
{
  m2pt_context *ctx = *state;
  /* {batch, channels, height, width, patch, dim} */
  static const size_t cases[][6] = {{1, 3, 4, 4, 2, 5}, {2, 1, 6, 9, 3, 17},
                                    {3, 3, 8, 4, 4, 7}, {1, 3, 32, 32, 16, 33}};
  const size_t ncases = test_small() ? 2 : 4;
  for (size_t ci = 0; ci < ncases; ci++)
    for (int full = 0; full < 2; full++) {
      const size_t b = cases[ci][0], c = cases[ci][1], h = cases[ci][2], wd = cases[ci][3],
                   p = cases[ci][4], dim = cases[ci][5];
      const size_t n = full + (h / p) * (wd / p), npix = b * c * h * wd, nw = dim * c * p * p;
      float *pix = test_alloc(npix * 4), *w = test_alloc(nw * 4), *bias = test_alloc(dim * 4),
            *cls = test_alloc(dim * 4), *pos = test_alloc(n * dim * 4);
      test_fill(pix, npix, 10 + ci);
      test_fill(w, nw, 11);
      test_fill(bias, dim, 12);
      test_fill(cls, dim, 13);
      test_fill(pos, n * dim, 14);
      const size_t ps[4] = {b, c, h, wd}, ws[4] = {dim, c, p, p}, vs[1] = {dim},
                   pos_s[2] = {n, dim}, ys[3] = {b, n, dim};
      m2pt_tensor *tpix = test_tensor(ctx, 4, ps, pix), *tw = test_tensor(ctx, 4, ws, w),
                  *tb = test_tensor(ctx, 1, vs, bias), *tc = test_tensor(ctx, 1, vs, cls),
                  *tpos = test_tensor(ctx, 2, pos_s, pos), *ty = test_tensor(ctx, 3, ys, NULL);
      assert_ok(ctx, m2pt_patch_embed(ctx, tpix, tw, full ? tb : NULL, full ? tc : NULL,
                                      full ? tpos : NULL, ty));
      double *ref = test_alloc(b * n * dim * sizeof *ref);
      ref_patch_embed(pix, b, c, h, wd, p, dim, w, full ? bias : NULL, full ? cls : NULL,
                      full ? pos : NULL, ref);
      float *y = read_all(ctx, ty);
      test_assert_close(y, ref, b * n * dim, 1e-4, "patch_embed");
      free(y);
      free(ref);
      /* Pixels of the wrong size: not a multiple of the patch, other channels. */
      const size_t bad1[4] = {b, c, h + 1, wd}, bad2[4] = {b, c + 1, h, wd};
      m2pt_tensor *tb1 = test_tensor(ctx, 4, bad1, NULL), *tb2 = test_tensor(ctx, 4, bad2, NULL);
      assert_status(ctx, m2pt_patch_embed(ctx, tb1, tw, NULL, NULL, NULL, ty), M2PT_ERR_SHAPE);
      assert_status(ctx, m2pt_patch_embed(ctx, tb2, tw, NULL, NULL, NULL, ty), M2PT_ERR_SHAPE);
      m2pt_tensor_destroy(tb1);
      m2pt_tensor_destroy(tb2);
      free(pix);
      free(w);
      free(bias);
      free(cls);
      free(pos);
      m2pt_tensor_destroy(tpix);
      m2pt_tensor_destroy(tw);
      m2pt_tensor_destroy(tb);
      m2pt_tensor_destroy(tc);
      m2pt_tensor_destroy(tpos);
      m2pt_tensor_destroy(ty);
    }
}

static void pool(void **state)
{
  m2pt_context *ctx = *state;
  static const size_t dims[] = {1, 17, 197};
  const size_t ndims = test_small() ? 2 : 3;
  for (size_t di = 0; di < ndims; di++) {
    const size_t b = 3, n = 6, dim = dims[di];
    float *x = test_alloc(b * n * dim * 4);
    test_fill(x, b * n * dim, 20 + di);
    /* Row 1 is all padding: zeros, never NaN. */
    float mask[18] = {1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1};
    const size_t xs[3] = {b, n, dim}, ms[2] = {b, n}, ys[2] = {b, dim};
    m2pt_tensor *tx = test_tensor(ctx, 3, xs, x), *tm = test_tensor(ctx, 2, ms, mask),
                *ty = test_tensor(ctx, 2, ys, NULL);
    double *ref = test_alloc(b * dim * sizeof *ref);
    for (int token = 0; token < 2; token++)
      for (int with_mask = 0; with_mask < 2; with_mask++)
        for (size_t first = 0; first < 2; first++)
          for (int norm = 0; norm < 2; norm++) {
            assert_ok(ctx, m2pt_pool(ctx, tx, with_mask ? tm : NULL,
                                     token ? M2PT_POOL_TOKEN : M2PT_POOL_MEAN, first, norm, ty));
            ref_pool(x, b, n, dim, with_mask ? mask : NULL, token, first, norm, ref);
            float *y = read_all(ctx, ty);
            test_assert_close(y, ref, b * dim, 1e-4, "pool");
            for (size_t i = 0; i < b * dim; i++)
              assert_false(isnan(y[i]));
            free(y);
          }
    const size_t bad[2] = {b, n + 1};
    m2pt_tensor *tbad = test_tensor(ctx, 2, bad, NULL);
    assert_status(ctx, m2pt_pool(ctx, tx, tbad, M2PT_POOL_MEAN, 0, 0, ty), M2PT_ERR_SHAPE);
    assert_status(ctx, m2pt_pool(ctx, tx, NULL, M2PT_POOL_MEAN, n, 0, ty),
                  M2PT_ERR_INVALID_ARGUMENT);
    assert_status(ctx, m2pt_pool(ctx, tx, NULL, M2PT_POOL_POOLER, 0, 0, ty),
                  M2PT_ERR_INVALID_ARGUMENT);
    m2pt_tensor_destroy(tbad);
    free(ref);
    free(x);
    m2pt_tensor_destroy(tx);
    m2pt_tensor_destroy(tm);
    m2pt_tensor_destroy(ty);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(bert_embeddings),
      cmocka_unit_test(patch_embed),
      cmocka_unit_test(pool),
  };
  /* The patch embedding's GEMM and the BERT embeddings' LayerNorm vary; the
   * gathers and pooling have one kernel each. */
  return test_run_matrix("embedding", TEST_AXIS_GEMM | TEST_AXIS_LAYER_NORM, tests, NULL,
                         NULL) != 0;
}
