/* Finding OpenCL devices and choosing one by selector (DESIGN.md §3). */
#include "device.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "global.h"

/* ocl-icd answers this when no ICD is installed: "no devices", not a failure. */
#define M2PT_CL_PLATFORM_NOT_FOUND_KHR (-1001)

/* Copies a string of any length, truncated to M2PT_INFO_STRING − 1 bytes
 * (asking with a short buffer would fail with CL_INVALID_VALUE instead). */
static void copy_info_string(char *dst, const char *src, size_t size)
{
  const size_t n = size < M2PT_INFO_STRING ? size : M2PT_INFO_STRING;
  memcpy(dst, src, n);
  dst[n ? n - 1 : 0] = '\0';
}

static void query_string(cl_device_id device, cl_device_info what, char *dst)
{
  size_t size = 0;
  char *buf = NULL;
  dst[0] = '\0';
  if (clGetDeviceInfo(device, what, 0, NULL, &size) == CL_SUCCESS && size > 0 &&
      (buf = malloc(size)) != NULL && clGetDeviceInfo(device, what, size, buf, NULL) == CL_SUCCESS)
    copy_info_string(dst, buf, size);
  free(buf);
}

static void query_platform_string(cl_platform_id platform, cl_platform_info what, char *dst)
{
  size_t size = 0;
  char *buf = NULL;
  dst[0] = '\0';
  if (clGetPlatformInfo(platform, what, 0, NULL, &size) == CL_SUCCESS && size > 0 &&
      (buf = malloc(size)) != NULL &&
      clGetPlatformInfo(platform, what, size, buf, NULL) == CL_SUCCESS)
    copy_info_string(dst, buf, size);
  free(buf);
}

/* Extensions strings can be long; look for one name as a whole word. */
static int device_has_extension(cl_device_id device, const char *name)
{
  size_t size = 0;
  if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, 0, NULL, &size) != CL_SUCCESS || size == 0)
    return 0;
  char *ext = malloc(size + 1);
  if (!ext)
    return 0;
  int found = 0;
  if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, size, ext, NULL) == CL_SUCCESS) {
    ext[size] = '\0';
    const size_t len = strlen(name);
    for (const char *p = strstr(ext, name); p; p = strstr(p + 1, name)) {
      const int starts = p == ext || p[-1] == ' ';
      const int ends = p[len] == '\0' || p[len] == ' ';
      if (starts && ends) {
        found = 1;
        break;
      }
    }
  }
  free(ext);
  return found;
}

m2pt_status m2pt_device_query(cl_platform_id platform, cl_device_id device,
                              unsigned platform_index, unsigned device_index,
                              m2pt_device_info *info)
{
  memset(info, 0, sizeof *info);
  info->platform_index = platform_index;
  info->device_index = device_index;
  query_platform_string(platform, CL_PLATFORM_NAME, info->platform_name);
  query_platform_string(platform, CL_PLATFORM_VERSION, info->platform_version);
  query_string(device, CL_DEVICE_NAME, info->name);
  query_string(device, CL_DEVICE_VENDOR, info->vendor);
  query_string(device, CL_DRIVER_VERSION, info->driver_version);
  query_string(device, CL_DEVICE_VERSION, info->device_version);
  query_string(device, CL_DEVICE_OPENCL_C_VERSION, info->opencl_c_version);

  cl_device_type type = 0;
  cl_uint units = 0, clock = 0;
  cl_ulong global = 0, local = 0, max_alloc = 0;
  cl_device_fp_config fp64 = 0;
  clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
  clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
  clGetDeviceInfo(device, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof clock, &clock, NULL);
  clGetDeviceInfo(device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof global, &global, NULL);
  clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, NULL);
  clGetDeviceInfo(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, NULL);
  clGetDeviceInfo(device, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof fp64, &fp64, NULL);
  info->is_gpu = (type & CL_DEVICE_TYPE_GPU) != 0;
  info->is_cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
  info->compute_units = units;
  info->max_clock_mhz = clock;
  info->global_mem_bytes = global;
  info->local_mem_bytes = local;
  info->max_alloc_bytes = max_alloc;
  /* Features, not versions: NVIDIA reports OpenCL 3.0 without cl_khr_fp16. */
  info->has_fp16 = device_has_extension(device, "cl_khr_fp16");
  info->has_fp64 = fp64 != 0 || device_has_extension(device, "cl_khr_fp64");
  return M2PT_OK;
}

