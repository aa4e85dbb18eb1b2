/*
 * model/cuda/norm.cu — LayerNorm (plain, affine, fused with adaLN modulation), RMSNorm, RMSNorm fused
 * with RoPE (the self-attention's q and k), the gated residual, and the deterministic column
 * reductions their parameter gradients need.
 *
 * Row ops run one warp per row (D is a few thousand at most): lanes stride over the row so
 * loads coalesce, and the row statistics are warp-shuffle trees, fixed in order.
 *
 * Parameter gradients (dw, db, dshift, dscale, dgate, bias) are column sums over many rows.
 * Float atomics would make them depend on scheduling, so they run in two passes:
 *   pass 1: block (column strip, row chunk) sums its chunk in a fixed order -> partial[p][D]
 *   pass 2: one thread per (sample, column) adds its partials in index order.
 * A row chunk never crosses a token row r, so every chunk belongs to one sample b = r % B.
 */
#include "model/cuda/common.cuh"
#include "quant/hif8_cuda.cuh"

#define ROWS_PER_BLOCK 8  /* warps per block in the row kernels */
#define RED_CHUNK 128     /* rows per partial sum */
#define RED_TY 8          /* row lanes per block in pass 1 */

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ------------------------------------------------------------------ forward */

/* The forward kernels write y as float or, for bf16 activation storage (ops.h), as bf16 rounded
 * to nearest even from the same fp32 value (val_store). */

/* y = LN(x) then either [* w + b] (w may be NULL) or, when scale != NULL, * (1 + scale[b]) + shift[b].
 * rows = R*N; the sample of row rn is (rn / N) % B. */
template <typename T>
__global__ void ln_fwd_kernel(T *y, float *mean, float *rstd, const float *x, const float *w, const float *bias,
                              const float *shift, const float *scale, int64_t rows, int64_t N, int D, int B,
                              int64_t stride, float eps) {
    int64_t rn = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.y;
    if (rn >= rows) return;
    int lane = threadIdx.x;
    const float *xr = x + rn * D;
    float s = 0;
    for (int c = lane; c < D; c += 32) s += xr[c];
    float m = warp_sum(s) / D;
    float s2 = 0;
    for (int c = lane; c < D; c += 32) {
        float t = xr[c] - m;
        s2 += t * t;
    }
    float rs = rsqrtf(warp_sum(s2) / D + eps);
    if (lane == 0) {
        mean[rn] = m;
        rstd[rn] = rs;
    }
    T *yr = y + rn * D;
    if (scale) {
        int64_t b = (rn / N) % B;
        const float *sh = shift + b * stride, *sc = scale + b * stride;
        for (int c = lane; c < D; c += 32) val_store(&yr[c], (xr[c] - m) * rs * (1.0f + sc[c]) + sh[c]);
    } else {
        for (int c = lane; c < D; c += 32) {
            float h = (xr[c] - m) * rs;
            val_store(&yr[c], w ? h * w[c] + (bias ? bias[c] : 0.0f) : h);
        }
    }
}

template <typename T>
__global__ void rms_fwd_kernel(T *y, float *rstd, const float *x, const float *w, int64_t rows, int D, float eps) {
    int64_t n = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.y;
    if (n >= rows) return;
    int lane = threadIdx.x;
    const float *xr = x + n * D;
    float s2 = 0;
    for (int c = lane; c < D; c += 32) s2 += xr[c] * xr[c];
    float rs = rsqrtf(warp_sum(s2) / D + eps);
    if (lane == 0) rstd[n] = rs;
    for (int c = lane; c < D; c += 32) val_store(&y[n * D + c], xr[c] * rs * w[c]);
}

/* q/k RMSNorm + RoPE in one pass: the row statistic over all D = H*d values, then each lane
 * normalises, scales and rotates whole pairs (2q, 2q+1); pair q is pair j = q % npair of its
 * head. Same operation order as the CPU twin (norm * w, then rotate). y may alias x: a lane
 * reads each pair before writing it. */

