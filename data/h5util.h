/*
 * h5util.h — small HDF5 helpers shared by the dataset reader, the shapes world and the
 * CLI (`osp forward`, `osp sample`): read a whole float dataset with rank/shape checks,
 * read rows of a float32/float16/bfloat16 dataset into float32, and write float/int/
 * string datasets into a file that appears atomically (temp name -> fsync -> rename).
 *
 * Every failure becomes ONE line in `err` naming the file and dataset; HDF5's automatic
 * error-stack printing is switched off (h5_init, called by every entry point).
 *
 * Half-precision storage (HDF5 1.10 has no H5T_NATIVE_HALF):
 *   - float16: an HDF5 float type of 2 bytes with IEEE-half fields (sign 15, exponent
 *     10..14, mantissa 0..9, bias 15) — what h5py writes for numpy float16 — OR a uint16
 *     dataset carrying the string attribute dtype="float16".
 *   - bfloat16: a uint16 dataset with the string attribute dtype="bfloat16" (the usual
 *     way to store torch.bfloat16 through numpy), or a 2-byte HDF5 float type with
 *     bfloat16 fields (sign 15, exponent 7..14, mantissa 0..6, bias 127).
 *   float64 datasets are accepted as well and converted to float32.
 *
 * Thread-safety: all helpers here take a process-wide recursive lock (h5_lock) around
 * their HDF5 calls, and so does the dataset prefetch thread. Code that calls the HDF5
 * library directly while a prefetching dataset is open should hold h5_lock too (needed
 * only where the HDF5 build is not thread-safe, harmless elsewhere).
 */
#ifndef OSP_H5UTIL_H
#define OSP_H5UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <hdf5.h>

#define H5U_MAXRANK 8

/* Open the library once and silence automatic error printing for the calling thread. */
void h5_init(void);
void h5_lock(void);
void h5_unlock(void);

/* 1 if `path` is an HDF5 file holding a dataset (or group) at `dset` ("a/b/c"), else 0. */
int h5_has(const char *path, const char *dset);

/* Read the whole dataset `dset` of `path` as float32 (f32, f64, f16, bf16 stored as above).
 * rank: expected rank or -1 for any. dims[H5U_MAXRANK] receives the shape (unused entries
 * set to 1); *data is malloc'd (free() it). Returns 0, or -1 with a one-line error. */
int h5_read_f32(const char *path, const char *dset, int rank, int64_t *dims, float **data, char *err,
                size_t errlen);

/* Same for int32 datasets (any integer type, converted by HDF5). */
int h5_read_i32(const char *path, const char *dset, int rank, int64_t *dims, int32_t **data, char *err,
                size_t errlen);

/* ---- lower level: used by the dataset reader on an open dataset id ---- */

/* Open `path` read-only after checking it exists and is HDF5 ("path: not an HDF5 file").
 * Returns the file id or -1 with a one-line error. Caller holds h5_lock. */
hid_t h5u_open_ro(const char *path, char *err, size_t errlen);
/* 1 if the link path `name` ("a/b/c") exists under `loc`, else 0. Caller holds h5_lock. */
int h5u_exists(hid_t loc, const char *name);

typedef enum { H5U_F32 = 0, H5U_F64, H5U_F16, H5U_BF16, H5U_BAD } h5u_dtype;

/* Classify the element type of an open dataset. Returns the dtype (H5U_BAD if the type
 * is not one of the supported float encodings; `why` then describes it, e.g. "int32"). */
h5u_dtype h5u_dtype_of(hid_t dset, char *why, size_t whylen);
const char *h5u_dtype_name(h5u_dtype t);

/* Read `nrows` consecutive rows starting at `row0` along dim 0 of an open dataset of dtype
 * `t` into float32 `out` (row_elems = product of the other dims). `scratch` must hold
 * nrows*row_elems uint16 for the 16-bit dtypes (may be NULL for f32/f64). Returns 0/-1.
 * Caller holds h5_lock. */
int h5u_read_rows(hid_t dset, h5u_dtype t, int64_t row0, int64_t nrows, int64_t row_elems, float *out,
                  uint16_t *scratch);

/* Read the string attribute `name` of an object (fixed or variable length) into buf.
 * Returns 0 if present, -1 otherwise. Caller holds h5_lock. */
int h5u_attr_str(hid_t obj, const char *name, char *buf, size_t buflen);

/* Read element `i` of a 1-D string dataset (fixed or variable length) into buf. 0/-1. */
int h5u_read_string(hid_t dset, int64_t i, char *buf, size_t buflen);

/* float16 / bfloat16 conversions: half_f16_to_f32 etc. in core/half.h */

/* ---- writer: the file appears under its final name only at a successful close ---- */

typedef struct h5_writer h5_writer;

/* Create `path`.tmp.<pid>. Returns NULL with a one-line error. */
h5_writer *h5w_open(const char *path, char *err, size_t errlen);
/* Datasets: `dset` may contain '/' (intermediate groups are created). rank >= 1 (a rank-0
 * scalar is written with rank 0 and dims ignored). All return 0, or -1 and remember the
 * first error (reported by h5w_close / h5w_error). */
int h5w_f32(h5_writer *w, const char *dset, int rank, const int64_t *dims, const float *data);
int h5w_i32(h5_writer *w, const char *dset, int rank, const int64_t *dims, const int32_t *data);
int h5w_f16(h5_writer *w, const char *dset, int rank, const int64_t *dims, const float *data);  /* IEEE half */
int h5w_bf16(h5_writer *w, const char *dset, int rank, const int64_t *dims, const float *data); /* uint16 + attr */
int h5w_strings(h5_writer *w, const char *dset, int n, const char *const *strs);  /* variable-length UTF-8 */
/* Streaming: create a float32 dataset of the full shape, then fill it in row blocks. */
int h5w_f32_create(h5_writer *w, const char *dset, int rank, const int64_t *dims);
int h5w_f32_rows(h5_writer *w, const char *dset, int64_t row0, int64_t nrows, const float *data);
/* String / int64 / float64 attribute on an object ("/" = root) that already exists. */
int h5w_attr_str(h5_writer *w, const char *obj, const char *name, const char *value);
int h5w_attr_i64(h5_writer *w, const char *obj, const char *name, int64_t value);
int h5w_attr_f64(h5_writer *w, const char *obj, const char *name, double value);
/* First error so far, "" if none. */
const char *h5w_error(const h5_writer *w);
/* Close, fsync, rename temp -> final, fsync the directory; on any error (including
 * earlier ones) remove the temp file and return -1 with the error. Frees w. */
int h5w_close(h5_writer *w, char *err, size_t errlen);
/* Abandon: close and remove the temp file. Frees w. */
void h5w_abort(h5_writer *w);

#endif
