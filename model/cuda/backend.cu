/*
 * model/cuda/backend.cu — the CUDA backend of osp: memory, the small elementwise ops, RoPE, layout
 * gathers, losses, reductions and the optimizer, plus the osp_backend table that also points
 * at the GEMMs (model/cuda/gemm.cu), norms (model/cuda/norm.cu) and attention (model/cuda/attn_fwd.cu).
 * Every op is the twin of the one in model/cpu/backend.c; tests/test_ops_gpu.c compares them.
 * Also the instance calls of model/cuda/backend.h (init binds the process's one instance, free
 * releases what it owns).
 *
 * Reductions that return a number to the host (mse, sumsq, absmax, count_nonfinite) are
 * deterministic: a fixed grid (a function of n only) of block partials in double, summed
 * by one block in a fixed tree order. No float atomics anywhere in the backend: the HiF8
 * amax (absmax16, hif8_scale_dev) is an integer max over bits, the same in any order.
 */
#include "model/cuda/common.cuh"
#include "model/cuda/fp8.h"

#include <math.h>
#include <string.h>

#include "model/cuda/cudnn.h"
#include "quant/hif8_cuda.cuh"

osp_cuda_instance *osp_cuda_inst;

/* ------------------------------------------------------------------ errors */

const char *osp_cuda_hint(cudaError_t e) {
    switch (e) {
    case cudaErrorMemoryAllocation: return "out of GPU memory: smaller batch/resolution or fewer layers resident";
    case cudaErrorNoDevice: return "no GPU visible: check CUDA_VISIBLE_DEVICES and the driver";
    case cudaErrorInvalidConfiguration: return "bad launch configuration (grid/block/shared memory size)";
    case cudaErrorIllegalAddress: return "a kernel read/wrote out of bounds: rerun with OSP_CUDA_SYNC=1 to locate it";
    case cudaErrorInsufficientDriver: return "the driver is older than the CUDA runtime";
    default: return "rerun with OSP_CUDA_SYNC=1 to find the failing kernel";
    }
}

const char *cublasLt_status_name(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
    }
}

void osp_cuda_launch_check(const char *file, int line) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && osp_cuda_inst->opt.sync_each_launch) e = cudaStreamSynchronize(osp_cuda_inst->stream);
    if (e != cudaSuccess) {
        fprintf(stderr, "osp: error: CUDA kernel launch failed at %s:%d: %s (hint: %s)\n", file, line, cudaGetErrorString(e),
                osp_cuda_hint(e));
        osp_exit(1);
    }
}

/* ------------------------------------------------------------------ memory */

void *osp_cuda_scratch(int slot, size_t bytes) {
    osp_cuda_instance *in = osp_cuda_inst;
    if (bytes > in->scratch_size[slot]) {
        if (in->scratch_ptr[slot]) CUDA_CHECK(cudaFree(in->scratch_ptr[slot])); /* cudaFree waits for users */
        size_t sz = bytes + bytes / 4;                                           /* headroom: fewer regrowths */
        CUDA_CHECK(cudaMalloc(&in->scratch_ptr[slot], sz));
        in->scratch_size[slot] = sz;
    }
    return in->scratch_ptr[slot];
}

static void *cu_alloc(size_t bytes) {
    void *p = NULL;
    if (!bytes) bytes = 16;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        fprintf(stderr, "osp: error: cudaMalloc of %zu bytes failed: %s (%zu of %zu MiB free; hint: %s)\n", bytes,
                cudaGetErrorString(e), fr >> 20, tot >> 20, osp_cuda_hint(e));
        osp_exit(1);
    }
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, osp_cuda_inst->stream));
    return p;
}

static void cu_free(void *p) {
    if (p) CUDA_CHECK(cudaFree(p));
}

static void cu_upload(void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, osp_cuda_inst->stream));
    CUDA_CHECK(cudaStreamSynchronize(osp_cuda_inst->stream)); /* the host buffer may be reused at once */
}

static void cu_download(void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, osp_cuda_inst->stream));
    CUDA_CHECK(cudaStreamSynchronize(osp_cuda_inst->stream));
}

