/*
 * adamw.c — AdamW, clipping, non-finite skipping, EMA and the LR schedule (adamw.h).
 */
#include "optim/adamw.h"

#include <math.h>
#include <string.h>

#include "core/common.h"

void adamw_init(adamw_state *s, const osp_backend *be, int64_t n, bool with_ema, const float *params) {
    memset(s, 0, sizeof *s);
    s->be = be;
    s->n = n;
    s->m = be->alloc(sizeof(float) * n);
    s->v = be->alloc(sizeof(float) * n);
    if (with_ema) {
        s->ema = be->alloc(sizeof(float) * n);
        be->copy(s->ema, params, sizeof(float) * n);
    }
}

void adamw_free(adamw_state *s) {
    if (!s->be) return;
    s->be->free(s->m);
    s->be->free(s->v);
    if (s->ema) s->be->free(s->ema);
    memset(s, 0, sizeof *s);
}

int adamw_step(adamw_state *s, const adamw_hparams *h, float lr, float *params, const float *grads, double *gnorm) {
    double norm = sqrt(s->be->sumsq(grads, s->n));
    *gnorm = norm;
    return adamw_step_norm(s, h, lr, params, grads, norm);
}

int adamw_step_norm(adamw_state *s, const adamw_hparams *h, float lr, float *params, const float *grads, double norm) {
    const osp_backend *be = s->be;
    if (!isfinite(norm)) {
        s->skipped_total++;
        s->skipped_run++;
        return 1;
    }
    s->skipped_run = 0;
    s->t++;
    float gscale = (h->grad_clip > 0 && norm > h->grad_clip) ? (float)(h->grad_clip / norm) : 1.0f;
    float bc1 = 1.0f - powf(h->beta1, (float)s->t), bc2 = 1.0f - powf(h->beta2, (float)s->t);
    be->adamw(params, grads, s->m, s->v, s->n, lr, h->beta1, h->beta2, h->eps, h->weight_decay, bc1, bc2, gscale);
    if (s->ema) be->ema(s->ema, params, s->n, h->ema_decay);
    return 0;
}

float lr_schedule(float lr, float min_lr, int warmup, int total_steps, bool cosine, int64_t step) {
    if (warmup > 0 && step < warmup) return lr * (float)(step + 1) / (float)warmup;
    if (!cosine || total_steps <= warmup) return lr;
    double p = (double)(step - warmup) / (double)(total_steps - warmup);
    if (p > 1) p = 1;
    return (float)(min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(3.141592653589793 * p)));
}
