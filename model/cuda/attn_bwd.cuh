/*
 * model/cuda/attn_bwd.cuh — the flash-attention backward kernels of osp (the algorithm is described at
 * the top of model/cuda/attn_bwd.cu): Delta = rowsum(dO * O), dK/dV, dQ, their launchers and the
 * configurations the backend runs for each padded head dim (attn_dkdv_dispatch, attn_dq_dispatch).
 * A header so that the kernel experiments in dev/cuda/ instantiate the same templates with other
 * tile shapes and compare against exactly what the backend runs.
 */
#ifndef OSP_CUDA_ATTN_BWD_CUH
#define OSP_CUDA_ATTN_BWD_CUH

#include "model/cuda/attn.cuh"

/* Delta[r,h,i] = sum_c dO[r,i,h,c] * O[r,i,h,c] in fp32; one warp per (r, i, h) */
template <typename T>
__global__ void attn_delta_kernel(float *delta, const float *dout, const T *o, int64_t R, int64_t Nq, int H, int d) {
    int lane = threadIdx.x & 31;
    int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t w = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5; w < R * Nq * H; w += nwarps) {
    int64_t h = w % H, ri = w / H; /* ri = r*Nq + i */
    const float *a = dout + (ri * H + h) * d;
    const T *b = o + (ri * H + h) * d;
    float s = 0;
    for (int c = lane; c < d; c += 32) s += a[c] * val_load(b + c);
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) {
        int64_t r = ri / Nq, i = ri % Nq;
        delta[(r * H + h) * Nq + i] = s;
    }
    }
}


/* ------------------------------------------------------------------ backward: dK, dV */

template <int D, int NW, int BQ>
__global__ void __launch_bounds__(NW * 32) attn_bwd_dkdv_kernel(float *dk, float *dv, const bf16 *qb, const bf16 *kb,
                                                                const bf16 *vb, const bf16 *dob, const float *lse,
                                                                const float *delta, const uint8_t *kvalid, int64_t R,
                                                                int64_t Rkv, int Nq, int Nk, int H, int d, float scale,
                                                                int nkt) {
    constexpr int BK = 16 * NW, SD = D + 8, NT = NW * 32, C8 = D / 8;
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

template <int D, int NW, int MT, int BC, int MINB>
__global__ void __launch_bounds__(NW * 32, MINB) attn_bwd_dq_kernel(float *dq, const bf16 *qb, const bf16 *kb,
                                                              const bf16 *vb, const bf16 *dob, const float *lse,
                                                              const float *delta, const uint8_t *kvalid, int64_t Rkv,
                                                              int Nq, int Nk, int H, int d, float scale, int nqt) {
    constexpr int BR = 16 * MT * NW, SD = D + 8, NT = NW * 32, C8 = D / 8;
    constexpr bool QREG = MT == 1; /* Q fragments held in registers */
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
    const int q0 = qt * BR, wrow = warp * 16 * MT;
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

    /* per-row lse (base 2) and Delta of this thread's rows g and g+8 of each m-tile */
    const float *Lr = lse + (r * H + h) * (int64_t)Nq, *Dr = delta + (r * H + h) * (int64_t)Nq;
    float Lrow[MT][2], Drow[MT][2];
    float dqa[MT][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int e = 0; e < 2; e++) {
            int row = q0 + wrow + mt * 16 + (lane >> 2) + 8 * e;
            Lrow[mt][e] = row < Nq ? lse_to_l2(Lr[row]) : INFINITY;
            Drow[mt][e] = row < Nq ? Dr[row] : 0.0f;
        }
#pragma unroll
        for (int i = 0; i < D / 8; i++) dqa[mt][i][0] = dqa[mt][i][1] = dqa[mt][i][2] = dqa[mt][i][3] = 0.0f;
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
        const uint8_t *M = sM + buf * BC;

        /* S = Q K^T and dP = dO V^T */
        float s[MT][BC / 8][4], dp[MT][BC / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int i = 0; i < BC / 8; i++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[mt][i][e] = dp[mt][i][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t qf[MT][4], of[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                if (!QREG) ldsm_x4(qf[mt], a_addr<SD>(sQ, wrow + mt * 16, kk * 16, lane));
                ldsm_x4(of[mt], a_addr<SD>(sO, wrow + mt * 16, kk * 16, lane));
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
                ldsm_x4(b, bnk_addr<SD>(V, np * 16, kk * 16, lane));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma16816(dp[mt][2 * np], of[mt], b[0], b[1]);
                    mma16816(dp[mt][2 * np + 1], of[mt], b[2], b[3]);
                }
            }
        }
        /* dS = P (dP - Delta), P = exp(S*scale - lse), 0 for masked keys */
#pragma unroll
        for (int nt = 0; nt < BC / 8; nt++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                bool ok = M[nt * 8 + 2 * (lane & 3) + e];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    float p0 = ok ? exp2f(s[mt][nt][e] * sl2 - Lrow[mt][0]) : 0.0f;
                    float p1 = ok ? exp2f(s[mt][nt][2 + e] * sl2 - Lrow[mt][1]) : 0.0f;
                    s[mt][nt][e] = p0 * (dp[mt][nt][e] - Drow[mt][0]);
                    s[mt][nt][2 + e] = p1 * (dp[mt][nt][2 + e] - Drow[mt][1]);
                }
            }
        /* dQ += dS K */
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
            for (int dt = 0; dt < D / 16; dt++) {
                uint32_t b[4];
                ldsm_x4_t(b, bkn_addr<SD>(K, kk * 16, dt * 16, lane));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma16816(dqa[mt][2 * dt], pa[mt], b[0], b[1]);
                    mma16816(dqa[mt][2 * dt + 1], pa[mt], b[2], b[3]);
                }
            }
        }
        __syncthreads();
    }
    cp_async_wait<0>();

