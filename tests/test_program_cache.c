/* JIT program caches: in memory, on disk (binaries reused across contexts;
 * corrupt entries, entries of another program, old formats and FIFOs rebuilt;
 * unwritable directories harmless), build failures. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "core/binary_cache.h"
#include "core/context_impl.h"
#include "core/program.h"
#include "reference.h"
#include "test_util.h"

static char cache_dir[] = "/tmp/m2pt-test-cache-XXXXXX";

static m2pt_context *cached_context(const char *dir, m2pt_binary_cache mode)
{
  m2pt_context_options opts = m2pt_context_options_default();
  opts.cache_dir = dir;
  opts.binary_cache = mode;
  m2pt_context *ctx = NULL;
  assert_ok(NULL, m2pt_context_create(&opts, &ctx));
  return ctx;
}

/* A small reparameterized forward checked against the reference: the
 * programs it uses must work however they were obtained. */
static void check_forward(m2pt_context *ctx)
{
  enum { ROWS = 3, IN = 5, OUT = 4 };
  float w[IN * OUT], aux[IN * OUT], b[OUT], x[ROWS * IN], y[ROWS * OUT];
  double ref[ROWS * OUT];
  test_fill(w, IN * OUT, 1);
  test_fill(aux, IN * OUT, 2);
  test_fill(b, OUT, 3);
  test_fill(x, ROWS * IN, 4);
  m2pt_linear *l = NULL;
  assert_ok(ctx, m2pt_linear_create(ctx, IN, OUT, M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY, &l));
  assert_ok(ctx, m2pt_linear_set_weight(l, w, IN * OUT));
  assert_ok(ctx, m2pt_linear_set_aux_weight(l, aux, IN * OUT));
  assert_ok(ctx, m2pt_linear_set_bias(l, b, OUT));
  assert_ok(ctx, m2pt_linear_set_scale(l, 0.5f));
  const size_t sx[2] = {ROWS, IN}, sy[2] = {ROWS, OUT};
  m2pt_tensor *tx = test_tensor(ctx, 2, sx, x), *ty = test_tensor(ctx, 2, sy, NULL);
  assert_ok(ctx, m2pt_linear_forward(l, tx, ty));
  assert_ok(ctx, m2pt_tensor_read(ty, y, ROWS * OUT));
  ref_linear(x, ROWS, IN, OUT, w, aux, 0.5, b, NULL, ref);
  test_assert_close(y, ref, ROWS * OUT, 1e-4, "forward with cached programs");
  m2pt_tensor_destroy(tx);
  m2pt_tensor_destroy(ty);
  m2pt_linear_destroy(l);
}

static m2pt_stats stats_of(const m2pt_context *ctx)
{
  m2pt_stats s;
  assert_ok(ctx, m2pt_context_stats(ctx, &s));
  return s;
}

/* The key of `src` built without options in ctx's cache. */
static void source_key(m2pt_context *ctx, const m2pt_cl_source *src,
                       char key[M2PT_CACHE_KEY_CHARS])
{
  char full[1024];
  snprintf(full, sizeof full, "%s %s", ctx->base_build_options, "");
  m2pt_binary_cache_key(ctx, src->text, src->length, full, key);
}

/* The path of the one entry our linear program has in `dir`. */
static void entry_path(m2pt_context *ctx, char *path, size_t size)
{
  char key[M2PT_CACHE_KEY_CHARS];
  source_key(ctx, &m2pt_cl_linear, key);
  m2pt_binary_cache_path(ctx->cache_dir, key, path, size);
}

/* A program with none of linear.cl's kernels. */
static const char other_text[] = "__kernel void m2pt_other(__global float *x) { x[0] = 1.0f; }\n";
static const m2pt_cl_source other_source = {"other.cl", other_text, sizeof other_text - 1};

/* The device binary of `src` (malloc'd), built in a context without a disk
 * cache. */
static unsigned char *program_binary(const m2pt_cl_source *src, size_t *size)
{
  m2pt_context *ctx = cached_context("off", M2PT_BINARY_CACHE_ON);
  cl_program program;
  assert_ok(ctx, m2pt_program_get(ctx, src, "", &program));
  assert_int_equal(clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof *size, size, NULL),
                   CL_SUCCESS);
  unsigned char *binary = test_alloc(*size);
  unsigned char *bins[1] = {binary};
  assert_int_equal(clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL),
                   CL_SUCCESS);
  m2pt_context_destroy(ctx);
  return binary;
}

