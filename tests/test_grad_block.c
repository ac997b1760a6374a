/* The block backward (issue 12): m2pt_block_forward_train then
 * m2pt_block_backward on a tiny block (dim 8, heads 2, N 3, B 2), every
 * parameter's gradient and dx against central finite differences in double
 * through the double forward ref_block (L = Σ dy ⊙ y), pre- and post-norm,
 * with pathways (every λ ≠ 0) and without, a key-padding mask, heads·dim_head
 * ≠ dim; twice bit for bit; the states the backward refuses. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"
#include "test_util.h"

/* f32 against double finite differences, relative to max(1, max|ref|):
 * the backward chains ~10 ops of length ≤ 32 in f32 (each ~1e-6 relative);
 * the differences err by ~h² (1e-6) for weights and ~1e-10 for λ. */
#define TOL 5e-4

enum { BATCH = 2, TOKENS = 3, DIM = 8, HEADS = 2, PARAMS = 20 };

/* One parameter's host copy by checkpoint name (NULL data: the block lacks
 * it); λ lives in `scale`, the double the reference reads. */
typedef struct named {
  const char *name;
  size_t count;
  float *data;
  double *scale;
} named;

typedef struct host_block {
  m2pt_block_config cfg;
  size_t hd, hidden;
  named p[PARAMS];
  double scales[4];
} host_block;

static float *filled(size_t n, uint64_t seed, float scale, float offset)
{
  float *v = test_alloc(n * sizeof *v);
  test_fill(v, n, seed);
  for (size_t i = 0; i < n; i++)
    v[i] = v[i] * scale + offset;
  return v;
}

