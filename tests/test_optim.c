/* Optimizers, schedules and MAE's parameter groups (issue 13): three steps
 * of SGD (momentum, with and without Nesterov) and AdamW over two parameter
 * groups against PyTorch's (tools/make_optim_golden.py writes
 * data/optim/optim_golden.safetensors), gradient clipping against
 * torch.nn.utils.clip_grad_norm_, the schedules against MAE's formula at
 * every iteration of a run, the layer-decay groups by name (with
 * --scale-lr's group of λs), and every rejected argument. State files:
 * test_optim_state.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

enum { NTENSORS = 3, STEPS = 3 };

/* The script's layout: tensors 0 and 1 in group 0, tensor 2 in group 1. */
static const size_t tensor_group[NTENSORS] = {0, 0, 1};
static const float group_lr[2] = {0.1f, 0.05f};

/* Tensor `name` of the golden file as a new host array; its shape into
 * shape and ndim. */
static float *golden(const char *name, size_t shape[4], size_t *ndim)
{
  m2pt_safetensors *st = NULL;
  assert_int_equal(m2pt_safetensors_open("optim_golden.safetensors", &st), M2PT_OK);
  size_t index = 0;
  if (m2pt_safetensors_find(st, name, &index) != M2PT_OK) {
    print_error("optim_golden.safetensors has no %s\n", name);
    fail();
  }
  m2pt_safetensors_info info;
  assert_int_equal(m2pt_safetensors_info_at(st, index, &info), M2PT_OK);
  size_t n = 1;
  for (size_t d = 0; d < info.ndim; d++) {
    shape[d] = info.shape[d];
    n *= info.shape[d];
  }
  *ndim = info.ndim;
  float *data = test_alloc(n * sizeof *data);
  assert_int_equal(m2pt_safetensors_read_f32(st, index, data, n), M2PT_OK);
  m2pt_safetensors_close(st);
  return data;
}

/* Three steps of `opts` with the script's groups and weight decays; the
 * parameters after each step against "<prefix>.S.I". */
static void check_golden(m2pt_context *ctx, m2pt_optimizer_options opts, const float wd[2],
                         const char *prefix)
{
  m2pt_optimizer *opt = NULL;
  assert_ok(ctx, m2pt_optimizer_create(ctx, &opts, &opt));
  for (size_t g = 0; g < 2; g++) {
    size_t id = 99;
    assert_ok(ctx, m2pt_optimizer_add_group(opt, group_lr[g], wd[g], &id));
    assert_int_equal(id, g);
  }
  m2pt_tensor *p[NTENSORS], *grad[NTENSORS];
  size_t numel[NTENSORS];
  for (size_t i = 0; i < NTENSORS; i++) {
    char name[32];
    size_t shape[4], ndim = 0;
    snprintf(name, sizeof name, "init.%zu", i);
    float *init = golden(name, shape, &ndim);
    p[i] = test_tensor(ctx, ndim, shape, init);
    grad[i] = test_tensor(ctx, ndim, shape, NULL);
    numel[i] = m2pt_tensor_numel(p[i]);
    free(init);
    assert_ok(ctx, m2pt_optimizer_add_param(opt, tensor_group[i], p[i], grad[i]));
  }
  for (size_t s = 0; s < STEPS; s++) {
    for (size_t i = 0; i < NTENSORS; i++) {
      char name[32];
      size_t shape[4], ndim = 0;
      snprintf(name, sizeof name, "grad.%zu.%zu", s, i);
      float *g = golden(name, shape, &ndim);
      assert_ok(ctx, m2pt_tensor_write(grad[i], g, numel[i]));
      free(g);
    }
    assert_ok(ctx, m2pt_optimizer_step(opt));
    for (size_t i = 0; i < NTENSORS; i++) {
      char name[48];
      size_t shape[4], ndim = 0;
      snprintf(name, sizeof name, "%s.%zu.%zu", prefix, s, i);
      float *want = golden(name, shape, &ndim);
      double *ref = test_widen(want, numel[i]);
      float *got = test_read(ctx, p[i]);
      test_assert_close(got, ref, numel[i], 1e-4, name);
      free(got);
      free(ref);
      free(want);
    }
  }
  for (size_t i = 0; i < NTENSORS; i++) {
    m2pt_tensor_destroy(p[i]);
    m2pt_tensor_destroy(grad[i]);
  }
  m2pt_optimizer_destroy(opt);
}

