/*
 * grpo_adv.c — GRPO advantages, stat tracker, reward mixing, clipped surrogate and KL terms
 * (grpo_adv.h; mixgrpo.md §5, §9).
 */
#include "train/grpo_adv.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

/* ---------------------------------------------------------------- advantages */

/* mean and unbiased std of x[0..n) in double */
static void mean_std_unbiased(const double *x, int n, double *mean, double *std) {
    double m = 0, v = 0;
    for (int j = 0; j < n; j++) m += x[j];
    m /= n;
    for (int j = 0; j < n; j++) v += (x[j] - m) * (x[j] - m);
    *mean = m;
    *std = n > 1 ? sqrt(v / (n - 1)) : 0.0;
}

static void normalise_group(float *adv, const double *r, int G) {
    double m, s;
    mean_std_unbiased(r, G, &m, &s);
    for (int j = 0; j < G; j++) adv[j] = G > 1 ? (float)((r[j] - m) / (s + 1e-8)) : 0.0f;
}

void grpo_adv_group(float *adv, const float *reward, int G) {
    OSP_CHECK(G >= 1, "a group has samples");
    double *r = osp_malloc(sizeof(double) * (size_t)G);
    for (int j = 0; j < G; j++) r[j] = reward[j];
    normalise_group(adv, r, G);
    free(r);
}

void grpo_adv_clip(float *adv, int n, float lim) {
    for (int i = 0; i < n; i++) adv[i] = adv[i] > lim ? lim : adv[i] < -lim ? -lim : adv[i];
}

int grpo_adv_nonzero(const float *adv, int n, int *keep) {
    int m = 0;
    for (int i = 0; i < n; i++)
        if (adv[i] != 0.0f) keep[m++] = i;
    return m;
}

void grpo_adv_multi(float *adv, const float *reward, const float *w, int K, int G, grpo_mix mix) {
    OSP_CHECK(K >= 1 && G >= 1, "at least one reward and one sample");
    double wsum = 0;
    for (int k = 0; k < K; k++) {
        double wk = w ? w[k] : 1.0;
        OSP_CHECK(wk >= 0, "reward weights are non-negative");
        wsum += wk;
    }
    OSP_CHECK(wsum > 0, "some reward weight is positive");
    double *r = osp_malloc(sizeof(double) * (size_t)G), *acc = osp_calloc((size_t)G, sizeof(double));
    float *a = osp_malloc(sizeof(float) * (size_t)G);
    for (int k = 0; k < K; k++) {
        double wk = (w ? w[k] : 1.0) / wsum;
        for (int j = 0; j < G; j++) r[j] = reward[(int64_t)k * G + j];
        if (mix == GRPO_MIX_ADVANTAGE) {
            double m, s;
            mean_std_unbiased(r, G, &m, &s);
            for (int j = 0; j < G; j++) acc[j] += G > 1 ? wk * (r[j] - m) / (s + 1e-8) : 0.0;
        } else {
            for (int j = 0; j < G; j++) acc[j] += wk * r[j];
        }
    }
    if (mix == GRPO_MIX_ADVANTAGE) {
        for (int j = 0; j < G; j++) adv[j] = (float)acc[j];
    } else {
        normalise_group(a, acc, G);
        memcpy(adv, a, sizeof(float) * (size_t)G);
    }
    free(r);
    free(acc);
    free(a);
}

/* ---------------------------------------------------------------- tracker */

void grpo_tracker_init(grpo_tracker *t, bool global_std) {
    memset(t, 0, sizeof *t);
    t->global_std = global_std;
}

void grpo_tracker_clear(grpo_tracker *t) {
    for (int p = 0; p < t->nprompt; p++) free(t->r[p]);
    t->nprompt = 0;
}

void grpo_tracker_free(grpo_tracker *t) {
    grpo_tracker_clear(t);
    free(t->id);
    free(t->count);
    free(t->rcap);
    free(t->r);
    memset(t, 0, sizeof *t);
}

static int tracker_slot(grpo_tracker *t, int64_t id) {
    for (int p = 0; p < t->nprompt; p++)
        if (t->id[p] == id) return p;
    if (t->nprompt == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        int64_t *nid = osp_malloc(sizeof(int64_t) * (size_t)cap);
        int *nc = osp_malloc(sizeof(int) * (size_t)cap), *nrc = osp_malloc(sizeof(int) * (size_t)cap);
        double **nr = osp_malloc(sizeof(double *) * (size_t)cap);
        if (t->nprompt) {
            memcpy(nid, t->id, sizeof(int64_t) * (size_t)t->nprompt);
            memcpy(nc, t->count, sizeof(int) * (size_t)t->nprompt);
            memcpy(nrc, t->rcap, sizeof(int) * (size_t)t->nprompt);
            memcpy(nr, t->r, sizeof(double *) * (size_t)t->nprompt);
        }
        free(t->id);
        free(t->count);
        free(t->rcap);
        free(t->r);
        t->id = nid, t->count = nc, t->rcap = nrc, t->r = nr, t->cap = cap;
    }
    int p = t->nprompt++;
    t->id[p] = id;
    t->count[p] = 0;
    t->rcap[p] = 8;
    t->r[p] = osp_malloc(sizeof(double) * 8);
    return p;
}

