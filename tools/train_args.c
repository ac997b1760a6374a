/* m2pt-train's command line (train_args.h). */
#include "train_args.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char train_usage[] =
    "usage: m2pt-train --model CKPT [--aux AUX [--layers LIST] [--scale L0] [--aux-bias]]\n"
    "                  --heads H (--data X.npy | --data-ids IDS.npy | --data-pixels P.npy)\n"
    "                  [--attention-mask M.npy] --labels Y.npy\n"
    "                  [--val-data X.npy | --val-data-ids IDS.npy | --val-data-pixels P.npy\n"
    "                   [--val-attention-mask M.npy] --val-labels Y.npy]\n"
    "                  [--num-classes C] [--pool token|mean] [--loss ce|mse]\n"
    "                  [--label-smoothing S] (--epochs E | --steps S) --batch B [--accum K]\n"
    "                  [--optimizer adamw|sgd] --lr LR [--min-lr LR] [--weight-decay WD]\n"
    "                  [--betas B1,B2] [--eps EPS] [--momentum M] [--nesterov]\n"
    "                  [--layer-decay D] [--scale-lr LR] [--schedule constant|cosine]\n"
    "                  [--warmup-steps W | --warmup-epochs W] [--clip-grad G]\n"
    "                  [--dropout P] [--drop-path P]\n"
    "                  [--freeze target,aux,scale,bias,norm,embeddings,head]\n"
    "                  [--seed S] [--no-shuffle] [--log LOG.jsonl|-] [--save-every N]\n"
    "                  [--resume STATE] [--device SEL] --out OUT.safetensors [--merge]\n"
    "--save-every N writes the state after every N steps to the directory OUT.state\n"
    "  (and after the last good step when a step fails); --resume OUT.state continues\n"
    "  from it with the same data and flags (--model and --aux are then read from\n"
    "  the state), logging the steps it takes.\n"
    "model options: --ln-eps E (LayerNorm eps; --eps is AdamW's), --naming timm|bert|hf-vit,\n"
    "  --prefix P, --post-norm, --no-final-norm, --verbose\n";

static void init(train_args *a)
{
  memset(a, 0, sizeof *a);
  tool_options_init(&a->tool);
  a->pass = m2pt_train_options_default();
  a->optimizer = m2pt_adamw_options_default();
  a->accum = 1;
  a->layer_decay = 1.0f;
  a->scale_lr = -1.0f;
  a->schedule = M2PT_LR_CONSTANT;
  a->shuffle = 1;
}

/* A float flag with its range [lo, hi] (hi_open: < hi). */
static int parse_range(const char *flag, const char *v, float lo, float hi, int hi_open,
                       float *out)
{
  if (!tool_parse_float(flag, v, out))
    return 0;
  if (*out < lo || *out > hi || (hi_open && *out == hi)) {
    tool_error("%s: %s is not in [%g, %g%s", flag, v, (double)lo, (double)hi, hi_open ? ")" : "]");
    return 0;
  }
  return 1;
}

static int parse_u64(const char *flag, const char *v, uint64_t *out)
{
  char *end;
  errno = 0;
  const unsigned long long x = strtoull(v, &end, 10);
  if (end == v || *end != '\0' || errno == ERANGE || v[0] == '-') {
    tool_error("%s: \"%s\" is not an integer in [0, 2^64)", flag, v);
    return 0;
  }
  *out = (uint64_t)x;
  return 1;
}

/* Which of the data flags argv[*i] is, for the training set or (val) the
 * validation set: 1 when consumed. */
static int data_flag(int argc, char **argv, int *i, const char *prefix, train_data_args *d,
                     int *ndata, int *bad)
{
  static const struct {
    const char *flag;
    m2pt_data_kind kind;
  } kinds[] = {{"data", M2PT_DATA_HIDDEN}, {"data-ids", M2PT_DATA_IDS},
               {"data-pixels", M2PT_DATA_PIXELS}};
  char flag[64];
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; ++k) {
    snprintf(flag, sizeof flag, "--%s%s", prefix, kinds[k].flag);
    if (tool_arg(argc, argv, i, flag, &d->data, bad)) {
      d->kind = kinds[k].kind;
      ++*ndata;
      return 1;
    }
  }
  snprintf(flag, sizeof flag, "--%sattention-mask", prefix);
  if (tool_arg(argc, argv, i, flag, &d->mask, bad))
    return 1;
  snprintf(flag, sizeof flag, "--%slabels", prefix);
  return tool_arg(argc, argv, i, flag, &d->labels, bad);
}

