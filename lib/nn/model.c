/* An M2PT model: loading a block stack from a checkpoint, building the
 * pathway from an auxiliary-modality checkpoint (the paper's
 * reparameterize_aux_into_target_model), λ, merge and forward. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context_impl.h"
#include "core/error.h"
#include "core/options.h"
#include "linear_internal.h"
#include "model_internal.h"
#include "ops/block_ops.h"
#include "ops/tensor_checks.h"

void m2pt_model_linear_shape(const m2pt_model *m, int index, size_t *out, size_t *in)
{
  const size_t dim = m->cfg.dim, hd = m->cfg.heads * m->cfg.dim_head;
  const size_t hidden = m->cfg.ff_mult * dim;
  static const int qkv = M2PT_BLOCK_QKV, proj = M2PT_BLOCK_PROJ, fc1 = M2PT_BLOCK_FC1;
  *in = index == qkv || index == fc1 ? dim : index == proj ? hd : hidden;
  *out = index == qkv ? 3 * hd : index == proj ? dim : index == fc1 ? hidden : dim;
}

/* Passes a checkpoint reader's failure (reported on the thread) to ctx. */
static m2pt_status io_fail(const m2pt_context *ctx, m2pt_status s)
{
  return m2pt_fail(ctx, s, "%s", m2pt_last_error(NULL));
}

static void shape_text(char *buf, size_t size, size_t ndim, const size_t *shape)
{
  size_t used = 0;
  buf[0] = '\0';
  if (ndim == 0)
    snprintf(buf, size, "[] (a scalar)");
  for (size_t i = 0; i < ndim && used < size; i++) {
    const int n = snprintf(buf + used, size - used, "[%zu]", shape[i]);
    if (n < 0)
      return;
    used += (size_t)n;
  }
}

/* One open checkpoint and where its block stack is. */
typedef struct source {
  m2pt_context *ctx;
  const char *file;
  const m2pt_safetensors *st;
  const m2pt_naming_scheme *scheme;
  const char *prefix;
} source;

/* Finds `name` (its index into *index when that is not NULL); a missing
 * tensor is M2PT_ERR_FORMAT naming it. */
static m2pt_status find_tensor(const source *src, const char *name, m2pt_safetensors_info *info,
                               size_t *found)
{
  size_t index;
  if (m2pt_safetensors_find(src->st, name, &index) != M2PT_OK)
    return m2pt_fail(src->ctx, M2PT_ERR_FORMAT, "%s: missing tensor \"%s\"", src->file, name);
  if (found)
    *found = index;
  return m2pt_safetensors_info_at(src->st, index, info) == M2PT_OK
             ? M2PT_OK
             : io_fail(src->ctx, M2PT_ERR_INVALID_ARGUMENT);
}

static int has_tensor(const source *src, const char *name)
{
  size_t index;
  return m2pt_safetensors_find(src->st, name, &index) == M2PT_OK;
}

/* Reads tensor `name`, which must have the given shape, as f32 into dst. */
static m2pt_status read_tensor(const source *src, const char *name, size_t ndim,
                               const size_t *shape, float *dst)
{
  m2pt_safetensors_info info;
  size_t index;
  M2PT_TRY(find_tensor(src, name, &info, &index));
  int same = info.ndim == ndim;
  for (size_t i = 0; same && i < ndim; i++)
    same = info.shape[i] == shape[i];
  if (!same) {
    char got[128], want[128];
    shape_text(got, sizeof got, info.ndim, info.shape);
    shape_text(want, sizeof want, ndim, shape);
    return m2pt_fail(src->ctx, M2PT_ERR_FORMAT, "%s: tensor \"%s\" has shape %s, expected %s",
                     src->file, name, got, want);
  }
  const m2pt_status s = m2pt_safetensors_read_f32(src->st, index, dst, info.numel);
  return s == M2PT_OK ? M2PT_OK : io_fail(src->ctx, s);
}

