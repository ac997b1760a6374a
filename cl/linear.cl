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
 * is chosen with -D constants: 0 not at all, 1 overwrite, 2 accumulate.
 * GRAD_VEC 1 works in explicit vectors (float4 over G, float8 over dY's
 * columns), which PoCL's compiler turns into SIMD within a work-item where
 * its work-item loop vectoriser does not; 0 (Oclgrind, whose checker crashes
 * on vectors) does the same arithmetic on scalars, in the same order, so
 * both give the same bits. */

#define GRAD_LANES 64 /* work-items of a reduction group: fixed, not the device's */
#define GRAD_ITEM 16  /* elements of G a work-item of m2pt_linear_grad_weight covers */

#ifndef GRAD_VEC
#define GRAD_VEC 0
#endif
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

/* Four consecutive elements of G's pass (a quad): a float4, or four floats.
 * Loads read elements at or past n as 0; stores skip them. */
#if GRAD_VEC
typedef float4 quad;
#define QUAD_ZERO ((quad)(0.0f))
#define QUAD_ADD(a, b) ((a) + (b))
#define QUAD_FMA(a, b, c) fma((a), (b), (c))
#define QUAD_SCALE(s, a) ((s) * (a))
#define QUAD_FMA_SCALE(s, a, c) fma((quad)(s), (a), (c))
#define QUAD_SUM(a) (((a).x + (a).y) + ((a).z + (a).w))
#else
typedef struct {
  float x, y, z, w;
} quad;
static quad quad_of(const float x, const float y, const float z, const float w)
{
  quad q = {x, y, z, w};
  return q;
}
#define QUAD_ZERO quad_of(0.0f, 0.0f, 0.0f, 0.0f)
#define QUAD_ADD(a, b) quad_of((a).x + (b).x, (a).y + (b).y, (a).z + (b).z, (a).w + (b).w)
#define QUAD_FMA(a, b, c)                                                                  \
  quad_of(fma((a).x, (b).x, (c).x), fma((a).y, (b).y, (c).y), fma((a).z, (b).z, (c).z),    \
          fma((a).w, (b).w, (c).w))
#define QUAD_SCALE(s, a) quad_of((s) * (a).x, (s) * (a).y, (s) * (a).z, (s) * (a).w)
#define QUAD_FMA_SCALE(s, a, c)                                                            \
  quad_of(fma((s), (a).x, (c).x), fma((s), (a).y, (c).y), fma((s), (a).z, (c).z),         \
          fma((s), (a).w, (c).w))
#define QUAD_SUM(a) (((a).x + (a).y) + ((a).z + (a).w))
#endif

static quad load_quad(__global const float *p, const size_t i, const ulong n)
{
#if GRAD_VEC
  if (i + 4 <= n)
    return vload4(0, p + i);
#endif
  quad q = QUAD_ZERO;
  q.x = i < n ? p[i] : 0.0f;
  q.y = i + 1 < n ? p[i + 1] : 0.0f;
  q.z = i + 2 < n ? p[i + 2] : 0.0f;
  q.w = i + 3 < n ? p[i + 3] : 0.0f;
  return q;
}

static void store_quad(const quad q, __global float *p, const size_t i, const ulong n)
{
#if GRAD_VEC
  if (i + 4 <= n) {
    vstore4(q, 0, p + i);
    return;
  }
#endif
  if (i < n)
    p[i] = q.x;
  if (i + 1 < n)
    p[i + 1] = q.y;
  if (i + 2 < n)
    p[i + 2] = q.z;
  if (i + 3 < n)
    p[i + 3] = q.w;
}

/* One pass over G [n] (n = out·in), work-item p on G[16p, 16p + 16) as four
 * quads in order: dW += G (DW_ACC; when dW is overwritten the GEMM wrote G
 * into it), dW_aux = λ·G or += λ·G (DWAUX), and with DSCALE the partial
 * partial[p] of Σ G ⊙ W_aux: quad lane k sums by fma, in order, the
 * elements 16p + 4j + k (j = 0..3), then (lane 0 + lane 1) + (lane 2 +
 * lane 3). No local memory, no barriers: any work-group size. */
__kernel void m2pt_linear_grad_weight(__global const float *g, __global float *dw,
                                      __global float *dw_aux, __global const float *w_aux,
                                      __global float *partial, const float scale, const ulong n)
{
  const size_t p = get_global_id(0);
  const size_t base = p * GRAD_ITEM;
  if (base >= n)
    return;
  quad acc = QUAD_ZERO;
  for (uint j = 0; j < GRAD_ITEM / 4; j++) {
    const size_t i = base + 4 * j;
    const quad gi = load_quad(g, i, n);
#if DW_ACC
    store_quad(QUAD_ADD(load_quad(dw, i, n), gi), dw, i, n);
#endif
#if DWAUX == 1
    store_quad(QUAD_SCALE(scale, gi), dw_aux, i, n);
#elif DWAUX == 2
    store_quad(QUAD_FMA_SCALE(scale, gi, load_quad(dw_aux, i, n)), dw_aux, i, n);
#endif
#if DSCALE
    acc = QUAD_FMA(gi, load_quad(w_aux, i, n), acc);
#endif
  }
#if DSCALE
  partial[p] = QUAD_SUM(acc);
#endif
}

/* Writes column o's sum s of dY: db (DB), db_aux = λ·s (DBAUX), colsum. */
static void grad_bias_write(const size_t o, const float s, __global float *db,
                            __global float *db_aux, __global float *colsum,
                            const ulong colsum_off, const float scale)
{
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

/* Adjacent columns of dY a work-item of m2pt_linear_grad_bias sums. */
#if GRAD_VEC
#define GRAD_COLS 8
#else
#define GRAD_COLS 1
#endif

/* db = Σ_rows dY: each column summed over rows 0, 1, … in order; a
 * work-item takes GRAD_COLS adjacent columns (a float8 a row with
 * GRAD_VEC, which keeps each column's order). DB and DBAUX (= λ·db) say how
 * db and db_aux are written; COLSUM also stores the sum at
 * colsum[colsum_off + o] for dλ's b_aux term. */
__kernel void m2pt_linear_grad_bias(__global const float *dy, const ulong rows,
                                    const ulong cols, __global float *db,
                                    __global float *db_aux, __global float *colsum,
                                    const ulong colsum_off, const float scale)
{
  const size_t first = get_global_id(0) * GRAD_COLS;
  if (first >= cols)
    return;
#if GRAD_VEC
  if (first + GRAD_COLS <= cols) {
    float8 s8 = 0.0f;
    for (size_t r = 0; r < rows; r++)
      s8 += vload8(0, dy + r * cols + first);
    float s[GRAD_COLS];
    vstore8(s8, 0, s);
    for (uint k = 0; k < GRAD_COLS; k++)
      grad_bias_write(first + k, s[k], db, db_aux, colsum, colsum_off, scale);
    return;
  }
#endif
  const size_t last = first + GRAD_COLS < cols ? first + GRAD_COLS : cols;
  for (size_t o = first; o < last; o++) {
    float s = 0.0f;
    for (size_t r = 0; r < rows; r++)
      s += dy[r * cols + o];
    grad_bias_write(o, s, db, db_aux, colsum, colsum_off, scale);
  }
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