static void cu_copy(void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, osp_cuda_inst->stream));
}

static void cu_zero(void *dst, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, osp_cuda_inst->stream));
}

static void cu_sync(void) { CUDA_CHECK(cudaStreamSynchronize(osp_cuda_inst->stream)); }

/* ------------------------------------------------------------------ elementwise */

#define GRID_STRIDE(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)
#define EW_LAUNCH(kernel, n, ...)                                                                  \
    do {                                                                                           \
        if ((n) > 0) {                                                                             \
            kernel<<<osp_cuda_blocks((n), 256), 256, 0, osp_cuda_inst->stream>>>(__VA_ARGS__);     \
            CUDA_LAUNCH_CHECK();                                                                   \
        }                                                                                          \
    } while (0)

__global__ void gelu_fwd_kernel(float *y, const float *x, int64_t n) { GRID_STRIDE(i, n) y[i] = gelu_tanh_dev(x[i]); }
template <typename T> /* x fp32, or bf16 (the pre-activation in bf16 storage) */
__global__ void gelu_bwd_kernel(float *dx, const float *dy, const T *x, int64_t n) {
    GRID_STRIDE(i, n) {
        float v = val_load(x + i);
        float t = tanhf(GELU_K * (v + 0.044715f * v * v * v));
        float d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
        dx[i] += dy[i] * d;
    }
}
__global__ void silu_fwd_kernel(float *y, const float *x, int64_t n) {
    GRID_STRIDE(i, n) y[i] = x[i] / (1.0f + expf(-x[i]));
}
__global__ void silu_bwd_kernel(float *dx, const float *dy, const float *x, int64_t n) {
    GRID_STRIDE(i, n) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}
__global__ void add_kernel(float *y, const float *x, int64_t n) { GRID_STRIDE(i, n) y[i] += x[i]; }
__global__ void axpby_kernel(float *y, float a, const float *x, float b, int64_t n) {
    GRID_STRIDE(i, n) y[i] = a * x[i] + b * y[i];
}
__global__ void scale_kernel(float *x, float a, int64_t n) { GRID_STRIDE(i, n) x[i] *= a; }

static void cu_gelu_fwd(float *y, const float *x, int64_t n) { EW_LAUNCH(gelu_fwd_kernel, n, y, x, n); }
static void cu_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
    EW_LAUNCH(gelu_bwd_kernel, n, dx, dy, x, n);
}
static void cu_gelu16_bwd(float *dx, const float *dy, const osp_bf16 *x, int64_t n) {
    EW_LAUNCH(gelu_bwd_kernel, n, dx, dy, (const __nv_bfloat16 *)x, n);
}
static void cu_silu_fwd(float *y, const float *x, int64_t n) { EW_LAUNCH(silu_fwd_kernel, n, y, x, n); }
static void cu_silu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
    EW_LAUNCH(silu_bwd_kernel, n, dx, dy, x, n);
}
static void cu_add(float *y, const float *x, int64_t n) { EW_LAUNCH(add_kernel, n, y, x, n); }
static void cu_axpby(float *y, float a, const float *x, float b, int64_t n) {
    EW_LAUNCH(axpby_kernel, n, y, a, x, b, n);
}
static void cu_scale(float *x, float a, int64_t n) { EW_LAUNCH(scale_kernel, n, x, a, n); }

/* ------------------------------------------------------------------ RoPE */

/* Tables built in float64 on the host (as the Wan reference), stored as fp32 (cos, sin)
 * pairs [npair][max_pos] (struct osp_rope in model/cuda/common.cuh); the rotation runs in fp32. */

