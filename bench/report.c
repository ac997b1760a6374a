/* m2pt-bench: the devices and the records of a run, and the table on
 * stdout. The files written from them are report_export.c (--json, --csv,
 * --svg); --compare is report_compare.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef M2PT_BENCH_HAVE_OPENBLAS
#  include <cblas.h>
#endif

#include "report.h"

#define OPENBLAS "openblas"

static struct {
  device_entry *devices;
  size_t n_devices;
  size_t current; /* index of the current device; n_devices: none yet */
  record *records;
  size_t n_records, cap_records;
  int openblas_done;
  bench_options options;
} run;

void bench_report_options(const bench_options *o)
{
  run.options = *o;
}

static device_entry *add_device(void)
{
  device_entry *d = realloc(run.devices, (run.n_devices + 1) * sizeof *d);
  if (!d)
    return NULL;
  run.devices = d;
  d += run.n_devices++;
  memset(d, 0, sizeof *d);
  return d;
}

void bench_begin_device(const m2pt_device_info *info, const char *label)
{
  device_entry *d = add_device();
  if (!d) {
    bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
    return;
  }
  snprintf(d->label, sizeof d->label, "%s", label);
  snprintf(d->vendor, sizeof d->vendor, "%s", info->vendor);
  snprintf(d->driver, sizeof d->driver, "%s", info->driver_version);
  snprintf(d->platform, sizeof d->platform, "%s", info->platform_name);
  bench_device_selector(info, d->selector, sizeof d->selector);
  d->type = info->is_gpu ? "gpu" : info->is_cpu ? "cpu" : "other";
  d->cpu = info->is_cpu;
  run.current = run.n_devices - 1;
}

static device_entry *current_device(void)
{
  return run.current < run.n_devices ? &run.devices[run.current] : NULL;
}

const char *bench_device_label(void)
{
  const device_entry *d = current_device();
  return d ? d->label : "-";
}

void bench_set_peak(double gflops, double gbps, int quick)
{
  device_entry *d = current_device();
  if (!d)
    return;
  d->peak_gflops = gflops;
  d->peak_gbps = gbps;
  d->peak_quick = quick;
  bench_progress_clear();
  printf("peak      measured: %.1f GFLOP/s (FMA), %.1f GB/s (best of read and copy)%s\n",
         gflops, gbps,
         quick ? "; a quick measurement for % of peak (the peak suite was not selected)" : "");
  fflush(stdout);
}

int bench_openblas_once(void)
{
  const int done = run.openblas_done;
  run.openblas_done = 1;
  return done;
}

/* The OpenBLAS entry of the devices, added with its first record. */
static void note_openblas(void)
{
  for (size_t i = 0; i < run.n_devices; i++)
    if (!strcmp(run.devices[i].label, OPENBLAS))
      return;
  const size_t current = run.current;
  device_entry *d = add_device();
  run.current = current;
  if (!d)
    return;
  snprintf(d->label, sizeof d->label, "%s", OPENBLAS);
  snprintf(d->vendor, sizeof d->vendor, "OpenBLAS");
#ifdef M2PT_BENCH_HAVE_OPENBLAS
  snprintf(d->driver, sizeof d->driver, "%s", openblas_get_config());
#endif
  snprintf(d->platform, sizeof d->platform, "host (cblas_sgemm)");
  d->type = "host";
}

/* ---- the table ---- */

void bench_print_device(const m2pt_device_info *info)
{
  bench_progress_clear();
  printf("\n== device %u:%u  %s (%s; %s, driver %s) ==\n", info->platform_index,
         info->device_index, info->name, info->is_gpu ? "GPU" : info->is_cpu ? "CPU" : "other",
         info->platform_name, info->driver_version);
}

void bench_print_header(void)
{
  printf("%-9s %-26s %-15s %10s %9s %9s %8s %7s %6s %9s  %s\n", "suite", "case", "shape",
         "median ms", "min ms", "max ms", "GFLOP/s", "GB/s", "%peak", "m2pt-k ms", "ratio");
}

static void add_record(const bench_row *r, double gflops, double gbps, double pct)
{
  if (run.n_records == run.cap_records) {
    const size_t cap = run.cap_records ? 2 * run.cap_records : 64;
    record *p = realloc(run.records, cap * sizeof *p);
    if (!p) {
      bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory: a record is lost");
      return;
    }
    run.records = p;
    run.cap_records = cap;
  }
  record *rec = &run.records[run.n_records++];
  memset(rec, 0, sizeof *rec);
  snprintf(rec->device, sizeof rec->device, "%s", r->openblas ? OPENBLAS : bench_device_label());
  snprintf(rec->suite, sizeof rec->suite, "%s", r->suite);
  snprintf(rec->name, sizeof rec->name, "%s %s", r->name, r->shape);
  snprintf(rec->shape, sizeof rec->shape, "%s", r->shape);
  rec->median_ms = r->t->median_ms;
  rec->min_ms = r->t->min_ms;
  rec->max_ms = r->t->max_ms;
  rec->kernel_ms = r->t->kernel_ms;
  rec->events = r->t->events;
  rec->n_kernels = r->t->n_kernels;
  rec->rest_kernels = r->t->rest_kernels;
  rec->rest_ms = r->t->rest_ms;
  memcpy(rec->kernels, r->t->kernels, sizeof rec->kernels);
  rec->gflops = gflops;
  rec->gbps = gbps;
  rec->pct_peak = pct;
  if (r->openblas)
    note_openblas();
}

