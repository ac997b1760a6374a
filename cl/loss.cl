/* Losses with their gradients (lib/ops/loss.c): a per-row kernel writes each
 * row's loss and the row's gradient, then m2pt_loss_mean sums the row losses
 * in one work-group. Every reduction is a fixed-order tree (no atomics), so
 * the bits do not depend on scheduling. Specialised with -D WG and HAS_GRAD
 * (whether a gradient is written). */

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

/* Cross-entropy of one row of logits against label y with label smoothing
 * eps (PyTorch: target = (1 − eps)·onehot + eps/C). With m = max_j x_j and
 * s = Σ_j exp(x_j − m), lse = m + log s and
 *   row_loss = Σ_j t_j·(lse − x_j)
 *            = log s − (1 − eps)·(x_y − m) − (eps/C)·Σ_j (x_j − m),
 * every term shifted by m so that logits of ±1e4 neither overflow exp nor
 * cancel catastrophically. grad_j = (exp(x_j − m)/s − t_j)·inv_batch.
 * x_y is read before the first barrier and each work-item writes only its
 * own columns after the last, so grad may be x. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void m2pt_cross_entropy_rows(__global const float *x, __global const int *labels,
                             const uint cols, const float eps, const float inv_batch,
                             __global float *row_loss, __global float *grad)
{
  __local float part[WG];
  const uint lid = get_local_id(0);
  const size_t row = get_group_id(0);
  __global const float *xr = x + row * cols;
  const int label = labels[row];
  const float x_label = xr[label];

  float local_max = -INFINITY;
  for (uint j = lid; j < cols; j += WG)
    local_max = fmax(local_max, xr[j]);
  const float m = reduce(part, local_max, 1);

  float local_sum = 0.0f, local_shifted = 0.0f;
  for (uint j = lid; j < cols; j += WG) {
    local_sum += exp(xr[j] - m);
    local_shifted += xr[j] - m;
  }
  const float s = reduce(part, local_sum, 0);
  const float shifted = reduce(part, local_shifted, 0);
  const float smooth = eps / (float)cols;

  if (lid == 0)
    row_loss[row] = log(s) - (1.0f - eps) * (x_label - m) - smooth * shifted;
#if HAS_GRAD
  __global float *gr = grad + row * cols;
  const float inv_s = 1.0f / s; /* s ≥ 1: the maximum contributes exp(0) */
  for (uint j = lid; j < cols; j += WG) {
    const float t = ((int)j == label ? 1.0f - eps : 0.0f) + smooth;
    gr[j] = (exp(xr[j] - m) * inv_s - t) * inv_batch;
  }
#endif
}

/* Squared error of one row: row_loss = Σ_j (y_j − t_j)², grad_j =
 * (y_j − t_j)·scale with scale = 2/(B·k) (PyTorch's MseLossBackward). Each
 * work-item reads and writes only its own columns, so grad may be y or t. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void m2pt_mse_rows(__global const float *y, __global const float *t, const uint cols,
                   const float scale, __global float *row_loss, __global float *grad)
{
  __local float part[WG];
  const uint lid = get_local_id(0);
  const size_t row = get_group_id(0);
  __global const float *yr = y + row * cols, *tr = t + row * cols;

  float local_sum = 0.0f;
  for (uint j = lid; j < cols; j += WG) {
    const float d = yr[j] - tr[j];
    local_sum = fma(d, d, local_sum);
  }
  const float s = reduce(part, local_sum, 0);
  if (lid == 0)
    row_loss[row] = s;
#if HAS_GRAD
  __global float *gr = grad + row * cols;
  for (uint j = lid; j < cols; j += WG)
    gr[j] = (yr[j] - tr[j]) * scale;
#endif
}

/* loss[0] = Σ_r row_loss[r] / divisor, one work-group of WG over the rows
 * (the batch mean; divisor B·k for MSE). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void m2pt_loss_mean(__global const float *row_loss, const uint rows, const float divisor,
                    __global float *loss)
{
  __local float part[WG];
  const uint lid = get_local_id(0);
  float local_sum = 0.0f;
  for (uint r = lid; r < rows; r += WG)
    local_sum += row_loss[r];
  const float total = reduce(part, local_sum, 0);
  if (lid == 0)
    loss[0] = total / divisor;
}