static void sgd_momentum(void **state)
{
  m2pt_optimizer_options o = m2pt_sgd_options_default();
  o.momentum = 0.9f;
  check_golden(*state, o, (const float[2]){0.01f, 0.0f}, "sgd");
}

static void sgd_nesterov(void **state)
{
  m2pt_optimizer_options o = m2pt_sgd_options_default();
  o.momentum = 0.9f;
  o.nesterov = 1;
  check_golden(*state, o, (const float[2]){0.01f, 0.0f}, "sgd_nesterov");
}

static void adamw(void **state)
{
  check_golden(*state, m2pt_adamw_options_default(), (const float[2]){0.05f, 0.0f}, "adamw");
}

/* Plain SGD against p − lr·(g + wd·p) on the host, and m2pt_optimizer_set_lr
 * taking effect at the next step (lr 0: nothing moves). */
static void sgd_plain_and_set_lr(void **state)
{
  m2pt_context *ctx = *state;
  enum { N = 37 };
  float pv[N], gv[N];
  test_fill(pv, N, 1301);
  test_fill(gv, N, 1302);
  const size_t shape[1] = {N};
  m2pt_tensor *p = test_tensor(ctx, 1, shape, pv), *g = test_tensor(ctx, 1, shape, gv);
  const m2pt_optimizer_options o = m2pt_sgd_options_default();
  m2pt_optimizer *opt = NULL;
  size_t group = 0;
  assert_ok(ctx, m2pt_optimizer_create(ctx, &o, &opt));
  assert_ok(ctx, m2pt_optimizer_add_group(opt, 0.5f, 0.1f, &group));
  assert_ok(ctx, m2pt_optimizer_add_param(opt, group, p, g));
  assert_ok(ctx, m2pt_optimizer_step(opt));
  double ref[N];
  for (size_t i = 0; i < N; i++)
    ref[i] = pv[i] - 0.5 * (gv[i] + 0.1 * pv[i]);
  float *got = test_read(ctx, p);
  test_assert_close(got, ref, N, 1e-6, "sgd");
  assert_ok(ctx, m2pt_optimizer_set_lr(opt, group, 0.0f));
  float lr = -1.0f, wd = -1.0f;
  assert_ok(ctx, m2pt_optimizer_group(opt, group, &lr, &wd));
  assert_true(lr == 0.0f && wd == 0.1f);
  assert_ok(ctx, m2pt_optimizer_step(opt));
  float *again = test_read(ctx, p);
  assert_memory_equal(got, again, sizeof pv);
  free(again);
  free(got);
  m2pt_optimizer_destroy(opt);
  m2pt_tensor_destroy(p);
  m2pt_tensor_destroy(g);
}

/* MAE's adjust_learning_rate, written from util/lr_sched.py. */
static double mae_lr(double lr, double min_lr, double warmup, double epochs, double epoch)
{
  if (epoch < warmup)
    return lr * epoch / warmup;
  return min_lr + (lr - min_lr) * 0.5 *
                      (1.0 + cos(3.141592653589793 * (epoch - warmup) / (epochs - warmup)));
}

