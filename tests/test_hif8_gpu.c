/*
 * test_hif8_gpu.c — the CUDA HiFloat8 twins against the CPU codec, bit for bit:
 *   - all 256 codes decoded;
 *   - EVERY float32 bit pattern (2^32) encoded in both overflow modes, rounded through
 *     hif8_fq_cuda with scale 1 (x*1 = x exactly, so this is hif8_round on the device), and
 *     fake-quantized with a scale that is not a power of two (against fq_apply);
 *   - fake quantization of random tensors at several scales, both modes, aligned and misaligned
 *     pointers (vector and scalar kernels), in place;
 *   - absmax (synchronous and device-resident) and the device-side current-scaling path.
 * Tolerance 0 everywhere (NaN compares equal to NaN: the device returns a canonical NaN where the
 * CPU keeps the operand's payload). Runs only in CUDA builds (ctest label gpu).
 */
#include <stdio.h>

#ifndef OSP_HAVE_CUDA
int main(void) {
    printf("skipped: built without CUDA\n");
    return 0;
}
#else

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "quant/fakequant.h"
#include "quant/hif8.h"

#define CK(call)                                                                                  \
    do {                                                                                          \
        cudaError_t e_ = (call);                                                                  \
        if (e_ != cudaSuccess) {                                                                  \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                              \
        }                                                                                         \
    } while (0)

#include "tests/testutil.h"
#define EXPECT TU_EXPECT /* one failure counter for all C tests: tu_nfail */

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static int same(float a, float b) { return f2u(a) == f2u(b) || (isnan(a) && isnan(b)); }

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint64_t rng_next(void) {
    uint64_t x = rng_state;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return rng_state = x;
}

/* half random bit patterns (every class: NaN, Inf, subnormal), half log-uniform over 2^-30..2^20 */
static void fill_random(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rng_next();
        if (r & 1) {
            uint32_t u = (uint32_t)(r >> 32);
            memcpy(&x[i], &u, 4);
        } else {
            double m = exp2(-30.0 + 50.0 * (double)(r >> 11) * 0x1p-53);
            x[i] = (float)((r & 2) ? -m : m);
        }
    }
}

