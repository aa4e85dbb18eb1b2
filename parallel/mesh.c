/*
 * parallel/mesh.c — mesh validation and the per-axis groups (mesh.h).
 */
#include "parallel/mesh.h"

#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "parallel/comm_nccl.h"
#include "parallel/mpi_boot.h"
#include "parallel/watchdog.h"

#define BAD(...)                                \
    do {                                        \
        snprintf(err, errlen, __VA_ARGS__);     \
        return -1;                              \
    } while (0)

int mesh_check(const par_mesh_spec *s, int world, char *err, size_t errlen) {
    if (s->sp < 1) BAD("parallel.sp: must be >= 1, got %d", s->sp);
    if (s->ssp < 1) BAD("parallel.ssp: must be >= 1, got %d", s->ssp);
    if (s->dp < 0) BAD("parallel.dp: must be >= 0 (0 = world / (sp x ssp)), got %d", s->dp);
    int seq = s->sp * s->ssp;
    if (world % seq)
        BAD("parallel.sp x parallel.ssp = %d x %d does not divide the %d rank(s) of the job (mpirun -np / srun -n)",
            s->sp, s->ssp, world);
    int dp = s->dp ? s->dp : world / seq;
    if (dp * seq != world)
        BAD("parallel.dp x sp x ssp = %d x %d x %d = %d, but the job has %d rank(s) (mpirun -np / srun -n)", dp, s->sp,
            s->ssp, dp * seq, world);
    if (s->heads % s->sp) BAD("parallel.sp: %d does not divide model.num_heads = %d (Ulysses splits heads)", s->sp, s->heads);
    if (s->ssp > 1 && !s->hybrid)
        BAD("parallel.ssp: %d > 1 needs model.attention.mode: hybrid (SSP splits Skiparse subsequences)", s->ssp);
    if (s->ssp > 1 && (s->sparse_ratio * s->sparse_ratio) % s->ssp)
        BAD("parallel.ssp: %d does not divide P^2 = %d (model.attention.sparse_ratio %d)", s->ssp,
            s->sparse_ratio * s->sparse_ratio, s->sparse_ratio);
    if (s->batch % dp)
        BAD("train.batch_size: the global batch %d is not divisible by parallel.dp = %d", s->batch, dp);
    if (seq > 1)
        BAD("parallel.sp / parallel.ssp: sequence parallelism is not implemented yet (use sp: 1, ssp: 1 and dp ranks)");
    if (!strcmp(s->shard, "full"))
        BAD("parallel.shard: full (ZeRO-3, sharded parameters) is not implemented yet; use none or optimizer");
    if (!strcmp(s->transport, "nccl") && !par_nccl_available())
        BAD("parallel.transport: nccl is not available (osp was built without NCCL); use mpi or auto");
    if (s->timeout_s < 0) BAD("parallel.timeout_s: must be >= 0 (0 = no watchdog), got %g", s->timeout_s);
    return 0;
}

void mesh_init(par_mesh *m, const par_mesh_spec *s) {
    memset(m, 0, sizeof *m);
    m->world_g = par_group_world();
    m->world = par_group_size(m->world_g);
    m->rank = par_group_rank(m->world_g);
    char err[512];
    if (mesh_check(s, m->world, err, sizeof err)) {
        /* every rank finds the same error: rank 0 says it once and aborts the job, the
         * others wait in a barrier that the abort ends */
        if (m->rank != 0) par_barrier(m->world_g);
        osp_die("%s", err);
    }
    m->sp = s->sp, m->ssp = s->ssp;
    m->dp = s->dp ? s->dp : m->world / (s->sp * s->ssp);
    m->shard = !strcmp(s->shard, "optimizer") ? PAR_SHARD_OPTIMIZER : !strcmp(s->shard, "full") ? PAR_SHARD_FULL
                                                                                                 : PAR_SHARD_NONE;
    /* rank = (dp_i * ssp + ssp_i) * sp + sp_i */
    m->sp_rank = m->rank % m->sp;
    m->ssp_rank = (m->rank / m->sp) % m->ssp;
    m->dp_rank = m->rank / (m->sp * m->ssp);
    wd_start(s->timeout_s);
    /* same split order on every rank: the watchdog's group slots depend on it */
    m->dp_g = par_group_split(m->world_g, m->ssp_rank * m->sp + m->sp_rank, m->dp_rank, "dp");
    m->sp_g = par_group_split(m->world_g, m->dp_rank * m->ssp + m->ssp_rank, m->sp_rank, "sp");
    m->ssp_g = par_group_split(m->world_g, m->dp_rank * m->sp + m->sp_rank, m->ssp_rank, "ssp");
    m->seq_g = par_group_split(m->world_g, m->dp_rank, m->ssp_rank * m->sp + m->sp_rank, "seq");
}

void mesh_free(par_mesh *m) {
    par_group_free(m->dp_g);
    par_group_free(m->sp_g);
    par_group_free(m->ssp_g);
    par_group_free(m->seq_g);
    wd_stop();
    memset(m, 0, sizeof *m);
}

void mesh_describe(const par_mesh *m, char *buf, size_t len) {
    static const char *sh[] = {"none", "optimizer", "full"};
    snprintf(buf, len, "world %d = dp %d x ssp %d x sp %d, shard %s, transport %s", m->world, m->dp, m->ssp, m->sp,
             sh[m->shard], m->transport[0] ? m->transport : "mpi");
}
