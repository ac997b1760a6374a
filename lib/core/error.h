/* Internal error reporting with contexts: every failure path sets a detailed
 * message on the context (or, without one, on the calling thread) and returns
 * a status. The convention and its context-free half: common/error.h. */
#ifndef M2PT_CORE_ERROR_H
#define M2PT_CORE_ERROR_H

#include "cl.h"
#include "common/error.h"
#include "m2pt/context.h"
#include "m2pt/status.h"

/* Formats the message into ctx's error buffer (the thread's when ctx is NULL)
 * and returns `status`. */
m2pt_status m2pt_fail(const m2pt_context *ctx, m2pt_status status,
                      const char *fmt, ...) M2PT_PRINTF(3, 4);

/* Fails with the status that fits an OpenCL error (allocation errors become
 * M2PT_ERR_DEVICE_OUT_OF_MEMORY) and "<what>: CL_NAME (code)". */
m2pt_status m2pt_fail_cl(const m2pt_context *ctx, cl_int err, const char *what);

/* "CL_OUT_OF_RESOURCES" etc.; "CL_UNKNOWN_ERROR" for codes it does not know. */
const char *m2pt_cl_error_name(cl_int err);

/* Appends to the current message (for build logs and device lists). */
void m2pt_error_append(const m2pt_context *ctx, const char *fmt, ...) M2PT_PRINTF(2, 3);

/* Fails with M2PT_ERR_INVALID_ARGUMENT when `cond` does not hold. */
#define M2PT_REQUIRE(ctx, cond, ...)                                \
  do {                                                              \
    if (!(cond))                                                    \
      return m2pt_fail((ctx), M2PT_ERR_INVALID_ARGUMENT, __VA_ARGS__); \
  } while (0)

/* Fails through m2pt_fail_cl when an OpenCL call did not succeed. */
#define M2PT_TRY_CL(ctx, call, what)                  \
  do {                                                \
    const cl_int try_cl_ = (call);                    \
    if (try_cl_ != CL_SUCCESS)                        \
      return m2pt_fail_cl((ctx), try_cl_, (what));    \
  } while (0)

#endif
