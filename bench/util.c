/*
 * bench/util.c — helpers of `osp bench` (see bench/util.h): median timing after a
 * warm-up, seeded random tensors, the bench model shapes, attention timing shared by the
 * attn and skiparse sections, and the device memory query of CUDA builds.
 */
#include "bench/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"

#ifdef OSP_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

/* ------------------------------------------------------------------ timing */

double bench_tick(const bench_ctx *b) {
    b->be->sync();
    return osp_now();
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *x, int n) {
    if (n <= 0) return NAN;
    qsort(x, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static int n_shortened;
int bench_shortened(void) { return n_shortened; }

void bench_measure(const bench_ctx *b, bench_fn fn, void *arg, int nphase, double *med) {
    int n = b->repeat;
    double *warm = osp_calloc((size_t)nphase, sizeof(double));
    double w0 = osp_now();
    fn(arg, warm); /* first touch of buffers, thread pools, GEMM plans, kernel loading */
    /* keep the default run short on slow machines: a measurement whose warm-up took
     * longer than BENCH_SLOW_S is timed once more (unless --repeat asked otherwise) */
    if (!b->cuda && !b->repeat_set && n > 1 && osp_now() - w0 > BENCH_SLOW_S) {
        n = 1;
        n_shortened++;
    }
    double *t = osp_calloc((size_t)n * nphase, sizeof(double));
    for (int r = 0; r < n; r++) {
        double *tr = warm; /* phase times of this run, transposed below */
        fn(arg, tr);
        for (int p = 0; p < nphase; p++) t[(size_t)p * n + r] = tr[p];
    }
    for (int p = 0; p < nphase; p++) med[p] = bench_median(t + (size_t)p * n, n);
    free(t);
    free(warm);
}

void bench_settle(bench_ctx *b) {
    if (b->cuda) return; /* the CUDA context and plans are warmed by each measurement's warm-up */
    /* Keep the CPU backend busy for a moment before the first measurement: BLAS worker
     * threads created at library start spin for a while before they sleep, and on 2 cores
     * they took the first GEMM measurements of a fresh process from ~0.3 ms to 8-16 ms. */
    const int n = 256;
    float *x = bench_rand(b, (int64_t)n * n, 1.0f), *w = bench_rand(b, (int64_t)n * n, 0.06f);
    float *y = b->be->alloc(sizeof(float) * n * n);
    double t0 = osp_now();
    while (osp_now() - t0 < BENCH_SETTLE_S) b->be->linear_fwd(y, x, w, NULL, n, n, n);
    b->be->free(x);
    b->be->free(w);
    b->be->free(y);
}

/* ------------------------------------------------------------------ tensors */

float *bench_rand_host(bench_ctx *b, int64_t n, float a) {
    float *h = osp_malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    /* one independent splitmix64 stream per tensor, fixed by the bench seed */
    uint64_t base = osp_rng_next(&b->seed);
    /* chunked so the threads draw disjoint, reproducible streams */
    const int64_t chunk = 1 << 16;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < (n + chunk - 1) / chunk; c++) {
        uint64_t s = base ^ ((uint64_t)c * 0xD1B54A32D192ED03ull);
        int64_t end = (c + 1) * chunk < n ? (c + 1) * chunk : n;
        for (int64_t i = c * chunk; i < end; i++) {
            double u = osp_rng_uniform(&s);
            h[i] = (float)((2.0 * u - 1.0) * a);
        }
    }
    return h;
}

float *bench_rand(bench_ctx *b, int64_t n, float a) {
    float *h = bench_rand_host(b, n, a);
    float *d = b->be->alloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    b->be->upload(d, h, sizeof(float) * (size_t)n);
    free(h);
    return d;
}

/* ------------------------------------------------------------------ models */

/* a Wan2.1 T2V model on 16-channel latents (patch 1x2x2, freq_dim 256) */
static bench_model bench_shape(const char *name, int dim, int ffn, int heads, int layers, int text_dim, int text_len,
                               int T, int Hl, int Wl) {
    bench_model m = {.name = name, .T = T, .Hl = Hl, .Wl = Wl};
    m.dims = (wan_dims){.dim = dim, .ffn_dim = ffn, .num_heads = heads, .num_layers = layers, .in_channels = 16,
                        .out_channels = 16, .text_dim = text_dim, .text_len = text_len, .freq_dim = 256,
                        .patch = {1, 2, 2}};
    return m;
}

bench_model bench_model_default(const bench_ctx *b) {
    if (b->cuda) /* Wan2.1-T2V-1.3B (docs/model.md §9) at 480P, 81 frames: 21x30x52 = 32,760 tokens */
        return bench_shape("Wan2.1-1.3B 480P", 1536, 8960, 12, 30, 4096, 512, 21, 60, 104);
    if (b->quick) /* 4x8x16 = 512 tokens */
        return bench_shape("cpu-quick", 128, 512, 1, 2, 256, 32, 4, 16, 32);
    /* 8x16x16 = 2048 tokens, head dim 128 as in Wan */
    return bench_shape("cpu-small", 256, 1024, 2, 4, 512, 64, 8, 32, 32);
}

int64_t bench_model_tokens(const bench_model *m) { return (int64_t)m->T * (m->Hl / 2) * (m->Wl / 2); }

wan_config bench_wan_config(const bench_model *m, bool hybrid, int P, int K, bool recompute) {
    wan_config c;
    memset(&c, 0, sizeof c);
    c.dims = m->dims;
    c.eps = 1e-6f;
    c.recompute = recompute;
    c.hybrid = hybrid;
    c.sparse_ratio = P;
    c.num_full_blocks = K;
    return c;
}

wan_model *bench_wan_init(bench_ctx *b, const bench_model *bm, bool hybrid, int K, bool recompute) {
    wan_config c = bench_wan_config(bm, hybrid, 2, K, recompute);
    return bench_wan_init_config(b, &c);
}

wan_model *bench_wan_init_config(bench_ctx *b, const wan_config *c) {
    wan_model *m = wan_init(c, b->be);
    int64_t n = wan_arena_floats(m);
    if (b->host_params && b->host_params_n == n) {
        /* same parameter layout as the model initialised before: reuse its weights (the
         * Wan init of 1.4e9 parameters costs seconds of host time per model) */
        b->be->upload(wan_params(m), b->host_params, sizeof(float) * (size_t)n);
        return m;
    }
    wan_init_weights(m, b->seed++);
    /* the Wan init zeroes head.head.weight; give it random values so the backward carries
     * nonzero gradients through every block (timing does not depend on it, tests do) */
    {
        const wan_param_info *p = wan_param(m, wan_arch_top_index(c->num_layers, WAN_HEAD_W));
        float *h = bench_rand_host(b, p->numel, 0.02f);
        b->be->upload(wan_params(m) + p->offset, h, sizeof(float) * (size_t)p->numel);
        free(h);
    }
    if (b->cuda) { /* keep a host copy for the next model with this layout */
        free(b->host_params);
        b->host_params = osp_malloc(sizeof(float) * (size_t)n);
        b->be->download(b->host_params, wan_params(m), sizeof(float) * (size_t)n);
        b->host_params_n = n;
    }
    return m;
}

/* ------------------------------------------------------------------ attention */

typedef struct {
    const osp_backend *be;
    const bench_ctx *b;
    float *q, *k, *v, *o, *lse, *dout, *dq, *dk, *dv;
    osp_bf16 *q16, *k16, *v16, *o16; /* bf16 activation storage: what the model's blocks use */
    const uint8_t *valid;
    int64_t R, N;
    int H, d;
    bool warm;
} attn_arg;

/* n random values of scale a, stored bf16 (round to nearest even) on the backend */
static osp_bf16 *bench_rand16(bench_ctx *b, int64_t n, float a) {
    float *h = bench_rand_host(b, n, a);
    osp_bf16 *u = osp_malloc(sizeof(osp_bf16) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        uint32_t x;
        memcpy(&x, &h[i], 4);
        u[i] = (osp_bf16)((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
    }
    osp_bf16 *d = b->be->alloc(sizeof(osp_bf16) * (size_t)n);
    b->be->upload(d, u, sizeof(osp_bf16) * (size_t)n);
    free(h);
    free(u);
    return d;
}

bool bench_act16(const bench_ctx *b) { return b->be->act16_on && b->be->act16_on(); }

/* the attention op the model's blocks call: over bf16 storage when the backend keeps it */
static void attn_fwd_call(const attn_arg *a) {
    if (a->q16) a->be->attn16_fwd(a->o16, a->lse, a->q16, a->k16, a->v16, a->valid, a->R, a->R, a->N, a->N, a->H, a->d);
    else a->be->attn_fwd(a->o, a->lse, a->q, a->k, a->v, a->valid, a->R, a->R, a->N, a->N, a->H, a->d);
}
static void attn_bwd_call(const attn_arg *a) {
    if (a->q16)
        a->be->attn16_bwd(a->dq, a->dk, a->dv, a->dout, a->o16, a->lse, a->q16, a->k16, a->v16, a->valid, a->R, a->R,
                          a->N, a->N, a->H, a->d);
    else
        a->be->attn_bwd(a->dq, a->dk, a->dv, a->dout, a->o, a->lse, a->q, a->k, a->v, a->valid, a->R, a->R, a->N,
                        a->N, a->H, a->d);
}

/* One forward (timed), then one backward (timed); with warm, an untimed forward first (see
 * bench_attn_time) */
static void attn_run(void *p, double *t) {
    attn_arg *a = p;
    size_t bytes = sizeof(float) * (size_t)(a->R * a->N * a->H * a->d);
    if (a->warm) attn_fwd_call(a);
    double t0 = bench_tick(a->b);
    attn_fwd_call(a);
    double t1 = bench_tick(a->b);
    a->be->zero(a->dq, bytes); /* the backward adds into its gradients */
    a->be->zero(a->dk, bytes);
    a->be->zero(a->dv, bytes);
    double t2 = bench_tick(a->b);
    attn_bwd_call(a);
    double t3 = bench_tick(a->b);
    t[0] = t1 - t0;
    t[1] = t3 - t2;
}

bench_attn_result bench_attn_time(bench_ctx *b, int64_t R, int64_t N, int H, int d, const uint8_t *kvalid_host,
                                  bool warm) {
    bool masked = kvalid_host != NULL;
    for (int i = 0; i < b->nattn; i++) {
        bench_attn_result *c = &b->attn[i];
        if (c->R == R && c->N == N && c->H == H && c->d == d && c->masked == masked && c->warm == warm) return *c;
    }
    const osp_backend *be = b->be;
    int64_t n = R * N * H * d;
    attn_arg a = {.be = be, .b = b, .R = R, .N = N, .H = H, .d = d, .warm = warm}; /* the rest NULL */
    /* q, k of unit-scale entries give softmax logits of O(1) after the 1/sqrt(d) scaling */
    if (bench_act16(b)) {
        a.q16 = bench_rand16(b, n, 1.7f);
        a.k16 = bench_rand16(b, n, 1.7f);
        a.v16 = bench_rand16(b, n, 1.0f);
        a.o16 = be->alloc(sizeof(osp_bf16) * (size_t)n);
    } else {
        a.q = bench_rand(b, n, 1.7f);
        a.k = bench_rand(b, n, 1.7f);
        a.v = bench_rand(b, n, 1.0f);
        a.o = be->alloc(sizeof(float) * (size_t)n);
    }
    a.dout = bench_rand(b, n, 1.0f);
    a.dq = be->alloc(sizeof(float) * (size_t)n);
    a.dk = be->alloc(sizeof(float) * (size_t)n);
    a.dv = be->alloc(sizeof(float) * (size_t)n);
    a.lse = be->alloc(sizeof(float) * (size_t)(R * H * N));
    uint8_t *valid = NULL;
    if (masked) {
        valid = be->alloc((size_t)(R * N));
        be->upload(valid, kvalid_host, (size_t)(R * N));
        a.valid = valid;
    }
    double med[2];
    bench_measure(b, attn_run, &a, 2, med);
    void *bufs[] = {a.q, a.k, a.v, a.dout, a.o, a.dq, a.dk, a.dv, a.lse, a.q16, a.k16, a.v16, a.o16};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) be->free(bufs[i]);
    if (valid) be->free(valid);
    bench_attn_result r = {R, N, H, d, masked, warm, med[0], med[1]};
    if (b->nattn < (int)(sizeof b->attn / sizeof b->attn[0])) b->attn[b->nattn++] = r;
    return r;
}

/* ------------------------------------------------------------------ output */

json_t *bench_section(bench_ctx *b, const char *name) {
    json_t *secs = json_object_get(b->root, "sections");
    if (!secs) {
        secs = json_object();
        json_object_set_new(b->root, "sections", secs);
    }
    json_t *s = json_object_get(secs, name);
    if (!s) {
        s = json_array();
        json_object_set_new(secs, name, s);
    }
    return s;
}

double bench_rate(const bench_ctx *b, double flops, double sec) {
    return sec > 0 ? flops / sec / (b->cuda ? 1e12 : 1e9) : 0.0;
}

const char *bench_rate_unit(const bench_ctx *b) { return b->cuda ? "TFLOP/s" : "GFLOP/s"; }

void bench_title(const char *title) { printf("\n== %s\n", title); }

void bench_device_name(const bench_ctx *b, char *out, size_t n) {
    snprintf(out, n, "%s", b->cuda ? "CUDA GPU" : "CPU");
#ifdef OSP_HAVE_CUDA
    if (b->cuda) {
        struct cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, 0) == cudaSuccess) snprintf(out, n, "%s", p.name);
        else cudaGetLastError();
        return;
    }
#endif
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !c) continue;
        c++;
        while (*c == ' ' || *c == '\t') c++;
        c[strcspn(c, "\n")] = 0;
        snprintf(out, n, "%s", c);
        break;
    }
    fclose(f);
}

bool bench_device_memory(const bench_ctx *b, double *used, double *total) {
#ifdef OSP_HAVE_CUDA
    if (b->cuda) {
        size_t fr = 0, tot = 0;
        if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
            cudaGetLastError();
            return false;
        }
        *used = (double)(tot - fr);
        *total = (double)tot;
        return true;
    }
#endif
    (void)b;
    *used = *total = 0;
    return false;
}
