/* CLBlast GEMM tuning: the store round-trips, a corrupt or hostile store is
 * ignored with a warning while the context keeps working, M2PT_TUNING=off
 * applies nothing, and the constraint checker agrees with CLBlast's own
 * database entries. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/context_impl.h"
#include "gemm/tuning.h"
#include "reference.h"
#include "test_util.h"

/* CLBlast's defaults for devices it does not know (its database's
 * "default" entries): programs the other suites compiled already, and
 * tiles Oclgrind's simulator runs quickly. */
static const size_t default_direct[M2PT_XD_COUNT] = {2, 8, 8, 8, 8, 1, 1, 1, 1, 16};
static const size_t default_xgemm[M2PT_XG_COUNT] = {0, 1, 32, 2, 8, 8, 32, 16,
                                                    16, 32, 1, 1, 0, 0, 4, 2};

typedef struct fixture {
  char dir[64];          /* the cache directory of the contexts made here */
  char path[4096];       /* the store of the test device under dir */
  m2pt_device_info info;
} fixture;

static void default_tuning(m2pt_tuning *t)
{
  memset(t, 0, sizeof *t);
  t->present = (1u << M2PT_TK_XGEMM) | (1u << M2PT_TK_DIRECT) | (1u << M2PT_TK_ROUTINE);
  memcpy(t->xgemm, default_xgemm, sizeof t->xgemm);
  memcpy(t->direct, default_direct, sizeof t->direct);
  t->min_indirect = 832;
}

static void write_file(const char *path, const char *text, size_t length)
{
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, length, f), length);
  assert_int_equal(fclose(f), 0);
}

static void remove_store(fixture *fx)
{
  char tuning[128];
  remove(fx->path);
  snprintf(tuning, sizeof tuning, "%s/tuning", fx->dir);
  rmdir(tuning);
}

static int setup(void **state)
{
  fixture *fx = calloc(1, sizeof *fx);
  if (!fx)
    return -1;
  snprintf(fx->dir, sizeof fx->dir, "%s", "/tmp/m2pt-test-tuning.XXXXXX");
  if (!mkdtemp(fx->dir)) {
    free(fx);
    return -1;
  }
  /* The store's key is the test device's. */
  m2pt_context *ctx = test_context();
  m2pt_context_device_info(ctx, &fx->info);
  m2pt_context_destroy(ctx);
  m2pt_tuning_store_path(fx->dir, &fx->info, fx->path, sizeof fx->path);
  unsetenv("M2PT_TUNING");
  *state = fx;
  return 0;
}

static int teardown(void **state)
{
  fixture *fx = *state;
  remove_store(fx);
  rmdir(fx->dir);
  free(fx);
  return 0;
}

/* A context whose cache directory is the fixture's. */
static m2pt_context *fixture_context(const fixture *fx)
{
  m2pt_context_options opts = m2pt_context_options_default();
  opts.cache_dir = fx->dir;
  opts.flags = M2PT_CONTEXT_CLBLAST;
  m2pt_context *ctx = NULL;
  assert_ok(NULL, m2pt_context_create(&opts, &ctx));
  return ctx;
}

/* y = x·Wᵀ on a small awkward shape, against the double reference. */
static void check_gemm(m2pt_context *ctx)
{
  enum { M = 5, N = 7, K = 13 };
  float a[M * K], b[N * K], c[M * N];
  double ref[M * N] = {0};
  test_fill(a, M * K, 3);
  test_fill(b, N * K, 4);
  const size_t sa[2] = {M, K}, sb[2] = {N, K}, sc[2] = {M, N};
  m2pt_tensor *ta = test_tensor(ctx, 2, sa, a), *tb = test_tensor(ctx, 2, sb, b);
  m2pt_tensor *tc = test_tensor(ctx, 2, sc, NULL);
  assert_ok(ctx, m2pt_gemm(ctx, M2PT_NO_TRANS, M2PT_TRANS, 1.0f, ta, tb, 0.0f, tc));
  assert_ok(ctx, m2pt_tensor_read(tc, c, M * N));
  ref_gemm(0, 1, M, N, K, 1.0, a, K, b, K, 0.0, ref, N);
  test_assert_close(c, ref, M * N, 1e-4, "gemm");
  m2pt_tensor_destroy(ta);
  m2pt_tensor_destroy(tb);
  m2pt_tensor_destroy(tc);
}

