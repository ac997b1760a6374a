/* The M2PT block and FFN: against the double reference (pre- and post-norm,
 * heads·dim_head ≠ dim, masks, B > 1), against PyTorch's golden output,
 * merged vs unmerged, λ = 0 vs a plain block, workspace reuse, bad inputs. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "data/block_golden.h"
#include "reference.h"
#include "test_util.h"

/* Host copies of every parameter of one block, named as in checkpoints. */
typedef struct host_block {
  m2pt_block_config cfg;
  size_t hd, hidden;
  float *norm1_w, *norm1_b, *norm2_w, *norm2_b;
  float *qkv_w, *qkv_b, *qkv_aux, *proj_w, *proj_b, *proj_aux;
  float *fc1_w, *fc1_b, *fc1_aux, *fc2_w, *fc2_b, *fc2_aux;
  float scales[4]; /* qkv, proj, fc1, fc2 */
} host_block;

static float *random_array(size_t n, uint64_t seed, float scale, float offset)
{
  float *a = test_alloc(n * sizeof *a);
  test_fill(a, n, seed);
  for (size_t i = 0; i < n; i++)
    a[i] = offset + scale * a[i];
  return a;
}

static host_block make_host_block(const m2pt_block_config *cfg, uint64_t seed)
{
  host_block h;
  memset(&h, 0, sizeof h);
  h.cfg = *cfg;
  h.hd = cfg->heads * cfg->dim_head;
  h.hidden = cfg->ff_mult * cfg->dim;
  const size_t d = cfg->dim, hd = h.hd, hid = h.hidden;
  h.norm1_w = random_array(d, seed + 1, 0.2f, 1.0f);
  h.norm1_b = random_array(d, seed + 2, 0.1f, 0.0f);
  h.norm2_w = random_array(d, seed + 3, 0.2f, 1.0f);
  h.norm2_b = random_array(d, seed + 4, 0.1f, 0.0f);
  h.qkv_w = random_array(3 * hd * d, seed + 5, 0.3f, 0.0f);
  h.qkv_b = cfg->qkv_bias ? random_array(3 * hd, seed + 6, 0.1f, 0.0f) : NULL;
  h.qkv_aux = random_array(3 * hd * d, seed + 7, 0.3f, 0.0f);
  h.proj_w = random_array(d * hd, seed + 8, 0.3f, 0.0f);
  h.proj_b = random_array(d, seed + 9, 0.1f, 0.0f);
  h.proj_aux = random_array(d * hd, seed + 10, 0.3f, 0.0f);
  h.fc1_w = random_array(hid * d, seed + 11, 0.3f, 0.0f);
  h.fc1_b = random_array(hid, seed + 12, 0.1f, 0.0f);
  h.fc1_aux = random_array(hid * d, seed + 13, 0.3f, 0.0f);
  h.fc2_w = random_array(d * hid, seed + 14, 0.3f, 0.0f);
  h.fc2_b = random_array(d, seed + 15, 0.1f, 0.0f);
  h.fc2_aux = random_array(d * hid, seed + 16, 0.3f, 0.0f);
  const float scales[4] = {0.3f, -0.7f, 0.45f, 1.1f};
  memcpy(h.scales, scales, sizeof scales);
  return h;
}

static void free_host_block(host_block *h)
{
  float *all[] = {h->norm1_w, h->norm1_b, h->norm2_w, h->norm2_b, h->qkv_w, h->qkv_b,
                  h->qkv_aux, h->proj_w,  h->proj_b,  h->proj_aux, h->fc1_w, h->fc1_b,
                  h->fc1_aux, h->fc2_w,   h->fc2_b,   h->fc2_aux};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    free(all[i]);
}

