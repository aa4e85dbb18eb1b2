/*
 * model/cuda/gemm.cu — the dense layers of the CUDA backend (linear_fwd / linear_bwd) through
 * cuBLASLt, and the fp32 -> bf16 conversion they (and the cuDNN attention) use.
 *
 * Mixed precision (the instance's option gemm, model/cuda/backend.h; config cuda.gemm, env
 * OSP_CUDA_GEMM; read on every call, so a test may switch between calls):
 *  - bf16 (default): the operands (activation, weight, output gradient) are written to bf16
 *    scratch once per call, round to nearest even, and cuBLASLt multiplies bf16 x bf16 with fp32
 *    accumulation into the fp32 output (CUBLAS_COMPUTE_32F). The backward converts dy once for
 *    both of its products. Weights stay fp32 masters; their bf16 copy costs ~1% of the GEMM.
 *  - fast16bf: fp32 operands in memory, CUBLAS_COMPUTE_32F_FAST_16BF (the tensor cores read
 *    bf16-rounded values). Same numerics class, but the kernels load 4-byte operands and run at
 *    about half the bf16 rate on Hopper (notes/cuda.md).
 *  - tf32, fp32: the exact-ish modes, for tests.
 *
 * Row-major vs column-major: a row-major [rows, cols] matrix is the column-major matrix
 * [cols, rows] with the same leading dimension, i.e. its transpose. So row-major
 *   y[N,O] = x[N,I] W[O,I]^T      is column-major   y^T[O,N] = W^T... written as
 *   C(O x N) = op_T(A = W stored I x O) * op_N(B = x stored I x N),  m=O n=N k=I.
 * Matmul descriptors, layouts and the heuristic's algorithm are cached per shape, pointer
 * alignment and mode; the 32 MiB workspace is allocated once. Handle, workspace and cache belong
 * to the instance (struct cuda_gemm_state).
 */
#include "model/cuda/common.cuh"
#include "model/cuda/fp8.h"
#include "quant/hif8_cuda.cuh"

#include <math.h>
#include <string.h>

#define GEMM_WORKSPACE_BYTES (32u << 20)
#define GEMM_CACHE_SIZE 128

typedef struct {
    int ta, tb;                 /* op(A), op(B): 1 = transposed */
    int ab_type;                /* cudaDataType of A and B */
    int64_t m, n, k, lda, ldb, ldc;
    int c16;                    /* C (and the GELU aux) stored bf16; the bias stays fp32 */
    int beta1;                  /* accumulate into C */
    int bias;                   /* bias epilogue */
    int gelu_aux;               /* GELU epilogue writing the pre-activation to an aux matrix (ld = ldc) */
    int compute;                /* cublasComputeType_t */
    int align_a, align_b, align_c, align_bias;
} gemm_key;

typedef struct {
    gemm_key key;
    int used;
    int noalgo; /* cuBLASLt offers no algorithm (epilogue keys only): remembered, so the caller's
                 * fallback does not query the heuristic again on every call */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
} gemm_plan;

struct cuda_gemm_state {
    cublasLtHandle_t lt;
    void *workspace;
    float *host_scale_slot; /* [3]: sx, sw, sg of the host-scale entries (host_scales) */
    gemm_plan cache[GEMM_CACHE_SIZE];
    int cache_next;
};
static void cuda_add_bias_cols(float *C, const float *bias, int64_t m, int64_t n, int64_t ldc);
static void plan_destroy(gemm_plan *p);

void cuda_gemm_init(osp_cuda_instance *in) {
    cuda_gemm_state *g = (cuda_gemm_state *)osp_calloc(1, sizeof *g);
    CUBLAS_CHECK(cublasLtCreate(&g->lt));
    CUDA_CHECK(cudaMalloc(&g->workspace, GEMM_WORKSPACE_BYTES));
    CUDA_CHECK(cudaMalloc(&g->host_scale_slot, 4 * sizeof(float)));
    in->gemm = g;
}

/* after the instance's stream is idle (osp_backend_cuda_free) */
void cuda_gemm_free(osp_cuda_instance *in) {
    cuda_gemm_state *g = in->gemm;
    if (!g) return;
    for (int i = 0; i < GEMM_CACHE_SIZE; i++) plan_destroy(&g->cache[i]);
    CUDA_CHECK(cudaFree(g->workspace));
    CUDA_CHECK(cudaFree(g->host_scale_slot));
    CUBLAS_CHECK(cublasLtDestroy(g->lt));
    free(g);
    in->gemm = NULL;
}

