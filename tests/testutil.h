/*
 * testutil.h — small header-only helpers shared by the C tests: a seeded RNG, relative
 * errors ||a-b||/||b|| in double, a pass/fail counter that prints one line per check
 * (so test logs carry the measured numbers), a central finite-difference gradient driver,
 * and a naive float64 attention reference (forward and backward) that both the op tests
 * and the Skiparse layout tests compare against.
 *
 * Everything is static inline: include it from any tests/test_*.c without linking.
 */
#ifndef OSP_TESTUTIL_H
#define OSP_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

/* ------------------------------------------------------------------ checks */

static int tu_nfail = 0, tu_npass = 0;

/* Record one check: err must be <= tol (NaN fails). Prints a line either way. */
static inline int tu_check(const char *name, double err, double tol) {
    int ok = err <= tol; /* false for NaN */
    if (ok)
        tu_npass++;
    else
        tu_nfail++;
    printf("%-4s %-58s err=%.3e tol=%.1e\n", ok ? "ok" : "FAIL", name, err, tol);
    fflush(stdout);
    return ok;
}

/* Boolean expectation with a printf-style message on failure. */
#define TU_EXPECT(cond, ...)                                                 \
    do {                                                                     \
        if (cond) {                                                          \
            tu_npass++;                                                      \
        } else {                                                             \
            tu_nfail++;                                                      \
            if (tu_nfail < 50) {                                             \
                fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
                fprintf(stderr, __VA_ARGS__);                                \
                fprintf(stderr, "\n");                                       \
            }                                                                \
        }                                                                    \
    } while (0)

/* Final summary line; returns the process exit code. */
static inline int tu_summary(const char *test) {
    printf("%s: %d checks passed, %d failed\n", test, tu_npass, tu_nfail);
    return tu_nfail ? 1 : 0;
}

/* ------------------------------------------------------------------ RNG */

/* a seeded splitmix64 stream (core/rng.h) */
typedef struct {
    uint64_t s;
} tu_rng;

static inline uint64_t tu_next(tu_rng *r) { return osp_rng_next(&r->s); }
/* uniform in [0, 1) with 53 bits */
static inline double tu_uniform(tu_rng *r) { return osp_rng_uniform(&r->s); }
static inline int64_t tu_randint(tu_rng *r, int64_t n) { return (int64_t)(tu_uniform(r) * (double)n); }
static inline double tu_normal(tu_rng *r) { return osp_rng_normal(&r->s); }
static inline void tu_fill_normal(tu_rng *r, float *x, int64_t n, double scale) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(scale * tu_normal(r));
}
static inline void tu_fill_uniform(tu_rng *r, float *x, int64_t n, double lo, double hi) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * tu_uniform(r));
}
/* malloc'd float array of n N(0, scale^2) values */
static inline float *tu_randn(tu_rng *r, int64_t n, double scale) {
    float *x = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!x) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    tu_fill_normal(r, x, n, scale);
    return x;
}
static inline void *tu_calloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}
static inline float *tu_dup(const float *x, int64_t n) {
    float *y = tu_calloc((size_t)n, sizeof(float));
    memcpy(y, x, sizeof(float) * (size_t)n);
    return y;
}

/* ------------------------------------------------------------------ norms, errors */

static inline double tu_dot_ff(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}
static inline double tu_norm_f(const float *a, int64_t n) { return sqrt(tu_dot_ff(a, a, n)); }

/* ||a-b|| / ||b||; when b == 0 returns ||a|| (so an all-zero reference demands zeros) */
static inline double tu_rel_err_fd(const float *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = (double)a[i] - b[i];
        num += e * e;
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static inline double tu_rel_err_ff(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = (double)a[i] - b[i];
        num += e * e;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
/* number of positions where the float bit patterns differ */
static inline int64_t tu_bitdiff(const float *a, const float *b, int64_t n) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++) c += memcmp(a + i, b + i, sizeof(float)) != 0;
    return c;
}

/* ------------------------------------------------------------------ finite differences */

/* A scalar loss of the current contents of some float buffer (the driver perturbs that
 * buffer in place). Tests use L = <c, f(x)> in double with a fixed random cotangent c,
 * so dL/dx is exactly what a backward op returns for dy = c. */
typedef double (*tu_loss_fn)(void *ctx);

