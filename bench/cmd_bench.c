/*
 * bench/cmd_bench.c — `osp bench`: timings of the pieces that decide training speed, printed
 * as tables and optionally written as JSON. Sections (bench/ops.c, bench/dit.c):
 * gemm, attn, dit, skiparse, hif8, step. Every number is the median of --repeat runs
 * after one warm-up run, timed with osp_now() around be->sync(); every input tensor is
 * freshly drawn from a seeded generator (no zeros), so runs are reproducible.
 */
#include <libgen.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/comm.h"
#include "bench/util.h"
#include "train/cli.h"
#include "core/common.h"

static const struct {
    const char *name;
    void (*fn)(bench_ctx *);
    const char *help;
} sections[] = {
    {"gemm", bench_gemm, "linear layers (fwd, bwd dx, bwd dW) of the bench DiT vs raw cblas_sgemm (CPU)"},
    {"attn", bench_attn, "attention fwd and fwd+bwd rate, full sequence vs the Skiparse batch shape"},
    {"dit", bench_dit, "whole DiT fwd (+bwd): full vs hybrid, with and without recompute"},
    {"skiparse", bench_skiparse, "layout moves (gathers) vs the attention time the sparse layout saves"},
    {"hif8", bench_hif8, "absmax + HiF8 fake quantisation of the GEMM operands vs the GEMMs"},
    {"step", bench_step, "(CUDA) one 1.3B training step at 480P with device memory"},
    {"fp8", bench_fp8, "(CUDA) HiF8 linear layers on E4M3 tensor cores vs bf16 and the bf16 emulation"},
};
#define NSECTIONS ((int)(sizeof sections / sizeof sections[0]))

static void usage(FILE *f) {
    fprintf(f,
            "usage: osp bench [--device cpu|cuda|auto] [--quick] [--only SECTION[,SECTION...]]\n"
            "                 [--json FILE] [--repeat N] [--seed S]\n"
            "       mpirun -np N osp bench --comm [--max-bytes B] [--iters N] [--json FILE]   (collective busbw)\n\n"
            "Times ops, attention and DiT steps on one device and prints one table per section.\n"
            "Each number is the median of N timed runs (default 3 on the CPU, 5 on CUDA; model-level\n"
            "sections use at most 3 unless --repeat is given) after one warm-up run.\n\n"
            "  --device   auto (default): CUDA when built with it and a GPU is visible, else CPU\n"
            "  --quick    smaller CPU shapes (whole run ~30 s on 2 cores instead of ~2 min)\n"
            "  --only     run only these sections, comma-separated\n"
            "  --json     also write every number, the device, host, nproc and date to FILE\n"
            "  --repeat   timed runs per measurement (>= 1)\n"
            "  --seed     seed of the random inputs and weights (default 1)\n\n"
            "sections:\n");
    for (int i = 0; i < NSECTIONS; i++) fprintf(f, "  %-9s %s\n", sections[i].name, sections[i].help);
    fprintf(f,
            "\nCPU shapes: a 4-layer DiT of width 256 (2 heads x 128, ffn 1024) on 2048 tokens; attention at\n"
            "8192 tokens x 2 heads x 64. CUDA shapes: Wan2.1-1.3B at 480P (32,760 tokens) and 720P (75,600).\n");
}

static void section_list(char *out, size_t n) {
    out[0] = 0;
    for (int i = 0; i < NSECTIONS; i++) {
        strncat(out, sections[i].name, n - strlen(out) - 1);
        if (i + 1 < NSECTIONS) strncat(out, ", ", n - strlen(out) - 1);
    }
}

/* --only a,b,c -> want[i] */
static void parse_only(const char *arg, bool *want) {
    char *s = strdup(arg), *save = NULL;
    char valid[128];
    section_list(valid, sizeof valid);
    for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = -1;
        for (int i = 0; i < NSECTIONS; i++)
            if (!strcmp(t, sections[i].name)) k = i;
        if (k < 0) osp_die("bench: unknown section '%s' in --only (valid: %s)", t, valid);
        want[k] = true;
    }
    free(s);
}

