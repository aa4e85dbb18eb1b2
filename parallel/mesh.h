/*
 * parallel/mesh.h — the process mesh dp × ssp × sp (skiparse.md §8.1): world rank
 * = (dp_i · N_ssp + ssp_i) · N_sp + sp_i, so the Ulysses sp group is innermost (keep it
 * on one node). One group per axis, plus the sequence group ssp × sp. The mesh is checked
 * once at start: an impossible combination is one line naming the key.
 */
#ifndef OSP_PAR_MESH_H
#define OSP_PAR_MESH_H

#include <stdbool.h>
#include <stddef.h>

#include "parallel/comm.h"

typedef enum { PAR_SHARD_NONE, PAR_SHARD_OPTIMIZER, PAR_SHARD_FULL } par_shard;

/* What the mesh is checked against (filled from the config by the caller). */
typedef struct {
    int dp, sp, ssp;        /* dp 0 = world / (sp·ssp) */
    int heads;              /* attention heads (sp must divide them) */
    bool hybrid;            /* Skiparse blocks present (ssp needs them) */
    int sparse_ratio;       /* P (ssp must divide P²) */
    int batch;              /* global batch (dp must divide it) */
    const char *shard;      /* none | optimizer | full */
    const char *transport;  /* auto | nccl | mpi */
    double timeout_s;
} par_mesh_spec;

typedef struct {
    int world, rank;
    int dp, sp, ssp;             /* sizes */
    int dp_rank, sp_rank, ssp_rank;
    par_shard shard;
    char transport[8];           /* what the collectives of training use: "mpi" or "nccl" */
    par_group *world_g, *dp_g, *sp_g, *ssp_g, *seq_g; /* seq = ssp × sp */
} par_mesh;

/* Check the spec against world size `world` (no communication). 0, or -1 with one line
 * naming the offending parallel.* key in err. */
int mesh_check(const par_mesh_spec *s, int world, char *err, size_t errlen);
/* Check (osp_die on a bad mesh), make the groups, start the watchdog. Collective. */
void mesh_init(par_mesh *m, const par_mesh_spec *s);
void mesh_free(par_mesh *m);
/* One line: "world 4 = dp 4 × ssp 1 × sp 1, shard optimizer, transport mpi". */
void mesh_describe(const par_mesh *m, char *buf, size_t len);

#endif
