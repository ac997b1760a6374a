/* CLBlast's single-precision GEMM parameters as m2pt tunes them: the
 * kernels' parameter lists in CLBlast 1.5's database order, the values each
 * may take (m2pt-tune's search space, the store's range check), and the
 * constraints CLBlast's kernels put on them (those of CLBlast's own tuners)
 * and the device's limits. */
#include "tuning.h"

#include <stddef.h>

#include "core/context_impl.h"

static const char *const kernel_names[M2PT_TK_COUNT] = {"Xgemm", "XgemmDirect", "GemmRoutine"};

static const char *const xgemm_names[M2PT_XG_COUNT] = {
    "GEMMK", "KREG", "KWG",  "KWI",  "MDIMA", "MDIMC", "MWG", "NDIMB",
    "NDIMC", "NWG",  "SA",   "SB",   "STRM",  "STRN",  "VWM", "VWN"};

static const char *const direct_names[M2PT_XD_COUNT] = {
    "KWID", "MDIMAD", "MDIMCD", "NDIMBD", "NDIMCD", "PADA", "PADB", "VWMD", "VWND", "WGD"};

static const char *const routine_names[1] = {"XGEMM_MIN_INDIRECT_SIZE"};

const char *m2pt_tuning_kernel_name(m2pt_tuning_kernel kernel)
{
  return (unsigned)kernel < M2PT_TK_COUNT ? kernel_names[kernel] : "?";
}

size_t m2pt_tuning_param_count(m2pt_tuning_kernel kernel)
{
  switch (kernel) {
  case M2PT_TK_XGEMM: return M2PT_XG_COUNT;
  case M2PT_TK_DIRECT: return M2PT_XD_COUNT;
  case M2PT_TK_ROUTINE: return 1;
  case M2PT_TK_COUNT: break;
  }
  return 0;
}

const char *const *m2pt_tuning_param_names(m2pt_tuning_kernel kernel)
{
  switch (kernel) {
  case M2PT_TK_XGEMM: return xgemm_names;
  case M2PT_TK_DIRECT: return direct_names;
  case M2PT_TK_ROUTINE: return routine_names;
  case M2PT_TK_COUNT: break;
  }
  return NULL;
}

/* Where a kernel's values sit in m2pt_tuning, for both accessors below;
 * 0 (the offset of `present`) for none. */
static size_t values_offset(m2pt_tuning_kernel kernel)
{
  switch (kernel) {
  case M2PT_TK_XGEMM: return offsetof(m2pt_tuning, xgemm);
  case M2PT_TK_DIRECT: return offsetof(m2pt_tuning, direct);
  case M2PT_TK_ROUTINE: return offsetof(m2pt_tuning, min_indirect);
  case M2PT_TK_COUNT: break;
  }
  return 0;
}

size_t *m2pt_tuning_values(m2pt_tuning *t, m2pt_tuning_kernel kernel)
{
  const size_t at = values_offset(kernel);
  return at ? (size_t *)(void *)((char *)t + at) : NULL;
}

const size_t *m2pt_tuning_values_const(const m2pt_tuning *t, m2pt_tuning_kernel kernel)
{
  const size_t at = values_offset(kernel);
  return at ? (const size_t *)(const void *)((const char *)t + at) : NULL;
}

/* Powers of two from `lo` to `hi` into choices. */
static size_t powers(size_t lo, size_t hi, size_t *choices, size_t capacity)
{
  size_t n = 0;
  for (size_t v = lo; v <= hi; v *= 2, n++)
    if (n < capacity)
      choices[n] = v;
  return n;
}

/* 0 and 1 into choices. */
static size_t flags(size_t *choices, size_t capacity)
{
  for (size_t i = 0; i < 2 && i < capacity; i++)
    choices[i] = i;
  return 2;
}

