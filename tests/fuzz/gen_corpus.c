/*
 * tests/fuzz/gen_corpus.c — writes the HDF5 seeds of the fuzz corpus (tests/fuzz/h5_seeds.h)
 * into a directory: `fuzz_gen_corpus tests/fuzz/corpus/fuzz_hdf5`. The committed corpus was
 * made with it; rerun it after changing the seeds.
 */
#include <stdio.h>

#include "tests/fuzz/h5_seeds.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_gen_corpus DIR\n");
        return 2;
    }
    for (int k = 0; k < SEED_N; k++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", argv[1], seed_names[k]);
        if (seed_write((seed_kind)k, p)) {
            fprintf(stderr, "fuzz_gen_corpus: cannot write %s\n", p);
            return 1;
        }
        printf("%s\n", p);
    }
    return 0;
}
