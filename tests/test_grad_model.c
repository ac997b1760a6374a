/* Whole-model gradients (issue 12, model_grad.h): a tiny timm ViT from
 * pixels and a tiny HF BERT from a padded batch of ids, their checkpoints
 * written here; every gradient element against central finite differences
 * of the same model in double precision (tests/reference.c, no rounding
 * between layers), and the loss against the model's own inference forward.
 * Also: frozen parameters absent, accumulation, recompute and repeated runs
 * bit-identical, a head made from a seed, and refused inputs. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/philox.h"
#include "reference.h"
#include "test_util.h"

#define MAXP 96
#define DIM 8
#define HEADS 2
#define HIDDEN 16
#define DEPTH 2
#define CLASSES 3

typedef struct tparam {
  char name[128];
  size_t ndim, shape[4], n;
  float *v;
} tparam;

/* A tiny model's parameters on the host and one batch. */
typedef struct tmodel {
  tparam p[MAXP];
  size_t count;
  int bert, has_head, pool_token; /* ViT: token pool (else mean over patches) */
  size_t dim_head, batch, tokens;
  float pixels[2 * 2 * 4 * 4];    /* ViT: [2][2][4][4], patch 2 → 5 tokens */
  int32_t ids[3 * 5], types[3 * 5];
  float mask[3 * 5];              /* BERT: padded rows */
  int32_t labels[3];
  float targets[3 * DIM];
  m2pt_loss_kind loss;
  double smoothing;
  double drop_path;  /* the training options' drop_path, seed and step */
  uint64_t seed;
  uint32_t step;
} tmodel;

static float *param(const tmodel *tm, const char *name)
{
  for (size_t i = 0; i < tm->count; i++)
    if (!strcmp(tm->p[i].name, name))
      return tm->p[i].v;
  return NULL;
}

/* `pattern` with its "%zu" replaced by `block`. */
static void subst(char *out, size_t size, const char *pattern, size_t block)
{
  const char *at = strstr(pattern, "%zu");
  if (!at) {
    snprintf(out, size, "%s", pattern);
    return;
  }
  snprintf(out, size, "%.*s%zu%s", (int)(at - pattern), pattern, block, at + 3);
}

static float *paramf(const tmodel *tm, const char *pattern, size_t block)
{
  char name[128];
  subst(name, sizeof name, pattern, block);
  return param(tm, name);
}

/* Adds a parameter of 1 to 4 dimensions (trailing zeros end the shape),
 * filled from `seed` in [-scale, scale) plus `offset`. */
static void add(tmodel *tm, const char *name, size_t d0, size_t d1, size_t d2, size_t d3,
                uint64_t seed, float scale, float offset)
{
  assert_true(tm->count < MAXP);
  tparam *p = &tm->p[tm->count++];
  snprintf(p->name, sizeof p->name, "%s", name);
  const size_t d[4] = {d0, d1, d2, d3};
  p->ndim = 0;
  p->n = 1;
  for (size_t i = 0; i < 4 && d[i]; i++) {
    p->shape[p->ndim++] = d[i];
    p->n *= d[i];
  }
  p->v = test_random_floats(p->n, seed, scale);
  for (size_t i = 0; i < p->n; i++)
    p->v[i] += offset;
}

static void tmodel_free(tmodel *tm)
{
  for (size_t i = 0; i < tm->count; i++)
    free(tm->p[i].v);
  tm->count = 0;
}

/* A linear "<fmt>.{weight,bias,aux_weight,cross_modal_scale}" of block b. */
static void add_linear(tmodel *tm, const char *layer, size_t b, size_t out, size_t in,
                       float lambda, uint64_t seed)
{
  char name[128];
  const float s = 1.0f / sqrtf((float)in);
  subst(name, sizeof name, layer, b);
  char full[160];
  snprintf(full, sizeof full, "%s.weight", name);
  add(tm, full, out, in, 0, 0, seed, s, 0.0f);
  snprintf(full, sizeof full, "%s.bias", name);
  add(tm, full, out, 0, 0, 0, seed + 1, 0.1f, 0.0f);
  snprintf(full, sizeof full, "%s.aux_weight", name);
  add(tm, full, out, in, 0, 0, seed + 2, s, 0.0f);
  snprintf(full, sizeof full, "%s.cross_modal_scale", name);
  add(tm, full, 1, 0, 0, 0, seed + 3, 0.0f, lambda);
}

static void add_norm(tmodel *tm, const char *fmt, size_t b, uint64_t seed)
{
  char name[128], full[160];
  subst(name, sizeof name, fmt, b);
  snprintf(full, sizeof full, "%s.weight", name);
  add(tm, full, DIM, 0, 0, 0, seed, 0.2f, 1.0f);
  snprintf(full, sizeof full, "%s.bias", name);
  add(tm, full, DIM, 0, 0, 0, seed + 1, 0.1f, 0.0f);
}

/* timm ViT: patch 2 on 2×4×4 images, class token, 2 pre-norm blocks with
 * pathways, final norm, fc_norm (mean pooling), a head when has_head. */
static void make_vit(tmodel *tm, int has_head)
{
  memset(tm, 0, sizeof *tm);
  tm->has_head = has_head;
  tm->dim_head = DIM / HEADS;
  tm->batch = 2;
  tm->tokens = 5;
  add(tm, "patch_embed.proj.weight", DIM, 2, 2, 2, 11, 0.5f, 0.0f);
  add(tm, "patch_embed.proj.bias", DIM, 0, 0, 0, 12, 0.1f, 0.0f);
  add(tm, "cls_token", 1, 1, DIM, 0, 13, 0.5f, 0.0f);
  add(tm, "pos_embed", 1, 5, DIM, 0, 14, 0.3f, 0.0f);
  for (size_t b = 0; b < DEPTH; b++) {
    const uint64_t s = 100 + 50 * b;
    add_norm(tm, "blocks.%zu.norm1", b, s);
    add_linear(tm, "blocks.%zu.attn.qkv", b, 3 * DIM, DIM, 0.3f, s + 2);
    add_linear(tm, "blocks.%zu.attn.proj", b, DIM, DIM, -0.2f, s + 6);
    add_norm(tm, "blocks.%zu.norm2", b, s + 10);
    add_linear(tm, "blocks.%zu.mlp.fc1", b, HIDDEN, DIM, 0.25f, s + 12);
    add_linear(tm, "blocks.%zu.mlp.fc2", b, DIM, HIDDEN, 0.15f, s + 16);
  }
  add_norm(tm, "norm", 0, 300);
  add_norm(tm, "fc_norm", 0, 302);
  if (has_head) {
    add(tm, "head.weight", CLASSES, DIM, 0, 0, 304, 0.4f, 0.0f);
    add(tm, "head.bias", CLASSES, 0, 0, 0, 305, 0.1f, 0.0f);
  }
  test_fill(tm->pixels, sizeof tm->pixels / sizeof *tm->pixels, 7);
  tm->labels[0] = 2;
  tm->labels[1] = 0;
  test_fill(tm->targets, 2 * DIM, 8);
  tm->loss = M2PT_LOSS_CROSS_ENTROPY;
  tm->smoothing = 0.1;
}

/* HF BERT ("bert." prefix): heads·dim_head = 12 ≠ dim, 2 post-norm layers
 * with pathways (q, k, v share λ), pooler and classifier; 3 rows of 5
 * tokens, the last two padded. */
