/*
 * model/cuda/fp8.cu — HiF8 GEMMs on E4M3 tensor cores (see model/cuda/fp8.h for the why):
 * the quantising kernels (HiF8 rounding, the exact power-of-two shift into E4M3, optional
 * transpose, zero padding of K to a multiple of 16, a count of the elements E4M3 could not hold
 * exactly) and the E4M3 x E4M3 cuBLASLt matmuls with device descale pointers.
 */
#include "model/cuda/common.cuh"
#include "model/cuda/fp8.h"
#include "quant/e4m3.h"
#include "quant/hif8_cuda.cuh"

#include <cuda_fp8.h>
#include <string.h>

#define FP8_WORKSPACE_BYTES (32u << 20)
#define FP8_CACHE_SIZE 64
#define FP8_K_ALIGN 16 /* FP8 operands: K-major with a 16-byte multiple leading dimension */
/* cuBLASLt refuses (NOT_SUPPORTED at matmul time) A/B scale pointers that are only 4-byte
 * aligned (seen with cuBLASLt 13.1 on an H200: dev/cuda/fp8_probe.cu), so each descale float
 * gets its own 256-byte line */
#define FP8_DESCALE_STRIDE 64

enum { FP8_BIAS_NONE = 0, FP8_BIAS_F32, FP8_BIAS_BF16 };

typedef struct {
    int64_t m, n, k, lda, ldb, ldc;
    int c16, beta1, bias; /* bias: FP8_BIAS_* (the epilogue's bias type) */
    int slot_a, slot_b;   /* which descale floats A and B use (fixed device addresses) */
    int align_a, align_b, align_c;
} fp8_key;

typedef struct {
    fp8_key key;
    int used, noalgo;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
} fp8_plan;

/* the instance's E4M3 state (osp_cuda_inst->fp8), made on first use */
struct cuda_fp8_state {
    cublasLtHandle_t lt;
    void *workspace;
    float *descale;              /* device, 1 / (shift s) of x, W, dy at slot * FP8_DESCALE_STRIDE */
    __nv_bfloat16 *bias16;       /* bf16 copy of the bias where the epilogue wants that type */
    int64_t bias16_n;
    unsigned long long *inexact; /* device counter */
    uint64_t total;              /* host counter: elements quantised */
    fp8_plan cache[FP8_CACHE_SIZE];
    int next;
};

static cuda_fp8_state *fp8_state(void) {
    OSP_CHECK(osp_cuda_inst, "E4M3 GEMM without a CUDA backend instance (osp_backend_cuda_init first)");
    cuda_fp8_state *s = osp_cuda_inst->fp8;
    if (s) return s;
    s = (cuda_fp8_state *)osp_calloc(1, sizeof *s);
    CUBLAS_CHECK(cublasLtCreate(&s->lt));
    CUDA_CHECK(cudaMalloc(&s->workspace, FP8_WORKSPACE_BYTES));
    CUDA_CHECK(cudaMalloc(&s->descale, 4 * FP8_DESCALE_STRIDE * sizeof(float)));
    CUDA_CHECK(cudaMalloc(&s->inexact, sizeof(unsigned long long)));
    CUDA_CHECK(cudaMemsetAsync(s->inexact, 0, sizeof(unsigned long long), osp_cuda_inst->stream));
    osp_cuda_inst->fp8 = s;
    return s;
}

static void fp8_plan_destroy(fp8_plan *p);

void cuda_fp8_free(osp_cuda_instance *in) {
    cuda_fp8_state *s = in->fp8;
    if (!s) return;
    for (int i = 0; i < FP8_CACHE_SIZE; i++) fp8_plan_destroy(&s->cache[i]);
    if (s->bias16) CUDA_CHECK(cudaFree(s->bias16));
    CUDA_CHECK(cudaFree(s->workspace));
    CUDA_CHECK(cudaFree(s->descale));
    CUDA_CHECK(cudaFree(s->inexact));
    cublasLtDestroy(s->lt);
    free(s);
    in->fp8 = NULL;
}

