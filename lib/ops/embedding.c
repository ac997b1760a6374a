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

m2pt_status m2pt_op_tanh_backward(m2pt_context *ctx, cl_mem y, cl_mem dy, size_t n)
{
  const cl_ulong nu = n;
  const m2pt_kernel_arg args[] = {M2PT_ARG(y), M2PT_ARG(dy), M2PT_ARG(nu)};
  const size_t global[1] = {n};
  return m2pt_run_kernel(ctx, &m2pt_cl_embedding, "", "m2pt_tanh_backward", args, 3, 1, global,
                         NULL);
}

m2pt_status m2pt_op_scatter_rows(m2pt_context *ctx, cl_mem src, cl_mem index, size_t offsets,
                                 size_t list, size_t table_rows, size_t dim, cl_mem dtable)
{
  const cl_uint o = (cl_uint)offsets, l = (cl_uint)list, d = (cl_uint)dim,
                v = (cl_uint)table_rows;
  const m2pt_kernel_arg args[] = {M2PT_ARG(src), M2PT_ARG(index), M2PT_ARG(dtable),
                                  M2PT_ARG(o),   M2PT_ARG(l),     M2PT_ARG(d),
                                  M2PT_ARG(v)};
  const size_t global[2] = {dim, table_rows};
  return m2pt_run_kernel(ctx, &m2pt_cl_embedding, "", "m2pt_scatter_rows", args, 7, 2, global,
                         NULL);
}

m2pt_status m2pt_op_batch_sum(m2pt_context *ctx, cl_mem dy, size_t first, size_t count,
                              size_t batch, size_t tokens, size_t dim, cl_mem out)
{
  const cl_uint f = (cl_uint)first, c = (cl_uint)count, t = (cl_uint)tokens, d = (cl_uint)dim,
                b = (cl_uint)batch;
  const m2pt_kernel_arg args[] = {M2PT_ARG(dy), M2PT_ARG(out), M2PT_ARG(f), M2PT_ARG(c),
                                  M2PT_ARG(t),  M2PT_ARG(d),   M2PT_ARG(b)};
  const size_t global[2] = {dim, count};
  return m2pt_run_kernel(ctx, &m2pt_cl_embedding, "", "m2pt_batch_sum", args, 7, 2, global,
                         NULL);
}

m2pt_status m2pt_op_patch_embed_backward(m2pt_context *ctx, cl_mem pixels, cl_mem weight,
                                         size_t prefix, cl_mem dy, const m2pt_patch_shape *s,
                                         cl_mem dpixels, cl_mem dweight, cl_mem dbias,
                                         cl_mem dcls, cl_mem dpos)
{
  const size_t gh = s->height / s->patch, gw = s->width / s->patch, grid = gh * gw;
  const size_t kdim = s->channels * s->patch * s->patch, prows = s->batch * grid;
  const size_t n = grid + prefix;
  if (dcls)
    M2PT_TRY(m2pt_op_batch_sum(ctx, dy, 0, 1, s->batch, n, s->dim, dcls));
  if (dpos)
    M2PT_TRY(m2pt_op_batch_sum(ctx, dy, 0, n, s->batch, n, s->dim, dpos));
  if (!dweight && !dbias && !dpixels)
    return M2PT_OK;
  /* The patch rows of dy as the forward's GEMM output [B·G][D]: without a
   * class token that is dy itself. */
  cl_mem dpatch = dy;
  const cl_uint c = (cl_uint)s->channels, h = (cl_uint)s->height, w = (cl_uint)s->width,
                p = (cl_uint)s->patch, gwu = (cl_uint)gw, g = (cl_uint)grid, r = (cl_uint)prows,
                d = (cl_uint)s->dim, pre = (cl_uint)prefix;
  if (prefix) {
    M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_PATCH_OUT, prows * s->dim * sizeof(float), &dpatch));
    const m2pt_kernel_arg rows_args[] = {M2PT_ARG(dy), M2PT_ARG(dpatch), M2PT_ARG(pre),
                                         M2PT_ARG(g),  M2PT_ARG(d),      M2PT_ARG(r)};
    const size_t g0[2] = {s->dim, prows};
    M2PT_TRY(m2pt_run_kernel(ctx, &m2pt_cl_embedding, "", "m2pt_patch_rows", rows_args, 6, 2,
                             g0, NULL));
  }
  if (dbias)
    M2PT_TRY(m2pt_op_column_sums(ctx, dpatch, NULL, NULL, NULL, prows, s->dim, dbias, NULL));
  if (!dweight && !dpixels)
    return M2PT_OK;
  cl_mem patches;
  M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_PATCHES, prows * kdim * sizeof(float), &patches));
  const m2pt_kernel_arg geo[] = {M2PT_ARG(pixels), M2PT_ARG(patches), M2PT_ARG(c),
                                 M2PT_ARG(h),      M2PT_ARG(w),       M2PT_ARG(p),
                                 M2PT_ARG(gwu),    M2PT_ARG(g),       M2PT_ARG(r)};
  const size_t g1[2] = {kdim, prows};
  const m2pt_gemm_matrix mp = {patches, 0, kdim, 0}, md = {dpatch, 0, s->dim, 0};
  if (dweight) {
    M2PT_TRY(m2pt_run_kernel(ctx, &m2pt_cl_embedding, "", "m2pt_im2col", geo, 9, 2, g1, NULL));
    /* dW [D][C·P·P] = dPatchᵀ · patches. */
    const m2pt_gemm_matrix mw = {dweight, 0, kdim, 0};
    M2PT_TRY(m2pt_gemm_sgemm(ctx, M2PT_TRANS, M2PT_NO_TRANS, s->dim, kdim, prows, 1.0f, &md, &mp,
                             0.0f, &mw, 1));
  }
  if (!dpixels)
    return M2PT_OK;
  /* dPatches = dPatch · W, then back to image layout; the queue is in order,
   * so the im2col above is consumed before this overwrites the slot. */
  const m2pt_gemm_matrix mw = {weight, 0, kdim, 0};
  M2PT_TRY(m2pt_gemm_sgemm(ctx, M2PT_NO_TRANS, M2PT_NO_TRANS, prows, kdim, s->dim, 1.0f, &md, &mw,
                           0.0f, &mp, 1));
  const m2pt_kernel_arg col[] = {M2PT_ARG(patches), M2PT_ARG(dpixels), M2PT_ARG(c),
                                 M2PT_ARG(h),       M2PT_ARG(w),       M2PT_ARG(p),
                                 M2PT_ARG(gwu),     M2PT_ARG(g),       M2PT_ARG(r)};
  return m2pt_run_kernel(ctx, &m2pt_cl_embedding, "", "m2pt_col2im", col, 9, 2, g1, NULL);
}