static void schedules(void **state)
{
  (void)state;
  /* Every iteration of a 10-epoch run of 7 iterations an epoch, as MAE's
   * train_one_epoch calls it (epoch + it / len(loader)). */
  const m2pt_lr_schedule cosine = {M2PT_LR_COSINE, 1e-3, 1e-6, 2.0, 10.0};
  const m2pt_lr_schedule constant = {M2PT_LR_CONSTANT, 3e-4, 0.0, 0.0, 0.0};
  for (int epoch = 0; epoch < 10; epoch++)
    for (int it = 0; it < 7; it++) {
      const double e = epoch + it / 7.0;
      double lr = -1.0;
      assert_int_equal(m2pt_lr_schedule_at(&cosine, e, &lr), M2PT_OK);
      const double want = mae_lr(1e-3, 1e-6, 2.0, 10.0, e);
      if (fabs(lr - want) > 1e-15) {
        print_error("epoch %g: lr %.17g, MAE %.17g\n", e, lr, want);
        fail();
      }
      assert_int_equal(m2pt_lr_schedule_at(&constant, e, &lr), M2PT_OK);
      assert_true(lr == 3e-4);
    }
  /* The ends: 0 at the start, the peak after warm-up, min_lr at the end. */
  double lr = -1.0;
  assert_int_equal(m2pt_lr_schedule_at(&cosine, 0.0, &lr), M2PT_OK);
  assert_true(lr == 0.0);
  assert_int_equal(m2pt_lr_schedule_at(&cosine, 2.0, &lr), M2PT_OK);
  assert_true(lr == 1e-3);
  assert_int_equal(m2pt_lr_schedule_at(&cosine, 10.0, &lr), M2PT_OK);
  assert_true(fabs(lr - 1e-6) < 1e-18);
  /* No warm-up: the cosine from epoch 0. */
  const m2pt_lr_schedule no_warmup = {M2PT_LR_COSINE, 1e-3, 0.0, 0.0, 4.0};
  assert_int_equal(m2pt_lr_schedule_at(&no_warmup, 0.0, &lr), M2PT_OK);
  assert_true(lr == 1e-3);
  /* Rejected. */
  m2pt_lr_schedule bad = cosine;
  assert_int_equal(m2pt_lr_schedule_at(NULL, 0.0, &lr), M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_lr_schedule_at(&cosine, 0.0, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_lr_schedule_at(&cosine, -0.5, &lr), M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_lr_schedule_at(&cosine, NAN, &lr), M2PT_ERR_INVALID_ARGUMENT);
  bad.lr = -1e-3;
  assert_int_equal(m2pt_lr_schedule_at(&bad, 1.0, &lr), M2PT_ERR_INVALID_ARGUMENT);
  bad = cosine;
  bad.min_lr = 2e-3;
  assert_int_equal(m2pt_lr_schedule_at(&bad, 1.0, &lr), M2PT_ERR_INVALID_ARGUMENT);
  bad = cosine;
  bad.warmup_epochs = 10.0;
  assert_int_equal(m2pt_lr_schedule_at(&bad, 1.0, &lr), M2PT_ERR_INVALID_ARGUMENT);
  bad = cosine;
  bad.kind = (m2pt_lr_schedule_kind)7;
  assert_int_equal(m2pt_lr_schedule_at(&bad, 1.0, &lr), M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(NULL), "kind"));
}

