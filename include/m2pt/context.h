/* Devices and contexts: finding OpenCL devices, choosing one, and the context
 * that every other m2pt object belongs to. */
#ifndef M2PT_CONTEXT_H
#define M2PT_CONTEXT_H

#include <stddef.h>
#include <stdint.h>

#include "export.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An OpenCL device, its queue, program caches and workspace.
 *
 * Threads: a context, and every object made with it (tensors, layers,
 * blocks, models), is used by one thread at a time (it may move between
 * threads); calls on one context from several threads at once need the
 * caller's own lock. Separate contexts are
 * independent: any number of threads may each create, use and destroy their
 * own contexts at the same time, on the same device or on different ones, and
 * call m2pt_device_list and m2pt_device_select meanwhile, with no lock of
 * their own, from the first call in the process on. m2pt serializes what
 * contexts share inside the process: device enumeration (where OpenCL
 * drivers start up), CLBlast's process-wide parameters and caches (tuning
 * overrides wait for GEMM calls in flight in other threads), its count of
 * live contexts. m2pt_last_error(NULL) is per thread. Not covered: changing
 * m2pt's environment variables (setenv) while another thread creates a
 * context, and calls the application itself makes into CLBlast's global
 * state (CLBlastOverrideParameters, CLBlastClearCache) while m2pt contexts
 * run GEMMs. It relies on the OpenCL driver being thread-safe, as OpenCL 1.1
 * requires; Oclgrind 21.10's runtime is not, so there contexts must take
 * turns. */
typedef struct m2pt_context m2pt_context;

#define M2PT_INFO_STRING 256

/* What a user choosing a device needs to know about it. */
typedef struct m2pt_device_info {
  unsigned platform_index;   /* P of a "P:D" selector */
  unsigned device_index;     /* D of a "P:D" selector */
  char platform_name[M2PT_INFO_STRING];
  char platform_version[M2PT_INFO_STRING];
  char name[M2PT_INFO_STRING];
  char vendor[M2PT_INFO_STRING];
  char driver_version[M2PT_INFO_STRING];
  char device_version[M2PT_INFO_STRING];   /* "OpenCL 3.0 ..." */
  char opencl_c_version[M2PT_INFO_STRING]; /* "OpenCL C 1.2 ..." */
  int is_gpu;
  int is_cpu;
  unsigned compute_units;
  unsigned max_clock_mhz;
  uint64_t global_mem_bytes;
  uint64_t local_mem_bytes;
  uint64_t max_alloc_bytes;
  int has_fp16;              /* cl_khr_fp16 */
  int has_fp64;              /* cl_khr_fp64 or __opencl_c_fp64 */
} m2pt_device_info;

/* Lists every device of every OpenCL platform, in selector order.
 * Writes up to `capacity` entries to `infos` (may be NULL when capacity is 0)
 * and the total number found to `*count`; call once with capacity 0 to size
 * the array. No device at all is M2PT_OK with *count = 0.
 * Errors: M2PT_ERR_INVALID_ARGUMENT (count NULL, infos NULL with capacity > 0),
 * M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_device_list(m2pt_device_info *infos, size_t capacity,
                                      size_t *count);

/* Resolves a selector the way m2pt_context_create does and writes the position
 * of the chosen device in m2pt_device_list's order to `*index`.
 * `selector` NULL means: $M2PT_DEVICE if set and non-empty, else the first
 * GPU, else the first CPU, else the first device. A selector is "P:D"
 * (platform and device index), "gpu", "cpu", or a case-insensitive substring
 * of the device name. An explicit empty selector is M2PT_ERR_INVALID_ARGUMENT.
 * A selector that matches nothing is M2PT_ERR_DEVICE_NOT_FOUND, and the
 * message (m2pt_last_error(NULL)) lists the devices found. */
M2PT_API m2pt_status m2pt_device_select(const char *selector, size_t *index);

/* How the on-disk program binary cache is used. */
typedef enum m2pt_binary_cache {
  M2PT_BINARY_CACHE_AUTO = 0, /* the platform's measured default (see README) */
  M2PT_BINARY_CACHE_ON,
  M2PT_BINARY_CACHE_OFF,
} m2pt_binary_cache;

/* Context flags. */
#define M2PT_CONTEXT_PROFILING 1u /* time m2pt's own kernels with OpenCL events */
/* Run GEMMs through CLBlast on every device, as does $M2PT_HOST_BLAS=off.
 * Without it, a CPU device's GEMMs run on the host, through oneDNN or
 * OpenBLAS, on mapped buffers; see m2pt_context_gemm_backend. */
#define M2PT_CONTEXT_CLBLAST 2u

