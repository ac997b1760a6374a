/* m2pt-bench: the train suite's whole-encoder case (issue 12). A 12-block
 * ViT-B/16 encoder with a pathway on every linear (λ 0.5), loaded from a
 * checkpoint the bench writes to a temporary file, run from hidden states
 * [B][197][768]: the inference forward to the pooled features
 * (m2pt_model_forward_hidden), and the training step (m2pt_model_grad_hidden:
 * training forward, MSE of the pooled features against fixed targets, the
 * backward into every parameter's gradient) with saved activations and with
 * per-block recomputation, each step's (fwd + bwd)/fwd and its device memory
 * beyond what an inference-ready model (parameters and the pathways'
 * effective weights), the gradients and the inputs hold. */
#define _XOPEN_SOURCE 700 /* mkstemp */

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define ENCODER_SCALE 0.5f /* λ of every pathway */
#define PATH_SIZE 4096

typedef struct encoder_size {
  const char *model; /* the case names' prefix */
  size_t batch, tokens, dim, heads, depth;
} encoder_size;

static const encoder_size vit_b16 = {"vit-b16", 8, 197, 768, 12, 12};
static const encoder_size vit_b16_quick = {"vit-b16", 1, 197, 768, 12, 12};
static const encoder_size tiny = {"vit-tiny", 2, 3, 8, 2, 2};

/* ---- the checkpoint ---- */

