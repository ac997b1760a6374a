/* m2pt-bench: the train suite (issue 12). What a training step costs
 * against inference: the re-parameterized linear's backward unmerged (dX,
 * dW, dW_aux, dλ, db) against a plain linear's (dX, dW, db), target ≤ 1.15;
 * and the ViT-B/16 block, unmerged and plain: the inference forward, the
 * training forward (m2pt_block_forward_train, which saves activations) and
 * the backward (m2pt_block_backward into every parameter's gradient and dx),
 * with (training forward + backward) / forward, theory ≈ 3 (the backward is
 * two GEMMs for each of the forward's), target ≤ 3.3, and the workspace the
 * training step takes; then the 12-block encoder (train_encoder.c). */
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

#define TRAIN_SCALE 0.5f /* λ of the unmerged linears */

/* ---- the linear's backward ---- */

enum { L_UNMERGED, L_PLAIN, LAYERS };

/* One layer's backward: x and dy in, its gradients out. */
typedef struct linear_backward_state {
  m2pt_context *ctx;
  m2pt_linear *layer;
  const m2pt_tensor *x, *dy;
  m2pt_linear_grads grads;
} linear_backward_state;

static m2pt_status run_linear_backward(void *state)
{
  linear_backward_state *l = state;
  return bench_finish(l->ctx, BENCH_CALL(l->ctx, m2pt_linear_backward(l->layer, l->x, l->dy,
                                                                      &l->grads)));
}

/* The tensors of one shape: the inputs, and the gradients both layers
 * overwrite (dW_aux and dλ only the unmerged one's). */
enum { LT_X, LT_DY, LT_DX, LT_DW, LT_DB, LT_DWAUX, LT_DSCALE, LT_COUNT };

static m2pt_status linear_tensors(m2pt_context *ctx, bench_shape sh, m2pt_tensor *t[LT_COUNT])
{
  const struct {
    size_t ndim, dims[2];
  } spec[LT_COUNT] = {{2, {sh.rows, sh.in}}, {2, {sh.rows, sh.out}}, {2, {sh.rows, sh.in}},
                      {2, {sh.out, sh.in}},  {1, {sh.out}},          {2, {sh.out, sh.in}},
                      {1, {1}}};
  m2pt_status s = M2PT_OK;
  for (unsigned i = 0; s == M2PT_OK && i < LT_COUNT; i++)
    s = i <= LT_DY ? bench_random_tensor(ctx, 2, spec[i].dims, 70 + i, &t[i])
                   : BENCH_CALL(ctx, m2pt_tensor_create(ctx, spec[i].ndim, spec[i].dims, &t[i]));
  return s;
}

static m2pt_status linear_layers(m2pt_context *ctx, bench_shape sh, m2pt_linear *l[LAYERS])
{
  float *host = malloc(sh.in * sh.out * sizeof *host);
  m2pt_status s = host ? M2PT_OK : bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  static const unsigned flags[LAYERS] = {M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY,
                                         M2PT_LINEAR_BIAS};
  for (int i = 0; s == M2PT_OK && i < LAYERS; i++) {
    s = BENCH_CALL(ctx, m2pt_linear_create(ctx, sh.in, sh.out, flags[i], &l[i]));
    if (s == M2PT_OK)
      s = bench_set_linear_parameters(ctx, l[i], sh, TRAIN_SCALE, host);
  }
  free(host);
  return s;
}

/* Both layers' backward, timed together. The unmerged layer's W_eff is
 * formed by the warm-up's first backward, as a training step's forward
 * would have formed it. */
