/*
 * bench/util.h — shared state and helpers of `osp bench` (bench/cmd_bench.c): the bench
 * context, seeded random tensors in backend memory, median timing with warm-up, table
 * printing and the JSON record that --json writes. The sections live in bench/ops.c
 * (gemm, attn, skiparse, hif8) and bench/dit.c (dit, step).
 */
#ifndef OSP_BENCH_UTIL_H
#define OSP_BENCH_UTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "model/ops.h"
#include "model/wan.h"

/* One model shape the sections share: the DiT of the `dit` section and the GEMM and
 * attention shapes taken from it. Latent [16, T, Hl, Wl], patch 1x2x2. */
typedef struct {
    const char *name;
    WAN_DIMS_UNION; /* dim, ffn_dim, num_heads, ... or .dims (model/wan_arch.h) */
    int T, Hl, Wl;
} bench_model;

/* Attention timings already measured in this run (the skiparse section reuses the attn
 * section's numbers when the shapes agree instead of paying for them twice). */
typedef struct {
    int64_t R, N;
    int H, d;
    bool masked;
    bool warm;       /* forward timed right after an untimed forward (see bench_attn_time) */
    double fwd, bwd; /* median seconds */
} bench_attn_result;

typedef struct {
    const osp_backend *be;
    bool cuda, quick;
    int repeat;        /* timed runs per measurement (after one warm-up) */
    bool repeat_set;   /* --repeat given: model-level sections use it as is */
    uint64_t seed;     /* advanced by every random tensor */
    json_t *root;      /* everything --json writes */
    bench_attn_result attn[16];
    int nattn;
    float *host_params; /* cached random weights of the CUDA 1.3B model (host), or NULL */
    int64_t host_params_n;
} bench_ctx;

/* ---- timing ---- */
/* be->sync() then osp_now(): a timestamp after all queued device work finished. */
double bench_tick(const bench_ctx *b);
/* One run of the thing measured: fills t[0..nphase) with the seconds of each phase. */
typedef void (*bench_fn)(void *arg, double *t);
/* One warm-up run, then b->repeat runs; med[p] = median seconds of phase p. On the CPU,
 * when the warm-up took longer than BENCH_SLOW_S and --repeat was not given, one timed run
 * only (keeps the default run within minutes on a slow or busy machine). */
#define BENCH_SLOW_S 3.0
void bench_measure(const bench_ctx *b, bench_fn fn, void *arg, int nphase, double *med);
int bench_shortened(void); /* measurements timed once because their warm-up was slow */
double bench_median(double *x, int n); /* sorts x */
/* Run the backend for BENCH_SETTLE_S before the first section (CPU only). */
#define BENCH_SETTLE_S 0.5
void bench_settle(bench_ctx *b);

/* ---- tensors ---- */
/* n floats uniform in [-a, a] from a fresh seed, in backend memory (caller frees with be->free). */
float *bench_rand(bench_ctx *b, int64_t n, float a);
/* The same on the host (osp_malloc'd). */
float *bench_rand_host(bench_ctx *b, int64_t n, float a);

/* ---- models ---- */
/* The model of the dit/gemm/hif8 sections for this device (CPU small, --quick smaller,
 * CUDA Wan2.1-1.3B at 480P). */
bench_model bench_model_default(const bench_ctx *b);
int64_t bench_model_tokens(const bench_model *m); /* T * Hl/2 * Wl/2 */
wan_config bench_wan_config(const bench_model *m, bool hybrid, int P, int K, bool recompute);
/* wan_init + random weights (Wan init, then a random nonzero head; all from b->seed). */
wan_model *bench_wan_init(bench_ctx *b, const bench_model *bm, bool hybrid, int K, bool recompute);
/* as bench_wan_init for a config the caller filled (e.g. with HiF8 fake quantisation on) */
wan_model *bench_wan_init_config(bench_ctx *b, const wan_config *c);

/* ---- output ---- */
/* Section object in the JSON record (created on first use): root.sections.<name> = [] */
json_t *bench_section(bench_ctx *b, const char *name);
/* rate units: GFLOP/s on the CPU, TFLOP/s on CUDA */
double bench_rate(const bench_ctx *b, double flops, double sec);
const char *bench_rate_unit(const bench_ctx *b);
void bench_title(const char *title);

/* ---- sections ---- */
void bench_gemm(bench_ctx *b);
void bench_attn(bench_ctx *b);
void bench_skiparse(bench_ctx *b);
void bench_hif8(bench_ctx *b);
void bench_dit(bench_ctx *b);
void bench_step(bench_ctx *b);
void bench_fp8(bench_ctx *b); /* bench/fp8.c */

/* whether the backend stores attention / GEMM-only activations bf16 now (ops.h act16_on) */
bool bench_act16(const bench_ctx *b);
/* Attention fwd / bwd medians at [R, N, H*d] (self-attention, key mask when masked),
 * reusing a result of this run with the same shape and protocol. warm: the timed forward
 * follows an untimed one, as bench_torch.py times passes back to back (the attn section, for
 * the comparison with PyTorch); else it follows the previous run's backward, which has evicted
 * q, k, v from L2 (the dit section's attention share: the larger time, so the ideal speedup it
 * implies is not flattered). */
bench_attn_result bench_attn_time(bench_ctx *b, int64_t R, int64_t N, int H, int d, const uint8_t *kvalid_host,
                                  bool warm);

/* Human-readable device name: the CPU model from /proc/cpuinfo, or the GPU's name. */
void bench_device_name(const bench_ctx *b, char *out, size_t n);
/* Device memory (bytes) in use / total, when the backend can tell (CUDA build); else false. */
bool bench_device_memory(const bench_ctx *b, double *used, double *total);

#endif
