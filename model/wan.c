/*
 * wan.c — the Wan2.1 DiT: parameter table and arenas, Wan's init scheme, per-shape
 * activation arena and layout tables, and the top-level forward/backward (patch and
 * condition embeddings, the block loop with Skiparse layout moves, the head).
 * One block's math lives in wan_block.c.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "core/size.h"
#include "model/wan_internal.h"

/* ------------------------------------------------------------ parameter table */

/* One entry per row of the parameter table (model/wan_arch.h), in its order: the arena
 * layout and the order of the init draws. */
static void build_table(wan_model *m) {
    int L = m->cfg.num_layers;
    m->nparam = wan_arch_count(L);
    m->info = osp_calloc((size_t)m->nparam, sizeof *m->info);
    for (int i = 0; i < m->nparam; i++) {
        int blk;
        const wan_arch_param *a = wan_arch_at(L, i, &blk);
        wan_param_info *p = &m->info[i];
        OSP_CHECK(wan_arch_name(a, blk, false, p->name, sizeof p->name) == 0, "parameter name too long");
        p->ndim = wan_arch_shape(a, &m->cfg.dims, p->shape);
        p->numel = 1;
        for (int k = 0; k < p->ndim; k++) p->numel *= p->shape[k];
        p->kind = a->init;
        p->offset = m->total;
        /* keep every tensor 16-float aligned for vector loads on any backend */
        m->total += (p->numel + 15) / 16 * 16;
    }
}

int wan_param_find(const wan_model *m, const char *name) {
    for (int i = 0; i < m->nparam; i++)
        if (!strcmp(m->info[i].name, name)) return i;
    return -1;
}

/* the tensor at parameter position i, and a linear layer's weight (at i) and bias (at i + 1) */
static float *one(const wan_model *m, float *base, int i) { return base + m->info[i].offset; }
static lin_p lin(const wan_model *m, float *base, int i) { return (lin_p){one(m, base, i), one(m, base, i + 1)}; }

static void bind(const wan_model *m, float *base, wan_p *p) {
    int L = m->cfg.num_layers;
#define TOP(r) wan_arch_top_index(L, r)
    p->pe = lin(m, base, TOP(WAN_PATCH_W));
    p->te0 = lin(m, base, TOP(WAN_TEXT0_W));
    p->te2 = lin(m, base, TOP(WAN_TEXT2_W));
    p->tm0 = lin(m, base, TOP(WAN_TIME0_W));
    p->tm2 = lin(m, base, TOP(WAN_TIME2_W));
    p->tp = lin(m, base, TOP(WAN_TPROJ_W));
    p->head = lin(m, base, TOP(WAN_HEAD_W));
    p->hmod = one(m, base, TOP(WAN_HEAD_MOD));
#undef TOP
    p->blk = osp_calloc((size_t)L, sizeof(block_p));
    for (int i = 0; i < L; i++) {
        block_p *b = &p->blk[i];
#define BLK(r) wan_arch_block_index(i, r)
        b->sq = lin(m, base, BLK(WAN_SQ_W));
        b->sk = lin(m, base, BLK(WAN_SK_W));
        b->sv = lin(m, base, BLK(WAN_SV_W));
        b->so = lin(m, base, BLK(WAN_SO_W));
        b->snq = one(m, base, BLK(WAN_SNORM_Q));
        b->snk = one(m, base, BLK(WAN_SNORM_K));
        b->n3w = one(m, base, BLK(WAN_NORM3_W));
        b->n3b = one(m, base, BLK(WAN_NORM3_B));
        b->cq = lin(m, base, BLK(WAN_CQ_W));
        b->ck = lin(m, base, BLK(WAN_CK_W));
        b->cv = lin(m, base, BLK(WAN_CV_W));
        b->co = lin(m, base, BLK(WAN_CO_W));
        b->cnq = one(m, base, BLK(WAN_CNORM_Q));
        b->cnk = one(m, base, BLK(WAN_CNORM_K));
        b->f1 = lin(m, base, BLK(WAN_FFN0_W));
        b->f2 = lin(m, base, BLK(WAN_FFN2_W));
        b->mod = one(m, base, BLK(WAN_MOD));
#undef BLK
    }
}

