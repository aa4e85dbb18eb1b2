/*
 * h5util.c — HDF5 helpers: quiet one-line errors, float32/16/bf16 row reads, and an
 * atomic writer (temp file -> fsync -> rename). See h5util.h for the storage rules.
 */
#include "data/h5util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "core/size.h"
#include "core/half.h"

/* ------------------------------------------------------------------ init / lock */

static pthread_once_t h5_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t h5_mutex;

static void h5_once_fn(void) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE); /* helpers call each other */
    pthread_mutex_init(&h5_mutex, &a);
    pthread_mutexattr_destroy(&a);
    H5open();
}

void h5_init(void) {
    pthread_once(&h5_once, h5_once_fn);
    /* the automatic error printing is per thread in thread-safe builds: repeat it */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void h5_lock(void) {
    h5_init();
    pthread_mutex_lock(&h5_mutex);
}

void h5_unlock(void) { pthread_mutex_unlock(&h5_mutex); }

/* ------------------------------------------------------------------ reading */

hid_t h5u_open_ro(const char *path, char *err, size_t errlen) {
    h5_init();
    if (osp_check_regular(path, err, errlen)) return -1; /* a FIFO would block H5Fis_hdf5 */
    if (access(path, R_OK) != 0) {
        snprintf(err, errlen, "%s: cannot open (%s)", path, strerror(errno));
        return -1;
    }
    if (H5Fis_hdf5(path) <= 0) {
        snprintf(err, errlen, "%s: not an HDF5 file", path);
        return -1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) snprintf(err, errlen, "%s: HDF5 open failed (corrupt or locked file?)", path);
    return f;
}

int h5u_exists(hid_t loc, const char *name) {
    char buf[1024];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof buf) return 0;
    if (strcmp(name, "/") == 0) return 1;
    memcpy(buf, name, n + 1);
    /* H5Lexists fails (rather than returning 0) when a middle component is missing,
     * so check each prefix "a", "a/b", ... in turn */
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            int ok = H5Lexists(loc, buf, H5P_DEFAULT) > 0;
            buf[i] = c;
            if (!ok) return 0;
        }
    }
    return 1;
}

int h5_has(const char *path, const char *dset) {
    char err[256];
    h5_lock();
    hid_t f = h5u_open_ro(path, err, sizeof err);
    int ok = 0;
    if (f >= 0) {
        ok = h5u_exists(f, dset);
        H5Fclose(f);
    }
    h5_unlock();
    return ok;
}

const char *h5u_dtype_name(h5u_dtype t) {
    static const char *n[] = {"float32", "float64", "float16", "bfloat16", "unsupported"};
    return n[t <= H5U_BAD ? t : H5U_BAD];
}

