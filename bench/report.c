/* m2pt-bench: the devices and the records of a run, the table on stdout,
 * and the reports: --json, --csv, --svg and --compare (JSON through cJSON). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#ifdef M2PT_BENCH_HAVE_OPENBLAS
#  include <cblas.h>
#endif

#include "bench.h"

#define OPENBLAS "openblas"
#define SLOWER_THRESHOLD 1.05 /* --compare flags a time ratio new/old above this */
/* --compare does not flag a case whose old and new medians are both below
 * this: there the median is enqueue and timer overhead, and a ratio of two
 * such times says nothing about the code (0.000 ms against 0.000 ms read as
 * 1.8× slower on one run). */
#define COMPARE_FLOOR_MS 0.05

typedef struct device_entry {
  char label[M2PT_INFO_STRING + 16];
  char vendor[M2PT_INFO_STRING], driver[M2PT_INFO_STRING], platform[M2PT_INFO_STRING];
  char selector[32];
  const char *type; /* "gpu", "cpu", "other", "host" (OpenBLAS) */
  int cpu;          /* reports CL_DEVICE_TYPE_CPU (Oclgrind reports CPU and GPU) */
  double peak_gflops, peak_gbps; /* 0: not measured */
  int peak_quick;
} device_entry;

typedef struct record {
  char device[M2PT_INFO_STRING + 16];
  char suite[16], name[64], shape[48];
  double median_ms, min_ms, max_ms, kernel_ms; /* kernel_ms < 0: not measured */
  double gflops, gbps, pct_peak;               /* < 0: not meaningful */
  int events;
} record;

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
  rec->gflops = gflops;
  rec->gbps = gbps;
  rec->pct_peak = pct;
  if (r->openblas)
    note_openblas();
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
  const bench_timing t = {seconds * 1e3, seconds * 1e3, seconds * 1e3, -1.0, 0};
  const bench_row r = {.suite = suite, .name = name, .shape = shp, .t = &t, .ratio = ratio,
                       .ratio_label = ratio_label, .note = note, .no_peak = 1};
  bench_report(&r);
}

/* ---- JSON ---- */

/* Adds `value`, or null when it is negative (not meaningful). */
static void add_number_or_null(cJSON *obj, const char *key, double value)
{
  if (value >= 0.0)
    cJSON_AddNumberToObject(obj, key, value);
  else
    cJSON_AddNullToObject(obj, key);
}

static double round_sig(double v)
{
  if (v <= 0.0 || !isfinite(v))
    return v;
  const double scale = pow(10.0, 6 - (int)ceil(log10(v)));
  return round(v * scale) / scale;
}

static cJSON *device_json(const device_entry *d)
{
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", d->label);
  cJSON_AddStringToObject(o, "vendor", d->vendor);
  cJSON_AddStringToObject(o, "driver", d->driver);
  cJSON_AddStringToObject(o, "platform", d->platform);
  cJSON_AddStringToObject(o, "type", d->type);
  cJSON_AddBoolToObject(o, "cpu", d->cpu);
  if (d->selector[0])
    cJSON_AddStringToObject(o, "selector", d->selector);
  add_number_or_null(o, "peak_gflops", d->peak_gflops > 0.0 ? round_sig(d->peak_gflops) : -1.0);
  add_number_or_null(o, "peak_gbps", d->peak_gbps > 0.0 ? round_sig(d->peak_gbps) : -1.0);
  if (d->peak_gflops > 0.0)
    cJSON_AddStringToObject(o, "peak_source", d->peak_quick ? "quick" : "peak suite");
  return o;
}

