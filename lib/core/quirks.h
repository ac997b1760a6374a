/* What m2pt does differently per device, decided in one place: a record
 * filled once when a context is created (m2pt_quirks_init), read by the
 * ops that pick a kernel variant, by the buffer code and by the GEMM
 * chooser. Each field is a fact about a device class (why it is there is
 * said beside it); $M2PT_QUIRKS overrides the ones that choose a variant,
 * so one machine can run every variant (README, Environment):
 *
 *   M2PT_QUIRKS=layer_norm=rows,gelu=scalar,attention=gemm
 *
 * Keys and values: layer_norm=workgroup|rows, gelu=scalar|float8|float16,
 * attention=auto|fused|gemm, attention_kernel=tiles|rows|host,
 * attention_vec=1|4|8|16, linear_grad=vector|scalar, softmax=workgroup|rows,
 * gemm=<backend> (a name
 * the GEMM chooser knows, checked there), fill=device|host,
 * new_buffers=plain|host_written, host_access=map|svm (svm checked
 * against the device). Items are separated by commas, without spaces; an
 * unknown key or value, or a key given twice, fails the context's
 * creation. */
#ifndef M2PT_CORE_QUIRKS_H
#define M2PT_CORE_QUIRKS_H

#include <stddef.h>

#include "cl.h"
#include "m2pt/attention.h"
#include "m2pt/context.h"

/* LayerNorm kernels (cl/layer_norm.cl). */
typedef enum m2pt_layer_norm_variant {
  M2PT_LAYER_NORM_WORKGROUP, /* a work-group per row, tree reduction */
  M2PT_LAYER_NORM_ROWS,      /* a row per work-item in float8, where dim % 8 == 0 */
} m2pt_layer_norm_variant;

/* The fused attention forward's kernel. */
typedef enum m2pt_attention_kernel {
  M2PT_ATTENTION_KERNEL_TILES, /* cl/attention.cl: a query per work-item, key tiles in local
                                * memory shared by a work-group (GPUs) */
  M2PT_ATTENTION_KERNEL_ROWS,  /* cl/attention_cpu.cl: query rows per work-item, keys
                                * vectorised, no local memory or barriers (CPUs) */
  M2PT_ATTENTION_KERNEL_HOST,  /* no kernel: common/host_attention.c on the buffers in host
                                * memory, for heads of 64 (else ROWS) */
} m2pt_attention_kernel;

/* Room for a GEMM backend's name. */
#define M2PT_QUIRKS_NAME 32

