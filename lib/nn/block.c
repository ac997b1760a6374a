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
  /* The context's train_serial of this block's last training forward (0:
   * none, or invalidated by a parameter change), and its shape. */
  uint64_t saved_serial;
  size_t saved_batch, saved_tokens;
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
  b->saved_serial = 0; /* what a training forward saved no longer matches */
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

/* Whether a training pass drops residual branches (block_internal.h). */
static int dropping(const m2pt_block_drop *drop)
{
  return drop && drop->p > 0.0f;
}

/* Drop-path of branch `which` from src into dst ([batch·tokens][dim], may
 * be src), the mask per sample; the backward is the same draw applied to
 * the branch's gradient. */
static m2pt_status drop_branch(m2pt_block *b, const m2pt_block_drop *drop, int which, cl_mem src,
                               cl_mem dst, size_t batch, size_t tokens, int backward)
{
  const size_t dim = b->cfg.dim, n = batch * tokens * dim;
  const m2pt_tensor in = {b->ctx, src, 3, {batch, tokens, dim}, n};
  m2pt_tensor out = {b->ctx, dst, 3, {batch, tokens, dim}, n};
  if (backward)
    return m2pt_drop_path_backward(b->ctx, &in, drop->p, drop->key[which], &out);
  return m2pt_drop_path(b->ctx, &in, drop->p, drop->key[which], &out);
}

/* out = residual + dp(out): the branch in out, dropped, then the residual
 * added (a training forward with drop-path). */
static m2pt_status drop_add(m2pt_block *b, const m2pt_block_drop *drop, int which, cl_mem out,
                            cl_mem residual, size_t batch, size_t tokens)
{
  M2PT_TRY(drop_branch(b, drop, which, out, out, batch, tokens, 0));
  return m2pt_op_add(b->ctx, out, residual, batch * tokens * b->cfg.dim, 0, out);
}

/* h = x + proj(MHSA(qkv(in))), with `in` = LN1(x) (pre-norm) or x (post-norm).
 * proj adds the residual and its bias as m2pt_linear_apply_fused does (the
 * host GEMM's epilogue, or laid into h for the device GEMM to accumulate
 * onto); with drop-path (training) the branch is formed in h alone,
 * dropped, and x added after. */
static m2pt_status attention_residual(m2pt_block *b, cl_mem in, cl_mem x, cl_mem mask,
                                      size_t batch, size_t tokens,
                                      const m2pt_block_saved *saved, const m2pt_block_drop *drop,
                                      cl_mem h)
{
  m2pt_context *ctx = b->ctx;
  const size_t rows = batch * tokens;
  cl_mem qkv, attn;
  /* A training forward keeps qkv, the attention output and its
   * log-sum-exp for the backward (either path reads both). */
  if (saved) {
    qkv = saved->qkv;
    attn = saved->attn;
  } else {
    M2PT_TRY(scratch(ctx, M2PT_WS_QKV, rows, 3 * b->hd, &qkv));
    M2PT_TRY(scratch(ctx, M2PT_WS_ATTN, rows, b->hd, &attn));
  }
  M2PT_TRY(m2pt_linear_forward_buffers(b->qkv, in, rows, qkv));
  const m2pt_attention_shape shape = {batch, tokens, b->cfg.heads, b->cfg.dim_head};
  M2PT_TRY(saved ? m2pt_op_attention_train(ctx, qkv, mask, &shape, b->cfg.attention, attn,
                                           saved->lse)
                : m2pt_op_attention(ctx, qkv, mask, &shape, b->cfg.attention, attn));
  if (dropping(drop)) {
    M2PT_TRY(m2pt_linear_forward_buffers(b->proj, attn, rows, h));
    return drop_add(b, drop, 0, h, x, batch, tokens);
  }
  const m2pt_linear_fusion f = {.residual = x};
  return m2pt_linear_apply_fused(b->proj, attn, rows, &f, h);
}

/* The checks of a forward (and of the backward's x, dy): x [B][N][dim],
 * y of x's shape, mask NULL or [B][N]. */
static m2pt_status check_forward(m2pt_block *b, const m2pt_tensor *x, const m2pt_tensor *mask,
                                 const m2pt_tensor *y, const char *fn)
{
  M2PT_REQUIRE(NULL, b != NULL, "%s: block is NULL", fn);
  m2pt_context *ctx = b->ctx;
  const size_t dim = b->cfg.dim;
  M2PT_TRY(m2pt_linear_check_io(ctx, x, y, dim, dim, fn));
  char sx[96];
  if (x->ndim != 3)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: x %s must be [B][N][%zu]", fn,
                     m2pt_shape_string(x, sx, sizeof sx), dim);
  M2PT_TRY(m2pt_check_mask(ctx, mask, x, fn));
  M2PT_REQUIRE(ctx, x->shape[1] <= UINT32_MAX, "%s: too many tokens", fn);
  return M2PT_OK;
}

/* LayerNorm 1 (second 0) or 2 (1) of the block, for a fused linear. */
static m2pt_linear_norm block_norm(const m2pt_block *b, int second)
{
  const m2pt_linear_norm n = {second ? b->norm2_w : b->norm1_w, second ? b->norm2_b : b->norm1_b,
                              b->cfg.eps};
  return n;
}

