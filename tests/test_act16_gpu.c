/*
 * test_act16_gpu.c — the CUDA backend's bf16 activation storage (ops.h: linear16_*,
 * linear_gelu16_fwd, gelu16_bwd, the *16_fwd norms, attn16_*) against the same backend's fp32
 * ops, which test_ops_gpu checks against the CPU twins.
 *
 * What must hold, and is asserted:
 *  - a producer writing bf16 writes exactly bf16(y) (round to nearest even) of the y its fp32 op
 *    computes, and the same statistics: bitwise (norms, q/k norm + RoPE, attention output and
 *    lse, on cuDNN, masked cuDNN and osp's kernels);
 *  - a consumer reading a bf16 tensor computes what its fp32 op computes from float(that tensor):
 *    GEMMs and attention backward within 1e-5 relative (the same bf16 operands; cuBLASLt may
 *    pick another algorithm for another pointer alignment, cuDNN's dQ adds with atomics), the
 *    GELU backward bitwise;
 *  - the HiF8 quantised linear reading a bf16 x computes what it computes from float(x): the
 *    same quantised operands (1e-5, as the GEMMs above), absmax16 exact; with the GELU epilogue
 *    (bf16 y and pre) within 3e-3 of the rounded fp32 results; its scales are device floats, and
 *    with an fp32 x it equals the host-scale entry (linear_fq_*) bitwise;
 *  - device-resident scales: hif8_scale_dev of an fp32 or bf16 tensor is fq_scaler_scale (current)
 *    of fq_absmax bitwise (aligned, one and three elements off, short, below the floor, with a
 *    NaN, with an Inf, all zero, empty), absmax16 is fq_absmax bitwise, hif8_scale_set stores
 *    its value; the bf16 quantiser (16-byte vectors when aligned, one by one otherwise) writes
 *    bf16(fq_apply(x)) bitwise, on an aligned tensor and a view one element off; a scale of 0
 *    gives NaN wherever its operand enters (y; dx, dW and db);
 *  - a GEMM writing bf16 (its own rounding of the fp32 accumulator, possibly by another
 *    algorithm) is within 3e-3 of bf16(fp32 result) (bf16 spacing is 2^-8 relative).
 * Inputs are fresh seeded random values, bf16-exact where a bf16 tensor is compared with its
 * fp32 twin. Without a visible GPU (or a build without CUDA) the test prints "skipped" and passes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "model/cuda/backend.h"
#include "model/ops.h"
#include "quant/fakequant.h"
#include "tests/testutil.h"

static const osp_backend *G;
static tu_rng rng = {0x5EEDB16};

/* fp32 -> bf16, round to nearest even (finite inputs) */
static osp_bf16 bf16_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (osp_bf16)(u >> 16);
}
static float f32_of(osp_bf16 h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void *up(const void *h, size_t bytes) {
    void *d = G->alloc(bytes);
    G->upload(d, h, bytes);
    return d;
}
static float *down_f(const float *d, int64_t n) {
    float *h = osp_malloc(sizeof(float) * (size_t)n);
    G->download(h, d, sizeof(float) * (size_t)n);
    return h;
}
static osp_bf16 *down_h(const osp_bf16 *d, int64_t n) {
    osp_bf16 *h = osp_malloc(sizeof(osp_bf16) * (size_t)n);
    G->download(h, d, sizeof(osp_bf16) * (size_t)n);
    return h;
}

/* random bf16-exact values: the fp32 tensor (device) and its bf16 twin (device) */
typedef struct {
    float *f;
    osp_bf16 *h;
    int64_t n;
} twin;
static twin twin_rand(int64_t n, double scale) {
    float *x = tu_randn(&rng, n, scale);
    osp_bf16 *b = osp_malloc(sizeof(osp_bf16) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        b[i] = bf16_of(x[i]);
        x[i] = f32_of(b[i]);
    }
    twin t = {up(x, sizeof(float) * (size_t)n), up(b, sizeof(osp_bf16) * (size_t)n), n};
    free(x);
    free(b);
    return t;
}
static void twin_free(twin *t) {
    G->free(t->f);
    G->free(t->h);
}
static float *dev_randn(int64_t n, double scale) {
    float *h = tu_randn(&rng, n, scale);
    float *d = up(h, sizeof(float) * (size_t)n);
    free(h);
    return d;
}

/* the bf16 tensor y16 (device) is bf16(y) of the fp32 tensor y (device), element by element */
static void expect_rounded(const char *name, const osp_bf16 *y16, const float *y, int64_t n) {
    osp_bf16 *a = down_h(y16, n);
    float *b = down_f(y, n);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += a[i] != bf16_of(b[i]);
    tu_check(name, (double)bad, 0.0);
    free(a);
    free(b);
}
/* ||float(y16) - y|| / ||y|| */
static void expect_close16(const char *name, const osp_bf16 *y16, const float *y, int64_t n, double tol) {
    osp_bf16 *a = down_h(y16, n);
    float *b = down_f(y, n), *af = osp_malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) af[i] = f32_of(a[i]);
    tu_check(name, tu_rel_err_ff(af, b, n), tol);
    free(a);
    free(af);
    free(b);
}
static void expect_close(const char *name, const float *x, const float *y, int64_t n, double tol) {
    float *a = down_f(x, n), *b = down_f(y, n);
    tu_check(name, tol == 0 ? (double)tu_bitdiff(a, b, n) : tu_rel_err_ff(a, b, n), tol);
    free(a);
    free(b);
}