static osp_rope *cu_rope_init(int d, int max_pos, double theta) {
    osp_rope *r = (osp_rope *)osp_calloc(1, sizeof *r);
    r->d = d;
    r->npair = d / 2;
    r->max_pos = max_pos;
    int dh = 2 * (d / 6), dt = d - 2 * dh;
    int dims[3] = {dt, dh, dh};
    r->axis_end0 = dt / 2;
    r->axis_end1 = dt / 2 + dh / 2;
    float2 *h = (float2 *)osp_malloc(sizeof(float2) * (size_t)r->npair * max_pos);
    int j = 0;
    for (int a = 0; a < 3; a++)
        for (int jj = 0; jj < dims[a] / 2; jj++, j++) {
            double freq = 1.0 / pow(theta, (2.0 * jj) / dims[a]);
            for (int p = 0; p < max_pos; p++)
                h[(size_t)j * max_pos + p] = make_float2((float)cos(p * freq), (float)sin(p * freq));
        }
    r->cs = (float2 *)cu_alloc(sizeof(float2) * (size_t)r->npair * max_pos);
    cu_upload(r->cs, h, sizeof(float2) * (size_t)r->npair * max_pos);
    free(h);
    return r;
}

static void cu_rope_free(osp_rope *r) {
    if (!r) return;
    cu_free(r->cs);
    free(r);
}

/* One thread per (token, head, pair). sign = -1 rotates back (backward). A position outside
 * the table (the CPU stops there) leaves the pair unrotated (rope_cs, model/cuda/common.cuh). */
__global__ void rope_kernel(float *y, const float *x, const int32_t *pos, const osp_rope r, int64_t ntok, int H,
                            float sign, int accumulate) {
    int64_t total = ntok * H * r.npair;
    GRID_STRIDE(t, total) {
        int j = (int)(t % r.npair);
        int64_t th = t / r.npair; /* token * H + head */
        float2 c = rope_cs(r, pos + 3 * (th / H), j);
        int64_t off = th * r.d + 2 * j;
        float x0 = x[off], x1 = x[off + 1], s = sign * c.y;
        float o0 = x0 * c.x - x1 * s, o1 = x0 * s + x1 * c.x;
        if (accumulate) {
            y[off] += o0;
            y[off + 1] += o1;
        } else {
            y[off] = o0;
            y[off + 1] = o1;
        }
    }
}

static void rope_launch(float *y, const float *x, const int32_t *pos, const osp_rope *r, int64_t ntok, int H,
                        float sign, int accumulate) {
    int64_t total = ntok * H * r->npair;
    EW_LAUNCH(rope_kernel, total, y, x, pos, *r, ntok, H, sign, accumulate);
}

static void cu_rope_fwd(float *y, const float *x, const int32_t *pos, const osp_rope *r, int64_t ntok, int H) {
    rope_launch(y, x, pos, r, ntok, H, 1.0f, 0);
}

/* dx += R(-theta) dy, or dx = R(-theta) dy in place when dx == dy (as model/cpu/backend.c) */
static void cu_rope_bwd(float *dx, const float *dy, const int32_t *pos, const osp_rope *r, int64_t ntok, int H) {
    rope_launch(dx, dy, pos, r, ntok, H, -1.0f, dx != dy);
}

/* ------------------------------------------------------------------ layouts */

__global__ void gather_rows_kernel(float *dst, const float *src, const int32_t *idx, int64_t n, int D) {
    GRID_STRIDE(t, n * D) {
        int64_t i = t / D;
        int c = (int)(t % D);
        int32_t s = idx[i];
        dst[t] = s >= 0 ? src[(int64_t)s * D + c] : 0.0f;
    }
}
/* idx is injective, so no two threads add into the same element: plain += is race-free */
__global__ void scatter_add_rows_kernel(float *dst, const float *src, const int32_t *idx, int64_t n, int D) {
    GRID_STRIDE(t, n * D) {
        int64_t i = t / D;
        int c = (int)(t % D);
        int32_t s = idx[i];
        if (s >= 0) dst[(int64_t)s * D + c] += src[t];
    }
}

static void cu_gather_rows(float *dst, const float *src, const int32_t *idx, int64_t n, int D) {
    EW_LAUNCH(gather_rows_kernel, n * D, dst, src, idx, n, D);
}
static void cu_scatter_add_rows(float *dst, const float *src, const int32_t *idx, int64_t n, int D) {
    EW_LAUNCH(scatter_add_rows_kernel, n * D, dst, src, idx, n, D);
}

/* One thread per token element; consecutive threads walk the feature index, so the token
 * side is coalesced (the video side strides by pw/ph/pt). */
