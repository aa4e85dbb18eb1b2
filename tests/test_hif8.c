/*
 * test_hif8.c — HiFloat8 codec and fake-quantization helpers on the CPU:
 *   1. every float32 -> HiF8 test vector (docs/hif8.md §3) (both overflow modes) and the decode-only checks;
 *   2. the decode table against an independent field-mask decoder, and value-set counts;
 *   3. all 256 codes (0x80 aside) re-encode to themselves;
 *   4. every float32 bit pattern with |x| in [2^-25, 2^16], both signs and both modes, against a
 *      value-domain reference floor(|x| 2^(w-e) + 1/2) 2^(e-w) computed in double, compared by
 *      value after decoding; a strided sweep of the rest (tiny, subnormal, huge, Inf, NaN);
 *      hif8_round checked bit for bit against decode(encode(x)) everywhere;
 *   5. fq_apply equals the explicit encode/decode chain; fq_absmax; fq_scaler current/delayed
 *      behaviour and state save/restore.
 * Bit-exact code: the tolerance of every comparison is 0 except the stated fq error bound.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "quant/fakequant.h"
#include "quant/hif8.h"

#include "tests/testutil.h"
#define EXPECT TU_EXPECT /* one failure counter for all C tests: tu_nfail */

static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ---- independent references ---- */

/* Decoder from the field-mask layout of docs/hif8.md §1, in double with ldexp. */
static double ref_decode(unsigned b) {
    if (b == 0x80) return NAN;
    double sg = (b & 0x80) ? -1.0 : 1.0;
    if ((b & 0x7F) == 0x6F) return sg * INFINITY;
    int E, w;
    unsigned M;
    if ((b & 0x60) == 0x60) {
        E = 8 + ((b >> 1) & 7), M = b & 1, w = 1;
        if (b & 0x10) E = -E;
    } else if ((b & 0x60) == 0x40) {
        E = 4 + ((b >> 2) & 3), M = b & 3, w = 2;
        if (b & 0x10) E = -E;
    } else if ((b & 0x60) == 0x20) {
        E = 2 + ((b >> 3) & 1), M = b & 7, w = 3;
        if (b & 0x10) E = -E;
    } else if ((b & 0x70) == 0x10) {
        E = (b & 0x08) ? -1 : 1, M = b & 7, w = 3;
    } else if ((b & 0x78) == 0x08) {
        E = 0, M = b & 7, w = 3;
    } else {
        M = b & 7;
        return M == 0 ? 0.0 : sg * ldexp(1.0, (int)M - 23);
    }
    return sg * ldexp(1.0 + (double)M / (double)(1 << w), E);
}

/* Mantissa bits of binade e, written from the region list of docs/hif8.md §2. */
static int ref_width(int e) {
    if (e <= -16) return 0;
    if (e >= -3 && e <= 3) return 3;
    if (e >= -7 && e <= 7) return 2;
    return 1;
}

/* HiF8 value of a finite magnitude a in [2^e, 2^(e+1)), e <= 15, before the overflow rule:
 * floor(a 2^(w-e) + 1/2) 2^(e-w) with sc = 2^(w-e), isc = 2^(e-w) (exact in double; the floor of
 * a positive value below 2^53 is its truncation). */
static inline double ref_round_binade(double a, double sc, double isc) {
    if (a < 0x1p-23) return 0.0;
    double r = (double)(int64_t)(a * sc + 0.5) * isc;
    return r == 0x1p-23 ? 0x1p-22 : r; /* [2^-23, 2^-22) -> 2^-22 */
}

/* overflow rule: anything that rounded above 32768 */
static inline double ref_overflow(double r, int sat) { return r > 32768.0 ? (sat ? 32768.0 : INFINITY) : r; }

/* Reference of any magnitude bits a, before the overflow rule: NaN for NaN, +Inf for Inf and
 * for binades e >= 16 (which overflow in either mode). */
