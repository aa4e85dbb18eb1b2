/*
 * cli.c — option parsing helpers, config pipeline and backend selection shared by the
 * `osp` subcommands.
 */
#include "train/cli.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "train/checkpoint.h"

#include <sys/stat.h>

const char *cli_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) osp_die("option %s needs a value (see --help)", argv[*i]);
    return argv[++*i];
}

int cli_int(const char *opt, const char *v) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end) osp_die("option %s: expected an integer, got '%s'", opt, v);
    if (errno == ERANGE || x < INT_MIN || x > INT_MAX)
        osp_die("option %s: %s is out of range (%d to %d)", opt, v, INT_MIN, INT_MAX);
    return (int)x;
}

double cli_double(const char *opt, const char *v) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || *end || end == v) osp_die("option %s: expected a number, got '%s'", opt, v);
    return x;
}

bool cli_is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h") || !strcmp(a, "help"); }

void cli_config_load(osp_config *c, const char *yaml_path, int nset, char **sets, bool validate) {
    char err[1024];
    if (yaml_path && config_load_yaml(c, yaml_path, err, sizeof err)) osp_die("%s", err);
    for (int i = 0; i < nset; i++)
        if (config_set(c, sets[i], err, sizeof err)) osp_die("%s", err);
    if (validate) cli_config_validate(c);
}

void cli_config_validate(const osp_config *c) {
    char err[1024];
    if (config_validate(c, err, sizeof err)) osp_die("%s", err);
}

void cli_config_from_dims(osp_config *c, const wan_dims *d) {
    /* the weights do not tell the heads and the text length: those stay the config's */
    wan_dims w = *d;
    w.num_heads = c->model.num_heads;
    w.text_len = c->model.text_len;
    c->model.dims = w;
}

osp_cuda_options cli_cuda_options(const osp_config *c) {
    osp_cuda_options o = osp_cuda_options_default();
    int g = osp_cuda_gemm_parse(c->cuda.gemm), a = osp_cuda_attn_parse(c->cuda.attention);
    OSP_CHECK(g >= 0 && a >= 0, "cuda.gemm / cuda.attention validated by the config");
    o.gemm = (osp_cuda_gemm)g;
    o.attn = (osp_cuda_attn)a;
    o.act16 = c->cuda.act16;
    /* bit-exact resume: osp's deterministic attention backward instead of cuDNN's (atomics in dQ) */
    o.deterministic = c->train.deterministic;
    o.hif8_fp8 = !strcmp(c->quant.hif8_exec, "fp8");
    return o;
}

const osp_backend *cli_backend(const char *device, int gpu, const osp_cuda_options *cuda) {
    if (!strcmp(device, "cpu")) return osp_backend_cpu();
    const osp_backend *cu = osp_backend_cuda_init(gpu, cuda);
    if (!strcmp(device, "cuda")) {
        if (!cu) osp_die("device: cuda requested but osp was built without CUDA or no GPU is visible");
        return cu;
    }
    return cu ? cu : osp_backend_cpu();
}

void cli_backend_free(const osp_backend *be) { osp_backend_cuda_free(be); }

wan_config cli_wan_config(const osp_config *c) {
    wan_config w;
    memset(&w, 0, sizeof w);
    const osp_model_cfg *m = &c->model;
    w.dims = m->dims;
    w.eps = m->eps;
    w.recompute = m->recompute;
    w.pos_sincos = !strcmp(m->pos_embed, "rope+sincos");
    w.hybrid = !strcmp(m->attention.mode, "hybrid");
    w.sparse_ratio = m->attention.sparse_ratio;
    w.num_full_blocks = m->attention.num_full_blocks;
    const osp_quant_cfg *q = &c->quant;
    w.quant = !strcmp(q->format, "hif8");
    w.quant_delayed = !strcmp(q->scaling, "delayed");
    w.quant_history = q->history;
    w.quant_fwd_target = q->forward_target;
    w.quant_grad_target = q->grad_target;
    w.quant_saturate = q->saturate;
    w.quant_attention = q->attention;
    for (int i = 0; i < q->n_skip_blocks; i++)
        if (q->skip_blocks[i] >= 0 && q->skip_blocks[i] < 64) w.quant_skip_mask |= 1ull << q->skip_blocks[i];
    return w;
}

void cli_resolve_ckpt(const char *given, const char *run_dir, bool ema, char *out, size_t n) {
    char dir[4096];
    struct stat sb;
    if (!given) {
        if (ckpt_find_latest(run_dir, dir, sizeof dir))
            osp_die("no --ckpt given and no complete checkpoint in %s/checkpoints (train first)", run_dir);
    } else if (stat(given, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char probe[4200];
        snprintf(probe, sizeof probe, "%s/DONE", given);
        if (stat(probe, &sb) == 0)
            snprintf(dir, sizeof dir, "%s", given);
        else if (ckpt_find_latest(given, dir, sizeof dir)) {
            snprintf(out, n, "%s", given); /* a Wan2.1 model directory: let st_open resolve it */
            return;
        }
    } else {
        snprintf(out, n, "%s", given);
        return;
    }
    snprintf(out, n, "%s/%s", dir, ema ? "ema.safetensors" : "model.safetensors");
}

