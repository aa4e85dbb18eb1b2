/*
 * bench/comm.c — `osp bench --comm`: bus bandwidth of the collectives of parallel/comm.h
 * (all-reduce, all-gather, reduce-scatter, all-to-all) over message sizes from 1 KiB up to
 * --max-bytes, on MPI with host buffers or (--transport nccl) NCCL with GPU buffers,
 * reported the way nccl-tests reports them: size S in bytes (all-reduce: the buffer; all-gather: the gathered output;
 * reduce-scatter: the input; all-to-all: one rank's send buffer), time t = the slowest
 * rank's median over the timed calls (nccl-tests takes the mean; the median keeps a shared,
 * oversubscribed machine's descheduling out), algbw = S / t, and
 *   busbw = algbw · 2(n-1)/n (all-reduce), algbw · (n-1)/n (the other three),
 * the rate each link must sustain, comparable across world sizes. Run it under
 * mpirun/srun; rank 0 prints the table and writes --json. Inputs are seeded random floats.
 */
#include "bench/comm.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/common.h"
#include "model/cuda/backend.h"
#include "model/ops.h"
#include "parallel/comm.h"
#include "parallel/comm_nccl.h"
#include "parallel/mpi_boot.h"
#include "parallel/watchdog.h"
#include "train/cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: mpirun -np N osp bench --comm [--transport mpi|nccl] [--max-bytes B] [--iters N]\n"
               "                                  [--json FILE]\n\n"
               "Bus bandwidth (nccl-tests' busbw) of all-reduce, all-gather, reduce-scatter and all-to-all\n"
               "on MPI with host buffers (default) or NCCL with GPU buffers (one GPU per rank), sizes\n"
               "1 KiB x 4^k up to --max-bytes (default 64 MiB, at most 1 GiB). Each size: 2 warm-up and\n"
               "--iters timed calls (default: fewer for big sizes); time = the slowest rank's median call.\n");
}

typedef enum { C_AR, C_AG, C_RS, C_A2A, C_N } coll;
static const char *coll_name[C_N] = {"all_reduce", "all_gather", "reduce_scatter", "all_to_all"};

static void run_one(par_group *g, par_nccl *nc, coll c, float *send, float *recv, int64_t elems) {
    int n = par_group_size(g);
    if (nc) {
        switch (c) {
        case C_AR: par_nccl_allreduce(nc, send, elems, PAR_SUM); break;
        case C_AG: par_nccl_allgather(nc, send, recv, elems / n); break;
        case C_RS: par_nccl_reduce_scatter(nc, send, recv, elems / n); break;
        case C_A2A: par_nccl_alltoall(nc, send, recv, elems / n); break;
        default: break;
        }
        return;
    }
    switch (c) {
    case C_AR: par_allreduce(g, send, elems, PAR_F32, PAR_SUM); break;
    case C_AG: par_allgather(g, send, recv, elems / n, PAR_F32); break;
    case C_RS: par_reduce_scatter(g, send, recv, elems / n, PAR_F32); break;
    case C_A2A: par_alltoall(g, send, recv, elems / n, PAR_F32); break;
    default: break;
    }
}

static double median(double *x, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && x[j] < x[j - 1]; j--) {
            double t = x[j];
            x[j] = x[j - 1];
            x[j - 1] = t;
        }
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

