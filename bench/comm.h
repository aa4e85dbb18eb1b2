/*
 * bench/comm.h — `osp bench --comm`: collective bandwidth over the ranks of the job
 * (bench/comm.c).
 */
#ifndef OSP_BENCH_COMM_H
#define OSP_BENCH_COMM_H

/* argv as given to `osp bench` (it holds --comm). */
int bench_comm(int argc, char **argv);

#endif