extern "C" int cuda_fp8_available(void) {
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    return major > 8 || (major == 8 && minor >= 9);
}

static int64_t round_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

/* ------------------------------------------------------------------ quantisation */

/* One element: the E4M3 byte of hif8(v s) * shift, and whether that value was not exact in E4M3
 * (a zero, or a NaN that is NaN in both, counts as exact). */
__device__ __forceinline__ uint8_t fp8_quant_one(float v, float s, float shift, bool sat, int *inexact) {
    float y = hif8_mul_rn(hif8_round_dev(hif8_mul_rn(v, s), sat), shift);
    __nv_fp8_storage_t q = __nv_cvt_float_to_fp8(y, __NV_SATFINITE, __NV_E4M3);
    __half_raw hr = __nv_cvt_fp8_to_halfraw(q, __NV_E4M3);
    float back = __half2float(*reinterpret_cast<__half *>(&hr));
    *inexact += (back != y) && !(y != y);
    return (uint8_t)q;
}

__device__ __forceinline__ void fp8_count(unsigned long long *cnt, int n) {
    unsigned mask = __activemask();
    int tot = __reduce_add_sync(mask, n);
    if ((threadIdx.x & 31) == __ffs(mask) - 1 && tot) atomicAdd(cnt, (unsigned long long)tot);
}

/* The descale 1 / (shift s), written once per operand by the first thread. */
__device__ __forceinline__ void fp8_write_descale(float *d_descale, float s, float shift) {
    if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0 && threadIdx.y == 0)
        *d_descale = hif8_div_rn(1.0f, hif8_mul_rn(shift, s));
}

/* dst[r, c] (row-major, leading dimension dld >= cols, zeros in [cols, dld)) from src[r, c]
 * (row-major [rows, cols]); four columns per thread, one 32-bit store. */
template <typename S>
__global__ void fp8_quant_kernel(uint8_t *dst, const S *src, int64_t rows, int64_t cols, int64_t dld,
                                 const float *ds, float shift, bool sat, float *d_descale, unsigned long long *cnt) {
    float s = *ds;
    fp8_write_descale(d_descale, s, shift);
    int64_t q4 = dld / 4, n = rows * q4;
    int bad = 0;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = t / q4, c0 = (t % q4) * 4;
        uint32_t w = 0;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int64_t c = c0 + j;
            uint8_t b = c < cols ? fp8_quant_one(val_load(src + r * cols + c), s, shift, sat, &bad) : 0;
            w |= (uint32_t)b << (8 * j);
        }
        *reinterpret_cast<uint32_t *>(dst + r * dld + c0) = w;
    }
    fp8_count(cnt, bad);
}

/* dst[c, r] (row-major [cols, dld], zeros for r in [rows, dld)) from src[r, c]: a 32 x 32 tile
 * through shared memory, quantised on the way in, so reads and writes both stay coalesced. */
template <typename S>
__global__ void fp8_quant_t_kernel(uint8_t *dst, const S *src, int64_t rows, int64_t cols, int64_t dld,
                                   const float *ds, float shift, bool sat, float *d_descale, unsigned long long *cnt) {
    __shared__ uint8_t tile[32][33];
    float s = *ds;
    fp8_write_descale(d_descale, s, shift);
    int64_t r0 = (int64_t)blockIdx.x * 32, c0 = (int64_t)blockIdx.y * 32;
    int tx = threadIdx.x, ty = threadIdx.y, bad = 0;
#pragma unroll
    for (int j = 0; j < 32; j += 8) {
        int64_t r = r0 + ty + j, c = c0 + tx;
        tile[ty + j][tx] = (r < rows && c < cols) ? fp8_quant_one(val_load(src + r * cols + c), s, shift, sat, &bad) : 0;
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < 32; j += 8) {
        int64_t c = c0 + ty + j, r = r0 + tx;
        if (c < cols && r < dld) dst[c * dld + r] = tile[tx][ty + j];
    }
    fp8_count(cnt, bad);
}

