/* m2pt-train's command line (issue 13): every flag parsed into one struct
 * and checked as a whole (required flags, exclusive choices, values in
 * range, flags that only make sense with another) before any file is read.
 * Public API only. */
#ifndef M2PT_TRAIN_ARGS_H
#define M2PT_TRAIN_ARGS_H

#include <stddef.h>
#include <stdint.h>

#include <m2pt/m2pt.h>
#include <m2pt/model_grad.h>

#include "tool_util.h"

/* One data set: exactly one of --data, --data-ids, --data-pixels (or their
 * --val- forms), an optional --attention-mask, --labels. */
typedef struct train_data_args {
  m2pt_data_kind kind;
  const char *data, *mask, *labels;
} train_data_args;

typedef struct train_args {
  tool_options tool; /* --heads, --ln-eps, --naming, --prefix, --post-norm,
                        --no-final-norm, --scale, --layers, --aux-bias,
                        --device, --verbose */
  const char *model, *aux;
  train_data_args train, val; /* val.data NULL: no validation set */
  size_t num_classes;         /* --num-classes: 0 unless given */
  m2pt_train_options pass;    /* --pool, --loss, --label-smoothing, --dropout, --drop-path,
                                  --seed */
  double epochs;              /* --epochs, or 0 */
  size_t steps;               /* --steps, or 0 */
  size_t batch, accum;
  m2pt_optimizer_options optimizer; /* --optimizer, --betas, --eps, --momentum, --nesterov */
  float lr, min_lr, weight_decay, layer_decay;
  float scale_lr; /* --scale-lr, < 0 when not given: λ in its layer's group */
  m2pt_lr_schedule_kind schedule;
  size_t warmup_steps;  /* --warmup-steps */
  float warmup_epochs;  /* --warmup-epochs (one of the two, else 0) */
  float clip_grad;      /* 0: no clipping */
  unsigned freeze;      /* M2PT_FREEZE_* */
  uint64_t seed;
  int shuffle;          /* 0 with --no-shuffle */
  const char *log;      /* NULL: none; "-": stdout */
  size_t save_every;    /* 0: never */
  const char *resume, *out;
  int merge;
} train_args;

/* Parses argv[1 .. argc) into *a. Returns 0 when the command line is whole
 * and consistent; otherwise reports every problem it finds (tool_error) and
 * returns TOOL_EXIT_USAGE. "--help" prints the usage and returns −1. */
int train_args_parse(int argc, char **argv, train_args *a);

/* The usage text. */
extern const char train_usage[];

#endif
