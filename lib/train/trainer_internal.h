/* The trainer's state, shared by trainer.c (the loop) and trainer_state.c
 * (its state files). */
#ifndef M2PT_TRAIN_TRAINER_INTERNAL_H
#define M2PT_TRAIN_TRAINER_INTERNAL_H

#include "m2pt/trainer.h"

struct m2pt_trainer {
  m2pt_context *ctx;
  m2pt_model *model;
  m2pt_dataset *data;
  m2pt_trainer_options o;
  m2pt_train_plan plan;
  m2pt_lr_schedule schedule;
  m2pt_model_grads *grads;
  m2pt_model_params *params;
  m2pt_optimizer *opt;
  size_t ngroups;
  double *group_scale; /* each group's rate / the schedule's */
  char (*group_names)[48];
  size_t done;
  size_t *order;       /* the order of epoch order_epoch */
  size_t order_epoch;
  int have_order;
  m2pt_tensor *x;      /* HIDDEN, PIXELS: the micro-batch on the device */
  m2pt_tensor **glist; /* every gradient, for norms and scaling */
  size_t ngrads;
  size_t nscales;
  size_t *scale_index; /* the params that are λ */
  char **scale_names;
  float *scale_values;
};

#endif
