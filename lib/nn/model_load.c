/* Loading a model: a block stack read from a safetensors checkpoint (timm or
 * BERT naming), every tensor checked, and the checkpoint helpers the
 * pathway code shares (model_internal.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buffer.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "core/options.h"
#include "linear_internal.h"
#include "model_internal.h"
#include "ops/tensor_checks.h"

/* Passes a checkpoint reader's failure (reported on the thread) to ctx. */
m2pt_status m2pt_model_io_fail(const m2pt_context *ctx, m2pt_status s)
{
  return m2pt_fail(ctx, s, "%s", m2pt_last_error(NULL));
}

void m2pt_model_shape_text(char *buf, size_t size, size_t ndim, const size_t *shape)
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

/* Finds `name` (its index into *index when that is not NULL); a missing
 * tensor is M2PT_ERR_FORMAT naming it. */
m2pt_status m2pt_model_find_tensor(const m2pt_model_source *src, const char *name, m2pt_safetensors_info *info,
                               size_t *found)
{
  size_t index;
  if (m2pt_safetensors_find(src->st, name, &index) != M2PT_OK)
    return m2pt_fail(src->ctx, M2PT_ERR_FORMAT, "%s: missing tensor \"%s\"", src->file, name);
  if (found)
    *found = index;
  return m2pt_safetensors_info_at(src->st, index, info) == M2PT_OK
             ? M2PT_OK
             : m2pt_model_io_fail(src->ctx, M2PT_ERR_INVALID_ARGUMENT);
}

static int has_tensor(const m2pt_model_source *src, const char *name)
{
  size_t index;
  return m2pt_safetensors_find(src->st, name, &index) == M2PT_OK;
}

/* Reads tensor `name`, which must have the given shape, as f32 into dst. */
static m2pt_status read_tensor(const m2pt_model_source *src, const char *name, size_t ndim,
                               const size_t *shape, float *dst)
{
  m2pt_safetensors_info info;
  size_t index;
  M2PT_TRY(m2pt_model_find_tensor(src, name, &info, &index));
  int same = info.ndim == ndim;
  for (size_t i = 0; same && i < ndim; i++)
    same = info.shape[i] == shape[i];
  if (!same) {
    char got[128], want[128];
    m2pt_model_shape_text(got, sizeof got, info.ndim, info.shape);
    m2pt_model_shape_text(want, sizeof want, ndim, shape);
    return m2pt_fail(src->ctx, M2PT_ERR_FORMAT, "%s: tensor \"%s\" has shape %s, expected %s",
                     src->file, name, got, want);
  }
  const m2pt_status s = m2pt_safetensors_read_f32(src->st, index, dst, info.numel);
  return s == M2PT_OK ? M2PT_OK : m2pt_model_io_fail(src->ctx, s);
}

/* Reads `field` (weight, bias or aux_weight) of block linear `li` of block
 * `block`: the parts' rows concatenated. */