static void param_groups(void **state)
{
  (void)state;
  /* depth 2, decay 0.5: scales 0.5^3 (embeddings), 0.5^2, 0.5, 1 (head). */
  static const struct {
    const char *name;
    size_t ndim, layer_id;
    double scale;
    int no_decay;
    const char *group;
  } cases[] = {
      {"cls_token", 3, 0, 0.125, 1, "layer_0_no_decay"},
      {"pos_embed", 3, 0, 0.125, 1, "layer_0_no_decay"},
      {"patch_embed.proj.weight", 4, 0, 0.125, 0, "layer_0_decay"},
      {"patch_embed.proj.bias", 1, 0, 0.125, 1, "layer_0_no_decay"},
      {"blocks.0.norm1.weight", 1, 1, 0.25, 1, "layer_1_no_decay"},
      {"blocks.0.attn.qkv.weight", 2, 1, 0.25, 0, "layer_1_decay"},
      {"blocks.0.attn.qkv.aux_weight", 2, 1, 0.25, 0, "layer_1_decay"},
      {"blocks.1.mlp.fc1.cross_modal_scale", 1, 2, 0.5, 1, "layer_2_no_decay"},
      {"blocks.1.mlp.fc2.bias", 1, 2, 0.5, 1, "layer_2_no_decay"},
      {"norm.weight", 1, 3, 1.0, 1, "layer_3_no_decay"},
      {"fc_norm.bias", 1, 3, 1.0, 1, "layer_3_no_decay"},
      {"head.weight", 2, 3, 1.0, 0, "layer_3_decay"},
      {"bert.embeddings.word_embeddings.weight", 2, 0, 0.125, 0, "layer_0_decay"},
      {"bert.encoder.layer.1.attention.self.query.weight", 2, 2, 0.5, 0, "layer_2_decay"},
      {"encoder.layer.0.output.dense.weight", 2, 1, 0.25, 0, "layer_1_decay"},
      {"encoder.layer.1.output.dense.cross_modal_scale", 1, 2, 0.5, 1, "layer_2_no_decay"},
      {"vit.embeddings.cls_token", 3, 0, 0.125, 0, "layer_0_decay"},
      {"classifier.weight", 2, 3, 1.0, 0, "layer_3_decay"},
      {"blocksx.0.weight", 2, 3, 1.0, 0, "layer_3_decay"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    m2pt_param_group_info info = {99, -1.0, -1, -1, "?"};
    assert_int_equal(m2pt_param_group_of(cases[i].name, cases[i].ndim, 2, 0.5, &info), M2PT_OK);
    const int pathway = strstr(cases[i].name, "cross_modal_scale") != NULL;
    if (info.layer_id != cases[i].layer_id || info.lr_scale != cases[i].scale ||
        info.no_decay != cases[i].no_decay || info.pathway_scale != pathway ||
        strcmp(info.group, cases[i].group) != 0) {
      print_error("%s: layer %zu scale %g no_decay %d pathway %d group %s\n", cases[i].name,
                  info.layer_id, info.lr_scale, info.no_decay, info.pathway_scale, info.group);
      fail();
    }
    /* --scale-lr 2e-3 at a base rate of 1e-3: every λ, whatever its layer,
     * in one group at twice the base rate; the rest unchanged. */
    m2pt_param_group_info scaled = info;
    assert_int_equal(m2pt_param_group_scale_lr(&scaled, 1e-3, 2e-3), M2PT_OK);
    if (pathway) {
      assert_true(scaled.lr_scale == 2e-3 / 1e-3 && scaled.no_decay == 1);
      assert_string_equal(scaled.group, "pathway_scales");
      assert_int_equal(scaled.layer_id, info.layer_id);
    } else {
      assert_memory_equal(&scaled, &info, sizeof info);
    }
  }
  m2pt_param_group_info info;
  assert_int_equal(m2pt_param_group_of(NULL, 2, 2, 0.5, &info), M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_param_group_of("head.weight", 2, 2, 0.5, NULL),
                   M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_param_group_of("head.weight", 0, 2, 0.5, &info),
                   M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_param_group_of("head.weight", 2, 2, 0.0, &info),
                   M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_param_group_of("head.weight", 2, 2, 1.5, &info),
                   M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_param_group_of("blocks.2.attn.qkv.weight", 2, 2, 0.5, &info),
                   M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(NULL), "blocks.2"));
  assert_int_equal(m2pt_param_group_of("blocks.0.attn.qkv.cross_modal_scale", 1, 2, 0.5, &info),
                   M2PT_OK);
  const m2pt_param_group_info before = info;
  assert_int_equal(m2pt_param_group_scale_lr(NULL, 1e-3, 1e-2), M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_param_group_scale_lr(&info, 0.0, 1e-2), M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_param_group_scale_lr(&info, 1e-3, -1e-2), M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_param_group_scale_lr(&info, 1e-3, NAN), M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(NULL), "scale_lr"));
  assert_int_equal(m2pt_param_group_scale_lr(&info, INFINITY, 1e-2), M2PT_ERR_INVALID_ARGUMENT);
  assert_memory_equal(&info, &before, sizeof info);
}

/* clip_grad_norm_ against PyTorch: "<c>.in.I" clipped to max_norm gives
 * "<c>.out.I", the norm "<c>.norm"; `exact`: every sum is exact in float,
 * so the bits must be PyTorch's (its clip coefficient's rounding too). */
static void check_clip(m2pt_context *ctx, const char *c, size_t count, float max_norm,
                       int exact)
{
  m2pt_tensor *g[4];
  float *want[4];
  size_t numel[4];
  for (size_t i = 0; i < count; i++) {
    char name[48];
    size_t shape[4], ndim = 0;
    snprintf(name, sizeof name, "%s.in.%zu", c, i);
    float *in = golden(name, shape, &ndim);
    g[i] = test_tensor(ctx, ndim, shape, in);
    numel[i] = m2pt_tensor_numel(g[i]);
    free(in);
    snprintf(name, sizeof name, "%s.out.%zu", c, i);
    want[i] = golden(name, shape, &ndim);
  }
  char name[48];
  size_t shape[4], ndim = 0;
  snprintf(name, sizeof name, "%s.norm", c);
  float *norm_ref = golden(name, shape, &ndim);
  float norm = -1.0f;
  assert_ok(ctx, m2pt_clip_grad_norm(ctx, g, count, max_norm, &norm));
  if (exact ? norm != norm_ref[0] : fabsf(norm - norm_ref[0]) > 1e-6f * norm_ref[0]) {
    print_error("%s: norm %.9g, PyTorch %.9g\n", c, (double)norm, (double)norm_ref[0]);
    fail();
  }
  for (size_t i = 0; i < count; i++) {
    float *got = test_read(ctx, g[i]);
    if (exact) {
      assert_memory_equal(got, want[i], numel[i] * sizeof *got);
    } else {
      double *ref = test_widen(want[i], numel[i]);
      snprintf(name, sizeof name, "%s.out.%zu", c, i);
      test_assert_close(got, ref, numel[i], 1e-6, name);
      free(ref);
    }
    free(got);
    free(want[i]);
    m2pt_tensor_destroy(g[i]);
  }
  free(norm_ref);
}

