/*
 * test_ops_cpu.c — every op of the CPU backend (model/cpu/backend.c) against independent
 * float64 references and finite differences:
 *   - forwards vs float64 formulas (rel err <= 1e-6; attention <= 1e-5);
 *   - every input/parameter gradient twice: (a) vs a float64 reference (exact formulas
 *     for linear and attention, central differences of a float64 reference forward for
 *     norms/activations/gate, rel err <= 1e-5; attention <= 1e-4), and (b) by fp32 central
 *     differences of the op itself (tu_fd_check: h = 1e-2 and h/2 on O(1) inputs, random
 *     + steepest directions and single coordinates, tolerance 1e-2 relative);
 *   - attention masks with an all-masked kv row (output 0) and a fully masked 256-key
 *     tile, Rkv < R, Nq != Nk, sizes off the 64/256 tiles, head dims 32 and 128, and
 *     8192 tokens (sampled rows vs float64; peak RSS growth far below N*N*4 bytes);
 *   - RoPE transpose identity and 44/42/42 split, gather/scatter adjointness, patch_map
 *     orders of docs/model.md §3/§6, mse/sumsq/absmax, AdamW/EMA one step vs double;
 *   - every backward ADDS into its outputs (prefilled buffers);
 *   - bit-identical reducing backwards for 1 vs 2 OpenMP threads, and whatever OpenBLAS
 *     thread count was set before the backend was fetched (see notes/ops_tests.md).
 */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "model/ops.h"
#include "quant/hif8.h"
#include "tests/testutil.h"

#define FD_H 1e-2
#define FD_TOL 1e-2
#define FWD_TOL 1e-6

static const osp_backend *be;
static tu_rng rng = {20240611u};

/* One context for every loss: the op under test recomputes its forward from these. */
typedef struct {
    float *x, *w, *b, *y, *c, *mean, *rstd, *mod, *x0, *k, *v, *lse;
    const uint8_t *valid;
    const int32_t *pos;
    const osp_rope *rope;
    int64_t N, R, Rkv, Nk, stride;
    int D, K, O, B, H, d, which;
    float eps;
} ctx_t;

/* grads are checked to ACCUMULATE: prefill with g0, run, and compare (g - g0) */
static float *prefilled(int64_t n, float **g0) {
    *g0 = tu_randn(&rng, n, 1.0);
    return tu_dup(*g0, n);
}
static void unfill(float *g, const float *g0, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] -= g0[i];
}

/* ------------------------------------------------------------------ linear */

static double lin_loss(void *p) {
    ctx_t *k = p;
    be->linear_fwd(k->y, k->x, k->w, k->b, k->N, k->K, k->O);
    return tu_cot(k->c, k->y, k->N * k->O);
}

static void test_linear(int bias) {
    int64_t N = 37;
    int K = 24, O = 19;
    ctx_t c = {.N = N, .K = K, .O = O};
    c.x = tu_randn(&rng, N * K, 1.0);
    c.w = tu_randn(&rng, (int64_t)O * K, 0.3);
    c.b = bias ? tu_randn(&rng, O, 1.0) : NULL;
    c.c = tu_randn(&rng, N * O, 1.0);
    c.y = tu_calloc(N * O, sizeof(float));
    double *yr = tu_calloc(N * O, sizeof(double)), *dxr = tu_calloc(N * K, sizeof(double));
    double *dwr = tu_calloc((size_t)O * K, sizeof(double)), *dbr = tu_calloc(O, sizeof(double));
    for (int64_t n = 0; n < N; n++)
        for (int o = 0; o < O; o++) {
            double s = bias ? c.b[o] : 0;
            for (int i = 0; i < K; i++) {
                s += (double)c.x[n * K + i] * c.w[o * K + i];
                dxr[n * K + i] += (double)c.c[n * O + o] * c.w[o * K + i];
                dwr[o * K + i] += (double)c.c[n * O + o] * c.x[n * K + i];
            }
            yr[n * O + o] = s;
            dbr[o] += c.c[n * O + o];
        }
    lin_loss(&c);
    char nm[64];
    snprintf(nm, sizeof nm, "linear%s fwd vs f64", bias ? "+bias" : "");
    tu_check(nm, tu_rel_err_fd(c.y, yr, N * O), FWD_TOL);
    float *g0x, *g0w, *g0b = NULL;
    float *dx = prefilled(N * K, &g0x), *dw = prefilled((int64_t)O * K, &g0w), *db = bias ? prefilled(O, &g0b) : NULL;
    be->linear_bwd(dx, dw, db, c.c, c.x, c.w, N, K, O);
    unfill(dx, g0x, N * K);
    unfill(dw, g0w, (int64_t)O * K);
    snprintf(nm, sizeof nm, "linear%s dx,dW vs f64 (accumulated)", bias ? "+bias" : "");
    tu_check(nm, fmax(tu_rel_err_fd(dx, dxr, N * K), tu_rel_err_fd(dw, dwr, (int64_t)O * K)), 1e-5);
    tu_fd_check("linear dx", c.x, N * K, dx, lin_loss, &c, FD_H, FD_TOL, &rng, 3, 4);
    tu_fd_check("linear dW", c.w, (int64_t)O * K, dw, lin_loss, &c, FD_H, FD_TOL, &rng, 3, 4);
    if (bias) {
        unfill(db, g0b, O);
        tu_check("linear+bias db vs f64", tu_rel_err_fd(db, dbr, O), 1e-5);
        tu_fd_check("linear db", c.b, O, db, lin_loss, &c, FD_H, FD_TOL, &rng, 3, 4);
    }
    free(c.x), free(c.w), free(c.b), free(c.c), free(c.y), free(yr), free(dxr), free(dwr), free(dbr);
    free(dx), free(dw), free(db), free(g0x), free(g0w), free(g0b);
}

/* ------------------------------------------------------------------ norms, elementwise */

/*
 * Each op below has a float64 reference forward (loss64: writes y64, returns <c, y64>)
 * over float64 copies of its inputs (X, W64, B64, M64). It checks the op's forward, and
 * tu_fd_grad64 on it gives reference gradients accurate to ~1e-9, against which the op's
 * gradients are held to REF_TOL; tu_fd_check then runs fp32 FD on the op itself.
 */
#define REF_TOL 1e-5
typedef struct {
    ctx_t f;                    /* fp32 operands of the op */
    double *X, *W64, *B64, *M64, *y64;
} ref_t;

