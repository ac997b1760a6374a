/* m2pt-bench: the model suite. The ends of a whole model (BERT's embedding
 * gather, ViT's patch embedding, token and mean pooling, the classifier
 * head) at ViT-B/16's sizes, B = 1, against the forward they belong to: the
 * ends must stay a small share of it (issue 11: below 3%), and the forward
 * is 12 ViT-B/16 blocks, timed here as 12 × one plain block (the blocks are
 * independent launches, so the stack's time is their sum). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

typedef struct model_size {
  const char *model;
  size_t image, patch, dim, heads, classes, vocab, depth;
} model_size;

/* ViT-B/16 at 224² (197 tokens), ImageNet's 1000 classes, BERT's vocabulary
 * for the gather (its cost does not depend on the table's size, but its
 * cache behaviour might). */
static const model_size vit_b16 = {"vit-b16", 224, 16, 768, 12, 1000, 30522, 12};
static const model_size tiny = {"vit-tiny", 8, 4, 8, 2, 3, 20, 2};

enum { C_EMBED, C_PATCH, C_POOL_TOKEN, C_POOL_MEAN, C_HEAD, C_BLOCK, C_COUNT };
enum { T_IDS_TABLE, T_POS, T_TYPES, T_LN_W, T_LN_B, T_PIXELS, T_PATCH_W, T_PATCH_B, T_CLS,
       T_X, T_Y, T_POOLED, T_HEAD_W, T_LOGITS, T_COUNT };

typedef struct model_bench {
  m2pt_context *ctx;
  const model_size *sz;
  size_t tokens;
  m2pt_tensor *t[T_COUNT];
  int64_t *ids, *types;
  m2pt_block *block;
  bench_gemm_state head;
} model_bench;

static m2pt_status done(model_bench *mb, m2pt_status s)
{
  return bench_finish(mb->ctx, s);
}

static m2pt_status run_embed(void *state)
{
  model_bench *mb = state;
  const m2pt_host_matrix ids = {mb->ids, M2PT_DTYPE_I64, 1, mb->tokens};
  const m2pt_host_matrix types = {mb->types, M2PT_DTYPE_I64, 1, mb->tokens};
  m2pt_tensor **t = mb->t;
  return done(mb, m2pt_bert_embeddings(mb->ctx, &ids, &types, t[T_IDS_TABLE], t[T_POS],
                                       t[T_TYPES], t[T_LN_W], t[T_LN_B], 1e-12f, t[T_Y]));
}

static m2pt_status run_patch(void *state)
{
  model_bench *mb = state;
  m2pt_tensor **t = mb->t;
  return done(mb, m2pt_patch_embed(mb->ctx, t[T_PIXELS], t[T_PATCH_W], t[T_PATCH_B], t[T_CLS],
                                   t[T_POS], t[T_Y]));
}

static m2pt_status run_pool_token(void *state)
{
  model_bench *mb = state;
  return done(mb, m2pt_pool(mb->ctx, mb->t[T_X], NULL, M2PT_POOL_TOKEN, 0, 0, mb->t[T_POOLED]));
}

static m2pt_status run_pool_mean(void *state)
{
  model_bench *mb = state;
  return done(mb, m2pt_pool(mb->ctx, mb->t[T_X], NULL, M2PT_POOL_MEAN, 1, 0, mb->t[T_POOLED]));
}

static m2pt_status run_block(void *state)
{
  model_bench *mb = state;
  return done(mb, m2pt_block_forward(mb->block, mb->t[T_X], NULL, mb->t[T_Y]));
}

