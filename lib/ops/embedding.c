/* BERT's embeddings, ViT's patch embedding and pooling (cl/embedding.cl):
 * host checks of ids and masks, raw-buffer ops, and the public wrappers. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block_ops.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "core/program.h"
#include "core/workspace.h"
#include "embedding_ops.h"
#include "gemm/backend.h"
#include "tensor_checks.h"

/* Element i of an I32, I64 or F32 host matrix, widened. */
static double host_value(const m2pt_host_matrix *m, size_t i)
{
  if (m->dtype == M2PT_DTYPE_I32)
    return (double)((const int32_t *)m->data)[i];
  if (m->dtype == M2PT_DTYPE_I64)
    return (double)((const int64_t *)m->data)[i];
  return (double)((const float *)m->data)[i];
}

m2pt_status m2pt_host_ids_check(const m2pt_context *ctx, const m2pt_host_matrix *ids,
                                size_t limit, const char *fn, const char *what,
                                const char *table, int32_t *dst)
{
  M2PT_REQUIRE(ctx, ids->data != NULL, "%s: %s data is NULL", fn, what);
  M2PT_REQUIRE(ctx, ids->dtype == M2PT_DTYPE_I32 || ids->dtype == M2PT_DTYPE_I64,
               "%s: %s must be int32 or int64 (dtype %d)", fn, what, (int)ids->dtype);
  for (size_t i = 0; i < ids->rows * ids->cols; i++) {
    /* Compared as integers: an int64 id such as 2^53 + 1 must not round
     * into range through a double. */
    const int64_t v = ids->dtype == M2PT_DTYPE_I32 ? ((const int32_t *)ids->data)[i]
                                                   : ((const int64_t *)ids->data)[i];
    if (v < 0 || (uint64_t)v >= (uint64_t)limit)
      return m2pt_fail(ctx, M2PT_ERR_INVALID_ARGUMENT,
                       "%s: %s[%zu][%zu] = %lld is out of range [0, %zu) (%s)", fn, what,
                       i / ids->cols, i % ids->cols, (long long)v, limit, table);
    dst[i] = (int32_t)v;
  }
  return M2PT_OK;
}

m2pt_status m2pt_host_mask_check(const m2pt_context *ctx, const m2pt_host_matrix *mask,
                                 size_t rows, size_t cols, const char *fn, float *dst)
{
  M2PT_REQUIRE(ctx, mask->data != NULL, "%s: mask data is NULL", fn);
  M2PT_REQUIRE(ctx,
               mask->dtype == M2PT_DTYPE_I32 || mask->dtype == M2PT_DTYPE_I64 ||
                   mask->dtype == M2PT_DTYPE_F32,
               "%s: the mask must be int32, int64 or float32 (dtype %d)", fn, (int)mask->dtype);
  if (mask->rows != rows || mask->cols != cols)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: the mask is [%zu][%zu], the input [%zu][%zu]", fn,
                     mask->rows, mask->cols, rows, cols);
  for (size_t i = 0; i < rows * cols; i++) {
    const double v = host_value(mask, i);
    if (v != 0.0 && v != 1.0)
      return m2pt_fail(ctx, M2PT_ERR_INVALID_ARGUMENT,
                       "%s: mask[%zu][%zu] = %g; a mask holds 1 for tokens and 0 for padding",
                       fn, i / cols, i % cols, v);
    dst[i] = (float)v;
  }
  return M2PT_OK;
}

