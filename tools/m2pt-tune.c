/* m2pt-tune: tunes CLBlast's single-precision GEMM kernels (XgemmDirect and
 * Xgemm, and the direct/indirect switch between them) for one device on the
 * GEMM shapes of the M2PT block, within a time budget, and stores the best
 * parameters in the device's tuning store, which every m2pt context created
 * for the device then applies (lib/gemm/tuning.h).
 *
 * The search: CLBlast's defaults are measured first (the baseline), then
 * CLBlast's database entries for CPUs (the seeds), then alternately
 * mutations of the best so far and random parameter sets, each drawn from
 * the values CLBlast's own tuners try and kept only when it satisfies the
 * kernel's constraints. Each candidate is applied with
 * CLBlastOverrideParameters, checked against a double-precision sample of
 * the product, and timed by wall clock around m2pt_gemm and
 * m2pt_context_finish (CLBlast's event covers one kernel of several). The
 * search state is written after every candidate (and before it, marked
 * pending, so that a candidate that crashes the driver is skipped on the
 * next run); a second run with the same budget continues where the first
 * stopped.
 *
 * A maintainer tool: it links the library's internals (the store format and
 * CLBlast's parameter lists), unlike m2pt-info and m2pt-bench. This file is
 * the command line and the loop; tune.h lists the other parts. */
#include <errno.h>
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#ifdef __linux__
#  include <sys/prctl.h>
#endif
#include <time.h>
#include <unistd.h>

#include "core/context_impl.h"
#include "core/context_options.h"
#include "m2pt/opencl.h"
#include "tune.h"

static void usage(FILE *f)
{
  fprintf(f,
          "usage: m2pt-tune [--device SEL] [--budget SECONDS] [--shapes LIST] [--store DIR]\n"
          "                 [--resume | --restart] [--reps N] [--seed N]\n"
          "                 [--candidate-timeout SECONDS] [--help]\n"
          "Tunes CLBlast's single-precision GEMM (XgemmDirect, Xgemm and the switch\n"
          "between them) for one device on the M2PT block's GEMM shapes and stores the\n"
          "best parameters, which every m2pt context on that device then applies\n"
          "(M2PT_TUNING=off ignores them; m2pt-info shows whether a device is tuned).\n"
          "  --device SEL      device selector, as for m2pt-info (default: m2pt's default)\n"
          "  --budget SECONDS  total search time, counted over resumed runs (default 600)\n"
          "  --shapes LIST     ROWSxINxOUT,... y[rows][out] = x[rows][in] * W[out][in]^T\n"
          "                    (default: ViT-B/16, B=1, N=197: 197x768x2304,197x768x768,\n"
          "                    197x768x3072,197x3072x768)\n"
          "  --store DIR       (or --out DIR) the cache directory holding the store,\n"
          "                    DIR/tuning/<key>.json\n"
          "                    (default: $M2PT_CACHE_DIR, else $XDG_CACHE_HOME/m2pt,\n"
          "                    else ~/.cache/m2pt)\n"
          "  --resume          continue the saved search for this device (default)\n"
          "  --restart         discard the saved search and start again\n"
          "  --reps N          timed runs per shape and candidate (default 3)\n"
          "  --seed N          random seed of the search (default 1)\n"
          "  --candidate-timeout SECONDS  skip a candidate that takes longer, its\n"
          "                    compile included (default 300; 0: no limit)\n"
          "Progress goes to stderr; the search state is saved after every candidate next\n"
          "to the store (<key>.search.json).\n");
}

static void print_summary(const search *st)
{
  const candidate *won = tune_winner(st);
  printf("shape (rows x in x out)   %s\n",
         won ? "  before ms  GFLOP/s    after ms  GFLOP/s  speed-up" : "defaults ms  GFLOP/s");
  for (size_t i = 0; i <= st->shape_count; i++) {
    const int all = i == st->shape_count;
    char name[64] = "all";
    if (!all)
      snprintf(name, sizeof name, "%zux%zux%zu", st->shapes[i].rows, st->shapes[i].in,
               st->shapes[i].out);
    const double f = all ? tune_total_flops(st) : tune_flops(&st->shapes[i]);
    const double b = all ? tune_baseline_total(st) : st->baseline_ms[i];
    printf("%-26s %10.3f %8.1f", name, b, f / (b * 1e6));
    if (won) {
      const double a = all ? won->total_ms : won->ms[i];
      printf("  %10.3f %8.1f  %7.2fx", a, f / (a * 1e6), b / a);
    }
    putchar('\n');
  }
  if (won) {
    char text[512];
    tune_describe(won, text, sizeof text);
    printf("best: %s\n", text);
  } else if (st->best >= 0) {
    const candidate *best = &st->tried[st->best];
    printf("no candidate beat CLBlast's defaults: the best of the %zu tried took %.3f ms "
           "(%.1f GFLOP/s); store not written\n", st->tried_count, best->total_ms,
           tune_total_flops(st) / (best->total_ms * 1e6));
  } else {
    printf("no candidate beat CLBlast's defaults: %s; store not written\n",
           st->tried_count ? "none of those tried ran to the end correctly"
                           : "the budget was spent before any was tried");
  }
}