/* ------------------------------------------------------------------ norms */

static void test_norms(int64_t R, int64_t N, int D, int B, int H) {
    int64_t M = R * N;
    float *x = dev_randn(M * D, 1.5), *w = dev_randn(D, 1.0), *bb = dev_randn(D, 0.5);
    float *mod = dev_randn((int64_t)B * 2 * D, 0.3);
    float *y = G->alloc(sizeof(float) * M * D), *m1 = G->alloc(sizeof(float) * M), *r1 = G->alloc(sizeof(float) * M);
    float *m2 = G->alloc(sizeof(float) * M), *r2 = G->alloc(sizeof(float) * M);
    osp_bf16 *y16 = G->alloc(sizeof(osp_bf16) * M * D);
    G->ln_mod_fwd(y, m1, r1, x, mod, mod + D, R, N, D, B, 2 * D, 1e-6f);
    G->ln_mod16_fwd(y16, m2, r2, x, mod, mod + D, R, N, D, B, 2 * D, 1e-6f);
    expect_rounded("ln_mod16_fwd y == bf16(ln_mod_fwd y)", y16, y, M * D);
    expect_close("ln_mod16_fwd mean bitwise", m2, m1, M, 0);
    expect_close("ln_mod16_fwd rstd bitwise", r2, r1, M, 0);
    G->layernorm_fwd(y, m1, r1, x, w, bb, M, D, 1e-6f);
    G->layernorm16_fwd(y16, m2, r2, x, w, bb, M, D, 1e-6f);
    expect_rounded("layernorm16_fwd y == bf16(y)", y16, y, M * D);
    G->rmsnorm_fwd(y, r1, x, w, M, D, 1e-6f);
    G->rmsnorm16_fwd(y16, r2, x, w, M, D, 1e-6f);
    expect_rounded("rmsnorm16_fwd y == bf16(y)", y16, y, M * D);
    /* q/k norm + RoPE at token positions inside a small grid */
    int hd = D / H;
    osp_rope *rope = G->rope_init(hd, 64, 10000.0);
    int32_t *pos = osp_malloc(sizeof(int32_t) * 3 * (size_t)M);
    for (int64_t i = 0; i < M; i++) {
        pos[3 * i] = (int32_t)(i % 5);
        pos[3 * i + 1] = (int32_t)(i / 5 % 7);
        pos[3 * i + 2] = (int32_t)(i / 35 % 9);
    }
    int32_t *dpos = up(pos, sizeof(int32_t) * 3 * (size_t)M);
    G->qk_norm_rope_fwd(y, r1, x, w, dpos, rope, M, H, 1e-6f);
    G->qk_norm_rope16_fwd(y16, r2, x, w, dpos, rope, M, H, 1e-6f);
    expect_rounded("qk_norm_rope16_fwd y == bf16(y)", y16, y, M * D);
    expect_close("qk_norm_rope16_fwd rstd bitwise", r2, r1, M, 0);
    G->rope_free(rope);
    free(pos);
    G->free(dpos);
    void *ptrs[] = {x, w, bb, mod, y, m1, r1, m2, r2, y16};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) G->free(ptrs[i]);
}

