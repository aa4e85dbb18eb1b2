/*
 * bench/dit.c — the model-level sections of `osp bench`:
 *   dit   the whole DiT forward and forward+backward, full attention vs the OSP-Next
 *         hybrid (P = 2), with and without activation recomputation. CPU: a small model
 *         (head dim 128 as in Wan); CUDA: Wan2.1-1.3B at 480P and 720P, forward.
 *   step  (CUDA) one training step of the 1.3B at 480P: forward + backward with
 *         recomputation + AdamW, and the device memory it holds.
 * Model FLOPs come from wan_forward_flops (2 per MAC, attention over the tokens actually
 * attended); forward+backward is counted as 3x the forward (recomputation not counted),
 * so a recompute run shows its overhead as a lower rate.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/util.h"
#include "core/common.h"

typedef struct {
    const bench_ctx *b;
    wan_model *m;
    float *lat, *text, *out, *dout;
    float ts[1];
    bool backward, adamw;
    float *adam_m, *adam_v;
    int step;
} dit_arg;

static void dit_run(void *p, double *t) {
    dit_arg *a = p;
    const osp_backend *be = a->b->be;
    double t0 = bench_tick(a->b);
    wan_forward(a->m, a->lat, a->ts, a->text, a->out);
    double t1 = bench_tick(a->b);
    t[0] = t1 - t0;
    t[1] = t[2] = 0;
    if (!a->backward) return;
    wan_zero_grads(a->m); /* not timed: a trainer zeroes once per step, off the critical path */
    double t2 = bench_tick(a->b);
    wan_backward(a->m, a->dout, NULL, NULL);
    double t3 = bench_tick(a->b);
    t[1] = t3 - t2;
    if (!a->adamw) return;
    a->step++;
    int64_t n = wan_arena_floats(a->m);
    float b1 = 0.9f, b2 = 0.999f;
    be->adamw(wan_params(a->m), wan_grads(a->m), a->adam_m, a->adam_v, n, 1e-5f, b1, b2, 1e-8f, 0.01f,
              1.0f - powf(b1, (float)a->step), 1.0f - powf(b2, (float)a->step), 1.0f);
    t[2] = bench_tick(a->b) - t3;
}

/* Random inputs for one latent shape of model bm (backend memory, freed by dit_inputs_free). */
static void dit_inputs(bench_ctx *b, dit_arg *a, const bench_model *bm, int T, int Hl, int Wl) {
    int64_t nlat = 16LL * T * Hl * Wl;
    a->lat = bench_rand(b, nlat, 1.0f);
    a->text = bench_rand(b, (int64_t)bm->text_len * bm->text_dim, 1.0f);
    a->dout = bench_rand(b, nlat, 1.0f / sqrtf((float)nlat));
    a->out = b->be->alloc(sizeof(float) * (size_t)nlat);
    a->ts[0] = 500.0f;
}

static void dit_inputs_free(const bench_ctx *b, dit_arg *a) {
    float *bufs[] = {a->lat, a->text, a->dout, a->out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) b->be->free(bufs[i]);
}

/* Timed runs are slow at model level: cap them at 3 unless --repeat asked for more. */
static bench_ctx model_ctx(const bench_ctx *b) {
    bench_ctx c = *b;
    if (!b->repeat_set && c.repeat > 3) c.repeat = 3;
    return c;
}

typedef struct {
    const char *name;
    bool hybrid, recompute, backward;
    int K;
} dit_variant;

static void print_row(const bench_ctx *b, const char *name, const char *what, double sec, double flops,
                      int64_t tokens, double base) {
    char vs[16] = "";
    if (base > 0) snprintf(vs, sizeof vs, "%.2fx", base / sec);
    printf("%-26s %-8s %10.1f %10.0f %9.2f %9.2f %8s\n", name, what, sec * 1e3, tokens / sec,
           flops / (b->cuda ? 1e12 : 1e9), bench_rate(b, flops, sec), vs);
}

