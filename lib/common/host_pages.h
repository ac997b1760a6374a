/* Host memory for large arrays read over and over (a linear's packed
 * weight): from 2 MiB on, aligned to 2 MiB and, on Linux, advised for
 * transparent huge pages (madvise MADV_HUGEPAGE; this project's machines have THP in
 * "madvise" mode, so plain malloc memory never gets them). A GEMM that
 * sweeps a 9 MiB weight several times over misses the TLB on 4 KiB pages;
 * on 2 MiB pages the ViT-B/16 and BERT-base encoders at B = 8 ran 1.5–2%
 * faster, medians of ten alternating pairs (README, Performance). No
 * OpenCL here. */
#ifndef M2PT_COMMON_HOST_PAGES_H
#define M2PT_COMMON_HOST_PAGES_H

#include <stddef.h>

/* `bytes` (> 0) of uninitialised memory: from 2 MiB on aligned to 2 MiB
 * and rounded up to whole 2 MiB pages, which are asked for where the system
 * has them (a refusal is not an error); below that aligned to 64 bytes.
 * NULL where bytes is 0 or memory runs out. Free with
 * m2pt_host_pages_free. */
void *m2pt_host_pages_alloc(size_t bytes);

/* Frees what m2pt_host_pages_alloc returned; NULL is ignored. */
void m2pt_host_pages_free(void *p);

#endif
