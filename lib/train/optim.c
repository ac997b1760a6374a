/* SGD and AdamW on the device (include/m2pt/optim.h; kernels in
 * cl/optim.cl): the host keeps the groups, each parameter's state tensors
 * and step count, and computes each step's scalars (AdamW's bias
 * corrections) in double, as PyTorch's optimizers do in Python floats. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/context_impl.h"
#include "core/error.h"
#include "core/program.h"
#include "ops/tensor_checks.h"
#include "optim_internal.h"

/* Grows *items (of `size` bytes each) to hold one more; 0 or -1. */
static int grow(void **items, size_t *cap, size_t count, size_t size)
{
  if (count < *cap)
    return 0;
  const size_t want = *cap ? 2 * *cap : 8;
  void *p = realloc(*items, want * size);
  if (p == NULL)
    return -1;
  *items = p;
  *cap = want;
  return 0;
}

static int finite_nonneg(float x)
{
  return isfinite(x) && x >= 0.0f;
}

m2pt_status m2pt_optimizer_create(m2pt_context *ctx, const m2pt_optimizer_options *opts,
                                  m2pt_optimizer **out)
{
  static const char fn[] = "m2pt_optimizer_create";
  M2PT_REQUIRE(ctx, ctx != NULL && opts != NULL && out != NULL, "%s: NULL argument", fn);
  M2PT_REQUIRE(ctx, opts->struct_size >= sizeof *opts,
               "%s: opts->struct_size is %zu, not sizeof(m2pt_optimizer_options) (%zu): start "
               "from m2pt_sgd_options_default() or m2pt_adamw_options_default()",
               fn, opts->struct_size, sizeof *opts);
  M2PT_TRY(m2pt_check_enum(ctx, (int)opts->kind, M2PT_OPTIMIZER_ADAMW, fn, "optimizer kind"));
  /* The ranges PyTorch's constructors check ("Invalid momentum value", …). */
  if (opts->kind == M2PT_OPTIMIZER_SGD) {
    M2PT_REQUIRE(ctx, finite_nonneg(opts->momentum), "%s: momentum %g is not finite and >= 0",
                 fn, (double)opts->momentum);
    M2PT_REQUIRE(ctx, !opts->nesterov || opts->momentum > 0.0f,
                 "%s: Nesterov momentum requires a momentum > 0", fn);
  } else {
    M2PT_REQUIRE(ctx, opts->beta1 >= 0.0f && opts->beta1 < 1.0f,
                 "%s: beta1 %g is not in [0, 1)", fn, (double)opts->beta1);
    M2PT_REQUIRE(ctx, opts->beta2 >= 0.0f && opts->beta2 < 1.0f,
                 "%s: beta2 %g is not in [0, 1)", fn, (double)opts->beta2);
    M2PT_REQUIRE(ctx, finite_nonneg(opts->eps), "%s: eps %g is not finite and >= 0", fn,
                 (double)opts->eps);
  }
  m2pt_optimizer *opt = calloc(1, sizeof *opt);
  if (opt == NULL)
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  opt->ctx = ctx;
  opt->opts = *opts;
  opt->opts.struct_size = sizeof opt->opts;
  *out = opt;
  return M2PT_OK;
}

void m2pt_optimizer_destroy(m2pt_optimizer *opt)
{
  if (opt == NULL)
    return;
  for (size_t i = 0; i < opt->nparams; i++) {
    m2pt_tensor_destroy(opt->params[i].state[0]);
    m2pt_tensor_destroy(opt->params[i].state[1]);
  }
  free(opt->params);
  free(opt->groups);
  free(opt);
}

