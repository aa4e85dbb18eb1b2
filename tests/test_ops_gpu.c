/*
 * test_ops_gpu.c — every op of the CUDA backend against its CPU twin (model/cpu/backend.c), the
 * ggml test-backend-ops idea: fresh seeded random inputs (never zeros), the same inputs on
 * both backends, ||gpu - cpu|| / ||cpu|| against a stated tolerance, forward and backward,
 * at small odd sizes and at a production width (D = 1536, N = 2048) where large-size bugs
 * show. Outputs that an op writes are poisoned with NaN first (an unwritten element fails);
 * gradient outputs start from random values (backward ops must ADD). Prints a table.
 *
 * Tolerances: fp32 ops 1e-5 (2e-5 where the CPU sums in double and the GPU in fp32 trees);
 * GEMMs in mode fp32 (twin_set_gemm) 1e-5, with the default bf16 operands 1e-2; attention (bf16
 * tensor cores, fp32 softmax/accumulators: test_attn_gpu.c) 1e-2 forward, 2e-2 backward; HiF8
 * bit-exact. Also: GPU reductions repeated must be bit-identical (determinism). Attention (osp's
 * own kernels) is in test_attn_gpu.c, the cuDNN path in test_attn_cudnn_gpu.c; helpers in
 * gpu_twin.h.
 *
 * Without a visible GPU (or a build without CUDA) the test prints "skipped" and passes.
 */
#include "tests/gpu_twin.h"

/* ------------------------------------------------------------------ dense */

/* What every linear test starts from: its label, the GEMM mode set for the GPU calls, and random
 * x [N,I], W [O,I], b [O] on both backends. lin_case_free undoes all of it. */
typedef struct { char shape[64]; pair x, W, b; osp_cuda_options was; } lin_case;

static lin_case lin_case_init(int64_t N, int I, int O, const char *mode) {
    lin_case c;
    snprintf(c.shape, sizeof c.shape, "N%lld I%d O%d %s", (long long)N, I, O, mode);
    c.was = twin_set_gemm(mode);
    c.x = pair_rand((size_t)N * I, -1, 1), c.W = pair_rand((size_t)O * I, -0.2f, 0.2f), c.b = pair_rand(O, -1, 1);
    return c;
}

/* frees the case and the test's own n pairs */
static void lin_case_free(lin_case *c, pair *const *own, size_t n) {
    for (size_t i = 0; i < n; i++) pair_free(own[i]);
    pair_free(&c->x), pair_free(&c->W), pair_free(&c->b);
    twin_set_options(&c->was);
}
#define LIN_CASE_FREE(c, ...) \
    lin_case_free(c, (pair *const[]){__VA_ARGS__}, sizeof((pair *const[]){__VA_ARGS__}) / sizeof(pair *))

static void test_linear(int64_t N, int I, int O, const char *mode, double tol) {
    lin_case lc = lin_case_init(N, I, O, mode);
    const char *shape = lc.shape;
    pair x = lc.x, W = lc.W, b = lc.b;
    pair y = pair_poison((size_t)N * O), y2 = pair_poison((size_t)N * O);
    C->linear_fwd(y.c, x.c, W.c, b.c, N, I, O);
    G->linear_fwd(y.g, x.g, W.g, b.g, N, I, O);
    check("linear_fwd (bias)", shape, y, tol);
    C->linear_fwd(y2.c, x.c, W.c, NULL, N, I, O);
    G->linear_fwd(y2.g, x.g, W.g, NULL, N, I, O);
    check("linear_fwd (no bias)", shape, y2, tol);
    pair dy = pair_rand((size_t)N * O, -1, 1), dx = pair_rand((size_t)N * I, -1, 1);
    pair dW = pair_rand((size_t)O * I, -1, 1), db = pair_rand(O, -1, 1);
    C->linear_bwd(dx.c, dW.c, db.c, dy.c, x.c, W.c, N, I, O);
    G->linear_bwd(dx.g, dW.g, db.g, dy.g, x.g, W.g, N, I, O);
    check("linear_bwd dx", shape, dx, tol);
    check("linear_bwd dW", shape, dW, tol);
    check("linear_bwd db", shape, db, 2e-5);
    LIN_CASE_FREE(&lc, &y, &y2, &dy, &dx, &dW, &db);
}

