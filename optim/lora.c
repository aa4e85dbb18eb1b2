/*
 * lora.c — LoRA adapter math for a linear layer through the backend op table (lora.h).
 */
#include "optim/lora.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "model/io/safetensors.h"

/* splitmix64 finaliser: A's init is a counter-based stream (element i of (seed, stream)), so it does
 * not depend on the order adapters are created in (optim/ may not reach into train/flow.h) */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t key, uint64_t i) {
    return (double)(mix64(key + (i + 1) * 0x9E3779B97F4A7C15ull) >> 11) * (1.0 / 9007199254740992.0);
}

static char *key_dup(const char *module, const char *suffix) {
    size_t n = strlen(module) + strlen(suffix) + 1;
    char *s = osp_malloc(n);
    snprintf(s, n, "%s%s", module, suffix);
    return s;
}

/* fill the fields and draw A into the (zeroed) storage given */
static void lora_setup(lora_adapter *l, const osp_backend *be, const char *module, int in, int out, int rank,
                       float alpha, uint64_t seed, uint64_t stream, float *A, float *B, float *dA, float *dB) {
    OSP_CHECK(in > 0 && out > 0 && rank > 0, "LoRA dimensions are positive");
    memset(l, 0, sizeof *l);
    l->be = be;
    l->in = in;
    l->out = out;
    l->rank = rank;
    l->alpha = alpha;
    l->scale = alpha / (float)rank;
    l->A = A, l->B = B, l->dA = dA, l->dB = dB; /* B stays zero: a fresh adapter changes nothing */
    size_t na = (size_t)rank * in;
    /* kaiming_uniform(a = sqrt(5)) on [rank, in]: bound = sqrt(6 / ((1 + 5) in)) = 1/sqrt(in) */
    float *a = osp_malloc(sizeof(float) * na);
    uint64_t key = mix64(mix64(seed ^ 0x4c6f5241ull /* "LoRA" */) + stream * 0xD1B54A32D192ED03ull);
    double bound = 1.0 / sqrt((double)in);
    for (size_t i = 0; i < na; i++) a[i] = (float)(bound * (2.0 * uniform01(key, i) - 1.0));
    be->upload(l->A, a, sizeof(float) * na);
    free(a);
    l->key_A = key_dup(module, ".lora_A.weight");
    l->key_B = key_dup(module, ".lora_B.weight");
}

void lora_init(lora_adapter *l, const osp_backend *be, const char *module, int in, int out, int rank, float alpha,
               uint64_t seed, uint64_t stream) {
    size_t na = (size_t)rank * in, nb = (size_t)out * rank;
    /* backend alloc is zero-filled by contract */
    float *A = be->alloc(sizeof(float) * na), *B = be->alloc(sizeof(float) * nb);
    float *dA = be->alloc(sizeof(float) * na), *dB = be->alloc(sizeof(float) * nb);
    lora_setup(l, be, module, in, out, rank, alpha, seed, stream, A, B, dA, dB);
    l->owned = true;
}

void lora_free(lora_adapter *l) {
    if (l->be && l->owned) {
        l->be->free(l->A);
        l->be->free(l->B);
        l->be->free(l->dA);
        l->be->free(l->dB);
    }
    free(l->key_A);
    free(l->key_B);
    memset(l, 0, sizeof *l);
}

void lora_set_init(lora_set *s, const osp_backend *be, int count, const char *const *modules, const int *in,
                   const int *out, int rank, float alpha, uint64_t seed) {
    OSP_CHECK(count >= 1 && rank > 0, "at least one adapter of positive rank");
    memset(s, 0, sizeof *s);
    s->be = be;
    s->count = count;
    for (int i = 0; i < count; i++) s->nparams += (int64_t)rank * (in[i] + out[i]);
    s->params = be->alloc(sizeof(float) * (size_t)s->nparams);
    s->grads = be->alloc(sizeof(float) * (size_t)s->nparams);
    s->ad = osp_calloc((size_t)count, sizeof(lora_adapter));
    int64_t off = 0;
    for (int i = 0; i < count; i++) {
        int64_t na = (int64_t)rank * in[i];
        lora_setup(&s->ad[i], be, modules[i], in[i], out[i], rank, alpha, seed, (uint64_t)i, s->params + off,
                   s->params + off + na, s->grads + off, s->grads + off + na);
        off += (int64_t)rank * (in[i] + out[i]);
    }
}

void lora_set_free(lora_set *s) {
    for (int i = 0; i < s->count; i++) lora_free(&s->ad[i]);
    free(s->ad);
    if (s->be) {
        s->be->free(s->params);
        s->be->free(s->grads);
    }
    memset(s, 0, sizeof *s);
}

int64_t lora_hs_floats(const lora_adapter *l, int64_t N) { return N * l->rank; }
int64_t lora_work_floats(const lora_adapter *l, int64_t N) { return N * (l->out > l->rank ? l->out : l->rank); }

void lora_fwd(const lora_adapter *l, float *y, float *hs, float *work, const float *x, const float *W, const float *b,
              int64_t N) {
    const osp_backend *be = l->be;
    be->linear_fwd(y, x, W, b, N, l->in, l->out);           /* base */
    be->linear_fwd(hs, x, l->A, NULL, N, l->in, l->rank);    /* x A^T */
    be->scale(hs, l->scale, N * l->rank);                    /* hs = scale x A^T */
    be->linear_fwd(work, hs, l->B, NULL, N, l->rank, l->out); /* hs B^T */
    be->add(y, work, N * l->out);
}

