/* m2pt-bench --compare and --against: new/old median time per case of two
 * JSON reports. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "report.h"

#define SLOWER_THRESHOLD 1.05 /* --compare flags a time ratio new/old above this */
/* --compare does not flag a case whose old and new medians are both below
 * this: there the median is enqueue and timer overhead, and a ratio of two
 * such times says nothing about the code (0.000 ms against 0.000 ms read as
 * 1.8× slower on one run). */
#define COMPARE_FLOOR_MS 0.05

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
  cJSON *own = new_doc ? NULL : bench_run_json();
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
    if (t_old < COMPARE_FLOOR_MS && t_new < COMPARE_FLOOR_MS) {
      tiny++;
      printf("%-*s %-9s %-40s %10.3f %10.3f %7s  (below %.2f ms)\n", width, device, suite, name,
             t_old, t_new, "-", COMPARE_FLOOR_MS);
      continue;
    }
    /* Here at least one median is above the floor, so a zero old median
     * (a case that used to take no measurable time) is infinitely slower. */
    const double ratio = t_old > 0.0 ? t_new / t_old : INFINITY;
    compared++;
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
         "%zu faster by more than that; %zu below %.2f ms in both (not judged), %zu not in OLD, "
         "%zu of OLD not measured now\n",
         compared, slower, (SLOWER_THRESHOLD - 1.0) * 100.0, faster, tiny, COMPARE_FLOOR_MS,
         only_new, only_old);
  fflush(stdout);
  cJSON_Delete(own);
  return slower;
}
