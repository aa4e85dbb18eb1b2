/*
 * test_attn_gpu.c — osp's own attention kernels (model/cuda/attn_fwd.cu / model/cuda/attn_bwd.cu) against the
 * CPU twin (model/cpu/attn.c), in the manner of test_ops_gpu.c (helpers in gpu_twin.h): fresh seeded
 * random q, k, v, dO, the kernels the backend runs (other tile shapes are experiments in
 * dev/cuda/, with their own check), self- and cross-attention shapes, Rkv != R, key masks with a
 * fully masked kv row, and the production width (12 x 128, N = 2048). Tolerances: bf16 tensor cores with fp32 softmax and accumulators, 1e-2 forward,
 * 2e-2 backward (gradients start from random values: the backward must ADD). The cuDNN path has
 * its own test (test_attn_cudnn_gpu.c).
 * Also a timing printout for attention 12 x 128 at 8,192 and 32,760 tokens (fwd, fwd+bwd, and the
 * dK/dV and dQ kernels alone) and two large GEMMs (printed, not asserted;
 * OSP_GPU_TEST_NO_TIMING=1 leaves it out).
 *
 * Without a visible GPU (or a build without CUDA) the test prints "skipped" and passes.
 */
#include "tests/gpu_twin.h"

/* ------------------------------------------------------------------ attention */

/* download a GPU gradient, subtract its start values, compare with the CPU's added part */
static void attn_check_grad(const char *name, const char *shape, const float *g, const float *cpu_delta,
                            const float *start, size_t n) {
    float *h = osp_malloc(n * 4);
    G->download(h, g, n * 4);
    for (size_t j = 0; j < n; j++) h[j] -= start[j];
    report(name, shape, rel_err(h, cpu_delta, n), 2e-2);
    free(h);
}

/* mask: 0 none, 1 random keys masked and kv row 1 fully masked (queries with no valid key).
 * Gradient buffers start from random values on both sides; the check subtracts the start so
 * the tolerance applies to what attention added. */
