#include "tuning.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "context_impl.h" /* before clblast_c.h: fixes the OpenCL API level */
#include <clblast_c.h>
#include <cjson/cJSON.h>
/* For XXH3_state_t on the stack. */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "binary_cache.h"
#include "error.h"
#include "global.h"
#include "m2pt/version.h"

/* ---- parameters ---- */

static const char *const kernel_names[M2PT_TK_COUNT] = {"Xgemm", "XgemmDirect", "GemmRoutine"};

static const char *const xgemm_names[M2PT_XG_COUNT] = {
    "GEMMK", "KREG", "KWG",  "KWI",  "MDIMA", "MDIMC", "MWG", "NDIMB",
    "NDIMC", "NWG",  "SA",   "SB",   "STRM",  "STRN",  "VWM", "VWN"};

static const char *const direct_names[M2PT_XD_COUNT] = {
    "KWID", "MDIMAD", "MDIMCD", "NDIMBD", "NDIMCD", "PADA", "PADB", "VWMD", "VWND", "WGD"};

static const char *const routine_names[1] = {"XGEMM_MIN_INDIRECT_SIZE"};

/* The largest XGEMM_MIN_INDIRECT_SIZE accepted: CLBlast cubes it in a
 * size_t, and 2^16 already sends every GEMM that fits a device direct. */
#define MAX_MIN_INDIRECT 65536u

const char *m2pt_tuning_kernel_name(m2pt_tuning_kernel kernel)
{
  return (unsigned)kernel < M2PT_TK_COUNT ? kernel_names[kernel] : "?";
}

size_t m2pt_tuning_param_count(m2pt_tuning_kernel kernel)
{
  switch (kernel) {
  case M2PT_TK_XGEMM: return M2PT_XG_COUNT;
  case M2PT_TK_DIRECT: return M2PT_XD_COUNT;
  case M2PT_TK_ROUTINE: return 1;
  case M2PT_TK_COUNT: break;
  }
  return 0;
}

const char *const *m2pt_tuning_param_names(m2pt_tuning_kernel kernel)
{
  switch (kernel) {
  case M2PT_TK_XGEMM: return xgemm_names;
  case M2PT_TK_DIRECT: return direct_names;
  case M2PT_TK_ROUTINE: return routine_names;
  case M2PT_TK_COUNT: break;
  }
  return NULL;
}

/* Where a kernel's values sit in m2pt_tuning, for both accessors below;
 * 0 (the offset of `present`) for none. */
static size_t values_offset(m2pt_tuning_kernel kernel)
{
  switch (kernel) {
  case M2PT_TK_XGEMM: return offsetof(m2pt_tuning, xgemm);
  case M2PT_TK_DIRECT: return offsetof(m2pt_tuning, direct);
  case M2PT_TK_ROUTINE: return offsetof(m2pt_tuning, min_indirect);
  case M2PT_TK_COUNT: break;
  }
  return 0;
}

size_t *m2pt_tuning_values(m2pt_tuning *t, m2pt_tuning_kernel kernel)
{
  const size_t at = values_offset(kernel);
  return at ? (size_t *)(void *)((char *)t + at) : NULL;
}

const size_t *m2pt_tuning_values_const(const m2pt_tuning *t, m2pt_tuning_kernel kernel)
{
  const size_t at = values_offset(kernel);
  return at ? (const size_t *)(const void *)((const char *)t + at) : NULL;
}

/* Powers of two from `lo` to `hi` into choices. */
static size_t powers(size_t lo, size_t hi, size_t *choices, size_t capacity)
{
  size_t n = 0;
  for (size_t v = lo; v <= hi; v *= 2, n++)
    if (n < capacity)
      choices[n] = v;
  return n;
}

/* 0 and 1 into choices. */
static size_t flags(size_t *choices, size_t capacity)
{
  for (size_t i = 0; i < 2 && i < capacity; i++)
    choices[i] = i;
  return 2;
}

