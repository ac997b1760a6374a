/* m2pt-bench: times m2pt's GEMM, the M2PT linear layer (unmerged and merged),
 * attention (GEMM and fused paths), the transformer block and its ops, and the
 * startup to a first output, on every OpenCL device or the chosen ones. Uses
 * only the public API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define MAX_SELECTORS 16
#define MAX_COUNT 1000000

/* What the command line asks for. */
typedef struct cli {
  bench_options o;
  const char *selectors[MAX_SELECTORS];
  size_t n_selectors;
  int help;
  int probe;                     /* hidden: --startup-probe */
  m2pt_binary_cache probe_cache; /* hidden: --binary-cache on|off */
} cli;

static void usage(FILE *f)
{
  fprintf(f,
          "usage: m2pt-bench [options]\n"
          "Times m2pt's GEMM, the M2PT linear layer (unmerged and merged), attention (GEMM\n"
          "and fused paths), the ViT-B/16 block and its ops, and the startup to a first\n"
          "output, on every OpenCL device unless --device is given.\n"
          "  --device SEL   only this device: P:D, gpu, cpu or part of its name (repeatable)\n"
          "  --suite NAME   gemm, linear, attention, block or startup (repeatable;\n"
          "                 default: all)\n"
          "  --reps N       timed runs per case (default 20, --quick 5; at most 3 for\n"
          "                 attention at N = 4096)\n"
          "  --warmup N     untimed runs before them, at least 1 (default 3, --quick 2;\n"
          "                 at most 1 for attention at N = 4096)\n"
          "  --quick        fewer runs and shapes, and no cold-cache startup runs\n"
          "  --smoke        tiny shapes, one run: checks that every case works\n"
          "  --help         this text\n"
          "Times are wall clock per run, up to m2pt_context_finish; 'm2pt-k ms' is the\n"
          "device time of m2pt's own kernels in a run (CLBlast's are not included).\n"
          "Attention shapes read BxNxHEADSxDIM_HEAD; 'peak +' is the device memory a path\n"
          "allocates beyond its input and output, 'total' the context's peak.\n");
}

static int parse_count(const char *text, int min, int *out)
{
  if (!text)
    return -1;
  char *end;
  const long v = strtol(text, &end, 10);
  if (end == text || *end || v < min || v > MAX_COUNT)
    return -1;
  *out = (int)v;
  return 0;
}

static int parse_suite(const char *name, unsigned *suites)
{
  static const struct {
    const char *name;
    unsigned bit;
  } known[] = {
    {"gemm", BENCH_SUITE_GEMM},
    {"linear", BENCH_SUITE_LINEAR},
    {"startup", BENCH_SUITE_STARTUP},
    {"attention", BENCH_SUITE_ATTENTION},
    {"block", BENCH_SUITE_BLOCK},
  };
  for (size_t i = 0; name && i < sizeof known / sizeof known[0]; i++)
    if (!strcmp(name, known[i].name)) {
      *suites |= known[i].bit;
      return 0;
    }
  return -1;
}

static int parse_cache(const char *text, m2pt_binary_cache *cache)
{
  if (text && !strcmp(text, "on"))
    *cache = M2PT_BINARY_CACHE_ON;
  else if (text && !strcmp(text, "off"))
    *cache = M2PT_BINARY_CACHE_OFF;
  else
    return -1;
  return 0;
}

static int add_selector(cli *c, const char *selector)
{
  if (!selector || c->n_selectors == MAX_SELECTORS)
    return -1;
  c->selectors[c->n_selectors++] = selector;
  return 0;
}

/* Repetition counts not given on the command line follow the mode. */
static void apply_defaults(bench_options *o)
{
  const int warmup = o->smoke ? 1 : o->quick ? 2 : 3;
  const int reps = o->smoke ? 1 : o->quick ? 5 : 20;
  if (o->warmup < 0)
    o->warmup = warmup;
  if (o->reps < 0)
    o->reps = reps;
  if (!o->suites)
    o->suites = BENCH_SUITE_ALL;
  if (o->smoke)
    o->quick = 1; /* no cold startup runs */
}

/* An option followed by a value; -1 for an unknown option or a bad value. */
static int parse_option_value(cli *c, const char *option, const char *value)
{
  if (!strcmp(option, "--reps"))
    return parse_count(value, 1, &c->o.reps);
  if (!strcmp(option, "--warmup"))
    return parse_count(value, 1, &c->o.warmup);
  if (!strcmp(option, "--suite"))
    return parse_suite(value, &c->o.suites);
  if (!strcmp(option, "--device"))
    return add_selector(c, value);
  if (!strcmp(option, "--binary-cache"))
    return parse_cache(value, &c->probe_cache);
  return -1;
}

