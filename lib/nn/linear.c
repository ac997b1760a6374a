/* The cross-modal re-parameterized linear (arXiv 2401.14405, §3.2):
 * y = x·(W + λ·W_aux)ᵀ + b [+ λ·b_aux], and its merge into a plain linear. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/buffer.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "gemm/backend.h"
#include "linear_internal.h"
#include "m2pt/m2pt.h"
#include "ops/block_ops.h"
#include "common/host_math.h"
#include "ops/linear_ops.h"
#include "ops/tensor_checks.h"

struct m2pt_linear {
  m2pt_context *ctx;
  size_t in, out;
  unsigned flags;      /* M2PT_LINEAR_*, as they hold now (merge drops AUX*) */
  int merged;
  float scale;         /* λ */
  cl_mem w, b, w_aux, b_aux;
  /* W + λ·W_aux and b + λ·b_aux, formed on the device when stale. */
  cl_mem w_eff, b_eff;
  int eff_stale;
  /* The forward's weight (w, or w_eff) as the host GEMM keeps it repacked
   * (gemm/backend.h), emptied whenever a parameter changes. */
  m2pt_gemm_packed packed;
};

/* After any parameter changed: W + λ·W_aux and the packed weight are stale. */
static void stale(m2pt_linear *l)
{
  l->eff_stale = 1;
  m2pt_gemm_packed_clear(&l->packed);
}

static size_t weight_bytes(const m2pt_linear *l)
{
  return l->in * l->out * sizeof(float);
}

static size_t bias_bytes(const m2pt_linear *l)
{
  return l->out * sizeof(float);
}

void m2pt_linear_destroy(m2pt_linear *l)
{
  if (!l)
    return;
  m2pt_gemm_packed_clear(&l->packed);
  m2pt_buffer_release(l->ctx, l->w, weight_bytes(l));
  m2pt_buffer_release(l->ctx, l->w_aux, weight_bytes(l));
  m2pt_buffer_release(l->ctx, l->w_eff, weight_bytes(l));
  m2pt_buffer_release(l->ctx, l->b, bias_bytes(l));
  m2pt_buffer_release(l->ctx, l->b_aux, bias_bytes(l));
  m2pt_buffer_release(l->ctx, l->b_eff, bias_bytes(l));
  free(l);
}

m2pt_status m2pt_linear_create(m2pt_context *ctx, size_t in, size_t out, unsigned flags,
                               m2pt_linear **out_layer)
{
  M2PT_REQUIRE(NULL, ctx != NULL, "m2pt_linear_create: ctx is NULL");
  M2PT_REQUIRE(ctx, out_layer != NULL, "m2pt_linear_create: out_layer is NULL");
  *out_layer = NULL;
  M2PT_REQUIRE(ctx, in > 0 && out > 0, "m2pt_linear_create: in=%zu out=%zu (both must be > 0)",
               in, out);
  size_t elems, bytes;
  M2PT_REQUIRE(ctx, m2pt_mul_size(in, out, &elems) && m2pt_mul_size(elems, sizeof(float), &bytes),
               "m2pt_linear_create: %zu × %zu weights overflow", out, in);
  const unsigned known = M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY | M2PT_LINEAR_PATHWAY_BIAS;
  M2PT_REQUIRE(ctx, (flags & ~known) == 0, "m2pt_linear_create: unknown flags 0x%x",
               flags & ~known);
  M2PT_REQUIRE(ctx, !(flags & M2PT_LINEAR_PATHWAY_BIAS) || (flags & M2PT_LINEAR_PATHWAY),
               "m2pt_linear_create: M2PT_LINEAR_PATHWAY_BIAS needs M2PT_LINEAR_PATHWAY");
  if (flags & M2PT_LINEAR_PATHWAY_BIAS)
    flags |= M2PT_LINEAR_BIAS;

  m2pt_linear *l = calloc(1, sizeof *l);
  if (!l)
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for a linear layer");
  l->ctx = ctx;
  l->in = in;
  l->out = out;
  l->flags = flags;
  stale(l);
  m2pt_status s = m2pt_buffer_create(ctx, bytes, 1, &l->w);
  if (s == M2PT_OK && (flags & M2PT_LINEAR_BIAS))
    s = m2pt_buffer_create(ctx, bias_bytes(l), 1, &l->b);
  if (s == M2PT_OK && (flags & M2PT_LINEAR_PATHWAY))
    s = m2pt_buffer_create(ctx, bytes, 1, &l->w_aux);
  if (s == M2PT_OK && (flags & M2PT_LINEAR_PATHWAY_BIAS))
    s = m2pt_buffer_create(ctx, bias_bytes(l), 1, &l->b_aux);
  if (s != M2PT_OK) {
    m2pt_linear_destroy(l);
    return s;
  }
  *out_layer = l;
  return M2PT_OK;
}

