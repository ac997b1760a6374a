/* Element-wise ops of the block. Specialised with -D HAS_BIAS, GELU_TANH and
 * BROADCAST rather than run-time branches. */

/* erfc(z) for z >= 0 with relative error below 1.2e-7 (the Chebyshev fit
 * of Numerical Recipes' erfcc): one exp and a polynomial, which CPU
 * compilers vectorise, where PoCL's erf() is a scalar call 10× slower. */
static float erfc_approx(const float z)
{
  const float t = 1.0f / fma(0.5f, z, 1.0f);
  float p = 0.17087277f;
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

/* y = GELU(x + bias[c]) over rows × cols (global size cols × rows, so no
 * 64-bit modulo per element): the bias of a bias-free GEMM fused with the
 * activation. Exact GELU is x·Φ(x) (PyTorch's default); the tanh form is
 * PyTorch's approximate='tanh'. y may be x. */
__kernel void m2pt_gelu(__global const float *x, __global const float *bias,
                        __global float *y, const ulong rows, const ulong cols)
{
  const size_t c = get_global_id(0), r = get_global_id(1);
  if (c >= cols || r >= rows)
    return;
  const size_t i = r * cols + c;
  float v = x[i];
#if HAS_BIAS
  v += bias[c];
#endif
#if GELU_TANH
  const float inner = 0.7978845608028654f * fma(0.044715f * v, v * v, v);
  y[i] = 0.5f * v * (1.0f + tanh(inner));
#else
  /* 1 + erf(z) with z = v/√2, from erfc(|z|): for z < 0 it is erfc(|z|)
   * itself (no cancellation in 1 + erf), else 2 − erfc(z). */
  const float e = erfc_approx(fabs(v * 0.7071067811865476f));
  y[i] = 0.5f * v * (v < 0.0f ? e : 2.0f - e);
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