/* the values of osp_cuda_gemm (model/cuda/backend.h) */
typedef enum {
    GEMM_BF16 = OSP_CUDA_GEMM_BF16,
    GEMM_FAST16BF = OSP_CUDA_GEMM_FAST16BF,
    GEMM_TF32 = OSP_CUDA_GEMM_TF32,
    GEMM_FP32 = OSP_CUDA_GEMM_FP32
} gemm_mode;

static gemm_mode gemm_mode_get(void) { return (gemm_mode)osp_cuda_inst->opt.gemm; }

static int gemm_compute_type(gemm_mode m) {
    switch (m) {
    case GEMM_FP32: return CUBLAS_COMPUTE_32F;
    case GEMM_TF32: return CUBLAS_COMPUTE_32F_FAST_TF32;
    case GEMM_FAST16BF: return CUBLAS_COMPUTE_32F_FAST_16BF;
    default: return CUBLAS_COMPUTE_32F; /* bf16 operands, fp32 accumulation */
    }
}

/* ------------------------------------------------------------ fp32 -> bf16 */

/* bf16(x), or with FQ the HiF8 fake quantisation straight into the bf16 operand: bf16(fq(x; s)),
 * the value the two-step path (fq to fp32, then to bf16) gives, without the fp32 copy (every HiF8
 * value fits bf16, the division by s does not, so the bf16 rounding stays). The scale s = *ds is
 * read from device memory (computed there by hif8_scale_dev, or put there by the host: no sync
 * either way); ds is not read without FQ. 16-byte loads when the pointers allow (every activation
 * buffer and scratch slot does): four fp32 or eight bf16 values per thread; the tail and
 * unaligned views go one by one, with the same per-element arithmetic. */
template <bool FQ>
__device__ __forceinline__ float prep_val(float v, float s, bool sat) {
    return FQ ? hif8_fq_dev(v, s, sat) : v;
}
template <bool FQ>
__global__ void to_bf16_vec_kernel(__nv_bfloat162 *dst, const float4 *src, int64_t n4, const float *ds, bool sat) {
    float s = FQ ? *ds : 0.0f;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
        float4 v = src[i];
        dst[2 * i] = __floats2bfloat162_rn(prep_val<FQ>(v.x, s, sat), prep_val<FQ>(v.y, s, sat));
        dst[2 * i + 1] = __floats2bfloat162_rn(prep_val<FQ>(v.z, s, sat), prep_val<FQ>(v.w, s, sat));
    }
}
/* a bf16-stored activation quantised for a HiF8 GEMM, eight values (one uint4) per thread; a word
 * holds two bf16, the first in its low half, and a bf16 is the top half of its fp32 value */
__device__ __forceinline__ uint32_t fq_bf16x2(uint32_t w, float s, bool sat) {
    float lo = __uint_as_float(w << 16), hi = __uint_as_float(w & 0xFFFF0000u);
    __nv_bfloat162 r = __floats2bfloat162_rn(hif8_fq_dev(lo, s, sat), hif8_fq_dev(hi, s, sat));
    return (uint32_t)__bfloat16_as_ushort(r.x) | (uint32_t)__bfloat16_as_ushort(r.y) << 16;
}
__global__ void fq16_vec_kernel(uint4 *dst, const uint4 *src, int64_t n8, const float *ds, bool sat) {
    float s = *ds;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n8; i += (int64_t)gridDim.x * blockDim.x) {
        uint4 v = src[i];
        dst[i] = make_uint4(fq_bf16x2(v.x, s, sat), fq_bf16x2(v.y, s, sat), fq_bf16x2(v.z, s, sat),
                            fq_bf16x2(v.w, s, sat));
    }
}
/* one value per thread; src fp32, or bf16 (a bf16-stored activation quantised for a HiF8 GEMM) */
template <bool FQ, typename S>
__global__ void to_bf16_kernel(__nv_bfloat16 *dst, const S *src, int64_t n, const float *ds, bool sat) {
    float s = FQ ? *ds : 0.0f;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(prep_val<FQ>(val_load(src + i), s, sat));
}
__global__ void fq_to_f32_kernel(float *dst, const float *src, int64_t n, const float *ds, bool sat) {
    float s = *ds;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = hif8_fq_dev(src[i], s, sat);
}

