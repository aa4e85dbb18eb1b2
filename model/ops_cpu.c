/*
 * ops_cpu.c — the CPU reference backend: fp32, OpenMP over rows, every matrix product
 * through CBLAS (OpenBLAS). This backend is the numerical reference for the CUDA
 * backend and runs CI and the demo. Attention is computed in tiles with an online
 * softmax so memory stays O(N * tile) (no N x N score matrix).
 *
 * Determinism: reductions over rows (parameter gradients of norms, gates, biases) are
 * summed in a fixed number of chunks whose partial sums are added in order, so results
 * are bit-identical for any OpenMP thread count. Training resume relies on this.
 */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "common.h"
#include "ops.h"
#include "quant/hif8.h"

/* ------------------------------------------------------------------ memory */

static void *cpu_alloc(size_t bytes) { return osp_calloc(1, bytes); }
static void cpu_free(void *p) { free(p); }
static void cpu_copy(void *dst, const void *src, size_t bytes) {
    if (dst != src && bytes) memcpy(dst, src, bytes);
}
static void cpu_zero(void *dst, size_t bytes) {
    if (bytes) memset(dst, 0, bytes);
}
static void cpu_sync(void) {}

/* ------------------------------------------------- deterministic row reductions */

/* Row reductions are split into OSP_NCHUNK fixed chunks; each chunk writes its own
 * partial vector; partials are then summed in chunk order. */
#define OSP_NCHUNK 32

typedef void (*rowred_fn)(const void *ctx, int64_t row, float *acc);

/* acc_out[width] += sum over rows [0,nrows) of fn(row) (fn adds into its acc) */
static void rows_reduce(float *acc_out, int width, int64_t nrows, rowred_fn fn, const void *ctx) {
    int nch = nrows < OSP_NCHUNK ? (int)(nrows > 0 ? nrows : 1) : OSP_NCHUNK;
    float *part = osp_calloc((size_t)nch * width, sizeof(float));
#pragma omp parallel for schedule(static)
    for (int c = 0; c < nch; c++) {
        int64_t a = nrows * c / nch, b = nrows * (c + 1) / nch;
        for (int64_t r = a; r < b; r++) fn(ctx, r, part + (size_t)c * width);
    }
    for (int c = 0; c < nch; c++)
        for (int i = 0; i < width; i++) acc_out[i] += part[(size_t)c * width + i];
    free(part);
}

/* ------------------------------------------------------------------ linear */

#define LIN_BLK 64

static void cpu_linear_fwd(float *y, const float *x, const float *W, const float *b, int64_t N, int K, int O) {
    if (N <= 0) return;
    if (b) {
#pragma omp parallel for schedule(static)
        for (int64_t n = 0; n < N; n++) memcpy(y + n * O, b, sizeof(float) * O);
    }
    /* fixed row blocks, one BLAS call each inside OpenMP: the split never depends on
     * the thread count (BLAS runs single-threaded inside a parallel region) */
    int64_t nb = (N + LIN_BLK - 1) / LIN_BLK;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < nb; i++) {
        int m = (int)(N - i * LIN_BLK < LIN_BLK ? N - i * LIN_BLK : LIN_BLK);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, O, K, 1.0f, x + i * LIN_BLK * K, K, W, K,
                    b ? 1.0f : 0.0f, y + i * LIN_BLK * O, O);
    }
}

typedef struct {
    const float *dy;
    int O;
} colsum_ctx;
static void colsum_row(const void *c, int64_t r, float *acc) {
    const colsum_ctx *k = c;
    const float *row = k->dy + r * k->O;
    for (int i = 0; i < k->O; i++) acc[i] += row[i];
}

static void cpu_linear_bwd(float *dx, float *dW, float *db, const float *dy, const float *x, const float *W,
                           int64_t N, int K, int O) {
    if (N <= 0) return;
    if (dx) {
        int64_t nb = (N + LIN_BLK - 1) / LIN_BLK;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < nb; i++) {
            int m = (int)(N - i * LIN_BLK < LIN_BLK ? N - i * LIN_BLK : LIN_BLK);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, K, O, 1.0f, dy + i * LIN_BLK * O, O, W, K, 1.0f,
                        dx + i * LIN_BLK * K, K);
        }
    }
    if (dW) { /* blocks of output rows: each dW row is summed over all N by one call */
        int nb = (O + LIN_BLK - 1) / LIN_BLK;
#pragma omp parallel for schedule(static)
        for (int i = 0; i < nb; i++) {
            int m = O - i * LIN_BLK < LIN_BLK ? O - i * LIN_BLK : LIN_BLK;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, K, (int)N, 1.0f, dy + i * LIN_BLK, O, x, K, 1.0f,
                        dW + (int64_t)i * LIN_BLK * K, K);
        }
    }
    if (db) {
        colsum_ctx k = {dy, O};
        rows_reduce(db, O, N, colsum_row, &k);
    }
}