static m2pt_status linear_backward_shape(m2pt_context *ctx, const bench_options *o,
                                         bench_shape sh)
{
  m2pt_tensor *t[LT_COUNT] = {NULL};
  m2pt_linear *layer[LAYERS] = {NULL};
  m2pt_status s = linear_tensors(ctx, sh, t);
  if (s == M2PT_OK)
    s = linear_layers(ctx, sh, layer);
  const m2pt_linear_grads plain = {.dx = t[LT_DX], .dweight = t[LT_DW], .dbias = t[LT_DB]};
  m2pt_linear_grads unmerged = plain;
  unmerged.daux_weight = t[LT_DWAUX];
  unmerged.dscale = t[LT_DSCALE];
  linear_backward_state st[LAYERS] = {
    [L_UNMERGED] = {ctx, layer[L_UNMERGED], t[LT_X], t[LT_DY], unmerged},
    [L_PLAIN] = {ctx, layer[L_PLAIN], t[LT_X], t[LT_DY], plain},
  };
  const bench_case cases[LAYERS] = {{run_linear_backward, &st[L_UNMERGED], ctx},
                                    {run_linear_backward, &st[L_PLAIN], ctx}};
  char shape[64], label[96];
  bench_shape_string(sh, shape, sizeof shape);
  snprintf(label, sizeof label, "train: linear backward %s", shape);
  bench_timing tm[LAYERS];
  if (s == M2PT_OK)
    s = bench_measure(cases, LAYERS, o, label, tm);
  if (s == M2PT_OK) {
    const double flops = 2.0 * bench_flops(sh); /* dX and G = dYᵀ·X */
    bench_print_row("train", "linear-backward-unmerged", shape, &tm[L_UNMERGED], flops, 0.0,
                    NULL, "dX, dW, dW_aux, dλ, db");
    bench_print_row("train", "linear-backward-plain", shape, &tm[L_PLAIN], flops,
                    tm[L_UNMERGED].median_ms / tm[L_PLAIN].median_ms,
                    "unmerged/plain (target <= 1.15)", "dX, dW, db");
  }
  for (int i = 0; i < LAYERS; i++)
    m2pt_linear_destroy(layer[i]);
  for (int i = 0; i < LT_COUNT; i++)
    m2pt_tensor_destroy(t[i]);
  return s;
}

/* ViT-B/16's four linears at B·197 rows: B = 1 and 8 (--quick: B = 1). */
static m2pt_status linear_backward_suite(m2pt_context *ctx, const bench_options *o)
{
  const bench_shape *shapes;
  const size_t n = bench_shapes(o, &shapes);
  const size_t batches[] = {1, 8};
  const size_t nb = o->smoke || o->quick ? 1 : 2;
  m2pt_status s = M2PT_OK;
  for (size_t b = 0; s == M2PT_OK && b < nb; b++)
    for (size_t i = 0; s == M2PT_OK && i < n; i++) {
      bench_shape sh = shapes[i];
      sh.rows *= batches[b];
      bench_progress("train: linear backward %zux%zu->%zu", sh.rows, sh.in, sh.out);
      s = linear_backward_shape(ctx, o, sh);
    }
  return s;
}

/* ---- the block's training step ---- */

typedef struct train_size {
  const char *model; /* the case names' prefix */
  size_t batch, tokens, dim, heads;
} train_size;

/* ViT-B/16 at 224² (197 tokens); --quick runs B = 1 only. */
static const train_size vit_sizes[] = {{"vit-b16", 1, 197, 768, 12}, {"vit-b16", 8, 197, 768, 12}};
#define QUICK_SIZES 1
static const train_size smoke_size = {"vit-tiny", 2, 3, 8, 2};

static size_t train_sizes(const bench_options *o, const train_size **sizes)
{
  if (o->smoke) {
    *sizes = &smoke_size;
    return 1;
  }
  *sizes = vit_sizes;
  return o->quick ? QUICK_SIZES : sizeof vit_sizes / sizeof vit_sizes[0];
}

enum { B_UNMERGED, B_PLAIN, BLOCKS };
/* Each block's cases, in the order they run: a backward must follow its
 * block's training forward with no other training forward in between, and
 * an inference forward leaves what a training forward saved alone. */
enum { STEP_FORWARD, STEP_TRAIN, STEP_BACKWARD, STEPS };

typedef struct train_block {
  m2pt_context *ctx;
  m2pt_block *block;
  m2pt_block_grads *grads;
  const m2pt_tensor *x, *dy;
  m2pt_tensor *y, *dx;
} train_block;