template <bool FQ>
static void to_bf16_launch(__nv_bfloat16 *dst, const float *src, int64_t n, const float *ds, bool sat) {
    if (n <= 0) return;
    int64_t n4 = ((uintptr_t)src % 16 == 0 && (uintptr_t)dst % 8 == 0) ? n / 4 : 0;
    if (n4) {
        to_bf16_vec_kernel<FQ><<<osp_cuda_blocks(n4, 256), 256, 0, osp_cuda_inst->stream>>>(
            (__nv_bfloat162 *)dst, (const float4 *)src, n4, ds, sat);
        CUDA_LAUNCH_CHECK();
    }
    if (n > 4 * n4) {
        to_bf16_kernel<FQ, float><<<osp_cuda_blocks(n - 4 * n4, 256), 256, 0, osp_cuda_inst->stream>>>(
            dst + 4 * n4, src + 4 * n4, n - 4 * n4, ds, sat);
        CUDA_LAUNCH_CHECK();
    }
}

/* dst = bf16(fq(src; *ds)) for a bf16-stored src: 16-byte vectors when both pointers are 16-byte
 * aligned (a view at an odd element offset is not: it goes one by one), the tail one by one */
static void fq16_launch(__nv_bfloat16 *dst, const __nv_bfloat16 *src, int64_t n, const float *ds, bool sat) {
    if (n <= 0) return;
    int64_t n8 = (((uintptr_t)src | (uintptr_t)dst) % 16 == 0) ? n / 8 : 0;
    if (n8) {
        fq16_vec_kernel<<<osp_cuda_blocks(n8, 256), 256, 0, osp_cuda_inst->stream>>>((uint4 *)dst, (const uint4 *)src, n8,
                                                                               ds, sat);
        CUDA_LAUNCH_CHECK();
    }
    if (n > 8 * n8) {
        to_bf16_kernel<true, __nv_bfloat16><<<osp_cuda_blocks(n - 8 * n8, 256), 256, 0, osp_cuda_inst->stream>>>(
            dst + 8 * n8, src + 8 * n8, n - 8 * n8, ds, sat);
        CUDA_LAUNCH_CHECK();
    }
}

void cuda_to_bf16(__nv_bfloat16 *dst, const float *src, int64_t n) { to_bf16_launch<false>(dst, src, n, NULL, false); }

/* A GEMM operand as the mode wants it, in its own scratch slot (slots differ per operand of one
 * call): bf16 mode: bf16(x), or bf16(fq(x; *ds)) when ds is given; other modes: x itself, or an
 * fp32 fq(x; *ds) copy. */
static const void *operand_prep(gemm_mode mode, int slot, const float *x, int64_t n, const float *ds, bool sat) {
    if (mode != GEMM_BF16) {
        if (!ds) return x;
        float *d = (float *)osp_cuda_scratch(slot, sizeof(float) * (size_t)n);
        fq_to_f32_kernel<<<osp_cuda_blocks(n, 256), 256, 0, osp_cuda_inst->stream>>>(d, x, n, ds, sat);
        CUDA_LAUNCH_CHECK();
        return d;
    }
    __nv_bfloat16 *d = (__nv_bfloat16 *)osp_cuda_scratch(slot, sizeof(__nv_bfloat16) * (size_t)n);
    if (!ds) to_bf16_launch<false>(d, x, n, NULL, false);
    else to_bf16_launch<true>(d, x, n, ds, sat);
    return d;
}

static void plan_destroy(gemm_plan *p) {
    if (p->used && !p->noalgo) osp_cuda_lt_plan_destroy(p->op, p->la, p->lb, p->lc);
    p->used = p->noalgo = 0;
}

/* Returns the cached plan, building it on a miss; NULL when cuBLASLt offers no algorithm
 * (only possible with an epilogue: the caller then does the epilogue's work itself). */