/* Which parameter a setter or getter addresses. */
typedef enum param { P_WEIGHT, P_BIAS, P_AUX_WEIGHT, P_AUX_BIAS } param;
static const char *param_name[] = {"weight", "bias", "aux_weight", "aux_bias"};

/* The buffer holding `p` and its element count, or a failure saying why the
 * layer has no such parameter. */
static m2pt_status locate(const m2pt_linear *l, param p, const void *host, size_t count,
                          cl_mem *buf, const char *fn)
{
  M2PT_REQUIRE(NULL, l != NULL, "%s: layer is NULL", fn);
  M2PT_REQUIRE(l->ctx, host != NULL, "%s: host pointer is NULL", fn);
  const cl_mem bufs[] = {l->w, l->b, l->w_aux, l->b_aux};
  if (!bufs[p]) {
    const char *why = l->merged && (p == P_AUX_WEIGHT || p == P_AUX_BIAS)
                          ? "the pathway was merged into the weight"
                          : "the layer was created without it";
    return m2pt_fail(l->ctx, M2PT_ERR_INVALID_STATE, "%s: no %s: %s", fn, param_name[p], why);
  }
  const size_t want = (p == P_WEIGHT || p == P_AUX_WEIGHT) ? l->in * l->out : l->out;
  if (count != want)
    return m2pt_fail(l->ctx, M2PT_ERR_SHAPE, "%s: %zu floats given, %s of a %zu→%zu layer has %zu",
                     fn, count, param_name[p], l->in, l->out, want);
  *buf = bufs[p];
  return M2PT_OK;
}

static m2pt_status set_param(m2pt_linear *l, param p, const float *src, size_t count,
                             const char *fn)
{
  cl_mem buf;
  M2PT_TRY(locate(l, p, src, count, &buf, fn));
  stale(l); /* also when the write fails part-way */
  M2PT_TRY_CL(l->ctx,
              clEnqueueWriteBuffer(l->ctx->queue, buf, CL_TRUE, 0, count * sizeof(float), src, 0,
                                   NULL, NULL),
              fn);
  return M2PT_OK;
}

static m2pt_status get_param(const m2pt_linear *l, param p, float *dst, size_t count,
                             const char *fn)
{
  cl_mem buf;
  M2PT_TRY(locate(l, p, dst, count, &buf, fn));
  M2PT_TRY_CL(l->ctx,
              clEnqueueReadBuffer(l->ctx->queue, buf, CL_TRUE, 0, count * sizeof(float), dst, 0,
                                  NULL, NULL),
              fn);
  return M2PT_OK;
}

m2pt_status m2pt_linear_set_weight(m2pt_linear *l, const float *w, size_t count)
{
  return set_param(l, P_WEIGHT, w, count, "m2pt_linear_set_weight");
}

m2pt_status m2pt_linear_set_bias(m2pt_linear *l, const float *b, size_t count)
{
  return set_param(l, P_BIAS, b, count, "m2pt_linear_set_bias");
}

m2pt_status m2pt_linear_set_aux_weight(m2pt_linear *l, const float *w, size_t count)
{
  return set_param(l, P_AUX_WEIGHT, w, count, "m2pt_linear_set_aux_weight");
}

