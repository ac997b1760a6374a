/* Reading files that another process may replace, truncate or swap for a
 * FIFO at any time (cache entries, checkpoints, inputs): nothing here blocks
 * on a special file or maps memory whose backing can shrink (a mapped file
 * truncated under a reader faults with SIGBUS; a read just comes up short). No
 * OpenCL.
 *
 * m2pt_open_input and m2pt_read_file fail by the convention (a status and
 * the thread's message, common/error.h). m2pt_open_regular, m2pt_read_at and
 * m2pt_file_unchanged are the primitives under them and keep the shape of
 * the system calls they wrap (-1 and errno, no message): a probe such as a
 * cache lookup, for which a missing or damaged file is no failure, must not
 * overwrite a message; their callers turn errno into one. */
#ifndef M2PT_COMMON_FILE_READ_H
#define M2PT_COMMON_FILE_READ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "m2pt/status.h"

/* Opens `path` read-only and close-on-exec and checks it is a regular file of
 * at most max_bytes. O_NONBLOCK keeps the open of a FIFO or device in the
 * file's place from waiting for a writer (it changes nothing for a regular
 * file). Returns the descriptor, which the caller closes, with its fstat in
 * *sb; or -1 with errno set (from open or fstat; EINVAL for not a regular
 * file, EFBIG for too large). */
int m2pt_open_regular(const char *path, uint64_t max_bytes, struct stat *sb);

/* m2pt_open_regular for an input the caller needs: the descriptor (the caller
 * closes it) in *fd and its fstat in *sb. Errors: M2PT_ERR_IO naming `path`
 * and the cause ("cannot open: No such file or directory", "not a regular
 * file", "N bytes, more than the M allowed"); *fd is then -1. */
m2pt_status m2pt_open_input(const char *path, uint64_t max_bytes, struct stat *sb, int *fd);

/* Reads the whole regular file `path` of at most max_bytes (a FIFO or device
 * in its place is refused, not waited for) into *data, malloc'd and never NULL
 * (free() it) and followed by a NUL that *size does not count, so a text file
 * is a string. Nothing stays mapped or open. Errors: M2PT_ERR_IO naming the
 * file (as m2pt_open_input; cannot read; shrank while read),
 * M2PT_ERR_OUT_OF_MEMORY; *data is then NULL and *size 0. */
m2pt_status m2pt_read_file(const char *path, uint64_t max_bytes, unsigned char **data,
                           size_t *size);

/* Reads n bytes at `offset` (pread, retried on EINTR and short reads).
 * Returns 0 when all n were read, 1 when the file ended first, -1 on an error
 * (errno set). */
int m2pt_read_at(int fd, void *buf, size_t n, uint64_t offset);

/* 1 when fstat(fd) still shows the size and modification time of *opened (the
 * file was neither truncated, extended nor written since); 0 otherwise. */
int m2pt_file_unchanged(int fd, const struct stat *opened);

#endif