static gemm_plan *plan_get(const gemm_key *key) {
    cuda_gemm_state *g = osp_cuda_inst->gemm;
    for (int i = 0; i < GEMM_CACHE_SIZE; i++)
        if (g->cache[i].used && !memcmp(&g->cache[i].key, key, sizeof *key))
            return g->cache[i].noalgo ? NULL : &g->cache[i];

    gemm_plan *p = &g->cache[g->cache_next];
    g->cache_next = (g->cache_next + 1) % GEMM_CACHE_SIZE;
    plan_destroy(p);
    p->key = *key;

    cublasOperation_t ta = key->ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = key->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, (cublasComputeType_t)key->compute, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (key->bias || key->gelu_aux) {
        cublasLtEpilogue_t epi = key->gelu_aux ? (key->bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX)
                                               : CUBLASLT_EPILOGUE_BIAS;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    }
    if (key->gelu_aux) { /* aux has D's type and leading dimension */
        int64_t ld = key->ldc;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld, sizeof ld));
        if (key->c16) {
            cudaDataType_t at = CUDA_R_16BF;
            CUBLAS_CHECK(
                cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE, &at, sizeof at));
        }
    }
    if (key->bias && key->c16) { /* the bias would default to D's type: keep the fp32 master */
        cudaDataType_t bt = CUDA_R_32F;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    }
    /* stored shapes: A is (ta ? k x m : m x k), B is (tb ? n x k : k x n), C is m x n */
    cudaDataType_t tab = (cudaDataType_t)key->ab_type;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->la, tab, key->ta ? key->k : key->m, key->ta ? key->m : key->k,
                                            key->lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lb, tab, key->tb ? key->n : key->k, key->tb ? key->k : key->n,
                                            key->ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lc, key->c16 ? CUDA_R_16BF : CUDA_R_32F, key->m, key->n, key->ldc));

    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = GEMM_WORKSPACE_BYTES;
    uint32_t aa = key->align_a, ab = key->align_b, ac = key->align_c, abias = key->align_bias;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof ac));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac, sizeof ac));
    if (key->bias) {
        /* the bias pointer's alignment is not a preference of its own; be conservative by
         * folding it into D's (both are written/read by the epilogue) */
        uint32_t m = ac < abias ? ac : abias;
        CUBLAS_CHECK(
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &m, sizeof m));
    }
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(g->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, 1, &res,
                                                       &nres);
    cublasLtMatmulPreferenceDestroy(pref);
    p->used = 1;
    if (st != CUBLAS_STATUS_SUCCESS || nres == 0) {
        if (key->bias || key->gelu_aux) {
            plan_destroy(p);
            p->key = *key;
            p->used = p->noalgo = 1;
            return NULL;
        }
        fprintf(stderr,
                "osp: error: cuBLASLt found no algorithm for m=%lld n=%lld k=%lld (ta=%d tb=%d, compute %d): %s "
                "(hint: try cuda.gemm: fp32, or OSP_CUDA_GEMM=fp32)\n",
                (long long)key->m, (long long)key->n, (long long)key->k, key->ta, key->tb, key->compute,
                cublasLt_status_name(st));
        osp_exit(1);
    }
    p->algo = res.algo;
    return p;
}

/* C(m x n, col-major, ldc, fp32, or bf16 when c16) = op(A) op(B) [+ C if beta1] [+ bias[m]
 * broadcast over n]; A and B are fp32 or (mode bf16) bf16 as the mode says. With aux: aux = that
 * result and C = gelu_tanh(aux) (cuBLASLt's GELU epilogue; aux has C's type); returns -1 when no
 * algorithm offers it (nothing written), else 0. */
