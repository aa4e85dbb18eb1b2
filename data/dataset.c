/*
 * dataset.c — HDF5 training-data reader (format and ordering rules in dataset.h).
 *
 * Design: the order of samples is a pure function of (seed, epoch, rank, world, batch,
 * file shapes), computed from a counter-based generator (splitmix64), so a position is
 * just a batch counter and resume/prefetch cannot change results. The prefetch thread
 * fills a ring of prefetch+1 batch slots: slot = pos % (prefetch+1); it may run at most
 * `prefetch` batches ahead of the consumer, so it never touches the slot the caller is
 * still reading. A seek bumps a generation counter so batches read for the old position
 * are discarded.
 */
#include "data/dataset.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"
#include "core/size.h"
#include "data/h5util.h"

typedef struct {
    char name[256];           /* "" for the root, else the group name */
    hid_t lat, txt, tlen, prm; /* -1 when absent */
    h5u_dtype lat_t, txt_t;
    int64_t n, offset;        /* rows, first global index */
    int C, T, H, W;
    int64_t nbatch;           /* batches per rank per epoch */
} ds_bucket;

typedef struct {
    osp_batch b;
    int64_t pos;
    int filled, failed;
    char err[1536]; /* path + dataset name + message */
} ds_slot;

struct osp_dataset {
    char path[1024];
    hid_t file;
    int rank, world, B, prefetch;
    uint64_t seed;
    int nb;
    ds_bucket *bk;
    int C, L, Dt;
    int64_t nsamples, steps;
    /* epoch cache (touched only by whoever reads batches: producer thread or caller) */
    int64_t cache_epoch;
    int64_t **perm;           /* [nb][n_k] */
    int32_t *sched;           /* [steps] bucket of each step */
    int64_t *sched_j;         /* [steps] batch index within the bucket */
    uint16_t *scratch;
    /* ring */
    ds_slot *slots;
    int nslots;
    int64_t consume_pos, produce_pos;
    uint64_t gen;
    int stop, prod_failed, thread_on;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv_prod, cv_cons;
};

/* ------------------------------------------------------------------ shuffling */

static uint64_t key3(uint64_t seed, uint64_t a, uint64_t b) {
    return osp_splitmix64(osp_splitmix64(osp_splitmix64(seed) ^ a) ^ b);
}

