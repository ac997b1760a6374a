#include "reference.h"

void ref_gemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, double alpha,
              const float *a, size_t lda, const float *b, size_t ldb, double beta, double *c,
              size_t ldc)
{
  for (size_t i = 0; i < m; i++)
    for (size_t j = 0; j < n; j++) {
      double acc = 0.0;
      for (size_t p = 0; p < k; p++) {
        const double av = trans_a ? a[p * lda + i] : a[i * lda + p];
        const double bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
        acc += av * bv;
      }
      c[i * ldc + j] = alpha * acc + (beta != 0.0 ? beta * c[i * ldc + j] : 0.0);
    }
}

void ref_linear(const float *x, size_t rows, size_t in, size_t out, const float *w,
                const float *w_aux, double scale, const float *b, const float *b_aux, double *y)
{
  for (size_t r = 0; r < rows; r++)
    for (size_t o = 0; o < out; o++) {
      double acc = 0.0;
      for (size_t i = 0; i < in; i++) {
        const double weight = (double)w[o * in + i] + (w_aux ? scale * w_aux[o * in + i] : 0.0);
        acc += (double)x[r * in + i] * weight;
      }
      acc += b ? b[o] : 0.0;
      acc += b_aux ? scale * b_aux[o] : 0.0;
      y[r * out + o] = acc;
    }
}
