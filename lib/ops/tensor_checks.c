#include "tensor_checks.h"

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
