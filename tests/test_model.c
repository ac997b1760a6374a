/* The model: loading timm and BERT checkpoints, building the pathway, λ,
 * merge, forward against PyTorch goldens (tools/make_model_golden.py writes
 * tests/data/model), saving, and the malformed checkpoints a loader meets. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

#ifndef M2PT_MODEL_DATA
#  error "M2PT_MODEL_DATA must name tests/data/model"
#endif
/* main() enters tests/data/model (test_enter_data_dir), so its files are
 * relative. */
#define DATA(name) name


/* ---- helpers ---- */

typedef struct npy {
  float *data;
  size_t ndim, shape[M2PT_IO_MAX_DIMS], numel;
} npy;

static npy load_npy(const char *path)
{
  npy a;
  assert_ok(NULL, m2pt_npy_read(path, &a.data, &a.ndim, a.shape));
  a.numel = 1;
  for (size_t i = 0; i < a.ndim; i++)
    a.numel *= a.shape[i];
  return a;
}

static m2pt_model *load(m2pt_context *ctx, const char *path, size_t heads)
{
  m2pt_model_options o = m2pt_model_options_default();
  o.heads = heads;
  m2pt_model *m = NULL;
  assert_ok(ctx, m2pt_model_load(ctx, path, &o, &m));
  return m;
}

/* The model's output on `input` (host floats, same shape). */
static float *run(m2pt_context *ctx, m2pt_model *m, const npy *input)
{
  m2pt_tensor *x = test_tensor(ctx, input->ndim, input->shape, input->data);
  m2pt_tensor *y = test_tensor(ctx, input->ndim, input->shape, NULL);
  assert_ok(ctx, m2pt_model_forward(m, x, NULL, y));
  float *out = test_alloc(input->numel * sizeof *out);
  assert_ok(ctx, m2pt_tensor_read(y, out, input->numel));
  m2pt_tensor_destroy(x);
  m2pt_tensor_destroy(y);
  return out;
}

static void assert_matches(const float *got, const char *golden, const char *what)
{
  npy ref = load_npy(golden);
  double *r = test_alloc(ref.numel * sizeof *r);
  for (size_t i = 0; i < ref.numel; i++)
    r[i] = ref.data[i];
  test_assert_close(got, r, ref.numel, 1e-4, what);
  free(r);
  m2pt_free(ref.data);
}

/* Runs the model on the input of `prefix` and compares with `golden`. */
static void check_golden(m2pt_context *ctx, m2pt_model *m, const char *input, const char *golden)
{
  npy x = load_npy(input);
  float *y = run(ctx, m, &x);
  assert_matches(y, golden, golden);
  free(y);
  m2pt_free(x.data);
}

/* ---- loading and running ---- */

static void timm_plain(void **state)
{
  m2pt_context *ctx = *state;
  m2pt_model *m = load(ctx, DATA("timm_target.safetensors"), 3);
  m2pt_model_info info;
  assert_ok(ctx, m2pt_model_get_info(m, &info));
  assert_int_equal(info.naming, M2PT_NAMING_TIMM);
  assert_string_equal(info.prefix, "blocks");
  assert_int_equal(info.depth, 2);
  assert_int_equal(info.final_norm, 1);
  assert_int_equal(info.pathways, 0);
  assert_int_equal(info.block.dim, 24);
  assert_int_equal(info.block.heads, 3);
  assert_int_equal(info.block.dim_head, 8);
  assert_int_equal(info.block.ff_mult, 4);
  assert_int_equal(info.block.qkv_bias, 1);
  assert_int_equal(info.block.layout, M2PT_PRE_NORM);
  assert_true(info.block.eps == 1e-6f);
  assert_non_null(m2pt_model_block(m, 1));
  assert_null(m2pt_model_block(m, 2));
  check_golden(ctx, m, DATA("timm_input.npy"), DATA("timm_expected_plain.npy"));
  m2pt_model_destroy(m);

  m2pt_model_options o = m2pt_model_options_default();
  o.heads = 3;
  o.final_norm = 0;
  o.prefix = "blocks";
  o.naming = M2PT_NAMING_TIMM;
  assert_ok(ctx, m2pt_model_load(ctx, DATA("timm_target.safetensors"), &o, &m));
  check_golden(ctx, m, DATA("timm_input.npy"), DATA("timm_expected_plain_nonorm.npy"));
  m2pt_model_destroy(m);
}

