/* Double-precision C reference of m2pt's math, the yardstick of every test. */
#ifndef M2PT_TESTS_REFERENCE_H
#define M2PT_TESTS_REFERENCE_H

#include <stddef.h>
#include <stdint.h>

/* C = alpha·op(A)·op(B) + beta·C, row-major, op(X) = Xᵀ when trans_x. */
void ref_gemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, double alpha,
              const float *a, size_t lda, const float *b, size_t ldb, double beta, double *c,
              size_t ldc);

/* y = x·(W + λ·W_aux)ᵀ + b + λ·b_aux (DESIGN.md §1); w_aux, b, b_aux may be NULL. */
void ref_linear(const float *x, size_t rows, size_t in, size_t out, const float *w,
                const float *w_aux, double scale, const float *b, const float *b_aux, double *y);


/* ref_linear on a double x, without the aux bias. */
void ref_dense(const double *x, size_t rows, size_t in, size_t out, const float *w,
               const float *aux, double scale, const float *b, double *y);

/* Gradients of y = ref_linear(x) for upstream dy [rows][out] (DESIGN.md
 * "Gradients"): dx = dy·W_eff [rows][in], dw = G = dyᵀ·x [out][in],
 * db = Σ_rows dy [out], dw_aux = λ·G, db_aux = λ·db, *dscale = Σ G ⊙ W_aux
 * + Σ db ⊙ b_aux, and *dscale_abs = Σ |G ⊙ W_aux| + Σ |db ⊙ b_aux| (the
 * scale of dλ's rounding error). w_aux and b_aux may be NULL (no pathway,
 * no aux bias); every output may be NULL. */
void ref_linear_backward(const float *x, const float *dy, size_t rows, size_t in, size_t out,
                         const float *w, const float *w_aux, double scale, const float *b_aux,
                         double *dx, double *dw, double *db, double *dw_aux, double *db_aux,
                         double *dscale, double *dscale_abs);

/* LayerNorm over rows of `dim` (biased variance); bias may be NULL. */
void ref_layer_norm(const double *x, size_t rows, size_t dim, const float *weight,
                    const float *bias, double eps, double *y);

/* LayerNorm's backward (statistics recomputed in double): for upstream dy
 * and the forward's x, dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) with
 * g = dy·weight, dweight = Σ_rows dy·x̂, dbias = Σ_rows dy; each output may
 * be NULL. */
void ref_layer_norm_backward(const double *dy, const double *x, size_t rows, size_t dim,
                             const float *weight, double eps, double *dx, double *dweight,
                             double *dbias);

/* GELU, exact (erf) or the tanh approximation. */
double ref_gelu(double x, int tanh_form);

/* GELU'(x): Φ(x) + x·φ(x), or the tanh form's derivative (PyTorch's
 * GeluBackward). */
double ref_gelu_grad(double x, int tanh_form);

/* Softmax of scale·x over rows of `cols`; mask NULL or [groups][cols] with
 * row r using mask row r / rows_per_group; fully masked rows give zeros. */
void ref_softmax(const double *x, size_t rows, size_t cols, double scale, const float *mask,
                 size_t rows_per_group, double *y);

/* Softmax's backward from its output y: dx = scale·y ⊙ (dy − Σ_row dy⊙y),
 * 0 at masked keys (mask as ref_softmax). */
void ref_softmax_backward(const double *dy, const double *y, size_t rows, size_t cols,
                          double scale, const float *mask, size_t rows_per_group, double *dx);

/* Softmax cross-entropy of logits [B][C] against labels [B] with label
 * smoothing eps (PyTorch's target (1 − eps)·onehot + eps/C), mean over the
 * batch; dlogits ([B][C], NULL: not computed) = (softmax − target)/B.
 * Returns the loss. */
double ref_cross_entropy(const double *logits, const int64_t *labels, size_t batch,
                         size_t classes, double eps, double *dlogits);

/* mean((y − t)²) over n elements; dy (NULL: not computed) = 2·(y − t)/n. */
double ref_mse(const double *y, const double *t, size_t n, double *dy);

/* Attention on qkv [B][N][3][H][D] → out [B][N][H][D]; mask NULL or [B][N]. */
void ref_attention(const double *qkv, size_t batch, size_t tokens, size_t heads,
                   size_t dim_head, const float *mask, double *out);