static void ln_row64(double *xh, const double *x, int D, double eps) {
    double m = 0, v = 0;
    for (int i = 0; i < D; i++) m += x[i];
    m /= D;
    for (int i = 0; i < D; i++) v += (x[i] - m) * (x[i] - m);
    for (int i = 0; i < D; i++) xh[i] = (x[i] - m) / sqrt(v / D + eps);
}

/* which: 0 layernorm, 1 ln_mod, 2 rmsnorm, 3 gelu, 4 silu, 5 gate_res */
static double loss64(void *p) {
    ref_t *k = p;
    const ctx_t *f = &k->f;
    int64_t rows = f->which == 0 || f->which == 2 ? f->N : f->R * f->N, D = f->D;
    if (f->which == 3 || f->which == 4) rows = f->N, D = 1;
    double s = 0;
    for (int64_t r = 0; r < rows; r++) {
        const double *x = k->X + r * D, *m = k->M64 ? k->M64 + ((r / f->N) % (f->B ? f->B : 1)) * 6 * D : NULL;
        double *y = k->y64 + r * D, ss = 0;
        if (f->which <= 1) ln_row64(y, x, (int)D, 1e-6);
        for (int i = 0; i < D; i++) ss += x[i] * x[i];
        for (int i = 0; i < D; i++) {
            double v = x[i];
            switch (f->which) {
            case 0: y[i] = k->W64 ? y[i] * k->W64[i] + k->B64[i] : y[i]; break;
            case 1: y[i] = y[i] * (1 + m[4 * D + i]) + m[3 * D + i]; break;
            case 2: y[i] = v / sqrt(ss / D + 1e-6) * k->W64[i]; break;
            case 3: y[i] = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))); break;
            case 4: y[i] = v / (1 + exp(-v)); break;
            default: y[i] = f->x0[r * D + i] + v * m[2 * D + i];
            }
            s += (double)f->c[r * D + i] * y[i];
        }
    }
    return s;
}

/* op gradient g (w.r.t. the operand whose float64 copy is X64) vs the float64 FD reference */
static void ref_grad(const char *name, const float *g, double *X64, int64_t n, ref_t *k) {
    double *gr = tu_calloc(n, sizeof(double));
    tu_fd_grad64(gr, X64, n, loss64, k, 1e-5);
    char nm[100];
    snprintf(nm, sizeof nm, "%s vs f64 reference gradient", name);
    tu_check(nm, tu_rel_err_fd(g, gr, n), REF_TOL);
    free(gr);
}

static double op_loss(void *p) {
    ctx_t *k = p;
    int64_t n = (k->which == 3 || k->which == 4) ? k->N : (k->which == 0 || k->which == 2 ? k->N : k->R * k->N) * k->D;
    switch (k->which) {
    case 0: be->layernorm_fwd(k->y, k->mean, k->rstd, k->x, k->w, k->b, k->N, k->D, k->eps); break;
    case 1:
        be->ln_mod_fwd(k->y, k->mean, k->rstd, k->x, k->mod + 3 * k->D, k->mod + 4 * k->D, k->R, k->N, k->D, k->B,
                       k->stride, k->eps);
        break;
    case 2: be->rmsnorm_fwd(k->y, k->rstd, k->x, k->w, k->N, k->D, k->eps); break;
    case 3: be->gelu_fwd(k->y, k->x, k->N); break;
    case 4: be->silu_fwd(k->y, k->x, k->N); break;
    default: /* y = x0 + x * gate, gate = slot 2 of the modulation block */
        be->gate_res_fwd(k->y, k->x0, k->x, k->mod + 2 * k->D, NULL, 0, k->R, k->N, k->D, k->B, k->stride);
    }
    return tu_cot(k->c, k->y, n);
}

static const char *op_names[6] = {"layernorm", "ln_mod", "rmsnorm", "gelu(tanh)", "silu", "gate_res"};

/*
 * One norm/elementwise op: forward vs float64; every gradient vs the float64 FD
 * reference and by fp32 FD; gradients must ADD (prefilled outputs). Per-sample vectors
 * (shift/scale/gate) live in a [B][6][D] modulation block read at stride 6D with the
 * sample r % B of row r (R > B is the Skiparse row mapping).
 */