/* Quantise src [rows, cols] (fp32 or bf16: exactly one) into dst, straight ([rows, dld]) or
 * transposed ([cols, dld]); slot: which descale (0 x, 1 W, 2 dy). */
static void fp8_quant(uint8_t *dst, const float *src, const __nv_bfloat16 *src16, int64_t rows, int64_t cols,
                      int64_t dld, bool transpose, const float *ds, float shift, bool sat, int slot) {
    cuda_fp8_state *S = fp8_state();
    float *desc = S->descale + slot * FP8_DESCALE_STRIDE;
    S->total += (uint64_t)(rows * cols);
    if (!transpose) {
        int64_t work = rows * (dld / 4);
        unsigned nb = osp_cuda_blocks(work, 256);
        if (src16) fp8_quant_kernel<<<nb, 256, 0, osp_cuda_inst->stream>>>(dst, src16, rows, cols, dld, ds, shift, sat, desc, S->inexact);
        else fp8_quant_kernel<<<nb, 256, 0, osp_cuda_inst->stream>>>(dst, src, rows, cols, dld, ds, shift, sat, desc, S->inexact);
    } else {
        dim3 grid((unsigned)((dld + 31) / 32), (unsigned)((cols + 31) / 32)), block(32, 8);
        OSP_CHECK(grid.y <= 65535, "fp8 transpose: too many columns for one grid");
        if (src16) fp8_quant_t_kernel<<<grid, block, 0, osp_cuda_inst->stream>>>(dst, src16, rows, cols, dld, ds, shift, sat, desc, S->inexact);
        else fp8_quant_t_kernel<<<grid, block, 0, osp_cuda_inst->stream>>>(dst, src, rows, cols, dld, ds, shift, sat, desc, S->inexact);
    }
    CUDA_LAUNCH_CHECK();
}

/* ------------------------------------------------------------------ E4M3 GEMM */

static void fp8_plan_destroy(fp8_plan *p) {
    if (p->used && !p->noalgo) osp_cuda_lt_plan_destroy(p->op, p->la, p->lb, p->lc);
    p->used = p->noalgo = 0;
}

/* The cached plan for key, built on a miss; NULL when cuBLASLt offers no algorithm (the caller
 * then drops the bias epilogue, or reports the shape). */
static fp8_plan *fp8_plan_get(const fp8_key *key) {
    cuda_fp8_state *S = fp8_state();
    for (int i = 0; i < FP8_CACHE_SIZE; i++)
        if (S->cache[i].used && !memcmp(&S->cache[i].key, key, sizeof *key))
            return S->cache[i].noalgo ? NULL : &S->cache[i];
    fp8_plan *p = &S->cache[S->next];
    S->next = (S->next + 1) % FP8_CACHE_SIZE;
    fp8_plan_destroy(p);
    p->key = *key;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (key->bias) {
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        cudaDataType_t bt = key->bias == FP8_BIAS_F32 ? CUDA_R_32F : CUDA_R_16BF;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    }
    const float *sa = S->descale + key->slot_a * FP8_DESCALE_STRIDE, *sb = S->descale + key->slot_b * FP8_DESCALE_STRIDE;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sa, sizeof sa));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sb, sizeof sb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->la, CUDA_R_8F_E4M3, key->k, key->m, key->lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_8F_E4M3, key->k, key->n, key->ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lc, key->c16 ? CUDA_R_16BF : CUDA_R_32F, key->m, key->n, key->ldc));
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = FP8_WORKSPACE_BYTES;
    uint32_t aa = key->align_a, ab = key->align_b, ac = key->align_c;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof ac));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac, sizeof ac));
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(S->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, 1, &res, &nres);
    cublasLtMatmulPreferenceDestroy(pref);
    p->used = 1;
    if (st != CUBLAS_STATUS_SUCCESS || nres == 0) {
        fp8_plan_destroy(p);
        p->key = *key;
        p->used = p->noalgo = 1;
        return NULL;
    }
    p->algo = res.algo;
    return p;
}