#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        const int row0 = q0 + wrow + mt * 16 + (lane >> 2), row1 = row0 + 8;
        float *g0 = dq + ((r * Nq + row0) * H + h) * (int64_t)d;
        float *g1 = dq + ((r * Nq + row1) * H + h) * (int64_t)d;
#pragma unroll
        for (int i = 0; i < D / 8; i++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int c = i * 8 + 2 * (lane & 3) + e;
                if (c >= d) continue;
                if (row0 < Nq) g0[c] += dqa[mt][i][e] * scale;
                if (row1 < Nq) g1[c] += dqa[mt][i][2 + e] * scale;
            }
    }
}

/* ------------------------------------------------------------------ launchers */

template <int D, int NW, int BQ>
static void attn_dkdv_launch(float *dk, float *dv, const bf16 *qb, const bf16 *kb, const bf16 *vb, const bf16 *dob,
                             const float *lse, const float *delta, const uint8_t *kvalid, int64_t R, int64_t Rkv,
                             int Nq, int Nk, int H, int d) {
    static int attr_dev = -1; /* the device whose limit is raised (a per-device setting) */
    size_t sm = sizeof(bf16) * (size_t)(2 * 16 * NW + 4 * BQ) * (D + 8) + sizeof(float) * 4 * BQ;
    if (attr_dev != osp_cuda_inst->device) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_dkdv_kernel<D, NW, BQ>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)sm));
        attr_dev = osp_cuda_inst->device;
    }
    int nkt = (Nk + 16 * NW - 1) / (16 * NW);
    int64_t nb = (int64_t)nkt * H * Rkv;
    OSP_CHECK(nb < (1LL << 31), "attention grid too large");
    attn_bwd_dkdv_kernel<D, NW, BQ><<<(unsigned)nb, NW * 32, sm, osp_cuda_inst->stream>>>(
        dk, dv, qb, kb, vb, dob, lse, delta, kvalid, R, Rkv, Nq, Nk, H, d, 1.0f / sqrtf((float)d), nkt);
    CUDA_LAUNCH_CHECK();
}

