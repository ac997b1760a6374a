/* Host versions of the block's element-wise and row ops (host_math.h).
 * They run in GCC/Clang vector extensions, eight floats at a time: on
 * x86-64 a copy compiled for AVX2 is taken where the CPU has it, else the
 * portable copy (SSE2 there). Neither has fma to contract a·b + c into
 * (the AVX2 copy is built without it), so both give the same bits. */
#include "host_math.h"
#include "host_vector.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__)
#  define HAVE_AVX2_COPY 1
#else
#  define HAVE_AVX2_COPY 0
#endif

#define LANES 8
typedef float v8f __attribute__((vector_size(LANES * sizeof(float))));
typedef int32_t v8i __attribute__((vector_size(LANES * sizeof(int32_t))));

/* load8, store8, select8, exp8. */
M2PT_HOST_VECTOR_OPS(v8f, v8i, 8)

#define INLINE M2PT_HOST_INLINE

/* erf(x) as Eigen's fast float erf: x clamped to [−4, 4] (erf is ±1 in
 * float beyond), then an odd degree-13 over an even degree-8 polynomial;
 * within a few 1e-7 of erf, no exp and one division. */
INLINE v8f erf8(v8f x)
{
  const v8f zero = {0};
  x = select8(x > 4.0f, zero + 4.0f, x);
  x = select8(x < -4.0f, zero - 4.0f, x);
  const v8f x2 = x * x;
  v8f p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
  p = p * x2 - 2.10102402082508e-06f;
  p = p * x2 - 5.69250639462346e-05f;
  p = p * x2 - 7.34990630326855e-04f;
  p = p * x2 - 2.95459980854025e-03f;
  p = p * x2 - 1.60960333262415e-02f;
  v8f q = x2 * -1.45660718464996e-05f - 2.13374055278905e-04f;
  q = q * x2 - 1.68282697438203e-03f;
  q = q * x2 - 7.37332916720468e-03f;
  q = q * x2 - 1.42647390514189e-02f;
  return (x * p) / q;
}

INLINE v8f gelu8(v8f v, int tanh_form)
{
  if (tanh_form) {
    const v8f inner = 0.7978845608028654f * ((0.044715f * v) * (v * v) + v);
    const v8f th = 1.0f - 2.0f / (exp8(inner + inner) + 1.0f); /* tanh(inner) */
    return 0.5f * v * (1.0f + th);
  }
  return 0.5f * v * (1.0f + erf8(v * 0.7071067811865476f));
}

INLINE void gelu_rows(float *y, const float *bias, int tanh_form, size_t rows, size_t cols)
{
  for (size_t r = 0; r < rows; r++) {
    float *yr = y + r * cols;
    size_t c = 0;
    for (; c + LANES <= cols; c += LANES) {
      v8f v = load8(yr + c);
      if (bias)
        v += load8(bias + c);
      store8(yr + c, gelu8(v, tanh_form));
    }
    if (c < cols) { /* the row's tail, through a zero-padded vector */
      float tail[LANES] = {0}, tail_bias[LANES] = {0};
      memcpy(tail, yr + c, (cols - c) * sizeof(float));
      if (bias)
        memcpy(tail_bias, bias + c, (cols - c) * sizeof(float));
      store8(tail, gelu8(load8(tail) + load8(tail_bias), tanh_form));
      memcpy(yr + c, tail, (cols - c) * sizeof(float));
    }
  }
}

/* The lanes' sum in a fixed tree. */
INLINE float sum8(v8f v)
{
  return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

INLINE void layer_norm_rows(const float *x, const float *weight, const float *bias, float eps,
                            size_t rows, size_t dim, float *y)
{
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * dim;
    float *yr = y + r * dim;
    const size_t whole = dim - dim % LANES;
    v8f acc = {0};
    for (size_t c = 0; c < whole; c += LANES)
      acc += load8(xr + c);
    float sum = sum8(acc);
    for (size_t c = whole; c < dim; c++)
      sum += xr[c];
    const float mean = sum / (float)dim;
    v8f sq = {0};
    for (size_t c = 0; c < whole; c += LANES) {
      const v8f d = load8(xr + c) - mean;
      sq += d * d;
    }
    float squares = sum8(sq);
    for (size_t c = whole; c < dim; c++)
      squares += (xr[c] - mean) * (xr[c] - mean);
    const float rstd = 1.0f / sqrtf(squares / (float)dim + eps);
    for (size_t c = 0; c < whole; c += LANES) {
      v8f v = (load8(xr + c) - mean) * rstd * load8(weight + c);
      if (bias)
        v += load8(bias + c);
      store8(yr + c, v);
    }
    for (size_t c = whole; c < dim; c++)
      yr[c] = (xr[c] - mean) * rstd * weight[c] + (bias ? bias[c] : 0.0f);
  }
}