/* ------------------------------------------------------------------ norms */

static void ln_stats(const float *x, int D, float eps, float *mean, float *rstd) {
    double s = 0, s2 = 0;
    for (int i = 0; i < D; i++) s += x[i];
    double m = s / D;
    for (int i = 0; i < D; i++) {
        double d = x[i] - m;
        s2 += d * d;
    }
    *mean = (float)m;
    *rstd = (float)(1.0 / sqrt(s2 / D + eps));
}

static void cpu_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b,
                              int64_t N, int D, float eps) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * D;
        float *yr = y + n * D;
        float m, rs;
        ln_stats(xr, D, eps, &m, &rs);
        mean[n] = m;
        rstd[n] = rs;
        for (int i = 0; i < D; i++) {
            float h = (xr[i] - m) * rs;
            yr[i] = w ? h * w[i] + (b ? b[i] : 0.f) : h;
        }
    }
}

/* dx from dxhat: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) */
static void ln_dx_row(float *dxr, const float *g, const float *xr, float m, float rs, int D) {
    double sg = 0, sgx = 0;
    for (int i = 0; i < D; i++) {
        float xh = (xr[i] - m) * rs;
        sg += g[i];
        sgx += (double)g[i] * xh;
    }
    float mg = (float)(sg / D), mgx = (float)(sgx / D);
    for (int i = 0; i < D; i++) {
        float xh = (xr[i] - m) * rs;
        dxr[i] += rs * (g[i] - mg - xh * mgx);
    }
}

typedef struct {
    const float *dy, *x, *mean, *rstd;
    int D;
} ln_ctx;
static void ln_param_row(const void *c, int64_t r, float *acc) {
    const ln_ctx *k = c;
    const float *dyr = k->dy + r * k->D, *xr = k->x + r * k->D;
    float m = k->mean[r], rs = k->rstd[r];
    for (int i = 0; i < k->D; i++) {
        acc[i] += dyr[i] * (xr[i] - m) * rs;     /* dw */
        acc[k->D + i] += dyr[i];                  /* db */
    }
}

static void cpu_layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *mean,
                              const float *rstd, const float *w, int64_t N, int D) {
    if (dx) {
#pragma omp parallel
        {
            float *g = osp_malloc(sizeof(float) * D);
#pragma omp for schedule(static)
            for (int64_t n = 0; n < N; n++) {
                const float *dyr = dy + n * D;
                for (int i = 0; i < D; i++) g[i] = w ? dyr[i] * w[i] : dyr[i];
                ln_dx_row(dx + n * D, g, x + n * D, mean[n], rstd[n], D);
            }
            free(g);
        }
    }
    if (dw || db) {
        float *acc = osp_calloc(2 * (size_t)D, sizeof(float));
        ln_ctx k = {dy, x, mean, rstd, D};
        rows_reduce(acc, 2 * D, N, ln_param_row, &k);
        for (int i = 0; i < D; i++) {
            if (dw) dw[i] += acc[i];
            if (db) db[i] += acc[D + i];
        }
        free(acc);
    }
}

static void cpu_ln_mod_fwd(float *y, float *mean, float *rstd, const float *x, const float *shift,
                           const float *scale, int64_t R, int64_t N, int D, int B, int64_t stride, float eps) {
#pragma omp parallel for schedule(static)
    for (int64_t rn = 0; rn < R * N; rn++) {
        int64_t b = (rn / N) % B;
        const float *sh = shift + b * stride, *sc = scale + b * stride;
        const float *xr = x + rn * D;
        float *yr = y + rn * D;
        float m, rs;
        ln_stats(xr, D, eps, &m, &rs);
        mean[rn] = m;
        rstd[rn] = rs;
        for (int i = 0; i < D; i++) yr[i] = (xr[i] - m) * rs * (1.0f + sc[i]) + sh[i];
    }
}