size_t m2pt_tuning_param_choices(m2pt_tuning_kernel kernel, size_t param, size_t *choices,
                                 size_t capacity)
{
  if (kernel == M2PT_TK_XGEMM) {
    switch (param) {
    case M2PT_XG_GEMMK: case M2PT_XG_SA: case M2PT_XG_SB: case M2PT_XG_STRM: case M2PT_XG_STRN:
      return flags(choices, capacity);
    case M2PT_XG_KREG: case M2PT_XG_KWI: case M2PT_XG_VWM: case M2PT_XG_VWN:
      return powers(1, 16, choices, capacity);
    case M2PT_XG_KWG: case M2PT_XG_MDIMA: case M2PT_XG_MDIMC: case M2PT_XG_NDIMB:
    case M2PT_XG_NDIMC:
      return powers(1, 64, choices, capacity);
    case M2PT_XG_MWG: case M2PT_XG_NWG:
      return powers(1, 256, choices, capacity);
    default: return 0;
    }
  }
  if (kernel == M2PT_TK_DIRECT) {
    switch (param) {
    case M2PT_XD_PADA: case M2PT_XD_PADB:
      return flags(choices, capacity);
    case M2PT_XD_VWMD: case M2PT_XD_VWND:
      return powers(1, 16, choices, capacity);
    case M2PT_XD_KWID:
      return powers(1, 32, choices, capacity);
    case M2PT_XD_MDIMAD: case M2PT_XD_MDIMCD: case M2PT_XD_NDIMBD: case M2PT_XD_NDIMCD:
      return powers(1, 64, choices, capacity);
    case M2PT_XD_WGD:
      return powers(1, 256, choices, capacity);
    default: return 0;
    }
  }
  if (kernel == M2PT_TK_ROUTINE && param == 0) {
    /* The search's choices; the store accepts any whole number up to
     * MAX_MIN_INDIRECT. */
    static const size_t sizes[] = {64, 128, 256, 384, 512, 640, 768, 832, 1024, 1536, 2048};
    const size_t n = sizeof sizes / sizeof sizes[0];
    for (size_t i = 0; i < n && i < capacity; i++)
      choices[i] = sizes[i];
    return n;
  }
  return 0;
}

void m2pt_tuning_limits_of(const m2pt_context *ctx, m2pt_tuning_limits *limits)
{
  limits->local_mem_bytes = ctx->info.local_mem_bytes ? (size_t)ctx->info.local_mem_bytes : 16384;
  limits->max_work_group = ctx->max_work_group ? ctx->max_work_group : 64;
  size_t items[3] = {0, 0, 0};
  cl_uint dims = 0;
  if (clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_ITEM_DIMENSIONS, sizeof dims, &dims,
                      NULL) == CL_SUCCESS &&
      dims >= 2 && dims <= 3 &&
      clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_ITEM_SIZES, dims * sizeof items[0], items,
                      NULL) == CL_SUCCESS) {
    limits->max_item[0] = items[0];
    limits->max_item[1] = items[1];
  } else {
    limits->max_item[0] = limits->max_item[1] = limits->max_work_group;
  }
}

static int in_choices(m2pt_tuning_kernel kernel, size_t param, size_t v)
{
  size_t choices[16];
  const size_t n = m2pt_tuning_param_choices(kernel, param, choices, 16);
  for (size_t i = 0; i < n && i < 16; i++)
    if (choices[i] == v)
      return 1;
  return 0;
}

/* (a·b)/c divides `of` exactly and c divides a·b: CLBlast's KDIMA-style
 * constraints, where a fraction would break the kernel's loads. */
static int divides_product(size_t of, size_t a, size_t b, size_t c)
{
  return (a * b) % c == 0 && of % ((a * b) / c) == 0;
}

static int work_group_fits(size_t m, size_t n, const m2pt_tuning_limits *limits)
{
  return !limits || (m * n <= limits->max_work_group && m <= limits->max_item[0] &&
                     n <= limits->max_item[1]);
}

