#include "tool_util.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

const char *tool_name = "m2pt";
int tool_verbose;

static double seconds(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void tool_step(const char *what)
{
  static double last;
  const double now = seconds();
  if (tool_verbose && last != 0.0) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(stderr, "%s: %s: %.3f s (peak RSS %.0f MiB)\n", tool_name, what, now - last,
            (double)ru.ru_maxrss / 1024.0);
  }
  last = now;
}

void tool_error(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", tool_name);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

int tool_fail(const m2pt_context *ctx, m2pt_status s, const char *doing)
{
  tool_error("%s failed: %s: %s", doing, m2pt_status_string(s), m2pt_last_error(ctx));
  return TOOL_EXIT_FAILURE;
}

int tool_arg(int argc, char **argv, int *i, const char *flag, const char **value, int *bad)
{
  if (strcmp(argv[*i], flag) != 0)
    return 0;
  if (*i + 1 >= argc) {
    tool_error("%s needs a value", flag);
    *bad = 1;
    return 1;
  }
  *value = argv[++*i];
  /* No option means anything by "": an empty path would fail in the library
   * (exit 1), the output's only after all the work. */
  if (!**value) {
    tool_error("%s needs a value, not an empty string", flag);
    *bad = 1;
  }
  return 1;
}

int tool_parse_float(const char *flag, const char *text, float *out)
{
  char *end;
  /* strtof's ERANGE flags overflow (±inf, which isfinite refuses) and
   * underflow: to a subnormal, which is a number, or to zero, which would
   * silently turn a λ the user gave into none. */
  errno = 0;
  const float v = strtof(text, &end);
  if (end == text || *end != '\0' || !isfinite(v)) {
    tool_error("%s: \"%s\" is not a finite number", flag, text);
    return 0;
  }
  if (v == 0.0f && errno == ERANGE) {
    tool_error("%s: \"%s\" rounds to zero in single precision", flag, text);
    return 0;
  }
  *out = v;
  return 1;
}

int tool_parse_size(const char *flag, const char *text, size_t *out)
{
  char *end;
  errno = 0;
  const unsigned long long v = strtoull(text, &end, 10);
  if (end == text || *end != '\0' || errno == ERANGE || v == 0 || text[0] == '-' ||
      v > (size_t)-1) {
    tool_error("%s: \"%s\" is not a positive integer", flag, text);
    return 0;
  }
  *out = (size_t)v;
  return 1;
}

int tool_check_finite(const char *what, const float *data, size_t ndim, const size_t *shape)
{
  size_t numel = 1, first = 0, bad = 0;
  for (size_t d = 0; d < ndim; d++)
    numel *= shape[d];
  for (size_t k = 0; k < numel; k++)
    if (!isfinite(data[k]) && bad++ == 0)
      first = k;
  if (!bad)
    return 1;
  /* A flat offset means nothing to whoever made the file: name the element
   * by its index in the array's shape. */
  size_t at[M2PT_IO_MAX_DIMS];
  for (size_t d = ndim, rest = first; d-- > 0; rest /= shape[d])
    at[d] = rest % shape[d];
  char index[M2PT_IO_MAX_DIMS * 22 + 1] = "";
  size_t n = 0;
  for (size_t d = 0; d < ndim; d++)
    n += (size_t)snprintf(index + n, sizeof index - n, "[%zu]", at[d]);
  const float v = data[first];
  tool_error("%s: element %s is %s (%zu of the %zu elements %s not finite)", what, index,
             isnan(v) ? "nan" : v > 0 ? "inf" : "-inf", bad, numel, bad == 1 ? "is" : "are");
  return 0;
}

size_t tool_split_list(const char *flag, char *text, const char **items, size_t max)
{
  size_t n = 0;
  for (char *p = text;;) {
    char *comma = strchr(p, ',');
    if (comma)
      *comma = '\0';
    if (!*p || n == max) {
      tool_error("%s: %s", flag, *p ? "too many items" : "empty item in the list");
      return 0;
    }
    items[n++] = p;
    if (!comma)
      return n;
    p = comma + 1;
  }
}

const char tool_options_help[] =
    "  --scale L         λ of every re-parameterized layer (default 0)\n"
    "  --layers LIST     comma-separated layers to re-parameterize: block layers\n"
    "                    (default attn.qkv,attn.proj,mlp.fc1,mlp.fc2) and the ends\n"
    "                    head, classifier, pooler.dense\n"
    "  --aux-bias        the pathway also adds λ·b_aux (the seed's variant; head,\n"
    "                    classifier and pooler.dense only); merge folds it into b\n"
    "  --device SEL      OpenCL device (see m2pt-info; default $M2PT_DEVICE, GPU, CPU)\n"
    "  --heads H         attention heads (needed to run the model)\n"
    "  --eps E           LayerNorm eps (default 1e-6 pre-norm, 1e-12 post-norm)\n"
    "  --post-norm       timm-named blocks are post-norm (BERT naming always is)\n"
    "  --naming N        timm, bert or hf-vit (default: whichever the checkpoint\n"
    "                    uses)\n"
    "  --prefix P        the blocks' name prefix (default: found, e.g. blocks,\n"
    "                    encoder.layer)\n"
    "  --no-final-norm   do not apply the checkpoint's final norm (norm.weight)\n"
    "  --verbose         time each step on stderr, with the peak RSS\n";

void tool_options_init(tool_options *o)
{
  memset(o, 0, sizeof *o);
  o->model = m2pt_model_options_default();
}

int tool_options_finish(tool_options *o)
{
  if (!o->layer_list)
    return 1;
  static char copy[1024];
  if (strlen(o->layer_list) >= sizeof copy) {
    tool_error("--layers: list too long");
    return 0;
  }
  strcpy(copy, o->layer_list);
  o->nlayers = tool_split_list("--layers", copy, o->layers, 8);
  return o->nlayers != 0;
}

int tool_option(int argc, char **argv, int *i, tool_options *o, int *bad)
{
  m2pt_model_options *m = &o->model;
  const char *v = NULL;
  if (!strcmp(argv[*i], "--verbose")) {
    tool_verbose = 1;
  } else if (!strcmp(argv[*i], "--post-norm")) {
    m->layout = M2PT_POST_NORM;
  } else if (!strcmp(argv[*i], "--aux-bias")) {
    o->aux_bias = 1;
  } else if (!strcmp(argv[*i], "--no-final-norm")) {
    m->final_norm = 0;
  } else if (tool_arg(argc, argv, i, "--device", &o->device, bad) ||
             tool_arg(argc, argv, i, "--layers", &o->layer_list, bad) ||
             tool_arg(argc, argv, i, "--prefix", &m->prefix, bad)) {
  } else if (tool_arg(argc, argv, i, "--scale", &v, bad)) {
    *bad = *bad || !tool_parse_float("--scale", v, &o->scale);
    o->has_scale = 1;
  } else if (tool_arg(argc, argv, i, "--heads", &v, bad)) {
    *bad = *bad || !tool_parse_size("--heads", v, &m->heads);
  } else if (tool_arg(argc, argv, i, "--eps", &v, bad)) {
    if (!*bad && !tool_parse_float("--eps", v, &m->eps))
      *bad = 1;
    else if (!*bad && m->eps < 0.0f) {
      tool_error("--eps must be >= 0");
      *bad = 1;
    }
  } else if (tool_arg(argc, argv, i, "--naming", &v, bad)) {
    if (*bad)
      return 1;
    if (!strcmp(v, "timm"))
      m->naming = M2PT_NAMING_TIMM;
    else if (!strcmp(v, "bert"))
      m->naming = M2PT_NAMING_BERT;
    else if (!strcmp(v, "hf-vit"))
      m->naming = M2PT_NAMING_HF_VIT;
    else {
      tool_error("--naming: \"%s\" is not timm, bert or hf-vit", v);
      *bad = 1;
    }
  } else {
    return 0;
  }
  return 1;
}

int tool_add_pathways(m2pt_context *ctx, m2pt_model *model, const char *aux,
                      const tool_options *o)
{
  const m2pt_status s = m2pt_model_add_pathways_aux_bias(model, aux, o->layers, o->nlayers,
                                                         o->scale, o->aux_bias);
  return s == M2PT_OK ? 0 : tool_fail(ctx, s, "building the pathway");
}

static void end_by_signal(int sig)
{
  m2pt_io_remove_temporaries();
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigaction(sig, &dfl, NULL);
  raise(sig); /* blocked until the handler returns, then fatal */
}

void tool_signals(void)
{
  static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    struct sigaction sa;
    if (sigaction(sigs[i], NULL, &sa) != 0 || sa.sa_handler == SIG_IGN)
      continue;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = end_by_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(sigs[i], &sa, NULL);
  }
}