/* round-to-nearest-even; the values written are finite */
static uint16_t to_bf16(float f)
{
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* `n` values of bench_fill_random(seed)·scale + offset, as BF16. */
static void fill_bf16(uint16_t *dst, float *tmp, size_t n, unsigned seed, float scale,
                      float offset)
{
  bench_fill_random(tmp, n, seed);
  for (size_t i = 0; i < n; i++)
    dst[i] = to_bf16(tmp[i] * scale + offset);
}

/* The BF16 values every block shares (the times do not depend on them, and
 * one set keeps the writer's host memory to a block's largest weight):
 * weights of magnitude 1/√in, biases in ±0.1, LayerNorm weights ≈ 1. */
enum { V_W_IN_DIM, V_W_IN_HIDDEN, V_BIAS, V_NORM_W, V_NORM_B, V_COUNT };

typedef struct encoder_values {
  uint16_t *v[V_COUNT];
} encoder_values;

static m2pt_status values_create(const encoder_size *sz, encoder_values *ev)
{
  const size_t d = sz->dim, h = 4 * d;
  const size_t n[V_COUNT] = {h * d, h * d, h, d, d};
  float *tmp = malloc(h * d * sizeof *tmp);
  int ok = tmp != NULL;
  for (int i = 0; ok && i < V_COUNT; i++)
    ok = (ev->v[i] = malloc(n[i] * sizeof *ev->v[i])) != NULL;
  if (!ok) {
    free(tmp);
    return bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory for the checkpoint");
  }
  const float scale[V_COUNT] = {1.0f / sqrtf((float)d), 1.0f / sqrtf((float)h), 0.1f, 0.1f,
                                0.1f};
  const float offset[V_COUNT] = {0.0f, 0.0f, 0.0f, 1.0f, 0.0f};
  for (int i = 0; i < V_COUNT; i++)
    fill_bf16(ev->v[i], tmp, n[i], 400 + (unsigned)i, scale[i], offset[i]);
  free(tmp);
  return M2PT_OK;
}

static void values_destroy(encoder_values *ev)
{
  for (int i = 0; i < V_COUNT; i++)
    free(ev->v[i]);
}

static m2pt_status add_bf16(m2pt_safetensors_writer *w, const char *name, size_t rows,
                            size_t cols, const uint16_t *data)
{
  const size_t shape[2] = {rows, cols};
  const size_t ndim = cols ? 2 : 1, n = cols ? rows * cols : rows;
  const m2pt_status s =
      m2pt_safetensors_writer_add(w, name, M2PT_DTYPE_BF16, ndim, shape, data, n * 2);
  return s == M2PT_OK ? s : bench_fail(s, "checkpoint tensor %s: %s", name,
                                       m2pt_last_error(NULL));
}

/* "<prefix>.weight" and "<prefix>.bias". */
static m2pt_status add_pair(m2pt_safetensors_writer *w, const char *prefix, size_t rows,
                            size_t cols, const uint16_t *weight, const uint16_t *bias)
{
  char name[128];
  snprintf(name, sizeof name, "%s.weight", prefix);
  m2pt_status s = add_bf16(w, name, rows, cols, weight);
  snprintf(name, sizeof name, "%s.bias", prefix);
  return s == M2PT_OK ? add_bf16(w, name, rows, 0, bias) : s;
}

/* A plain timm ViT encoder in BF16: blocks.{i}.{norm1, attn.qkv, attn.proj,
 * norm2, mlp.fc1, mlp.fc2} and the final norm. */
static m2pt_status write_checkpoint(const char *path, const encoder_size *sz,
                                    const encoder_values *ev)
{
  const size_t d = sz->dim, h = 4 * d;
  m2pt_safetensors_writer *w = NULL;
  m2pt_status s = m2pt_safetensors_writer_create(path, &w);
  if (s != M2PT_OK)
    return bench_fail(s, "writing %s: %s", path, m2pt_last_error(NULL));
  for (size_t b = 0; s == M2PT_OK && b < sz->depth; b++) {
    const struct {
      const char *layer;
      size_t rows, cols;
      int weights;
    } parts[] = {{"norm1", d, 0, V_NORM_W},          {"attn.qkv", 3 * d, d, V_W_IN_DIM},
                 {"attn.proj", d, d, V_W_IN_DIM},    {"norm2", d, 0, V_NORM_W},
                 {"mlp.fc1", h, d, V_W_IN_DIM},      {"mlp.fc2", d, h, V_W_IN_HIDDEN}};
    for (size_t p = 0; s == M2PT_OK && p < sizeof parts / sizeof parts[0]; p++) {
      char prefix[96];
      snprintf(prefix, sizeof prefix, "blocks.%zu.%s", b, parts[p].layer);
      const int norm = parts[p].cols == 0;
      s = add_pair(w, prefix, parts[p].rows, parts[p].cols, ev->v[parts[p].weights],
                   ev->v[norm ? V_NORM_B : V_BIAS]);
    }
  }
  if (s == M2PT_OK)
    s = add_pair(w, "norm", d, 0, ev->v[V_NORM_W], ev->v[V_NORM_B]);
  if (s == M2PT_OK && (s = m2pt_safetensors_writer_finish(w)) != M2PT_OK)
    bench_fail(s, "writing %s: %s", path, m2pt_last_error(NULL));
  m2pt_safetensors_writer_destroy(w);
  return s;
}

/* The encoder: the checkpoint written to a fresh file under $TMPDIR (or
 * /tmp), loaded, given pathways from itself (W_aux = W, λ = ENCODER_SCALE),
 * and the file removed (the model maps what it keeps). */
static m2pt_status load_encoder(m2pt_context *ctx, const encoder_size *sz, m2pt_model **model)
{
  const char *tmp = getenv("TMPDIR");
  if (!tmp || !tmp[0])
    tmp = "/tmp";
  char path[PATH_SIZE];
  snprintf(path, sizeof path, "%s/m2pt-bench-encoder-XXXXXX", tmp);
  const int fd = mkstemp(path);
  if (fd < 0)
    return bench_fail(M2PT_ERR_IO, "cannot create a file in %s: %s", tmp, strerror(errno));
  close(fd);
  encoder_values ev = {{NULL}};
  m2pt_status s = values_create(sz, &ev);
  if (s == M2PT_OK)
    s = write_checkpoint(path, sz, &ev);
  values_destroy(&ev);
  m2pt_model_options mo = m2pt_model_options_default();
  mo.heads = sz->heads;
  mo.naming = M2PT_NAMING_TIMM;
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_model_load(ctx, path, &mo, model));
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_model_add_pathways(*model, path, NULL, 0, ENCODER_SCALE));
  if (unlink(path) != 0)
    bench_progress("warning: could not remove %s: %s", path, strerror(errno));
  return s;
}

