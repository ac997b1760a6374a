/* Shared by the checkpoint readers and writers: whole-file reads, output
 * files, little-endian loads, UTF-8 checks and the
 * half-precision conversions. */
#ifndef M2PT_IO_IO_UTIL_H
#define M2PT_IO_IO_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "core/size_math.h"
#include "m2pt/io.h"
#include "m2pt/status.h"

/* The largest integer every JSON reader keeps exactly (2^53). */
#define M2PT_IO_MAX_EXACT 9007199254740992.0

/* Where the reference implementation puts a dtype in its write order
 * (larger first); -1 outside the enum. */
int m2pt_dtype_rank(m2pt_dtype dtype);

/* Reads the whole regular file `path` (a FIFO or device in its place is
 * refused, not waited for) into *data, malloc'd and never NULL (free() it),
 * and its length into *size. Nothing stays mapped or open.
 * Errors: M2PT_ERR_IO naming the file (cannot open or read, not a regular
 * file, shrank while read), M2PT_ERR_OUT_OF_MEMORY. */
m2pt_status m2pt_read_file(const char *path, unsigned char **data, size_t *size);

/* A piece of a file to write. */
typedef struct m2pt_chunk {
  const void *data;
  size_t size;
} m2pt_chunk;

/* Writes the chunks, in order, to `path` as cp would (lib/io/output.c):
 * a regular file, new or replaced, through an unnamed temporary file in its
 * directory (a named one where the filesystem has none), synced and renamed
 * over it, with the old file's mode and, where the process may, owner;
 * through a symlink, at its target (created if missing); a character or
 * block device or a FIFO straight into it (a FIFO waits for a reader); a
 * regular file with several hard links in place (not crash-atomic). Refuses
 * a directory or a socket. On failure no temporary file is left and a
 * replaced file is untouched. Errors: M2PT_ERR_IO (naming `path` and the
 * cause), M2PT_ERR_OUT_OF_MEMORY. */
m2pt_status m2pt_write_output(const char *path, const m2pt_chunk *chunks, size_t count);

/* The size of a temporary file's name, with its NUL. */
#define M2PT_TEMP_NAME_SIZE 34

/* The name of the temporary files written for a target named `name` (its
 * last path component), with its 6 varying characters as "XXXXXX"; any
 * letters and digits there make a name m2pt_write_output takes as its own. */
void m2pt_temp_name(const char *name, char out[M2PT_TEMP_NAME_SIZE]);

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
