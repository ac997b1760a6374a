/* The order batches are drawn in and the plan of a run
 * (include/m2pt/dataset.h): pure host arithmetic. */
#include <math.h>

#include "common/error.h"
#include "common/size_math.h"
#include "m2pt/dataset.h"

/* SplitMix64's next output (Steele, Lea, Flood, OOPSLA 2014). */
static uint64_t splitmix64(uint64_t *state)
{
  uint64_t z = (*state += 0x9E3779B97F4A7C15u);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

/* Uniform in [0, n) without modulo bias: outputs at or past the largest
 * multiple of n below 2^64 are redrawn. */
static uint64_t uniform_below(uint64_t *state, uint64_t n)
{
  const uint64_t limit = (uint64_t)0 - ((uint64_t)0 - n) % n; /* 2^64 − (2^64 mod n), mod 2^64 */
  for (;;) {
    const uint64_t r = splitmix64(state);
    if (limit == 0 || r < limit)
      return r % n;
  }
}

m2pt_status m2pt_batch_order(size_t samples, int shuffle, uint64_t seed, uint64_t epoch,
                             size_t *order)
{
  M2PT_REQUIRE_THREAD(order != NULL, "m2pt_batch_order: NULL argument");
  M2PT_REQUIRE_THREAD(samples > 0, "m2pt_batch_order: 0 samples");
  for (size_t i = 0; i < samples; ++i)
    order[i] = i;
  if (!shuffle)
    return M2PT_OK;
  uint64_t state = seed ^ ((epoch + 1) * 0xD1B54A32D192ED03u);
  for (size_t i = samples - 1; i > 0; --i) {
    const size_t j = (size_t)uniform_below(&state, (uint64_t)i + 1);
    const size_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return M2PT_OK;
}

m2pt_status m2pt_train_plan_make(size_t samples, size_t batch, size_t accum, double epochs,
                                 size_t steps, m2pt_train_plan *plan)
{
  static const char fn[] = "m2pt_train_plan_make";
  M2PT_REQUIRE_THREAD(plan != NULL, "%s: NULL argument", fn);
  M2PT_REQUIRE_THREAD(samples > 0 && batch > 0 && accum > 0,
                      "%s: samples %zu, batch %zu and accum %zu must be ≥ 1", fn, samples, batch,
                      accum);
  M2PT_REQUIRE_THREAD((epochs != 0.0) != (steps != 0),
                      "%s: give either epochs (%g) or steps (%zu), not %s", fn, epochs, steps,
                      steps != 0 ? "both" : "neither");
  if (batch > samples)
    return m2pt_fail_thread(M2PT_ERR_SHAPE, "a batch of %zu from %zu samples: the batch is "
                                            "larger than the data", batch, samples);
  m2pt_train_plan p = {samples, batch, accum, (samples + batch - 1) / batch, 0, 0, 0.0};
  const double m = (double)p.iterations_per_epoch;
  if (steps != 0) {
    M2PT_REQUIRE_THREAD(m2pt_mul_size(steps, accum, &p.micro_batches),
                        "%s: %zu steps of %zu micro-batches overflow", fn, steps, accum);
    p.steps = steps;
    p.epochs = (double)p.micro_batches / m;
  } else {
    M2PT_REQUIRE_THREAD(isfinite(epochs) && epochs > 0.0 && epochs * m < 0x1p52,
                        "%s: epochs %g is not finite, > 0 and below 2^52 micro-batches", fn,
                        epochs);
    p.micro_batches = (size_t)ceil(epochs * m);
    p.steps = (p.micro_batches + accum - 1) / accum;
    p.epochs = epochs;
  }
  *plan = p;
  return M2PT_OK;
}

m2pt_status m2pt_train_plan_micro_batch(const m2pt_train_plan *plan, size_t j, size_t *epoch,
                                        size_t *first, size_t *count)
{
  static const char fn[] = "m2pt_train_plan_micro_batch";
  M2PT_REQUIRE_THREAD(plan != NULL && epoch != NULL && first != NULL && count != NULL,
                      "%s: NULL argument", fn);
  M2PT_REQUIRE_THREAD(j < plan->micro_batches, "%s: micro-batch %zu of a plan of %zu", fn, j,
                      plan->micro_batches);
  const size_t m = plan->iterations_per_epoch;
  *epoch = j / m;
  *first = (j % m) * plan->batch;
  const size_t left = plan->samples - *first;
  *count = left < plan->batch ? left : plan->batch;
  return M2PT_OK;
}

m2pt_status m2pt_train_plan_epoch_of_step(const m2pt_train_plan *plan, size_t t, double *epoch)
{
  static const char fn[] = "m2pt_train_plan_epoch_of_step";
  M2PT_REQUIRE_THREAD(plan != NULL && epoch != NULL, "%s: NULL argument", fn);
  M2PT_REQUIRE_THREAD(t < plan->steps, "%s: step %zu of a plan of %zu", fn, t, plan->steps);
  *epoch = (double)t * (double)plan->accum / (double)plan->iterations_per_epoch;
  return M2PT_OK;
}