typedef struct {
    const float *dy, *x, *mean, *rstd;
    int64_t N;
    int D, B;
} lnmod_ctx;
/* acc layout: [B][2][D] = (dshift, dscale) per sample */
static void lnmod_param_row(const void *c, int64_t rn, float *acc) {
    const lnmod_ctx *k = c;
    int64_t b = (rn / k->N) % k->B;
    float *ash = acc + b * 2 * k->D, *asc = ash + k->D;
    const float *dyr = k->dy + rn * k->D, *xr = k->x + rn * k->D;
    float m = k->mean[rn], rs = k->rstd[rn];
    for (int i = 0; i < k->D; i++) {
        ash[i] += dyr[i];
        asc[i] += dyr[i] * (xr[i] - m) * rs;
    }
}

static void cpu_ln_mod_bwd(float *dx, float *dshift, float *dscale, const float *dy, const float *x,
                           const float *mean, const float *rstd, const float *scale, int64_t R, int64_t N, int D,
                           int B, int64_t stride) {
    if (dx) {
#pragma omp parallel
        {
            float *g = osp_malloc(sizeof(float) * D);
#pragma omp for schedule(static)
            for (int64_t rn = 0; rn < R * N; rn++) {
                const float *sc = scale + ((rn / N) % B) * stride, *dyr = dy + rn * D;
                for (int i = 0; i < D; i++) g[i] = dyr[i] * (1.0f + sc[i]);
                ln_dx_row(dx + rn * D, g, x + rn * D, mean[rn], rstd[rn], D);
            }
            free(g);
        }
    }
    if (dshift || dscale) {
        float *acc = osp_calloc((size_t)B * 2 * D, sizeof(float));
        lnmod_ctx k = {dy, x, mean, rstd, N, D, B};
        rows_reduce(acc, B * 2 * D, R * N, lnmod_param_row, &k);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < D; i++) {
                if (dshift) dshift[b * stride + i] += acc[(size_t)b * 2 * D + i];
                if (dscale) dscale[b * stride + i] += acc[(size_t)b * 2 * D + D + i];
            }
        free(acc);
    }
}

static void cpu_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t N, int D, float eps) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * D;
        double s2 = 0;
        for (int i = 0; i < D; i++) s2 += (double)xr[i] * xr[i];
        float rs = (float)(1.0 / sqrt(s2 / D + eps));
        rstd[n] = rs;
        for (int i = 0; i < D; i++) y[n * D + i] = xr[i] * rs * w[i];
    }
}

typedef struct {
    const float *dy, *x, *rstd;
    int D;
} rms_ctx;
static void rms_param_row(const void *c, int64_t r, float *acc) {
    const rms_ctx *k = c;
    const float *dyr = k->dy + r * k->D, *xr = k->x + r * k->D;
    for (int i = 0; i < k->D; i++) acc[i] += dyr[i] * xr[i] * k->rstd[r];
}

static void cpu_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *rstd, const float *w,
                            int64_t N, int D) {
    if (dx) {
#pragma omp parallel for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            const float *xr = x + n * D, *dyr = dy + n * D;
            float rs = rstd[n];
            double s = 0;
            for (int i = 0; i < D; i++) s += (double)dyr[i] * w[i] * xr[i];
            float c = (float)(s / D) * rs * rs;
            for (int i = 0; i < D; i++) dx[n * D + i] += rs * (dyr[i] * w[i] - xr[i] * c);
        }
    }
    if (dw) {
        rms_ctx k = {dy, x, rstd, D};
        rows_reduce(dw, D, N, rms_param_row, &k);
    }
}

/* ------------------------------------------------------------------ elementwise */

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

static void cpu_gelu_fwd(float *y, const float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(GELU_K * (v + 0.044715f * v * v * v)));
    }
}

static void cpu_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        float t = tanhf(GELU_K * (v + 0.044715f * v * v * v));
        float d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
        dx[i] += dy[i] * d;
    }
}