/* The inference forward's attention half, with the LayerNorms around it
 * fused into qkv and proj (m2pt_linear_apply_fused): pre-norm, norm =
 * LN1(x) feeds qkv, h = x + proj(MHSA(…)), then norm = LN2(h); post-norm,
 * qkv reads x and h = LN1(x + proj(MHSA(…))). norm is NULL for post-norm. */
static m2pt_status infer_attention(m2pt_block *b, cl_mem x, cl_mem mask, size_t batch,
                                   size_t tokens, cl_mem norm, cl_mem h)
{
  m2pt_context *ctx = b->ctx;
  const size_t rows = batch * tokens;
  const int pre = b->cfg.layout == M2PT_PRE_NORM;
  cl_mem qkv, attn;
  M2PT_TRY(scratch(ctx, M2PT_WS_QKV, rows, 3 * b->hd, &qkv));
  M2PT_TRY(scratch(ctx, M2PT_WS_ATTN, rows, b->hd, &attn));
  m2pt_linear_fusion fq = {0};
  if (pre) {
    fq.pre_src = x;
    fq.pre = block_norm(b, 0);
  }
  M2PT_TRY(m2pt_linear_apply_fused(b->qkv, pre ? norm : x, rows, &fq, qkv));
  const m2pt_attention_shape shape = {batch, tokens, b->cfg.heads, b->cfg.dim_head};
  M2PT_TRY(m2pt_op_attention(ctx, qkv, mask, &shape, b->cfg.attention, attn));
  const m2pt_linear_fusion fp = {.residual = x, .post_out = pre ? norm : h,
                                 .post = block_norm(b, pre)};
  return m2pt_linear_apply_fused(b->proj, attn, rows, &fp, h);
}