m2pt_status m2pt_model_read_linear(const m2pt_model_source *src, const m2pt_model *m, size_t block, int li,
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
static m2pt_status read_scale(const m2pt_model_source *src, size_t block, int li, float *scale)
{
  float first = 0.0f;
  for (size_t p = 0; p < src->scheme->parts[li]; p++) {
    char name[512];
    m2pt_param_name(name, sizeof name, src->prefix, block, src->scheme->linears[li][p],
                    m2pt_field_names[M2PT_FIELD_SCALE]);
    m2pt_safetensors_info info;
    size_t index;
    M2PT_TRY(m2pt_model_find_tensor(src, name, &info, &index));
    if (info.numel != 1 || info.ndim > 1)
      return m2pt_fail(src->ctx, M2PT_ERR_FORMAT, "%s: \"%s\" must hold one value (shape [1])",
                       src->file, name);
    float v;
    const m2pt_status s = m2pt_safetensors_read_f32(src->st, index, &v, 1);
    if (s != M2PT_OK)
      return m2pt_model_io_fail(src->ctx, s);
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
static m2pt_status stored_pathway(const m2pt_model_source *src, size_t block, int li, int *has)
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
static m2pt_status check_block_names(const m2pt_model_source *src, const char *final_prefix, size_t depth)
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
static m2pt_status infer_config(const m2pt_model_source *src, const m2pt_model_options *o,
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
  M2PT_TRY(m2pt_model_find_tensor(src, qkv_name, &qkv, NULL));
  M2PT_TRY(m2pt_model_find_tensor(src, fc1_name, &fc1, NULL));
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
  cfg->layout = s->post_norm < 0 ? o->layout : s->post_norm ? M2PT_POST_NORM : M2PT_PRE_NORM;
  cfg->eps = o->eps >= 0.0f                       ? o->eps
             : s->eps >= 0.0f                     ? s->eps
             : cfg->layout == M2PT_POST_NORM ? 1e-12f
                                                  : 1e-6f;
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
  M2PT_TRY(m2pt_check_enum(ctx, (int)o->naming, M2PT_NAMING_HF_VIT, fn, "naming"));
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
  m2pt_model_train_free(m); /* its saved sets name the blocks */
  for (size_t i = 0; m->blocks && i < m->depth; i++)
    m2pt_block_destroy(m->blocks[i]);
  free(m->blocks);
  m2pt_buffer_release(m->ctx, m->norm_w, m->cfg.dim * sizeof(float));
  m2pt_buffer_release(m->ctx, m->norm_b, m->cfg.dim * sizeof(float));
  m2pt_model_free_ends(m);
  m2pt_safetensors_close(m->st);
  free(m->path);
  free(m->prefix);
  free(m->final_prefix);
  free(m);
}

/* The largest parameter of a block, in floats. */
size_t m2pt_model_largest_param(const m2pt_model *m)
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
static m2pt_status no_qkv_bias(const m2pt_model_source *src, size_t block)
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

static m2pt_status load_block(m2pt_model *m, const m2pt_model_source *src, size_t b, float *buf)
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
    M2PT_TRY(m2pt_model_read_linear(src, m, b, li, M2PT_FIELD_WEIGHT, buf));
    M2PT_TRY(m2pt_linear_set_weight(l, buf, out * in));
    if (li != M2PT_BLOCK_QKV || m->cfg.qkv_bias) {
      M2PT_TRY(m2pt_model_read_linear(src, m, b, li, M2PT_FIELD_BIAS, buf));
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
    M2PT_TRY(m2pt_model_read_linear(src, m, b, li, M2PT_FIELD_AUX_WEIGHT, buf));
    M2PT_TRY(m2pt_linear_add_pathway(l));
    M2PT_TRY(m2pt_linear_set_aux_weight(l, buf, out * in));
    M2PT_TRY(m2pt_linear_set_scale(l, scale));
  }
  return M2PT_OK;
}

static m2pt_status load_final_norm(m2pt_model *m, const m2pt_model_source *src, float *buf)
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
    return m2pt_model_io_fail(ctx, s);
  M2PT_TRY(m2pt_find_block_stack(ctx, m->st, m->path, o->naming, o->prefix, &m->scheme,
                                 &m->prefix, &m->depth));
  M2PT_TRY(m2pt_model_find_root(m));
  if (m->scheme->final_norm == 2) {
    /* HF ViT's "<root>layernorm.*" is "<root>layer" + "norm.*". */
    m->final_prefix = malloc(strlen(m->root) + 6);
    if (!m->final_prefix)
      return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
    sprintf(m->final_prefix, "%slayer", m->root);
  } else if (m->scheme->final_norm) {
    m->final_prefix = parent_of(m->prefix);
    if (!m->final_prefix)
      return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  }
  const m2pt_model_source src = {ctx, m->path, m->st, m->scheme, m->prefix};
  M2PT_TRY(check_block_names(&src, m->final_prefix, m->depth));
  M2PT_TRY(infer_config(&src, o, &m->cfg));
  m->blocks = calloc(m->depth, sizeof *m->blocks);
  float *buf = malloc(m2pt_model_largest_param(m) * sizeof(float));
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
  if (st == M2PT_OK)
    st = m2pt_model_load_ends(m, &src);
  return st;
}

/* m2pt_model_options as first released (core/options.h). */
#define OPTIONS_SIZE_0_2 sizeof(m2pt_model_options)

m2pt_status m2pt_model_load(m2pt_context *ctx, const char *path,
                            const m2pt_model_options *options, m2pt_model **model)
{
  M2PT_REQUIRE(NULL, ctx != NULL, "m2pt_model_load: ctx is NULL");
  M2PT_REQUIRE(ctx, path && model, "m2pt_model_load: NULL argument");
  *model = NULL;
  m2pt_model_options opts = m2pt_model_options_default();
  M2PT_TRY(m2pt_options_read(ctx, &opts, sizeof opts, OPTIONS_SIZE_0_2, options,
                             "m2pt_model_options", "m2pt_model_load"));
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
