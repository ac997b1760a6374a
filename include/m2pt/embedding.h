/* The ends of a whole model, as ops on device tensors: BERT's embeddings
 * (from token ids), ViT's patch embedding (from pixels), pooling and L2
 * normalization. Like the block's ops they are asynchronous and validate
 * every argument first: a rejected call changes no tensor. Scratch memory
 * comes from the context's workspace. */
#ifndef M2PT_EMBEDDING_H
#define M2PT_EMBEDDING_H

#include <stddef.h>

#include "io.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A [rows][cols] row-major array in host memory (token ids, token types,
 * attention masks), borrowed for the call. dtype is M2PT_DTYPE_I32 or
 * M2PT_DTYPE_I64 for ids and token types; masks also take M2PT_DTYPE_F32. */
typedef struct m2pt_host_matrix {
  const void *data;
  m2pt_dtype dtype;
  size_t rows, cols;
} m2pt_host_matrix;

/* y[b][n] = LayerNorm(word[ids[b][n]] + position[n] + token_type[types[b][n]])
 * (HF BertEmbeddings: position ids 0 … N−1, token types 0 when `types` is
 * NULL). ids and types are [B][N] host matrices, checked on the host before
 * anything is enqueued: a negative id or one past its table is
 * M2PT_ERR_INVALID_ARGUMENT naming the value and its [b][n]; no table is
 * ever read out of bounds. word is [V][D], position [P][D] with P ≥ N,
 * token_type [T][D] or NULL (no token-type embeddings; types must then be
 * NULL), ln_weight and ln_bias [D] (ln_bias may be NULL), y [B][N][D].
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, dtype, an id out of range, eps),
 * M2PT_ERR_SHAPE, M2PT_ERR_CONTEXT_MISMATCH, M2PT_ERR_OUT_OF_MEMORY,
 * M2PT_ERR_DEVICE_OUT_OF_MEMORY, M2PT_ERR_OPENCL, M2PT_ERR_KERNEL_BUILD. */
M2PT_API m2pt_status m2pt_bert_embeddings(m2pt_context *ctx, const m2pt_host_matrix *ids,
                                          const m2pt_host_matrix *types,
                                          const m2pt_tensor *word, const m2pt_tensor *position,
                                          const m2pt_tensor *token_type,
                                          const m2pt_tensor *ln_weight,
                                          const m2pt_tensor *ln_bias, float eps, m2pt_tensor *y);

/* ViT's patch embedding: the Conv2d with stride = kernel = P as a reshape
 * (im2col) and one GEMM, plus its bias, the class token prepended and the
 * position embeddings added (timm's PatchEmbed + _pos_embed, HF
 * ViTEmbeddings). pixels [B][C][H][W] (already normalized), weight
 * [D][C][P][P], bias [D] or NULL, cls NULL or D elements, pos NULL or
 * (T)·D elements with T = (cls ? 1 : 0) + (H/P)·(W/P), y [B][T][D].
 * H and W must be multiples of P.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL), M2PT_ERR_SHAPE (an image size
 * that is not a multiple of P, a pos or y that does not fit), as above. */
M2PT_API m2pt_status m2pt_patch_embed(m2pt_context *ctx, const m2pt_tensor *pixels,
                                      const m2pt_tensor *weight, const m2pt_tensor *bias,
                                      const m2pt_tensor *cls, const m2pt_tensor *pos,
                                      m2pt_tensor *y);

typedef enum m2pt_pool_kind {
  M2PT_POOL_AUTO = 0,   /* models only: as the checkpoint says (model.h) */
  M2PT_POOL_TOKEN = 1,  /* token `first` (the class token for first 0) */
  M2PT_POOL_MEAN = 2,   /* the mean over tokens ≥ first, weighted by the mask */
  M2PT_POOL_POOLER = 3, /* models only: BERT's pooler, tanh(dense(h[:, 0])) */
} m2pt_pool_kind;

/* y[b] = x[b][first] (TOKEN) or Σ_{n≥first} mask[b][n]·x[b][n] /
 * max(Σ_{n≥first} mask[b][n], 1e-9) (MEAN, sentence-transformers' mean
 * pooling; timm's global_pool 'avg' is first = 1 without a mask). x is
 * [B][N][D], mask NULL (all ones) or a [B][N] tensor of 0 and 1 (its values
 * are used as weights, not checked; the models check theirs on the host), y
 * [B][D]. A row whose mask is all 0 gives zeros, not NaN. With `normalize`
 * each row of y is then divided by max(‖y[b]‖₂, 1e-12) (F.normalize): zeros
 * stay zeros.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, kind not TOKEN or MEAN, first ≥
 * N), M2PT_ERR_SHAPE, M2PT_ERR_CONTEXT_MISMATCH, M2PT_ERR_OPENCL,
 * M2PT_ERR_KERNEL_BUILD. */