static void cpu_silu_fwd(float *y, const float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

static void cpu_silu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

static void cpu_gate_res_fwd(float *x, const float *y, const float *gate, int64_t R, int64_t N, int D, int B,
                             int64_t stride) {
#pragma omp parallel for schedule(static)
    for (int64_t rn = 0; rn < R * N; rn++) {
        const float *g = gate + ((rn / N) % B) * stride;
        for (int i = 0; i < D; i++) x[rn * D + i] += y[rn * D + i] * g[i];
    }
}

typedef struct {
    const float *dx, *y;
    int64_t N;
    int D, B;
} gate_ctx;
static void gate_param_row(const void *c, int64_t rn, float *acc) {
    const gate_ctx *k = c;
    float *a = acc + ((rn / k->N) % k->B) * k->D;
    for (int i = 0; i < k->D; i++) a[i] += k->dx[rn * k->D + i] * k->y[rn * k->D + i];
}

static void cpu_gate_res_bwd(float *dy, float *dgate, const float *dx, const float *y, const float *gate, int64_t R,
                             int64_t N, int D, int B, int64_t stride) {
    if (dy) {
#pragma omp parallel for schedule(static)
        for (int64_t rn = 0; rn < R * N; rn++) {
            const float *g = gate + ((rn / N) % B) * stride;
            for (int i = 0; i < D; i++) dy[rn * D + i] += dx[rn * D + i] * g[i];
        }
    }
    if (dgate) {
        float *acc = osp_calloc((size_t)B * D, sizeof(float));
        gate_ctx k = {dx, y, N, D, B};
        rows_reduce(acc, B * D, R * N, gate_param_row, &k);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < D; i++) dgate[b * stride + i] += acc[(size_t)b * D + i];
        free(acc);
    }
}

static void cpu_add(float *y, const float *x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

static void cpu_axpby(float *y, float a, const float *x, float b, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = a * x[i] + b * y[i];
}

/* ------------------------------------------------------------------ RoPE */

/* Tables in float64, as the Wan reference builds them: for pair j of the head vector,
 * axis(j) and cos/sin(pos * theta^(-2 jj / d_axis)) for pos < max_pos. */
struct osp_rope {
    int d, npair, max_pos;
    int axis_end[3]; /* pairs [0,e0) time, [e0,e1) height, [e1,e2) width */
    double *cosv, *sinv; /* [npair][max_pos] */
};

static osp_rope *cpu_rope_init(int d, int max_pos, double theta) {
    osp_rope *r = osp_calloc(1, sizeof *r);
    r->d = d;
    r->npair = d / 2;
    r->max_pos = max_pos;
    int dh = 2 * (d / 6), dt = d - 2 * dh;
    int dims[3] = {dt, dh, dh};
    r->axis_end[0] = dt / 2;
    r->axis_end[1] = dt / 2 + dh / 2;
    r->axis_end[2] = r->npair;
    r->cosv = osp_malloc(sizeof(double) * r->npair * max_pos);
    r->sinv = osp_malloc(sizeof(double) * r->npair * max_pos);
    int j = 0;
    for (int a = 0; a < 3; a++)
        for (int jj = 0; jj < dims[a] / 2; jj++, j++) {
            double freq = 1.0 / pow(theta, (2.0 * jj) / dims[a]);
            for (int p = 0; p < max_pos; p++) {
                r->cosv[(size_t)j * max_pos + p] = cos(p * freq);
                r->sinv[(size_t)j * max_pos + p] = sin(p * freq);
            }
        }
    return r;
}

static void cpu_rope_free(osp_rope *r) {
    if (!r) return;
    free(r->cosv);
    free(r->sinv);
    free(r);
}

/* sign = +1 forward rotation, -1 inverse; accumulate adds into y instead of writing */
static void rope_apply(float *y, const float *x, const int32_t *pos, const osp_rope *r, int64_t ntok, int H,
                       double sign, bool accumulate) {
    int d = r->d;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < ntok; t++) {
        int p3[3] = {pos[3 * t], pos[3 * t + 1], pos[3 * t + 2]};
        for (int a = 0; a < 3; a++)
            OSP_CHECK(p3[a] >= 0 && p3[a] < r->max_pos, "RoPE position outside the table (max 1024 per axis)");
        for (int h = 0; h < H; h++) {
            const float *xv = x + (t * H + h) * d;
            float *yv = y + (t * H + h) * d;
            for (int j = 0; j < r->npair; j++) {
                int a = j < r->axis_end[0] ? 0 : (j < r->axis_end[1] ? 1 : 2);
                double c = r->cosv[(size_t)j * r->max_pos + p3[a]];
                double s = sign * r->sinv[(size_t)j * r->max_pos + p3[a]];
                double x0 = xv[2 * j], x1 = xv[2 * j + 1];
                float o0 = (float)(x0 * c - x1 * s), o1 = (float)(x0 * s + x1 * c);
                if (accumulate) {
                    yv[2 * j] += o0;
                    yv[2 * j + 1] += o1;
                } else {
                    yv[2 * j] = o0;
                    yv[2 * j + 1] = o1;
                }
            }
        }
    }
}

