/* The fused attention forward on host memory, for CPU devices
 * (ops/attention.c takes it under the quirk attention_kernel=host): the
 * same function as cl/attention_cpu.cl, in GCC/Clang vectors of 16 floats
 * compiled for AVX-512 where the CPU has it, the work spread over a pool
 * of threads (host_pool.h): about twice the kernel's speed as PoCL
 * compiled it on an AMD EPYC (Zen 4), as fast at B = 1 and 1.2× at B = 8
 * on a Xeon (README, Performance). Memory stays O(N): the N×N scores are
 * never stored. No OpenCL here. */
#ifndef M2PT_COMMON_HOST_ATTENTION_H
#define M2PT_COMMON_HOST_ATTENTION_H

#include <stddef.h>

#include "host_pool.h"
#include "m2pt/status.h"

/* The instruction sets m2pt_host_attention has a copy for, in order. */
typedef enum m2pt_host_isa {
  M2PT_HOST_ISA_PORTABLE, /* plain C vectors, whatever the compiler targets */
  M2PT_HOST_ISA_AVX512,   /* x86-64 AVX-512F + FMA */
} m2pt_host_isa;

/* The best copy this CPU runs (PORTABLE off x86-64). */
m2pt_host_isa m2pt_host_isa_best(void);

/* The one head size m2pt_host_attention takes: ViT-B's and BERT-base's. */
#define M2PT_HOST_ATTENTION_DIM_HEAD 64

/* 1 when heads of dim_head are M2PT_HOST_ATTENTION_DIM_HEAD and this CPU
 * has a copy faster than the device kernel (AVX-512), else 0. */
int m2pt_host_attention_fast(size_t dim_head);

/* The geometry of m2pt_host_attention's tensors. */
typedef struct m2pt_host_attention_shape {
  size_t batch, tokens, heads, dim_head;
} m2pt_host_attention_shape;

/* Multi-head self-attention of every (batch row b, head h):
 *   out[b][i][h] = Σ_j softmax_j(q_i·k_j / √dim_head + bias_j) · v_j,
 * bias_j 0 for a kept key and -inf for a masked one; a row whose keys are
 * all masked is 0. Layouts as cl/attention_cpu.cl's: qkv
 * [B][N][3][heads][dim_head], out [B][N][heads][dim_head], mask [B][N]
 * (nonzero: token, 0: padding key; NULL: none), lse [B][heads][N] (NULL:
 * not written): each row's log-sum-exp of the scaled scores, -inf where
 * all keys are masked. A NaN in a row's scores makes its output NaN.
 *
 * `isa` at most m2pt_host_isa_best(); the work is spread over `pool`'s
 * workers (fewer where there is less work; NULL: the caller alone).
 * Scratch of O(N·dim_head) per worker is allocated here. M2PT_OK;
 * M2PT_ERR_INVALID_ARGUMENT where dim_head is not 64, a size is 0 or isa
 * is above the best; M2PT_ERR_OUT_OF_MEMORY where the scratch cannot be
 * had (its size overflowing too): then nothing is written. Messages are
 * left to the caller. */
m2pt_status m2pt_host_attention(const float *qkv, const float *mask,
                                const m2pt_host_attention_shape *shape, m2pt_host_isa isa,
                                m2pt_host_pool *pool, float *out, float *lse);

#endif
