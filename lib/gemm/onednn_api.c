/* Loading oneDNN at run time (onednn_api.h says why). */
#include "onednn_api.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define STRINGIFY(x) #x
#define SONAME(major) "libdnnl.so." STRINGIFY(major)

static pthread_once_t once = PTHREAD_ONCE_INIT;
static m2pt_onednn_api api;
static int loaded;
static char failure[256];

/* Before libgomp starts, passive unless the environment says otherwise or
 * it has started already; 1 when it set the variable. setenv runs once,
 * under pthread_once, while the first CPU context is created. */
static int prefer_passive_threads(void)
{
  if (getenv("OMP_WAIT_POLICY"))
    return 0;
  void *gomp = dlopen("libgomp.so.1", RTLD_LAZY | RTLD_NOLOAD);
  if (gomp) {
    dlclose(gomp);
    return 0;
  }
  return setenv("OMP_WAIT_POLICY", "passive", 0) == 0;
}

static void load(void)
{
  const int set = prefer_passive_threads();
  /* Never closed once complete: its JIT code and caches live until the
   * process ends. */
  void *lib = dlopen(SONAME(DNNL_VERSION_MAJOR), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    snprintf(failure, sizeof failure, "oneDNN could not be loaded: %s", dlerror());
    /* Without oneDNN the environment is left as the application gave it. */
    if (set)
      unsetenv("OMP_WAIT_POLICY");
    return;
  }
  /* POSIX's way to store dlsym's object pointer into a function pointer. */
#define RESOLVE(f)                     \
  *(void **)(&api.f) = dlsym(lib, #f); \
  if (!api.f) {                        \
    missing = #f;                      \
    goto fail;                         \
  }
  const char *missing = NULL;
  M2PT_ONEDNN_FUNCTIONS(RESOLVE)
#undef RESOLVE
  /* Found through oneDNN's dependencies, where it uses OpenMP. */
  *(void **)(&api.omp_get_max_threads) = dlsym(lib, "omp_get_max_threads");
  loaded = 1;
  return;
fail:
  snprintf(failure, sizeof failure, "oneDNN's %s lacks %s", SONAME(DNNL_VERSION_MAJOR), missing);
  dlclose(lib);
  if (set)
    unsetenv("OMP_WAIT_POLICY");
}

const m2pt_onednn_api *m2pt_onednn_load(const char **why)
{
  pthread_once(&once, load);
  *why = loaded ? NULL : failure;
  return loaded ? &api : NULL;
}
