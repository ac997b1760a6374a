/* Float vectors for host code, in GCC/Clang vector extensions: the
 * helpers every vectorised host op (host_math.c, host_attention.c) shares,
 * made for a given width by M2PT_HOST_VECTOR_OPS. Each is always inlined,
 * so it is compiled for the instruction set of the function that calls it
 * (a target("avx2") or target("avx512f") copy gets AVX2 or AVX-512 code),
 * and no vector crosses an ABI boundary. No OpenCL here. */
#ifndef M2PT_COMMON_HOST_VECTOR_H
#define M2PT_COMMON_HOST_VECTOR_H

#include <stdint.h>
#include <string.h>

#define M2PT_HOST_INLINE static inline __attribute__((always_inline))

/* Every helper is inlined, so no vector crosses a call: the compilers'
 * warning that passing one would change the ABI with the instruction set
 * does not apply, in the files that include this either. */
#if defined(__clang__)
#  pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#  pragma GCC diagnostic ignored "-Wpsabi"
#endif

/* Helpers over VF (LANES floats) and VI (LANES int32s), named with SUFFIX:
 *   loadS(p), storeS(p, v)   unaligned;
 *   selectS(m, a, b)         m ? a : b lane by lane, m a comparison's
 *                            all-ones or zero lanes;
 *   expS(x)                  e^x within 2 ulp (Cephes' expf: x = n·ln2 + r,
 *                            |r| ≤ ln2/2, a degree-7 polynomial in r, then
 *                            2^n through the exponent bits), x clamped to
 *                            [−87.3, 88.3], the normal range; NaN stays NaN. */
#define M2PT_HOST_VECTOR_OPS(VF, VI, SUFFIX)                                        \
  M2PT_HOST_INLINE VF load##SUFFIX(const float *p)                                \
  {                                                                               \
    VF v;                                                                         \
    memcpy(&v, p, sizeof v);                                                      \
    return v;                                                                     \
  }                                                                               \
  M2PT_HOST_INLINE void store##SUFFIX(float *p, VF v)                             \
  {                                                                               \
    memcpy(p, &v, sizeof v);                                                      \
  }                                                                               \
  M2PT_HOST_INLINE VF select##SUFFIX(VI m, VF a, VF b)                            \
  {                                                                               \
    return (VF)((m & (VI)a) | (~m & (VI)b));                                      \
  }                                                                               \
  M2PT_HOST_INLINE VF exp##SUFFIX(VF x)                                           \
  {                                                                               \
    const VF zero = {0};                                                          \
    x = select##SUFFIX(x > 88.3f, zero + 88.3f, x);                               \
    x = select##SUFFIX(x < -87.3f, zero - 87.3f, x);                              \
    /* Round x·log2(e) to the nearest integer with the 1.5·2^23 trick. */         \
    const VF n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;          \
    const VF r = (x - n * 0.693359375f) - n * -2.12194440e-4f;                    \
    VF p = r * 1.9875691500e-4f + 1.3981999507e-3f;                               \
    p = p * r + 8.3334519073e-3f;                                                 \
    p = p * r + 4.1665795894e-2f;                                                 \
    p = p * r + 1.6666665459e-1f;                                                 \
    p = p * r + 5.0000001201e-1f;                                                 \
    const VF y = p * (r * r) + r + 1.0f;                                          \
    const VI bits = (__builtin_convertvector(n, VI) + 127) << 23;                 \
    return y * (VF)bits;                                                          \
  }

#endif
