/*
 * model/cpu/attn.c — CPU attention of the reference backend: exact softmax attention over
 * batches of (sub)sequences computed in query x key tiles with an online softmax, so
 * memory stays O(N * tile) and no N x N score matrix ever exists (30k-token sequences
 * need megabytes, not gigabytes). Tile products go through CBLAS. The backward follows
 * FlashAttention-2: recompute P from the saved log-sum-exp, one pass for dK/dV per key
 * tile and one for dQ per query tile, so every gradient element has a single writer and
 * results do not depend on the thread count.
 */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "core/common.h"
#include "model/cpu/backend.h"

#define ATT_BQ 64
#define ATT_BK 256

void cpu_attn_fwd(float *o, float *lse, const float *q, const float *k, const float *v, const uint8_t *kvalid,
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

void cpu_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *o, const float *lse,
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

