/*
 * model/io/wan_keys.c — Wan2.1 T2V key tables (original <-> diffusers names, expected shapes),
 * canonicalization, and config inference/validation from a checkpoint's shapes.
 *
 * Each table row is one parameter: original name, diffusers name, and a shape code, one
 * char per dim: D dim, F ffn_dim, T text_dim, R freq_dim, S 6*dim, C in_channels,
 * a/b/c patch t/h/w, O pt*ph*pw*out_channels, digits literal. Names are pure renames
 * (diffusers conversion script TRANSFORMER_KEYS_RENAME_DICT), so one table serves both
 * directions and the expected key list.
 */
#include "model/io/wan_keys.h"
#include "core/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *orig, *diff, *shape;
} wan_keymap;

#define WAN_PREFIX "model.diffusion_model."

/* embeddings (first 12) then head (last 3), in state-dict order */
static const wan_keymap wan_top[] = {
    {"patch_embedding.weight", "patch_embedding.weight", "DCabc"},
    {"patch_embedding.bias", "patch_embedding.bias", "D"},
    {"text_embedding.0.weight", "condition_embedder.text_embedder.linear_1.weight", "DT"},
    {"text_embedding.0.bias", "condition_embedder.text_embedder.linear_1.bias", "D"},
    {"text_embedding.2.weight", "condition_embedder.text_embedder.linear_2.weight", "DD"},
    {"text_embedding.2.bias", "condition_embedder.text_embedder.linear_2.bias", "D"},
    {"time_embedding.0.weight", "condition_embedder.time_embedder.linear_1.weight", "DR"},
    {"time_embedding.0.bias", "condition_embedder.time_embedder.linear_1.bias", "D"},
    {"time_embedding.2.weight", "condition_embedder.time_embedder.linear_2.weight", "DD"},
    {"time_embedding.2.bias", "condition_embedder.time_embedder.linear_2.bias", "D"},
    {"time_projection.1.weight", "condition_embedder.time_proj.weight", "SD"},
    {"time_projection.1.bias", "condition_embedder.time_proj.bias", "S"},
    {"head.head.weight", "proj_out.weight", "OD"},
    {"head.head.bias", "proj_out.bias", "O"},
    {"head.modulation", "scale_shift_table", "12D"},
};
enum { WAN_NTOP = sizeof wan_top / sizeof wan_top[0], WAN_NEMB = 12 };

/* per block, relative to "blocks.{i}." */
static const wan_keymap wan_block[] = {
    {"modulation", "scale_shift_table", "16D"},
    {"self_attn.q.weight", "attn1.to_q.weight", "DD"},
    {"self_attn.q.bias", "attn1.to_q.bias", "D"},
    {"self_attn.k.weight", "attn1.to_k.weight", "DD"},
    {"self_attn.k.bias", "attn1.to_k.bias", "D"},
    {"self_attn.v.weight", "attn1.to_v.weight", "DD"},
    {"self_attn.v.bias", "attn1.to_v.bias", "D"},
    {"self_attn.o.weight", "attn1.to_out.0.weight", "DD"},
    {"self_attn.o.bias", "attn1.to_out.0.bias", "D"},
    {"self_attn.norm_q.weight", "attn1.norm_q.weight", "D"},
    {"self_attn.norm_k.weight", "attn1.norm_k.weight", "D"},
    /* diffusers names norms by execution order: its affine cross-attn norm is norm2 */
    {"norm3.weight", "norm2.weight", "D"},
    {"norm3.bias", "norm2.bias", "D"},
    {"cross_attn.q.weight", "attn2.to_q.weight", "DD"},
    {"cross_attn.q.bias", "attn2.to_q.bias", "D"},
    {"cross_attn.k.weight", "attn2.to_k.weight", "DD"},
    {"cross_attn.k.bias", "attn2.to_k.bias", "D"},
    {"cross_attn.v.weight", "attn2.to_v.weight", "DD"},
    {"cross_attn.v.bias", "attn2.to_v.bias", "D"},
    {"cross_attn.o.weight", "attn2.to_out.0.weight", "DD"},
    {"cross_attn.o.bias", "attn2.to_out.0.bias", "D"},
    {"cross_attn.norm_q.weight", "attn2.norm_q.weight", "D"},
    {"cross_attn.norm_k.weight", "attn2.norm_k.weight", "D"},
    {"ffn.0.weight", "ffn.net.0.proj.weight", "FD"},
    {"ffn.0.bias", "ffn.net.0.proj.bias", "F"},
    {"ffn.2.weight", "ffn.net.2.weight", "DF"},
    {"ffn.2.bias", "ffn.net.2.bias", "D"},
};
enum { WAN_NBLOCK = sizeof wan_block / sizeof wan_block[0] };

