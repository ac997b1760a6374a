/* m2pt-merge: folds every pathway into its weight (W ← W + λ·W_aux) and
 * writes a plain checkpoint that timm or transformers load. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tool_util.h"

static void usage(FILE *f)
{
  fprintf(f,
          "usage: m2pt-merge --m2pt CKPT --out MERGED [options]\n"
          "       m2pt-merge --target T --aux A (--scale L | --scales FILE) --out MERGED\n"
          "                  [--layers LIST] [options]\n"
          "Folds λ·W_aux into W for every re-parameterized linear and writes MERGED with\n"
          "exactly the keys of a plain checkpoint (no aux_weight, no cross_modal_scale).\n"
          "Every other tensor is copied verbatim with its dtype; merged weights are F32.\n"
          "  --m2pt CKPT       an M2PT checkpoint (the paper's naming: <layer>.aux_weight,\n"
          "                    <layer>.cross_modal_scale)\n"
          "  --target T --aux A  a target checkpoint and an auxiliary-modality one of the\n"
          "                    same architecture\n"
          "  --scales FILE     λ per layer: a JSON object such as\n"
          "                    {\"blocks.0.attn.qkv\": 0.1, \"blocks.0.mlp.fc1\": -0.2, ...}\n"
          "                    naming every re-parameterized layer of every block\n"
          "%s"
          "Exit status: 0 done, 1 failure (message on stderr), 2 bad usage.\n",
          tool_options_help);
}

typedef struct merge_args {
  const char *m2pt, *target, *aux, *scales, *out;
  tool_options o;
} merge_args;

static int parse(int argc, char **argv, merge_args *a)
{
  int bad = 0;
  for (int i = 1; i < argc && !bad; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      exit(0);
    } else if (tool_option(argc, argv, &i, &a->o, &bad) ||
               tool_arg(argc, argv, &i, "--m2pt", &a->m2pt, &bad) ||
               tool_arg(argc, argv, &i, "--target", &a->target, &bad) ||
               tool_arg(argc, argv, &i, "--aux", &a->aux, &bad) ||
               tool_arg(argc, argv, &i, "--scales", &a->scales, &bad) ||
               tool_arg(argc, argv, &i, "--out", &a->out, &bad)) {
    } else {
      tool_error("unknown argument \"%s\" (see --help)", argv[i]);
      bad = 1;
    }
  }
  if (bad)
    return 0;
  const char *why = NULL;
  if (!a->out)
    why = "--out is required";
  else if (!a->m2pt == !a->target)
    why = "give either --m2pt or --target with --aux";
  else if (a->m2pt &&
           (a->aux || a->o.has_scale || a->scales || a->o.layer_list || a->o.aux_bias))
    why = "--m2pt takes no --aux, --scale, --scales, --layers or --aux-bias: they are in the file";
  else if (a->target && !a->aux)
    why = "--target needs --aux";
  else if (a->target && a->o.has_scale == !!a->scales)
    why = "--target needs exactly one of --scale and --scales";
  if (why) {
    tool_error("%s (see --help)", why);
    return 0;
  }
  if (!tool_options_finish(&a->o))
    return 0;
  /* The --scales file names "<prefix>.<block>.<layer>": an end's pathway
   * would silently keep λ = 0. */
  for (size_t k = 0; a->scales && k < a->o.nlayers; k++) {
    const char *l = a->o.layers[k];
    const size_t n = strlen(l);
    if (!strcmp(l, "head") || (n >= 10 && !strcmp(l + n - 10, "classifier")) ||
        (n >= 12 && !strcmp(l + n - 12, "pooler.dense"))) {
      tool_error("--scales sets λ of block layers only; re-parameterize %s with --scale", l);
      return 0;
    }
  }
  return 1;
}

/* Reads a whole small file. */
static char *slurp(const char *path)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t size = 0, cap = 4096;
  char *buf = malloc(cap);
  for (size_t n; buf && (n = fread(buf + size, 1, cap - size - 1, f)) > 0;) {
    size += n;
    if (size + 1 == cap) {
      char *grown = cap < (64u << 20) ? realloc(buf, cap *= 2) : NULL;
      if (!grown) {
        free(buf);
        buf = NULL;
      }
      buf = grown;
    }
  }
  const int failed = ferror(f);
  fclose(f);
  if (buf && failed) {
    free(buf);
    return NULL;
  }
  if (buf)
    buf[size] = '\0';
  return buf;
}

/* Splits "<prefix>.<i>.<layer>[.cross_modal_scale]" into block and layer. */
static int parse_key(const char *key, const char *prefix, size_t *block, char *layer,
                     size_t size)
{
  const size_t n = strlen(prefix);
  if (strncmp(key, prefix, n) != 0 || key[n] != '.' || key[n + 1] < '0' || key[n + 1] > '9')
    return 0;
  char *end;
  *block = (size_t)strtoull(key + n + 1, &end, 10);
  if (*end != '.' || strlen(end + 1) >= size)
    return 0;
  strcpy(layer, end + 1);
  char *suffix = strstr(layer, ".cross_modal_scale");
  if (suffix && suffix[18] == '\0')
    *suffix = '\0';
  return 1;
}

