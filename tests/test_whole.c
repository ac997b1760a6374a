/* Whole models against the PyTorch goldens of tests/data/whole
 * (tools/make_whole_model_golden.py), and hostile inputs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

static float *npy(const char *path, size_t *n)
{
  float *data;
  size_t ndim, shape[M2PT_IO_MAX_DIMS];
  assert_int_equal(m2pt_npy_read(path, &data, &ndim, shape), M2PT_OK);
  *n = 1;
  for (size_t i = 0; i < ndim; i++)
    *n *= shape[i];
  return data;
}

static m2pt_model *load(m2pt_context *ctx, const char *path)
{
  m2pt_model_options o = m2pt_model_options_default();
  o.heads = 2;
  m2pt_model *m = NULL;
  assert_ok(ctx, m2pt_model_load(ctx, path, &o, &m));
  return m;
}

/* Runs `kind` and compares with `expected` (DESIGN.md's tolerance). */
static void check(m2pt_context *ctx, m2pt_model *m, const m2pt_tensor *pixels,
                  const m2pt_host_matrix *ids, const m2pt_host_matrix *types,
                  const m2pt_host_matrix *mask, m2pt_output_kind kind, int normalize,
                  const char *expected)
{
  size_t ndim, shape[3], n;
  const size_t tokens = ids ? ids->cols : 5;
  assert_ok(ctx, m2pt_model_output_shape(m, kind, 2, tokens, &ndim, shape));
  m2pt_tensor *y = test_tensor(ctx, ndim, shape, NULL);
  m2pt_forward_options o = m2pt_forward_options_default();
  o.output = kind;
  o.normalize = normalize;
  if (ids)
    assert_ok(ctx, m2pt_model_forward_ids(m, ids, types, mask, &o, y));
  else
    assert_ok(ctx, m2pt_model_forward_pixels(m, pixels, mask, &o, y));
  float *want = npy(expected, &n);
  assert_int_equal(n, m2pt_tensor_numel(y));
  float *got = test_alloc(n * sizeof *got);
  double *ref = test_alloc(n * sizeof *ref);
  assert_ok(ctx, m2pt_tensor_read(y, got, n));
  for (size_t i = 0; i < n; i++)
    ref[i] = want[i];
  test_assert_close(got, ref, n, 1e-4, expected);
  free(got);
  free(ref);
  m2pt_free(want);
  m2pt_tensor_destroy(y);
}

static m2pt_tensor *pixels_tensor(m2pt_context *ctx)
{
  size_t n;
  float *p = npy("pixels.npy", &n);
  const size_t shape[4] = {2, 3, 8, 8};
  m2pt_tensor *t = test_tensor(ctx, 4, shape, p);
  m2pt_free(p);
  return t;
}

static void vit(void **state)
{
  m2pt_context *ctx = *state;
  m2pt_tensor *px = pixels_tensor(ctx);
  m2pt_model *m = load(ctx, "timm_token.safetensors");
  check(ctx, m, px, NULL, NULL, NULL, M2PT_OUTPUT_HIDDEN, 0, "timm_token_hidden.npy");
  check(ctx, m, px, NULL, NULL, NULL, M2PT_OUTPUT_POOLED, 0, "timm_token_pooled.npy");
  check(ctx, m, px, NULL, NULL, NULL, M2PT_OUTPUT_LOGITS, 0, "timm_token_logits.npy");
  /* Pixels of the wrong size. */
  const size_t bad[4] = {2, 3, 12, 12};
  m2pt_tensor *tb = test_tensor(ctx, 4, bad, NULL), *y = test_tensor(ctx, 2, bad, NULL);
  assert_status(ctx, m2pt_model_forward_pixels(m, tb, NULL, NULL, y), M2PT_ERR_SHAPE);
  m2pt_tensor_destroy(tb);
  m2pt_tensor_destroy(y);
  m2pt_model_destroy(m);
  m = load(ctx, "timm_avg.safetensors");
  check(ctx, m, px, NULL, NULL, NULL, M2PT_OUTPUT_POOLED, 0, "timm_avg_pooled.npy");
  check(ctx, m, px, NULL, NULL, NULL, M2PT_OUTPUT_LOGITS, 0, "timm_avg_logits.npy");
  m2pt_model_destroy(m);
  m = load(ctx, "hf_vit.safetensors");
  check(ctx, m, px, NULL, NULL, NULL, M2PT_OUTPUT_LOGITS, 0, "hf_vit_logits.npy");
  m2pt_model_destroy(m);
  m2pt_tensor_destroy(px);
}

static int64_t ids64[12], types64[12];
static int32_t mask32[12];