static int gemm(gemm_mode mode, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda,
                const void *B, int64_t ldb, void *C, int c16, int64_t ldc, int beta1, const float *bias, void *aux) {
    gemm_key key;
    memset(&key, 0, sizeof key); /* padding must compare equal */
    key.ab_type = mode == GEMM_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    key.c16 = c16;
    key.ta = ta;
    key.tb = tb;
    key.m = m;
    key.n = n;
    key.k = k;
    key.lda = lda;
    key.ldb = ldb;
    key.ldc = ldc;
    key.beta1 = beta1;
    key.bias = bias != NULL;
    key.gelu_aux = aux != NULL;
    key.compute = gemm_compute_type(mode);
    key.align_a = osp_cuda_ptr_align(A);
    key.align_b = osp_cuda_ptr_align(B);
    key.align_c = osp_cuda_ptr_align(C);
    key.align_bias = bias ? osp_cuda_ptr_align(bias) : 0;
    if (aux) { /* the aux matrix shares D's shape and leading dimension: fold its alignment in */
        int al = osp_cuda_ptr_align(aux);
        if (al < key.align_c) key.align_c = al;
    }
    gemm_plan *p = plan_get(&key);
    if (!p && aux) return -1;
    if (!p && c16) { /* no bias-epilogue algorithm (bf16 C, beta 0): fp32 GEMM + bias, then round */
        OSP_CHECK(!beta1 && ldc == m, "bf16 GEMM output with accumulation or a strided C");
        float *t = (float *)osp_cuda_scratch(SCRATCH_GEMM_Y, sizeof(float) * (size_t)(m * n));
        gemm(mode, ta, tb, m, n, k, A, lda, B, ldb, t, 0, ldc, 0, bias, NULL);
        cuda_to_bf16((__nv_bfloat16 *)C, t, m * n);
        return 0;
    }
    if (!p) { /* no bias-epilogue algorithm for this shape: plain GEMM, then add the bias */
        gemm(mode, ta, tb, m, n, k, A, lda, B, ldb, C, 0, ldc, beta1, NULL, NULL);
        cuda_add_bias_cols((float *)C, bias, m, n, ldc);
        return 0;
    }
    if (bias)
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    if (aux)
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
    const float alpha = 1.0f, beta = beta1 ? 1.0f : 0.0f;
    cuda_gemm_state *g = osp_cuda_inst->gemm;
    CUBLAS_CHECK(cublasLtMatmul(g->lt, p->op, &alpha, A, p->la, B, p->lb, &beta, C, p->lc, C, p->lc, &p->algo,
                                g->workspace, GEMM_WORKSPACE_BYTES, osp_cuda_inst->stream));
    return 0;
}

/* C[col j][row i] += bias[i] for the fallback path (column-major m x n) */
__global__ void add_bias_cols_kernel(float *C, const float *bias, int64_t m, int64_t n, int64_t ldc) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < m * n; t += (int64_t)gridDim.x * blockDim.x) {
        int64_t j = t / m, i = t % m;
        C[j * ldc + i] += bias[i];
    }
}

static void cuda_add_bias_cols(float *C, const float *bias, int64_t m, int64_t n, int64_t ldc) {
    add_bias_cols_kernel<<<osp_cuda_blocks(m * n, 256), 256, 0, osp_cuda_inst->stream>>>(C, bias, m, n, ldc);
    CUDA_LAUNCH_CHECK();
}

__global__ void fill_rows_kernel(float *y, const float *b, int64_t N, int O) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < N * O; t += (int64_t)gridDim.x * blockDim.x)
        y[t] = b ? b[t % O] : 0.0f;
}

/* the x operand, fp32 (operand_prep) or bf16-stored (x16: itself, or bf16(fq(x16; *dsx)) in its slot) */
static const void *operand_x(gemm_mode mode, const float *x, const __nv_bfloat16 *x16, int64_t n, const float *dsx,
                             bool sat) {
    if (!x16) return operand_prep(mode, SCRATCH_GEMM_X, x, n, dsx, sat);
    if (!dsx) return x16;
    __nv_bfloat16 *d = (__nv_bfloat16 *)osp_cuda_scratch(SCRATCH_GEMM_X, sizeof(__nv_bfloat16) * (size_t)n);
    fq16_launch(d, x16, n, dsx, sat);
    return d;
}

__global__ void put_floats_kernel(float *d, int n, float a, float b, float c) {
    d[0] = a;
    if (n > 1) d[1] = b;
    if (n > 2) d[2] = c;
}
void cuda_put_floats(float *d, int n, float a, float b, float c) {
    put_floats_kernel<<<1, 1, 0, osp_cuda_inst->stream>>>(d, n, a, b, c);
    CUDA_LAUNCH_CHECK();
}

/* Scales the host computed (linear_fq_fwd / linear_fq_bwd take host floats), put into device
 * memory in stream order, so one implementation serves both kinds of entry. The slot is reused
 * by the next such call; the kernels reading it run before that call's write, as everything
 * runs in order on the instance's stream. */