static void store_round_trip(void **state)
{
  fixture *fx = *state;
  m2pt_tuning t, back;
  default_tuning(&t);
  t.direct[M2PT_XD_WGD] = 32; /* not the defaults everywhere */
  t.direct[M2PT_XD_VWMD] = 4;
  t.min_indirect = 640;
  m2pt_tuning_provenance prov, prov_back;
  memset(&prov, 0, sizeof prov);
  snprintf(prov.date, sizeof prov.date, "2026-01-02T03:04:05Z");
  snprintf(prov.m2pt_version, sizeof prov.m2pt_version, "%s", m2pt_version_string());
  snprintf(prov.tool, sizeof prov.tool, "test");
  snprintf(prov.shapes, sizeof prov.shapes, "5x13x7");
  prov.budget_s = 60;
  prov.spent_s = 61.5;
  prov.candidates = 9;
  prov.gflops_before = 1.25;
  prov.gflops_after = 2.5;
  assert_int_equal(m2pt_tuning_store_write(fx->path, &fx->info, &t, &prov), M2PT_OK);
  char why[256] = "";
  assert_int_equal(m2pt_tuning_store_read(fx->path, NULL, &back, &prov_back, why, sizeof why),
                   M2PT_TUNING_READ_OK);
  assert_int_equal(back.present, t.present);
  assert_memory_equal(back.xgemm, t.xgemm, sizeof t.xgemm);
  assert_memory_equal(back.direct, t.direct, sizeof t.direct);
  assert_int_equal(back.min_indirect, t.min_indirect);
  assert_string_equal(prov_back.date, prov.date);
  assert_string_equal(prov_back.m2pt_version, prov.m2pt_version);
  assert_string_equal(prov_back.shapes, prov.shapes);
  assert_true(prov_back.budget_s == prov.budget_s && prov_back.spent_s == prov.spent_s);
  assert_int_equal(prov_back.candidates, prov.candidates);
  assert_true(prov_back.gflops_before == 1.25 && prov_back.gflops_after == 2.5);

  /* No temporary file is left beside it. */
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s/tuning", fx->dir);
  struct stat st;
  assert_int_equal(stat(tmp, &st), 0);

  /* A subset (the direct kernel alone) round-trips too. */
  t.present = 1u << M2PT_TK_DIRECT;
  assert_int_equal(m2pt_tuning_store_write(fx->path, &fx->info, &t, &prov), M2PT_OK);
  assert_int_equal(m2pt_tuning_store_read(fx->path, NULL, &back, NULL, why, sizeof why),
                   M2PT_TUNING_READ_OK);
  assert_int_equal(back.present, 1u << M2PT_TK_DIRECT);
  assert_memory_equal(back.direct, t.direct, sizeof t.direct);
  remove_store(fx);
  assert_int_equal(m2pt_tuning_store_read(fx->path, NULL, &back, NULL, why, sizeof why),
                   M2PT_TUNING_READ_MISSING);
}

/* The device key separates devices and drivers. */
static void store_key_is_per_device(void **state)
{
  fixture *fx = *state;
  m2pt_device_info other = fx->info;
  char a[4096], b[4096];
  m2pt_tuning_store_path("/x", &fx->info, a, sizeof a);
  other.driver_version[0] = other.driver_version[0] == 'x' ? 'y' : 'x';
  m2pt_tuning_store_path("/x", &other, b, sizeof b);
  assert_string_not_equal(a, b);
  assert_true(strncmp(a, "/x/tuning/", 10) == 0);
  assert_non_null(strstr(a, ".json"));
}