void lora_bwd(const lora_adapter *l, float *dx, const float *dy, const float *x, const float *W, const float *hs,
              float *work, int64_t N) {
    const osp_backend *be = l->be;
    if (dx) be->linear_bwd(dx, NULL, NULL, dy, x, W, N, l->in, l->out); /* base path, W frozen */
    /* up-projection: y_l = hs B^T -> dhs = dy B (into work), dB += dy^T hs */
    be->zero(work, sizeof(float) * (size_t)(N * l->rank));
    be->linear_bwd(work, l->dB, NULL, dy, hs, l->B, N, l->rank, l->out);
    /* hs = scale x A^T -> d(x A^T) = scale dhs; dA += (scale dhs)^T x, dx += (scale dhs) A */
    be->scale(work, l->scale, N * l->rank);
    be->linear_bwd(dx, l->dA, NULL, work, x, l->A, N, l->in, l->rank);
}

void lora_merge_host(float *W, const float *A, const float *B, int out, int in, int rank, float scale) {
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++) {
            double s = 0;
            for (int k = 0; k < rank; k++) s += (double)B[(int64_t)o * rank + k] * A[(int64_t)k * in + i];
            W[(int64_t)o * in + i] = (float)(W[(int64_t)o * in + i] + (double)scale * s);
        }
}

void lora_merge(const lora_adapter *l, float *W_host) {
    size_t na = (size_t)l->rank * l->in, nb = (size_t)l->out * l->rank;
    float *a = osp_malloc(sizeof(float) * na), *b = osp_malloc(sizeof(float) * nb);
    l->be->download(a, l->A, sizeof(float) * na);
    l->be->download(b, l->B, sizeof(float) * nb);
    lora_merge_host(W_host, a, b, l->out, l->in, l->rank, l->scale);
    free(a);
    free(b);
}

int lora_save(const lora_adapter *l, int n, const char *path, char *err, size_t errlen) {
    OSP_CHECK(n >= 1, "at least one adapter to save");
    st_writer *w = st_writer_init();
    for (int i = 0; i < n; i++) {
        OSP_CHECK(l[i].rank == l[0].rank && l[i].alpha == l[0].alpha, "adapters of one file share rank and alpha");
        size_t na = (size_t)l[i].rank * l[i].in, nb = (size_t)l[i].out * l[i].rank;
        float *a = osp_malloc(sizeof(float) * na), *b = osp_malloc(sizeof(float) * nb);
        l[i].be->download(a, l[i].A, sizeof(float) * na);
        l[i].be->download(b, l[i].B, sizeof(float) * nb);
        int64_t sa[2] = {l[i].rank, l[i].in}, sb[2] = {l[i].out, l[i].rank};
        st_writer_add_owned(w, l[i].key_A, ST_F32, 2, sa, a);
        st_writer_add_owned(w, l[i].key_B, ST_F32, 2, sb, b);
    }
    char meta[160];
    snprintf(meta, sizeof meta, "{\"format\": \"pt\", \"lora_rank\": \"%d\", \"lora_alpha\": \"%.9g\"}", l[0].rank,
             (double)l[0].alpha);
    int rc = st_writer_save(w, path, meta, err, errlen);
    st_writer_free(w);
    return rc;
}

/* read one [rows, cols] F32 tensor of the set into backend memory dst */
static int load_one(const st_set *s, const char *path, const char *key, int64_t rows, int64_t cols,
                    const osp_backend *be, float *dst, char *err, size_t errlen) {
    const st_tensor *t = st_find(s, key);
    if (!t) {
        snprintf(err, errlen, "%s: LoRA tensor '%s' is missing", path, key);
        return -1;
    }
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) {
        snprintf(err, errlen, "%s: LoRA tensor '%s' has shape [%lld, %lld] (ndim %d), expected [%lld, %lld]", path, key,
                 (long long)(t->ndim > 0 ? t->shape[0] : 0), (long long)(t->ndim > 1 ? t->shape[1] : 0), t->ndim,
                 (long long)rows, (long long)cols);
        return -1;
    }
    size_t ne = (size_t)(rows * cols);
    float *h = osp_malloc(sizeof(float) * ne);
    int rc = st_read_f32(t, h, ne, err, errlen);
    if (rc == 0) be->upload(dst, h, sizeof(float) * ne);
    free(h);
    return rc;
}

int lora_load(lora_adapter *l, int n, const char *path, char *err, size_t errlen) {
    st_set *s;
    if (st_open(&s, path, err, errlen)) return -1;
    int rc = 0;
    const char *mr = st_metadata(s, "lora_rank"), *ma = st_metadata(s, "lora_alpha");
    for (int i = 0; i < n && rc == 0; i++) {
        if ((mr && atoi(mr) != l[i].rank) || (ma && (float)atof(ma) != l[i].alpha)) {
            snprintf(err, errlen, "%s: LoRA rank/alpha %s/%s in the file, %d/%g configured", path, mr ? mr : "?",
                     ma ? ma : "?", l[i].rank, (double)l[i].alpha);
            rc = -1;
            break;
        }
        rc = load_one(s, path, l[i].key_A, l[i].rank, l[i].in, l[i].be, l[i].A, err, errlen);
        if (rc == 0) rc = load_one(s, path, l[i].key_B, l[i].out, l[i].rank, l[i].be, l[i].B, err, errlen);
    }
    st_close(s);
    return rc;
}
