/* oneDNN, loaded when a CPU context first wants it rather than linked.
 *
 * Why: oneDNN's CPU runtime is OpenMP (Debian's libdnnl links libgomp),
 * whose idle threads spin for ~3 ms after each parallel region unless told
 * otherwise through OMP_WAIT_POLICY and GOMP_SPINCOUNT, which libgomp reads
 * once, when it is loaded. On a CPU device m2pt alternates oneDNN's GEMMs
 * with PoCL's kernels on the same cores, and a spinning worker takes a core
 * from them; a worker that sleeps at once must be woken for every GEMM,
 * 60-80 µs on these VMs. Loading oneDNN ourselves lets m2pt choose a short
 * spin (about 0.1 ms) before libgomp starts — only where the environment
 * sets neither variable and the process has not loaded libgomp already (an
 * application using OpenMP keeps its own settings). It also makes oneDNN
 * optional at run time: without its library the OpenBLAS backend runs. */
#ifndef M2PT_GEMM_ONEDNN_API_H
#define M2PT_GEMM_ONEDNN_API_H

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

/* The functions m2pt calls, each a field of m2pt_onednn_api named as the
 * function, with its prototype from oneDNN's headers. */
#define M2PT_ONEDNN_FUNCTIONS(X)                                                          \
  X(dnnl_engine_create) X(dnnl_engine_destroy) X(dnnl_matmul_desc_init)                 \
  X(dnnl_memory_create) X(dnnl_memory_desc_equal) X(dnnl_memory_desc_init_by_strides)   \
  X(dnnl_memory_desc_init_by_tag) X(dnnl_memory_destroy) X(dnnl_memory_get_memory_desc) \
  X(dnnl_post_ops_append_binary) X(dnnl_post_ops_append_eltwise)                        \
  X(dnnl_post_ops_append_sum) X(dnnl_post_ops_create) X(dnnl_post_ops_destroy)          \
  X(dnnl_primitive_attr_create) X(dnnl_primitive_attr_destroy)                          \
  X(dnnl_primitive_attr_set_output_scales) X(dnnl_primitive_attr_set_post_ops)          \
  X(dnnl_primitive_create) X(dnnl_primitive_desc_create) X(dnnl_primitive_desc_destroy) \
  X(dnnl_primitive_desc_query_md) X(dnnl_primitive_destroy) X(dnnl_primitive_execute)   \
  X(dnnl_reorder_primitive_desc_create) X(dnnl_status2str) X(dnnl_stream_create)        \
  X(dnnl_stream_destroy) X(dnnl_stream_wait) X(dnnl_memory_desc_get_size)

#define M2PT_ONEDNN_FIELD(f) __typeof__(f) *f;
typedef struct m2pt_onednn_api {
  M2PT_ONEDNN_FUNCTIONS(M2PT_ONEDNN_FIELD)
  /* The OpenMP runtime oneDNN brought (NULL where it was built on another
   * threading runtime): a primitive splits its work for the thread count
   * at its creation, which oneDNN's own cache keys by too. */
  int (*omp_get_max_threads)(void);
} m2pt_onednn_api;
#undef M2PT_ONEDNN_FIELD

/* Loads oneDNN once per process (thread-safe), first setting
 * OMP_WAIT_POLICY=passive and GOMP_SPINCOUNT=10000 as said above. Returns the functions, or NULL
 * with *why pointing at the reason (a static string). */
const m2pt_onednn_api *m2pt_onednn_load(const char **why);

#endif