/* A store of CLBlast's default parameters for the fixture's device. */
static void write_default_store(const fixture *fx)
{
  m2pt_tuning t;
  default_tuning(&t);
  m2pt_tuning_provenance prov;
  memset(&prov, 0, sizeof prov);
  assert_int_equal(m2pt_tuning_store_write(fx->path, &fx->info, &t, &prov), M2PT_OK);
}

static void context_applies_store(void **state)
{
  fixture *fx = *state;
  write_default_store(fx);
  m2pt_context *ctx = fixture_context(fx);
  m2pt_tuning_source source = M2PT_TUNING_NONE;
  const char *detail = NULL;
  assert_ok(ctx, m2pt_context_tuning(ctx, &source, &detail));
  assert_int_equal(source, M2PT_TUNING_STORED);
  assert_string_equal(detail, fx->path);
  check_gemm(ctx);
  m2pt_context_destroy(ctx);

  /* With the disk cache off, no store is looked for. */
  m2pt_context_options off = m2pt_context_options_default();
  off.cache_dir = "off";
  off.flags = M2PT_CONTEXT_CLBLAST;
  assert_ok(NULL, m2pt_context_create(&off, &ctx));
  assert_ok(ctx, m2pt_context_tuning(ctx, &source, &detail));
  assert_true(source == M2PT_TUNING_NONE || source == M2PT_TUNING_SHIPPED);
  assert_null(strstr(detail, "warning"));
  m2pt_context_destroy(ctx);
  remove_store(fx);
}

static void tuning_off_applies_nothing(void **state)
{
  fixture *fx = *state;
  write_default_store(fx);
  setenv("M2PT_TUNING", "off", 1);
  m2pt_context *ctx = fixture_context(fx);
  unsetenv("M2PT_TUNING");
  m2pt_tuning_source source = M2PT_TUNING_NONE;
  const char *detail = NULL;
  assert_ok(ctx, m2pt_context_tuning(ctx, &source, &detail));
  assert_int_equal(source, M2PT_TUNING_DISABLED);
  assert_null(strstr(detail, fx->path));
  check_gemm(ctx);
  m2pt_context_destroy(ctx);
  remove_store(fx);
}

/* CLBlast's parameters are process-wide: a context whose GEMMs run on the
 * host BLAS leaves them alone, even with a valid store for its device. */
static void host_blas_context_applies_nothing(void **state)
{
  fixture *fx = *state;
  write_default_store(fx);
  m2pt_context_options opts = m2pt_context_options_default();
  opts.cache_dir = fx->dir;
  m2pt_context *ctx = NULL;
  assert_ok(NULL, m2pt_context_create(&opts, &ctx));
  m2pt_tuning_source source = M2PT_TUNING_DISABLED;
  const char *detail = NULL;
  assert_ok(ctx, m2pt_context_tuning(ctx, &source, &detail));
  if (test_gemm_on_host(ctx)) {
    assert_int_equal(source, M2PT_TUNING_NONE);
    assert_non_null(strstr(detail, m2pt_context_gemm_backend(ctx)));
  } else {
    assert_int_equal(source, M2PT_TUNING_STORED);
  }
  check_gemm(ctx);
  m2pt_context_destroy(ctx);
  remove_store(fx);
}

static void missing_store_is_quiet(void **state)
{
  fixture *fx = *state;
  remove_store(fx);
  m2pt_context *ctx = fixture_context(fx);
  m2pt_tuning_source source = M2PT_TUNING_STORED;
  const char *detail = NULL;
  assert_ok(ctx, m2pt_context_tuning(ctx, &source, &detail));
  assert_true(source == M2PT_TUNING_NONE || source == M2PT_TUNING_SHIPPED);
  assert_null(strstr(detail, "warning"));
  /* Without detail, and bad arguments. */
  assert_ok(ctx, m2pt_context_tuning(ctx, &source, NULL));
  assert_status(NULL, m2pt_context_tuning(NULL, &source, &detail), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_context_tuning(ctx, NULL, &detail), M2PT_ERR_INVALID_ARGUMENT);
  m2pt_context_destroy(ctx);
}

