/*
 * grpo_window.h — which rollout steps are stochastic and trained, and how the rest of the
 * trajectory is integrated (mixgrpo.md §6-§7):
 *  - sliding: MixGRPO's progressive window (size w, shift interval tau iterations, stride s,
 *    roll-back to l = 0 past T-2, or stay at T-2); stride 0 freezes it at l = 0 (Flash*).
 *  - fixed:   the first k steps (OSP-Next: 10 of 25).
 *  - all:     every step but the last (Flow-GRPO, DanceGRPO "all").
 * Steps before and inside the window keep the rollout schedule (Euler ODE, then the SDE); after
 * the window either Euler continues or, with MixGRPO-Flash (flash_ratio > 0), DPM-Solver++ 2nd
 * order runs on a compressed tail rebuilt on the unshifted grid (§7 (11)-(12)). The final step is
 * never trained.
 *
 * The window state (l, k) is two integers: a trainer checkpoints it for a bit-exact resume, or
 * replays it with grpo_window_state_at.
 */
#ifndef OSP_GRPO_WINDOW_H
#define OSP_GRPO_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { GRPO_WIN_SLIDING = 0, GRPO_WIN_FIXED = 1, GRPO_WIN_ALL = 2 } grpo_window_kind;

typedef struct {
    grpo_window_kind kind;
    int T;              /* rollout steps (the schedule has T+1 sigmas) */
    float shift;        /* SD3 shift of the schedule (grpo_schedule) */
    int size;           /* sliding: window size w; fixed: the number k of leading SDE steps */
    int interval;       /* sliding: tau, iterations spent at each window position */
    int stride;         /* sliding: s, how far the window moves (0 = frozen at l = 0) */
    bool roll_back;     /* sliding: past T-2 restart at l = 0 (else stay at T-2) */
    double flash_ratio; /* MixGRPO-Flash compression r~ in (0, 1]; 0 = Euler after the window */
} grpo_window_cfg;

/* Window position: l = first window step, k = iterations already spent at this l. */
typedef struct {
    int l, k;
} grpo_window_state;

/* NULL when cfg is usable, else a message naming the bad field (for the caller's osp_die). */
const char *grpo_window_check(const grpo_window_cfg *c);
const char *grpo_window_kind_name(grpo_window_kind k);
int grpo_window_kind_parse(const char *s, grpo_window_kind *out); /* "sliding"/"fixed"/"all"; 0 or -1 */

void grpo_window_state_init(grpo_window_state *s);
/* One iteration done: k += 1; after tau iterations move l by the stride; past T-2 roll back
 * to 0 (or clamp to T-2). Fixed and all windows never move. */
void grpo_window_advance(grpo_window_state *s, const grpo_window_cfg *c);
/* The state at the start of iteration `iter` (0-based): the initial state advanced iter times. */
grpo_window_state grpo_window_state_at(const grpo_window_cfg *c, int64_t iter);

/* Trained (SDE) steps of a state: [*first, *first + *count). sliding: l .. min(l+w, T-2)-1
 * (empty at l = T-2, the sources' behaviour); fixed: 0 .. min(k, T-1)-1; all: 0 .. T-2. */
void grpo_window_steps(const grpo_window_cfg *c, const grpo_window_state *s, int *first, int *count);

/* DanceGRPO's per-sample selection (§6.3): of the `count` stochastic steps first..first+count-1,
 * train the first int(frac*count) of a random permutation drawn from stream `key` (counter-based:
 * the same key gives the same steps). Writes them to steps[] in permutation order (training order
 * is free, §12) and returns how many; frac = 1 trains all, in a random order. Full schedule with
 * --ignore_last and frac 0.6: 14 of 24 steps for T = 25, 9 of 15 for T = 16. */
int grpo_window_subset(int *steps, int first, int count, double frac, uint64_t key);

typedef enum { GRPO_STEP_ODE = 0, GRPO_STEP_SDE = 1, GRPO_STEP_DPM = 2 } grpo_step_kind;

/* One rollout's integration plan. Steps 0..nsteps-1 go from sigma[i] to sigma[i+1]. */
typedef struct {
    int nsteps;      /* transitions (T, or fewer with a Flash tail) */
    float *sigma;    /* [nsteps + 1]; sigma[0] = 1, sigma[nsteps] = 0 */
    uint8_t *kind;   /* [nsteps] grpo_step_kind */
    uint8_t *order;  /* [nsteps] DPM-Solver++ order (1 or 2) of DPM steps, 0 elsewhere */
    int first, count; /* trained SDE steps: first .. first+count-1 (the same indices as the full schedule) */
    int nfe;         /* model evaluations per rollout (before CFG doubles them) */
    int n_post;      /* Flash: points of the compressed tail (0 without Flash) */
} grpo_plan;

/* Build the plan of state s. Without Flash (or with an empty window) it is the T-step schedule,
 * SDE inside the window and Euler elsewhere. With Flash and a non-empty window whose last step
 * is L: n_post = int(max((T - L)*r~, 1)), raised to 2 so the tail reaches sigma = 0; the tail
 * sigmas are shift(linspace(1 - (L+1)/T, 0, n_post)), its first value bitwise equal to
 * sigma_{L+1}; the n_post - 1 tail steps are DPM-Solver++ of order 2 except the last (order 1,
 * lands on the data prediction) and one whose history sits at sigma = 1. */
void grpo_plan_build(grpo_plan *p, const grpo_window_cfg *c, const grpo_window_state *s);
void grpo_plan_free(grpo_plan *p);

#endif
