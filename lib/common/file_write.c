/* The one file writer. Output files are written the way cp writes them
 * (README "Checkpoint files"): a regular file is replaced atomically (through
 * a symlink, at the link's target), keeping its mode and owner; devices and
 * FIFOs are written in place; a regular file with several hard links is
 * rewritten in place so the links stay. Files the library owns (cache
 * entries) get the same atomic replacement without cp's rules for special
 * files (m2pt_replace_file).
 *
 * The atomic replacement writes an unnamed O_TMPFILE file, so a process that
 * dies while writing (even by SIGKILL) leaves nothing: only for the few
 * microseconds between linkat and rename does the file have a name. Where the
 * filesystem has no O_TMPFILE a named temporary is written instead; the tools'
 * signal handlers remove it (m2pt_remove_temporaries) and the next write of
 * the same target removes one left by SIGKILL. */
/* O_TMPFILE, O_PATH, fallocate and flock are Linux/BSD, not POSIX. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "file_write.h"

/* Temporary names: TEMP_PREFIX, 16 hex digits of the target name's hash, '.'
 * and 6 letters or digits. The hash ties a stale temporary to its target, and
 * the fixed length keeps names of up to NAME_MAX bytes writable. */
#define TEMP_PREFIX ".m2pt-tmp."
enum {
  TEMP_HASH_END = sizeof TEMP_PREFIX - 1 + 16, /* where the '.' before the suffix is */
  TEMP_LEN = TEMP_HASH_END + 1 + 6,
};
_Static_assert(TEMP_LEN + 1 == M2PT_TEMP_NAME_SIZE, "M2PT_TEMP_NAME_SIZE is out of date");

static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

void m2pt_temp_name(const char *name, char out[M2PT_TEMP_NAME_SIZE])
{
  uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)name; *p; p++)
    h = (h ^ *p) * 0x100000001b3u;
  snprintf(out, M2PT_TEMP_NAME_SIZE, TEMP_PREFIX "%016llx.XXXXXX", (unsigned long long)h);
}

/* Fills the 6 X's: unique enough that O_EXCL or linkat rarely has to retry. */
static void randomize(char name[M2PT_TEMP_NAME_SIZE])
{
  static atomic_uint_fast64_t counter;
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  uint64_t x = ((uint64_t)getpid() << 32) ^ (uint64_t)t.tv_nsec ^ ((uint64_t)t.tv_sec << 30) ^
               atomic_fetch_add(&counter, 0x9e3779b97f4a7c15u);
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u; /* splitmix64's finalizer */
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
  x ^= x >> 31;
  for (int i = TEMP_HASH_END + 1; i < TEMP_LEN; i++, x /= 62)
    name[i] = alnum[x % 62];
}

/* ---- named temporaries a signal handler may remove ---------------------- */

/* One slot per writer: `used` while a write holds it, `armed` while its
 * name may exist on disk. The name is published before the file gets it
 * (openat or linkat), so no moment passes with a name the handler cannot
 * see; `seq` (odd while the name is rewritten) lets the handler, which may
 * interrupt any thread, skip a slot that changed under its copy. Lock-free
 * atomics are async-signal-safe. A write that finds no free slot (more than
 * TEMP_SLOTS at once) is merely unprotected. */
enum { TEMP_SLOTS = 16 };
static struct {
  atomic_int used, armed;
  atomic_uint seq;
  int dir;
  char name[M2PT_TEMP_NAME_SIZE];
} temps[TEMP_SLOTS];

static int claim(void)
{
  for (int i = 0; i < TEMP_SLOTS; i++) {
    int expected = 0;
    if (atomic_compare_exchange_strong(&temps[i].used, &expected, 1))
      return i;
  }
  return -1;
}

/* Arms `slot` with `name` in `dir`, before the file takes that name. */
static void publish(int slot, int dir, const char *name)
{
  if (slot < 0)
    return;
  atomic_store(&temps[slot].armed, 0);
  atomic_fetch_add(&temps[slot].seq, 1);
  temps[slot].dir = dir;
  memcpy(temps[slot].name, name, M2PT_TEMP_NAME_SIZE);
  atomic_fetch_add(&temps[slot].seq, 1);
  atomic_store(&temps[slot].armed, 1);
}

