/* m2pt-bench: the block suite. The ViT-S/16, ViT-B/16 and BERT-base blocks
 * (m2pt_block) re-parameterized and unmerged, merged, and plain, and the ops
 * each is made of, each as its own case at the block's shapes, all of one
 * model and batch size timed together. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

#define BLOCK_SCALE 0.5f /* every λ */

typedef struct block_size {
  const char *model; /* the case names' prefix */
  size_t batch, tokens, dim, heads;
  int post_norm;     /* BERT's layout, LayerNorm eps 1e-12 */
} block_size;

/* ViT-S/16 and ViT-B/16 at 224² (197 tokens), BERT-base at 128 tokens;
 * --quick runs B = 1 only, the first three. */
static const block_size model_sizes[] = {
  {"vit-s16", 1, 197, 384, 6, 0},   {"vit-b16", 1, 197, 768, 12, 0},
  {"bert-base", 1, 128, 768, 12, 1}, {"vit-s16", 8, 197, 384, 6, 0},
  {"vit-b16", 8, 197, 768, 12, 0},  {"bert-base", 8, 128, 768, 12, 1},
};
#define QUICK_SIZES 3
static const block_size smoke_sizes[] = {{"vit-tiny", 2, 3, 8, 2, 0},
                                         {"bert-tiny", 2, 3, 8, 2, 1}};

static size_t block_sizes(const bench_options *o, const block_size **sizes)
{
  if (o->smoke) {
    *sizes = smoke_sizes;
    return sizeof smoke_sizes / sizeof smoke_sizes[0];
  }
  *sizes = model_sizes;
  return o->quick ? QUICK_SIZES : sizeof model_sizes / sizeof model_sizes[0];
}

static m2pt_block_config block_config(const block_size *sz)
{
  m2pt_block_config c = m2pt_block_config_vit(sz->dim, sz->heads);
  if (sz->post_norm) {
    c.layout = M2PT_POST_NORM;
    c.eps = 1e-12f;
  }
  return c;
}

/* ---- the block's linears and parameters ---- */

enum { QKV, PROJ, FC1, FC2, LINEARS };

typedef struct linear_dims {
  const char *name; /* checkpoint prefix */
  size_t out, in;
} linear_dims;

static void block_linears(const m2pt_block_config *c, linear_dims l[LINEARS])
{
  const size_t hd = c->heads * c->dim_head, hidden = c->ff_mult * c->dim;
  l[QKV] = (linear_dims){"attn.qkv", 3 * hd, c->dim};
  l[PROJ] = (linear_dims){"attn.proj", c->dim, hd};
  l[FC1] = (linear_dims){"mlp.fc1", hidden, c->dim};
  l[FC2] = (linear_dims){"mlp.fc2", c->dim, hidden};
}

/* Sets prefix.suffix to `count` values: `data`, or when it is NULL, values
 * drawn from `seed` times `scale` (into host, of at least count floats). */
static m2pt_status set_param(m2pt_context *ctx, m2pt_block *b, const char *prefix,
                             const char *suffix, const float *data, size_t count, unsigned seed,
                             float scale, float *host)
{
  char name[64];
  snprintf(name, sizeof name, "%s.%s", prefix, suffix);
  if (!data) {
    bench_fill_random(host, count, seed);
    for (size_t i = 0; i < count; i++)
      host[i] *= scale;
    data = host;
  }
  return BENCH_CALL(ctx, m2pt_block_set(b, name, data, count));
}

/* Every parameter the configuration has, the same for the same
 * configuration but for W_aux and λ: weights of magnitude 1/√in, W_aux
 * likewise, every λ BLOCK_SCALE. */
