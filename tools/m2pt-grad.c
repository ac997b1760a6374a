/* m2pt-grad: the loss of one batch and the gradient of every trainable
 * parameter, written as safetensors under the parameters' checkpoint names
 * (issue 12), for inspecting gradients and scripting checks. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool_util.h"

static void usage(FILE *f)
{
  fprintf(f,
          "usage: m2pt-grad --model CKPT [--aux AUX --scale L [--layers LIST]] --heads H\n"
          "                 (--input X.npy | --input-ids IDS.npy | --pixels P.npy)\n"
          "                 [--attention-mask M.npy] --labels Y.npy [--num-classes C]\n"
          "                 [--pool token|mean] [--loss ce|mse] [--label-smoothing S]\n"
          "                 [--freeze LIST] [--dropout P] [--drop-path P] [--seed S]\n"
          "                 [--step N] [--recompute] --out GRADS.safetensors\n"
          "Runs one training forward and backward of CKPT on a batch and writes the loss\n"
          "(__metadata__ \"loss\", a decimal string) and the gradient of every trainable\n"
          "parameter under its checkpoint name (blocks.0.attn.qkv.cross_modal_scale,\n"
          "head.weight, ...), as F32. The file is written atomically.\n"
          "Inputs (exactly one):\n"
          "  --input X.npy     hidden states [B][N][dim] (f32): the blocks, final norm,\n"
          "                    pooling and head only\n"
          "  --input-ids IDS.npy  token ids [B][N] (<i4 or <i8): BERT's embeddings first\n"
          "  --token-type-ids T.npy  token types [B][N] (default 0)\n"
          "  --pixels P.npy    images [B][C][H][W] (f32, already normalized)\n"
          "  --attention-mask M.npy  [B][N] of 1 for tokens and 0 for padding\n"
          "  --labels Y.npy    class indices [B] (<i4 or <i8) for ce; targets [B][k] (f32)\n"
          "                    for mse, k the head's classes, or dim without a head\n"
          "Training:\n"
          "  --loss ce|mse     cross-entropy on the head's logits (default) or mean\n"
          "                    squared error on the head's output (the pooled feature\n"
          "                    when the checkpoint has no head)\n"
          "  --label-smoothing S  cross-entropy's label smoothing in [0, 1] (default 0)\n"
          "  --num-classes C   the head's classes: checked against the checkpoint's head,\n"
          "                    or, without one, a head of C classes is created from --seed\n"
          "                    (truncated normal, std 0.02; zero bias) and its gradients\n"
          "                    written too\n"
          "  --dropout P       dropout in [0, 1) on the embeddings' output and the head's\n"
          "                    input (default 0)\n"
          "  --drop-path P     stochastic depth in [0, 1), timm's drop_path_rate: block i\n"
          "                    drops each residual branch per sample with probability\n"
          "                    linspace(0, P, depth)[i] (default 0; model_grad.h)\n"
          "  --seed S          the created head's seed, and the masks' (default 0)\n"
          "  --step N          the training step in the masks' key (default 0)\n"
          "  --pool token|mean the class token, or the masked mean (tokens after the class\n"
          "                    token for pixels); default: the checkpoint's (model.h);\n"
          "                    also avg (= mean) and pooler\n"
          "  --freeze LIST     frozen categories, comma-separated: target, aux, scale,\n"
          "                    bias, norm, embeddings, head (no gradient written)\n"
          "  --recompute       activation checkpointing: re-run each block's forward\n"
          "                    before its backward instead of keeping its activations\n"
          "                    (same gradients, less memory)\n"
          "%s"
          "Exit status: 0 done, 1 failure (message on stderr), 2 bad usage.\n",
          tool_options_help);
}

typedef struct grad_args {
  tool_input_args in;
  const char *labels, *out, *freeze;
  size_t classes;
  uint64_t seed;
  unsigned freeze_flags;
  m2pt_train_options train;
  tool_options o;
} grad_args;

static int parse_choice(const char *flag, const char *v, const char *const *names,
                        const int *values, size_t count, int *out)
{
  for (size_t i = 0; i < count; i++)
    if (!strcmp(v, names[i])) {
      *out = values[i];
      return 1;
    }
  tool_error("%s: \"%s\" is not one of the choices (see --help)", flag, v);
  return 0;
}

/* A dropout probability in [0, 1). */
static int parse_rate(const char *flag, const char *v, float *out)
{
  if (!tool_parse_float(flag, v, out))
    return 0;
  if (!(*out >= 0.0f && *out < 1.0f)) {
    tool_error("%s: %s is not in [0, 1)", flag, v);
    return 0;
  }
  return 1;
}