/* A valid store with one value replaced by `value` (JSON text). */
static void store_with(char *buf, size_t size, const char *name, const char *value)
{
  char direct[512] = "", xgemm[1024] = "";
  for (size_t i = 0; i < M2PT_XD_COUNT; i++) {
    const char *n = m2pt_tuning_param_names(M2PT_TK_DIRECT)[i];
    char v[64];
    snprintf(v, sizeof v, "%zu", default_direct[i]);
    snprintf(direct + strlen(direct), sizeof direct - strlen(direct), "%s\"%s\": %s",
             i ? ", " : "", n, strcmp(n, name) == 0 ? value : v);
  }
  for (size_t i = 0; i < M2PT_XG_COUNT; i++) {
    const char *n = m2pt_tuning_param_names(M2PT_TK_XGEMM)[i];
    char v[64];
    snprintf(v, sizeof v, "%zu", default_xgemm[i]);
    snprintf(xgemm + strlen(xgemm), sizeof xgemm - strlen(xgemm), "%s\"%s\": %s", i ? ", " : "",
             n, strcmp(n, name) == 0 ? value : v);
  }
  snprintf(buf, size,
           "{\"format\": \"m2pt-tuning\", \"version\": 1, \"kernels\": {"
           "\"XgemmDirect\": {%s}, \"Xgemm\": {%s}, "
           "\"GemmRoutine\": {\"XGEMM_MIN_INDIRECT_SIZE\": %s}}}",
           direct, xgemm, strcmp(name, "XGEMM_MIN_INDIRECT_SIZE") == 0 ? value : "832");
}

