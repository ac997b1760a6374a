/* m2pt-bench: measures each OpenCL device's peak (FMA throughput, memory
 * bandwidth) and times m2pt's GEMM, the M2PT linear layer (unmerged and
 * merged), attention (GEMM and fused paths), the FFN, transformer blocks and
 * their ops, the backward passes of training, and the startup to a first
 * output, on every OpenCL device or the chosen ones; writes the results as a
 * table, JSON, CSV and an SVG chart, and compares them with an earlier run.
 * Uses only the public API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define MAX_SELECTORS 16
#define MAX_COUNT 1000000
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

/* What the command line asks for. */
typedef struct cli {
  bench_options o;
  const char *selectors[MAX_SELECTORS];
  size_t n_selectors;
  int help;
  const char *json, *csv, *svg; /* output files; NULL: none */
  const char *compare;          /* --compare OLD.json */
  const char *against;          /* --against NEW.json: compare files, run nothing */
  int probe;                     /* hidden: --startup-probe */
  m2pt_binary_cache probe_cache; /* hidden: --binary-cache on|off */
} cli;

static void usage(FILE *f)
{
  fputs(
      "usage: m2pt-bench [options]\n"
      "       m2pt-bench --compare OLD.json --against NEW.json\n"
      "Measures each OpenCL device's peak and times m2pt's operations on it: every\n"
      "device unless --device is given. The table goes to stdout, progress (device,\n"
      "suite, case, ETA) to stderr, in place when stderr is a terminal.\n"
      "\n"
      "Choosing what runs:\n"
      "  --device SEL   only this device: P:D, gpu, cpu or part of its name (repeatable;\n"
      "                 m2pt-info lists them)\n"
      "  --suite NAME   repeatable; default: all of them, in this order:\n"
      "     peak       FMA throughput (fma chains on float4 and float8) and memory\n"
      "                bandwidth (streaming read, copy) of the device: the denominators\n"
      "                of %peak\n"
      "     gemm       m2pt_gemm on ViT-B/16's four linear shapes; on CPU devices also\n"
      "                OpenBLAS cblas_sgemm on the same shapes (device \"openblas\")\n"
      "     linear     the re-parameterized linear, unmerged and merged\n"
      "     ffn        m2pt_ffn_forward 768->3072->768, unmerged, merged, plain, B = 1, 8\n"
      "     block      ViT-S/16, ViT-B/16 (N = 197) and BERT-base (post-norm, N = 128)\n"
      "                blocks, unmerged, merged, plain, and each of their ops; B = 1, 8\n"
      "     model      a whole model's ends at ViT-B/16's sizes, B = 1 (BERT embedding\n"
      "                gather, patch embedding, token and mean pooling, head) as a %\n"
      "                of the forward (12 x a plain block; target < 3%)\n"
      "                (--quick: B = 1)\n"
      "     train      backward passes: the linear's, unmerged (dX, dW, dW_aux, dlambda, db)\n"
      "                against plain (dX, dW, db) on ViT-B/16's four shapes at B*197\n"
      "                rows (target <= 1.15); the ViT-B/16 block, unmerged and plain:\n"
      "                forward, training forward, backward, (training forward +\n"
      "                backward) / forward (target <= 3.3) and the workspace of a\n"
      "                training step; B = 1, 8 (--quick: B = 1); the 12-block ViT-B/16\n"
      "                encoder with pathways from hidden states, B = 8 (--quick: B = 1):\n"
      "                forward to the pooled features, training step (MSE on them)\n"
      "                with saved activations and with recompute, (fwd+bwd)/fwd\n"
      "                (target <= 3.3) and each step's memory peak\n"
      "     attention  GEMM path against the fused kernel, forward and backward,\n"
      "                12 heads of 64, N = 197, 1024, 4096 (--quick: 197, 1024)\n"
      "     startup    context creation to a first block output read back, in a fresh\n"
      "                process, binary cache off and on, cold (empty caches) and warm\n",
      f);
  fputs(

      "  --reps N       timed runs per case (default 20, --quick 5; at most 3 for\n"
      "                 attention at N = 4096)\n"
      "  --warmup N     untimed runs before them, at least 1 (default 3, --quick 2;\n"
      "                 at most 1 for attention at N = 4096)\n"
      "  --quick        fewer runs and shapes, no cold-cache startup runs: under a\n"
      "                 minute on PoCL once kernels are cached\n"
      "  --smoke        tiny shapes, one run: checks that every case works (a test,\n"
      "                 not a measurement)\n"
      "  --kernels      under each case's row, its 'm2pt-k ms' split by kernel: the\n"
      "                 " STRINGIFY(BENCH_KERNELS_KEPT) " longest of m2pt's kernels (ms and launches per run, means\n"
      "                 over the timed runs, and share of their time), then the rest\n"
      "                 together; in the JSON, \"kernels\": [{name, ms, launches}] and\n"
      "                 \"kernels_rest\": {kernels, ms}\n"
      "\n"
      "Output:\n"
      "  --json FILE    {\"devices\": [{name, vendor, driver, peak_gflops, peak_gbps, ...}],\n"
      "                  \"results\": [{device, suite, case, median_ms, min_ms, max_ms,\n"
      "                  gflops, and where meaningful gbps, pct_peak; also shape,\n"
      "                  kernel_ms, timer}]}; one record per (device, suite, case);\n"
      "                 case is \"NAME SHAPE\"; gflops is null where no flop count\n"
      "                 applies\n"
      "  --csv FILE     the same records, one header line\n"
      "  --svg FILE     a bar chart of GFLOP/s per workload, one colour per device\n"
      "                 (openblas included), for a browser\n"
      "  --compare OLD  after the run, print new/old of the median time per (device,\n"
      "                 suite, case) found in both, OLD being an earlier --json file;\n"
      "                 a ratio above 1.05 (more than 5% slower) is marked SLOWER, and\n"
      "                 a last line counts them; cases below 0.05 ms in both runs are\n"
      "                 listed but not judged (timer and enqueue noise); devices are\n"
      "                 named in full; the exit status stays 0\n"
      "  --against NEW  with --compare: compare two --json files, run nothing\n"
      "  --help         this text\n",
      f);
  fputs(
      "\n"
      "Reading the table: each case runs its warm-up runs, then its timed runs,\n"
      "interleaved with the other cases of its group; median, min and max are\n"
      "milliseconds per run from OpenCL profiling events: a marker before the run and\n"
      "one after it on the device's queue bracket everything it enqueued, CLBlast's\n"
      "kernels included (wall clock where the device cannot; the JSON's \"timer\"\n"
      "says which). GFLOP/s counts 2 flops per multiply-add; GB/s is given for\n"
      "memory-bound ops (peak read and copy, layer_norm, gelu, add); %peak is GB/s over\n"
      "the measured bandwidth peak for those and GFLOP/s over the measured FMA peak\n"
      "otherwise (OpenBLAS: over its CPU device's). Without the peak suite the peak\n"
      "is still measured, quickly (3 runs), for %peak, and not reported as cases.\n"
      "'m2pt-k ms' is the device time of m2pt's own kernels in a run. Attention shapes\n"
      "read BxNxHEADSxDIM_HEAD; 'peak +' is the device memory a path allocates beyond\n"
      "its input and output, 'total' the context's peak.\n"
      "\n"
      "Exit status: 0 on success (also when --compare finds slow-downs), 1 when a\n"
      "device or a case fails or an output file cannot be written, 2 for a bad\n"
      "command line: an unknown option or value, a --device that matches no\n"
      "device, an unreadable --compare/--against file.\n",
      f);
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
    {"peak", BENCH_SUITE_PEAK},
    {"gemm", BENCH_SUITE_GEMM},
    {"ffn", BENCH_SUITE_FFN},
    {"linear", BENCH_SUITE_LINEAR},
    {"startup", BENCH_SUITE_STARTUP},
    {"attention", BENCH_SUITE_ATTENTION},
    {"block", BENCH_SUITE_BLOCK},
    {"model", BENCH_SUITE_MODEL},
    {"train", BENCH_SUITE_TRAIN},
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
  const char **file = !strcmp(option, "--json")      ? &c->json
                      : !strcmp(option, "--csv")     ? &c->csv
                      : !strcmp(option, "--svg")     ? &c->svg
                      : !strcmp(option, "--compare") ? &c->compare
                      : !strcmp(option, "--against") ? &c->against
                                                     : NULL;
  if (file && value && value[0]) {
    *file = value;
    return 0;
  }
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
    else if (!strcmp(arg, "--kernels"))
      c->o.kernels = 1;
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
  if (!bad && c->against && !c->compare) {
    fprintf(stderr, "m2pt-bench: --against needs --compare\n");
    bad = -1;
  }
  apply_defaults(&c->o);
  return bad;
}

