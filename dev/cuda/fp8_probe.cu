/* fp8_probe.cu — development probe: which E4M3 cuBLASLt configurations this GPU / library offers
 * (heuristic status and count, then a matmul), for the shapes of model/cuda/fp8.cu.
 * nvcc -O2 -arch=sm_90 dev/cuda/fp8_probe.cu -lcublasLt -o /tmp/fp8_probe && /tmp/fp8_probe */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdio.h>

static void probe(cublasLtHandle_t lt, void *ws, int m, int n, int k, cudaDataType_t ct, int scales, int bias, cudaDataType_t bt,
                  cublasComputeType_t comp) {
    void *A, *B, *C, *bp;
    float *sc;
    cudaMalloc(&A, (size_t)m * k); cudaMalloc(&B, (size_t)n * k); cudaMalloc(&C, (size_t)m * n * 4);
    cudaMalloc(&bp, (size_t)m * 4); cudaMalloc((void **)&sc, 1024);
    float one[256]; for (int i = 0; i < 256; i++) one[i] = 1; cudaMemcpy(sc, one, 1024, cudaMemcpyHostToDevice);
    cudaMemset(A, 0, (size_t)m * k); cudaMemset(B, 0, (size_t)n * k);
    cublasLtMatmulDesc_t op; cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulDescCreate(&op, comp, CUDA_R_32F);
    cublasOperation_t t = CUBLAS_OP_T, nn = CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &nn, sizeof nn);
    float alpha_h = 1, beta_h = 0, *alpha_p = &alpha_h, *beta_p = &beta_h;
    if (scales == 3) { /* device pointer mode: alpha, beta in device memory */
        cublasLtPointerMode_t pm = CUBLASLT_POINTER_MODE_DEVICE;
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_POINTER_MODE, &pm, sizeof pm);
        alpha_p = sc + 128;
        beta_p = sc + 192;
        cudaMemset(beta_p, 0, 4);
    } else if (scales) {
        float *a = sc, *b = scales == 1 ? sc + 1 : sc + 64;
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a, sizeof a);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b, sizeof b);
    }
    if (bias) {
        cublasLtEpilogue_t e = CUBLASLT_EPILOGUE_BIAS;
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof bp);
    }
    cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, k, m, k);
    cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, k, n, k);
    cublasLtMatrixLayoutCreate(&lc, ct, m, n, m);
    cublasLtMatmulPreference_t pref; cublasLtMatmulPreferenceCreate(&pref);
    uint64_t wsz = 32u << 20;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz, sizeof wsz);
    cublasLtMatmulHeuristicResult_t r[4]; int nr = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 4, r, &nr);
    cublasStatus_t st2 = (cublasStatus_t)-1;
    if (st == 0 && nr) st2 = cublasLtMatmul(lt, op, alpha_p, A, la, B, lb, beta_p, C, lc, C, lc, &r[0].algo, ws, wsz, 0);
    cudaError_t ce = cudaDeviceSynchronize();
    printf("m%d n%d k%d C/D %s comp %d scales %d bias %d(%s): heuristic st %d n %d, matmul st %d, cuda %s\n", m, n, k,
           ct == CUDA_R_32F ? "f32" : "bf16", (int)comp, scales, bias, bt == CUDA_R_32F ? "f32" : "bf16", (int)st, nr,
           (int)st2, cudaGetErrorString(ce));
    cudaFree(A); cudaFree(B); cudaFree(C); cudaFree(bp); cudaFree(sc);
}

int main(void) {
    cublasLtHandle_t lt; cublasLtCreate(&lt);
    void *ws; cudaMalloc(&ws, 32u << 20);
    printf("cublasLt version %zu\n", cublasLtGetVersion());
    cudaDataType_t cts[2] = {CUDA_R_32F, CUDA_R_16BF};
    for (int c = 0; c < 2; c++)
        for (int s = 1; s < 4; s++)
            for (int b = 0; b < 3; b += 2)
                probe(lt, ws, 1536, 4096, 1536, cts[c], s, b > 0, b == 2 ? CUDA_R_16BF : CUDA_R_32F, CUBLAS_COMPUTE_32F);
    probe(lt, ws, 160, 257, 96, CUDA_R_32F, 1, 0, CUDA_R_32F, CUBLAS_COMPUTE_32F);
    probe(lt, ws, 160, 256, 96, CUDA_R_32F, 1, 0, CUDA_R_32F, CUBLAS_COMPUTE_32F);
    probe(lt, ws, 1536, 4096, 1536, CUDA_R_32F, 1, 0, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32);
    return 0;
}
