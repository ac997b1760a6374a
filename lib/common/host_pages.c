#define _DEFAULT_SOURCE /* madvise's MADV_HUGEPAGE */
#include "host_pages.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)
#define SMALL_ALIGN ((size_t)64)

void *m2pt_host_pages_alloc(size_t bytes)
{
  if (bytes == 0 || bytes > SIZE_MAX - HUGE_PAGE)
    return NULL;
  /* Below a huge page one would mostly hold nothing (and be resident all
   * the same once touched): plain cache-line-aligned memory then. */
  const size_t align = bytes < HUGE_PAGE ? SMALL_ALIGN : HUGE_PAGE;
  /* aligned_alloc wants a multiple of the alignment. */
  const size_t rounded = (bytes + align - 1) / align * align;
  void *p = aligned_alloc(align, rounded);
#ifdef MADV_HUGEPAGE
  if (p && align == HUGE_PAGE)
    (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
  return p;
}

void m2pt_host_pages_free(void *p)
{
  free(p);
}