/* Reads `field` (weight, bias or aux_weight) of block linear `li` of block
 * `block`: the parts' rows concatenated. */
static m2pt_status read_linear(const source *src, const m2pt_model *m, size_t block, int li,
                               int field, float *dst)
{
  size_t out, in;
  m2pt_model_linear_shape(m, li, &out, &in);
  const size_t parts = src->scheme->parts[li];
  const size_t shape[2] = {out / parts, in};
  const size_t ndim = field == M2PT_FIELD_BIAS ? 1 : 2;
  const size_t part_numel = field == M2PT_FIELD_BIAS ? shape[0] : shape[0] * in;
  for (size_t p = 0; p < parts; p++) {
    char name[512];
    if (!m2pt_param_name(name, sizeof name, src->prefix, block, src->scheme->linears[li][p],
                         m2pt_field_names[field]))
      return m2pt_fail(src->ctx, M2PT_ERR_INVALID_ARGUMENT, "%s: prefix too long", src->file);
    M2PT_TRY(read_tensor(src, name, ndim, shape, dst + p * part_numel));
  }
  return M2PT_OK;
}

/* λ of a linear stored by the paper's code: one finite value per part, the
 * same in every part (q, k, v share qkv's). */
static m2pt_status read_scale(const source *src, size_t block, int li, float *scale)
{
  float first = 0.0f;
  for (size_t p = 0; p < src->scheme->parts[li]; p++) {
    char name[512];
    m2pt_param_name(name, sizeof name, src->prefix, block, src->scheme->linears[li][p],
                    m2pt_field_names[M2PT_FIELD_SCALE]);
    m2pt_safetensors_info info;
    size_t index;
    M2PT_TRY(find_tensor(src, name, &info, &index));
    if (info.numel != 1 || info.ndim > 1)
      return m2pt_fail(src->ctx, M2PT_ERR_FORMAT, "%s: \"%s\" must hold one value (shape [1])",
                       src->file, name);
    float v;
    const m2pt_status s = m2pt_safetensors_read_f32(src->st, index, &v, 1);
    if (s != M2PT_OK)
      return io_fail(src->ctx, s);
    if (!isfinite(v))
      return m2pt_fail(src->ctx, M2PT_ERR_FORMAT, "%s: \"%s\" = %g is not finite", src->file,
                       name, (double)v);
    if (p > 0 && memcmp(&v, &first, sizeof v) != 0)
      return m2pt_fail(src->ctx, M2PT_ERR_FORMAT,
                       "%s: \"%s\" = %g differs from %s's λ %g: the concatenated qkv has one λ",
                       src->file, name, (double)v, src->scheme->linears[li][0], (double)first);
    if (p == 0)
      first = v;
  }
  *scale = first;
  return M2PT_OK;
}

/* 1 when the checkpoint stores this linear with a pathway (every part has
 * aux_weight and cross_modal_scale), 0 when none does; a partial pathway is
 * M2PT_ERR_FORMAT. */
static m2pt_status stored_pathway(const source *src, size_t block, int li, int *has)
{
  size_t count = 0, total = 0;
  char name[512], missing[512] = "";
  for (size_t p = 0; p < src->scheme->parts[li]; p++)
    for (int f = M2PT_FIELD_AUX_WEIGHT; f <= M2PT_FIELD_SCALE; f++) {
      m2pt_param_name(name, sizeof name, src->prefix, block, src->scheme->linears[li][p],
                      m2pt_field_names[f]);
      total++;
      if (has_tensor(src, name))
        count++;
      else
        memcpy(missing, name, sizeof name);
    }
  if (count != 0 && count != total)
    return m2pt_fail(src->ctx, M2PT_ERR_FORMAT,
                     "%s: missing tensor \"%s\" (the layer's other pathway tensors are there)",
                     src->file, missing);
  *has = count != 0;
  return M2PT_OK;
}

