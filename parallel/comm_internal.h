/*
 * parallel/comm_internal.h — the group struct, shared by comm.c and watchdog.c only.
 */
#ifndef OSP_PAR_COMM_INTERNAL_H
#define OSP_PAR_COMM_INTERNAL_H

#include <mpi.h>
#include <stdbool.h>

#include "parallel/comm.h"

struct par_group {
    char name[32];
    int rank, size;
    bool mpi;          /* false: a group of one without MPI */
    MPI_Comm comm;
    int slot;          /* same on every rank for the same group (groups are made in the same order) */
    int64_t seq;       /* collectives entered on this group */
    int *members;      /* world rank of each group rank */
    par_stats stats;
};

#endif