static const float *host_scales(float sx, float sw, float sg) {
    float *slot = osp_cuda_inst->gemm->host_scale_slot;
    cuda_put_floats(slot, 3, sx, sw, sg);
    return slot;
}

/* y = fq(x; *dsx) fq(W; *dsw)^T + b (a NULL scale: that operand as is; scales are device floats).
 * x is fp32 or bf16-stored (x16), y fp32 or bf16 (y16): exactly one of each pair; a bf16 one makes
 * it a bf16 GEMM whatever the mode. */
static void linear_fwd_impl(gemm_mode mode, float *y, __nv_bfloat16 *y16, const float *x, const __nv_bfloat16 *x16,
                            const float *dsx, const float *W, const float *dsw, const float *b, int64_t N, int I, int O,
                            bool sat) {
    if (N <= 0 || O <= 0) return;
    OSP_CHECK((!y != !y16) && (!x != !x16), "linear_fwd: exactly one output and one input pointer");
    if (I <= 0) { /* degenerate: y = b (or 0) */
        OSP_CHECK(y, "linear_fwd: a bf16 output needs I > 0");
        fill_rows_kernel<<<osp_cuda_blocks(N * O, 256), 256, 0, osp_cuda_inst->stream>>>(y, b, N, O);
        CUDA_LAUNCH_CHECK();
        return;
    }
    if (x16 || y16) mode = GEMM_BF16;
    /* y^T(O x N) = W^T... : A = W stored (I x O, ld I) transposed, B = x stored (I x N, ld I) */
    const void *A = operand_prep(mode, SCRATCH_GEMM_W, W, (int64_t)O * I, dsw, sat);
    const void *Bm = operand_x(mode, x, x16, N * I, dsx, sat);
    if (y16) gemm(mode, 1, 0, O, N, I, A, I, Bm, I, y16, 1, O, 0, b, NULL);
    else gemm(mode, 1, 0, O, N, I, A, I, Bm, I, y, 0, O, 0, b, NULL);
}

void cuda_linear_fwd(float *y, const float *x, const float *W, const float *b, int64_t N, int I, int O) {
    linear_fwd_impl(gemm_mode_get(), y, NULL, x, NULL, NULL, W, NULL, b, N, I, O, false);
}

/* A scale of 0 (amax = Inf) is used as it is: fq gives x * 0 / 0 = NaN, as on the CPU. */
void cuda_linear_fq_fwd(float *y, const float *x, float sx, const float *W, float sw, const float *b, int64_t N, int I,
                        int O, bool saturate) {
    if (N <= 0 || O <= 0) return;
    const float *ds = host_scales(sx, sw, 0.0f);
    linear_fwd_impl(gemm_mode_get(), y, NULL, x, NULL, ds, W, ds + 1, b, N, I, O, saturate);
}

/* dx += g fq(W); dW += g^T fq(x); db += colsum(g), g = fq(dy; *dsg) (a NULL scale: as is; scales
 * are device floats); x fp32 or bf16-stored (x16, exactly one; a bf16 x makes it a bf16 GEMM
 * whatever the mode) */
static void linear_bwd_impl(gemm_mode mode, float *dx, float *dW, float *db, const float *dy, const float *dsg,
                            const float *x, const __nv_bfloat16 *x16, const float *dsx, const float *W,
                            const float *dsw, int64_t N, int I, int O, bool sat) {
    if (N <= 0 || O <= 0) return;
    OSP_CHECK(!x != !x16, "linear_bwd: exactly one of x, x16");
    if (x16) mode = GEMM_BF16;
    if (I > 0 && (dx || dW)) {
        const void *g = operand_prep(mode, SCRATCH_GEMM_DY, dy, N * O, dsg, sat); /* once for both products */
        /* dx^T(I x N) += W^T-as-stored (I x O, ld I) * dy^T (O x N, ld O) */
        if (dx) {
            const void *Wo = operand_prep(mode, SCRATCH_GEMM_W, W, (int64_t)O * I, dsw, sat);
            gemm(mode, 0, 0, I, N, O, Wo, I, g, O, dx, 0, I, 1, NULL, NULL);
        }
        /* dW^T(I x O) += x^T (I x N, ld I) * dy (N x O) = op_T(dy^T stored O x N, ld O) */
        if (dW) {
            const void *xo = operand_x(mode, x, x16, N * I, dsx, sat);
            gemm(mode, 0, 1, I, O, N, xo, I, g, O, dW, 0, I, 1, NULL, NULL);
        }
    }
    if (db) {
        if (dsg) cuda_colsum_fq_add(db, dy, N, O, dsg, sat);
        else cuda_colsum_add(db, dy, N, O);
    }
}