template <typename T>
__global__ void qk_norm_rope_fwd_kernel(T *y, float *rstd, const float *x, const float *w, const int32_t *pos,
                                        const osp_rope r, int64_t rows, int D, float eps) {
    int64_t n = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.y;
    if (n >= rows) return;
    int lane = threadIdx.x, D2 = D / 2;
    const float *xr = x + n * D;
    float s2 = 0;
    for (int c = lane; c < D; c += 32) s2 += xr[c] * xr[c];
    float rs = rsqrtf(warp_sum(s2) / D + eps);
    if (lane == 0) rstd[n] = rs;
    const int32_t *p3 = pos + 3 * n;
    for (int q = lane; q < D2; q += 32) {
        float2 c = rope_cs(r, p3, q % r.npair);
        float h0 = xr[2 * q] * rs * w[2 * q], h1 = xr[2 * q + 1] * rs * w[2 * q + 1];
        val_store(&y[n * D + 2 * q], h0 * c.x - h1 * c.y);
        val_store(&y[n * D + 2 * q + 1], h0 * c.y + h1 * c.x);
    }
}

/* Backward of the fused op, dx part: g = R(-theta) dy is written back into dy (the dw
 * reduction reads it there), then dx += rstd * (g*w - x * rstd^2 * mean(g*w*x)). Each lane
 * rereads only the pairs it wrote. */
__global__ void qk_norm_rope_bwd_kernel(float *dx, float *dy, const float *x, const float *rstd, const float *w,
                                        const int32_t *pos, const osp_rope r, int64_t rows, int D) {
    int64_t n = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.y;
    if (n >= rows) return;
    int lane = threadIdx.x, D2 = D / 2;
    const float *xr = x + n * D;
    float *gr = dy + n * D;
    const int32_t *p3 = pos + 3 * n;
    float s = 0;
    for (int q = lane; q < D2; q += 32) {
        float2 c = rope_cs(r, p3, q % r.npair);
        float d0 = gr[2 * q], d1 = gr[2 * q + 1];
        float g0 = d0 * c.x + d1 * c.y, g1 = d1 * c.x - d0 * c.y;
        gr[2 * q] = g0;
        gr[2 * q + 1] = g1;
        s += g0 * w[2 * q] * xr[2 * q] + g1 * w[2 * q + 1] * xr[2 * q + 1];
    }
    float rs = rstd[n];
    float k = warp_sum(s) / D * rs * rs;
    if (!dx) return;
    for (int q = lane; q < D2; q += 32)
        for (int e = 2 * q; e < 2 * q + 2; e++) dx[n * D + e] += rs * (gr[e] * w[e] - xr[e] * k);
}

/* ------------------------------------------------------------------ backward (dx) */

/* dx += rstd * (g - mean(g) - xhat * mean(g*xhat)), g = dy * w (or dy, or dy*(1+scale[b])) */
__global__ void ln_bwd_dx_kernel(float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                                 const float *w, const float *scale, int64_t rows, int64_t N, int D, int B,
                                 int64_t stride) {
    int64_t rn = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.y;
    if (rn >= rows) return;
    int lane = threadIdx.x;
    const float *xr = x + rn * D, *dyr = dy + rn * D;
    const float *gm = w;
    if (scale) gm = scale + ((rn / N) % B) * stride;
    float m = mean[rn], rs = rstd[rn];
    float sg = 0, sgx = 0;
    for (int c = lane; c < D; c += 32) {
        float g = dyr[c] * (gm ? (scale ? 1.0f + gm[c] : gm[c]) : 1.0f);
        sg += g;
        sgx += g * (xr[c] - m) * rs;
    }
    float mg = warp_sum(sg) / D, mgx = warp_sum(sgx) / D;
    for (int c = lane; c < D; c += 32) {
        float g = dyr[c] * (gm ? (scale ? 1.0f + gm[c] : gm[c]) : 1.0f);
        float xh = (xr[c] - m) * rs;
        dx[rn * D + c] += rs * (g - mg - xh * mgx);
    }
}

