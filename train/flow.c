/*
 * flow.c — flow-matching noise, sigma sampling, schedules and solvers (flow.h).
 */
#include "train/flow.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"

uint64_t flow_key(uint64_t seed, uint64_t a, uint64_t b) {
    return osp_mix64(osp_mix64(osp_splitmix64(seed) ^ (a * 0xD1B54A32D192ED03ull)) ^
                     (b * 0x8CB92BA72F3D8DD7ull + 1));
}

double flow_uniform(uint64_t key, uint64_t i) {
    /* the (i+1)-th draw of a splitmix64 stream started at key */
    return osp_u01(osp_mix64(key + (i + 1) * OSP_RNG_GOLDEN));
}

void flow_randn(float *x, int64_t n, uint64_t key) { flow_randn_at(x, n, key, 0); }

/* Numbers come in Box-Muller pairs (2p, 2p+1) of the stream; a range starting at an odd
 * index takes the second half of its first pair, so any split of the stream draws the
 * same values as one call over all of it. */
void flow_randn_at(float *x, int64_t n, uint64_t key, int64_t first) {
    int64_t p0 = first / 2, p1 = (first + n + 1) / 2;
#pragma omp parallel for schedule(static)
    for (int64_t p = p0; p < p1; p++) {
        double u = flow_uniform(key, 2 * (uint64_t)p), v = flow_uniform(key, 2 * (uint64_t)p + 1);
        if (u < 1e-300) u = 1e-300;
        double r = sqrt(-2.0 * log(u)), a = 6.283185307179586 * v;
        int64_t e = 2 * p - first;
        if (e >= 0) x[e] = (float)(r * cos(a));
        if (e + 1 < n) x[e + 1] = (float)(r * sin(a));
    }
}

float flow_train_sigma(bool logit_normal, float mean, float std, float shift, uint64_t key) {
    double s;
    if (logit_normal) {
        float z;
        flow_randn(&z, 1, key);
        s = 1.0 / (1.0 + exp(-(mean + std * (double)z)));
    } else {
        s = flow_uniform(key, 0);
    }
    s = shift * s / (1.0 + (shift - 1.0) * s);
    return (float)s;
}

void flow_make_pair(float *xs, float *target, const float *x0, const float *eps, const float *sigma, int B, int64_t n) {
    for (int b = 0; b < B; b++) {
        float s = sigma[b];
        const float *a = x0 + b * n, *e = eps + b * n;
        float *o = xs + b * n, *t = target + b * n;
        for (int64_t i = 0; i < n; i++) {
            o[i] = (1.0f - s) * a[i] + s * e[i];
            t[i] = e[i] - a[i];
        }
    }
}

void flow_schedule(int N, float shift, float *sigmas, float *timesteps) {
    for (int k = 0; k < N; k++) {
        float s = 0.999f - 0.999f * (float)k / (float)N; /* linspace(0.999, 0, N+1)[:N] */
        s = shift * s / (1.0f + (shift - 1.0f) * s);
        sigmas[k] = s;
        timesteps[k] = (float)(int64_t)(1000.0f * s);
    }
    sigmas[N] = 0.0f;
}

void flow_euler_step(const float *sigmas, int k, float *x, const float *v, int64_t n) {
    float d = sigmas[k + 1] - sigmas[k];
    for (int64_t i = 0; i < n; i++) x[i] += d * v[i];
}

static float lam(float s) { return logf(1.0f - s) - logf(s); }

void flow_unipc_init(flow_unipc *u, int N, const float *sigmas, int64_t n) {
    memset(u, 0, sizeof *u);
    u->N = N;
    u->n = n;
    u->sig = sigmas;
    u->m1 = osp_malloc(sizeof(float) * n);
    u->m2 = osp_malloc(sizeof(float) * n);
    u->xlast = osp_malloc(sizeof(float) * n);
}

void flow_unipc_free(flow_unipc *u) {
    free(u->m1);
    free(u->m2);
    free(u->xlast);
}

void flow_unipc_step(flow_unipc *u, int k, float *x, const float *v) {
    const float *sg = u->sig;
    int64_t n = u->n;
    float sk = sg[k], ak = 1.0f - sk;
    float *mk = osp_malloc(sizeof(float) * n);
    for (int64_t i = 0; i < n; i++) mk[i] = x[i] - sk * v[i]; /* x0 prediction */
    /* corrector (UniC) with the order of the previous predictor */
    if (k > 0) {
        float h = lam(sk) - lam(sg[k - 1]), hh = -h, Bh = expm1f(hh), phi = Bh / hh - 1.0f;
        float ratio = sk / sg[k - 1];
        if (u->plast == 2) {
            float r = (lam(sg[k - 2]) - lam(sg[k - 1])) / h;
            float b0 = phi / Bh, b1 = 2.0f * (phi / hh - 0.5f) / Bh;
            /* [[1,1],[r,1]] rho = [b0, b1] */
            float det = 1.0f - r;
            float rho0 = (b0 - b1) / det, rho1 = (b1 - r * b0) / det;
            for (int64_t i = 0; i < n; i++) {
                float D = (u->m2[i] - u->m1[i]) / r;
                x[i] = ratio * u->xlast[i] - ak * Bh * u->m1[i] - ak * Bh * (rho0 * D + rho1 * (mk[i] - u->m1[i]));
            }
        } else {
            for (int64_t i = 0; i < n; i++)
                x[i] = ratio * u->xlast[i] - ak * Bh * u->m1[i] - ak * Bh * 0.5f * (mk[i] - u->m1[i]);
        }
    }
    /* history: m2 <- m1 <- mk (the x0 prediction is not recomputed after correcting) */
    float *t = u->m2;
    u->m2 = u->m1;
    u->m1 = t;
    memcpy(u->m1, mk, sizeof(float) * n);
    free(mk);
    int p = 2;
    if (u->N - k < p) p = u->N - k;
    if (k + 1 < p) p = k + 1;
    memcpy(u->xlast, x, sizeof(float) * n);
    u->plast = p;
    /* predictor (UniP) to sigma[k+1] */
    float sn = sg[k + 1];
    if (sn <= 0.0f) { /* final step: lambda = +inf, B = -1, x = x0 prediction */
        memcpy(x, u->m1, sizeof(float) * n);
        return;
    }
    float an = 1.0f - sn, h = lam(sn) - lam(sk), Bh = expm1f(-h), ratio = sn / sk;
    if (p == 2) {
        float r = (lam(sg[k - 1]) - lam(sk)) / h;
        for (int64_t i = 0; i < n; i++) {
            float D = (u->m2[i] - u->m1[i]) / r;
            x[i] = ratio * x[i] - an * Bh * u->m1[i] - an * Bh * 0.5f * D;
        }
    } else {
        for (int64_t i = 0; i < n; i++) x[i] = ratio * x[i] - an * Bh * u->m1[i];
    }
}
