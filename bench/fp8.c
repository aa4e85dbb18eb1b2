/*
 * bench/fp8.c — the `fp8` section of `osp bench` (CUDA only): the linear layers of a DiT block
 * three ways, each with its operand preparation included, as a training step runs them with bf16
 * activation storage:
 *   bf16   be->linear16_* (bf16 x, W converted per call, bf16 tensor cores);
 *   emul   be->linear_fq16_* (HiF8 fake quantisation into bf16 operands, bf16 tensor cores: the
 *          emulation the FP8 path replaces);
 *   fp8    cuda_fp8_linear_* (HiF8 rounding into E4M3 operands, E4M3 tensor cores).
 * Scales are device floats computed beforehand (be->hif8_scale_dev), as in training. Shapes:
 * Wan2.1-1.3B at 480P (32,760 tokens: q/k/v/o 1536x1536, ffn 1536x8960 and back) and
 * Wan2.1-14B (dim 5120, ffn 13824) on 8,190 tokens (a Skiparse subsequence of 480P).
 * TFLOP/s count 2 per multiply-add of the products (forward one, backward two).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/util.h"
#include "core/common.h"
#include "core/half.h"
#ifdef OSP_HAVE_CUDA
#include "model/cuda/fp8.h"
#endif

#ifdef OSP_HAVE_CUDA
typedef struct {
    const bench_ctx *b;
    int64_t N;
    int K, O;
    int mode; /* 0 bf16, 1 emul, 2 fp8 */
    bool bwd;
    osp_bf16 *x16, *y16;
    float *W, *bias, *dy, *dx, *dW, *db, *ds;
} fp8_arg;

static void fp8_run(void *p, double *t) {
    fp8_arg *a = p;
    const osp_backend *be = a->b->be;
    double t0 = bench_tick(a->b);
    if (!a->bwd) {
        if (a->mode == 0) be->linear16_fwd(NULL, a->y16, NULL, a->x16, a->W, a->bias, a->N, a->K, a->O);
        else if (a->mode == 1)
            be->linear_fq16_fwd(NULL, a->y16, NULL, a->x16, a->ds, a->W, a->ds + 1, a->bias, a->N, a->K, a->O, false);
        else cuda_fp8_linear_fwd(NULL, a->y16, NULL, a->x16, a->ds, a->W, a->ds + 1, a->bias, a->N, a->K, a->O, false);
    } else {
        if (a->mode == 0) be->linear16_bwd(a->dx, a->dW, a->db, a->dy, NULL, a->x16, a->W, a->N, a->K, a->O);
        else if (a->mode == 1)
            be->linear_fq16_bwd(a->dx, a->dW, a->db, a->dy, a->ds + 2, NULL, a->x16, a->ds, a->W, a->ds + 1, a->N,
                                a->K, a->O, false);
        else
            cuda_fp8_linear_bwd(a->dx, a->dW, a->db, a->dy, a->ds + 2, NULL, a->x16, a->ds, a->W, a->ds + 1, a->N,
                                a->K, a->O, false);
    }
    t[0] = bench_tick(a->b) - t0;
}
#endif

