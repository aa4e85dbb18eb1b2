/*
 * test_lora.c — LoRA adapters for a linear layer (optim/lora.c) on the CPU backend: with the
 * zero-initialised B the layer equals its base bit for bit, the merged weight W + (alpha/r) B A
 * gives the adapters' output, the forward agrees with float64, the gradients of A, B and the input
 * agree with central differences of a float64 reference, keys are PEFT-style, and the adapter file
 * round trip is bitwise while a missing key or a different alpha is a one-line error; a lora_set
 * lays all adapters out in one arena (as the optimizer wants) with the same init as lone ones.
 * (CUDA vs CPU: test_lora_gpu.c.)
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "model/ops.h"
#include "optim/lora.h"

#include "tests/testutil.h"
#define EXPECT TU_EXPECT

typedef struct {
    int N, K, O, R;
    double scale;
    double *x, *W, *b, *A, *B; /* double copies; FD perturbs x, A or B */
    const float *c;            /* cotangent */
} lora_ctx;

static double lora_ref_loss(void *p) {
    lora_ctx *l = p;
    double L = 0;
    for (int i = 0; i < l->N; i++)
        for (int o = 0; o < l->O; o++) {
            double y = l->b[o];
            for (int k = 0; k < l->K; k++) y += l->x[i * l->K + k] * l->W[o * l->K + k];
            for (int r = 0; r < l->R; r++) {
                double h = 0;
                for (int k = 0; k < l->K; k++) h += l->x[i * l->K + k] * l->A[r * l->K + k];
                y += l->scale * h * l->B[o * l->R + r];
            }
            L += l->c[i * l->O + o] * y;
        }
    return L;
}

static void test_lora(tu_rng *rng) {
    const osp_backend *be = osp_backend_cpu();
    const int N = 10, K = 24, O = 16, R = 4;
    lora_adapter l;
    lora_init(&l, be, "blocks.0.self_attn.q", K, O, R, 8.0f, 1234, 5);
    EXPECT(!strcmp(l.key_A, "blocks.0.self_attn.q.lora_A.weight") &&
               !strcmp(l.key_B, "blocks.0.self_attn.q.lora_B.weight"),
           "PEFT keys %s %s", l.key_A, l.key_B);
    int a_ok = 1;
    double an = 0;
    for (int i = 0; i < R * K; i++) {
        a_ok &= fabsf(l.A[i]) <= 1.0f / sqrtf((float)K);
        an += fabsf(l.A[i]);
    }
    EXPECT(a_ok && an > 0, "A init in +-1/sqrt(in) and not zero");
    float *x = tu_randn(rng, N * K, 1.0), *W = tu_randn(rng, O * K, 0.3), *b = tu_randn(rng, O, 0.1);
    float *y = tu_calloc(N * O, sizeof(float)), *yb = tu_calloc(N * O, sizeof(float));
    float *hs = tu_calloc(lora_hs_floats(&l, N), sizeof(float)), *work = tu_calloc(lora_work_floats(&l, N), sizeof(float));
    /* zero B: exactly the base */
    lora_fwd(&l, y, hs, work, x, W, b, N);
    be->linear_fwd(yb, x, W, b, N, K, O);
    EXPECT(tu_bitdiff(y, yb, N * O) == 0, "zero-B adapter changes the output");
    /* trained-looking B: forward vs float64, merged weight vs adapters */
    tu_fill_normal(rng, l.B, O * R, 0.2);
    lora_fwd(&l, y, hs, work, x, W, b, N);
    float *c = tu_randn(rng, N * O, 1.0);
    lora_ctx lc = {N, K, O, R, l.scale, tu_to_double(x, N * K), tu_to_double(W, O * K), tu_to_double(b, O),
                   tu_to_double(l.A, R * K), tu_to_double(l.B, O * R), c};
    double *yr = tu_calloc(N * O, sizeof(double));
    for (int i = 0; i < N; i++)
        for (int o = 0; o < O; o++) {
            double v = lc.b[o];
            for (int k = 0; k < K; k++) v += lc.x[i * K + k] * lc.W[o * K + k];
            for (int r = 0; r < R; r++) {
                double h = 0;
                for (int k = 0; k < K; k++) h += lc.x[i * K + k] * lc.A[r * K + k];
                v += lc.scale * h * lc.B[o * R + r];
            }
            yr[i * O + o] = v;
        }
    tu_check("LoRA forward vs float64", tu_rel_err_fd(y, yr, N * O), 1e-6);
    float *Wm = tu_dup(W, O * K);
    lora_merge(&l, Wm);
    be->linear_fwd(yb, x, Wm, b, N, K, O);
    tu_check("merged weight forward = adapter forward", tu_rel_err_ff(yb, y, N * O), 1e-6);
    /* gradients: L = <c, y> */
    float *dx = tu_calloc(N * K, sizeof(float));
    be->zero(l.dA, sizeof(float) * R * K);
    be->zero(l.dB, sizeof(float) * O * R);
    lora_bwd(&l, dx, c, x, W, hs, work, N);
    double *g = tu_calloc(N * K, sizeof(double));
    tu_fd_grad64(g, lc.A, R * K, lora_ref_loss, &lc, 1e-5);
    tu_check("LoRA dA vs FD float64", tu_rel_err_fd(l.dA, g, R * K), 1e-5);
    tu_fd_grad64(g, lc.B, O * R, lora_ref_loss, &lc, 1e-5);
    tu_check("LoRA dB vs FD float64", tu_rel_err_fd(l.dB, g, O * R), 1e-5);
    tu_fd_grad64(g, lc.x, N * K, lora_ref_loss, &lc, 1e-5);
    tu_check("LoRA dx vs FD float64", tu_rel_err_fd(dx, g, N * K), 1e-5);
    /* file round trip (PEFT key names, rank/alpha metadata) and its errors */
    char path[96], err[512];
    snprintf(path, sizeof path, "test_grpo_lora_%d.safetensors", (int)getpid());
    EXPECT(lora_save(&l, 1, path, err, sizeof err) == 0, "save: %s", err);
    lora_adapter l2, l3, l4;
    lora_init(&l2, be, "blocks.0.self_attn.q", K, O, R, 8.0f, 99, 1);
    EXPECT(lora_load(&l2, 1, path, err, sizeof err) == 0, "load: %s", err);
    EXPECT(tu_bitdiff(l2.A, l.A, R * K) == 0 && tu_bitdiff(l2.B, l.B, O * R) == 0, "round trip not bitwise");
    lora_init(&l3, be, "blocks.1.self_attn.q", K, O, R, 8.0f, 99, 1);
    int rc = lora_load(&l3, 1, path, err, sizeof err);
    EXPECT(rc != 0 && strstr(err, "blocks.1.self_attn.q.lora_A.weight") && strstr(err, path), "missing key: %s", err);
    lora_init(&l4, be, "blocks.0.self_attn.q", K, O, R, 16.0f, 99, 1);
    rc = lora_load(&l4, 1, path, err, sizeof err);
    EXPECT(rc != 0 && strstr(err, "alpha"), "alpha mismatch: %s", err);
    lora_free(&l2), lora_free(&l3), lora_free(&l4);
    remove(path);
    free(lc.x), free(lc.W), free(lc.b), free(lc.A), free(lc.B), free(yr), free(g), free(dx), free(Wm);
    free(x), free(W), free(b), free(y), free(yb), free(hs), free(work), free(c);
    lora_free(&l);
}