/* Options of m2pt_context_create and m2pt_context_wrap (a NULL pointer is
 * the default). Start from m2pt_context_options_default() and change the
 * fields you need: it sets struct_size to the size this header gives the
 * struct, so a later m2pt that appends fields still reads an older caller's
 * struct (the fields it lacks take their defaults), and a struct whose
 * struct_size was never set (smaller than this struct
 * as m2pt 0.2 first released it) is refused instead of read as garbage. */
typedef struct m2pt_context_options {
  size_t struct_size;       /* sizeof(m2pt_context_options), as compiled */
  const char *device;       /* selector, see m2pt_device_select; NULL = default */
  const char *cache_dir;    /* NULL: $M2PT_CACHE_DIR, else $XDG_CACHE_HOME/m2pt,
                               else ~/.cache/m2pt; "off" disables the disk cache */
  m2pt_binary_cache binary_cache;
  unsigned flags;           /* M2PT_CONTEXT_* */
} m2pt_context_options;

/* The default options: default device and cache directory, binary cache
 * AUTO, no flags. Inline, so struct_size is the caller's sizeof. */
static inline m2pt_context_options m2pt_context_options_default(void)
{
  const m2pt_context_options o = {sizeof(m2pt_context_options), NULL, NULL,
                                  M2PT_BINARY_CACHE_AUTO, 0u};
  return o;
}

/* Creates a context on the selected device with its own OpenCL context and
 * in-order queue. `options` may be NULL. On success the caller owns *ctx and
 * frees it with m2pt_context_destroy. On failure *ctx is NULL and
 * m2pt_last_error(NULL) says why. The first context (created or wrapped)
 * whose GEMMs could run on oneDNN loads it, and before that sets
 * OMP_WAIT_POLICY=passive and GOMP_SPINCOUNT=10000 (idle OpenMP threads
 * watch for work about 0.1 ms, then sleep) in the process environment where
 * both are unset and libgomp not yet loaded (setenv: no other thread should
 * read or change the environment meanwhile).
 * Errors: M2PT_ERR_INVALID_ARGUMENT (ctx NULL, struct_size not set, unknown
 * binary_cache value or flags, empty selector, a malformed $M2PT_QUIRKS),
 * M2PT_ERR_UNSUPPORTED (options from a newer m2pt than this library:
 * struct_size larger than it knows; $M2PT_QUIRKS names a GEMM backend this
 * build lacks), M2PT_ERR_DEVICE_NOT_FOUND, M2PT_ERR_OPENCL,
 * M2PT_ERR_OUT_OF_MEMORY. */
M2PT_API m2pt_status m2pt_context_create(const m2pt_context_options *options,
                                         m2pt_context **ctx);

/* Destroys a context and what it owns. Every tensor and layer made with it
 * must be destroyed first. OpenCL objects given to m2pt_context_wrap are not
 * released. Accepts NULL. */
M2PT_API void m2pt_context_destroy(m2pt_context *ctx);

/* Describes the context's device. Errors: M2PT_ERR_INVALID_ARGUMENT. */
M2PT_API m2pt_status m2pt_context_device_info(const m2pt_context *ctx,
                                              m2pt_device_info *info);

/* Waits until all work enqueued on the context has finished.
 * Errors: M2PT_ERR_INVALID_ARGUMENT, M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_context_finish(m2pt_context *ctx);

/* The detailed message of the last failed call on `ctx` (argument, shapes,
 * OpenCL or CLBlast error name, kernel build log), or "" if none failed.
 * With ctx NULL: the last failure on this thread of a call that had no
 * context (m2pt_context_create, m2pt_device_list, m2pt_device_select).
 * The string stays valid until the next failing call on the same context
 * (or thread). Never NULL. */
M2PT_API const char *m2pt_last_error(const m2pt_context *ctx);

/* Counters of what a context has done since creation (or the last reset). */
typedef struct m2pt_stats {
  uint64_t programs_built;       /* compiled from source */
  uint64_t programs_loaded;      /* loaded from the on-disk binary cache */
  uint64_t program_memory_hits;  /* served by the in-memory program cache */
  uint64_t binaries_written;     /* binaries stored to the disk cache */
  uint64_t binaries_rejected;    /* disk cache entries found corrupt or stale */
  uint64_t cache_write_failures; /* disk cache writes that failed (harmless) */
  uint64_t device_allocations;   /* device buffers created */
  uint64_t device_bytes_allocated;
  uint64_t device_bytes_live;    /* bytes in device buffers not yet freed */
  uint64_t device_bytes_peak;    /* high-water mark of device_bytes_live */
} m2pt_stats;

/* Copies the context's counters. Errors: M2PT_ERR_INVALID_ARGUMENT. */
M2PT_API m2pt_status m2pt_context_stats(const m2pt_context *ctx, m2pt_stats *stats);

