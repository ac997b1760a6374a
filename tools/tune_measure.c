/* m2pt-tune's measurements: a candidate's GEMMs on every shape, checked
 * against a double-precision sample and timed by wall clock around m2pt_gemm
 * and m2pt_context_finish (CLBlast's event covers one kernel of several). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tune.h"

int tune_check_status(m2pt_context *ctx, m2pt_status s, const char *what)
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
    dst[i] = (float)((double)(tune_next_random(&s) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

int tune_bench_init(bench *b, const search *st)
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
    if (tune_check_status(b->ctx, m2pt_tensor_create(b->ctx, 2, xs, &b->x[s]), "tensor") ||
        tune_check_status(b->ctx, m2pt_tensor_create(b->ctx, 2, ws, &b->w[s]), "tensor") ||
        tune_check_status(b->ctx, m2pt_tensor_create(b->ctx, 2, ys, &b->y[s]), "tensor") ||
        tune_check_status(b->ctx, m2pt_tensor_write(b->x[s], b->hx[s], sh->rows * sh->in), "write") ||
        tune_check_status(b->ctx, m2pt_tensor_write(b->w[s], b->hw[s], sh->out * sh->in), "write"))
      return -1;
    /* A double-precision sample of y = x·Wᵀ, corners included. */
    uint64_t rng = 7 + s;
    for (size_t i = 0; i < SAMPLES; i++) {
      const size_t r = i == 0 ? 0 : i == 1 ? sh->rows - 1 : tune_next_random(&rng) % sh->rows;
      const size_t c = i == 0 ? 0 : i == 1 ? sh->out - 1 : tune_next_random(&rng) % sh->out;
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

void tune_bench_free(bench *b, size_t shapes)
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
  const double t0 = tune_now_s();
  const m2pt_status st = m2pt_gemm(b->ctx, M2PT_NO_TRANS, M2PT_TRANS, 1.0f, b->x[s], b->w[s], 0.0f,
                                   b->y[s]);
  if (st != M2PT_OK || m2pt_context_finish(b->ctx) != M2PT_OK)
    return -1;
  *ms = (tune_now_s() - t0) * 1e3;
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
outcome tune_measure(bench *b, const search *st, double prune_ms, double *ms, double *total)
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