static m2pt_status set_parameters(m2pt_context *ctx, m2pt_block *b, const m2pt_block_config *c,
                                  float *host)
{
  static const char *const norms[] = {"norm1", "norm2"};
  static const float scale = BLOCK_SCALE;
  m2pt_status s = M2PT_OK;
  for (unsigned i = 0; s == M2PT_OK && i < 2; i++) {
    s = set_param(ctx, b, norms[i], "weight", NULL, c->dim, 10 + 2 * i, 1.0f, host);
    if (s == M2PT_OK)
      s = set_param(ctx, b, norms[i], "bias", NULL, c->dim, 11 + 2 * i, 1.0f, host);
  }
  linear_dims l[LINEARS];
  block_linears(c, l);
  for (unsigned i = 0; s == M2PT_OK && i < LINEARS; i++) {
    const size_t n = l[i].out * l[i].in;
    const float w_scale = 1.0f / sqrtf((float)l[i].in);
    const unsigned seed = 20 + 4 * i;
    s = set_param(ctx, b, l[i].name, "weight", NULL, n, seed, w_scale, host);
    if (s == M2PT_OK)
      s = set_param(ctx, b, l[i].name, "bias", NULL, l[i].out, seed + 1, 1.0f, host);
    if (s == M2PT_OK && c->pathway)
      s = set_param(ctx, b, l[i].name, "aux_weight", NULL, n, seed + 2, w_scale, host);
    if (s == M2PT_OK && c->pathway)
      s = set_param(ctx, b, l[i].name, "cross_modal_scale", &scale, 1, 0, 0.0f, host);
  }
  return s;
}

m2pt_status bench_block_make(m2pt_context *ctx, const m2pt_block_config *c, int merge,
                             m2pt_block **out)
{
  linear_dims l[LINEARS];
  block_linears(c, l);
  float *host = malloc(l[FC1].out * l[FC1].in * sizeof *host); /* the largest */
  m2pt_status s = host ? BENCH_CALL(ctx, m2pt_block_create(ctx, c, out))
                       : bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  if (s == M2PT_OK)
    s = set_parameters(ctx, *out, c, host);
  if (s == M2PT_OK && merge)
    s = BENCH_CALL(ctx, m2pt_block_merge(*out));
  free(host);
  return s;
}

double bench_block_gemm_flops(const m2pt_block_config *c, size_t rows)
{
  linear_dims l[LINEARS];
  block_linears(c, l);
  double sum = 0.0;
  for (int i = 0; i < LINEARS; i++)
    sum += bench_flops((bench_shape){rows, l[i].in, l[i].out});
  return sum;
}

/* ---- the tensors of the op cases ---- */

enum op_tensor {
  T_X3, T_Y3,                           /* the block's input and output [B][N][dim] */
  T_X, T_Y, T_SUM,                      /* [R][dim], R = B·N */
  T_NORM_W, T_NORM_B,                   /* [dim] */
  T_QKV, T_QKV3,                        /* [R][3·hd], [B][N][3·hd], hd = heads·dim_head */
  T_ATTN3, T_ATTN,                      /* [B][N][hd], [R][hd] */
  T_HIDDEN, T_ACT, T_FC1_B,             /* [R][hidden], [R][hidden], [hidden] */
  T_W_QKV, T_W_PROJ, T_W_FC1, T_W_FC2, /* in linear order: [out][in] */
  T_COUNT
};

typedef struct tensor_spec {
  size_t ndim, dims[3];
} tensor_spec;

static void tensor_specs(const block_size *sz, const m2pt_block_config *c,
                         tensor_spec spec[T_COUNT])
{
  const size_t b = sz->batch, n = sz->tokens, r = b * n, dim = c->dim;
  const size_t hd = c->heads * c->dim_head, hidden = c->ff_mult * dim;
  spec[T_X3] = spec[T_Y3] = (tensor_spec){3, {b, n, dim}};
  spec[T_X] = spec[T_Y] = spec[T_SUM] = (tensor_spec){2, {r, dim}};
  spec[T_NORM_W] = spec[T_NORM_B] = (tensor_spec){1, {dim}};
  spec[T_QKV] = (tensor_spec){2, {r, 3 * hd}};
  spec[T_QKV3] = (tensor_spec){3, {b, n, 3 * hd}};
  spec[T_ATTN3] = (tensor_spec){3, {b, n, hd}};
  spec[T_ATTN] = (tensor_spec){2, {r, hd}};
  spec[T_HIDDEN] = spec[T_ACT] = (tensor_spec){2, {r, hidden}};
  spec[T_FC1_B] = (tensor_spec){1, {hidden}};
  linear_dims l[LINEARS];
  block_linears(c, l);
  for (int i = 0; i < LINEARS; i++)
    spec[T_W_QKV + i] = (tensor_spec){2, {l[i].out, l[i].in}};
}

