/* A context's options as resolved at creation: checked flags, the cache
 * directory, whether program binaries are cached there, the build options
 * every program gets. */
#include "context_options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context_impl.h"
#include "error.h"
#include "options.h"

char *m2pt_cache_dir_resolve(const char *option)
{
  const char *dir = option ? option : getenv("M2PT_CACHE_DIR");
  if (dir && dir[0])
    return strcmp(dir, "off") == 0 ? NULL : strdup(dir);
  char buf[4096];
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (xdg && xdg[0])
    snprintf(buf, sizeof buf, "%s/m2pt", xdg);
  else if (home && home[0])
    snprintf(buf, sizeof buf, "%s/.cache/m2pt", home);
  else
    return NULL;
  return strdup(buf);
}

int m2pt_binary_cache_wanted(const m2pt_context_options *opts, const m2pt_quirks *quirks)
{
  const m2pt_binary_cache mode = opts ? opts->binary_cache : M2PT_BINARY_CACHE_AUTO;
  return mode == M2PT_BINARY_CACHE_ON || (mode == M2PT_BINARY_CACHE_AUTO && quirks->binary_cache);
}

void m2pt_base_build_options_set(m2pt_context *ctx)
{
  char *opt = ctx->base_build_options;
  const size_t cap = sizeof ctx->base_build_options;
  opt[0] = '\0';
  /* OpenCL C 1.2 is what our kernels are written in; 1.0/1.1 devices build
   * them with their own default. */
  if (strncmp(ctx->info.opencl_c_version, "OpenCL C 1.0", 12) != 0 &&
      strncmp(ctx->info.opencl_c_version, "OpenCL C 1.1", 12) != 0)
    strncat(opt, "-cl-std=CL1.2", cap - strlen(opt) - 1);
  /* Vendors differ in divide/sqrt accuracy unless asked for correct rounding,
   * which is only allowed where the device reports it. */
  if (ctx->quirks.correctly_rounded_divide_sqrt)
    strncat(opt, " -cl-fp32-correctly-rounded-divide-sqrt", cap - strlen(opt) - 1);
}

/* m2pt_context_options as first released (options.h). */
#define OPTIONS_SIZE_0_2 sizeof(m2pt_context_options)

m2pt_status m2pt_context_options_read(const m2pt_context_options *options, const char *fn,
                                      m2pt_context_options *o)
{
  *o = m2pt_context_options_default();
  M2PT_TRY(m2pt_options_read(NULL, o, sizeof *o, OPTIONS_SIZE_0_2, options,
                             "m2pt_context_options", fn));
  M2PT_REQUIRE(NULL,
               o->binary_cache == M2PT_BINARY_CACHE_AUTO ||
                   o->binary_cache == M2PT_BINARY_CACHE_ON ||
                   o->binary_cache == M2PT_BINARY_CACHE_OFF,
               "%s: unknown binary_cache value %d", fn, (int)o->binary_cache);
  const unsigned known = M2PT_CONTEXT_PROFILING | M2PT_CONTEXT_CLBLAST;
  M2PT_REQUIRE(NULL, (o->flags & ~known) == 0, "%s: unknown flags 0x%x", fn, o->flags & ~known);
  return M2PT_OK;
}
