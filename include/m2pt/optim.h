/* Optimizers, learning-rate schedules and MAE's parameter groups for
 * fine-tuning (issue 13). An optimizer updates device tensors in place from
 * their gradients, one fused kernel per tensor, with exactly the update of
 * PyTorch's torch.optim.SGD or torch.optim.AdamW (the single-tensor
 * implementation, PyTorch's default on the CPU); parameters sit in groups,
 * each with its own learning rate and weight decay, as PyTorch's
 * param_groups. The schedule and group helpers are pure host functions with
 * MAE's formulas (github.com/facebookresearch/mae, util/lr_sched.py and
 * util/lr_decay.py), the recipe the M2PT paper fine-tunes with. */
#ifndef M2PT_OPTIM_H
#define M2PT_OPTIM_H

#include <stddef.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum m2pt_optimizer_kind {
  M2PT_OPTIMIZER_SGD = 0,
  M2PT_OPTIMIZER_ADAMW = 1,
} m2pt_optimizer_kind;

/* Options of m2pt_optimizer_create. Start from m2pt_sgd_options_default() or
 * m2pt_adamw_options_default() and change the fields you need (struct_size as
 * in m2pt_model_options). The fields of the other kind are ignored. */
typedef struct m2pt_optimizer_options {
  size_t struct_size; /* sizeof(m2pt_optimizer_options), as compiled */
  m2pt_optimizer_kind kind;
  /* SGD: momentum ≥ 0 (0: none, no buffer kept); Nesterov needs momentum > 0.
   * Dampening is always 0 (PyTorch's default), the only value the paper's
   * recipe uses. */
  float momentum;
  int nesterov;
  /* AdamW: β1, β2 in [0, 1), ε ≥ 0. */
  float beta1, beta2, eps;
} m2pt_optimizer_options;

/* SGD without momentum (PyTorch's defaults). Inline: struct_size is the
 * caller's sizeof. */
static inline m2pt_optimizer_options m2pt_sgd_options_default(void)
{
  const m2pt_optimizer_options o = {sizeof(m2pt_optimizer_options), M2PT_OPTIMIZER_SGD, 0.0f, 0,
                                    0.9f, 0.999f, 1e-8f};
  return o;
}

/* AdamW with β = (0.9, 0.999), ε = 1e-8 (PyTorch's defaults). */
static inline m2pt_optimizer_options m2pt_adamw_options_default(void)
{
  const m2pt_optimizer_options o = {sizeof(m2pt_optimizer_options), M2PT_OPTIMIZER_ADAMW, 0.0f,
                                    0, 0.9f, 0.999f, 1e-8f};
  return o;
}

typedef struct m2pt_optimizer m2pt_optimizer;

/* Creates an optimizer with no groups on ctx.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, struct_size not set, an unknown
 * kind, a value out of range), M2PT_ERR_OUT_OF_MEMORY. */
M2PT_API m2pt_status m2pt_optimizer_create(m2pt_context *ctx, const m2pt_optimizer_options *opts,
                                           m2pt_optimizer **out);

/* Frees the optimizer and its state (moments); never the parameters or
 * gradients. Accepts NULL. */
M2PT_API void m2pt_optimizer_destroy(m2pt_optimizer *opt);

/* Appends a parameter group with learning rate lr ≥ 0 and weight decay
 * wd ≥ 0 and writes its index (0, 1, … in order) to *group.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, negative or non-finite values),
 * M2PT_ERR_OUT_OF_MEMORY. */
M2PT_API m2pt_status m2pt_optimizer_add_group(m2pt_optimizer *opt, float lr, float wd,
                                              size_t *group);

/* Adds `param` to `group`, its gradient to be read from `grad` (one shape,
 * both of the optimizer's context) at every step. The optimizer keeps both
 * pointers, not the tensors: they must outlive it. Its state for the tensor
 * (SGD's momentum buffer, AdamW's two moments) starts at zero, its step count
 * at 0. A tensor may be in one group once (PyTorch refuses it twice too).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, no such group, param already
 * added, grad is param), M2PT_ERR_SHAPE, M2PT_ERR_CONTEXT_MISMATCH,
 * M2PT_ERR_DEVICE_OUT_OF_MEMORY, M2PT_ERR_OUT_OF_MEMORY. */
M2PT_API m2pt_status m2pt_optimizer_add_param(m2pt_optimizer *opt, size_t group,
                                              m2pt_tensor *param, const m2pt_tensor *grad);