/* The fused HiF8 linear (linear_fq_fwd / _bwd) against the CPU's two steps (hif8_fq of each
 * operand, then linear_*), and bitwise against the GPU's own two steps: the quantiser writing the
 * GEMM operands directly must not change a bit. */
static void test_linear_fq(int64_t N, int I, int O, const char *mode, double tol) {
    lin_case lc = lin_case_init(N, I, O, mode);
    const char *shape = lc.shape;
    pair x = lc.x, W = lc.W, b = lc.b;
    const float sx = 37.3f, sw = 251.7f, sg = 1913.1f; /* amax ~1 -> targets of a few hundred */
    const int64_t nx = N * I, nw = (int64_t)O * I, ny = N * O;
    pair dy = pair_rand((size_t)ny, -1, 1);
    pair qx = pair_poison((size_t)nx), qw = pair_poison((size_t)nw), qg = pair_poison((size_t)ny);
    C->hif8_fq(qx.c, x.c, nx, sx, true), G->hif8_fq(qx.g, x.g, nx, sx, true);
    C->hif8_fq(qw.c, W.c, nw, sw, true), G->hif8_fq(qw.g, W.g, nw, sw, true);
    C->hif8_fq(qg.c, dy.c, ny, sg, true), G->hif8_fq(qg.g, dy.g, ny, sg, true);
    pair y = pair_poison((size_t)ny), y2 = pair_poison((size_t)ny);
    C->linear_fwd(y.c, qx.c, qw.c, b.c, N, I, O);
    G->linear_fq_fwd(y.g, x.g, sx, W.g, sw, b.g, N, I, O, true);
    check("linear_fq_fwd", shape, y, tol);
    G->linear_fwd(y2.g, qx.g, qw.g, b.g, N, I, O);
    check_same("linear_fq_fwd = fq + linear", shape, y.g, y2.g, (size_t)ny);
    pair dx = pair_rand((size_t)nx, -1, 1), dW = pair_rand((size_t)nw, -1, 1), db = pair_rand(O, -1, 1);
    pair dx2 = pair_rand((size_t)nx, -1, 1), dW2 = pair_rand((size_t)nw, -1, 1), db2 = pair_rand(O, -1, 1);
    G->copy(dx2.g, dx.g, sizeof(float) * nx), G->copy(dW2.g, dW.g, sizeof(float) * nw), G->copy(db2.g, db.g, 4 * O);
    C->linear_bwd(dx.c, dW.c, db.c, qg.c, qx.c, qw.c, N, I, O);
    G->linear_fq_bwd(dx.g, dW.g, db.g, dy.g, sg, x.g, sx, W.g, sw, N, I, O, true);
    check("linear_fq_bwd dx", shape, dx, tol);
    check("linear_fq_bwd dW", shape, dW, tol);
    check("linear_fq_bwd db", shape, db, 2e-5);
    G->linear_bwd(dx2.g, dW2.g, db2.g, qg.g, qx.g, qw.g, N, I, O);
    check_same("linear_fq_bwd dx = two steps", shape, dx.g, dx2.g, (size_t)nx);
    check_same("linear_fq_bwd dW = two steps", shape, dW.g, dW2.g, (size_t)nw);
    check_same("linear_fq_bwd db = two steps", shape, db.g, db2.g, (size_t)O);
    LIN_CASE_FREE(&lc, &dy, &qx, &qw, &qg, &y, &y2, &dx, &dW, &db, &dx2, &dW2, &db2);
}

/* The GELU epilogue (linear_gelu_fwd) against its CPU twin (linear then gelu), then the GELU
 * itself in isolation: W = I, b = 0 and inputs exactly representable in bf16 make pre = x
 * exactly, so y - gelu_tanh(x) is the epilogue's own GELU error (printed as max |diff|). */
