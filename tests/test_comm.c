/*
 * test_comm.c — the collectives of parallel/comm.h against results computed by hand, at
 * whatever world size it is launched with (ctest runs it as one process; test_comm_mpi.sh
 * runs it under mpirun -np 2 and 4). Every rank's inputs are fresh random numbers from a
 * generator seeded by (seed, rank), so each rank can rebuild any peer's inputs and compute
 * the expected output itself. Moves (all-gather, all-to-all(-v), broadcast) must be exact;
 * fp32 sums must match the float64 sum of the inputs within 1e-6 relative (summation order
 * is MPI's), fp64 sums of small integers and maxima exactly. Also: the mesh's one-line
 * errors, group splits, byte counting, and that the noise slices a data-parallel rank
 * draws (flow_randn_at) are bit-identical to one process's single stream.
 */
#include <string.h>

#include "core/common.h"
#include "parallel/comm.h"
#include "parallel/mesh.h"
#include "parallel/mpi_boot.h"
#include "testutil.h"
#include "train/flow.h"

static void inputs(float *x, int64_t n, int rank, uint64_t salt) {
    tu_rng r = {0x5eed0000ull + (uint64_t)rank * 7919 + salt * 104729};
    tu_fill_normal(&r, x, n, 1.0);
}

static double relerr_fd(const float *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1));
}

static double maxdiff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

