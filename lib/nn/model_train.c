/* Whole-model training passes (model_grad.h): the training forward from
 * ids, pixels or hidden states to a loss, and its backward into a
 * m2pt_model_grads. The model keeps the activations between the two. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context_impl.h"
#include "core/error.h"
#include "core/options.h"
#include "core/workspace.h"
#include "linear_internal.h"
#include "m2pt/dropout.h"
#include "m2pt/loss.h"
#include "model_grads_internal.h"
#include "ops/block_ops.h"
#include "ops/embedding_ops.h"
#include "ops/tensor_checks.h"

/* What a training forward keeps for its backward (model_grad.h gives the
 * sizes). Tensors are remade when a batch's shape changes. */
struct m2pt_model_train {
  size_t depth;
  m2pt_tensor **act;        /* [depth + 1]: each block's input, then the stack's output */
  m2pt_block_saved *saved;  /* [nsaved]: one per block, or one when recomputing */
  size_t nsaved;
  m2pt_tensor *emb_sum, *emb_mean, *emb_rstd;  /* BERT: the embeddings' LayerNorm input */
  m2pt_tensor *fin, *fin_mean, *fin_rstd;      /* the final norm's output and statistics */
  m2pt_tensor *p0, *p1, *fc_mean, *fc_rstd;    /* pooled; fc_norm's or the pooler's output */
  m2pt_tensor *head_in, *out, *dout, *target, *loss;
  m2pt_tensor *dp1, *dp0, *dh[2];
};

enum { T_EMB_SUM, T_EMB_MEAN, T_EMB_RSTD, T_FIN, T_FIN_MEAN, T_FIN_RSTD, T_P0, T_P1, T_FC_MEAN,
       T_FC_RSTD, T_HEAD_IN, T_OUT, T_DOUT, T_TARGET, T_LOSS, T_DP1, T_DP0, T_DH0, T_DH1,
       T_COUNT };

static m2pt_tensor **tensor_slot(struct m2pt_model_train *t, int i)
{
  m2pt_tensor **s[T_COUNT] = {&t->emb_sum, &t->emb_mean, &t->emb_rstd, &t->fin,    &t->fin_mean,
                              &t->fin_rstd, &t->p0,      &t->p1,       &t->fc_mean, &t->fc_rstd,
                              &t->head_in, &t->out,      &t->dout,     &t->target,  &t->loss,
                              &t->dp1,     &t->dp0,      &t->dh[0],    &t->dh[1]};
  return s[i];
}

static void release_saved(m2pt_model *m)
{
  struct m2pt_model_train *t = m->train;
  for (size_t i = 0; i < t->nsaved; i++)
    m2pt_block_saved_release(m->blocks[i < m->depth ? i : 0], &t->saved[i]);
  free(t->saved);
  t->saved = NULL;
  t->nsaved = 0;
}

void m2pt_model_train_free(m2pt_model *m)
{
  struct m2pt_model_train *t = m->train;
  if (!t)
    return;
  release_saved(m);
  for (size_t i = 0; t->act && i <= t->depth; i++)
    m2pt_tensor_destroy(t->act[i]);
  free(t->act);
  for (int i = 0; i < T_COUNT; i++)
    m2pt_tensor_destroy(*tensor_slot(t, i));
  free(t);
  m->train = NULL;
}

/* *t with this shape: kept when it has it, else made anew. */
static m2pt_status ensure(m2pt_context *ctx, m2pt_tensor **t, size_t ndim, size_t d0, size_t d1,
                          size_t d2)
{
  const size_t shape[3] = {d0, d1, d2};
  if (*t && (*t)->ndim == ndim) {
    int same = 1;
    for (size_t i = 0; i < ndim; i++)
      same = same && (*t)->shape[i] == shape[i];
    if (same)
      return M2PT_OK;
  }
  m2pt_tensor_destroy(*t);
  *t = NULL;
  return m2pt_tensor_create(ctx, ndim, shape, t);
}

