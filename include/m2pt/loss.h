/* Training losses (issue 12): softmax cross-entropy over class logits and
 * mean squared error, each fused with its gradient. Like the other ops they
 * are asynchronous on the context's queue and validate every argument
 * first: a rejected call changes no tensor. The loss is written to a
 * 1-element device tensor, not returned as a host float, so that reading it
 * is the caller's choice (m2pt_tensor_read) rather than a wait in every
 * step. m2pt_cross_entropy's label upload is a blocking write, as
 * m2pt_bert_embeddings' ids are: it returns once the queue has reached it. Every sum has a fixed order (a tree per row, then a tree over the
 * rows; no atomics), so two calls give the same bits. */
#ifndef M2PT_LOSS_H
#define M2PT_LOSS_H

#include <stddef.h>

#include "io.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Softmax cross-entropy, mean over the batch (PyTorch's
 * F.cross_entropy(logits, labels, label_smoothing=ε), reduction 'mean'):
 *   loss = (1/B)·Σ_b Σ_c t[b][c]·(lse(logits[b]) − logits[b][c]),
 *   t[b] = (1 − ε)·onehot(labels[b]) + ε/C,
 * with lse computed max-subtracted, so logits of ±1e4 give finite values.
 * logits is [B][C] (f32 on the device); labels is a host array of B class
 * indices of dtype M2PT_DTYPE_I32 or M2PT_DTYPE_I64, borrowed for the call
 * and checked before anything is enqueued: one outside [0, C) is
 * M2PT_ERR_INVALID_ARGUMENT naming its index and value. ε in [0, 1].
 * loss, when not NULL, is a 1-element tensor; dlogits, when not NULL, gets
 * ∂loss/∂logits = (softmax(logits) − t)/B ([B][C]; may be logits itself).
 * At least one of them must be given.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, dtype, a label out of range, ε),
 * M2PT_ERR_SHAPE, M2PT_ERR_CONTEXT_MISMATCH, M2PT_ERR_DEVICE_OUT_OF_MEMORY,
 * M2PT_ERR_OPENCL, M2PT_ERR_KERNEL_BUILD. */
M2PT_API m2pt_status m2pt_cross_entropy(m2pt_context *ctx, const m2pt_tensor *logits,
                                        const void *labels, m2pt_dtype label_dtype,
                                        float label_smoothing, m2pt_tensor *loss,
                                        m2pt_tensor *dlogits);

/* Mean squared error (PyTorch's F.mse_loss, reduction 'mean'):
 *   loss = mean((y − target)²) over all B·k elements,
 *   dy = 2·(y − target)/(B·k).
 * y and target have one shape ([B][k]; any shape, reduced over its last
 * dimension first, then over the rows). loss (1 element) or dy (y's shape;
 * may be y or target) may be NULL, not both.
 * Errors: as m2pt_cross_entropy, without the labels. */
M2PT_API m2pt_status m2pt_mse(m2pt_context *ctx, const m2pt_tensor *y, const m2pt_tensor *target,
                              m2pt_tensor *loss, m2pt_tensor *dy);

#ifdef __cplusplus
}
#endif

#endif
