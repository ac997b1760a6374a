/* The internal error convention (README "Coding style"), the part every
 * layer shares: a fallible function returns an m2pt_status and, where it
 * detects the failure, writes one message saying what failed and why. Code
 * without a context (this layer, lib/io, calls before a context exists)
 * writes it to the calling thread's buffer, which m2pt_last_error(NULL)
 * returns; core's m2pt_fail (core/error.h) picks a context's buffer. No
 * OpenCL. */
#ifndef M2PT_COMMON_ERROR_H
#define M2PT_COMMON_ERROR_H

#include <stdarg.h>

#include "m2pt/status.h"

#if defined(__GNUC__) || defined(__clang__)
#  define M2PT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#  define M2PT_PRINTF(f, a)
#endif

/* Room for a message with a kernel build log or a device list. */
#define M2PT_ERROR_CAPACITY 16384

/* The calling thread's message buffer (M2PT_ERROR_CAPACITY bytes, "" until
 * the thread's first failure). Owned by the library; valid for the thread's
 * lifetime. */
char *m2pt_thread_error(void);

/* Formats the message into buf (M2PT_ERROR_CAPACITY bytes, truncated to
 * fit) and returns `status`. */
m2pt_status m2pt_vfail_into(char *buf, m2pt_status status, const char *fmt, va_list ap)
    M2PT_PRINTF(3, 0);

/* Appends to the message in buf (M2PT_ERROR_CAPACITY bytes) what fits. */
void m2pt_vappend_into(char *buf, const char *fmt, va_list ap) M2PT_PRINTF(2, 0);

/* Formats the message into the calling thread's buffer and returns `status`:
 * the failure report of code that has no context. */
m2pt_status m2pt_fail_thread(m2pt_status status, const char *fmt, ...) M2PT_PRINTF(2, 3);

/* Propagates a failed status; the callee already set the message. */
#define M2PT_TRY(expr)                        \
  do {                                        \
    const m2pt_status try_status_ = (expr);   \
    if (try_status_ != M2PT_OK)               \
      return try_status_;                     \
  } while (0)

/* Fails through m2pt_fail_thread with M2PT_ERR_INVALID_ARGUMENT when `cond`
 * does not hold. */
#define M2PT_REQUIRE_THREAD(cond, ...)                                 \
  do {                                                                 \
    if (!(cond))                                                       \
      return m2pt_fail_thread(M2PT_ERR_INVALID_ARGUMENT, __VA_ARGS__); \
  } while (0)

#endif
