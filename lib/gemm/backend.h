/* GEMM backends: one interface, one implementation per file (clblast.c;
 * host_onednn.c and host_openblas.c, which share host_mapped.c), and the
 * chooser (chooser.c) that gives each context one of them when it is
 * created; a new backend is a new file and a line in the
 * chooser's list.
 *
 * Layers: gemm uses core (contexts, buffers, errors, quirks); ops and nn
 * call m2pt_gemm_sgemm; core knows nothing of GEMM. Core calls back into
 * this layer only through the hooks a context is created with
 * (core/context_hooks.h): m2pt_context_create is defined here
 * (context_api.c) and hands core m2pt_gemm_hooks. */
#ifndef M2PT_GEMM_BACKEND_H
#define M2PT_GEMM_BACKEND_H

#include <stddef.h>

#include "core/cl.h"
#include "core/context_hooks.h"
#include "m2pt/gemm.h"

/* A matrix operand: buffer, element offset, leading dimension and the
 * element distance between consecutive batch members. */
typedef struct m2pt_gemm_matrix {
  cl_mem buffer;
  size_t offset;
  size_t ld;
  size_t stride;
} m2pt_gemm_matrix;

/* Room for m2pt_context_tuning's detail (a path and a reason). */
#define M2PT_TUNING_DETAIL 1024

struct m2pt_gemm_backend;

/* What a host GEMM does to its product before storing it (one matrix,
 * alpha = 1, beta = 0): acc = op(A)·op(B) + bias[j], then GELU where gelu
 * (the tanh form where gelu_tanh), then + residual[i][j] (leading dimension
 * ldc); bias and residual NULL: none. The linear layer's inference forward
 * (y = x·Wᵀ + b, GELU(x·Wᵀ + b) or r + x·Wᵀ + b) in one pass. */
typedef struct m2pt_host_epilogue {
  const float *bias, *residual;
  int gelu, gelu_tanh;
} m2pt_host_epilogue;

/* A constant B operand kept repacked between GEMMs by the host backend
 * that made it (oneDNN: its matmul's blocked weights layout, which it would
 * otherwise copy blocks into on every call, and the matmul primitive of the
 * last call, reused by the next that asks the same). Zero-initialised: empty. Its
 * owner (a linear layer, for its weight) empties it with
 * m2pt_gemm_packed_clear whenever B's contents change and before B goes;
 * the copy is host memory the size of B. Packing costs about one pass over
 * B, so it is made on the second GEMM with B unchanged: a weight used once
 * between changes is never packed (a training step with one micro-batch and
 * no recomputed forward). */
typedef struct m2pt_gemm_packed {
  void *impl;
  void (*release)(void *impl);
  unsigned long uses; /* GEMMs with it since the last clear */
} m2pt_gemm_packed;

/* Frees p's copy (if any) and marks it empty; NULL is ignored. */
void m2pt_gemm_packed_clear(m2pt_gemm_packed *p);

/* A GEMM on host memory: row-major C = alpha·op(A)·op(B) + beta·C for
 * `batch` matrices, consecutive members `stride_*` elements apart; op(X) is
 * X transposed where trans_* is set; A is m × k, B k × n after op; then the
 * epilogue. Sizes, leading dimensions and strides fit an int. */
typedef struct m2pt_host_gemm {
  int trans_a, trans_b;
  size_t m, n, k, batch;
  float alpha, beta;
  const float *a, *b;
  float *c;
  size_t lda, ldb, ldc;
  size_t stride_a, stride_b, stride_c;
  m2pt_host_epilogue epilogue;
  /* Where B is constant and may be kept repacked (one matrix), else NULL. */
  m2pt_gemm_packed *packed_b;
} m2pt_host_gemm;

/* A context's GEMM state (core's context holds it as ctx->gemm). */
struct m2pt_gemm_context {
  const struct m2pt_gemm_backend *backend;
  /* The CLBlast tuning applied at creation (tuning_apply.c), for
   * m2pt_context_tuning. */
  m2pt_tuning_source tuning_source;
  char tuning_detail[M2PT_TUNING_DETAIL];
  /* GEMMs run through m2pt_gemm_sgemm since creation: tests check with it
   * that a frozen parameter costs no GEMM (tests/test_grad_linear.c). */
  unsigned long long calls;
};

/* One backend. Arguments reaching sgemm and sgemm_batched are validated
 * (ops/gemm.c): sizes non-zero, operands inside their buffers. */