/* One model config measured at one or more latent shapes. */
static void dit_variant_run(bench_ctx *b, const bench_model *bm, const dit_variant *v, const int (*shapes)[3],
                            const char **shape_names, int nshape, double *base_f, double *base_fb, double *f_out,
                            json_t *js) {
    bench_ctx mc = model_ctx(b);
    wan_model *m = bench_wan_init(b, bm, v->hybrid, v->K, v->recompute);
    for (int s = 0; s < nshape; s++) {
        int T = shapes[s][0], Hl = shapes[s][1], Wl = shapes[s][2];
        wan_set_shape(m, 1, T, Hl, Wl);
        dit_arg a;
        memset(&a, 0, sizeof a);
        a.b = &mc;
        a.m = m;
        a.backward = v->backward;
        dit_inputs(b, &a, bm, T, Hl, Wl);
        double med[3];
        bench_measure(&mc, dit_run, &a, 3, med);
        double g, at;
        wan_forward_flops(m, &g, &at);
        int64_t tok = (int64_t)T * (Hl / 2) * (Wl / 2);
        char name[96];
        snprintf(name, sizeof name, "%s%s%s", nshape > 1 ? shape_names[s] : "", nshape > 1 ? " " : "", v->name);
        /* speedups against the full-attention run of the same shape (CUDA: recompute on for all) */
        bool is_base = !v->hybrid && (b->cuda || !v->recompute);
        print_row(b, name, "fwd", med[0], g + at, tok, is_base ? 0 : base_f[s]);
        if (v->backward) print_row(b, name, "fwd+bwd", med[0] + med[1], 3 * (g + at), tok, is_base ? 0 : base_fb[s]);
        if (f_out) f_out[s] = med[0];
        if (is_base) {
            base_f[s] = med[0];
            base_fb[s] = med[0] + med[1];
        }
        json_t *row = json_pack("{s:s, s:s, s:b, s:b, s:i, s:I, s:f, s:f, s:f, s:I}", "variant", v->name, "shape",
                                shape_names[s], "hybrid", v->hybrid, "recompute", v->recompute, "num_full_blocks",
                                v->K, "tokens", (json_int_t)tok, "fwd_gemm_flops", g, "fwd_attn_flops", at,
                                "fwd_ms", med[0] * 1e3, "activation_bytes", (json_int_t)wan_activation_bytes(m));
        if (v->backward) json_object_set_new(row, "fwd_bwd_ms", json_real((med[0] + med[1]) * 1e3));
        json_array_append_new(js, row);
        dit_inputs_free(b, &a);
    }
    wan_free(m);
}

