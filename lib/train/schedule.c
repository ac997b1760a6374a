/* Learning-rate schedules and MAE's layer-wise decay groups
 * (include/m2pt/optim.h): pure host functions, no context, so failures go
 * to the calling thread's message (common/error.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "m2pt/optim.h"

/* Python's math.pi (C11 has no M_PI). */
static const double pi = 3.141592653589793;

m2pt_status m2pt_lr_schedule_at(const m2pt_lr_schedule *s, double epoch, double *lr)
{
  static const char fn[] = "m2pt_lr_schedule_at";
  M2PT_REQUIRE_THREAD(s != NULL && lr != NULL, "%s: NULL argument", fn);
  M2PT_REQUIRE_THREAD(s->kind == M2PT_LR_CONSTANT || s->kind == M2PT_LR_COSINE,
                      "%s: unknown schedule kind %d", fn, (int)s->kind);
  M2PT_REQUIRE_THREAD(isfinite(s->lr) && s->lr >= 0.0, "%s: lr %g is not finite and >= 0", fn,
                      s->lr);
  M2PT_REQUIRE_THREAD(isfinite(epoch) && epoch >= 0.0, "%s: epoch %g is not finite and >= 0",
                      fn, epoch);
  if (s->kind == M2PT_LR_CONSTANT) {
    *lr = s->lr;
    return M2PT_OK;
  }
  M2PT_REQUIRE_THREAD(isfinite(s->min_lr) && s->min_lr >= 0.0 && s->min_lr <= s->lr,
                      "%s: min_lr %g is not in [0, lr = %g]", fn, s->min_lr, s->lr);
  M2PT_REQUIRE_THREAD(isfinite(s->epochs) && s->epochs > 0.0, "%s: epochs %g is not > 0", fn,
                      s->epochs);
  M2PT_REQUIRE_THREAD(isfinite(s->warmup_epochs) && s->warmup_epochs >= 0.0 &&
                          s->warmup_epochs < s->epochs,
                      "%s: warmup_epochs %g is not in [0, epochs = %g)", fn, s->warmup_epochs,
                      s->epochs);
  /* MAE, util/lr_sched.py: adjust_learning_rate, term for term. */
  const double w = s->warmup_epochs;
  if (epoch < w)
    *lr = s->lr * epoch / w;
  else
    *lr = s->min_lr + (s->lr - s->min_lr) * 0.5 *
                          (1.0 + cos(pi * (epoch - w) / (s->epochs - w)));
  return M2PT_OK;
}

/* The block index after `prefix` in `name` ("blocks.3.attn" → 3), or -1
 * when name does not start with prefix followed by digits and a dot. */
static long block_index(const char *name, const char *prefix)
{
  const size_t n = strlen(prefix);
  if (strncmp(name, prefix, n) != 0)
    return -1;
  const char *digits = name + n;
  char *end = NULL;
  if (*digits < '0' || *digits > '9')
    return -1;
  const unsigned long i = strtoul(digits, &end, 10);
  if (*end != '.' || i > (unsigned long)(size_t)-1 / 2)
    return -1;
  return (long)i;
}

static int starts_with(const char *s, const char *prefix)
{
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int ends_with(const char *s, const char *suffix)
{
  const size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

m2pt_status m2pt_param_group_of(const char *name, size_t ndim, size_t depth, double layer_decay,
                                m2pt_param_group_info *info)
{
  static const char fn[] = "m2pt_param_group_of";
  M2PT_REQUIRE_THREAD(name != NULL && info != NULL, "%s: NULL argument", fn);
  M2PT_REQUIRE_THREAD(ndim > 0, "%s: %s: ndim is 0", fn, name);
  M2PT_REQUIRE_THREAD(isfinite(layer_decay) && layer_decay > 0.0 && layer_decay <= 1.0,
                      "%s: layer_decay %g is not in (0, 1]", fn, layer_decay);
  /* Hugging Face's task models put the encoder under "vit." or "bert.". */
  const char *n = name;
  if (starts_with(n, "vit."))
    n += 4;
  else if (starts_with(n, "bert."))
    n += 5;
  /* MAE's get_layer_id_for_vit, with Hugging Face's names beside timm's. */
  size_t id = depth + 1;
  long block = block_index(n, "blocks.");
  if (block < 0)
    block = block_index(n, "encoder.layer.");
  if (strcmp(n, "cls_token") == 0 || strcmp(n, "pos_embed") == 0 ||
      starts_with(n, "patch_embed.") || starts_with(n, "embeddings."))
    id = 0;
  else if (block >= 0) {
    M2PT_REQUIRE_THREAD((size_t)block < depth, "%s: %s: block %ld of a model of depth %zu", fn,
                        name, block, depth);
    id = (size_t)block + 1;
  }
  info->layer_id = id;
  /* MAE: layer_scales[i] = layer_decay ** (num_layers − i), num_layers = depth + 1. */
  info->lr_scale = pow(layer_decay, (double)(depth + 1 - id));
  /* MAE's param_groups_lrd: p.ndim == 1 or a name in no_weight_decay()
   * (timm's ViT: pos_embed, cls_token, dist_token). */
  info->no_decay = ndim == 1 || strcmp(n, "cls_token") == 0 || strcmp(n, "pos_embed") == 0 ||
                   strcmp(n, "dist_token") == 0;
  info->pathway_scale = ends_with(n, "cross_modal_scale");
  snprintf(info->group, sizeof info->group, "layer_%zu_%s", id,
           info->no_decay ? "no_decay" : "decay");
  return M2PT_OK;
}

m2pt_status m2pt_param_group_scale_lr(m2pt_param_group_info *info, double lr, double scale_lr)
{
  static const char fn[] = "m2pt_param_group_scale_lr";
  M2PT_REQUIRE_THREAD(info != NULL, "%s: info is NULL", fn);
  M2PT_REQUIRE_THREAD(isfinite(lr) && lr > 0.0, "%s: lr %g is not finite and > 0", fn, lr);
  M2PT_REQUIRE_THREAD(isfinite(scale_lr) && scale_lr >= 0.0,
                      "%s: scale_lr %g is not finite and >= 0", fn, scale_lr);
  if (!info->pathway_scale)
    return M2PT_OK;
  info->lr_scale = scale_lr / lr;
  info->no_decay = 1;
  snprintf(info->group, sizeof info->group, "pathway_scales");
  return M2PT_OK;
}
