/*
 * grpo_rollout.h — one step of a GRPO rollout plan (mixgrpo.md §12): given the model's (CFG)
 * velocity at the current sample, take step i of a grpo_plan with the integrator the plan names
 * (Euler ODE, the stochastic step, or DPM-Solver++ on a Flash tail) and return the step's
 * log-probability for stochastic steps. The trainer's rollout loop is then: for i < nsteps,
 * v = model(x, grpo_timestep(sigma[i])), store x for trained steps, grpo_rollout_step.
 */
#ifndef OSP_GRPO_ROLLOUT_H
#define OSP_GRPO_ROLLOUT_H

#include <stdint.h>

#include "train/grpo_sde.h"
#include "train/grpo_window.h"

/* Step i of plan p on x (in place, n elements), v the velocity at (x, sigma[i]).
 *  - SDE: x <- mu + std*eps (eps ~ N(0,1), n values); returns log pi(x_{i+1} | x_i), bitwise what
 *    grpo_sde_logprob returns when re-scoring the stored pair under the same v.
 *  - ODE: Euler; DPM: DPM-Solver++ of the plan's order. Return 0.
 * dpm: the solver history, required when the plan has DPM steps (every earlier step feeds it),
 * may be NULL otherwise. tmp: n floats of scratch (SDE steps). kind/eta: the SDE variant. */
double grpo_rollout_step(const grpo_plan *p, int i, grpo_sde_kind kind, float eta, grpo_dpm *dpm, float *x,
                         float *tmp, const float *v, const float *eps, int64_t n);

#endif
