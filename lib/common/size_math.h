/* Overflow-checked size arithmetic, for every layer (the checkpoint readers
 * use it without the rest of core). */
#ifndef M2PT_COMMON_SIZE_MATH_H
#define M2PT_COMMON_SIZE_MATH_H

#include <stddef.h>

/* a·b into *out; returns 0 on overflow. */
static inline int m2pt_mul_size(size_t a, size_t b, size_t *out)
{
  if (a != 0 && b > (size_t)-1 / a)
    return 0;
  *out = a * b;
  return 1;
}

/* a + b into *out; returns 0 on overflow. */
static inline int m2pt_add_size(size_t a, size_t b, size_t *out)
{
  if (b > (size_t)-1 - a)
    return 0;
  *out = a + b;
  return 1;
}

#endif
