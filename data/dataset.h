/*
 * dataset.h — the HDF5 training-data reader: schema validation, deterministic per-epoch
 * shuffling, per-rank sharding, resolution buckets, a prefetch thread, and an exact
 * resume position.
 *
 * ---------------------------------------------------------------- file format
 * A dataset file is HDF5. Its samples live either at the root, or in one or more
 * top-level groups ("buckets", one per resolution, e.g. /bucket_32x32, /bucket_16x64).
 * If the root holds `latents`, the root is the only bucket; otherwise every top-level
 * group holding `latents` is a bucket (groups holding neither `latents` nor `text` are
 * ignored), in name order. Each bucket holds:
 *
 *   latents   [N, C, T, H, W]  float32 | float16 | bfloat16   (required)
 *   text      [N, L, Dt]       float32 | float16 | bfloat16   (required)
 *   text_len  [N]              any integer type, 0..L          (optional; default L)
 *   prompts   [N]              strings, fixed or variable length (optional)
 *
 * float16 is an HDF5 2-byte IEEE-half float (what h5py writes for numpy float16) or a
 * uint16 dataset with the string attribute dtype="float16". bfloat16 is a uint16 dataset
 * with the string attribute dtype="bfloat16" (raw bf16 bits). float64 is also accepted.
 * Rows of `text` past text_len are ignored by the model (keep them zero).
 * Every bucket must have N >= 1, the same N in all its datasets, and all buckets the same
 * C, L and Dt. Other datasets/attributes (e.g. `labels`) are ignored.
 *
 * ---------------------------------------------------------------- order of samples
 * Epoch e, bucket k with n_k samples: the bucket's rows are permuted by a Fisher-Yates
 * shuffle driven by splitmix64 seeded from (seed, e, k). With world ranks of batch B, the
 * permutation is cut into global batches of B*world consecutive entries; global batch j
 * gives rank r the entries j*B*world + i*world + r, i = 0..B-1 (disjoint across ranks).
 * The n_k mod (B*world) entries left at the end are DROPPED for that epoch (a different
 * subset each epoch). The bucket batches are then interleaved in an order shuffled from
 * (seed, e) — identical on all ranks, so every rank uses the same bucket (shapes) at the
 * same step. Every batch comes from one bucket. The reader loops over epochs forever.
 * Pass the data-parallel rank/size: sequence-parallel peers pass the same dp rank and so
 * get the same samples.
 *
 * ---------------------------------------------------------------- position / resume
 * dataset_position() is the number of batches this rank has consumed since epoch 0
 * (epoch = pos / steps_per_epoch, step_in_epoch = pos % steps_per_epoch).
 * dataset_seek(pos) on a freshly opened reader with the same file, seed, rank, world and
 * batch size continues bit-identically. Results never depend on `prefetch`.
 */
#ifndef OSP_DATASET_H
#define OSP_DATASET_H

#include <stddef.h>
#include <stdint.h>

typedef struct osp_dataset osp_dataset;

typedef struct {
    int B, C, T, H, W, L, Dt;
    float *latents;        /* [B, C, T, H, W] */
    float *text;           /* [B, L, Dt] */
    int *text_len;         /* [B] */
    int64_t *index;        /* [B] global sample index: bucket offset + row in bucket */
    int bucket;            /* bucket of this batch */
    int epoch;
    int64_t step_in_epoch;
} osp_batch;

/* Open and validate. rank in [0, world); batch_size >= 1; prefetch >= 0 batches read
 * ahead by a background thread (0 = synchronous). Returns 0, or -1 with a one-line
 * error naming the file (and dataset) in err. */
int dataset_open(osp_dataset **out, const char *path, int rank, int world, uint64_t seed, int batch_size,
                 int prefetch, char *err, size_t errlen);
void dataset_close(osp_dataset *ds);

/* Next batch. Buffers belong to the dataset and stay valid until the next call to
 * dataset_next / dataset_seek / dataset_close. Returns 0, or -1 with a one-line error. */
int dataset_next(osp_dataset *ds, osp_batch *b, char *err, size_t errlen);

int64_t dataset_position(const osp_dataset *ds);
int dataset_seek(osp_dataset *ds, int64_t pos); /* 0, or -1 if pos < 0 */

/* Shapes. */
int dataset_num_samples(const osp_dataset *ds);      /* all buckets */
int dataset_num_buckets(const osp_dataset *ds);
int64_t dataset_steps_per_epoch(const osp_dataset *ds); /* batches per rank per epoch */
const char *dataset_bucket_name(const osp_dataset *ds, int k); /* "/" or "/bucket_32x32" */
int dataset_bucket_size(const osp_dataset *ds, int k);  /* n_k */
int dataset_C(const osp_dataset *ds, int k);
int dataset_T(const osp_dataset *ds, int k);
int dataset_H(const osp_dataset *ds, int k);
int dataset_W(const osp_dataset *ds, int k);
int dataset_L(const osp_dataset *ds);
int dataset_Dt(const osp_dataset *ds);
const char *dataset_path(const osp_dataset *ds);

/* Prompt string of a global sample index ("" if the file has no `prompts`). 0 / -1. */
int dataset_prompt(osp_dataset *ds, int64_t index, char *buf, size_t buflen);

#endif
