/* The lock around CLBlast's process-wide state. CLBlast keeps a parameter
 * database and program caches for the whole process; GEMM routine calls
 * share this reader-writer lock, calls that change CLBlast's global state
 * (overrides, clearing the cache) hold it alone. It comes after the process
 * lock (core/global.h) when both are held. Not recursive. */
#ifndef M2PT_GEMM_CLBLAST_LOCK_H
#define M2PT_GEMM_CLBLAST_LOCK_H

#include "core/cl.h"

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