static void clip_golden(void **state)
{
  check_clip(*state, "clip", 4, 1.0f, 0);
  check_clip(*state, "clip_exact", 2, 1.3f, 1);
}

/* A norm under max_norm, or max_norm = inf: the norm, and not a bit of the
 * gradients changed; the same norm's bits on every run; no gradients: 0. */
static void clip_below_max(void **state)
{
  m2pt_context *ctx = *state;
  enum { N = 3000 };
  float *v = test_random_floats(N, 1401, 0.01f);
  const size_t shape[1] = {N}, one[1] = {1};
  m2pt_tensor *g[2] = {test_tensor(ctx, 1, shape, v), test_tensor(ctx, 1, one, v)};
  double sum = 0.0;
  for (size_t i = 0; i < N; i++)
    sum += (double)v[i] * v[i];
  sum += (double)v[0] * v[0];
  float norm = -1.0f, again = -1.0f;
  assert_ok(ctx, m2pt_clip_grad_norm(ctx, g, 2, 1e3f, &norm));
  assert_true(fabs(norm - sqrt(sum)) <= 1e-6 * sqrt(sum));
  assert_ok(ctx, m2pt_clip_grad_norm(ctx, g, 2, INFINITY, &again));
  assert_memory_equal(&norm, &again, sizeof norm);
  float *got = test_read(ctx, g[0]);
  assert_memory_equal(got, v, N * sizeof *v);
  free(got);
  /* max_norm just under the norm: scaled, the new norm ≤ max_norm. */
  assert_ok(ctx, m2pt_clip_grad_norm(ctx, g, 2, norm * 0.5f, NULL));
  assert_ok(ctx, m2pt_clip_grad_norm(ctx, g, 2, INFINITY, &again));
  assert_true(again <= norm * 0.5f * (1.0f + 1e-6f) && again >= norm * 0.5f * (1.0f - 1e-5f));
  norm = -1.0f;
  assert_ok(ctx, m2pt_clip_grad_norm(ctx, NULL, 0, 1.0f, &norm));
  assert_true(norm == 0.0f);
  m2pt_tensor_destroy(g[0]);
  m2pt_tensor_destroy(g[1]);
  free(v);
}

/* A NaN or inf anywhere, or squares past FLT_MAX: M2PT_ERR_NOT_FINITE,
 * the norm reported, the gradients untouched. */
static void clip_not_finite(void **state)
{
  m2pt_context *ctx = *state;
  enum { N = 2000 };
  const float bad[3] = {NAN, INFINITY, 1e20f};
  const size_t shape[1] = {N};
  for (size_t b = 0; b < 3; b++) {
    float *v = test_random_floats(N, 1402, 1.0f);
    v[1500] = bad[b];
    m2pt_tensor *g[2] = {test_tensor(ctx, 1, shape, NULL), test_tensor(ctx, 1, shape, v)};
    float norm = 0.0f;
    assert_status(ctx, m2pt_clip_grad_norm(ctx, g, 2, 1.0f, &norm), M2PT_ERR_NOT_FINITE);
    assert_true(b == 0 ? isnan(norm) : isinf(norm));
    assert_non_null(strstr(m2pt_last_error(ctx), "nothing was scaled"));
    float *got = test_read(ctx, g[1]);
    assert_memory_equal(got, v, N * sizeof *v);
    free(got);
    m2pt_tensor_destroy(g[0]);
    m2pt_tensor_destroy(g[1]);
    free(v);
  }
}