static int parse_betas(const char *v, m2pt_optimizer_options *o)
{
  char buf[128];
  const char *items[2];
  snprintf(buf, sizeof buf, "%s", v);
  if (tool_split_list("--betas", buf, items, 2) != 2) {
    tool_error("--betas: \"%s\" is not two numbers B1,B2", v);
    return 0;
  }
  return parse_range("--betas", items[0], 0.0f, 1.0f, 1, &o->beta1) &&
         parse_range("--betas", items[1], 0.0f, 1.0f, 1, &o->beta2);
}

/* Flags with a value that names a choice. */
static int parse_choice(const char *flag, const char *v, const char *const *names, size_t n,
                        int *out)
{
  for (size_t k = 0; k < n; ++k)
    if (!strcmp(v, names[k])) {
      *out = (int)k;
      return 1;
    }
  tool_error("%s: \"%s\" is not one of the choices (see --help)", flag, v);
  return 0;
}

/* Flags given, for the checks of the whole line. */
typedef struct seen {
  int lr, min_lr, betas, eps, momentum, nesterov, smoothing, warmup_epochs, scale_lr, epochs;
  int ntrain, nval;
} seen;

static int one_flag(int argc, char **argv, int *i, train_args *a, seen *s, int *bad)
{
  const char *v = NULL;
  const char *arg = argv[*i];
  int choice = 0;
  if (!strcmp(arg, "--no-shuffle"))
    a->shuffle = 0;
  else if (!strcmp(arg, "--nesterov"))
    a->optimizer.nesterov = s->nesterov = 1;
  else if (!strcmp(arg, "--merge"))
    a->merge = 1;
  else if (tool_arg(argc, argv, i, "--eps", &v, bad)) {
    s->eps = 1;
    *bad |= !*bad && !parse_range("--eps", v, 0.0f, 1.0f, 0, &a->optimizer.eps);
  } else if (tool_arg(argc, argv, i, "--ln-eps", &v, bad)) {
    *bad |= !*bad && !parse_range("--ln-eps", v, 0.0f, 1.0f, 0, &a->tool.model.eps);
  } else if (tool_option(argc, argv, i, &a->tool, bad)) {
  } else if (tool_arg(argc, argv, i, "--model", &a->model, bad) ||
             tool_arg(argc, argv, i, "--aux", &a->aux, bad) ||
             tool_arg(argc, argv, i, "--log", &a->log, bad) ||
             tool_arg(argc, argv, i, "--resume", &a->resume, bad) ||
             tool_arg(argc, argv, i, "--out", &a->out, bad) ||
             data_flag(argc, argv, i, "val-", &a->val, &s->nval, bad) ||
             data_flag(argc, argv, i, "", &a->train, &s->ntrain, bad)) {
  } else if (tool_arg(argc, argv, i, "--num-classes", &v, bad)) {
    *bad |= !*bad && !tool_parse_size("--num-classes", v, &a->num_classes);
  } else if (tool_arg(argc, argv, i, "--pool", &v, bad)) {
    static const char *const names[] = {"token", "mean"};
    *bad |= !*bad && !parse_choice("--pool", v, names, 2, &choice);
    a->pass.pool = choice == 0 ? M2PT_POOL_TOKEN : M2PT_POOL_MEAN;
  } else if (tool_arg(argc, argv, i, "--loss", &v, bad)) {
    static const char *const names[] = {"ce", "mse"};
    *bad |= !*bad && !parse_choice("--loss", v, names, 2, &choice);
    a->pass.loss = choice == 0 ? M2PT_LOSS_CROSS_ENTROPY : M2PT_LOSS_MSE;
  } else if (tool_arg(argc, argv, i, "--label-smoothing", &v, bad)) {
    s->smoothing = 1;
    *bad |= !*bad && !parse_range("--label-smoothing", v, 0.0f, 1.0f, 0,
                                  &a->pass.label_smoothing);
  } else if (tool_arg(argc, argv, i, "--epochs", &v, bad)) {
    float e = 0.0f;
    s->epochs = 1;
    *bad |= !*bad && !parse_range("--epochs", v, 0.0f, 1e9f, 0, &e);
    if (!*bad && e == 0.0f) {
      tool_error("--epochs must be > 0");
      *bad = 1;
    }
    a->epochs = e;
  } else if (tool_arg(argc, argv, i, "--steps", &v, bad)) {
    *bad |= !*bad && !tool_parse_size("--steps", v, &a->steps);
  } else if (tool_arg(argc, argv, i, "--batch", &v, bad)) {
    *bad |= !*bad && !tool_parse_size("--batch", v, &a->batch);
  } else if (tool_arg(argc, argv, i, "--accum", &v, bad)) {
    *bad |= !*bad && !tool_parse_size("--accum", v, &a->accum);
  } else if (tool_arg(argc, argv, i, "--optimizer", &v, bad)) {
    static const char *const names[] = {"sgd", "adamw"};
    *bad |= !*bad && !parse_choice("--optimizer", v, names, 2, &choice);
    a->optimizer.kind = choice == 0 ? M2PT_OPTIMIZER_SGD : M2PT_OPTIMIZER_ADAMW;
  } else if (tool_arg(argc, argv, i, "--lr", &v, bad)) {
    s->lr = 1;
    *bad |= !*bad && !parse_range("--lr", v, 0.0f, 1e6f, 0, &a->lr);
  } else if (tool_arg(argc, argv, i, "--min-lr", &v, bad)) {
    s->min_lr = 1;
    *bad |= !*bad && !parse_range("--min-lr", v, 0.0f, 1e6f, 0, &a->min_lr);
  } else if (tool_arg(argc, argv, i, "--weight-decay", &v, bad)) {
    *bad |= !*bad && !parse_range("--weight-decay", v, 0.0f, 1e6f, 0, &a->weight_decay);
  } else if (tool_arg(argc, argv, i, "--betas", &v, bad)) {
    s->betas = 1;
    *bad |= !*bad && !parse_betas(v, &a->optimizer);
  } else if (tool_arg(argc, argv, i, "--momentum", &v, bad)) {
    s->momentum = 1;
    *bad |= !*bad && !parse_range("--momentum", v, 0.0f, 1.0f, 0, &a->optimizer.momentum);
  } else if (tool_arg(argc, argv, i, "--layer-decay", &v, bad)) {
    *bad |= !*bad && !parse_range("--layer-decay", v, 0.0f, 1.0f, 0, &a->layer_decay);
    if (!*bad && a->layer_decay == 0.0f) {
      tool_error("--layer-decay must be in (0, 1]");
      *bad = 1;
    }
  } else if (tool_arg(argc, argv, i, "--scale-lr", &v, bad)) {
    s->scale_lr = 1;
    *bad |= !*bad && !parse_range("--scale-lr", v, 0.0f, 1e6f, 0, &a->scale_lr);
  } else if (tool_arg(argc, argv, i, "--schedule", &v, bad)) {
    static const char *const names[] = {"constant", "cosine"};
    *bad |= !*bad && !parse_choice("--schedule", v, names, 2, &choice);
    a->schedule = choice == 0 ? M2PT_LR_CONSTANT : M2PT_LR_COSINE;
  } else if (tool_arg(argc, argv, i, "--warmup-steps", &v, bad)) {
    *bad |= !*bad && !tool_parse_size("--warmup-steps", v, &a->warmup_steps);
  } else if (tool_arg(argc, argv, i, "--warmup-epochs", &v, bad)) {
    s->warmup_epochs = 1;
    *bad |= !*bad && !parse_range("--warmup-epochs", v, 0.0f, 1e9f, 0, &a->warmup_epochs);
  } else if (tool_arg(argc, argv, i, "--clip-grad", &v, bad)) {
    *bad |= !*bad && !parse_range("--clip-grad", v, 0.0f, 1e30f, 0, &a->clip_grad);
    if (!*bad && a->clip_grad == 0.0f) {
      tool_error("--clip-grad must be > 0");
      *bad = 1;
    }
  } else if (tool_arg(argc, argv, i, "--dropout", &v, bad)) {
    *bad |= !*bad && !parse_range("--dropout", v, 0.0f, 1.0f, 1, &a->pass.dropout);
  } else if (tool_arg(argc, argv, i, "--drop-path", &v, bad)) {
    float p = 0.0f;
    *bad |= !*bad && !parse_range("--drop-path", v, 0.0f, 1.0f, 1, &p);
    a->pass.drop_path = p;
  } else if (tool_arg(argc, argv, i, "--freeze", &v, bad)) {
    if (!*bad && m2pt_freeze_parse(v, &a->freeze) != M2PT_OK) {
      tool_error("--freeze: %s", m2pt_last_error(NULL));
      *bad = 1;
    }
  } else if (tool_arg(argc, argv, i, "--seed", &v, bad)) {
    *bad |= !*bad && !parse_u64("--seed", v, &a->seed);
    a->pass.seed = a->seed;
  } else if (tool_arg(argc, argv, i, "--save-every", &v, bad)) {
    *bad |= !*bad && !tool_parse_size("--save-every", v, &a->save_every);
  } else {
    return 0;
  }
  return 1;
}

