/*
 * test_qlinear.c — the HiF8 fake-quantised linear layer (model/qlinear.c) against an
 * explicit reference written here:
 *  - forward equals "quantise x and W (scale = 15/amax, round to HiF8, unscale), then an
 *    ordinary GEMM" computed in double;
 *  - backward is the straight-through one: dY rounded with scale 224/amax(dY), then
 *    dX = g Wq, dW = g^T xq, db = colsum(g) — i.e. the rounding is treated as identity;
 *  - replay (recomputation) reuses the forward's scales and gives bit-identical outputs,
 *    and delayed scaling uses the previous steps' amax history.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "model/ops.h"
#include "quant/hif8.h"
#include "model/qlinear.h"

#include "tests/testutil.h"
#define EXPECT TU_EXPECT /* one failure counter for all C tests: tu_nfail */

static uint64_t st = 88172645463325252ull;
static float nrand(void) {
    double s = 0;
    for (int i = 0; i < 12; i++) {
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        s += (double)(st >> 11) / 9007199254740992.0;
    }
    return (float)(s - 6.0);
}

static float amax(const float *x, int64_t n) {
    float m = 0;
    for (int64_t i = 0; i < n; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

/* fq(x) = hif8(x*s)/s with s = target/amax, each step rounded to fp32 as docs/hif8.md §4 says */
static void fq_ref(float *y, const float *x, int64_t n, float target) {
    float s = target / fmaxf(amax(x, n), 1e-8f);
    for (int64_t i = 0; i < n; i++) y[i] = hif8_to_float(hif8_from_float(x[i] * s, false)) / s;
}

static double rel(const float *a, const double *b, int64_t n) {
    double d = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        d += (a[i] - b[i]) * (a[i] - b[i]);
        s += b[i] * b[i];
    }
    return sqrt(d / (s > 0 ? s : 1));
}

int main(void) {
    const osp_backend *be = osp_backend_cpu();
    const int64_t N = 37;
    const int K = 48, O = 29;
    float *x = osp_malloc(sizeof(float) * N * K), *W = osp_malloc(sizeof(float) * O * K), *b = osp_malloc(sizeof(float) * O);
    float *dy = osp_malloc(sizeof(float) * N * O), *y = osp_malloc(sizeof(float) * N * O);
    for (int64_t i = 0; i < N * K; i++) x[i] = 3.0f * nrand();
    for (int64_t i = 0; i < O * K; i++) W[i] = 0.2f * nrand();
    for (int i = 0; i < O; i++) b[i] = nrand();
    for (int64_t i = 0; i < N * O; i++) dy[i] = 1e-3f * nrand();
    qlinear_scratch s = {osp_malloc(sizeof(float) * N * K), osp_malloc(sizeof(float) * O * K),
                         osp_malloc(sizeof(float) * N * O), NULL};
    qlinear q;
    qlinear_init(&q, 15.0f, 224.0f, false, 1, false);
    qlinear_fwd(be, &q, &s, false, y, x, W, b, N, K, O);

    /* explicit reference */
    float *xq = osp_malloc(sizeof(float) * N * K), *wq = osp_malloc(sizeof(float) * O * K), *g = osp_malloc(sizeof(float) * N * O);
    fq_ref(xq, x, N * K, 15.0f);
    fq_ref(wq, W, O * K, 15.0f);
    fq_ref(g, dy, N * O, 224.0f);
    double *yr = osp_malloc(sizeof(double) * N * O);
    for (int64_t n = 0; n < N; n++)
        for (int o = 0; o < O; o++) {
            double a = b[o];
            for (int k = 0; k < K; k++) a += (double)xq[n * K + k] * wq[o * K + k];
            yr[n * O + o] = a;
        }
    double ey = rel(y, yr, N * O);
    EXPECT(ey < 1e-6, "forward vs quantise-then-GEMM: rel err %.3e (tol 1e-6)", ey);
    /* and it really is quantised: differs from the unquantised layer by a HiF8-sized amount */
    float *yp = osp_malloc(sizeof(float) * N * O);
    be->linear_fwd(yp, x, W, b, N, K, O);
    double eq = rel(yp, yr, N * O);
    EXPECT(eq > 1e-3 && eq < 0.2, "quantisation effect %.3e outside (1e-3, 0.2)", eq);
    printf("forward: rel err vs explicit quantise-then-GEMM %.2e (tol 1e-6); HiF8 effect vs fp32 %.2e\n", ey, eq);

    /* backward: straight-through */
    float *dx = osp_calloc((size_t)(N * K), sizeof(float)), *dW = osp_calloc((size_t)O * K, sizeof(float));
    float *db = osp_calloc((size_t)O, sizeof(float));
    qlinear_bwd(be, &q, &s, dx, dW, db, dy, x, W, N, K, O);
    double *dxr = osp_calloc((size_t)(N * K), sizeof(double)), *dWr = osp_calloc((size_t)O * K, sizeof(double));
    double *dbr = osp_calloc((size_t)O, sizeof(double));
    for (int64_t n = 0; n < N; n++)
        for (int o = 0; o < O; o++) {
            double gv = g[n * O + o];
            dbr[o] += gv;
            for (int k = 0; k < K; k++) {
                dxr[n * K + k] += gv * wq[o * K + k];
                dWr[o * K + k] += gv * xq[n * K + k];
            }
        }
    double ex = rel(dx, dxr, N * K), ew = rel(dW, dWr, (int64_t)O * K), eb = rel(db, dbr, O);
    EXPECT(ex < 1e-6 && ew < 1e-6 && eb < 1e-6, "backward vs STE formula: dx %.2e dW %.2e db %.2e", ex, ew, eb);
    printf("backward (STE): rel err dx %.2e, dW %.2e, db %.2e (tol 1e-6)\n", ex, ew, eb);

    /* replay reuses the forward's scales: identical output even if x's amax changes */
    float *y2 = osp_malloc(sizeof(float) * N * O);
    float save = x[0];
    qlinear_fwd(be, &q, &s, true, y2, x, W, b, N, K, O);
    EXPECT(!memcmp(y, y2, sizeof(float) * N * O), "replay must reproduce the forward bit for bit");
    x[0] = 100.0f; /* a new amax: a fresh forward would rescale, a replay must not */
    float sx = q.sx;
    qlinear_fwd(be, &q, &s, true, y2, x, W, b, N, K, O);
    EXPECT(q.sx == sx, "replay must not change the saved scale");
    x[0] = save;
    qlinear_free(&q);

    /* delayed scaling: the scale of step t comes from the amax of steps < t */
    qlinear qd;
    qlinear_init(&qd, 15.0f, 224.0f, true, 2, false);
    qlinear_fwd(be, &qd, &s, false, y2, x, W, b, N, K, O);
    float a0 = amax(x, N * K);
    for (int64_t i = 0; i < N * K; i++) x[i] *= 0.5f; /* step 2 has half the amax */
    qlinear_fwd(be, &qd, &s, false, y2, x, W, b, N, K, O);
    EXPECT(fabsf(qd.sx - 15.0f / a0) < 1e-6f * (15.0f / a0), "delayed scale %.6g, expected 15/amax(step 1) = %.6g",
           qd.sx, 15.0f / a0);
    printf("delayed scaling: step-2 scale %.6g = 15 / amax(step 1) %.6g\n", qd.sx, 15.0f / a0);
    qlinear_free(&qd);
    printf("%s\n", tu_nfail ? "test_qlinear: FAILED" : "test_qlinear: all checks passed");
    return tu_nfail ? 1 : 0;
}