/* out = t + bias[row] (column-major m x n, ld m), fp32 or bf16: the bias epilogue's work where
 * cuBLASLt offers none */
template <typename T>
__global__ void fp8_bias_kernel(T *out, const float *t, const float *bias, int64_t m, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < m * n; i += (int64_t)gridDim.x * blockDim.x)
        val_store(&out[i], t[i] + (bias ? bias[i % m] : 0.0f));
}

__global__ void fp8_bias16_kernel(__nv_bfloat16 *dst, const float *b, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(b[i]);
}

/* One matmul with a plan for key (bias pointer of the key's type); the cuBLASLt status, so a
 * configuration the heuristic offered but the library refuses at run time can be dropped. */
static cublasStatus_t fp8_try(const fp8_key *key, const uint8_t *A, const uint8_t *B, void *C, const void *bias) {
    cuda_fp8_state *S = fp8_state();
    fp8_plan *p = fp8_plan_get(key);
    if (!p) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (bias)
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    const float alpha = 1.0f, beta = key->beta1 ? 1.0f : 0.0f;
    cublasStatus_t st = cublasLtMatmul(S->lt, p->op, &alpha, A, p->la, B, p->lb, &beta, C, p->lc, C, p->lc, &p->algo,
                                       S->workspace, FP8_WORKSPACE_BYTES, osp_cuda_inst->stream);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) { /* remember: never again for this key */
        fp8_plan_destroy(p);
        p->key = *key;
        p->used = p->noalgo = 1;
    }
    return st;
}

/* C (m x n column-major, ldc; fp32 or bf16 when c16) [+]= (dA dB) A^T B [+ bias], A stored k x m
 * and B stored k x n (E4M3, K-major, ld lda / ldb), descales S->descale[slot_a], [slot_b]. The
 * bias epilogue takes the fp32 bias where cuBLASLt accepts it, else a bf16 copy (Hopper's E4M3
 * kernels take bf16 biases only: fp32 is refused by the heuristic), else the product goes to fp32 scratch and a kernel adds it. */