static void test_linear_gelu(int64_t N, int I, int O, const char *mode, double tol) {
    lin_case lc = lin_case_init(N, I, O, mode);
    const char *shape = lc.shape;
    pair x = lc.x, W = lc.W, b = lc.b;
    pair y = pair_poison((size_t)N * O), pre = pair_poison((size_t)N * O);
    C->linear_gelu_fwd(y.c, pre.c, x.c, W.c, b.c, N, I, O);
    G->linear_gelu_fwd(y.g, pre.g, x.g, W.g, b.g, N, I, O);
    check("linear_gelu_fwd y", shape, y, tol);
    check("linear_gelu_fwd pre", shape, pre, tol);

    int n = 256; /* identity: 256 x 256, values k/16 in [-4, 4) (8 significant bits at most) */
    float *hx = osp_malloc(sizeof(float) * n * n), *hI = osp_calloc((size_t)n * n, sizeof(float));
    for (int i = 0; i < n * n; i++) hx[i] = (float)((int)(rnd_u64() % 128) - 64) / 16.0f;
    for (int i = 0; i < n; i++) hI[i * n + i] = 1.0f;
    float *dx = dev_bytes(hx, sizeof(float) * n * n), *dI = dev_bytes(hI, sizeof(float) * n * n);
    float *dy = G->alloc(sizeof(float) * n * n), *dpre = G->alloc(sizeof(float) * n * n);
    G->linear_gelu_fwd(dy, dpre, dx, dI, NULL, n, n, n);
    float *gy = osp_malloc(sizeof(float) * n * n), *ref = osp_malloc(sizeof(float) * n * n);
    G->download(gy, dy, sizeof(float) * n * n);
    C->gelu_fwd(ref, hx, (int64_t)n * n);
    double mx = 0;
    for (int i = 0; i < n * n; i++) mx = fmax(mx, fabs((double)gy[i] - ref[i]));
    report("linear_gelu_fwd: GELU max|diff|", mode, mx, 2e-3);
    free(hx), free(hI), free(gy), free(ref);
    G->free(dx), G->free(dI), G->free(dy), G->free(dpre);
    LIN_CASE_FREE(&lc, &y, &pre);
}

/* ------------------------------------------------------------------ norms */

