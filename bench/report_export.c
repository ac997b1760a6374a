/* m2pt-bench's reports written from the run's records: --json (through
 * cJSON), --csv and --svg (a bar chart per workload and device). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "report.h"

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
  if (r->n_kernels) {
    cJSON *kernels = cJSON_AddArrayToObject(o, "kernels");
    for (size_t i = 0; i < r->n_kernels; i++) {
      cJSON *k = cJSON_CreateObject();
      cJSON_AddStringToObject(k, "name", r->kernels[i].name);
      cJSON_AddNumberToObject(k, "ms", round_sig(r->kernels[i].ms));
      cJSON_AddNumberToObject(k, "launches", round_sig(r->kernels[i].launches));
      cJSON_AddItemToArray(kernels, k);
    }
    if (r->rest_kernels) {
      cJSON *rest = cJSON_AddObjectToObject(o, "kernels_rest");
      cJSON_AddNumberToObject(rest, "kernels", (double)r->rest_kernels);
      cJSON_AddNumberToObject(rest, "ms", round_sig(r->rest_ms));
    }
  }
  return o;
}

cJSON *bench_run_json(void)
{
  const bench_run_state run = bench_run();
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "tool", "m2pt-bench");
  cJSON_AddStringToObject(root, "m2pt_version", m2pt_version_string());
  const bench_options *o = run.options;
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
  cJSON *root = bench_run_json();
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
  const bench_run_state run = bench_run();
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
  const bench_run_state run = bench_run();
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
  const bench_run_state run = bench_run();
  for (size_t i = 0; i < run.n_records; i++)
    if (!strcmp(run.records[i].device, device) && !strcmp(run.records[i].suite, suite) &&
        !strcmp(run.records[i].name, name))
      return &run.records[i];
  return NULL;
}

static void svg_legend(FILE *f, double x0, double y)
{
  const bench_run_state run = bench_run();
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
  const bench_run_state run = bench_run();
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