typedef struct m2pt_gemm_backend {
  const char *name;   /* how M2PT_QUIRKS's gemm= names it: "clblast" */
  const char *label;  /* m2pt_context_gemm_backend's answer: "CLBlast" */
  /* NULL when this build can run it, else why not (for the error when it
   * is forced). */
  const char *(*unavailable)(void);
  /* Whether the chooser takes it for ctx when nothing forces a backend;
   * the chooser asks the backends in its order and takes the first. */
  int (*preferred)(const m2pt_context *ctx);
  /* Prepares ctx for its GEMMs at creation (first use of the library
   * underneath, tuning) and says in g what it applied. Never fails. */
  void (*attach)(m2pt_context *ctx, struct m2pt_gemm_context *g, const char *cache_dir);
  /* Undoes attach at ctx's destruction, after its OpenCL objects are
   * released; NULL: nothing to undo. */
  void (*detach)(m2pt_context *ctx);
  /* Frees process-wide state once the last context has gone, with the
   * process lock held (core/global.h); NULL: none. */
  void (*teardown)(void);
  /* Row-major C = alpha·op(A)·op(B) + beta·C, one matrix each. */
  m2pt_status (*sgemm)(m2pt_context *ctx, m2pt_transpose ta, m2pt_transpose tb, size_t m,
                       size_t n, size_t k, float alpha, const m2pt_gemm_matrix *a,
                       const m2pt_gemm_matrix *b, float beta, const m2pt_gemm_matrix *c);
  /* The same for `batch` (> 1) matrices `stride` apart in each operand. */
  m2pt_status (*sgemm_batched)(m2pt_context *ctx, m2pt_transpose ta, m2pt_transpose tb,
                               size_t m, size_t n, size_t k, float alpha,
                               const m2pt_gemm_matrix *a, const m2pt_gemm_matrix *b, float beta,
                               const m2pt_gemm_matrix *c, size_t batch);
  /* For a backend that computes on the host (CPU devices: host_mapped.c
   * gives the operands host addresses and calls it): runs g; NULL for one whose GEMMs run
   * as device kernels. */
  m2pt_status (*host_sgemm)(m2pt_context *ctx, const m2pt_host_gemm *g);
} m2pt_gemm_backend;

/* What contexts are created with (chooser.c): attach picks ctx's backend
 * (the quirks' gemm=, else M2PT_CONTEXT_CLBLAST's CLBlast, else the first
 * backend that prefers the device) and attaches it; release detaches it and
 * tears every backend down when the last context goes. */
extern const m2pt_context_hooks m2pt_gemm_hooks;

/* Row-major strided-batched SGEMM on ctx's backend, arguments already
 * validated; batch 1 is a plain SGEMM. A failure is M2PT_ERR_BLAS (or the
 * fitting memory status) with the backend's own error name in the message. */
m2pt_status m2pt_gemm_sgemm(m2pt_context *ctx, m2pt_transpose ta, m2pt_transpose tb, size_t m,
                            size_t n, size_t k, float alpha, const m2pt_gemm_matrix *a,
                            const m2pt_gemm_matrix *b, float beta, const m2pt_gemm_matrix *c,
                            size_t batch);

/* ---- Host work around a GEMM on the host ----
 * On a CPU device whose GEMMs run on the host (oneDNN or OpenBLAS), the ops
 * around a GEMM (a bias, a residual, GELU, LayerNorm) can run on the host
 * too, on the operands while the host holds them for the GEMM (SVM or
 * mapped): no kernel launch, no queue hand-off, and C still in cache. */

/* Extra buffers one host work may map besides the GEMM's operands: as
 * many as a fused linear uses (x and the two LayerNorms' source, output,
 * weight and bias: nn/linear.c), the bias and residual being the
 * epilogue's own. */
#define M2PT_GEMM_HOST_EXTRAS 7

typedef struct m2pt_gemm_host_work {
  /* The epilogue's operands (m2pt_host_epilogue): bias n floats, residual
   * m × n with C's leading dimension, each from element 0; NULL: none. */
  cl_mem bias, residual;
  int gelu, gelu_tanh;
  /* B's repacked copy, kept across calls (m2pt_gemm_packed), or NULL. */
  m2pt_gemm_packed *packed_b;
  /* Run with every operand and extra on the host: `before` ahead of the sgemm
   * (C is readable and writable), `after` once C holds the product and its
   * epilogue. Either may be NULL. c is C's first element, extra[i] extra
   * buffer i's first element (NULL where buffer[i] is NULL). */
  void (*before)(void *user, float *c, float *const *extra);
  void (*after)(void *user, float *c, float *const *extra);
  void *user;
  /* Extra buffers, each mapped from element 0: `elems` floats, written by
   * the work when `write`. A buffer may also be an operand or another
   * extra (the mappings are merged). NULL: no buffer. */
  cl_mem buffer[M2PT_GEMM_HOST_EXTRAS];
  size_t elems[M2PT_GEMM_HOST_EXTRAS];
  int write[M2PT_GEMM_HOST_EXTRAS];
} m2pt_gemm_host_work;

/* 1 when an m × n × k GEMM on ctx runs on the host (so that
 * m2pt_gemm_sgemm_host takes it), else 0. */
int m2pt_gemm_host_takes(const m2pt_context *ctx, size_t m, size_t n, size_t k);

/* One row-major sgemm C = alpha·op(A)·op(B) + beta·C on the host with
 * `work`'s epilogue (alpha must then be 1 and beta 0), and its functions before and
 * after it, under one mapping, arguments validated as for
 * m2pt_gemm_sgemm, all offsets and leading dimensions within an int.
 * Only where m2pt_gemm_host_takes; else M2PT_ERR_UNSUPPORTED. */
m2pt_status m2pt_gemm_sgemm_host(m2pt_context *ctx, m2pt_transpose ta, m2pt_transpose tb,
                                 size_t m, size_t n, size_t k, float alpha,
                                 const m2pt_gemm_matrix *a, const m2pt_gemm_matrix *b,
                                 float beta, const m2pt_gemm_matrix *c,
                                 const m2pt_gemm_host_work *work);

#endif