void bench_device_selector(const m2pt_device_info *info, char *buf, size_t size)
{
  snprintf(buf, size, "%u:%u", info->platform_index, info->device_index);
}

/* The suites that share one context: the peak first (the denominator of the
 * others' %peak), then those that report against it. */
static m2pt_status shared_context_suites(const m2pt_device_info *info, const bench_options *o)
{
  m2pt_context *ctx = NULL;
  bench_progress("creating a context (kernels compile on first use)");
  m2pt_status s = bench_context_create(info, &ctx);
  if (s == M2PT_OK)
    printf("GEMMs run on: %s%s\n", m2pt_context_gemm_backend(ctx),
           strcmp(m2pt_context_gemm_backend(ctx), "CLBlast") == 0
               ? ""
               : " (M2PT_HOST_BLAS=off measures CLBlast instead)");
  if (s == M2PT_OK && (o->suites & BENCH_SUITES_WITH_PEAK))
    s = bench_suite_peak(ctx, info, o, (o->suites & BENCH_SUITE_PEAK) != 0);
  if (s == M2PT_OK && (o->suites & BENCH_SUITE_GEMM))
    s = bench_suite_gemm(ctx, info, o);
  if (s == M2PT_OK && (o->suites & BENCH_SUITE_LINEAR))
    s = bench_suite_linear(ctx, info, o);
  if (s == M2PT_OK && (o->suites & BENCH_SUITE_FFN))
    s = bench_suite_ffn(ctx, o);
  if (s == M2PT_OK && (o->suites & BENCH_SUITE_BLOCK))
    s = bench_suite_block(ctx, o);
  if (s == M2PT_OK && (o->suites & BENCH_SUITE_MODEL))
    s = bench_suite_model(ctx, o);
  if (s == M2PT_OK && (o->suites & BENCH_SUITE_TRAIN))
    s = bench_suite_train(ctx, o);
  bench_context_destroy(ctx);
  return s;
}

