/* What report.c keeps of a run (its devices and records) for the writers
 * of report_export.c. Internal to m2pt-bench. */
#ifndef M2PT_BENCH_REPORT_H
#define M2PT_BENCH_REPORT_H

#include <stddef.h>

#include "bench.h"

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
  /* --kernels: bench_timing's split by kernel */
  size_t n_kernels, rest_kernels;
  double rest_ms;
  bench_kernel_share kernels[BENCH_KERNELS_KEPT];
} record;

/* The run so far: devices and records in the order they came. */
typedef struct bench_run_state {
  const device_entry *devices;
  size_t n_devices;
  const record *records;
  size_t n_records;
  const bench_options *options;
} bench_run_state;

bench_run_state bench_run(void);

/* The run as the --json document (report_export.c); --compare without
 * --against compares against it. The caller frees it with cJSON_Delete. */
struct cJSON *bench_run_json(void);

#endif