/* ------------------------------------------------------------------ GEMMs */

static void test_linear16(int64_t N, int K, int O) {
    twin x = twin_rand(N * K, 1.0);
    float *W = dev_randn((int64_t)O * K, 1.0 / sqrt(K)), *b = dev_randn(O, 0.1);
    float *y = G->alloc(sizeof(float) * N * O), *y2 = G->alloc(sizeof(float) * N * O);
    osp_bf16 *y16 = G->alloc(sizeof(osp_bf16) * N * O);
    G->linear_fwd(y, x.f, W, b, N, K, O);
    G->linear16_fwd(y2, NULL, NULL, x.h, W, b, N, K, O);
    expect_close("linear16_fwd bf16 x == fp32 x", y2, y, N * O, 1e-5);
    G->linear16_fwd(NULL, y16, x.f, NULL, W, b, N, K, O);
    expect_close16("linear16_fwd bf16 y ~ bf16(y)", y16, y, N * O, 3e-3);
    /* backward: accumulate into the same random starting values */
    float *dy = dev_randn(N * O, 1.0);
    float *st_dx = dev_randn(N * K, 1.0), *st_dw = dev_randn((int64_t)O * K, 1.0), *st_db = dev_randn(O, 1.0);
    float *dx[2], *dw[2], *db[2];
    for (int r = 0; r < 2; r++) {
        dx[r] = G->alloc(sizeof(float) * N * K);
        dw[r] = G->alloc(sizeof(float) * O * K);
        db[r] = G->alloc(sizeof(float) * O);
        G->copy(dx[r], st_dx, sizeof(float) * N * K);
        G->copy(dw[r], st_dw, sizeof(float) * O * K);
        G->copy(db[r], st_db, sizeof(float) * O);
    }
    G->linear_bwd(dx[0], dw[0], db[0], dy, x.f, W, N, K, O);
    G->linear16_bwd(dx[1], dw[1], db[1], dy, NULL, x.h, W, N, K, O);
    expect_close("linear16_bwd dx", dx[1], dx[0], N * K, 1e-5);
    expect_close("linear16_bwd dW (bf16 x)", dw[1], dw[0], (int64_t)O * K, 1e-5);
    expect_close("linear16_bwd db bitwise", db[1], db[0], O, 0);
    /* the FFN's first layer: GELU epilogue writing bf16 y and pre */
    float *pre = G->alloc(sizeof(float) * N * O);
    osp_bf16 *pre16 = G->alloc(sizeof(osp_bf16) * N * O);
    G->linear_gelu_fwd(y, pre, x.f, W, b, N, K, O);
    G->linear_gelu16_fwd(y16, pre16, x.h, W, b, N, K, O);
    expect_close16("linear_gelu16_fwd y ~ bf16(y)", y16, y, N * O, 3e-3);
    expect_close16("linear_gelu16_fwd pre ~ bf16(pre)", pre16, pre, N * O, 3e-3);
    /* GELU backward from the bf16 pre-activation == from its float value */
    osp_bf16 *hp = down_h(pre16, N * O);
    float *fp = osp_malloc(sizeof(float) * (size_t)(N * O));
    for (int64_t i = 0; i < N * O; i++) fp[i] = f32_of(hp[i]);
    float *pref = up(fp, sizeof(float) * (size_t)(N * O));
    G->copy(y, dy, sizeof(float) * N * O); /* y, y2 reused as gradient buffers */
    G->copy(y2, dy, sizeof(float) * N * O);
    G->gelu_bwd(y, dy, pref, N * O);
    G->gelu16_bwd(y2, dy, pre16, N * O);
    expect_close("gelu16_bwd bitwise", y2, y, N * O, 0);
    /* HiF8: absmax of the stored values, and the quantised linear reading them with its scales in
     * device memory (hif8_scale_set), against the fp32 entries given the same scales as host floats */
    float a16 = G->absmax16(x.h, N * K), a32 = G->absmax(x.f, N * K);
    tu_check("absmax16 == absmax(float(x16))", a16 == a32 ? 0.0 : 1.0, 0.0);
    float sx = 15.0f / a32, sw = 15.0f / G->absmax(W, (int64_t)O * K), sg = 224.0f / G->absmax(dy, N * O);
    float *ds = G->alloc(sizeof(float) * 3); /* sx, sw, sg */
    G->hif8_scale_set(ds, sx);
    G->hif8_scale_set(ds + 1, sw);
    G->hif8_scale_set(ds + 2, sg);
    G->linear_fq_fwd(y, x.f, sx, W, sw, b, N, K, O, false);
    G->linear_fq16_fwd(y2, NULL, NULL, x.h, ds, W, ds + 1, b, N, K, O, false);
    expect_close("linear_fq16_fwd bf16 x == fp32 x", y2, y, N * O, 1e-5);
    /* an fp32 x through the device-scale entry: the same operands in the same scratch, bitwise */
    G->linear_fq16_fwd(y2, NULL, x.f, NULL, ds, W, ds + 1, b, N, K, O, false);
    expect_close("linear_fq16_fwd fp32 x, device scales bitwise", y2, y, N * O, 0);
    /* the HiF8 FFN's first layer keeps the GELU epilogue: pre ~ bf16(y), gelu ~ bf16(gelu(y)) */
    G->linear_fq_gelu16_fwd(y16, pre16, x.h, ds, W, ds + 1, b, N, K, O, false);
    expect_close16("linear_fq_gelu16_fwd pre ~ bf16(linear_fq)", pre16, y, N * O, 3e-3);
    G->gelu_fwd(y2, y, N * O);
    expect_close16("linear_fq_gelu16_fwd y ~ bf16(gelu(linear_fq))", y16, y2, N * O, 3e-3);
    for (int r = 0; r < 2; r++) {
        G->copy(dx[r], st_dx, sizeof(float) * N * K);
        G->copy(dw[r], st_dw, sizeof(float) * O * K);
        G->copy(db[r], st_db, sizeof(float) * O);
    }
    G->linear_fq_bwd(dx[0], dw[0], db[0], dy, sg, x.f, sx, W, sw, N, K, O, false);
    G->linear_fq16_bwd(dx[1], dw[1], db[1], dy, ds + 2, NULL, x.h, ds, W, ds + 1, N, K, O, false);
    expect_close("linear_fq16_bwd dx", dx[1], dx[0], N * K, 1e-5);
    expect_close("linear_fq16_bwd dW (bf16 x)", dw[1], dw[0], (int64_t)O * K, 1e-5);
    expect_close("linear_fq16_bwd db bitwise", db[1], db[0], O, 0);
    G->copy(dx[1], st_dx, sizeof(float) * N * K);
    G->copy(dw[1], st_dw, sizeof(float) * O * K);
    G->copy(db[1], st_db, sizeof(float) * O);
    G->linear_fq16_bwd(dx[1], dw[1], db[1], dy, ds + 2, x.f, NULL, ds, W, ds + 1, N, K, O, false);
    expect_close("linear_fq16_bwd fp32 x, device scales: dx bitwise", dx[1], dx[0], N * K, 0);
    expect_close("linear_fq16_bwd fp32 x, device scales: dW bitwise", dw[1], dw[0], (int64_t)O * K, 0);
    expect_close("linear_fq16_bwd fp32 x, device scales: db bitwise", db[1], db[0], O, 0);
    free(hp);
    free(fp);
    void *ptrs[] = {W, b, y, y2, y16, dy, st_dx, st_dw, st_db, pre, pre16, pref, ds};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) G->free(ptrs[i]);
    for (int r = 0; r < 2; r++) {
        G->free(dx[r]);
        G->free(dw[r]);
        G->free(db[r]);
    }
    twin_free(&x);
}

