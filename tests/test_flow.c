/*
 * test_flow.c — flow-matching pieces of train/flow.c:
 *  - the shifted sampling schedule reproduces Wan's integer timesteps (docs/model.md §12:
 *    shift 5, 50 steps -> 999, 995, 991, 987, 982, 978, ..., 241, 172, 92);
 *  - Euler and UniPC integrate the exact probability-flow ODE of a Gaussian data
 *    distribution (closed-form velocity E[eps - x0 | x_sigma]) towards the exact endpoint:
 *    Euler's error falls ~2x per halving of the step (first order), UniPC's error shrinks
 *    with the step count and stays well below Euler's. (UniPC itself is checked against
 *    diffusers' UniPCMultistepScheduler by tests/ref/check_unipc.py: identical to fp32
 *    rounding.);
 *  - a point-mass data distribution is reproduced exactly by both solvers;
 *  - training sigmas: shift moves the median up as s*m/(1+(s-1)*m); counter-based noise is
 *    independent of how a buffer is split, and has unit variance.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "train/flow.h"

#include "tests/testutil.h"
#define EXPECT TU_EXPECT /* one failure counter for all C tests: tu_nfail */

/* data x0 ~ N(mu, s^2) per coordinate; x_sig = (1-sig) x0 + sig eps */
static const double MU[4] = {1.5, -0.7, 0.3, 2.0}, SD[4] = {0.5, 0.2, 1.3, 0.05};

static double vel(double x, double sig, int i) {
    double a = 1.0 - sig, var = a * a * SD[i] * SD[i] + sig * sig, r = x - a * MU[i];
    double e_eps = sig / var * r, e_x0 = MU[i] + a * SD[i] * SD[i] / var * r;
    return e_eps - e_x0;
}

/* reference endpoint: RK4 in sigma from s0 to 1e-7 with many small steps, then x0 = x - sig v */
static double reference(double x, double s0, int i) {
    int n = 200000;
    double h = (1e-7 - s0) / n, s = s0;
    for (int k = 0; k < n; k++) {
        double k1 = vel(x, s, i), k2 = vel(x + 0.5 * h * k1, s + 0.5 * h, i);
        double k3 = vel(x + 0.5 * h * k2, s + 0.5 * h, i), k4 = vel(x + h * k3, s + h, i);
        x += h / 6 * (k1 + 2 * k2 + 2 * k3 + k4);
        s += h;
    }
    return x - s * vel(x, s, i);
}

static double solve(int N, float shift, bool unipc, const float *x_start, const double *ref) {
    float sig[1024], ts[1024], x[4], v[4];
    flow_schedule(N, shift, sig, ts);
    memcpy(x, x_start, sizeof x);
    flow_unipc u;
    if (unipc) flow_unipc_init(&u, N, sig, 4);
    for (int k = 0; k < N; k++) {
        for (int i = 0; i < 4; i++) v[i] = (float)vel(x[i], sig[k], i);
        if (unipc)
            flow_unipc_step(&u, k, x, v);
        else
            flow_euler_step(sig, k, x, v, 4);
    }
    if (unipc) flow_unipc_free(&u);
    double e = 0;
    for (int i = 0; i < 4; i++) e += (x[i] - ref[i]) * (x[i] - ref[i]);
    return sqrt(e / 4);
}

