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
 * regular file with several hard links, or one that may be written but not
 * replaced (EACCES, EPERM, EBUSY, EXDEV making or renaming the temporary),
 * in place (not crash-atomic). Refuses a directory or a socket. On failure
 * no temporary file is left and a replaced file is untouched. Errors: M2PT_ERR_IO (naming `path` and the
 * cause), M2PT_ERR_OUT_OF_MEMORY. */
m2pt_status m2pt_write_output(const char *path, const m2pt_chunk *chunks, size_t count);

/* Replaces whatever `path` names with a new regular file holding the chunks,
 * atomically, through the same temporary files as m2pt_write_output, for
 * files the library owns (cache entries, state): unlike cp, a symlink,
 * FIFO, device or multiply-linked file there is replaced by the rename, never
 * written through or waited on. A regular file's mode and, where the process
 * may, owner are kept; a new file gets 0666 less the umask. The directory
 * must exist (m2pt_make_dirs). Refuses a directory. On failure no temporary
 * file is left and the old file is untouched. Errors: M2PT_ERR_IO (naming
 * `path` and the cause), M2PT_ERR_OUT_OF_MEMORY. */
m2pt_status m2pt_replace_file(const char *path, const m2pt_chunk *chunks, size_t count);

/* Removes the named temporary files this process is writing right now.
 * Async-signal-safe; the public m2pt_io_remove_temporaries (lib/io) is this. */
void m2pt_remove_temporaries(void);

/* mkdir -p: creates `dir` and its missing parents (mode 0755 less the
 * umask); existing ones are fine. Errors: M2PT_ERR_IO naming the directory
 * that could not be made and why (errno is also left as mkdir set it, for
 * callers outside the convention). */
m2pt_status m2pt_make_dirs(const char *dir);

/* The size of a temporary file's name, with its NUL. */
#define M2PT_TEMP_NAME_SIZE 34

/* The name of the temporary files written for a target named `name` (its
 * last path component), with its 6 varying characters as "XXXXXX"; any
 * letters and digits there make a name m2pt_write_output takes as its own. */
void m2pt_temp_name(const char *name, char out[M2PT_TEMP_NAME_SIZE]);

#endif
