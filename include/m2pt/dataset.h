/* Training data on the host (issue 13): a dataset of S samples read from
 * .npy files (hidden states, token ids or pixels, an optional attention
 * mask, class indices or regression targets), the order batches are drawn
 * in, and the plan of a run (how many optimizer steps, which micro-batches
 * each takes, at which fractional epoch). Pure host code: no context; a
 * failure's message goes to the calling thread (m2pt_last_error(NULL)). */
#ifndef M2PT_DATASET_H
#define M2PT_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "embedding.h"
#include "io.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum m2pt_data_kind {
  M2PT_DATA_HIDDEN = 0, /* F32 [S][N][dim]: the block stack's input */
  M2PT_DATA_IDS = 1,    /* integers [S][N]: token ids (any integer .npy dtype) */
  M2PT_DATA_PIXELS = 2, /* F32 [S][C][H][W], already normalized */
} m2pt_data_kind;

typedef enum m2pt_label_kind {
  M2PT_LABELS_CLASSES = 0, /* integers [S] (or [S][1]): class indices, for cross-entropy */
  M2PT_LABELS_TARGETS = 1, /* F32 [S][k] (or [S]: k = 1): regression targets, for MSE */
} m2pt_label_kind;

typedef struct m2pt_dataset m2pt_dataset;

/* Builds a dataset from arrays in memory (as m2pt_npy_read_any gives them),
 * copying what it keeps: `data` of `kind` (the dtype and rank above),
 * `mask` NULL or [S][N] of 0 and 1 (any integer dtype, BOOL or F32; N the
 * data's tokens for HIDDEN and IDS, any width for PIXELS, whose tokens are
 * the patches and the class token), `labels` as m2pt_label_kind says (its
 * dtype decides the kind: F32 is targets, an integer dtype class indices).
 * Every value is checked here, so batches need no checks later: the
 * samples of data, mask and labels must agree, S ≥ 1, class indices ≥ 0,
 * targets and F32 data finite, token ids ≥ 0. The caller owns *out
 * (m2pt_dataset_destroy); the arrays stay the caller's.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, a bad kind, a negative class or
 * id, a mask value other than 0 or 1, a non-finite value: the message names
 * the array, the sample and the value), M2PT_ERR_SHAPE (a rank or dtype the
 * kind does not take, different sample counts: the message gives both, no
 * sample), M2PT_ERR_OUT_OF_MEMORY. Nothing is built on failure. */
M2PT_API m2pt_status m2pt_dataset_create(m2pt_data_kind kind, const m2pt_npy_array *data,
                                         const m2pt_npy_array *mask,
                                         const m2pt_npy_array *labels, m2pt_dataset **out);

/* m2pt_dataset_create from .npy files (mask_path NULL: no mask); messages
 * name the file. Errors: those of m2pt_dataset_create and m2pt_npy_read_any. */
M2PT_API m2pt_status m2pt_dataset_load(m2pt_data_kind kind, const char *data_path,
                                       const char *mask_path, const char *labels_path,
                                       m2pt_dataset **out);

/* Frees the dataset and its batch buffers. Accepts NULL. */
M2PT_API void m2pt_dataset_destroy(m2pt_dataset *ds);

/* What a dataset holds. */
typedef struct m2pt_dataset_info {
  m2pt_data_kind kind;
  size_t samples;       /* S */
  size_t ndim;          /* the data's rank: 3 HIDDEN, 2 IDS, 4 PIXELS */
  size_t shape[4];      /* the data's shape, shape[0] = S */
  int has_mask;
  size_t mask_width;    /* N of the mask (0 without one) */
  m2pt_label_kind labels;
  size_t label_width;   /* 1 for classes, k for targets */
  int64_t max_class;    /* the largest class index (classes only, else −1) */
} m2pt_dataset_info;

/* Fills *info. Errors: M2PT_ERR_INVALID_ARGUMENT (NULL). */
M2PT_API m2pt_status m2pt_dataset_get_info(const m2pt_dataset *ds, m2pt_dataset_info *info);

/* Checks that every class index is below `classes` (a head's outputs).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, classes 0, labels that are
 * targets, an index ≥ classes: the message names the first such sample and
 * its value). */
M2PT_API m2pt_status m2pt_dataset_check_classes(const m2pt_dataset *ds, size_t classes);

/* One batch, gathered from the dataset into buffers the dataset owns: valid
 * until the next m2pt_dataset_batch on it or its destruction. */
