/*
 * grpo_rollout.c — one step of a GRPO rollout plan (grpo_rollout.h).
 */
#include "train/grpo_rollout.h"

#include <string.h>

#include "core/common.h"

double grpo_rollout_step(const grpo_plan *p, int i, grpo_sde_kind kind, float eta, grpo_dpm *dpm, float *x,
                         float *tmp, const float *v, const float *eps, int64_t n) {
    OSP_CHECK(i >= 0 && i < p->nsteps, "step inside the plan");
    float s = p->sigma[i], sn = p->sigma[i + 1];
    if (p->kind[i] == GRPO_STEP_DPM) {
        OSP_CHECK(dpm != NULL, "a plan with DPM-Solver++ steps needs the solver history");
        grpo_dpm_step(dpm, x, v, s, sn, p->order[i]);
        return 0.0;
    }
    if (dpm) grpo_dpm_push(dpm, x, v, s); /* Euler and SDE steps feed the DPM history (§7) */
    if (p->kind[i] == GRPO_STEP_ODE) {
        grpo_euler_step(x, v, sn - s, n);
        return 0.0;
    }
    grpo_step_coef c;
    grpo_sde_coef(&c, p->sigma, p->nsteps, i, kind, eta);
    double lp = grpo_sde_sample(tmp, x, v, eps, &c, n);
    memcpy(x, tmp, sizeof(float) * (size_t)n);
    return lp;
}