/* Every tensor under "<prefix>.{i}." must be something the block models, in
 * a block that exists: anything else (LayerScale, a q/k norm, a gap in the
 * numbering) would be silently ignored by the forward. */
static m2pt_status check_block_names(const source *src, const char *final_prefix, size_t depth)
{
  for (size_t i = 0; i < m2pt_safetensors_count(src->st); i++) {
    m2pt_safetensors_info info;
    m2pt_safetensors_info_at(src->st, i, &info);
    const m2pt_name_ref r = m2pt_classify_name(src->scheme, src->prefix, final_prefix, info.name);
    if (r.kind == M2PT_NAME_UNKNOWN)
      return m2pt_fail(src->ctx, M2PT_ERR_UNSUPPORTED,
                       "%s: tensor \"%s\" is not part of an M2PT block (m2pt's block has "
                       "norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2)",
                       src->file, info.name);
    if ((r.kind == M2PT_NAME_NORM || r.kind == M2PT_NAME_LINEAR) && r.block >= depth)
      return m2pt_fail(src->ctx, M2PT_ERR_FORMAT,
                       "%s: tensor \"%s\" belongs to block %zu, but the blocks stop at %zu "
                       "(block %zu has no %s.weight)",
                       src->file, info.name, r.block, depth, depth,
                       src->scheme->linears[M2PT_BLOCK_QKV][0]);
  }
  return M2PT_OK;
}

/* depth, dim, heads·dim_head, ff_mult and the qkv bias from block 0's
 * shapes. */
static m2pt_status infer_config(const source *src, const m2pt_model_options *o,
                                m2pt_block_config *cfg)
{
  m2pt_context *ctx = src->ctx;
  const m2pt_naming_scheme *s = src->scheme;
  char qkv_name[512], fc1_name[512], bias_name[512];
  m2pt_param_name(qkv_name, sizeof qkv_name, src->prefix, 0, s->linears[M2PT_BLOCK_QKV][0],
                  "weight");
  m2pt_param_name(fc1_name, sizeof fc1_name, src->prefix, 0, s->linears[M2PT_BLOCK_FC1][0],
                  "weight");
  m2pt_param_name(bias_name, sizeof bias_name, src->prefix, 0, s->linears[M2PT_BLOCK_QKV][0],
                  "bias");
  m2pt_safetensors_info qkv, fc1;
  M2PT_TRY(find_tensor(src, qkv_name, &qkv, NULL));
  M2PT_TRY(find_tensor(src, fc1_name, &fc1, NULL));
  if (qkv.ndim != 2 || fc1.ndim != 2 || qkv.numel == 0 || fc1.numel == 0)
    return m2pt_fail(ctx, M2PT_ERR_FORMAT, "%s: \"%s\" and \"%s\" must be non-empty matrices",
                     src->file, qkv_name, fc1_name);
  const size_t dim = qkv.shape[1], qkv_out = qkv.shape[0] * s->parts[M2PT_BLOCK_QKV];
  if (qkv_out % 3 != 0)
    return m2pt_fail(ctx, M2PT_ERR_FORMAT, "%s: \"%s\" has %zu rows, not a multiple of 3 (q, k, v)",
                     src->file, qkv_name, qkv.shape[0]);
  const size_t inner = qkv_out / 3;
  if (fc1.shape[1] != dim)
    return m2pt_fail(ctx, M2PT_ERR_FORMAT, "%s: \"%s\" takes %zu features, \"%s\" %zu", src->file,
                     fc1_name, fc1.shape[1], qkv_name, dim);
  if (fc1.shape[0] % dim != 0)
    return m2pt_fail(ctx, M2PT_ERR_UNSUPPORTED,
                     "%s: hidden width %zu (\"%s\") is not a multiple of dim %zu", src->file,
                     fc1.shape[0], fc1_name, dim);
  const size_t heads = o->heads ? o->heads : 1;
  if (inner % heads != 0)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_ARGUMENT,
                     "%s: %zu heads do not divide the attention width %zu", src->file, heads,
                     inner);
  memset(cfg, 0, sizeof *cfg);
  cfg->struct_size = sizeof *cfg;
  cfg->dim = dim;
  cfg->heads = heads;
  cfg->dim_head = inner / heads;
  cfg->ff_mult = fc1.shape[0] / dim;
  cfg->layout = s->naming == M2PT_NAMING_BERT ? M2PT_POST_NORM : o->layout;
  cfg->eps = o->eps >= 0.0f ? o->eps : cfg->layout == M2PT_POST_NORM ? 1e-12f : 1e-6f;
  cfg->qkv_bias = has_tensor(src, bias_name);
  cfg->pathway = 0;
  cfg->gelu = o->gelu;
  /* Without heads the forward is refused; a forced fused kernel need not fit
   * the whole width as one head. */
  cfg->attention = o->heads ? o->attention : M2PT_ATTENTION_AUTO;
  return M2PT_OK;
}

