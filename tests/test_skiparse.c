/*
 * test_skiparse.c — Skiparse-2D layouts (model/skiparse.c) against docs/skiparse.md §2-§7:
 *   1. every position of the token / group / raster layouts sits exactly where (S1)-(S3)
 *      put its padded-grid cell (a bijection onto the padded grid), with RoPE positions,
 *      validity (h < H and w < W) and the padding amount of (S1);
 *   2. the worked example of §5 (subsequence-id maps, member order, token 3 -> group);
 *   3. move tables: the lemma (S4), switch o switch = identity, the switch is an
 *      involution (same table both ways), every token/group subsequence pair shares
 *      exactly N/P^2 tokens (one all-to-all), enter-then-switch = direct enter,
 *      leave o enter = identity, padding created exactly at invalid positions;
 *   4. valid counts at 720P, P = 2 (19,320 / 18,480, §12) and the dual_end schedule;
 *   5. THE KEY TEST: attention run in a rearranged layout (gather, osp attn with
 *      R = P^2 B rows and the layout's key mask, gather back) equals dense attention on
 *      the raster layout with the block mask "same subsequence" computed in float64,
 *      forward and backward through the gathers' adjoint scatter-adds (rel err < 1e-5);
 *      RoPE with the layout's positions commutes with the move (bit-exact).
 * Index math is exact: those checks have tolerance 0.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/ops.h"
#include "model/skiparse.h"
#include "tests/testutil.h"

static const osp_backend *be;
static tu_rng rng = {99991u};

/* subsequence of raster cell (h, w) by the formulas of docs/skiparse.md, not the library */
static int sub_of(skip_kind k, int P, int h, int w) {
    if (k == LAYOUT_TOKEN) return (h % P) * P + w % P;            /* (S2) */
    if (k == LAYOUT_GROUP) return ((h / P) % P) * P + (w / P) % P; /* (S3) */
    return 0;
}

/* position of padded cell (b, t, h, w) in a layout, from (S2)/(S3) */
static int64_t expect_pos(skip_kind k, int B, int T, int H, int W, int Hp, int Wp, int P, int b, int t, int h, int w) {
    if (k == LAYOUT_RASTER) return (int64_t)b * T * H * W + ((int64_t)t * H + h) * W + w;
    int hc = k == LAYOUT_TOKEN ? h / P : (h / (P * P)) * P + h % P;
    int wc = k == LAYOUT_TOKEN ? w / P : (w / (P * P)) * P + w % P;
    int64_t N = (int64_t)T * (Hp / P) * (Wp / P), row = (int64_t)sub_of(k, P, h, w) * B + b;
    return row * N + ((int64_t)hc * T + t) * (Wp / P) + wc; /* (h', t, w') inside (skiparse.h) */
}

static void cell_of(const skip_layout *l, int64_t g, int *b, int *t, int *h, int *w) {
    *w = (int)(g % l->Wp);
    *h = (int)((g / l->Wp) % l->Hp);
    int64_t bt = g / ((int64_t)l->Wp * l->Hp);
    *t = (int)(bt % l->T);
    *b = (int)(bt / l->T);
}

/* ------------------------------------------------------------------ 1. membership */

static void test_membership(int B, int T, int H, int W, int P) {
    char nm[120];
    for (int kind = 0; kind < 3; kind++) {
        skip_layout l;
        skip_layout_init(&l, (skip_kind)kind, B, T, H, W, P);
        int P2 = P * P, Pk = kind ? P : 1;
        int Hp = kind ? (H + P2 - 1) / P2 * P2 : H, Wp = kind ? (W + P2 - 1) / P2 * P2 : W; /* (S1) */
        int64_t bad = 0, ncell = (int64_t)B * T * Hp * Wp, nvalid = 0;
        bad += l.Hp != Hp || l.Wp != Wp || l.R != (int64_t)Pk * Pk * B || l.N != (int64_t)T * (Hp / Pk) * (Wp / Pk) ||
               l.npos != ncell;
        uint8_t *seen = tu_calloc(ncell, 1);
        for (int64_t i = 0; i < l.npos && !bad; i++) {
            int b, t, h, w;
            if (l.grid[i] < 0 || l.grid[i] >= ncell) {
                bad++;
                break;
            }
            cell_of(&l, l.grid[i], &b, &t, &h, &w);
            bad += seen[l.grid[i]]++ != 0;
            bad += expect_pos((skip_kind)kind, B, T, H, W, Hp, Wp, P, b, t, h, w) != i;
            bad += l.pos3[3 * i] != t || l.pos3[3 * i + 1] != h || l.pos3[3 * i + 2] != w;
            bad += l.valid[i] != (h < H && w < W);
            nvalid += l.valid[i];
        }
        bad += nvalid != (int64_t)B * T * H * W || l.has_padding != (nvalid != l.npos);
        snprintf(nm, sizeof nm, "%s (T,H,W,P)=(%d,%d,%d,%d) B=%d: cells misplaced (S1-S3)", skip_kind_name(l.kind), T, H,
                 W, P, B);
        tu_check(nm, (double)bad, 0);
        free(seen);
        skip_layout_free(&l);
    }
}

