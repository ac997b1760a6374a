/* A model's trainable parameters as device tensors, by its gradients' names
 * (include/m2pt/model_params.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint_naming.h"
#include "core/buffer.h"
#include "core/cl.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "linear_internal.h"
#include "m2pt/model_params.h"
#include "model_grads_internal.h"

typedef enum param_kind {
  PARAM_VIEW,     /* a tensor struct over the model's buffer (freed, not the buffer) */
  PARAM_BORROWED, /* the model's own tensor (an end's) */
  PARAM_SCALE,    /* a 1-element copy of λ, read back by sync */
  PARAM_PART,     /* a copy of rows of a qkv buffer, written back by sync */
} param_kind;

typedef struct param_entry {
  param_kind kind;
  m2pt_tensor *t;
  m2pt_linear *linear; /* SCALE: whose λ */
  cl_mem whole;        /* PART: the qkv buffer and the part's first element */
  size_t offset;
} param_entry;

struct m2pt_model_params {
  m2pt_model *model;
  param_entry *e;
  size_t count;
};

void m2pt_model_params_destroy(m2pt_model_params *p)
{
  if (!p)
    return;
  for (size_t i = 0; i < p->count; ++i) {
    if (p->e[i].kind == PARAM_VIEW)
      free(p->e[i].t);
    else if (p->e[i].kind != PARAM_BORROWED)
      m2pt_tensor_destroy(p->e[i].t);
  }
  free(p->e);
  free(p);
}

/* A tensor struct of `like`'s shape over `buffer` (not retained: the model
 * owns it and outlives the params). */
static m2pt_status view(m2pt_context *ctx, cl_mem buffer, const m2pt_tensor *like,
                        param_entry *e)
{
  m2pt_tensor *t = calloc(1, sizeof *t);
  if (!t)
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for parameters");
  *t = *like;
  t->ctx = ctx;
  t->buffer = buffer;
  e->kind = PARAM_VIEW;
  e->t = t;
  return M2PT_OK;
}

/* A device copy of `like`'s shape holding `count` floats of `src` from
 * element `offset`. */
static m2pt_status copy_of(m2pt_context *ctx, cl_mem src, size_t offset, const m2pt_tensor *like,
                           param_entry *e)
{
  M2PT_TRY(m2pt_tensor_create(ctx, like->ndim, like->shape, &e->t));
  M2PT_TRY_CL(ctx,
              clEnqueueCopyBuffer(ctx->queue, src, e->t->buffer, offset * sizeof(float), 0,
                                  like->numel * sizeof(float), 0, NULL, NULL),
              "copying a parameter");
  return M2PT_OK;
}

static m2pt_status scale_of(m2pt_context *ctx, m2pt_linear *l, param_entry *e)
{
  float scale;
  const size_t one[1] = {1};
  M2PT_TRY(m2pt_linear_get_scale(l, &scale));
  M2PT_TRY(m2pt_tensor_create(ctx, 1, one, &e->t));
  e->kind = PARAM_SCALE;
  e->linear = l;
  return m2pt_tensor_write(e->t, &scale, 1);
}

/* Field f of linear l (M2PT_FIELD_*, M2PT_FIELDS for the aux bias). */
static m2pt_status linear_field(m2pt_context *ctx, m2pt_linear *l, int f, const m2pt_tensor *g,
                                param_entry *e)
{
  if (f == M2PT_FIELD_SCALE)
    return scale_of(ctx, l, e);
  const cl_mem buf = m2pt_linear_param_buffer(l, f == M2PT_FIELDS ? 3 : f);
  if (!buf)
    return m2pt_fail(ctx, M2PT_ERR_NOT_FOUND, "the layer has no such parameter");
  return view(ctx, buf, g, e);
}

