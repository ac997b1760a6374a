/* lib/common on its own: linked without OpenCL and without core (the build
 * of this test is part of the check), its writer's replacement of files the
 * library owns, mkdir -p, the bounded reader, the thread's messages, and
 * the large-array allocator. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/file_read.h"
#include "common/file_write.h"
#include "common/host_pages.h"

static char dir[] = "/tmp/m2pt-test-common-XXXXXX";

static const char *at(const char *name)
{
  static char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return path;
}

static void assert_contents(const char *path, const char *text)
{
  unsigned char *data;
  size_t size;
  assert_int_equal(m2pt_read_file(path, 1 << 20, &data, &size), M2PT_OK);
  assert_int_equal(size, strlen(text));
  assert_string_equal((const char *)data, text); /* NUL-terminated */
  free(data);
}

static void assert_message_has(const char *part)
{
  if (!strstr(m2pt_thread_error(), part))
    fail_msg("message \"%s\" lacks \"%s\"", m2pt_thread_error(), part);
}

static m2pt_status replace_with(const char *path, const char *text)
{
  const m2pt_chunk chunks[2] = {{text, 3}, {text + 3, strlen(text) - 3}};
  return m2pt_replace_file(path, chunks, 2);
}

/* A FIFO, a symlink or a directory tree is at the name: the first two are
 * replaced (not waited on, not written through), a directory is refused. */
static void replace_file_replaces_what_is_there(void **state)
{
  (void)state;
  char path[256];
  snprintf(path, sizeof path, "%s", at("entry"));
  assert_int_equal(replace_with(path, "first entry"), M2PT_OK);
  assert_contents(path, "first entry");
  assert_int_equal(chmod(path, 0640), 0);
  assert_int_equal(replace_with(path, "second entry"), M2PT_OK);
  assert_contents(path, "second entry");
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 07777, 0640); /* kept */

  snprintf(path, sizeof path, "%s", at("fifo"));
  assert_int_equal(mkfifo(path, 0644), 0);
  alarm(10); /* a writer that opens the FIFO would wait for a reader */
  assert_int_equal(replace_with(path, "not into the fifo"), M2PT_OK);
  alarm(0);
  assert_int_equal(lstat(path, &sb), 0);
  assert_true(S_ISREG(sb.st_mode));

  char target[256];
  snprintf(target, sizeof target, "%s", at("target"));
  assert_int_equal(replace_with(target, "the target"), M2PT_OK);
  snprintf(path, sizeof path, "%s", at("link"));
  assert_int_equal(symlink(target, path), 0);
  assert_int_equal(replace_with(path, "the link's own"), M2PT_OK);
  assert_int_equal(lstat(path, &sb), 0);
  assert_true(S_ISREG(sb.st_mode));
  assert_contents(target, "the target");

  snprintf(path, sizeof path, "%s", at("dir"));
  assert_int_equal(mkdir(path, 0755), 0);
  assert_int_equal(replace_with(path, "not a dir"), M2PT_ERR_IO);
  assert_message_has(path);
}

static void make_dirs_creates_parents(void **state)
{
  (void)state;
  char path[256];
  snprintf(path, sizeof path, "%s", at("a/b/c"));
  assert_int_equal(m2pt_make_dirs(path), M2PT_OK);
  assert_int_equal(m2pt_make_dirs(path), M2PT_OK); /* existing is fine */
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_true(S_ISDIR(sb.st_mode));

  /* A file where a parent should be: the message names the directory. */
  assert_int_equal(replace_with(at("a/file"), "a file"), M2PT_OK);
  snprintf(path, sizeof path, "%s", at("a/file/sub"));
  errno = 0;
  assert_int_equal(m2pt_make_dirs(path), M2PT_ERR_IO);
  assert_int_not_equal(errno, 0);
  assert_message_has("cannot create the directory");
  assert_message_has("a/file/sub");
}

static void read_file_is_bounded(void **state)
{
  (void)state;
  assert_int_equal(replace_with(at("small"), "0123456789"), M2PT_OK);
  unsigned char *data = (unsigned char *)"untouched";
  size_t size = 99;
  assert_int_equal(m2pt_read_file(at("small"), 9, &data, &size), M2PT_ERR_IO);
  assert_null(data);
  assert_int_equal(size, 0);
  assert_message_has("10 bytes, more than the 9 allowed");
  assert_int_equal(m2pt_read_file(at("missing"), 100, &data, &size), M2PT_ERR_IO);
  assert_message_has("cannot open: No such file or directory");
  assert_int_equal(mkfifo(at("fifo2"), 0644), 0);
  assert_int_equal(m2pt_read_file(at("fifo2"), 100, &data, &size), M2PT_ERR_IO);
  assert_message_has("not a regular file");

  /* The primitive sets errno only. */
  m2pt_fail_thread(M2PT_ERR_IO, "earlier");
  struct stat sb;
  assert_int_equal(m2pt_open_regular(at("fifo2"), 100, &sb), -1);
  assert_int_equal(errno, EINVAL);
  assert_int_equal(m2pt_open_regular(at("small"), 9, &sb), -1);
  assert_int_equal(errno, EFBIG);
  assert_string_equal(m2pt_thread_error(), "earlier");
}

static void status_strings_and_messages(void **state)
{
  (void)state;
  assert_string_equal(m2pt_status_string(M2PT_OK), "M2PT_OK");
  assert_string_equal(m2pt_status_string(M2PT_ERR_NOT_FOUND), "M2PT_ERR_NOT_FOUND");
  assert_string_equal(m2pt_status_string((m2pt_status)9999), "M2PT_ERR_UNKNOWN");
  assert_int_equal(m2pt_fail_thread(M2PT_ERR_FORMAT, "bad %s %d", "thing", 7), M2PT_ERR_FORMAT);
  assert_string_equal(m2pt_thread_error(), "bad thing 7");
}

static int remove_dir(void **state)
{
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static int make_dir(void **state)
{
  (void)state;
  return mkdtemp(dir) ? 0 : -1;
}

/* 2 MiB aligned from 2 MiB on, 64 bytes below, all of it writable, sizes
 * that cannot be had refused. */
static void host_pages_are_aligned(void **state)
{
  (void)state;
  const size_t sizes[] = {1, 4096, (2u << 20) - 1, 2u << 20, 9437184};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    unsigned char *p = m2pt_host_pages_alloc(sizes[i]);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % (sizes[i] < (2u << 20) ? 64u : 2u << 20), 0);
    memset(p, 0xa5, sizes[i]);
    assert_int_equal(p[sizes[i] - 1], 0xa5);
    m2pt_host_pages_free(p);
  }
  assert_null(m2pt_host_pages_alloc(0));
  assert_null(m2pt_host_pages_alloc(SIZE_MAX));
  assert_null(m2pt_host_pages_alloc(SIZE_MAX - (1u << 20)));
  m2pt_host_pages_free(NULL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(replace_file_replaces_what_is_there),
      cmocka_unit_test(make_dirs_creates_parents),
      cmocka_unit_test(read_file_is_bounded),
      cmocka_unit_test(status_strings_and_messages),
      cmocka_unit_test(host_pages_are_aligned),
  };
  return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