/* One sequence as [N][dim] gives the rows of that sequence in a batch. */
static void two_dimensional_input(void **state)
{
  m2pt_context *ctx = *state;
  m2pt_model *m = load(ctx, DATA("timm_target.safetensors"), 3);
  npy x = load_npy(DATA("timm_input.npy"));
  float *batch = run(ctx, m, &x);
  npy one = x;
  one.ndim = 2;
  one.shape[0] = x.shape[1];
  one.shape[1] = x.shape[2];
  one.numel = x.shape[1] * x.shape[2];
  one.data = x.data + one.numel; /* the second sequence */
  float *single = run(ctx, m, &one);
  /* Not bit for bit: a BLAS may block M = 5 and M = 10 differently. */
  double *ref = test_alloc(one.numel * sizeof *ref);
  for (size_t i = 0; i < one.numel; i++)
    ref[i] = batch[one.numel + i];
  test_assert_close(single, ref, one.numel, 1e-5, "[N][dim] against its batch row");
  free(ref);
  free(single);
  free(batch);
  m2pt_free(x.data);
  m2pt_model_destroy(m);
}

static void timm_m2pt_checkpoint(void **state)
{
  m2pt_context *ctx = *state;
  m2pt_model *m = load(ctx, DATA("timm_m2pt.safetensors"), 3);
  m2pt_model_info info;
  assert_ok(ctx, m2pt_model_get_info(m, &info));
  assert_int_equal(info.pathways, 8);
  /* λ as stored. */
  m2pt_safetensors *st;
  assert_ok(NULL, m2pt_safetensors_open(DATA("timm_m2pt.safetensors"), &st));
  size_t index;
  float stored, got;
  assert_ok(NULL, m2pt_safetensors_find(st, "blocks.1.mlp.fc2.cross_modal_scale", &index));
  assert_ok(NULL, m2pt_safetensors_read_f32(st, index, &stored, 1));
  m2pt_safetensors_close(st);
  assert_ok(ctx, m2pt_model_get_scale(m, 1, "mlp.fc2", &got));
  assert_true(got == stored && stored != 0.0f);

  npy x = load_npy(DATA("timm_input.npy"));
  float *unmerged = run(ctx, m, &x);
  assert_matches(unmerged, DATA("timm_expected_m2pt.npy"), "M2PT checkpoint, unmerged");
  assert_ok(ctx, m2pt_model_merge(m));
  assert_ok(ctx, m2pt_model_get_info(m, &info));
  assert_int_equal(info.pathways, 0);
  assert_int_equal(m2pt_model_has_pathway(m, 0, "attn.qkv"), 0);
  assert_status(ctx, m2pt_model_get_scale(m, 0, "attn.qkv", &got), M2PT_ERR_INVALID_STATE);
  float *merged = run(ctx, m, &x);
  /* The merged weights are the unmerged forward's effective weights. */
  assert_memory_equal(merged, unmerged, x.numel * sizeof(float));
  assert_ok(ctx, m2pt_model_merge(m)); /* nothing left: a no-op */
  free(merged);
  free(unmerged);
  m2pt_free(x.data);
  m2pt_model_destroy(m);
}

static void timm_reparameterize(void **state)
{
  m2pt_context *ctx = *state;
  m2pt_model *m = load(ctx, DATA("timm_target.safetensors"), 3);
  assert_ok(ctx, m2pt_model_add_pathways(m, DATA("timm_aux.safetensors"), NULL, 0, 0.25f));
  float got;
  assert_ok(ctx, m2pt_model_get_scale(m, 1, "attn.proj", &got));
  assert_true(got == 0.25f);
  check_golden(ctx, m, DATA("timm_input.npy"), DATA("timm_expected_aux025.npy"));
  /* λ per layer moves the output; back to 0.25 restores it exactly. */
  assert_ok(ctx, m2pt_model_set_scale(m, 0, "mlp.fc1", 0.0f));
  assert_ok(ctx, m2pt_model_set_scale(m, 0, "mlp.fc1", 0.25f));
  check_golden(ctx, m, DATA("timm_input.npy"), DATA("timm_expected_aux025.npy"));
  m2pt_model_destroy(m);

  m = load(ctx, DATA("timm_target.safetensors"), 3);
  const char *layers[] = {"attn.qkv", "mlp.fc1"};
  assert_ok(ctx, m2pt_model_add_pathways(m, DATA("timm_aux.safetensors"), layers, 2, 0.5f));
  assert_int_equal(m2pt_model_has_pathway(m, 1, "attn.qkv"), 1);
  assert_int_equal(m2pt_model_has_pathway(m, 1, "attn.proj"), 0);
  assert_status(ctx, m2pt_model_set_scale(m, 0, "attn.proj", 1.0f), M2PT_ERR_INVALID_STATE);
  check_golden(ctx, m, DATA("timm_input.npy"), DATA("timm_expected_aux_qkv_fc1.npy"));
  /* The same layer twice is refused and changes nothing. */
  assert_status(ctx, m2pt_model_add_pathways(m, DATA("timm_aux.safetensors"), layers + 1, 1,
                                               1.0f),
                M2PT_ERR_INVALID_STATE);
  assert_non_null(strstr(m2pt_last_error(ctx), "blocks.0.mlp.fc1"));
  check_golden(ctx, m, DATA("timm_input.npy"), DATA("timm_expected_aux_qkv_fc1.npy"));
  m2pt_model_destroy(m);
}

