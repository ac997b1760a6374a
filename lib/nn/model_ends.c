/* A model's ends: the embeddings before the blocks (BERT's from token ids,
 * ViT's from pixels), the pooling, BERT's pooler and the head after them,
 * and the whole forward from inputs to hidden states, pooled features,
 * sentence embeddings or logits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context_impl.h"
#include "core/error.h"
#include "core/options.h"
#include "core/workspace.h"
#include "common/philox.h"
#include "linear_internal.h"
#include "m2pt/model_grad.h"
#include "model_internal.h"
#include "ops/block_ops.h"
#include "ops/embedding_ops.h"
#include "ops/tensor_checks.h"

/* Checkpoint names of the ends, relative to the root, per naming. */
typedef struct ends_naming {
  const char *word, *position, *token_type, *emb_ln; /* BERT */
  const char *patch, *cls, *pos, *fc_norm;           /* ViT */
  const char *pooler, *head;
} ends_naming;

static const ends_naming timm_ends = {NULL,        NULL,        NULL,      NULL, "patch_embed.proj",
                                      "cls_token", "pos_embed", "fc_norm", NULL, "head"};
static const ends_naming bert_ends = {"embeddings.word_embeddings.weight",
                                      "embeddings.position_embeddings.weight",
                                      "embeddings.token_type_embeddings.weight",
                                      "embeddings.LayerNorm",
                                      NULL,
                                      NULL,
                                      NULL,
                                      NULL,
                                      "pooler.dense",
                                      "classifier"};
static const ends_naming hf_vit_ends = {NULL,
                                        NULL,
                                        NULL,
                                        NULL,
                                        "embeddings.patch_embeddings.projection",
                                        "embeddings.cls_token",
                                        "embeddings.position_embeddings",
                                        NULL,
                                        "pooler.dense",
                                        "classifier"};

static const ends_naming *ends_of(const m2pt_model *m)
{
  return m->scheme->naming == M2PT_NAMING_BERT     ? &bert_ends
         : m->scheme->naming == M2PT_NAMING_HF_VIT ? &hf_vit_ends
                                                   : &timm_ends;
}

m2pt_status m2pt_model_find_root(m2pt_model *m)
{
  /* "bert.encoder.layer" → "bert.", "blocks" → "", "model.blocks" → "model.";
   * a prefix of another shape: its parent. */
  const char *stack = m->scheme->stack;
  const size_t lp = strlen(m->prefix), ls = strlen(stack);
  size_t keep;
  if (lp >= ls && !strcmp(m->prefix + lp - ls, stack) &&
      (lp == ls || m->prefix[lp - ls - 1] == '.'))
    keep = lp - ls;
  else {
    const char *dot = strrchr(m->prefix, '.');
    keep = dot ? (size_t)(dot - m->prefix) + 1 : 0;
  }
  m->root = malloc(keep + 1);
  if (!m->root)
    return m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  memcpy(m->root, m->prefix, keep);
  m->root[keep] = '\0';
  return M2PT_OK;
}

/* "<root><rel><suffix>" when the checkpoint has it, else "<rel><suffix>" at
 * the top level (BertForSequenceClassification's classifier beside "bert."),
 * into buf; 0 when neither is there. */
static int find_name(const m2pt_model *m, const char *rel, const char *suffix, char *buf,
                     size_t size)
{
  size_t index;
  snprintf(buf, size, "%s%s%s", m->root, rel, suffix);
  if (m2pt_safetensors_find(m->st, buf, &index) == M2PT_OK)
    return 1;
  snprintf(buf, size, "%s%s", rel, suffix);
  return m->root[0] && m2pt_safetensors_find(m->st, buf, &index) == M2PT_OK;
}

/* Reads tensor `name` into a new device tensor of its shape (leading 1s
 * dropped beyond 4 dimensions are not expected: checked). */
