/* Fused multi-head self-attention shaped for CPU devices (PoCL): no local
 * memory, no barriers, explicit vectors. Each work-item owns R query rows
 * of one (batch row, head) and streams every key past them with an online
 * softmax, so memory stays O(N); the N×N score matrix is never stored.
 *
 * Scores are vectorised over keys, which needs K transposed: a first kernel
 * (m2pt_attention_cpu_keys) fills `keys` with, in turn, a key bias [B][npad]
 * (0 for a kept key, -inf for a padding key or one past the last token),
 * Kᵀ in blocks of KB keys, [B][heads][npad / KB][DH][KB], and V packed,
 * [B][heads][npad][DH], both zero past the last token (npad: N rounded up
 * to a multiple of KB). Each block the second kernel reads is then one
 * contiguous run rather than rows a whole qkv row (or Kᵀ row) apart, whose
 * power-of-two strides thrash the L1's sets. Then per block of KB keys and
 * query row r, in base 2 (q pre-scaled by DH^-0.5·log2 e):
 *   s = bias + Σ_d q[r][d]·kt[d][keys]
 *   m' = max(m, max s), l' = l·2^(m−m') + Σ 2^(s−m'),
 *   acc' = acc·2^(m−m') + Σ_j 2^(s_j−m')·v_j (vectorised over DH)
 * and out = acc / l, 0 where every key is masked (l = 0). The rescaling by
 * 2^(m−m') runs only for a row whose maximum grew, which after the first
 * blocks is rare; l is summed lane by lane and folded once at the end.
 *
 * qkv: [B][N][3][heads][DH] (timm's layout); out: [B][N][heads][DH]; mask:
 * [B][N], 1 = token, 0 = padding key. Specialised with -D DH, R (query rows
 * per work-item), KV (keys per vector: 16, 8, 4 or 1), NV (vectors per key
 * block, KB = KV·NV), DV (lanes over DH: 16, 8, 4 or 1, dividing DH),
 * HAS_MASK and SAVE_LSE: a training forward also stores each row's
 * log-sum-exp m·ln 2 + log(l) of the scaled scores (natural log), [B][heads][N]
 * (-inf for a row whose keys are all masked), what the fused backward
 * (attention.cl) recomputes P from. */

#define KB (KV * NV)
#define DD (DH / DV)

#if KV == 16
typedef float16 kvec;
#  define KBITS(v) as_int16(v)
#  define KFLOAT(v) as_float16(v)
#  define KLOAD(p) vload16(0, (p))
#  define KSTORE(v, p) vstore16((v), 0, (p))
#elif KV == 8
typedef float8 kvec;
#  define KBITS(v) as_int8(v)
#  define KFLOAT(v) as_float8(v)
#  define KLOAD(p) vload8(0, (p))
#  define KSTORE(v, p) vstore8((v), 0, (p))
#elif KV == 4
typedef float4 kvec;
#  define KBITS(v) as_int4(v)
#  define KFLOAT(v) as_float4(v)
#  define KLOAD(p) vload4(0, (p))
#  define KSTORE(v, p) vstore4((v), 0, (p))
#else
typedef float kvec;
#  define KBITS(v) as_int(v)
#  define KFLOAT(v) as_float(v)
#  define KLOAD(p) (*(p))
#  define KSTORE(v, p) (*(p) = (v))
#endif

#if DV == 16
typedef float16 dvec;
#  define DLOAD(p) vload16(0, (p))
#  define DSTORE(v, p) vstore16((v), 0, (p))
#elif DV == 8
typedef float8 dvec;
#  define DLOAD(p) vload8(0, (p))
#  define DSTORE(v, p) vstore8((v), 0, (p))
#elif DV == 4
typedef float4 dvec;
#  define DLOAD(p) vload4(0, (p))
#  define DSTORE(v, p) vstore4((v), 0, (p))
#else
typedef float dvec;
#  define DLOAD(p) (*(p))
#  define DSTORE(v, p) (*(p) = (v))
#endif

/* A plain max (one instruction; fmax's NaN rules cost three): a NaN score
 * still reaches the row's output through 2^NaN in its sum. */
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define COMBINE(a, b, take_max) ((take_max) ? MAX((a), (b)) : (a) + (b))

/* The lanes of a key vector folded by max or + (take_max: a constant once
 * inlined), halves first. */
