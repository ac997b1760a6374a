/* Status strings, device listing and selection, context creation, wrapping. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <m2pt/opencl.h>

#include "test_util.h"

static void status_strings(void **state)
{
  (void)state;
  assert_string_equal(m2pt_status_string(M2PT_OK), "M2PT_OK");
  assert_string_equal(m2pt_status_string(M2PT_ERR_SHAPE), "M2PT_ERR_SHAPE");
  assert_string_equal(m2pt_status_string(M2PT_ERR_UNSUPPORTED), "M2PT_ERR_UNSUPPORTED");
  assert_string_equal(m2pt_status_string((m2pt_status)9999), "M2PT_ERR_UNKNOWN");
  /* Every value up to the last has a name of its own. */
  for (int s = M2PT_OK; s <= M2PT_ERR_NOT_FINITE; s++)
    assert_string_not_equal(m2pt_status_string((m2pt_status)s), "M2PT_ERR_UNKNOWN");
}

static void version(void **state)
{
  (void)state;
  assert_int_equal(m2pt_version_number(), M2PT_VERSION_NUMBER);
  assert_string_equal(m2pt_version_string(), M2PT_VERSION_STRING);
}

/* The device list as the tests see it; CI has at least PoCL's CPU. */
static m2pt_device_info *devices(size_t *count)
{
  assert_ok(NULL, m2pt_device_list(NULL, 0, count));
  assert_true(*count >= 1);
  m2pt_device_info *infos = test_alloc(*count * sizeof *infos);
  assert_ok(NULL, m2pt_device_list(infos, *count, count));
  return infos;
}

