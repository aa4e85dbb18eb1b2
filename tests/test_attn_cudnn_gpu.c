/*
 * test_attn_cudnn_gpu.c — the cuDNN fused-attention path (model/cuda/cudnn.cu) against osp's own
 * flash kernels on the same GPU: fresh N(0,1) q, k, v, dO (never zeros) at several shapes
 * (R 1..4, N in {64, 1000, 4096}, H in {2, 12}, d in {64, 128}, and one Nq != Nk cross-attention
 * shape); osp's kernels run through the backend table with the option attn = osp, cuDNN through
 * attn_cudnn_fwd / attn_cudnn_bwd directly.
 *
 * Checks ||cudnn - osp|| / ||osp|| for o, lse, dq, dk, dv against 2e-2 (both sides round q/k/v/dO
 * to bf16 and multiply on tensor cores with fp32 accumulation; cuDNN also returns O and the
 * gradients in bf16, ~2e-3 relative each). Gradient buffers start from random values on both
 * sides: the gradient is the result minus the prefill, and the prefill must survive (the
 * backward accumulates). A backward asked for dk alone (dq, dv NULL) must give the same dk. The
 * cuDNN backward is run twice on the same inputs and whether the two results are bit-identical is
 * printed (not asserted: cuDNN accumulates dQ with atomics), as is one timing of each side.
 * Last, the hooks: attn = cudnn sends the backend table's unmasked calls to cuDNN.
 *
 * Labelled gpu: on a machine without a visible GPU it prints "skipped" and passes; with a GPU,
 * a cuDNN that cannot be loaded or that declines a shape FAILS the test ("cudnn unavailable").
 * OSP_CUDNN_VERBOSE=1 prints every step of cuDNN's plan building.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "model/cuda/backend.h"
#include "model/ops.h"
#include "tests/testutil.h"

#include "model/cuda/cudnn.h"

#define TOL 2e-2

static const osp_backend *G;

/* who serves the backend table's attention from the next call on (the instance's option attn) */
static void set_attn(osp_cuda_attn a) {
    osp_cuda_options o = *osp_backend_cuda_options(G);
    o.attn = a;
    osp_backend_cuda_set_options(G, &o);
}
static tu_rng rng = {0x5EED0A77E57ULL};

static float *dev_from(const float *h, int64_t n) {
    float *d = G->alloc(sizeof(float) * (size_t)n);
    G->upload(d, h, sizeof(float) * (size_t)n);
    return d;
}
static float *host_of(const float *d, int64_t n) {
    float *h = tu_calloc((size_t)n, sizeof(float));
    G->download(h, d, sizeof(float) * (size_t)n);
    return h;
}

/* ||(a - apre) - (b - bpre)|| / ||b - bpre||: the added gradients of two accumulating backwards
 * (a NULL prefill is zero) */
