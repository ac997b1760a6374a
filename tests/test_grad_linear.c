/* The re-parameterized linear's backward (m2pt_linear_backward) against the
 * double-precision reference and central finite differences: every flag
 * combination, λ = 0 and ≠ 0, overwrite and accumulate, frozen parts that
 * cost nothing, merged and plain layers, determinism, rejected inputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context_impl.h"
#include "gemm/backend.h"
#include "reference.h"
#include "test_util.h"

enum { DX, DW, DB, DWAUX, DBAUX, DSCALE, NGRAD };
static const char *grad_label[NGRAD] = {"dx", "dweight", "dbias", "daux_weight", "daux_bias",
                                        "dscale"};

/* One problem: parameters, x and dy on the host. */
/* A layer's parameters (the shared fixture), its input and the upstream
 * gradient. */
typedef struct problem {
  size_t rows, in, out;
  float *w, *w_aux, *b, *b_aux, *x, *dy;
} problem;

static test_linear_params params_of(const problem *p)
{
  return (test_linear_params){p->in, p->out, p->w, p->w_aux, p->b, p->b_aux};
}

static problem make_problem(size_t rows, size_t in, size_t out, uint64_t seed)
{
  const test_linear_params lp = test_linear_params_make(in, out, seed);
  problem p = {rows, in, out, lp.w, lp.w_aux, lp.b, lp.b_aux, NULL, NULL};
  p.x = test_alloc(rows * in * sizeof(float));
  p.dy = test_alloc(rows * out * sizeof(float));
  test_fill(p.x, rows * in, seed + 4);
  test_fill(p.dy, rows * out, seed + 5);
  return p;
}

static void free_problem(problem *p)
{
  test_linear_params lp = params_of(p);
  test_linear_params_free(&lp);
  free(p->x);
  free(p->dy);
}

static m2pt_linear *make_layer(m2pt_context *ctx, const problem *p, unsigned flags, float scale)
{
  const test_linear_params lp = params_of(p);
  return test_linear_layer(ctx, &lp, flags, scale);
}

/* Device tensors of a problem: x, dy and one of every gradient. */
typedef struct device_set {
  m2pt_tensor *x, *dy, *grad[NGRAD];
  size_t count[NGRAD];
} device_set;

static device_set make_device_set(m2pt_context *ctx, const problem *p)
{
  device_set d;
  const size_t sx[2] = {p->rows, p->in}, sy[2] = {p->rows, p->out};
  const size_t sw[2] = {p->out, p->in}, sb[1] = {p->out}, ss[1] = {1};
  d.x = test_tensor(ctx, 2, sx, p->x);
  d.dy = test_tensor(ctx, 2, sy, p->dy);
  d.grad[DX] = test_tensor(ctx, 2, sx, NULL);
  d.grad[DW] = test_tensor(ctx, 2, sw, NULL);
  d.grad[DB] = test_tensor(ctx, 1, sb, NULL);
  d.grad[DWAUX] = test_tensor(ctx, 2, sw, NULL);
  d.grad[DBAUX] = test_tensor(ctx, 1, sb, NULL);
  d.grad[DSCALE] = test_tensor(ctx, 1, ss, NULL);
  for (int i = 0; i < NGRAD; i++)
    d.count[i] = m2pt_tensor_numel(d.grad[i]);
  return d;
}

static void free_device_set(device_set *d)
{
  m2pt_tensor_destroy(d->x);
  m2pt_tensor_destroy(d->dy);
  for (int i = 0; i < NGRAD; i++)
    m2pt_tensor_destroy(d->grad[i]);
}

/* The grads struct asking for the gradients in `mask` (bit i: gradient i). */
static m2pt_linear_grads grads_of(const device_set *d, unsigned mask, int accumulate)
{
  m2pt_linear_grads g = {0};
  g.dx = (mask & 1u << DX) ? d->grad[DX] : NULL;
  g.dweight = (mask & 1u << DW) ? d->grad[DW] : NULL;
  g.dbias = (mask & 1u << DB) ? d->grad[DB] : NULL;
  g.daux_weight = (mask & 1u << DWAUX) ? d->grad[DWAUX] : NULL;
  g.daux_bias = (mask & 1u << DBAUX) ? d->grad[DBAUX] : NULL;
  g.dscale = (mask & 1u << DSCALE) ? d->grad[DSCALE] : NULL;
  g.accumulate = accumulate;
  return g;
}

