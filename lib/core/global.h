/* What m2pt contexts share in a process, and the locks around it.
 *
 * A context owns its OpenCL context, queue, programs and buffers, so calls on
 * different contexts need no lock between them, except where they reach
 * process-wide state of the libraries below:
 * - the OpenCL platform layer while devices are enumerated (device.c): PoCL
 *   3.1 under ocl-icd 2.3 sets its devices up in the first clGetPlatformIDs
 *   of the process, and threads that overlap there get no device or crash;
 * - process-wide state of the layers above, such as the GEMM layer's count
 *   of live contexts, which decides when its backends tear down
 *   (lib/gemm/chooser.c).
 * The process lock covers enumeration and such counts. Locks of the layers
 * above (CLBlast's, lib/gemm/clblast_lock.h) come after it: take the process
 * lock first, never the other way round. It is not recursive. */
#ifndef M2PT_CORE_GLOBAL_H
#define M2PT_CORE_GLOBAL_H

#include "cl.h"

/* The process lock (see above). */
void m2pt_process_lock(void);
void m2pt_process_unlock(void);

#endif