/* The training state for a batch of b × n tokens and k outputs. */
static m2pt_status prepare_state(m2pt_model *m, size_t b, size_t n, size_t k, int recompute)
{
  m2pt_context *ctx = m->ctx;
  if (!m->train) {
    struct m2pt_model_train *t = calloc(1, sizeof *t);
    m2pt_tensor **act = calloc(m->depth + 1, sizeof *act);
    if (!t || !act) {
      free(t);
      free(act);
      return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for training state");
    }
    t->act = act;
    t->depth = m->depth;
    m->train = t;
  }
  struct m2pt_model_train *t = m->train;
  const size_t dim = m->cfg.dim, rows = b * n;
  for (size_t i = 0; i <= m->depth; i++)
    M2PT_TRY(ensure(ctx, &t->act[i], 3, b, n, dim));
  const size_t want = m->depth == 0 ? 0 : recompute ? 1 : m->depth;
  if (t->nsaved != want || (want && t->saved[0].rows < rows)) {
    release_saved(m);
    if (want) {
      t->saved = calloc(want, sizeof *t->saved);
      if (!t->saved)
        return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for training state");
      for (size_t i = 0; i < want; i++) {
        M2PT_TRY(m2pt_block_saved_create(m->blocks[i], rows, &t->saved[i]));
        t->nsaved = i + 1;
      }
    }
  }
  const size_t per_token[3][2] = {{rows, dim}, {rows, 1}, {rows, 1}};
  for (int i = 0; i < 3; i++) {
    M2PT_TRY(ensure(ctx, tensor_slot(t, T_EMB_SUM + i), 2, per_token[i][0], per_token[i][1], 0));
    M2PT_TRY(ensure(ctx, tensor_slot(t, T_FIN + i), 2, per_token[i][0], per_token[i][1], 0));
  }
  const int pooled[] = {T_P0, T_P1, T_HEAD_IN, T_DP1, T_DP0};
  for (size_t i = 0; i < sizeof pooled / sizeof *pooled; i++)
    M2PT_TRY(ensure(ctx, tensor_slot(t, pooled[i]), 2, b, dim, 0));
  M2PT_TRY(ensure(ctx, &t->fc_mean, 1, b, 0, 0));
  M2PT_TRY(ensure(ctx, &t->fc_rstd, 1, b, 0, 0));
  M2PT_TRY(ensure(ctx, &t->out, 2, b, k, 0));
  M2PT_TRY(ensure(ctx, &t->dout, 2, b, k, 0));
  M2PT_TRY(ensure(ctx, &t->target, 2, b, k, 0));
  M2PT_TRY(ensure(ctx, &t->loss, 1, 1, 0, 0));
  M2PT_TRY(ensure(ctx, &t->dh[0], 3, b, n, dim));
  return ensure(ctx, &t->dh[1], 3, b, n, dim);
}

/* ---- arguments ---- */

/* One call's arguments, checked. */
typedef struct train_call {
  m2pt_model *m;
  m2pt_model_grads *g;
  m2pt_train_options o;
  size_t b, n, k, prefix;
  m2pt_pool_kind pool;
  const m2pt_host_matrix *labels;
  int has_mask;
  m2pt_tensor mask; /* a view of the uploaded mask */
  const char *fn;
} train_call;

/* m2pt_train_options as first released (core/options.h): drop_path came
 * later, and begins where 0.2's struct ended. */
#define TRAIN_OPTIONS_SIZE_0_2 offsetof(m2pt_train_options, drop_path)
_Static_assert(offsetof(m2pt_train_options, step) + sizeof(uint32_t) <= TRAIN_OPTIONS_SIZE_0_2 &&
                   TRAIN_OPTIONS_SIZE_0_2 % sizeof(uint64_t) == 0,
               "drop_path must start past 0.2's struct, its tail padding included");

/* input: the address of the pixels or hidden states tensor (which may be
 * NULL, refused then), or NULL for ids. */