static void corrupt_stores_are_ignored(void **state)
{
  fixture *fx = *state;
  char tuning[128];
  snprintf(tuning, sizeof tuning, "%s/tuning", fx->dir);
  mkdir(tuning, 0755);

  static const struct {
    const char *name, *value;
  } hostile[] = {
      {"WGD", "\"32\""},                    /* wrong type */
      {"WGD", "[32]"},
      {"WGD", "null"},
      {"WGD", "1e300"},                     /* huge */
      {"WGD", "1e999"},                     /* past double */
      {"WGD", "18446744073709551616"},
      {"WGD", "-32"},                       /* negative */
      {"WGD", "32.5"},                      /* not whole */
      {"WGD", "24"},                        /* not a power of two */
      {"WGD", "4"},                         /* breaks WGD % (MDIMCD·VWMD) */
      {"MDIMCD", "64"},                     /* with NDIMCD 8: over the constraint */
      {"KWID", "0"},                        /* would divide by zero */
      {"MDIMAD", "0"},
      {"VWMD", "0"},
      {"MDIMC", "0"},
      {"GEMMK", "2"},
      {"KREG", "4"},                        /* KREG ≠ 1 with GEMMK 0 */
      {"XGEMM_MIN_INDIRECT_SIZE", "4294967296"},
      {"XGEMM_MIN_INDIRECT_SIZE", "-1"},
  };
  char text[4096];
  for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
    store_with(text, sizeof text, hostile[i].name, hostile[i].value);
    write_file(fx->path, text, strlen(text));
    m2pt_tuning t;
    char why[256] = "";
    if (m2pt_tuning_store_read(fx->path, NULL, &t, NULL, why, sizeof why) !=
        M2PT_TUNING_READ_INVALID)
      fail_msg("%s = %s was accepted", hostile[i].name, hostile[i].value);
    assert_true(why[0] != '\0');
  }

  /* Malformed files, each also tried through a context. */
  store_with(text, sizeof text, "", "");
  char truncated[4096];
  snprintf(truncated, sizeof truncated, "%.*s", (int)(strlen(text) / 2), text);
  char negative[4096];
  store_with(negative, sizeof negative, "WGD", "-32");
  static const char png[] = "\x89PNG\r\n\x1a\n\x00\x00";
  const struct {
    const char *data;
    size_t length;
  } malformed[] = {
      {truncated, strlen(truncated)},
      {negative, strlen(negative)},
      {"", 0},
      {"{", 1},
      {"null", 4},
      {"[]", 2},
      {png, sizeof png - 1},
      {"{\"format\": \"m2pt-tuning\", \"version\": 1}", 0},
      {"{\"format\": \"m2pt-tuning\", \"version\": 2, \"kernels\": {}}", 0},
      {"{\"format\": \"other\", \"version\": 1, \"kernels\": {\"GemmRoutine\": "
       "{\"XGEMM_MIN_INDIRECT_SIZE\": 64}}}", 0},
      {"{\"format\": \"m2pt-tuning\", \"version\": 1, \"kernels\": {\"Xgemv\": {\"WGS1\": 64}}}",
       0},
      {"{\"format\": \"m2pt-tuning\", \"version\": 1, \"kernels\": {\"GemmRoutine\": "
       "{\"XGEMM_MIN_INDIRECT_SIZE\": 64, \"EXTRA\": 1}}}", 0},
      {"{\"format\": \"m2pt-tuning\", \"version\": 1, \"kernels\": {\"GemmRoutine\": "
       "{\"XGEMM_MIN_INDIRECT_SIZE\": 64}, \"GemmRoutine\": {\"XGEMM_MIN_INDIRECT_SIZE\": 64}}}",
       0},
  };
  const size_t cases = sizeof malformed / sizeof malformed[0];
  for (size_t i = 0; i < cases; i++) {
    const size_t length = malformed[i].length ? malformed[i].length
                          : i >= 2            ? strlen(malformed[i].data)
                                              : 0;
    write_file(fx->path, malformed[i].data, length);
    m2pt_tuning t;
    char why[256] = "";
    if (m2pt_tuning_store_read(fx->path, NULL, &t, NULL, why, sizeof why) !=
        M2PT_TUNING_READ_INVALID)
      fail_msg("malformed store %zu was accepted", i);
    /* Through a context: ignored with a warning that names the file. The
     * truncated and the negative store's contexts run a GEMM too (each
     * context compiles CLBlast's program again: slow on Oclgrind). */
    m2pt_context *ctx = fixture_context(fx);
    m2pt_tuning_source source = M2PT_TUNING_STORED;
    const char *detail = NULL;
    assert_ok(ctx, m2pt_context_tuning(ctx, &source, &detail));
    assert_true(source == M2PT_TUNING_NONE || source == M2PT_TUNING_SHIPPED);
    assert_non_null(strstr(detail, "warning: ignored tuning store"));
    assert_non_null(strstr(detail, fx->path));
    if (i < 2)
      check_gemm(ctx);
    m2pt_context_destroy(ctx);
  }

  /* A directory where the file should be. */
  remove(fx->path);
  assert_int_equal(mkdir(fx->path, 0755), 0);
  m2pt_tuning t;
  char why[256];
  assert_int_equal(m2pt_tuning_store_read(fx->path, NULL, &t, NULL, why, sizeof why),
                   M2PT_TUNING_READ_INVALID);
  m2pt_context *ctx = fixture_context(fx);
  m2pt_tuning_source source = M2PT_TUNING_STORED;
  const char *detail = NULL;
  assert_ok(ctx, m2pt_context_tuning(ctx, &source, &detail));
  assert_int_not_equal(source, M2PT_TUNING_STORED);
  assert_non_null(strstr(detail, "warning"));
  m2pt_context_destroy(ctx);
  rmdir(fx->path);
  remove_store(fx);
}

/* A store over the device's limits (a work-group larger than it allows) is
 * ignored too, though valid for other devices. */
