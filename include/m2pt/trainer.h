/* The training loop (issue 13): a trainer over a model and a dataset that
 * takes optimizer steps as the M2PT paper fine-tunes (MAE's
 * main_finetune.py and engine_finetune.py): AdamW or SGD over MAE's
 * parameter groups (layer-wise decay, no weight decay for 1-D tensors, an
 * optional group of its own for every λ), the learning rate set every step
 * from a schedule at the fractional epoch, K micro-batches accumulated into
 * one step, gradient clipping by global norm, and a record of every step. */
#ifndef M2PT_TRAINER_H
#define M2PT_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "model_params.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Options of m2pt_trainer_create. Start from m2pt_trainer_options_default()
 * (struct_size as in m2pt_model_options) and set at least batch, lr and one
 * of epochs and steps. */
typedef struct m2pt_trainer_options {
  size_t struct_size;
  m2pt_train_options pass;          /* pool, loss, label smoothing, dropout and its
                                       seed (accumulate and step are the trainer's) */
  m2pt_optimizer_options optimizer; /* kind, momentum, Nesterov, betas, ε */
  unsigned freeze;                  /* M2PT_FREEZE_* */
  size_t batch, accum;              /* micro-batch B ≥ 1, micro-batches per step K ≥ 1 */
  double epochs;                    /* the run's length: epochs > 0, or */
  size_t steps;                     /* optimizer steps ≥ 1 (exactly one of the two) */
  m2pt_lr_schedule_kind schedule;
  double lr, min_lr;                /* base rate ≥ 0; cosine's final rate */
  size_t warmup_steps;              /* cosine: warm-up in steps, or */
  double warmup_epochs;             /* in epochs (at most one of the two non-zero) */
  double weight_decay;              /* for tensors of 2 or more dimensions */
  double layer_decay;               /* MAE's D in (0, 1]: 1 for none */
  double scale_lr;                  /* < 0: each λ in its layer's group; else every λ
                                       in one group of base rate scale_lr, following
                                       the schedule's shape, no weight decay */
  double clip_grad;                 /* > 0: clip the global gradient norm to it; 0: none */
  int shuffle;                      /* 0: samples in order; 1: a permutation per epoch */
  uint64_t seed;                    /* the permutation's (m2pt_batch_order) */
} m2pt_trainer_options;

/* Cross-entropy, AUTO pooling, AdamW with PyTorch's defaults, nothing
 * frozen, accum 1, a constant schedule, no decay, no clipping, shuffled
 * with seed 0; batch, lr, epochs and steps 0 (to be set). */
static inline m2pt_trainer_options m2pt_trainer_options_default(void)
{
  m2pt_trainer_options o = {sizeof(m2pt_trainer_options), m2pt_train_options_default(),
                            m2pt_adamw_options_default(), 0u, 0, 1, 0.0, 0,
                            M2PT_LR_CONSTANT, 0.0, 0.0, 0, 0.0, 0.0, 1.0, -1.0, 0.0, 1, 0};
  return o;
}

typedef struct m2pt_trainer m2pt_trainer;

/* Creates a trainer over `model` (which must outlive it and keep its
 * parameter set: no merge, no new pathway while it lives) and `data` (the
 * trainer gathers batches from it; it must outlive the trainer). The
 * gradients, parameter views, optimizer and its groups are made here.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, struct_size not set, an option
 * out of range, data of a kind or labels the loss does not take, a class
 * index ≥ the head's outputs), M2PT_ERR_SHAPE (a batch larger than the
 * data), M2PT_ERR_NOT_FOUND (cross-entropy without a head), and those of
 * m2pt_model_grads_create, m2pt_model_params_create, m2pt_optimizer_*.
 * Nothing is built on failure. */
M2PT_API m2pt_status m2pt_trainer_create(m2pt_model *model, m2pt_dataset *data,
                                         const m2pt_trainer_options *options,
                                         m2pt_trainer **out);

/* Frees the trainer (never the model or the data). Accepts NULL. */
M2PT_API void m2pt_trainer_destroy(m2pt_trainer *trainer);

/* The run's plan (m2pt_train_plan_make). Errors: M2PT_ERR_INVALID_ARGUMENT. */
M2PT_API m2pt_status m2pt_trainer_get_plan(const m2pt_trainer *trainer, m2pt_train_plan *plan);

/* Steps taken so far (0 … plan.steps). */
M2PT_API size_t m2pt_trainer_steps_done(const m2pt_trainer *trainer);