void cuda_linear_bwd(float *dx, float *dW, float *db, const float *dy, const float *x, const float *W, int64_t N,
                     int I, int O) {
    linear_bwd_impl(gemm_mode_get(), dx, dW, db, dy, NULL, x, NULL, NULL, W, NULL, N, I, O, false);
}

void cuda_linear_fq_bwd(float *dx, float *dW, float *db, const float *dy, float sg, const float *x, float sx,
                        const float *W, float sw, int64_t N, int I, int O, bool saturate) {
    if (N <= 0 || O <= 0) return;
    const float *ds = host_scales(sx, sw, sg);
    linear_bwd_impl(gemm_mode_get(), dx, dW, db, dy, ds + 2, x, NULL, ds, W, ds + 1, N, I, O, saturate);
}

/* ------------------------------------------------------------ bf16 activation storage */
/* The linear ops with bf16-stored activations (ops.h, linear16_*): a bf16 x is the GEMM operand
 * itself, a bf16 y is written by the GEMM (rounded from its fp32 accumulator). These always run
 * in bf16 mode (a bf16 operand is a bf16 GEMM); weights and dy are converted as in linear_*. */

void cuda_linear16_fwd(float *y, osp_bf16 *y16, const float *x, const osp_bf16 *x16, const float *W, const float *b,
                       int64_t N, int I, int O) {
    linear_fwd_impl(GEMM_BF16, y, (__nv_bfloat16 *)y16, x, (const __nv_bfloat16 *)x16, NULL, W, NULL, b, N, I, O,
                    false);
}
void cuda_linear16_bwd(float *dx, float *dW, float *db, const float *dy, const float *x, const osp_bf16 *x16,
                       const float *W, int64_t N, int I, int O) {
    linear_bwd_impl(GEMM_BF16, dx, dW, db, dy, NULL, x, (const __nv_bfloat16 *)x16, NULL, W, NULL, N, I, O, false);
}
/* HiF8 over bf16 storage: the scales are device floats (ops.h), never read by the host. With the
 * instance's hif8_fp8 option on a GPU with E4M3 tensor cores these run as E4M3 GEMMs
 * (model/cuda/fp8.h), else as bf16 GEMMs on HiF8-rounded bf16 operands (the emulation). */
static bool hif8_on_fp8(void) { return osp_cuda_inst->opt.hif8_fp8 && osp_cuda_inst->fp8_capable; }

void cuda_linear_fq16_fwd(float *y, osp_bf16 *y16, const float *x, const osp_bf16 *x16, const float *dsx,
                          const float *W, const float *dsw, const float *b, int64_t N, int I, int O, bool saturate) {
    OSP_CHECK(dsx && dsw, "linear_fq16_fwd: both scales are needed (device floats)");
    if (hif8_on_fp8()) {
        cuda_fp8_linear_fwd(y, y16, x, x16, dsx, W, dsw, b, N, I, O, saturate);
        return;
    }
    linear_fwd_impl(GEMM_BF16, y, (__nv_bfloat16 *)y16, x, (const __nv_bfloat16 *)x16, dsx, W, dsw, b, N, I, O,
                    saturate);
}
void cuda_linear_fq16_bwd(float *dx, float *dW, float *db, const float *dy, const float *dsg, const float *x,
                          const osp_bf16 *x16, const float *dsx, const float *W, const float *dsw, int64_t N, int I,
                          int O, bool saturate) {
    OSP_CHECK(dsg && dsx && dsw, "linear_fq16_bwd: all three scales are needed (device floats)");
    if (hif8_on_fp8()) {
        cuda_fp8_linear_bwd(dx, dW, db, dy, dsg, x, x16, dsx, W, dsw, N, I, O, saturate);
        return;
    }
    linear_bwd_impl(GEMM_BF16, dx, dW, db, dy, dsg, x, (const __nv_bfloat16 *)x16, dsx, W, dsw, N, I, O, saturate);
}