m2pt_status m2pt_op_pool_backward(m2pt_context *ctx, cl_mem x, cl_mem mask, int token,
                                  size_t batch, size_t tokens, size_t dim, size_t first,
                                  int normalize, cl_mem dy, cl_mem dx)
{
  cl_mem g = dy;
  if (normalize) {
    /* The Jacobian needs the pooled rows before normalization: recomputed
     * (B·D, cheap) rather than saved by the forward. */
    cl_mem u;
    M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_POOL, batch * dim * sizeof(float), &u));
    M2PT_TRY(m2pt_workspace_get(ctx, M2PT_WS_GRAD, batch * dim * sizeof(float), &g));
    M2PT_TRY(m2pt_op_pool(ctx, x, mask, token, batch, tokens, dim, first, 0, u));
    const cl_uint d = (cl_uint)dim, r = (cl_uint)batch;
    const m2pt_kernel_arg args[] = {M2PT_ARG(u), M2PT_ARG(dy), M2PT_ARG(g), M2PT_ARG(d),
                                    M2PT_ARG(r)};
    const size_t global[1] = {batch};
    M2PT_TRY(m2pt_run_kernel(ctx, &m2pt_cl_embedding, "", "m2pt_l2_normalize_backward", args, 5,
                             1, global, NULL));
  }
  char options[40];
  snprintf(options, sizeof options, "-DTOKEN=%d -DHAS_MASK=%d", token != 0, mask != NULL);
  const cl_uint t = (cl_uint)tokens, d = (cl_uint)dim, b = (cl_uint)batch, f = (cl_uint)first;
  const m2pt_kernel_arg args[] = {M2PT_ARG(g), M2PT_ARG(mask), M2PT_ARG(dx), M2PT_ARG(t),
                                  M2PT_ARG(d), M2PT_ARG(b),    M2PT_ARG(f)};
  const size_t global[2] = {dim, batch * tokens};
  return m2pt_run_kernel(ctx, &m2pt_cl_embedding, options, "m2pt_pool_backward", args, 7, 2,
                         global, NULL);
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