int h5u_attr_str(hid_t obj, const char *name, char *buf, size_t buflen) {
    if (buflen == 0 || H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a), mt = -1, sp = H5Aget_space(a);
    int rc = -1;
    /* one string only: H5Aread writes every element, and an array-valued attribute would
     * overrun the single pointer / single string read into below */
    hssize_t npts = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (sp >= 0) H5Sclose(sp);
    if (npts == 1 && ft >= 0 && H5Tget_class(ft) == H5T_STRING) {
        mt = H5Tcopy(H5T_C_S1);
        H5Tset_cset(mt, H5Tget_cset(ft)); /* ASCII <-> UTF-8 is not a conversion HDF5 does */
        if (H5Tis_variable_str(ft) > 0) {
            char *s = NULL;
            H5Tset_size(mt, H5T_VARIABLE);
            if (H5Aread(a, mt, &s) >= 0 && s) {
                snprintf(buf, buflen, "%s", s);
                H5free_memory(s);
                rc = 0;
            }
        } else {
            size_t sz = H5Tget_size(ft);
            char *s = calloc(sz + 1, 1);
            H5Tset_size(mt, sz);
            if (s && H5Aread(a, mt, s) >= 0) {
                snprintf(buf, buflen, "%s", s);
                rc = 0;
            }
            free(s);
        }
    }
    if (mt >= 0) H5Tclose(mt);
    if (ft >= 0) H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

h5u_dtype h5u_dtype_of(hid_t dset, char *why, size_t whylen) {
    hid_t t = H5Dget_type(dset);
    if (t < 0) {
        snprintf(why, whylen, "unreadable type");
        return H5U_BAD;
    }
    H5T_class_t cls = H5Tget_class(t);
    size_t sz = H5Tget_size(t);
    h5u_dtype r = H5U_BAD;
    if (cls == H5T_FLOAT) {
        if (sz == 4) r = H5U_F32;
        else if (sz == 8) r = H5U_F64;
        else if (sz == 2) {
            size_t spos, epos, esize, mpos, msize;
            H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize);
            if (spos == 15 && epos == 10 && esize == 5 && mpos == 0 && msize == 10) r = H5U_F16;
            else if (spos == 15 && epos == 7 && esize == 8 && mpos == 0 && msize == 7) r = H5U_BF16;
            else snprintf(why, whylen, "2-byte float with unknown layout");
        } else
            snprintf(why, whylen, "float of %zu bytes", sz);
    } else if (cls == H5T_INTEGER) {
        char dt[64];
        if (sz == 2 && h5u_attr_str(dset, "dtype", dt, sizeof dt) == 0) {
            if (strcmp(dt, "bfloat16") == 0) r = H5U_BF16;
            else if (strcmp(dt, "float16") == 0) r = H5U_F16;
            else snprintf(why, whylen, "16-bit integer with dtype attribute \"%s\"", dt);
        } else
            snprintf(why, whylen, "%s%zu%s", H5Tget_sign(t) == H5T_SGN_NONE ? "uint" : "int", 8 * sz,
                     sz == 2 ? " without dtype=\"bfloat16\"/\"float16\" attribute" : "");
    } else if (cls == H5T_STRING)
        snprintf(why, whylen, "string");
    else
        snprintf(why, whylen, "non-numeric type class %d", (int)cls);
    H5Tclose(t);
    return r;
}

/* select rows [row0, row0+nrows) along dim 0 in the file space of `dset` */
static hid_t select_rows(hid_t dset, int64_t row0, int64_t nrows) {
    hid_t sp = H5Dget_space(dset);
    if (sp < 0) return -1;
    int rank = H5Sget_simple_extent_ndims(sp);
    if (rank <= 0) return sp; /* scalar: whole thing */
    hsize_t dims[H5S_MAX_RANK], start[H5S_MAX_RANK] = {0}, count[H5S_MAX_RANK];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    for (int i = 0; i < rank; i++) count[i] = dims[i];
    start[0] = (hsize_t)row0;
    count[0] = (hsize_t)nrows;
    if (row0 < 0 || (hsize_t)(row0 + nrows) > dims[0] ||
        H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, count, NULL) < 0) {
        H5Sclose(sp);
        return -1;
    }
    return sp;
}

/* the 2-byte memory type that reads raw bits of a 16-bit dataset into uint16 */
static hid_t raw16_memtype(hid_t dset) {
    hid_t ft = H5Dget_type(dset);
    if (ft < 0) return -1;
    hid_t mt;
    if (H5Tget_class(ft) == H5T_FLOAT) { /* same float layout, host byte order: no value change */
        mt = H5Tcopy(ft);
        H5Tset_order(mt, H5Tget_order(H5T_NATIVE_UINT16));
    } else
        mt = H5Tcopy(H5T_NATIVE_UINT16);
    H5Tclose(ft);
    return mt;
}

int h5u_read_rows(hid_t dset, h5u_dtype t, int64_t row0, int64_t nrows, int64_t row_elems, float *out,
                  uint16_t *scratch) {
    if (t == H5U_BAD || (t >= H5U_F16 && !scratch)) return -1;
    hsize_t n = (hsize_t)(nrows * row_elems);
    if (n == 0) return 0;
    hid_t fs = select_rows(dset, row0, nrows);
    if (fs < 0) return -1;
    hid_t ms = H5Screate_simple(1, &n, NULL);
    int rc = -1;
    if (t == H5U_F32 || t == H5U_F64) {
        rc = H5Dread(dset, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, out) < 0 ? -1 : 0;
    } else {
        hid_t mt = raw16_memtype(dset);
        if (mt >= 0 && H5Dread(dset, mt, ms, fs, H5P_DEFAULT, scratch) >= 0) {
            if (t == H5U_F16)
                for (hsize_t i = 0; i < n; i++) out[i] = half_f16_to_f32(scratch[i]);
            else
                for (hsize_t i = 0; i < n; i++) out[i] = half_bf16_to_f32(scratch[i]);
            rc = 0;
        }
        if (mt >= 0) H5Tclose(mt);
    }
    H5Sclose(ms);
    H5Sclose(fs);
    return rc;
}

