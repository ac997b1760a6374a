#include "io_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* rank: the position in the reference implementation's Dtype enum, which
 * orders tensors in the files it writes. */
static const struct {
  const char *name;
  size_t size;
  int rank;
} dtypes[] = {
  [M2PT_DTYPE_F32] = {"F32", 4, 15},
  [M2PT_DTYPE_F16] = {"F16", 2, 11},
  [M2PT_DTYPE_BF16] = {"BF16", 2, 12},
  [M2PT_DTYPE_F64] = {"F64", 8, 16},
  [M2PT_DTYPE_I64] = {"I64", 8, 17},
  [M2PT_DTYPE_I32] = {"I32", 4, 13},
  [M2PT_DTYPE_I16] = {"I16", 2, 9},
  [M2PT_DTYPE_I8] = {"I8", 1, 5},
  [M2PT_DTYPE_U64] = {"U64", 8, 18},
  [M2PT_DTYPE_U32] = {"U32", 4, 14},
  [M2PT_DTYPE_U16] = {"U16", 2, 10},
  [M2PT_DTYPE_U8] = {"U8", 1, 4},
  [M2PT_DTYPE_BOOL] = {"BOOL", 1, 0},
  [M2PT_DTYPE_F8_E4M3] = {"F8_E4M3", 1, 7},
  [M2PT_DTYPE_F8_E5M2] = {"F8_E5M2", 1, 6},
  [M2PT_DTYPE_F8_E8M0] = {"F8_E8M0", 1, 8},
};

int m2pt_dtype_rank(m2pt_dtype dtype)
{
  const unsigned i = (unsigned)dtype;
  return i < sizeof dtypes / sizeof dtypes[0] ? dtypes[i].rank : -1;
}

size_t m2pt_dtype_size(m2pt_dtype dtype)
{
  const unsigned i = (unsigned)dtype;
  return i < sizeof dtypes / sizeof dtypes[0] ? dtypes[i].size : 0;
}

const char *m2pt_dtype_name(m2pt_dtype dtype)
{
  const unsigned i = (unsigned)dtype;
  return i < sizeof dtypes / sizeof dtypes[0] ? dtypes[i].name : NULL;
}

void m2pt_free(void *ptr)
{
  free(ptr);
}

int m2pt_utf8_valid(const unsigned char *s, size_t size)
{
  size_t i = 0;
  while (i < size) {
    const unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t n;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return 0;
    }
    if (size - i - 1 < n)
      return 0;
    for (size_t k = 1; k <= n; k++) {
      if ((s[i + k] & 0xC0) != 0x80)
        return 0;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    i += n + 1;
  }
  return 1;
}

static float f32_from_bits(uint32_t bits)
{
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

float m2pt_f16_to_f32(uint16_t h)
{
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) /* inf, or NaN with its payload (the quiet bit lands on f32's) */
    return f32_from_bits(sign | 0x7F800000u | (mant << 13));
  if (exp != 0) /* normal: rebias 15 → 127 */
    return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
  /* zero or subnormal: mant · 2^-24, exact in f32 */
  const float v = (float)mant * 0x1p-24f;
  return sign ? -v : v;
}

float m2pt_bf16_to_f32(uint16_t b)
{
  return f32_from_bits((uint32_t)b << 16);
}

void m2pt_load_f32_le(float *dst, const unsigned char *src, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (n && (const void *)dst != (const void *)src)
    memcpy(dst, src, n * sizeof *dst);
#else
  for (size_t i = 0; i < n; i++)
    dst[i] = f32_from_bits(m2pt_load_le32(src + 4 * i));
#endif
}

static uint32_t f32_bits(float f)
{
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

/* A candidate is computed by truncation and accepted only if it converts back
 * to the same bits, so no rounding logic is needed. */
int m2pt_f32_to_f16_exact(float f, uint16_t *out)
{
  const uint32_t u = f32_bits(f);
  const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  const uint32_t exp = (u >> 23) & 0xFFu, mant = u & 0x7FFFFFu;
  uint16_t h;
  if (exp == 0xFF)
    h = (uint16_t)(sign | 0x7C00u | (mant >> 13));
  else if (exp >= 113 && exp <= 142) /* f16 normal range */
    h = (uint16_t)(sign | ((exp - 112u) << 10) | (mant >> 13));
  else {
    const float a = fabsf(f) * 0x1p24f; /* subnormal or zero: a multiple of 2^-24 */
    if (!(a < 1024.0f))
      return 0;
    h = (uint16_t)(sign | (uint16_t)a);
  }
  if (f32_bits(m2pt_f16_to_f32(h)) != u)
    return 0;
  *out = h;
  return 1;
}

int m2pt_f32_to_bf16_exact(float f, uint16_t *out)
{
  const uint32_t u = f32_bits(f);
  if (u & 0xFFFFu)
    return 0;
  *out = (uint16_t)(u >> 16);
  return 1;
}

/* The writer lives in lib/common, below io; its public name is io's. */
void m2pt_io_remove_temporaries(void)
{
  m2pt_remove_temporaries();
}
