/*
 * test_core.c — the project-wide helpers of core/: the one way to fail (osp_die, OSP_CHECK and
 * osp_exit run the fatal hook that the parallel layer points at MPI_Abort, print exactly one
 * "osp: error:" line with the rank prefix, flush stdout first) and the one RNG (core/rng.h
 * against the published splitmix64 outputs).
 *
 * Every failure case runs in a forked child with stdout, stderr and a marker pipe captured;
 * the parent checks the exit status, the text and what the hook reported.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/common.h"
#include "core/rng.h"

#include "tests/testutil.h"
#define EXPECT TU_EXPECT

/* ------------------------------------------------------------------ children */

static int marker_fd = -1; /* the child's end of the marker pipe */

static void mark(int code) {
    char b[32];
    int n = snprintf(b, sizeof b, "hook %d\n", code);
    if (write(marker_fd, b, (size_t)n) != n) _exit(99);
}
/* what an MPI layer does: report, then end every rank with a code of its own choosing */
static void hook_exit7(int code) {
    mark(code);
    _exit(7);
}
static void hook_returns(int code) { mark(code); }
static void hook_dies(int code) {
    mark(code);
    osp_die("in hook"); /* must not run the hook again */
}

static void die_with_prefix(void) {
    osp_set_fatal_hook(hook_exit7);
    osp_set_error_prefix("rank 3: ");
    printf("partial"); /* no newline: osp_exit must flush it before the hook's _exit */
    osp_die("bad value %d in %s", 42, "x.yaml");
}
static void check_fails(void) {
    osp_set_fatal_hook(hook_exit7);
    volatile int two = 2;
    OSP_CHECK(two == 3, "a hint");
}
static void exit_code3(void) {
    osp_set_fatal_hook(hook_exit7);
    osp_exit(3);
}
static void die_without_hook(void) { osp_die("plain %s", "message"); }
static void hook_then_exit(void) {
    osp_set_fatal_hook(hook_returns);
    osp_exit(5);
}
static void hook_fails_itself(void) {
    osp_set_fatal_hook(hook_dies);
    osp_die("first");
}

typedef struct {
    int status; /* exit code, or 128 + signal */
    char out[256], err[512], marker[128];
} child_result;

static void slurp(int fd, char *buf, size_t n) {
    size_t o = 0;
    ssize_t r;
    while (o + 1 < n && (r = read(fd, buf + o, n - 1 - o)) > 0) o += (size_t)r;
    buf[o] = 0;
    close(fd);
}