static m2pt_status check_common(train_call *c, m2pt_model *m, const m2pt_tensor *const *input,
                                const m2pt_host_matrix *labels,
                                const m2pt_train_options *options, m2pt_model_grads *g,
                                float *loss)
{
  const char *fn = c->fn;
  M2PT_REQUIRE(NULL, m != NULL, "%s: model is NULL", fn);
  m2pt_context *ctx = m->ctx;
  char what[96];
  snprintf(what, sizeof what, "%s: the input", fn);
  if (input)
    M2PT_TRY(m2pt_check_tensor(ctx, *input, what));
  c->m = m;
  c->g = g;
  c->labels = labels;
  M2PT_REQUIRE(ctx, labels && g && loss, "%s: labels, grads and loss must not be NULL", fn);
  M2PT_REQUIRE(ctx, g->model == m, "%s: grads belong to another model", fn);
  if (!m->heads)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE, "%s: the number of heads was not given", fn);
  if (m2pt_model_grads_pathways(m) != g->pathways ||
      (m->ends[M2PT_END_HEAD].linear != NULL) != g->has_head)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE,
                     "%s: the model's pathways or head changed since grads were created "
                     "(merge, add_pathways, create_head): create them again",
                     fn);
  c->o = m2pt_train_options_default();
  M2PT_TRY(m2pt_options_read(ctx, &c->o, sizeof c->o, TRAIN_OPTIONS_SIZE_0_2, options,
                             "m2pt_train_options", fn));
  const m2pt_train_options *o = &c->o;
  M2PT_TRY(m2pt_check_enum(ctx, (int)o->loss, M2PT_LOSS_MSE, fn, "loss kind"));
  M2PT_TRY(m2pt_check_enum(ctx, (int)o->pool, M2PT_POOL_POOLER, fn, "pool kind"));
  M2PT_REQUIRE(ctx, o->label_smoothing >= 0.0f && o->label_smoothing <= 1.0f,
               "%s: label_smoothing = %g must be in [0, 1]", fn, (double)o->label_smoothing);
  M2PT_REQUIRE(ctx, o->dropout >= 0.0f && o->dropout < 1.0f, "%s: dropout = %g must be in [0, 1)",
               fn, (double)o->dropout);
  /* In range as a double first: converting a larger one to float is undefined. */
  M2PT_REQUIRE(ctx, o->drop_path >= 0.0 && o->drop_path < 1.0 && (float)o->drop_path < 1.0f,
               "%s: drop_path = %g must be in [0, 1)", fn, o->drop_path);
  M2PT_REQUIRE(ctx, (o->recompute == 0 || o->recompute == 1) &&
                        (o->accumulate == 0 || o->accumulate == 1),
               "%s: recompute and accumulate are 0 or 1", fn);
  c->pool = m2pt_model_pool_of(m, o->pool);
  if (c->pool == M2PT_POOL_POOLER && !m->ends[M2PT_END_POOLER].linear)
    return m2pt_fail(ctx, M2PT_ERR_NOT_FOUND, "%s: %s has no pooler (pooler.dense)", fn,
                     m->path);
  const m2pt_linear *head = m->ends[M2PT_END_HEAD].linear;
  if (o->loss == M2PT_LOSS_CROSS_ENTROPY && !head)
    return m2pt_fail(ctx, M2PT_ERR_NOT_FOUND,
                     "%s: cross-entropy needs a head and %s has none (m2pt_model_create_head)",
                     fn, m->path);
  c->k = head ? m->ends[M2PT_END_HEAD].out : m->cfg.dim;
  return M2PT_OK;
}

/* The labels against the batch: class indices in range, or targets [B][k]. */
static m2pt_status check_labels(const train_call *c)
{
  m2pt_context *ctx = c->m->ctx;
  const m2pt_host_matrix *l = c->labels;
  M2PT_REQUIRE(ctx, l->data != NULL, "%s: labels have no data", c->fn);
  if (c->o.loss == M2PT_LOSS_MSE) {
    M2PT_REQUIRE(ctx, l->dtype == M2PT_DTYPE_F32, "%s: MSE targets must be F32", c->fn);
    if (l->rows != c->b || l->cols != c->k)
      return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: MSE targets are [%zu][%zu], the output [%zu][%zu]",
                       c->fn, l->rows, l->cols, c->b, c->k);
    return M2PT_OK;
  }
  M2PT_REQUIRE(ctx, l->dtype == M2PT_DTYPE_I32 || l->dtype == M2PT_DTYPE_I64,
               "%s: class labels must be I32 or I64", c->fn);
  if (l->rows * l->cols != c->b || (l->rows != 1 && l->cols != 1))
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: labels are [%zu][%zu], the batch has %zu rows",
                     c->fn, l->rows, l->cols, c->b);
  for (size_t i = 0; i < c->b; i++) {
    const int64_t v = l->dtype == M2PT_DTYPE_I32 ? ((const int32_t *)l->data)[i]
                                                 : ((const int64_t *)l->data)[i];
    if (v < 0 || (uint64_t)v >= c->k)
      return m2pt_fail(ctx, M2PT_ERR_INVALID_ARGUMENT,
                       "%s: label[%zu] = %lld is out of range [0, %zu) (the head's classes)",
                       c->fn, i, (long long)v, c->k);
  }
  return M2PT_OK;
}

/* Labels, then the mask checked and uploaded, then the state: everything a
 * refusal must precede. */
