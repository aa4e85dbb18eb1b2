/*
 * cuda_attn.cu — flash attention forward and backward for the CUDA backend (FlashAttention-2
 * algorithm, mma.sync bf16 tensor cores, fp32 softmax and accumulators; no N x N matrix).
 *
 * Data path: q/k/v (fp32, [R,N,H*d]) are first converted into bf16 head-major scratch
 * [R,H,N,Dp], zero-padded to Dp in {32,64,128}: one cheap pass that gives the kernels
 * contiguous 16-byte-aligned tiles (cp.async) and lets any d <= 128 share three kernels
 * (the zero columns add nothing to q.k and the padded output columns are not stored).
 *
 * Forward (one block = 16*NW query rows of one (row, head); each warp owns 16 rows): Q is
 * held as mma A-fragments in registers; K/V tiles of 64 keys are double-buffered through
 * shared memory by cp.async; S = QK^T and O += PV on the tensor cores; online softmax in
 * base 2 with the running max/sum in fp32. Saves lse = scale*max + log(sum) (natural log),
 * -inf for a query with no valid key, whose output is 0 (as ops_cpu.c).
 *
 * Backward: two deterministic kernels instead of FA2's atomics. (1) dK/dV: one block per
 * (kv row, head, 16*NW keys), each warp owns 16 keys and loops over every query tile of every
 * q row r with r % Rkv == kv row, recomputing P^T = exp(K Q^T * scale - lse); dV += P^T dO,
 * dS^T = P^T (V dO^T - Delta), dK += dS^T Q. (2) dQ: one block per query tile, looping over
 * key tiles: dQ += dS K. This recomputes S and dP once more (7 instead of 5 tile products)
 * but every gradient element has a single owner, so results are bit-reproducible.
 *
 * Fragment layouts (PTX mma.m16n8k16, g = lane/4, t = lane%4): A regs = (row g, k 2t..),
 * (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..); B regs = (k 2t.., col g), (k 2t+8.., col g);
 * C = (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1). Shared rows are padded by 16 bytes so the
 * eight row addresses of every ldmatrix fall in distinct bank groups.
 */
#include "cuda_common.cuh"

#include <cuda_bf16.h>
#include <math.h>

typedef __nv_bfloat16 bf16;

#define ATT_BC 64      /* keys per tile (forward, dQ) */
#define ATT_BQ_BWD 64  /* queries per tile (dK/dV) */
#define ATT_NW 8       /* warps per block */
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

/* ------------------------------------------------------------------ conversion passes */

/* src fp32 [R, N, H*d] -> dst bf16 [R, H, N, Dp], zero in columns d..Dp; 8 outputs per thread */
__global__ void attn_to_bf16_kernel(bf16 *dst, const float *src, int64_t R, int64_t N, int H, int d, int Dp) {
    int c8n = Dp / 8;
    int64_t total = R * H * N * c8n;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
        int c8 = (int)(t % c8n);
        int64_t rest = t / c8n;
        int64_t n = rest % N, rh = rest / N;
        int64_t h = rh % H, r = rh / H;
        const float *s = src + ((r * N + n) * H + h) * d;
        float v[8];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int c = c8 * 8 + i;
            v[i] = c < d ? s[c] : 0.0f;
        }
        uint4 u = make_uint4(pack_bf16(v[0], v[1]), pack_bf16(v[2], v[3]), pack_bf16(v[4], v[5]), pack_bf16(v[6], v[7]));
        *(uint4 *)(dst + t * 8) = u;
    }
}

/* Delta[r,h,i] = sum_c dO[r,i,h,c] * O[r,i,h,c] in fp32; one warp per (r, i, h) */
__global__ void attn_delta_kernel(float *delta, const float *dout, const float *o, int64_t R, int64_t Nq, int H, int d) {
    int lane = threadIdx.x & 31;
    int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t w = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5; w < R * Nq * H; w += nwarps) {
    int64_t h = w % H, ri = w / H; /* ri = r*Nq + i */
    const float *a = dout + (ri * H + h) * d, *b = o + (ri * H + h) * d;
    float s = 0;
    for (int c = lane; c < d; c += 32) s += a[c] * b[c];
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) {
        int64_t r = ri / Nq, i = ri % Nq;
        delta[(r * H + h) * Nq + i] = s;
    }
    }
}

/* ------------------------------------------------------------------ forward */

