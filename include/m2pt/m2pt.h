/* m2pt: the Multimodal Pathway Transformer (arXiv 2401.14405) on OpenCL.
 * Including this header gives the whole public API except the OpenCL
 * interoperability calls, which live in <m2pt/opencl.h>. */
#ifndef M2PT_H
#define M2PT_H

#include <m2pt/version.h>
#include "export.h"
#include "status.h"
#include "context.h"
#include "tensor.h"
#include "gemm.h"
#include "linear.h"
#include "ops.h"
#include "attention.h"
#include "ffn.h"
#include "block.h"
#include "io.h"
#include "embedding.h"
#include "model.h"
#include "model_grad.h"
#include "model_params.h"
#include "loss.h"
#include "dropout.h"
#include "optim.h"
#include "dataset.h"
#include "trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version as M2PT_VERSION_NUMBER / M2PT_VERSION_STRING were when
 * it was built (may differ from the header the application compiled with). */
M2PT_API unsigned m2pt_version_number(void);
M2PT_API const char *m2pt_version_string(void);

#ifdef __cplusplus
}
#endif

#endif