static const char *check_xgemm(const size_t *p, const m2pt_tuning_limits *limits)
{
  if (p[M2PT_XG_MWG] % (p[M2PT_XG_MDIMC] * p[M2PT_XG_VWM]) != 0)
    return "Xgemm: MWG is not a multiple of MDIMC*VWM";
  if (p[M2PT_XG_NWG] % (p[M2PT_XG_NDIMC] * p[M2PT_XG_VWN]) != 0)
    return "Xgemm: NWG is not a multiple of NDIMC*VWN";
  if (p[M2PT_XG_MWG] % (p[M2PT_XG_MDIMA] * p[M2PT_XG_VWM]) != 0)
    return "Xgemm: MWG is not a multiple of MDIMA*VWM";
  if (p[M2PT_XG_NWG] % (p[M2PT_XG_NDIMB] * p[M2PT_XG_VWN]) != 0)
    return "Xgemm: NWG is not a multiple of NDIMB*VWN";
  if (p[M2PT_XG_GEMMK] == 0) {
    if (p[M2PT_XG_KREG] != 1)
      return "Xgemm: KREG must be 1 with GEMMK 0";
    if (p[M2PT_XG_KWG] % p[M2PT_XG_KWI] != 0)
      return "Xgemm: KWG is not a multiple of KWI";
    if (!divides_product(p[M2PT_XG_KWG], p[M2PT_XG_MDIMC], p[M2PT_XG_NDIMC], p[M2PT_XG_MDIMA]))
      return "Xgemm: KWG is not a multiple of MDIMC*NDIMC/MDIMA";
    if (!divides_product(p[M2PT_XG_KWG], p[M2PT_XG_MDIMC], p[M2PT_XG_NDIMC], p[M2PT_XG_NDIMB]))
      return "Xgemm: KWG is not a multiple of MDIMC*NDIMC/NDIMB";
  } else {
    /* The 2-D register-tiled kernel (CLBlast's tuner variants 11 and 12). */
    if (p[M2PT_XG_KWG] != 1 || p[M2PT_XG_KWI] != 1)
      return "Xgemm: KWG and KWI must be 1 with GEMMK 1";
    if (p[M2PT_XG_SA] || p[M2PT_XG_SB] || p[M2PT_XG_STRM] || p[M2PT_XG_STRN])
      return "Xgemm: SA, SB, STRM and STRN must be 0 with GEMMK 1";
    if (p[M2PT_XG_MDIMA] != p[M2PT_XG_MDIMC] || p[M2PT_XG_NDIMB] != p[M2PT_XG_NDIMC])
      return "Xgemm: MDIMA must equal MDIMC and NDIMB NDIMC with GEMMK 1";
    if (p[M2PT_XG_KREG] % p[M2PT_XG_VWN] != 0)
      return "Xgemm: KREG is not a multiple of VWN";
  }
  if (!work_group_fits(p[M2PT_XG_MDIMC], p[M2PT_XG_NDIMC], limits))
    return "Xgemm: MDIMC*NDIMC exceeds the device's work-group size";
  const size_t local = (p[M2PT_XG_SA] * p[M2PT_XG_KWG] * p[M2PT_XG_MWG] +
                        p[M2PT_XG_SB] * p[M2PT_XG_KWG] * p[M2PT_XG_NWG]) * sizeof(float);
  if (limits && local > limits->local_mem_bytes)
    return "Xgemm: the tiles exceed the device's local memory";
  return NULL;
}