static m2pt_status load_tensor(m2pt_model *m, const m2pt_model_source *src, const char *name,
                               m2pt_tensor **out)
{
  m2pt_safetensors_info info;
  size_t index;
  M2PT_TRY(m2pt_model_find_tensor(src, name, &info, &index));
  if (info.ndim < 1 || info.ndim > M2PT_MAX_DIMS || info.numel == 0)
    return m2pt_fail(m->ctx, M2PT_ERR_FORMAT, "%s: tensor \"%s\" must have 1 to 4 dimensions",
                     m->path, name);
  float *buf = malloc(info.numel * sizeof *buf);
  if (!buf)
    return m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  m2pt_status s = m2pt_safetensors_read_f32(m->st, index, buf, info.numel);
  if (s != M2PT_OK)
    s = m2pt_model_io_fail(m->ctx, s);
  if (s == M2PT_OK)
    s = m2pt_tensor_create(m->ctx, info.ndim, info.shape, out);
  if (s == M2PT_OK)
    s = m2pt_tensor_write(*out, buf, info.numel);
  free(buf);
  return s;
}

/* An optional tensor: loaded when "<root>rel<suffix>" is there. */
static m2pt_status load_optional(m2pt_model *m, const m2pt_model_source *src, const char *rel,
                                 const char *suffix, m2pt_tensor **out)
{
  char name[600];
  if (!rel || !find_name(m, rel, suffix, name, sizeof name))
    return M2PT_OK;
  return load_tensor(m, src, name, out);
}

static m2pt_status bad_shape(const m2pt_model *m, const m2pt_tensor *t, const char *what,
                             const char *want)
{
  char got[96];
  return m2pt_fail(m->ctx, M2PT_ERR_FORMAT, "%s: %s has shape %s, expected %s (dim %zu)",
                   m->path, what, m2pt_shape_string(t, got, sizeof got), want, m->cfg.dim);
}

static int has(const m2pt_model *m, const char *name)
{
  size_t index;
  return m2pt_safetensors_find(m->st, name, &index) == M2PT_OK;
}

/* Pooler or head: "<name>.weight" [out][in], its bias, and a stored pathway
 * ("aux_weight", "cross_modal_scale", optionally "aux_bias"). */
static m2pt_status load_end(m2pt_model *m, const m2pt_model_source *src, int e, const char *rel)
{
  char name[600], t[700];
  if (!rel || !find_name(m, rel, ".weight", name, sizeof name))
    return M2PT_OK;
  name[strlen(name) - strlen(".weight")] = '\0';
  m2pt_model_end *end = &m->ends[e];
  if (!(end->name = strdup(name)))
    return m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  snprintf(t, sizeof t, "%s.weight", name);
  m2pt_safetensors_info info;
  size_t wi;
  M2PT_TRY(m2pt_model_find_tensor(src, t, &info, &wi));
  if (info.ndim != 2 || info.shape[1] != m->cfg.dim ||
      (e == M2PT_END_POOLER && info.shape[0] != m->cfg.dim))
    return m2pt_fail(m->ctx, M2PT_ERR_FORMAT, "%s: \"%s\" must be [%s][%zu]", m->path, t,
                     e == M2PT_END_POOLER ? "dim" : "classes", m->cfg.dim);
  end->out = info.shape[0];
  end->in = info.shape[1];
  char bname[700], aw[700], sc[700], ab[700];
  snprintf(bname, sizeof bname, "%s.bias", name);
  snprintf(aw, sizeof aw, "%s.aux_weight", name);
  snprintf(sc, sizeof sc, "%s.cross_modal_scale", name);
  snprintf(ab, sizeof ab, "%s.aux_bias", name);
  const int bias = has(m, bname), pathway = has(m, aw), aux_bias = has(m, ab);
  if (pathway != has(m, sc) || (aux_bias && (!pathway || !bias)))
    return m2pt_fail(m->ctx, M2PT_ERR_FORMAT, "%s: \"%s\" has a partial pathway", m->path, name);
  const unsigned flags = (bias ? M2PT_LINEAR_BIAS : 0) | (pathway ? M2PT_LINEAR_PATHWAY : 0) |
                         (aux_bias ? M2PT_LINEAR_PATHWAY_BIAS : 0);
  M2PT_TRY(m2pt_linear_create(m->ctx, end->in, end->out, flags, &end->linear));
  const size_t n = end->in * end->out;
  float *buf = malloc(n * sizeof *buf);
  if (!buf)
    return m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  const size_t wshape[2] = {end->out, end->in}, bshape[1] = {end->out}, one = 1;
  const char *names[4] = {t, bname, aw, ab};
  m2pt_status s = M2PT_OK;
  for (int f = 0; s == M2PT_OK && f < 4; f++) {
    const int two = f == 0 || f == 2;
    if ((f == 1 && !bias) || (f == 2 && !pathway) || (f == 3 && !aux_bias))
      continue;
    m2pt_safetensors_info ti;
    size_t idx;
    s = m2pt_model_find_tensor(src, names[f], &ti, &idx);
    if (s == M2PT_OK && (ti.ndim != (two ? 2u : 1u) || ti.shape[0] != wshape[0] ||
                         (two && ti.shape[1] != wshape[1])))
      s = m2pt_fail(m->ctx, M2PT_ERR_FORMAT, "%s: \"%s\" does not match \"%s\"", m->path,
                    names[f], t);
    if (s == M2PT_OK && (s = m2pt_safetensors_read_f32(m->st, idx, buf, ti.numel)) != M2PT_OK)
      s = m2pt_model_io_fail(m->ctx, s);
    if (s == M2PT_OK)
      s = f == 0   ? m2pt_linear_set_weight(end->linear, buf, n)
          : f == 1 ? m2pt_linear_set_bias(end->linear, buf, bshape[0])
          : f == 2 ? m2pt_linear_set_aux_weight(end->linear, buf, n)
                   : m2pt_linear_set_aux_bias(end->linear, buf, bshape[0]);
  }
  if (s == M2PT_OK && pathway) {
    size_t idx;
    m2pt_safetensors_info ti;
    float lambda = 0.0f;
    s = m2pt_model_find_tensor(src, sc, &ti, &idx);
    if (s == M2PT_OK && ti.numel != one)
      s = m2pt_fail(m->ctx, M2PT_ERR_FORMAT, "%s: \"%s\" must hold one value", m->path, sc);
    if (s == M2PT_OK && (s = m2pt_safetensors_read_f32(m->st, idx, &lambda, 1)) != M2PT_OK)
      s = m2pt_model_io_fail(m->ctx, s);
    if (s == M2PT_OK)
      s = m2pt_linear_set_scale(end->linear, lambda); /* refuses a non-finite λ */
  }
  free(buf);
  return s;
}

