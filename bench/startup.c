/* m2pt-bench: the startup suite. The time from m2pt_context_create to the
 * first block output read back, measured in a fresh process (this program
 * run again with the hidden --startup-probe option), because a cold PoCL
 * cache needs POCL_CACHE_DIR set before OpenCL initialises. */
#define _XOPEN_SOURCE 700 /* nftw */

#include <errno.h>
#include <ftw.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

extern char **environ;

#define PROBE_SCALE 0.5f
#define PATH_SIZE 4096

/* ---- the probe, in the child process ---- */

/* A ViT block of width sh.in over sh.rows tokens (heads of 64, or one head
 * for the smoke shape), its pathway's λ set, input from `host`, one forward,
 * and the output read back into `out`: everything a first inference
 * compiles (LayerNorm, attention, GELU, the pathway fold, CLBlast's GEMMs). */
static m2pt_status first_output(m2pt_context *ctx, bench_shape sh, const float *host, float *out)
{
  const size_t heads = sh.in % 64 == 0 ? sh.in / 64 : 1;
  const m2pt_block_config cfg = m2pt_block_config_vit(sh.in, heads);
  const size_t shape[3] = {1, sh.rows, sh.in};
  const float scale = PROBE_SCALE;
  m2pt_block *block = NULL;
  m2pt_tensor *x = NULL, *y = NULL;
  m2pt_status s = BENCH_CALL(ctx, m2pt_block_create(ctx, &cfg, &block));
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_block_set(block, "attn.qkv.cross_modal_scale", &scale, 1));
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_tensor_create(ctx, 3, shape, &x));
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_tensor_create(ctx, 3, shape, &y));
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_tensor_write(x, host, sh.rows * sh.in));
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_block_forward(block, x, NULL, y));
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_tensor_read(y, out, sh.rows * sh.in));
  m2pt_tensor_destroy(x);
  m2pt_tensor_destroy(y);
  m2pt_block_destroy(block);
  return s;
}

int bench_startup_probe(const char *device, m2pt_binary_cache cache, const bench_options *o)
{
  const bench_shape sh = bench_startup_shape(o);
  const size_t n_host = sh.rows * sh.in;
  float *host = malloc(n_host * sizeof *host);
  float *out = malloc(n_host * sizeof *out);
  if (!host || !out) {
    free(host);
    free(out);
    bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
    return 1;
  }
  bench_fill_random(host, n_host, 5);

  m2pt_context_options opts = m2pt_context_options_default();
  opts.device = device;
  opts.binary_cache = cache;
  m2pt_context *ctx = NULL;
  const double t0 = bench_now();
  m2pt_status s = BENCH_CALL(NULL, m2pt_context_create(&opts, &ctx));
  if (s == M2PT_OK)
    s = first_output(ctx, sh, host, out);
  const double seconds = bench_now() - t0;
  m2pt_stats stats;
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_context_stats(ctx, &stats));
  if (s == M2PT_OK)
    printf("%.6f %llu %llu\n", seconds, (unsigned long long)stats.programs_built,
           (unsigned long long)stats.programs_loaded);
  m2pt_context_destroy(ctx);
  free(host);
  free(out);
  return s == M2PT_OK ? 0 : 1;
}

/* ---- the parent: cache directories, environment, running probes ---- */

typedef struct probe_result {
  double seconds;
  unsigned long long built, loaded; /* programs compiled, loaded from m2pt's disk cache */
} probe_result;

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
  return remove(path);
}

static void remove_tree(const char *dir)
{
  if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
    bench_progress("warning: could not remove %s: %s", dir, strerror(errno));
}

/* A fresh directory `dir` under $TMPDIR (or /tmp) with subdirectories for
 * PoCL's and m2pt's caches. */
static m2pt_status make_cache_dirs(char dir[PATH_SIZE])
{
  const char *tmp = getenv("TMPDIR");
  if (!tmp || !tmp[0])
    tmp = "/tmp";
  snprintf(dir, PATH_SIZE, "%s/m2pt-bench-XXXXXX", tmp);
  if (!mkdtemp(dir)) {
    const int err = errno;
    dir[0] = '\0';
    return bench_fail(M2PT_ERR_IO, "cannot create a directory in %s: %s", tmp, strerror(err));
  }
  static const char *const subdirs[] = {"pocl", "m2pt"};
  for (size_t i = 0; i < 2; i++) {
    char sub[PATH_SIZE + 8];
    snprintf(sub, sizeof sub, "%s/%s", dir, subdirs[i]);
    if (mkdir(sub, 0700) != 0) {
      const m2pt_status s = bench_fail(M2PT_ERR_IO, "mkdir %s: %s", sub, strerror(errno));
      remove_tree(dir);
      return s;
    }
  }
  return M2PT_OK;
}

static int is_cache_variable(const char *entry)
{
  return !strncmp(entry, "POCL_CACHE_DIR=", 15) || !strncmp(entry, "M2PT_CACHE_DIR=", 15);
}

/* The probes' environment: ours, with POCL_CACHE_DIR and M2PT_CACHE_DIR
 * pointing into `dir`; with dir empty, ours as it is. Free envp with free(). */