m2pt_status m2pt_block_forward(m2pt_block *b, const m2pt_tensor *x, const m2pt_tensor *mask,
                               m2pt_tensor *y)
{
  M2PT_TRY(check_forward(b, x, mask, y, "m2pt_block_forward"));
  m2pt_context *ctx = b->ctx;
  const size_t dim = b->cfg.dim;
  const size_t batch = x->shape[0], tokens = x->shape[1], rows = batch * tokens;
  const cl_mem mask_buf = mask ? mask->buffer : NULL;
  cl_mem h, norm = NULL;
  M2PT_TRY(scratch(ctx, M2PT_WS_RESIDUAL, rows, dim, &h));
  if (b->cfg.layout == M2PT_PRE_NORM) {
    M2PT_TRY(scratch(ctx, M2PT_WS_NORM, rows, dim, &norm));
    M2PT_TRY(infer_attention(b, x->buffer, mask_buf, batch, tokens, norm, h));
    return m2pt_ffn_apply(b->mlp, norm, rows, h, NULL, y->buffer);
  }
  M2PT_TRY(infer_attention(b, x->buffer, mask_buf, batch, tokens, NULL, h));
  const m2pt_linear_norm norm2 = block_norm(b, 1);
  return m2pt_ffn_apply(b->mlp, h, rows, h, &norm2, y->buffer);
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
  b->saved_serial = 0;
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

/* ---- training forward and backward (issue 12) ---- */

static m2pt_status stats(m2pt_context *ctx, m2pt_workspace_slot slot, size_t rows, cl_mem *out)
{
  return scratch(ctx, slot, rows, 1, out);
}

/* The context's saved set: the workspace's TRAIN slots, which the public
 * training forward writes and the public backward reads. */
static m2pt_status context_saved(const m2pt_block *b, size_t rows, m2pt_block_saved *sv)
{
  m2pt_context *ctx = b->ctx;
  const size_t dim = b->cfg.dim;
  M2PT_TRY(scratch(ctx, M2PT_WS_TRAIN_IN1, rows, dim, &sv->in1));
  M2PT_TRY(scratch(ctx, M2PT_WS_TRAIN_H, rows, dim, &sv->h));
  M2PT_TRY(scratch(ctx, M2PT_WS_TRAIN_IN2, rows, dim, &sv->in2));
  M2PT_TRY(stats(ctx, M2PT_WS_TRAIN_MEAN1, rows, &sv->mean1));
  M2PT_TRY(stats(ctx, M2PT_WS_TRAIN_RSTD1, rows, &sv->rstd1));
  M2PT_TRY(stats(ctx, M2PT_WS_TRAIN_MEAN2, rows, &sv->mean2));
  M2PT_TRY(stats(ctx, M2PT_WS_TRAIN_RSTD2, rows, &sv->rstd2));
  M2PT_TRY(scratch(ctx, M2PT_WS_TRAIN_QKV, rows, 3 * b->hd, &sv->qkv));
  M2PT_TRY(scratch(ctx, M2PT_WS_TRAIN_ATTN, rows, b->hd, &sv->attn));
  M2PT_TRY(scratch(ctx, M2PT_WS_TRAIN_LSE, rows, b->cfg.heads, &sv->lse));
  return scratch(ctx, M2PT_WS_TRAIN_FC1, rows, b->cfg.ff_mult * dim, &sv->fc1);
}

/* The sizes of a saved set's buffers in floats, in the struct's order. */
static void saved_sizes(const m2pt_block *b, size_t rows, size_t sizes[M2PT_BLOCK_SAVED])
{
  const size_t dim = b->cfg.dim;
  const size_t per_row[M2PT_BLOCK_SAVED] = {dim, 1, 1, 3 * b->hd, b->hd,          dim,
                                            dim, 1, 1, b->cfg.ff_mult * dim, b->cfg.heads};
  for (size_t i = 0; i < M2PT_BLOCK_SAVED; i++)
    sizes[i] = rows * per_row[i];
}

static cl_mem *saved_member(m2pt_block_saved *sv, size_t i)
{
  cl_mem *m[M2PT_BLOCK_SAVED] = {&sv->in1, &sv->mean1, &sv->rstd1, &sv->qkv,   &sv->attn, &sv->h,
                                 &sv->in2, &sv->mean2, &sv->rstd2, &sv->fc1, &sv->lse};
  return m[i];
}

size_t m2pt_block_saved_floats(const m2pt_block *b, size_t rows)
{
  size_t sizes[M2PT_BLOCK_SAVED], total = 0;
  saved_sizes(b, rows, sizes);
  for (size_t i = 0; i < M2PT_BLOCK_SAVED; i++)
    total += sizes[i];
  return total;
}

m2pt_status m2pt_block_saved_create(const m2pt_block *b, size_t rows, m2pt_block_saved *sv)
{
  size_t sizes[M2PT_BLOCK_SAVED];
  memset(sv, 0, sizeof *sv);
  sv->rows = rows;
  saved_sizes(b, rows, sizes);
  for (size_t i = 0; i < M2PT_BLOCK_SAVED; i++) {
    const m2pt_status s = m2pt_buffer_create(b->ctx, sizes[i] * sizeof(float), 0,
                                             saved_member(sv, i));
    if (s != M2PT_OK) {
      m2pt_block_saved_release(b, sv);
      return s;
    }
  }
  return M2PT_OK;
}

void m2pt_block_saved_release(const m2pt_block *b, m2pt_block_saved *sv)
{
  size_t sizes[M2PT_BLOCK_SAVED];
  saved_sizes(b, sv->rows, sizes);
  for (size_t i = 0; i < M2PT_BLOCK_SAVED; i++)
    m2pt_buffer_release(b->ctx, *saved_member(sv, i), sizes[i] * sizeof(float));
  memset(sv, 0, sizeof *sv);
}

/* out = residual + fc2(GELU(fc1(in))), keeping fc1's output before its bias
 * in `pre` (the same calls as m2pt_ffn_apply makes where GEMMs run on the
 * device, so there the same bits as the inference forward; on the host
 * the inference forward's GELU epilogue rounds differently, within
 * DESIGN.md's tolerance); with drop-path, residual + dp(fc2(…)). residual
 * may be in, not out. */
static m2pt_status ffn_train(m2pt_block *b, cl_mem in, size_t batch, size_t tokens,
                             cl_mem residual, const m2pt_block_drop *drop, cl_mem pre, cl_mem out)
{
  const size_t rows = batch * tokens;
  m2pt_context *ctx = b->ctx;
  m2pt_linear *fc1 = m2pt_block_linear(b, M2PT_BLOCK_FC1);
  m2pt_linear *fc2 = m2pt_block_linear(b, M2PT_BLOCK_FC2);
  const size_t hidden = b->cfg.ff_mult * b->cfg.dim;
  cl_mem act, b1;
  M2PT_TRY(scratch(ctx, M2PT_WS_HIDDEN, rows, hidden, &act));
  M2PT_TRY(m2pt_linear_apply(fc1, in, rows, 0.0f, pre));
  M2PT_TRY(m2pt_linear_effective_bias(fc1, &b1));
  M2PT_TRY(m2pt_op_gelu(ctx, pre, b1, b->cfg.gelu, rows * hidden, hidden, act));
  if (dropping(drop)) {
    M2PT_TRY(m2pt_linear_forward_buffers(fc2, act, rows, out));
    return drop_add(b, drop, 1, out, residual, batch, tokens);
  }
  const m2pt_linear_fusion f = {.residual = residual};
  return m2pt_linear_apply_fused(fc2, act, rows, &f, out);
}

/* The training forward into a saved set (arguments checked). */
static m2pt_status forward_saved(m2pt_block *b, const m2pt_tensor *x, const m2pt_tensor *mask,
                                 const m2pt_block_drop *drop, const m2pt_block_saved *sv,
                                 m2pt_tensor *y)
{
  m2pt_context *ctx = b->ctx;
  const size_t dim = b->cfg.dim, batch = x->shape[0], tokens = x->shape[1];
  const size_t rows = batch * tokens;
  const float eps = b->cfg.eps;
  const cl_mem mask_buf = mask ? mask->buffer : NULL;
  if (b->cfg.layout == M2PT_PRE_NORM) {
    M2PT_TRY(m2pt_op_layer_norm_train(ctx, x->buffer, b->norm1_w, b->norm1_b, eps, rows, dim,
                                      sv->in1, sv->mean1, sv->rstd1));
    M2PT_TRY(
        attention_residual(b, sv->in1, x->buffer, mask_buf, batch, tokens, sv, drop, sv->h));
    M2PT_TRY(m2pt_op_layer_norm_train(ctx, sv->h, b->norm2_w, b->norm2_b, eps, rows, dim,
                                      sv->in2, sv->mean2, sv->rstd2));
    return ffn_train(b, sv->in2, batch, tokens, sv->h, drop, sv->fc1, y->buffer);
  }
  M2PT_TRY(
      attention_residual(b, x->buffer, x->buffer, mask_buf, batch, tokens, sv, drop, sv->in1));
  M2PT_TRY(m2pt_op_layer_norm_train(ctx, sv->in1, b->norm1_w, b->norm1_b, eps, rows, dim, sv->h,
                                    sv->mean1, sv->rstd1));
  M2PT_TRY(ffn_train(b, sv->h, batch, tokens, sv->h, drop, sv->fc1, sv->in2));
  return m2pt_op_layer_norm_train(ctx, sv->in2, b->norm2_w, b->norm2_b, eps, rows, dim,
                                  y->buffer, sv->mean2, sv->rstd2);
}

m2pt_status m2pt_block_forward_train(m2pt_block *b, const m2pt_tensor *x,
                                     const m2pt_tensor *mask, m2pt_tensor *y)
{
  M2PT_TRY(check_forward(b, x, mask, y, "m2pt_block_forward_train"));
  m2pt_context *ctx = b->ctx;
  m2pt_block_saved sv;
  M2PT_TRY(context_saved(b, x->shape[0] * x->shape[1], &sv));
  /* Whatever happens next, the slots no longer hold another block's set. */
  b->saved_serial = 0;
  ctx->train_serial++;
  M2PT_TRY(forward_saved(b, x, mask, NULL, &sv, y));
  b->saved_serial = ctx->train_serial;
  b->saved_batch = x->shape[0];
  b->saved_tokens = x->shape[1];
  return M2PT_OK;
}

m2pt_status m2pt_block_forward_saved(m2pt_block *b, const m2pt_tensor *x,
                                     const m2pt_tensor *mask, const m2pt_block_drop *drop,
                                     const m2pt_block_saved *saved, m2pt_tensor *y)
{
  M2PT_TRY(check_forward(b, x, mask, y, "m2pt_block_forward_train"));
  if (saved->rows < x->shape[0] * x->shape[1])
    return m2pt_fail(b->ctx, M2PT_ERR_INVALID_STATE,
                     "a block's saved set holds %zu rows, x has %zu", saved->rows,
                     x->shape[0] * x->shape[1]);
  return forward_saved(b, x, mask, drop, saved, y);
}

/* ---- gradients by checkpoint name ---- */

/* The linear's (in, out) in the block. */
static void linear_shape(const m2pt_block *b, size_t i, size_t *in, size_t *out)
{
  const size_t dim = b->cfg.dim, hidden = b->cfg.ff_mult * dim;
  const size_t ins[M2PT_BLOCK_LINEARS] = {dim, b->hd, dim, hidden};
  const size_t outs[M2PT_BLOCK_LINEARS] = {3 * b->hd, dim, hidden, dim};
  *in = ins[i];
  *out = outs[i];
}

void m2pt_block_grads_destroy(m2pt_block_grads *g)
{
  if (!g)
    return;
  for (size_t i = 0; i < M2PT_GRAD_NORMS; i++)
    m2pt_tensor_destroy(g->norm[i]);
  for (size_t i = 0; i < M2PT_BLOCK_LINEARS; i++)
    for (size_t f = 0; f < 4; f++)
      m2pt_tensor_destroy(g->lin[i][f]);
  free(g);
}

/* A zeroed gradient tensor of ndim dimensions. */
static m2pt_status grad_tensor(m2pt_context *ctx, size_t ndim, size_t d0, size_t d1,
                               m2pt_tensor **out)
{
  const size_t shape[2] = {d0, d1};
  M2PT_TRY(m2pt_tensor_create(ctx, ndim, shape, out));
  return m2pt_fill(ctx, (*out)->buffer, 0.0f, (*out)->numel);
}

m2pt_status m2pt_block_grads_create(const m2pt_block *b, m2pt_block_grads **out)
{
  M2PT_REQUIRE(NULL, b != NULL, "m2pt_block_grads_create: block is NULL");
  M2PT_REQUIRE(b->ctx, out != NULL, "m2pt_block_grads_create: out is NULL");
  *out = NULL;
  m2pt_block_grads *g = calloc(1, sizeof *g);
  if (!g)
    return m2pt_fail(b->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for block gradients");
  g->block = b;
  m2pt_status s = M2PT_OK;
  for (size_t i = 0; i < M2PT_GRAD_NORMS && s == M2PT_OK; i++)
    s = grad_tensor(b->ctx, 1, b->cfg.dim, 0, &g->norm[i]);
  for (size_t i = 0; i < M2PT_BLOCK_LINEARS && s == M2PT_OK; i++) {
    const m2pt_linear *l = m2pt_block_linear(b, i);
    size_t in, o;
    linear_shape(b, i, &in, &o);
    s = grad_tensor(b->ctx, 2, o, in, &g->lin[i][F_WEIGHT]);
    if (s == M2PT_OK && (i != M2PT_BLOCK_QKV || b->cfg.qkv_bias))
      s = grad_tensor(b->ctx, 1, o, 0, &g->lin[i][F_BIAS]);
    if (s == M2PT_OK && m2pt_linear_has_pathway(l))
      s = grad_tensor(b->ctx, 2, o, in, &g->lin[i][F_AUX_WEIGHT]);
    if (s == M2PT_OK && m2pt_linear_has_pathway(l))
      s = grad_tensor(b->ctx, 1, 1, 0, &g->lin[i][F_SCALE]);
  }
  if (s != M2PT_OK) {
    m2pt_block_grads_destroy(g);
    return s;
  }
  *out = g;
  return M2PT_OK;
}

/* The slot holding name's gradient, or an error (unknown name, or a
 * parameter the block lacked). */
static m2pt_status grad_slot(const m2pt_block_grads *g, const char *name, m2pt_tensor **out)
{
  const m2pt_block *b = g->block;
  param_ref r;
  M2PT_TRY(resolve(b, name, &r));
  m2pt_tensor *t = NULL;
  if (r.norm) {
    const cl_mem bufs[M2PT_GRAD_NORMS] = {b->norm1_w, b->norm1_b, b->norm2_w, b->norm2_b};
    for (size_t i = 0; i < M2PT_GRAD_NORMS; i++)
      if (r.norm == bufs[i])
        t = g->norm[i];
  } else {
    for (size_t i = 0; i < M2PT_BLOCK_LINEARS; i++)
      if (r.linear == m2pt_block_linear(b, i))
        t = g->lin[i][r.field];
  }
  if (!t)
    return m2pt_fail(b->ctx, M2PT_ERR_INVALID_STATE,
                     "block gradients: the block had no parameter %s when they were created",
                     name);
  *out = t;
  return M2PT_OK;
}

m2pt_status m2pt_block_grads_tensor(m2pt_block_grads *g, const char *name, m2pt_tensor **out)
{
  M2PT_REQUIRE(NULL, g != NULL, "m2pt_block_grads_tensor: grads is NULL");
  M2PT_REQUIRE(g->block->ctx, out != NULL, "m2pt_block_grads_tensor: out is NULL");
  return grad_slot(g, name, out);
}

m2pt_status m2pt_block_grads_get(const m2pt_block_grads *g, const char *name, float *data,
                                 size_t count)
{
  M2PT_REQUIRE(NULL, g != NULL, "m2pt_block_grads_get: grads is NULL");
  M2PT_REQUIRE(g->block->ctx, data != NULL, "m2pt_block_grads_get(%s): data is NULL",
               name ? name : "(null)");
  m2pt_tensor *t;
  M2PT_TRY(grad_slot(g, name, &t));
  if (count != t->numel)
    return m2pt_fail(g->block->ctx, M2PT_ERR_SHAPE,
                     "block gradient %s has %zu elements, %zu given", name, t->numel, count);
  return m2pt_tensor_read(t, data, count);
}

/* A tensor header over a workspace buffer, for the public backward ops. */
static m2pt_tensor view(m2pt_context *ctx, cl_mem buf, size_t rows, size_t cols)
{
  m2pt_tensor t = {ctx, buf, 2, {rows, cols}, rows * cols};
  return t;
}

static m2pt_status check_backward(m2pt_block *b, const m2pt_tensor *x, const m2pt_tensor *mask,
                                  const m2pt_tensor *dy, const m2pt_block_grads *g,
                                  const m2pt_tensor *dx)
{
  static const char fn[] = "m2pt_block_backward";
  M2PT_TRY(check_forward(b, x, mask, dy, fn));
  m2pt_context *ctx = b->ctx;
  M2PT_REQUIRE(ctx, g != NULL, "%s: grads is NULL", fn);
  M2PT_REQUIRE(ctx, g->block == b, "%s: grads belong to another block", fn);
  if (dx) {
    M2PT_TRY(m2pt_check_tensor(ctx, dx, "m2pt_block_backward: dx"));
    M2PT_TRY(m2pt_check_same_shape(ctx, x, dx, fn, "x", "dx"));
    M2PT_REQUIRE(ctx, dx->buffer != x->buffer && dx->buffer != dy->buffer,
                 "%s: dx must not be x or dy", fn);
  }
  if (!b->saved_serial || b->saved_serial != ctx->train_serial)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE,
                     "%s: no training forward of this block is saved on the context (run "
                     "m2pt_block_forward_train last, with no parameter change since)",
                     fn);
  if (b->saved_batch != x->shape[0] || b->saved_tokens != x->shape[1])
    return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE,
                     "%s: the training forward saved [%zu][%zu] tokens, x has [%zu][%zu]", fn,
                     b->saved_batch, b->saved_tokens, x->shape[0], x->shape[1]);
  for (size_t i = 0; i < M2PT_BLOCK_LINEARS; i++)
    if (g->lin[i][F_AUX_WEIGHT] && !m2pt_linear_has_pathway(m2pt_block_linear(b, i)))
      return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE,
                       "%s: the grads hold %s's pathway gradients, the block has no pathway "
                       "(merged since they were created)",
                       fn, m2pt_block_linear_names[i]);
  return M2PT_OK;
}