static m2pt_status begin(train_call *c, const m2pt_host_matrix *mask)
{
  m2pt_model *m = c->m;
  m2pt_context *ctx = m->ctx;
  M2PT_TRY(check_labels(c));
  c->has_mask = mask != NULL;
  if (mask) {
    float *host = malloc(c->b * c->n * sizeof *host);
    if (!host)
      return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
    m2pt_status s = m2pt_host_mask_check(ctx, mask, c->b, c->n, c->fn, host);
    cl_mem buf = NULL;
    if (s == M2PT_OK)
      s = m2pt_workspace_upload(ctx, M2PT_WS_MASK, host, c->b * c->n * sizeof *host,
                                "uploading the attention mask", &buf);
    free(host);
    M2PT_TRY(s);
    const m2pt_tensor v = {ctx, buf, 2, {c->b, c->n}, c->b * c->n};
    c->mask = v;
  }
  return prepare_state(m, c->b, c->n, c->k, c->o.recompute);
}

/* ---- the passes ---- */

static m2pt_rng_key key_of(const train_call *c, uint32_t layer)
{
  const m2pt_rng_key k = {c->o.seed, c->o.step, layer};
  return k;
}

/* Block i's drop-path (model_grad.h): timm's dpr = torch.linspace(0, rate,
 * depth) in float32, and the layers 2 + 2·i, 3 + 2·i. */
static m2pt_block_drop drop_of(const train_call *c, size_t i)
{
  const size_t depth = c->m->depth;
  const float rate = (float)c->o.drop_path;
  m2pt_block_drop d = {0.0f, {key_of(c, (uint32_t)(2 + 2 * i)), key_of(c, (uint32_t)(3 + 2 * i))}};
  if (depth > 1) {
    const float step = rate / (float)(depth - 1);
    d.p = i < depth / 2 ? step * (float)i : rate - step * (float)(depth - 1 - i);
  }
  return d;
}

/* From act[0] (the embeddings, already there) to the loss on the device. */
static m2pt_status forward(const train_call *c)
{
  m2pt_model *m = c->m;
  m2pt_context *ctx = m->ctx;
  struct m2pt_model_train *t = m->train;
  const size_t b = c->b, n = c->n, dim = m->cfg.dim, rows = b * n;
  const m2pt_tensor *mask = c->has_mask ? &c->mask : NULL;
  if (c->o.dropout > 0.0f)
    M2PT_TRY(m2pt_dropout(ctx, t->act[0], c->o.dropout, key_of(c, 0), t->act[0]));
  for (size_t i = 0; i < m->depth; i++) {
    const m2pt_block_drop drop = drop_of(c, i);
    M2PT_TRY(m2pt_block_forward_saved(m->blocks[i], t->act[i], mask, &drop,
                                      &t->saved[c->o.recompute ? 0 : i], t->act[i + 1]));
  }
  cl_mem h = t->act[m->depth]->buffer;
  if (m->norm_w) {
    M2PT_TRY(m2pt_op_layer_norm_train(ctx, h, m->norm_w, m->norm_b, m->cfg.eps, rows, dim,
                                      t->fin->buffer, t->fin_mean->buffer, t->fin_rstd->buffer));
    h = t->fin->buffer;
  }
  m2pt_tensor *feat = t->p0;
  if (c->pool == M2PT_POOL_POOLER) {
    /* BertPooler: tanh(dense(h[:, 0])). */
    M2PT_TRY(m2pt_op_pool(ctx, h, NULL, 1, b, n, dim, 0, 0, t->p0->buffer));
    M2PT_TRY(m2pt_linear_forward_buffers(m->ends[M2PT_END_POOLER].linear, t->p0->buffer, b,
                                         t->p1->buffer));
    M2PT_TRY(m2pt_op_tanh(ctx, t->p1->buffer, b * dim));
    feat = t->p1;
  } else {
    const int token = c->pool == M2PT_POOL_TOKEN;
    M2PT_TRY(m2pt_op_pool(ctx, h, token || !mask ? NULL : mask->buffer, token, b, n, dim,
                          token ? 0 : c->prefix, 0, t->p0->buffer));
    if (m->fc_norm_w) {
      M2PT_TRY(m2pt_op_layer_norm_train(ctx, t->p0->buffer, m->fc_norm_w->buffer,
                                        m->fc_norm_b ? m->fc_norm_b->buffer : NULL, m->cfg.eps,
                                        b, dim, t->p1->buffer, t->fc_mean->buffer,
                                        t->fc_rstd->buffer));
      feat = t->p1;
    }
  }
  m2pt_linear *head = m->ends[M2PT_END_HEAD].linear;
  m2pt_tensor *out = feat;
  if (head) {
    const m2pt_tensor *in = feat;
    if (c->o.dropout > 0.0f) {
      M2PT_TRY(m2pt_dropout(ctx, feat, c->o.dropout, key_of(c, 1), t->head_in));
      in = t->head_in;
    }
    M2PT_TRY(m2pt_linear_forward_buffers(head, in->buffer, b, t->out->buffer));
    out = t->out;
  }
  if (c->o.loss == M2PT_LOSS_CROSS_ENTROPY)
    return m2pt_cross_entropy(ctx, out, c->labels->data, c->labels->dtype, c->o.label_smoothing,
                              t->loss, t->dout);
  M2PT_TRY(m2pt_tensor_write(t->target, c->labels->data, b * c->k));
  return m2pt_mse(ctx, out, t->target, t->loss, t->dout);
}