static void bert(void **state)
{
  m2pt_context *ctx = *state;
  m2pt_model *m = load(ctx, DATA("bert_target.safetensors"), 2);
  m2pt_model_info info;
  assert_ok(ctx, m2pt_model_get_info(m, &info));
  assert_int_equal(info.naming, M2PT_NAMING_BERT);
  assert_string_equal(info.prefix, "encoder.layer");
  assert_int_equal(info.block.layout, M2PT_POST_NORM);
  assert_true(info.block.eps == 1e-12f);
  assert_int_equal(info.block.dim_head, 12);
  assert_int_equal(info.final_norm, 0);
  check_golden(ctx, m, DATA("bert_input.npy"), DATA("bert_expected_plain.npy"));
  assert_ok(ctx, m2pt_model_add_pathways(m, DATA("bert_aux.safetensors"), NULL, 0, 0.3f));
  check_golden(ctx, m, DATA("bert_input.npy"), DATA("bert_expected_aux03.npy"));
  float got;
  assert_ok(ctx, m2pt_model_get_scale(m, 1, "attention.self.key", &got));
  assert_true(got == 0.3f);
  assert_ok(ctx, m2pt_model_get_scale(m, 1, "intermediate.dense", &got));
  m2pt_model_destroy(m);

  m = load(ctx, DATA("bert_m2pt.safetensors"), 2);
  assert_ok(ctx, m2pt_model_get_info(m, &info));
  assert_int_equal(info.pathways, 8);
  check_golden(ctx, m, DATA("bert_input.npy"), DATA("bert_expected_m2pt.npy"));
  m2pt_model_destroy(m);
}

/* ---- saving ---- */

/* Tensor `name` of an open file as raw bytes. */
static void raw(const m2pt_safetensors *st, const char *name, const void **data, size_t *n,
                m2pt_safetensors_info *info)
{
  size_t index;
  assert_ok(NULL, m2pt_safetensors_find(st, name, &index));
  assert_ok(NULL, m2pt_safetensors_raw(st, index, data, n));
  assert_ok(NULL, m2pt_safetensors_info_at(st, index, info));
}

static float *read_all(const m2pt_safetensors *st, const char *name, size_t *numel)
{
  size_t index;
  m2pt_safetensors_info info;
  assert_ok(NULL, m2pt_safetensors_find(st, name, &index));
  assert_ok(NULL, m2pt_safetensors_info_at(st, index, &info));
  float *v = test_alloc(info.numel * sizeof *v + 1);
  assert_ok(NULL, m2pt_safetensors_read_f32(st, index, v, info.numel));
  *numel = info.numel;
  return v;
}

/* A merged save has exactly the target's keys; tensors the merge does not
 * touch are the target's bytes, dtype included; a merged weight is
 * fmaf(λ, W_aux, W) of the M2PT checkpoint's tensors. */
static void save_merged(void **state)
{
  m2pt_context *ctx = *state;
  m2pt_model *m = load(ctx, DATA("timm_m2pt.safetensors"), 0);
  assert_ok(ctx, m2pt_model_merge(m));
  const char *out = test_tmp_path("merged.safetensors");
  assert_ok(ctx, m2pt_model_save(m, out));
  m2pt_model_destroy(m);

  m2pt_safetensors *merged, *target, *m2pt;
  assert_ok(NULL, m2pt_safetensors_open(out, &merged));
  assert_ok(NULL, m2pt_safetensors_open(DATA("timm_target.safetensors"), &target));
  assert_ok(NULL, m2pt_safetensors_open(DATA("timm_m2pt.safetensors"), &m2pt));
  assert_int_equal(m2pt_safetensors_count(merged), m2pt_safetensors_count(target));
  const char *value;
  assert_ok(NULL, m2pt_safetensors_metadata(merged, "format", &value));
  assert_string_equal(value, "pt");
  for (size_t i = 0; i < m2pt_safetensors_count(target); i++) {
    m2pt_safetensors_info ti, mi;
    assert_ok(NULL, m2pt_safetensors_info_at(target, i, &ti));
    const void *td, *md;
    size_t tn, mn;
    raw(target, ti.name, &td, &tn, &ti);
    raw(merged, ti.name, &md, &mn, &mi);
    const size_t len = strlen(ti.name);
    const int linear_weight = len > 7 && !strcmp(ti.name + len - 7, ".weight") &&
                              (strstr(ti.name, ".attn.") || strstr(ti.name, ".mlp."));
    if (!linear_weight) {
      assert_int_equal(mi.dtype, ti.dtype);
      assert_int_equal(mn, tn);
      assert_memory_equal(md, td, tn);
      continue;
    }
    char aux_name[256], scale_name[256];
    snprintf(aux_name, sizeof aux_name, "%.*saux_weight", (int)(len - 6), ti.name);
    snprintf(scale_name, sizeof scale_name, "%.*scross_modal_scale", (int)(len - 6), ti.name);
    size_t n, na, ns;
    float *w = read_all(m2pt, ti.name, &n);
    float *aux = read_all(m2pt, aux_name, &na);
    float *scale = read_all(m2pt, scale_name, &ns);
    float *got = read_all(merged, ti.name, &n);
    assert_int_equal(na, n);
    assert_int_equal(ns, 1);
    for (size_t k = 0; k < n; k++)
      if (got[k] != fmaf(scale[0], aux[k], w[k]))
        fail_msg("%s[%zu] = %.9g, fmaf(λ, aux, w) = %.9g", ti.name, k, (double)got[k],
                 (double)fmaf(scale[0], aux[k], w[k]));
    free(w);
    free(aux);
    free(scale);
    free(got);
  }
  m2pt_safetensors_close(merged);
  m2pt_safetensors_close(target);
  m2pt_safetensors_close(m2pt);
}

