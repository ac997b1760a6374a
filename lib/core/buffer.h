/* Device buffers made for a context: created and released with its
 * allocation counters (m2pt_context_stats), and filled. */
#ifndef M2PT_CORE_BUFFER_H
#define M2PT_CORE_BUFFER_H

#include <stddef.h>

#include "cl.h"
#include "m2pt/context.h"

/* Creates a device buffer of `bytes`, zero-filled when `zero` is set, and
 * counts it in the context's stats. Checks the device's allocation limit
 * first, so an oversized request is a clear M2PT_ERR_DEVICE_OUT_OF_MEMORY. */
m2pt_status m2pt_buffer_create(m2pt_context *ctx, size_t bytes, int zero, cl_mem *out);

/* Releases a buffer made by m2pt_buffer_create. Accepts NULL. */
void m2pt_buffer_release(m2pt_context *ctx, cl_mem buffer, size_t bytes);

/* Sets the first `count` floats of a buffer to `value` (enqueued). */
m2pt_status m2pt_fill(m2pt_context *ctx, cl_mem buffer, float value, size_t count);

#endif
