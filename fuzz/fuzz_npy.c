/* libFuzzer harness: any bytes as a .npy file. */
#include <stdint.h>
#include <stdlib.h>

#include <m2pt/io.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  float *values = NULL;
  size_t ndim = 0, shape[M2PT_IO_MAX_DIMS];
  if (m2pt_npy_read_memory(data, size, &values, &ndim, shape) != M2PT_OK) {
    if (values)
      abort(); /* a failed read returns nothing */
    return 0;
  }
  size_t numel = 1;
  if (ndim < 1 || ndim > M2PT_IO_MAX_DIMS)
    abort();
  for (size_t d = 0; d < ndim; d++)
    numel *= shape[d];
  if (numel * sizeof(float) > size)
    abort();
  volatile float sink = 0.0f;
  for (size_t i = 0; i < numel; i++)
    sink += values[i];
  (void)sink;
  m2pt_free(values);
  return 0;
}
