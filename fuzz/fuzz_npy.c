/* libFuzzer harness: any bytes as a .npy file, through the f32, int64 and
 * any-dtype readers. The three share one parser, so they must agree on
 * whether the framing and shape are valid; each checks its own outputs. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <m2pt/io.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t numel_of(size_t ndim, const size_t *shape)
{
  if (ndim < 1 || ndim > M2PT_IO_MAX_DIMS)
    abort();
  size_t numel = 1;
  for (size_t d = 0; d < ndim; d++)
    numel *= shape[d];
  for (size_t d = ndim; d < M2PT_IO_MAX_DIMS; d++)
    if (shape[d] != 0)
      abort();
  return numel;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  float *values = NULL;
  size_t ndim = 0, shape[M2PT_IO_MAX_DIMS];
  if (m2pt_npy_read_memory(data, size, &values, &ndim, shape) != M2PT_OK) {
    if (values)
      abort(); /* a failed read returns nothing */
  } else {
    const size_t numel = numel_of(ndim, shape);
    if (numel * sizeof(float) > size)
      abort();
    volatile float sink = 0.0f;
    for (size_t i = 0; i < numel; i++)
      sink += values[i];
    (void)sink;
    m2pt_free(values);
  }

  int64_t *ids = NULL;
  if (m2pt_npy_read_i64_memory(data, size, &ids, &ndim, shape) != M2PT_OK) {
    if (ids)
      abort();
  } else {
    const size_t numel = numel_of(ndim, shape);
    if (numel > size)
      abort(); /* every integer element takes at least one byte of the file */
    volatile int64_t sink = 0;
    for (size_t i = 0; i < numel; i++)
      sink ^= ids[i];
    (void)sink;
    m2pt_free(ids);
  }

  m2pt_npy_array a;
  memset(&a, 0xAB, sizeof a);
  if (m2pt_npy_read_any_memory(data, size, &a) != M2PT_OK) {
    static const m2pt_npy_array zero;
    if (memcmp(&a, &zero, sizeof a) != 0)
      abort(); /* a failure zeroes the whole struct */
    return 0;
  }
  const size_t elem = m2pt_dtype_size(a.dtype);
  if (elem == 0 || a.data == NULL || numel_of(a.ndim, a.shape) != a.numel ||
      a.numel * elem > size)
    abort();
  if (a.dtype == M2PT_DTYPE_BOOL)
    for (size_t i = 0; i < a.numel; i++)
      if (((const uint8_t *)a.data)[i] > 1)
        abort();
  volatile uint8_t sink = 0;
  for (size_t i = 0; i < a.numel * elem; i++)
    sink ^= ((const uint8_t *)a.data)[i];
  (void)sink;
  m2pt_free(a.data);
  return 0;
}
