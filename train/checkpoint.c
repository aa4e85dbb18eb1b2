/*
 * checkpoint.c — crash-safe training checkpoints (see checkpoint.h).
 */
#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "model/io/safetensors.h"
#include "model/io/wan_io.h"

static int rm_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    char p[8192];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    return rmdir(dir);
}

/* complete checkpoints of a run, sorted by step ascending */
static int list_ckpts(const char *run_dir, int64_t *steps, int cap) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long s;
        char tail;
        if (sscanf(e->d_name, "step_%lld%c", &s, &tail) != 1) continue;
        char done[8192];
        snprintf(done, sizeof done, "%s/%s/DONE", dir, e->d_name);
        if (access(done, F_OK) != 0 || n >= cap) continue;
        steps[n++] = s;
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && steps[j] < steps[j - 1]; j--) {
            int64_t t = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = t;
        }
    return n;
}

int ckpt_find_latest(const char *run_dir, char *out, size_t outlen) {
    int64_t steps[4096];
    int n = list_ckpts(run_dir, steps, 4096);
    if (!n) return -1;
    snprintf(out, outlen, "%s/checkpoints/step_%08lld", run_dir, (long long)steps[n - 1]);
    return 0;
}

int ckpt_save(const char *run_dir, const wan_model *m, const adamw_state *opt, const train_state *st,
              const osp_config *cfg, int keep_last, char *err, size_t errlen) {
    char final[4096], tmp[4200], path[4400];
    snprintf(final, sizeof final, "%s/checkpoints/step_%08lld", run_dir, (long long)st->step);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", final, (int)getpid());
    snprintf(path, sizeof path, "%s/checkpoints", run_dir);
    if (osp_mkdir_p(path)) {
        snprintf(err, errlen, "%s: cannot create checkpoint directory", path);
        return -1;
    }
    rm_dir(tmp);
    if (mkdir(tmp, 0755)) {
        snprintf(err, errlen, "%s: cannot create (%s)", tmp, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    if (wan_save(m, wan_params((wan_model *)m), path, NULL, err, errlen)) return -1;
    if (getenv("OSP_TEST_ABORT_IN_CHECKPOINT")) abort(); /* fault injection for the crash-safety test */
    if (opt->ema) {
        snprintf(path, sizeof path, "%s/ema.safetensors", tmp);
        if (wan_save(m, opt->ema, path, NULL, err, errlen)) return -1;
    }
    /* optimizer moments and quantisation state */
    const osp_backend *be = opt->be;
    int64_t n = opt->n, nq = wan_quant_state_size(m);
    float *mh = osp_malloc(sizeof(float) * n), *vh = osp_malloc(sizeof(float) * n);
    be->download(mh, opt->m, sizeof(float) * n);
    be->download(vh, opt->v, sizeof(float) * n);
    float *qh = nq ? osp_malloc(sizeof(float) * nq) : NULL;
    if (nq) wan_quant_state_get(m, qh);
    st_writer *w = st_writer_init();
    st_writer_add(w, "adam.m", ST_F32, 1, &n, mh);
    st_writer_add(w, "adam.v", ST_F32, 1, &n, vh);
    if (nq) st_writer_add(w, "quant.state", ST_F32, 1, &nq, qh);
    snprintf(path, sizeof path, "%s/optim.safetensors", tmp);
    int rc = st_writer_save(w, path, NULL, err, errlen);
    st_writer_free(w);
    free(mh);
    free(vh);
    free(qh);
    if (rc) return -1;
    /* scalar state */
    json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "step", (json_int_t)st->step, "data_position",
                          (json_int_t)st->data_pos, "seed", (json_int_t)st->seed, "adam_t", (json_int_t)opt->t,
                          "skipped_total", (json_int_t)opt->skipped_total, "skipped_run", (json_int_t)opt->skipped_run,
                          "rng", "counter-based: every draw is a function of (seed, step, micro-batch)");
    char *js = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    snprintf(path, sizeof path, "%s/state.json", tmp);
    rc = osp_write_atomic(path, js, strlen(js), err, errlen);
    free(js);
    if (rc) return -1;
    snprintf(path, sizeof path, "%s/config.yaml", tmp);
    if (config_save_yaml(cfg, path, err, errlen)) return -1;
    /* publish: rename the directory, then mark it complete */
    rm_dir(final);
    if (rename(tmp, final)) {
        snprintf(err, errlen, "%s: rename failed (%s)", final, strerror(errno));
        return -1;
    }
    osp_fsync_dir_of(final);
    snprintf(path, sizeof path, "%s/DONE", final);
    if (osp_write_atomic(path, "ok\n", 3, err, errlen)) return -1;
    /* remove partial checkpoints left by crashed runs (step_X.tmp.PID) */
    char cdir[4096];
    snprintf(cdir, sizeof cdir, "%s/checkpoints", run_dir);
    DIR *d = opendir(cdir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, "step_", 5) && strstr(e->d_name, ".tmp.")) {
            char old[8192];
            snprintf(old, sizeof old, "%s/%s", cdir, e->d_name);
            rm_dir(old);
        }
    if (d) closedir(d);
    /* keep the newest keep_last complete checkpoints */
    int64_t steps[4096];
    int cnt = list_ckpts(run_dir, steps, 4096);
    for (int i = 0; i + keep_last < cnt; i++) {
        char old[4096];
        snprintf(old, sizeof old, "%s/checkpoints/step_%08lld", run_dir, (long long)steps[i]);
        rm_dir(old);
    }
    return 0;
}

