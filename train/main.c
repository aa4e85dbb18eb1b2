/*
 * main.c — the `osp` command: dispatches to the subcommands (one file each in train/).
 */
#include <stdio.h>
#include <string.h>

#include "train/cli.h"
#include "core/common.h"
#include "parallel/mpi_boot.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"train", cmd_train, "flow-matching training / sparse fine-tuning on HDF5 latents"},
    {"sample", cmd_sample, "generate latents (and GIFs for pixel-space models) from prompts"},
    {"forward", cmd_forward, "one DiT forward (+ backward) from HDF5 inputs: interop checks"},
    {"data", cmd_data, "datasets: synth (the built-in shapes world), inspect (report on and check a file)"},
    {"ckpt", cmd_ckpt, "checkpoints: inspect, convert (Wan-original <-> diffusers, dtypes)"},
    {"bench", cmd_bench, "timings of ops, attention and DiT steps, printed as a table"},
};

static void usage(FILE *f) {
    fprintf(f, "osp — training framework for hybrid full/sparse-attention video diffusion transformers\n\n"
               "usage: osp <command> [options]   (osp <command> --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nosp --version prints the version and which of CUDA, cuDNN, MPI and NCCL are built in.\n");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2 || cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        if (argc < 2) {
            fprintf(stderr, "osp: error: no command given (see osp --help)\n");
            osp_exit(2); /* every failing exit goes through osp_exit */
        }
        return 0;
    }
    if (!strcmp(argv[1], "--version")) return cmd_version(argc - 2, argv + 2);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            int rc = commands[i].fn(argc - 2, argv + 2);
            par_finalize(); /* commands that run on ranks called par_boot; a no-op otherwise */
            return rc;
        }
    osp_die("unknown command '%s' (see osp --help)", argv[1]);
}
