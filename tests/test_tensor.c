/* Device tensors: round trips, shape queries, and what is rejected. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/context_impl.h"
#include "core/svm.h"
#include "m2pt/opencl.h"
#include "test_util.h"

static void round_trip(void **state)
{
  m2pt_context *ctx = *state;
  const size_t shapes[4][4] = {{7}, {3, 17}, {2, 3, 5}, {2, 1, 3, 4}};
  for (size_t nd = 1; nd <= 4; nd++) {
    m2pt_tensor *t = NULL;
    assert_ok(ctx, m2pt_tensor_create(ctx, nd, shapes[nd - 1], &t));
    size_t n = 1;
    for (size_t i = 0; i < nd; i++) {
      assert_int_equal(m2pt_tensor_dim(t, i), shapes[nd - 1][i]);
      n *= shapes[nd - 1][i];
    }
    assert_int_equal(m2pt_tensor_ndim(t), nd);
    assert_int_equal(m2pt_tensor_numel(t), n);
    assert_int_equal(m2pt_tensor_dim(t, nd), 0);
    assert_ptr_equal(m2pt_tensor_context(t), ctx);
    float *src = test_alloc(n * sizeof *src), *dst = test_alloc(n * sizeof *dst);
    /* New tensors are zero-filled. */
    assert_ok(ctx, m2pt_tensor_read(t, dst, n));
    for (size_t i = 0; i < n; i++)
      assert_true(dst[i] == 0.0f);
    test_fill(src, n, nd);
    assert_ok(ctx, m2pt_tensor_write(t, src, n));
    assert_ok(ctx, m2pt_tensor_read(t, dst, n));
    assert_memory_equal(src, dst, n * sizeof *src);
    m2pt_tensor_destroy(t);
    free(src);
    free(dst);
  }
  assert_int_equal(m2pt_tensor_ndim(NULL), 0);
  assert_int_equal(m2pt_tensor_numel(NULL), 0);
  assert_null(m2pt_tensor_context(NULL));
  m2pt_tensor_destroy(NULL);
}