m2pt_status m2pt_optimizer_add_group(m2pt_optimizer *opt, float lr, float wd, size_t *group)
{
  static const char fn[] = "m2pt_optimizer_add_group";
  M2PT_REQUIRE(NULL, opt != NULL, "%s: opt is NULL", fn);
  M2PT_REQUIRE(opt->ctx, group != NULL, "%s: group is NULL", fn);
  M2PT_REQUIRE(opt->ctx, finite_nonneg(lr), "%s: learning rate %g is not finite and >= 0", fn,
               (double)lr);
  M2PT_REQUIRE(opt->ctx, finite_nonneg(wd), "%s: weight decay %g is not finite and >= 0", fn,
               (double)wd);
  if (grow((void **)&opt->groups, &opt->cap_groups, opt->ngroups, sizeof *opt->groups) != 0)
    return m2pt_fail(opt->ctx, M2PT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  opt->groups[opt->ngroups] = (optim_group){lr, wd};
  *group = opt->ngroups++;
  return M2PT_OK;
}

m2pt_status m2pt_optimizer_add_param(m2pt_optimizer *opt, size_t group, m2pt_tensor *param,
                                     const m2pt_tensor *grad)
{
  static const char fn[] = "m2pt_optimizer_add_param";
  M2PT_REQUIRE(NULL, opt != NULL, "%s: opt is NULL", fn);
  m2pt_context *ctx = opt->ctx;
  M2PT_REQUIRE(ctx, group < opt->ngroups, "%s: no group %zu (the optimizer has %zu)", fn, group,
               opt->ngroups);
  M2PT_TRY(m2pt_check_tensor(ctx, param, "m2pt_optimizer_add_param: param"));
  M2PT_TRY(m2pt_check_tensor(ctx, grad, "m2pt_optimizer_add_param: grad"));
  M2PT_REQUIRE(ctx, (const m2pt_tensor *)param != grad, "%s: grad is param", fn);
  M2PT_TRY(m2pt_check_same_shape(ctx, param, grad, fn, "param", "grad"));
  for (size_t i = 0; i < opt->nparams; i++)
    M2PT_REQUIRE(ctx, opt->params[i].param != param,
                 "%s: the tensor is already parameter %zu (group %zu)", fn, i,
                 opt->params[i].group);
  const size_t nstate = m2pt_optim_nstate(opt);
  if (grow((void **)&opt->params, &opt->cap_params, opt->nparams, sizeof *opt->params) != 0)
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  optim_param p = {group, param, grad, {NULL, NULL}, 0};
  for (size_t s = 0; s < nstate; s++) {
    /* Zero-filled: PyTorch's zeros_like moments. */
    const m2pt_status st = m2pt_tensor_create(ctx, param->ndim, param->shape, &p.state[s]);
    if (st != M2PT_OK) {
      m2pt_tensor_destroy(p.state[0]);
      return st;
    }
  }
  opt->params[opt->nparams++] = p;
  return M2PT_OK;
}

m2pt_status m2pt_optimizer_set_lr(m2pt_optimizer *opt, size_t group, float lr)
{
  static const char fn[] = "m2pt_optimizer_set_lr";
  M2PT_REQUIRE(NULL, opt != NULL, "%s: opt is NULL", fn);
  M2PT_REQUIRE(opt->ctx, group < opt->ngroups, "%s: no group %zu (the optimizer has %zu)", fn,
               group, opt->ngroups);
  M2PT_REQUIRE(opt->ctx, finite_nonneg(lr), "%s: learning rate %g is not finite and >= 0", fn,
               (double)lr);
  opt->groups[group].lr = lr;
  return M2PT_OK;
}

m2pt_status m2pt_optimizer_group(const m2pt_optimizer *opt, size_t group, float *lr, float *wd)
{
  static const char fn[] = "m2pt_optimizer_group";
  M2PT_REQUIRE(NULL, opt != NULL, "%s: opt is NULL", fn);
  M2PT_REQUIRE(opt->ctx, group < opt->ngroups, "%s: no group %zu (the optimizer has %zu)", fn,
               group, opt->ngroups);
  if (lr != NULL)
    *lr = opt->groups[group].lr;
  if (wd != NULL)
    *wd = opt->groups[group].wd;
  return M2PT_OK;
}

static m2pt_status sgd_step(m2pt_optimizer *opt, optim_param *p)
{
  const optim_group *g = &opt->groups[p->group];
  const int momentum = opt->opts.momentum > 0.0f;
  char options[64];
  snprintf(options, sizeof options, "-DSGD_MOMENTUM=%d -DSGD_NESTEROV=%d", momentum,
           momentum && opt->opts.nesterov);
  /* Without momentum the kernel never reads buf; any valid buffer will do. */
  cl_mem buf = momentum ? p->state[0]->buffer : p->param->buffer;
  const cl_ulong n = p->param->numel;
  const float lr = g->lr, wd = g->wd, mu = opt->opts.momentum;
  const m2pt_kernel_arg args[] = {M2PT_ARG(p->param->buffer), M2PT_ARG(p->grad->buffer),
                                  M2PT_ARG(buf),  M2PT_ARG(n), M2PT_ARG(lr), M2PT_ARG(wd),
                                  M2PT_ARG(mu)};
  const size_t global[1] = {p->param->numel};
  return m2pt_run_kernel(opt->ctx, &m2pt_cl_optim, options, "m2pt_sgd_step", args, 7, 1, global,
                         NULL);
}

static m2pt_status adamw_step(m2pt_optimizer *opt, optim_param *p)
{
  const optim_group *g = &opt->groups[p->group];
  const double t = (double)p->step, b1 = opt->opts.beta1, b2 = opt->opts.beta2;
  /* PyTorch's _single_tensor_adam(w) computes these in Python floats. */
  const float decay = (float)(1.0 - (double)g->lr * (double)g->wd);
  const float one_minus_b1 = (float)(1.0 - b1);
  const float step_size = (float)((double)g->lr / (1.0 - pow(b1, t)));
  const float bc2_sqrt = (float)sqrt(1.0 - pow(b2, t));
  const float beta2 = opt->opts.beta2, eps = opt->opts.eps;
  const cl_ulong n = p->param->numel;
  const m2pt_kernel_arg args[] = {
      M2PT_ARG(p->param->buffer),    M2PT_ARG(p->grad->buffer), M2PT_ARG(p->state[0]->buffer),
      M2PT_ARG(p->state[1]->buffer), M2PT_ARG(n),               M2PT_ARG(decay),
      M2PT_ARG(one_minus_b1),        M2PT_ARG(beta2),           M2PT_ARG(step_size),
      M2PT_ARG(bc2_sqrt),            M2PT_ARG(eps)};
  const size_t global[1] = {p->param->numel};
  return m2pt_run_kernel(opt->ctx, &m2pt_cl_optim, "", "m2pt_adamw_step", args, 11, 1, global,
                         NULL);
}

m2pt_status m2pt_optimizer_step(m2pt_optimizer *opt)
{
  M2PT_REQUIRE(NULL, opt != NULL, "m2pt_optimizer_step: opt is NULL");
  for (size_t i = 0; i < opt->nparams; i++) {
    optim_param *p = &opt->params[i];
    p->step++;
    const m2pt_status st =
        opt->opts.kind == M2PT_OPTIMIZER_ADAMW ? adamw_step(opt, p) : sgd_step(opt, p);
    if (st != M2PT_OK) {
      p->step--; /* this tensor was not updated */
      return st;
    }
  }
  return M2PT_OK;
}
