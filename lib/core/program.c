#include "program.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binary_cache.h"
#include "context_impl.h"
#include "error.h"
#include "queue.h"

typedef struct kernel_entry {
  char *name;
  cl_kernel kernel;
} kernel_entry;

struct m2pt_program_entry {
  struct m2pt_program_entry *next;
  const char *text;       /* the embedded source (static storage) */
  size_t length;
  char *options;          /* caller's options, without the base options */
  cl_program program;
  int from_binary;        /* loaded from the disk cache, not built from source */
  kernel_entry *kernels;
  size_t kernel_count;
};

static struct m2pt_program_entry *find_entry(m2pt_context *ctx, const m2pt_cl_source *src,
                                             const char *options)
{
  for (struct m2pt_program_entry *e = ctx->programs; e; e = e->next)
    if (e->length == src->length && strcmp(e->options, options) == 0 &&
        (e->text == src->text || memcmp(e->text, src->text, src->length) == 0))
      return e;
  return NULL;
}

/* Builds `program`; on failure the message carries the build log. */
static m2pt_status build(m2pt_context *ctx, cl_program program, const m2pt_cl_source *src,
                         const char *options)
{
  const cl_int err = clBuildProgram(program, 1, &ctx->device, options, NULL, NULL);
  if (err == CL_SUCCESS)
    return M2PT_OK;
  m2pt_status status = m2pt_fail(ctx, M2PT_ERR_KERNEL_BUILD,
                                 "building cl/%s with options \"%s\" failed: %s (%d)",
                                 src->name, options, m2pt_cl_error_name(err), (int)err);
  size_t log_size = 0;
  if (clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_size) ==
          CL_SUCCESS && log_size > 1) {
    char *log = malloc(log_size);
    if (log && clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, log_size, log,
                                     NULL) == CL_SUCCESS) {
      log[log_size - 1] = '\0';
      m2pt_error_append(ctx, "\nbuild log:\n%s", log);
    }
    free(log);
  }
  return status;
}

/* Tries the disk cache; returns a built program or NULL. */
static cl_program load_cached(m2pt_context *ctx, const char *key, const char *options)
{
  unsigned char *binary = NULL;
  size_t size = 0;
  const m2pt_cache_lookup lookup = m2pt_binary_cache_read(ctx->cache_dir, key, &binary, &size);
  if (lookup == M2PT_CACHE_MISS)
    return NULL;
  if (lookup == M2PT_CACHE_CORRUPT) {
    ctx->stats.binaries_rejected++;
    return NULL;
  }
  const unsigned char *bins[1] = {binary};
  cl_int bin_status = CL_SUCCESS, err = CL_SUCCESS;
  cl_program program =
      clCreateProgramWithBinary(ctx->cl, 1, &ctx->device, &size, bins, &bin_status, &err);
  free(binary);
  if (err == CL_SUCCESS && bin_status == CL_SUCCESS &&
      clBuildProgram(program, 1, &ctx->device, options, NULL, NULL) == CL_SUCCESS) {
    ctx->stats.programs_loaded++;
    return program;
  }
  /* A binary the driver refuses (stale or damaged past the checksum's reach)
   * is rebuilt from source and overwritten. */
  if (program)
    clReleaseProgram(program);
  ctx->stats.binaries_rejected++;
  return NULL;
}

static void store_cached(m2pt_context *ctx, cl_program program, const char *key)
{
  size_t size = 0;
  if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) !=
          CL_SUCCESS || size == 0) {
    ctx->stats.cache_write_failures++;
    return;
  }
  unsigned char *binary = malloc(size);
  unsigned char *bins[1] = {binary};
  /* A failed store only costs speed and the call goes on to succeed, so the
   * writer's message must not replace the thread's last failure
   * (m2pt_last_error(NULL)). */
  char *kept = strdup(m2pt_thread_error());
  if (!binary ||
      clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) != CL_SUCCESS ||
      m2pt_binary_cache_write(ctx->cache_dir, key, binary, size) != M2PT_OK)
    ctx->stats.cache_write_failures++;
  else
    ctx->stats.binaries_written++;
  if (kept)
    snprintf(m2pt_thread_error(), M2PT_ERROR_CAPACITY, "%s", kept);
  free(kept);
  free(binary);
}