/* The FFN's first layer: pre = fq(x; *dsx) fq(W; *dsw)^T + b and y = gelu_tanh(pre), fp32 (x, y,
 * pre) or all bf16 (x16, y16, pre16), in one GEMM (epilogue GELU_AUX[_BIAS]). Where cuBLASLt
 * offers no such algorithm the fp32 result (in pre, or in scratch for bf16) is finished by
 * gelu_split_kernel, so the numbers are those of the epilogue either way. */
template <typename T>
__global__ void gelu_split_kernel(T *y, T *pre_out, const float *pre, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = pre[i];
        val_store(&y[i], gelu_tanh_dev(v));
        if (pre_out) val_store(&pre_out[i], v);
    }
}
static void linear_gelu_impl(gemm_mode mode, float *y, float *pre, __nv_bfloat16 *y16, __nv_bfloat16 *pre16,
                             const float *x, const __nv_bfloat16 *x16, const float *dsx, const float *W,
                             const float *dsw, const float *b, int64_t N, int I, int O, bool sat) {
    if (N <= 0 || O <= 0) return;
    OSP_CHECK(I > 0 && (!y16 == !x16) && (!y16 == !pre16) && (!y16 == !!y), "linear_gelu_fwd: bad arguments");
    if (x16) mode = GEMM_BF16;
    const void *A = operand_prep(mode, SCRATCH_GEMM_W, W, (int64_t)O * I, dsw, sat);
    const void *Bm = operand_x(mode, x, x16, N * I, dsx, sat);
    int rc = y16 ? gemm(mode, 1, 0, O, N, I, A, I, Bm, I, y16, 1, O, 0, b, pre16)
                 : gemm(mode, 1, 0, O, N, I, A, I, Bm, I, y, 0, O, 0, b, pre);
    if (rc == 0) return;
    float *t = y16 ? (float *)osp_cuda_scratch(SCRATCH_GEMM_Y, sizeof(float) * (size_t)(N * O)) : pre;
    gemm(mode, 1, 0, O, N, I, A, I, Bm, I, t, 0, O, 0, b, NULL);
    if (y16)
        gelu_split_kernel<<<osp_cuda_blocks(N * O, 256), 256, 0, osp_cuda_inst->stream>>>(y16, pre16, t, N * O);
    else
        gelu_split_kernel<<<osp_cuda_blocks(N * O, 256), 256, 0, osp_cuda_inst->stream>>>(y, (float *)NULL, t, N * O);
    CUDA_LAUNCH_CHECK();
}

void cuda_linear_gelu_fwd(float *y, float *pre, const float *x, const float *W, const float *b, int64_t N, int I,
                          int O) {
    linear_gelu_impl(gemm_mode_get(), y, pre, NULL, NULL, x, NULL, NULL, W, NULL, b, N, I, O, false);
}
void cuda_linear_gelu16_fwd(osp_bf16 *y, osp_bf16 *pre, const osp_bf16 *x, const float *W, const float *b, int64_t N,
                            int I, int O) {
    linear_gelu_impl(GEMM_BF16, NULL, NULL, (__nv_bfloat16 *)y, (__nv_bfloat16 *)pre, NULL, (const __nv_bfloat16 *)x,
                     NULL, W, NULL, b, N, I, O, false);
}
void cuda_linear_fq_gelu16_fwd(osp_bf16 *y, osp_bf16 *pre, const osp_bf16 *x, const float *dsx, const float *W,
                               const float *dsw, const float *b, int64_t N, int I, int O, bool saturate) {
    OSP_CHECK(dsx && dsw, "linear_fq_gelu16_fwd: both scales are needed (device floats)");
    if (hif8_on_fp8()) {
        cuda_fp8_linear_gelu_fwd(y, pre, x, dsx, W, dsw, b, N, I, O, saturate);
        return;
    }
    linear_gelu_impl(GEMM_BF16, NULL, NULL, (__nv_bfloat16 *)y, (__nv_bfloat16 *)pre, NULL, (const __nv_bfloat16 *)x,
                     dsx, W, dsw, b, N, I, O, saturate);
}

/* bf16 storage is in effect while the GEMMs run in bf16 mode (the default) and act16 is on */
int cuda_act16_enabled(void) { return gemm_mode_get() == GEMM_BF16 && osp_cuda_inst->opt.act16; }