/* The reference's view: scales of a plain block are unused. */
static ref_block_params ref_params(const host_block *h, int with_pathway)
{
  ref_block_params p;
  memset(&p, 0, sizeof p);
  p.dim = h->cfg.dim;
  p.heads = h->cfg.heads;
  p.dim_head = h->cfg.dim_head;
  p.hidden = h->hidden;
  p.eps = h->cfg.eps;
  p.post_norm = h->cfg.layout == M2PT_POST_NORM;
  p.gelu_tanh = h->cfg.gelu == M2PT_GELU_TANH;
  p.norm1_w = h->norm1_w;
  p.norm1_b = h->norm1_b;
  p.norm2_w = h->norm2_w;
  p.norm2_b = h->norm2_b;
  p.qkv_w = h->qkv_w;
  p.qkv_b = h->qkv_b;
  p.proj_w = h->proj_w;
  p.proj_b = h->proj_b;
  p.fc1_w = h->fc1_w;
  p.fc1_b = h->fc1_b;
  p.fc2_w = h->fc2_w;
  p.fc2_b = h->fc2_b;
  if (with_pathway) {
    p.qkv_aux = h->qkv_aux;
    p.proj_aux = h->proj_aux;
    p.fc1_aux = h->fc1_aux;
    p.fc2_aux = h->fc2_aux;
    p.qkv_scale = h->scales[0];
    p.proj_scale = h->scales[1];
    p.fc1_scale = h->scales[2];
    p.fc2_scale = h->scales[3];
  }
  return p;
}

static void set(m2pt_context *ctx, m2pt_block *b, const char *name, const float *data,
                size_t count)
{
  assert_ok(ctx, m2pt_block_set(b, name, data, count));
}

/* A device block holding h's parameters (with the pathway when cfg.pathway). */
static m2pt_block *make_block(m2pt_context *ctx, const host_block *h)
{
  m2pt_block *b = NULL;
  assert_ok(ctx, m2pt_block_create(ctx, &h->cfg, &b));
  const size_t d = h->cfg.dim, hd = h->hd, hid = h->hidden;
  set(ctx, b, "norm1.weight", h->norm1_w, d);
  set(ctx, b, "norm1.bias", h->norm1_b, d);
  set(ctx, b, "norm2.weight", h->norm2_w, d);
  set(ctx, b, "norm2.bias", h->norm2_b, d);
  set(ctx, b, "attn.qkv.weight", h->qkv_w, 3 * hd * d);
  if (h->qkv_b)
    set(ctx, b, "attn.qkv.bias", h->qkv_b, 3 * hd);
  set(ctx, b, "attn.proj.weight", h->proj_w, d * hd);
  set(ctx, b, "attn.proj.bias", h->proj_b, d);
  set(ctx, b, "mlp.fc1.weight", h->fc1_w, hid * d);
  set(ctx, b, "mlp.fc1.bias", h->fc1_b, hid);
  set(ctx, b, "mlp.fc2.weight", h->fc2_w, d * hid);
  set(ctx, b, "mlp.fc2.bias", h->fc2_b, d);
  if (h->cfg.pathway) {
    set(ctx, b, "attn.qkv.aux_weight", h->qkv_aux, 3 * hd * d);
    set(ctx, b, "attn.proj.aux_weight", h->proj_aux, d * hd);
    set(ctx, b, "mlp.fc1.aux_weight", h->fc1_aux, hid * d);
    set(ctx, b, "mlp.fc2.aux_weight", h->fc2_aux, d * hid);
    set(ctx, b, "attn.qkv.cross_modal_scale", &h->scales[0], 1);
    set(ctx, b, "attn.proj.cross_modal_scale", &h->scales[1], 1);
    set(ctx, b, "mlp.fc1.cross_modal_scale", &h->scales[2], 1);
    set(ctx, b, "mlp.fc2.cross_modal_scale", &h->scales[3], 1);
  }
  return b;
}

/* Runs the block on x [batch][tokens][dim] with an optional mask. */
static float *run_block(m2pt_context *ctx, m2pt_block *b, const float *x, size_t batch,
                        size_t tokens, size_t dim, const float *mask)
{
  const size_t sx[3] = {batch, tokens, dim}, sm[2] = {batch, tokens};
  m2pt_tensor *tx = test_tensor(ctx, 3, sx, x), *ty = test_tensor(ctx, 3, sx, NULL);
  m2pt_tensor *tm = mask ? test_tensor(ctx, 2, sm, mask) : NULL;
  float *y = test_alloc(batch * tokens * dim * sizeof *y);
  assert_ok(ctx, m2pt_block_forward(b, tx, tm, ty));
  assert_ok(ctx, m2pt_tensor_read(ty, y, batch * tokens * dim));
  m2pt_tensor_destroy(tx);
  m2pt_tensor_destroy(ty);
  m2pt_tensor_destroy(tm);
  return y;
}

