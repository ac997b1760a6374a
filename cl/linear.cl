/* Kernels of the cross-modal re-parameterized linear (arXiv 2401.14405). */

/* dst = w + scale·aux, one rounding per element (fma is correctly rounded on
 * every OpenCL device), so the effective weight of the unmerged forward and
 * the merged weight are the same bits on every device. dst may be w. */
__kernel void m2pt_fold_pathway(__global float *dst, __global const float *w,
                                __global const float *aux, const float scale,
                                const ulong n)
{
  const size_t i = get_global_id(0);
  if (i < n)
    dst[i] = fma(scale, aux[i], w[i]);
}

/* y[r][c] = b[c]: the bias is laid down first and the GEMM adds x·Wᵀ with
 * beta = 1, so the bias costs one write pass instead of a read-modify-write. */
__kernel void m2pt_broadcast_rows(__global float *y, __global const float *b,
                                  const ulong rows, const ulong cols)
{
  const size_t c = get_global_id(0);
  const size_t r = get_global_id(1);
  if (c < cols && r < rows)
    y[r * cols + c] = b[c];
}