/* dx += rstd * (dy*w - x * rstd^2 * mean(dy*w*x)) */
__global__ void rms_bwd_dx_kernel(float *dx, const float *dy, const float *x, const float *rstd, const float *w,
                                  int64_t rows, int D) {
    int64_t n = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.y;
    if (n >= rows) return;
    int lane = threadIdx.x;
    const float *xr = x + n * D, *dyr = dy + n * D;
    float s = 0;
    for (int c = lane; c < D; c += 32) s += dyr[c] * w[c] * xr[c];
    float rs = rstd[n];
    float k = warp_sum(s) / D * rs * rs;
    for (int c = lane; c < D; c += 32) dx[n * D + c] += rs * (dyr[c] * w[c] - xr[c] * k);
}

/* ------------------------------------------------------------------ gated residual */

__global__ void gate_res_kernel(float *out, const float *a, const float *gate, int64_t total, int64_t N, int D, int B,
                                int64_t stride) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t rn = t / D;
        int c = (int)(t % D);
        out[t] += a[t] * gate[((rn / N) % B) * stride + c];
    }
}

/* ------------------------------------------------------------------ column reductions */

enum { RED_COLSUM = 0, RED_LN = 1, RED_RMS = 2, RED_GATE = 3, RED_COLSUM_FQ = 4 };

/* Pass 1. blockIdx.x = partial p = r * cps + k (row chunk k of token row r), blockIdx.y = 32-column strip.
 * RED_COLSUM: v1 = a.   RED_LN: v1 = a * xhat(b), v2 = a.   RED_RMS: v1 = a * b * rstd.   RED_GATE: v1 = a * b.
 * RED_COLSUM_FQ: v1 = HiF8 fake-quant of a with scale *fq_ds, a device float (the bias gradient of a
 * quantised layer; the scale may have been computed on the device, so the host never reads it). */
__global__ void colred_partial_kernel(float *part1, float *part2, int mode, const float *a, const float *bsrc,
                                      const float *mean, const float *rstd, int64_t N, int D, int64_t cps,
                                      const float *fq_ds, int fq_sat) {
    float fq_s = mode == RED_COLSUM_FQ ? *fq_ds : 0.0f;
    __shared__ float s1[RED_TY][33], s2[RED_TY][33];
    int64_t p = blockIdx.x;
    int64_t r = p / cps, k = p % cps;
    int c = blockIdx.y * 32 + threadIdx.x;
    int64_t n0 = k * RED_CHUNK, n1 = n0 + RED_CHUNK < N ? n0 + RED_CHUNK : N;
    float v1 = 0, v2 = 0;
    if (c < D) {
        for (int64_t n = n0 + threadIdx.y; n < n1; n += RED_TY) {
            int64_t i = (r * N + n) * D + c;
            float av = a[i];
            if (mode == RED_COLSUM) {
                v1 += av;
            } else if (mode == RED_COLSUM_FQ) {
                v1 += hif8_fq_dev(av, fq_s, fq_sat);
            } else if (mode == RED_LN) {
                int64_t row = r * N + n;
                v1 += av * (bsrc[i] - mean[row]) * rstd[row];
                v2 += av;
            } else if (mode == RED_RMS) {
                v1 += av * bsrc[i] * rstd[r * N + n];
            } else {
                v1 += av * bsrc[i];
            }
        }
    }
    s1[threadIdx.y][threadIdx.x] = v1;
    s2[threadIdx.y][threadIdx.x] = v2;
    __syncthreads();
    if (threadIdx.y == 0 && c < D) {
        float t1 = 0, t2 = 0;
        for (int j = 0; j < RED_TY; j++) {
            t1 += s1[j][threadIdx.x];
            t2 += s2[j][threadIdx.x];
        }
        part1[p * D + c] = t1;
        if (part2) part2[p * D + c] = t2;
    }
}