static double ref_round_raw(uint32_t a) {
    double m = (double)u2f(a);
    if (isnan(m)) return NAN;
    if (isinf(m)) return INFINITY;
    if (m < 0x1p-23) return 0.0;
    int ex;
    frexp(m, &ex);
    int e = ex - 1; /* m in [2^e, 2^(e+1)) */
    if (e >= 16) return INFINITY;
    int w = ref_width(e);
    return ref_round_binade(m, ldexp(1.0, w - e), ldexp(1.0, e - w));
}

/* ---- 1. test vectors ---- */

static void test_vectors(void) {
    static const struct {
        uint32_t bits;
        unsigned byte, sat;
        double dec;
    } v[] = {
        {0x00000000, 0x00, 0x00, 0.0},         {0x80000000, 0x00, 0x00, 0.0},
        {0x3F800000, 0x08, 0x08, 1.0},         {0xBF800000, 0x88, 0x88, -1.0},
        {0x3F880000, 0x09, 0x09, 1.125},       {0x3F980000, 0x0A, 0x0A, 1.25},
        {0x3F000000, 0x18, 0x18, 0.5},         {0x40400000, 0x14, 0x14, 3.0},
        {0x3E99999A, 0x32, 0x32, 0.3125},      {0x41700000, 0x2F, 0x2F, 15.0},
        {0x41780000, 0x40, 0x40, 16.0},        {0x41900000, 0x41, 0x41, 20.0},
        {0x3DCCCCCD, 0x52, 0x52, 0.09375},     {0x42C80000, 0x4A, 0x4A, 96.0},
        {0x43700000, 0x60, 0x60, 256.0},       {0xC3E00000, 0xE2, 0xE2, -512.0},
        {0x447A0000, 0x64, 0x64, 1024.0},      {0x3C23D70A, 0x5D, 0x5D, 0.009765625},
        {0x38E40000, 0x7A, 0x7A, 0x1p-13},     {0x47000000, 0x6E, 0x6E, 32768.0},
        {0x471FFF00, 0x6E, 0x6E, 32768.0},     {0x47200000, 0x6F, 0x6E, INFINITY},
        {0x47600000, 0x6F, 0x6E, INFINITY},    {0x38000000, 0x7E, 0x7E, 0x1p-15},
        {0x37E40000, 0x7E, 0x7E, 0x1p-15},     {0x37C00000, 0x7E, 0x7E, 0x1p-15},
        {0x37BFFFFF, 0x07, 0x07, 0x1p-16},     {0x34800000, 0x01, 0x01, 0x1p-22},
        {0x34000000, 0x01, 0x01, 0x1p-22},     {0x33FFFFFF, 0x00, 0x00, 0.0},
        {0x7F800000, 0x6F, 0x6F, INFINITY},    {0xFF800000, 0xEF, 0xEF, -INFINITY},
        {0x7FC00000, 0x80, 0x80, NAN},
    };
    int nv = (int)(sizeof v / sizeof v[0]);
    for (int i = 0; i < nv; i++) {
        float x = u2f(v[i].bits);
        unsigned b = hif8_from_float(x, false), s = hif8_from_float(x, true);
        EXPECT(b == v[i].byte, "vector 0x%08X: encode 0x%02X, want 0x%02X", v[i].bits, b, v[i].byte);
        EXPECT(s == v[i].sat, "vector 0x%08X: encode(sat) 0x%02X, want 0x%02X", v[i].bits, s, v[i].sat);
        double d = hif8_to_float((uint8_t)v[i].byte);
        EXPECT(isnan(v[i].dec) ? isnan(d) : d == v[i].dec, "vector 0x%08X: decode %g, want %g", v[i].bits, d,
               v[i].dec);
        /* the opposite sign as well (the byte gets bit 7, zeros and NaN stay) */
        float xn = u2f(v[i].bits ^ 0x80000000u);
        unsigned want_n = (v[i].byte == 0x00 || v[i].byte == 0x80) ? v[i].byte : (v[i].byte ^ 0x80);
        EXPECT(hif8_from_float(xn, false) == want_n, "vector -0x%08X: encode 0x%02X, want 0x%02X", v[i].bits,
               hif8_from_float(xn, false), want_n);
    }
    static const struct {
        unsigned code;
        double val;
    } d[] = {{0x6F, INFINITY}, {0xEF, -INFINITY}, {0xEE, -32768.0}, {0x01, 0x1p-22}, {0x07, 0x1p-16},
             {0x7F, 1.5 * 0x1p-15}, {0x4F, 224.0}, {0x38, 0.125}, {0x87, -0x1p-16}};
    EXPECT(isnan(hif8_to_float(0x80)), "decode 0x80 is not NaN");
    for (int i = 0; i < (int)(sizeof d / sizeof d[0]); i++)
        EXPECT(hif8_to_float((uint8_t)d[i].code) == d[i].val, "decode 0x%02X = %g, want %g", d[i].code,
               (double)hif8_to_float((uint8_t)d[i].code), d[i].val);
    printf("spec vectors: %d encode x 3 (default, saturate, negated) + %d decode-only: ok\n", nv, 10);
}