/* Frees the context's workspace (the scratch buffers that ops and blocks
 * keep for reuse) after the queue has finished; the next call that needs
 * scratch allocates it again. What a block's training forward saved there
 * goes too: m2pt_block_backward then needs a new training forward. The
 * threads of CPU devices' host paths that the context started stop too
 * (started again when next needed; OpenMP's are the runtime's). Errors: M2PT_ERR_INVALID_ARGUMENT, M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_context_trim(m2pt_context *ctx);

/* Zeroes the counters, except device_bytes_live; peak restarts from live. */
M2PT_API void m2pt_context_stats_reset(m2pt_context *ctx);

/* With M2PT_CONTEXT_PROFILING: waits for the queue, then writes the device
 * time in milliseconds of m2pt's own kernels enqueued since the last call
 * (OpenCL profiling events), and restarts the count (also
 * m2pt_context_kernel_times'). CLBlast's kernels are
 * not included (time those by wall clock around m2pt_context_finish).
 * Errors: M2PT_ERR_INVALID_ARGUMENT, M2PT_ERR_INVALID_STATE (no profiling),
 * M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_context_kernel_time(m2pt_context *ctx, double *ms);

/* Longest kernel name m2pt_kernel_time holds, with its terminating 0. */
#define M2PT_KERNEL_NAME_MAX 48
/* Kernel names m2pt_context_kernel_times tells apart (m2pt has about 40):
 * an array this long takes them all. */
#define M2PT_KERNEL_TIMES_MAX 96

/* The device time of one of m2pt's kernels (by its OpenCL name, e.g.
 * "m2pt_gelu_backward") over the launches counted. */
typedef struct m2pt_kernel_time {
  char name[M2PT_KERNEL_NAME_MAX];
  double ms;
  size_t launches;
} m2pt_kernel_time;

/* With M2PT_CONTEXT_PROFILING: m2pt_context_kernel_time's count split by
 * kernel: waits for the queue, then writes the kernels enqueued since
 * either function last read the count, the longest total first, into
 * out[0 .. capacity), and their number into *count (which may exceed
 * capacity: the rest are left out), and restarts the count. Beyond
 * M2PT_KERNEL_TIMES_MAX names, launches go under the last name, "(other)".
 * out may be NULL when capacity is 0. Errors: M2PT_ERR_INVALID_ARGUMENT,
 * M2PT_ERR_INVALID_STATE (no profiling), M2PT_ERR_OUT_OF_MEMORY,
 * M2PT_ERR_OPENCL. */
M2PT_API m2pt_status m2pt_context_kernel_times(m2pt_context *ctx, m2pt_kernel_time *out,
                                               size_t capacity, size_t *count);

/* What runs the context's GEMMs: "CLBlast", or on a CPU device, whose
 * buffers a host library reads in place, "oneDNN" or "OpenBLAS" (CLBlast on
 * PoCL reaches about a tenth of them). Static string; NULL for NULL. */
M2PT_API const char *m2pt_context_gemm_backend(const m2pt_context *ctx);

/* Where the CLBlast GEMM tuning applied to a context's device came from.
 * m2pt_context_create and m2pt_context_wrap apply, for the context's device:
 * nothing when its GEMMs run on the host (m2pt_context_gemm_backend:
 * CLBlast's parameters are process-wide, and such a context does not change
 * them; M2PT_TUNING_NONE, and the detail says so); nothing when $M2PT_TUNING
 * is "off"; else the device's result of m2pt-tune
 * stored under the cache directory (see cache_dir; "off" there skips the
 * store), <cache dir>/tuning/<device key>.json; else m2pt's measured default
 * for the device's class, if there is one (PoCL on CPUs). A store that cannot
 * be read or holds wrong types or values is ignored as a whole (never
 * trusted in part) and never fails the context. CLBlast keeps parameters per
 * device for the whole process, so a context made with $M2PT_TUNING=off after
 * one that applied a tuning to the same device still runs with it. */
typedef enum m2pt_tuning_source {
  M2PT_TUNING_NONE = 0,  /* nothing applied: CLBlast's own database */
  M2PT_TUNING_STORED,    /* the device's m2pt-tune result from the store */
  M2PT_TUNING_SHIPPED,   /* m2pt's measured default for this class of device */
  M2PT_TUNING_DISABLED,  /* $M2PT_TUNING is "off" */
} m2pt_tuning_source;

/* Says which tuning the context applied when it was created. `detail` may be
 * NULL; otherwise *detail is a one-line description owned by the context and
 * valid until it is destroyed: the store's path, the shipped default's name,
 * and, when a store or the shipped default was found but not applied, a
 * sentence starting with "warning:" that says which file and why (this is
 * m2pt's warning about a corrupt store: the library itself prints nothing;
 * m2pt-info shows it). Errors: M2PT_ERR_INVALID_ARGUMENT (ctx or source NULL). */
M2PT_API m2pt_status m2pt_context_tuning(const m2pt_context *ctx,
                                         m2pt_tuning_source *source,
                                         const char **detail);

#ifdef __cplusplus
}
#endif

#endif
