/*
 * bench/ops.c — the op-level sections of `osp bench`:
 *   gemm      the linear layers of the bench DiT through be->linear_fwd / linear_bwd,
 *             against a plain cblas_sgemm of the same shape on the CPU;
 *   attn      attention forward and forward+backward, full sequence vs the Skiparse
 *             batch shape (P^2 = 4 subsequences of a quarter length); on CUDA with cuDNN
 *             loadable once per implementation (osp's kernels, cuDNN), each row naming
 *             the one that ran;
 *   skiparse  the layout moves (gathers / scatter-adds with the skip_move_index tables)
 *             against the attention time that the sparse layout saves;
 *   hif8      absmax + fake quantisation of the GEMM operands against the GEMMs they wrap.
 * FLOPs are 2 per multiply-add; attention counts 4*N^2*d*H forward and 3.5x that for
 * forward+backward (the convention of the FlashAttention papers and docs/anchors.md).
 */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/util.h"
#include "core/common.h"
#include "model/cuda/backend.h"
#ifdef OSP_HAVE_CUDA
#include "model/cuda/cudnn.h"
#endif
#include "model/skiparse.h"

/* ------------------------------------------------------------------ shapes */

typedef struct {
    const char *name;
    int64_t N; /* rows (tokens) */
    int K, O;  /* in, out features */
    int per_block; /* how many GEMMs of this shape one block runs over the video tokens */
} lin_shape;

/* The GEMMs over video tokens in one block: self q,k,v,o and cross q,o share [L,D]x[D,D];
 * cross k,v run over the text rows only and are left out (a few % of the block). */
static int bench_linears(const bench_model *m, lin_shape *s) {
    int64_t L = bench_model_tokens(m);
    s[0] = (lin_shape){"q/k/v/o", L, m->dim, m->dim, 6};
    s[1] = (lin_shape){"ffn.0", L, m->dim, m->ffn_dim, 1};
    s[2] = (lin_shape){"ffn.2", L, m->ffn_dim, m->dim, 1};
    return 3;
}

/* ------------------------------------------------------------------ gemm */

enum { PASS_FWD, PASS_DX, PASS_DW, PASS_N };
static const char *pass_name[PASS_N] = {"fwd", "bwd dx", "bwd dW"};

typedef struct {
    const bench_ctx *b;
    const lin_shape *s;
    int pass;
    bool ref; /* time the raw cblas call instead of the backend op */
    float *x, *W, *bias, *y, *dy, *dx, *dW;
} gemm_arg;

