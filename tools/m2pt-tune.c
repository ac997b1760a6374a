/* m2pt-tune: tunes CLBlast's single-precision GEMM kernels (XgemmDirect and
 * Xgemm, and the direct/indirect switch between them) for one device on the
 * GEMM shapes of the M2PT block, within a time budget, and stores the best
 * parameters in the device's tuning store, which every m2pt context created
 * for the device then applies (lib/core/tuning.h).
 *
 * The search: CLBlast's defaults are measured first (the baseline), then
 * CLBlast's database entries for CPUs (the seeds), then alternately
 * mutations of the best so far and random parameter sets, each drawn from
 * the values CLBlast's own tuners try and kept only when it satisfies the
 * kernel's constraints. Each candidate is applied with
 * CLBlastOverrideParameters, checked against a double-precision sample of
 * the product, and timed by wall clock around m2pt_gemm and
 * m2pt_context_finish (CLBlast's event covers one kernel of several). The
 * search state is written after every candidate (and before it, marked
 * pending, so that a candidate that crashes the driver is skipped on the
 * next run); a second run with the same budget continues where the first
 * stopped.
 *
 * A maintainer tool: it links the library's internals (the store format and
 * CLBlast's parameter lists), unlike m2pt-info and m2pt-bench. */
#include <errno.h>
#include <signal.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#ifdef __linux__
#  include <sys/prctl.h>
#endif
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/binary_cache.h"
#include "core/context_impl.h"
#include "core/tuning.h"
#include "m2pt/m2pt.h"
#include "m2pt/opencl.h"

#define MAX_SHAPES 8
#define MAX_TRIED 10000
#define SAMPLES 64

typedef struct shape {
  size_t rows, in, out;
} shape;

typedef enum kind { KIND_DIRECT, KIND_INDIRECT } kind;

typedef enum outcome {
  OUT_OK,       /* measured on every shape */
  OUT_PRUNED,   /* stopped once clearly slower than the best */
  OUT_FAILED,   /* CLBlast or OpenCL refused it */
  OUT_WRONG,    /* wrong results */
  OUT_CRASHED,  /* the process died while it ran (found pending on resume) */
} outcome;

static const char *const outcome_names[] = {"ok", "pruned", "failed", "wrong", "crashed"};

typedef struct candidate {
  kind kind;
  m2pt_tuning t;    /* DIRECT or XGEMM, and ROUTINE that forces its path */
  outcome outcome;
  double total_ms;  /* summed medians over the shapes; INFINITY unless OK */
  double ms[MAX_SHAPES];
} candidate;

typedef struct search {
  char state_path[4200];
  char store_path[4096];
  char shapes_text[256];
  shape shapes[MAX_SHAPES];
  size_t shape_count;
  unsigned long long seed;
  double budget_s, spent_s;
  size_t next;                 /* candidates drawn so far (seeds included) */
  double baseline_ms[MAX_SHAPES];
  int have_baseline;
  candidate *tried;
  size_t tried_count;
  int have_pending;
  candidate pending;
  long best;                   /* index into tried, -1 for none */
} search;

typedef struct bench {
  m2pt_context *ctx;
  m2pt_tensor *x[MAX_SHAPES], *w[MAX_SHAPES], *y[MAX_SHAPES];
  float *hx[MAX_SHAPES], *hw[MAX_SHAPES], *hy[MAX_SHAPES];
  size_t sample_i[MAX_SHAPES][SAMPLES], sample_j[MAX_SHAPES][SAMPLES];
  double sample_ref[MAX_SHAPES][SAMPLES];
  unsigned reps;
} bench;