/* gelu_rows with its loop-invariant choices made constants, so that each
 * inlined copy has no branch in its loop. */
INLINE void gelu_rows_fixed(float *y, const float *bias, int tanh_form, size_t rows,
                            size_t cols)
{
  if (tanh_form && bias)
    gelu_rows(y, bias, 1, rows, cols);
  else if (tanh_form)
    gelu_rows(y, NULL, 1, rows, cols);
  else if (bias)
    gelu_rows(y, bias, 0, rows, cols);
  else
    gelu_rows(y, NULL, 0, rows, cols);
}

/* One portable copy of each, and on x86-64 one for AVX2. */
static void gelu_portable(float *y, const float *bias, int tanh_form, size_t rows, size_t cols)
{
  gelu_rows_fixed(y, bias, tanh_form, rows, cols);
}

static void layer_norm_portable(const float *x, const float *weight, const float *bias,
                                float eps, size_t rows, size_t dim, float *y)
{
  layer_norm_rows(x, weight, bias, eps, rows, dim, y);
}

#if HAVE_AVX2_COPY
__attribute__((target("avx2"))) static void gelu_avx2(float *y, const float *bias,
                                                      int tanh_form, size_t rows, size_t cols)
{
  gelu_rows_fixed(y, bias, tanh_form, rows, cols);
}

__attribute__((target("avx2"))) static void layer_norm_avx2(const float *x, const float *weight,
                                                            const float *bias, float eps,
                                                            size_t rows, size_t dim, float *y)
{
  layer_norm_rows(x, weight, bias, eps, rows, dim, y);
}

static int have_avx2(void)
{
  return __builtin_cpu_supports("avx2");
}
#endif

void m2pt_host_gelu(float *y, const float *bias, int tanh_form, size_t rows,
                    size_t cols)
{
#if HAVE_AVX2_COPY
  if (have_avx2()) {
    gelu_avx2(y, bias, tanh_form, rows, cols);
    return;
  }
#endif
  gelu_portable(y, bias, tanh_form, rows, cols);
}

static void layer_norm_best(const float *x, const float *weight, const float *bias, float eps,
                            size_t rows, size_t dim, float *y)
{
#if HAVE_AVX2_COPY
  if (have_avx2()) {
    layer_norm_avx2(x, weight, bias, eps, rows, dim, y);
    return;
  }
#endif
  layer_norm_portable(x, weight, bias, eps, rows, dim, y);
}

/* A LayerNorm's rows shared out among workers, in contiguous runs. */
typedef struct layer_norm_job {
  const float *x, *weight, *bias;
  float eps;
  size_t rows, dim;
  float *y;
  unsigned parts;
} layer_norm_job;

static void layer_norm_part(void *arg, unsigned worker)
{
  const layer_norm_job *j = arg;
  const size_t first = j->rows * worker / j->parts, end = j->rows * (worker + 1) / j->parts;
  layer_norm_best(j->x + first * j->dim, j->weight, j->bias, j->eps, end - first, j->dim,
                  j->y + first * j->dim);
}

/* Below this many elements a LayerNorm stays on the caller's thread: waking
 * the workers and waiting for them costs 60-80 µs on these 2-core VMs
 * (rows of 768, warm: 197 rows 35 µs alone, 70 on two workers; 1024 rows
 * 270 and 230; 1576 rows 390 and 310). */
#define LAYER_NORM_POOLED_ELEMS ((size_t)1 << 19)

void m2pt_host_layer_norm(m2pt_host_pool *pool, const float *x, const float *weight,
                          const float *bias, float eps, size_t rows, size_t dim, float *y)
{
  const unsigned parts = m2pt_host_pool_threads(pool);
  if (parts == 1 || rows < parts || rows * dim < LAYER_NORM_POOLED_ELEMS) {
    layer_norm_best(x, weight, bias, eps, rows, dim, y);
    return;
  }
  layer_norm_job j = {x, weight, bias, eps, rows, dim, y, parts};
  m2pt_host_pool_run(pool, parts, layer_norm_part, &j);
}

void m2pt_host_rows_init(float *y, const float *residual, const float *bias, size_t rows,
                         size_t cols)
{
  for (size_t r = 0; r < rows; r++) {
    float *yr = y + r * cols;
    const float *xr = residual ? residual + r * cols : NULL;
    if (xr && bias) {
      size_t c = 0;
      for (; c + LANES <= cols; c += LANES)
        store8(yr + c, load8(xr + c) + load8(bias + c));
      for (; c < cols; c++)
        yr[c] = xr[c] + bias[c];
    }
    else if (xr)
      memcpy(yr, xr, cols * sizeof(float));
    else if (bias)
      memcpy(yr, bias, cols * sizeof(float));
    else
      memset(yr, 0, cols * sizeof(float));
  }
}
