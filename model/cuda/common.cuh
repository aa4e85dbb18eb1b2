/*
 * model/cuda/common.cuh — what every CUDA source of the osp backend shares: the checked-call
 * macros (file:line plus a hint), the backend instance (stream, scratch buffers, options and the
 * per-source state of model/cuda/gemm.cu and model/cuda/cudnn.cu), launch-size helpers and the
 * prototypes of the op groups that live in the other .cu files (model/cuda/gemm.cu,
 * model/cuda/norm.cu, model/cuda/attn_fwd.cu). model/cuda/backend.cu assembles the table.
 *
 * Conventions: every pointer handed to an op is device memory (tensors, index tables,
 * positions, masks alike); launches are asynchronous on the bound instance's stream
 * (osp_cuda_inst->stream); ops that return a host value (mse, sumsq, absmax, count_nonfinite)
 * synchronize that stream. Why one bound instance: model/cuda/backend.h.
 */
#ifndef OSP_CUDA_COMMON_CUH
#define OSP_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern "C" {
#include "core/common.h"
#include "model/cuda/backend.h"
#include "model/ops.h"
}

/* A failed CUDA runtime call is never recoverable here: print where and why, then exit. */
#define CUDA_CHECK(call)                                                                              \
    do {                                                                                              \
        cudaError_t err_ = (call);                                                                    \
        if (err_ != cudaSuccess) {                                                                    \
            fprintf(stderr, "osp: error: %sCUDA error at %s:%d: %s -> %s (hint: %s)\n", osp_error_prefix(),    \
                    __FILE__, __LINE__, #call, cudaGetErrorString(err_), osp_cuda_hint(err_));        \
            osp_exit(1);                                                                                  \
        }                                                                                             \
    } while (0)

#define CUBLAS_CHECK(call)                                                                            \
    do {                                                                                              \
        cublasStatus_t st_ = (call);                                                                  \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                                           \
            fprintf(stderr, "osp: error: %scuBLASLt error at %s:%d: %s -> %s (hint: %s)\n", osp_error_prefix(), \
                    __FILE__, __LINE__,                                                               \
                    #call, cublasLt_status_name(st_),                                                 \
                    st_ == CUBLAS_STATUS_NOT_SUPPORTED ? "shape/alignment not supported by this algo" \
                                                       : "check shapes, leading dims and the workspace");  \
            osp_exit(1);                                                                                  \
        }                                                                                             \
    } while (0)

/* After every launch: catches bad launch configurations at the launch site. Asynchronous
 * faults surface at the next synchronizing call; the option sync_each_launch (OSP_CUDA_SYNC=1)
 * finds them here. */
#define CUDA_LAUNCH_CHECK() osp_cuda_launch_check(__FILE__, __LINE__)

const char *osp_cuda_hint(cudaError_t e);
const char *cublasLt_status_name(cublasStatus_t s);
void osp_cuda_launch_check(const char *file, int line);

/* Grow-only device scratch, one buffer per slot; contents are not preserved when it grows.
 * Safe to reuse between ops because everything runs in order on the instance's stream.
 * SCRATCH_CUDNN_WS: cuDNN attention workspace and its fp32 intermediates (model/cuda/cudnn.cu).
 * SCRATCH_GEMM_*: the bf16 operands of one linear_fwd / linear_bwd call (model/cuda/gemm.cu). */
enum {
    SCRATCH_ATTN = 0,
    SCRATCH_ATTN2,
    SCRATCH_REDUCE,
    SCRATCH_REDUCE2,
    SCRATCH_CUDNN_WS,
    SCRATCH_GEMM_X,
    SCRATCH_GEMM_W,
    SCRATCH_GEMM_DY,
    SCRATCH_GEMM_Y, /* fp32 result of a bf16-output GEMM whose bias epilogue is unavailable */
    SCRATCH_ATTN_O, /* fp32 attention output of osp's kernels before it is stored bf16 */
    SCRATCH_NSLOTS
};