/* The gradients a layer with `flags` has. */
static unsigned grads_for(unsigned flags)
{
  unsigned mask = 1u << DX | 1u << DW;
  if (flags & (M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY_BIAS))
    mask |= 1u << DB;
  if (flags & M2PT_LINEAR_PATHWAY)
    mask |= 1u << DWAUX | 1u << DSCALE;
  if (flags & M2PT_LINEAR_PATHWAY_BIAS)
    mask |= 1u << DBAUX;
  return mask;
}

/* Host copies of every gradient tensor (the caller frees each). */
static void read_all(m2pt_context *ctx, const device_set *d, float *host[NGRAD])
{
  for (int i = 0; i < NGRAD; i++) {
    host[i] = test_alloc(d->count[i] * sizeof(float));
    assert_ok(ctx, m2pt_tensor_read(d->grad[i], host[i], d->count[i]));
  }
}

static void free_all(float *host[NGRAD])
{
  for (int i = 0; i < NGRAD; i++)
    free(host[i]);
}

/* Fills every gradient tensor with values from `seed` (what accumulate adds to). */
static void fill_all(m2pt_context *ctx, const device_set *d, uint64_t seed)
{
  for (int i = 0; i < NGRAD; i++) {
    float *v = test_alloc(d->count[i] * sizeof *v);
    test_fill(v, d->count[i], seed + (uint64_t)i);
    assert_ok(ctx, m2pt_tensor_write(d->grad[i], v, d->count[i]));
    free(v);
  }
}

/* The reference gradients of a problem, in doubles (index as the tensors). */
typedef struct ref_grads {
  double *g[NGRAD];
  double dscale_abs;
} ref_grads;

static ref_grads reference(const problem *p, unsigned flags, double scale)
{
  ref_grads r;
  const size_t counts[NGRAD] = {p->rows * p->in, p->in * p->out, p->out,
                                p->in * p->out,  p->out,         1};
  for (int i = 0; i < NGRAD; i++)
    r.g[i] = test_alloc(counts[i] * sizeof(double));
  const int pathway = (flags & M2PT_LINEAR_PATHWAY) != 0;
  ref_linear_backward(p->x, p->dy, p->rows, p->in, p->out, p->w, pathway ? p->w_aux : NULL,
                      pathway ? scale : 0.0, (flags & M2PT_LINEAR_PATHWAY_BIAS) ? p->b_aux : NULL,
                      r.g[DX], r.g[DW], r.g[DB], r.g[DWAUX], r.g[DBAUX], r.g[DSCALE],
                      &r.dscale_abs);
  return r;
}

static void free_ref(ref_grads *r)
{
  for (int i = 0; i < NGRAD; i++)
    free(r->g[i]);
}

/* dλ's tolerance. dλ sums out·in (+ out) products, so its rounding error
 * grows with Σ |G ⊙ W_aux| + Σ |db ⊙ b_aux|, not with |dλ|, which may
 * cancel to nearly 0: the per-element rule (1e-4 · max(1, |ref|)) would be
 * unfair at 768×3072 terms and meaningless near 0. Float error of the
 * blocked sum (16 in order, a 64-leaf tree, ⌈P/64⌉ in order, a tree) is
 * about (16 + 6 + ⌈P/64⌉ + 6)·2⁻²⁴ ≈ 2e-6 of that sum for these shapes,
 * plus each G's own GEMM error (≈ rows·2⁻²⁴ relative, rows ≤ 197): 1e-4
 * of Σ|·| (floor 1e-6 for an all-zero case) leaves a margin of ~10. */
static void assert_dscale(float got, double ref, double ref_abs, const char *what)
{
  const double tol = 1e-4 * fmax(ref_abs, 1e-2);
  if (fabs((double)got - ref) > tol) {
    print_error("%s: dλ = %.9g, reference %.9g (Σ|G⊙W_aux| + Σ|db⊙b_aux| = %g, tol %g)\n",
                what, (double)got, ref, ref_abs, tol);
    fail();
  }
}

/* Compares the gradients in `mask` with the reference (+ base when accumulating). */
static void check_against(float *got[NGRAD], const ref_grads *r, float *base[NGRAD],
                          const size_t count[NGRAD], unsigned mask, const char *what)
{
  for (int i = 0; i < NGRAD; i++) {
    if (!(mask & 1u << i))
      continue;
    double *want = test_alloc(count[i] * sizeof *want);
    double abs_extra = 0.0;
    for (size_t k = 0; k < count[i]; k++) {
      want[k] = r->g[i][k] + (base ? base[i][k] : 0.0);
      abs_extra += base ? fabs(base[i][k]) : 0.0;
    }
    char label[128];
    snprintf(label, sizeof label, "%s %s", what, grad_label[i]);
    if (i == DSCALE)
      assert_dscale(got[i][0], want[0], r->dscale_abs + abs_extra, label);
    else
      test_assert_close(got[i], want, count[i], 1e-4, label);
    free(want);
  }
}