/* The head, the pooling and the final norm backward, into ∂L/∂(stack output). */
static m2pt_status backward_ends(const train_call *c, m2pt_tensor *dstack)
{
  m2pt_model *m = c->m;
  m2pt_context *ctx = m->ctx;
  struct m2pt_model_train *t = m->train;
  m2pt_model_grads *g = c->g;
  const int acc = c->o.accumulate;
  const size_t b = c->b, n = c->n, dim = m->cfg.dim;
  m2pt_linear *head = m->ends[M2PT_END_HEAD].linear;
  m2pt_tensor *dfeat = t->dout;
  if (head) {
    const int fc_or_pooler = c->pool == M2PT_POOL_POOLER || m->fc_norm_w;
    const m2pt_tensor *in = c->o.dropout > 0.0f ? t->head_in : fc_or_pooler ? t->p1 : t->p0;
    m2pt_linear_grads lg = g->linears[M2PT_END_HEAD];
    lg.accumulate = acc;
    M2PT_TRY(m2pt_linear_backward_split(head, &lg, in, t->dout, t->dp1, 0));
    if (c->o.dropout > 0.0f)
      M2PT_TRY(m2pt_dropout_backward(ctx, t->dp1, c->o.dropout, key_of(c, 1), t->dp1));
    dfeat = t->dp1;
  }
  const cl_mem fin = m->norm_w ? t->fin->buffer : t->act[m->depth]->buffer;
  const cl_mem dh = m->norm_w ? t->dh[1]->buffer : dstack->buffer;
  if (c->pool == M2PT_POOL_POOLER) {
    M2PT_TRY(m2pt_op_tanh_backward(ctx, t->p1->buffer, dfeat->buffer, b * dim));
    m2pt_linear_grads lg = g->linears[M2PT_END_POOLER];
    lg.accumulate = acc;
    M2PT_TRY(m2pt_linear_backward_split(m->ends[M2PT_END_POOLER].linear, &lg, t->p0, dfeat,
                                        t->dp0, 0));
    M2PT_TRY(m2pt_op_pool_backward(ctx, fin, NULL, 1, b, n, dim, 0, 0, t->dp0->buffer, dh));
  } else {
    cl_mem dpool = dfeat->buffer;
    if (m->fc_norm_w) {
      M2PT_TRY(m2pt_norm_backward_grads(ctx, dfeat->buffer, t->p0->buffer, m->fc_norm_w->buffer,
                                        t->fc_mean->buffer, t->fc_rstd->buffer, b, dim,
                                        t->dp0->buffer, g->ends[M2PT_END_FC_NORM_W],
                                        g->ends[M2PT_END_FC_NORM_B], acc));
      dpool = t->dp0->buffer;
    }
    const int token = c->pool == M2PT_POOL_TOKEN;
    M2PT_TRY(m2pt_op_pool_backward(ctx, fin, token || !c->has_mask ? NULL : c->mask.buffer,
                                   token, b, n, dim, token ? 0 : c->prefix, 0, dpool, dh));
  }
  if (!m->norm_w)
    return M2PT_OK;
  return m2pt_norm_backward_grads(ctx, dh, t->act[m->depth]->buffer, m->norm_w, t->fin_mean->buffer,
                                  t->fin_rstd->buffer, b * n, dim, dstack->buffer, g->final_w,
                                  g->final_b, acc);
}

/* The blocks in reverse from ∂L/∂(stack output) in dh[0]; ∂L/∂act[0] ends
 * in *dx0 when want_dx0 (else NULL). */