static float key_fold(kvec v, const int take_max)
{
#if KV == 1
  return v;
#else
#  if KV == 16
  const float8 a = COMBINE(v.lo, v.hi, take_max);
  const float4 b = COMBINE(a.lo, a.hi, take_max);
#  elif KV == 8
  const float4 b = COMBINE(v.lo, v.hi, take_max);
#  else
  const float4 b = v;
#  endif
  const float2 c = COMBINE(b.lo, b.hi, take_max);
  return COMBINE(c.x, c.y, take_max);
#endif
}

/* 2^x of the shifted scores (≤ 0, -inf or NaN). */
#define EXP2_T kvec
#define EXP2_BITS KBITS
#define EXP2_FLOAT KFLOAT
#include "exp2.clh"

/* Where Kᵀ and the packed V of (batch row b, head h) begin in `keys`. */
#define KT_AT(keys, b, h, heads, npad, batch) \
  ((keys) + (batch) * (size_t)(npad) + ((size_t)(b) * (heads) + (h)) * (size_t)(npad) * DH)
#define V_AT(keys, b, h, heads, npad, batch) \
  (KT_AT(keys, b, h, heads, npad, batch) + (batch) * (size_t)(heads) * (npad) * DH)

/* Global size (npad / KV, heads, B): KV consecutive keys of one head per
 * work-item, written as whole vectors: a column of their K per row of Kᵀ
 * and their V rows DV lanes at a time (one key per work-item, with a
 * scalar store per element, made this pass 13% of the N = 197 forward). */
__kernel void m2pt_attention_cpu_keys(__global const float *qkv, __global const float *mask,
                                      __global float *keys, const uint tokens,
                                      const uint heads, const uint npad)
{
  const uint j0 = get_global_id(0) * KV, h = get_global_id(1), b = get_global_id(2);
  const size_t batch = get_global_size(2);
  const uint live = j0 < tokens ? min((uint)KV, tokens - j0) : 0;
  const size_t row = 3 * (size_t)heads * DH;
  /* Past the last token nothing is read; the pointer stays in qkv. */
  __global const float *k =
      qkv + ((size_t)b * tokens + (live ? j0 : 0)) * row + (size_t)(heads + h) * DH;
  __global const float *v = k + (size_t)heads * DH;
  __global float *kt =
      KT_AT(keys, b, h, heads, npad, batch) + (size_t)(j0 / KB) * KB * DH + j0 % KB;
  __global float *vp = V_AT(keys, b, h, heads, npad, batch) + (size_t)j0 * DH;
  for (uint d = 0; d < DH; d++) {
    float col[KV];
    #pragma unroll
    for (uint u = 0; u < KV; u++)
      col[u] = u < live ? k[u * row + d] : 0.0f;
    KSTORE(KLOAD(col), kt + d * KB);
  }
  #pragma unroll
  for (uint u = 0; u < KV; u++)
    #pragma unroll
    for (uint e = 0; e < DD; e++)
      DSTORE(u < live ? DLOAD(v + u * row + e * DV) : (dvec)(0.0f), vp + u * DH + e * DV);
  if (h == 0)
    #pragma unroll
    for (uint u = 0; u < KV; u++) {
#if HAS_MASK
      const int kept = u < live && mask[(size_t)b * tokens + j0 + u] != 0.0f;
#else
      const int kept = u < live;
#endif
      keys[(size_t)b * npad + j0 + u] = kept ? 0.0f : -INFINITY;
    }
}

/* s[r][c] += Σ_d q[r][d]·kt_block[d][c·KV ..] for the first nv key vectors. */
#define ADD_SCORES(s, q, kt_block, nv)                                 \
  do {                                                                 \
    for (uint d = 0; d < DH; d++) {                                    \
      _Pragma("unroll") for (uint c = 0; c < (nv); c++) {              \
        const kvec kv = KLOAD((kt_block) + d * KB + c * KV);           \
        _Pragma("unroll") for (uint r = 0; r < R; r++)                 \
          (s)[r][c] = fma((kvec)((q)[r][d]), kv, (s)[r][c]);           \
      }                                                                \
    }                                                                  \
  } while (0)

/* Global size (⌈N/R⌉, heads, B): R query rows of one head per work-item;
 * rows past the last token repeat it and are not stored. */
