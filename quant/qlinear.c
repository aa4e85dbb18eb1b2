/*
 * qlinear.c — HiF8 fake-quantised linear layer (see qlinear.h).
 */
#include "qlinear.h"

void qlinear_init(qlinear *q, float fwd_target, float grad_target, bool delayed, int history, bool saturate) {
    fq_scaler_init(&q->x, fwd_target, delayed, history, saturate);
    fq_scaler_init(&q->w, fwd_target, delayed, history, saturate);
    fq_scaler_init(&q->g, grad_target, delayed, history, saturate);
    q->sx = q->sw = 1.0f;
    q->saturate = saturate;
}

void qlinear_free(qlinear *q) {
    fq_scaler_free(&q->x);
    fq_scaler_free(&q->w);
    fq_scaler_free(&q->g);
}

float qtensor(const osp_backend *be, fq_scaler *sc, float *dst, const float *x, int64_t n, bool saturate) {
    float s = fq_scaler_scale(sc, be->absmax(x, n));
    be->hif8_fq(dst, x, n, s, saturate);
    return s;
}

void qlinear_fwd(const osp_backend *be, qlinear *q, const qlinear_scratch *s, bool replay, float *y, const float *x,
                 const float *W, const float *b, int64_t N, int K, int O) {
    if (replay) {
        be->hif8_fq(s->qx, x, N * K, q->sx, q->saturate);
        be->hif8_fq(s->qw, W, (int64_t)O * K, q->sw, q->saturate);
    } else {
        q->sx = qtensor(be, &q->x, s->qx, x, N * K, q->saturate);
        q->sw = qtensor(be, &q->w, s->qw, W, (int64_t)O * K, q->saturate);
    }
    be->linear_fwd(y, s->qx, s->qw, b, N, K, O);
}

void qlinear_bwd(const osp_backend *be, qlinear *q, const qlinear_scratch *s, float *dx, float *dW, float *db,
                 const float *dy, const float *x, const float *W, int64_t N, int K, int O) {
    be->hif8_fq(s->qx, x, N * K, q->sx, q->saturate);
    be->hif8_fq(s->qw, W, (int64_t)O * K, q->sw, q->saturate);
    qtensor(be, &q->g, s->qg, dy, N * O, q->saturate);
    be->linear_bwd(dx, dW, db, s->qg, s->qx, s->qw, N, K, O);
}