static void test_codes(void) {
    uint8_t h[256], *d8;
    float *df, g[256];
    for (int i = 0; i < 256; i++) h[i] = (uint8_t)i;
    CK(cudaMalloc((void **)&d8, 256));
    CK(cudaMalloc((void **)&df, 256 * sizeof(float)));
    CK(cudaMemcpy(d8, h, 256, cudaMemcpyHostToDevice));
    hif8_decode_cuda(df, d8, 256, 0);
    CK(cudaMemcpy(g, df, sizeof g, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int i = 0; i < 256; i++) bad += f2u(g[i]) != f2u(hif8_to_float((uint8_t)i)); /* NaN bits too */
    EXPECT(bad == 0, "decode of the 256 codes: %d differ", bad);
    /* misaligned decode (scalar kernel) */
    hif8_decode_cuda(df + 1, d8 + 3, 250, 0);
    CK(cudaMemcpy(g, df + 1, 250 * sizeof(float), cudaMemcpyDeviceToHost));
    for (int i = 0; i < 250; i++) bad += f2u(g[i]) != f2u(hif8_to_float((uint8_t)(i + 3)));
    EXPECT(bad == 0, "misaligned decode: %d differ", bad);
    CK(cudaFree(d8));
    CK(cudaFree(df));
    printf("decode: 256 codes (+250 misaligned) bit-identical\n");
}

/* every float32 bit pattern, in chunks */
static void test_all_floats(void) {
    const size_t chunk = (size_t)1 << 26;
    const float sc = 0.3711f; /* a scale that is not a power of two */
    float *hx, *hr, *hq, *hg, *dx, *dr;
    uint8_t *hc, *dc;
    CK(cudaMallocHost((void **)&hx, chunk * sizeof(float)));
    CK(cudaMallocHost((void **)&hr, chunk * sizeof(float)));
    CK(cudaMallocHost((void **)&hq, chunk * sizeof(float)));
    CK(cudaMallocHost((void **)&hg, chunk * sizeof(float)));
    CK(cudaMallocHost((void **)&hc, 2 * chunk));
    CK(cudaMalloc((void **)&dx, chunk * sizeof(float)));
    CK(cudaMalloc((void **)&dr, chunk * sizeof(float)));
    CK(cudaMalloc((void **)&dc, 2 * chunk));
    double t0 = osp_now();
    long long bad_enc = 0, bad_round = 0, bad_fq = 0;
    for (uint64_t base = 0; base < ((uint64_t)1 << 32); base += chunk) {
#pragma omp parallel for schedule(static)
        for (long long i = 0; i < (long long)chunk; i++) {
            uint32_t u = (uint32_t)(base + (uint64_t)i);
            memcpy(&hx[i], &u, 4);
        }
        CK(cudaMemcpy(dx, hx, chunk * sizeof(float), cudaMemcpyHostToDevice));
        hif8_encode_cuda(dc, dx, chunk, false, 0);
        hif8_encode_cuda(dc + chunk, dx, chunk, true, 0);
        hif8_fq_cuda(dr, dx, chunk, 1.0f, (base >> 26) & 1, 0); /* alternate modes per chunk */
        CK(cudaMemcpy(hc, dc, 2 * chunk, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(hr, dr, chunk * sizeof(float), cudaMemcpyDeviceToHost));
        bool sat_r = (base >> 26) & 1;
        hif8_fq_cuda(dr, dx, chunk, sc, !sat_r, 0);
        CK(cudaMemcpy(hg, dr, chunk * sizeof(float), cudaMemcpyDeviceToHost));
        fq_apply(hq, hx, chunk, sc, !sat_r);
        long long be = 0, br = 0, bq = 0;
#pragma omp parallel for schedule(static) reduction(+ : be, br, bq)
        for (long long i = 0; i < (long long)chunk; i++) {
            be += hc[i] != hif8_from_float(hx[i], false);
            be += hc[chunk + i] != hif8_from_float(hx[i], true);
            br += !same(hr[i], hif8_round(hx[i], sat_r));
            bq += !same(hg[i], hq[i]);
        }
        bad_enc += be, bad_round += br, bad_fq += bq;
    }
    EXPECT(bad_enc == 0, "encode over all float32: %lld differ", bad_enc);
    EXPECT(bad_round == 0, "fq(scale 1) over all float32: %lld differ", bad_round);
    EXPECT(bad_fq == 0, "fq(scale %g) over all float32: %lld differ", (double)sc, bad_fq);
    printf("all 2^32 float32 patterns: encode x 2 modes (%llu checks), device round = fq scale 1 (%llu checks) and fq "
           "scale %g vs fq_apply (%llu checks) bit-identical (%lld + %lld + %lld mismatches, %.1f s)\n",
           (unsigned long long)1 << 33, (unsigned long long)1 << 32, (double)sc, (unsigned long long)1 << 32, bad_enc,
           bad_round, bad_fq, osp_now() - t0);
    CK(cudaFreeHost(hx));
    CK(cudaFreeHost(hr));
    CK(cudaFreeHost(hq));
    CK(cudaFreeHost(hg));
    CK(cudaFreeHost(hc));
    CK(cudaFree(dx));
    CK(cudaFree(dr));
    CK(cudaFree(dc));
}

static void test_fq_random(void) {
    const size_t n = ((size_t)1 << 24) + 5;
    float *hx = malloc(n * sizeof(float)), *hy = malloc(n * sizeof(float)), *hg = malloc(n * sizeof(float));
    float *dx, *dy;
    fill_random(hx, n);
    CK(cudaMalloc((void **)&dx, n * sizeof(float)));
    CK(cudaMalloc((void **)&dy, n * sizeof(float)));
    CK(cudaMemcpy(dx, hx, n * sizeof(float), cudaMemcpyHostToDevice));
    /* amax over the finite part decides the recipe scales */
    float amax = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(hx[i]) && fabsf(hx[i]) < 1e6f) amax = fabsf(hx[i]) > amax ? fabsf(hx[i]) : amax;
    const float scales[] = {15.0f / amax, 224.0f / amax, 32768.0f / amax, 0.37f, 3.0f, 1e-30f, 1e30f, 7.1e4f,
                            1e37f, 3e-39f /* subnormal scale */, -0.75f};
    long long checked = 0, bad = 0;
    for (int si = 0; si < (int)(sizeof scales / sizeof scales[0]); si++) {
        for (int sat = 0; sat < 2; sat++) {
            for (int off = 0; off < 2; off++) { /* off = 1: misaligned, scalar kernel */
                size_t m = n - off;
                fq_apply(hy, hx + off, m, scales[si], sat);
                hif8_fq_cuda(dy + off, dx + off, m, scales[si], sat, 0);
                CK(cudaMemcpy(hg, dy + off, m * sizeof(float), cudaMemcpyDeviceToHost));
                long long b = 0;
#pragma omp parallel for schedule(static) reduction(+ : b)
                for (long long i = 0; i < (long long)m; i++) b += !same(hg[i], hy[i]);
                bad += b, checked += (long long)m;
            }
        }
    }
    EXPECT(bad == 0, "fq over random tensors: %lld of %lld differ", bad, checked);
    /* in place */
    CK(cudaMemcpy(dy, dx, n * sizeof(float), cudaMemcpyDeviceToDevice));
    hif8_fq_cuda(dy, dy, n, scales[1], false, 0);
    CK(cudaMemcpy(hg, dy, n * sizeof(float), cudaMemcpyDeviceToHost));
    fq_apply(hy, hx, n, scales[1], false);
    long long bi = 0;
    for (size_t i = 0; i < n; i++) bi += !same(hg[i], hy[i]);
    EXPECT(bi == 0, "in-place fq: %lld differ", bi);
    /* encode/decode of random tensors, misaligned too */
    uint8_t *dc, *hc = malloc(n);
    CK(cudaMalloc((void **)&dc, n));
    long long bc = 0;
    for (int off = 0; off < 2; off++) {
        hif8_encode_cuda(dc + off, dx + off, n - off, true, 0);
        CK(cudaMemcpy(hc, dc + off, n - off, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < n - off; i++) bc += hc[i] != hif8_from_float(hx[i + off], true);
        hif8_decode_cuda(dy + off, dc + off, n - off, 0);
        CK(cudaMemcpy(hg, dy + off, (n - off) * sizeof(float), cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < n - off; i++) bc += f2u(hg[i]) != f2u(hif8_to_float(hc[i]));
    }
    EXPECT(bc == 0, "random encode/decode arrays: %lld differ", bc);
    printf("fq random: %lld elements (11 scales x 2 modes x aligned/misaligned) + in-place + %zu x 2 encode/decode "
           "bit-identical\n",
           checked, n);
    CK(cudaFree(dc));
    free(hc);

    /* absmax: sizes around the block/warp boundaries, then with Inf and NaN */
    const size_t sizes[] = {1, 31, 257, 1000003, n};
    int ba = 0;
    for (int k = 0; k < 5; k++) {
        for (size_t i = 0; i < sizes[k]; i++) hy[i] = isfinite(hx[i]) ? hx[i] : 0.5f;
        CK(cudaMemcpy(dy, hy, sizes[k] * sizeof(float), cudaMemcpyHostToDevice));
        float g = hif8_absmax_cuda(dy, sizes[k], 0), c = fq_absmax(hy, sizes[k]);
        ba += f2u(g) != f2u(c);
        EXPECT(f2u(g) == f2u(c), "absmax n=%zu: gpu %g cpu %g", sizes[k], (double)g, (double)c);
    }
    float gi = hif8_absmax_cuda(dx, n, 0), ci = fq_absmax(hx, n); /* random bits hold NaNs */
    EXPECT(isnan(ci) && f2u(gi) == f2u(ci), "absmax with NaN: gpu 0x%08X cpu 0x%08X", f2u(gi), f2u(ci));
    EXPECT(hif8_absmax_cuda(dx, 0, 0) == 0.0f, "absmax of nothing");

    /* device-resident current scaling: amax on device -> scale on device -> fq */
    float *da, *ds, hs;
    CK(cudaMalloc((void **)&da, sizeof(float)));
    CK(cudaMalloc((void **)&ds, sizeof(float)));
    for (size_t i = 0; i < n; i++) hy[i] = isfinite(hx[i]) && fabsf(hx[i]) < 1e6f ? hx[i] : -2.0f;
    CK(cudaMemcpy(dy, hy, n * sizeof(float), cudaMemcpyHostToDevice));
    hif8_absmax_cuda_async(da, dy, n, 0);
    hif8_fq_amax_cuda(dy, dy, n, da, 15.0f, false, ds, 0);
    CK(cudaMemcpy(hg, dy, n * sizeof(float), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(&hs, ds, sizeof(float), cudaMemcpyDeviceToHost));
    fq_scaler sc;
    fq_scaler_init(&sc, 15.0f, false, 0, false);
    float cs = fq_scaler_scale(&sc, fq_absmax(hy, n));
    fq_scaler_free(&sc);
    fq_apply(hy, hy, n, cs, false);
    long long bd = 0;
    for (size_t i = 0; i < n; i++) bd += !same(hg[i], hy[i]);
    EXPECT(f2u(hs) == f2u(cs) && bd == 0, "device-resident scaling: scale gpu %g cpu %g, %lld elements differ",
           (double)hs, (double)cs, bd);
    printf("absmax: 5 sizes + NaN + empty equal; device-resident scale %.6g equal, %zu elements bit-identical\n",
           (double)cs, n);
    /* throughput (informative): fq reads and writes 8 bytes per element */
    CK(cudaDeviceSynchronize());
    double t0 = osp_now();
    for (int it = 0; it < 20; it++) hif8_fq_cuda(dy, dx, n, 15.0f, false, 0);
    CK(cudaDeviceSynchronize());
    double dt = (osp_now() - t0) / 20;
    t0 = osp_now();
    for (int it = 0; it < 20; it++) hif8_absmax_cuda_async(da, dx, n, 0);
    CK(cudaDeviceSynchronize());
    double da_t = (osp_now() - t0) / 20;
    printf("throughput: hif8_fq_cuda %.1f GB/s, absmax %.1f GB/s (n = %zu)\n", 8.0 * n / dt * 1e-9, 4.0 * n / da_t * 1e-9,
           n);
    CK(cudaFree(da));
    CK(cudaFree(ds));
    CK(cudaFree(dx));
    CK(cudaFree(dy));
    free(hx), free(hy), free(hg);
}

int main(void) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        fprintf(stderr, "test_hif8_gpu: no CUDA device visible\n");
        return 1;
    }
    test_codes();
    test_fq_random();
    test_all_floats();
    CK(cudaDeviceSynchronize());
    if (tu_nfail) {
        fprintf(stderr, "test_hif8_gpu: %d failures\n", tu_nfail);
        return 1;
    }
    printf("test_hif8_gpu: all passed\n");
    return 0;
}
#endif