static cJSON *record_json(const record *r)
{
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "device", r->device);
  cJSON_AddStringToObject(o, "suite", r->suite);
  cJSON_AddStringToObject(o, "case", r->name);
  cJSON_AddStringToObject(o, "shape", r->shape);
  cJSON_AddNumberToObject(o, "median_ms", round_sig(r->median_ms));
  cJSON_AddNumberToObject(o, "min_ms", round_sig(r->min_ms));
  cJSON_AddNumberToObject(o, "max_ms", round_sig(r->max_ms));
  add_number_or_null(o, "gflops", round_sig(r->gflops));
  if (r->gbps >= 0.0)
    cJSON_AddNumberToObject(o, "gbps", round_sig(r->gbps));
  if (r->pct_peak >= 0.0)
    cJSON_AddNumberToObject(o, "pct_peak", round_sig(r->pct_peak));
  if (r->kernel_ms >= 0.0)
    cJSON_AddNumberToObject(o, "kernel_ms", round_sig(r->kernel_ms));
  cJSON_AddStringToObject(o, "timer", r->events ? "events" : "wall");
  return o;
}

static cJSON *run_json(void)
{
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "tool", "m2pt-bench");
  cJSON_AddStringToObject(root, "m2pt_version", m2pt_version_string());
  const bench_options *o = &run.options;
  cJSON_AddStringToObject(root, "mode", o->smoke ? "smoke" : o->quick ? "quick" : "full");
  cJSON_AddNumberToObject(root, "warmup", o->warmup);
  cJSON_AddNumberToObject(root, "reps", o->reps);
#ifdef M2PT_BENCH_HAVE_OPENBLAS
  cJSON_AddTrueToObject(root, "openblas");
#else
  cJSON_AddFalseToObject(root, "openblas");
#endif
  cJSON *devices = cJSON_AddArrayToObject(root, "devices");
  for (size_t i = 0; i < run.n_devices; i++)
    cJSON_AddItemToArray(devices, device_json(&run.devices[i]));
  cJSON *results = cJSON_AddArrayToObject(root, "results");
  for (size_t i = 0; i < run.n_records; i++)
    cJSON_AddItemToArray(results, record_json(&run.records[i]));
  return root;
}

/* Writes `text` to `path`; reports a failure. */
static m2pt_status write_text(const char *path, const char *what, const char *text)
{
  FILE *f = fopen(path, "w");
  int ok = f != NULL;
  if (ok)
    ok = fputs(text, f) >= 0;
  if (f)
    ok = fclose(f) == 0 && ok;
  if (!ok)
    return bench_fail(M2PT_ERR_IO, "cannot write the %s file %s", what, path);
  return M2PT_OK;
}

m2pt_status bench_write_json(const char *path)
{
  cJSON *root = run_json();
  char *text = root ? cJSON_Print(root) : NULL;
  cJSON_Delete(root);
  if (!text)
    return bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory writing %s", path);
  const size_t n = strlen(text);
  char *with_newline = malloc(n + 2);
  m2pt_status s;
  if (with_newline) {
    memcpy(with_newline, text, n);
    memcpy(with_newline + n, "\n", 2);
    s = write_text(path, "JSON", with_newline);
  } else {
    s = write_text(path, "JSON", text);
  }
  free(with_newline);
  cJSON_free(text);
  return s;
}

/* ---- CSV ---- */

/* A field, quoted when it holds a comma, quote or line break. */
static void csv_field(FILE *f, const char *text)
{
  if (!strpbrk(text, ",\"\r\n")) {
    fputs(text, f);
    return;
  }
  fputc('"', f);
  for (const char *p = text; *p; p++) {
    if (*p == '"')
      fputc('"', f);
    fputc(*p, f);
  }
  fputc('"', f);
}

static void csv_number(FILE *f, double v)
{
  fputc(',', f);
  if (v >= 0.0)
    fprintf(f, "%.6g", v);
}

m2pt_status bench_write_csv(const char *path)
{
  FILE *f = fopen(path, "w");
  if (!f)
    return bench_fail(M2PT_ERR_IO, "cannot write the CSV file %s", path);
  fputs("device,suite,case,shape,median_ms,min_ms,max_ms,gflops,gbps,pct_peak,kernel_ms,timer\n",
        f);
  for (size_t i = 0; i < run.n_records; i++) {
    const record *r = &run.records[i];
    csv_field(f, r->device);
    fputc(',', f);
    csv_field(f, r->suite);
    fputc(',', f);
    csv_field(f, r->name);
    fputc(',', f);
    csv_field(f, r->shape);
    csv_number(f, r->median_ms);
    csv_number(f, r->min_ms);
    csv_number(f, r->max_ms);
    csv_number(f, r->gflops);
    csv_number(f, r->gbps);
    csv_number(f, r->pct_peak);
    csv_number(f, r->kernel_ms);
    fprintf(f, ",%s\n", r->events ? "events" : "wall");
  }
  if (fclose(f) != 0)
    return bench_fail(M2PT_ERR_IO, "cannot write the CSV file %s", path);
  return M2PT_OK;
}

