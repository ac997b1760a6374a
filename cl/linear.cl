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

/* ---- Backward (DESIGN.md "Gradients of the re-parameterized linear") ----
 * With G = dYᵀ·X (one GEMM, computed before these run): dW = G,
 * dW_aux = λ·G, dλ = Σ G ⊙ W_aux + Σ db ⊙ b_aux, db = Σ_rows dY.
 * Every sum below runs in an order fixed by the shapes alone, never by
 * thread timing or the device (no atomics), so two runs give the same bits;
 * that order is spelled out in lib/ops/linear_ops.h. What each kernel writes
 * is chosen with -D constants: 0 not at all, 1 overwrite, 2 accumulate. */

#define GRAD_LANES 64    /* work-items of a reduction group: fixed, not the device's */
#define GRAD_PER_LANE 16 /* elements each lane sums before the tree */

#ifndef DW_ACC
#define DW_ACC 0
#endif
#ifndef DWAUX
#define DWAUX 0
#endif
#ifndef DSCALE
#define DSCALE 0
#endif
#ifndef DB
#define DB 0
#endif
#ifndef DBAUX
#define DBAUX 0
#endif
#ifndef COLSUM
#define COLSUM 0
#endif
#ifndef DSCALE_ACC
#define DSCALE_ACC 0
#endif

/* Pairwise tree over the GRAD_LANES values of `sums` (lane i adds lane
 * i + s for s = 32, 16, …, 1); every lane must call it. Returns the total. */
static float grad_tree(__local float *sums, const uint lane)
{
  for (uint s = GRAD_LANES / 2; s > 0; s >>= 1) {
    barrier(CLK_LOCAL_MEM_FENCE);
    if (lane < s)
      sums[lane] += sums[lane + s];
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  return sums[0];
}

/* One pass over G [n] (n = out·in) in chunks of GRAD_LANES·GRAD_PER_LANE:
 * dW += G (DW_ACC; when dW is overwritten the GEMM wrote G into it),
 * dW_aux = λ·G or += λ·G (DWAUX), and with DSCALE group p's partial of
 * Σ G ⊙ W_aux into partial[p]: lane l sums, by fma in index order, the
 * elements p·1024 + l + 64·j (j = 0..15), then the lanes go through
 * grad_tree. Local size GRAD_LANES, one group per chunk. */
__kernel __attribute__((reqd_work_group_size(GRAD_LANES, 1, 1)))
void m2pt_linear_grad_weight(__global const float *g, __global float *dw,
                             __global float *dw_aux, __global const float *w_aux,
                             __global float *partial, const float scale, const ulong n)
{
  __local float sums[GRAD_LANES];
  const uint lane = (uint)get_local_id(0);
  const size_t base = get_group_id(0) * (size_t)(GRAD_LANES * GRAD_PER_LANE);
  float acc = 0.0f;
  /* Full chunks (all but the last) run without a bound per element, which
   * lets CPU compilers vectorize across the lanes; same order either way. */
  const uint per_lane = base + GRAD_LANES * GRAD_PER_LANE <= n
                            ? GRAD_PER_LANE
                            : (uint)((n - base + GRAD_LANES - 1 - lane) / GRAD_LANES);
  for (uint j = 0; j < per_lane; j++) {
    const size_t i = base + lane + (size_t)j * GRAD_LANES;
    const float gi = g[i];
#if DW_ACC
    dw[i] += gi;
#endif
#if DWAUX == 1
    dw_aux[i] = scale * gi;
#elif DWAUX == 2
    dw_aux[i] = fma(scale, gi, dw_aux[i]);
#endif
#if DSCALE
    acc = fma(gi, w_aux[i], acc);
#endif
  }
#if DSCALE
  sums[lane] = acc;
  const float total = grad_tree(sums, lane);
  if (lane == 0)
    partial[get_group_id(0)] = total;
#endif
}

/* db = Σ_rows dY, one work-item a column summing rows 0, 1, … in order
 * (adjacent work-items read adjacent columns). DB and DBAUX (= λ·db) say
 * how db and db_aux are written; COLSUM also stores the sum at
 * colsum[colsum_off + o] for dλ's b_aux term. */
__kernel void m2pt_linear_grad_bias(__global const float *dy, const ulong rows,
                                    const ulong cols, __global float *db,
                                    __global float *db_aux, __global float *colsum,
                                    const ulong colsum_off, const float scale)
{
  const size_t o = get_global_id(0);
  if (o >= cols)
    return;
  float s = 0.0f;
  for (size_t r = 0; r < rows; r++)
    s += dy[r * cols + o];
#if DB == 1
  db[o] = s;
#elif DB == 2
  db[o] += s;
#endif
#if DBAUX == 1
  db_aux[o] = scale * s;
#elif DBAUX == 2
  db_aux[o] = fma(scale, s, db_aux[o]);
#endif
#if COLSUM
  colsum[colsum_off + o] = s;
#endif
}

/* dλ = Sw + Sb, one group of GRAD_LANES: Sw over the `count` partials of
 * m2pt_linear_grad_weight, Sb = Σ_o colsum[off + o]·b_aux[o] over `nb`
 * terms (nb = 0 without an aux bias). Each: lane l adds terms l, l + 64, …
 * in order, then grad_tree. dscale[0] = Sw + Sb, or += with DSCALE_ACC. */
__kernel __attribute__((reqd_work_group_size(GRAD_LANES, 1, 1)))
void m2pt_linear_grad_scale(__global const float *partial, const ulong count,
                            __global const float *colsum, const ulong colsum_off,
                            __global const float *b_aux, const ulong nb,
                            __global float *dscale)
{
  __local float sums[GRAD_LANES];
  const uint lane = (uint)get_local_id(0);
  float acc = 0.0f;
  for (size_t i = lane; i < count; i += GRAD_LANES)
    acc += partial[i];
  sums[lane] = acc;
  const float sw = grad_tree(sums, lane);
  barrier(CLK_LOCAL_MEM_FENCE); /* every lane has read sums[0] before it is overwritten */
  acc = 0.0f;
  for (size_t o = lane; o < nb; o += GRAD_LANES)
    acc = fma(colsum[colsum_off + o], b_aux[o], acc);
  sums[lane] = acc;
  const float sb = grad_tree(sums, lane);
  if (lane == 0) {
#if DSCALE_ACC
    dscale[0] += sw + sb;
#else
    dscale[0] = sw + sb;
#endif
  }
}
