/*
 * wan_block.c — one WanAttentionBlock (docs/model.md §4) forward and backward, in whatever
 * layout the block runs (raster for full attention, token/group for Skiparse blocks:
 * only the row count, RoPE positions and key mask differ), plus the HiF8
 * fake-quantised linear wrapper (docs/hif8.md §7: x and W rounded with scales mapping
 * amax to the forward target, dY with the gradient target, straight-through).
 */
#include <math.h>
#include <string.h>

#include "core/common.h"
#include "model/wan_internal.h"

/* ------------------------------------------------------------ quantisation */

static bool block_quantised(const wan_model *m, int i) {
    return m->bq && !(i < 64 && (m->cfg.quant_skip_mask >> i) & 1);
}

void wan_quant_init(wan_model *m) {
    const wan_config *c = &m->cfg;
    m->bq = osp_calloc((size_t)c->num_layers, sizeof(block_quant));
    for (int i = 0; i < c->num_layers; i++) {
        block_quant *q = &m->bq[i];
        for (int s = 0; s < SITE_N; s++)
            qlinear_init(&q->lin[s], c->quant_fwd_target, c->quant_grad_target, c->quant_delayed, c->quant_history,
                         c->quant_saturate);
        for (int t = 0; t < AQ_N; t++)
            fq_scaler_init(&q->att[t], t >= AQ_DQ ? c->quant_grad_target : c->quant_fwd_target, c->quant_delayed,
                           c->quant_history, c->quant_saturate);
    }
}

void wan_quant_free(wan_model *m) {
    if (!m->bq) return;
    for (int i = 0; i < m->cfg.num_layers; i++) {
        for (int s = 0; s < SITE_N; s++) qlinear_free(&m->bq[i].lin[s]);
        for (int t = 0; t < AQ_N; t++) fq_scaler_free(&m->bq[i].att[t]);
    }
    free(m->bq);
    m->bq = NULL;
}

/* Every scaler in a fixed order (per block: x, w, g of each GEMM site, then the
 * attention operands), for checkpoints (delayed-scaling histories). */
static int scaler_count(const wan_model *m) { return m->bq ? m->cfg.num_layers * (SITE_N * 3 + AQ_N) : 0; }

static fq_scaler *scaler_at(wan_model *m, int k) {
    int per = SITE_N * 3 + AQ_N, i = k / per, j = k % per;
    if (j >= SITE_N * 3) return &m->bq[i].att[j - SITE_N * 3];
    qlinear *q = &m->bq[i].lin[j / 3];
    return j % 3 == 0 ? &q->x : (j % 3 == 1 ? &q->w : &q->g);
}

int64_t wan_quant_state_size(const wan_model *m) {
    int64_t n = 0;
    for (int k = 0; k < scaler_count(m); k++) n += (int64_t)fq_scaler_state_size(scaler_at((wan_model *)m, k));
    return n;
}

void wan_quant_state_get(const wan_model *m, float *out) {
    for (int k = 0; k < scaler_count(m); k++) {
        fq_scaler *sc = scaler_at((wan_model *)m, k);
        fq_scaler_state_get(sc, out);
        out += fq_scaler_state_size(sc);
    }
}

void wan_quant_state_set(wan_model *m, const float *in) {
    for (int k = 0; k < scaler_count(m); k++) {
        fq_scaler_state_set(scaler_at(m, k), in);
        in += 3 + (int)in[0];
    }
}

/* ------------------------------------------------------------ activation storage */

/* A block activation that only feeds GEMMs and attention (norm outputs, q/k/v/o, FFN hidden):
 * bf16 where the backend stores such tensors bf16 (ops.h, "bf16 activation storage"), else
 * fp32. Either way it lives in the same arena buffer; exactly one pointer is set. */
typedef struct {
    float *f;
    osp_bf16 *h;
} act;

/* bf16 storage for block i: offered and on; in a HiF8 block also the quantised linear over bf16
 * inputs, and no fake quantisation of the attention operands (att_fq works in place on fp32) */
static bool block_act16(const wan_model *m, int i) {
    const osp_backend *be = m->be;
    if (!be->act16_on || !be->act16_on()) return false;
    return !block_quantised(m, i) || (be->linear_fq16_fwd && !m->cfg.quant_attention);
}

static act act_of(bool a16, float *buf) {
    act a = {a16 ? NULL : buf, a16 ? (osp_bf16 *)buf : NULL};
    return a;
}
static act act_f32(float *buf) { return act_of(false, buf); }