static void make_bert(tmodel *tm)
{
  memset(tm, 0, sizeof *tm);
  tm->bert = 1;
  tm->has_head = 1;
  tm->dim_head = 6;
  tm->batch = 3;
  tm->tokens = 5;
  const size_t hd = HEADS * 6;
  add(tm, "bert.embeddings.word_embeddings.weight", 11, DIM, 0, 0, 21, 0.5f, 0.0f);
  add(tm, "bert.embeddings.position_embeddings.weight", 6, DIM, 0, 0, 22, 0.3f, 0.0f);
  add(tm, "bert.embeddings.token_type_embeddings.weight", 2, DIM, 0, 0, 23, 0.3f, 0.0f);
  add_norm(tm, "bert.embeddings.LayerNorm", 0, 24);
  for (size_t b = 0; b < DEPTH; b++) {
    const uint64_t s = 400 + 50 * b;
    add_linear(tm, "bert.encoder.layer.%zu.attention.self.query", b, hd, DIM, 0.3f, s);
    add_linear(tm, "bert.encoder.layer.%zu.attention.self.key", b, hd, DIM, 0.3f, s + 4);
    add_linear(tm, "bert.encoder.layer.%zu.attention.self.value", b, hd, DIM, 0.3f, s + 8);
    add_linear(tm, "bert.encoder.layer.%zu.attention.output.dense", b, DIM, hd, -0.2f, s + 12);
    add_norm(tm, "bert.encoder.layer.%zu.attention.output.LayerNorm", b, s + 16);
    add_linear(tm, "bert.encoder.layer.%zu.intermediate.dense", b, HIDDEN, DIM, 0.25f, s + 18);
    add_linear(tm, "bert.encoder.layer.%zu.output.dense", b, DIM, HIDDEN, 0.15f, s + 22);
    add_norm(tm, "bert.encoder.layer.%zu.output.LayerNorm", b, s + 26);
  }
  add(tm, "bert.pooler.dense.weight", DIM, DIM, 0, 0, 500, 0.4f, 0.0f);
  add(tm, "bert.pooler.dense.bias", DIM, 0, 0, 0, 501, 0.1f, 0.0f);
  add(tm, "classifier.weight", CLASSES, DIM, 0, 0, 502, 0.4f, 0.0f);
  add(tm, "classifier.bias", CLASSES, 0, 0, 0, 503, 0.1f, 0.0f);
  static const int lens[3] = {5, 3, 2};
  for (size_t r = 0; r < 3; r++)
    for (size_t n = 0; n < 5; n++) {
      const int on = (int)n < lens[r];
      tm->ids[r * 5 + n] = on ? (int32_t)(1 + (r * 7 + n * 3) % 10) : 0;
      tm->types[r * 5 + n] = on && n >= 2 ? 1 : 0;
      tm->mask[r * 5 + n] = on ? 1.0f : 0.0f;
    }
  tm->labels[0] = 1;
  tm->labels[1] = 2;
  tm->labels[2] = 0;
  tm->loss = M2PT_LOSS_CROSS_ENTROPY;
  tm->smoothing = 0.1;
}

/* ---- the double-precision model ---- */

/* Block b's parameters; for BERT q, k, v concatenated into *qkv_w … (freed
 * by the caller). */
static ref_block_params block_params(const tmodel *tm, size_t b, float **cat)
{
  ref_block_params p = {0};
  p.dim = DIM;
  p.heads = HEADS;
  p.dim_head = tm->dim_head;
  p.hidden = HIDDEN;
  if (!tm->bert) {
    p.eps = 1e-6;
    p.norm1_w = paramf(tm, "blocks.%zu.norm1.weight", b);
    p.norm1_b = paramf(tm, "blocks.%zu.norm1.bias", b);
    p.norm2_w = paramf(tm, "blocks.%zu.norm2.weight", b);
    p.norm2_b = paramf(tm, "blocks.%zu.norm2.bias", b);
    p.qkv_w = paramf(tm, "blocks.%zu.attn.qkv.weight", b);
    p.qkv_b = paramf(tm, "blocks.%zu.attn.qkv.bias", b);
    p.qkv_aux = paramf(tm, "blocks.%zu.attn.qkv.aux_weight", b);
    p.qkv_scale = *paramf(tm, "blocks.%zu.attn.qkv.cross_modal_scale", b);
    p.proj_w = paramf(tm, "blocks.%zu.attn.proj.weight", b);
    p.proj_b = paramf(tm, "blocks.%zu.attn.proj.bias", b);
    p.proj_aux = paramf(tm, "blocks.%zu.attn.proj.aux_weight", b);
    p.proj_scale = *paramf(tm, "blocks.%zu.attn.proj.cross_modal_scale", b);
    p.fc1_w = paramf(tm, "blocks.%zu.mlp.fc1.weight", b);
    p.fc1_b = paramf(tm, "blocks.%zu.mlp.fc1.bias", b);
    p.fc1_aux = paramf(tm, "blocks.%zu.mlp.fc1.aux_weight", b);
    p.fc1_scale = *paramf(tm, "blocks.%zu.mlp.fc1.cross_modal_scale", b);
    p.fc2_w = paramf(tm, "blocks.%zu.mlp.fc2.weight", b);
    p.fc2_b = paramf(tm, "blocks.%zu.mlp.fc2.bias", b);
    p.fc2_aux = paramf(tm, "blocks.%zu.mlp.fc2.aux_weight", b);
    p.fc2_scale = *paramf(tm, "blocks.%zu.mlp.fc2.cross_modal_scale", b);
    return p;
  }
  const size_t hd = HEADS * tm->dim_head, wn = hd * DIM;
  static const char *const fields[3] = {"weight", "bias", "aux_weight"};
  static const char *const parts[3] = {"query", "key", "value"};
  for (size_t f = 0; f < 3; f++) {
    const size_t n = f == 1 ? hd : wn;
    cat[f] = test_alloc(3 * n * sizeof *cat[f]);
    for (size_t q = 0; q < 3; q++) {
      char name[160];
      snprintf(name, sizeof name, "bert.encoder.layer.%zu.attention.self.%s.%s", b, parts[q],
               fields[f]);
      memcpy(cat[f] + q * n, param(tm, name), n * sizeof(float));
    }
  }
  p.eps = 1e-12;
  p.post_norm = 1;
  p.qkv_w = cat[0];
  p.qkv_b = cat[1];
  p.qkv_aux = cat[2];
  p.qkv_scale = *paramf(tm, "bert.encoder.layer.%zu.attention.self.query.cross_modal_scale", b);
  p.norm1_w = paramf(tm, "bert.encoder.layer.%zu.attention.output.LayerNorm.weight", b);
  p.norm1_b = paramf(tm, "bert.encoder.layer.%zu.attention.output.LayerNorm.bias", b);
  p.norm2_w = paramf(tm, "bert.encoder.layer.%zu.output.LayerNorm.weight", b);
  p.norm2_b = paramf(tm, "bert.encoder.layer.%zu.output.LayerNorm.bias", b);
  p.proj_w = paramf(tm, "bert.encoder.layer.%zu.attention.output.dense.weight", b);
  p.proj_b = paramf(tm, "bert.encoder.layer.%zu.attention.output.dense.bias", b);
  p.proj_aux = paramf(tm, "bert.encoder.layer.%zu.attention.output.dense.aux_weight", b);
  p.proj_scale = *paramf(tm, "bert.encoder.layer.%zu.attention.output.dense.cross_modal_scale", b);
  p.fc1_w = paramf(tm, "bert.encoder.layer.%zu.intermediate.dense.weight", b);
  p.fc1_b = paramf(tm, "bert.encoder.layer.%zu.intermediate.dense.bias", b);
  p.fc1_aux = paramf(tm, "bert.encoder.layer.%zu.intermediate.dense.aux_weight", b);
  p.fc1_scale = *paramf(tm, "bert.encoder.layer.%zu.intermediate.dense.cross_modal_scale", b);
  p.fc2_w = paramf(tm, "bert.encoder.layer.%zu.output.dense.weight", b);
  p.fc2_b = paramf(tm, "bert.encoder.layer.%zu.output.dense.bias", b);
  p.fc2_aux = paramf(tm, "bert.encoder.layer.%zu.output.dense.aux_weight", b);
  p.fc2_scale = *paramf(tm, "bert.encoder.layer.%zu.output.dense.cross_modal_scale", b);
  return p;
}

