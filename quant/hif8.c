/*
 * hif8.c — HiFloat8 codec on the CPU: the bit-form encoder of docs/hif8.md §3 (integer operations on
 * the float32 bits, no libm), a compile-time decode table, and the fused round trip that fake
 * quantization uses. The CUDA twin is quant/hif8_cuda.cuh; tests/test_hif8.c checks this file
 * exhaustively against an independent value-domain reference.
 */
#include "quant/hif8.h"

#include <math.h>
#include <string.h>

/* Decode table, generated from the field layout (Dot prefix / sign-magnitude exponent /
 * mantissa) and checked code by code in tests/test_hif8.c against a field-mask decoder.
 * A constant initializer makes it thread-safe with no init call. */
static const float hif8_table[256] = {
    /* 0x00 */ 0.0f, 0x1p-22f, 0x1p-21f, 0x1p-20f, 0x1p-19f, 0x1p-18f, 0x1p-17f, 0x1p-16f,
    /* 0x08 */ 0x1p0f, 0x1.2p0f, 0x1.4p0f, 0x1.6p0f, 0x1.8p0f, 0x1.ap0f, 0x1.cp0f, 0x1.ep0f,
    /* 0x10 */ 0x1p1f, 0x1.2p1f, 0x1.4p1f, 0x1.6p1f, 0x1.8p1f, 0x1.ap1f, 0x1.cp1f, 0x1.ep1f,
    /* 0x18 */ 0x1p-1f, 0x1.2p-1f, 0x1.4p-1f, 0x1.6p-1f, 0x1.8p-1f, 0x1.ap-1f, 0x1.cp-1f, 0x1.ep-1f,
    /* 0x20 */ 0x1p2f, 0x1.2p2f, 0x1.4p2f, 0x1.6p2f, 0x1.8p2f, 0x1.ap2f, 0x1.cp2f, 0x1.ep2f,
    /* 0x28 */ 0x1p3f, 0x1.2p3f, 0x1.4p3f, 0x1.6p3f, 0x1.8p3f, 0x1.ap3f, 0x1.cp3f, 0x1.ep3f,
    /* 0x30 */ 0x1p-2f, 0x1.2p-2f, 0x1.4p-2f, 0x1.6p-2f, 0x1.8p-2f, 0x1.ap-2f, 0x1.cp-2f, 0x1.ep-2f,
    /* 0x38 */ 0x1p-3f, 0x1.2p-3f, 0x1.4p-3f, 0x1.6p-3f, 0x1.8p-3f, 0x1.ap-3f, 0x1.cp-3f, 0x1.ep-3f,
    /* 0x40 */ 0x1p4f, 0x1.4p4f, 0x1.8p4f, 0x1.cp4f, 0x1p5f, 0x1.4p5f, 0x1.8p5f, 0x1.cp5f,
    /* 0x48 */ 0x1p6f, 0x1.4p6f, 0x1.8p6f, 0x1.cp6f, 0x1p7f, 0x1.4p7f, 0x1.8p7f, 0x1.cp7f,
    /* 0x50 */ 0x1p-4f, 0x1.4p-4f, 0x1.8p-4f, 0x1.cp-4f, 0x1p-5f, 0x1.4p-5f, 0x1.8p-5f, 0x1.cp-5f,
    /* 0x58 */ 0x1p-6f, 0x1.4p-6f, 0x1.8p-6f, 0x1.cp-6f, 0x1p-7f, 0x1.4p-7f, 0x1.8p-7f, 0x1.cp-7f,
    /* 0x60 */ 0x1p8f, 0x1.8p8f, 0x1p9f, 0x1.8p9f, 0x1p10f, 0x1.8p10f, 0x1p11f, 0x1.8p11f,
    /* 0x68 */ 0x1p12f, 0x1.8p12f, 0x1p13f, 0x1.8p13f, 0x1p14f, 0x1.8p14f, 0x1p15f, INFINITY,
    /* 0x70 */ 0x1p-8f, 0x1.8p-8f, 0x1p-9f, 0x1.8p-9f, 0x1p-10f, 0x1.8p-10f, 0x1p-11f, 0x1.8p-11f,
    /* 0x78 */ 0x1p-12f, 0x1.8p-12f, 0x1p-13f, 0x1.8p-13f, 0x1p-14f, 0x1.8p-14f, 0x1p-15f, 0x1.8p-15f,
    /* 0x80 */ NAN, -0x1p-22f, -0x1p-21f, -0x1p-20f, -0x1p-19f, -0x1p-18f, -0x1p-17f, -0x1p-16f,
    /* 0x88 */ -0x1p0f, -0x1.2p0f, -0x1.4p0f, -0x1.6p0f, -0x1.8p0f, -0x1.ap0f, -0x1.cp0f, -0x1.ep0f,
    /* 0x90 */ -0x1p1f, -0x1.2p1f, -0x1.4p1f, -0x1.6p1f, -0x1.8p1f, -0x1.ap1f, -0x1.cp1f, -0x1.ep1f,
    /* 0x98 */ -0x1p-1f, -0x1.2p-1f, -0x1.4p-1f, -0x1.6p-1f, -0x1.8p-1f, -0x1.ap-1f, -0x1.cp-1f, -0x1.ep-1f,
    /* 0xA0 */ -0x1p2f, -0x1.2p2f, -0x1.4p2f, -0x1.6p2f, -0x1.8p2f, -0x1.ap2f, -0x1.cp2f, -0x1.ep2f,
    /* 0xA8 */ -0x1p3f, -0x1.2p3f, -0x1.4p3f, -0x1.6p3f, -0x1.8p3f, -0x1.ap3f, -0x1.cp3f, -0x1.ep3f,
    /* 0xB0 */ -0x1p-2f, -0x1.2p-2f, -0x1.4p-2f, -0x1.6p-2f, -0x1.8p-2f, -0x1.ap-2f, -0x1.cp-2f, -0x1.ep-2f,
    /* 0xB8 */ -0x1p-3f, -0x1.2p-3f, -0x1.4p-3f, -0x1.6p-3f, -0x1.8p-3f, -0x1.ap-3f, -0x1.cp-3f, -0x1.ep-3f,
    /* 0xC0 */ -0x1p4f, -0x1.4p4f, -0x1.8p4f, -0x1.cp4f, -0x1p5f, -0x1.4p5f, -0x1.8p5f, -0x1.cp5f,
    /* 0xC8 */ -0x1p6f, -0x1.4p6f, -0x1.8p6f, -0x1.cp6f, -0x1p7f, -0x1.4p7f, -0x1.8p7f, -0x1.cp7f,
    /* 0xD0 */ -0x1p-4f, -0x1.4p-4f, -0x1.8p-4f, -0x1.cp-4f, -0x1p-5f, -0x1.4p-5f, -0x1.8p-5f, -0x1.cp-5f,
    /* 0xD8 */ -0x1p-6f, -0x1.4p-6f, -0x1.8p-6f, -0x1.cp-6f, -0x1p-7f, -0x1.4p-7f, -0x1.8p-7f, -0x1.cp-7f,
    /* 0xE0 */ -0x1p8f, -0x1.8p8f, -0x1p9f, -0x1.8p9f, -0x1p10f, -0x1.8p10f, -0x1p11f, -0x1.8p11f,
    /* 0xE8 */ -0x1p12f, -0x1.8p12f, -0x1p13f, -0x1.8p13f, -0x1p14f, -0x1.8p14f, -0x1p15f, -INFINITY,
    /* 0xF0 */ -0x1p-8f, -0x1.8p-8f, -0x1p-9f, -0x1.8p-9f, -0x1p-10f, -0x1.8p-10f, -0x1p-11f, -0x1.8p-11f,
    /* 0xF8 */ -0x1p-12f, -0x1.8p-12f, -0x1p-13f, -0x1.8p-13f, -0x1p-14f, -0x1.8p-14f, -0x1p-15f, -0x1.8p-15f,
};