static void gemm_run(void *p, double *t) {
    gemm_arg *a = p;
    const osp_backend *be = a->b->be;
    const lin_shape *s = a->s;
    int N = (int)s->N, K = s->K, O = s->O;
    double t0 = bench_tick(a->b);
    if (!a->ref) {
        if (a->pass == PASS_FWD) be->linear_fwd(a->y, a->x, a->W, a->bias, s->N, K, O);
        else if (a->pass == PASS_DX) be->linear_bwd(a->dx, NULL, NULL, a->dy, a->x, a->W, s->N, K, O);
        else be->linear_bwd(NULL, a->dW, NULL, a->dy, a->x, a->W, s->N, K, O);
    } else if (a->pass == PASS_FWD) { /* the same products as bare BLAS calls (no bias, no accumulation) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, O, K, 1.0f, a->x, K, a->W, K, 0.0f, a->y, O);
    } else if (a->pass == PASS_DX) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, K, O, 1.0f, a->dy, O, a->W, K, 0.0f, a->dx, K);
    } else {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, K, N, 1.0f, a->dy, O, a->x, K, 0.0f, a->dW, K);
    }
    t[0] = bench_tick(a->b) - t0;
}

void bench_gemm(bench_ctx *b) {
    const osp_backend *be = b->be;
    bench_model m = bench_model_default(b);
    lin_shape sh[4];
    int ns = bench_linears(&m, sh);
    bool ref = !b->cuda;
    char title[256];
    snprintf(title, sizeof title, "gemm: linear layers of %s (%lld tokens, dim %d, ffn %d)%s", m.name,
             (long long)bench_model_tokens(&m), m.dim, m.ffn_dim,
             ref ? "; reference = cblas_sgemm (OpenBLAS, all threads) on the same shape" : "");
    bench_title(title);
    gemm_arg a[4];
    double med[4][PASS_N][2];
    for (int i = 0; i < ns; i++) {
        const lin_shape *s = &sh[i];
        int64_t nx = s->N * s->K, nw = (int64_t)s->O * s->K, ny = s->N * s->O;
        a[i] = (gemm_arg){b, s, 0, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
        a[i].x = bench_rand(b, nx, 1.0f);
        a[i].W = bench_rand(b, nw, 1.0f / sqrtf((float)s->K));
        a[i].bias = bench_rand(b, s->O, 0.1f);
        a[i].dy = bench_rand(b, ny, 1.0f);
        a[i].y = be->alloc(sizeof(float) * (size_t)ny);
        a[i].dx = be->alloc(sizeof(float) * (size_t)nx);
        a[i].dW = be->alloc(sizeof(float) * (size_t)nw);
        for (int p = 0; p < PASS_N; p++) {
            a[i].pass = p;
            bench_measure(b, gemm_run, &a[i], 1, &med[i][p][0]);
        }
    }
    if (ref) {
        /* OpenBLAS's own rate: all threads, measured after the backend so its worker threads
         * (which spin for a while after a call) never compete with the backend's. The CPU
         * backend may keep OpenBLAS at one thread (it calls BLAS inside its own OpenMP loops);
         * in OpenMP builds of OpenBLAS setting its threads also sets OpenMP's, hence the restore. */
        int threads = omp_get_max_threads(), blas_was = openblas_get_num_threads();
        openblas_set_num_threads(threads);
        for (int i = 0; i < ns; i++)
            for (int p = 0; p < PASS_N; p++) {
                a[i].pass = p;
                a[i].ref = true;
                bench_measure(b, gemm_run, &a[i], 1, &med[i][p][1]);
            }
        openblas_set_num_threads(blas_was);
        omp_set_num_threads(threads);
    }
    printf("%-9s %-7s %-20s %9s %9s %9s %7s\n", "linear", "pass", "BLAS MxNxK", "ms", bench_rate_unit(b),
           ref ? "cblas" : "", ref ? "ratio" : "");
    json_t *js = bench_section(b, "gemm");
    for (int i = 0; i < ns; i++) {
        const lin_shape *s = &sh[i];
        for (int p = 0; p < PASS_N; p++) {
            /* BLAS (M, N, K) of the product this pass computes */
            int64_t M = p == PASS_DW ? s->O : s->N;
            int64_t Nn = p == PASS_FWD ? s->O : s->K;
            int64_t Kk = p == PASS_FWD ? s->K : (p == PASS_DX ? s->O : s->N);
            double flops = 2.0 * (double)s->N * s->K * s->O, t = med[i][p][0];
            char shape[64];
            snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)M, (long long)Nn, (long long)Kk);
            double rate = bench_rate(b, flops, t);
            json_t *row = json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:f}", "linear", s->name, "pass",
                                    pass_name[p], "M", (json_int_t)M, "N", (json_int_t)Nn, "K", (json_int_t)Kk,
                                    "flops", flops, "ms", t * 1e3, "rate", rate);
            if (ref) {
                double r = bench_rate(b, flops, med[i][p][1]);
                printf("%-9s %-7s %-20s %9.3f %9.2f %9.2f %6.1f%%\n", s->name, pass_name[p], shape, t * 1e3, rate, r,
                       100.0 * rate / r);
                json_object_set_new(row, "cblas_rate", json_real(r));
                json_object_set_new(row, "ratio", json_real(rate / r));
            } else {
                printf("%-9s %-7s %-20s %9.3f %9.2f\n", s->name, pass_name[p], shape, t * 1e3, rate);
            }
            json_array_append_new(js, row);
        }
        float *bufs[] = {a[i].x, a[i].W, a[i].bias, a[i].dy, a[i].y, a[i].dx, a[i].dW};
        for (size_t k = 0; k < sizeof bufs / sizeof bufs[0]; k++) be->free(bufs[k]);
    }
}