/* Every device in selector order, with its handles. */
typedef struct device_table {
  size_t count;
  m2pt_device_info *info;
  cl_platform_id *platform;
  cl_device_id *device;
} device_table;

static void table_free(device_table *t)
{
  free(t->info);
  free(t->platform);
  free(t->device);
  memset(t, 0, sizeof *t);
}

static m2pt_status table_load_locked(device_table *t)
{
  memset(t, 0, sizeof *t);
  cl_uint nplat = 0;
  cl_int err = clGetPlatformIDs(0, NULL, &nplat);
  if (err == M2PT_CL_PLATFORM_NOT_FOUND_KHR || (err == CL_SUCCESS && nplat == 0))
    return M2PT_OK;
  if (err != CL_SUCCESS)
    return m2pt_fail_cl(NULL, err, "clGetPlatformIDs");
  cl_platform_id *plats = calloc(nplat, sizeof *plats);
  if (!plats)
    return m2pt_fail(NULL, M2PT_ERR_OUT_OF_MEMORY, "out of host memory listing platforms");
  err = clGetPlatformIDs(nplat, plats, NULL);
  if (err != CL_SUCCESS) {
    free(plats);
    return m2pt_fail_cl(NULL, err, "clGetPlatformIDs");
  }
  m2pt_status status = M2PT_OK;
  for (cl_uint p = 0; p < nplat && status == M2PT_OK; p++) {
    cl_uint ndev = 0;
    err = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &ndev);
    if (err == CL_DEVICE_NOT_FOUND || ndev == 0)
      continue;
    if (err != CL_SUCCESS) {
      status = m2pt_fail_cl(NULL, err, "clGetDeviceIDs");
      break;
    }
    cl_device_id *devs = calloc(ndev, sizeof *devs);
    const size_t n = t->count + ndev;
    m2pt_device_info *info = realloc(t->info, n * sizeof *info);
    if (info)
      t->info = info;
    cl_platform_id *pl = realloc(t->platform, n * sizeof *pl);
    if (pl)
      t->platform = pl;
    cl_device_id *dv = realloc(t->device, n * sizeof *dv);
    if (dv)
      t->device = dv;
    if (!devs || !info || !pl || !dv) {
      free(devs);
      status = m2pt_fail(NULL, M2PT_ERR_OUT_OF_MEMORY, "out of host memory listing devices");
      break;
    }
    err = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, ndev, devs, NULL);
    if (err != CL_SUCCESS) {
      free(devs);
      status = m2pt_fail_cl(NULL, err, "clGetDeviceIDs");
      break;
    }
    for (cl_uint d = 0; d < ndev; d++) {
      t->platform[t->count] = plats[p];
      t->device[t->count] = devs[d];
      m2pt_device_query(plats[p], devs[d], p, d, &t->info[t->count]);
      t->count++;
    }
    free(devs);
  }
  free(plats);
  if (status != M2PT_OK)
    table_free(t);
  return status;
}

/* Every device in selector order, under the process lock: PoCL 3.1 sets its
 * devices up in the first clGetPlatformIDs of the process, and threads that
 * overlap there see no device (CL_DEVICE_NOT_FOUND) or read one that is not
 * set up yet (a crash in clGetDeviceInfo). The table is the caller's copy, so
 * selecting from it needs no lock. */
static m2pt_status table_load(device_table *t)
{
  m2pt_process_lock();
  const m2pt_status status = table_load_locked(t);
  m2pt_process_unlock();
  return status;
}

m2pt_status m2pt_device_list(m2pt_device_info *infos, size_t capacity, size_t *count)
{
  M2PT_REQUIRE(NULL, count != NULL, "m2pt_device_list: count is NULL");
  M2PT_REQUIRE(NULL, infos != NULL || capacity == 0,
               "m2pt_device_list: infos is NULL but capacity is %zu", capacity);
  device_table t;
  M2PT_TRY(table_load(&t));
  for (size_t i = 0; i < t.count && i < capacity; i++)
    infos[i] = t.info[i];
  *count = t.count;
  table_free(&t);
  return M2PT_OK;
}