/* ---- SVG ---- */

static void xml_text(FILE *f, const char *text)
{
  for (const char *p = text; *p; p++)
    switch (*p) {
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '&': fputs("&amp;", f); break;
    case '"': fputs("&quot;", f); break;
    default: fputc(*p, f);
    }
}

/* A readable tick step for an axis up to `max`: 1, 2 or 5 times a power of 10. */
static double tick_step(double max)
{
  const double raw = max / 6.0;
  const double p = pow(10.0, floor(log10(raw)));
  return raw <= p ? p : raw <= 2 * p ? 2 * p : raw <= 5 * p ? 5 * p : 10 * p;
}

/* The workloads of the chart: the first record of each (suite, case) with
 * a GFLOP/s figure, in run order. */
static size_t chart_workloads(size_t *first)
{
  size_t n = 0;
  for (size_t i = 0; i < run.n_records; i++) {
    const record *r = &run.records[i];
    if (r->gflops <= 0.0)
      continue;
    int seen = 0;
    for (size_t k = 0; k < n && !seen; k++)
      seen = !strcmp(run.records[first[k]].suite, r->suite) &&
             !strcmp(run.records[first[k]].name, r->name);
    if (!seen)
      first[n++] = i;
  }
  return n;
}

static const record *find_record(const char *device, const char *suite, const char *name)
{
  for (size_t i = 0; i < run.n_records; i++)
    if (!strcmp(run.records[i].device, device) && !strcmp(run.records[i].suite, suite) &&
        !strcmp(run.records[i].name, name))
      return &run.records[i];
  return NULL;
}

static void svg_legend(FILE *f, double x0, double y)
{
  static const char *const colours[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759",
                                        "#76b7b2", "#edc948", "#b07aa1", "#9c755f"};
  for (size_t d = 0; d < run.n_devices; d++) {
    const double yy = y + 18.0 * (double)d;
    fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"12\" height=\"12\" fill=\"%s\"/>\n", x0, yy,
            colours[d % 8]);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">", x0 + 18, yy + 10);
    xml_text(f, run.devices[d].label);
    fputs("</text>\n", f);
  }
}

