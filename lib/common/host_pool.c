/* A run of the threads' own pool is a generation: the caller publishes
 * (fn, arg, n), bumps the generation and wakes the workers; those numbered
 * below n call fn, the last to finish wakes the caller. One mutex guards
 * it all: the runs are milliseconds long, a lock round is microseconds.
 * Idle workers sleep: watching for the next run for 100 µs first measured
 * no faster (ViT-B's 197 × 768 → 768 linear, 2 cores of a Xeon), and would
 * take the CPU from PoCL's threads meanwhile.
 * A run on OpenMP is one parallel region of libgomp's (GOMP_parallel, the
 * call GCC makes of `#pragma omp parallel`), found in the process rather
 * than linked: linking libgomp would load it before m2pt sets its spin
 * (gemm/onednn_api.h). */
#define _GNU_SOURCE /* sched_getaffinity, pthread_attr_setaffinity_np, CPU_* */
#include "host_pool.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

/* libgomp's entry points, resolved by m2pt_host_pool_create_openmp. */
typedef struct openmp_api {
  void (*parallel)(void (*fn)(void *), void *data, unsigned threads, unsigned flags);
  int (*thread_num)(void);
  int (*num_threads)(void);
} openmp_api;

typedef struct slot {
  m2pt_host_pool *pool;
  unsigned worker;
  pthread_t thread;
} slot;

struct m2pt_host_pool {
  pthread_mutex_t serial; /* one run at a time */
  pthread_mutex_t lock;   /* everything below */
  pthread_cond_t wake;    /* a new generation, or stop */
  pthread_cond_t done;    /* pending reached 0 */
  unsigned long generation;
  m2pt_host_pool_fn *fn;
  void *arg;
  unsigned n;       /* workers in this generation */
  unsigned pending; /* of them, not yet returned */
  int stop;
  unsigned started; /* threads in slots; with openmp, the threads asked for */
  slot *slots;
  const openmp_api *openmp; /* non-NULL: runs are libgomp's parallel regions */
};

static void *worker_main(void *p)
{
  slot *s = p;
  m2pt_host_pool *pool = s->pool;
  unsigned long seen = 0;
  pthread_mutex_lock(&pool->lock);
  for (;;) {
    while (pool->generation == seen && !pool->stop)
      pthread_cond_wait(&pool->wake, &pool->lock);
    if (pool->stop)
      break;
    seen = pool->generation;
    if (s->worker >= pool->n)
      continue;
    m2pt_host_pool_fn *fn = pool->fn;
    void *arg = pool->arg;
    pthread_mutex_unlock(&pool->lock);
    fn(arg, s->worker);
    pthread_mutex_lock(&pool->lock);
    if (--pool->pending == 0)
      pthread_cond_signal(&pool->done);
  }
  pthread_mutex_unlock(&pool->lock);
  return NULL;
}

/* Pins a thread made with attr to the index-th CPU this process may run
 * on (round the list where there are fewer); nothing where it cannot. */
static void pin(pthread_attr_t *attr, const cpu_set_t *allowed, unsigned index)
{
  const int count = CPU_COUNT(allowed);
  if (count <= 0)
    return;
  for (int cpu = 0, seen = 0; cpu < CPU_SETSIZE; cpu++)
    if (CPU_ISSET(cpu, allowed) && seen++ == (int)(index % (unsigned)count)) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      pthread_attr_setaffinity_np(attr, sizeof one, &one);
      return;
    }
}

m2pt_host_pool *m2pt_host_pool_create(unsigned threads)
{
  if (threads == 0)
    return NULL;
  m2pt_host_pool *pool = calloc(1, sizeof *pool);
  slot *slots = calloc(threads, sizeof *slots);
  if (!pool || !slots) {
    free(pool);
    free(slots);
    return NULL;
  }
  pool->slots = slots;
  pthread_mutex_init(&pool->serial, NULL);
  pthread_mutex_init(&pool->lock, NULL);
  pthread_cond_init(&pool->wake, NULL);
  pthread_cond_init(&pool->done, NULL);
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
    CPU_ZERO(&allowed);
  for (unsigned i = 0; i < threads; i++) {
    slots[i] = (slot){pool, i, 0};
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
      break;
    pin(&attr, &allowed, i);
    int e = pthread_create(&slots[i].thread, &attr, worker_main, &slots[i]);
    pthread_attr_destroy(&attr);
    if (e != 0) /* a system that refuses the pinning (a sandbox): unpinned then */
      e = pthread_create(&slots[i].thread, NULL, worker_main, &slots[i]);
    if (e != 0)
      break; /* a smaller pool: the workers that started share the work */
    pool->started++;
  }
  if (pool->started == 0) {
    m2pt_host_pool_destroy(pool);
    return NULL;
  }
  return pool;
}