static double grad_err(const float *a, const float *apre, const float *b, const float *bpre, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double ga = (double)a[i] - (apre ? apre[i] : 0), gb = (double)b[i] - (bpre ? bpre[i] : 0);
        if (isnan(ga) || isinf(ga)) return INFINITY;
        num += (ga - gb) * (ga - gb);
        den += gb * gb;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void check(const char *what, const char *shape, double err) {
    char name[128];
    snprintf(name, sizeof name, "%s %s", what, shape);
    tu_check(name, err, TOL);
}

/* A key mask [R, Nk] with about `frac` of the keys masked (never all of a row: a key near the end
 * is kept, so a row's span up to its last valid key is about the whole row and the masked keys
 * inside it go through the zero-and-correct path), or NULL; the host copy goes to *host (caller
 * frees) when host is not NULL. */
static uint8_t *mask_make(int64_t R, int64_t Nk, double frac, uint8_t **host) {
    if (frac <= 0) return NULL;
    uint8_t *h = tu_calloc((size_t)(R * Nk), 1);
    for (int64_t r = 0; r < R; r++) {
        for (int64_t j = 0; j < Nk; j++) h[r * Nk + j] = tu_uniform(&rng) >= frac;
        h[r * Nk + Nk - 1 - (r % Nk)] = 1;
    }
    uint8_t *dm = G->alloc((size_t)(R * Nk));
    G->upload(dm, h, (size_t)(R * Nk));
    if (host) *host = h;
    else free(h);
    return dm;
}

/* Self-attention over a padded layout (ops.h): the key mask marks the valid queries too. Padding
 * queries get dO = 0 (no loss sees them), and their o and lse are unspecified, so comparisons
 * zero them on both sides. x is [R*N, w] token rows, or (lse_H > 0) lse [R, lse_H, N]. */
static void pad_rows_zero(float *x, const uint8_t *valid, int64_t R, int64_t N, int64_t w, int lse_H) {
    for (int64_t r = 0; r < R; r++)
        for (int64_t t = 0; t < N; t++) {
            if (valid[r * N + t]) continue;
            if (lse_H)
                for (int h = 0; h < lse_H; h++) x[(r * lse_H + h) * N + t] = 0;
            else
                memset(x + (r * N + t) * w, 0, sizeof(float) * (size_t)w);
        }
}

static void test_shape(int64_t R, int64_t Nq, int64_t Nk, int H, int d, double mask_frac) {
    const int64_t n = R * Nq * H * d, nk = R * Nk * H * d, nl = R * H * Nq;
    static const char *gname[3] = {"dq", "dk", "dv"};
    char shape[80], what[64];
    if (Nq == Nk) snprintf(shape, sizeof shape, "R%lld N%lld H%d d%d", (long long)R, (long long)Nq, H, d);
    else snprintf(shape, sizeof shape, "R%lld Nq%lld Nk%lld H%d d%d", (long long)R, (long long)Nq, (long long)Nk, H, d);
    if (mask_frac > 0) snprintf(shape + strlen(shape), sizeof shape - strlen(shape), " mask%.0f%%", 100 * mask_frac);
    uint8_t *hmask = NULL;
    uint8_t *mask = mask_make(R, Nk, mask_frac, Nq == Nk ? &hmask : NULL);
    const int64_t nm = n > nk ? n : nk; /* prefill / zero buffers serve q- and k-sized gradients */
    const int64_t ng[3] = {n, nk, nk};  /* dq, dk, dv */
    float *hq = tu_randn(&rng, n, 1.0), *hk = tu_randn(&rng, nk, 1.0), *hv = tu_randn(&rng, nk, 1.0);
    float *hdo = tu_randn(&rng, n, 1.0), *pre = tu_randn(&rng, nm, 1.0), *zero = tu_calloc((size_t)nm, sizeof(float));
    if (hmask) pad_rows_zero(hdo, hmask, R, Nq, (int64_t)H * d, 0);
    float *q = dev_from(hq, n), *k = dev_from(hk, nk), *v = dev_from(hv, nk), *dout = dev_from(hdo, n);
    float *o1 = G->alloc(sizeof(float) * (size_t)n), *o2 = G->alloc(sizeof(float) * (size_t)n);
    float *l1 = G->alloc(sizeof(float) * (size_t)nl), *l2 = G->alloc(sizeof(float) * (size_t)nl);
    float *g1[3], *g2[3], *h1[3], *h2[3];
    for (int i = 0; i < 3; i++) g1[i] = dev_from(pre, ng[i]), g2[i] = dev_from(pre, ng[i]), h1[i] = h2[i] = NULL;

    /* forward: osp's kernels vs cuDNN */
    G->attn_fwd(o1, l1, q, k, v, mask, R, R, Nq, Nk, H, d);
    int rc = attn_cudnn_fwd(o2, l2, q, k, v, mask, R, Nq, Nk, H, d);
    TU_EXPECT(rc == 0, "cudnn unavailable: attn_cudnn_fwd declined %s: %s", shape, attn_cudnn_status());
    if (rc == 0) {
        float *ho1 = host_of(o1, n), *ho2 = host_of(o2, n), *hl1 = host_of(l1, nl), *hl2 = host_of(l2, nl);
        if (hmask) {
            float *all[4] = {ho1, ho2, hl1, hl2};
            for (int i = 0; i < 4; i++) pad_rows_zero(all[i], hmask, R, Nq, (int64_t)H * d, i < 2 ? 0 : H);
        }
        check("fwd o  ", shape, tu_rel_err_ff(ho2, ho1, n));
        check("fwd lse", shape, tu_rel_err_ff(hl2, hl1, nl));
        free(ho1), free(ho2), free(hl1), free(hl2);
    }

    /* backward: the same random prefill on both sides, each side from its own forward */
    G->attn_bwd(g1[0], g1[1], g1[2], dout, o1, l1, q, k, v, mask, R, R, Nq, Nk, H, d);
    if (rc == 0) rc = attn_cudnn_bwd(g2[0], g2[1], g2[2], dout, o2, l2, q, k, v, mask, R, Nq, Nk, H, d);
    TU_EXPECT(rc == 0, "cudnn unavailable: attn_cudnn_bwd declined %s: %s", shape, attn_cudnn_status());
    if (rc == 0) {
        for (int i = 0; i < 3; i++) {
            h1[i] = host_of(g1[i], ng[i]), h2[i] = host_of(g2[i], ng[i]);
            snprintf(what, sizeof what, "bwd %s    ", gname[i]);
            check(what, shape, grad_err(h2[i], pre, h1[i], pre, ng[i]));
            /* the totals too: an overwrite instead of an add shows here as a ~100% error */
            snprintf(what, sizeof what, "bwd %s+pre", gname[i]);
            check(what, shape, tu_rel_err_ff(h2[i], h1[i], ng[i]));
        }

        /* dk alone (dq, dv NULL) from zeros: the same dk gradient */
        float *dk = dev_from(zero, nk);
        rc = attn_cudnn_bwd(NULL, dk, NULL, dout, o2, l2, q, k, v, mask, R, Nq, Nk, H, d);
        TU_EXPECT(rc == 0, "attn_cudnn_bwd(dk only) declined %s: %s", shape, attn_cudnn_status());
        float *hdk = host_of(dk, nk);
        check("bwd dk only", shape, grad_err(hdk, NULL, h1[1], pre, nk));
        free(hdk);
        G->free(dk);

        /* run to run: two backwards from zeros on identical inputs (printed, not asserted) */
        float *a[3], *b[3];
        for (int i = 0; i < 3; i++) a[i] = dev_from(zero, ng[i]), b[i] = dev_from(zero, ng[i]);
        int r1 = attn_cudnn_bwd(a[0], a[1], a[2], dout, o2, l2, q, k, v, mask, R, Nq, Nk, H, d);
        int r2 = attn_cudnn_bwd(b[0], b[1], b[2], dout, o2, l2, q, k, v, mask, R, Nq, Nk, H, d);
        printf("info bwd repeated %-22s", shape);
        for (int i = 0; i < 3 && r1 == 0 && r2 == 0; i++) {
            float *ha = host_of(a[i], ng[i]), *hb = host_of(b[i], ng[i]);
            int64_t diff = tu_bitdiff(ha, hb, ng[i]);
            printf("  %s %s", gname[i], diff ? "differs" : "bit-identical");
            if (diff) printf(" (%lld of %lld)", (long long)diff, (long long)ng[i]);
            free(ha), free(hb);
        }
        printf("\n");
        for (int i = 0; i < 3; i++) G->free(a[i]), G->free(b[i]);

        /* one timed call of each after the calls above warmed both up (printed, not asserted) */
        double t[4];
        G->sync();
        t[0] = osp_now();
        G->attn_fwd(o1, l1, q, k, v, mask, R, R, Nq, Nk, H, d);
        G->sync();
        t[1] = osp_now();
        attn_cudnn_fwd(o2, l2, q, k, v, mask, R, Nq, Nk, H, d);
        G->sync();
        t[2] = osp_now();
        G->attn_bwd(g1[0], g1[1], g1[2], dout, o1, l1, q, k, v, mask, R, R, Nq, Nk, H, d);
        G->sync();
        t[3] = osp_now();
        attn_cudnn_bwd(g2[0], g2[1], g2[2], dout, o2, l2, q, k, v, mask, R, Nq, Nk, H, d);
        G->sync();
        double t4 = osp_now();
        printf("info time %-22s fwd osp %.3f ms cudnn %.3f ms   bwd osp %.3f ms cudnn %.3f ms\n", shape,
               (t[1] - t[0]) * 1e3, (t[2] - t[1]) * 1e3, (t[3] - t[2]) * 1e3, (t4 - t[3]) * 1e3);
    }
    for (int i = 0; i < 3; i++) free(h1[i]), free(h2[i]), G->free(g1[i]), G->free(g2[i]);
    G->free(q), G->free(k), G->free(v), G->free(dout), G->free(o1), G->free(o2), G->free(l1), G->free(l2);
    if (mask) G->free(mask);
    free(hmask);
    free(hq), free(hk), free(hv), free(hdo), free(pre), free(zero);
}

/* Padding queries that score far below every real key (the 480P Skiparse case): all valid keys
 * share a component along u, padding queries point against it, so for them the zeroed masked
 * keys carry nearly the whole softmax sum (x ~ 1). Their outputs are unspecified (ops.h), so
 * cuDNN must still serve the call (before padding queries were told apart, it declined), agree
 * with osp's kernel on every valid query and on all gradients, and keep padding outputs finite.
 * The padding is a tail of each row (Skiparse's layout), of a different length per row, plus a few
 * masked keys inside the rows: cuDNN runs with per-row lengths (its padding mask) up to the last
 * valid key, the holes inside are corrected for; the tail queries it skips must come back as 0
 * (which also shows the length-masked forward ran: the unmasked one computes them). */
static void test_padding_queries(void) {
    const int64_t R = 3, N = 600;
    const int H = 2, d = 64, HD = H * d;
    const int64_t n = R * N * HD, nl = R * H * N;
    float *hq = tu_randn(&rng, n, 1.0), *hk = tu_randn(&rng, n, 1.0), *hv = tu_randn(&rng, n, 1.0);
    float *hdo = tu_randn(&rng, n, 1.0), *pre = tu_randn(&rng, n, 1.0);
    uint8_t *hmask = tu_calloc((size_t)(R * N), 1);
    for (int64_t r = 0; r < R; r++)
        for (int64_t t = 0; t < N; t++) {
            int64_t npad = 150 + 37 * r; /* tail of row r */
            int valid = t < N - npad && t % 97 != 5;
            hmask[r * N + t] = (uint8_t)valid;
            for (int c = 0; c < HD; c++) {
                float u = (c % d == 0) ? 1.0f : 0.0f; /* unit vector of each head */
                if (valid) hk[(r * N + t) * HD + c] += 3.0f * u;
                else hq[(r * N + t) * HD + c] = -30.0f * u;
            }
        }
    pad_rows_zero(hdo, hmask, R, N, HD, 0);
    uint8_t *mask = G->alloc((size_t)(R * N));
    G->upload(mask, hmask, (size_t)(R * N));
    float *q = dev_from(hq, n), *k = dev_from(hk, n), *v = dev_from(hv, n), *dout = dev_from(hdo, n);
    float *o1 = G->alloc(sizeof(float) * (size_t)n), *o2 = G->alloc(sizeof(float) * (size_t)n);
    float *l1 = G->alloc(sizeof(float) * (size_t)nl), *l2 = G->alloc(sizeof(float) * (size_t)nl);
    G->attn_fwd(o1, l1, q, k, v, mask, R, R, N, N, H, d);
    int64_t npad0 = attn_cudnn_calls_padded();
    int rc = attn_cudnn_fwd(o2, l2, q, k, v, mask, R, N, N, H, d);
    int padded = attn_cudnn_calls_padded() > npad0;
    TU_EXPECT(rc == 0, "padding queries far below the real keys: cuDNN declined (%s)", attn_cudnn_status());
    if (rc == 0 && !padded) /* a capability of the loaded cuDNN, reported; the fallback is checked below */
        printf("note: this cuDNN has no sequence lengths on SDPA_FWD (%s): padding computed and corrected for\n",
               attn_cudnn_status());
    if (rc == 0) {
        float *ho1 = host_of(o1, n), *ho2 = host_of(o2, n), *hl1 = host_of(l1, nl), *hl2 = host_of(l2, nl);
        int64_t nonfinite = 0;
        for (int64_t i = 0; i < n; i++) nonfinite += !isfinite(ho2[i]);
        for (int64_t i = 0; i < nl; i++) nonfinite += !isfinite(hl2[i]);
        TU_EXPECT(nonfinite == 0, "padding queries: %lld non-finite outputs", (long long)nonfinite);
        int64_t tail_nonzero = 0;
        for (int64_t r = 0; r < R; r++)
            for (int64_t i = (r * N + N - 150 - 37 * r) * HD; i < (r + 1) * N * HD; i++) tail_nonzero += ho2[i] != 0.0f;
        if (padded) {
            TU_EXPECT(tail_nonzero == 0, "padding tail: %lld outputs not 0 after the length-masked forward",
                      (long long)tail_nonzero);
            printf("%-4s %-58s\n", tail_nonzero == 0 ? "ok" : "FAIL", "pad-q: cuDNN skipped each row's padding tail");
        }
        float *all[4] = {ho1, ho2, hl1, hl2};
        for (int i = 0; i < 4; i++) pad_rows_zero(all[i], hmask, R, N, HD, i < 2 ? 0 : H);
        check("pad-q fwd o  ", "R3 N600 H2 d64 tail 25-37%+holes", tu_rel_err_ff(ho2, ho1, n));
        check("pad-q fwd lse", "R3 N600 H2 d64 tail 25-37%+holes", tu_rel_err_ff(hl2, hl1, nl));
        free(ho1), free(ho2), free(hl1), free(hl2);
        static const char *gname[3] = {"pad-q bwd dq", "pad-q bwd dk", "pad-q bwd dv"};
        float *g1[3], *g2[3];
        for (int i = 0; i < 3; i++) g1[i] = dev_from(pre, n), g2[i] = dev_from(pre, n);
        G->attn_bwd(g1[0], g1[1], g1[2], dout, o1, l1, q, k, v, mask, R, R, N, N, H, d);
        rc = attn_cudnn_bwd(g2[0], g2[1], g2[2], dout, o2, l2, q, k, v, mask, R, N, N, H, d);
        TU_EXPECT(rc == 0, "padding queries: attn_cudnn_bwd declined (%s)", attn_cudnn_status());
        for (int i = 0; i < 3 && rc == 0; i++) {
            float *a = host_of(g2[i], n), *b = host_of(g1[i], n);
            check(gname[i], "R3 N600 H2 d64 tail 25-37%+holes", grad_err(a, pre, b, pre, n));
            free(a), free(b);
        }
        for (int i = 0; i < 3; i++) G->free(g1[i]), G->free(g2[i]);
    }
    free(hq), free(hk), free(hv), free(hdo), free(pre), free(hmask);
    G->free(q), G->free(k), G->free(v), G->free(dout), G->free(o1), G->free(o2), G->free(l1), G->free(l2),
        G->free(mask);
}

/* Most keys masked, the last ones valid (so no length can cut them): the zeroed keys would carry
 * most of cuDNN's softmax sum, so the direct call declines (-1) and the backend's hooked call
 * (attn = auto) gives osp's masked result. */
static void test_heavy_mask(void) {
    const int64_t R = 2, N = 512, n = R * N * 2 * 64, nl = R * 2 * N;
    float *hq = tu_randn(&rng, n, 1.0), *hk = tu_randn(&rng, n, 1.0), *hv = tu_randn(&rng, n, 1.0);
    float *q = dev_from(hq, n), *k = dev_from(hk, n), *v = dev_from(hv, n);
    float *o1 = G->alloc(sizeof(float) * (size_t)n), *o2 = G->alloc(sizeof(float) * (size_t)n);
    float *l1 = G->alloc(sizeof(float) * (size_t)nl), *l2 = G->alloc(sizeof(float) * (size_t)nl);
    uint8_t *mask = mask_make(R, N, 0.999, NULL);
    int rc = attn_cudnn_fwd(o2, l2, q, k, v, mask, R, N, N, 2, 64);
    TU_EXPECT(rc == -1, "99.9%% of the keys masked: attn_cudnn_fwd should decline, returned %d", rc);
    G->attn_fwd(o1, l1, q, k, v, mask, R, R, N, N, 2, 64); /* osp (attn = osp) */
    set_attn(OSP_CUDA_ATTN_AUTO);
    G->attn_fwd(o2, l2, q, k, v, mask, R, R, N, N, 2, 64);
    set_attn(OSP_CUDA_ATTN_OSP);
    float *h1 = host_of(o1, n), *h2 = host_of(o2, n);
    int64_t diff = tu_bitdiff(h1, h2, n);
    TU_EXPECT(diff == 0, "heavy mask: the auto path differs from osp's kernel in %lld values", (long long)diff);
    printf("%-4s %-58s\n", rc == -1 && diff == 0 ? "ok" : "FAIL", "heavy mask: cuDNN declines, osp's kernel serves");
    free(h1), free(h2), free(hq), free(hk), free(hv);
    G->free(q), G->free(k), G->free(v), G->free(o1), G->free(o2), G->free(l1), G->free(l2), G->free(mask);
}

/* The hooks in cuda_attn_fwd / cuda_attn_bwd: with attn = cudnn the backend table's
 * unmasked self-attention runs on cuDNN (its call counters move) and gives the bits the direct
 * forward call gives; a masked call stays on osp's kernels. */
static void test_hooks(void) {
    const int64_t R = 2, N = 200, n = R * N * 4 * 64;
    float *hq = tu_randn(&rng, n, 1.0), *hk = tu_randn(&rng, n, 1.0), *hv = tu_randn(&rng, n, 1.0);
    float *q = dev_from(hq, n), *k = dev_from(hk, n), *v = dev_from(hv, n);
    float *o1 = G->alloc(sizeof(float) * (size_t)n), *o2 = G->alloc(sizeof(float) * (size_t)n);
    float *l = G->alloc(sizeof(float) * (size_t)(R * 4 * N)), *g = G->alloc(sizeof(float) * (size_t)n);
    uint8_t *valid = G->alloc((size_t)(R * N));
    G->zero(g, sizeof(float) * (size_t)n);
    set_attn(OSP_CUDA_ATTN_CUDNN);
    int64_t f0 = attn_cudnn_calls(0), b0 = attn_cudnn_calls(1);
    G->attn_fwd(o1, l, q, k, v, NULL, R, R, N, N, 4, 64);
    G->attn_bwd(g, NULL, NULL, v, o1, l, q, k, v, NULL, R, R, N, N, 4, 64);
    G->sync();
    TU_EXPECT(attn_cudnn_calls(0) == f0 + 1 && attn_cudnn_calls(1) == b0 + 1,
              "attn = cudnn: the backend's attention did not run on cuDNN");
    G->zero(valid, (size_t)(R * N)); /* every key masked: cuDNN declines, osp's kernel serves */
    set_attn(OSP_CUDA_ATTN_AUTO);
    G->attn_fwd(o2, l, q, k, v, valid, R, R, N, N, 4, 64);
    G->sync();
    TU_EXPECT(attn_cudnn_calls(0) == f0 + 1, "a fully masked attention call was counted as served by cuDNN");
    set_attn(OSP_CUDA_ATTN_OSP);
    attn_cudnn_fwd(o2, l, q, k, v, NULL, R, N, N, 4, 64);
    float *h1 = host_of(o1, n), *h2 = host_of(o2, n);
    int64_t diff = tu_bitdiff(h1, h2, n);
    TU_EXPECT(diff == 0, "hooked and direct cuDNN forward differ in %lld of %lld values", (long long)diff,
              (long long)n);
    printf("%-4s %-58s\n", diff == 0 ? "ok" : "FAIL", "hooks: attn = cudnn routes the backend to cuDNN");
    free(h1), free(h2), free(hq), free(hk), free(hv);
    G->free(q), G->free(k), G->free(v), G->free(o1), G->free(o2), G->free(l), G->free(g), G->free(valid);
}

int main(void) {
    G = osp_backend_cuda_init(0, NULL);
    if (!G) {
        printf("test_attn_cudnn_gpu: skipped (no CUDA GPU visible or built without CUDA)\n");
        return 0;
    }
    set_attn(OSP_CUDA_ATTN_OSP); /* the backend table runs osp's own kernels */
    if (!attn_cudnn_available()) {
        printf("cudnn unavailable: %s\n", attn_cudnn_status());
        printf("test_attn_cudnn_gpu: FAILED: cuDNN could not be loaded on a GPU machine (set OSP_CUDNN_LIB, "
               "OSP_CUDNN_VERBOSE=1 for the search)\n");
        return 1;
    }
    printf("tolerance ||cudnn - osp|| / ||osp|| <= %.0e (bf16 operands on both sides)\n", TOL);
    /* self-attention shapes, then a cross-attention one (Nq != Nk, Nk no multiple of 64): Wan's
     * unmasked text cross-attention with Rkv == R takes this path too */
    static const struct {
        int64_t R, Nq, Nk;
        int H, d;
    } shapes[] = {{1, 64, 64, 2, 64},         {2, 64, 64, 12, 128},   {3, 1000, 1000, 2, 128}, {4, 1000, 1000, 12, 64},
                  {1, 4096, 4096, 12, 128}, {2, 4096, 4096, 2, 64}, {2, 1000, 300, 12, 128}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        test_shape(shapes[i].R, shapes[i].Nq, shapes[i].Nk, shapes[i].H, shapes[i].d, 0.0);
    /* key masks (padded Skiparse subsequences): cuDNN on zeroed masked keys, corrected after */
    test_shape(4, 1000, 1000, 2, 128, 0.06);
    test_shape(4, 2048, 2048, 12, 128, 0.10);
    test_shape(2, 500, 500, 4, 64, 0.30);
    test_shape(2, 512, 512, 2, 64, 0.90); /* zeroed keys carry ~85% of the sum: corrected, not declined */
    test_padding_queries();
    test_heavy_mask();
    test_hooks();
    attn_cudnn_free();
    osp_backend_cuda_free(G);
    return tu_summary("test_attn_cudnn_gpu");
}