/* ------------------------------------------------------------------ attn */

typedef struct {
    const char *name;
    int64_t R, N;
    int H, d;
    double anchor_fwd, anchor_fb; /* cuDNN SDPA bf16 on an H200, TFLOP/s (docs/anchors.md §1); 0 = none */
} attn_shape;

static double attn_flops(int64_t R, int64_t N, int H, int d) { return 4.0 * (double)R * N * N * d * H; }

/* One attention measurement and the implementation that served it: "cpu", "osp" (osp's kernels),
 * "cudnn", or "cudnn/osp" when cuDNN served the forward only (and "osp/cudnn" the reverse), told
 * by cuDNN's call counters. impl_env non-NULL: measured with the CUDA option attn set to that
 * implementation (osp_cuda_attn_parse's names), and the result is not kept for reuse (later
 * sections run the default implementation). */
static bench_attn_result attn_measure(bench_ctx *b, const attn_shape *s, const char *impl_env, char *impl,
                                      size_t implsz) {
    snprintf(impl, implsz, "%s", b->cuda ? "osp" : "cpu");
    int nattn = b->nattn;
    bench_attn_result cache[sizeof b->attn / sizeof b->attn[0]];
    const osp_cuda_options *cuda = osp_backend_cuda_options(b->be);
    osp_cuda_options saved = osp_cuda_options_default();
    if (impl_env && cuda) {
        saved = *cuda;
        osp_cuda_options o = saved;
        o.attn = (osp_cuda_attn)osp_cuda_attn_parse(impl_env);
        osp_backend_cuda_set_options(b->be, &o);
    }
    if (impl_env) {
        memcpy(cache, b->attn, sizeof cache);
        b->nattn = 0; /* measure afresh: the cached result of this shape is the default's */
    }
#ifdef OSP_HAVE_CUDA
    int64_t f0 = attn_cudnn_calls(0), g0 = attn_cudnn_calls(1);
#endif
    bench_attn_result r = bench_attn_time(b, s->R, s->N, s->H, s->d, NULL, true);
#ifdef OSP_HAVE_CUDA
    bool cf = attn_cudnn_calls(0) > f0, cb = attn_cudnn_calls(1) > g0;
    if (b->cuda && (cf || cb)) snprintf(impl, implsz, "%s", cf && cb ? "cudnn" : cf ? "cudnn/osp" : "osp/cudnn");
#endif
    if (impl_env && cuda) osp_backend_cuda_set_options(b->be, &saved);
    if (impl_env) {
        memcpy(b->attn, cache, sizeof cache);
        b->nattn = nattn;
    }
    return r;
}

