#include "quirks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context_impl.h"
#include "common/host_attention.h"
#include "error.h"
#include "svm.h"

/* Platforms named by their CL_PLATFORM_NAME. */
#define OCLGRIND_PLATFORM "Oclgrind"

void m2pt_quirks_of_device(cl_device_id device, const m2pt_device_info *info, m2pt_quirks *q)
{
  memset(q, 0, sizeof *q);
  const int oclgrind = strstr(info->platform_name, OCLGRIND_PLATFORM) != NULL;
  q->fill_via_host = oclgrind;
  q->host_writes_new_buffers = oclgrind;
  q->layer_norm = info->is_cpu && !oclgrind ? M2PT_LAYER_NORM_ROWS : M2PT_LAYER_NORM_WORKGROUP;
  cl_uint lanes = 0;
  clGetDeviceInfo(device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof lanes, &lanes, NULL);
  q->gelu_vec = oclgrind ? 1 : info->is_cpu && lanes >= 16 ? 16 : 8;
  q->attention_vec = oclgrind ? 1 : info->is_cpu && lanes >= 16 ? 16 : 8;
  q->linear_grad_vec = !oclgrind;
  q->softmax_rows = info->is_cpu && !oclgrind;
  q->attention = M2PT_ATTENTION_AUTO;
  /* $M2PT_HOST_BLAS=off predates M2PT_QUIRKS' gemm=clblast and means the same. */
  const char *host_blas = getenv("M2PT_HOST_BLAS");
  q->gemm_on_host = info->is_cpu && !oclgrind && !(host_blas && strcmp(host_blas, "off") == 0);
  q->attention_kernel = !info->is_cpu || oclgrind ? M2PT_ATTENTION_KERNEL_TILES
                        : q->gemm_on_host && m2pt_host_attention_fast(M2PT_HOST_ATTENTION_DIM_HEAD)
                            ? M2PT_ATTENTION_KERNEL_HOST
                            : M2PT_ATTENTION_KERNEL_ROWS;
  /* host_svm needs the context's devices: m2pt_quirks_init sets it. */
  cl_device_fp_config fp = 0;
  clGetDeviceInfo(device, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL);
  q->correctly_rounded_divide_sqrt = (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
  /* Measured on PoCL 3.1, whose own kernel cache competes with ours
   * (README, "Program caches"): on there too; everywhere else it saves
   * every compile of a warm start. */
  q->binary_cache = 1;
}

/* One overridable field: its key, its values as text, and how each value
 * is stored. */
typedef struct key_values {
  const char *key;
  const char *values[4]; /* NULL-terminated when fewer */
  int stored[4];
} key_values;

enum {
  K_LAYER_NORM,
  K_GELU,
  K_ATTENTION,
  K_ATTENTION_KERNEL,
  K_ATTENTION_VEC,
  K_LINEAR_GRAD,
  K_SOFTMAX,
  K_FILL,
  K_NEW_BUFFERS,
  K_HOST_ACCESS,
  K_GEMM,
  K_COUNT
};

static const key_values keys[K_COUNT] = {
    [K_LAYER_NORM] = {"layer_norm", {"workgroup", "rows"},
                      {M2PT_LAYER_NORM_WORKGROUP, M2PT_LAYER_NORM_ROWS}},
    [K_GELU] = {"gelu", {"scalar", "float8", "float16"}, {1, 8, 16}},
    [K_ATTENTION] = {"attention", {"auto", "fused", "gemm"},
                     {M2PT_ATTENTION_AUTO, M2PT_ATTENTION_FUSED, M2PT_ATTENTION_GEMM}},
    [K_ATTENTION_KERNEL] = {"attention_kernel", {"tiles", "rows", "host"},
                            {M2PT_ATTENTION_KERNEL_TILES, M2PT_ATTENTION_KERNEL_ROWS,
                             M2PT_ATTENTION_KERNEL_HOST}},
    [K_ATTENTION_VEC] = {"attention_vec", {"1", "4", "8", "16"}, {1, 4, 8, 16}},
    [K_LINEAR_GRAD] = {"linear_grad", {"vector", "scalar"}, {1, 0}},
    [K_SOFTMAX] = {"softmax", {"workgroup", "rows"}, {0, 1}},
    [K_FILL] = {"fill", {"device", "host"}, {0, 1}},
    [K_NEW_BUFFERS] = {"new_buffers", {"plain", "host_written"}, {0, 1}},
    [K_HOST_ACCESS] = {"host_access", {"map", "svm"}, {0, 1}},
    /* Any name: lib/gemm knows its backends. */
    [K_GEMM] = {"gemm", {NULL}, {0}},
};

static void store(m2pt_quirks *q, int key, int value)
{
  switch (key) {
  case K_LAYER_NORM: q->layer_norm = (m2pt_layer_norm_variant)value; break;
  case K_GELU: q->gelu_vec = (unsigned)value; break;
  case K_ATTENTION: q->attention = (m2pt_attention_impl)value; break;
  case K_ATTENTION_KERNEL: q->attention_kernel = (m2pt_attention_kernel)value; break;
  case K_ATTENTION_VEC: q->attention_vec = (unsigned)value; break;
  case K_LINEAR_GRAD: q->linear_grad_vec = value; break;
  case K_SOFTMAX: q->softmax_rows = value; break;
  case K_FILL: q->fill_via_host = value; break;
  case K_NEW_BUFFERS: q->host_writes_new_buffers = value; break;
  case K_HOST_ACCESS: q->host_svm = value; break;
  }
}

/* "a|b|c" of a key's values into buf. */
static const char *value_list(const key_values *kv, char *buf, size_t size)
{
  buf[0] = '\0';
  for (int i = 0; i < 4 && kv->values[i]; i++)
    snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", i ? "|" : "", kv->values[i]);
  return buf;
}

/* Applies one "key=value" item of `len` characters to q. */
static int parse_item(const char *item, size_t len, unsigned *seen, m2pt_quirks *q, char *why,
                      size_t size)
{
  const char *eq = memchr(item, '=', len);
  if (!eq) {
    snprintf(why, size, "\"%.*s\" is not key=value", (int)len, item);
    return -1;
  }
  const size_t key_len = (size_t)(eq - item), value_len = len - key_len - 1;
  const char *value = eq + 1;
  int key = -1;
  for (int k = 0; k < K_COUNT; k++)
    if (strlen(keys[k].key) == key_len && memcmp(keys[k].key, item, key_len) == 0)
      key = k;
  if (key < 0) {
    snprintf(why, size,
             "unknown key \"%.*s\" (known: layer_norm, gelu, attention, attention_kernel, "
             "attention_vec, linear_grad, softmax, gemm, fill, new_buffers, host_access)",
             (int)key_len, item);
    return -1;
  }
  if (*seen & (1u << key)) {
    snprintf(why, size, "%s is given twice", keys[key].key);
    return -1;
  }
  *seen |= 1u << key;
  if (key == K_GEMM) {
    if (value_len == 0 || value_len >= sizeof q->gemm) {
      snprintf(why, size, "gemm=%.*s: a backend name of 1 to %zu characters is needed",
               (int)value_len, value, sizeof q->gemm - 1);
      return -1;
    }
    memcpy(q->gemm, value, value_len);
    q->gemm[value_len] = '\0';
    return 0;
  }
  for (int i = 0; i < 4 && keys[key].values[i]; i++)
    if (strlen(keys[key].values[i]) == value_len &&
        memcmp(keys[key].values[i], value, value_len) == 0) {
      store(q, key, keys[key].stored[i]);
      return 0;
    }
  char list[64];
  snprintf(why, size, "unknown value \"%.*s\" for %s (%s)", (int)value_len, value,
           keys[key].key, value_list(&keys[key], list, sizeof list));
  return -1;
}

int m2pt_quirks_parse(const char *spec, m2pt_quirks *q, char *why, size_t size)
{
  if (!spec)
    return 0;
  m2pt_quirks next = *q;
  unsigned seen = 0;
  for (const char *item = spec; *item;) {
    const char *comma = strchr(item, ',');
    const size_t len = comma ? (size_t)(comma - item) : strlen(item);
    if (parse_item(item, len, &seen, &next, why, size) != 0)
      return -1;
    item += len + (comma != NULL);
    if (comma && !*item) {
      snprintf(why, size, "a trailing comma");
      return -1;
    }
  }
  *q = next;
  return 0;
}

/* The override this thread's next contexts use (m2pt_quirks_override). */
static _Thread_local struct {
  int set;
  int too_long;
  char spec[512];
} thread_override;

void m2pt_quirks_override(const char *spec)
{
  thread_override.set = spec != NULL;
  thread_override.too_long = spec && strlen(spec) >= sizeof thread_override.spec;
  snprintf(thread_override.spec, sizeof thread_override.spec, "%s", spec ? spec : "");
}

m2pt_status m2pt_quirks_init(m2pt_context *ctx)
{
  m2pt_quirks_of_device(ctx->device, &ctx->info, &ctx->quirks);
  ctx->svm_offered = m2pt_svm_offered(ctx->cl);
  ctx->quirks.host_svm = ctx->quirks.gemm_on_host && ctx->svm_offered;
  /* Named as M2PT_QUIRKS in messages either way: the override stands in for it. */
  const char *spec = thread_override.set ? thread_override.spec : getenv("M2PT_QUIRKS");
  char why[256];
  if (thread_override.set && thread_override.too_long)
    return m2pt_fail(NULL, M2PT_ERR_INVALID_ARGUMENT,
                     "M2PT_QUIRKS (set by m2pt_quirks_override) is longer than %zu characters",
                     sizeof thread_override.spec - 1);
  if (m2pt_quirks_parse(spec, &ctx->quirks, why, sizeof why) != 0)
    return m2pt_fail(NULL, M2PT_ERR_INVALID_ARGUMENT, "M2PT_QUIRKS=%s: %s", spec, why);
  if (ctx->quirks.host_svm && !ctx->svm_offered)
    return m2pt_fail(NULL, M2PT_ERR_UNSUPPORTED,
                     "M2PT_QUIRKS=%s: host_access=svm needs fine-grained SVM buffers, which %s "
                     "(%s) or another device of its OpenCL context does not offer",
                     spec, ctx->info.name, ctx->info.device_version);
  return M2PT_OK;
}