typedef struct probe_env {
  char **envp;
  char pocl[PATH_SIZE + 32], m2pt[PATH_SIZE + 32];
} probe_env;

static m2pt_status probe_env_init(probe_env *e, const char *dir)
{
  size_t n = 0;
  while (environ[n])
    n++;
  e->envp = malloc((n + 3) * sizeof *e->envp);
  if (!e->envp)
    return bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (!dir[0] || !is_cache_variable(environ[i]))
      e->envp[k++] = environ[i];
  if (dir[0]) {
    snprintf(e->pocl, sizeof e->pocl, "POCL_CACHE_DIR=%s/pocl", dir);
    snprintf(e->m2pt, sizeof e->m2pt, "M2PT_CACHE_DIR=%s/m2pt", dir);
    e->envp[k++] = e->pocl;
    e->envp[k++] = e->m2pt;
  }
  e->envp[k] = NULL;
  return M2PT_OK;
}

/* Reads the probe's one line of output and waits for it to exit. */
static m2pt_status collect_probe(pid_t pid, int fd, probe_result *r)
{
  char line[256] = "";
  FILE *f = fdopen(fd, "r");
  if (f) {
    if (!fgets(line, sizeof line, f))
      line[0] = '\0';
    fclose(f);
  } else {
    close(fd);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return bench_fail(M2PT_ERR_IO, "waitpid: %s", strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return bench_fail(M2PT_ERR_IO, "the startup probe failed (status 0x%x)", (unsigned)status);
  if (sscanf(line, "%lf %llu %llu", &r->seconds, &r->built, &r->loaded) != 3)
    return bench_fail(M2PT_ERR_FORMAT, "the startup probe printed '%s'", line);
  return M2PT_OK;
}

/* Runs this program as a probe with `env`, on `device`. */
static m2pt_status run_probe(const probe_env *env, char *device, m2pt_binary_cache cache,
                             const bench_options *o, probe_result *r)
{
  char *argv[] = {"m2pt-bench", "--startup-probe", "--binary-cache",
                  cache == M2PT_BINARY_CACHE_ON ? "on" : "off", "--device", device,
                  o->smoke ? "--smoke" : NULL, NULL};
  int fds[2];
  if (pipe(fds) != 0)
    return bench_fail(M2PT_ERR_IO, "pipe: %s", strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  pid_t pid;
  fflush(NULL);
  const int err = posix_spawn(&pid, "/proc/self/exe", &actions, NULL, argv, env->envp);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (err != 0) {
    close(fds[0]);
    return bench_fail(M2PT_ERR_IO, "cannot run /proc/self/exe: %s", strerror(err));
  }
  return collect_probe(pid, fds[0], r);
}

/* Cold and then warm start with one binary cache setting. The cold run gets
 * fresh, empty cache directories; in quick mode it uses ours instead, only
 * to warm them, and is not reported. */
static m2pt_status startup_pair(char *device, m2pt_binary_cache cache,
                                const bench_options *o, probe_result result[2])
{
  char dir[PATH_SIZE] = "";
  probe_env env = {NULL, "", ""};
  m2pt_status s = o->quick ? M2PT_OK : make_cache_dirs(dir);
  if (s != M2PT_OK)
    return s;
  s = probe_env_init(&env, dir);
  for (int warm = 0; s == M2PT_OK && warm < 2; warm++) {
    bench_progress("startup: %s, binary cache %s%s", warm ? "warm" : "cold",
                   cache == M2PT_BINARY_CACHE_ON ? "on" : "off",
                   warm || dir[0] ? "" : " (warming our caches, not reported)");
    s = run_probe(&env, device, cache, o, &result[warm]);
  }
  free(env.envp);
  if (dir[0])
    remove_tree(dir);
  return s;
}

static void print_startup(const bench_options *o, probe_result r[2][2])
{
  static const char *const names[2][2] = {{"cold cache-off", "cold cache-on"},
                                          {"warm cache-off", "warm cache-on"}};
  const bench_shape sh = bench_startup_shape(o);
  char block[64]; /* the block's input, [1][N][dim] */
  snprintf(block, sizeof block, "block 1x%zux%zu", sh.rows, sh.in);
  for (int warm = o->quick; warm < 2; warm++)
    for (int on = 0; on < 2; on++) {
      char note[96];
      snprintf(note, sizeof note, "programs built %llu, loaded %llu", r[on][warm].built,
               r[on][warm].loaded);
      bench_print_seconds("startup", names[warm][on], block, r[on][warm].seconds,
                          on ? r[0][warm].seconds / r[1][warm].seconds : 0.0, "off/on", note);
    }
}

m2pt_status bench_suite_startup(const m2pt_device_info *info, const bench_options *o)
{
  char device[32];
  bench_device_selector(info, device, sizeof device);
  probe_result r[2][2]; /* [cache on][warm] */
  m2pt_status s = startup_pair(device, M2PT_BINARY_CACHE_OFF, o, r[0]);
  if (s == M2PT_OK)
    s = startup_pair(device, M2PT_BINARY_CACHE_ON, o, r[1]);
  if (s == M2PT_OK)
    print_startup(o, r);
  return s;
}