m2pt_status m2pt_model_load_ends(m2pt_model *m, const m2pt_model_source *src)
{
  const ends_naming *n = ends_of(m);
  const size_t dim = m->cfg.dim;
  M2PT_TRY(load_optional(m, src, n->word, "", &m->word));
  if (m->word) {
    M2PT_TRY(load_optional(m, src, n->position, "", &m->position));
    M2PT_TRY(load_optional(m, src, n->token_type, "", &m->token_type));
    M2PT_TRY(load_optional(m, src, n->emb_ln, ".weight", &m->emb_ln_w));
    M2PT_TRY(load_optional(m, src, n->emb_ln, ".bias", &m->emb_ln_b));
    if (m->word->ndim != 2 || m->word->shape[1] != dim)
      return bad_shape(m, m->word, "the word embeddings", "[vocab][dim]");
    if (!m->position || !m->emb_ln_w) {
      /* Not a whole embedding (a block-stack checkpoint with a word table
       * alone): the model runs from hidden states only, as before. */
      m2pt_tensor *ts[] = {m->word, m->position, m->token_type, m->emb_ln_w, m->emb_ln_b};
      for (size_t i = 0; i < 5; i++)
        m2pt_tensor_destroy(ts[i]);
      m->word = m->position = m->token_type = m->emb_ln_w = m->emb_ln_b = NULL;
    }
  }
  if (m->word) {
    if (m->position->ndim != 2 || m->position->shape[1] != dim)
      return bad_shape(m, m->position, "the position embeddings", "[P][dim]");
    if (m->token_type && (m->token_type->ndim != 2 || m->token_type->shape[1] != dim))
      return bad_shape(m, m->token_type, "the token type embeddings", "[T][dim]");
    if (!m->emb_ln_w || m->emb_ln_w->numel != dim || (m->emb_ln_b && m->emb_ln_b->numel != dim))
      return m2pt_fail(m->ctx, M2PT_ERR_FORMAT,
                       "%s: the embeddings' LayerNorm is missing or not [%zu]", m->path, dim);
  }
  M2PT_TRY(load_optional(m, src, n->patch, ".weight", &m->patch_w));
  if (m->patch_w) {
    M2PT_TRY(load_optional(m, src, n->patch, ".bias", &m->patch_b));
    M2PT_TRY(load_optional(m, src, n->cls, "", &m->cls));
    M2PT_TRY(load_optional(m, src, n->pos, "", &m->pos));
    if (m->patch_w->ndim != 4 || m->patch_w->shape[0] != dim ||
        m->patch_w->shape[2] != m->patch_w->shape[3])
      return bad_shape(m, m->patch_w, "the patch embedding", "[dim][C][P][P]");
    if ((m->patch_b && m->patch_b->numel != dim) || (m->cls && m->cls->numel != dim))
      return m2pt_fail(m->ctx, M2PT_ERR_FORMAT,
                       "%s: the patch bias and the class token must have %zu values", m->path,
                       dim);
    if (m->pos && m->pos->numel % dim != 0)
      return bad_shape(m, m->pos, "the position embeddings", "[1][N][dim]");
  }
  M2PT_TRY(load_optional(m, src, n->fc_norm, ".weight", &m->fc_norm_w));
  M2PT_TRY(load_optional(m, src, n->fc_norm, ".bias", &m->fc_norm_b));
  if ((m->fc_norm_w && m->fc_norm_w->numel != dim) || (m->fc_norm_b && !m->fc_norm_w))
    return m2pt_fail(m->ctx, M2PT_ERR_FORMAT, "%s: fc_norm must be [%zu]", m->path, dim);
  M2PT_TRY(load_end(m, src, M2PT_END_POOLER, n->pooler));
  return load_end(m, src, M2PT_END_HEAD, n->head);
}

