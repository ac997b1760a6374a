/* Element-wise ops of the block and their backward passes. Specialised
 * with -D HAS_BIAS, GELU_TANH, BROADCAST and VEC (and TC, TR, PLAIN, XHAT
 * for the column sums) rather than run-time branches. */

/* GELU works on VEC consecutive elements of a row per work-item (1, 8 or
 * 16): PoCL runs explicit float8 arithmetic several times faster than what
 * it vectorises across work-items itself, and float16 a fifth (GELU) to a
 * quarter (its backward) faster again on AVX-512 (1576 × 3072, 2 cores). */
#if VEC == 16
typedef float16 floatv;
#  define LOADV(i, p) vload16((i), (p))
#  define STOREV(v, i, p) vstore16((v), (i), (p))
#  define NEGATIVE(v) (isless((v), 0.0f))
#  define EXP2_BITS(v) as_int16(v)
#  define EXP2_FLOAT(v) as_float16(v)
#elif VEC == 8
typedef float8 floatv;
#  define LOADV(i, p) vload8((i), (p))
#  define STOREV(v, i, p) vstore8((v), (i), (p))
#  define NEGATIVE(v) (isless((v), 0.0f))
#  define EXP2_BITS(v) as_int8(v)
#  define EXP2_FLOAT(v) as_float8(v)
#else
typedef float floatv;
#  define LOADV(i, p) ((p)[i])
#  define STOREV(v, i, p) ((p)[i] = (v))
#  define NEGATIVE(v) ((v) < 0.0f)
#  define EXP2_BITS(v) as_int(v)
#  define EXP2_FLOAT(v) as_float(v)
#endif

/* GELU's exp (erfc's argument and −u²/2, both ≤ 0 up to rounding): the
 * product x·log2 e rounds once more than exp() did, as erfc's argument
 * −z² + p itself does. On PoCL (float16) GELU's relative error over
 * [-10, -5), its tail, where erfc is what is left of it, went from 6.7e-6 to
 * 9.4e-6, and below about -13.2, where GELU is subnormal, it is now 0 (an
 * absolute error under 1.2e-38); elsewhere it stays within erfc's 1.2e-7
 * of max(|x|, 1). */
#define EXP2_T floatv
#include "exp2.clh"

/* erfc(z) for z >= 0 with relative error below 1.2e-7 (the Chebyshev fit
 * of Numerical Recipes' erfcc): one exp and a polynomial, which CPU
 * compilers vectorise, where PoCL's erf() is a scalar call 10× slower. */
static floatv erfc_approx(const floatv z)
{
  const floatv t = 1.0f / fma(0.5f, z, 1.0f);
  floatv p = 0.17087277f;
  p = fma(p, t, -0.82215223f);
  p = fma(p, t, 1.48851587f);
  p = fma(p, t, -1.13520398f);
  p = fma(p, t, 0.27886807f);
  p = fma(p, t, -0.18628806f);
  p = fma(p, t, 0.09678418f);
  p = fma(p, t, 0.37409196f);
  p = fma(p, t, 1.00002368f);
  p = fma(p, t, -1.26551223f);
  return t * exp_fast(fma(-z, z, p));
}

/* y = GELU(x + bias[c]) over rows × cols (global size cols/VEC × rows, so
 * no 64-bit modulo per element): the bias of a bias-free GEMM fused with the
 * activation. Exact GELU is x·Φ(x) (PyTorch's default); the tanh form is
 * PyTorch's approximate='tanh'. y may be x. */
__kernel void m2pt_gelu(__global const float *x, __global const float *bias,
                        __global float *y, const ulong rows, const ulong cols)
{
  const size_t c = get_global_id(0), r = get_global_id(1), vcols = cols / VEC;
  if (c >= vcols || r >= rows)
    return;
  const size_t i = r * vcols + c;
  floatv v = LOADV(i, x);
#if HAS_BIAS
  v += LOADV(c, bias);
#endif
#if GELU_TANH
  const floatv inner = 0.7978845608028654f * fma(0.044715f * v, v * v, v);
  STOREV(0.5f * v * (1.0f + tanh(inner)), i, y);
#else
  /* 1 + erf(z) with z = v/√2, from erfc(|z|): for z < 0 it is erfc(|z|)
   * itself (no cancellation in 1 + erf), else 2 − erfc(z). */
  const floatv e = erfc_approx(fabs(v * 0.7071067811865476f));
  STOREV(0.5f * v * select(2.0f - e, e, NEGATIVE(v)), i, y);
#endif
}

/* y = a + b over rows × cols (global size cols × rows), with b of a's size
 * or (BROADCAST) one row of cols repeated: a residual plus a bias. y may be
 * a or b. */
__kernel void m2pt_add(__global const float *a, __global const float *b, __global float *y,
                       const ulong rows, const ulong cols)
{
  const size_t c = get_global_id(0), r = get_global_id(1);
  if (c >= cols || r >= rows)
    return;
  const size_t i = r * cols + c;
#if BROADCAST
  y[i] = a[i] + b[c];
#else
  y[i] = a[i] + b[i];
#endif
}

/* GELU'(u), the same function's derivative as the forward computes (its
 * erfc approximation, its tanh argument), as PyTorch's GeluBackward:
 * exact: Φ(u) + u·φ(u) with φ(u) = exp(−u²/2)/√(2π);
 * tanh: with t = tanh(√(2/π)·(u + 0.044715·u³)),
 *   0.5·(1 + t) + 0.5·u·(1 − t²)·√(2/π)·(1 + 3·0.044715·u²).
 * *act gets GELU(u) on the way, by the forward's own expression (its
 * bits). */
