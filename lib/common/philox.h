/* Philox-4x32-10 on the host (Salmon et al., SC 2011; the same generator as
 * cl/dropout.cl) and the draws the library makes from it on the host. */
#ifndef M2PT_COMMON_PHILOX_H
#define M2PT_COMMON_PHILOX_H

#include <stddef.h>
#include <stdint.h>

/* out = Philox-4x32-10(counter, key). */
void m2pt_philox(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);

/* n values of a normal of standard deviation `std` truncated to ±2·std,
 * value i from counter (i, r, 0, 0xFFFFFFFF) with r = 0, 1, … until a draw
 * falls inside, key (seed mod 2^32, seed / 2^32): Box-Muller on words 0 and
 * 1, u = (w + 0.5)/2^32, z = √(−2 ln u0)·cos(2π u1) (model_grad.h). */
void m2pt_trunc_normal(uint64_t seed, float std, float *dst, size_t n);

#endif