static inline uint32_t hif8_nan_bits(void) {
    uint32_t u;
    memcpy(&u, &hif8_table[HIF8_NAN], sizeof u);
    return u;
}

enum { HIF8_K_ZERO, HIF8_K_FINITE, HIF8_K_OVERFLOW, HIF8_K_INF, HIF8_K_NAN };

/* |x| rounded onto the HiF8 grid: value = q * 2^(e - w) with 2^w <= q < 2^(w+1) (K_FINITE). */
typedef struct {
    int kind;
    int e;      /* binade after rounding, -22 .. 15 */
    int w;      /* mantissa bits of that binade, 0 .. 3 */
    uint32_t q; /* significand with its leading 1 */
} hif8_parts;

/* Mantissa width of binade e (docs/hif8.md (E4)): 3 for |e| <= 3, 2 for |e| <= 7, 1 for |e| <= 15 and 0
 * (powers of two only) in the denormal binades e <= -16. */
static inline int hif8_width(int e) {
    int ae = e < 0 ? -e : e;
    return ae <= 3 ? 3 : ae <= 7 ? 2 : ae <= 15 ? 1 : 0;
}

/* Steps (E1)-(E8) of docs/hif8.md §3 on the magnitude bits a = bits(|x|). Rounding is to nearest with ties
 * away from zero on the grid of the input's own binade: adding half an ulp of that grid to the
 * 24-bit significand and truncating does exactly that. A carry out of the binade gives an exact
 * power of two, representable in the next binade whatever its width. */