static const char *check_direct(const size_t *p, const m2pt_tuning_limits *limits)
{
  const size_t wgd = p[M2PT_XD_WGD];
  if (wgd % p[M2PT_XD_KWID] != 0)
    return "XgemmDirect: WGD is not a multiple of KWID";
  if (wgd % (p[M2PT_XD_MDIMCD] * p[M2PT_XD_VWMD]) != 0)
    return "XgemmDirect: WGD is not a multiple of MDIMCD*VWMD";
  if (wgd % (p[M2PT_XD_NDIMCD] * p[M2PT_XD_VWND]) != 0)
    return "XgemmDirect: WGD is not a multiple of NDIMCD*VWND";
  if (wgd % (p[M2PT_XD_MDIMAD] * p[M2PT_XD_VWMD]) != 0)
    return "XgemmDirect: WGD is not a multiple of MDIMAD*VWMD";
  if (wgd % (p[M2PT_XD_NDIMBD] * p[M2PT_XD_VWND]) != 0)
    return "XgemmDirect: WGD is not a multiple of NDIMBD*VWND";
  if (!divides_product(wgd, p[M2PT_XD_MDIMCD], p[M2PT_XD_NDIMCD], p[M2PT_XD_MDIMAD]))
    return "XgemmDirect: WGD is not a multiple of MDIMCD*NDIMCD/MDIMAD";
  if (!divides_product(wgd, p[M2PT_XD_MDIMCD], p[M2PT_XD_NDIMCD], p[M2PT_XD_NDIMBD]))
    return "XgemmDirect: WGD is not a multiple of MDIMCD*NDIMCD/NDIMBD";
  if (!work_group_fits(p[M2PT_XD_MDIMCD], p[M2PT_XD_NDIMCD], limits))
    return "XgemmDirect: MDIMCD*NDIMCD exceeds the device's work-group size";
  const size_t local =
      (wgd * (wgd + p[M2PT_XD_PADA]) + wgd * (wgd + p[M2PT_XD_PADB])) * sizeof(float);
  if (limits && local > limits->local_mem_bytes)
    return "XgemmDirect: the tiles exceed the device's local memory";
  return NULL;
}

const char *m2pt_tuning_check(const m2pt_tuning *t, m2pt_tuning_kernel kernel,
                              const m2pt_tuning_limits *limits)
{
  const size_t *p = m2pt_tuning_values_const(t, kernel);
  if (!p)
    return "unknown kernel";
  if (kernel == M2PT_TK_ROUTINE)
    return p[0] <= MAX_MIN_INDIRECT ? NULL : "GemmRoutine: XGEMM_MIN_INDIRECT_SIZE out of range";
  const size_t n = m2pt_tuning_param_count(kernel);
  for (size_t i = 0; i < n; i++)
    if (!in_choices(kernel, i, p[i]))
      return kernel == M2PT_TK_XGEMM ? "Xgemm: a value is out of its range"
                                     : "XgemmDirect: a value is out of its range";
  return kernel == M2PT_TK_XGEMM ? check_xgemm(p, limits) : check_direct(p, limits);
}

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
    /* CLBlast's prototype takes the names as const char ** (no const pointers). */
    const char *names[M2PT_TUNING_MAX_PARAMS];
    const size_t count = m2pt_tuning_param_count(kernel);
    memcpy(names, m2pt_tuning_param_names(kernel), count * sizeof *names);
    const CLBlastStatusCode s = CLBlastOverrideParameters(
        device, kernel_names[k], CLBlastPrecisionSingle, count, names,
        m2pt_tuning_values_const(t, kernel));
    if (s != CLBlastSuccess) {
      m2pt_clblast_exclusive_unlock(overridden);
      snprintf(why, size, "CLBlastOverrideParameters(%s) failed with status %d", kernel_names[k],
               (int)s);
      return -1;
    }
    overridden = 1;
  }
  m2pt_clblast_exclusive_unlock(overridden);
  return 0;
}

/* ---- the store ---- */

static void hash_string(XXH3_state_t *state, const char *s)
{
  /* Length first, so ("ab","c") and ("a","bc") differ. */
  const uint64_t len = strlen(s);
  XXH3_128bits_update(state, &len, sizeof len);
  XXH3_128bits_update(state, s, (size_t)len);
}

void m2pt_tuning_store_path(const char *dir, const m2pt_device_info *info, char *buf,
                            size_t size)
{
  XXH3_state_t state;
  XXH3_INITSTATE(&state);
  XXH3_128bits_reset(&state);
  hash_string(&state, "m2pt-tuning");
  hash_string(&state, info->platform_name);
  hash_string(&state, info->platform_version);
  hash_string(&state, info->name);
  hash_string(&state, info->vendor);
  hash_string(&state, info->device_version);
  hash_string(&state, info->driver_version);
  const XXH128_hash_t h = XXH3_128bits_digest(&state);
  const int n = snprintf(buf, size, "%s/tuning/%016llx%016llx.json", dir,
                         (unsigned long long)h.high64, (unsigned long long)h.low64);
  if (n < 0 || (size_t)n >= size)
    buf[0] = '\0';
}