static void test_rowop(int which, int64_t R, int64_t N, int D, int B, int affine) {
    ref_t k = {.f = {.which = which, .R = R, .N = N, .D = D, .B = B, .stride = 6 * D, .eps = 1e-6f}};
    ctx_t *f = &k.f;
    int elem = which == 3 || which == 4;
    int64_t nt = elem ? N : (which == 0 || which == 2 ? N : R * N) * D, nm = (int64_t)B * 6 * D;
    f->x = tu_randn(&rng, nt, 1.3);
    if (elem) tu_fill_uniform(&rng, f->x, nt, -6.0, 6.0);
    if (which == 0)
        for (int64_t i = 0; i < nt; i++) f->x[i] += 0.5f * (float)((i / D) % 5); /* nonzero row means */
    if (affine || which == 2) {
        f->w = tu_randn(&rng, D, 0.3);
        for (int i = 0; i < D; i++) f->w[i] += 1.0f;
        k.W64 = tu_to_double(f->w, D);
    }
    if (affine) {
        f->b = tu_randn(&rng, D, 0.5);
        k.B64 = tu_to_double(f->b, D);
    }
    if (which == 1 || which == 5) {
        f->mod = tu_randn(&rng, nm, 0.5);
        k.M64 = tu_to_double(f->mod, nm);
    }
    if (which == 5) f->x0 = tu_randn(&rng, nt, 1.0);
    f->c = tu_randn(&rng, nt, 1.0);
    f->y = tu_calloc(nt, sizeof(float));
    f->mean = tu_calloc(nt, sizeof(float));
    f->rstd = tu_calloc(nt, sizeof(float));
    k.X = tu_to_double(f->x, nt);
    k.y64 = tu_calloc(nt, sizeof(double));
    char nmb[120], cfg[100];
    snprintf(cfg, sizeof cfg, "%s%s", op_names[which], affine ? "+affine" : "");
    if (which == 1 || which == 5) snprintf(cfg, sizeof cfg, "%s R=%lld B=%d", op_names[which], (long long)R, B);
    op_loss(f);
    loss64(&k);
    snprintf(nmb, sizeof nmb, "%s fwd vs f64", cfg);
    tu_check(nmb, tu_rel_err_fd(f->y, k.y64, nt), FWD_TOL);
    /* backward: gradient of the first operand (x, or y for gate_res) and parameters */
    float *g0, *gx = prefilled(nt, &g0), *gw = tu_calloc(D, 4), *gb = tu_calloc(D, 4), *gm = tu_calloc(nm, 4);
    switch (which) {
    case 0: be->layernorm_bwd(gx, affine ? gw : NULL, affine ? gb : NULL, f->c, f->x, f->mean, f->rstd, f->w, N, D); break;
    case 1:
        be->ln_mod_bwd(gx, gm + 3 * D, gm + 4 * D, f->c, f->x, f->mean, f->rstd, f->mod + 4 * D, R, N, D, B, f->stride);
        break;
    case 2: be->rmsnorm_bwd(gx, gw, f->c, f->x, f->rstd, f->w, N, D); break;
    case 3: be->gelu_bwd(gx, f->c, f->x, N); break;
    case 4: be->silu_bwd(gx, f->c, f->x, N); break;
    default: be->gate_res_bwd(gx, gm + 2 * D, f->c, f->x, f->mod + 2 * D, R, N, D, B, f->stride);
    }
    unfill(gx, g0, nt);
    snprintf(nmb, sizeof nmb, "%s %s", cfg, which == 5 ? "dy" : "dx");
    ref_grad(nmb, gx, k.X, nt, &k);
    tu_fd_check(nmb, f->x, nt, gx, op_loss, f, FD_H, FD_TOL, &rng, 3, 4);
    if (k.W64) {
        snprintf(nmb, sizeof nmb, "%s dw", cfg);
        ref_grad(nmb, gw, k.W64, D, &k);
        tu_fd_check(nmb, f->w, D, gw, op_loss, f, FD_H, FD_TOL, &rng, 3, 4);
    }
    if (k.B64) {
        snprintf(nmb, sizeof nmb, "%s db", cfg);
        ref_grad(nmb, gb, k.B64, D, &k);
        tu_fd_check(nmb, f->b, D, gb, op_loss, f, FD_H, FD_TOL, &rng, 3, 4);
    }
    if (which == 0 && !affine) TU_EXPECT(tu_norm_f(gw, D) == 0 && tu_norm_f(gb, D) == 0, "NULL dw/db touched");
    if (k.M64) { /* whole modulation block: slots the op does not read must get exactly 0 */
        snprintf(nmb, sizeof nmb, "%s %s", cfg, which == 1 ? "dshift,dscale" : "dgate");
        ref_grad(nmb, gm, k.M64, nm, &k);
        tu_fd_check(nmb, f->mod, nm, gm, op_loss, f, FD_H, FD_TOL, &rng, 3, 6);
        int stray = 0;
        for (int64_t i = 0; i < nm; i++) {
            int slot = (int)((i % (6 * D)) / D);
            stray += (which == 1 ? slot != 3 && slot != 4 : slot != 2) && gm[i] != 0;
        }
        TU_EXPECT(stray == 0, "%s wrote %d gradients outside its slots", cfg, stray);
    }
    free(f->x), free(f->w), free(f->b), free(f->mod), free(f->x0), free(f->c), free(f->y), free(f->mean), free(f->rstd);
    free(k.X), free(k.W64), free(k.B64), free(k.M64), free(k.y64), free(g0), free(gx), free(gw), free(gb), free(gm);
}

static void test_misc_elementwise(void) {
    int64_t n = 777;
    float *x = tu_randn(&rng, n, 1.0), *y = tu_randn(&rng, n, 1.0), *y0 = tu_dup(y, n);
    be->add(y, x, n);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad += y[i] != y0[i] + x[i];
    memcpy(y0, y, sizeof(float) * n);
    be->scale(y, 3.0f, n);
    for (int64_t i = 0; i < n; i++) bad += y[i] != y0[i] * 3.0f;
    TU_EXPECT(bad == 0, "add/scale: %d mismatches", bad);
    float *z = tu_randn(&rng, n, 1.0), *z0 = tu_dup(z, n);
    be->axpby(z, 0.75f, x, -1.5f, n);
    double *zr = tu_calloc(n, sizeof(double));
    for (int64_t i = 0; i < n; i++) zr[i] = 0.75 * x[i] - 1.5 * z0[i];
    tu_check("axpby vs f64", tu_rel_err_fd(z, zr, n), FWD_TOL);
    z[3] = NAN, z[100] = INFINITY, z[700] = -INFINITY;
    TU_EXPECT(be->count_nonfinite(z, n) == 3, "count_nonfinite %lld != 3", (long long)be->count_nonfinite(z, n));
    /* HiF8 fake quantisation is the element-wise codec round trip at scale s */
    be->hif8_fq(y, x, n, 4.0f, true);
    bad = 0;
    for (int64_t i = 0; i < n; i++) bad += y[i] != hif8_round(x[i] * 4.0f, true) / 4.0f;
    TU_EXPECT(bad == 0, "hif8_fq: %d mismatches vs hif8_round", bad);
    /* alloc is zero-filled, copy/zero/upload/download move bytes */
    float *a = be->alloc(sizeof(float) * n);
    int nz = 0;
    for (int64_t i = 0; i < n; i++) nz += a[i] != 0;
    be->upload(a, x, sizeof(float) * n);
    be->copy(y, a, sizeof(float) * n);
    be->download(z, y, sizeof(float) * n);
    TU_EXPECT(nz == 0 && !memcmp(z, x, sizeof(float) * n), "alloc/copy");
    be->zero(a, sizeof(float) * n);
    for (int64_t i = 0; i < n; i++) nz += a[i] != 0;
    TU_EXPECT(nz == 0, "zero");
    be->free(a);
    free(x), free(y), free(y0), free(z), free(z0), free(zr);
}

/* ------------------------------------------------------------------ RoPE */

/* float64 RoPE with nt time pairs and nh height/width pairs, literal (9)/(10) */
static void rope_ref(double *y, const float *x, const int32_t *pos, int64_t ntok, int H, int d, int nt, int nh) {
    for (int64_t t = 0; t < ntok; t++)
        for (int h = 0; h < H; h++)
            for (int j = 0; j < d / 2; j++) {
                int a = j < nt ? 0 : (j < nt + nh ? 1 : 2);
                int jj = a == 0 ? j : (a == 1 ? j - nt : j - nt - nh), dim = a == 0 ? 2 * nt : 2 * nh;
                double th = pos[3 * t + a] * pow(10000.0, -2.0 * jj / dim);
                const float *xv = x + (t * H + h) * d;
                y[(t * H + h) * d + 2 * j] = xv[2 * j] * cos(th) - xv[2 * j + 1] * sin(th);
                y[(t * H + h) * d + 2 * j + 1] = xv[2 * j] * sin(th) + xv[2 * j + 1] * cos(th);
            }
}

