/*
 * model/qlinear.h — HiF8 fake-quantised linear layer (docs/hif8.md §7, OSP-Next's HIF8Linear):
 *   forward   y  = fq(x; s_x) fq(W; s_w)^T + b          s = forward_target / amax
 *   backward  g  = fq(dy; s_g)                           s_g = grad_target / amax(dy)
 *             dx = g fq(W; s_w);  dW = g^T fq(x; s_x);  db = colsum(g)
 * with the straight-through estimator for the rounding (d fq(x)/dx taken as 1). The
 * quantised operands are not stored: backward recomputes them from x, W and the scales
 * the forward used, so the layer costs no extra activation memory. Scales come from
 * fq_scaler (current or delayed); in replay mode (activation recomputation) the saved
 * forward scales are reused so delayed-scaling histories advance once per step.
 *
 * Where the scales live: qlinear_fwd / qlinear_bwd (fp32 activations, any backend) compute them
 * on the host (one absmax download per tensor) and keep the forward's in sx, sw. The *16
 * functions (bf16 activation storage, CUDA) keep them in device floats (ds[QLINEAR_DS*]) that
 * the quantised GEMMs read: current scaling computes them there (be->hif8_scale_dev, no host
 * sync at all); delayed scaling computes them on the host from the history as before (the absmax
 * still synchronises, the history needs its value) and writes them with be->hif8_scale_set.
 */
#ifndef OSP_QLINEAR_H
#define OSP_QLINEAR_H

#include <stdbool.h>
#include <stdint.h>

#include "model/ops.h"
#include "quant/fakequant.h"

enum { QLINEAR_DSX, QLINEAR_DSW, QLINEAR_DSG, QLINEAR_NDS }; /* the device scales in qlinear.ds */

typedef struct {
    fq_scaler x, w, g;
    /* host scales of the last forward: the fp32 path's, and the *16 path's with delayed scaling;
     * with current scaling the *16 path leaves them untouched (its scales exist only on the device) */
    float sx, sw;
    float *ds;                /* [QLINEAR_NDS] device floats of the *16 path: sx, sw of the last forward
                               * (replay reuses them), sg of the last backward; NULL until first used */
    const osp_backend *ds_be; /* the backend that allocated ds (qlinear_free returns it there) */
    bool saturate;
} qlinear;

/* What the x scratch holds, so layers that read the same input (q, k, v of one attention;
 * k, v of the text) quantise it once: amax of (src, n), and qx = fq(src; scale); on the *16 path
 * with current scaling, the device float dscale holding the scale of (src, n) for target dtarget
 * (a layer's ds[QLINEAR_DSX]: the next layer copies it on the device instead of reducing src
 * again). Valid while src's contents (and that layer's ds) do not change: the owner resets it
 * whenever they may (Wan: at the start of each block's forward and backward, since recomputation
 * reuses activation buffers). */
typedef struct {
    const void *src; /* fp32 or bf16-stored input (never both at one address) */
    int64_t n;
    float amax, scale;
    const float *dscale; /* device */
    float dtarget;
    bool has_amax, has_q, has_dscale;
} qlinear_xcache;

typedef struct {
    float *qx, *qw, *qg; /* backend scratch: >= N*K, O*K, N*O floats */
    qlinear_xcache *xc;  /* NULL: no reuse */
} qlinear_scratch;

void qlinear_init(qlinear *q, float fwd_target, float grad_target, bool delayed, int history, bool saturate);
/* frees the scalers and the device scales (with the backend that allocated them) */
void qlinear_free(qlinear *q);
void qlinear_fwd(const osp_backend *be, qlinear *q, const qlinear_scratch *s, bool replay, float *y, const float *x,
                 const float *W, const float *b, int64_t N, int K, int O);
void qlinear_bwd(const osp_backend *be, qlinear *q, const qlinear_scratch *s, float *dx, float *dW, float *db,
                 const float *dy, const float *x, const float *W, int64_t N, int K, int O);
/* The same over bf16 activation storage (ops.h): x fp32 or bf16-stored (x16), y fp32 or bf16
 * (y16), exactly one of each pair; needs be->linear_fq16_* and be->hif8_scale_* (the quantiser
 * reads the stored values; the scales are device floats, q->ds, allocated with be->alloc on first
 * use). A layer's forward and backward must both go through the *16 functions (the backward reads
 * the forward's device scales); with current scaling nothing here waits for the device (after
 * the first call, whose be->alloc may). */
void qlinear_fwd16(const osp_backend *be, qlinear *q, const qlinear_scratch *s, bool replay, float *y, osp_bf16 *y16,
                   const float *x, const osp_bf16 *x16, const float *W, const float *b, int64_t N, int K, int O);
/* Just the forward's scales, into q->ds[QLINEAR_DSX], q->ds[QLINEAR_DSW] (kept as they are in
 * replay), for a caller that runs the quantised GEMM itself (the HiF8 FFN's GELU epilogue:
 * be->linear_fq_gelu16_fwd(..., q->ds + QLINEAR_DSX, W, q->ds + QLINEAR_DSW, ...)). */
void qlinear_scales16(const osp_backend *be, qlinear *q, const qlinear_scratch *s, bool replay, const float *x,
                      const osp_bf16 *x16, const float *W, int64_t N, int K, int O);
void qlinear_bwd16(const osp_backend *be, qlinear *q, float *dx, float *dW, float *db, const float *dy, const float *x,
                   const osp_bf16 *x16, const float *W, int64_t N, int K, int O);
void qlinear_xcache_reset(qlinear_xcache *xc);
/* Fake-quantise a tensor in place or into dst with a scaler (attention operands). */
float qtensor(const osp_backend *be, fq_scaler *sc, float *dst, const float *x, int64_t n, bool saturate);

#endif