M2PT_API m2pt_status m2pt_pool(m2pt_context *ctx, const m2pt_tensor *x, const m2pt_tensor *mask,
                               m2pt_pool_kind kind, size_t first, int normalize, m2pt_tensor *y);

/* ---- Backward passes (issue 12): each computes only the gradients asked
 * for (a NULL output costs nothing) and overwrites them; every sum has a
 * fixed order (no atomics), so two runs give the same bits. ---- */

/* The backward of m2pt_bert_embeddings' gather, from dsum = ∂L/∂(word[ids]
 * + position[n] + token_type[types]), the LayerNorm's input (its gradient
 * comes from m2pt_layer_norm_backward): dword[v] = Σ dsum[b][n] over the
 * [b][n] with ids[b][n] = v, dposition[n] = Σ_b dsum[b][n], dtoken_type[t]
 * likewise over types (all type 0 when types is NULL, as in the forward).
 * Rows that no id names get 0. The scatter-add runs without atomics: the
 * host sorts the rows by id and one work-item sums each table element in
 * ascending [b][n]. ids, types as in the forward, dsum [B][N][D]; dword
 * [V][D], dposition [P][D] with P ≥ N, dtoken_type [T][D], each NULL when
 * frozen. ids are range-checked against dword (when given), types against
 * dtoken_type (when given).
 * Errors: as m2pt_bert_embeddings. */
M2PT_API m2pt_status m2pt_bert_embeddings_backward(m2pt_context *ctx, const m2pt_host_matrix *ids,
                                                   const m2pt_host_matrix *types,
                                                   const m2pt_tensor *dsum, m2pt_tensor *dword,
                                                   m2pt_tensor *dposition,
                                                   m2pt_tensor *dtoken_type);

/* The backward of m2pt_patch_embed from dy [B][T][D] (has_cls: whether the
 * forward prepended a class token): dweight = dYᵀ·im2col(pixels) over the
 * patch rows of dy (one GEMM; [D][C][P][P]), dbias = Σ of those rows [D],
 * dcls = Σ_b dy[b][0] [D elements] (has_cls only), dpos = Σ_b dy[b] [T·D
 * elements], dpixels = col2im(dY·W) [B][C][H][W] (stride = kernel, so a
 * plain scatter). pixels is needed for dweight, weight for dpixels; both
 * give the shapes. Any output may be NULL. Scratch: the workspace's patch
 * slots. Errors: as m2pt_patch_embed; M2PT_ERR_INVALID_ARGUMENT for dcls
 * without has_cls. */
M2PT_API m2pt_status m2pt_patch_embed_backward(m2pt_context *ctx, const m2pt_tensor *pixels,
                                               const m2pt_tensor *weight, int has_cls,
                                               const m2pt_tensor *dy, m2pt_tensor *dpixels,
                                               m2pt_tensor *dweight, m2pt_tensor *dbias,
                                               m2pt_tensor *dcls, m2pt_tensor *dpos);

/* The backward of m2pt_pool(x, mask, kind, first, normalize) from dy
 * [B][D] into dx [B][N][D] (not dy): TOKEN gives dx[b][first] = dy[b] and
 * zeros elsewhere; MEAN gives dx[b][n] = mask[b][n]·dy[b]/max(Σ mask, 1e-9)
 * for n ≥ first and 0 before first (an all-padding row: zeros). With
 * `normalize` dy first goes through the L2 normalization's Jacobian,
 * (dy − y·(y·dy))/‖u‖ for the pooled u (recomputed from x; x is read only
 * then). Errors: as m2pt_pool. */
M2PT_API m2pt_status m2pt_pool_backward(m2pt_context *ctx, const m2pt_tensor *x,
                                        const m2pt_tensor *mask, m2pt_pool_kind kind,
                                        size_t first, int normalize, const m2pt_tensor *dy,
                                        m2pt_tensor *dx);

#ifdef __cplusplus
}
#endif

#endif