template <int D, int NW>
__global__ void __launch_bounds__(NW * 32) attn_fwd_kernel(float *o, float *lse, const bf16 *qb, const bf16 *kb,
                                                           const bf16 *vb, const uint8_t *kvalid, int64_t Rkv, int Nq,
                                                           int Nk, int H, int d, float scale, int nqt) {
    constexpr int BR = 16 * NW, BC = ATT_BC, SD = D + 8, NT = NW * 32, C8 = D / 8;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *sQ = (bf16 *)smem;
    bf16 *sK = sQ + BR * SD;
    bf16 *sV = sK + 2 * BC * SD;
    uint8_t *sM = (uint8_t *)(sV + 2 * BC * SD);

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int64_t bid = blockIdx.x;
    const int qt = (int)(bid % nqt);
    const int64_t rh = bid / nqt;
    const int h = (int)(rh % H);
    const int64_t r = rh / H, rk = r % Rkv;
    const int q0 = qt * BR;
    const float sl2 = scale * LOG2E;

    const bf16 *Qg = qb + ((r * H + h) * (int64_t)Nq + q0) * D;
    const bf16 *Kg = kb + (rk * H + h) * (int64_t)Nk * D;
    const bf16 *Vg = vb + (rk * H + h) * (int64_t)Nk * D;
    const uint8_t *valid = kvalid ? kvalid + rk * Nk : nullptr;

    for (int i = tid; i < BR * C8; i += NT) {
        int row = i / C8, c8 = i % C8;
        bool ok = q0 + row < Nq;
        cp_async16(sQ + row * SD + c8 * 8, ok ? Qg + (int64_t)row * D + c8 * 8 : qb, ok);
    }
    auto load_kv = [&](int j, int buf) {
        int k0 = j * BC;
        for (int i = tid; i < BC * C8; i += NT) {
            int row = i / C8, c8 = i % C8;
            bool ok = k0 + row < Nk;
            int64_t off = (int64_t)(k0 + row) * D + c8 * 8;
            cp_async16(sK + (buf * BC + row) * SD + c8 * 8, ok ? Kg + off : kb, ok);
            cp_async16(sV + (buf * BC + row) * SD + c8 * 8, ok ? Vg + off : vb, ok);
        }
        if (tid < BC) {
            int kk = k0 + tid;
            sM[buf * BC + tid] = (kk < Nk) && (!valid || valid[kk]);
        }
    };
    const int nkt = (Nk + BC - 1) / BC;
    load_kv(0, 0);
    cp_async_commit();

    float oacc[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    uint32_t qa[D / 16][4];

    for (int j = 0; j < nkt; j++) {
        const int buf = j & 1;
        if (j + 1 < nkt) load_kv(j + 1, buf ^ 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        if (j == 0) {
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) ldsm_x4(qa[kk], a_addr<SD>(sQ, warp * 16, kk * 16, lane));
        }
        const bf16 *K = sK + buf * BC * SD, *V = sV + buf * BC * SD;

        float s[BC / 8][4];
#pragma unroll
        for (int i = 0; i < BC / 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
            for (int np = 0; np < BC / 16; np++) {
                uint32_t b[4];
                ldsm_x4(b, bnk_addr<SD>(K, np * 16, kk * 16, lane));
                mma16816(s[2 * np], qa[kk], b[0], b[1]);
                mma16816(s[2 * np + 1], qa[kk], b[2], b[3]);
            }

        if (valid || (j + 1) * BC > Nk) {
            const uint8_t *M = sM + buf * BC;
#pragma unroll
            for (int nt = 0; nt < BC / 8; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++)
                    if (!M[nt * 8 + 2 * (lane & 3) + e]) s[nt][e] = s[nt][2 + e] = -INFINITY;
        }

        /* online softmax (raw-score max; exponentials in base 2 with the scale folded in) */
        float mx0 = m0, mx1 = m1;
#pragma unroll
        for (int nt = 0; nt < BC / 8; nt++) {
            mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
            mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float ms0 = mx0 == -INFINITY ? 0.0f : mx0 * sl2, ms1 = mx1 == -INFINITY ? 0.0f : mx1 * sl2;
        const float al0 = exp2f(m0 * sl2 - ms0), al1 = exp2f(m1 * sl2 - ms1);
        m0 = mx0;
        m1 = mx1;
        float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
        for (int nt = 0; nt < BC / 8; nt++) {
            s[nt][0] = exp2f(s[nt][0] * sl2 - ms0);
            s[nt][1] = exp2f(s[nt][1] * sl2 - ms0);
            s[nt][2] = exp2f(s[nt][2] * sl2 - ms1);
            s[nt][3] = exp2f(s[nt][3] * sl2 - ms1);
            rs0 += s[nt][0] + s[nt][1];
            rs1 += s[nt][2] + s[nt][3];
        }
        l0 = l0 * al0 + rs0;
        l1 = l1 * al1 + rs1;
#pragma unroll
        for (int i = 0; i < D / 8; i++) {
            oacc[i][0] *= al0;
            oacc[i][1] *= al0;
            oacc[i][2] *= al1;
            oacc[i][3] *= al1;
        }

#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++) {
            uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                              pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                uint32_t b[4];
                ldsm_x4_t(b, bkn_addr<SD>(V, kk * 16, dp * 16, lane));
                mma16816(oacc[2 * dp], pa, b[0], b[1]);
                mma16816(oacc[2 * dp + 1], pa, b[2], b[3]);
            }
        }
        __syncthreads(); /* this buffer is refilled by the next iteration's prefetch */
    }
    cp_async_wait<0>(); /* nothing may stay in flight when the block exits (Nk == 0) */

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
    const int row0 = q0 + warp * 16 + (lane >> 2), row1 = row0 + 8;
    float *o0 = o + ((r * Nq + row0) * H + h) * (int64_t)d;
    float *o1 = o + ((r * Nq + row1) * H + h) * (int64_t)d;
#pragma unroll
    for (int i = 0; i < D / 8; i++) {
        int c = i * 8 + 2 * (lane & 3);
        if (row0 < Nq) {
            if (c < d) o0[c] = oacc[i][0] * inv0;
            if (c + 1 < d) o0[c + 1] = oacc[i][1] * inv0;
        }
        if (row1 < Nq) {
            if (c < d) o1[c] = oacc[i][2] * inv1;
            if (c + 1 < d) o1[c + 1] = oacc[i][3] * inv1;
        }
    }
    if ((lane & 3) == 0) {
        float *L = lse + (r * H + h) * (int64_t)Nq;
        if (row0 < Nq) L[row0] = l0 > 0.0f ? m0 * scale + logf(l0) : -INFINITY;
        if (row1 < Nq) L[row1] = l1 > 0.0f ? m1 * scale + logf(l1) : -INFINITY;
    }
}

/* lse (natural log) -> the base-2 offset used by the backward; an empty row gives +inf (P = 0) */
__device__ __forceinline__ float lse_to_l2(float L) { return L == -INFINITY ? INFINITY : L * LOG2E; }

/* ------------------------------------------------------------------ backward: dK, dV */

template <int D, int NW>
__global__ void __launch_bounds__(NW * 32) attn_bwd_dkdv_kernel(float *dk, float *dv, const bf16 *qb, const bf16 *kb,
                                                                const bf16 *vb, const bf16 *dob, const float *lse,
                                                                const float *delta, const uint8_t *kvalid, int64_t R,
                                                                int64_t Rkv, int Nq, int Nk, int H, int d, float scale,
                                                                int nkt) {
    constexpr int BK = 16 * NW, BQ = ATT_BQ_BWD, SD = D + 8, NT = NW * 32, C8 = D / 8;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *sK = (bf16 *)smem;
    bf16 *sV = sK + BK * SD;
    bf16 *sQ = sV + BK * SD;   /* [2][BQ][SD] */
    bf16 *sO = sQ + 2 * BQ * SD; /* dO, [2][BQ][SD] */
    float *sL = (float *)(sO + 2 * BQ * SD); /* [2][BQ] lse (base 2) */
    float *sD = sL + 2 * BQ;                 /* [2][BQ] Delta */

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int64_t bid = blockIdx.x;
    const int kt = (int)(bid % nkt);
    const int64_t rh = bid / nkt;
    const int h = (int)(rh % H);
    const int64_t rk = rh / H;
    const int k0 = kt * BK;
    const float sl2 = scale * LOG2E;
    const int nqt = (Nq + BQ - 1) / BQ;
    const int nr = (int)((R - rk + Rkv - 1) / Rkv);
    const int nit = nr * nqt;

    const bf16 *Kg = kb + ((rk * H + h) * (int64_t)Nk + k0) * D;
    const bf16 *Vg = vb + ((rk * H + h) * (int64_t)Nk + k0) * D;
    for (int i = tid; i < BK * C8; i += NT) {
        int row = i / C8, c8 = i % C8;
        bool ok = k0 + row < Nk;
        cp_async16(sK + row * SD + c8 * 8, ok ? Kg + (int64_t)row * D + c8 * 8 : kb, ok);
        cp_async16(sV + row * SD + c8 * 8, ok ? Vg + (int64_t)row * D + c8 * 8 : vb, ok);
    }
    auto load_q = [&](int it, int buf) {
        int64_t r = rk + (int64_t)(it / nqt) * Rkv;
        int q0 = (it % nqt) * BQ;
        const bf16 *Qg = qb + ((r * H + h) * (int64_t)Nq + q0) * D;
        const bf16 *Og = dob + ((r * H + h) * (int64_t)Nq + q0) * D;
        for (int i = tid; i < BQ * C8; i += NT) {
            int row = i / C8, c8 = i % C8;
            bool ok = q0 + row < Nq;
            int64_t off = (int64_t)row * D + c8 * 8;
            cp_async16(sQ + (buf * BQ + row) * SD + c8 * 8, ok ? Qg + off : qb, ok);
            cp_async16(sO + (buf * BQ + row) * SD + c8 * 8, ok ? Og + off : dob, ok);
        }
        if (tid < BQ) {
            int64_t li = (r * H + h) * (int64_t)Nq + q0 + tid;
            bool ok = q0 + tid < Nq;
            sL[buf * BQ + tid] = ok ? lse_to_l2(lse[li]) : INFINITY;
            sD[buf * BQ + tid] = ok ? delta[li] : 0.0f;
        }
    };
    if (nit > 0) load_q(0, 0);
    cp_async_commit();

    /* validity of this thread's two key rows */
    const int key0 = k0 + warp * 16 + (lane >> 2), key1 = key0 + 8;
    const uint8_t *valid = kvalid ? kvalid + rk * Nk : nullptr;
    const bool kv0 = key0 < Nk && (!valid || valid[key0]);
    const bool kv1 = key1 < Nk && (!valid || valid[key1]);

    float dka[D / 8][4], dva[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++)
#pragma unroll
        for (int e = 0; e < 4; e++) dka[i][e] = dva[i][e] = 0.0f;

    for (int it = 0; it < nit; it++) {
        const int buf = it & 1;
        if (it + 1 < nit) load_q(it + 1, buf ^ 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const bf16 *Q = sQ + buf * BQ * SD, *dO = sO + buf * BQ * SD;
        const float *L = sL + buf * BQ, *Dl = sD + buf * BQ;

        /* S^T = K Q^T for this warp's 16 keys */
        float st[BQ / 8][4];
#pragma unroll
        for (int i = 0; i < BQ / 8; i++) st[i][0] = st[i][1] = st[i][2] = st[i][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t ka[4];
            ldsm_x4(ka, a_addr<SD>(sK, warp * 16, kk * 16, lane));
#pragma unroll
            for (int np = 0; np < BQ / 16; np++) {
                uint32_t b[4];
                ldsm_x4(b, bnk_addr<SD>(Q, np * 16, kk * 16, lane));
                mma16816(st[2 * np], ka, b[0], b[1]);
                mma16816(st[2 * np + 1], ka, b[2], b[3]);
            }
        }
        /* P^T */
#pragma unroll
        for (int nt = 0; nt < BQ / 8; nt++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                float Lq = L[nt * 8 + 2 * (lane & 3) + e];
                st[nt][e] = kv0 ? exp2f(st[nt][e] * sl2 - Lq) : 0.0f;
                st[nt][2 + e] = kv1 ? exp2f(st[nt][2 + e] * sl2 - Lq) : 0.0f;
            }
        /* dV += P^T dO */
#pragma unroll
        for (int kk = 0; kk < BQ / 16; kk++) {
            uint32_t pa[4] = {pack_bf16(st[2 * kk][0], st[2 * kk][1]), pack_bf16(st[2 * kk][2], st[2 * kk][3]),
                              pack_bf16(st[2 * kk + 1][0], st[2 * kk + 1][1]),
                              pack_bf16(st[2 * kk + 1][2], st[2 * kk + 1][3])};
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                uint32_t b[4];
                ldsm_x4_t(b, bkn_addr<SD>(dO, kk * 16, dp * 16, lane));
                mma16816(dva[2 * dp], pa, b[0], b[1]);
                mma16816(dva[2 * dp + 1], pa, b[2], b[3]);
            }
        }
        /* dP^T = V dO^T */
        float dpt[BQ / 8][4];
#pragma unroll
        for (int i = 0; i < BQ / 8; i++) dpt[i][0] = dpt[i][1] = dpt[i][2] = dpt[i][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t va[4];
            ldsm_x4(va, a_addr<SD>(sV, warp * 16, kk * 16, lane));
#pragma unroll
            for (int np = 0; np < BQ / 16; np++) {
                uint32_t b[4];
                ldsm_x4(b, bnk_addr<SD>(dO, np * 16, kk * 16, lane));
                mma16816(dpt[2 * np], va, b[0], b[1]);
                mma16816(dpt[2 * np + 1], va, b[2], b[3]);
            }
        }
        /* dS^T = P^T (dP^T - Delta) */
#pragma unroll
        for (int nt = 0; nt < BQ / 8; nt++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                float Dq = Dl[nt * 8 + 2 * (lane & 3) + e];
                st[nt][e] *= dpt[nt][e] - Dq;
                st[nt][2 + e] *= dpt[nt][2 + e] - Dq;
            }
        /* dK += dS^T Q */
#pragma unroll
        for (int kk = 0; kk < BQ / 16; kk++) {
            uint32_t pa[4] = {pack_bf16(st[2 * kk][0], st[2 * kk][1]), pack_bf16(st[2 * kk][2], st[2 * kk][3]),
                              pack_bf16(st[2 * kk + 1][0], st[2 * kk + 1][1]),
                              pack_bf16(st[2 * kk + 1][2], st[2 * kk + 1][3])};
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                uint32_t b[4];
                ldsm_x4_t(b, bkn_addr<SD>(Q, kk * 16, dp * 16, lane));
                mma16816(dka[2 * dp], pa, b[0], b[1]);
                mma16816(dka[2 * dp + 1], pa, b[2], b[3]);
            }
        }
        __syncthreads();
    }
    cp_async_wait<0>();

    /* each (key, column) has exactly one owner thread: plain read-modify-write adds */
    float *dk0 = dk ? dk + ((rk * Nk + key0) * H + h) * (int64_t)d : nullptr;
    float *dk1 = dk ? dk + ((rk * Nk + key1) * H + h) * (int64_t)d : nullptr;
    float *dv0 = dv ? dv + ((rk * Nk + key0) * H + h) * (int64_t)d : nullptr;
    float *dv1 = dv ? dv + ((rk * Nk + key1) * H + h) * (int64_t)d : nullptr;
#pragma unroll
    for (int i = 0; i < D / 8; i++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            int c = i * 8 + 2 * (lane & 3) + e;
            if (c >= d) continue;
            if (key0 < Nk) {
                if (dk) dk0[c] += dka[i][e] * scale;
                if (dv) dv0[c] += dva[i][e];
            }
            if (key1 < Nk) {
                if (dk) dk1[c] += dka[i][2 + e] * scale;
                if (dv) dv1[c] += dva[i][2 + e];
            }
        }
}

