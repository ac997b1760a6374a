/* Training data on the host (issue 13, include/m2pt/dataset.h): datasets
 * from memory and .npy files, batches, every rejected input, the batch order
 * against an independent implementation of its documented generator, and
 * the plan of a run. No device. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "m2pt/m2pt.h"

static m2pt_npy_array array(m2pt_dtype dtype, size_t ndim, const size_t *shape, void *data)
{
  m2pt_npy_array a = {dtype, ndim, {0}, 1, data};
  for (size_t i = 0; i < ndim; ++i) {
    a.shape[i] = shape[i];
    a.numel *= shape[i];
  }
  return a;
}

/* Fails unless the thread's message contains `part`. */
static void assert_message(const char *part)
{
  const char *msg = m2pt_last_error(NULL);
  if (strstr(msg, part) == NULL)
    fail_msg("message \"%s\" lacks \"%s\"", msg, part);
}

enum { S = 5, N = 3, DIM = 2 };

static void hidden_batches(void **state)
{
  float x[S * N * DIM];
  for (size_t i = 0; i < S * N * DIM; ++i)
    x[i] = (float)i;
  int64_t y[S] = {0, 2, 1, 2, 0};
  const size_t xs[] = {S, N, DIM}, ys[] = {S};
  m2pt_npy_array xa = array(M2PT_DTYPE_F32, 3, xs, x), ya = array(M2PT_DTYPE_I64, 1, ys, y);
  m2pt_dataset *ds = NULL;
  assert_int_equal(m2pt_dataset_create(M2PT_DATA_HIDDEN, &xa, NULL, &ya, &ds), M2PT_OK);
  m2pt_dataset_info info;
  assert_int_equal(m2pt_dataset_get_info(ds, &info), M2PT_OK);
  assert_int_equal(info.samples, S);
  assert_int_equal(info.ndim, 3);
  assert_int_equal(info.shape[2], DIM);
  assert_int_equal(info.labels, M2PT_LABELS_CLASSES);
  assert_int_equal(info.max_class, 2);
  assert_false(info.has_mask);

  const size_t idx[] = {4, 1};
  m2pt_batch b;
  assert_int_equal(m2pt_dataset_batch(ds, idx, 2, &b), M2PT_OK);
  assert_int_equal(b.size, 2);
  assert_int_equal(b.x_shape[0], 2);
  assert_int_equal(b.x_shape[1], N);
  assert_memory_equal(b.x, x + 4 * N * DIM, N * DIM * sizeof(float));
  assert_memory_equal(b.x + N * DIM, x + 1 * N * DIM, N * DIM * sizeof(float));
  assert_null(b.ids.data);
  assert_null(b.mask.data);
  assert_int_equal(b.labels.dtype, M2PT_DTYPE_I64);
  assert_int_equal(((const int64_t *)b.labels.data)[0], 0);
  assert_int_equal(((const int64_t *)b.labels.data)[1], 2);

  assert_int_equal(m2pt_dataset_check_classes(ds, 3), M2PT_OK);
  assert_int_equal(m2pt_dataset_check_classes(ds, 2), M2PT_ERR_INVALID_ARGUMENT);
  assert_message("label 2 of sample 1 is out of range");

  /* a bad index changes nothing */
  const size_t bad[] = {0, S};
  assert_int_equal(m2pt_dataset_batch(ds, bad, 2, &b), M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(b.size, 2);
  assert_int_equal(m2pt_dataset_batch(ds, idx, 0, &b), M2PT_ERR_INVALID_ARGUMENT);
  m2pt_dataset_destroy(ds);
  m2pt_dataset_destroy(NULL);
  (void)state;
}

static void ids_mask_targets(void **state)
{
  int32_t ids[S * N];
  uint8_t mask[S * N];
  float t[S * 2];
  for (size_t i = 0; i < S * N; ++i) {
    ids[i] = (int32_t)(i % 7);
    mask[i] = (uint8_t)(i % N != N - 1);
  }
  for (size_t i = 0; i < S * 2; ++i)
    t[i] = 0.5f * (float)i;
  const size_t is[] = {S, N}, ts[] = {S, 2};
  m2pt_npy_array ia = array(M2PT_DTYPE_I32, 2, is, ids), ma = array(M2PT_DTYPE_BOOL, 2, is, mask),
                 ta = array(M2PT_DTYPE_F32, 2, ts, t);
  m2pt_dataset *ds = NULL;
  assert_int_equal(m2pt_dataset_create(M2PT_DATA_IDS, &ia, &ma, &ta, &ds), M2PT_OK);
  m2pt_dataset_info info;
  assert_int_equal(m2pt_dataset_get_info(ds, &info), M2PT_OK);
  assert_int_equal(info.labels, M2PT_LABELS_TARGETS);
  assert_int_equal(info.label_width, 2);
  assert_int_equal(info.mask_width, N);
  assert_int_equal(info.max_class, -1);
  assert_int_equal(m2pt_dataset_check_classes(ds, 3), M2PT_ERR_INVALID_ARGUMENT);
  assert_message("targets");

  const size_t idx[] = {3};
  m2pt_batch b;
  assert_int_equal(m2pt_dataset_batch(ds, idx, 1, &b), M2PT_OK);
  assert_null(b.x);
  assert_int_equal(b.ids.dtype, M2PT_DTYPE_I64);
  assert_int_equal(b.ids.rows, 1);
  assert_int_equal(b.ids.cols, N);
  for (size_t n = 0; n < N; ++n) {
    assert_int_equal(((const int64_t *)b.ids.data)[n], ids[3 * N + n]);
    assert_int_equal(((const int64_t *)b.mask.data)[n], mask[3 * N + n]);
  }
  assert_int_equal(b.labels.dtype, M2PT_DTYPE_F32);
  assert_int_equal(b.labels.cols, 2);
  assert_true(((const float *)b.labels.data)[1] == t[7]);
  m2pt_dataset_destroy(ds);
  (void)state;
}

/* Every rejected input: the right status, a message saying why, no dataset. */
static void rejected(void **state)
{
  float x[S * N * DIM] = {0};
  int64_t y[S] = {0, 1, 0, 1, 0};
  int64_t ids[S * N] = {0};
  float fmask[S * N];
  for (size_t i = 0; i < S * N; ++i)
    fmask[i] = 1.0f;
  const size_t xs[] = {S, N, DIM}, ys[] = {S}, short_ys[] = {S - 1}, is[] = {S, N},
               wide[] = {S, N + 1}, ys2[] = {S, 2};
  m2pt_npy_array xa = array(M2PT_DTYPE_F32, 3, xs, x), ya = array(M2PT_DTYPE_I64, 1, ys, y),
                 short_y = array(M2PT_DTYPE_I64, 1, short_ys, y),
                 ia = array(M2PT_DTYPE_I64, 2, is, ids), ma = array(M2PT_DTYPE_F32, 2, is, fmask),
                 wide_mask = array(M2PT_DTYPE_F32, 2, wide, fmask),
                 y2 = array(M2PT_DTYPE_I64, 2, ys2, y);
  m2pt_dataset *ds = NULL;

  assert_int_equal(m2pt_dataset_create(M2PT_DATA_HIDDEN, &xa, NULL, &short_y, &ds), M2PT_ERR_SHAPE);
  assert_message("4 labels for 5 samples");
  assert_int_equal(m2pt_dataset_create(M2PT_DATA_IDS, &xa, NULL, &ya, &ds), M2PT_ERR_SHAPE);
  assert_message("token ids must be integers of 2 dimensions");
  assert_int_equal(m2pt_dataset_create(M2PT_DATA_HIDDEN, &ia, NULL, &ya, &ds), M2PT_ERR_SHAPE);
  assert_int_equal(m2pt_dataset_create(M2PT_DATA_IDS, &ia, &wide_mask, &ya, &ds), M2PT_ERR_SHAPE);
  assert_message("mask has 4 tokens");
  assert_int_equal(m2pt_dataset_create(M2PT_DATA_IDS, &ia, NULL, &y2, &ds), M2PT_ERR_SHAPE);
  assert_int_equal(m2pt_dataset_create(M2PT_DATA_PIXELS, &xa, NULL, &ya, &ds), M2PT_ERR_SHAPE);
  assert_int_equal(m2pt_dataset_create((m2pt_data_kind)7, &xa, NULL, &ya, &ds),
                   M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_dataset_create(M2PT_DATA_HIDDEN, NULL, NULL, &ya, &ds),
                   M2PT_ERR_INVALID_ARGUMENT);

  y[3] = -1;
  assert_int_equal(m2pt_dataset_create(M2PT_DATA_HIDDEN, &xa, NULL, &ya, &ds),
                   M2PT_ERR_INVALID_ARGUMENT);
  assert_message("label -1 of sample 3 is negative");
  y[3] = 1;
  x[2 * N * DIM + 1] = (float)NAN;
  assert_int_equal(m2pt_dataset_create(M2PT_DATA_HIDDEN, &xa, NULL, &ya, &ds),
                   M2PT_ERR_INVALID_ARGUMENT);
  assert_message("sample 2");
  x[2 * N * DIM + 1] = 0.0f;
  fmask[4] = 0.5f;
  assert_int_equal(m2pt_dataset_create(M2PT_DATA_IDS, &ia, &ma, &ya, &ds),
                   M2PT_ERR_INVALID_ARGUMENT);
  assert_message("mask value 0.5 of sample 1, token 1");
  fmask[4] = 1.0f;
  ids[7] = -3;
  assert_int_equal(m2pt_dataset_create(M2PT_DATA_IDS, &ia, &ma, &ya, &ds),
                   M2PT_ERR_INVALID_ARGUMENT);
  assert_message("token id -3 of sample 2, token 1");
  assert_null(ds);
  ids[7] = 0;
  assert_int_equal(m2pt_dataset_create(M2PT_DATA_IDS, &ia, &ma, &ya, &ds), M2PT_OK);
  m2pt_dataset_destroy(ds);
  (void)state;
}

static void from_files(void **state)
{
  char dir[] = "/tmp/m2pt-dataset-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char xp[64], yp[64], bad[64];
  snprintf(xp, sizeof xp, "%s/x.npy", dir);
  snprintf(yp, sizeof yp, "%s/y.npy", dir);
  snprintf(bad, sizeof bad, "%s/missing.npy", dir);
  float x[S * N * DIM] = {0};
  const int64_t y[S] = {1, 1, 0, 0, 1};
  const size_t xs[] = {S, N, DIM}, ys[] = {S};
  assert_int_equal(m2pt_npy_write(xp, x, 3, xs), M2PT_OK);
  assert_int_equal(m2pt_npy_write_i64(yp, y, 1, ys), M2PT_OK);
  m2pt_dataset *ds = NULL;
  assert_int_equal(m2pt_dataset_load(M2PT_DATA_HIDDEN, xp, NULL, yp, &ds), M2PT_OK);
  m2pt_dataset_info info;
  assert_int_equal(m2pt_dataset_get_info(ds, &info), M2PT_OK);
  assert_int_equal(info.samples, S);
  m2pt_dataset_destroy(ds);
  ds = NULL;
  assert_int_equal(m2pt_dataset_load(M2PT_DATA_HIDDEN, xp, NULL, bad, &ds), M2PT_ERR_IO);
  assert_message("missing.npy");
  assert_null(ds);
  /* the labels of the hidden states as data: a rank error naming both files */
  assert_int_equal(m2pt_dataset_load(M2PT_DATA_HIDDEN, yp, NULL, yp, &ds), M2PT_ERR_SHAPE);
  assert_message("y.npy");
  unlink(xp);
  unlink(yp);
  rmdir(dir);
  (void)state;
}

static void order(void **state)
{
  size_t o[10];
  assert_int_equal(m2pt_batch_order(10, 0, 42, 3, o), M2PT_OK);
  for (size_t i = 0; i < 10; ++i)
    assert_int_equal(o[i], i);
  /* SplitMix64 + Fisher–Yates as dataset.h documents them, computed by an
   * independent Python implementation of that text. */
  static const size_t e0[] = {7, 5, 8, 0, 9, 6, 2, 1, 4, 3}, e1[] = {9, 0, 3, 8, 1, 2, 6, 7, 5, 4},
                      s7[] = {2, 5, 4, 6, 3, 0, 1};
  assert_int_equal(m2pt_batch_order(10, 1, 42, 0, o), M2PT_OK);
  assert_memory_equal(o, e0, sizeof e0);
  assert_int_equal(m2pt_batch_order(10, 1, 42, 1, o), M2PT_OK);
  assert_memory_equal(o, e1, sizeof e1);
  assert_int_equal(m2pt_batch_order(7, 1, 0, 3, o), M2PT_OK);
  assert_memory_equal(o, s7, sizeof s7);
  assert_int_equal(m2pt_batch_order(1, 1, 5, 5, o), M2PT_OK);
  assert_int_equal(o[0], 0);
  assert_int_equal(m2pt_batch_order(0, 1, 5, 5, o), M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_batch_order(3, 1, 5, 5, NULL), M2PT_ERR_INVALID_ARGUMENT);
  (void)state;
}

static void plan(void **state)
{
  m2pt_train_plan p;
  size_t e, first, count;
  double ep;
  /* the trajectory golden's run: 10 samples, batch 4, 10 steps */
  assert_int_equal(m2pt_train_plan_make(10, 4, 1, 0.0, 10, &p), M2PT_OK);
  assert_int_equal(p.iterations_per_epoch, 3);
  assert_int_equal(p.steps, 10);
  assert_true(p.epochs == 10.0 / 3.0);
  assert_int_equal(m2pt_train_plan_micro_batch(&p, 2, &e, &first, &count), M2PT_OK);
  assert_int_equal(e, 0);
  assert_int_equal(first, 8);
  assert_int_equal(count, 2); /* the last partial batch is used */
  assert_int_equal(m2pt_train_plan_micro_batch(&p, 7, &e, &first, &count), M2PT_OK);
  assert_int_equal(e, 2);
  assert_int_equal(first, 4);
  assert_int_equal(count, 4);
  assert_int_equal(m2pt_train_plan_micro_batch(&p, 10, &e, &first, &count),
                   M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_train_plan_epoch_of_step(&p, 4, &ep), M2PT_OK);
  assert_true(ep == 4.0 / 3.0);
  assert_int_equal(m2pt_train_plan_epoch_of_step(&p, 10, &ep), M2PT_ERR_INVALID_ARGUMENT);

  /* accumulation: 2.5 epochs of 3 micro-batches is 8, 4 steps of 2 */
  assert_int_equal(m2pt_train_plan_make(10, 4, 2, 2.5, 0, &p), M2PT_OK);
  assert_int_equal(p.micro_batches, 8);
  assert_int_equal(p.steps, 4);
  assert_int_equal(m2pt_train_plan_epoch_of_step(&p, 3, &ep), M2PT_OK);
  assert_true(ep == 2.0);
  assert_int_equal(m2pt_train_plan_make(10, 4, 3, 1.0, 0, &p), M2PT_OK);
  assert_int_equal(p.steps, 1);

  assert_int_equal(m2pt_train_plan_make(10, 11, 1, 1.0, 0, &p), M2PT_ERR_SHAPE);
  assert_message("a batch of 11 from 10 samples");
  assert_int_equal(m2pt_train_plan_make(10, 4, 1, 1.0, 5, &p), M2PT_ERR_INVALID_ARGUMENT);
  assert_message("not both");
  assert_int_equal(m2pt_train_plan_make(10, 4, 1, 0.0, 0, &p), M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_train_plan_make(10, 0, 1, 1.0, 0, &p), M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_train_plan_make(10, 4, 1, -1.0, 0, &p), M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_train_plan_make(10, 4, 1, (double)INFINITY, 0, &p),
                   M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_train_plan_make(10, 4, 2, 0.0, (size_t)-1, &p),
                   M2PT_ERR_INVALID_ARGUMENT);
  (void)state;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(hidden_batches), cmocka_unit_test(ids_mask_targets),
      cmocka_unit_test(rejected),       cmocka_unit_test(from_files),
      cmocka_unit_test(order),          cmocka_unit_test(plan),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