/* ------------------------------------------------------------------ HiF8 device scales */

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* the host's current scale: fq_scaler_scale of a current-mode scaler */
static float host_scale(float amax, float target) {
    fq_scaler sc;
    fq_scaler_init(&sc, target, false, 0, false);
    float s = fq_scaler_scale(&sc, amax);
    fq_scaler_free(&sc);
    return s;
}

/* hif8_scale_dev over h[off, off + n), stored fp32 or bf16 (then rounded to bf16 first), equals
 * host_scale(fq_absmax) bit for bit; with bf16 also absmax16 == fq_absmax */
static void check_scale_dev(const char *label, const float *h, int64_t off, int64_t n, bool as16, float target) {
    char name[160];
    int64_t tot = off + n;
    float *hr = osp_malloc(sizeof(float) * (size_t)(tot + 1));
    osp_bf16 *hb = osp_malloc(sizeof(osp_bf16) * (size_t)(tot + 1));
    for (int64_t i = 0; i < tot; i++) {
        hb[i] = bf16_of(h[i]);
        hr[i] = as16 ? f32_of(hb[i]) : h[i];
    }
    void *d = as16 ? up(hb, sizeof(osp_bf16) * (size_t)tot) : up(hr, sizeof(float) * (size_t)tot);
    float *ds = G->alloc(sizeof(float)), got;
    if (as16) G->hif8_scale_dev(ds, NULL, (const osp_bf16 *)d + off, n, target);
    else G->hif8_scale_dev(ds, (const float *)d + off, NULL, n, target);
    G->download(&got, ds, sizeof got);
    float amax = fq_absmax(hr + off, (size_t)n), want = host_scale(amax, target);
    snprintf(name, sizeof name, "hif8_scale_dev %s %s (n %lld, +%lld) bitwise", as16 ? "bf16" : "fp32", label,
             (long long)n, (long long)off);
    tu_check(name, bits_of(got) == bits_of(want) ? 0.0 : 1.0, 0.0);
    if (as16) {
        float a = G->absmax16((const osp_bf16 *)d + off, n);
        snprintf(name, sizeof name, "absmax16 == fq_absmax %s (n %lld, +%lld)", label, (long long)n, (long long)off);
        tu_check(name, bits_of(a) == bits_of(amax) ? 0.0 : 1.0, 0.0);
    }
    G->free(d);
    G->free(ds);
    free(hr);
    free(hb);
}