/* ------------------------------------------------------------------ backward: dQ */

template <int D, int NW>
__global__ void __launch_bounds__(NW * 32) attn_bwd_dq_kernel(float *dq, const bf16 *qb, const bf16 *kb,
                                                              const bf16 *vb, const bf16 *dob, const float *lse,
                                                              const float *delta, const uint8_t *kvalid, int64_t Rkv,
                                                              int Nq, int Nk, int H, int d, float scale, int nqt) {
    constexpr int BR = 16 * NW, BC = ATT_BC, SD = D + 8, NT = NW * 32, C8 = D / 8;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *sQ = (bf16 *)smem;
    bf16 *sO = sQ + BR * SD; /* dO */
    bf16 *sK = sO + BR * SD; /* [2][BC][SD] */
    bf16 *sV = sK + 2 * BC * SD;
    uint8_t *sM = (uint8_t *)(sV + 2 * BC * SD);

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int64_t bid = blockIdx.x;
    const int qt = (int)(bid % nqt);
    const int64_t rh = bid / nqt;
    const int h = (int)(rh % H);
    const int64_t r = rh / H, rk = r % Rkv;
    const int q0 = qt * BR;
    const float sl2 = scale * LOG2E;

    const bf16 *Qg = qb + ((r * H + h) * (int64_t)Nq + q0) * D;
    const bf16 *Og = dob + ((r * H + h) * (int64_t)Nq + q0) * D;
    const bf16 *Kg = kb + (rk * H + h) * (int64_t)Nk * D;
    const bf16 *Vg = vb + (rk * H + h) * (int64_t)Nk * D;
    const uint8_t *valid = kvalid ? kvalid + rk * Nk : nullptr;

    for (int i = tid; i < BR * C8; i += NT) {
        int row = i / C8, c8 = i % C8;
        bool ok = q0 + row < Nq;
        int64_t off = (int64_t)row * D + c8 * 8;
        cp_async16(sQ + row * SD + c8 * 8, ok ? Qg + off : qb, ok);
        cp_async16(sO + row * SD + c8 * 8, ok ? Og + off : dob, ok);
    }
    auto load_kv = [&](int j, int buf) {
        int k0 = j * BC;
        for (int i = tid; i < BC * C8; i += NT) {
            int row = i / C8, c8 = i % C8;
            bool ok = k0 + row < Nk;
            int64_t off = (int64_t)(k0 + row) * D + c8 * 8;
            cp_async16(sK + (buf * BC + row) * SD + c8 * 8, ok ? Kg + off : kb, ok);
            cp_async16(sV + (buf * BC + row) * SD + c8 * 8, ok ? Vg + off : vb, ok);
        }
        if (tid < BC) {
            int kk = k0 + tid;
            sM[buf * BC + tid] = (kk < Nk) && (!valid || valid[kk]);
        }
    };
    const int nkt = (Nk + BC - 1) / BC;
    load_kv(0, 0);
    cp_async_commit();

    const int row0 = q0 + warp * 16 + (lane >> 2), row1 = row0 + 8;
    const float *Lr = lse + (r * H + h) * (int64_t)Nq, *Dr = delta + (r * H + h) * (int64_t)Nq;
    const float L0 = row0 < Nq ? lse_to_l2(Lr[row0]) : INFINITY, L1 = row1 < Nq ? lse_to_l2(Lr[row1]) : INFINITY;
    const float D0 = row0 < Nq ? Dr[row0] : 0.0f, D1 = row1 < Nq ? Dr[row1] : 0.0f;

    float dqa[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) dqa[i][0] = dqa[i][1] = dqa[i][2] = dqa[i][3] = 0.0f;
    uint32_t qa[D / 16][4];

    for (int j = 0; j < nkt; j++) {
        const int buf = j & 1;
        if (j + 1 < nkt) load_kv(j + 1, buf ^ 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        if (j == 0) {
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) ldsm_x4(qa[kk], a_addr<SD>(sQ, warp * 16, kk * 16, lane));
        }
        const bf16 *K = sK + buf * BC * SD, *V = sV + buf * BC * SD;
        const uint8_t *M = sM + buf * BC;

        float s[BC / 8][4], dp[BC / 8][4];
#pragma unroll
        for (int i = 0; i < BC / 8; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[i][e] = dp[i][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t oa[4];
            ldsm_x4(oa, a_addr<SD>(sO, warp * 16, kk * 16, lane));
#pragma unroll
            for (int np = 0; np < BC / 16; np++) {
                uint32_t b[4];
                ldsm_x4(b, bnk_addr<SD>(K, np * 16, kk * 16, lane));
                mma16816(s[2 * np], qa[kk], b[0], b[1]);
                mma16816(s[2 * np + 1], qa[kk], b[2], b[3]);
                ldsm_x4(b, bnk_addr<SD>(V, np * 16, kk * 16, lane));
                mma16816(dp[2 * np], oa, b[0], b[1]);
                mma16816(dp[2 * np + 1], oa, b[2], b[3]);
            }
        }
        /* dS = P (dP - Delta), P = exp(S*scale - lse), 0 for masked keys */
#pragma unroll
        for (int nt = 0; nt < BC / 8; nt++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                bool ok = M[nt * 8 + 2 * (lane & 3) + e];
                float p0 = ok ? exp2f(s[nt][e] * sl2 - L0) : 0.0f;
                float p1 = ok ? exp2f(s[nt][2 + e] * sl2 - L1) : 0.0f;
                s[nt][e] = p0 * (dp[nt][e] - D0);
                s[nt][2 + e] = p1 * (dp[nt][2 + e] - D1);
            }
        /* dQ += dS K */
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++) {
            uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                              pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dt = 0; dt < D / 16; dt++) {
                uint32_t b[4];
                ldsm_x4_t(b, bkn_addr<SD>(K, kk * 16, dt * 16, lane));
                mma16816(dqa[2 * dt], pa, b[0], b[1]);
                mma16816(dqa[2 * dt + 1], pa, b[2], b[3]);
            }
        }
        __syncthreads();
    }
    cp_async_wait<0>();

    float *g0 = dq + ((r * Nq + row0) * H + h) * (int64_t)d;
    float *g1 = dq + ((r * Nq + row1) * H + h) * (int64_t)d;
