/*
 * dev/cuda/attn_variants.cu — the tile-shape experiments of osp's flash attention at head dim 128,
 * outside the library: each variant is checked against the configuration the backend runs
 * (attn_fwd_dispatch / attn_dkdv_dispatch / attn_dq_dispatch of model/cuda/attn_*.cuh) on the same
 * bf16 operands, then, with --time, timed next to it at 8,192 and 32,760 tokens x 12 heads.
 *
 *   fwd a  8 warps x 16 rows, 64-key tiles, Q in registers
 *   fwd b  4 warps x 32 rows, 64-key tiles                       (the backend's)
 *   fwd c  4 warps x 32 rows, 32-key tiles
 *   fwd g  as a, software-pipelined (dev/cuda/attn_fwd_pipe.cuh)
 *   kv  a  dK/dV with 8 warps (128 keys) per block
 *   kv  b  dK/dV with 4 warps (64 keys) per block                (the backend's)
 *   dq  a  dQ with 8 warps x 16 rows, 64-key tiles
 *   dq  b  dQ with 4 warps x 32 rows, 32-key tiles               (the backend's)
 *
 * Tolerances: ||variant - backend|| / ||backend|| <= 1e-2 for o, lse and 2e-2 for dq, dk, dv (the
 * backend's tolerances against the CPU twin, tests/test_attn_gpu.c); -inf lse (queries with no
 * valid key) must match exactly. Exit status 1 when a check fails. Build and run: dev/cuda/README.md.
 */
#include "dev/cuda/attn_fwd_pipe.cuh"
#include "model/cuda/attn_bwd.cuh"
#include "model/cuda/attn_fwd.cuh"

#include <string.h>

static const osp_backend *G;
static int nfail;
static uint64_t rng_state = 0x243F6A8885A308D3ULL;

static float rnd(float lo, float hi) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return lo + (hi - lo) * (float)((z >> 40) * 0x1.0p-24);
}

static float *dev_rand(size_t n, float lo, float hi) {
    float *h = (float *)osp_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = rnd(lo, hi);
    float *d = (float *)G->alloc(n * sizeof(float));
    G->upload(d, h, n * sizeof(float));
    free(h);
    return d;
}

static float *host_copy(const float *d, size_t n) {
    float *h = (float *)osp_malloc(n * sizeof(float));
    G->download(h, d, n * sizeof(float));
    return h;
}

/* ||a - b|| / ||b|| over finite entries; infinite entries must agree exactly (else +inf) */
static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (isinf(b[i]) || isinf(a[i])) {
            if (a[i] != b[i]) return INFINITY;
            continue;
        }
        double e = (double)a[i] - b[i];
        num += e * e;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void report(const char *what, const char *shape, const float *dv, const float *dref, size_t n, double tol) {
    float *a = host_copy(dv, n), *b = host_copy(dref, n);
    double e = rel_err(a, b, n);
    bool ok = e <= tol; /* NaN fails */
    nfail += !ok;
    printf("%-22s %-32s %10.2e %8.0e  %s\n", what, shape, e, tol, ok ? "ok" : "FAIL");
    free(a), free(b);
}

/* ---- the variants (head dim 128: Dp = 128) ---- */

static void fwd_run(char v, float *o, float *lse, const bf16 *qb, const bf16 *kb, const bf16 *vb,
                    const uint8_t *kvalid, int64_t R, int64_t Rkv, int Nq, int Nk, int H, int d) {
    switch (v) {
    case 'a': attn_fwd_launch<128, 8, 1, 64, 1>(o, lse, qb, kb, vb, kvalid, R, Rkv, Nq, Nk, H, d); break;
    case 'c': attn_fwd_launch<128, 4, 2, 32, 1>(o, lse, qb, kb, vb, kvalid, R, Rkv, Nq, Nk, H, d); break;
    case 'g': attn_fwd_pipe_launch<128, 8, 64>(o, lse, qb, kb, vb, kvalid, R, Rkv, Nq, Nk, H, d); break;
    default: attn_fwd_dispatch(o, lse, qb, kb, vb, kvalid, R, Rkv, Nq, Nk, H, d, 128); break;
    }
}
static void kv_run(char v, float *dk, float *dv, const bf16 *qb, const bf16 *kb, const bf16 *vb, const bf16 *dob,
                   const float *lse, const float *delta, const uint8_t *kvalid, int64_t R, int64_t Rkv, int Nq, int Nk,
                   int H, int d) {
    if (v == 'a') attn_dkdv_launch<128, 8, 64>(dk, dv, qb, kb, vb, dob, lse, delta, kvalid, R, Rkv, Nq, Nk, H, d);
    else attn_dkdv_dispatch(dk, dv, qb, kb, vb, dob, lse, delta, kvalid, R, Rkv, Nq, Nk, H, d, 128);
}
static void dq_run(char v, float *dq, const bf16 *qb, const bf16 *kb, const bf16 *vb, const bf16 *dob,
                   const float *lse, const float *delta, const uint8_t *kvalid, int64_t R, int64_t Rkv, int Nq, int Nk,
                   int H, int d) {
    if (v == 'a') attn_dq_launch<128, 8, 1, 64, 1>(dq, qb, kb, vb, dob, lse, delta, kvalid, R, Rkv, Nq, Nk, H, d);
    else attn_dq_dispatch(dq, qb, kb, vb, dob, lse, delta, kvalid, R, Rkv, Nq, Nk, H, d, 128);
}