int cmd_bench(int argc, char **argv) {
    const char *device = "auto", *json_path = NULL;
    bool quick = false, want[NSECTIONS] = {false}, any = false;
    int repeat = 0;
    uint64_t seed = 1;
    for (int i = 0; i < argc; i++) /* communication bandwidth across ranks: its own options */
        if (!strcmp(argv[i], "--comm")) return bench_comm(argc, argv);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--device")) device = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--quick")) quick = true;
        else if (!strcmp(a, "--only")) {
            parse_only(cli_value(argc, argv, &i), want);
            any = true;
        } else if (!strcmp(a, "--json")) json_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--repeat")) {
            repeat = cli_int(a, cli_value(argc, argv, &i));
            if (repeat < 1) osp_die("bench: --repeat must be >= 1, got %d", repeat);
        } else if (!strcmp(a, "--seed")) seed = (uint64_t)cli_int(a, cli_value(argc, argv, &i));
        else osp_die("bench: unknown option '%s' (see osp bench --help)", a);
    }
    if (strcmp(device, "cpu") && strcmp(device, "cuda") && strcmp(device, "auto"))
        osp_die("bench: --device must be cpu, cuda or auto, got '%s'", device);
    if (!any)
        for (int i = 0; i < NSECTIONS; i++) want[i] = true;
    if (json_path) { /* fail now, not after minutes of timing */
        char *dup = strdup(json_path);
        const char *dir = dirname(dup);
        if (access(dir, W_OK)) osp_die("bench: --json %s: directory '%s' is not writable or does not exist", json_path, dir);
        free(dup);
    }

    bench_ctx b;
    memset(&b, 0, sizeof b);
    b.be = cli_backend(device, 0, NULL); /* the CUDA defaults; the environment overrides them */
    b.cuda = strcmp(b.be->name, "cpu") != 0;
    b.quick = quick;
    b.repeat = repeat > 0 ? repeat : (b.cuda ? 5 : 3);
    b.repeat_set = repeat > 0;
    b.seed = seed;
    b.root = json_object();
    json_object_set_new(b.root, "sections", json_object());

    char dev[256], host[256] = "unknown", date[64];
    bench_device_name(&b, dev, sizeof dev);
    if (gethostname(host, sizeof host)) snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = 0;
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = omp_get_max_threads();
    const osp_cuda_options *cuda = osp_backend_cuda_options(b.be);
    const char *gemm_mode = cuda ? osp_cuda_gemm_name(cuda->gemm) : "";
    printf("osp bench: %s (backend %s%s%s), %d threads, %ld cores, %s, %s, median of %d after 1 warm-up%s\n", dev,
           b.be->name, b.cuda ? ", GEMM mode " : "", b.cuda ? gemm_mode : "", threads, nproc, host, date, b.repeat,
           quick ? ", quick" : "");
    json_object_set_new(b.root, "device", json_string(dev));
    json_object_set_new(b.root, "backend", json_string(b.be->name));
    json_object_set_new(b.root, "host", json_string(host));
    json_object_set_new(b.root, "nproc", json_integer(nproc));
    json_object_set_new(b.root, "threads", json_integer(threads));
    json_object_set_new(b.root, "date", json_string(date));
    json_object_set_new(b.root, "quick", json_boolean(quick));
    json_object_set_new(b.root, "repeat", json_integer(b.repeat));
    json_object_set_new(b.root, "seed", json_integer((json_int_t)seed));
    if (b.cuda) json_object_set_new(b.root, "cuda_gemm_mode", json_string(gemm_mode));

    bench_settle(&b);
    double t0 = osp_now();
    json_t *secs_s = json_object();
    for (int i = 0; i < NSECTIONS; i++) {
        if (!want[i]) continue;
        double ts = osp_now();
        sections[i].fn(&b);
        json_object_set_new(secs_s, sections[i].name, json_real(osp_now() - ts));
        fflush(stdout);
    }
    double total = osp_now() - t0;
    if (bench_shortened())
        printf("\nbench: %d measurement(s) timed once: their warm-up took over %.0f s (use --repeat N to insist)\n",
               bench_shortened(), BENCH_SLOW_S);
    printf("\nbench: %.1f s in all\n", total);
    json_object_set_new(b.root, "timed_once", json_integer(bench_shortened()));
    json_object_set_new(b.root, "section_seconds", secs_s);
    json_object_set_new(b.root, "total_seconds", json_real(total));

    if (json_path) {
        char *txt = json_dumps(b.root, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        char err[1024];
        if (!txt) osp_die("bench: could not serialise the results for %s", json_path);
        size_t len = strlen(txt);
        txt = realloc(txt, len + 2);
        if (!txt) osp_die("bench: out of memory writing %s", json_path);
        txt[len++] = '\n';
        txt[len] = 0;
        int rc = osp_write_atomic(json_path, txt, len, err, sizeof err);
        free(txt);
        if (rc) osp_die("bench: %s", err);
        printf("bench: results written to %s\n", json_path);
    }
    json_decref(b.root);
    free(b.host_params);
    cli_backend_free(b.be);
    return 0;
}
