/*
 * model/wan_arch.h — the facts that define a Wan2.1 T2V DiT, each stated once: its dimensions
 * (wan_dims), the default head count, and the parameter table (every tensor's original and
 * diffusers name, its shape as a function of the dimensions, and how the Wan init draws it).
 * model/wan.c lays out its arenas from the table, model/io/wan_keys.c maps and checks
 * checkpoint keys with it, the config and the commands take the dimensions and the head rule
 * from here.
 *
 * Parameter order: the 12 embedding tensors, then num_layers blocks of WAN_NBLOCK tensors,
 * then the 3 head tensors. This is the order of osp's parameter arena, of its init draws and
 * of the tensors in the checkpoints it writes. (Wan2.1's own state dict lists a block's
 * modulation first; osp keeps it last, and names, not order, identify tensors in files.)
 */
#ifndef OSP_WAN_ARCH_H
#define OSP_WAN_ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The dimensions of a Wan2.1 DiT. All but num_heads and text_len are readable from a
 * checkpoint's tensor shapes (0 where unknown). */
#define WAN_DIMS_MEMBERS                                           \
    int dim, ffn_dim, num_heads, num_layers; /* heads 0: default */ \
    int in_channels, out_channels, text_dim, text_len, freq_dim;    \
    int patch[3]; /* (pt, ph, pw) */
typedef struct {
    WAN_DIMS_MEMBERS
} wan_dims;

/* Put this first in a struct that carries a model's dimensions: the fields read by name
 * (c->dim, c->patch) and as one wan_dims (c->dims), so they are declared once and copied
 * whole between the config, the model and the checkpoint readers. */
#define WAN_DIMS_UNION \
    union {            \
        wan_dims dims; \
        struct {       \
            WAN_DIMS_MEMBERS \
        };             \
    }

/* Heads when none are given: Wan's head size is 128, so dim / 128 (at least 1). */
static inline int wan_default_heads(int dim) { return dim / 128 > 0 ? dim / 128 : 1; }

/* How the Wan init scheme draws a tensor (wan_init_weights). */
enum { WAN_INIT_XAVIER, WAN_INIT_ZERO, WAN_INIT_NORMAL002, WAN_INIT_ONES, WAN_INIT_RANDN_SQRTD, WAN_INIT_CONVBIAS };

/* One parameter. shape: one char per dim, D dim, F ffn_dim, T text_dim, R freq_dim,
 * S 6*dim, C in_channels, a/b/c patch t/h/w, O pt*ph*pw*out_channels, a digit itself. */
typedef struct {
    const char *name;      /* original Wan2.1 key (block rows: after "blocks.{i}.") */
    const char *diffusers; /* the same tensor's diffusers key */
    const char *shape;
    int init; /* WAN_INIT_* */
} wan_arch_param;

/* Top-level rows: embeddings (before the blocks), then the head (after them). A linear
 * layer's bias row follows its weight row. */
enum {
    WAN_PATCH_W, WAN_PATCH_B, WAN_TEXT0_W, WAN_TEXT0_B, WAN_TEXT2_W, WAN_TEXT2_B,
    WAN_TIME0_W, WAN_TIME0_B, WAN_TIME2_W, WAN_TIME2_B, WAN_TPROJ_W, WAN_TPROJ_B,
    WAN_NEMB,
    WAN_HEAD_W = WAN_NEMB, WAN_HEAD_B, WAN_HEAD_MOD,
    WAN_NTOP
};
/* Rows of one block. */
enum {
    WAN_SQ_W, WAN_SQ_B, WAN_SK_W, WAN_SK_B, WAN_SV_W, WAN_SV_B, WAN_SO_W, WAN_SO_B, WAN_SNORM_Q, WAN_SNORM_K,
    WAN_NORM3_W, WAN_NORM3_B,
    WAN_CQ_W, WAN_CQ_B, WAN_CK_W, WAN_CK_B, WAN_CV_W, WAN_CV_B, WAN_CO_W, WAN_CO_B, WAN_CNORM_Q, WAN_CNORM_K,
    WAN_FFN0_W, WAN_FFN0_B, WAN_FFN2_W, WAN_FFN2_B, WAN_MOD,
    WAN_NBLOCK
};
extern const wan_arch_param wan_arch_top[WAN_NTOP];
extern const wan_arch_param wan_arch_block[WAN_NBLOCK];

/* Tensors of a model with num_layers blocks: 12 + 27 * num_layers + 3. */
static inline int wan_arch_count(int num_layers) { return WAN_NTOP + WAN_NBLOCK * num_layers; }
/* Position in the parameter order of top-level row `row` / of row `row` of block `blk`. */
static inline int wan_arch_top_index(int num_layers, int row) {
    return row < WAN_NEMB ? row : row + WAN_NBLOCK * num_layers;
}
static inline int wan_arch_block_index(int blk, int row) { return WAN_NEMB + WAN_NBLOCK * blk + row; }

/* The i-th parameter's row (NULL when i is out of range); *blk = its block or -1. */
const wan_arch_param *wan_arch_at(int num_layers, int i, int *blk);
/* Full name of a row (block rows get "blocks.{blk}."), original or diffusers. 0, or -1 when
 * out is too small. */
int wan_arch_name(const wan_arch_param *p, int blk, bool diffusers, char *out, size_t outlen);
/* Shape of a row for dimensions d into shape[strlen(p->shape)] (at most 5); returns ndim. */
int wan_arch_shape(const wan_arch_param *p, const wan_dims *d, int64_t *shape);
/* The row a name (original or diffusers, no file prefix) belongs to, or NULL; *blk = its
 * block or -1. Block numbers are plain decimals ("blocks.01.x" is not a key). */
const wan_arch_param *wan_arch_lookup(const char *name, int *blk);

#endif