typedef struct shape3 {
  size_t rows, in, out;
} shape3;

static const unsigned flag_sets[] = {0, M2PT_LINEAR_BIAS, M2PT_LINEAR_PATHWAY,
                                     M2PT_LINEAR_PATHWAY | M2PT_LINEAR_BIAS,
                                     M2PT_LINEAR_PATHWAY | M2PT_LINEAR_PATHWAY_BIAS};

/* rows 1, 3, 17, 197 × in, out ∈ {1, 5, 64}, and one shape of 118 partials
 * (more than one per lane of dλ's last sum); smaller under oclgrind. */
static size_t shape_list(shape3 *list)
{
  const size_t rows_full[] = {1, 3, 17, 197}, dims_full[] = {1, 5, 64};
  const size_t rows_small[] = {1, 3, 17}, dims_small[] = {1, 5};
  const size_t *rows = test_small() ? rows_small : rows_full;
  const size_t *dims = test_small() ? dims_small : dims_full;
  const size_t nr = test_small() ? 3 : 4, nd = test_small() ? 2 : 3;
  size_t n = 0;
  for (size_t r = 0; r < nr; r++)
    for (size_t i = 0; i < nd; i++)
      for (size_t o = 0; o < nd; o++)
        list[n++] = (shape3){rows[r], dims[i], dims[o]};
  if (!test_small())
    list[n++] = (shape3){197, 300, 400};
  return n;
}

/* Every layer kind, λ = 0 and ≠ 0, overwrite and accumulate. */
static void backward_against_reference(void **state)
{
  m2pt_context *ctx = *state;
  shape3 list[64];
  const size_t nshapes = shape_list(list);
  const float scales[] = {0.0f, -0.75f};
  for (size_t si = 0; si < nshapes; si++) {
    const shape3 s = list[si];
    problem p = make_problem(s.rows, s.in, s.out, 1000 + 10 * si);
    device_set d = make_device_set(ctx, &p);
    for (size_t fi = 0; fi < sizeof flag_sets / sizeof *flag_sets; fi++) {
      const unsigned f = flag_sets[fi];
      for (size_t li = 0; li < ((f & M2PT_LINEAR_PATHWAY) ? 2u : 1u); li++) {
        m2pt_linear *l = make_layer(ctx, &p, f, scales[li]);
        ref_grads r = reference(&p, f, scales[li]);
        const unsigned mask = grads_for(f);
        char what[96];
        snprintf(what, sizeof what, "[%zu][%zu]→%zu flags %u λ %g", s.rows, s.in, s.out, f,
                 (double)scales[li]);
        m2pt_linear_grads g = grads_of(&d, mask, 0);
        assert_ok(ctx, m2pt_linear_backward(l, d.x, d.dy, &g));
        float *got[NGRAD];
        read_all(ctx, &d, got);
        check_against(got, &r, NULL, d.count, mask, what);
        /* Accumulate adds to what the tensors hold. */
        fill_all(ctx, &d, 77 + si);
        float *base[NGRAD], *sum[NGRAD];
        read_all(ctx, &d, base);
        g.accumulate = 1;
        assert_ok(ctx, m2pt_linear_backward(l, d.x, d.dy, &g));
        read_all(ctx, &d, sum);
        strncat(what, " accumulate", sizeof what - strlen(what) - 1);
        check_against(sum, &r, base, d.count, mask, what);
        free_all(got);
        free_all(base);
        free_all(sum);
        free_ref(&r);
        m2pt_linear_destroy(l);
      }
    }
    free_device_set(&d);
    free_problem(&p);
  }
}

/* L = Σ dY ⊙ Y with Y from the double reference forward. */
static double loss(const problem *p, unsigned flags, double scale)
{
  double *y = test_alloc(p->rows * p->out * sizeof *y);
  const int pathway = (flags & M2PT_LINEAR_PATHWAY) != 0;
  ref_linear(p->x, p->rows, p->in, p->out, p->w, pathway ? p->w_aux : NULL, scale,
             (flags & (M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY_BIAS)) ? p->b : NULL,
             (flags & M2PT_LINEAR_PATHWAY_BIAS) ? p->b_aux : NULL, y);
  double sum = 0.0;
  for (size_t k = 0; k < p->rows * p->out; k++)
    sum += (double)p->dy[k] * y[k];
  free(y);
  return sum;
}

