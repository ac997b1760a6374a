/* The README's example: a cross-modal re-parameterized linear on the default
 * OpenCL device, before and after merge.
 * Build: cc linear.c $(pkg-config --cflags --libs m2pt) */
#include <stdio.h>

#include <m2pt/m2pt.h>

#define CHECK(ctx, call)                                               \
  do {                                                                 \
    m2pt_status s_ = (call);                                           \
    if (s_ != M2PT_OK) {                                               \
      fprintf(stderr, "%s: %s\n", m2pt_status_string(s_), m2pt_last_error(ctx)); \
      return 1;                                                        \
    }                                                                  \
  } while (0)

int main(void)
{
  enum { ROWS = 2, IN = 3, OUT = 2 };
  const float w[OUT * IN] = {1, 0, 0, 0, 1, 0};     /* target model's weight */
  const float w_aux[OUT * IN] = {0, 0, 1, 0, 0, 1}; /* auxiliary model's weight */
  const float b[OUT] = {0.5f, -0.5f};
  const float x[ROWS * IN] = {1, 2, 3, 4, 5, 6};
  float y[ROWS * OUT];

  m2pt_context *ctx = NULL;
  CHECK(NULL, m2pt_context_create(NULL, &ctx)); /* $M2PT_DEVICE, else GPU, else CPU */

  m2pt_linear *layer = NULL;
  CHECK(ctx, m2pt_linear_create(ctx, IN, OUT, M2PT_LINEAR_BIAS | M2PT_LINEAR_PATHWAY, &layer));
  CHECK(ctx, m2pt_linear_set_weight(layer, w, OUT * IN));
  CHECK(ctx, m2pt_linear_set_aux_weight(layer, w_aux, OUT * IN));
  CHECK(ctx, m2pt_linear_set_bias(layer, b, OUT));
  CHECK(ctx, m2pt_linear_set_scale(layer, 0.5f)); /* λ */

  const size_t xs[2] = {ROWS, IN}, ys[2] = {ROWS, OUT};
  m2pt_tensor *tx = NULL, *ty = NULL;
  CHECK(ctx, m2pt_tensor_create(ctx, 2, xs, &tx));
  CHECK(ctx, m2pt_tensor_create(ctx, 2, ys, &ty));
  CHECK(ctx, m2pt_tensor_write(tx, x, ROWS * IN));

  /* y = x·(W + λ·W_aux)ᵀ + b */
  CHECK(ctx, m2pt_linear_forward(layer, tx, ty));
  CHECK(ctx, m2pt_tensor_read(ty, y, ROWS * OUT));
  printf("unmerged: %g %g / %g %g\n", y[0], y[1], y[2], y[3]);

  /* Fold λ·W_aux into W: a plain linear with the same outputs. */
  CHECK(ctx, m2pt_linear_merge(layer));
  CHECK(ctx, m2pt_linear_forward(layer, tx, ty));
  CHECK(ctx, m2pt_tensor_read(ty, y, ROWS * OUT));
  printf("merged:   %g %g / %g %g\n", y[0], y[1], y[2], y[3]);

  m2pt_tensor_destroy(tx);
  m2pt_tensor_destroy(ty);
  m2pt_linear_destroy(layer);
  m2pt_context_destroy(ctx);
  return 0;
}