#pragma unroll
    for (int i = 0; i < D / 8; i++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            int c = i * 8 + 2 * (lane & 3) + e;
            if (c >= d) continue;
            if (row0 < Nq) g0[c] += dqa[i][e] * scale;
            if (row1 < Nq) g1[c] += dqa[i][2 + e] * scale;
        }
}

/* ------------------------------------------------------------------ launchers */

static int attn_pad_dim(int d) { return d <= 32 ? 32 : d <= 64 ? 64 : d <= 128 ? 128 : -1; }

static void attn_convert(bf16 *dst, const float *src, int64_t R, int64_t N, int H, int d, int Dp) {
    int64_t total = R * H * N * (Dp / 8);
    if (total <= 0) return;
    attn_to_bf16_kernel<<<osp_cuda_blocks(total, 256), 256, 0, osp_cuda_stream>>>(dst, src, R, N, H, d, Dp);
    CUDA_LAUNCH_CHECK();
}

static size_t fwd_smem(int D, int NW) {
    return sizeof(bf16) * (size_t)(16 * NW + 4 * ATT_BC) * (D + 8) + 2 * ATT_BC;
}
static size_t dkdv_smem(int D, int NW) {
    return sizeof(bf16) * (size_t)(2 * 16 * NW + 4 * ATT_BQ_BWD) * (D + 8) + sizeof(float) * 4 * ATT_BQ_BWD;
}
static size_t dq_smem(int D, int NW) {
    return sizeof(bf16) * (size_t)(2 * 16 * NW + 4 * ATT_BC) * (D + 8) + 2 * ATT_BC;
}

