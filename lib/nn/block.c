/* The M2PT transformer block (DESIGN.md §1; timm's Block with the paper's
 * re-parameterized linears, or BERT's post-norm layout). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/buffer.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "core/options.h"
#include "block_internal.h"
#include "ffn_internal.h"
#include "linear_internal.h"
#include "m2pt/block.h"
#include "ops/block_ops.h"
#include "ops/tensor_checks.h"

struct m2pt_block {
  m2pt_context *ctx;
  m2pt_block_config cfg;
  size_t hd;       /* heads·dim_head */
  cl_mem norm1_w, norm1_b, norm2_w, norm2_b;
  m2pt_linear *qkv, *proj;
  m2pt_ffn *mlp;
  int merged;
};

static m2pt_status check_config(m2pt_context *ctx, const m2pt_block_config *c, size_t *hd)
{
  static const char fn[] = "m2pt_block_create";
  M2PT_REQUIRE(ctx, c->dim && c->heads && c->dim_head && c->ff_mult,
               "%s: dim %zu, heads %zu, dim_head %zu, ff_mult %zu must all be > 0", fn, c->dim,
               c->heads, c->dim_head, c->ff_mult);
  size_t hidden;
  M2PT_REQUIRE(ctx,
               m2pt_mul_size(c->heads, c->dim_head, hd) && *hd <= SIZE_MAX / 3 &&
                   m2pt_mul_size(c->ff_mult, c->dim, &hidden),
               "%s: sizes overflow", fn);
  M2PT_REQUIRE(ctx, isfinite(c->eps) && c->eps >= 0.0f, "%s: eps = %g", fn, (double)c->eps);
  M2PT_TRY(m2pt_check_enum(ctx, (int)c->layout, M2PT_POST_NORM, fn, "layout"));
  M2PT_TRY(m2pt_check_enum(ctx, (int)c->gelu, M2PT_GELU_TANH, fn, "GELU kind"));
  M2PT_TRY(m2pt_check_enum(ctx, (int)c->attention, M2PT_ATTENTION_FUSED, fn,
                           "attention implementation"));
  return M2PT_OK;
}

void m2pt_block_destroy(m2pt_block *b)
{
  if (!b)
    return;
  const size_t bytes = b->cfg.dim * sizeof(float);
  m2pt_buffer_release(b->ctx, b->norm1_w, bytes);
  m2pt_buffer_release(b->ctx, b->norm1_b, bytes);
  m2pt_buffer_release(b->ctx, b->norm2_w, bytes);
  m2pt_buffer_release(b->ctx, b->norm2_b, bytes);
  m2pt_linear_destroy(b->qkv);
  m2pt_linear_destroy(b->proj);
  m2pt_ffn_destroy(b->mlp);
  free(b);
}

/* A LayerNorm parameter: weight ones, bias zeros (PyTorch's init). */
static m2pt_status norm_param(m2pt_context *ctx, size_t dim, float value, cl_mem *out)
{
  M2PT_TRY(m2pt_buffer_create(ctx, dim * sizeof(float), value == 0.0f, out));
  return value == 0.0f ? M2PT_OK : m2pt_fill(ctx, *out, value, dim);
}

/* m2pt_block_config as first released (core/options.h). */
#define CONFIG_SIZE_0_2 sizeof(m2pt_block_config)

m2pt_status m2pt_block_create(m2pt_context *ctx, const m2pt_block_config *config,
                              m2pt_block **out)
{
  M2PT_REQUIRE(NULL, ctx != NULL, "m2pt_block_create: ctx is NULL");
  M2PT_REQUIRE(ctx, config && out, "m2pt_block_create: NULL argument");
  *out = NULL;
  /* Fields an older caller's config lacks take the ViT defaults. */
  m2pt_block_config cfg = m2pt_block_config_vit(config->dim, config->heads);
  M2PT_TRY(m2pt_options_read(ctx, &cfg, sizeof cfg, CONFIG_SIZE_0_2, config,
                             "m2pt_block_config", "m2pt_block_create"));
  config = &cfg;
  size_t hd = 0;
  M2PT_TRY(check_config(ctx, config, &hd));
  /* A forced fused attention that cannot run here fails now, not at the
   * first forward. */
  m2pt_attention_impl impl;
  M2PT_TRY(m2pt_attention_choose(ctx, config->dim_head, 0, config->attention, &impl));
  m2pt_block *b = calloc(1, sizeof *b);
  if (!b)
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for a block");
  b->ctx = ctx;
  b->cfg = *config;
  b->hd = hd;
  const size_t dim = config->dim;
  const unsigned aux = config->pathway ? M2PT_LINEAR_PATHWAY : 0;
  m2pt_status s = norm_param(ctx, dim, 1.0f, &b->norm1_w);
  if (s == M2PT_OK)
    s = norm_param(ctx, dim, 0.0f, &b->norm1_b);
  if (s == M2PT_OK)
    s = norm_param(ctx, dim, 1.0f, &b->norm2_w);
  if (s == M2PT_OK)
    s = norm_param(ctx, dim, 0.0f, &b->norm2_b);
  if (s == M2PT_OK)
    s = m2pt_linear_create(ctx, dim, 3 * hd, aux | (config->qkv_bias ? M2PT_LINEAR_BIAS : 0),
                           &b->qkv);
  if (s == M2PT_OK)
    s = m2pt_linear_create(ctx, hd, dim, aux | M2PT_LINEAR_BIAS, &b->proj);
  if (s == M2PT_OK)
    s = m2pt_ffn_create(ctx, dim, config->ff_mult * dim, aux, config->gelu, &b->mlp);
  if (s != M2PT_OK) {
    m2pt_block_destroy(b);
    return s;
  }
  *out = b;
  return M2PT_OK;
}