static int parse_value(int argc, char **argv, int *i, grad_args *a, int *bad)
{
  static const char *const pools[] = {"token", "mean", "avg", "pooler"};
  static const int pool_values[] = {M2PT_POOL_TOKEN, M2PT_POOL_MEAN, M2PT_POOL_MEAN,
                                    M2PT_POOL_POOLER};
  static const char *const losses[] = {"ce", "mse"};
  static const int loss_values[] = {M2PT_LOSS_CROSS_ENTROPY, M2PT_LOSS_MSE};
  const char *v = NULL;
  int choice = 0;
  size_t seed = 0;
  if (tool_arg(argc, argv, i, "--pool", &v, bad)) {
    *bad = *bad || !parse_choice("--pool", v, pools, pool_values, 4, &choice);
    a->train.pool = (m2pt_pool_kind)choice;
  } else if (tool_arg(argc, argv, i, "--loss", &v, bad)) {
    *bad = *bad || !parse_choice("--loss", v, losses, loss_values, 2, &choice);
    a->train.loss = (m2pt_loss_kind)choice;
  } else if (tool_arg(argc, argv, i, "--label-smoothing", &v, bad)) {
    *bad = *bad || !tool_parse_float("--label-smoothing", v, &a->train.label_smoothing);
    if (!*bad && (a->train.label_smoothing < 0.0f || a->train.label_smoothing > 1.0f)) {
      tool_error("--label-smoothing: %s is not in [0, 1]", v);
      *bad = 1;
    }
  } else if (tool_arg(argc, argv, i, "--dropout", &v, bad)) {
    *bad = *bad || !parse_rate("--dropout", v, &a->train.dropout);
  } else if (tool_arg(argc, argv, i, "--drop-path", &v, bad)) {
    float p = 0.0f;
    *bad = *bad || !parse_rate("--drop-path", v, &p);
    a->train.drop_path = p;
  } else if (tool_arg(argc, argv, i, "--step", &v, bad)) {
    size_t step = 0;
    *bad = *bad || (strcmp(v, "0") != 0 && !tool_parse_size("--step", v, &step));
    if (!*bad && step > UINT32_MAX) {
      tool_error("--step: %s is more than 4294967295", v);
      *bad = 1;
    }
    a->train.step = (uint32_t)step;
  } else if (tool_arg(argc, argv, i, "--num-classes", &v, bad)) {
    *bad = *bad || !tool_parse_size("--num-classes", v, &a->classes);
  } else if (tool_arg(argc, argv, i, "--seed", &v, bad)) {
    /* 0 is a seed too: tool_parse_size takes positive sizes only. */
    *bad = *bad || (strcmp(v, "0") != 0 && !tool_parse_size("--seed", v, &seed));
    a->seed = seed;
    a->train.seed = seed;
  } else {
    return 0;
  }
  return 1;
}

static int parse(int argc, char **argv, grad_args *a)
{
  int bad = 0;
  for (int i = 1; i < argc && !bad; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      exit(0);
    } else if (tool_option(argc, argv, &i, &a->o, &bad) ||
               tool_input_arg(argc, argv, &i, &a->in, &bad) ||
               tool_arg(argc, argv, &i, "--labels", &a->labels, &bad) ||
               tool_arg(argc, argv, &i, "--freeze", &a->freeze, &bad) ||
               tool_arg(argc, argv, &i, "--out", &a->out, &bad) ||
               parse_value(argc, argv, &i, a, &bad)) {
    } else if (!strcmp(argv[i], "--recompute")) {
      a->train.recompute = 1;
    } else {
      tool_error("unknown argument \"%s\" (see --help)", argv[i]);
      bad = 1;
    }
  }
  if (bad)
    return 0;
  const char *why = NULL;
  unsigned freeze = 0;
  if (!a->out || !a->labels)
    why = "--labels and --out are required";
  else
    why = tool_input_check(&a->in, &a->o);
  if (why) {
    tool_error("%s (see --help)", why);
    return 0;
  }
  if (m2pt_freeze_parse(a->freeze, &freeze) != M2PT_OK) {
    tool_error("--freeze: %s", m2pt_last_error(NULL));
    return 0;
  }
  a->freeze_flags = freeze;
  return tool_options_finish(&a->o);
}

/* What the files hold. */
typedef struct grad_inputs {
  tool_inputs batch;
  m2pt_npy_array labels;
} grad_inputs;

static void inputs_free(grad_inputs *in)
{
  tool_inputs_free(&in->batch);
  m2pt_free(in->labels.data);
}

