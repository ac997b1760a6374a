/* Optimizer state files (m2pt_optimizer_save / m2pt_optimizer_load): a run
 * interrupted by a save and resumed from the file in a new optimizer gives
 * the same bits as one never interrupted, for AdamW and SGD with and
 * without momentum; the file's names, dtypes and metadata; and every
 * hostile or mismatched file refused with its status, leaving the optimizer
 * as it was. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

enum { NPARAMS = 2, STEPS = 5 };

static const size_t shape0[2] = {5, 7}, shape1[1] = {13};
static const char *const names[NPARAMS] = {"blocks.0.attn.qkv.weight",
                                           "blocks.0.attn.qkv.cross_modal_scale"};

/* Two parameters in two groups, and their gradients. */
typedef struct run {
  m2pt_optimizer *opt;
  m2pt_tensor *p[NPARAMS], *g[NPARAMS];
} run;

/* A run of `o` whose parameters start at `init` (NULL: the seeded values). */
static run run_make(m2pt_context *ctx, const m2pt_optimizer_options *o, float *const init[2])
{
  run r;
  assert_ok(ctx, m2pt_optimizer_create(ctx, o, &r.opt));
  size_t g0 = 0, g1 = 0;
  assert_ok(ctx, m2pt_optimizer_add_group(r.opt, 0.05f, 0.01f, &g0));
  assert_ok(ctx, m2pt_optimizer_add_group(r.opt, 0.2f, 0.0f, &g1));
  const size_t *shapes[NPARAMS] = {shape0, shape1};
  const size_t ndims[NPARAMS] = {2, 1}, numel[NPARAMS] = {35, 13};
  for (size_t i = 0; i < NPARAMS; i++) {
    float *v = init ? NULL : test_random_floats(numel[i], 1500 + i, 1.0f);
    r.p[i] = test_tensor(ctx, ndims[i], shapes[i], init ? init[i] : v);
    r.g[i] = test_tensor(ctx, ndims[i], shapes[i], NULL);
    free(v);
    assert_ok(ctx, m2pt_optimizer_add_param(r.opt, i == 0 ? g0 : g1, r.p[i], r.g[i]));
  }
  return r;
}

static void run_free(run *r)
{
  m2pt_optimizer_destroy(r->opt);
  for (size_t i = 0; i < NPARAMS; i++) {
    m2pt_tensor_destroy(r->p[i]);
    m2pt_tensor_destroy(r->g[i]);
  }
}

/* Steps first .. last − 1, each with its own gradients (seeded by step). */
static void run_steps(m2pt_context *ctx, run *r, size_t first, size_t last)
{
  for (size_t s = first; s < last; s++) {
    for (size_t i = 0; i < NPARAMS; i++) {
      const size_t n = m2pt_tensor_numel(r->g[i]);
      float *v = test_random_floats(n, 1600 + 10 * s + i, 1.0f);
      assert_ok(ctx, m2pt_tensor_write(r->g[i], v, n));
      free(v);
    }
    assert_ok(ctx, m2pt_optimizer_step(r->opt));
  }
}

static void assert_same_file(const char *a, const char *b)
{
  size_t na = 0, nb = 0;
  unsigned char *x = test_read_file(a, &na), *y = test_read_file(b, &nb);
  assert_int_equal(na, nb);
  assert_memory_equal(x, y, na);
  free(x);
  free(y);
}

/* STEPS steps in one go against k steps, a save, a new optimizer (and new
 * parameter tensors holding the saved values) loading the file, and the
 * remaining steps: the parameters and the final state files, bit for bit. */
static void check_resume(m2pt_context *ctx, const m2pt_optimizer_options *o,
                         const char *const *keys, size_t k)
{
  run whole = run_make(ctx, o, NULL);
  run_steps(ctx, &whole, 0, STEPS);

  run first = run_make(ctx, o, NULL);
  run_steps(ctx, &first, 0, k);
  assert_ok(ctx, m2pt_optimizer_save(first.opt, test_tmp_path("k.safetensors"), keys));
  float *saved[NPARAMS];
  for (size_t i = 0; i < NPARAMS; i++)
    saved[i] = test_read(ctx, first.p[i]);
  run_free(&first);

  run rest = run_make(ctx, o, saved);
  assert_ok(ctx, m2pt_optimizer_load(rest.opt, test_tmp_path("k.safetensors"), keys));
  run_steps(ctx, &rest, k, STEPS);
  for (size_t i = 0; i < NPARAMS; i++) {
    test_assert_same_bits(ctx, whole.p[i], rest.p[i]);
    free(saved[i]);
  }
  assert_ok(ctx, m2pt_optimizer_save(whole.opt, test_tmp_path("whole.safetensors"), keys));
  assert_ok(ctx, m2pt_optimizer_save(rest.opt, test_tmp_path("rest.safetensors"), keys));
  assert_same_file(test_tmp_path("whole.safetensors"), test_tmp_path("rest.safetensors"));
  run_free(&whole);
  run_free(&rest);
}

