/*
 * skiparse.h — Skiparse-2D token layouts (docs/skiparse.md §2-§4) as index tables.
 *
 * A layout says where every token of a batch of B same-shaped samples sits in a
 * [R, N, D] activation:
 *   raster : R = B, N = T*H*W, row b, token (t*H + h)*W + w (Wan's order, no padding)
 *   token  : R = P*P*B rows s*B + b, N = T*(H'/P)*(W'/P); subsequence s = (h mod P)*P + (w mod P)
 *   group  : as token with s = ((h/P) mod P)*P + (w/P) mod P, compact position (S3)
 * where H', W' are H, W padded at the bottom/right to multiples of P*P (S1).
 * Inside a subsequence, tokens are stored in the order (h', t, w') of their compact
 * coordinates: compact row outermost, then frame, then compact column. OSP-Next stores
 * them (t, h', w'); attention inside a subsequence does not depend on the order (RoPE is
 * carried by each position, §8), the lemma (S4) maps compact coordinates and holds for any
 * storage order both patterns share (the switch stays an involution), and with T = 1 the two
 * orders coincide (the worked example of §5). The point: padding rows (h >= H) have the
 * largest h' in both patterns, so when only H is padded (Wan2.1 at 480P, 720P) every
 * subsequence is its valid tokens followed by its padding, and attention can skip the
 * padding by length (cuDNN's padding mask) instead of computing and masking it.
 * Each position has its padded-grid coordinates (b, t, h, w); from those we derive the
 * RoPE positions (original coordinates), the key-validity mask (h < H and w < W) and
 * the gather tables that move a tensor between layouts. Moves are gathers whose
 * backward is the scatter-add with the same table, so enter / switch / leave need no
 * model code of their own; the token<->group switch is a permutation that is its own
 * inverse (docs/skiparse.md §6; the § and (Sn) above refer to that page too).
 */
#ifndef OSP_SKIPARSE_H
#define OSP_SKIPARSE_H

#include <stdint.h>

/* the largest sparse ratio P: P*P then stays within the 1024 positions of a RoPE axis */
#define SKIP_MAX_RATIO 32

typedef enum { LAYOUT_RASTER = 0, LAYOUT_TOKEN = 1, LAYOUT_GROUP = 2 } skip_kind;

typedef struct {
    skip_kind kind;
    int B, T, H, W, P;  /* token grid (after patchify) and sparse ratio */
    int Hp, Wp;         /* padded grid (== H, W for raster) */
    int64_t R, N;       /* rows, tokens per row */
    int64_t npos;       /* R * N */
    int32_t *grid;      /* [npos] padded-grid flat index ((b*T + t)*Hp + h)*Wp + w */
    int32_t *pos3;      /* [npos][3] original (t, h, w) for RoPE */
    uint8_t *valid;     /* [npos] 1 when h < H and w < W */
    int has_padding;    /* any invalid position */
} skip_layout;

/* Build a layout (host arrays). P is ignored for raster. */
void skip_layout_init(skip_layout *l, skip_kind kind, int B, int T, int H, int W, int P);
void skip_layout_free(skip_layout *l);

/* Gather table moving a tensor from layout `from` to layout `to`:
 * to_tensor[i] = from_tensor[idx[i]] (or 0 when idx[i] = -1: padding created on entry).
 * Positions of `from` with no place in `to` (padding on leave) are dropped. */
int32_t *skip_move_index(const skip_layout *from, const skip_layout *to);

/* Which layout block i of an L-layer model uses under the OSP-Next dual_end schedule:
 * blocks [0, K/2) and [L-K/2, L) raster (full attention); sparse block i token if i is
 * even, group if odd. hybrid == 0 gives raster everywhere. */
skip_kind skip_block_kind(int hybrid, int num_layers, int num_full_blocks, int i);

const char *skip_kind_name(skip_kind k);

#endif