static int read_flat(const st_set *s, const char *name, float *dst, int64_t n, const char *dir, char *err,
                     size_t errlen) {
    const st_tensor *t = st_find(s, name);
    if (!t || t->ndim != 1 || t->shape[0] != n) {
        snprintf(err, errlen, "%s/optim.safetensors: tensor '%s' missing or not [%lld] (checkpoint from another model?)",
                 dir, name, (long long)n);
        return -1;
    }
    return st_read_f32(t, dst, (size_t)n, err, errlen);
}

int ckpt_load(const char *dir, wan_model *m, adamw_state *opt, train_state *st, char *err, size_t errlen) {
    char path[4400];
    snprintf(path, sizeof path, "%s/DONE", dir);
    if (access(path, F_OK)) {
        snprintf(err, errlen, "%s: incomplete checkpoint (no DONE marker)", dir);
        return -1;
    }
    st_set *s;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (st_open(&s, path, err, errlen)) return -1;
    int rc = wan_load(m, NULL, s, true, false, NULL, err, errlen);
    st_close(s);
    if (rc) return -1;
    const osp_backend *be = opt->be;
    int64_t n = opt->n;
    if (opt->ema) {
        snprintf(path, sizeof path, "%s/ema.safetensors", dir);
        if (st_open(&s, path, err, errlen)) return -1;
        rc = wan_load(m, opt->ema, s, true, false, NULL, err, errlen);
        st_close(s);
        if (rc) return -1;
    }
    snprintf(path, sizeof path, "%s/optim.safetensors", dir);
    if (st_open(&s, path, err, errlen)) return -1;
    float *h = osp_malloc(sizeof(float) * n);
    rc = read_flat(s, "adam.m", h, n, dir, err, errlen);
    if (!rc) be->upload(opt->m, h, sizeof(float) * n);
    if (!rc) rc = read_flat(s, "adam.v", h, n, dir, err, errlen);
    if (!rc) be->upload(opt->v, h, sizeof(float) * n);
    free(h);
    int64_t nq = wan_quant_state_size(m);
    if (!rc && nq) {
        float *q = osp_malloc(sizeof(float) * nq);
        rc = read_flat(s, "quant.state", q, nq, dir, err, errlen);
        if (!rc) wan_quant_state_set(m, q);
        free(q);
    }
    st_close(s);
    if (rc) return -1;
    snprintf(path, sizeof path, "%s/state.json", dir);
    json_error_t je;
    if (osp_check_regular(path, err, errlen)) return -1;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) {
        snprintf(err, errlen, "%s:%d: %s", path, je.line, je.text);
        return -1;
    }
    json_int_t step, pos, seed, t, sk, sr;
    if (json_unpack(j, "{s:I, s:I, s:I, s:I, s:I, s:I}", "step", &step, "data_position", &pos, "seed", &seed, "adam_t",
                    &t, "skipped_total", &sk, "skipped_run", &sr)) {
        json_decref(j);
        snprintf(err, errlen, "%s: missing fields (step, data_position, seed, adam_t, skipped_*)", path);
        return -1;
    }
    json_decref(j);
    st->step = step;
    st->data_pos = pos;
    st->seed = (uint64_t)seed;
    opt->t = t;
    opt->skipped_total = sk;
    opt->skipped_run = (int)sr;
    return 0;
}