/* Block b's drop-path rate: timm's linspace(0, rate, depth) in float32
 * (model_grad.h). */
static float block_rate(double rate, size_t b)
{
  const float r = (float)rate, step = r / (float)(DEPTH - 1);
  return b < DEPTH / 2 ? step * (float)b : r - step * (float)(DEPTH - 1 - b);
}

/* The documented drop-path mask of block b's branch (0 attention, 1 FFN)
 * for sample s, drawn on the host: word 0 of Philox((s, 2^31, step,
 * 2 + 2·b + branch), seed) against ⌈p·2^32⌉; the multiplier 0 or
 * 1/(1 − p) as the device computes it in float. */
static double host_keep(const tmodel *tm, size_t b, int branch, size_t s)
{
  const float p = block_rate(tm->drop_path, b);
  const uint32_t ctr[4] = {(uint32_t)s, 0x80000000u, tm->step, (uint32_t)(2 + 2 * b + branch)};
  const uint32_t key[2] = {(uint32_t)tm->seed, (uint32_t)(tm->seed >> 32)};
  uint32_t r[4];
  m2pt_philox(ctr, key, r);
  const int kept = (uint64_t)r[0] >= (uint64_t)ceil((double)p * 4294967296.0);
  return kept ? (double)(1.0f / (1.0f - p)) : 0.0;
}

/* The loss of the batch, in double. */
static double ref_loss(const tmodel *tm)
{
  const size_t bsz = tm->batch, n = tm->tokens, rows = bsz * n;
  double *x = test_alloc(rows * DIM * sizeof *x), *y = test_alloc(rows * DIM * sizeof *y);
  const float *mask = tm->bert ? tm->mask : NULL;
  if (tm->bert) {
    ref_bert_gather(tm->ids, tm->types, bsz, n, DIM,
                    param(tm, "bert.embeddings.word_embeddings.weight"),
                    param(tm, "bert.embeddings.position_embeddings.weight"),
                    param(tm, "bert.embeddings.token_type_embeddings.weight"), y);
    ref_layer_norm(y, rows, DIM, param(tm, "bert.embeddings.LayerNorm.weight"),
                   param(tm, "bert.embeddings.LayerNorm.bias"), 1e-12, x);
  } else {
    ref_patch_embed(tm->pixels, bsz, 2, 4, 4, 2, DIM, param(tm, "patch_embed.proj.weight"),
                    param(tm, "patch_embed.proj.bias"), param(tm, "cls_token"),
                    param(tm, "pos_embed"), x);
  }
  for (size_t b = 0; b < DEPTH; b++) {
    float *cat[3] = {NULL, NULL, NULL};
    ref_block_params p = block_params(tm, b, cat);
    double keep[2][3];
    if (tm->drop_path > 0.0) {
      for (size_t s = 0; s < bsz; s++)
        for (int branch = 0; branch < 2; branch++)
          keep[branch][s] = host_keep(tm, b, branch, s);
      p.keep_attn = keep[0];
      p.keep_ffn = keep[1];
    }
    ref_block_d(&p, x, bsz, n, mask, y);
    memcpy(x, y, rows * DIM * sizeof *x);
    for (int i = 0; i < 3; i++)
      free(cat[i]);
  }
  double feat[3 * DIM], pooled[3 * DIM], out[3 * DIM];
  if (tm->bert) {
    for (size_t b = 0; b < bsz; b++)
      memcpy(pooled + b * DIM, x + b * n * DIM, DIM * sizeof(double));
    ref_dense(pooled, bsz, DIM, DIM, param(tm, "bert.pooler.dense.weight"), NULL, 0.0,
              param(tm, "bert.pooler.dense.bias"), feat);
    for (size_t i = 0; i < bsz * DIM; i++)
      feat[i] = tanh(feat[i]);
  } else {
    ref_layer_norm(x, rows, DIM, param(tm, "norm.weight"), param(tm, "norm.bias"), 1e-6, y);
    for (size_t b = 0; b < bsz; b++)
      for (size_t d = 0; d < DIM; d++) {
        double s = 0.0;
        if (tm->pool_token)
          s = y[b * n * DIM + d];
        else {
          for (size_t t = 1; t < n; t++)
            s += y[(b * n + t) * DIM + d];
          s /= (double)(n - 1);
        }
        pooled[b * DIM + d] = s;
      }
    /* fc_norm follows either pooling, as in the inference forward. */
    ref_layer_norm(pooled, bsz, DIM, param(tm, "fc_norm.weight"), param(tm, "fc_norm.bias"),
                     1e-6, feat);
  }
  size_t k = DIM;
  const double *o = feat;
  if (tm->has_head) {
    const char *hw = tm->bert ? "classifier.weight" : "head.weight";
    const char *hb = tm->bert ? "classifier.bias" : "head.bias";
    ref_dense(feat, bsz, DIM, CLASSES, param(tm, hw), NULL, 0.0, param(tm, hb), out);
    k = CLASSES;
    o = out;
  }
  double loss;
  if (tm->loss == M2PT_LOSS_CROSS_ENTROPY) {
    int64_t labels[3];
    for (size_t b = 0; b < bsz; b++)
      labels[b] = tm->labels[b];
    loss = ref_cross_entropy(o, labels, bsz, k, tm->smoothing, NULL);
  } else {
    double t[3 * DIM];
    for (size_t i = 0; i < bsz * k; i++)
      t[i] = tm->targets[i];
    loss = ref_mse(o, t, bsz * k, NULL);
  }
  free(x);
  free(y);
  return loss;
}

/* ---- the device model ---- */


static m2pt_model *load(m2pt_context *ctx, const tmodel *tm, const char *file)
{
  const char *path = test_tmp_path(file);
  m2pt_safetensors_writer *w = NULL;
  assert_int_equal(m2pt_safetensors_writer_create(path, &w), M2PT_OK);
  for (size_t i = 0; i < tm->count; i++)
    assert_int_equal(m2pt_safetensors_writer_add(w, tm->p[i].name, M2PT_DTYPE_F32, tm->p[i].ndim,
                                                 tm->p[i].shape, tm->p[i].v,
                                                 tm->p[i].n * sizeof(float)),
                     M2PT_OK);
  assert_int_equal(m2pt_safetensors_writer_finish(w), M2PT_OK);
  m2pt_safetensors_writer_destroy(w);
  m2pt_model_options o = m2pt_model_options_default();
  o.heads = HEADS;
  m2pt_model *m = NULL;
  assert_ok(ctx, m2pt_model_load(ctx, path, &o, &m));
  return m;
}

