/* m2pt-bench: what the benchmark's parts share (options, shapes, timing,
 * the result table and records, error reporting). Uses only the public m2pt
 * API (<m2pt/opencl.h> included: the bench makes its own OpenCL queues to
 * time runs with profiling events and to run the peak suite's kernels). */
#ifndef M2PT_BENCH_H
#define M2PT_BENCH_H

#include <stddef.h>

#include <m2pt/m2pt.h>
#include <m2pt/opencl.h>

/* Suites, as bits of bench_options.suites. */
#define BENCH_SUITE_GEMM      1u
#define BENCH_SUITE_LINEAR    2u
#define BENCH_SUITE_STARTUP   4u
#define BENCH_SUITE_ATTENTION 8u
#define BENCH_SUITE_BLOCK     16u
#define BENCH_SUITE_PEAK      32u
#define BENCH_SUITE_FFN       64u
#define BENCH_SUITE_MODEL     128u
#define BENCH_SUITE_TRAIN     256u
#define BENCH_SUITE_ALL                                                               \
  (BENCH_SUITE_PEAK | BENCH_SUITE_GEMM | BENCH_SUITE_LINEAR | BENCH_SUITE_STARTUP |      \
   BENCH_SUITE_ATTENTION | BENCH_SUITE_FFN | BENCH_SUITE_BLOCK | BENCH_SUITE_MODEL |      \
   BENCH_SUITE_TRAIN)
/* The suites whose records carry pct_peak: they need the device's peak. */
#define BENCH_SUITES_WITH_PEAK                                                        \
  (BENCH_SUITE_PEAK | BENCH_SUITE_GEMM | BENCH_SUITE_LINEAR | BENCH_SUITE_ATTENTION |   \
   BENCH_SUITE_FFN | BENCH_SUITE_BLOCK | BENCH_SUITE_MODEL | BENCH_SUITE_TRAIN)

typedef struct bench_options {
  int warmup;        /* untimed runs before the timed ones, >= 1 (the first
                        compiles kernels, forms an effective weight) */
  int reps;          /* timed runs */
  int quick;         /* no cold startup runs */
  int smoke;         /* tiny shapes, one run: a test, not a measurement */
  int kernels;       /* split each case's m2pt kernel time by kernel (--kernels) */
  unsigned suites;   /* BENCH_SUITE_* */
} bench_options;

/* A linear map applied to `rows` vectors: [rows][in] -> [rows][out]. */
typedef struct bench_shape {
  size_t rows, in, out;
} bench_shape;

/* The shapes a run measures (ViT-B/16, or the tiny smoke shape) and the one
 * the startup suite uses. */
size_t bench_shapes(const bench_options *o, const bench_shape **shapes);
bench_shape bench_startup_shape(const bench_options *o);

/* 2·rows·in·out. */
double bench_flops(bench_shape shape);

/* "ROWSxIN->OUT". */
void bench_shape_string(bench_shape shape, char *buf, size_t size);

/* 4·batch·heads·tokens²·dim_head: the two products of attention. */
double bench_attention_flops(size_t batch, size_t tokens, size_t heads, size_t dim_head);

/* Fills `n` floats with uniform values in [-1, 1), the same for one seed. */
void bench_fill_random(float *dst, size_t n, unsigned seed);

/* A tensor of `ndim` dimensions filled with bench_fill_random(seed). */
m2pt_status bench_random_tensor(m2pt_context *ctx, size_t ndim, const size_t *shape, unsigned seed,
                                m2pt_tensor **out);

/* "AxBxC": the `n` sizes joined by 'x'. */
void bench_dims_string(const size_t *dims, size_t n, char *buf, size_t size);

/* Monotonic wall clock in seconds. */
double bench_now(void);

/* Reports a failed m2pt call on stderr (its name, the status and the
 * context's last error) and passes the status on. */
m2pt_status bench_check(const m2pt_context *ctx, m2pt_status s, const char *call);
#define BENCH_CALL(ctx, call) bench_check((ctx), (call), #call)

/* Waits for ctx's queue when s is M2PT_OK; passes a failure on. Every run
 * ends with it, once: while bench_measure times a run on ctx, it first
 * enqueues the marker that ends the run's device time. */
m2pt_status bench_finish(m2pt_context *ctx, m2pt_status s);