static void disarm(int slot)
{
  if (slot >= 0)
    atomic_store(&temps[slot].armed, 0);
}

static void release(int slot)
{
  if (slot >= 0) {
    atomic_store(&temps[slot].armed, 0);
    atomic_store(&temps[slot].used, 0);
  }
}

void m2pt_remove_temporaries(void)
{
  for (int i = 0; i < TEMP_SLOTS; i++) {
    const unsigned seq = atomic_load(&temps[i].seq);
    if ((seq & 1) || !atomic_load(&temps[i].armed))
      continue;
    char name[M2PT_TEMP_NAME_SIZE];
    const int dir = temps[i].dir;
    memcpy(name, temps[i].name, sizeof name);
    /* A name not yet taken, or already renamed away, is not there: unlinking
     * it does nothing. */
    if (atomic_load(&temps[i].seq) == seq && atomic_load(&temps[i].armed))
      unlinkat(dir, name, 0);
  }
}

/* ---- stale temporaries -------------------------------------------------- */

/* When this process started, in nanoseconds since the epoch: /proc gives it
 * in clock ticks (10 ms) after boot, which CLOCK_BOOTTIME counts from; -1
 * where /proc says nothing. */
static long long process_start(void)
{
#ifndef CLOCK_BOOTTIME
  return -1;
#else
  char buf[1024];
  FILE *f = fopen("/proc/self/stat", "re");
  if (!f)
    return -1;
  const size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* starttime is field 22; the command name (field 2, in parentheses) may
   * hold spaces, so count from the last ')'. */
  const char *p = strrchr(buf, ')');
  for (int field = 2; p && field < 22; field++)
    p = strchr(p + 1, ' ');
  const long hz = sysconf(_SC_CLK_TCK);
  struct timespec now, up;
  if (!p || hz <= 0 || clock_gettime(CLOCK_REALTIME, &now) != 0 ||
      clock_gettime(CLOCK_BOOTTIME, &up) != 0)
    return -1;
  const long long ticks = strtoll(p + 1, NULL, 10);
  const long long ns = 1000000000;
  return now.tv_sec * ns + now.tv_nsec - (up.tv_sec * ns + up.tv_nsec) + ticks * (ns / hz);
#endif
}

/* Removes temporaries of ours for `name` in `dir` left by a process killed
 * while writing: our exact name pattern for this target, a regular file last
 * written before this process started, and not flock'ed (a live writer holds
 * its lock until the rename). Nothing else is opened, so no FIFO either. */