static void test_scales(void) {
    const int64_t n = 1000003;
    for (int as16 = 0; as16 < 2; as16++) {
        float *h = tu_randn(&rng, n + 8, 1.0 + 100.0 * tu_uniform(&rng)); /* fresh values per storage */
        check_scale_dev("random", h, 0, n, as16, 15.0f);
        check_scale_dev("random", h, 1, n - 1, as16, 15.0f);
        check_scale_dev("random", h, 3, 4099, as16, 224.0f);
        check_scale_dev("short", h, 1, 7, as16, 15.0f);
        float *t = osp_malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) t[i] = h[i] * 1e-30f; /* amax below the 1e-8 floor */
        check_scale_dev("tiny", t, 0, n, as16, 15.0f);
        memcpy(t, h, sizeof(float) * (size_t)n);
        t[1 + tu_randint(&rng, n - 1)] = NAN; /* inside both views below */
        check_scale_dev("with a NaN", t, 0, n, as16, 15.0f);
        check_scale_dev("with a NaN", t, 1, n - 1, as16, 224.0f);
        memcpy(t, h, sizeof(float) * (size_t)n);
        t[tu_randint(&rng, n)] = -INFINITY; /* amax Inf: scale 0 */
        check_scale_dev("with an Inf", t, 0, n, as16, 15.0f);
        memset(t, 0, sizeof(float) * 777);
        check_scale_dev("all zero", t, 0, 777, as16, 15.0f);
        check_scale_dev("empty", t, 0, 0, as16, 15.0f);
        free(t);
        free(h);
    }
    const float vals[] = {0.3711f, 0.0f, -0.75f, 1e37f, NAN};
    float *ds = G->alloc(sizeof(float)), got;
    int bad = 0;
    for (int i = 0; i < 5; i++) {
        G->hif8_scale_set(ds, vals[i]);
        G->download(&got, ds, sizeof got);
        bad += bits_of(got) != bits_of(vals[i]);
    }
    tu_check("hif8_scale_set stores the value bitwise", bad, 0);
    G->free(ds);
}

