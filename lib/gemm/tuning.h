/* CLBlast GEMM tuning: the parameters of CLBlast's single-precision GEMM
 * kernels (Xgemm, XgemmDirect) and of its GEMM routine (the direct/indirect
 * switch) and their constraints (tuning_params.c), the per-device tuning
 * store (tuning_store.c), the defaults m2pt ships (tuning_defaults.c), and
 * applying a tuning to a device with CLBlastOverrideParameters
 * (tuning_apply.c).
 *
 * The store is one JSON file per device, <cache dir>/tuning/<key>.json, where
 * <key> is a 128-bit XXH3 of platform name and version, device name, vendor,
 * OpenCL version and driver version (the program cache's key without the
 * library version and source: a tuning outlives an m2pt upgrade). It is
 * written by m2pt-tune to a temporary file and renamed into place. Every value
 * read back is checked (a whole number in its kernel's range, the kernel's
 * constraints, the device's work-group and local-memory limits); a store that
 * fails any check is ignored as a whole and the context says why
 * (m2pt_context_tuning). */
#ifndef M2PT_GEMM_TUNING_H
#define M2PT_GEMM_TUNING_H

#include <stddef.h>

#include "core/cl.h"
#include "m2pt/context.h"

/* The kernels a tuning covers, in CLBlast's names (m2pt_tuning_kernel_name). */
typedef enum m2pt_tuning_kernel {
  M2PT_TK_XGEMM = 0,   /* "Xgemm": the indirect GEMM's main kernel */
  M2PT_TK_DIRECT,      /* "XgemmDirect": the direct GEMM kernel */
  M2PT_TK_ROUTINE,     /* "GemmRoutine": XGEMM_MIN_INDIRECT_SIZE */
  M2PT_TK_COUNT
} m2pt_tuning_kernel;

/* Xgemm's parameters, in CLBlast 1.5's database order. */
enum {
  M2PT_XG_GEMMK, M2PT_XG_KREG, M2PT_XG_KWG, M2PT_XG_KWI, M2PT_XG_MDIMA, M2PT_XG_MDIMC,
  M2PT_XG_MWG, M2PT_XG_NDIMB, M2PT_XG_NDIMC, M2PT_XG_NWG, M2PT_XG_SA, M2PT_XG_SB,
  M2PT_XG_STRM, M2PT_XG_STRN, M2PT_XG_VWM, M2PT_XG_VWN, M2PT_XG_COUNT
};

/* XgemmDirect's parameters, in CLBlast 1.5's database order. */
enum {
  M2PT_XD_KWID, M2PT_XD_MDIMAD, M2PT_XD_MDIMCD, M2PT_XD_NDIMBD, M2PT_XD_NDIMCD, M2PT_XD_PADA,
  M2PT_XD_PADB, M2PT_XD_VWMD, M2PT_XD_VWND, M2PT_XD_WGD, M2PT_XD_COUNT
};

#define M2PT_TUNING_MAX_PARAMS M2PT_XG_COUNT

/* The largest XGEMM_MIN_INDIRECT_SIZE accepted: CLBlast cubes it in a
 * size_t, and 2^16 already sends every GEMM that fits a device direct. */
#define M2PT_TUNING_MAX_MIN_INDIRECT 65536u

/* A tuning: any subset of the three kernels' parameter sets. */
typedef struct m2pt_tuning {
  unsigned present;                 /* bit (1u << m2pt_tuning_kernel) per set given */
  size_t xgemm[M2PT_XG_COUNT];
  size_t direct[M2PT_XD_COUNT];
  size_t min_indirect;              /* GemmRoutine's XGEMM_MIN_INDIRECT_SIZE */
} m2pt_tuning;

/* Where a tuning came from and how it was measured (the store's
 * "provenance" object; strings are empty and numbers 0 when unknown). */
typedef struct m2pt_tuning_provenance {
  char date[32];               /* UTC, ISO 8601 */
  char m2pt_version[32];
  char tool[64];               /* "m2pt-tune" */
  char shapes[256];            /* "197x768x2304,..." (rows x in x out) */
  double budget_s;
  double spent_s;
  unsigned candidates;         /* parameter sets measured */
  double gflops_before;        /* the shapes' summed flops over summed time */
  double gflops_after;
} m2pt_tuning_provenance;

