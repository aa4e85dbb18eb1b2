/*
 * parallel/comm.h — the collectives of osp, on a group (one axis of the mesh, or the world).
 *
 * One small API whatever moves the bytes: all-reduce (sum, max), reduce-scatter (sum),
 * all-gather, all-to-all of equal chunks, all-to-all-v with precomputed counts, broadcast
 * and barrier. The transport here is MPI on host buffers (CPU tensors; GPU tensors are
 * staged through host memory by the caller, see parallel/dp.c). Every call counts its
 * calls and bytes by kind on its group (par_group_stats), and runs under the watchdog
 * (parallel/watchdog.h): a collective that does not complete within parallel.timeout_s
 * ends the job with a line naming the rank, the collective and the group.
 * A group of one rank turns every call into a copy or a no-op, so the single-process
 * path needs no MPI at all. Counts are elements, not bytes.
 */
#ifndef OSP_PAR_COMM_H
#define OSP_PAR_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { PAR_F32, PAR_F64, PAR_I64 } par_dtype;
typedef enum { PAR_SUM, PAR_MAX } par_op;
typedef enum {
    PAR_K_ALLREDUCE,
    PAR_K_REDUCE_SCATTER,
    PAR_K_ALLGATHER,
    PAR_K_ALLTOALL,
    PAR_K_ALLTOALLV,
    PAR_K_BCAST,
    PAR_K_BARRIER,
    PAR_K_COUNT
} par_kind;

typedef struct {
    int64_t calls[PAR_K_COUNT];
    int64_t bytes[PAR_K_COUNT]; /* payload per call: see par_kind_bytes in comm.c */
} par_stats;

typedef struct par_group par_group;

/* The world as booted by par_boot (a group of one without a launcher). */
par_group *par_group_world(void);
/* Ranks of `parent` with the same color form one group, ordered by key (MPI_Comm_split);
 * name ("dp", "sp", ...) appears in errors and statistics. Collective over parent. */
par_group *par_group_split(par_group *parent, int color, int key, const char *name);
void par_group_free(par_group *g);
int par_group_rank(const par_group *g);
int par_group_size(const par_group *g);
const char *par_group_name(const par_group *g);
const par_stats *par_group_stats(const par_group *g);
const char *par_kind_name(par_kind k);
/* "dp: all_reduce 100 x 16.3 MB, barrier 3 x 0 B" (kinds never called are left out). */
void par_stats_format(const par_group *g, char *buf, size_t len);
size_t par_dtype_size(par_dtype t);

/* In place over `count` elements. */
void par_allreduce(par_group *g, void *buf, int64_t count, par_dtype t, par_op op);
/* send: size*count elements; rank r receives the sum of every rank's chunk r (count). */
void par_reduce_scatter(par_group *g, const void *send, void *recv, int64_t count, par_dtype t);
/* send: count elements; recv: size*count, chunk r from rank r. */
void par_allgather(par_group *g, const void *send, void *recv, int64_t count, par_dtype t);
/* send, recv: size*count; chunk d of send goes to rank d, chunk s of recv came from rank s. */
void par_alltoall(par_group *g, const void *send, void *recv, int64_t count, par_dtype t);
/* counts and displacements in elements, one per rank of the group. */
void par_alltoallv(par_group *g, const void *send, const int64_t *scounts, const int64_t *sdispls, void *recv,
                   const int64_t *rcounts, const int64_t *rdispls, par_dtype t);
void par_bcast(par_group *g, void *buf, int64_t count, par_dtype t, int root);
void par_barrier(par_group *g);

/* Convenience for scalars: the sum / max of x over the group (in double). */
double par_sum_f64(par_group *g, double x);
double par_max_f64(par_group *g, double x);

#endif
