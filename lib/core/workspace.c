#include "workspace.h"

#include "buffer.h"
#include "context_impl.h"
#include "error.h"

m2pt_status m2pt_workspace_get(m2pt_context *ctx, m2pt_workspace_slot slot, size_t bytes,
                               cl_mem *out)
{
  if (ctx->workspace[slot] && ctx->workspace_bytes[slot] >= bytes) {
    *out = ctx->workspace[slot];
    return M2PT_OK;
  }
  /* Released buffers stay alive until the commands using them are done
   * (clReleaseMemObject semantics), so growing mid-queue is safe. */
  m2pt_buffer_release(ctx, ctx->workspace[slot], ctx->workspace_bytes[slot]);
  ctx->workspace[slot] = NULL;
  ctx->workspace_bytes[slot] = 0;
  /* Zeroed once when it grows, so that no kernel ever reads memory nobody
   * wrote (oclgrind checks this; CLBlast's batched GEMM loads C even with
   * beta = 0). */
  M2PT_TRY(m2pt_buffer_create(ctx, bytes, 1, &ctx->workspace[slot]));
  ctx->workspace_bytes[slot] = bytes;
  *out = ctx->workspace[slot];
  return M2PT_OK;
}

void m2pt_workspace_release(m2pt_context *ctx)
{
  /* A block's saved training forward lived in the M2PT_WS_TRAIN_* slots:
   * no block owns them any more, so its backward must refuse to run. */
  ctx->train_serial++;
  for (int i = 0; i < M2PT_WS_SLOTS; i++) {
    m2pt_buffer_release(ctx, ctx->workspace[i], ctx->workspace_bytes[i]);
    ctx->workspace[i] = NULL;
    ctx->workspace_bytes[i] = 0;
  }
}

m2pt_status m2pt_workspace_upload(m2pt_context *ctx, m2pt_workspace_slot slot, const void *host,
                                  size_t bytes, const char *what, cl_mem *out)
{
  M2PT_TRY(m2pt_workspace_get(ctx, slot, bytes, out));
  const cl_int err = clEnqueueWriteBuffer(ctx->queue, *out, CL_TRUE, 0, bytes, host, 0, NULL,
                                          NULL);
  return err == CL_SUCCESS ? M2PT_OK : m2pt_fail_cl(ctx, err, what);
}