int tool_context(const char *device, unsigned flags, m2pt_context **ctx)
{
  m2pt_context_options opts = m2pt_context_options_default();
  opts.device = device;
  opts.flags = flags;
  const m2pt_status s = m2pt_context_create(&opts, ctx);
  return s == M2PT_OK ? 0 : tool_fail(NULL, s, "opening the OpenCL device");
}

/* A [B][N] array of integers (ids, token types), widened exactly to int64. */
int tool_read_ids(const char *flag, const char *path, int64_t **data, size_t *rows,
                    size_t *cols)
{
  size_t ndim = 0, shape[M2PT_IO_MAX_DIMS];
  const m2pt_status s = m2pt_npy_read_i64(path, data, &ndim, shape);
  if (s != M2PT_OK) {
    tool_error("%s: %s: %s", flag, m2pt_status_string(s), m2pt_last_error(NULL));
    return 0;
  }
  if (ndim != 2) {
    tool_error("%s: %s must be [B][N], it has %zu dimensions", flag, path, ndim);
    return 0;
  }
  *rows = shape[0];
  *cols = shape[1];
  return 1;
}

/* How many tokens an image becomes: the checkpoint's position embeddings
 * (the library requires the image to give exactly that grid). Read from
 * the file because the tool needs it before the forward, for the mask's
 * and the hidden output's shapes. */
