/*
 * dev/cuda/attn_fwd_pipe.cuh — an experimental forward kernel, not part of the osp library: the
 * flash-attention forward of model/cuda/attn_fwd.cuh (MT = 1) software-pipelined across key tiles.
 * Measured slower than the backend's configuration on an H200 (notes/cuda.md: FWD=g); kept with
 * the other variants of dev/cuda/attn_variants.cu.
 */
#ifndef OSP_DEV_ATTN_FWD_PIPE_CUH
#define OSP_DEV_ATTN_FWD_PIPE_CUH

#include "model/cuda/attn.cuh"

/* ------------------------------------------------------------------ pipelined variant */

/* Same function as attn_fwd_kernel (MT = 1), software-pipelined across key tiles in the spirit
 * of FlashAttention-3's intra-warpgroup overlap: while the exponentials of tile j run on the
 * special-function units, the tensor cores already compute S_{j+1} = Q K_{j+1}^T (the two
 * instruction streams are independent and interleaved in the source). Needs K/V in three
 * shared-memory stages (j, j+1 being read, j+2 in flight) and both S tiles in registers. */
template <int D, int NW, int BC>
__global__ void __launch_bounds__(NW * 32, 1)
    attn_fwd_pipe_kernel(float *o, float *lse, const bf16 *qb, const bf16 *kb, const bf16 *vb, const uint8_t *kvalid,
                         int64_t Rkv, int Nq, int Nk, int H, int d, float scale, int nqt) {
    constexpr int BR = 16 * NW, SD = D + 8, NT = NW * 32, C8 = D / 8, NS = 3;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *sQ = (bf16 *)smem;
    bf16 *sK = sQ + BR * SD;
    bf16 *sV = sK + NS * BC * SD;
    uint8_t *sM = (uint8_t *)(sV + NS * BC * SD);

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
    if (nkt > 0) load_kv(0, 0);
    cp_async_commit();
    if (nkt > 1) load_kv(1, 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    uint32_t qa[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) ldsm_x4(qa[kk], a_addr<SD>(sQ, warp * 16, kk * 16, lane));
    float oacc[D / 8][4], s[BC / 8][4], sn[BC / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.0f;
#pragma unroll
    for (int i = 0; i < BC / 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
        for (int np = 0; np < BC / 16; np++) {
            uint32_t b[4];
            ldsm_x4(b, bnk_addr<SD>(sK, np * 16, kk * 16, lane));
            mma16816(s[2 * np], qa[kk], b[0], b[1]);
            mma16816(s[2 * np + 1], qa[kk], b[2], b[3]);
        }
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

    for (int j = 0; j < nkt; j++) {
        const int cur = j % NS, nxt = (j + 1) % NS;
        if (j + 2 < nkt) load_kv(j + 2, (j + 2) % NS); /* that stage held tile j-1: done */
        cp_async_commit();
        cp_async_wait<1>(); /* tile j+1 has landed */
        __syncthreads();

        if (valid || (j + 1) * BC > Nk) {
            const uint8_t *M = sM + cur * BC;
#pragma unroll
            for (int nt = 0; nt < BC / 8; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++)
                    if (!M[nt * 8 + 2 * (lane & 3) + e]) s[nt][e] = s[nt][2 + e] = -INFINITY;
        }
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

        /* S_{j+1} on the tensor cores, interleaved with the exponentials of S_j. On the last
         * tile the next stage holds stale data: the product is computed and dropped. */
        const bf16 *Kn = sK + nxt * BC * SD;
#pragma unroll
        for (int i = 0; i < BC / 8; i++) sn[i][0] = sn[i][1] = sn[i][2] = sn[i][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
#pragma unroll
            for (int np = 0; np < BC / 16; np++) {
                uint32_t b[4];
                ldsm_x4(b, bnk_addr<SD>(Kn, np * 16, kk * 16, lane));
                mma16816(sn[2 * np], qa[kk], b[0], b[1]);
                mma16816(sn[2 * np + 1], qa[kk], b[2], b[3]);
            }
            if (kk < BC / 8) {
                s[kk][0] = exp2f(s[kk][0] * sl2 - ms0);
                s[kk][1] = exp2f(s[kk][1] * sl2 - ms0);
                s[kk][2] = exp2f(s[kk][2] * sl2 - ms1);
                s[kk][3] = exp2f(s[kk][3] * sl2 - ms1);
            }
        }
#pragma unroll
        for (int nt = D / 16; nt < BC / 8; nt++) {
            s[nt][0] = exp2f(s[nt][0] * sl2 - ms0);
            s[nt][1] = exp2f(s[nt][1] * sl2 - ms0);
            s[nt][2] = exp2f(s[nt][2] * sl2 - ms1);
            s[nt][3] = exp2f(s[nt][3] * sl2 - ms1);
        }
        float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
        for (int nt = 0; nt < BC / 8; nt++) {
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
        const bf16 *V = sV + cur * BC * SD;
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
#pragma unroll
        for (int i = 0; i < BC / 8; i++) {
            s[i][0] = sn[i][0];
            s[i][1] = sn[i][1];
            s[i][2] = sn[i][2];
            s[i][3] = sn[i][3];
        }
        __syncthreads(); /* stage cur is refilled next iteration (tile j+3) */
    }
    cp_async_wait<0>();

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

template <int D, int NW, int BC>
static void attn_fwd_pipe_launch(float *o, float *lse, const bf16 *qb, const bf16 *kb, const bf16 *vb,
                                 const uint8_t *kvalid, int64_t R, int64_t Rkv, int Nq, int Nk, int H, int d) {
    constexpr int BR = 16 * NW;
    static int attr_dev = -1; /* the device whose limit is raised (a per-device setting) */
    size_t sm = sizeof(bf16) * (size_t)(BR + 6 * BC) * (D + 8) + 3 * BC;
    if (attr_dev != osp_cuda_inst->device) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_fwd_pipe_kernel<D, NW, BC>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)sm));
        attr_dev = osp_cuda_inst->device;
    }
    int nqt = (Nq + BR - 1) / BR;
    int64_t nb = (int64_t)nqt * H * R;
    OSP_CHECK(nb < (1LL << 31), "attention grid too large");
    attn_fwd_pipe_kernel<D, NW, BC><<<(unsigned)nb, NW * 32, sm, osp_cuda_inst->stream>>>(
        o, lse, qb, kb, vb, kvalid, Rkv, Nq, Nk, H, d, 1.0f / sqrtf((float)d), nqt);
    CUDA_LAUNCH_CHECK();
}

#endif
