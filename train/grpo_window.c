/*
 * grpo_window.c — GRPO window schedules and rollout plans, MixGRPO-Flash tails
 * (grpo_window.h; mixgrpo.md §6-§7).
 */
#include "train/grpo_window.h"

#include <math.h>
#include <string.h>

#include "core/common.h"
#include "train/flow.h"
#include "train/grpo_sde.h"

const char *grpo_window_kind_name(grpo_window_kind k) {
    switch (k) {
    case GRPO_WIN_SLIDING: return "sliding";
    case GRPO_WIN_FIXED: return "fixed";
    case GRPO_WIN_ALL: return "all";
    }
    return "?";
}

int grpo_window_kind_parse(const char *s, grpo_window_kind *out) {
    if (!strcmp(s, "sliding")) *out = GRPO_WIN_SLIDING;
    else if (!strcmp(s, "fixed")) *out = GRPO_WIN_FIXED;
    else if (!strcmp(s, "all")) *out = GRPO_WIN_ALL;
    else return -1;
    return 0;
}

const char *grpo_window_check(const grpo_window_cfg *c) {
    if (c->T < 2) return "rollout steps must be at least 2 (the last step is never trained)";
    if (!(c->shift > 0)) return "shift must be positive";
    if (!(c->flash_ratio >= 0 && c->flash_ratio <= 1)) return "flash ratio must lie in [0, 1]";
    switch (c->kind) {
    case GRPO_WIN_SLIDING:
        if (c->size < 1) return "window size must be at least 1";
        if (c->interval < 1) return "window shift interval must be at least 1 iteration";
        if (c->stride < 0) return "window stride must be 0 (frozen) or positive";
        break;
    case GRPO_WIN_FIXED:
        if (c->size < 1) return "fixed window size must be at least 1";
        break;
    case GRPO_WIN_ALL: break;
    default: return "unknown window kind";
    }
    return NULL;
}

void grpo_window_state_init(grpo_window_state *s) { s->l = s->k = 0; }

void grpo_window_advance(grpo_window_state *s, const grpo_window_cfg *c) {
    if (c->kind != GRPO_WIN_SLIDING) return;
    if (++s->k < c->interval) return;
    s->k = 0;
    s->l += c->stride;
    if (s->l > c->T - 2) s->l = c->roll_back ? 0 : c->T - 2;
}

grpo_window_state grpo_window_state_at(const grpo_window_cfg *c, int64_t iter) {
    grpo_window_state s;
    grpo_window_state_init(&s);
    if (c->kind != GRPO_WIN_SLIDING) return s;
    /* whole positions first (each takes tau iterations), then the remainder */
    int64_t moves = iter / c->interval;
    s.k = (int)(iter % c->interval);
    if (c->stride > 0) {
        if (c->roll_back) {
            /* positions 0, s, 2s, ... up to the largest <= T-2, then back to 0: a cycle */
            int64_t cyc = (c->T - 2) / c->stride + 1;
            s.l = (int)((moves % cyc) * c->stride);
        } else {
            int64_t l = moves * (int64_t)c->stride;
            s.l = (int)(l > c->T - 2 ? c->T - 2 : l);
        }
    }
    return s;
}

void grpo_window_steps(const grpo_window_cfg *c, const grpo_window_state *s, int *first, int *count) {
    int lo = 0, hi = 0; /* [lo, hi) */
    switch (c->kind) {
    case GRPO_WIN_SLIDING:
        lo = s->l;
        hi = s->l + c->size < c->T - 2 ? s->l + c->size : c->T - 2;
        break;
    case GRPO_WIN_FIXED: hi = c->size < c->T - 1 ? c->size : c->T - 1; break;
    case GRPO_WIN_ALL: hi = c->T - 1; break;
    }
    if (hi < lo) hi = lo;
    *first = lo;
    *count = hi - lo;
}

int grpo_window_subset(int *steps, int first, int count, double frac, uint64_t key) {
    OSP_CHECK(frac >= 0 && frac <= 1 && count >= 0, "a fraction of the window");
    for (int j = 0; j < count; j++) steps[j] = first + j;
    /* Fisher-Yates, swap j with a uniform index in [j, count) */
    for (int j = 0; j + 1 < count; j++) {
        int r = j + (int)(flow_uniform(key, (uint64_t)j) * (count - j));
        if (r >= count) r = count - 1;
        int t = steps[j];
        steps[j] = steps[r];
        steps[r] = t;
    }
    return (int)(frac * count); /* int() of the product, as the source truncates */
}

void grpo_plan_build(grpo_plan *p, const grpo_window_cfg *c, const grpo_window_state *s) {
    const char *bad = grpo_window_check(c);
    OSP_CHECK(bad == NULL, bad ? bad : "");
    memset(p, 0, sizeof *p);
    int T = c->T;
    grpo_window_steps(c, s, &p->first, &p->count);
    float *full = osp_malloc(sizeof(float) * (size_t)(T + 1));
    grpo_schedule(full, T, c->shift);

    int L = p->first + p->count - 1; /* last SDE step */
    bool flash = c->flash_ratio > 0 && p->count > 0;
    int head = flash ? L + 1 : T; /* steps kept from the full schedule */
    int n_post = 0;
    if (flash) {
        /* int() truncates toward zero as in the sources; below 2 the tail could not reach 0 */
        n_post = (int)fmax((double)(T - L) * c->flash_ratio, 1.0);
        if (n_post < 2) n_post = 2;
    }
    p->nsteps = flash ? head + n_post - 1 : T;
    p->n_post = n_post;
    p->sigma = osp_malloc(sizeof(float) * (size_t)(p->nsteps + 1));
    p->kind = osp_calloc((size_t)p->nsteps, 1);
    p->order = osp_calloc((size_t)p->nsteps, 1);
    memcpy(p->sigma, full, sizeof(float) * (size_t)(head + (flash ? 0 : 1)));
    if (flash) {
        /* u' = linspace(u_{L+1}, 0, n_post), u_{L+1} computed as grpo_schedule computes it, so
         * sigma'_0 is bitwise sigma_{L+1} and steps 0..L are unchanged */
        double u0 = 1.0 - (double)(L + 1) / T;
        for (int j = 0; j < n_post; j++) {
            double u = j == n_post - 1 ? 0.0 : u0 - u0 * (double)j / (n_post - 1);
            p->sigma[head + j] = (float)grpo_time_shift(u, c->shift);
        }
        p->sigma[p->nsteps] = 0.0f;
    }
    for (int i = 0; i < p->nsteps; i++) {
        if (i >= p->first && i < p->first + p->count) {
            p->kind[i] = GRPO_STEP_SDE;
        } else if (flash && i > L) {
            p->kind[i] = GRPO_STEP_DPM;
            /* 1st order on the final step (x = m) and where the history is at sigma = 1 */
            p->order[i] = (p->sigma[i + 1] == 0.0f || p->sigma[i - 1] >= 1.0f) ? 1 : 2;
        } else {
            p->kind[i] = GRPO_STEP_ODE;
        }
    }
    p->nfe = p->nsteps;
    free(full);
}

void grpo_plan_free(grpo_plan *p) {
    free(p->sigma);
    free(p->kind);
    free(p->order);
    memset(p, 0, sizeof *p);
}
