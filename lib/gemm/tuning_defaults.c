/* The tunings m2pt ships: one row per class of device, with the parameters
 * and how they were measured. A context whose GEMMs run on CLBlast applies
 * its device's row when the device has no tuning store of its own
 * (tuning_apply.c). A new row needs a measurement: m2pt-tune on the device,
 * then m2pt-bench --suite gemm against CLBlast's defaults (M2PT_TUNING=off). */
#include "tuning.h"

#include <string.h>

/* A class of devices and the tuning shipped for it. */
typedef struct shipped_default {
  const char *platform;            /* a substring of the OpenCL platform's name */
  int cpu_only;                    /* 1: the platform's CPU devices alone */
  const char *label;               /* m2pt_context_tuning's detail */
  m2pt_tuning tuning;
  m2pt_tuning_provenance provenance;
  const char *measured;            /* what the figures above do not say */
} shipped_default;

static const shipped_default shipped[] = {
    {
        .platform = "Portable Computing Language",
        .cpu_only = 1,
        .label = "shipped default for PoCL CPU devices",
        .tuning =
            {
                .present =
                    (1u << M2PT_TK_XGEMM) | (1u << M2PT_TK_DIRECT) | (1u << M2PT_TK_ROUTINE),
                /* GEMMK KREG KWG KWI MDIMA MDIMC MWG NDIMB NDIMC NWG SA SB STRM STRN VWM VWN */
                .xgemm = {0, 1, 16, 2, 8, 16, 32, 8, 8, 64, 0, 1, 0, 0, 1, 8},
                /* KWID MDIMAD MDIMCD NDIMBD NDIMCD PADA PADB VWMD VWND WGD: CLBlast's
                 * default for devices it does not know */
                .direct = {2, 8, 8, 8, 8, 1, 1, 1, 1, 16},
                /* Xgemm takes every GEMM with m·n·k >= 256³: the tuner chose 487³ (just
                 * below its smallest shape), lowered because ViT-S/16's qkv and proj GEMMs
                 * (197x384x1152, 197x384x384) ran 2.1x and 1.9x faster on this Xgemm than
                 * on CLBlast's direct kernel (m2pt-bench --suite block --quick: ViT-S/16
                 * block 87 -> 57 ms; untuned 118 ms). Smaller GEMMs (attention's per-head
                 * products at N = 197) keep the direct kernel with CLBlast's defaults. */
                .min_indirect = 256,
            },
        .provenance =
            {
                .date = "2026-11-27",
                .m2pt_version = "",
                .tool = "m2pt-tune",
                .shapes = "197x768x2304,197x768x768,197x768x3072,197x3072x768",
                .budget_s = 1500,
                .spent_s = 1220,
                .candidates = 60,
                /* The tuner's own figures, inflated by the load falling during the
                 * search; `measured` has the alternated runs. */
                .gflops_before = 4.2,
                .gflops_after = 22.0,
            },
        .measured =
            "m2pt-tune --budget 900 --store DIR, resumed with --budget 1500 and stopped at "
            "1220 s (a direct candidate had compiled for 5 minutes; the tool has "
            "--candidate-timeout since); shapes of ViT-B/16, B = 1, N = 197. PoCL 3.1+debian "
            "(LLVM 15), pthread-haswell-AMD EPYC, 2 cores of an AMD EPYC (KVM), CLBlast 1.5.3 "
            "(Debian), shared with other jobs (load average 1 to 5 during the search). 60 "
            "candidates: CLBlast's CPU database entries first, then mutations of the best and "
            "random draws; every XgemmDirect candidate lost to Xgemm without local memory for "
            "A, and every GEMMK = 1 candidate gave wrong results on PoCL. GFLOP/s on the four "
            "shapes together against CLBlast's defaults (M2PT_TUNING=off), OpenBLAS 0.3.21 "
            "cblas_sgemm on the same shapes in the same runs at 105-140 (FMA peak 139-157): "
            "m2pt_gemm then cblas_sgemm, medians of 7, 4 runs of the defaults and 5 of this "
            "set, alternated: defaults 6.8-10.9 (0.08-0.12x OpenBLAS), this set 11.5-19.6 "
            "(0.11-0.14x); m2pt-bench --suite gemm --quick, 2 runs each: defaults 6.3-9.5 per "
            "shape (0.06-0.08x), this set 9.7-12.6 (0.09-0.12x). The target, 0.7x OpenBLAS, "
            "is out of reach of CLBlast's kernels as PoCL compiles them: the best reach about "
            "a tenth of the FMA peak, and the indirect path's copies do not matter (the same "
            "shapes without the weight's transpose run no faster).",
    },
};

const m2pt_tuning *m2pt_tuning_shipped(const m2pt_device_info *info, const char **label)
{
  for (size_t i = 0; i < sizeof shipped / sizeof shipped[0]; i++) {
    const shipped_default *d = &shipped[i];
    if (strstr(info->platform_name, d->platform) && (!d->cpu_only || info->is_cpu)) {
      *label = d->label;
      return &d->tuning;
    }
  }
  *label = "";
  return NULL;
}
