/*
 * parallel/watchdog.h — a thread per rank that ends the job when a collective hangs.
 *
 * Every collective of parallel/comm.c is bracketed by wd_enter / wd_leave. When one stays
 * entered for longer than the timeout (parallel.timeout_s), the watchdog prints
 *   osp: error: rank R: collective X on group G timed out after Ts (rank(s) ... unresponsive)
 * and aborts the job (MPI_Abort). Ranks of the same node publish how many collectives they
 * entered on each group in a shared-memory window, so the message can name the peers that
 * never arrived; peers on other nodes are reported as unknown.
 */
#ifndef OSP_PAR_WATCHDOG_H
#define OSP_PAR_WATCHDOG_H

#include <stdint.h>

typedef struct par_group par_group;

/* Start the thread (idempotent; nothing without MPI). timeout_s <= 0 disables it. */
void wd_start(double timeout_s);
void wd_set_timeout(double timeout_s);
double wd_timeout(void);
void wd_stop(void);
/* `slot` identifies the group (parallel/comm.c gives each group one), `seq` is the number
 * of collectives this rank entered on it, counting this one. */
void wd_enter(const char *what, const par_group *g, int slot, int64_t seq);
void wd_leave(void);

#endif
