/*
 * grpo_sde.c — GRPO rollout step math: schedule, Euler, the stochastic step and its
 * log-probability with backward, CFG, DPM-Solver++ (grpo_sde.h; mixgrpo.md §2-§4, §7).
 */
#include "train/grpo_sde.h"

#include <math.h>
#include <string.h>

#include "core/common.h"

/* Log-prob sums run over blocks of this many elements: each block is summed serially in double,
 * then the block sums serially in block order, so the result does not depend on threads. */
#define GRPO_SUM_BLOCK 4096

static const double LN_2PI = 1.8378770664093454836;

/* ---------------------------------------------------------------- schedule */

double grpo_time_shift(double u, double shift) { return shift * u / (1.0 + (shift - 1.0) * u); }

void grpo_schedule(float *sigma, int T, float shift) {
    OSP_CHECK(T >= 1, "a rollout has at least one step");
    for (int i = 0; i <= T; i++) sigma[i] = (float)grpo_time_shift(1.0 - (double)i / T, shift);
    sigma[0] = 1.0f; /* exact already (shift(1) = 1); stated for the reader */
    sigma[T] = 0.0f;
}

float grpo_timestep(float sigma, bool integer) {
    float t = 1000.0f * sigma;
    return integer ? (float)(int64_t)t : t;
}

/* ---------------------------------------------------------------- coefficients */

int grpo_sde_kind_parse(const char *s, grpo_sde_kind *out) {
    if (!strcmp(s, "flow")) *out = GRPO_SDE_FLOW;
    else if (!strcmp(s, "dance")) *out = GRPO_SDE_DANCE;
    else if (!strcmp(s, "osp")) *out = GRPO_SDE_OSP;
    else if (!strcmp(s, "cps")) *out = GRPO_SDE_CPS;
    else return -1;
    return 0;
}

const char *grpo_sde_kind_name(grpo_sde_kind k) {
    switch (k) {
    case GRPO_SDE_FLOW: return "flow";
    case GRPO_SDE_DANCE: return "dance";
    case GRPO_SDE_OSP: return "osp";
    case GRPO_SDE_CPS: return "cps";
    }
    return "?";
}

void grpo_sde_coef(grpo_step_coef *c, const float *sigma, int nsteps, int i, grpo_sde_kind kind, float eta) {
    OSP_CHECK(i >= 0 && i < nsteps, "step index inside the schedule");
    double s = sigma[i], sn = sigma[i + 1], dt = sn - s;
    OSP_CHECK(s > 0 && dt < 0, "sigmas strictly decrease and the step starts above 0");
    c->sigma = (float)s;
    c->sigma_next = (float)sn;
    c->delta = (float)dt;
    if (kind == GRPO_SDE_CPS) {
        const double half_pi = 1.5707963267948966;
        double sd = sn * sin((double)eta * half_pi), k = sn * cos((double)eta * half_pi); /* sqrt(sn^2 - sd^2) */
        c->std = (float)sd;
        c->g = (float)(sd / sqrt(-dt));
        c->cx = (float)((1.0 - sn) + k);
        c->cv = (float)(-s * (1.0 - sn) + k * (1.0 - s));
        c->lp_a = c->std > 0 ? 1.0 : 0.0;
        c->lp_b = 0.0;
        return;
    }
    double g = 0;
    switch (kind) {
    case GRPO_SDE_FLOW: {
        /* sigma/(1-sigma) is infinite at sigma = 1: the sources put sigma_1 in the denominator there,
         * which makes s_0 = eta*sqrt(1/(1-sigma_1))*sqrt(1-sigma_1) = eta. */
        double den = 1.0 - (s == 1.0 ? (double)sigma[1] : s);
        g = (double)eta * sqrt(s / den);
        break;
    }
    case GRPO_SDE_DANCE: g = eta; break;
    case GRPO_SDE_OSP: g = s; break; /* sigma_min + (sigma_max - sigma_min)*sigma with (0, 1) */
    default: OSP_CHECK(0, "known SDE kind");
    }
    double a = g * g / (2.0 * s); /* g^2 / (2 sigma) */
    c->g = (float)g;
    c->cx = (float)(1.0 + a * dt);
    c->cv = (float)(dt * (1.0 + a * (1.0 - s)));
    c->std = (float)(g * sqrt(-dt));
    if (kind == GRPO_SDE_OSP && i == nsteps - 1) c->std = 0.0f; /* OSP: x_N = mu_{N-1} */
    double sd = c->std; /* the rounded std the sampler uses */
    c->lp_a = sd > 0 ? 1.0 / (2.0 * sd * sd) : 0.0;
    c->lp_b = sd > 0 ? log(sd) + 0.5 * LN_2PI : 0.0;
}

