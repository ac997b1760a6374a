#include "linear_ops.h"

#include "core/context_impl.h"
#include "core/error.h"
#include "core/program.h"

m2pt_status m2pt_op_fold_pathway(m2pt_context *ctx, cl_mem dst, cl_mem w, cl_mem aux,
                                 float scale, size_t n)
{
  const cl_ulong count = n;
  const m2pt_kernel_arg args[] = {M2PT_ARG(dst), M2PT_ARG(w), M2PT_ARG(aux), M2PT_ARG(scale),
                                  M2PT_ARG(count)};
  const size_t global[1] = {n};
  return m2pt_run_kernel(ctx, &m2pt_cl_linear, "", "m2pt_fold_pathway", args, 5, 1, global,
                         NULL);
}

m2pt_status m2pt_op_broadcast_rows(m2pt_context *ctx, cl_mem y, cl_mem b, size_t rows,
                                   size_t cols)
{
  const cl_ulong r = rows, c = cols;
  const m2pt_kernel_arg args[] = {M2PT_ARG(y), M2PT_ARG(b), M2PT_ARG(r), M2PT_ARG(c)};
  const size_t global[2] = {cols, rows};
  return m2pt_run_kernel(ctx, &m2pt_cl_linear, "", "m2pt_broadcast_rows", args, 4, 2, global,
                         NULL);
}
