/*
 * model/qlinear.c — HiF8 fake-quantised linear layer (see model/qlinear.h).
 */
#include "model/qlinear.h"

#include "core/common.h"

void qlinear_init(qlinear *q, float fwd_target, float grad_target, bool delayed, int history, bool saturate) {
    fq_scaler_init(&q->x, fwd_target, delayed, history, saturate);
    fq_scaler_init(&q->w, fwd_target, delayed, history, saturate);
    fq_scaler_init(&q->g, grad_target, delayed, history, saturate);
    q->sx = q->sw = 1.0f;
    q->ds = NULL;
    q->ds_be = NULL;
    q->saturate = saturate;
}

void qlinear_free(qlinear *q) {
    fq_scaler_free(&q->x);
    fq_scaler_free(&q->w);
    fq_scaler_free(&q->g);
    if (q->ds) q->ds_be->free(q->ds);
    q->ds = NULL;
    q->ds_be = NULL;
}

float qtensor(const osp_backend *be, fq_scaler *sc, float *dst, const float *x, int64_t n, bool saturate) {
    float s = fq_scaler_scale(sc, be->absmax(x, n));
    be->hif8_fq(dst, x, n, s, saturate);
    return s;
}

void qlinear_xcache_reset(qlinear_xcache *xc) {
    if (xc) *xc = (qlinear_xcache){0};
}

/* the cache, emptied first when it describes another input than (src, n); NULL: no cache */
static qlinear_xcache *xc_for(const qlinear_scratch *s, const void *src, int64_t n) {
    qlinear_xcache *c = s ? s->xc : NULL;
    if (c && (c->src != src || c->n != n)) *c = (qlinear_xcache){.src = src, .n = n};
    return c;
}

/* amax of the input (fp32 x or bf16-stored x16), from the cache when this input's was just taken */
static float x_amax(const osp_backend *be, const qlinear_scratch *s, const float *x, const osp_bf16 *x16, int64_t n) {
    const void *src = x16 ? (const void *)x16 : (const void *)x;
    qlinear_xcache *c = xc_for(s, src, n);
    if (c && c->has_amax) return c->amax;
    float a = x16 ? be->absmax16(x16, n) : be->absmax(x, n);
    if (c) {
        c->amax = a;
        c->has_amax = true;
    }
    return a;
}

/* s->qx = fq(x; scale), skipped when it already holds exactly that */
static void x_quant(const osp_backend *be, const qlinear_scratch *s, const float *x, int64_t n, float scale,
                    bool saturate) {
    qlinear_xcache *c = xc_for(s, x, n);
    if (c && c->has_q && c->scale == scale) return;
    be->hif8_fq(s->qx, x, n, scale, saturate);
    if (!c) return;
    c->scale = scale;
    c->has_q = true;
}

void qlinear_fwd(const osp_backend *be, qlinear *q, const qlinear_scratch *s, bool replay, float *y, const float *x,
                 const float *W, const float *b, int64_t N, int K, int O) {
    if (be->linear_fq_fwd) { /* the backend quantises while preparing its GEMM operands */
        if (!replay) {
            q->sx = fq_scaler_scale(&q->x, x_amax(be, s, x, NULL, N * K));
            q->sw = fq_scaler_scale(&q->w, be->absmax(W, (int64_t)O * K));
        }
        be->linear_fq_fwd(y, x, q->sx, W, q->sw, b, N, K, O, q->saturate);
        return;
    }
    if (replay) {
        x_quant(be, s, x, N * K, q->sx, q->saturate);
        be->hif8_fq(s->qw, W, (int64_t)O * K, q->sw, q->saturate);
    } else {
        /* every layer's scaler sees the amax (delayed-scaling histories stay per layer) */
        q->sx = fq_scaler_scale(&q->x, x_amax(be, s, x, NULL, N * K));
        x_quant(be, s, x, N * K, q->sx, q->saturate);
        q->sw = qtensor(be, &q->w, s->qw, W, (int64_t)O * K, q->saturate);
    }
    be->linear_fwd(y, s->qx, s->qw, b, N, K, O);
}

void qlinear_bwd(const osp_backend *be, qlinear *q, const qlinear_scratch *s, float *dx, float *dW, float *db,
                 const float *dy, const float *x, const float *W, int64_t N, int K, int O) {
    if (be->linear_fq_bwd) {
        float sg = fq_scaler_scale(&q->g, be->absmax(dy, N * O));
        be->linear_fq_bwd(dx, dW, db, dy, sg, x, q->sx, W, q->sw, N, K, O, q->saturate);
        return;
    }
    x_quant(be, s, x, N * K, q->sx, q->saturate);
    be->hif8_fq(s->qw, W, (int64_t)O * K, q->sw, q->saturate);
    qtensor(be, &q->g, s->qg, dy, N * O, q->saturate);
    be->linear_bwd(dx, dW, db, s->qg, s->qx, s->qw, N, K, O);
}