template <int D, int NW, int MT, int BC, int MINB>
static void attn_dq_launch(float *dq, const bf16 *qb, const bf16 *kb, const bf16 *vb, const bf16 *dob,
                           const float *lse, const float *delta, const uint8_t *kvalid, int64_t R, int64_t Rkv, int Nq,
                           int Nk, int H, int d) {
    constexpr int BR = 16 * MT * NW;
    static int attr_dev = -1; /* the device whose limit is raised (a per-device setting) */
    size_t sm = sizeof(bf16) * (size_t)(2 * BR + 4 * BC) * (D + 8) + 2 * BC;
    if (attr_dev != osp_cuda_inst->device) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_dq_kernel<D, NW, MT, BC, MINB>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)sm));
        attr_dev = osp_cuda_inst->device;
    }
    int nqt = (Nq + BR - 1) / BR;
    int64_t nb = (int64_t)nqt * H * R;
    OSP_CHECK(nb < (1LL << 31), "attention grid too large");
    attn_bwd_dq_kernel<D, NW, MT, BC, MINB><<<(unsigned)nb, NW * 32, sm, osp_cuda_inst->stream>>>(
        dq, qb, kb, vb, dob, lse, delta, kvalid, Rkv, Nq, Nk, H, d, 1.0f / sqrtf((float)d), nqt);
    CUDA_LAUNCH_CHECK();
}

/* Delta [R, H, Nq] from dout and o (fp32, or bf16 storage: T = bf16) in the token-major layout */
template <typename T>
static void attn_delta_launch(float *delta, const float *dout, const T *o, int64_t R, int64_t Nq, int H, int d) {
    int64_t nw = R * Nq * H;
    attn_delta_kernel<<<osp_cuda_blocks(nw * 32, 256), 256, 0, osp_cuda_inst->stream>>>(delta, dout, o, R, Nq, H, d);
    CUDA_LAUNCH_CHECK();
}

/* The backward the backend runs on bf16 head-major q, k, v, dO ([R, H, N, Dp], attn_convert): per
 * padded head dim Dp, the tile shapes measured best (notes/cuda.md; the others are in dev/cuda/). */
static inline void attn_dkdv_dispatch(float *dk, float *dv, const bf16 *qb, const bf16 *kb, const bf16 *vb,
                                      const bf16 *dob, const float *lse, const float *delta, const uint8_t *kvalid,
                                      int64_t R, int64_t Rkv, int Nq, int Nk, int H, int d, int Dp) {
    if (Dp == 32) attn_dkdv_launch<32, 8, 64>(dk, dv, qb, kb, vb, dob, lse, delta, kvalid, R, Rkv, Nq, Nk, H, d);
    else if (Dp == 64) attn_dkdv_launch<64, 8, 64>(dk, dv, qb, kb, vb, dob, lse, delta, kvalid, R, Rkv, Nq, Nk, H, d);
    else attn_dkdv_launch<128, 4, 64>(dk, dv, qb, kb, vb, dob, lse, delta, kvalid, R, Rkv, Nq, Nk, H, d);
}
static inline void attn_dq_dispatch(float *dq, const bf16 *qb, const bf16 *kb, const bf16 *vb, const bf16 *dob,
                                    const float *lse, const float *delta, const uint8_t *kvalid, int64_t R,
                                    int64_t Rkv, int Nq, int Nk, int H, int d, int Dp) {
    if (Dp == 32) attn_dq_launch<32, 8, 1, 64, 1>(dq, qb, kb, vb, dob, lse, delta, kvalid, R, Rkv, Nq, Nk, H, d);
    else if (Dp == 64) attn_dq_launch<64, 8, 1, 64, 1>(dq, qb, kb, vb, dob, lse, delta, kvalid, R, Rkv, Nq, Nk, H, d);
    else attn_dq_launch<128, 4, 2, 32, 1>(dq, qb, kb, vb, dob, lse, delta, kvalid, R, Rkv, Nq, Nk, H, d);
}

#endif