/* The bf16 quantiser (bf16 x -> bf16(fq(x; *dsx)), 16-byte vectors when aligned, one by one
 * otherwise) against the CPU's bf16(fq_apply(float(x))), bitwise, on an aligned tensor and on a
 * view one element off. The GEMM copies the quantised operand out exactly: W = I, and fq(I) = I
 * (amax 1 maps to 15, a HiF8 value), so each y is one bf16 product by 1 plus zeros. */
static void test_fq16_operand(int64_t N, int K) {
    char name[160];
    int64_t n = N * K;
    float *h = tu_randn(&rng, n + 1, 3.0), *ref = osp_malloc(sizeof(float) * (size_t)n);
    float *eye = osp_calloc((size_t)K * K, sizeof(float));
    osp_bf16 *hb = osp_malloc(sizeof(osp_bf16) * (size_t)(n + 1));
    for (int64_t i = 0; i < n + 1; i++) hb[i] = bf16_of(h[i]);
    for (int k = 0; k < K; k++) eye[(int64_t)k * K + k] = 1.0f;
    osp_bf16 *xb = up(hb, sizeof(osp_bf16) * (size_t)(n + 1));
    float *dI = up(eye, sizeof(float) * (size_t)K * K), *ds = G->alloc(sizeof(float) * 2);
    float *y = G->alloc(sizeof(float) * (size_t)n), sd[2];
    for (int off = 0; off < 2; off++) {
        G->hif8_scale_dev(ds, NULL, xb + off, n, 15.0f);
        G->hif8_scale_dev(ds + 1, dI, NULL, (int64_t)K * K, 15.0f);
        G->linear_fq16_fwd(y, NULL, NULL, xb + off, ds, dI, ds + 1, NULL, N, K, K, off == 1);
        for (int64_t i = 0; i < n; i++) ref[i] = f32_of(hb[off + i]);
        float s = host_scale(fq_absmax(ref, (size_t)n), 15.0f);
        fq_apply(ref, ref, (size_t)n, s, off == 1);
        for (int64_t i = 0; i < n; i++) ref[i] = f32_of(bf16_of(ref[i]));
        float *got = down_f(y, n);
        G->download(sd, ds, sizeof sd);
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) bad += bits_of(got[i]) != bits_of(ref[i]) && !(got[i] == 0 && ref[i] == 0);
        snprintf(name, sizeof name, "bf16 quantiser == bf16(fq_apply), %s, %lld x %d",
                 off ? "one element off" : "aligned", (long long)N, K);
        tu_check(name, (double)bad, 0.0);
        snprintf(name, sizeof name, "its scales: device == host bitwise (%s)", off ? "one element off" : "aligned");
        tu_check(name, bits_of(sd[0]) == bits_of(s) && sd[1] == 15.0f ? 0.0 : 1.0, 0.0);
        free(got);
    }
    free(h);
    free(eye);
    free(ref);
    free(hb);
    void *ptrs[] = {xb, dI, ds, y};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) G->free(ptrs[i]);
}

/* a device scale of 0 (amax = Inf) gives NaN wherever its operand enters, as fq does (x * 0 / 0):
 * dx, dW and db (the column sum of fq(dy)) for dsg = 0, y for dsx = 0 */
