/* Saving a model as a checkpoint in the naming it was loaded in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context_impl.h"
#include "core/error.h"
#include "io/io_util.h"
#include "linear_internal.h"
#include "model_internal.h"

/* Host copies the writer borrows until it finishes. */
typedef struct save_state {
  const m2pt_model *m;
  m2pt_safetensors_writer *w;
  void **owned;
  size_t count, capacity;
} save_state;

/* Hands `p` (malloc'd) to the writer's lifetime; frees it when that fails. */
static void *keep(save_state *s, void *p)
{
  if (p && s->count == s->capacity) {
    const size_t cap = s->capacity ? 2 * s->capacity : 64;
    void **grown = realloc(s->owned, cap * sizeof *grown);
    if (!grown) {
      free(p);
      return NULL;
    }
    s->owned = grown;
    s->capacity = cap;
  }
  if (p)
    s->owned[s->count++] = p;
  return p;
}

static m2pt_status writer_fail(const save_state *s, m2pt_status status)
{
  return m2pt_fail(s->m->ctx, status, "%s", m2pt_last_error(NULL));
}

static m2pt_status add(save_state *s, const char *name, m2pt_dtype dtype, size_t ndim,
                       const size_t *shape, const void *data, size_t nbytes)
{
  const m2pt_status st = m2pt_safetensors_writer_add(s->w, name, dtype, ndim, shape, data, nbytes);
  return st == M2PT_OK ? M2PT_OK : writer_fail(s, st);
}

/* Writes the n floats of `values` (malloc'd; taken over) as `dtype` when
 * that is F16 or BF16 and holds each exactly, else as F32 (a merged weight no
 * longer fits its file's half precision). Only the copy written is kept. */