static void cpu_rope_fwd(float *y, const float *x, const int32_t *pos, const osp_rope *r, int64_t ntok, int H) {
    rope_apply(y, x, pos, r, ntok, H, 1.0, false);
}

static void cpu_rope_bwd(float *dx, const float *dy, const int32_t *pos, const osp_rope *r, int64_t ntok, int H) {
    if (dx == dy) {
        rope_apply(dx, dy, pos, r, ntok, H, -1.0, false);
    } else {
        rope_apply(dx, dy, pos, r, ntok, H, -1.0, true);
    }
}

/* ------------------------------------------------------------------ attention */

#define ATT_BQ 64
#define ATT_BK 256

static void cpu_attn_fwd(float *o, float *lse, const float *q, const float *k, const float *v, const uint8_t *kvalid,
                         int64_t R, int64_t Rkv, int64_t Nq, int64_t Nk, int H, int d) {
    const int HD = H * d;
    const float scale = 1.0f / sqrtf((float)d);
    const int64_t nqt = (Nq + ATT_BQ - 1) / ATT_BQ;
#pragma omp parallel
    {
        float *S = osp_malloc(sizeof(float) * ATT_BQ * ATT_BK);
        float *acc = osp_malloc(sizeof(float) * ATT_BQ * d);
        float m[ATT_BQ], l[ATT_BQ];
#pragma omp for schedule(dynamic)
        for (int64_t job = 0; job < R * H * nqt; job++) {
            int64_t r = job / (H * nqt), h = (job / nqt) % H, qt = job % nqt;
            int64_t rk = r % Rkv;
            int64_t q0 = qt * ATT_BQ;
            int nq = (int)(Nq - q0 < ATT_BQ ? Nq - q0 : ATT_BQ);
            const float *Q = q + (r * Nq + q0) * HD + h * d;
            for (int i = 0; i < nq; i++) {
                m[i] = -INFINITY;
                l[i] = 0;
            }
            memset(acc, 0, sizeof(float) * nq * d);
            for (int64_t k0 = 0; k0 < Nk; k0 += ATT_BK) {
                int nk = (int)(Nk - k0 < ATT_BK ? Nk - k0 : ATT_BK);
                const float *K = k + (rk * Nk + k0) * HD + h * d;
                const float *V = v + (rk * Nk + k0) * HD + h * d;
                const uint8_t *valid = kvalid ? kvalid + rk * Nk + k0 : NULL;
                if (valid) {
                    int any = 0;
                    for (int j = 0; j < nk; j++) any |= valid[j];
                    if (!any) continue;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, d, scale, Q, HD, K, HD, 0.0f, S, nk);
                for (int i = 0; i < nq; i++) {
                    float *s = S + (size_t)i * nk;
                    float mx = m[i];
                    for (int j = 0; j < nk; j++) {
                        if (valid && !valid[j]) s[j] = -INFINITY;
                        if (s[j] > mx) mx = s[j];
                    }
                    if (mx == -INFINITY) { /* nothing valid yet */
                        for (int j = 0; j < nk; j++) s[j] = 0;
                        continue;
                    }
                    float corr = expf(m[i] - mx), sum = 0;
                    for (int j = 0; j < nk; j++) {
                        s[j] = expf(s[j] - mx);
                        sum += s[j];
                    }
                    l[i] = l[i] * corr + sum;
                    m[i] = mx;
                    float *a = acc + (size_t)i * d;
                    for (int c = 0; c < d; c++) a[c] *= corr;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, d, nk, 1.0f, S, nk, V, HD, 1.0f, acc, d);
            }
            for (int i = 0; i < nq; i++) {
                float *orow = o + (r * Nq + q0 + i) * HD + h * d;
                float inv = l[i] > 0 ? 1.0f / l[i] : 0.0f;
                for (int c = 0; c < d; c++) orow[c] = acc[(size_t)i * d + c] * inv;
                lse[(r * H + h) * Nq + q0 + i] = l[i] > 0 ? m[i] + logf(l[i]) : -INFINITY;
            }
        }
        free(S);
        free(acc);
    }
}