static void device_list(void **state)
{
  (void)state;
  size_t count = 0;
  m2pt_device_info *infos = devices(&count);
  for (size_t i = 0; i < count; i++) {
    assert_true(strlen(infos[i].name) > 0);
    assert_true(infos[i].compute_units > 0);
    assert_true(infos[i].global_mem_bytes > 0);
  }
  size_t n = 0;
  assert_status(NULL, m2pt_device_list(NULL, 0, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_device_list(NULL, 3, &n), M2PT_ERR_INVALID_ARGUMENT);
  /* A smaller capacity still reports the full count. */
  assert_ok(NULL, m2pt_device_list(infos, 0, &n));
  assert_int_equal(n, count);
  free(infos);
}

static void select_index_pair(void **state)
{
  (void)state;
  size_t count = 0, index = 99;
  m2pt_device_info *infos = devices(&count);
  char sel[32];
  snprintf(sel, sizeof sel, "%u:%u", infos[count - 1].platform_index,
           infos[count - 1].device_index);
  assert_ok(NULL, m2pt_device_select(sel, &index));
  assert_int_equal(index, count - 1);
  assert_status(NULL, m2pt_device_select("0:999", &index), M2PT_ERR_DEVICE_NOT_FOUND);
  assert_status(NULL, m2pt_device_select("77:0", &index), M2PT_ERR_DEVICE_NOT_FOUND);
  /* The message lists what exists, so the user can correct the selector. */
  assert_non_null(strstr(m2pt_last_error(NULL), "devices found"));
  assert_non_null(strstr(m2pt_last_error(NULL), infos[0].name));
  free(infos);
}

static void select_type_and_name(void **state)
{
  (void)state;
  size_t count = 0, index = 99;
  m2pt_device_info *infos = devices(&count);
  /* A type picks the first device of that type. A device may report both
   * (Oclgrind's does), so another CPU device's selection can be it. */
  size_t first_gpu = count, first_cpu = count;
  for (size_t i = count; i-- > 0;) {
    first_gpu = infos[i].is_gpu ? i : first_gpu;
    first_cpu = infos[i].is_cpu ? i : first_cpu;
  }
  if (first_gpu < count) {
    assert_ok(NULL, m2pt_device_select("GPU", &index));
    assert_int_equal(index, first_gpu);
  }
  if (first_cpu < count) {
    assert_ok(NULL, m2pt_device_select("cpu", &index));
    assert_int_equal(index, first_cpu);
  }
  /* A case-insensitive piece of the name. */
  char piece[8] = {0};
  memcpy(piece, infos[0].name, 4);
  for (char *p = piece; *p; p++)
    *p = (char)((*p >= 'a' && *p <= 'z') ? *p - 32 : (*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
  assert_ok(NULL, m2pt_device_select(piece, &index));
  assert_status(NULL, m2pt_device_select("no-such-device-xyz", &index),
                M2PT_ERR_DEVICE_NOT_FOUND);
  assert_non_null(strstr(m2pt_last_error(NULL), "no-such-device-xyz"));
  assert_status(NULL, m2pt_device_select("", &index), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_device_select("cpu", NULL), M2PT_ERR_INVALID_ARGUMENT);
  /* Malformed index pairs are names, and match nothing. */
  assert_status(NULL, m2pt_device_select("0:", &index), M2PT_ERR_DEVICE_NOT_FOUND);
  assert_status(NULL, m2pt_device_select("1:2:3", &index), M2PT_ERR_DEVICE_NOT_FOUND);
  free(infos);
}

static void select_default_and_env(void **state)
{
  (void)state;
  size_t count = 0, index = 99, expected = 0;
  m2pt_device_info *infos = devices(&count);
  const char *saved = getenv("M2PT_DEVICE");
  char *saved_copy = saved ? strdup(saved) : NULL;

  unsetenv("M2PT_DEVICE");
  assert_ok(NULL, m2pt_device_select(NULL, &index));
  /* First GPU, else first CPU. */
  int found = 0;
  for (size_t i = 0; i < count && !found; i++)
    if (infos[i].is_gpu) {
      expected = i;
      found = 1;
    }
  for (size_t i = 0; i < count && !found; i++)
    if (infos[i].is_cpu) {
      expected = i;
      found = 1;
    }
  assert_int_equal(index, expected);

  setenv("M2PT_DEVICE", "no-such-device-xyz", 1);
  assert_status(NULL, m2pt_device_select(NULL, &index), M2PT_ERR_DEVICE_NOT_FOUND);
  m2pt_context *ctx = (m2pt_context *)0x1;
  assert_status(NULL, m2pt_context_create(NULL, &ctx), M2PT_ERR_DEVICE_NOT_FOUND);
  assert_null(ctx);
  /* An explicit selector wins over the environment. */
  m2pt_context_options opts = m2pt_context_options_default();
  opts.device = "0:0";
  assert_ok(NULL, m2pt_context_create(&opts, &ctx));
  m2pt_context_destroy(ctx);
  setenv("M2PT_DEVICE", "", 1);
  assert_ok(NULL, m2pt_device_select(NULL, &index));
  assert_int_equal(index, expected);

  if (saved_copy)
    setenv("M2PT_DEVICE", saved_copy, 1);
  else
    unsetenv("M2PT_DEVICE");
  free(saved_copy);
  free(infos);
}

static void context_lifecycle(void **state)
{
  (void)state;
  assert_status(NULL, m2pt_context_create(NULL, NULL), M2PT_ERR_INVALID_ARGUMENT);
  m2pt_context *bad = (m2pt_context *)0x1;
  m2pt_context_options opts = m2pt_context_options_default();
  opts.binary_cache = (m2pt_binary_cache)7;
  assert_status(NULL, m2pt_context_create(&opts, &bad), M2PT_ERR_INVALID_ARGUMENT);
  assert_null(bad);
  opts.binary_cache = M2PT_BINARY_CACHE_AUTO;
  opts.flags = 0x80;
  assert_status(NULL, m2pt_context_create(&opts, &bad), M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(NULL), "flags"));
  /* An all-zero struct never had struct_size set; one larger than this
   * library's comes from a newer m2pt. */
  const m2pt_context_options zero = {0};
  assert_status(NULL, m2pt_context_create(&zero, &bad), M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(NULL), "struct_size"));
  /* A size that would cut the device pointer in half is refused, not read. */
  opts = m2pt_context_options_default();
  opts.struct_size = sizeof(size_t) + 4;
  assert_status(NULL, m2pt_context_create(&opts, &bad), M2PT_ERR_INVALID_ARGUMENT);
  assert_null(bad);
  opts = m2pt_context_options_default();
  opts.struct_size += sizeof(void *);
  assert_status(NULL, m2pt_context_create(&opts, &bad), M2PT_ERR_UNSUPPORTED);
  assert_null(bad);
  m2pt_context_destroy(NULL);
  m2pt_context *ctx = test_context();
  m2pt_device_info info;
  assert_ok(ctx, m2pt_context_device_info(ctx, &info));
  assert_true(strlen(info.name) > 0);
  assert_status(ctx, m2pt_context_device_info(ctx, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_ok(ctx, m2pt_context_finish(ctx));
  assert_string_equal(m2pt_last_error(ctx), "m2pt_context_device_info: NULL argument");
  double ms;
  /* Kernel timing needs a profiling context. */
  assert_status(ctx, m2pt_context_kernel_time(ctx, &ms), M2PT_ERR_INVALID_STATE);
  size_t kernels = 0;
  assert_status(ctx, m2pt_context_kernel_times(ctx, NULL, 0, &kernels), M2PT_ERR_INVALID_STATE);
  m2pt_stats stats;
  assert_ok(ctx, m2pt_context_stats(ctx, &stats));
  assert_int_equal(stats.device_bytes_live, 0);
  m2pt_context_destroy(ctx);
}

/* An application that owns its OpenCL objects keeps them. */
static void context_wrap(void **state)
{
  (void)state;
  m2pt_context *owner = test_context();
  m2pt_device_info info;
  assert_ok(owner, m2pt_context_device_info(owner, &info));
  m2pt_context_destroy(owner);

  cl_platform_id platforms[8];
  cl_uint np = 0;
  assert_int_equal(clGetPlatformIDs(8, platforms, &np), CL_SUCCESS);
  cl_device_id devices[16];
  cl_uint nd = 0;
  assert_int_equal(clGetDeviceIDs(platforms[info.platform_index], CL_DEVICE_TYPE_ALL, 16, devices,
                                  &nd),
                   CL_SUCCESS);
  assert_true(info.device_index < nd);
  cl_device_id device = devices[info.device_index];
  cl_int err;
  cl_context clctx = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
  assert_int_equal(err, CL_SUCCESS);
  cl_command_queue queue = clCreateCommandQueue(clctx, device, 0, &err);
  assert_int_equal(err, CL_SUCCESS);

  cl_uint refs_before = 0, refs_after = 0;
  assert_int_equal(clGetContextInfo(clctx, CL_CONTEXT_REFERENCE_COUNT, sizeof refs_before,
                                    &refs_before, NULL),
                   CL_SUCCESS);
  m2pt_context *ctx = NULL;
  assert_status(NULL, m2pt_context_wrap(clctx, device, NULL, NULL, &ctx),
                M2PT_ERR_INVALID_ARGUMENT);
  m2pt_context_options opts = m2pt_context_options_default();
  opts.flags = M2PT_CONTEXT_PROFILING; /* the queue was made without profiling */
  assert_status(NULL, m2pt_context_wrap(clctx, device, queue, &opts, &ctx),
                M2PT_ERR_INVALID_ARGUMENT);
  /* A queue of another OpenCL context is refused. */
  cl_context other = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
  assert_int_equal(err, CL_SUCCESS);
  assert_status(NULL, m2pt_context_wrap(other, device, queue, NULL, &ctx),
                M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(NULL), "another context"));
  clReleaseContext(other);
  assert_ok(NULL, m2pt_context_wrap(clctx, device, queue, NULL, &ctx));
  /* The wrapped device is found among the listed ones. */
  m2pt_device_info wrapped;
  assert_ok(ctx, m2pt_context_device_info(ctx, &wrapped));
  assert_int_equal(wrapped.platform_index, info.platform_index);
  assert_int_equal(wrapped.device_index, info.device_index);
  assert_string_equal(wrapped.name, info.name);
  const size_t shape[1] = {5};
  const float src[5] = {1, 2, 3, 4, 5};
  float dst[5] = {0};
  m2pt_tensor *t = test_tensor(ctx, 1, shape, src);
  assert_ok(ctx, m2pt_tensor_read(t, dst, 5));
  assert_memory_equal(src, dst, sizeof src);
  assert_non_null(m2pt_tensor_buffer(t));
  m2pt_tensor_destroy(t);
  m2pt_context_destroy(ctx);

  /* Still ours: the queue and context work after m2pt let go. */
  assert_int_equal(clFinish(queue), CL_SUCCESS);
  assert_int_equal(clGetContextInfo(clctx, CL_CONTEXT_REFERENCE_COUNT, sizeof refs_after,
                                    &refs_after, NULL),
                   CL_SUCCESS);
  assert_int_equal(refs_after, refs_before);
  clReleaseCommandQueue(queue);
  clReleaseContext(clctx);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(status_strings),
      cmocka_unit_test(version),
      cmocka_unit_test(device_list),
      cmocka_unit_test(select_index_pair),
      cmocka_unit_test(select_type_and_name),
      cmocka_unit_test(select_default_and_env),
      cmocka_unit_test(context_lifecycle),
      cmocka_unit_test(context_wrap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
