/* m2pt-train: fine-tunes an M2PT model (issue 13), a thin tool over the
 * library's trainer (m2pt/trainer.h): builds the pathway from two
 * checkpoints, trains on .npy data, logs every step as JSON lines and
 * writes the trained (or merged) checkpoint. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "train_args.h"

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One JSON object per optimizer step (train_args.h). Numbers as %.9g:
 * a float's value exactly, a double's to 9 digits. */
static void log_step(FILE *f, const m2pt_train_record *r)
{
  fprintf(f, "{\"step\": %zu, \"epoch\": %.9g, \"loss\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, "
             "\"scales\": {",
          r->step, r->epoch, r->loss, r->lr, r->grad_norm);
  for (size_t i = 0; i < r->scales; ++i)
    fprintf(f, "%s\"%s\": %.9g", i ? ", " : "", r->scale_names[i], (double)r->scale_values[i]);
  fputs("}}\n", f);
  fflush(f);
}

/* "[#####.....] step 3/10 loss 0.6 ETA 12 s" on a terminal (stderr). */
static void progress(const m2pt_train_record *r, size_t steps, double start)
{
  const int width = 30, filled = (int)((double)width * (double)r->step / (double)steps);
  const double eta = (now() - start) / (double)r->step * (double)(steps - r->step);
  fprintf(stderr, "\r[%.*s%.*s] step %zu/%zu loss %.4f ETA %.0f s  ", filled,
          "##############################", width - filled, "..............................",
          r->step, steps, r->loss, eta);
  if (r->step == steps)
    fputc('\n', stderr);
}

/* An evaluation line (and, with no log, nothing). */
static int evaluate(m2pt_context *ctx, m2pt_trainer *t, m2pt_dataset *val, FILE *log,
                    size_t step, double epoch)
{
  double loss, acc;
  const m2pt_status s = m2pt_trainer_evaluate(t, val, &loss, &acc);
  if (s != M2PT_OK)
    return tool_fail(ctx, s, "evaluating");
  if (log) {
    fprintf(log, "{\"step\": %zu, \"epoch\": %.9g, \"val_loss\": %.9g, \"val_accuracy\": ", step,
            epoch, loss);
    if (isnan(acc))
      fputs("null}\n", log);
    else
      fprintf(log, "%.9g}\n", acc);
    fflush(log);
  }
  return 0;
}

static int load_data(const train_data_args *d, m2pt_dataset **out)
{
  const m2pt_status s = m2pt_dataset_load(d->kind, d->data, d->mask, d->labels, out);
  return s == M2PT_OK ? 0 : tool_fail(NULL, s, "reading the data");
}