__global__ void patch_map_kernel(float *tok, float *vid, int B, int C, int T, int Hs, int Ws, int pt, int ph, int pw,
                                 bool c_first, bool to_tokens) {
    int f = T / pt, hh = Hs / ph, ww = Ws / pw, F = C * pt * ph * pw;
    int64_t L = (int64_t)f * hh * ww;
    GRID_STRIDE(t, (int64_t)B * L * F) {
        int fe = (int)(t % F);
        int64_t bn = t / F;
        int64_t b = bn / L, n = bn % L;
        int fi = (int)(n / (hh * ww)), hi = (int)((n / ww) % hh), wi = (int)(n % ww);
        int c, kt, kh, kw;
        if (c_first) {
            kw = fe % pw;
            kh = (fe / pw) % ph;
            kt = (fe / (pw * ph)) % pt;
            c = fe / (pw * ph * pt);
        } else {
            c = fe % C;
            kw = (fe / C) % pw;
            kh = (fe / (C * pw)) % ph;
            kt = fe / (C * pw * ph);
        }
        int64_t vi = (((b * C + c) * T + fi * pt + kt) * (int64_t)Hs + hi * ph + kh) * Ws + wi * pw + kw;
        if (to_tokens)
            tok[t] = vid[vi];
        else
            vid[vi] = tok[t];
    }
}

static void cu_patch_map(float *tok, float *vid, int B, int C, int T, int Hs, int Ws, int pt, int ph, int pw,
                         bool c_first, bool to_tokens) {
    int64_t total = (int64_t)B * (T / pt) * (Hs / ph) * (Ws / pw) * C * pt * ph * pw;
    EW_LAUNCH(patch_map_kernel, total, tok, vid, B, C, T, Hs, Ws, pt, ph, pw, c_first, to_tokens);
}

/* ------------------------------------------------------------------ reductions */

#define RED_THREADS 256
#define RED_MAX_BLOCKS 1024

enum { HRED_MSE = 0, HRED_SUMSQ, HRED_ABSMAX, HRED_NONFINITE };

__device__ double block_reduce_d(double v, double *sh, int op_max) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = RED_THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            double o = sh[threadIdx.x + s];
            sh[threadIdx.x] = op_max ? fmax(sh[threadIdx.x], o) : sh[threadIdx.x] + o;
        }
        __syncthreads();
    }
    return sh[0];
}

/* Pass 1: per-block partial in double (max for absmax, counts for nonfinite). For mse also
 * writes dpred = scale*2*(pred-target)/n when dpred != NULL. */
__global__ void hred_partial_kernel(double *part, int op, const float *x, const float *t, float *dpred, int64_t n,
                                    float gscale) {
    __shared__ double sh[RED_THREADS];
    double acc = 0;
    GRID_STRIDE(i, n) {
        float v = x[i];
        if (op == HRED_MSE) {
            double e = (double)v - t[i];
            acc += e * e;
            if (dpred) dpred[i] = gscale * 2.0f * (float)e / (float)n;
        } else if (op == HRED_SUMSQ) {
            acc += (double)v * v;
        } else if (op == HRED_ABSMAX) {
            acc = fmax(acc, (double)fabsf(v)); /* fmax drops NaN, as the CPU's comparison does */
        } else {
            acc += isfinite(v) ? 0.0 : 1.0;
        }
    }
    double r = block_reduce_d(acc, sh, op == HRED_ABSMAX);
    if (threadIdx.x == 0) part[blockIdx.x] = r;
}

__global__ void hred_final_kernel(double *out, const double *part, int nparts, int op) {
    __shared__ double sh[RED_THREADS];
    double acc = 0;
    for (int i = threadIdx.x; i < nparts; i += RED_THREADS)
        acc = op == HRED_ABSMAX ? fmax(acc, part[i]) : acc + part[i];
    double r = block_reduce_d(acc, sh, op == HRED_ABSMAX);
    if (threadIdx.x == 0) *out = r;
}