/* ∂L/∂v by central differences. v is a float the forward reads, so the step
 * actually taken is fl(v + h) − fl(v − h), divided by exactly. L is affine
 * in each single parameter (and in λ), so the quotient is exact but for the
 * rounding of L itself. */
static double central_difference(const problem *p, unsigned flags, double scale, float *v)
{
  const float saved = *v, h = 0x1p-6f;
  *v = saved + h;
  const double plus = loss(p, flags, scale), up = *v;
  *v = saved - h;
  const double minus = loss(p, flags, scale), down = *v;
  *v = saved;
  return (plus - minus) / (up - down);
}

/* Device and reference gradients against central differences of L. */
static void backward_against_finite_differences(void **state)
{
  m2pt_context *ctx = *state;
  const shape3 tiny[] = {{1, 1, 1}, {3, 4, 2}, {2, 3, 5}};
  const unsigned f = M2PT_LINEAR_PATHWAY | M2PT_LINEAR_PATHWAY_BIAS;
  for (size_t si = 0; si < sizeof tiny / sizeof *tiny; si++) {
    for (int plain = 0; plain < 2; plain++) {
      const unsigned flags = plain ? M2PT_LINEAR_BIAS : f;
      const double scale = plain ? 0.0 : 0.625;
      problem p = make_problem(tiny[si].rows, tiny[si].in, tiny[si].out, 500 + si);
      device_set d = make_device_set(ctx, &p);
      m2pt_linear *l = make_layer(ctx, &p, flags, (float)scale);
      const unsigned mask = grads_for(flags);
      m2pt_linear_grads g = grads_of(&d, mask, 0);
      assert_ok(ctx, m2pt_linear_backward(l, d.x, d.dy, &g));
      float *got[NGRAD];
      read_all(ctx, &d, got);
      ref_grads r = reference(&p, flags, scale);
      float *const params[NGRAD] = {p.x, p.w, p.b, p.w_aux, p.b_aux, NULL};
      for (int i = 0; i < NGRAD; i++) {
        if (!(mask & 1u << i))
          continue;
        for (size_t k = 0; k < d.count[i]; k++) {
          double fd;
          if (i == DSCALE) {
            const double hs = 0x1p-6;
            fd = (loss(&p, flags, scale + hs) - loss(&p, flags, scale - hs)) / (2 * hs);
          } else {
            fd = central_difference(&p, flags, scale, &params[i][k]);
          }
          /* The reference is the exact derivative: agreement to rounding. */
          if (fabs(r.g[i][k] - fd) > 1e-9 * fmax(1.0, fabs(fd)) ||
              fabs((double)got[i][k] - fd) > 1e-4 * fmax(1.0, fabs(fd))) {
            print_error("shape %zu: %s[%zu]: device %.9g, reference %.12g, differences %.12g\n",
                        si, grad_label[i], k, (double)got[i][k], r.g[i][k], fd);
            fail();
          }
        }
      }
      free_all(got);
      free_ref(&r);
      m2pt_linear_destroy(l);
      free_device_set(&d);
      free_problem(&p);
    }
  }
}

/* GEMMs and m2pt kernels run so far on ctx (a profiling context counts its
 * kernels' events until they are collected, which these tests never ask). */
static unsigned long long gemms(const m2pt_context *ctx)
{
  return ctx->gemm->calls;
}

/* A frozen gradient costs nothing, leaves its tensor alone, and does not
 * change the bits of the gradients still asked for. */
