/*
 * e4m3.h — the OCP FP8 E4M3 ("e4m3fn") format that Hopper's FP8 tensor cores multiply, and the
 * exact bridge from HiF8 to it.
 *
 * E4M3 byte = S | E(4) | M(3), bias 7, no infinities: normals (1 + M/8) 2^(E-7) for E = 1..15
 * (E = 15, M = 7 is NaN, so the largest finite value is 448 = 1.75 * 2^8), subnormals M 2^-9 for
 * E = 0 (smallest 2^-9, largest normal-adjacent 7 * 2^-9). Encoding rounds to nearest, ties to
 * even; a result above 448 is NaN, or 448 with `saturate` (the two modes of cvt.rn.satfinite and
 * of __nv_cvt_float_to_fp8's __NV_SATFINITE / __NV_NOSAT).
 *
 * Why this matters for osp: every normal HiF8 value has at most 3 mantissa bits, so after osp's
 * per-tensor scaling (forward operands: amax -> 15, output gradients: amax -> 224) a HiF8 value
 * times E4M3_HIF8_FWD_SHIFT (16) or E4M3_HIF8_GRAD_SHIFT (2) is an exact E4M3 value for every
 * magnitude down to a threshold (e4m3_hif8_exact_floor); only the tail below is rounded by the
 * E4M3 cast. tests/test_hif8_e4m3.c proves the claim by walking every HiF8 code. A HiF8
 * fake-quantised GEMM can therefore run as a real E4M3 x E4M3 GEMM with the power of two folded
 * into the GEMM's descale factors.
 */
#ifndef OSP_E4M3_H
#define OSP_E4M3_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define E4M3_MAX 448.0f
#define E4M3_NAN 0x7Fu
#define E4M3_MIN_NORMAL 0x1p-6f
#define E4M3_MIN_SUBNORMAL 0x1p-9f

/* The powers of two that map osp's scaled HiF8 ranges into E4M3 (15 * 16 = 240 <= 448 and
 * 224 * 2 = 448). */
#define E4M3_HIF8_FWD_SHIFT 16.0f
#define E4M3_HIF8_GRAD_SHIFT 2.0f

/* float32 -> E4M3 byte (round to nearest even; NaN -> 0x7F / 0xFF; beyond 448: NaN, or +-448
 * when saturate). */
uint8_t e4m3_from_float(float x, bool saturate);

/* E4M3 byte -> float32 (exact). */
float e4m3_to_float(uint8_t code);

/* e4m3_to_float(e4m3_from_float(x, saturate)). */
float e4m3_round(float x, bool saturate);

/* The smallest magnitude m such that every finite HiF8 value v with m <= |v| <= vmax satisfies
 * e4m3_round(v * shift) == v * shift exactly (found by walking the 256 HiF8 codes); returns -1
 * if some HiF8 value in range is not exact at every magnitude (e.g. vmax * shift > 448).
 * *first_inexact (if not NULL) receives the largest HiF8 magnitude below m that is not exact. */
float e4m3_hif8_exact_floor(float vmax, float shift, float *first_inexact);

#ifdef __cplusplus
}
#endif

#endif