static void test_fq16_zero_scale(int64_t N, int K, int O) {
    twin x = twin_rand(N * K, 1.0);
    float *W = dev_randn((int64_t)O * K, 1.0 / sqrt(K)), *dy = dev_randn(N * O, 1.0), *ds = G->alloc(sizeof(float) * 3);
    float *y = G->alloc(sizeof(float) * N * O), *dx = G->alloc(sizeof(float) * N * K);
    float *dW = G->alloc(sizeof(float) * O * K), *db = G->alloc(sizeof(float) * O);
    G->hif8_scale_dev(ds, NULL, x.h, N * K, 15.0f);
    G->hif8_scale_dev(ds + 1, W, NULL, (int64_t)O * K, 15.0f);
    G->hif8_scale_set(ds + 2, 0.0f);
    G->linear_fq16_fwd(y, NULL, NULL, x.h, ds, W, ds + 1, NULL, N, K, O, false);
    tu_check("linear_fq16_fwd finite with finite scales", (double)G->count_nonfinite(y, N * O), 0.0);
    G->linear_fq16_bwd(dx, dW, db, dy, ds + 2, NULL, x.h, ds, W, ds + 1, N, K, O, false);
    tu_check("dsg = 0: dx all NaN", (double)(N * K - G->count_nonfinite(dx, N * K)), 0.0);
    tu_check("dsg = 0: dW all NaN", (double)((int64_t)O * K - G->count_nonfinite(dW, (int64_t)O * K)), 0.0);
    tu_check("dsg = 0: db (colsum of fq(dy)) all NaN", (double)(O - G->count_nonfinite(db, O)), 0.0);
    G->hif8_scale_set(ds, 0.0f);
    G->linear_fq16_fwd(y, NULL, NULL, x.h, ds, W, ds + 1, NULL, N, K, O, false);
    tu_check("dsx = 0: y all NaN", (double)(N * O - G->count_nonfinite(y, N * O)), 0.0);
    void *ptrs[] = {W, dy, ds, y, dx, dW, db};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) G->free(ptrs[i]);
    twin_free(&x);
}

/* ------------------------------------------------------------------ attention */

static void test_attn16(const char *label, int64_t R, int64_t Rkv, int64_t Nq, int64_t Nk, int H, int d, bool mask) {
    char name[160];
    int64_t nq = R * Nq * H * d, nk = Rkv * Nk * H * d, nl = R * H * Nq;
    twin q = twin_rand(nq, 1.0), k = twin_rand(nk, 1.0), v = twin_rand(nk, 1.0);
    uint8_t *valid = NULL;
    if (mask) { /* ~20% masked keys, at least one valid per row */
        uint8_t *h = osp_malloc((size_t)(Rkv * Nk));
        for (int64_t i = 0; i < Rkv * Nk; i++) h[i] = (i % Nk == 0) || tu_uniform(&rng) > 0.2;
        valid = up(h, (size_t)(Rkv * Nk));
        free(h);
    }
    float *o = G->alloc(sizeof(float) * nq), *lse = G->alloc(sizeof(float) * nl), *lse2 = G->alloc(sizeof(float) * nl);
    osp_bf16 *o16 = G->alloc(sizeof(osp_bf16) * nq);
    G->attn_fwd(o, lse, q.f, k.f, v.f, valid, R, Rkv, Nq, Nk, H, d);
    G->attn16_fwd(o16, lse2, q.h, k.h, v.h, valid, R, Rkv, Nq, Nk, H, d);
    snprintf(name, sizeof name, "attn16_fwd o == bf16(o), %s", label);
    expect_rounded(name, o16, o, nq);
    snprintf(name, sizeof name, "attn16_fwd lse bitwise, %s", label);
    expect_close(name, lse2, lse, nl, 0);
    /* backward from the same o (the fp32 path reads float(o16)) and dout, into the same start */
    osp_bf16 *ho = down_h(o16, nq);
    float *fo = osp_malloc(sizeof(float) * (size_t)nq);
    for (int64_t i = 0; i < nq; i++) fo[i] = f32_of(ho[i]);
    G->upload(o, fo, sizeof(float) * (size_t)nq);
    float *dout = dev_randn(nq, 1.0), *g[2][3], *st[3] = {dev_randn(nq, 1.0), dev_randn(nk, 1.0), dev_randn(nk, 1.0)};
    int64_t gn[3] = {nq, nk, nk};
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < 3; j++) {
            g[r][j] = G->alloc(sizeof(float) * gn[j]);
            G->copy(g[r][j], st[j], sizeof(float) * gn[j]);
        }
    G->attn_bwd(g[0][0], g[0][1], g[0][2], dout, o, lse, q.f, k.f, v.f, valid, R, Rkv, Nq, Nk, H, d);
    G->attn16_bwd(g[1][0], g[1][1], g[1][2], dout, o16, lse2, q.h, k.h, v.h, valid, R, Rkv, Nq, Nk, H, d);
    static const char *gname[3] = {"dq", "dk", "dv"};
    for (int j = 0; j < 3; j++) {
        snprintf(name, sizeof name, "attn16_bwd %s, %s", gname[j], label);
        expect_close(name, g[1][j], g[0][j], gn[j], 1e-5);
    }
    free(ho);
    free(fo);
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < 3; j++) G->free(g[r][j]);
    for (int j = 0; j < 3; j++) G->free(st[j]);
    void *ptrs[] = {o, lse, lse2, o16, dout};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) G->free(ptrs[i]);
    if (valid) G->free(valid);
    twin_free(&q);
    twin_free(&k);
    twin_free(&v);
}