/* ------------------------------------------------------------------ 2. worked example */

static void test_worked_example(void) {
    static const char *tok_map[4] = {"01010101", "23232323", "01010101", "23232323"};
    static const char *grp_map[4] = {"00110011", "00110011", "22332233", "22332233"};
    /* member order (h, w) in storage order, as listed in §5 (ellipses expanded by the
     * stated rule), -1 terminated */
    static const int tok_mem[4][33] = {
        {0, 0, 0, 2, 0, 4, 0, 6, 2, 0, 2, 2, 2, 4, 2, 6, 4, 0, 4, 2, 4, 4, 4, 6, 6, 0, 6, 2, 6, 4, 6, 6, -1},
        {0, 1, 0, 3, 0, 5, 0, 7, 2, 1, -1},
        {1, 0, 1, 2, 1, 4, 1, 6, 3, 0, -1},
        {1, 1, 1, 3, 1, 5, 1, 7, 3, 1, -1}};
    static const int grp_mem[4][33] = {
        {0, 0, 0, 1, 0, 4, 0, 5, 1, 0, 1, 1, 1, 4, 1, 5, 4, 0, 4, 1, 4, 4, 4, 5, 5, 0, 5, 1, 5, 4, 5, 5, -1},
        {0, 2, 0, 3, 0, 6, 0, 7, 1, 2, 1, 3, 1, 6, 1, 7, 4, 2, -1},
        {2, 0, 2, 1, 2, 4, 2, 5, 3, 0, 3, 1, 3, 4, 3, 5, 6, 0, -1},
        {2, 2, 2, 3, 2, 6, 2, 7, 3, 2, 3, 3, 3, 6, 3, 7, 6, 2, -1}};
    /* token subsequence 3 -> (group subsequence, position): (h, w, g, pos) */
    static const int t3[9][4] = {{1, 1, 0, 5}, {1, 3, 1, 5}, {1, 5, 0, 7}, {1, 7, 1, 7}, {3, 1, 2, 5},
                                 {3, 3, 3, 5}, {5, 1, 0, 13}, {7, 7, 3, 15}, {1, 3, 1, 5} /* §6 example */};
    skip_layout tl, gl;
    skip_layout_init(&tl, LAYOUT_TOKEN, 1, 1, 8, 8, 2);
    skip_layout_init(&gl, LAYOUT_GROUP, 1, 1, 8, 8, 2);
    int bad = (tl.N != 16) + (tl.R != 4) + tl.has_padding + gl.has_padding;
    int where_t[64], where_g[64]; /* cell h*8+w -> position */
    for (int i = 0; i < 64; i++) {
        where_t[tl.grid[i]] = i;
        where_g[gl.grid[i]] = i;
    }
    for (int h = 0; h < 8; h++)
        for (int w = 0; w < 8; w++) {
            bad += where_t[h * 8 + w] / 16 != tok_map[h % 4][w] - '0';
            bad += where_g[h * 8 + w] / 16 != grp_map[h % 4][w] - '0';
        }
    for (int s = 0; s < 4; s++) {
        for (int m = 0; tok_mem[s][2 * m] >= 0; m++) bad += tl.grid[s * 16 + m] != tok_mem[s][2 * m] * 8 + tok_mem[s][2 * m + 1];
        for (int m = 0; grp_mem[s][2 * m] >= 0; m++) bad += gl.grid[s * 16 + m] != grp_mem[s][2 * m] * 8 + grp_mem[s][2 * m + 1];
    }
    for (int e = 0; e < 9; e++) {
        int c = t3[e][0] * 8 + t3[e][1];
        bad += where_t[c] / 16 != 3 || where_g[c] / 16 != t3[e][2] || where_g[c] % 16 != t3[e][3];
    }
    tu_check("worked example 3.5 (maps, member order, token 3 -> group) mismatches", bad, 0);
    skip_layout_free(&tl);
    skip_layout_free(&gl);
}