m2pt_status m2pt_host_ids_upload(m2pt_context *ctx, const m2pt_host_matrix *ids,
                                 const m2pt_host_matrix *types, size_t vocab, size_t ntypes,
                                 const char *fn, cl_mem *buf)
{
  const size_t rows = ids->rows * ids->cols, nids = ntypes ? 2 * rows : rows;
  int32_t *host = calloc(nids, sizeof *host);
  if (!host)
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  m2pt_status s = m2pt_host_ids_check(ctx, ids, vocab, fn, "ids", "the vocabulary size", host);
  if (s == M2PT_OK && types)
    s = m2pt_host_ids_check(ctx, types, ntypes, fn, "token_types", "the number of token types",
                            host + rows);
  if (s == M2PT_OK)
    s = m2pt_workspace_upload(ctx, M2PT_WS_IDS, host, nids * sizeof *host,
                              "uploading the token ids", buf);
  free(host);
  return s;
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

  cl_mem buf = NULL;
  M2PT_TRY(m2pt_host_ids_upload(ctx, ids, types, word->shape[0],
                                token_type ? token_type->shape[0] : 0, fn, &buf));
  M2PT_TRY(m2pt_op_bert_gather(ctx, buf, word->buffer, position->buffer,
                               token_type ? token_type->buffer : NULL, rows, n, dim, y->buffer));
  return m2pt_op_layer_norm(ctx, y->buffer, ln_weight->buffer, ln_bias ? ln_bias->buffer : NULL,
                            eps, rows, dim, y->buffer);
}

/* The patch embedding's shapes from pixels [B][C][H][W] and a Conv2d weight
 * [D][C][P][P] (H and W multiples of P), for the forward and the backward. */
static m2pt_status patch_shape_of(m2pt_context *ctx, const m2pt_tensor *pixels,
                                  const m2pt_tensor *weight, const char *fn, m2pt_patch_shape *s)
{
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
  *s = (m2pt_patch_shape){pixels->shape[0], c, pixels->shape[2], pixels->shape[3], p, dim};
  return M2PT_OK;
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
  m2pt_patch_shape s;
  M2PT_TRY(patch_shape_of(ctx, pixels, weight, fn, &s));
  const size_t dim = s.dim, p = s.patch;
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

/* The checks m2pt_pool and its backward share: x [B][N][D], the pooled
 * tensor `pooled` (y or dy) [B][D], the kind, first < N, the mask [B][N]. */
static m2pt_status check_pool(m2pt_context *ctx, const char *fn, const m2pt_tensor *x,
                              const m2pt_tensor *mask, m2pt_pool_kind kind, size_t first,
                              const m2pt_tensor *pooled, const char *pooled_name)
{
  char name[64];
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  snprintf(name, sizeof name, "%s: x", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, x, name));
  snprintf(name, sizeof name, "%s: %s", fn, pooled_name);
  M2PT_TRY(m2pt_check_tensor(ctx, pooled, name));
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
    snprintf(name, sizeof name, "%s: mask", fn);
    M2PT_TRY(m2pt_check_tensor(ctx, mask, name));
    const size_t ms[2] = {b, n};
    M2PT_TRY(check_dims(ctx, mask, 2, ms, fn, "mask"));
  }
  const size_t ps[2] = {b, d};
  return check_dims(ctx, pooled, 2, ps, fn, pooled_name);
}

m2pt_status m2pt_pool(m2pt_context *ctx, const m2pt_tensor *x, const m2pt_tensor *mask,
                      m2pt_pool_kind kind, size_t first, int normalize, m2pt_tensor *y)
{
  M2PT_TRY(check_pool(ctx, "m2pt_pool", x, mask, kind, first, y, "y"));
  return m2pt_op_pool(ctx, x->buffer, mask ? mask->buffer : NULL, kind == M2PT_POOL_TOKEN,
                      x->shape[0], x->shape[1], x->shape[2], first, normalize, y->buffer);
}

/* Appends to `index` the rows-by-key index of keys[0 … rows) over
 * table_rows keys: offsets [table_rows + 1], then the row numbers grouped by
 * key, ascending within each (a stable counting sort). */
static void build_index(const int32_t *keys, size_t rows, size_t table_rows, int32_t *index)
{
  int32_t *offsets = index, *list = index + table_rows + 1;
  memset(offsets, 0, (table_rows + 1) * sizeof *offsets);
  for (size_t r = 0; r < rows; r++)
    offsets[keys[r] + 1]++;
  for (size_t v = 0; v < table_rows; v++)
    offsets[v + 1] += offsets[v];
  for (size_t r = 0; r < rows; r++) {
    /* offsets[k] is key k's next free place; after the fill it is key k's
     * end, so shifting by one gives the starts with no second array. */
    list[offsets[keys[r]]++] = (int32_t)r;
  }
  for (size_t v = table_rows; v > 0; v--)
    offsets[v] = offsets[v - 1];
  offsets[0] = 0;
}