static double host_reduce(int op, const float *x, const float *t, float *dpred, int64_t n, float gscale) {
    if (n <= 0) return 0.0;
    int nb = (int)((n + RED_THREADS * 4 - 1) / (RED_THREADS * 4)); /* depends on n only: deterministic */
    if (nb > RED_MAX_BLOCKS) nb = RED_MAX_BLOCKS;
    double *part = (double *)osp_cuda_scratch(SCRATCH_REDUCE2, sizeof(double) * (RED_MAX_BLOCKS + 1));
    hred_partial_kernel<<<nb, RED_THREADS, 0, osp_cuda_inst->stream>>>(part + 1, op, x, t, dpred, n, gscale);
    CUDA_LAUNCH_CHECK();
    hred_final_kernel<<<1, RED_THREADS, 0, osp_cuda_inst->stream>>>(part, part + 1, nb, op);
    CUDA_LAUNCH_CHECK();
    double r = 0;
    cu_download(&r, part, sizeof r);
    return r;
}

static double cu_mse(float *dpred, const float *pred, const float *target, int64_t n, float scale) {
    if (n <= 0) return 0.0;
    return host_reduce(HRED_MSE, pred, target, dpred, n, scale) / (double)n;
}
static double cu_sumsq(const float *x, int64_t n) { return host_reduce(HRED_SUMSQ, x, NULL, NULL, n, 0); }
static float cu_absmax(const float *x, int64_t n) {
    return (float)host_reduce(HRED_ABSMAX, x, NULL, NULL, n, 0);
}
static int64_t cu_count_nonfinite(const float *x, int64_t n) {
    return (int64_t)host_reduce(HRED_NONFINITE, x, NULL, NULL, n, 0);
}

/* ------------------------------------------------------------------ HiF8 amax and scales */

/* max |x| as fq_absmax computes it (quant/fakequant.h): an unsigned max over the magnitude bits,
 * exact, order independent (so atomics keep it deterministic) and NaN winning (NaN bits exceed
 * Inf's). One pass, one launch: 16-byte loads (4 fp32 or 8 bf16) from the first 16-byte boundary
 * on, the unaligned head and the tail one by one; each block folds into amax_state[0] with
 * atomicMax and the last block to finish (a ticket in amax_state[1], as in CUDA's
 * threadFenceReduction sample) writes the result, amax or hif8_scale_current_dev(amax), and
 * resets the state for the next call. The state (the instance's amax_state) is shared by every
 * call: they run in order on the instance's stream. bf16 lanes are folded two per word by
 * __vmaxu2 on their 15 magnitude bits, which are the top half of the fp32 magnitude bits. */
#define AMAX_THREADS 256

__device__ __forceinline__ uint32_t amax_fold(uint32_t m, uint32_t w, const float *) {
    return max(m, w & 0x7FFFFFFFu);
}
__device__ __forceinline__ uint32_t amax_fold(uint32_t m, uint32_t w, const __nv_bfloat16 *) {
    return __vmaxu2(m, w & 0x7FFF7FFFu); /* a lone element sits in the low lane (high half 0) */
}
__device__ __forceinline__ uint32_t amax_bits(const float *x) { return __float_as_uint(*x); }
__device__ __forceinline__ uint32_t amax_bits(const __nv_bfloat16 *x) { return __bfloat16_as_ushort(*x); }
__device__ __forceinline__ uint32_t amax_finish(uint32_t m, const float *) { return m; }
__device__ __forceinline__ uint32_t amax_finish(uint32_t m, const __nv_bfloat16 *) {
    return max(m & 0xFFFFu, m >> 16) << 16;
}

