#include "global.h"

#include <pthread.h>

static pthread_mutex_t process_mutex = PTHREAD_MUTEX_INITIALIZER;

/* The return values of the lock calls are ignored: statically initialised
 * default locks fail only on misuse (unlocking one not held, taking one held
 * by the same thread). */

void m2pt_process_lock(void)
{
  pthread_mutex_lock(&process_mutex);
}

void m2pt_process_unlock(void)
{
  pthread_mutex_unlock(&process_mutex);
}