/* Sets a group's learning rate (what a schedule does before each step; MAE
 * sets lr · lr_scale for each group).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, no such group, lr < 0 or not finite). */
M2PT_API m2pt_status m2pt_optimizer_set_lr(m2pt_optimizer *opt, size_t group, float lr);

/* A group's learning rate and weight decay; either output may be NULL.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL opt, no such group). */
M2PT_API m2pt_status m2pt_optimizer_group(const m2pt_optimizer *opt, size_t group, float *lr,
                                          float *wd);

/* One optimizer step over every parameter, in the order added, one kernel
 * each; asynchronous (the context's queue orders it before later work).
 * With lr, wd of the parameter's group, g its gradient and t its step count
 * after incrementing it, as PyTorch documents the updates
 * (pytorch.org/docs/stable/generated/torch.optim.SGD.html and …AdamW.html):
 *   SGD:   g += wd·p; with momentum μ: b = μ·b + g (b = g at t = 1),
 *          g = Nesterov ? g + μ·b : b; then p −= lr·g.
 *   AdamW: p *= 1 − lr·wd; m = β1·m + (1 − β1)·g; v = β2·v + (1 − β2)·g²;
 *          p −= lr / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε),
 *          the bias corrections in double on the host, as PyTorch's Python floats.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL), M2PT_ERR_OPENCL,
 * M2PT_ERR_KERNEL_BUILD; a failed step may have updated some tensors. */
M2PT_API m2pt_status m2pt_optimizer_step(m2pt_optimizer *opt);

/* ---- State files (resuming a run) ----------------------------------------- */

/* Writes the optimizer's state to a safetensors file at `path`: for each
 * parameter, in the order added, with <name> its entry of `names` (names
 * NULL: its index 0, 1, …, the keys of PyTorch's
 * optimizer.state_dict()["state"]):
 *   <name>.step             I64 scalar, the steps it has taken (PyTorch
 *                           keeps a float32 "step"),
 *   AdamW: <name>.exp_avg, <name>.exp_avg_sq     F32, the parameter's shape,
 *   SGD with momentum: <name>.momentum_buffer    F32, the parameter's shape
 *   (zeros before the first step, where PyTorch has none yet),
 * and the metadata format = "m2pt.optimizer_state.v1", optimizer ("adamw"
 * or "sgd"), params (their count), beta1, beta2, eps (AdamW) or momentum,
 * nesterov (SGD). The groups' learning rates and weight decays are the
 * caller's configuration (a schedule sets the rates before every step) and
 * are not saved. The file is written as every m2pt output is (<m2pt/io.h>,
 * "Output files": a temporary file renamed over `path`, so a process killed
 * while saving leaves the previous file whole). The state is copied to the
 * host first (the moments' size in host memory, for the call).
 * names, when not NULL, holds one non-empty name per parameter, all
 * different (e.g. the checkpoint names, "blocks.0.attn.qkv.weight").
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL opt, NULL or empty path, a NULL,
 * empty or repeated name), M2PT_ERR_IO, M2PT_ERR_OUT_OF_MEMORY,
 * M2PT_ERR_OPENCL; on failure `path` is as it was. */
M2PT_API m2pt_status m2pt_optimizer_save(const m2pt_optimizer *opt, const char *path,
                                         const char *const *names);

/* Replaces every parameter's state and step count with those of a file
 * m2pt_optimizer_save wrote for an optimizer of the same kind and options
 * (betas, ε; momentum, Nesterov), with as many parameters, the same names
 * (`names` as given to the save) and shapes. A run that saves after k
 * steps and loads the file into a new optimizer, its parameters restored
 * too, continues with the same bits as one never interrupted. The file is
 * checked whole (metadata, tensor count, every name, dtype and shape, every
 * step ≥ 0) and read to the host before anything changes: a refused file
 * leaves the optimizer as it was. The learning rates and weight decays are
 * not in the file (m2pt_optimizer_set_lr).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, names as for the save),
 * M2PT_ERR_IO (cannot read), M2PT_ERR_FORMAT (not a valid safetensors file
 * or truncated, no optimizer state, another kind, option or parameter count,
 * a tensor of another dtype, a tensor too many, a negative step),
 * M2PT_ERR_NOT_FOUND (a tensor missing: another name), M2PT_ERR_SHAPE (a
 * state of another shape), M2PT_ERR_OUT_OF_MEMORY, M2PT_ERR_OPENCL (the
 * upload failed: the state may then be part loaded). */
