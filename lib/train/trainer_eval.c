/* Evaluation on a validation set (include/m2pt/trainer.h). */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "trainer_internal.h"

/* Cross-entropy (natural log, no smoothing) and argmax hits of one row. */
static double row_ce(const float *z, size_t classes, int64_t label, int *hit)
{
  double max = z[0];
  size_t arg = 0;
  for (size_t c = 1; c < classes; ++c)
    if (z[c] > max) {
      max = z[c];
      arg = c;
    }
  double sum = 0.0;
  for (size_t c = 0; c < classes; ++c)
    sum += exp((double)z[c] - max);
  *hit = (int64_t)arg == label;
  return log(sum) + max - (double)z[label];
}

m2pt_status m2pt_trainer_evaluate(m2pt_trainer *t, m2pt_dataset *val, double *loss,
                                  double *accuracy)
{
  M2PT_REQUIRE(NULL, t && val && loss && accuracy, "m2pt_trainer_evaluate: NULL argument");
  m2pt_context *ctx = t->ctx;
  m2pt_dataset_info info;
  M2PT_TRY(m2pt_dataset_get_info(val, &info));
  const int ce = t->o.pass.loss == M2PT_LOSS_CROSS_ENTROPY;
  M2PT_REQUIRE(ctx, ce == (info.labels == M2PT_LABELS_CLASSES),
               "m2pt_trainer_evaluate: the validation labels do not suit the loss");
  size_t ndim, shape[3];
  const m2pt_output_kind kind = ce || m2pt_model_output_shape(t->model, M2PT_OUTPUT_LOGITS, 1,
                                                              1, &ndim, shape) == M2PT_OK
                                    ? M2PT_OUTPUT_LOGITS
                                    : M2PT_OUTPUT_POOLED;
  M2PT_TRY(m2pt_model_output_shape(t->model, kind, 1, 1, &ndim, shape));
  const size_t width = shape[1];
  if (ce && m2pt_dataset_check_classes(val, width) != M2PT_OK)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_ARGUMENT, "validation %s", m2pt_last_error(NULL));
  M2PT_REQUIRE(ctx, ce || info.label_width == width,
               "m2pt_trainer_evaluate: targets of width %zu for outputs of %zu",
               info.label_width, width);
  const size_t bmax = t->o.batch < info.samples ? t->o.batch : info.samples;
  size_t *idx = malloc(bmax * sizeof *idx);
  float *out = malloc(bmax * width * sizeof *out);
  m2pt_tensor *y = NULL, *x = NULL;
  m2pt_status s = idx && out ? M2PT_OK
                             : m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  m2pt_forward_options fo = m2pt_forward_options_default();
  fo.output = kind;
  fo.pool = t->o.pass.pool;
  double sum = 0.0;
  size_t hits = 0;
  for (size_t first = 0; s == M2PT_OK && first < info.samples; first += bmax) {
    const size_t n = info.samples - first < bmax ? info.samples - first : bmax;
    for (size_t i = 0; i < n; ++i)
      idx[i] = first + i;
    m2pt_batch b;
    if (m2pt_dataset_batch(val, idx, n, &b) != M2PT_OK) {
      s = m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "%s", m2pt_last_error(NULL));
      break;
    }
    const size_t yshape[2] = {n, width};
    m2pt_tensor_destroy(y);
    y = NULL;
    s = m2pt_tensor_create(ctx, 2, yshape, &y);
    const m2pt_host_matrix *mask = b.mask.data ? &b.mask : NULL;
    if (s == M2PT_OK && b.ids.data)
      s = m2pt_model_forward_ids(t->model, &b.ids, NULL, mask, &fo, y);
    else if (s == M2PT_OK) {
      m2pt_tensor_destroy(x);
      x = NULL;
      const int pixels = info.kind == M2PT_DATA_PIXELS;
      s = m2pt_tensor_create(ctx, pixels ? 4 : 3, b.x_shape, &x);
      if (s == M2PT_OK)
        s = m2pt_tensor_write(x, b.x, m2pt_tensor_numel(x));
      if (s == M2PT_OK)
        s = pixels ? m2pt_model_forward_pixels(t->model, x, mask, &fo, y)
                   : m2pt_model_forward_hidden(t->model, x, mask, &fo, y);
    }
    if (s == M2PT_OK)
      s = m2pt_tensor_read(y, out, n * width);
    for (size_t i = 0; s == M2PT_OK && i < n; ++i) {
      if (ce) {
        int hit;
        sum += row_ce(out + i * width, width, ((const int64_t *)b.labels.data)[i], &hit);
        hits += (size_t)hit;
      } else {
        const float *tg = (const float *)b.labels.data + i * width;
        for (size_t c = 0; c < width; ++c)
          sum += ((double)out[i * width + c] - tg[c]) * ((double)out[i * width + c] - tg[c]) /
                 (double)width;
      }
    }
  }
  m2pt_tensor_destroy(x);
  m2pt_tensor_destroy(y);
  free(idx);
  free(out);
  if (s != M2PT_OK)
    return s;
  *loss = sum / (double)info.samples;
  *accuracy = ce ? (double)hits / (double)info.samples : NAN;
  return M2PT_OK;
}