m2pt_status m2pt_linear_set_aux_bias(m2pt_linear *l, const float *b, size_t count)
{
  return set_param(l, P_AUX_BIAS, b, count, "m2pt_linear_set_aux_bias");
}

m2pt_status m2pt_linear_get_weight(const m2pt_linear *l, float *w, size_t count)
{
  return get_param(l, P_WEIGHT, w, count, "m2pt_linear_get_weight");
}

m2pt_status m2pt_linear_get_bias(const m2pt_linear *l, float *b, size_t count)
{
  return get_param(l, P_BIAS, b, count, "m2pt_linear_get_bias");
}

m2pt_status m2pt_linear_get_aux_weight(const m2pt_linear *l, float *w, size_t count)
{
  return get_param(l, P_AUX_WEIGHT, w, count, "m2pt_linear_get_aux_weight");
}

m2pt_status m2pt_linear_get_aux_bias(const m2pt_linear *l, float *b, size_t count)
{
  return get_param(l, P_AUX_BIAS, b, count, "m2pt_linear_get_aux_bias");
}

static m2pt_status require_pathway(const m2pt_linear *l, const char *fn)
{
  M2PT_REQUIRE(NULL, l != NULL, "%s: layer is NULL", fn);
  if (!(l->flags & M2PT_LINEAR_PATHWAY))
    return m2pt_fail(l->ctx, M2PT_ERR_INVALID_STATE, "%s: %s", fn,
                     l->merged ? "the pathway was merged; λ is folded into the weight"
                               : "the layer has no pathway (created without M2PT_LINEAR_PATHWAY)");
  return M2PT_OK;
}

m2pt_status m2pt_linear_set_scale(m2pt_linear *l, float scale)
{
  M2PT_TRY(require_pathway(l, "m2pt_linear_set_scale"));
  M2PT_REQUIRE(l->ctx, isfinite(scale), "m2pt_linear_set_scale: λ = %g is not finite",
               (double)scale);
  if (scale != l->scale || signbit(scale) != signbit(l->scale))
    stale(l);
  l->scale = scale;
  return M2PT_OK;
}

m2pt_status m2pt_linear_get_scale(const m2pt_linear *l, float *scale)
{
  M2PT_TRY(require_pathway(l, "m2pt_linear_get_scale"));
  M2PT_REQUIRE(l->ctx, scale != NULL, "m2pt_linear_get_scale: scale is NULL");
  *scale = l->scale;
  return M2PT_OK;
}

/* Forms W + λ·W_aux (and b + λ·b_aux) if the parameters changed since. */
static m2pt_status refresh_effective(m2pt_linear *l)
{
  if (!(l->flags & M2PT_LINEAR_PATHWAY) || !l->eff_stale)
    return M2PT_OK;
  const size_t nw = l->in * l->out;
  if (!l->w_eff)
    M2PT_TRY(m2pt_buffer_create(l->ctx, weight_bytes(l), 0, &l->w_eff));
  if ((l->flags & M2PT_LINEAR_PATHWAY_BIAS) && !l->b_eff)
    M2PT_TRY(m2pt_buffer_create(l->ctx, bias_bytes(l), 0, &l->b_eff));
  M2PT_TRY(m2pt_op_fold_pathway(l->ctx, l->w_eff, l->w, l->w_aux, l->scale, nw));
  if (l->flags & M2PT_LINEAR_PATHWAY_BIAS)
    M2PT_TRY(m2pt_op_fold_pathway(l->ctx, l->b_eff, l->b, l->b_aux, l->scale, l->out));
  l->eff_stale = 0;
  return M2PT_OK;
}