m2pt_status m2pt_bert_embeddings_backward(m2pt_context *ctx, const m2pt_host_matrix *ids,
                                          const m2pt_host_matrix *types, const m2pt_tensor *dsum,
                                          m2pt_tensor *dword, m2pt_tensor *dposition,
                                          m2pt_tensor *dtoken_type)
{
  static const char fn[] = "m2pt_bert_embeddings_backward";
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  M2PT_REQUIRE(ctx, ids != NULL, "%s: ids is NULL", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, dsum, "m2pt_bert_embeddings_backward: dsum"));
  M2PT_REQUIRE(ctx, ids->rows > 0 && ids->cols > 0 && ids->rows * ids->cols <= INT32_MAX,
               "%s: ids are [%zu][%zu]", fn, ids->rows, ids->cols);
  char sd[96];
  if (dsum->ndim != 3 || dsum->shape[0] != ids->rows || dsum->shape[1] != ids->cols)
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: dsum %s must be [%zu][%zu][D] as ids", fn,
                     m2pt_shape_string(dsum, sd, sizeof sd), ids->rows, ids->cols);
  const size_t b = ids->rows, n = ids->cols, dim = dsum->shape[2], rows = b * n;
  M2PT_REQUIRE(ctx, dim <= UINT32_MAX, "%s: too large", fn);
  m2pt_tensor *out[3] = {dword, dposition, dtoken_type};
  static const char *const names[3] = {"dword", "dposition", "dtoken_type"};
  for (int i = 0; i < 3; i++) {
    if (!out[i])
      continue;
    char msg[64];
    snprintf(msg, sizeof msg, "%s: %s", fn, names[i]);
    M2PT_TRY(m2pt_check_tensor(ctx, out[i], msg));
    if (out[i]->ndim != 2 || out[i]->shape[1] != dim || out[i]->shape[0] > INT32_MAX - 1 ||
        (i == 1 && out[i]->shape[0] < n))
      return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: %s %s must be [rows][%zu]%s", fn, names[i],
                       m2pt_shape_string(out[i], sd, sizeof sd), dim,
                       i == 1 ? " with rows >= the tokens" : "");
    M2PT_REQUIRE(ctx, out[i]->buffer != dsum->buffer, "%s: %s must not be dsum", fn, names[i]);
  }
  if (types && dtoken_type && (types->rows != b || types->cols != n))
    return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: token types are [%zu][%zu], ids [%zu][%zu]", fn,
                     types->rows, types->cols, b, n);
  /* keys: ids, positions, types; then one index per asked table. */
  size_t total = 0;
  for (int i = 0; i < 3; i++)
    if (out[i])
      total += out[i]->shape[0] + 1 + rows;
  if (total == 0)
    return M2PT_OK;
  M2PT_REQUIRE(ctx, total <= INT32_MAX, "%s: tables too large", fn);
  int32_t *keys = calloc(3 * rows, sizeof *keys), *index = malloc(total * sizeof *index);
  m2pt_status s = M2PT_OK;
  if (!keys || !index)
    s = m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  if (s == M2PT_OK && dword)
    s = m2pt_host_ids_check(ctx, ids, dword->shape[0], fn, "ids", "dword's rows", keys);
  if (s == M2PT_OK && dtoken_type && types)
    s = m2pt_host_ids_check(ctx, types, dtoken_type->shape[0], fn, "token_types",
                            "dtoken_type's rows", keys + 2 * rows);
  size_t at[3] = {0};
  if (s == M2PT_OK) {
    for (size_t r = 0; r < rows; r++)
      keys[rows + r] = (int32_t)(r % n);
    size_t used = 0;
    for (int i = 0; i < 3; i++)
      if (out[i]) {
        at[i] = used;
        build_index(keys + (size_t)i * rows, rows, out[i]->shape[0], index + used);
        used += out[i]->shape[0] + 1 + rows;
      }
  }
  cl_mem buf = NULL;
  if (s == M2PT_OK)
    s = m2pt_workspace_upload(ctx, M2PT_WS_IDS, index, total * sizeof *index,
                              "m2pt_bert_embeddings_backward: uploading the index", &buf);
  free(keys);
  free(index);
  M2PT_TRY(s);
  for (int i = 0; i < 3; i++)
    if (out[i])
      M2PT_TRY(m2pt_op_scatter_rows(ctx, dsum->buffer, buf, at[i], at[i] + out[i]->shape[0] + 1,
                                    out[i]->shape[0], dim, out[i]->buffer));
  return M2PT_OK;
}