static void host_make(host_block *h, int post_norm, int pathway, size_t dim_head)
{
  memset(h, 0, sizeof *h);
  h->cfg = m2pt_block_config_vit(DIM, HEADS);
  h->cfg.dim_head = dim_head;
  h->cfg.pathway = pathway;
  h->cfg.layout = post_norm ? M2PT_POST_NORM : M2PT_PRE_NORM;
  h->cfg.eps = 1e-5f;
  h->hd = HEADS * dim_head;
  h->hidden = 4 * DIM;
  static const char *lin[4] = {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"};
  const size_t ins[4] = {DIM, h->hd, DIM, h->hidden}, outs[4] = {3 * h->hd, DIM, h->hidden, DIM};
  static char names[4][4][40];
  size_t k = 0;
  h->p[k++] = (named){"norm1.weight", DIM, filled(DIM, 1, 0.3f, 1.0f), NULL};
  h->p[k++] = (named){"norm1.bias", DIM, filled(DIM, 2, 0.2f, 0.0f), NULL};
  h->p[k++] = (named){"norm2.weight", DIM, filled(DIM, 3, 0.3f, 1.0f), NULL};
  h->p[k++] = (named){"norm2.bias", DIM, filled(DIM, 4, 0.2f, 0.0f), NULL};
  for (size_t i = 0; i < 4; i++) {
    const float ws = 1.0f / sqrtf((float)ins[i]);
    const char *f[4] = {"weight", "bias", "aux_weight", "cross_modal_scale"};
    for (size_t j = 0; j < 4; j++)
      snprintf(names[i][j], sizeof names[i][j], "%s.%s", lin[i], f[j]);
    h->p[k++] = (named){names[i][0], outs[i] * ins[i], filled(outs[i] * ins[i], 10 + i, ws, 0), NULL};
    h->p[k++] = (named){names[i][1], outs[i], filled(outs[i], 20 + i, 0.1f, 0), NULL};
    h->p[k++] = (named){names[i][2], outs[i] * ins[i],
                        pathway ? filled(outs[i] * ins[i], 30 + i, ws, 0) : NULL, NULL};
    /* λ ≠ 0, each its own, so every pathway term of the backward counts. */
    h->scales[i] = pathway ? (double)(0.5f - 0.3f * (float)i) : 0.0;
    h->p[k++] = (named){names[i][3], 1, NULL, pathway ? &h->scales[i] : NULL};
  }
}

static void host_free(host_block *h)
{
  for (size_t i = 0; i < PARAMS; i++)
    free(h->p[i].data);
}

static const float *pdata(const host_block *h, const char *name)
{
  for (size_t i = 0; i < PARAMS; i++)
    if (!strcmp(h->p[i].name, name))
      return h->p[i].data;
  return NULL;
}

static ref_block_params ref_params(const host_block *h)
{
  ref_block_params r;
  memset(&r, 0, sizeof r);
  r.dim = DIM;
  r.heads = HEADS;
  r.dim_head = h->cfg.dim_head;
  r.hidden = h->hidden;
  r.eps = h->cfg.eps;
  r.post_norm = h->cfg.layout == M2PT_POST_NORM;
  r.norm1_w = pdata(h, "norm1.weight");
  r.norm1_b = pdata(h, "norm1.bias");
  r.norm2_w = pdata(h, "norm2.weight");
  r.norm2_b = pdata(h, "norm2.bias");
  r.qkv_w = pdata(h, "attn.qkv.weight");
  r.qkv_b = pdata(h, "attn.qkv.bias");
  r.qkv_aux = pdata(h, "attn.qkv.aux_weight");
  r.proj_w = pdata(h, "attn.proj.weight");
  r.proj_b = pdata(h, "attn.proj.bias");
  r.proj_aux = pdata(h, "attn.proj.aux_weight");
  r.fc1_w = pdata(h, "mlp.fc1.weight");
  r.fc1_b = pdata(h, "mlp.fc1.bias");
  r.fc1_aux = pdata(h, "mlp.fc1.aux_weight");
  r.fc2_w = pdata(h, "mlp.fc2.weight");
  r.fc2_b = pdata(h, "mlp.fc2.bias");
  r.fc2_aux = pdata(h, "mlp.fc2.aux_weight");
  r.qkv_scale = h->scales[0];
  r.proj_scale = h->scales[1];
  r.fc1_scale = h->scales[2];
  r.fc2_scale = h->scales[3];
  return r;
}

/* L = Σ dy ⊙ block(x) in double. */
static double loss(const host_block *h, const float *x, const float *mask, const float *dy)
{
  const size_t n = BATCH * TOKENS * DIM;
  double y[BATCH * TOKENS * DIM];
  const ref_block_params r = ref_params(h);
  ref_block(&r, x, BATCH, TOKENS, mask, y);
  double l = 0;
  for (size_t i = 0; i < n; i++)
    l += dy[i] * y[i];
  return l;
}

/* ∂L/∂v by central differences; a float is moved by ±1e-3 and the step
 * actually taken (after rounding to float) divides. */
static double fd_float(host_block *h, float *v, const float *x, const float *mask,
                       const float *dy)
{
  const float v0 = *v;
  *v = v0 + 1e-3f;
  const double up = (double)*v;
  const double lu = loss(h, x, mask, dy);
  *v = v0 - 1e-3f;
  const double down = (double)*v;
  const double ld = loss(h, x, mask, dy);
  *v = v0;
  return (lu - ld) / (up - down);
}

static double fd_scale(host_block *h, double *s, const float *x, const float *mask,
                       const float *dy)
{
  const double s0 = *s, step = 1e-5;
  *s = s0 + step;
  const double lu = loss(h, x, mask, dy);
  *s = s0 - step;
  const double ld = loss(h, x, mask, dy);
  *s = s0;
  return (lu - ld) / (2 * step);
}

static m2pt_block *device_block(m2pt_context *ctx, const host_block *h)
{
  m2pt_block *b = NULL;
  assert_ok(ctx, m2pt_block_create(ctx, &h->cfg, &b));
  for (size_t i = 0; i < PARAMS; i++) {
    if (h->p[i].data)
      assert_ok(ctx, m2pt_block_set(b, h->p[i].name, h->p[i].data, h->p[i].count));
    if (h->p[i].scale) {
      const float s = (float)*h->p[i].scale;
      assert_ok(ctx, m2pt_block_set(b, h->p[i].name, &s, 1));
    }
  }
  return b;
}

static const float pad_mask[BATCH * TOKENS] = {1, 1, 1, 1, 1, 0};

/* forward_train and backward; every gradient read into grads[i] (NULL for
 * a parameter the block lacks) and dx into *dx. */
static void run(m2pt_context *ctx, m2pt_block *b, const host_block *h, const float *x,
                const float *mask, const float *dy, float *grads[PARAMS], float *dxh)
{
  const size_t shape[3] = {BATCH, TOKENS, DIM}, mshape[2] = {BATCH, TOKENS};
  m2pt_tensor *tx = test_tensor(ctx, 3, shape, x), *ty = test_tensor(ctx, 3, shape, NULL);
  m2pt_tensor *tdy = test_tensor(ctx, 3, shape, dy), *tdx = test_tensor(ctx, 3, shape, NULL);
  m2pt_tensor *tm = mask ? test_tensor(ctx, 2, mshape, mask) : NULL;
  m2pt_block_grads *g = NULL;
  assert_ok(ctx, m2pt_block_grads_create(b, &g));
  assert_ok(ctx, m2pt_block_forward_train(b, tx, tm, ty));
  assert_ok(ctx, m2pt_block_backward(b, tx, tm, tdy, g, tdx));
  for (size_t i = 0; i < PARAMS; i++) {
    const named *p = &h->p[i];
    if (!p->data && !p->scale) {
      float unused;
      assert_status(ctx, m2pt_block_grads_get(g, p->name, &unused, 1), M2PT_ERR_INVALID_STATE);
      grads[i] = NULL;
      continue;
    }
    grads[i] = test_alloc(p->count * sizeof(float));
    assert_ok(ctx, m2pt_block_grads_get(g, p->name, grads[i], p->count));
  }
  assert_ok(ctx, m2pt_tensor_read(tdx, dxh, BATCH * TOKENS * DIM));
  /* The forward's y is the inference forward's: the same bits where GEMMs
   * run on the device; where they run on the host the inference
   * forward runs the ops around them on the host (common/host_math.h), equal
   * within the tolerance. */
  float *y1 = test_read(ctx, ty);
  assert_ok(ctx, m2pt_block_forward(b, tx, tm, ty));
  float *y2 = test_read(ctx, ty);
  if (!test_gemm_on_host(ctx)) {
    assert_memory_equal(y1, y2, BATCH * TOKENS * DIM * sizeof *y1);
  } else {
    double *w1 = test_widen(y1, BATCH * TOKENS * DIM);
    test_assert_close(y2, w1, BATCH * TOKENS * DIM, 1e-4, "training vs inference forward");
    free(w1);
  }
  free(y1);
  free(y2);
  m2pt_block_grads_destroy(g);
  m2pt_tensor_destroy(tx);
  m2pt_tensor_destroy(ty);
  m2pt_tensor_destroy(tdy);
  m2pt_tensor_destroy(tdx);
  m2pt_tensor_destroy(tm);
}

static void check_case(m2pt_context *ctx, int post_norm, int pathway, size_t dim_head,
                       const float *mask)
{
  enum { N = BATCH * TOKENS * DIM };
  host_block h;
  host_make(&h, post_norm, pathway, dim_head);
  float *x = filled(N, 50, 1.0f, 0.0f), *dy = filled(N, 51, 1.0f, 0.0f);
  m2pt_block *b = device_block(ctx, &h);
  float *grads[PARAMS], *again[PARAMS], dx[N], dx2[N];
  run(ctx, b, &h, x, mask, dy, grads, dx);
  run(ctx, b, &h, x, mask, dy, again, dx2);
  char what[96];
  for (size_t i = 0; i < PARAMS; i++) {
    named *p = &h.p[i];
    if (!grads[i])
      continue;
    /* Deterministic: the second run gives the same bits. */
    assert_memory_equal(grads[i], again[i], p->count * sizeof(float));
    double *ref = test_alloc(p->count * sizeof *ref);
    for (size_t j = 0; j < p->count; j++)
      ref[j] = p->scale ? fd_scale(&h, p->scale, x, mask, dy)
                        : fd_float(&h, &p->data[j], x, mask, dy);
    snprintf(what, sizeof what, "%s-norm pathway %d mask %d: %s", post_norm ? "post" : "pre",
             pathway, mask != NULL, p->name);
    test_assert_close(grads[i], ref, p->count, TOL, what);
    free(ref);
    free(grads[i]);
    free(again[i]);
  }
  assert_memory_equal(dx, dx2, sizeof dx);
  double dref[N];
  for (size_t j = 0; j < N; j++)
    dref[j] = fd_float(&h, &x[j], x, mask, dy);
  snprintf(what, sizeof what, "%s-norm pathway %d mask %d: dx", post_norm ? "post" : "pre",
           pathway, mask != NULL);
  test_assert_close(dx, dref, N, TOL, what);
  m2pt_block_destroy(b);
  free(x);
  free(dy);
  host_free(&h);
}

static void pre_norm_pathway_mask(void **state)
{
  check_case(*state, 0, 1, DIM / HEADS, pad_mask);
}

static void pre_norm_plain(void **state)
{
  check_case(*state, 0, 0, DIM / HEADS, NULL);
}

static void pre_norm_pathway_no_mask(void **state)
{
  check_case(*state, 0, 1, DIM / HEADS, NULL);
}

/* BERT's layout, with heads·dim_head = 6 ≠ dim. */
static void post_norm_pathway_mask(void **state)
{
  check_case(*state, 1, 1, 3, pad_mask);
}

static void post_norm_plain(void **state)
{
  check_case(*state, 1, 0, DIM / HEADS, pad_mask);
}

/* What the backward refuses, writing nothing. */
static void refused(void **state)
{
  m2pt_context *ctx = *state;
  host_block h;
  host_make(&h, 0, 1, DIM / HEADS);
  m2pt_block *b = device_block(ctx, &h), *other = device_block(ctx, &h);
  const size_t shape[3] = {BATCH, TOKENS, DIM}, small[3] = {1, TOKENS, DIM};
  m2pt_tensor *x = test_tensor(ctx, 3, shape, NULL), *y = test_tensor(ctx, 3, shape, NULL);
  m2pt_tensor *x1 = test_tensor(ctx, 3, small, NULL), *y1 = test_tensor(ctx, 3, small, NULL);
  m2pt_block_grads *g = NULL, *og = NULL;
  assert_ok(ctx, m2pt_block_grads_create(b, &g));
  assert_ok(ctx, m2pt_block_grads_create(other, &og));
  /* Nothing saved yet; an inference forward saves nothing. */
  assert_status(ctx, m2pt_block_backward(b, x, NULL, y, g, NULL), M2PT_ERR_INVALID_STATE);
  assert_ok(ctx, m2pt_block_forward(b, x, NULL, y));
  assert_status(ctx, m2pt_block_backward(b, x, NULL, y, g, NULL), M2PT_ERR_INVALID_STATE);
  assert_ok(ctx, m2pt_block_forward_train(b, x, NULL, y));
  assert_status(ctx, m2pt_block_backward(b, x, NULL, y, og, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_block_backward(b, x, NULL, y, g, x), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_block_backward(b, x1, NULL, y1, g, NULL), M2PT_ERR_INVALID_STATE);
  /* Another block's training forward took the slots. */
  assert_ok(ctx, m2pt_block_forward_train(other, x, NULL, y));
  assert_status(ctx, m2pt_block_backward(b, x, NULL, y, g, NULL), M2PT_ERR_INVALID_STATE);
  assert_ok(ctx, m2pt_block_backward(other, x, NULL, y, og, NULL));
  /* m2pt_context_trim freed the slots that held it. */
  assert_ok(ctx, m2pt_block_forward_train(other, x, NULL, y));
  assert_ok(ctx, m2pt_context_trim(ctx));
  assert_status(ctx, m2pt_block_backward(other, x, NULL, y, og, NULL), M2PT_ERR_INVALID_STATE);
  assert_ok(ctx, m2pt_block_forward_train(other, x, NULL, y));
  assert_ok(ctx, m2pt_block_backward(other, x, NULL, y, og, NULL));
  /* A parameter change invalidates what was saved. */
  assert_ok(ctx, m2pt_block_set(other, "norm1.weight", h.p[0].data, DIM));
  assert_status(ctx, m2pt_block_backward(other, x, NULL, y, og, NULL), M2PT_ERR_INVALID_STATE);
  /* Merged since the grads were made: their pathway gradients have no home. */
  assert_ok(ctx, m2pt_block_merge(b));
  assert_ok(ctx, m2pt_block_forward_train(b, x, NULL, y));
  assert_status(ctx, m2pt_block_backward(b, x, NULL, y, g, NULL), M2PT_ERR_INVALID_STATE);
  float v[DIM];
  assert_status(ctx, m2pt_block_grads_get(g, "norm3.weight", v, DIM), M2PT_ERR_NOT_FOUND);
  assert_status(ctx, m2pt_block_grads_get(g, "norm1.weight", v, DIM - 1), M2PT_ERR_SHAPE);
  m2pt_tensor *t = NULL;
  assert_ok(ctx, m2pt_block_grads_tensor(g, "mlp.fc1.cross_modal_scale", &t));
  assert_int_equal(m2pt_tensor_numel(t), 1);
  m2pt_block_grads_destroy(g);
  m2pt_block_grads_destroy(og);
  m2pt_block_destroy(b);
  m2pt_block_destroy(other);
  m2pt_tensor_destroy(x);
  m2pt_tensor_destroy(y);
  m2pt_tensor_destroy(x1);
  m2pt_tensor_destroy(y1);
  host_free(&h);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(pre_norm_pathway_mask),  cmocka_unit_test(pre_norm_plain),
      cmocka_unit_test(pre_norm_pathway_no_mask), cmocka_unit_test(post_norm_pathway_mask),
      cmocka_unit_test(post_norm_plain),        cmocka_unit_test(refused),
  };
  /* attention: the fused attention backward (AUTO's) and the GEMM path. */
  return test_run_matrix("grad_block",
                         TEST_AXIS_GEMM | TEST_AXIS_ATTENTION | TEST_AXIS_LAYER_NORM |
                             TEST_AXIS_GELU | TEST_AXIS_LINEAR_GRAD | TEST_AXIS_SOFTMAX,
                         tests, NULL, NULL)
             ? 1
             : 0;
}
