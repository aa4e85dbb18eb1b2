/*
 * parallel/mpi_boot.c — launch detection, MPI initialisation, node-local rank, the fatal
 * hook and per-rank device/thread choice (mpi_boot.h).
 */
#include "parallel/mpi_boot.h"

#include <dirent.h>
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"

static par_world g_world = {false, 0, 1, 0, 1, 0, ""};
static bool g_booted;

static bool env_set(const char *k) {
    const char *v = getenv(k);
    return v && *v;
}

bool par_launched(void) {
    const char *no = getenv("OSP_NO_MPI");
    if (no && *no && strcmp(no, "0")) return false;
    /* SLURM_NTASKS alone is also set in a batch script's own shell (not a launched step):
     * only SLURM_STEP_NUM_TASKS says srun started us (and PMI*_ says so with --mpi=pmi*). */
    return env_set("OMPI_COMM_WORLD_SIZE") || env_set("PMIX_RANK") || env_set("PMI_SIZE") || env_set("PMI_RANK") ||
           env_set("MV2_COMM_WORLD_SIZE") || env_set("SLURM_STEP_NUM_TASKS");
}

static void fatal_hook(int code) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return;
    if (code == 0) {
        MPI_Finalize();
        return;
    }
    /* one rank's error takes the whole job down: without the abort the other ranks
     * would wait in their next collective until the watchdog fires */
    MPI_Abort(MPI_COMM_WORLD, code);
}

void par_abort(int code) {
    fflush(stdout);
    fflush(stderr);
    if (g_world.mpi) MPI_Abort(MPI_COMM_WORLD, code);
    osp_exit(code);
}

/* Node-local rank: MPI's shared-memory split; when that fails, the launcher's variables. */
static void local_rank(void) {
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_world.rank, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        MPI_Comm_rank(node, &g_world.local_rank);
        MPI_Comm_size(node, &g_world.local_size);
        MPI_Comm_free(&node);
        return;
    }
    const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK"), *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!lr) lr = getenv("SLURM_LOCALID");
    if (!ls) ls = getenv("SLURM_NTASKS_PER_NODE");
    g_world.local_rank = lr ? atoi(lr) : 0;
    g_world.local_size = ls && atoi(ls) > 0 ? atoi(ls) : 1;
}

/* GPU of this rank: device local_rank mod (GPUs of the node). The CUDA backend today opens
 * device 0 of what it sees, so the choice is made through CUDA_VISIBLE_DEVICES before any
 * CUDA call. When the backend becomes an instance (osp_backend_cuda_init(device, &opts)),
 * pass the index computed here instead. Ranks outnumbering GPUs share them (tests on a
 * one-GPU machine). */
static void pick_gpu(void) {
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    char list[64][32];
    int n = 0;
    if (vis && *vis) {
        char buf[2048];
        snprintf(buf, sizeof buf, "%s", vis);
        for (char *s = strtok(buf, ","); s && n < 64; s = strtok(NULL, ",")) snprintf(list[n++], 32, "%s", s);
    } else {
        DIR *d = opendir("/dev");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            int k;
            char tail;
            if (sscanf(e->d_name, "nvidia%d%c", &k, &tail) == 1 && n < 64) n++;
        }
        if (d) closedir(d);
        for (int i = 0; i < n; i++) snprintf(list[i], 32, "%d", i);
    }
    g_world.gpus = n;
    if (n <= 1) return;
    setenv("CUDA_VISIBLE_DEVICES", list[g_world.local_rank % n], 1);
}

const par_world *par_boot(void) {
    if (g_booted) return &g_world;
    g_booted = true;
    gethostname(g_world.host, sizeof g_world.host - 1);
    if (!par_launched()) return &g_world;
    int provided = 0;
    /* MULTIPLE: the watchdog thread may call MPI_Abort while the main thread waits in a collective */
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
        osp_die("MPI_Init_thread failed (launched by mpirun/srun but MPI cannot start)");
    g_world.mpi = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world.size);
    /* errors come back as return codes; parallel/comm.c turns them into one line naming
     * the collective and the group, then aborts the job */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "rank %d: ", g_world.rank);
    osp_set_error_prefix(prefix);
    osp_set_fatal_hook(fatal_hook);
    local_rank();
    pick_gpu();
    /* several ranks on one node's cores: split the cores instead of oversubscribing them
     * (an explicit OMP_NUM_THREADS wins) */
    if (g_world.local_size > 1 && !getenv("OMP_NUM_THREADS")) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        int per = (int)(cores / g_world.local_size);
        omp_set_num_threads(per > 0 ? per : 1);
    }
    /* rank 0 owns the console: the config table, progress and log lines */
    if (g_world.rank != 0 && !getenv("OSP_ALL_RANKS_PRINT")) {
        fflush(stdout);
        if (!freopen("/dev/null", "w", stdout)) {
            /* keep printing: noisy but harmless */
        }
    }
    return &g_world;
}

const par_world *par_world_get(void) { return &g_world; }

void par_finalize(void) {
    if (!g_world.mpi) return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return;
    osp_set_fatal_hook(NULL);
    MPI_Finalize();
}