int h5u_read_string(hid_t dset, int64_t i, char *buf, size_t buflen) {
    if (buflen == 0) return -1;
    buf[0] = '\0';
    hid_t ft = H5Dget_type(dset);
    if (ft < 0) return -1;
    int rc = -1;
    hid_t fs = -1, ms = -1, mt = -1;
    if (H5Tget_class(ft) != H5T_STRING) goto done;
    if ((fs = select_rows(dset, i, 1)) < 0) goto done;
    hsize_t one = 1;
    ms = H5Screate_simple(1, &one, NULL);
    mt = H5Tcopy(H5T_C_S1);
    H5Tset_cset(mt, H5Tget_cset(ft));
    if (H5Tis_variable_str(ft) > 0) {
        char *s = NULL;
        H5Tset_size(mt, H5T_VARIABLE);
        if (H5Dread(dset, mt, ms, fs, H5P_DEFAULT, &s) >= 0) {
            snprintf(buf, buflen, "%s", s ? s : "");
            if (s) H5free_memory(s);
            rc = 0;
        }
    } else {
        size_t sz = H5Tget_size(ft);
        char *s = calloc(sz + 1, 1);
        H5Tset_size(mt, sz);
        if (s && H5Dread(dset, mt, ms, fs, H5P_DEFAULT, s) >= 0) {
            snprintf(buf, buflen, "%s", s);
            rc = 0;
        }
        free(s);
    }
done:
    if (mt >= 0) H5Tclose(mt);
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    H5Tclose(ft);
    return rc;
}

/* open `dset` in `path` and check its rank; fills dims (padded with 1) and the count */
static hid_t open_checked(const char *path, const char *dset, int rank, int64_t *dims, int64_t *count,
                          hid_t *file, char *err, size_t errlen) {
    *file = h5u_open_ro(path, err, errlen);
    if (*file < 0) return -1;
    if (!h5u_exists(*file, dset)) {
        snprintf(err, errlen, "%s: missing dataset `%s`", path, dset);
        goto fail;
    }
    hid_t d = H5Dopen2(*file, dset, H5P_DEFAULT);
    if (d < 0) {
        snprintf(err, errlen, "%s: `%s` is not a dataset", path, dset);
        goto fail;
    }
    hid_t sp = H5Dget_space(d);
    int r = H5Sget_simple_extent_ndims(sp);
    hsize_t hd[H5S_MAX_RANK];
    H5Sget_simple_extent_dims(sp, hd, NULL);
    H5Sclose(sp);
    if (r < 0 || r > H5U_MAXRANK || (rank >= 0 && r != rank)) {
        snprintf(err, errlen, "%s: dataset `%s` has rank %d, expected %d", path, dset, r, rank);
        H5Dclose(d);
        goto fail;
    }
    for (int i = 0; i < H5U_MAXRANK; i++) dims[i] = i < r && hd[i] <= INT64_MAX ? (int64_t)hd[i] : (i < r ? -1 : 1);
    *count = osp_dims_product(dims, r);
    if (*count < 0 || *count > INT64_MAX / 8) {
        snprintf(err, errlen, "%s: dataset `%s` is too large (its dimensions overflow a size)", path, dset);
        H5Dclose(d);
        goto fail;
    }
    return d;
fail:
    H5Fclose(*file);
    *file = -1;
    return -1;
}