/* The options the program is built with: the context's base options, then
 * the caller's. */
static m2pt_status full_options(m2pt_context *ctx, const m2pt_cl_source *src,
                                const char *options, char *full, size_t size)
{
  const int n = snprintf(full, size, "%s %s", ctx->base_build_options, options);
  if (n < 0 || (size_t)n >= size)
    return m2pt_fail(ctx, M2PT_ERR_INVALID_ARGUMENT, "build options too long for cl/%s",
                     src->name);
  return M2PT_OK;
}

/* Compiles the source and stores the binary under `key` (when the disk cache
 * is on). */
static m2pt_status build_from_source(m2pt_context *ctx, const m2pt_cl_source *src,
                                     const char *full, const char *key, cl_program *out)
{
  cl_int err = CL_SUCCESS;
  const char *text = src->text;
  cl_program program = clCreateProgramWithSource(ctx->cl, 1, &text, &src->length, &err);
  const m2pt_status status = err == CL_SUCCESS
                                 ? build(ctx, program, src, full)
                                 : m2pt_fail_cl(ctx, err, "clCreateProgramWithSource");
  if (status != M2PT_OK) {
    if (program)
      clReleaseProgram(program);
    return status;
  }
  ctx->stats.programs_built++;
  if (ctx->cache_dir)
    store_cached(ctx, program, key);
  *out = program;
  return M2PT_OK;
}

m2pt_status m2pt_program_get(m2pt_context *ctx, const m2pt_cl_source *src,
                             const char *options, cl_program *out)
{
  if (!options)
    options = "";
  struct m2pt_program_entry *entry = find_entry(ctx, src, options);
  if (entry) {
    ctx->stats.program_memory_hits++;
    *out = entry->program;
    return M2PT_OK;
  }

  char full[1024];
  M2PT_TRY(full_options(ctx, src, options, full, sizeof full));
  entry = calloc(1, sizeof *entry);
  char *options_copy = malloc(strlen(options) + 1);
  if (!entry || !options_copy) {
    free(entry);
    free(options_copy);
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory building cl/%s",
                     src->name);
  }
  strcpy(options_copy, options);

  char key[M2PT_CACHE_KEY_CHARS] = "";
  cl_program program = NULL;
  if (ctx->cache_dir) {
    m2pt_binary_cache_key(ctx, src->text, src->length, full, key);
    program = load_cached(ctx, key, full);
  }
  entry->from_binary = program != NULL;
  if (!program) {
    const m2pt_status status = build_from_source(ctx, src, full, key, &program);
    if (status != M2PT_OK) {
      free(entry);
      free(options_copy);
      return status;
    }
  }
  entry->text = src->text;
  entry->length = src->length;
  entry->options = options_copy;
  entry->program = program;
  entry->next = ctx->programs;
  ctx->programs = entry;
  *out = program;
  return M2PT_OK;
}

static void release_kernels(struct m2pt_program_entry *e)
{
  for (size_t i = 0; i < e->kernel_count; i++) {
    clReleaseKernel(e->kernels[i].kernel);
    free(e->kernels[i].name);
  }
  e->kernel_count = 0;
}

/* Replaces a program loaded from the disk cache with one built from source,
 * and its entry on disk with the new binary. */
static m2pt_status rebuild_from_source(m2pt_context *ctx, struct m2pt_program_entry *entry,
                                       const m2pt_cl_source *src)
{
  char full[1024], key[M2PT_CACHE_KEY_CHARS];
  M2PT_TRY(full_options(ctx, src, entry->options, full, sizeof full));
  m2pt_binary_cache_key(ctx, src->text, src->length, full, key);
  cl_program program;
  M2PT_TRY(build_from_source(ctx, src, full, key, &program));
  ctx->stats.binaries_rejected++;
  release_kernels(entry);
  clReleaseProgram(entry->program);
  entry->program = program;
  entry->from_binary = 0;
  return M2PT_OK;
}