/* a set of adapters in one arena: layout, identical A to lone adapters, and an optimizer-style
 * flat update reaching every adapter */
static void test_lora_set(void) {
    const osp_backend *be = osp_backend_cpu();
    const char *mods[3] = {"blocks.0.self_attn.q", "blocks.0.self_attn.k", "blocks.0.ffn.0"};
    const int in[3] = {24, 24, 24}, out[3] = {24, 24, 96};
    lora_set s;
    lora_set_init(&s, be, 3, mods, in, out, 4, 8.0f, 42);
    EXPECT(s.nparams == 4 * (48 + 48 + 120), "nparams %lld", (long long)s.nparams);
    int64_t off = 0;
    int ok = 1;
    for (int i = 0; i < 3; i++) {
        lora_adapter l;
        lora_init(&l, be, mods[i], in[i], out[i], 4, 8.0f, 42, (uint64_t)i);
        ok &= s.ad[i].A == s.params + off && s.ad[i].B == s.params + off + 4 * in[i];
        ok &= s.ad[i].dA == s.grads + off && s.ad[i].dB == s.grads + off + 4 * in[i];
        ok &= tu_bitdiff(s.ad[i].A, l.A, 4 * in[i]) == 0 && !strcmp(s.ad[i].key_B, l.key_B);
        for (int j = 0; j < out[i] * 4; j++) ok &= s.ad[i].B[j] == 0.0f;
        off += 4 * (in[i] + out[i]);
        lora_free(&l);
    }
    EXPECT(ok, "set layout / init");
    float a5 = s.ad[2].A[5];
    be->scale(s.params, 2.0f, s.nparams); /* an update through the flat arena */
    EXPECT(a5 != 0.0f && s.ad[2].A[5] == 2.0f * a5 && s.ad[2].B[0] == 0.0f, "flat arena reaches the adapters");
    lora_set_free(&s);
}

int main(void) {
    tu_rng rng = {20261208};
    test_lora(&rng);
    test_lora_set();
    return tu_summary("test_lora");
}
