/* m2pt-bench: the peak suite, clpeak-style. The device's FMA throughput
 * (long chains of fma on float4 and float8 vectors, 8 independent chains a
 * work-item, enough work-items to fill the device) and its memory bandwidth
 * (a streaming read and a copy over buffers far larger than caches), each
 * kernel timed by profiling events on the bench context's own queue. The
 * best of each pair is the device's peak, the denominator of "% of peak". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define MIB (1024.0 * 1024.0)
#define READ_PER_ITEM 16 /* float4 loads per work-item of the read kernel */

/* x = fma(x, m, c) converges to c / (1 - m) for m = 0.5 and stays a normal
 * number; m and c are arguments, so nothing folds. PEAK_SCALAR (on Oclgrind,
 * whose uninitialised-value checker crashes on vector values, as the fused
 * attention kernel found) makes every vector a float: there the suite checks
 * the kernels and measures nothing. */
static const char peak_source[] =
    "#ifdef PEAK_SCALAR\n"
    "#define F4 float\n"
    "#define F8 float\n"
    "#define SUM4(s) (s)\n"
    "#define SUM8(s) (s)\n"
    "#else\n"
    "#define F4 float4\n"
    "#define F8 float8\n"
    "#define SUM4(s) (((s).x + (s).y) + ((s).z + (s).w))\n"
    "#define SUM8(s) (SUM4((s).lo) + SUM4((s).hi))\n"
    "#endif\n"
    "#define CHAINS(M, C) \\\n"
    "  x0 = fma(x0, M, C); x1 = fma(x1, M, C); x2 = fma(x2, M, C); x3 = fma(x3, M, C); \\\n"
    "  x4 = fma(x4, M, C); x5 = fma(x5, M, C); x6 = fma(x6, M, C); x7 = fma(x7, M, C);\n"
    "#define FMA_KERNEL(NAME, T, SUM) \\\n"
    "__kernel void NAME(__global float *out, float ms, float cs) { \\\n"
    "  const float g = (float)get_global_id(0) * 1e-6f; \\\n"
    "  const T m = (T)(ms), c = (T)(cs); \\\n"
    "  T x0 = (T)(g), x1 = x0 + 1.0f, x2 = x0 + 2.0f, x3 = x0 + 3.0f; \\\n"
    "  T x4 = x0 + 4.0f, x5 = x0 + 5.0f, x6 = x0 + 6.0f, x7 = x0 + 7.0f; \\\n"
    "  for (int i = 0; i < PEAK_ITERS; i++) { CHAINS(m, c) } \\\n"
    "  const T s = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)); \\\n"
    "  out[get_global_id(0)] = SUM(s); \\\n"
    "}\n"
    "FMA_KERNEL(fma_float4, F4, SUM4)\n"
    "FMA_KERNEL(fma_float8, F8, SUM8)\n"
    "__kernel void copy_float4(__global const F4 *src, __global F4 *dst) {\n"
    "  dst[get_global_id(0)] = src[get_global_id(0)];\n"
    "}\n"
    "__kernel void read_float4(__global const F4 *src, __global float *out) {\n"
    "  const size_t n = get_global_size(0);\n"
    "  size_t i = get_global_id(0);\n"
    "  F4 a = src[i], b = src[i + n], c = src[i + 2 * n], d = src[i + 3 * n];\n"
    "  for (int k = 4; k < READ_PER_ITEM; k += 4) {\n"
    "    i += 4 * n;\n"
    "    a += src[i]; b += src[i + n]; c += src[i + 2 * n]; d += src[i + 3 * n];\n"
    "  }\n"
    "  out[get_global_id(0)] = SUM4((a + b) + (c + d));\n"
    "}\n";

enum { K_FMA4, K_FMA8, K_READ, K_COPY, KERNELS };

typedef struct peak_bench {
  m2pt_context *ctx;
  cl_command_queue queue;
  cl_program program;
  cl_kernel kernel[KERNELS];
  cl_mem src, dst, out; /* bandwidth buffers, FMA and read results */
  size_t fma_items, iters, bytes;
  int scalar;     /* PEAK_SCALAR: Oclgrind */
  size_t element; /* bytes of a copy_float4/read_float4 element */
} peak_bench;

typedef struct peak_state {
  peak_bench *pb;
  int which;
  size_t global;
} peak_state;

static m2pt_status run_peak(void *state)
{
  const peak_state *p = state;
  const cl_int err = clEnqueueNDRangeKernel(p->pb->queue, p->pb->kernel[p->which], 1, NULL,
                                            &p->global, NULL, 0, NULL, NULL);
  if (err != CL_SUCCESS)
    return bench_fail(M2PT_ERR_OPENCL, "peak: clEnqueueNDRangeKernel: OpenCL error %d",
                      (int)err);
  return bench_finish(p->pb->ctx, M2PT_OK);
}