/* one attention problem in the kernels' layout: bf16 head-major q, k, v, dO, and the backend's
 * o, lse, Delta, dq, dk, dv as the reference */
typedef struct {
    int64_t R, Rkv;
    int Nq, Nk, H, d;
    size_t nq, nk, nl;
    bf16 *qb, *kb, *vb, *dob;
    uint8_t *kvalid;
    float *o, *lse, *delta, *dq, *dk, *dv;
    char shape[64];
} problem;

static void problem_init(problem *p, int64_t R, int64_t Rkv, int Nq, int Nk, int H, int d, bool mask) {
    memset(p, 0, sizeof *p);
    p->R = R, p->Rkv = Rkv, p->Nq = Nq, p->Nk = Nk, p->H = H, p->d = d;
    snprintf(p->shape, sizeof p->shape, "R%lld/%lld Nq%d Nk%d H%d%s", (long long)R, (long long)Rkv, Nq, Nk, H,
             mask ? " mask" : "");
    p->nq = (size_t)R * Nq * H * d, p->nk = (size_t)Rkv * Nk * H * d, p->nl = (size_t)R * H * Nq;
    float *q = dev_rand(p->nq, -2, 2), *k = dev_rand(p->nk, -1, 1), *v = dev_rand(p->nk, -1, 1);
    float *dout = dev_rand(p->nq, -1, 1);
    p->qb = (bf16 *)G->alloc(p->nq * sizeof(bf16)), p->dob = (bf16 *)G->alloc(p->nq * sizeof(bf16));
    p->kb = (bf16 *)G->alloc(p->nk * sizeof(bf16)), p->vb = (bf16 *)G->alloc(p->nk * sizeof(bf16));
    attn_convert(p->qb, q, R, Nq, H, d, 128);
    attn_convert(p->kb, k, Rkv, Nk, H, d, 128);
    attn_convert(p->vb, v, Rkv, Nk, H, d, 128);
    attn_convert(p->dob, dout, R, Nq, H, d, 128);
    if (mask) { /* random keys masked, and kv row 1 entirely (queries with no valid key) */
        uint8_t *h = (uint8_t *)osp_malloc((size_t)Rkv * Nk);
        for (int64_t i = 0; i < Rkv * Nk; i++) h[i] = rnd(0, 1) < 0.75f;
        if (Rkv > 1) memset(h + Nk, 0, (size_t)Nk);
        p->kvalid = (uint8_t *)G->alloc((size_t)Rkv * Nk);
        G->upload(p->kvalid, h, (size_t)Rkv * Nk);
        free(h);
    }
    p->o = (float *)G->alloc(p->nq * sizeof(float)), p->lse = (float *)G->alloc(p->nl * sizeof(float));
    p->delta = (float *)G->alloc(p->nl * sizeof(float));
    p->dq = (float *)G->alloc(p->nq * sizeof(float));
    p->dk = (float *)G->alloc(p->nk * sizeof(float)), p->dv = (float *)G->alloc(p->nk * sizeof(float));
    fwd_run('b', p->o, p->lse, p->qb, p->kb, p->vb, p->kvalid, R, Rkv, Nq, Nk, H, d);
    attn_delta_launch(p->delta, dout, p->o, R, Nq, H, d);
    kv_run('b', p->dk, p->dv, p->qb, p->kb, p->vb, p->dob, p->lse, p->delta, p->kvalid, R, Rkv, Nq, Nk, H, d);
    dq_run('b', p->dq, p->qb, p->kb, p->vb, p->dob, p->lse, p->delta, p->kvalid, R, Rkv, Nq, Nk, H, d);
    G->free(q), G->free(k), G->free(v), G->free(dout);
}

static void problem_free(problem *p) {
    void *b[] = {p->qb, p->kb, p->vb, p->dob, p->kvalid, p->o, p->lse, p->delta, p->dq, p->dk, p->dv};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        if (b[i]) G->free(b[i]);
}