/* m2pt_scale_grads: each element times the factor, one float product. */
static void scale_grads(void **state)
{
  m2pt_context *ctx = *state;
  enum { N = 1001 };
  float *v = test_random_floats(N, 1403, 3.0f);
  const size_t shape[2] = {7, 143}, one[1] = {1};
  m2pt_tensor *g[2] = {test_tensor(ctx, 2, shape, v), test_tensor(ctx, 1, one, v)};
  const float factor = 1.0f / 3.0f;
  assert_ok(ctx, m2pt_scale_grads(ctx, g, 2, factor));
  float *got = test_read(ctx, g[0]), *first = test_read(ctx, g[1]);
  for (size_t i = 0; i < N; i++) {
    const volatile float want = v[i] * factor; /* no wider intermediate */
    assert_true(got[i] == want);
  }
  assert_true(first[0] == got[0]);
  free(got);
  free(first);
  m2pt_tensor_destroy(g[0]);
  m2pt_tensor_destroy(g[1]);
  free(v);
}

/* m2pt_accumulate_grads: y + a·x as one fma (with a = 1 the plain sum),
 * a tensor accumulated into itself, and mismatched pairs refused before any
 * pair is touched. */
static void accumulate_grads(void **state)
{
  m2pt_context *ctx = *state;
  enum { N = 1001 };
  float *x = test_random_floats(N, 1404, 3.0f), *y = test_random_floats(N, 1405, 1.0f);
  const size_t shape[2] = {7, 143}, flat[1] = {N}, one[1] = {1};
  m2pt_tensor *dst[2] = {test_tensor(ctx, 2, shape, y), test_tensor(ctx, 1, one, y)};
  m2pt_tensor *src[2] = {test_tensor(ctx, 2, shape, x), test_tensor(ctx, 1, one, x)};
  assert_ok(ctx, m2pt_accumulate_grads(ctx, dst, (const m2pt_tensor *const *)src, 2, 0.3f));
  float *got = test_read(ctx, dst[0]), *first = test_read(ctx, dst[1]);
  for (size_t i = 0; i < N; i++)
    assert_true(got[i] == fmaf(0.3f, x[i], y[i]));
  assert_true(first[0] == got[0]);
  free(got);
  free(first);
  assert_ok(ctx, m2pt_tensor_write(dst[0], y, N));
  assert_ok(ctx, m2pt_accumulate_grads(ctx, dst, (const m2pt_tensor *const *)src, 1, 1.0f));
  got = test_read(ctx, dst[0]);
  for (size_t i = 0; i < N; i++) {
    const volatile float sum = y[i] + x[i];
    assert_true(got[i] == sum);
  }
  free(got);
  /* Into itself: 2·x. */
  assert_ok(ctx, m2pt_accumulate_grads(ctx, src, (const m2pt_tensor *const *)src, 1, 1.0f));
  got = test_read(ctx, src[0]);
  for (size_t i = 0; i < N; i++)
    assert_true(got[i] == 2.0f * x[i]);
  free(got);
  /* Refused: the second pair's shapes differ, so the first is not touched. */
  m2pt_tensor *wrong = test_tensor(ctx, 1, flat, x);
  assert_ok(ctx, m2pt_tensor_write(dst[0], y, N));
  const m2pt_tensor *bad_src[2] = {src[0], wrong}, *holes[2] = {src[0], NULL};
  m2pt_tensor *twice[2] = {dst[0], dst[0]};
  assert_status(ctx, m2pt_accumulate_grads(ctx, dst, bad_src, 2, 1.0f), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_accumulate_grads(ctx, dst, holes, 2, 1.0f), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_accumulate_grads(ctx, dst, NULL, 2, 1.0f), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_accumulate_grads(ctx, twice, bad_src, 2, 1.0f),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_accumulate_grads(ctx, dst, bad_src, 1, NAN), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_accumulate_grads(NULL, dst, bad_src, 1, 1.0f),
                M2PT_ERR_INVALID_ARGUMENT);
  m2pt_context *ctx2 = test_context();
  m2pt_tensor *other = test_tensor(ctx2, 2, shape, x);
  const m2pt_tensor *foreign[1] = {other};
  assert_status(ctx, m2pt_accumulate_grads(ctx, dst, foreign, 1, 1.0f), M2PT_ERR_CONTEXT_MISMATCH);
  assert_ok(ctx, m2pt_accumulate_grads(ctx, NULL, NULL, 0, 1.0f));
  got = test_read(ctx, dst[0]);
  assert_memory_equal(got, y, N * sizeof *y);
  free(got);
  m2pt_tensor_destroy(other);
  m2pt_context_destroy(ctx2);
  m2pt_tensor_destroy(wrong);
  for (size_t i = 0; i < 2; i++) {
    m2pt_tensor_destroy(dst[i]);
    m2pt_tensor_destroy(src[i]);
  }
  free(x);
  free(y);
}

