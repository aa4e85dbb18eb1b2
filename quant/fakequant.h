/*
 * fakequant.h — per-tensor scaling state and the fp32 fake-quantization kernel used to emulate
 * HiF8 GEMMs on hardware without HiF8: a tensor x is replaced by fq(x) = decode(encode(x*s))/s
 * with s chosen from the tensor's absolute maximum (amax) so that its largest values land near a
 * target magnitude of the HiF8 grid (15 or 224 in the OSP-Next recipe, 32768 = max finite).
 *
 * Scaling conventions (all arithmetic in fp32):
 *   current:  s = target / max(amax_now, 1e-8)
 *   delayed:  s = target / max(H, 1e-8), where H = max of the amax values already in the history
 *             (the last history_len calls, NOT including this call's amax); on the very first
 *             call (empty history) or when every entry is 0, H = amax_now. After computing s, amax_now is pushed into the
 *             history ring (the oldest entry drops out once history_len entries are held).
 *   A NaN amax gives a NaN scale (as torch's clamp does), so a diverged tensor stays visible;
 *   in delayed mode a NaN stays in the window for history_len calls. With delayed scaling a
 *   value larger than the window's maximum can exceed the target: it overflows to Inf unless
 *   `saturate` is set (then it clamps to +-32768).
 */
#ifndef OSP_FAKEQUANT_H
#define OSP_FAKEQUANT_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FQ_AMAX_FLOOR 1e-8f

typedef struct {
    int history_len; /* ring capacity (delayed); 0 for current scaling */
    int count;       /* entries held, <= history_len */
    int pos;         /* next slot to write */
    float *hist;     /* [history_len] amax ring, NULL when history_len == 0 */
    float target;    /* scaled amax lands here */
    bool delayed;
    bool saturate;   /* overflow -> +-32768 instead of +-Inf (passed on to fq_apply by callers) */
} fq_scaler;

/* target must be finite and > 0; history_len must be >= 1 when delayed (ignored otherwise).
 * Bad values stop with a one-line error naming the argument. */
void fq_scaler_init(fq_scaler *sc, float target, bool delayed, int history_len, bool saturate);
void fq_scaler_free(fq_scaler *sc);

/* Scale for this step given this step's amax (conventions above); updates the history. */
float fq_scaler_scale(fq_scaler *sc, float amax_now);

/* Checkpoint state as floats: [history_len, count, pos, hist[0 .. history_len-1]], so
 * fq_scaler_state_size = 3 + history_len. state_set accepts a state saved with a different
 * history_len (it reads 3 + in[0] floats) and keeps the most recent min(saved, current)
 * entries; a malformed state stops with a one-line error. */
size_t fq_scaler_state_size(const fq_scaler *sc);
void fq_scaler_state_get(const fq_scaler *sc, float *out);
void fq_scaler_state_set(fq_scaler *sc, const float *in);

/* y[i] = q / s with q = hif8_round(x[i] * s, saturate), each step in IEEE fp32 round-to-nearest
 * (the product and the quotient are rounded to fp32 separately, no FMA, no reciprocal).
 * OpenMP-parallel; y == x (in place) allowed. */
void fq_apply(float *y, const float *x, size_t n, float s, bool saturate);

/* max |x[i]| (0 for n == 0; NaN if any x[i] is NaN). Exact and order independent: it is an
 * integer max over the magnitude bits, so CPU and CUDA return the same bits. */
float fq_absmax(const float *x, size_t n);

#ifdef __cplusplus
}
#endif

#endif