/* Found once libgomp is in the process, under gomp_lock; looked for again
 * by each pool made before that (a context may load oneDNN after another
 * made its pool). */
static openmp_api gomp;
static pthread_mutex_t gomp_lock = PTHREAD_MUTEX_INITIALIZER;

/* libgomp's entry points where the process has it loaded; never loads it.
 * The handle is kept: libgomp is not unloaded while a pool may use it. */
static void find_gomp(void)
{
  void *lib = dlopen("libgomp.so.1", RTLD_LAZY | RTLD_NOLOAD);
  if (!lib)
    return;
  openmp_api found;
  /* POSIX's way to store dlsym's object pointer into a function pointer. */
  *(void **)(&found.parallel) = dlsym(lib, "GOMP_parallel");
  *(void **)(&found.thread_num) = dlsym(lib, "omp_get_thread_num");
  *(void **)(&found.num_threads) = dlsym(lib, "omp_get_num_threads");
  if (found.parallel && found.thread_num && found.num_threads)
    gomp = found;
  else
    dlclose(lib);
}

m2pt_host_pool *m2pt_host_pool_create_openmp(unsigned threads)
{
  if (threads == 0)
    return NULL;
  pthread_mutex_lock(&gomp_lock);
  if (!gomp.parallel)
    find_gomp();
  const int found = gomp.parallel != NULL;
  pthread_mutex_unlock(&gomp_lock);
  if (!found)
    return NULL;
  m2pt_host_pool *pool = calloc(1, sizeof *pool);
  if (!pool)
    return NULL;
  pool->started = threads;
  pool->openmp = &gomp;
  return pool;
}

void m2pt_host_pool_destroy(m2pt_host_pool *pool)
{
  if (!pool)
    return;
  if (pool->openmp) {
    free(pool);
    return;
  }
  pthread_mutex_lock(&pool->lock);
  pool->stop = 1;
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->lock);
  for (unsigned i = 0; i < pool->started; i++)
    pthread_join(pool->slots[i].thread, NULL);
  pthread_cond_destroy(&pool->done);
  pthread_cond_destroy(&pool->wake);
  pthread_mutex_destroy(&pool->lock);
  pthread_mutex_destroy(&pool->serial);
  free(pool->slots);
  free(pool);
}

unsigned m2pt_host_pool_threads(const m2pt_host_pool *pool)
{
  return pool ? pool->started : 1;
}

/* One OpenMP run: worker indices dealt round the team libgomp gives, which
 * may be smaller than asked (OMP_NUM_THREADS, OMP_THREAD_LIMIT, a region
 * nested in the application's). */
typedef struct openmp_run {
  const openmp_api *omp;
  m2pt_host_pool_fn *fn;
  void *arg;
  unsigned n;
} openmp_run;

static void openmp_member(void *data)
{
  const openmp_run *r = data;
  const unsigned team = (unsigned)r->omp->num_threads();
  for (unsigned w = (unsigned)r->omp->thread_num(); w < r->n; w += team)
    r->fn(r->arg, w);
}

void m2pt_host_pool_run(m2pt_host_pool *pool, unsigned n, m2pt_host_pool_fn *fn, void *arg)
{
  if (!pool) {
    fn(arg, 0);
    return;
  }
  n = n == 0 ? 1 : n > pool->started ? pool->started : n;
  if (pool->openmp) {
    openmp_run r = {pool->openmp, fn, arg, n};
    pool->openmp->parallel(openmp_member, &r, n, 0);
    return;
  }
  pthread_mutex_lock(&pool->serial);
  pthread_mutex_lock(&pool->lock);
  pool->fn = fn;
  pool->arg = arg;
  pool->n = n;
  pool->pending = n;
  pool->generation++;
  pthread_cond_broadcast(&pool->wake);
  while (pool->pending)
    pthread_cond_wait(&pool->done, &pool->lock);
  pthread_mutex_unlock(&pool->lock);
  pthread_mutex_unlock(&pool->serial);
}