static m2pt_status backward_blocks(const train_call *c, int want_dx0, m2pt_tensor **dx0)
{
  m2pt_model *m = c->m;
  struct m2pt_model_train *t = m->train;
  const m2pt_tensor *mask = c->has_mask ? &c->mask : NULL;
  m2pt_tensor *dy = t->dh[0], *dx = t->dh[1];
  /* Blocks below the lowest one with a trainable parameter need no
   * backward when the embeddings are frozen too. */
  size_t lowest = m->depth;
  for (size_t i = 0; i < m->depth && lowest == m->depth; i++) {
    const m2pt_block_grads *bg = &c->g->blocks[i];
    for (size_t k = 0; k < M2PT_GRAD_NORMS; k++)
      lowest = bg->norm[k] ? i : lowest;
    for (size_t l = 0; l < M2PT_BLOCK_LINEARS; l++)
      for (size_t f = 0; f < 4; f++)
        lowest = bg->lin[l][f] ? i : lowest;
  }
  if (want_dx0)
    lowest = 0;
  for (size_t i = m->depth; i-- > lowest;) {
    const m2pt_block_saved *sv = &t->saved[c->o.recompute ? 0 : i];
    const m2pt_block_drop drop = drop_of(c, i);
    /* Activation checkpointing: the block's training forward again, from its
     * saved input, with the same drop-path keys; its output is act[i + 1]
     * once more, the same bits. */
    if (c->o.recompute)
      M2PT_TRY(
          m2pt_block_forward_saved(m->blocks[i], t->act[i], mask, &drop, sv, t->act[i + 1]));
    const int need_dx = i > lowest || want_dx0;
    M2PT_TRY(m2pt_block_backward_saved(m->blocks[i], t->act[i], mask, &drop, dy, sv,
                                       &c->g->blocks[i], c->o.accumulate, need_dx ? dx : NULL));
    m2pt_tensor *swap = dy;
    dy = dx;
    dx = swap;
  }
  *dx0 = want_dx0 ? dy : NULL;
  return M2PT_OK;
}

/* The whole pass after the embeddings filled act[0]: forward, loss checked,
 * backward to ∂L/∂act[0] (in *dx0 when want_dx0). */
static m2pt_status run(const train_call *c, int want_dx0, float *loss, m2pt_tensor **dx0)
{
  m2pt_context *ctx = c->m->ctx;
  M2PT_TRY(forward(c));
  float value;
  M2PT_TRY(m2pt_tensor_read(c->m->train->loss, &value, 1));
  if (!isfinite(value))
    return m2pt_fail(ctx, M2PT_ERR_INVALID_ARGUMENT,
                     "%s: the loss is %g (non-finite inputs, targets or parameters); no gradient "
                     "was written",
                     c->fn, (double)value);
  *loss = value;
  M2PT_TRY(backward_ends(c, c->m->train->dh[0]));
  M2PT_TRY(backward_blocks(c, want_dx0, dx0));
  if (want_dx0 && c->o.dropout > 0.0f)
    M2PT_TRY(m2pt_dropout_backward(ctx, *dx0, c->o.dropout, key_of(c, 0), *dx0));
  return M2PT_OK;
}

/* A gradient tensor, or a view of the accumulation scratch standing for it. */
static m2pt_status acc_view(m2pt_context *ctx, m2pt_tensor *t, int acc, m2pt_tensor *view,
                            m2pt_tensor **use)
{
  *use = t;
  if (!t || !acc)
    return M2PT_OK;
  *view = *t;
  M2PT_TRY(m2pt_grad_target(ctx, t, 1, M2PT_WS_GRAD_ACC, &view->buffer));
  *use = view;
  return M2PT_OK;
}

/* BERT's embeddings backward from ∂L/∂act[0]: their LayerNorm, then the
 * tables (one at a time when accumulating: one scratch). */
static m2pt_status backward_bert(const train_call *c, const m2pt_host_matrix *ids,
                                 const m2pt_host_matrix *types, const m2pt_tensor *dx0)
{
  m2pt_model *m = c->m;
  m2pt_context *ctx = m->ctx;
  struct m2pt_model_train *t = m->train;
  m2pt_tensor *const *ge = c->g->ends;
  const int acc = c->o.accumulate;
  const m2pt_tensor dsum = {ctx, t->dh[1] == dx0 ? t->dh[0]->buffer : t->dh[1]->buffer, 3,
                            {c->b, c->n, m->cfg.dim}, dx0->numel};
  const int tables = ge[M2PT_END_WORD] || ge[M2PT_END_POSITION] || ge[M2PT_END_TOKEN_TYPE];
  M2PT_TRY(m2pt_norm_backward_grads(ctx, dx0->buffer, t->emb_sum->buffer, m->emb_ln_w->buffer,
                                    t->emb_mean->buffer, t->emb_rstd->buffer, c->b * c->n,
                                    m->cfg.dim, tables ? dsum.buffer : NULL,
                                    ge[M2PT_END_EMB_LN_W], ge[M2PT_END_EMB_LN_B], acc));
  if (!tables)
    return M2PT_OK;
  if (!acc)
    return m2pt_bert_embeddings_backward(ctx, ids, types, &dsum, ge[M2PT_END_WORD],
                                         ge[M2PT_END_POSITION], ge[M2PT_END_TOKEN_TYPE]);
  for (int w = M2PT_END_WORD; w <= M2PT_END_TOKEN_TYPE; w++) {
    m2pt_tensor view, *use;
    if (!ge[w])
      continue;
    M2PT_TRY(acc_view(ctx, ge[w], 1, &view, &use));
    M2PT_TRY(m2pt_bert_embeddings_backward(ctx, ids, types, &dsum,
                                           w == M2PT_END_WORD ? use : NULL,
                                           w == M2PT_END_POSITION ? use : NULL,
                                           w == M2PT_END_TOKEN_TYPE ? use : NULL));
    M2PT_TRY(m2pt_grad_finish(ctx, ge[w], 1, view.buffer));
  }
  return M2PT_OK;
}