void m2pt_model_free_ends(m2pt_model *m)
{
  m2pt_tensor *ts[] = {m->word,    m->position, m->token_type, m->emb_ln_w, m->emb_ln_b,
                       m->patch_w, m->patch_b,  m->cls,        m->pos,      m->fc_norm_w,
                       m->fc_norm_b};
  for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
    m2pt_tensor_destroy(ts[i]);
  for (int e = 0; e < M2PT_MODEL_ENDS; e++) {
    m2pt_linear_destroy(m->ends[e].linear);
    free(m->ends[e].name);
  }
  free(m->root);
}

int m2pt_model_end_of(const m2pt_model *m, const char *name, int *field)
{
  for (int e = 0; e < M2PT_MODEL_ENDS; e++) {
    const char *n = m->ends[e].name;
    const size_t len = n ? strlen(n) : 0;
    if (!n || strncmp(name, n, len) != 0 || name[len] != '.')
      continue;
    for (int f = 0; f < M2PT_FIELDS; f++)
      if (!strcmp(name + len + 1, m2pt_field_names[f])) {
        *field = f;
        return e;
      }
    if (!strcmp(name + len + 1, "aux_bias")) {
      *field = M2PT_FIELDS;
      return e;
    }
  }
  return -1;
}

int m2pt_model_end_index(const m2pt_model *m, const char *layer)
{
  if (!m || !layer)
    return -1;
  for (int e = 0; e < M2PT_MODEL_ENDS; e++) {
    const char *n = m->ends[e].name;
    if (!n)
      continue;
    const char *rel = e == M2PT_END_POOLER ? "pooler.dense" : ends_of(m)->head;
    if (!strcmp(layer, n) || !strcmp(layer, rel))
      return e;
  }
  return -1;
}

int m2pt_model_end_tensor_name(const m2pt_model *m, int which, char *buf, size_t size)
{
  const ends_naming *n = ends_of(m);
  const m2pt_tensor *ts[M2PT_END_TENSORS] = {
      m->word,    m->position, m->token_type, m->emb_ln_w, m->emb_ln_b, m->patch_w,
      m->patch_b, m->cls,      m->pos,        m->fc_norm_w, m->fc_norm_b};
  const char *rel[M2PT_END_TENSORS] = {n->word,  n->position, n->token_type, n->emb_ln,
                                       n->emb_ln, n->patch,   n->patch,      n->cls,
                                       n->pos,    n->fc_norm, n->fc_norm};
  const char *suffix[M2PT_END_TENSORS] = {"", "", "", ".weight", ".bias", ".weight", ".bias",
                                          "", "", ".weight", ".bias"};
  if (which < 0 || which >= M2PT_END_TENSORS || !ts[which] || !rel[which])
    return 0;
  return find_name(m, rel[which], suffix[which], buf, size);
}

