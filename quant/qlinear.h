/*
 * qlinear.h — HiF8 fake-quantised linear layer (hif8.md §9.2, OSP-Next's HIF8Linear):
 *   forward   y  = fq(x; s_x) fq(W; s_w)^T + b          s = forward_target / amax
 *   backward  g  = fq(dy; s_g)                           s_g = grad_target / amax(dy)
 *             dx = g fq(W; s_w);  dW = g^T fq(x; s_x);  db = colsum(g)
 * with the straight-through estimator for the rounding (d fq(x)/dx taken as 1). The
 * quantised operands are not stored: backward recomputes them from x, W and the scales
 * the forward used, so the layer costs no extra activation memory. Scales come from
 * fq_scaler (current or delayed); in replay mode (activation recomputation) the saved
 * forward scales are reused so delayed-scaling histories advance once per step.
 */
#ifndef OSP_QLINEAR_H
#define OSP_QLINEAR_H

#include <stdbool.h>
#include <stdint.h>

#include "model/ops.h"
#include "quant/fakequant.h"

typedef struct {
    fq_scaler x, w, g;
    float sx, sw;   /* scales of the last forward */
    bool saturate;
} qlinear;

/* What the x scratch holds, so layers that read the same input (q, k, v of one attention;
 * k, v of the text) quantise it once: amax of (src, n), and qx = fq(src; scale). Valid while
 * src's contents do not change: the owner resets it whenever they may (Wan: at the start of
 * each block's forward and backward, since recomputation reuses activation buffers). */
typedef struct {
    const void *src; /* fp32 or bf16-stored input (never both at one address) */
    int64_t n;
    float amax, scale;
    bool has_amax, has_q;
} qlinear_xcache;

typedef struct {
    float *qx, *qw, *qg; /* backend scratch: >= N*K, O*K, N*O floats */
    qlinear_xcache *xc;  /* NULL: no reuse */
} qlinear_scratch;

void qlinear_init(qlinear *q, float fwd_target, float grad_target, bool delayed, int history, bool saturate);
void qlinear_free(qlinear *q);
void qlinear_fwd(const osp_backend *be, qlinear *q, const qlinear_scratch *s, bool replay, float *y, const float *x,
                 const float *W, const float *b, int64_t N, int K, int O);
void qlinear_bwd(const osp_backend *be, qlinear *q, const qlinear_scratch *s, float *dx, float *dW, float *db,
                 const float *dy, const float *x, const float *W, int64_t N, int K, int O);
/* The same over bf16 activation storage (ops.h): x fp32 or bf16-stored (x16), y fp32 or bf16
 * (y16), exactly one of each pair; needs be->linear_fq16_* (the quantiser reads the stored bf16
 * values and absmax16 gives their scale). */
void qlinear_fwd16(const osp_backend *be, qlinear *q, const qlinear_scratch *s, bool replay, float *y, osp_bf16 *y16,
                   const float *x, const osp_bf16 *x16, const float *W, const float *b, int64_t N, int K, int O);
/* Just the forward's scales (q->sx, q->sw; kept as they are in replay), for a caller that runs
 * the quantised GEMM itself (the HiF8 FFN's GELU epilogue: be->linear_fq_gelu16_fwd). */
void qlinear_scales16(const osp_backend *be, qlinear *q, const qlinear_scratch *s, bool replay, const float *x,
                      const osp_bf16 *x16, const float *W, int64_t N, int K, int O);
void qlinear_bwd16(const osp_backend *be, qlinear *q, float *dx, float *dW, float *db, const float *dy, const float *x,
                   const osp_bf16 *x16, const float *W, int64_t N, int K, int O);
void qlinear_xcache_reset(qlinear_xcache *xc);
/* Fake-quantise a tensor in place or into dst with a scaler (attention operands). */
float qtensor(const osp_backend *be, fq_scaler *sc, float *dst, const float *x, int64_t n, bool saturate);

#endif