/* The patch embedding's backward (one output at a time when accumulating). */
static m2pt_status backward_patch(const train_call *c, const m2pt_tensor *pixels,
                                  const m2pt_tensor *dx0)
{
  m2pt_model *m = c->m;
  m2pt_context *ctx = m->ctx;
  m2pt_tensor *const *ge = c->g->ends;
  const int has_cls = m->cls != NULL;
  const int outs[4] = {M2PT_END_PATCH_W, M2PT_END_PATCH_B, M2PT_END_CLS, M2PT_END_POS};
  if (!c->o.accumulate)
    return m2pt_patch_embed_backward(ctx, pixels, m->patch_w, has_cls, dx0, NULL,
                                     ge[M2PT_END_PATCH_W], ge[M2PT_END_PATCH_B],
                                     ge[M2PT_END_CLS], ge[M2PT_END_POS]);
  for (int i = 0; i < 4; i++) {
    m2pt_tensor view, *use, *o[4] = {NULL, NULL, NULL, NULL};
    if (!ge[outs[i]])
      continue;
    M2PT_TRY(acc_view(ctx, ge[outs[i]], 1, &view, &use));
    o[i] = use;
    M2PT_TRY(m2pt_patch_embed_backward(ctx, pixels, m->patch_w, has_cls, dx0, NULL, o[0], o[1],
                                       o[2], o[3]));
    M2PT_TRY(m2pt_grad_finish(ctx, ge[outs[i]], 1, view.buffer));
  }
  return M2PT_OK;
}

static int any_of(m2pt_tensor *const *ge, int first, int last)
{
  for (int i = first; i <= last; i++)
    if (ge[i])
      return 1;
  return 0;
}

m2pt_status m2pt_model_grad_ids(m2pt_model *m, const m2pt_host_matrix *ids,
                                const m2pt_host_matrix *token_types,
                                const m2pt_host_matrix *mask, const m2pt_host_matrix *labels,
                                const m2pt_train_options *options, m2pt_model_grads *g,
                                float *loss)
{
  train_call c = {.fn = "m2pt_model_grad_ids"};
  M2PT_TRY(check_common(&c, m, NULL, labels, options, g, loss));
  m2pt_context *ctx = m->ctx;
  M2PT_REQUIRE(ctx, ids != NULL, "%s: ids is NULL", c.fn);
  if (!m->word)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE, "%s: %s has no word embeddings", c.fn,
                     m->path);
  M2PT_REQUIRE(ctx, ids->rows > 0 && ids->cols > 0 && ids->rows * ids->cols <= INT32_MAX,
               "%s: ids are [%zu][%zu]", c.fn, ids->rows, ids->cols);
  M2PT_REQUIRE(ctx, !token_types || m->token_type, "%s: token types given, no token_type table",
               c.fn);
  c.b = ids->rows;
  c.n = ids->cols;
  if (m->position->shape[0] < c.n)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: %zu tokens, %zu position embeddings", c.fn, c.n,
                     m->position->shape[0]);
  if (token_types && (token_types->rows != c.b || token_types->cols != c.n))
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: token types are [%zu][%zu], ids [%zu][%zu]", c.fn,
                     token_types->rows, token_types->cols, c.b, c.n);
  /* The ids checked on the host before anything runs. */
  M2PT_TRY(begin(&c, mask));
  const size_t rows = c.b * c.n;
  cl_mem idbuf = NULL;
  M2PT_TRY(m2pt_host_ids_upload(ctx, ids, token_types, m->word->shape[0],
                                m->token_type ? m->token_type->shape[0] : 0, c.fn, &idbuf));
  struct m2pt_model_train *t = m->train;
  const size_t dim = m->cfg.dim;
  M2PT_TRY(m2pt_op_bert_gather(ctx, idbuf, m->word->buffer, m->position->buffer,
                               m->token_type ? m->token_type->buffer : NULL, rows, c.n, dim,
                               t->emb_sum->buffer));
  M2PT_TRY(m2pt_op_layer_norm_train(ctx, t->emb_sum->buffer, m->emb_ln_w->buffer,
                                    m->emb_ln_b ? m->emb_ln_b->buffer : NULL, m->cfg.eps, rows,
                                    dim, t->act[0]->buffer, t->emb_mean->buffer,
                                    t->emb_rstd->buffer));
  m2pt_tensor *dx0;
  const int want = any_of(g->ends, M2PT_END_WORD, M2PT_END_EMB_LN_B);
  M2PT_TRY(run(&c, want, loss, &dx0));
  if (want)
    M2PT_TRY(backward_bert(&c, ids, token_types, dx0));
  return m2pt_model_grads_copy_parts(g);
}

