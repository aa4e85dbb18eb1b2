/*
 * model/wan_arch.c — the Wan2.1 T2V parameter table (wan_arch.h): original and diffusers names,
 * shape codes and init kinds, and the walks over it. The diffusers names are pure renames
 * (its conversion script's TRANSFORMER_KEYS_RENAME_DICT), so one table serves both layouts.
 */
#include "model/wan_arch.h"

#include <stdio.h>
#include <string.h>

const wan_arch_param wan_arch_top[WAN_NTOP] = {
    [WAN_PATCH_W] = {"patch_embedding.weight", "patch_embedding.weight", "DCabc", WAN_INIT_XAVIER},
    [WAN_PATCH_B] = {"patch_embedding.bias", "patch_embedding.bias", "D", WAN_INIT_CONVBIAS},
    [WAN_TEXT0_W] = {"text_embedding.0.weight", "condition_embedder.text_embedder.linear_1.weight", "DT",
                     WAN_INIT_NORMAL002},
    [WAN_TEXT0_B] = {"text_embedding.0.bias", "condition_embedder.text_embedder.linear_1.bias", "D", WAN_INIT_ZERO},
    [WAN_TEXT2_W] = {"text_embedding.2.weight", "condition_embedder.text_embedder.linear_2.weight", "DD",
                     WAN_INIT_NORMAL002},
    [WAN_TEXT2_B] = {"text_embedding.2.bias", "condition_embedder.text_embedder.linear_2.bias", "D", WAN_INIT_ZERO},
    [WAN_TIME0_W] = {"time_embedding.0.weight", "condition_embedder.time_embedder.linear_1.weight", "DR",
                     WAN_INIT_NORMAL002},
    [WAN_TIME0_B] = {"time_embedding.0.bias", "condition_embedder.time_embedder.linear_1.bias", "D", WAN_INIT_ZERO},
    [WAN_TIME2_W] = {"time_embedding.2.weight", "condition_embedder.time_embedder.linear_2.weight", "DD",
                     WAN_INIT_NORMAL002},
    [WAN_TIME2_B] = {"time_embedding.2.bias", "condition_embedder.time_embedder.linear_2.bias", "D", WAN_INIT_ZERO},
    [WAN_TPROJ_W] = {"time_projection.1.weight", "condition_embedder.time_proj.weight", "SD", WAN_INIT_XAVIER},
    [WAN_TPROJ_B] = {"time_projection.1.bias", "condition_embedder.time_proj.bias", "S", WAN_INIT_ZERO},
    [WAN_HEAD_W] = {"head.head.weight", "proj_out.weight", "OD", WAN_INIT_ZERO},
    [WAN_HEAD_B] = {"head.head.bias", "proj_out.bias", "O", WAN_INIT_ZERO},
    [WAN_HEAD_MOD] = {"head.modulation", "scale_shift_table", "12D", WAN_INIT_RANDN_SQRTD},
};