static void test_layernorm(int64_t N, int D, bool affine) {
    char shape[64];
    snprintf(shape, sizeof shape, "N%lld D%d%s", (long long)N, D, affine ? " affine" : "");
    pair x = pair_rand((size_t)N * D, -2, 3), w = pair_rand(D, 0.5f, 1.5f), b = pair_rand(D, -1, 1);
    pair y = pair_poison((size_t)N * D), mean = pair_poison(N), rstd = pair_poison(N);
    const float *wc = affine ? w.c : NULL, *bc = affine ? b.c : NULL, *wg = affine ? w.g : NULL,
                *bg = affine ? b.g : NULL;
    C->layernorm_fwd(y.c, mean.c, rstd.c, x.c, wc, bc, N, D, 1e-6f);
    G->layernorm_fwd(y.g, mean.g, rstd.g, x.g, wg, bg, N, D, 1e-6f);
    check("layernorm_fwd y", shape, y, 1e-5);
    check("layernorm_fwd mean", shape, mean, 1e-5);
    check("layernorm_fwd rstd", shape, rstd, 1e-5);
    pair dy = pair_rand((size_t)N * D, -1, 1), dx = pair_rand((size_t)N * D, -1, 1);
    pair dw = pair_rand(D, -1, 1), db = pair_rand(D, -1, 1);
    C->layernorm_bwd(dx.c, affine ? dw.c : NULL, affine ? db.c : NULL, dy.c, x.c, mean.c, rstd.c, wc, N, D);
    G->layernorm_bwd(dx.g, affine ? dw.g : NULL, affine ? db.g : NULL, dy.g, x.g, mean.g, rstd.g, wg, N, D);
    check("layernorm_bwd dx", shape, dx, 2e-5);
    if (affine) {
        check("layernorm_bwd dw", shape, dw, 2e-5);
        check("layernorm_bwd db", shape, db, 2e-5);
    }
    pair *all[] = {&x, &w, &b, &y, &mean, &rstd, &dy, &dx, &dw, &db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
}

static void test_ln_mod(int64_t R, int64_t N, int D, int B) {
    char shape[64];
    snprintf(shape, sizeof shape, "R%lld N%lld D%d B%d", (long long)R, (long long)N, D, B);
    int64_t stride = 6 * (int64_t)D; /* shift/scale are rows of a [B, 6, D] modulation tensor */
    pair x = pair_rand((size_t)R * N * D, -2, 3), mod = pair_rand((size_t)B * stride, -0.5f, 0.5f);
    pair y = pair_poison((size_t)R * N * D), mean = pair_poison(R * N), rstd = pair_poison(R * N);
    C->ln_mod_fwd(y.c, mean.c, rstd.c, x.c, mod.c, mod.c + D, R, N, D, B, stride, 1e-6f);
    G->ln_mod_fwd(y.g, mean.g, rstd.g, x.g, mod.g, mod.g + D, R, N, D, B, stride, 1e-6f);
    check("ln_mod_fwd y", shape, y, 1e-5);
    check("ln_mod_fwd rstd", shape, rstd, 1e-5);
    pair dy = pair_rand((size_t)R * N * D, -1, 1), dx = pair_rand((size_t)R * N * D, -1, 1);
    pair dmod = pair_rand((size_t)B * stride, -1, 1);
    C->ln_mod_bwd(dx.c, dmod.c, dmod.c + D, dy.c, x.c, mean.c, rstd.c, mod.c + D, R, N, D, B, stride);
    G->ln_mod_bwd(dx.g, dmod.g, dmod.g + D, dy.g, x.g, mean.g, rstd.g, mod.g + D, R, N, D, B, stride);
    check("ln_mod_bwd dx", shape, dx, 2e-5);
    check("ln_mod_bwd dshift,dscale", shape, dmod, 2e-5);
    /* determinism: the parameter reduction twice from the same start */
    pair d1 = pair_rand((size_t)B * stride, -1, 1);
    float *d2 = G->alloc(d1.n * sizeof(float));
    G->copy(d2, d1.g, d1.n * sizeof(float));
    G->ln_mod_bwd(NULL, d1.g, d1.g + D, dy.g, x.g, mean.g, rstd.g, mod.g + D, R, N, D, B, stride);
    G->ln_mod_bwd(NULL, d2, d2 + D, dy.g, x.g, mean.g, rstd.g, mod.g + D, R, N, D, B, stride);
    check_same("ln_mod_bwd repeat bitwise", shape, d1.g, d2, d1.n);
    G->free(d2);
    pair *all[] = {&x, &mod, &y, &mean, &rstd, &dy, &dx, &dmod, &d1};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
}

static void test_rmsnorm(int64_t N, int D) {
    char shape[64];
    snprintf(shape, sizeof shape, "N%lld D%d", (long long)N, D);
    pair x = pair_rand((size_t)N * D, -2, 2), w = pair_rand(D, 0.5f, 1.5f);
    pair y = pair_poison((size_t)N * D), rstd = pair_poison(N);
    C->rmsnorm_fwd(y.c, rstd.c, x.c, w.c, N, D, 1e-6f);
    G->rmsnorm_fwd(y.g, rstd.g, x.g, w.g, N, D, 1e-6f);
    check("rmsnorm_fwd y", shape, y, 1e-5);
    check("rmsnorm_fwd rstd", shape, rstd, 1e-5);
    pair dy = pair_rand((size_t)N * D, -1, 1), dx = pair_rand((size_t)N * D, -1, 1), dw = pair_rand(D, -1, 1);
    C->rmsnorm_bwd(dx.c, dw.c, dy.c, x.c, rstd.c, w.c, N, D);
    G->rmsnorm_bwd(dx.g, dw.g, dy.g, x.g, rstd.g, w.g, N, D);
    check("rmsnorm_bwd dx", shape, dx, 2e-5);
    check("rmsnorm_bwd dw", shape, dw, 2e-5);
    pair *all[] = {&x, &w, &y, &rstd, &dy, &dx, &dw};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
}

/* ------------------------------------------------------------------ elementwise */

static void test_elementwise(int64_t n) {
    char shape[64];
    snprintf(shape, sizeof shape, "n%lld", (long long)n);
    pair x = pair_rand(n, -5, 5), y = pair_poison(n), dy = pair_rand(n, -1, 1), dx = pair_rand(n, -1, 1);
    C->gelu_fwd(y.c, x.c, n);
    G->gelu_fwd(y.g, x.g, n);
    check("gelu_fwd", shape, y, 1e-5);
    C->gelu_bwd(dx.c, dy.c, x.c, n);
    G->gelu_bwd(dx.g, dy.g, x.g, n);
    check("gelu_bwd", shape, dx, 1e-5);
    C->silu_fwd(y.c, x.c, n);
    G->silu_fwd(y.g, x.g, n);
    check("silu_fwd", shape, y, 1e-5);
    C->silu_bwd(dx.c, dy.c, x.c, n);
    G->silu_bwd(dx.g, dy.g, x.g, n);
    check("silu_bwd", shape, dx, 1e-5);
    C->add(dx.c, x.c, n);
    G->add(dx.g, x.g, n);
    check("add", shape, dx, 1e-6);
    C->axpby(dx.c, 0.7f, x.c, -1.3f, n);
    G->axpby(dx.g, 0.7f, x.g, -1.3f, n);
    check("axpby", shape, dx, 1e-5); /* GPU fuses a*x+b*y into one FMA */
    C->scale(dx.c, 0.37f, n);
    G->scale(dx.g, 0.37f, n);
    check("scale", shape, dx, 1e-5);
    pair *all[] = {&x, &y, &dy, &dx};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
}

static void test_gate_res(int64_t R, int64_t N, int D, int B) {
    char shape[64];
    snprintf(shape, sizeof shape, "R%lld N%lld D%d B%d", (long long)R, (long long)N, D, B);
    int64_t stride = 6 * (int64_t)D;
    size_t n = (size_t)R * N * D;
    pair x = pair_rand(n, -1, 1), y = pair_rand(n, -1, 1), mod = pair_rand((size_t)B * stride, -1, 1);
    /* with a layout move fused in: out[j] = (x + y gate)[idx[j]], a few rows -1 (zero rows) */
    int64_t rows = R * N, nout = rows + 7;
    int32_t *idx = osp_malloc(sizeof(int32_t) * nout);
    for (int64_t j = 0; j < nout; j++) idx[j] = j % 9 == 4 ? -1 : (int32_t)((j * 7919) % rows);
    int32_t *idx_g = dev_bytes(idx, sizeof(int32_t) * nout);
    pair mv = pair_poison((size_t)nout * D);
    C->gate_res_fwd(mv.c, x.c, y.c, mod.c + 2 * D, idx, nout, R, N, D, B, stride);
    G->gate_res_fwd(mv.g, x.g, y.g, mod.g + 2 * D, idx_g, nout, R, N, D, B, stride);
    check("gate_res_fwd + move", shape, mv, 1e-6);
    free(idx);
    G->free(idx_g);
    pair_free(&mv);
    C->gate_res_fwd(x.c, x.c, y.c, mod.c + 2 * D, NULL, 0, R, N, D, B, stride); /* in place */
    G->gate_res_fwd(x.g, x.g, y.g, mod.g + 2 * D, NULL, 0, R, N, D, B, stride);
    check("gate_res_fwd", shape, x, 1e-6);
    pair dx = pair_rand(n, -1, 1), dy = pair_rand(n, -1, 1), dmod = pair_rand((size_t)B * stride, -1, 1);
    C->gate_res_bwd(dy.c, dmod.c + 2 * D, dx.c, y.c, mod.c + 2 * D, R, N, D, B, stride);
    G->gate_res_bwd(dy.g, dmod.g + 2 * D, dx.g, y.g, mod.g + 2 * D, R, N, D, B, stride);
    check("gate_res_bwd dy", shape, dy, 1e-6);
    check("gate_res_bwd dgate", shape, dmod, 2e-5);
    pair *all[] = {&x, &y, &mod, &dx, &dy, &dmod};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
}

/* ------------------------------------------------------------------ RoPE */

static void test_rope(int64_t ntok, int H, int d) {
    char shape[64];
    snprintf(shape, sizeof shape, "tok%lld H%d d%d", (long long)ntok, H, d);
    osp_rope *rc = C->rope_init(d, 1024, 10000.0), *rg = G->rope_init(d, 1024, 10000.0);
    int32_t *pos = osp_malloc(sizeof(int32_t) * 3 * ntok);
    for (int64_t i = 0; i < 3 * ntok; i++) pos[i] = (int32_t)(rnd_u64() % 1024);
    int32_t *pos_g = dev_bytes(pos, sizeof(int32_t) * 3 * ntok);
    size_t n = (size_t)ntok * H * d;
    pair x = pair_rand(n, -1, 1), y = pair_poison(n), dy = pair_rand(n, -1, 1), dx = pair_rand(n, -1, 1);
    C->rope_fwd(y.c, x.c, pos, rc, ntok, H);
    G->rope_fwd(y.g, x.g, pos_g, rg, ntok, H);
    check("rope_fwd", shape, y, 1e-5);
    C->rope_fwd(x.c, x.c, pos, rc, ntok, H); /* in place */
    G->rope_fwd(x.g, x.g, pos_g, rg, ntok, H);
    check("rope_fwd in place", shape, x, 1e-5);
    C->rope_bwd(dx.c, dy.c, pos, rc, ntok, H);
    G->rope_bwd(dx.g, dy.g, pos_g, rg, ntok, H);
    check("rope_bwd (accumulate)", shape, dx, 1e-5);
    C->rope_bwd(dy.c, dy.c, pos, rc, ntok, H);
    G->rope_bwd(dy.g, dy.g, pos_g, rg, ntok, H);
    check("rope_bwd in place", shape, dy, 1e-5);
    C->rope_free(rc);
    G->rope_free(rg);
    free(pos);
    G->free(pos_g);
    pair *all[] = {&x, &y, &dy, &dx};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
}

/* the fused q/k RMSNorm + RoPE against its CPU twin (the composition rmsnorm then rope) */
static void test_qk_norm_rope(int64_t N, int H, int d) {
    char shape[64];
    snprintf(shape, sizeof shape, "N%lld H%d d%d", (long long)N, H, d);
    int D = H * d;
    osp_rope *rc = C->rope_init(d, 1024, 10000.0), *rg = G->rope_init(d, 1024, 10000.0);
    int32_t *pos = osp_malloc(sizeof(int32_t) * 3 * N);
    for (int64_t i = 0; i < 3 * N; i++) pos[i] = (int32_t)(rnd_u64() % 1024);
    int32_t *pos_g = dev_bytes(pos, sizeof(int32_t) * 3 * N);
    size_t n = (size_t)N * D;
    pair x = pair_rand(n, -2, 2), w = pair_rand(D, 0.5f, 1.5f), y = pair_poison(n), rstd = pair_poison(N);
    C->qk_norm_rope_fwd(y.c, rstd.c, x.c, w.c, pos, rc, N, H, 1e-6f);
    G->qk_norm_rope_fwd(y.g, rstd.g, x.g, w.g, pos_g, rg, N, H, 1e-6f);
    check("qk_norm_rope_fwd y", shape, y, 1e-5);
    check("qk_norm_rope_fwd rstd", shape, rstd, 1e-5);
    pair dy = pair_rand(n, -1, 1), dx = pair_rand(n, -1, 1), dw = pair_rand(D, -1, 1);
    C->qk_norm_rope_bwd(dx.c, dw.c, dy.c, x.c, rstd.c, w.c, pos, rc, N, H);
    G->qk_norm_rope_bwd(dx.g, dw.g, dy.g, x.g, rstd.g, w.g, pos_g, rg, N, H);
    check("qk_norm_rope_bwd dx (accum.)", shape, dx, 2e-5);
    check("qk_norm_rope_bwd dw (accum.)", shape, dw, 2e-5);
    check("qk_norm_rope_bwd dy rotated", shape, dy, 1e-5);
    G->qk_norm_rope_fwd(x.g, rstd.g, x.g, w.g, pos_g, rg, N, H, 1e-6f); /* in place */
    check("qk_norm_rope_fwd in place", shape, (pair){y.c, x.g, n}, 1e-5);
    C->rope_free(rc);
    G->rope_free(rg);
    free(pos);
    G->free(pos_g);
    pair *all[] = {&x, &w, &y, &rstd, &dy, &dx, &dw};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);
}