/* A quantised block with bf16 storage runs every quantised linear through qlinear_*16, also the
 * text k / v whose input and k output are fp32: their scales then stay on the device (no host
 * sync), and forward and backward agree on where the scales are (the backward of v reads an fp32
 * x). Same numbers as the fp32 entry points: bf16 storage implies bf16 GEMM mode. */
static void lin_fwd(wan_model *m, int blk, int site, act y, act x, const lin_p *w, int64_t N, int K, int O) {
    qlinear_scratch s = {m->qx, m->qw, m->qg, &m->xc};
    if (block_quantised(m, blk) && block_act16(m, blk)) {
        qlinear_fwd16(m->be, &m->bq[blk].lin[site], &s, m->replay, y.f, y.h, x.f, x.h, w->w, w->b, N, K, O);
    } else if (block_quantised(m, blk)) {
        qlinear_fwd(m->be, &m->bq[blk].lin[site], &s, m->replay, y.f, x.f, w->w, w->b, N, K, O);
    } else if (y.h || x.h) {
        m->be->linear16_fwd(y.f, y.h, x.f, x.h, w->w, w->b, N, K, O);
    } else {
        m->be->linear_fwd(y.f, x.f, w->w, w->b, N, K, O);
    }
}

static void lin_bwd(wan_model *m, int blk, int site, float *dx, const lin_p *gw, const float *dy, act x,
                    const lin_p *w, int64_t N, int K, int O) {
    if (block_quantised(m, blk) && block_act16(m, blk)) {
        qlinear_bwd16(m->be, &m->bq[blk].lin[site], dx, gw->w, gw->b, dy, x.f, x.h, w->w, N, K, O);
    } else if (block_quantised(m, blk)) {
        qlinear_scratch s = {m->qx, m->qw, m->qg, &m->xc};
        qlinear_bwd(m->be, &m->bq[blk].lin[site], &s, dx, gw->w, gw->b, dy, x.f, w->w, N, K, O);
    } else if (x.h) {
        m->be->linear16_bwd(dx, gw->w, gw->b, dy, NULL, x.h, w->w, N, K, O);
    } else {
        m->be->linear_bwd(dx, gw->w, gw->b, dy, x.f, w->w, N, K, O);
    }
}

static void ln_mod(const osp_backend *be, act y, float *mean, float *rstd, const float *x, const float *shift,
                   const float *scale, int64_t R, int64_t N, int D, int B, int64_t st, float eps) {
    if (y.h) be->ln_mod16_fwd(y.h, mean, rstd, x, shift, scale, R, N, D, B, st, eps);
    else be->ln_mod_fwd(y.f, mean, rstd, x, shift, scale, R, N, D, B, st, eps);
}

static void rms(const osp_backend *be, act y, float *rstd, const float *x, const float *w, int64_t N, int D,
                float eps) {
    if (y.h) be->rmsnorm16_fwd(y.h, rstd, x, w, N, D, eps);
    else be->rmsnorm_fwd(y.f, rstd, x, w, N, D, eps);
}

static void qk_norm_rope(const osp_backend *be, act y, float *rstd, const float *x, const float *w,
                         const int32_t *pos, const osp_rope *r, int64_t N, int H, float eps) {
    if (y.h) be->qk_norm_rope16_fwd(y.h, rstd, x, w, pos, r, N, H, eps);
    else be->qk_norm_rope_fwd(y.f, rstd, x, w, pos, r, N, H, eps);
}

static void attn(const osp_backend *be, act o, float *lse, act q, act k, act v, const uint8_t *kvalid, int64_t R,
                 int64_t Rkv, int64_t Nq, int64_t Nk, int H, int d) {
    if (o.h) be->attn16_fwd(o.h, lse, q.h, k.h, v.h, kvalid, R, Rkv, Nq, Nk, H, d);
    else be->attn_fwd(o.f, lse, q.f, k.f, v.f, kvalid, R, Rkv, Nq, Nk, H, d);
}

static void attn_back(const osp_backend *be, float *dq, float *dk, float *dv, const float *dout, act o,
                      const float *lse, act q, act k, act v, const uint8_t *kvalid, int64_t R, int64_t Rkv, int64_t Nq,
                      int64_t Nk, int H, int d) {
    if (o.h) be->attn16_bwd(dq, dk, dv, dout, o.h, lse, q.h, k.h, v.h, kvalid, R, Rkv, Nq, Nk, H, d);
    else be->attn_bwd(dq, dk, dv, dout, o.f, lse, q.f, k.f, v.f, kvalid, R, Rkv, Nq, Nk, H, d);
}