static void usage(FILE *f)
{
  fprintf(f,
          "usage: m2pt-tune [--device SEL] [--budget SECONDS] [--shapes LIST] [--store DIR]\n"
          "                 [--resume | --restart] [--reps N] [--seed N]\n"
          "                 [--candidate-timeout SECONDS] [--help]\n"
          "Tunes CLBlast's single-precision GEMM (XgemmDirect, Xgemm and the switch\n"
          "between them) for one device on the M2PT block's GEMM shapes and stores the\n"
          "best parameters, which every m2pt context on that device then applies\n"
          "(M2PT_TUNING=off ignores them; m2pt-info shows whether a device is tuned).\n"
          "  --device SEL      device selector, as for m2pt-info (default: m2pt's default)\n"
          "  --budget SECONDS  total search time, counted over resumed runs (default 600)\n"
          "  --shapes LIST     ROWSxINxOUT,... y[rows][out] = x[rows][in] * W[out][in]^T\n"
          "                    (default: ViT-B/16, B=1, N=197: 197x768x2304,197x768x768,\n"
          "                    197x768x3072,197x3072x768)\n"
          "  --store DIR       (or --out DIR) the cache directory holding the store,\n"
          "                    DIR/tuning/<key>.json\n"
          "                    (default: $M2PT_CACHE_DIR, else $XDG_CACHE_HOME/m2pt,\n"
          "                    else ~/.cache/m2pt)\n"
          "  --resume          continue the saved search for this device (default)\n"
          "  --restart         discard the saved search and start again\n"
          "  --reps N          timed runs per shape and candidate (default 3)\n"
          "  --seed N          random seed of the search (default 1)\n"
          "  --candidate-timeout SECONDS  skip a candidate that takes longer, its\n"
          "                    compile included (default 300; 0: no limit)\n"
          "Progress goes to stderr; the search state is saved after every candidate next\n"
          "to the store (<key>.search.json).\n");
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t next_random(uint64_t *s)
{
  /* xorshift64* */
  uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545f4914f6cdd1dull;
}

static size_t pick(uint64_t *rng, const size_t *values, size_t n)
{
  return values[next_random(rng) % n];
}

static double flops(const shape *s)
{
  return 2.0 * (double)s->rows * (double)s->in * (double)s->out;
}

static double total_flops(const search *st)
{
  double f = 0.0;
  for (size_t i = 0; i < st->shape_count; i++)
    f += flops(&st->shapes[i]);
  return f;
}

/* ---- shapes ---- */

static int parse_shapes(const char *text, search *st)
{
  st->shape_count = 0;
  const char *p = text;
  while (*p) {
    if (st->shape_count == MAX_SHAPES)
      return -1;
    char *end = NULL;
    unsigned long long v[3];
    for (int i = 0; i < 3; i++) {
      errno = 0;
      v[i] = strtoull(p, &end, 10);
      if (errno || end == p || v[i] == 0 || v[i] > 65536)
        return -1;
      p = end;
      if (i < 2) {
        if (*p != 'x')
          return -1;
        p++;
      }
    }
    st->shapes[st->shape_count++] = (shape){(size_t)v[0], (size_t)v[1], (size_t)v[2]};
    if (*p == ',')
      p++;
    else if (*p)
      return -1;
  }
  if (st->shape_count == 0)
    return -1;
  /* The canonical spelling, as stored. */
  st->shapes_text[0] = '\0';
  for (size_t i = 0; i < st->shape_count; i++) {
    char part[64];
    snprintf(part, sizeof part, "%s%zux%zux%zu", i ? "," : "", st->shapes[i].rows,
             st->shapes[i].in, st->shapes[i].out);
    if (strlen(st->shapes_text) + strlen(part) >= sizeof st->shapes_text)
      return -1;
    strcat(st->shapes_text, part);
  }
  return 0;
}

/* ---- candidates ---- */

/* Values the search draws from: those of CLBlast's tuners, narrowed to what
 * can pay off (the store accepts the wider ranges of tuning.c). */
static const size_t pow_1_32[] = {1, 2, 4, 8, 16, 32};
static const size_t pow_1_16[] = {1, 2, 4, 8, 16};
static const size_t pow_1_8[] = {1, 2, 4, 8};
static const size_t pow_8_128[] = {8, 16, 32, 64, 128};
static const size_t pow_8_64[] = {8, 16, 32, 64};
static const size_t zero_one[] = {0, 1};
#define N(a) (sizeof(a) / sizeof((a)[0]))

typedef struct range {
  const size_t *values;
  size_t n;
} range;

static range direct_range(size_t param)
{
  switch (param) {
  case M2PT_XD_KWID: return (range){pow_1_16, N(pow_1_16)};
  case M2PT_XD_PADA: case M2PT_XD_PADB: return (range){zero_one, 2};
  case M2PT_XD_VWMD: case M2PT_XD_VWND: return (range){pow_1_8, N(pow_1_8)};
  case M2PT_XD_WGD: return (range){pow_8_128, N(pow_8_128)};
  default: return (range){pow_1_32, N(pow_1_32)}; /* the thread dimensions */
  }
}

static range xgemm_range(size_t param, size_t gemmk)
{
  static const size_t one[] = {1}, zero[] = {0};
  switch (param) {
  case M2PT_XG_GEMMK: return (range){zero_one, 2};
  case M2PT_XG_KREG: return gemmk ? (range){pow_1_16, N(pow_1_16)} : (range){one, 1};
  case M2PT_XG_KWG: return gemmk ? (range){one, 1} : (range){pow_8_64, N(pow_8_64)};
  case M2PT_XG_KWI: return gemmk ? (range){one, 1} : (range){pow_1_8, N(pow_1_8)};
  case M2PT_XG_MWG: case M2PT_XG_NWG: return (range){pow_8_128, N(pow_8_128)};
  case M2PT_XG_SA: case M2PT_XG_SB: case M2PT_XG_STRM: case M2PT_XG_STRN:
    return gemmk ? (range){zero, 1} : (range){zero_one, 2};
  case M2PT_XG_VWM: case M2PT_XG_VWN: return (range){pow_1_8, N(pow_1_8)};
  default: return (range){pow_1_32, N(pow_1_32)}; /* the thread dimensions */
  }
}

/* CLBlast's parameters for devices its database does not know (its
 * "default" entries), which a candidate's other kernel keeps: every
 * candidate is then measured with one whole, reproducible set (the GEMM
 * routine compiles all its kernels into one program, and CLBlast keeps
 * overrides per device for the whole process), and that set is stored. */
static const size_t neutral_direct[M2PT_XD_COUNT] = {2, 8, 8, 8, 8, 1, 1, 1, 1, 16};
static const size_t neutral_xgemm[M2PT_XG_COUNT] = {0, 1, 32, 2, 8, 8, 32, 16,
                                                    16, 32, 1, 1, 0, 0, 4, 2};

/* Completes a candidate: the other kernel's neutral set, and the routine
 * setting that sends every tuned shape down the candidate's path
 * (XGEMM_MIN_INDIRECT_SIZE³ compared with m·n·k). */
static void set_path(candidate *c)
{
  c->t.present = (1u << M2PT_TK_DIRECT) | (1u << M2PT_TK_XGEMM) | (1u << M2PT_TK_ROUTINE);
  c->t.min_indirect = c->kind == KIND_DIRECT ? 65536 : 1;
  if (c->kind == KIND_DIRECT)
    memcpy(c->t.xgemm, neutral_xgemm, sizeof c->t.xgemm);
  else
    memcpy(c->t.direct, neutral_direct, sizeof c->t.direct);
}

static int valid(const candidate *c, const m2pt_tuning_limits *limits)
{
  const m2pt_tuning_kernel k = c->kind == KIND_DIRECT ? M2PT_TK_DIRECT : M2PT_TK_XGEMM;
  /* Work-groups past 256 items only thrash a CPU's caches and time out
   * on a GPU's: not worth a compile. */
  const size_t wg = c->kind == KIND_DIRECT ? c->t.direct[M2PT_XD_MDIMCD] * c->t.direct[M2PT_XD_NDIMCD]
                                           : c->t.xgemm[M2PT_XG_MDIMC] * c->t.xgemm[M2PT_XG_NDIMC];
  return wg <= 256 && m2pt_tuning_check(&c->t, k, limits) == NULL;
}

static int same(const candidate *a, const candidate *b)
{
  if (a->kind != b->kind)
    return 0;
  return a->kind == KIND_DIRECT ? !memcmp(a->t.direct, b->t.direct, sizeof a->t.direct)
                                : !memcmp(a->t.xgemm, b->t.xgemm, sizeof a->t.xgemm);
}

static int already_tried(const search *st, const candidate *c)
{
  for (size_t i = 0; i < st->tried_count; i++)
    if (same(&st->tried[i], c))
      return 1;
  return 0;
}

/* GEMMK 1 ties the load layout to the compute layout. */
static void tie_gemmk1(candidate *c)
{
  size_t *p = c->t.xgemm;
  if (p[M2PT_XG_GEMMK]) {
    p[M2PT_XG_MDIMA] = p[M2PT_XG_MDIMC];
    p[M2PT_XG_NDIMB] = p[M2PT_XG_NDIMC];
  }
}

static void random_candidate(uint64_t *rng, kind k, candidate *c)
{
  memset(c, 0, sizeof *c);
  c->kind = k;
  if (k == KIND_DIRECT) {
    for (size_t i = 0; i < M2PT_XD_COUNT; i++) {
      const range r = direct_range(i);
      c->t.direct[i] = pick(rng, r.values, r.n);
    }
  } else {
    /* GEMMK 1 (CLBlast's 2-D register tiling) gave wrong results on PoCL
     * 3.1 with every CPU entry of CLBlast's database: seeds only. */
    const size_t gemmk = 0;
    for (size_t i = 0; i < M2PT_XG_COUNT; i++) {
      const range r = xgemm_range(i, gemmk);
      c->t.xgemm[i] = i == M2PT_XG_GEMMK ? gemmk : pick(rng, r.values, r.n);
    }
    tie_gemmk1(c);
  }
  set_path(c);
}

/* One parameter (two, half the time) moved to a neighbouring value. */
static void mutate(uint64_t *rng, const candidate *from, candidate *c)
{
  *c = *from;
  c->outcome = OUT_OK;
  const int moves = 1 + (int)(next_random(rng) % 2);
  for (int m = 0; m < moves; m++) {
    const size_t count = c->kind == KIND_DIRECT ? M2PT_XD_COUNT : M2PT_XG_COUNT;
    const size_t param = next_random(rng) % count;
    size_t *v = c->kind == KIND_DIRECT ? &c->t.direct[param] : &c->t.xgemm[param];
    const range r = c->kind == KIND_DIRECT ? direct_range(param)
                                           : xgemm_range(param, c->t.xgemm[M2PT_XG_GEMMK]);
    size_t at = 0;
    while (at < r.n && r.values[at] != *v)
      at++;
    if (at == r.n)
      *v = pick(rng, r.values, r.n);
    else if (next_random(rng) % 2 && at + 1 < r.n)
      *v = r.values[at + 1];
    else if (at > 0)
      *v = r.values[at - 1];
    else if (at + 1 < r.n)
      *v = r.values[at + 1];
  }
  if (c->kind == KIND_INDIRECT)
    tie_gemmk1(c);
  set_path(c);
}

/* CLBlast's database entries for CPUs (CLBlast 1.5, src/database/kernels:
 * the Intel CPU entries and their defaults, which fit any x86 core through
 * PoCL or Intel's runtime). */
static const size_t seed_direct[][M2PT_XD_COUNT] = {
    /* KWID MDIMAD MDIMCD NDIMBD NDIMCD PADA PADB VWMD VWND WGD */
    {8, 8, 8, 8, 8, 0, 0, 8, 4, 64},      /* 0 i5-4590S */
    {2, 8, 8, 8, 8, 0, 0, 2, 2, 64},      /* 1 i7-4790K */
    {2, 8, 8, 16, 8, 0, 0, 4, 4, 64},     /* 2 i7-6770HQ */
    {2, 8, 8, 8, 8, 1, 1, 4, 4, 32},      /* 3 Intel CPU default */
    {16, 8, 16, 16, 16, 0, 0, 1, 1, 32},  /* 4 Xeon E5-2630 v3/v4 */
    {2, 8, 8, 8, 8, 0, 0, 1, 8, 64},      /* 5 i7-2670QM */
    {8, 16, 16, 16, 16, 0, 0, 1, 1, 64},  /* 6 i5-4570 */
    {16, 16, 8, 8, 8, 0, 0, 2, 4, 32},    /* 7 i7 920 */
    {2, 32, 32, 32, 32, 0, 0, 1, 1, 64},  /* 8 i5-6200U */
};
static const size_t seed_xgemm[][M2PT_XG_COUNT] = {
    /* GEMMK KREG KWG KWI MDIMA MDIMC MWG NDIMB NDIMC NWG SA SB STRM STRN VWM VWN */
    {0, 1, 32, 2, 16, 16, 64, 8, 8, 64, 0, 0, 0, 0, 4, 4},      /* 0 Intel CPU default */
    {1, 1, 1, 1, 16, 16, 16, 8, 8, 64, 0, 0, 0, 0, 1, 1},       /* 1 Xeon E5-2630 v4 */
    {0, 1, 32, 2, 16, 8, 128, 16, 8, 64, 0, 0, 1, 0, 1, 2},     /* 2 i7 920 */
    {0, 1, 32, 2, 16, 32, 32, 8, 8, 64, 0, 1, 0, 0, 1, 8},      /* 3 i7-6770HQ */
    {0, 1, 32, 2, 32, 16, 64, 32, 8, 64, 0, 1, 1, 0, 1, 1},     /* 4 i5-4570 */
    {0, 1, 16, 2, 8, 8, 128, 8, 8, 128, 1, 1, 1, 0, 1, 8},      /* 5 i7-4790K */
    {0, 1, 32, 2, 16, 8, 32, 8, 32, 128, 1, 1, 1, 1, 1, 4},     /* 6 Xeon E5-2630 v3 */
    {0, 1, 32, 2, 32, 8, 128, 8, 8, 128, 1, 1, 1, 1, 2, 8},     /* 7 i7-3770 */
    {0, 1, 32, 8, 32, 32, 64, 32, 16, 64, 1, 1, 1, 0, 2, 2},    /* 8 i5-6200U */
    {0, 1, 32, 8, 16, 16, 64, 32, 32, 64, 0, 1, 1, 0, 1, 2},    /* 9 i7-5930K */
    {0, 1, 16, 2, 8, 8, 128, 16, 8, 128, 0, 1, 1, 1, 1, 8},     /* 10 i7-2670QM */
    {1, 16, 1, 1, 2, 2, 64, 2, 2, 128, 0, 0, 0, 0, 8, 2},       /* 11 i5-4590S */
    /* Shapes for PoCL, not from the database: no local memory (no barrier),
     * one float8 of A per load, a work-item tile of 4 to 16 float8
     * accumulators (16 AVX registers), NWG small because N (the 197 tokens)
     * is padded to a multiple of it. */
    {0, 1, 32, 2, 8, 8, 128, 4, 4, 16, 0, 0, 0, 0, 8, 4},       /* 12 MWI 16, NWI 4 */
    {0, 1, 32, 2, 16, 16, 128, 2, 2, 16, 0, 0, 0, 0, 8, 8},     /* 13 MWI 8, NWI 8 */
    {0, 1, 32, 2, 8, 8, 128, 4, 4, 8, 0, 0, 0, 0, 8, 2},        /* 14 MWI 16, NWI 2 */
    {0, 1, 32, 4, 4, 4, 128, 4, 4, 8, 0, 0, 0, 0, 8, 2},        /* 15 MWI 32, NWI 2 */
    {0, 1, 32, 2, 16, 16, 128, 4, 4, 16, 0, 0, 0, 0, 8, 4},     /* 16 MWI 8, NWI 4 */
};

/* The order the seeds are tried in. Compiles dominate a candidate's cost on
 * PoCL (a minute or more each), so the likeliest come first: on PoCL, work-
 * items of a group run as loops, and barriers split them and spill every
 * live private variable to memory, so Xgemm without local memory (SA = SB =
 * 0: no barrier at all) leads, then the direct kernel (always barriers). */
static const struct {
  kind kind;
  unsigned char index;
} seed_order[] = {
    {KIND_INDIRECT, 12}, {KIND_INDIRECT, 13}, {KIND_INDIRECT, 14}, {KIND_INDIRECT, 15},
    {KIND_INDIRECT, 16}, {KIND_INDIRECT, 0}, {KIND_INDIRECT, 1}, {KIND_DIRECT, 0},   {KIND_INDIRECT, 2},
    {KIND_DIRECT, 3},   {KIND_INDIRECT, 3}, {KIND_DIRECT, 1},   {KIND_INDIRECT, 4},
    {KIND_DIRECT, 2},   {KIND_INDIRECT, 5}, {KIND_DIRECT, 4},   {KIND_INDIRECT, 6},
    {KIND_DIRECT, 5},   {KIND_INDIRECT, 7}, {KIND_DIRECT, 6},   {KIND_INDIRECT, 8},
    {KIND_DIRECT, 7},   {KIND_INDIRECT, 9}, {KIND_DIRECT, 8},   {KIND_INDIRECT, 10},
    {KIND_INDIRECT, 11},
};

/* The seed with index i; 0 when i is past them. */
static int seed_candidate(size_t i, candidate *c)
{
  memset(c, 0, sizeof *c);
  if (i >= N(seed_order))
    return 0;
  c->kind = seed_order[i].kind;
  if (c->kind == KIND_DIRECT)
    memcpy(c->t.direct, seed_direct[seed_order[i].index], sizeof c->t.direct);
  else
    memcpy(c->t.xgemm, seed_xgemm[seed_order[i].index], sizeof c->t.xgemm);
  set_path(c);
  return 1;
}

static size_t seed_count(void)
{
  return N(seed_order);
}

/* The next untried valid candidate; 0 when none can be found. */
static int next_candidate(search *st, const m2pt_tuning_limits *limits, candidate *c)
{
  for (int attempt = 0; attempt < 100000; attempt++) {
    const size_t i = st->next++;
    uint64_t rng = st->seed * 0x9e3779b97f4a7c15ull + i * 0xbf58476d1ce4e5b9ull + 1;
    if (i < seed_count()) {
      if (!seed_candidate(i, c))
        continue;
    } else if (st->best >= 0 && next_random(&rng) % 3 != 0) {
      mutate(&rng, &st->tried[st->best], c);
    } else {
      /* Random draws lean towards the path that is winning. */
      const kind lead = st->best >= 0 ? st->tried[st->best].kind : KIND_DIRECT;
      const kind k = next_random(&rng) % 3 ? lead : (lead == KIND_DIRECT ? KIND_INDIRECT
                                                                          : KIND_DIRECT);
      random_candidate(&rng, k, c);
    }
    if (valid(c, limits) && !already_tried(st, c))
      return 1;
  }
  return 0;
}

static void describe(const candidate *c, char *buf, size_t size)
{
  const m2pt_tuning_kernel k = c->kind == KIND_DIRECT ? M2PT_TK_DIRECT : M2PT_TK_XGEMM;
  const char *const *names = m2pt_tuning_param_names(k);
  const size_t *v = m2pt_tuning_values_const(&c->t, k);
  int n = snprintf(buf, size, "%s", c->kind == KIND_DIRECT ? "direct" : "indirect");
  for (size_t i = 0; i < m2pt_tuning_param_count(k) && n > 0 && (size_t)n < size; i++)
    n += snprintf(buf + n, size - (size_t)n, " %s=%zu", names[i], v[i]);
}

/* ---- state file ---- */

static cJSON *candidate_json(const candidate *c, size_t shapes)
{
  cJSON *o = cJSON_CreateObject();
  if (!o)
    return NULL;
  const m2pt_tuning_kernel k = c->kind == KIND_DIRECT ? M2PT_TK_DIRECT : M2PT_TK_XGEMM;
  cJSON *values = cJSON_AddArrayToObject(o, "values");
  cJSON *ms = cJSON_AddArrayToObject(o, "ms");
  cJSON_AddStringToObject(o, "kind", c->kind == KIND_DIRECT ? "direct" : "indirect");
  cJSON_AddStringToObject(o, "outcome", outcome_names[c->outcome]);
  if (isfinite(c->total_ms))
    cJSON_AddNumberToObject(o, "total_ms", c->total_ms);
  const size_t *v = m2pt_tuning_values_const(&c->t, k);
  for (size_t i = 0; values && i < m2pt_tuning_param_count(k); i++)
    cJSON_AddItemToArray(values, cJSON_CreateNumber((double)v[i]));
  for (size_t i = 0; ms && c->outcome == OUT_OK && i < shapes; i++)
    cJSON_AddItemToArray(ms, cJSON_CreateNumber(c->ms[i]));
  return o;
}

static int candidate_from_json(const cJSON *o, size_t shapes, candidate *c)
{
  memset(c, 0, sizeof *c);
  const cJSON *kind_item = cJSON_GetObjectItemCaseSensitive(o, "kind");
  const cJSON *values = cJSON_GetObjectItemCaseSensitive(o, "values");
  const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "ms");
  const cJSON *out = cJSON_GetObjectItemCaseSensitive(o, "outcome");
  const cJSON *total = cJSON_GetObjectItemCaseSensitive(o, "total_ms");
  if (!cJSON_IsString(kind_item) || !cJSON_IsArray(values))
    return -1;
  c->kind = strcmp(kind_item->valuestring, "direct") == 0 ? KIND_DIRECT : KIND_INDIRECT;
  const m2pt_tuning_kernel k = c->kind == KIND_DIRECT ? M2PT_TK_DIRECT : M2PT_TK_XGEMM;
  if ((size_t)cJSON_GetArraySize(values) != m2pt_tuning_param_count(k))
    return -1;
  size_t *v = m2pt_tuning_values(&c->t, k);
  size_t i = 0;
  for (const cJSON *e = values->child; e; e = e->next, i++) {
    if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0 && e->valuedouble <= 65536))
      return -1;
    v[i] = (size_t)e->valuedouble;
  }
  set_path(c);
  c->outcome = OUT_FAILED;
  for (int j = 0; j < (int)N(outcome_names); j++)
    if (cJSON_IsString(out) && strcmp(out->valuestring, outcome_names[j]) == 0)
      c->outcome = (outcome)j;
  c->total_ms = INFINITY;
  if (c->outcome == OUT_OK) {
    if (!cJSON_IsNumber(total) || !cJSON_IsArray(ms) || (size_t)cJSON_GetArraySize(ms) != shapes)
      return -1;
    c->total_ms = total->valuedouble;
    i = 0;
    for (const cJSON *e = ms->child; e; e = e->next, i++)
      c->ms[i] = cJSON_IsNumber(e) ? e->valuedouble : INFINITY;
  }
  return 0;
}