m2pt_status m2pt_op_bert_gather(m2pt_context *ctx, cl_mem ids_buf, cl_mem word, cl_mem pos,
                                cl_mem type, size_t rows, size_t tokens, size_t dim, cl_mem y)
{
  char options[32];
  snprintf(options, sizeof options, "-DHAS_TYPES=%d", type != NULL);
  const cl_uint t = (cl_uint)tokens, d = (cl_uint)dim, r = (cl_uint)rows;
  const m2pt_kernel_arg args[] = {M2PT_ARG(ids_buf), M2PT_ARG(word), M2PT_ARG(pos),
                                  M2PT_ARG(type),    M2PT_ARG(y),    M2PT_ARG(t),
                                  M2PT_ARG(d),       M2PT_ARG(r)};
  const size_t global[2] = {dim, rows};
  return m2pt_run_kernel(ctx, &m2pt_cl_embedding, options, "m2pt_bert_embed", args, 8, 2,
                         global, NULL);
}

m2pt_status m2pt_op_patch_embed(m2pt_context *ctx, cl_mem pixels, cl_mem weight, cl_mem bias,
                                cl_mem cls, cl_mem pos, const m2pt_patch_shape *s, cl_mem y)
{
  const size_t gh = s->height / s->patch, gw = s->width / s->patch, grid = gh * gw;
  const size_t kdim = s->channels * s->patch * s->patch, prows = s->batch * grid;
  cl_mem patches, out;
  M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_PATCHES, prows * kdim * sizeof(float), &patches));
  M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_PATCH_OUT, prows * s->dim * sizeof(float), &out));
  const cl_uint c = (cl_uint)s->channels, h = (cl_uint)s->height, w = (cl_uint)s->width,
                p = (cl_uint)s->patch, gwu = (cl_uint)gw, g = (cl_uint)grid, r = (cl_uint)prows;
  const m2pt_kernel_arg im2col[] = {M2PT_ARG(pixels), M2PT_ARG(patches), M2PT_ARG(c),
                                    M2PT_ARG(h),      M2PT_ARG(w),       M2PT_ARG(p),
                                    M2PT_ARG(gwu),    M2PT_ARG(g),       M2PT_ARG(r)};
  const size_t g1[2] = {kdim, prows};
  M2PT_TRY(m2pt_run_kernel(ctx, &m2pt_cl_embedding, "", "m2pt_im2col", im2col, 9, 2, g1, NULL));
  /* out = patches · Wᵀ: the convolution, W seen as [D][C·P·P]. */
  const m2pt_gemm_matrix a = {patches, 0, kdim, 0}, b = {weight, 0, kdim, 0},
                         cm = {out, 0, s->dim, 0};
  M2PT_TRY(m2pt_gemm_sgemm(ctx, M2PT_NO_TRANS, M2PT_TRANS, prows, s->dim, kdim, 1.0f, &a, &b,
                           0.0f, &cm, 1));
  char options[64];
  snprintf(options, sizeof options, "-DPREFIX=%d -DHAS_BIAS=%d -DHAS_POS=%d", cls != NULL,
           bias != NULL, pos != NULL);
  const size_t n = grid + (cls != NULL);
  const cl_uint d = (cl_uint)s->dim, rows = (cl_uint)(s->batch * n);
  const m2pt_kernel_arg asm_args[] = {M2PT_ARG(out), M2PT_ARG(bias), M2PT_ARG(cls),
                                      M2PT_ARG(pos), M2PT_ARG(y),    M2PT_ARG(g),
                                      M2PT_ARG(d),   M2PT_ARG(rows)};
  const size_t g2[2] = {s->dim, s->batch * n};
  return m2pt_run_kernel(ctx, &m2pt_cl_embedding, options, "m2pt_patch_assemble", asm_args, 8,
                         2, g2, NULL);
}

