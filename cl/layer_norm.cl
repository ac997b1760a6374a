/* LayerNorm over rows (DESIGN.md §1: eps is a parameter; PyTorch's biased
 * variance). One work-group of WG work-items per row; each work-item only
 * touches the elements lid, lid + WG, …, so y may be x. Sums are reduced in
 * local memory in a fixed tree order: the same input gives the same bits on
 * every run. Two passes (mean, then the mean of squared deviations) avoid
 * the cancellation of E[x²] − E[x]². Specialised with -D WG, HAS_BIAS and
 * SAVE_STATS: a training forward also stores each row's mean and rstd, the
 * very floats y was computed with, for the backward (PyTorch's
 * native_layer_norm returns them likewise). */

static float reduce_sum(__local float *part, const float value)
{
  const uint lid = get_local_id(0);
  part[lid] = value;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (lid < s)
      part[lid] += part[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float total = part[0];
  barrier(CLK_LOCAL_MEM_FENCE); /* part is reused by the next reduction */
  return total;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void m2pt_layer_norm(__global const float *x, __global const float *weight,
                     __global const float *bias, __global float *y, const uint dim,
                     const float eps, __global float *mean_out, __global float *rstd_out)
{
  __local float part[WG];
  const uint lid = get_local_id(0);
  __global const float *xr = x + get_group_id(0) * (size_t)dim;
  __global float *yr = y + get_group_id(0) * (size_t)dim;

  float sum = 0.0f;
  for (uint i = lid; i < dim; i += WG)
    sum += xr[i];
  const float mean = reduce_sum(part, sum) / (float)dim;

  float squares = 0.0f;
  for (uint i = lid; i < dim; i += WG) {
    const float d = xr[i] - mean;
    squares = fma(d, d, squares);
  }
  const float var = reduce_sum(part, squares) / (float)dim;
  const float rstd = 1.0f / sqrt(var + eps);
#if SAVE_STATS
  if (lid == 0) {
    mean_out[get_group_id(0)] = mean;
    rstd_out[get_group_id(0)] = rstd;
  }
#endif

  for (uint i = lid; i < dim; i += WG) {
    float v = (xr[i] - mean) * rstd * weight[i];
#if HAS_BIAS
    v += bias[i];
#endif
    yr[i] = v;
  }
}

static float sum8(const float8 v)
{
  const float4 a = v.lo + v.hi;
  const float2 b = a.lo + a.hi;
  return b.x + b.y;
}

/* The same LayerNorm with one work-item per row, in float8 (dim a multiple
 * of 8), for CPU devices: PoCL runs the work-group version's barriers as
 * loops over work-items with their state spilled to memory, and a row per
 * work-item in explicit vectors is several times faster there. The sums
 * are in a fixed order too, so runs repeat bit for bit. */
__kernel void m2pt_layer_norm_rows(__global const float *x, __global const float *weight,
                                   __global const float *bias, __global float *y,
                                   const uint dim, const float eps, const uint rows,
                                   __global float *mean_out, __global float *rstd_out)
{
  const size_t r = get_global_id(0);
  if (r >= rows)
    return;
  __global const float *xr = x + r * (size_t)dim;
  __global float *yr = y + r * (size_t)dim;
  const uint n8 = dim / 8;
  float8 sum = 0.0f;
  for (uint i = 0; i < n8; i++)
    sum += vload8(i, xr);
  const float mean = sum8(sum) / (float)dim;
  float8 squares = 0.0f;
  for (uint i = 0; i < n8; i++) {
    const float8 d = vload8(i, xr) - mean;
    squares = fma(d, d, squares);
  }
  const float rstd = 1.0f / sqrt(sum8(squares) / (float)dim + eps);
#if SAVE_STATS
  mean_out[r] = mean;
  rstd_out[r] = rstd;
#endif
  for (uint i = 0; i < n8; i++) {
    float8 v = (vload8(i, xr) - mean) * rstd * vload8(i, weight);
#if HAS_BIAS
    v += vload8(i, bias);
#endif
    vstore8(v, i, yr);
  }
}

/* dx of LayerNorm from the saved mean and rstd, as PyTorch's
 * layer_norm_backward: with x̂ = (x − mean)·rstd and g = dy·γ,
 *   dx = rstd·(g − mean(g) − x̂·mean(g·x̂)).
 * One work-group per row, fixed-order tree reductions (deterministic); each
 * work-item reads and writes only its own columns, so dx may be dy or x.
 * dγ and dβ are column sums over rows: m2pt_column_sums (elementwise.cl). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void m2pt_layer_norm_backward(__global const float *dy, __global const float *x,
                              __global const float *weight, __global const float *mean,
                              __global const float *rstd, __global float *dx, const uint dim)
{
  __local float part[WG];
  const uint lid = get_local_id(0);
  const size_t row = get_group_id(0);
  __global const float *dyr = dy + row * (size_t)dim, *xr = x + row * (size_t)dim;
  __global float *dxr = dx + row * (size_t)dim;
  const float mu = mean[row], rs = rstd[row];

  float sum_g = 0.0f, sum_gx = 0.0f;
  for (uint i = lid; i < dim; i += WG) {
    const float g = dyr[i] * weight[i];
    sum_g += g;
    sum_gx = fma(g, (xr[i] - mu) * rs, sum_gx);
  }
  const float mean_g = reduce_sum(part, sum_g) / (float)dim;
  const float mean_gx = reduce_sum(part, sum_gx) / (float)dim;

  for (uint i = lid; i < dim; i += WG) {
    const float g = dyr[i] * weight[i];
    dxr[i] = rs * (g - mean_g - (xr[i] - mu) * rs * mean_gx);
  }
}

/* The same dx with one work-item per row in float8 (dim a multiple of 8),
 * for CPU devices as m2pt_layer_norm_rows. Fixed-order sums (deterministic);
 * each element of dy and x is read by this work-item before it writes that
 * element of dx, so dx may be dy or x. */
__kernel void m2pt_layer_norm_backward_rows(__global const float *dy, __global const float *x,
                                            __global const float *weight,
                                            __global const float *mean,
                                            __global const float *rstd, __global float *dx,
                                            const uint dim, const uint rows)
{
  const size_t r = get_global_id(0);
  if (r >= rows)
    return;
  __global const float *dyr = dy + r * (size_t)dim, *xr = x + r * (size_t)dim;
  __global float *dxr = dx + r * (size_t)dim;
  const float mu = mean[r], rs = rstd[r];
  const uint n8 = dim / 8;
  float8 sum_g = 0.0f, sum_gx = 0.0f;
  for (uint i = 0; i < n8; i++) {
    const float8 g = vload8(i, dyr) * vload8(i, weight);
    sum_g += g;
    sum_gx = fma(g, (vload8(i, xr) - mu) * rs, sum_gx);
  }
  const float mean_g = sum8(sum_g) / (float)dim;
  const float mean_gx = sum8(sum_gx) / (float)dim;
  for (uint i = 0; i < n8; i++) {
    const float8 g = vload8(i, dyr) * vload8(i, weight);
    vstore8(rs * (g - mean_g - (vload8(i, xr) - mu) * rs * mean_gx), i, dxr);
  }
}