m2pt_status m2pt_grad_target(m2pt_context *ctx, const m2pt_tensor *t, int accumulate,
                             m2pt_workspace_slot slot, cl_mem *out)
{
  *out = NULL;
  if (!t)
    return M2PT_OK;
  if (!accumulate) {
    *out = t->buffer;
    return M2PT_OK;
  }
  return scratch(ctx, slot, t->numel, 1, out);
}

m2pt_status m2pt_grad_finish(m2pt_context *ctx, const m2pt_tensor *t, int accumulate,
                             cl_mem buf)
{
  if (!t || !accumulate)
    return M2PT_OK;
  return m2pt_op_add(ctx, t->buffer, buf, t->numel, 0, t->buffer);
}

m2pt_status m2pt_norm_backward_grads(m2pt_context *ctx, cl_mem dy, cl_mem x, cl_mem weight,
                                    cl_mem mean, cl_mem rstd, size_t rows, size_t dim,
                                    cl_mem dx, const m2pt_tensor *dweight,
                                    const m2pt_tensor *dbias, int accumulate)
{
  cl_mem dw, db;
  M2PT_TRY(m2pt_grad_target(ctx, dweight, accumulate, M2PT_WS_GRAD_ACC, &dw));
  M2PT_TRY(m2pt_grad_target(ctx, dbias, accumulate, M2PT_WS_GRAD_ACC2, &db));
  if (!dx && !dw && !db)
    return M2PT_OK;
  M2PT_TRY(m2pt_op_layer_norm_backward(ctx, dy, x, weight, mean, rstd, rows, dim, dx, dw, db));
  M2PT_TRY(m2pt_grad_finish(ctx, dweight, accumulate, dw));
  return m2pt_grad_finish(ctx, dbias, accumulate, db);
}

