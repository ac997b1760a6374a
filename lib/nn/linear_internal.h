/* What the FFN and the block use of a linear layer, on raw buffers. */
#ifndef M2PT_NN_LINEAR_INTERNAL_H
#define M2PT_NN_LINEAR_INTERNAL_H

#include <stddef.h>

#include "core/cl.h"
#include "m2pt/linear.h"
#include "m2pt/ops.h"

/* y = x·W_effᵀ + beta·y for x [rows][in], y [rows][out] (no bias), forming
 * W_eff = W + λ·W_aux first if it is stale. */
m2pt_status m2pt_linear_apply(m2pt_linear *layer, cl_mem x, size_t rows, float beta, cl_mem y);

/* The bias the forward adds (b, or b + λ·b_aux), NULL without one. */
m2pt_status m2pt_linear_effective_bias(m2pt_linear *layer, cl_mem *bias);

/* y = x·W_effᵀ + bias: the public forward on raw buffers. */
m2pt_status m2pt_linear_forward_buffers(m2pt_linear *layer, cl_mem x, size_t rows, cl_mem y);

/* A LayerNorm's parameters ([dim] each; bias may be NULL). */
typedef struct m2pt_linear_norm {
  cl_mem weight, bias;
  float eps;
} m2pt_linear_norm;

/* The ops an inference forward fuses around a linear's GEMM
 * (m2pt_linear_apply_fused); a zeroed one: none but the bias. */
typedef struct m2pt_linear_fusion {
  /* First x = LayerNorm(pre_src) (pre_src [rows][in], not y); NULL: x is
   * the input as it is. */
  cl_mem pre_src;
  m2pt_linear_norm pre;
  /* y = residual + x·W_effᵀ + b (residual [rows][out], not y); NULL: none. */
  cl_mem residual;
  /* y = GELU(x·W_effᵀ + b) of gelu_kind when gelu (never with a residual). */
  int gelu;
  m2pt_gelu_kind gelu_kind;
  /* Last post_out = LayerNorm(y) ([rows][out], may be y); NULL: none. */
  cl_mem post_out;
  m2pt_linear_norm post;
} m2pt_linear_fusion;

/* y = x·W_effᵀ + bias with the ops f describes around it. Where the GEMM
 * runs on the host, the bias, GELU and residual are its epilogue and the
 * LayerNorms run on the host under its mapping (common/host_math.h); else
 * all run as kernels before and after it. */
m2pt_status m2pt_linear_apply_fused(m2pt_linear *layer, cl_mem x, size_t rows,
                                    const m2pt_linear_fusion *f, cl_mem y);

/* Gives a plain (or merged) layer a pathway: a zero W_aux and λ = 0, which
 * leaves its function unchanged (the paper's reparameterize step). A layer
 * that has one keeps it. */
m2pt_status m2pt_linear_add_pathway(m2pt_linear *layer);

/* Undoes m2pt_linear_add_pathway (a failed reparameterize rolls back with
 * it). Layers with an aux bias are left alone. */
void m2pt_linear_drop_pathway(m2pt_linear *layer);

/* The layer's M2PT_LINEAR_* flags now (a merge clears the pathway's). */
unsigned m2pt_linear_flags(const m2pt_linear *layer);

/* Checks that x is [..][in] and y the same with [..][out] (fn names the
 * caller in the message). */
m2pt_status m2pt_linear_check_io(const m2pt_context *ctx, const m2pt_tensor *x,
                                 const m2pt_tensor *y, size_t in, size_t out, const char *fn);

/* The device buffer of a parameter: 0 weight, 1 bias, 2 aux weight, 3 aux
 * bias (M2PT_FIELD_WEIGHT, _BIAS, _AUX_WEIGHT, then aux bias); NULL where
 * the layer has none. Updating it in place (an optimizer step) must be
 * followed by m2pt_linear_params_changed. */
cl_mem m2pt_linear_param_buffer(const m2pt_linear *layer, int field);

/* Marks W + λ·W_aux stale after its parameters changed in place. */
void m2pt_linear_params_changed(m2pt_linear *layer);

#endif
