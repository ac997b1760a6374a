/* The trainer's state files (include/m2pt/trainer.h, "State"). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/file_read.h"
#include "common/file_write.h"
#include "core/error.h"
#include "trainer_internal.h"

static const char state_format[] = "m2pt.trainer_state.v1";

/* The gradients' (= the parameters') checkpoint names, for the optimizer's
 * file. *names is malloc'd; the strings are the grads'. */
static m2pt_status param_names(const m2pt_trainer *t, const char ***names)
{
  *names = malloc((t->ngrads + 1) * sizeof **names);
  if (!*names)
    return m2pt_fail(t->ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  for (size_t i = 0; i < t->ngrads; ++i)
    (*names)[i] = m2pt_model_grads_name(t->grads, i);
  return M2PT_OK;
}

/* The state.json of `dir`, parsed; NULL (not an error) when there is none
 * and missing_ok. */
static m2pt_status read_state(m2pt_context *ctx, const char *dir, int missing_ok,
                              cJSON **out)
{
  char path[4096];
  *out = NULL;
  snprintf(path, sizeof path, "%s/state.json", dir);
  if (missing_ok && access(path, F_OK) != 0)
    return M2PT_OK;
  unsigned char *text = NULL;
  size_t size;
  const m2pt_status s = m2pt_read_file(path, 1u << 20, &text, &size);
  if (s != M2PT_OK) /* the message is on the thread; a context gets it too */
    return ctx ? m2pt_fail(ctx, s, "%s", m2pt_last_error(NULL)) : s;
  cJSON *j = cJSON_Parse((const char *)text);
  free(text);
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "format");
  if (!j || !cJSON_IsString(f) || strcmp(f->valuestring, state_format) != 0) {
    cJSON_Delete(j);
    return m2pt_fail(ctx, M2PT_ERR_FORMAT, "%s: not an m2pt trainer state (%s)", path,
                     state_format);
  }
  *out = j;
  return M2PT_OK;
}

static const char *state_string(const cJSON *j, const char *key)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  return cJSON_IsString(v) && !strchr(v->valuestring, '/') ? v->valuestring : NULL;
}

static int state_number(const cJSON *j, const char *key, double *out)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  if (!cJSON_IsNumber(v))
    return 0;
  *out = v->valuedouble;
  return 1;
}

m2pt_status m2pt_trainer_save_state(m2pt_trainer *t, const char *dir)
{
  M2PT_REQUIRE(NULL, t && dir && *dir, "m2pt_trainer_save_state: NULL argument");
  m2pt_context *ctx = t->ctx;
  m2pt_status s = m2pt_make_dirs(dir);
  if (s != M2PT_OK)
    return m2pt_fail(ctx, s, "%s", m2pt_last_error(NULL));
  cJSON *old = NULL;
  M2PT_TRY(read_state(ctx, dir, 1, &old));
  char model[64], optim[64], path[4096], opath[4096];
  snprintf(model, sizeof model, "model-%zu.safetensors", t->done);
  snprintf(optim, sizeof optim, "optimizer-%zu.safetensors", t->done);
  snprintf(path, sizeof path, "%s/%s", dir, model);
  snprintf(opath, sizeof opath, "%s/%s", dir, optim);
  const char **names = NULL;
  s = param_names(t, &names);
  if (s == M2PT_OK)
    s = m2pt_model_save(t->model, path);
  if (s == M2PT_OK)
    s = m2pt_optimizer_save(t->opt, opath, names);
  free(names);
  char text[1024];
  if (s == M2PT_OK) {
    const int n = snprintf(
        text, sizeof text,
        "{\"format\": \"%s\", \"step\": %zu, \"model\": \"%s\", \"optimizer\": \"%s\", "
        "\"samples\": %zu, \"batch\": %zu, \"accum\": %zu, \"micro_batches\": %zu, "
        "\"shuffle\": %d, \"seed\": \"%" PRIu64 "\"}\n",
        state_format, t->done, model, optim, t->plan.samples, t->plan.batch, t->plan.accum,
        t->plan.micro_batches, t->o.shuffle, t->o.seed);
    char spath[4096];
    snprintf(spath, sizeof spath, "%s/state.json", dir);
    const m2pt_chunk chunk = {text, (size_t)n};
    /* Written last and atomically: until the rename it names the old state. */
    s = m2pt_replace_file(spath, &chunk, 1);
    if (s != M2PT_OK)
      s = m2pt_fail(ctx, s, "%s", m2pt_last_error(NULL));
  }
  const char *old_model = old ? state_string(old, "model") : NULL;
  const char *old_optim = old ? state_string(old, "optimizer") : NULL;
  if (s != M2PT_OK) {
    /* The new files are nobody's state (unless the old one names them). */
    if (!old_model || strcmp(old_model, model) != 0)
      unlink(path);
    if (!old_optim || strcmp(old_optim, optim) != 0)
      unlink(opath);
  } else {
    if (old_model && strcmp(old_model, model) != 0) {
      snprintf(path, sizeof path, "%s/%s", dir, old_model);
      unlink(path);
    }
    if (old_optim && strcmp(old_optim, optim) != 0) {
      snprintf(path, sizeof path, "%s/%s", dir, old_optim);
      unlink(path);
    }
  }
  cJSON_Delete(old);
  return s;
}