template <int D>
static void attn_fwd_launch(float *o, float *lse, const bf16 *qb, const bf16 *kb, const bf16 *vb,
                            const uint8_t *kvalid, int64_t R, int64_t Rkv, int Nq, int Nk, int H, int d) {
    constexpr int NW = ATT_NW;
    static bool attr = false;
    size_t sm = fwd_smem(D, NW);
    if (!attr) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_fwd_kernel<D, NW>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm));
        attr = true;
    }
    int nqt = (Nq + 16 * NW - 1) / (16 * NW);
    int64_t nb = (int64_t)nqt * H * R;
    OSP_CHECK(nb < (1LL << 31), "attention grid too large");
    attn_fwd_kernel<D, NW><<<(unsigned)nb, NW * 32, sm, osp_cuda_stream>>>(o, lse, qb, kb, vb, kvalid, Rkv, Nq, Nk, H,
                                                                           d, 1.0f / sqrtf((float)d), nqt);
    CUDA_LAUNCH_CHECK();
}

template <int D>
static void attn_bwd_launch(float *dq, float *dk, float *dv, const bf16 *qb, const bf16 *kb, const bf16 *vb,
                            const bf16 *dob, const float *lse, const float *delta, const uint8_t *kvalid, int64_t R,
                            int64_t Rkv, int Nq, int Nk, int H, int d) {
    constexpr int NW = ATT_NW;
    static bool attr = false;
    size_t sm1 = dkdv_smem(D, NW), sm2 = dq_smem(D, NW);
    if (!attr) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_dkdv_kernel<D, NW>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)sm1));
        CUDA_CHECK(
            cudaFuncSetAttribute(attn_bwd_dq_kernel<D, NW>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm2));
        attr = true;
    }
    float scale = 1.0f / sqrtf((float)d);
    if ((dk || dv) && Nk > 0) {
        int nkt = (Nk + 16 * NW - 1) / (16 * NW);
        int64_t nb = (int64_t)nkt * H * Rkv;
        OSP_CHECK(nb < (1LL << 31), "attention grid too large");
        attn_bwd_dkdv_kernel<D, NW><<<(unsigned)nb, NW * 32, sm1, osp_cuda_stream>>>(
            dk, dv, qb, kb, vb, dob, lse, delta, kvalid, R, Rkv, Nq, Nk, H, d, scale, nkt);
        CUDA_LAUNCH_CHECK();
    }
    if (dq && Nq > 0) {
        int nqt = (Nq + 16 * NW - 1) / (16 * NW);
        int64_t nb = (int64_t)nqt * H * R;
        OSP_CHECK(nb < (1LL << 31), "attention grid too large");
        attn_bwd_dq_kernel<D, NW><<<(unsigned)nb, NW * 32, sm2, osp_cuda_stream>>>(dq, qb, kb, vb, dob, lse, delta,
                                                                                   kvalid, Rkv, Nq, Nk, H, d, scale,
                                                                                   nqt);
        CUDA_LAUNCH_CHECK();
    }
}

