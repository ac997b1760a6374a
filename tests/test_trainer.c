/* The trainer's API (issue 13): refused options and data leave nothing
 * built; parameters mirror the gradients; a step past the plan, a state of
 * another run are refused with the trainer unchanged; the hidden-state
 * forward refuses x of another width; a sync refusing a non-finite λ still
 * applies the weights changed in place. The trajectory against PyTorch, resume and the
 * synthetic task are tests/check_train.py's (through m2pt-train). main()
 * enters tests/data/train. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"

typedef struct fixture {
  m2pt_context *ctx;
  m2pt_model *model;
  m2pt_dataset *data;
} fixture;

static int setup(void **state)
{
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->ctx = test_context();
  m2pt_model_options mo = m2pt_model_options_default();
  mo.heads = 2;
  assert_ok(f->ctx, m2pt_model_load(f->ctx, "model.safetensors", &mo, &f->model));
  assert_ok(f->ctx, m2pt_model_add_pathways(f->model, "aux.safetensors", NULL, 0, 0.0f));
  assert_int_equal(m2pt_dataset_load(M2PT_DATA_HIDDEN, "data.npy", NULL, "labels.npy", &f->data),
                   M2PT_OK);
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  fixture *f = *state;
  m2pt_dataset_destroy(f->data);
  m2pt_model_destroy(f->model);
  m2pt_context_destroy(f->ctx);
  free(f);
  return 0;
}

static m2pt_trainer_options options(void)
{
  m2pt_trainer_options o = m2pt_trainer_options_default();
  o.batch = 4;
  o.steps = 2;
  o.lr = 1e-3;
  return o;
}

static void assert_message(const m2pt_context *ctx, const char *part)
{
  const char *msg = m2pt_last_error(ctx);
  if (strstr(msg, part) == NULL)
    fail_msg("message \"%s\" lacks \"%s\"", msg, part);
}

static void refused(void **state)
{
  fixture *f = *state;
  m2pt_trainer *t = NULL;
  m2pt_trainer_options o = options();
  assert_int_equal(m2pt_trainer_create(NULL, f->data, &o, &t), M2PT_ERR_INVALID_ARGUMENT);
  assert_int_equal(m2pt_trainer_create(f->model, f->data, NULL, &t), M2PT_ERR_INVALID_ARGUMENT);
  o.struct_size = 0;
  assert_int_equal(m2pt_trainer_create(f->model, f->data, &o, &t), M2PT_ERR_INVALID_ARGUMENT);
  assert_message(f->ctx, "struct_size");
  o = options();
  o.batch = 11;
  assert_int_equal(m2pt_trainer_create(f->model, f->data, &o, &t), M2PT_ERR_SHAPE);
  assert_message(f->ctx, "a batch of 11 from 10 samples");
  o = options();
  o.epochs = 1.0;
  assert_int_equal(m2pt_trainer_create(f->model, f->data, &o, &t), M2PT_ERR_INVALID_ARGUMENT);
  o = options();
  o.warmup_steps = 1;
  assert_int_equal(m2pt_trainer_create(f->model, f->data, &o, &t), M2PT_ERR_INVALID_ARGUMENT);
  assert_message(f->ctx, "cosine");
  o = options();
  o.pass.loss = M2PT_LOSS_MSE;
  assert_int_equal(m2pt_trainer_create(f->model, f->data, &o, &t), M2PT_ERR_INVALID_ARGUMENT);
  assert_message(f->ctx, "MSE needs float32 target labels");
  o = options();
  o.scale_lr = 1e-2;
  o.lr = 0.0;
  assert_int_equal(m2pt_trainer_create(f->model, f->data, &o, &t), M2PT_ERR_INVALID_ARGUMENT);
  assert_null(t);

  /* labels past the head's 3 classes */
  m2pt_dataset *bad = NULL;
  float x[2 * 5 * 16] = {0};
  int64_t y[2] = {0, 3};
  const m2pt_npy_array xa = {M2PT_DTYPE_F32, 3, {2, 5, 16}, 160, x},
                       ya = {M2PT_DTYPE_I64, 1, {2}, 2, y};
  assert_int_equal(m2pt_dataset_create(M2PT_DATA_HIDDEN, &xa, NULL, &ya, &bad), M2PT_OK);
  o = options();
  o.batch = 2;
  assert_int_equal(m2pt_trainer_create(f->model, bad, &o, &t), M2PT_ERR_INVALID_ARGUMENT);
  assert_message(f->ctx, "label 3 of sample 1 is out of range");
  assert_null(t);
  m2pt_dataset_destroy(bad);
}