/* Class indices [B] (or [B][1]) as int64, or f32 targets [B][k]. */
static int read_labels(const grad_args *a, grad_inputs *gi)
{
  const tool_inputs *in = &gi->batch;
  m2pt_npy_array *l = &gi->labels;
  const m2pt_status s = m2pt_npy_read_any(a->labels, l);
  if (s != M2PT_OK) {
    tool_error("--labels: %s: %s", m2pt_status_string(s), m2pt_last_error(NULL));
    return 0;
  }
  if (a->train.loss == M2PT_LOSS_MSE) {
    if (l->dtype != M2PT_DTYPE_F32 || l->ndim != 2 || l->shape[0] != in->rows) {
      tool_error("--labels: %s: MSE targets must be f32 [%zu][k]", a->labels, in->rows);
      return 0;
    }
    return tool_check_finite(a->labels, l->data, l->ndim, l->shape);
  }
  if ((l->dtype != M2PT_DTYPE_I32 && l->dtype != M2PT_DTYPE_I64) || l->numel != in->rows ||
      (l->ndim != 1 && (l->ndim != 2 || l->shape[1] != 1))) {
    tool_error("--labels: %s: class labels must be <i4 or <i8 [%zu] (one per sample)", a->labels,
               in->rows);
    return 0;
  }
  return 1;
}

static int read_inputs(const grad_args *a, grad_inputs *gi)
{
  tool_inputs *in = &gi->batch;
  if (a->in.input) {
    if (!tool_read_f32("--input", a->in.input, 3, 3, "[B][N][dim]", 0, NULL, in))
      return 0;
    in->rows = in->shape[0];
    in->cols = in->shape[1];
  } else if (a->in.pixels) {
    if (!tool_read_f32("--pixels", a->in.pixels, 4, 4, "[B][C][H][W]", 0, NULL, in))
      return 0;
    in->rows = in->shape[0];
    if (a->in.mask && !tool_pixel_tokens(a->in.model, &in->cols))
      return 0;
  } else if (!tool_read_id_inputs(a->in.ids, a->in.types, in)) {
    return 0;
  }
  if (a->in.mask && !tool_read_mask(a->in.mask, in->rows, in->cols, 0, &in->mask))
    return 0;
  return read_labels(a, gi);
}

/* The head --num-classes asks for: checked, or created. */
static int prepare_head(m2pt_context *ctx, m2pt_model *model, const grad_args *a)
{
  size_t ndim, shape[3];
  const m2pt_status s = m2pt_model_output_shape(model, M2PT_OUTPUT_LOGITS, 1, 1, &ndim, shape);
  if (s == M2PT_OK) {
    if (a->classes && shape[1] != a->classes) {
      tool_error("--num-classes %zu: the checkpoint's head has %zu classes", a->classes,
                 shape[1]);
      return TOOL_EXIT_FAILURE;
    }
    return 0;
  }
  if (!a->classes)
    return 0;
  const m2pt_status c = m2pt_model_create_head(model, a->classes, a->seed);
  return c == M2PT_OK ? 0 : tool_fail(ctx, c, "creating the head");
}

/* The gradients and the loss into the output file. */
static int write_grads(m2pt_context *ctx, const m2pt_model_grads *g, float loss, const char *out)
{
  const size_t count = m2pt_model_grads_count(g);
  float **data = calloc(count ? count : 1, sizeof *data);
  m2pt_safetensors_writer *w = NULL;
  m2pt_status s = data ? m2pt_safetensors_writer_create(out, &w) : M2PT_ERR_OUT_OF_MEMORY;
  const char *doing = "writing the gradients";
  char text[64];
  snprintf(text, sizeof text, "%.9g", (double)loss);
  if (s == M2PT_OK)
    s = m2pt_safetensors_writer_metadata(w, "loss", text);
  for (size_t i = 0; s == M2PT_OK && i < count; i++) {
    const m2pt_tensor *t = m2pt_model_grads_tensor(g, i);
    const size_t n = m2pt_tensor_numel(t), ndim = m2pt_tensor_ndim(t);
    size_t shape[M2PT_IO_MAX_DIMS];
    for (size_t d = 0; d < ndim; d++)
      shape[d] = m2pt_tensor_dim(t, d);
    if (!(data[i] = malloc(n * sizeof **data))) {
      s = M2PT_ERR_OUT_OF_MEMORY;
      break;
    }
    s = m2pt_model_grads_read(g, i, data[i], n);
    if (s != M2PT_OK) {
      doing = "reading a gradient";
      break;
    }
    s = m2pt_safetensors_writer_add(w, m2pt_model_grads_name(g, i), M2PT_DTYPE_F32, ndim, shape,
                                    data[i], n * sizeof(float));
    for (size_t k = 0; s == M2PT_OK && m2pt_model_grads_alias(g, i, k); k++)
      s = m2pt_safetensors_writer_add(w, m2pt_model_grads_alias(g, i, k), M2PT_DTYPE_F32, ndim,
                                      shape, data[i], n * sizeof(float));
  }
  if (s == M2PT_OK)
    s = m2pt_safetensors_writer_finish(w);
  m2pt_safetensors_writer_destroy(w);
  for (size_t i = 0; data && i < count; i++)
    free(data[i]);
  free(data);
  if (s == M2PT_OK)
    return 0;
  if (s == M2PT_ERR_OUT_OF_MEMORY) {
    tool_error("out of memory %s", doing);
    return TOOL_EXIT_FAILURE;
  }
  return tool_fail(strcmp(doing, "reading a gradient") ? NULL : ctx, s, doing);
}