/* P = exp(scale*QK^T - lse) for one (query tile, key tile); masked keys and empty rows give 0 */
static void attn_probs(float *S, const float *Q, const float *K, int nq, int nk, int d, int HD, float scale,
                       const float *lse_row, const uint8_t *valid) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, d, scale, Q, HD, K, HD, 0.0f, S, nk);
    for (int i = 0; i < nq; i++) {
        float L = lse_row[i];
        float *s = S + (size_t)i * nk;
        for (int j = 0; j < nk; j++) s[j] = (L == -INFINITY || (valid && !valid[j])) ? 0.0f : expf(s[j] - L);
    }
}

/* dS = P * (dO V^T - Delta), in place over P; dP buffer given */
static void attn_dscores(float *P, float *dP, const float *dO, const float *V, int nq, int nk, int d, int HD,
                         const float *delta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, d, 1.0f, dO, HD, V, HD, 0.0f, dP, nk);
    for (int i = 0; i < nq; i++)
        for (int j = 0; j < nk; j++) P[(size_t)i * nk + j] *= dP[(size_t)i * nk + j] - delta[i];
}

static void cpu_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *o, const float *lse,
                         const float *q, const float *k, const float *v, const uint8_t *kvalid, int64_t R, int64_t Rkv,
                         int64_t Nq, int64_t Nk, int H, int d) {
    const int HD = H * d;
    const float scale = 1.0f / sqrtf((float)d);
    /* Delta[r,h,i] = sum_c dO * O */
    float *delta = osp_malloc(sizeof(float) * R * H * Nq);
#pragma omp parallel for schedule(static)
    for (int64_t ri = 0; ri < R * Nq; ri++) {
        int64_t r = ri / Nq, i = ri % Nq;
        for (int h = 0; h < H; h++) {
            const float *a = dout + ri * HD + h * d, *b = o + ri * HD + h * d;
            double s = 0;
            for (int c = 0; c < d; c++) s += (double)a[c] * b[c];
            delta[(r * H + h) * Nq + i] = (float)s;
        }
    }
    const int64_t nkt = (Nk + ATT_BK - 1) / ATT_BK, nqt = (Nq + ATT_BQ - 1) / ATT_BQ;
    /* pass 1: dK, dV per (kv row, head, key tile), looping over every query row sharing it */
    if (dk || dv) {
#pragma omp parallel
        {
            float *P = osp_malloc(sizeof(float) * ATT_BQ * ATT_BK);
            float *dP = osp_malloc(sizeof(float) * ATT_BQ * ATT_BK);
#pragma omp for schedule(dynamic)
            for (int64_t job = 0; job < Rkv * H * nkt; job++) {
                int64_t rk = job / (H * nkt), h = (job / nkt) % H, kt = job % nkt;
                int64_t k0 = kt * ATT_BK;
                int nk = (int)(Nk - k0 < ATT_BK ? Nk - k0 : ATT_BK);
                const float *K = k + (rk * Nk + k0) * HD + h * d, *V = v + (rk * Nk + k0) * HD + h * d;
                float *dK = dk ? dk + (rk * Nk + k0) * HD + h * d : NULL;
                float *dV = dv ? dv + (rk * Nk + k0) * HD + h * d : NULL;
                const uint8_t *valid = kvalid ? kvalid + rk * Nk + k0 : NULL;
                for (int64_t r = rk; r < R; r += Rkv)
                    for (int64_t q0 = 0; q0 < Nq; q0 += ATT_BQ) {
                        int nq = (int)(Nq - q0 < ATT_BQ ? Nq - q0 : ATT_BQ);
                        const float *Q = q + (r * Nq + q0) * HD + h * d, *dO = dout + (r * Nq + q0) * HD + h * d;
                        const float *L = lse + (r * H + h) * Nq + q0;
                        attn_probs(P, Q, K, nq, nk, d, HD, scale, L, valid);
                        if (dV)
                            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, d, nq, 1.0f, P, nk, dO, HD, 1.0f,
                                        dV, HD);
                        if (dK) {
                            attn_dscores(P, dP, dO, V, nq, nk, d, HD, delta + (r * H + h) * Nq + q0);
                            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, d, nq, scale, P, nk, Q, HD, 1.0f,
                                        dK, HD);
                        }
                    }
            }
            free(P);
            free(dP);
        }
    }
    /* pass 2: dQ per (row, head, query tile) */
    if (dq) {
#pragma omp parallel
        {
            float *P = osp_malloc(sizeof(float) * ATT_BQ * ATT_BK);
            float *dP = osp_malloc(sizeof(float) * ATT_BQ * ATT_BK);
#pragma omp for schedule(dynamic)
            for (int64_t job = 0; job < R * H * nqt; job++) {
                int64_t r = job / (H * nqt), h = (job / nqt) % H, qt = job % nqt;
                int64_t rk = r % Rkv, q0 = qt * ATT_BQ;
                int nq = (int)(Nq - q0 < ATT_BQ ? Nq - q0 : ATT_BQ);
                const float *Q = q + (r * Nq + q0) * HD + h * d, *dO = dout + (r * Nq + q0) * HD + h * d;
                float *dQ = dq + (r * Nq + q0) * HD + h * d;
                const float *L = lse + (r * H + h) * Nq + q0;
                for (int64_t k0 = 0; k0 < Nk; k0 += ATT_BK) {
                    int nk = (int)(Nk - k0 < ATT_BK ? Nk - k0 : ATT_BK);
                    const float *K = k + (rk * Nk + k0) * HD + h * d, *V = v + (rk * Nk + k0) * HD + h * d;
                    const uint8_t *valid = kvalid ? kvalid + rk * Nk + k0 : NULL;
                    attn_probs(P, Q, K, nq, nk, d, HD, scale, L, valid);
                    attn_dscores(P, dP, dO, V, nq, nk, d, HD, delta + (r * H + h) * Nq + q0);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, d, nk, scale, P, nk, K, HD, 1.0f, dQ,
                                HD);
                }
            }
            free(P);
            free(dP);
        }
    }
    free(delta);
}

