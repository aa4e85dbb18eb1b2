/*
 * model/cpu/backend.c — the CPU reference backend: fp32, OpenMP over rows, every matrix product
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

#include "core/common.h"
#include "model/ops.h"
#include "model/cpu/backend.h"
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

/* the FFN's first layer: the CUDA backend fuses this into the GEMM epilogue */
static void cpu_linear_gelu_fwd(float *y, float *pre, const float *x, const float *W, const float *b, int64_t N,
                                int K, int O) {
    cpu_linear_fwd(pre, x, W, b, N, K, O);
    cpu_gelu_fwd(y, pre, N * O);
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

static void cpu_gate_res_fwd(float *out, const float *x, const float *y, const float *gate, const int32_t *idx,
                             int64_t nout, int64_t R, int64_t N, int D, int B, int64_t stride) {
    int64_t rows = idx ? nout : R * N;
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < rows; j++) {
        int64_t s = idx ? idx[j] : j; /* source token row */
        float *o = out + j * D;
        if (s < 0) {
            memset(o, 0, sizeof(float) * (size_t)D);
            continue;
        }
        const float *g = gate + ((s / N) % B) * stride, *xs = x + s * D, *ys = y + s * D;
        for (int i = 0; i < D; i++) o[i] = xs[i] + ys[i] * g[i];
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

/* The CPU twin of the fused q/k op is the composition itself: the two passes cost nothing
 * extra here, and the CUDA kernel is checked against exactly this. */
static void cpu_qk_norm_rope_fwd(float *y, float *rstd, const float *x, const float *w, const int32_t *pos,
                                 const osp_rope *r, int64_t N, int H, float eps) {
    cpu_rmsnorm_fwd(y, rstd, x, w, N, H * r->d, eps);
    cpu_rope_fwd(y, y, pos, r, N, H);
}

static void cpu_qk_norm_rope_bwd(float *dx, float *dw, float *dy, const float *x, const float *rstd, const float *w,
                                 const int32_t *pos, const osp_rope *r, int64_t N, int H) {
    cpu_rope_bwd(dy, dy, pos, r, N, H);
    cpu_rmsnorm_bwd(dx, dw, dy, x, rstd, w, N, H * r->d);
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
    .linear_gelu_fwd = cpu_linear_gelu_fwd,
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
    .qk_norm_rope_fwd = cpu_qk_norm_rope_fwd,
    .qk_norm_rope_bwd = cpu_qk_norm_rope_bwd,
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

void openblas_set_num_threads(int);

const osp_backend *osp_backend_cpu(void) {
    /* Every BLAS call of this backend is issued from inside our own OpenMP loops over
     * fixed blocks, so OpenBLAS's own threads are never useful; left on, they spin
     * against ours (the pthread build always, the OpenMP build when the machine is
     * oversubscribed: 10-20x slower measured). In the OpenMP build this call also sets
     * OpenMP's thread count, so restore it. */
    static int once = 0;
    if (!once) {
        int nt = omp_get_max_threads();
        openblas_set_num_threads(1);
        omp_set_num_threads(nt);
        once = 1;
    }
    return &cpu_backend;
}