int bench_comm(int argc, char **argv) {
    int64_t max_bytes = 64ll << 20;
    int iters_set = 0;
    const char *json_path = NULL, *transport = "mpi";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--comm")) continue;
        else if (!strcmp(a, "--max-bytes")) max_bytes = (int64_t)cli_double(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--iters")) iters_set = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--json")) json_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--transport")) transport = cli_value(argc, argv, &i);
        else osp_die("bench --comm: unknown option '%s' (see osp bench --comm --help)", a);
    }
    if (max_bytes < 1024 || max_bytes > (1ll << 30)) osp_die("bench --comm: --max-bytes must be in [1 KiB, 1 GiB]");
    if (iters_set < 0 || iters_set > 64) osp_die("bench --comm: --iters must be in [1, 64]");
    const par_world *w = par_boot();
    par_group *g = par_group_world();
    int n = par_group_size(g);
    wd_start(300);
    bool nccl = !strcmp(transport, "nccl");
    if (!nccl && strcmp(transport, "mpi")) osp_die("bench --comm: --transport must be mpi or nccl, got '%s'", transport);
    const osp_backend *be = NULL;
    par_nccl *nc = NULL;
    if (nccl) {
        char err[512];
        osp_cuda_options co = osp_cuda_options_default();
        if (!(be = osp_backend_cuda_init(0, &co))) { /* device 0 of what par_boot left this rank */
            if (w->rank != 0) par_barrier(g); /* rank 0 says it once; its abort ends the barrier */
            osp_die("bench --comm --transport nccl: no GPU visible (or built without CUDA)");
        }
        if (!(nc = par_nccl_init(g, err, sizeof err))) osp_die("%s", err);
    }
    char date[64];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    const char *tdesc = nccl ? "nccl (GPU buffers)" : "mpi (host buffers)";
    printf("osp bench --comm: %d rank(s) on %s, transport %s, fp32, %s\n", n, w->host, tdesc, date);
    printf("%-15s %12s %10s %10s %12s %12s\n", "collective", "bytes", "iters", "time_us", "algbw_GB/s",
           "busbw_GB/s");
    int64_t max_elems = max_bytes / 4;
    max_elems -= max_elems % n;
    float *send = osp_malloc(sizeof(float) * (size_t)max_elems), *recv = osp_malloc(sizeof(float) * (size_t)max_elems);
    uint64_t s = 0x1234 + (uint64_t)w->rank;
    for (int64_t i = 0; i < max_elems; i++) { /* xorshift: fresh values, no zeros */
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        send[i] = (float)((s >> 40) * (1.0 / 16777216.0) - 0.5);
    }
    float *h_send = send;
    if (nccl) { /* the same values, in device memory */
        send = be->alloc(sizeof(float) * (size_t)max_elems);
        be->upload(send, h_send, sizeof(float) * (size_t)max_elems);
        free(recv);
        recv = be->alloc(sizeof(float) * (size_t)max_elems);
    }
    json_t *rows = json_array();
    for (int c = 0; c < C_N; c++) {
        for (int64_t bytes = 1024; bytes <= max_bytes; bytes *= 4) {
            int64_t elems = bytes / 4;
            elems -= elems % n;
            if (elems < n) continue;
            int iters = iters_set ? iters_set : (int)(bytes <= (1 << 20) ? 50 : bytes <= (16 << 20) ? 10 : 4);
            for (int k = 0; k < 2; k++) run_one(g, nc, (coll)c, send, recv, elems);
            par_barrier(g);
            double ts[64];
            for (int k = 0; k < iters; k++) {
                double t0 = osp_now();
                run_one(g, nc, (coll)c, send, recv, elems);
                ts[k] = osp_now() - t0;
            }
            double t = par_max_f64(g, median(ts, iters));
            double S = (double)elems * 4, alg = S / t / 1e9;
            double bus = alg * (c == C_AR ? 2.0 * (n - 1) / n : (double)(n - 1) / n);
            printf("%-15s %12lld %10d %10.1f %12.3f %12.3f\n", coll_name[c], (long long)(elems * 4), iters, t * 1e6,
                   alg, bus);
            json_array_append_new(rows, json_pack("{s:s, s:I, s:i, s:f, s:f, s:f}", "collective", coll_name[c],
                                                  "bytes", (json_int_t)(elems * 4), "iters", iters, "time_us",
                                                  t * 1e6, "algbw_GBps", alg, "busbw_GBps", bus));
        }
    }
    if (json_path && w->rank == 0) {
        json_t *root = json_pack("{s:s, s:i, s:s, s:s, s:s, s:o}", "bench", "comm", "ranks", n, "host", w->host,
                                 "date", date, "transport", tdesc, "results", rows);
        char err[512], *txt = json_dumps(root, JSON_INDENT(2));
        if (osp_write_atomic(json_path, txt, strlen(txt), err, sizeof err)) osp_die("%s", err);
        free(txt);
        json_decref(root);
        printf("wrote %s\n", json_path);
    } else {
        json_decref(rows);
    }
    if (nccl) {
        be->free(send);
        be->free(recv);
        free(h_send);
        par_nccl_free(nc);
        osp_backend_cuda_free(be);
    } else {
        free(send);
        free(recv);
    }
    wd_stop();
    return 0;
}