wan_model *wan_init(const wan_config *cfg, const osp_backend *be) {
    wan_model *m = osp_calloc(1, sizeof *m);
    m->cfg = *cfg;
    m->be = be;
    m->D = cfg->dim;
    m->F = cfg->ffn_dim;
    m->H = cfg->num_heads > 0 ? cfg->num_heads : wan_default_heads(cfg->dim);
    m->cfg.num_heads = m->H;
    OSP_CHECK(m->D % m->H == 0, "dim must be divisible by num_heads");
    m->hd = m->D / m->H;
    OSP_CHECK(m->hd % 2 == 0 && m->hd >= 6, "head dim must be even and >= 6 for 3D RoPE");
    /* sizes from the config: checked, so an absurd one is an error, not a wrapped int */
    int64_t pv = osp_size_mul(osp_size_mul(cfg->patch[0], cfg->patch[1], "model.patch"), cfg->patch[2], "model.patch");
    int64_t fp = osp_size_mul(cfg->in_channels, pv, "model.in_channels x patch");
    int64_t fo = osp_size_mul(cfg->out_channels, pv, "model.out_channels x patch");
    if (fp > INT_MAX || fo > INT_MAX || osp_size_mul(6, cfg->dim, "6 x model.dim") > INT_MAX)
        osp_die("model: channels x patch (%lld, %lld) or 6 x dim (%lld) exceeds %d", (long long)fp, (long long)fo,
                6LL * cfg->dim, INT_MAX);
    m->Fp = (int)fp;
    m->Fo = (int)fo;
    build_table(m);
    m->params = be->alloc(sizeof(float) * m->total);
    m->grads = be->alloc(sizeof(float) * m->total);
    bind(m, m->params, &m->p);
    bind(m, m->grads, &m->g);
    m->rope = be->rope_init(m->hd, 1024, 10000.0);
    m->kind = osp_calloc((size_t)cfg->num_layers, sizeof(skip_kind));
    for (int i = 0; i < cfg->num_layers; i++)
        m->kind[i] = skip_block_kind(cfg->hybrid, cfg->num_layers, cfg->num_full_blocks, i);
    if (cfg->quant) wan_quant_init(m);
    return m;
}

static void free_shape(wan_model *m) {
    const osp_backend *be = m->be;
    for (int k = 0; k < 3; k++) {
        if (m->lay[k].host.grid) {
            be->free(m->lay[k].pos3);
            if (m->lay[k].valid) be->free(m->lay[k].valid);
            skip_layout_free(&m->lay[k].host);
        }
        for (int j = 0; j < 3; j++)
            if (m->move[k][j]) {
                be->free(m->move[k][j]);
                m->move[k][j] = NULL;
            }
    }
    memset(m->lay, 0, sizeof m->lay);
    if (m->pos_table) be->free(m->pos_table);
    m->pos_table = NULL;
    if (m->arena) be->free(m->arena);
    m->arena = NULL;
    free(m->xs);
    free(m->acts);
    m->xs = NULL;
    m->acts = NULL;
    m->B = 0;
}

void wan_free(wan_model *m) {
    if (!m) return;
    free_shape(m);
    m->be->rope_free(m->rope);
    m->be->free(m->params);
    m->be->free(m->grads);
    free(m->p.blk);
    free(m->g.blk);
    free(m->info);
    free(m->kind);
    wan_quant_free(m);
    free(m);
}

