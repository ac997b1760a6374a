/* m2pt-reparam: builds the pathway from an auxiliary-modality checkpoint and
 * writes an M2PT checkpoint in the paper's naming. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool_util.h"

static void usage(FILE *f)
{
  fprintf(f,
          "usage: m2pt-reparam --target T --aux A [--layers LIST] [--scale L] --out CKPT\n"
          "                    [options]\n"
          "The paper's reparameterize_aux_into_target_model: every named linear (of every\n"
          "block, or an end: head, classifier, pooler.dense) of T gets <layer>.aux_weight\n"
          "(the same layer's weight in A) and <layer>.cross_modal_scale (λ, shape [1]),\n"
          "with --aux-bias <layer>.aux_bias too; every tensor of T is kept. PyTorch\n"
          "code with the paper's CrossModalReparamLinear loads CKPT with load_state_dict.\n"
          "%s"
          "Exit status: 0 done, 1 failure (message on stderr), 2 bad usage.\n",
          tool_options_help);
}

int main(int argc, char **argv)
{
  tool_name = "m2pt-reparam";
  tool_signals();
  const char *target = NULL, *aux = NULL, *out = NULL;
  tool_options o;
  tool_options_init(&o);
  int bad = 0;
  for (int i = 1; i < argc && !bad; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    } else if (tool_option(argc, argv, &i, &o, &bad) ||
               tool_arg(argc, argv, &i, "--target", &target, &bad) ||
               tool_arg(argc, argv, &i, "--aux", &aux, &bad) ||
               tool_arg(argc, argv, &i, "--out", &out, &bad)) {
    } else {
      tool_error("unknown argument \"%s\" (see --help)", argv[i]);
      bad = 1;
    }
  }
  if (!bad && (!target || !aux || !out)) {
    tool_error("--target, --aux and --out are required (see --help)");
    bad = 1;
  }
  if (bad || !tool_options_finish(&o))
    return TOOL_EXIT_USAGE;

  m2pt_context *ctx = NULL;
  m2pt_model *model = NULL;
  m2pt_status s;
  tool_step(NULL);
  int rc = tool_context(o.device, 0, &ctx);
  tool_step("opening the device");
  if (!rc && (s = m2pt_model_load(ctx, target, &o.model, &model)) != M2PT_OK)
    rc = tool_fail(ctx, s, "loading the target");
  tool_step("loading");
  if (!rc)
    rc = tool_add_pathways(ctx, model, aux, &o);
  tool_step("building the pathway");
  if (!rc && (s = m2pt_model_save(model, out)) != M2PT_OK)
    rc = tool_fail(ctx, s, "writing the M2PT checkpoint");
  tool_step("writing");
  m2pt_model_destroy(model);
  m2pt_context_destroy(ctx);
  return rc;
}
