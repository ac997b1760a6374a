#include "linear_ops.h"

#include <stdio.h>

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

/* dλ's last reduction runs in a group of exactly M2PT_GRAD_LANES, whatever
 * the device would pick, so the order of its sums is the same everywhere. */
m2pt_status m2pt_op_linear_grad_scale_supported(m2pt_context *ctx)
{
  if (ctx->max_work_group >= M2PT_GRAD_LANES)
    return M2PT_OK;
  return m2pt_fail(ctx, M2PT_ERR_UNSUPPORTED,
                   "linear backward: the device's work-groups hold %zu work-items, the "
                   "deterministic reductions need %d",
                   ctx->max_work_group, M2PT_GRAD_LANES);
}

m2pt_status m2pt_op_linear_grad_weight(m2pt_context *ctx, cl_mem g, size_t n, cl_mem dw,
                                       int dw_add, cl_mem dw_aux, m2pt_grad_write aux_mode,
                                       cl_mem w_aux, cl_mem partial, float scale)
{
  if (!dw_add && aux_mode == M2PT_GRAD_SKIP && !w_aux)
    return M2PT_OK;
  char options[80];
  snprintf(options, sizeof options, "-DGRAD_VEC=%d -DDW_ACC=%d -DDWAUX=%d -DDSCALE=%d",
           ctx->quirks.linear_grad_vec ? 1 : 0, dw_add ? 1 : 0, (int)aux_mode, w_aux ? 1 : 0);
  /* Unused buffer arguments get g: valid, never touched. */
  const cl_mem dw_arg = dw_add ? dw : g, aux_arg = aux_mode ? dw_aux : g;
  const cl_mem waux_arg = w_aux ? w_aux : g, part_arg = w_aux ? partial : g;
  const cl_ulong count = n;
  const m2pt_kernel_arg args[] = {M2PT_ARG(g),        M2PT_ARG(dw_arg),   M2PT_ARG(aux_arg),
                                  M2PT_ARG(waux_arg), M2PT_ARG(part_arg), M2PT_ARG(scale),
                                  M2PT_ARG(count)};
  const size_t global[1] = {m2pt_grad_partials(n)};
  return m2pt_run_kernel(ctx, &m2pt_cl_linear, options, "m2pt_linear_grad_weight", args, 7, 1,
                         global, NULL);
}

m2pt_status m2pt_op_linear_grad_bias(m2pt_context *ctx, cl_mem dy, size_t rows, size_t cols,
                                     cl_mem db, m2pt_grad_write db_mode, cl_mem db_aux,
                                     m2pt_grad_write aux_mode, cl_mem colsum, size_t colsum_off,
                                     float scale)
{
  if (db_mode == M2PT_GRAD_SKIP && aux_mode == M2PT_GRAD_SKIP && !colsum)
    return M2PT_OK;
  char options[80];
  const int vec = ctx->quirks.linear_grad_vec != 0;
  snprintf(options, sizeof options, "-DGRAD_VEC=%d -DDB=%d -DDBAUX=%d -DCOLSUM=%d", vec,
           (int)db_mode, (int)aux_mode, colsum ? 1 : 0);
  /* Unused buffer arguments get dy: valid, never touched. */
  const cl_mem db_arg = db_mode ? db : dy, aux_arg = aux_mode ? db_aux : dy;
  const cl_mem sum_arg = colsum ? colsum : dy;
  const cl_ulong r = rows, c = cols, off = colsum_off;
  const m2pt_kernel_arg args[] = {M2PT_ARG(dy),      M2PT_ARG(r),       M2PT_ARG(c),
                                  M2PT_ARG(db_arg),  M2PT_ARG(aux_arg), M2PT_ARG(sum_arg),
                                  M2PT_ARG(off),     M2PT_ARG(scale)};
  const size_t per_item = vec ? 8 : 1; /* GRAD_COLS */
  const size_t global[1] = {(cols + per_item - 1) / per_item};
  return m2pt_run_kernel(ctx, &m2pt_cl_linear, options, "m2pt_linear_grad_bias", args, 8, 1,
                         global, NULL);
}

m2pt_status m2pt_op_linear_grad_scale(m2pt_context *ctx, cl_mem partial, size_t count,
                                      cl_mem colsum, size_t colsum_off, cl_mem b_aux, size_t nb,
                                      cl_mem dscale, int add)
{
  M2PT_TRY(m2pt_op_linear_grad_scale_supported(ctx));
  const char *options = add ? "-DDSCALE_ACC=1" : "-DDSCALE_ACC=0";
  const cl_mem sum_arg = nb ? colsum : partial, baux_arg = nb ? b_aux : partial;
  const cl_ulong n = count, off = colsum_off, nbias = nb;
  const m2pt_kernel_arg args[] = {M2PT_ARG(partial),  M2PT_ARG(n),     M2PT_ARG(sum_arg),
                                  M2PT_ARG(off),      M2PT_ARG(baux_arg), M2PT_ARG(nbias),
                                  M2PT_ARG(dscale)};
  const size_t global[1] = {M2PT_GRAD_LANES}, local[1] = {M2PT_GRAD_LANES};
  return m2pt_run_kernel(ctx, &m2pt_cl_linear, options, "m2pt_linear_grad_scale", args, 7, 1,
                         global, local);
}
