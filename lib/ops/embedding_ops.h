/* The embedding and pooling ops on raw buffers, arguments already checked
 * (the public wrappers in embedding.c check tensors), and the host-side
 * checks of ids and masks that the model shares. Kernels: cl/embedding.cl. */
#ifndef M2PT_OPS_EMBEDDING_OPS_H
#define M2PT_OPS_EMBEDDING_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/cl.h"
#include "m2pt/embedding.h"

/* Converts host ids (I32 or I64, [rows][cols]) to int32 into dst (rows·cols),
 * each checked to lie in [0, limit): otherwise M2PT_ERR_INVALID_ARGUMENT
 * "<fn>: <what>[b][n] = v is out of range [0, limit) (<table>)". */
m2pt_status m2pt_host_ids_check(const m2pt_context *ctx, const m2pt_host_matrix *ids,
                                size_t limit, const char *fn, const char *what,
                                const char *table, int32_t *dst);

/* Checks ids (against vocab) and types (NULL: none; against ntypes) as
 * m2pt_host_ids_check does and uploads them as int32 into the workspace's
 * ids slot: ids, then, when ntypes > 0, the types (zeros when types is
 * NULL), the layout m2pt_op_bert_gather reads. */
m2pt_status m2pt_host_ids_upload(m2pt_context *ctx, const m2pt_host_matrix *ids,
                                 const m2pt_host_matrix *types, size_t vocab, size_t ntypes,
                                 const char *fn, cl_mem *buf);

/* Checks a host mask ([rows][cols] of I32, I64 or F32, exactly 0 or 1) and
 * converts it to floats into dst. Errors: M2PT_ERR_INVALID_ARGUMENT (NULL
 * data, dtype, a value other than 0 or 1, naming it and its [b][n]),
 * M2PT_ERR_SHAPE (not [rows][cols]). */
m2pt_status m2pt_host_mask_check(const m2pt_context *ctx, const m2pt_host_matrix *mask,
                                 size_t rows, size_t cols, const char *fn, float *dst);

/* Word + position (+ token type) gather, ids_buf holding ids then types as
 * int32 (types only when type != NULL), y [rows][dim]; no LayerNorm. */
m2pt_status m2pt_op_bert_gather(m2pt_context *ctx, cl_mem ids_buf, cl_mem word, cl_mem pos,
                                cl_mem type, size_t rows, size_t tokens, size_t dim, cl_mem y);

/* The geometry of a patch embedding. */
typedef struct m2pt_patch_shape {
  size_t batch, channels, height, width, patch, dim;
} m2pt_patch_shape;

/* im2col + GEMM + bias + class token + positions into y [B][prefix + G][D]
 * (prefix = cls != NULL); bias, cls and pos may be NULL. */
m2pt_status m2pt_op_patch_embed(m2pt_context *ctx, cl_mem pixels, cl_mem weight, cl_mem bias,
                                cl_mem cls, cl_mem pos, const m2pt_patch_shape *s, cl_mem y);

/* Pooling of x [batch][tokens][dim] into y [batch][dim] (token or masked
 * mean from `first`), then optionally the L2 normalization of y's rows. */
m2pt_status m2pt_op_pool(m2pt_context *ctx, cl_mem x, cl_mem mask, int token, size_t batch,
                         size_t tokens, size_t dim, size_t first, int normalize, cl_mem y);

/* Divides each of the rows of x [rows][dim] by max(its L2 norm, 1e-12). */
m2pt_status m2pt_op_l2_normalize(m2pt_context *ctx, cl_mem x, size_t rows, size_t dim);

/* x = tanh(x) over n elements. */
m2pt_status m2pt_op_tanh(m2pt_context *ctx, cl_mem x, size_t n);

/* ---- backward ---- */

/* dy = dy·(1 − y²) over n elements, y the output of m2pt_op_tanh. */
m2pt_status m2pt_op_tanh_backward(m2pt_context *ctx, cl_mem y, cl_mem dy, size_t n);

/* dtable [table_rows][dim] = Σ src rows by key, from a host-built index in
 * an int buffer: offsets [table_rows + 1] at element `offsets`, the source
 * row numbers grouped by key (ascending within a key) at element `list`. */
m2pt_status m2pt_op_scatter_rows(m2pt_context *ctx, cl_mem src, cl_mem index, size_t offsets,
                                 size_t list, size_t table_rows, size_t dim, cl_mem dtable);

/* out[t][d] = Σ_b dy[b][first + t][d] for t < count; dy [batch][tokens][dim]. */
m2pt_status m2pt_op_batch_sum(m2pt_context *ctx, cl_mem dy, size_t first, size_t count,
                              size_t batch, size_t tokens, size_t dim, cl_mem out);

/* The patch embedding's backward (m2pt_patch_embed_backward), outputs NULL
 * when not wanted; prefix is 1 with a class token. */
m2pt_status m2pt_op_patch_embed_backward(m2pt_context *ctx, cl_mem pixels, cl_mem weight,
                                         size_t prefix, cl_mem dy, const m2pt_patch_shape *s,
                                         cl_mem dpixels, cl_mem dweight, cl_mem dbias,
                                         cl_mem dcls, cl_mem dpos);

/* The pooling's backward (m2pt_pool_backward) into dx [batch][tokens][dim];
 * x is read only when normalizing. */
m2pt_status m2pt_op_pool_backward(m2pt_context *ctx, cl_mem x, cl_mem mask, int token,
                                  size_t batch, size_t tokens, size_t dim, size_t first,
                                  int normalize, cl_mem dy, cl_mem dx);

#endif