m2pt_tensor *m2pt_model_end_tensor(const m2pt_model *m, int which)
{
  m2pt_tensor *ts[M2PT_END_TENSORS] = {
      m->word,    m->position, m->token_type, m->emb_ln_w, m->emb_ln_b, m->patch_w,
      m->patch_b, m->cls,      m->pos,        m->fc_norm_w, m->fc_norm_b};
  return which >= 0 && which < M2PT_END_TENSORS ? ts[which] : NULL;
}

m2pt_status m2pt_model_create_head(m2pt_model *m, size_t classes, uint64_t seed)
{
  static const char fn[] = "m2pt_model_create_head";
  M2PT_REQUIRE(NULL, m != NULL, "%s: model is NULL", fn);
  M2PT_REQUIRE(m->ctx, classes > 0 && classes <= UINT32_MAX / 2, "%s: classes = %zu", fn,
               classes);
  m2pt_model_end *end = &m->ends[M2PT_END_HEAD];
  if (end->linear)
    return m2pt_fail(m->ctx, M2PT_ERR_INVALID_STATE, "%s: %s has a head (%s) already", fn,
                     m->path, end->name);
  const size_t dim = m->cfg.dim, n = classes * dim;
  /* timm's "head" sits under the model's root; HF's "classifier" beside it. */
  const int timm = m->scheme->naming == M2PT_NAMING_TIMM;
  const char *rel = ends_of(m)->head;
  char *name = malloc(strlen(m->root) + strlen(rel) + 1);
  float *w = malloc(n * sizeof *w);
  m2pt_linear *lin = NULL;
  m2pt_status s = name && w ? M2PT_OK
                            : m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  if (s == M2PT_OK) {
    sprintf(name, "%s%s", timm ? m->root : "", rel);
    m2pt_trunc_normal(seed, 0.02f, w, n);
    s = m2pt_linear_create(m->ctx, dim, classes, M2PT_LINEAR_BIAS, &lin);
  }
  if (s == M2PT_OK)
    s = m2pt_linear_set_weight(lin, w, n); /* the bias starts at zero */
  free(w);
  if (s != M2PT_OK) {
    m2pt_linear_destroy(lin);
    free(name);
    return s;
  }
  end->name = name;
  end->linear = lin;
  end->in = dim;
  end->out = classes;
  return M2PT_OK;
}

/* ---- the whole forward ---- */

m2pt_status m2pt_model_output_shape(const m2pt_model *m, m2pt_output_kind kind, size_t batch,
                                    size_t tokens, size_t *ndim, size_t shape[3])
{
  M2PT_REQUIRE(NULL, m != NULL, "m2pt_model_output_shape: model is NULL");
  M2PT_REQUIRE(m->ctx, ndim && shape, "m2pt_model_output_shape: NULL argument");
  M2PT_TRY(m2pt_check_enum(m->ctx, (int)kind, M2PT_OUTPUT_LOGITS, "m2pt_model_output_shape",
                           "output kind"));
  if (kind == M2PT_OUTPUT_LOGITS && !m->ends[M2PT_END_HEAD].linear)
    return m2pt_fail(m->ctx, M2PT_ERR_NOT_FOUND, "%s has no head (head or classifier)", m->path);
  shape[0] = batch;
  if (kind == M2PT_OUTPUT_HIDDEN) {
    *ndim = 3;
    shape[1] = tokens;
    shape[2] = m->cfg.dim;
  } else {
    *ndim = 2;
    shape[1] = kind == M2PT_OUTPUT_LOGITS ? m->ends[M2PT_END_HEAD].out : m->cfg.dim;
  }
  return M2PT_OK;
}

/* The pooling the caller asked for, or the checkpoint's: BERT's and HF
 * ViTModel's pooler where there is one, timm's 'avg' where fc_norm is (timm
 * builds fc_norm only for global_pool 'avg'), else the class token. */
m2pt_pool_kind m2pt_model_pool_of(const m2pt_model *m, m2pt_pool_kind asked)
{
  if (asked != M2PT_POOL_AUTO)
    return asked;
  if (m->ends[M2PT_END_POOLER].linear)
    return M2PT_POOL_POOLER;
  return m->fc_norm_w ? M2PT_POOL_MEAN : M2PT_POOL_TOKEN;
}