int tool_pixel_tokens(const char *path, size_t *tokens)
{
  m2pt_safetensors *st = NULL;
  m2pt_status s = m2pt_safetensors_open(path, &st);
  if (s != M2PT_OK)
    return tool_fail(NULL, s, "reading the checkpoint") - 1;
  *tokens = 0;
  for (size_t i = 0; i < m2pt_safetensors_count(st) && !*tokens; i++) {
    m2pt_safetensors_info t;
    if (m2pt_safetensors_info_at(st, i, &t) != M2PT_OK || t.ndim != 3)
      continue;
    const size_t n = strlen(t.name);
    static const char *const ends[] = {"pos_embed", "embeddings.position_embeddings"};
    for (size_t e = 0; e < 2; e++) {
      const size_t k = strlen(ends[e]);
      if (n >= k && !strcmp(t.name + n - k, ends[e]) && (n == k || t.name[n - k - 1] == '.'))
        *tokens = t.shape[1];
    }
  }
  m2pt_safetensors_close(st);
  if (!*tokens)
    tool_error("%s: no position embeddings (pos_embed, embeddings.position_embeddings): "
               "cannot tell how many tokens an image becomes", path);
  return *tokens != 0;
}

int tool_read_mask(const char *path, size_t rows, size_t cols, int one_row_ok, float **out)
{
  m2pt_npy_array m;
  *out = NULL;
  const m2pt_status s = m2pt_npy_read_any(path, &m);
  if (s != M2PT_OK) {
    tool_error("--attention-mask: %s: %s", m2pt_status_string(s), m2pt_last_error(NULL));
    return 0;
  }
  const int one_row = one_row_ok && m.ndim == 1;
  int ok = one_row ? m.shape[0] == cols : m.ndim == 2 && m.shape[0] == rows && m.shape[1] == cols;
  if (!ok)
    tool_error("--attention-mask: %s must be [%zu][%zu] (one 0 or 1 per token), not %s%zu "
               "dimensions", path, rows, cols, m.ndim == 2 ? "[B][N] of other " : "",
               m.ndim);
  if (ok && m.dtype != M2PT_DTYPE_F32 && m.dtype != M2PT_DTYPE_I32 && m.dtype != M2PT_DTYPE_I64 &&
      m.dtype != M2PT_DTYPE_I8 && m.dtype != M2PT_DTYPE_U8 && m.dtype != M2PT_DTYPE_BOOL) {
    tool_error("--attention-mask: %s: unexpected dtype", path);
    ok = 0;
  }
  if (ok && !(*out = malloc(m.numel * sizeof **out + 1))) {
    tool_error("out of memory");
    ok = 0;
  }
  for (size_t k = 0; ok && k < m.numel; k++) {
    double v;
    switch (m.dtype) {
    case M2PT_DTYPE_F32: v = ((const float *)m.data)[k]; break;
    case M2PT_DTYPE_I32: v = ((const int32_t *)m.data)[k]; break;
    case M2PT_DTYPE_I64: v = (double)((const int64_t *)m.data)[k]; break;
    case M2PT_DTYPE_I8: v = ((const int8_t *)m.data)[k]; break;
    default: v = ((const uint8_t *)m.data)[k]; break;
    }
    if (v != 0.0 && v != 1.0) {
      tool_error("--attention-mask: %s: element [%zu][%zu] is %g; a mask holds 1 for tokens "
                 "and 0 for padding", path, k / cols, k % cols, v);
      ok = 0;
    }
    if (ok)
      (*out)[k] = (float)v;
  }
  m2pt_free(m.data);
  return ok;
}