static double rope_loss(void *p) {
    ctx_t *k = p;
    be->rope_fwd(k->y, k->x, k->pos, k->rope, k->N, k->H);
    return tu_cot(k->c, k->y, k->N * k->H * k->d);
}

static void test_rope(int d, int nt, int nh) {
    int64_t ntok = 50;
    int H = 3;
    int64_t n = ntok * H * d;
    int32_t *pos = tu_calloc(3 * ntok, sizeof(int32_t));
    for (int64_t i = 0; i < 3 * ntok; i++) pos[i] = (int32_t)(i < 6 ? 1023 - i : tu_randint(&rng, 1024));
    osp_rope *r = be->rope_init(d, 1024, 10000.0);
    ctx_t c = {.N = ntok, .H = H, .d = d, .pos = pos, .rope = r};
    c.x = tu_randn(&rng, n, 1.0);
    c.y = tu_calloc(n, sizeof(float));
    c.c = tu_randn(&rng, n, 1.0);
    double *yr = tu_calloc(n, sizeof(double));
    rope_ref(yr, c.x, pos, ntok, H, d, nt, nh);
    rope_loss(&c);
    char nm[80];
    snprintf(nm, sizeof nm, "rope d=%d split %d/%d/%d fwd vs f64", d, 2 * nt, 2 * nh, 2 * nh);
    tu_check(nm, tu_rel_err_fd(c.y, yr, n), FWD_TOL);
    float *ip = tu_dup(c.x, n);
    be->rope_fwd(ip, ip, pos, r, ntok, H); /* y may alias x */
    TU_EXPECT(tu_bitdiff(ip, c.y, n) == 0, "rope_fwd in place differs");
    /* transpose: <R x, y> == <x, R^T y> */
    float *yy = tu_randn(&rng, n, 1.0), *rty = tu_calloc(n, sizeof(float));
    be->rope_bwd(rty, yy, pos, r, ntok, H);
    double lhs = tu_dot_ff(c.y, yy, n), rhs = tu_dot_ff(c.x, rty, n);
    snprintf(nm, sizeof nm, "rope d=%d <Rx,y> vs <x,R^T y>", d);
    tu_check(nm, fabs(lhs - rhs) / (tu_norm_f(c.y, n) * tu_norm_f(yy, n)), 1e-6);
    /* bwd accumulates; in place (dx == dy) it overwrites */
    float *g0, *dx = prefilled(n, &g0), *al = tu_dup(c.c, n), *fresh = tu_calloc(n, sizeof(float));
    be->rope_bwd(fresh, c.c, pos, r, ntok, H);
    be->rope_bwd(al, al, pos, r, ntok, H);
    be->rope_bwd(dx, c.c, pos, r, ntok, H);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad += dx[i] != g0[i] + fresh[i];
    TU_EXPECT(bad == 0 && tu_bitdiff(al, fresh, n) == 0, "rope_bwd accumulate/alias (%d)", bad);
    snprintf(nm, sizeof nm, "rope d=%d dx", d);
    tu_fd_check(nm, c.x, n, fresh, rope_loss, &c, FD_H, FD_TOL, &rng, 3, 4);
    be->rope_free(r);
    free(pos), free(c.x), free(c.y), free(c.c), free(yr), free(ip), free(yy), free(rty), free(dx), free(g0), free(al),
        free(fresh);
}

/* ------------------------------------------------------------------ attention */

/* float64 reference over [R,Nq,H*d] / [Rkv,Nk,H*d] with a key mask kvalid [Rkv,Nk] */
static void attn_ref(double *o, double *lse, double *dq, double *dk, double *dv, const float *dout, const float *q,
                     const float *k, const float *v, const uint8_t *kvalid, int64_t R, int64_t Rkv, int64_t Nq,
                     int64_t Nk, int H, int d) {
    int64_t HD = (int64_t)H * d;
    double *ob = tu_calloc(Nq * d, sizeof(double)), *qb = tu_calloc(Nq * d, sizeof(double));
    double *kb = tu_calloc(Nk * d, sizeof(double)), *vb = tu_calloc(Nk * d, sizeof(double));
    for (int64_t r = 0; r < R; r++)
        for (int h = 0; h < H; h++) {
            int64_t rk = r % Rkv;
            const float *Q = q + r * Nq * HD + h * d, *K = k + rk * Nk * HD + h * d, *V = v + rk * Nk * HD + h * d;
            const uint8_t *m = kvalid ? kvalid + rk * Nk : NULL;
            if (o) {
                tu_attn_ref_fwd(ob, lse ? lse + (r * H + h) * Nq : NULL, Q, HD, K, V, HD, Nq, Nk, d, m, 0);
                for (int64_t i = 0; i < Nq; i++) memcpy(o + (r * Nq + i) * HD + h * d, ob + i * d, sizeof(double) * d);
            }
            if (dq || dk || dv) {
                memset(qb, 0, sizeof(double) * Nq * d);
                memset(kb, 0, sizeof(double) * Nk * d);
                memset(vb, 0, sizeof(double) * Nk * d);
                tu_attn_ref_bwd(qb, kb, vb, dout + r * Nq * HD + h * d, Q, HD, K, V, HD, Nq, Nk, d, m, 0);
                for (int64_t i = 0; i < Nq; i++)
                    for (int c = 0; c < d; c++) dq[(r * Nq + i) * HD + h * d + c] += qb[i * d + c];
                for (int64_t j = 0; j < Nk; j++)
                    for (int c = 0; c < d; c++) {
                        dk[(rk * Nk + j) * HD + h * d + c] += kb[j * d + c];
                        dv[(rk * Nk + j) * HD + h * d + c] += vb[j * d + c];
                    }
            }
        }
    free(ob), free(qb), free(kb), free(vb);
}

static double attn_loss(void *p) {
    ctx_t *a = p;
    be->attn_fwd(a->y, a->lse, a->x, a->k, a->v, a->valid, a->R, a->Rkv, a->N, a->Nk, a->H, a->d);
    return tu_cot(a->c, a->y, a->R * a->N * a->H * a->d);
}