/* A block LayerNorm's backward, its gradients g->norm[w] and [w + 1]. */
static m2pt_status norm_backward(m2pt_block *b, const m2pt_block_grads *g, int w, int accumulate,
                                 cl_mem dy, cl_mem x, cl_mem weight, cl_mem mean, cl_mem rstd,
                                 size_t rows, cl_mem dx)
{
  return m2pt_norm_backward_grads(b->ctx, dy, x, weight, mean, rstd, rows, b->cfg.dim, dx,
                                  g->norm[w], g->norm[w + 1], accumulate);
}

m2pt_status m2pt_linear_backward_split(m2pt_linear *l, const m2pt_linear_grads *params,
                                      const m2pt_tensor *x, const m2pt_tensor *dy,
                                      m2pt_tensor *dx, int dx_add)
{
  if (params->dweight || params->dbias || params->daux_weight || params->daux_bias ||
      params->dscale)
    M2PT_TRY(m2pt_linear_backward(l, x, dy, params));
  if (!dx)
    return M2PT_OK;
  const m2pt_linear_grads dxg = {.dx = dx, .accumulate = dx_add};
  return m2pt_linear_backward(l, x, dy, &dxg);
}

/* Linear i's backward with the block's gradients. */
static m2pt_status linear_backward(const m2pt_block_grads *g, m2pt_linear *l, size_t i,
                                   int accumulate, const m2pt_tensor *x, const m2pt_tensor *dy,
                                   m2pt_tensor *dx, int dx_add)
{
  const m2pt_linear_grads lg = {.dweight = g->lin[i][F_WEIGHT],
                                .dbias = g->lin[i][F_BIAS],
                                .daux_weight = g->lin[i][F_AUX_WEIGHT],
                                .dscale = g->lin[i][F_SCALE],
                                .accumulate = accumulate};
  return m2pt_linear_backward_split(l, &lg, x, dy, dx, dx_add);
}