/* Fisher-Yates with the i-th draw = splitmix64(key + i): a counter-based stream */
static void shuffle_i64(int64_t *v, int64_t n, uint64_t key) {
    for (int64_t i = n - 1; i > 0; i--) {
        uint64_t r = osp_splitmix64(key + (uint64_t)i);
        int64_t j = (int64_t)(r % (uint64_t)(i + 1));
        int64_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

#define SCHED_TAG 0x5C4ED0E5ull

static void ensure_epoch(osp_dataset *ds, int64_t e) {
    if (ds->cache_epoch == e) return;
    int64_t s = 0;
    for (int k = 0; k < ds->nb; k++) {
        ds_bucket *b = &ds->bk[k];
        for (int64_t i = 0; i < b->n; i++) ds->perm[k][i] = i;
        shuffle_i64(ds->perm[k], b->n, key3(ds->seed, (uint64_t)e, (uint64_t)k + 1));
        for (int64_t j = 0; j < b->nbatch; j++, s++) ds->sched[s] = k, ds->sched_j[s] = j;
    }
    /* interleave buckets: permute the step list with a key shared by all ranks */
    int64_t *order = osp_malloc((size_t)ds->steps * sizeof *order);
    for (int64_t i = 0; i < ds->steps; i++) order[i] = i;
    shuffle_i64(order, ds->steps, key3(ds->seed, (uint64_t)e, SCHED_TAG));
    int32_t *sk = osp_malloc((size_t)ds->steps * sizeof *sk);
    int64_t *sj = osp_malloc((size_t)ds->steps * sizeof *sj);
    for (int64_t i = 0; i < ds->steps; i++) sk[i] = ds->sched[order[i]], sj[i] = ds->sched_j[order[i]];
    memcpy(ds->sched, sk, (size_t)ds->steps * sizeof *sk);
    memcpy(ds->sched_j, sj, (size_t)ds->steps * sizeof *sj);
    free(sk);
    free(sj);
    free(order);
    ds->cache_epoch = e;
}

/* ------------------------------------------------------------------ reading */

static void dname(const ds_bucket *b, const char *d, char *out, size_t n) {
    if (b->name[0]) snprintf(out, n, "%s/%s", b->name, d);
    else snprintf(out, n, "%s", d);
}

static int read_int_row(hid_t d, int64_t row, int *v) {
    hid_t fs = H5Dget_space(d);
    hsize_t start = (hsize_t)row, cnt = 1;
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &cnt, NULL);
    hid_t ms = H5Screate_simple(1, &cnt, NULL);
    int rc = H5Dread(d, H5T_NATIVE_INT, ms, fs, H5P_DEFAULT, v) < 0 ? -1 : 0;
    H5Sclose(ms);
    H5Sclose(fs);
    return rc;
}

/* read the batch at position pos into slot (no ring bookkeeping) */
static int read_batch(osp_dataset *ds, int64_t pos, ds_slot *sl) {
    int64_t e = pos / ds->steps, s = pos % ds->steps;
    ensure_epoch(ds, e);
    int k = ds->sched[s];
    int64_t j = ds->sched_j[s];
    ds_bucket *bk = &ds->bk[k];
    osp_batch *b = &sl->b;
    b->B = ds->B, b->C = bk->C, b->T = bk->T, b->H = bk->H, b->W = bk->W, b->L = ds->L, b->Dt = ds->Dt;
    b->bucket = k, b->epoch = (int)e, b->step_in_epoch = s;
    int64_t lat_row = (int64_t)bk->C * bk->T * bk->H * bk->W, txt_row = (int64_t)ds->L * ds->Dt;
    for (int i = 0; i < ds->B; i++) {
        int64_t row = ds->perm[k][j * ds->B * ds->world + (int64_t)i * ds->world + ds->rank];
        char nm[300];
        b->index[i] = bk->offset + row;
        h5_lock();
        int bad = 0;
        if (h5u_read_rows(bk->lat, bk->lat_t, row, 1, lat_row, b->latents + i * lat_row, ds->scratch) != 0)
            bad = 1;
        else if (h5u_read_rows(bk->txt, bk->txt_t, row, 1, txt_row, b->text + i * txt_row, ds->scratch) != 0)
            bad = 2;
        else if (bk->tlen >= 0 && read_int_row(bk->tlen, row, &b->text_len[i]) != 0)
            bad = 3;
        else if (bk->tlen < 0)
            b->text_len[i] = ds->L;
        h5_unlock();
        if (bad) {
            dname(bk, bad == 1 ? "latents" : bad == 2 ? "text" : "text_len", nm, sizeof nm);
            snprintf(sl->err, sizeof sl->err, "%s: cannot read row %lld of dataset `%s`", ds->path,
                     (long long)row, nm);
            return -1;
        }
        if (b->text_len[i] < 0 || b->text_len[i] > ds->L) {
            dname(bk, "text_len", nm, sizeof nm);
            snprintf(sl->err, sizeof sl->err, "%s: dataset `%s` row %lld is %d, outside 0..%d", ds->path, nm,
                     (long long)row, b->text_len[i], ds->L);
            return -1;
        }
    }
    return 0;
}

static void *producer_main(void *arg) {
    osp_dataset *ds = arg;
    h5_init();
    pthread_mutex_lock(&ds->mu);
    while (!ds->stop) {
        if (ds->prod_failed || ds->produce_pos >= ds->consume_pos + ds->prefetch) {
            pthread_cond_wait(&ds->cv_prod, &ds->mu);
            continue;
        }
        int64_t pos = ds->produce_pos;
        uint64_t gen = ds->gen;
        ds_slot *sl = &ds->slots[pos % ds->nslots];
        pthread_mutex_unlock(&ds->mu);
        int rc = read_batch(ds, pos, sl);
        pthread_mutex_lock(&ds->mu);
        if (gen == ds->gen) { /* else a seek happened meanwhile: drop it */
            sl->pos = pos;
            sl->filled = 1;
            sl->failed = rc != 0;
            ds->prod_failed = rc != 0;
            ds->produce_pos++;
            pthread_cond_broadcast(&ds->cv_cons);
        }
    }
    pthread_mutex_unlock(&ds->mu);
    return NULL;
}

int dataset_next(osp_dataset *ds, osp_batch *b, char *err, size_t errlen) {
    if (!ds->thread_on) {
        ds_slot *sl = &ds->slots[0];
        if (read_batch(ds, ds->consume_pos, sl) != 0) {
            snprintf(err, errlen, "%s", sl->err);
            return -1;
        }
        ds->consume_pos++;
        *b = sl->b;
        return 0;
    }
    pthread_mutex_lock(&ds->mu);
    int64_t want = ds->consume_pos;
    ds_slot *sl = &ds->slots[want % ds->nslots];
    while (!(sl->filled && sl->pos == want)) pthread_cond_wait(&ds->cv_cons, &ds->mu);
    int rc = 0;
    if (sl->failed) {
        snprintf(err, errlen, "%s", sl->err);
        rc = -1;
    } else {
        sl->filled = 0; /* the caller holds it; the producer stays `prefetch` slots ahead */
        ds->consume_pos++;
        *b = sl->b;
        pthread_cond_broadcast(&ds->cv_prod);
    }
    pthread_mutex_unlock(&ds->mu);
    return rc;
}

int64_t dataset_position(const osp_dataset *ds) { return ds->consume_pos; }

int dataset_seek(osp_dataset *ds, int64_t pos) {
    if (pos < 0) return -1;
    pthread_mutex_lock(&ds->mu);
    ds->gen++;
    ds->consume_pos = ds->produce_pos = pos;
    ds->prod_failed = 0;
    for (int i = 0; i < ds->nslots; i++) ds->slots[i].filled = 0;
    pthread_cond_broadcast(&ds->cv_prod);
    pthread_mutex_unlock(&ds->mu);
    return 0;
}

/* ------------------------------------------------------------------ open / validate */

/* Open dataset `d` of bucket b; check presence, rank, N, dtype. Returns id or -1. */
static hid_t open_member(osp_dataset *ds, hid_t grp, ds_bucket *b, const char *d, int rank, int required,
                         int64_t *dims, h5u_dtype *dt, char *err, size_t errlen) {
    char nm[300];
    dname(b, d, nm, sizeof nm);
    if (!h5u_exists(grp, d)) {
        if (required) snprintf(err, errlen, "%s: missing dataset `%s`", ds->path, nm);
        return -1;
    }
    hid_t id = H5Dopen2(grp, d, H5P_DEFAULT);
    if (id < 0) {
        snprintf(err, errlen, "%s: `%s` is not a dataset", ds->path, nm);
        return -1;
    }
    hid_t sp = H5Dget_space(id);
    int r = H5Sget_simple_extent_ndims(sp);
    hsize_t hd[H5S_MAX_RANK] = {0};
    if (r > 0) H5Sget_simple_extent_dims(sp, hd, NULL);
    H5Sclose(sp);
    static const char *shape[] = {"", "[N]", "", "[N,L,Dt]", "", "[N,C,T,H,W]"};
    if (r != rank) {
        snprintf(err, errlen, "%s: dataset `%s` has rank %d, expected %d %s", ds->path, nm, r, rank, shape[rank]);
        goto fail;
    }
    for (int i = 0; i < r; i++) dims[i] = (int64_t)hd[i];
    if (dims[0] == 0) {
        snprintf(err, errlen, "%s: dataset `%s` is empty (N=0)", ds->path, nm);
        goto fail;
    }
    for (int i = 1; i < r; i++)
        if (dims[i] <= 0 || dims[i] > (1 << 24)) {
            snprintf(err, errlen, "%s: dataset `%s` has a bad dimension %d = %lld", ds->path, nm, i,
                     (long long)dims[i]);
            goto fail;
        }
    /* clip counts and sample indices are ints downstream, and one clip is read into one buffer */
    if (dims[0] > INT_MAX) {
        snprintf(err, errlen, "%s: dataset `%s` claims N=%lld clips, more than %d", ds->path, nm, (long long)dims[0],
                 INT_MAX);
        goto fail;
    }
    int64_t per = osp_dims_product(dims + 1, r - 1);
    if (per < 0 || per > INT_MAX) {
        snprintf(err, errlen, "%s: dataset `%s` has %s elements per clip, more than %d", ds->path, nm,
                 per < 0 ? "overflowing" : "too many", INT_MAX);
        goto fail;
    }
    if (b->n >= 0 && dims[0] != b->n) {
        char ln[300];
        dname(b, "latents", ln, sizeof ln);
        snprintf(err, errlen, "%s: dataset `%s` has N=%lld but `%s` has N=%lld", ds->path, nm,
                 (long long)dims[0], ln, (long long)b->n);
        goto fail;
    }
    hid_t t = H5Dget_type(id);
    H5T_class_t cls = H5Tget_class(t);
    H5Tclose(t);
    if (dt) {
        char why[128] = "";
        *dt = h5u_dtype_of(id, why, sizeof why);
        if (*dt == H5U_BAD) {
            snprintf(err, errlen, "%s: dataset `%s` has unsupported dtype %s (want float32, float16 or bfloat16)",
                     ds->path, nm, why);
            goto fail;
        }
    } else if (strcmp(d, "text_len") == 0 && cls != H5T_INTEGER) {
        snprintf(err, errlen, "%s: dataset `%s` must be integer", ds->path, nm);
        goto fail;
    } else if (strcmp(d, "prompts") == 0 && cls != H5T_STRING) {
        snprintf(err, errlen, "%s: dataset `%s` must hold strings", ds->path, nm);
        goto fail;
    }
    return id;
fail:
    H5Dclose(id);
    return -2; /* distinguishes "present but invalid" from "absent" */
}

static int open_bucket(osp_dataset *ds, ds_bucket *b, char *err, size_t errlen) {
    hid_t g = b->name[0] ? H5Gopen2(ds->file, b->name, H5P_DEFAULT) : H5Gopen2(ds->file, "/", H5P_DEFAULT);
    if (g < 0) {
        snprintf(err, errlen, "%s: cannot open group `%s`", ds->path, b->name);
        return -1;
    }
    int64_t dl[5], dt[3], d1[1];
    int rc = -1;
    b->n = -1;
    b->lat = open_member(ds, g, b, "latents", 5, 1, dl, &b->lat_t, err, errlen);
    if (b->lat < 0) goto done;
    b->n = dl[0], b->C = (int)dl[1], b->T = (int)dl[2], b->H = (int)dl[3], b->W = (int)dl[4];
    b->txt = open_member(ds, g, b, "text", 3, 1, dt, &b->txt_t, err, errlen);
    if (b->txt < 0) goto done;
    b->tlen = open_member(ds, g, b, "text_len", 1, 0, d1, NULL, err, errlen);
    if (b->tlen == -2) goto done;
    b->prm = open_member(ds, g, b, "prompts", 1, 0, d1, NULL, err, errlen);
    if (b->prm == -2) goto done;
    char nm[300];
    dname(b, "text", nm, sizeof nm);
    if (ds->L == 0) ds->C = b->C, ds->L = (int)dt[1], ds->Dt = (int)dt[2];
    if (b->C != ds->C) {
        snprintf(err, errlen, "%s: bucket `%s` has C=%d but the first bucket has C=%d", ds->path, b->name, b->C,
                 ds->C);
        goto done;
    }
    if (dt[1] != ds->L || dt[2] != ds->Dt) {
        snprintf(err, errlen, "%s: dataset `%s` has [L,Dt]=[%lld,%lld] but the first bucket has [%d,%d]", ds->path,
                 nm, (long long)dt[1], (long long)dt[2], ds->L, ds->Dt);
        goto done;
    }
    rc = 0;
done:
    H5Gclose(g);
    return rc;
}

/* find the buckets: the root if it holds `latents`, else every group holding latents/text */
static int find_buckets(osp_dataset *ds, char *err, size_t errlen) {
    ds->bk = NULL;
    ds->nb = 0;
    if (h5u_exists(ds->file, "latents")) {
        ds->bk = osp_calloc(1, sizeof *ds->bk);
        ds->nb = 1;
        return 0;
    }
    H5G_info_t gi;
    if (H5Gget_info(ds->file, &gi) < 0) {
        snprintf(err, errlen, "%s: cannot list the root group", ds->path);
        return -1;
    }
    ds->bk = osp_calloc(gi.nlinks ? gi.nlinks : 1, sizeof *ds->bk);
    for (hsize_t i = 0; i < gi.nlinks; i++) {
        char name[256];
        if (H5Lget_name_by_idx(ds->file, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT) <= 0)
            continue;
        hid_t g = H5Gopen2(ds->file, name, H5P_DEFAULT); /* fails for datasets: not a bucket */
        if (g < 0) continue;
        int has = h5u_exists(g, "latents") || h5u_exists(g, "text");
        H5Gclose(g);
        if (has) snprintf(ds->bk[ds->nb++].name, sizeof ds->bk[0].name, "%s", name);
    }
    if (ds->nb == 0) {
        snprintf(err, errlen, "%s: missing dataset `latents` (neither at the root nor in any bucket group)",
                 ds->path);
        return -1;
    }
    return 0;
}

int dataset_open(osp_dataset **out, const char *path, int rank, int world, uint64_t seed, int batch_size,
                 int prefetch, char *err, size_t errlen) {
    *out = NULL;
    if (world < 1 || rank < 0 || rank >= world || batch_size < 1 || prefetch < 0) {
        snprintf(err, errlen, "%s: bad reader arguments (rank %d, world %d, batch %d, prefetch %d)", path, rank,
                 world, batch_size, prefetch);
        return -1;
    }
    osp_dataset *ds = osp_calloc(1, sizeof *ds);
    snprintf(ds->path, sizeof ds->path, "%s", path);
    ds->rank = rank, ds->world = world, ds->B = batch_size, ds->prefetch = prefetch, ds->seed = seed;
    ds->cache_epoch = -1;
    pthread_mutex_init(&ds->mu, NULL);
    pthread_cond_init(&ds->cv_prod, NULL);
    pthread_cond_init(&ds->cv_cons, NULL);
    h5_lock();
    ds->file = h5u_open_ro(path, err, errlen);
    int rc = ds->file < 0 ? -1 : find_buckets(ds, err, errlen);
    for (int k = 0; k < ds->nb; k++) ds->bk[k].lat = ds->bk[k].txt = ds->bk[k].tlen = ds->bk[k].prm = -1;
    for (int k = 0; rc == 0 && k < ds->nb; k++) rc = open_bucket(ds, &ds->bk[k], err, errlen);
    h5_unlock();
    if (rc != 0) {
        dataset_close(ds);
        return -1;
    }
    int64_t max_lat = 0, per_global = (int64_t)batch_size * world;
    for (int k = 0; k < ds->nb; k++) {
        ds_bucket *b = &ds->bk[k];
        b->offset = ds->nsamples;
        ds->nsamples += b->n;
        if (ds->nsamples > INT_MAX) {
            snprintf(err, errlen, "%s: %lld clips in all, more than %d", path, (long long)ds->nsamples, INT_MAX);
            dataset_close(ds);
            return -1;
        }
        b->nbatch = b->n / per_global;
        ds->steps += b->nbatch;
        int64_t le = (int64_t)b->C * b->T * b->H * b->W;
        if (le > max_lat) max_lat = le;
    }
    if (ds->steps == 0) {
        snprintf(err, errlen, "%s: no full batch: every bucket has fewer than batch_size x world = %d x %d samples",
                 path, batch_size, world);
        dataset_close(ds);
        return -1;
    }
    int64_t txt = (int64_t)ds->L * ds->Dt;
    ds->scratch = osp_malloc(osp_size_bytes(max_lat > txt ? max_lat : txt, sizeof(uint16_t), "reader scratch"));
    ds->perm = osp_calloc((size_t)ds->nb, sizeof *ds->perm);
    for (int k = 0; k < ds->nb; k++) ds->perm[k] = osp_malloc(osp_size_bytes(ds->bk[k].n, sizeof(int64_t), "shuffle"));
    ds->sched = osp_malloc((size_t)ds->steps * sizeof *ds->sched);
    ds->sched_j = osp_malloc((size_t)ds->steps * sizeof *ds->sched_j);
    ds->nslots = prefetch + 1;
    ds->slots = osp_calloc((size_t)ds->nslots, sizeof *ds->slots);
    for (int i = 0; i < ds->nslots; i++) {
        osp_batch *b = &ds->slots[i].b;
        b->latents = osp_malloc(osp_size_bytes(osp_size_mul(batch_size, max_lat, "batch latents"), sizeof(float),
                                               "batch latents"));
        b->text = osp_malloc(osp_size_bytes(osp_size_mul(batch_size, txt, "batch text"), sizeof(float), "batch text"));
        b->text_len = osp_malloc((size_t)batch_size * sizeof(int));
        b->index = osp_malloc((size_t)batch_size * sizeof(int64_t));
    }
    if (prefetch > 0) {
        if (pthread_create(&ds->th, NULL, producer_main, ds) != 0) {
            snprintf(err, errlen, "%s: cannot start the prefetch thread", path);
            dataset_close(ds);
            return -1;
        }
        ds->thread_on = 1;
    }
    *out = ds;
    return 0;
}

void dataset_close(osp_dataset *ds) {
    if (!ds) return;
    if (ds->thread_on) {
        pthread_mutex_lock(&ds->mu);
        ds->stop = 1;
        pthread_cond_broadcast(&ds->cv_prod);
        pthread_mutex_unlock(&ds->mu);
        pthread_join(ds->th, NULL);
    }
    h5_lock();
    for (int k = 0; k < ds->nb; k++) {
        ds_bucket *b = &ds->bk[k];
        hid_t ids[4] = {b->lat, b->txt, b->tlen, b->prm};
        for (int i = 0; i < 4; i++)
            if (ids[i] >= 0) H5Dclose(ids[i]);
    }
    if (ds->file >= 0) H5Fclose(ds->file);
    h5_unlock();
    for (int i = 0; ds->slots && i < ds->nslots; i++) {
        osp_batch *b = &ds->slots[i].b;
        free(b->latents), free(b->text), free(b->text_len), free(b->index);
    }
    for (int k = 0; ds->perm && k < ds->nb; k++) free(ds->perm[k]);
    free(ds->perm), free(ds->sched), free(ds->sched_j), free(ds->scratch), free(ds->slots), free(ds->bk);
    pthread_mutex_destroy(&ds->mu);
    pthread_cond_destroy(&ds->cv_prod);
    pthread_cond_destroy(&ds->cv_cons);
    free(ds);
}

/* ------------------------------------------------------------------ accessors */

static const ds_bucket *bucket(const osp_dataset *ds, int k) {
    OSP_CHECK(k >= 0 && k < ds->nb, "bucket index out of range");
    return &ds->bk[k];
}

int dataset_num_samples(const osp_dataset *ds) { return (int)ds->nsamples; }
int dataset_num_buckets(const osp_dataset *ds) { return ds->nb; }
int64_t dataset_steps_per_epoch(const osp_dataset *ds) { return ds->steps; }
const char *dataset_bucket_name(const osp_dataset *ds, int k) {
    return bucket(ds, k)->name[0] ? bucket(ds, k)->name : "/";
}
int dataset_bucket_size(const osp_dataset *ds, int k) { return (int)bucket(ds, k)->n; }
int dataset_C(const osp_dataset *ds, int k) { return bucket(ds, k)->C; }
int dataset_T(const osp_dataset *ds, int k) { return bucket(ds, k)->T; }
int dataset_H(const osp_dataset *ds, int k) { return bucket(ds, k)->H; }
int dataset_W(const osp_dataset *ds, int k) { return bucket(ds, k)->W; }
int dataset_L(const osp_dataset *ds) { return ds->L; }
int dataset_Dt(const osp_dataset *ds) { return ds->Dt; }
const char *dataset_path(const osp_dataset *ds) { return ds->path; }

int dataset_prompt(osp_dataset *ds, int64_t index, char *buf, size_t buflen) {
    if (buflen) buf[0] = '\0';
    for (int k = 0; k < ds->nb; k++) {
        ds_bucket *b = &ds->bk[k];
        if (index < b->offset || index >= b->offset + b->n) continue;
        if (b->prm < 0) return 0;
        h5_lock();
        int rc = h5u_read_string(b->prm, index - b->offset, buf, buflen);
        h5_unlock();
        return rc;
    }
    return -1;
}
