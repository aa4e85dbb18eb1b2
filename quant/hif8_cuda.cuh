/*
 * hif8_cuda.cuh — HiFloat8 codec as CUDA device functions, the twins of quant/hif8.c: the same
 * bit-form encoder (integer operations on the float32 bits) and a computed decoder (no table,
 * so a warp decoding 32 different codes does not serialize on constant memory). Bit-identical
 * to the CPU; tests/test_hif8_gpu.c checks that.
 *
 * The arithmetic of fake quantization goes through explicit PTX mul.rn.f32 / div.rn.f32 (no
 * .ftz): the project compiles CUDA with --use_fast_math, which would otherwise flush subnormals
 * and turn x / s into an approximate reciprocal product, breaking parity with the CPU.
 */
#ifndef OSP_HIF8_CUDA_CUH
#define OSP_HIF8_CUDA_CUH

#include <stdint.h>

/* Mantissa width of binade e: 3 for |e| <= 3, 2 for |e| <= 7, 1 for |e| <= 15, 0 below. */
__device__ __forceinline__ int hif8_width_dev(int e) {
    int ae = e < 0 ? -e : e;
    return ae <= 3 ? 3 : ae <= 7 ? 2 : ae <= 15 ? 1 : 0;
}

/* Rounded magnitude: kind 0 finite (e, w, q), 1 zero, 2 overflow, 3 inf, 4 nan. Same steps as
 * hif8_split in hif8.c (round half away on the input's binade, carry, [2^-23,2^-22) -> 2^-22,
 * >= 40960 -> overflow). */
__device__ __forceinline__ int hif8_split_dev(uint32_t a, int *e_out, int *w_out, uint32_t *q_out) {
    if (a > 0x7F800000u) return 4;
    if (a == 0x7F800000u) return 3;
    if (a < 0x34000000u) return 1;
    int e = (int)(a >> 23) - 127;
    if (e >= 16) return 2;
    int w = hif8_width_dev(e);
    uint32_t m24 = (a & 0x7FFFFFu) | 0x800000u;
    uint32_t q = (m24 + (1u << (22 - w))) >> (23 - w);
    if (q == (2u << w)) {
        e += 1;
        w = hif8_width_dev(e);
        q = 1u << w;
    }
    if (e == -23) { e = -22; q = 1; w = 0; }
    if (e >= 16 || (e == 15 && q == 3u)) return 2;
    *e_out = e;
    *w_out = w;
    *q_out = q;
    return 0;
}

