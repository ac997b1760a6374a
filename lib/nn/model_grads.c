/* A model's gradient tensors by checkpoint name (model_grad.h), and the
 * freeze categories that decide which exist. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buffer.h"
#include "core/cl.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "linear_internal.h"
#include "model_grads_internal.h"
#include "ops/block_ops.h"

#define FREEZE_ALL 0x7Fu

m2pt_status m2pt_freeze_parse(const char *list, unsigned *flags)
{
  static const char *const names[] = {"target", "aux",        "scale", "bias",
                                      "norm",   "embeddings", "head"};
  M2PT_REQUIRE(NULL, flags != NULL, "m2pt_freeze_parse: flags is NULL");
  *flags = 0;
  unsigned out = 0;
  for (const char *p = list; p && *p;) {
    const char *end = strchr(p, ',');
    const size_t len = end ? (size_t)(end - p) : strlen(p);
    size_t i = 0;
    while (i < sizeof names / sizeof *names &&
           (strlen(names[i]) != len || strncmp(names[i], p, len) != 0))
      i++;
    if (i == sizeof names / sizeof *names)
      return m2pt_fail(NULL, M2PT_ERR_INVALID_ARGUMENT,
                       "unknown freeze category \"%.*s\" (expected target, aux, scale, bias, "
                       "norm, embeddings, head)",
                       (int)len, p);
    out |= 1u << i;
    p = end ? end + 1 : p + len;
  }
  *flags = out;
  return M2PT_OK;
}

/* The categories of a linear's field: TARGET/BIAS/AUX/SCALE, plus HEAD. */
static unsigned field_categories(int field, int head)
{
  static const unsigned by_field[M2PT_FIELDS + 1] = {M2PT_FREEZE_TARGET, M2PT_FREEZE_BIAS,
                                                     M2PT_FREEZE_AUX, M2PT_FREEZE_SCALE,
                                                     M2PT_FREEZE_AUX};
  if (!head)
    return by_field[field];
  /* The head's own weight and bias are the head's, not the target's. */
  return M2PT_FREEZE_HEAD | (field == M2PT_FIELD_AUX_WEIGHT || field == M2PT_FIELDS ||
                                     field == M2PT_FIELD_SCALE
                                 ? by_field[field]
                                 : 0);
}

void m2pt_model_grads_destroy(m2pt_model_grads *g)
{
  if (!g)
    return;
  for (size_t i = 0; i < g->count; i++) {
    free(g->e[i].name);
    m2pt_tensor_destroy(g->e[i].t);
  }
  for (size_t i = 0; i < g->nhidden; i++)
    m2pt_tensor_destroy(g->hidden[i]);
  free(g->e);
  free(g->hidden);
  free(g->blocks);
  free(g);
}

/* A zeroed tensor of the given shape. */
static m2pt_status zeroed(m2pt_context *ctx, size_t ndim, const size_t *shape, m2pt_tensor **out)
{
  M2PT_TRY(m2pt_tensor_create(ctx, ndim, shape, out));
  return m2pt_fill(ctx, (*out)->buffer, 0.0f, (*out)->numel);
}

/* Appends a named gradient tensor of `shape`; *out is it. */
static m2pt_status add_entry(m2pt_model_grads *g, const char *name, size_t ndim,
                             const size_t *shape, m2pt_tensor *src, size_t offset,
                             m2pt_tensor **out)
{
  m2pt_context *ctx = g->model->ctx;
  if (g->count == g->cap) {
    const size_t cap = g->cap ? 2 * g->cap : 64;
    m2pt_grad_entry *e = realloc(g->e, cap * sizeof *e);
    if (!e)
      return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for gradients");
    g->e = e;
    g->cap = cap;
  }
  m2pt_grad_entry *e = &g->e[g->count];
  memset(e, 0, sizeof *e);
  if (!(e->name = strdup(name)))
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for gradients");
  g->count++;
  e->src = src;
  e->offset = offset;
  M2PT_TRY(zeroed(ctx, ndim, shape, &e->t));
  *out = e->t;
  return M2PT_OK;
}

