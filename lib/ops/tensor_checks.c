#include "tensor_checks.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"

m2pt_status m2pt_check_same_shape(const m2pt_context *ctx, const m2pt_tensor *a,
                                  const m2pt_tensor *b, const char *fn, const char *an,
                                  const char *bn)
{
  if (a->ndim == b->ndim && memcmp(a->shape, b->shape, a->ndim * sizeof *a->shape) == 0)
    return M2PT_OK;
  char sa[96], sb[96];
  return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: %s %s and %s %s must have the same shape", fn, an,
                   m2pt_shape_string(a, sa, sizeof sa), bn, m2pt_shape_string(b, sb, sizeof sb));
}

m2pt_status m2pt_check_vector(const m2pt_context *ctx, const m2pt_tensor *v, size_t n,
                              const char *fn, const char *name)
{
  if (v->numel == n)
    return M2PT_OK;
  char sv[96];
  return m2pt_fail(ctx, M2PT_ERR_SHAPE, "%s: %s %s must have %zu elements", fn, name,
                   m2pt_shape_string(v, sv, sizeof sv), n);
}

m2pt_status m2pt_check_enum(const m2pt_context *ctx, int value, int last, const char *fn,
                            const char *what)
{
  M2PT_REQUIRE(ctx, value >= 0 && value <= last, "%s: unknown %s %d", fn, what, value);
  return M2PT_OK;
}

m2pt_status m2pt_check_mask(const m2pt_context *ctx, const m2pt_tensor *mask,
                            const m2pt_tensor *x, const char *fn)
{
  if (!mask)
    return M2PT_OK;
  char what[128];
  snprintf(what, sizeof what, "%s: mask", fn);
  M2PT_TRY(m2pt_check_tensor(ctx, mask, what));
  if (mask->ndim + 1 == x->ndim &&
      memcmp(mask->shape, x->shape, mask->ndim * sizeof *mask->shape) == 0)
    return M2PT_OK;
  char sm[96], sx[96];
  return m2pt_fail(ctx, M2PT_ERR_SHAPE,
                   "%s: mask %s must be the input %s without its last dimension (one value a "
                   "token)",
                   fn, m2pt_shape_string(mask, sm, sizeof sm), m2pt_shape_string(x, sx, sizeof sx));
}
