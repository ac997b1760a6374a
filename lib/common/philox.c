/* Philox-4x32-10 on the host. */
#include "philox.h"

#include <math.h>

void m2pt_philox(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4])
{
  uint32_t x0 = counter[0], x1 = counter[1], x2 = counter[2], x3 = counter[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; r++) {
    const uint64_t a = (uint64_t)x0 * 0xD2511F53u, b = (uint64_t)x2 * 0xCD9E8D57u;
    const uint32_t y0 = (uint32_t)(b >> 32) ^ x1 ^ k0, y2 = (uint32_t)(a >> 32) ^ x3 ^ k1;
    x1 = (uint32_t)b;
    x3 = (uint32_t)a;
    x0 = y0;
    x2 = y2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = x0;
  out[1] = x1;
  out[2] = x2;
  out[3] = x3;
}

void m2pt_trunc_normal(uint64_t seed, float std, float *dst, size_t n)
{
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  const double two_pi = 6.283185307179586476925286766559;
  for (size_t i = 0; i < n; i++) {
    double z = 0.0;
    for (uint32_t r = 0;; r++) {
      const uint32_t ctr[4] = {(uint32_t)i, r, 0u, 0xFFFFFFFFu};
      uint32_t w[4];
      m2pt_philox(ctr, key, w);
      const double u0 = ((double)w[0] + 0.5) / 4294967296.0;
      const double u1 = ((double)w[1] + 0.5) / 4294967296.0;
      z = sqrt(-2.0 * log(u0)) * cos(two_pi * u1);
      if (z >= -2.0 && z <= 2.0)
        break;
    }
    dst[i] = (float)(z * std);
  }
}