m2pt_status m2pt_op_pool(m2pt_context *ctx, cl_mem x, cl_mem mask, int token, size_t batch,
                         size_t tokens, size_t dim, size_t first, int normalize, cl_mem y)
{
  char options[40];
  snprintf(options, sizeof options, "-DTOKEN=%d -DHAS_MASK=%d", token != 0, mask != NULL);
  const cl_uint t = (cl_uint)tokens, d = (cl_uint)dim, b = (cl_uint)batch, f = (cl_uint)first;
  const m2pt_kernel_arg args[] = {M2PT_ARG(x), M2PT_ARG(mask), M2PT_ARG(y), M2PT_ARG(t),
                                  M2PT_ARG(d), M2PT_ARG(b),    M2PT_ARG(f)};
  const size_t global[2] = {dim, batch};
  M2PT_TRY(
      m2pt_run_kernel(ctx, &m2pt_cl_embedding, options, "m2pt_pool", args, 7, 2, global, NULL));
  return normalize ? m2pt_op_l2_normalize(ctx, y, batch, dim) : M2PT_OK;
}

m2pt_status m2pt_op_l2_normalize(m2pt_context *ctx, cl_mem x, size_t rows, size_t dim)
{
  const cl_uint d = (cl_uint)dim, r = (cl_uint)rows;
  const m2pt_kernel_arg args[] = {M2PT_ARG(x), M2PT_ARG(d), M2PT_ARG(r)};
  const size_t global[1] = {rows};
  return m2pt_run_kernel(ctx, &m2pt_cl_embedding, "", "m2pt_l2_normalize", args, 3, 1, global,
                         NULL);
}

m2pt_status m2pt_op_tanh(m2pt_context *ctx, cl_mem x, size_t n)
{
  const cl_ulong nu = n;
  const m2pt_kernel_arg args[] = {M2PT_ARG(x), M2PT_ARG(nu)};
  const size_t global[1] = {n};
  return m2pt_run_kernel(ctx, &m2pt_cl_embedding, "", "m2pt_tanh", args, 2, 1, global, NULL);
}

/* ---- public wrappers ---- */

static m2pt_status check_dims(const m2pt_context *ctx, const m2pt_tensor *t, size_t ndim,
                              const size_t *shape, const char *fn, const char *name)
{
  int same = t->ndim == ndim;
  for (size_t i = 0; same && i < ndim; i++)
    same = t->shape[i] == shape[i];
  if (same)
    return M2PT_OK;
  char got[96], want[96] = "";
  for (size_t i = 0, used = 0; i < ndim && used < sizeof want; i++)
    used += (size_t)snprintf(want + used, sizeof want - used, "[%zu]", shape[i]);
  return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: %s is %s, expected %s", fn, name,
                   m2pt_shape_string(t, got, sizeof got), want);
}