int h5_read_f32(const char *path, const char *dset, int rank, int64_t *dims, float **data, char *err,
                size_t errlen) {
    *data = NULL;
    h5_lock();
    hid_t f;
    int64_t count;
    hid_t d = open_checked(path, dset, rank, dims, &count, &f, err, errlen);
    if (d < 0) {
        h5_unlock();
        return -1;
    }
    int rc = -1;
    char why[128] = "";
    h5u_dtype t = h5u_dtype_of(d, why, sizeof why);
    if (t == H5U_BAD) {
        snprintf(err, errlen, "%s: dataset `%s` has unsupported dtype %s (want float32/float16/bfloat16)", path,
                 dset, why);
    } else {
        /* a file can claim more than memory holds: an error naming it, and the HDF5 ids closed */
        float *out = malloc((size_t)count * sizeof(float) + 1);
        uint16_t *scr = t >= H5U_F16 ? malloc((size_t)count * sizeof(uint16_t) + 1) : NULL;
        if (!out || (t >= H5U_F16 && !scr)) {
            snprintf(err, errlen, "%s: dataset `%s` has %lld values, more than memory holds", path, dset,
                     (long long)count);
            free(out), free(scr);
            H5Dclose(d);
            H5Fclose(f);
            h5_unlock();
            return -1;
        }
        hid_t sp = H5Dget_space(d);
        int sc = H5Sget_simple_extent_ndims(sp) == 0; /* scalar */
        H5Sclose(sp);
        int ok = sc ? H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0
                    : h5u_read_rows(d, t, 0, dims[0], dims[0] ? count / dims[0] : 0, out, scr) == 0;
        free(scr);
        if (!ok) {
            snprintf(err, errlen, "%s: cannot read dataset `%s`", path, dset);
            free(out);
        } else {
            *data = out;
            rc = 0;
        }
    }
    H5Dclose(d);
    H5Fclose(f);
    h5_unlock();
    return rc;
}

int h5_read_i32(const char *path, const char *dset, int rank, int64_t *dims, int32_t **data, char *err,
                size_t errlen) {
    *data = NULL;
    h5_lock();
    hid_t f;
    int64_t count;
    hid_t d = open_checked(path, dset, rank, dims, &count, &f, err, errlen);
    if (d < 0) {
        h5_unlock();
        return -1;
    }
    int rc = -1;
    hid_t t = H5Dget_type(d);
    if (H5Tget_class(t) != H5T_INTEGER) {
        snprintf(err, errlen, "%s: dataset `%s` is not an integer dataset", path, dset);
    } else {
        int32_t *out = osp_malloc((size_t)count * sizeof(int32_t));
        if (count && H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
            snprintf(err, errlen, "%s: cannot read dataset `%s` as int32", path, dset);
            free(out);
        } else {
            *data = out;
            rc = 0;
        }
    }
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);
    h5_unlock();
    return rc;
}

/* ------------------------------------------------------------------ writer */

struct h5_writer {
    hid_t file;
    char path[2048];
    char tmp[2100];
    char err[2600]; /* path + message, never truncated */
};

static int wfail(h5_writer *w, const char *fmt, const char *a) {
    if (!w->err[0]) {
        char msg[400];
        snprintf(msg, sizeof msg, fmt, a);
        snprintf(w->err, sizeof w->err, "%s: %s", w->path, msg);
    }
    return -1;
}

const char *h5w_error(const h5_writer *w) { return w->err; }

h5_writer *h5w_open(const char *path, char *err, size_t errlen) {
    h5_writer *w = osp_calloc(1, sizeof *w);
    if (strlen(path) >= sizeof w->path) {
        snprintf(err, errlen, "%.200s...: path too long", path);
        free(w);
        return NULL;
    }
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%d", path, (int)getpid());
    /* probe with plain open() first: it gives a real reason (ENOENT, EACCES...) */
    int fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create (%s)", path, strerror(errno));
        free(w);
        return NULL;
    }
    close(fd);
    osp_temp_register(w->tmp); /* removed if osp dies or is interrupted before h5w_close */
    h5_lock();
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    h5_unlock();
    if (w->file < 0) {
        snprintf(err, errlen, "%s: cannot create HDF5 file", path);
        unlink(w->tmp);
        osp_temp_unregister(w->tmp);
        free(w);
        return NULL;
    }
    return w;
}

