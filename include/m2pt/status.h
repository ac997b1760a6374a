/* Status codes returned by every fallible m2pt call. */
#ifndef M2PT_STATUS_H
#define M2PT_STATUS_H

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 0 is success; new values are only ever appended (the ABI stays stable). */
typedef enum m2pt_status {
  M2PT_OK = 0,
  M2PT_ERR_INVALID_ARGUMENT,   /* NULL pointer, zero or overflowing size, bad value */
  M2PT_ERR_SHAPE,              /* tensor shapes do not fit the operation */
  M2PT_ERR_OUT_OF_MEMORY,      /* host allocation failed */
  M2PT_ERR_DEVICE_OUT_OF_MEMORY, /* device allocation failed or exceeds a device limit */
  M2PT_ERR_DEVICE_NOT_FOUND,   /* no OpenCL device, or none matches the selector */
  M2PT_ERR_OPENCL,             /* an OpenCL call failed; the message names the error */
  M2PT_ERR_KERNEL_BUILD,       /* a kernel failed to compile; the message holds the log */
  M2PT_ERR_BLAS,               /* CLBlast failed; the message names its status */
  M2PT_ERR_INVALID_STATE,      /* the object cannot do this now (e.g. merged layer) */
  M2PT_ERR_CONTEXT_MISMATCH,   /* objects from different contexts were combined */
  M2PT_ERR_IO,                 /* a file could not be read or written */
  M2PT_ERR_FORMAT,             /* a file or string is malformed */
  M2PT_ERR_UNSUPPORTED,        /* the device (or m2pt) lacks a required feature */
  M2PT_ERR_NOT_FOUND,          /* no tensor or key of that name */
  M2PT_ERR_NOT_FINITE,         /* a computed value that must be finite is NaN or infinite
                                  (a gradient norm, a loss) */
} m2pt_status;

/* Name of a status, e.g. "M2PT_ERR_SHAPE". Never NULL; unknown values give
 * "M2PT_ERR_UNKNOWN". The string is static. */
M2PT_API const char *m2pt_status_string(m2pt_status status);

#ifdef __cplusplus
}
#endif

#endif