void bench_attn(bench_ctx *b) {
    attn_shape sh[4];
    int ns;
    if (b->cuda) {
        sh[0] = (attn_shape){"480P full", 1, 32760, 12, 128, 563, 529};
        sh[1] = (attn_shape){"480P skiparse", 4, 8190, 12, 128, 0, 0};
        sh[2] = (attn_shape){"720P full", 1, 75600, 12, 128, 569, 536};
        sh[3] = (attn_shape){"720P skiparse", 4, 18900, 12, 128, 0, 0};
        ns = 4;
    } else if (b->quick) {
        sh[0] = (attn_shape){"full", 1, 2048, 2, 64, 0, 0};
        sh[1] = (attn_shape){"skiparse", 4, 512, 2, 64, 0, 0};
        ns = 2;
    } else {
        /* 8k tokens x 2 heads x 64: fwd 3.4e10 FLOP, ~10 s for the section on 2 cores */
        sh[0] = (attn_shape){"full", 1, 8192, 2, 64, 0, 0};
        sh[1] = (attn_shape){"skiparse", 4, 2048, 2, 64, 0, 0};
        ns = 2;
    }
    /* On CUDA each shape runs twice when cuDNN loads: the instance's implementation (option attn,
     * OSP_ATTN_IMPL overrides; auto = cuDNN where it serves the call) and the other one, so both
     * appear side by side. */
    bool both = false;
#ifdef OSP_HAVE_CUDA
    both = b->cuda && attn_cudnn_available();
#endif
    bench_title("attn: self-attention, fwd = 4*N^2*d*H FLOPs, fwd+bwd = 3.5x; skiparse = P^2 = 4 subsequences of N/4");
    printf("%-14s %-12s %-8s %-9s %10s %9s %10s %9s %8s%s\n", "shape", "R x N", "H x d", "impl", "fwd ms",
           bench_rate_unit(b), "fwd+bwd ms", bench_rate_unit(b), "vs full",
           b->cuda ? "  anchor fwd / fwd+bwd (cuDNN, H200)" : "");
    printf("q, k, v, o stored %s%s\n", bench_act16(b) ? "bf16 (as the model's blocks keep them)" : "fp32",
           bench_act16(b) ? "; OSP_ACT16=0: fp32 with conversions around the kernels" : "");
    json_t *js = bench_section(b, "attn");
    double full_fb[2] = {0, 0}, full_f[2] = {0, 0}; /* per row kind: default, the other implementation */
    for (int i = 0; i < ns; i++) {
        const attn_shape *s = &sh[i];
        char first[16] = "";
        for (int alt = 0; alt < 1 + both; alt++) {
            char impl[16];
            const char *env = NULL;
            if (alt) env = strstr(first, "cudnn") ? "osp" : "cudnn";
            bench_attn_result r = attn_measure(b, s, env, impl, sizeof impl);
            if (!alt) snprintf(first, sizeof first, "%s", impl);
            double f = attn_flops(s->R, s->N, s->H, s->d);
            double fb = r.fwd + r.bwd;
            bool sparse = s->R > 1;
            if (!sparse) {
                full_f[alt] = r.fwd;
                full_fb[alt] = fb;
            }
            char rn[32], hd[16], vs[16] = "", anc[64] = "";
            snprintf(rn, sizeof rn, "%lldx%lld", (long long)s->R, (long long)s->N);
            snprintf(hd, sizeof hd, "%dx%d", s->H, s->d);
            if (sparse && full_fb[alt] > 0) snprintf(vs, sizeof vs, "%.2fx", full_fb[alt] / fb);
            if (s->anchor_fwd > 0) snprintf(anc, sizeof anc, "  %.0f / %.0f", s->anchor_fwd, s->anchor_fb);
            printf("%-14s %-12s %-8s %-9s %10.2f %9.2f %10.2f %9.2f %8s%s\n", s->name, rn, hd, impl, r.fwd * 1e3,
                   bench_rate(b, f, r.fwd), fb * 1e3, bench_rate(b, 3.5 * f, fb), vs, anc);
            json_t *row = json_pack("{s:s, s:s, s:I, s:I, s:i, s:i, s:f, s:f, s:f, s:f, s:f}", "shape", s->name,
                                    "impl", impl, "R", (json_int_t)s->R, "N", (json_int_t)s->N, "heads", s->H,
                                    "head_dim", s->d, "fwd_flops", f, "fwd_ms", r.fwd * 1e3, "fwd_bwd_ms", fb * 1e3,
                                    "fwd_rate", bench_rate(b, f, r.fwd), "fwd_bwd_rate", bench_rate(b, 3.5 * f, fb));
            json_object_set_new(row, "storage", json_string(bench_act16(b) ? "bf16" : "fp32"));
            if (sparse && full_f[alt] > 0) {
                json_object_set_new(row, "fwd_speedup_vs_full", json_real(full_f[alt] / r.fwd));
                json_object_set_new(row, "fwd_bwd_speedup_vs_full", json_real(full_fb[alt] / fb));
            }
            json_array_append_new(js, row);
        }
    }
}

/* ------------------------------------------------------------------ skiparse */

typedef struct {
    const bench_ctx *b;
    float *src, *dst;
    const int32_t *idx;
    int64_t n;
    int D;
    bool scatter;
} move_arg;