static m2pt_optimizer_options sgd_momentum(int nesterov)
{
  m2pt_optimizer_options o = m2pt_sgd_options_default();
  o.momentum = 0.9f;
  o.nesterov = nesterov;
  return o;
}

static void resume_adamw(void **state)
{
  const m2pt_optimizer_options o = m2pt_adamw_options_default();
  check_resume(*state, &o, names, 2);
  check_resume(*state, &o, NULL, 3);
  check_resume(*state, &o, names, 0); /* a save before any step */
}

static void resume_sgd(void **state)
{
  const m2pt_optimizer_options momentum = sgd_momentum(0), nesterov = sgd_momentum(1);
  const m2pt_optimizer_options plain = m2pt_sgd_options_default();
  check_resume(*state, &momentum, names, 2);
  check_resume(*state, &nesterov, NULL, 1);
  check_resume(*state, &plain, names, 4);
}

/* The file as a PyTorch user would read it: "<name>.exp_avg" and
 * "<name>.exp_avg_sq" F32 in the parameter's shape, "<name>.step" an I64
 * scalar, the optimizer in the metadata; indices without names. */
static void file_layout(void **state)
{
  m2pt_context *ctx = *state;
  const m2pt_optimizer_options o = m2pt_adamw_options_default();
  run r = run_make(ctx, &o, NULL);
  run_steps(ctx, &r, 0, 3);
  const char *path = test_tmp_path("layout.safetensors");
  assert_ok(ctx, m2pt_optimizer_save(r.opt, path, names));
  m2pt_safetensors *f = NULL;
  assert_ok(NULL, m2pt_safetensors_open(path, &f));
  assert_int_equal(m2pt_safetensors_count(f), 6);
  static const char *const keys[3] = {"step", "exp_avg", "exp_avg_sq"};
  for (size_t i = 0; i < NPARAMS; i++)
    for (size_t k = 0; k < 3; k++) {
      char name[96];
      snprintf(name, sizeof name, "%s.%s", names[i], keys[k]);
      size_t index = 0;
      assert_ok(NULL, m2pt_safetensors_find(f, name, &index));
      m2pt_safetensors_info info;
      assert_ok(NULL, m2pt_safetensors_info_at(f, index, &info));
      if (k == 0) {
        int64_t step = -1;
        assert_int_equal(info.dtype, M2PT_DTYPE_I64);
        assert_int_equal(info.ndim, 0);
        assert_ok(NULL, m2pt_safetensors_read_raw(f, index, &step, sizeof step));
        assert_int_equal(step, 3);
      } else {
        assert_int_equal(info.dtype, M2PT_DTYPE_F32);
        assert_int_equal(info.ndim, m2pt_tensor_ndim(r.p[i]));
        assert_int_equal(info.shape[0], m2pt_tensor_dim(r.p[i], 0));
      }
    }
  const char *value = NULL;
  assert_ok(NULL, m2pt_safetensors_metadata(f, "optimizer", &value));
  assert_string_equal(value, "adamw");
  assert_ok(NULL, m2pt_safetensors_metadata(f, "format", &value));
  assert_string_equal(value, "m2pt.optimizer_state.v1");
  assert_ok(NULL, m2pt_safetensors_metadata(f, "params", &value));
  assert_string_equal(value, "2");
  m2pt_safetensors_close(f);
  /* Without names: PyTorch's state_dict keys, the indices. */
  assert_ok(ctx, m2pt_optimizer_save(r.opt, path, NULL));
  assert_ok(NULL, m2pt_safetensors_open(path, &f));
  size_t index = 0;
  assert_ok(NULL, m2pt_safetensors_find(f, "1.exp_avg_sq", &index));
  m2pt_safetensors_close(f);
  /* SGD with momentum keeps PyTorch's momentum_buffer. */
  const m2pt_optimizer_options s = sgd_momentum(0);
  run q = run_make(ctx, &s, NULL);
  assert_ok(ctx, m2pt_optimizer_save(q.opt, path, NULL));
  assert_ok(NULL, m2pt_safetensors_open(path, &f));
  assert_int_equal(m2pt_safetensors_count(f), 4);
  assert_ok(NULL, m2pt_safetensors_find(f, "0.momentum_buffer", &index));
  m2pt_safetensors_close(f);
  run_free(&q);
  run_free(&r);
}