static m2pt_status check_options(m2pt_context *ctx, const m2pt_model_options *o)
{
  static const char fn[] = "m2pt_model_load";
  M2PT_TRY(m2pt_check_enum(ctx, (int)o->naming, M2PT_NAMING_BERT, fn, "naming"));
  M2PT_TRY(m2pt_check_enum(ctx, (int)o->layout, M2PT_POST_NORM, fn, "layout"));
  M2PT_REQUIRE(ctx, !isnan(o->eps) && !isinf(o->eps), "%s: eps = %g", fn, (double)o->eps);
  M2PT_REQUIRE(ctx, !o->prefix || (o->prefix[0] && strlen(o->prefix) < 256),
               "%s: the prefix must be 1 to 255 characters", fn);
  return M2PT_OK;
}

void m2pt_model_destroy(m2pt_model *m)
{
  if (!m)
    return;
  for (size_t i = 0; m->blocks && i < m->depth; i++)
    m2pt_block_destroy(m->blocks[i]);
  free(m->blocks);
  m2pt_buffer_release(m->ctx, m->norm_w, m->cfg.dim * sizeof(float));
  m2pt_buffer_release(m->ctx, m->norm_b, m->cfg.dim * sizeof(float));
  m2pt_safetensors_close(m->st);
  free(m->path);
  free(m->prefix);
  free(m->final_prefix);
  free(m);
}

/* The largest parameter of a block, in floats. */
static size_t largest_param(const m2pt_model *m)
{
  size_t most = m->cfg.dim;
  for (int li = 0; li < M2PT_BLOCK_LINEARS; li++) {
    size_t out, in;
    m2pt_model_linear_shape(m, li, &out, &in);
    if (out * in > most)
      most = out * in;
  }
  return most;
}

/* Block 0 has no qkv bias, so no block may have one. */
static m2pt_status no_qkv_bias(const source *src, size_t block)
{
  for (size_t p = 0; p < src->scheme->parts[M2PT_BLOCK_QKV]; p++) {
    char name[512];
    m2pt_param_name(name, sizeof name, src->prefix, block,
                    src->scheme->linears[M2PT_BLOCK_QKV][p], "bias");
    if (has_tensor(src, name))
      return m2pt_fail(src->ctx, M2PT_ERR_FORMAT,
                       "%s: tensor \"%s\" is there but block 0's qkv has no bias", src->file,
                       name);
  }
  return M2PT_OK;
}