m2pt_status m2pt_bert_embeddings(m2pt_context *ctx, const m2pt_host_matrix *ids,
                                 const m2pt_host_matrix *types, const m2pt_tensor *word,
                                 const m2pt_tensor *position, const m2pt_tensor *token_type,
                                 const m2pt_tensor *ln_weight, const m2pt_tensor *ln_bias,
                                 float eps, m2pt_tensor *y)
{
  static const char fn[] = "m2pt_bert_embeddings";
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  M2PT_REQUIRE(ctx, ids != NULL, "%s: ids is NULL", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, word, "m2pt_bert_embeddings: word"));
  M2PT_TRY(m2pt_check_tensor(ctx, position, "m2pt_bert_embeddings: position"));
  M2PT_TRY(m2pt_check_tensor(ctx, ln_weight, "m2pt_bert_embeddings: ln_weight"));
  M2PT_TRY(m2pt_check_tensor(ctx, y, "m2pt_bert_embeddings: y"));
  if (token_type)
    M2PT_TRY(m2pt_check_tensor(ctx, token_type, "m2pt_bert_embeddings: token_type"));
  if (ln_bias)
    M2PT_TRY(m2pt_check_tensor(ctx, ln_bias, "m2pt_bert_embeddings: ln_bias"));
  M2PT_REQUIRE(ctx, !types || token_type, "%s: token types given but no token_type table", fn);
  M2PT_REQUIRE(ctx, isfinite(eps) && eps >= 0.0f, "%s: eps = %g", fn, (double)eps);
  M2PT_REQUIRE(ctx, ids->rows > 0 && ids->cols > 0 && ids->rows * ids->cols <= INT32_MAX,
               "%s: ids are [%zu][%zu]", fn, ids->rows, ids->cols);
  M2PT_REQUIRE(ctx, word->ndim == 2, "%s: word must be [V][D]", fn);
  const size_t b = ids->rows, n = ids->cols, dim = word->shape[1], rows = b * n;
  M2PT_REQUIRE(ctx, word->shape[0] <= INT32_MAX && dim <= UINT32_MAX, "%s: table too large", fn);
  if (position->ndim != 2 || position->shape[1] != dim || position->shape[0] < n) {
    char sp[96];
    return m2pt_fail(ctx, M2PT_ERR_SHAPE,
                     "%s: position %s must be [P][%zu] with P >= %zu tokens", fn,
                     m2pt_shape_string(position, sp, sizeof sp), dim, n);
  }
  if (token_type) {
    const size_t shape[2] = {token_type->shape[0], dim};
    M2PT_TRY(check_dims(ctx, token_type, 2, shape, fn, "token_type"));
  }
  if (types && (types->rows != b || types->cols != n))
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: token types are [%zu][%zu], ids [%zu][%zu]", fn,
                     types->rows, types->cols, b, n);
  const size_t yshape[3] = {b, n, dim};
  M2PT_TRY(check_dims(ctx, y, 3, yshape, fn, "y"));
  M2PT_TRY(m2pt_check_vector(ctx, ln_weight, dim, fn, "ln_weight"));
  if (ln_bias)
    M2PT_TRY(m2pt_check_vector(ctx, ln_bias, dim, fn, "ln_bias"));

  const size_t nids = token_type ? 2 * rows : rows;
  int32_t *host = calloc(nids, sizeof *host);
  if (!host)
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  m2pt_status s =
      m2pt_host_ids_check(ctx, ids, word->shape[0], fn, "ids", "the vocabulary size", host);
  if (s == M2PT_OK && types)
    s = m2pt_host_ids_check(ctx, types, token_type->shape[0], fn, "token_types",
                            "the number of token types", host + rows);
  cl_mem buf = NULL;
  if (s == M2PT_OK)
    s = m2pt_workspace_get(ctx, M2PT_WS_IDS, nids * sizeof *host, &buf);
  if (s == M2PT_OK) {
    const cl_int err = clEnqueueWriteBuffer(ctx->queue, buf, CL_TRUE, 0, nids * sizeof *host,
                                            host, 0, NULL, NULL);
    if (err != CL_SUCCESS)
      s = m2pt_fail_cl(ctx, err, "m2pt_bert_embeddings: uploading the ids");
  }
  free(host);
  M2PT_TRY(s);
  M2PT_TRY(m2pt_op_bert_gather(ctx, buf, word->buffer, position->buffer,
                               token_type ? token_type->buffer : NULL, rows, n, dim, y->buffer));
  return m2pt_op_layer_norm(ctx, y->buffer, ln_weight->buffer, ln_bias ? ln_bias->buffer : NULL,
                            eps, rows, dim, y->buffer);
}