/* ------------------------------------------------------------------ 3. moves */

static void test_moves(int B, int T, int H, int W, int P) {
    skip_layout r, t, g;
    skip_layout_init(&r, LAYOUT_RASTER, B, T, H, W, P);
    skip_layout_init(&t, LAYOUT_TOKEN, B, T, H, W, P);
    skip_layout_init(&g, LAYOUT_GROUP, B, T, H, W, P);
    int32_t *rt = skip_move_index(&r, &t), *rg = skip_move_index(&r, &g), *tg = skip_move_index(&t, &g);
    int32_t *gt = skip_move_index(&g, &t), *tr = skip_move_index(&t, &r), *gr = skip_move_index(&g, &r);
    int64_t n = t.npos, nr = r.npos, bad_s4 = 0, bad_inv = 0, bad_comp = 0, bad_leave = 0, bad_pad = 0, bad_spread = 0;
    int P2 = P * P, wc_n = t.Wp / P;
    /* (S4): token (outer (p,q), inner (rr, rr'), block (t,a,c)) -> group (rr, rr'), (t, aP+p, cP+q) */
    for (int64_t j = 0; j < n; j++) {
        int64_t row = j / t.N, m = j % t.N;
        int s = (int)(row / B), b = (int)(row % B), p = s / P, q = s % P;
        int hc = (int)(m / ((int64_t)t.T * wc_n)), tt = (int)((m / wc_n) % t.T), wc = (int)(m % wc_n);
        int a = hc / P, rr = hc % P, c = wc / P, rr2 = wc % P;
        int64_t i = ((int64_t)(rr * P + rr2) * B + b) * t.N + ((int64_t)(a * P + p) * t.T + tt) * wc_n + c * P + q;
        bad_s4 += tg[i] != j;
    }
    int64_t *pair = tu_calloc((size_t)P2 * P2, sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) {
        bad_inv += tg[gt[i]] != i || tg[i] != gt[i]; /* switch o switch = id; one table both ways */
        int64_t direct = rg[i], via = tg[i] < 0 ? -1 : rt[tg[i]];
        bad_comp += direct != via; /* enter(token) then switch == enter(group) */
        bad_comp += rt[i] != (gt[i] < 0 ? -1 : rg[gt[i]]);
        bad_pad += (rt[i] < 0) != !t.valid[i] || (rg[i] < 0) != !g.valid[i];
        if (rt[i] >= 0) bad_pad += memcmp(t.pos3 + 3 * i, r.pos3 + 3 * (int64_t)rt[i], 3 * sizeof(int32_t)) != 0;
        pair[(i / t.N / B) * P2 + (tg[i] / t.N / B)]++; /* group subsequence of i, token subsequence it came from */
    }
    for (int i = 0; i < P2 * P2; i++) bad_spread += pair[i] != (int64_t)B * t.N / P2;
    for (int64_t j = 0; j < nr; j++) bad_leave += tr[j] < 0 || rt[tr[j]] != j || gr[j] < 0 || rg[gr[j]] != j;
    /* the same through the backend's gather (tensor form, bit-exact, zeros on padding) */
    int D = 3;
    float *x = tu_randn(&rng, nr * D, 1.0), *xt = tu_randn(&rng, n * D, 1.0), *xg = tu_calloc(n * D, 4);
    float *xr = tu_calloc(nr * D, 4);
    be->gather_rows(xt, x, rt, n, D);
    be->gather_rows(xg, xt, tg, n, D);
    be->gather_rows(xr, xg, gr, nr, D);
    for (int64_t i = 0; i < n; i++)
        if (!g.valid[i]) bad_pad += xg[i * D] != 0 || xg[i * D + 1] != 0 || xg[i * D + 2] != 0;
    bad_leave += tu_bitdiff(xr, x, nr * D);
    char nm[160], cfg[64];
    snprintf(cfg, sizeof cfg, "(T,H,W,P)=(%d,%d,%d,%d) B=%d", T, H, W, P, B);
    snprintf(nm, sizeof nm, "move token->group is lemma (S4) %s", cfg);
    tu_check(nm, (double)bad_s4, 0);
    snprintf(nm, sizeof nm, "switch o switch = id, involution %s", cfg);
    tu_check(nm, (double)bad_inv, 0);
    snprintf(nm, sizeof nm, "each token/group subsequence pair shares N/P^2 %s", cfg);
    tu_check(nm, (double)bad_spread, 0);
    snprintf(nm, sizeof nm, "enter then switch = direct enter %s", cfg);
    tu_check(nm, (double)bad_comp, 0);
    snprintf(nm, sizeof nm, "leave o enter = id (tables and gathers) %s", cfg);
    tu_check(nm, (double)bad_leave, 0);
    snprintf(nm, sizeof nm, "padding exactly at h>=H or w>=W, zero-filled %s", cfg);
    tu_check(nm, (double)bad_pad, 0);
    free(rt), free(rg), free(tg), free(gt), free(tr), free(gr), free(pair), free(x), free(xt), free(xg), free(xr);
    skip_layout_free(&r), skip_layout_free(&t), skip_layout_free(&g);
}