/* The device limits a tuning must respect. */
typedef struct m2pt_tuning_limits {
  size_t local_mem_bytes;
  size_t max_work_group;
  size_t max_item[2];          /* CL_DEVICE_MAX_WORK_ITEM_SIZES[0..1] */
} m2pt_tuning_limits;

const char *m2pt_tuning_kernel_name(m2pt_tuning_kernel kernel);
size_t m2pt_tuning_param_count(m2pt_tuning_kernel kernel);
/* The parameter names of a kernel, m2pt_tuning_param_count of them. */
const char *const *m2pt_tuning_param_names(m2pt_tuning_kernel kernel);
/* Pointer to a kernel's values inside t. */
size_t *m2pt_tuning_values(m2pt_tuning *t, m2pt_tuning_kernel kernel);
const size_t *m2pt_tuning_values_const(const m2pt_tuning *t, m2pt_tuning_kernel kernel);

/* The values a parameter may take (m2pt-tune's search space and the store's
 * range check): writes up to `capacity` of them, returns how many there are. */
size_t m2pt_tuning_param_choices(m2pt_tuning_kernel kernel, size_t param, size_t *choices,
                                 size_t capacity);

/* The limits of ctx's device; generous defaults where the device says nothing. */
void m2pt_tuning_limits_of(const m2pt_context *ctx, m2pt_tuning_limits *limits);

/* Checks one kernel's set of t against its value ranges, CLBlast's kernel
 * constraints (those of CLBlast's own tuners) and the limits (NULL: none).
 * Returns NULL when it holds, else a static description of the first failure. */
const char *m2pt_tuning_check(const m2pt_tuning *t, m2pt_tuning_kernel kernel,
                              const m2pt_tuning_limits *limits);

/* Hands every set present in t to CLBlastOverrideParameters for `device`
 * (single precision), holding CLBlast's lock alone (clblast_lock.h). Returns 0, or
 * -1 with a message in why[0..size). */
int m2pt_tuning_apply(cl_device_id device, const m2pt_tuning *t, char *why, size_t size);

/* The store's file name for a device: "<dir>/tuning/<key>.json" into buf
 * ("" when it does not fit). */
void m2pt_tuning_store_path(const char *dir, const m2pt_device_info *info, char *buf,
                            size_t size);

typedef enum m2pt_tuning_read {
  M2PT_TUNING_READ_OK,
  M2PT_TUNING_READ_MISSING,   /* no file */
  M2PT_TUNING_READ_INVALID,   /* unreadable, not JSON, wrong types or values */
} m2pt_tuning_read;

/* A small regular file's whole text, NUL-terminated (free it), or NULL with
 * why[0..size) saying why and *missing set when it does not exist. A FIFO,
 * device or directory is refused without blocking; so is a file over
 * max_bytes. For the store and m2pt-tune's search state. */
char *m2pt_tuning_read_text(const char *path, size_t max_bytes, int *missing, char *why,
                            size_t size);

/* Reads and checks a store file (limits NULL: ranges and constraints only).
 * On INVALID, why says what is wrong. `prov` may be NULL. */
m2pt_tuning_read m2pt_tuning_store_read(const char *path, const m2pt_tuning_limits *limits,
                                        m2pt_tuning *t, m2pt_tuning_provenance *prov,
                                        char *why, size_t size);

/* Writes a store file for `info`'s device atomically (m2pt_replace_file),
 * creating directories as needed. Errors (message in m2pt_last_error(NULL)):
 * M2PT_ERR_IO, M2PT_ERR_OUT_OF_MEMORY. */
m2pt_status m2pt_tuning_store_write(const char *path, const m2pt_device_info *info,
                            const m2pt_tuning *t, const m2pt_tuning_provenance *prov);

/* The measured default m2pt ships for the device's class (tuning_defaults.c:
 * PoCL on CPUs), or NULL; *label names it. */
const m2pt_tuning *m2pt_tuning_shipped(const m2pt_device_info *info, const char **label);

struct m2pt_gemm_context;

/* Applied when a context whose GEMMs run on CLBlast is created (clblast.c):
 * nothing with M2PT_TUNING=off; else the device's store under cache_dir
 * (may be NULL), else the shipped default (tuning_defaults.c). Records the
 * outcome in g's tuning_source and tuning_detail; never fails the context. */
void m2pt_tuning_context_init(m2pt_context *ctx, const char *cache_dir,
                              struct m2pt_gemm_context *g);

#endif