/* ---- the cases ---- */

enum { E_FORWARD, E_STEP, E_RECOMPUTE, E_CASES };

typedef struct encoder_bench {
  m2pt_context *ctx;
  m2pt_model *model;
  m2pt_model_grads *grads;
  m2pt_tensor *x, *y;
  float *targets;
  m2pt_host_matrix labels;
  m2pt_forward_options forward;
  m2pt_train_options train[2]; /* [recompute] */
  double baseline_mib;         /* device memory live with the model (its effective
                                  weights formed), the gradients, x and y */
} encoder_bench;

typedef struct encoder_run {
  encoder_bench *eb;
  int recompute;
} encoder_run;

static m2pt_status run_forward(void *state)
{
  encoder_bench *eb = ((encoder_run *)state)->eb;
  return bench_finish(eb->ctx, BENCH_CALL(eb->ctx, m2pt_model_forward_hidden(
                                                       eb->model, eb->x, NULL, &eb->forward,
                                                       eb->y)));
}

static m2pt_status run_step(void *state)
{
  const encoder_run *r = state;
  encoder_bench *eb = r->eb;
  float loss;
  return bench_finish(eb->ctx,
                      BENCH_CALL(eb->ctx, m2pt_model_grad_hidden(eb->model, eb->x, NULL,
                                                                 &eb->labels,
                                                                 &eb->train[r->recompute],
                                                                 eb->grads, &loss)));
}

static void encoder_destroy(encoder_bench *eb)
{
  m2pt_model_grads_destroy(eb->grads);
  m2pt_model_destroy(eb->model);
  m2pt_tensor_destroy(eb->x);
  m2pt_tensor_destroy(eb->y);
  free(eb->targets);
}

static m2pt_status encoder_create(m2pt_context *ctx, const encoder_size *sz, encoder_bench *eb)
{
  eb->ctx = ctx;
  const size_t xs[3] = {sz->batch, sz->tokens, sz->dim}, ys[2] = {sz->batch, sz->dim};
  m2pt_status s = load_encoder(ctx, sz, &eb->model);
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_model_grads_create(eb->model, 0, &eb->grads));
  if (s == M2PT_OK)
    s = bench_random_tensor(ctx, 3, xs, 90, &eb->x);
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_tensor_create(ctx, 2, ys, &eb->y));
  eb->targets = malloc(sz->batch * sz->dim * sizeof *eb->targets);
  if (s == M2PT_OK && !eb->targets)
    s = bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  if (s != M2PT_OK)
    return s;
  bench_fill_random(eb->targets, sz->batch * sz->dim, 91);
  eb->labels = (m2pt_host_matrix){eb->targets, M2PT_DTYPE_F32, sz->batch, sz->dim};
  eb->forward = m2pt_forward_options_default();
  eb->forward.output = M2PT_OUTPUT_POOLED;
  for (int r = 0; r < 2; r++) {
    eb->train[r] = m2pt_train_options_default();
    eb->train[r].loss = M2PT_LOSS_MSE;
    eb->train[r].recompute = r;
  }
  /* The baseline is taken after one inference forward: the pathways'
   * effective weights it forms stay with the model, inference or training. */
  m2pt_stats st;
  encoder_run first = {eb, 0};
  s = run_forward(&first);
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_context_trim(ctx));
  if (s == M2PT_OK)
    s = BENCH_CALL(ctx, m2pt_context_stats(ctx, &st));
  if (s == M2PT_OK)
    eb->baseline_mib = (double)st.device_bytes_live / (1024.0 * 1024.0);
  return s;
}

/* A case's device memory from an empty workspace (the model's training
 * state, kept between steps, stays: it is that of the last step's mode). */
static m2pt_status measure_memory(encoder_bench *eb, const bench_case *c, bench_peak_memory *m)
{
  m2pt_status s = BENCH_CALL(eb->ctx, m2pt_context_trim(eb->ctx));
  return s == M2PT_OK ? bench_measure_peak(eb->ctx, c, m) : s;
}

