#include "options.h"

#include <string.h>

#include "error.h"

/* The struct_size of a caller's struct. Below the size the struct first had
 * (no header ever declared a smaller one) it was never set: an all-zero or
 * uninitialised struct, or garbage that would cut a field in half. */
static m2pt_status caller_size(const m2pt_context *ctx, const void *s, size_t min_size,
                               const char *type, const char *fn, size_t *size)
{
  memcpy(size, s, sizeof *size);
  if (*size < min_size)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_ARGUMENT,
                     "%s: %s.struct_size is %zu, never set (at least %zu): start from the "
                     "header's defaults (m2pt_*_default(), m2pt_block_config_vit())",
                     fn, type, *size, min_size);
  return M2PT_OK;
}

m2pt_status m2pt_options_read(const m2pt_context *ctx, void *dst, size_t size, size_t min_size,
                              const void *src, const char *type, const char *fn)
{
  if (!src)
    return M2PT_OK;
  size_t given;
  M2PT_TRY(caller_size(ctx, src, min_size, type, fn, &given));
  if (given > size)
    return m2pt_fail(ctx, M2PT_ERR_UNSUPPORTED,
                     "%s: %s of %zu bytes comes from a newer m2pt than this library (%zu bytes)",
                     fn, type, given, size);
  memcpy(dst, src, given);
  memcpy(dst, &size, sizeof size);
  return M2PT_OK;
}

m2pt_status m2pt_options_write(const m2pt_context *ctx, void *dst, const void *src, size_t size,
                               size_t min_size, const char *type, const char *fn)
{
  size_t room;
  M2PT_TRY(caller_size(ctx, dst, min_size, type, fn, &room));
  const size_t n = room < size ? room : size;
  memcpy((char *)dst + sizeof room, (const char *)src + sizeof room, n - sizeof room);
  return M2PT_OK;
}