/* The FFN's backward from d_out (∂L/∂ of the FFN's output, [rows][dim]):
 * fc2, GELU and fc1's parameter gradients, and ∂L/∂in into d_in (written,
 * or added to what it holds when dx_add). GELU's output, fc2's input, is
 * recomputed from the saved fc1 output in the pass that forms GELU's
 * backward, so fc2's ∂L/∂act comes first and its parameter gradients
 * after. */
static m2pt_status ffn_backward(m2pt_block *b, const m2pt_block_grads *g, int accumulate,
                                cl_mem pre, cl_mem in, cl_mem d_out, size_t rows, cl_mem d_in,
                                int dx_add)
{
  m2pt_context *ctx = b->ctx;
  m2pt_linear *fc1 = m2pt_block_linear(b, M2PT_BLOCK_FC1);
  m2pt_linear *fc2 = m2pt_block_linear(b, M2PT_BLOCK_FC2);
  const size_t dim = b->cfg.dim, hidden = b->cfg.ff_mult * dim;
  cl_mem act, dhid, b1;
  M2PT_TRY(scratch(ctx, M2PT_WS_HIDDEN, rows, hidden, &act));
  M2PT_TRY(scratch(ctx, M2PT_WS_BACK_HIDDEN, rows, hidden, &dhid));
  M2PT_TRY(m2pt_linear_effective_bias(fc1, &b1));
  m2pt_tensor t_act = view(ctx, act, rows, hidden), t_dhid = view(ctx, dhid, rows, hidden);
  m2pt_tensor t_dout = view(ctx, d_out, rows, dim), t_in = view(ctx, in, rows, dim);
  m2pt_tensor t_din = view(ctx, d_in, rows, dim);
  /* dX needs W only: act is not read yet. */
  const m2pt_linear_grads to_dhid = {.dx = &t_dhid};
  M2PT_TRY(m2pt_linear_backward(fc2, &t_act, &t_dout, &to_dhid));
  M2PT_TRY(m2pt_op_gelu_backward(ctx, dhid, pre, b1, b->cfg.gelu, rows * hidden, hidden, dhid,
                                 act));
  M2PT_TRY(linear_backward(g, fc2, M2PT_BLOCK_FC2, accumulate, &t_act, &t_dout, NULL, 0));
  return linear_backward(g, fc1, M2PT_BLOCK_FC1, accumulate, &t_in, &t_dhid, &t_din, dx_add);
}

