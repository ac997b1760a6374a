/* Double-precision C reference of m2pt's math, the yardstick of every test. */
#ifndef M2PT_TESTS_REFERENCE_H
#define M2PT_TESTS_REFERENCE_H

#include <stddef.h>

/* C = alpha·op(A)·op(B) + beta·C, row-major, op(X) = Xᵀ when trans_x. */
void ref_gemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, double alpha,
              const float *a, size_t lda, const float *b, size_t ldb, double beta, double *c,
              size_t ldc);

/* y = x·(W + λ·W_aux)ᵀ + b + λ·b_aux (DESIGN.md §1); w_aux, b, b_aux may be NULL. */
void ref_linear(const float *x, size_t rows, size_t in, size_t out, const float *w,
                const float *w_aux, double scale, const float *b, const float *b_aux, double *y);

#endif