/* 0 on success, -1 on a bad command line. */
static int parse_args(int argc, char **argv, cli *c)
{
  memset(c, 0, sizeof *c);
  c->o.warmup = c->o.reps = -1;
  int bad = 0;
  for (int i = 1; i < argc && !bad; i++) {
    const char *arg = argv[i];
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h"))
      c->help = 1;
    else if (!strcmp(arg, "--quick"))
      c->o.quick = 1;
    else if (!strcmp(arg, "--smoke"))
      c->o.smoke = 1;
    else if (!strcmp(arg, "--startup-probe"))
      c->probe = 1;
    else
      bad = parse_option_value(c, arg, ++i < argc ? argv[i] : NULL);
    if (bad)
      fprintf(stderr, "m2pt-bench: unknown option, or a bad or missing value: %s\n", arg);
  }
  if (!bad && c->probe && c->n_selectors != 1) {
    fprintf(stderr, "m2pt-bench: --startup-probe needs one --device\n");
    bad = -1;
  }
  apply_defaults(&c->o);
  return bad;
}

void bench_device_selector(const m2pt_device_info *info, char *buf, size_t size)
{
  snprintf(buf, size, "%u:%u", info->platform_index, info->device_index);
}

m2pt_status bench_context_create(const m2pt_device_info *info, m2pt_context **ctx)
{
  char selector[32];
  bench_device_selector(info, selector, sizeof selector);
  const m2pt_context_options opts = {.device = selector, .flags = M2PT_CONTEXT_PROFILING};
  return BENCH_CALL(NULL, m2pt_context_create(ctx, &opts));
}

/* The suites that share one context. */
static m2pt_status shared_context_suites(const m2pt_device_info *info, const bench_options *o)
{
  m2pt_context *ctx = NULL;
  bench_progress("%s: creating a context (kernels compile on first use)", info->name);
  m2pt_status s = bench_context_create(info, &ctx);
  if (s == M2PT_OK && (o->suites & BENCH_SUITE_GEMM))
    s = bench_suite_gemm(ctx, info, o);
  if (s == M2PT_OK && (o->suites & BENCH_SUITE_LINEAR))
    s = bench_suite_linear(ctx, info, o);
  if (s == M2PT_OK && (o->suites & BENCH_SUITE_BLOCK))
    s = bench_suite_block(ctx, o);
  m2pt_context_destroy(ctx);
  return s;
}

/* The suites on one device. */
static m2pt_status bench_device(const m2pt_device_info *info, const bench_options *o)
{
  bench_print_device(info);
  bench_print_header();
  m2pt_status s = M2PT_OK;
  if (o->suites & (BENCH_SUITE_GEMM | BENCH_SUITE_LINEAR | BENCH_SUITE_BLOCK))
    s = shared_context_suites(info, o);
  if (s == M2PT_OK && (o->suites & BENCH_SUITE_ATTENTION))
    s = bench_suite_attention(info, o);
  if (s == M2PT_OK && (o->suites & BENCH_SUITE_STARTUP))
    s = bench_suite_startup(info, o);
  return s;
}

/* Marks the devices to run: those the selectors pick, else all. */
static m2pt_status choose_devices(const cli *c, size_t count, unsigned char *chosen)
{
  memset(chosen, c->n_selectors == 0, count);
  for (size_t i = 0; i < c->n_selectors; i++) {
    size_t index = 0;
    const m2pt_status s = BENCH_CALL(NULL, m2pt_device_select(c->selectors[i], &index));
    if (s != M2PT_OK)
      return s;
    if (index < count)
      chosen[index] = 1;
  }
  return M2PT_OK;
}

/* The exit code: 0, or 1 on a failure. No device is a failure, also for the
 * smoke test: CI has PoCL (DESIGN.md §4). */
static int run_devices(const cli *c)
{
  size_t count = 0;
  if (BENCH_CALL(NULL, m2pt_device_list(NULL, 0, &count)) != M2PT_OK)
    return 1;
  if (count == 0) {
    bench_fail(M2PT_ERR_DEVICE_NOT_FOUND, "no OpenCL device found");
    return 1;
  }
  m2pt_device_info *infos = calloc(count, sizeof *infos);
  unsigned char *chosen = calloc(count, 1);
  m2pt_status s = infos && chosen ? M2PT_OK
                                  : bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  size_t found = count;
  if (s == M2PT_OK)
    s = BENCH_CALL(NULL, m2pt_device_list(infos, count, &found));
  if (found < count)
    count = found;
  if (s == M2PT_OK)
    s = choose_devices(c, count, chosen);
  if (s == M2PT_OK)
    printf("m2pt-bench (m2pt %s): %d timed runs after %d warm-up runs per case\n",
           m2pt_version_string(), c->o.reps, c->o.warmup);
  for (size_t i = 0; s == M2PT_OK && i < count; i++)
    if (chosen[i])
      s = bench_device(&infos[i], &c->o);
  free(infos);
  free(chosen);
  return s == M2PT_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
  cli c;
  if (parse_args(argc, argv, &c) != 0) {
    usage(stderr);
    return 2;
  }
  if (c.help) {
    usage(stdout);
    return 0;
  }
  if (c.probe)
    return bench_startup_probe(c.selectors[0], c.probe_cache, &c.o);
  return run_devices(&c);
}
