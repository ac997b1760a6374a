/* Training data on the host (include/m2pt/dataset.h): every value checked
 * once at creation, batches gathered into reusable buffers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/size_math.h"
#include "m2pt/context.h"
#include "m2pt/dataset.h"

struct m2pt_dataset {
  m2pt_data_kind kind;
  size_t samples, ndim, shape[4];
  size_t row;         /* data elements per sample */
  float *x;           /* HIDDEN, PIXELS */
  int64_t *ids;       /* IDS */
  int64_t *mask;      /* NULL without a mask */
  size_t mask_width;
  m2pt_label_kind label_kind;
  size_t label_width;
  int64_t *classes;
  float *targets;
  int64_t max_class;
  /* batch buffers, grown to the largest batch asked for */
  size_t capacity;
  float *bx;
  int64_t *bids, *bmask, *bclasses;
  float *btargets;
};

static const char *const kind_names[] = {"hidden states", "token ids", "pixels"};

static int is_integer(m2pt_dtype t)
{
  return t == M2PT_DTYPE_I64 || t == M2PT_DTYPE_I32 || t == M2PT_DTYPE_I8 ||
         t == M2PT_DTYPE_U8 || t == M2PT_DTYPE_BOOL;
}

/* Element i of an integer array, widened exactly. */
static int64_t int_at(const m2pt_npy_array *a, size_t i)
{
  switch (a->dtype) {
  case M2PT_DTYPE_I64:
    return ((const int64_t *)a->data)[i];
  case M2PT_DTYPE_I32:
    return ((const int32_t *)a->data)[i];
  case M2PT_DTYPE_I8:
    return ((const int8_t *)a->data)[i];
  default: /* U8, BOOL */
    return ((const uint8_t *)a->data)[i];
  }
}

void m2pt_dataset_destroy(m2pt_dataset *ds)
{
  if (ds == NULL)
    return;
  free(ds->x);
  free(ds->ids);
  free(ds->mask);
  free(ds->classes);
  free(ds->targets);
  free(ds->bx);
  free(ds->bids);
  free(ds->bmask);
  free(ds->bclasses);
  free(ds->btargets);
  free(ds);
}

static m2pt_status check_data(m2pt_data_kind kind, const m2pt_npy_array *a, m2pt_dataset *ds)
{
  static const size_t ranks[] = {3, 2, 4};
  const int want_float = kind != M2PT_DATA_IDS;
  if (a->ndim != ranks[kind] || (want_float ? a->dtype != M2PT_DTYPE_F32 : !is_integer(a->dtype)))
    return m2pt_fail_thread(M2PT_ERR_SHAPE,
                            "dataset: %s must be %s of %zu dimensions, not %s of %zu",
                            kind_names[kind], want_float ? "float32" : "integers", ranks[kind],
                            m2pt_dtype_name(a->dtype), a->ndim);
  if (a->shape[0] == 0 || a->numel == 0)
    return m2pt_fail_thread(M2PT_ERR_SHAPE, "dataset: %s hold no sample", kind_names[kind]);
  ds->samples = a->shape[0];
  ds->ndim = a->ndim;
  memcpy(ds->shape, a->shape, a->ndim * sizeof *ds->shape);
  ds->row = a->numel / a->shape[0];
  if (want_float) {
    const float *v = a->data;
    for (size_t i = 0; i < a->numel; ++i)
      if (!isfinite(v[i]))
        return m2pt_fail_thread(M2PT_ERR_INVALID_ARGUMENT,
                                "dataset: %s of sample %zu hold %g (not finite)",
                                kind_names[kind], i / ds->row, (double)v[i]);
    ds->x = malloc(a->numel * sizeof *ds->x);
    if (ds->x == NULL)
      return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "dataset: no memory for %zu values",
                              a->numel);
    memcpy(ds->x, v, a->numel * sizeof *ds->x);
    return M2PT_OK;
  }
  ds->ids = malloc(a->numel * sizeof *ds->ids);
  if (ds->ids == NULL)
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "dataset: no memory for %zu ids", a->numel);
  for (size_t i = 0; i < a->numel; ++i) {
    ds->ids[i] = int_at(a, i);
    if (ds->ids[i] < 0)
      return m2pt_fail_thread(M2PT_ERR_INVALID_ARGUMENT,
                              "dataset: token id %lld of sample %zu, token %zu is negative",
                              (long long)ds->ids[i], i / ds->row, i % ds->row);
  }
  return M2PT_OK;
}