/* Finds gradient `name`'s parameter in the model. */
static m2pt_status resolve(m2pt_model *m, const char *name, const m2pt_tensor *g, param_entry *e)
{
  m2pt_context *ctx = m->ctx;
  char buf[700];
  for (int w = 0; w < M2PT_END_TENSORS; ++w)
    if (m2pt_model_end_tensor_name(m, w, buf, sizeof buf) && !strcmp(buf, name)) {
      e->kind = PARAM_BORROWED;
      e->t = m2pt_model_end_tensor(m, w);
      return M2PT_OK;
    }
  int field = 0;
  const int end = m2pt_model_end_of(m, name, &field);
  if (end >= 0)
    return linear_field(ctx, m->ends[end].linear, field, g, e);
  const m2pt_name_ref r = m2pt_classify_name(m->scheme, m->prefix, m->final_prefix, name);
  if (r.kind == M2PT_NAME_FINAL_NORM && (r.norm == 0 ? m->norm_w : m->norm_b))
    return view(ctx, r.norm == 0 ? m->norm_w : m->norm_b, g, e);
  if (r.kind == M2PT_NAME_NORM && r.block < m->depth)
    return view(ctx, m2pt_block_norm_buffer(m->blocks[r.block], (size_t)r.norm), g, e);
  if (r.kind == M2PT_NAME_LINEAR && r.block < m->depth) {
    m2pt_linear *l = m2pt_block_linear(m->blocks[r.block], (size_t)r.linear);
    if (m->scheme->parts[r.linear] == 1 || r.field == M2PT_FIELD_SCALE)
      return linear_field(ctx, l, r.field, g, e);
    const cl_mem whole = m2pt_linear_param_buffer(l, r.field);
    e->kind = PARAM_PART;
    e->whole = whole;
    e->offset = (size_t)r.part * g->numel;
    return copy_of(ctx, whole, e->offset, g, e);
  }
  return m2pt_fail(ctx, M2PT_ERR_NOT_FOUND, "parameter \"%s\": not found in the model", name);
}

m2pt_status m2pt_model_params_create(m2pt_model *m, const m2pt_model_grads *g,
                                     m2pt_model_params **out)
{
  M2PT_REQUIRE(NULL, m != NULL && g != NULL && out != NULL,
               "m2pt_model_params_create: NULL argument");
  M2PT_REQUIRE(m->ctx, g->model == m, "m2pt_model_params_create: the gradients are another "
                                      "model's");
  m2pt_model_params *p = calloc(1, sizeof *p);
  if (p && g->count)
    p->e = calloc(g->count, sizeof *p->e);
  if (!p || (g->count && !p->e)) {
    free(p);
    return m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for parameters");
  }
  p->model = m;
  for (size_t i = 0; i < g->count; ++i) {
    p->count = i + 1;
    p->e[i].kind = PARAM_BORROWED; /* nothing to free until resolved */
    const m2pt_status s = resolve(m, g->e[i].name, g->e[i].t, &p->e[i]);
    if (s != M2PT_OK) {
      if (p->e[i].t == NULL)
        p->e[i].kind = PARAM_BORROWED;
      m2pt_model_params_destroy(p);
      return s;
    }
  }
  *out = p;
  return M2PT_OK;
}

size_t m2pt_model_params_count(const m2pt_model_params *p)
{
  return p ? p->count : 0;
}

m2pt_tensor *m2pt_model_params_tensor(const m2pt_model_params *p, size_t i)
{
  return p && i < p->count ? p->e[i].t : NULL;
}

m2pt_status m2pt_model_params_sync(m2pt_model_params *p)
{
  M2PT_REQUIRE(NULL, p != NULL, "m2pt_model_params_sync: params is NULL");
  m2pt_model *m = p->model;
  m2pt_context *ctx = m->ctx;
  /* First, so that a failure below still leaves no W + λ·W_aux or packed
   * weight formed from the parameters before the step in use. */
  for (size_t b = 0; b < m->depth; ++b)
    m2pt_block_params_changed(m->blocks[b]);
  for (int e = 0; e < M2PT_MODEL_ENDS; ++e)
    if (m->ends[e].linear)
      m2pt_linear_params_changed(m->ends[e].linear);
  for (size_t i = 0; i < p->count; ++i) {
    param_entry *e = &p->e[i];
    if (e->kind == PARAM_PART)
      M2PT_TRY_CL(ctx,
                  clEnqueueCopyBuffer(ctx->queue, e->t->buffer, e->whole, 0,
                                      e->offset * sizeof(float), e->t->numel * sizeof(float), 0,
                                      NULL, NULL),
                  "writing a parameter part back");
    if (e->kind == PARAM_SCALE) {
      float scale;
      M2PT_TRY(m2pt_tensor_read(e->t, &scale, 1));
      if (!isfinite(scale))
        return m2pt_fail(ctx, M2PT_ERR_FORMAT, "λ became %g: not finite", (double)scale);
      M2PT_TRY(m2pt_linear_set_scale(e->linear, scale));
    }
  }
  return M2PT_OK;
}
