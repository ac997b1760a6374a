/* m2pt-info: lists every OpenCL platform and device, with what a user picking
 * one needs, and marks the one the default selector picks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <m2pt/m2pt.h>

static void usage(FILE *f)
{
  fprintf(f,
          "usage: m2pt-info [--device SELECTOR]\n"
          "Lists OpenCL devices; '*' marks the one m2pt picks for SELECTOR\n"
          "(default: $M2PT_DEVICE, else the first GPU, else the first CPU).\n"
          "Selectors: P:D (platform:device index), gpu, cpu, or part of a device name.\n"
          "Each device's line 'tuning:' says whether m2pt applies a CLBlast GEMM tuning\n"
          "there: one stored by m2pt-tune (under $M2PT_CACHE_DIR, else ~/.cache/m2pt),\n"
          "m2pt's shipped default for the device's class, or none; M2PT_TUNING=off\n"
          "disables them.\n");
}

static double mib(uint64_t bytes)
{
  return (double)bytes / (1024.0 * 1024.0);
}

/* Whether m2pt applies a CLBlast GEMM tuning on the device, and which, and
 * what runs its GEMMs: a context made for it says (m2pt-tune writes the
 * store). Where the default context's GEMMs run on the host, that context
 * applies no tuning, so a CLBlast context tells what CLBlast would use. */
static void print_tuning(const m2pt_device_info *d)
{
  char selector[64];
  snprintf(selector, sizeof selector, "%u:%u", d->platform_index, d->device_index);
  m2pt_context_options opts = m2pt_context_options_default();
  opts.device = selector;
  m2pt_context *ctx = NULL;
  m2pt_status s = m2pt_context_create(&opts, &ctx);
  if (s != M2PT_OK) {
    printf("        tuning: unknown (no context: %s)\n", m2pt_status_string(s));
    return;
  }
  const char *backend = m2pt_context_gemm_backend(ctx);
  const int host_blas = strcmp(backend, "CLBlast") != 0;
  m2pt_context *clblast = NULL;
  if (host_blas) {
    opts.flags = M2PT_CONTEXT_CLBLAST;
    s = m2pt_context_create(&opts, &clblast);
  }
  m2pt_tuning_source source = M2PT_TUNING_NONE;
  const char *detail = "";
  if (s == M2PT_OK) {
    m2pt_context_tuning(host_blas ? clblast : ctx, &source, &detail);
    static const char *const names[] = {"not tuned", "tuned", "tuned", "tuning off"};
    static const char *const froms[] = {"", " by m2pt-tune, store ", " with m2pt's ", ""};
    const unsigned i = (unsigned)source < 4 ? (unsigned)source : 0;
    printf("        tuning: %s%s%s%s%s%s\n", names[i], froms[i],
           source == M2PT_TUNING_NONE || source == M2PT_TUNING_DISABLED ? " (" : "", detail,
           source == M2PT_TUNING_NONE || source == M2PT_TUNING_DISABLED ? ")" : "",
           host_blas ? "; applies where CLBlast runs the GEMMs (M2PT_CONTEXT_CLBLAST, "
                       "M2PT_HOST_BLAS=off)"
                     : "");
  } else {
    printf("        tuning: unknown (no CLBlast context: %s)\n", m2pt_status_string(s));
  }
  printf("        GEMMs: %s\n", backend);
  m2pt_context_destroy(clblast);
  m2pt_context_destroy(ctx);
}

int main(int argc, char **argv)
{
  const char *selector = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
      selector = argv[++i];
    } else {
      usage(stderr);
      return 2;
    }
  }
  printf("m2pt %s\n", m2pt_version_string());
  size_t count = 0;
  m2pt_status s = m2pt_device_list(NULL, 0, &count);
  if (s != M2PT_OK) {
    fprintf(stderr, "m2pt-info: %s: %s\n", m2pt_status_string(s), m2pt_last_error(NULL));
    return 1;
  }
  if (count == 0) {
    printf("no OpenCL device found (install an ICD, e.g. pocl-opencl-icd)\n");
    return 1;
  }
  m2pt_device_info *infos = calloc(count, sizeof *infos);
  if (!infos) {
    fprintf(stderr, "m2pt-info: out of memory\n");
    return 1;
  }
  s = m2pt_device_list(infos, count, &count);
  size_t chosen = (size_t)-1;
  const m2pt_status sel = m2pt_device_select(selector, &chosen);
  int rc = 0;
  if (s == M2PT_OK) {
    unsigned last_platform = (unsigned)-1;
    for (size_t i = 0; i < count; i++) {
      const m2pt_device_info *d = &infos[i];
      if (d->platform_index != last_platform) {
        printf("\nplatform %u: %s (%s)\n", d->platform_index, d->platform_name,
               d->platform_version);
        last_platform = d->platform_index;
      }
      printf("%c %u:%u  %s\n", i == chosen ? '*' : ' ', d->platform_index, d->device_index,
             d->name);
      printf("        type %s, vendor %s, driver %s\n",
             d->is_gpu ? "GPU" : d->is_cpu ? "CPU" : "other", d->vendor, d->driver_version);
      printf("        %s, %s\n", d->device_version, d->opencl_c_version);
      printf("        %u compute units at %u MHz, global memory %.0f MiB (largest buffer "
             "%.0f MiB), local memory %.0f KiB\n",
             d->compute_units, d->max_clock_mhz, mib(d->global_mem_bytes),
             mib(d->max_alloc_bytes), (double)d->local_mem_bytes / 1024.0);
      printf("        fp16 %s, fp64 %s\n", d->has_fp16 ? "yes" : "no", d->has_fp64 ? "yes" : "no");
      print_tuning(d);
    }
  } else {
    fprintf(stderr, "m2pt-info: %s: %s\n", m2pt_status_string(s), m2pt_last_error(NULL));
    rc = 1;
  }
  if (sel != M2PT_OK) {
    fprintf(stderr, "\nm2pt-info: selector: %s: %s\n", m2pt_status_string(sel),
            m2pt_last_error(NULL));
    rc = 1;
  }
  free(infos);
  return rc;
}
