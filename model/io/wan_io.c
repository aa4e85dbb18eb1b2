/*
 * model/io/wan_io.c — moving Wan DiT weights between safetensors checkpoints and a wan_model:
 * loading from any key layout (original, diffusers, prefixed; F32/BF16/F16; single or
 * sharded) with a loaded / missing / unexpected report, and saving in the original
 * Wan2.1 layout so Wan2.1 tools and diffusers' converter read our files.
 */
#include "model/io/wan_io.h"

#include <string.h>

#include "core/common.h"
#include "model/io/wan_keys.h"

int wan_load(wan_model *m, float *arena, const st_set *s, bool strict, bool report, int *n_loaded, char *err,
             size_t errlen) {
    if (!arena) arena = wan_params(m);
    const osp_backend *be = wan_backend(m);
    int nloaded = 0, nmissing = 0, nunexp = 0;
    float *host = NULL;
    size_t cap = 0;
    for (int i = 0; i < wan_param_count(m); i++) {
        const wan_param_info *p = wan_param(m, i);
        const st_tensor *t = wan_find(s, p->name);
        if (!t) {
            if (report) printf("  missing     %s\n", p->name);
            if (strict) {
                snprintf(err, errlen, "%s: missing tensor '%s'", st_path(s), p->name);
                free(host);
                return -1;
            }
            nmissing++;
            continue;
        }
        bool same = t->ndim == p->ndim;
        for (int k = 0; same && k < p->ndim; k++) same = t->shape[k] == p->shape[k];
        if (!same) {
            char a[96] = "", b[96] = "";
            for (int k = 0; k < t->ndim; k++) snprintf(a + strlen(a), sizeof a - strlen(a), "%s%lld", k ? "," : "", (long long)t->shape[k]);
            for (int k = 0; k < p->ndim; k++) snprintf(b + strlen(b), sizeof b - strlen(b), "%s%lld", k ? "," : "", (long long)p->shape[k]);
            snprintf(err, errlen, "%s: tensor '%s' has shape [%s], the model expects [%s]", t->file, t->name, a, b);
            free(host);
            return -1;
        }
        if ((size_t)p->numel > cap) {
            free(host);
            cap = (size_t)p->numel;
            host = osp_malloc(sizeof(float) * cap);
        }
        if (st_read_f32(t, host, (size_t)p->numel, err, errlen)) {
            free(host);
            return -1;
        }
        be->upload(arena + p->offset, host, sizeof(float) * p->numel);
        nloaded++;
    }
    free(host);
    for (int i = 0; i < st_count(s); i++) {
        const st_tensor *t = st_get(s, i);
        char canon[256];
        wan_key_canonical(t->name, canon, sizeof canon);
        if (wan_param_find(m, canon) < 0) {
            if (report) printf("  unexpected  %s\n", t->name);
            nunexp++;
        }
    }
    if (report)
        printf("checkpoint %s: %d loaded, %d missing (kept from init), %d unexpected (ignored)\n", st_path(s), nloaded,
               nmissing, nunexp);
    if (strict && nunexp) {
        snprintf(err, errlen, "%s: %d unexpected tensors (not part of this Wan2.1 config)", st_path(s), nunexp);
        return -1;
    }
    if (n_loaded) *n_loaded = nloaded;
    return 0;
}

int wan_save(const wan_model *m, const float *arena, const char *path, const char *metadata_json, char *err,
             size_t errlen) {
    const osp_backend *be = wan_backend(m);
    int64_t total = wan_arena_floats(m);
    float *host = osp_malloc(sizeof(float) * total);
    be->download(host, arena, sizeof(float) * total);
    st_writer *w = st_writer_init();
    for (int i = 0; i < wan_param_count(m); i++) {
        const wan_param_info *p = wan_param(m, i);
        st_writer_add(w, p->name, ST_F32, p->ndim, p->shape, host + p->offset);
    }
    int rc = st_writer_save(w, path, metadata_json, err, errlen);
    st_writer_free(w);
    free(host);
    return rc;
}
