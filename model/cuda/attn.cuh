/*
 * model/cuda/attn.cuh — shared pieces of the flash-attention kernels (model/cuda/attn_fwd.cu,
 * model/cuda/attn_bwd.cu): PTX wrappers for cp.async, ldmatrix and mma.sync m16n8k16 (bf16 in,
 * fp32 accumulate), shared-memory fragment addressing, and the host helpers both use.
 *
 * Fragment layouts (PTX mma.m16n8k16, g = lane/4, t = lane%4): A regs = (row g, k 2t..),
 * (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..); B regs = (k 2t.., col g), (k 2t+8.., col g);
 * C = (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1). Tiles live in shared memory as
 * [rows][D + 8] bf16: the 16-byte pad puts the eight row addresses of every ldmatrix in
 * distinct bank groups (row stride 17, 9 or 5 chunks of 16 bytes).
 *
 * The kernels themselves: model/cuda/attn_fwd.cuh, model/cuda/attn_bwd.cuh. Other tile shapes for
 * head dim 128 (measured, not used) are experiments in dev/cuda/, outside the library.
 */
#ifndef OSP_CUDA_ATTN_CUH
#define OSP_CUDA_ATTN_CUH

#include "model/cuda/common.cuh"

#include <cuda_bf16.h>
#include <math.h>

typedef __nv_bfloat16 bf16;

#define LOG2E 1.4426950408889634f

/* ------------------------------------------------------------------ PTX helpers */

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 16-byte async copy global -> shared; zero-fills when !pred (then src is not read) */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool pred) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(pred ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const bf16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const bf16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

/* Address helpers for a tile stored [rows][SD] (bf16). 'row0'/'col0' is the 16x16 block. */
/* A operand (16 rows x 16 k) from a row-major tile */
template <int SD> __device__ __forceinline__ const bf16 *a_addr(const bf16 *t, int row0, int col0, int lane) {
    return t + (row0 + (lane & 15)) * SD + col0 + (lane >> 4) * 8;
}
/* B operand for two n-tiles where the tile is stored [n][k] (k contiguous): regs = b0,b1 of n-tile
 * n0 then b0,b1 of n-tile n0+8 */
template <int SD> __device__ __forceinline__ const bf16 *bnk_addr(const bf16 *t, int n0, int k0, int lane) {
    return t + (n0 + (lane >> 4) * 8 + (lane & 7)) * SD + k0 + ((lane >> 3) & 1) * 8;
}
/* B operand for two n-tiles where the tile is stored [k][n] (n contiguous), via ldmatrix.trans */
template <int SD> __device__ __forceinline__ const bf16 *bkn_addr(const bf16 *t, int k0, int n0, int lane) {
    return t + (k0 + ((lane >> 3) & 1) * 8 + (lane & 7)) * SD + n0 + (lane >> 4) * 8;
}

/* lse (natural log) -> the base-2 offset used by the backward; an empty row gives +inf (P = 0) */
__device__ __forceinline__ float lse_to_l2(float L) { return L == -INFINITY ? INFINITY : L * LOG2E; }

/* ---- host helpers (model/cuda/attn_fwd.cu) ---- */

/* head dim padded to the kernel's Dp (32, 64, 128); -1 when d > 128 */
int attn_pad_dim(int d);
/* src fp32 [R, N, H*d] -> dst bf16 [R, H, N, Dp], zeros in columns d..Dp */
void attn_convert(bf16 *dst, const float *src, int64_t R, int64_t N, int H, int d, int Dp);
void attn_convert16(bf16 *dst, const bf16 *src, int64_t R, int64_t N, int H, int d, int Dp); /* bf16 source */

#endif
