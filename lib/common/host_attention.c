/* The fused attention forward on the host (host_attention.h).
 *
 * A task is one (batch row, head). It first packs the head's keys into the
 * worker's scratch as cl/attention_cpu.cl's key pass does: Kᵀ in blocks of
 * KB keys [npad / KB][DH][KB], V [N][DH] and a key bias [npad] (0 kept,
 * -inf masked or past the last token), so that the loops below read
 * contiguous runs instead of rows a whole qkv row apart (power-of-two
 * strides that thrash the L1's sets). Then, R query rows at a time:
 *   s = q·Kᵀ/√DH + bias     SB vectors of KB keys at a time, SB·R vectors
 *                           of fma per column of Kᵀ, stored in p [R][npad];
 *   p = e^(s − max s)      the exact two-pass softmax over the stored row
 *                           (not the kernel's online rescaling: R rows of
 *                           npad floats stay in cache), l = Σ p lane by lane;
 *   out = (Σ_j p_j·v_j) / l  R·DH accumulators, 16 vectors.
 * Compiled with -ffp-contract=fast (lib/meson.build): the products and sums
 * above become fma where the copy's instruction set has it. */
#include "host_attention.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "host_vector.h"
#include "size_math.h"

#if defined(__GNUC__) && defined(__x86_64__)
#  define HAVE_X86_COPIES 1
#else
#  define HAVE_X86_COPIES 0
#endif

#define DH M2PT_HOST_ATTENTION_DIM_HEAD
#define KB 16          /* keys per block of Kᵀ: one vector */
#define DV (DH / KB)   /* vectors per row of V or out */
#define R 4            /* query rows at a time: R·DV = 16 accumulators in P·V */
#define SB 4           /* key blocks of scores at a time: R·SB accumulators */
#define ALIGN 64       /* bytes: a cache line, a whole AVX-512 vector */

typedef float v16f __attribute__((vector_size(KB * sizeof(float))));
typedef int32_t v16i __attribute__((vector_size(KB * sizeof(int32_t))));

/* load16, store16, select16, exp16. */
M2PT_HOST_VECTOR_OPS(v16f, v16i, 16)

#define INLINE M2PT_HOST_INLINE

/* One worker's scratch: Kᵀ [npad·DH], V [npad·DH], bias [npad], p [R·npad],
 * each a multiple of 16 floats from a 64-byte boundary. */
#define SCRATCH_PER_KEY (2 * DH + 1 + R)
typedef struct scratch {
  float *kt, *v, *bias, *p;
} scratch;

typedef struct job job;
typedef void task_fn(const job *jb, size_t task, const scratch *w);

struct job {
  const float *qkv, *mask;
  float *out, *lse;
  m2pt_host_attention_shape s;
  size_t npad, tasks;
  task_fn *task; /* the copy for the chosen instruction set */
  atomic_size_t next; /* the next task (b·heads + h) to take */
};

/* Packs (b, h)'s keys into w; returns how many are kept (not masked). */
INLINE size_t pack_keys(const job *jb, size_t b, size_t h, const scratch *w)
{
  const size_t n = jb->s.tokens, heads = jb->s.heads, row = 3 * heads * DH;
  const float *k = jb->qkv + b * n * row + (heads + h) * DH, *v = k + heads * DH;
  const float *mask = jb->mask ? jb->mask + b * n : NULL;
  size_t kept = 0;
  for (size_t j = 0; j < n; j++) {
    const float *kj = k + j * row;
    float *kt = w->kt + j / KB * KB * DH + j % KB;
    for (size_t d = 0; d < DH; d++)
      kt[d * KB] = kj[d];
    memcpy(w->v + j * DH, v + j * row, DH * sizeof(float));
    const int keep = !mask || mask[j] != 0.0f;
    w->bias[j] = keep ? 0.0f : -INFINITY;
    kept += (size_t)keep;
  }
  for (size_t j = n; j < jb->npad; j++) {
    float *kt = w->kt + j / KB * KB * DH + j % KB;
    for (size_t d = 0; d < DH; d++)
      kt[d * KB] = 0.0f;
    w->bias[j] = -INFINITY;
  }
  return kept;
}

/* The lanes folded: by max in order (a NaN lane is passed over; it still
 * reaches the row's output through its e^NaN), by + in a fixed tree. */