/* ------------------------------------------------------------ bf16 storage: device scales */

/* q->ds, allocated on the backend the first time */
static float *dev_scales(const osp_backend *be, qlinear *q) {
    if (!q->ds) {
        OSP_CHECK(be->hif8_scale_dev && be->hif8_scale_set, "qlinear *16: the backend has no device-resident scales");
        q->ds = be->alloc(sizeof(float) * QLINEAR_NDS);
        q->ds_be = be;
    }
    OSP_CHECK(q->ds_be == be, "qlinear *16: device scales allocated by another backend");
    return q->ds;
}

/* *ds = the current scale of the input, computed on the device; layers reading the same input
 * (the x cache s; NULL: none) copy the first one's device float instead of reducing it again */
static void x_scale_dev(const osp_backend *be, const qlinear_scratch *s, const float *x, const osp_bf16 *x16,
                        int64_t n, float target, float *ds) {
    const void *src = x16 ? (const void *)x16 : (const void *)x;
    qlinear_xcache *c = xc_for(s, src, n);
    if (c && c->has_dscale && c->dtarget == target) {
        be->copy(ds, c->dscale, sizeof(float)); /* device to device, in stream order */
        return;
    }
    be->hif8_scale_dev(ds, x, x16, n, target);
    if (!c) return;
    c->dscale = ds;
    c->dtarget = target;
    c->has_dscale = true;
}

/* *ds = sc's scale of the tensor (fp32 x or bf16-stored x16; s: the x cache, or NULL). Current
 * scaling computes it on the device; delayed scaling on the host, since its history needs the amax
 * there (a sync), and writes it to the device (also to *host when given). */
static void scale_dev(const osp_backend *be, fq_scaler *sc, float *host, float *ds, const qlinear_scratch *s,
                      const float *x, const osp_bf16 *x16, int64_t n) {
    if (!sc->delayed) {
        x_scale_dev(be, s, x, x16, n, sc->target, ds);
        return;
    }
    float v = fq_scaler_scale(sc, x_amax(be, s, x, x16, n));
    if (host) *host = v;
    be->hif8_scale_set(ds, v);
}

void qlinear_scales16(const osp_backend *be, qlinear *q, const qlinear_scratch *s, bool replay, const float *x,
                      const osp_bf16 *x16, const float *W, int64_t N, int K, int O) {
    if (replay) { /* recomputation: the forward's device scales are still in q->ds */
        OSP_CHECK(q->ds, "qlinear_scales16: replay before any forward");
        return;
    }
    float *ds = dev_scales(be, q);
    scale_dev(be, &q->x, &q->sx, ds + QLINEAR_DSX, s, x, x16, N * K);
    scale_dev(be, &q->w, &q->sw, ds + QLINEAR_DSW, NULL, W, NULL, (int64_t)O * K);
}

void qlinear_fwd16(const osp_backend *be, qlinear *q, const qlinear_scratch *s, bool replay, float *y, osp_bf16 *y16,
                   const float *x, const osp_bf16 *x16, const float *W, const float *b, int64_t N, int K, int O) {
    OSP_CHECK(be->linear_fq16_fwd, "qlinear_fwd16: the backend has no bf16 activation storage");
    qlinear_scales16(be, q, s, replay, x, x16, W, N, K, O);
    be->linear_fq16_fwd(y, y16, x, x16, q->ds + QLINEAR_DSX, W, q->ds + QLINEAR_DSW, b, N, K, O, q->saturate);
}

void qlinear_bwd16(const osp_backend *be, qlinear *q, float *dx, float *dW, float *db, const float *dy, const float *x,
                   const osp_bf16 *x16, const float *W, int64_t N, int K, int O) {
    OSP_CHECK(be->linear_fq16_bwd, "qlinear_bwd16: the backend has no bf16 activation storage");
    OSP_CHECK(q->ds, "qlinear_bwd16: the layer's forward did not run through qlinear_fwd16 / qlinear_scales16");
    float *ds = q->ds;
    scale_dev(be, &q->g, NULL, ds + QLINEAR_DSG, NULL, dy, NULL, N * O);
    be->linear_fq16_bwd(dx, dW, db, dy, ds + QLINEAR_DSG, x, x16, ds + QLINEAR_DSX, W, ds + QLINEAR_DSW, N, K, O,
                        q->saturate);
}
