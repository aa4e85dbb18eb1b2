/*
 * inspect.h — `osp data inspect`: a human-readable report on an HDF5 training file (or a
 * prompt-embedding file), built on the dataset reader's own validation so that a file
 * that inspects clean is a file `osp train` opens, and a bad file gets the very one-line
 * error training would give.
 */
#ifndef OSP_INSPECT_H
#define OSP_INSPECT_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    int prompts; /* prompts shown per bucket (0: none) */
    int rows;    /* rows per bucket whose values are read for the content checks (0: none, <0: all) */
} inspect_opts;

/* Report on `path` to `out`.
 *   Training file (has `latents` at the root or in bucket groups): validated by dataset_open
 *   (missing dataset, rank, dtype, N mismatch, empty, C/L/Dt across buckets), then per
 *   bucket N, shapes, dtypes, text_len min/mean/max, the first prompts and source paths,
 *   and over the first `rows` rows: latent mean/std, non-finite values, non-zero text rows
 *   past text_len (a warning).
 *   Prompt file (root `text` [N,L,Dt] and no `latents`, what `osp sample --prompts` reads):
 *   N, L, Dt, dtype, text_len, the optional `negative` [L,Dt] and the prompts.
 * Returns 0, or -1 with a one-line error (naming the file and dataset) in err. Warnings do
 * not fail. */
int inspect_file(const char *path, const inspect_opts *o, FILE *out, char *err, size_t errlen);

#endif