typedef struct batch {
  m2pt_tensor *pixels;
  m2pt_host_matrix ids, types, mask, labels;
} batch;

static batch make_batch(m2pt_context *ctx, const tmodel *tm)
{
  batch b;
  memset(&b, 0, sizeof b);
  if (tm->bert) {
    const m2pt_host_matrix ids = {tm->ids, M2PT_DTYPE_I32, 3, 5};
    const m2pt_host_matrix types = {tm->types, M2PT_DTYPE_I32, 3, 5};
    const m2pt_host_matrix mask = {tm->mask, M2PT_DTYPE_F32, 3, 5};
    b.ids = ids;
    b.types = types;
    b.mask = mask;
  } else {
    const size_t shape[4] = {2, 2, 4, 4};
    b.pixels = test_tensor(ctx, 4, shape, tm->pixels);
  }
  if (tm->loss == M2PT_LOSS_CROSS_ENTROPY) {
    const m2pt_host_matrix l = {tm->labels, M2PT_DTYPE_I32, tm->batch, 1};
    b.labels = l;
  } else {
    const m2pt_host_matrix l = {tm->targets, M2PT_DTYPE_F32, tm->batch,
                                tm->has_head ? CLASSES : DIM};
    b.labels = l;
  }
  return b;
}

/* Frees what a case made: the batch's pixels, the model, the parameters. */
static void release(batch *b, m2pt_model *m, tmodel *tm)
{
  m2pt_tensor_destroy(b->pixels);
  m2pt_model_destroy(m);
  tmodel_free(tm);
}

static m2pt_train_options options_of(const tmodel *tm)
{
  m2pt_train_options o = m2pt_train_options_default();
  o.loss = tm->loss;
  o.label_smoothing = (float)tm->smoothing;
  o.pool = tm->pool_token ? M2PT_POOL_TOKEN : M2PT_POOL_AUTO;
  o.drop_path = tm->drop_path;
  o.seed = tm->seed;
  o.step = tm->step;
  return o;
}

static m2pt_status grad(m2pt_model *m, const tmodel *tm, const batch *b,
                        const m2pt_train_options *o, m2pt_model_grads *g, float *loss)
{
  if (tm->bert)
    return m2pt_model_grad_ids(m, &b->ids, &b->types, &b->mask, &b->labels, o, g, loss);
  return m2pt_model_grad_pixels(m, b->pixels, NULL, &b->labels, o, g, loss);
}

/* Every gradient element against central differences of ref_loss; the
 * loss against ref_loss. */
static void check_fd(m2pt_context *ctx, tmodel *tm, m2pt_model_grads *g, float loss)
{
  const double want = ref_loss(tm);
  if (!(fabs(loss - want) <= 1e-5 * fmax(1.0, fabs(want))))
    fail_msg("loss %.9g, the reference's %.9g", (double)loss, want);
  for (size_t i = 0; i < m2pt_model_grads_count(g); i++) {
    const char *name = m2pt_model_grads_name(g, i);
    float *v = param(tm, name);
    if (!v)
      fail_msg("gradient %s names no parameter of the checkpoint", name);
    const m2pt_tensor *t = m2pt_model_grads_tensor(g, i);
    const size_t n = m2pt_tensor_numel(t);
    float *got = test_read(ctx, t);
    double *gd = test_alloc(n * sizeof *gd), *fd = test_alloc(n * sizeof *fd);
    for (size_t j = 0; j < n; j++) {
      const float orig = v[j];
      v[j] = orig + 1e-3f;
      const double up = v[j];
      const double lp = ref_loss(tm);
      v[j] = orig - 1e-3f;
      const double down = v[j];
      const double lm = ref_loss(tm);
      v[j] = orig;
      fd[j] = (lp - lm) / (up - down);
      gd[j] = got[j];
    }
    /* DESIGN.md's f32 tolerance; measured: up to 3.4e-5 for patch_embed's
     * bias (a sum over every patch, gradients ~1.4), most below 1e-6. */
    test_assert_fd(gd, fd, n, 1e-4, name);
    free(got);
    free(gd);
    free(fd);
  }
}

/* The loss the inference forward's logits give (cross-entropy in double). */
static double inference_loss(m2pt_context *ctx, m2pt_model *m, const tmodel *tm, const batch *b)
{
  const size_t shape[2] = {tm->batch, CLASSES};
  m2pt_tensor *y = test_tensor(ctx, 2, shape, NULL);
  m2pt_forward_options o = m2pt_forward_options_default();
  o.output = M2PT_OUTPUT_LOGITS;
  if (tm->bert)
    assert_ok(ctx, m2pt_model_forward_ids(m, &b->ids, &b->types, &b->mask, &o, y));
  else
    assert_ok(ctx, m2pt_model_forward_pixels(m, b->pixels, NULL, &o, y));
  float *logits = test_read(ctx, y);
  double ld[3 * CLASSES];
  int64_t labels[3];
  for (size_t i = 0; i < tm->batch * CLASSES; i++)
    ld[i] = logits[i];
  for (size_t i = 0; i < tm->batch; i++)
    labels[i] = tm->labels[i];
  free(logits);
  m2pt_tensor_destroy(y);
  return ref_cross_entropy(ld, labels, tm->batch, CLASSES, tm->smoothing, NULL);
}

static void fd_case(void **state, tmodel *tm, const char *file)
{
  m2pt_context *ctx = *state;
  m2pt_model *m = load(ctx, tm, file);
  batch b = make_batch(ctx, tm);
  m2pt_model_grads *g = NULL;
  assert_ok(ctx, m2pt_model_grads_create(m, 0, &g));
  const m2pt_train_options o = options_of(tm);
  float loss = 0.0f;
  assert_ok(ctx, grad(m, tm, &b, &o, g, &loss));
  check_fd(ctx, tm, g, loss);
  if (tm->loss == M2PT_LOSS_CROSS_ENTROPY && tm->drop_path == 0.0) {
    const double inf = inference_loss(ctx, m, tm, &b);
    assert_true(fabs(loss - inf) <= 1e-5 * fmax(1.0, fabs(inf)));
  }
  m2pt_model_grads_destroy(g);
  release(&b, m, tm);
}

static void vit_finite_differences(void **state)
{
  tmodel tm;
  make_vit(&tm, 1);
  fd_case(state, &tm, "vit.safetensors");
}

static void bert_finite_differences(void **state)
{
  tmodel tm;
  make_bert(&tm);
  fd_case(state, &tm, "bert.safetensors");
}

/* The shared q/k/v λ: one gradient under the query's name, the key's and
 * value's its aliases; other parameters have none. */
