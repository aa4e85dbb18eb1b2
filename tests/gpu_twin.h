/*
 * gpu_twin.h — helpers of the GPU-vs-CPU op tests (test_ops_gpu.c, test_attn_gpu.c): a seeded
 * splitmix64 RNG, tensors living on both backends with identical contents (pair), NaN-poisoned
 * outputs, ||gpu - cpu|| / ||cpu|| in double, and a pass/fail table with one line per check.
 * Each test program is one translation unit: the static state below is its own. The including
 * file sets C (CPU backend) and G (CUDA backend) before using any of it.
 */
#ifndef OSP_TESTS_GPU_TWIN_H
#define OSP_TESTS_GPU_TWIN_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "model/cuda/backend.h"
#include "model/ops.h"

static const osp_backend *C, *G;
static int nfail, nchecks;
static uint64_t rng = OSP_RNG_GOLDEN;

static inline uint64_t rnd_u64(void) { return osp_rng_next(&rng); }
static inline float rnd_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((rnd_u64() >> 40) * 0x1.0p-24);
}

/* a tensor living on both backends with identical contents */
typedef struct {
    float *c, *g;
    size_t n;
} pair;

static inline pair pair_new(size_t n) {
    pair p = {osp_malloc(n * sizeof(float)), G->alloc(n * sizeof(float)), n};
    return p;
}
static inline pair pair_rand(size_t n, float lo, float hi) {
    pair p = pair_new(n);
    for (size_t i = 0; i < n; i++) p.c[i] = rnd_uniform(lo, hi);
    G->upload(p.g, p.c, n * sizeof(float));
    return p;
}
static inline pair pair_poison(size_t n) { /* outputs: NaN on both, so unwritten elements show */
    pair p = pair_new(n);
    for (size_t i = 0; i < n; i++) p.c[i] = NAN;
    G->upload(p.g, p.c, n * sizeof(float));
    return p;
}
static inline void pair_free(pair *p) {
    free(p->c);
    G->free(p->g);
    p->c = p->g = NULL;
}
static inline void *dev_bytes(const void *h, size_t bytes) {
    void *d = G->alloc(bytes);
    G->upload(d, h, bytes);
    return d;
}

/* ||a - b|| / ||b|| in double; inf when any element is NaN or when an infinity differs */
static inline double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) return INFINITY;
        if (isinf(a[i]) || isinf(b[i])) {
            if (a[i] != b[i]) return INFINITY;
            continue;
        }
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Sets G (a CUDA instance on device 0, default options and the environment's overrides) and C
 * and prints the table header; false (after saying so) when there is no GPU, in which case the
 * program exits 0: the test is a skip, not a failure, on CPU-only machines. */
static inline bool twin_init(const char *prog) {
    G = osp_backend_cuda_init(0, NULL);
    C = osp_backend_cpu();
    if (!G) {
        printf("%s: no CUDA backend or no GPU visible: skipped\n", prog);
        return false;
    }
    printf("%-30s %-28s %10s %8s\n", "op", "shape", "rel.err", "tol");
    return true;
}

/* The GEMM mode of the GPU's next calls (osp_cuda_gemm_parse's names); returns the options it
 * replaced, for twin_set_options to restore. */
static inline osp_cuda_options twin_set_gemm(const char *mode) {
    osp_cuda_options was = *osp_backend_cuda_options(G), o = was;
    int g = osp_cuda_gemm_parse(mode);
    if (g < 0) osp_die("twin_set_gemm: unknown GEMM mode '%s'", mode);
    o.gemm = (osp_cuda_gemm)g;
    osp_backend_cuda_set_options(G, &o);
    return was;
}
static inline void twin_set_options(const osp_cuda_options *o) { osp_backend_cuda_set_options(G, o); }

/* twin_init's instance, freed at the end of the program */
static inline void twin_free_backend(void) {
    osp_backend_cuda_free(G);
    G = NULL;
}

static inline void report(const char *op, const char *shape, double err, double tol) {
    bool ok = err <= tol;
    nchecks++;
    if (!ok) nfail++;
    printf("%-30s %-28s %10.2e %8.0e  %s\n", op, shape, err, tol, ok ? "ok" : "FAIL");
    fflush(stdout);
}

/* download the GPU side and compare with the CPU side */
static inline void check(const char *op, const char *shape, pair p, double tol) {
    float *h = osp_malloc(p.n * sizeof(float));
    G->download(h, p.g, p.n * sizeof(float));
    report(op, shape, rel_err(h, p.c, p.n), tol);
    free(h);
}

static inline void check_scalar(const char *op, const char *shape, double gpu, double cpu, double tol) {
    double err = fabs(gpu - cpu) / (fabs(cpu) > 0 ? fabs(cpu) : 1.0);
    if (isnan(gpu) || isnan(cpu)) err = INFINITY;
    report(op, shape, err, tol);
}

/* bit-identical repeat of a GPU result */
static inline void check_same(const char *op, const char *shape, const float *g1, const float *g2, size_t n) {
    float *a = osp_malloc(n * sizeof(float)), *b = osp_malloc(n * sizeof(float));
    G->download(a, g1, n * sizeof(float));
    G->download(b, g2, n * sizeof(float));
    report(op, shape, memcmp(a, b, n * sizeof(float)) ? 1.0 : 0.0, 0.0);
    free(a);
    free(b);
}

#endif
