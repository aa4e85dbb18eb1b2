/*
 * model/cuda/attn_bwd.cu — flash attention backward of the CUDA backend (FlashAttention-2 recompute
 * with the saved lse; bf16 mma.sync tensor cores, fp32 softmax/accumulators).
 *
 * Two deterministic kernels instead of FA2's dQ atomics:
 *  (1) dK/dV: one block per (kv row, head, 16*NW keys); each warp owns 16 keys and loops over
 *      every query tile of every q row r with r % Rkv == kv row, recomputing
 *      P^T = exp(K Q^T * scale - lse); dV += P^T dO; dS^T = P^T (V dO^T - Delta); dK += dS^T Q.
 *  (2) dQ: one block per query tile (16*MT*NW rows), looping over key tiles:
 *      dS = P (dO V^T - Delta); dQ += dS K.
 * This recomputes S and dP once more (7 instead of 5 tile products) but every gradient
 * element has exactly one owner thread (plain read-modify-write adds into the caller's
 * buffers, as the contract wants), so the results are bit-reproducible run to run.
 * Delta = rowsum(dO * O) is computed in fp32 from the fp32 tensors first. The kernels are in
 * model/cuda/attn_bwd.cuh (shared with the experiments of dev/cuda/).
 */
#include "model/cuda/attn_bwd.cuh"
#include "model/cuda/cudnn.h"

/* osp's kernels on q, k, v, o in fp32 (q..o) or bf16 (q16..o16) storage */
static void attn_bwd_osp(float *dq, float *dk, float *dv, const float *dout, const float *o, const float *lse,
                         const float *q, const float *k, const float *v, const bf16 *o16, const bf16 *q16,
                         const bf16 *k16, const bf16 *v16, const uint8_t *kvalid, int64_t R, int64_t Rkv, int64_t Nq,
                         int64_t Nk, int H, int d) {
    int Dp = attn_pad_dim(d);
    if (Dp < 0) osp_die("attn_bwd: head dim %d > 128 is not supported by the CUDA backend", d);
    OSP_CHECK(Nq < (1LL << 30) && Nk < (1LL << 30) && Rkv > 0, "attention sequence too long or Rkv <= 0");
    size_t nq = (size_t)R * H * Nq * Dp, nk = (size_t)Rkv * H * Nk * Dp;
    bf16 *qb = (bf16 *)osp_cuda_scratch(SCRATCH_ATTN, sizeof(bf16) * (2 * nq + 2 * nk + 8));
    bf16 *dob = qb + nq, *kb = dob + nq, *vb = kb + nk;
    float *delta = (float *)osp_cuda_scratch(SCRATCH_ATTN2, sizeof(float) * (size_t)R * H * Nq);
    attn_convert(dob, dout, R, Nq, H, d, Dp);
    if (q16) {
        attn_convert16(qb, q16, R, Nq, H, d, Dp);
        attn_convert16(kb, k16, Rkv, Nk, H, d, Dp);
        attn_convert16(vb, v16, Rkv, Nk, H, d, Dp);
        attn_delta_launch(delta, dout, o16, R, Nq, H, d);
    } else {
        attn_convert(qb, q, R, Nq, H, d, Dp);
        attn_convert(kb, k, Rkv, Nk, H, d, Dp);
        attn_convert(vb, v, Rkv, Nk, H, d, Dp);
        attn_delta_launch(delta, dout, o, R, Nq, H, d);
    }
    const int nq_ = (int)Nq, nk_ = (int)Nk;
    if ((dk || dv) && Nk > 0)
        attn_dkdv_dispatch(dk, dv, qb, kb, vb, dob, lse, delta, kvalid, R, Rkv, nq_, nk_, H, d, Dp);
    if (dq) attn_dq_dispatch(dq, qb, kb, vb, dob, lse, delta, kvalid, R, Rkv, nq_, nk_, H, d, Dp);
}

void cuda_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *o, const float *lse,
                   const float *q, const float *k, const float *v, const uint8_t *kvalid, int64_t R, int64_t Rkv,
                   int64_t Nq, int64_t Nk, int H, int d) {
    if (R <= 0 || Nq <= 0 || H <= 0) return;
    /* as in cuda_attn_fwd: cuDNN for attention with Rkv == R at d = 64 / 128 unless the options
     * say attn osp or deterministic (cuDNN's dQ uses atomics) */
    if (Rkv == R && (d == 64 || d == 128) && attn_cudnn_bwd_enabled()) {
        if (attn_cudnn_bwd(dq, dk, dv, dout, o, lse, q, k, v, kvalid, R, Nq, Nk, H, d) == 0) return;
        attn_cudnn_declined("backward", R, Nq, Nk, H, d); /* stops when attn is cudnn */
    }
    attn_bwd_osp(dq, dk, dv, dout, o, lse, q, k, v, NULL, NULL, NULL, NULL, kvalid, R, Rkv, Nq, Nk, H, d);
}

void cuda_attn16_bwd(float *dq, float *dk, float *dv, const float *dout, const osp_bf16 *o, const float *lse,
                     const osp_bf16 *q, const osp_bf16 *k, const osp_bf16 *v, const uint8_t *kvalid, int64_t R,
                     int64_t Rkv, int64_t Nq, int64_t Nk, int H, int d) {
    if (R <= 0 || Nq <= 0 || H <= 0) return;
    if (Rkv == R && (d == 64 || d == 128) && attn_cudnn_bwd_enabled()) {
        if (attn_cudnn_bwd16(dq, dk, dv, dout, o, lse, q, k, v, kvalid, R, Nq, Nk, H, d) == 0) return;
        attn_cudnn_declined("backward", R, Nq, Nk, H, d);
    }
    attn_bwd_osp(dq, dk, dv, dout, NULL, lse, NULL, NULL, NULL, (const bf16 *)o, (const bf16 *)q, (const bf16 *)k,
                 (const bf16 *)v, kvalid, R, Rkv, Nq, Nk, H, d);
}