/* ---------------------------------------------------------------- steps */

void grpo_euler_step(float *x, const float *v, float delta, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t e = 0; e < n; e++) x[e] += delta * v[e];
}

void grpo_sde_mean(float *mu, const float *x, const float *v, const grpo_step_coef *c, int64_t n) {
    const float cx = c->cx, cv = c->cv;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t e = 0; e < n; e++) mu[e] = cx * x[e] + cv * v[e];
}

/* sum_e (a_e - b_e)^2 with the difference in fp32 and the squares (exact in double) summed in
 * double over fixed blocks. b NULL: sum a_e^2. */
static double sumsq_diff(const float *a, const float *b, int64_t n) {
    int64_t nb = (n + GRPO_SUM_BLOCK - 1) / GRPO_SUM_BLOCK;
    double stackbuf[64];
    double *part = nb <= 64 ? stackbuf : osp_malloc(sizeof(double) * (size_t)nb);
#pragma omp parallel for schedule(static) if (nb > 8)
    for (int64_t k = 0; k < nb; k++) {
        int64_t lo = k * GRPO_SUM_BLOCK, hi = lo + GRPO_SUM_BLOCK < n ? lo + GRPO_SUM_BLOCK : n;
        double s = 0;
        for (int64_t e = lo; e < hi; e++) {
            float d = b ? a[e] - b[e] : a[e];
            s += (double)d * (double)d;
        }
        part[k] = s;
    }
    double s = 0;
    for (int64_t k = 0; k < nb; k++) s += part[k];
    if (part != stackbuf) free(part);
    return s;
}

double grpo_sde_logprob_mu(const float *x_next, const float *mu, const grpo_step_coef *c, int64_t n) {
    OSP_CHECK(c->std > 0, "log-probability of a stochastic step (the final step is never trained)");
    OSP_CHECK(n > 0, "a sample has elements");
    double ss = sumsq_diff(x_next, mu, n);
    return -c->lp_a * (ss / (double)n) - c->lp_b;
}

double grpo_sde_logprob(const float *x_next, const float *x, const float *v, const grpo_step_coef *c, int64_t n) {
    float *mu = osp_malloc(sizeof(float) * (size_t)n);
    grpo_sde_mean(mu, x, v, c, n);
    double lp = grpo_sde_logprob_mu(x_next, mu, c, n);
    free(mu);
    return lp;
}

double grpo_sde_sample(float *x_next, const float *x, const float *v, const float *eps, const grpo_step_coef *c,
                       int64_t n) {
    grpo_sde_mean(x_next, x, v, c, n);
    if (c->std == 0.0f) return 0.0;
    /* keep mu: the log-prob must be taken of the rounded x_next against mu, exactly as the
     * recomputation does, not of std*eps */
    float *mu = osp_malloc(sizeof(float) * (size_t)n);
    memcpy(mu, x_next, sizeof(float) * (size_t)n);
    const float sd = c->std;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t e = 0; e < n; e++) x_next[e] = mu[e] + sd * eps[e];
    double lp = grpo_sde_logprob_mu(x_next, mu, c, n);
    free(mu);
    return lp;
}

