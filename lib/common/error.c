#include "error.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char thread_error[M2PT_ERROR_CAPACITY];

char *m2pt_thread_error(void)
{
  return thread_error;
}

m2pt_status m2pt_vfail_into(char *buf, m2pt_status status, const char *fmt, va_list ap)
{
  vsnprintf(buf, M2PT_ERROR_CAPACITY, fmt, ap);
  return status;
}

void m2pt_vappend_into(char *buf, const char *fmt, va_list ap)
{
  const size_t used = strlen(buf);
  if (used + 1 >= M2PT_ERROR_CAPACITY)
    return;
  vsnprintf(buf + used, M2PT_ERROR_CAPACITY - used, fmt, ap);
}

m2pt_status m2pt_fail_thread(m2pt_status status, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  m2pt_vfail_into(thread_error, status, fmt, ap);
  va_end(ap);
  return status;
}

const char *m2pt_status_string(m2pt_status status)
{
  switch (status) {
  case M2PT_OK: return "M2PT_OK";
  case M2PT_ERR_INVALID_ARGUMENT: return "M2PT_ERR_INVALID_ARGUMENT";
  case M2PT_ERR_SHAPE: return "M2PT_ERR_SHAPE";
  case M2PT_ERR_OUT_OF_MEMORY: return "M2PT_ERR_OUT_OF_MEMORY";
  case M2PT_ERR_DEVICE_OUT_OF_MEMORY: return "M2PT_ERR_DEVICE_OUT_OF_MEMORY";
  case M2PT_ERR_DEVICE_NOT_FOUND: return "M2PT_ERR_DEVICE_NOT_FOUND";
  case M2PT_ERR_OPENCL: return "M2PT_ERR_OPENCL";
  case M2PT_ERR_KERNEL_BUILD: return "M2PT_ERR_KERNEL_BUILD";
  case M2PT_ERR_BLAS: return "M2PT_ERR_BLAS";
  case M2PT_ERR_INVALID_STATE: return "M2PT_ERR_INVALID_STATE";
  case M2PT_ERR_CONTEXT_MISMATCH: return "M2PT_ERR_CONTEXT_MISMATCH";
  case M2PT_ERR_IO: return "M2PT_ERR_IO";
  case M2PT_ERR_FORMAT: return "M2PT_ERR_FORMAT";
  case M2PT_ERR_UNSUPPORTED: return "M2PT_ERR_UNSUPPORTED";
  case M2PT_ERR_NOT_FOUND: return "M2PT_ERR_NOT_FOUND";
  case M2PT_ERR_NOT_FINITE: return "M2PT_ERR_NOT_FINITE";
  }
  return "M2PT_ERR_UNKNOWN";
}
