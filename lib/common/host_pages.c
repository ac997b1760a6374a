#define _DEFAULT_SOURCE /* madvise's MADV_HUGEPAGE */
#include "host_pages.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)

void *m2pt_host_pages_alloc(size_t bytes)
{
  if (bytes == 0 || bytes > SIZE_MAX - HUGE_PAGE)
    return NULL;
  /* aligned_alloc wants a multiple of the alignment. */
  const size_t rounded = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
  void *p = aligned_alloc(HUGE_PAGE, rounded);
#ifdef MADV_HUGEPAGE
  if (p)
    (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
  return p;
}

void m2pt_host_pages_free(void *p)
{
  free(p);
}
