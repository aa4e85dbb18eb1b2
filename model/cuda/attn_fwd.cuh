/*
 * model/cuda/attn_fwd.cuh — the flash-attention forward kernel of osp (the algorithm is described at
 * the top of model/cuda/attn_fwd.cu), its launcher and attn_fwd_dispatch, the kernel configuration
 * the backend runs for each padded head dim. A header so that the kernel experiments in
 * dev/cuda/ instantiate the same template with other tile shapes and compare against exactly
 * what the backend runs.
 */
#ifndef OSP_CUDA_ATTN_FWD_CUH
#define OSP_CUDA_ATTN_FWD_CUH

#include "model/cuda/attn.cuh"

/* ------------------------------------------------------------------ kernel */

template <int D, int NW, int MT, int BC, int MINB>
__global__ void __launch_bounds__(NW * 32, MINB)
    attn_fwd_kernel(float *o, float *lse, const bf16 *qb, const bf16 *kb, const bf16 *vb, const uint8_t *kvalid,
                    int64_t Rkv, int Nq, int Nk, int H, int d, float scale, int nqt) {
    constexpr int BR = 16 * MT * NW, SD = D + 8, NT = NW * 32, C8 = D / 8;
    constexpr bool QREG = MT == 1; /* Q fragments held in registers */
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *sQ = (bf16 *)smem;
    bf16 *sK = sQ + BR * SD;
    bf16 *sV = sK + 2 * BC * SD;
    uint8_t *sM = (uint8_t *)(sV + 2 * BC * SD);

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int64_t bid = blockIdx.x; /* consecutive blocks share (r, h): K/V stay in L2 */
    const int qt = (int)(bid % nqt);
    const int64_t rh = bid / nqt;
    const int h = (int)(rh % H);
    const int64_t r = rh / H, rk = r % Rkv;
    const int q0 = qt * BR, wrow = warp * 16 * MT;
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

    float oacc[MT][D / 8][4];
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int i = 0; i < D / 8; i++) oacc[mt][i][0] = oacc[mt][i][1] = oacc[mt][i][2] = oacc[mt][i][3] = 0.0f;
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.0f;
    }
    uint32_t qa[QREG ? D / 16 : 1][4];

    for (int j = 0; j < nkt; j++) {
        const int buf = j & 1;
        if (j + 1 < nkt) load_kv(j + 1, buf ^ 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        if (QREG && j == 0) {
#pragma unroll
            for (int kk = 0; kk < (QREG ? D / 16 : 0); kk++) ldsm_x4(qa[kk], a_addr<SD>(sQ, wrow, kk * 16, lane));
        }
        const bf16 *K = sK + buf * BC * SD, *V = sV + buf * BC * SD;

        /* S = Q K^T */
        float s[MT][BC / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int i = 0; i < BC / 8; i++) s[mt][i][0] = s[mt][i][1] = s[mt][i][2] = s[mt][i][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t qf[MT][4];
            if (!QREG) {
#pragma unroll
                for (int mt = 0; mt < MT; mt++) ldsm_x4(qf[mt], a_addr<SD>(sQ, wrow + mt * 16, kk * 16, lane));
            }
#pragma unroll
            for (int np = 0; np < BC / 16; np++) {
                uint32_t b[4];
                ldsm_x4(b, bnk_addr<SD>(K, np * 16, kk * 16, lane));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    const uint32_t *a = QREG ? qa[QREG ? kk : 0] : qf[mt];
                    mma16816(s[mt][2 * np], a, b[0], b[1]);
                    mma16816(s[mt][2 * np + 1], a, b[2], b[3]);
                }
            }
        }

        if (valid || (j + 1) * BC > Nk) {
            const uint8_t *M = sM + buf * BC;
#pragma unroll
            for (int nt = 0; nt < BC / 8; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++)
                    if (!M[nt * 8 + 2 * (lane & 3) + e]) {
#pragma unroll
                        for (int mt = 0; mt < MT; mt++) s[mt][nt][e] = s[mt][nt][2 + e] = -INFINITY;
                    }
        }

        /* online softmax (raw-score max; exponentials in base 2 with the scale folded in) */
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            float mx0 = m[mt][0], mx1 = m[mt][1];
#pragma unroll
            for (int nt = 0; nt < BC / 8; nt++) {
                mx0 = fmaxf(mx0, fmaxf(s[mt][nt][0], s[mt][nt][1]));
                mx1 = fmaxf(mx1, fmaxf(s[mt][nt][2], s[mt][nt][3]));
            }
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
            const float ms0 = mx0 == -INFINITY ? 0.0f : mx0 * sl2, ms1 = mx1 == -INFINITY ? 0.0f : mx1 * sl2;
            const float al0 = exp2f(m[mt][0] * sl2 - ms0), al1 = exp2f(m[mt][1] * sl2 - ms1);
            m[mt][0] = mx0;
            m[mt][1] = mx1;
            float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
            for (int nt = 0; nt < BC / 8; nt++) {
                s[mt][nt][0] = exp2f(s[mt][nt][0] * sl2 - ms0);
                s[mt][nt][1] = exp2f(s[mt][nt][1] * sl2 - ms0);
                s[mt][nt][2] = exp2f(s[mt][nt][2] * sl2 - ms1);
                s[mt][nt][3] = exp2f(s[mt][nt][3] * sl2 - ms1);
                rs0 += s[mt][nt][0] + s[mt][nt][1];
                rs1 += s[mt][nt][2] + s[mt][nt][3];
            }
            l[mt][0] = l[mt][0] * al0 + rs0;
            l[mt][1] = l[mt][1] * al1 + rs1;
#pragma unroll
            for (int i = 0; i < D / 8; i++) {
                oacc[mt][i][0] *= al0;
                oacc[mt][i][1] *= al0;
                oacc[mt][i][2] *= al1;
                oacc[mt][i][3] *= al1;
            }
        }

        /* O += P V */
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++) {
            uint32_t pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                pa[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                pa[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                pa[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                pa[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                uint32_t b[4];
                ldsm_x4_t(b, bkn_addr<SD>(V, kk * 16, dp * 16, lane));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma16816(oacc[mt][2 * dp], pa[mt], b[0], b[1]);
                    mma16816(oacc[mt][2 * dp + 1], pa[mt], b[2], b[3]);
                }
            }
        }
        __syncthreads(); /* this buffer is refilled by the next iteration's prefetch */
    }
    cp_async_wait<0>(); /* nothing may stay in flight when the block exits (Nk == 0) */

#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float l0 = l[mt][0], l1 = l[mt][1];
        l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
        l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
        const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
        const int row0 = q0 + wrow + mt * 16 + (lane >> 2), row1 = row0 + 8;
        float *o0 = o + ((r * Nq + row0) * H + h) * (int64_t)d;
        float *o1 = o + ((r * Nq + row1) * H + h) * (int64_t)d;
#pragma unroll
        for (int i = 0; i < D / 8; i++) {
            int c = i * 8 + 2 * (lane & 3);
            if (row0 < Nq) {
                if (c < d) o0[c] = oacc[mt][i][0] * inv0;
                if (c + 1 < d) o0[c + 1] = oacc[mt][i][1] * inv0;
            }
            if (row1 < Nq) {
                if (c < d) o1[c] = oacc[mt][i][2] * inv1;
                if (c + 1 < d) o1[c + 1] = oacc[mt][i][3] * inv1;
            }
        }
        if ((lane & 3) == 0) {
            float *L = lse + (r * H + h) * (int64_t)Nq;
            if (row0 < Nq) L[row0] = l0 > 0.0f ? m[mt][0] * scale + logf(l0) : -INFINITY;
            if (row1 < Nq) L[row1] = l1 > 0.0f ? m[mt][1] * scale + logf(l1) : -INFINITY;
        }
    }
}

