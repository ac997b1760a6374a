/* What m2pt contexts share in a process, and the locks around it.
 *
 * A context owns its OpenCL context, queue, programs and buffers, so calls on
 * different contexts need no lock between them, except where they reach
 * process-wide state of the libraries below:
 * - the OpenCL platform layer while devices are enumerated (device.c): PoCL
 *   3.1 under ocl-icd 2.3 sets its devices up in the first clGetPlatformIDs
 *   of the process, and threads that overlap there get no device or crash;
 * - CLBlast's parameter database and program caches (global.c);
 * - m2pt's count of live contexts, which decides when CLBlast's program
 *   cache is cleared (context.c).
 * The process lock covers enumeration and the count. CLBlast has a
 * reader-writer lock of its own: GEMM routine calls share it, calls that
 * change CLBlast's global state hold it alone. Order: the process lock, then
 * CLBlast's; never the other way round. Neither is recursive. */
#ifndef M2PT_CORE_GLOBAL_H
#define M2PT_CORE_GLOBAL_H

#include "cl.h"

void m2pt_process_lock(void);
void m2pt_process_unlock(void);

/* Around every CLBlast routine call (CLBlastSgemm and its kind): shared with
 * other threads' routine calls once CLBlast's database is built in the
 * process, else alone. Pass begin's result to end, with whether the call
 * succeeded. */
int m2pt_clblast_begin(void);
void m2pt_clblast_end(int token, int succeeded);

/* Around calls that change CLBlast's parameters (CLBlastOverrideParameters).
 * The caller tells whether its override succeeded (a success built a
 * database). */
void m2pt_clblast_exclusive_lock(void);
void m2pt_clblast_exclusive_unlock(int override_succeeded);

/* Builds CLBlast's database once in the process, for `device`, so that
 * routine calls on a new context share the lock from their first call. */
void m2pt_clblast_prime(cl_device_id device);

/* Clears CLBlast's program cache (CLBlastClearCache) if CLBlast ran since
 * the last clear. For the last context's destruction, with the process lock
 * held. */
void m2pt_clblast_release_programs(void);

#endif
