/*
 * skiparse.c — Skiparse-2D layouts as index tables (see skiparse.h and docs/skiparse.md).
 * All tables are built once per latent shape on the host; backends receive copies.
 */
#include "model/skiparse.h"

#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/size.h"

const char *skip_kind_name(skip_kind k) {
    return k == LAYOUT_RASTER ? "full" : (k == LAYOUT_TOKEN ? "token" : "group");
}

skip_kind skip_block_kind(int hybrid, int num_layers, int num_full_blocks, int i) {
    if (!hybrid) return LAYOUT_RASTER;
    int half = num_full_blocks / 2;
    if (i < half || i >= num_layers - half) return LAYOUT_RASTER;
    return (i % 2 == 0) ? LAYOUT_TOKEN : LAYOUT_GROUP;
}

/* padded-grid coordinates (h, w) of compact position (s, hc, wc) in a sparse pattern */
static void sparse_coords(skip_kind kind, int P, int s, int hc, int wc, int *h, int *w) {
    int p = s / P, q = s % P;
    if (kind == LAYOUT_TOKEN) { /* (S2) h = h'P + p */
        *h = hc * P + p;
        *w = wc * P + q;
    } else { /* (S3) compact h'' = a*P + p2, h = a*P^2 + p1*P + p2 */
        *h = (hc / P) * P * P + p * P + hc % P;
        *w = (wc / P) * P * P + q * P + wc % P;
    }
}

void skip_layout_init(skip_layout *l, skip_kind kind, int B, int T, int H, int W, int P) {
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->B = B;
    l->T = T;
    l->H = H;
    l->W = W;
    l->P = kind == LAYOUT_RASTER ? 1 : P;
    OSP_CHECK(kind == LAYOUT_RASTER || P >= 2, "sparse_ratio must be >= 2 for a sparse layout");
    /* P^2 and the padded grid are ints: a ratio past the RoPE grid limit (1024 per axis) is refused
     * before it can overflow them */
    if (l->P > SKIP_MAX_RATIO) osp_die("model.attention.sparse_ratio %d exceeds %d", l->P, SKIP_MAX_RATIO);
    int P2 = l->P * l->P;
    l->Hp = kind == LAYOUT_RASTER ? H : H + (P2 - H % P2) % P2; /* (S1), outer mod included */
    l->Wp = kind == LAYOUT_RASTER ? W : W + (P2 - W % P2) % P2;
    int hc_n = l->Hp / l->P, wc_n = l->Wp / l->P;
    l->R = (int64_t)P2 * B;
    l->N = osp_size_mul(osp_size_mul(T, hc_n, "skiparse layout"), wc_n, "skiparse layout");
    l->npos = osp_size_mul(l->R, l->N, "skiparse layout");
    if (l->npos > INT32_MAX) osp_die("skiparse layout of %lld positions exceeds int32 indices", (long long)l->npos);
    l->grid = osp_malloc(osp_size_bytes(l->npos, sizeof(int32_t), "skiparse grid"));
    l->pos3 = osp_malloc(osp_size_bytes(l->npos, 3 * sizeof(int32_t), "skiparse positions"));
    l->valid = osp_malloc((size_t)l->npos);
    for (int64_t r = 0; r < l->R; r++) {
        int s = (int)(r / B), b = (int)(r % B);
        for (int64_t n = 0; n < l->N; n++) {
            /* raster: (t, h, w); sparse: compact (h', t, w'), see skiparse.h */
            int t, hc, wc = (int)(n % wc_n);
            if (kind == LAYOUT_RASTER) {
                t = (int)(n / ((int64_t)hc_n * wc_n));
                hc = (int)((n / wc_n) % hc_n);
            } else {
                hc = (int)(n / ((int64_t)T * wc_n));
                t = (int)((n / wc_n) % T);
            }
            int h = hc, w = wc;
            if (kind != LAYOUT_RASTER) sparse_coords(kind, l->P, s, hc, wc, &h, &w);
            int64_t i = r * l->N + n;
            l->grid[i] = (int32_t)((((int64_t)b * T + t) * l->Hp + h) * l->Wp + w);
            l->pos3[3 * i] = t;
            l->pos3[3 * i + 1] = h;
            l->pos3[3 * i + 2] = w;
            l->valid[i] = h < H && w < W;
            if (!l->valid[i]) l->has_padding = 1;
        }
    }
}

void skip_layout_free(skip_layout *l) {
    free(l->grid);
    free(l->pos3);
    free(l->valid);
    memset(l, 0, sizeof *l);
}

/* Map a padded-grid index of layout `a` to the padded grid of layout `b` (they may
 * differ in padding: raster has none). Returns -1 when the cell does not exist in b. */
static int64_t regrid(const skip_layout *a, const skip_layout *b, int64_t g) {
    int64_t w = g % a->Wp, h = (g / a->Wp) % a->Hp, bt = g / ((int64_t)a->Wp * a->Hp);
    if (h >= b->Hp || w >= b->Wp) return -1;
    return (bt * b->Hp + h) * b->Wp + w;
}

int32_t *skip_move_index(const skip_layout *from, const skip_layout *to) {
    OSP_CHECK(from->B == to->B && from->T == to->T && from->H == to->H && from->W == to->W,
              "layouts of one batch must share the token grid");
    int64_t ncell = (int64_t)from->B * from->T * from->Hp * from->Wp;
    int32_t *where = osp_malloc(sizeof(int32_t) * ncell); /* padded cell of `from` -> position */
    for (int64_t i = 0; i < ncell; i++) where[i] = -1;
    for (int64_t i = 0; i < from->npos; i++) where[from->grid[i]] = (int32_t)i;
    int32_t *idx = osp_malloc(sizeof(int32_t) * to->npos);
    for (int64_t i = 0; i < to->npos; i++) {
        int64_t g = regrid(to, from, to->grid[i]);
        idx[i] = g < 0 ? -1 : where[g];
    }
    free(where);
    return idx;
}