m2pt_status m2pt_kernel_get(m2pt_context *ctx, const m2pt_cl_source *src,
                            const char *options, const char *name, cl_kernel *out)
{
  cl_program program;
  M2PT_TRY(m2pt_program_get(ctx, src, options, &program));
  struct m2pt_program_entry *entry = find_entry(ctx, src, options ? options : "");
  for (size_t i = 0; i < entry->kernel_count; i++)
    if (strcmp(entry->kernels[i].name, name) == 0) {
      *out = entry->kernels[i].kernel;
      return M2PT_OK;
    }
  cl_int err = CL_SUCCESS;
  cl_kernel kernel = clCreateKernel(entry->program, name, &err);
  if (err == CL_INVALID_KERNEL_NAME && entry->from_binary) {
    /* Defence in depth: a cached binary that passed every check and built
     * yet lacks a kernel is not trusted either; the source decides. */
    M2PT_TRY(rebuild_from_source(ctx, entry, src));
    kernel = clCreateKernel(entry->program, name, &err);
  }
  if (err != CL_SUCCESS)
    return m2pt_fail(ctx, err == CL_INVALID_KERNEL_NAME ? M2PT_ERR_KERNEL_BUILD : M2PT_ERR_OPENCL,
                     "clCreateKernel(%s) from cl/%s: %s (%d)", name, src->name,
                     m2pt_cl_error_name(err), (int)err);
  kernel_entry *grown = realloc(entry->kernels, (entry->kernel_count + 1) * sizeof *grown);
  char *name_copy = malloc(strlen(name) + 1);
  if (grown)
    entry->kernels = grown;
  if (!grown || !name_copy) {
    free(name_copy);
    clReleaseKernel(kernel);
    return m2pt_fail(ctx, M2PT_ERR_OUT_OF_MEMORY, "out of host memory for kernel %s", name);
  }
  strcpy(name_copy, name);
  entry->kernels[entry->kernel_count].name = name_copy;
  entry->kernels[entry->kernel_count].kernel = kernel;
  entry->kernel_count++;
  *out = kernel;
  return M2PT_OK;
}

m2pt_status m2pt_kernel_group_limit(m2pt_context *ctx, const m2pt_cl_source *source,
                                    const char *options, const char *name, size_t *limit)
{
  cl_kernel kernel;
  M2PT_TRY(m2pt_kernel_get(ctx, source, options, name, &kernel));
  *limit = 0;
  M2PT_TRY_CL(ctx,
              clGetKernelWorkGroupInfo(kernel, ctx->device, CL_KERNEL_WORK_GROUP_SIZE,
                                       sizeof *limit, limit, NULL),
              name);
  return M2PT_OK;
}

m2pt_status m2pt_run_kernel(m2pt_context *ctx, const m2pt_cl_source *source,
                            const char *options, const char *name,
                            const m2pt_kernel_arg *args, size_t nargs, cl_uint dims,
                            const size_t *global, const size_t *local)
{
  cl_kernel kernel;
  M2PT_TRY(m2pt_kernel_get(ctx, source, options, name, &kernel));
  for (size_t i = 0; i < nargs; i++) {
    const cl_int err = clSetKernelArg(kernel, (cl_uint)i, args[i].size, args[i].value);
    if (err != CL_SUCCESS)
      return m2pt_fail(ctx, M2PT_ERR_OPENCL, "clSetKernelArg(%s, %zu): %s (%d)", name, i,
                       m2pt_cl_error_name(err), (int)err);
  }
  return m2pt_enqueue_kernel(ctx, kernel, dims, global, local, name);
}

void m2pt_program_cache_clear(m2pt_context *ctx)
{
  struct m2pt_program_entry *e = ctx->programs;
  while (e) {
    struct m2pt_program_entry *next = e->next;
    release_kernels(e);
    free(e->kernels);
    clReleaseProgram(e->program);
    free(e->options);
    free(e);
    e = next;
  }
  ctx->programs = NULL;
}
