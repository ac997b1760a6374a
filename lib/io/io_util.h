/* Shared by the checkpoint readers and writers: little-endian loads, UTF-8
 * checks and the half-precision conversions. Files are read and written
 * through lib/common (file_read.h, file_write.h). */
#ifndef M2PT_IO_IO_UTIL_H
#define M2PT_IO_IO_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "common/file_read.h"
#include "common/file_write.h"
#include "common/size_math.h"
#include "m2pt/io.h"
#include "m2pt/status.h"

/* The largest integer every JSON reader keeps exactly (2^53). */
#define M2PT_IO_MAX_EXACT 9007199254740992.0

/* Where the reference implementation puts a dtype in its write order
 * (larger first); -1 outside the enum. */
int m2pt_dtype_rank(m2pt_dtype dtype);

static inline uint64_t m2pt_load_le64(const unsigned char *p)
{
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static inline uint32_t m2pt_load_le32(const unsigned char *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint16_t m2pt_load_le16(const unsigned char *p)
{
  return (uint16_t)(p[0] | p[1] << 8);
}

/* 1 when the `size` bytes are well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF). */
int m2pt_utf8_valid(const unsigned char *s, size_t size);

/* IEEE binary16 and bfloat16 to f32, exactly (f32 holds every value of both;
 * NaN payloads are kept). */
float m2pt_f16_to_f32(uint16_t h);
float m2pt_bf16_to_f32(uint16_t b);

/* Converts n little-endian f32 values at src (any alignment) to dst; src may
 * be dst itself. */
void m2pt_load_f32_le(float *dst, const unsigned char *src, size_t n);

/* f32 to binary16 / bfloat16 when `f` is exactly representable there (NaN
 * payloads included): 1 and *out set, else 0. */
int m2pt_f32_to_f16_exact(float f, uint16_t *out);
int m2pt_f32_to_bf16_exact(float f, uint16_t *out);

#endif