static void frozen_parts_skipped(void **state)
{
  (void)state;
  m2pt_context_options opts = m2pt_context_options_default();
  opts.flags = M2PT_CONTEXT_PROFILING;
  m2pt_context *ctx = NULL;
  assert_ok(NULL, m2pt_context_create(&opts, &ctx));
  problem p = make_problem(17, 5, 64, 900);
  device_set d = make_device_set(ctx, &p);
  const unsigned f = M2PT_LINEAR_PATHWAY | M2PT_LINEAR_PATHWAY_BIAS;
  m2pt_linear *l = make_layer(ctx, &p, f, 0.5f);
  const unsigned all = grads_for(f);
  m2pt_linear_grads g = grads_of(&d, all, 0);
  assert_ok(ctx, m2pt_linear_backward(l, d.x, d.dy, &g)); /* builds kernels, forms W_eff */
  float *full[NGRAD];
  read_all(ctx, &d, full);

  /* Subsets: what each costs (GEMMs, m2pt kernels) with W_eff already formed. */
  const struct {
    unsigned mask;
    unsigned long long gemms;
    size_t kernels;
  } cases[] = {
      {0, 0, 0},
      {1u << DX, 1, 0},                             /* dX alone: its GEMM */
      {1u << DB, 0, 1},                             /* db alone: one column sum */
      {1u << DB | 1u << DBAUX, 0, 1},               /* db and db_aux: the same kernel */
      {1u << DW, 1, 0},                             /* dW alone: G into it, nothing else */
      {1u << DWAUX, 1, 1},                          /* G, one pass for λ·G */
      {1u << DSCALE, 1, 3},                         /* G, partials, column sums, dλ */
      {1u << DX | 1u << DW | 1u << DB, 2, 1},       /* a frozen pathway: the plain cost */
      {all & ~(1u << DX), 1, 3},                    /* the first layer: no dX */
      {all, 2, 3},
  };
  for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
    const float sentinel = 1234.5f;
    for (int i = 0; i < NGRAD; i++) {
      float *v = test_alloc(d.count[i] * sizeof *v);
      for (size_t k = 0; k < d.count[i]; k++)
        v[k] = sentinel;
      assert_ok(ctx, m2pt_tensor_write(d.grad[i], v, d.count[i]));
      free(v);
    }
    assert_ok(ctx, m2pt_context_finish(ctx));
    const unsigned long long g0 = gemms(ctx);
    const size_t k0 = ctx->event_count;
    g = grads_of(&d, cases[ci].mask, 0);
    assert_ok(ctx, m2pt_linear_backward(l, d.x, d.dy, &g));
    const size_t kernels = ctx->event_count - k0;
    if (gemms(ctx) - g0 != cases[ci].gemms || kernels != cases[ci].kernels) {
      print_error("mask 0x%x: %llu GEMMs and %zu kernels, expected %llu and %zu\n",
                  cases[ci].mask, gemms(ctx) - g0, kernels, cases[ci].gemms, cases[ci].kernels);
      fail();
    }
    float *got[NGRAD];
    read_all(ctx, &d, got);
    for (int i = 0; i < NGRAD; i++)
      for (size_t k = 0; k < d.count[i]; k++)
        if ((cases[ci].mask & 1u << i) ? memcmp(&got[i][k], &full[i][k], sizeof(float)) != 0
                                       : got[i][k] != sentinel) {
          print_error("mask 0x%x: %s[%zu] = %g (all asked: %g)\n", cases[ci].mask,
                      grad_label[i], k, (double)got[i][k], (double)full[i][k]);
          fail();
        }
    free_all(got);
  }
  free_all(full);
  m2pt_linear_destroy(l);
  free_device_set(&d);
  free_problem(&p);
  m2pt_context_destroy(ctx);
}

/* Two runs give the same bits (the shapes with the most partials). */
static void deterministic(void **state)
{
  m2pt_context *ctx = *state;
  const shape3 s = test_small() ? (shape3){17, 5, 64} : (shape3){197, 300, 400};
  problem p = make_problem(s.rows, s.in, s.out, 321);
  device_set d = make_device_set(ctx, &p);
  const unsigned f = M2PT_LINEAR_PATHWAY | M2PT_LINEAR_PATHWAY_BIAS;
  m2pt_linear *l = make_layer(ctx, &p, f, 0.3f);
  m2pt_linear_grads g = grads_of(&d, grads_for(f), 0);
  float *first[NGRAD], *second[NGRAD];
  assert_ok(ctx, m2pt_linear_backward(l, d.x, d.dy, &g));
  read_all(ctx, &d, first);
  fill_all(ctx, &d, 5); /* nothing of the first run survives in the tensors */
  assert_ok(ctx, m2pt_linear_backward(l, d.x, d.dy, &g));
  read_all(ctx, &d, second);
  for (int i = 0; i < NGRAD; i++)
    assert_memory_equal(first[i], second[i], d.count[i] * sizeof(float));
  free_all(first);
  free_all(second);
  m2pt_linear_destroy(l);
  free_device_set(&d);
  free_problem(&p);
}

/* The vector and scalar forms of the backward's kernels (the linear_grad
 * quirk) give the same bits, overwriting and accumulating, on a shape whose
 * G ends in a part-filled run (n = 273 = 17·16 + 1) and whose dY ends in a
 * part-filled group of 8 columns (21). Only where the device takes vectors
 * (not Oclgrind, whose checker crashes on them). */