__device__ __forceinline__ uint8_t hif8_from_float_dev(float x, bool saturate) {
    uint32_t u = __float_as_uint(x);
    uint32_t sign = (u >> 24) & 0x80u;
    int e = 0, w = 0;
    uint32_t q = 0;
    int kind = hif8_split_dev(u & 0x7FFFFFFFu, &e, &w, &q);
    if (kind == 4) return 0x80;
    if (kind == 3) return (uint8_t)(sign | 0x6Fu);
    if (kind == 1) return 0x00;
    if (kind == 2) return (uint8_t)(sign | (saturate ? 0x6Eu : 0x6Fu));
    uint32_t f = q - (1u << w);
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

/* Field-mask decoder (Dot prefix -> exponent width, sign-magnitude exponent, mantissa). */
__device__ __forceinline__ float hif8_to_float_dev(uint8_t code) {
    uint32_t c = code;
    uint32_t sign = (c & 0x80u) << 24;
    uint32_t m = c & 0x7Fu;
    if (c == 0x80u) return __uint_as_float(0x7FC00000u);
    if (m == 0x6Fu) return __uint_as_float(sign | 0x7F800000u);
    int e, w;
    uint32_t f;
    if (m & 0x60u) { /* D = 2, 3, 4 */
        int ew = (int)(m >> 5) + 1;
        w = 5 - ew;
        int ae = (1 << (ew - 1)) + (int)((m & 0x0Fu) >> w);
        e = (m & 0x10u) ? -ae : ae;
        f = m & ((1u << w) - 1u);
    } else if (m & 0x10u) { /* D = 1 */
        e = (m & 0x08u) ? -1 : 1;
        w = 3;
        f = m & 7u;
    } else if (m & 0x08u) { /* D = 0 */
        e = 0;
        w = 3;
        f = m & 7u;
    } else { /* denormal: 2^(M-23), M = 0 is zero */
        if (m == 0) return 0.0f;
        e = (int)m - 23;
        w = 0;
        f = 0;
    }
    return __uint_as_float(sign | (uint32_t)(e + 127) << 23 | f << (23 - w));
}

/* Magnitude bits a = bits(|x|) rounded onto the HiF8 grid, as float32 bits (NaN -> 0x7FC00000).
 * Same result as the encoder, in fewer operations: adding half a grid step to the bits and
 * clearing the bits below the grid rounds half away from zero, and a carry out of the mantissa
 * bumps the exponent field, giving the exact power of two (E6) for free. The few rules left are
 * fix-ups: [2^-23, 2^-22) -> 2^-22, below 2^-23 -> 0, above 32768 -> overflow, Inf / NaN. */
__device__ __forceinline__ uint32_t hif8_round_bits_dev(uint32_t a, bool saturate) {
    int ae = abs((int)(a >> 23) - 127);
    int sh = 20 + (ae > 3) + (ae > 7) + (ae > 15); /* 23 - mantissa width */
    uint32_t r = (a + (1u << (sh - 1))) & (0xFFFFFFFFu << sh);
    if (r == 0x34000000u) r = 0x34800000u;
    if (a < 0x34000000u) r = 0;
    if (r > 0x47000000u) r = saturate ? 0x47000000u : 0x7F800000u;
    if (a >= 0x7F800000u) r = a == 0x7F800000u ? a : 0x7FC00000u;
    return r;
}

/* hif8_to_float_dev(hif8_from_float_dev(x, saturate)) without the byte. */
__device__ __forceinline__ float hif8_round_dev(float x, bool saturate) {
    uint32_t u = __float_as_uint(x);
    uint32_t r = hif8_round_bits_dev(u & 0x7FFFFFFFu, saturate);
    /* zero is +0 and NaN the positive canonical NaN, as the decoder gives them */
    uint32_t sign = (r - 1u < 0x7F800000u) ? (u & 0x80000000u) : 0u;
    return __uint_as_float(r | sign);
}

/* IEEE fp32 multiply / divide, round to nearest, subnormals kept, whatever the fast-math flags. */
__device__ __forceinline__ float hif8_mul_rn(float a, float b) {
    float r;
    asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}
__device__ __forceinline__ float hif8_div_rn(float a, float b) {
    float r;
    asm("div.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}

/* The current-scaling rule of fq_scaler_scale (quant/fakequant.c) on the device:
 * s = target / max(amax, FQ_AMAX_FLOOR) in IEEE fp32, bit for bit, so a scale computed next to
 * the GEMM that uses it (no host round trip) is the one the host would compute. The max is taken
 * on the bits (a non-negative float orders like its bits; a negative amax, which fq_absmax never
 * gives, counts as below the floor) because --use_fast_math flushes subnormals in float
 * compares. A NaN amax gives the CPU's NaN, 0x7FC00000 (target / NAN there), not the device's
 * canonical 0x7FFFFFFF. An Inf amax gives 0, and fq(x; 0) = x * 0 / 0 = NaN, as on the CPU. */
__device__ __forceinline__ float hif8_scale_current_dev(float amax, float target) {
    const uint32_t floor_bits = 0x322BCC77u; /* FQ_AMAX_FLOOR = 1e-8f */
    uint32_t u = __float_as_uint(amax);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return __uint_as_float(0x7FC00000u);
    uint32_t a = (u >> 31) || u < floor_bits ? floor_bits : u;
    return hif8_div_rn(target, __uint_as_float(a));
}

/* One element of fake quantization: (hif8_round(x * s)) / s, as fq_apply on the CPU. With the
 * bit-mask rounding above this runs at memory bandwidth on an H200 (about 3.9 TB/s read+write,
 * same as a copy); a division-free variant with a per-block table of RN(m / s) was slower. */
__device__ __forceinline__ float hif8_fq_dev(float x, float s, bool saturate) {
    return hif8_div_rn(hif8_round_dev(hif8_mul_rn(x, s), saturate), s);
}

#endif
