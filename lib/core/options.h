/* Reading the caller's option structs, which start with `size_t
 * struct_size` (the sizeof the caller compiled with), so that a struct can
 * grow without breaking applications built against an older header. */
#ifndef M2PT_CORE_OPTIONS_H
#define M2PT_CORE_OPTIONS_H

#include <stddef.h>

#include "m2pt/context.h"

/* min_size below is the size a struct had when it was first released
 * (0.2.0 for all of them): the smallest struct_size an application can have
 * been built with. A field added later leaves it as it is, so each user of
 * these calls names it as a constant of its own (e.g. CONFIG_SIZE_0_2). */

/* Copies the caller's struct `src` over `dst` (`size` bytes, already holding
 * the library's defaults), as far as src->struct_size reaches: fields a
 * caller's older header lacks keep their defaults; dst->struct_size becomes
 * `size`. src NULL keeps the defaults. `type` and `fn` name the struct and
 * the call in messages (on ctx, or the thread's when NULL).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (struct_size below min_size, the
 * struct's first released size: never set), M2PT_ERR_UNSUPPORTED (larger than this library's struct: built
 * against a newer m2pt). */
m2pt_status m2pt_options_read(const m2pt_context *ctx, void *dst, size_t size, size_t min_size,
                              const void *src, const char *type, const char *fn);

/* Copies the library's struct `src` (`size` bytes) into the caller's `dst`
 * as far as dst->struct_size reaches, keeping dst->struct_size.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (struct_size never set). */
m2pt_status m2pt_options_write(const m2pt_context *ctx, void *dst, const void *src, size_t size,
                               size_t min_size, const char *type, const char *fn);

#endif