/* mask: 0 none; 1 = kv row 0 random 70%, kv row 1 all masked, kv row 2 first 256 keys
 * masked (a whole key tile) and the rest random 50% */
static void test_attention(int64_t R, int64_t Rkv, int64_t Nq, int64_t Nk, int H, int d, int mask, int fd) {
    int64_t HD = (int64_t)H * d, nq = R * Nq * HD, nk = Rkv * Nk * HD;
    ctx_t a = {.R = R, .Rkv = Rkv, .N = Nq, .Nk = Nk, .H = H, .d = d};
    a.x = tu_randn(&rng, nq, 1.5);
    a.k = tu_randn(&rng, nk, 1.0);
    a.v = tu_randn(&rng, nk, 1.0);
    a.c = tu_randn(&rng, nq, 1.0);
    a.y = tu_calloc(nq, sizeof(float));
    a.lse = tu_calloc(R * H * Nq, sizeof(float));
    uint8_t *valid = NULL;
    if (mask) {
        valid = tu_calloc(Rkv * Nk, 1);
        for (int64_t rk = 0; rk < Rkv; rk++)
            for (int64_t j = 0; j < Nk; j++)
                valid[rk * Nk + j] = rk % 3 == 0 ? tu_uniform(&rng) < 0.7 : rk % 3 == 1 ? 0 : (j >= 256 && (j % 2));
        a.valid = valid;
    }
    double *oref = tu_calloc(nq, sizeof(double)), *lr = tu_calloc(R * H * Nq, sizeof(double));
    double *dqr = tu_calloc(nq, sizeof(double)), *dkr = tu_calloc(nk, sizeof(double)), *dvr = tu_calloc(nk, sizeof(double));
    attn_ref(oref, lr, dqr, dkr, dvr, a.c, a.x, a.k, a.v, valid, R, Rkv, Nq, Nk, H, d);
    attn_loss(&a);
    char nm[120], cfg[80];
    snprintf(cfg, sizeof cfg, "R=%lld Rkv=%lld Nq=%lld Nk=%lld H=%d d=%d%s", (long long)R, (long long)Rkv, (long long)Nq,
             (long long)Nk, H, d, mask ? " mask" : "");
    snprintf(nm, sizeof nm, "attn fwd %s", cfg);
    tu_check(nm, tu_rel_err_fd(a.y, oref, nq), 1e-5);
    double lerr = 0;
    int lbad = 0, zbad = 0;
    for (int64_t i = 0; i < R * H * Nq; i++) {
        if (isinf(lr[i]))
            lbad += !(isinf(a.lse[i]) && a.lse[i] < 0);
        else
            lerr = fmax(lerr, fabs(a.lse[i] - lr[i]));
    }
    for (int64_t i = 0; i < nq; i++) zbad += oref[i] == 0 && a.y[i] != 0; /* empty rows exactly 0 */
    TU_EXPECT(lbad == 0 && zbad == 0, "attn %s: %d lse not -inf, %d nonzero outputs of empty rows", cfg, lbad, zbad);
    snprintf(nm, sizeof nm, "attn lse max abs err %s", cfg);
    tu_check(nm, lerr, 1e-5);
    float *g0q, *g0k, *g0v, *dq = prefilled(nq, &g0q), *dk = prefilled(nk, &g0k), *dv = prefilled(nk, &g0v);
    be->attn_bwd(dq, dk, dv, a.c, a.y, a.lse, a.x, a.k, a.v, valid, R, Rkv, Nq, Nk, H, d);
    unfill(dq, g0q, nq), unfill(dk, g0k, nk), unfill(dv, g0v, nk);
    snprintf(nm, sizeof nm, "attn dq vs f64 %s", cfg);
    tu_check(nm, tu_rel_err_fd(dq, dqr, nq), 1e-4);
    snprintf(nm, sizeof nm, "attn dk vs f64 %s", cfg);
    tu_check(nm, tu_rel_err_fd(dk, dkr, nk), 1e-4);
    snprintf(nm, sizeof nm, "attn dv vs f64 %s", cfg);
    tu_check(nm, tu_rel_err_fd(dv, dvr, nk), 1e-4);
    if (fd) {
        snprintf(nm, sizeof nm, "attn dq %s", cfg);
        tu_fd_check(nm, a.x, nq, dq, attn_loss, &a, FD_H, FD_TOL, &rng, 2, 4);
        snprintf(nm, sizeof nm, "attn dk %s", cfg);
        tu_fd_check(nm, a.k, nk, dk, attn_loss, &a, FD_H, FD_TOL, &rng, 2, 4);
        snprintf(nm, sizeof nm, "attn dv %s", cfg);
        tu_fd_check(nm, a.v, nk, dv, attn_loss, &a, FD_H, FD_TOL, &rng, 2, 4);
    }
    free(a.x), free(a.k), free(a.v), free(a.c), free(a.y), free(a.lse), free(valid), free(oref), free(lr), free(dqr),
        free(dkr), free(dvr), free(dq), free(dk), free(dv), free(g0q), free(g0k), free(g0v);
}

