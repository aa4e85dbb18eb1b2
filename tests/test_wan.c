/*
 * test_wan.c — whole-model checks of the Wan DiT on the CPU backend:
 *  - finite-difference gradient checks of a tiny model (full, hybrid with padding, and
 *    hybrid with HiF8-free recomputation) for random parameter directions and single
 *    coordinates, latents and text;
 *  - hybrid with num_full_blocks == num_layers equals full mode bit for bit;
 *  - activation recomputation gives bit-identical outputs and gradients;
 *  - a HiF8-quantised model runs forward/backward with finite results and differs from
 *    the unquantised one by a quantisation-sized amount.
 * The head weight is zero at Wan init, so tests draw all weights at random (docs/model.md §7).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "model/wan.h"

#include "tests/testutil.h"
#define EXPECT TU_EXPECT /* one failure counter for all C tests: tu_nfail */

static uint64_t rs = 12345;
static double urand(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0;
}
static float nrand(void) {
    double u = urand() + 1e-12, v = urand();
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307 * v));
}

typedef struct {
    wan_config c;
    int B, T, H, W;
    int64_t nlat, nout, ntext;
    float *lat, *t, *text, *R;
} case_t;

static wan_config tiny(bool hybrid, int K, bool recompute) {
    wan_config c;
    memset(&c, 0, sizeof c);
    c.dim = 24, c.ffn_dim = 40, c.num_heads = 2, c.num_layers = 4;
    c.in_channels = 3, c.out_channels = 3, c.text_dim = 8, c.text_len = 5, c.freq_dim = 16;
    c.patch[0] = 1, c.patch[1] = 2, c.patch[2] = 2;
    c.eps = 1e-6f;
    c.recompute = recompute;
    c.hybrid = hybrid, c.sparse_ratio = 2, c.num_full_blocks = K;
    return c;
}

static void make_case(case_t *k, wan_config c, int B, int T, int H, int W) {
    k->c = c, k->B = B, k->T = T, k->H = H, k->W = W;
    k->nlat = (int64_t)B * c.in_channels * T * H * W;
    k->nout = (int64_t)B * c.out_channels * T * H * W;
    k->ntext = (int64_t)B * c.text_len * c.text_dim;
    k->lat = osp_malloc(sizeof(float) * k->nlat);
    k->R = osp_malloc(sizeof(float) * k->nout);
    k->text = osp_malloc(sizeof(float) * k->ntext);
    k->t = osp_malloc(sizeof(float) * B);
    for (int64_t i = 0; i < k->nlat; i++) k->lat[i] = nrand();
    for (int64_t i = 0; i < k->nout; i++) k->R[i] = nrand();
    for (int64_t i = 0; i < k->ntext; i++) k->text[i] = nrand();
    for (int b = 0; b < B; b++) k->t[b] = (float)(1000 * urand());
}

static wan_model *make_model(const wan_config *c, const float *params) {
    wan_model *m = wan_init(c, osp_backend_cpu());
    int64_t n = wan_arena_floats(m);
    if (params) memcpy(wan_params(m), params, sizeof(float) * n);
    return m;
}

/* loss = sum(out * R) in double */
static double loss_of(wan_model *m, case_t *k, float *out) {
    wan_set_shape(m, k->B, k->T, k->H, k->W);
    wan_forward(m, k->lat, k->t, k->text, out);
    double s = 0;
    for (int64_t i = 0; i < k->nout; i++) s += (double)out[i] * k->R[i];
    return s;
}

static float *random_params(const wan_config *c) {
    wan_model *m = wan_init(c, osp_backend_cpu());
    int64_t n = wan_arena_floats(m);
    float *p = osp_malloc(sizeof(float) * n);
    memset(p, 0, sizeof(float) * n);
    for (int i = 0; i < wan_param_count(m); i++) {
        const wan_param_info *pi = wan_param(m, i);
        float sc = pi->ndim >= 2 ? 1.0f / sqrtf((float)(pi->numel / pi->shape[0])) : 0.3f;
        for (int64_t j = 0; j < pi->numel; j++) p[pi->offset + j] = sc * nrand() + (strstr(pi->name, "norm") ? 1.0f : 0);
    }
    wan_free(m);
    return p;
}