typedef struct m2pt_batch {
  size_t size;          /* rows B */
  const float *x;       /* HIDDEN, PIXELS: B samples of F32, row-major; else NULL */
  size_t x_shape[4];    /* the data's shape with shape[0] = B */
  m2pt_host_matrix ids; /* IDS: I64 [B][N]; else data NULL */
  m2pt_host_matrix mask;   /* I64 [B][N] of 0 and 1; data NULL without a mask */
  m2pt_host_matrix labels; /* classes: I64 [B][1]; targets: F32 [B][k] */
} m2pt_batch;

/* Gathers the samples indices[0 .. count) (each < S, repeats allowed) into
 * *batch. Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, count 0, an index ≥ S),
 * M2PT_ERR_OUT_OF_MEMORY; on failure *batch is left as it was. */
M2PT_API m2pt_status m2pt_dataset_batch(m2pt_dataset *ds, const size_t *indices, size_t count,
                                        m2pt_batch *batch);

/* ---- The order of samples and the plan of a run ---------------------------- */

/* Writes the order of the `samples` samples for epoch `epoch` to
 * order[0 .. samples): 0, 1, … S − 1 when shuffle is 0; else a permutation
 * that depends on (seed, epoch) alone, so a resumed run draws the same
 * batches. The generator, so that anyone can reproduce it: SplitMix64
 * (Steele, Lea, Flood 2014: state += 0x9E3779B97F4A7C15; z = state;
 * z = (z ^ z >> 30)·0xBF58476D1CE4E5B9; z = (z ^ z >> 27)·0x94D049BB133111EB;
 * output z ^ z >> 31) started from state = seed ^ ((epoch + 1) ·
 * 0xD1B54A32D192ED03) (mod 2^64); then Fisher–Yates: for i = S − 1 down to
 * 1, j uniform in [0, i] (the next output r with r < 2^64 − (2^64 mod
 * (i + 1)), redrawn otherwise; j = r mod (i + 1)), swap order[i] and
 * order[j]. Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, samples 0). */
M2PT_API m2pt_status m2pt_batch_order(size_t samples, int shuffle, uint64_t seed, uint64_t epoch,
                                      size_t *order);

/* The plan of a run over S samples in micro-batches of B, K micro-batches
 * per optimizer step. An epoch is M = ⌈S / B⌉ micro-batches (the last one
 * has S − (M − 1)·B samples: it is used, not dropped). Micro-batches are
 * numbered j = 0, 1, … across epochs (epoch ⌊j / M⌋, position j mod M in
 * that epoch's order), and step t (from 0) takes micro-batches
 * t·K … min(t·K + K, total) − 1: a step may straddle two epochs, as
 * MAE's accumulation carries a partial step into the next epoch. The
 * learning rate of step t is the schedule's at fractional epoch t·K / M
 * (MAE's adjust_learning_rate at data_iter_step / len(data_loader) + epoch). */
typedef struct m2pt_train_plan {
  size_t samples, batch, accum;
  size_t iterations_per_epoch; /* M */
  size_t micro_batches;        /* total: ⌈epochs · M⌉, or steps · K */
  size_t steps;                /* ⌈micro_batches / K⌉ */
  double epochs;               /* the schedule's length in epochs: as given, or steps·K / M */
} m2pt_train_plan;

/* Makes the plan for `epochs` > 0 epochs (steps 0) or `steps` ≥ 1 optimizer
 * steps (epochs 0). Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, samples, batch
 * or accum 0, neither or both of epochs and steps, a non-finite epochs, a
 * total that overflows), M2PT_ERR_SHAPE (batch > samples: "a batch of B
 * from S samples"). */
M2PT_API m2pt_status m2pt_train_plan_make(size_t samples, size_t batch, size_t accum,
                                          double epochs, size_t steps, m2pt_train_plan *plan);

/* Where micro-batch j of a plan reads: the epoch, the first position in
 * that epoch's order and the number of samples. Errors:
 * M2PT_ERR_INVALID_ARGUMENT (NULL, j ≥ plan->micro_batches). */
M2PT_API m2pt_status m2pt_train_plan_micro_batch(const m2pt_train_plan *plan, size_t j,
                                                 size_t *epoch, size_t *first, size_t *count);

/* The fractional epoch of step t, t·K / M (for the schedule and the log).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (NULL, t ≥ plan->steps). */
M2PT_API m2pt_status m2pt_train_plan_epoch_of_step(const m2pt_train_plan *plan, size_t t,
                                                   double *epoch);

#ifdef __cplusplus
}
#endif

#endif