/* The forward and backward on the device. */
static int compute(m2pt_context *ctx, m2pt_model *model, const grad_args *a,
                   const grad_inputs *gi, m2pt_model_grads *g, float *loss)
{
  const tool_inputs *in = &gi->batch;
  const m2pt_host_matrix mask = {in->mask, M2PT_DTYPE_F32, in->rows, in->cols};
  const m2pt_host_matrix *m = a->in.mask ? &mask : NULL;
  const m2pt_npy_array *l = &gi->labels;
  const m2pt_host_matrix labels = {l->data, l->dtype, l->shape[0],
                                   l->ndim == 2 ? l->shape[1] : 1};
  m2pt_status s;
  if (a->in.ids) {
    const m2pt_host_matrix ids = {in->ids, M2PT_DTYPE_I64, in->rows, in->cols};
    const m2pt_host_matrix types = {in->types, M2PT_DTYPE_I64, in->rows, in->cols};
    s = m2pt_model_grad_ids(model, &ids, a->in.types ? &types : NULL, m, &labels, &a->train, g,
                            loss);
  } else {
    m2pt_tensor *x = NULL;
    s = m2pt_tensor_create(ctx, in->ndim, in->shape, &x);
    if (s == M2PT_OK)
      s = m2pt_tensor_write(x, in->x, m2pt_tensor_numel(x));
    if (s == M2PT_OK)
      s = a->in.pixels ? m2pt_model_grad_pixels(model, x, m, &labels, &a->train, g, loss)
                    : m2pt_model_grad_hidden(model, x, m, &labels, &a->train, g, loss);
    m2pt_tensor_destroy(x);
  }
  return s == M2PT_OK ? 0 : tool_fail(ctx, s, "computing the gradients");
}

int main(int argc, char **argv)
{
  tool_name = "m2pt-grad";
  tool_signals();
  grad_args a;
  memset(&a, 0, sizeof a);
  tool_options_init(&a.o);
  a.train = m2pt_train_options_default();
  if (!parse(argc, argv, &a))
    return TOOL_EXIT_USAGE;
  grad_inputs in;
  memset(&in, 0, sizeof in);
  if (!read_inputs(&a, &in)) {
    inputs_free(&in);
    return TOOL_EXIT_FAILURE;
  }
  m2pt_context *ctx = NULL;
  m2pt_model *model = NULL;
  m2pt_model_grads *g = NULL;
  m2pt_status s;
  float loss = 0.0f;
  int rc = tool_open_model(&a.in, &a.o, &ctx, &model);
  if (!rc)
    rc = prepare_head(ctx, model, &a);
  if (!rc && (s = m2pt_model_grads_create(model, a.freeze_flags, &g)) != M2PT_OK)
    rc = tool_fail(ctx, s, "creating the gradients");
  if (!rc)
    rc = compute(ctx, model, &a, &in, g, &loss);
  tool_step("forward and backward");
  m2pt_stats stats;
  if (!rc && tool_verbose && m2pt_context_stats(ctx, &stats) == M2PT_OK)
    fprintf(stderr, "%s: device memory: peak %.1f MiB\n", tool_name,
            (double)stats.device_bytes_peak / (1024.0 * 1024.0));
  if (!rc)
    rc = write_grads(ctx, g, loss, a.out);
  tool_step("writing");
  m2pt_model_grads_destroy(g);
  inputs_free(&in);
  m2pt_model_destroy(model);
  m2pt_context_destroy(ctx);
  return rc;
}