/* ------------------------------------------------------------------ launcher */

template <int D, int NW, int MT, int BC, int MINB>
static void attn_fwd_launch(float *o, float *lse, const bf16 *qb, const bf16 *kb, const bf16 *vb,
                            const uint8_t *kvalid, int64_t R, int64_t Rkv, int Nq, int Nk, int H, int d) {
    constexpr int BR = 16 * MT * NW;
    static int attr_dev = -1; /* the device whose limit is raised (a per-device setting) */
    size_t sm = sizeof(bf16) * (size_t)(BR + 4 * BC) * (D + 8) + 2 * BC;
    if (attr_dev != osp_cuda_inst->device) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_fwd_kernel<D, NW, MT, BC, MINB>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm));
        attr_dev = osp_cuda_inst->device;
    }
    int nqt = (Nq + BR - 1) / BR;
    int64_t nb = (int64_t)nqt * H * R;
    OSP_CHECK(nb < (1LL << 31), "attention grid too large");
    attn_fwd_kernel<D, NW, MT, BC, MINB><<<(unsigned)nb, NW * 32, sm, osp_cuda_inst->stream>>>(
        o, lse, qb, kb, vb, kvalid, Rkv, Nq, Nk, H, d, 1.0f / sqrtf((float)d), nqt);
    CUDA_LAUNCH_CHECK();
}

/* The forward the backend runs on bf16 head-major q, k, v ([R, H, N, Dp], attn_convert): per
 * padded head dim Dp, the tile shape measured best (notes/cuda.md; the others are in dev/cuda/). */
static inline void attn_fwd_dispatch(float *o, float *lse, const bf16 *qb, const bf16 *kb, const bf16 *vb,
                                     const uint8_t *kvalid, int64_t R, int64_t Rkv, int Nq, int Nk, int H, int d,
                                     int Dp) {
    if (Dp == 32) attn_fwd_launch<32, 8, 1, 64, 1>(o, lse, qb, kb, vb, kvalid, R, Rkv, Nq, Nk, H, d);
    else if (Dp == 64) attn_fwd_launch<64, 8, 1, 64, 1>(o, lse, qb, kb, vb, kvalid, R, Rkv, Nq, Nk, H, d);
    else attn_fwd_launch<128, 4, 2, 64, 1>(o, lse, qb, kb, vb, kvalid, R, Rkv, Nq, Nk, H, d);
}

#endif
