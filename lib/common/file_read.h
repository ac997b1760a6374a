/* Reading files that another process may replace, truncate or swap for a
 * FIFO at any time (cache entries, checkpoints, inputs): nothing here blocks
 * on a special file or maps memory whose backing can shrink (a mapped file
 * truncated under a reader faults with SIGBUS; a read just comes up short). No
 * OpenCL. */
#ifndef M2PT_COMMON_FILE_READ_H
#define M2PT_COMMON_FILE_READ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* Opens `path` read-only and close-on-exec and checks it is a regular file of
 * at most max_bytes. O_NONBLOCK keeps the open of a FIFO or device in the
 * file's place from waiting for a writer (it changes nothing for a regular
 * file). Returns the descriptor, which the caller closes, with its fstat in
 * *sb; or -1 with errno set (from open, fstat; EINVAL for not a regular file,
 * EFBIG for too large) and a reason for messages in why[size] ("cannot open:
 * No such file or directory", "not a regular file", ...). */
int m2pt_open_regular(const char *path, uint64_t max_bytes, struct stat *sb, char *why,
                      size_t size);

/* Reads n bytes at `offset` (pread, retried on EINTR and short reads).
 * Returns 0 when all n were read, 1 when the file ended first, -1 on an error
 * (errno set). */
int m2pt_read_at(int fd, void *buf, size_t n, uint64_t offset);

/* 1 when fstat(fd) still shows the size and modification time of *opened (the
 * file was neither truncated, extended nor written since); 0 otherwise. */
int m2pt_file_unchanged(int fd, const struct stat *opened);

#endif