template <typename T, bool SCALE>
__global__ void amax_kernel(float *out, unsigned *state, const T *x, int64_t n, int64_t head, float target) {
    const int per = 16 / sizeof(T);
    const T *tag = NULL;
    int64_t tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, nth = (int64_t)gridDim.x * blockDim.x;
    int64_t nv = (n - head) / per, tail = head + nv * per;
    const uint4 *v = (const uint4 *)(x + head);
    uint32_t m = 0;
    int64_t i = tid;
    for (; i + 3 * nth < nv; i += 4 * nth) { /* four loads in flight per thread */
        uint4 a = v[i], b = v[i + nth], c = v[i + 2 * nth], d = v[i + 3 * nth];
        uint32_t ws[16] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w, c.x, c.y, c.z, c.w, d.x, d.y, d.z, d.w};
#pragma unroll
        for (int k = 0; k < 16; k++) m = amax_fold(m, ws[k], tag);
    }
    for (; i < nv; i += nth) {
        uint4 a = v[i];
        m = amax_fold(amax_fold(amax_fold(amax_fold(m, a.x, tag), a.y, tag), a.z, tag), a.w, tag);
    }
    if (tid < head) m = amax_fold(m, amax_bits(x + tid), tag);
    if (tid < n - tail) m = amax_fold(m, amax_bits(x + tail + tid), tag);
    m = __reduce_max_sync(0xFFFFFFFFu, amax_finish(m, tag));
    __shared__ uint32_t warp_max[AMAX_THREADS / 32];
    __shared__ bool last;
    if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        m = threadIdx.x < AMAX_THREADS / 32 ? warp_max[threadIdx.x] : 0u;
        m = __reduce_max_sync(0xFFFFFFFFu, m);
        if (threadIdx.x == 0) {
            if (m) atomicMax(&state[0], m);
            __threadfence(); /* this block's max is visible before its ticket */
            last = atomicAdd(&state[1], 1u) == gridDim.x - 1;
        }
    }
    __syncthreads();
    if (last && threadIdx.x == 0) {
        float a = __uint_as_float(atomicExch(&state[0], 0u));
        atomicExch(&state[1], 0u);
        *out = SCALE ? hif8_scale_current_dev(a, target) : a;
    }
}

static unsigned *amax_state_get(void) {
    osp_cuda_instance *in = osp_cuda_inst;
    if (!in->amax_state) in->amax_state = (unsigned *)cu_alloc(4 * sizeof(unsigned)); /* zeroed, in stream order */
    return in->amax_state;
}

template <typename T, bool SCALE>
static void amax_launch(float *out, const T *x, int64_t n, float target) {
    unsigned *state = amax_state_get();
    if (n < 0) n = 0;
    int64_t head = (int64_t)((16 - (uintptr_t)x % 16) % 16 / sizeof(T)); /* elements before a 16-byte boundary */
    if (head > n) head = n;
    int64_t nv = (n - head) / (16 / (int64_t)sizeof(T));
    int64_t nb = (nv + 4 * AMAX_THREADS - 1) / (4 * AMAX_THREADS), cap = 8 * (int64_t)osp_cuda_inst->num_sms;
    if (nb > cap) nb = cap;
    if (nb < 1) nb = 1; /* n = 0 still writes its result */
    amax_kernel<T, SCALE><<<(unsigned)nb, AMAX_THREADS, 0, osp_cuda_inst->stream>>>(out, state, x, n, head, target);
    CUDA_LAUNCH_CHECK();
}

static float cu_absmax16(const osp_bf16 *x, int64_t n) {
    if (n <= 0) return 0.0f;
    float *d = (float *)(amax_state_get() + 2), r = 0.0f;
    amax_launch<__nv_bfloat16, false>(d, (const __nv_bfloat16 *)x, n, 0.0f);
    cu_download(&r, d, sizeof r);
    return r;
}

static void cu_hif8_scale_dev(float *ds, const float *x, const osp_bf16 *x16, int64_t n, float target) {
    OSP_CHECK(!x != !x16, "hif8_scale_dev: exactly one of x, x16");
    if (x16) amax_launch<__nv_bfloat16, true>(ds, (const __nv_bfloat16 *)x16, n, target);
    else amax_launch<float, true>(ds, x, n, target);
}

static void cu_hif8_scale_set(float *ds, float s) { cuda_put_floats(ds, 1, s, 0.0f, 0.0f); }

