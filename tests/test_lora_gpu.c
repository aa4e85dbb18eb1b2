/*
 * test_lora_gpu.c — LoRA adapters (optim/lora.c) on the CUDA backend against the CPU backend:
 * the same adapter (same seed, so the same A; the same random B) on both, forward and backward
 * (dx, dA, dB) compared as ||gpu - cpu|| / ||cpu||, with OSP_CUDA_GEMM=fp32 (tolerance 1e-5) and
 * the default bf16 GEMM operands (1e-2, as test_ops_gpu's linears); a zero-B adapter equals the
 * GPU's own base linear bit for bit; an adapter file written from GPU memory loads back on the CPU
 * bit for bit. Sizes: small odd, and a Wan 1.3B projection (N 2048, 1536 -> 1536, rank 32).
 *
 * Without a visible GPU (or a build without CUDA) the test prints "skipped" and passes.
 */
#include <unistd.h>

#include "optim/lora.h"
#include "tests/gpu_twin.h"

static void test_lora(int64_t N, int K, int O, int R, const char *mode, double tol) {
    char shape[64];
    snprintf(shape, sizeof shape, "N%lld %d->%d r%d %s", (long long)N, K, O, R, mode);
    setenv("OSP_CUDA_GEMM", mode, 1);
    lora_adapter lc, lg;
    lora_init(&lc, C, "blocks.3.cross_attn.k", K, O, R, 2.0f * R, 77, 3);
    lora_init(&lg, G, "blocks.3.cross_attn.k", K, O, R, 2.0f * R, 77, 3);
    pair x = pair_rand((size_t)N * K, -1, 1), W = pair_rand((size_t)O * K, -0.2f, 0.2f), b = pair_rand(O, -1, 1);
    pair y = pair_poison((size_t)N * O), base = pair_poison((size_t)N * O);
    pair hs = pair_new((size_t)lora_hs_floats(&lc, N)), work = pair_new((size_t)lora_work_floats(&lc, N));

    /* zero B: the GPU adapter forward is the GPU base linear, bit for bit */
    lora_fwd(&lg, y.g, hs.g, work.g, x.g, W.g, b.g, N);
    G->linear_fwd(base.g, x.g, W.g, b.g, N, K, O);
    check_same("lora_fwd zero B = base", shape, y.g, base.g, y.n);

    /* a trained-looking B on both */
    float *hb = osp_malloc(sizeof(float) * (size_t)O * R);
    for (int64_t i = 0; i < (int64_t)O * R; i++) hb[i] = rnd_uniform(-0.3f, 0.3f);
    C->upload(lc.B, hb, sizeof(float) * (size_t)O * R);
    G->upload(lg.B, hb, sizeof(float) * (size_t)O * R);
    lora_fwd(&lc, y.c, hs.c, work.c, x.c, W.c, b.c, N);
    lora_fwd(&lg, y.g, hs.g, work.g, x.g, W.g, b.g, N);
    check("lora_fwd", shape, y, tol);

    pair dy = pair_rand((size_t)N * O, -1, 1), dx = pair_rand((size_t)N * K, -1, 1); /* dx: backward ADDS */
    lora_bwd(&lc, dx.c, dy.c, x.c, W.c, hs.c, work.c, N);
    lora_bwd(&lg, dx.g, dy.g, x.g, W.g, hs.g, work.g, N);
    check("lora_bwd dx", shape, dx, tol);
    pair dA = {lc.dA, lg.dA, (size_t)R * K}, dB = {lc.dB, lg.dB, (size_t)O * R};
    check("lora_bwd dA", shape, dA, tol);
    check("lora_bwd dB", shape, dB, tol);

    /* file round trip from GPU memory into a CPU adapter */
    char path[96], err[512];
    snprintf(path, sizeof path, "test_lora_gpu_%d.safetensors", (int)getpid());
    int rc = lora_save(&lg, 1, path, err, sizeof err);
    lora_adapter l2;
    lora_init(&l2, C, "blocks.3.cross_attn.k", K, O, R, 2.0f * R, 5, 5);
    if (rc == 0) rc = lora_load(&l2, 1, path, err, sizeof err);
    if (rc) printf("lora file: %s\n", err);
    float *ha = osp_malloc(sizeof(float) * (size_t)R * K);
    G->download(ha, lg.A, sizeof(float) * (size_t)R * K);
    report("lora save (GPU) / load (CPU)", shape,
           rc || memcmp(ha, l2.A, sizeof(float) * (size_t)R * K) || memcmp(hb, l2.B, sizeof(float) * (size_t)O * R)
               ? 1.0
               : 0.0,
           0.0);
    remove(path);
    free(ha);
    free(hb);
    lora_free(&l2);
    pair_free(&x), pair_free(&W), pair_free(&b), pair_free(&y), pair_free(&base), pair_free(&hs), pair_free(&work);
    pair_free(&dy), pair_free(&dx);
    lora_free(&lc);
    lora_free(&lg);
    unsetenv("OSP_CUDA_GEMM");
}

int main(void) {
    if (!twin_init("test_lora_gpu")) return 0;
    test_lora(37, 48, 40, 8, "fp32", 1e-5);
    test_lora(33, 35, 29, 4, "bf16", 1e-2);
    test_lora(2048, 1536, 1536, 32, "fp32", 1e-5);
    test_lora(2048, 1536, 1536, 32, "bf16", 1e-2);
    printf("test_lora_gpu: %d of %d checks failed\n", nfail, nchecks);
    return nfail ? 1 : 0;
}
