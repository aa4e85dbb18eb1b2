/*
 * fakequant.c — per-tensor amax scaling (current and delayed) and the fp32 HiF8 fake-quant
 * kernel on the CPU. The CUDA twins are hif8_fq_cuda / hif8_absmax_cuda (quant/hif8_cuda.cu).
 */
#include "quant/fakequant.h"

#include <math.h>
#include <string.h>

#include "core/common.h"
#include "quant/hif8.h"

void fq_scaler_init(fq_scaler *sc, float target, bool delayed, int history_len, bool saturate) {
    if (!(isfinite(target) && target > 0.0f))
        osp_die("fq_scaler_init: target must be finite and > 0 (got %g)", (double)target);
    if (delayed && history_len < 1)
        osp_die("fq_scaler_init: history_len must be >= 1 for delayed scaling (got %d)", history_len);
    memset(sc, 0, sizeof *sc);
    sc->target = target;
    sc->delayed = delayed;
    sc->saturate = saturate;
    sc->history_len = delayed ? history_len : 0;
    if (sc->history_len > 0) sc->hist = osp_calloc((size_t)sc->history_len, sizeof(float));
}

void fq_scaler_free(fq_scaler *sc) {
    free(sc->hist);
    memset(sc, 0, sizeof *sc);
}

/* NaN-propagating max (fmaxf would drop a NaN amax and hide a diverged tensor). */
static inline float fq_max_nan(float a, float b) {
    if (isnan(a) || isnan(b)) return NAN;
    return a > b ? a : b;
}

float fq_scaler_scale(fq_scaler *sc, float amax_now) {
    float amax = amax_now;
    if (sc->delayed) {
        if (sc->count > 0) {
            float h = sc->hist[0];
            for (int i = 1; i < sc->count; i++) h = fq_max_nan(h, sc->hist[i]);
            /* an all-zero window (e.g. the zero gradients of Wan's zero-initialised head at
             * step 1) says nothing about the scale: fall back to the current amax rather
             * than scaling by target/1e-8 and overflowing everything */
            if (isnan(h) || h > 0) amax = h;
        }
        sc->hist[sc->pos] = amax_now;
        sc->pos = (sc->pos + 1) % sc->history_len;
        if (sc->count < sc->history_len) sc->count++;
    }
    return sc->target / fq_max_nan(amax, FQ_AMAX_FLOOR);
}

size_t fq_scaler_state_size(const fq_scaler *sc) { return 3 + (size_t)sc->history_len; }

void fq_scaler_state_get(const fq_scaler *sc, float *out) {
    out[0] = (float)sc->history_len;
    out[1] = (float)sc->count;
    out[2] = (float)sc->pos;
    for (int i = 0; i < sc->history_len; i++) out[3 + i] = sc->hist[i];
}

void fq_scaler_state_set(fq_scaler *sc, const float *in) {
    float fl = in[0], fc = in[1], fp = in[2];
    /* the integers are stored as floats: they must be exact, in range and consistent */
    if (!(fl >= 0.0f && fl <= 16777216.0f && fl == floorf(fl)) || !(fc >= 0.0f && fc <= fl && fc == floorf(fc)) ||
        !(fp >= 0.0f && (fp < fl || fp == 0.0f) && fp == floorf(fp)) || (fc < fl && fp != fc))
        osp_die("fq_scaler_state_set: malformed scaler state (history_len %g, count %g, pos %g)", (double)fl,
                (double)fc, (double)fp);
    int L = (int)fl, count = (int)fc, pos = (int)fp;
    const float *h = in + 3;
    if (L == sc->history_len) {
        sc->count = count;
        sc->pos = pos;
        for (int i = 0; i < L; i++) sc->hist[i] = h[i];
        return;
    }
    /* Different window length (config changed on resume): replay the most recent entries,
     * oldest first, into the current ring. With count < L the entries are h[0..count-1]
     * (pos == count); with a full ring the oldest sits at pos. */
    sc->count = 0;
    sc->pos = 0;
    if (sc->history_len == 0) return;
    int keep = count < sc->history_len ? count : sc->history_len;
    for (int k = count - keep; k < count; k++) {
        int src = count < L ? k : (pos + k) % L;
        sc->hist[sc->pos] = h[src];
        sc->pos = (sc->pos + 1) % sc->history_len;
        if (sc->count < sc->history_len) sc->count++;
    }
}

void fq_apply(float *y, const float *x, size_t n, float s, bool saturate) {
    ptrdiff_t nn = (ptrdiff_t)n;
    /* Each fp32 operation is rounded on its own (C11, FLT_EVAL_METHOD 0, no -ffast-math); the
     * multiply -> quantize -> divide chain leaves nothing to contract into an FMA, and the
     * divide is kept (q * (1/s) would differ in the last bit). */
#pragma omp parallel for schedule(static) if (nn > 65536)
    for (ptrdiff_t i = 0; i < nn; i++) {
        float v = x[i] * s;
        float q = hif8_round(v, saturate);
        y[i] = q / s;
    }
}

float fq_absmax(const float *x, size_t n) {
    /* For non-negative floats the bit patterns order like the values, and every NaN magnitude
     * (> 0x7F800000) is above +Inf: an unsigned max over |x| bits is max|x| with NaN winning. */
    ptrdiff_t nn = (ptrdiff_t)n;
    uint32_t m = 0;
#pragma omp parallel for schedule(static) reduction(max : m) if (nn > 65536)
    for (ptrdiff_t i = 0; i < nn; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        u &= 0x7FFFFFFFu;
        m = u > m ? u : m;
    }
    float r;
    memcpy(&r, &m, sizeof r);
    return r;
}
