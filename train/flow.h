/*
 * flow.h — flow matching for Wan-style DiTs (docs/model.md §11-§12): counter-based random
 * numbers (so a resumed run draws exactly the numbers it would have drawn), sigma
 * sampling for training (logit-normal or uniform, with shift), building x_sigma and the
 * velocity target, the shifted sampling schedule with Wan's integer timesteps, and the
 * Euler and UniPC (bh2, order 2) solvers. Solver state and arithmetic are fp32 on the
 * host, as in the reference.
 */
#ifndef OSP_FLOW_H
#define OSP_FLOW_H

#include <stdbool.h>
#include <stdint.h>

/* Key for a stream of random numbers identified by (seed, a, b). */
uint64_t flow_key(uint64_t seed, uint64_t a, uint64_t b);
/* x[i] = N(0,1) sample number i of stream `key` (independent of how x is split). */
void flow_randn(float *x, int64_t n, uint64_t key);
/* x[i] = N(0,1) sample number first+i of stream `key` (a data-parallel rank draws its
 * samples' slices of the stream a single process draws whole). */
void flow_randn_at(float *x, int64_t n, uint64_t key, int64_t first);
/* Uniform [0,1) number `i` of stream `key`. */
double flow_uniform(uint64_t key, uint64_t i);

/* sigma for training: logit_normal (sigmoid(N(mean,std))) or uniform, then shifted:
 * s*sigma / (1 + (s-1)*sigma). */
float flow_train_sigma(bool logit_normal, float mean, float std, float shift, uint64_t key);

/* x_sigma = (1-sigma) x0 + sigma eps; target = eps - x0  (per sample sigma[b], n per sample) */
void flow_make_pair(float *xs, float *target, const float *x0, const float *eps, const float *sigma, int B, int64_t n);

/* Sampling schedule (docs/model.md §12): sigmas[0..N] with sigmas[N] = 0, and the model's
 * integer timesteps t[k] = trunc(1000 sigma[k]). */
void flow_schedule(int N, float shift, float *sigmas, float *timesteps);

/* UniPC (bh2, predict-x0, order 2, lower_order_final, corrector after the first step). */
typedef struct {
    int N;
    int64_t n;
    const float *sig;
    float *m1, *m2;   /* x0 predictions of the last two steps */
    float *xlast;     /* sample the previous predictor started from */
    int plast;        /* order of the previous predictor */
} flow_unipc;

void flow_unipc_init(flow_unipc *u, int N, const float *sigmas, int64_t n);
void flow_unipc_free(flow_unipc *u);
/* Step k: x holds the sample the model was evaluated on (x~_k) and v its velocity;
 * on return x holds x~_{k+1}. */
void flow_unipc_step(flow_unipc *u, int k, float *x, const float *v);
/* Euler step k: x += (sigma[k+1] - sigma[k]) v */
void flow_euler_step(const float *sigmas, int k, float *x, const float *v, int64_t n);

#endif
