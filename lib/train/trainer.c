/* The training loop (include/m2pt/trainer.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "nn/model_internal.h"
#include "m2pt/trainer.h"
#include "trainer_internal.h"


void m2pt_trainer_destroy(m2pt_trainer *t)
{
  if (!t)
    return;
  m2pt_optimizer_destroy(t->opt);
  m2pt_model_params_destroy(t->params);
  m2pt_model_grads_destroy(t->grads);
  m2pt_tensor_destroy(t->x);
  for (size_t i = 0; i < t->nscales; ++i)
    free(t->scale_names[i]);
  free(t->scale_names);
  free(t->scale_values);
  free(t->scale_index);
  free(t->group_scale);
  free(t->group_names);
  free(t->order);
  free(t->glist);
  free(t);
}

static int ends_with(const char *s, const char *suffix)
{
  const size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

static const char scale_suffix[] = ".cross_modal_scale";

static m2pt_status check_options(m2pt_context *ctx, const m2pt_trainer_options *o)
{
  static const char fn[] = "m2pt_trainer_create";
  M2PT_REQUIRE(ctx, o->struct_size >= sizeof(m2pt_trainer_options),
               "%s: options.struct_size is %zu: start from m2pt_trainer_options_default()", fn,
               o->struct_size);
  M2PT_REQUIRE(ctx, isfinite(o->lr) && o->lr >= 0.0, "%s: lr %g is not finite and >= 0", fn,
               o->lr);
  M2PT_REQUIRE(ctx, isfinite(o->weight_decay) && o->weight_decay >= 0.0,
               "%s: weight_decay %g is not finite and >= 0", fn, o->weight_decay);
  M2PT_REQUIRE(ctx, isfinite(o->clip_grad) && o->clip_grad >= 0.0,
               "%s: clip_grad %g is not finite and >= 0", fn, o->clip_grad);
  M2PT_REQUIRE(ctx, isfinite(o->scale_lr), "%s: scale_lr %g is not finite", fn, o->scale_lr);
  M2PT_REQUIRE(ctx, o->warmup_steps == 0 || o->warmup_epochs == 0.0,
               "%s: give warmup_steps or warmup_epochs, not both", fn);
  M2PT_REQUIRE(ctx, o->schedule == M2PT_LR_COSINE || (o->warmup_steps == 0 &&
                                                      o->warmup_epochs == 0.0),
               "%s: a warm-up needs the cosine schedule", fn);
  return M2PT_OK;
}

/* Checks the dataset against the loss and the model's head. */
static m2pt_status check_data(m2pt_trainer *t)
{
  m2pt_dataset_info info;
  M2PT_TRY(m2pt_dataset_get_info(t->data, &info));
  const int ce = t->o.pass.loss == M2PT_LOSS_CROSS_ENTROPY;
  if (ce != (info.labels == M2PT_LABELS_CLASSES))
    return m2pt_fail(t->ctx, M2PT_ERR_INVALID_ARGUMENT,
                     "%s needs %s labels; these are %s",
                     ce ? "cross-entropy" : "MSE", ce ? "integer class" : "float32 target",
                     info.labels == M2PT_LABELS_CLASSES ? "class indices" : "float32 targets");
  if (!ce)
    return M2PT_OK;
  size_t ndim, shape[3];
  M2PT_TRY(m2pt_model_output_shape(t->model, M2PT_OUTPUT_LOGITS, 1, 1, &ndim, shape));
  if (m2pt_dataset_check_classes(t->data, shape[1]) != M2PT_OK)
    return m2pt_fail(t->ctx, M2PT_ERR_INVALID_ARGUMENT, "%s", m2pt_last_error(NULL));
  return M2PT_OK;
}

/* MAE's param_groups_lrd over the trainable tensors: one optimizer group
 * per MAE group name (layer id and decay or not; "pathway_scales" with
 * scale_lr ≥ 0), its rate the schedule's times lr_scale. */