/* ---- 2./3. table and round trip ---- */

static void test_codes(void) {
    int pos = 0, neg = 0, zero = 0, inf = 0, nan = 0;
    for (unsigned b = 0; b < 256; b++) {
        double r = ref_decode(b);
        float t = hif8_to_float((uint8_t)b);
        if (isnan(r)) {
            EXPECT(isnan(t), "table[0x%02X] = %g, want NaN", b, (double)t);
            nan++;
            continue;
        }
        EXPECT((double)t == r, "table[0x%02X] = %.9g, want %.9g", b, (double)t, r);
        if (isinf(r)) inf++;
        else if (r > 0) pos++;
        else if (r < 0) neg++;
        else zero++;
        /* round trip: both modes, and hif8_round returns the same value bits */
        for (int sat = 0; sat < 2; sat++) {
            unsigned c = hif8_from_float(t, sat);
            EXPECT(c == b, "code 0x%02X (%g) re-encodes to 0x%02X (sat %d)", b, (double)t, c, sat);
            EXPECT(f2u(hif8_round(t, sat)) == f2u(t), "hif8_round(decode(0x%02X)) changed the value", b);
        }
    }
    /* distinct finite values */
    int distinct = 0;
    for (unsigned a = 0; a < 256; a++) {
        float va = hif8_to_float((uint8_t)a);
        if (!isfinite(va)) continue;
        int dup = 0;
        for (unsigned b = 0; b < a; b++) dup |= hif8_to_float((uint8_t)b) == va;
        distinct += !dup;
    }
    EXPECT(pos == 126 && neg == 126 && zero == 1 && inf == 2 && nan == 1 && distinct == 253,
           "value counts pos %d neg %d zero %d inf %d nan %d distinct %d", pos, neg, zero, inf, nan, distinct);
    float nanv = hif8_to_float(0x80);
    float r = hif8_round(NAN, false);
    EXPECT(f2u(r) == f2u(nanv), "hif8_round(NaN) bits 0x%08X, table NaN 0x%08X", f2u(r), f2u(nanv));
    printf("codes: 256 decoded against the field-mask reference, 255 round trips x 2 modes; "
           "%d positive, %d negative, 1 zero, 2 inf, 1 NaN, %d distinct finite\n",
           pos, neg, distinct);
}

/* ---- 4. exhaustive and strided sweeps ---- */

/* Check magnitude bits a (both signs, both modes) against r0 = the reference before the
 * overflow rule (NaN for NaN); returns the number of failures. */