/* Reports a failure of the bench itself on stderr; returns `s`. */
m2pt_status bench_fail(m2pt_status s, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Progress on stderr: the device, suite and case under way (and, while a
 * case is measured, its ETA), rewritten in place when stderr is a terminal,
 * plain lines otherwise. */
void bench_progress(const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* One run of a case. It returns once the result is ready (it finishes the
 * context itself), so the wall clock around it covers the whole run. */
typedef m2pt_status (*bench_run_fn)(void *state);

typedef struct bench_case {
  bench_run_fn run;
  void *state;
  m2pt_context *profiled; /* the context the run uses (from bench_context_create): its
                             runs are timed by profiling events, and m2pt's kernel time
                             collected; NULL: host code, timed by wall clock */
} bench_case;

/* Kernels a case keeps of its split by kernel (--kernels): the longest. */
#define BENCH_KERNELS_KEPT 8

/* One of m2pt's kernels in a case's run: means over the timed runs. */
typedef struct bench_kernel_share {
  char name[M2PT_KERNEL_NAME_MAX];
  double ms, launches;
} bench_kernel_share;

typedef struct bench_timing {
  double median_ms, min_ms, max_ms;
  double kernel_ms; /* median device time of m2pt's own kernels; < 0: not measured */
  int events;       /* times are from OpenCL profiling events (else wall clock) */
  /* With --kernels, m2pt's kernel time per run by kernel, the longest
   * first (m2pt_context_kernel_times), n_kernels of them; the other
   * rest_kernels took rest_ms together. */
  size_t n_kernels, rest_kernels;
  double rest_ms;
  bench_kernel_share kernels[BENCH_KERNELS_KEPT];
} bench_timing;

/* Runs the n cases in turn, o->warmup untimed rounds and then o->reps timed
 * ones, so that drift in the machine's speed affects them alike, and writes
 * each case's timing to t[case] (with o->kernels, its kernel time by
 * kernel too). A case with a context is timed on the
 * device: a marker enqueued before the run and one that bench_finish
 * enqueues at its end bracket everything the run enqueued, CLBlast's kernels
 * included (whose own events can cover only one of their kernels, CLBlast
 * #572); where the markers' profiling fails, by wall clock. `label` names
 * the cases in the progress line. */
m2pt_status bench_measure(const bench_case *cases, size_t n, const bench_options *o,
                          const char *label, bench_timing *t);

/* Cases that the suites share: one call and m2pt_context_finish. */
typedef struct bench_gemm_state { /* y = x·wᵀ */
  m2pt_context *ctx;
  const m2pt_tensor *x, *w;
  m2pt_tensor *y;
} bench_gemm_state;
m2pt_status bench_run_gemm(void *state);

typedef struct bench_attention_state {
  m2pt_context *ctx;
  const m2pt_tensor *qkv; /* [B][N][3·heads·dim_head] */
  m2pt_tensor *out;       /* [B][N][heads·dim_head] */
  size_t heads, dim_head;
  m2pt_attention_impl impl;
} bench_attention_state;
m2pt_status bench_run_attention(void *state);

/* Device memory of one run: its peak over the bytes live before it (the
 * run's own scratch) and the context's peak itself, in MiB. */
typedef struct bench_peak_memory {
  double scratch_mib, total_mib;
} bench_peak_memory;

/* Runs case c once (untimed) and writes the device memory it took. Where
 * the run's scratch comes from the context's workspace, trim the context
 * first (m2pt_context_trim), or a workspace kept from earlier runs hides it. */
m2pt_status bench_measure_peak(m2pt_context *ctx, const bench_case *c, bench_peak_memory *m);

/* Sets a linear's W, b and, when it has a pathway, W_aux and λ = `scale`
 * to values drawn from fixed seeds (W, W_aux and b in [-1, 1)), the same for
 * one shape; host holds at least shape.in·shape.out floats. */
m2pt_status bench_set_linear_parameters(m2pt_context *ctx, m2pt_linear *layer, bench_shape shape,
                                        float scale, float *host);

/* A block of configuration c with every parameter set (weights of magnitude
 * 1/√in, every λ 0.5; the same values for the same configuration), merged
 * when `merge`. The caller destroys *out, also on failure. */
m2pt_status bench_block_make(m2pt_context *ctx, const m2pt_block_config *c, int merge,
                             m2pt_block **out);

/* 2·rows·(the block's four linears' in·out): the GEMM flops of one forward
 * of a block over `rows` tokens. */
double bench_block_gemm_flops(const m2pt_block_config *c, size_t rows);

/* Clears the progress line on a terminal before other output. */
void bench_progress_clear(void);

/* ---- devices, records and reports (report.c) ---- */

/* The device whose suites run now: the table's section header, the
 * records' "device" (`label`: its name, made unique among the chosen
 * devices), and its measured peaks. */
void bench_begin_device(const m2pt_device_info *info, const char *label);
/* The run's options, for the JSON file. */
void bench_report_options(const bench_options *o);
const char *bench_device_label(void);
/* The current device's measured peaks (`quick`: measured in passing because
 * the peak suite was not selected); 0 where not measured. */
void bench_set_peak(double gflops, double gbps, int quick);
/* Whether the host OpenBLAS has been measured in this run (it runs with the
 * first CPU device only: its records would repeat otherwise); sets it. */
int bench_openblas_once(void);

/* One result: a row of the table and a record. */
typedef struct bench_row {
  const char *suite;
  const char *name;  /* the record's case is "NAME SHAPE" */
  const char *shape;
  const bench_timing *t;
  double flops;      /* per run; <= 0: no GFLOP/s */
  double bytes;      /* device memory traffic per run for memory-bound ops (pct_peak then
                        is of the bandwidth peak, else of the FMA peak); <= 0: none */
  double ratio;      /* <= 0: the ratio column stays empty */
  const char *ratio_label;
  const char *note;  /* NULL: none */
  int openblas;      /* the host OpenBLAS: device "openblas", table name "openblas" */
  int no_peak;       /* no pct_peak (startup) */
} bench_row;
void bench_report(const bench_row *r);

/* Writes every record so far. Return M2PT_OK or M2PT_ERR_IO (reported). */
m2pt_status bench_write_json(const char *path);
m2pt_status bench_write_csv(const char *path);
m2pt_status bench_write_svg(const char *path);

/* --compare: reads OLD (a --json file) now, so that a bad file is a bad
 * argument before any run; NULL and a message on stderr when it is not one. */
void *bench_compare_load(const char *path);
void bench_compare_free(void *doc);
/* Prints new/old median time per (device, suite, case) for the records of
 * `new_doc` (NULL: this run's) and flags each over 1.05 as SLOWER; returns
 * the number flagged. */
size_t bench_compare(const void *old_doc, const void *new_doc);

/* The result table on stdout. A ratio <= 0 leaves the ratio column empty,
 * flops <= 0 the GFLOP/s column; note, when not NULL, ends the row. */
void bench_print_device(const m2pt_device_info *info);
void bench_print_header(void);
void bench_print_row(const char *suite, const char *name, const char *shape,
                     const bench_timing *t, double flops, double ratio, const char *ratio_label,
                     const char *note);
void bench_print_timing(const char *suite, const char *name, bench_shape shape,
                        const bench_timing *t, double ratio, const char *ratio_label);
void bench_print_seconds(const char *suite, const char *name, const char *shape,
                         double seconds, double ratio, const char *ratio_label,
                         const char *note);

/* The suites, on the device `info` describes (ctx is a context on it from
 * bench_context_create). */
m2pt_status bench_suite_gemm(m2pt_context *ctx, const m2pt_device_info *info,
                             const bench_options *o);
m2pt_status bench_suite_linear(m2pt_context *ctx, const m2pt_device_info *info,
                               const bench_options *o);
m2pt_status bench_suite_block(m2pt_context *ctx, const bench_options *o);
m2pt_status bench_suite_ffn(m2pt_context *ctx, const bench_options *o);
m2pt_status bench_suite_model(m2pt_context *ctx, const bench_options *o);
/* Training: the linear's backward unmerged against plain, and the ViT-B/16
 * block's inference forward, training forward and backward, unmerged and
 * plain, with the training step's workspace (trims ctx's workspace). */
m2pt_status bench_suite_train(m2pt_context *ctx, const bench_options *o);
/* The train suite's 12-block ViT-B/16 encoder (a tiny one for --smoke):
 * inference forward and training step, with and without recomputation,
 * and their device memory (trims ctx's workspace). */
m2pt_status bench_train_encoder(m2pt_context *ctx, const bench_options *o);
/* The device's FMA throughput and memory bandwidth (clpeak-style kernels on
 * ctx's queue), set as its peaks; `report`: as table rows and records, else
 * a quick measurement only for pct_peak. */
m2pt_status bench_suite_peak(m2pt_context *ctx, const m2pt_device_info *info,
                             const bench_options *o, int report);
/* Makes a fresh context per shape, so that the peak device memory of each
 * attention path starts from an empty workspace. */
m2pt_status bench_suite_attention(const m2pt_device_info *info, const bench_options *o);
m2pt_status bench_suite_startup(const m2pt_device_info *info, const bench_options *o);

/* A context on the device `info` describes, with M2PT_CONTEXT_PROFILING,
 * wrapped around an OpenCL context and profiling queue of the bench's own
 * (so that runs can be bracketed by marker events); destroy it with
 * bench_context_destroy. */
m2pt_status bench_context_create(const m2pt_device_info *info, m2pt_context **ctx);
void bench_context_destroy(m2pt_context *ctx);
/* The OpenCL queue of a context from bench_context_create; NULL otherwise. */
cl_command_queue bench_context_queue(const m2pt_context *ctx);

/* The hidden --startup-probe mode: one context creation up to the first
 * linear output read back, in a fresh process; prints
 * "SECONDS PROGRAMS_BUILT PROGRAMS_LOADED" on stdout. Returns the exit code. */
int bench_startup_probe(const char *device, m2pt_binary_cache cache, const bench_options *o);

/* "P:D", the selector of the device `info` describes. */
void bench_device_selector(const m2pt_device_info *info, char *buf, size_t size);

#endif