int main(void) {
    const par_world *w = par_boot();
    par_group *g = par_group_world();
    int W = par_group_size(g), R = par_group_rank(g);
    printf("test_comm: world %d (MPI %s)\n", W, w->mpi ? "on" : "off");
    char name[128];
    const int64_t n = 1000 + 37 * W; /* not a multiple of anything in particular */

    /* all-reduce sum, fp32 */
    float *x = osp_malloc(sizeof(float) * n * W), *y = osp_malloc(sizeof(float) * n * W);
    double *e = osp_malloc(sizeof(double) * n * W);
    inputs(x, n, R, 1);
    par_allreduce(g, x, n, PAR_F32, PAR_SUM);
    memset(e, 0, sizeof(double) * n);
    for (int r = 0; r < W; r++) {
        inputs(y, n, r, 1);
        for (int64_t i = 0; i < n; i++) e[i] += y[i];
    }
    snprintf(name, sizeof name, "all_reduce sum f32 (n=%lld, W=%d)", (long long)n, W);
    tu_check(name, relerr_fd(x, e, n), 1e-6);

    /* all-reduce max, fp32: exact */
    inputs(x, n, R, 2);
    par_allreduce(g, x, n, PAR_F32, PAR_MAX);
    double md = 0;
    for (int64_t i = 0; i < n; i++) {
        float m = -INFINITY;
        for (int r = 0; r < W; r++) {
            inputs(y, n, r, 2);
            m = fmaxf(m, y[i]);
        }
        md = fmax(md, fabs((double)x[i] - m));
        if (i > 50) break; /* W·n regenerations per element: a prefix is plenty */
    }
    tu_check("all_reduce max f32 (exact)", md, 0);

    /* all-reduce sum, fp64 of integers: exact */
    double ints[5] = {R + 1.0, 2.0 * R, -3.0, 1e6 * R, 7.0};
    par_allreduce(g, ints, 5, PAR_F64, PAR_SUM);
    double s1 = W * (W + 1) / 2.0, s2 = (double)W * (W - 1);
    tu_check("all_reduce sum f64 integers (exact)",
             fabs(ints[0] - s1) + fabs(ints[1] - s2) + fabs(ints[2] + 3.0 * W) + fabs(ints[3] - 1e6 * s2 / 2) +
                 fabs(ints[4] - 7.0 * W),
             0);
    tu_check("par_max_f64 (exact)", fabs(par_max_f64(g, R * 1.5) - (W - 1) * 1.5), 0);

    /* reduce-scatter: chunk R of the sum */
    inputs(x, n * W, R, 3);
    float *rs = osp_malloc(sizeof(float) * n);
    par_reduce_scatter(g, x, rs, n, PAR_F32);
    memset(e, 0, sizeof(double) * n);
    for (int r = 0; r < W; r++) {
        inputs(y, n * W, r, 3);
        for (int64_t i = 0; i < n; i++) e[i] += y[(int64_t)R * n + i];
    }
    tu_check("reduce_scatter sum f32", relerr_fd(rs, e, n), 1e-6);

    /* all-gather: chunk r is rank r's input, exactly; also in place */
    inputs(x, n, R, 4);
    par_allgather(g, x, y, n, PAR_F32);
    double ag = 0;
    for (int r = 0; r < W; r++) {
        inputs(x, n, r, 4);
        ag = fmax(ag, maxdiff(y + (int64_t)r * n, x, n));
    }
    tu_check("all_gather f32 (exact)", ag, 0);
    inputs(y + (int64_t)R * n, n, R, 4);
    par_allgather(g, y + (int64_t)R * n, y, n, PAR_F32);
    ag = 0;
    for (int r = 0; r < W; r++) {
        inputs(x, n, r, 4);
        ag = fmax(ag, maxdiff(y + (int64_t)r * n, x, n));
    }
    tu_check("all_gather in place (exact)", ag, 0);

    /* all-to-all: chunk s of the result is chunk R of rank s's input */
    inputs(x, n * W, R, 5);
    par_alltoall(g, x, y, n, PAR_F32);
    double a2a = 0;
    for (int s = 0; s < W; s++) {
        inputs(x, n * W, s, 5);
        a2a = fmax(a2a, maxdiff(y + (int64_t)s * n, x + (int64_t)R * n, n));
    }
    tu_check("all_to_all f32 (exact)", a2a, 0);

    /* all-to-all-v: rank r sends c(r,d) = (r + 2d) % 3 + 1 elements, from offset 5·d of its
     * input, to rank d; they land packed in source order */
    int64_t sc[64], sd[64], rc[64], rd[64], tot = 0;
    for (int d = 0; d < W; d++) {
        sc[d] = (R + 2 * d) % 3 + 1, sd[d] = 5 * d;
        rc[d] = (d + 2 * R) % 3 + 1, rd[d] = tot;
        tot += rc[d];
    }
    inputs(x, 5 * W, R, 6);
    float *got = osp_calloc((size_t)tot, sizeof(float));
    par_alltoallv(g, x, sc, sd, got, rc, rd, PAR_F32);
    double a2v = 0;
    for (int s = 0; s < W; s++) {
        inputs(x, 5 * W, s, 6);
        a2v = fmax(a2v, maxdiff(got + rd[s], x + 5 * R, rc[s]));
    }
    tu_check("all_to_all_v f32 (exact)", a2v, 0);

    /* broadcast from the last rank */
    inputs(x, n, R, 7);
    par_bcast(g, x, n, PAR_F32, W - 1);
    inputs(y, n, W - 1, 7);
    tu_check("broadcast from the last rank (exact)", maxdiff(x, y, n), 0);
    par_barrier(g);

    /* byte counting: what this file asked of the world group */
    const par_stats *st = par_group_stats(g);
    TU_EXPECT(st->calls[PAR_K_ALLREDUCE] == 4, "all_reduce calls %lld", (long long)st->calls[PAR_K_ALLREDUCE]);
    TU_EXPECT(st->bytes[PAR_K_ALLREDUCE] == 8 * n + 5 * 8 + 8, "all_reduce bytes %lld",
              (long long)st->bytes[PAR_K_ALLREDUCE]);
    TU_EXPECT(st->bytes[PAR_K_ALLGATHER] == 2 * 4 * n * W, "all_gather bytes %lld",
              (long long)st->bytes[PAR_K_ALLGATHER]);
    TU_EXPECT(st->calls[PAR_K_BARRIER] == 1 && st->calls[PAR_K_BCAST] == 1, "barrier/bcast calls");

    /* a split: even and odd ranks */
    par_group *h = par_group_split(g, R % 2, R, "parity");
    TU_EXPECT(par_group_size(h) == (W - R % 2 + 1) / 2, "parity group size %d", par_group_size(h));
    TU_EXPECT(par_group_rank(h) == R / 2, "parity group rank %d", par_group_rank(h));
    double one = par_sum_f64(h, 1.0);
    TU_EXPECT(one == par_group_size(h), "sum of ones over the parity group %g", one);
    par_group_free(h);

    /* the mesh: good and bad specs (no communication) */
    char err[512];
    par_mesh_spec ok = {0, 1, 1, 4, true, 2, 8, "optimizer", "auto", 300};
    TU_EXPECT(mesh_check(&ok, 4, err, sizeof err) == 0, "dp auto at world 4: %s", err);
    struct {
        par_mesh_spec s;
        int world;
        const char *want;
    } bad[] = {
        {{2, 1, 1, 4, true, 2, 8, "none", "auto", 300}, 4, "but the job has 4 rank(s)"},
        {{0, 3, 1, 4, true, 2, 12, "none", "auto", 300}, 3, "does not divide model.num_heads"},
        {{0, 1, 2, 4, false, 2, 8, "none", "auto", 300}, 2, "needs model.attention.mode: hybrid"},
        {{0, 1, 3, 4, true, 2, 8, "none", "auto", 300}, 3, "does not divide P^2"},
        {{0, 1, 1, 4, true, 2, 6, "none", "auto", 300}, 4, "not divisible by parallel.dp = 4"},
        {{0, 1, 1, 4, true, 2, 8, "full", "auto", 300}, 2, "parallel.shard: full"},
        {{0, 2, 1, 4, true, 2, 8, "none", "auto", 300}, 3, "does not divide the 3 rank(s)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        int rc_ = mesh_check(&bad[i].s, bad[i].world, err, sizeof err);
        TU_EXPECT(rc_ == -1 && strstr(err, bad[i].want) && !strchr(err, '\n'), "bad mesh %zu: got '%s'", i, err);
    }

    /* a dp rank's slices of the noise stream equal one process's stream, bit for bit,
     * for every split (odd starts take the second half of a Box-Muller pair) */
    const int64_t per = 75; /* odd: samples start at odd stream positions */
    float *whole = osp_malloc(sizeof(float) * per * 8), *part = osp_malloc(sizeof(float) * per);
    uint64_t key = flow_key(3, 14, 15);
    flow_randn(whole, per * 8, key);
    double fr = 0;
    for (int s = 0; s < 8; s++) {
        flow_randn_at(part, per, key, s * per);
        fr = fmax(fr, maxdiff(part, whole + s * per, per));
    }
    tu_check("flow_randn_at slices == one stream (exact)", fr, 0);

    /* every rank's verdict reaches rank 0's report */
    double fails = par_sum_f64(g, (double)tu_nfail);
    if (fails > 0 && tu_nfail == 0) tu_nfail = 1;
    free(x), free(y), free(e), free(rs), free(got), free(whole), free(part);
    int code = tu_summary("test_comm");
    par_finalize();
    return code;
}