/* ------------------------------------------------------------------ optimizer, quantization */

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2,
                             float eps, float wd, float bc1, float bc2, float gscale) {
    GRID_STRIDE(i, n) {
        float gi = g[i] * gscale;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float mh = mi / bc1, vh = vi / bc2;
        float pi = p[i];
        p[i] = pi - lr * (mh / (sqrtf(vh) + eps) + wd * pi);
    }
}
__global__ void ema_kernel(float *e, const float *p, int64_t n, float decay) {
    GRID_STRIDE(i, n) e[i] = decay * e[i] + (1.0f - decay) * p[i];
}
__global__ void hif8_fq_op_kernel(float *y, const float *x, int64_t n, float s, bool saturate) {
    GRID_STRIDE(i, n) y[i] = hif8_fq_dev(x[i], s, saturate);
}

static void cu_adamw(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2, float eps,
                     float wd, float bc1, float bc2, float gscale) {
    EW_LAUNCH(adamw_kernel, n, p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2, gscale);
}
static void cu_ema(float *e, const float *p, int64_t n, float decay) { EW_LAUNCH(ema_kernel, n, e, p, n, decay); }
static void cu_hif8_fq(float *y, const float *x, int64_t n, float s, bool saturate) {
    EW_LAUNCH(hif8_fq_op_kernel, n, y, x, n, s, saturate);
}

/* ------------------------------------------------------------------ the table */

static void cuda_backend_fill(osp_backend *b) {
    b->name = "cuda";
    b->alloc = cu_alloc;
    b->free = cu_free;
    b->upload = cu_upload;
    b->download = cu_download;
    b->copy = cu_copy;
    b->zero = cu_zero;
    b->sync = cu_sync;
    b->linear_fwd = cuda_linear_fwd;
    b->linear_bwd = cuda_linear_bwd;
    b->layernorm_fwd = cuda_layernorm_fwd;
    b->layernorm_bwd = cuda_layernorm_bwd;
    b->ln_mod_fwd = cuda_ln_mod_fwd;
    b->ln_mod_bwd = cuda_ln_mod_bwd;
    b->rmsnorm_fwd = cuda_rmsnorm_fwd;
    b->rmsnorm_bwd = cuda_rmsnorm_bwd;
    b->linear_fq_fwd = cuda_linear_fq_fwd;
    b->linear_fq_bwd = cuda_linear_fq_bwd;
    b->gelu_fwd = cu_gelu_fwd;
    b->linear_gelu_fwd = cuda_linear_gelu_fwd;
    b->gelu_bwd = cu_gelu_bwd;
    b->silu_fwd = cu_silu_fwd;
    b->silu_bwd = cu_silu_bwd;
    b->gate_res_fwd = cuda_gate_res_fwd;
    b->gate_res_bwd = cuda_gate_res_bwd;
    b->add = cu_add;
    b->axpby = cu_axpby;
    b->rope_init = cu_rope_init;
    b->rope_free = cu_rope_free;
    b->rope_fwd = cu_rope_fwd;
    b->rope_bwd = cu_rope_bwd;
    b->qk_norm_rope_fwd = cuda_qk_norm_rope_fwd;
    b->qk_norm_rope_bwd = cuda_qk_norm_rope_bwd;
    b->attn_fwd = cuda_attn_fwd;
    b->attn_bwd = cuda_attn_bwd;
    b->gather_rows = cu_gather_rows;
    b->scatter_add_rows = cu_scatter_add_rows;
    b->patch_map = cu_patch_map;
    b->mse = cu_mse;
    b->sumsq = cu_sumsq;
    b->absmax = cu_absmax;
    b->scale = cu_scale;
    b->adamw = cu_adamw;
    b->ema = cu_ema;
    b->hif8_fq = cu_hif8_fq;
    b->hif8_scale_dev = cu_hif8_scale_dev;
    b->hif8_scale_set = cu_hif8_scale_set;
    b->count_nonfinite = cu_count_nonfinite;
    b->act16_on = cuda_act16_enabled;
    b->linear16_fwd = cuda_linear16_fwd;
    b->linear16_bwd = cuda_linear16_bwd;
    b->linear_gelu16_fwd = cuda_linear_gelu16_fwd;
    b->gelu16_bwd = cu_gelu16_bwd;
    b->absmax16 = cu_absmax16;
    b->linear_fq16_fwd = cuda_linear_fq16_fwd;
    b->linear_fq16_bwd = cuda_linear_fq16_bwd;
    b->linear_fq_gelu16_fwd = cuda_linear_fq_gelu16_fwd;
    b->ln_mod16_fwd = cuda_ln_mod16_fwd;
    b->layernorm16_fwd = cuda_layernorm16_fwd;
    b->rmsnorm16_fwd = cuda_rmsnorm16_fwd;
    b->qk_norm_rope16_fwd = cuda_qk_norm_rope16_fwd;
    b->attn16_fwd = cuda_attn16_fwd;
    b->attn16_bwd = cuda_attn16_bwd;
}

