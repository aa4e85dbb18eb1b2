/*
 * parallel/mpi_boot.h — how an osp process finds out whether it is one rank of many.
 *
 * Under a launcher (mpirun/mpiexec of Open MPI or MPICH, srun) par_boot() calls
 * MPI_Init_thread, learns the world rank and size and the node-local rank (the
 * shared-memory split of MPI_COMM_WORLD, falling back to OMPI_COMM_WORLD_LOCAL_RANK /
 * SLURM_LOCALID), installs the fatal hook (an error on any rank aborts the whole job
 * through MPI_Abort) and the "rank N: " prefix of error lines, and picks the rank's GPU.
 * Without a launcher nothing of MPI is called: a plain `osp train` is one rank, exactly
 * as a build without ranks would be.
 */
#ifndef OSP_PAR_MPI_BOOT_H
#define OSP_PAR_MPI_BOOT_H

#include <stdbool.h>

typedef struct {
    bool mpi;                 /* MPI_Init was called (a launcher started us) */
    int rank, size;           /* world */
    int local_rank, local_size; /* ranks on this node */
    int gpus;                 /* GPUs this node shows (CUDA_VISIBLE_DEVICES or /dev/nvidiaN), before the pick */
    char host[64];
} par_world;

/* True when the environment says a launcher started this process (OMPI_COMM_WORLD_SIZE,
 * PMIX_RANK, PMI_SIZE/PMI_RANK, MV2_COMM_WORLD_SIZE, SLURM_STEP_NUM_TASKS with srun).
 * OSP_NO_MPI=1 forces false. */
bool par_launched(void);

/* Idempotent. Initialises MPI when launched, otherwise fills a world of one. Also: on
 * ranks other than 0 stdout goes to /dev/null (rank 0 owns the console; errors still
 * reach stderr), and with several ranks per node and OMP_NUM_THREADS unset, each rank's
 * OpenMP team gets cores/local_size threads. */
const par_world *par_boot(void);
/* The world as booted (a world of one before par_boot). */
const par_world *par_world_get(void);
/* MPI_Finalize when MPI was initialised (after a barrier-free return of every rank). */
void par_finalize(void);
/* Abort the whole job with `code` (MPI_Abort under MPI, else exit). */
void par_abort(int code) __attribute__((noreturn));

#endif
