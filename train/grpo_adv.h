/*
 * grpo_adv.h — the GRPO objective apart from the model (mixgrpo.md §5, §9): group-normalised
 * advantages, the per-prompt stat tracker, clipping to +-5 and dropping zero advantages,
 * several rewards combined with weights (per-reward group normalisation or normalising the
 * weighted sum), the clipped PPO surrogate per (sample, step) with its gradient w.r.t. the new
 * log-probability and the clip/ratio statistics, and the KL terms: the closed-form Gaussian KL
 * between the current and the reference policy's means (equal std) with its gradient, and
 * MixGRPO's approximate KL to the old policy.
 *
 * Rewards and advantages are fp32 at the interfaces; the statistics are computed in double.
 */
#ifndef OSP_GRPO_ADV_H
#define OSP_GRPO_ADV_H

#include <stdbool.h>
#include <stdint.h>

#define GRPO_ADV_CLIP 5.0f /* adv_clip_max of every source */

/* ---------------------------------------------------------------- advantages (§5.1) */

/* A_j = (R_j - mean) / (std + 1e-8) over one group of G rewards, std the unbiased (n-1) estimate
 * (MixGRPO / DanceGRPO). G = 1 gives 0 (no spread to learn from). */
void grpo_adv_group(float *adv, const float *reward, int G);

/* Per-prompt stat tracker (Flow-GRPO, OSP-Next): every reward of a prompt seen this epoch joins
 * that prompt's history; A = (R - mean_prompt) / (std + 1e-4) with std the population (ddof 0)
 * std of the prompt's history, or of the whole batch passed to one update call (global_std).
 * Cleared after every epoch. */
typedef struct {
    bool global_std;
    int nprompt, cap;
    int64_t *id;      /* [nprompt] prompt ids */
    int *count, *rcap; /* [nprompt] rewards stored, capacity */
    double **r;       /* [nprompt][count] */
} grpo_tracker;

void grpo_tracker_init(grpo_tracker *t, bool global_std);
void grpo_tracker_free(grpo_tracker *t);
void grpo_tracker_clear(grpo_tracker *t);
/* Add the batch (prompt[i], reward[i]), i < n, then write adv[i] for each of them. */
void grpo_tracker_update(grpo_tracker *t, const int64_t *prompt, const float *reward, int n, float *adv);

/* adv = clamp(adv, -lim, lim). */
void grpo_adv_clip(float *adv, int n, float lim);
/* Indices of the samples whose advantage is not exactly 0 (those are dropped before training);
 * writes them to keep[] and returns how many. */
int grpo_adv_nonzero(const float *adv, int n, int *keep);

/* ---------------------------------------------------------------- several rewards (§9) */

typedef enum {
    GRPO_MIX_ADVANTAGE = 0, /* advantage_aggr: A = sum_k w_k (R_k - mu_k) / (sigma_k + 1e-8) */
    GRPO_MIX_REWARD = 1,    /* reward_aggr: group-normalise sum_k w_k R_k */
} grpo_mix;

/* K rewards of one group of G samples, reward[k*G + j]; weights w[k] >= 0 (NULL = all 1) are
 * renormalised to sum to 1. Normalisation as grpo_adv_group (unbiased std + 1e-8). */
void grpo_adv_multi(float *adv, const float *reward, const float *w, int K, int G, grpo_mix mix);

/* ---------------------------------------------------------------- surrogate (§5.2) */

typedef struct {
    double ratio;   /* r = exp(logp_new - logp_old) */
    double loss;    /* max(-A r, -A clip(r, 1-eps, 1+eps)) */
    double dlogp;   /* d loss / d logp_new: -A r, or 0 where the clipped branch is taken */
    bool clipped;   /* |r - 1| > eps (the clip-fraction statistic) */
    bool inactive;  /* the clipped branch holds the gradient at 0 */
} grpo_surr;

grpo_surr grpo_surrogate(double logp_new, double logp_old, double adv, double eps);

/* Running statistics of surrogate terms for logging. */
typedef struct {
    int64_t n, nclipped, ninactive;
    double loss_sum, ratio_sum, ratio_min, ratio_max, logr_absmax;
} grpo_surr_stats;

void grpo_surr_stats_init(grpo_surr_stats *s);
void grpo_surr_stats_add(grpo_surr_stats *s, const grpo_surr *x);
double grpo_surr_stats_clipfrac(const grpo_surr_stats *s);

/* ---------------------------------------------------------------- KL (§5.3) */

/* (10): KL = (1/n) sum_e (mu_e - mu_ref_e)^2 / (2 std^2) between N(mu, std^2) and N(mu_ref, std^2)
 * per element, averaged; the sum in double. */
double grpo_kl_gauss(const float *mu, const float *mu_ref, float std, int64_t n);
/* dmu_e += beta * (mu_e - mu_ref_e) / (n std^2) */
void grpo_kl_gauss_bwd(float *dmu, const float *mu, const float *mu_ref, float std, int64_t n, double beta);

/* MixGRPO's approximate KL to the old policy, 0.5 (logp_new - logp_old)^2; *dlogp = its
 * derivative w.r.t. logp_new. */
double grpo_kl_old(double logp_new, double logp_old, double *dlogp);

#endif
