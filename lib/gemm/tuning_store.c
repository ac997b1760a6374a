/* The per-device tuning store: its file name (a hash of the device), its
 * JSON read with every value checked, and its atomic write (m2pt-tune). */
#include "tuning.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
/* For XXH3_state_t on the stack. */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "common/error.h"
#include "common/file_read.h"
#include "common/file_write.h"

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
  /* The primitives, not m2pt_read_file: a missing or damaged store is no
   * failure of the context being created, so it must leave no message. */
  struct stat st;
  const int fd = m2pt_open_regular(path, max_bytes, &st);
  *missing = fd < 0 && errno == ENOENT;
  if (fd < 0) {
    snprintf(why, size, "%s", errno == EINVAL ? "not a regular file"
                              : errno == EFBIG ? "larger than allowed" : strerror(errno));
    return NULL;
  }
  char *text = NULL;
  if (st.st_size <= 0)
    snprintf(why, size, "empty");
  else if (!(text = malloc((size_t)st.st_size + 1)))
    snprintf(why, size, "out of host memory");
  else if (m2pt_read_at(fd, text, (size_t)st.st_size, 0) != 0) {
    snprintf(why, size, "read error");
    free(text);
    text = NULL;
  } else {
    text[st.st_size] = '\0';
  }
  close(fd);
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
  const char *name = m2pt_tuning_kernel_name(kernel);
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
    if (!json_whole(item, M2PT_TUNING_MAX_MIN_INDIRECT, &values[i])) {
      snprintf(why, size, "%s.%s is not a whole number in 0..%u", name, names[i],
               M2PT_TUNING_MAX_MIN_INDIRECT);
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
        if (k->string && strcmp(k->string, m2pt_tuning_kernel_name((m2pt_tuning_kernel)i)) == 0)
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
    cJSON *obj = cJSON_AddObjectToObject(kernels, m2pt_tuning_kernel_name(kernel));
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

m2pt_status m2pt_tuning_store_write(const char *path, const m2pt_device_info *info,
                            const m2pt_tuning *t, const m2pt_tuning_provenance *prov)
{
  char dir[4096];
  const size_t n = strlen(path);
  const char *slash = strrchr(path, '/');
  if (n == 0 || n >= sizeof dir || !slash)
    return m2pt_fail_thread(M2PT_ERR_IO, "%s: not a path of at most %zu bytes with a directory",
                            path, sizeof dir - 1);
  memcpy(dir, path, (size_t)(slash - path));
  dir[slash - path] = '\0';
  if (dir[0])
    M2PT_TRY(m2pt_make_dirs(dir));
  cJSON *root = store_json(info, t, prov);
  char *text = root ? cJSON_Print(root) : NULL;
  cJSON_Delete(root);
  if (!text)
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  const m2pt_chunk chunks[2] = {{text, strlen(text)}, {"\n", 1}};
  const m2pt_status s = m2pt_replace_file(path, chunks, 2);
  free(text);
  return s;
}