static void check_variants(int64_t R, int64_t Rkv, int Nq, int Nk, int H, bool mask) {
    problem p;
    problem_init(&p, R, Rkv, Nq, Nk, H, 128, mask);
    float *o = (float *)G->alloc(p.nq * sizeof(float)), *lse = (float *)G->alloc(p.nl * sizeof(float));
    float *g1 = (float *)G->alloc(p.nk * sizeof(float)), *g2 = (float *)G->alloc(p.nk * sizeof(float));
    float *gq = (float *)G->alloc(p.nq * sizeof(float));
    char what[32];
    for (const char *v = "acg"; *v; v++) {
        fwd_run(*v, o, lse, p.qb, p.kb, p.vb, p.kvalid, R, Rkv, Nq, Nk, H, 128);
        snprintf(what, sizeof what, "fwd %c: o", *v);
        report(what, p.shape, o, p.o, p.nq, 1e-2);
        snprintf(what, sizeof what, "fwd %c: lse", *v);
        report(what, p.shape, lse, p.lse, p.nl, 1e-2);
    }
    G->zero(g1, p.nk * sizeof(float)), G->zero(g2, p.nk * sizeof(float));
    kv_run('a', g1, g2, p.qb, p.kb, p.vb, p.dob, p.lse, p.delta, p.kvalid, R, Rkv, Nq, Nk, H, 128);
    report("kv a: dk", p.shape, g1, p.dk, p.nk, 2e-2);
    report("kv a: dv", p.shape, g2, p.dv, p.nk, 2e-2);
    G->zero(gq, p.nq * sizeof(float));
    dq_run('a', gq, p.qb, p.kb, p.vb, p.dob, p.lse, p.delta, p.kvalid, R, Rkv, Nq, Nk, H, 128);
    report("dq a: dq", p.shape, gq, p.dq, p.nq, 2e-2);
    G->free(o), G->free(lse), G->free(g1), G->free(g2), G->free(gq);
    problem_free(&p);
}

/* ---- timing ---- */

static double median_of(double *t, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double s = t[j];
            t[j] = t[j - 1];
            t[j - 1] = s;
        }
    return t[n / 2];
}

/* kind 0: forward, 1: dK/dV, 2: dQ; medians of 5 after a warm-up, host clock around a sync */
static void time_variant(problem *p, int kind, char v) {
    const int reps = 5;
    double t[reps];
    for (int i = -1; i < reps; i++) {
        G->sync();
        double t0 = osp_now();
        if (kind == 0) fwd_run(v, p->o, p->lse, p->qb, p->kb, p->vb, NULL, 1, 1, p->Nq, p->Nk, p->H, 128);
        else if (kind == 1)
            kv_run(v, p->dk, p->dv, p->qb, p->kb, p->vb, p->dob, p->lse, p->delta, NULL, 1, 1, p->Nq, p->Nk, p->H, 128);
        else dq_run(v, p->dq, p->qb, p->kb, p->vb, p->dob, p->lse, p->delta, NULL, 1, 1, p->Nq, p->Nk, p->H, 128);
        G->sync();
        if (i >= 0) t[i] = osp_now() - t0;
    }
    double m = median_of(t, reps), flop = 4.0 * (double)p->Nq * p->Nk * 128 * p->H;
    /* a tile product is flop / 2: the forward does 2, dK/dV 4, dQ 3 */
    double executed = kind == 0 ? flop : kind == 1 ? 2.0 * flop : 1.5 * flop;
    printf("%-4s %c  N %6d: %8.2f ms  %5.0f TFLOP/s%s\n", kind == 0 ? "fwd" : kind == 1 ? "kv" : "dq", v, p->Nq,
           m * 1e3, executed / m / 1e12, kind ? " executed" : "");
}

int main(int argc, char **argv) {
    bool timing = argc > 1 && !strcmp(argv[1], "--time");
    if (argc > 1 && !timing) {
        fprintf(stderr, "usage: attn_variants [--time]\n");
        return 2;
    }
    G = osp_backend_cuda_init(0, NULL);
    if (!G) {
        fprintf(stderr, "attn_variants: no CUDA GPU visible\n");
        return 1;
    }
    printf("%-22s %-32s %10s %8s\n", "variant vs backend", "shape (d 128)", "rel.err", "tol");
    check_variants(4, 2, 77, 150, 3, true); /* Rkv != R, masked keys, an all-masked kv row */
    check_variants(2, 1, 200, 64, 2, false); /* cross-attention shape */
    check_variants(1, 1, 2048, 2048, 12, false); /* production width */
    if (timing) {
        const int Ns[2] = {8192, 32760};
        for (int i = 0; i < 2; i++) {
            problem p;
            problem_init(&p, 1, 1, Ns[i], Ns[i], 12, 128, false);
            for (const char *v = "bacg"; *v; v++) time_variant(&p, 0, *v);
            for (const char *v = "ba"; *v; v++) time_variant(&p, 1, *v);
            for (const char *v = "ba"; *v; v++) time_variant(&p, 2, *v);
            problem_free(&p);
        }
    }
    osp_backend_cuda_free(G);
    printf("attn_variants: %s\n", nfail ? "FAILED" : "all variants agree with the backend");
    return nfail ? 1 : 0;
}
