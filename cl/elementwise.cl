/* Element-wise ops of the block. Specialised with -D HAS_BIAS, GELU_TANH,
 * BROADCAST and VEC rather than run-time branches. */

/* GELU works on VEC consecutive elements of a row per work-item (1 or 8):
 * PoCL runs explicit float8 arithmetic several times faster than what it
 * vectorises across work-items itself. */
#if VEC == 8
typedef float8 floatv;
#  define LOADV(i, p) vload8((i), (p))
#  define STOREV(v, i, p) vstore8((v), (i), (p))
#  define NEGATIVE(v) (isless((v), 0.0f))
#else
typedef float floatv;
#  define LOADV(i, p) ((p)[i])
#  define STOREV(v, i, p) ((p)[i] = (v))
#  define NEGATIVE(v) ((v) < 0.0f)
#endif

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
  return t * exp(fma(-z, z, p));
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
