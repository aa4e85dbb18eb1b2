/*
 * parallel/comm.c — groups and collectives over MPI on host buffers (comm.h).
 */
#include "parallel/comm.h"

#include <limits.h>
#include <mpi.h>
#include <string.h>

#include "core/common.h"
#include "parallel/comm_internal.h"
#include "parallel/mpi_boot.h"
#include "parallel/watchdog.h"

static par_group g_world_group;
static bool g_world_ready;
static int g_next_slot = 1; /* slot 0: the world */

static MPI_Datatype mpi_type(par_dtype t) {
    switch (t) {
    case PAR_F32: return MPI_FLOAT;
    case PAR_F64: return MPI_DOUBLE;
    case PAR_I64: return MPI_INT64_T;
    }
    return MPI_FLOAT;
}

size_t par_dtype_size(par_dtype t) { return t == PAR_F32 ? 4 : 8; }

const char *par_kind_name(par_kind k) {
    static const char *names[PAR_K_COUNT] = {"all_reduce", "reduce_scatter", "all_gather", "all_to_all",
                                             "all_to_all_v", "broadcast", "barrier"};
    return k < PAR_K_COUNT ? names[k] : "?";
}

/* world ranks of the members, for the watchdog's report */
static void fill_members(par_group *g) {
    g->members = osp_malloc(sizeof(int) * g->size);
    if (!g->mpi) {
        g->members[0] = par_world_get()->rank;
        return;
    }
    MPI_Group mine, world;
    MPI_Comm_group(g->comm, &mine);
    MPI_Comm_group(MPI_COMM_WORLD, &world);
    int *idx = osp_malloc(sizeof(int) * g->size);
    for (int i = 0; i < g->size; i++) idx[i] = i;
    MPI_Group_translate_ranks(mine, g->size, idx, world, g->members);
    free(idx);
    MPI_Group_free(&mine);
    MPI_Group_free(&world);
}

par_group *par_group_world(void) {
    if (g_world_ready) return &g_world_group;
    const par_world *w = par_boot();
    par_group *g = &g_world_group;
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "world");
    g->rank = w->rank;
    g->size = w->size;
    g->mpi = w->mpi;
    g->comm = w->mpi ? MPI_COMM_WORLD : MPI_COMM_NULL;
    g->slot = 0;
    fill_members(g);
    g_world_ready = true;
    return g;
}

/* An MPI error: one line naming the call and the group, then the whole job ends. */
static void check(int rc, const char *what, const par_group *g) {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    msg[len] = 0;
    osp_die("collective %s on group %s failed: %s", what, g->name, msg);
}

par_group *par_group_split(par_group *parent, int color, int key, const char *name) {
    par_group *g = osp_calloc(1, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    g->slot = g_next_slot++;
    if (!parent->mpi) {
        g->rank = 0, g->size = 1, g->mpi = false, g->comm = MPI_COMM_NULL;
    } else {
        check(MPI_Comm_split(parent->comm, color, key, &g->comm), "split", parent);
        MPI_Comm_set_errhandler(g->comm, MPI_ERRORS_RETURN);
        MPI_Comm_rank(g->comm, &g->rank);
        MPI_Comm_size(g->comm, &g->size);
        g->mpi = true;
    }
    fill_members(g);
    return g;
}

void par_group_free(par_group *g) {
    if (!g || g == &g_world_group) return;
    if (g->mpi && g->comm != MPI_COMM_NULL) MPI_Comm_free(&g->comm);
    free(g->members);
    free(g);
}

int par_group_rank(const par_group *g) { return g->rank; }
int par_group_size(const par_group *g) { return g->size; }
const char *par_group_name(const par_group *g) { return g->name; }
const par_stats *par_group_stats(const par_group *g) { return &g->stats; }

void par_stats_format(const par_group *g, char *buf, size_t len) {
    size_t o = (size_t)snprintf(buf, len, "%s:", g->name);
    bool any = false;
    for (int k = 0; k < PAR_K_COUNT && o < len; k++) {
        if (!g->stats.calls[k]) continue;
        double b = (double)g->stats.bytes[k];
        const char *u = b >= 1e9 ? "GB" : b >= 1e6 ? "MB" : b >= 1e3 ? "kB" : "B";
        double v = b >= 1e9 ? b / 1e9 : b >= 1e6 ? b / 1e6 : b >= 1e3 ? b / 1e3 : b;
        o += (size_t)snprintf(buf + o, len - o, "%s %s %lld calls, %.1f %s", any ? ";" : "", par_kind_name((par_kind)k),
                              (long long)g->stats.calls[k], v, u);
        any = true;
    }
    if (!any && o < len) snprintf(buf + o, len - o, " none");
}

static void count(par_group *g, par_kind k, int64_t bytes) {
    g->stats.calls[k]++;
    g->stats.bytes[k] += bytes;
}

static void enter(par_group *g, par_kind k) { wd_enter(par_kind_name(k), g, g->slot, ++g->seq); }

/* MPI counts are int: the calls that take one count check it (all-reduce splits itself). */
static int icount(int64_t n, const char *what, const par_group *g) {
    if (n < 0 || n > INT_MAX) osp_die("collective %s on group %s: %lld elements exceed MPI's int count", what,
                                      g->name, (long long)n);
    return (int)n;
}

void par_allreduce(par_group *g, void *buf, int64_t n, par_dtype t, par_op op) {
    count(g, PAR_K_ALLREDUCE, n * (int64_t)par_dtype_size(t));
    if (g->size == 1 || n == 0) return;
    enter(g, PAR_K_ALLREDUCE);
    const int64_t chunk = (int64_t)1 << 30;
    for (int64_t off = 0; off < n; off += chunk) {
        int c = (int)(n - off < chunk ? n - off : chunk);
        check(MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * par_dtype_size(t), c, mpi_type(t),
                            op == PAR_SUM ? MPI_SUM : MPI_MAX, g->comm),
              "all_reduce", g);
    }
    wd_leave();
}

