#include "file_read.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"

/* m2pt_open_regular, with the system call that failed in *step (NULL when
 * the file was opened but refused) for m2pt_open_input's message. */
static int open_regular(const char *path, uint64_t max_bytes, struct stat *sb, const char **step)
{
  memset(sb, 0, sizeof *sb);
  *step = "open";
  const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return -1;
  int e = 0;
  if (fstat(fd, sb) != 0) {
    e = errno;
    *step = "stat";
  } else if (!S_ISREG(sb->st_mode)) {
    e = EINVAL;
    *step = NULL;
  } else if (sb->st_size < 0 || (uintmax_t)sb->st_size > max_bytes ||
             (uintmax_t)sb->st_size > SIZE_MAX) {
    e = EFBIG;
    *step = NULL;
  }
  if (e) {
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

int m2pt_open_regular(const char *path, uint64_t max_bytes, struct stat *sb)
{
  const char *step;
  return open_regular(path, max_bytes, sb, &step);
}

m2pt_status m2pt_open_input(const char *path, uint64_t max_bytes, struct stat *sb, int *fd)
{
  const char *step;
  *fd = open_regular(path, max_bytes, sb, &step);
  if (*fd >= 0)
    return M2PT_OK;
  const int e = errno;
  if (step)
    return m2pt_fail_thread(M2PT_ERR_IO, "%s: cannot %s: %s", path, step, strerror(e));
  if (e == EINVAL)
    return m2pt_fail_thread(M2PT_ERR_IO, "%s: not a regular file", path);
  return m2pt_fail_thread(M2PT_ERR_IO, "%s: %lld bytes, more than the %llu allowed", path,
                          (long long)sb->st_size,
                          (unsigned long long)(max_bytes < SIZE_MAX ? max_bytes : SIZE_MAX));
}

m2pt_status m2pt_read_file(const char *path, uint64_t max_bytes, unsigned char **data,
                           size_t *size)
{
  *data = NULL;
  *size = 0;
  struct stat sb;
  int fd;
  /* Room for the NUL. */
  M2PT_TRY(m2pt_open_input(path, max_bytes < SIZE_MAX - 1 ? max_bytes : SIZE_MAX - 1, &sb, &fd));
  const size_t n = (size_t)sb.st_size;
  unsigned char *buf = malloc(n + 1);
  if (!buf) {
    close(fd);
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu bytes", path, n);
  }
  const int r = m2pt_read_at(fd, buf, n, 0);
  const int e = errno;
  close(fd);
  if (r != 0) {
    free(buf);
    return r < 0 ? m2pt_fail_thread(M2PT_ERR_IO, "%s: cannot read: %s", path, strerror(e))
                 : m2pt_fail_thread(M2PT_ERR_IO, "%s: shrank while it was being read", path);
  }
  buf[n] = '\0';
  *data = buf;
  *size = n;
  return M2PT_OK;
}

int m2pt_read_at(int fd, void *buf, size_t n, uint64_t offset)
{
  unsigned char *p = buf;
  while (n > 0) {
    const off_t at = (off_t)offset;
    if (at < 0 || (uint64_t)at != offset) {
      errno = EOVERFLOW;
      return -1;
    }
    /* Linux reads at most about 2 GiB a call. */
    const size_t step = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
    const ssize_t got = pread(fd, p, step, at);
    if (got < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (got == 0)
      return 1;
    p += got;
    n -= (size_t)got;
    offset += (uint64_t)got;
  }
  return 0;
}

int m2pt_file_unchanged(int fd, const struct stat *opened)
{
  struct stat now;
  return fstat(fd, &now) == 0 && now.st_size == opened->st_size &&
         now.st_mtim.tv_sec == opened->st_mtim.tv_sec &&
         now.st_mtim.tv_nsec == opened->st_mtim.tv_nsec;
}
