/* Element-wise ops of the block. Specialised with -D HAS_BIAS, GELU_TANH and
 * BROADCAST rather than run-time branches. */

/* y = GELU(x + bias[i % cols]): the bias of a bias-free GEMM fused with the
 * activation. Exact GELU is x·Φ(x) (PyTorch's default); the tanh form is
 * PyTorch's approximate='tanh'. y may be x. */
__kernel void m2pt_gelu(__global const float *x, __global const float *bias,
                        __global float *y, const ulong n, const ulong cols)
{
  const size_t i = get_global_id(0);
  if (i >= n)
    return;
  float v = x[i];
#if HAS_BIAS
  v += bias[i % cols];
#endif
#if GELU_TANH
  const float inner = 0.7978845608028654f * fma(0.044715f * v, v * v, v);
  y[i] = 0.5f * v * (1.0f + tanh(inner));
#else
  y[i] = 0.5f * v * (1.0f + erf(v * 0.7071067811865476f));
#endif
}

/* y = a + b, with b of a's size or (BROADCAST) a row of `period` elements
 * repeated: a residual plus a bias. y may be a or b. */
__kernel void m2pt_add(__global const float *a, __global const float *b, __global float *y,
                       const ulong n, const ulong period)
{
  const size_t i = get_global_id(0);
  if (i >= n)
    return;
#if BROADCAST
  y[i] = a[i] + b[i % period];
#else
  y[i] = a[i] + b[i];
#endif
}
