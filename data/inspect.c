/*
 * inspect.c — `osp data inspect` (see inspect.h). The schema check IS dataset_open: the
 * report is only printed for a file the training reader accepted, and a file it rejects
 * fails with the reader's own message. What the reader does not keep (dtypes, text_len
 * values, prompts, source paths, value statistics) is read here through a second,
 * read-only handle after the reader is closed.
 */
#include "data/inspect.h"

#include <math.h>
#include <string.h>

#include "core/common.h"
#include "data/dataset.h"
#include "data/h5util.h"

/* "name" at the root bucket "/", else "bucket/name" */
static void member(const char *bucket, const char *name, char *out, size_t n) {
    if (!strcmp(bucket, "/")) snprintf(out, n, "%s", name);
    else snprintf(out, n, "%s/%s", bucket, name);
}

static hid_t open_member(hid_t f, const char *bucket, const char *name) {
    char p[600];
    member(bucket, name, p, sizeof p);
    return h5u_exists(f, p) ? H5Dopen2(f, p, H5P_DEFAULT) : -1;
}

/* element type as a word: the float encodings by h5util's rules, integers by size/sign */
static void type_word(hid_t d, char *out, size_t n) {
    hid_t t = H5Dget_type(d);
    H5T_class_t cls = H5Tget_class(t);
    size_t sz = H5Tget_size(t);
    char why[128];
    h5u_dtype k = h5u_dtype_of(d, why, sizeof why);
    if (k != H5U_BAD) snprintf(out, n, "%s", h5u_dtype_name(k));
    else if (cls == H5T_INTEGER) snprintf(out, n, "%s%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "uint" : "int", 8 * sz);
    else if (cls == H5T_STRING) snprintf(out, n, "%s", H5Tis_variable_str(t) > 0 ? "vlen string" : "fixed string");
    else snprintf(out, n, "%s", why);
    H5Tclose(t);
}

static int64_t dim0(hid_t d, int64_t *dims, int *rank) {
    hid_t sp = H5Dget_space(d);
    hsize_t hd[H5S_MAX_RANK] = {0};
    int r = H5Sget_simple_extent_ndims(sp);
    if (r > 0) H5Sget_simple_extent_dims(sp, hd, NULL);
    H5Sclose(sp);
    for (int i = 0; i < r && dims; i++) dims[i] = (int64_t)hd[i];
    if (rank) *rank = r;
    return r > 0 ? (int64_t)hd[0] : 0;
}

/* all of a 1-D integer dataset as int */
static int *read_ints(hid_t d, int64_t n) {
    int *v = osp_malloc((size_t)(n ? n : 1) * sizeof(int));
    if (H5Dread(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
        free(v);
        return NULL;
    }
    return v;
}

/* text_len statistics; `lens` may be NULL (absent: every sample uses L) */
static void print_text_len(FILE *out, const int *lens, int64_t n, int L) {
    if (!lens) {
        fprintf(out, "  text_len  absent (every sample uses all %d rows)\n", L);
        return;
    }
    int lo = lens[0], hi = lens[0];
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        lo = lens[i] < lo ? lens[i] : lo;
        hi = lens[i] > hi ? lens[i] : hi;
        s += lens[i];
    }
    fprintf(out, "  text_len  min %d, mean %.1f, max %d (of L = %d)\n", lo, s / (double)n, hi, L);
}

/* the first `k` entries of the string datasets `prompts` (and `sources`, when present) */
static void print_prompts(FILE *out, hid_t prm, hid_t src, int64_t n, int k) {
    if (prm < 0 || k <= 0) return;
    for (int64_t i = 0; i < n && i < k; i++) {
        char p[512], s[512] = "";
        if (h5u_read_string(prm, i, p, sizeof p)) snprintf(p, sizeof p, "(unreadable)");
        if (src >= 0) h5u_read_string(src, i, s, sizeof s);
        fprintf(out, "    [%lld] \"%s\"%s%s\n", (long long)i, p, s[0] ? "  <- " : "", s);
    }
}

/* root attributes that are scalars or short strings (written by the data tools: fps, VAE, ...) */
static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *info, void *arg) {
    (void)info;
    FILE *out = arg;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return 0;
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    H5T_class_t cls = H5Tget_class(t);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    char buf[256];
    if (cls == H5T_STRING && h5u_attr_str(loc, name, buf, sizeof buf) == 0) fprintf(out, "  %s = %s\n", name, buf);
    else if (cls == H5T_INTEGER && np == 1) {
        long long v;
        if (H5Aread(a, H5T_NATIVE_LLONG, &v) >= 0) fprintf(out, "  %s = %lld\n", name, v);
    } else if (cls == H5T_FLOAT && np >= 1 && np <= 32) {
        double v[32];
        if (H5Aread(a, H5T_NATIVE_DOUBLE, v) >= 0) {
            fprintf(out, "  %s = ", name);
            for (hssize_t i = 0; i < np; i++) fprintf(out, "%s%g", i ? ", " : "", v[i]);
            fprintf(out, "\n");
        }
    }
    H5Sclose(sp);
    H5Tclose(t);
    H5Aclose(a);
    return 0;
}

