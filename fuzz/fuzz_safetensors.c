/* libFuzzer harness: any bytes as a safetensors file. Everything a loader
 * would touch is exercised: every tensor's info, lookup by name, raw bytes
 * and f32 conversion, and all metadata. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <m2pt/io.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  m2pt_safetensors *st = NULL;
  if (m2pt_safetensors_open_memory(data, size, &st) != M2PT_OK) {
    if (st)
      abort(); /* a failed open returns no object */
    return 0;
  }
  const size_t count = m2pt_safetensors_count(st);
  for (size_t i = 0; i < count; i++) {
    m2pt_safetensors_info info;
    size_t found;
    if (m2pt_safetensors_info_at(st, i, &info) != M2PT_OK ||
        m2pt_safetensors_find(st, info.name, &found) != M2PT_OK || found != i)
      abort();
    const void *raw;
    size_t nbytes;
    if (m2pt_safetensors_raw(st, i, &raw, &nbytes) != M2PT_OK || nbytes != info.nbytes ||
        info.offset + nbytes > size)
      abort();
    /* Touch every byte so ASan sees any read past the input. */
    volatile unsigned char sink = 0;
    for (size_t b = 0; b < nbytes; b++)
      sink ^= ((const unsigned char *)raw)[b];
    (void)sink;
    float *f = malloc(info.numel ? info.numel * sizeof *f : 1);
    if (!f)
      continue;
    const m2pt_status s = m2pt_safetensors_read_f32(st, i, f, info.numel);
    const int convertible = info.dtype == M2PT_DTYPE_F32 || info.dtype == M2PT_DTYPE_F16 ||
                            info.dtype == M2PT_DTYPE_BF16;
    if ((s == M2PT_OK) != convertible)
      abort();
    free(f);
  }
  const size_t meta = m2pt_safetensors_metadata_count(st);
  for (size_t i = 0; i < meta; i++) {
    const char *key, *value, *again;
    if (m2pt_safetensors_metadata_at(st, i, &key, &value) != M2PT_OK ||
        m2pt_safetensors_metadata(st, key, &again) != M2PT_OK || again != value)
      abort();
    (void)strlen(value);
  }
  m2pt_safetensors_close(st);
  return 0;
}