#define STORE_FORMAT "m2pt-tuning"
#define STORE_VERSION 1
#define STORE_MAX_BYTES (1u << 20)

char *m2pt_tuning_read_text(const char *path, size_t max_bytes, int *missing, char *why,
                            size_t size)
{
  *missing = 0;
  /* O_NONBLOCK: a FIFO in the file's place must not hang context creation;
   * it is refused below as not a regular file. */
  const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
  if (!f) {
    *missing = errno == ENOENT;
    snprintf(why, size, "cannot open it: %s", strerror(errno));
    if (fd >= 0)
      close(fd);
    return NULL;
  }
  struct stat st;
  char *text = NULL;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(why, size, "not a regular file");
  } else if (st.st_size <= 0 || (uint64_t)st.st_size > max_bytes) {
    snprintf(why, size, "size %lld bytes is not within 1..%zu", (long long)st.st_size,
             max_bytes);
  } else if (!(text = malloc((size_t)st.st_size + 1))) {
    snprintf(why, size, "out of host memory");
  } else if (fread(text, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
    snprintf(why, size, "read error");
    free(text);
    text = NULL;
  } else {
    text[st.st_size] = '\0';
  }
  fclose(f);
  return text;
}

/* A whole number in [0, max] from a JSON value. */
static int json_whole(const cJSON *item, double max, size_t *out)
{
  if (!cJSON_IsNumber(item))
    return 0;
  const double v = item->valuedouble;
  if (!isfinite(v) || v < 0.0 || v > max || floor(v) != v)
    return 0;
  *out = (size_t)v;
  return 1;
}

static void json_string(const cJSON *obj, const char *name, char *dst, size_t size)
{
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
  if (cJSON_IsString(item) && item->valuestring)
    snprintf(dst, size, "%s", item->valuestring);
}

static double json_number(const cJSON *obj, const char *name)
{
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
  return cJSON_IsNumber(item) && isfinite(item->valuedouble) ? item->valuedouble : 0.0;
}

/* Reads one kernel's object: exactly its parameters, each a whole number. */
static int read_kernel(const cJSON *obj, m2pt_tuning_kernel kernel, m2pt_tuning *t, char *why,
                       size_t size)
{
  const char *name = kernel_names[kernel];
  if (!cJSON_IsObject(obj)) {
    snprintf(why, size, "\"%s\" is not an object", name);
    return -1;
  }
  const size_t n = m2pt_tuning_param_count(kernel);
  const char *const *names = m2pt_tuning_param_names(kernel);
  size_t *values = m2pt_tuning_values(t, kernel);
  if ((size_t)cJSON_GetArraySize(obj) != n) {
    snprintf(why, size, "\"%s\" has %d parameters, CLBlast's kernel has %zu", name,
             cJSON_GetArraySize(obj), n);
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, names[i]);
    if (!item) {
      snprintf(why, size, "\"%s\" lacks %s", name, names[i]);
      return -1;
    }
    if (!json_whole(item, MAX_MIN_INDIRECT, &values[i])) {
      snprintf(why, size, "%s.%s is not a whole number in 0..%u", name, names[i],
               MAX_MIN_INDIRECT);
      return -1;
    }
  }
  t->present |= 1u << kernel;
  return 0;
}