static void read_bert_inputs(void)
{
  size_t n;
  float *a = npy("bert_ids.npy", &n), *t = npy("bert_types.npy", &n),
        *k = npy("bert_mask.npy", &n);
  for (size_t i = 0; i < 12; i++) {
    ids64[i] = (int64_t)a[i];
    types64[i] = (int64_t)t[i];
    mask32[i] = (int32_t)k[i];
  }
  m2pt_free(a);
  m2pt_free(t);
  m2pt_free(k);
}

static void bert(void **state)
{
  m2pt_context *ctx = *state;
  read_bert_inputs();
  const m2pt_host_matrix ids = {ids64, M2PT_DTYPE_I64, 2, 6},
                         types = {types64, M2PT_DTYPE_I64, 2, 6},
                         mask = {mask32, M2PT_DTYPE_I32, 2, 6};
  m2pt_model *m = load(ctx, "bert.safetensors");
  check(ctx, m, NULL, &ids, &types, &mask, M2PT_OUTPUT_HIDDEN, 0, "bert_hidden.npy");
  check(ctx, m, NULL, &ids, &types, &mask, M2PT_OUTPUT_POOLED, 0, "bert_pooled.npy");
  check(ctx, m, NULL, &ids, &types, &mask, M2PT_OUTPUT_MEAN, 1, "bert_mean.npy");
  check(ctx, m, NULL, &ids, &types, &mask, M2PT_OUTPUT_LOGITS, 0, "bert_logits.npy");

  /* Hostile input: an id out of range, negative, a mask of the wrong shape
   * or with a 2 in it. */
  const size_t ys[2] = {2, 3};
  m2pt_tensor *y = test_tensor(ctx, 2, ys, NULL);
  m2pt_forward_options o = m2pt_forward_options_default();
  o.output = M2PT_OUTPUT_LOGITS;
  int64_t bad[12];
  memcpy(bad, ids64, sizeof bad);
  bad[8] = 20;
  const m2pt_host_matrix hbad = {bad, M2PT_DTYPE_I64, 2, 6};
  assert_status(ctx, m2pt_model_forward_ids(m, &hbad, &types, &mask, &o, y),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(ctx), "ids[1][2] = 20"));
  bad[8] = -3;
  assert_status(ctx, m2pt_model_forward_ids(m, &hbad, &types, &mask, &o, y),
                M2PT_ERR_INVALID_ARGUMENT);
  const m2pt_host_matrix mwrong = {mask32, M2PT_DTYPE_I32, 2, 5};
  assert_status(ctx, m2pt_model_forward_ids(m, &ids, &types, &mwrong, &o, y), M2PT_ERR_SHAPE);
  int32_t m2[12];
  memcpy(m2, mask32, sizeof m2);
  m2[1] = 2;
  const m2pt_host_matrix mtwo = {m2, M2PT_DTYPE_I32, 2, 6};
  assert_status(ctx, m2pt_model_forward_ids(m, &ids, &types, &mtwo, &o, y),
                M2PT_ERR_INVALID_ARGUMENT);
  /* An all-padding row: a defined result, no NaN. */
  int32_t zero[12];
  memcpy(zero, mask32, sizeof zero);
  memset(zero + 6, 0, 6 * sizeof *zero);
  const m2pt_host_matrix mzero = {zero, M2PT_DTYPE_I32, 2, 6};
  o.output = M2PT_OUTPUT_MEAN;
  const size_t ms[2] = {2, 16};
  m2pt_tensor *ym = test_tensor(ctx, 2, ms, NULL);
  assert_ok(ctx, m2pt_model_forward_ids(m, &ids, &types, &mzero, &o, ym));
  float out[32];
  assert_ok(ctx, m2pt_tensor_read(ym, out, 32));
  for (size_t i = 16; i < 32; i++)
    assert_true(out[i] == 0.0f);
  m2pt_tensor_destroy(ym);

  /* Pathways on the classifier: the paper's (W + λW_aux), then the seed's
   * aux bias; unmerged and merged. */
  const char *head[] = {"classifier"};
  assert_ok(ctx, m2pt_model_add_pathways(m, "bert_aux.safetensors", head, 1, 0.3f));
  check(ctx, m, NULL, &ids, &types, &mask, M2PT_OUTPUT_LOGITS, 0,
        "bert_logits_head_pathway.npy");
  m2pt_model_info info;
  assert_ok(ctx, m2pt_model_get_info(m, &info));
  assert_int_equal(info.pathways, 1);
  assert_ok(ctx, m2pt_model_merge(m));
  /* Merged for real, not run unmerged: no pathway is left. */
  assert_ok(ctx, m2pt_model_get_info(m, &info));
  assert_int_equal(info.pathways, 0);
  check(ctx, m, NULL, &ids, &types, &mask, M2PT_OUTPUT_LOGITS, 0,
        "bert_logits_head_pathway.npy");
  m2pt_tensor_destroy(y);
  m2pt_model_destroy(m);
  m = load(ctx, "bert.safetensors");
  assert_ok(ctx, m2pt_model_add_pathways_aux_bias(m, "bert_aux.safetensors", head, 1, 0.3f, 1));
  check(ctx, m, NULL, &ids, &types, &mask, M2PT_OUTPUT_LOGITS, 0,
        "bert_logits_head_aux_bias.npy");
  assert_ok(ctx, m2pt_model_merge(m));
  assert_ok(ctx, m2pt_model_get_info(m, &info));
  assert_int_equal(info.pathways, 0);
  check(ctx, m, NULL, &ids, &types, &mask, M2PT_OUTPUT_LOGITS, 0,
        "bert_logits_head_aux_bias.npy");
  m2pt_model_destroy(m);
}

