/* m2pt-run: runs a checkpoint on an .npy input (hidden states, token ids or
 * pixels) and writes the output (hidden states, pooled features, sentence
 * embeddings or logits) as .npy. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tool_util.h"

static void usage(FILE *f)
{
  fprintf(f,
          "usage: m2pt-run --model CKPT [--aux AUX [--scale L] [--layers LIST]] --heads H\n"
          "                [options] (--input X.npy | --input-ids IDS.npy | --pixels P.npy)\n"
          "                --output Y.npy\n"
          "Runs the safetensors checkpoint CKPT and writes its output as .npy. CKPT may be\n"
          "a plain checkpoint, an M2PT checkpoint with aux_weight and cross_modal_scale\n"
          "tensors (run unmerged), or, with --aux, a target whose pathway is built from\n"
          "the auxiliary checkpoint AUX.\n"
          "Inputs (exactly one):\n"
          "  --input X.npy     hidden states [B][N][dim] or [N][dim] (f32): the blocks and\n"
          "                    the final norm only\n"
          "  --input-ids IDS.npy  token ids [B][N] (<i4 or <i8): BERT's embeddings first\n"
          "  --token-type-ids T.npy  token types [B][N] (default 0)\n"
          "  --pixels P.npy    images [B][3][H][W] (f32, already normalized): ViT's patch\n"
          "                    embedding, class token and positions first\n"
          "  --attention-mask M.npy  [B][N] (<i4, <i8 or <f4) of 1 for tokens and 0 for\n"
          "                    padding, for any input ([N] or [1][N] for a 2-D --input)\n"
          "Output:\n"
          "  --output-kind K   hidden (default: the last hidden state), pooled ([B][dim]:\n"
          "                    the pooling below), mean ([B][dim]: the masked mean of the\n"
          "                    last hidden state, as sentence-transformers) or logits\n"
          "                    ([B][classes]: the head on the pooled features)\n"
          "  --pool P          token, avg or mean (the same: the masked mean of the tokens\n"
          "                    after the class token for pixels, of every token for ids)\n"
          "                    or pooler (tanh(dense(h[:, 0]))); default: the pooler where\n"
          "                    the checkpoint has pooler.dense, avg where it has fc_norm,\n"
          "                    else token\n"
          "  --normalize       L2-normalize pooled or mean outputs\n"
          "  --aux AUX         auxiliary-modality checkpoint of the same architecture\n"
          "  --merge           merge the pathways before running\n"
          "  --repeat R        run R times and report the median time on stderr\n"
          "  --kernels         also report on stderr the device time of m2pt's own kernels\n"
          "                    per timed run, by kernel (a profiling context; CLBlast's\n"
          "                    and the host GEMMs are not kernels of m2pt's)\n"
          "  --warmup W        with --repeat: how many of the R runs are warm-up, left out\n"
          "                    of the median (default 1; m2pt repacks each linear's weights\n"
          "                    on its second forward, so 2 leaves that out too)\n"
          "  --allow-nonfinite run an f32 input holding NaN or ±Inf (they propagate to\n"
          "                    the output, as in PyTorch); without it such an input is\n"
          "                    refused\n"
          "%s"
          "Exit status: 0 done, 1 failure (message on stderr), 2 bad usage.\n",
          tool_options_help);
}

typedef struct run_args {
  tool_input_args in;
  const char *output;
  size_t repeat, warmup;
  int kernels;
  int merge, allow_nonfinite, has_pool;
  m2pt_forward_options fwd;
  tool_options o;
} run_args;

static int parse_kind(const char *v, run_args *a)
{
  static const char *const kinds[] = {"hidden", "pooled", "mean", "logits"};
  for (int k = 0; k < 4; k++)
    if (!strcmp(v, kinds[k])) {
      a->fwd.output = (m2pt_output_kind)k;
      return 1;
    }
  tool_error("--output-kind: \"%s\" is not hidden, pooled, mean or logits", v);
  return 0;
}

static int parse_pool(const char *v, run_args *a)
{
  a->has_pool = 1;
  if (!strcmp(v, "token"))
    a->fwd.pool = M2PT_POOL_TOKEN;
  else if (!strcmp(v, "avg") || !strcmp(v, "mean"))
    a->fwd.pool = M2PT_POOL_MEAN;
  else if (!strcmp(v, "pooler"))
    a->fwd.pool = M2PT_POOL_POOLER;
  else {
    tool_error("--pool: \"%s\" is not token, avg, mean or pooler", v);
    return 0;
  }
  return 1;
}

static int parse(int argc, char **argv, run_args *a)
{
  int bad = 0;
  const char *v = NULL;
  for (int i = 1; i < argc && !bad; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      exit(0);
    } else if (tool_option(argc, argv, &i, &a->o, &bad) ||
               tool_input_arg(argc, argv, &i, &a->in, &bad) ||
               tool_arg(argc, argv, &i, "--output", &a->output, &bad)) {
    } else if (tool_arg(argc, argv, &i, "--repeat", &v, &bad)) {
      bad = bad || !tool_parse_size("--repeat", v, &a->repeat);
    } else if (tool_arg(argc, argv, &i, "--warmup", &v, &bad)) {
      bad = bad || !tool_parse_size("--warmup", v, &a->warmup);
    } else if (tool_arg(argc, argv, &i, "--output-kind", &v, &bad)) {
      bad = bad || !parse_kind(v, a);
    } else if (tool_arg(argc, argv, &i, "--pool", &v, &bad)) {
      bad = bad || !parse_pool(v, a);
    } else if (!strcmp(argv[i], "--normalize")) {
      a->fwd.normalize = 1;
    } else if (!strcmp(argv[i], "--kernels")) {
      a->kernels = a->o.profiling = 1;
    } else if (!strcmp(argv[i], "--merge")) {
      a->merge = 1;
    } else if (!strcmp(argv[i], "--allow-nonfinite")) {
      a->allow_nonfinite = 1;
    } else {
      tool_error("unknown argument \"%s\" (see --help)", argv[i]);
      bad = 1;
    }
  }
  if (bad)
    return 0;
  const m2pt_output_kind kind = a->fwd.output;
  const char *why = a->output ? tool_input_check(&a->in, &a->o) : "--output is required";
  if (why)
    ; /* reported below */
  else if (a->in.input && (kind == M2PT_OUTPUT_POOLED || kind == M2PT_OUTPUT_LOGITS))
    why = "--output-kind pooled and logits need --input-ids or --pixels (the model's embeddings)";
  else if (a->fwd.normalize && kind != M2PT_OUTPUT_POOLED && kind != M2PT_OUTPUT_MEAN)
    why = "--normalize goes with --output-kind pooled or mean";
  else if (a->repeat > 1 && a->warmup >= a->repeat)
    why = "--warmup must be below --repeat (at least one timed run)";
  else if (a->has_pool && kind != M2PT_OUTPUT_POOLED && kind != M2PT_OUTPUT_LOGITS)
    why = "--pool goes with --output-kind pooled or logits";
  if (why) {
    tool_error("%s (see --help)", why);
    return 0;
  }
  return tool_options_finish(&a->o);
}