/* Sizes: the smoke test's tiny ones, or enough work-items to fill the
 * device, chains long enough for milliseconds a run, and buffers of up to
 * 256 MiB (128 MiB for a quick measurement) within the device's limits. */
static void peak_sizes(const m2pt_device_info *info, const bench_options *o, int report,
                       peak_bench *pb)
{
  pb->scalar = strstr(info->platform_name, "Oclgrind") != NULL;
  pb->element = pb->scalar ? 4 : 16;
  if (o->smoke) {
    pb->fma_items = 64;
    pb->iters = 8;
    pb->bytes = 64 * 1024;
    return;
  }
  const size_t cu = info->compute_units ? info->compute_units : 1;
  pb->fma_items = cu * (info->is_gpu ? 4096 : 2048);
  pb->iters = info->is_gpu ? 1024 : 2048;
  uint64_t bytes = (uint64_t)((report && !o->quick ? 256 : 128) * MIB);
  if (info->max_alloc_bytes && bytes > info->max_alloc_bytes)
    bytes = info->max_alloc_bytes;
  if (info->global_mem_bytes && bytes > info->global_mem_bytes / 4)
    bytes = info->global_mem_bytes / 4;
  const size_t unit = 16 * READ_PER_ITEM; /* float4 × READ_PER_ITEM */
  pb->bytes = (size_t)bytes / unit * unit;
}

static m2pt_status build(peak_bench *pb)
{
  cl_context cl;
  cl_device_id device;
  cl_int err = clGetCommandQueueInfo(pb->queue, CL_QUEUE_CONTEXT, sizeof cl, &cl, NULL);
  if (err == CL_SUCCESS)
    err = clGetCommandQueueInfo(pb->queue, CL_QUEUE_DEVICE, sizeof device, &device, NULL);
  const char *src = peak_source;
  if (err == CL_SUCCESS)
    pb->program = clCreateProgramWithSource(cl, 1, &src, NULL, &err);
  char options[96];
  snprintf(options, sizeof options, "-DPEAK_ITERS=%zu -DREAD_PER_ITEM=%d%s", pb->iters,
           READ_PER_ITEM, pb->scalar ? " -DPEAK_SCALAR" : "");
  if (err == CL_SUCCESS)
    err = clBuildProgram(pb->program, 1, &device, options, NULL, NULL);
  if (err != CL_SUCCESS) {
    char log[4096] = "";
    if (pb->program)
      clGetProgramBuildInfo(pb->program, device, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log,
                            NULL);
    return bench_fail(M2PT_ERR_KERNEL_BUILD, "peak: building the kernels: OpenCL error %d%s%s",
                      (int)err, log[0] ? "\n" : "", log);
  }
  static const char *const names[KERNELS] = {"fma_float4", "fma_float8", "read_float4",
                                             "copy_float4"};
  for (int k = 0; k < KERNELS && err == CL_SUCCESS; k++)
    pb->kernel[k] = clCreateKernel(pb->program, names[k], &err);
  const size_t n_read = pb->bytes / (pb->element * READ_PER_ITEM);
  const size_t n_out = pb->fma_items > n_read ? pb->fma_items : n_read;
  if (err == CL_SUCCESS)
    pb->src = clCreateBuffer(cl, CL_MEM_READ_WRITE, pb->bytes, NULL, &err);
  if (err == CL_SUCCESS)
    pb->dst = clCreateBuffer(cl, CL_MEM_READ_WRITE, pb->bytes, NULL, &err);
  if (err == CL_SUCCESS)
    pb->out = clCreateBuffer(cl, CL_MEM_READ_WRITE, n_out * sizeof(float), NULL, &err);
  if (err != CL_SUCCESS)
    return bench_fail(M2PT_ERR_OPENCL, "peak: kernels and buffers: OpenCL error %d", (int)err);
  return M2PT_OK;
}

/* Writes the source buffer from the host (oclgrind counts a fill as no
 * initialisation, see README) and sets the kernels' arguments. */