static void remove_stale(int dir, const char *name)
{
  const long long start = process_start();
  const int fd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd >= 0 && start >= 0 ? fdopendir(fd) : NULL;
  if (!d) {
    if (fd >= 0)
      close(fd);
    return;
  }
  char pattern[M2PT_TEMP_NAME_SIZE];
  m2pt_temp_name(name, pattern);
  for (struct dirent *e; (e = readdir(d));) {
    const char *n = e->d_name;
    if (strlen(n) != TEMP_LEN || memcmp(n, pattern, TEMP_HASH_END + 1) != 0 ||
        strspn(n + TEMP_HASH_END + 1, alnum) != TEMP_LEN - TEMP_HASH_END - 1)
      continue;
    struct stat sb;
    if (fstatat(dir, n, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode) ||
        sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec >= start)
      continue;
    const int t = openat(dir, n, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (t < 0)
      continue;
    if (flock(t, LOCK_EX | LOCK_NB) == 0)
      unlinkat(dir, n, 0);
    close(t);
  }
  closedir(d);
}

/* ---- writing ------------------------------------------------------------ */

typedef struct output {
  const char *path; /* as the caller gave it, for messages */
  const m2pt_chunk *chunks;
  size_t count;
  int in_place_ok; /* cp's rules: write in place what cannot be replaced */
} output;

static int write_all(int fd, const unsigned char *p, size_t n)
{
  while (n > 0) {
    const size_t step = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
    const ssize_t w = write(fd, p, step);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Writes every chunk to fd; the failed step in *what (errno set). */
static int write_chunks(int fd, const output *o, const char **what)
{
  for (size_t i = 0; i < o->count; i++)
    if (o->chunks[i].size && write_all(fd, o->chunks[i].data, o->chunks[i].size) != 0) {
      *what = "write";
      return -1;
    }
  return 0;
}

static m2pt_status io_error(const output *o, const char *what, int e)
{
  return m2pt_fail_thread(M2PT_ERR_IO, "%s: cannot %s: %s", o->path, what, strerror(e));
}

/* Devices, FIFOs and multiply-linked regular files: written through `path`
 * itself, as cp does. Opening a FIFO waits for a reader. A regular file is
 * not crash-atomic here; its space is reserved first where the filesystem
 * can, so running out of it leaves the old contents. */
static m2pt_status write_in_place(const output *o)
{
  const int fd = open(o->path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
  if (fd < 0)
    return io_error(o, "open it for writing", errno);
  struct stat sb;
  const char *what = NULL;
  if (fstat(fd, &sb) != 0)
    what = "stat";
  const int regular = !what && S_ISREG(sb.st_mode);
  off_t total = 0;
  for (size_t i = 0; i < o->count; i++)
    total += (off_t)o->chunks[i].size;
#ifdef FALLOC_FL_KEEP_SIZE
  if (regular && total > 0 && fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, total) != 0 &&
      (errno == ENOSPC || errno == EDQUOT || errno == EFBIG))
    what = "reserve space";
#endif
  if (!what)
    write_chunks(fd, o, &what);
  if (!what && regular && ftruncate(fd, total) != 0)
    what = "truncate";
  /* Pipes and most character devices cannot sync; that is no failure. */
  if (!what && fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
    what = "sync";
  int e = what ? errno : 0;
  if (close(fd) != 0 && !what && errno != EINTR) {
    what = "close";
    e = errno;
  }
  return what ? io_error(o, what, e) : M2PT_OK;
}

/* The path whose creation a dangling symlink at `path` asks for (cp creates
 * a missing symlink target); `path` itself when it is no symlink. */
static char *follow_dangling(const char *path)
{
  char *p = strdup(path);
  for (int hops = 0; p && hops < 40; hops++) {
    struct stat sb;
    char link[PATH_MAX];
    const ssize_t n = lstat(p, &sb) == 0 && S_ISLNK(sb.st_mode)
                          ? readlink(p, link, sizeof link - 1) : -1;
    if (n < 0)
      return p;
    link[n] = '\0';
    const char *slash = strrchr(p, '/');
    const size_t keep = link[0] == '/' || !slash ? 0 : (size_t)(slash - p) + 1;
    char *next = malloc(keep + (size_t)n + 1);
    if (next) {
      memcpy(next, p, keep);
      memcpy(next + keep, link, (size_t)n + 1);
    }
    free(p);
    p = next;
  }
  return p; /* past 40 hops: opening the directory or creating fails with ELOOP */
}

/* Gives the new file the replaced one's owner, where this process may, and
 * its mode. */
static int keep_attributes(int fd, const struct stat *old)
{
  if (!old)
    return 0;
  /* Without the privilege for the owner, perhaps the group; else the file
   * becomes this process's own, as a file cp creates. */
  if (fchown(fd, old->st_uid, old->st_gid) != 0 && fchown(fd, (uid_t)-1, old->st_gid) != 0)
    errno = 0;
  return fchmod(fd, old->st_mode & 07777);
}

/* Creates the temporary: unnamed (O_TMPFILE) when `unnamed`, else under a
 * fresh name in `name`, published in `slot` first. -1 with errno on failure. */
static int create_temp(int dir, int unnamed, mode_t mode, char name[M2PT_TEMP_NAME_SIZE],
                       int slot)
{
#ifdef O_TMPFILE
  if (unnamed)
    return openat(dir, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);
#else
  if (unnamed) {
    errno = EOPNOTSUPP;
    return -1;
  }
#endif
  for (int tries = 0; tries < 100; tries++) {
    randomize(name);
    publish(slot, dir, name);
    const int fd = openat(dir, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode);
    if (fd >= 0)
      return fd;
    disarm(slot);
    if (errno != EEXIST)
      return -1;
  }
  return -1;
}

/* Gives the unnamed temporary a fresh name in `name`, published in `slot`
 * first. The /proc path needs no privilege; AT_EMPTY_PATH (without /proc)
 * needs CAP_DAC_READ_SEARCH. */
static int name_temp(int fd, int dir, char name[M2PT_TEMP_NAME_SIZE], int slot)
{
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  for (int tries = 0; tries < 100; tries++) {
    randomize(name);
    publish(slot, dir, name);
    int r = linkat(AT_FDCWD, proc, dir, name, AT_SYMLINK_FOLLOW);
#ifdef AT_EMPTY_PATH
    if (r != 0 && errno == ENOENT)
      r = linkat(fd, "", dir, name, AT_EMPTY_PATH);
#endif
    if (r == 0)
      return 0;
    disarm(slot);
    if (errno != EEXIST)
      return -1;
  }
  return -1;
}

/* What replace() asks its caller to do next. */
typedef enum retry { RETRY_NONE, RETRY_NAMED, RETRY_IN_PLACE } retry;

/* The errors of creating a temporary beside an existing file, or of renaming
 * it over the file, that writing the file in place (as cp does) avoids: a
 * directory this process may not write (EACCES), another user's file in a
 * sticky directory (EPERM), a bind-mounted file (EBUSY, EXDEV). */
static int in_place_avoids(int e)
{
  return e == EACCES || e == EPERM || e == EBUSY || e == EXDEV;
}

/* One attempt at the atomic replacement of `name` in `dir`. Sets *next (and
 * reports nothing) when the caller should retry another way: with a named
 * temporary where the filesystem cannot create or link an unnamed one, in
 * place where a replacement is impossible but the file may be written. */
static m2pt_status replace(const output *o, int dir, const char *name, const struct stat *old,
                           int unnamed, retry *next)
{
  *next = RETRY_NONE;
  char tmp[M2PT_TEMP_NAME_SIZE];
  m2pt_temp_name(name, tmp);
  const int slot = claim();
  /* An existing file's mode is set once the data is written; until then only
   * this process may read it. A new file gets 0666 less the umask, as cp's. */
  const int fd = create_temp(dir, unnamed, old ? 0600 : 0666, tmp, slot);
  if (fd < 0) {
    const int e = errno;
    release(slot);
    if (unnamed && (e == EOPNOTSUPP || e == EISDIR || e == EINVAL)) {
      *next = RETRY_NAMED;
      return M2PT_OK;
    }
    if (old && o->in_place_ok && in_place_avoids(e)) {
      *next = RETRY_IN_PLACE;
      return M2PT_OK;
    }
    return io_error(o, "create a temporary file beside it", e);
  }
  int named = !unnamed;
  /* Held until the rename, so that another process's remove_stale leaves a
   * temporary that is still being written alone (held by none only if a
   * remove_stale probes it at this very moment, and then it is too new). */
  (void)flock(fd, LOCK_EX | LOCK_NB);
  const char *what = NULL;
  write_chunks(fd, o, &what);
  if (!what && keep_attributes(fd, old) != 0)
    what = "set the mode";
  if (!what && fsync(fd) != 0)
    what = "sync";
  if (!what && unnamed) {
    if (name_temp(fd, dir, tmp, slot) != 0) {
      close(fd);
      release(slot);
      *next = RETRY_NAMED;
      return M2PT_OK;
    }
    named = 1;
  }
  int rename_failed = 0;
  if (!what && renameat(dir, tmp, dir, name) != 0) {
    what = "rename the temporary file into place";
    rename_failed = 1;
  }
  int e = what ? errno : 0;
  if (what && named)
    unlinkat(dir, tmp, 0);
  release(slot);
  if (close(fd) != 0 && !what && errno != EINTR) {
    what = "close"; /* after the rename: the new file is in place all the same */
    e = errno;
  }
  if (rename_failed && old && o->in_place_ok && in_place_avoids(e)) {
    *next = RETRY_IN_PLACE;
    return M2PT_OK;
  }
  if (!what)
    (void)fsync(dir); /* makes the rename durable; impossible on some filesystems */
  return what ? io_error(o, what, e) : M2PT_OK;
}

/* Replaces (or creates) the regular file `target`, which `o->path` names,
 * possibly through symlinks; `old` describes the file it replaces, if any. */
static m2pt_status replace_regular(const output *o, const char *target, const struct stat *old)
{
  const char *slash = strrchr(target, '/');
  const char *name = slash ? slash + 1 : target;
  if (!*name)
    return m2pt_fail_thread(M2PT_ERR_IO, "%s: cannot write: it names a directory", o->path);
  char *dirpath = slash ? strndup(target, slash == target ? 1 : (size_t)(slash - target))
                        : strdup(".");
  if (!dirpath)
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory", o->path);
  int dir = open(dirpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
#ifdef O_PATH
  if (dir < 0 && errno == EACCES) /* a directory we may write but not list */
    dir = open(dirpath, O_PATH | O_DIRECTORY | O_CLOEXEC);
#endif
  if (dir < 0) {
    const int e = errno;
    m2pt_fail_thread(M2PT_ERR_IO, "%s: cannot open the directory %s: %s", o->path, dirpath,
                     strerror(e));
    free(dirpath);
    return M2PT_ERR_IO;
  }
  free(dirpath);
  remove_stale(dir, name);
  const char *knob = getenv("M2PT_IO_TMPFILE");
  retry next = knob && !strcmp(knob, "off") ? RETRY_NAMED : RETRY_NONE;
  m2pt_status s = M2PT_OK;
  if (next == RETRY_NONE)
    s = replace(o, dir, name, old, 1, &next);
  if (next == RETRY_NAMED)
    s = replace(o, dir, name, old, 0, &next);
  close(dir);
  return next == RETRY_IN_PLACE ? write_in_place(o) : s;
}

m2pt_status m2pt_write_output(const char *path, const m2pt_chunk *chunks, size_t count)
{
  const output o = {path, chunks, count, 1};
  struct stat sb;
  if (stat(path, &sb) != 0) {
    if (errno != ENOENT)
      return io_error(&o, "write", errno);
    char *target = follow_dangling(path);
    if (!target)
      return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    const m2pt_status s = replace_regular(&o, target, NULL);
    free(target);
    return s;
  }
  if (S_ISDIR(sb.st_mode))
    return m2pt_fail_thread(M2PT_ERR_IO, "%s: cannot write: it is a directory", path);
  if (S_ISSOCK(sb.st_mode))
    return m2pt_fail_thread(M2PT_ERR_IO, "%s: cannot write: it is a socket", path);
  if (!S_ISREG(sb.st_mode) || sb.st_nlink > 1)
    return write_in_place(&o);
  /* cp would not write a file it may not write to either. */
  if (faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) != 0)
    return io_error(&o, "write", errno);
  /* Replace the file the name leads to. A name that does not lead back to it
   * (/proc/self/fd/N of a deleted file) gets written in place. */
  char *target = realpath(path, NULL);
  struct stat tb;
  m2pt_status s;
  if (target && lstat(target, &tb) == 0 && tb.st_dev == sb.st_dev && tb.st_ino == sb.st_ino)
    s = replace_regular(&o, target, &sb);
  else
    s = write_in_place(&o);
  free(target);
  return s;
}

m2pt_status m2pt_replace_file(const char *path, const m2pt_chunk *chunks, size_t count)
{
  const output o = {path, chunks, count, 0};
  struct stat sb;
  const int regular = lstat(path, &sb) == 0 && S_ISREG(sb.st_mode);
  return replace_regular(&o, path, regular ? &sb : NULL);
}

/* ---- directories -------------------------------------------------------- */

static m2pt_status mkdir_failed(const char *dir, int e)
{
  m2pt_fail_thread(M2PT_ERR_IO, "cannot create the directory %s: %s", dir, strerror(e));
  errno = e;
  return M2PT_ERR_IO;
}

m2pt_status m2pt_make_dirs(const char *dir)
{
  char path[4096];
  const size_t n = strlen(dir);
  if (n == 0)
    return mkdir_failed("\"\"", ENOENT);
  if (n >= sizeof path)
    return mkdir_failed(dir, ENAMETOOLONG);
  memcpy(path, dir, n + 1);
  for (char *p = path + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
      return mkdir_failed(path, errno);
    *p = '/';
  }
  return mkdir(path, 0755) == 0 || errno == EEXIST ? M2PT_OK : mkdir_failed(path, errno);
}
