/* m2pt-run: runs a checkpoint's block stack on an .npy input and writes the
 * output as .npy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tool_util.h"

static void usage(FILE *f)
{
  fprintf(f,
          "usage: m2pt-run --model CKPT [--aux AUX [--scale L] [--layers LIST]] --heads H\n"
          "                [options] --input X.npy --output Y.npy\n"
          "Runs the transformer blocks (and the final norm) of the safetensors checkpoint\n"
          "CKPT on X ([B][N][dim] or [N][dim], f32) and writes Y of the same shape.\n"
          "CKPT may be a plain checkpoint, an M2PT checkpoint with aux_weight and\n"
          "cross_modal_scale tensors (run unmerged), or, with --aux, a target whose\n"
          "pathway is built from the auxiliary checkpoint AUX.\n"
          "  --aux AUX         auxiliary-modality checkpoint of the same architecture\n"
          "  --merge           merge the pathways before running\n"
          "  --repeat R        run R times and report the median time on stderr\n"
          "  --allow-nonfinite run an input holding NaN or ±Inf (they propagate to the\n"
          "                    output, as in PyTorch); without it such an input is refused\n"
          "%s"
          "Exit status: 0 done, 1 failure (message on stderr), 2 bad usage.\n",
          tool_options_help);
}

typedef struct run_args {
  const char *model, *aux, *input, *output;
  size_t repeat;
  int merge, allow_nonfinite;
  tool_options o;
} run_args;

static int parse(int argc, char **argv, run_args *a)
{
  int bad = 0;
  const char *v = NULL;
  for (int i = 1; i < argc && !bad; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      exit(0);
    } else if (tool_option(argc, argv, &i, &a->o, &bad) ||
               tool_arg(argc, argv, &i, "--model", &a->model, &bad) ||
               tool_arg(argc, argv, &i, "--aux", &a->aux, &bad) ||
               tool_arg(argc, argv, &i, "--input", &a->input, &bad) ||
               tool_arg(argc, argv, &i, "--output", &a->output, &bad)) {
    } else if (tool_arg(argc, argv, &i, "--repeat", &v, &bad)) {
      bad = bad || !tool_parse_size("--repeat", v, &a->repeat);
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
  const char *why = NULL;
  if (!a->model || !a->input || !a->output)
    why = "--model, --input and --output are required";
  else if (!a->o.model.heads)
    why = "--heads is required to run the model";
  else if (!a->aux && (a->o.layer_list || a->o.has_scale))
    why = "--layers and --scale need --aux";
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

/* Runs the model `repeat` times on x; reports the median when repeating. */
static int run(m2pt_context *ctx, m2pt_model *model, const run_args *a, const float *input,
               size_t ndim, const size_t *shape, float *output)
{
  m2pt_tensor *x = NULL, *y = NULL;
  m2pt_status s = m2pt_tensor_create(ctx, ndim, shape, &x);
  if (s == M2PT_OK)
    s = m2pt_tensor_create(ctx, ndim, shape, &y);
  const size_t numel = s == M2PT_OK ? m2pt_tensor_numel(x) : 0;
  if (s == M2PT_OK)
    s = m2pt_tensor_write(x, input, numel);
  double *times = calloc(a->repeat, sizeof *times);
  const int no_memory = !times;
  if (no_memory) {
    tool_error("out of memory for %zu run times", a->repeat);
    s = M2PT_ERR_OUT_OF_MEMORY;
  }
  for (size_t r = 0; s == M2PT_OK && r < a->repeat; r++) {
    const double t0 = now();
    s = m2pt_model_forward(model, x, NULL, y);
    if (s == M2PT_OK)
      s = m2pt_context_finish(ctx);
    times[r] = now() - t0;
  }
  if (s == M2PT_OK)
    s = m2pt_tensor_read(y, output, numel);
  if (s == M2PT_OK && a->repeat > 1) {
    const double first = times[0];
    qsort(times + 1, a->repeat - 1, sizeof *times, compare_double);
    const double median = times[1 + (a->repeat - 1) / 2];
    const size_t tokens = ndim == 3 ? shape[0] * shape[1] : shape[0];
    fprintf(stderr,
            "%s: %zu tokens: first run %.1f ms; median of the %zu after %.1f ms "
            "(min %.1f, max %.1f), %.0f tokens/s\n",
            tool_name, tokens, 1e3 * first, a->repeat - 1, 1e3 * median, 1e3 * times[1],
            1e3 * times[a->repeat - 1], (double)tokens / median);
  }
  free(times);
  m2pt_tensor_destroy(x);
  m2pt_tensor_destroy(y);
  if (s == M2PT_OK)
    return 0;
  return no_memory ? TOOL_EXIT_FAILURE : tool_fail(ctx, s, "running the model");
}

int main(int argc, char **argv)
{
  tool_name = "m2pt-run";
  tool_signals();
  run_args a;
  memset(&a, 0, sizeof a);
  tool_options_init(&a.o);
  a.repeat = 1;
  if (!parse(argc, argv, &a))
    return TOOL_EXIT_USAGE;

  float *input = NULL;
  size_t ndim = 0, shape[M2PT_IO_MAX_DIMS];
  m2pt_status s = m2pt_npy_read(a.input, &input, &ndim, shape);
  if (s != M2PT_OK)
    return tool_fail(NULL, s, "reading the input");
  if (ndim != 2 && ndim != 3) {
    tool_error("%s: the input must be [B][N][dim] or [N][dim], it has %zu dimensions", a.input,
               ndim);
    m2pt_free(input);
    return TOOL_EXIT_FAILURE;
  }
  /* One NaN turns the whole sequence into NaN, silently: refuse it here,
   * since the library does not scan its inputs. */
  if (!a.allow_nonfinite && !tool_check_finite(a.input, input, ndim, shape)) {
    tool_error("refusing the input; --allow-nonfinite runs it anyway");
    m2pt_free(input);
    return TOOL_EXIT_FAILURE;
  }
  m2pt_context *ctx = NULL;
  m2pt_model *model = NULL;
  float *output = NULL;
  tool_step(NULL);
  int rc = tool_context(a.o.device, &ctx);
  tool_step("opening the device");
  if (!rc && (s = m2pt_model_load(ctx, a.model, &a.o.model, &model)) != M2PT_OK)
    rc = tool_fail(ctx, s, "loading the model");
  tool_step("loading");
  if (!rc && a.aux &&
      (s = m2pt_model_add_pathways(model, a.aux, a.o.layers, a.o.nlayers, a.o.scale)) != M2PT_OK)
    rc = tool_fail(ctx, s, "building the pathway");
  if (!rc && a.merge && (s = m2pt_model_merge(model)) != M2PT_OK)
    rc = tool_fail(ctx, s, "merging");
  size_t numel = 1;
  for (size_t i = 0; i < ndim; i++)
    numel *= shape[i];
  if (!rc && !(output = malloc(numel * sizeof *output + 1))) {
    tool_error("out of memory");
    rc = TOOL_EXIT_FAILURE;
  }
  if (!rc)
    rc = run(ctx, model, &a, input, ndim, shape, output);
  tool_step("running");
  if (!rc && (s = m2pt_npy_write(a.output, output, ndim, shape)) != M2PT_OK)
    rc = tool_fail(NULL, s, "writing the output");
  free(output);
  m2pt_free(input);
  m2pt_model_destroy(model);
  m2pt_context_destroy(ctx);
  return rc;
}
