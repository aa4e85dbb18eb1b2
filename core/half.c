/*
 * half.c — float32 <-> bfloat16 / IEEE float16 scalar conversions, shared by the checkpoint
 * reader/writer (model/io) and the HDF5 reader/writer (data/): one definition of the rounding.
 */
#include "core/half.h"

#include <string.h>

float half_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t half_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN: keep it quiet */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even; overflow lands on inf */
    return (uint16_t)(u >> 16);
}

float half_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
    if (e == 0) {
        float v = (float)m * 0x1p-24f; /* zero or subnormal: exact in f32 */
        return sign ? -v : v;
    }
    if (e == 31) u = sign | 0x7f800000u | (m << 13);
    else u = sign | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t half_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff)); /* NaN */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* >= 65520 rounds (to even) to inf */
    if (ax >= 0x38800000u) { /* normal half: rebias exponent by -112 and round to nearest even */
        ax += 0xc8000fffu + ((ax >> 13) & 1u);
        return (uint16_t)(sign | (ax >> 13));
    }
    /* subnormal half: adding 0.5f puts the half mantissa in the low bits, and the FPU's
     * default round-to-nearest-even does the rounding (F. Giesen's float_to_half) */
    float af, magic = 0.5f;
    memcpy(&af, &ax, 4);
    af += magic;
    uint32_t r, mu;
    memcpy(&r, &af, 4);
    memcpy(&mu, &magic, 4);
    return (uint16_t)(sign | (r - mu));
}