size_t m2pt_tuning_param_choices(m2pt_tuning_kernel kernel, size_t param, size_t *choices,
                                 size_t capacity)
{
  if (kernel == M2PT_TK_XGEMM) {
    switch (param) {
    case M2PT_XG_GEMMK: case M2PT_XG_SA: case M2PT_XG_SB: case M2PT_XG_STRM: case M2PT_XG_STRN:
      return flags(choices, capacity);
    case M2PT_XG_KREG: case M2PT_XG_KWI: case M2PT_XG_VWM: case M2PT_XG_VWN:
      return powers(1, 16, choices, capacity);
    case M2PT_XG_KWG: case M2PT_XG_MDIMA: case M2PT_XG_MDIMC: case M2PT_XG_NDIMB:
    case M2PT_XG_NDIMC:
      return powers(1, 64, choices, capacity);
    case M2PT_XG_MWG: case M2PT_XG_NWG:
      return powers(1, 256, choices, capacity);
    default: return 0;
    }
  }
  if (kernel == M2PT_TK_DIRECT) {
    switch (param) {
    case M2PT_XD_PADA: case M2PT_XD_PADB:
      return flags(choices, capacity);
    case M2PT_XD_VWMD: case M2PT_XD_VWND:
      return powers(1, 16, choices, capacity);
    case M2PT_XD_KWID:
      return powers(1, 32, choices, capacity);
    case M2PT_XD_MDIMAD: case M2PT_XD_MDIMCD: case M2PT_XD_NDIMBD: case M2PT_XD_NDIMCD:
      return powers(1, 64, choices, capacity);
    case M2PT_XD_WGD:
      return powers(1, 256, choices, capacity);
    default: return 0;
    }
  }
  if (kernel == M2PT_TK_ROUTINE && param == 0) {
    /* The search's choices; the store accepts any whole number up to
     * M2PT_TUNING_MAX_MIN_INDIRECT. */
    static const size_t sizes[] = {64, 128, 256, 384, 512, 640, 768, 832, 1024, 1536, 2048};
    const size_t n = sizeof sizes / sizeof sizes[0];
    for (size_t i = 0; i < n && i < capacity; i++)
      choices[i] = sizes[i];
    return n;
  }
  return 0;
}

void m2pt_tuning_limits_of(const m2pt_context *ctx, m2pt_tuning_limits *limits)
{
  limits->local_mem_bytes = ctx->info.local_mem_bytes ? (size_t)ctx->info.local_mem_bytes : 16384;
  limits->max_work_group = ctx->max_work_group ? ctx->max_work_group : 64;
  size_t items[3] = {0, 0, 0};
  cl_uint dims = 0;
  if (clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_ITEM_DIMENSIONS, sizeof dims, &dims,
                      NULL) == CL_SUCCESS &&
      dims >= 2 && dims <= 3 &&
      clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_ITEM_SIZES, dims * sizeof items[0], items,
                      NULL) == CL_SUCCESS) {
    limits->max_item[0] = items[0];
    limits->max_item[1] = items[1];
  } else {
    limits->max_item[0] = limits->max_item[1] = limits->max_work_group;
  }
}

static int in_choices(m2pt_tuning_kernel kernel, size_t param, size_t v)
{
  size_t choices[16];
  const size_t n = m2pt_tuning_param_choices(kernel, param, choices, 16);
  for (size_t i = 0; i < n && i < 16; i++)
    if (choices[i] == v)
      return 1;
  return 0;
}

/* (a·b)/c divides `of` exactly and c divides a·b: CLBlast's KDIMA-style
 * constraints, where a fraction would break the kernel's loads. */
static int divides_product(size_t of, size_t a, size_t b, size_t c)
{
  return (a * b) % c == 0 && of % ((a * b) / c) == 0;
}

static int work_group_fits(size_t m, size_t n, const m2pt_tuning_limits *limits)
{
  return !limits || (m * n <= limits->max_work_group && m <= limits->max_item[0] &&
                     n <= limits->max_item[1]);
}

static const char *check_xgemm(const size_t *p, const m2pt_tuning_limits *limits)
{
  if (p[M2PT_XG_MWG] % (p[M2PT_XG_MDIMC] * p[M2PT_XG_VWM]) != 0)
    return "Xgemm: MWG is not a multiple of MDIMC*VWM";
  if (p[M2PT_XG_NWG] % (p[M2PT_XG_NDIMC] * p[M2PT_XG_VWN]) != 0)
    return "Xgemm: NWG is not a multiple of NDIMC*VWN";
  if (p[M2PT_XG_MWG] % (p[M2PT_XG_MDIMA] * p[M2PT_XG_VWM]) != 0)
    return "Xgemm: MWG is not a multiple of MDIMA*VWM";
  if (p[M2PT_XG_NWG] % (p[M2PT_XG_NDIMB] * p[M2PT_XG_VWN]) != 0)
    return "Xgemm: NWG is not a multiple of NDIMB*VWN";
  if (p[M2PT_XG_GEMMK] == 0) {
    if (p[M2PT_XG_KREG] != 1)
      return "Xgemm: KREG must be 1 with GEMMK 0";
    if (p[M2PT_XG_KWG] % p[M2PT_XG_KWI] != 0)
      return "Xgemm: KWG is not a multiple of KWI";
    if (!divides_product(p[M2PT_XG_KWG], p[M2PT_XG_MDIMC], p[M2PT_XG_NDIMC], p[M2PT_XG_MDIMA]))
      return "Xgemm: KWG is not a multiple of MDIMC*NDIMC/MDIMA";
    if (!divides_product(p[M2PT_XG_KWG], p[M2PT_XG_MDIMC], p[M2PT_XG_NDIMC], p[M2PT_XG_NDIMB]))
      return "Xgemm: KWG is not a multiple of MDIMC*NDIMC/NDIMB";
  } else {
    /* The 2-D register-tiled kernel (CLBlast's tuner variants 11 and 12). */
    if (p[M2PT_XG_KWG] != 1 || p[M2PT_XG_KWI] != 1)
      return "Xgemm: KWG and KWI must be 1 with GEMMK 1";
    if (p[M2PT_XG_SA] || p[M2PT_XG_SB] || p[M2PT_XG_STRM] || p[M2PT_XG_STRN])
      return "Xgemm: SA, SB, STRM and STRN must be 0 with GEMMK 1";
    if (p[M2PT_XG_MDIMA] != p[M2PT_XG_MDIMC] || p[M2PT_XG_NDIMB] != p[M2PT_XG_NDIMC])
      return "Xgemm: MDIMA must equal MDIMC and NDIMB NDIMC with GEMMK 1";
    if (p[M2PT_XG_KREG] % p[M2PT_XG_VWN] != 0)
      return "Xgemm: KREG is not a multiple of VWN";
  }
  if (!work_group_fits(p[M2PT_XG_MDIMC], p[M2PT_XG_NDIMC], limits))
    return "Xgemm: MDIMC*NDIMC exceeds the device's work-group size";
  const size_t local = (p[M2PT_XG_SA] * p[M2PT_XG_KWG] * p[M2PT_XG_MWG] +
                        p[M2PT_XG_SB] * p[M2PT_XG_KWG] * p[M2PT_XG_NWG]) * sizeof(float);
  if (limits && local > limits->local_mem_bytes)
    return "Xgemm: the tiles exceed the device's local memory";
  return NULL;
}