static void move_run(void *p, double *t) {
    move_arg *a = p;
    double t0 = bench_tick(a->b);
    if (a->scatter) a->b->be->scatter_add_rows(a->dst, a->src, a->idx, a->n, a->D);
    else a->b->be->gather_rows(a->dst, a->src, a->idx, a->n, a->D);
    t[0] = bench_tick(a->b) - t0;
}

typedef struct {
    const char *name;
    int T, H, W, heads, d;
} skip_shape;

static void skiparse_one(bench_ctx *b, const skip_shape *s, json_t *js, int sparse_blocks) {
    const osp_backend *be = b->be;
    const int P = 2, D = s->heads * s->d;
    skip_layout ras, tok, grp;
    skip_layout_init(&ras, LAYOUT_RASTER, 1, s->T, s->H, s->W, P);
    skip_layout_init(&tok, LAYOUT_TOKEN, 1, s->T, s->H, s->W, P);
    skip_layout_init(&grp, LAYOUT_GROUP, 1, s->T, s->H, s->W, P);
    struct {
        const char *name;
        const skip_layout *from, *to;
    } mv[3] = {{"enter raster->token", &ras, &tok}, {"switch token->group", &tok, &grp}, {"leave group->raster", &grp, &ras}};
    int64_t maxpos = tok.npos > ras.npos ? tok.npos : ras.npos;
    float *src = bench_rand(b, maxpos * D, 1.0f);
    float *dst = be->alloc(sizeof(float) * (size_t)(maxpos * D));
    printf("%s: token grid %dx%dx%d (padded %dx%d), D = %d, P = %d\n", s->name, s->T, s->H, s->W, tok.Hp, tok.Wp, D, P);
    printf("  %-22s %10s %8s %12s %8s\n", "move", "gather ms", "GB/s", "scatter ms", "GB/s");
    double tg[3], tsc[3];
    json_t *moves = json_array();
    for (int i = 0; i < 3; i++) {
        int32_t *idx_h = skip_move_index(mv[i].from, mv[i].to);
        int64_t n = mv[i].to->npos;
        int32_t *idx = be->alloc(sizeof(int32_t) * (size_t)n);
        be->upload(idx, idx_h, sizeof(int32_t) * (size_t)n);
        move_arg a = {b, src, dst, idx, n, D, false};
        bench_measure(b, move_run, &a, 1, &tg[i]);
        /* backward: scatter-add the moved gradient back (dst of size from->npos) */
        a = (move_arg){b, src, dst, idx, n, D, true};
        bench_measure(b, move_run, &a, 1, &tsc[i]);
        double bytes = (double)n * D * 4 * 2 + (double)n * 4; /* rows read + written, index */
        printf("  %-22s %10.3f %8.1f %12.3f %8.1f\n", mv[i].name, tg[i] * 1e3, bytes / tg[i] / 1e9, tsc[i] * 1e3,
               bytes / tsc[i] / 1e9);
        json_array_append_new(moves, json_pack("{s:s, s:I, s:f, s:f, s:f}", "move", mv[i].name, "rows",
                                               (json_int_t)n, "gather_ms", tg[i] * 1e3, "scatter_ms", tsc[i] * 1e3,
                                               "bytes", bytes));
        be->free(idx);
        free(idx_h);
    }
    be->free(src);
    be->free(dst);
    /* the attention these layouts make cheaper: full over L tokens vs P^2 rows of N' */
    bench_attn_result full = bench_attn_time(b, 1, ras.N, s->heads, s->d, NULL, true);
    bench_attn_result sp = bench_attn_time(b, tok.R, tok.N, s->heads, s->d, tok.has_padding ? tok.valid : NULL, true);
    double saved_f = full.fwd - sp.fwd, saved_fb = (full.fwd + full.bwd) - (sp.fwd + sp.bwd);
    printf("  attention fwd: full %.2f ms, sparse %.2f ms, saved %.2f ms;  fwd+bwd: full %.2f, sparse %.2f, saved %.2f ms\n",
           full.fwd * 1e3, sp.fwd * 1e3, saved_f * 1e3, (full.fwd + full.bwd) * 1e3, (sp.fwd + sp.bwd) * 1e3,
           saved_fb * 1e3);
    /* a sparse block pays one switch (gather fwd, scatter-add bwd); the region pays one
     * enter and one leave in place of the first and last switch */
    double blk_f = tg[1] / saved_f, blk_fb = (tg[1] + tsc[1]) / saved_fb;
    double reg_f = (tg[0] + (sparse_blocks - 1) * tg[1] + tg[2]) / (sparse_blocks * saved_f);
    double reg_fb = (tg[0] + tsc[0] + (sparse_blocks - 1) * (tg[1] + tsc[1]) + tg[2] + tsc[2]) /
                    (sparse_blocks * saved_fb);
    printf("  move cost / attention saved: per sparse block fwd %.3f%%, fwd+bwd %.3f%%;"
           " region of %d sparse blocks (enter + %d switches + leave) fwd %.3f%%, fwd+bwd %.3f%%\n",
           100 * blk_f, 100 * blk_fb, sparse_blocks, sparse_blocks - 1, 100 * reg_f, 100 * reg_fb);
    json_array_append_new(
        js, json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:o, s:f, s:f, s:f, s:f, s:f, s:f, s:i, s:f, s:f}",
                      "shape", s->name, "T", s->T, "H", s->H, "W", s->W, "heads", s->heads, "head_dim", s->d, "P", P,
                      "moves", moves, "attn_full_fwd_ms", full.fwd * 1e3, "attn_sparse_fwd_ms", sp.fwd * 1e3,
                      "attn_full_fwd_bwd_ms", (full.fwd + full.bwd) * 1e3, "attn_sparse_fwd_bwd_ms",
                      (sp.fwd + sp.bwd) * 1e3, "block_overhead_fwd", blk_f, "block_overhead_fwd_bwd", blk_fb,
                      "sparse_blocks", sparse_blocks, "region_overhead_fwd", reg_f, "region_overhead_fwd_bwd",
                      reg_fb));
    skip_layout_free(&ras);
    skip_layout_free(&tok);
    skip_layout_free(&grp);
}