m2pt_status m2pt_linear_check_io(const m2pt_context *ctx, const m2pt_tensor *x,
                                 const m2pt_tensor *y, size_t in, size_t out, const char *fn)
{
  char what[64];
  snprintf(what, sizeof what, "%s: x", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, x, what));
  snprintf(what, sizeof what, "%s: y", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, y, what));
  M2PT_REQUIRE(ctx, x != y, "%s: y must not be x", fn);
  int fits = x->ndim == y->ndim && x->shape[x->ndim - 1] == in && y->shape[y->ndim - 1] == out;
  for (size_t i = 0; fits && i + 1 < x->ndim; i++)
    fits = x->shape[i] == y->shape[i];
  if (fits)
    return M2PT_OK;
  char sx[96], sy[96];
  return m2pt_fail(ctx, M2PT_ERR_SHAPE,
                   "%s: a %zu→%zu map takes x [..][%zu] to y [..][%zu] with the same leading "
                   "dimensions; got x %s, y %s",
                   fn, in, out, in, out, m2pt_shape_string(x, sx, sizeof sx),
                   m2pt_shape_string(y, sy, sizeof sy));
}

m2pt_status m2pt_linear_apply(m2pt_linear *l, cl_mem x, size_t rows, float beta, cl_mem y)
{
  M2PT_TRY(refresh_effective(l));
  const cl_mem weight = (l->flags & M2PT_LINEAR_PATHWAY) ? l->w_eff : l->w;
  const m2pt_gemm_matrix a = {x, 0, l->in, 0};
  const m2pt_gemm_matrix b = {weight, 0, l->in, 0};
  const m2pt_gemm_matrix c = {y, 0, l->out, 0};
  return m2pt_gemm_sgemm(l->ctx, M2PT_NO_TRANS, M2PT_TRANS, rows, l->out, l->in, 1.0f, &a, &b,
                         beta, &c, 1);
}

m2pt_status m2pt_linear_effective_bias(m2pt_linear *l, cl_mem *bias)
{
  M2PT_TRY(refresh_effective(l));
  *bias = (l->flags & M2PT_LINEAR_PATHWAY_BIAS) ? l->b_eff : l->b;
  return M2PT_OK;
}

/* The fused forward with nothing around it: on the host the bias is the
 * GEMM's epilogue, on the device laid into y for the GEMM to add onto. */
m2pt_status m2pt_linear_forward_buffers(m2pt_linear *l, cl_mem x, size_t rows, cl_mem y)
{
  static const m2pt_linear_fusion none = {0};
  return m2pt_linear_apply_fused(l, x, rows, &none, y);
}

/* ---- Fused inference forward (m2pt_linear_apply_fused) ---- */

/* The slots of the host work's extra buffers. */
enum { E_X, E_PRE_SRC, E_PRE_W, E_PRE_B, E_POST_OUT, E_POST_W, E_POST_B, E_SLOTS };
_Static_assert(E_SLOTS <= M2PT_GEMM_HOST_EXTRAS, "the host work has a slot per extra buffer");

typedef struct host_fusion {
  const m2pt_linear_fusion *f;
  size_t rows, in, out;
  m2pt_host_pool *pool; /* the context's, for the LayerNorms */
} host_fusion;

/* LayerNorm into x; the bias, GELU and residual are the GEMM's epilogue. */
static void host_before(void *user, float *c, float *const *e)
{
  const host_fusion *h = user;
  if (h->f->pre_src)
    m2pt_host_layer_norm(h->pool, e[E_PRE_SRC], e[E_PRE_W], e[E_PRE_B], h->f->pre.eps, h->rows,
                         h->in, e[E_X]);
}

static void host_after(void *user, float *c, float *const *e)
{
  const host_fusion *h = user;
  if (h->f->post_out)
    m2pt_host_layer_norm(h->pool, c, e[E_POST_W], e[E_POST_B], h->f->post.eps, h->rows, h->out,
                         e[E_POST_OUT]);
}

static void add_extra(m2pt_gemm_host_work *w, int slot, cl_mem buf, size_t elems, int write)
{
  w->buffer[slot] = buf;
  w->elems[slot] = buf ? elems : 0;
  w->write[slot] = write;
}