/* Lists refused whole, before anything is enqueued. */
static void clip_bad_arguments(void **state)
{
  m2pt_context *ctx = *state;
  const size_t shape[1] = {5};
  float v[5] = {1, 2, 3, 4, 5};
  m2pt_tensor *a = test_tensor(ctx, 1, shape, v), *b = test_tensor(ctx, 1, shape, v);
  m2pt_context *ctx2 = test_context();
  m2pt_tensor *other = test_tensor(ctx2, 1, shape, v);
  m2pt_tensor *list[2] = {a, b}, *twice[2] = {a, a}, *holes[2] = {a, NULL}, *mixed[2] = {a, other};
  float norm = 0.0f;
  assert_status(NULL, m2pt_clip_grad_norm(NULL, list, 2, 1.0f, &norm), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_clip_grad_norm(ctx, NULL, 2, 1.0f, &norm), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_clip_grad_norm(ctx, holes, 2, 1.0f, &norm), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_clip_grad_norm(ctx, twice, 2, 1.0f, &norm), M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(ctx), "again"));
  assert_status(ctx, m2pt_clip_grad_norm(ctx, mixed, 2, 1.0f, &norm), M2PT_ERR_CONTEXT_MISMATCH);
  assert_status(ctx, m2pt_clip_grad_norm(ctx, list, 2, 0.0f, &norm), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_clip_grad_norm(ctx, list, 2, -1.0f, &norm), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_clip_grad_norm(ctx, list, 2, NAN, &norm), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_scale_grads(NULL, list, 2, 0.5f), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_scale_grads(ctx, NULL, 1, 0.5f), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_scale_grads(ctx, twice, 2, 0.5f), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_scale_grads(ctx, mixed, 2, 0.5f), M2PT_ERR_CONTEXT_MISMATCH);
  assert_status(ctx, m2pt_scale_grads(ctx, list, 2, INFINITY), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_scale_grads(ctx, list, 2, NAN), M2PT_ERR_INVALID_ARGUMENT);
  assert_ok(ctx, m2pt_scale_grads(ctx, NULL, 0, 0.5f));
  /* Nothing moved. */
  float *got = test_read(ctx, a);
  assert_memory_equal(got, v, sizeof v);
  free(got);
  m2pt_tensor_destroy(a);
  m2pt_tensor_destroy(b);
  m2pt_tensor_destroy(other);
  m2pt_context_destroy(ctx2);
}