void bench_skiparse(bench_ctx *b) {
    bench_title("skiparse: layout moves (be->gather_rows / scatter_add_rows, P = 2) vs the attention time they save");
    json_t *js = bench_section(b, "skiparse");
    if (b->cuda) {
        /* Wan2.1-1.3B (D = 1536) with 30 layers, K = 8 full blocks: 22 sparse blocks */
        skip_shape s480 = {"480P", 21, 30, 52, 12, 128}, s720 = {"720P", 21, 45, 80, 12, 128};
        skiparse_one(b, &s480, js, 22);
        skiparse_one(b, &s720, js, 22);
    } else if (b->quick) {
        skip_shape s = {"cpu-quick", 4, 16, 32, 2, 64};
        skiparse_one(b, &s, js, 2);
    } else {
        /* the attn section's shape (its timings are reused): 8x32x32 = 8192 tokens, D = 128 */
        skip_shape s = {"cpu-mid", 8, 32, 32, 2, 64};
        skiparse_one(b, &s, js, 4);
    }
}

/* ------------------------------------------------------------------ hif8 */

typedef struct {
    const bench_ctx *b;
    const lin_shape *s;
    bool bwd;
    float *x, *W, *bias, *dy, *qx, *qw, *qg, *y, *dx, *dW, *db;
    float *ds; /* device scales x, W, dy (backends with hif8_scale_dev) */
} fq_arg;

/* scale as the current-scaling recipe computes it: target / amax (docs/hif8.md §4) */
static float fq_scale(float amax) { return 15.0f / (amax > 1e-8f ? amax : 1e-8f); }

/* What runs before the quantised GEMM: the scales (on the device where the backend keeps them
 * there, else absmax to the host; then, without a fused path, the fake-quant copies). */
