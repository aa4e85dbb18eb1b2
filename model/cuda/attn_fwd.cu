/*
 * model/cuda/attn_fwd.cu — flash attention forward of the CUDA backend (FlashAttention-2 algorithm on
 * mma.sync bf16 tensor cores, fp32 softmax and accumulators; no N x N matrix), plus the fp32 ->
 * bf16 conversion pass that both directions use.
 *
 * Data path: q/k/v (fp32, [R,N,H*d]) are first converted into bf16 head-major scratch
 * [R,H,N,Dp], zero-padded to Dp in {32,64,128}: one cheap pass (~1% of the attention time at
 * 32k tokens) that gives the kernels contiguous 16-byte-aligned tiles for cp.async and lets
 * any d <= 128 share three kernels (zero columns add nothing to q.k; padded output columns
 * are not stored).
 *
 * Kernel: one block = BR = 16*MT*NW query rows of one (row r, head h); each warp owns MT
 * m-tiles of 16 rows. K/V tiles of BC keys are double-buffered through shared memory by
 * cp.async; S = QK^T and O += PV on the tensor cores; online softmax in base 2 with the
 * scale folded into one FFMA. With MT = 1 the Q fragments stay in registers; with MT = 2
 * each K/V fragment read from shared memory feeds two mma (half the shared-memory traffic
 * per FLOP, FlashAttention-2's layout) and Q is re-read from shared memory instead.
 * Saves lse = scale*max + log(sum) (natural log), -inf for a query with no valid key, whose
 * output is 0 (as model/cpu/backend.c). q row r reads k/v row r % Rkv.
 */
#include "model/cuda/attn.cuh"
#include "model/cuda/cudnn.h"

/* ------------------------------------------------------------------ host helpers */

int attn_pad_dim(int d) { return d <= 32 ? 32 : d <= 64 ? 64 : d <= 128 ? 128 : -1; }

char attn_knob(const char *name, char def) {
    const char *e = getenv(name);
    return e && *e ? e[0] : def;
}

/* 8 outputs (one 16-byte store) per thread; src fp32 or (bf16 activation storage) bf16 */
template <typename S>
__global__ void attn_to_bf16_kernel(bf16 *dst, const S *src, int64_t R, int64_t N, int H, int d, int Dp) {
    int c8n = Dp / 8;
    int64_t total = R * H * N * c8n;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
        int c8 = (int)(t % c8n);
        int64_t rest = t / c8n;
        int64_t n = rest % N, rh = rest / N;
        int64_t h = rh % H, r = rh / H;
        const S *s = src + ((r * N + n) * H + h) * d;
        float v[8];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int c = c8 * 8 + i;
            v[i] = c < d ? val_load(s + c) : 0.0f;
        }
        uint4 u = make_uint4(pack_bf16(v[0], v[1]), pack_bf16(v[2], v[3]), pack_bf16(v[4], v[5]), pack_bf16(v[6], v[7]));
        *(uint4 *)(dst + t * 8) = u;
    }
}

template <typename S>
static void attn_convert_t(bf16 *dst, const S *src, int64_t R, int64_t N, int H, int d, int Dp) {
    int64_t total = R * H * N * (Dp / 8);
    if (total <= 0) return;
    attn_to_bf16_kernel<<<osp_cuda_blocks(total, 256), 256, 0, osp_cuda_inst->stream>>>(dst, src, R, N, H, d, Dp);
    CUDA_LAUNCH_CHECK();
}
void attn_convert(bf16 *dst, const float *src, int64_t R, int64_t N, int H, int d, int Dp) {
    attn_convert_t(dst, src, R, N, H, d, Dp);
}
void attn_convert16(bf16 *dst, const bf16 *src, int64_t R, int64_t N, int H, int d, int Dp) {
    attn_convert_t(dst, src, R, N, H, d, Dp);
}

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