m2pt_tuning_read m2pt_tuning_store_read(const char *path, const m2pt_tuning_limits *limits,
                                        m2pt_tuning *t, m2pt_tuning_provenance *prov,
                                        char *why, size_t size)
{
  memset(t, 0, sizeof *t);
  if (prov)
    memset(prov, 0, sizeof *prov);
  int missing = 0;
  char *text = m2pt_tuning_read_text(path, STORE_MAX_BYTES, &missing, why, size);
  if (!text)
    return missing ? M2PT_TUNING_READ_MISSING : M2PT_TUNING_READ_INVALID;
  cJSON *root = cJSON_Parse(text);
  free(text);
  m2pt_tuning_read result = M2PT_TUNING_READ_INVALID;
  const cJSON *format = cJSON_GetObjectItemCaseSensitive(root, "format");
  const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
  const cJSON *kernels = cJSON_GetObjectItemCaseSensitive(root, "kernels");
  size_t v = 0;
  if (!root) {
    snprintf(why, size, "not valid JSON");
  } else if (!cJSON_IsObject(root) || !cJSON_IsString(format) ||
             strcmp(format->valuestring, STORE_FORMAT) != 0) {
    snprintf(why, size, "not an m2pt tuning store (\"format\" is not \"%s\")", STORE_FORMAT);
  } else if (!json_whole(version, 1e9, &v) || v != STORE_VERSION) {
    snprintf(why, size, "\"version\" is not %d", STORE_VERSION);
  } else if (!cJSON_IsObject(kernels) || cJSON_GetArraySize(kernels) == 0) {
    snprintf(why, size, "\"kernels\" is not an object with at least one kernel");
  } else {
    result = M2PT_TUNING_READ_OK;
    for (const cJSON *k = kernels->child; k && result == M2PT_TUNING_READ_OK; k = k->next) {
      int known = -1;
      for (int i = 0; i < M2PT_TK_COUNT; i++)
        if (k->string && strcmp(k->string, kernel_names[i]) == 0)
          known = i;
      if (known < 0 || (t->present & (1u << known))) {
        snprintf(why, size, "unknown or repeated kernel \"%s\"", k->string ? k->string : "");
        result = M2PT_TUNING_READ_INVALID;
      } else if (read_kernel(k, (m2pt_tuning_kernel)known, t, why, size) != 0) {
        result = M2PT_TUNING_READ_INVALID;
      } else {
        const char *bad = m2pt_tuning_check(t, (m2pt_tuning_kernel)known, limits);
        if (bad) {
          snprintf(why, size, "%s", bad);
          result = M2PT_TUNING_READ_INVALID;
        }
      }
    }
  }
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "provenance");
  if (result == M2PT_TUNING_READ_OK && prov && cJSON_IsObject(p)) {
    json_string(p, "date", prov->date, sizeof prov->date);
    json_string(p, "m2pt_version", prov->m2pt_version, sizeof prov->m2pt_version);
    json_string(p, "tool", prov->tool, sizeof prov->tool);
    json_string(p, "shapes", prov->shapes, sizeof prov->shapes);
    prov->budget_s = json_number(p, "budget_s");
    prov->spent_s = json_number(p, "spent_s");
    const double c = json_number(p, "candidates");
    prov->candidates = c > 0 && c < 1e9 ? (unsigned)c : 0;
    prov->gflops_before = json_number(p, "gflops_before");
    prov->gflops_after = json_number(p, "gflops_after");
  }
  cJSON_Delete(root);
  if (result != M2PT_TUNING_READ_OK)
    memset(t, 0, sizeof *t);
  return result;
}

