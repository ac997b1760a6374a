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
 * masked). */

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

__kernel __attribute__((reqd_work_group_size(BQ, 1, 1)))
void m2pt_attention_fused(__global const float *qkv, __global const float *mask,
                          __global float *out, const uint tokens, const uint heads,
                          const float scale)
{
  __local vec k_tile[BK][DV];
  __local vec v_tile[BK][DV];
  __local float kept[BK];

  const uint qi = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
  const uint lid = get_local_id(0);
  const size_t row = 3 * (size_t)heads * DH;
  __global const float *base = qkv + (size_t)b * tokens * row;
  const int active = qi < tokens;

  vec q[DV], acc[DV];
  for (uint d = 0; d < DV; d++) {
    q[d] = active ? VLOAD(base + qi * row + (size_t)h * DH + d * VEC) * scale : (vec)(0.0f);
    acc[d] = (vec)(0.0f);
  }
  float m = -INFINITY, l = 0.0f;

  for (uint k0 = 0; k0 < tokens; k0 += BK) {
    /* Row by row rather than e / DV, e % DV over the tile: oclgrind 21.10's
     * uninitialised-value checker stops at the `freeze` LLVM emits for
     * that division. */
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
      kept[j] = (key < tokens && mask[(size_t)b * tokens + key] != 0.0f) ? 1.0f : 0.0f;
#else
      kept[j] = key < tokens ? 1.0f : 0.0f;
#endif
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    if (active) {
      float s[BK];
      float tile_max = -INFINITY;
      for (uint j = 0; j < BK; j++) {
        vec dot = (vec)(0.0f);
        for (uint d = 0; d < DV; d++)
          dot = fma(q[d], k_tile[j][d], dot);
        s[j] = kept[j] != 0.0f ? HSUM(dot) : -INFINITY;
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
  }
}