void bench_fp8(bench_ctx *b) {
#ifndef OSP_HAVE_CUDA
    bench_title("fp8: needs the CUDA backend (not built): skipped");
    (void)b;
#else
    const osp_backend *be = b->be;
    if (!b->cuda || !be->linear16_fwd || !be->linear_fq16_fwd || !be->hif8_scale_dev) {
        bench_title("fp8: needs the CUDA backend: skipped");
        return;
    }
    if (!cuda_fp8_available()) {
        bench_title("fp8: this GPU has no FP8 tensor cores: skipped");
        return;
    }
    struct {
        const char *name;
        int64_t N;
        int K, O;
    } sh[] = {
        {"1.3B q/k/v/o", 32760, 1536, 1536}, {"1.3B ffn.0", 32760, 1536, 8960}, {"1.3B ffn.2", 32760, 8960, 1536},
        {"14B q/k/v/o", 8190, 5120, 5120},   {"14B ffn.0", 8190, 5120, 13824},  {"14B ffn.2", 8190, 13824, 5120},
    };
    int ns = b->quick ? 3 : (int)(sizeof sh / sizeof sh[0]);
    bench_title("fp8: HiF8 linear layers on E4M3 tensor cores vs bf16 and vs the bf16 HiF8 emulation "
                "(operand preparation included; bf16-stored activations)");
    printf("%-13s %-4s %9s %9s %9s %9s %9s %9s %8s %8s\n", "linear", "pass", "bf16 ms", "emul ms", "fp8 ms",
           "bf16 TF/s", "emul TF/s", "fp8 TF/s", "fp8/bf16", "fp8/emul");
    json_t *js = bench_section(b, "fp8");
    uint64_t tot0 = 0, bad0 = 0;
    cuda_fp8_reset_counts();
    for (int i = 0; i < ns; i++) {
        fp8_arg a;
        memset(&a, 0, sizeof a);
        a.b = b;
        a.N = sh[i].N;
        a.K = sh[i].K;
        a.O = sh[i].O;
        int64_t nx = a.N * a.K, nw = (int64_t)a.O * a.K, ny = a.N * a.O;
        float *x = bench_rand(b, nx, 2.0f);
        a.x16 = be->alloc(sizeof(osp_bf16) * (size_t)nx);
        { /* the bf16-stored activation, rounded on the host */
            float *h = osp_malloc(sizeof(float) * (size_t)nx);
            osp_bf16 *h16 = osp_malloc(sizeof(osp_bf16) * (size_t)nx);
            be->download(h, x, sizeof(float) * (size_t)nx);
            for (int64_t k = 0; k < nx; k++) h16[k] = half_f32_to_bf16(h[k]);
            be->upload(a.x16, h16, sizeof(osp_bf16) * (size_t)nx);
            free(h);
            free(h16);
        }
        be->free(x);
        a.W = bench_rand(b, nw, 1.0f / sqrtf((float)a.K));
        a.bias = bench_rand(b, a.O, 0.1f);
        a.dy = bench_rand(b, ny, 1e-3f);
        a.y16 = be->alloc(sizeof(osp_bf16) * (size_t)ny);
        a.dx = be->alloc(sizeof(float) * (size_t)nx);
        a.dW = be->alloc(sizeof(float) * (size_t)nw);
        a.db = be->alloc(sizeof(float) * (size_t)a.O);
        a.ds = be->alloc(3 * sizeof(float));
        be->hif8_scale_dev(a.ds, NULL, a.x16, nx, 15.0f);
        be->hif8_scale_dev(a.ds + 1, a.W, NULL, nw, 15.0f);
        be->hif8_scale_dev(a.ds + 2, a.dy, NULL, ny, 224.0f);
        for (int p = 0; p < 2; p++) {
            double med[3], flops = (p ? 4.0 : 2.0) * (double)a.N * a.K * a.O;
            a.bwd = p == 1;
            for (int m = 0; m < 3; m++) {
                a.mode = m;
                bench_measure(b, fp8_run, &a, 1, &med[m]);
            }
            double r[3];
            for (int m = 0; m < 3; m++) r[m] = flops / med[m] * 1e-12;
            printf("%-13s %-4s %9.3f %9.3f %9.3f %9.1f %9.1f %9.1f %7.2fx %7.2fx\n", sh[i].name, p ? "bwd" : "fwd",
                   med[0] * 1e3, med[1] * 1e3, med[2] * 1e3, r[0], r[1], r[2], med[0] / med[2], med[1] / med[2]);
            json_array_append_new(js, json_pack("{s:s, s:s, s:I, s:i, s:i, s:f, s:f, s:f}", "linear", sh[i].name,
                                                "pass", p ? "bwd" : "fwd", "N", (json_int_t)a.N, "K", a.K, "O", a.O,
                                                "bf16_ms", med[0] * 1e3, "emul_ms", med[1] * 1e3, "fp8_ms",
                                                med[2] * 1e3));
        }
        void *bufs[] = {a.x16, a.W, a.bias, a.dy, a.y16, a.dx, a.dW, a.db, a.ds};
        for (size_t k = 0; k < sizeof bufs / sizeof bufs[0]; k++) be->free(bufs[k]);
    }
    cuda_fp8_counts(&tot0, &bad0);
    printf("E4M3-inexact elements over the section: %llu of %llu (%.2e)\n", (unsigned long long)bad0,
           (unsigned long long)tot0, tot0 ? (double)bad0 / (double)tot0 : 0.0);
    json_array_append_new(js, json_pack("{s:s, s:I, s:I}", "linear", "counts", "quantised", (json_int_t)tot0,
                                        "inexact", (json_int_t)bad0));
#endif
}
