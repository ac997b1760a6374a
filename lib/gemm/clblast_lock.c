/* For PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP (glibc). */
#define _GNU_SOURCE
#include "clblast_lock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include <clblast_c.h>

/* Writers first where the C library offers it, so that a context's creation
 * (which overrides CLBlast's parameters) does not wait on a stream of other
 * threads' GEMM calls. */
#ifdef PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP
static pthread_rwlock_t clblast_lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
#else
static pthread_rwlock_t clblast_lock = PTHREAD_RWLOCK_INITIALIZER;
#endif

/* CLBlast (1.5.3, src/database/database.cpp) fills its built-in parameter
 * database, a static vector, on the first construction of a Database, with no
 * lock; threads constructing their first ones at once crash copying it (seen
 * as a segfault in DatabaseEntry's copy constructor under
 * CLBlastOverrideParameters, threads creating contexts). Every routine call and every
 * override constructs a Database when CLBlast's cache (which is locked) lacks
 * the device's entry. Once one construction has finished the vector is only
 * read, so from then on routine calls may run side by side. Set, with
 * release order, once a CLBlast call that constructs one has returned. */
static atomic_int database_built;

/* A CLBlast routine or override ran since the program cache was last
 * cleared: a process whose contexts all use the host BLAS never calls into
 * CLBlast at all. */
static atomic_int clblast_used;

/* The return values of the lock calls are ignored: statically initialised
 * default locks fail only on misuse (unlocking one not held, taking one held
 * by the same thread). */

static void note_use(void)
{
  /* Read first: GEMM calls in every thread would otherwise write one cache line. */
  if (!atomic_load_explicit(&clblast_used, memory_order_relaxed))
    atomic_store_explicit(&clblast_used, 1, memory_order_relaxed);
}

int m2pt_clblast_begin(void)
{
  note_use();
  if (atomic_load_explicit(&database_built, memory_order_acquire)) {
    pthread_rwlock_rdlock(&clblast_lock);
    return 0;
  }
  pthread_rwlock_wrlock(&clblast_lock);
  return 1;
}

void m2pt_clblast_end(int token, int succeeded)
{
  if (token && succeeded)
    atomic_store_explicit(&database_built, 1, memory_order_release);
  pthread_rwlock_unlock(&clblast_lock);
}

void m2pt_clblast_exclusive_lock(void)
{
  note_use();
  pthread_rwlock_wrlock(&clblast_lock);
}

void m2pt_clblast_exclusive_unlock(int override_succeeded)
{
  if (override_succeeded)
    atomic_store_explicit(&database_built, 1, memory_order_release);
  pthread_rwlock_unlock(&clblast_lock);
}

void m2pt_clblast_prime(cl_device_id device)
{
  if (atomic_load_explicit(&database_built, memory_order_acquire))
    return;
  pthread_rwlock_wrlock(&clblast_lock);
  /* With no parameters, CLBlastOverrideParameters constructs the device's
   * database, finds parameters missing and returns before changing anything
   * (CLBlast 1.5.3, src/api_common.cpp): a database built, nothing else. */
  if (!atomic_load_explicit(&database_built, memory_order_relaxed) &&
      CLBlastOverrideParameters(device, "Xgemm", CLBlastPrecisionSingle, 0, NULL, NULL) ==
          CLBlastMissingOverrideParameter)
    atomic_store_explicit(&database_built, 1, memory_order_release);
  pthread_rwlock_unlock(&clblast_lock);
}

void m2pt_clblast_release_programs(void)
{
  if (!atomic_exchange_explicit(&clblast_used, 0, memory_order_relaxed))
    return;
  pthread_rwlock_wrlock(&clblast_lock);
  CLBlastClearCache();
  pthread_rwlock_unlock(&clblast_lock);
}