/* --kernels: a line per kept kernel under the case's row, then the rest. */
static void print_kernels(const bench_timing *t)
{
  double total = t->rest_ms;
  for (size_t i = 0; i < t->n_kernels; i++)
    total += t->kernels[i].ms;
  for (size_t i = 0; i < t->n_kernels; i++) {
    const bench_kernel_share *k = &t->kernels[i];
    printf("%-9s   %-48s %10.3f ms %8.1f launches %6.1f%%\n", "", k->name, k->ms, k->launches,
           total > 0.0 ? 100.0 * k->ms / total : 0.0);
  }
  if (t->rest_kernels) {
    char rest[48];
    snprintf(rest, sizeof rest, "(%zu more kernels)", t->rest_kernels);
    printf("%-9s   %-48s %10.3f ms %17s %6.1f%%\n", "", rest, t->rest_ms, "",
           total > 0.0 ? 100.0 * t->rest_ms / total : 0.0);
  }
}

void bench_report(const bench_row *r)
{
  const bench_timing *t = r->t;
  const double gflops = r->flops > 0.0 && t->median_ms > 0.0 ? r->flops / (t->median_ms * 1e6)
                                                              : -1.0;
  const double gbps = r->bytes > 0.0 && t->median_ms > 0.0 ? r->bytes / (t->median_ms * 1e6)
                                                            : -1.0;
  const device_entry *d = current_device();
  double pct = -1.0;
  if (d && !r->no_peak) {
    if (gbps > 0.0 && d->peak_gbps > 0.0)
      pct = 100.0 * gbps / d->peak_gbps;
    else if (gflops > 0.0 && d->peak_gflops > 0.0)
      pct = 100.0 * gflops / d->peak_gflops;
  }
  char gf[32] = "-", gb[32] = "-", pc[32] = "-", kernel[32] = "-";
  if (gflops > 0.0)
    snprintf(gf, sizeof gf, "%.1f", gflops);
  if (gbps > 0.0)
    snprintf(gb, sizeof gb, "%.1f", gbps);
  if (pct >= 0.0)
    snprintf(pc, sizeof pc, "%.1f", pct);
  if (t->kernel_ms >= 0.0)
    snprintf(kernel, sizeof kernel, "%.3f", t->kernel_ms);
  bench_progress_clear();
  printf("%-9s %-26s %-15s %10.3f %9.3f %9.3f %8s %7s %6s %9s", r->suite,
         r->openblas ? OPENBLAS : r->name, r->shape, t->median_ms, t->min_ms, t->max_ms, gf, gb,
         pc, kernel);
  if (r->ratio > 0.0)
    printf("  %.2f %s", r->ratio, r->ratio_label ? r->ratio_label : "");
  if (r->note)
    printf("  (%s)", r->note);
  putchar('\n');
  if (t->n_kernels)
    print_kernels(t);
  fflush(stdout);
  add_record(r, gflops, gbps, pct);
}

void bench_print_row(const char *suite, const char *name, const char *shape,
                     const bench_timing *t, double flops, double ratio, const char *ratio_label,
                     const char *note)
{
  const bench_row r = {.suite = suite, .name = name, .shape = shape, .t = t, .flops = flops,
                       .ratio = ratio, .ratio_label = ratio_label, .note = note};
  bench_report(&r);
}

void bench_print_timing(const char *suite, const char *name, bench_shape shape,
                        const bench_timing *t, double ratio, const char *ratio_label)
{
  char shp[64];
  bench_shape_string(shape, shp, sizeof shp);
  bench_print_row(suite, name, shp, t, bench_flops(shape), ratio, ratio_label, NULL);
}

void bench_print_seconds(const char *suite, const char *name, const char *shp,
                         double seconds, double ratio, const char *ratio_label,
                         const char *note)
{
  const bench_timing t = {.median_ms = seconds * 1e3, .min_ms = seconds * 1e3,
                          .max_ms = seconds * 1e3, .kernel_ms = -1.0};
  const bench_row r = {.suite = suite, .name = name, .shape = shp, .t = &t, .ratio = ratio,
                       .ratio_label = ratio_label, .note = note, .no_peak = 1};
  bench_report(&r);
}

bench_run_state bench_run(void)
{
  const bench_run_state s = {run.devices, run.n_devices, run.records, run.n_records,
                             &run.options};
  return s;
}
