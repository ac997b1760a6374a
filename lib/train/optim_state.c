/* An optimizer's state as a safetensors file (include/m2pt/optim.h): each
 * parameter's step count and moments under "<name>.<PyTorch's key>", the
 * optimizer's kind and options in the metadata. A load checks the whole
 * file against the optimizer and reads every value to the host before it
 * changes anything. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context_impl.h"
#include "core/error.h"
#include "m2pt/io.h"
#include "optim_internal.h"

#define STATE_FORMAT "m2pt.optimizer_state.v1"

/* The keys of PyTorch's optimizer.state_dict()["state"][i]. */
static const char *state_key(const m2pt_optimizer *opt, size_t s)
{
  if (opt->opts.kind == M2PT_OPTIMIZER_SGD)
    return "momentum_buffer";
  return s == 0 ? "exp_avg" : "exp_avg_sq";
}

/* "<names[i] or i>.<key>" into a new string; NULL when out of memory. */
static char *tensor_name(const char *const *names, size_t i, const char *key)
{
  char index[24];
  snprintf(index, sizeof index, "%zu", i);
  const char *base = names ? names[i] : index;
  const size_t size = strlen(base) + strlen(key) + 2;
  char *out = malloc(size);
  if (out)
    snprintf(out, size, "%s.%s", base, key);
  return out;
}

/* The metadata a file of this optimizer holds: key and value of entry i
 * (value into buf of `size` bytes); 0 past the last entry. */
static int meta_entry(const m2pt_optimizer *opt, size_t i, const char **key, char *buf,
                      size_t size)
{
  const m2pt_optimizer_options *o = &opt->opts;
  const int adamw = o->kind == M2PT_OPTIMIZER_ADAMW;
  switch (i) {
  case 0: *key = "format"; snprintf(buf, size, "%s", STATE_FORMAT); return 1;
  case 1: *key = "optimizer"; snprintf(buf, size, "%s", adamw ? "adamw" : "sgd"); return 1;
  case 2: *key = "params"; snprintf(buf, size, "%zu", opt->nparams); return 1;
  case 3:
    *key = adamw ? "beta1" : "momentum";
    snprintf(buf, size, "%.9g", (double)(adamw ? o->beta1 : o->momentum));
    return 1;
  case 4:
    *key = adamw ? "beta2" : "nesterov";
    if (adamw)
      snprintf(buf, size, "%.9g", (double)o->beta2);
    else
      snprintf(buf, size, "%d", o->nesterov ? 1 : 0);
    return 1;
  case 5:
    if (!adamw)
      return 0;
    *key = "eps";
    snprintf(buf, size, "%.9g", (double)o->eps);
    return 1;
  default: return 0;
  }
}

/* NULL, or opt->nparams non-empty, distinct names. */
static m2pt_status check_names(const m2pt_optimizer *opt, const char *const *names,
                               const char *fn)
{
  if (names == NULL)
    return M2PT_OK;
  for (size_t i = 0; i < opt->nparams; i++) {
    M2PT_REQUIRE(opt->ctx, names[i] != NULL && names[i][0] != '\0',
                 "%s: the name of parameter %zu is NULL or empty", fn, i);
    for (size_t j = 0; j < i; j++)
      M2PT_REQUIRE(opt->ctx, strcmp(names[i], names[j]) != 0,
                   "%s: parameters %zu and %zu are both named \"%s\"", fn, j, i, names[i]);
  }
  return M2PT_OK;
}

/* Each parameter's step count, then its state tensors, on the host. */
typedef struct host_state {
  int64_t *steps;
  float **values; /* nparams · nstate arrays */
  size_t count;   /* arrays allocated so far */
} host_state;

static void host_state_free(host_state *h)
{
  for (size_t i = 0; i < h->count; i++)
    free(h->values[i]);
  free(h->values);
  free(h->steps);
}