/* ---- Hostile and mismatched files ---- */

/* One change to a good file's contents. */
typedef enum edit {
  EDIT_NONE,
  EDIT_STEP_F64,    /* the step as F64 (same size) */
  EDIT_AVG_I32,     /* exp_avg as I32 (same size) */
  EDIT_AVG_SHAPE,   /* exp_avg as [7][5] */
  EDIT_STEP_NEG,    /* a step of −1 */
  EDIT_STEP_SHAPE,  /* the step as [1], not a scalar */
  EDIT_RENAME,      /* exp_avg_sq under another parameter's name */
  EDIT_EXTRA,       /* one tensor more */
  EDIT_DROP,        /* one tensor fewer */
  EDIT_KIND,        /* optimizer "sgd" */
  EDIT_BETA,        /* another beta1 */
  EDIT_NO_META,     /* no metadata: a plain checkpoint */
  EDIT_COUNT
} edit;

static const m2pt_status edit_status[EDIT_COUNT] = {
    M2PT_OK,           M2PT_ERR_FORMAT, M2PT_ERR_FORMAT, M2PT_ERR_SHAPE,
    M2PT_ERR_FORMAT,   M2PT_ERR_SHAPE,  M2PT_ERR_NOT_FOUND, M2PT_ERR_FORMAT,
    M2PT_ERR_FORMAT,   M2PT_ERR_FORMAT, M2PT_ERR_FORMAT, M2PT_ERR_FORMAT,
};

/* What the refusal's message must name. */
static const char *const edit_words[EDIT_COUNT] = {
    "",      "F64", "I32",      "[7][5]",   "below 0", "a scalar",
    "has no tensor", "tensors", "tensors", "optimizer = sgd", "beta1", "not an optimizer state",
};

/* Rewrites the file `good` into `out` with edit e. */
static void write_edited(const char *good, const char *out, edit e)
{
  m2pt_safetensors *f = NULL;
  assert_ok(NULL, m2pt_safetensors_open(good, &f));
  m2pt_safetensors_writer *w = NULL;
  assert_ok(NULL, m2pt_safetensors_writer_create(out, &w));
  for (size_t i = 0; e != EDIT_NO_META && i < m2pt_safetensors_metadata_count(f); i++) {
    const char *key = NULL, *value = NULL;
    assert_ok(NULL, m2pt_safetensors_metadata_at(f, i, &key, &value));
    if (e == EDIT_KIND && strcmp(key, "optimizer") == 0)
      value = "sgd";
    if (e == EDIT_BETA && strcmp(key, "beta1") == 0)
      value = "0.8";
    assert_ok(NULL, m2pt_safetensors_writer_metadata(w, key, value));
  }
  const int64_t negative = -1;
  const size_t one = 1, swapped[2] = {7, 5};
  int dropped = 0;
  for (size_t i = 0; i < m2pt_safetensors_count(f); i++) {
    m2pt_safetensors_info info;
    assert_ok(NULL, m2pt_safetensors_info_at(f, i, &info));
    const void *data = NULL;
    size_t nbytes = 0;
    assert_ok(NULL, m2pt_safetensors_raw(f, i, &data, &nbytes));
    const int step0 = strcmp(info.name, "0.step") == 0;
    const int avg0 = strcmp(info.name, "0.exp_avg") == 0;
    const char *name = info.name;
    m2pt_dtype dtype = info.dtype;
    size_t ndim = info.ndim;
    const size_t *shape = info.shape;
    if (e == EDIT_DROP && !dropped && strcmp(info.name, "1.exp_avg_sq") == 0) {
      dropped = 1;
      continue;
    }
    if (e == EDIT_STEP_F64 && step0)
      dtype = M2PT_DTYPE_F64;
    if (e == EDIT_AVG_I32 && avg0)
      dtype = M2PT_DTYPE_I32;
    if (e == EDIT_AVG_SHAPE && avg0)
      shape = swapped;
    if (e == EDIT_STEP_NEG && step0)
      data = &negative;
    if (e == EDIT_STEP_SHAPE && step0) {
      ndim = 1;
      shape = &one;
    }
    if (e == EDIT_RENAME && strcmp(info.name, "1.exp_avg_sq") == 0)
      name = "2.exp_avg_sq";
    assert_ok(NULL, m2pt_safetensors_writer_add(w, name, dtype, ndim, shape, data, nbytes));
  }
  const float extra = 1.0f; /* borrowed by the writer until finish */
  if (e == EDIT_EXTRA)
    assert_ok(NULL, m2pt_safetensors_writer_add(w, "extra", M2PT_DTYPE_F32, 1, &one, &extra, 4));
  assert_ok(NULL, m2pt_safetensors_writer_finish(w));
  m2pt_safetensors_writer_destroy(w);
  m2pt_safetensors_close(f);
}