/* create dataset `name` (with intermediate groups) of the given file type and shape */
static hid_t wcreate(h5_writer *w, const char *name, hid_t ftype, int rank, const int64_t *dims) {
    if (w->err[0]) return -1;
    if (rank < 0 || rank > H5U_MAXRANK) return wfail(w, "dataset `%s`: bad rank", name);
    hsize_t hd[H5U_MAXRANK];
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0) return wfail(w, "dataset `%s`: negative dimension", name);
        hd[i] = (hsize_t)dims[i];
    }
    if (h5u_exists(w->file, name)) return wfail(w, "dataset `%s` already exists", name);
    hid_t sp = rank ? H5Screate_simple(rank, hd, NULL) : H5Screate(H5S_SCALAR);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t d = H5Dcreate2(w->file, name, ftype, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    H5Sclose(sp);
    if (d < 0) wfail(w, "cannot create dataset `%s`", name);
    return d;
}

static int64_t nelems(int rank, const int64_t *dims) {
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    return n;
}

static int wsimple(h5_writer *w, const char *name, hid_t ftype, hid_t mtype, int rank, const int64_t *dims,
                   const void *data, const char *dtype_attr) {
    h5_lock();
    hid_t d = wcreate(w, name, ftype, rank, dims);
    int rc = -1;
    if (d >= 0) {
        rc = 0;
        if (nelems(rank, dims) > 0 && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
            rc = wfail(w, "cannot write dataset `%s`", name);
        H5Dclose(d);
        if (rc == 0 && dtype_attr) rc = h5w_attr_str(w, name, "dtype", dtype_attr);
    }
    h5_unlock();
    return rc;
}

int h5w_f32(h5_writer *w, const char *dset, int rank, const int64_t *dims, const float *data) {
    return wsimple(w, dset, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, rank, dims, data, NULL);
}

int h5w_i32(h5_writer *w, const char *dset, int rank, const int64_t *dims, const int32_t *data) {
    return wsimple(w, dset, H5T_STD_I32LE, H5T_NATIVE_INT32, rank, dims, data, NULL);
}

/* the IEEE half type exactly as h5py builds it, so numpy reads it back as float16 */
static hid_t f16_type(H5T_order_t order) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    H5Tset_order(t, order);
    return t;
}

int h5w_f16(h5_writer *w, const char *dset, int rank, const int64_t *dims, const float *data) {
    int64_t n = nelems(rank, dims);
    uint16_t *h = osp_malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) h[i] = half_f32_to_f16(data[i]);
    h5_lock();
    hid_t ft = f16_type(H5T_ORDER_LE), mt = f16_type(H5Tget_order(H5T_NATIVE_UINT16));
    int rc = wsimple(w, dset, ft, mt, rank, dims, h, NULL);
    H5Tclose(ft);
    H5Tclose(mt);
    h5_unlock();
    free(h);
    return rc;
}

int h5w_bf16(h5_writer *w, const char *dset, int rank, const int64_t *dims, const float *data) {
    int64_t n = nelems(rank, dims);
    uint16_t *h = osp_malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) h[i] = half_f32_to_bf16(data[i]);
    int rc = wsimple(w, dset, H5T_STD_U16LE, H5T_NATIVE_UINT16, rank, dims, h, "bfloat16");
    free(h);
    return rc;
}

static hid_t vlen_str_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

int h5w_strings(h5_writer *w, const char *dset, int n, const char *const *strs) {
    const char **s = osp_malloc((size_t)(n > 0 ? n : 1) * sizeof *s);
    for (int i = 0; i < n; i++) s[i] = strs[i] ? strs[i] : "";
    int64_t dims[1] = {n};
    h5_lock();
    hid_t t = vlen_str_type();
    int rc = wsimple(w, dset, t, t, 1, dims, s, NULL);
    H5Tclose(t);
    h5_unlock();
    free(s);
    return rc;
}

