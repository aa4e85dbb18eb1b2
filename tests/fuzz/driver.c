/*
 * tests/fuzz/driver.c — a stand-in for libFuzzer's main, so the fuzz targets build and run
 * with any C compiler (CI without clang): it replays every input of the corpus directories
 * and files given, then (with -max_total_time or -runs) feeds random mutations of them to
 * LLVMFuzzerTestOneInput, until either limit is reached. No coverage feedback: the sanitizers are the oracle. On a crash
 * under ASan/UBSan the input is saved as <artifact_prefix>crash-<hash> first.
 *
 *   fuzz_TARGET [-max_total_time=S] [-runs=N] [-seed=K] [-artifact_prefix=DIR/] CORPUS...
 *
 * The same flags mean the same to a libFuzzer build of the target (scripts/fuzz.sh).
 */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__has_feature)
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define HAVE_DEATH_CALLBACK 1
#endif
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    uint8_t *d;
    size_t n;
} blob;

static blob *corpus;
static int ncorpus, capcorpus;
static uint8_t *cur;
static size_t cur_n;
static char artifact_prefix[1024] = "./";
static const char *target_name = "fuzz";

#define FZ_MAX_INPUT 65536

static void add_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return;
    uint8_t *d = malloc(FZ_MAX_INPUT);
    size_t n = fread(d, 1, FZ_MAX_INPUT, f);
    fclose(f);
    if (ncorpus == capcorpus) {
        capcorpus = capcorpus ? 2 * capcorpus : 64;
        corpus = realloc(corpus, (size_t)capcorpus * sizeof *corpus);
    }
    corpus[ncorpus++] = (blob){d, n};
}

static void add_path(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "%s: cannot read corpus %s\n", target_name, path);
        exit(2);
    }
    if (!S_ISDIR(sb.st_mode)) {
        add_file(path);
        return;
    }
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort); /* sorted: replay order is repeatable */
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.') {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", path, names[i]->d_name);
            if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) add_file(p);
        }
        free(names[i]);
    }
    free(names);
}

static uint64_t fnv(const uint8_t *d, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ d[i]) * 1099511628211ull;
    return h;
}

/* save the input being run when a sanitizer (or a signal) ends the process */
static void save_current(void) {
    if (!cur) return;
    char p[1200];
    snprintf(p, sizeof p, "%scrash-%016llx", artifact_prefix, (unsigned long long)fnv(cur, cur_n));
    FILE *f = fopen(p, "wb");
    if (f) {
        fwrite(cur, 1, cur_n, f);
        fclose(f);
        fprintf(stderr, "%s: crashing input (%zu bytes) saved to %s\n", target_name, cur_n, p);
    }
}

