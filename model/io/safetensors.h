/*
 * model/io/safetensors.h — checkpoint I/O in the Hugging Face safetensors format: a zero-copy
 * (mmap) reader for single files, sharded sets (*.safetensors.index.json) and model
 * directories, and a streaming, crash-safe writer (single file or shards + index).
 *
 * File layout (https://github.com/huggingface/safetensors):
 *   u64 little-endian N | N bytes of JSON header | data area
 *   header: {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *            "__metadata__": {"k": "v", ...} (optional, string -> string)}
 *   offsets are relative to the start of the data area; data is row-major little-endian.
 *
 * Only F32, BF16 and F16 tensors are supported (Wan2.1 ships F32; community repacks are
 * BF16/F16). Any other dtype makes st_open fail with a one-line error, because a
 * partially loaded checkpoint is worse than a clear refusal.
 *
 * Errors: every function that can fail on user input takes (err, errlen) and writes ONE
 * line naming the file (and tensor) there, returning non-zero. Malformed files never
 * crash the reader (it is tested under ASan/UBSan).
 *
 * Assumes a little-endian host (x86-64, aarch64), as the format's data area is LE.
 */
#ifndef OSP_SAFETENSORS_H
#define OSP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { ST_F32 = 0, ST_BF16 = 1, ST_F16 = 2 } st_dtype;

#define ST_MAX_DIMS 8

typedef struct {
    char *name;                  /* exact stored name */
    st_dtype dtype;
    int ndim;                    /* 0 = scalar */
    int64_t shape[ST_MAX_DIMS];
    const void *data;            /* points into the read-only mmap; may be UNALIGNED for
                                    files written without header padding: read through
                                    st_read_f32/st_convert or memcpy, never cast+deref */
    size_t nbytes;
    const char *file;            /* path of the file holding it (owned by the set) */
} st_tensor;

/* ---- dtype helpers ---- */
const char *st_dtype_name(st_dtype dt);            /* "F32", "BF16", "F16" */
size_t st_dtype_size(st_dtype dt);                 /* 4, 2, 2 */
int st_dtype_parse(const char *s, st_dtype *out);  /* 0 on success, -1 if unknown/unsupported */
int64_t st_numel(const st_tensor *t);


/* Convert n elements between any two supported dtypes. src/dst may be unaligned; they
 * must not overlap unless identical dtypes and src == dst. */
void st_convert(void *dst, st_dtype dst_dt, const void *src, st_dtype src_dt, size_t n);

/* ---- reader ---- */
typedef struct st_set st_set;

/* Open a checkpoint. `path` may be
 *   - a .safetensors file;
 *   - a *.safetensors.index.json (weight_map -> shard files relative to the index's dir);
 *   - a directory holding diffusion_pytorch_model.safetensors.index.json (preferred, as
 *     diffusers does), else diffusion_pytorch_model.safetensors, else exactly one
 *     *.safetensors.index.json, else exactly one *.safetensors.
 * Tensors of all files are merged and sorted by name; a name present in two shards is an
 * error, as is a weight_map entry whose shard lacks that tensor.
 * Returns 0 and *out, or -1 with a one-line message in err (and *out = NULL). */
int st_open(st_set **out, const char *path, char *err, size_t errlen);
void st_close(st_set *s);

const char *st_path(const st_set *s);              /* the path given to st_open */
int st_count(const st_set *s);
const st_tensor *st_get(const st_set *s, int i);    /* i in [0, count), sorted by name */
const st_tensor *st_find(const st_set *s, const char *name);  /* exact name; NULL if absent */
/* Value of `key` in the "__metadata__" of the (first) file that has one; NULL if none. */
const char *st_metadata(const st_set *s, const char *key);

/* Copy a tensor into dst as F32 (converting BF16/F16). n must equal the element count. */
int st_read_f32(const st_tensor *t, float *dst, size_t n, char *err, size_t errlen);

/* ---- writer ---- */
typedef struct st_writer st_writer;

st_writer *st_writer_init(void);
/* Queue a tensor. `data` (numel * dtype size bytes) is REFERENCED, not copied: it must
 * stay alive and unchanged until st_writer_save / st_writer_save_sharded / st_writer_free return. Name is copied.
 * ndim must be in [0, ST_MAX_DIMS]. Duplicate names are reported by save. */
void st_writer_add(st_writer *w, const char *name, st_dtype dt, int ndim, const int64_t *shape,
                   const void *data);
/* Same, but the writer takes ownership of `data` (a malloc'd buffer) and frees it in
 * st_writer_free: handy for converted copies (`osp ckpt convert`). */
void st_writer_add_owned(st_writer *w, const char *name, st_dtype dt, int ndim, const int64_t *shape,
                         void *data);
/* Write one file: keys sorted, data in key order, header padded with spaces so the data
 * area starts 8-byte aligned. Crash-safe: PATH.tmp.PID, fsync, rename, fsync dir.
 * metadata_json: NULL or a JSON object of string values, stored as "__metadata__". */
int st_writer_save(st_writer *w, const char *path, const char *metadata_json, char *err, size_t errlen);
/* Write DIR/BASENAME-0000i-of-0000N.safetensors (tensors in sorted order, a new shard
 * whenever the next tensor would push the shard past max_shard_bytes; a tensor larger than
 * that gets a shard of its own) and then DIR/BASENAME.safetensors.index.json
 * {"metadata": {"total_size": bytes}, "weight_map": {name: shard}}. Each file atomic; the
 * index is written last so a crash never leaves an index pointing at missing shards.
 * Always writes an index, even for N = 1. DIR must exist. */
int st_writer_save_sharded(st_writer *w, const char *dir, const char *basename, size_t max_shard_bytes,
                           char *err, size_t errlen);
void st_writer_free(st_writer *w);

#endif
