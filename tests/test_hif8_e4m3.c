/*
 * test_hif8_e4m3.c — the observation behind running HiF8 GEMMs on FP8 tensor cores, made
 * executable (quant/e4m3.h):
 *   1. the E4M3 codec: all 256 codes decode to the OCP e4m3fn values (an independent field
 *      decoder), re-encode to themselves, and float32 inputs round to nearest-even against a
 *      brute-force search over the 254 finite values (fresh random inputs across the whole range,
 *      ties, overflow in both modes);
 *   2. every HiF8 code, scaled by the power of two osp uses (x16 for forward operands whose amax
 *      is scaled to 15, x2 for output gradients scaled to 224), is an exact E4M3 value down to the
 *      floor the walk finds, and that floor is the one derived by hand (2^-12 forward, 2^-9
 *      gradients, i.e. about 1.6e-5 and 8.7e-6 of the scaled amax); below it, the first inexact
 *      values are named and their E4M3 rounding error is bounded by half an E4M3 subnormal step;
 *   3. scaling further (x32 forward) breaks the range: 15 * 32 = 480 > 448 is detected.
 * Exact arithmetic throughout: every comparison has tolerance 0 except the stated tail bound.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "quant/e4m3.h"
#include "quant/hif8.h"

#include "tests/testutil.h"

/* OCP e4m3fn from its field definition, in double */
static double ref_e4m3(unsigned b) {
    unsigned s = b >> 7, E = (b >> 3) & 15, M = b & 7;
    if (E == 15 && M == 7) return NAN;
    double v = E ? (1.0 + M / 8.0) * pow(2.0, (double)E - 7.0) : M / 8.0 * pow(2.0, -6.0);
    return s ? -v : v;
}

/* nearest finite E4M3 value to x (ties to the even code = the one with an even mantissa), or
 * +-inf when |x| rounds past 448 */
static double ref_round(double x) {
    double best = 0.0, bd = INFINITY;
    int bcode = 0;
    for (unsigned c = 0; c < 256; c++) {
        double v = ref_e4m3(c);
        if (isnan(v)) continue;
        double d = fabs(v - x);
        if (d < bd || (d == bd && (c & 1) == 0 && (bcode & 1) == 1)) {
            bd = d;
            best = v;
            bcode = (int)c;
        }
    }
    /* beyond 448 + half a step (464) the OCP rule gives NaN (no saturation) */
    if (fabs(x) >= 464.0) return copysign(INFINITY, x);
    return best == 0.0 ? copysign(0.0, x) : best;
}

