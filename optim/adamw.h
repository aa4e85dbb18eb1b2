/*
 * adamw.h — the optimizer of osp: AdamW with fp32 master weights (the model's parameter
 * arena is fp32 on every backend), decoupled weight decay and bias correction, global-norm
 * gradient clipping, skipping of updates whose gradients are not finite, an EMA copy of
 * the weights, and the learning-rate schedule (linear warm-up, then constant or cosine).
 * All state lives in backend memory; the update itself is one backend op.
 */
#ifndef OSP_ADAMW_H
#define OSP_ADAMW_H

#include <stdbool.h>
#include <stdint.h>

#include "model/ops.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay, grad_clip, ema_decay;
    int max_skipped; /* consecutive non-finite updates tolerated before the run stops */
} adamw_hparams;

typedef struct {
    const osp_backend *be;
    int64_t n;
    float *m, *v, *ema;   /* backend memory; ema NULL when disabled */
    int64_t t;            /* updates applied (bias correction uses it) */
    int64_t skipped_total;
    int skipped_run;      /* consecutive skipped updates */
} adamw_state;

void adamw_init(adamw_state *s, const osp_backend *be, int64_t n, bool with_ema, const float *params);
void adamw_free(adamw_state *s);

/* One update. Returns 0 when applied, 1 when skipped because the gradient norm is not
 * finite. *gnorm receives the global L2 norm of the (unclipped) gradients. */
int adamw_step(adamw_state *s, const adamw_hparams *h, float lr, float *params, const float *grads, double *gnorm);
/* The same update given the global gradient norm (computed by the caller, e.g. over the
 * shards of all data-parallel ranks): clipping and the non-finite skip use `norm`, so every
 * rank takes the same decision. With ZeRO-1, s holds one shard and params/grads point at it. */
int adamw_step_norm(adamw_state *s, const adamw_hparams *h, float lr, float *params, const float *grads, double norm);

/* Learning rate at `step` (0-based): linear warm-up over `warmup` steps to lr, then
 * constant, or cosine decay to min_lr at total_steps. */
float lr_schedule(float lr, float min_lr, int warmup, int total_steps, bool cosine, int64_t step);

#endif