/* osp's kernels on q, k, v in fp32 (q..v) or bf16 (q16..v16) storage; o fp32 */
static void attn_fwd_osp(float *o, float *lse, const float *q, const float *k, const float *v, const bf16 *q16,
                         const bf16 *k16, const bf16 *v16, const uint8_t *kvalid, int64_t R, int64_t Rkv, int64_t Nq,
                         int64_t Nk, int H, int d) {
    int Dp = attn_pad_dim(d);
    if (Dp < 0) osp_die("attn_fwd: head dim %d > 128 is not supported by the CUDA backend", d);
    OSP_CHECK(Nq < (1LL << 30) && Nk < (1LL << 30) && Rkv > 0, "attention sequence too long or Rkv <= 0");
    size_t nq = (size_t)R * H * Nq * Dp, nk = (size_t)Rkv * H * Nk * Dp;
    bf16 *qb = (bf16 *)osp_cuda_scratch(SCRATCH_ATTN, sizeof(bf16) * (nq + 2 * nk + 8));
    bf16 *kb = qb + nq, *vb = kb + nk;
    if (q16) {
        attn_convert16(qb, q16, R, Nq, H, d, Dp);
        attn_convert16(kb, k16, Rkv, Nk, H, d, Dp);
        attn_convert16(vb, v16, Rkv, Nk, H, d, Dp);
    } else {
        attn_convert(qb, q, R, Nq, H, d, Dp);
        attn_convert(kb, k, Rkv, Nk, H, d, Dp);
        attn_convert(vb, v, Rkv, Nk, H, d, Dp);
    }
#define FWD(D_, NW_, MT_, BC_, MINB_) \
    attn_fwd_launch<D_, NW_, MT_, BC_, MINB_>(o, lse, qb, kb, vb, kvalid, R, Rkv, (int)Nq, (int)Nk, H, d)
    if (Dp == 32) FWD(32, 8, 1, 64, 1);
    else if (Dp == 64) FWD(64, 8, 1, 64, 1);
    else switch (attn_knob("OSP_ATTN_FWD", 'b')) {
        case 'a': FWD(128, 8, 1, 64, 1); break;
        case 'c': FWD(128, 4, 2, 32, 1); break;
        case 'g': attn_fwd_pipe_launch<128, 8, 64>(o, lse, qb, kb, vb, kvalid, R, Rkv, (int)Nq, (int)Nk, H, d); break;
        default: FWD(128, 4, 2, 64, 1); break; /* 'b': measured best (notes/cuda.md) */
        }
#undef FWD
}

void cuda_attn_fwd(float *o, float *lse, const float *q, const float *k, const float *v, const uint8_t *kvalid,
                   int64_t R, int64_t Rkv, int64_t Nq, int64_t Nk, int H, int d) {
    if (R <= 0 || Nq <= 0 || H <= 0) return;
    /* one kv row per q row (masked or not), a head dim cuDNN's flash engines serve: cuDNN unless
     * OSP_ATTN_IMPL=osp; a declined call falls through to osp's kernels */
    if (Rkv == R && (d == 64 || d == 128) && attn_cudnn_enabled()) {
        if (attn_cudnn_fwd(o, lse, q, k, v, kvalid, R, Nq, Nk, H, d) == 0) return;
        attn_cudnn_declined("forward", R, Nq, Nk, H, d); /* stops under OSP_ATTN_IMPL=cudnn */
    }
    attn_fwd_osp(o, lse, q, k, v, NULL, NULL, NULL, kvalid, R, Rkv, Nq, Nk, H, d);
}

/* bf16 storage (ops.h attn16_fwd): cuDNN reads q, k, v and writes o in place; osp's kernels
 * (other shapes, declined calls) write fp32 o into scratch, rounded to bf16 after */
void cuda_attn16_fwd(osp_bf16 *o, float *lse, const osp_bf16 *q, osp_bf16 *k, osp_bf16 *v, const uint8_t *kvalid,
                     int64_t R, int64_t Rkv, int64_t Nq, int64_t Nk, int H, int d) {
    if (R <= 0 || Nq <= 0 || H <= 0) return;
    if (Rkv == R && (d == 64 || d == 128) && attn_cudnn_enabled()) {
        if (attn_cudnn_fwd16(o, lse, q, k, v, kvalid, R, Nq, Nk, H, d) == 0) return;
        attn_cudnn_declined("forward", R, Nq, Nk, H, d);
    }
    int64_t no = R * Nq * H * d;
    float *o32 = (float *)osp_cuda_scratch(SCRATCH_ATTN_O, sizeof(float) * (size_t)no);
    attn_fwd_osp(o32, lse, NULL, NULL, NULL, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, kvalid, R, Rkv, Nq,
                 Nk, H, d);
    cuda_to_bf16((bf16 *)o, o32, no);
}