/* The GEMM cases' input and output, in linear order. */
static const enum op_tensor gemm_io[LINEARS][2] = {
  {T_X, T_QKV}, {T_ATTN, T_Y}, {T_X, T_HIDDEN}, {T_HIDDEN, T_Y}};

/* ---- the cases ---- */

enum {
  C_UNMERGED, C_MERGED, C_PLAIN, /* whole blocks */
  C_LAYER_NORM, C_QKV, C_ATTENTION, C_PROJ, C_FC1, C_GELU, C_FC2, C_ADD,
  C_COUNT
};
#define BLOCKS 3

/* Everything one block size measures. */
typedef struct block_bench {
  m2pt_context *ctx;
  m2pt_block_config cfg;
  m2pt_block *block[BLOCKS]; /* unmerged, merged, plain */
  m2pt_tensor *t[T_COUNT];
  bench_gemm_state gemm[LINEARS];
  bench_attention_state attention;
} block_bench;

typedef struct block_state {
  block_bench *bb;
  int which; /* index into bb->block */
} block_state;

static m2pt_status run_block(void *state)
{
  const block_state *b = state;
  m2pt_context *ctx = b->bb->ctx;
  m2pt_tensor *const *t = b->bb->t;
  return bench_finish(
      ctx, BENCH_CALL(ctx, m2pt_block_forward(b->bb->block[b->which], t[T_X3], NULL, t[T_Y3])));
}

static m2pt_status run_layer_norm(void *state)
{
  block_bench *bb = state;
  m2pt_tensor *const *t = bb->t;
  return bench_finish(bb->ctx, BENCH_CALL(bb->ctx, m2pt_layer_norm(bb->ctx, t[T_X], t[T_NORM_W],
                                                                   t[T_NORM_B], bb->cfg.eps,
                                                                   t[T_Y])));
}

static m2pt_status run_gelu(void *state)
{
  block_bench *bb = state;
  m2pt_tensor *const *t = bb->t;
  return bench_finish(bb->ctx, BENCH_CALL(bb->ctx, m2pt_gelu(bb->ctx, t[T_HIDDEN], t[T_FC1_B],
                                                             bb->cfg.gelu, t[T_ACT])));
}

static m2pt_status run_add(void *state)
{
  block_bench *bb = state;
  m2pt_tensor *const *t = bb->t;
  return bench_finish(bb->ctx, BENCH_CALL(bb->ctx, m2pt_add(bb->ctx, t[T_X], t[T_Y], t[T_SUM])));
}

/* A row of the block table. */
typedef struct block_case {
  char name[48]; /* "MODEL/OP" */
  bench_case c;
  char shape[32];
  double flops;
  int per_block; /* times a block runs this op; 0 for a whole block */
  int gemm;      /* one of the four linears' GEMMs */
} block_case;

static const char *case_model; /* the model of the cases set_case names */

static void set_case(block_case *c, const char *name, bench_run_fn run, void *state,
                     m2pt_context *ctx, double flops, int per_block)
{
  snprintf(c->name, sizeof c->name, "%s/%s", case_model, name);
  c->c = (bench_case){run, state, ctx};
  c->flops = flops;
  c->per_block = per_block;
}

static void dims_shape(block_case *c, const block_bench *bb, enum op_tensor t)
{
  const m2pt_tensor *x = bb->t[t];
  size_t dims[M2PT_MAX_DIMS];
  const size_t n = m2pt_tensor_ndim(x);
  for (size_t i = 0; i < n; i++)
    dims[i] = m2pt_tensor_dim(x, i);
  bench_dims_string(dims, n, c->shape, sizeof c->shape);
}