static m2pt_status run_forward(void *state)
{
  train_block *b = state;
  return bench_finish(b->ctx, BENCH_CALL(b->ctx, m2pt_block_forward(b->block, b->x, NULL, b->y)));
}

static m2pt_status run_forward_train(void *state)
{
  train_block *b = state;
  return bench_finish(b->ctx,
                      BENCH_CALL(b->ctx, m2pt_block_forward_train(b->block, b->x, NULL, b->y)));
}

static m2pt_status run_backward(void *state)
{
  train_block *b = state;
  return bench_finish(b->ctx, BENCH_CALL(b->ctx, m2pt_block_backward(b->block, b->x, NULL, b->dy,
                                                                     b->grads, b->dx)));
}

/* A whole training step: the peak of its device memory. */
static m2pt_status run_step(void *state)
{
  train_block *b = state;
  m2pt_status s = BENCH_CALL(b->ctx, m2pt_block_forward_train(b->block, b->x, NULL, b->y));
  if (s == M2PT_OK)
    s = BENCH_CALL(b->ctx, m2pt_block_backward(b->block, b->x, NULL, b->dy, b->grads, b->dx));
  return bench_finish(b->ctx, s);
}

/* The workspace of an inference forward and of a training step, each from
 * an empty workspace (m2pt_context_trim frees the context's scratch). */
static m2pt_status measure_memory(train_block *b, bench_peak_memory *forward,
                                  bench_peak_memory *step)
{
  const bench_case f = {run_forward, b, b->ctx}, t = {run_step, b, b->ctx};
  m2pt_status s = BENCH_CALL(b->ctx, m2pt_context_trim(b->ctx));
  if (s == M2PT_OK)
    s = bench_measure_peak(b->ctx, &f, forward);
  if (s == M2PT_OK)
    s = BENCH_CALL(b->ctx, m2pt_context_trim(b->ctx));
  if (s == M2PT_OK)
    s = bench_measure_peak(b->ctx, &t, step);
  return s;
}

static void print_block(const train_size *sz, const char *kind, const char *shape,
                        const bench_timing t[STEPS], double forward_flops, double backward_flops,
                        const bench_peak_memory *forward, const bench_peak_memory *step)
{
  static const char *const steps[STEPS] = {"fwd", "train-fwd", "bwd"};
  const double flops[STEPS] = {forward_flops, forward_flops, backward_flops};
  char name[STEPS][48], notes[STEPS][96];
  for (int i = 0; i < STEPS; i++) {
    snprintf(name[i], sizeof name[i], "%s/%s-%s", sz->model, kind, steps[i]);
    notes[i][0] = '\0';
  }
  snprintf(notes[STEP_FORWARD], sizeof notes[0], "workspace +%.1f MiB", forward->scratch_mib);
  snprintf(notes[STEP_BACKWARD], sizeof notes[0],
           "train step workspace +%.1f MiB, context total %.1f MiB", step->scratch_mib,
           step->total_mib);
  const double ratio = (t[STEP_TRAIN].median_ms + t[STEP_BACKWARD].median_ms) /
                       t[STEP_FORWARD].median_ms;
  for (int i = 0; i < STEPS; i++)
    bench_print_row("train", name[i], shape, &t[i], flops[i],
                    i == STEP_BACKWARD ? ratio : 0.0,
                    "(fwd-train + bwd)/fwd (theory ~3, target <= 3.3)",
                    notes[i][0] ? notes[i] : NULL);
}

typedef struct train_bench {
  m2pt_tensor *x, *dy, *y, *dx;
  m2pt_block *block[BLOCKS];
  m2pt_block_grads *grads[BLOCKS];
} train_bench;

static void train_bench_destroy(train_bench *tb)
{
  for (int i = 0; i < BLOCKS; i++) {
    m2pt_block_grads_destroy(tb->grads[i]);
    m2pt_block_destroy(tb->block[i]);
  }
  m2pt_tensor_destroy(tb->x);
  m2pt_tensor_destroy(tb->dy);
  m2pt_tensor_destroy(tb->y);
  m2pt_tensor_destroy(tb->dx);
}

