/*
 * hif8_cuda.cu — CUDA launchers of the HiFloat8 codec: encode, decode, fp32 fake quantization
 * and the absolute-maximum reduction that picks the per-tensor scale. Element functions live in
 * quant/hif8_cuda.cuh; the C prototypes are at the bottom of quant/hif8.h.
 */
#include <cuda_runtime.h>
#include <stdint.h>

/* see the prototypes in hif8.h, so nvcc checks them against the definitions below */
#ifndef OSP_HAVE_CUDA
#define OSP_HAVE_CUDA 1
#endif
extern "C" {
#include "core/common.h"
#include "quant/hif8.h"
}
#include "quant/hif8_cuda.cuh"

#define HIF8_THREADS 256
#define HIF8_MAX_BLOCKS 8192 /* grid-stride beyond this: enough to fill any current GPU */

static void hif8_cuda_check(const char *what) {
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) osp_die("hif8_cuda: %s failed: %s", what, cudaGetErrorString(err));
}

static unsigned hif8_blocks(size_t work) {
    size_t b = (work + HIF8_THREADS - 1) / HIF8_THREADS;
    if (b > HIF8_MAX_BLOCKS) b = HIF8_MAX_BLOCKS;
    return (unsigned)(b ? b : 1);
}

static bool hif8_aligned16(const void *a, const void *b) {
    return (((uintptr_t)a | (uintptr_t)b) & 15u) == 0;
}

/* ---- encode: 4 floats -> 4 bytes per thread when both pointers allow it ---- */

__global__ void hif8_encode_kernel(uint8_t *dst, const float *src, size_t n, bool sat) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = hif8_from_float_dev(src[i], sat);
}

__global__ void hif8_encode4_kernel(uchar4 *dst, const float4 *src, size_t n4, bool sat) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) {
        float4 v = src[i];
        dst[i] = make_uchar4(hif8_from_float_dev(v.x, sat), hif8_from_float_dev(v.y, sat),
                             hif8_from_float_dev(v.z, sat), hif8_from_float_dev(v.w, sat));
    }
}

extern "C" void hif8_encode_cuda(uint8_t *d_dst, const float *d_src, size_t n, bool sat, cudaStream_t s) {
    if (n == 0) return;
    size_t done = 0;
    if (((uintptr_t)d_src & 15u) == 0 && ((uintptr_t)d_dst & 3u) == 0 && n >= 4) {
        size_t n4 = n / 4;
        hif8_encode4_kernel<<<hif8_blocks(n4), HIF8_THREADS, 0, s>>>((uchar4 *)d_dst, (const float4 *)d_src, n4, sat);
        done = n4 * 4;
    }
    if (done < n)
        hif8_encode_kernel<<<hif8_blocks(n - done), HIF8_THREADS, 0, s>>>(d_dst + done, d_src + done, n - done, sat);
    hif8_cuda_check("hif8_encode_cuda");
}

/* ---- decode ---- */

__global__ void hif8_decode_kernel(float *dst, const uint8_t *src, size_t n) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = hif8_to_float_dev(src[i]);
}

__global__ void hif8_decode4_kernel(float4 *dst, const uchar4 *src, size_t n4) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) {
        uchar4 c = src[i];
        dst[i] = make_float4(hif8_to_float_dev(c.x), hif8_to_float_dev(c.y), hif8_to_float_dev(c.z),
                             hif8_to_float_dev(c.w));
    }
}

extern "C" void hif8_decode_cuda(float *d_dst, const uint8_t *d_src, size_t n, cudaStream_t s) {
    if (n == 0) return;
    size_t done = 0;
    if (((uintptr_t)d_dst & 15u) == 0 && ((uintptr_t)d_src & 3u) == 0 && n >= 4) {
        size_t n4 = n / 4;
        hif8_decode4_kernel<<<hif8_blocks(n4), HIF8_THREADS, 0, s>>>((float4 *)d_dst, (const uchar4 *)d_src, n4);
        done = n4 * 4;
    }
    if (done < n) hif8_decode_kernel<<<hif8_blocks(n - done), HIF8_THREADS, 0, s>>>(d_dst + done, d_src + done, n - done);
    hif8_cuda_check("hif8_decode_cuda");
}

/* ---- fake quantization; the scale comes either by value or from a device amax ---- */

__global__ void hif8_fq_kernel(float *y, const float *x, size_t n, float scale, const float *d_amax, float target,
                               float *d_scale_out, bool sat) {
    float s = d_amax ? hif8_scale_current_dev(*d_amax, target) : scale;
    if (d_scale_out && blockIdx.x == 0 && threadIdx.x == 0) *d_scale_out = s;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = hif8_fq_dev(x[i], s, sat);
}