const wan_config *wan_get_config(const wan_model *m) { return &m->cfg; }
const osp_backend *wan_backend(const wan_model *m) { return m->be; }
int64_t wan_num_params(const wan_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->nparam; i++) n += m->info[i].numel;
    return n;
}
int wan_param_count(const wan_model *m) { return m->nparam; }
const wan_param_info *wan_param(const wan_model *m, int i) { return &m->info[i]; }
int64_t wan_arena_floats(const wan_model *m) { return m->total; }
float *wan_params(wan_model *m) { return m->params; }
float *wan_grads(wan_model *m) { return m->grads; }
void wan_zero_grads(wan_model *m) { m->be->zero(m->grads, sizeof(float) * m->total); }
int64_t wan_activation_bytes(const wan_model *m) { return m->arena_floats * (int64_t)sizeof(float); }

/* ------------------------------------------------------------------ init */

void wan_init_weights(wan_model *m, uint64_t seed) {
    float *h = osp_malloc(sizeof(float) * m->total);
    memset(h, 0, sizeof(float) * m->total);
    uint64_t s = seed * 0x2545F4914F6CDD1Dull + 1;
    for (int i = 0; i < m->nparam; i++) {
        const wan_param_info *p = &m->info[i];
        float *x = h + p->offset;
        int64_t fan_out = p->shape[0], fan_in = p->numel / p->shape[0];
        for (int64_t j = 0; j < p->numel; j++) {
            switch (p->kind) {
            case WAN_INIT_XAVIER: {
                double a = sqrt(6.0 / (double)(fan_in + fan_out));
                x[j] = (float)((2 * osp_rng_uniform(&s) - 1) * a);
                break;
            }
            case WAN_INIT_NORMAL002: x[j] = (float)(0.02 * osp_rng_normal(&s)); break;
            case WAN_INIT_ONES: x[j] = 1.0f; break;
            case WAN_INIT_RANDN_SQRTD: x[j] = (float)(osp_rng_normal(&s) / sqrt((double)m->D)); break;
            case WAN_INIT_CONVBIAS: x[j] = (float)((2 * osp_rng_uniform(&s) - 1) / sqrt((double)m->Fp)); break;
            default: x[j] = 0.0f;
            }
        }
    }
    m->be->upload(m->params, h, sizeof(float) * m->total);
    free(h);
}

/* ------------------------------------------------------------ shape + arenas */

typedef struct {
    float *base;
    int64_t used;
    bool count_only;
} carver;

static float *carve(carver *c, int64_t n) {
    int64_t off = c->used;
    c->used += (n + 15) / 16 * 16;
    return c->count_only ? NULL : c->base + off;
}

static void carve_block(carver *c, block_acts *a, int64_t M, int64_t Mt, int64_t R, int64_t N, int D, int F, int H,
                        int B) {
    a->x1 = carve(c, M * D);
    a->x2 = carve(c, M * D);
    a->h1 = carve(c, M * D);
    a->m1 = carve(c, M);
    a->r1 = carve(c, M);
    a->qp = carve(c, M * D);
    a->kp = carve(c, M * D);
    a->q = carve(c, M * D);
    a->k = carve(c, M * D);
    a->v = carve(c, M * D);
    a->rq = carve(c, M);
    a->rk = carve(c, M);
    a->o = carve(c, M * D);
    a->lse = carve(c, R * H * N);
    a->yo = carve(c, M * D);
    a->h3 = carve(c, M * D);
    a->m3 = carve(c, M);
    a->r3 = carve(c, M);
    a->cqp = carve(c, M * D);
    a->cq = carve(c, M * D);
    a->crq = carve(c, M);
    a->co = carve(c, M * D);
    a->clse = carve(c, R * H * N);
    a->ckp = carve(c, Mt * D);
    a->ck = carve(c, Mt * D);
    a->cv = carve(c, Mt * D);
    a->crk = carve(c, Mt);
    a->h2 = carve(c, M * D);
    a->m2 = carve(c, M);
    a->r2 = carve(c, M);
    a->f1 = carve(c, M * F);
    a->f2 = carve(c, M * F);
    a->yf = carve(c, M * D);
    a->mod = carve(c, (int64_t)B * 6 * D);
}