static m2pt_status check_mask(const m2pt_npy_array *a, m2pt_dataset *ds)
{
  if (a->ndim != 2 || !(is_integer(a->dtype) || a->dtype == M2PT_DTYPE_F32))
    return m2pt_fail_thread(M2PT_ERR_SHAPE,
                            "dataset: the attention mask must be [S][N] of integers or float32, "
                            "not %s of %zu dimensions",
                            m2pt_dtype_name(a->dtype), a->ndim);
  if (a->shape[0] != ds->samples)
    return m2pt_fail_thread(M2PT_ERR_SHAPE,
                            "dataset: the attention mask has %zu samples, the %s %zu",
                            a->shape[0], kind_names[ds->kind], ds->samples);
  if (ds->kind != M2PT_DATA_PIXELS && a->shape[1] != ds->shape[1])
    return m2pt_fail_thread(M2PT_ERR_SHAPE,
                            "dataset: the attention mask has %zu tokens, the %s %zu",
                            a->shape[1], kind_names[ds->kind], ds->shape[1]);
  ds->mask_width = a->shape[1];
  ds->mask = malloc(a->numel * sizeof *ds->mask);
  if (ds->mask == NULL)
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "dataset: no memory for the mask");
  for (size_t i = 0; i < a->numel; ++i) {
    const double v = a->dtype == M2PT_DTYPE_F32 ? (double)((const float *)a->data)[i]
                                                : (double)int_at(a, i);
    if (v != 0.0 && v != 1.0)
      return m2pt_fail_thread(M2PT_ERR_INVALID_ARGUMENT,
                              "dataset: attention mask value %g of sample %zu, token %zu is "
                              "not 0 or 1",
                              v, i / a->shape[1], i % a->shape[1]);
    ds->mask[i] = (int64_t)v;
  }
  return M2PT_OK;
}

static m2pt_status check_labels(const m2pt_npy_array *a, m2pt_dataset *ds)
{
  const int classes = is_integer(a->dtype);
  if (!(classes || a->dtype == M2PT_DTYPE_F32) || a->ndim > 2 ||
      (classes && a->ndim == 2 && a->shape[1] != 1))
    return m2pt_fail_thread(M2PT_ERR_SHAPE,
                            "dataset: labels must be class indices (integers [S]) or targets "
                            "(float32 [S][k]), not %s of %zu dimensions",
                            m2pt_dtype_name(a->dtype), a->ndim);
  if (a->shape[0] != ds->samples)
    return m2pt_fail_thread(M2PT_ERR_SHAPE, "dataset: %zu labels for %zu samples of %s",
                            a->shape[0], ds->samples, kind_names[ds->kind]);
  ds->label_width = a->ndim == 2 ? a->shape[1] : 1;
  if (ds->label_width == 0)
    return m2pt_fail_thread(M2PT_ERR_SHAPE, "dataset: labels of width 0");
  if (!classes) {
    ds->label_kind = M2PT_LABELS_TARGETS;
    const float *v = a->data;
    for (size_t i = 0; i < a->numel; ++i)
      if (!isfinite(v[i]))
        return m2pt_fail_thread(M2PT_ERR_INVALID_ARGUMENT,
                                "dataset: target %g of sample %zu is not finite", (double)v[i],
                                i / ds->label_width);
    ds->targets = malloc(a->numel * sizeof *ds->targets);
    if (ds->targets == NULL)
      return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "dataset: no memory for the labels");
    memcpy(ds->targets, v, a->numel * sizeof *ds->targets);
    return M2PT_OK;
  }
  ds->label_kind = M2PT_LABELS_CLASSES;
  ds->classes = malloc(a->numel * sizeof *ds->classes);
  if (ds->classes == NULL)
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "dataset: no memory for the labels");
  for (size_t i = 0; i < a->numel; ++i) {
    ds->classes[i] = int_at(a, i);
    if (ds->classes[i] < 0)
      return m2pt_fail_thread(M2PT_ERR_INVALID_ARGUMENT,
                              "dataset: label %lld of sample %zu is negative",
                              (long long)ds->classes[i], i);
    if (ds->classes[i] > ds->max_class)
      ds->max_class = ds->classes[i];
  }
  return M2PT_OK;
}

