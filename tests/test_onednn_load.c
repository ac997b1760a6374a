/* oneDNN loaded at run time (lib/gemm/onednn_api.h): libgomp's threads are
 * given a short spin (OMP_WAIT_POLICY=passive, GOMP_SPINCOUNT=10000) by
 * default, and only by default. One scenario per process (the loading
 * happens once), named by argv[1]:
 *   unset      neither variable set: both set once a CPU context uses oneDNN
 *   kept       OMP_WAIT_POLICY=active given (meson sets it): still active,
 *              GOMP_SPINCOUNT still unset
 *   spin       GOMP_SPINCOUNT=5 given (meson sets it): still 5,
 *              OMP_WAIT_POLICY still unset
 *   preloaded  libgomp already loaded by the application: both left unset
 * Where the default device's GEMMs do not run on oneDNN (a GPU, Oclgrind, a
 * build without it) nothing may change, which is checked too. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <m2pt/m2pt.h>

static int check(int ok, const char *what)
{
  if (!ok)
    fprintf(stderr, "FAILED: %s\n", what);
  return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
  const char *scenario = argc > 1 ? argv[1] : "";
  /* The variable the scenario does not give: unset, whatever the caller's
   * environment holds. */
  if (strcmp(scenario, "kept") != 0)
    unsetenv("OMP_WAIT_POLICY");
  if (strcmp(scenario, "spin") != 0)
    unsetenv("GOMP_SPINCOUNT");
  void *gomp = NULL;
  if (strcmp(scenario, "preloaded") == 0) {
    gomp = dlopen("libgomp.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!gomp) {
      printf("SKIP: no libgomp to preload (%s)\n", dlerror());
      return 77;
    }
  }
  const char *before = getenv("OMP_WAIT_POLICY"), *spin_before = getenv("GOMP_SPINCOUNT");
  char given[32] = "", spin_given[32] = "";
  snprintf(given, sizeof given, "%s", before ? before : "");
  snprintf(spin_given, sizeof spin_given, "%s", spin_before ? spin_before : "");

  m2pt_context *ctx = NULL;
  if (m2pt_context_create(NULL, &ctx) != M2PT_OK) {
    fprintf(stderr, "no context: %s\n", m2pt_last_error(NULL));
    return 1;
  }
  const int onednn = strcmp(m2pt_context_gemm_backend(ctx), "oneDNN") == 0;
  /* A GEMM, so that the library has really run on it. */
  const size_t sa[2] = {3, 4}, sb[2] = {5, 4}, sc[2] = {3, 5};
  m2pt_tensor *a = NULL, *b = NULL, *c = NULL;
  int failed = 0;
  if (m2pt_tensor_create(ctx, 2, sa, &a) != M2PT_OK ||
      m2pt_tensor_create(ctx, 2, sb, &b) != M2PT_OK ||
      m2pt_tensor_create(ctx, 2, sc, &c) != M2PT_OK ||
      m2pt_gemm(ctx, M2PT_NO_TRANS, M2PT_TRANS, 1.0f, a, b, 0.0f, c) != M2PT_OK)
    failed |= check(0, m2pt_last_error(ctx));
  const char *after = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
  printf("scenario %s, GEMMs on %s: OMP_WAIT_POLICY before \"%s\", after \"%s\"; "
         "GOMP_SPINCOUNT before \"%s\", after \"%s\"\n",
         scenario, m2pt_context_gemm_backend(ctx), given, after ? after : "(unset)", spin_given,
         spin ? spin : "(unset)");
  if (strcmp(scenario, "unset") == 0)
    failed |= onednn ? check(after && strcmp(after, "passive") == 0 && spin &&
                                 strcmp(spin, "10000") == 0,
                             "a short spin by default")
                     : check(after == NULL && spin == NULL, "left unset without oneDNN");
  else if (strcmp(scenario, "kept") == 0)
    failed |= check(after && strcmp(after, given) == 0 && given[0] && spin == NULL,
                    "the given policy kept, no spin count added");
  else if (strcmp(scenario, "spin") == 0)
    failed |= check(spin && strcmp(spin, spin_given) == 0 && spin_given[0] && after == NULL,
                    "the given spin count kept, no policy added");
  else if (strcmp(scenario, "preloaded") == 0)
    failed |= check(after == NULL && spin == NULL, "left unset when libgomp was loaded first");
  else
    failed |= check(0, "scenario: unset, kept, spin or preloaded");
  m2pt_tensor_destroy(a);
  m2pt_tensor_destroy(b);
  m2pt_tensor_destroy(c);
  m2pt_context_destroy(ctx);
  if (gomp)
    dlclose(gomp);
  return failed;
}
