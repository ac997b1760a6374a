/* m2pt-train's command line (tools/train_args.c, issue 13): the trajectory
 * golden's flags parse to the values they name, and each malformed or
 * inconsistent line is refused with the usage status. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "train_args.h"

#define BASE "--model", "m.safetensors", "--heads", "2", "--data", "x.npy", "--labels", \
             "y.npy", "--batch", "4", "--lr", "1e-3", "--out", "o.safetensors"

static int parse(int argc, const char *const *argv, train_args *a)
{
  char *args[64];
  assert_true(argc < 64);
  for (int i = 0; i < argc; ++i)
    args[i] = (char *)(uintptr_t)argv[i];
  return train_args_parse(argc, args, a);
}
#define PARSE(a, ...)                                                      \
  parse((int)(sizeof((const char *[]){"m2pt-train", __VA_ARGS__}) / sizeof(char *)), \
        (const char *const[]){"m2pt-train", __VA_ARGS__}, a)

static void golden_flags(void **state)
{
  train_args a;
  assert_int_equal(PARSE(&a, BASE, "--aux", "aux.safetensors", "--steps", "10", "--no-shuffle",
                         "--optimizer", "adamw", "--min-lr", "1e-4", "--weight-decay", "0.05",
                         "--layer-decay", "0.75", "--schedule", "cosine", "--warmup-steps", "2",
                         "--clip-grad", "1.0", "--betas", "0.8,0.99", "--eps", "1e-6",
                         "--log", "-", "--freeze", "bias,norm", "--seed", "7",
                         "--val-data", "vx.npy", "--val-labels", "vy.npy"),
                   0);
  assert_string_equal(a.model, "m.safetensors");
  assert_string_equal(a.aux, "aux.safetensors");
  assert_int_equal(a.tool.model.heads, 2);
  assert_int_equal(a.train.kind, M2PT_DATA_HIDDEN);
  assert_string_equal(a.val.labels, "vy.npy");
  assert_int_equal(a.steps, 10);
  assert_true(a.epochs == 0.0);
  assert_int_equal(a.batch, 4);
  assert_int_equal(a.accum, 1);
  assert_false(a.shuffle);
  assert_int_equal(a.optimizer.kind, M2PT_OPTIMIZER_ADAMW);
  assert_true(a.optimizer.beta1 == 0.8f && a.optimizer.beta2 == 0.99f);
  assert_true(a.optimizer.eps == 1e-6f);
  assert_true(a.tool.model.eps < 0.0f); /* --eps is AdamW's, not LayerNorm's */
  assert_true(a.lr == 1e-3f && a.min_lr == 1e-4f && a.weight_decay == 0.05f);
  assert_true(a.layer_decay == 0.75f);
  assert_int_equal(a.schedule, M2PT_LR_COSINE);
  assert_int_equal(a.warmup_steps, 2);
  assert_true(a.clip_grad == 1.0f);
  assert_int_equal(a.freeze, M2PT_FREEZE_BIAS | M2PT_FREEZE_NORM);
  assert_int_equal(a.seed, 7);
  assert_int_equal(a.pass.seed, 7);
  assert_string_equal(a.log, "-");
  assert_true(a.scale_lr < 0.0f);

  assert_int_equal(PARSE(&a, BASE, "--epochs", "2.5", "--optimizer", "sgd", "--momentum", "0.9",
                         "--nesterov", "--data-ids", "i.npy", "--loss", "mse", "--pool", "mean",
                         "--ln-eps", "1e-12"),
                   TOOL_EXIT_USAGE); /* two data flags */
  assert_int_equal(PARSE(&a, "--model", "m", "--heads", "2", "--data-ids", "i.npy",
                         "--attention-mask", "m.npy", "--labels", "y.npy", "--batch", "4",
                         "--lr", "1", "--out", "o", "--epochs", "2.5", "--optimizer", "sgd",
                         "--momentum", "0.9", "--nesterov", "--loss", "mse", "--pool", "mean",
                         "--ln-eps", "1e-12", "--accum", "3", "--scale-lr", "0.1"),
                   0);
  assert_int_equal(a.train.kind, M2PT_DATA_IDS);
  assert_string_equal(a.train.mask, "m.npy");
  assert_true(a.epochs == 2.5);
  assert_int_equal(a.optimizer.kind, M2PT_OPTIMIZER_SGD);
  assert_true(a.optimizer.momentum == 0.9f);
  assert_true(a.optimizer.nesterov);
  assert_int_equal(a.pass.loss, M2PT_LOSS_MSE);
  assert_int_equal(a.pass.pool, M2PT_POOL_MEAN);
  assert_true(a.tool.model.eps == 1e-12f);
  assert_int_equal(a.accum, 3);
  assert_true(a.scale_lr == 0.1f);
  assert_int_equal(PARSE(&a, "--help"), -1);
  (void)state;
}

static void refused(void **state)
{
  train_args a;
  assert_int_equal(PARSE(&a, BASE), TOOL_EXIT_USAGE); /* neither --epochs nor --steps */
  assert_int_equal(PARSE(&a, BASE, "--epochs", "1", "--steps", "3"), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--frobnicate"), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--batch"), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--batch", "0"), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--lr", "nan"), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--lr", "-1"), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--optimizer", "adam"), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--optimizer", "sgd", "--betas", "0.9,0.9"),
                   TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--momentum", "0.9"), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--optimizer", "sgd", "--nesterov"),
                   TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--betas", "0.9"), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--betas", "0.9,1"), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--min-lr", "1e-5"), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--schedule", "cosine", "--min-lr", "1"),
                   TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--schedule", "cosine", "--warmup-steps",
                         "3"),
                   TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--epochs", "2", "--schedule", "cosine", "--warmup-steps",
                         "1", "--warmup-epochs", "1"),
                   TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--loss", "mse", "--label-smoothing", "0.1"),
                   TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--scale", "0.5"), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--freeze", "heads"), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--val-data", "v.npy"), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--val-data-ids", "v.npy", "--val-labels",
                         "l.npy"),
                   TOOL_EXIT_USAGE); /* another kind than the training data */
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--dropout", "1"), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--layer-decay", "0"), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--seed", "-1"), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--log", ""), TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, BASE, "--steps", "3", "--scale-lr", "0.1", "--freeze", "scale"),
                   TOOL_EXIT_USAGE);
  assert_int_equal(PARSE(&a, "--model", "m", "--steps", "3"), TOOL_EXIT_USAGE);
  (void)state;
}

int main(void)
{
  tool_name = "m2pt-train";
  const struct CMUnitTest tests[] = {cmocka_unit_test(golden_flags), cmocka_unit_test(refused)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