static void carve_all(wan_model *m, carver *c) {
    const wan_config *cf = &m->cfg;
    int D = m->D, F = m->F, B = m->B, H = m->H, nl = cf->num_layers;
    int64_t BL = B * m->L, M = m->Mmax, Mt = m->Mt;
    /* the row count R and tokens N of the largest layout bound lse sizes */
    int64_t R = 0, N = 0;
    for (int k = 0; k < 3; k++)
        if (m->lay[k].host.grid && m->lay[k].host.R * m->lay[k].host.N >= R * N) {
            R = m->lay[k].host.R;
            N = m->lay[k].host.N;
        }
    m->patches = carve(c, BL * m->Fp);
    m->x0 = carve(c, BL * D);
    m->sinus = carve(c, (int64_t)B * cf->freq_dim);
    m->te0 = carve(c, (int64_t)B * D);
    m->te0s = carve(c, (int64_t)B * D);
    m->e = carve(c, (int64_t)B * D);
    m->es = carve(c, (int64_t)B * D);
    m->e0 = carve(c, (int64_t)B * 6 * D);
    m->c1 = carve(c, Mt * D);
    m->c1g = carve(c, Mt * D);
    m->ctx = carve(c, Mt * D);
    m->text_in = carve(c, Mt * cf->text_dim);
    for (int i = 0; i <= nl; i++) m->xs[i] = carve(c, M * D);
    m->xtmp = carve(c, M * D);
    m->xfin = carve(c, BL * D);
    m->hmod = carve(c, (int64_t)B * 2 * D);
    m->hh = carve(c, BL * D);
    m->hm = carve(c, BL);
    m->hr = carve(c, BL);
    m->hout = carve(c, BL * m->Fo);
    int nsets = cf->recompute ? 1 : nl;
    for (int i = 0; i < nsets; i++) carve_block(c, &m->acts[i], M, Mt, R, N, D, F, H, B);
    for (int i = nsets; i < nl; i++) m->acts[i] = m->acts[0];
    m->gA = carve(c, M * D);
    m->gB = carve(c, M * D);
    m->g1 = carve(c, M * D);
    m->g2 = carve(c, M * D);
    m->g3 = carve(c, M * D);
    m->gq = carve(c, M * D);
    m->gk = carve(c, M * D);
    m->gv = carve(c, M * D);
    m->go = carve(c, M * D);
    m->gf1 = carve(c, M * F);
    m->gf2 = carve(c, M * F);
    m->gctx = carve(c, Mt * D);
    m->gck = carve(c, Mt * D);
    m->gcv = carve(c, Mt * D);
    m->gckp = carve(c, Mt * D);
    m->gmod = carve(c, (int64_t)B * 6 * D);
    m->ge0 = carve(c, (int64_t)B * 6 * D);
    m->ge = carve(c, (int64_t)B * D);
    int64_t big = BL * (m->Fp > m->Fo ? m->Fp : m->Fo);
    if (Mt * cf->text_dim > big) big = Mt * cf->text_dim;
    if (Mt * D > big) big = Mt * D;
    m->gtmp = carve(c, big);
    if (cf->quant && !m->be->linear_fq_fwd) { /* a backend with linear_fq_* quantises without scratch */
        /* rows: the video tokens, or the text tokens of cross-attention's k / v when those are more */
        int64_t wmax = (int64_t)D * (D > F ? D : F), Mq = M > Mt ? M : Mt;
        m->qx = carve(c, Mq * (D > F ? D : F));
        m->qw = carve(c, wmax);
        m->qg = carve(c, Mq * (D > F ? D : F));
    }
}