/* Loads `path` into r (with `keys`), expecting `want` and a message holding
 * `words`; then r's state, saved without names, must be the bytes of the
 * file `before`. */
static void refused(m2pt_context *ctx, run *r, const char *path, const char *const *keys,
                    m2pt_status want, const char *words, const char *before)
{
  assert_status(ctx, m2pt_optimizer_load(r->opt, path, keys), want);
  if (strstr(m2pt_last_error(ctx), words) == NULL) {
    print_error("\"%s\" does not say \"%s\"\n", m2pt_last_error(ctx), words);
    fail();
  }
  assert_ok(ctx, m2pt_optimizer_save(r->opt, test_tmp_path("after.safetensors"), NULL));
  assert_same_file(before, test_tmp_path("after.safetensors"));
}

static void hostile_files(void **state)
{
  m2pt_context *ctx = *state;
  const m2pt_optimizer_options o = m2pt_adamw_options_default();
  /* The file: two steps of one run. The victim: a run with a step of its
   * own, whose state every refusal must leave as it is. */
  run src = run_make(ctx, &o, NULL), victim = run_make(ctx, &o, NULL);
  run_steps(ctx, &src, 0, 2);
  run_steps(ctx, &victim, 3, 4);
  char good[1024], before[1024];
  snprintf(good, sizeof good, "%s", test_tmp_path("good.safetensors"));
  snprintf(before, sizeof before, "%s", test_tmp_path("before.safetensors"));
  assert_ok(ctx, m2pt_optimizer_save(src.opt, good, NULL));
  assert_ok(ctx, m2pt_optimizer_save(victim.opt, before, NULL));
  char edited[1024];
  snprintf(edited, sizeof edited, "%s", test_tmp_path("edited.safetensors"));
  for (int e = EDIT_STEP_F64; e < EDIT_COUNT; e++) {
    write_edited(good, edited, (edit)e);
    refused(ctx, &victim, edited, NULL, edit_status[e], edit_words[e], before);
  }
  /* The unedited rewrite loads: the edits alone are refused. */
  write_edited(good, edited, EDIT_NONE);
  assert_ok(ctx, m2pt_optimizer_load(victim.opt, edited, NULL));
  assert_ok(ctx, m2pt_optimizer_save(victim.opt, before, NULL));

  /* Truncated: every length short of the whole, a sample of them. */
  size_t size = 0;
  unsigned char *bytes = test_read_file(good, &size);
  const size_t cuts[] = {0, 4, 8, 60, size / 2, size - 4, size - 1};
  for (size_t c = 0; c < sizeof cuts / sizeof *cuts; c++) {
    test_write_file(edited, bytes, cuts[c]);
    refused(ctx, &victim, edited, NULL, M2PT_ERR_FORMAT, "", before);
  }
  free(bytes);
  refused(ctx, &victim, test_tmp_path("missing.safetensors"), NULL, M2PT_ERR_IO, "", before);
  refused(ctx, &victim, test_tmp_dir(), NULL, M2PT_ERR_IO, "", before);

  /* Names: saved without, loaded with them. */
  refused(ctx, &victim, good, names, M2PT_ERR_NOT_FOUND, names[0], before);
  /* Another optimizer's file: SGD with momentum; an SGD without. */
  const m2pt_optimizer_options s = sgd_momentum(0);
  run sgd = run_make(ctx, &s, NULL);
  assert_ok(ctx, m2pt_optimizer_save(sgd.opt, edited, NULL));
  refused(ctx, &victim, edited, NULL, M2PT_ERR_FORMAT, "optimizer = sgd", before);
  const m2pt_optimizer_options n = sgd_momentum(1);
  run nesterov = run_make(ctx, &n, NULL);
  assert_status(ctx, m2pt_optimizer_load(nesterov.opt, edited, NULL), M2PT_ERR_FORMAT);
  assert_non_null(strstr(m2pt_last_error(ctx), "nesterov"));
  /* Another parameter count: an optimizer of one parameter. */
  m2pt_optimizer *one = NULL;
  size_t group = 0;
  assert_ok(ctx, m2pt_optimizer_create(ctx, &o, &one));
  assert_ok(ctx, m2pt_optimizer_add_group(one, 0.1f, 0.0f, &group));
  assert_ok(ctx, m2pt_optimizer_add_param(one, group, src.p[0], src.g[0]));
  assert_status(ctx, m2pt_optimizer_load(one, good, NULL), M2PT_ERR_FORMAT);
  assert_non_null(strstr(m2pt_last_error(ctx), "params"));
  m2pt_optimizer_destroy(one);
  /* Parameters of other shapes, the same count and names. */
  m2pt_optimizer *other = NULL;
  const size_t wide[2] = {7, 5};
  m2pt_tensor *p = test_tensor(ctx, 2, wide, NULL), *g = test_tensor(ctx, 2, wide, NULL);
  assert_ok(ctx, m2pt_optimizer_create(ctx, &o, &other));
  assert_ok(ctx, m2pt_optimizer_add_group(other, 0.1f, 0.0f, &group));
  assert_ok(ctx, m2pt_optimizer_add_param(other, group, p, g));
  assert_ok(ctx, m2pt_optimizer_add_param(other, group, src.p[1], src.g[1]));
  assert_status(ctx, m2pt_optimizer_load(other, good, NULL), M2PT_ERR_SHAPE);
  assert_non_null(strstr(m2pt_last_error(ctx), "[5][7]"));
  m2pt_optimizer_destroy(other);
  m2pt_tensor_destroy(p);
  m2pt_tensor_destroy(g);
  run_free(&sgd);
  run_free(&nesterov);
  run_free(&victim);
  run_free(&src);
}