/* A tensor view of a workspace buffer (never destroyed). */
static m2pt_tensor view(m2pt_context *ctx, cl_mem buf, size_t ndim, const size_t *shape)
{
  m2pt_tensor t;
  memset(&t, 0, sizeof t);
  t.ctx = ctx;
  t.buffer = buf;
  t.ndim = ndim;
  t.numel = 1;
  for (size_t i = 0; i < ndim; i++) {
    t.shape[i] = shape[i];
    t.numel *= shape[i];
  }
  return t;
}

/* Checks what the kind needs before anything runs, so a refused call
 * enqueues nothing. */
static m2pt_status check_run(m2pt_model *m, const m2pt_forward_options *o, size_t batch,
                             size_t tokens, const m2pt_tensor *y, const char *fn)
{
  M2PT_TRY(m2pt_check_enum(m->ctx, (int)o->output, M2PT_OUTPUT_LOGITS, fn, "output kind"));
  M2PT_TRY(m2pt_check_enum(m->ctx, (int)o->pool, M2PT_POOL_POOLER, fn, "pool kind"));
  const m2pt_pool_kind pool = m2pt_model_pool_of(m, o->pool);
  if ((o->output == M2PT_OUTPUT_POOLED || o->output == M2PT_OUTPUT_LOGITS) &&
      pool == M2PT_POOL_POOLER && !m->ends[M2PT_END_POOLER].linear)
    return m2pt_fail(m->ctx, M2PT_ERR_NOT_FOUND, "%s: %s has no pooler (pooler.dense)", fn,
                     m->path);
  size_t ndim, shape[3];
  M2PT_TRY(m2pt_model_output_shape(m, o->output, batch, tokens, &ndim, shape));
  const m2pt_tensor want = view(m->ctx, NULL, ndim, shape);
  return m2pt_check_same_shape(m->ctx, y, &want, fn, "y", "the output");
}

/* The blocks and the chosen end on embeddings `x` [B][N][dim]. */
static m2pt_status run(m2pt_model *m, const m2pt_tensor *x, const m2pt_tensor *mask,
                       const m2pt_forward_options *o, size_t prefix, m2pt_tensor *y)
{
  m2pt_context *ctx = m->ctx;
  const size_t b = x->shape[0], n = x->shape[1], dim = m->cfg.dim;
  if (o->output == M2PT_OUTPUT_HIDDEN)
    return m2pt_model_forward(m, x, mask, y);
  cl_mem hbuf, pbuf, qbuf;
  M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_FINAL, x->numel * sizeof(float), &hbuf));
  m2pt_tensor h = view(ctx, hbuf, 3, x->shape);
  M2PT_TRY(m2pt_model_forward(m, x, mask, &h));
  const cl_mem mbuf = mask ? mask->buffer : NULL;
  const int to_y = o->output != M2PT_OUTPUT_LOGITS;
  if (o->output == M2PT_OUTPUT_MEAN) /* sentence-transformers: every token, by the mask */
    return m2pt_op_pool(ctx, hbuf, mbuf, 0, b, n, dim, 0, o->normalize, y->buffer);
  M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_POOL, b * dim * sizeof(float), &pbuf));
  const m2pt_pool_kind pool = m2pt_model_pool_of(m, o->pool);
  cl_mem pooled = pbuf;
  if (pool == M2PT_POOL_POOLER) {
    /* BertPooler: tanh(dense(h[:, 0])). */
    M2PT_TRY(m2pt_op_pool(ctx, hbuf, NULL, 1, b, n, dim, 0, 0, pbuf));
    M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_HEAD, b * dim * sizeof(float), &qbuf));
    pooled = to_y ? y->buffer : qbuf;
    M2PT_TRY(m2pt_linear_forward_buffers(m->ends[M2PT_END_POOLER].linear, pbuf, b, pooled));
    M2PT_TRY(m2pt_op_tanh(ctx, pooled, b * dim));
  } else {
    /* timm forward_head: pool (token, or the mean of the tokens after the
     * class token), then fc_norm. */
    pooled = to_y ? y->buffer : pbuf;
    const int token = pool == M2PT_POOL_TOKEN;
    M2PT_TRY(m2pt_op_pool(ctx, hbuf, token ? NULL : mbuf, token, b, n, dim, token ? 0 : prefix,
                          0, pooled));
    if (m->fc_norm_w)
      M2PT_TRY(m2pt_op_layer_norm(ctx, pooled, m->fc_norm_w->buffer,
                                  m->fc_norm_b ? m->fc_norm_b->buffer : NULL, m->cfg.eps, b, dim,
                                  pooled));
  }
  if (to_y)
    return o->normalize ? m2pt_op_l2_normalize(ctx, y->buffer, b, dim) : M2PT_OK;
  return m2pt_linear_forward_buffers(m->ends[M2PT_END_HEAD].linear, pooled, b, y->buffer);
}

