/* Fused multi-head self-attention, flash style (online softmax): tiles of
 * BK keys and values pass through local memory, each work-item keeps one
 * query's running max, sum and output row in registers, and the N×N score
 * matrix is never stored, so memory is O(N).
 *
 * qkv: [B][N][3][heads][DH] (timm's layout); out: [B][N][heads][DH];
 * mask: [B][N], 1 = token, 0 = padding key. Global size (⌈N/BQ⌉·BQ, heads,
 * B), work-groups of BQ. Specialised with -D DH, BQ, BK and HAS_MASK.
 *
 * Per key tile, with the tile's scores s_j (q pre-scaled by DH^-0.5 as timm
 * does): m' = max(m, max_j s_j), l' = l·e^(m−m') + Σ_j e^(s_j−m'),
 * acc' = acc·e^(m−m') + Σ_j e^(s_j−m')·v_j; out = acc / l (0 if every key is
 * masked). */

__kernel __attribute__((reqd_work_group_size(BQ, 1, 1)))
void m2pt_attention_fused(__global const float *qkv, __global const float *mask,
                          __global float *out, const uint tokens, const uint heads,
                          const float scale)
{
  __local float k_tile[BK][DH];
  __local float v_tile[BK][DH];
  __local float kept[BK];

  const uint qi = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
  const uint lid = get_local_id(0);
  const size_t row = 3 * (size_t)heads * DH;
  __global const float *base = qkv + (size_t)b * tokens * row;
  const int active = qi < tokens;

  float q[DH], acc[DH];
  for (uint d = 0; d < DH; d++) {
    q[d] = active ? base[qi * row + (size_t)h * DH + d] * scale : 0.0f;
    acc[d] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;

  for (uint k0 = 0; k0 < tokens; k0 += BK) {
    /* Row by row rather than e / DH, e % DH over the tile: oclgrind 21.10's
     * uninitialised-value checker stops at the `freeze` LLVM emits for
     * that division. */
    for (uint j = 0; j < BK; j++) {
      const uint key = k0 + j;
      const int in_range = key < tokens;
      for (uint d = lid; d < DH; d += BQ) {
        k_tile[j][d] = in_range ? base[key * row + (size_t)(heads + h) * DH + d] : 0.0f;
        v_tile[j][d] = in_range ? base[key * row + (size_t)(2 * heads + h) * DH + d] : 0.0f;
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
        float dot = 0.0f;
        for (uint d = 0; d < DH; d++)
          dot = fma(q[d], k_tile[j][d], dot);
        s[j] = kept[j] != 0.0f ? dot : -INFINITY;
        tile_max = fmax(tile_max, s[j]);
      }
      if (tile_max > -INFINITY) {
        const float m_new = fmax(m, tile_max);
        const float correction = exp(m - m_new); /* 0 on the first kept tile */
        l *= correction;
        for (uint d = 0; d < DH; d++)
          acc[d] *= correction;
        for (uint j = 0; j < BK; j++) {
          const float p = kept[j] != 0.0f ? exp(s[j] - m_new) : 0.0f;
          l += p;
          for (uint d = 0; d < DH; d++)
            acc[d] = fma(p, v_tile[j][d], acc[d]);
        }
        m = m_new;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE); /* the tiles are overwritten next */
  }

  if (active) {
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    __global float *o = out + ((size_t)b * tokens + qi) * heads * DH + (size_t)h * DH;
    for (uint d = 0; d < DH; d++)
      o[d] = acc[d] * inv;
  }
}