/* One step's record. Names and values are owned by the trainer and valid
 * until its next step or destruction. */
typedef struct m2pt_train_record {
  size_t step;        /* 1, 2, …: the steps done after this one */
  double epoch;       /* the fractional epoch the rate was taken at, t·K / M */
  double loss;        /* the mean loss over the step's samples, before the update */
  double lr;          /* the base group's rate (the schedule's value) */
  double grad_norm;   /* the global gradient norm before clipping */
  size_t scales;      /* trained pathways */
  const char *const *scale_names; /* their layers' checkpoint names ("blocks.0.attn.qkv") */
  const float *scale_values;      /* each λ after the step */
} m2pt_train_record;

/* Takes the next optimizer step: the rate of every group for the step, its
 * micro-batches' losses and gradients (summed with weights B_k / B, so the
 * step is the one big batch of all its B samples would give), the norm,
 * clipping, the update, and *record. A step whose loss or gradient norm is
 * not finite is not taken: the model and optimizer stay as they were after
 * the last good step and the message names the step.
 * Norm and clipping are m2pt_clip_grad_norm's, the B_k / B weights
 * m2pt_scale_grads' (only where micro-batch sizes differ).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL; every step done already; a loss
 * that is not finite, as the training pass reports it), M2PT_ERR_NOT_FINITE
 * (a gradient norm that is not finite), and those of the training pass and
 * the optimizer; each message starts with "step N". */
M2PT_API m2pt_status m2pt_trainer_step(m2pt_trainer *trainer, m2pt_train_record *record);

/* The model on a validation set, in order, in batches of the trainer's B
 * (inference forward: no dropout): *loss the mean cross-entropy (natural
 * log, no label smoothing: MAE's evaluate) or mean squared error over the
 * samples, *accuracy the fraction whose largest logit is the label (NaN
 * for MSE), through m2pt_model_forward_ids, _pixels or _hidden.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, labels that do not suit the
 * loss, a class past the head's), and the forward's errors. */
M2PT_API m2pt_status m2pt_trainer_evaluate(m2pt_trainer *trainer, m2pt_dataset *val,
                                           double *loss, double *accuracy);

/* ---- State: resuming a run -------------------------------------------------
 * A state is a directory: model-N.safetensors (m2pt_model_save: weights,
 * W_aux, λ, a created head), optimizer-N.safetensors (m2pt_optimizer_save,
 * keyed by the parameters' checkpoint names) for N steps done, and
 * state.json naming them with N and what the run must share to resume
 * (samples, batch, accum, micro-batches, shuffle, seed). The batch order
 * (m2pt_batch_order) and dropout's Philox stream are functions of the seed
 * and the step, so N is the whole RNG position. */

/* Writes the trainer's state into `dir` (made if missing): the two files
 * for the steps done, then state.json replaced atomically, then the files
 * of the state it named before removed. A process killed at any moment, or
 * a save that fails, leaves state.json naming a whole state (the previous
 * one). Errors: M2PT_ERR_INVALID_ARGUMENT (NULL), M2PT_ERR_IO,
 * M2PT_ERR_FORMAT (a state.json there that is not one), and those of
 * m2pt_model_save and m2pt_optimizer_save. */
M2PT_API m2pt_status m2pt_trainer_save_state(m2pt_trainer *trainer, const char *dir);

/* The path of the model checkpoint of the state in `dir` into buf (size
 * bytes): a resumed run loads its model from it (m2pt_model_load; no
 * pathway to add, they are in the file) before creating its trainer.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, size 0), M2PT_ERR_IO,
 * M2PT_ERR_FORMAT (no state there, a path that does not fit), with the
 * message on the calling thread. */
M2PT_API m2pt_status m2pt_trainer_state_model(const char *dir, char *buf, size_t size);

/* Continues the saved run: a new trainer, over the model loaded from
 * m2pt_trainer_state_model(dir) and the same data and options, takes the
 * optimizer's moments and step counts from the state and its step count;
 * its next steps then give the records and weights the uninterrupted run
 * gave. Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, a trainer that has taken
 * steps, a state of another run: the message gives both), M2PT_ERR_FORMAT,
 * M2PT_ERR_IO, and those of m2pt_optimizer_load; on failure the trainer is
 * as it was. */
M2PT_API m2pt_status m2pt_trainer_load_state(m2pt_trainer *trainer, const char *dir);

#ifdef __cplusplus
}
#endif

#endif
