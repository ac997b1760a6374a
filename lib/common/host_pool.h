/* How the host paths (the host attention, LayerNorm) run one function on
 * several threads: on the OpenMP team the GEMMs run on, or on worker
 * threads of our own.
 *
 * OpenMP, where the process has libgomp (oneDNN brought it): the host work
 * and oneDNN's GEMMs then share one team. A worker still spinning after a
 * GEMM takes the next run at once, where a sleeping one costs 60-80 µs to
 * wake on these VMs, and no spinning OpenMP worker competes with a worker
 * of ours for its CPU (ViT-B/16 and BERT-base encoders 2-6% faster, README,
 * Performance).
 *
 * Threads of our own otherwise, one per CPU, that stay. Linux placed
 * threads started per call, and unpinned ones woken per call, on the CPU
 * of the thread that started or woke them, and on the 2-core machines of
 * this project often left them there for whole runs: with a 2-thread
 * AVX-512 GEMM of 0.6 ms a half, one half then ran after the other instead
 * of beside it, in about half of the processes. So each worker is pinned
 * to a CPU of the process's affinity mask, and the caller, whose CPU is not
 * ours to choose, waits while they work. No OpenCL here. */
#ifndef M2PT_COMMON_HOST_POOL_H
#define M2PT_COMMON_HOST_POOL_H

typedef struct m2pt_host_pool m2pt_host_pool;

/* What a pool runs: `worker` 0 .. n − 1, each once, on threads of the
 * pool (on OpenMP several may share a thread, where the team is smaller). */
typedef void m2pt_host_pool_fn(void *arg, unsigned worker);

/* A pool of `threads` ≥ 1 workers, started now, worker i pinned to the
 * i-th CPU the process may run on (round the list where there are fewer
 * CPUs): fewer where the system refuses a thread. NULL where threads is 0,
 * memory runs out or no thread starts. Destroy it with
 * m2pt_host_pool_destroy. */
m2pt_host_pool *m2pt_host_pool_create(unsigned threads);

/* A pool whose runs are parallel regions of the process's libgomp, of
 * `threads` ≥ 1 workers (its team may be smaller); no thread is started
 * here. NULL where threads is 0, memory runs out or libgomp is not loaded
 * in the process (it is never loaded here). Destroy it with
 * m2pt_host_pool_destroy. */
m2pt_host_pool *m2pt_host_pool_create_openmp(unsigned threads);

/* Stops and joins the workers (threads of our own), frees the pool; NULL is
 * ignored. No run may be in progress. */
void m2pt_host_pool_destroy(m2pt_host_pool *pool);

/* The workers a run can have; 1 for NULL. */
unsigned m2pt_host_pool_threads(const m2pt_host_pool *pool);

/* Calls fn(arg, w) for w = 0 .. n − 1 on the pool's workers (n clipped to
 * m2pt_host_pool_threads; 0 counts as 1) and returns when every call has;
 * on our own threads the caller waits, on OpenMP it is the team's first
 * thread. NULL pool: fn(arg, 0) on the caller. Runs on one pool of our own
 * threads are serialized by it (a second caller waits); on OpenMP each
 * caller gets a team. fn must not run the same pool. */
void m2pt_host_pool_run(m2pt_host_pool *pool, unsigned n, m2pt_host_pool_fn *fn, void *arg);

#endif
