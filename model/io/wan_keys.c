/*
 * model/io/wan_keys.c — Wan2.1 T2V checkpoint keys: canonicalization of the stored layouts,
 * the expected key list, and config inference/validation from a checkpoint's shapes. The
 * names and shapes themselves are the parameter table of model/wan_arch.c.
 */
#include "model/io/wan_keys.h"
#include "core/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAN_PREFIX "model.diffusion_model."

/* Find `in` (any layout) in the table. Returns the row, with *blk = block index or -1. */
static const wan_arch_param *wan_key_lookup(const char *in, int *blk) {
    const char *p = strncmp(in, WAN_PREFIX, strlen(WAN_PREFIX)) ? in : in + strlen(WAN_PREFIX);
    return wan_arch_lookup(p, blk);
}

static int wan_key_map(const char *in, char *out, size_t outlen, int diffusers) {
    int blk;
    const wan_arch_param *e = wan_key_lookup(in, &blk);
    if (e) return wan_arch_name(e, blk, diffusers, out, outlen);
    int n = snprintf(out, outlen, "%s", in);
    return n < 0 || (size_t)n >= outlen ? -1 : 1;
}

int wan_key_canonical(const char *in, char *out, size_t outlen) { return wan_key_map(in, out, outlen, 0); }
int wan_key_to_diffusers(const char *key, char *out, size_t outlen) { return wan_key_map(key, out, outlen, 1); }

int wan_keys_count(int num_layers) { return wan_arch_count(num_layers); }

int wan_keys_get(const wan_dims *d, int i, char *name, size_t namelen, int64_t shape[ST_MAX_DIMS]) {
    int blk;
    const wan_arch_param *e = wan_arch_at(d->num_layers, i, &blk);
    if (!e || wan_arch_name(e, blk, false, name, namelen)) return -1;
    return wan_arch_shape(e, d, shape);
}

const st_tensor *wan_find(const st_set *s, const char *canonical) {
    char diff[512], buf[600];
    const st_tensor *t = st_find(s, canonical);
    if (t) return t;
    int known = wan_key_to_diffusers(canonical, diff, sizeof diff) == 0;
    if (known && (t = st_find(s, diff))) return t;
    snprintf(buf, sizeof buf, WAN_PREFIX "%s", canonical);
    if ((t = st_find(s, buf))) return t;
    if (!known) return NULL;
    snprintf(buf, sizeof buf, WAN_PREFIX "%s", diff);
    return st_find(s, buf);
}

static void wan_fmt_shape(char *buf, size_t len, int ndim, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (o < len) snprintf(buf + o, len - o, "]");
}

/* Fetch a required tensor of rank `ndim`. */
static const st_tensor *wan_need(const st_set *s, const char *name, int ndim, char *err, size_t errlen) {
    const st_tensor *t = wan_find(s, name);
    if (!t) snprintf(err, errlen, "%s: missing tensor %s (or its diffusers name)", st_path(s), name);
    else if (t->ndim != ndim) {
        snprintf(err, errlen, "%s: tensor %s has %d dims, expected %d", st_path(s), t->name, t->ndim, ndim);
        t = NULL;
    }
    return t;
}

