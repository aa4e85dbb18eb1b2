/*
 * model/cuda/stub.c — osp_backend_cuda() for builds without the CUDA backend: it returns NULL so
 * callers fall back to the CPU. With CUDA (OSP_HAVE_CUDA), model/cuda/backend.cu defines it instead
 * and this file compiles to nothing.
 */
#include "model/ops.h"

#ifndef OSP_HAVE_CUDA
const osp_backend *osp_backend_cuda(void) { return NULL; }
#else
typedef int osp_cuda_stub_unused; /* keeps the translation unit non-empty (ISO C) */
#endif
