/* m2pt-tune's parts: the search (tune_search.c: shapes, candidates, the
 * order they are tried in), its saved state and the store it writes
 * (tune_state.c), measuring a candidate (tune_measure.c), and the command
 * line (m2pt-tune.c). A maintainer tool on the library's internals: the
 * tuning store's format and CLBlast's parameter lists (gemm/tuning.h). */
#ifndef M2PT_TOOLS_TUNE_H
#define M2PT_TOOLS_TUNE_H

#include <stddef.h>
#include <stdint.h>

#include "gemm/tuning.h"
#include "m2pt/m2pt.h"

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

#define TUNE_OUTCOMES 5
extern const char *const tune_outcome_names[TUNE_OUTCOMES]; /* "ok", … by outcome */

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the search (tune_search.c) ---- */

/* Monotonic seconds. */
double tune_now_s(void);

/* xorshift64*: the search's draws are reproducible from --seed. */
uint64_t tune_next_random(uint64_t *s);

/* Floating-point operations of one GEMM of the shape, and of all shapes. */
double tune_flops(const shape *s);
double tune_total_flops(const search *st);

/* Parses --shapes (ROWSxINxOUT,...) into st, with its canonical spelling;
 * -1 when malformed. */
int tune_parse_shapes(const char *text, search *st);

/* Completes a candidate: the other kernel's neutral set, and the routine
 * setting that sends every tuned shape down the candidate's path
 * (XGEMM_MIN_INDIRECT_SIZE³ compared with m·n·k). */
void tune_set_path(candidate *c);

/* The next untried valid candidate; 0 when none can be found. */
int tune_next_candidate(search *st, const m2pt_tuning_limits *limits, candidate *c);

/* "direct KWID=2 MDIMAD=8 …" into buf. */
void tune_describe(const candidate *c, char *buf, size_t size);

/* ---- its state and the store (tune_state.c) ---- */

/* Writes the state atomically (temporary file, rename); -1 on failure. */
int tune_save_state(const search *st);

/* Records a measured candidate and updates the best; -1 when full. */
int tune_add_tried(search *st, const candidate *c);

/* Loads a saved search for the same shapes and seed; 0 when one was loaded. */
int tune_load_state(search *st, double charge_s);

/* CLBlast's defaults' summed medians over the shapes. */
double tune_baseline_total(const search *st);

/* The best candidate when it beats CLBlast's defaults, else NULL: only a
 * winner is stored. */
const candidate *tune_winner(const search *st);

/* Writes the winner, if any, to the device's store; -1 on failure (said). */
int tune_write_store(const search *st, const m2pt_device_info *info);

/* ---- measuring (tune_measure.c) ---- */

/* 0 for M2PT_OK, else prints what failed and returns -1. */
int tune_check_status(m2pt_context *ctx, m2pt_status s, const char *what);

/* Device tensors, host data and the double-precision sample of every
 * shape; tune_bench_free releases them. */
int tune_bench_init(bench *b, const search *st);
void tune_bench_free(bench *b, size_t shapes);

/* Measures whatever CLBlast is set to now: a warm-up run per shape (the
 * compile happens there) checked against the sample, then `reps` timed runs.
 * Stops early (PRUNED) once the medians so far exceed `prune_ms`. */
outcome tune_measure(bench *b, const search *st, double prune_ms, double *ms, double *total);

#endif