int main(void) {
    /* schedule */
    float sig[51], ts[50];
    flow_schedule(50, 5.0f, sig, ts);
    const int head[6] = {999, 995, 991, 987, 982, 978}, tail[3] = {241, 172, 92};
    for (int k = 0; k < 6; k++) EXPECT((int)ts[k] == head[k], "t[%d] = %d, expected %d", k, (int)ts[k], head[k]);
    for (int k = 0; k < 3; k++)
        EXPECT((int)ts[47 + k] == tail[k], "t[%d] = %d, expected %d", 47 + k, (int)ts[47 + k], tail[k]);
    EXPECT(sig[50] == 0.0f, "final sigma must be 0");
    printf("schedule (50 steps, shift 5): t = %d %d %d ... %d %d %d\n", (int)ts[0], (int)ts[1], (int)ts[2],
           (int)ts[47], (int)ts[48], (int)ts[49]);

    /* solvers on the exact Gaussian flow (shift 1 and 3), start at sigma_0 = 0.999 */
    for (int si = 0; si < 2; si++) {
        float shift = si ? 3.0f : 1.0f;
        float s[2], t2[1];
        flow_schedule(1, shift, s, t2);
        float x0[4];
        double ref[4];
        float eps[4];
        flow_randn(eps, 4, flow_key(7, 1, 2));
        for (int i = 0; i < 4; i++) {
            x0[i] = (float)((1 - s[0]) * MU[i] + s[0] * eps[i]); /* a point on the sigma_0 marginal */
            ref[i] = reference(x0[i], s[0], i);
        }
        double e_eu[3], e_un[3];
        int Ns[3] = {10, 20, 40};
        for (int j = 0; j < 3; j++) {
            e_eu[j] = solve(Ns[j], shift, false, x0, ref);
            e_un[j] = solve(Ns[j], shift, true, x0, ref);
        }
        printf("shift %.0f  Euler err %.2e %.2e %.2e   UniPC err %.2e %.2e %.2e\n", shift, e_eu[0], e_eu[1], e_eu[2],
               e_un[0], e_un[1], e_un[2]);
        double r_eu = e_eu[1] / e_eu[2], r_un = e_un[1] / e_un[2];
        printf("          error ratio 20->40 steps: Euler %.2f (first order ~2), UniPC %.2f\n", r_eu, r_un);
        EXPECT(r_eu > 1.5 && r_eu < 2.8, "Euler should converge at first order (ratio %.2f)", r_eu);
        EXPECT(r_un > 1.5, "UniPC's error should shrink with more steps (ratio %.2f)", r_un);
        for (int j = 0; j < 3; j++)
            EXPECT(e_un[j] < 0.7 * e_eu[j], "UniPC should beat Euler at %d steps (%.2e vs %.2e)", Ns[j], e_un[j],
                   e_eu[j]);
    }

    /* a point mass is integrated exactly by both solvers */
    {
        float sg[31], t3[30], x[3] = {0.3f, -1.2f, 2.5f}, v[3];
        const float target[3] = {0.25f, -0.5f, 0.75f};
        flow_schedule(30, 3.0f, sg, t3);
        for (int pass = 0; pass < 2; pass++) {
            float xs[3];
            memcpy(xs, x, sizeof xs);
            flow_unipc u;
            if (pass) flow_unipc_init(&u, 30, sg, 3);
            for (int k = 0; k < 30; k++) {
                for (int i = 0; i < 3; i++) v[i] = (xs[i] - target[i]) / sg[k];
                if (pass)
                    flow_unipc_step(&u, k, xs, v);
                else
                    flow_euler_step(sg, k, xs, v, 3);
            }
            if (pass) flow_unipc_free(&u);
            for (int i = 0; i < 3; i++)
                EXPECT(fabsf(xs[i] - target[i]) < 1e-4f, "%s point mass: %g vs %g", pass ? "UniPC" : "Euler", xs[i],
                       target[i]);
        }
    }

    /* training sigma: median of logit-normal(0,1) is 0.5, shift s maps it to s/(1+s) */
    for (int si = 0; si < 2; si++) {
        float shift = si ? 3.0f : 1.0f;
        int n = 20001, below = 0;
        float med = shift * 0.5f / (1 + (shift - 1) * 0.5f);
        for (int i = 0; i < n; i++) below += flow_train_sigma(true, 0, 1, shift, flow_key(1, (uint64_t)i, 0)) < med;
        double frac = (double)below / n;
        EXPECT(fabs(frac - 0.5) < 0.02, "shift %.0f: %.3f of sigmas below the expected median %.3f", shift, frac, med);
        printf("training sigma, shift %.0f: %.3f below the median %.3f\n", shift, frac, med);
    }

    /* counter-based noise: a split buffer gets the same numbers; moments */
    {
        int n = 100001;
        float *a = osp_malloc(sizeof(float) * n), *b = osp_malloc(sizeof(float) * n);
        flow_randn(a, n, flow_key(3, 4, 5));
        flow_randn(b, 5000, flow_key(3, 4, 5));
        EXPECT(!memcmp(a, b, sizeof(float) * 5000), "noise must not depend on the buffer length");
        double m = 0, v = 0;
        for (int i = 0; i < n; i++) m += a[i];
        m /= n;
        for (int i = 0; i < n; i++) v += (a[i] - m) * (a[i] - m);
        v /= n;
        EXPECT(fabs(m) < 0.02 && fabs(v - 1) < 0.03, "noise mean %.4f var %.4f", m, v);
        printf("noise: mean %.4f, variance %.4f over %d draws\n", m, v, n);
        free(a);
        free(b);
    }
    printf("%s\n", tu_nfail ? "test_flow: FAILED" : "test_flow: all checks passed");
    return tu_nfail ? 1 : 0;
}
