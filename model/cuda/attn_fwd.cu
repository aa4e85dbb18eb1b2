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
 * output is 0 (as model/cpu/backend.c). q row r reads k/v row r % Rkv. The kernel is in
 * model/cuda/attn_fwd.cuh (shared with the experiments of dev/cuda/).
 */
#include "model/cuda/attn_fwd.cuh"
#include "model/cuda/cudnn.h"

/* ------------------------------------------------------------------ host helpers */

int attn_pad_dim(int d) { return d <= 32 ? 32 : d <= 64 ? 64 : d <= 128 ? 128 : -1; }

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
    attn_fwd_dispatch(o, lse, qb, kb, vb, kvalid, R, Rkv, (int)Nq, (int)Nk, H, d, Dp);
}

void cuda_attn_fwd(float *o, float *lse, const float *q, const float *k, const float *v, const uint8_t *kvalid,
                   int64_t R, int64_t Rkv, int64_t Nq, int64_t Nk, int H, int d) {
    if (R <= 0 || Nq <= 0 || H <= 0) return;
    /* one kv row per q row (masked or not), a head dim cuDNN's flash engines serve: cuDNN unless
     * the option attn is osp; a declined call falls through to osp's kernels */
    if (Rkv == R && (d == 64 || d == 128) && attn_cudnn_enabled()) {
        if (attn_cudnn_fwd(o, lse, q, k, v, kvalid, R, Nq, Nk, H, d) == 0) return;
        attn_cudnn_declined("forward", R, Nq, Nk, H, d); /* stops when attn is cudnn */
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