/* ---- main ---- */

/* The flags that take a value: an empty one is bad usage, as in the other
 * tools (an empty --store would mean the default directory). */
static int takes_value(const char *flag)
{
  static const char *const flags[] = {"--device", "--budget", "--shapes", "--store", "--out",
                                      "--candidate-timeout", "--worker", "--reps", "--seed"};
  for (size_t i = 0; i < sizeof flags / sizeof *flags; i++)
    if (!strcmp(flag, flags[i]))
      return 1;
  return 0;
}

/* Runs the search in a child process and starts it again, resuming, when a
 * candidate kills it (PoCL's compiler aborts on some parameter sets): the
 * child saved the candidate as pending, and the next child skips it. The
 * parent never touches OpenCL. */
static int supervise(int argc, char **argv, const char *state_hint, double candidate_timeout)
{
  char **args = calloc((size_t)argc + 3, sizeof *args);
  if (!args)
    return 1;
  char charge[32] = "0";
  for (int attempt = 0; attempt < 200; attempt++) {
    int n = 0;
    for (int i = 0; i < argc; i++)
      if (attempt == 0 || strcmp(argv[i], "--restart") != 0)
        args[n++] = argv[i];
    args[n++] = "--worker";
    args[n++] = charge;
    args[n] = NULL;
    fflush(NULL);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
      perror("m2pt-tune: fork");
      free(args);
      return 1;
    }
    if (pid == 0) {
#ifdef __linux__
      /* The search dies with its supervisor (SIGTERM, Ctrl-C, a crash). */
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent)
        _exit(1);
#endif
      execv("/proc/self/exe", args);
      execvp(argv[0], args);
      perror("m2pt-tune: exec");
      _exit(127);
    }
    /* The child rewrites its state before and after every candidate; one
     * that leaves it untouched past the timeout is stuck in a compile (some
     * parameter sets take PoCL many minutes) and is stopped: the candidate
     * stays pending and the next child skips it. */
    int status = 0, timed_out = 0, saved = 0;
    double last_change = tune_now_s();
    struct stat st0;
    struct timespec last_mtime = {0, 0};
    if (state_hint && stat(state_hint, &st0) == 0)
      last_mtime = st0.st_mtim;
    for (;;) {
      const pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid)
        break;
      if (r < 0 && errno != EINTR) {
        perror("m2pt-tune: waitpid");
        free(args);
        return 1;
      }
      struct stat st;
      if (state_hint && stat(state_hint, &st) == 0 &&
          (st.st_mtim.tv_sec != last_mtime.tv_sec || st.st_mtim.tv_nsec != last_mtime.tv_nsec)) {
        last_mtime = st.st_mtim;
        last_change = tune_now_s();
        saved = 1;
      }
      if (candidate_timeout > 0 && tune_now_s() - last_change > candidate_timeout) {
        fprintf(stderr, "m2pt-tune: a candidate ran past --candidate-timeout (%.0f s); "
                "stopping it\n", candidate_timeout);
        kill(pid, SIGKILL);
        timed_out = 1;
        candidate_timeout = -candidate_timeout; /* once; restored below */
      }
      const struct timespec tick = {0, 200 * 1000 * 1000};
      nanosleep(&tick, NULL);
    }
    if (WIFEXITED(status)) {
      free(args);
      return WEXITSTATUS(status);
    }
    if (WIFSIGNALED(status) && (WTERMSIG(status) == SIGINT || WTERMSIG(status) == SIGTERM)) {
      free(args);
      return 130;
    }
    /* A child that saved nothing before the timeout was still measuring
     * CLBlast's own parameters, the baseline every candidate is compared
     * with (it saves before each candidate): restarting would only measure
     * it again. */
    if (timed_out && !saved) {
      fprintf(stderr, "m2pt-tune: measuring CLBlast's default parameters took longer than "
              "--candidate-timeout; raise it (or 0: no limit)\n");
      free(args);
      return 1;
    }
    /* The lost candidate's time counts against the budget. */
    snprintf(charge, sizeof charge, "%.1f", tune_now_s() - last_change);
    candidate_timeout = fabs(candidate_timeout);
    fprintf(stderr, "m2pt-tune: the search process died (signal %d); resuming without the "
            "candidate it was measuring\n", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  }
  free(args);
  fprintf(stderr, "m2pt-tune: giving up after 200 restarts\n");
  return 1;
}