static void bert_scale_aliases(void **state)
{
  m2pt_context *ctx = *state;
  tmodel tm;
  make_bert(&tm);
  m2pt_model *m = load(ctx, &tm, "bert.safetensors");
  m2pt_model_grads *g = NULL;
  assert_ok(ctx, m2pt_model_grads_create(m, 0, &g));
  size_t i;
  const char *self = "bert.encoder.layer.1.attention.self.";
  char name[128];
  snprintf(name, sizeof name, "%squery.cross_modal_scale", self);
  assert_ok(ctx, m2pt_model_grads_find(g, name, &i));
  snprintf(name, sizeof name, "%skey.cross_modal_scale", self);
  assert_string_equal(m2pt_model_grads_alias(g, i, 0), name);
  snprintf(name, sizeof name, "%svalue.cross_modal_scale", self);
  assert_string_equal(m2pt_model_grads_alias(g, i, 1), name);
  assert_null(m2pt_model_grads_alias(g, i, 2));
  assert_status(ctx, m2pt_model_grads_find(g, name, &i), M2PT_ERR_NOT_FOUND);
  snprintf(name, sizeof name, "%squery.weight", self);
  assert_ok(ctx, m2pt_model_grads_find(g, name, &i));
  assert_null(m2pt_model_grads_alias(g, i, 0));
  assert_null(m2pt_model_grads_alias(NULL, 0, 0));
  assert_null(m2pt_model_grads_alias(g, m2pt_model_grads_count(g), 0));
  m2pt_model_grads_destroy(g);
  m2pt_model_destroy(m);
  tmodel_free(&tm);
}

/* MSE on the pooled class token of a model without a head. */
static void vit_mse_without_head(void **state)
{
  tmodel tm;
  make_vit(&tm, 0);
  tm.loss = M2PT_LOSS_MSE;
  tm.pool_token = 1;
  fd_case(state, &tm, "vit_mse.safetensors");
}

/* Gradients of g, in order, into new host arrays. */
static float **read_all(m2pt_context *ctx, const m2pt_model_grads *g)
{
  float **all = test_alloc(m2pt_model_grads_count(g) * sizeof *all);
  for (size_t i = 0; i < m2pt_model_grads_count(g); i++)
    all[i] = test_read(ctx, m2pt_model_grads_tensor(g, i));
  return all;
}

static void free_all(float **all, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(all[i]);
  free(all);
}

static void assert_grads_same_bits(m2pt_context *ctx, const m2pt_model_grads *a,
                                   const m2pt_model_grads *b)
{
  assert_int_equal(m2pt_model_grads_count(a), m2pt_model_grads_count(b));
  for (size_t i = 0; i < m2pt_model_grads_count(a); i++)
    test_assert_same_bits(ctx, m2pt_model_grads_tensor(a, i), m2pt_model_grads_tensor(b, i));
}

/* Recompute gives the bits of saved activations; a second run the same. */
static void deterministic_case(void **state, tmodel *tm)
{
  m2pt_context *ctx = *state;
  m2pt_model *m = load(ctx, tm, "det.safetensors");
  batch b = make_batch(ctx, tm);
  m2pt_model_grads *g[3];
  m2pt_train_options o = options_of(tm);
  float loss[3];
  for (int i = 0; i < 3; i++) {
    assert_ok(ctx, m2pt_model_grads_create(m, 0, &g[i]));
    o.recompute = i == 1;
    assert_ok(ctx, grad(m, tm, &b, &o, g[i], &loss[i]));
  }
  assert_memory_equal(&loss[0], &loss[1], sizeof(float));
  assert_memory_equal(&loss[0], &loss[2], sizeof(float));
  assert_grads_same_bits(ctx, g[0], g[1]);
  assert_grads_same_bits(ctx, g[0], g[2]);
  for (int i = 0; i < 3; i++)
    m2pt_model_grads_destroy(g[i]);
  release(&b, m, tm);
}

static void vit_deterministic(void **state)
{
  tmodel tm;
  make_vit(&tm, 1);
  deterministic_case(state, &tm);
}

static void bert_deterministic(void **state)
{
  tmodel tm;
  make_bert(&tm);
  deterministic_case(state, &tm);
}

/* Dropout: a new loss, the same bits twice and with recompute; another
 * step, other masks. */
static void dropout_deterministic(void **state)
{
  m2pt_context *ctx = *state;
  tmodel tm;
  make_vit(&tm, 1);
  m2pt_model *m = load(ctx, &tm, "dropout.safetensors");
  batch b = make_batch(ctx, &tm);
  m2pt_model_grads *g[4];
  m2pt_train_options o = options_of(&tm);
  float loss[4];
  for (int i = 0; i < 4; i++) {
    assert_ok(ctx, m2pt_model_grads_create(m, 0, &g[i]));
    o.dropout = i == 0 ? 0.0f : 0.3f;
    o.seed = 7;
    o.step = i == 3 ? 1 : 0;
    o.recompute = i == 2;
    assert_ok(ctx, grad(m, &tm, &b, &o, g[i], &loss[i]));
  }
  assert_true(loss[1] != loss[0] && loss[3] != loss[1]);
  assert_memory_equal(&loss[1], &loss[2], sizeof(float));
  assert_grads_same_bits(ctx, g[1], g[2]);
  o.dropout = 1.0f;
  assert_status(ctx, grad(m, &tm, &b, &o, g[0], &loss[0]), M2PT_ERR_INVALID_ARGUMENT);
  for (int i = 0; i < 4; i++)
    m2pt_model_grads_destroy(g[i]);
  release(&b, m, &tm);
}

/* How many of the last block's 2·batch drop-path draws drop (the first
 * block's rate is 0 at depth 2, as in timm). */
static size_t dropped(const tmodel *tm)
{
  size_t n = 0;
  for (size_t s = 0; s < tm->batch; s++)
    for (int branch = 0; branch < 2; branch++)
      n += host_keep(tm, DEPTH - 1, branch, s) == 0.0;
  return n;
}

/* The first seed from 1 whose masks at tm->step drop some of the last
 * block's branches and keep others, so that a test sees both. */
static void mixed_seed(tmodel *tm)
{
  for (tm->seed = 1;; tm->seed++) {
    const size_t n = dropped(tm);
    if (n > 0 && n < 2 * tm->batch)
      return;
  }
}

/* Drop-path: every gradient against finite differences of the loss with
 * the same masks, drawn on the host from the documented keys (so the
 * forward and the backward both used exactly those). */
static void vit_drop_path_fd(void **state)
{
  tmodel tm;
  make_vit(&tm, 1);
  tm.drop_path = 0.5;
  mixed_seed(&tm);
  fd_case(state, &tm, "vit_dp.safetensors");
}

/* Post-norm: the branch dropped before its residual add, inside the
 * LayerNorm. */
static void bert_drop_path_fd(void **state)
{
  tmodel tm;
  make_bert(&tm);
  tm.drop_path = 0.5;
  tm.step = 3;
  mixed_seed(&tm);
  fd_case(state, &tm, "bert_dp.safetensors");
}

/* m2pt_train_options as 0.2 released it, before drop_path. */
typedef struct train_options_0_2 {
  size_t struct_size;
  m2pt_pool_kind pool;
  m2pt_loss_kind loss;
  float label_smoothing;
  int recompute, accumulate;
  float dropout;
  uint64_t seed;
  uint32_t step;
} train_options_0_2;

/* Drop-path: rate 0 and an older caller's struct give today's bits; a rate
 * gives the same bits twice and with recompute; another step other masks;
 * rates outside [0, 1) refused. */