static floatv gelu_grad(const floatv u, floatv *act)
{
#if GELU_TANH
  const floatv t = tanh(0.7978845608028654f * fma(0.044715f * u, u * u, u));
  const floatv inner_grad = 0.7978845608028654f * fma(0.134145f * u, u, 1.0f);
  *act = 0.5f * u * (1.0f + t);
  return fma(0.5f * u * (1.0f - t * t), inner_grad, 0.5f * (1.0f + t));
#else
  const floatv e = erfc_approx(fabs(u * 0.7071067811865476f));
  const floatv twice_cdf = select(2.0f - e, e, NEGATIVE(u));
  *act = 0.5f * u * twice_cdf; /* m2pt_gelu's expression */
  return fma(u * 0.3989422804014327f, exp_fast(-0.5f * u * u), 0.5f * twice_cdf);
#endif
}

/* dx = dy·GELU'(x + bias[c]), the backward of m2pt_gelu over rows × cols
 * (its layout and VEC), and (HAS_ACT) act = GELU(x + bias[c]) as m2pt_gelu
 * writes it: a backward that needs both the activation and its gradient
 * evaluates the erfc once. Each element is read and written by one
 * work-item, so dx may be dy or x (act neither). */
__kernel void m2pt_gelu_backward(__global const float *dy, __global const float *x,
                                 __global const float *bias, __global float *dx,
                                 __global float *act, const ulong rows, const ulong cols)
{
  const size_t c = get_global_id(0), r = get_global_id(1), vcols = cols / VEC;
  if (c >= vcols || r >= rows)
    return;
  const size_t i = r * vcols + c;
  floatv u = LOADV(i, x);
#if HAS_BIAS
  u += LOADV(c, bias);
#endif
  floatv a;
  STOREV(LOADV(i, dy) * gelu_grad(u, &a), i, dx);
#if HAS_ACT
  STOREV(a, i, act);
#endif
}

/* The column sums of m2pt_column_sums below (PLAIN, XHAT), one work-item
 * per 8 adjacent columns (cols a multiple of 8), each column summed over
 * rows 0, 1, … in order in float8: no local memory or barriers, which PoCL
 * runs slowly (LayerNorm's dγ and dβ at 1576 × 768: 0.3 ms against the
 * tree's 3.9). The same bits every run, not the same as the tree's. */
__kernel void m2pt_column_sums_vec8(__global const float *a, __global const float *x,
                                    __global const float *mean, __global const float *rstd,
                                    __global float *plain, __global float *xhat,
                                    const ulong rows, const ulong cols)
{
  const size_t c = get_global_id(0) * 8;
  if (c >= cols)
    return;
  float8 sum = 0.0f, sum_xhat = 0.0f;
  for (size_t r = 0; r < rows; r++) {
    const float8 v = vload8(0, a + r * cols + c);
    sum += v;
#if XHAT
    sum_xhat = fma(v, (vload8(0, x + r * cols + c) - mean[r]) * rstd[r], sum_xhat);
#endif
  }
#if PLAIN
  vstore8(sum, 0, plain + c);
#endif
#if XHAT
  vstore8(sum_xhat, 0, xhat + c);
#endif
}

#ifndef TC
#  define TC 1
#  define TR 1
#endif

/* Column sums over rows, the gradient of anything broadcast over rows:
 * (PLAIN) plain[c] = Σ_r a[r][c] (a bias: dβ, GELU's db, a broadcast add's
 * b) and (XHAT) xhat[c] = Σ_r a[r][c]·(x[r][c] − mean[r])·rstd[r]
 * (LayerNorm's dγ, x̂ computed as its backward does). A work-group of
 * TC × TR work-items owns TC adjacent columns (reads along a row are
 * contiguous); work-item (c, j) adds rows j, j + TR, … in order, then a
 * fixed tree over j in local memory: the same bits every run, no atomics. */
__kernel __attribute__((reqd_work_group_size(TC, TR, 1)))
void m2pt_column_sums(__global const float *a, __global const float *x,
                      __global const float *mean, __global const float *rstd,
                      __global float *plain, __global float *xhat, const ulong rows,
                      const ulong cols)
{
  __local float part_plain[TR][TC], part_xhat[TR][TC];
  const size_t c = get_global_id(0);
  const uint lc = get_local_id(0), lr = get_local_id(1);
  float sum = 0.0f, sum_xhat = 0.0f;
  if (c < cols)
    for (size_t r = lr; r < rows; r += TR) {
      const float v = a[r * cols + c];
      sum += v;
#if XHAT
      sum_xhat = fma(v, (x[r * cols + c] - mean[r]) * rstd[r], sum_xhat);
#endif
    }
  part_plain[lr][lc] = sum;
  part_xhat[lr][lc] = sum_xhat;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = TR / 2; s > 0; s >>= 1) {
    if (lr < s) {
      part_plain[lr][lc] += part_plain[lr + s][lc];
      part_xhat[lr][lc] += part_xhat[lr + s][lc];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lr != 0 || c >= cols)
    return;
#if PLAIN
  plain[c] = part_plain[0][lc];
#endif
#if XHAT
  xhat[c] = part_xhat[0][lc];
#endif
}