static int train(const train_args *a)
{
  m2pt_context *ctx = NULL;
  m2pt_model *model = NULL;
  m2pt_dataset *data = NULL, *val = NULL;
  m2pt_trainer *trainer = NULL;
  FILE *log = NULL;
  int rc = TOOL_EXIT_FAILURE;
  m2pt_status s;
  if (tool_context(a->tool.device, 0, &ctx))
    goto done;
  if (load_data(&a->train, &data) || (a->val.data && load_data(&a->val, &val)))
    goto done;
  tool_step("data");
  /* A resumed run's model is the state's checkpoint: its pathways and head
   * are in the file. */
  char resumed[4096];
  if (a->resume && (s = m2pt_trainer_state_model(a->resume, resumed, sizeof resumed)) != M2PT_OK) {
    tool_fail(NULL, s, "reading the state");
    goto done;
  }
  if ((s = m2pt_model_load(ctx, a->resume ? resumed : a->model, &a->tool.model, &model)) !=
      M2PT_OK) {
    tool_fail(ctx, s, "loading the model");
    goto done;
  }
  if (a->aux && !a->resume && tool_add_pathways(ctx, model, a->aux, &a->tool))
    goto done;
  if (a->num_classes) {
    size_t ndim, shape[3];
    if (m2pt_model_output_shape(model, M2PT_OUTPUT_LOGITS, 1, 1, &ndim, shape) == M2PT_OK) {
      if (shape[1] != a->num_classes) {
        tool_error("--num-classes %zu: the model's head has %zu outputs", a->num_classes,
                   shape[1]);
        goto done;
      }
    } else if ((s = m2pt_model_create_head(model, a->num_classes, a->seed)) != M2PT_OK) {
      tool_fail(ctx, s, "creating the head");
      goto done;
    }
  }
  tool_step("model");
  m2pt_trainer_options o = m2pt_trainer_options_default();
  o.pass = a->pass;
  o.optimizer = a->optimizer;
  o.freeze = a->freeze;
  o.batch = a->batch;
  o.accum = a->accum;
  o.epochs = a->epochs;
  o.steps = a->steps;
  o.schedule = a->schedule;
  o.lr = a->lr;
  o.min_lr = a->min_lr;
  o.warmup_steps = a->warmup_steps;
  o.warmup_epochs = a->warmup_epochs;
  o.weight_decay = a->weight_decay;
  o.layer_decay = a->layer_decay;
  o.scale_lr = a->scale_lr;
  o.clip_grad = a->clip_grad;
  o.shuffle = a->shuffle;
  o.seed = a->seed;
  if ((s = m2pt_trainer_create(model, data, &o, &trainer)) != M2PT_OK) {
    tool_fail(ctx, s, "setting up the training");
    goto done;
  }
  if (a->resume && (s = m2pt_trainer_load_state(trainer, a->resume)) != M2PT_OK) {
    tool_fail(ctx, s, "resuming");
    goto done;
  }
  char state[4096];
  snprintf(state, sizeof state, "%s.state", a->out);
  if (a->log) {
    log = strcmp(a->log, "-") ? fopen(a->log, "w") : stdout;
    if (!log) {
      tool_error("--log %s: cannot open for writing", a->log);
      goto done;
    }
  }
  m2pt_train_plan plan;
  m2pt_trainer_get_plan(trainer, &plan);
  const int bar = isatty(STDERR_FILENO) && !(log == stdout && isatty(STDOUT_FILENO));
  const double start = now();
  /* Evaluations: before the first step, and after each step that ends an epoch. */
  if (val && m2pt_trainer_steps_done(trainer) == 0 && evaluate(ctx, trainer, val, log, 0, 0.0))
    goto done;
  while (m2pt_trainer_steps_done(trainer) < plan.steps) {
    m2pt_train_record r;
    if ((s = m2pt_trainer_step(trainer, &r)) != M2PT_OK) {
      if (bar)
        fputc('\n', stderr);
      tool_fail(ctx, s, "training");
      /* The trainer is as after the last good step: keep that state. */
      if (a->save_every && m2pt_trainer_steps_done(trainer) > 0 &&
          (s = m2pt_trainer_save_state(trainer, state)) == M2PT_OK)
        tool_error("the state after step %zu is in %s", m2pt_trainer_steps_done(trainer), state);
      else if (a->save_every && m2pt_trainer_steps_done(trainer) > 0)
        tool_fail(ctx, s, "saving the state");
      goto done;
    }
    if (log)
      log_step(log, &r);
    if (bar)
      progress(&r, plan.steps, start);
    const size_t k = plan.accum, m = plan.iterations_per_epoch;
    if (val && (r.step * k / m > (r.step - 1) * k / m || r.step == plan.steps) &&
        evaluate(ctx, trainer, val, log, r.step, (double)(r.step * k) / (double)m))
      goto done;
    if (a->save_every && r.step % a->save_every == 0 && r.step < plan.steps &&
        (s = m2pt_trainer_save_state(trainer, state)) != M2PT_OK) {
      tool_fail(ctx, s, "saving the state");
      goto done;
    }
  }
  tool_step("training");
  m2pt_trainer_destroy(trainer);
  trainer = NULL;
  if (a->merge && (s = m2pt_model_merge(model)) != M2PT_OK) {
    tool_fail(ctx, s, "merging");
    goto done;
  }
  if ((s = m2pt_model_save(model, a->out)) != M2PT_OK) {
    tool_fail(ctx, s, "writing the checkpoint");
    goto done;
  }
  rc = 0;
done:
  if (log && log != stdout && fclose(log) != 0 && rc == 0) {
    tool_error("--log %s: write failed", a->log);
    rc = TOOL_EXIT_FAILURE;
  }
  m2pt_trainer_destroy(trainer);
  m2pt_model_destroy(model);
  m2pt_dataset_destroy(data);
  m2pt_dataset_destroy(val);
  m2pt_context_destroy(ctx);
  return rc;
}

int main(int argc, char **argv)
{
  tool_name = "m2pt-train";
  train_args a;
  const int parsed = train_args_parse(argc, argv, &a);
  if (parsed < 0)
    return 0;
  if (parsed)
    return parsed;
  tool_signals();
  return train(&a);
}