/* the block activations, typed for this block (the backward reads them as the forward wrote them) */
typedef struct {
    act h1, q, k, v, o, h3, cq, ck, cv, co, h2, f1, f2;
} block_view;

static block_view block_view_of(const wan_model *m, int i) {
    block_acts *a = &m->acts[i];
    bool h = block_act16(m, i);
    block_view w = {act_of(h, a->h1), act_of(h, a->q),  act_of(h, a->k),  act_of(h, a->v),  act_of(h, a->o),
                    act_of(h, a->h3), act_of(h, a->cq), act_of(h, a->ck), act_of(h, a->cv), act_of(h, a->co),
                    act_of(h, a->h2), act_of(h, a->f1), act_of(h, a->f2)};
    return w;
}

/* In-place fake quantisation of an attention operand (quant.attention). Recomputation
 * reuses the forward's scale so scaling histories advance once per step. Scales live only
 * within a step, so checkpoints need just the histories. */
static void att_fq(wan_model *m, int blk, int t, float *x, int64_t n) {
    if (!block_quantised(m, blk) || !m->cfg.quant_attention) return;
    block_quant *q = &m->bq[blk];
    if (m->replay)
        m->be->hif8_fq(x, x, n, q->att_scale[t], m->cfg.quant_saturate);
    else
        q->att_scale[t] = qtensor(m->be, &q->att[t], x, x, n, m->cfg.quant_saturate);
}

/* ------------------------------------------------------------ block */

static void block_mod(wan_model *m, int i, float *mod) {
    const osp_backend *be = m->be;
    int D = m->D;
    for (int b = 0; b < m->B; b++) {
        be->copy(mod + (int64_t)b * 6 * D, m->e0 + (int64_t)b * 6 * D, sizeof(float) * 6 * D);
        be->add(mod + (int64_t)b * 6 * D, m->p.blk[i].mod, 6 * D);
    }
}