static m2pt_status make_groups(m2pt_trainer *t)
{
  m2pt_model_info info;
  M2PT_TRY(m2pt_model_get_info(t->model, &info));
  const size_t n = m2pt_model_grads_count(t->grads);
  t->group_scale = calloc(n + 1, sizeof *t->group_scale);
  t->group_names = calloc(n + 1, sizeof *t->group_names);
  t->glist = calloc(n + 1, sizeof *t->glist);
  if (!t->group_scale || !t->group_names || !t->glist)
    return m2pt_fail(t->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for groups");
  t->ngrads = n;
  for (size_t i = 0; i < n; ++i) {
    const char *name = m2pt_model_grads_name(t->grads, i);
    m2pt_tensor *g = m2pt_model_grads_tensor(t->grads, i);
    t->glist[i] = g;
    m2pt_param_group_info gi;
    m2pt_status s = m2pt_param_group_of(name, m2pt_tensor_ndim(g), info.depth,
                                        t->o.layer_decay, &gi);
    if (s == M2PT_OK && t->o.scale_lr >= 0.0)
      s = m2pt_param_group_scale_lr(&gi, t->o.lr, t->o.scale_lr);
    if (s != M2PT_OK)
      return m2pt_fail(t->ctx, s, "parameter groups: %s", m2pt_last_error(NULL));
    size_t k = 0;
    while (k < t->ngroups && strcmp(t->group_names[k], gi.group) != 0)
      ++k;
    if (k == t->ngroups) {
      size_t index;
      M2PT_TRY(m2pt_optimizer_add_group(t->opt, (float)(t->o.lr * gi.lr_scale),
                                        gi.no_decay ? 0.0f : (float)t->o.weight_decay, &index));
      memcpy(t->group_names[k], gi.group, sizeof gi.group);
      t->group_scale[k] = gi.lr_scale;
      t->ngroups++;
    }
    M2PT_TRY(m2pt_optimizer_add_param(t->opt, k, m2pt_model_params_tensor(t->params, i), g));
  }
  return M2PT_OK;
}

/* The λ the record reports: every trained cross_modal_scale. */
static m2pt_status find_scales(m2pt_trainer *t)
{
  const size_t n = m2pt_model_grads_count(t->grads);
  t->scale_index = calloc(n + 1, sizeof *t->scale_index);
  t->scale_names = calloc(n + 1, sizeof *t->scale_names);
  t->scale_values = calloc(n + 1, sizeof *t->scale_values);
  if (!t->scale_index || !t->scale_names || !t->scale_values)
    return m2pt_fail(t->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  for (size_t i = 0; i < n; ++i) {
    const char *name = m2pt_model_grads_name(t->grads, i);
    if (!ends_with(name, scale_suffix))
      continue;
    const size_t len = strlen(name) - strlen(scale_suffix);
    char *layer = malloc(len + 1);
    if (!layer)
      return m2pt_fail(t->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
    memcpy(layer, name, len);
    layer[len] = '\0';
    t->scale_names[t->nscales] = layer;
    t->scale_index[t->nscales++] = i;
  }
  return M2PT_OK;
}

static m2pt_status make_schedule(m2pt_trainer *t)
{
  const m2pt_trainer_options *o = &t->o;
  const double m = (double)t->plan.iterations_per_epoch;
  t->schedule = (m2pt_lr_schedule){o->schedule, o->lr, o->min_lr,
                                   o->warmup_steps ? (double)o->warmup_steps *
                                                         (double)o->accum / m
                                                   : o->warmup_epochs,
                                   t->plan.epochs};
  double lr;
  if (m2pt_lr_schedule_at(&t->schedule, 0.0, &lr) != M2PT_OK)
    return m2pt_fail(t->ctx, M2PT_ERR_INVALID_ARGUMENT, "schedule: %s", m2pt_last_error(NULL));
  return M2PT_OK;
}

m2pt_status m2pt_trainer_create(m2pt_model *model, m2pt_dataset *data,
                                const m2pt_trainer_options *o, m2pt_trainer **out)
{
  M2PT_REQUIRE(NULL, model && data && o && out, "m2pt_trainer_create: NULL argument");
  m2pt_context *ctx = model->ctx;
  M2PT_TRY(check_options(ctx, o));
  m2pt_dataset_info info;
  M2PT_TRY(m2pt_dataset_get_info(data, &info));
  m2pt_train_plan plan;
  const m2pt_status ps =
      m2pt_train_plan_make(info.samples, o->batch, o->accum, o->epochs, o->steps, &plan);
  if (ps != M2PT_OK) /* the plan's message is on the thread; the context gets it too */
    return m2pt_fail(ctx, ps, "%s", m2pt_last_error(NULL));
  m2pt_trainer *t = calloc(1, sizeof *t);
  if (!t)
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for the trainer");
  t->ctx = ctx;
  t->model = model;
  t->data = data;
  t->o = *o;
  t->plan = plan;
  t->order = malloc(info.samples * sizeof *t->order);
  m2pt_status s = t->order ? M2PT_OK
                           : m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  if (s == M2PT_OK)
    s = make_schedule(t);
  if (s == M2PT_OK)
    s = check_data(t);
  if (s == M2PT_OK)
    s = m2pt_model_grads_create(model, o->freeze, &t->grads);
  if (s == M2PT_OK)
    s = m2pt_model_params_create(model, t->grads, &t->params);
  if (s == M2PT_OK)
    s = m2pt_optimizer_create(ctx, &o->optimizer, &t->opt);
  if (s == M2PT_OK)
    s = make_groups(t);
  if (s == M2PT_OK)
    s = find_scales(t);
  if (s != M2PT_OK) {
    m2pt_trainer_destroy(t);
    return s;
  }
  *out = t;
  return M2PT_OK;
}

m2pt_status m2pt_trainer_get_plan(const m2pt_trainer *t, m2pt_train_plan *plan)
{
  M2PT_REQUIRE(NULL, t && plan, "m2pt_trainer_get_plan: NULL argument");
  *plan = t->plan;
  return M2PT_OK;
}

size_t m2pt_trainer_steps_done(const m2pt_trainer *t)
{
  return t ? t->done : 0;
}

/* One micro-batch's loss and gradients (added to the gradients' contents
 * when accumulate). */
static m2pt_status micro_batch(m2pt_trainer *t, size_t j, int accumulate, size_t *count,
                               float *loss)
{
  size_t epoch, first;
  M2PT_TRY(m2pt_train_plan_micro_batch(&t->plan, j, &epoch, &first, count));
  if (!t->have_order || t->order_epoch != epoch) {
    M2PT_TRY(m2pt_batch_order(t->plan.samples, t->o.shuffle, t->o.seed, epoch, t->order));
    t->order_epoch = epoch;
    t->have_order = 1;
  }
  m2pt_batch b;
  if (m2pt_dataset_batch(t->data, t->order + first, *count, &b) != M2PT_OK)
    return m2pt_fail(t->ctx, M2PT_ERR_OUT_OF_MEMORY, "%s", m2pt_last_error(NULL));
  m2pt_train_options pass = t->o.pass;
  pass.accumulate = accumulate;
  pass.step = (uint32_t)j;
  const m2pt_host_matrix *mask = b.mask.data ? &b.mask : NULL;
  if (b.ids.data)
    return m2pt_model_grad_ids(t->model, &b.ids, NULL, mask, &b.labels, &pass, t->grads, loss);
  size_t ndim = 0;
  while (ndim < 4 && b.x_shape[ndim])
    ++ndim;
  if (!t->x || m2pt_tensor_dim(t->x, 0) != b.size) {
    m2pt_tensor_destroy(t->x);
    t->x = NULL;
    M2PT_TRY(m2pt_tensor_create(t->ctx, ndim, b.x_shape, &t->x));
  }
  M2PT_TRY(m2pt_tensor_write(t->x, b.x, m2pt_tensor_numel(t->x)));
  if (ndim == 4)
    return m2pt_model_grad_pixels(t->model, t->x, mask, &b.labels, &pass, t->grads, loss);
  return m2pt_model_grad_hidden(t->model, t->x, mask, &b.labels, &pass, t->grads, loss);
}

m2pt_status m2pt_trainer_step(m2pt_trainer *t, m2pt_train_record *rec)
{
  M2PT_REQUIRE(NULL, t && rec, "m2pt_trainer_step: NULL argument");
  M2PT_REQUIRE(t->ctx, t->done < t->plan.steps, "m2pt_trainer_step: all %zu steps are done",
               t->plan.steps);
  const size_t step = t->done + 1;
  double epoch, lr;
  M2PT_TRY(m2pt_train_plan_epoch_of_step(&t->plan, t->done, &epoch));
  if (m2pt_lr_schedule_at(&t->schedule, epoch, &lr) != M2PT_OK)
    return m2pt_fail(t->ctx, M2PT_ERR_INVALID_ARGUMENT, "%s", m2pt_last_error(NULL));
  const size_t first = t->done * t->plan.accum;
  const size_t end = first + t->plan.accum < t->plan.micro_batches ? first + t->plan.accum
                                                                    : t->plan.micro_batches;
  /* Micro-batch k's mean gradient must weigh B_k / B. Before adding it the
   * sum so far is scaled by B_{k−1} / B_k and at the end by B_last / B: each
   * term's factors multiply to B_k / B (all 1 but the last when sizes agree). */
  double loss_sum = 0.0;
  size_t samples = 0, prev = 0;
  for (size_t j = first; j < end; ++j) {
    size_t count;
    float loss;
    if (j > first) {
      /* the next micro-batch's size, before its pass */
      size_t e, f, c;
      M2PT_TRY(m2pt_train_plan_micro_batch(&t->plan, j, &e, &f, &c));
      if (c != prev)
        M2PT_TRY(m2pt_scale_grads(t->ctx, t->glist, t->ngrads, (float)prev / (float)c));
    }
    const m2pt_status s = micro_batch(t, j, j > first, &count, &loss);
    if (s != M2PT_OK) {
      char msg[2048];
      snprintf(msg, sizeof msg, "%s", m2pt_last_error(t->ctx));
      return m2pt_fail(t->ctx, s, "step %zu (micro-batch %zu): %s; the model is left as after "
                                  "step %zu", step, j, msg, t->done);
    }
    if (!isfinite(loss))
      return m2pt_fail(t->ctx, M2PT_ERR_NOT_FINITE,
                       "step %zu: the loss is %g; the model is left as after step %zu", step,
                       (double)loss, t->done);
    loss_sum += (double)loss * (double)count;
    samples += count;
    prev = count;
  }
  if (prev != samples)
    M2PT_TRY(m2pt_scale_grads(t->ctx, t->glist, t->ngrads, (float)prev / (float)samples));
  float norm = 0.0f;
  const m2pt_status cs = m2pt_clip_grad_norm(
      t->ctx, t->glist, t->ngrads, t->o.clip_grad > 0.0 ? (float)t->o.clip_grad : INFINITY,
      &norm);
  if (cs == M2PT_ERR_NOT_FINITE)
    return m2pt_fail(t->ctx, cs,
                     "step %zu: the gradient norm is %g; the model is left as after step %zu",
                     step, (double)norm, t->done);
  M2PT_TRY(cs);
  for (size_t g = 0; g < t->ngroups; ++g)
    M2PT_TRY(m2pt_optimizer_set_lr(t->opt, g, (float)(lr * t->group_scale[g])));
  M2PT_TRY(m2pt_optimizer_step(t->opt));
  M2PT_TRY(m2pt_model_params_sync(t->params));
  t->done = step;
  for (size_t i = 0; i < t->nscales; ++i)
    M2PT_TRY(m2pt_tensor_read(m2pt_model_params_tensor(t->params, t->scale_index[i]),
                              &t->scale_values[i], 1));
  rec->step = step;
  rec->epoch = epoch;
  rec->loss = loss_sum / (double)samples;
  rec->lr = lr;
  rec->grad_norm = norm;
  rec->scales = t->nscales;
  rec->scale_names = (const char *const *)t->scale_names;
  rec->scale_values = t->scale_values;
  return M2PT_OK;
}