static void on_signal(int sig) {
    save_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

static uint64_t rng;
static uint64_t rnd(void) { /* splitmix64 */
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* one random edit of buf[0..*n) (capacity FZ_MAX_INPUT) */
static void mutate_once(uint8_t *buf, size_t *n) {
    static const int64_t interesting[] = {0, 1, -1, 2, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 1023, 1024,
                                          4095, 4096, 32767, 32768, 65535, 65536, 2147483647LL, 2147483648LL,
                                          4294967295LL, 4294967297LL, 4611686018427387904LL, INT64_MAX};
    static const char *tokens[] = {"0", "-1", "2147483647", "2147483648", "4294967297", "9223372036854775807",
                                   "1e300", "nan", "inf", "[", "]", "{", "}", ":", ",", "\"", "\n", "null", "true",
                                   "-", "  ", "&a", "*a", "!!binary", "#", "'", "\\", "=", "..", "/"};
    size_t len = *n;
    switch (rnd() % 8) {
    case 0: /* flip a bit */
        if (len) buf[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
        break;
    case 1: /* set a byte */
        if (len) buf[rnd() % len] = (uint8_t)rnd();
        break;
    case 2: { /* erase a run */
        if (!len) break;
        size_t at = rnd() % len, k = 1 + rnd() % (len - at < 16 ? len - at : 16);
        memmove(buf + at, buf + at + k, len - at - k);
        *n = len - k;
        break;
    }
    case 3: { /* duplicate a run */
        if (!len) break;
        size_t at = rnd() % len, k = 1 + rnd() % 32;
        if (at + k > len) k = len - at;
        if (len + k > FZ_MAX_INPUT) break;
        memmove(buf + at + k, buf + at, len - at);
        *n = len + k;
        break;
    }
    case 4: { /* overwrite with an interesting little-endian integer */
        int w = 1 << (rnd() % 4);
        if (len < (size_t)w) break;
        int64_t v = interesting[rnd() % (sizeof interesting / sizeof interesting[0])];
        memcpy(buf + rnd() % (len - w + 1), &v, (size_t)w);
        break;
    }
    case 5: { /* replace a decimal number with another */
        size_t at = len ? rnd() % len : 0;
        while (at < len && !(buf[at] >= '0' && buf[at] <= '9')) at++;
        if (at >= len) break;
        size_t e = at;
        while (e < len && buf[e] >= '0' && buf[e] <= '9') e++;
        char num[32];
        int k = snprintf(num, sizeof num, "%lld",
                         (long long)interesting[rnd() % (sizeof interesting / sizeof interesting[0])]);
        if (len - (e - at) + (size_t)k > FZ_MAX_INPUT) break;
        memmove(buf + at + k, buf + e, len - e);
        memcpy(buf + at, num, (size_t)k);
        *n = len - (e - at) + (size_t)k;
        break;
    }
    case 6: { /* insert a token */
        const char *t = tokens[rnd() % (sizeof tokens / sizeof tokens[0])];
        size_t k = strlen(t), at = len ? rnd() % (len + 1) : 0;
        if (len + k > FZ_MAX_INPUT) break;
        memmove(buf + at + k, buf + at, len - at);
        memcpy(buf + at, t, k);
        *n = len + k;
        break;
    }
    default: { /* splice in a piece of another corpus input */
        const blob *o = &corpus[rnd() % ncorpus];
        if (!o->n || !len) break;
        size_t from = rnd() % o->n, k = 1 + rnd() % (o->n - from), at = rnd() % len;
        if (at + k > FZ_MAX_INPUT) k = FZ_MAX_INPUT - at;
        memcpy(buf + at, o->d + from, k);
        if (at + k > len) *n = at + k;
        break;
    }
    }
}

static void run(const uint8_t *d, size_t n) {
    /* a private copy sized exactly, so ASan sees reads past the end of the input */
    cur = malloc(n ? n : 1);
    memcpy(cur, d, n);
    cur_n = n;
    LLVMFuzzerTestOneInput(cur, n);
    free(cur);
    cur = NULL;
}

int main(int argc, char **argv) {
    const char *slash = strrchr(argv[0], '/');
    target_name = slash ? slash + 1 : argv[0];
    double max_time = 0;
    long long runs = -1;
    rng = (uint64_t)time(NULL);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strncmp(a, "-max_total_time=", 16)) max_time = atof(a + 16);
        else if (!strncmp(a, "-runs=", 6)) runs = atoll(a + 6);
        else if (!strncmp(a, "-seed=", 6)) rng = (uint64_t)atoll(a + 6);
        else if (!strncmp(a, "-artifact_prefix=", 17)) snprintf(artifact_prefix, sizeof artifact_prefix, "%s", a + 17);
        else if (a[0] == '-') fprintf(stderr, "%s: ignoring libFuzzer flag %s\n", target_name, a);
        else add_path(a);
    }
    if (!ncorpus) {
        fprintf(stderr, "usage: %s [-max_total_time=S] [-runs=N] [-seed=K] [-artifact_prefix=P] CORPUS...\n",
                target_name);
        return 2;
    }
#ifdef HAVE_DEATH_CALLBACK
    __sanitizer_set_death_callback(save_current);
#endif
    signal(SIGSEGV, on_signal);
    signal(SIGFPE, on_signal);
    signal(SIGBUS, on_signal);
    signal(SIGABRT, on_signal);
    uint64_t seed = rng;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < ncorpus; i++) run(corpus[i].d, corpus[i].n);
    long long replayed = ncorpus, mutated = 0;
    uint8_t *buf = malloc(FZ_MAX_INPUT);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double el = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if ((runs >= 0 && replayed + mutated >= runs) || (max_time > 0 && el >= max_time) || (runs < 0 && max_time <= 0))
            break;
        const blob *b = &corpus[rnd() % ncorpus];
        size_t n = b->n;
        memcpy(buf, b->d, n);
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits; e++) mutate_once(buf, &n);
        run(buf, n);
        mutated++;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double el = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("%s: %lld executions (%lld corpus inputs replayed, %lld mutated) in %.1f s, %.0f/s, seed %llu: no "
           "findings\n",
           target_name, replayed + mutated, replayed, mutated, el, (replayed + mutated) / (el > 0 ? el : 1),
           (unsigned long long)seed);
    free(buf);
    return 0;
}