void wan_block_forward(wan_model *m, int i, const float *x, float *xout, const int32_t *move, int64_t nout) {
    const osp_backend *be = m->be;
    const block_p *p = &m->p.blk[i];
    block_acts *a = &m->acts[i];
    const dev_layout *lay = &m->lay[m->kind[i]];
    int64_t R = lay->host.R, N = lay->host.N, M = R * N, Mt = m->Mt;
    int D = m->D, F = m->F, H = m->H, hd = m->hd, B = m->B;
    int64_t st = 6 * (int64_t)D;
    float eps = m->cfg.eps;
    block_view w = block_view_of(m, i);
    qlinear_xcache_reset(&m->xc); /* recomputation refills the same activation buffers */
    block_mod(m, i, a->mod);
    /* self-attention: LN + modulation, q/k RMSNorm over the full dim, RoPE, attention */
    ln_mod(be, w.h1, a->m1, a->r1, x, a->mod, a->mod + D, R, N, D, B, st, eps);
    lin_fwd(m, i, SITE_SQ, act_f32(a->qp), w.h1, &p->sq, M, D, D);
    lin_fwd(m, i, SITE_SK, act_f32(a->kp), w.h1, &p->sk, M, D, D);
    lin_fwd(m, i, SITE_SV, w.v, w.h1, &p->sv, M, D, D);
    qk_norm_rope(be, w.q, a->rq, a->qp, p->snq, lay->pos3, m->rope, M, H, eps);
    qk_norm_rope(be, w.k, a->rk, a->kp, p->snk, lay->pos3, m->rope, M, H, eps);
    att_fq(m, i, AQ_Q, a->q, M * D);
    att_fq(m, i, AQ_K, a->k, M * D);
    att_fq(m, i, AQ_V, a->v, M * D);
    attn(be, w.o, a->lse, w.q, w.k, w.v, lay->valid, R, R, N, N, H, hd);
    lin_fwd(m, i, SITE_SO, act_f32(a->yo), w.o, &p->so, M, D, D);
    be->gate_res_fwd(a->x1, x, a->yo, a->mod + 2 * D, NULL, 0, R, N, D, B, st);
    /* cross-attention over all text rows: affine LN, no modulation, no gate, no RoPE */
    if (w.h3.h) be->layernorm16_fwd(w.h3.h, a->m3, a->r3, a->x1, p->n3w, p->n3b, M, D, eps);
    else be->layernorm_fwd(a->h3, a->m3, a->r3, a->x1, p->n3w, p->n3b, M, D, eps);
    lin_fwd(m, i, SITE_CQ, act_f32(a->cqp), w.h3, &p->cq, M, D, D);
    rms(be, w.cq, a->crq, a->cqp, p->cnq, M, D, eps);
    lin_fwd(m, i, SITE_CK, act_f32(a->ckp), act_f32(m->ctx), &p->ck, Mt, D, D);
    rms(be, w.ck, a->crk, a->ckp, p->cnk, Mt, D, eps);
    lin_fwd(m, i, SITE_CV, w.cv, act_f32(m->ctx), &p->cv, Mt, D, D);
    attn(be, w.co, a->clse, w.cq, w.ck, w.cv, NULL, R, B, N, m->cfg.text_len, H, hd);
    lin_fwd(m, i, SITE_CO, act_f32(a->x2), w.co, &p->co, M, D, D); /* x2 = x1 + cross-attention output */
    be->add(a->x2, a->x1, M * D);
    /* FFN: LN + modulation, Linear, GELU(tanh), Linear, gated residual */
    ln_mod(be, w.h2, a->m2, a->r2, a->x2, a->mod + 3 * D, a->mod + 4 * D, R, N, D, B, st, eps);
    if (block_quantised(m, i) && w.f2.h) { /* HiF8 operands, GELU still in the epilogue */
        qlinear *q = &m->bq[i].lin[SITE_F1];
        qlinear_scratch qs = {m->qx, m->qw, m->qg, &m->xc};
        qlinear_scales16(be, q, &qs, m->replay, NULL, w.h2.h, p->f1.w, M, D, F); /* device scales, q->ds */
        be->linear_fq_gelu16_fwd(w.f2.h, w.f1.h, w.h2.h, q->ds + QLINEAR_DSX, p->f1.w, q->ds + QLINEAR_DSW, p->f1.b, M,
                                 D, F, q->saturate);
    } else if (block_quantised(m, i)) {
        lin_fwd(m, i, SITE_F1, w.f1, w.h2, &p->f1, M, D, F);
        be->gelu_fwd(a->f2, a->f1, M * F);
    } else if (w.f2.h) { /* one pass: GEMM epilogue */
        be->linear_gelu16_fwd(w.f2.h, w.f1.h, w.h2.h, p->f1.w, p->f1.b, M, D, F);
    } else {
        be->linear_gelu_fwd(a->f2, a->f1, a->h2, p->f1.w, p->f1.b, M, D, F);
    }
    lin_fwd(m, i, SITE_F2, act_f32(a->yf), w.f2, &p->f2, M, F, D);
    /* the last residual writes the next block's input, in the next block's layout if it moves */
    be->gate_res_fwd(xout, a->x2, a->yf, a->mod + 5 * D, move, nout, R, N, D, B, st);
}