/* An unmerged save in the paper's naming loads back as the same model; BERT's
 * q, k and v come back split. */
static void save_round_trip(void **state)
{
  m2pt_context *ctx = *state;
  static const struct {
    const char *target, *aux, *input, *golden, *probe;
    size_t heads;
  } cases[] = {
      {DATA("timm_target.safetensors"), DATA("timm_aux.safetensors"), DATA("timm_input.npy"),
       DATA("timm_expected_aux025.npy"), "blocks.1.mlp.fc2.cross_modal_scale", 3},
      {DATA("bert_target.safetensors"), DATA("bert_aux.safetensors"), DATA("bert_input.npy"),
       DATA("bert_expected_aux03.npy"), "encoder.layer.1.attention.self.value.aux_weight", 2},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    m2pt_model *m = load(ctx, cases[c].target, cases[c].heads);
    const float scale = c == 0 ? 0.25f : 0.3f;
    assert_ok(ctx, m2pt_model_add_pathways(m, cases[c].aux, NULL, 0, scale));
    const char *out = test_tmp_path("reparam.safetensors");
    assert_ok(ctx, m2pt_model_save(m, out));
    m2pt_model_destroy(m);

    m2pt_safetensors *st;
    assert_ok(NULL, m2pt_safetensors_open(out, &st));
    size_t index;
    assert_ok(NULL, m2pt_safetensors_find(st, cases[c].probe, &index));
    m2pt_safetensors_close(st);
    m = load(ctx, out, cases[c].heads);
    m2pt_model_info info;
    assert_ok(ctx, m2pt_model_get_info(m, &info));
    assert_int_equal(info.pathways, 8);
    check_golden(ctx, m, cases[c].input, cases[c].golden);
    m2pt_model_destroy(m);
  }
}