static m2pt_status load_block(m2pt_model *m, const source *src, size_t b, float *buf)
{
  M2PT_TRY(m2pt_block_create(m->ctx, &m->cfg, &m->blocks[b]));
  m2pt_block *blk = m->blocks[b];
  for (int n = 0; n < M2PT_BLOCK_NORMS; n++) {
    char name[512];
    m2pt_param_name(name, sizeof name, src->prefix, b, src->scheme->norms[n], NULL);
    M2PT_TRY(read_tensor(src, name, 1, &m->cfg.dim, buf));
    M2PT_TRY(m2pt_block_set(blk, m2pt_block_norm_names[n], buf, m->cfg.dim));
  }
  for (int li = 0; li < M2PT_BLOCK_LINEARS; li++) {
    m2pt_linear *l = m2pt_block_linear(blk, (size_t)li);
    size_t out, in;
    m2pt_model_linear_shape(m, li, &out, &in);
    M2PT_TRY(read_linear(src, m, b, li, M2PT_FIELD_WEIGHT, buf));
    M2PT_TRY(m2pt_linear_set_weight(l, buf, out * in));
    if (li != M2PT_BLOCK_QKV || m->cfg.qkv_bias) {
      M2PT_TRY(read_linear(src, m, b, li, M2PT_FIELD_BIAS, buf));
      M2PT_TRY(m2pt_linear_set_bias(l, buf, out));
    } else {
      M2PT_TRY(no_qkv_bias(src, b));
    }
    int pathway = 0;
    M2PT_TRY(stored_pathway(src, b, li, &pathway));
    if (!pathway)
      continue;
    float scale = 0.0f;
    M2PT_TRY(read_scale(src, b, li, &scale));
    M2PT_TRY(read_linear(src, m, b, li, M2PT_FIELD_AUX_WEIGHT, buf));
    M2PT_TRY(m2pt_linear_add_pathway(l));
    M2PT_TRY(m2pt_linear_set_aux_weight(l, buf, out * in));
    M2PT_TRY(m2pt_linear_set_scale(l, scale));
  }
  return M2PT_OK;
}

static m2pt_status load_final_norm(m2pt_model *m, const source *src, float *buf)
{
  char wname[300], bname[300];
  snprintf(wname, sizeof wname, "%snorm.weight", m->final_prefix);
  snprintf(bname, sizeof bname, "%snorm.bias", m->final_prefix);
  const int has_w = has_tensor(src, wname), has_b = has_tensor(src, bname);
  if (!has_w && !has_b)
    return M2PT_OK;
  if (!has_w || !has_b)
    return m2pt_fail(m->ctx, M2PT_ERR_FORMAT, "%s: missing tensor \"%s\" (its pair is there)",
                     src->file, has_w ? bname : wname);
  const size_t bytes = m->cfg.dim * sizeof(float);
  const char *names[2] = {wname, bname};
  cl_mem *bufs[2] = {&m->norm_w, &m->norm_b};
  for (int i = 0; i < 2; i++) {
    M2PT_TRY(read_tensor(src, names[i], 1, &m->cfg.dim, buf));
    M2PT_TRY(m2pt_buffer_create(m->ctx, bytes, 0, bufs[i]));
    M2PT_TRY_CL(m->ctx,
                clEnqueueWriteBuffer(m->ctx->queue, *bufs[i], CL_TRUE, 0, bytes, buf, 0, NULL,
                                     NULL),
                "writing the final norm");
  }
  return M2PT_OK;
}

/* The part of `prefix` up to and including its last '.', or "". */
static char *parent_of(const char *prefix)
{
  const char *dot = strrchr(prefix, '.');
  const size_t n = dot ? (size_t)(dot - prefix) + 1 : 0;
  char *p = malloc(n + 1);
  if (p) {
    memcpy(p, prefix, n);
    p[n] = '\0';
  }
  return p;
}