void wan_set_shape(wan_model *m, int B, int T, int Hl, int Wl) {
    const wan_config *c = &m->cfg;
    if (m->B == B && m->T == T && m->Hl == Hl && m->Wl == Wl) return;
    if (T % c->patch[0] || Hl % c->patch[1] || Wl % c->patch[2])
        osp_die("latent shape %dx%dx%d is not divisible by the patch size %dx%dx%d", T, Hl, Wl, c->patch[0],
                c->patch[1], c->patch[2]);
    free_shape(m);
    const osp_backend *be = m->be;
    m->B = B;
    m->T = T;
    m->Hl = Hl;
    m->Wl = Wl;
    m->f = T / c->patch[0];
    m->h = Hl / c->patch[1];
    m->w = Wl / c->patch[2];
    if (m->f > 1024 || m->h > 1024 || m->w > 1024) osp_die("token grid %dx%dx%d exceeds RoPE's 1024 positions per axis", m->f, m->h, m->w);
    m->L = (int64_t)m->f * m->h * m->w;
    m->Mt = (int64_t)B * c->text_len;
    m->Mmax = B * m->L;
    bool used[3] = {true, false, false};
    for (int i = 0; i < c->num_layers; i++) used[m->kind[i]] = true;
    for (int k = 0; k < 3; k++) {
        if (!used[k]) continue;
        dev_layout *d = &m->lay[k];
        skip_layout_init(&d->host, (skip_kind)k, B, m->f, m->h, m->w, c->sparse_ratio);
        if (d->host.npos > m->Mmax) m->Mmax = d->host.npos;
        d->pos3 = be->alloc(sizeof(int32_t) * 3 * d->host.npos);
        be->upload(d->pos3, d->host.pos3, sizeof(int32_t) * 3 * d->host.npos);
        if (d->host.has_padding) {
            d->valid = be->alloc(d->host.npos);
            be->upload(d->valid, d->host.valid, d->host.npos);
        }
    }
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            if (a == b || !used[a] || !used[b]) continue;
            int32_t *idx = skip_move_index(&m->lay[a].host, &m->lay[b].host);
            m->move[a][b] = be->alloc(sizeof(int32_t) * m->lay[b].host.npos);
            be->upload(m->move[a][b], idx, sizeof(int32_t) * m->lay[b].host.npos);
            free(idx);
        }
    if (c->pos_sincos) {
        float *tab = osp_malloc(sizeof(float) * m->L * m->D);
        wan_pos_table(tab, m->f, m->h, m->w, m->D);
        m->pos_table = be->alloc(sizeof(float) * m->L * m->D);
        be->upload(m->pos_table, tab, sizeof(float) * m->L * m->D);
        free(tab);
    }
    m->xs = osp_calloc((size_t)c->num_layers + 1, sizeof(float *));
    m->acts = osp_calloc((size_t)c->num_layers, sizeof(block_acts));
    carver cnt = {NULL, 0, true};
    carve_all(m, &cnt);
    m->arena_floats = cnt.used;
    m->arena = be->alloc(sizeof(float) * cnt.used);
    carver real = {m->arena, 0, false};
    carve_all(m, &real);
}

/* ------------------------------------------------------------ forward */

/* The sin-cos position table (cfg.pos_sincos): the D features split over (t, h, w) like RoPE
 * splits a head (h and w 2*(D/6) each, t the rest); each axis holds (sin, cos) pairs of
 * pos * 100^(-2j/d_axis), so the slowest pair varies over ~100 tokens, beyond any small grid. */
void wan_pos_table(float *tab, int f, int h, int w, int D) {
    int dh = 2 * (D / 6), dt = D - 2 * dh, dims[3] = {dt, dh, dh}, off[3] = {0, dt, dt + dh};
    for (int t = 0; t < f; t++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                float *row = tab + (((int64_t)t * h + y) * w + x) * D;
                int pos[3] = {t, y, x};
                for (int a = 0; a < 3; a++) {
                    for (int j = 0; 2 * j + 1 < dims[a]; j++) {
                        double ang = pos[a] * pow(100.0, -2.0 * j / dims[a]);
                        row[off[a] + 2 * j] = (float)sin(ang);
                        row[off[a] + 2 * j + 1] = (float)cos(ang);
                    }
                    if (dims[a] % 2) row[off[a] + dims[a] - 1] = 0.0f; /* odd D: one spare feature */
                }
            }
}