static void variants_same_bits(void **state)
{
  m2pt_context *ctx = *state;
  m2pt_quirks own;
  m2pt_quirks_of_device(ctx->device, &ctx->info, &own);
  if (!own.linear_grad_vec)
    return;
  problem p = make_problem(33, 13, 21, 99);
  device_set d = make_device_set(ctx, &p);
  const unsigned f = M2PT_LINEAR_PATHWAY | M2PT_LINEAR_PATHWAY_BIAS;
  m2pt_linear *l = make_layer(ctx, &p, f, 0.7f);
  const int was = ctx->quirks.linear_grad_vec;
  for (int accumulate = 0; accumulate <= 1; accumulate++) {
    float *got[2][NGRAD];
    for (int vec = 0; vec <= 1; vec++) {
      ctx->quirks.linear_grad_vec = vec;
      fill_all(ctx, &d, 7); /* the same start for both when accumulating */
      const m2pt_linear_grads g = grads_of(&d, grads_for(f), accumulate);
      assert_ok(ctx, m2pt_linear_backward(l, d.x, d.dy, &g));
      read_all(ctx, &d, got[vec]);
    }
    for (int i = 0; i < NGRAD; i++)
      assert_memory_equal(got[0][i], got[1][i], d.count[i] * sizeof(float));
    free_all(got[0]);
    free_all(got[1]);
  }
  ctx->quirks.linear_grad_vec = was;
  m2pt_linear_destroy(l);
  free_device_set(&d);
  free_problem(&p);
}

/* A merged layer is a plain linear with W + λ·W_aux: dx, dW and db as the
 * unmerged layer gives them, bit for bit (the same W_eff, the same GEMMs). */
static void merged_layer(void **state)
{
  m2pt_context *ctx = *state;
  problem p = make_problem(17, 64, 5, 44);
  device_set d = make_device_set(ctx, &p);
  const unsigned f = M2PT_LINEAR_PATHWAY | M2PT_LINEAR_PATHWAY_BIAS;
  m2pt_linear *l = make_layer(ctx, &p, f, -1.25f);
  const unsigned plain = 1u << DX | 1u << DW | 1u << DB;
  m2pt_linear_grads g = grads_of(&d, plain, 0);
  assert_ok(ctx, m2pt_linear_backward(l, d.x, d.dy, &g));
  float *before[NGRAD], *after[NGRAD];
  read_all(ctx, &d, before);
  assert_ok(ctx, m2pt_linear_merge(l));
  assert_ok(ctx, m2pt_linear_backward(l, d.x, d.dy, &g));
  read_all(ctx, &d, after);
  ref_grads r = reference(&p, f, -1.25);
  check_against(after, &r, NULL, d.count, plain, "merged");
  for (int i = 0; i < NGRAD; i++)
    if (plain & 1u << i)
      assert_memory_equal(before[i], after[i], d.count[i] * sizeof(float));
  /* The pathway's gradients are gone with it. */
  g = grads_of(&d, 1u << DSCALE, 0);
  assert_status(ctx, m2pt_linear_backward(l, d.x, d.dy, &g), M2PT_ERR_INVALID_STATE);
  free_all(before);
  free_all(after);
  free_ref(&r);
  m2pt_linear_destroy(l);
  free_device_set(&d);
  free_problem(&p);
}

/* Leading dimensions: x [2][3][in] is 6 rows. */
static void batched_rows(void **state)
{
  m2pt_context *ctx = *state;
  problem p = make_problem(6, 5, 3, 61);
  const unsigned f = M2PT_LINEAR_PATHWAY | M2PT_LINEAR_BIAS;
  m2pt_linear *l = make_layer(ctx, &p, f, 2.0f);
  const size_t sx[3] = {2, 3, 5}, sy[3] = {2, 3, 3}, sw[2] = {3, 5}, sb[1] = {3}, ss[1] = {1};
  m2pt_tensor *x = test_tensor(ctx, 3, sx, p.x), *dy = test_tensor(ctx, 3, sy, p.dy);
  m2pt_tensor *dx = test_tensor(ctx, 3, sx, NULL), *dw = test_tensor(ctx, 2, sw, NULL);
  m2pt_tensor *db = test_tensor(ctx, 1, sb, NULL), *ds = test_tensor(ctx, 1, ss, NULL);
  m2pt_linear_grads g = {.dx = dx, .dweight = dw, .dbias = db, .dscale = ds};
  assert_ok(ctx, m2pt_linear_backward(l, x, dy, &g));
  ref_grads r = reference(&p, f, 2.0);
  float hx[30], hw[15], hb[3], hs[1];
  assert_ok(ctx, m2pt_tensor_read(dx, hx, 30));
  assert_ok(ctx, m2pt_tensor_read(dw, hw, 15));
  assert_ok(ctx, m2pt_tensor_read(db, hb, 3));
  assert_ok(ctx, m2pt_tensor_read(ds, hs, 1));
  test_assert_close(hx, r.g[DX], 30, 1e-4, "batched dx");
  test_assert_close(hw, r.g[DW], 15, 1e-4, "batched dweight");
  test_assert_close(hb, r.g[DB], 3, 1e-4, "batched dbias");
  assert_dscale(hs[0], r.g[DSCALE][0], r.dscale_abs, "batched");
  free_ref(&r);
  m2pt_tensor_destroy(x);
  m2pt_tensor_destroy(dy);
  m2pt_tensor_destroy(dx);
  m2pt_tensor_destroy(dw);
  m2pt_tensor_destroy(db);
  m2pt_tensor_destroy(ds);
  m2pt_linear_destroy(l);
  free_problem(&p);
}