/* ---- parameters by checkpoint name ---- */

const char *const m2pt_block_linear_names[M2PT_BLOCK_LINEARS] = {"attn.qkv", "attn.proj",
                                                                 "mlp.fc1", "mlp.fc2"};

m2pt_linear *m2pt_block_linear(const m2pt_block *b, size_t index)
{
  switch (index) {
  case M2PT_BLOCK_QKV: return b->qkv;
  case M2PT_BLOCK_PROJ: return b->proj;
  case M2PT_BLOCK_FC1: return m2pt_ffn_fc1(b->mlp);
  case M2PT_BLOCK_FC2: return m2pt_ffn_fc2(b->mlp);
  default: return NULL;
  }
}

typedef enum field { F_WEIGHT, F_BIAS, F_AUX_WEIGHT, F_SCALE } field;

/* What a name addresses: a LayerNorm buffer, or a field of a linear. */
typedef struct param_ref {
  cl_mem norm;        /* LayerNorm weight or bias, else NULL */
  m2pt_linear *linear;
  field field;
} param_ref;

static m2pt_status resolve(const m2pt_block *b, const char *name, param_ref *ref)
{
  static const struct {
    const char *name;
    field field;
  } fields[] = {{"weight", F_WEIGHT},
                {"bias", F_BIAS},
                {"aux_weight", F_AUX_WEIGHT},
                {"cross_modal_scale", F_SCALE}};
  memset(ref, 0, sizeof *ref);
  M2PT_REQUIRE(b->ctx, name != NULL, "block parameter name is NULL");
  if (!strcmp(name, "norm1.weight") || !strcmp(name, "norm1.bias") ||
      !strcmp(name, "norm2.weight") || !strcmp(name, "norm2.bias")) {
    const int second = name[4] == '2', bias = name[6] == 'b';
    ref->norm = second ? (bias ? b->norm2_b : b->norm2_w) : (bias ? b->norm1_b : b->norm1_w);
    return M2PT_OK;
  }
  for (size_t i = 0; i < M2PT_BLOCK_LINEARS; i++) {
    const size_t n = strlen(m2pt_block_linear_names[i]);
    if (strncmp(name, m2pt_block_linear_names[i], n) != 0 || name[n] != '.')
      continue;
    for (size_t f = 0; f < 4; f++)
      if (!strcmp(name + n + 1, fields[f].name)) {
        ref->linear = m2pt_block_linear(b, i);
        ref->field = fields[f].field;
        return M2PT_OK;
      }
  }
  return m2pt_fail(b->ctx, M2PT_ERR_NOT_FOUND,
                   "unknown block parameter \"%s\" (expected norm1.weight, attn.qkv.weight, "
                   "attn.qkv.aux_weight, attn.qkv.cross_modal_scale, mlp.fc1.bias, …)",
                   name);
}

/* Writes src into a LayerNorm buffer, or reads it into dst (the other NULL). */
static m2pt_status norm_copy(const m2pt_block *b, cl_mem buf, const char *name,
                             const float *src, float *dst, size_t count)
{
  M2PT_REQUIRE(b->ctx, src || dst, "block parameter %s: data is NULL", name);
  if (count != b->cfg.dim)
    return m2pt_fail(b->ctx, M2PT_ERR_SHAPE, "block parameter %s has %zu elements, %zu given",
                     name, b->cfg.dim, count);
  const cl_int err = src ? clEnqueueWriteBuffer(b->ctx->queue, buf, CL_TRUE, 0,
                                                count * sizeof(float), src, 0, NULL, NULL)
                         : clEnqueueReadBuffer(b->ctx->queue, buf, CL_TRUE, 0,
                                               count * sizeof(float), dst, 0, NULL, NULL);
  if (err != CL_SUCCESS)
    return m2pt_fail_cl(b->ctx, err, name);
  return M2PT_OK;
}