struct cuda_gemm_state; /* model/cuda/gemm.cu: cuBLASLt handle, workspace, plan cache */
struct cdn_state;       /* model/cuda/cudnn.cu: cuDNN handle, graph cache, counters */
struct cuda_fp8_state;  /* model/cuda/fp8.cu: E4M3 GEMM handle, plans, descales, counters */

/* One CUDA backend instance (model/cuda/backend.h): everything the ops keep between calls. */
typedef struct osp_cuda_instance {
    osp_backend table;    /* first member: the osp_backend * handed out is the instance's address */
    osp_cuda_options opt; /* in effect: the caller's, then the environment's overrides */
    int device, num_sms;
    cudaStream_t stream;  /* a blocking stream: legacy-default-stream work stays ordered with it */
    void *scratch_ptr[SCRATCH_NSLOTS];
    size_t scratch_size[SCRATCH_NSLOTS];
    unsigned *amax_state; /* HiF8 amax: [0] max bits, [1] ticket, [2] absmax16's result */
    int *cdn_flag;        /* one device int of model/cuda/cudnn_conv.cu */
    struct cuda_gemm_state *gemm;
    struct cdn_state *cdn; /* created on the first cuDNN call */
    struct cuda_fp8_state *fp8; /* created on the first E4M3 GEMM */
    bool fp8_capable;           /* the device has E4M3 tensor cores (compute capability >= 8.9) */
} osp_cuda_instance;

/* the instance of this process, set by osp_backend_cuda_init, NULL after osp_backend_cuda_free */
extern osp_cuda_instance *osp_cuda_inst;

void *osp_cuda_scratch(int slot, size_t bytes);

/* largest power of two (<= 256, >= 4) dividing the address: cuBLASLt's heuristic must not pick an
 * algorithm that assumes more alignment than a sub-view pointer has */
static inline int osp_cuda_ptr_align(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int al = 256;
    while (al > 4 && (a % (uintptr_t)al)) al >>= 1;
    return al;
}

/* the descriptor and layouts of a cached cuBLASLt matmul plan */
static inline void osp_cuda_lt_plan_destroy(cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t la,
                                            cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc) {
    cublasLtMatmulDescDestroy(op);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
}

static inline unsigned osp_cuda_blocks(int64_t work, int threads) {
    int64_t b = (work + threads - 1) / threads;
    if (b > 65535LL * 16) b = 65535LL * 16; /* grid-stride loops cover the rest */
    return (unsigned)(b > 0 ? b : 1);
}

/* RoPE tables of the CUDA backend (built by model/cuda/backend.cu, read by its rotation kernel and by the
 * fused q/k kernels of model/cuda/norm.cu): (cos, sin) of pair j at position p is cs[j * max_pos + p];
 * pairs [0, axis_end0) rotate with the time position, [axis_end0, axis_end1) with the height,
 * the rest with the width. */
struct osp_rope {
    int d, npair, max_pos;
    int axis_end0, axis_end1;
    float2 *cs; /* device */
};

/* (cos, sin) of pair j for a token at positions p3 = (t, h, w); a position outside the table
 * gives (1, 0), leaving the pair unrotated (the CPU stops with an error there instead) */
__device__ __forceinline__ float2 rope_cs(const osp_rope &r, const int32_t *p3, int j) {
    int p = p3[j < r.axis_end0 ? 0 : (j < r.axis_end1 ? 1 : 2)];
    return (p >= 0 && p < r.max_pos) ? r.cs[(size_t)j * r.max_pos + p] : make_float2(1.0f, 0.0f);
}

/* Element access for kernels templated on the storage type: fp32, or bf16 (bf16 activation
 * storage, ops.h), written with round to nearest even. */
