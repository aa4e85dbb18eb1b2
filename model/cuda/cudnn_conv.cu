/*
 * model/cuda/cudnn_conv.cu — the element-wise kernels around cuDNN attention
 * (model/cuda/cudnn.cu): fp32 <-> bf16 conversion in osp's layout, gradient adds, and the key-mask
 * handling: masked keys and values are zeroed, and the forward's output and lse are corrected for
 * the share the zero keys add to the softmax.
 */
#include "model/cuda/cudnn_conv.cuh"

#define CDN_X_MAX 0.99f /* largest share of the softmax sum the zeroed keys may carry (below) */
/* lse given to padding queries past a row's length: finite (ops.h), and large enough that the
 * backward's P = exp(s - lse) is 0 for them, whatever their scores */
#define CDN_LSE_PAD 1.0e30f

static __global__ void cdn_to_f32_kernel(float *dst, const bf16 *src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(src[i]);
}
static __global__ void cdn_add_kernel(float *dst, const bf16 *src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] += __bfloat162float(src[i]);
}

void cdn_to_f32(float *dst, const bf16 *src, int64_t n) {
    cdn_to_f32_kernel<<<osp_cuda_blocks(n, 256), 256, 0, osp_cuda_inst->stream>>>(dst, src, n);
    CUDA_LAUNCH_CHECK();
}
void cdn_add(float *dst, const bf16 *src, int64_t n) {
    if (!dst) return;
    cdn_add_kernel<<<osp_cuda_blocks(n, 256), 256, 0, osp_cuda_inst->stream>>>(dst, src, n);
    CUDA_LAUNCH_CHECK();
}

/* Key masks (padded Skiparse subsequences, kvalid [R, N]). cuDNN runs unmasked on k, v whose
 * masked rows are zero: each masked key then scores exactly 0 and adds exactly 1 to the softmax
 * sum Z and nothing to its numerator, so with n masked keys in the row
 *   Z_valid = Z - n = Z (1 - x),  x = n exp(-lse),  o = o_cudnn / (1 - x),  lse = lse_cudnn + log(1 - x)
 * (x <= 1 always: the masked keys alone give Z >= n). The scaling by 1 / (1 - x) keeps o's
 * relative error (bf16 from cuDNN); what degrades is 1 - x itself: lse_cudnn carries ~1e-6
 * absolute error (fp32), so 1 - x carries ~1e-6 x / (1 - x) relative error, 1e-4 at x = 0.99,
 * well under bf16's 4e-3. Rows with x > CDN_X_MAX = 0.99 raise a flag and the call goes to osp's
 * masked kernels (typically a subsequence whose real keys all score far below 0 for some
 * query). The backward needs no mask:
 * given the corrected o and lse, P = exp(s - lse) is exact for valid keys, a zero key row adds
 * nothing to dQ, and the masked rows of dK, dV (garbage) are simply not added. */
static __global__ void cdn_to_bf16_masked_kernel(bf16 *dst, const float *src, const uint8_t *kvalid, int64_t HD, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = kvalid[i / HD] ? __float2bfloat16(src[i]) : __float2bfloat16(0.0f);
}
/* one warp per token row: only masked rows are written, so the cost follows the padding, not the
 * tensor (a Skiparse layout is mostly valid) */
static __global__ void cdn_zero_masked_kernel(bf16 *x, const uint8_t *kvalid, int64_t HD, int64_t rows) {
    const int lane = threadIdx.x & 31;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
    for (int64_t j = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5; j < rows; j += warps) {
        if (kvalid[j]) continue;
        for (int64_t c = lane; c < HD; c += 32) x[j * HD + c] = __float2bfloat16(0.0f);
    }
}
static __global__ void cdn_add_masked_kernel(float *dst, const bf16 *src, const uint8_t *kvalid, int64_t HD, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        if (kvalid[i / HD]) dst[i] += __bfloat162float(src[i]);
}
/* One block per row r: the masked keys nmask[r], *flag = 1 if the row has no valid key, and with
 * len: len[r] = 1 + the last valid key (N for a row without any), nmask[r] then counting only the
 * masked keys before it (the ones cuDNN still sees). */
static __global__ void cdn_count_masked_kernel(float *nmask, int *len, int *flag, const uint8_t *kvalid, int64_t N) {
    __shared__ int part[256], last[256];
    int c = 0, l = 0;
    for (int64_t j = threadIdx.x; j < N; j += blockDim.x)
        if (kvalid[(int64_t)blockIdx.x * N + j]) {
            c++;
            l = (int)j + 1;
        }
    part[threadIdx.x] = c;
    last[threadIdx.x] = l;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) {
            part[threadIdx.x] += part[threadIdx.x + w];
            last[threadIdx.x] = max(last[threadIdx.x], last[threadIdx.x + w]);
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        int valid = part[0], span = len && last[0] > 0 ? last[0] : (int)N;
        if (len) len[blockIdx.x] = span;
        nmask[blockIdx.x] = (float)(span - valid);
        if (valid == 0) *flag = 1;
    }
}
/* o ([R, Nq, H*d], fp32, or bf16 and possibly ob itself) = o_cudnn / (1 - x) with x from the
 * uncorrected lse [R, H, Nq]; with len, queries t >= len[r] (padding cuDNN skipped, their o
 * unwritten) get 0. One warp per query row: in place (o == ob), a row without masked keys needs
 * no pass at all, so the common case (Skiparse: padding only in the tail) costs next to nothing. */