void cuda_attn_fwd(float *o, float *lse, const float *q, const float *k, const float *v, const uint8_t *kvalid,
                   int64_t R, int64_t Rkv, int64_t Nq, int64_t Nk, int H, int d) {
    if (R <= 0 || Nq <= 0 || H <= 0) return;
    int Dp = attn_pad_dim(d);
    if (Dp < 0) osp_die("attn_fwd: head dim %d > 128 is not supported by the CUDA backend", d);
    OSP_CHECK(Nq < (1LL << 30) && Nk < (1LL << 30) && Rkv > 0, "attention sequence too long or Rkv <= 0");
    size_t nq = (size_t)R * H * Nq * Dp, nk = (size_t)Rkv * H * Nk * Dp;
    bf16 *qb = (bf16 *)osp_cuda_scratch(SCRATCH_ATTN, sizeof(bf16) * (nq + 2 * nk + 8));
    bf16 *kb = qb + nq, *vb = kb + nk;
    attn_convert(qb, q, R, Nq, H, d, Dp);
    attn_convert(kb, k, Rkv, Nk, H, d, Dp);
    attn_convert(vb, v, Rkv, Nk, H, d, Dp);
    switch (Dp) {
    case 32: attn_fwd_launch<32>(o, lse, qb, kb, vb, kvalid, R, Rkv, (int)Nq, (int)Nk, H, d); break;
    case 64: attn_fwd_launch<64>(o, lse, qb, kb, vb, kvalid, R, Rkv, (int)Nq, (int)Nk, H, d); break;
    default: attn_fwd_launch<128>(o, lse, qb, kb, vb, kvalid, R, Rkv, (int)Nq, (int)Nk, H, d); break;
    }
}

