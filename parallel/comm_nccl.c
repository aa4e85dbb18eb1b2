/*
 * parallel/comm_nccl.c — NCCL communicators and collectives on GPU buffers (comm_nccl.h).
 */
#include "parallel/comm_nccl.h"

#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "parallel/comm_internal.h"
#include "parallel/watchdog.h"

#ifdef OSP_HAVE_NCCL
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <unistd.h>

struct par_nccl {
    par_group *g;
    ncclComm_t comm;
};

bool par_nccl_available(void) { return true; }

par_nccl *par_nccl_init(par_group *g, char *err, size_t errlen) {
    par_nccl *c = osp_calloc(1, sizeof *c);
    c->g = g;
    if (g->size == 1) return c; /* every call is a copy or a no-op */
    ncclUniqueId id;
    if (g->rank == 0 && ncclGetUniqueId(&id) != ncclSuccess) memset(&id, 0, sizeof id);
    par_bcast(g, &id, (int64_t)(sizeof id / 8), PAR_I64, 0); /* 128 bytes: 16 int64 */
    ncclResult_t r = ncclCommInitRank(&c->comm, g->size, id, g->rank);
    if (r != ncclSuccess) {
        snprintf(err, errlen, "NCCL communicator for group %s (%d ranks) failed: %s (ranks sharing a GPU? use "
                 "parallel.transport: mpi)", g->name, g->size, ncclGetErrorString(r));
        free(c);
        return NULL;
    }
    return c;
}

void par_nccl_free(par_nccl *c) {
    if (!c) return;
    if (c->comm) ncclCommDestroy(c->comm);
    free(c);
}

static void check(par_nccl *c, ncclResult_t r, const char *what) {
    if (r == ncclSuccess) return;
    osp_die("collective %s on group %s (NCCL) failed: %s", what, c->g->name, ncclGetErrorString(r));
}

/* Wait for the enqueued collective: stream polled, NCCL's asynchronous errors checked, the
 * watchdog armed meanwhile (a peer that never arrives ends the job after timeout_s). */
static void wait_done(par_nccl *c, par_kind k) {
    wd_enter(par_kind_name(k), c->g, c->g->slot, ++c->g->seq);
    for (;;) {
        cudaError_t q = cudaStreamQuery(0);
        if (q == cudaSuccess) break;
        if (q != cudaErrorNotReady)
            osp_die("collective %s on group %s (NCCL): CUDA error %s", par_kind_name(k), c->g->name,
                    cudaGetErrorString(q));
        ncclResult_t ae = ncclSuccess;
        ncclCommGetAsyncError(c->comm, &ae);
        if (ae != ncclSuccess && ae != ncclInProgress) {
            ncclCommAbort(c->comm);
            c->comm = NULL;
            osp_die("collective %s on group %s (NCCL) failed: %s", par_kind_name(k), c->g->name,
                    ncclGetErrorString(ae));
        }
        usleep(50);
    }
    wd_leave();
}

void par_nccl_allreduce(par_nccl *c, float *buf, int64_t n, par_op op) {
    c->g->stats.calls[PAR_K_ALLREDUCE]++;
    c->g->stats.bytes[PAR_K_ALLREDUCE] += 4 * n;
    if (c->g->size == 1 || n == 0) return;
    check(c, ncclAllReduce(buf, buf, (size_t)n, ncclFloat, op == PAR_SUM ? ncclSum : ncclMax, c->comm, 0),
          "all_reduce");
    wait_done(c, PAR_K_ALLREDUCE);
}

void par_nccl_reduce_scatter(par_nccl *c, const float *send, float *recv, int64_t n) {
    c->g->stats.calls[PAR_K_REDUCE_SCATTER]++;
    c->g->stats.bytes[PAR_K_REDUCE_SCATTER] += 4 * n * c->g->size;
    if (c->g->size == 1) {
        if (recv != send) cudaMemcpyAsync(recv, send, sizeof(float) * n, cudaMemcpyDeviceToDevice, 0);
        return;
    }
    check(c, ncclReduceScatter(send, recv, (size_t)n, ncclFloat, ncclSum, c->comm, 0), "reduce_scatter");
    wait_done(c, PAR_K_REDUCE_SCATTER);
}

void par_nccl_allgather(par_nccl *c, const float *send, float *recv, int64_t n) {
    c->g->stats.calls[PAR_K_ALLGATHER]++;
    c->g->stats.bytes[PAR_K_ALLGATHER] += 4 * n * c->g->size;
    if (c->g->size == 1) {
        if (recv != send) cudaMemcpyAsync(recv, send, sizeof(float) * n, cudaMemcpyDeviceToDevice, 0);
        return;
    }
    check(c, ncclAllGather(send, recv, (size_t)n, ncclFloat, c->comm, 0), "all_gather");
    wait_done(c, PAR_K_ALLGATHER);
}

void par_nccl_alltoall(par_nccl *c, const float *send, float *recv, int64_t n) {
    c->g->stats.calls[PAR_K_ALLTOALL]++;
    c->g->stats.bytes[PAR_K_ALLTOALL] += 4 * n * c->g->size;
    if (c->g->size == 1) {
        if (recv != send) cudaMemcpyAsync(recv, send, sizeof(float) * n, cudaMemcpyDeviceToDevice, 0);
        return;
    }
    /* NCCL has no all-to-all call: one group of paired sends and receives */
    check(c, ncclGroupStart(), "all_to_all");
    for (int p = 0; p < c->g->size; p++) {
        check(c, ncclSend(send + (int64_t)p * n, (size_t)n, ncclFloat, p, c->comm, 0), "all_to_all");
        check(c, ncclRecv(recv + (int64_t)p * n, (size_t)n, ncclFloat, p, c->comm, 0), "all_to_all");
    }
    check(c, ncclGroupEnd(), "all_to_all");
    wait_done(c, PAR_K_ALLTOALL);
}

void par_nccl_bcast(par_nccl *c, float *buf, int64_t n, int root) {
    c->g->stats.calls[PAR_K_BCAST]++;
    c->g->stats.bytes[PAR_K_BCAST] += 4 * n;
    if (c->g->size == 1) return;
    check(c, ncclBroadcast(buf, buf, (size_t)n, ncclFloat, root, c->comm, 0), "broadcast");
    wait_done(c, PAR_K_BCAST);
}

#else /* built without NCCL */

struct par_nccl {
    int unused;
};

bool par_nccl_available(void) { return false; }

par_nccl *par_nccl_init(par_group *g, char *err, size_t errlen) {
    snprintf(err, errlen, "parallel.transport: nccl is not available: osp was built without NCCL (group %s)",
             g->name);
    return NULL;
}

void par_nccl_free(par_nccl *c) { free(c); }
static void absent(void) { osp_die("internal: an NCCL collective in a build without NCCL"); }
void par_nccl_allreduce(par_nccl *c, float *buf, int64_t n, par_op op) { absent(); }
void par_nccl_reduce_scatter(par_nccl *c, const float *send, float *recv, int64_t n) { absent(); }
void par_nccl_allgather(par_nccl *c, const float *send, float *recv, int64_t n) { absent(); }
void par_nccl_alltoall(par_nccl *c, const float *send, float *recv, int64_t n) { absent(); }
void par_nccl_bcast(par_nccl *c, float *buf, int64_t n, int root) { absent(); }

#endif