m2pt_status m2pt_trainer_state_model(const char *dir, char *buf, size_t size)
{
  M2PT_REQUIRE_THREAD(dir && buf && size, "m2pt_trainer_state_model: NULL argument");
  cJSON *j = NULL;
  M2PT_TRY(read_state(NULL, dir, 0, &j));
  const char *model = state_string(j, "model");
  const int n = model ? snprintf(buf, size, "%s/%s", dir, model) : -1;
  cJSON_Delete(j);
  if (n < 0 || (size_t)n >= size)
    return m2pt_fail_thread(M2PT_ERR_FORMAT, "%s/state.json: no model file named, or its path "
                                             "does not fit", dir);
  return M2PT_OK;
}

m2pt_status m2pt_trainer_load_state(m2pt_trainer *t, const char *dir)
{
  M2PT_REQUIRE(NULL, t && dir, "m2pt_trainer_load_state: NULL argument");
  m2pt_context *ctx = t->ctx;
  M2PT_REQUIRE(ctx, t->done == 0, "m2pt_trainer_load_state: the trainer has taken %zu steps",
               t->done);
  cJSON *j = NULL;
  M2PT_TRY(read_state(ctx, dir, 0, &j));
  double step = 0, samples = 0, batch = 0, accum = 0, micro = 0, shuffle = 0;
  const char *optim = state_string(j, "optimizer"), *seed = state_string(j, "seed");
  m2pt_status s = M2PT_OK;
  if (!optim || !seed || !state_number(j, "step", &step) ||
      !state_number(j, "samples", &samples) || !state_number(j, "batch", &batch) ||
      !state_number(j, "accum", &accum) || !state_number(j, "micro_batches", &micro) ||
      !state_number(j, "shuffle", &shuffle))
    s = m2pt_fail(ctx, M2PT_ERR_FORMAT, "%s/state.json: a field is missing or malformed", dir);
  else if (samples != (double)t->plan.samples || batch != (double)t->plan.batch ||
           accum != (double)t->plan.accum || micro != (double)t->plan.micro_batches ||
           shuffle != (double)t->o.shuffle || strtoull(seed, NULL, 10) != t->o.seed)
    s = m2pt_fail(ctx, M2PT_ERR_INVALID_ARGUMENT,
                  "%s: saved by another run (samples %g, batch %g, accum %g, %g micro-batches, "
                  "shuffle %g, seed %s; this run: %zu, %zu, %zu, %zu, %d, %" PRIu64 ")",
                  dir, samples, batch, accum, micro, shuffle, seed, t->plan.samples,
                  t->plan.batch, t->plan.accum, t->plan.micro_batches, t->o.shuffle, t->o.seed);
  else if (step < 0 || step > (double)t->plan.steps || step != (double)(size_t)step)
    s = m2pt_fail(ctx, M2PT_ERR_FORMAT, "%s: step %g is not in [0, %zu]", dir, step,
                  t->plan.steps);
  if (s == M2PT_OK) {
    char path[4096];
    const char **names = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, optim);
    s = param_names(t, &names);
    if (s == M2PT_OK)
      s = m2pt_optimizer_load(t->opt, path, names);
    free(names);
    if (s == M2PT_OK)
      t->done = (size_t)step;
  }
  cJSON_Delete(j);
  return s;
}
