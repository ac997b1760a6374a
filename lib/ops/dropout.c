/* Dropout and drop-path (cl/dropout.cl): argument checks, then one kernel
 * that regenerates the mask from the key, forward and backward alike. */
#include <math.h>
#include <stdio.h>

#include "core/context_impl.h"
#include "core/error.h"
#include "core/program.h"
#include "dropout_ops.h"
#include "m2pt/dropout.h"
#include "tensor_checks.h"

m2pt_status m2pt_op_philox_blocks(m2pt_context *ctx, const uint32_t ctr[4],
                                  const uint32_t key[2], size_t blocks, cl_mem out)
{
  const cl_uint4 c = {{ctr[0], ctr[1], ctr[2], ctr[3]}};
  const cl_uint2 k = {{key[0], key[1]}};
  const m2pt_kernel_arg args[] = {M2PT_ARG(c), M2PT_ARG(k), M2PT_ARG(out)};
  const size_t global[1] = {blocks};
  return m2pt_run_kernel(ctx, &m2pt_cl_dropout, "", "m2pt_philox_blocks", args, 3, 1, global,
                         NULL);
}

/* The checks shared by the four calls: in and out tensors of ctx with one
 * shape, p in [0, 1]. */
static m2pt_status check_args(m2pt_context *ctx, const char *fn, const m2pt_tensor *in,
                              const char *inn, float p, const m2pt_tensor *out, const char *outn)
{
  M2PT_REQUIRE(NULL, ctx != NULL, "%s: ctx is NULL", fn);
  char name[64];
  snprintf(name, sizeof name, "%s: %s", fn, inn);
  M2PT_TRY(m2pt_check_tensor(ctx, in, name));
  snprintf(name, sizeof name, "%s: %s", fn, outn);
  M2PT_TRY(m2pt_check_tensor(ctx, out, name));
  M2PT_TRY(m2pt_check_same_shape(ctx, in, out, fn, inn, outn));
  /* PyTorch's F.dropout refuses p outside [0, 1] too. */
  M2PT_REQUIRE(ctx, p >= 0.0f && p <= 1.0f, "%s: p = %g is not in [0, 1]", fn, (double)p);
  return M2PT_OK;
}

/* A word r drops its element when r < ⌈p·2^32⌉ (exact in double: p has 24
 * bits); 1/(1 − p) as PyTorch scales the kept ones, 0 when all are dropped. */
static void mask_params(float p, cl_ulong *threshold, float *scale)
{
  *threshold = (cl_ulong)ceil((double)p * 4294967296.0);
  *scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
}

static m2pt_status dropout(m2pt_context *ctx, const char *fn, const m2pt_tensor *in,
                           const char *inn, float p, m2pt_rng_key key, m2pt_tensor *out,
                           const char *outn)
{
  M2PT_TRY(check_args(ctx, fn, in, inn, p, out, outn));
  cl_ulong threshold = 0;
  float scale = 0.0f;
  mask_params(p, &threshold, &scale);
  const cl_ulong n = in->numel;
  const cl_uint2 k = {{(cl_uint)key.seed, (cl_uint)(key.seed >> 32)}};
  const m2pt_kernel_arg args[] = {M2PT_ARG(in->buffer), M2PT_ARG(out->buffer), M2PT_ARG(n),
                                  M2PT_ARG(threshold),  M2PT_ARG(scale),       M2PT_ARG(k),
                                  M2PT_ARG(key.step),   M2PT_ARG(key.layer)};
  const size_t global[1] = {(in->numel + 3) / 4};
  return m2pt_run_kernel(ctx, &m2pt_cl_dropout, "", "m2pt_dropout", args, 8, 1, global, NULL);
}

static m2pt_status drop_path(m2pt_context *ctx, const char *fn, const m2pt_tensor *in,
                             const char *inn, float p, m2pt_rng_key key, m2pt_tensor *out,
                             const char *outn)
{
  M2PT_TRY(check_args(ctx, fn, in, inn, p, out, outn));
  M2PT_REQUIRE(ctx, in->ndim >= 2, "%s: %s must be [B][...] (%zu dimension)", fn, inn, in->ndim);
  cl_ulong threshold = 0;
  float scale = 0.0f;
  mask_params(p, &threshold, &scale);
  const cl_ulong n = in->numel, per_sample = in->numel / in->shape[0];
  const cl_uint2 k = {{(cl_uint)key.seed, (cl_uint)(key.seed >> 32)}};
  const m2pt_kernel_arg args[] = {M2PT_ARG(in->buffer), M2PT_ARG(out->buffer), M2PT_ARG(n),
                                  M2PT_ARG(per_sample), M2PT_ARG(threshold),   M2PT_ARG(scale),
                                  M2PT_ARG(k),          M2PT_ARG(key.step),    M2PT_ARG(key.layer)};
  const size_t global[1] = {in->numel};
  return m2pt_run_kernel(ctx, &m2pt_cl_dropout, "", "m2pt_drop_path", args, 9, 1, global, NULL);
}

m2pt_status m2pt_dropout(m2pt_context *ctx, const m2pt_tensor *x, float p, m2pt_rng_key key,
                         m2pt_tensor *y)
{
  return dropout(ctx, "m2pt_dropout", x, "x", p, key, y, "y");
}

m2pt_status m2pt_dropout_backward(m2pt_context *ctx, const m2pt_tensor *dy, float p,
                                  m2pt_rng_key key, m2pt_tensor *dx)
{
  return dropout(ctx, "m2pt_dropout_backward", dy, "dy", p, key, dx, "dx");
}

m2pt_status m2pt_drop_path(m2pt_context *ctx, const m2pt_tensor *x, float p, m2pt_rng_key key,
                           m2pt_tensor *y)
{
  return drop_path(ctx, "m2pt_drop_path", x, "x", p, key, y, "y");
}

m2pt_status m2pt_drop_path_backward(m2pt_context *ctx, const m2pt_tensor *dy, float p,
                                    m2pt_rng_key key, m2pt_tensor *dx)
{
  return drop_path(ctx, "m2pt_drop_path_backward", dy, "dy", p, key, dx, "dx");
}