/* sinusoidal timestep embedding in float64, cos first (docs/model.md §3) */
static void sinusoid(float *out, const float *t, int B, int freq) {
    int half = freq / 2;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < half; i++) {
            double a = (double)t[b] * pow(10000.0, -(double)i / half);
            out[b * freq + i] = (float)cos(a);
            out[b * freq + half + i] = (float)sin(a);
        }
}

static skip_kind final_kind(const wan_model *m) { return m->kind[m->cfg.num_layers - 1]; }

/* layout the residual stream must be in after block i (the head wants raster) */
static skip_kind next_kind(const wan_model *m, int i) {
    return i + 1 < m->cfg.num_layers ? m->kind[i + 1] : LAYOUT_RASTER;
}

/* The layout move after block i, fused into its last residual (see wan_block_forward): the
 * index into the next layout and its row count, or NULL when the next block keeps the layout. */
static const int32_t *block_move(const wan_model *m, int i, int64_t *nout) {
    skip_kind k = m->kind[i], next = next_kind(m, i);
    *nout = next != k ? m->lay[next].host.npos : 0;
    return next != k ? m->move[k][next] : NULL;
}

void wan_forward(wan_model *m, const float *latents, const float *timesteps, const float *text, float *out) {
    const osp_backend *be = m->be;
    const wan_config *c = &m->cfg;
    int B = m->B, D = m->D;
    int64_t BL = B * m->L;
    OSP_CHECK(B > 0, "wan_set_shape must be called before wan_forward");
    /* patch embedding as a GEMM over (c, pt, ph, pw) features */
    be->patch_map(m->patches, (float *)latents, B, c->in_channels, m->T, m->Hl, m->Wl, c->patch[0], c->patch[1],
                  c->patch[2], true, true);
    be->linear_fwd(m->x0, m->patches, m->p.pe.w, m->p.pe.b, BL, m->Fp, D);
    /* a constant addend: the backward passes dx0 to the patch embedding unchanged */
    if (m->pos_table)
        for (int b = 0; b < B; b++) be->add(m->x0 + (int64_t)b * m->L * D, m->pos_table, m->L * D);
    /* time: sinusoid -> MLP -> e; e0 = proj(SiLU(e)) */
    float *sin_h = osp_malloc(sizeof(float) * B * c->freq_dim);
    sinusoid(sin_h, timesteps, B, c->freq_dim);
    be->upload(m->sinus, sin_h, sizeof(float) * B * c->freq_dim);
    free(sin_h);
    be->linear_fwd(m->te0, m->sinus, m->p.tm0.w, m->p.tm0.b, B, c->freq_dim, D);
    be->silu_fwd(m->te0s, m->te0, (int64_t)B * D);
    be->linear_fwd(m->e, m->te0s, m->p.tm2.w, m->p.tm2.b, B, D, D);
    be->silu_fwd(m->es, m->e, (int64_t)B * D);
    be->linear_fwd(m->e0, m->es, m->p.tp.w, m->p.tp.b, B, D, 6 * D);
    /* text: Linear -> GELU(tanh) -> Linear over all text_len rows (no mask) */
    be->copy(m->text_in, text, sizeof(float) * m->Mt * c->text_dim);
    be->linear_fwd(m->c1, m->text_in, m->p.te0.w, m->p.te0.b, m->Mt, c->text_dim, D);
    be->gelu_fwd(m->c1g, m->c1, m->Mt * D);
    be->linear_fwd(m->ctx, m->c1g, m->p.te2.w, m->p.te2.b, m->Mt, D, D);
    /* blocks, moving the residual stream between layouts where the kind changes */
    skip_kind k0 = m->kind[0];
    if (k0 != LAYOUT_RASTER)
        be->gather_rows(m->xs[0], m->x0, m->move[LAYOUT_RASTER][k0], m->lay[k0].host.npos, D);
    else
        be->copy(m->xs[0], m->x0, sizeof(float) * BL * D);
    for (int i = 0; i < c->num_layers; i++) {
        int64_t nout;
        const int32_t *move = block_move(m, i, &nout);
        /* after the last sparse block the move leads straight to the head's raster input */
        float *xout = move && i + 1 == c->num_layers ? m->xfin : m->xs[i + 1];
        wan_block_forward(m, i, m->xs[i], xout, move, nout);
    }
    if (final_kind(m) == LAYOUT_RASTER) be->copy(m->xfin, m->xs[c->num_layers], sizeof(float) * BL * D);
    /* head: LN + modulation with (head.modulation + e), then Linear, then unpatchify */
    for (int b = 0; b < B; b++) {
        be->copy(m->hmod + (int64_t)b * 2 * D, m->p.hmod, sizeof(float) * 2 * D);
        be->add(m->hmod + (int64_t)b * 2 * D, m->e + (int64_t)b * D, D);
        be->add(m->hmod + (int64_t)b * 2 * D + D, m->e + (int64_t)b * D, D);
    }
    be->ln_mod_fwd(m->hh, m->hm, m->hr, m->xfin, m->hmod, m->hmod + D, B, m->L, D, B, 2 * D, c->eps);
    be->linear_fwd(m->hout, m->hh, m->p.head.w, m->p.head.b, BL, D, m->Fo);
    be->patch_map(m->hout, out, B, c->out_channels, m->T, m->Hl, m->Wl, c->patch[0], c->patch[1], c->patch[2], false,
                  false);
}

