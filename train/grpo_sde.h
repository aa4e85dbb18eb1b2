/*
 * grpo_sde.h — the per-step math of GRPO rollouts for rectified-flow models (mixgrpo.md §2-§4, §7):
 * the shifted rollout schedule and the exact timestep fed to the model, the deterministic Euler
 * step, the stochastic step (one mean/std form with the Flow-GRPO, DanceGRPO and OSP-Next diffusion
 * coefficients), the per-element-mean Gaussian log-probability of a stored next sample, its backward
 * into the velocity (and the sample), CFG combination, and the DPM-Solver++ (2nd-order multistep,
 * midpoint) step that MixGRPO-Flash uses after the window.
 *
 * Precision: every per-element operation is fp32 (bf16 would saturate the ~1e-4 clip range on its
 * own rounding, §11.3). Scalar step coefficients are computed in double from the fp32 sigmas and
 * rounded once to fp32. Log-probability sums accumulate in double over fixed blocks in a fixed
 * order, so the rollout's log-prob and the training-time recomputation from identical inputs agree
 * bit for bit whatever the thread count (the "ratio is exactly 1" rule, §11.1).
 *
 * All arrays are host memory (one sample, n latent elements each); a backend port mirrors these
 * loops element for element.
 */
#ifndef OSP_GRPO_SDE_H
#define OSP_GRPO_SDE_H

#include <stdbool.h>
#include <stdint.h>

/* ---------------------------------------------------------------- schedule (§2) */

/* SD3 time shift: s*u / (1 + (s-1)*u), in double. shift(1) = 1 and shift(0) = 0 exactly. */
double grpo_time_shift(double u, double shift);

/* sigma[0..T]: sigma_i = shift(u_i) with u_i = 1 - i/T (linspace(1, 0, T+1)), so sigma[0] = 1 and
 * sigma[T] = 0 exactly. T >= 1. */
void grpo_schedule(float *sigma, int T, float shift);

/* The timestep the model is fed for a step at sigma: trunc(1000*sigma) when `integer` (MixGRPO,
 * DanceGRPO, Wan's own sampler) else 1000*sigma as a float (OSP-Next). The product is fp32. The
 * rollout and the re-scoring forward must use the same value (§2). */
float grpo_timestep(float sigma, bool integer);

/* ---------------------------------------------------------------- kernels (§3) */

typedef enum {
    GRPO_SDE_FLOW = 0,  /* Flow-GRPO / MixGRPO default: g = eta*sqrt(sigma/(1-sigma)), sigma_1 at sigma = 1 */
    GRPO_SDE_DANCE = 1, /* DanceGRPO: g = eta */
    GRPO_SDE_OSP = 2,   /* OSP-Next: g = sigma, no noise on the final step; eta unused */
    GRPO_SDE_CPS = 3,   /* Flow-GRPO's coefficients-preserving sampling (sde_type 'cps'), see below */
} grpo_sde_kind;

/* Parse "flow" / "dance" / "osp" / "cps"; 0 on success, -1 otherwise. */
int grpo_sde_kind_parse(const char *s, grpo_sde_kind *out);
const char *grpo_sde_kind_name(grpo_sde_kind k);

/* Coefficients of one stochastic step i (from sigma[i] to sigma[i+1]):
 *   mu = cx*x + cv*v                                   (2')
 *   x' = mu + std*eps, std = g*sqrt(-delta)            (3)
 *   log pi = -lp_a * (1/n) sum_e (x'_e - mu_e)^2 - lp_b
 * Gaussian kinds: lp_a = 1/(2 std^2), lp_b = ln std + 0.5 ln 2pi, i.e. (4).
 * CPS: std = sigma_next sin(eta pi/2), mu = x0hat (1 - sigma_next) + x1hat sqrt(sigma_next^2 - std^2)
 * with x0hat = x - sigma v, x1hat = x + (1 - sigma) v, and a log-prob that keeps only
 * -(x' - mu)^2 (lp_a = 1, lp_b = 0), as the source does.
 * std == 0 marks a deterministic step (OSP's and CPS's final step): x' = mu, no log-probability. */
typedef struct {
    float sigma, sigma_next, delta; /* delta = sigma_next - sigma < 0 */
    float g;                        /* diffusion coefficient g_i (CPS: std / sqrt(-delta)) */
    float cx, cv;                   /* mean coefficients; cv = dmu/dv = c_i of (7) */
    float std;                      /* s_i */
    double lp_a, lp_b;              /* log-prob scale and offset (0 when std == 0) */
} grpo_step_coef;