/* ------------------------------------------------------------------ the instance */

extern "C" const osp_backend *osp_backend_cuda_init(int device, const osp_cuda_options *o) {
    if (osp_cuda_inst)
        osp_die("CUDA backend for device %d requested while the instance of device %d is live (one per process: "
                "osp_backend_cuda_free it first)",
                device, osp_cuda_inst->device);
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) {
        cudaGetLastError(); /* clear the sticky "no device" error */
        return NULL;
    }
    if (device < 0 || device >= n)
        osp_die("CUDA device %d requested but %d visible (devices 0..%d; hint: check CUDA_VISIBLE_DEVICES)", device, n,
                n - 1);
    osp_cuda_options opt = o ? *o : osp_cuda_options_default();
    char err[640];
    if (osp_cuda_options_env(&opt, err, sizeof err)) osp_die("%s", err);
    OSP_CHECK(osp_cuda_gemm_name(opt.gemm)[0] != '?' && osp_cuda_attn_name(opt.attn)[0] != '?',
              "CUDA options: gemm / attn out of range");
    osp_cuda_instance *in = (osp_cuda_instance *)osp_calloc(1, sizeof *in);
    in->opt = opt;
    in->device = device;
    CUDA_CHECK(cudaSetDevice(device));
    /* a blocking stream: work that other code issues on the legacy default stream (plain
     * cudaMemcpy, say) stays ordered with the backend's kernels */
    CUDA_CHECK(cudaStreamCreate(&in->stream));
    CUDA_CHECK(cudaDeviceGetAttribute(&in->num_sms, cudaDevAttrMultiProcessorCount, device));
    osp_cuda_inst = in;
    in->fp8_capable = cuda_fp8_available() != 0;
    cuda_gemm_init(in);
    cuda_backend_fill(&in->table);
    return &in->table;
}

/* the live instance when be is it, else NULL */
static osp_cuda_instance *instance_of(const osp_backend *be) {
    return be && osp_cuda_inst && be == &osp_cuda_inst->table ? osp_cuda_inst : NULL;
}

extern "C" void osp_backend_cuda_free(const osp_backend *be) {
    osp_cuda_instance *in = instance_of(be);
    if (!in) return;
    CUDA_CHECK(cudaStreamSynchronize(in->stream)); /* nothing of ours in flight */
    attn_cudnn_free();
    cuda_gemm_free(in);
    cuda_fp8_free(in);
    for (int i = 0; i < SCRATCH_NSLOTS; i++)
        if (in->scratch_ptr[i]) CUDA_CHECK(cudaFree(in->scratch_ptr[i]));
    if (in->amax_state) CUDA_CHECK(cudaFree(in->amax_state));
    if (in->cdn_flag) CUDA_CHECK(cudaFree(in->cdn_flag));
    CUDA_CHECK(cudaStreamDestroy(in->stream));
    osp_cuda_inst = NULL;
    free(in);
}

extern "C" const osp_cuda_options *osp_backend_cuda_options(const osp_backend *be) {
    osp_cuda_instance *in = instance_of(be);
    return in ? &in->opt : NULL;
}

extern "C" void osp_backend_cuda_set_options(const osp_backend *be, const osp_cuda_options *o) {
    osp_cuda_instance *in = instance_of(be);
    OSP_CHECK(in && o, "osp_backend_cuda_set_options: not the live CUDA instance");
    OSP_CHECK(osp_cuda_gemm_name(o->gemm)[0] != '?' && osp_cuda_attn_name(o->attn)[0] != '?',
              "CUDA options: gemm / attn out of range");
    in->opt = *o;
}