static void print_root_attrs(FILE *out, hid_t f) {
    H5O_info_t oi;
#if H5_VERSION_GE(1, 12, 0)
    if (H5Oget_info3(f, &oi, H5O_INFO_NUM_ATTRS) < 0 || oi.num_attrs == 0) return;
#else
    if (H5Oget_info2(f, &oi, H5O_INFO_NUM_ATTRS) < 0 || oi.num_attrs == 0) return;
#endif
    fprintf(out, "attributes:\n");
    hsize_t idx = 0;
    H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_cb, out);
}

/* Value checks over the first `nr` rows of one bucket: latent mean/std overall and the range of
 * the per-channel means/stds (normalised Wan latents sit near 0 and 1), non-finite values (an
 * error: training would stop on them), non-zero text rows past text_len (a warning). */
static int check_values(FILE *out, const char *path, hid_t lat, hid_t txt, const int *lens, const char *bucket,
                        int64_t nr, int C, int64_t per_c, int L, int Dt, char *err, size_t errlen) {
    char why[128], nm[600];
    h5u_dtype lt = h5u_dtype_of(lat, why, sizeof why), tt = h5u_dtype_of(txt, why, sizeof why);
    int64_t lrow = (int64_t)C * per_c, trow = (int64_t)L * Dt;
    float *buf = osp_malloc((size_t)(lrow > trow ? lrow : trow) * sizeof(float));
    uint16_t *scr = osp_malloc((size_t)(lrow > trow ? lrow : trow) * sizeof(uint16_t));
    double *cs = osp_calloc((size_t)C, sizeof(double)), *cq = osp_calloc((size_t)C, sizeof(double));
    int64_t dirty = 0, rc = 0;
    for (int64_t r = 0; r < nr && rc == 0; r++) {
        if (h5u_read_rows(lat, lt, r, 1, lrow, buf, scr)) {
            member(bucket, "latents", nm, sizeof nm);
            snprintf(err, errlen, "%s: cannot read row %lld of dataset `%s`", path, (long long)r, nm), rc = -1;
            break;
        }
        for (int c = 0; c < C && rc == 0; c++)
            for (int64_t i = 0; i < per_c; i++) {
                float v = buf[c * per_c + i];
                if (!isfinite(v)) {
                    member(bucket, "latents", nm, sizeof nm);
                    snprintf(err, errlen, "%s: dataset `%s` row %lld has a non-finite value (%g)", path, nm,
                             (long long)r, v), rc = -1;
                    break;
                }
                cs[c] += v, cq[c] += (double)v * v;
            }
        if (rc) break;
        if (h5u_read_rows(txt, tt, r, 1, trow, buf, scr)) {
            member(bucket, "text", nm, sizeof nm);
            snprintf(err, errlen, "%s: cannot read row %lld of dataset `%s`", path, (long long)r, nm), rc = -1;
            break;
        }
        int tl = lens ? lens[r] : L, nz = 0;
        for (int64_t i = 0; i < trow; i++) {
            if (!isfinite(buf[i])) {
                member(bucket, "text", nm, sizeof nm);
                snprintf(err, errlen, "%s: dataset `%s` row %lld has a non-finite value (%g)", path, nm, (long long)r,
                         buf[i]), rc = -1;
                break;
            }
            if (i >= (int64_t)tl * Dt && buf[i] != 0) nz = 1;
        }
        dirty += nz;
    }
    if (rc == 0 && nr > 0) {
        double s = 0, q = 0, n = (double)nr * per_c, mlo = INFINITY, mhi = -INFINITY, slo = INFINITY, shi = -INFINITY;
        for (int c = 0; c < C; c++) {
            double m = cs[c] / n, sd = sqrt(fmax(cq[c] / n - m * m, 0));
            s += cs[c], q += cq[c];
            mlo = fmin(mlo, m), mhi = fmax(mhi, m), slo = fmin(slo, sd), shi = fmax(shi, sd);
        }
        double m = s / (n * C), sd = sqrt(fmax(q / (n * C) - m * m, 0));
        fprintf(out, "  values    first %lld row(s): latents mean %.3f, std %.3f (per channel: mean %.3f..%.3f, "
                     "std %.3f..%.3f), all finite\n",
                (long long)nr, m, sd, mlo, mhi, slo, shi);
        if (dirty)
            fprintf(out, "  warning: %lld of %lld checked row(s) have non-zero `text` rows past text_len "
                         "(the model expects zeros there)\n",
                    (long long)dirty, (long long)nr);
    }
    free(buf), free(scr), free(cs), free(cq);
    return (int)rc;
}