M2PT_API m2pt_status m2pt_optimizer_load(m2pt_optimizer *opt, const char *path,
                                         const char *const *names);

/* ---- Gradient clipping and scaling ------------------------------------------ */

/* torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type=2) over
 * the `count` gradient tensors grads[0 .. count) of ctx: the total norm
 *   N = √(Σ_tensors Σ g²)
 * into *total_norm (may be NULL), and, when max_norm / (N + 1e-6) < 1,
 * every gradient multiplied by that coefficient, computed in float as
 * PyTorch does (c = (1 / (N + 1e-6f)) · max_norm; its tensor division is a
 * reciprocal and a product). Squares are summed in float on the device in
 * a fixed order (chunks of 1024 elements, lanes of 64, a pairwise tree, then
 * the tensors in list order, no atomics): the same bits on every run, within
 * f32 rounding of PyTorch's norm. Blocks until the norm is on the host.
 * max_norm = +inf computes the norm and scales nothing. count 0 gives
 * N = 0. A NaN or infinite N (a NaN or inf gradient, or squares past
 * FLT_MAX: N above ~1.8e19) fails with M2PT_ERR_NOT_FINITE, N still written
 * to *total_norm and no gradient touched (PyTorch would scale them all by
 * NaN or 0).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL ctx, a NULL list with count > 0 or
 * a NULL entry, a tensor listed twice, max_norm ≤ 0 or NaN),
 * M2PT_ERR_CONTEXT_MISMATCH, M2PT_ERR_NOT_FINITE, M2PT_ERR_UNSUPPORTED (work
 * groups under 64 work-items), M2PT_ERR_DEVICE_OUT_OF_MEMORY,
 * M2PT_ERR_OPENCL, M2PT_ERR_KERNEL_BUILD. */
M2PT_API m2pt_status m2pt_clip_grad_norm(m2pt_context *ctx, m2pt_tensor *const *grads,
                                         size_t count, float max_norm, float *total_norm);

/* Multiplies every element of the `count` tensors by `factor` (one float
 * product each, PyTorch's mul_), asynchronously: the 1/K of gradient
 * accumulation (below), or any rescaling of a gradient list.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL ctx, a NULL list with count > 0 or
 * a NULL entry, a tensor listed twice, a factor not finite),
 * M2PT_ERR_CONTEXT_MISMATCH, M2PT_ERR_OPENCL, M2PT_ERR_KERNEL_BUILD. */
M2PT_API m2pt_status m2pt_scale_grads(m2pt_context *ctx, m2pt_tensor *const *grads,
                                      size_t count, float factor);

/* dst[i] += factor · src[i], element by element, for the `count` pairs of
 * tensors of one shape (one fma each, so with factor 1 exactly the sum
 * PyTorch's backward accumulates into .grad), asynchronously. src[i] may be
 * dst[i]; no dst tensor may be listed twice.
 *
 * Gradient accumulation over K micro-batches (MAE's accum_iter) needs no
 * optimizer state: MAE divides each micro-batch's loss by K, sums the
 * gradients of the K backward passes and steps once. Here either
 *  - the backward sums itself (m2pt_linear_backward's accumulate flag):
 *    scale each micro-batch's loss gradient (dlogits of m2pt_cross_entropy,
 *    a mean over its rows) by 1/K with m2pt_scale_grads before its
 *    backward, overwrite on the first micro-batch and accumulate after;
 *  - or the backward overwrites its gradients (m2pt_block_backward): sum
 *    each micro-batch's gradients into accumulators (zero before the first
 *    micro-batch) with this call, factor 1/K, and give the optimizer the
 *    accumulators.
 * For the mean over a step's B samples when the last micro-batch holds
 * fewer, use B_k / B for micro-batch k instead of 1/K. The backward being
 * linear in its incoming gradient, both give the gradient of the scaled
 * loss, up to rounding.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL ctx, a NULL list with count > 0 or
 * a NULL entry, a dst tensor listed twice, a factor not finite),
 * M2PT_ERR_SHAPE, M2PT_ERR_CONTEXT_MISMATCH, M2PT_ERR_OPENCL,
 * M2PT_ERR_KERNEL_BUILD; the pairs are checked before anything runs. */
M2PT_API m2pt_status m2pt_accumulate_grads(m2pt_context *ctx, m2pt_tensor *const *dst,
                                           const m2pt_tensor *const *src, size_t count,
                                           float factor);

