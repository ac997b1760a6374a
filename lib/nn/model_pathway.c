/* Pathways of a model: adding them from an auxiliary-modality checkpoint
 * (the paper's reparameterize_aux_into_target_model) and λ per layer. */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "linear_internal.h"
#include "model_internal.h"

/* Block `block`'s linear named `layer`. */
static m2pt_status find_linear(const m2pt_model *m, size_t block, const char *layer,
                               const char *fn, m2pt_linear **l)
{
  M2PT_REQUIRE(NULL, m != NULL, "%s: model is NULL", fn);
  M2PT_REQUIRE(m->ctx, block < m->depth, "%s: block %zu of %zu", fn, block, m->depth);
  const int li = m2pt_naming_linear_index(m->scheme, layer);
  M2PT_REQUIRE(m->ctx, layer != NULL, "%s: layer is NULL", fn);
  if (li < 0)
    return m2pt_fail(m->ctx, M2PT_ERR_NOT_FOUND,
                     "%s: unknown layer \"%s\" (attn.qkv, attn.proj, mlp.fc1 or mlp.fc2)", fn,
                     layer);
  *l = m2pt_block_linear(m->blocks[block], (size_t)li);
  return M2PT_OK;
}

m2pt_status m2pt_model_set_scale(m2pt_model *m, size_t block, const char *layer, float scale)
{
  m2pt_linear *l;
  M2PT_TRY(find_linear(m, block, layer, "m2pt_model_set_scale", &l));
  return m2pt_linear_set_scale(l, scale);
}

m2pt_status m2pt_model_get_scale(const m2pt_model *m, size_t block, const char *layer,
                                 float *scale)
{
  m2pt_linear *l;
  M2PT_TRY(find_linear(m, block, layer, "m2pt_model_get_scale", &l));
  return m2pt_linear_get_scale(l, scale);
}

int m2pt_model_layer_index(const m2pt_model *m, const char *layer)
{
  return m ? m2pt_naming_linear_index(m->scheme, layer) : -1;
}

int m2pt_model_has_pathway(const m2pt_model *m, size_t block, const char *layer)
{
  if (!m || block >= m->depth)
    return 0;
  const int li = m2pt_naming_linear_index(m->scheme, layer);
  return li >= 0 && m2pt_linear_has_pathway(m2pt_block_linear(m->blocks[block], (size_t)li));
}

/* The layers named, as a mask of block linears. */
static m2pt_status layer_mask(const m2pt_model *m, const char *const *layers, size_t count,
                              unsigned *mask)
{
  if (!layers || count == 0) {
    *mask = (1u << M2PT_BLOCK_LINEARS) - 1;
    return M2PT_OK;
  }
  *mask = 0;
  for (size_t i = 0; i < count; i++) {
    const int li = m2pt_naming_linear_index(m->scheme, layers[i]);
    M2PT_REQUIRE(m->ctx, layers[i] != NULL, "m2pt_model_add_pathways: layer %zu is NULL", i);
    if (li < 0)
      return m2pt_fail(m->ctx, M2PT_ERR_NOT_FOUND,
                       "m2pt_model_add_pathways: unknown layer \"%s\" (attn.qkv, attn.proj, "
                       "mlp.fc1 or mlp.fc2)",
                       layers[i]);
    *mask |= 1u << li;
  }
  return M2PT_OK;
}

/* How the model's checkpoint names block linear `li` of block `b`
 * ("blocks.3.attn.qkv", "encoder.layer.3.attention.self"). */
static void layer_name(const m2pt_model *m, size_t b, int li, char *buf, size_t size)
{
  const int qkv_parts = m->scheme->parts[li] > 1;
  m2pt_param_name(buf, size, m->prefix, b, qkv_parts ? "attention.self" : m->scheme->linears[li][0],
                  NULL);
}

/* The aux checkpoint's weights of the masked layers have the target's shapes
 * (each of BERT's q, k, v a third of qkv's rows). */
static m2pt_status check_aux_shapes(const m2pt_model *m, const m2pt_model_source *aux, unsigned mask)
{
  for (size_t b = 0; b < m->depth; b++)
    for (int li = 0; li < M2PT_BLOCK_LINEARS; li++) {
      if (!(mask & (1u << li)))
        continue;
      size_t out, in;
      m2pt_model_linear_shape(m, li, &out, &in);
      const size_t parts = aux->scheme->parts[li];
      for (size_t p = 0; p < parts; p++) {
        char name[512];
        m2pt_param_name(name, sizeof name, aux->prefix, b, aux->scheme->linears[li][p], "weight");
        m2pt_safetensors_info info;
        M2PT_TRY(m2pt_model_find_tensor(aux, name, &info, NULL));
        if (info.ndim == 2 && info.shape[0] * parts == out && info.shape[1] == in)
          continue;
        char layer[512], got[128];
        layer_name(m, b, li, layer, sizeof layer);
        m2pt_model_shape_text(got, sizeof got, info.ndim, info.shape);
        return m2pt_fail(m->ctx, M2PT_ERR_SHAPE,
                         "%s: target weight [%zu][%zu] (%s), aux weight %s%s (\"%s\" in %s)",
                         layer, out, in, m->path, got, parts > 1 ? " of a third of it" : "",
                         name, aux->file);
      }
    }
  return M2PT_OK;
}

