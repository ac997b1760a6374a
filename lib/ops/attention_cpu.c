/* The fused attention forward shaped for CPU devices (cl/attention_cpu.cl):
 * query rows per work-item, keys streamed through explicit vectors, no
 * local memory or barriers, which PoCL's work-group loops compile poorly.
 * Chosen by the attention_kernel quirk (lib/core/quirks.c). */
#include <math.h>
#include <stdio.h>

#include "block_ops.h"
#include "core/context_impl.h"
#include "core/error.h"
#include "core/program.h"

#define ROWS 4 /* R: query rows per work-item, sized for 32 vector registers */
#define KEY_VECTORS 2 /* NV: key vectors per block */

/* The widest vector the quirks allow that divides dim_head (1 when none). */
static unsigned dim_lanes(unsigned most, size_t dim_head)
{
  static const unsigned widths[] = {16, 8, 4};
  for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++)
    if (most >= widths[i] && dim_head % widths[i] == 0)
      return widths[i];
  return 1;
}

static unsigned key_lanes(const m2pt_context *ctx)
{
  const unsigned most = ctx->quirks.attention_vec;
  return most >= 16 ? 16 : most >= 8 ? 8 : most >= 4 ? 4 : 1;
}

/* Keys padded to whole blocks: the length of a row of Kᵀ and of the bias. */
static size_t padded_keys(const m2pt_context *ctx, size_t tokens)
{
  const size_t block = (size_t)key_lanes(ctx) * KEY_VECTORS;
  return (tokens + block - 1) / block * block;
}

static void rows_options(const m2pt_context *ctx, size_t dim_head, int has_mask, int save_lse,
                         char *buf, size_t size)
{
  snprintf(buf, size, "-DDH=%zu -DR=%d -DKV=%u -DNV=%d -DDV=%u -DHAS_MASK=%d -DSAVE_LSE=%d",
           dim_head, ROWS, key_lanes(ctx), KEY_VECTORS,
           dim_lanes(ctx->quirks.attention_vec, dim_head), has_mask, save_lse);
}

/* The key bias [B][npad], Kᵀ and V, each [B][heads][npad·dim_head], in
 * one workspace slot, or the failure when the size overflows. */
static m2pt_status keys_buffer(m2pt_context *ctx, const m2pt_attention_shape *s, size_t npad,
                               cl_mem *out)
{
  size_t rows, bytes;
  if (!m2pt_mul_size(s->batch * s->heads, s->dim_head, &rows) || rows > SIZE_MAX / 2 ||
      2 * rows > SIZE_MAX - s->batch || !m2pt_mul_size(2 * rows + s->batch, npad, &bytes) ||
      !m2pt_mul_size(bytes, sizeof(float), &bytes))
    return m2pt_fail(ctx, M2PT_ERR_DEVICE_OUT_OF_MEMORY,
                     "attention keys of %zu × %zu heads × %zu tokens overflow", s->batch,
                     s->heads, s->tokens);
  return m2pt_workspace_get(ctx, M2PT_WS_KEYS_T, bytes, out);
}

m2pt_status m2pt_attention_rows(m2pt_context *ctx, cl_mem qkv, cl_mem mask,
                                const m2pt_attention_shape *s, cl_mem out, cl_mem lse)
{
  const size_t npad = padded_keys(ctx, s->tokens);
  M2PT_REQUIRE(ctx, npad <= UINT32_MAX, "m2pt_attention: too many tokens");
  cl_mem keys;
  M2PT_TRY(keys_buffer(ctx, s, npad, &keys));
  char options[128];
  rows_options(ctx, s->dim_head, mask != NULL, lse != NULL, options, sizeof options);
  const cl_uint tokens = (cl_uint)s->tokens, heads = (cl_uint)s->heads, np = (cl_uint)npad;
  /* The kernel's scores are in base 2: dim_head^-0.5 · log2(e). */
  const float scale = (float)(1.0 / (sqrt((double)s->dim_head) * log(2.0)));
  const m2pt_kernel_arg key_args[] = {M2PT_ARG(qkv),    M2PT_ARG(mask),  M2PT_ARG(keys),
                                      M2PT_ARG(tokens), M2PT_ARG(heads), M2PT_ARG(np)};
  const size_t key_global[3] = {npad / key_lanes(ctx), s->heads, s->batch};
  /* A group per (batch row, head): left to itself, PoCL 3.1 ran ViT-B's
   * N = 197 pass as one group, on one thread (0.13–0.18 ms in
   * m2pt-bench's attention suite against 0.08–0.12 so); one work-item per
   * group was as fast there but 1.1–1.4× slower at N = 1024 and 4096.
   * Where the kernel cannot take a row in one group, the driver chooses. */
  size_t key_limit;
  M2PT_TRY(m2pt_kernel_group_limit(ctx, &m2pt_cl_attention_cpu, options,
                                   "m2pt_attention_cpu_keys", &key_limit));
  const size_t key_local[3] = {key_global[0], 1, 1};
  M2PT_TRY(m2pt_run_kernel(ctx, &m2pt_cl_attention_cpu, options, "m2pt_attention_cpu_keys",
                           key_args, 6, 3, key_global,
                           key_global[0] <= key_limit ? key_local : NULL));
  const m2pt_kernel_arg args[] = {M2PT_ARG(qkv),   M2PT_ARG(keys), M2PT_ARG(out),
                                  M2PT_ARG(tokens), M2PT_ARG(heads), M2PT_ARG(np),
                                  M2PT_ARG(scale), M2PT_ARG(lse)};
  const size_t global[3] = {(s->tokens + ROWS - 1) / ROWS, s->heads, s->batch};
  /* One work-item per group: left to itself, PoCL 3.1 put all 50×12
   * work-items of ViT-B's N = 197 in one group, so on one thread; two per
   * group measured no faster than one. */
  const size_t local[3] = {1, 1, 1};
  return m2pt_run_kernel(ctx, &m2pt_cl_attention_cpu, options, "m2pt_attention_cpu", args,
                         lse ? 8 : 7, 3, global, local);
}
