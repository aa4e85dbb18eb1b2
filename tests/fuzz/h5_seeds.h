/*
 * tests/fuzz/h5_seeds.h — small HDF5 files for the reader's tests and the fuzz corpus: a
 * valid one (f32 or bf16 latents, text, text_len, prompts) and the hostile shapes the reader
 * must refuse with one error line (issue 21): an array-valued `dtype` attribute (variable-
 * and fixed-length strings), a chunked dataset claiming 2^62 clips, and per-clip dims whose
 * product overflows. Static functions: included by tests/test_data.c and gen_corpus.c.
 */
#ifndef OSP_H5_SEEDS_H
#define OSP_H5_SEEDS_H

#include <hdf5.h>
#include <stdint.h>
#include <string.h>

#include "data/h5util.h"

typedef enum {
    SEED_VALID_F32,
    SEED_VALID_BF16,
    SEED_DTYPE_ARRAY_VLEN,  /* uint16 latents whose dtype attribute is 4 variable-length strings */
    SEED_DTYPE_ARRAY_FIXED, /* ... 64 fixed-length strings */
    SEED_HUGE_N,            /* chunked latents/text claiming 2^62 clips, nothing stored */
    SEED_DIMS_OVERFLOW,     /* latents [2, 2^24, 2^24, 2^24, 2^24]: the per-clip product overflows */
    SEED_N
} seed_kind;

static const char *const seed_names[SEED_N] = {"valid_f32.h5",     "valid_bf16.h5", "dtype_array_vlen.h5",
                                               "dtype_array_fixed.h5", "huge_n.h5",   "dims_overflow.h5"};

/* a chunked float dataset of shape d[0..r) with nothing written (HDF5 reads fill values) */
static hid_t seed_empty_chunked(hid_t f, const char *name, int r, const hsize_t *d, hid_t type) {
    hsize_t chunk[5];
    for (int i = 0; i < r; i++) chunk[i] = i == 0 || d[i] > 4 ? 1 : d[i];
    hid_t sp = H5Screate_simple(r, d, NULL), pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(pl, r, chunk);
    hid_t ds = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    H5Pclose(pl), H5Sclose(sp);
    return ds;
}

/* write seed `k` to path; 0 on success. Values are a fixed pattern (the files are committed). */
static int seed_write(seed_kind k, const char *path) {
    const int N = 2, C = 3, T = 2, H = 4, W = 4, L = 4, Dt = 8;
    float lat[2 * 3 * 2 * 4 * 4], txt[2 * 4 * 8];
    for (int i = 0; i < (int)(sizeof lat / sizeof lat[0]); i++) lat[i] = (float)((i * 37) % 23) / 7.0f - 1.5f;
    for (int i = 0; i < (int)(sizeof txt / sizeof txt[0]); i++) txt[i] = (float)((i * 11) % 13) / 5.0f - 1.2f;
    int64_t dl[5] = {N, C, T, H, W}, dt[3] = {N, L, Dt}, dn[1] = {N};
    char err[512];
    if (k == SEED_VALID_F32 || k == SEED_VALID_BF16) {
        h5_writer *w = h5w_open(path, err, sizeof err);
        if (!w) return -1;
        if (k == SEED_VALID_F32) h5w_f32(w, "latents", 5, dl, lat), h5w_f32(w, "text", 3, dt, txt);
        else h5w_bf16(w, "latents", 5, dl, lat), h5w_bf16(w, "text", 3, dt, txt);
        int32_t tl[2] = {3, 4};
        h5w_i32(w, "text_len", 1, dn, tl);
        const char *pr[2] = {"a red circle", "a blue square moving left"};
        h5w_strings(w, "prompts", 2, pr);
        return h5w_close(w, err, sizeof err);
    }
    h5_lock();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    int rc = f < 0 ? -1 : 0;
    if (k == SEED_DTYPE_ARRAY_VLEN || k == SEED_DTYPE_ARRAY_FIXED) {
        hsize_t hd[5] = {N, C, T, H, W}, ht[3] = {N, L, Dt};
        uint16_t bits[sizeof lat / sizeof lat[0]];
        for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++) bits[i] = (uint16_t)(0x3c00 + i);
        hid_t sp = H5Screate_simple(5, hd, NULL);
        hid_t d = H5Dcreate2(f, "latents", H5T_STD_U16LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(d, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, bits);
        H5Sclose(sp);
        hid_t st = H5Tcopy(H5T_C_S1);
        if (k == SEED_DTYPE_ARRAY_VLEN) {
            hsize_t na = 4;
            const char *v[4] = {"bfloat16", "float16", "bfloat16", "x"};
            H5Tset_size(st, H5T_VARIABLE);
            hid_t as = H5Screate_simple(1, &na, NULL);
            hid_t a = H5Acreate2(d, "dtype", st, as, H5P_DEFAULT, H5P_DEFAULT);
            H5Awrite(a, st, v);
            H5Aclose(a), H5Sclose(as);
        } else {
            hsize_t na = 64;
            char v[64][8];
            for (int i = 0; i < 64; i++) memcpy(v[i], "bfloat16", 8);
            H5Tset_size(st, 8);
            hid_t as = H5Screate_simple(1, &na, NULL);
            hid_t a = H5Acreate2(d, "dtype", st, as, H5P_DEFAULT, H5P_DEFAULT);
            H5Awrite(a, st, v);
            H5Aclose(a), H5Sclose(as);
        }
        H5Tclose(st), H5Dclose(d);
        sp = H5Screate_simple(3, ht, NULL);
        d = H5Dcreate2(f, "text", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, txt);
        H5Dclose(d), H5Sclose(sp);
    } else if (k == SEED_HUGE_N) {
        hsize_t hd[5] = {(hsize_t)1 << 62, C, T, H, W}, ht[3] = {(hsize_t)1 << 62, L, Dt};
        H5Dclose(seed_empty_chunked(f, "latents", 5, hd, H5T_IEEE_F32LE));
        H5Dclose(seed_empty_chunked(f, "text", 3, ht, H5T_IEEE_F32LE));
    } else if (k == SEED_DIMS_OVERFLOW) {
        hsize_t hd[5] = {N, 1 << 24, 1 << 24, 1 << 24, 1 << 24}, ht[3] = {N, 1 << 24, 1 << 24};
        H5Dclose(seed_empty_chunked(f, "latents", 5, hd, H5T_IEEE_F32LE));
        H5Dclose(seed_empty_chunked(f, "text", 3, ht, H5T_IEEE_F32LE));
    }
    if (f >= 0 && H5Fclose(f) < 0) rc = -1;
    h5_unlock();
    return rc;
}

#endif