m2pt_status m2pt_dataset_create(m2pt_data_kind kind, const m2pt_npy_array *data,
                                const m2pt_npy_array *mask, const m2pt_npy_array *labels,
                                m2pt_dataset **out)
{
  M2PT_REQUIRE_THREAD(data != NULL && labels != NULL && out != NULL && data->data != NULL &&
                          labels->data != NULL && (mask == NULL || mask->data != NULL),
                      "m2pt_dataset_create: NULL argument");
  M2PT_REQUIRE_THREAD(kind == M2PT_DATA_HIDDEN || kind == M2PT_DATA_IDS ||
                          kind == M2PT_DATA_PIXELS,
                      "m2pt_dataset_create: unknown data kind %d", (int)kind);
  m2pt_dataset *ds = calloc(1, sizeof *ds);
  if (ds == NULL)
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY, "m2pt_dataset_create: no memory");
  ds->kind = kind;
  ds->max_class = -1;
  m2pt_status s = check_data(kind, data, ds);
  if (s == M2PT_OK && mask != NULL)
    s = check_mask(mask, ds);
  if (s == M2PT_OK)
    s = check_labels(labels, ds);
  if (s != M2PT_OK) {
    m2pt_dataset_destroy(ds);
    return s;
  }
  *out = ds;
  return M2PT_OK;
}

/* Reads one file, naming it in the message on failure. */
static m2pt_status read_named(const char *what, const char *path, m2pt_npy_array *a)
{
  const m2pt_status s = m2pt_npy_read_any(path, a);
  if (s != M2PT_OK) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", m2pt_last_error(NULL));
    return m2pt_fail_thread(s, "dataset: %s %s: %s", what, path, msg);
  }
  return M2PT_OK;
}

m2pt_status m2pt_dataset_load(m2pt_data_kind kind, const char *data_path, const char *mask_path,
                              const char *labels_path, m2pt_dataset **out)
{
  M2PT_REQUIRE_THREAD(data_path != NULL && labels_path != NULL && out != NULL,
                      "m2pt_dataset_load: NULL argument");
  M2PT_REQUIRE_THREAD(kind == M2PT_DATA_HIDDEN || kind == M2PT_DATA_IDS ||
                          kind == M2PT_DATA_PIXELS,
                      "m2pt_dataset_load: unknown data kind %d", (int)kind);
  m2pt_npy_array data = {0}, mask = {0}, labels = {0};
  m2pt_status s = read_named(kind_names[kind], data_path, &data);
  if (s == M2PT_OK && mask_path != NULL)
    s = read_named("attention mask", mask_path, &mask);
  if (s == M2PT_OK)
    s = read_named("labels", labels_path, &labels);
  if (s == M2PT_OK) {
    s = m2pt_dataset_create(kind, &data, mask_path != NULL ? &mask : NULL, &labels, out);
    if (s != M2PT_OK) {
      char msg[1024];
      snprintf(msg, sizeof msg, "%s", m2pt_last_error(NULL));
      s = m2pt_fail_thread(s, "%s (data %s, labels %s)", msg, data_path, labels_path);
    }
  }
  m2pt_free(data.data);
  m2pt_free(mask.data);
  m2pt_free(labels.data);
  return s;
}

m2pt_status m2pt_dataset_get_info(const m2pt_dataset *ds, m2pt_dataset_info *info)
{
  M2PT_REQUIRE_THREAD(ds != NULL && info != NULL, "m2pt_dataset_get_info: NULL argument");
  memset(info, 0, sizeof *info);
  info->kind = ds->kind;
  info->samples = ds->samples;
  info->ndim = ds->ndim;
  memcpy(info->shape, ds->shape, sizeof info->shape);
  info->has_mask = ds->mask != NULL;
  info->mask_width = ds->mask_width;
  info->labels = ds->label_kind;
  info->label_width = ds->label_width;
  info->max_class = ds->max_class;
  return M2PT_OK;
}

m2pt_status m2pt_dataset_check_classes(const m2pt_dataset *ds, size_t classes)
{
  static const char fn[] = "m2pt_dataset_check_classes";
  M2PT_REQUIRE_THREAD(ds != NULL, "%s: NULL argument", fn);
  M2PT_REQUIRE_THREAD(classes > 0, "%s: 0 classes", fn);
  M2PT_REQUIRE_THREAD(ds->label_kind == M2PT_LABELS_CLASSES,
                      "%s: the labels are float32 targets, not class indices", fn);
  for (size_t i = 0; i < ds->samples; ++i)
    M2PT_REQUIRE_THREAD((uint64_t)ds->classes[i] < (uint64_t)classes,
                        "label %lld of sample %zu is out of range: the model has %zu classes "
                        "(0 … %zu)",
                        (long long)ds->classes[i], i, classes, classes - 1);
  return M2PT_OK;
}