/* ------------------------------------------------------------------ 4. counts, schedule */

static void test_720p_counts(void) {
    int bad = 0;
    for (int kind = LAYOUT_TOKEN; kind <= LAYOUT_GROUP; kind++) {
        skip_layout l;
        skip_layout_init(&l, (skip_kind)kind, 1, 21, 45, 80, 2);
        bad += l.Hp != 48 || l.Wp != 80 || l.R * l.N != 80640;
        int64_t cnt[4] = {0}, tot = 0;
        for (int64_t i = 0; i < l.npos; i++) cnt[i / l.N] += l.valid[i];
        for (int s = 0; s < 4; s++) {
            bad += cnt[s] != (s < 2 ? 19320 : 18480);
            tot += cnt[s];
        }
        bad += tot != 75600;
        printf("     720P %s valid per subsequence: %lld %lld %lld %lld\n", skip_kind_name(l.kind), (long long)cnt[0],
               (long long)cnt[1], (long long)cnt[2], (long long)cnt[3]);
        skip_layout_free(&l);
    }
    tu_check("720P (21x45x80, P=2): H'=48, L'=80640, 19320/18480 valid", bad, 0);
}

/* Only H padded (Wan2.1 480P: 30 -> 32 rows, 720P: 45 -> 48, and odd small grids): every
 * subsequence row is its valid tokens followed by its padding (skiparse.h: the (h', t, w')
 * order), which is what lets attention skip the padding by length. */
static void test_padding_suffix(void) {
    static const int grids[][5] = {{21, 30, 52, 2, 1}, {21, 45, 80, 2, 1}, {3, 7, 8, 2, 2}, {2, 10, 9, 3, 2}};
    int bad = 0, rows_with_padding = 0;
    for (size_t gi = 0; gi < sizeof grids / sizeof grids[0]; gi++)
        for (int kind = LAYOUT_TOKEN; kind <= LAYOUT_GROUP; kind++) {
            const int *g = grids[gi];
            skip_layout l;
            skip_layout_init(&l, (skip_kind)kind, g[4], g[0], g[1], g[2], g[3]);
            for (int64_t r = 0; r < l.R; r++) {
                int64_t n = 0;
                while (n < l.N && l.valid[r * l.N + n]) n++;
                rows_with_padding += n < l.N;
                for (int64_t m = n; m < l.N; m++) bad += l.valid[r * l.N + m]; /* nothing valid after */
            }
            skip_layout_free(&l);
        }
    tu_check("H-only padding: each subsequence = valid tokens, then padding", bad, 0);
    tu_check("H-only padding: the grids above do pad some rows", rows_with_padding > 0 ? 0 : 1, 0);
}