static long max_rss_kib(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

/* 8192 tokens: tiled, so peak memory must not grow by anything near N*N*4 = 256 MiB */
static void test_attention_long(void) {
    int64_t N = 8192;
    int H = 2, d = 64, HD = H * d;
    float *q = tu_randn(&rng, N * HD, 1.5), *k = tu_randn(&rng, N * HD, 1.0), *v = tu_randn(&rng, N * HD, 1.0);
    float *o = tu_calloc(N * HD, sizeof(float)), *lse = tu_calloc(H * N, sizeof(float));
    uint8_t *valid = tu_calloc(N, 1);
    for (int64_t j = 0; j < N; j++) valid[j] = tu_uniform(&rng) < 0.9;
    long rss0 = max_rss_kib();
    double t0 = omp_get_wtime();
    be->attn_fwd(o, lse, q, k, v, valid, 1, 1, N, N, H, d);
    double t1 = omp_get_wtime();
    long grow = max_rss_kib() - rss0;
    printf("     attn 8192 tokens, 2x64: %.2f s, peak RSS growth %ld KiB\n", t1 - t0, grow);
    tu_check("attn 8192 peak RSS growth (MiB, N*N would be 256)", grow / 1024.0, 32.0);
    int64_t rows[] = {0, 1, 63, 64, 255, 256, 4097, 8191};
    double worst = 0, ob[64];
    for (int i = 0; i < 8; i++)
        for (int h = 0; h < H; h++) {
            tu_attn_ref_fwd(ob, NULL, q + rows[i] * HD + h * d, HD, k + h * d, v + h * d, HD, 1, N, d, valid, 0);
            worst = fmax(worst, tu_rel_err_fd(o + rows[i] * HD + h * d, ob, d));
        }
    tu_check("attn 8192 sampled rows vs f64 (worst row)", worst, 1e-5);
    free(q), free(k), free(v), free(o), free(lse), free(valid);
}

/* ------------------------------------------------------------------ layouts */

static void test_gather_scatter(void) {
    int64_t M = 50, n = 40;
    int D = 7;
    int32_t *idx = tu_calloc(n, sizeof(int32_t)), perm[50];
    for (int i = 0; i < M; i++) perm[i] = i;
    for (int i = (int)M - 1; i > 0; i--) {
        int j = (int)tu_randint(&rng, i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int64_t i = 0; i < n; i++) idx[i] = i % 7 == 3 ? -1 : perm[i]; /* injective, with holes */
    float *x = tu_randn(&rng, M * D, 1.0), *gx = tu_randn(&rng, n * D, 1.0); /* garbage must be overwritten */
    float *y = tu_randn(&rng, n * D, 1.0), *base = tu_randn(&rng, M * D, 1.0), *sy = tu_dup(base, M * D);
    be->gather_rows(gx, x, idx, n, D);
    be->scatter_add_rows(sy, y, idx, n, D);
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < D; c++) bad += gx[i * D + c] != (idx[i] < 0 ? 0.0f : x[idx[i] * D + c]);
    TU_EXPECT(bad == 0, "gather_rows: %d wrong values", bad);
    bad = 0;
    float *sr = tu_dup(base, M * D);
    for (int64_t i = 0; i < n; i++)
        if (idx[i] >= 0)
            for (int c = 0; c < D; c++) sr[idx[i] * D + c] += y[i * D + c];
    TU_EXPECT(tu_bitdiff(sy, sr, M * D) == 0, "scatter_add_rows accumulate");
    unfill(sy, base, M * D);
    double lhs = tu_dot_ff(gx, y, n * D), rhs = tu_dot_ff(x, sy, M * D);
    tu_check("gather/scatter adjoint <Gx,y> vs <x,G^T y>", fabs(lhs - rhs) / fabs(lhs), 1e-6);
    free(idx), free(x), free(gx), free(y), free(base), free(sy), free(sr);
}

/* gate_res_fwd with a layout move fused in must equal the residual followed by gather_rows, bit
 * for bit (wan.c relies on it: the fused form replaced the two passes); rows of several samples */
static void test_gate_res_move(void) {
    int64_t R = 8, N = 6, M = R * N, nout = M + 5;
    int D = 5, B = 2;
    int64_t stride = 6 * D;
    int32_t *idx = tu_calloc(nout, sizeof(int32_t));
    for (int64_t j = 0; j < nout; j++) idx[j] = j % 6 == 2 ? -1 : (int32_t)((j * 31) % M);
    float *x = tu_randn(&rng, M * D, 1.0), *y = tu_randn(&rng, M * D, 1.0), *mod = tu_randn(&rng, B * stride, 1.0);
    float *tmp = tu_randn(&rng, M * D, 1.0), *ref = tu_randn(&rng, nout * D, 1.0), *out = tu_randn(&rng, nout * D, 1.0);
    be->gate_res_fwd(tmp, x, y, mod + 2 * D, NULL, 0, R, N, D, B, stride);
    be->gather_rows(ref, tmp, idx, nout, D);
    be->gate_res_fwd(out, x, y, mod + 2 * D, idx, nout, R, N, D, B, stride);
    TU_EXPECT(tu_bitdiff(out, ref, nout * D) == 0, "gate_res_fwd with a move differs from residual + gather");
    be->gate_res_fwd(x, x, y, mod + 2 * D, NULL, 0, R, N, D, B, stride); /* in place */
    TU_EXPECT(tu_bitdiff(x, tmp, M * D) == 0, "gate_res_fwd in place differs from out of place");
    printf("ok   gate_res_fwd: fused move = residual + gather, in place = out of place (bitwise)\n");
    free(idx), free(x), free(y), free(mod), free(tmp), free(ref), free(out);
}

/* patch_map vs the literal feature orders of docs/model.md §3 (c,pt,ph,pw) and §6 (pt,ph,pw,c) */
static void test_patch_map(int B, int C, int T, int Hs, int Ws, int pt, int ph, int pw) {
    int f = T / pt, hh = Hs / ph, ww = Ws / pw, F = C * pt * ph * pw;
    int64_t nv = (int64_t)B * C * T * Hs * Ws, ntk = (int64_t)B * f * hh * ww * F;
    TU_EXPECT(nv == ntk, "patch grid must tile the video");
    float *vid = tu_randn(&rng, nv, 1.0), *tok = tu_randn(&rng, ntk, 1.0), *vid2 = tu_calloc(nv, sizeof(float));
    for (int cf = 0; cf < 2; cf++) {
        be->patch_map(tok, vid, B, C, T, Hs, Ws, pt, ph, pw, cf, true);
        int bad = 0;
        for (int b = 0; b < B; b++)
            for (int fi = 0; fi < f; fi++)
                for (int hi = 0; hi < hh; hi++)
                    for (int wi = 0; wi < ww; wi++) {
                        int64_t n = ((int64_t)fi * hh + hi) * ww + wi; /* (1) */
                        for (int c = 0; c < C; c++)
                            for (int kt = 0; kt < pt; kt++)
                                for (int kh = 0; kh < ph; kh++)
                                    for (int kw = 0; kw < pw; kw++) {
                                        int fe = cf ? c * pt * ph * pw + kt * ph * pw + kh * pw + kw
                                                    : ((kt * ph + kh) * pw + kw) * C + c;
                                        float z = vid[((((int64_t)b * C + c) * T + fi * pt + kt) * Hs + hi * ph + kh) * Ws +
                                                      wi * pw + kw];
                                        bad += tok[((int64_t)b * f * hh * ww + n) * F + fe] != z;
                                    }
                    }
        char nm[100];
        snprintf(nm, sizeof nm, "patch_map %s C=%d p=%dx%dx%d to_tokens order (wrong values)",
                 cf ? "c_first(2)" : "c_last(21)", C, pt, ph, pw);
        tu_check(nm, bad, 0);
        be->patch_map(tok, vid2, B, C, T, Hs, Ws, pt, ph, pw, cf, false);
        snprintf(nm, sizeof nm, "patch_map %s round trip (differing values)", cf ? "c_first" : "c_last");
        tu_check(nm, (double)tu_bitdiff(vid2, vid, nv), 0);
    }
    free(vid), free(tok), free(vid2);
}

/* ------------------------------------------------------------------ losses, optimizer */

static double mse_loss(void *p) {
    ctx_t *k = p;
    return be->mse(NULL, k->x, k->y, k->N, 1.0f) * k->eps;
}

static void test_losses_optim(void) {
    int64_t n = 1000;
    ctx_t c = {.N = n, .eps = 0.7f};
    c.x = tu_randn(&rng, n, 1.0);
    c.y = tu_randn(&rng, n, 1.0);
    float *dp = tu_calloc(n, sizeof(float));
    double s = 0, ss = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = (double)c.x[i] - c.y[i];
        s += e * e;
        ss += (double)c.x[i] * c.x[i];
        mx = fmax(mx, fabs(c.x[i]));
    }
    double v = be->mse(dp, c.x, c.y, n, c.eps);
    tu_check("mse value vs f64", fabs(v - s / n) / (s / n), 1e-12);
    double *gr = tu_calloc(n, sizeof(double));
    for (int64_t i = 0; i < n; i++) gr[i] = 0.7 * 2.0 * ((double)c.x[i] - c.y[i]) / n;
    tu_check("mse grad vs f64", tu_rel_err_fd(dp, gr, n), FWD_TOL);
    tu_fd_check("mse dpred", c.x, n, dp, mse_loss, &c, FD_H, FD_TOL, &rng, 3, 4);
    tu_check("sumsq vs f64", fabs(be->sumsq(c.x, n) - ss) / ss, 1e-12);
    c.x[517] = -4.75f; /* a negative largest magnitude */
    TU_EXPECT(be->absmax(c.x, n) == 4.75f && mx < 4.75, "absmax %g", be->absmax(c.x, n));

    /* AdamW step t = 3 with nonzero moments, gradient scale and decoupled decay; a second
     * run with a large eps pins where eps enters (outside the sqrt) */
    float *p = tu_randn(&rng, n, 1.0), *g = tu_randn(&rng, n, 1.0), *m = tu_calloc(n, 4), *vv = tu_calloc(n, 4);
    float *p0 = tu_dup(p, n), *m0 = tu_randn(&rng, n, 0.1), *v0 = tu_randn(&rng, n, 0.1), *uf = tu_calloc(n, 4);
    for (int64_t i = 0; i < n; i++) v0[i] = v0[i] * v0[i] + (i % 10 == 0 ? 0.0f : 1e-4f);
    double *pr = tu_calloc(n, sizeof(double)), *mr = tu_calloc(n, sizeof(double)), *vr = tu_calloc(n, sizeof(double));
    double *ur = tu_calloc(n, sizeof(double));
    for (int run = 0; run < 2; run++) {
        float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = run ? 1e-3f : 1e-8f, wd = 0.1f, gs = 0.5f;
        float bc1 = 1.0f - powf(b1, 3), bc2 = 1.0f - powf(b2, 3);
        memcpy(p, p0, 4 * n), memcpy(m, m0, 4 * n), memcpy(vv, v0, 4 * n);
        be->adamw(p, g, m, vv, n, lr, b1, b2, eps, wd, bc1, bc2, gs);
        for (int64_t i = 0; i < n; i++) {
            double gi = (double)g[i] * gs;
            mr[i] = (double)b1 * m0[i] + (1.0 - b1) * gi;
            vr[i] = (double)b2 * v0[i] + (1.0 - b2) * gi * gi;
            /* torch.optim.AdamW order: decay first, then the Adam step (same value) */
            pr[i] = (double)p0[i] * (1.0 - (double)lr * wd) - (double)lr * (mr[i] / bc1) / (sqrt(vr[i] / bc2) + eps);
            ur[i] = pr[i] - p0[i];
            uf[i] = p[i] - p0[i];
        }
        char nm[64];
        snprintf(nm, sizeof nm, "adamw eps=%g m, v, p vs f64 (worst)", eps);
        tu_check(nm, fmax(fmax(tu_rel_err_fd(m, mr, n), tu_rel_err_fd(vv, vr, n)), tu_rel_err_fd(p, pr, n)), FWD_TOL);
        snprintf(nm, sizeof nm, "adamw eps=%g update p'-p vs f64", eps);
        tu_check(nm, tu_rel_err_fd(uf, ur, n), 1e-4);
    }
    float *e = tu_randn(&rng, n, 1.0), *e0 = tu_dup(e, n);
    be->ema(e, p, n, 0.99f);
    for (int64_t i = 0; i < n; i++) pr[i] = 0.99 * e0[i] + (1.0 - 0.99) * p[i];
    tu_check("ema vs f64", tu_rel_err_fd(e, pr, n), FWD_TOL);
    free(c.x), free(c.y), free(dp), free(gr), free(p), free(g), free(m), free(vv), free(p0), free(m0), free(v0);
    free(pr), free(mr), free(vr), free(ur), free(uf), free(e), free(e0);
}