void tool_inputs_free(tool_inputs *in)
{
  m2pt_free(in->x);
  m2pt_free(in->ids);
  m2pt_free(in->types);
  free(in->mask);
}

int tool_read_f32(const char *flag, const char *path, size_t ndim_lo, size_t ndim_hi,
                  const char *layout, int allow_nonfinite, const char *hint, tool_inputs *in)
{
  const m2pt_status s = m2pt_npy_read(path, &in->x, &in->ndim, in->shape);
  if (s != M2PT_OK) {
    tool_error("%s: %s: %s", flag, m2pt_status_string(s), m2pt_last_error(NULL));
    return 0;
  }
  if (in->ndim < ndim_lo || in->ndim > ndim_hi) {
    tool_error("%s: %s must be %s, it has %zu dimensions", flag, path, layout, in->ndim);
    return 0;
  }
  /* One NaN turns the whole sequence into NaN, silently: refuse it here,
   * since the library does not scan its inputs. */
  if (!allow_nonfinite && !tool_check_finite(path, in->x, in->ndim, in->shape)) {
    tool_error("refusing the input%s%s", hint ? "; " : "", hint ? hint : "");
    return 0;
  }
  return 1;
}

int tool_read_id_inputs(const char *ids, const char *types, tool_inputs *in)
{
  if (!tool_read_ids("--input-ids", ids, &in->ids, &in->rows, &in->cols))
    return 0;
  size_t rows, cols;
  if (types && !tool_read_ids("--token-type-ids", types, &in->types, &rows, &cols))
    return 0;
  if (types && (rows != in->rows || cols != in->cols)) {
    tool_error("--token-type-ids: %s is [%zu][%zu], the ids [%zu][%zu]", types, rows, cols,
               in->rows, in->cols);
    return 0;
  }
  return 1;
}

int tool_input_arg(int argc, char **argv, int *i, tool_input_args *in, int *bad)
{
  return tool_arg(argc, argv, i, "--model", &in->model, bad) ||
         tool_arg(argc, argv, i, "--aux", &in->aux, bad) ||
         tool_arg(argc, argv, i, "--input", &in->input, bad) ||
         tool_arg(argc, argv, i, "--input-ids", &in->ids, bad) ||
         tool_arg(argc, argv, i, "--token-type-ids", &in->types, bad) ||
         tool_arg(argc, argv, i, "--pixels", &in->pixels, bad) ||
         tool_arg(argc, argv, i, "--attention-mask", &in->mask, bad);
}

const char *tool_input_check(const tool_input_args *in, const tool_options *o)
{
  if (!in->model)
    return "--model is required";
  if (!!in->input + !!in->ids + !!in->pixels != 1)
    return "give exactly one of --input, --input-ids and --pixels";
  if (!o->model.heads)
    return "--heads is required to run the model";
  if (!in->aux && (o->layer_list || o->has_scale || o->aux_bias))
    return "--layers, --scale and --aux-bias need --aux";
  if (in->types && !in->ids)
    return "--token-type-ids goes with --input-ids";
  return NULL;
}

int tool_open_model(const tool_input_args *in, const tool_options *o, m2pt_context **ctx,
                    m2pt_model **model)
{
  *ctx = NULL;
  *model = NULL;
  tool_step(NULL);
  int rc = tool_context(o->device, o->profiling ? M2PT_CONTEXT_PROFILING : 0, ctx);
  tool_step("opening the device");
  m2pt_status s;
  if (!rc && (s = m2pt_model_load(*ctx, in->model, &o->model, model)) != M2PT_OK)
    rc = tool_fail(*ctx, s, "loading the model");
  tool_step("loading");
  if (!rc && in->aux)
    rc = tool_add_pathways(*ctx, *model, in->aux, o);
  return rc;
}
