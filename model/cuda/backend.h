/*
 * model/cuda/backend.h — how a CUDA backend instance is made: its options and the calls that create,
 * inspect, re-tune and free it. Plain C; every function exists in every build (model/cuda/options.c
 * always, model/cuda/backend.cu with CUDA, model/cuda/stub.c without, where init gives NULL).
 *
 * An instance belongs to one GPU and owns everything the CUDA ops keep between calls: the stream,
 * the cuBLASLt handle, workspace and GEMM plan cache, the cuDNN handle and graph cache, the grow-only
 * scratch buffers and the HiF8 amax state. Options come from the caller (the run config, through
 * train/cli.c); the environment variables below are overrides for experiments, read once by
 * osp_backend_cuda_init and never again.
 *
 * Binding (why the op table needs no self argument): the ops of osp_backend (model/ops.h) take no
 * context pointer, and model code calls them in hundreds of places. One process drives one GPU
 * (ranks are processes), so init binds its instance as THE instance of the process and every op
 * reaches it through that one pointer (model/cuda/common.cuh); free unbinds it. A second init while
 * one is live is an error that names both devices, not a silent second binding. Ops run on the
 * thread that called init (the CUDA current device is per thread).
 *
 * Environment overrides (read once, at init; a bad value stops with one line naming the variable):
 *   OSP_CUDA_GEMM      gemm         bf16 | fast16bf | tf32 | fp32
 *   OSP_ACT16          act16        0 = off, anything else on
 *   OSP_ATTN_IMPL      attn         auto | cudnn | osp
 *   OSP_DETERMINISTIC  deterministic
 *   OSP_CUDA_SYNC      sync_each_launch
 *   OSP_CUDNN_PAD      cudnn_pad    0 = off
 *   OSP_CUDNN_LIB      cudnn_lib    path of libcudnn.so.9
 *   OSP_HIF8_EXEC      hif8_fp8     emulate | fp8
 * (OSP_CUDNN_VERBOSE, a trace of the cuDNN path, is not an option: it only prints.)
 */
#ifndef OSP_CUDA_BACKEND_H
#define OSP_CUDA_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "model/ops.h"

/* GEMM precision (model/cuda/gemm.cu says what each one computes) */
typedef enum {
    OSP_CUDA_GEMM_BF16 = 0, /* bf16 operands in memory, fp32 accumulation (default) */
    OSP_CUDA_GEMM_FAST16BF, /* fp32 operands, CUBLAS_COMPUTE_32F_FAST_16BF */
    OSP_CUDA_GEMM_TF32,
    OSP_CUDA_GEMM_FP32,     /* for comparisons */
} osp_cuda_gemm;

/* who computes attention (model/cuda/cudnn.cu) */
typedef enum {
    OSP_CUDA_ATTN_AUTO = 0, /* cuDNN where it serves the call, osp's kernels otherwise (default) */
    OSP_CUDA_ATTN_CUDNN,    /* as auto, but a call cuDNN should serve and declines is an error */
    OSP_CUDA_ATTN_OSP,      /* osp's kernels only */
} osp_cuda_attn;

typedef struct {
    osp_cuda_gemm gemm;
    bool act16;            /* bf16 storage of GEMM/attention-only activations (with gemm bf16 only) */
    osp_cuda_attn attn;
    bool deterministic;    /* attention backward on osp's kernels (cuDNN's dQ adds with atomics) */
    bool cudnn_pad;        /* cuDNN forward skips Skiparse padding by length where cuDNN can */
    bool sync_each_launch; /* synchronise after every kernel (locates asynchronous faults) */
    bool hif8_fp8;         /* HiF8 GEMMs of bf16-stored activations on E4M3 tensor cores where the
                            * GPU has them (model/cuda/fp8.h), else the bf16 emulation */
    char cudnn_lib[512];   /* libcudnn.so.9 to load ("" = search); the first instance's choice stays */
} osp_cuda_options;

/* bf16, act16 on, auto, not deterministic, cudnn_pad on, no sync, cudnn_lib "" */
osp_cuda_options osp_cuda_options_default(void);
/* Apply the environment overrides above to *o. 0, or -1 with "OSP_X=value: ..." in err. */
int osp_cuda_options_env(osp_cuda_options *o, char *err, size_t errlen);
/* names <-> values; parse gives -1 for an unknown name, name gives "?" for a bad value */
int osp_cuda_gemm_parse(const char *name);
const char *osp_cuda_gemm_name(int gemm);
int osp_cuda_attn_parse(const char *name);
const char *osp_cuda_attn_name(int attn);

/* An instance for CUDA device `device` (an index among the visible ones) with options o (NULL:
 * the defaults), the environment's overrides applied on top. NULL when osp was built without CUDA
 * or no GPU is visible (callers fall back to the CPU); a device index out of range, or an instance
 * already live in this process, stops with one line. */
const osp_backend *osp_backend_cuda_init(int device, const osp_cuda_options *o);
/* Frees everything the instance owns (waits for its stream first) and unbinds it. Tensors from
 * be->alloc are the caller's: free them before. NULL or a non-CUDA backend: nothing. */
void osp_backend_cuda_free(const osp_backend *be);
/* The options in effect (config, then environment), or NULL when be is not a CUDA instance. */
const osp_cuda_options *osp_backend_cuda_options(const osp_backend *be);
/* Replace the options of a live instance, exactly as given (no environment): the tests and
 * benchmarks compare GEMM modes and attention implementations on the same tensors. Every op reads
 * the options when it runs, so the change applies from the next call: change them between steps,
 * never between a forward and its backward (act16 decides how the forward stores what the
 * backward reads). cudnn_lib cannot change once cuDNN is loaded. */
void osp_backend_cuda_set_options(const osp_backend *be, const osp_cuda_options *o);

#endif
