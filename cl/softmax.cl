/* Numerically stable row softmax of scale·x with an optional key-padding
 * mask (DESIGN.md §1: softmax(q·kᵀ·scale + mask)). One work-group of WG
 * work-items per row (WG 1 on CPU devices: a row per work-item, its sums in
 * column order), fixed-order tree reductions (deterministic); each
 * work-item touches only its own columns, so y may be x. A row whose keys
 * are all masked gives zeros rather than 0/0 = NaN. Specialised with -D WG,
 * HAS_MASK and SAVE_LSE (the forward also stores each row's log-sum-exp,
 * from which m2pt_softmax_from_lse recomputes it). */

/* mask: [groups][cols], 1 keeps a key, 0 masks it; row r uses mask row
 * r / rows_per_group (after mask_offset elements). MASK_ROW declares it. */
#if HAS_MASK
#  define MASK_ROW(row) \
    __global const float *keep = mask + mask_offset + ((row) / rows_per_group) * cols
#  define KEPT(j) (keep[j] != 0.0f)
#else
#  define MASK_ROW(row)
#  define KEPT(j) 1
#endif

static float reduce(__local float *part, float value, const int take_max)
{
  const uint lid = get_local_id(0);
  part[lid] = value;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (lid < s)
      part[lid] = take_max ? fmax(part[lid], part[lid + s]) : part[lid] + part[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  value = part[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return value;
}

/* lse[lse_offset + row] = max + log Σ e^(scale·x − max) over the kept keys
 * (natural log; -inf when every key is masked), as the fused attention
 * kernels save it. */
#if SAVE_LSE
#  define LSE_ARGS , __global float *lse, const ulong lse_offset
#else
#  define LSE_ARGS
#endif

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void m2pt_softmax(__global const float *x, __global float *y, const uint cols,
                  const float scale, __global const float *mask, const ulong mask_offset,
                  const ulong rows_per_group LSE_ARGS)
{
  __local float part[WG];
  const uint lid = get_local_id(0);
  const size_t row = get_group_id(0);
  __global const float *xr = x + row * cols;
  __global float *yr = y + row * cols;
  MASK_ROW(row);

  float local_max = -INFINITY;
  for (uint j = lid; j < cols; j += WG)
    if (KEPT(j))
      local_max = fmax(local_max, scale * xr[j]);
  const float row_max = reduce(part, local_max, 1);

  float local_sum = 0.0f;
  for (uint j = lid; j < cols; j += WG)
    if (KEPT(j))
      local_sum += exp(scale * xr[j] - row_max);
  const float row_sum = reduce(part, local_sum, 0);

  /* row_sum is 0 only when every key is masked. */
  const float inv = row_sum > 0.0f ? 1.0f / row_sum : 0.0f;
  for (uint j = lid; j < cols; j += WG)
    yr[j] = KEPT(j) ? exp(scale * xr[j] - row_max) * inv : 0.0f;
#if SAVE_LSE
  if (lid == 0)
    lse[lse_offset + row] = row_sum > 0.0f ? row_max + log(row_sum) : -INFINITY;
#endif
}

/* e^x for the float8 path below, x ≤ 0 up to rounding (its scalar tail,
 * the last cols % 8 columns, keeps the built-in exp: exp2.clh is of one
 * type per source). */
#define EXP2_T float8
#define EXP2_BITS(v) as_int8(v)
#define EXP2_FLOAT(v) as_float8(v)
#include "exp2.clh"

/* y = e^(scale·x − lse[lse_offset + row]) from a softmax's saved
 * log-sum-exp (m2pt_softmax with SAVE_LSE, or the fused attention
 * kernels'): the softmax again without its two passes over the row, as
 * FlashAttention's backward recomputes P. Masked keys, and every key of a
 * row whose lse is -inf, give 0. Each work-item takes 8 consecutive columns
 * of one row (global size ⌈cols/8⌉ × rows), explicit float8 arithmetic:
 * PoCL runs that several times faster than the scalar row loop above
 * (cl/elementwise.cl's GELU says the same). y may be x. */
__kernel void m2pt_softmax_from_lse(__global const float *x, __global float *y, const uint cols,
                                    const float scale, __global const float *mask,
                                    const ulong mask_offset, const ulong rows_per_group,
                                    __global const float *lse, const ulong lse_offset,
                                    const ulong rows)
{
  const size_t c = get_global_id(0) * 8, row = get_global_id(1);
  if (c >= cols || row >= rows)
    return;
  const float row_lse = lse[lse_offset + row];
  __global const float *xr = x + row * cols;
  __global float *yr = y + row * cols;
  MASK_ROW(row);
  if (row_lse == -INFINITY) {
    for (size_t j = c; j < c + 8 && j < cols; j++)
      yr[j] = 0.0f;
  } else if (c + 8 <= cols) {
    float8 p = exp_fast(scale * vload8(0, xr + c) - row_lse);
#if HAS_MASK
    p = select(p, (float8)(0.0f), vload8(0, keep + c) == (float8)(0.0f));
#endif
    vstore8(p, 0, yr + c);
  } else {
    for (size_t j = c; j < cols; j++)
      yr[j] = KEPT(j) ? exp(scale * xr[j] - row_lse) : 0.0f;
  }
}

/* The backward of y = softmax(scale·x) from y alone (PyTorch's
 * _softmax_backward_data, times the scale):
 *   dx = scale · y ⊙ (dy − Σ_k dy_k·y_k).
 * Masked keys get 0 (the forward's output there is a constant 0), so a row
 * whose keys are all masked gets zeros. One work-group per row, a
 * fixed-order tree reduction; each work-item writes only its own columns
 * after the reduction, so dx may be dy or y. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void m2pt_softmax_backward(__global const float *dy, __global const float *y,
                           __global float *dx, const uint cols, const float scale,
                           __global const float *mask, const ulong mask_offset,
                           const ulong rows_per_group)
{
  __local float part[WG];
  const uint lid = get_local_id(0);
  const size_t row = get_group_id(0);
  __global const float *dyr = dy + row * cols, *yr = y + row * cols;
  __global float *dxr = dx + row * cols;
  MASK_ROW(row);

  float local_dot = 0.0f;
  for (uint j = lid; j < cols; j += WG)
    if (KEPT(j))
      local_dot = fma(dyr[j], yr[j], local_dot);
  const float dot = reduce(part, local_dot, 0);

  for (uint j = lid; j < cols; j += WG)
    dxr[j] = KEPT(j) ? scale * (yr[j] * (dyr[j] - dot)) : 0.0f;
}

/* The softmax backward when each row's Σ_k dy_k·y_k is known beforehand
 * (attention's D = rowsum(dO ⊙ O), m2pt_attention_delta, FlashAttention-2's
 * trick): dx = scale · y ⊙ (dy − dot[dot_offset + row]), elementwise, 8
 * columns per work-item as m2pt_softmax_from_lse, where m2pt_softmax_backward
 * runs the reduction over the row first. Masked keys need no test: y is 0
 * there. dx may be dy or y. */
__kernel void m2pt_softmax_backward_dot(__global const float *dy, __global const float *y,
                                        __global float *dx, const uint cols, const float scale,
                                        __global const float *dot, const ulong dot_offset,
                                        const ulong rows)
{
  const size_t c = get_global_id(0) * 8, row = get_global_id(1);
  if (c >= cols || row >= rows)
    return;
  const float d = dot[dot_offset + row];
  const size_t at = row * cols + c;
  if (c + 8 <= cols) {
    vstore8(scale * (vload8(0, y + at) * (vload8(0, dy + at) - d)), 0, dx + at);
  } else {
    for (size_t j = at; j < (row + 1) * cols; j++)
      dx[j] = scale * (y[j] * (dy[j] - d));
  }
}

/* delta[b][h][i] = Σ_e dout[b][i][h·dim_head + e] · out[b][i][h·dim_head + e]
 * for attention's layouts (out and dout [B][N][heads·dim_head], delta
 * [B][heads][N]): the row dots m2pt_softmax_backward_dot takes, since
 * Σ_j dP_ij·P_ij = dO_i·(Σ_j P_ij·V_j) = dO_i·O_i. Global size
 * N × heads × B; a fixed-order sum per work-item. */
__kernel void m2pt_attention_delta(__global const float *dout, __global const float *out,
                                   __global float *delta, const uint tokens, const uint heads,
                                   const uint dim_head)
{
  const size_t i = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
  if (i >= tokens)
    return;
  const size_t at = ((b * tokens + i) * heads + h) * dim_head;
  float sum = 0.0f;
  for (uint e = 0; e < dim_head; e++)
    sum = fma(dout[at + e], out[at + e], sum);
  delta[(b * heads + h) * tokens + i] = sum;
}
