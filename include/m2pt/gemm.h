/* General matrix multiply on device tensors, through CLBlast. */
#ifndef M2PT_GEMM_H
#define M2PT_GEMM_H

#include <stddef.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum m2pt_transpose {
  M2PT_NO_TRANS = 0,
  M2PT_TRANS = 1,
} m2pt_transpose;

/* C = alpha · op(A) · op(B) + beta · C on 2-D row-major tensors, where op(A)
 * is A or Aᵀ. op(A) is [M][K], op(B) is [K][N], C is [M][N]; the sizes come
 * from the tensors' shapes. With beta = 0, C's old contents are ignored.
 * C must not be A or B. Enqueued on the context's queue (asynchronous).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, not 2-D, C aliases A or B,
 * non-finite alpha or beta), M2PT_ERR_SHAPE (inner or outer sizes differ),
 * M2PT_ERR_CONTEXT_MISMATCH, M2PT_ERR_BLAS (CLBlast's status named in the
 * message). No tensor changes on error. */
M2PT_API m2pt_status m2pt_gemm(m2pt_context *ctx, m2pt_transpose trans_a,
                               m2pt_transpose trans_b, float alpha,
                               const m2pt_tensor *a, const m2pt_tensor *b,
                               float beta, m2pt_tensor *c);

/* A batch of matrices inside a tensor: matrix i starts at element
 * offset + i·batch_stride, and its rows are `ld` elements apart (row-major). */
typedef struct m2pt_matrix_batch {
  m2pt_tensor *tensor;  /* written only when it is C */
  size_t offset;
  size_t ld;
  size_t batch_stride;
} m2pt_matrix_batch;

/* For i in [0, batch): C_i = alpha · op(A_i) · op(B_i) + beta · C_i with
 * op(A_i) [m][k], op(B_i) [k][n], C_i [m][n] (CLBlast's strided-batched GEMM).
 * Each `ld` must be at least the row length of its stored matrix; every
 * matrix must lie inside its tensor; C's tensor must differ from A's and B's.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, zero sizes, ld too small,
 * overflow), M2PT_ERR_SHAPE (a matrix reaches past its tensor),
 * M2PT_ERR_CONTEXT_MISMATCH, M2PT_ERR_BLAS. */
M2PT_API m2pt_status m2pt_gemm_batched(m2pt_context *ctx, m2pt_transpose trans_a,
                                       m2pt_transpose trans_b, size_t m, size_t n,
                                       size_t k, float alpha,
                                       const m2pt_matrix_batch *a,
                                       const m2pt_matrix_batch *b, float beta,
                                       const m2pt_matrix_batch *c, size_t batch);

#ifdef __cplusplus
}
#endif

#endif