/* The attention branch's backward from d_out (∂L/∂ of proj's output):
 * proj's and qkv's parameter gradients, and ∂L/∂in (qkv's input) into d_in
 * (written, or added to when dx_add). d_in may be NULL. */
static m2pt_status attention_backward(m2pt_block *b, const m2pt_block_grads *g, int accumulate,
                                      const m2pt_block_saved *sv, cl_mem in,
                                      const m2pt_tensor *mask, cl_mem d_out, size_t batch,
                                      size_t tokens, cl_mem d_in, int dx_add)
{
  m2pt_context *ctx = b->ctx;
  const size_t rows = batch * tokens, dim = b->cfg.dim, hd = b->hd;
  cl_mem dattn, dqkv;
  M2PT_TRY(scratch(ctx, M2PT_WS_BACK_ATTN, rows, hd, &dattn));
  M2PT_TRY(scratch(ctx, M2PT_WS_BACK_QKV, rows, 3 * hd, &dqkv));
  m2pt_tensor t_attn = view(ctx, sv->attn, rows, hd), t_dattn = view(ctx, dattn, rows, hd);
  m2pt_tensor t_dout = view(ctx, d_out, rows, dim), t_in = view(ctx, in, rows, dim);
  M2PT_TRY(linear_backward(g, b->proj, M2PT_BLOCK_PROJ, accumulate, &t_attn, &t_dout, &t_dattn,
                           0));
  /* The backward the training forward prepared for: fused from its output
   * and lse, or the GEMM path (P recomputed from lse). */
  const m2pt_attention_shape shape = {batch, tokens, b->cfg.heads, b->cfg.dim_head};
  M2PT_TRY(m2pt_op_attention_backward(ctx, sv->qkv, mask ? mask->buffer : NULL, sv->attn,
                                      sv->lse, dattn, &shape, b->cfg.attention, dqkv));
  const m2pt_tensor t_dqkv = view(ctx, dqkv, rows, 3 * hd);
  m2pt_tensor t_din = view(ctx, d_in, rows, dim);
  return linear_backward(g, b->qkv, M2PT_BLOCK_QKV, accumulate, &t_in, &t_dqkv,
                         d_in ? &t_din : NULL, dx_add);
}