/* ------------------------------------------------------------------ layouts */

static void test_layouts(void) {
    const int64_t nsrc = 300, n = 257;
    const int D = 40;
    int32_t *idx = osp_malloc(sizeof(int32_t) * n);
    int32_t *perm = osp_malloc(sizeof(int32_t) * nsrc);
    for (int64_t i = 0; i < nsrc; i++) perm[i] = (int32_t)i;
    for (int64_t i = nsrc - 1; i > 0; i--) { /* injective: a shuffled prefix, some -1 */
        int64_t j = (int64_t)(rnd_u64() % (uint64_t)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int64_t i = 0; i < n; i++) idx[i] = (i % 7 == 3) ? -1 : perm[i];
    int32_t *idx_g = dev_bytes(idx, sizeof(int32_t) * n);
    pair src = pair_rand((size_t)nsrc * D, -1, 1), dst = pair_poison((size_t)n * D);
    C->gather_rows(dst.c, src.c, idx, n, D);
    G->gather_rows(dst.g, src.g, idx_g, n, D);
    check("gather_rows", "n257 D40", dst, 0);
    pair acc = pair_rand((size_t)nsrc * D, -1, 1), rows = pair_rand((size_t)n * D, -1, 1);
    C->scatter_add_rows(acc.c, rows.c, idx, n, D);
    G->scatter_add_rows(acc.g, rows.g, idx_g, n, D);
    check("scatter_add_rows", "n257 D40", acc, 0);
    free(idx);
    free(perm);
    G->free(idx_g);
    pair *all[] = {&src, &dst, &acc, &rows};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) pair_free(all[i]);

    int B = 2, Cc = 3, T = 4, Hs = 6, Ws = 10;
    int pts[2] = {1, 2};
    for (int a = 0; a < 2; a++)
        for (int cf = 0; cf < 2; cf++) {
            int pt = pts[a], ph = 2, pw = 2;
            char shape[64];
            snprintf(shape, sizeof shape, "B2 C3 T4 6x10 p%d22 %s", pt, cf ? "c_first" : "c_last");
            size_t nv = (size_t)B * Cc * T * Hs * Ws;
            pair vid = pair_rand(nv, -1, 1), tok = pair_poison(nv), vid2 = pair_poison(nv);
            C->patch_map(tok.c, vid.c, B, Cc, T, Hs, Ws, pt, ph, pw, cf, true);
            G->patch_map(tok.g, vid.g, B, Cc, T, Hs, Ws, pt, ph, pw, cf, true);
            check("patch_map to_tokens", shape, tok, 0);
            C->patch_map(tok.c, vid2.c, B, Cc, T, Hs, Ws, pt, ph, pw, cf, false);
            G->patch_map(tok.g, vid2.g, B, Cc, T, Hs, Ws, pt, ph, pw, cf, false);
            check("patch_map to_video", shape, vid2, 0);
            pair_free(&vid);
            pair_free(&tok);
            pair_free(&vid2);
        }
}