static cJSON *store_json(const m2pt_device_info *info, const m2pt_tuning *t,
                         const m2pt_tuning_provenance *prov)
{
  cJSON *root = cJSON_CreateObject();
  cJSON *device = cJSON_AddObjectToObject(root, "device");
  cJSON *p = cJSON_AddObjectToObject(root, "provenance");
  cJSON *kernels = cJSON_AddObjectToObject(root, "kernels");
  if (!cJSON_AddStringToObject(root, "format", STORE_FORMAT) ||
      !cJSON_AddNumberToObject(root, "version", STORE_VERSION) || !device || !p || !kernels ||
      !cJSON_AddStringToObject(device, "platform", info->platform_name) ||
      !cJSON_AddStringToObject(device, "platform_version", info->platform_version) ||
      !cJSON_AddStringToObject(device, "name", info->name) ||
      !cJSON_AddStringToObject(device, "vendor", info->vendor) ||
      !cJSON_AddStringToObject(device, "version", info->device_version) ||
      !cJSON_AddStringToObject(device, "driver", info->driver_version) ||
      !cJSON_AddStringToObject(p, "date", prov->date) ||
      !cJSON_AddStringToObject(p, "m2pt_version", prov->m2pt_version) ||
      !cJSON_AddStringToObject(p, "tool", prov->tool) ||
      !cJSON_AddStringToObject(p, "shapes", prov->shapes) ||
      !cJSON_AddNumberToObject(p, "budget_s", prov->budget_s) ||
      !cJSON_AddNumberToObject(p, "spent_s", prov->spent_s) ||
      !cJSON_AddNumberToObject(p, "candidates", prov->candidates) ||
      !cJSON_AddNumberToObject(p, "gflops_before", prov->gflops_before) ||
      !cJSON_AddNumberToObject(p, "gflops_after", prov->gflops_after)) {
    cJSON_Delete(root);
    return NULL;
  }
  for (int k = 0; k < M2PT_TK_COUNT; k++) {
    if (!(t->present & (1u << k)))
      continue;
    const m2pt_tuning_kernel kernel = (m2pt_tuning_kernel)k;
    cJSON *obj = cJSON_AddObjectToObject(kernels, kernel_names[k]);
    const size_t *values = m2pt_tuning_values_const(t, kernel);
    const char *const *names = m2pt_tuning_param_names(kernel);
    for (size_t i = 0; obj && i < m2pt_tuning_param_count(kernel); i++)
      if (!cJSON_AddNumberToObject(obj, names[i], (double)values[i]))
        obj = NULL;
    if (!obj) {
      cJSON_Delete(root);
      return NULL;
    }
  }
  return root;
}

int m2pt_tuning_store_write(const char *path, const m2pt_device_info *info,
                            const m2pt_tuning *t, const m2pt_tuning_provenance *prov)
{
  char dir[4096], tmp[4096 + 16];
  const size_t n = strlen(path);
  const char *slash = strrchr(path, '/');
  if (n == 0 || n >= sizeof dir || !slash) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(dir, path, (size_t)(slash - path));
  dir[slash - path] = '\0';
  if (dir[0] && m2pt_make_dirs(dir) != 0)
    return -1;
  cJSON *root = store_json(info, t, prov);
  char *text = root ? cJSON_Print(root) : NULL;
  cJSON_Delete(root);
  if (!text) {
    errno = ENOMEM;
    return -1;
  }
  snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
  const int fd = mkstemp(tmp);
  if (fd < 0) {
    free(text);
    return -1;
  }
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    close(fd);
    remove(tmp);
    free(text);
    return -1;
  }
  const size_t len = strlen(text);
  int ok = fwrite(text, 1, len, f) == len && fputc('\n', f) != EOF;
  free(text);
  ok = (fclose(f) == 0) && ok;
  /* mkstemp makes the file private; a store is as readable as the cache. */
  chmod(tmp, 0644);
  if (!ok || rename(tmp, path) != 0) {
    const int saved = errno;
    remove(tmp);
    errno = saved ? saved : EIO;
    return -1;
  }
  return 0;
}

/* ---- the shipped default ---- */