/* ---- Schedules (host, pure) ---------------------------------------------- */

typedef enum m2pt_lr_schedule_kind {
  M2PT_LR_CONSTANT = 0, /* lr at every epoch */
  M2PT_LR_COSINE = 1,   /* MAE's adjust_learning_rate */
} m2pt_lr_schedule_kind;

typedef struct m2pt_lr_schedule {
  m2pt_lr_schedule_kind kind;
  double lr;            /* the base (peak) learning rate, ≥ 0 */
  double min_lr;        /* cosine: the final rate, 0 ≤ min_lr ≤ lr */
  double warmup_epochs; /* cosine: ≥ 0 and < epochs */
  double epochs;        /* cosine: the run's length, > 0 */
} m2pt_lr_schedule;

/* The learning rate at fractional epoch e ≥ 0 (MAE passes
 * e = epoch + iteration / iterations_per_epoch, every iteration):
 *   constant: lr;
 *   cosine:   e < W: lr · e / W (a linear warm-up from 0),
 *             else min_lr + (lr − min_lr) · ½ · (1 + cos(π · (e − W) / (E − W))),
 * with W = warmup_epochs and E = epochs (e past E keeps following the cosine,
 * as MAE's code does). Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, a field or e
 * out of range, not finite), with the message on the calling thread
 * (m2pt_last_error(NULL)). */
M2PT_API m2pt_status m2pt_lr_schedule_at(const m2pt_lr_schedule *s, double epoch, double *lr);

/* ---- MAE's parameter groups (util/lr_decay.py, param_groups_lrd) ---------- */

/* What MAE's param_groups_lrd assigns to one parameter. Parameters whose
 * `group` names are equal share a group (one learning rate, one weight
 * decay), as MAE's do. */
typedef struct m2pt_param_group_info {
  size_t layer_id; /* 0: embeddings; block i: i + 1; anything else (final
                      norm, head): depth + 1 */
  double lr_scale; /* layer_decay^(depth + 1 − layer_id): 1 for the head */
  int no_decay;    /* 1: weight decay 0 (1-D tensors, cls_token, pos_embed) */
  int pathway_scale; /* 1: an M2PT pathway's λ (a name ending in
                        "cross_modal_scale") */
  char group[48];  /* MAE's group name, "layer_<layer_id>_decay" or
                      "layer_<layer_id>_no_decay"; "pathway_scales" after
                      m2pt_param_group_scale_lr */
} m2pt_param_group_info;

/* The group of the checkpoint tensor `name` with `ndim` dimensions in a
 * model of `depth` blocks, with layer decay D in (0, 1] (MAE's
 * get_layer_id_for_vit with num_layers = depth + 1, and its no-decay rule).
 * Names in timm's naming (cls_token, pos_embed, patch_embed.*, blocks.I.*)
 * and in Hugging Face's (embeddings.*, encoder.layer.I.*, each optionally
 * after "vit." or "bert.") are known; an M2PT pathway's tensors
 * (…aux_weight, …cross_modal_scale) go with their layer's block, and
 * cross_modal_scale, 1-D, gets no decay.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, ndim 0, D out of range, a block
 * index ≥ depth), with the message on the calling thread. */
M2PT_API m2pt_status m2pt_param_group_of(const char *name, size_t ndim, size_t depth,
                                         double layer_decay, m2pt_param_group_info *info);

/* M2PT's --scale-lr: gives every pathway λ one learning rate of its own,
 * `scale_lr` where the schedule peaks at `lr` (the weights' base rate). For
 * an info with pathway_scale set (from m2pt_param_group_of), lr_scale
 * becomes scale_lr / lr (no layer decay) and group "pathway_scales", so
 * that setting each group's rate to schedule(e) · lr_scale, MAE's rule, runs
 * every λ on the schedule's shape (warm-up, cosine) scaled to peak at
 * scale_lr, in a group apart from its layer's biases and norms; no_decay
 * stays 1. Any other info is left as it is. λ is one number that multiplies
 * a whole auxiliary weight, so a rate of its own (often larger) lets it move
 * at a pace that suits it.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, lr ≤ 0, scale_lr < 0, either not
 * finite), with the message on the calling thread. */
M2PT_API m2pt_status m2pt_param_group_scale_lr(m2pt_param_group_info *info, double lr,
                                               double scale_lr);

#ifdef __cplusplus
}
#endif

#endif