/* λ travels as a one-element tensor, as "cross_modal_scale" does. */
static m2pt_status check_scale(const m2pt_block *b, const char *name, const void *data,
                               size_t count, const char *fn)
{
  M2PT_REQUIRE(b->ctx, data != NULL, "%s(%s): data is NULL", fn, name);
  if (count != 1)
    return m2pt_fail(b->ctx, M2PT_ERR_SHAPE, "%s has 1 element, %zu given", name, count);
  return M2PT_OK;
}

/* Not reached: resolve() only hands out the fields above. */
static m2pt_status unknown_field(const m2pt_block *b, const char *name)
{
  return m2pt_fail(b->ctx, M2PT_ERR_NOT_FOUND, "block parameter \"%s\": unknown field", name);
}

m2pt_status m2pt_block_set(m2pt_block *b, const char *name, const float *data, size_t count)
{
  M2PT_REQUIRE(NULL, b != NULL, "m2pt_block_set: block is NULL");
  param_ref r;
  M2PT_TRY(resolve(b, name, &r));
  if (r.norm)
    return norm_copy(b, r.norm, name, data, NULL, count);
  switch (r.field) {
  case F_WEIGHT: return m2pt_linear_set_weight(r.linear, data, count);
  case F_BIAS: return m2pt_linear_set_bias(r.linear, data, count);
  case F_AUX_WEIGHT: return m2pt_linear_set_aux_weight(r.linear, data, count);
  case F_SCALE:
    M2PT_TRY(check_scale(b, name, data, count, "m2pt_block_set"));
    return m2pt_linear_set_scale(r.linear, data[0]);
  }
  return unknown_field(b, name);
}

m2pt_status m2pt_block_get(const m2pt_block *b, const char *name, float *data, size_t count)
{
  M2PT_REQUIRE(NULL, b != NULL, "m2pt_block_get: block is NULL");
  param_ref r;
  M2PT_TRY(resolve(b, name, &r));
  if (r.norm)
    return norm_copy(b, r.norm, name, NULL, data, count);
  switch (r.field) {
  case F_WEIGHT: return m2pt_linear_get_weight(r.linear, data, count);
  case F_BIAS: return m2pt_linear_get_bias(r.linear, data, count);
  case F_AUX_WEIGHT: return m2pt_linear_get_aux_weight(r.linear, data, count);
  case F_SCALE:
    M2PT_TRY(check_scale(b, name, data, count, "m2pt_block_get"));
    return m2pt_linear_get_scale(r.linear, data);
  }
  return unknown_field(b, name);
}

/* ---- forward ---- */

static m2pt_status scratch(m2pt_context *ctx, m2pt_workspace_slot slot, size_t rows, size_t cols,
                           cl_mem *out)
{
  size_t bytes;
  if (!m2pt_mul_size(rows, cols, &bytes) || !m2pt_mul_size(bytes, sizeof(float), &bytes))
    return m2pt_fail(ctx, M2PT_ERR_INVALID_ARGUMENT, "block activations of %zu × %zu overflow",
                     rows, cols);
  return m2pt_workspace_get(ctx, slot, bytes, out);
}

/* h = x + proj(MHSA(qkv(in))), with `in` = LN1(x) (pre-norm) or x (post-norm).
 * The residual and proj's bias are laid into h first and the GEMM
 * accumulates onto them. */
static m2pt_status attention_residual(m2pt_block *b, cl_mem in, cl_mem x, cl_mem mask,
                                      size_t batch, size_t tokens, cl_mem h)
{
  m2pt_context *ctx = b->ctx;
  const size_t rows = batch * tokens;
  cl_mem qkv, attn, proj_bias;
  M2PT_TRY(scratch(ctx, M2PT_WS_QKV, rows, 3 * b->hd, &qkv));
  M2PT_TRY(scratch(ctx, M2PT_WS_ATTN, rows, b->hd, &attn));
  M2PT_TRY(m2pt_linear_forward_buffers(b->qkv, in, rows, qkv));
  const m2pt_attention_shape shape = {batch, tokens, b->cfg.heads, b->cfg.dim_head};
  M2PT_TRY(m2pt_op_attention(ctx, qkv, mask, &shape, b->cfg.attention, attn));
  M2PT_TRY(m2pt_linear_effective_bias(b->proj, &proj_bias));
  M2PT_TRY(m2pt_op_add(ctx, x, proj_bias, rows * b->cfg.dim, b->cfg.dim, h));
  return m2pt_linear_apply(b->proj, attn, rows, 1.0f, h);
}