static void params_and_steps(void **state)
{
  fixture *f = *state;
  m2pt_trainer_options o = options();
  m2pt_trainer *t = NULL;
  assert_ok(f->ctx, m2pt_trainer_create(f->model, f->data, &o, &t));
  m2pt_train_plan plan;
  assert_ok(f->ctx, m2pt_trainer_get_plan(t, &plan));
  assert_int_equal(plan.steps, 2);

  /* The parameters mirror the gradients: the same count and shapes. */
  m2pt_model_grads *g = NULL;
  m2pt_model_params *p = NULL;
  assert_ok(f->ctx, m2pt_model_grads_create(f->model, M2PT_FREEZE_NORM, &g));
  assert_ok(f->ctx, m2pt_model_params_create(f->model, g, &p));
  assert_int_equal(m2pt_model_params_count(p), m2pt_model_grads_count(g));
  for (size_t i = 0; i < m2pt_model_grads_count(g); ++i) {
    const m2pt_tensor *a = m2pt_model_params_tensor(p, i), *b = m2pt_model_grads_tensor(g, i);
    assert_int_equal(m2pt_tensor_numel(a), m2pt_tensor_numel(b));
    assert_int_equal(m2pt_tensor_ndim(a), m2pt_tensor_ndim(b));
  }
  assert_null(m2pt_model_params_tensor(p, m2pt_model_grads_count(g)));
  /* λ's parameter is the model's λ */
  size_t qkv;
  float lambda = -1.0f;
  assert_ok(f->ctx, m2pt_model_grads_find(g, "blocks.1.attn.qkv.cross_modal_scale", &qkv));
  assert_ok(f->ctx, m2pt_model_set_scale(f->model, 1, "attn.qkv", 0.25f));
  m2pt_model_params_destroy(p);
  assert_ok(f->ctx, m2pt_model_params_create(f->model, g, &p));
  assert_ok(f->ctx, m2pt_tensor_read(m2pt_model_params_tensor(p, qkv), &lambda, 1));
  assert_true(lambda == 0.25f);
  /* and sync writes it back */
  lambda = 0.5f;
  assert_ok(f->ctx, m2pt_tensor_write(m2pt_model_params_tensor(p, qkv), &lambda, 1));
  assert_ok(f->ctx, m2pt_model_params_sync(p));
  assert_ok(f->ctx, m2pt_model_get_scale(f->model, 1, "attn.qkv", &lambda));
  assert_true(lambda == 0.5f);
  assert_ok(f->ctx, m2pt_model_set_scale(f->model, 1, "attn.qkv", 0.0f));
  m2pt_model_params_destroy(p);
  assert_int_equal(m2pt_model_params_sync(NULL), M2PT_ERR_INVALID_ARGUMENT);
  m2pt_model_grads_destroy(g);

  m2pt_train_record r;
  assert_ok(f->ctx, m2pt_trainer_step(t, &r));
  assert_int_equal(r.step, 1);
  assert_int_equal(r.scales, 8);
  assert_string_equal(r.scale_names[0], "blocks.0.attn.qkv");
  assert_ok(f->ctx, m2pt_trainer_step(t, &r));
  assert_int_equal(m2pt_trainer_steps_done(t), 2);
  assert_int_equal(m2pt_trainer_step(t, &r), M2PT_ERR_INVALID_ARGUMENT);
  assert_message(f->ctx, "all 2 steps are done");

  double loss, acc;
  assert_int_equal(m2pt_trainer_evaluate(t, NULL, &loss, &acc), M2PT_ERR_INVALID_ARGUMENT);
  /* the hidden-state forward refuses x of another width, and writes no y */
  const size_t xs[3] = {2, 5, 8}, ys[2] = {2, 3};
  m2pt_tensor *x = NULL, *y = NULL;
  assert_ok(f->ctx, m2pt_tensor_create(f->ctx, 3, xs, &x));
  assert_ok(f->ctx, m2pt_tensor_create(f->ctx, 2, ys, &y));
  m2pt_forward_options fo = m2pt_forward_options_default();
  fo.output = M2PT_OUTPUT_LOGITS;
  assert_int_equal(m2pt_model_forward_hidden(f->model, x, NULL, &fo, y), M2PT_ERR_SHAPE);
  assert_message(f->ctx, "must be [B][N][16]");
  m2pt_tensor_destroy(x);
  m2pt_tensor_destroy(y);

  /* a state, then a trainer of another batch size refuses it */
  char dir[] = "/tmp/m2pt-trainer-XXXXXX";
  assert_non_null(mkdtemp(dir));
  assert_ok(f->ctx, m2pt_trainer_save_state(t, dir));
  char model_path[512];
  assert_int_equal(m2pt_trainer_state_model(dir, model_path, sizeof model_path), M2PT_OK);
  assert_non_null(strstr(model_path, "model-2.safetensors"));
  m2pt_trainer_destroy(t);
  o.batch = 2;
  assert_ok(f->ctx, m2pt_trainer_create(f->model, f->data, &o, &t));
  assert_int_equal(m2pt_trainer_load_state(t, dir), M2PT_ERR_INVALID_ARGUMENT);
  assert_message(f->ctx, "saved by another run");
  assert_int_equal(m2pt_trainer_steps_done(t), 0);
  assert_int_equal(m2pt_trainer_load_state(t, "/nonexistent/state"), M2PT_ERR_IO);
  m2pt_trainer_destroy(t);
  char path[600];
  const char *files[] = {"model-2.safetensors", "optimizer-2.safetensors", "state.json"};
  for (size_t i = 0; i < 3; ++i) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    assert_int_equal(unlink(path), 0);
  }
  assert_int_equal(rmdir(dir), 0);
}

