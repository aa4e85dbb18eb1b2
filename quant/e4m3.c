/*
 * e4m3.c — OCP FP8 E4M3 codec on the CPU (the reference the CUDA FP8 path is tested against) and
 * the HiF8 -> E4M3 exactness walk (see e4m3.h for the format and why osp needs it).
 */
#include "quant/e4m3.h"

#include <math.h>

#include "quant/hif8.h"

uint8_t e4m3_from_float(float x, bool saturate) {
    if (isnan(x)) return (uint8_t)(signbit(x) ? 0x80u | E4M3_NAN : E4M3_NAN);
    uint8_t sign = signbit(x) ? 0x80u : 0x00u;
    double ax = fabs((double)x);
    if (isinf(x)) return saturate ? (uint8_t)(sign | 0x7Eu) : (uint8_t)(sign | E4M3_NAN);
    if (ax == 0.0) return sign;
    /* quantum of the binade of ax, never finer than the subnormal quantum 2^-9 */
    int e = ilogb(ax);
    if (e < -6) e = -6;
    double q = nearbyint(ldexp(ax, 3 - e)); /* the default rounding mode: nearest, ties to even */
    if (q >= 16.0) { /* rounded up into the next binade */
        q = 8.0;
        e++;
    }
    if (e > 8 || (e == 8 && q > 14.0)) return saturate ? (uint8_t)(sign | 0x7Eu) : (uint8_t)(sign | E4M3_NAN);
    int iq = (int)q;
    if (iq < 8) return (uint8_t)(sign | iq); /* subnormal (e == -6) or zero after rounding */
    return (uint8_t)(sign | ((e + 7) << 3) | (iq - 8));
}

float e4m3_to_float(uint8_t code) {
    int s = code >> 7, E = (code >> 3) & 15, M = code & 7;
    if (E == 15 && M == 7) return NAN;
    double v = E == 0 ? ldexp((double)M, -9) : ldexp(8.0 + M, E - 10);
    return (float)(s ? -v : v);
}

float e4m3_round(float x, bool saturate) { return e4m3_to_float(e4m3_from_float(x, saturate)); }

float e4m3_hif8_exact_floor(float vmax, float shift, float *first_inexact) {
    /* Walk every positive finite HiF8 value in (0, vmax]; the floor is just above the largest
     * inexact one. Negative values mirror positive ones in both formats. */
    float worst = 0.0f, floor_v = INFINITY;
    for (int c = 0; c < 128; c++) {
        float v = hif8_to_float((uint8_t)c);
        if (!(v > 0.0f) || isinf(v) || v > vmax) continue;
        float y = v * shift; /* a power of two: exact in float32 */
        if (e4m3_round(y, false) != y) {
            if (y > E4M3_MAX) return -1.0f;
            if (v > worst) worst = v;
        }
    }
    for (int c = 0; c < 128; c++) {
        float v = hif8_to_float((uint8_t)c);
        if (v > worst && v <= vmax && !isinf(v) && v < floor_v) floor_v = v;
    }
    if (first_inexact) *first_inexact = worst;
    return floor_v;
}