/* A tensor the backward writes that no name addresses (BERT's qkv whole). */
static m2pt_status add_hidden(m2pt_model_grads *g, size_t ndim, const size_t *shape,
                              m2pt_tensor **out)
{
  m2pt_tensor **h = realloc(g->hidden, (g->nhidden + 1) * sizeof *h);
  if (!h)
    return m2pt_fail(g->model->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for gradients");
  g->hidden = h;
  M2PT_TRY(zeroed(g->model->ctx, ndim, shape, &h[g->nhidden]));
  *out = h[g->nhidden++];
  return M2PT_OK;
}

/* One field of block linear li: one tensor, or (q, k, v parts) a hidden
 * whole and a named tensor per part that copies its rows. */
static m2pt_status block_field(m2pt_model_grads *g, size_t b, int li, int field,
                               m2pt_tensor **out)
{
  const m2pt_model *m = g->model;
  const m2pt_naming_scheme *s = m->scheme;
  size_t rows, cols;
  m2pt_model_linear_shape(m, li, &rows, &cols);
  const size_t wshape[2] = {rows, cols}, bshape[1] = {rows}, one[1] = {1};
  const int matrix = field == M2PT_FIELD_WEIGHT || field == M2PT_FIELD_AUX_WEIGHT;
  const size_t ndim = 1;
  const size_t *shape = matrix ? wshape : field == M2PT_FIELD_SCALE ? one : bshape;
  char name[600];
  const size_t parts = s->parts[li];
  if (parts == 1 || field == M2PT_FIELD_SCALE) {
    /* λ is shared by the parts: its one gradient goes under the first's name. */
    m2pt_param_name(name, sizeof name, m->prefix, b, s->linears[li][0], m2pt_field_names[field]);
    return add_entry(g, name, matrix ? 2 : ndim, shape, NULL, 0, out);
  }
  M2PT_TRY(add_hidden(g, matrix ? 2 : 1, shape, out));
  const size_t part_rows = rows / parts, pshape[2] = {part_rows, cols};
  for (size_t p = 0; p < parts; p++) {
    m2pt_tensor *t;
    m2pt_param_name(name, sizeof name, m->prefix, b, s->linears[li][p], m2pt_field_names[field]);
    M2PT_TRY(add_entry(g, name, matrix ? 2 : 1, pshape, *out,
                       p * part_rows * (matrix ? cols : 1), &t));
  }
  return M2PT_OK;
}

static m2pt_status make_blocks(m2pt_model_grads *g, unsigned freeze)
{
  const m2pt_model *m = g->model;
  static const int norm_slot[M2PT_BLOCK_NORMS] = {M2PT_GRAD_NORM1_W, M2PT_GRAD_NORM1_B,
                                                  M2PT_GRAD_NORM2_W, M2PT_GRAD_NORM2_B};
  char name[600];
  const size_t dshape[1] = {m->cfg.dim};
  for (size_t b = 0; b < m->depth; b++) {
    m2pt_block_grads *bg = &g->blocks[b];
    bg->block = m->blocks[b];
    for (int k = 0; k < M2PT_BLOCK_NORMS && !(freeze & M2PT_FREEZE_NORM); k++) {
      m2pt_param_name(name, sizeof name, m->prefix, b, m->scheme->norms[k], NULL);
      M2PT_TRY(add_entry(g, name, 1, dshape, NULL, 0, &bg->norm[norm_slot[k]]));
    }
    for (int li = 0; li < M2PT_BLOCK_LINEARS; li++) {
      const m2pt_linear *l = m2pt_block_linear(m->blocks[b], (size_t)li);
      const unsigned fl = m2pt_linear_flags(l);
      const int pw = (fl & M2PT_LINEAR_PATHWAY) != 0;
      const int has[M2PT_FIELDS] = {1, (fl & M2PT_LINEAR_BIAS) != 0, pw, pw};
      for (int f = 0; f < M2PT_FIELDS; f++)
        if (has[f] && !(freeze & field_categories(f, 0)))
          M2PT_TRY(block_field(g, b, li, f, &bg->lin[li][f]));
    }
  }
  return M2PT_OK;
}

/* An end tensor's gradient, when the model has it and it is trainable. */
static m2pt_status end_tensor(m2pt_model_grads *g, int which, unsigned categories,
                              unsigned freeze)
{
  const m2pt_tensor *t = m2pt_model_end_tensor(g->model, which);
  char name[600];
  if (!t || (freeze & categories) ||
      !m2pt_model_end_tensor_name(g->model, which, name, sizeof name))
    return M2PT_OK;
  return add_entry(g, name, t->ndim, t->shape, NULL, 0, &g->ends[which]);
}

static m2pt_status end_linear(m2pt_model_grads *g, int e, unsigned freeze)
{
  const m2pt_model_end *end = &g->model->ends[e];
  if (!end->linear)
    return M2PT_OK;
  const int head = e == M2PT_END_HEAD;
  const size_t wshape[2] = {end->out, end->in}, bshape[1] = {end->out}, one[1] = {1};
  m2pt_linear_grads *lg = &g->linears[e];
  const unsigned fl = m2pt_linear_flags(end->linear);
  const int pathway = (fl & M2PT_LINEAR_PATHWAY) != 0;
  /* Fields by M2PT_FIELD_*, then aux_bias. */
  m2pt_tensor **slots[M2PT_FIELDS + 1] = {&lg->dweight, &lg->dbias, &lg->daux_weight,
                                          &lg->dscale, &lg->daux_bias};
  const int has[M2PT_FIELDS + 1] = {1, (fl & M2PT_LINEAR_BIAS) != 0, pathway, pathway,
                                    pathway && (fl & M2PT_LINEAR_PATHWAY_BIAS)};
  const char *fields[M2PT_FIELDS + 1] = {"weight", "bias", "aux_weight", "cross_modal_scale",
                                         "aux_bias"};
  for (int f = 0; f <= M2PT_FIELDS; f++) {
    if (!has[f] || (freeze & field_categories(f, head)))
      continue;
    char name[700];
    snprintf(name, sizeof name, "%s.%s", end->name, fields[f]);
    const int matrix = f == M2PT_FIELD_WEIGHT || f == M2PT_FIELD_AUX_WEIGHT;
    M2PT_TRY(add_entry(g, name, matrix ? 2 : 1,
                       matrix ? wshape : f == M2PT_FIELD_SCALE ? one : bshape, NULL, 0,
                       slots[f]));
  }
  return M2PT_OK;
}

static m2pt_status make_all(m2pt_model_grads *g, unsigned freeze)
{
  m2pt_model *m = g->model;
  for (int w = M2PT_END_WORD; w <= M2PT_END_POS; w++)
    M2PT_TRY(end_tensor(g, w, M2PT_FREEZE_EMBEDDINGS, freeze));
  M2PT_TRY(make_blocks(g, freeze));
  if (m->norm_w && !(freeze & M2PT_FREEZE_NORM)) {
    char name[600];
    const size_t dshape[1] = {m->cfg.dim};
    snprintf(name, sizeof name, "%snorm.weight", m->final_prefix);
    M2PT_TRY(add_entry(g, name, 1, dshape, NULL, 0, &g->final_w));
    if (m->norm_b) {
      snprintf(name, sizeof name, "%snorm.bias", m->final_prefix);
      M2PT_TRY(add_entry(g, name, 1, dshape, NULL, 0, &g->final_b));
    }
  }
  M2PT_TRY(end_tensor(g, M2PT_END_FC_NORM_W, M2PT_FREEZE_NORM, freeze));
  M2PT_TRY(end_tensor(g, M2PT_END_FC_NORM_B, M2PT_FREEZE_NORM, freeze));
  M2PT_TRY(end_linear(g, M2PT_END_POOLER, freeze));
  return end_linear(g, M2PT_END_HEAD, freeze);
}

/* The model's pathway count, as the gradients were made for. */
size_t m2pt_model_grads_pathways(const m2pt_model *m)
{
  m2pt_model_info info;
  return m2pt_model_get_info(m, &info) == M2PT_OK ? info.pathways : 0;
}

m2pt_status m2pt_model_grads_create(m2pt_model *m, unsigned freeze, m2pt_model_grads **out)
{
  M2PT_REQUIRE(NULL, m != NULL, "m2pt_model_grads_create: model is NULL");
  M2PT_REQUIRE(m->ctx, out != NULL, "m2pt_model_grads_create: out is NULL");
  *out = NULL;
  M2PT_REQUIRE(m->ctx, (freeze & ~FREEZE_ALL) == 0,
               "m2pt_model_grads_create: unknown freeze flags 0x%x", freeze & ~FREEZE_ALL);
  m2pt_model_grads *g = calloc(1, sizeof *g);
  if (g)
    g->blocks = calloc(m->depth ? m->depth : 1, sizeof *g->blocks);
  if (!g || !g->blocks) {
    free(g);
    return m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for gradients");
  }
  g->model = m;
  g->pathways = m2pt_model_grads_pathways(m);
  g->has_head = m->ends[M2PT_END_HEAD].linear != NULL;
  const m2pt_status s = make_all(g, freeze);
  if (s != M2PT_OK) {
    m2pt_model_grads_destroy(g);
    return s;
  }
  *out = g;
  return M2PT_OK;
}

size_t m2pt_model_grads_count(const m2pt_model_grads *g)
{
  return g ? g->count : 0;
}

const char *m2pt_model_grads_name(const m2pt_model_grads *g, size_t i)
{
  return g && i < g->count ? g->e[i].name : NULL;
}

m2pt_tensor *m2pt_model_grads_tensor(const m2pt_model_grads *g, size_t i)
{
  return g && i < g->count ? g->e[i].t : NULL;
}

m2pt_status m2pt_model_grads_find(const m2pt_model_grads *g, const char *name, size_t *index)
{
  M2PT_REQUIRE(NULL, g != NULL, "m2pt_model_grads_find: grads is NULL");
  M2PT_REQUIRE(g->model->ctx, name && index, "m2pt_model_grads_find: NULL argument");
  for (size_t i = 0; i < g->count; i++)
    if (!strcmp(g->e[i].name, name)) {
      *index = i;
      return M2PT_OK;
    }
  return m2pt_fail(g->model->ctx, M2PT_ERR_NOT_FOUND,
                   "no gradient named \"%s\" (not a parameter of the model, or frozen)", name);
}

m2pt_status m2pt_model_grads_read(const m2pt_model_grads *g, size_t i, float *data,
                                  size_t count)
{
  M2PT_REQUIRE(NULL, g != NULL, "m2pt_model_grads_read: grads is NULL");
  m2pt_context *ctx = g->model->ctx;
  M2PT_REQUIRE(ctx, data != NULL, "m2pt_model_grads_read: data is NULL");
  M2PT_REQUIRE(ctx, i < g->count, "m2pt_model_grads_read: index %zu of %zu", i, g->count);
  if (count != g->e[i].t->numel)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "gradient %s has %zu elements, %zu given",
                     g->e[i].name, g->e[i].t->numel, count);
  return m2pt_tensor_read(g->e[i].t, data, count);
}