/* Pass 2: out[b*stride + c] += sum over r = b, b+B, ... < R and chunks k of partial[r*cps+k][c]. */
__global__ void colred_final_kernel(float *out1, float *out2, const float *part1, const float *part2, int64_t R,
                                    int64_t cps, int D, int B, int64_t stride) {
    int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (t >= (int64_t)B * D) return;
    int b = (int)(t / D), c = (int)(t % D);
    float t1 = 0, t2 = 0;
    for (int64_t r = b; r < R; r += B)
        for (int64_t k = 0; k < cps; k++) {
            int64_t p = r * cps + k;
            t1 += part1[p * D + c];
            if (part2) t2 += part2[p * D + c];
        }
    if (out1) out1[b * stride + c] += t1;
    if (out2) out2[b * stride + c] += t2;
}

/* Runs both passes. out2 is only produced in RED_LN mode (the sum of a). */
static void colred(float *out1, float *out2, int mode, const float *a, const float *bsrc, const float *mean,
                   const float *rstd, int64_t R, int64_t N, int D, int B, int64_t stride,
                   const float *fq_ds = NULL, int fq_sat = 0) {
    if (R <= 0 || N <= 0 || D <= 0) return;
    int64_t cps = (N + RED_CHUNK - 1) / RED_CHUNK;
    int64_t np = R * cps;
    int two = mode == RED_LN;
    float *part = (float *)osp_cuda_scratch(SCRATCH_REDUCE, sizeof(float) * (size_t)np * D * (two ? 2 : 1));
    float *part1 = part, *part2 = two ? part + np * D : NULL;
    OSP_CHECK(np < (1LL << 31), "column reduction too large for one grid");
    dim3 grid((unsigned)np, (unsigned)((D + 31) / 32)), block(32, RED_TY);
    colred_partial_kernel<<<grid, block, 0, osp_cuda_inst->stream>>>(part1, part2, mode, a, bsrc, mean, rstd, N, D, cps,
                                                                     fq_ds, fq_sat);
    CUDA_LAUNCH_CHECK();
    colred_final_kernel<<<osp_cuda_blocks((int64_t)B * D, 256), 256, 0, osp_cuda_inst->stream>>>(
        out1, two ? out2 : NULL, part1, part2, R, cps, D, B, stride);
    CUDA_LAUNCH_CHECK();
}

/* ------------------------------------------------------------------ launchers */

static dim3 row_grid(int64_t rows) {
    int64_t g = (rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
    OSP_CHECK(g < (1LL << 31), "too many rows for one grid");
    return dim3((unsigned)g);
}
static const dim3 row_block(32, ROWS_PER_BLOCK);

template <typename T>
static void layernorm_fwd_t(T *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int64_t N,
                            int D, float eps) {
    if (N <= 0) return;
    ln_fwd_kernel<<<row_grid(N), row_block, 0, osp_cuda_inst->stream>>>(y, mean, rstd, x, w, b, NULL, NULL, N, N, D, 1, 0,
                                                                  eps);
    CUDA_LAUNCH_CHECK();
}

void cuda_layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *mean,
                        const float *rstd, const float *w, int64_t N, int D) {
    if (N <= 0) return;
    if (dx) {
        ln_bwd_dx_kernel<<<row_grid(N), row_block, 0, osp_cuda_inst->stream>>>(dx, dy, x, mean, rstd, w, NULL, N, N, D, 1,
                                                                         0);
        CUDA_LAUNCH_CHECK();
    }
    if (dw || db) colred(dw, db, RED_LN, dy, x, mean, rstd, 1, N, D, 1, 0);
}