int main(void) {
    /* 1. codec */
    int bad = 0;
    for (unsigned c = 0; c < 256; c++) {
        double r = ref_e4m3(c);
        float v = e4m3_to_float((uint8_t)c);
        if (isnan(r)) {
            bad += !isnan(v);
            continue;
        }
        bad += (double)v != r;
        bad += e4m3_from_float(v, false) != c && !(v == 0.0f && (c & 0x7f) == 0 && e4m3_from_float(v, false) == c);
    }
    TU_EXPECT(bad == 0, "E4M3 decode/re-encode of all 256 codes: %d mismatches", bad);
    TU_EXPECT(e4m3_to_float(0x7E) == 448.0f && e4m3_to_float(0x01) == 0x1p-9f && e4m3_to_float(0x08) == 0x1p-6f,
              "E4M3 extremes 448, 2^-9, 2^-6");
    TU_EXPECT(e4m3_from_float(464.0f, false) == 0x7E && e4m3_from_float(465.0f, false) == E4M3_NAN &&
                  e4m3_from_float(1e6f, true) == 0x7E && e4m3_from_float(-1e6f, true) == 0xFE &&
                  e4m3_from_float(INFINITY, false) == E4M3_NAN,
              "E4M3 overflow: 464 ties down to 448, 465 -> NaN, saturation to +-448");
    TU_EXPECT(e4m3_from_float(0x1p-10f, false) == 0x00 && e4m3_from_float(0x1.8p-10f, false) == 0x01 &&
                  e4m3_from_float(0x1.8p-9f, false) == 0x02,
              "E4M3 subnormal ties to even (2^-10 -> 0, 1.5*2^-10 -> 2^-9, 1.5*2^-9 -> 2*2^-9)");
    tu_rng rng = {0x51ed2701u ^ (uint64_t)time(NULL)};
    int nmis = 0;
    const int NR = 200000;
    for (int i = 0; i < NR; i++) {
        /* log-uniform magnitudes over [2^-12, 2^10], random sign; every 8th input an exact tie */
        double mag = ldexp(1.0, -12) * pow(2.0, 22.0 * tu_uniform(&rng));
        if (i % 8 == 0) {
            unsigned c = (unsigned)tu_randint(&rng, 125); /* a midpoint of neighbouring codes */
            mag = 0.5 * (ref_e4m3(c) + ref_e4m3(c + 1));
        }
        float x = (float)(tu_uniform(&rng) < 0.5 ? -mag : mag);
        double want = ref_round((double)x);
        float got = e4m3_round(x, false);
        if (isinf(want) ? !isnan(got) : (double)got != want) nmis++;
    }
    TU_EXPECT(nmis == 0, "E4M3 rounding of %d random float32 (ties included) vs brute force: %d mismatches", NR, nmis);

    /* 2. HiF8 -> E4M3 exactness */
    float inexact_f = 0.0f, inexact_g = 0.0f;
    float floor_f = e4m3_hif8_exact_floor(15.0f, E4M3_HIF8_FWD_SHIFT, &inexact_f);
    float floor_g = e4m3_hif8_exact_floor(224.0f, E4M3_HIF8_GRAD_SHIFT, &inexact_g);
    printf("forward  (amax 15, x16):  exact for |v| >= %g (%.3g of amax); largest inexact HiF8 value %g\n", floor_f,
           floor_f / 15.0, inexact_f);
    printf("gradient (amax 224, x2):  exact for |v| >= %g (%.3g of amax); largest inexact HiF8 value %g\n", floor_g,
           floor_g / 224.0, inexact_g);
    TU_EXPECT(floor_f == 0x1p-12f, "forward floor is 2^-12 (derived: 1-bit-mantissa binades 2^-13.. need 2^-9 after x16)");
    TU_EXPECT(inexact_f == 0x1.8p-13f, "largest inexact forward value is 1.5*2^-13");
    TU_EXPECT(floor_g == 0x1p-9f, "gradient floor is 2^-9");
    TU_EXPECT(inexact_g == 0x1.8p-10f, "largest inexact gradient value is 1.5*2^-10");
    /* the tail: every HiF8 value below the floor, scaled, is off by at most half a subnormal step */
    double worst = 0.0;
    int ntail = 0;
    for (int c = 1; c < 128; c++) {
        float v = hif8_to_float((uint8_t)c);
        if (!(v > 0.0f) || v >= floor_f) continue;
        float y = v * E4M3_HIF8_FWD_SHIFT;
        double err = fabs((double)e4m3_round(y, false) - (double)y);
        if (err > worst) worst = err;
        ntail++;
    }
    printf("forward tail: %d positive HiF8 values below the floor, worst E4M3 error %g (bound 2^-10)\n", ntail, worst);
    TU_EXPECT(ntail > 0 && worst <= 0x1p-10, "tail error within half an E4M3 subnormal step");
    /* every value in range, with its sign, is exact */
    int nexact = 0, nin = 0;
    for (unsigned c = 0; c < 256; c++) {
        float v = hif8_to_float((uint8_t)c);
        if (isnan(v) || isinf(v) || fabsf(v) > 224.0f || fabsf(v) < floor_g) continue;
        nin++;
        nexact += e4m3_round(v * 2.0f, false) == v * 2.0f;
    }
    TU_EXPECT(nin > 100 && nexact == nin, "gradient range: %d of %d signed HiF8 values exact", nexact, nin);

    /* 3. a shift that overflows E4M3 is detected */
    TU_EXPECT(e4m3_hif8_exact_floor(15.0f, 32.0f, NULL) < 0.0f, "x32 forward shift overflows (480 > 448)");
    return tu_summary("test_hif8_e4m3");
}