INLINE float fold_max(v16f v)
{
  float m = v[0];
  for (int i = 1; i < KB; i++)
    m = v[i] > m ? v[i] : m;
  return m;
}

INLINE float fold_sum(v16f v)
{
  for (int half = KB / 2; half >= 1; half /= 2)
    for (int i = 0; i < half; i++)
      v[i] += v[i + half];
  return v[0];
}

/* Scores of query rows q against `blocks` key blocks from key c (blocks a
 * constant once inlined): s = q·Kᵀ + bias into p, their maxima into most. */
INLINE void score_blocks(const scratch *w, size_t npad, size_t c, const size_t blocks,
                         float q[R][DH], v16f most[R])
{
  v16f s[SB][R];
  memset(s, 0, sizeof s);
  const float *kt = w->kt + c * DH;
  for (size_t d = 0; d < DH; d++)
    for (size_t k = 0; k < blocks; k++) {
      const v16f kv = load16(kt + k * KB * DH + d * KB);
      for (size_t r = 0; r < R; r++)
        s[k][r] += q[r][d] * kv;
    }
  for (size_t k = 0; k < blocks; k++) {
    const v16f bias = load16(w->bias + c + k * KB);
    for (size_t r = 0; r < R; r++) {
      s[k][r] += bias;
      store16(w->p + r * npad + c + k * KB, s[k][r]);
      most[r] = select16(s[k][r] > most[r], s[k][r], most[r]);
    }
  }
}

/* Query rows i0 .. i0 + R − 1 of (b, h) (rows past the last token repeat
 * it and are not stored), the keys packed in w. */
INLINE void attend_rows(const job *jb, size_t b, size_t h, size_t i0, const scratch *w)
{
  const size_t n = jb->s.tokens, heads = jb->s.heads, npad = jb->npad;
  const size_t row = 3 * heads * DH;
  const float scale = 0.125f; /* 1/√DH */
  float q[R][DH];
  for (size_t r = 0; r < R; r++) {
    const size_t i = i0 + r < n ? i0 + r : n - 1;
    const float *qi = jb->qkv + (b * n + i) * row + h * DH;
    for (size_t d = 0; d < DH; d++)
      q[r][d] = qi[d] * scale;
  }

  const v16f zero = {0};
  v16f most[R];
  for (size_t r = 0; r < R; r++)
    most[r] = zero - INFINITY;
  /* SB key blocks at a time where there are as many: R·SB independent fma
   * chains, enough to keep two FMA units busy through their latency. */
  size_t key = 0;
  for (; key + SB * KB <= npad; key += SB * KB)
    score_blocks(w, npad, key, SB, q, most);
  for (; key < npad; key += KB)
    score_blocks(w, npad, key, 1, q, most);

  float sum[R], top[R];
  for (size_t r = 0; r < R; r++) {
    /* Masked keys' -inf − max flush to 0, not to e^-87.3 (exp16's clamp). */
    top[r] = fold_max(most[r]);
    v16f l = zero;
    float *p = w->p + r * npad;
    for (size_t c = 0; c < npad; c += KB) {
      const v16f x = load16(p + c) - top[r];
      const v16f e = select16(x < -87.3f, zero, exp16(x));
      store16(p + c, e);
      l += e;
    }
    sum[r] = fold_sum(l);
  }

  v16f acc[R][DV];
  memset(acc, 0, sizeof acc);
  for (size_t j = 0; j < n; j++) {
    const float *vj = w->v + j * DH;
    for (size_t r = 0; r < R; r++) {
      const float pj = w->p[r * npad + j];
      for (size_t e = 0; e < DV; e++)
        acc[r][e] += pj * load16(vj + e * KB);
    }
  }
  for (size_t r = 0; r < R && i0 + r < n; r++) {
    float *o = jb->out + ((b * n + i0 + r) * heads + h) * DH;
    for (size_t e = 0; e < DV; e++)
      store16(o + e * KB, acc[r][e] / sum[r]);
    if (jb->lse)
      jb->lse[(b * heads + h) * n + i0 + r] = top[r] + logf(sum[r]);
  }
}

/* Writes (b, h)'s rows where every key is masked: 0, log-sum-exp -inf. */
static void masked_rows(const job *jb, size_t b, size_t h)
{
  const size_t n = jb->s.tokens, heads = jb->s.heads;
  for (size_t i = 0; i < n; i++) {
    memset(jb->out + ((b * n + i) * heads + h) * DH, 0, DH * sizeof(float));
    if (jb->lse)
      jb->lse[(b * heads + h) * n + i] = -INFINITY;
  }
}

