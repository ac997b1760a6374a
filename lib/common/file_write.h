/* Writing files: the one atomic writer every layer uses (checkpoints, .npy
 * outputs, the binary cache), and mkdir -p. No OpenCL. */
#ifndef M2PT_COMMON_FILE_WRITE_H
#define M2PT_COMMON_FILE_WRITE_H

#include <stddef.h>

#include "m2pt/status.h"

/* A piece of a file to write. */
typedef struct m2pt_chunk {
  const void *data;
  size_t size;
} m2pt_chunk;

/* Writes the chunks, in order, to `path` as cp would (lib/common/file_write.c):
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

#endif