void cuda_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *o, const float *lse,
                   const float *q, const float *k, const float *v, const uint8_t *kvalid, int64_t R, int64_t Rkv,
                   int64_t Nq, int64_t Nk, int H, int d) {
    if (R <= 0 || Nq <= 0 || H <= 0) return;
    int Dp = attn_pad_dim(d);
    if (Dp < 0) osp_die("attn_bwd: head dim %d > 128 is not supported by the CUDA backend", d);
    OSP_CHECK(Nq < (1LL << 30) && Nk < (1LL << 30) && Rkv > 0, "attention sequence too long or Rkv <= 0");
    size_t nq = (size_t)R * H * Nq * Dp, nk = (size_t)Rkv * H * Nk * Dp;
    bf16 *qb = (bf16 *)osp_cuda_scratch(SCRATCH_ATTN, sizeof(bf16) * (2 * nq + 2 * nk + 8));
    bf16 *dob = qb + nq, *kb = dob + nq, *vb = kb + nk;
    float *delta = (float *)osp_cuda_scratch(SCRATCH_ATTN2, sizeof(float) * (size_t)R * H * Nq);
    attn_convert(qb, q, R, Nq, H, d, Dp);
    attn_convert(dob, dout, R, Nq, H, d, Dp);
    attn_convert(kb, k, Rkv, Nk, H, d, Dp);
    attn_convert(vb, v, Rkv, Nk, H, d, Dp);
    int64_t nw = R * Nq * H;
    attn_delta_kernel<<<osp_cuda_blocks(nw * 32, 256), 256, 0, osp_cuda_stream>>>(delta, dout, o, R, Nq, H, d);
    CUDA_LAUNCH_CHECK();
    switch (Dp) {
    case 32:
        attn_bwd_launch<32>(dq, dk, dv, qb, kb, vb, dob, lse, delta, kvalid, R, Rkv, (int)Nq, (int)Nk, H, d);
        break;
    case 64:
        attn_bwd_launch<64>(dq, dk, dv, qb, kb, vb, dob, lse, delta, kvalid, R, Rkv, (int)Nq, (int)Nk, H, d);
        break;
    default:
        attn_bwd_launch<128>(dq, dk, dv, qb, kb, vb, dob, lse, delta, kvalid, R, Rkv, (int)Nq, (int)Nk, H, d);
        break;
    }
}