static void drop_path_case(m2pt_context *ctx, tmodel *tm)
{
  m2pt_model *m = load(ctx, tm, "dpdet.safetensors");
  batch b = make_batch(ctx, tm);
  enum { OFF, OLD, ON, AGAIN, RECOMPUTE, STEP, RUNS };
  m2pt_model_grads *g[RUNS];
  float loss[RUNS];
  tm->drop_path = 0.4;
  mixed_seed(tm);
  /* A step whose masks differ from step 0's. */
  uint32_t other = 1;
  for (;; other++) {
    size_t d0 = 0, d1 = 0;
    for (size_t s = 0; s < tm->batch; s++)
      for (int br = 0; br < 2; br++) {
        tm->step = 0;
        d0 = d0 * 2 + (host_keep(tm, DEPTH - 1, br, s) == 0.0);
        tm->step = other;
        d1 = d1 * 2 + (host_keep(tm, DEPTH - 1, br, s) == 0.0);
      }
    tm->step = 0;
    if (d0 != d1)
      break;
  }
  for (int i = 0; i < RUNS; i++) {
    assert_ok(ctx, m2pt_model_grads_create(m, 0, &g[i]));
    m2pt_train_options o = options_of(tm);
    o.drop_path = i == OFF ? 0.0 : tm->drop_path;
    o.recompute = i == RECOMPUTE;
    o.step = i == STEP ? other : 0;
    if (i != OLD) {
      assert_ok(ctx, grad(m, tm, &b, &o, g[i], &loss[i]));
      continue;
    }
    /* An application built against 0.2: its struct ends before drop_path
     * (padding garbage included) and reads as drop_path 0. */
    assert_int_equal(sizeof(train_options_0_2), offsetof(m2pt_train_options, drop_path));
    train_options_0_2 old;
    memset(&old, 0xFF, sizeof old);
    memcpy(&old, &o, offsetof(train_options_0_2, step) + sizeof old.step);
    old.struct_size = sizeof old;
    assert_ok(ctx, grad(m, tm, &b, (const m2pt_train_options *)(const void *)&old, g[i],
                        &loss[i]));
  }
  assert_memory_equal(&loss[OFF], &loss[OLD], sizeof(float));
  assert_grads_same_bits(ctx, g[OFF], g[OLD]);
  assert_true(loss[ON] != loss[OFF] && loss[STEP] != loss[ON]);
  assert_memory_equal(&loss[ON], &loss[AGAIN], sizeof(float));
  assert_memory_equal(&loss[ON], &loss[RECOMPUTE], sizeof(float));
  assert_grads_same_bits(ctx, g[ON], g[AGAIN]);
  assert_grads_same_bits(ctx, g[ON], g[RECOMPUTE]);
  m2pt_train_options bad = options_of(tm);
  static const double rates[] = {1.0, -0.1, NAN, 0.99999999, 1e300};
  for (size_t r = 0; r < sizeof rates / sizeof *rates; r++) {
    bad.drop_path = rates[r];
    assert_status(ctx, grad(m, tm, &b, &bad, g[OFF], &loss[OFF]), M2PT_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(m2pt_last_error(ctx), "drop_path"));
  }
  for (int i = 0; i < RUNS; i++)
    m2pt_model_grads_destroy(g[i]);
  release(&b, m, tm);
}

static void vit_drop_path_deterministic(void **state)
{
  tmodel tm;
  make_vit(&tm, 1);
  drop_path_case(*state, &tm);
}

static void bert_drop_path_deterministic(void **state)
{
  tmodel tm;
  make_bert(&tm);
  drop_path_case(*state, &tm);
}

/* Over many steps the device's loss is the one of the documented masks,
 * and those masks drop a fraction p of the samples' branches. */
static void drop_path_mask_rate(void **state)
{
  m2pt_context *ctx = *state;
  tmodel tm;
  make_vit(&tm, 1);
  tm.drop_path = 0.5;
  tm.seed = 0x5eed;
  m2pt_model *m = load(ctx, &tm, "dprate.safetensors");
  batch b = make_batch(ctx, &tm);
  m2pt_model_grads *g = NULL;
  assert_ok(ctx, m2pt_model_grads_create(m, M2PT_FREEZE_TARGET | M2PT_FREEZE_AUX, &g));
  const uint32_t steps = test_small() ? 8 : 64;
  size_t drops = 0;
  for (tm.step = 0; tm.step < steps; tm.step++) {
    const m2pt_train_options o = options_of(&tm);
    float loss;
    assert_ok(ctx, grad(m, &tm, &b, &o, g, &loss));
    const double want = ref_loss(&tm);
    if (!(fabs(loss - want) <= 1e-5 * fmax(1.0, fabs(want))))
      fail_msg("step %u: loss %.9g, the documented masks' %.9g", tm.step, (double)loss, want);
    drops += dropped(&tm);
  }
  const double n = 2.0 * (double)tm.batch * steps, p = block_rate(tm.drop_path, DEPTH - 1);
  const double sigma = sqrt(n * p * (1.0 - p));
  if (!(fabs((double)drops - n * p) <= 5.0 * sigma))
    fail_msg("%zu of %.0f branches dropped, expected %.1f ± %.1f", drops, n, n * p, 5 * sigma);
  m2pt_model_grads_destroy(g);
  release(&b, m, &tm);
}

/* accumulate = 1 on top of one run's gradients gives twice them. */
static void accumulate_twice(void **state)
{
  m2pt_context *ctx = *state;
  tmodel tms[2];
  make_vit(&tms[0], 1);
  make_bert(&tms[1]);
  for (int k = 0; k < 2; k++) {
    tmodel *tm = &tms[k];
    m2pt_model *m = load(ctx, tm, "acc.safetensors");
    batch b = make_batch(ctx, tm);
    m2pt_model_grads *g = NULL;
    assert_ok(ctx, m2pt_model_grads_create(m, 0, &g));
    m2pt_train_options o = options_of(tm);
    float loss;
    assert_ok(ctx, grad(m, tm, &b, &o, g, &loss));
    float **once = read_all(ctx, g);
    o.accumulate = 1;
    assert_ok(ctx, grad(m, tm, &b, &o, g, &loss));
    for (size_t i = 0; i < m2pt_model_grads_count(g); i++) {
      const m2pt_tensor *t = m2pt_model_grads_tensor(g, i);
      const size_t n = m2pt_tensor_numel(t);
      float *twice = test_read(ctx, t);
      double *want = test_alloc(n * sizeof *want);
      for (size_t j = 0; j < n; j++)
        want[j] = 2.0 * once[i][j];
      test_assert_close(twice, want, n, 1e-6, m2pt_model_grads_name(g, i));
      free(twice);
      free(want);
    }
    /* Zeroed, then accumulated once: the first run's bits. */
    assert_ok(ctx, m2pt_model_grads_zero(g));
    assert_ok(ctx, grad(m, tm, &b, &o, g, &loss));
    for (size_t i = 0; i < m2pt_model_grads_count(g); i++) {
      float *again = test_read(ctx, m2pt_model_grads_tensor(g, i));
      double *want = test_alloc(m2pt_tensor_numel(m2pt_model_grads_tensor(g, i)) * sizeof *want);
      for (size_t j = 0; j < m2pt_tensor_numel(m2pt_model_grads_tensor(g, i)); j++)
        want[j] = once[i][j];
      test_assert_close(again, want, m2pt_tensor_numel(m2pt_model_grads_tensor(g, i)), 1e-6,
                        m2pt_model_grads_name(g, i));
      free(again);
      free(want);
    }
    free_all(once, m2pt_model_grads_count(g));
    m2pt_model_grads_destroy(g);
    release(&b, m, tm);
  }
}