static int check_magnitude(uint32_t a, double r0, uint32_t *bad_bits) {
    int fails = 0;
    for (int sat = 0; sat < 2; sat++) {
        /* Inf stays Inf in both modes; everything else that rounded above 32768 overflows */
        double r = (isnan(r0) || a == 0x7F800000u) ? r0 : ref_overflow(r0, sat);
        for (uint32_t sg = 0; sg < 2; sg++) {
            uint32_t bits = a | sg << 31;
            float x = u2f(bits);
            uint8_t c = hif8_from_float(x, sat);
            float v = hif8_to_float(c);
            float fr = hif8_round(x, sat);
            int ok;
            if (isnan(r)) ok = c == 0x80 && isnan(fr);
            else {
                double want = sg ? -r : r;
                ok = (double)v == want && c != 0x80 && f2u(fr) == f2u(v);
                if (r == 0.0) ok = ok && c == 0x00;
            }
            if (!ok) {
                fails++;
                *bad_bits = bits;
            }
        }
    }
    return fails;
}

static void test_sweeps(void) {
    const uint32_t lo = 0x33000000u; /* 2^-25 */
    const uint32_t hi = 0x47800000u; /* 2^16 */
    double t0 = osp_now();
    long long fails = 0;
    uint32_t bad = 0;
    /* per binade (biased exponent 102 .. 142, then 2^16 itself): the grid constants are fixed,
     * the 2^23 mantissas are split into 64 pieces for the threads */
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : fails)
    for (int job = 0; job < 41 * 64; job++) {
        uint32_t be = (uint32_t)(102 + job / 64), piece = (uint32_t)(job % 64);
        int e = (int)be - 127, w = ref_width(e);
        double sc = ldexp(1.0, w - e), isc = ldexp(1.0, e - w);
        uint32_t mybad = 0;
        long long f = 0;
        for (uint32_t mant = piece << 17; mant < (piece + 1) << 17; mant++) {
            uint32_t a = be << 23 | mant;
            f += check_magnitude(a, ref_round_binade((double)u2f(a), sc, isc), &mybad);
        }
        if (f) {
#pragma omp critical
            bad = mybad;
        }
        fails += f;
    }
    fails += check_magnitude(hi, ref_round_raw(hi), &bad);
    uint64_t nex = ((uint64_t)hi - lo + 1) * 4;
    EXPECT(fails == 0, "exhaustive sweep: %lld mismatches (e.g. bits 0x%08X)", fails, bad);
    double t1 = osp_now();
    printf("exhaustive |x| in [2^-25, 2^16]: %llu float32 values x 2 modes = %llu checks, %lld mismatches (%.1f s)\n",
           (unsigned long long)(nex / 2), (unsigned long long)nex, fails, t1 - t0);

    /* The rest of the magnitudes: [0, 2^-25) and (2^16, NaN max], strided, plus every binade's
     * first and last three patterns (the edges where rounding rules change). */
    long long nchk = 0, f2 = 0;
    const uint32_t stride = 97;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : nchk, f2)
    for (int chunk = 0; chunk < 256; chunk++) {
        uint32_t mybad = 0;
        for (uint64_t a = (uint64_t)chunk * stride; a <= 0x7FFFFFFFu; a += 256ull * stride) {
            if (a >= lo && a <= hi) continue;
            f2 += check_magnitude((uint32_t)a, ref_round_raw((uint32_t)a), &mybad);
            nchk++;
        }
        uint32_t ex = (uint32_t)chunk; /* 256 chunks = the 256 biased exponents */
        for (uint32_t k = 0; k < 3; k++) {
            uint32_t first = ex << 23 | k, last = ex << 23 | (0x7FFFFFu - k);
            f2 += check_magnitude(first, ref_round_raw(first), &mybad) + check_magnitude(last, ref_round_raw(last), &mybad);
            nchk += 2;
        }
        if (mybad) {
#pragma omp critical
            bad = mybad;
        }
    }
    EXPECT(f2 == 0, "outer sweep: %lld mismatches (e.g. bits 0x%08X)", f2, bad);
    printf("outer sweep (tiny, subnormal, > 2^16, Inf, NaN; stride %u + binade edges): %lld magnitudes x 2 signs x 2 "
           "modes, %lld mismatches\n",
           stride, nchk, f2);
}