/* f32 bits, and the binary16 of a value known to be an exact f16 normal. */
static uint32_t bits_of(float f)
{
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static uint16_t exact_f16(float f)
{
  const uint32_t u = bits_of(f);
  if ((u & 0x7FFFFFFFu) == 0)
    return (uint16_t)(u >> 16);
  const uint32_t exp = (u >> 23) & 0xFFu;
  assert_true(exp >= 113 && exp <= 142 && (u & 0x1FFFu) == 0);
  return (uint16_t)(((u >> 16) & 0x8000u) | ((exp - 112u) << 10) | ((u >> 13) & 0x3FFu));
}

/* The M2PT checkpoint with weights (and aux weights) in BF16 and LayerNorm
 * parameters in F16, values cut to what those hold. */
static void write_half_checkpoint(const char *src, const char *dst, uint16_t *store)
{
  m2pt_safetensors *st;
  m2pt_safetensors_writer *w;
  assert_ok(NULL, m2pt_safetensors_open(src, &st));
  assert_ok(NULL, m2pt_safetensors_writer_create(dst, &w));
  size_t used = 0;
  for (size_t i = 0; i < m2pt_safetensors_count(st); i++) {
    m2pt_safetensors_info info;
    const void *data;
    size_t n;
    assert_ok(NULL, m2pt_safetensors_info_at(st, i, &info));
    assert_ok(NULL, m2pt_safetensors_raw(st, i, &data, &n));
    const size_t len = strlen(info.name);
    const int weight = len > 7 && !strcmp(info.name + len - 7, ".weight");
    const int norm = strstr(info.name, "norm") != NULL;
    if (info.dtype != M2PT_DTYPE_F32 || !(weight || norm)) {
      assert_ok(NULL, m2pt_safetensors_writer_add(w, info.name, info.dtype, info.ndim,
                                                  info.shape, data, n));
      continue;
    }
    float *v = test_alloc(info.numel * sizeof *v);
    assert_ok(NULL, m2pt_safetensors_read_f32(st, i, v, info.numel));
    assert_true(used + info.numel <= 32768);
    uint16_t *h = store + used;
    for (size_t k = 0; k < info.numel; k++)
      h[k] = norm ? exact_f16(roundf(v[k] * 1024.0f) / 1024.0f)
                  : (uint16_t)(bits_of(v[k]) >> 16);
    used += info.numel;
    free(v);
    assert_ok(NULL, m2pt_safetensors_writer_add(w, info.name,
                                                norm ? M2PT_DTYPE_F16 : M2PT_DTYPE_BF16,
                                                info.ndim, info.shape, h, info.numel * 2));
  }
  assert_ok(NULL, m2pt_safetensors_writer_finish(w));
  m2pt_safetensors_writer_destroy(w);
  m2pt_safetensors_close(st);
}

/* Half-precision checkpoints: an unmerged save gives back every tensor with
 * its dtype and bytes; a merged one writes merged weights as F32 (they no
 * longer fit BF16) and keeps the F16 norms. */
static void save_half_precision(void **state)
{
  m2pt_context *ctx = *state;
  uint16_t *store = test_alloc(32768 * sizeof *store);
  const char *half = test_tmp_path("half.safetensors");
  const char *out = test_tmp_path("half_out.safetensors");
  write_half_checkpoint(DATA("timm_m2pt.safetensors"), half, store);
  m2pt_model *m = load(ctx, half, 3);
  assert_ok(ctx, m2pt_model_save(m, out));
  m2pt_safetensors *a, *b;
  assert_ok(NULL, m2pt_safetensors_open(half, &a));
  assert_ok(NULL, m2pt_safetensors_open(out, &b));
  assert_int_equal(m2pt_safetensors_count(a), m2pt_safetensors_count(b));
  for (size_t i = 0; i < m2pt_safetensors_count(a); i++) {
    m2pt_safetensors_info ia, ib;
    const void *da, *db;
    size_t na, nb;
    assert_ok(NULL, m2pt_safetensors_info_at(a, i, &ia));
    raw(b, ia.name, &db, &nb, &ib);
    raw(a, ia.name, &da, &na, &ia);
    assert_int_equal(ib.dtype, ia.dtype);
    assert_int_equal(nb, na);
    assert_memory_equal(db, da, na);
  }
  m2pt_safetensors_close(b);

  assert_ok(ctx, m2pt_model_merge(m));
  assert_ok(ctx, m2pt_model_save(m, out));
  m2pt_model_destroy(m);
  assert_ok(NULL, m2pt_safetensors_open(out, &b));
  const void *d;
  size_t n, numel, na;
  m2pt_safetensors_info info;
  raw(b, "blocks.1.norm2.weight", &d, &n, &info);
  assert_int_equal(info.dtype, M2PT_DTYPE_F16);
  raw(b, "blocks.1.mlp.fc1.weight", &d, &n, &info);
  assert_int_equal(info.dtype, M2PT_DTYPE_F32);
  float *got = read_all(b, "blocks.1.mlp.fc1.weight", &numel);
  float *w = read_all(a, "blocks.1.mlp.fc1.weight", &numel);
  float *aux = read_all(a, "blocks.1.mlp.fc1.aux_weight", &na);
  float *scale = read_all(a, "blocks.1.mlp.fc1.cross_modal_scale", &na);
  for (size_t k = 0; k < numel; k++)
    assert_true(bits_of(got[k]) == bits_of(fmaf(scale[0], aux[k], w[k])));
  size_t index;
  assert_status(NULL, m2pt_safetensors_find(b, "blocks.1.mlp.fc1.aux_weight", &index),
                M2PT_ERR_NOT_FOUND);
  free(got);
  free(w);
  free(aux);
  free(scale);
  m2pt_safetensors_close(a);
  m2pt_safetensors_close(b);
  free(store);
}

/* ---- malformed checkpoints ---- */

/* Copies `src` to `dst`, dropping tensor `drop` and adding (or, for a name
 * that exists, replacing) `add` with `count` F32 values of shape `shape`. */
static void rewrite(const char *src, const char *dst, const char *drop, const char *add,
                    size_t ndim, const size_t *shape, const float *values, size_t count)
{
  m2pt_safetensors *st;
  m2pt_safetensors_writer *w;
  assert_ok(NULL, m2pt_safetensors_open(src, &st));
  assert_ok(NULL, m2pt_safetensors_writer_create(dst, &w));
  for (size_t i = 0; i < m2pt_safetensors_count(st); i++) {
    m2pt_safetensors_info info;
    assert_ok(NULL, m2pt_safetensors_info_at(st, i, &info));
    if ((drop && !strcmp(info.name, drop)) || (add && !strcmp(info.name, add)))
      continue;
    const void *data;
    size_t n;
    assert_ok(NULL, m2pt_safetensors_raw(st, i, &data, &n));
    assert_ok(NULL, m2pt_safetensors_writer_add(w, info.name, info.dtype, info.ndim, info.shape,
                                                data, n));
  }
  if (add)
    assert_ok(NULL, m2pt_safetensors_writer_add(w, add, M2PT_DTYPE_F32, ndim, shape, values,
                                                count * sizeof(float)));
  assert_ok(NULL, m2pt_safetensors_writer_finish(w));
  m2pt_safetensors_writer_destroy(w);
  m2pt_safetensors_close(st);
}

/* The checkpoint truncated under a loaded model: the model still runs (its
 * weights are on the device), and save, which copies the tensors the model
 * does not hold from the file, fails with M2PT_ERR_IO naming the file instead
 * of faulting (a mapping whose file shrinks raises SIGBUS). */
static void save_after_checkpoint_shrank(void **state)
{
  m2pt_context *ctx = *state;
  const char *src = test_tmp_path("shrinking.safetensors");
  const char *out = test_tmp_path("from_shrunk.safetensors");
  rewrite(DATA("timm_m2pt.safetensors"), src, NULL, NULL, 0, NULL, NULL, 0);
  m2pt_model *m = load(ctx, src, 3);
  assert_int_equal(truncate(src, 4096), 0);
  assert_status(ctx, m2pt_model_save(m, out), M2PT_ERR_IO);
  if (!strstr(m2pt_last_error(ctx), src))
    fail_msg("message \"%s\" does not name %s", m2pt_last_error(ctx), src);
  assert_int_equal(access(out, F_OK), -1);
  check_golden(ctx, m, DATA("timm_input.npy"), DATA("timm_expected_m2pt.npy"));
  m2pt_model_destroy(m);
}

static void expect_load(m2pt_context *ctx, const char *path, size_t heads, m2pt_status want,
                        const char *needle)
{
  m2pt_model_options o = m2pt_model_options_default();
  o.heads = heads;
  m2pt_model *m = (m2pt_model *)&o; /* must come back NULL */
  assert_status(ctx, m2pt_model_load(ctx, path, &o, &m), want);
  assert_null(m);
  if (needle && !strstr(m2pt_last_error(ctx), needle))
    fail_msg("message \"%s\" does not mention \"%s\"", m2pt_last_error(ctx), needle);
}

static void bad_checkpoints(void **state)
{
  m2pt_context *ctx = *state;
  const char *target = DATA("timm_target.safetensors"), *bad = test_tmp_path("bad.safetensors");
  float values[96 * 24];
  memset(values, 0, sizeof values);

  rewrite(target, bad, "blocks.1.mlp.fc2.bias", NULL, 0, NULL, NULL, 0);
  expect_load(ctx, bad, 3, M2PT_ERR_FORMAT, "blocks.1.mlp.fc2.bias");
  const size_t transposed[2] = {24, 96};
  rewrite(target, bad, NULL, "blocks.1.mlp.fc1.weight", 2, transposed, values, 96 * 24);
  expect_load(ctx, bad, 3, M2PT_ERR_FORMAT, "blocks.1.mlp.fc1.weight");
  const size_t one = 1;
  rewrite(target, bad, NULL, "blocks.0.ls1.gamma", 1, &one, values, 1);
  expect_load(ctx, bad, 3, M2PT_ERR_UNSUPPORTED, "blocks.0.ls1.gamma");
  rewrite(target, bad, NULL, "blocks.01.norm1.weight", 1, transposed, values, 24);
  expect_load(ctx, bad, 3, M2PT_ERR_UNSUPPORTED, "blocks.01.norm1.weight");
  rewrite(target, bad, "norm.bias", NULL, 0, NULL, NULL, 0);
  expect_load(ctx, bad, 3, M2PT_ERR_FORMAT, "norm.bias");
  /* A gap in the numbering: block 1 lost its qkv, so "block 1" stops the stack. */
  rewrite(target, bad, "blocks.1.attn.qkv.weight", NULL, 0, NULL, NULL, 0);
  expect_load(ctx, bad, 3, M2PT_ERR_FORMAT, "blocks.1.");
  expect_load(ctx, DATA("timm_input.npy"), 3, M2PT_ERR_FORMAT, "timm_input.npy");
  expect_load(ctx, DATA("missing.safetensors"), 3, M2PT_ERR_IO, "missing.safetensors");
  expect_load(ctx, target, 5, M2PT_ERR_INVALID_ARGUMENT, "heads");

  /* Pathway tensors: a non-finite λ, a partial pathway, q/k/v λ that differ. */
  const char *m2pt = DATA("timm_m2pt.safetensors");
  const float nan = NAN;
  rewrite(m2pt, bad, NULL, "blocks.0.attn.proj.cross_modal_scale", 1, &one, &nan, 1);
  expect_load(ctx, bad, 3, M2PT_ERR_FORMAT, "blocks.0.attn.proj.cross_modal_scale");
  rewrite(m2pt, bad, "blocks.1.mlp.fc1.aux_weight", NULL, 0, NULL, NULL, 0);
  expect_load(ctx, bad, 3, M2PT_ERR_FORMAT, "blocks.1.mlp.fc1.aux_weight");
  const float other = 0.125f;
  rewrite(DATA("bert_m2pt.safetensors"), bad, NULL,
          "encoder.layer.0.attention.self.key.cross_modal_scale", 1, &one, &other, 1);
  expect_load(ctx, bad, 2, M2PT_ERR_FORMAT, "attention.self.key.cross_modal_scale");

  /* Truncated: every prefix of a real file is rejected, none crashes. */
  FILE *f = fopen(target, "rb");
  assert_non_null(f);
  unsigned char buf[4096];
  const size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  for (size_t len = 0; len < n; len += 97) {
    FILE *g = fopen(bad, "wb");
    assert_non_null(g);
    assert_int_equal(fwrite(buf, 1, len, g), len);
    fclose(g);
    expect_load(ctx, bad, 3, M2PT_ERR_FORMAT, "bad.safetensors");
  }
}

static void bad_reparameterize(void **state)
{
  m2pt_context *ctx = *state;
  m2pt_model *m = load(ctx, DATA("timm_target.safetensors"), 3);
  const char *aux = DATA("timm_aux.safetensors"), *bad = test_tmp_path("aux.safetensors");
  assert_status(ctx, m2pt_model_add_pathways(m, aux, NULL, 0, INFINITY),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_model_add_pathways(m, NULL, NULL, 0, 0.0f),
                M2PT_ERR_INVALID_ARGUMENT);
  const char *unknown[] = {"attn.qkv", "mlp.fc3"};
  assert_status(ctx, m2pt_model_add_pathways(m, aux, unknown, 2, 0.0f), M2PT_ERR_NOT_FOUND);
  assert_non_null(strstr(m2pt_last_error(ctx), "mlp.fc3"));
  /* A differently shaped aux layer names the layer and both shapes. */
  float values[48 * 24];
  memset(values, 0, sizeof values);
  const size_t small[2] = {48, 24};
  rewrite(aux, bad, NULL, "blocks.1.attn.qkv.weight", 2, small, values, 48 * 24);
  assert_status(ctx, m2pt_model_add_pathways(m, bad, NULL, 0, 0.5f), M2PT_ERR_SHAPE);
  assert_non_null(strstr(m2pt_last_error(ctx), "blocks.1.attn.qkv"));
  assert_non_null(strstr(m2pt_last_error(ctx), "[72][24]"));
  assert_non_null(strstr(m2pt_last_error(ctx), "[48][24]"));
  /* Fewer blocks in the aux model. */
  rewrite(aux, bad, "blocks.1.attn.qkv.weight", NULL, 0, NULL, NULL, 0);
  assert_status(ctx, m2pt_model_add_pathways(m, bad, NULL, 0, 0.5f), M2PT_ERR_SHAPE);
  assert_non_null(strstr(m2pt_last_error(ctx), "2 blocks in the target"));
  /* None of that touched the model. */
  m2pt_model_info info;
  assert_ok(ctx, m2pt_model_get_info(m, &info));
  assert_int_equal(info.pathways, 0);
  check_golden(ctx, m, DATA("timm_input.npy"), DATA("timm_expected_plain.npy"));
  /* The aux model may use the other naming when the shapes agree (BERT's
   * q, k, v rows stack into the timm qkv). */
  assert_ok(ctx, m2pt_model_add_pathways(m, DATA("bert_aux.safetensors"), NULL, 0, 0.5f));
  assert_ok(ctx, m2pt_model_get_info(m, &info));
  assert_int_equal(info.pathways, 8);
  m2pt_model_destroy(m);
}

static void bad_arguments(void **state)
{
  m2pt_context *ctx = *state;
  m2pt_model *m = NULL;
  assert_status(NULL, m2pt_model_load(NULL, DATA("timm_target.safetensors"), NULL, &m),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_model_load(ctx, NULL, NULL, &m), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_model_load(ctx, DATA("timm_target.safetensors"), NULL, NULL),
                M2PT_ERR_INVALID_ARGUMENT);
  m2pt_model_options o = m2pt_model_options_default();
  o.eps = NAN;
  assert_status(ctx, m2pt_model_load(ctx, DATA("timm_target.safetensors"), &o, &m),
                M2PT_ERR_INVALID_ARGUMENT);
  o = m2pt_model_options_default();
  o.naming = M2PT_NAMING_BERT;
  assert_status(ctx, m2pt_model_load(ctx, DATA("timm_target.safetensors"), &o, &m),
                M2PT_ERR_NOT_FOUND);
  o = m2pt_model_options_default();
  o.prefix = "layers";
  assert_status(ctx, m2pt_model_load(ctx, DATA("timm_target.safetensors"), &o, &m),
                M2PT_ERR_NOT_FOUND);
  assert_null(m);
  m2pt_model_destroy(NULL);
  m2pt_model_info info;
  assert_status(NULL, m2pt_model_get_info(NULL, &info), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_model_merge(NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_model_save(NULL, "x"), M2PT_ERR_INVALID_ARGUMENT);

  /* Without heads: merge and save work, forward does not. */
  m = load(ctx, DATA("timm_m2pt.safetensors"), 0);
  assert_ok(ctx, m2pt_model_get_info(m, &info));
  assert_int_equal(info.block.heads, 0);
  npy x = load_npy(DATA("timm_input.npy"));
  m2pt_tensor *tx = test_tensor(ctx, x.ndim, x.shape, x.data);
  m2pt_tensor *ty = test_tensor(ctx, x.ndim, x.shape, NULL);
  assert_status(ctx, m2pt_model_forward(m, tx, NULL, ty), M2PT_ERR_INVALID_STATE);
  assert_status(ctx, m2pt_model_set_scale(m, 0, "attn.qkv", NAN), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_model_set_scale(m, 2, "attn.qkv", 1.0f), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_model_set_scale(m, 0, "qkv", 1.0f), M2PT_ERR_NOT_FOUND);
  assert_non_null(strstr(m2pt_last_error(ctx), "\"qkv\""));
  float got_scale;
  assert_status(ctx, m2pt_model_get_scale(m, 0, "mlp.fc3", &got_scale), M2PT_ERR_NOT_FOUND);
  assert_status(ctx, m2pt_model_set_scale(m, 0, NULL, 1.0f), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_model_save(m, "/nonexistent-dir/x.safetensors"), M2PT_ERR_IO);
  m2pt_model_destroy(m);

  m = load(ctx, DATA("timm_target.safetensors"), 3);
  assert_status(ctx, m2pt_model_forward(m, tx, NULL, tx), M2PT_ERR_INVALID_ARGUMENT);
  const size_t wrong[3] = {2, 5, 12};
  m2pt_tensor *tw = test_tensor(ctx, 3, wrong, NULL);
  assert_status(ctx, m2pt_model_forward(m, tw, NULL, ty), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_model_forward(m, tx, NULL, tw), M2PT_ERR_SHAPE);
  const size_t mask_shape[2] = {2, 4};
  m2pt_tensor *tm = test_tensor(ctx, 2, mask_shape, NULL);
  assert_status(ctx, m2pt_model_forward(m, tx, tm, ty), M2PT_ERR_SHAPE);
  /* Still usable. */
  check_golden(ctx, m, DATA("timm_input.npy"), DATA("timm_expected_plain.npy"));
  m2pt_tensor_destroy(tm);
  m2pt_tensor_destroy(tw);
  m2pt_tensor_destroy(tx);
  m2pt_tensor_destroy(ty);
  m2pt_free(x.data);
  m2pt_model_destroy(m);
}

int main(int argc, char **argv)
{
  if (test_enter_data_dir(argc, argv, M2PT_MODEL_DATA) != 0)
    return 1;
  /* Forwards against the goldens, on every configuration (the model's blocks use
   * M2PT_ATTENTION_AUTO, so the attention axis too). */
  const struct CMUnitTest forward[] = {
      cmocka_unit_test(timm_plain),
      cmocka_unit_test(two_dimensional_input),
      cmocka_unit_test(timm_m2pt_checkpoint),
      cmocka_unit_test(timm_reparameterize),
      cmocka_unit_test(bert),
  };
  /* Saving and loading: what they compare (files, outputs before and after a
   * round trip) does not depend on the kernels, so once. */
  const struct CMUnitTest checkpoints[] = {
      cmocka_unit_test(save_merged),
      cmocka_unit_test(save_round_trip),
      cmocka_unit_test(save_half_precision),
      cmocka_unit_test(save_after_checkpoint_shrank),
      cmocka_unit_test(bad_checkpoints),
      cmocka_unit_test(bad_reparameterize),
      cmocka_unit_test(bad_arguments),
  };
  const int failed =
      test_run_matrix("model", TEST_AXES_ALL, forward, test_setup_tmpdir_context,
                      test_teardown_tmpdir_context);
  return (failed + test_run_matrix("model checkpoints", 0, checkpoints,
                                   test_setup_tmpdir_context, test_teardown_tmpdir_context)) != 0;
}