static void fd_check(const char *label, const wan_config *c, case_t *k, const float *params) {
    wan_model *m = make_model(c, params);
    int64_t n = wan_arena_floats(m);
    float *out = osp_malloc(sizeof(float) * k->nout);
    float *dlat = osp_malloc(sizeof(float) * k->nlat), *dtext = osp_malloc(sizeof(float) * k->ntext);
    loss_of(m, k, out);
    wan_zero_grads(m);
    wan_backward(m, k->R, dlat, dtext);
    float *g = osp_malloc(sizeof(float) * n);
    memcpy(g, wan_grads(m), sizeof(float) * n);
    float *p = wan_params(m);
    /* directional derivatives along random directions of all parameters */
    float *u = osp_malloc(sizeof(float) * n);
    double worst = 0;
    for (int trial = 0; trial < 3; trial++) {
        double gu = 0;
        for (int64_t i = 0; i < n; i++) {
            u[i] = nrand();
            gu += (double)g[i] * u[i];
        }
        double h = 1e-3;
        for (int64_t i = 0; i < n; i++) p[i] = params[i] + (float)h * u[i];
        double lp = loss_of(m, k, out);
        for (int64_t i = 0; i < n; i++) p[i] = params[i] - (float)h * u[i];
        double lm = loss_of(m, k, out);
        memcpy(p, params, sizeof(float) * n);
        double fd = (lp - lm) / (2 * h), rel = fabs(fd - gu) / (fabs(gu) + 1e-6);
        if (rel > worst) worst = rel;
    }
    EXPECT(worst < 2e-2, "%s: directional FD rel err %.3e (tol 2e-2)", label, worst);
    /* single coordinates of every parameter tensor (the largest-gradient entry) */
    int bad = 0;
    double wc = 0;
    for (int i = 0; i < wan_param_count(m); i++) {
        const wan_param_info *pi = wan_param(m, i);
        int64_t j = pi->offset;
        for (int64_t q = pi->offset; q < pi->offset + pi->numel; q++)
            if (fabsf(g[q]) > fabsf(g[j])) j = q;
        if (fabsf(g[j]) < 1e-4f) continue;
        double h = 1e-2 * (fabs(params[j]) > 1 ? fabs(params[j]) : 1);
        p[j] = params[j] + (float)h;
        double lp = loss_of(m, k, out);
        p[j] = params[j] - (float)h;
        double lm = loss_of(m, k, out);
        p[j] = params[j];
        double fd = (lp - lm) / (2 * h), rel = fabs(fd - g[j]) / (fabs(g[j]) + 1e-3);
        if (rel > wc) wc = rel;
        if (rel > 5e-2) {
            printf("  %s: %s[%lld] grad %.6g fd %.6g\n", label, pi->name, (long long)(j - pi->offset), g[j], fd);
            bad++;
        }
    }
    EXPECT(bad == 0, "%s: %d parameter tensors fail the coordinate FD check (tol 5e-2)", label, bad);
    /* input gradients: one latent and one text coordinate */
    int64_t il = (int64_t)(urand() * k->nlat), it = (int64_t)(urand() * k->ntext);
    float save = k->lat[il];
    double h = 1e-2;
    k->lat[il] = save + (float)h;
    double lp = loss_of(m, k, out);
    k->lat[il] = save - (float)h;
    double lm = loss_of(m, k, out);
    k->lat[il] = save;
    double el = fabs((lp - lm) / (2 * h) - dlat[il]) / (fabs(dlat[il]) + 1e-3);
    save = k->text[it];
    k->text[it] = save + (float)h;
    lp = loss_of(m, k, out);
    k->text[it] = save - (float)h;
    lm = loss_of(m, k, out);
    k->text[it] = save;
    double et = fabs((lp - lm) / (2 * h) - dtext[it]) / (fabs(dtext[it]) + 1e-3);
    EXPECT(el < 5e-2 && et < 5e-2, "%s: input FD rel err latents %.3e text %.3e", label, el, et);
    printf("%-34s directional %.2e  worst coordinate %.2e  latents %.2e  text %.2e\n", label, worst, wc, el, et);
    free(out), free(dlat), free(dtext), free(g), free(u);
    wan_free(m);
}