/* ---- 5. fake quantization ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void) {
    uint64_t x = rng_state;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return rng_state = x;
}
static double rng_unit(void) { return (double)(rng_next() >> 11) * 0x1p-53; }

/* log-uniform magnitudes over [2^lo, 2^hi) with random signs */
static void fill_random(float *x, size_t n, int lo, int hi) {
    for (size_t i = 0; i < n; i++) {
        double m = exp2(lo + (hi - lo) * rng_unit());
        x[i] = (float)((rng_next() & 1) ? -m : m);
    }
}

static int same_bits_or_nan(float a, float b) { return f2u(a) == f2u(b) || (isnan(a) && isnan(b)); }

static void test_fakequant(void) {
    const size_t n = 300007; /* odd, above the OpenMP threshold */
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *z = malloc(n * sizeof *z);
    fill_random(x, n, -30, 20);
    x[0] = NAN, x[1] = INFINITY, x[2] = -INFINITY, x[3] = 0.0f, x[4] = -0.0f, x[5] = 1e-40f, x[6] = 3e38f;
    const float amax = fq_absmax(x + 7, n - 7);
    const float scales[] = {15.0f / amax, 224.0f / amax, 32768.0f / amax, 1.0f, 3.0f, 0.37f, 1e-3f, 7e4f, 1e30f};
    long long checked = 0, bad = 0;
    for (int si = 0; si < (int)(sizeof scales / sizeof scales[0]); si++) {
        for (int sat = 0; sat < 2; sat++) {
            float s = scales[si];
            fq_apply(y, x, n, s, sat);
            for (size_t i = 0; i < n; i++) {
                float t = x[i] * s;
                uint8_t c = hif8_from_float(t, sat);
                float want = hif8_to_float(c) / s;
                bad += !same_bits_or_nan(y[i], want);
                checked++;
            }
            memcpy(z, x, n * sizeof *z);
            fq_apply(z, z, n, s, sat); /* in place */
            bad += memcmp(z, y, n * sizeof *z) != 0;
        }
    }
    EXPECT(bad == 0, "fq_apply differs from explicit encode/decode in %lld of %lld", bad, checked);
    printf("fq_apply: %lld elements (9 scales x 2 modes) equal to explicit encode/decode, in-place equal\n",
           checked);

    /* accuracy sanity on well-scaled data: target 15 keeps >= 1 mantissa bit down to amax/2^15, so
     * for values within [amax/16, amax] the relative error is <= 2^-4 (3-bit binades) */
    const size_t m = 100000;
    float *a = malloc(m * sizeof *a), *b = malloc(m * sizeof *b);
    fill_random(a, m, -4, 0);
    float s = 15.0f / fq_absmax(a, m);
    fq_apply(b, a, m, s, false);
    double num = 0, den = 0, worst = 0;
    for (size_t i = 0; i < m; i++) {
        double d = (double)b[i] - a[i];
        num += d * d, den += (double)a[i] * a[i];
        double rel = fabs(d) / fabs(a[i]);
        worst = rel > worst ? rel : worst;
    }
    double relnorm = sqrt(num / den);
    EXPECT(worst <= 0.0625 && relnorm > 1e-3 && relnorm < 0.0625, "fq accuracy: ||fq(x)-x||/||x|| %.4g, worst %.4g",
           relnorm, worst);
    printf("fq accuracy (target 15, |x| in [amax/16, amax]): ||fq(x)-x||/||x|| = %.4f (tolerance 0.0625), worst "
           "element %.4f\n",
           relnorm, worst);

    /* absmax: bit max over |x| equals a naive fabsf max; NaN wins; n = 0 gives 0 */
    float naive = 0;
    for (size_t i = 7; i < n; i++) naive = fabsf(x[i]) > naive ? fabsf(x[i]) : naive;
    EXPECT(f2u(amax) == f2u(naive), "fq_absmax %g, naive %g", (double)amax, (double)naive);
    EXPECT(isnan(fq_absmax(x, n)), "fq_absmax with a NaN is not NaN");
    EXPECT(fq_absmax(x + 1, n - 1) == INFINITY, "fq_absmax with -Inf/Inf is not Inf");
    EXPECT(fq_absmax(x, 0) == 0.0f, "fq_absmax of nothing is not 0");
    free(x), free(y), free(z), free(a), free(b);
}

