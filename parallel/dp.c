/*
 * parallel/dp.c — gradient reduction and the (sharded) optimizer step over the dp group
 * (dp.h).
 */
#include "parallel/dp.h"

#include <math.h>
#include <string.h>

#include "core/common.h"

void dp_init(par_dp *d, par_group *g, par_shard shard, const osp_backend *be, int64_t n) {
    memset(d, 0, sizeof *d);
    d->g = g;
    d->W = par_group_size(g);
    d->r = par_group_rank(g);
    d->shard = shard;
    d->be = be;
    d->host = be == osp_backend_cpu();
    d->n = n;
    if (d->W == 1) return; /* adamw_step as always */
    if (shard == PAR_SHARD_OPTIMIZER) {
        d->S = (n + d->W - 1) / d->W;
        d->off = d->S * d->r;
        d->cnt = n - d->off < d->S ? (n - d->off > 0 ? n - d->off : 0) : d->S;
        d->h_buf = osp_calloc((size_t)(d->S * d->W), sizeof(float));
        d->h_shard = osp_calloc((size_t)d->S, sizeof(float));
        d->d_shard = be->alloc(sizeof(float) * d->S);
    } else if (!d->host) {
        d->h_buf = osp_malloc(sizeof(float) * n);
    }
}

void dp_use_nccl(par_dp *d, par_nccl *c) {
    d->nccl = c;
    if (d->W > 1 && d->shard == PAR_SHARD_OPTIMIZER)
        d->d_buf = d->be->alloc(sizeof(float) * d->S * d->W); /* zero-filled: the padding stays 0 */
}

/* dp_step over NCCL: gradients never leave the GPU */
static int step_nccl(par_dp *d, adamw_state *opt, const adamw_hparams *h, float lr, float *params, float *grads,
                     double *gnorm) {
    const osp_backend *be = d->be;
    if (d->shard != PAR_SHARD_OPTIMIZER) {
        par_nccl_allreduce(d->nccl, grads, d->n, PAR_SUM);
        return adamw_step(opt, h, lr, params, grads, gnorm);
    }
    be->copy(d->d_buf, grads, sizeof(float) * d->n);
    par_nccl_reduce_scatter(d->nccl, d->d_buf, d->d_shard, d->S);
    double ss = d->cnt ? be->sumsq(d->d_shard, d->cnt) : 0.0;
    double norm = sqrt(par_sum_f64(d->g, ss));
    *gnorm = norm;
    int skipped = adamw_step_norm(opt, h, lr, params + d->off, d->d_shard, norm);
    if (skipped) return skipped;
    float *mine = d->d_buf + d->S * d->r; /* in-place all-gather; past n the buffer keeps zeros */
    if (d->cnt) be->copy(mine, params + d->off, sizeof(float) * d->cnt);
    par_nccl_allgather(d->nccl, mine, d->d_buf, d->S);
    be->copy(params, d->d_buf, sizeof(float) * d->n);
    return 0;
}

void dp_free(par_dp *d) {
    if (d->d_buf) d->be->free(d->d_buf);
    free(d->h_buf);
    free(d->h_shard);
    if (d->d_shard) d->be->free(d->d_shard);
    memset(d, 0, sizeof *d);
}

void dp_allreduce_backend(par_dp *d, float *buf, int64_t n) {
    if (d->W == 1) return;
    if (d->host) {
        par_allreduce(d->g, buf, n, PAR_F32, PAR_SUM);
        return;
    }
    float *h = osp_malloc(sizeof(float) * n);
    d->be->download(h, buf, sizeof(float) * n);
    par_allreduce(d->g, h, n, PAR_F32, PAR_SUM);
    d->be->upload(buf, h, sizeof(float) * n);
    free(h);
}

/* full[S·W] (zero tail) <- every rank's slice [off, off+cnt) of a backend buffer of n */
static void gather_slices(par_dp *d, const float *slice, float *full_backend) {
    memset(d->h_shard, 0, sizeof(float) * d->S);
    if (d->cnt) d->be->download(d->h_shard, slice, sizeof(float) * d->cnt);
    par_allgather(d->g, d->h_shard, d->h_buf, d->S, PAR_F32);
    d->be->upload(full_backend, d->h_buf, sizeof(float) * d->n);
}

int dp_step(par_dp *d, adamw_state *opt, const adamw_hparams *h, float lr, float *params, float *grads, double *gnorm) {
    if (d->W == 1) return adamw_step(opt, h, lr, params, grads, gnorm);
    const osp_backend *be = d->be;
    if (d->nccl) return step_nccl(d, opt, h, lr, params, grads, gnorm);
    if (d->shard != PAR_SHARD_OPTIMIZER) {
        if (d->host) {
            par_allreduce(d->g, grads, d->n, PAR_F32, PAR_SUM);
        } else {
            be->download(d->h_buf, grads, sizeof(float) * d->n);
            par_allreduce(d->g, d->h_buf, d->n, PAR_F32, PAR_SUM);
            be->upload(grads, d->h_buf, sizeof(float) * d->n);
        }
        /* every rank holds the same summed gradient: the same norm and the same update */
        return adamw_step(opt, h, lr, params, grads, gnorm);
    }
    /* ZeRO-1: reduce-scatter the padded flat gradient, update the own slice */
    be->download(d->h_buf, grads, sizeof(float) * d->n);
    memset(d->h_buf + d->n, 0, sizeof(float) * (d->S * d->W - d->n));
    par_reduce_scatter(d->g, d->h_buf, d->h_shard, d->S, PAR_F32);
    if (d->cnt) be->upload(d->d_shard, d->h_shard, sizeof(float) * d->cnt);
    double ss = d->cnt ? be->sumsq(d->d_shard, d->cnt) : 0.0;
    double norm = sqrt(par_sum_f64(d->g, ss));
    *gnorm = norm;
    int skipped = adamw_step_norm(opt, h, lr, params + d->off, d->d_shard, norm);
    if (skipped) return skipped; /* nobody changed anything: nothing to gather */
    gather_slices(d, params + d->off, params);
    return 0;
}

void dp_shard_optimizer(par_dp *d, adamw_state *opt) {
    if (d->W == 1 || d->shard != PAR_SHARD_OPTIMIZER) return;
    const osp_backend *be = d->be;
    adamw_state s = *opt;
    s.n = d->cnt;
    size_t bytes = sizeof(float) * (d->cnt ? d->cnt : 1);
    s.m = be->alloc(bytes);
    s.v = be->alloc(bytes);
    s.ema = opt->ema ? be->alloc(bytes) : NULL;
    if (d->cnt) {
        be->copy(s.m, opt->m + d->off, sizeof(float) * d->cnt);
        be->copy(s.v, opt->v + d->off, sizeof(float) * d->cnt);
        if (s.ema) be->copy(s.ema, opt->ema + d->off, sizeof(float) * d->cnt);
    }
    adamw_free(opt);
    *opt = s;
}

void dp_full_optimizer(par_dp *d, const adamw_state *opt, adamw_state *full, bool *owned) {
    *full = *opt;
    *owned = false;
    if (d->W == 1 || d->shard != PAR_SHARD_OPTIMIZER) return;
    const osp_backend *be = d->be;
    full->n = d->n;
    full->m = be->alloc(sizeof(float) * d->n);
    full->v = be->alloc(sizeof(float) * d->n);
    full->ema = opt->ema ? be->alloc(sizeof(float) * d->n) : NULL;
    gather_slices(d, opt->m, full->m);
    gather_slices(d, opt->v, full->v);
    if (opt->ema) gather_slices(d, opt->ema, full->ema);
    *owned = true;
}
