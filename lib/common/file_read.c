#include "file_read.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int m2pt_open_regular(const char *path, uint64_t max_bytes, struct stat *sb, char *why,
                      size_t size)
{
  const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    snprintf(why, size, "cannot open: %s", strerror(e));
    errno = e;
    return -1;
  }
  int e = 0;
  if (fstat(fd, sb) != 0) {
    e = errno;
    snprintf(why, size, "cannot stat: %s", strerror(e));
  } else if (!S_ISREG(sb->st_mode)) {
    e = EINVAL;
    snprintf(why, size, "not a regular file");
  } else if (sb->st_size < 0 || (uintmax_t)sb->st_size > max_bytes ||
             (uintmax_t)sb->st_size > SIZE_MAX) {
    e = EFBIG;
    snprintf(why, size, "%lld bytes, more than the %llu allowed", (long long)sb->st_size,
             (unsigned long long)(max_bytes < SIZE_MAX ? max_bytes : SIZE_MAX));
  }
  if (e) {
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
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