/* The checks of the whole line; reports each problem, returns 0 if any. */
static int check(const train_args *a, const seen *s)
{
  int ok = 1;
#define NEED(cond, ...)        \
  do {                         \
    if (!(cond)) {             \
      tool_error(__VA_ARGS__); \
      ok = 0;                  \
    }                          \
  } while (0)
  NEED(a->model != NULL, "--model is required");
  NEED(a->out != NULL, "--out is required");
  NEED(a->tool.model.heads != 0, "--heads is required");
  NEED(s->ntrain == 1, "give exactly one of --data, --data-ids, --data-pixels (%d given)",
       s->ntrain);
  NEED(a->train.labels != NULL, "--labels is required");
  NEED(s->nval <= 1, "give at most one of --val-data, --val-data-ids, --val-data-pixels");
  NEED((a->val.data == NULL) == (a->val.labels == NULL),
       "a validation set needs both its data and --val-labels");
  NEED(a->val.mask == NULL || a->val.data != NULL, "--val-attention-mask without validation data");
  NEED(a->val.data == NULL || a->val.kind == a->train.kind,
       "the validation data must be of the training data's kind");
  NEED((a->epochs != 0.0) + (a->steps != 0) == 1, "give exactly one of --epochs and --steps");
  NEED(a->batch != 0, "--batch is required");
  NEED(s->lr, "--lr is required");
  NEED(a->aux != NULL || (!a->tool.has_scale && a->tool.layer_list == NULL && !a->tool.aux_bias),
       "--scale, --layers and --aux-bias need --aux");
  const int adamw = a->optimizer.kind == M2PT_OPTIMIZER_ADAMW;
  NEED(adamw || (!s->betas && !s->eps), "--betas and --eps are AdamW's (--optimizer adamw)");
  NEED(!adamw || (!s->momentum && !s->nesterov),
       "--momentum and --nesterov are SGD's (--optimizer sgd)");
  NEED(!a->optimizer.nesterov || a->optimizer.momentum > 0.0f, "--nesterov needs --momentum > 0");
  NEED(a->pass.loss == M2PT_LOSS_CROSS_ENTROPY || !s->smoothing,
       "--label-smoothing is for --loss ce");
  const int cosine = a->schedule == M2PT_LR_COSINE;
  NEED(cosine || (!s->min_lr && !a->warmup_steps && !s->warmup_epochs),
       "--min-lr, --warmup-steps and --warmup-epochs need --schedule cosine");
  NEED(!a->warmup_steps || !s->warmup_epochs, "give one of --warmup-steps and --warmup-epochs");
  NEED(a->min_lr <= a->lr, "--min-lr %g is above --lr %g", (double)a->min_lr, (double)a->lr);
  NEED(!a->steps || a->warmup_steps < a->steps, "--warmup-steps %zu is not below --steps %zu",
       a->warmup_steps, a->steps);
  NEED(a->epochs == 0.0 || !s->warmup_epochs || a->warmup_epochs < a->epochs,
       "--warmup-epochs %g is not below --epochs %g", (double)a->warmup_epochs, a->epochs);
  NEED(!s->scale_lr || !(a->freeze & M2PT_FREEZE_SCALE),
       "--scale-lr sets the rate of λ, which --freeze scale freezes");
#undef NEED
  return ok;
}

int train_args_parse(int argc, char **argv, train_args *a)
{
  init(a);
  seen s;
  memset(&s, 0, sizeof s);
  int bad = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(train_usage, stdout);
      return -1;
    }
    if (!one_flag(argc, argv, &i, a, &s, &bad)) {
      tool_error("unknown argument \"%s\" (see --help)", argv[i]);
      bad = 1;
    }
  }
  if (!tool_options_finish(&a->tool))
    bad = 1;
  /* A value already refused would only add echoes of itself. */
  if (!bad && !check(a, &s))
    bad = 1;
  return bad ? TOOL_EXIT_USAGE : 0;
}
