/* Internal side of device discovery, used by context creation. */
#ifndef M2PT_CORE_DEVICE_H
#define M2PT_CORE_DEVICE_H

#include "cl.h"
#include "m2pt/context.h"

/* Fills `info` for one device. */
m2pt_status m2pt_device_query(cl_platform_id platform, cl_device_id device,
                              unsigned platform_index, unsigned device_index,
                              m2pt_device_info *info);

/* Resolves `selector` (see m2pt_device_select) to OpenCL handles and fills
 * `info` for the chosen device. Messages go to the thread's error buffer. */
m2pt_status m2pt_device_resolve(const char *selector, cl_platform_id *platform,
                                cl_device_id *device, m2pt_device_info *info);

/* The selector indices of a device (for wrapped contexts); left as they
 * are when the device is not found among the listed ones. */
void m2pt_device_locate(cl_device_id device, unsigned *platform_index, unsigned *device_index);

#endif