int wan_infer_dims(const st_set *s, wan_dims *d, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    char ffn0[64];
    wan_arch_name(&wan_arch_block[WAN_FFN0_W], 0, false, ffn0, sizeof ffn0);
    const st_tensor *pe = wan_need(s, wan_arch_top[WAN_PATCH_W].name, 5, err, errlen);
    const st_tensor *te = pe ? wan_need(s, wan_arch_top[WAN_TEXT0_W].name, 2, err, errlen) : NULL;
    const st_tensor *tm = te ? wan_need(s, wan_arch_top[WAN_TIME0_W].name, 2, err, errlen) : NULL;
    const st_tensor *ff = tm ? wan_need(s, ffn0, 2, err, errlen) : NULL;
    const st_tensor *hd = ff ? wan_need(s, wan_arch_top[WAN_HEAD_W].name, 2, err, errlen) : NULL;
    if (!hd) return -1;
    /* every dim read below becomes an int: refuse empty or absurd ones before the casts */
    const st_tensor *all[] = {pe, te, tm, ff, hd};
    for (int k = 0; k < 5; k++)
        for (int i = 0; i < all[k]->ndim; i++)
            if (all[k]->shape[i] < 1 || all[k]->shape[i] > (1 << 24)) {
                snprintf(err, errlen, "%s: tensor %s has dimension %d = %lld (want 1 to %d)", st_path(s),
                         all[k]->name, i, (long long)all[k]->shape[i], 1 << 24);
                return -1;
            }
    d->dim = (int)pe->shape[0];
    d->in_channels = (int)pe->shape[1];
    for (int i = 0; i < 3; i++) d->patch[i] = (int)pe->shape[2 + i];
    d->text_dim = (int)te->shape[1];
    d->freq_dim = (int)tm->shape[1];
    d->ffn_dim = (int)ff->shape[0];
    int64_t pv = (int64_t)d->patch[0] * d->patch[1] * d->patch[2];
    if (d->dim <= 0 || pv <= 0 || hd->shape[0] % pv || hd->shape[1] != d->dim || te->shape[0] != d->dim ||
        tm->shape[0] != d->dim || ff->shape[1] != d->dim) {
        snprintf(err, errlen,
                 "%s: inconsistent shapes: patch_embedding [%lld,%lld,..], text_embedding.0 [%lld,%lld], "
                 "time_embedding.0 [%lld,%lld], blocks.0.ffn.0 [%lld,%lld], head.head [%lld,%lld]",
                 st_path(s), (long long)pe->shape[0], (long long)pe->shape[1], (long long)te->shape[0],
                 (long long)te->shape[1], (long long)tm->shape[0], (long long)tm->shape[1], (long long)ff->shape[0],
                 (long long)ff->shape[1], (long long)hd->shape[0], (long long)hd->shape[1]);
        return -1;
    }
    d->out_channels = (int)(hd->shape[0] / pv);
    for (int i = 0; i < st_count(s); i++) {
        int blk;
        if (wan_key_lookup(st_get(s, i)->name, &blk) && blk + 1 > d->num_layers) d->num_layers = blk + 1;
    }
    if (d->num_layers > 1024) { /* model.num_layers' bound; the key check would walk every block */
        snprintf(err, errlen, "%s: a tensor of block %d: more than 1024 blocks", st_path(s), d->num_layers - 1);
        return -1;
    }
    return 0;
}

static int wan_cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int wan_check_keys(const st_set *s, const wan_dims *d, char *err, size_t errlen) {
    char name[512], want[128], got[128];
    int64_t shape[ST_MAX_DIMS];
    for (int i = 0; i < wan_keys_count(d->num_layers); i++) {
        int nd = wan_keys_get(d, i, name, sizeof name, shape);
        const st_tensor *t = wan_find(s, name);
        if (!t) {
            snprintf(err, errlen, "%s: missing tensor %s (or its diffusers name)", st_path(s), name);
            return -1;
        }
        if (t->ndim != nd || memcmp(t->shape, shape, (size_t)nd * sizeof *shape)) {
            wan_fmt_shape(want, sizeof want, nd, shape);
            wan_fmt_shape(got, sizeof got, t->ndim, t->shape);
            snprintf(err, errlen, "%s: tensor %s has shape %s, expected %s for %s", st_path(s), t->name, got, want,
                     name);
            return -1;
        }
    }
    /* every stored tensor must be a known key of this depth, under one name only */
    int n = st_count(s), rc = 0;
    char **canon = osp_calloc((size_t)(n ? n : 1), sizeof *canon);
    for (int i = 0; i < n && !rc; i++) {
        int blk;
        const char *nm = st_get(s, i)->name;
        const wan_arch_param *e = wan_key_lookup(nm, &blk);
        if (!e || blk >= d->num_layers) {
            snprintf(err, errlen, "%s: unexpected tensor %s (not a Wan2.1 T2V key for %d layers)", st_path(s), nm,
                     d->num_layers);
            rc = -1;
            break;
        }
        wan_arch_name(e, blk, false, name, sizeof name);
        canon[i] = strdup(name);
    }
    if (!rc) {
        qsort(canon, (size_t)n, sizeof *canon, wan_cmp_str);
        for (int i = 1; i < n && !rc; i++)
            if (!strcmp(canon[i - 1], canon[i])) {
                snprintf(err, errlen, "%s: tensor %s is stored under two names (mixed layouts)", st_path(s), canon[i]);
                rc = -1;
            }
    }
    for (int i = 0; i < n; i++) free(canon[i]);
    free(canon);
    return rc;
}