/* Writes the state atomically (temporary file, rename). */
static int save_state(const search *st)
{
  cJSON *root = cJSON_CreateObject();
  if (!root)
    return -1;
  cJSON_AddStringToObject(root, "format", "m2pt-tune-search");
  cJSON_AddNumberToObject(root, "version", 1);
  cJSON_AddStringToObject(root, "shapes", st->shapes_text);
  cJSON_AddNumberToObject(root, "seed", (double)st->seed);
  cJSON_AddNumberToObject(root, "budget_s", st->budget_s);
  cJSON_AddNumberToObject(root, "spent_s", st->spent_s);
  cJSON_AddNumberToObject(root, "next", (double)st->next);
  cJSON *base = cJSON_AddArrayToObject(root, "baseline_ms");
  for (size_t i = 0; base && st->have_baseline && i < st->shape_count; i++)
    cJSON_AddItemToArray(base, cJSON_CreateNumber(st->baseline_ms[i]));
  if (st->have_pending)
    cJSON_AddItemToObject(root, "pending", candidate_json(&st->pending, st->shape_count));
  cJSON *tried = cJSON_AddArrayToObject(root, "tried");
  for (size_t i = 0; tried && i < st->tried_count; i++)
    cJSON_AddItemToArray(tried, candidate_json(&st->tried[i], st->shape_count));
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  if (!text)
    return -1;
  char dir[4200], tmp[4300];
  snprintf(dir, sizeof dir, "%s", st->state_path);
  char *slash = strrchr(dir, '/');
  if (slash) {
    *slash = '\0';
    if (m2pt_make_dirs(dir) != 0) {
      free(text);
      return -1;
    }
  }
  snprintf(tmp, sizeof tmp, "%s.XXXXXX", st->state_path);
  const int fd = mkstemp(tmp);
  FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
  int ok = f && fputs(text, f) >= 0;
  free(text);
  if (f)
    ok = fclose(f) == 0 && ok;
  else if (fd >= 0)
    close(fd);
  if (!ok || rename(tmp, st->state_path) != 0) {
    if (fd >= 0)
      remove(tmp);
    return -1;
  }
  return 0;
}