static void print_encoder(const encoder_size *sz, const encoder_bench *eb,
                          const bench_timing t[E_CASES], const bench_peak_memory m[E_CASES])
{
  const m2pt_block_config cfg = m2pt_block_config_vit(sz->dim, sz->heads);
  const double depth = (double)sz->depth;
  const double attn = bench_attention_flops(sz->batch, sz->tokens, cfg.heads, cfg.dim_head);
  const double gemms = bench_block_gemm_flops(&cfg, sz->batch * sz->tokens);
  /* as the block's (train.c): the backward is 2·gemms + 2.5·attn; the
   * recomputing step runs every block's forward once more */
  const double forward = depth * (gemms + attn), backward = depth * (2.0 * gemms + 2.5 * attn);
  const double flops[E_CASES] = {forward, forward + backward, 2.0 * forward + backward};
  static const char *const steps[E_CASES] = {"fwd", "step", "step-recomp"};
  static const char *const ratio_labels[E_CASES] = {
    NULL, "(fwd+bwd)/fwd (theory ~3, target <= 3.3)",
    "(fwd+bwd)/fwd, recompute (theory ~4: one more forward)"};
  const size_t dims[3] = {sz->batch, sz->tokens, sz->dim};
  char shape[48];
  bench_dims_string(dims, 3, shape, sizeof shape);
  for (int i = 0; i < E_CASES; i++) {
    char name[64], note[160];
    snprintf(name, sizeof name, "%s/enc%zu-%s", sz->model, sz->depth, steps[i]);
    if (i == E_FORWARD)
      snprintf(note, sizeof note, "pooled output; workspace +%.1f MiB", m[i].scratch_mib);
    else
      snprintf(note, sizeof note,
               "MSE on pooled; peak +%.1f MiB over model+grads+io (%.1f MiB), total %.1f MiB",
               m[i].total_mib - eb->baseline_mib, eb->baseline_mib, m[i].total_mib);
    bench_print_row("train", name, shape, &t[i], flops[i],
                    i == E_FORWARD ? 0.0 : t[i].median_ms / t[E_FORWARD].median_ms,
                    ratio_labels[i], note);
  }
}

/* The forward and the saved-activation step are timed together; the
 * recomputing step on its own after them, so that no timed step reallocates
 * the model's saved activations (a change of mode does) and the warm-up of
 * each group settles them. */
m2pt_status bench_train_encoder(m2pt_context *ctx, const bench_options *o)
{
  const encoder_size *sz = o->smoke ? &tiny : o->quick ? &vit_b16_quick : &vit_b16;
  bench_progress("train: encoder %s x%zu B=%zu N=%zu: writing and loading the checkpoint",
                 sz->model, sz->depth, sz->batch, sz->tokens);
  encoder_bench eb = {0};
  m2pt_status s = encoder_create(ctx, sz, &eb);
  encoder_run runs[E_CASES] = {{&eb, 0}, {&eb, 0}, {&eb, 1}};
  const bench_case cases[E_CASES] = {{run_forward, &runs[E_FORWARD], ctx},
                                     {run_step, &runs[E_STEP], ctx},
                                     {run_step, &runs[E_RECOMPUTE], ctx}};
  char label[96];
  snprintf(label, sizeof label, "train: encoder %s x%zu B=%zu N=%zu", sz->model, sz->depth,
           sz->batch, sz->tokens);
  bench_timing t[E_CASES];
  bench_peak_memory m[E_CASES];
  if (s == M2PT_OK)
    s = bench_measure(cases, 2, o, label, t);
  for (int i = E_FORWARD; s == M2PT_OK && i <= E_STEP; i++)
    s = measure_memory(&eb, &cases[i], &m[i]);
  if (s == M2PT_OK)
    s = bench_measure(&cases[E_RECOMPUTE], 1, o, label, &t[E_RECOMPUTE]);
  if (s == M2PT_OK)
    s = measure_memory(&eb, &cases[E_RECOMPUTE], &m[E_RECOMPUTE]);
  if (s == M2PT_OK)
    print_encoder(sz, &eb, t, m);
  encoder_destroy(&eb);
  return s;
}