void par_reduce_scatter(par_group *g, const void *send, void *recv, int64_t n, par_dtype t) {
    size_t es = par_dtype_size(t);
    count(g, PAR_K_REDUCE_SCATTER, n * g->size * (int64_t)es);
    if (g->size == 1) {
        if (recv != send) memmove(recv, send, (size_t)n * es);
        return;
    }
    enter(g, PAR_K_REDUCE_SCATTER);
    check(MPI_Reduce_scatter_block(send, recv, icount(n, "reduce_scatter", g), mpi_type(t), MPI_SUM, g->comm),
          "reduce_scatter", g);
    wd_leave();
}

void par_allgather(par_group *g, const void *send, void *recv, int64_t n, par_dtype t) {
    size_t es = par_dtype_size(t);
    count(g, PAR_K_ALLGATHER, n * g->size * (int64_t)es);
    if (g->size == 1) {
        if (recv != send) memmove(recv, send, (size_t)n * es);
        return;
    }
    enter(g, PAR_K_ALLGATHER);
    int c = icount(n, "all_gather", g);
    /* the rank's own chunk already in place: MPI forbids aliasing send and recv otherwise */
    const void *s = (const char *)recv + (size_t)g->rank * n * es == (const char *)send ? MPI_IN_PLACE : send;
    check(MPI_Allgather(s, c, mpi_type(t), recv, c, mpi_type(t), g->comm), "all_gather", g);
    wd_leave();
}

void par_alltoall(par_group *g, const void *send, void *recv, int64_t n, par_dtype t) {
    size_t es = par_dtype_size(t);
    count(g, PAR_K_ALLTOALL, n * g->size * (int64_t)es);
    if (g->size == 1) {
        if (recv != send) memmove(recv, send, (size_t)n * es);
        return;
    }
    enter(g, PAR_K_ALLTOALL);
    int c = icount(n, "all_to_all", g);
    check(MPI_Alltoall(send, c, mpi_type(t), recv, c, mpi_type(t), g->comm), "all_to_all", g);
    wd_leave();
}

void par_alltoallv(par_group *g, const void *send, const int64_t *scounts, const int64_t *sdispls, void *recv,
                   const int64_t *rcounts, const int64_t *rdispls, par_dtype t) {
    size_t es = par_dtype_size(t);
    int64_t sent = 0;
    for (int i = 0; i < g->size; i++) sent += scounts[i];
    count(g, PAR_K_ALLTOALLV, sent * (int64_t)es);
    if (g->size == 1) {
        if (scounts[0] != rcounts[0])
            osp_die("collective all_to_all_v on group %s: sends %lld elements to itself but expects %lld", g->name,
                    (long long)scounts[0], (long long)rcounts[0]);
        memmove((char *)recv + rdispls[0] * es, (const char *)send + sdispls[0] * es, (size_t)scounts[0] * es);
        return;
    }
    int *v = osp_malloc(sizeof(int) * 4 * g->size);
    for (int i = 0; i < g->size; i++) {
        v[i] = icount(scounts[i], "all_to_all_v", g);
        v[g->size + i] = icount(sdispls[i], "all_to_all_v", g);
        v[2 * g->size + i] = icount(rcounts[i], "all_to_all_v", g);
        v[3 * g->size + i] = icount(rdispls[i], "all_to_all_v", g);
    }
    enter(g, PAR_K_ALLTOALLV);
    check(MPI_Alltoallv(send, v, v + g->size, mpi_type(t), recv, v + 2 * g->size, v + 3 * g->size, mpi_type(t),
                        g->comm),
          "all_to_all_v", g);
    wd_leave();
    free(v);
}

void par_bcast(par_group *g, void *buf, int64_t n, par_dtype t, int root) {
    count(g, PAR_K_BCAST, n * (int64_t)par_dtype_size(t));
    if (g->size == 1) return;
    enter(g, PAR_K_BCAST);
    check(MPI_Bcast(buf, icount(n, "broadcast", g), mpi_type(t), root, g->comm), "broadcast", g);
    wd_leave();
}

void par_barrier(par_group *g) {
    count(g, PAR_K_BARRIER, 0);
    if (g->size == 1) return;
    enter(g, PAR_K_BARRIER);
    check(MPI_Barrier(g->comm), "barrier", g);
    wd_leave();
}

double par_sum_f64(par_group *g, double x) {
    par_allreduce(g, &x, 1, PAR_F64, PAR_SUM);
    return x;
}

double par_max_f64(par_group *g, double x) {
    par_allreduce(g, &x, 1, PAR_F64, PAR_MAX);
    return x;
}