static void test_attn(int64_t R, int64_t Rkv, int64_t Nq, int64_t Nk, int H, int d, int mask, float qamp) {
    char shape[64];
    snprintf(shape, sizeof shape, "R%lld/%lld Nq%lld Nk%lld H%d d%d%s", (long long)R, (long long)Rkv, (long long)Nq,
             (long long)Nk, H, d, mask ? " mask" : "");
    size_t nq = (size_t)R * Nq * H * d, nk = (size_t)Rkv * Nk * H * d, nl = (size_t)R * H * Nq;
    pair q = pair_rand(nq, -qamp, qamp), k = pair_rand(nk, -1, 1), v = pair_rand(nk, -1, 1);
    pair dout = pair_rand(nq, -1, 1);
    uint8_t *valid = NULL, *valid_g = NULL;
    if (mask) {
        valid = osp_malloc((size_t)Rkv * Nk);
        for (int64_t i = 0; i < Rkv * Nk; i++) valid[i] = (rnd_u64() % 4) != 0;
        if (Rkv > 1)
            for (int64_t j = 0; j < Nk; j++) valid[Nk + j] = 0;
        valid_g = dev_bytes(valid, (size_t)Rkv * Nk);
    }
    /* CPU reference once */
    pair o = pair_poison(nq), lse = pair_poison(nl);
    pair dq = pair_rand(nq, -1, 1), dk = pair_rand(nk, -1, 1), dv = pair_rand(nk, -1, 1);
    float *dq0 = osp_malloc(nq * 4), *dk0 = osp_malloc(nk * 4), *dv0 = osp_malloc(nk * 4);
    memcpy(dq0, dq.c, nq * 4);
    memcpy(dk0, dk.c, nk * 4);
    memcpy(dv0, dv.c, nk * 4);
    double t0 = osp_now();
    C->attn_fwd(o.c, lse.c, q.c, k.c, v.c, valid, R, Rkv, Nq, Nk, H, d);
    C->attn_bwd(dq.c, dk.c, dv.c, dout.c, o.c, lse.c, q.c, k.c, v.c, valid, R, Rkv, Nq, Nk, H, d);
    double tc = osp_now() - t0;
    for (size_t j = 0; j < nq; j++) dq.c[j] -= dq0[j];
    for (size_t j = 0; j < nk; j++) {
        dk.c[j] -= dk0[j];
        dv.c[j] -= dv0[j];
    }
    float *poison = osp_malloc(nq * 4);
    for (size_t j = 0; j < nq; j++) poison[j] = NAN;

    G->upload(o.g, poison, nq * 4);
    G->upload(lse.g, poison, nl * 4);
    G->attn_fwd(o.g, lse.g, q.g, k.g, v.g, valid_g, R, Rkv, Nq, Nk, H, d);
    check("attn_fwd o", shape, o, 1e-2);
    check("attn_fwd lse", shape, lse, 1e-2);
    G->upload(dq.g, dq0, nq * 4);
    G->upload(dk.g, dk0, nk * 4);
    G->upload(dv.g, dv0, nk * 4);
    G->attn_bwd(dq.g, dk.g, dv.g, dout.g, o.g, lse.g, q.g, k.g, v.g, valid_g, R, Rkv, Nq, Nk, H, d);
    attn_check_grad("attn_bwd dq", shape, dq.g, dq.c, dq0, nq);
    attn_check_grad("attn_bwd dk", shape, dk.g, dk.c, dk0, nk);
    attn_check_grad("attn_bwd dv", shape, dv.g, dv.c, dv0, nk);
    /* determinism of the GPU backward (no atomics): same inputs, same bits */
    size_t nmax = nq > nk ? nq : nk;
    float *a1 = G->alloc(nmax * 4), *a2 = G->alloc(nmax * 4);
    G->attn_bwd(NULL, a1, NULL, dout.g, o.g, lse.g, q.g, k.g, v.g, valid_g, R, Rkv, Nq, Nk, H, d);
    G->attn_bwd(NULL, a2, NULL, dout.g, o.g, lse.g, q.g, k.g, v.g, valid_g, R, Rkv, Nq, Nk, H, d);
    check_same("attn_bwd dk repeat bitwise", shape, a1, a2, nk);
    G->zero(a1, nmax * 4);
    G->zero(a2, nmax * 4);
    G->attn_bwd(a1, NULL, NULL, dout.g, o.g, lse.g, q.g, k.g, v.g, valid_g, R, Rkv, Nq, Nk, H, d);
    G->attn_bwd(a2, NULL, NULL, dout.g, o.g, lse.g, q.g, k.g, v.g, valid_g, R, Rkv, Nq, Nk, H, d);
    check_same("attn_bwd dq repeat bitwise", shape, a1, a2, nq);
    G->free(a1);
    G->free(a2);
    if (tc > 1.0) printf("  (CPU reference for %s took %.1f s)\n", shape, tc);
    free(poison);
    free(dq0);
    free(dk0);
    free(dv0);
    free(valid);
    if (valid_g) G->free(valid_g);
    pair *all[] = {&q, &k, &v, &o, &lse, &dout, &dq, &dk, &dv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
}

/* ------------------------------------------------------------------ timing */

static double median(double *t, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double s = t[j];
            t[j] = t[j - 1];
            t[j - 1] = s;
        }
    return t[n / 2];
}

/* what: 0 = fwd and fwd+bwd (default kernels), 1 = fwd only, 2 = dK/dV kernel only (dq NULL),
 * 3 = dQ kernel only (dk, dv NULL); medians of reps after a warm-up */