/* The options, the mask checked and uploaded ([B][N] floats in mv). */
/* m2pt_forward_options as first released (core/options.h). */
#define FORWARD_OPTIONS_SIZE_0_2 sizeof(m2pt_forward_options)

static m2pt_status prepare(m2pt_model *m, const m2pt_forward_options *options,
                           const m2pt_host_matrix *mask, size_t b, size_t n, const char *fn,
                           m2pt_forward_options *o, m2pt_tensor *mv, int *has_mask)
{
  *o = m2pt_forward_options_default();
  M2PT_TRY(m2pt_options_read(m->ctx, o, sizeof *o, FORWARD_OPTIONS_SIZE_0_2, options,
                             "m2pt_forward_options", fn));
  *has_mask = mask != NULL;
  if (!mask)
    return M2PT_OK;
  float *host = malloc(b * n * sizeof *host);
  if (!host)
    return m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  m2pt_status s = m2pt_host_mask_check(m->ctx, mask, b, n, fn, host);
  cl_mem buf = NULL;
  if (s == M2PT_OK)
    s = m2pt_workspace_upload(m->ctx, M2PT_WS_MASK, host, b * n * sizeof *host,
                              "uploading the attention mask", &buf);
  free(host);
  const size_t shape[2] = {b, n};
  *mv = view(m->ctx, buf, 2, shape);
  return s;
}

/* What both forwards do before their embedding: options and mask read and
 * checked, the output checked, and the embeddings' buffer *e [B][N][dim]. */
static m2pt_status begin(m2pt_model *m, const m2pt_forward_options *options,
                         const m2pt_host_matrix *mask, size_t b, size_t n, const m2pt_tensor *y,
                         const char *fn, m2pt_forward_options *o, m2pt_tensor *mv, int *has_mask,
                         m2pt_tensor *e)
{
  M2PT_TRY(prepare(m, options, mask, b, n, fn, o, mv, has_mask));
  M2PT_TRY(check_run(m, o, b, n, y, fn));
  cl_mem ebuf;
  M2PT_TRY(m2pt_workspace_get(m->ctx, M2PT_WS_EMBED, b * n * m->cfg.dim * sizeof(float), &ebuf));
  const size_t shape[3] = {b, n, m->cfg.dim};
  *e = view(m->ctx, ebuf, 3, shape);
  return M2PT_OK;
}

m2pt_status m2pt_model_forward_ids(m2pt_model *m, const m2pt_host_matrix *ids,
                                   const m2pt_host_matrix *token_types,
                                   const m2pt_host_matrix *mask,
                                   const m2pt_forward_options *options, m2pt_tensor *y)
{
  static const char fn[] = "m2pt_model_forward_ids";
  M2PT_REQUIRE(NULL, m != NULL, "%s: model is NULL", fn);
  m2pt_context *ctx = m->ctx;
  M2PT_REQUIRE(ctx, ids != NULL, "%s: ids is NULL", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, y, "m2pt_model_forward_ids: y"));
  if (!m->word)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE, "%s: %s has no word embeddings", fn, m->path);
  if (!m->heads)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE, "%s: the number of heads was not given", fn);
  M2PT_REQUIRE(ctx, ids->rows > 0 && ids->cols > 0, "%s: ids are [%zu][%zu]", fn, ids->rows,
               ids->cols);
  const size_t b = ids->rows, n = ids->cols;
  m2pt_forward_options o;
  m2pt_tensor mv, e;
  int has_mask;
  M2PT_TRY(begin(m, options, mask, b, n, y, fn, &o, &mv, &has_mask, &e));
  M2PT_TRY(m2pt_bert_embeddings(ctx, ids, token_types, m->word, m->position, m->token_type,
                                m->emb_ln_w, m->emb_ln_b, m->cfg.eps, &e));
  return run(m, &e, has_mask ? &mv : NULL, &o, 0, y);
}