int main(int argc, char **argv)
{
  const char *device = NULL, *store_dir = NULL;
  const char *shapes_text = "197x768x2304,197x768x768,197x768x3072,197x3072x768";
  double budget = 600.0;
  int restart = 0;
  unsigned reps = 3;
  unsigned long long seed = 1;
  int worker = 0;
  double candidate_timeout = 300.0, charge_s = 0.0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const int has = i + 1 < argc;
    char *end = NULL;
    if (has && !argv[i + 1][0] && takes_value(a)) {
      fprintf(stderr, "m2pt-tune: %s needs a value, not an empty string\n", a);
      return 2;
    }
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--device") && has) {
      device = argv[++i];
    } else if (!strcmp(a, "--budget") && has) {
      budget = strtod(argv[++i], &end);
      if (*end || !(budget > 0 && budget < 1e7)) {
        fprintf(stderr, "m2pt-tune: --budget wants seconds > 0\n");
        return 2;
      }
    } else if (!strcmp(a, "--shapes") && has) {
      shapes_text = argv[++i];
    } else if ((!strcmp(a, "--store") || !strcmp(a, "--out")) && has) {
      store_dir = argv[++i];
    } else if (!strcmp(a, "--candidate-timeout") && has) {
      candidate_timeout = strtod(argv[++i], &end);
      if (*end || !(candidate_timeout >= 0 && candidate_timeout < 1e7)) {
        fprintf(stderr, "m2pt-tune: --candidate-timeout wants seconds (0: none)\n");
        return 2;
      }
    } else if (!strcmp(a, "--worker") && has) {
      /* internal: the child of supervise(), with the seconds the previous
       * child spent on the candidate it died on */
      worker = 1;
      charge_s = strtod(argv[++i], &end);
      if (*end || !(charge_s >= 0 && charge_s < 1e7))
        charge_s = 0.0;
    } else if (!strcmp(a, "--resume")) {
      restart = 0;
    } else if (!strcmp(a, "--restart")) {
      restart = 1;
    } else if (!strcmp(a, "--reps") && has) {
      const unsigned long v = strtoul(argv[++i], &end, 10);
      if (*end || v < 1 || v > 64) {
        fprintf(stderr, "m2pt-tune: --reps wants 1..64\n");
        return 2;
      }
      reps = (unsigned)v;
    } else if (!strcmp(a, "--seed") && has) {
      seed = strtoull(argv[++i], &end, 10);
      if (*end || seed > (1ull << 52)) {
        fprintf(stderr, "m2pt-tune: --seed wants a number below 2^52\n");
        return 2;
      }
    } else {
      usage(stderr);
      return 2;
    }
  }

  static search st;
  if (!worker) {
    if (tune_parse_shapes(shapes_text, &st) != 0) {
      fprintf(stderr, "m2pt-tune: --shapes wants ROWSxINxOUT,... (at most %d, each 1..65536)\n",
              MAX_SHAPES);
      return 2;
    }
    /* The state file's name needs the device's key, which only the child
     * (with OpenCL) knows: watch the tuning folder, where the child writes
     * it, instead. */
    char *root = m2pt_cache_dir_resolve(store_dir);
    char watch[4200] = "";
    if (root)
      snprintf(watch, sizeof watch, "%s/tuning", root);
    free(root);
    return supervise(argc, argv, watch[0] ? watch : NULL, candidate_timeout);
  }
  if (tune_parse_shapes(shapes_text, &st) != 0) {
    fprintf(stderr, "m2pt-tune: --shapes wants ROWSxINxOUT,... (at most %d, each 1..65536)\n",
            MAX_SHAPES);
    return 2;
  }
  st.seed = seed;
  st.budget_s = budget;
  st.best = -1;
  st.tried = calloc(MAX_TRIED, sizeof *st.tried);
  char *dir = m2pt_cache_dir_resolve(store_dir);
  if (!st.tried || !dir) {
    fprintf(stderr, "m2pt-tune: %s\n",
            st.tried ? "no cache directory (set --store DIR or $M2PT_CACHE_DIR)" : "out of memory");
    free(st.tried);
    free(dir);
    return 1;
  }

  /* CLBlast's own parameters for the baseline: no store, no shipped default. */
  setenv("M2PT_TUNING", "off", 1);
  m2pt_context_options opts = m2pt_context_options_default();
  opts.device = device;
  opts.cache_dir = dir;
  opts.flags = M2PT_CONTEXT_CLBLAST;
  bench b;
  memset(&b, 0, sizeof b);
  b.reps = reps;
  if (tune_check_status(NULL, m2pt_context_create(&opts, &b.ctx), "context")) {
    free(dir);
    free(st.tried);
    return 1;
  }
  m2pt_device_info info;
  m2pt_context_device_info(b.ctx, &info);
  m2pt_tuning_limits limits;
  m2pt_tuning_limits_of(b.ctx, &limits);
  m2pt_tuning_store_path(dir, &info, st.store_path, sizeof st.store_path);
  free(dir);
  int rc = 1;
  if (!st.store_path[0]) {
    fprintf(stderr, "m2pt-tune: the cache directory's path is too long\n");
    goto out;
  }
  snprintf(st.state_path, sizeof st.state_path, "%.*s.search.json",
           (int)(strlen(st.store_path) - strlen(".json")), st.store_path);
  fprintf(stderr, "m2pt-tune: %s (%s), shapes %s, budget %.0f s\n", info.name,
          info.platform_name, st.shapes_text, budget);
  fprintf(stderr, "m2pt-tune: store %s\n", st.store_path);

  if (tune_bench_init(&b, &st) != 0)
    goto out;
  if (!restart && tune_load_state(&st, charge_s) == 0)
    fprintf(stderr, "m2pt-tune: resuming: %zu candidates tried, %.0f of %.0f s spent\n",
            st.tried_count, st.spent_s, budget);
  st.budget_s = budget;

  double mark = tune_now_s();
  if (!st.have_baseline) {
    fprintf(stderr, "m2pt-tune: measuring CLBlast's defaults (compiles first: slow on PoCL)\n");
    double total = 0.0;
    const outcome o = tune_measure(&b, &st, INFINITY, st.baseline_ms, &total);
    if (o != OUT_OK) {
      fprintf(stderr, "m2pt-tune: CLBlast's defaults %s on this device\n",
              o == OUT_WRONG ? "give wrong results" : "fail");
      goto out;
    }
    st.have_baseline = 1;
    st.spent_s += tune_now_s() - mark;
    mark = tune_now_s();
    tune_save_state(&st);
    fprintf(stderr, "m2pt-tune: defaults: %.2f ms, %.1f GFLOP/s\n", total,
            tune_total_flops(&st) / (total * 1e6));
  }

  const double base_total = tune_baseline_total(&st);
  candidate c;
  while (st.spent_s < st.budget_s && tune_next_candidate(&st, &limits, &c)) {
    char text[512], why[256];
    tune_describe(&c, text, sizeof text);
    st.pending = c;
    st.have_pending = 1;
    tune_save_state(&st);
    const double best_ms = st.best >= 0 ? st.tried[st.best].total_ms : base_total;
    const double t0 = tune_now_s();
    if (m2pt_tuning_apply(b.ctx->device, &c.t, why, sizeof why) != 0) {
      c.outcome = OUT_FAILED;
      c.total_ms = INFINITY;
    } else {
      c.outcome = tune_measure(&b, &st, 1.5 * fmin(best_ms, base_total), c.ms, &c.total_ms);
    }
    st.have_pending = 0;
    const long before = st.best;
    tune_add_tried(&st, &c);
    st.spent_s += tune_now_s() - mark;
    mark = tune_now_s();
    tune_save_state(&st);
    if (st.best != before)
      tune_write_store(&st, &info);
    const double gf = c.outcome == OUT_OK ? tune_total_flops(&st) / (c.total_ms * 1e6) : 0.0;
    const double best_gf = st.best >= 0 ? tune_total_flops(&st) / (st.tried[st.best].total_ms * 1e6)
                                        : tune_total_flops(&st) / (base_total * 1e6);
    fprintf(stderr, "[%zu] %4.0f/%.0f s  %-8s %6.1f GFLOP/s (best %.1f, defaults %.1f) %5.1f s  %s\n",
            st.tried_count, st.spent_s, st.budget_s, tune_outcome_names[c.outcome], gf, best_gf,
            tune_total_flops(&st) / (base_total * 1e6), tune_now_s() - t0, text);
  }
  if (st.spent_s >= st.budget_s)
    fprintf(stderr, "m2pt-tune: budget spent (%.0f s, %zu candidates)\n", st.spent_s,
            st.tried_count);
  print_summary(&st);
  rc = tune_write_store(&st, &info) == 0 ? 0 : 1;
  if (rc == 0 && tune_winner(&st))
    printf("stored: %s\n", st.store_path);
out:
  tune_bench_free(&b, st.shape_count);
  m2pt_context_destroy(b.ctx);
  free(st.tried);
  return rc;
}