static void test_schedule(void) {
    int bad = 0;
    for (int i = 0; i < 40; i++) {
        skip_kind k = skip_block_kind(1, 40, 8, i);
        skip_kind want = (i < 4 || i >= 36) ? LAYOUT_RASTER : (i % 2 == 0 ? LAYOUT_TOKEN : LAYOUT_GROUP);
        bad += k != want;
        bad += skip_block_kind(1, 40, 0, i) != (i % 2 == 0 ? LAYOUT_TOKEN : LAYOUT_GROUP); /* K = 0 */
        bad += skip_block_kind(0, 40, 8, i) != LAYOUT_RASTER;
    }
    /* F % 4 == 0: first sparse block is token, last is group (§9) */
    for (int F = 0; F <= 20; F += 4) bad += skip_block_kind(1, 40, F, F / 2) != LAYOUT_TOKEN || skip_block_kind(1, 40, F, 39 - F / 2) != LAYOUT_GROUP;
    bad += strcmp(skip_kind_name(LAYOUT_RASTER), "full") || strcmp(skip_kind_name(LAYOUT_TOKEN), "token") ||
           strcmp(skip_kind_name(LAYOUT_GROUP), "group");
    tu_check("dual_end schedule (40 layers, K=8 and K=0, hybrid off)", bad, 0);
}

/* ------------------------------------------------------------------ 5. attention equivalence */