/*
 * Check an analytic gradient g of L w.r.t. x[n] by central differences on fp32 inputs.
 *  - Directional: for ndir random N(0,1) directions u plus the steepest direction g/|g|
 *    (all scaled to rms 1), xp = fl(x + h u), xm = fl(x - h u), and compare
 *    L(xp) - L(xm) with <g, xp - xm> (the rounded perturbation, so input rounding costs
 *    nothing). Error is relative to max(|<g,dx>|, |g| |dx| / sqrt(n)), the size of a
 *    random directional derivative, so cancellation does not inflate it.
 *  - Per element: the largest |g_i| and nelem random coordinates, relative to
 *    max(|g_i|, rms(g)).
 *  - Double-checked: every estimate is made with steps h and h/2. The checked error is
 *    the worse of (a) the h/2 estimate and (b) the Richardson extrapolation
 *    (4 D(h/2) - D(h)) / 3, whose O(h^4) truncation keeps curved ops (softmax along
 *    the steepest direction) far from the tolerance while a wrong gradient is not.
 * Returns the worst relative error seen (also recorded by tu_check under `name`).
 * Set TU_FD_VERBOSE=1 in the environment to print every estimate.
 */
static inline double tu_fd_check(const char *name, float *x, int64_t n, const float *g, tu_loss_fn loss, void *ctx,
                                 double h, double tol, tu_rng *rng, int ndir, int nelem) {
    float *x0 = tu_dup(x, n);
    double *u = tu_calloc((size_t)n, sizeof(double));
    double gn = tu_norm_f(g, n), grms = gn / sqrt((double)n), worst = 0;
    int verbose = getenv("TU_FD_VERBOSE") != NULL;
    for (int k = -1 - nelem; k <= ndir; k++) {
        /* k < 0: one coordinate (k == -1-nelem: the largest |g_i|); k >= 0: a direction */
        int64_t ie = 0;
        double un = 1;
        if (k < 0) {
            if (k == -1 - nelem) {
                for (int64_t j = 1; j < n; j++)
                    if (fabsf(g[j]) > fabsf(g[ie])) ie = j;
            } else {
                ie = tu_randint(rng, n);
            }
        } else {
            un = 0;
            for (int64_t i = 0; i < n; i++) {
                u[i] = (k < ndir || gn == 0) ? tu_normal(rng) : g[i];
                un += u[i] * u[i];
            }
            un = sqrt(un / (double)n);
        }
        double est[2], an = 0, den = 0; /* derivative estimates at h, h/2; analytic; scale */
        for (int half = 0; half < 2; half++) {
            double hh = half ? h / 2 : h, dxn = 0, lp, lm;
            an = 0;
            memcpy(x, x0, sizeof(float) * (size_t)n);
            if (k < 0) {
                x[ie] = (float)(x0[ie] + hh);
                double xp = x[ie];
                lp = loss(ctx);
                x[ie] = (float)(x0[ie] - hh);
                lm = loss(ctx);
                est[half] = (lp - lm) / (xp - x[ie]);
                an = g[ie];
                den = fmax(fabs(an), grms);
            } else {
                for (int64_t i = 0; i < n; i++) x[i] = (float)(x0[i] + hh * u[i] / un);
                lp = loss(ctx);
                for (int64_t i = 0; i < n; i++) {
                    float xm = (float)(x0[i] - hh * u[i] / un);
                    double dx = (double)x[i] - xm;
                    an += (double)g[i] * dx;
                    dxn += dx * dx;
                    x[i] = xm;
                }
                lm = loss(ctx);
                /* normalise to the step of size h so both halves estimate the same number */
                est[half] = (lp - lm) * (h / hh);
                an *= h / hh;
                den = fmax(fabs(an), gn * sqrt(dxn) * (h / hh) / sqrt((double)n));
            }
        }
        double rich = (4 * est[1] - est[0]) / 3;
        double e1 = den > 0 ? fabs(est[1] - an) / den : fabs(est[1]);
        double er = den > 0 ? fabs(rich - an) / den : fabs(rich);
        double e = fmax(e1, er);
        if (isnan(e1) || isnan(er)) e = NAN;
        if (verbose)
            printf("     %s %s %lld: an %.6e fd(h) %.6e fd(h/2) %.6e rich %.6e err(h/2) %.2e err(rich) %.2e\n", name,
                   k < 0 ? "x" : "dir", (long long)(k < 0 ? ie : k), an, est[0], est[1], rich, e1, er);
        if (!(e <= worst)) worst = e; /* propagates NaN */
    }
    memcpy(x, x0, sizeof(float) * (size_t)n);
    free(x0);
    free(u);
    char buf[160];
    snprintf(buf, sizeof buf, "fd %s", name);
    tu_check(buf, worst, tol);
    return worst;
}

/*
 * Reference gradient of a float64 loss by central differences in double, coordinate by
 * coordinate: grad[i] = (L(x + h e_i) - L(x - h e_i)) / 2h. With a float64 reference
 * forward (written independently of the op) and h ~ 1e-5 this is accurate to ~1e-9, so
 * an op's fp32 gradient can be held to ~1e-5 relative, far tighter than fp32 FD allows.
 */