/* ------------------------------------------------------------------ determinism */

/* All gradient outputs of the five reducing backwards, concatenated, for `omp` OpenMP
 * threads. seg[] receives the 13 segment start offsets. */
#define DET_NSEG 13
static const char *det_names[DET_NSEG] = {"linear dx",      "linear dW",     "linear db",   "layernorm dx", "layernorm dw",
                                          "layernorm db",   "ln_mod dx",     "ln_mod dshift,dscale", "gate_res dy",
                                          "gate_res dgate", "attn dq",       "attn dk",     "attn dv"};
static float *det_run(int omp, int64_t seg[DET_NSEG + 1]) {
    omp_set_num_threads(omp);
    tu_rng r = {777};
    int64_t N = 1000, R = 8, Nt = 125, Nq = 300, Rkv = 4;
    int D = 64, O = 48, B = 2, H = 2, d = 32, HD = 64;
    int64_t na = N * D, nq = R * Nq * HD, nk = Rkv * Nq * HD;
    int64_t len[DET_NSEG] = {na, (int64_t)O * D, O, na, D, D, na, 2 * D * B, na, D * B, nq, nk, nk};
    seg[0] = 0;
    for (int i = 0; i < DET_NSEG; i++) seg[i + 1] = seg[i] + len[i];
    float *out = tu_calloc(seg[DET_NSEG], sizeof(float)), *p[DET_NSEG];
    for (int i = 0; i < DET_NSEG; i++) p[i] = out + seg[i];
    float *x = tu_randn(&r, na, 1.0), *dy = tu_randn(&r, na, 1.0), *W = tu_randn(&r, (int64_t)O * D, 0.2);
    float *dyo = tu_randn(&r, N * O, 1.0), *w = tu_randn(&r, D, 1.0), *mean = tu_calloc(N, 4), *rstd = tu_calloc(N, 4);
    float *y = tu_calloc(na, 4), *mod = tu_randn(&r, 2 * D * B, 0.5);
    be->linear_bwd(p[0], p[1], p[2], dyo, x, W, N, D, O);
    be->layernorm_fwd(y, mean, rstd, x, w, w, N, D, 1e-6f);
    be->layernorm_bwd(p[3], p[4], p[5], dy, x, mean, rstd, w, N, D);
    /* ln_mod: shift/scale interleaved per sample (stride 2D), grads likewise */
    be->ln_mod_fwd(y, mean, rstd, x, mod, mod + D, R, Nt, D, B, 2 * D, 1e-6f);
    be->ln_mod_bwd(p[6], p[7], p[7] + D, dy, x, mean, rstd, mod + D, R, Nt, D, B, 2 * D);
    be->gate_res_bwd(p[8], p[9], dy, x, mod, R, Nt, D, B, D);
    float *q = tu_randn(&r, nq, 1.5), *k = tu_randn(&r, nk, 1), *v = tu_randn(&r, nk, 1), *dO = tu_randn(&r, nq, 1);
    float *o = tu_calloc(nq, 4), *lse = tu_calloc(R * H * Nq, 4);
    uint8_t *kv = tu_calloc(Rkv * Nq, 1);
    for (int64_t i = 0; i < Rkv * Nq; i++) kv[i] = tu_uniform(&r) < 0.8;
    be->attn_fwd(o, lse, q, k, v, kv, R, Rkv, Nq, Nq, H, d);
    be->attn_bwd(p[10], p[11], p[12], dO, o, lse, q, k, v, kv, R, Rkv, Nq, Nq, H, d);
    free(x), free(dy), free(W), free(dyo), free(w), free(mean), free(rstd), free(y), free(mod), free(q), free(k),
        free(v), free(o), free(lse), free(dO), free(kv);
    return out;
}