/* `saved` holds every tensor of `original` under the same name, dtype,
 * shape and bytes, and nothing else. */
static void assert_same_tensors(const char *original, const char *saved)
{
  m2pt_safetensors *a = NULL, *b = NULL;
  assert_int_equal(m2pt_safetensors_open(original, &a), M2PT_OK);
  assert_int_equal(m2pt_safetensors_open(saved, &b), M2PT_OK);
  assert_int_equal(m2pt_safetensors_count(a), m2pt_safetensors_count(b));
  for (size_t i = 0; i < m2pt_safetensors_count(a); i++) {
    m2pt_safetensors_info ia, ib;
    size_t j;
    assert_int_equal(m2pt_safetensors_info_at(a, i, &ia), M2PT_OK);
    if (m2pt_safetensors_find(b, ia.name, &j) != M2PT_OK)
      fail_msg("%s: %s is missing from the saved file", original, ia.name);
    assert_int_equal(m2pt_safetensors_info_at(b, j, &ib), M2PT_OK);
    assert_int_equal(ia.dtype, ib.dtype);
    assert_int_equal(ia.ndim, ib.ndim);
    assert_memory_equal(ia.shape, ib.shape, sizeof ia.shape);
    unsigned char *da = test_alloc(ia.nbytes + 1), *db = test_alloc(ib.nbytes + 1);
    assert_int_equal(m2pt_safetensors_read_raw(a, i, da, ia.nbytes), M2PT_OK);
    assert_int_equal(m2pt_safetensors_read_raw(b, j, db, ib.nbytes), M2PT_OK);
    if (memcmp(da, db, ia.nbytes) != 0)
      fail_msg("%s: %s changed on saving", original, ia.name);
    free(da);
    free(db);
  }
  m2pt_safetensors_close(a);
  m2pt_safetensors_close(b);
}

/* Saving writes every naming back as it came (timm, HF ViT, BERT with its
 * embeddings, pooler and classifier), and a classifier pathway saved in the
 * paper's naming loads back with the same logits. */
static void save_round_trip(void **state)
{
  m2pt_context *ctx = *state;
  char dir[] = "/tmp/m2pt-whole.XXXXXX";
  assert_non_null(mkdtemp(dir));
  char out[sizeof dir + 32];
  snprintf(out, sizeof out, "%s/saved.safetensors", dir);
  static const char *const files[] = {"timm_token.safetensors", "timm_avg.safetensors",
                                      "hf_vit.safetensors", "bert.safetensors"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    m2pt_model *m = load(ctx, files[i]);
    assert_ok(ctx, m2pt_model_save(m, out));
    m2pt_model_destroy(m);
    assert_same_tensors(files[i], out);
  }
  read_bert_inputs();
  const m2pt_host_matrix ids = {ids64, M2PT_DTYPE_I64, 2, 6},
                         types = {types64, M2PT_DTYPE_I64, 2, 6},
                         mask = {mask32, M2PT_DTYPE_I32, 2, 6};
  const char *head[] = {"classifier"};
  m2pt_model *m = load(ctx, "bert.safetensors");
  assert_ok(ctx, m2pt_model_add_pathways(m, "bert_aux.safetensors", head, 1, 0.3f));
  assert_ok(ctx, m2pt_model_save(m, out));
  m2pt_model_destroy(m);
  m = load(ctx, out);
  check(ctx, m, NULL, &ids, &types, &mask, M2PT_OUTPUT_LOGITS, 0,
        "bert_logits_head_pathway.npy");
  m2pt_model_destroy(m);
  remove(out);
  rmdir(dir);
}

static void no_blocks(void **state)
{
  m2pt_context *ctx = *state;
  m2pt_model *m = NULL;
  assert_status(ctx, m2pt_model_load(ctx, "no_blocks.safetensors", NULL, &m), M2PT_ERR_NOT_FOUND);
  assert_null(m);
}

int main(int argc, char **argv)
{
  if (test_enter_data_dir(argc, argv, M2PT_WHOLE_DATA) != 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(vit),
      cmocka_unit_test(bert),
      cmocka_unit_test(save_round_trip),
      cmocka_unit_test(no_blocks),
  };
  return test_run_matrix("whole", TEST_AXES_ALL, tests, NULL, NULL) != 0;
}