/* run forward+backward, return copies of out and grads */
static void run(const wan_config *c, case_t *k, const float *params, float **out, float **grads, int64_t *n) {
    wan_model *m = make_model(c, params);
    *n = wan_arena_floats(m);
    *out = osp_malloc(sizeof(float) * k->nout);
    loss_of(m, k, *out);
    wan_zero_grads(m);
    wan_backward(m, k->R, NULL, NULL);
    *grads = osp_malloc(sizeof(float) * *n);
    memcpy(*grads, wan_grads(m), sizeof(float) * *n);
    wan_free(m);
}

static double rel(const float *a, const float *b, int64_t n) {
    double d = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        s += (double)b[i] * b[i];
    }
    return sqrt(d / (s > 0 ? s : 1));
}

int main(void) {
    case_t k;
    wan_config full = tiny(false, 0, false);
    make_case(&k, full, 2, 2, 10, 12); /* 5x6 token grid: padded to 8x8 in the sparse region */
    float *params = random_params(&full);

    fd_check("full attention", &full, &k, params);
    wan_config hyb = tiny(true, 0, false);
    fd_check("hybrid P=2 K=0 (padded grid)", &hyb, &k, params);
    wan_config hybrc = tiny(true, 0, true);
    fd_check("hybrid P=2 K=0 + recompute", &hybrc, &k, params);

    /* the demo's layout: whole-clip tokens (patch 2x2x2 over T=2) + the sin-cos position table */
    {
        wan_config cp = tiny(true, 0, false);
        cp.patch[0] = 2, cp.pos_sincos = true;
        case_t kc;
        make_case(&kc, cp, 2, 2, 10, 12);
        float *pc = random_params(&cp);
        fd_check("hybrid, whole-clip patch + sin-cos positions", &cp, &kc, pc);
        free(pc);
        /* table: row (0,0,0) is (sin 0, cos 0) pairs; every (sin, cos) pair has unit norm; the
         * t features do not change with (y, x); rows of distinct positions differ */
        enum { F = 3, Hh = 4, Ww = 5, D = 26 }; /* D 26: t 10, h 8, w 8 features */
        float *tab = osp_malloc(sizeof(float) * F * Hh * Ww * D);
        wan_pos_table(tab, F, Hh, Ww, D);
        int ok0 = 1, unit = 1, tconst = 1, distinct = 1;
        for (int d = 0; d < D; d++) ok0 &= tab[d] == (d % 2 ? 1.0f : 0.0f);
        for (int r = 0; r < F * Hh * Ww; r++)
            for (int d = 0; d + 1 < D; d += 2)
                unit &= fabsf(tab[r * D + d] * tab[r * D + d] + tab[r * D + d + 1] * tab[r * D + d + 1] - 1) < 1e-6f;
        for (int t = 0; t < F; t++)
            for (int r = 1; r < Hh * Ww; r++)
                tconst &= !memcmp(tab + (t * Hh * Ww) * D, tab + (t * Hh * Ww + r) * D, sizeof(float) * 10);
        for (int a = 0; a < F * Hh * Ww; a++)
            for (int b = a + 1; b < F * Hh * Ww; b++) distinct &= memcmp(tab + a * D, tab + b * D, sizeof(float) * D) != 0;
        /* the slowest h pair (j = 3 of 4) at y = 1 is sin(100^(-6/8)) */
        float want = (float)sin(pow(100.0, -6.0 / 8.0));
        int freq = fabsf(tab[(1 * Ww) * D + 10 + 6] - want) < 1e-6f;
        EXPECT(ok0 && unit && tconst && distinct && freq,
               "sin-cos table: origin %d, unit pairs %d, t part constant over (y,x) %d, distinct rows %d, h freq %d",
               ok0, unit, tconst, distinct, freq);
        printf("sin-cos position table: origin row, unit pairs, per-axis split, distinct rows, frequencies ok\n");
        free(tab);
        free(kc.lat), free(kc.R), free(kc.text), free(kc.t);
    }

    float *o1, *g1, *o2, *g2;
    int64_t n;
    run(&full, &k, params, &o1, &g1, &n);
    wan_config hk = tiny(true, 4, false);
    run(&hk, &k, params, &o2, &g2, &n);
    EXPECT(!memcmp(o1, o2, sizeof(float) * k.nout) && !memcmp(g1, g2, sizeof(float) * n),
           "hybrid with K = num_layers must equal full mode bit for bit");
    printf("hybrid K=num_layers vs full: %s\n", memcmp(o1, o2, sizeof(float) * k.nout) ? "DIFFER" : "bit-identical");
    free(o2), free(g2);
    wan_config frc = tiny(false, 0, true);
    run(&frc, &k, params, &o2, &g2, &n);
    EXPECT(!memcmp(o1, o2, sizeof(float) * k.nout) && !memcmp(g1, g2, sizeof(float) * n),
           "recomputation must give bit-identical outputs and gradients");
    free(o2), free(g2);
    float *o3, *g3;
    run(&hyb, &k, params, &o2, &g2, &n);
    run(&hybrc, &k, params, &o3, &g3, &n);
    EXPECT(!memcmp(o2, o3, sizeof(float) * k.nout) && !memcmp(g2, g3, sizeof(float) * n),
           "hybrid recomputation must be bit-identical");
    double hd = rel(o2, o1, k.nout);
    EXPECT(hd > 1e-3, "hybrid attention should change the output (rel diff %.3e)", hd);
    printf("hybrid vs full output rel diff %.3e (sparse blocks are active)\n", hd);
    free(o2), free(g2), free(o3), free(g3);

    /* HiF8: quantisation-sized deviation, finite gradients, recompute bit-identical */
    wan_config q = tiny(true, 0, false);
    q.quant = true, q.quant_fwd_target = 15, q.quant_grad_target = 224, q.quant_history = 4;
    q.quant_attention = true;
    run(&q, &k, params, &o2, &g2, &n);
    double qd = rel(o2, o1, k.nout), qh = 0;
    float *oh, *gh;
    run(&hyb, &k, params, &oh, &gh, &n);
    qh = rel(o2, oh, k.nout);
    double gd = rel(g2, gh, n);
    int finite = 1;
    for (int64_t i = 0; i < n; i++) finite &= isfinite(g2[i]) != 0;
    EXPECT(finite, "HiF8 gradients must be finite");
    EXPECT(qh > 1e-4 && qh < 0.2, "HiF8 output deviation %.3e outside (1e-4, 0.2)", qh);
    EXPECT(gd > 1e-4 && gd < 0.5, "HiF8 gradient deviation %.3e outside (1e-4, 0.5)", gd);
    printf("HiF8 (hybrid, quant.attention) vs unquantised hybrid: output %.3e, gradients %.3e\n", qh, gd);
    (void)qd;
    wan_config qr = q;
    qr.recompute = true;
    run(&qr, &k, params, &o3, &g3, &n);
    EXPECT(!memcmp(o2, o3, sizeof(float) * k.nout) && !memcmp(g2, g3, sizeof(float) * n),
           "HiF8 with recomputation must be bit-identical (scales reused, histories advanced once)");
    free(o2), free(g2), free(o3), free(g3), free(oh), free(gh);

    /* issue 21: HiF8 with far more text rows than video tokens (1 token, 64 text rows): the
     * quantisation scratch must hold cross-attention's k / v inputs (64 x dim), not just the
     * video rows (an overflow here is a heap write past the arena, caught by the ASan pass) */
    {
        wan_config lt = tiny(false, 0, false);
        lt.text_len = 64;
        case_t kt;
        make_case(&kt, lt, 1, 1, 2, 2);
        float *pl = random_params(&lt);
        float *ou, *gu, *oq, *gq;
        int64_t nl;
        run(&lt, &kt, pl, &ou, &gu, &nl);
        lt.quant = true, lt.quant_fwd_target = 15, lt.quant_grad_target = 224, lt.quant_history = 4;
        run(&lt, &kt, pl, &oq, &gq, &nl);
        int fin = 1;
        for (int64_t i = 0; i < nl; i++) fin &= isfinite(gq[i]) != 0;
        double od = rel(oq, ou, kt.nout), gdl = rel(gq, gu, nl);
        EXPECT(fin, "HiF8 long-text gradients must be finite");
        EXPECT(od > 1e-4 && od < 0.2 && gdl > 1e-4 && gdl < 0.5,
               "HiF8 long text: output %.3e (want 1e-4..0.2), gradients %.3e (want 1e-4..0.5)", od, gdl);
        printf("HiF8, 1 video token and 64 text rows vs unquantised: output %.3e, gradients %.3e\n", od, gdl);
        free(ou), free(gu), free(oq), free(gq), free(pl);
    }
    printf("%s\n", tu_nfail ? "test_wan: FAILED" : "test_wan: all checks passed");
    return tu_nfail ? 1 : 0;
}