INLINE void run_task(const job *jb, size_t task, const scratch *w)
{
  const size_t b = task / jb->s.heads, h = task % jb->s.heads;
  if (pack_keys(jb, b, h, w) == 0) {
    masked_rows(jb, b, h);
    return;
  }
  for (size_t i0 = 0; i0 < jb->s.tokens; i0 += R)
    attend_rows(jb, b, h, i0, w);
}

/* One copy of the task per instruction set. An AVX2 copy of the same
 * code was left out: GCC 12 lowers its 16-float vectors on AVX2 into
 * scalar shuffles (10 GFLOP/s at N = 197, below the portable copy's 15);
 * such CPUs keep the device kernel (m2pt_host_attention_fast). */
static void task_portable(const job *jb, size_t task, const scratch *w)
{
  run_task(jb, task, w);
}

#if HAVE_X86_COPIES
__attribute__((target("avx512f,fma"))) static void task_avx512(const job *jb, size_t task,
                                                              const scratch *w)
{
  run_task(jb, task, w);
}
#endif

m2pt_host_isa m2pt_host_isa_best(void)
{
#if HAVE_X86_COPIES
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"))
    return M2PT_HOST_ISA_AVX512;
#endif
  return M2PT_HOST_ISA_PORTABLE;
}

int m2pt_host_attention_fast(size_t dim_head)
{
  return dim_head == DH && m2pt_host_isa_best() != M2PT_HOST_ISA_PORTABLE;
}

typedef struct worker {
  job *jb;
  scratch w;
} worker;

/* Takes tasks until none is left (the work is uneven only by the machine's
 * other load, so first come, first served). */
static void work(void *arg, unsigned index)
{
  worker *wk = (worker *)arg + index;
  job *jb = wk->jb;
  for (;;) {
    const size_t t = atomic_fetch_add(&jb->next, 1);
    if (t >= jb->tasks)
      return;
    jb->task(jb, t, &wk->w);
  }
}

/* At most this many workers whatever is asked (the stack arrays below). */
#define MOST_THREADS 256

m2pt_status m2pt_host_attention(const float *qkv, const float *mask,
                                const m2pt_host_attention_shape *shape, m2pt_host_isa isa,
                                m2pt_host_pool *pool, float *out, float *lse)
{
  if (!qkv || !shape || !out || shape->dim_head != DH || !shape->batch || !shape->tokens ||
      !shape->heads || isa > m2pt_host_isa_best())
    return M2PT_ERR_INVALID_ARGUMENT;
  job jb = {.qkv = qkv, .mask = mask, .out = out, .lse = lse, .s = *shape};
  jb.task = task_portable;
#if HAVE_X86_COPIES
  if (isa == M2PT_HOST_ISA_AVX512)
    jb.task = task_avx512;
#endif
  if (!m2pt_mul_size(shape->batch, shape->heads, &jb.tasks) || shape->tokens > SIZE_MAX - KB)
    return M2PT_ERR_OUT_OF_MEMORY;
  jb.npad = (shape->tokens + KB - 1) / KB * KB;
  atomic_init(&jb.next, 0);
  const unsigned threads = m2pt_host_pool_threads(pool);
  size_t workers = threads < MOST_THREADS ? threads : MOST_THREADS, per, bytes;
  if (workers > jb.tasks)
    workers = jb.tasks;
  if (!m2pt_mul_size(jb.npad, SCRATCH_PER_KEY * sizeof(float), &per) ||
      !m2pt_mul_size(per, workers, &bytes))
    return M2PT_ERR_OUT_OF_MEMORY;
  float *block = aligned_alloc(ALIGN, bytes); /* per: a multiple of 64 bytes */
  if (!block)
    return M2PT_ERR_OUT_OF_MEMORY;
  worker wk[MOST_THREADS];
  for (size_t i = 0; i < workers; i++) {
    float *base = block + i * (per / sizeof(float));
    wk[i].jb = &jb;
    wk[i].w = (scratch){base, base + jb.npad * DH, base + 2 * jb.npad * DH,
                        base + 2 * jb.npad * DH + jb.npad};
  }
  m2pt_host_pool_run(pool, (unsigned)workers, work, wk);
  free(block);
  return M2PT_OK;
}