template <typename T>
static void ln_mod_fwd_t(T *y, float *mean, float *rstd, const float *x, const float *shift, const float *scale,
                         int64_t R, int64_t N, int D, int B, int64_t stride, float eps) {
    if (R * N <= 0) return;
    ln_fwd_kernel<<<row_grid(R * N), row_block, 0, osp_cuda_inst->stream>>>(y, mean, rstd, x, NULL, NULL, shift, scale,
                                                                      R * N, N, D, B, stride, eps);
    CUDA_LAUNCH_CHECK();
}

void cuda_ln_mod_bwd(float *dx, float *dshift, float *dscale, const float *dy, const float *x, const float *mean,
                     const float *rstd, const float *scale, int64_t R, int64_t N, int D, int B, int64_t stride) {
    if (R * N <= 0) return;
    if (dx) {
        ln_bwd_dx_kernel<<<row_grid(R * N), row_block, 0, osp_cuda_inst->stream>>>(dx, dy, x, mean, rstd, NULL, scale,
                                                                             R * N, N, D, B, stride);
        CUDA_LAUNCH_CHECK();
    }
    if (dshift || dscale) colred(dscale, dshift, RED_LN, dy, x, mean, rstd, R, N, D, B, stride);
}

template <typename T>
static void rmsnorm_fwd_t(T *y, float *rstd, const float *x, const float *w, int64_t N, int D, float eps) {
    if (N <= 0) return;
    rms_fwd_kernel<<<row_grid(N), row_block, 0, osp_cuda_inst->stream>>>(y, rstd, x, w, N, D, eps);
    CUDA_LAUNCH_CHECK();
}

void cuda_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *rstd, const float *w,
                      int64_t N, int D) {
    if (N <= 0) return;
    if (dx) {
        rms_bwd_dx_kernel<<<row_grid(N), row_block, 0, osp_cuda_inst->stream>>>(dx, dy, x, rstd, w, N, D);
        CUDA_LAUNCH_CHECK();
    }
    if (dw) colred(dw, NULL, RED_RMS, dy, x, NULL, rstd, 1, N, D, 1, 0);
}

template <typename T>
static void qk_norm_rope_fwd_t(T *y, float *rstd, const float *x, const float *w, const int32_t *pos,
                               const osp_rope *r, int64_t N, int H, float eps) {
    if (N <= 0) return;
    qk_norm_rope_fwd_kernel<<<row_grid(N), row_block, 0, osp_cuda_inst->stream>>>(y, rstd, x, w, pos, *r, N, H * r->d,
                                                                                   eps);
    CUDA_LAUNCH_CHECK();
}

void cuda_qk_norm_rope_bwd(float *dx, float *dw, float *dy, const float *x, const float *rstd, const float *w,
                           const int32_t *pos, const osp_rope *r, int64_t N, int H) {
    if (N <= 0) return;
    int D = H * r->d;
    qk_norm_rope_bwd_kernel<<<row_grid(N), row_block, 0, osp_cuda_inst->stream>>>(dx, dy, x, rstd, w, pos, *r, N, D);
    CUDA_LAUNCH_CHECK();
    if (dw) colred(dw, NULL, RED_RMS, dy, x, NULL, rstd, 1, N, D, 1, 0);
}

/* out[j] = x[s] + y[s] * gate[b(s)], s = idx ? idx[j] : j (idx[j] < 0: a zero row) */
__global__ void gate_res_out_kernel(float *out, const float *x, const float *y, const float *gate, const int32_t *idx,
                                    int64_t total, int64_t N, int D, int B, int64_t stride) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t j = t / D;
        int c = (int)(t % D);
        int64_t s = idx ? idx[j] : j;
        if (s < 0) {
            out[t] = 0.0f;
            continue;
        }
        out[t] = x[s * D + c] + y[s * D + c] * gate[((s / N) % B) * stride + c];
    }
}