m2pt_status m2pt_patch_embed_backward(m2pt_context *ctx, const m2pt_tensor *pixels,
                                      const m2pt_tensor *weight, int has_cls,
                                      const m2pt_tensor *dy, m2pt_tensor *dpixels,
                                      m2pt_tensor *dweight, m2pt_tensor *dbias, m2pt_tensor *dcls,
                                      m2pt_tensor *dpos)
{
  static const char fn[] = "m2pt_patch_embed_backward";
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, pixels, "m2pt_patch_embed_backward: pixels"));
  M2PT_TRY(m2pt_check_tensor(ctx, weight, "m2pt_patch_embed_backward: weight"));
  M2PT_TRY(m2pt_check_tensor(ctx, dy, "m2pt_patch_embed_backward: dy"));
  M2PT_REQUIRE(ctx, has_cls || !dcls, "%s: dcls without a class token (has_cls 0)", fn);
  m2pt_patch_shape s;
  M2PT_TRY(patch_shape_of(ctx, pixels, weight, fn, &s));
  const size_t dim = s.dim, c = s.channels, p = s.patch;
  const size_t prefix = has_cls != 0, n = (s.height / p) * (s.width / p) + prefix;
  const size_t yshape[3] = {s.batch, n, dim};
  M2PT_TRY(check_dims(ctx, dy, 3, yshape, fn, "dy"));
  M2PT_REQUIRE(ctx, s.batch * n <= UINT32_MAX && c * p * p <= UINT32_MAX, "%s: too large", fn);
  m2pt_tensor *out[5] = {dpixels, dweight, dbias, dcls, dpos};
  static const char *const names[5] = {"dpixels", "dweight", "dbias", "dcls", "dpos"};
  for (int i = 0; i < 5; i++) {
    if (!out[i])
      continue;
    char msg[64];
    snprintf(msg, sizeof msg, "%s: %s", fn, names[i]);
    M2PT_TRY(m2pt_check_tensor(ctx, out[i], msg));
    M2PT_REQUIRE(ctx, out[i]->buffer != dy->buffer, "%s: %s must not be dy", fn, names[i]);
  }
  if (dpixels)
    M2PT_TRY(check_dims(ctx, dpixels, 4, pixels->shape, fn, "dpixels"));
  if (dweight)
    M2PT_TRY(check_dims(ctx, dweight, 4, weight->shape, fn, "dweight"));
  if (dbias)
    M2PT_TRY(m2pt_check_vector(ctx, dbias, dim, fn, "dbias"));
  if (dcls)
    M2PT_TRY(m2pt_check_vector(ctx, dcls, dim, fn, "dcls"));
  if (dpos)
    M2PT_TRY(m2pt_check_vector(ctx, dpos, n * dim, fn, "dpos (tokens × dim)"));
  return m2pt_op_patch_embed_backward(
      ctx, pixels->buffer, weight->buffer, prefix, dy->buffer, &s, dpixels ? dpixels->buffer : NULL,
      dweight ? dweight->buffer : NULL, dbias ? dbias->buffer : NULL,
      dcls ? dcls->buffer : NULL, dpos ? dpos->buffer : NULL);
}

m2pt_status m2pt_pool_backward(m2pt_context *ctx, const m2pt_tensor *x, const m2pt_tensor *mask,
                               m2pt_pool_kind kind, size_t first, int normalize,
                               const m2pt_tensor *dy, m2pt_tensor *dx)
{
  static const char fn[] = "m2pt_pool_backward";
  M2PT_TRY(check_pool(ctx, fn, x, mask, kind, first, dy, "dy"));
  M2PT_TRY(m2pt_check_tensor(ctx, dx, "m2pt_pool_backward: dx"));
  const size_t b = x->shape[0], n = x->shape[1], d = x->shape[2];
  M2PT_REQUIRE(ctx, b * n <= UINT32_MAX, "%s: too large", fn);
  M2PT_TRY(check_dims(ctx, dx, 3, x->shape, fn, "dx"));
  M2PT_REQUIRE(ctx, dx->buffer != dy->buffer && dx->buffer != (mask ? mask->buffer : NULL),
               "%s: dx must not be dy or mask", fn);
  return m2pt_op_pool_backward(ctx, x->buffer, mask ? mask->buffer : NULL,
                               kind == M2PT_POOL_TOKEN, b, n, d, first, normalize, dy->buffer,
                               dx->buffer);
}