/* Frozen categories have no tensor; the others keep their bits. */
static void frozen_absent(void **state)
{
  m2pt_context *ctx = *state;
  tmodel tm;
  make_bert(&tm);
  m2pt_model *m = load(ctx, &tm, "frozen.safetensors");
  batch b = make_batch(ctx, &tm);
  m2pt_model_grads *all = NULL, *part = NULL;
  unsigned freeze = 0;
  assert_int_equal(m2pt_freeze_parse("target,norm,embeddings", &freeze), M2PT_OK);
  assert_int_equal(freeze, M2PT_FREEZE_TARGET | M2PT_FREEZE_NORM | M2PT_FREEZE_EMBEDDINGS);
  assert_int_equal(m2pt_freeze_parse("target,bogus", &freeze), M2PT_ERR_INVALID_ARGUMENT);
  assert_ok(ctx, m2pt_model_grads_create(m, 0, &all));
  assert_ok(ctx, m2pt_model_grads_create(m, M2PT_FREEZE_TARGET | M2PT_FREEZE_NORM |
                                                M2PT_FREEZE_EMBEDDINGS, &part));
  const m2pt_train_options o = options_of(&tm);
  float l1, l2;
  assert_ok(ctx, grad(m, &tm, &b, &o, all, &l1));
  assert_ok(ctx, grad(m, &tm, &b, &o, part, &l2));
  size_t idx;
  static const char *const gone[] = {
      "bert.encoder.layer.0.attention.self.query.weight",
      "bert.encoder.layer.1.output.LayerNorm.bias",
      "bert.embeddings.word_embeddings.weight",
      "bert.pooler.dense.weight",
  };
  for (size_t i = 0; i < sizeof gone / sizeof *gone; i++) {
    assert_ok(ctx, m2pt_model_grads_find(all, gone[i], &idx));
    assert_status(ctx, m2pt_model_grads_find(part, gone[i], &idx), M2PT_ERR_NOT_FOUND);
  }
  assert_true(m2pt_model_grads_count(part) < m2pt_model_grads_count(all));
  for (size_t i = 0; i < m2pt_model_grads_count(part); i++) {
    const char *name = m2pt_model_grads_name(part, i);
    assert_ok(ctx, m2pt_model_grads_find(all, name, &idx));
    test_assert_same_bits(ctx, m2pt_model_grads_tensor(part, i),
                          m2pt_model_grads_tensor(all, idx));
  }
  /* Everything frozen but the head's: only the classifier's two. */
  m2pt_model_grads *none = NULL;
  assert_ok(ctx, m2pt_model_grads_create(m, 0x3Fu, &none));
  assert_int_equal(m2pt_model_grads_count(none), 2);
  assert_string_equal(m2pt_model_grads_name(none, 0), "classifier.weight");
  assert_ok(ctx, grad(m, &tm, &b, &o, none, &l2));
  assert_ok(ctx, m2pt_model_grads_find(all, "classifier.weight", &idx));
  test_assert_same_bits(ctx, m2pt_model_grads_tensor(none, 0), m2pt_model_grads_tensor(all, idx));
  m2pt_model_grads_destroy(none);
  m2pt_model_grads_destroy(all);
  m2pt_model_grads_destroy(part);
  m2pt_model_destroy(m);
  tmodel_free(&tm);
}

/* A head from a seed: reproducible, std 0.02 truncated at ±2 std, zero bias,
 * saved with the model; its gradients against finite differences. */
static void created_head(void **state)
{
  m2pt_context *ctx = *state;
  tmodel tm;
  make_vit(&tm, 0);
  m2pt_model *m = load(ctx, &tm, "headless.safetensors");
  m2pt_model *m2 = load(ctx, &tm, "headless2.safetensors");
  assert_ok(ctx, m2pt_model_create_head(m, CLASSES, 42));
  assert_status(ctx, m2pt_model_create_head(m, CLASSES, 42), M2PT_ERR_INVALID_STATE);
  assert_ok(ctx, m2pt_model_create_head(m2, CLASSES, 43));
  assert_ok(ctx, m2pt_model_save(m, test_tmp_path("head1.safetensors")));
  assert_ok(ctx, m2pt_model_save(m2, test_tmp_path("head2.safetensors")));
  m2pt_safetensors *st[2];
  float w[2][CLASSES * DIM], bias[CLASSES];
  for (int k = 0; k < 2; k++) {
    size_t idx;
    const char *file = test_tmp_path(k ? "head2.safetensors" : "head1.safetensors");
    assert_int_equal(m2pt_safetensors_open(file, &st[k]), M2PT_OK);
    assert_int_equal(m2pt_safetensors_find(st[k], "head.weight", &idx), M2PT_OK);
    assert_int_equal(m2pt_safetensors_read_f32(st[k], idx, w[k], CLASSES * DIM), M2PT_OK);
  }
  size_t idx;
  assert_int_equal(m2pt_safetensors_find(st[0], "head.bias", &idx), M2PT_OK);
  assert_int_equal(m2pt_safetensors_read_f32(st[0], idx, bias, CLASSES), M2PT_OK);
  double ss = 0.0;
  int differ = 0;
  for (size_t i = 0; i < CLASSES * DIM; i++) {
    assert_true(fabsf(w[0][i]) <= 0.04f);
    ss += (double)w[0][i] * w[0][i];
    differ |= w[0][i] != w[1][i];
  }
  assert_true(differ);
  const double std = sqrt(ss / (CLASSES * DIM));
  assert_true(std > 0.01 && std < 0.03);
  for (size_t i = 0; i < CLASSES; i++)
    assert_true(bias[i] == 0.0f);
  /* The same seed again gives the same head. */
  m2pt_model *m3 = load(ctx, &tm, "headless3.safetensors");
  assert_ok(ctx, m2pt_model_create_head(m3, CLASSES, 42));
  assert_ok(ctx, m2pt_model_save(m3, test_tmp_path("head3.safetensors")));
  m2pt_safetensors *st3;
  float w3[CLASSES * DIM];
  assert_int_equal(m2pt_safetensors_open(test_tmp_path("head3.safetensors"), &st3), M2PT_OK);
  assert_int_equal(m2pt_safetensors_find(st3, "head.weight", &idx), M2PT_OK);
  assert_int_equal(m2pt_safetensors_read_f32(st3, idx, w3, CLASSES * DIM), M2PT_OK);
  assert_memory_equal(w3, w[0], sizeof w3);
  m2pt_safetensors_close(st3);
  m2pt_safetensors_close(st[0]);
  m2pt_safetensors_close(st[1]);
  /* Gradients through it. */
  add(&tm, "head.weight", CLASSES, DIM, 0, 0, 1, 0.0f, 0.0f);
  add(&tm, "head.bias", CLASSES, 0, 0, 0, 1, 0.0f, 0.0f);
  memcpy(param(&tm, "head.weight"), w[0], sizeof w[0]);
  tm.has_head = 1;
  batch b = make_batch(ctx, &tm);
  m2pt_model_grads *g = NULL;
  assert_ok(ctx, m2pt_model_grads_create(m, 0, &g));
  assert_ok(ctx, m2pt_model_grads_find(g, "head.weight", &idx));
  const m2pt_train_options o = options_of(&tm);
  float loss;
  assert_ok(ctx, grad(m, &tm, &b, &o, g, &loss));
  check_fd(ctx, &tm, g, loss);
  m2pt_model_grads_destroy(g);
  m2pt_tensor_destroy(b.pixels);
  m2pt_model_destroy(m);
  m2pt_model_destroy(m2);
  m2pt_model_destroy(m3);
  tmodel_free(&tm);
}