static void time_attn(int64_t N, int H, int d, int reps, int what, const char *label) {
    size_t n = (size_t)N * H * d;
    pair q = pair_rand(n, -2, 2), k = pair_rand(n, -1, 1), v = pair_rand(n, -1, 1), dout = pair_rand(n, -1, 1);
    float *o = G->alloc(n * 4), *lse = G->alloc((size_t)H * N * 4);
    float *dq = G->alloc(n * 4), *dk = G->alloc(n * 4), *dv = G->alloc(n * 4);
    float *gq = what == 2 ? NULL : dq, *gk = what == 3 ? NULL : dk, *gv = what == 3 ? NULL : dv;
    double tf[16], tb[16];
    G->attn_fwd(o, lse, q.g, k.g, v.g, NULL, 1, 1, N, N, H, d); /* warm-up */
    if (what != 1) G->attn_bwd(gq, gk, gv, dout.g, o, lse, q.g, k.g, v.g, NULL, 1, 1, N, N, H, d);
    G->sync();
    for (int i = 0; i < reps; i++) {
        double t0 = osp_now();
        if (what <= 1) G->attn_fwd(o, lse, q.g, k.g, v.g, NULL, 1, 1, N, N, H, d);
        G->sync();
        double t1 = osp_now();
        if (what != 1) G->attn_bwd(gq, gk, gv, dout.g, o, lse, q.g, k.g, v.g, NULL, 1, 1, N, N, H, d);
        G->sync();
        tf[i] = t1 - t0;
        tb[i] = osp_now() - t1;
    }
    double flop = 4.0 * (double)N * N * d * H; /* one tile product = flop / 2 */
    double mf = median(tf, reps), mb = median(tb, reps);
    if (what == 0)
        printf("timing attn %-10s H%d d%d N%lld: fwd %.2f ms (%.0f TFLOP/s)  fwd+bwd %.2f ms (%.0f TFLOP/s, 3.5x)\n",
               label, H, d, (long long)N, mf * 1e3, flop / mf / 1e12, (mf + mb) * 1e3, 3.5 * flop / (mf + mb) / 1e12);
    else if (what == 1)
        printf("timing attn %-10s H%d d%d N%lld: fwd %.2f ms (%.0f TFLOP/s)\n", label, H, d, (long long)N, mf * 1e3,
               flop / mf / 1e12);
    else /* dK/dV does 4 tile products, dQ 3: report the tensor-core rate actually achieved */
        printf("timing attn %-10s H%d d%d N%lld: %s %.2f ms (%.0f TFLOP/s executed)\n", label, H, d, (long long)N,
               what == 2 ? "dkdv" : "dq", mb * 1e3, (what == 2 ? 2.0 : 1.5) * flop / mb / 1e12);
    G->free(o);
    G->free(lse);
    G->free(dq);
    G->free(dk);
    G->free(dv);
    pair_free(&q);
    pair_free(&k);
    pair_free(&v);
    pair_free(&dout);
}

static void time_linear(int64_t N, int I, int O, int reps) {
    pair x = pair_rand((size_t)N * I, -1, 1), W = pair_rand((size_t)O * I, -1, 1), b = pair_rand(O, -1, 1);
    float *y = G->alloc((size_t)N * O * 4);
    double t[16];
    G->linear_fwd(y, x.g, W.g, b.g, N, I, O);
    G->sync();
    for (int i = 0; i < reps; i++) {
        double t0 = osp_now();
        G->linear_fwd(y, x.g, W.g, b.g, N, I, O);
        G->sync();
        t[i] = osp_now() - t0;
    }
    double m = median(t, reps);
    printf("timing linear_fwd N%lld I%d O%d (bf16 operands): %.3f ms (%.0f TFLOP/s)\n", (long long)N, I, O, m * 1e3,
           2.0 * N * I * O / m / 1e12);
    G->free(y);
    pair_free(&x);
    pair_free(&W);
    pair_free(&b);
}

int main(void) {
    if (!twin_init("test_attn_gpu")) return 0;
    osp_cuda_options o = *osp_backend_cuda_options(G);
    o.attn = OSP_CUDA_ATTN_OSP; /* osp's own kernels: the cuDNN path has test_attn_cudnn_gpu */
    twin_set_options(&o);
    test_attn(2, 2, 100, 100, 2, 32, 0, 2);
    test_attn(4, 2, 77, 150, 3, 128, 1, 2);     /* Rkv != R, masks, an all-masked kv row */
    test_attn(2, 1, 200, 64, 2, 64, 0, 2);      /* cross-attention shape: short key side */
    test_attn(2, 2, 130, 190, 2, 32, 1, 2);
    test_attn(1, 1, 2048, 2048, 12, 128, 0, 2); /* production width */
    printf("%d checks, %d failed\n", nchecks, nfail);

    if (!getenv("OSP_GPU_TEST_NO_TIMING")) {
        time_linear(32760, 1536, 1536, 7);
        time_linear(32760, 1536, 8960, 5);
        const int64_t Ns[2] = {8192, 32760};
        for (int i = 0; i < 2; i++) {
            time_attn(Ns[i], 12, 128, 5, 0, "default");
            time_attn(Ns[i], 12, 128, 5, 2, "default");
            time_attn(Ns[i], 12, 128, 5, 3, "default");
        }
    }
    twin_free_backend();
    return nfail ? 1 : 0;
}
