/* m2pt-tune's search: the GEMM shapes, the candidates (CLBlast's defaults,
 * its database's CPU entries, mutations of the best and random draws from
 * the values CLBlast's tuners try) and the order they are tried in. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tune.h"

double tune_now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t tune_next_random(uint64_t *s)
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
  return values[tune_next_random(rng) % n];
}

double tune_flops(const shape *s)
{
  return 2.0 * (double)s->rows * (double)s->in * (double)s->out;
}

double tune_total_flops(const search *st)
{
  double f = 0.0;
  for (size_t i = 0; i < st->shape_count; i++)
    f += tune_flops(&st->shapes[i]);
  return f;
}

/* ---- shapes ---- */

int tune_parse_shapes(const char *text, search *st)
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
void tune_set_path(candidate *c)
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
  tune_set_path(c);
}

/* One parameter (two, half the time) moved to a neighbouring value. */
static void mutate(uint64_t *rng, const candidate *from, candidate *c)
{
  *c = *from;
  c->outcome = OUT_OK;
  const int moves = 1 + (int)(tune_next_random(rng) % 2);
  for (int m = 0; m < moves; m++) {
    const size_t count = c->kind == KIND_DIRECT ? M2PT_XD_COUNT : M2PT_XG_COUNT;
    const size_t param = tune_next_random(rng) % count;
    size_t *v = c->kind == KIND_DIRECT ? &c->t.direct[param] : &c->t.xgemm[param];
    const range r = c->kind == KIND_DIRECT ? direct_range(param)
                                           : xgemm_range(param, c->t.xgemm[M2PT_XG_GEMMK]);
    size_t at = 0;
    while (at < r.n && r.values[at] != *v)
      at++;
    if (at == r.n)
      *v = pick(rng, r.values, r.n);
    else if (tune_next_random(rng) % 2 && at + 1 < r.n)
      *v = r.values[at + 1];
    else if (at > 0)
      *v = r.values[at - 1];
    else if (at + 1 < r.n)
      *v = r.values[at + 1];
  }
  if (c->kind == KIND_INDIRECT)
    tie_gemmk1(c);
  tune_set_path(c);
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
  tune_set_path(c);
  return 1;
}

static size_t seed_count(void)
{
  return N(seed_order);
}

/* The next untried valid candidate; 0 when none can be found. */
int tune_next_candidate(search *st, const m2pt_tuning_limits *limits, candidate *c)
{
  for (int attempt = 0; attempt < 100000; attempt++) {
    const size_t i = st->next++;
    uint64_t rng = st->seed * 0x9e3779b97f4a7c15ull + i * 0xbf58476d1ce4e5b9ull + 1;
    if (i < seed_count()) {
      if (!seed_candidate(i, c))
        continue;
    } else if (st->best >= 0 && tune_next_random(&rng) % 3 != 0) {
      mutate(&rng, &st->tried[st->best], c);
    } else {
      /* Random draws lean towards the path that is winning. */
      const kind lead = st->best >= 0 ? st->tried[st->best].kind : KIND_DIRECT;
      const kind k = tune_next_random(&rng) % 3 ? lead : (lead == KIND_DIRECT ? KIND_INDIRECT
                                                                          : KIND_DIRECT);
      random_candidate(&rng, k, c);
    }
    if (valid(c, limits) && !already_tried(st, c))
      return 1;
  }
  return 0;
}

void tune_describe(const candidate *c, char *buf, size_t size)
{
  const m2pt_tuning_kernel k = c->kind == KIND_DIRECT ? M2PT_TK_DIRECT : M2PT_TK_XGEMM;
  const char *const *names = m2pt_tuning_param_names(k);
  const size_t *v = m2pt_tuning_values_const(&c->t, k);
  int n = snprintf(buf, size, "%s", c->kind == KIND_DIRECT ? "direct" : "indirect");
  for (size_t i = 0; i < m2pt_tuning_param_count(k) && n > 0 && (size_t)n < size; i++)
    n += snprintf(buf + n, size - (size_t)n, " %s=%zu", names[i], v[i]);
}