static m2pt_status fused_on_host(m2pt_linear *l, cl_mem x, size_t rows,
                                 const m2pt_linear_fusion *f, cl_mem bias, cl_mem weight,
                                 cl_mem y)
{
  host_fusion h = {f, rows, l->in, l->out,
                   f->pre_src || f->post_out ? m2pt_context_host_pool(l->ctx) : NULL};
  m2pt_gemm_host_work w = {.bias = bias,
                           .residual = f->residual,
                           .gelu = f->gelu,
                           .gelu_tanh = f->gelu_kind == M2PT_GELU_TANH,
                           .packed_b = &l->packed,
                           .before = host_before,
                           .after = host_after,
                           .user = &h};
  const size_t nx = rows * l->in, ny = rows * l->out;
  add_extra(&w, E_X, f->pre_src ? x : NULL, nx, 1);
  add_extra(&w, E_PRE_SRC, f->pre_src, nx, 0);
  add_extra(&w, E_PRE_W, f->pre_src ? f->pre.weight : NULL, l->in, 0);
  add_extra(&w, E_PRE_B, f->pre_src ? f->pre.bias : NULL, l->in, 0);
  add_extra(&w, E_POST_OUT, f->post_out, ny, 1);
  add_extra(&w, E_POST_W, f->post_out ? f->post.weight : NULL, l->out, 0);
  add_extra(&w, E_POST_B, f->post_out ? f->post.bias : NULL, l->out, 0);
  const m2pt_gemm_matrix a = {x, 0, l->in, 0}, b = {weight, 0, l->in, 0};
  const m2pt_gemm_matrix c = {y, 0, l->out, 0};
  return m2pt_gemm_sgemm_host(l->ctx, M2PT_NO_TRANS, M2PT_TRANS, rows, l->out, l->in, 1.0f, &a,
                              &b, 0.0f, &c, &w);
}

/* The same as kernels: LayerNorm, y laid with residual + bias (or the bias
 * left to GELU's pass), the GEMM accumulating onto it, GELU, LayerNorm. */
static m2pt_status fused_on_device(m2pt_linear *l, cl_mem x, size_t rows,
                                   const m2pt_linear_fusion *f, cl_mem bias, cl_mem y)
{
  m2pt_context *ctx = l->ctx;
  const size_t ny = rows * l->out;
  if (f->pre_src)
    M2PT_TRY(m2pt_op_layer_norm(ctx, f->pre_src, f->pre.weight, f->pre.bias, f->pre.eps, rows,
                                l->in, x));
  float beta = 1.0f;
  if (f->gelu || (!f->residual && !bias))
    beta = 0.0f;
  else if (f->residual && bias)
    M2PT_TRY(m2pt_op_add(ctx, f->residual, bias, ny, l->out, y));
  else if (f->residual)
    M2PT_TRY_CL(ctx,
                clEnqueueCopyBuffer(ctx->queue, f->residual, y, 0, 0, ny * sizeof(float), 0,
                                    NULL, NULL),
                "a linear's residual");
  else
    M2PT_TRY(m2pt_op_broadcast_rows(ctx, y, bias, rows, l->out));
  M2PT_TRY(m2pt_linear_apply(l, x, rows, beta, y));
  if (f->gelu)
    M2PT_TRY(m2pt_op_gelu(ctx, y, bias, f->gelu_kind, ny, l->out, y));
  if (f->post_out)
    M2PT_TRY(m2pt_op_layer_norm(ctx, y, f->post.weight, f->post.bias, f->post.eps, rows, l->out,
                                f->post_out));
  return M2PT_OK;
}

m2pt_status m2pt_linear_apply_fused(m2pt_linear *l, cl_mem x, size_t rows,
                                    const m2pt_linear_fusion *f, cl_mem y)
{
  cl_mem bias;
  M2PT_TRY(m2pt_linear_effective_bias(l, &bias));
  if (!m2pt_gemm_host_takes(l->ctx, rows, l->out, l->in))
    return fused_on_device(l, x, rows, f, bias, y);
  const cl_mem weight = (l->flags & M2PT_LINEAR_PATHWAY) ? l->w_eff : l->w;
  return fused_on_host(l, x, rows, f, bias, weight, y);
}