static m2pt_status prepare(peak_bench *pb)
{
  float *zeros = calloc(pb->bytes, 1);
  if (!zeros)
    return bench_fail(M2PT_ERR_OUT_OF_MEMORY, "out of host memory");
  cl_int err = clEnqueueWriteBuffer(pb->queue, pb->src, CL_TRUE, 0, pb->bytes, zeros, 0, NULL,
                                    NULL);
  free(zeros);
  const float m = 0.5f, c = 1.0f;
  for (int k = K_FMA4; k <= K_FMA8 && err == CL_SUCCESS; k++) {
    err = clSetKernelArg(pb->kernel[k], 0, sizeof pb->out, &pb->out);
    if (err == CL_SUCCESS)
      err = clSetKernelArg(pb->kernel[k], 1, sizeof m, &m);
    if (err == CL_SUCCESS)
      err = clSetKernelArg(pb->kernel[k], 2, sizeof c, &c);
  }
  if (err == CL_SUCCESS)
    err = clSetKernelArg(pb->kernel[K_READ], 0, sizeof pb->src, &pb->src);
  if (err == CL_SUCCESS)
    err = clSetKernelArg(pb->kernel[K_READ], 1, sizeof pb->out, &pb->out);
  if (err == CL_SUCCESS)
    err = clSetKernelArg(pb->kernel[K_COPY], 0, sizeof pb->src, &pb->src);
  if (err == CL_SUCCESS)
    err = clSetKernelArg(pb->kernel[K_COPY], 1, sizeof pb->dst, &pb->dst);
  if (err != CL_SUCCESS)
    return bench_fail(M2PT_ERR_OPENCL, "peak: preparing the kernels: OpenCL error %d", (int)err);
  return M2PT_OK;
}

static void peak_destroy(peak_bench *pb)
{
  for (int k = 0; k < KERNELS; k++)
    if (pb->kernel[k])
      clReleaseKernel(pb->kernel[k]);
  if (pb->program)
    clReleaseProgram(pb->program);
  cl_mem bufs[3] = {pb->src, pb->dst, pb->out};
  for (int i = 0; i < 3; i++)
    if (bufs[i])
      clReleaseMemObject(bufs[i]);
}

static double max2(double a, double b)
{
  return a > b ? a : b;
}

static void report_peak(const peak_bench *pb, const bench_timing t[KERNELS],
                        const double flops[KERNELS], const double bytes[KERNELS])
{
  static const char *const names[KERNELS] = {"fma-float4", "fma-float8", "read", "copy"};
  char fma_shape[48], mem_shape[48];
  snprintf(fma_shape, sizeof fma_shape, "%zux%zu", pb->fma_items, pb->iters);
  snprintf(mem_shape, sizeof mem_shape, "%.4gMiB", (double)pb->bytes / MIB);
  for (int k = 0; k < KERNELS; k++) {
    const bench_row r = {.suite = "peak", .name = names[k],
                         .shape = k <= K_FMA8 ? fma_shape : mem_shape, .t = &t[k],
                         .flops = flops[k], .bytes = bytes[k]};
    bench_report(&r);
  }
}

m2pt_status bench_suite_peak(m2pt_context *ctx, const m2pt_device_info *info,
                             const bench_options *o, int report)
{
  peak_bench pb = {.ctx = ctx, .queue = bench_context_queue(ctx)};
  if (!pb.queue)
    return bench_fail(M2PT_ERR_INVALID_ARGUMENT, "peak: not a context of the bench");
  peak_sizes(info, o, report, &pb);
  bench_progress("peak: building the kernels, %.4g MiB buffers", (double)pb.bytes / MIB);
  m2pt_status s = build(&pb);
  if (s == M2PT_OK)
    s = prepare(&pb);
  const size_t n4 = pb.bytes / pb.element; /* elements of copy_float4 and read_float4 */
  peak_state st[KERNELS] = {
    {&pb, K_FMA4, pb.fma_items},
    {&pb, K_FMA8, pb.fma_items},
    {&pb, K_READ, n4 / READ_PER_ITEM},
    {&pb, K_COPY, n4},
  };
  const double chain_flops = 2.0 * 8.0 * (double)pb.fma_items * (double)pb.iters;
  const double flops[KERNELS] = {(pb.scalar ? 1 : 4) * chain_flops,
                                 (pb.scalar ? 1 : 8) * chain_flops, 0.0, 0.0};
  const double bytes[KERNELS] = {0.0, 0.0,
                                 (double)pb.bytes + (double)(n4 / READ_PER_ITEM) * 4.0,
                                 2.0 * (double)pb.bytes};
  bench_case cases[KERNELS];
  for (int k = 0; k < KERNELS; k++)
    cases[k] = (bench_case){run_peak, &st[k], ctx};
  bench_options runs = *o;
  if (!report) { /* a quick measurement for % of peak */
    runs.warmup = 1;
    runs.reps = o->smoke ? 1 : 3;
  }
  bench_timing t[KERNELS];
  if (s == M2PT_OK)
    s = bench_measure(cases, KERNELS, &runs, "peak: fma, read, copy", t);
  if (s == M2PT_OK) {
    const double gflops = max2(flops[K_FMA4] / (t[K_FMA4].median_ms * 1e6),
                               flops[K_FMA8] / (t[K_FMA8].median_ms * 1e6));
    const double gbps = max2(bytes[K_READ] / (t[K_READ].median_ms * 1e6),
                             bytes[K_COPY] / (t[K_COPY].median_ms * 1e6));
    bench_set_peak(gflops, gbps, !report);
    if (report)
      report_peak(&pb, t, flops, bytes);
  }
  peak_destroy(&pb);
  return s;
}