static void copy_file(const char *from, const char *to)
{
  FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
  assert_non_null(in);
  assert_non_null(out);
  char buf[65536];
  for (size_t n; (n = fread(buf, 1, sizeof buf, in)) > 0;)
    assert_int_equal(fwrite(buf, 1, n, out), n);
  fclose(in);
  assert_int_equal(fclose(out), 0);
}

static void memory_cache(void **state)
{
  (void)state;
  m2pt_context *ctx = cached_context("off", M2PT_BINARY_CACHE_ON);
  assert_null(ctx->cache_dir);
  cl_program p1, p2, p3;
  assert_ok(ctx, m2pt_program_get(ctx, &m2pt_cl_linear, "", &p1));
  assert_ok(ctx, m2pt_program_get(ctx, &m2pt_cl_linear, "", &p2));
  assert_ptr_equal(p1, p2);
  /* Other options are another program. */
  assert_ok(ctx, m2pt_program_get(ctx, &m2pt_cl_linear, "-DM2PT_TEST_VARIANT=1", &p3));
  assert_ptr_not_equal(p1, p3);
  const m2pt_stats s = stats_of(ctx);
  assert_int_equal(s.programs_built, 2);
  assert_int_equal(s.program_memory_hits, 1);
  assert_int_equal(s.binaries_written, 0);
  m2pt_context_destroy(ctx);
}

static void disk_cache_reused_across_contexts(void **state)
{
  (void)state;
  m2pt_context *first = cached_context(cache_dir, M2PT_BINARY_CACHE_ON);
  check_forward(first);
  /* One program: cl/linear.cl. */
  m2pt_stats s = stats_of(first);
  assert_int_equal(s.programs_built, 1);
  assert_int_equal(s.binaries_written, 1);
  char path[4096];
  entry_path(first, path, sizeof path);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  m2pt_context_destroy(first);

  m2pt_context *second = cached_context(cache_dir, M2PT_BINARY_CACHE_ON);
  check_forward(second);
  s = stats_of(second);
  assert_int_equal(s.programs_loaded, 1);
  assert_int_equal(s.programs_built, 0);
  assert_int_equal(s.binaries_rejected, 0);
  m2pt_context_destroy(second);
}

/* A fresh context runs the forward; its disk cache counts must be these. */
static void forward_counts(int loaded, int rejected, int built, int written)
{
  m2pt_context *ctx = cached_context(cache_dir, M2PT_BINARY_CACHE_ON);
  check_forward(ctx);
  const m2pt_stats s = stats_of(ctx);
  assert_int_equal(s.programs_loaded, loaded);
  assert_int_equal(s.binaries_rejected, rejected);
  assert_int_equal(s.programs_built, built);
  assert_int_equal(s.binaries_written, written);
  m2pt_context_destroy(ctx);
}

/* Rewrites the entry with `mutate` applied, then checks that a new context
 * rejects it, rebuilds from source, computes correctly and repairs the entry. */
static void check_rebuilt_after(void (*mutate)(const char *path))
{
  m2pt_context *ctx = cached_context(cache_dir, M2PT_BINARY_CACHE_ON);
  char path[4096];
  entry_path(ctx, path, sizeof path);
  m2pt_context_destroy(ctx);
  /* Make sure the entry exists first. */
  ctx = cached_context(cache_dir, M2PT_BINARY_CACHE_ON);
  check_forward(ctx);
  m2pt_context_destroy(ctx);

  mutate(path);
  forward_counts(0, 1, 1, 1);
  forward_counts(1, 0, 0, 0);
}

static void truncate_entry(const char *path)
{
  assert_int_equal(truncate(path, 30), 0);
}

static void flip_payload_byte(const char *path)
{
  FILE *f = fopen(path, "r+b");
  assert_non_null(f);
  assert_int_equal(fseek(f, 100, SEEK_SET), 0);
  const int c = fgetc(f);
  assert_int_equal(fseek(f, 100, SEEK_SET), 0);
  fputc(c ^ 0x5a, f);
  fclose(f);
}

/* Garbage that passes our checksum: the driver refuses it, we rebuild. */
static void replace_with_valid_garbage(const char *path)
{
  unsigned char junk[256];
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = (unsigned char)(i * 37 + 11);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  assert_non_null(slash);
  *slash = '\0';
  char key[M2PT_CACHE_KEY_CHARS];
  snprintf(key, sizeof key, "%.32s", slash + 1);
  assert_int_equal(m2pt_binary_cache_write(dir, key, junk, sizeof junk), M2PT_OK);
}

