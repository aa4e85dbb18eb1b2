/*
 * model/cuda/fp8.h — HiF8 GEMMs executed on Hopper's FP8 (E4M3) tensor cores.
 *
 * The HiF8 fake-quantised linear layer (model/qlinear.h) multiplies fq(x; sx) = hif8(x sx) / sx by
 * fq(W; sw). Every HiF8 value of a tensor scaled to amax 15 (forward) or 224 (output gradients),
 * times 16 or 2, is an exact E4M3 value down to 2^-12 / 2^-9 (quant/e4m3.h, proved by
 * tests/test_hif8_e4m3.c). So these functions quantise each operand once to E4M3 bytes,
 * q = e4m3(hif8(v s) * shift), and let cuBLASLt multiply E4M3 x E4M3 with fp32 accumulation and
 * the descale factors 1 / (shift s) applied to the product. The result equals the fp32
 * emulation (HiF8 operands in fp32, fp32 GEMM) up to accumulation order and the tail below the
 * floors, which the E4M3 cast rounds; those elements are counted (cuda_fp8_counts).
 *
 * Hopper's FP8 GEMMs take both operands K-major ("TN"): the forward's operands (x [N, I] and
 * W [O, I], both row-major with I contiguous) already are; the data gradient needs W^T and the
 * weight gradient x^T and dy^T, which the quantising kernels write transposed in the same pass.
 * K is padded with zeros to a multiple of 16 (the FP8 kernels' alignment), which adds nothing.
 *
 * Scales are device floats (as the linear_fq16 ops of model/ops.h take them); nothing here
 * synchronises with the host. Functions run on the CUDA backend's stream.
 */
#ifndef OSP_CUDA_FP8_H
#define OSP_CUDA_FP8_H

#include <stdbool.h>
#include <stdint.h>

#include "model/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when the current device has FP8 tensor cores (compute capability 8.9 or newer). */
int cuda_fp8_available(void);

/* y = fq(x; *dsx) fq(W; *dsw)^T + b, x fp32 (x) or bf16-stored (x16), y fp32 (y) or bf16 (y16):
 * exactly one of each pair. x [N, I], W [O, I], b [O] or NULL, y [N, O]. */
void cuda_fp8_linear_fwd(float *y, osp_bf16 *y16, const float *x, const osp_bf16 *x16, const float *dsx,
                         const float *W, const float *dsw, const float *b, int64_t N, int I, int O, bool saturate);

/* g = fq(dy; *dsg):  dx += g fq(W; *dsw);  dW += g^T fq(x; *dsx);  db += colsum(g)  (any may be
 * NULL). The backward of cuda_fp8_linear_fwd with the straight-through estimator. */
void cuda_fp8_linear_bwd(float *dx, float *dW, float *db, const float *dy, const float *dsg, const float *x,
                         const osp_bf16 *x16, const float *dsx, const float *W, const float *dsw, int64_t N, int I,
                         int O, bool saturate);

/* The FFN's first layer: pre = fq(x; *dsx) fq(W; *dsw)^T + b (E4M3 GEMM, bf16 out) and
 * y = gelu_tanh(pre), all bf16-stored (the E4M3 twin of linear_fq_gelu16_fwd; GELU is applied to
 * the bf16-rounded pre-activation). */
void cuda_fp8_linear_gelu_fwd(osp_bf16 *y, osp_bf16 *pre, const osp_bf16 *x, const float *dsx, const float *W,
                              const float *dsw, const float *b, int64_t N, int I, int O, bool saturate);

/* Elements quantised since the last reset (*total), and of those the ones whose scaled HiF8 value
 * was not exact in E4M3 (*inexact: the tail below the floor, or beyond 448 under delayed scaling).
 * Synchronises the stream. */
void cuda_fp8_counts(uint64_t *total, uint64_t *inexact);
void cuda_fp8_reset_counts(void);

#ifdef __cplusplus
}
#endif

#endif