/* number of differing values of b vs a; names the segments that differ */
static int64_t det_compare(const char *what, const float *a, const float *b, const int64_t *seg) {
    TU_EXPECT(tu_norm_f(a, seg[DET_NSEG]) > 0, "determinism outputs all zero");
    for (int i = 0; i < DET_NSEG; i++) {
        int64_t di = tu_bitdiff(a + seg[i], b + seg[i], seg[i + 1] - seg[i]);
        if (di)
            printf("     %s: %s differs in %lld of %lld values (rel %.2e)\n", what, det_names[i], (long long)di,
                   (long long)(seg[i + 1] - seg[i]), tu_rel_err_ff(b + seg[i], a + seg[i], seg[i + 1] - seg[i]));
    }
    return tu_bitdiff(a, b, seg[DET_NSEG]);
}

/* Runs first: main set 2 OpenBLAS threads BEFORE fetching the backend, as
 * OPENBLAS_NUM_THREADS=2 or OMP_NUM_THREADS=2 (a pthread OpenBLAS reads both) would. The
 * backend must give the same bits as with 1 BLAS thread, and for 1 vs 2 OpenMP threads. */
static void test_determinism(void) {
    int64_t seg[DET_NSEG + 1];
    float *a = det_run(1, seg), *b = det_run(2, seg);
    tu_check("bwd bit-identical, OpenMP 1 vs 2 threads (#diff)", (double)det_compare("omp 2", a, b, seg), 0);
    openblas_set_num_threads(1);
    float *c = det_run(1, seg);
    tu_check("bwd bit-identical, BLAS threads preset 2 vs 1 (#diff)", (double)det_compare("blas 1", a, c, seg), 0);
    free(a), free(b), free(c);
    omp_set_num_threads(2);
}

int main(void) {
    double t0 = omp_get_wtime();
    openblas_set_num_threads(2); /* before the backend exists: see test_determinism */
    be = osp_backend_cpu();
    test_determinism();
    /* A threaded OpenBLAS called from the OpenMP loops of the attention kernels
     * oversubscribes the cores (~7x slower at 8192 tokens): keep it single-threaded even
     * if the backend did not. */
    openblas_set_num_threads(1);
    test_attention_long(); /* early, so the RSS measurement starts from a low peak */
    test_linear(1);
    test_linear(0);
    test_rowop(0, 1, 23, 48, 0, 1); /* layernorm with affine */
    test_rowop(0, 1, 23, 48, 0, 0); /* layernorm without */
    test_rowop(1, 2, 5, 32, 2, 0);  /* ln_mod R = B */
    test_rowop(1, 8, 5, 32, 2, 0);  /* ln_mod R = 4B */
    test_rowop(2, 1, 17, 40, 0, 0); /* rmsnorm */
    test_rowop(3, 1, 1000, 1, 0, 0);
    test_rowop(4, 1, 1000, 1, 0, 0);
    test_rowop(5, 2, 5, 24, 2, 0); /* gate_res R = B */
    test_rowop(5, 8, 5, 24, 2, 0); /* gate_res R = 4B */
    test_misc_elementwise();
    test_rope(128, 22, 21);
    test_rope(32, 6, 5);
    test_attention(6, 3, 70, 300, 2, 32, 1, 1);
    test_attention(2, 2, 130, 70, 2, 128, 0, 1);
    test_attention(4, 1, 70, 300, 1, 128, 1, 0);
    test_gather_scatter();
    test_gate_res_move();
    test_patch_map(2, 16, 3, 4, 6, 1, 2, 2);
    test_patch_map(2, 3, 4, 6, 8, 2, 2, 2);
    test_losses_optim();
    printf("time %.1f s\n", omp_get_wtime() - t0);
    return tu_summary("test_ops_cpu");
}