__device__ __forceinline__ float val_load(const float *p) { return *p; }
__device__ __forceinline__ float val_load(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void val_store(float *p, float v) { *p = v; }
__device__ __forceinline__ void val_store(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
/* GELU, tanh approximation (Wan2.1's FFN), as cuBLASLt's GELU epilogue computes it */
__device__ __forceinline__ float gelu_tanh_dev(float v) {
    return 0.5f * v * (1.0f + tanhf(GELU_K * (v + 0.044715f * v * v * v)));
}

/* ---- op groups implemented in the other sources (host launchers) ---- */

/* model/cuda/gemm.cu: the instance's cuBLASLt handle, workspace and plan cache */
void cuda_gemm_init(osp_cuda_instance *in);
void cuda_gemm_free(osp_cuda_instance *in);
void cuda_fp8_free(osp_cuda_instance *in); /* model/cuda/fp8.cu; nothing when never used */
/* dst = bf16(src), round to nearest even */
void cuda_to_bf16(__nv_bfloat16 *dst, const float *src, int64_t n);
void cuda_linear_fwd(float *y, const float *x, const float *W, const float *b, int64_t N, int I, int O);
void cuda_linear_bwd(float *dx, float *dW, float *db, const float *dy, const float *x, const float *W, int64_t N,
                     int I, int O);
/* linear_fwd / linear_bwd on HiF8 fake-quantised operands (x with sx, W with sw, dy with sg):
 * the quantiser writes the GEMM operands directly (bf16 mode) instead of fp32 copies. The scales
 * are host floats here (a tiny kernel puts them in device memory, no sync); the *16 entries
 * below take device floats. */
void cuda_linear_fq_fwd(float *y, const float *x, float sx, const float *W, float sw, const float *b, int64_t N, int I,
                        int O, bool saturate);
void cuda_linear_fq_bwd(float *dx, float *dW, float *db, const float *dy, float sg, const float *x, float sx,
                        const float *W, float sw, int64_t N, int I, int O, bool saturate);
/* pre = x W^T + b, y = gelu_tanh(pre) through the GEMM epilogue (ops.h linear_gelu_fwd; a shape
 * without such a cuBLASLt algorithm gets the same numbers from a plain GEMM and a GELU pass) */
void cuda_linear_gelu_fwd(float *y, float *pre, const float *x, const float *W, const float *b, int64_t N, int I,
                          int O);
/* bf16 activation storage (ops.h linear16_*, linear_fq16_*, linear_gelu16_fwd, linear_fq_gelu16_fwd);
 * the HiF8 ones read their scales from device floats (dsx, dsw, dsg: ops.h) */
void cuda_linear16_fwd(float *y, osp_bf16 *y16, const float *x, const osp_bf16 *x16, const float *W, const float *b,
                       int64_t N, int I, int O);
void cuda_linear16_bwd(float *dx, float *dW, float *db, const float *dy, const float *x, const osp_bf16 *x16,
                       const float *W, int64_t N, int I, int O);
void cuda_linear_fq16_fwd(float *y, osp_bf16 *y16, const float *x, const osp_bf16 *x16, const float *dsx,
                          const float *W, const float *dsw, const float *b, int64_t N, int I, int O, bool saturate);
void cuda_linear_fq16_bwd(float *dx, float *dW, float *db, const float *dy, const float *dsg, const float *x,
                          const osp_bf16 *x16, const float *dsx, const float *W, const float *dsw, int64_t N, int I,
                          int O, bool saturate);
void cuda_linear_gelu16_fwd(osp_bf16 *y, osp_bf16 *pre, const osp_bf16 *x, const float *W, const float *b, int64_t N,
                            int I, int O);
void cuda_linear_fq_gelu16_fwd(osp_bf16 *y, osp_bf16 *pre, const osp_bf16 *x, const float *dsx, const float *W,
                               const float *dsw, const float *b, int64_t N, int I, int O, bool saturate);
int cuda_act16_enabled(void); /* options: gemm bf16 (the default) and act16 on */
/* d[0..n) = a, b, c (n <= 3) in stream order, no sync: host-computed scales put where kernels read them */
void cuda_put_floats(float *d, int n, float a, float b, float c);

/* model/cuda/norm.cu (norms, gated residual and the deterministic column reductions) */
void cuda_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int64_t N,
                        int D, float eps);
void cuda_layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *mean,
                        const float *rstd, const float *w, int64_t N, int D);
