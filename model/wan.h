/*
 * wan.h — the Wan2.1 DiT (docs/model.md §3-§6) with OSP-Next hybrid Skiparse attention
 * (docs/skiparse.md §9) and optional HiF8 fake-quantised GEMMs (docs/hif8.md §8): parameters in
 * one arena, gradients in a second arena of identical layout, activations in a third,
 * sized once per latent shape. Forward and an explicit backward; every numeric op goes
 * through an osp_backend, so the same code runs on the CPU and on CUDA.
 *
 * Parameter names are the ORIGINAL Wan2.1 keys (patch_embedding.weight, blocks.3.ffn.0.bias,
 * head.modulation, ...) in the order of the parameter table (model/wan_arch.h).
 */
#ifndef OSP_WAN_H
#define OSP_WAN_H

#include <stdbool.h>
#include <stdint.h>

#include "model/ops.h"
#include "model/wan_arch.h"

typedef struct {
    WAN_DIMS_UNION; /* dim, ffn_dim, num_heads, ... patch; or all as .dims (model/wan_arch.h) */
    float eps;
    bool recompute;
    bool hybrid;          /* OSP-Next dual_end hybrid attention */
    int sparse_ratio;     /* P */
    int num_full_blocks;  /* K */
    /* A fixed 3-D sin-cos table of absolute token positions added after the patch embedding.
     * Not part of Wan2.1 (RoPE only, off for Wan checkpoints); it lets a small pixel-space model
     * place content at absolute positions, which a RoPE-only DiT cannot do from pure noise. */
    bool pos_sincos;
    /* HiF8 fake quantisation of the block GEMMs (embeddings and head stay unquantised) */
    bool quant;
    bool quant_delayed;
    int quant_history;
    float quant_fwd_target, quant_grad_target;
    bool quant_saturate, quant_attention;
    uint64_t quant_skip_mask; /* bit i set: block i unquantised (blocks < 64) */
} wan_config;

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[5];
    int64_t offset, numel;
    int kind; /* WAN_INIT_* (model/wan_arch.h): how the Wan init scheme draws it */
} wan_param_info;

typedef struct wan_model wan_model;

wan_model *wan_init(const wan_config *cfg, const osp_backend *be);
/* The [f*h*w, D] raster table cfg.pos_sincos adds after the patch embedding (host memory). */
void wan_pos_table(float *tab, int f, int h, int w, int D);
void wan_free(wan_model *m);

const wan_config *wan_get_config(const wan_model *m);
const osp_backend *wan_backend(const wan_model *m);
int64_t wan_num_params(const wan_model *m);
int wan_param_count(const wan_model *m);
const wan_param_info *wan_param(const wan_model *m, int i);
int wan_param_find(const wan_model *m, const char *name); /* -1 if absent */
/* Floats in the parameter arena (>= wan_num_params: tensors are 16-float aligned). */
int64_t wan_arena_floats(const wan_model *m);
float *wan_params(wan_model *m); /* backend memory, [wan_arena_floats] */
float *wan_grads(wan_model *m);  /* backend memory, same layout */
void wan_zero_grads(wan_model *m);

/* Wan2.1 from-scratch init (docs/model.md §7), deterministic from seed (host RNG, uploaded). */
void wan_init_weights(wan_model *m, uint64_t seed);

/* Size activations for a batch of B latents [C,T,H,W] (re-sizes only on change). */
void wan_set_shape(wan_model *m, int B, int T, int H, int W);

/* Forward. latents [B,Cin,T,H,W] and text [B,text_len,text_dim] in backend memory;
 * timesteps [B] on the host; out [B,Cout,T,H,W] in backend memory. */
void wan_forward(wan_model *m, const float *latents, const float *timesteps, const float *text, float *out);

/* Backward of the last forward given dL/dout (backend memory). Parameter gradients are
 * ADDED into wan_grads; dlatents / dtext (may be NULL) are overwritten. */
void wan_backward(wan_model *m, const float *dout, float *dlatents, float *dtext);

/* Per-GEMM HiF8 scaling state (delayed scaling history) for checkpoints. */
int64_t wan_quant_state_size(const wan_model *m);
void wan_quant_state_get(const wan_model *m, float *out);
void wan_quant_state_set(wan_model *m, const float *in);

/* Bytes of backend memory in the activation arena for the current shape. */
int64_t wan_activation_bytes(const wan_model *m);

/* FLOPs of one forward at the current shape (2 per MAC; attention counted over the
 * tokens actually attended) split into GEMM and attention parts. */
void wan_forward_flops(const wan_model *m, double *gemm, double *attn);

#endif
