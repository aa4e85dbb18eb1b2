/*
 * core/rng.h — osp's one random number generator: splitmix64 (a 64-bit counter stepped by
 * the golden ratio and passed through a bijective mixer), the 53-bit uniform draw and the
 * Box-Muller normal. Every random value osp makes (weight init, data order, training noise,
 * the shapes world, bench and test inputs) comes from these few lines, so a draw is the
 * same on every machine and libc and a change here shows up everywhere at once.
 *
 * Two ways to use it: a stream (osp_rng_next advances a state by the golden ratio and mixes)
 * or counter-based (osp_splitmix64(x) is the value a stream at state x draws next, so the
 * i-th draw of a keyed stream is osp_splitmix64(key + i) with no state to carry).
 */
#ifndef OSP_RNG_H
#define OSP_RNG_H

#include <math.h>
#include <stdint.h>

/* 2^64 / golden ratio: the splitmix64 step */
#define OSP_RNG_GOLDEN 0x9E3779B97F4A7C15ull

/* The splitmix64 output mixer (a bijection of 64 bits). */
static inline uint64_t osp_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Counter-based splitmix64: the draw of a stream whose state is x. */
static inline uint64_t osp_splitmix64(uint64_t x) { return osp_mix64(x + OSP_RNG_GOLDEN); }

/* Stream splitmix64: advance *s and draw. */
static inline uint64_t osp_rng_next(uint64_t *s) { return osp_mix64(*s += OSP_RNG_GOLDEN); }

/* Uniform in [0, 1) from the top 53 bits of r. */
static inline double osp_u01(uint64_t r) { return (double)(r >> 11) * (1.0 / 9007199254740992.0); }

/* Box-Muller (cosine branch) of u1 in (0, 1] and u2 in [0, 1). */
static inline double osp_box_muller(double u1, double u2) {
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Uniform in [0, 1) from a stream. */
static inline double osp_rng_uniform(uint64_t *s) { return osp_u01(osp_rng_next(s)); }

/* Standard normal from a stream: two uniforms, the first kept off 0 so the log is finite. */
static inline double osp_rng_normal(uint64_t *s) {
    double u = osp_rng_uniform(s), v = osp_rng_uniform(s);
    if (u < 1e-300) u = 1e-300;
    return osp_box_muller(u, v);
}

#endif