__global__ void hif8_fq4_kernel(float4 *y, const float4 *x, size_t n4, float scale, const float *d_amax, float target,
                                float *d_scale_out, bool sat) {
    float s = d_amax ? hif8_scale_current_dev(*d_amax, target) : scale;
    if (d_scale_out && blockIdx.x == 0 && threadIdx.x == 0) *d_scale_out = s;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) {
        float4 v = x[i];
        v.x = hif8_fq_dev(v.x, s, sat);
        v.y = hif8_fq_dev(v.y, s, sat);
        v.z = hif8_fq_dev(v.z, s, sat);
        v.w = hif8_fq_dev(v.w, s, sat);
        y[i] = v;
    }
}

static void hif8_fq_launch(float *d_y, const float *d_x, size_t n, float scale, const float *d_amax, float target,
                           float *d_scale_out, bool sat, cudaStream_t s) {
    size_t done = 0;
    if (hif8_aligned16(d_y, d_x) && n >= 4) {
        size_t n4 = n / 4;
        hif8_fq4_kernel<<<hif8_blocks(n4), HIF8_THREADS, 0, s>>>((float4 *)d_y, (const float4 *)d_x, n4, scale, d_amax,
                                                                  target, d_scale_out, sat);
        done = n4 * 4;
        d_scale_out = NULL; /* written once */
    }
    if (done < n)
        hif8_fq_kernel<<<hif8_blocks(n - done), HIF8_THREADS, 0, s>>>(d_y + done, d_x + done, n - done, scale, d_amax,
                                                                       target, d_scale_out, sat);
    hif8_cuda_check("hif8_fq_cuda");
}

extern "C" void hif8_fq_cuda(float *d_y, const float *d_x, size_t n, float scale, bool sat, cudaStream_t s) {
    if (n == 0) return;
    hif8_fq_launch(d_y, d_x, n, scale, NULL, 0.0f, NULL, sat, s);
}

/* ---- absmax: unsigned max over the magnitude bits (exact, order independent, NaN wins) ---- */

__global__ void hif8_absmax_kernel(unsigned int *out, const float *x, size_t n) {
    unsigned int m = 0;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        unsigned int u = __float_as_uint(x[i]) & 0x7FFFFFFFu;
        m = u > m ? u : m;
    }
    m = __reduce_max_sync(0xFFFFFFFFu, m);
    __shared__ unsigned int warp_max[HIF8_THREADS / 32];
    if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        m = threadIdx.x < HIF8_THREADS / 32 ? warp_max[threadIdx.x] : 0u;
        m = __reduce_max_sync(0xFFFFFFFFu, m);
        if (threadIdx.x == 0 && m) atomicMax(out, m);
    }
}

extern "C" void hif8_absmax_cuda_async(float *d_amax, const float *d_x, size_t n, cudaStream_t s) {
    cudaMemsetAsync(d_amax, 0, sizeof(float), s);
    if (n > 0) hif8_absmax_kernel<<<hif8_blocks(n), HIF8_THREADS, 0, s>>>((unsigned int *)d_amax, d_x, n);
    hif8_cuda_check("hif8_absmax_cuda");
}

extern "C" float hif8_absmax_cuda(const float *d_x, size_t n, cudaStream_t s) {
    if (n == 0) return 0.0f;
    float *d_amax = NULL;
    if (cudaMallocAsync((void **)&d_amax, sizeof(float), s) != cudaSuccess)
        osp_die("hif8_cuda: cudaMallocAsync of 4 bytes failed: %s", cudaGetErrorString(cudaGetLastError()));
    hif8_absmax_cuda_async(d_amax, d_x, n, s);
    float h = 0.0f;
    cudaMemcpyAsync(&h, d_amax, sizeof(float), cudaMemcpyDeviceToHost, s);
    cudaFreeAsync(d_amax, s);
    if (cudaStreamSynchronize(s) != cudaSuccess) hif8_cuda_check("hif8_absmax_cuda (sync)");
    hif8_cuda_check("hif8_absmax_cuda");
    return h;
}

extern "C" void hif8_fq_amax_cuda(float *d_y, const float *d_x, size_t n, const float *d_amax, float target, bool sat,
                                  float *d_scale_out, cudaStream_t s) {
    if (n == 0) {
        /* still publish the scale so a caller's de-scaling does not read garbage */
        if (d_scale_out) {
            hif8_fq_kernel<<<1, HIF8_THREADS, 0, s>>>(d_y, d_x, 0, 0.0f, d_amax, target, d_scale_out, sat);
            hif8_cuda_check("hif8_fq_amax_cuda");
        }
        return;
    }
    hif8_fq_launch(d_y, d_x, n, 0.0f, d_amax, target, d_scale_out, sat, s);
}