/* ------------------------------------------------------------------ prompt-embedding files */

static int inspect_prompt_file(const char *path, hid_t f, const inspect_opts *o, FILE *out, char *err,
                               size_t errlen) {
    hid_t t = H5Dopen2(f, "text", H5P_DEFAULT);
    if (t < 0) return snprintf(err, errlen, "%s: `text` is not a dataset", path), -1;
    int64_t d[H5S_MAX_RANK] = {0}, nd[H5S_MAX_RANK] = {0};
    int r, rc = -1;
    char ty[160], why[128];
    hid_t tl = -1, ng = -1, pr = -1;
    int *lens = NULL;
    dim0(t, d, &r);
    if (r != 3) {
        snprintf(err, errlen, "%s: dataset `text` has rank %d, expected 3 [N,L,Dt]", path, r);
        goto done;
    }
    if (d[0] < 1) {
        snprintf(err, errlen, "%s: dataset `text` is empty (N=0)", path);
        goto done;
    }
    if (h5u_dtype_of(t, why, sizeof why) == H5U_BAD) {
        snprintf(err, errlen, "%s: dataset `text` has unsupported dtype %s (want float32, float16 or bfloat16)", path,
                 why);
        goto done;
    }
    type_word(t, ty, sizeof ty);
    fprintf(out, "%s: prompt embeddings (what `osp sample --prompts` reads)\n", path);
    print_root_attrs(out, f);
    fprintf(out, "  text      [%lld, %lld, %lld] %s\n", (long long)d[0], (long long)d[1], (long long)d[2], ty);
    if (h5u_exists(f, "text_len") && (tl = H5Dopen2(f, "text_len", H5P_DEFAULT)) >= 0) {
        if (dim0(tl, NULL, &r) != d[0] || r != 1 || !(lens = read_ints(tl, d[0]))) {
            snprintf(err, errlen, "%s: dataset `text_len` must be [N] integers with N = %lld", path, (long long)d[0]);
            goto done;
        }
    }
    print_text_len(out, lens, d[0], (int)d[1]);
    if (h5u_exists(f, "negative") && (ng = H5Dopen2(f, "negative", H5P_DEFAULT)) >= 0) {
        dim0(ng, nd, &r);
        if (r != 2 || nd[0] != d[1] || nd[1] != d[2]) {
            snprintf(err, errlen, "%s: negative must be [%lld,%lld]", path, (long long)d[1], (long long)d[2]);
            goto done;
        }
        type_word(ng, ty, sizeof ty);
        char np[512] = "";
        if (h5u_exists(f, "negative_prompt")) {
            hid_t a = H5Dopen2(f, "negative_prompt", H5P_DEFAULT);
            if (a >= 0) h5u_read_string(a, 0, np, sizeof np), H5Dclose(a);
        }
        fprintf(out, "  negative  [%lld, %lld] %s%s%s%s\n", (long long)nd[0], (long long)nd[1], ty, np[0] ? " \"" : "",
                np, np[0] ? "\"" : "");
    } else
        fprintf(out, "  negative  absent (sampling guides against an all-zero embedding)\n");
    if (h5u_exists(f, "prompts")) pr = H5Dopen2(f, "prompts", H5P_DEFAULT);
    if (pr >= 0 && dim0(pr, NULL, NULL) != d[0]) {
        snprintf(err, errlen, "%s: dataset `prompts` has N=%lld but `text` has N=%lld", path,
                 (long long)dim0(pr, NULL, NULL), (long long)d[0]);
        goto done;
    }
    if (pr >= 0 && o->prompts > 0) fprintf(out, "  prompts:\n");
    print_prompts(out, pr, -1, d[0], o->prompts);
    rc = 0;
done:
    free(lens);
    if (tl >= 0) H5Dclose(tl);
    if (ng >= 0) H5Dclose(ng);
    if (pr >= 0) H5Dclose(pr);
    H5Dclose(t);
    return rc;
}

/* ------------------------------------------------------------------ training files */