static const char *check_direct(const size_t *p, const m2pt_tuning_limits *limits)
{
  const size_t wgd = p[M2PT_XD_WGD];
  if (wgd % p[M2PT_XD_KWID] != 0)
    return "XgemmDirect: WGD is not a multiple of KWID";
  if (wgd % (p[M2PT_XD_MDIMCD] * p[M2PT_XD_VWMD]) != 0)
    return "XgemmDirect: WGD is not a multiple of MDIMCD*VWMD";
  if (wgd % (p[M2PT_XD_NDIMCD] * p[M2PT_XD_VWND]) != 0)
    return "XgemmDirect: WGD is not a multiple of NDIMCD*VWND";
  if (wgd % (p[M2PT_XD_MDIMAD] * p[M2PT_XD_VWMD]) != 0)
    return "XgemmDirect: WGD is not a multiple of MDIMAD*VWMD";
  if (wgd % (p[M2PT_XD_NDIMBD] * p[M2PT_XD_VWND]) != 0)
    return "XgemmDirect: WGD is not a multiple of NDIMBD*VWND";
  if (!divides_product(wgd, p[M2PT_XD_MDIMCD], p[M2PT_XD_NDIMCD], p[M2PT_XD_MDIMAD]))
    return "XgemmDirect: WGD is not a multiple of MDIMCD*NDIMCD/MDIMAD";
  if (!divides_product(wgd, p[M2PT_XD_MDIMCD], p[M2PT_XD_NDIMCD], p[M2PT_XD_NDIMBD]))
    return "XgemmDirect: WGD is not a multiple of MDIMCD*NDIMCD/NDIMBD";
  if (!work_group_fits(p[M2PT_XD_MDIMCD], p[M2PT_XD_NDIMCD], limits))
    return "XgemmDirect: MDIMCD*NDIMCD exceeds the device's work-group size";
  const size_t local =
      (wgd * (wgd + p[M2PT_XD_PADA]) + wgd * (wgd + p[M2PT_XD_PADB])) * sizeof(float);
  if (limits && local > limits->local_mem_bytes)
    return "XgemmDirect: the tiles exceed the device's local memory";
  return NULL;
}

const char *m2pt_tuning_check(const m2pt_tuning *t, m2pt_tuning_kernel kernel,
                              const m2pt_tuning_limits *limits)
{
  const size_t *p = m2pt_tuning_values_const(t, kernel);
  if (!p)
    return "unknown kernel";
  if (kernel == M2PT_TK_ROUTINE)
    return p[0] <= M2PT_TUNING_MAX_MIN_INDIRECT ? NULL : "GemmRoutine: XGEMM_MIN_INDIRECT_SIZE out of range";
  const size_t n = m2pt_tuning_param_count(kernel);
  for (size_t i = 0; i < n; i++)
    if (!in_choices(kernel, i, p[i]))
      return kernel == M2PT_TK_XGEMM ? "Xgemm: a value is out of its range"
                                     : "XgemmDirect: a value is out of its range";
  return kernel == M2PT_TK_XGEMM ? check_xgemm(p, limits) : check_direct(p, limits);
}