void cuda_gate_res_fwd(float *out, const float *x, const float *y, const float *gate, const int32_t *idx, int64_t nout,
                       int64_t R, int64_t N, int D, int B, int64_t stride) {
    int64_t total = (idx ? nout : R * N) * D;
    if (total <= 0) return;
    gate_res_out_kernel<<<osp_cuda_blocks(total, 256), 256, 0, osp_cuda_inst->stream>>>(out, x, y, gate, idx, total, N, D, B,
                                                                                  stride);
    CUDA_LAUNCH_CHECK();
}

void cuda_gate_res_bwd(float *dy, float *dgate, const float *dx, const float *y, const float *gate, int64_t R,
                       int64_t N, int D, int B, int64_t stride) {
    int64_t total = R * N * D;
    if (total <= 0) return;
    if (dy) {
        gate_res_kernel<<<osp_cuda_blocks(total, 256), 256, 0, osp_cuda_inst->stream>>>(dy, dx, gate, total, N, D, B,
                                                                                  stride);
        CUDA_LAUNCH_CHECK();
    }
    if (dgate) colred(dgate, NULL, RED_GATE, dx, y, NULL, NULL, R, N, D, B, stride);
}

void cuda_colsum_add(float *out, const float *dy, int64_t N, int D) {
    colred(out, NULL, RED_COLSUM, dy, NULL, NULL, NULL, 1, N, D, 1, 0);
}

void cuda_colsum_fq_add(float *out, const float *dy, int64_t N, int D, const float *ds, bool saturate) {
    colred(out, NULL, RED_COLSUM_FQ, dy, NULL, NULL, NULL, 1, N, D, 1, 0, ds, saturate);
}

/* ------------------------------------------------------------------ the launchers, fp32 / bf16 y */

void cuda_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b, int64_t N,
                        int D, float eps) {
    layernorm_fwd_t(y, mean, rstd, x, w, b, N, D, eps);
}
void cuda_layernorm16_fwd(osp_bf16 *y, float *mean, float *rstd, const float *x, const float *w, const float *b,
                          int64_t N, int D, float eps) {
    layernorm_fwd_t((__nv_bfloat16 *)y, mean, rstd, x, w, b, N, D, eps);
}
void cuda_ln_mod_fwd(float *y, float *mean, float *rstd, const float *x, const float *shift, const float *scale,
                     int64_t R, int64_t N, int D, int B, int64_t stride, float eps) {
    ln_mod_fwd_t(y, mean, rstd, x, shift, scale, R, N, D, B, stride, eps);
}
void cuda_ln_mod16_fwd(osp_bf16 *y, float *mean, float *rstd, const float *x, const float *shift, const float *scale,
                       int64_t R, int64_t N, int D, int B, int64_t stride, float eps) {
    ln_mod_fwd_t((__nv_bfloat16 *)y, mean, rstd, x, shift, scale, R, N, D, B, stride, eps);
}
void cuda_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t N, int D, float eps) {
    rmsnorm_fwd_t(y, rstd, x, w, N, D, eps);
}
void cuda_rmsnorm16_fwd(osp_bf16 *y, float *rstd, const float *x, const float *w, int64_t N, int D, float eps) {
    rmsnorm_fwd_t((__nv_bfloat16 *)y, rstd, x, w, N, D, eps);
}
void cuda_qk_norm_rope_fwd(float *y, float *rstd, const float *x, const float *w, const int32_t *pos,
                           const osp_rope *r, int64_t N, int H, float eps) {
    qk_norm_rope_fwd_t(y, rstd, x, w, pos, r, N, H, eps);
}
void cuda_qk_norm_rope16_fwd(osp_bf16 *y, float *rstd, const float *x, const float *w, const int32_t *pos,
                             const osp_rope *r, int64_t N, int H, float eps) {
    qk_norm_rope_fwd_t((__nv_bfloat16 *)y, rstd, x, w, pos, r, N, H, eps);
}