m2pt_status m2pt_linear_forward(m2pt_linear *l, const m2pt_tensor *x, m2pt_tensor *y)
{
  M2PT_REQUIRE(NULL, l != NULL, "m2pt_linear_forward: layer is NULL");
  M2PT_TRY(m2pt_linear_check_io(l->ctx, x, y, l->in, l->out, "m2pt_linear_forward"));
  return m2pt_linear_forward_buffers(l, x->buffer, x->numel / l->in, y->buffer);
}

/* ---- Backward (DESIGN.md "Gradients of the re-parameterized linear") ---- */

#define BACKWARD "m2pt_linear_backward"

/* The gradient tensors in one array, named for messages. */
enum { G_DX, G_DW, G_DB, G_DWAUX, G_DBAUX, G_DSCALE, G_COUNT };
static const char *grad_name[G_COUNT] = {"dx", "dweight", "dbias", "daux_weight", "daux_bias",
                                         "dscale"};

/* Checks one wanted gradient against the layer: belongs to its context, has
 * the parameter's shape, and the layer has that parameter. */
static m2pt_status check_grad(const m2pt_linear *l, int which, const m2pt_tensor *t,
                              const m2pt_tensor *x)
{
  char what[64];
  snprintf(what, sizeof what, BACKWARD ": %s", grad_name[which]);
  M2PT_TRY(m2pt_check_tensor(l->ctx, t, what));
  const unsigned needs[G_COUNT] = {0, 0, M2PT_LINEAR_BIAS, M2PT_LINEAR_PATHWAY,
                                   M2PT_LINEAR_PATHWAY_BIAS, M2PT_LINEAR_PATHWAY};
  if ((l->flags & needs[which]) != needs[which]) {
    const char *why = l->merged && which != G_DB ? "its pathway was merged into the weight"
                                                 : "the layer was created without it";
    return m2pt_fail(l->ctx, M2PT_ERR_INVALID_STATE, BACKWARD ": %s asked for, but %s",
                     grad_name[which], why);
  }
  switch (which) {
  case G_DX:
    return m2pt_check_same_shape(l->ctx, t, x, BACKWARD, "dx", "x");
  case G_DW:
  case G_DWAUX:
    if (t->ndim == 2 && t->shape[0] == l->out && t->shape[1] == l->in)
      return M2PT_OK;
    char st[96];
    return m2pt_fail(l->ctx, M2PT_ERR_SHAPE, BACKWARD ": %s %s must be [%zu][%zu] (out, in)",
                     grad_name[which], m2pt_shape_string(t, st, sizeof st), l->out, l->in);
  case G_DSCALE:
    return m2pt_check_vector(l->ctx, t, 1, BACKWARD, "dscale");
  default:
    return m2pt_check_vector(l->ctx, t, l->out, BACKWARD, grad_name[which]);
  }
}

/* Everything a rejected call must catch before it writes anything. */
static m2pt_status check_backward(const m2pt_linear *l, const m2pt_tensor *x,
                                  const m2pt_tensor *dy, const m2pt_linear_grads *g,
                                  m2pt_tensor *const out[G_COUNT])
{
  M2PT_REQUIRE(l->ctx, g != NULL, BACKWARD ": grads is NULL");
  M2PT_REQUIRE(l->ctx, g->accumulate == 0 || g->accumulate == 1,
               BACKWARD ": accumulate is %d (0 overwrites, 1 adds)", g->accumulate);
  M2PT_TRY(m2pt_linear_check_io(l->ctx, x, dy, l->in, l->out, BACKWARD));
  for (int i = 0; i < G_COUNT; i++) {
    if (!out[i])
      continue;
    M2PT_TRY(check_grad(l, i, out[i], x));
    /* An output that is an input, or two outputs in one buffer, would be
     * read after it was written. */
    M2PT_REQUIRE(l->ctx, out[i]->buffer != x->buffer && out[i]->buffer != dy->buffer,
                 BACKWARD ": %s must not be x or dy", grad_name[i]);
    for (int j = 0; j < i; j++)
      M2PT_REQUIRE(l->ctx, !out[j] || out[j]->buffer != out[i]->buffer,
                   BACKWARD ": %s and %s are one tensor", grad_name[j], grad_name[i]);
  }
  return out[G_DSCALE] ? m2pt_op_linear_grad_scale_supported(l->ctx) : M2PT_OK;
}