static void empty_entry(const char *path)
{
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fclose(f);
}

/* Another program's whole, valid entry copied over ours: it passes every
 * integrity check and the driver builds it, but it lacks our kernels. */
static void copy_other_programs_entry(const char *path)
{
  m2pt_context *ctx = cached_context(cache_dir, M2PT_BINARY_CACHE_ON);
  cl_program program;
  assert_ok(ctx, m2pt_program_get(ctx, &other_source, "", &program));
  char key[M2PT_CACHE_KEY_CHARS], other[4096];
  source_key(ctx, &other_source, key);
  m2pt_binary_cache_path(ctx->cache_dir, key, other, sizeof other);
  m2pt_context_destroy(ctx);
  copy_file(other, path);
}

/* Our own program's binary in the first entry format (magic "M2PTBIN1", u64
 * size, u64 XXH3-64; no key): old entries are rebuilt, not trusted. */
static void rewrite_in_format_1(const char *path)
{
  size_t size;
  unsigned char *binary = program_binary(&m2pt_cl_linear, &size);
  unsigned char header[24] = {'M', '2', 'P', 'T', 'B', 'I', 'N', '1'};
  const uint64_t fields[2] = {size, XXH3_64bits(binary, size)};
  for (int i = 0; i < 8; i++) {
    header[8 + i] = (unsigned char)(fields[0] >> (8 * i));
    header[16 + i] = (unsigned char)(fields[1] >> (8 * i));
  }
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(header, 1, sizeof header, f), sizeof header);
  assert_int_equal(fwrite(binary, 1, size, f), size);
  assert_int_equal(fclose(f), 0);
  free(binary);
}

/* Opening a FIFO for reading blocks until a writer comes: the cache must not
 * wait for one. The writer renames the rebuilt entry over it. */
static void replace_with_fifo(const char *path)
{
  assert_int_equal(unlink(path), 0);
  assert_int_equal(mkfifo(path, 0644), 0);
}

static void on_alarm(int sig)
{
  (void)sig;
  static const char msg[] = "timed out: reading the program cache blocked\n";
  if (write(2, msg, sizeof msg - 1) < 0)
    _exit(2);
  _exit(1);
}

static void corrupt_entries_are_rebuilt(void **state)
{
  (void)state;
  check_rebuilt_after(truncate_entry);
  check_rebuilt_after(flip_payload_byte);
  check_rebuilt_after(empty_entry);
  check_rebuilt_after(replace_with_valid_garbage);
}

static void other_programs_entry_is_rebuilt(void **state)
{
  (void)state;
  check_rebuilt_after(copy_other_programs_entry);
}

static void format_1_entry_is_rebuilt(void **state)
{
  (void)state;
  check_rebuilt_after(rewrite_in_format_1);
}

static void fifo_entry_is_replaced(void **state)
{
  (void)state;
  /* Generous: two builds from source, under oclgrind too. */
  signal(SIGALRM, on_alarm);
  alarm(300);
  check_rebuilt_after(replace_with_fifo);
  alarm(0);
  signal(SIGALRM, SIG_DFL);
  m2pt_context *ctx = cached_context(cache_dir, M2PT_BINARY_CACHE_ON);
  char path[4096];
  entry_path(ctx, path, sizeof path);
  m2pt_context_destroy(ctx);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_true(S_ISREG(sb.st_mode));
}

/* Defence in depth: an entry whose header is right for our key but whose
 * binary lacks a kernel (a writer's bug, say) is rebuilt from source when
 * the kernel is first asked for, and rewritten. */
static void missing_kernel_falls_back_to_source(void **state)
{
  (void)state;
  m2pt_context *ctx = cached_context(cache_dir, M2PT_BINARY_CACHE_ON);
  char key[M2PT_CACHE_KEY_CHARS];
  source_key(ctx, &m2pt_cl_linear, key);
  m2pt_context_destroy(ctx);
  size_t size;
  unsigned char *binary = program_binary(&other_source, &size);
  assert_int_equal(m2pt_binary_cache_write(cache_dir, key, binary, size), M2PT_OK);
  free(binary);

  /* Loaded, then rejected at its first missing kernel and built. */
  forward_counts(1, 1, 1, 1);
  forward_counts(1, 0, 0, 0);
}