m2pt_status m2pt_block_forward(m2pt_block *b, const m2pt_tensor *x, const m2pt_tensor *mask,
                               m2pt_tensor *y)
{
  static const char fn[] = "m2pt_block_forward";
  M2PT_REQUIRE(NULL, b != NULL, "%s: block is NULL", fn);
  m2pt_context *ctx = b->ctx;
  const size_t dim = b->cfg.dim;
  M2PT_TRY(m2pt_linear_check_io(ctx, x, y, dim, dim, fn));
  char sx[96];
  if (x->ndim != 3)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: x %s must be [B][N][%zu]", fn,
                     m2pt_shape_string(x, sx, sizeof sx), dim);
  const size_t batch = x->shape[0], tokens = x->shape[1], rows = batch * tokens;
  M2PT_TRY(m2pt_check_mask(ctx, mask, x, fn));
  M2PT_REQUIRE(ctx, tokens <= UINT32_MAX, "%s: too many tokens", fn);
  const cl_mem mask_buf = mask ? mask->buffer : NULL;
  cl_mem h;
  M2PT_TRY(scratch(ctx, M2PT_WS_RESIDUAL, rows, dim, &h));
  if (b->cfg.layout == M2PT_PRE_NORM) {
    cl_mem norm;
    M2PT_TRY(scratch(ctx, M2PT_WS_NORM, rows, dim, &norm));
    M2PT_TRY(m2pt_op_layer_norm(ctx, x->buffer, b->norm1_w, b->norm1_b, b->cfg.eps, rows, dim,
                                norm));
    M2PT_TRY(attention_residual(b, norm, x->buffer, mask_buf, batch, tokens, h));
    M2PT_TRY(m2pt_op_layer_norm(ctx, h, b->norm2_w, b->norm2_b, b->cfg.eps, rows, dim, norm));
    return m2pt_ffn_apply(b->mlp, norm, rows, h, y->buffer);
  }
  M2PT_TRY(attention_residual(b, x->buffer, x->buffer, mask_buf, batch, tokens, h));
  M2PT_TRY(m2pt_op_layer_norm(ctx, h, b->norm1_w, b->norm1_b, b->cfg.eps, rows, dim, h));
  M2PT_TRY(m2pt_ffn_apply(b->mlp, h, rows, h, y->buffer));
  return m2pt_op_layer_norm(ctx, y->buffer, b->norm2_w, b->norm2_b, b->cfg.eps, rows, dim,
                            y->buffer);
}

m2pt_status m2pt_block_merge_prepare(m2pt_block *b)
{
  for (size_t i = 0; i < M2PT_BLOCK_LINEARS; i++) {
    cl_mem unused;
    M2PT_TRY(m2pt_linear_effective_bias(m2pt_block_linear(b, i), &unused));
  }
  return M2PT_OK;
}

m2pt_status m2pt_block_merge(m2pt_block *b)
{
  M2PT_REQUIRE(NULL, b != NULL, "m2pt_block_merge: block is NULL");
  M2PT_TRY(m2pt_block_merge_prepare(b));
  int pathway = 0;
  for (size_t i = 0; i < M2PT_BLOCK_LINEARS; i++)
    pathway |= m2pt_linear_has_pathway(m2pt_block_linear(b, i));
  for (size_t i = 0; i < M2PT_BLOCK_LINEARS; i++)
    M2PT_TRY(m2pt_linear_merge(m2pt_block_linear(b, i)));
  b->merged = b->merged || pathway;
  return M2PT_OK;
}

int m2pt_block_is_merged(const m2pt_block *b)
{
  return b ? b->merged : 0;
}

m2pt_status m2pt_block_get_config(const m2pt_block *b, m2pt_block_config *config)
{
  M2PT_REQUIRE(NULL, b != NULL, "m2pt_block_get_config: block is NULL");
  M2PT_REQUIRE(b->ctx, config != NULL, "m2pt_block_get_config: config is NULL");
  return m2pt_options_write(b->ctx, config, &b->cfg, sizeof b->cfg, CONFIG_SIZE_0_2,
                            "m2pt_block_config", "m2pt_block_get_config");
}
