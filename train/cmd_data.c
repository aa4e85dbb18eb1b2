/*
 * cmd_data.c — `osp data synth`: write the built-in shapes world (train file plus a
 * held-out file of prompt combinations never seen in training); `osp data inspect`:
 * report on a training or prompt file and check it the way `osp train` does.
 */
#include <stdio.h>
#include <string.h>

#include "train/cli.h"
#include "data/inspect.h"
#include "data/shapes.h"
#include "core/common.h"

static void usage(FILE *f) {
    fprintf(f, "usage: osp data synth --out FILE.h5 [--num N] [--num-val M] [--frames F] [--size S] [--seed K]\n"
               "                      [--speed V] [--text-len L] [--text-dim D]\n\n"
               "Writes pixel-space videos [N,3,F,S,S] in [-1,1] of one shape (square, circle, triangle) in a\n"
               "pure color moving left/right/up/down on black, with prompts and word-table text embeddings,\n"
               "to FILE.h5, and the 12 held-out prompt combinations to FILE_val.h5 (FILE_train.h5 ->\n"
               "FILE_val.h5). By default the shape sweeps from one edge of the frame to the other over the\n"
               "clip ((S - side)/(F - 1) pixels per frame, side = round(0.34 S)); --speed V moves it V\n"
               "pixels per frame instead (slower only), starting anywhere along the motion. Defaults:\n"
               "N 2048, M 96, F 8, S 32, seed 0, L 8, D 32.\n"
               "       osp data heldout   prints the 12 held-out prompts, one per line.\n"
               "       osp data inspect FILE.h5 [--prompts K] [--rows R]   (osp data inspect --help)\n");
}

static void usage_inspect(FILE *f) {
    fprintf(f, "usage: osp data inspect FILE.h5 [--prompts K] [--rows R]\n\n"
               "Checks FILE.h5 exactly as `osp train` opens it (missing dataset, rank, dtype, empty, N\n"
               "mismatch, C/L/Dt across buckets: the same one-line errors, exit 1) and reports its\n"
               "root attributes and, per bucket, N, the shapes and dtypes of `latents` and `text`,\n"
               "text_len min/mean/max, the first K prompts (with their `sources`, default 3) and, over\n"
               "the first R rows (default 8; -1: all, 0: none), the latent mean/std (normalised Wan\n"
               "latents: near 0 and 1), non-finite values (an error) and non-zero text rows past\n"
               "text_len (a warning). A prompt file (root `text` [N,L,Dt], no `latents`: what\n"
               "`osp sample --prompts` reads) is reported with its text_len, `negative` and prompts.\n");
}

static int data_inspect(int argc, char **argv) {
    const char *path = NULL;
    inspect_opts o = {.prompts = 3, .rows = 8};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage_inspect(stdout);
            return 0;
        } else if (!strcmp(a, "--prompts")) o.prompts = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--rows")) o.rows = cli_int(a, cli_value(argc, argv, &i));
        else if (a[0] == '-') osp_die("data inspect: unknown option '%s' (see osp data inspect --help)", a);
        else if (path) osp_die("data inspect: one file at a time ('%s' and '%s')", path, a);
        else path = a;
    }
    if (!path) osp_die("data inspect: give FILE.h5 (see osp data inspect --help)");
    char err[2048];
    if (inspect_file(path, &o, stdout, err, sizeof err)) osp_die("%s", err);
    return 0;
}

int cmd_data(int argc, char **argv) {
    if (argc < 1 || cli_is_help(argv[0])) {
        usage(argc < 1 ? stderr : stdout);
        if (argc < 1) {
            fprintf(stderr, "osp: error: data: no action given (synth, heldout or inspect; see osp data --help)\n");
            osp_exit(2); /* every failing exit goes through osp_exit */
        }
        return 0;
    }
    if (!strcmp(argv[0], "heldout")) { /* the held-out prompts, one per line (used by the demo) */
        const char *const *p;
        int n = shapes_heldout_prompts(&p);
        for (int i = 0; i < n; i++) printf("%s\n", p[i]);
        return 0;
    }
    if (!strcmp(argv[0], "inspect")) return data_inspect(argc, argv);
    if (strcmp(argv[0], "synth"))
        osp_die("data: unknown action '%s' (synth, heldout or inspect; see osp data --help)", argv[0]);
    const char *out = NULL;
    int num = 2048, num_val = 96, frames = 8, size = 32, seed = 0, tl = 8, td = 32;
    double speed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--out")) out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--num")) num = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--num-val")) num_val = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--frames")) frames = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--size")) size = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--speed")) speed = cli_double(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--seed")) seed = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--text-len")) tl = cli_int(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--text-dim")) td = cli_int(a, cli_value(argc, argv, &i));
        else osp_die("data synth: unknown option '%s'", a);
    }
    if (!out) osp_die("data synth: --out FILE.h5 is required");
    if (num < 1 || num_val < 0) osp_die("data synth: --num must be >= 1 and --num-val >= 0");
    char val[4096], err[1024];
    shapes_val_path(out, val, sizeof val);
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", out);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = 0;
        if (osp_mkdir_p(parent)) osp_die("data synth: cannot create directory %s", parent);
    }
    double t0 = osp_now();
    if (shapes_synth(out, num_val ? val : NULL, num, num_val, frames, size, speed, tl, td, (uint64_t)seed, err, sizeof err))
        osp_die("%s", err);
    printf("wrote %d clips [3,%d,%d,%d] -> %s", num, frames, size, size, out);
    if (num_val) printf(" and %d held-out clips -> %s", num_val, val);
    printf(" (%.1f s)\n", osp_now() - t0);
    return 0;
}