/* ------------------------------------------------------------------ losses, optimizer, quant */

static void test_reductions(int64_t n) {
    char shape[64];
    snprintf(shape, sizeof shape, "n%lld", (long long)n);
    pair p = pair_rand(n, -3, 3), t = pair_rand(n, -3, 3), dp = pair_poison(n);
    double mc = C->mse(dp.c, p.c, t.c, n, 0.5f), mg = G->mse(dp.g, p.g, t.g, n, 0.5f);
    check_scalar("mse value", shape, mg, mc, 1e-9);
    check("mse dpred", shape, dp, 1e-5);
    check_scalar("sumsq", shape, G->sumsq(p.g, n), C->sumsq(p.c, n), 1e-9);
    check_scalar("sumsq repeat bitwise", shape, G->sumsq(p.g, n), G->sumsq(p.g, n), 0);
    check_scalar("absmax", shape, G->absmax(p.g, n), C->absmax(p.c, n), 0);
    p.c[n / 3] = INFINITY;
    p.c[n / 2] = NAN;
    p.c[n - 1] = -INFINITY;
    G->upload(p.g, p.c, n * sizeof(float));
    check_scalar("count_nonfinite", shape, (double)G->count_nonfinite(p.g, n), (double)C->count_nonfinite(p.c, n), 0);
    pair_free(&p);
    pair_free(&t);
    pair_free(&dp);

    pair w = pair_rand(n, -1, 1), g = pair_rand(n, -1, 1), m = pair_rand(n, -0.1f, 0.1f), v = pair_rand(n, 0, 0.01f);
    for (int step = 1; step <= 3; step++) {
        float bc1 = 1.0f - powf(0.9f, step), bc2 = 1.0f - powf(0.999f, step);
        C->adamw(w.c, g.c, m.c, v.c, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, bc1, bc2, 0.5f);
        G->adamw(w.g, g.g, m.g, v.g, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, bc1, bc2, 0.5f);
    }
    check("adamw p (3 steps)", shape, w, 1e-5);
    check("adamw m", shape, m, 1e-5);
    check("adamw v", shape, v, 1e-5);
    pair e = pair_rand(n, -1, 1);
    C->ema(e.c, w.c, n, 0.999f);
    G->ema(e.g, w.g, n, 0.999f);
    check("ema", shape, e, 1e-6);
    pair_free(&w);
    pair_free(&g);
    pair_free(&m);
    pair_free(&v);
    pair_free(&e);

    /* HiF8 fake quantization must be bit-exact; inputs span the whole range incl. overflow */
    pair x = pair_new(n), y = pair_poison(n);
    for (int64_t i = 0; i < n; i++) x.c[i] = rnd_uniform(-1, 1) * powf(2.0f, rnd_uniform(-26, 18));
    G->upload(x.g, x.c, n * sizeof(float));
    for (int sat = 0; sat < 2; sat++) {
        C->hif8_fq(y.c, x.c, n, 3.0f, sat);
        G->hif8_fq(y.g, x.g, n, 3.0f, sat);
        float *h = osp_malloc(n * sizeof(float));
        G->download(h, y.g, n * sizeof(float));
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) bad += memcmp(&h[i], &y.c[i], 4) != 0;
        report(sat ? "hif8_fq saturate (mismatches)" : "hif8_fq (mismatches)", shape, (double)bad, 0);
        free(h);
    }
    pair_free(&x);
    pair_free(&y);
}