static int contains_nocase(const char *hay, const char *needle)
{
  const size_t n = strlen(needle);
  for (; *hay; hay++) {
    size_t i = 0;
    while (i < n && hay[i] &&
           tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
      i++;
    if (i == n)
      return 1;
  }
  return 0;
}

static int equals_nocase(const char *a, const char *b)
{
  for (; *a && *b; a++, b++)
    if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
      return 0;
  return *a == *b;
}

/* "P:D" with decimal indices; returns 0 if `s` is not of that form. */
static int parse_index_pair(const char *s, unsigned long *p, unsigned long *d)
{
  char *end;
  if (!isdigit((unsigned char)s[0]))
    return 0;
  *p = strtoul(s, &end, 10);
  if (*end != ':' || !isdigit((unsigned char)end[1]))
    return 0;
  *d = strtoul(end + 1, &end, 10);
  return *end == '\0';
}

/* Appends the devices found to the thread's message. */
static m2pt_status list_devices(const device_table *t)
{
  if (t->count == 0) {
    m2pt_error_append(NULL, "; no OpenCL device found (is an ICD such as pocl-opencl-icd installed?)");
    return M2PT_ERR_DEVICE_NOT_FOUND;
  }
  m2pt_error_append(NULL, "; devices found:");
  for (size_t i = 0; i < t->count; i++)
    m2pt_error_append(NULL, "\n  %u:%u  %s (%s, %s)", t->info[i].platform_index,
                      t->info[i].device_index, t->info[i].name, t->info[i].platform_name,
                      t->info[i].is_gpu ? "gpu" : t->info[i].is_cpu ? "cpu" : "other");
  return M2PT_ERR_DEVICE_NOT_FOUND;
}

/* Index into t of the device `selector` names, or a failure. */
static m2pt_status table_select(const device_table *t, const char *selector, size_t *index)
{
  if (selector == NULL) {
    const char *env = getenv("M2PT_DEVICE");
    if (env && env[0])
      return table_select(t, env, index);
    for (int want_gpu = 1; want_gpu >= 0; want_gpu--)
      for (size_t i = 0; i < t->count; i++)
        if (want_gpu ? t->info[i].is_gpu : t->info[i].is_cpu) {
          *index = i;
          return M2PT_OK;
        }
    if (t->count > 0) {
      *index = 0;
      return M2PT_OK;
    }
    m2pt_fail(NULL, M2PT_ERR_DEVICE_NOT_FOUND, "no device to select by default");
    return list_devices(t);
  }
  if (selector[0] == '\0')
    return m2pt_fail(NULL, M2PT_ERR_INVALID_ARGUMENT,
                     "empty device selector (use \"P:D\", \"gpu\", \"cpu\" or part of a device name)");
  unsigned long p, d;
  if (parse_index_pair(selector, &p, &d)) {
    for (size_t i = 0; i < t->count; i++)
      if (t->info[i].platform_index == p && t->info[i].device_index == d) {
        *index = i;
        return M2PT_OK;
      }
    m2pt_fail(NULL, M2PT_ERR_DEVICE_NOT_FOUND,
              "device selector \"%s\": no such platform:device index", selector);
    return list_devices(t);
  }
  const int gpu = equals_nocase(selector, "gpu"), cpu = equals_nocase(selector, "cpu");
  for (size_t i = 0; i < t->count; i++) {
    const int hit = gpu ? t->info[i].is_gpu
                    : cpu ? t->info[i].is_cpu
                          : contains_nocase(t->info[i].name, selector);
    if (hit) {
      *index = i;
      return M2PT_OK;
    }
  }
  m2pt_fail(NULL, M2PT_ERR_DEVICE_NOT_FOUND, "device selector \"%s\" matches no device",
            selector);
  return list_devices(t);
}

m2pt_status m2pt_device_select(const char *selector, size_t *index)
{
  M2PT_REQUIRE(NULL, index != NULL, "m2pt_device_select: index is NULL");
  device_table t;
  M2PT_TRY(table_load(&t));
  const m2pt_status status = table_select(&t, selector, index);
  table_free(&t);
  return status;
}

m2pt_status m2pt_device_resolve(const char *selector, cl_platform_id *platform,
                                cl_device_id *device, m2pt_device_info *info)
{
  device_table t;
  M2PT_TRY(table_load(&t));
  size_t index = 0;
  const m2pt_status status = table_select(&t, selector, &index);
  if (status == M2PT_OK) {
    *platform = t.platform[index];
    *device = t.device[index];
    *info = t.info[index];
  }
  table_free(&t);
  return status;
}

void m2pt_device_locate(cl_device_id device, unsigned *platform_index, unsigned *device_index)
{
  device_table t;
  if (table_load(&t) != M2PT_OK)
    return;
  for (size_t i = 0; i < t.count; i++)
    if (t.device[i] == device) {
      *platform_index = t.info[i].platform_index;
      *device_index = t.info[i].device_index;
      break;
    }
  table_free(&t);
}
