/*
 * parallel/watchdog.c — the per-rank thread that turns a hung collective into a clear
 * error and a job abort (watchdog.h).
 */
#include "parallel/watchdog.h"

#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "parallel/comm_internal.h"
#include "parallel/mpi_boot.h"

#define WD_SLOTS 16

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_t g_thread;
static bool g_running, g_stop;
static double g_timeout = 300;
/* the collective in flight */
static bool g_armed;
static double g_since;
static char g_what[32];
static const par_group *g_group;
static int g_slot;
static int64_t g_seq;
/* node-local shared counters: volatile int64 [WD_SLOTS] per node rank */
static MPI_Win g_win = MPI_WIN_NULL;
static volatile int64_t *g_mine;
static volatile int64_t **g_peer;  /* by node rank */
static int *g_node_of_world;       /* world rank -> node rank, -1 elsewhere */

static void report(void) {
    const par_world *w = par_world_get();
    char who[512] = "";
    size_t len = 0;
    int unknown = 0;
    for (int i = 0; i < g_group->size && g_peer; i++) {
        int wr = g_group->members[i];
        if (wr == w->rank) continue;
        int nr = g_node_of_world ? g_node_of_world[wr] : -1;
        if (nr < 0) {
            unknown++;
            continue;
        }
        int64_t seen = g_slot < WD_SLOTS ? g_peer[nr][g_slot] : g_seq;
        if (seen < g_seq && len + 16 < sizeof who) len += (size_t)snprintf(who + len, sizeof who - len, "%s%d", len ? ", " : "", wr);
    }
    char tail[640];
    if (!g_peer)
        snprintf(tail, sizeof tail, "no shared-memory table: the unresponsive rank(s) are unknown");
    else if (len)
        snprintf(tail, sizeof tail, "rank(s) %s unresponsive%s", who, unknown ? ", ranks on other nodes unknown" : "");
    else if (unknown)
        snprintf(tail, sizeof tail, "the unresponsive rank is on another node");
    else
        snprintf(tail, sizeof tail, "every rank of the group entered it: a transport failure");
    fprintf(stderr, "osp: error: %scollective %s on group %s timed out after %.0fs (%s)\n", osp_error_prefix(), g_what,
            g_group->name, g_timeout, tail);
    fflush(stderr);
}

static void *loop(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&g_mu);
        bool stop = g_stop, fire = g_armed && g_timeout > 0 && osp_now() - g_since > g_timeout;
        double to = g_timeout;
        if (fire) report();
        pthread_mutex_unlock(&g_mu);
        if (stop) return NULL;
        if (fire) {
            MPI_Abort(MPI_COMM_WORLD, 1);
            _exit(1); /* MPI_Abort should not return; never hang here either */
        }
        double nap = to > 0 && to < 10 ? to / 10 : 1.0;
        usleep((useconds_t)(nap * 1e6));
    }
}

/* Node-local window of per-group counters (best effort: without it the report cannot
 * name ranks). Collective over the world. */
static void make_window(void) {
    const par_world *w = par_world_get();
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &node) != MPI_SUCCESS) return;
    int nr, ns;
    MPI_Comm_rank(node, &nr);
    MPI_Comm_size(node, &ns);
    int64_t *base = NULL;
    if (MPI_Win_allocate_shared(sizeof(int64_t) * WD_SLOTS, sizeof(int64_t), MPI_INFO_NULL, node, &base, &g_win) !=
        MPI_SUCCESS) {
        MPI_Comm_free(&node);
        return;
    }
    memset(base, 0, sizeof(int64_t) * WD_SLOTS);
    g_mine = base;
    g_peer = osp_calloc((size_t)ns, sizeof *g_peer);
    for (int i = 0; i < ns; i++) {
        MPI_Aint sz;
        int du;
        int64_t *p;
        MPI_Win_shared_query(g_win, i, &sz, &du, &p);
        g_peer[i] = p;
    }
    int *wr = osp_malloc(sizeof(int) * ns);
    MPI_Allgather(&w->rank, 1, MPI_INT, wr, 1, MPI_INT, node);
    g_node_of_world = osp_malloc(sizeof(int) * w->size);
    for (int i = 0; i < w->size; i++) g_node_of_world[i] = -1;
    for (int i = 0; i < ns; i++) g_node_of_world[wr[i]] = i;
    free(wr);
    MPI_Barrier(node); /* every counter zeroed before anyone reads it */
    MPI_Comm_free(&node);
}

void wd_start(double timeout_s) {
    const par_world *w = par_world_get();
    g_timeout = timeout_s;
    if (!w->mpi || g_running) return;
    make_window();
    g_stop = false;
    if (pthread_create(&g_thread, NULL, loop, NULL) == 0) g_running = true;
}

void wd_set_timeout(double timeout_s) {
    pthread_mutex_lock(&g_mu);
    g_timeout = timeout_s;
    pthread_mutex_unlock(&g_mu);
}

double wd_timeout(void) { return g_timeout; }

void wd_stop(void) {
    if (!g_running) return;
    pthread_mutex_lock(&g_mu);
    g_stop = true;
    pthread_mutex_unlock(&g_mu);
    pthread_join(g_thread, NULL);
    g_running = false;
    if (g_win != MPI_WIN_NULL) MPI_Win_free(&g_win);
    free(g_peer);
    free(g_node_of_world);
    g_peer = NULL, g_node_of_world = NULL, g_mine = NULL;
}

void wd_enter(const char *what, const par_group *g, int slot, int64_t seq) {
    if (g_mine && slot < WD_SLOTS) g_mine[slot] = seq; /* published before waiting on the peers */
    if (!g_running) return;
    pthread_mutex_lock(&g_mu);
    g_armed = true;
    g_since = osp_now();
    snprintf(g_what, sizeof g_what, "%s", what);
    g_group = g, g_slot = slot, g_seq = seq;
    pthread_mutex_unlock(&g_mu);
}

void wd_leave(void) {
    if (!g_running) return;
    pthread_mutex_lock(&g_mu);
    g_armed = false;
    pthread_mutex_unlock(&g_mu);
}