static void fp8_gemm(int64_t m, int64_t n, int64_t k, const uint8_t *A, int64_t lda, const uint8_t *B, int64_t ldb,
                     void *C, int c16, int64_t ldc, int beta1, const float *bias, int slot_a, int slot_b) {
    cuda_fp8_state *S = fp8_state();
    fp8_key key;
    memset(&key, 0, sizeof key);
    key.m = m;
    key.n = n;
    key.k = k;
    key.lda = lda;
    key.ldb = ldb;
    key.ldc = ldc;
    key.c16 = c16;
    key.beta1 = beta1;
    key.slot_a = slot_a;
    key.slot_b = slot_b;
    key.align_a = osp_cuda_ptr_align(A);
    key.align_b = osp_cuda_ptr_align(B);
    key.align_c = osp_cuda_ptr_align(C);
    cublasStatus_t st = CUBLAS_STATUS_NOT_SUPPORTED;
    if (bias) {
        key.bias = FP8_BIAS_F32;
        st = fp8_try(&key, A, B, C, bias);
        if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
            if (S->bias16_n < m) {
                if (S->bias16) CUDA_CHECK(cudaFree(S->bias16));
                CUDA_CHECK(cudaMalloc(&S->bias16, sizeof(__nv_bfloat16) * (size_t)m));
                S->bias16_n = m;
            }
            fp8_bias16_kernel<<<osp_cuda_blocks(m, 256), 256, 0, osp_cuda_inst->stream>>>(S->bias16, bias, m);
            CUDA_LAUNCH_CHECK();
            key.bias = FP8_BIAS_BF16;
            st = fp8_try(&key, A, B, C, S->bias16);
        }
        if (st == CUBLAS_STATUS_NOT_SUPPORTED) { /* no bias epilogue: fp32 product, then bias (and rounding) */
            OSP_CHECK(!beta1 && ldc == m, "fp8 GEMM: bias fallback with accumulation or a strided C");
            float *t = (float *)osp_cuda_scratch(SCRATCH_GEMM_Y, sizeof(float) * (size_t)(m * n));
            fp8_gemm(m, n, k, A, lda, B, ldb, t, 0, m, 0, NULL, slot_a, slot_b);
            unsigned nb = osp_cuda_blocks(m * n, 256);
            if (c16) fp8_bias_kernel<<<nb, 256, 0, osp_cuda_inst->stream>>>((__nv_bfloat16 *)C, t, bias, m, n);
            else fp8_bias_kernel<<<nb, 256, 0, osp_cuda_inst->stream>>>((float *)C, t, bias, m, n);
            CUDA_LAUNCH_CHECK();
            return;
        }
    } else {
        key.bias = FP8_BIAS_NONE;
        st = fp8_try(&key, A, B, C, NULL);
    }
    if (st == CUBLAS_STATUS_NOT_SUPPORTED)
        osp_die("cuBLASLt offers no E4M3 GEMM for m=%lld n=%lld k=%lld (lda %lld, ldb %lld, ldc %lld, %s output) "
                "(hint: quant.hif8_exec: emulate)",
                (long long)m, (long long)n, (long long)k, (long long)lda, (long long)ldb, (long long)ldc,
                c16 ? "bf16" : "fp32");
    if (st != CUBLAS_STATUS_SUCCESS)
        osp_die("cuBLASLt E4M3 GEMM m=%lld n=%lld k=%lld failed: %s", (long long)m, (long long)n, (long long)k,
                cublasLt_status_name(st));
}

/* ------------------------------------------------------------------ the linear layer */

extern "C" void cuda_fp8_linear_fwd(float *y, osp_bf16 *y16, const float *x, const osp_bf16 *x16, const float *dsx,
                                    const float *W, const float *dsw, const float *b, int64_t N, int I, int O,
                                    bool saturate) {
    if (N <= 0 || O <= 0) return;
    OSP_CHECK((!y != !y16) && (!x != !x16) && I > 0 && dsx && dsw, "fp8 linear_fwd: bad arguments");
    int64_t I16 = round_up(I, FP8_K_ALIGN);
    uint8_t *qw = (uint8_t *)osp_cuda_scratch(SCRATCH_GEMM_W, (size_t)(O * I16));
    uint8_t *qx = (uint8_t *)osp_cuda_scratch(SCRATCH_GEMM_X, (size_t)(N * I16));
    fp8_quant(qw, W, NULL, O, I, I16, false, dsw, E4M3_HIF8_FWD_SHIFT, saturate, 1);
    fp8_quant(qx, x, (const __nv_bfloat16 *)x16, N, I, I16, false, dsx, E4M3_HIF8_FWD_SHIFT, saturate, 0);
    /* y^T (O x N) = W (I16 x O, K-major)^T x (I16 x N) */
    if (y16) fp8_gemm(O, N, I16, qw, I16, qx, I16, y16, 1, O, 0, b, 1, 0);
    else fp8_gemm(O, N, I16, qw, I16, qx, I16, y, 0, O, 0, b, 1, 0);
}

__global__ void fp8_gelu_kernel(__nv_bfloat16 *y, const __nv_bfloat16 *pre, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = __float2bfloat16_rn(gelu_tanh_dev(__bfloat162float(pre[i])));
}