static void test_sparse_attention(skip_kind kind, int B, int T, int H, int W, int P) {
    const int NH = 2, d = 16, HD = NH * d;
    skip_layout r, l;
    skip_layout_init(&r, LAYOUT_RASTER, B, T, H, W, P);
    skip_layout_init(&l, kind, B, T, H, W, P);
    int32_t *enter = skip_move_index(&r, &l), *leave = skip_move_index(&l, &r);
    int64_t L = (int64_t)T * H * W, nr = r.npos, n = l.npos;
    float *q = tu_randn(&rng, nr * HD, 1.5), *k = tu_randn(&rng, nr * HD, 1.0), *v = tu_randn(&rng, nr * HD, 1.0);
    float *dout = tu_randn(&rng, nr * HD, 1.0);
    /* rearranged: gather in, attention over R = P^2 B rows with the layout key mask, gather out */
    float *ql = tu_calloc(n * HD, 4), *kl = tu_calloc(n * HD, 4), *vl = tu_calloc(n * HD, 4), *ol = tu_calloc(n * HD, 4);
    float *lse = tu_calloc(l.R * NH * l.N, 4), *o = tu_calloc(nr * HD, 4);
    be->gather_rows(ql, q, enter, n, HD);
    be->gather_rows(kl, k, enter, n, HD);
    be->gather_rows(vl, v, enter, n, HD);
    be->attn_fwd(ol, lse, ql, kl, vl, l.valid, l.R, l.R, l.N, l.N, NH, d);
    be->gather_rows(o, ol, leave, nr, HD);
    /* backward: adjoint of the leave gather, attention bwd, adjoint of the enter gathers */
    float *dol = tu_calloc(n * HD, 4), *dql = tu_calloc(n * HD, 4), *dkl = tu_calloc(n * HD, 4), *dvl = tu_calloc(n * HD, 4);
    float *dq = tu_calloc(nr * HD, 4), *dk = tu_calloc(nr * HD, 4), *dv = tu_calloc(nr * HD, 4);
    be->scatter_add_rows(dol, dout, leave, nr, HD);
    be->attn_bwd(dql, dkl, dvl, dol, ol, lse, ql, kl, vl, l.valid, l.R, l.R, l.N, l.N, NH, d);
    be->scatter_add_rows(dq, dql, enter, n, HD);
    be->scatter_add_rows(dk, dkl, enter, n, HD);
    be->scatter_add_rows(dv, dvl, enter, n, HD);
    /* dense float64 reference on the raster layout: i sees j iff same subsequence */
    uint8_t *allow = tu_calloc(L * L, 1);
    for (int64_t i = 0; i < L; i++)
        for (int64_t j = 0; j < L; j++) {
            int hi = (int)((i / W) % H), wi = (int)(i % W), hj = (int)((j / W) % H), wj = (int)(j % W);
            allow[i * L + j] = sub_of(kind, P, hi, wi) == sub_of(kind, P, hj, wj);
        }
    double *oref = tu_calloc(nr * HD, 8), *dqr = tu_calloc(nr * HD, 8), *dkr = tu_calloc(nr * HD, 8);
    double *dvr = tu_calloc(nr * HD, 8), *ob = tu_calloc(L * d, 8), *gq = tu_calloc(L * d, 8), *gk = tu_calloc(L * d, 8);
    double *gv = tu_calloc(L * d, 8);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            int64_t off = (int64_t)b * L * HD + h * d;
            tu_attn_ref_fwd(ob, NULL, q + off, HD, k + off, v + off, HD, L, L, d, allow, L);
            memset(gq, 0, 8 * L * d), memset(gk, 0, 8 * L * d), memset(gv, 0, 8 * L * d);
            tu_attn_ref_bwd(gq, gk, gv, dout + off, q + off, HD, k + off, v + off, HD, L, L, d, allow, L);
            for (int64_t i = 0; i < L; i++)
                for (int c = 0; c < d; c++) {
                    oref[off + i * HD + c] = ob[i * d + c];
                    dqr[off + i * HD + c] = gq[i * d + c];
                    dkr[off + i * HD + c] = gk[i * d + c];
                    dvr[off + i * HD + c] = gv[i * d + c];
                }
        }
    char nm[160], cfg[80];
    snprintf(cfg, sizeof cfg, "%s (T,H,W,P)=(%d,%d,%d,%d) B=%d%s", skip_kind_name(kind), T, H, W, P, B,
             l.has_padding ? " padded" : "");
    TU_EXPECT(be->count_nonfinite(ol, n * HD) == 0, "%s: non-finite outputs (padded queries)", cfg);
    snprintf(nm, sizeof nm, "sparse attn fwd == dense masked %s", cfg);
    tu_check(nm, tu_rel_err_fd(o, oref, nr * HD), 1e-5);
    snprintf(nm, sizeof nm, "sparse attn dq == dense masked %s", cfg);
    tu_check(nm, tu_rel_err_fd(dq, dqr, nr * HD), 1e-5);
    snprintf(nm, sizeof nm, "sparse attn dk == dense masked %s", cfg);
    tu_check(nm, tu_rel_err_fd(dk, dkr, nr * HD), 1e-5);
    snprintf(nm, sizeof nm, "sparse attn dv == dense masked %s", cfg);
    tu_check(nm, tu_rel_err_fd(dv, dvr, nr * HD), 1e-5);
    /* RoPE carries positions: rotating in the layout with its pos3 == moving the rotated raster */
    osp_rope *rp = be->rope_init(d, 1024, 10000.0);
    float *qr = tu_calloc(nr * HD, 4), *qrl = tu_calloc(n * HD, 4);
    be->rope_fwd(qr, q, r.pos3, rp, nr, NH);
    be->gather_rows(qrl, qr, enter, n, HD);
    be->rope_fwd(ql, ql, l.pos3, rp, n, NH);
    int64_t rb = 0;
    for (int64_t i = 0; i < n; i++)
        if (l.valid[i]) rb += tu_bitdiff(ql + i * HD, qrl + i * HD, HD);
    snprintf(nm, sizeof nm, "rope in layout == move of raster rope (#diff) %s", cfg);
    tu_check(nm, (double)rb, 0);
    be->rope_free(rp);
    free(enter), free(leave), free(q), free(k), free(v), free(dout), free(ql), free(kl), free(vl), free(ol), free(lse);
    free(o), free(dol), free(dql), free(dkl), free(dvl), free(dq), free(dk), free(dv), free(allow), free(oref);
    free(dqr), free(dkr), free(dvr), free(ob), free(gq), free(gk), free(gv), free(qr), free(qrl);
    skip_layout_free(&r), skip_layout_free(&l);
}

int main(void) {
    be = osp_backend_cpu();
    static const int grids[][4] = {{2, 8, 8, 2},  {3, 12, 16, 2}, {2, 9, 18, 3}, {1, 16, 16, 4},
                                   {1, 5, 6, 2},  {2, 5, 6, 2},   {2, 7, 10, 3}, {1, 45, 80, 2}};
    for (int i = 0; i < 8; i++) {
        test_membership(2, grids[i][0], grids[i][1], grids[i][2], grids[i][3]);
        test_moves(2, grids[i][0], grids[i][1], grids[i][2], grids[i][3]);
    }
    test_worked_example();
    test_720p_counts();
    test_padding_suffix();
    test_schedule();
    static const int att[][4] = {{2, 8, 8, 2}, {2, 5, 6, 2}, {2, 9, 18, 3}, {2, 7, 10, 3}};
    for (int i = 0; i < 4; i++)
        for (int kind = LAYOUT_TOKEN; kind <= LAYOUT_GROUP; kind++)
            test_sparse_attention((skip_kind)kind, 2, att[i][0], att[i][1], att[i][2], att[i][3]);
    return tu_summary("test_skiparse");
}