m2pt_status m2pt_model_forward_hidden(m2pt_model *m, const m2pt_tensor *x,
                                      const m2pt_host_matrix *mask,
                                      const m2pt_forward_options *options, m2pt_tensor *y)
{
  static const char fn[] = "m2pt_model_forward_hidden";
  M2PT_REQUIRE(NULL, m != NULL, "%s: model is NULL", fn);
  m2pt_context *ctx = m->ctx;
  M2PT_TRY(m2pt_check_tensor(ctx, x, "m2pt_model_forward_hidden: x"));
  M2PT_TRY(m2pt_check_tensor(ctx, y, "m2pt_model_forward_hidden: y"));
  if (!m->heads)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE, "%s: the number of heads was not given", fn);
  char sx[96];
  if (x->ndim != 3 || x->shape[2] != m->cfg.dim)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: x %s must be [B][N][%zu]", fn,
                     m2pt_shape_string(x, sx, sizeof sx), m->cfg.dim);
  const size_t b = x->shape[0], n = x->shape[1];
  m2pt_forward_options o;
  m2pt_tensor mv;
  int has_mask;
  M2PT_TRY(prepare(m, options, mask, b, n, fn, &o, &mv, &has_mask));
  M2PT_TRY(check_run(m, &o, b, n, y, fn));
  return run(m, x, has_mask ? &mv : NULL, &o, m->cls ? 1 : 0, y);
}

m2pt_status m2pt_model_forward_pixels(m2pt_model *m, const m2pt_tensor *pixels,
                                      const m2pt_host_matrix *mask,
                                      const m2pt_forward_options *options, m2pt_tensor *y)
{
  static const char fn[] = "m2pt_model_forward_pixels";
  M2PT_REQUIRE(NULL, m != NULL, "%s: model is NULL", fn);
  m2pt_context *ctx = m->ctx;
  M2PT_TRY(m2pt_check_tensor(ctx, pixels, "m2pt_model_forward_pixels: pixels"));
  M2PT_TRY(m2pt_check_tensor(ctx, y, "m2pt_model_forward_pixels: y"));
  if (!m->patch_w)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE, "%s: %s has no patch embedding", fn, m->path);
  if (!m->heads)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE, "%s: the number of heads was not given", fn);
  const size_t c = m->patch_w->shape[1], p = m->patch_w->shape[2];
  const size_t prefix = m->cls ? 1 : 0, npos = m->pos ? m->pos->numel / m->cfg.dim : 0;
  char sp[96];
  if (pixels->ndim != 4 || pixels->shape[1] != c || pixels->shape[2] % p ||
      pixels->shape[3] % p)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE,
                     "%s: pixels %s must be [B][%zu][H][W] with H and W multiples of the "
                     "patch size %zu",
                     fn, m2pt_shape_string(pixels, sp, sizeof sp), c, p);
  const size_t gh = pixels->shape[2] / p, gw = pixels->shape[3] / p, n = prefix + gh * gw;
  /* The position table fixes the image size: a square grid (timm's and
   * HF's img_size) of npos − prefix patches. */
  if (m->pos && (npos != n || gh != gw))
    return m2pt_fail(ctx, M2PT_ERR_SHAPE,
                     "%s: pixels %s make a %zu×%zu patch grid; %s's position embeddings "
                     "hold %zu tokens (%zu patches, a square grid)",
                     fn, m2pt_shape_string(pixels, sp, sizeof sp), gh, gw, m->path, npos,
                     npos - prefix);
  const size_t b = pixels->shape[0];
  m2pt_forward_options o;
  m2pt_tensor mv, e;
  int has_mask;
  M2PT_TRY(begin(m, options, mask, b, n, y, fn, &o, &mv, &has_mask, &e));
  M2PT_TRY(m2pt_patch_embed(ctx, pixels, m->patch_w, m->patch_b, m->cls, m->pos, &e));
  return run(m, &e, has_mask ? &mv : NULL, &o, prefix, y);
}