static void store_over_device_limits_is_ignored(void **state)
{
  fixture *fx = *state;
  m2pt_context *probe = test_context();
  m2pt_tuning_limits limits;
  m2pt_tuning_limits_of(probe, &limits);
  m2pt_context_destroy(probe);
  m2pt_tuning t;
  default_tuning(&t);
  t.present = 1u << M2PT_TK_DIRECT;
  /* WGD 256 with PADA/PADB: 2·256·257·4 bytes of local memory. */
  const size_t local = 2 * 256 * 257 * sizeof(float);
  t.direct[M2PT_XD_WGD] = 256;
  assert_null(m2pt_tuning_check(&t, M2PT_TK_DIRECT, NULL));
  if (local <= limits.local_mem_bytes)
    skip(); /* a device with room for it */
  assert_non_null(m2pt_tuning_check(&t, M2PT_TK_DIRECT, &limits));
  m2pt_tuning_provenance prov;
  memset(&prov, 0, sizeof prov);
  assert_int_equal(m2pt_tuning_store_write(fx->path, &fx->info, &t, &prov), M2PT_OK);
  m2pt_context *ctx = fixture_context(fx);
  m2pt_tuning_source source = M2PT_TUNING_STORED;
  const char *detail = NULL;
  assert_ok(ctx, m2pt_context_tuning(ctx, &source, &detail));
  assert_int_not_equal(source, M2PT_TUNING_STORED);
  assert_non_null(strstr(detail, "local memory"));
  m2pt_context_destroy(ctx);
  remove_store(fx);
}

/* GEMMs large enough for CLBlast's indirect path (Xgemm) with whatever
 * tuning the default context applies (on PoCL, the shipped default: Xgemm
 * for every m·n·k >= 256³), plain and strided-batched, all transposes, sizes
 * that are no multiple of any tile, against the double reference. Too large
 * for Oclgrind. */
static void tuned_indirect_gemm_is_right(void **state)
{
  (void)state;
  if (test_small())
    skip();
  m2pt_context *ctx = test_context();
  enum { M = 263, N = 301, K = 279, BATCH = 2 };
  const size_t na = (size_t)BATCH * M * K, nb = (size_t)BATCH * N * K, nc = (size_t)BATCH * M * N;
  float *a = test_alloc(na * sizeof *a), *b = test_alloc(nb * sizeof *b);
  float *c = test_alloc(nc * sizeof *c);
  double *ref = test_alloc(nc * sizeof *ref);
  test_fill(a, na, 21);
  test_fill(b, nb, 22);
  const size_t sa[1] = {na}, sb[1] = {nb}, sc[1] = {nc};
  m2pt_tensor *ta = test_tensor(ctx, 1, sa, a), *tb = test_tensor(ctx, 1, sb, b);
  m2pt_tensor *tc = test_tensor(ctx, 1, sc, NULL);
  for (int tra = 0; tra < 2; tra++)
    for (int trb = 0; trb < 2; trb++) {
      const size_t lda = tra ? M : K, ldb = trb ? K : N;
      const m2pt_matrix_batch ma = {ta, 0, lda, (size_t)M * K}, mb = {tb, 0, ldb, (size_t)N * K},
                              mc = {tc, 0, N, (size_t)M * N};
      /* batch 1 is the plain GEMM; 2 the strided-batched one */
      for (size_t batch = 1; batch <= BATCH; batch++) {
        assert_ok(ctx, m2pt_gemm_batched(ctx, tra ? M2PT_TRANS : M2PT_NO_TRANS,
                                         trb ? M2PT_TRANS : M2PT_NO_TRANS, M, N, K, 1.0f, &ma,
                                         &mb, 0.0f, &mc, batch));
        assert_ok(ctx, m2pt_tensor_read(tc, c, nc));
        memset(ref, 0, nc * sizeof *ref);
        for (size_t i = 0; i < batch; i++)
          ref_gemm(tra, trb, M, N, K, 1.0, a + i * M * K, lda, b + i * N * K, ldb, 0.0,
                   ref + i * M * N, N);
        test_assert_close(c, ref, batch * M * N, 1e-4, "indirect gemm");
      }
    }
  m2pt_tensor_destroy(ta);
  m2pt_tensor_destroy(tb);
  m2pt_tensor_destroy(tc);
  m2pt_context_destroy(ctx);
  free(a);
  free(b);
  free(c);
  free(ref);
}

