/* What m2pt contexts share in a process, and the lock around it.
 *
 * A context owns its OpenCL context, queue, programs and buffers, so calls on
 * different contexts need no lock between them, except where they reach
 * process-wide state:
 * - the OpenCL platform layer while devices are enumerated (device.c): PoCL
 *   3.1 under ocl-icd 2.3 sets its devices up in the first clGetPlatformIDs
 *   of the process, and threads that overlap there get no device or crash;
 * - m2pt's count of live contexts, which decides when CLBlast's program
 *   cache is cleared (context.c).
 * The process lock covers both. It is not recursive. */
#ifndef M2PT_CORE_GLOBAL_H
#define M2PT_CORE_GLOBAL_H

void m2pt_process_lock(void);
void m2pt_process_unlock(void);

#endif
