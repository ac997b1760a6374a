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

/* Before libgomp starts: idle threads that watch for the next parallel
 * region for about 0.1 ms (GOMP_SPINCOUNT 10^4 with a passive policy:
 * libgomp spins that long, then sleeps), unless the environment sets
 * either variable or libgomp has started already; 1 when it set them.
 * libgomp's default (3 × 10^5 spins, ~3 ms) takes a core from PoCL's
 * kernels between the GEMMs; sleeping at once (passive alone) makes each
 * GEMM wake its threads, 60-80 µs on these VMs (README, Performance).
 * setenv runs once, under pthread_once, while the first CPU context is
 * created. */
static int prefer_short_spin(void)
{
  if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT"))
    return 0;
  void *gomp = dlopen("libgomp.so.1", RTLD_LAZY | RTLD_NOLOAD);
  if (gomp) {
    dlclose(gomp);
    return 0;
  }
  const int policy = setenv("OMP_WAIT_POLICY", "passive", 0) == 0;
  const int spin = setenv("GOMP_SPINCOUNT", "10000", 0) == 0;
  return policy || spin;
}

/* Undoes prefer_short_spin where oneDNN is not loaded after all. */
static void unset_spin(int set)
{
  if (set) {
    unsetenv("OMP_WAIT_POLICY");
    unsetenv("GOMP_SPINCOUNT");
  }
}

static void load(void)
{
  const int set = prefer_short_spin();
  /* Never closed once complete: its JIT code and caches live until the
   * process ends. */
  void *lib = dlopen(SONAME(DNNL_VERSION_MAJOR), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    snprintf(failure, sizeof failure, "oneDNN could not be loaded: %s", dlerror());
    /* Without oneDNN the environment is left as the application gave it. */
    unset_spin(set);
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
  unset_spin(set);
}

const m2pt_onednn_api *m2pt_onednn_load(const char **why)
{
  pthread_once(&once, load);
  *why = loaded ? NULL : failure;
  return loaded ? &api : NULL;
}