m2pt_status m2pt_linear_backward(m2pt_linear *l, const m2pt_tensor *x, const m2pt_tensor *dy,
                                 const m2pt_linear_grads *g)
{
  M2PT_REQUIRE(NULL, l != NULL, BACKWARD ": layer is NULL");
  m2pt_tensor *const out[G_COUNT] = {
      g ? g->dx : NULL,          g ? g->dweight : NULL,   g ? g->dbias : NULL,
      g ? g->daux_weight : NULL, g ? g->daux_bias : NULL, g ? g->dscale : NULL};
  M2PT_TRY(check_backward(l, x, dy, g, out));
  m2pt_context *ctx = l->ctx;
  const size_t rows = x->numel / l->in, n = l->in * l->out;
  const int add = g->accumulate;
  const m2pt_grad_write mode = add ? M2PT_GRAD_ADD : M2PT_GRAD_SET;
  const m2pt_gemm_matrix mdy = {dy->buffer, 0, l->out, 0}, mx = {x->buffer, 0, l->in, 0};

  /* dX = dY·W_eff: [rows][out]·[out][in], one GEMM (beta = 1 accumulates). */
  if (out[G_DX]) {
    M2PT_TRY(refresh_effective(l));
    const cl_mem weight = (l->flags & M2PT_LINEAR_PATHWAY) ? l->w_eff : l->w;
    const m2pt_gemm_matrix mw = {weight, 0, l->in, 0}, mdx = {out[G_DX]->buffer, 0, l->in, 0};
    M2PT_TRY(m2pt_gemm_sgemm(ctx, M2PT_NO_TRANS, M2PT_NO_TRANS, rows, l->in, l->out, 1.0f, &mdy,
                             &mw, add ? 1.0f : 0.0f, &mdx, 1));
  }

  /* Scratch: G unless it goes straight into an overwritten dW, and the
   * sums (dλ's partials, then Σ_rows dY for its b_aux term). */
  const int want_g = out[G_DW] || out[G_DWAUX] || out[G_DSCALE];
  const int bias_term = out[G_DSCALE] && (l->flags & M2PT_LINEAR_PATHWAY_BIAS);
  const size_t partials = out[G_DSCALE] ? m2pt_grad_partials(n) : 0;
  cl_mem gbuf = NULL, sums = NULL;
  if (want_g && out[G_DW] && !add)
    gbuf = out[G_DW]->buffer;
  else if (want_g)
    M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_GRAD_G, n * sizeof(float), &gbuf));
  if (out[G_DSCALE])
    M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_GRAD_SUMS,
                                (partials + (bias_term ? l->out : 0)) * sizeof(float), &sums));

  /* G = dYᵀ·X: [out][rows]·[rows][in], the one GEMM behind dW, dW_aux and
   * dλ; then one pass over it for dW += G, dW_aux = λ·G and dλ's partials. */
  if (want_g) {
    const m2pt_gemm_matrix mg = {gbuf, 0, l->in, 0};
    M2PT_TRY(m2pt_gemm_sgemm(ctx, M2PT_TRANS, M2PT_NO_TRANS, l->out, l->in, rows, 1.0f, &mdy, &mx,
                             0.0f, &mg, 1));
    M2PT_TRY(m2pt_op_linear_grad_weight(
        ctx, gbuf, n, out[G_DW] ? out[G_DW]->buffer : NULL, out[G_DW] && add,
        out[G_DWAUX] ? out[G_DWAUX]->buffer : NULL, out[G_DWAUX] ? mode : M2PT_GRAD_SKIP,
        out[G_DSCALE] ? l->w_aux : NULL, sums, l->scale));
  }

  /* db = Σ_rows dY, db_aux = λ·db, and the column sums dλ's b_aux term reads. */
  M2PT_TRY(m2pt_op_linear_grad_bias(ctx, dy->buffer, rows, l->out,
                                    out[G_DB] ? out[G_DB]->buffer : NULL,
                                    out[G_DB] ? mode : M2PT_GRAD_SKIP,
                                    out[G_DBAUX] ? out[G_DBAUX]->buffer : NULL,
                                    out[G_DBAUX] ? mode : M2PT_GRAD_SKIP,
                                    bias_term ? sums : NULL, partials, l->scale));

  /* dλ = Σ G ⊙ W_aux + Σ db ⊙ b_aux: ∂/∂λ of Σ dY ⊙ (X·(W + λW_aux)ᵀ + b + λb_aux). */
  if (out[G_DSCALE])
    M2PT_TRY(m2pt_op_linear_grad_scale(ctx, sums, partials, sums, partials, l->b_aux,
                                       bias_term ? l->out : 0, out[G_DSCALE]->buffer, add));
  return M2PT_OK;
}