#if SAVE_LSE
#  define LSE_ARG , __global float *lse
#else
#  define LSE_ARG
#endif
__kernel void m2pt_attention_cpu(__global const float *qkv, __global const float *keys,
                                 __global float *out, const uint tokens, const uint heads,
                                 const uint npad, const float scale LSE_ARG)
{
  const uint block = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
  const size_t batch = get_global_size(2);
  const size_t row = 3 * (size_t)heads * DH;
  __global const float *base = qkv + (size_t)b * tokens * row;
  __global const float *kt_h = KT_AT(keys, b, h, heads, npad, batch);
  __global const float *v_h = V_AT(keys, b, h, heads, npad, batch);
  __global const float *bias_b = keys + (size_t)b * npad;

  float q[R][DH];
  dvec acc[R][DD];
  kvec lsum[R];
  float m[R];
  #pragma unroll
  for (uint r = 0; r < R; r++) {
    const uint qi = min(block * R + r, tokens - 1);
    for (uint d = 0; d < DH; d++)
      q[r][d] = base[qi * row + (size_t)h * DH + d] * scale;
    #pragma unroll
    for (uint e = 0; e < DD; e++)
      acc[r][e] = (dvec)(0.0f);
    lsum[r] = (kvec)(0.0f);
    m[r] = -INFINITY;
  }

  /* Each row's weights, stored a vector at a time and read a key at a time. */
  union {
    kvec v[NV];
    float f[KB];
  } p[R];
  for (uint k0 = 0; k0 < tokens; k0 += KB) {
    kvec s[R][NV];
    #pragma unroll
    for (uint c = 0; c < NV; c++) {
      const kvec bv = KLOAD(bias_b + k0 + c * KV);
      #pragma unroll
      for (uint r = 0; r < R; r++)
        s[r][c] = bv;
    }
    __global const float *kt_block = kt_h + (size_t)k0 * DH;
    /* A last block whose tokens fit in its first vector leaves the others
     * at their bias, -inf (ViT-B's N = 197 ends in 5 keys of 32). */
    if (NV == 1 || tokens - k0 > KV)
      ADD_SCORES(s, q, kt_block, NV);
    else
      ADD_SCORES(s, q, kt_block, 1);

    #pragma unroll
    for (uint r = 0; r < R; r++) {
      kvec most = s[r][0];
      #pragma unroll
      for (uint c = 1; c < NV; c++)
        most = MAX(most, s[r][c]);
      const float block_max = key_fold(most, 1);
      if (block_max > m[r]) {
        const float correction = exp2(m[r] - block_max);
        lsum[r] *= correction;
        #pragma unroll
        for (uint e = 0; e < DD; e++)
          acc[r][e] *= correction;
        m[r] = block_max;
      }
      /* Every key so far masked: any finite shift gives 2^(−inf) = 0. */
      const float shift = m[r] == -INFINITY ? 0.0f : m[r];
      #pragma unroll
      for (uint c = 0; c < NV; c++) {
        const kvec e = exp2_fast(s[r][c] - shift);
        lsum[r] += e;
        p[r].v[c] = e;
      }
    }

    const uint live = min((uint)KB, tokens - k0); /* V past the last token is 0 too */
    for (uint j = 0; j < live; j++) {
      __global const float *v = v_h + (size_t)(k0 + j) * DH;
      #pragma unroll
      for (uint e = 0; e < DD; e++) {
        const dvec vv = DLOAD(v + e * DV);
        #pragma unroll
        for (uint r = 0; r < R; r++)
          acc[r][e] = fma((dvec)(p[r].f[j]), vv, acc[r][e]);
      }
    }
  }

  #pragma unroll
  for (uint r = 0; r < R; r++) {
    const uint qi = block * R + r;
    if (qi < tokens) {
      const float l = key_fold(lsum[r], 0);
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      __global float *o = out + ((size_t)b * tokens + qi) * heads * DH + (size_t)h * DH;
      #pragma unroll
      for (uint e = 0; e < DD; e++)
        DSTORE(acc[r][e] * inv, o + e * DV);
#if SAVE_LSE
      lse[((size_t)b * heads + h) * tokens + qi] =
          l > 0.0f ? fma(m[r], M_LN2_F, log(l)) : -INFINITY;
#endif
    }
  }
}
