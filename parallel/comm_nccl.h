/*
 * parallel/comm_nccl.h — the NCCL transport: the collectives of comm.h on GPU buffers.
 *
 * One NCCL communicator per group, made from a unique id that the group's rank 0 draws and
 * MPI broadcasts. Calls are enqueued on the legacy default stream, which the CUDA backend's
 * blocking stream is ordered with, and then waited for with the stream polled and
 * ncclCommGetAsyncError checked (an error is one line naming the collective and the group);
 * the watchdog covers the wait like an MPI collective, so a dead peer ends the job after
 * parallel.timeout_s. NCCL needs one GPU per rank: ranks sharing a GPU use the MPI transport
 * (buffers staged through host memory). Compiled for real only with OSP_HAVE_NCCL (CMake
 * finds nccl.h and libnccl next to the CUDA toolkit); otherwise par_nccl_available() is false
 * and par_nccl_init fails with a message.
 */
#ifndef OSP_PAR_COMM_NCCL_H
#define OSP_PAR_COMM_NCCL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parallel/comm.h"

typedef struct par_nccl par_nccl;

bool par_nccl_available(void);
/* Collective over g. NULL with a one-line reason in err when NCCL cannot serve. */
par_nccl *par_nccl_init(par_group *g, char *err, size_t errlen);
void par_nccl_free(par_nccl *c);

/* fp32 device buffers; counts in elements as in comm.h. */
void par_nccl_allreduce(par_nccl *c, float *buf, int64_t n, par_op op);
void par_nccl_reduce_scatter(par_nccl *c, const float *send, float *recv, int64_t n);
/* in place when send == recv + rank·n */
void par_nccl_allgather(par_nccl *c, const float *send, float *recv, int64_t n);
void par_nccl_alltoall(par_nccl *c, const float *send, float *recv, int64_t n);
void par_nccl_bcast(par_nccl *c, float *buf, int64_t n, int root);

#endif