/* ref_attention's backward: dqkv [B][N][3][H][D] (dQ, dK, dV) from the
 * upstream dout [B][N][H][D], P recomputed; mask as there. */
void ref_attention_backward(const double *qkv, const double *dout, size_t batch, size_t tokens,
                            size_t heads, size_t dim_head, const float *mask, double *dqkv);

/* One M2PT block's parameters in PyTorch layout (aux weights and scales may
 * be NULL/0 for a plain block; qkv_b may be NULL). */
typedef struct ref_block_params {
  size_t dim, heads, dim_head, hidden;
  double eps;
  int post_norm, gelu_tanh;
  const float *norm1_w, *norm1_b, *norm2_w, *norm2_b;
  const float *qkv_w, *qkv_b, *qkv_aux;
  const float *proj_w, *proj_b, *proj_aux;
  const float *fc1_w, *fc1_b, *fc1_aux;
  const float *fc2_w, *fc2_b, *fc2_aux;
  double qkv_scale, proj_scale, fc1_scale, fc2_scale;
  /* Drop-path: per-sample multipliers [B] of the attention and FFN
   * branches before their residual adds (0, or 1/(1 − p) when kept); NULL:
   * 1 (no drop-path). */
  const double *keep_attn, *keep_ffn;
} ref_block_params;

/* y = block(x) for x [B][N][dim] (DESIGN.md §1, pre- or post-norm). */
void ref_block(const ref_block_params *p, const float *x, size_t batch, size_t tokens,
               const float *mask, double *y);

/* ref_block on a double x (a stack of blocks without rounding between them). */
void ref_block_d(const ref_block_params *p, const double *x, size_t batch, size_t tokens,
                 const float *mask, double *y);

/* The gather's backward: dsum [B][N][D] scattered by id into dword
 * [vocab][D], by position into dpos [npos][D], by type (0 when types is
 * NULL) into dtype [ntypes][D]; each output may be NULL. */
void ref_bert_gather_backward(const int *ids, const int *types, size_t batch, size_t tokens,
                              size_t dim, const double *dsum, size_t vocab, size_t npos,
                              size_t ntypes, double *dword, double *dpos, double *dtype);

/* ref_patch_embed's backward from dy [B][T][D]: dpixels, dweight, dbias,
 * dcls (has_cls only), dpos [T][D]; each output may be NULL. */
void ref_patch_embed_backward(const float *pixels, size_t batch, size_t channels, size_t height,
                              size_t width, size_t p, size_t dim, const float *weight,
                              int has_cls, const double *dy, double *dpixels, double *dweight,
                              double *dbias, double *dcls, double *dpos);

/* ref_pool's backward (x in double) from dy [B][D] into dx [B][N][D],
 * through the L2 normalization's Jacobian when `normalize`. */
void ref_pool_backward(const double *x, size_t batch, size_t tokens, size_t dim,
                       const float *mask, int token, size_t first, int normalize,
                       const double *dy, double *dx);

/* BERT embeddings before their LayerNorm: word[ids] + pos[n] (+ type[types]),
 * ids/types [B][N] int32 (types may be NULL), y [B][N][D]. */
void ref_bert_gather(const int *ids, const int *types, size_t batch, size_t tokens, size_t dim,
                     const float *word, const float *pos, const float *type, double *y);

/* Patch embedding: Conv2d(stride = kernel = p) of pixels [B][C][H][W] with
 * weight [D][C][p][p] and bias (may be NULL), cls (may be NULL) prepended,
 * pos (may be NULL) added: y [B][(cls?1:0) + (H/p)(W/p)][D]. */
void ref_patch_embed(const float *pixels, size_t batch, size_t channels, size_t height,
                     size_t width, size_t p, size_t dim, const float *weight, const float *bias,
                     const float *cls, const float *pos, double *y);

/* Token (row `first`) or masked mean (tokens ≥ first, mask NULL = ones,
 * divided by max(Σ mask, 1e-9)) of x [B][N][D], then optionally L2
 * normalized (÷ max(‖·‖, 1e-12)): y [B][D]. */
void ref_pool(const float *x, size_t batch, size_t tokens, size_t dim, const float *mask,
              int token, size_t first, int normalize, double *y);

#endif