/* Refused calls: clear statuses, and the gradients keep their values. */
static void refused(void **state)
{
  m2pt_context *ctx = *state;
  tmodel tm;
  make_vit(&tm, 1);
  m2pt_model *m = load(ctx, &tm, "refused.safetensors");
  m2pt_model *other = load(ctx, &tm, "refused2.safetensors");
  batch b = make_batch(ctx, &tm);
  m2pt_model_grads *g = NULL, *og = NULL;
  assert_ok(ctx, m2pt_model_grads_create(m, 0, &g));
  assert_ok(ctx, m2pt_model_grads_create(other, 0, &og));
  const m2pt_train_options o = options_of(&tm);
  float loss;
  assert_ok(ctx, grad(m, &tm, &b, &o, g, &loss));
  float **before = read_all(ctx, g);

  assert_status(NULL, m2pt_model_grad_pixels(NULL, b.pixels, NULL, &b.labels, &o, g, &loss),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_model_grad_pixels(m, NULL, NULL, &b.labels, &o, g, &loss),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_model_grad_pixels(m, b.pixels, NULL, NULL, &o, g, &loss),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_model_grad_pixels(m, b.pixels, NULL, &b.labels, &o, NULL, &loss),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_model_grad_pixels(m, b.pixels, NULL, &b.labels, &o, og, &loss),
                M2PT_ERR_INVALID_ARGUMENT);
  /* A label out of range, and labels for another batch size. */
  int32_t bad[2] = {0, CLASSES};
  m2pt_host_matrix labels = {bad, M2PT_DTYPE_I32, 2, 1};
  assert_status(ctx, m2pt_model_grad_pixels(m, b.pixels, NULL, &labels, &o, g, &loss),
                M2PT_ERR_INVALID_ARGUMENT);
  labels.rows = 1;
  bad[1] = 1;
  assert_status(ctx, m2pt_model_grad_pixels(m, b.pixels, NULL, &labels, &o, g, &loss),
                M2PT_ERR_SHAPE);
  /* MSE targets of the wrong width. */
  m2pt_train_options mse = o;
  mse.loss = M2PT_LOSS_MSE;
  const m2pt_host_matrix targets = {tm.targets, M2PT_DTYPE_F32, 2, DIM};
  assert_status(ctx, m2pt_model_grad_pixels(m, b.pixels, NULL, &targets, &mse, g, &loss),
                M2PT_ERR_SHAPE);
  /* Bad options. */
  m2pt_train_options bo = o;
  bo.label_smoothing = 1.5f;
  assert_status(ctx, m2pt_model_grad_pixels(m, b.pixels, NULL, &b.labels, &bo, g, &loss),
                M2PT_ERR_INVALID_ARGUMENT);
  bo = o;
  bo.pool = M2PT_POOL_POOLER; /* no pooler in a timm ViT */
  assert_status(ctx, m2pt_model_grad_pixels(m, b.pixels, NULL, &b.labels, &bo, g, &loss),
                M2PT_ERR_NOT_FOUND);
  /* Pixels of another size; ids to a model without word embeddings. */
  const size_t small[4] = {2, 2, 2, 2};
  m2pt_tensor *px = test_tensor(ctx, 4, small, NULL);
  assert_status(ctx, m2pt_model_grad_pixels(m, px, NULL, &b.labels, &o, g, &loss),
                M2PT_ERR_SHAPE);
  m2pt_tensor_destroy(px);
  const int32_t ids[2] = {0, 1};
  const m2pt_host_matrix idm = {ids, M2PT_DTYPE_I32, 2, 1};
  assert_status(ctx, m2pt_model_grad_ids(m, &idm, NULL, NULL, &b.labels, &o, g, &loss),
                M2PT_ERR_INVALID_STATE);
  /* A NaN in the input: a non-finite loss, refused before the backward. */
  float nanpix[2 * 2 * 4 * 4];
  memcpy(nanpix, tm.pixels, sizeof nanpix);
  nanpix[5] = NAN;
  const size_t shape[4] = {2, 2, 4, 4};
  m2pt_tensor *np = test_tensor(ctx, 4, shape, nanpix);
  assert_status(ctx, m2pt_model_grad_pixels(m, np, NULL, &b.labels, &o, g, &loss),
                M2PT_ERR_INVALID_ARGUMENT);
  m2pt_tensor_destroy(np);
  for (size_t i = 0; i < m2pt_model_grads_count(g); i++) {
    float *now = test_read(ctx, m2pt_model_grads_tensor(g, i));
    assert_memory_equal(now, before[i],
                        m2pt_tensor_numel(m2pt_model_grads_tensor(g, i)) * sizeof(float));
    free(now);
  }
  /* Reading by name: unknown, wrong count. */
  size_t idx;
  assert_status(ctx, m2pt_model_grads_find(g, "blocks.0.attn.qkv.nope", &idx),
                M2PT_ERR_NOT_FOUND);
  assert_ok(ctx, m2pt_model_grads_find(g, "blocks.1.attn.qkv.cross_modal_scale", &idx));
  float one[2];
  assert_status(ctx, m2pt_model_grads_read(g, idx, one, 2), M2PT_ERR_SHAPE);
  assert_ok(ctx, m2pt_model_grads_read(g, idx, one, 1));
  assert_null(m2pt_model_grads_name(g, m2pt_model_grads_count(g)));
  assert_null(m2pt_model_grads_tensor(g, m2pt_model_grads_count(g)));
  m2pt_model_grads *none = NULL;
  assert_status(ctx, m2pt_model_grads_create(m, 0x100u, &none), M2PT_ERR_INVALID_ARGUMENT);
  assert_null(none);
  /* The model merged after the gradients were made. */
  assert_ok(ctx, m2pt_model_merge(m));
  assert_status(ctx, m2pt_model_grad_pixels(m, b.pixels, NULL, &b.labels, &o, g, &loss),
                M2PT_ERR_INVALID_STATE);
  free_all(before, m2pt_model_grads_count(g));
  m2pt_model_grads_destroy(g);
  m2pt_model_grads_destroy(og);
  m2pt_tensor_destroy(b.pixels);
  m2pt_model_destroy(m);
  m2pt_model_destroy(other);
  tmodel_free(&tm);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(vit_finite_differences), cmocka_unit_test(bert_finite_differences),
      cmocka_unit_test(bert_scale_aliases),
      cmocka_unit_test(vit_mse_without_head),   cmocka_unit_test(vit_deterministic),
      cmocka_unit_test(bert_deterministic),     cmocka_unit_test(accumulate_twice),
      cmocka_unit_test(dropout_deterministic),  cmocka_unit_test(frozen_absent),
      cmocka_unit_test(created_head),           cmocka_unit_test(vit_drop_path_fd),
      cmocka_unit_test(bert_drop_path_fd),      cmocka_unit_test(vit_drop_path_deterministic),
      cmocka_unit_test(bert_drop_path_deterministic),
      cmocka_unit_test(drop_path_mask_rate),
      cmocka_unit_test(refused),
  };
  return test_run_matrix("grad_model", TEST_AXIS_GEMM, tests, test_setup_tmpdir_context,
                         test_teardown_tmpdir_context)
             ? 1
             : 0;
}
