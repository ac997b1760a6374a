/* What m2pt-run, m2pt-merge and m2pt-reparam share: option parsing, one way
 * to report errors, and the model options they all take. Public API only. */
#ifndef M2PT_TOOL_UTIL_H
#define M2PT_TOOL_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <m2pt/m2pt.h>

/* Exit statuses: 0 success, 1 a failure while working, 2 bad usage. */
#define TOOL_EXIT_FAILURE 1
#define TOOL_EXIT_USAGE 2

/* Set once by main; prefixes every message. */
extern const char *tool_name;

/* "<tool>: <message>\n" on stderr. */
void tool_error(const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Reports a failed m2pt call (what was being done, the status name and the
 * library's message from ctx, or the thread's for ctx NULL); returns 1. */
int tool_fail(const m2pt_context *ctx, m2pt_status s, const char *doing);

/* argv[*i] is `flag` and a value follows: stores it, advances *i, returns 1.
 * A flag without its value, or with an empty one, is reported and *bad set. */
int tool_arg(int argc, char **argv, int *i, const char *flag, const char **value, int *bad);

/* Parses a finite float (subnormals included) / a positive size; reports and
 * returns 0 otherwise. */
int tool_parse_float(const char *flag, const char *text, float *out);
int tool_parse_size(const char *flag, const char *text, size_t *out);

/* 1 when every element of the array (ndim ≤ M2PT_IO_MAX_DIMS dimensions of
 * `shape`) is finite; otherwise reports the first NaN or ±Inf by its index,
 * "<what>: element [0][3][17] is nan", and returns 0. The library computes
 * with them as PyTorch does (they propagate); the tools refuse them. */
int tool_check_finite(const char *what, const float *data, size_t ndim, const size_t *shape);

/* Splits a comma-separated list in place; at most `max` items. Returns the
 * count, or 0 (reported) for an empty item or too many. */
size_t tool_split_list(const char *flag, char *text, const char **items, size_t max);

/* The options every tool takes: the model's (--heads H, --eps E,
 * --post-norm, --naming timm|bert|hf-vit, --prefix P, --no-final-norm), the
 * pathway's (--scale L, --layers LIST, --aux-bias), --device SEL and --verbose (tool_verbose). */
typedef struct tool_options {
  m2pt_model_options model;
  const char *device;
  float scale;
  int has_scale;
  const char *layers[8]; /* empty: the default four */
  size_t nlayers;
  const char *layer_list; /* --layers as given */
  int aux_bias;           /* --aux-bias: the seed's y = x(W + λW_aux)ᵀ + b + λb_aux */
  int profiling;          /* tool_open_model makes a profiling context */
} tool_options;

void tool_options_init(tool_options *o);

/* Returns 1 when argv[*i] was one of them (consumed, *i advanced past its
 * value), 0 otherwise; *bad set (and reported) on a malformed value. */
int tool_option(int argc, char **argv, int *i, tool_options *o, int *bad);

/* Splits --layers once parsing is done; 0 (reported) when malformed. */
int tool_options_finish(tool_options *o);

/* Gives `model` the pathways the options ask for from the checkpoint at
 * `aux` (--layers, --scale, --aux-bias); reports failures and returns 1. */
int tool_add_pathways(m2pt_context *ctx, m2pt_model *model, const char *aux,
                      const tool_options *o);

/* The help text of tool_option's flags. */
extern const char tool_options_help[];

/* With --verbose: "<tool>: <what>: S s (peak RSS M MiB)" on stderr, timing
 * each step from the end of the previous one (or the first call). */
extern int tool_verbose;
void tool_step(const char *what);

/* Makes SIGTERM, SIGINT and SIGHUP remove the output's temporary file (where
 * the filesystem needs a named one) before they end the process as they
 * would have. Leaves a signal ignored at start (nohup) ignored. */
void tool_signals(void);

/* Creates a context on `device` (NULL: the default) with M2PT_CONTEXT_*
 * `flags`; reports failures. */
int tool_context(const char *device, unsigned flags, m2pt_context **ctx);

/* Reads a [B][N] array of integers (token ids, token types, as <i4 or <i8),
 * widened exactly to int64 into *data (m2pt_free); reports failures naming
 * `flag` and returns 0. */
int tool_read_ids(const char *flag, const char *path, int64_t **data, size_t *rows,
                  size_t *cols);

/* How many tokens an image becomes for the checkpoint at `path` (its
 * position embeddings' length); reports and returns 0 when it has none. */
int tool_pixel_tokens(const char *path, size_t *tokens);

/* Reads --attention-mask `path` as floats into *mask (malloc'd), every value
 * checked to be 0 or 1 and the shape [rows][cols] ([cols] too when
 * one_row_ok); reports failures and returns 0. */
int tool_read_mask(const char *path, size_t rows, size_t cols, int one_row_ok, float **mask);

/* A batch as read from .npy files: f32 hidden states or pixels, or token
 * ids and types widened to int64, and a mask of `rows` sequences of `cols`
 * tokens as floats. */
typedef struct tool_inputs {
  float *x;
  size_t ndim, shape[M2PT_IO_MAX_DIMS];
  int64_t *ids, *types;
  float *mask;
  size_t rows, cols;
} tool_inputs;

void tool_inputs_free(tool_inputs *in);

/* Reads an f32 input of ndim_lo to ndim_hi dimensions (`layout` names them
 * in the message) into in->x, refusing NaN and ±Inf unless allow_nonfinite
 * (the refusal adds `hint` when not NULL); reports failures naming `flag`
 * and returns 0. */
int tool_read_f32(const char *flag, const char *path, size_t ndim_lo, size_t ndim_hi,
                  const char *layout, int allow_nonfinite, const char *hint, tool_inputs *in);

/* Reads --input-ids `ids` and, when not NULL, --token-type-ids `types` (of
 * the ids' shape) into in; reports failures and returns 0. */
int tool_read_id_inputs(const char *ids, const char *types, tool_inputs *in);

/* The model and input flags m2pt-run and m2pt-grad share: --model,
 * --aux, --input, --input-ids, --token-type-ids, --pixels, --attention-mask. */
typedef struct tool_input_args {
  const char *model, *aux, *input, *ids, *types, *pixels, *mask;
} tool_input_args;

/* As tool_option, for those flags. */
int tool_input_arg(int argc, char **argv, int *i, tool_input_args *in, int *bad);

/* What is wrong with the flags given together (--model, exactly one input,
 * --heads, the pathway's options only with --aux, types only with ids), or
 * NULL. */
const char *tool_input_check(const tool_input_args *in, const tool_options *o);

/* Opens the device (--device), loads --model with the model options and
 * gives it --aux's pathways, timing each step (tool_step); reports
 * failures and returns their exit status, 0 when all went well. *ctx and
 * *model are the caller's to destroy either way (NULL when not made). */
int tool_open_model(const tool_input_args *in, const tool_options *o, m2pt_context **ctx,
                    m2pt_model **model);

#endif