/* The suites on one device, recorded under `label`. */
static m2pt_status bench_device(const m2pt_device_info *info, const char *label,
                                const bench_options *o)
{
  bench_begin_device(info, label);
  bench_print_device(info);
  bench_print_header();
  m2pt_status s = M2PT_OK;
  if (o->suites & BENCH_SUITES_WITH_PEAK)
    s = shared_context_suites(info, o);
  if (s == M2PT_OK && (o->suites & BENCH_SUITE_ATTENTION))
    s = bench_suite_attention(info, o);
  if (s == M2PT_OK && (o->suites & BENCH_SUITE_STARTUP))
    s = bench_suite_startup(info, o);
  bench_progress_clear();
  return s;
}

/* The records' name of device i: its name, with its selector where another
 * chosen device has the same name. */
static void device_label(const m2pt_device_info *infos, const unsigned char *chosen,
                         size_t count, size_t i, char *buf, size_t size)
{
  int twin = 0;
  for (size_t k = 0; k < count; k++)
    twin |= k != i && chosen[k] && !strcmp(infos[k].name, infos[i].name);
  if (twin)
    snprintf(buf, size, "%s [%u:%u]", infos[i].name, infos[i].platform_index,
             infos[i].device_index);
  else
    snprintf(buf, size, "%s", infos[i].name);
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

/* The exit code: 0, 1 on a failure, 2 when --device names no device. No
 * device at all is a failure, also for the smoke test: CI has PoCL
 * (DESIGN.md §4). */
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
  int bad_selector = 0; /* --device names no device: a bad command line */
  if (s == M2PT_OK) {
    s = choose_devices(c, count, chosen);
    bad_selector = s == M2PT_ERR_DEVICE_NOT_FOUND || s == M2PT_ERR_INVALID_ARGUMENT;
  }
  if (s == M2PT_OK)
    printf("m2pt-bench (m2pt %s): %d timed runs after %d warm-up runs per case\n",
           m2pt_version_string(), c->o.reps, c->o.warmup);
  for (size_t i = 0; s == M2PT_OK && i < count; i++)
    if (chosen[i]) {
      char label[M2PT_INFO_STRING + 16];
      device_label(infos, chosen, count, i, label, sizeof label);
      s = bench_device(&infos[i], label, &c->o);
    }
  free(infos);
  free(chosen);
  return s == M2PT_OK ? 0 : bad_selector ? 2 : 1;
}

/* The reports the command line asks for, of whatever was measured (also
 * after a failure); 1 when one cannot be written. */
static int write_reports(const cli *c)
{
  int rc = 0;
  if (c->json && bench_write_json(c->json) != M2PT_OK)
    rc = 1;
  if (c->csv && bench_write_csv(c->csv) != M2PT_OK)
    rc = 1;
  if (c->svg && bench_write_svg(c->svg) != M2PT_OK)
    rc = 1;
  return rc;
}

int main(int argc, char **argv)
{
  cli c;
  if (parse_args(argc, argv, &c) != 0) {
    fprintf(stderr, "(m2pt-bench --help describes the options)\n");
    return 2;
  }
  if (c.help) {
    usage(stdout);
    return 0;
  }
  if (c.probe)
    return bench_startup_probe(c.selectors[0], c.probe_cache, &c.o);
  void *old = NULL;
  if (c.compare && !(old = bench_compare_load(c.compare)))
    return 2;
  if (c.against) {
    void *new_doc = bench_compare_load(c.against);
    if (new_doc)
      bench_compare(old, new_doc);
    bench_compare_free(new_doc);
    bench_compare_free(old);
    return new_doc ? 0 : 2;
  }
  bench_report_options(&c.o);
  int rc = run_devices(&c);
  if (write_reports(&c))
    rc = 1;
  if (old)
    bench_compare(old, NULL);
  bench_compare_free(old);
  return rc;
}