static m2pt_status train_bench_create(m2pt_context *ctx, const train_size *sz, train_bench *tb)
{
  const size_t shape[3] = {sz->batch, sz->tokens, sz->dim};
  m2pt_block_config cfg = m2pt_block_config_vit(sz->dim, sz->heads);
  m2pt_status s = bench_random_tensor(ctx, 3, shape, 80, &tb->x);
  if (s == M2PT_OK)
    s = bench_random_tensor(ctx, 3, shape, 81, &tb->dy);
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_tensor_create(ctx, 3, shape, &tb->y));
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_tensor_create(ctx, 3, shape, &tb->dx));
  for (int i = 0; s == M2PT_OK && i < BLOCKS; i++) {
    cfg.pathway = i == B_UNMERGED;
    s = bench_block_make(ctx, &cfg, 0, &tb->block[i]);
    if (s == M2PT_OK)
      s = BENCH_CALL(ctx, m2pt_block_grads_create(tb->block[i], &tb->grads[i]));
  }
  return s;
}

static m2pt_status train_size_run(m2pt_context *ctx, const bench_options *o,
                                  const train_size *sz)
{
  train_bench tb = {0};
  m2pt_status s = train_bench_create(ctx, sz, &tb);
  train_block st[BLOCKS];
  bench_case cases[BLOCKS * STEPS];
  static const bench_run_fn runs[STEPS] = {run_forward, run_forward_train, run_backward};
  for (int i = 0; i < BLOCKS; i++) {
    st[i] = (train_block){ctx, tb.block[i], tb.grads[i], tb.x, tb.dy, tb.y, tb.dx};
    for (int k = 0; k < STEPS; k++)
      cases[i * STEPS + k] = (bench_case){runs[k], &st[i], ctx};
  }
  char label[96];
  snprintf(label, sizeof label, "train: block %s B=%zu N=%zu", sz->model, sz->batch,
           sz->tokens);
  bench_timing t[BLOCKS * STEPS];
  if (s == M2PT_OK)
    s = bench_measure(cases, BLOCKS * STEPS, o, label, t);
  bench_peak_memory forward[BLOCKS], step[BLOCKS];
  for (int i = 0; s == M2PT_OK && i < BLOCKS; i++)
    s = measure_memory(&st[i], &forward[i], &step[i]);
  if (s == M2PT_OK) {
    const m2pt_block_config cfg = m2pt_block_config_vit(sz->dim, sz->heads);
    const double attn = bench_attention_flops(sz->batch, sz->tokens, cfg.heads, cfg.dim_head);
    const double gemms = bench_block_gemm_flops(&cfg, sz->batch * sz->tokens);
    /* The backward: two GEMMs per linear; attention recomputes QKᵀ and
     * runs four more products of the forward's two's size. */
    const double forward_flops = gemms + attn, backward_flops = 2.0 * gemms + 2.5 * attn;
    static const char *const kinds[BLOCKS] = {"unmerged", "plain"};
    const size_t dims[3] = {sz->batch, sz->tokens, sz->dim};
    char shape[48];
    bench_dims_string(dims, 3, shape, sizeof shape);
    for (int i = 0; i < BLOCKS; i++)
      print_block(sz, kinds[i], shape, &t[i * STEPS], forward_flops, backward_flops,
                  &forward[i], &step[i]);
  }
  train_bench_destroy(&tb);
  return s;
}

m2pt_status bench_suite_train(m2pt_context *ctx, const bench_options *o)
{
  m2pt_status s = linear_backward_suite(ctx, o);
  const train_size *sizes;
  const size_t n = train_sizes(o, &sizes);
  for (size_t i = 0; s == M2PT_OK && i < n; i++) {
    bench_progress("train: block %s B=%zu N=%zu: setting up", sizes[i].model, sizes[i].batch,
                   sizes[i].tokens);
    s = train_size_run(ctx, o, &sizes[i]);
  }
  if (s == M2PT_OK)
    s = bench_train_encoder(ctx, o);
  return s;
}