/* A sync that fails on a non-finite λ still makes the model compute with
 * the weights changed in place: a forward after it is not the one before,
 * even where the weights were packed by repeated forwards (oneDNN). */
static void failed_sync_still_applies_weights(void **state)
{
  fixture *f = *state;
  const size_t xs[3] = {2, 5, 16}, ys[2] = {2, 3}, nx = 2 * 5 * 16;
  float *xh = test_alloc(nx * sizeof *xh);
  test_fill(xh, nx, 21);
  m2pt_tensor *x = test_tensor(f->ctx, 3, xs, xh), *y = NULL;
  assert_ok(f->ctx, m2pt_tensor_create(f->ctx, 2, ys, &y));
  m2pt_forward_options fo = m2pt_forward_options_default();
  fo.output = M2PT_OUTPUT_LOGITS;
  for (int i = 0; i < 3; ++i)
    assert_ok(f->ctx, m2pt_model_forward_hidden(f->model, x, NULL, &fo, y));
  float *before = test_read(f->ctx, y);

  m2pt_model_grads *g = NULL;
  m2pt_model_params *p = NULL;
  assert_ok(f->ctx, m2pt_model_grads_create(f->model, M2PT_FREEZE_NORM, &g));
  assert_ok(f->ctx, m2pt_model_params_create(f->model, g, &p));
  size_t w, scale;
  assert_ok(f->ctx, m2pt_model_grads_find(g, "blocks.0.mlp.fc2.weight", &w));
  assert_ok(f->ctx, m2pt_model_grads_find(g, "blocks.1.attn.qkv.cross_modal_scale", &scale));
  m2pt_tensor *wt = m2pt_model_params_tensor(p, w);
  const size_t nw = m2pt_tensor_numel(wt);
  float *zeros = calloc(nw, sizeof *zeros);
  assert_non_null(zeros);
  assert_ok(f->ctx, m2pt_tensor_write(wt, zeros, nw));
  const float nan = NAN;
  assert_ok(f->ctx, m2pt_tensor_write(m2pt_model_params_tensor(p, scale), &nan, 1));
  assert_int_equal(m2pt_model_params_sync(p), M2PT_ERR_FORMAT);

  assert_ok(f->ctx, m2pt_model_forward_hidden(f->model, x, NULL, &fo, y));
  float *after = test_read(f->ctx, y);
  assert_memory_not_equal(before, after, 2 * 3 * sizeof *after);
  free(after);
  free(before);
  free(zeros);
  free(xh);
  m2pt_model_params_destroy(p);
  m2pt_model_grads_destroy(g);
  m2pt_tensor_destroy(x);
  m2pt_tensor_destroy(y);
}

int main(int argc, char **argv)
{
  if (test_enter_data_dir(argc, argv, M2PT_TRAIN_DATA) != 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(refused, setup, teardown),
      cmocka_unit_test_setup_teardown(params_and_steps, setup, teardown),
      cmocka_unit_test_setup_teardown(failed_sync_still_applies_weights, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