extern "C" void cuda_fp8_linear_gelu_fwd(osp_bf16 *y, osp_bf16 *pre, const osp_bf16 *x, const float *dsx,
                                         const float *W, const float *dsw, const float *b, int64_t N, int I, int O,
                                         bool saturate) {
    if (N <= 0 || O <= 0) return;
    OSP_CHECK(y && pre && x, "fp8 linear_gelu_fwd: bad arguments");
    cuda_fp8_linear_fwd(NULL, pre, NULL, x, dsx, W, dsw, b, N, I, O, saturate);
    fp8_gelu_kernel<<<osp_cuda_blocks(N * O, 256), 256, 0, osp_cuda_inst->stream>>>(
        (__nv_bfloat16 *)y, (const __nv_bfloat16 *)pre, N * O);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_fp8_linear_bwd(float *dx, float *dW, float *db, const float *dy, const float *dsg, const float *x,
                                    const osp_bf16 *x16, const float *dsx, const float *W, const float *dsw, int64_t N,
                                    int I, int O, bool saturate) {
    if (N <= 0 || O <= 0) return;
    OSP_CHECK(!x != !x16 && dsg && dsx && dsw, "fp8 linear_bwd: bad arguments");
    if (I > 0 && dx) { /* dx^T (I x N) += W^T (O16 x I, K-major)^T dy (O16 x N) */
        int64_t O16 = round_up(O, FP8_K_ALIGN);
        uint8_t *qwt = (uint8_t *)osp_cuda_scratch(SCRATCH_GEMM_W, (size_t)(I * O16));
        uint8_t *qg = (uint8_t *)osp_cuda_scratch(SCRATCH_GEMM_DY, (size_t)(N * O16));
        fp8_quant(qwt, W, NULL, O, I, O16, true, dsw, E4M3_HIF8_FWD_SHIFT, saturate, 1);
        fp8_quant(qg, dy, NULL, N, O, O16, false, dsg, E4M3_HIF8_GRAD_SHIFT, saturate, 2);
        fp8_gemm(I, N, O16, qwt, O16, qg, O16, dx, 0, I, 1, NULL, 1, 2);
    }
    if (I > 0 && dW) { /* dW^T (I x O) += x^T (N16 x I, K-major)^T dy^T (N16 x O) */
        int64_t N16 = round_up(N, FP8_K_ALIGN);
        uint8_t *qxt = (uint8_t *)osp_cuda_scratch(SCRATCH_GEMM_X, (size_t)(I * N16));
        uint8_t *qgt = (uint8_t *)osp_cuda_scratch(SCRATCH_GEMM_Y, (size_t)(O * N16));
        fp8_quant(qxt, x, (const __nv_bfloat16 *)x16, N, I, N16, true, dsx, E4M3_HIF8_FWD_SHIFT, saturate, 0);
        fp8_quant(qgt, dy, NULL, N, O, N16, true, dsg, E4M3_HIF8_GRAD_SHIFT, saturate, 2);
        fp8_gemm(I, O, N16, qxt, N16, qgt, N16, dW, 0, I, 1, NULL, 0, 2);
    }
    if (db) cuda_colsum_fq_add(db, dy, N, O, dsg, saturate);
}

extern "C" void cuda_fp8_counts(uint64_t *total, uint64_t *inexact) {
    cuda_fp8_state *S = fp8_state();
    unsigned long long v = 0;
    CUDA_CHECK(cudaMemcpyAsync(&v, S->inexact, sizeof v, cudaMemcpyDeviceToHost, osp_cuda_inst->stream));
    CUDA_CHECK(cudaStreamSynchronize(osp_cuda_inst->stream));
    if (total) *total = S->total;
    if (inexact) *inexact = v;
}

extern "C" void cuda_fp8_reset_counts(void) {
    cuda_fp8_state *S = fp8_state();
    S->total = 0;
    CUDA_CHECK(cudaMemsetAsync(S->inexact, 0, sizeof(unsigned long long), osp_cuda_inst->stream));
}