void bench_dit(bench_ctx *b) {
    bench_model bm = bench_model_default(b);
    json_t *js = bench_section(b, "dit");
    char title[320];
    if (b->cuda) {
        /* 81 frames: latent T = 21; 480P 60x104, 720P 90x160, 768P (768x1280) 96x160 */
        static const int shapes[3][3] = {{21, 60, 104}, {21, 90, 160}, {21, 96, 160}};
        const char *names[3] = {"480P", "720P", "768P"};
        snprintf(title, sizeof title,
                 "dit: Wan2.1-1.3B forward (dim %d, ffn %d, %d layers, %d heads, text %dx%d), B = 1, recompute on "
                 "(activations of one block); hybrid = P 2, K 8",
                 bm.dim, bm.ffn_dim, bm.num_layers, bm.num_heads, bm.text_len, bm.text_dim);
        bench_title(title);
        printf("%-26s %-8s %10s %10s %9s %9s %8s\n", "model", "pass", "ms", "tokens/s", b->cuda ? "TFLOP" : "GFLOP", bench_rate_unit(b),
               "vs full");
        double base_f[3] = {0, 0, 0}, base_fb[3] = {0, 0, 0};
        dit_variant full = {"full", false, true, false, 0}, hyb = {"hybrid", true, true, false, 8};
        double hyb_f[3] = {0, 0, 0};
        dit_variant_run(b, &bm, &full, shapes, names, 3, base_f, base_fb, NULL, js);
        dit_variant_run(b, &bm, &hyb, shapes, names, 3, base_f, base_fb, hyb_f, js);
        /* ideal hybrid speedup from this run's attention share: the same forward with every
         * sparse block's attention costing exactly 1/P^2 of full attention (docs/skiparse.md §11) */
        printf("%-8s %10s %12s %12s %10s %10s %10s\n", "shape", "attn ms", "attn share", "ideal ms", "ideal", "got",
               "of ideal");
        json_t *ideal = bench_section(b, "hybrid_ideal");
        for (int s = 0; s < 3; s++) {
            int64_t tok = (int64_t)shapes[s][0] * (shapes[s][1] / 2) * (shapes[s][2] / 2);
            bench_attn_result a = bench_attn_time(b, 1, tok, bm.num_heads, bm.dim / bm.num_heads, NULL, false);
            int nsparse = bm.num_layers - hyb.K;
            double attn_all = bm.num_layers * a.fwd, t_ideal = base_f[s] - nsparse * a.fwd * (1.0 - 1.0 / 4.0);
            double sp_ideal = base_f[s] / t_ideal, sp = base_f[s] / hyb_f[s];
            printf("%-8s %10.1f %11.1f%% %12.1f %9.2fx %9.2fx %9.1f%%\n", names[s], attn_all * 1e3,
                   100.0 * attn_all / base_f[s], t_ideal * 1e3, sp_ideal, sp, 100.0 * sp / sp_ideal);
            json_array_append_new(ideal, json_pack("{s:s, s:f, s:f, s:f, s:f, s:f}", "shape", names[s], "attn_fwd_ms_per_block",
                                                   a.fwd * 1e3, "full_fwd_ms", base_f[s] * 1e3, "hybrid_fwd_ms",
                                                   hyb_f[s] * 1e3, "ideal_speedup", sp_ideal, "speedup", sp));
        }
        printf("anchor (PyTorch eager bf16 + SDPA, H200, docs/anchors.md §3): 480P fwd 621 ms, 720P fwd 2484 ms\n");
        return;
    }
    /* CPU: hybrid with K = 0 makes every block sparse (token, group, token, group) */
    int shapes[1][3] = {{bm.T, bm.Hl, bm.Wl}};
    const char *names[1] = {bm.name};
    snprintf(title, sizeof title,
             "dit: %s (dim %d, ffn %d, %d layers, %d heads x %d, text %dx%d, latent 16x%dx%dx%d = %lld tokens), B = 1; "
             "hybrid = P 2, K 0",
             bm.name, bm.dim, bm.ffn_dim, bm.num_layers, bm.num_heads, bm.dim / bm.num_heads, bm.text_len, bm.text_dim,
             bm.T, bm.Hl, bm.Wl, (long long)bench_model_tokens(&bm));
    bench_title(title);
    printf("%-26s %-8s %10s %10s %9s %9s %8s\n", "model", "pass", "ms", "tokens/s", b->cuda ? "TFLOP" : "GFLOP", bench_rate_unit(b),
           "vs full");
    double base_f[1] = {0}, base_fb[1] = {0};
    dit_variant v[4] = {{"full", false, false, true, 0},
                        {"hybrid", true, false, true, 0},
                        {"full + recompute", false, true, true, 0},
                        {"hybrid + recompute", true, true, true, 0}};
    for (int i = 0; i < 4; i++)
        dit_variant_run(b, &bm, &v[i], (const int (*)[3])shapes, names, 1, base_f, base_fb, NULL, js);
}

