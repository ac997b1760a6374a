/* Fused multi-head self-attention, flash style (online softmax): tiles of
 * BK keys and values pass through local memory, each work-item keeps one
 * query's running max, sum and output row in registers, and the N×N score
 * matrix is never stored, so memory is O(N).
 *
 * qkv: [B][N][3][heads][DH] (timm's layout); out: [B][N][heads][DH];
 * mask: [B][N], 1 = token, 0 = padding key. Global size (⌈N/BQ⌉·BQ, heads,
 * B), work-groups of BQ. Specialised with -D DH, BQ, BK, VEC and HAS_MASK.
 *
 * Per key tile, with the tile's scores s_j (q pre-scaled by DH^-0.5 as timm
 * does): m' = max(m, max_j s_j), l' = l·e^(m−m') + Σ_j e^(s_j−m'),
 * acc' = acc·e^(m−m') + Σ_j e^(s_j−m')·v_j; out = acc / l (0 if every key is
 * masked).
 *
 * With -D BACKWARD=1 the program is the training one instead: the same
 * forward, named m2pt_attention_fused_train, also stores each row's
 * log-sum-exp lse = m + log(l) ([B][heads][N]; -inf when every key is
 * masked), and the two backward kernels below recompute P = e^(s − lse)
 * from it tile by tile (FlashAttention-2). The inference program leaves
 * all of that out, so its kernel is unchanged. */

#ifndef BACKWARD
#  define BACKWARD 0
#endif

/* Rows of DH floats are handled as DV vectors of VEC lanes (8 or 4 when DH
 * is a multiple, else 1): explicit vectors let CPU compilers such as PoCL's
 * use SIMD within a work-item, which its work-item loop vectoriser does not
 * manage with per-work-item arrays. */
#if VEC == 8
typedef float8 vec;
#  define VLOAD(p) vload8(0, (p))
#  define VSTORE(v, p) vstore8((v), 0, (p))
#  define HSUM(v) ((((v).s0 + (v).s1) + ((v).s2 + (v).s3)) + (((v).s4 + (v).s5) + ((v).s6 + (v).s7)))
#elif VEC == 4
typedef float4 vec;
#  define VLOAD(p) vload4(0, (p))
#  define VSTORE(v, p) vstore4((v), 0, (p))
#  define HSUM(v) (((v).x + (v).y) + ((v).z + (v).w))
#else
typedef float vec;
#  define VLOAD(p) (*(p))
#  define VSTORE(v, p) (*(p) = (v))
#  define HSUM(v) (v)
#endif
#define DV (DH / VEC)

/* Keys k0 … k0+BK−1 of head h into the tiles (zeros past the last token)
 * and whether each counts (kept: in range and not padding; the batch row's
 * mask starts at mask_at); the work-group shares the work. */
static void load_key_tile(__global const float *base, __global const float *mask,
                          const size_t mask_at, const size_t row, const uint tokens,
                          const uint heads, const uint h, const uint k0,
                          __local vec (*k_tile)[DV], __local vec (*v_tile)[DV],
                          __local float *kept)
{
  const uint lid = get_local_id(0);
  /* Row by row rather than e / DV, e % DV over the tile: oclgrind 21.10's
   * uninitialised-value checker stops at the `freeze` LLVM emits for that
   * division. */
  for (uint j = 0; j < BK; j++) {
    const uint key = k0 + j;
    const int in_range = key < tokens;
    __global const float *k_row = base + key * row + (size_t)(heads + h) * DH;
    __global const float *v_row = base + key * row + (size_t)(2 * heads + h) * DH;
    for (uint d = lid; d < DV; d += BQ) {
      k_tile[j][d] = in_range ? VLOAD(k_row + d * VEC) : (vec)(0.0f);
      v_tile[j][d] = in_range ? VLOAD(v_row + d * VEC) : (vec)(0.0f);
    }
  }
  for (uint j = lid; j < BK; j += BQ) {
    const uint key = k0 + j;
#if HAS_MASK
    kept[j] = (key < tokens && mask[mask_at + key] != 0.0f) ? 1.0f : 0.0f;
#else
    kept[j] = key < tokens ? 1.0f : 0.0f;
#endif
  }
}

/* The dot product of two rows of DV vectors, in the one order every kernel
 * here uses, so that the backward recomputes the forward's scores bit for
 * bit. */
static float dot_row(const vec *a, __local const vec *b)
{
  vec dot = (vec)(0.0f);
  for (uint d = 0; d < DV; d++)
    dot = fma(a[d], b[d], dot);
  return HSUM(dot);
}

/* A work-item of a kernel that owns one query row (qi) and walks the keys
 * in tiles: its tiles (load_key_tile's), ids and batch row of qkv. */
#define QUERY_WORK_ITEM                                                     \
  __local vec k_tile[BK][DV];                                               \
  __local vec v_tile[BK][DV];                                               \
  __local float kept[BK];                                                   \
  const uint qi = get_global_id(0), h = get_global_id(1), b = get_global_id(2); \
  const size_t row = 3 * (size_t)heads * DH;                                \
  __global const float *base = qkv + (size_t)b * tokens * row;              \
  const int active = qi < tokens