/* PoCL on CPUs, measured here:
 *   m2pt-tune --budget 900 --store DIR, resumed with --budget 1500 and
 *   stopped at 1220 s (a direct candidate had compiled for 5 minutes; the
 *   tool has --candidate-timeout since)
 *   (default shapes: ViT-B/16, B = 1, N = 197: 197x768x2304, 197x768x768,
 *   197x768x3072, 197x3072x768), 2026-11-27, PoCL 3.1+debian (LLVM 15),
 *   "pthread-haswell-AMD EPYC", 2 cores of an AMD EPYC (KVM), CLBlast 1.5.3
 *   (Debian), shared with other jobs (load average 1 to 5 during the
 *   search). 60 candidates: CLBlast's CPU database entries first, then
 *   mutations of the best and random draws; every XgemmDirect candidate lost
 *   to Xgemm without local memory for A, and every GEMMK = 1 candidate gave
 *   wrong results on PoCL.
 *   GFLOP/s on the four shapes (all four together), this set against
 *   CLBlast's defaults (M2PT_TUNING=off), OpenBLAS 0.3.21 cblas_sgemm on the
 *   same shapes in the same runs (105-140 GFLOP/s; FMA peak 139-157):
 *   - m2pt_gemm then cblas_sgemm, medians of 7, 4 runs of the defaults and
 *     5 of this set, alternated: defaults 6.8-10.9 (0.08-0.12x OpenBLAS),
 *     this set 11.5-19.6 (0.11-0.14x);
 *   - `m2pt-bench --suite gemm --quick`, 2 runs each: defaults 6.3-9.5 per
 *     shape (0.06-0.08x), this set 9.7-12.6 (0.09-0.12x).
 *   The tuner's own figures (4.2 -> 22.0 GFLOP/s) are inflated by the load
 *   falling during the search. The target, 0.7x OpenBLAS, is out of
 *   reach of CLBlast's kernels as PoCL compiles them: the best reach about a
 *   tenth of the FMA peak, and the indirect path's copies do not matter (the
 *   same shapes without the weight's transpose run no faster).
 * Xgemm takes every GEMM with m·n·k >= 256³: the tuner chose 487³ (just
 * below its smallest shape), lowered here because ViT-S/16's qkv and proj
 * GEMMs (197x384x1152, 197x384x384) ran 2.1x and 1.9x faster on this Xgemm
 * than on CLBlast's direct kernel (m2pt-bench --suite block --quick: ViT-S/16
 * block 87 -> 57 ms; untuned 118 ms). Smaller GEMMs (attention's per-head
 * products at N = 197) keep CLBlast's direct kernel with its defaults (the
 * neutral set below). */
#define M2PT_SHIP_POCL_DEFAULT 1
static const m2pt_tuning pocl_cpu_default = {
    .present = (1u << M2PT_TK_XGEMM) | (1u << M2PT_TK_DIRECT) | (1u << M2PT_TK_ROUTINE),
    /* GEMMK KREG KWG KWI MDIMA MDIMC MWG NDIMB NDIMC NWG SA SB STRM STRN VWM VWN */
    .xgemm = {0, 1, 16, 2, 8, 16, 32, 8, 8, 64, 0, 1, 0, 0, 1, 8},
    /* KWID MDIMAD MDIMCD NDIMBD NDIMCD PADA PADB VWMD VWND WGD: CLBlast's
     * default for devices it does not know */
    .direct = {2, 8, 8, 8, 8, 1, 1, 1, 1, 16},
    .min_indirect = 256,
};

const m2pt_tuning *m2pt_tuning_shipped(const m2pt_device_info *info, const char **label)
{
  if (M2PT_SHIP_POCL_DEFAULT && info->is_cpu &&
      strstr(info->platform_name, "Portable Computing Language")) {
    *label = "shipped default for PoCL CPU devices";
    return &pocl_cpu_default;
  }
  *label = "";
  return NULL;
}

/* ---- applied at context creation ---- */

/* snprintf for messages that may be cut short (paths can be long). */
static void put_text(char *dst, size_t cap, const char *fmt, ...) M2PT_PRINTF(3, 4);
static void put_text(char *dst, size_t cap, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dst, cap, fmt, ap);
  va_end(ap);
}

void m2pt_tuning_context_init(m2pt_context *ctx, const char *cache_dir)
{
  char *detail = ctx->tuning_detail;
  const size_t cap = sizeof ctx->tuning_detail;
  char warning[M2PT_TUNING_DETAIL / 2] = "";
  char why[256] = "";
  ctx->tuning_source = M2PT_TUNING_NONE;
  detail[0] = '\0';
  /* CLBlast's parameters are process-wide: a context whose GEMMs never run
   * there has no business changing them. */
  if (ctx->host_blas) {
    put_text(detail, cap, "GEMMs run on the host BLAS: no CLBlast tuning applied");
    return;
  }
  const char *env = getenv("M2PT_TUNING");
  if (env && strcmp(env, "off") == 0) {
    ctx->tuning_source = M2PT_TUNING_DISABLED;
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
      ctx->tuning_source = M2PT_TUNING_STORED;
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
      ctx->tuning_source = M2PT_TUNING_SHIPPED;
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