m2pt_status m2pt_linear_merge(m2pt_linear *l)
{
  M2PT_REQUIRE(NULL, l != NULL, "m2pt_linear_merge: layer is NULL");
  if (!(l->flags & M2PT_LINEAR_PATHWAY))
    return M2PT_OK;
  /* The merged weight is the forward's effective weight, bit for bit. */
  M2PT_TRY(refresh_effective(l));
  m2pt_buffer_release(l->ctx, l->w, weight_bytes(l));
  l->w = l->w_eff;
  l->w_eff = NULL;
  m2pt_buffer_release(l->ctx, l->w_aux, weight_bytes(l));
  l->w_aux = NULL;
  if (l->flags & M2PT_LINEAR_PATHWAY_BIAS) {
    m2pt_buffer_release(l->ctx, l->b, bias_bytes(l));
    l->b = l->b_eff;
    l->b_eff = NULL;
    m2pt_buffer_release(l->ctx, l->b_aux, bias_bytes(l));
    l->b_aux = NULL;
  }
  l->flags &= ~(M2PT_LINEAR_PATHWAY | M2PT_LINEAR_PATHWAY_BIAS);
  l->scale = 0.0f;
  l->merged = 1;
  stale(l);
  return M2PT_OK;
}

m2pt_status m2pt_linear_add_pathway(m2pt_linear *l)
{
  if (l->flags & M2PT_LINEAR_PATHWAY)
    return M2PT_OK;
  M2PT_TRY(m2pt_buffer_create(l->ctx, weight_bytes(l), 1, &l->w_aux));
  l->flags |= M2PT_LINEAR_PATHWAY;
  l->scale = 0.0f;
  stale(l);
  return M2PT_OK;
}

void m2pt_linear_drop_pathway(m2pt_linear *l)
{
  if (!(l->flags & M2PT_LINEAR_PATHWAY) || (l->flags & M2PT_LINEAR_PATHWAY_BIAS))
    return;
  m2pt_buffer_release(l->ctx, l->w_aux, weight_bytes(l));
  m2pt_buffer_release(l->ctx, l->w_eff, weight_bytes(l));
  l->w_aux = l->w_eff = NULL;
  l->flags &= ~M2PT_LINEAR_PATHWAY;
  l->scale = 0.0f;
  stale(l);
}

int m2pt_linear_is_merged(const m2pt_linear *l)
{
  return l ? l->merged : 0;
}

unsigned m2pt_linear_flags(const m2pt_linear *l)
{
  return l->flags;
}

int m2pt_linear_has_pathway(const m2pt_linear *l)
{
  return l && (l->flags & M2PT_LINEAR_PATHWAY) ? 1 : 0;
}

m2pt_context *m2pt_linear_context(const m2pt_linear *l)
{
  return l ? l->ctx : NULL;
}

cl_mem m2pt_linear_param_buffer(const m2pt_linear *l, int field)
{
  switch (field) {
  case 0:
    return l->w;
  case 1:
    return l->b;
  case 2:
    return l->w_aux;
  default:
    return l->b_aux;
  }
}

void m2pt_linear_params_changed(m2pt_linear *l)
{
  stale(l);
}