void cuda_ln_mod_fwd(float *y, float *mean, float *rstd, const float *x, const float *shift, const float *scale,
                     int64_t R, int64_t N, int D, int B, int64_t stride, float eps);
void cuda_ln_mod_bwd(float *dx, float *dshift, float *dscale, const float *dy, const float *x, const float *mean,
                     const float *rstd, const float *scale, int64_t R, int64_t N, int D, int B, int64_t stride);
void cuda_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t N, int D, float eps);
void cuda_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *rstd, const float *w,
                      int64_t N, int D);
void cuda_qk_norm_rope_fwd(float *y, float *rstd, const float *x, const float *w, const int32_t *pos,
                           const osp_rope *r, int64_t N, int H, float eps);
/* the same four forwards writing y as bf16 (ops.h, bf16 activation storage) */
void cuda_layernorm16_fwd(osp_bf16 *y, float *mean, float *rstd, const float *x, const float *w, const float *b,
                          int64_t N, int D, float eps);
void cuda_ln_mod16_fwd(osp_bf16 *y, float *mean, float *rstd, const float *x, const float *shift, const float *scale,
                       int64_t R, int64_t N, int D, int B, int64_t stride, float eps);
void cuda_rmsnorm16_fwd(osp_bf16 *y, float *rstd, const float *x, const float *w, int64_t N, int D, float eps);
void cuda_qk_norm_rope16_fwd(osp_bf16 *y, float *rstd, const float *x, const float *w, const int32_t *pos,
                             const osp_rope *r, int64_t N, int H, float eps);
void cuda_qk_norm_rope_bwd(float *dx, float *dw, float *dy, const float *x, const float *rstd, const float *w,
                           const int32_t *pos, const osp_rope *r, int64_t N, int H);
void cuda_gate_res_fwd(float *out, const float *x, const float *y, const float *gate, const int32_t *idx, int64_t nout,
                       int64_t R, int64_t N, int D, int B, int64_t stride);
void cuda_gate_res_bwd(float *dy, float *dgate, const float *dx, const float *y, const float *gate, int64_t R,
                       int64_t N, int D, int B, int64_t stride);
/* out[c] += sum_n dy[n, c] for c < D (deterministic; the bias gradient) */
void cuda_colsum_add(float *out, const float *dy, int64_t N, int D);
/* out[c] += sum_n fq(dy[n, c]; *ds) (HiF8 fake quantisation on the fly, the scale a device float;
 * same order as colsum_add) */
void cuda_colsum_fq_add(float *out, const float *dy, int64_t N, int D, const float *ds, bool saturate);

/* model/cuda/attn_fwd.cu */
void cuda_attn_fwd(float *o, float *lse, const float *q, const float *k, const float *v, const uint8_t *kvalid,
                   int64_t R, int64_t Rkv, int64_t Nq, int64_t Nk, int H, int d);
void cuda_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *o, const float *lse,
                   const float *q, const float *k, const float *v, const uint8_t *kvalid, int64_t R, int64_t Rkv,
                   int64_t Nq, int64_t Nk, int H, int d);
/* over bf16 storage (ops.h attn16_*) */
void cuda_attn16_fwd(osp_bf16 *o, float *lse, const osp_bf16 *q, osp_bf16 *k, osp_bf16 *v, const uint8_t *kvalid,
                     int64_t R, int64_t Rkv, int64_t Nq, int64_t Nk, int H, int d);
void cuda_attn16_bwd(float *dq, float *dk, float *dv, const float *dout, const osp_bf16 *o, const float *lse,
                     const osp_bf16 *q, const osp_bf16 *k, const osp_bf16 *v, const uint8_t *kvalid, int64_t R,
                     int64_t Rkv, int64_t Nq, int64_t Nk, int H, int d);

#endif