/* Find `in` (any layout) in the tables. Returns the row, with *blk = block index or -1. */
static const wan_keymap *wan_key_lookup(const char *in, int *blk) {
    const char *p = strncmp(in, WAN_PREFIX, strlen(WAN_PREFIX)) ? in : in + strlen(WAN_PREFIX);
    *blk = -1;
    if (!strncmp(p, "blocks.", 7)) {
        const char *q = p + 7;
        int n = 0, len = 0;
        /* digits only, no leading zero, bounded: "blocks.01.x" must not alias "blocks.1.x" */
        while (q[len] >= '0' && q[len] <= '9' && len < 7) n = 10 * n + (q[len++] - '0');
        if (len == 0 || q[len] != '.' || (len > 1 && q[0] == '0')) return NULL;
        for (int i = 0; i < WAN_NBLOCK; i++)
            if (!strcmp(q + len + 1, wan_block[i].orig) || !strcmp(q + len + 1, wan_block[i].diff)) {
                *blk = n;
                return &wan_block[i];
            }
        return NULL;
    }
    for (int i = 0; i < WAN_NTOP; i++)
        if (!strcmp(p, wan_top[i].orig) || !strcmp(p, wan_top[i].diff)) return &wan_top[i];
    return NULL;
}

/* Write the row's name (orig or diffusers) for block blk into out. */
static int wan_key_emit(const wan_keymap *e, int blk, int diffusers, char *out, size_t outlen) {
    const char *name = diffusers ? e->diff : e->orig;
    int n = blk >= 0 ? snprintf(out, outlen, "blocks.%d.%s", blk, name) : snprintf(out, outlen, "%s", name);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static int wan_key_map(const char *in, char *out, size_t outlen, int diffusers) {
    int blk;
    const wan_keymap *e = wan_key_lookup(in, &blk);
    if (e) return wan_key_emit(e, blk, diffusers, out, outlen);
    int n = snprintf(out, outlen, "%s", in);
    return n < 0 || (size_t)n >= outlen ? -1 : 1;
}

int wan_key_canonical(const char *in, char *out, size_t outlen) { return wan_key_map(in, out, outlen, 0); }
int wan_key_to_diffusers(const char *key, char *out, size_t outlen) { return wan_key_map(key, out, outlen, 1); }

int wan_keys_count(int num_layers) { return WAN_NTOP + WAN_NBLOCK * num_layers; }

static int wan_shape_of(const char *code, const wan_dims *d, int64_t shape[ST_MAX_DIMS]) {
    int n = 0;
    for (const char *c = code; *c; c++) {
        int64_t v;
        switch (*c) {
        case 'D': v = d->dim; break;
        case 'F': v = d->ffn_dim; break;
        case 'T': v = d->text_dim; break;
        case 'R': v = d->freq_dim; break;
        case 'S': v = 6 * (int64_t)d->dim; break;
        case 'C': v = d->in_channels; break;
        case 'a': case 'b': case 'c': v = d->patch[*c - 'a']; break;
        case 'O': v = (int64_t)d->patch[0] * d->patch[1] * d->patch[2] * d->out_channels; break;
        default: v = *c - '0';
        }
        shape[n++] = v;
    }
    return n;
}

int wan_keys_get(const wan_dims *d, int i, char *name, size_t namelen, int64_t shape[ST_MAX_DIMS]) {
    if (i < 0 || i >= wan_keys_count(d->num_layers)) return -1;
    const wan_keymap *e;
    int blk = -1;
    if (i < WAN_NEMB) e = &wan_top[i];
    else if (i < WAN_NEMB + WAN_NBLOCK * d->num_layers) {
        blk = (i - WAN_NEMB) / WAN_NBLOCK;
        e = &wan_block[(i - WAN_NEMB) % WAN_NBLOCK];
    } else e = &wan_top[i - WAN_NBLOCK * d->num_layers];
    if (wan_key_emit(e, blk, 0, name, namelen)) return -1;
    return wan_shape_of(e->shape, d, shape);
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
    const st_tensor *pe = wan_need(s, "patch_embedding.weight", 5, err, errlen);
    const st_tensor *te = pe ? wan_need(s, "text_embedding.0.weight", 2, err, errlen) : NULL;
    const st_tensor *tm = te ? wan_need(s, "time_embedding.0.weight", 2, err, errlen) : NULL;
    const st_tensor *ff = tm ? wan_need(s, "blocks.0.ffn.0.weight", 2, err, errlen) : NULL;
    const st_tensor *hd = ff ? wan_need(s, "head.head.weight", 2, err, errlen) : NULL;
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
        const wan_keymap *e = wan_key_lookup(nm, &blk);
        if (!e || blk >= d->num_layers) {
            snprintf(err, errlen, "%s: unexpected tensor %s (not a Wan2.1 T2V key for %d layers)", st_path(s), nm,
                     d->num_layers);
            rc = -1;
            break;
        }
        wan_key_emit(e, blk, 0, name, sizeof name);
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