/* ------------------------------------------------------------------ layouts */

static void cpu_gather_rows(float *dst, const float *src, const int32_t *idx, int64_t n, int D) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        if (idx[i] >= 0)
            memcpy(dst + i * D, src + (int64_t)idx[i] * D, sizeof(float) * D);
        else
            memset(dst + i * D, 0, sizeof(float) * D);
    }
}

static void cpu_scatter_add_rows(float *dst, const float *src, const int32_t *idx, int64_t n, int D) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        if (idx[i] < 0) continue;
        float *o = dst + (int64_t)idx[i] * D;
        const float *s = src + i * D;
        for (int c = 0; c < D; c++) o[c] += s[c];
    }
}

static void cpu_patch_map(float *tok, float *vid, int B, int C, int T, int Hs, int Ws, int pt, int ph, int pw,
                          bool c_first, bool to_tokens) {
    int f = T / pt, hh = Hs / ph, ww = Ws / pw, F = C * pt * ph * pw;
    int64_t L = (int64_t)f * hh * ww;
#pragma omp parallel for schedule(static)
    for (int64_t bn = 0; bn < B * L; bn++) {
        int64_t b = bn / L, n = bn % L;
        int fi = (int)(n / (hh * ww)), hi = (int)((n / ww) % hh), wi = (int)(n % ww);
        float *trow = tok + bn * F;
        for (int c = 0; c < C; c++)
            for (int kt = 0; kt < pt; kt++)
                for (int kh = 0; kh < ph; kh++)
                    for (int kw = 0; kw < pw; kw++) {
                        int fe = c_first ? ((c * pt + kt) * ph + kh) * pw + kw : ((kt * ph + kh) * pw + kw) * C + c;
                        int64_t vi = (((b * C + c) * T + fi * pt + kt) * (int64_t)Hs + hi * ph + kh) * Ws + wi * pw + kw;
                        if (to_tokens)
                            trow[fe] = vid[vi];
                        else
                            vid[vi] = trow[fe];
                    }
    }
}

/* ------------------------------------------------------- losses, optimizer */