m2pt_status m2pt_model_grad_pixels(m2pt_model *m, const m2pt_tensor *pixels,
                                   const m2pt_host_matrix *mask, const m2pt_host_matrix *labels,
                                   const m2pt_train_options *options, m2pt_model_grads *g,
                                   float *loss)
{
  train_call c = {.fn = "m2pt_model_grad_pixels"};
  M2PT_TRY(check_common(&c, m, &pixels, labels, options, g, loss));
  m2pt_context *ctx = m->ctx;
  if (!m->patch_w)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE, "%s: %s has no patch embedding", c.fn,
                     m->path);
  const size_t ch = m->patch_w->shape[1], p = m->patch_w->shape[2];
  c.prefix = m->cls ? 1 : 0;
  char sp[96];
  if (pixels->ndim != 4 || pixels->shape[1] != ch || pixels->shape[2] % p ||
      pixels->shape[3] % p)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE,
                     "%s: pixels %s must be [B][%zu][H][W] with H and W multiples of %zu", c.fn,
                     m2pt_shape_string(pixels, sp, sizeof sp), ch, p);
  c.b = pixels->shape[0];
  c.n = c.prefix + (pixels->shape[2] / p) * (pixels->shape[3] / p);
  if (m->pos && m->pos->numel / m->cfg.dim != c.n)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: pixels %s make %zu tokens, %s's positions %zu",
                     c.fn, m2pt_shape_string(pixels, sp, sizeof sp), c.n, m->path,
                     m->pos->numel / m->cfg.dim);
  M2PT_TRY(begin(&c, mask));
  struct m2pt_model_train *t = m->train;
  M2PT_TRY(m2pt_patch_embed(ctx, pixels, m->patch_w, m->patch_b, m->cls, m->pos, t->act[0]));
  m2pt_tensor *dx0;
  const int want = any_of(g->ends, M2PT_END_PATCH_W, M2PT_END_POS);
  M2PT_TRY(run(&c, want, loss, &dx0));
  if (want)
    M2PT_TRY(backward_patch(&c, pixels, dx0));
  return m2pt_model_grads_copy_parts(g);
}

m2pt_status m2pt_model_grad_hidden(m2pt_model *m, const m2pt_tensor *x,
                                   const m2pt_host_matrix *mask, const m2pt_host_matrix *labels,
                                   const m2pt_train_options *options, m2pt_model_grads *g,
                                   float *loss)
{
  train_call c = {.fn = "m2pt_model_grad_hidden"};
  M2PT_TRY(check_common(&c, m, &x, labels, options, g, loss));
  m2pt_context *ctx = m->ctx;
  char sx[96];
  if (x->ndim != 3 || x->shape[2] != m->cfg.dim)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: x %s must be [B][N][%zu]", c.fn,
                     m2pt_shape_string(x, sx, sizeof sx), m->cfg.dim);
  c.b = x->shape[0];
  c.n = x->shape[1];
  c.prefix = m->cls ? 1 : 0;
  M2PT_TRY(begin(&c, mask));
  const cl_int err = clEnqueueCopyBuffer(ctx->queue, x->buffer, m->train->act[0]->buffer, 0, 0,
                                         x->numel * sizeof(float), 0, NULL, NULL);
  if (err != CL_SUCCESS)
    return m2pt_fail_cl(ctx, err, "m2pt_model_grad_hidden: copying x");
  m2pt_tensor *dx0;
  M2PT_TRY(run(&c, 0, loss, &dx0));
  return m2pt_model_grads_copy_parts(g);
}