static m2pt_status load(m2pt_model *m, const m2pt_model_options *o)
{
  m2pt_context *ctx = m->ctx;
  const m2pt_status s = m2pt_safetensors_open(m->path, &m->st);
  if (s != M2PT_OK)
    return io_fail(ctx, s);
  M2PT_TRY(m2pt_find_block_stack(ctx, m->st, m->path, o->naming, o->prefix, &m->scheme,
                                 &m->prefix, &m->depth));
  if (m->scheme->final_norm) {
    m->final_prefix = parent_of(m->prefix);
    if (!m->final_prefix)
      return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  }
  const source src = {ctx, m->path, m->st, m->scheme, m->prefix};
  M2PT_TRY(check_block_names(&src, m->final_prefix, m->depth));
  M2PT_TRY(infer_config(&src, o, &m->cfg));
  m->blocks = calloc(m->depth, sizeof *m->blocks);
  float *buf = malloc(largest_param(m) * sizeof(float));
  if (!m->blocks || !buf) {
    free(buf);
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory loading %s", m->path);
  }
  m2pt_status st = M2PT_OK;
  for (size_t b = 0; st == M2PT_OK && b < m->depth; b++)
    st = load_block(m, &src, b, buf);
  if (st == M2PT_OK && m->final_prefix && o->final_norm)
    st = load_final_norm(m, &src, buf);
  free(buf);
  return st;
}

m2pt_status m2pt_model_load(m2pt_context *ctx, const char *path,
                            const m2pt_model_options *options, m2pt_model **model)
{
  M2PT_REQUIRE(NULL, ctx != NULL, "m2pt_model_load: ctx is NULL");
  M2PT_REQUIRE(ctx, path && model, "m2pt_model_load: NULL argument");
  *model = NULL;
  m2pt_model_options opts = m2pt_model_options_default();
  M2PT_TRY(m2pt_options_read(ctx, &opts, sizeof opts, options, "m2pt_model_options",
                             "m2pt_model_load"));
  const m2pt_model_options *o = &opts;
  M2PT_TRY(check_options(ctx, o));
  m2pt_model *m = calloc(1, sizeof *m);
  if (!m || !(m->path = strdup(path))) {
    free(m);
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  }
  m->ctx = ctx;
  m->heads = o->heads;
  const m2pt_status s = load(m, o);
  if (s != M2PT_OK) {
    m2pt_model_destroy(m);
    return s;
  }
  *model = m;
  return M2PT_OK;
}

m2pt_status m2pt_model_get_info(const m2pt_model *m, m2pt_model_info *info)
{
  M2PT_REQUIRE(NULL, m != NULL, "m2pt_model_get_info: model is NULL");
  M2PT_REQUIRE(m->ctx, info != NULL, "m2pt_model_get_info: info is NULL");
  memset(info, 0, sizeof *info);
  info->naming = m->scheme->naming;
  info->prefix = m->prefix;
  info->depth = m->depth;
  info->final_norm = m->norm_w != NULL;
  info->block = m->cfg;
  if (!m->heads)
    info->block.heads = info->block.dim_head = 0; /* not known */
  for (size_t b = 0; b < m->depth; b++)
    for (size_t li = 0; li < M2PT_BLOCK_LINEARS; li++)
      info->pathways += (size_t)m2pt_linear_has_pathway(m2pt_block_linear(m->blocks[b], li));
  return M2PT_OK;
}

m2pt_block *m2pt_model_block(m2pt_model *m, size_t index)
{
  return m && index < m->depth ? m->blocks[index] : NULL;
}

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

/* ---- reparameterize ---- */

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
static m2pt_status check_aux_shapes(const m2pt_model *m, const source *aux, unsigned mask)
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
        M2PT_TRY(find_tensor(aux, name, &info, NULL));
        if (info.ndim == 2 && info.shape[0] * parts == out && info.shape[1] == in)
          continue;
        char layer[512], got[128];
        layer_name(m, b, li, layer, sizeof layer);
        shape_text(got, sizeof got, info.ndim, info.shape);
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

static m2pt_status attach(m2pt_model *m, const source *aux, unsigned mask, float scale,
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
      s = read_linear(aux, m, b, li, M2PT_FIELD_WEIGHT, buf);
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
    return io_fail(ctx, s);
  source aux = {ctx, aux_path, st, NULL, NULL};
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
  if (s == M2PT_OK && !(buf = malloc(largest_param(m) * sizeof(float))))
    s = m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  if (s == M2PT_OK)
    s = attach(m, &aux, mask, scale, buf);
  free(buf);
  free(aux_prefix);
  m2pt_safetensors_close(st);
  return s;
}