static inline void tu_fd_grad64(double *grad, double *x, int64_t n, double (*loss)(void *ctx), void *ctx, double h) {
    for (int64_t i = 0; i < n; i++) {
        double x0 = x[i];
        x[i] = x0 + h;
        double lp = loss(ctx);
        x[i] = x0 - h;
        double lm = loss(ctx);
        x[i] = x0;
        grad[i] = (lp - lm) / (2 * h);
    }
}

static inline double *tu_to_double(const float *x, int64_t n) {
    double *y = tu_calloc((size_t)n, sizeof(double));
    for (int64_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

/* <c, y> in double: the loss used by the gradient checks */
static inline double tu_cot(const float *c, const float *y, int64_t n) { return tu_dot_ff(c, y, n); }

/* ------------------------------------------------------------------ attention reference */

/*
 * Naive float64 attention for one (row, head): q [Nq] rows of d at stride ldq, k/v [Nk]
 * rows at stride ldk. allowed(i, j) = allow ? allow[i * allow_qstride + j] : 1
 * (allow_qstride 0 = one key mask for every query). Writes o [Nq*d] and lse [Nq]
 * (-INFINITY and o = 0 for a query that may attend nothing). scale = 1/sqrt(d).
 */
static inline void tu_attn_ref_fwd(double *o, double *lse, const float *q, int64_t ldq, const float *k, const float *v,
                                   int64_t ldk, int64_t Nq, int64_t Nk, int d, const uint8_t *allow,
                                   int64_t allow_qstride) {
    double sc = 1.0 / sqrt((double)d);
    double *s = tu_calloc((size_t)Nk, sizeof(double));
    for (int64_t i = 0; i < Nq; i++) {
        double mx = -INFINITY;
        for (int64_t j = 0; j < Nk; j++) {
            int ok = allow ? allow[i * allow_qstride + j] : 1;
            double a = 0;
            if (ok)
                for (int c = 0; c < d; c++) a += (double)q[i * ldq + c] * k[j * ldk + c];
            s[j] = ok ? a * sc : -INFINITY;
            if (s[j] > mx) mx = s[j];
        }
        double *oi = o + i * d;
        for (int c = 0; c < d; c++) oi[c] = 0;
        if (mx == -INFINITY) {
            if (lse) lse[i] = -INFINITY;
            continue;
        }
        double l = 0;
        for (int64_t j = 0; j < Nk; j++) {
            s[j] = s[j] == -INFINITY ? 0 : exp(s[j] - mx);
            l += s[j];
        }
        for (int64_t j = 0; j < Nk; j++)
            if (s[j] != 0)
                for (int c = 0; c < d; c++) oi[c] += s[j] / l * v[j * ldk + c];
        if (lse) lse[i] = mx + log(l);
    }
    free(s);
}

/* Naive float64 backward of the same, ADDING into dq [Nq*d], dk, dv [Nk*d] (any NULL). */
static inline void tu_attn_ref_bwd(double *dq, double *dk, double *dv, const float *dout, const float *q, int64_t ldq,
                                   const float *k, const float *v, int64_t ldk, int64_t Nq, int64_t Nk, int d,
                                   const uint8_t *allow, int64_t allow_qstride) {
    double sc = 1.0 / sqrt((double)d);
    double *p = tu_calloc((size_t)Nk, sizeof(double)), *dp = tu_calloc((size_t)Nk, sizeof(double));
    for (int64_t i = 0; i < Nq; i++) {
        double mx = -INFINITY;
        for (int64_t j = 0; j < Nk; j++) {
            int ok = allow ? allow[i * allow_qstride + j] : 1;
            double a = 0;
            if (ok)
                for (int c = 0; c < d; c++) a += (double)q[i * ldq + c] * k[j * ldk + c];
            p[j] = ok ? a * sc : -INFINITY;
            if (p[j] > mx) mx = p[j];
        }
        if (mx == -INFINITY) continue; /* output is constant 0: no gradient */
        double l = 0, delta = 0;
        for (int64_t j = 0; j < Nk; j++) {
            p[j] = p[j] == -INFINITY ? 0 : exp(p[j] - mx);
            l += p[j];
        }
        const float *g = dout + i * ldq;
        for (int64_t j = 0; j < Nk; j++) {
            p[j] /= l;
            double a = 0;
            for (int c = 0; c < d; c++) a += (double)g[c] * v[j * ldk + c];
            dp[j] = a;
            delta += p[j] * a;
        }
        for (int64_t j = 0; j < Nk; j++) {
            if (p[j] == 0) continue;
            double ds = p[j] * (dp[j] - delta) * sc;
            for (int c = 0; c < d; c++) {
                if (dv) dv[j * d + c] += p[j] * g[c];
                if (dk) dk[j * d + c] += ds * q[i * ldq + c];
                if (dq) dq[i * d + c] += ds * k[j * ldk + c];
            }
        }
    }
    free(p);
    free(dp);
}

#endif