typedef struct m2pt_quirks {
  /* m2pt_fill writes a host block instead of clEnqueueFillBuffer:
   * Oclgrind 21.10 does not count a fill as initialising memory. */
  int fill_via_host;
  /* Every new device buffer is written from the host once: Oclgrind
   * recycles released buffers' ids with their shadow memory, so kernel
   * stores past the old size would stay "uninitialised". */
  int host_writes_new_buffers;
  /* ROWS on CPU devices (3.5x faster on PoCL); WORKGROUP on GPUs and on
   * Oclgrind, whose uninitialised-value checker cannot follow vectors.
   * Also how the column sums of LayerNorm's and the patch embedding's
   * parameter gradients run: 8 columns per work-item down the rows (ROWS,
   * 13x faster on PoCL) or a tree per work-group. */
  m2pt_layer_norm_variant layer_norm;
  /* GELU's vector width where rows allow, 16, 8 or 1 (float8: 3.1x faster
   * on PoCL, float16 a further 1.2-1.4x where the CPU has 16 float lanes;
   * 1 on Oclgrind, whose checker crashes on vectors). */
  unsigned gelu_vec;
  /* The widest vector the fused attention kernels may use, 16, 8, 4 or 1
   * (the widest dividing dim_head is taken; TILES takes at most 8): 16 on
   * CPUs whose preferred float vector is 16 (AVX-512: ROWS then keeps its
   * accumulators in 32 registers), 1 on Oclgrind, as for GELU. */
  unsigned attention_vec;
  /* ROWS on CPU devices: on PoCL 3.1 (2 cores of an AMD EPYC, AVX-512),
   * 12 heads of 64, it ran 4.0x faster than TILES at N = 197 and 5.7x at
   * N = 4096 (README, Performance), TILES' work-group loops and barriers
   * being what PoCL compiles poorly. TILES on GPUs and on Oclgrind (whose
   * test matrix runs ROWS too). HOST where the GEMMs run on the host too
   * (gemm_on_host: the buffers are SVM there and the queue idle) and the
   * host attention has a fast copy (AVX-512): on 2 cores of that EPYC its
   * prototype took the ViT-B/16 encoder at B = 1 to 167 ms against ROWS'
   * 183; on 2 cores of a Xeon (whose ROWS kernel PoCL compiles well) the
   * ViT-B block's attention at B = 8 took 5.5 ms against 6.6, at B = 1 the
   * same (README, Performance). With CLBlast's GEMMs it was 10–37% slower
   * than ROWS. */
  m2pt_attention_kernel attention_kernel;
  /* The linear backward's elementwise pass and column sums in explicit
   * vectors (1; 7–16x faster on PoCL, whose work-item loops do not vectorise
   * them) or scalars (0: Oclgrind, as for GELU); the same bits either way. */
  int linear_grad_vec;
  /* The softmax and its backward (attention's GEMM path) with a row per
   * work-item (1: CPU devices, 20-30x faster on PoCL than a work-group per
   * row, whose barriers it runs slowly) or a work-group per row (0: GPUs and
   * Oclgrind). */
  int softmax_rows;
  /* What M2PT_ATTENTION_AUTO resolves to: AUTO (the fused kernel wherever it
   * fits the device, else the GEMM path), FUSED or GEMM (forced). */
  m2pt_attention_impl attention;
  /* A GEMM on the host's CPU beats the device's own kernels: CPU devices,
   * whose buffers live in host memory; not Oclgrind's simulated one, where
   * GEMMs stay device kernels for its checkers to see. */
  int gemm_on_host;
  /* New buffers are fine-grained SVM (core/svm.h), which host GEMMs use in
   * place instead of mapping (1): where gemm_on_host is set and every
   * device of the context offers them (also under a forced CLBlast, where
   * they cost nothing). Buffers keep what they were made as when this
   * changes. */
  int host_svm;
  /* A GEMM backend forced by name (lib/gemm's chooser checks it), or "". */
  char gemm[M2PT_QUIRKS_NAME];
  /* The device rounds fp32 divide and sqrt correctly when asked
   * (CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT), so programs are built with
   * -cl-fp32-correctly-rounded-divide-sqrt. Not overridable. */
  int correctly_rounded_divide_sqrt;
  /* The disk binary cache pays off here when the options leave it to m2pt
   * (M2PT_BINARY_CACHE_AUTO; README, "Program caches"). Not overridable:
   * the options' binary_cache is. */
  int binary_cache;
} m2pt_quirks;

/* The quirks of a device, with no override. */
void m2pt_quirks_of_device(cl_device_id device, const m2pt_device_info *info, m2pt_quirks *q);

/* Applies an override specification (the syntax above; NULL or "" changes
 * nothing) to q. Returns 0, or -1 with the reason in why[0..size) and q
 * unchanged. */
int m2pt_quirks_parse(const char *spec, m2pt_quirks *q, char *why, size_t size);

/* Sets ctx->quirks at creation: the device's, then the calling thread's
 * override (m2pt_quirks_override) if one is set, else $M2PT_QUIRKS.
 * M2PT_ERR_INVALID_ARGUMENT (message in m2pt_last_error(NULL)) for a bad
 * specification, M2PT_ERR_UNSUPPORTED for host_access=svm on a device
 * without fine-grained SVM buffers. */
m2pt_status m2pt_quirks_init(m2pt_context *ctx);

/* For tests: contexts this thread creates from now on read their overrides
 * from `spec` (copied; NULL: from $M2PT_QUIRKS again). Every quirk is also a
 * plain field of ctx->quirks that a test may change on a live context; the
 * ops read them on every call, except gemm, which is chosen at creation. */
void m2pt_quirks_override(const char *spec);

#endif