static void gemm_cases(block_bench *bb, block_case cases[C_COUNT], double *flops_sum)
{
  static const char *const names[LINEARS] = {"qkv-gemm", "proj-gemm", "fc1-gemm", "fc2-gemm"};
  static const int index[LINEARS] = {C_QKV, C_PROJ, C_FC1, C_FC2};
  linear_dims l[LINEARS];
  block_linears(&bb->cfg, l);
  *flops_sum = 0.0;
  for (int i = 0; i < LINEARS; i++) {
    const enum op_tensor in = gemm_io[i][0], out = gemm_io[i][1];
    const bench_shape shape = {m2pt_tensor_dim(bb->t[in], 0), l[i].in, l[i].out};
    bb->gemm[i] = (bench_gemm_state){bb->ctx, bb->t[in], bb->t[T_W_QKV + i], bb->t[out]};
    block_case *c = &cases[index[i]];
    set_case(c, names[i], bench_run_gemm, &bb->gemm[i], bb->ctx, bench_flops(shape), 1);
    c->gemm = 1;
    bench_shape_string(shape, c->shape, sizeof c->shape);
    *flops_sum += c->flops;
  }
}

static void block_cases(block_bench *bb, const block_size *sz, block_state states[BLOCKS],
                        block_case cases[C_COUNT])
{
  static const char *const names[BLOCKS] = {"block-unmerged", "block-merged", "block-plain"};
  const m2pt_block_config *c = &bb->cfg;
  m2pt_context *ctx = bb->ctx;
  case_model = sz->model;
  double gemm_flops;
  gemm_cases(bb, cases, &gemm_flops);
  const double attn_flops = bench_attention_flops(sz->batch, sz->tokens, c->heads, c->dim_head);
  for (int i = 0; i < BLOCKS; i++) {
    states[i] = (block_state){bb, i};
    set_case(&cases[i], names[i], run_block, &states[i], ctx, gemm_flops + attn_flops, 0);
    dims_shape(&cases[i], bb, T_X3);
  }
  bb->attention = (bench_attention_state){ctx, bb->t[T_QKV3], bb->t[T_ATTN3], c->heads,
                                          c->dim_head, M2PT_ATTENTION_AUTO};
  set_case(&cases[C_ATTENTION], "attention", bench_run_attention, &bb->attention, ctx,
           attn_flops, 1);
  const size_t dims[4] = {sz->batch, sz->tokens, c->heads, c->dim_head};
  bench_dims_string(dims, 4, cases[C_ATTENTION].shape, sizeof cases[C_ATTENTION].shape);
  set_case(&cases[C_LAYER_NORM], "layer_norm", run_layer_norm, bb, ctx, 0.0, 2);
  dims_shape(&cases[C_LAYER_NORM], bb, T_X);
  set_case(&cases[C_GELU], "gelu", run_gelu, bb, ctx, 0.0, 1);
  dims_shape(&cases[C_GELU], bb, T_HIDDEN);
  set_case(&cases[C_ADD], "add", run_add, bb, ctx, 0.0, 2);
  dims_shape(&cases[C_ADD], bb, T_X);
}

/* ---- results ---- */

static void print_summary_line(const char *model, const char *label, double value,
                               const char *note)
{
  char text[160];
  snprintf(text, sizeof text, "%s: %s", model, label);
  bench_progress_clear();
  printf("%-9s %-60s %8.3f  (%s)\n", "block", text, value, note);
  fflush(stdout);
}

/* Bytes the memory-bound ops move: LayerNorm reads x and writes y (its
 * weight and bias are negligible), GELU reads h and writes its output, add
 * reads two and writes one. */
static double op_bytes(int index, const block_bench *bb)
{
  const m2pt_tensor *x = bb->t[index == C_GELU ? T_HIDDEN : T_X];
  const double n = (double)m2pt_tensor_dim(x, 0) * (double)m2pt_tensor_dim(x, 1) * 4.0;
  return index == C_LAYER_NORM ? 2 * n : index == C_GELU ? 2 * n : index == C_ADD ? 3 * n : 0.0;
}