static void test_scaler(void) {
    fq_scaler c;
    fq_scaler_init(&c, 15.0f, false, 0, false);
    EXPECT(fq_scaler_scale(&c, 3.0f) == 15.0f / 3.0f, "current scale");
    EXPECT(fq_scaler_scale(&c, 0.0f) == 15.0f / 1e-8f, "current scale floor");
    EXPECT(isnan(fq_scaler_scale(&c, NAN)), "current scale with NaN amax");
    EXPECT(fq_scaler_state_size(&c) == 3, "state size of current scaler");
    fq_scaler_free(&c);

    /* delayed, window 3: the scale uses the previous amaxes, the first step its own */
    const float T = 224.0f;
    float am[8];
    for (int i = 0; i < 8; i++) am[i] = (float)(0.5 + 4.0 * rng_unit());
    fq_scaler d;
    fq_scaler_init(&d, T, true, 3, true);
    for (int t = 0; t < 8; t++) {
        float H;
        if (t == 0) H = am[0];
        else {
            H = 0;
            for (int k = t - 3 < 0 ? 0 : t - 3; k < t; k++) H = am[k] > H ? am[k] : H;
        }
        float s = fq_scaler_scale(&d, am[t]);
        EXPECT(s == T / H, "delayed step %d: scale %g, want %g", t, (double)s, (double)(T / H));
    }
    /* save after 8 steps, restore into a fresh scaler: both continue identically */
    size_t ns = fq_scaler_state_size(&d);
    float *st = malloc(ns * sizeof *st);
    fq_scaler_state_get(&d, st);
    fq_scaler e;
    fq_scaler_init(&e, T, true, 3, true);
    fq_scaler_state_set(&e, st);
    for (int t = 0; t < 5; t++) {
        float v = (float)(0.5 + 4.0 * rng_unit());
        EXPECT(fq_scaler_scale(&d, v) == fq_scaler_scale(&e, v), "restored scaler diverges at step %d", t);
    }
    /* restore into other window lengths: keeps the most recent entries */
    fq_scaler_state_get(&d, st);
    float last3[3];
    for (int k = 0; k < 3; k++) last3[k] = st[3 + (((int)st[2]) + k) % 3]; /* oldest first */
    fq_scaler g2, g5;
    fq_scaler_init(&g2, T, true, 2, false);
    fq_scaler_init(&g5, T, true, 5, false);
    fq_scaler_state_set(&g2, st);
    fq_scaler_state_set(&g5, st);
    float m2 = last3[1] > last3[2] ? last3[1] : last3[2];
    float m3 = last3[0] > m2 ? last3[0] : m2;
    EXPECT(g2.count == 2 && fq_scaler_scale(&g2, 100.0f) == T / m2, "restore into window 2");
    EXPECT(g5.count == 3 && fq_scaler_scale(&g5, 100.0f) == T / m3, "restore into window 5");
    EXPECT(g5.count == 4 && fq_scaler_scale(&g5, 1.0f) == T / 100.0f, "window 5 after restore");
    fq_scaler_free(&d), fq_scaler_free(&e), fq_scaler_free(&g2), fq_scaler_free(&g5);
    free(st);
    printf("fq_scaler: current (incl. floor, NaN), delayed window 3 over 8 steps, save/restore (same, 2, 5): ok\n");
}

int main(void) {
    test_vectors();
    test_codes();
    test_fakequant();
    test_scaler();
    test_sweeps();
    if (tu_nfail) {
        fprintf(stderr, "test_hif8: %d failures\n", tu_nfail);
        return 1;
    }
    printf("test_hif8: all passed\n");
    return 0;
}
