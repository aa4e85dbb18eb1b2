/*
 * parallel/dp.h — data parallelism: the gradient reduction over the dp group and the
 * optimizer step with or without sharded state.
 *
 *   shard none       gradients all-reduced (sum), every rank updates the whole arena
 *   shard optimizer  (ZeRO-1) gradients reduce-scattered; rank r owns the contiguous slice
 *                    [r·S, (r+1)·S) of the flat parameter arena (S = ceil(n / W)) with its
 *                    AdamW moments and EMA, updates it, and the parameters are all-gathered
 *
 * The gradient norm (clipping, the non-finite skip) is the global one, so every rank takes
 * the same decision. Callers scale their local loss gradient by 1/(dp · grad_accum), so the
 * summed gradient is the one a single process computes over the global batch. GPU arenas
 * are staged through host memory (the MPI transport). A group of one calls adamw_step
 * unchanged, so one process is bit-identical to a build without ranks.
 */
#ifndef OSP_PAR_DP_H
#define OSP_PAR_DP_H

#include <stdint.h>

#include "model/ops.h"
#include "optim/adamw.h"
#include "parallel/comm.h"
#include "parallel/comm_nccl.h"
#include "parallel/mesh.h"

typedef struct {
    par_group *g;
    int W, r;
    par_shard shard;
    const osp_backend *be;
    bool host;            /* backend memory is host memory (CPU backend): no staging copies */
    int64_t n;            /* floats in the parameter arena */
    int64_t S, off, cnt;  /* shard size, this rank's offset and element count (optimizer) */
    float *h_buf;         /* host staging: n (none) or W·S (optimizer) */
    float *h_shard;       /* host, S */
    float *d_shard;       /* backend, S: the reduced gradient slice */
    par_nccl *nccl;       /* GPU transport (NULL: MPI on host memory) */
    float *d_buf;         /* backend, W·S (ZeRO-1 over NCCL): padded gradient / gathered parameters */
} par_dp;

void dp_init(par_dp *d, par_group *g, par_shard shard, const osp_backend *be, int64_t n);
void dp_free(par_dp *d);
/* Move the reductions of dp_step to NCCL on device buffers (a CUDA backend, one GPU per
 * rank); the checkpoint gathers stay on the host path. */
void dp_use_nccl(par_dp *d, par_nccl *c);

/* Sum a backend buffer of n floats over the group, in place. */
void dp_allreduce_backend(par_dp *d, float *buf, int64_t n);

/* Reduce the gradients, clip with the global norm, update, and (ZeRO-1) gather the
 * parameters. Same return value and *gnorm as adamw_step. */
int dp_step(par_dp *d, adamw_state *opt, const adamw_hparams *h, float lr, float *params, float *grads, double *gnorm);

/* ZeRO-1: replace the full optimizer state `opt` (as made by adamw_init and maybe loaded
 * from a checkpoint) by this rank's shard. No-op for shard none. */
void dp_shard_optimizer(par_dp *d, adamw_state *opt);
/* The full state for a checkpoint: with shard none, *full = *opt (no copy, *owned = false);
 * with ZeRO-1 every rank gathers m, v and EMA into new backend buffers (*owned = true:
 * free them with adamw_free). Collective over the group. */
void dp_full_optimizer(par_dp *d, const adamw_state *opt, adamw_state *full, bool *owned);

#endif