static void update_best(search *st)
{
  st->best = -1;
  for (size_t i = 0; i < st->tried_count; i++)
    if (st->tried[i].outcome == OUT_OK &&
        (st->best < 0 || st->tried[i].total_ms < st->tried[st->best].total_ms))
      st->best = (long)i;
}

static int add_tried(search *st, const candidate *c)
{
  if (st->tried_count == MAX_TRIED)
    return -1;
  st->tried[st->tried_count++] = *c;
  update_best(st);
  return 0;
}

/* Loads a saved search for the same shapes and seed; 0 when one was loaded. */
static int load_state(search *st, double charge_s)
{
  int missing;
  char why[256];
  char *text = m2pt_tuning_read_text(st->state_path, (size_t)64 << 20, &missing, why, sizeof why);
  if (!text && missing)
    return -1;
  cJSON *root = text ? cJSON_Parse(text) : NULL;
  free(text);
  int rc = -1;
  const cJSON *shapes = cJSON_GetObjectItemCaseSensitive(root, "shapes");
  const cJSON *seed = cJSON_GetObjectItemCaseSensitive(root, "seed");
  const cJSON *base = cJSON_GetObjectItemCaseSensitive(root, "baseline_ms");
  const cJSON *tried = cJSON_GetObjectItemCaseSensitive(root, "tried");
  const cJSON *pending = cJSON_GetObjectItemCaseSensitive(root, "pending");
  if (!root || !cJSON_IsString(shapes) || strcmp(shapes->valuestring, st->shapes_text) != 0 ||
      !cJSON_IsNumber(seed) || !(seed->valuedouble >= 0.0 && seed->valuedouble <= 0x1p52) ||
      (unsigned long long)seed->valuedouble != st->seed ||
      !cJSON_IsArray(base) || (size_t)cJSON_GetArraySize(base) != st->shape_count ||
      !cJSON_IsArray(tried)) {
    fprintf(stderr, "m2pt-tune: %s is for other shapes or seed, or unreadable: starting afresh\n",
            st->state_path);
    goto done;
  }
  size_t i = 0;
  for (const cJSON *e = base->child; e; e = e->next, i++)
    st->baseline_ms[i] = cJSON_IsNumber(e) ? e->valuedouble : INFINITY;
  st->have_baseline = 1;
  st->spent_s = fmax(0.0, cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(root, "spent_s")));
  const double next = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(root, "next"));
  st->next = isfinite(next) && next > 0 && next < 1e12 ? (size_t)next : 0;
  st->tried_count = 0;
  for (const cJSON *e = tried->child; e; e = e->next) {
    candidate c;
    if (candidate_from_json(e, st->shape_count, &c) == 0 && st->tried_count < MAX_TRIED)
      st->tried[st->tried_count++] = c;
  }
  if (cJSON_IsObject(pending)) {
    candidate c;
    if (candidate_from_json(pending, st->shape_count, &c) == 0) {
      char text_c[512];
      describe(&c, text_c, sizeof text_c);
      fprintf(stderr, "m2pt-tune: the last run died while measuring %s; skipping it\n", text_c);
      c.outcome = OUT_CRASHED;
      c.total_ms = INFINITY;
      st->spent_s += charge_s;
      if (st->tried_count < MAX_TRIED)
        st->tried[st->tried_count++] = c;
    }
  }
  update_best(st);
  rc = 0;
