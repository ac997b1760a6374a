/* Applying a tuning to CLBlast (CLBlastOverrideParameters, process-wide per
 * device), and choosing which one when a context whose GEMMs run on CLBlast
 * is created: the device's store, else the shipped default. */
#include "tuning.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context_impl.h" /* before clblast_c.h: fixes the OpenCL API level */
#include <clblast_c.h>

#include "backend.h"
#include "clblast_lock.h"
#include "core/error.h"

int m2pt_tuning_apply(cl_device_id device, const m2pt_tuning *t, char *why, size_t size)
{
  /* CLBlast swaps a device's parameters by removing its cache entry and
   * storing the new one: a GEMM in another thread in between would store
   * CLBlast's defaults first, and the override would be lost. */
  int overridden = 0;
  m2pt_clblast_exclusive_lock();
  for (int k = 0; k < M2PT_TK_COUNT; k++) {
    if (!(t->present & (1u << k)))
      continue;
    const m2pt_tuning_kernel kernel = (m2pt_tuning_kernel)k;
    const char *name = m2pt_tuning_kernel_name(kernel);
    /* CLBlast's prototype takes the names as const char ** (no const pointers). */
    const char *names[M2PT_TUNING_MAX_PARAMS];
    const size_t count = m2pt_tuning_param_count(kernel);
    memcpy(names, m2pt_tuning_param_names(kernel), count * sizeof *names);
    const CLBlastStatusCode s = CLBlastOverrideParameters(
        device, name, CLBlastPrecisionSingle, count, names, m2pt_tuning_values_const(t, kernel));
    if (s != CLBlastSuccess) {
      m2pt_clblast_exclusive_unlock(overridden);
      snprintf(why, size, "CLBlastOverrideParameters(%s) failed with status %d", name, (int)s);
      return -1;
    }
    overridden = 1;
  }
  m2pt_clblast_exclusive_unlock(overridden);
  return 0;
}

/* snprintf for messages that may be cut short (paths can be long). */
static void put_text(char *dst, size_t cap, const char *fmt, ...) M2PT_PRINTF(3, 4);
static void put_text(char *dst, size_t cap, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dst, cap, fmt, ap);
  va_end(ap);
}

void m2pt_tuning_context_init(m2pt_context *ctx, const char *cache_dir,
                              struct m2pt_gemm_context *g)
{
  char *detail = g->tuning_detail;
  const size_t cap = sizeof g->tuning_detail;
  char warning[M2PT_TUNING_DETAIL / 2] = "";
  char why[256] = "";
  g->tuning_source = M2PT_TUNING_NONE;
  detail[0] = '\0';
  const char *env = getenv("M2PT_TUNING");
  if (env && strcmp(env, "off") == 0) {
    g->tuning_source = M2PT_TUNING_DISABLED;
    put_text(detail, cap, "M2PT_TUNING=off: CLBlast's own parameters, unless a tuning was "
                          "applied to this device earlier in the process (CLBlast keeps it)");
    return;
  }
  m2pt_tuning_limits limits;
  m2pt_tuning_limits_of(ctx, &limits);
  m2pt_tuning t;
  if (cache_dir) {
    char path[4096];
    m2pt_tuning_store_path(cache_dir, &ctx->info, path, sizeof path);
    const m2pt_tuning_read r =
        path[0] ? m2pt_tuning_store_read(path, &limits, &t, NULL, why, sizeof why)
                : M2PT_TUNING_READ_MISSING;
    if (r == M2PT_TUNING_READ_OK && m2pt_tuning_apply(ctx->device, &t, why, sizeof why) == 0) {
      g->tuning_source = M2PT_TUNING_STORED;
      put_text(detail, cap, "%s", path);
      return;
    }
    if (r != M2PT_TUNING_READ_MISSING)
      put_text(warning, sizeof warning, "warning: ignored tuning store %s: %s", path, why);
  }
  const char *label = "";
  const m2pt_tuning *shipped = m2pt_tuning_shipped(&ctx->info, &label);
  if (shipped) {
    const char *bad = NULL;
    for (int k = 0; k < M2PT_TK_COUNT && !bad; k++)
      if (shipped->present & (1u << k))
        bad = m2pt_tuning_check(shipped, (m2pt_tuning_kernel)k, &limits);
    if (!bad && m2pt_tuning_apply(ctx->device, shipped, why, sizeof why) == 0) {
      g->tuning_source = M2PT_TUNING_SHIPPED;
      put_text(detail, cap, "%s%s%s", label, warning[0] ? "; " : "", warning);
      return;
    }
    put_text(detail, cap, "%s%swarning: %s not applied: %s", warning, warning[0] ? "; " : "",
             label, bad ? bad : why);
    return;
  }
  put_text(detail, cap, "%s",
           warning[0] ? warning
                      : "CLBlast's own parameters, unless a tuning was applied to this device "
                        "earlier in the process (CLBlast keeps it)");
}