/* A rejected call: the status, a message, and not one tensor written. */
static void expect_rejected(m2pt_context *ctx, m2pt_linear *l, const m2pt_tensor *x,
                            const m2pt_tensor *dy, const m2pt_linear_grads *g, const device_set *d,
                            m2pt_status want, const char *what)
{
  m2pt_status got = m2pt_linear_backward(l, x, dy, g);
  if (got != want) {
    print_error("%s: %s, expected %s (%s)\n", what, m2pt_status_string(got),
                m2pt_status_string(want), m2pt_last_error(ctx));
    fail();
  }
  assert_true(strlen(m2pt_last_error(ctx)) > 0);
  for (int i = 0; i < NGRAD; i++) {
    float *v = test_alloc(d->count[i] * sizeof *v);
    assert_ok(ctx, m2pt_tensor_read(d->grad[i], v, d->count[i]));
    for (size_t k = 0; k < d->count[i]; k++)
      if (v[k] != 0.0f) {
        print_error("%s: %s[%zu] written (%g)\n", what, grad_label[i], k, (double)v[k]);
        fail();
      }
    free(v);
  }
}

static void bad_inputs(void **state)
{
  m2pt_context *ctx = *state;
  problem p = make_problem(3, 5, 4, 8);
  device_set d = make_device_set(ctx, &p); /* gradients start at zero */
  const unsigned f = M2PT_LINEAR_PATHWAY | M2PT_LINEAR_BIAS;
  m2pt_linear *l = make_layer(ctx, &p, f, 0.5f);
  m2pt_linear *nobias = make_layer(ctx, &p, M2PT_LINEAR_PATHWAY, 0.5f);
  m2pt_linear *plain = make_layer(ctx, &p, M2PT_LINEAR_BIAS, 0.0f);
  const unsigned all = grads_for(f);
  m2pt_linear_grads g = grads_of(&d, all, 0);

  assert_status(NULL, m2pt_linear_backward(NULL, d.x, d.dy, &g), M2PT_ERR_INVALID_ARGUMENT);
  expect_rejected(ctx, l, d.x, d.dy, NULL, &d, M2PT_ERR_INVALID_ARGUMENT, "grads NULL");
  expect_rejected(ctx, l, NULL, d.dy, &g, &d, M2PT_ERR_INVALID_ARGUMENT, "x NULL");
  expect_rejected(ctx, l, d.x, NULL, &g, &d, M2PT_ERR_INVALID_ARGUMENT, "dy NULL");
  g.accumulate = 2;
  expect_rejected(ctx, l, d.x, d.dy, &g, &d, M2PT_ERR_INVALID_ARGUMENT, "accumulate 2");
  g.accumulate = 0;

  /* Shapes: dy of other rows or width, each gradient of a wrong shape. */
  const size_t s_rows[2] = {2, 4}, s_width[2] = {3, 5}, s_w[2] = {5, 4}, s_b[1] = {5};
  const size_t s_s[1] = {2}, s_x[2] = {3, 4};
  m2pt_tensor *dy_rows = test_tensor(ctx, 2, s_rows, NULL);
  m2pt_tensor *dy_w = test_tensor(ctx, 2, s_width, NULL);
  expect_rejected(ctx, l, d.x, dy_rows, &g, &d, M2PT_ERR_SHAPE, "dy rows");
  expect_rejected(ctx, l, d.x, dy_w, &g, &d, M2PT_ERR_SHAPE, "dy width");
  m2pt_tensor *bad_w = test_tensor(ctx, 2, s_w, NULL), *bad_b = test_tensor(ctx, 1, s_b, NULL);
  m2pt_tensor *bad_s = test_tensor(ctx, 1, s_s, NULL), *bad_x = test_tensor(ctx, 2, s_x, NULL);
  m2pt_linear_grads b = g;
  b.dweight = bad_w;
  expect_rejected(ctx, l, d.x, d.dy, &b, &d, M2PT_ERR_SHAPE, "dweight [in][out]");
  b = g;
  b.daux_weight = bad_w;
  expect_rejected(ctx, l, d.x, d.dy, &b, &d, M2PT_ERR_SHAPE, "daux_weight [in][out]");
  b = g;
  b.dbias = bad_b;
  expect_rejected(ctx, l, d.x, d.dy, &b, &d, M2PT_ERR_SHAPE, "dbias of in");
  b = g;
  b.dscale = bad_s;
  expect_rejected(ctx, l, d.x, d.dy, &b, &d, M2PT_ERR_SHAPE, "dscale of 2");
  /* dλ's fixed 64-lane reduction on a device with smaller work-groups:
   * refused before dX or anything else is written. */
  const size_t max_wg = ctx->max_work_group;
  ctx->max_work_group = 32;
  expect_rejected(ctx, l, d.x, d.dy, &g, &d, M2PT_ERR_UNSUPPORTED, "work-groups of 32");
  ctx->max_work_group = max_wg;
  b = g;
  b.dx = bad_x;
  expect_rejected(ctx, l, d.x, d.dy, &b, &d, M2PT_ERR_SHAPE, "dx shaped like dy");

  /* Aliasing. */
  b = g;
  b.dx = d.x;
  expect_rejected(ctx, l, d.x, d.dy, &b, &d, M2PT_ERR_INVALID_ARGUMENT, "dx is x");
  b = g;
  b.daux_weight = d.grad[DW];
  expect_rejected(ctx, l, d.x, d.dy, &b, &d, M2PT_ERR_INVALID_ARGUMENT, "dweight is daux_weight");

  /* Gradients of parameters the layer lacks. */
  g = grads_of(&d, all, 0);
  expect_rejected(ctx, nobias, d.x, d.dy, &g, &d, M2PT_ERR_INVALID_STATE, "dbias, no bias");
  g = grads_of(&d, 1u << DBAUX, 0);
  expect_rejected(ctx, l, d.x, d.dy, &g, &d, M2PT_ERR_INVALID_STATE, "daux_bias, no aux bias");
  g = grads_of(&d, 1u << DWAUX | 1u << DW, 0);
  expect_rejected(ctx, plain, d.x, d.dy, &g, &d, M2PT_ERR_INVALID_STATE, "daux_weight, plain");
  g = grads_of(&d, 1u << DSCALE, 0);
  expect_rejected(ctx, plain, d.x, d.dy, &g, &d, M2PT_ERR_INVALID_STATE, "dscale, plain");

  /* Tensors of another context. */
  m2pt_context *other = test_context();
  device_set o = make_device_set(other, &p);
  g = grads_of(&d, all, 0);
  expect_rejected(ctx, l, o.x, d.dy, &g, &d, M2PT_ERR_CONTEXT_MISMATCH, "x of another context");
  expect_rejected(ctx, l, d.x, o.dy, &g, &d, M2PT_ERR_CONTEXT_MISMATCH, "dy of another context");
  for (int i = 0; i < NGRAD; i++) {
    if (!(all & 1u << i))
      continue;
    b = grads_of(&d, all, 0);
    m2pt_tensor **slot[NGRAD] = {&b.dx, &b.dweight, &b.dbias, &b.daux_weight, &b.daux_bias,
                                 &b.dscale};
    *slot[i] = o.grad[i];
    expect_rejected(ctx, l, d.x, d.dy, &b, &d, M2PT_ERR_CONTEXT_MISMATCH, grad_label[i]);
  }
  free_device_set(&o);
  m2pt_context_destroy(other);

  m2pt_tensor_destroy(dy_rows);
  m2pt_tensor_destroy(dy_w);
  m2pt_tensor_destroy(bad_w);
  m2pt_tensor_destroy(bad_b);
  m2pt_tensor_destroy(bad_s);
  m2pt_tensor_destroy(bad_x);
  m2pt_linear_destroy(l);
  m2pt_linear_destroy(nobias);
  m2pt_linear_destroy(plain);
  free_device_set(&d);
  free_problem(&p);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(backward_against_reference),
      cmocka_unit_test(backward_against_finite_differences),
      cmocka_unit_test(frozen_parts_skipped),
      cmocka_unit_test(deterministic),
      cmocka_unit_test(variants_same_bits),
      cmocka_unit_test(merged_layer),
      cmocka_unit_test(batched_rows),
      cmocka_unit_test(bad_inputs),
  };
  /* The GEMMs' backends, and the backward's own kernels in vectors or scalars. */
  return test_run_matrix("grad_linear",
                         TEST_AXIS_GEMM | TEST_AXIS_LINEAR_GRAD | TEST_AXIS_HOST_ACCESS, tests,
                         NULL, NULL) != 0;
}