/* Fill c for step i of a schedule sigma[0..nsteps] (nsteps transitions). Flow-GRPO uses
 * sigma[1] in the denominator at sigma = 1 (so s_0 = eta). OSP marks i = nsteps-1 noiseless.
 * Dies (internal error) on i out of range or a non-decreasing schedule. */
void grpo_sde_coef(grpo_step_coef *c, const float *sigma, int nsteps, int i, grpo_sde_kind kind, float eta);

/* Euler ODE step (1): x += delta * v. */
void grpo_euler_step(float *x, const float *v, float delta, int64_t n);

/* mu = cx*x + cv*v (2'). */
void grpo_sde_mean(float *mu, const float *x, const float *v, const grpo_step_coef *c, int64_t n);

/* One stochastic step: x_next = mu + std*eps, with mu from (x, v). Returns log pi(x_next | x) of (4),
 * computed exactly as grpo_sde_logprob computes it from (x_next, x, v) (bitwise equal), or 0 when
 * std == 0 (deterministic step; x_next = mu). x_next must not alias x, v or eps. */
double grpo_sde_sample(float *x_next, const float *x, const float *v, const float *eps, const grpo_step_coef *c,
                       int64_t n);

/* (4): (1/n) sum_e [ -(x_next_e - mu_e)^2 / (2 std^2) - ln std - 0.5 ln 2pi ], mu from (x, v).
 * Differences in fp32, the sum in double (fixed blocks, fixed order). Requires std > 0 (a
 * deterministic step has no density; the final step is never trained, §6). */
double grpo_sde_logprob(const float *x_next, const float *x, const float *v, const grpo_step_coef *c, int64_t n);

/* Same, given mu already computed (grpo_sde_mean); bitwise equal to grpo_sde_logprob. */
double grpo_sde_logprob_mu(const float *x_next, const float *mu, const grpo_step_coef *c, int64_t n);

/* Backward of L = dlogp * logp:  dmu_e += dlogp * 2 lp_a (x_next_e - mu_e) / n, which is
 * dlogp * (x_next_e - mu_e) / (n std^2) for the Gaussian kinds (6). */
void grpo_sde_logprob_bwd_mu(float *dmu, const float *x_next, const float *mu, const grpo_step_coef *c, int64_t n,
                             double dlogp);

/* Chain through the mean (2'): dv += cv*dmu, dx += cx*dmu (either may be NULL). */
void grpo_sde_mean_bwd(float *dv, float *dx, const float *dmu, const grpo_step_coef *c, int64_t n);

/* (6)-(7) fused, no dmu buffer: with mu recomputed from (x, v),
 *   dv_e += dlogp * cv * 2 lp_a (x_next_e - mu_e) / n,  dx_e += dlogp * cx * 2 lp_a (...) / n
 * (dv or dx may be NULL). */
void grpo_sde_logprob_bwd(float *dv, float *dx, const float *x_next, const float *x, const float *v,
                          const grpo_step_coef *c, int64_t n, double dlogp);

/* Classifier-free guidance: v = vu + g*(vc - vu), fp32. v may alias vc or vu. With vu computed
 * without gradient, dv/dvc = g (the caller scales dv by g before the conditional backward). */
void grpo_cfg(float *v, const float *vc, const float *vu, float g, int64_t n);

/* ---------------------------------------------------------------- DPM-Solver++ (§7) */

/* Multistep DPM-Solver++ in flow parameterisation: alpha = 1 - sigma, lambda = ln(alpha/sigma),
 * data prediction m = x - sigma*v. Keeps the previous step's m (the history). */
typedef struct {
    int64_t n;
    float *m_prev;    /* data prediction of the previous step */
    float sigma_prev; /* sigma at which m_prev was evaluated */
    bool have;        /* whether m_prev holds a value */
} grpo_dpm;

void grpo_dpm_init(grpo_dpm *d, int64_t n);
void grpo_dpm_free(grpo_dpm *d);
/* Record the data prediction m = x - sigma*v of a step another solver took (the pre-window Euler
 * steps and the window's SDE steps feed the history, §7). */
void grpo_dpm_push(grpo_dpm *d, const float *x, const float *v, float sigma);
/* One step from sigma_s to sigma_t on x (in place), model velocity v at (x, sigma_s). `order` 2
 * asks for the midpoint 2nd-order update (14); it falls back to 1st order (13) when there is no
 * history, when the history sits at sigma = 1 (lambda = -inf) or when sigma_t == 0 (the final step,
 * which gives x = m exactly). Pushes this step's m. Returns the order used. */
int grpo_dpm_step(grpo_dpm *d, float *x, const float *v, float sigma_s, float sigma_t, int order);

#endif