static double pop_std(const double *x, int n, double *mean) {
    double m = 0, v = 0;
    for (int j = 0; j < n; j++) m += x[j];
    m /= n;
    for (int j = 0; j < n; j++) v += (x[j] - m) * (x[j] - m);
    if (mean) *mean = m;
    return sqrt(v / n);
}

void grpo_tracker_update(grpo_tracker *t, const int64_t *prompt, const float *reward, int n, float *adv) {
    OSP_CHECK(n >= 1, "a batch has samples");
    int *slot = osp_malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) {
        int p = slot[i] = tracker_slot(t, prompt[i]);
        if (t->count[p] == t->rcap[p]) {
            t->rcap[p] *= 2;
            double *nr = osp_malloc(sizeof(double) * (size_t)t->rcap[p]);
            memcpy(nr, t->r[p], sizeof(double) * (size_t)t->count[p]);
            free(t->r[p]);
            t->r[p] = nr;
        }
        t->r[p][t->count[p]++] = reward[i];
    }
    double gstd = 0;
    if (t->global_std) {
        double *all = osp_malloc(sizeof(double) * (size_t)n);
        for (int i = 0; i < n; i++) all[i] = reward[i];
        gstd = pop_std(all, n, NULL);
        free(all);
    }
    for (int i = 0; i < n; i++) {
        int p = slot[i];
        double m, s = pop_std(t->r[p], t->count[p], &m);
        if (t->global_std) s = gstd;
        adv[i] = (float)(((double)reward[i] - m) / (s + 1e-4));
    }
    free(slot);
}

/* ---------------------------------------------------------------- surrogate */

grpo_surr grpo_surrogate(double logp_new, double logp_old, double adv, double eps) {
    grpo_surr o;
    double r = exp(logp_new - logp_old);
    double rc = r < 1.0 - eps ? 1.0 - eps : r > 1.0 + eps ? 1.0 + eps : r;
    double lu = -adv * r, lc = -adv * rc;
    o.ratio = r;
    o.loss = lu > lc ? lu : lc;
    /* the max takes the clipped (constant) branch exactly when the ratio left the trust region
     * in the direction the advantage rewards: A > 0 and r > 1+eps, or A < 0 and r < 1-eps */
    o.inactive = (adv > 0 && r > 1.0 + eps) || (adv < 0 && r < 1.0 - eps);
    o.dlogp = o.inactive ? 0.0 : -adv * r;
    o.clipped = fabs(r - 1.0) > eps;
    return o;
}

void grpo_surr_stats_init(grpo_surr_stats *s) {
    memset(s, 0, sizeof *s);
    s->ratio_min = INFINITY;
    s->ratio_max = -INFINITY;
}

void grpo_surr_stats_add(grpo_surr_stats *s, const grpo_surr *x) {
    s->n++;
    s->nclipped += x->clipped;
    s->ninactive += x->inactive;
    s->loss_sum += x->loss;
    s->ratio_sum += x->ratio;
    if (x->ratio < s->ratio_min) s->ratio_min = x->ratio;
    if (x->ratio > s->ratio_max) s->ratio_max = x->ratio;
    double lr = fabs(log(x->ratio));
    if (lr > s->logr_absmax) s->logr_absmax = lr;
}

double grpo_surr_stats_clipfrac(const grpo_surr_stats *s) { return s->n ? (double)s->nclipped / s->n : 0.0; }

/* ---------------------------------------------------------------- KL */

double grpo_kl_gauss(const float *mu, const float *mu_ref, float std, int64_t n) {
    OSP_CHECK(std > 0 && n > 0, "KL of a stochastic step");
    double s = 0;
    for (int64_t e = 0; e < n; e++) {
        float d = mu[e] - mu_ref[e];
        s += (double)d * d;
    }
    return s / (2.0 * (double)std * std * (double)n);
}

void grpo_kl_gauss_bwd(float *dmu, const float *mu, const float *mu_ref, float std, int64_t n, double beta) {
    OSP_CHECK(std > 0 && n > 0, "KL of a stochastic step");
    const float k = (float)(beta / ((double)n * std * std));
    for (int64_t e = 0; e < n; e++) dmu[e] += k * (mu[e] - mu_ref[e]);
}

double grpo_kl_old(double logp_new, double logp_old, double *dlogp) {
    double d = logp_new - logp_old;
    if (dlogp) *dlogp = d;
    return 0.5 * d * d;
}