#if BACKWARD
#  define FORWARD_KERNEL m2pt_attention_fused_train
#  define LSE_ARG , __global float *lse
#else
#  define FORWARD_KERNEL m2pt_attention_fused
#  define LSE_ARG
#endif

__kernel __attribute__((reqd_work_group_size(BQ, 1, 1)))
void FORWARD_KERNEL(__global const float *qkv, __global const float *mask, __global float *out,
                    const uint tokens, const uint heads, const float scale LSE_ARG)
{
  QUERY_WORK_ITEM;

  vec q[DV], acc[DV];
  for (uint d = 0; d < DV; d++) {
    q[d] = active ? VLOAD(base + qi * row + (size_t)h * DH + d * VEC) * scale : (vec)(0.0f);
    acc[d] = (vec)(0.0f);
  }
  float m = -INFINITY, l = 0.0f;

  for (uint k0 = 0; k0 < tokens; k0 += BK) {
    load_key_tile(base, mask, (size_t)b * tokens, row, tokens, heads, h, k0, k_tile, v_tile,
                  kept);
    barrier(CLK_LOCAL_MEM_FENCE);

    if (active) {
      float s[BK];
      float tile_max = -INFINITY;
      for (uint j = 0; j < BK; j++) {
        s[j] = kept[j] != 0.0f ? dot_row(q, k_tile[j]) : -INFINITY;
        tile_max = fmax(tile_max, s[j]);
      }
      if (tile_max > -INFINITY) {
        const float m_new = fmax(m, tile_max);
        const float correction = exp(m - m_new); /* 0 on the first kept tile */
        l *= correction;
        for (uint d = 0; d < DV; d++)
          acc[d] *= correction;
        for (uint j = 0; j < BK; j++) {
          const float p = kept[j] != 0.0f ? exp(s[j] - m_new) : 0.0f;
          l += p;
          for (uint d = 0; d < DV; d++)
            acc[d] = fma((vec)(p), v_tile[j][d], acc[d]);
        }
        m = m_new;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE); /* the tiles are overwritten next */
  }

  if (active) {
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    __global float *o = out + ((size_t)b * tokens + qi) * heads * DH + (size_t)h * DH;
    for (uint d = 0; d < DV; d++)
      VSTORE(acc[d] * inv, o + d * VEC);
#if BACKWARD
    lse[((size_t)b * heads + h) * tokens + qi] = l > 0.0f ? m + log(l) : -INFINITY;
#endif
  }
}

#if BACKWARD

/* The backward from the training forward's out and lse, in two kernels
 * without atomics, each recomputing P = e^(s − lse) (s as the forward makes
 * it, the same bits): per query row i, D_i = dO_i·O_i (= Σ_j P_ij·dP_ij),
 * and per score dP_ij = dO_i·v_j, dS_ij = P_ij·(dP_ij − D_i). Then
 * dQ_i = scale·Σ_j dS_ij·k_j (m2pt_attention_backward_dq, a work-item per
 * query, key tiles in local memory, also writing D), and dK_j = scale·Σ_i
 * dS_ij·q_i, dV_j = Σ_i P_ij·dO_i (m2pt_attention_backward_dkdv, a work-item
 * per key, query tiles in local memory, reading D: it runs second).
 * Padding keys get dK = dV = 0; a row whose keys are all masked (lse = -inf)
 * has P = 0 and gives nothing. dout: [B][N][heads][DH] as out; dqkv: qkv's
 * layout; lse and delta: [B][heads][N]. Global size and work-groups as the
 * forward's (BQ work-items, over queries or over keys). */

__kernel __attribute__((reqd_work_group_size(BQ, 1, 1)))
void m2pt_attention_backward_dq(__global const float *qkv, __global const float *mask,
                                __global const float *out, __global const float *lse,
                                __global const float *dout, __global float *delta,
                                __global float *dqkv, const uint tokens, const uint heads,
                                const float scale)
{
  QUERY_WORK_ITEM;
  const size_t o_at = ((size_t)b * tokens + qi) * heads * DH + (size_t)h * DH;
  const size_t stat_at = ((size_t)b * heads + h) * tokens + qi;

  vec q[DV], dout_row[DV], dq[DV];
  vec d_acc = (vec)(0.0f);
  for (uint d = 0; d < DV; d++) {
    q[d] = active ? VLOAD(base + qi * row + (size_t)h * DH + d * VEC) * scale : (vec)(0.0f);
    dout_row[d] = active ? VLOAD(dout + o_at + d * VEC) : (vec)(0.0f);
    const vec o = active ? VLOAD(out + o_at + d * VEC) : (vec)(0.0f);
    d_acc = fma(dout_row[d], o, d_acc);
    dq[d] = (vec)(0.0f);
  }
  const float row_delta = HSUM(d_acc);
  const float row_lse = active ? lse[stat_at] : -INFINITY;
  if (active)
    delta[stat_at] = row_delta;

  for (uint k0 = 0; k0 < tokens; k0 += BK) {
    load_key_tile(base, mask, (size_t)b * tokens, row, tokens, heads, h, k0, k_tile, v_tile,
                  kept);
    barrier(CLK_LOCAL_MEM_FENCE);

    if (row_lse > -INFINITY) {
      /* The tile's dS first, then dQ column by column: fewer live
       * registers than one key at a time (the same sums in the same
       * order). */
      float ds[BK];
      for (uint j = 0; j < BK; j++) {
        const float p = kept[j] != 0.0f ? exp(dot_row(q, k_tile[j]) - row_lse) : 0.0f;
        ds[j] = p * (dot_row(dout_row, v_tile[j]) - row_delta);
      }
      for (uint d = 0; d < DV; d++)
        for (uint j = 0; j < BK; j++)
          dq[d] = fma((vec)(ds[j]), k_tile[j][d], dq[d]);
    }
    barrier(CLK_LOCAL_MEM_FENCE); /* the tiles are overwritten next */
  }

  if (active) {
    __global float *dst = dqkv + (size_t)b * tokens * row + qi * row + (size_t)h * DH;
    for (uint d = 0; d < DV; d++)
      VSTORE(dq[d] * scale, dst + d * VEC);
  }
}

__kernel __attribute__((reqd_work_group_size(BQ, 1, 1)))
void m2pt_attention_backward_dkdv(__global const float *qkv, __global const float *mask,
                                  __global const float *lse, __global const float *dout,
                                  __global const float *delta, __global float *dqkv,
                                  const uint tokens, const uint heads, const float scale)
{
  __local vec q_tile[BK][DV];
  __local vec dout_tile[BK][DV];
  __local float lse_tile[BK], delta_tile[BK];

  const uint kj = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
  const uint lid = get_local_id(0);
  const size_t row = 3 * (size_t)heads * DH, hd = (size_t)heads * DH;
  __global const float *base = qkv + (size_t)b * tokens * row;
  __global const float *dout_base = dout + (size_t)b * tokens * hd + (size_t)h * DH;
  __global const float *stats_lse = lse + ((size_t)b * heads + h) * tokens;
  __global const float *stats_delta = delta + ((size_t)b * heads + h) * tokens;
  const int active = kj < tokens;
#if HAS_MASK
  const int keep = active && mask[(size_t)b * tokens + kj] != 0.0f;
#else
  const int keep = active;
#endif

  vec k[DV], v[DV], dk[DV], dv[DV];
  for (uint d = 0; d < DV; d++) {
    k[d] = active ? VLOAD(base + kj * row + (size_t)(heads + h) * DH + d * VEC) : (vec)(0.0f);
    v[d] = active ? VLOAD(base + kj * row + (size_t)(2 * heads + h) * DH + d * VEC)
                  : (vec)(0.0f);
    dk[d] = (vec)(0.0f);
    dv[d] = (vec)(0.0f);
  }

  for (uint q0 = 0; q0 < tokens; q0 += BK) {
    for (uint i = 0; i < BK; i++) {
      const uint query = q0 + i;
      const int in_range = query < tokens;
      __global const float *q_row = base + query * row + (size_t)h * DH;
      __global const float *dout_row = dout_base + query * hd;
      for (uint d = lid; d < DV; d += BQ) {
        q_tile[i][d] = in_range ? VLOAD(q_row + d * VEC) * scale : (vec)(0.0f);
        dout_tile[i][d] = in_range ? VLOAD(dout_row + d * VEC) : (vec)(0.0f);
      }
    }
    for (uint i = lid; i < BK; i += BQ) {
      const uint query = q0 + i;
      lse_tile[i] = query < tokens ? stats_lse[query] : -INFINITY;
      delta_tile[i] = query < tokens ? stats_delta[query] : 0.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    if (keep) {
      /* The tile's P and dS first, then dV and dK column by column (as in
       * the dQ kernel). */
      float p[BK], ds[BK];
      for (uint i = 0; i < BK; i++) {
        p[i] = lse_tile[i] > -INFINITY ? exp(dot_row(k, q_tile[i]) - lse_tile[i]) : 0.0f;
        ds[i] = p[i] * (dot_row(v, dout_tile[i]) - delta_tile[i]);
      }
      for (uint d = 0; d < DV; d++)
        for (uint i = 0; i < BK; i++) {
          dv[d] = fma((vec)(p[i]), dout_tile[i][d], dv[d]);
          dk[d] = fma((vec)(ds[i]), q_tile[i][d], dk[d]);
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE); /* the tiles are overwritten next */
  }

  if (active) {
    __global float *dst = dqkv + (size_t)b * tokens * row + kj * row;
    for (uint d = 0; d < DV; d++) {
      VSTORE(dk[d], dst + (size_t)(heads + h) * DH + d * VEC);
      VSTORE(dv[d], dst + (size_t)(2 * heads + h) * DH + d * VEC);
    }
  }
}

#endif
