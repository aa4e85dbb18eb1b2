/*
 * wan_internal.h — the private state of the Wan DiT shared by wan.c (parameters,
 * arenas, top-level forward/backward) and wan_block.c (one transformer block and the
 * fake-quantised linear wrapper). Not part of the public API.
 */
#ifndef OSP_WAN_INTERNAL_H
#define OSP_WAN_INTERNAL_H

#include "model/qlinear.h"
#include "model/skiparse.h"
#include "model/wan.h"

typedef struct {
    float *w, *b;
} lin_p;

typedef struct {
    lin_p sq, sk, sv, so;
    float *snq, *snk;
    float *n3w, *n3b;
    lin_p cq, ck, cv, co;
    float *cnq, *cnk;
    lin_p f1, f2;
    float *mod; /* [6, D] */
} block_p;

typedef struct {
    lin_p pe, te0, te2, tm0, tm2, tp, head;
    float *hmod; /* [2, D] */
    block_p *blk;
} wan_p;

/* Saved activations of one block (M = rows*tokens of its layout, Mt = B*text_len). */
typedef struct {
    float *x1, *x2;
    float *h1, *m1, *r1;
    float *qp, *kp, *q, *k, *v, *rq, *rk;
    float *o, *lse, *yo;
    float *h3, *m3, *r3;
    float *cqp, *cq, *crq, *co, *clse;
    float *ckp, *ck, *cv, *crk;
    float *h2, *m2, *r2, *f1, *f2, *yf;
    float *mod; /* [B, 6D] */
} block_acts;

/* Device copies of a layout's tables. */
typedef struct {
    skip_layout host;
    int32_t *pos3;  /* backend */
    uint8_t *valid; /* backend, NULL when the layout has no padding */
} dev_layout;

/* GEMM call sites inside a block, for fake-quantisation scaling state */
enum { SITE_SQ, SITE_SK, SITE_SV, SITE_SO, SITE_CQ, SITE_CK, SITE_CV, SITE_CO, SITE_F1, SITE_F2, SITE_N };
enum { AQ_Q, AQ_K, AQ_V, AQ_DQ, AQ_DK, AQ_DV, AQ_N }; /* attention tensors */

typedef struct {
    qlinear lin[SITE_N];
    fq_scaler att[AQ_N];
    float att_scale[AQ_N]; /* scales of the last forward, reused by recomputation */
} block_quant;

struct wan_model {
    wan_config cfg;
    const osp_backend *be;
    int D, F, H, hd, Fp, Fo; /* dim, ffn, heads, head dim, patch features in/out */
    /* parameters */
    wan_param_info *info;
    int nparam;
    int64_t total;
    float *params, *grads;
    wan_p p, g;
    osp_rope *rope;
    /* shape-dependent state */
    int B, T, Hl, Wl;     /* latent shape */
    int f, h, w;          /* token grid */
    int64_t L, Mmax, Mt;  /* tokens per sample, max rows*tokens over layouts, text rows */
    dev_layout lay[3];    /* raster, token, group */
    int32_t *move[3][3];  /* backend gather tables from -> to (NULL on the diagonal) */
    float *pos_table;     /* backend [L, D] raster sin-cos positions (cfg.pos_sincos), else NULL */
    skip_kind *kind;      /* per block */
    float *arena;
    int64_t arena_floats;
    /* activations */
    float *patches, *x0, *sinus, *te0, *te0s, *e, *es, *e0;
    float *c1, *c1g, *ctx, *text_in;
    float **xs;           /* [layers+1] block inputs (in the block's layout); xs[layers] = last output */
    float *xtmp;          /* block output before a layout move */
    float *xfin, *hmod, *hh, *hm, *hr, *hout;
    block_acts *acts;     /* layers entries (all aliasing one set when recompute) */
    /* gradient scratch */
    float *gA, *gB, *g1, *g2, *g3, *gq, *gk, *gv, *go, *gf1, *gf2;
    float *gctx, *gck, *gcv, *gckp, *gmod, *ge0, *ge, *gtmp;
    float *qx, *qw, *qg; /* fake-quant scratch */
    qlinear_xcache xc;    /* what qx holds (q/k/v and text k/v quantise their input once) */
    /* quantisation */
    block_quant *bq;      /* per block, NULL when quant is off */
    bool replay;          /* recomputation: reuse saved scales, do not advance histories */
};

/* xout = the block's output; with move (an index from skip_move_index) it is written straight in
 * the next layout (nout rows), fusing the layout move into the last residual */
void wan_block_forward(wan_model *m, int i, const float *xin, float *xout, const int32_t *move, int64_t nout);
void wan_block_backward(wan_model *m, int i, const float *xin, const float *dout, float *dxin);
void wan_quant_init(wan_model *m);
void wan_quant_free(wan_model *m);

#endif