void bench_step(bench_ctx *b) {
    if (!b->cuda) {
        bench_title("step: skipped (CUDA only)");
        return;
    }
    bench_model bm = bench_model_default(b); /* 1.3B at 480P */
    bench_title("step: Wan2.1-1.3B at 480P (32,760 tokens), B = 1: forward + backward (recompute) + AdamW");
    printf("%-8s %10s %10s %10s %10s %9s %6s %11s %15s\n", "model", "fwd ms", "bwd ms", "adamw ms", "step ms", "TFLOP/s",
           "MFU", "arenas GiB", "mem used GiB");
    json_t *js = bench_section(b, "step");
    bench_ctx mc = model_ctx(b);
    const double GiB = 1024.0 * 1024.0 * 1024.0;
    /* full, hybrid (P 2, K 8), and full with HiF8 fake-quantised GEMMs (docs/hif8.md §7) under
     * current and delayed scaling: the last two give what quantisation adds to a step */
    static const char *const vname[4] = {"full", "hybrid", "hif8", "hif8-dly"};
    double full_step = 0;
    for (int h = 0; h < 4; h++) {
        double used0 = 0, tot = 0, used1 = 0;
        bool mem = bench_device_memory(b, &used0, &tot);
        wan_config c = bench_wan_config(&bm, h == 1, 2, h == 1 ? 8 : 0, true);
        if (h >= 2) {
            c.quant = true;
            c.quant_delayed = h == 3;
            c.quant_history = 16;
            c.quant_fwd_target = 15.0f;
            c.quant_grad_target = 224.0f;
        }
        wan_model *m = bench_wan_init_config(b, &c);
        wan_set_shape(m, 1, bm.T, bm.Hl, bm.Wl);
        int64_t n = wan_arena_floats(m);
        dit_arg a;
        memset(&a, 0, sizeof a);
        a.b = &mc;
        a.m = m;
        a.backward = a.adamw = true;
        a.adam_m = b->be->alloc(sizeof(float) * (size_t)n);
        a.adam_v = b->be->alloc(sizeof(float) * (size_t)n);
        dit_inputs(b, &a, &bm, bm.T, bm.Hl, bm.Wl);
        double med[3];
        bench_measure(&mc, dit_run, &a, 3, med);
        if (mem) bench_device_memory(b, &used1, &tot);
        double g, at;
        wan_forward_flops(m, &g, &at);
        double step = med[0] + med[1] + med[2];
        /* params + grads + Adam m, v + activations: what osp allocates for this step */
        double arenas = 4.0 * n * sizeof(float) + (double)wan_activation_bytes(m);
        char memcol[48] = "-";
        if (mem) snprintf(memcol, sizeof memcol, "%.2f (+%.2f)", used1 / GiB, (used1 - used0) / GiB);
        if (h == 0) full_step = step;
        /* MFU: model FLOPs (3x forward, recomputation not counted) per step time against the
         * dense bf16 tensor-core peak of H100/H200 SXM, 989 TFLOP/s */
        double rate = bench_rate(b, 3 * (g + at), step);
        printf("%-8s %10.1f %10.1f %10.1f %10.1f %9.1f %5.1f%% %11.2f %15s\n", vname[h], med[0] * 1e3, med[1] * 1e3,
               med[2] * 1e3, step * 1e3, rate, 100.0 * rate / 989.0, arenas / GiB, memcol);
        if (h >= 2) printf("%-8s HiF8 (%s scaling) adds %.1f%% to the step\n", "", h == 3 ? "delayed" : "current",
                           100.0 * (step - full_step) / full_step);
        json_t *row = json_pack("{s:s, s:f, s:f, s:f, s:f, s:I}", "variant", vname[h], "fwd_ms",
                                med[0] * 1e3, "bwd_ms", med[1] * 1e3, "adamw_ms", med[2] * 1e3, "step_ms", step * 1e3,
                                "arena_bytes", (json_int_t)arenas);
        if (mem) {
            json_object_set_new(row, "mem_used_bytes", json_integer((json_int_t)used1));
            json_object_set_new(row, "mem_used_before_bytes", json_integer((json_int_t)used0));
            json_object_set_new(row, "mem_total_bytes", json_integer((json_int_t)tot));
        }
        json_array_append_new(js, row);
        dit_inputs_free(b, &a);
        b->be->free(a.adam_m);
        b->be->free(a.adam_v);
        wan_free(m);
    }
    printf("arenas = params + grads + AdamW m, v + activations; mem used = device memory in use after the step\n"
           "(osp allocates once, so this is the peak; in parentheses: the growth over the step's model)\n"
           "anchor (diffusers eager bf16, gradient checkpointing, H200): 480P fwd+bwd 2659 ms, peak 15.2 GB\n");
}