void wan_block_backward(wan_model *m, int i, const float *x, const float *dout, float *dx) {
    const osp_backend *be = m->be;
    const block_p *p = &m->p.blk[i];
    const block_p *g = &m->g.blk[i];
    block_acts *a = &m->acts[i];
    const dev_layout *lay = &m->lay[m->kind[i]];
    int64_t R = lay->host.R, N = lay->host.N, M = R * N, Mt = m->Mt;
    int D = m->D, F = m->F, H = m->H, hd = m->hd, B = m->B, Lt = m->cfg.text_len;
    int64_t st = 6 * (int64_t)D;
    float *dmod = m->gmod;
    block_view w = block_view_of(m, i);
    qlinear_xcache_reset(&m->xc);
    be->zero(dmod, sizeof(float) * B * 6 * D);
    /* FFN: dx2 = dout + LN-path; gate2 */
    float *dx2 = m->g3;
    be->copy(dx2, dout, sizeof(float) * M * D);
    be->zero(m->g1, sizeof(float) * M * D);
    be->gate_res_bwd(m->g1, dmod + 5 * D, dout, a->yf, a->mod + 5 * D, R, N, D, B, st);
    be->zero(m->gf2, sizeof(float) * M * F);
    lin_bwd(m, i, SITE_F2, m->gf2, &g->f2, m->g1, w.f2, &p->f2, M, F, D);
    be->zero(m->gf1, sizeof(float) * M * F);
    if (w.f1.h) be->gelu16_bwd(m->gf1, m->gf2, w.f1.h, M * F);
    else be->gelu_bwd(m->gf1, m->gf2, a->f1, M * F);
    be->zero(m->g2, sizeof(float) * M * D);
    lin_bwd(m, i, SITE_F1, m->g2, &g->f1, m->gf1, w.h2, &p->f1, M, D, F);
    be->ln_mod_bwd(dx2, dmod + 3 * D, dmod + 4 * D, m->g2, a->x2, a->m2, a->r2, a->mod + 4 * D, R, N, D, B, st);
    /* cross-attention: dx1 = dx2 + norm3 path */
    float *dx1 = dx2; /* the residual passes through unchanged; norm3's gradient is added below */
    be->zero(m->go, sizeof(float) * M * D);
    lin_bwd(m, i, SITE_CO, m->go, &g->co, dx2, w.co, &p->co, M, D, D);
    be->zero(m->gq, sizeof(float) * M * D);
    be->zero(m->gck, sizeof(float) * Mt * D);
    be->zero(m->gcv, sizeof(float) * Mt * D);
    attn_back(be, m->gq, m->gck, m->gcv, m->go, w.co, a->clse, w.cq, w.ck, w.cv, NULL, R, B, N, Lt, H, hd);
    be->zero(m->g1, sizeof(float) * M * D);
    be->rmsnorm_bwd(m->g1, g->cnq, m->gq, a->cqp, a->crq, p->cnq, M, D);
    be->zero(m->g2, sizeof(float) * M * D);
    lin_bwd(m, i, SITE_CQ, m->g2, &g->cq, m->g1, w.h3, &p->cq, M, D, D);
    be->zero(m->gckp, sizeof(float) * Mt * D);
    be->rmsnorm_bwd(m->gckp, g->cnk, m->gck, a->ckp, a->crk, p->cnk, Mt, D);
    lin_bwd(m, i, SITE_CK, m->gctx, &g->ck, m->gckp, act_f32(m->ctx), &p->ck, Mt, D, D);
    lin_bwd(m, i, SITE_CV, m->gctx, &g->cv, m->gcv, act_f32(m->ctx), &p->cv, Mt, D, D);
    be->layernorm_bwd(dx1, g->n3w, g->n3b, m->g2, a->x1, a->m3, a->r3, p->n3w, M, D);
    /* self-attention: dx = dx1 + LN1 path; gate1 */
    be->add(dx, dx1, M * D);
    be->zero(m->g1, sizeof(float) * M * D);
    be->gate_res_bwd(m->g1, dmod + 2 * D, dx1, a->yo, a->mod + 2 * D, R, N, D, B, st);
    be->zero(m->go, sizeof(float) * M * D);
    lin_bwd(m, i, SITE_SO, m->go, &g->so, m->g1, w.o, &p->so, M, D, D);
    be->zero(m->gq, sizeof(float) * M * D);
    be->zero(m->gk, sizeof(float) * M * D);
    be->zero(m->gv, sizeof(float) * M * D);
    attn_back(be, m->gq, m->gk, m->gv, m->go, w.o, a->lse, w.q, w.k, w.v, lay->valid, R, R, N, N, H, hd);
    att_fq(m, i, AQ_DQ, m->gq, M * D);
    att_fq(m, i, AQ_DK, m->gk, M * D);
    att_fq(m, i, AQ_DV, m->gv, M * D);
    be->zero(m->g1, sizeof(float) * M * D);
    be->qk_norm_rope_bwd(m->g1, g->snq, m->gq, a->qp, a->rq, p->snq, lay->pos3, m->rope, M, H);
    be->zero(m->g2, sizeof(float) * M * D);
    lin_bwd(m, i, SITE_SQ, m->g2, &g->sq, m->g1, w.h1, &p->sq, M, D, D);
    be->zero(m->g1, sizeof(float) * M * D);
    be->qk_norm_rope_bwd(m->g1, g->snk, m->gk, a->kp, a->rk, p->snk, lay->pos3, m->rope, M, H);
    lin_bwd(m, i, SITE_SK, m->g2, &g->sk, m->g1, w.h1, &p->sk, M, D, D);
    lin_bwd(m, i, SITE_SV, m->g2, &g->sv, m->gv, w.h1, &p->sv, M, D, D);
    be->ln_mod_bwd(dx, dmod, dmod + D, m->g2, x, a->m1, a->r1, a->mod + D, R, N, D, B, st);
    /* modulation = block.modulation + e0: both receive the per-sample gradient */
    for (int b = 0; b < B; b++) {
        be->add(g->mod, dmod + (int64_t)b * 6 * D, 6 * D);
        be->add(m->ge0 + (int64_t)b * 6 * D, dmod + (int64_t)b * 6 * D, 6 * D);
    }
}