static void bad_arguments(void **state)
{
  m2pt_context *ctx = *state;
  const size_t shape[2] = {3, 4}, other[2] = {4, 3};
  m2pt_tensor *p = test_tensor(ctx, 2, shape, NULL), *g = test_tensor(ctx, 2, shape, NULL);
  m2pt_tensor *wrong = test_tensor(ctx, 2, other, NULL);
  m2pt_optimizer_options o = m2pt_sgd_options_default();
  m2pt_optimizer *opt = NULL;
  /* create */
  assert_status(NULL, m2pt_optimizer_create(NULL, &o, &opt), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_create(ctx, NULL, &opt), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_create(ctx, &o, NULL), M2PT_ERR_INVALID_ARGUMENT);
  m2pt_optimizer_options bad = o;
  bad.struct_size = 0;
  assert_status(ctx, m2pt_optimizer_create(ctx, &bad, &opt), M2PT_ERR_INVALID_ARGUMENT);
  bad = o;
  bad.kind = (m2pt_optimizer_kind)5;
  assert_status(ctx, m2pt_optimizer_create(ctx, &bad, &opt), M2PT_ERR_INVALID_ARGUMENT);
  bad = o;
  bad.momentum = -0.1f;
  assert_status(ctx, m2pt_optimizer_create(ctx, &bad, &opt), M2PT_ERR_INVALID_ARGUMENT);
  bad = o;
  bad.nesterov = 1; /* without momentum */
  assert_status(ctx, m2pt_optimizer_create(ctx, &bad, &opt), M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(ctx), "Nesterov"));
  bad = m2pt_adamw_options_default();
  bad.beta1 = 1.0f;
  assert_status(ctx, m2pt_optimizer_create(ctx, &bad, &opt), M2PT_ERR_INVALID_ARGUMENT);
  bad = m2pt_adamw_options_default();
  bad.beta2 = -0.5f;
  assert_status(ctx, m2pt_optimizer_create(ctx, &bad, &opt), M2PT_ERR_INVALID_ARGUMENT);
  bad = m2pt_adamw_options_default();
  bad.eps = -1e-8f;
  assert_status(ctx, m2pt_optimizer_create(ctx, &bad, &opt), M2PT_ERR_INVALID_ARGUMENT);
  assert_null(opt);
  o = m2pt_adamw_options_default();
  assert_ok(ctx, m2pt_optimizer_create(ctx, &o, &opt));
  /* groups */
  size_t group = 0;
  assert_status(ctx, m2pt_optimizer_add_group(NULL, 0.1f, 0.0f, &group),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_add_group(opt, 0.1f, 0.0f, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_add_group(opt, -0.1f, 0.0f, &group),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(ctx), "learning rate"));
  assert_status(ctx, m2pt_optimizer_add_group(opt, INFINITY, 0.0f, &group),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_add_group(opt, 0.1f, -0.01f, &group),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_ok(ctx, m2pt_optimizer_add_group(opt, 0.1f, 0.01f, &group));
  assert_status(ctx, m2pt_optimizer_set_lr(opt, group, -1.0f), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_set_lr(opt, group + 1, 1.0f), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_set_lr(NULL, group, 1.0f), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_group(opt, group + 1, NULL, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_group(NULL, group, NULL, NULL), M2PT_ERR_INVALID_ARGUMENT);
  /* params */
  assert_status(ctx, m2pt_optimizer_add_param(NULL, group, p, g), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_add_param(opt, group + 1, p, g), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_add_param(opt, group, NULL, g), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_add_param(opt, group, p, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_add_param(opt, group, p, p), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_add_param(opt, group, p, wrong), M2PT_ERR_SHAPE);
  m2pt_context *ctx2 = test_context();
  m2pt_tensor *g2 = test_tensor(ctx2, 2, shape, NULL);
  assert_status(ctx, m2pt_optimizer_add_param(opt, group, p, g2), M2PT_ERR_CONTEXT_MISMATCH);
  assert_ok(ctx, m2pt_optimizer_add_param(opt, group, p, g));
  assert_status(ctx, m2pt_optimizer_add_param(opt, group, p, wrong), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_optimizer_add_param(opt, group, p, g), M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(ctx), "already"));
  /* Still usable: with g = 0 and p = 0 a step leaves p at 0. */
  assert_status(ctx, m2pt_optimizer_step(NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_ok(ctx, m2pt_optimizer_step(opt));
  float *pv = test_read(ctx, p);
  for (size_t i = 0; i < 12; i++)
    assert_true(pv[i] == 0.0f);
  free(pv);
  m2pt_optimizer_destroy(opt);
  m2pt_optimizer_destroy(NULL);
  m2pt_tensor_destroy(g2);
  m2pt_context_destroy(ctx2);
  m2pt_tensor_destroy(p);
  m2pt_tensor_destroy(g);
  m2pt_tensor_destroy(wrong);
}

int main(int argc, char **argv)
{
  if (test_enter_data_dir(argc, argv, M2PT_OPTIM_DATA) != 0)
    return 1;
  /* One kernel per optimizer and no quirk chooses its code: no axes. */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(sgd_momentum),  cmocka_unit_test(sgd_nesterov),
      cmocka_unit_test(adamw),         cmocka_unit_test(sgd_plain_and_set_lr),
      cmocka_unit_test(schedules),     cmocka_unit_test(param_groups),
      cmocka_unit_test(bad_arguments), cmocka_unit_test(clip_golden),
      cmocka_unit_test(clip_below_max), cmocka_unit_test(clip_not_finite),
      cmocka_unit_test(scale_grads),   cmocka_unit_test(accumulate_grads),
      cmocka_unit_test(clip_bad_arguments),
  };
  return test_run_matrix("optim", 0, tests, NULL, NULL);
}