m2pt_status m2pt_patch_embed(m2pt_context *ctx, const m2pt_tensor *pixels,
                             const m2pt_tensor *weight, const m2pt_tensor *bias,
                             const m2pt_tensor *cls, const m2pt_tensor *pos, m2pt_tensor *y)
{
  static const char fn[] = "m2pt_patch_embed";
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, pixels, "m2pt_patch_embed: pixels"));
  M2PT_TRY(m2pt_check_tensor(ctx, weight, "m2pt_patch_embed: weight"));
  M2PT_TRY(m2pt_check_tensor(ctx, y, "m2pt_patch_embed: y"));
  if (bias)
    M2PT_TRY(m2pt_check_tensor(ctx, bias, "m2pt_patch_embed: bias"));
  if (cls)
    M2PT_TRY(m2pt_check_tensor(ctx, cls, "m2pt_patch_embed: cls"));
  if (pos)
    M2PT_TRY(m2pt_check_tensor(ctx, pos, "m2pt_patch_embed: pos"));
  char sp[96], sw[96];
  if (weight->ndim != 4 || weight->shape[2] != weight->shape[3])
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: weight %s must be [D][C][P][P]", fn,
                     m2pt_shape_string(weight, sw, sizeof sw));
  const size_t dim = weight->shape[0], c = weight->shape[1], p = weight->shape[2];
  if (pixels->ndim != 4 || pixels->shape[1] != c || pixels->shape[2] % p != 0 ||
      pixels->shape[3] % p != 0)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE,
                     "%s: pixels %s must be [B][%zu][H][W] with H and W multiples of the "
                     "patch size %zu",
                     fn, m2pt_shape_string(pixels, sp, sizeof sp), c, p);
  const m2pt_patch_shape s = {pixels->shape[0], c, pixels->shape[2], pixels->shape[3], p, dim};
  const size_t n = (s.height / p) * (s.width / p) + (cls != NULL);
  if (bias)
    M2PT_TRY(m2pt_check_vector(ctx, bias, dim, fn, "bias"));
  if (cls)
    M2PT_TRY(m2pt_check_vector(ctx, cls, dim, fn, "cls"));
  if (pos)
    M2PT_TRY(m2pt_check_vector(ctx, pos, n * dim, fn, "pos (tokens × dim)"));
  const size_t yshape[3] = {s.batch, n, dim};
  M2PT_TRY(check_dims(ctx, y, 3, yshape, fn, "y"));
  M2PT_REQUIRE(ctx, s.batch * n <= UINT32_MAX && s.channels * p * p <= UINT32_MAX,
               "%s: too large", fn);
  return m2pt_op_patch_embed(ctx, pixels->buffer, weight->buffer, bias ? bias->buffer : NULL,
                             cls ? cls->buffer : NULL, pos ? pos->buffer : NULL, &s, y->buffer);
}

m2pt_status m2pt_pool(m2pt_context *ctx, const m2pt_tensor *x, const m2pt_tensor *mask,
                      m2pt_pool_kind kind, size_t first, int normalize, m2pt_tensor *y)
{
  static const char fn[] = "m2pt_pool";
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, x, "m2pt_pool: x"));
  M2PT_TRY(m2pt_check_tensor(ctx, y, "m2pt_pool: y"));
  M2PT_REQUIRE(ctx, kind == M2PT_POOL_TOKEN || kind == M2PT_POOL_MEAN,
               "%s: kind %d is not M2PT_POOL_TOKEN or M2PT_POOL_MEAN", fn, (int)kind);
  char sx[96];
  if (x->ndim != 3)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: x %s must be [B][N][D]", fn,
                     m2pt_shape_string(x, sx, sizeof sx));
  const size_t b = x->shape[0], n = x->shape[1], d = x->shape[2];
  M2PT_REQUIRE(ctx, first < n, "%s: first token %zu of %zu", fn, first, n);
  M2PT_REQUIRE(ctx, n <= UINT32_MAX && d <= UINT32_MAX && b <= UINT32_MAX, "%s: too large", fn);
  if (mask) {
    M2PT_TRY(m2pt_check_tensor(ctx, mask, "m2pt_pool: mask"));
    const size_t ms[2] = {b, n};
    M2PT_TRY(check_dims(ctx, mask, 2, ms, fn, "mask"));
  }
  const size_t ys[2] = {b, d};
  M2PT_TRY(check_dims(ctx, y, 2, ys, fn, "y"));
  return m2pt_op_pool(ctx, x->buffer, mask ? mask->buffer : NULL, kind == M2PT_POOL_TOKEN, b, n,
                      d, first, normalize, y->buffer);
}