m2pt_status bench_write_svg(const char *path)
{
  static const char *const colours[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759",
                                        "#76b7b2", "#edc948", "#b07aa1", "#9c755f"};
  size_t *first = calloc(run.n_records + 1, sizeof *first);
  if (!first)
    return bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory writing %s", path);
  const size_t nw = chart_workloads(first);
  const size_t nd = run.n_devices ? run.n_devices : 1;
  double max = 0.0;
  for (size_t i = 0; i < run.n_records; i++)
    max = run.records[i].gflops > max ? run.records[i].gflops : max;
  if (max <= 0.0)
    max = 1.0;
  const double step = tick_step(max), axis_max = ceil(max / step) * step;
  const double label_w = 330.0, plot_w = 560.0, bar_h = 12.0, gap = 10.0;
  const double top = 60.0 + 18.0 * (double)nd, group_h = bar_h * (double)nd + gap;
  const double plot_h = group_h * (double)nw, width = label_w + plot_w + 80.0;
  const double height = top + plot_h + 60.0;

  FILE *f = fopen(path, "w");
  if (!f) {
    free(first);
    return bench_fail(M2PT_ERR_IO, "cannot write the SVG file %s", path);
  }
  fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
             "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"11\">\n",
          width, height, width, height);
  fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
  fprintf(f, "<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">m2pt-bench: "
             "GFLOP/s per workload and device (higher is faster; median of the timed runs)"
             "</text>\n");
  svg_legend(f, 10.0, 36.0);
  /* Grid, ticks and the axis label. */
  for (double v = 0.0; v <= axis_max * 1.0001; v += step) {
    const double x = label_w + plot_w * v / axis_max;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x,
            top, x, top + plot_h);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", x,
            top + plot_h + 16, v);
  }
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\">GFLOP/s"
             "</text>\n", label_w + plot_w / 2, top + plot_h + 40);
  fprintf(f, "<text x=\"12\" y=\"%.1f\" font-size=\"13\" transform=\"rotate(-90 12 %.1f)\" "
             "text-anchor=\"middle\">workload (suite: case)</text>\n",
          top + plot_h / 2, top + plot_h / 2);
  for (size_t w = 0; w < nw; w++) {
    const record *wr = &run.records[first[w]];
    const double y = top + group_h * (double)w;
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", label_w - 6,
            y + bar_h * (double)nd / 2 + 4);
    xml_text(f, wr->suite);
    fputs(": ", f);
    xml_text(f, wr->name);
    fputs("</text>\n", f);
    for (size_t d = 0; d < run.n_devices; d++) {
      const record *r = find_record(run.devices[d].label, wr->suite, wr->name);
      if (!r || r->gflops <= 0.0)
        continue;
      const double yy = y + bar_h * (double)d, bw = plot_w * r->gflops / axis_max;
      fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">"
                 "<title>", label_w, yy, bw, bar_h - 1, colours[d % 8]);
      xml_text(f, r->device);
      fprintf(f, ": %.4g GFLOP/s, %.4g ms</title></rect>\n", r->gflops, r->median_ms);
      fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"9\">%.3g</text>\n", label_w + bw + 3,
              yy + bar_h - 3, r->gflops);
    }
  }
  fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n",
          label_w, top, label_w, top + plot_h);
  fputs("</svg>\n", f);
  free(first);
  if (fclose(f) != 0)
    return bench_fail(M2PT_ERR_IO, "cannot write the SVG file %s", path);
  return M2PT_OK;
}

/* ---- --compare ---- */

/* Bench JSON files are kilobytes; anything past this is not one. */
#define COMPARE_MAX_BYTES ((size_t)64 << 20)

void *bench_compare_load(const char *path)
{
  /* O_NONBLOCK and the regular-file check: a FIFO or device given as OLD
   * must fail, not hang or read forever. */
  const int fd = open(path, O_RDONLY | O_NONBLOCK);
  struct stat st;
  FILE *f = NULL;
  if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
      (size_t)st.st_size <= COMPARE_MAX_BYTES)
    f = fdopen(fd, "rb");
  if (!f) {
    if (fd >= 0)
      close(fd);
    bench_fail(M2PT_ERR_IO, "--compare: cannot read %s (a regular file of at most 64 MiB)",
               path);
    return NULL;
  }
  size_t cap = 1 << 16, n = 0;
  char *text = malloc(cap);
  for (size_t got = 1; text && got > 0;) {
    if (n + 1 == cap) {
      char *p = realloc(text, cap * 2);
      if (!p) {
        free(text);
        text = NULL;
        break;
      }
      text = p;
      cap *= 2;
    }
    got = fread(text + n, 1, cap - 1 - n, f);
    n += got;
  }
  fclose(f);
  if (!text) {
    bench_fail(M2PT_ERR_OUT_OF_MEMORY, "--compare: out of host memory reading %s", path);
    return NULL;
  }
  text[n] = '\0';
  cJSON *doc = cJSON_Parse(text);
  free(text);
  const cJSON *results = cJSON_GetObjectItemCaseSensitive(doc, "results");
  if (!cJSON_IsArray(results)) {
    bench_fail(M2PT_ERR_FORMAT, "--compare: %s is not a m2pt-bench --json file (%s)", path,
               doc ? "no \"results\" array" : "not JSON");
    cJSON_Delete(doc);
    return NULL;
  }
  return doc;
}

void bench_compare_free(void *doc)
{
  cJSON_Delete(doc);
}

static const char *string_of(const cJSON *rec, const char *key)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double median_of(const cJSON *rec)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, "median_ms");
  return cJSON_IsNumber(v) ? v->valuedouble : -1.0;
}