/* Drops the pathways added to the masked layers of blocks [0, blocks). */
static void roll_back(m2pt_model *m, size_t blocks, unsigned mask)
{
  for (size_t b = 0; b < blocks; b++)
    for (size_t li = 0; li < M2PT_BLOCK_LINEARS; li++)
      if (mask & (1u << li))
        m2pt_linear_drop_pathway(m2pt_block_linear(m->blocks[b], li));
}

static m2pt_status attach(m2pt_model *m, const m2pt_model_source *aux, unsigned mask, float scale,
                          float *buf)
{
  for (size_t b = 0; b < m->depth; b++) {
    m2pt_status s = M2PT_OK;
    for (int li = 0; s == M2PT_OK && li < M2PT_BLOCK_LINEARS; li++) {
      if (!(mask & (1u << li)))
        continue;
      m2pt_linear *l = m2pt_block_linear(m->blocks[b], (size_t)li);
      size_t out, in;
      m2pt_model_linear_shape(m, li, &out, &in);
      s = m2pt_model_read_linear(aux, m, b, li, M2PT_FIELD_WEIGHT, buf);
      if (s == M2PT_OK)
        s = m2pt_linear_add_pathway(l);
      if (s == M2PT_OK)
        s = m2pt_linear_set_aux_weight(l, buf, out * in);
      if (s == M2PT_OK)
        s = m2pt_linear_set_scale(l, scale);
    }
    if (s != M2PT_OK) {
      roll_back(m, b + 1, mask);
      return s;
    }
  }
  return M2PT_OK;
}

m2pt_status m2pt_model_add_pathways(m2pt_model *m, const char *aux_path,
                                      const char *const *layers, size_t count, float scale)
{
  static const char fn[] = "m2pt_model_add_pathways";
  M2PT_REQUIRE(NULL, m != NULL, "%s: model is NULL", fn);
  m2pt_context *ctx = m->ctx;
  M2PT_REQUIRE(ctx, aux_path != NULL, "%s: aux_path is NULL", fn);
  M2PT_REQUIRE(ctx, isfinite(scale), "%s: λ = %g is not finite", fn, (double)scale);
  unsigned mask;
  M2PT_TRY(layer_mask(m, layers, count, &mask));
  for (size_t b = 0; b < m->depth; b++)
    for (size_t li = 0; li < M2PT_BLOCK_LINEARS; li++)
      if ((mask & (1u << li)) && m2pt_linear_has_pathway(m2pt_block_linear(m->blocks[b], li))) {
        char layer[512];
        layer_name(m, b, (int)li, layer, sizeof layer);
        return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE, "%s: %s has a pathway already", fn, layer);
      }

  m2pt_safetensors *st;
  m2pt_status s = m2pt_safetensors_open(aux_path, &st);
  if (s != M2PT_OK)
    return m2pt_model_io_fail(ctx, s);
  m2pt_model_source aux = {ctx, aux_path, st, NULL, NULL};
  char *aux_prefix = NULL;
  size_t aux_depth = 0;
  /* Most aux checkpoints share the target's naming; otherwise look. */
  s = m2pt_find_block_stack(ctx, st, aux_path, m->scheme->naming, m->prefix, &aux.scheme,
                            &aux_prefix, &aux_depth);
  if (s == M2PT_ERR_NOT_FOUND)
    s = m2pt_find_block_stack(ctx, st, aux_path, M2PT_NAMING_AUTO, NULL, &aux.scheme, &aux_prefix,
                              &aux_depth);
  aux.prefix = aux_prefix;
  if (s == M2PT_OK && aux_depth != m->depth)
    s = m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: %zu blocks in the target %s, %zu in the aux %s", fn,
                  m->depth, m->path, aux_depth, aux_path);
  if (s == M2PT_OK)
    s = check_aux_shapes(m, &aux, mask);
  float *buf = NULL;
  if (s == M2PT_OK && !(buf = malloc(m2pt_model_largest_param(m) * sizeof(float))))
    s = m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  if (s == M2PT_OK)
    s = attach(m, &aux, mask, scale, buf);
  free(buf);
  free(aux_prefix);
  m2pt_safetensors_close(st);
  return s;
}
