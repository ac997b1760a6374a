/* Device ops of the re-parameterized linear (kernels in cl/linear.cl). */
#ifndef M2PT_OPS_LINEAR_OPS_H
#define M2PT_OPS_LINEAR_OPS_H

#include <stddef.h>

#include "core/cl.h"
#include "m2pt/context.h"

/* dst[i] = w[i] + scale·aux[i] for i < n, as one fma (dst may be w). */
m2pt_status m2pt_op_fold_pathway(m2pt_context *ctx, cl_mem dst, cl_mem w, cl_mem aux,
                                 float scale, size_t n);

/* y[r][c] = b[c] for a rows × cols matrix y. */
m2pt_status m2pt_op_broadcast_rows(m2pt_context *ctx, cl_mem y, cl_mem b, size_t rows,
                                   size_t cols);

/* ---- Backward reductions (cl/linear.cl), in a fixed order ----
 * Each output is written by `mode`: not at all, overwritten, or added to. */
typedef enum m2pt_grad_write {
  M2PT_GRAD_SKIP = 0,
  M2PT_GRAD_SET = 1,
  M2PT_GRAD_ADD = 2,
} m2pt_grad_write;

/* Work-items of dλ's reduction group, and elements of G a work-item of the
 * pass over G covers (one partial of dλ's sum each). */
#define M2PT_GRAD_LANES 64
#define M2PT_GRAD_ITEM 16

/* Partials m2pt_op_linear_grad_weight writes for n elements. */
static inline size_t m2pt_grad_partials(size_t n)
{
  return (n + M2PT_GRAD_ITEM - 1) / M2PT_GRAD_ITEM;
}

/* One pass over G [n]: dw += G when dw_add (dw is otherwise untouched),
 * dw_aux written λ·G by `aux_mode`, and, when w_aux is not NULL, the
 * partials of Σ G ⊙ W_aux into partial[0 .. m2pt_grad_partials(n)):
 * partial p covers G[16p, 16p + 16) as four runs of four: lane k (0..3)
 * sums (fma, in order) the elements 16p + 4j + k, j = 0..3, and the lanes
 * meet as (lane 0 + lane 1) + (lane 2 + lane 3). In float4 vectors or
 * scalars by ctx's quirks (linear_grad), the same bits either way. Nothing
 * to do: no kernel. */
m2pt_status m2pt_op_linear_grad_weight(m2pt_context *ctx, cl_mem g, size_t n, cl_mem dw,
                                       int dw_add, cl_mem dw_aux, m2pt_grad_write aux_mode,
                                       cl_mem w_aux, cl_mem partial, float scale);

/* s = Σ_rows dy for dy [rows][cols], each column summed over rows 0, 1, …
 * in order (8 columns a work-item in float8 by ctx's quirks, the same
 * bits); db gets s by db_mode, db_aux λ·s by aux_mode, and colsum (when
 * not NULL) s at element colsum_off. */
m2pt_status m2pt_op_linear_grad_bias(m2pt_context *ctx, cl_mem dy, size_t rows, size_t cols,
                                     cl_mem db, m2pt_grad_write db_mode, cl_mem db_aux,
                                     m2pt_grad_write aux_mode, cl_mem colsum, size_t colsum_off,
                                     float scale);

/* M2PT_OK, or M2PT_ERR_UNSUPPORTED (reported) on a device whose
 * work-groups hold fewer than M2PT_GRAD_LANES work-items, which
 * m2pt_op_linear_grad_scale needs: callers check it before writing
 * anything. */
m2pt_status m2pt_op_linear_grad_scale_supported(m2pt_context *ctx);

/* dscale[0] = (or +=, when add) Sw + Sb: Sw the `count` partials, Sb =
 * Σ colsum[colsum_off + o]·b_aux[o] for o < nb (nb 0: none, colsum and
 * b_aux unused). Each of the two: lane l of 64 adds terms l, l + 64, … in
 * order, then the pairwise tree. */
m2pt_status m2pt_op_linear_grad_scale(m2pt_context *ctx, cl_mem partial, size_t count,
                                      cl_mem colsum, size_t colsum_off, cl_mem b_aux, size_t nb,
                                      cl_mem dscale, int add);

#endif