const wan_arch_param wan_arch_block[WAN_NBLOCK] = {
    [WAN_SQ_W] = {"self_attn.q.weight", "attn1.to_q.weight", "DD", WAN_INIT_XAVIER},
    [WAN_SQ_B] = {"self_attn.q.bias", "attn1.to_q.bias", "D", WAN_INIT_ZERO},
    [WAN_SK_W] = {"self_attn.k.weight", "attn1.to_k.weight", "DD", WAN_INIT_XAVIER},
    [WAN_SK_B] = {"self_attn.k.bias", "attn1.to_k.bias", "D", WAN_INIT_ZERO},
    [WAN_SV_W] = {"self_attn.v.weight", "attn1.to_v.weight", "DD", WAN_INIT_XAVIER},
    [WAN_SV_B] = {"self_attn.v.bias", "attn1.to_v.bias", "D", WAN_INIT_ZERO},
    [WAN_SO_W] = {"self_attn.o.weight", "attn1.to_out.0.weight", "DD", WAN_INIT_XAVIER},
    [WAN_SO_B] = {"self_attn.o.bias", "attn1.to_out.0.bias", "D", WAN_INIT_ZERO},
    [WAN_SNORM_Q] = {"self_attn.norm_q.weight", "attn1.norm_q.weight", "D", WAN_INIT_ONES},
    [WAN_SNORM_K] = {"self_attn.norm_k.weight", "attn1.norm_k.weight", "D", WAN_INIT_ONES},
    /* diffusers names norms by execution order: its affine cross-attn norm is norm2 */
    [WAN_NORM3_W] = {"norm3.weight", "norm2.weight", "D", WAN_INIT_ONES},
    [WAN_NORM3_B] = {"norm3.bias", "norm2.bias", "D", WAN_INIT_ZERO},
    [WAN_CQ_W] = {"cross_attn.q.weight", "attn2.to_q.weight", "DD", WAN_INIT_XAVIER},
    [WAN_CQ_B] = {"cross_attn.q.bias", "attn2.to_q.bias", "D", WAN_INIT_ZERO},
    [WAN_CK_W] = {"cross_attn.k.weight", "attn2.to_k.weight", "DD", WAN_INIT_XAVIER},
    [WAN_CK_B] = {"cross_attn.k.bias", "attn2.to_k.bias", "D", WAN_INIT_ZERO},
    [WAN_CV_W] = {"cross_attn.v.weight", "attn2.to_v.weight", "DD", WAN_INIT_XAVIER},
    [WAN_CV_B] = {"cross_attn.v.bias", "attn2.to_v.bias", "D", WAN_INIT_ZERO},
    [WAN_CO_W] = {"cross_attn.o.weight", "attn2.to_out.0.weight", "DD", WAN_INIT_XAVIER},
    [WAN_CO_B] = {"cross_attn.o.bias", "attn2.to_out.0.bias", "D", WAN_INIT_ZERO},
    [WAN_CNORM_Q] = {"cross_attn.norm_q.weight", "attn2.norm_q.weight", "D", WAN_INIT_ONES},
    [WAN_CNORM_K] = {"cross_attn.norm_k.weight", "attn2.norm_k.weight", "D", WAN_INIT_ONES},
    [WAN_FFN0_W] = {"ffn.0.weight", "ffn.net.0.proj.weight", "FD", WAN_INIT_XAVIER},
    [WAN_FFN0_B] = {"ffn.0.bias", "ffn.net.0.proj.bias", "F", WAN_INIT_ZERO},
    [WAN_FFN2_W] = {"ffn.2.weight", "ffn.net.2.weight", "DF", WAN_INIT_XAVIER},
    [WAN_FFN2_B] = {"ffn.2.bias", "ffn.net.2.bias", "D", WAN_INIT_ZERO},
    [WAN_MOD] = {"modulation", "scale_shift_table", "16D", WAN_INIT_RANDN_SQRTD},
};

const wan_arch_param *wan_arch_at(int num_layers, int i, int *blk) {
    *blk = -1;
    if (i < 0 || i >= wan_arch_count(num_layers)) return NULL;
    if (i < WAN_NEMB) return &wan_arch_top[i];
    if (i < WAN_NEMB + WAN_NBLOCK * num_layers) {
        *blk = (i - WAN_NEMB) / WAN_NBLOCK;
        return &wan_arch_block[(i - WAN_NEMB) % WAN_NBLOCK];
    }
    return &wan_arch_top[i - WAN_NBLOCK * num_layers];
}

int wan_arch_name(const wan_arch_param *p, int blk, bool diffusers, char *out, size_t outlen) {
    const char *name = diffusers ? p->diffusers : p->name;
    int n = blk >= 0 ? snprintf(out, outlen, "blocks.%d.%s", blk, name) : snprintf(out, outlen, "%s", name);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int wan_arch_shape(const wan_arch_param *p, const wan_dims *d, int64_t *shape) {
    int n = 0;
    for (const char *c = p->shape; *c; c++) {
        int64_t v;
        switch (*c) {
        case 'D': v = d->dim; break;
        case 'F': v = d->ffn_dim; break;
        case 'T': v = d->text_dim; break;
        case 'R': v = d->freq_dim; break;
        case 'S': v = 6 * (int64_t)d->dim; break;
        case 'C': v = d->in_channels; break;
        case 'a': case 'b': case 'c': v = d->patch[*c - 'a']; break;
        case 'O': v = (int64_t)d->patch[0] * d->patch[1] * d->patch[2] * d->out_channels; break;
        default: v = *c - '0';
        }
        shape[n++] = v;
    }
    return n;
}

const wan_arch_param *wan_arch_lookup(const char *name, int *blk) {
    *blk = -1;
    if (!strncmp(name, "blocks.", 7)) {
        const char *q = name + 7;
        int n = 0, len = 0;
        /* digits only, no leading zero, bounded: "blocks.01.x" must not alias "blocks.1.x" */
        while (q[len] >= '0' && q[len] <= '9' && len < 7) n = 10 * n + (q[len++] - '0');
        if (len == 0 || q[len] != '.' || (len > 1 && q[0] == '0')) return NULL;
        for (int i = 0; i < WAN_NBLOCK; i++)
            if (!strcmp(q + len + 1, wan_arch_block[i].name) || !strcmp(q + len + 1, wan_arch_block[i].diffusers)) {
                *blk = n;
                return &wan_arch_block[i];
            }
        return NULL;
    }
    for (int i = 0; i < WAN_NTOP; i++)
        if (!strcmp(name, wan_arch_top[i].name) || !strcmp(name, wan_arch_top[i].diffusers)) return &wan_arch_top[i];
    return NULL;
}