/* Batch row b pads its last b tokens (row 0 none). */
static float *padding_mask(size_t batch, size_t tokens)
{
  float *m = test_alloc(batch * tokens * sizeof *m);
  for (size_t b = 0; b < batch; b++)
    for (size_t t = 0; t < tokens; t++)
      m[b * tokens + t] = (t + b < tokens) ? 1.0f : 0.0f;
  return m;
}

static m2pt_block_config small_config(m2pt_block_layout layout)
{
  m2pt_block_config c = m2pt_block_config_vit(24, 2);
  c.dim_head = 16; /* heads·dim_head = 32 ≠ dim */
  c.ff_mult = 2;
  c.layout = layout;
  c.eps = layout == M2PT_POST_NORM ? 1e-12f : 1e-6f;
  return c;
}

static void check_block_against_reference(m2pt_context *ctx, m2pt_block_config cfg,
                                          size_t batch, size_t tokens, int masked)
{
  host_block h = make_host_block(&cfg, 40 + tokens);
  const size_t n = batch * tokens * cfg.dim;
  float *x = random_array(n, 7 + tokens, 1.0f, 0.0f);
  float *mask = masked ? padding_mask(batch, tokens) : NULL;
  double *ref = test_alloc(n * sizeof *ref);
  const ref_block_params rp = ref_params(&h, 1);
  ref_block(&rp, x, batch, tokens, mask, ref);
  const m2pt_attention_impl impls[2] = {M2PT_ATTENTION_GEMM, M2PT_ATTENTION_FUSED};
  for (int i = 0; i < 2; i++) {
    h.cfg.attention = impls[i];
    m2pt_block *b = make_block(ctx, &h);
    float *y = run_block(ctx, b, x, batch, tokens, cfg.dim, mask);
    test_assert_close(y, ref, n, 1e-4, i ? "block (fused attention)" : "block (GEMM attention)");
    /* Merged: the same function, and here the same bits (the merged weights
     * are the unmerged effective weights). */
    assert_ok(ctx, m2pt_block_merge(b));
    assert_true(m2pt_block_is_merged(b));
    float *ym = run_block(ctx, b, x, batch, tokens, cfg.dim, mask);
    assert_memory_equal(y, ym, n * sizeof *y);
    assert_ok(ctx, m2pt_block_merge(b)); /* a second merge changes nothing */
    /* The pathway is folded away: its parameters are refused. */
    float scale = 1.0f;
    assert_status(ctx, m2pt_block_set(b, "mlp.fc1.cross_modal_scale", &scale, 1),
                  M2PT_ERR_INVALID_STATE);
    assert_status(ctx, m2pt_block_get(b, "attn.proj.aux_weight", h.proj_aux, h.hd * cfg.dim),
                  M2PT_ERR_INVALID_STATE);
    free(ym);
    free(y);
    m2pt_block_destroy(b);
  }
  free(ref);
  free(x);
  free(mask);
  free_host_block(&h);
}

static void block_pre_norm(void **state)
{
  m2pt_context *ctx = *state;
  check_block_against_reference(ctx, small_config(M2PT_PRE_NORM), 2, 7, 1);
  check_block_against_reference(ctx, small_config(M2PT_PRE_NORM), 1, 1, 0);
  /* One token, batch row 1 fully padded: its attention output is zero. */
  check_block_against_reference(ctx, small_config(M2PT_PRE_NORM), 2, 1, 1);
  check_block_against_reference(ctx, small_config(M2PT_PRE_NORM), 3, 7, 0);
  if (!test_small())
    check_block_against_reference(ctx, small_config(M2PT_PRE_NORM), 1, 197, 0);
}