static void print_block_results(const char *model, const block_bench *bb,
                                const block_case *cases, const bench_timing *t)
{
  double gemms_ms = 0.0, ops_ms = 0.0;
  for (int i = 0; i < C_COUNT; i++) {
    const bench_row r = {.suite = "block", .name = cases[i].name, .shape = cases[i].shape,
                         .t = &t[i], .flops = cases[i].flops,
                         .bytes = op_bytes(i, bb)};
    bench_report(&r);
    gemms_ms += cases[i].gemm ? t[i].median_ms : 0.0;
    ops_ms += cases[i].per_block * t[i].median_ms;
  }
  const double unmerged = t[C_UNMERGED].median_ms, merged = t[C_MERGED].median_ms;
  const double plain = t[C_PLAIN].median_ms;
  char label[96];
  snprintf(label, sizeof label, "block-unmerged / sum of the 4 GEMMs (%.3f ms)", gemms_ms);
  print_summary_line(model, label, unmerged / gemms_ms, "target <= 1.25");
  print_summary_line(model, "block-merged / block-plain", merged / plain, "target 0.98 .. 1.02");
  print_summary_line(model, "block-unmerged / block-merged", unmerged / merged,
                     "target <= 1.10");
  snprintf(label, sizeof label, "sum of the ops (%.3f ms) / block-plain", ops_ms);
  print_summary_line(model, label, ops_ms / plain,
                     "layer_norm and add counted twice, as in a block");
}

/* ---- one block size ---- */

static m2pt_status create_tensors(block_bench *bb, const block_size *sz)
{
  tensor_spec spec[T_COUNT];
  tensor_specs(sz, &bb->cfg, spec);
  m2pt_status s = M2PT_OK;
  for (unsigned i = 0; s == M2PT_OK && i < T_COUNT; i++)
    s = bench_random_tensor(bb->ctx, spec[i].ndim, spec[i].dims, 100 + i, &bb->t[i]);
  return s;
}

static m2pt_status create_blocks(block_bench *bb)
{
  m2pt_block_config plain = bb->cfg;
  plain.pathway = 0;
  m2pt_status s = bench_block_make(bb->ctx, &bb->cfg, 0, &bb->block[0]);
  if (s == M2PT_OK)
    s = bench_block_make(bb->ctx, &bb->cfg, 1, &bb->block[1]);
  if (s == M2PT_OK)
    s = bench_block_make(bb->ctx, &plain, 0, &bb->block[2]);
  return s;
}

static void block_bench_destroy(block_bench *bb)
{
  for (int i = 0; i < BLOCKS; i++)
    m2pt_block_destroy(bb->block[i]);
  for (int i = 0; i < T_COUNT; i++)
    m2pt_tensor_destroy(bb->t[i]);
}

static m2pt_status block_size_run(m2pt_context *ctx, const bench_options *o, const block_size *sz)
{
  block_bench bb = {.ctx = ctx, .cfg = block_config(sz)};
  m2pt_status s = create_tensors(&bb, sz);
  if (s == M2PT_OK)
    s = create_blocks(&bb);
  block_state states[BLOCKS];
  block_case cases[C_COUNT] = {0};
  bench_case runs[C_COUNT];
  bench_timing t[C_COUNT];
  if (s == M2PT_OK) {
    block_cases(&bb, sz, states, cases);
    for (int i = 0; i < C_COUNT; i++)
      runs[i] = cases[i].c;
    char label[96];
    snprintf(label, sizeof label, "block %s B=%zu N=%zu", sz->model, sz->batch, sz->tokens);
    s = bench_measure(runs, C_COUNT, o, label, t);
  }
  if (s == M2PT_OK)
    print_block_results(sz->model, &bb, cases, t);
  block_bench_destroy(&bb);
  return s;
}

m2pt_status bench_suite_block(m2pt_context *ctx, const bench_options *o)
{
  const block_size *sizes;
  const size_t n = block_sizes(o, &sizes);
  m2pt_status s = M2PT_OK;
  for (size_t i = 0; s == M2PT_OK && i < n; i++) {
    bench_progress("block %s B=%zu N=%zu dim=%zu heads=%zu: setting up", sizes[i].model,
                   sizes[i].batch, sizes[i].tokens, sizes[i].dim, sizes[i].heads);
    s = block_size_run(ctx, o, &sizes[i]);
  }
  return s;
}