static m2pt_status model_setup(model_bench *mb)
{
  const model_size *sz = mb->sz;
  const size_t g = sz->image / sz->patch, n = 1 + g * g, d = sz->dim;
  mb->tokens = n;
  const size_t shapes[T_COUNT][4] = {
    {sz->vocab, d}, {n, d}, {2, d}, {d}, {d}, {1, 3, sz->image, sz->image},
    {d, 3, sz->patch, sz->patch}, {d}, {d}, {1, n, d}, {1, n, d}, {1, d}, {sz->classes, d},
    {1, sz->classes}};
  static const size_t ndims[T_COUNT] = {2, 2, 2, 1, 1, 4, 4, 1, 1, 3, 3, 2, 2, 2};
  m2pt_status s = M2PT_OK;
  for (unsigned i = 0; s == M2PT_OK && i < T_COUNT; i++)
    s = bench_random_tensor(mb->ctx, ndims[i], shapes[i], 300 + i, &mb->t[i]);
  mb->ids = calloc(n, sizeof *mb->ids);
  mb->types = calloc(n, sizeof *mb->types);
  if (s == M2PT_OK && (!mb->ids || !mb->types))
    s = bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  for (size_t k = 0; s == M2PT_OK && k < n; k++)
    mb->ids[k] = (int64_t)((k * 7919u) % sz->vocab); /* scattered rows, as real text */
  m2pt_block_config c = m2pt_block_config_vit(d, sz->heads);
  c.pathway = 0;
  if (s == M2PT_OK) /* parameters left as created: the time does not depend on them */
    s = BENCH_CALL(mb->ctx, m2pt_block_create(mb->ctx, &c, &mb->block));
  mb->head = (bench_gemm_state){mb->ctx, mb->t[T_POOLED], mb->t[T_HEAD_W], mb->t[T_LOGITS]};
  return s;
}

static void model_teardown(model_bench *mb)
{
  for (int i = 0; i < T_COUNT; i++)
    m2pt_tensor_destroy(mb->t[i]);
  free(mb->ids);
  free(mb->types);
  m2pt_block_destroy(mb->block);
}

static void print_ratio(const char *label, double ends_ms, double forward_ms)
{
  char text[160];
  snprintf(text, sizeof text, "%s / forward (%.3f ms)", label, forward_ms);
  bench_progress_clear();
  printf("%-9s %-60s %7.2f%%  (target < 3%%)\n", "model", text, 100.0 * ends_ms / forward_ms);
  fflush(stdout);
}

m2pt_status bench_suite_model(m2pt_context *ctx, const bench_options *o)
{
  model_bench mb = {.ctx = ctx, .sz = o->smoke ? &tiny : &vit_b16};
  const model_size *sz = mb.sz;
  bench_progress("model %s B=1: setting up", sz->model);
  m2pt_status s = model_setup(&mb);
  static const char *const names[C_COUNT] = {"bert-embeddings", "patch-embed", "pool-token",
                                             "pool-mean", "head", "block-plain"};
  const bench_run_fn fns[C_COUNT] = {run_embed, run_patch, run_pool_token, run_pool_mean,
                                     bench_run_gemm, run_block};
  bench_case runs[C_COUNT];
  bench_timing t[C_COUNT];
  for (int i = 0; i < C_COUNT; i++)
    runs[i] = (bench_case){fns[i], i == C_HEAD ? (void *)&mb.head : (void *)&mb, ctx};
  char label[96];
  snprintf(label, sizeof label, "model %s B=1 N=%zu", sz->model, mb.tokens);
  if (s == M2PT_OK)
    s = bench_measure(runs, C_COUNT, o, label, t);
  if (s == M2PT_OK) {
    const size_t d = sz->dim, n = mb.tokens;
    const size_t dims[C_COUNT][3] = {{1, n, d}, {1, n, d}, {1, n, d}, {1, n, d},
                                     {1, d, sz->classes}, {1, n, d}};
    const double head_flops = 2.0 * (double)d * (double)sz->classes;
    const double patch_flops =
        2.0 * (double)(n - 1) * (double)d * 3.0 * (double)(sz->patch * sz->patch);
    for (int i = 0; i < C_COUNT; i++) {
      char shape[64];
      bench_dims_string(dims[i], 3, shape, sizeof shape);
      const bench_row r = {.suite = "model", .name = names[i], .shape = shape, .t = &t[i],
                           .flops = i == C_HEAD ? head_flops : i == C_PATCH ? patch_flops : 0.0};
      bench_report(&r);
    }
    const double forward = (double)sz->depth * t[C_BLOCK].median_ms;
    print_ratio("patch-embed", t[C_PATCH].median_ms, forward);
    print_ratio("bert-embeddings (same N, D)", t[C_EMBED].median_ms, forward);
    print_ratio("pool-token + head", t[C_POOL_TOKEN].median_ms + t[C_HEAD].median_ms, forward);
    print_ratio("pool-mean + head", t[C_POOL_MEAN].median_ms + t[C_HEAD].median_ms, forward);
    print_ratio("patch-embed + pool-mean + head (ViT ends)",
                t[C_PATCH].median_ms + t[C_POOL_MEAN].median_ms + t[C_HEAD].median_ms, forward);
  }
  model_teardown(&mb);
  return s;
}