/* The backward proper (arguments checked). */
static m2pt_status backward_saved(m2pt_block *b, const m2pt_tensor *x, const m2pt_tensor *mask,
                                  const m2pt_block_drop *drop, const m2pt_tensor *dy,
                                  const m2pt_block_saved *sv, const m2pt_block_grads *g, int acc,
                                  m2pt_tensor *dx)
{
  m2pt_context *ctx = b->ctx;
  const size_t dim = b->cfg.dim, batch = x->shape[0], tokens = x->shape[1];
  const size_t rows = batch * tokens, n = rows * dim;
  cl_mem d1, d2;
  M2PT_TRY(scratch(ctx, M2PT_WS_BACK_D1, rows, dim, &d1));
  M2PT_TRY(scratch(ctx, M2PT_WS_BACK_D2, rows, dim, &d2));
  const cl_mem dxb = dx ? dx->buffer : NULL;
  const int dp = dropping(drop);
  if (b->cfg.layout == M2PT_PRE_NORM) {
    /* y = h + FFN(LN2(h)): d2 = ∂L/∂LN2(h), then d1 = ∂L/∂h = dy + LN2'ᵀ·d2.
     * With drop-path the FFN sees dp'(dy), formed in d1 (free until the
     * norm's backward writes it). */
    cl_mem dffn = dy->buffer;
    if (dp) {
      M2PT_TRY(drop_branch(b, drop, 1, dy->buffer, d1, batch, tokens, 1));
      dffn = d1;
    }
    M2PT_TRY(ffn_backward(b, g, acc, sv->fc1, sv->in2, dffn, rows, d2, 0));
    M2PT_TRY(norm_backward(b, g, M2PT_GRAD_NORM2_W, acc, d2, sv->h, b->norm2_w, sv->mean2,
                           sv->rstd2, rows, d1));
    M2PT_TRY(m2pt_op_add(ctx, d1, dy->buffer, n, 0, d1));
    /* h = x + attention(LN1(x)): dx = d1 + LN1'ᵀ·(∂L/∂LN1(x)). With
     * drop-path the branch sees dp'(d1), formed in d2: the attention's
     * backward reads its upstream gradient (proj's) before it writes d2. */
    cl_mem dattn = d1;
    if (dp) {
      M2PT_TRY(drop_branch(b, drop, 0, d1, d2, batch, tokens, 1));
      dattn = d2;
    }
    M2PT_TRY(attention_backward(b, g, acc, sv, sv->in1, mask, dattn, batch, tokens, d2, 0));
    M2PT_TRY(norm_backward(b, g, M2PT_GRAD_NORM1_W, acc, d2, x->buffer, b->norm1_w, sv->mean1,
                           sv->rstd1, rows, dxb));
    if (dxb)
      M2PT_TRY(m2pt_op_add(ctx, dxb, d1, n, 0, dxb));
    return M2PT_OK;
  }
  /* y = LN2(s2), s2 = h + FFN(h): d1 = ∂L/∂s2, then fc1's ∂L/∂h accumulates
   * onto it (the residual), giving ∂L/∂h. */
  M2PT_TRY(norm_backward(b, g, M2PT_GRAD_NORM2_W, acc, dy->buffer, sv->in2, b->norm2_w,
                         sv->mean2, sv->rstd2, rows, d1));
  /* s2 = h + dp(FFN(h)): with drop-path the FFN sees dp'(d1), formed in d2
   * (free until LN1's backward). */
  cl_mem dffn = d1;
  if (dp) {
    M2PT_TRY(drop_branch(b, drop, 1, d1, d2, batch, tokens, 1));
    dffn = d2;
  }
  M2PT_TRY(ffn_backward(b, g, acc, sv->fc1, sv->h, dffn, rows, d1, 1));
  /* h = LN1(s1), s1 = x + attention(x): d2 = ∂L/∂s1; dx = d2 + qkv's ∂L/∂x. */
  M2PT_TRY(norm_backward(b, g, M2PT_GRAD_NORM1_W, acc, d1, sv->in1, b->norm1_w, sv->mean1,
                         sv->rstd1, rows, d2));
  if (dxb) {
    const cl_int err = clEnqueueCopyBuffer(ctx->queue, d2, dxb, 0, 0, n * sizeof(float), 0, NULL,
                                           NULL);
    if (err != CL_SUCCESS)
      return m2pt_fail_cl(ctx, err, "m2pt_block_backward: copying dx");
  }
  /* s1 = x + dp(attention(x)): the branch sees dp'(d2), in place (d2 is
   * in dx already). */
  if (dp)
    M2PT_TRY(drop_branch(b, drop, 0, d2, d2, batch, tokens, 1));
  return attention_backward(b, g, acc, sv, x->buffer, mask, d2, batch, tokens, dxb, 1);
}

m2pt_status m2pt_block_backward(m2pt_block *b, const m2pt_tensor *x, const m2pt_tensor *mask,
                                const m2pt_tensor *dy, m2pt_block_grads *g, m2pt_tensor *dx)
{
  M2PT_TRY(check_backward(b, x, mask, dy, g, dx));
  m2pt_block_saved sv;
  M2PT_TRY(context_saved(b, x->shape[0] * x->shape[1], &sv));
  return backward_saved(b, x, mask, NULL, dy, &sv, g, 0, dx);
}

m2pt_status m2pt_block_backward_saved(m2pt_block *b, const m2pt_tensor *x,
                                      const m2pt_tensor *mask, const m2pt_block_drop *drop,
                                      const m2pt_tensor *dy, const m2pt_block_saved *saved,
                                      const m2pt_block_grads *g, int accumulate,
                                      m2pt_tensor *dx)
{
  static const char fn[] = "m2pt_block_backward";
  M2PT_TRY(check_forward(b, x, mask, dy, fn));
  m2pt_context *ctx = b->ctx;
  if (dx) {
    M2PT_TRY(m2pt_check_same_shape(ctx, x, dx, fn, "x", "dx"));
    M2PT_REQUIRE(ctx, dx->buffer != x->buffer && dx->buffer != dy->buffer,
                 "%s: dx must not be x or dy", fn);
  }
  if (saved->rows < x->shape[0] * x->shape[1])
    return m2pt_fail(ctx, M2PT_ERR_INVALID_STATE, "%s: the saved set holds %zu rows, x has %zu",
                     fn, saved->rows, x->shape[0] * x->shape[1]);
  return backward_saved(b, x, mask, drop, dy, saved, g, accumulate, dx);
}

cl_mem m2pt_block_norm_buffer(const m2pt_block *b, size_t index)
{
  /* checkpoint_naming.h's order: norm1 weight, bias, norm2 weight, bias */
  const cl_mem bufs[4] = {b->norm1_w, b->norm1_b, b->norm2_w, b->norm2_b};
  return index < 4 ? bufs[index] : NULL;
}

void m2pt_block_params_changed(m2pt_block *b)
{
  b->saved_serial = 0;
  for (size_t i = 0; i < M2PT_BLOCK_LINEARS; ++i)
    m2pt_linear_params_changed(m2pt_block_linear(b, i));
}