int inspect_file(const char *path, const inspect_opts *o, FILE *out, char *err, size_t errlen) {
    /* a prompt file: root `text`, no `latents` anywhere the reader would look */
    h5_lock();
    hid_t f = h5u_open_ro(path, err, errlen);
    if (f < 0) {
        h5_unlock();
        return -1;
    }
    if (h5u_exists(f, "text") && !h5u_exists(f, "latents")) {
        int rc = inspect_prompt_file(path, f, o, out, err, errlen);
        H5Fclose(f);
        h5_unlock();
        return rc;
    }
    H5Fclose(f);
    h5_unlock();

    /* the schema check: exactly what `osp train` does when it opens the file */
    osp_dataset *ds;
    if (dataset_open(&ds, path, 0, 1, 0, 1, 0, err, errlen)) return -1;
    int nb = dataset_num_buckets(ds), L = dataset_L(ds), Dt = dataset_Dt(ds);
    char (*names)[256] = osp_malloc((size_t)nb * sizeof *names);
    int64_t(*shape)[5] = osp_malloc((size_t)nb * sizeof *shape);
    for (int k = 0; k < nb; k++) {
        snprintf(names[k], sizeof names[k], "%s", dataset_bucket_name(ds, k));
        shape[k][0] = dataset_bucket_size(ds, k), shape[k][1] = dataset_C(ds, k), shape[k][2] = dataset_T(ds, k);
        shape[k][3] = dataset_H(ds, k), shape[k][4] = dataset_W(ds, k);
    }
    int total = dataset_num_samples(ds);
    dataset_close(ds);

    fprintf(out, "%s: %d sample(s) in %d bucket(s), text [L=%d, Dt=%d]\n", path, total, nb, L, Dt);
    h5_lock();
    f = h5u_open_ro(path, err, errlen);
    int rc = f < 0 ? -1 : 0;
    if (rc == 0) print_root_attrs(out, f);
    for (int k = 0; k < nb && rc == 0; k++) {
        const char *b = names[k];
        int64_t n = shape[k][0];
        hid_t lat = open_member(f, b, "latents"), txt = open_member(f, b, "text");
        hid_t tl = open_member(f, b, "text_len"), pr = open_member(f, b, "prompts"), src = open_member(f, b, "sources");
        char lt[160], tt[160], nm[600];
        type_word(lat, lt, sizeof lt);
        type_word(txt, tt, sizeof tt);
        fprintf(out, "bucket %s: N = %lld\n", b, (long long)n);
        fprintf(out, "  latents   [%lld, %lld, %lld, %lld, %lld] %s\n", (long long)n, (long long)shape[k][1],
                (long long)shape[k][2], (long long)shape[k][3], (long long)shape[k][4], lt);
        fprintf(out, "  text      [%lld, %d, %d] %s\n", (long long)n, L, Dt, tt);
        int *lens = tl >= 0 ? read_ints(tl, n) : NULL;
        if (tl >= 0 && !lens) {
            member(b, "text_len", nm, sizeof nm);
            snprintf(err, errlen, "%s: cannot read dataset `%s`", path, nm), rc = -1;
        }
        for (int64_t i = 0; rc == 0 && lens && i < n; i++)
            if (lens[i] < 0 || lens[i] > L) { /* the reader checks this per batch; report it up front */
                member(b, "text_len", nm, sizeof nm);
                snprintf(err, errlen, "%s: dataset `%s` row %lld is %d, outside 0..%d", path, nm, (long long)i,
                         lens[i], L), rc = -1;
            }
        if (rc == 0) print_text_len(out, lens, n, L);
        if (rc == 0 && src >= 0 && dim0(src, NULL, NULL) != n) {
            fprintf(out, "  warning: `sources` has %lld entries, not N\n", (long long)dim0(src, NULL, NULL));
            H5Dclose(src), src = -1;
        }
        if (rc == 0) {
            fprintf(out, "  prompts   %s%s\n", pr >= 0 ? "yes" : "absent", src >= 0 ? ", sources yes" : "");
            print_prompts(out, pr, src, n, o->prompts);
        }
        int64_t nr = o->rows < 0 || o->rows > n ? n : o->rows;
        if (rc == 0 && nr > 0)
            rc = check_values(out, path, lat, txt, lens, b, nr, (int)shape[k][1],
                              shape[k][2] * shape[k][3] * shape[k][4], L, Dt, err, errlen);
        free(lens);
        hid_t ids[5] = {lat, txt, tl, pr, src};
        for (int i = 0; i < 5; i++)
            if (ids[i] >= 0) H5Dclose(ids[i]);
    }
    if (f >= 0) H5Fclose(f);
    h5_unlock();
    if (rc == 0) fprintf(out, "schema: ok (osp train reads this file)\n");
    free(names), free(shape);
    return rc;
}