done:
  cJSON_Delete(root);
  return rc;
}

/* ---- measuring ---- */

static int check_status(m2pt_context *ctx, m2pt_status s, const char *what)
{
  if (s == M2PT_OK)
    return 0;
  fprintf(stderr, "m2pt-tune: %s: %s: %s\n", what, m2pt_status_string(s), m2pt_last_error(ctx));
  return -1;
}

static void fill(float *dst, size_t n, uint64_t seed)
{
  uint64_t s = seed;
  for (size_t i = 0; i < n; i++)
    dst[i] = (float)((double)(next_random(&s) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static int bench_init(bench *b, const search *st)
{
  for (size_t s = 0; s < st->shape_count; s++) {
    const shape *sh = &st->shapes[s];
    const size_t xs[2] = {sh->rows, sh->in}, ws[2] = {sh->out, sh->in}, ys[2] = {sh->rows, sh->out};
    b->hx[s] = malloc(sh->rows * sh->in * sizeof(float));
    b->hw[s] = malloc(sh->out * sh->in * sizeof(float));
    b->hy[s] = malloc(sh->rows * sh->out * sizeof(float));
    if (!b->hx[s] || !b->hw[s] || !b->hy[s]) {
      fprintf(stderr, "m2pt-tune: out of host memory\n");
      return -1;
    }
    fill(b->hx[s], sh->rows * sh->in, 11 + s);
    fill(b->hw[s], sh->out * sh->in, 101 + s);
    if (check_status(b->ctx, m2pt_tensor_create(b->ctx, 2, xs, &b->x[s]), "tensor") ||
        check_status(b->ctx, m2pt_tensor_create(b->ctx, 2, ws, &b->w[s]), "tensor") ||
        check_status(b->ctx, m2pt_tensor_create(b->ctx, 2, ys, &b->y[s]), "tensor") ||
        check_status(b->ctx, m2pt_tensor_write(b->x[s], b->hx[s], sh->rows * sh->in), "write") ||
        check_status(b->ctx, m2pt_tensor_write(b->w[s], b->hw[s], sh->out * sh->in), "write"))
      return -1;
    /* A double-precision sample of y = x·Wᵀ, corners included. */
    uint64_t rng = 7 + s;
    for (size_t i = 0; i < SAMPLES; i++) {
      const size_t r = i == 0 ? 0 : i == 1 ? sh->rows - 1 : next_random(&rng) % sh->rows;
      const size_t c = i == 0 ? 0 : i == 1 ? sh->out - 1 : next_random(&rng) % sh->out;
      double acc = 0.0;
      for (size_t k = 0; k < sh->in; k++)
        acc += (double)b->hx[s][r * sh->in + k] * (double)b->hw[s][c * sh->in + k];
      b->sample_i[s][i] = r;
      b->sample_j[s][i] = c;
      b->sample_ref[s][i] = acc;
    }
  }
  return 0;
}

static void bench_free(bench *b, size_t shapes)
{
  for (size_t s = 0; s < shapes; s++) {
    m2pt_tensor_destroy(b->x[s]);
    m2pt_tensor_destroy(b->w[s]);
    m2pt_tensor_destroy(b->y[s]);
    free(b->hx[s]);
    free(b->hw[s]);
    free(b->hy[s]);
  }
}

/* One GEMM, timed by wall clock around the call and the queue's end. */
static int run_once(bench *b, size_t s, double *ms)
{
  const double t0 = now_s();
  const m2pt_status st = m2pt_gemm(b->ctx, M2PT_NO_TRANS, M2PT_TRANS, 1.0f, b->x[s], b->w[s], 0.0f,
                                   b->y[s]);
  if (st != M2PT_OK || m2pt_context_finish(b->ctx) != M2PT_OK)
    return -1;
  *ms = (now_s() - t0) * 1e3;
  return 0;
}

static int results_right(bench *b, const shape *sh, size_t s)
{
  if (m2pt_tensor_read(b->y[s], b->hy[s], sh->rows * sh->out) != M2PT_OK)
    return 0;
  double max_ref = 1.0;
  for (size_t i = 0; i < SAMPLES; i++)
    max_ref = fmax(max_ref, fabs(b->sample_ref[s][i]));
  for (size_t i = 0; i < SAMPLES; i++) {
    const double got = b->hy[s][b->sample_i[s][i] * sh->out + b->sample_j[s][i]];
    if (!(fabs(got - b->sample_ref[s][i]) <= 1e-4 * max_ref * sqrt((double)sh->in)))
      return 0;
  }
  return 1;
}

static int cmp_double(const void *a, const void *b)
{
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Measures whatever CLBlast is set to now: a warm-up run per shape (the
 * compile happens there) checked against the sample, then `reps` timed runs.
 * Stops early (PRUNED) once the medians so far exceed `prune_ms`. */
static outcome measure(bench *b, const search *st, double prune_ms, double *ms, double *total)
{
  double sum = 0.0;
  *total = INFINITY;
  for (size_t s = 0; s < st->shape_count; s++) {
    double t[64], warm = 0.0;
    if (run_once(b, s, &warm) != 0)
      return OUT_FAILED;
    if (!results_right(b, &st->shapes[s], s))
      return OUT_WRONG;
    const unsigned reps = b->reps < 64 ? b->reps : 64;
    for (unsigned r = 0; r < reps; r++)
      if (run_once(b, s, &t[r]) != 0)
        return OUT_FAILED;
    qsort(t, reps, sizeof t[0], cmp_double);
    ms[s] = t[reps / 2];
    sum += ms[s];
    if (sum > prune_ms)
      return OUT_PRUNED;
  }
  *total = sum;
  return OUT_OK;
}

/* ---- the result ---- */

static void iso_date(char *buf, size_t size)
{
  const time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The store for the best candidate: its kernel and the routine setting
 * that sends the tuned shapes its way while leaving CLBlast's choice for
 * sizes the search did not measure as close to its default as it can. */
static void best_tuning(const search *st, m2pt_tuning *t)
{
  const candidate *best = &st->tried[st->best];
  *t = best->t;
  double lo = INFINITY, hi = 0.0;
  for (size_t i = 0; i < st->shape_count; i++) {
    const double mnk = (double)st->shapes[i].rows * (double)st->shapes[i].in *
                       (double)st->shapes[i].out;
    lo = fmin(lo, mnk);
    hi = fmax(hi, mnk);
  }
  /* CLBlast's default XGEMM_MIN_INDIRECT_SIZE for devices it does not know. */
  const size_t clblast_default = 832;
  if (best->kind == KIND_DIRECT) {
    /* direct when m·n·k < size³: above the largest tuned shape */
    size_t size = (size_t)ceil(cbrt(hi)) + 1;
    t->min_indirect = size > clblast_default ? size : clblast_default;
  } else {
    size_t size = (size_t)floor(cbrt(lo));
    while (size > 1 && (double)size * size * size > lo)
      size--;
    t->min_indirect = size < clblast_default ? size : clblast_default;
  }
}

static double baseline_total(const search *st)
{
  double base = 0.0;
  for (size_t i = 0; i < st->shape_count; i++)
    base += st->baseline_ms[i];
  return base;
}

/* The best candidate when it beats CLBlast's defaults, else NULL: only a
 * winner is stored. */
static const candidate *winner(const search *st)
{
  if (st->best < 0 || !st->have_baseline)
    return NULL;
  const candidate *best = &st->tried[st->best];
  return best->total_ms < baseline_total(st) ? best : NULL;
}

static int write_store(const search *st, const m2pt_device_info *info)
{
  const candidate *best = winner(st);
  if (!best)
    return 0;
  const double base = baseline_total(st);
  m2pt_tuning t;
  best_tuning(st, &t);
  m2pt_tuning_provenance prov;
  memset(&prov, 0, sizeof prov);
  iso_date(prov.date, sizeof prov.date);
  snprintf(prov.m2pt_version, sizeof prov.m2pt_version, "%s", m2pt_version_string());
  snprintf(prov.tool, sizeof prov.tool, "m2pt-tune");
  snprintf(prov.shapes, sizeof prov.shapes, "%s", st->shapes_text);
  prov.budget_s = st->budget_s;
  prov.spent_s = st->spent_s;
  prov.candidates = (unsigned)st->tried_count;
  prov.gflops_before = total_flops(st) / (base * 1e6);
  prov.gflops_after = total_flops(st) / (best->total_ms * 1e6);
  if (m2pt_tuning_store_write(st->store_path, info, &t, &prov) != 0) {
    fprintf(stderr, "m2pt-tune: cannot write %s: %s\n", st->store_path, strerror(errno));
    return -1;
  }
  return 0;
}

/* The defaults' figures per shape and in all, and the winner's beside them
 * when there is one: without one there is no "after" to show. */
static void print_summary(const search *st)
{
  const candidate *won = winner(st);
  printf("shape (rows x in x out)   %s\n",
         won ? "  before ms  GFLOP/s    after ms  GFLOP/s  speed-up" : "defaults ms  GFLOP/s");
  for (size_t i = 0; i <= st->shape_count; i++) {
    const int all = i == st->shape_count;
    char name[64] = "all";
    if (!all)
      snprintf(name, sizeof name, "%zux%zux%zu", st->shapes[i].rows, st->shapes[i].in,
               st->shapes[i].out);
    const double f = all ? total_flops(st) : flops(&st->shapes[i]);
    const double b = all ? baseline_total(st) : st->baseline_ms[i];
    printf("%-26s %10.3f %8.1f", name, b, f / (b * 1e6));
    if (won) {
      const double a = all ? won->total_ms : won->ms[i];
      printf("  %10.3f %8.1f  %7.2fx", a, f / (a * 1e6), b / a);
    }
    putchar('\n');
  }
  if (won) {
    char text[512];
    describe(won, text, sizeof text);
    printf("best: %s\n", text);
  } else if (st->best >= 0) {
    const candidate *best = &st->tried[st->best];
    printf("no candidate beat CLBlast's defaults: the best of the %zu tried took %.3f ms "
           "(%.1f GFLOP/s); store not written\n", st->tried_count, best->total_ms,
           total_flops(st) / (best->total_ms * 1e6));
  } else {
    printf("no candidate beat CLBlast's defaults: %s; store not written\n",
           st->tried_count ? "none of those tried ran to the end correctly"
                           : "the budget was spent before any was tried");
  }
}

/* ---- main ---- */

/* The flags that take a value: an empty one is bad usage, as in the other
 * tools (an empty --store would mean the default directory). */
static int takes_value(const char *flag)
{
  static const char *const flags[] = {"--device", "--budget", "--shapes", "--store", "--out",
                                      "--candidate-timeout", "--worker", "--reps", "--seed"};
  for (size_t i = 0; i < sizeof flags / sizeof *flags; i++)
    if (!strcmp(flag, flags[i]))
      return 1;
  return 0;
}

/* Runs the search in a child process and starts it again, resuming, when a
 * candidate kills it (PoCL's compiler aborts on some parameter sets): the
 * child saved the candidate as pending, and the next child skips it. The
 * parent never touches OpenCL. */
static int supervise(int argc, char **argv, const char *state_hint, double candidate_timeout)
{
  char **args = calloc((size_t)argc + 3, sizeof *args);
  if (!args)
    return 1;
  char charge[32] = "0";
  for (int attempt = 0; attempt < 200; attempt++) {
    int n = 0;
    for (int i = 0; i < argc; i++)
      if (attempt == 0 || strcmp(argv[i], "--restart") != 0)
        args[n++] = argv[i];
    args[n++] = "--worker";
    args[n++] = charge;
    args[n] = NULL;
    fflush(NULL);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
      perror("m2pt-tune: fork");
      free(args);
      return 1;
    }
    if (pid == 0) {
#ifdef __linux__
      /* The search dies with its supervisor (SIGTERM, Ctrl-C, a crash). */
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent)
        _exit(1);
#endif
      execv("/proc/self/exe", args);
      execvp(argv[0], args);
      perror("m2pt-tune: exec");
      _exit(127);
    }
    /* The child rewrites its state before and after every candidate; one
     * that leaves it untouched past the timeout is stuck in a compile (some
     * parameter sets take PoCL many minutes) and is stopped: the candidate
     * stays pending and the next child skips it. */
    int status = 0, timed_out = 0, saved = 0;
    double last_change = now_s();
    struct stat st0;
    struct timespec last_mtime = {0, 0};
    if (state_hint && stat(state_hint, &st0) == 0)
      last_mtime = st0.st_mtim;
    for (;;) {
      const pid_t r = waitpid(pid, &status, WNOHANG);
      if (r == pid)
        break;
      if (r < 0 && errno != EINTR) {
        perror("m2pt-tune: waitpid");
        free(args);
        return 1;
      }
      struct stat st;
      if (state_hint && stat(state_hint, &st) == 0 &&
          (st.st_mtim.tv_sec != last_mtime.tv_sec || st.st_mtim.tv_nsec != last_mtime.tv_nsec)) {
        last_mtime = st.st_mtim;
        last_change = now_s();
        saved = 1;
      }
      if (candidate_timeout > 0 && now_s() - last_change > candidate_timeout) {
        fprintf(stderr, "m2pt-tune: a candidate ran past --candidate-timeout (%.0f s); "
                "stopping it\n", candidate_timeout);
        kill(pid, SIGKILL);
        timed_out = 1;
        candidate_timeout = -candidate_timeout; /* once; restored below */
      }
      const struct timespec tick = {0, 200 * 1000 * 1000};
      nanosleep(&tick, NULL);
    }
    if (WIFEXITED(status)) {
      free(args);
      return WEXITSTATUS(status);
    }
    if (WIFSIGNALED(status) && (WTERMSIG(status) == SIGINT || WTERMSIG(status) == SIGTERM)) {
      free(args);
      return 130;
    }
    /* A child that saved nothing before the timeout was still measuring
     * CLBlast's own parameters, the baseline every candidate is compared
     * with (it saves before each candidate): restarting would only measure
     * it again. */
    if (timed_out && !saved) {
      fprintf(stderr, "m2pt-tune: measuring CLBlast's default parameters took longer than "
              "--candidate-timeout; raise it (or 0: no limit)\n");
      free(args);
      return 1;
    }
    /* The lost candidate's time counts against the budget. */
    snprintf(charge, sizeof charge, "%.1f", now_s() - last_change);
    candidate_timeout = fabs(candidate_timeout);
    fprintf(stderr, "m2pt-tune: the search process died (signal %d); resuming without the "
            "candidate it was measuring\n", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  }
  free(args);
  fprintf(stderr, "m2pt-tune: giving up after 200 restarts\n");
  return 1;
}

int main(int argc, char **argv)
{
  const char *device = NULL, *store_dir = NULL;
  const char *shapes_text = "197x768x2304,197x768x768,197x768x3072,197x3072x768";
  double budget = 600.0;
  int restart = 0;
  unsigned reps = 3;
  unsigned long long seed = 1;
  int worker = 0;
  double candidate_timeout = 300.0, charge_s = 0.0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const int has = i + 1 < argc;
    char *end = NULL;
    if (has && !argv[i + 1][0] && takes_value(a)) {
      fprintf(stderr, "m2pt-tune: %s needs a value, not an empty string\n", a);
      return 2;
    }
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--device") && has) {
      device = argv[++i];
    } else if (!strcmp(a, "--budget") && has) {
      budget = strtod(argv[++i], &end);
      if (*end || !(budget > 0 && budget < 1e7)) {
        fprintf(stderr, "m2pt-tune: --budget wants seconds > 0\n");
        return 2;
      }
    } else if (!strcmp(a, "--shapes") && has) {
      shapes_text = argv[++i];
    } else if ((!strcmp(a, "--store") || !strcmp(a, "--out")) && has) {
      store_dir = argv[++i];
    } else if (!strcmp(a, "--candidate-timeout") && has) {
      candidate_timeout = strtod(argv[++i], &end);
      if (*end || !(candidate_timeout >= 0 && candidate_timeout < 1e7)) {
        fprintf(stderr, "m2pt-tune: --candidate-timeout wants seconds (0: none)\n");
        return 2;
      }
    } else if (!strcmp(a, "--worker") && has) {
      /* internal: the child of supervise(), with the seconds the previous
       * child spent on the candidate it died on */
      worker = 1;
      charge_s = strtod(argv[++i], &end);
      if (*end || !(charge_s >= 0 && charge_s < 1e7))
        charge_s = 0.0;
    } else if (!strcmp(a, "--resume")) {
      restart = 0;
    } else if (!strcmp(a, "--restart")) {
      restart = 1;
    } else if (!strcmp(a, "--reps") && has) {
      const unsigned long v = strtoul(argv[++i], &end, 10);
      if (*end || v < 1 || v > 64) {
        fprintf(stderr, "m2pt-tune: --reps wants 1..64\n");
        return 2;
      }
      reps = (unsigned)v;
    } else if (!strcmp(a, "--seed") && has) {
      seed = strtoull(argv[++i], &end, 10);
      if (*end || seed > (1ull << 52)) {
        fprintf(stderr, "m2pt-tune: --seed wants a number below 2^52\n");
        return 2;
      }
    } else {
      usage(stderr);
      return 2;
    }
  }

  static search st;
  if (!worker) {
    if (parse_shapes(shapes_text, &st) != 0) {
      fprintf(stderr, "m2pt-tune: --shapes wants ROWSxINxOUT,... (at most %d, each 1..65536)\n",
              MAX_SHAPES);
      return 2;
    }
    /* The state file's name needs the device's key, which only the child
     * (with OpenCL) knows: watch the tuning folder, where the child writes
     * it, instead. */
    char *root = m2pt_cache_dir_resolve(store_dir);
    char watch[4200] = "";
    if (root)
      snprintf(watch, sizeof watch, "%s/tuning", root);
    free(root);
    return supervise(argc, argv, watch[0] ? watch : NULL, candidate_timeout);
  }
  if (parse_shapes(shapes_text, &st) != 0) {
    fprintf(stderr, "m2pt-tune: --shapes wants ROWSxINxOUT,... (at most %d, each 1..65536)\n",
            MAX_SHAPES);
    return 2;
  }
  st.seed = seed;
  st.budget_s = budget;
  st.best = -1;
  st.tried = calloc(MAX_TRIED, sizeof *st.tried);
  char *dir = m2pt_cache_dir_resolve(store_dir);
  if (!st.tried || !dir) {
    fprintf(stderr, "m2pt-tune: %s\n",
            st.tried ? "no cache directory (set --store DIR or $M2PT_CACHE_DIR)" : "out of memory");
    free(st.tried);
    free(dir);
    return 1;
  }

  /* CLBlast's own parameters for the baseline: no store, no shipped default. */
  setenv("M2PT_TUNING", "off", 1);
  m2pt_context_options opts = m2pt_context_options_default();
  opts.device = device;
  opts.cache_dir = dir;
  opts.flags = M2PT_CONTEXT_CLBLAST;
  bench b;
  memset(&b, 0, sizeof b);
  b.reps = reps;
  if (check_status(NULL, m2pt_context_create(&opts, &b.ctx), "context")) {
    free(dir);
    free(st.tried);
    return 1;
  }
  m2pt_device_info info;
  m2pt_context_device_info(b.ctx, &info);
  m2pt_tuning_limits limits;
  m2pt_tuning_limits_of(b.ctx, &limits);
  m2pt_tuning_store_path(dir, &info, st.store_path, sizeof st.store_path);
  free(dir);
  int rc = 1;
  if (!st.store_path[0]) {
    fprintf(stderr, "m2pt-tune: the cache directory's path is too long\n");
    goto out;
  }
  snprintf(st.state_path, sizeof st.state_path, "%.*s.search.json",
           (int)(strlen(st.store_path) - strlen(".json")), st.store_path);
  fprintf(stderr, "m2pt-tune: %s (%s), shapes %s, budget %.0f s\n", info.name,
          info.platform_name, st.shapes_text, budget);
  fprintf(stderr, "m2pt-tune: store %s\n", st.store_path);

  if (bench_init(&b, &st) != 0)
    goto out;
  if (!restart && load_state(&st, charge_s) == 0)
    fprintf(stderr, "m2pt-tune: resuming: %zu candidates tried, %.0f of %.0f s spent\n",
            st.tried_count, st.spent_s, budget);
  st.budget_s = budget;

  double mark = now_s();
  if (!st.have_baseline) {
    fprintf(stderr, "m2pt-tune: measuring CLBlast's defaults (compiles first: slow on PoCL)\n");
    double total = 0.0;
    const outcome o = measure(&b, &st, INFINITY, st.baseline_ms, &total);
    if (o != OUT_OK) {
      fprintf(stderr, "m2pt-tune: CLBlast's defaults %s on this device\n",
              o == OUT_WRONG ? "give wrong results" : "fail");
      goto out;
    }
    st.have_baseline = 1;
    st.spent_s += now_s() - mark;
    mark = now_s();
    save_state(&st);
    fprintf(stderr, "m2pt-tune: defaults: %.2f ms, %.1f GFLOP/s\n", total,
            total_flops(&st) / (total * 1e6));
  }

  const double base_total = baseline_total(&st);
  candidate c;
  while (st.spent_s < st.budget_s && next_candidate(&st, &limits, &c)) {
    char text[512], why[256];
    describe(&c, text, sizeof text);
    st.pending = c;
    st.have_pending = 1;
    save_state(&st);
    const double best_ms = st.best >= 0 ? st.tried[st.best].total_ms : base_total;
    const double t0 = now_s();
    if (m2pt_tuning_apply(b.ctx->device, &c.t, why, sizeof why) != 0) {
      c.outcome = OUT_FAILED;
      c.total_ms = INFINITY;
    } else {
      c.outcome = measure(&b, &st, 1.5 * fmin(best_ms, base_total), c.ms, &c.total_ms);
    }
    st.have_pending = 0;
    const long before = st.best;
    add_tried(&st, &c);
    st.spent_s += now_s() - mark;
    mark = now_s();
    save_state(&st);
    if (st.best != before)
      write_store(&st, &info);
    const double gf = c.outcome == OUT_OK ? total_flops(&st) / (c.total_ms * 1e6) : 0.0;
    const double best_gf = st.best >= 0 ? total_flops(&st) / (st.tried[st.best].total_ms * 1e6)
                                        : total_flops(&st) / (base_total * 1e6);
    fprintf(stderr, "[%zu] %4.0f/%.0f s  %-8s %6.1f GFLOP/s (best %.1f, defaults %.1f) %5.1f s  %s\n",
            st.tried_count, st.spent_s, st.budget_s, outcome_names[c.outcome], gf, best_gf,
            total_flops(&st) / (base_total * 1e6), now_s() - t0, text);
  }
  if (st.spent_s >= st.budget_s)
    fprintf(stderr, "m2pt-tune: budget spent (%.0f s, %zu candidates)\n", st.spent_s,
            st.tried_count);
  print_summary(&st);
  rc = write_store(&st, &info) == 0 ? 0 : 1;
  if (rc == 0 && winner(&st))
    printf("stored: %s\n", st.store_path);
out:
  bench_free(&b, st.shape_count);
  m2pt_context_destroy(b.ctx);
  free(st.tried);
  return rc;
}