/* CLBlast's own database entries pass the checker; broken ones do not. */
static void constraints_match_clblast(void **state)
{
  (void)state;
  static const size_t direct_ok[][M2PT_XD_COUNT] = {
      {8, 8, 8, 8, 8, 0, 0, 8, 4, 64}, {2, 32, 32, 32, 32, 0, 0, 1, 1, 64},
      {16, 16, 8, 8, 8, 0, 0, 2, 4, 32}, {2, 8, 8, 16, 16, 1, 1, 4, 2, 32},
  };
  static const size_t xgemm_ok[][M2PT_XG_COUNT] = {
      {1, 16, 1, 1, 2, 2, 64, 2, 2, 128, 0, 0, 0, 0, 8, 2},
      {0, 1, 32, 8, 32, 32, 64, 32, 16, 64, 1, 1, 1, 0, 2, 2},
      {0, 1, 16, 2, 8, 8, 128, 8, 8, 128, 1, 1, 1, 0, 1, 8},
      {1, 1, 1, 1, 16, 16, 16, 8, 8, 64, 0, 0, 0, 0, 1, 1},
  };
  m2pt_tuning t;
  memset(&t, 0, sizeof t);
  for (size_t i = 0; i < sizeof direct_ok / sizeof direct_ok[0]; i++) {
    memcpy(t.direct, direct_ok[i], sizeof t.direct);
    assert_null(m2pt_tuning_check(&t, M2PT_TK_DIRECT, NULL));
  }
  for (size_t i = 0; i < sizeof xgemm_ok / sizeof xgemm_ok[0]; i++) {
    memcpy(t.xgemm, xgemm_ok[i], sizeof t.xgemm);
    assert_null(m2pt_tuning_check(&t, M2PT_TK_XGEMM, NULL));
  }
  /* KDIMA = MDIMC·NDIMC/MDIMA = 32 does not divide KWG 16. */
  memcpy(t.xgemm, xgemm_ok[1], sizeof t.xgemm);
  t.xgemm[M2PT_XG_KWG] = 16;
  t.xgemm[M2PT_XG_MDIMA] = 16;
  t.xgemm[M2PT_XG_MWG] = 64;
  assert_non_null(m2pt_tuning_check(&t, M2PT_TK_XGEMM, NULL));
  /* GEMMK 1 needs MDIMA = MDIMC. */
  memcpy(t.xgemm, xgemm_ok[0], sizeof t.xgemm);
  t.xgemm[M2PT_XG_MDIMA] = 4;
  assert_non_null(m2pt_tuning_check(&t, M2PT_TK_XGEMM, NULL));
  /* A work-group past the device's. */
  const m2pt_tuning_limits small = {32768, 64, {64, 64}};
  memcpy(t.direct, direct_ok[1], sizeof t.direct); /* 32·32 items */
  assert_null(m2pt_tuning_check(&t, M2PT_TK_DIRECT, NULL));
  assert_non_null(m2pt_tuning_check(&t, M2PT_TK_DIRECT, &small));
  t.min_indirect = 65537;
  assert_non_null(m2pt_tuning_check(&t, M2PT_TK_ROUTINE, NULL));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(store_round_trip),
      cmocka_unit_test(store_key_is_per_device),
      cmocka_unit_test(constraints_match_clblast),
      cmocka_unit_test(missing_store_is_quiet),
      cmocka_unit_test(context_applies_store),
      cmocka_unit_test(tuning_off_applies_nothing),
      cmocka_unit_test(host_blas_context_applies_nothing),
      cmocka_unit_test(corrupt_stores_are_ignored),
      cmocka_unit_test(store_over_device_limits_is_ignored),
      cmocka_unit_test(tuned_indirect_gemm_is_right),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