static void block_post_norm(void **state)
{
  m2pt_context *ctx = *state;
  check_block_against_reference(ctx, small_config(M2PT_POST_NORM), 2, 7, 1);
  check_block_against_reference(ctx, small_config(M2PT_POST_NORM), 1, 1, 0);
  m2pt_block_config tanh_cfg = small_config(M2PT_POST_NORM);
  tanh_cfg.gelu = M2PT_GELU_TANH;
  tanh_cfg.qkv_bias = 0;
  check_block_against_reference(ctx, tanh_cfg, 2, 5, 1);
}

/* λ = 0 everywhere is exactly the target model: a plain block. */
static void zero_scales_equal_plain_block(void **state)
{
  m2pt_context *ctx = *state;
  m2pt_block_config cfg = small_config(M2PT_PRE_NORM);
  host_block h = make_host_block(&cfg, 5);
  memset(h.scales, 0, sizeof h.scales);
  const size_t batch = 2, tokens = 5, n = batch * tokens * cfg.dim;
  float *x = random_array(n, 3, 1.0f, 0.0f);
  m2pt_block *with = make_block(ctx, &h);
  h.cfg.pathway = 0;
  m2pt_block *plain = make_block(ctx, &h);
  float *y1 = run_block(ctx, with, x, batch, tokens, cfg.dim, NULL);
  float *y0 = run_block(ctx, plain, x, batch, tokens, cfg.dim, NULL);
  double *ref = test_alloc(n * sizeof *ref);
  for (size_t i = 0; i < n; i++)
    ref[i] = y0[i];
  test_assert_close(y1, ref, n, 1e-6, "λ = 0 block vs plain block");
  /* A plain block has no pathway parameters. */
  assert_status(ctx, m2pt_block_set(plain, "attn.qkv.aux_weight", h.qkv_aux, 3 * h.hd * cfg.dim),
                M2PT_ERR_INVALID_STATE);
  assert_false(m2pt_block_is_merged(plain));
  free(ref);
  free(y0);
  free(y1);
  free(x);
  m2pt_block_destroy(with);
  m2pt_block_destroy(plain);
  free_host_block(&h);
}

static const float *golden_param(const golden_block_case *gc, const char *name, size_t *count)
{
  for (size_t i = 0; i < gc->param_count; i++)
    if (!strcmp(gc->params[i].name, name)) {
      *count = gc->params[i].count;
      return gc->params[i].data;
    }
  return NULL;
}

/* PyTorch's output for the paper's CrossModalReparamLinear in a timm-style
 * block (tools/make_block_golden.py). */
static void block_matches_pytorch_golden(void **state)
{
  m2pt_context *ctx = *state;
  for (size_t ci = 0; ci < GOLDEN_BLOCK_CASE_COUNT; ci++) {
    const golden_block_case *gc = &golden_block_cases[ci];
    m2pt_block_config cfg = m2pt_block_config_vit(gc->dim, gc->heads);
    cfg.dim_head = gc->dim_head;
    cfg.ff_mult = gc->ff_mult;
    cfg.eps = gc->eps;
    cfg.qkv_bias = gc->qkv_bias;
    cfg.layout = gc->post_norm ? M2PT_POST_NORM : M2PT_PRE_NORM;
    const size_t n = gc->batch * gc->tokens * gc->dim;
    double *ref = test_alloc(n * sizeof *ref);
    for (size_t i = 0; i < n; i++)
      ref[i] = gc->y[i];
    for (int impl = M2PT_ATTENTION_GEMM; impl <= M2PT_ATTENTION_FUSED; impl++) {
      cfg.attention = (m2pt_attention_impl)impl;
      m2pt_block *b = NULL;
      assert_ok(ctx, m2pt_block_create(ctx, &cfg, &b));
      for (size_t i = 0; i < gc->param_count; i++)
        set(ctx, b, gc->params[i].name, gc->params[i].data, gc->params[i].count);
      /* The block reads back what it was given, under the same names. */
      size_t count = 0;
      const float *w = golden_param(gc, "mlp.fc1.aux_weight", &count);
      assert_non_null(w);
      float *back = test_alloc(count * sizeof *back);
      assert_ok(ctx, m2pt_block_get(b, "mlp.fc1.aux_weight", back, count));
      assert_memory_equal(back, w, count * sizeof *back);
      free(back);
      float *y = run_block(ctx, b, gc->x, gc->batch, gc->tokens, gc->dim, gc->mask);
      test_assert_close(y, ref, n, 1e-4, gc->label);
      assert_ok(ctx, m2pt_block_merge(b));
      float *ym = run_block(ctx, b, gc->x, gc->batch, gc->tokens, gc->dim, gc->mask);
      test_assert_close(ym, ref, n, 1e-4, gc->label);
      free(y);
      free(ym);
      m2pt_block_destroy(b);
    }
    free(ref);
  }
}