static double now(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int compare_double(const void *a, const void *b)
{
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

#define NONFINITE_HINT "--allow-nonfinite runs it anyway"

static int read_inputs(const run_args *a, tool_inputs *in)
{
  if (a->in.input) {
    if (!tool_read_f32("--input", a->in.input, 2, 3, "[B][N][dim] or [N][dim]",
                       a->allow_nonfinite, NONFINITE_HINT, in))
      return 0;
    in->rows = in->ndim == 3 ? in->shape[0] : 1;
    in->cols = in->shape[in->ndim - 2];
  } else if (a->in.pixels) {
    if (!tool_read_f32("--pixels", a->in.pixels, 4, 4, "[B][3][H][W]", a->allow_nonfinite,
                       NONFINITE_HINT, in))
      return 0;
    in->rows = in->shape[0];
    if ((a->in.mask || a->fwd.output == M2PT_OUTPUT_HIDDEN) && !tool_pixel_tokens(a->in.model, &in->cols))
      return 0;
  } else {
    if (!tool_read_id_inputs(a->in.ids, a->in.types, in))
      return 0;
  }
  return !a->in.mask ||
         tool_read_mask(a->in.mask, in->rows, in->cols, a->in.input && in->ndim == 2, &in->mask);
}

/* The device tensors of one run. */
typedef struct run_tensors {
  m2pt_tensor *x, *mask, *hidden, *y;
  m2pt_host_matrix ids, types, hmask;
} run_tensors;

static m2pt_status forward(m2pt_context *ctx, m2pt_model *model, const run_args *a,
                           const run_tensors *t)
{
  const m2pt_host_matrix *mask = a->in.mask ? &t->hmask : NULL;
  if (a->in.ids)
    return m2pt_model_forward_ids(model, &t->ids, a->in.types ? &t->types : NULL, mask, &a->fwd,
                                  t->y);
  if (a->in.pixels)
    return m2pt_model_forward_pixels(model, t->x, mask, &a->fwd, t->y);
  if (a->fwd.output == M2PT_OUTPUT_HIDDEN)
    return m2pt_model_forward(model, t->x, t->mask, t->y);
  /* Hidden states in, their masked mean out (sentence-transformers). */
  m2pt_status s = m2pt_model_forward(model, t->x, t->mask, t->hidden);
  return s == M2PT_OK ? m2pt_pool(ctx, t->hidden, t->mask, M2PT_POOL_MEAN, 0, a->fwd.normalize,
                                  t->y)
                      : s;
}

/* The output's shape: the input's for hidden states (one sequence [N][dim]
 * runs as [1][N][dim]), else the model's. */
static m2pt_status output_shape(const m2pt_model *model, const run_args *a, const tool_inputs *in,
                                size_t *ndim, size_t *shape)
{
  if (a->in.input && a->fwd.output == M2PT_OUTPUT_HIDDEN) {
    *ndim = 3;
    shape[0] = in->rows;
    shape[1] = in->cols;
    shape[2] = in->shape[in->ndim - 1];
    return M2PT_OK;
  }
  return m2pt_model_output_shape(model, a->fwd.output, in->rows, in->cols, ndim, shape);
}

/* The kernel times since the warm-up, per run, the longest first. */
static m2pt_status report_kernels(m2pt_context *ctx, size_t runs)
{
  m2pt_kernel_time k[M2PT_KERNEL_TIMES_MAX];
  size_t count = 0;
  const m2pt_status s = m2pt_context_kernel_times(ctx, k, sizeof k / sizeof *k, &count);
  if (s != M2PT_OK)
    return s;
  double total = 0.0;
  for (size_t i = 0; i < count && i < sizeof k / sizeof *k; i++)
    total += k[i].ms;
  fprintf(stderr, "%s: m2pt's kernels, device time per run (%zu runs): %.3f ms in all\n",
          tool_name, runs, total / (double)runs);
  for (size_t i = 0; i < count && i < sizeof k / sizeof *k; i++)
    fprintf(stderr, "%s: %10.3f ms %8.1f launches  %s\n", tool_name, k[i].ms / (double)runs,
            (double)k[i].launches / (double)runs, k[i].name);
  return M2PT_OK;
}

/* Runs the model `repeat` times; reports the median when repeating. */
static int run(m2pt_context *ctx, m2pt_model *model, const run_args *a, const tool_inputs *in,
               float **output, size_t *ondim, size_t *oshape)
{
  run_tensors t;
  memset(&t, 0, sizeof t);
  t.ids = (m2pt_host_matrix){in->ids, M2PT_DTYPE_I64, in->rows, in->cols};
  t.types = (m2pt_host_matrix){in->types, M2PT_DTYPE_I64, in->rows, in->cols};
  t.hmask = (m2pt_host_matrix){in->mask, M2PT_DTYPE_F32, in->rows, in->cols};
  const char *doing = "running the model";
  m2pt_status s = output_shape(model, a, in, ondim, oshape);
  if (s != M2PT_OK)
    doing = "preparing the output";
  const size_t xshape[3] = {in->rows, in->cols, in->ndim == 3 ? in->shape[2] : in->shape[1]};
  if (s == M2PT_OK && in->x)
    s = m2pt_tensor_create(ctx, a->in.input ? 3 : in->ndim, a->in.input ? xshape : in->shape, &t.x);
  if (s == M2PT_OK && in->x)
    s = m2pt_tensor_write(t.x, in->x, m2pt_tensor_numel(t.x));
  if (s == M2PT_OK && a->in.input && a->in.mask) {
    s = m2pt_tensor_create(ctx, 2, xshape, &t.mask);
    if (s == M2PT_OK)
      s = m2pt_tensor_write(t.mask, in->mask, in->rows * in->cols);
  }
  if (s == M2PT_OK && a->in.input && a->fwd.output != M2PT_OUTPUT_HIDDEN)
    s = m2pt_tensor_create(ctx, 3, xshape, &t.hidden);
  if (s == M2PT_OK)
    s = m2pt_tensor_create(ctx, *ondim, oshape, &t.y);
  size_t numel = 1;
  for (size_t i = 0; i < *ondim; i++)
    numel *= oshape[i];
  double *times = calloc(a->repeat, sizeof *times);
  const int no_memory = !times || !(*output = malloc(numel * sizeof **output + 1));
  if (no_memory) {
    tool_error("out of memory");
    s = M2PT_ERR_OUT_OF_MEMORY;
  }
  const size_t warm = a->repeat > 1 ? a->warmup : 0;
  for (size_t r = 0; s == M2PT_OK && r < a->repeat; r++) {
    double drained;
    if (a->kernels && r == warm && r > 0) /* the warm-up runs' kernels: left out */
      s = m2pt_context_kernel_time(ctx, &drained);
    const double t0 = now();
    if (s == M2PT_OK)
      s = forward(ctx, model, a, &t);
    if (s == M2PT_OK)
      s = m2pt_context_finish(ctx);
    times[r] = now() - t0;
  }
  if (s == M2PT_OK && a->kernels)
    s = report_kernels(ctx, a->repeat - warm);
  if (s == M2PT_OK)
    s = m2pt_tensor_read(t.y, *output, numel);
  if (s == M2PT_OK && a->repeat > 1) {
    const double first = times[0];
    const size_t w = a->warmup, timed = a->repeat - w;
    qsort(times + w, timed, sizeof *times, compare_double);
    const double median = times[w + timed / 2];
    const size_t tokens = in->rows * in->cols;
    fprintf(stderr,
            "%s: %zu tokens: first run %.1f ms; %zu warm-up; median of the %zu after %.1f ms "
            "(min %.1f, max %.1f), %.0f tokens/s\n",
            tool_name, tokens, 1e3 * first, w, timed, 1e3 * median, 1e3 * times[w],
            1e3 * times[a->repeat - 1], (double)tokens / median);
  }
  free(times);
  m2pt_tensor_destroy(t.x);
  m2pt_tensor_destroy(t.mask);
  m2pt_tensor_destroy(t.hidden);
  m2pt_tensor_destroy(t.y);
  if (s == M2PT_OK)
    return 0;
  return no_memory ? TOOL_EXIT_FAILURE : tool_fail(ctx, s, doing);
}

int main(int argc, char **argv)
{
  tool_name = "m2pt-run";
  tool_signals();
  run_args a;
  memset(&a, 0, sizeof a);
  tool_options_init(&a.o);
  a.fwd = m2pt_forward_options_default();
  a.repeat = 1;
  a.warmup = 1;
  if (!parse(argc, argv, &a))
    return TOOL_EXIT_USAGE;

  tool_inputs in;
  memset(&in, 0, sizeof in);
  if (!read_inputs(&a, &in)) {
    tool_inputs_free(&in);
    return TOOL_EXIT_FAILURE;
  }
  m2pt_context *ctx = NULL;
  m2pt_model *model = NULL;
  float *output = NULL;
  size_t ondim = 0, oshape[3];
  m2pt_status s;
  int rc = tool_open_model(&a.in, &a.o, &ctx, &model);
  if (!rc && a.merge && (s = m2pt_model_merge(model)) != M2PT_OK)
    rc = tool_fail(ctx, s, "merging");
  if (!rc)
    rc = run(ctx, model, &a, &in, &output, &ondim, oshape);
  if (!rc && a.in.input && ondim == 3 && in.ndim == 2) { /* one sequence in, one out */
    ondim = 2;
    oshape[0] = oshape[1];
    oshape[1] = oshape[2];
  }
  tool_step("running");
  if (!rc && (s = m2pt_npy_write(a.output, output, ondim, oshape)) != M2PT_OK)
    rc = tool_fail(NULL, s, "writing the output");
  free(output);
  tool_inputs_free(&in);
  m2pt_model_destroy(model);
  m2pt_context_destroy(ctx);
  return rc;
}