static void fq_prep(fq_arg *a, float sc[3]) {
    const osp_backend *be = a->b->be;
    const lin_shape *s = a->s;
    int64_t nx = s->N * s->K, nw = (int64_t)s->O * s->K, ny = s->N * s->O;
    bool fused = be->linear_fq_fwd && be->linear_fq_bwd;
    if (a->ds) { /* the training path: scales computed and read on the device, no host sync */
        if (!a->bwd) {
            be->hif8_scale_dev(a->ds, a->x, NULL, nx, 15.0f);
            be->hif8_scale_dev(a->ds + 1, a->W, NULL, nw, 15.0f);
        } else {
            be->hif8_scale_dev(a->ds + 2, a->dy, NULL, ny, 224.0f);
        }
    } else if (!a->bwd) {
        sc[0] = fq_scale(be->absmax(a->x, nx));
        sc[1] = fq_scale(be->absmax(a->W, nw));
        if (!fused) be->hif8_fq(a->qx, a->x, nx, sc[0], false), be->hif8_fq(a->qw, a->W, nw, sc[1], false);
    } else { /* the backward re-rounds x, W with the forward's scales and rounds dY */
        sc[2] = fq_scale(be->absmax(a->dy, ny));
        if (!fused) {
            be->hif8_fq(a->qx, a->x, nx, sc[0], false);
            be->hif8_fq(a->qw, a->W, nw, sc[1], false);
            be->hif8_fq(a->qg, a->dy, ny, sc[2], false);
        }
    }
}

/* The GEMM on quantised operands: be->linear_fq16_* with device scales, be->linear_fq_* (both
 * quantise while preparing their operands), or the plain GEMM on the fake-quant copies. */
static void fq_gemm(fq_arg *a, const float sc[3]) {
    const osp_backend *be = a->b->be;
    const lin_shape *s = a->s;
    bool fused = be->linear_fq_fwd && be->linear_fq_bwd;
    if (!a->bwd) {
        if (a->ds)
            be->linear_fq16_fwd(a->y, NULL, a->x, NULL, a->ds, a->W, a->ds + 1, a->bias, s->N, s->K, s->O, false);
        else if (fused) be->linear_fq_fwd(a->y, a->x, sc[0], a->W, sc[1], a->bias, s->N, s->K, s->O, false);
        else be->linear_fwd(a->y, a->qx, a->qw, a->bias, s->N, s->K, s->O);
    } else {
        if (a->ds)
            be->linear_fq16_bwd(a->dx, a->dW, a->db, a->dy, a->ds + 2, a->x, NULL, a->ds, a->W, a->ds + 1, s->N, s->K,
                                s->O, false);
        else if (fused)
            be->linear_fq_bwd(a->dx, a->dW, a->db, a->dy, sc[2], a->x, sc[0], a->W, sc[1], s->N, s->K, s->O, false);
        else be->linear_bwd(a->dx, a->dW, a->db, a->qg, a->qx, a->qw, s->N, s->K, s->O);
    }
}

/* t[0]: fq_prep; t[1]: fq_gemm; t[2]: the same GEMM unquantised. */
static void fq_run(void *p, double *t) {
    fq_arg *a = p;
    const osp_backend *be = a->b->be;
    const lin_shape *s = a->s;
    float sc[3] = {7.0f, 90.0f, 0.0f}; /* the backward's x, W scales: fixed values stand in for the forward's */
    double t0 = bench_tick(a->b);
    fq_prep(a, sc);
    double t1 = bench_tick(a->b);
    fq_gemm(a, sc);
    double t2 = bench_tick(a->b);
    if (!a->bwd) be->linear_fwd(a->y, a->x, a->W, a->bias, s->N, s->K, s->O);
    else be->linear_bwd(a->dx, a->dW, a->db, a->dy, a->x, a->W, s->N, s->K, s->O);
    double t3 = bench_tick(a->b);
    t[0] = t1 - t0;
    t[1] = t2 - t1;
    t[2] = t3 - t2;
}