static void bad_shapes(void **state)
{
  m2pt_context *ctx = *state;
  m2pt_tensor *t = (m2pt_tensor *)0x1;
  const size_t ok[2] = {2, 3}, zero[2] = {2, 0};
  const size_t huge[4] = {SIZE_MAX / 2, 4, 1, 1};
  const size_t overflow_bytes[1] = {SIZE_MAX / 2};
  assert_status(ctx, m2pt_tensor_create(ctx, 0, ok, &t), M2PT_ERR_INVALID_ARGUMENT);
  assert_null(t);
  assert_status(ctx, m2pt_tensor_create(ctx, 5, ok, &t), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_tensor_create(ctx, 2, zero, &t), M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(ctx), "dimension 1 is zero"));
  assert_status(ctx, m2pt_tensor_create(ctx, 4, huge, &t), M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(ctx), "overflow"));
  assert_status(ctx, m2pt_tensor_create(ctx, 1, overflow_bytes, &t), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_tensor_create(ctx, 2, NULL, &t), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_tensor_create(ctx, 2, ok, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_tensor_create(NULL, 2, ok, &t), M2PT_ERR_INVALID_ARGUMENT);

  /* Larger than the device can hold: a clear status, and the context goes on. */
  m2pt_device_info info;
  assert_ok(ctx, m2pt_context_device_info(ctx, &info));
  const size_t too_big[1] = {(size_t)(info.max_alloc_bytes / sizeof(float)) + 1};
  assert_status(ctx, m2pt_tensor_create(ctx, 1, too_big, &t), M2PT_ERR_DEVICE_OUT_OF_MEMORY);
  assert_null(t);
  m2pt_stats stats;
  assert_ok(ctx, m2pt_context_stats(ctx, &stats));
  assert_int_equal(stats.device_bytes_live, 0);

  t = test_tensor(ctx, 2, ok, NULL);
  float buf[7] = {0};
  assert_status(ctx, m2pt_tensor_write(t, buf, 7), M2PT_ERR_SHAPE);
  assert_non_null(strstr(m2pt_last_error(ctx), "[2][3]"));
  assert_status(ctx, m2pt_tensor_read(t, buf, 5), M2PT_ERR_SHAPE);
  assert_status(ctx, m2pt_tensor_write(t, NULL, 6), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(NULL, m2pt_tensor_read(NULL, buf, 6), M2PT_ERR_INVALID_ARGUMENT);
  /* Still usable. */
  assert_ok(ctx, m2pt_tensor_write(t, buf, 6));
  m2pt_tensor_destroy(t);
}

static void allocation_stats(void **state)
{
  m2pt_context *ctx = *state;
  m2pt_context_stats_reset(ctx);
  const size_t shape[2] = {4, 8};
  m2pt_tensor *a = test_tensor(ctx, 2, shape, NULL);
  m2pt_tensor *b = test_tensor(ctx, 2, shape, NULL);
  m2pt_stats s;
  assert_ok(ctx, m2pt_context_stats(ctx, &s));
  assert_int_equal(s.device_allocations, 2);
  assert_int_equal(s.device_bytes_live, 2 * 32 * sizeof(float));
  m2pt_tensor_destroy(a);
  m2pt_tensor_destroy(b);
  assert_ok(ctx, m2pt_context_stats(ctx, &s));
  assert_int_equal(s.device_bytes_live, 0);
  assert_int_equal(s.device_bytes_peak, 2 * 32 * sizeof(float));
}

/* Whether a released SVM buffer's handle has left m2pt's record, waiting
 * up to 2 s: the implementation deletes the buffer, and calls the
 * destructor callback that removes it, once its last reference is gone,
 * which a device thread finishing a command may hold a moment longer. */
static int left_record(m2pt_context *ctx, cl_mem handle)
{
  assert_int_equal(clFinish(ctx->queue), CL_SUCCESS);
  for (int i = 0; i < 2000; i++) {
    if (!m2pt_svm_host(ctx, handle))
      return 1;
    const struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  return 0;
}

/* Buffers on fine-grained SVM (host_access=svm, core/svm.h): the host sees
 * the device's writes and the device the host's, with no map; a buffer the
 * application still holds outlives its tensor; plain buffers have no host
 * address, nor has a destroyed SVM buffer's handle. */
static void svm_buffers(void **state)
{
  m2pt_context *ctx = *state;
  const size_t shape[1] = {1000};
  float data[1000], back[1000];
  test_fill(data, 1000, 3);
  m2pt_tensor *plain = test_tensor_as(ctx, 1, shape, NULL, 0);
  assert_null(m2pt_svm_host(ctx, m2pt_tensor_buffer(plain)));
  m2pt_tensor_destroy(plain);
  if (!ctx->quirks.host_svm)
    skip(); /* the device offers no SVM buffers */
  m2pt_tensor *t = test_tensor(ctx, 1, shape, data);
  float *host = m2pt_svm_host(ctx, m2pt_tensor_buffer(t));
  assert_non_null(host);
  assert_int_equal(clFinish(ctx->queue), CL_SUCCESS);
  assert_memory_equal(host, data, sizeof data);
  for (size_t i = 0; i < 1000; i++)
    host[i] = -data[i];
  assert_ok(ctx, m2pt_tensor_read(t, back, 1000));
  for (size_t i = 0; i < 1000; i++)
    assert_true(back[i] == -data[i]);
  m2pt_tensor *sum = test_tensor(ctx, 1, shape, NULL);
  assert_ok(ctx, m2pt_add(ctx, t, t, sum)); /* a kernel reads the host's writes */
  assert_int_equal(clFinish(ctx->queue), CL_SUCCESS);
  const float *sum_host = m2pt_svm_host(ctx, m2pt_tensor_buffer(sum));
  assert_non_null(sum_host);
  for (size_t i = 0; i < 1000; i++)
    assert_true(sum_host[i] == -2.0f * data[i]);
  m2pt_tensor_destroy(t);
  cl_mem held = m2pt_tensor_buffer(sum);
  assert_int_equal(clRetainMemObject(held), CL_SUCCESS);
  m2pt_tensor_destroy(sum);
  assert_int_equal(clEnqueueReadBuffer(ctx->queue, held, CL_TRUE, 0, sizeof back, back, 0, NULL,
                                       NULL),
                   CL_SUCCESS);
  for (size_t i = 0; i < 1000; i++)
    assert_true(back[i] == -2.0f * data[i]);
  assert_int_equal(clReleaseMemObject(held), CL_SUCCESS);
  /* A destroyed buffer leaves m2pt's record of them: its handle, which a
   * new object may take over, has no host address. */
  assert_true(left_record(ctx, held));
  m2pt_tensor *gone = test_tensor(ctx, 1, shape, NULL);
  const cl_mem handle = m2pt_tensor_buffer(gone);
  assert_non_null(m2pt_svm_host(ctx, handle));
  m2pt_tensor_destroy(gone);
  assert_true(left_record(ctx, handle));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(round_trip),
      cmocka_unit_test(bad_shapes),
      cmocka_unit_test(allocation_stats),
      cmocka_unit_test(svm_buffers),
  };
  return cmocka_run_group_tests(tests, test_setup_context, test_teardown_context);
}
