/*
 * ops_cuda_stub.c — osp_backend_cuda() for builds without the CUDA backend: it returns NULL so
 * callers fall back to the CPU. With CUDA (OSP_HAVE_CUDA), model/ops_cuda.cu defines it instead
 * and this file compiles to nothing.
 */
#include "ops.h"

#ifndef OSP_HAVE_CUDA
const osp_backend *osp_backend_cuda(void) { return NULL; }
#else
typedef int osp_cuda_stub_unused; /* keeps the translation unit non-empty (ISO C) */
#endif
