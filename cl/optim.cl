/* Optimizer steps (lib/train/optim.c): one work-item per element, each
 * reading and writing only its own parameter, gradient and state, so one
 * kernel does a tensor's whole update in one pass over memory. The formulas
 * are PyTorch's single-tensor torch.optim.SGD and torch.optim.AdamW, in
 * their order of operations (include/m2pt/optim.h). */

/* SGD with dampening 0. -D SGD_MOMENTUM=0|1 and SGD_NESTEROV=0|1 choose the
 * variant at build time; without momentum `buf` is not read (any buffer). A
 * zero buffer makes the first step b = μ·0 + g = g exactly, PyTorch's
 * b = clone(g). */
__kernel void m2pt_sgd_step(__global float *p, __global const float *grad, __global float *buf,
                            const ulong n, const float lr, const float wd, const float momentum)
{
  const ulong i = get_global_id(0);
  if (i >= n)
    return;
  const float w = p[i];
  float g = grad[i] + wd * w;
#if SGD_MOMENTUM
  const float b = momentum * buf[i] + g;
  buf[i] = b;
#if SGD_NESTEROV
  g = g + momentum * b;
#else
  g = b;
#endif
#endif
  p[i] = w - lr * g;
}

/* AdamW. decay = 1 − lr·wd, step_size = lr / (1 − β1^t) and
 * bc2_sqrt = √(1 − β2^t) come from the host (in double, as PyTorch's Python
 * floats). m moves towards g by 1 − β1 as PyTorch's lerp_ does it
 * (m + w·(g − m) for a weight below ½), the same value as β1·m + (1 − β1)·g
 * up to rounding. */
__kernel void m2pt_adamw_step(__global float *p, __global const float *grad, __global float *m,
                              __global float *v, const ulong n, const float decay,
                              const float one_minus_beta1, const float beta2,
                              const float step_size, const float bc2_sqrt, const float eps)
{
  const ulong i = get_global_id(0);
  if (i >= n)
    return;
  const float g = grad[i];
  const float w = p[i] * decay;
  const float mi = m[i] + one_minus_beta1 * (g - m[i]);
  const float vi = v[i] * beta2 + (1.0f - beta2) * (g * g);
  m[i] = mi;
  v[i] = vi;
  const float denom = sqrt(vi) / bc2_sqrt + eps;
  p[i] = w - step_size * (mi / denom);
}

/* x *= factor: gradient clipping's and accumulation's scale (PyTorch's
 * mul_ by a one-element tensor, one rounding per element). */
__kernel void m2pt_scale(__global float *x, const ulong n, const float factor)
{
  const ulong i = get_global_id(0);
  if (i < n)
    x[i] *= factor;
}

/* y += a·x as one fma (correctly rounded on every device; with a = 1 it is
 * the plain sum y + x, PyTorch's gradient accumulation): summing a
 * micro-batch's gradients into accumulators. */
__kernel void m2pt_axpy(__global float *y, __global const float *x, const ulong n, const float a)
{
  const ulong i = get_global_id(0);
  if (i < n)
    y[i] = fma(a, x[i], y[i]);
}
