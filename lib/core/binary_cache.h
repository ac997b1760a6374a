/* The on-disk cache of program binaries. An entry is one file named by a
 * 128-bit hash of platform, device, driver version, library version, source
 * and build options; it starts with a header (magic with the format version,
 * that key again, payload size, payload hash) that is checked before the
 * binary is handed to OpenCL, so a truncated, corrupt or misplaced entry
 * (another program's, copied over this name) is rebuilt, never trusted.
 * Entries are written through common/file_write.h's atomic replacement, so
 * readers never see half a file. */
#ifndef M2PT_CORE_BINARY_CACHE_H
#define M2PT_CORE_BINARY_CACHE_H

#include <stddef.h>

#include "m2pt/context.h"
#include "m2pt/status.h"

#define M2PT_CACHE_KEY_CHARS 33 /* 32 hex digits and a NUL */

/* The entry name for (device of ctx, source text, full build options). */
void m2pt_binary_cache_key(const m2pt_context *ctx, const char *source, size_t length,
                           const char *options, char key[M2PT_CACHE_KEY_CHARS]);

typedef enum m2pt_cache_lookup {
  M2PT_CACHE_MISS,     /* no entry */
  M2PT_CACHE_HIT,      /* *data holds the binary (free() it) */
  M2PT_CACHE_CORRUPT,  /* something is there but fails the checks: not a
                          regular file (a FIFO is not waited for), over 256 MiB,
                          another format, another key, a size or hash that does
                          not match */
} m2pt_cache_lookup;

/* Looks up the entry of `key` (from m2pt_binary_cache_key) in `dir`. */
m2pt_cache_lookup m2pt_binary_cache_read(const char *dir, const char *key,
                                         unsigned char **data, size_t *size);

/* Stores an entry atomically, creating `dir` as needed; whatever is at the
 * entry's name (a damaged entry, a FIFO) is replaced. A failure only costs
 * speed, so callers may ignore it. Errors, through the thread's message
 * (common/error.h): M2PT_ERR_IO (the directory or the file cannot be made),
 * M2PT_ERR_INVALID_ARGUMENT (a key not from m2pt_binary_cache_key, size 0),
 * M2PT_ERR_OUT_OF_MEMORY. */
m2pt_status m2pt_binary_cache_write(const char *dir, const char *key,
                                    const unsigned char *data, size_t size);

/* Path of an entry into buf (for tests and messages); "" if it does not fit. */
void m2pt_binary_cache_path(const char *dir, const char *key, char *buf, size_t size);

#endif