static void unwritable_cache_only_costs_speed(void **state)
{
  (void)state;
  /* A regular file where the directory should be. */
  char blocker[] = "/tmp/m2pt-test-blocker-XXXXXX";
  const int fd = mkstemp(blocker);
  assert_true(fd >= 0);
  close(fd);
  char dir[64];
  snprintf(dir, sizeof dir, "%s/sub", blocker);
  m2pt_context *ctx = cached_context(dir, M2PT_BINARY_CACHE_ON);
  check_forward(ctx);
  const m2pt_stats s = stats_of(ctx);
  assert_int_equal(s.programs_built, 1);
  assert_int_equal(s.cache_write_failures, 1);
  assert_int_equal(s.binaries_written, 0);
  m2pt_context_destroy(ctx);
  unlink(blocker);
}

static void cache_disabled(void **state)
{
  (void)state;
  m2pt_context *ctx = cached_context(cache_dir, M2PT_BINARY_CACHE_OFF);
  assert_null(ctx->cache_dir);
  check_forward(ctx);
  assert_int_equal(stats_of(ctx).binaries_written, 0);
  m2pt_context_destroy(ctx);

  /* M2PT_CACHE_DIR=off turns it off too. */
  setenv("M2PT_CACHE_DIR", "off", 1);
  ctx = cached_context(NULL, M2PT_BINARY_CACHE_ON);
  assert_null(ctx->cache_dir);
  m2pt_context_destroy(ctx);
  setenv("M2PT_CACHE_DIR", cache_dir, 1);
  ctx = cached_context(NULL, M2PT_BINARY_CACHE_ON);
  assert_string_equal(ctx->cache_dir, cache_dir);
  m2pt_context_destroy(ctx);
  unsetenv("M2PT_CACHE_DIR");
}

static void build_failure_reports_log(void **state)
{
  (void)state;
  static const char broken[] =
      "__kernel void m2pt_broken(__global float *x) { x[0] = undeclared_thing; }\n";
  const m2pt_cl_source src = {"broken.cl", broken, sizeof broken - 1};
  m2pt_context *ctx = cached_context(cache_dir, M2PT_BINARY_CACHE_ON);
  cl_program p;
  assert_status(ctx, m2pt_program_get(ctx, &src, "", &p), M2PT_ERR_KERNEL_BUILD);
  const char *msg = m2pt_last_error(ctx);
  assert_non_null(strstr(msg, "broken.cl"));
  assert_non_null(strstr(msg, "CL_BUILD_PROGRAM_FAILURE"));
  assert_non_null(strstr(msg, "undeclared_thing")); /* from the build log */
  cl_kernel k;
  assert_status(ctx, m2pt_kernel_get(ctx, &m2pt_cl_linear, "", "no_such_kernel", &k),
                M2PT_ERR_KERNEL_BUILD);
  /* The context goes on working. */
  check_forward(ctx);
  m2pt_context_destroy(ctx);
}

static int remove_cache_dir(void)
{
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache_dir);
  return system(cmd);
}

/* Every test starts from an empty cache, so that one test's failure leaves
 * no entry behind for the next. */
static int empty_cache(void **state)
{
  (void)state;
  return remove_cache_dir() == 0 && mkdir(cache_dir, 0700) == 0 ? 0 : -1;
}

static int group_setup(void **state)
{
  (void)state;
  return mkdtemp(cache_dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
  (void)state;
  return remove_cache_dir() == 0 ? 0 : -1;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(memory_cache, empty_cache),
      cmocka_unit_test_setup(disk_cache_reused_across_contexts, empty_cache),
      cmocka_unit_test_setup(corrupt_entries_are_rebuilt, empty_cache),
      cmocka_unit_test_setup(other_programs_entry_is_rebuilt, empty_cache),
      cmocka_unit_test_setup(format_1_entry_is_rebuilt, empty_cache),
      cmocka_unit_test_setup(fifo_entry_is_replaced, empty_cache),
      cmocka_unit_test_setup(missing_kernel_falls_back_to_source, empty_cache),
      cmocka_unit_test_setup(unwritable_cache_only_costs_speed, empty_cache),
      cmocka_unit_test_setup(cache_disabled, empty_cache),
      cmocka_unit_test_setup(build_failure_reports_log, empty_cache),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