/* ---- merge and forward ---- */

m2pt_status m2pt_model_merge(m2pt_model *m)
{
  M2PT_REQUIRE(NULL, m != NULL, "m2pt_model_merge: model is NULL");
  for (size_t b = 0; b < m->depth; b++)
    M2PT_TRY(m2pt_block_merge_prepare(m->blocks[b]));
  for (size_t b = 0; b < m->depth; b++)
    M2PT_TRY(m2pt_block_merge(m->blocks[b]));
  return M2PT_OK;
}

/* t seen as [batch][tokens][cols] (a 2-D tensor as one batch row). */
static m2pt_tensor view3(const m2pt_tensor *t)
{
  m2pt_tensor v = *t;
  if (t->ndim == 2) {
    v.ndim = 3;
    v.shape[0] = 1;
    v.shape[1] = t->shape[0];
    v.shape[2] = t->shape[1];
  }
  return v;
}

m2pt_status m2pt_model_forward(m2pt_model *m, const m2pt_tensor *x, const m2pt_tensor *mask,
                               m2pt_tensor *y)
{
  static const char fn[] = "m2pt_model_forward";
  M2PT_REQUIRE(NULL, m != NULL, "%s: model is NULL", fn);
  m2pt_context *ctx = m->ctx;
  if (!m->heads)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE,
                     "%s: the number of heads was not given when %s was loaded", fn, m->path);
  M2PT_TRY(m2pt_check_tensor(ctx, x, "m2pt_model_forward: x"));
  M2PT_TRY(m2pt_check_tensor(ctx, y, "m2pt_model_forward: y"));
  M2PT_REQUIRE(ctx, x != y, "%s: y must not be x", fn);
  char sx[96], sy[96];
  if ((x->ndim != 2 && x->ndim != 3) || x->shape[x->ndim - 1] != m->cfg.dim)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: x %s must be [B][N][%zu] or [N][%zu]", fn,
                     m2pt_shape_string(x, sx, sizeof sx), m->cfg.dim, m->cfg.dim);
  int same = x->ndim == y->ndim;
  for (size_t i = 0; same && i < x->ndim; i++)
    same = x->shape[i] == y->shape[i];
  if (!same)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: y %s must have x's shape %s", fn,
                     m2pt_shape_string(y, sy, sizeof sy), m2pt_shape_string(x, sx, sizeof sx));
  const m2pt_tensor xv = view3(x);
  m2pt_tensor yv = view3(y), mv;
  M2PT_TRY(m2pt_check_mask(ctx, mask, x, fn));
  if (mask) {
    mv = *mask;
    mv.ndim = 2;
    mv.shape[0] = xv.shape[0];
    mv.shape[1] = xv.shape[1];
  }
  const size_t rows = xv.shape[0] * xv.shape[1];
  m2pt_tensor tv = yv;
  if (m->depth > 1)
    M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_STACK, x->numel * sizeof(float), &tv.buffer));
  /* Outputs alternate between y and the scratch so the last block writes y. */
  const m2pt_tensor *in = &xv;
  for (size_t b = 0; b < m->depth; b++) {
    m2pt_tensor *out = (m->depth - 1 - b) % 2 == 0 ? &yv : &tv;
    M2PT_TRY(m2pt_block_forward(m->blocks[b], in, mask ? &mv : NULL, out));
    in = out;
  }
  if (m->norm_w)
    M2PT_TRY(m2pt_op_layer_norm(ctx, yv.buffer, m->norm_w, m->norm_b, m->cfg.eps, rows,
                                m->cfg.dim, yv.buffer));
  return M2PT_OK;
}