m2pt_status m2pt_model_grads_zero(m2pt_model_grads *g)
{
  M2PT_REQUIRE(NULL, g != NULL, "m2pt_model_grads_zero: grads is NULL");
  m2pt_context *ctx = g->model->ctx;
  for (size_t i = 0; i < g->count; i++)
    M2PT_TRY(m2pt_fill(ctx, g->e[i].t->buffer, 0.0f, g->e[i].t->numel));
  for (size_t i = 0; i < g->nhidden; i++)
    M2PT_TRY(m2pt_fill(ctx, g->hidden[i]->buffer, 0.0f, g->hidden[i]->numel));
  return M2PT_OK;
}

m2pt_status m2pt_model_grads_copy_parts(const m2pt_model_grads *g)
{
  m2pt_context *ctx = g->model->ctx;
  for (size_t i = 0; i < g->count; i++) {
    const m2pt_grad_entry *e = &g->e[i];
    if (!e->src)
      continue;
    const cl_int err =
        clEnqueueCopyBuffer(ctx->queue, e->src->buffer, e->t->buffer, e->offset * sizeof(float),
                            0, e->t->numel * sizeof(float), 0, NULL, NULL);
    if (err != CL_SUCCESS)
      return m2pt_fail_cl(ctx, err, "copying a gradient's part out of its whole");
  }
  return M2PT_OK;
}
