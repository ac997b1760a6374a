#include "linear_ops.h"

#include "core/context_impl.h"
#include "core/error.h"
#include "core/program.h"

m2pt_status m2pt_op_fold_pathway(m2pt_context *ctx, cl_mem dst, cl_mem w, cl_mem aux,
                                 float scale, size_t n)
{
  cl_kernel k;
  M2PT_TRY(m2pt_kernel_get(ctx, &m2pt_cl_linear, "", "m2pt_fold_pathway", &k));
  const cl_ulong count = n;
  cl_int err = clSetKernelArg(k, 0, sizeof dst, &dst);
  err |= clSetKernelArg(k, 1, sizeof w, &w);
  err |= clSetKernelArg(k, 2, sizeof aux, &aux);
  err |= clSetKernelArg(k, 3, sizeof scale, &scale);
  err |= clSetKernelArg(k, 4, sizeof count, &count);
  if (err != CL_SUCCESS)
    return m2pt_fail(ctx, M2PT_ERR_OPENCL, "clSetKernelArg(m2pt_fold_pathway) failed");
  const size_t global[1] = {n};
  return m2pt_enqueue_kernel(ctx, k, 1, global, "m2pt_fold_pathway");
}

m2pt_status m2pt_op_broadcast_rows(m2pt_context *ctx, cl_mem y, cl_mem b, size_t rows,
                                   size_t cols)
{
  cl_kernel k;
  M2PT_TRY(m2pt_kernel_get(ctx, &m2pt_cl_linear, "", "m2pt_broadcast_rows", &k));
  const cl_ulong r = rows, c = cols;
  cl_int err = clSetKernelArg(k, 0, sizeof y, &y);
  err |= clSetKernelArg(k, 1, sizeof b, &b);
  err |= clSetKernelArg(k, 2, sizeof r, &r);
  err |= clSetKernelArg(k, 3, sizeof c, &c);
  if (err != CL_SUCCESS)
    return m2pt_fail(ctx, M2PT_ERR_OPENCL, "clSetKernelArg(m2pt_broadcast_rows) failed");
  const size_t global[2] = {cols, rows};
  return m2pt_enqueue_kernel(ctx, k, 2, global, "m2pt_broadcast_rows");
}