void bench_hif8(bench_ctx *b) {
    const osp_backend *be = b->be;
    bench_model m = bench_model_default(b);
    lin_shape sh[4];
    int ns = bench_linears(&m, sh);
    char title[256];
    snprintf(title, sizeof title,
             "hif8: quantised GEMM (%s) vs the plain GEMM (%s, %lld tokens); bwd = dx + dW + db",
             be->hif8_scale_dev ? "device scales, then be->linear_fq16_* quantising its operands"
             : be->linear_fq_fwd ? "absmax, then be->linear_fq_* quantising its operands"
                                 : "absmax + be->hif8_fq copies, then the GEMM",
             m.name, (long long)bench_model_tokens(&m));
    bench_title(title);
    printf("%-9s %-5s %10s %10s %10s %10s\n", "linear", "pass", "pre ms", "q-gemm ms", "gemm ms", "overhead");
    json_t *js = bench_section(b, "hif8");
    double blk_q[2] = {0, 0}, blk_g[2] = {0, 0};
    for (int i = 0; i < ns; i++) {
        const lin_shape *s = &sh[i];
        int64_t nx = s->N * s->K, nw = (int64_t)s->O * s->K, ny = s->N * s->O;
        fq_arg a = {b, s, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
        if (be->hif8_scale_dev && be->linear_fq16_fwd && be->linear_fq16_bwd) a.ds = be->alloc(3 * sizeof(float));
        a.x = bench_rand(b, nx, 2.0f);
        a.W = bench_rand(b, nw, 1.0f / sqrtf((float)s->K));
        a.bias = bench_rand(b, s->O, 0.1f);
        a.dy = bench_rand(b, ny, 1e-3f);
        a.qx = be->alloc(sizeof(float) * (size_t)nx);
        a.qw = be->alloc(sizeof(float) * (size_t)nw);
        a.qg = be->alloc(sizeof(float) * (size_t)ny);
        a.y = be->alloc(sizeof(float) * (size_t)ny);
        a.dx = be->alloc(sizeof(float) * (size_t)nx);
        a.dW = be->alloc(sizeof(float) * (size_t)nw);
        a.db = be->alloc(sizeof(float) * (size_t)s->O);
        for (int p = 0; p < 2; p++) {
            a.bwd = p == 1;
            double med[3];
            bench_measure(b, fq_run, &a, 3, med);
            double extra = med[0] + med[1] - med[2]; /* what quantisation adds to this layer */
            printf("%-9s %-5s %10.3f %10.3f %10.3f %9.1f%%\n", s->name, p ? "bwd" : "fwd", med[0] * 1e3,
                   med[1] * 1e3, med[2] * 1e3, 100 * extra / med[2]);
            json_array_append_new(js, json_pack("{s:s, s:s, s:I, s:i, s:i, s:f, s:f, s:f, s:f}", "linear", s->name,
                                                "pass", p ? "bwd" : "fwd", "N", (json_int_t)s->N, "K", s->K, "O",
                                                s->O, "pre_ms", med[0] * 1e3, "qgemm_ms", med[1] * 1e3, "gemm_ms",
                                                med[2] * 1e3, "overhead", extra / med[2]));
            blk_q[p] += s->per_block * extra;
            blk_g[p] += s->per_block * med[2];
        }
        float *bufs[] = {a.x, a.W, a.bias, a.dy, a.qx, a.qw, a.qg, a.y, a.dx, a.dW, a.db};
        for (size_t k = 0; k < sizeof bufs / sizeof bufs[0]; k++) be->free(bufs[k]);
        if (a.ds) be->free(a.ds);
    }
    printf("per block (6 x q/k/v/o-shaped + ffn.0 + ffn.2): fwd overhead %.1f%%, bwd overhead %.1f%%\n",
           100 * blk_q[0] / blk_g[0], 100 * blk_q[1] / blk_g[1]);
    json_array_append_new(js, json_pack("{s:s, s:f, s:f}", "linear", "block", "fwd_overhead", blk_q[0] / blk_g[0],
                                        "bwd_overhead", blk_q[1] / blk_g[1]));
}