/* The block's four linears, in m2pt_model_layer_index order. */
static const char *const layers[4] = {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"};

/* λ of one layer from --scales: the first value a (block, linear) gets, so
 * BERT's query, key and value, which share qkv's λ, must agree. */
typedef struct scale_entry {
  int set;
  float value;
} scale_entry;

static int apply_scale(m2pt_context *ctx, m2pt_model *model, const m2pt_model_info *info,
                       const char *path, const cJSON *item, scale_entry *entries)
{
  size_t block;
  char layer[256];
  int li;
  if (!parse_key(item->string, info->prefix, &block, layer, sizeof layer) ||
      !cJSON_IsNumber(item) || block >= info->depth ||
      (li = m2pt_model_layer_index(model, layer)) < 0) {
    tool_error("%s: \"%s\" is not \"%s.<block>.<layer>\": <number> for one of the %zu blocks",
               path, item->string, info->prefix, info->depth);
    return TOOL_EXIT_FAILURE;
  }
  const float value = (float)item->valuedouble;
  /* The library would refuse it too, but as "inf" where the file says 1e39. */
  if (!isfinite(value)) {
    tool_error("%s: \"%s\": %g is not a finite float", path, item->string, item->valuedouble);
    return TOOL_EXIT_FAILURE;
  }
  scale_entry *e = &entries[block * 4 + (size_t)li];
  if (e->set && e->value != value) {
    tool_error("%s: \"%s\" = %g, but %s.%zu.%s already has λ = %g (q, k and v share one)",
               path, item->string, (double)value, info->prefix, block, layers[li],
               (double)e->value);
    return TOOL_EXIT_FAILURE;
  }
  if (!m2pt_model_has_pathway(model, block, layers[li])) {
    tool_error("%s: \"%s\": that layer was not re-parameterized (see --layers)", path,
               item->string);
    return TOOL_EXIT_FAILURE;
  }
  const m2pt_status s = m2pt_model_set_scale(model, block, layers[li], value);
  if (s != M2PT_OK) {
    tool_error("%s: \"%s\": %s", path, item->string, m2pt_last_error(ctx));
    return TOOL_EXIT_FAILURE;
  }
  e->set = 1;
  e->value = value;
  return 0;
}

/* Sets λ from the --scales file; every pathway must get one. */
static int apply_scales(m2pt_context *ctx, m2pt_model *model, const char *path)
{
  m2pt_model_info info;
  m2pt_model_get_info(model, &info);
  char *text = slurp(path);
  if (!text) {
    tool_error("%s: cannot read the file", path);
    return TOOL_EXIT_FAILURE;
  }
  cJSON *root = cJSON_Parse(text);
  free(text);
  scale_entry *entries = calloc(info.depth * 4, sizeof *entries);
  int rc = 0;
  if (!entries) {
    tool_error("out of memory");
    rc = TOOL_EXIT_FAILURE;
  } else if (!cJSON_IsObject(root)) {
    tool_error("%s: not a JSON object of layer names and λ values", path);
    rc = TOOL_EXIT_FAILURE;
  }
  for (cJSON *item = root ? root->child : NULL; !rc && item; item = item->next)
    rc = apply_scale(ctx, model, &info, path, item, entries);
  for (size_t b = 0; !rc && b < info.depth; b++)
    for (size_t li = 0; !rc && li < 4; li++)
      if (m2pt_model_has_pathway(model, b, layers[li]) && !entries[b * 4 + li].set) {
        tool_error("%s: no λ for %s.%zu.%s", path, info.prefix, b, layers[li]);
        rc = TOOL_EXIT_FAILURE;
      }
  free(entries);
  cJSON_Delete(root);
  return rc;
}

int main(int argc, char **argv)
{
  tool_name = "m2pt-merge";
  tool_signals();
  merge_args a;
  memset(&a, 0, sizeof a);
  tool_options_init(&a.o);
  if (!parse(argc, argv, &a))
    return TOOL_EXIT_USAGE;
  m2pt_context *ctx = NULL;
  m2pt_model *model = NULL;
  m2pt_status s;
  tool_step(NULL);
  int rc = tool_context(a.o.device, 0, &ctx);
  tool_step("opening the device");
  if (!rc && (s = m2pt_model_load(ctx, a.m2pt ? a.m2pt : a.target, &a.o.model, &model)) != M2PT_OK)
    rc = tool_fail(ctx, s, "loading the model");
  tool_step("loading");
  if (!rc && a.target)
    rc = tool_add_pathways(ctx, model, a.aux, &a.o);
  if (!rc && a.target)
    tool_step("building the pathway");
  if (!rc && a.scales)
    rc = apply_scales(ctx, model, a.scales);
  m2pt_model_info info;
  if (!rc && m2pt_model_get_info(model, &info) == M2PT_OK && info.pathways == 0)
    tool_error("note: %s has no pathway to merge; writing it unchanged",
               a.m2pt ? a.m2pt : a.target);
  if (!rc && (s = m2pt_model_merge(model)) != M2PT_OK)
    rc = tool_fail(ctx, s, "merging");
  if (!rc && (s = m2pt_context_finish(ctx)) != M2PT_OK)
    rc = tool_fail(ctx, s, "merging");
  tool_step("merging");
  if (!rc && (s = m2pt_model_save(model, a.out)) != M2PT_OK)
    rc = tool_fail(ctx, s, "writing the merged checkpoint");
  tool_step("writing");
  m2pt_model_destroy(model);
  m2pt_context_destroy(ctx);
  return rc;
}