static void bad_arguments(void **state)
{
  m2pt_context *ctx = *state;
  const m2pt_optimizer_options o = m2pt_adamw_options_default();
  run r = run_make(ctx, &o, NULL);
  const char *path = test_tmp_path("args.safetensors");
  const char *const repeated[NPARAMS] = {"w", "w"}, *const empty[NPARAMS] = {"w", ""};
  const char *const holes[NPARAMS] = {NULL, "w"};
  assert_status(NULL, m2pt_optimizer_save(NULL, path, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_save(r.opt, NULL, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_save(r.opt, "", NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_save(r.opt, path, repeated), M2PT_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(m2pt_last_error(ctx), "both named"));
  assert_status(ctx, m2pt_optimizer_save(r.opt, path, empty), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_save(r.opt, path, holes), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_save(r.opt, test_tmp_dir(), NULL), M2PT_ERR_IO);
  char missing[1100];
  snprintf(missing, sizeof missing, "%s/no/such/dir/state.safetensors", test_tmp_dir());
  assert_status(ctx, m2pt_optimizer_save(r.opt, missing, NULL), M2PT_ERR_IO);
  assert_ok(ctx, m2pt_optimizer_save(r.opt, path, NULL));
  assert_status(NULL, m2pt_optimizer_load(NULL, path, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_load(r.opt, NULL, NULL), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_load(r.opt, path, repeated), M2PT_ERR_INVALID_ARGUMENT);
  assert_status(ctx, m2pt_optimizer_load(r.opt, path, holes), M2PT_ERR_INVALID_ARGUMENT);
  /* An optimizer with no parameters saves and loads an empty state. */
  m2pt_optimizer *none = NULL;
  assert_ok(ctx, m2pt_optimizer_create(ctx, &o, &none));
  assert_ok(ctx, m2pt_optimizer_save(none, path, NULL));
  assert_ok(ctx, m2pt_optimizer_load(none, path, NULL));
  m2pt_optimizer_destroy(none);
  run_free(&r);
}

static int setup(void **state)
{
  if (test_tmp_dir_make("m2pt-optim-state") != 0)
    return -1;
  return test_setup_context(state);
}

static int teardown(void **state)
{
  const int a = test_teardown_context(state);
  return test_tmp_dir_remove() == 0 ? a : -1;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(resume_adamw), cmocka_unit_test(resume_sgd),
      cmocka_unit_test(file_layout),  cmocka_unit_test(hostile_files),
      cmocka_unit_test(bad_arguments),
  };
  return test_run_matrix("optim_state", 0, tests, setup, teardown);
}