int main(void) {
    G = osp_backend_cuda_init(0, NULL);
    if (!G || !G->act16_on) {
        printf("skipped: no CUDA device (bf16 activation storage is a CUDA backend feature)\n");
        return 0;
    }
    /* GEMM mode and storage at their defaults whatever the environment says (its other overrides,
     * OSP_CUDNN_LIB say, stay), then each switch alone */
    osp_cuda_options dflt = *osp_backend_cuda_options(G);
    dflt.gemm = OSP_CUDA_GEMM_BF16;
    dflt.act16 = true;
    osp_cuda_options o = dflt;
    osp_backend_cuda_set_options(G, &o);
    TU_EXPECT(G->act16_on(), "bf16 storage is on by default (bf16 GEMM mode)");
    o.act16 = false;
    osp_backend_cuda_set_options(G, &o);
    TU_EXPECT(!G->act16_on(), "act16 off turns it off");
    o = dflt;
    o.gemm = OSP_CUDA_GEMM_FP32;
    osp_backend_cuda_set_options(G, &o);
    TU_EXPECT(!G->act16_on(), "off with GEMM mode fp32");
    osp_backend_cuda_set_options(G, &dflt);

    test_norms(3, 37, 96, 3, 2);
    test_norms(2, 512, 1536, 2, 12); /* production width */
    test_linear16(77, 96, 160);
    test_linear16(2048, 1536, 1536);
    test_linear16(1024, 1536, 8960); /* the FFN's first layer */
    test_scales();
    test_fq16_operand(37, 100); /* 3700 values: the vector path leaves a tail of 4 */
    test_fq16_operand(512, 1536);
    test_fq16_zero_scale(33, 40, 24);
    test_attn16("cuDNN, R 2 x 300, H 2 x 64", 2, 2, 300, 300, 2, 64, false);
    test_attn16("cuDNN masked, R 4 x 256, H 2 x 128", 4, 4, 256, 256, 2, 128, true);
    test_attn16("cross (osp kernels), R 4 / Rkv 2, 96 x 16", 4, 2, 96, 16, 2, 64, false);
    o = dflt;
    o.attn = OSP_CUDA_ATTN_OSP;
    osp_backend_cuda_set_options(G, &o);
    test_attn16("osp kernels masked, R 2 x 200, H 2 x 64", 2, 2, 200, 200, 2, 64, true);
    osp_backend_cuda_free(G);
    return tu_summary("test_act16_gpu");
}
