/* Philox-4x32-10 (Salmon, Moraes, Dror, Shaw, SC 2011; Random123's
 * philox4x32_R with R = 10) and the dropout and drop-path masks drawn from
 * it (lib/ops/dropout.c). Only 32-bit integer multiplies, xors and adds, so
 * every device gives the same bits; Random123's known-answer vectors are
 * checked on the device by tests/test_dropout.c through m2pt_philox_blocks. */

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* the golden ratio */
#define PHILOX_W1 0xBB67AE85u /* √3 − 1 */

static uint4 philox4x32_10(uint4 ctr, uint2 key)
{
  for (int round = 0; round < 10; round++) {
    if (round > 0) {
      key.x += PHILOX_W0;
      key.y += PHILOX_W1;
    }
    const uint hi0 = mul_hi(PHILOX_M0, ctr.x), lo0 = PHILOX_M0 * ctr.x;
    const uint hi1 = mul_hi(PHILOX_M1, ctr.z), lo1 = PHILOX_M1 * ctr.z;
    ctr = (uint4)(hi1 ^ ctr.y ^ key.x, lo1, hi0 ^ ctr.w ^ key.y, lo0);
  }
  return ctr;
}

/* out[4g..4g+3] = Philox((c.x + g, c.y, c.z, c.w), key): raw blocks, for the
 * known-answer tests. */
__kernel void m2pt_philox_blocks(const uint4 c, const uint2 key, __global uint *out)
{
  const uint g = get_global_id(0);
  const uint4 r = philox4x32_10((uint4)(c.x + g, c.y, c.z, c.w), key);
  vstore4(r, g, out);
}

/* y = keep ? x·scale : 0 over n elements, four per work-item from one draw
 * with counter (g mod 2^32, g / 2^32, step, layer). An element is dropped
 * when its word is below `threshold` (⌈p·2^32⌉, a ulong so that p = 1 drops
 * all). Each work-item reads and writes only its own elements: y may be x.
 * The backward is the same kernel on dy with the same key. */
__kernel void m2pt_dropout(__global const float *x, __global float *y, const ulong n,
                           const ulong threshold, const float scale, const uint2 key,
                           const uint step, const uint layer)
{
  const ulong g = get_global_id(0);
  const uint4 r = philox4x32_10((uint4)((uint)g, (uint)(g >> 32), step, layer), key);
  const uint words[4] = {r.x, r.y, r.z, r.w};
  for (uint k = 0; k < 4; k++) {
    const ulong i = 4 * g + k;
    if (i < n)
      y[i] = (ulong)words[k] >= threshold ? x[i] * scale : 0.0f;
  }
}

/* Per sample: x is [rows][per_sample]; sample b is dropped when word 0 of
 * Philox((b, 2^31, step, layer), key) is below threshold. One work-item per
 * element, each drawing its sample's word again (ten rounds: cheap beside a
 * memory-bound pass, and no second kernel). y may be x. */
__kernel void m2pt_drop_path(__global const float *x, __global float *y, const ulong n,
                             const ulong per_sample, const ulong threshold, const float scale,
                             const uint2 key, const uint step, const uint layer)
{
  const ulong i = get_global_id(0);
  if (i >= n)
    return;
  const ulong b = i / per_sample;
  const uint4 r =
      philox4x32_10((uint4)((uint)b, (uint)(b >> 32) | 0x80000000u, step, layer), key);
  y[i] = (ulong)r.x >= threshold ? x[i] * scale : 0.0f;
}