int main(void) {
    if (!twin_init("test_ops_gpu")) return 0;
    test_linear(37, 48, 40, "fp32", 1e-5);
    test_linear(37, 48, 40, "bf16", 1e-2);
    test_linear(33, 35, 29, "fp32", 1e-5); /* odd sizes: unaligned leading dimensions */
    test_linear(33, 35, 29, "bf16", 1e-2);
    test_linear(37, 48, 40, "fast16bf", 1e-2);
    test_linear(2048, 1536, 1536, "fp32", 1e-5);
    test_linear(2048, 1536, 1536, "bf16", 1e-2);
    test_linear(2048, 1536, 1536, "fast16bf", 1e-2);
    test_linear(2048, 1536, 8960, "bf16", 1e-2); /* FFN width: bias grad over > 8.4k columns */
    test_linear_gelu(37, 48, 40, "bf16", 1e-2);
    test_linear_gelu(37, 48, 40, "fp32", 1e-4);
    test_linear_gelu(2048, 1536, 8960, "bf16", 1e-2);
    test_linear_fq(37, 48, 40, "bf16", 1e-2);
    test_linear_fq(33, 35, 29, "bf16", 1e-2);
    test_linear_fq(37, 48, 40, "fp32", 1e-5);
    test_linear_fq(2048, 1536, 8960, "bf16", 1e-2);
    test_layernorm(37, 48, false);
    test_layernorm(37, 48, true);
    test_layernorm(2048, 1536, true);
    test_ln_mod(4, 37, 48, 2);
    test_ln_mod(1, 2048, 1536, 1);
    test_ln_mod(8, 300, 1536, 2);
    test_rmsnorm(37, 48);
    test_rmsnorm(2048, 1536);
    test_elementwise(1001);
    test_elementwise(2048 * 1536);
    test_gate_res(4, 37, 48, 2);
    test_gate_res(2, 2048, 1536, 2);
    test_rope(50, 3, 128);
    test_rope(50, 4, 32);
    test_rope(2048, 12, 128);
    test_qk_norm_rope(37, 3, 32);
    test_qk_norm_rope(50, 2, 64);
    test_qk_norm_rope(2048, 12, 128);
    test_layouts();
    test_reductions(1001);
    test_reductions(3000001);
    twin_free_backend();
    printf("%d checks, %d failed\n", nchecks, nfail);
    return nfail ? 1 : 0;
}
