/* The one place that includes the OpenCL headers, at the API level m2pt
 * targets (OpenCL 1.2: what every vendor's driver still offers). */
#ifndef M2PT_CORE_CL_H
#define M2PT_CORE_CL_H

#ifndef CL_TARGET_OPENCL_VERSION
#  define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#endif
