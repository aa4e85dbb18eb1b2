/*
 * lora.h — LoRA adapters for one linear layer (mixgrpo.md §5.4, issue 18 item 3):
 *   y = x W^T + b + (alpha/r) (x A^T) B^T,   A [r, in], B [out, r]
 * with the base W, b frozen. A starts Kaiming-uniform (bound 1/sqrt(in), PEFT's default) from a
 * counter-based stream, B starts at zero, so a fresh adapter leaves the layer's output unchanged.
 * Forward and backward go through the backend op table (linear_fwd / linear_bwd / scale / add), so
 * the same code runs on the CPU and the CUDA backend; merging W' = W + (alpha/r) B A is done on the
 * host in double (a one-off for checkpoint export). Adapters carry PEFT-style key names
 * "<module>.lora_A.weight" / "<module>.lora_B.weight".
 */
#ifndef OSP_LORA_H
#define OSP_LORA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/ops.h"

typedef struct {
    const osp_backend *be;
    int in, out, rank;
    float alpha, scale; /* scale = alpha / rank */
    float *A, *B;       /* backend memory: [rank, in], [out, rank] */
    float *dA, *dB;     /* gradients, same shapes (backward ADDS; the caller zeroes) */
    char *key_A, *key_B; /* "<module>.lora_A.weight", "<module>.lora_B.weight" */
    bool owned;          /* A, B, dA, dB allocated by lora_init (else they live in a lora_set) */
} lora_adapter;

/* module: the linear's key without ".weight", e.g. "blocks.0.self_attn.q". A is drawn from
 * (seed, stream); B = 0. */
void lora_init(lora_adapter *l, const osp_backend *be, const char *module, int in, int out, int rank, float alpha,
               uint64_t seed, uint64_t stream);
void lora_free(lora_adapter *l);

/* All adapters of a model in two contiguous backend arenas, so the optimizer (optim/adamw.h, one
 * params/grads array) updates exactly the adapters: adapter i's A then B at increasing offsets of
 * `params`, its dA, dB at the same offsets of `grads`. Adapter i draws A from (seed, i), so it
 * equals lora_init(..., seed, i). */
typedef struct {
    const osp_backend *be;
    int count;
    lora_adapter *ad; /* [count] */
    int64_t nparams;
    float *params, *grads;
} lora_set;

void lora_set_init(lora_set *s, const osp_backend *be, int count, const char *const *modules, const int *in,
                   const int *out, int rank, float alpha, uint64_t seed);
void lora_set_free(lora_set *s);

/* Scratch floats a forward/backward of N rows needs: hs [N, rank] (kept from forward to backward)
 * and work [N, max(out, rank)]. */
int64_t lora_hs_floats(const lora_adapter *l, int64_t N);
int64_t lora_work_floats(const lora_adapter *l, int64_t N);

/* y[N,out] = x W^T + b + scale (x A^T) B^T. Saves hs = scale x A^T (lora_hs_floats) for the
 * backward; work is scratch (lora_work_floats). b may be NULL. */
void lora_fwd(const lora_adapter *l, float *y, float *hs, float *work, const float *x, const float *W, const float *b,
              int64_t N);

/* Backward for dy[N,out]: dx += dy W + scale (dy B) A (dx may be NULL), dA += scale (dy B)^T x,
 * dB += dy^T hs. The base W stays frozen (no dW). work as in lora_fwd. */
void lora_bwd(const lora_adapter *l, float *dx, const float *dy, const float *x, const float *W, const float *hs,
              float *work, int64_t N);

/* Host arrays: W[out, in] += scale * B[out, rank] A[rank, in], accumulated in double. */
void lora_merge_host(float *W, const float *A, const float *B, int out, int in, int rank, float scale);

/* Merge an adapter into a host copy of its base weight (downloads A and B). */
void lora_merge(const lora_adapter *l, float *W_host);

/* Write adapters l[0..n) to one safetensors file (F32, keys key_A / key_B, atomic), with
 * "lora_rank" and "lora_alpha" in its metadata (all adapters must share rank and alpha).
 * 0, or -1 with one line naming the file in err. */
int lora_save(const lora_adapter *l, int n, const char *path, char *err, size_t errlen);

/* Read adapters l[0..n) (already lora_init'ed with their modules and shapes) from a file
 * written by lora_save or by PEFT with the same key names. A missing tensor, a shape that
 * differs, or a rank/alpha in the metadata that differs from the adapters' is an error:
 * -1 with one line naming the file and the tensor in err. */
int lora_load(lora_adapter *l, int n, const char *path, char *err, size_t errlen);

#endif
