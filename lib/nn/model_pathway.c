/* Pathways of a model: adding them from an auxiliary-modality checkpoint
 * (the paper's reparameterize_aux_into_target_model) and λ per layer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "linear_internal.h"
#include "model_internal.h"

static m2pt_status add_pathways(m2pt_model *m, const char *aux_path, const char *const *layers,
                                size_t count, float scale, int aux_bias);

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
    const int e = li < 0 ? m2pt_model_end_index(m, layers[i]) : -1;
    if (e >= 0) { /* the pooler or the head: bits above the block's linears */
      *mask |= 1u << (M2PT_BLOCK_LINEARS + e);
      continue;
    }
    if (li < 0)
      return m2pt_fail(m->ctx, M2PT_ERR_NOT_FOUND,
                       "m2pt_model_add_pathways: unknown layer \"%s\" (attn.qkv, attn.proj, "
                       "mlp.fc1, mlp.fc2, or the checkpoint's head, classifier or pooler.dense)",
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

/* The same end in the aux checkpoint: "<aux root><relative name>" or the
 * name at the top level. Its weight (and with aux_bias its bias) become the
 * end's pathway. */
static m2pt_status attach_end(m2pt_model *m, const m2pt_model_source *aux, const char *aux_root,
                              int e, float scale, int aux_bias)
{
  m2pt_model_end *end = &m->ends[e];
  const char *rel = end->name + strlen(m->root);
  if (strncmp(end->name, m->root, strlen(m->root)) != 0)
    rel = end->name;
  char wname[700], bname[700];
  size_t index;
  snprintf(wname, sizeof wname, "%s%s.weight", aux_root, rel);
  if (m2pt_safetensors_find(aux->st, wname, &index) != M2PT_OK)
    snprintf(wname, sizeof wname, "%s.weight", rel);
  m2pt_safetensors_info info;
  M2PT_TRY(m2pt_model_find_tensor(aux, wname, &info, &index));
  if (info.ndim != 2 || info.shape[0] != end->out || info.shape[1] != end->in)
    return m2pt_fail(m->ctx, M2PT_ERR_SHAPE, "%s: target weight [%zu][%zu] (%s), aux \"%s\"",
                     end->name, end->out, end->in, m->path, wname);
  const size_t n = end->out * end->in;
  float *w = malloc(n * sizeof *w), *b = malloc(end->out * sizeof *b), *bb = NULL;
  m2pt_linear *l = NULL;
  m2pt_status s = w && b ? M2PT_OK : m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of memory");
  if (s == M2PT_OK && (s = m2pt_safetensors_read_f32(aux->st, index, w, n)) != M2PT_OK)
    s = m2pt_model_io_fail(m->ctx, s);
  if (s == M2PT_OK && aux_bias) {
    memcpy(bname, wname, sizeof bname);
    strcpy(bname + strlen(bname) - strlen("weight"), "bias");
    m2pt_safetensors_info bi;
    s = m2pt_model_find_tensor(aux, bname, &bi, &index);
    if (s == M2PT_OK && bi.numel != end->out)
      s = m2pt_fail(m->ctx, M2PT_ERR_SHAPE, "%s: aux \"%s\" is not [%zu]", end->name, bname,
                    end->out);
    if (s == M2PT_OK && (s = m2pt_safetensors_read_f32(aux->st, index, b, end->out)) != M2PT_OK)
      s = m2pt_model_io_fail(m->ctx, s);
    /* The seed's variant y = x(W + λW_aux)ᵀ + b + λb_aux needs a layer built
     * with an aux bias: a new one, the old one's W and b copied. */
    bb = malloc(end->out * sizeof *bb);
    float *wt = malloc(n * sizeof *wt);
    if (s == M2PT_OK && (!bb || !wt))
      s = m2pt_fail(m->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of memory");
    if (s == M2PT_OK)
      s = m2pt_linear_create(m->ctx, end->in, end->out,
                             M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY | M2PT_LINEAR_PATHWAY_BIAS, &l);
    if (s == M2PT_OK)
      s = m2pt_linear_get_weight(end->linear, wt, n);
    if (s == M2PT_OK && m2pt_linear_get_bias(end->linear, bb, end->out) != M2PT_OK)
      memset(bb, 0, end->out * sizeof *bb); /* a head without bias: b = 0 */
    if (s == M2PT_OK)
      s = m2pt_linear_set_weight(l, wt, n);
    if (s == M2PT_OK)
      s = m2pt_linear_set_bias(l, bb, end->out);
    if (s == M2PT_OK)
      s = m2pt_linear_set_aux_bias(l, b, end->out);
    free(wt);
  } else if (s == M2PT_OK) {
    s = m2pt_linear_add_pathway(end->linear);
    l = end->linear;
  }
  if (s == M2PT_OK)
    s = m2pt_linear_set_aux_weight(l, w, n);
  if (s == M2PT_OK)
    s = m2pt_linear_set_scale(l, scale);
  if (aux_bias) {
    if (s == M2PT_OK) {
      m2pt_linear_destroy(end->linear);
      end->linear = l;
    } else {
      m2pt_linear_destroy(l);
    }
  } else if (s != M2PT_OK && l) {
    m2pt_linear_drop_pathway(l);
  }
  free(w);
  free(b);
  free(bb);
  return s;
}

m2pt_status m2pt_model_add_pathways(m2pt_model *m, const char *aux_path,
                                    const char *const *layers, size_t count, float scale)
{
  return m2pt_model_add_pathways_aux_bias(m, aux_path, layers, count, scale, 0);
}

m2pt_status m2pt_model_add_pathways_aux_bias(m2pt_model *m, const char *aux_path,
                                             const char *const *layers, size_t count,
                                             float scale, int aux_bias)
{
  static const char fn[] = "m2pt_model_add_pathways";
  M2PT_REQUIRE(NULL, m != NULL, "%s: model is NULL", fn);
  unsigned mask0;
  M2PT_TRY(layer_mask(m, layers, count, &mask0));
  for (int e = 0; e < M2PT_MODEL_ENDS; e++)
    if ((mask0 & (1u << (M2PT_BLOCK_LINEARS + e))) &&
        m2pt_linear_has_pathway(m->ends[e].linear))
      return m2pt_fail(m->ctx, M2PT_ERR_INVALID_STATE, "%s: %s has a pathway already", fn,
                       m->ends[e].name);
  if (aux_bias && (mask0 & ((1u << M2PT_BLOCK_LINEARS) - 1)))
    return m2pt_fail(m->ctx, M2PT_ERR_UNSUPPORTED,
                     "%s: an aux bias is supported on the head, classifier and pooler only", fn);
  return add_pathways(m, aux_path, layers, count, scale, aux_bias);
}

static m2pt_status add_pathways(m2pt_model *m, const char *aux_path, const char *const *layers,
                                size_t count, float scale, int aux_bias)
{
  static const char fn[] = "m2pt_model_add_pathways";
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
  const unsigned block_mask = mask & ((1u << M2PT_BLOCK_LINEARS) - 1);
  if (s == M2PT_OK && block_mask && aux_depth != m->depth)
    s = m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: %zu blocks in the target %s, %zu in the aux %s", fn,
                  m->depth, m->path, aux_depth, aux_path);
  if (s == M2PT_OK)
    s = check_aux_shapes(m, &aux, block_mask);
  float *buf = NULL;
  if (s == M2PT_OK && !(buf = malloc(m2pt_model_largest_param(m) * sizeof(float))))
    s = m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  if (s == M2PT_OK)
    s = attach(m, &aux, block_mask, scale, buf);
  /* The aux root: its prefix without the stack's name. */
  char aux_root[300] = "";
  if (s == M2PT_OK) {
    const size_t lp = strlen(aux_prefix), ls = strlen(aux.scheme->stack);
    if (lp >= ls && !strcmp(aux_prefix + lp - ls, aux.scheme->stack) && lp - ls < sizeof aux_root)
      memcpy(aux_root, aux_prefix, lp - ls);
  }
  for (int e = 0; s == M2PT_OK && e < M2PT_MODEL_ENDS; e++)
    if (mask & (1u << (M2PT_BLOCK_LINEARS + e))) {
      s = attach_end(m, &aux, aux_root, e, scale, aux_bias);
      if (s != M2PT_OK) {
        roll_back(m, m->depth, block_mask);
        for (int k = 0; k < e; k++)
          if (mask & (1u << (M2PT_BLOCK_LINEARS + k)))
            m2pt_linear_drop_pathway(m->ends[k].linear);
      }
    }
  free(buf);
  free(aux_prefix);
  m2pt_safetensors_close(st);
  return s;
}
