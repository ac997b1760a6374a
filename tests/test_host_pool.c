/* The host worker pool (lib/common/host_pool.h): every worker index runs
 * once per run, on distinct threads of the pool's own, whatever the count
 * asked; runs from two threads at once are serialized. The pool on
 * libgomp's team: none before libgomp is in the process, then every index
 * once per run, the caller the team's first thread, also where the team is
 * smaller than asked (a run nested in a run) and from two threads at once.
 * Host only, no device. */
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common/host_pool.h"

#define MOST 16

typedef struct tally {
  atomic_uint calls[MOST];
  pthread_t who[MOST];
  atomic_int inside; /* callers of fn at once, for the serialization test */
  atomic_int overlap;
} tally;

static void count(void *arg, unsigned worker)
{
  tally *t = arg;
  atomic_fetch_add(&t->calls[worker], 1);
  t->who[worker] = pthread_self();
}

/* 200 runs of n = 0 .. 7 on pools of 1 .. 5 workers that `make` makes:
 * every index below the clipped n once, on distinct threads, the caller
 * among them (as worker 0) only where `caller_works`. */
static void check_runs(m2pt_host_pool *(*make)(unsigned), int caller_works)
{
  for (unsigned threads = 1; threads <= 5; threads++) {
    m2pt_host_pool *pool = make(threads);
    assert_non_null(pool);
    assert_int_equal(m2pt_host_pool_threads(pool), threads);
    for (unsigned round = 0; round < 200; round++) {
      const unsigned n = round % 8; /* 0, beyond the pool's size too */
      const unsigned ran = n == 0 ? 1 : n < threads ? n : threads;
      tally t;
      memset(&t, 0, sizeof t);
      m2pt_host_pool_run(pool, n, count, &t);
      for (unsigned w = 0; w < MOST; w++)
        assert_int_equal(atomic_load(&t.calls[w]), w < ran);
      for (unsigned a = 0; a < ran; a++)
        assert_int_equal(pthread_equal(t.who[a], pthread_self()) != 0, caller_works && a == 0);
      for (unsigned a = 0; a < ran; a++)
        for (unsigned b = a + 1; b < ran; b++)
          assert_false(pthread_equal(t.who[a], t.who[b]));
    }
    m2pt_host_pool_destroy(pool);
  }
}

static void runs_each_worker_once(void **state)
{
  (void)state;
  check_runs(m2pt_host_pool_create, 0);
}

static void null_pool_is_the_caller_alone(void **state)
{
  (void)state;
  assert_null(m2pt_host_pool_create(0));
  assert_int_equal(m2pt_host_pool_threads(NULL), 1);
  tally t;
  memset(&t, 0, sizeof t);
  m2pt_host_pool_run(NULL, 4, count, &t);
  assert_int_equal(atomic_load(&t.calls[0]), 1);
  assert_true(pthread_equal(t.who[0], pthread_self()));
  assert_int_equal(atomic_load(&t.calls[1]), 0);
  m2pt_host_pool_destroy(NULL);
}

static void watch(void *arg, unsigned worker)
{
  tally *t = arg;
  if (worker == 0 && atomic_fetch_add(&t->inside, 1) != 0)
    atomic_store(&t->overlap, 1);
  atomic_fetch_add(&t->calls[worker], 1);
  for (volatile int i = 0; i < 2000; i++) {
  }
  if (worker == 0)
    atomic_fetch_sub(&t->inside, 1);
}

typedef struct caller {
  m2pt_host_pool *pool;
  tally *t;
} caller;

static void *call_many(void *arg)
{
  caller *c = arg;
  for (int i = 0; i < 300; i++)
    m2pt_host_pool_run(c->pool, 3, watch, c->t);
  return NULL;
}

static void runs_from_two_threads_are_serialized(void **state)
{
  (void)state;
  m2pt_host_pool *pool = m2pt_host_pool_create(3);
  assert_non_null(pool);
  tally t;
  memset(&t, 0, sizeof t);
  caller c = {pool, &t};
  pthread_t other;
  assert_int_equal(pthread_create(&other, NULL, call_many, &c), 0);
  call_many(&c);
  pthread_join(other, NULL);
  assert_int_equal(atomic_load(&t.overlap), 0);
  for (unsigned w = 0; w < 3; w++)
    assert_int_equal(atomic_load(&t.calls[w]), 600);
  m2pt_host_pool_destroy(pool);
}

typedef struct nested {
  m2pt_host_pool *pool;
  tally inner[2];
} nested;

static void run_inner(void *arg, unsigned worker)
{
  nested *n = arg;
  m2pt_host_pool_run(n->pool, 3, count, &n->inner[worker]);
}

static void openmp_pool(void **state)
{
  (void)state;
  assert_null(m2pt_host_pool_create_openmp(0));
  void *present = dlopen("libgomp.so.1", RTLD_LAZY | RTLD_NOLOAD);
  if (!present)
    assert_null(m2pt_host_pool_create_openmp(2)); /* never loads it */
  else
    dlclose(present);
  void *gomp = dlopen("libgomp.so.1", RTLD_NOW | RTLD_GLOBAL);
  if (!gomp)
    skip();
  check_runs(m2pt_host_pool_create_openmp, 1);
  /* Nested: libgomp gives the inner runs a team of one thread. */
  nested n;
  memset(&n, 0, sizeof n);
  n.pool = m2pt_host_pool_create_openmp(3);
  assert_non_null(n.pool);
  m2pt_host_pool_run(n.pool, 2, run_inner, &n);
  for (unsigned o = 0; o < 2; o++)
    for (unsigned w = 0; w < MOST; w++)
      assert_int_equal(atomic_load(&n.inner[o].calls[w]), w < 3);
  /* Two callers at once, each with a team of its own. */
  tally t;
  memset(&t, 0, sizeof t);
  caller c = {n.pool, &t};
  pthread_t other;
  assert_int_equal(pthread_create(&other, NULL, call_many, &c), 0);
  call_many(&c);
  pthread_join(other, NULL);
  for (unsigned w = 0; w < 3; w++)
    assert_int_equal(atomic_load(&t.calls[w]), 600);
  m2pt_host_pool_destroy(n.pool);
  dlclose(gomp);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(runs_each_worker_once),
      cmocka_unit_test(null_pool_is_the_caller_alone),
      cmocka_unit_test(runs_from_two_threads_are_serialized),
      cmocka_unit_test(openmp_pool),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