static inline hif8_parts hif8_split(uint32_t a) {
    hif8_parts p = {HIF8_K_FINITE, 0, 0, 0};
    if (a > 0x7F800000u) { p.kind = HIF8_K_NAN; return p; }
    if (a == 0x7F800000u) { p.kind = HIF8_K_INF; return p; }
    if (a < 0x34000000u) { p.kind = HIF8_K_ZERO; return p; } /* |x| < 2^-23, incl. subnormals */
    int e = (int)(a >> 23) - 127;
    if (e >= 16) { p.kind = HIF8_K_OVERFLOW; return p; }
    int w = hif8_width(e);
    uint32_t m24 = (a & 0x7FFFFFu) | 0x800000u;
    uint32_t q = (m24 + (1u << (22 - w))) >> (23 - w);
    if (q == (2u << w)) { /* carry into the next binade */
        e += 1;
        w = hif8_width(e);
        q = 1u << w;
    }
    if (e == -23) { e = -22; q = 1; w = 0; } /* [2^-23, 2^-22) -> 2^-22 */
    if (e >= 16 || (e == 15 && q == 3u)) { p.kind = HIF8_K_OVERFLOW; return p; } /* >= 40960 */
    p.e = e;
    p.w = w;
    p.q = q;
    return p;
}

uint8_t hif8_from_float(float x, bool saturate) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint32_t sign = (u >> 24) & 0x80u;
    hif8_parts p = hif8_split(u & 0x7FFFFFFFu);
    switch (p.kind) {
    case HIF8_K_NAN: return (uint8_t)HIF8_NAN;
    case HIF8_K_INF: return (uint8_t)(sign | HIF8_POS_INF);
    case HIF8_K_ZERO: return 0x00; /* one zero: -0 and tiny negatives give 0x00, never 0x80 */
    case HIF8_K_OVERFLOW: return (uint8_t)(sign | (saturate ? HIF8_POS_MAX : HIF8_POS_INF));
    default: break;
    }
    /* (E9): pack with the layout of the final binade. */
    int e = p.e;
    uint32_t f = p.q - (1u << p.w);
    uint32_t es = e < 0 ? 1u : 0u;
    uint32_t ae = (uint32_t)(e < 0 ? -e : e);
    uint32_t c;
    if (e <= -16) c = (uint32_t)(e + 23);
    else if (ae == 0) c = 0x08u | f;
    else if (ae == 1) c = 0x10u | es << 3 | f;
    else if (ae <= 3) c = 0x20u | es << 4 | (ae - 2) << 3 | f;
    else if (ae <= 7) c = 0x40u | es << 4 | (ae - 4) << 2 | f;
    else c = 0x60u | es << 4 | (ae - 8) << 1 | f;
    return (uint8_t)(sign | c);
}

float hif8_to_float(uint8_t code) { return hif8_table[code]; }

/* The fused round trip works on the bits directly: adding half a grid step to |x|'s bits and
 * clearing the bits below the grid of the input's binade rounds half away from zero, and a
 * carry out of the mantissa bumps the exponent field, which is exactly (E6). What is left of
 * (E1)-(E8) are fix-ups. Checked bit for bit against decode(encode(x)) by tests/test_hif8.c. */
float hif8_round(float x, bool saturate) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint32_t a = u & 0x7FFFFFFFu;
    int e = (int)(a >> 23) - 127;
    int ae = e < 0 ? -e : e;
    int sh = 20 + (ae > 3) + (ae > 7) + (ae > 15); /* 23 - mantissa width of the binade */
    uint32_t r = (a + (1u << (sh - 1))) & (0xFFFFFFFFu << sh);
    if (r == 0x34000000u) r = 0x34800000u;                          /* [2^-23, 2^-22) -> 2^-22 */
    if (a < 0x34000000u) r = 0;                                     /* below 2^-23 -> +0 */
    if (r > 0x47000000u) r = saturate ? 0x47000000u : 0x7F800000u; /* rounded above 32768 */
    if (a >= 0x7F800000u) r = a == 0x7F800000u ? a : hif8_nan_bits();
    /* zero is +0 and NaN the table's NaN, as decoding 0x00 / 0x80 gives them */
    if (r - 1u < 0x7F800000u) r |= u & 0x80000000u;
    float y;
    memcpy(&y, &r, sizeof y);
    return y;
}

void hif8_encode_array(uint8_t *dst, const float *src, size_t n, bool saturate) {
    ptrdiff_t nn = (ptrdiff_t)n;
#pragma omp parallel for schedule(static) if (nn > 65536)
    for (ptrdiff_t i = 0; i < nn; i++) dst[i] = hif8_from_float(src[i], saturate);
}

void hif8_decode_array(float *dst, const uint8_t *src, size_t n) {
    ptrdiff_t nn = (ptrdiff_t)n;
#pragma omp parallel for schedule(static) if (nn > 65536)
    for (ptrdiff_t i = 0; i < nn; i++) dst[i] = hif8_table[src[i]];
}