/* Repeated forwards of one shape allocate nothing after the first. */
static void workspace_is_reused(void **state)
{
  m2pt_context *ctx = *state;
  m2pt_block_config cfg = small_config(M2PT_PRE_NORM);
  host_block h = make_host_block(&cfg, 9);
  m2pt_block *b = make_block(ctx, &h);
  const size_t sx[3] = {2, 6, cfg.dim}, n = 2 * 6 * cfg.dim;
  float *x = random_array(n, 4, 1.0f, 0.0f);
  m2pt_tensor *tx = test_tensor(ctx, 3, sx, x), *ty = test_tensor(ctx, 3, sx, NULL);
  const m2pt_attention_impl impls[2] = {M2PT_ATTENTION_GEMM, M2PT_ATTENTION_FUSED};
  for (int i = 0; i < 2; i++) {
    h.cfg.attention = impls[i];
    m2pt_block *bi = make_block(ctx, &h);
    assert_ok(ctx, m2pt_block_forward(bi, tx, NULL, ty));
    m2pt_stats before, after;
    assert_ok(ctx, m2pt_context_stats(ctx, &before));
    for (int r = 0; r < 3; r++)
      assert_ok(ctx, m2pt_block_forward(bi, tx, NULL, ty));
    assert_ok(ctx, m2pt_context_stats(ctx, &after));
    assert_int_equal(after.device_allocations, before.device_allocations);
    assert_int_equal(after.device_bytes_live, before.device_bytes_live);
    /* Trimming gives the scratch back; the next forward makes it again and
     * computes the same bits. */
    float *y1 = test_alloc(n * sizeof *y1), *y2 = test_alloc(n * sizeof *y2);
    assert_ok(ctx, m2pt_tensor_read(ty, y1, n));
    assert_ok(ctx, m2pt_context_trim(ctx));
    assert_ok(ctx, m2pt_context_stats(ctx, &after));
    assert_true(after.device_bytes_live < before.device_bytes_live);
    assert_ok(ctx, m2pt_block_forward(bi, tx, NULL, ty));
    assert_ok(ctx, m2pt_tensor_read(ty, y2, n));
    assert_memory_equal(y1, y2, n * sizeof *y1);
    free(y1);
    free(y2);
    m2pt_block_destroy(bi);
  }
  m2pt_tensor_destroy(tx);
  m2pt_tensor_destroy(ty);
  m2pt_block_destroy(b);
  free(x);
  free_host_block(&h);
}

/* Device bytes of a block's parameters (with the pathway and, once run,
 * the effective weights of its four linears). */
static size_t block_bytes(const m2pt_block_config *c)
{
  const size_t d = c->dim, hd = c->heads * c->dim_head, hid = c->ff_mult * d;
  const size_t weights = 3 * hd * d + d * hd + hid * d + d * hid;
  const size_t biases = (c->qkv_bias ? 3 * hd : 0) + d + hid + d;
  return (4 * d + weights * (c->pathway ? 3 : 1) + biases) * sizeof(float);
}