void grpo_sde_logprob_bwd_mu(float *dmu, const float *x_next, const float *mu, const grpo_step_coef *c, int64_t n,
                             double dlogp) {
    OSP_CHECK(c->std > 0, "log-probability of a stochastic step");
    const float k = (float)(dlogp * 2.0 * c->lp_a / (double)n);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t e = 0; e < n; e++) dmu[e] += k * (x_next[e] - mu[e]);
}

void grpo_sde_mean_bwd(float *dv, float *dx, const float *dmu, const grpo_step_coef *c, int64_t n) {
    const float cx = c->cx, cv = c->cv;
    if (dv) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t e = 0; e < n; e++) dv[e] += cv * dmu[e];
    }
    if (dx) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t e = 0; e < n; e++) dx[e] += cx * dmu[e];
    }
}

void grpo_sde_logprob_bwd(float *dv, float *dx, const float *x_next, const float *x, const float *v,
                          const grpo_step_coef *c, int64_t n, double dlogp) {
    OSP_CHECK(c->std > 0, "log-probability of a stochastic step");
    double k = dlogp * 2.0 * c->lp_a / (double)n;
    const float kv = (float)(k * c->cv), kx = (float)(k * c->cx), cx = c->cx, cv = c->cv;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t e = 0; e < n; e++) {
        float r = x_next[e] - (cx * x[e] + cv * v[e]); /* the same fp32 mu as the forward */
        if (dv) dv[e] += kv * r;
        if (dx) dx[e] += kx * r;
    }
}

void grpo_cfg(float *v, const float *vc, const float *vu, float g, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t e = 0; e < n; e++) {
        float u = vu[e];
        v[e] = u + g * (vc[e] - u);
    }
}

/* ---------------------------------------------------------------- DPM-Solver++ */

void grpo_dpm_init(grpo_dpm *d, int64_t n) {
    memset(d, 0, sizeof *d);
    d->n = n;
    d->m_prev = osp_malloc(sizeof(float) * (size_t)n);
}

void grpo_dpm_free(grpo_dpm *d) {
    free(d->m_prev);
    memset(d, 0, sizeof *d);
}

void grpo_dpm_push(grpo_dpm *d, const float *x, const float *v, float sigma) {
    int64_t n = d->n;
    float *m = d->m_prev;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t e = 0; e < n; e++) m[e] = x[e] - sigma * v[e];
    d->sigma_prev = sigma;
    d->have = true;
}

static double lambda_of(double s) { return log((1.0 - s) / s); }

int grpo_dpm_step(grpo_dpm *d, float *x, const float *v, float sigma_s, float sigma_t, int order) {
    double ss = sigma_s, st = sigma_t, as = 1.0 - ss, at = 1.0 - st;
    OSP_CHECK(ss > 0 && st < ss && st >= 0, "a DPM-Solver++ step decreases sigma");
    /* e^{-h} = sigma_t alpha_s / (alpha_t sigma_s): no logarithm, exact 0 at sigma_t = 0 */
    double emh = st * as / (at * ss);
    double ca = st / ss, cb = -at * (emh - 1.0), k = 0;
    int used = 1;
    if (order >= 2 && d->have && st > 0 && d->sigma_prev < 1.0f && d->sigma_prev > sigma_s) {
        double h = lambda_of(st) - lambda_of(ss), h0 = lambda_of(ss) - lambda_of(d->sigma_prev);
        double r0 = h0 / h;
        k = 0.5 / r0; /* D0 + D1/2 = m0 + (m0 - m1)/(2 r0) = (1+k) m0 - k m1 */
        used = 2;
    }
    const float fa = (float)ca, fb = (float)cb, f0 = (float)(1.0 + k), f1 = (float)k, fs = sigma_s;
    float *m1 = d->m_prev;
    int64_t n = d->n;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t e = 0; e < n; e++) {
        float m0 = x[e] - fs * v[e];
        float D = used == 2 ? f0 * m0 - f1 * m1[e] : m0;
        x[e] = fa * x[e] + fb * D;
        m1[e] = m0;
    }
    d->sigma_prev = sigma_s;
    d->have = true;
    return used;
}