template <typename T>
static __global__ void cdn_fix_o_kernel(T *o, const bf16 *ob, const float *lse, const float *nmask, const int *len,
                                        int64_t Nq, int H, int d, int64_t rows) {
    const bool inplace = (const void *)o == (const void *)ob;
    const int lane = threadIdx.x & 31;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5), HD = (int64_t)H * d;
    for (int64_t row = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5; row < rows; row += warps) {
        int64_t r = row / Nq, t = row % Nq;
        T *orow = o + row * HD;
        const bf16 *brow = ob + row * HD;
        if (len && t >= len[r]) {
            for (int64_t c = lane; c < HD; c += 32) val_store(&orow[c], 0.0f);
            continue;
        }
        float nm = nmask[r];
        if (nm == 0.0f && inplace) continue;
        for (int64_t c = lane; c < HD; c += 32) {
            int h = (int)(c / d);
            float x = nm == 0.0f ? 0.0f : nm * expf(-lse[(r * H + h) * Nq + t]);
            val_store(&orow[c], __bfloat162float(brow[c]) / (1.0f - fminf(x, CDN_X_MAX)));
        }
    }
}
/* lse += log(1 - x); flag rows with x > CDN_X_MAX, among the valid queries only when qvalid is given
 * (self-attention over a padded layout: a padding query's output is never used, it only has to
 * be finite, which the clamp guarantees) */
static __global__ void cdn_fix_lse_kernel(float *lse, const float *nmask, const int *len, const uint8_t *qvalid,
                                          int *flag, int64_t Nq, int H, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / (Nq * H), t = i % Nq;
        if (len && t >= len[r]) { /* a padding query cuDNN skipped: P = exp(s - lse) = 0 in the backward */
            lse[i] = CDN_LSE_PAD;
            continue;
        }
        if (nmask[r] == 0.0f) continue;
        float x = nmask[r] * expf(-lse[i]);
        if (x > CDN_X_MAX && (!qvalid || qvalid[r * Nq + t])) *flag = 1;
        lse[i] += log1pf(-fminf(x, CDN_X_MAX));
    }
}

void cdn_to_bf16_masked(bf16 *dst, const float *src, const uint8_t *kvalid, int64_t HD, int64_t n) {
    if (!kvalid) return cuda_to_bf16(dst, src, n);
    cdn_to_bf16_masked_kernel<<<osp_cuda_blocks(n, 256), 256, 0, osp_cuda_inst->stream>>>(dst, src, kvalid, HD, n);
    CUDA_LAUNCH_CHECK();
}
void cdn_zero_masked(uint16_t *x, const uint8_t *kvalid, int64_t HD, int64_t n) {
    if (!kvalid || n <= 0) return;
    const int64_t rows = n / HD;
    cdn_zero_masked_kernel<<<osp_cuda_blocks(32 * rows, 256), 256, 0, osp_cuda_inst->stream>>>((bf16 *)x, kvalid, HD,
                                                                                                 rows);
    CUDA_LAUNCH_CHECK();
}
void cdn_add_masked(float *dst, const bf16 *src, const uint8_t *kvalid, int64_t HD, int64_t n) {
    if (!dst) return;
    if (!kvalid) return cdn_add(dst, src, n);
    cdn_add_masked_kernel<<<osp_cuda_blocks(n, 256), 256, 0, osp_cuda_inst->stream>>>(dst, src, kvalid, HD, n);
    CUDA_LAUNCH_CHECK();
}

/* A device flag cleared before and read after the kernels that may raise it (one sync). */
int *cdn_flag_clear(void) {
    osp_cuda_instance *in = osp_cuda_inst;
    if (!in->cdn_flag) CUDA_CHECK(cudaMalloc((void **)&in->cdn_flag, sizeof(int)));
    CUDA_CHECK(cudaMemsetAsync(in->cdn_flag, 0, sizeof(int), in->stream));
    return in->cdn_flag;
}
int cdn_flag_read(const int *d_flag) {
    int h = 0;
    CUDA_CHECK(cudaMemcpyAsync(&h, d_flag, sizeof(int), cudaMemcpyDeviceToHost, osp_cuda_inst->stream));
    CUDA_CHECK(cudaStreamSynchronize(osp_cuda_inst->stream));
    return h;
}

void cdn_count_masked(float *nmask, int *len, int *flag, const uint8_t *kvalid, int64_t R, int64_t N) {
    cdn_count_masked_kernel<<<(unsigned)R, 256, 0, osp_cuda_inst->stream>>>(nmask, len, flag, kvalid, N);
    CUDA_LAUNCH_CHECK();
}

void cdn_fix_masked(float *o, bf16 *ob, float *lse, const float *nmask, const int *len, const uint8_t *qvalid,
                    int *flag, int64_t R, int64_t Nq, int H, int d) {
    const int64_t rows = R * Nq, nl = R * H * Nq;
    const unsigned nb = osp_cuda_blocks(32 * rows, 256);
    if (o) cdn_fix_o_kernel<<<nb, 256, 0, osp_cuda_inst->stream>>>(o, ob, lse, nmask, len, Nq, H, d, rows);
    else cdn_fix_o_kernel<<<nb, 256, 0, osp_cuda_inst->stream>>>(ob, ob, lse, nmask, len, Nq, H, d, rows);
    CUDA_LAUNCH_CHECK();
    cdn_fix_lse_kernel<<<osp_cuda_blocks(nl, 256), 256, 0, osp_cuda_inst->stream>>>(lse, nmask, len, qvalid, flag, Nq,
                                                                                     H, nl);
    CUDA_LAUNCH_CHECK();
}