static child_result run_child(void (*fn)(void)) {
    child_result r;
    memset(&r, 0, sizeof r);
    int po[2], pe[2], pm[2];
    if (pipe(po) || pipe(pe) || pipe(pm)) {
        perror("pipe");
        exit(2);
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]), close(pe[0]), close(pm[0]);
        marker_fd = pm[1];
        fn();
        _exit(98); /* fn returned: not a way to fail */
    }
    close(po[1]), close(pe[1]), close(pm[1]);
    int st = 0;
    waitpid(pid, &st, 0);
    slurp(po[0], r.out, sizeof r.out);
    slurp(pe[0], r.err, sizeof r.err);
    slurp(pm[0], r.marker, sizeof r.marker);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return r;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void test_fatal_paths(void) {
    child_result r = run_child(die_with_prefix);
    EXPECT(r.status == 7, "osp_die with a hook: exit %d, expected the hook's 7", r.status);
    EXPECT(!strcmp(r.err, "osp: error: rank 3: bad value 42 in x.yaml\n"), "message '%s'", r.err);
    EXPECT(!strcmp(r.marker, "hook 1\n"), "hook saw '%s', expected code 1", r.marker);
    EXPECT(!strcmp(r.out, "partial"), "stdout '%s': not flushed before the hook", r.out);

    r = run_child(check_fails);
    EXPECT(r.status == 7, "OSP_CHECK with a hook: exit %d", r.status);
    EXPECT(!strncmp(r.err, "osp: error: internal error at ", 30) && strstr(r.err, "check `two == 3` failed (a hint)") &&
               count_lines(r.err) == 1,
           "OSP_CHECK message '%s'", r.err);
    EXPECT(!strcmp(r.marker, "hook 1\n"), "OSP_CHECK hook saw '%s'", r.marker);

    r = run_child(exit_code3);
    EXPECT(r.status == 7 && !strcmp(r.marker, "hook 3\n") && !r.err[0], "osp_exit(3): exit %d, hook '%s', err '%s'",
           r.status, r.marker, r.err);

    r = run_child(die_without_hook);
    EXPECT(r.status == 1, "osp_die without a hook: exit %d, expected 1", r.status);
    EXPECT(!strcmp(r.err, "osp: error: plain message\n") && !r.marker[0], "no hook: err '%s', marker '%s'", r.err,
           r.marker);

    r = run_child(hook_then_exit);
    EXPECT(r.status == 5 && !strcmp(r.marker, "hook 5\n"), "a hook that returns: exit %d (expected 5), hook '%s'",
           r.status, r.marker);

    r = run_child(hook_fails_itself);
    EXPECT(r.status == 1 && !strcmp(r.marker, "hook 1\n"), "a hook that dies: exit %d, hook ran '%s' (once expected)",
           r.status, r.marker);
    EXPECT(!strcmp(r.err, "osp: error: first\nosp: error: in hook\n"), "a hook that dies: err '%s'", r.err);
    printf("fatal paths: %d checks run in forked children\n", tu_npass + tu_nfail);
}

/* ------------------------------------------------------------------ rng */

static void test_rng(void) {
    /* the reference splitmix64 outputs for seeds 0 and 1234567 */
    uint64_t s = 0;
    const uint64_t want0[3] = {0xe220a8397b1dcdafull, 0x6e789e6aa1b965f4ull, 0x06c45d188009454full};
    for (int i = 0; i < 3; i++) {
        uint64_t got = osp_rng_next(&s);
        EXPECT(got == want0[i], "seed 0 draw %d: %016llx", i, (unsigned long long)got);
    }
    s = 1234567;
    const uint64_t want1[3] = {6457827717110365317ull, 3203168211198807973ull, 9817491932198370423ull};
    for (int i = 0; i < 3; i++) {
        uint64_t got = osp_rng_next(&s);
        EXPECT(got == want1[i], "seed 1234567 draw %d: %llu", i, (unsigned long long)got);
    }
    /* counter-based and stream forms agree: draw i of the stream at x is splitmix64(x + i*golden) */
    uint64_t x = 0x5eed, st = x;
    int bad = 0;
    for (int i = 0; i < 1000; i++) bad += osp_rng_next(&st) != osp_splitmix64(x + (uint64_t)i * OSP_RNG_GOLDEN);
    EXPECT(bad == 0, "%d of 1000 stream draws differ from the counter-based ones", bad);
    /* uniform in [0, 1), normal with mean 0 and variance 1 over 200k draws (tolerance 5 sigma:
     * mean 5/sqrt(n) = 0.011, variance 5*sqrt(2/n) = 0.016) */
    const int n = 200000;
    double lo = 1, hi = 0, m = 0, v = 0;
    s = 42;
    for (int i = 0; i < n; i++) {
        double u = osp_rng_uniform(&s);
        lo = u < lo ? u : lo, hi = u > hi ? u : hi;
    }
    EXPECT(lo >= 0 && hi < 1 && lo < 1e-4 && hi > 1 - 1e-4, "uniform range [%g, %g]", lo, hi);
    for (int i = 0; i < n; i++) {
        double z = osp_rng_normal(&s);
        m += z, v += z * z;
    }
    m /= n, v = v / n - m * m;
    tu_check("normal draws: |mean|", fabs(m), 0.011);
    tu_check("normal draws: |variance - 1|", fabs(v - 1), 0.016);
}

int main(void) {
    test_fatal_paths();
    test_rng();
    return tu_summary("test_core");
}