static int same_case(const cJSON *a, const cJSON *b)
{
  static const char *const keys[] = {"device", "suite", "case"};
  for (size_t i = 0; i < 3; i++) {
    const char *x = string_of(a, keys[i]), *y = string_of(b, keys[i]);
    if (!x || !y || strcmp(x, y))
      return 0;
  }
  return 1;
}

static const cJSON *find_case(const cJSON *results, const cJSON *rec)
{
  const cJSON *r;
  cJSON_ArrayForEach(r, results)
  {
    if (same_case(r, rec))
      return r;
  }
  return NULL;
}

/* The widest device name among the records: the table prints names whole, so
 * devices that share a prefix (two PoCL devices, two GPUs of one vendor) stay
 * apart. */
static int device_width(const cJSON *results)
{
  int width = (int)strlen("device");
  const cJSON *r;
  cJSON_ArrayForEach(r, results)
  {
    const char *device = string_of(r, "device");
    if (device && (int)strlen(device) > width)
      width = (int)strlen(device);
  }
  return width;
}

size_t bench_compare(const void *old_doc, const void *new_doc)
{
  cJSON *own = new_doc ? NULL : run_json();
  const cJSON *old_results = cJSON_GetObjectItemCaseSensitive(old_doc, "results");
  const cJSON *new_results =
      cJSON_GetObjectItemCaseSensitive(new_doc ? (const cJSON *)new_doc : own, "results");
  size_t compared = 0, slower = 0, faster = 0, tiny = 0, only_new = 0, only_old = 0;
  const int width = device_width(new_results);
  bench_progress_clear();
  printf("\n== compare: median time new/old per (device, suite, case); > 1 is slower, "
         "SLOWER above %.2f, not judged where both are below %.2f ms ==\n", SLOWER_THRESHOLD,
         COMPARE_FLOOR_MS);
  printf("%-*s %-9s %-40s %10s %10s %7s\n", width, "device", "suite", "case", "old ms", "new ms",
         "new/old");
  const cJSON *r;
  cJSON_ArrayForEach(r, new_results)
  {
    const char *device = string_of(r, "device"), *suite = string_of(r, "suite");
    const char *name = string_of(r, "case");
    if (!device || !suite || !name)
      continue;
    const cJSON *o = find_case(old_results, r);
    const double t_new = median_of(r), t_old = o ? median_of(o) : -1.0;
    if (!o || t_old < 0.0 || t_new < 0.0) {
      only_new++;
      printf("%-*s %-9s %-40s %10s %10.3f %7s  (not in OLD)\n", width, device, suite, name, "-",
             t_new, "-");
      continue;
    }
    compared++;
    if (t_old < COMPARE_FLOOR_MS && t_new < COMPARE_FLOOR_MS) {
      tiny++;
      printf("%-*s %-9s %-40s %10.3f %10.3f %7s  (below %.2f ms)\n", width, device, suite, name,
             t_old, t_new, "-", COMPARE_FLOOR_MS);
      continue;
    }
    /* Here at least one median is above the floor, so a zero old median
     * (a case that used to take no measurable time) is infinitely slower. */
    const double ratio = t_old > 0.0 ? t_new / t_old : INFINITY;
    slower += ratio > SLOWER_THRESHOLD;
    faster += ratio < 1.0 / SLOWER_THRESHOLD;
    printf("%-*s %-9s %-40s %10.3f %10.3f %7.3f%s\n", width, device, suite, name, t_old, t_new,
           ratio, ratio > SLOWER_THRESHOLD ? "  SLOWER" : "");
  }
  cJSON_ArrayForEach(r, old_results)
  {
    if (!find_case(new_results, r))
      only_old++;
  }
  printf("compare: %zu cases compared, %zu SLOWER (median time more than %.0f%% above OLD), "
         "%zu faster by more than that, %zu below %.2f ms in both (not judged), %zu not in OLD, "
         "%zu of OLD not measured now\n",
         compared, slower, (SLOWER_THRESHOLD - 1.0) * 100.0, faster, tiny, COMPARE_FLOOR_MS,
         only_new, only_old);
  fflush(stdout);
  cJSON_Delete(own);
  return slower;
}
