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

static void *keep(save_state *s, size_t bytes)
{
  if (s->count == s->capacity) {
    const size_t cap = s->capacity ? 2 * s->capacity : 64;
    void **grown = realloc(s->owned, cap * sizeof *grown);
    if (!grown)
      return NULL;
    s->owned = grown;
    s->capacity = cap;
  }
  void *p = malloc(bytes ? bytes : 1);
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

/* Writes n floats as `dtype` (F16 or BF16) when each is exact there, else
 * as F32 (a merged weight no longer fits its file's half precision). */
static m2pt_status add_floats(save_state *s, const char *name, m2pt_dtype dtype, size_t ndim,
                              const size_t *shape, float *values, size_t n)
{
  if (dtype == M2PT_DTYPE_F16 || dtype == M2PT_DTYPE_BF16) {
    uint16_t *half = keep(s, n * sizeof *half);
    if (!half)
      return m2pt_fail(s->m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory saving");
    size_t i = 0;
    for (; i < n; i++)
      if (!(dtype == M2PT_DTYPE_F16 ? m2pt_f32_to_f16_exact(values[i], &half[i])
                                    : m2pt_f32_to_bf16_exact(values[i], &half[i])))
        break;
    if (i == n)
      return add(s, name, dtype, ndim, shape, half, n * sizeof *half);
  }
  return add(s, name, M2PT_DTYPE_F32, ndim, shape, values, n * sizeof(float));
}

static m2pt_status read_buffer(const m2pt_model *m, cl_mem buf, float *dst, size_t n)
{
  M2PT_TRY_CL(m->ctx,
              clEnqueueReadBuffer(m->ctx->queue, buf, CL_TRUE, 0, n * sizeof(float), dst, 0,
                                  NULL, NULL),
              "m2pt_model_save: reading the final norm");
  return M2PT_OK;
}

/* The device's value of the block parameter a checkpoint tensor holds, in
 * the tensor's shape (one part of BERT's qkv is a slice of its rows). */
static m2pt_status param_value(save_state *s, const m2pt_name_ref *r,
                               const m2pt_safetensors_info *info, float **out)
{
  const m2pt_model *m = s->m;
  float *v = keep(s, info->numel * sizeof(float));
  if (!v)
    return m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory saving");
  *out = v;
  if (r->kind == M2PT_NAME_FINAL_NORM)
    return read_buffer(m, r->norm ? m->norm_b : m->norm_w, v, m->cfg.dim);
  const m2pt_block *blk = m->blocks[r->block];
  if (r->kind == M2PT_NAME_NORM)
    return m2pt_block_get(blk, m2pt_block_norm_names[r->norm], v, m->cfg.dim);
  size_t rows, cols;
  m2pt_model_linear_shape(m, r->linear, &rows, &cols);
  const size_t parts = m->scheme->parts[r->linear];
  const int bias = r->field == M2PT_FIELD_BIAS;
  const size_t whole = bias ? rows : rows * cols;
  float *all = v;
  if (parts > 1 && !(all = keep(s, whole * sizeof(float))))
    return m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory saving");
  char name[64];
  snprintf(name, sizeof name, "%s.%s", m2pt_block_linear_names[r->linear],
           m2pt_field_names[r->field]);
  M2PT_TRY(m2pt_block_get(blk, name, all, whole));
  if (parts > 1)
    memcpy(v, all + (size_t)r->part * (whole / parts), (whole / parts) * sizeof(float));
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
    m2pt_name_ref r = m2pt_classify_name(m->scheme, m->prefix, m->final_prefix, info.name);
    if (r.kind == M2PT_NAME_FINAL_NORM && !m->norm_w)
      r.kind = M2PT_NAME_OUTSIDE; /* loaded with the final norm off */
    if (r.kind == M2PT_NAME_OUTSIDE || r.kind == M2PT_NAME_UNKNOWN) {
      const void *raw;
      size_t nbytes;
      m2pt_safetensors_raw(m->st, i, &raw, &nbytes);
      M2PT_TRY(add(s, info.name, info.dtype, info.ndim, info.shape, raw, nbytes));
      continue;
    }
    if (r.kind == M2PT_NAME_LINEAR &&
        (r.field == M2PT_FIELD_AUX_WEIGHT || r.field == M2PT_FIELD_SCALE))
      continue;
    float *v = NULL;
    M2PT_TRY(param_value(s, &r, &info, &v));
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
      float *aux = keep(s, rows * cols * sizeof(float));
      float *scale = keep(s, sizeof(float));
      if (!aux || !scale)
        return m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory saving");
      M2PT_TRY(m2pt_linear_get_aux_weight(l, aux, rows * cols));
      M2PT_TRY(m2pt_linear_get_scale(l, scale));
      const size_t parts = m->scheme->parts[li];
      const size_t shape[2] = {rows / parts, cols}, one = 1;
      for (size_t p = 0; p < parts; p++) {
        char name[512];
        const char *layer = m->scheme->linears[li][p];
        m2pt_param_name(name, sizeof name, m->prefix, b, layer, "aux_weight");
        M2PT_TRY(add(s, name, M2PT_DTYPE_F32, 2, shape, aux + p * shape[0] * cols,
                     shape[0] * cols * sizeof(float)));
        m2pt_param_name(name, sizeof name, m->prefix, b, layer, "cross_modal_scale");
        M2PT_TRY(add(s, name, M2PT_DTYPE_F32, 1, &one, scale, sizeof(float)));
      }
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
  if (st == M2PT_OK && (st = m2pt_safetensors_writer_finish(s.w)) != M2PT_OK)
    st = writer_fail(&s, st);
  m2pt_safetensors_writer_destroy(s.w);
  for (size_t i = 0; i < s.count; i++)
    free(s.owned[i]);
  free(s.owned);
  return st;
}
