/*
 * model/cuda/stub.c — the instance calls of model/cuda/backend.h for builds without the CUDA
 * backend: init returns NULL so callers fall back to the CPU, and no backend is ever a CUDA one.
 * With CUDA (OSP_HAVE_CUDA), model/cuda/backend.cu defines them instead and this file compiles to
 * nothing.
 */
#include "model/cuda/backend.h"

#ifndef OSP_HAVE_CUDA
const osp_backend *osp_backend_cuda_init(int device, const osp_cuda_options *o) {
    (void)device, (void)o;
    return NULL;
}
void osp_backend_cuda_free(const osp_backend *be) { (void)be; }
const osp_cuda_options *osp_backend_cuda_options(const osp_backend *be) {
    (void)be;
    return NULL;
}
void osp_backend_cuda_set_options(const osp_backend *be, const osp_cuda_options *o) { (void)be, (void)o; }
#else
typedef int osp_cuda_stub_unused; /* keeps the translation unit non-empty (ISO C) */
#endif