static m2pt_status add_floats(save_state *s, const char *name, m2pt_dtype dtype, size_t ndim,
                              const size_t *shape, float *values, size_t n)
{
  if (dtype == M2PT_DTYPE_F16 || dtype == M2PT_DTYPE_BF16) {
    uint16_t *half = malloc(n ? n * sizeof *half : 1);
    size_t i = 0;
    for (; half && i < n; i++)
      if (!(dtype == M2PT_DTYPE_F16 ? m2pt_f32_to_f16_exact(values[i], &half[i])
                                    : m2pt_f32_to_bf16_exact(values[i], &half[i])))
        break;
    if (half && i == n) {
      free(values);
      if (!keep(s, half))
        return m2pt_fail(s->m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory saving");
      return add(s, name, dtype, ndim, shape, half, n * sizeof *half);
    }
    free(half);
  }
  if (!keep(s, values))
    return m2pt_fail(s->m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory saving");
  return add(s, name, M2PT_DTYPE_F32, ndim, shape, values, n * sizeof(float));
}

/* The dtype `name` has in the loaded file, F32 when it is not there. */
static m2pt_dtype file_dtype(const m2pt_model *m, const char *name)
{
  size_t index;
  m2pt_safetensors_info info;
  if (m2pt_safetensors_find(m->st, name, &index) != M2PT_OK ||
      m2pt_safetensors_info_at(m->st, index, &info) != M2PT_OK)
    return M2PT_DTYPE_F32;
  return info.dtype;
}

/* The device's value of the block parameter a checkpoint tensor holds, in
 * the tensor's shape (one part of BERT's qkv is a slice of its rows), into a
 * malloc'd *out. */
static m2pt_status param_value(const m2pt_model *m, const m2pt_name_ref *r, float **out)
{
  size_t rows = m->cfg.dim, cols = 1, parts = 1;
  if (r->kind == M2PT_NAME_LINEAR) {
    m2pt_model_linear_shape(m, r->linear, &rows, &cols);
    parts = m->scheme->parts[r->linear];
    if (r->field == M2PT_FIELD_BIAS)
      cols = 1;
  }
  const size_t whole = rows * cols;
  float *all = malloc(whole * sizeof(float));
  if (!all)
    return m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory saving");
  m2pt_status st;
  if (r->kind == M2PT_NAME_FINAL_NORM) {
    const cl_int err =
        clEnqueueReadBuffer(m->ctx->queue, r->norm ? m->norm_b : m->norm_w, CL_TRUE, 0,
                            whole * sizeof(float), all, 0, NULL, NULL);
    st = err == CL_SUCCESS ? M2PT_OK : m2pt_fail_cl(m->ctx, err, "m2pt_model_save: final norm");
  } else if (r->kind == M2PT_NAME_NORM) {
    st = m2pt_block_get(m->blocks[r->block], m2pt_block_norm_names[r->norm], all, whole);
  } else {
    char name[64];
    snprintf(name, sizeof name, "%s.%s", m2pt_block_linear_names[r->linear],
             m2pt_field_names[r->field]);
    st = m2pt_block_get(m->blocks[r->block], name, all, whole);
  }
  if (st == M2PT_OK && parts > 1) /* keep this part's rows only */
    memmove(all, all + (size_t)r->part * (whole / parts), (whole / parts) * sizeof(float));
  if (st != M2PT_OK) {
    free(all);
    return st;
  }
  *out = all;
  return M2PT_OK;
}

/* The loaded file's tensors: verbatim, or the model's value of a block
 * parameter; stored pathway tensors are left to add_pathways. */
static m2pt_status add_file_tensors(save_state *s)
{
  const m2pt_model *m = s->m;
  for (size_t i = 0; i < m2pt_safetensors_count(m->st); i++) {
    m2pt_safetensors_info info;
    m2pt_safetensors_info_at(m->st, i, &info);
    int field;
    const int e = m2pt_model_end_of(m, info.name, &field);
    if (e >= 0) {
      /* The pooler and the head: their values now; pathway tensors are
       * written by add_pathways when the pathway is still there. */
      if (field != M2PT_FIELD_WEIGHT && field != M2PT_FIELD_BIAS)
        continue;
      float *v = malloc(info.numel * sizeof *v);
      if (!v)
        return m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory saving");
      const m2pt_status st = field == M2PT_FIELD_WEIGHT
                                 ? m2pt_linear_get_weight(m->ends[e].linear, v, info.numel)
                                 : m2pt_linear_get_bias(m->ends[e].linear, v, info.numel);
      if (st != M2PT_OK) {
        free(v);
        return st;
      }
      M2PT_TRY(add_floats(s, info.name, info.dtype, info.ndim, info.shape, v, info.numel));
      continue;
    }
    m2pt_name_ref r = m2pt_classify_name(m->scheme, m->prefix, m->final_prefix, info.name);
    if (r.kind == M2PT_NAME_FINAL_NORM && !m->norm_w)
      r.kind = M2PT_NAME_OUTSIDE; /* loaded with the final norm off */
    if (r.kind == M2PT_NAME_OUTSIDE || r.kind == M2PT_NAME_UNKNOWN) {
      /* Read now, from the file as it was at load: a file changed since
       * fails here, naming it. */
      void *copy = keep(s, malloc(info.nbytes ? info.nbytes : 1));
      if (!copy)
        return m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory saving");
      const m2pt_status st = m2pt_safetensors_read_raw(m->st, i, copy, info.nbytes);
      if (st != M2PT_OK)
        return writer_fail(s, st);
      M2PT_TRY(add(s, info.name, info.dtype, info.ndim, info.shape, copy, info.nbytes));
      continue;
    }
    if (r.kind == M2PT_NAME_LINEAR &&
        (r.field == M2PT_FIELD_AUX_WEIGHT || r.field == M2PT_FIELD_SCALE))
      continue;
    float *v = NULL;
    M2PT_TRY(param_value(m, &r, &v));
    M2PT_TRY(add_floats(s, info.name, info.dtype, info.ndim, info.shape, v, info.numel));
  }
  return M2PT_OK;
}

/* "<layer>.aux_weight" and "<layer>.cross_modal_scale" of every unmerged
 * pathway, in the model's naming. */
static m2pt_status add_pathways(save_state *s)
{
  const m2pt_model *m = s->m;
  for (size_t b = 0; b < m->depth; b++)
    for (int li = 0; li < M2PT_BLOCK_LINEARS; li++) {
      m2pt_linear *l = m2pt_block_linear(m->blocks[b], (size_t)li);
      if (!m2pt_linear_has_pathway(l))
        continue;
      size_t rows, cols;
      m2pt_model_linear_shape(m, li, &rows, &cols);
      float *aux = malloc(rows * cols * sizeof(float));
      float scale = 0.0f;
      if (!aux)
        return m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory saving");
      m2pt_status st = m2pt_linear_get_aux_weight(l, aux, rows * cols);
      if (st == M2PT_OK)
        st = m2pt_linear_get_scale(l, &scale);
      const size_t parts = m->scheme->parts[li];
      const size_t shape[2] = {rows / parts, cols}, one = 1;
      for (size_t p = 0; st == M2PT_OK && p < parts; p++) {
        char name[512];
        const char *layer = m->scheme->linears[li][p];
        const size_t n = shape[0] * cols;
        /* Pathway tensors keep the loaded file's dtype where they came from
         * it and it holds them exactly. */
        float *part = malloc(n * sizeof *part), *lambda = malloc(sizeof *lambda);
        if (!part || !lambda) {
          free(part);
          free(lambda);
          st = m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory saving");
          break;
        }
        memcpy(part, aux + p * n, n * sizeof *part);
        *lambda = scale;
        m2pt_param_name(name, sizeof name, m->prefix, b, layer, "aux_weight");
        st = add_floats(s, name, file_dtype(m, name), 2, shape, part, n);
        m2pt_param_name(name, sizeof name, m->prefix, b, layer, "cross_modal_scale");
        if (st == M2PT_OK)
          st = add_floats(s, name, file_dtype(m, name), 1, &one, lambda, 1);
        else
          free(lambda);
      }
      free(aux);
      M2PT_TRY(st);
    }
  return M2PT_OK;
}

/* An end the loaded file lacks (a head made by m2pt_model_create_head):
 * its weight and bias, as F32. */
static m2pt_status add_new_ends(save_state *s)
{
  const m2pt_model *m = s->m;
  for (int e = 0; e < M2PT_MODEL_ENDS; e++) {
    const m2pt_model_end *end = &m->ends[e];
    char name[700];
    size_t index;
    snprintf(name, sizeof name, "%s.weight", end->name ? end->name : "");
    if (!end->linear || m2pt_safetensors_find(m->st, name, &index) == M2PT_OK)
      continue;
    const size_t n = end->out * end->in, shape[2] = {end->out, end->in};
    float *w = malloc(n * sizeof *w), *b = malloc(end->out * sizeof *b);
    m2pt_status st = w && b ? m2pt_linear_get_weight(end->linear, w, n)
                            : m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
    if (st == M2PT_OK)
      st = add_floats(s, name, M2PT_DTYPE_F32, 2, shape, w, n);
    else
      free(w);
    snprintf(name, sizeof name, "%s.bias", end->name);
    if (st == M2PT_OK && m2pt_linear_get_bias(end->linear, b, end->out) == M2PT_OK)
      st = add_floats(s, name, M2PT_DTYPE_F32, 1, &end->out, b, end->out);
    else
      free(b);
    M2PT_TRY(st);
  }
  return M2PT_OK;
}

/* An unmerged pathway of the pooler or head: "<name>.aux_weight",
 * ".cross_modal_scale" and, with an aux bias, ".aux_bias". */
static m2pt_status add_end_pathways(save_state *s)
{
  const m2pt_model *m = s->m;
  for (int e = 0; e < M2PT_MODEL_ENDS; e++) {
    const m2pt_model_end *end = &m->ends[e];
    if (!end->linear || !m2pt_linear_has_pathway(end->linear))
      continue;
    const size_t n = end->out * end->in, shape[2] = {end->out, end->in}, one = 1;
    float *aux = malloc(n * sizeof *aux), *lambda = malloc(sizeof *lambda),
          *ab = malloc(end->out * sizeof *ab);
    if (!aux || !lambda || !ab) {
      free(aux);
      free(lambda);
      free(ab);
      return m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory saving");
    }
    m2pt_status st = m2pt_linear_get_aux_weight(end->linear, aux, n);
    if (st == M2PT_OK)
      st = m2pt_linear_get_scale(end->linear, lambda);
    const int has_ab = st == M2PT_OK &&
                       m2pt_linear_get_aux_bias(end->linear, ab, end->out) == M2PT_OK;
    char name[700];
    snprintf(name, sizeof name, "%s.aux_weight", end->name);
    if (st == M2PT_OK)
      st = add_floats(s, name, file_dtype(m, name), 2, shape, aux, n);
    else
      free(aux);
    snprintf(name, sizeof name, "%s.cross_modal_scale", end->name);
    if (st == M2PT_OK)
      st = add_floats(s, name, file_dtype(m, name), 1, &one, lambda, 1);
    else
      free(lambda);
    snprintf(name, sizeof name, "%s.aux_bias", end->name);
    if (st == M2PT_OK && has_ab)
      st = add_floats(s, name, file_dtype(m, name), 1, &end->out, ab, end->out);
    else
      free(ab);
    M2PT_TRY(st);
  }
  return M2PT_OK;
}

static m2pt_status copy_metadata(save_state *s)
{
  for (size_t i = 0; i < m2pt_safetensors_metadata_count(s->m->st); i++) {
    const char *key, *value;
    m2pt_safetensors_metadata_at(s->m->st, i, &key, &value);
    const m2pt_status st = m2pt_safetensors_writer_metadata(s->w, key, value);
    if (st != M2PT_OK)
      return writer_fail(s, st);
  }
  return M2PT_OK;
}

m2pt_status m2pt_model_save(const m2pt_model *m, const char *path)
{
  M2PT_REQUIRE(NULL, m != NULL, "m2pt_model_save: model is NULL");
  M2PT_REQUIRE(m->ctx, path != NULL, "m2pt_model_save: path is NULL");
  save_state s = {m, NULL, NULL, 0, 0};
  m2pt_status st = m2pt_safetensors_writer_create(path, &s.w);
  if (st != M2PT_OK)
    return writer_fail(&s, st);
  st = copy_metadata(&s);
  if (st == M2PT_OK)
    st = add_file_tensors(&s);
  if (st == M2PT_OK)
    st = add_pathways(&s);
  if (st == M2PT_OK)
    st = add_end_pathways(&s);
  if (st == M2PT_OK)
    st = add_new_ends(&s);
  if (st == M2PT_OK && (st = m2pt_safetensors_writer_finish(s.w)) != M2PT_OK)
    st = writer_fail(&s, st);
  m2pt_safetensors_writer_destroy(s.w);
  for (size_t i = 0; i < s.count; i++)
    free(s.owned[i]);
  free(s.owned);
  return st;
}