/* ------------------------------------------------------------ backward */

void wan_backward(wan_model *m, const float *dout, float *dlatents, float *dtext) {
    const osp_backend *be = m->be;
    const wan_config *c = &m->cfg;
    int B = m->B, D = m->D;
    int64_t BL = B * m->L;
    /* head */
    float *dhout = m->gtmp;
    be->patch_map(dhout, (float *)dout, B, c->out_channels, m->T, m->Hl, m->Wl, c->patch[0], c->patch[1],
                  c->patch[2], false, true);
    be->zero(m->g1, sizeof(float) * BL * D);
    be->linear_bwd(m->g1, m->g.head.w, m->g.head.b, dhout, m->hh, m->p.head.w, BL, D, m->Fo);
    float *dhmod = m->gmod; /* [B, 2, D] */
    be->zero(dhmod, sizeof(float) * B * 2 * D);
    be->zero(m->gA, sizeof(float) * BL * D);
    be->ln_mod_bwd(m->gA, dhmod, dhmod + D, m->g1, m->xfin, m->hm, m->hr, m->hmod + D, B, m->L, D, B, 2 * D);
    be->zero(m->ge, sizeof(float) * B * D);
    for (int b = 0; b < B; b++) {
        float *d = dhmod + (int64_t)b * 2 * D;
        be->add(m->g.hmod, d, 2 * D);
        be->add(m->ge + (int64_t)b * D, d, D);
        be->add(m->ge + (int64_t)b * D, d + D, D);
    }
    /* leave the sparse region (backward of the final gather) */
    float *dcur = m->gA, *dspare = m->gB;
    skip_kind cur = final_kind(m);
    if (cur != LAYOUT_RASTER) {
        be->zero(dspare, sizeof(float) * m->lay[cur].host.npos * D);
        be->scatter_add_rows(dspare, dcur, m->move[cur][LAYOUT_RASTER], BL, D);
        float *t = dcur;
        dcur = dspare;
        dspare = t;
    }
    be->zero(m->gctx, sizeof(float) * m->Mt * D);
    be->zero(m->ge0, sizeof(float) * B * 6 * D);
    for (int i = c->num_layers - 1; i >= 0; i--) {
        skip_kind k = m->kind[i];
        if (c->recompute) {
            /* only the activations are wanted: the output goes to scratch */
            int64_t nout;
            const int32_t *move = block_move(m, i, &nout);
            m->replay = true;
            wan_block_forward(m, i, m->xs[i], m->xtmp, move, nout);
            m->replay = false;
        }
        be->zero(dspare, sizeof(float) * m->lay[k].host.npos * D);
        wan_block_backward(m, i, m->xs[i], dcur, dspare);
        float *t = dcur;
        dcur = dspare;
        dspare = t;
        skip_kind prev = i > 0 ? m->kind[i - 1] : LAYOUT_RASTER;
        if (prev != k) {
            be->zero(dspare, sizeof(float) * m->lay[prev].host.npos * D);
            be->scatter_add_rows(dspare, dcur, m->move[prev][k], m->lay[k].host.npos, D);
            t = dcur;
            dcur = dspare;
            dspare = t;
        }
    }
    /* patch embedding */
    float *dpatch = m->gtmp;
    be->zero(dpatch, sizeof(float) * BL * m->Fp);
    be->linear_bwd(dlatents ? dpatch : NULL, m->g.pe.w, m->g.pe.b, dcur, m->patches, m->p.pe.w, BL, m->Fp, D);
    if (dlatents)
        be->patch_map(dpatch, dlatents, B, c->in_channels, m->T, m->Hl, m->Wl, c->patch[0], c->patch[1], c->patch[2],
                      true, false);
    /* text MLP (context gradient summed over all blocks' cross-attention) */
    be->zero(m->g1, sizeof(float) * m->Mt * D);
    be->linear_bwd(m->g1, m->g.te2.w, m->g.te2.b, m->gctx, m->c1g, m->p.te2.w, m->Mt, D, D);
    be->zero(m->g2, sizeof(float) * m->Mt * D);
    be->gelu_bwd(m->g2, m->g1, m->c1, m->Mt * D);
    if (dtext) be->zero(dtext, sizeof(float) * m->Mt * c->text_dim);
    be->linear_bwd(dtext, m->g.te0.w, m->g.te0.b, m->g2, m->text_in, m->p.te0.w, m->Mt, c->text_dim, D);
    /* time path: e0 = proj(SiLU(e)); e also feeds the head directly (no SiLU) */
    be->zero(m->g1, sizeof(float) * B * D);
    be->linear_bwd(m->g1, m->g.tp.w, m->g.tp.b, m->ge0, m->es, m->p.tp.w, B, D, 6 * D);
    be->silu_bwd(m->ge, m->g1, m->e, (int64_t)B * D);
    be->zero(m->g2, sizeof(float) * B * D);
    be->linear_bwd(m->g2, m->g.tm2.w, m->g.tm2.b, m->ge, m->te0s, m->p.tm2.w, B, D, D);
    be->zero(m->g3, sizeof(float) * B * D);
    be->silu_bwd(m->g3, m->g2, m->te0, (int64_t)B * D);
    be->linear_bwd(NULL, m->g.tm0.w, m->g.tm0.b, m->g3, m->sinus, m->p.tm0.w, B, c->freq_dim, D);
}

/* ------------------------------------------------------------ FLOPs */

void wan_forward_flops(const wan_model *m, double *gemm, double *attn) {
    const wan_config *c = &m->cfg;
    double D = m->D, F = m->F, Lt = c->text_len, B = m->B;
    double g = 0, a = 0;
    g += 2.0 * B * m->L * m->Fp * D + 2.0 * B * Lt * (c->text_dim * D + D * D) + 2.0 * B * m->L * D * m->Fo;
    for (int i = 0; i < c->num_layers; i++) {
        const skip_layout *l = &m->lay[m->kind[i]].host;
        double M = (double)l->npos;
        g += 2.0 * M * D * D * 6 + 4.0 * M * D * F + 4.0 * B * Lt * D * D;
        a += 4.0 * (double)l->R * l->N * l->N * D + 4.0 * M * Lt * D;
    }
    *gemm = g;
    *attn = a;
}