static m2pt_status host_state_alloc(const m2pt_optimizer *opt, host_state *h, const char *fn)
{
  const size_t nstate = m2pt_optim_nstate(opt);
  *h = (host_state){0};
  h->steps = calloc(opt->nparams ? opt->nparams : 1, sizeof *h->steps);
  h->values = calloc(opt->nparams * nstate + 1, sizeof *h->values);
  if (h->steps == NULL || h->values == NULL) {
    host_state_free(h);
    return m2pt_fail(opt->ctx, M2PT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  }
  for (size_t i = 0; i < opt->nparams; i++)
    for (size_t s = 0; s < nstate; s++) {
      h->values[h->count] = malloc(opt->params[i].param->numel * sizeof(float));
      if (h->values[h->count] == NULL) {
        host_state_free(h);
        return m2pt_fail(opt->ctx, M2PT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
      }
      h->count++;
    }
  return M2PT_OK;
}

/* ---- Save ------------------------------------------------------------------ */

static m2pt_status write_file(const m2pt_optimizer *opt, const char *path,
                              const char *const *names, const host_state *h)
{
  static const char fn[] = "m2pt_optimizer_save";
  const size_t nstate = m2pt_optim_nstate(opt);
  m2pt_safetensors_writer *w = NULL;
  m2pt_status st = m2pt_safetensors_writer_create(path, &w);
  const char *key = NULL;
  char value[64];
  for (size_t i = 0; st == M2PT_OK && meta_entry(opt, i, &key, value, sizeof value); i++)
    st = m2pt_safetensors_writer_metadata(w, key, value);
  for (size_t i = 0; st == M2PT_OK && i < opt->nparams; i++) {
    const m2pt_tensor *p = opt->params[i].param;
    for (size_t s = 0; st == M2PT_OK && s <= nstate; s++) {
      char *name = tensor_name(names, i, s == 0 ? "step" : state_key(opt, s - 1));
      if (name == NULL) {
        m2pt_safetensors_writer_destroy(w);
        return m2pt_fail(opt->ctx, M2PT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
      }
      if (s == 0)
        st = m2pt_safetensors_writer_add(w, name, M2PT_DTYPE_I64, 0, NULL, &h->steps[i],
                                         sizeof h->steps[i]);
      else
        st = m2pt_safetensors_writer_add(w, name, M2PT_DTYPE_F32, p->ndim, p->shape,
                                         h->values[i * nstate + s - 1], p->numel * sizeof(float));
      free(name);
    }
  }
  if (st == M2PT_OK)
    st = m2pt_safetensors_writer_finish(w);
  m2pt_safetensors_writer_destroy(w);
  if (st != M2PT_OK)
    return m2pt_fail(opt->ctx, st, "%s: %s", fn, m2pt_last_error(NULL));
  return M2PT_OK;
}

m2pt_status m2pt_optimizer_save(const m2pt_optimizer *opt, const char *path,
                                const char *const *names)
{
  static const char fn[] = "m2pt_optimizer_save";
  M2PT_REQUIRE(NULL, opt != NULL, "%s: opt is NULL", fn);
  M2PT_REQUIRE(opt->ctx, path != NULL && path[0] != '\0', "%s: path is NULL or empty", fn);
  M2PT_TRY(check_names(opt, names, fn));
  const size_t nstate = m2pt_optim_nstate(opt);
  host_state h;
  M2PT_TRY(host_state_alloc(opt, &h, fn));
  m2pt_status st = M2PT_OK;
  for (size_t i = 0; st == M2PT_OK && i < opt->nparams; i++) {
    const optim_param *p = &opt->params[i];
    h.steps[i] = (int64_t)p->step;
    for (size_t s = 0; st == M2PT_OK && s < nstate; s++)
      st = m2pt_tensor_read(p->state[s], h.values[i * nstate + s], p->param->numel);
  }
  if (st == M2PT_OK)
    st = write_file(opt, path, names, &h);
  host_state_free(&h);
  return st;
}

/* ---- Load ------------------------------------------------------------------ */

/* Fails with a reader's status, its message (on the thread) moved to ctx. */
static m2pt_status reader_fail(const m2pt_optimizer *opt, m2pt_status st)
{
  return m2pt_fail(opt->ctx, st, "m2pt_optimizer_load: %s", m2pt_last_error(NULL));
}

/* The file's metadata and tensor count are this optimizer's. */
static m2pt_status check_header(const m2pt_optimizer *opt, const m2pt_safetensors *f,
                                const char *path)
{
  static const char fn[] = "m2pt_optimizer_load";
  const char *key = NULL, *got = NULL;
  char want[64];
  for (size_t i = 0; meta_entry(opt, i, &key, want, sizeof want); i++) {
    if (m2pt_safetensors_metadata(f, key, &got) != M2PT_OK) {
      if (i == 0)
        return m2pt_fail(opt->ctx, M2PT_ERR_FORMAT,
                         "%s: %s is not an optimizer state (no \"format\" in its metadata)", fn,
                         path);
      return m2pt_fail(opt->ctx, M2PT_ERR_FORMAT, "%s: %s: no \"%s\" in the metadata", fn, path,
                       key);
    }
    if (strcmp(got, want) != 0)
      return m2pt_fail(opt->ctx, M2PT_ERR_FORMAT,
                       "%s: %s holds the state of %s = %s; this optimizer has %s = %s", fn, path,
                       key, got, key, want);
  }
  const size_t want_count = opt->nparams * (1 + m2pt_optim_nstate(opt));
  if (m2pt_safetensors_count(f) != want_count)
    return m2pt_fail(opt->ctx, M2PT_ERR_FORMAT,
                     "%s: %s holds %zu tensors; the state of %zu parameters is %zu", fn, path,
                     m2pt_safetensors_count(f), opt->nparams, want_count);
  return M2PT_OK;
}

/* Finds `name` and checks its dtype and shape: an I64 scalar for a step,
 * else F32 of the parameter's shape. */
static m2pt_status find_checked(const m2pt_optimizer *opt, const m2pt_safetensors *f,
                                const char *path, const char *name, const m2pt_tensor *param,
                                size_t *index)
{
  static const char fn[] = "m2pt_optimizer_load";
  if (m2pt_safetensors_find(f, name, index) != M2PT_OK)
    return m2pt_fail(opt->ctx, M2PT_ERR_NOT_FOUND, "%s: %s has no tensor \"%s\"", fn, path,
                     name);
  m2pt_safetensors_info info;
  M2PT_TRY(m2pt_safetensors_info_at(f, *index, &info));
  const m2pt_dtype dtype = param ? M2PT_DTYPE_F32 : M2PT_DTYPE_I64;
  if (info.dtype != dtype)
    return m2pt_fail(opt->ctx, M2PT_ERR_FORMAT, "%s: %s: \"%s\" is %s, not %s", fn, path, name,
                     m2pt_dtype_name(info.dtype), m2pt_dtype_name(dtype));
  int same = info.ndim == (param ? param->ndim : 0);
  for (size_t d = 0; same && param && d < param->ndim; d++)
    same = info.shape[d] == param->shape[d];
  if (!same) {
    char got[192] = "", want[64] = "";
    size_t used = 0;
    for (size_t d = 0; d < info.ndim && used < sizeof got; d++)
      used += (size_t)snprintf(got + used, sizeof got - used, "[%zu]", info.shape[d]);
    if (param)
      m2pt_shape_string(param, want, sizeof want);
    return m2pt_fail(opt->ctx, M2PT_ERR_SHAPE, "%s: %s: \"%s\" is %s%s, not %s%s", fn, path,
                     name, got, info.ndim ? "" : "a scalar", want, param ? "" : "a scalar");
  }
  return M2PT_OK;
}

/* Every tensor of the file into h, checked. */
static m2pt_status read_all(const m2pt_optimizer *opt, const m2pt_safetensors *f,
                            const char *path, const char *const *names, host_state *h)
{
  static const char fn[] = "m2pt_optimizer_load";
  const size_t nstate = m2pt_optim_nstate(opt);
  for (size_t i = 0; i < opt->nparams; i++) {
    const m2pt_tensor *param = opt->params[i].param;
    for (size_t s = 0; s <= nstate; s++) {
      char *name = tensor_name(names, i, s == 0 ? "step" : state_key(opt, s - 1));
      if (name == NULL)
        return m2pt_fail(opt->ctx, M2PT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
      size_t index = 0;
      m2pt_status st = find_checked(opt, f, path, name, s == 0 ? NULL : param, &index);
      if (st == M2PT_OK && s == 0) {
        st = m2pt_safetensors_read_raw(f, index, &h->steps[i], sizeof h->steps[i]);
        if (st == M2PT_OK && h->steps[i] < 0)
          st = m2pt_fail(opt->ctx, M2PT_ERR_FORMAT, "%s: %s: \"%s\" is %" PRId64 ", below 0",
                         fn, path, name, h->steps[i]);
        else if (st != M2PT_OK)
          st = reader_fail(opt, st);
      } else if (st == M2PT_OK) {
        st = m2pt_safetensors_read_f32(f, index, h->values[i * nstate + s - 1], param->numel);
        if (st != M2PT_OK)
          st = reader_fail(opt, st);
      }
      free(name);
      M2PT_TRY(st);
    }
  }
  return M2PT_OK;
}

m2pt_status m2pt_optimizer_load(m2pt_optimizer *opt, const char *path, const char *const *names)
{
  static const char fn[] = "m2pt_optimizer_load";
  M2PT_REQUIRE(NULL, opt != NULL, "%s: opt is NULL", fn);
  M2PT_REQUIRE(opt->ctx, path != NULL, "%s: path is NULL", fn);
  M2PT_TRY(check_names(opt, names, fn));
  m2pt_safetensors *f = NULL;
  m2pt_status st = m2pt_safetensors_open(path, &f);
  if (st != M2PT_OK)
    return reader_fail(opt, st);
  host_state h;
  st = check_header(opt, f, path);
  if (st == M2PT_OK)
    st = host_state_alloc(opt, &h, fn);
  if (st != M2PT_OK) {
    m2pt_safetensors_close(f);
    return st;
  }
  st = read_all(opt, f, path, names, &h);
  m2pt_safetensors_close(f);
  const size_t nstate = m2pt_optim_nstate(opt);
  for (size_t i = 0; st == M2PT_OK && i < opt->nparams; i++) {
    optim_param *p = &opt->params[i];
    for (size_t s = 0; st == M2PT_OK && s < nstate; s++)
      st = m2pt_tensor_write(p->state[s], h.values[i * nstate + s], p->param->numel);
    if (st == M2PT_OK)
      p->step = (uint64_t)h.steps[i];
  }
  host_state_free(&h);
  return st;
}