static void block_bad_inputs(void **state)
{
  m2pt_context *ctx = *state;
  m2pt_block_config cfg = small_config(M2PT_PRE_NORM);
  m2pt_block *b = NULL;
  m2pt_block_config bad = cfg;
  bad.heads = 0;
  assert_status(ctx, m2pt_block_create(ctx, &bad, &b), M2PT_ERR_INVALID_ARGUMENT);
  assert_null(b);
  bad = cfg;
  bad.eps = NAN;
  assert_status(ctx, m2pt_block_create(ctx, &bad, &b), M2PT_ERR_INVALID_ARGUMENT);
  bad = cfg;
  bad.layout = (m2pt_block_layout)5;
  assert_status(ctx, m2pt_block_create(ctx, &bad, &b), M2PT_ERR_INVALID_ARGUMENT);
  bad = cfg;
  bad.dim_head = SIZE_MAX / 2;
  assert_status(ctx, m2pt_block_create(ctx, &bad, &b), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_block_create(ctx, NULL, &b), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_block_create(NULL, &cfg, &b), M2PT_ERR_INVALID_ARGUMENT);

  host_block h = make_host_block(&cfg, 11);
  m2pt_block_config forced = cfg;
  forced.dim_head = 300;
  forced.attention = M2PT_ATTENTION_FUSED;
  assert_status(ctx, m2pt_block_create(ctx, &forced, &b), M2PT_ERR_UNSUPPORTED);
  m2pt_stats before_block, base;
  assert_ok(ctx, m2pt_context_stats(ctx, &before_block));
  b = make_block(ctx, &h);
  m2pt_block_config got = m2pt_block_config_vit(1, 1);
  assert_ok(ctx, m2pt_block_get_config(b, &got));
  assert_int_equal(got.struct_size, sizeof got);
  assert_int_equal(got.dim, cfg.dim);
  assert_int_equal(got.heads, cfg.heads);
  assert_int_equal(got.dim_head, cfg.dim_head);
  assert_int_equal(got.ff_mult, cfg.ff_mult);
  assert_true(got.eps == cfg.eps);
  assert_int_equal(got.layout, cfg.layout);
  assert_int_equal(got.pathway, cfg.pathway);
  assert_status(ctx, m2pt_block_get_config(b, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_context_trim(NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_block_get_config(NULL, &got), M2PT_ERR_INVALID_ARGUMENT);
  /* struct_size: never set is refused, and so is any size below the first
   * released one (it would cut a field in half); a newer m2pt's longer
   * config is refused. */
  m2pt_block_config unset = cfg;
  unset.struct_size = 0;
  assert_status(ctx, m2pt_block_get_config(b, &unset), M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(ctx), "struct_size"));
  m2pt_block *nb = NULL;
  assert_status(ctx, m2pt_block_create(ctx, &unset, &nb), M2PT_ERR_INVALID_ARGUMENT);
  m2pt_block_config cut = cfg;
  cut.struct_size = offsetof(m2pt_block_config, dim_head) + 2;
  assert_status(ctx, m2pt_block_get_config(b, &cut), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_block_create(ctx, &cut, &nb), M2PT_ERR_INVALID_ARGUMENT);
  assert_null(nb);
  struct {
    m2pt_block_config cfg;
    int added;
  } newer = {cfg, 1};
  newer.cfg.struct_size = sizeof newer;
  assert_status(ctx, m2pt_block_create(ctx, &newer.cfg, &nb), M2PT_ERR_UNSUPPORTED);
  assert_null(nb);
  const size_t batch = 2, tokens = 4, n = batch * tokens * cfg.dim;
  float *x = random_array(n, 12, 1.0f, 0.0f);
  float *good = run_block(ctx, b, x, batch, tokens, cfg.dim, NULL);
  /* The workspace has grown to this shape; the block holds block_bytes. */
  assert_ok(ctx, m2pt_context_stats(ctx, &base));

  /* heads·dim_head must match the qkv weight: 3·32 rows of 24, not 3·24. */
  assert_status(ctx, m2pt_block_set(b, "attn.qkv.weight", h.qkv_w, 3 * cfg.dim * cfg.dim),
                M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_block_set(b, "norm1.weight", h.norm1_w, cfg.dim - 1), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_block_set(b, "attn.qkv.cross_modal_scale", h.scales, 2),
                M2PT_ERR_SHAPE);
  const float inf = INFINITY;
  assert_status(ctx, m2pt_block_set(b, "mlp.fc2.cross_modal_scale", &inf, 1),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_block_set(b, "mlp.fc3.weight", h.fc2_w, 1), M2PT_ERR_NOT_FOUND);
  assert_non_null(strstr(m2pt_last_error(ctx), "mlp.fc3.weight"));
  float got_one;
  assert_status(ctx, m2pt_block_get(b, "attn.qkv.lambda", &got_one, 1), M2PT_ERR_NOT_FOUND);
  assert_non_null(strstr(m2pt_last_error(ctx), "attn.qkv.lambda"));
  assert_status(ctx, m2pt_block_set(b, "norm1.weight", NULL, cfg.dim), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_block_set(b, NULL, h.norm1_w, cfg.dim), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_block_set(NULL, "norm1.weight", h.norm1_w, cfg.dim),
                M2PT_ERR_INVALID_ARGUMENT);

  /* Mismatched input, output and mask shapes; x = y; other context. */
  const size_t sx[3] = {batch, tokens, cfg.dim}, s_dim[3] = {batch, tokens, cfg.dim + 1};
  const size_t s2[2] = {batch * tokens, cfg.dim}, sm_bad[2] = {batch, tokens + 1};
  m2pt_tensor *tx = test_tensor(ctx, 3, sx, x), *ty = test_tensor(ctx, 3, sx, NULL);
  m2pt_tensor *t_dim = test_tensor(ctx, 3, s_dim, NULL), *t2 = test_tensor(ctx, 2, s2, NULL);
  m2pt_tensor *t2y = test_tensor(ctx, 2, s2, NULL), *tm = test_tensor(ctx, 2, sm_bad, NULL);
  assert_status(ctx, m2pt_block_forward(b, t_dim, NULL, ty), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_block_forward(b, t2, NULL, t2y), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_block_forward(b, tx, tm, ty), M2PT_ERR_SHAPE);
  assert_non_null(strstr(m2pt_last_error(ctx), "mask"));
  assert_status(ctx, m2pt_block_forward(b, tx, NULL, tx), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_block_forward(b, NULL, NULL, ty), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_block_forward(NULL, tx, NULL, ty), M2PT_ERR_INVALID_ARGUMENT);
  m2pt_context *other = test_context();
  m2pt_tensor *foreign = test_tensor(other, 3, sx, x);
  assert_status(ctx, m2pt_block_forward(b, foreign, NULL, ty), M2PT_ERR_CONTEXT_MISMATCH);
  m2pt_tensor_destroy(foreign);
  m2pt_context_destroy(other);

  /* The block still computes what it did. */
  assert_ok(ctx, m2pt_block_forward(b, tx, NULL, ty));
  float *again = test_alloc(n * sizeof *again);
  assert_ok(ctx, m2pt_tensor_read(ty, again, n));
  assert_memory_equal(good, again, n * sizeof *good);

  m2pt_tensor *all[] = {tx, ty, t_dim, t2, t2y, tm};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    m2pt_tensor_destroy(all[i]);
  m2pt_block_destroy(b);
  m2pt_block_destroy(NULL);
  free(again);
  free(good);
  free(x);
  free_host_block(&h);
  /* Nothing leaked on the device: what is left is the workspace, which
   * stays for reuse, and the failed calls allocated nothing. */
  m2pt_stats end;
  assert_ok(ctx, m2pt_context_stats(ctx, &end));
  assert_int_equal(end.device_bytes_live, base.device_bytes_live - block_bytes(&cfg));
  assert_true(base.device_bytes_live - block_bytes(&cfg) >= before_block.device_bytes_live);
}

static void ffn_against_reference(void **state)
{
  m2pt_context *ctx = *state;
  const size_t rows = 5, dim = 12, hidden = 20;
  m2pt_ffn *f = NULL;
  assert_status(ctx, m2pt_ffn_create(ctx, dim, hidden, M2PT_LINEAR_PATHWAY, (m2pt_gelu_kind)4, &f),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_ok(ctx, m2pt_ffn_create(ctx, dim, hidden, M2PT_LINEAR_PATHWAY, M2PT_GELU_ERF, &f));
  float *w1 = random_array(hidden * dim, 1, 0.3f, 0), *a1 = random_array(hidden * dim, 2, 0.3f, 0);
  float *b1 = random_array(hidden, 3, 0.1f, 0), *w2 = random_array(dim * hidden, 4, 0.3f, 0);
  float *a2 = random_array(dim * hidden, 5, 0.3f, 0), *b2 = random_array(dim, 6, 0.1f, 0);
  float *x = random_array(rows * dim, 7, 1.0f, 0);
  m2pt_linear *fc1 = m2pt_ffn_fc1(f), *fc2 = m2pt_ffn_fc2(f);
  assert_ok(ctx, m2pt_linear_set_weight(fc1, w1, hidden * dim));
  assert_ok(ctx, m2pt_linear_set_aux_weight(fc1, a1, hidden * dim));
  assert_ok(ctx, m2pt_linear_set_bias(fc1, b1, hidden));
  assert_ok(ctx, m2pt_linear_set_scale(fc1, 0.5f));
  assert_ok(ctx, m2pt_linear_set_weight(fc2, w2, dim * hidden));
  assert_ok(ctx, m2pt_linear_set_aux_weight(fc2, a2, dim * hidden));
  assert_ok(ctx, m2pt_linear_set_bias(fc2, b2, dim));
  assert_ok(ctx, m2pt_linear_set_scale(fc2, -0.25f));
  double *h = test_alloc(rows * hidden * sizeof *h), *ref = test_alloc(rows * dim * sizeof *ref);
  ref_linear(x, rows, dim, hidden, w1, a1, 0.5, b1, NULL, h);
  float *hf = test_alloc(rows * hidden * sizeof *hf);
  for (size_t i = 0; i < rows * hidden; i++)
    hf[i] = (float)ref_gelu(h[i], 0);
  /* The reference's second layer takes f32 inputs; the rounding of the
   * hidden activations is far below the tolerance. */
  ref_linear(hf, rows, hidden, dim, w2, a2, -0.25, b2, NULL, ref);
  const size_t sx[2] = {rows, dim};
  m2pt_tensor *tx = test_tensor(ctx, 2, sx, x), *ty = test_tensor(ctx, 2, sx, NULL);
  float *y = test_alloc(rows * dim * sizeof *y), *ym = test_alloc(rows * dim * sizeof *ym);
  assert_ok(ctx, m2pt_ffn_forward(f, tx, ty));
  assert_ok(ctx, m2pt_tensor_read(ty, y, rows * dim));
  test_assert_close(y, ref, rows * dim, 1e-4, "ffn");
  assert_ok(ctx, m2pt_ffn_merge(f));
  assert_true(m2pt_linear_is_merged(fc1) && m2pt_linear_is_merged(fc2));
  assert_ok(ctx, m2pt_ffn_forward(f, tx, ty));
  assert_ok(ctx, m2pt_tensor_read(ty, ym, rows * dim));
  assert_memory_equal(y, ym, rows * dim * sizeof *y);
  assert_status(ctx, m2pt_ffn_forward(f, tx, tx), M2PT_ERR_INVALID_ARGUMENT);
  assert_null(m2pt_ffn_fc1(NULL));
  m2pt_ffn_destroy(NULL);
  m2pt_tensor_destroy(tx);
  m2pt_tensor_destroy(ty);
  m2pt_ffn_destroy(f);
  float *all[] = {w1, a1, b1, w2, a2, b2, x, hf, y, ym};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    free(all[i]);
  free(h);
  free(ref);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(block_pre_norm),
      cmocka_unit_test(block_post_norm),
      cmocka_unit_test(zero_scales_equal_plain_block),
      cmocka_unit_test(block_matches_pytorch_golden),
      cmocka_unit_test(workspace_is_reused),
      cmocka_unit_test(block_bad_inputs),
      cmocka_unit_test(ffn_against_reference),
  };
  /* Each check runs both attention paths itself; the fused kernel's width at dim_head 16
   * is the quirks' attention_vec, so that axis stays. */
  return test_run_matrix("block",
                         TEST_AXIS_GEMM | TEST_AXIS_ATTENTION_VEC | TEST_AXIS_LAYER_NORM |
                             TEST_AXIS_GELU | TEST_AXIS_ATTENTION_KERNEL | TEST_AXIS_SOFTMAX |
                             TEST_AXIS_HOST_ACCESS,
                         tests, NULL, NULL) != 0;
}