int h5w_f32_create(h5_writer *w, const char *dset, int rank, const int64_t *dims) {
    h5_lock();
    hid_t d = wcreate(w, dset, H5T_IEEE_F32LE, rank, dims);
    if (d >= 0) H5Dclose(d);
    h5_unlock();
    return d >= 0 ? 0 : -1;
}

int h5w_f32_rows(h5_writer *w, const char *dset, int64_t row0, int64_t nrows, const float *data) {
    if (w->err[0]) return -1;
    h5_lock();
    int rc = -1;
    hid_t d = h5u_exists(w->file, dset) ? H5Dopen2(w->file, dset, H5P_DEFAULT) : -1;
    if (d < 0) {
        rc = wfail(w, "dataset `%s` not created before writing rows", dset);
    } else {
        hid_t fs = select_rows(d, row0, nrows);
        hssize_t n = fs >= 0 ? H5Sget_select_npoints(fs) : 0;
        if (fs < 0 || n <= 0) {
            rc = wfail(w, "dataset `%s`: row range out of bounds", dset);
        } else {
            hsize_t hn = (hsize_t)n;
            hid_t ms = H5Screate_simple(1, &hn, NULL);
            rc = H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, data) < 0
                     ? wfail(w, "cannot write rows of dataset `%s`", dset)
                     : 0;
            H5Sclose(ms);
        }
        if (fs >= 0) H5Sclose(fs);
        H5Dclose(d);
    }
    h5_unlock();
    return rc;
}

/* open obj, replace attribute `name` with a scalar of type t holding *val */
static int wattr(h5_writer *w, const char *obj, const char *name, hid_t t, const void *val) {
    if (w->err[0]) return -1;
    h5_lock();
    int rc = -1;
    hid_t o = H5Oopen(w->file, obj, H5P_DEFAULT);
    if (o < 0) {
        rc = wfail(w, "attribute target `%s` does not exist", obj);
    } else {
        if (H5Aexists(o, name) > 0) H5Adelete(o, name);
        hid_t sp = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(o, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        rc = (a < 0 || H5Awrite(a, t, val) < 0) ? wfail(w, "cannot write attribute `%s`", name) : 0;
        if (a >= 0) H5Aclose(a);
        H5Sclose(sp);
        H5Oclose(o);
    }
    h5_unlock();
    return rc;
}

int h5w_attr_str(h5_writer *w, const char *obj, const char *name, const char *value) {
    h5_lock();
    hid_t t = vlen_str_type();
    int rc = wattr(w, obj, name, t, &value);
    H5Tclose(t);
    h5_unlock();
    return rc;
}

int h5w_attr_i64(h5_writer *w, const char *obj, const char *name, int64_t value) {
    return wattr(w, obj, name, H5T_NATIVE_INT64, &value);
}
int h5w_attr_f64(h5_writer *w, const char *obj, const char *name, double value) {
    return wattr(w, obj, name, H5T_NATIVE_DOUBLE, &value);
}

void h5w_abort(h5_writer *w) {
    if (!w) return;
    h5_lock();
    if (w->file >= 0) H5Fclose(w->file);
    h5_unlock();
    unlink(w->tmp);
    osp_temp_unregister(w->tmp);
    free(w);
}

int h5w_close(h5_writer *w, char *err, size_t errlen) {
    h5_lock();
    if (!w->err[0] && H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0) wfail(w, "%s", "HDF5 flush failed");
    if (H5Fclose(w->file) < 0) wfail(w, "%s", "HDF5 close failed");
    h5_unlock();
    w->file = -1;
    if (!w->err[0]) {
        int fd = open(w->tmp, O_RDONLY);
        if (fd < 0 || fsync(fd) != 0) wfail(w, "fsync failed (%s)", strerror(errno));
        if (fd >= 0) close(fd);
    }
    if (!w->err[0] && rename(w->tmp, w->path) != 0) wfail(w, "rename from temp failed (%s)", strerror(errno));
    int rc = 0;
    if (w->err[0]) {
        snprintf(err, errlen, "%s", w->err);
        unlink(w->tmp);
        rc = -1;
    } else
        osp_fsync_dir_of(w->path);
    osp_temp_unregister(w->tmp);
    free(w);
    return rc;
}
