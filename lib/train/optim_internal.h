/* The optimizer's insides, shared by its steps (optim.c) and its state
 * files (optim_state.c). */
#ifndef M2PT_TRAIN_OPTIM_INTERNAL_H
#define M2PT_TRAIN_OPTIM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "m2pt/optim.h"

typedef struct optim_group {
  float lr, wd;
} optim_group;

typedef struct optim_param {
  size_t group;
  m2pt_tensor *param;
  const m2pt_tensor *grad;
  m2pt_tensor *state[2]; /* SGD: momentum buffer (or none); AdamW: m, v */
  uint64_t step;
} optim_param;

struct m2pt_optimizer {
  m2pt_context *ctx;
  m2pt_optimizer_options opts;
  optim_group *groups;
  size_t ngroups, cap_groups;
  optim_param *params;
  size_t nparams, cap_params;
};

/* How many state tensors each parameter has: AdamW 2, SGD with momentum 1,
 * plain SGD 0. */
static inline size_t m2pt_optim_nstate(const m2pt_optimizer *opt)
{
  return opt->opts.kind == M2PT_OPTIMIZER_ADAMW ? 2 : opt->opts.momentum > 0.0f ? 1 : 0;
}

#endif