/* Grows one batch buffer to n elements of `size` bytes. */
static int grow(void **p, size_t n, size_t size)
{
  size_t bytes;
  if (!m2pt_mul_size(n, size, &bytes))
    return 0;
  void *q = realloc(*p, bytes);
  if (q == NULL)
    return 0;
  *p = q;
  return 1;
}

static m2pt_status reserve(m2pt_dataset *ds, size_t rows)
{
  if (rows <= ds->capacity)
    return M2PT_OK;
  size_t n;
  int ok = m2pt_mul_size(rows, ds->row, &n);
  if (ok && ds->x != NULL)
    ok = grow((void **)&ds->bx, n, sizeof *ds->bx);
  if (ok && ds->ids != NULL)
    ok = grow((void **)&ds->bids, n, sizeof *ds->bids);
  if (ok && ds->mask != NULL)
    ok = m2pt_mul_size(rows, ds->mask_width, &n) &&
         grow((void **)&ds->bmask, n, sizeof *ds->bmask);
  if (ok && ds->classes != NULL)
    ok = grow((void **)&ds->bclasses, rows, sizeof *ds->bclasses);
  if (ok && ds->targets != NULL)
    ok = m2pt_mul_size(rows, ds->label_width, &n) &&
         grow((void **)&ds->btargets, n, sizeof *ds->btargets);
  if (!ok)
    return m2pt_fail_thread(M2PT_ERR_OUT_OF_MEMORY,
                            "m2pt_dataset_batch: no memory for a batch of %zu", rows);
  ds->capacity = rows;
  return M2PT_OK;
}

m2pt_status m2pt_dataset_batch(m2pt_dataset *ds, const size_t *indices, size_t count,
                               m2pt_batch *batch)
{
  static const char fn[] = "m2pt_dataset_batch";
  M2PT_REQUIRE_THREAD(ds != NULL && indices != NULL && batch != NULL, "%s: NULL argument", fn);
  M2PT_REQUIRE_THREAD(count > 0, "%s: an empty batch", fn);
  for (size_t i = 0; i < count; ++i)
    M2PT_REQUIRE_THREAD(indices[i] < ds->samples, "%s: index %zu is %zu, past the %zu samples",
                        fn, i, indices[i], ds->samples);
  M2PT_TRY(reserve(ds, count));
  for (size_t i = 0; i < count; ++i) {
    const size_t s = indices[i];
    if (ds->x != NULL)
      memcpy(ds->bx + i * ds->row, ds->x + s * ds->row, ds->row * sizeof *ds->bx);
    if (ds->ids != NULL)
      memcpy(ds->bids + i * ds->row, ds->ids + s * ds->row, ds->row * sizeof *ds->bids);
    if (ds->mask != NULL)
      memcpy(ds->bmask + i * ds->mask_width, ds->mask + s * ds->mask_width,
             ds->mask_width * sizeof *ds->bmask);
    if (ds->classes != NULL)
      ds->bclasses[i] = ds->classes[s];
    if (ds->targets != NULL)
      memcpy(ds->btargets + i * ds->label_width, ds->targets + s * ds->label_width,
             ds->label_width * sizeof *ds->btargets);
  }
  memset(batch, 0, sizeof *batch);
  batch->size = count;
  memcpy(batch->x_shape, ds->shape, sizeof batch->x_shape);
  batch->x_shape[0] = count;
  if (ds->x != NULL)
    batch->x = ds->bx;
  if (ds->ids != NULL)
    batch->ids = (m2pt_host_matrix){ds->bids, M2PT_DTYPE_I64, count, ds->row};
  if (ds->mask != NULL)
    batch->mask = (m2pt_host_matrix){ds->bmask, M2PT_DTYPE_I64, count, ds->mask_width};
  if (ds->classes != NULL)
    batch->labels = (m2pt_host_matrix){ds->bclasses, M2PT_DTYPE_I64, count, 1};
  else
    batch->labels = (m2pt_host_matrix){ds->btargets, M2PT_DTYPE_F32, count, ds->label_width};
  return M2PT_OK;
}