static double cpu_mse(float *dpred, const float *pred, const float *target, int64_t n, float scale) {
    double s = 0;
#pragma omp parallel for schedule(static) reduction(+ : s)
    for (int64_t i = 0; i < n; i++) {
        double e = (double)pred[i] - target[i];
        s += e * e;
        if (dpred) dpred[i] = scale * 2.0f * (float)e / (float)n;
    }
    return s / (double)n;
}

static double cpu_sumsq(const float *x, int64_t n) {
    /* fixed chunking keeps the sum independent of the thread count */
    double part[OSP_NCHUNK] = {0};
#pragma omp parallel for schedule(static)
    for (int c = 0; c < OSP_NCHUNK; c++) {
        double s = 0;
        for (int64_t i = n * c / OSP_NCHUNK; i < n * (c + 1) / OSP_NCHUNK; i++) s += (double)x[i] * x[i];
        part[c] = s;
    }
    double s = 0;
    for (int c = 0; c < OSP_NCHUNK; c++) s += part[c];
    return s;
}

static float cpu_absmax(const float *x, int64_t n) {
    float m = 0;
#pragma omp parallel for schedule(static) reduction(max : m)
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > m) m = a;
    }
    return m;
}

static void cpu_scale(float *x, float a, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] *= a;
}

static void cpu_adamw(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2,
                      float eps, float wd, float bc1, float bc2, float gscale) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * gscale;
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        float mh = m[i] / bc1, vh = v[i] / bc2;
        p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
    }
}

static void cpu_ema(float *e, const float *p, int64_t n, float decay) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) e[i] = decay * e[i] + (1.0f - decay) * p[i];
}

static void cpu_hif8_fq(float *y, const float *x, int64_t n, float s, bool saturate) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = hif8_round(x[i] * s, saturate) / s;
}

static int64_t cpu_count_nonfinite(const float *x, int64_t n) {
    int64_t c = 0;
#pragma omp parallel for schedule(static) reduction(+ : c)
    for (int64_t i = 0; i < n; i++) c += !isfinite(x[i]);
    return c;
}

static const osp_backend cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .zero = cpu_zero,
    .sync = cpu_sync,
    .linear_fwd = cpu_linear_fwd,
    .linear_bwd = cpu_linear_bwd,
    .layernorm_fwd = cpu_layernorm_fwd,
    .layernorm_bwd = cpu_layernorm_bwd,
    .ln_mod_fwd = cpu_ln_mod_fwd,
    .ln_mod_bwd = cpu_ln_mod_bwd,
    .rmsnorm_fwd = cpu_rmsnorm_fwd,
    .rmsnorm_bwd = cpu_rmsnorm_bwd,
    .gelu_fwd = cpu_gelu_fwd,
    .gelu_bwd = cpu_gelu_bwd,
    .silu_fwd = cpu_silu_fwd,
    .silu_bwd = cpu_silu_bwd,
    .gate_res_fwd = cpu_gate_res_fwd,
    .gate_res_bwd = cpu_gate_res_bwd,
    .add = cpu_add,
    .axpby = cpu_axpby,
    .rope_init = cpu_rope_init,
    .rope_free = cpu_rope_free,
    .rope_fwd = cpu_rope_fwd,
    .rope_bwd = cpu_rope_bwd,
    .attn_fwd = cpu_attn_fwd,
    .attn_bwd = cpu_attn_bwd,
    .gather_rows = cpu_gather_rows,
    .scatter_add_rows = cpu_scatter_add_rows,
    .patch_map = cpu_patch_map,
    .mse = cpu_mse,
    .sumsq = cpu_sumsq,
    .absmax = cpu_absmax,
    .scale = cpu_scale,
    .adamw = cpu_adamw,
    .ema = cpu_ema,
    .hif8_fq = cpu_hif8_fq,
    .count_nonfinite = cpu_count_nonfinite,
};

#ifdef OSP_OPENBLAS_PTHREAD
void openblas_set_num_threads(int);
#endif

const osp_backend *osp_backend_cpu(void) {
#ifdef OSP_OPENBLAS_PTHREAD
    /* a pthread OpenBLAS would fight our OpenMP threads: keep it to one thread */
    static int once = 0;
    if (!once) {
        openblas_set_num_threads(1);
        once = 1;
    }
#endif
    return &cpu_backend;
}
